"""OAuth 2.0 (authorization code + PKCE, refresh, revoke), bearer checks, and Firebase-style ID tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from .clock import Clock
from .errors import auth_error, insufficient_permissions
from .options import StandinOptions

SCOPE_PREFIX = "https://www.googleapis.com/auth/"
DEFAULT_SCOPES = [SCOPE_PREFIX + "calendar"]
CODE_LIFETIME = 600


class OAuthError(Exception):
    """A token-endpoint error: answered as `{"error", "error_description"}`."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty = any redirect allowed


@dataclass
class RefreshToken:
    token: str
    email: str
    client_id: str
    scopes: list[str]
    issued_at: float
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    email: str
    client_id: str
    scopes: list[str]
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class AuthCode:
    code: str
    email: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    offline: bool
    challenge: str | None
    challenge_method: str | None
    expires_at: float
    used: bool = False


def account_subject(email: str) -> str:
    """A Google account's `sub`: a stable decimal id that is not the email (the email of an account can change)."""
    return "1" + str(int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:8], "big")).zfill(20)


def _normalise_scopes(scopes: list[str] | str | None) -> list[str]:
    if scopes is None:
        return list(DEFAULT_SCOPES)
    if isinstance(scopes, str):
        scopes = scopes.split()
    return [s if s.startswith(("https://", "openid", "email", "profile")) else SCOPE_PREFIX + s for s in scopes]


class KeyPair:
    """RSA key plus a self-signed x509 certificate, as served at Google's x509 metadata endpoints."""

    def __init__(self, clock: Clock) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(20)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650)).sign(self.key, hashes.SHA256())
        )
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        self.signer = crypt.RSASigner.from_string(pem, key_id=self.kid)
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()


