"""A local stand-in for Cloud Run IAM in front of one function: what production checks before our code runs.

Modelled on Google's documentation:
- A private service admits only a Google-signed ID token whose audience is one of the service's URLs and whose
  account holds roles/run.invoker on it (https://cloud.google.com/run/docs/authenticating/service-to-service). The
  token may come in `Authorization` or `X-Serverless-Authorization`; the latter wins when both are sent.
- Missing or invalid token: 401; a valid token of an account without run.invoker: 403, both before the container
  sees the request (https://cloud.google.com/run/docs/troubleshooting#unauthorized-client).
- The admitted request reaches the container with the token's signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`
  (https://cloud.google.com/run/docs/troubleshooting#signature-removed), so the container can read the claims but never
  verify them.
- A service with an allUsers binding is public: nothing is checked.

Locally "Google-signed" means signed by the Google stand-in's key (its x509 certs URL), the audience is the service's
deterministic run.app URL and the members are those Terraform binds (infra/deployment.py). Custom audiences are not
configured by our Terraform and are not modelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shared.logs import log_event

logger = logging.getLogger("infra.cloud_run_iam")
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
TOKEN_HEADERS = ("HTTP_X_SERVERLESS_AUTHORIZATION", "HTTP_AUTHORIZATION")  # precedence order

_PAGE = (
    "<html><head><title>{status} {title}</title></head><body><h1>Error: {title}</h1>"
    "<h2>Your client does not have permission to get URL <code>{path}</code> from this server.</h2></body></html>"
)


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class CloudRunIam:
    """WSGI middleware: the IAM check of one Cloud Run service, then the wrapped function app."""

    app: Callable[..., Any]
    service: str
    audiences: frozenset[str]
    invokers: frozenset[str]
    certs_url: str
    clock_skew_seconds: int = 10

    @classmethod
    def for_service(cls, app: Callable[..., Any], service: Any, certs_url: str) -> CloudRunIam:
        """From an infra.deployment.Service."""
        return cls(app, service.name, frozenset({service.url}), frozenset(service.invokers), certs_url)

    @property
    def public(self) -> bool:
        return "allUsers" in self.invokers

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if self.public:
            return self.app(environ, start_response)
        try:
            header, _claims = self.admit(environ)
        except Refused as refused:
            log_event(
                logger,
                "cloud run refused the request",
                level=logging.WARNING,
                service=self.service,
                status=refused.status,
                reason=refused.reason,
            )
            title = "Unauthorized" if refused.status == 401 else "Forbidden"
            body = _PAGE.format(status=refused.status, title=title, path=environ.get("PATH_INFO", "/")).encode()
            start_response(
                f"{refused.status} {title}",
                [("Content-Type", "text/html; charset=UTF-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        environ = dict(environ)
        head, payload, _ = environ[header].split(" ", 1)[1].strip().split(".")
        environ[header] = f"Bearer {head}.{payload}.{SIGNATURE_REMOVED}"
        return self.app(environ, start_response)

    def admit(self, environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(header that carried the token, claims) of an admitted request, else Refused."""
        header = next((h for h in TOKEN_HEADERS if environ.get(h)), None)
        if header is None:
            raise Refused(401, "no token")
        scheme, _, token = str(environ[header]).strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise Refused(401, "not a bearer JWT")
        claims = self._verify(token)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Refused(401, "not a Google-issued token")
        audience = claims.get("aud")
        if audience not in self.audiences:
            raise Refused(401, "audience is not this service")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise Refused(401, "token carries no verified email")
        members = {f"serviceAccount:{email}", f"user:{email}"}
        if not members & self.invokers:
            raise Refused(403, "account lacks roles/run.invoker on the service")
        return header, claims

    def _verify(self, token: str) -> dict[str, Any]:
        from google.auth import exceptions as gexc
        from google.oauth2 import id_token

        from shared.account.identity import cert_cache

        try:
            return dict(
                id_token.verify_token(
                    token,
                    cert_cache(),
                    audience=None,
                    certs_url=self.certs_url,
                    clock_skew_in_seconds=self.clock_skew_seconds,
                )
            )
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise Refused(401, "signature, expiry or format invalid") from exc
