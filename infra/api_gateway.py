"""A local stand-in for API Gateway, configured by the OpenAPI document Terraform deploys (infra/deployment.py
evaluates `local.openapi` of terraform/gateway.tf; nothing here repeats its routes).

Modelled on Google's documentation (API Gateway is a managed ESPv2):
- Routes: exactly the document's paths and methods; a path template's `{name}` matches one whole segment (no `/`);
  anything else is 404 "The current request is not defined by this API." before any backend is called.
- Security: an operation with `security: [{firebase: []}]` requires `Authorization: Bearer <JWT>` valid for the
  security definition's `x-google-issuer`, `x-google-jwks_uri` and `x-google-audiences`
  (https://cloud.google.com/api-gateway/docs/authenticating-users-firebase); failures are 401 with ESPv2's JSON
  `{"code": 401, "message": "Jwt is missing" | ...}`.
- Backend call: `x-google-backend.address` with its path translation
  (https://cloud.google.com/api-gateway/docs/passing-data): CONSTANT_ADDRESS calls the address as it is, with path
  parameters appended to the query string; APPEND_PATH_TO_ADDRESS appends the request path to the address; the query
  string is kept either way. The call is made as the API config's service account with a Google-signed ID token
  whose audience is `jwt_audience` (the address when absent); the caller's `Authorization` moves to
  `X-Forwarded-Authorization`
  (https://cloud.google.com/api-gateway/docs/authenticating-users-jwt#receiving_authenticated_results_in_your_api).
  `deadline` bounds the backend call (504 after it).
- CORS: managed API Gateway has no ESPv2 CORS flags, so preflights reach the backend through the document's OPTIONS
  operations (https://cloud.google.com/endpoints/docs/openapi/support-cors). Whether the gateway's own 401/404 carry
  CORS headers is not documented: by default they carry none (the least forgiving choice: a browser then sees a
  network error, never the 401 body); `cors_on_own_errors=True` adds `Access-Control-Allow-Origin: *`.

Locally the JWKS URI and the backends' run.app URLs are mapped to the stand-ins (`url_map`); Google-signed tokens
are minted by the Google stand-in for the gateway's account. `local_routes` are extra WSGI apps served by exact path
in front of the document's routes, for what only the local stack has (the demo sign-in of `make run`); production's
gateway has no such routes, and nothing in the OpenAPI document can add one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.logs import log_event

logger = logging.getLogger("infra.api_gateway")
NOT_DEFINED = "The current request is not defined by this API."
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class GatewayError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ApiGateway:
    """WSGI app: the managed gateway for one API config."""

    openapi: dict[str, Any]
    url_map: dict[str, str]  # production URL (backend address, JWKS URI) -> local URL
    token_for: Callable[[str], str]  # jwt_audience -> the gateway account's Google-signed ID token
    cors_on_own_errors: bool = False
    clock_skew_seconds: int = 10
    # Local only: {exact path: WSGI app} answered before routing (never a route of the OpenAPI document).
    local_routes: dict[str, Callable[..., Iterable[bytes]]] = field(default_factory=dict)
    _session: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- routing ----------------------------------------------------------------------------------------------------
    def route(self, path: str, method: str) -> tuple[dict[str, Any], dict[str, str]]:
        """(operation, path parameters) for a request: an exact path first, then the templates."""
        paths = self.openapi.get("paths") or {}
        found = [(paths[path], {})] if path in paths else []
        found += [(ops, params) for template, ops in paths.items() if (params := match_template(template, path))]
        for operations, params in found:
            if isinstance(operations, dict) and method.lower() in operations:
                return operations[method.lower()], params
        raise GatewayError(404, NOT_DEFINED)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        local = self.local_routes.get(path)
        if local is not None:
            return local(environ, start_response)
        try:
            operation, params = self.route(path, method)
            self.authenticate(operation, environ)
            status, headers, body = self.forward(operation, environ, params)
        except GatewayError as error:
            log_event(
                logger,
                "gateway refused the request",
                level=logging.WARNING,
                path=path,
                method=method,
                status=error.status,
                reason=error.message,
            )
            body = json.dumps({"code": error.status, "message": error.message}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if error.status == 401:
                headers.append(("WWW-Authenticate", "Bearer"))
            if self.cors_on_own_errors:
                headers.append(("Access-Control-Allow-Origin", "*"))
            start_response(f"{error.status} {'Unauthorized' if error.status == 401 else 'Error'}", headers)
            return [body]
        start_response(status, headers)
        return [body]

    # -- security ---------------------------------------------------------------------------------------------------
    def authenticate(self, operation: dict[str, Any], environ: dict[str, Any]) -> dict[str, Any] | None:
        requirements = operation.get("security") or []
        if not requirements:
            return None
        definitions = self.openapi.get("securityDefinitions") or {}
        errors = []
        for requirement in requirements:  # alternatives: any one satisfied is enough
            for name in requirement:
                try:
                    return self._check_jwt(definitions[name], environ)
                except GatewayError as error:
                    errors.append(error)
        raise errors[0] if errors else GatewayError(401, "Jwt is missing")

    def _check_jwt(self, definition: dict[str, Any], environ: dict[str, Any]) -> dict[str, Any]:
        from google.auth import exceptions as gexc
        from google.auth import jwt as gjwt
        from google.oauth2 import id_token

        from shared.account.identity import cert_cache

        header = str(environ.get("HTTP_AUTHORIZATION", "")).strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GatewayError(401, "Jwt is missing")
        try:
            unverified = gjwt.decode(token, verify=False)
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise GatewayError(401, "Jwt is not in the form of Header.Payload.Signature") from exc
        if unverified.get("iss") != definition.get("x-google-issuer"):
            raise GatewayError(401, "Jwt issuer is not configured")
        jwks = definition.get("x-google-jwks_uri", "")
        try:
            claims = dict(
                id_token.verify_token(
                    token,
                    cert_cache(),
                    audience=None,
                    certs_url=self.url_map.get(jwks, jwks),
                    clock_skew_in_seconds=self.clock_skew_seconds,
                )
            )
        except (ValueError, gexc.GoogleAuthError) as exc:
            message = (
                "Jwt is expired"
                if "expired" in str(exc).lower() or "too late" in str(exc).lower()
                else "Jwt verification fails"
            )
            raise GatewayError(401, message) from exc
        allowed = {a.strip() for a in str(definition.get("x-google-audiences", "")).split(",") if a.strip()}
        audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if not allowed & set(audiences):
            raise GatewayError(401, "Audiences in Jwt are not allowed")
        return claims

    # -- backend ----------------------------------------------------------------------------------------------------
    def forward(
        self, operation: dict[str, Any], environ: dict[str, Any], params: dict[str, str] | None = None
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        import urllib.parse

        import requests

        backend = operation.get("x-google-backend") or {}
        address = str(backend.get("address", ""))
        translation = backend.get("path_translation", "CONSTANT_ADDRESS")
        if translation not in ("CONSTANT_ADDRESS", "APPEND_PATH_TO_ADDRESS"):
            raise GatewayError(500, f"unknown path translation {translation}")
        target = self.url_map.get(address.rstrip("/"))
        if target is None:
            raise GatewayError(503, f"no local backend for {address}")
        query = environ.get("QUERY_STRING", "")
        if translation == "APPEND_PATH_TO_ADDRESS":
            target += urllib.parse.quote(environ.get("PATH_INFO", "/") or "/")
        elif params:
            query = "&".join(q for q in (query, urllib.parse.urlencode(params)) if q)
        url = f"{target}?{query}" if query else target
        headers = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in HOP_BY_HOP:
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        if "Authorization" in headers:
            headers["X-Forwarded-Authorization"] = headers.pop("Authorization")
        audience = backend.get("jwt_audience") or address
        headers["Authorization"] = f"Bearer {self.token_for(str(audience))}"
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            response = self._client().request(
                environ.get("REQUEST_METHOD", "GET"),
                url,
                headers=headers,
                data=body,
                timeout=float(backend.get("deadline") or 15.0),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise GatewayError(504, "upstream request timeout") from exc
        except requests.RequestException as exc:
            raise GatewayError(503, "upstream connect error") from exc
        out = [(k, v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}]
        out.append(("Content-Length", str(len(response.content))))
        return f"{response.status_code} {response.reason or ''}".strip(), out, response.content

    def _client(self) -> Any:
        with self._lock:
            if self._session is None:
                import requests

                self._session = requests.Session()
            return self._session


def match_template(template: str, path: str) -> dict[str, str] | None:
    """Path parameters if `path` matches the OpenAPI path template (`{name}` is one whole segment), else None."""
    if "{" not in template:
        return None
    names, values = template.strip("/").split("/"), path.strip("/").split("/")
    if len(names) != len(values):
        return None
    params: dict[str, str] = {}
    for name, value in zip(names, values, strict=True):
        if name.startswith("{") and name.endswith("}"):
            if not value:
                return None
            params[name[1:-1]] = value
        elif name != value:
            return None
    return params


@dataclass
class StandinTokens:
    """Google-signed ID tokens for one service account, minted by the Google stand-in, cached per audience."""

    control: Any  # infra.google_standin.control.ControlClient
    email: str
    lifetime: int = 3600
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, audience: str) -> str:
        with self._lock:
            cached = self._cache.get(audience)
            if cached and cached[0] > time.time() + 300:
                return cached[1]
        token = self.control.mint_id_token(
            self.email.split("@")[0],
            audience,
            issuer="https://accounts.google.com",
            email=self.email,
            issued_at=time.time(),
            expires_in=self.lifetime,
            claims={"email_verified": True},
        )
        with self._lock:
            self._cache[audience] = (time.time() + self.lifetime, token)
        return token
