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


def authenticate_scheduler(request: Any, settings: Any) -> dict[str, Any] | None:
    """Defence in depth for the private renew function.

    In production Cloud Run IAM already admits only the scheduler's service account; when `scheduler_oidc_audience` is
    configured the function also verifies the OIDC token Cloud Scheduler sends (issuer Google, audience, and the
    invoker's email when configured). Returns the claims, or None when in-function verification is not configured.
    """
    audience = getattr(settings, "scheduler_oidc_audience", "")
    if not audience:
        return None
    token = bearer_token(request)
    claims = verify_id_token(
        token, audience=audience, issuer=GOOGLE_OIDC_ISSUERS, certs_url=settings.scheduler_oidc_certs_url
    )
    invoker = getattr(settings, "scheduler_invoker_email", "")
    if invoker and (claims.get("email") != invoker or claims.get("email_verified") is False):
        raise Unauthenticated("the scheduler token belongs to another service account")
    return claims
