"""End-user authentication for the user-facing functions: Firebase Authentication / Identity Platform ID tokens.

Why here: the user id of every user-facing call comes only from a verified ID token (invariant 6), never from a body or
a query string. Verification is google-auth's own `id_token.verify_token` against the configured certificate URL, plus
checks of issuer and subject. google-auth fetches the certificates on every call; `CachingRequest` keeps them for their
`Cache-Control: max-age` (bounded) on one pooled `requests` session, so a warm function verifies without network I/O.
A token signed by an unknown key triggers at most one early refetch per minute (key rotation).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SyncError, Unauthenticated

DEFAULT_CERT_TTL = 300.0
MIN_CERT_TTL = 60.0
MAX_CERT_TTL = 6 * 3600.0
REFETCH_COOLDOWN = 60.0
MAX_TOKEN_CHARS = 8192
_MAX_AGE = re.compile(r"max-age=(\d+)")


class AuthConfigError(SyncError):
    """The service is not configured to verify ID tokens (issuer / audience missing): a deployment error."""

    code = "auth_config"


@dataclass
class _CachedResponse:
    status: int
    headers: dict[str, str]
    data: bytes


@dataclass
class CachingRequest:
    """A google-auth transport Request that caches successful GETs (certificate documents) for their max-age."""

    default_ttl: float = DEFAULT_CERT_TTL
    _cache: dict[str, tuple[float, _CachedResponse]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inner: Any = None
    fetches: int = 0

    def _transport(self) -> Any:
        if self._inner is None:
            import google.auth.transport.requests
            import requests

            self._inner = google.auth.transport.requests.Request(session=requests.Session())
        return self._inner

    def invalidate(self, url: str) -> bool:
        """Drop a cached document unless it was fetched less than REFETCH_COOLDOWN ago; True when dropped."""
        with self._lock:
            entry = self._cache.get(url)
            if entry is None:
                return False
            expires_at, _ = entry
            fetched_at = expires_at - self._ttl_of(entry[1])
            if time.monotonic() - fetched_at < REFETCH_COOLDOWN:
                return False
            del self._cache[url]
            return True

    def _ttl_of(self, response: _CachedResponse) -> float:
        control = {k.lower(): v for k, v in response.headers.items()}.get("cache-control", "")
        match = _MAX_AGE.search(control)
        ttl = float(match.group(1)) if match else self.default_ttl
        return max(MIN_CERT_TTL, min(MAX_CERT_TTL, ttl))

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        if method != "GET" or body is not None:
            return self._transport()(url, method=method, body=body, headers=headers, **kwargs)
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(url)
            if entry is not None and entry[0] > now:
                return entry[1]
        response = self._transport()(url, method="GET", headers=headers, timeout=kwargs.get("timeout", 10))
        self.fetches += 1
        cached = _CachedResponse(int(response.status), dict(response.headers), bytes(response.data))
        if cached.status == 200:
            with self._lock:
                self._cache[url] = (now + self._ttl_of(cached), cached)
        return cached


_request = CachingRequest()


def cert_cache() -> CachingRequest:
    return _request


@dataclass(frozen=True)
class VerifiedUser:
    """Who is calling, from a verified token: `user_id` is the token's `sub`."""

    user_id: str
    email: str | None
    claims: dict[str, Any]


def bearer_token(request: Any) -> str:
    """The user's bearer token: `X-Forwarded-Authorization` when API Gateway fronts the function (the gateway puts its
    own service-account token in `Authorization` and forwards the caller's there), else `Authorization`. Never a
    query parameter or the body. In production only the gateway may invoke these functions, so the forwarded header
    cannot be set by anyone else; it is verified exactly like the direct one.
    """
    headers = request.headers if request is not None else {}
    header = headers.get("X-Forwarded-Authorization") or headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("an `Authorization: Bearer <ID token>` header is required")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise Unauthenticated("the bearer token is not a JWT")
    return token


def verify_id_token(
    token: str,
    *,
    audience: str,
    issuer: str | tuple[str, ...],
    certs_url: str,
    request: CachingRequest | None = None,
    clock_skew_seconds: int = 10,
) -> dict[str, Any]:
    """Verify signature, expiry, audience and issuer; any failure is `Unauthenticated` (never leaks why in detail)."""
    from google.auth import exceptions as gexc
    from google.oauth2 import id_token

    if not audience or not issuer or not certs_url:
        raise AuthConfigError("ID token verification is not configured (issuer, audience and certs URL are required)")
    transport = request or _request
    claims: dict[str, Any] | None = None
    for attempt in range(2):
        try:
            claims = dict(
                id_token.verify_token(
                    token, transport, audience=audience, certs_url=certs_url, clock_skew_in_seconds=clock_skew_seconds
                )
            )
            break
        except gexc.TransportError as exc:
            raise Unauthenticated("the token signing certificates could not be fetched") from exc
        except (ValueError, gexc.GoogleAuthError) as exc:
            # A key rotation shows up as "no certificate for kid" / bad signature: refetch once, then give up.
            message = str(exc)
            rotated = "Certificate for key id" in message or "signature" in message.lower()
            if attempt == 0 and rotated and transport.invalidate(certs_url):
                continue
            raise Unauthenticated("the ID token is invalid or expired", reason=_reason(message)) from exc
    assert claims is not None
    issuers = (issuer,) if isinstance(issuer, str) else issuer
    if claims.get("iss") not in issuers:
        raise Unauthenticated("the ID token is invalid or expired", reason="wrong issuer")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise Unauthenticated("the ID token has no subject")
    return claims