class OAuthServer:
    """Clients, codes and tokens; thread-safe."""

    def __init__(self, clock: Clock, options: StandinOptions) -> None:
        self.clock = clock
        self.options = options
        self.lock = threading.RLock()
        self.keys = KeyPair(clock)
        self._wrong_keys: KeyPair | None = None
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clients: dict[str, Client] = {}
            self.codes: dict[str, AuthCode] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.current_user: str | None = None
            self.register_client(self.options.default_client_id, self.options.default_client_secret)

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None) -> Client:
        with self.lock:
            client = Client(client_id, client_secret, list(redirect_uris or []))
            self.clients[client_id] = client
            return client

    # -- authorization endpoint ------------------------------------------------------------------------------------
    def authorize(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Grant consent immediately; returns (redirect_uri, params for the redirect). ValueError on bad input."""
        with self.lock:
            client = self.clients.get(query.get("client_id", ""))
            if client is None:
                raise ValueError("invalid_client: The OAuth client was not found.")
            redirect_uri = query.get("redirect_uri", "")
            if not redirect_uri or (client.redirect_uris and redirect_uri not in client.redirect_uris):
                raise ValueError("redirect_uri_mismatch")
            if query.get("response_type") != "code":
                raise ValueError("unsupported_response_type")
            email = (query.get("login_hint") or self.current_user or "").lower()
            if not email:
                raise ValueError("no user: pass login_hint or set the current user via control")
            method = query.get("code_challenge_method")
            if query.get("code_challenge") and method not in (None, "S256", "plain"):
                raise ValueError("invalid code_challenge_method")
            code = "4/" + secrets.token_urlsafe(32)
            scopes = _normalise_scopes(query.get("scope"))
            self.codes[code] = AuthCode(
                code, email, client.client_id, redirect_uri, scopes, query.get("access_type") == "offline",
                query.get("code_challenge"), method or ("plain" if query.get("code_challenge") else None),
                self.clock.time() + CODE_LIFETIME,
            )
            params = {"code": code, "scope": " ".join(scopes)}
            if "state" in query:
                params["state"] = query["state"]
            return redirect_uri, params

    # -- token endpoint --------------------------------------------------------------------------------------------
    def _client(self, form: dict[str, str], client_id_hint: str | None = None) -> Client:
        client_id = form.get("client_id") or client_id_hint or ""
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if form.get("client_secret") != client.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")
        return client

    def token(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        """Answer the token endpoint; returns (body, account email)."""
        with self.lock:
            grant = form.get("grant_type")
            if grant == "authorization_code":
                return self._exchange_code(form)
            if grant == "refresh_token":
                return self._refresh(form)
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _exchange_code(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        client = self._client(form)
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or code.expires_at < self.clock.time() or code.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        if code.challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError(400, "invalid_grant", "Missing code verifier.")
            if code.challenge_method == "S256":
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            else:
                computed = verifier
            if computed != code.challenge:
                raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        code.used = True
        access = self.issue_access_token(code.email, client.client_id, code.scopes)
        body = self._token_body(access)
        if code.offline:
            body["refresh_token"] = self.issue_refresh_token(code.email, client.client_id, code.scopes).token
        if "openid" in code.scopes:
            body["id_token"] = self.mint_id_token(account_subject(code.email), client.client_id,
                                                  issuer="https://accounts.google.com", email=code.email)
        return body, code.email

    def _refresh(self, form: dict[str, str]) -> tuple[dict[str, Any], str]:
        client = self._client(form)
        record = self.refresh_tokens.get(form.get("refresh_token", ""))
        if record is None or record.revoked or record.client_id != client.client_id:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = record.scopes
        if form.get("scope"):
            requested = _normalise_scopes(form["scope"])
            if not set(requested) <= set(record.scopes):
                raise OAuthError(400, "invalid_scope", "Some requested scopes were invalid.")
            scopes = requested
        access = self.issue_access_token(record.email, client.client_id, scopes, record.token)
        return self._token_body(access), record.email

    def _token_body(self, access: AccessToken) -> dict[str, Any]:
        return {"access_token": access.token, "expires_in": self.options.access_token_lifetime,
                "scope": " ".join(access.scopes), "token_type": "Bearer"}

    def issue_refresh_token(self, email: str, client_id: str, scopes: list[str] | str | None) -> RefreshToken:
        with self.lock:
            record = RefreshToken("1//" + secrets.token_urlsafe(40), email.lower(), client_id,
                                  _normalise_scopes(scopes), self.clock.time())
            self.refresh_tokens[record.token] = record
            live = sorted((t for t in self.refresh_tokens.values()
                           if t.email == record.email and t.client_id == client_id and not t.revoked),
                          key=lambda t: t.issued_at)
            for old in live[: max(0, len(live) - self.options.refresh_tokens_per_client_limit)]:
                old.revoked = True  # Google silently invalidates the oldest beyond the limit
            return record

    def issue_access_token(self, email: str, client_id: str, scopes: list[str] | str | None,
                           refresh_token: str | None = None) -> AccessToken:
        with self.lock:
            record = AccessToken("ya29." + secrets.token_urlsafe(48), email.lower(), client_id,
                                 _normalise_scopes(scopes), self.clock.time() + self.options.access_token_lifetime,
                                 refresh_token)
            self.access_tokens[record.token] = record
            return record

    def revoke(self, token: str) -> bool:
        """Revoke a refresh token (and its access tokens) or an access token; False when unknown.

        As Google's "Revoking a token" (developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke):
        revoking an access token that has a corresponding refresh token revokes that refresh token too.
        """
        with self.lock:
            if self.options.revoke_whole_grant:
                return self._revoke_grant(token)
            access = self.access_tokens.get(token)
            if access is not None and access.refresh_token in self.refresh_tokens:
                token = access.refresh_token
            if token in self.refresh_tokens:
                self.refresh_tokens[token].revoked = True
                for access in self.access_tokens.values():
                    if access.refresh_token == token:
                        access.revoked = True
                return True
            if token in self.access_tokens:
                self.access_tokens[token].revoked = True
                return True
            return False

    def _revoke_grant(self, token: str) -> bool:
        """Option `revoke_whole_grant`: every token of the same user and client goes (lock held)."""
        record = self.refresh_tokens.get(token) or self.access_tokens.get(token)
        if record is None:
            return False
        grant = (record.email, record.client_id)
        for other in [*self.refresh_tokens.values(), *self.access_tokens.values()]:
            if (other.email, other.client_id) == grant:
                other.revoked = True
        return True

    def expire_access_tokens(self) -> int:
        with self.lock:
            now = self.clock.time()
            for access in self.access_tokens.values():
                access.expires_at = min(access.expires_at, now - 1)
            return len(self.access_tokens)

    # -- bearer check ----------------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None, query_token: str | None) -> AccessToken:
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        token = token or query_token
        with self.lock:
            record = self.access_tokens.get(token or "")
            if record is None or record.revoked or record.expires_at <= self.clock.time():
                raise auth_error()
            return record

    @staticmethod
    def check_scopes(access: AccessToken, allowed: list[str]) -> None:
        if allowed and not set(access.scopes) & set(allowed):
            raise insufficient_permissions()

    # -- ID tokens (Firebase Authentication style) -----------------------------------------------------------------
    def certs(self) -> dict[str, str]:
        return {self.keys.kid: self.keys.cert_pem}

    def mint_id_token(self, uid: str, audience: str, *, issuer: str | None = None, expires_in: int = 3600,
                      email: str | None = None, issued_at: float | None = None, wrong_key: bool = False,
                      claims: dict[str, Any] | None = None) -> str:
        """RS256 token verifiable with google.oauth2.id_token.verify_token(..., certs_url=<our x509 url>)."""
        iat = int(issued_at if issued_at is not None else self.clock.time())
        payload: dict[str, Any] = {
            "iss": issuer or f"https://securetoken.google.com/{audience}",
            "aud": audience, "sub": uid, "user_id": uid, "iat": iat, "exp": iat + expires_in, "auth_time": iat,
        }
        if email:
            payload["email"] = email
            payload["email_verified"] = True
        payload.update(claims or {})
        keys = self.keys
        if wrong_key:
            if self._wrong_keys is None:
                self._wrong_keys = KeyPair(self.clock)
            keys = self._wrong_keys
            keys.signer._key_id = self.keys.kid  # same kid, different key: signature must fail
        return jwt.encode(keys.signer, payload).decode()