def _reason(message: str) -> str:
    """A short, non-secret reason for logs and the 401 body."""
    lowered = message.lower()
    if "expired" in lowered or "too late" in lowered:
        return "expired"
    if "audience" in lowered:
        return "wrong audience"
    if "too early" in lowered or "used too early" in lowered:
        return "not yet valid"
    if "certificate for key id" in lowered or "signature" in lowered:
        return "bad signature"
    return "malformed"


def authenticate_user(request: Any, settings: Any) -> VerifiedUser:
    """The calling end user, from the Authorization header's Firebase / Identity Platform ID token."""
    check_gateway_token(request, settings)
    token = bearer_token(request)
    claims = verify_id_token(
        token,
        audience=settings.id_token_audience,
        issuer=settings.id_token_issuer,
        certs_url=settings.id_token_certs_url,
    )
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return VerifiedUser(user_id=claims["sub"], email=email, claims=claims)


GOOGLE_OIDC_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
# Cloud Run's marker for a Google-signed token whose signature it checked and then removed before forwarding it.
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"


def forwarded_token_claims(token: str, *, clock_skew_seconds: int = 10, now: float | None = None) -> dict[str, Any]:
    """The claims of a token Cloud Run IAM already verified, read without checking a signature.

    Cloud Run checks a Google-signed ID token's signature, audience and the caller's run.invoker grant, then forwards
    the token with its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`
    (https://cloud.google.com/run/docs/troubleshooting#signature-removed). A private function can therefore never
    verify the signature again; it can only read the claims and check they are the ones it expects. Expiry is checked
    here; `iat`/`exp` must be integers.
    """
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("the bearer token is not a JWT")
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise Unauthenticated("the bearer token is not a JWT", reason="malformed") from exc
    if not isinstance(claims, dict):
        raise Unauthenticated("the bearer token is not a JWT", reason="malformed")
    moment = time.time() if now is None else now
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, int) or not isinstance(issued, int):
        raise Unauthenticated("the ID token is invalid or expired", reason="malformed")
    if expires + clock_skew_seconds < moment:
        raise Unauthenticated("the ID token is invalid or expired", reason="expired")
    if issued - clock_skew_seconds > moment:
        raise Unauthenticated("the ID token is invalid or expired", reason="not yet valid")
    return claims


def authenticate_scheduler(request: Any, settings: Any) -> dict[str, Any] | None:
    """Check the claims of the token Cloud Run IAM admitted to the private renew function.

    Cloud Run IAM verified the token's signature and that its account may invoke the service; the function checks
    what IAM does not know about: that the token was minted for this function's audience (the run.app URL Terraform
    gives Cloud Scheduler, SCHEDULER_OIDC_AUDIENCE), by Google, for the scheduler's own account with a verified email,
    and has not expired. The signature is never checked here: production removes it. Returns the claims, or None when
    SCHEDULER_OIDC_AUDIENCE is not configured.
    """
    audience = getattr(settings, "scheduler_oidc_audience", "")
    if not audience:
        return None
    claims = forwarded_token_claims(bearer_token(request))
    token_audience = claims.get("aud")
    audiences = token_audience if isinstance(token_audience, list) else [token_audience]
    if audience not in audiences:
        raise Unauthenticated("the ID token is invalid or expired", reason="wrong audience")
    if claims.get("iss") not in GOOGLE_OIDC_ISSUERS:
        raise Unauthenticated("the ID token is invalid or expired", reason="wrong issuer")
    invoker = getattr(settings, "scheduler_invoker_email", "")
    if invoker and claims.get("email") != invoker:
        raise Unauthenticated("the scheduler token belongs to another service account")
    if claims.get("email_verified") is not True:
        raise Unauthenticated("the scheduler token's email is not verified")
    return claims


def check_gateway_token(request: Any, settings: Any) -> dict[str, Any] | None:
    """Check that a user-facing call came through the API gateway: its own token (in `Authorization`, signature
    removed by Cloud Run IAM) names one of GATEWAY_JWT_AUDIENCES (the jwt_audience Terraform gives each backend) and the
    gateway's account. The user's token is then in `X-Forwarded-Authorization`. None when not configured."""
    audiences = [a.strip() for a in str(getattr(settings, "gateway_jwt_audiences", "") or "").split(",") if a.strip()]
    if not audiences:
        return None
    headers = request.headers if request is not None else {}
    scheme, _, token = str(headers.get("Authorization", "")).strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or not headers.get("X-Forwarded-Authorization"):
        raise Unauthenticated("this function is reached only through the API gateway")
    claims = forwarded_token_claims(token.strip())
    token_audience = claims.get("aud")
    if token_audience not in audiences or claims.get("iss") not in GOOGLE_OIDC_ISSUERS:
        raise Unauthenticated("this function is reached only through the API gateway", reason="wrong audience")
    invoker = getattr(settings, "gateway_invoker_email", "")
    if invoker and (claims.get("email") != invoker or claims.get("email_verified") is not True):
        raise Unauthenticated("this function is reached only through the API gateway", reason="wrong invoker")
    return claims
