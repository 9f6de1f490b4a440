"""Connecting a Google account: authorization URL with signed state and PKCE, code exchange, token revocation.

Why this shape:
- The flow is bound to the CRM user who finishes it, not only to the one who started it (login CSRF): Google's
  redirect only carries `code` and `state` back to the CRM page, and the exchange happens when that page presents the
  same user's ID token (`complete_connection(..., user_id=...)`). A consent URL started by one user and opened by
  another is refused with 403 `oauth_user_mismatch` and links nothing. A `__Host-` cookie was rejected: oauth_start
  is reached by a cross-site `fetch()` (CRM origin -> the gateway's host), whose `SameSite=Lax` cookies browsers drop
  and whose `SameSite=None` cookies are third-party cookies that Safari and Firefox block by default.
- One Google account belongs to one CRM user: `google_accounts/{sub}` (Google's stable subject id, from the ID token
  the token endpoint returns for the `openid` scope) is created if absent at the first link and deleted on
  disconnect; a second CRM user linking the same account gets 409 and the fresh token is dropped unused (not revoked:
  it shares the holder's grant, see below).
- A reconnect to ANOTHER Google account revokes the old account's refresh token. A reconnect to the SAME account does
  not: Google's revocation is grant-wide (revoking an access token revokes its refresh token, per "Revoking a token" in
  Google's OAuth web-server guide; RFC 7009 lets a server revoke every token of the same grant, and a revocation is
  reported to sign the app out of that user's other tokens too), so revoking the replaced token would also kill the
  one just issued. The replaced token of the same account is only forgotten (its ciphertext overwritten); Google
  invalidates the oldest beyond its per-client limit of refresh tokens.
- `state` is `v1.<payload>.<hmac>`: the payload names the CRM user, a nonce and an expiry (10 minutes); the HMAC key is
  derived from the token encryption key (`cipher.derive_key("oauth-state")`), so no extra secret is needed. Tampering,
  expiry or a replay are a 400 and change nothing.
- The PKCE verifier never travels: it is stored encrypted (bound to the user) in `oauth_states/{nonce}`, a short-lived
  document consumed exactly once (a delete guarded by the read's update time), so a state cannot be replayed.
- The callback knows the user only from the verified state. The refresh token is stored encrypted with its key id; the
  account email is the primary calendar's id (`calendarList.get("primary")`), which needs no extra scope.
- Reconnecting keeps calendars, sync tokens and events (no duplicates), replaces the ciphertext, and marks enabled
  calendars due so the next renewal run re-watches and catches up.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.config import GOOGLE_SCOPES
from shared.errors import BadRequest, Conflict, Forbidden, GoogleTransientError, SyncError
from shared.logs import log_event
from shared.models import Integration, IntegrationStatus

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

STATE_TTL_SECONDS = 600
STATE_VERSION = "v1"
TOKEN_HTTP_TIMEOUT = 15
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
# Each needed capability and the granted scopes that satisfy it.
REQUIRED_CAPABILITIES: dict[str, frozenset[str]] = {
    "events": frozenset({SCOPE_PREFIX + "calendar.events", SCOPE_PREFIX + "calendar"}),
    "calendar_list": frozenset(
        {SCOPE_PREFIX + "calendar.calendarlist.readonly", SCOPE_PREFIX + "calendar.readonly", SCOPE_PREFIX + "calendar"}
    ),
}


class InvalidState(BadRequest):
    code = "invalid_state"


class StateUserMismatch(Forbidden):
    """The consent was started by another CRM user than the one completing it (login CSRF)."""

    code = "oauth_user_mismatch"


class AccountAlreadyLinked(Conflict):
    """The Google account is already connected to another CRM user."""

    code = "google_account_in_use"


class OAuthExchangeError(SyncError):
    """Google's token endpoint refused the code (expired, reused, wrong verifier...)."""

    http_status = 400
    code = "oauth_exchange_failed"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 86-char verifier from 64 random bytes (RFC 7636 allows 43-128)."""
    verifier = _b64(secrets.token_bytes(64))
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


# --- state ------------------------------------------------------------------------------------------------------------
def sign_state(ctx: AppContext, user_id: str, nonce: str, expires_at: dt.datetime) -> str:
    payload = _b64(
        json.dumps({"u": user_id, "n": nonce, "e": int(expires_at.timestamp())}, separators=(",", ":")).encode()
    )
    signature = hmac.new(ctx.cipher.derive_key("oauth-state"), f"{STATE_VERSION}.{payload}".encode(), hashlib.sha256)
    return f"{STATE_VERSION}.{payload}.{_b64(signature.digest())}"


@dataclass(frozen=True)
class StateClaims:
    user_id: str
    nonce: str
    expires_at: dt.datetime


def verify_state(ctx: AppContext, state: str | None) -> StateClaims:
    """Check signature and expiry; raises InvalidState (400) on anything else."""
    if not state or len(state) > 1024:
        raise InvalidState("the OAuth state is missing or malformed")
    parts = state.split(".")
    if len(parts) != 3 or parts[0] != STATE_VERSION:
        raise InvalidState("the OAuth state is missing or malformed")
    expected = hmac.new(ctx.cipher.derive_key("oauth-state"), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
    try:
        presented = _unb64(parts[2])
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidState("the OAuth state is missing or malformed") from exc
    if not hmac.compare_digest(presented, expected.digest()):
        raise InvalidState("the OAuth state signature does not match")
    try:
        claims = StateClaims(
            user_id=str(payload["u"]),
            nonce=str(payload["n"]),
            expires_at=dt.datetime.fromtimestamp(payload["e"], dt.UTC),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidState("the OAuth state is missing or malformed") from exc
    if claims.expires_at <= ctx.clock() or not claims.user_id or not claims.nonce:
        raise InvalidState("the OAuth state has expired; start again")
    return claims


def _state_ref(ctx: AppContext, nonce: str) -> Any:
    return ctx.store.oauth_state_ref(nonce)


def build_authorization_url(ctx: AppContext, user_id: str, *, login_hint: str | None = None) -> str:
    """The consent URL for this user; the PKCE verifier is kept server-side, encrypted, for 10 minutes."""
    settings = ctx.settings
    if not settings.oauth_client_id or not settings.oauth_redirect_uri:
        raise SyncError("OAuth is not configured (client id and redirect URI are required)")
    now = ctx.clock()
    expires_at = now + dt.timedelta(seconds=STATE_TTL_SECONDS)
    nonce = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    verifier_ciphertext, _ = ctx.cipher.encrypt(verifier, owner=user_id)
    created = ctx.store.create_if_absent(
        _state_ref(ctx, nonce),
        {"user_id": user_id, "verifier_ciphertext": verifier_ciphertext, "created_at": now, "expires_at": expires_at},
    )
    if not created:  # 192 random bits colliding: refuse rather than overwrite
        raise SyncError("could not allocate an OAuth state; try again")
    params = {
        "client_id": settings.oauth_client_id,
        "redirect_uri": settings.oauth_redirect_uri,
        "response_type": "code",
        "scope": " ".join(GOOGLE_SCOPES),
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": sign_state(ctx, user_id, nonce, expires_at),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    log_event(logger, "oauth started", user_id=user_id)
    return f"{settings.oauth_auth_uri}?{urllib.parse.urlencode(params)}"


def consume_state(ctx: AppContext, claims: StateClaims) -> str:
    """Read and delete `oauth_states/{nonce}` exactly once; returns the PKCE verifier. A second use is a 400."""
    ref = _state_ref(ctx, claims.nonce)
    snapshot = ctx.store.get_document(ref)
    data = snapshot.to_dict() if snapshot.exists else None
    if not data or data.get("user_id") != claims.user_id:
        raise InvalidState("the OAuth state was already used or is unknown")
    if not ctx.store.delete_document(ref, last_update_time=snapshot.update_time):
        raise InvalidState("the OAuth state was already used")
    expires_at = data.get("expires_at")
    if isinstance(expires_at, dt.datetime) and expires_at <= ctx.clock():
        raise InvalidState("the OAuth state has expired; start again")
    return ctx.cipher.decrypt(data["verifier_ciphertext"], owner=claims.user_id)


# --- token endpoint ---------------------------------------------------------------------------------------------------
_session: Any = None


def _http() -> Any:
    global _session
    if _session is None:
        import requests

        _session = requests.Session()
    return _session


def exchange_code(ctx: AppContext, code: str, verifier: str) -> dict[str, Any]:
    """POST the authorization code (and PKCE verifier) to Google's token endpoint."""
    settings = ctx.settings
    form = {
        "code": code,
        "client_id": settings.oauth_client_id,
        "client_secret": settings.oauth_client_secret,
        "redirect_uri": settings.oauth_redirect_uri,
        "grant_type": "authorization_code",
        "code_verifier": verifier,
    }
    try:
        response = _http().post(settings.oauth_token_uri, data=form, timeout=TOKEN_HTTP_TIMEOUT)
    except OSError as exc:
        raise GoogleTransientError("the Google token endpoint did not answer", status=503, reason="transport") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500:
        raise GoogleTransientError("the Google token endpoint failed", status=response.status_code, reason="backend")
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        error = body.get("error", "") if isinstance(body, dict) else ""
        raise OAuthExchangeError("Google refused the authorization code", reason=str(error)[:64])
    return body


def revoke_token(ctx: AppContext, token: str) -> bool:
    """Revoke a refresh (or access) token at Google. True when revoked or already invalid; False on failure."""
    try:
        response = _http().post(
            ctx.settings.oauth_revoke_uri,
            data={"token": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=TOKEN_HTTP_TIMEOUT,
        )
    except OSError:
        return False
    if response.status_code == 200:
        return True
    # 400 invalid_token: already revoked or expired, which is the outcome we want.
    return response.status_code == 400


def missing_capabilities(scopes: list[str]) -> list[str]:
    granted = set(scopes)
    return [name for name, satisfying in REQUIRED_CAPABILITIES.items() if not granted & satisfying]


def primary_calendar_id(ctx: AppContext, refresh_token: str, access_token: str, scopes: list[str]) -> str:
    """The account's primary calendar id, which is its email address."""
    from shared.gcal.client import CalendarClient, build_credentials

    credentials = build_credentials(refresh_token, ctx.settings, scopes)
    credentials.token = access_token
    client = CalendarClient(credentials, ctx.settings, sleep=ctx.sleep)
    entry = client.execute(client.service.calendarList().get(calendarId="primary"))
    return str(entry["id"])


@dataclass(frozen=True)
class ConnectResult:
    integration: Integration
    reconnected: bool
    account_changed: bool


def google_subject(ctx: AppContext, token_body: dict[str, Any]) -> str:
    """The Google account's stable subject id (`sub`) from the ID token in the token endpoint's answer.

    The ID token came straight from Google's token endpoint over TLS, so its issuer is known without checking the
    signature (OpenID Connect Core 3.1.3.7; "Obtain user information from the ID token" on Google's OpenID Connect
    page); its audience must still be our client.
    """
    id_token = token_body.get("id_token")
    try:
        claims = json.loads(_unb64(str(id_token).split(".")[1])) if id_token else None
    except (ValueError, IndexError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict) or claims.get("aud") != ctx.settings.oauth_client_id or not claims.get("sub"):
        raise OAuthExchangeError("Google returned no usable ID token (the openid scope was not granted)")
    return str(claims["sub"])


def _refuse_other_users_flow(ctx: AppContext, claims: StateClaims, user_id: str) -> None:
    """Burn the state and refuse: the consent was started by another CRM user (a login CSRF attempt)."""
    with contextlib.suppress(InvalidState):
        consume_state(ctx, claims)
    log_event(
        logger,
        "oauth flow finished by another user refused",
        level=logging.WARNING,
        user_id=user_id,
        started_by=claims.user_id,
    )
    raise StateUserMismatch(
        "this Google connection was started by another CRM user; start again from your own settings page"
    )


def _revoke_replaced_token(ctx: AppContext, existing: Integration | None, user_id: str) -> bool:
    """Revoke the refresh token a reconnect replaced, so it can no longer mint access tokens."""
    if existing is None or not existing.refresh_token_ciphertext:
        return False
    try:
        old_token = ctx.cipher.decrypt(existing.refresh_token_ciphertext, owner=user_id)
    except SyncError:
        return False
    revoked = revoke_token(ctx, old_token)
    if not revoked:
        log_event(logger, "replaced refresh token not revoked", level=logging.WARNING, user_id=user_id)
    return revoked


def _detach_old_events(ctx: AppContext, existing: Integration, calendars: set[str]) -> None:
    """Events linked to the replaced account's calendars (and its target calendar) are marked, never re-pushed."""
    from shared.account.account_switch import detach_old_account_events

    for calendar_id in (existing.target_calendar_id, existing.account_email):
        if calendar_id and calendar_id != "primary":
            calendars.add(calendar_id)
    old_account = existing.account_email or existing.account_subject or "the previous account"
    detach_old_account_events(ctx, existing.user_id, old_account, calendars)


def _may_hold_a_live_grant(ctx: AppContext, user_id: str) -> bool:
    """This user already has a connection whose grant a fresh token of the same account would share."""
    existing = ctx.store.get_integration(user_id)
    return existing is not None and existing.status != IntegrationStatus.DISCONNECTED


def complete_connection(ctx: AppContext, state: str | None, code: str | None, *, user_id: str) -> ConnectResult:
    """Finish connecting for the signed-in `user_id`: verify and consume state, exchange the code, claim the Google
    account, store the encrypted refresh token and revoke the one it replaces."""
    claims = verify_state(ctx, state)
    if claims.user_id != user_id:
        _refuse_other_users_flow(ctx, claims, user_id)
    verifier = consume_state(ctx, claims)
    if not code or len(code) > 2048:
        raise BadRequest("the authorization code is missing")
    body = exchange_code(ctx, code, verifier)
    refresh_token = body.get("refresh_token")
    scopes = str(body.get("scope", "")).split()
    if not refresh_token:
        raise OAuthExchangeError("Google returned no refresh token (offline access was not granted)")
    missing = missing_capabilities(scopes)
    if missing:
        if not _may_hold_a_live_grant(ctx, user_id):
            revoke_token(ctx, refresh_token)  # else the same grant may back this user's working connection
        log_event(logger, "oauth scopes insufficient", level=logging.WARNING, user_id=user_id, missing=missing)
        raise Forbidden("the calendar permissions were not all granted; connect again and allow them", missing=missing)
    try:
        subject = google_subject(ctx, body)
        account_email = primary_calendar_id(ctx, refresh_token, str(body["access_token"]), scopes)
    except SyncError:
        revoke_token(ctx, refresh_token)
        raise

    from shared.account import enablement

    now = ctx.clock()
    existing = ctx.store.get_integration(user_id)
    holder = ctx.store.claim_google_account(subject, user_id, account_email, now)
    if holder != user_id:
        # Not revoked: the token belongs to the same grant as the holder's (same Google account, same client), and a
        # grant-wide revocation would disconnect the CRM user who legitimately holds the account. It is dropped unused.
        log_event(
            logger, "google account already linked", level=logging.WARNING, user_id=user_id, account_email=account_email
        )
        raise AccountAlreadyLinked(
            f"the Google account {account_email} is already connected to another CRM user; "
            "disconnect it there first or choose another Google account",
            account_email=account_email,
        )
    try:
        previous_subject = existing.account_subject if existing else None
        account_changed = bool(
            existing
            and (
                (previous_subject and previous_subject != subject)
                or (existing.account_email and existing.account_email != account_email)
            )
        )
        if existing is not None and account_changed:
            # Another Google account: the old account's calendars and channels no longer apply.
            old_calendars = {cal.calendar_id for cal in ctx.store.list_calendars(user_id)}
            enablement.disable_all(ctx, user_id, reason="account_changed", forget_sync_tokens=True)
            _detach_old_events(ctx, existing, old_calendars)
            if previous_subject:
                ctx.store.release_google_account(previous_subject, user_id)
        ciphertext, key_id = ctx.cipher.encrypt(refresh_token, owner=user_id)
        integration = Integration(
            user_id=user_id,
            status=IntegrationStatus.CONNECTED,
            account_email=account_email,
            account_subject=subject,
            scopes=scopes,
            refresh_token_ciphertext=ciphertext,
            key_id=key_id,
            target_calendar_id=(existing.target_calendar_id if existing and not account_changed else account_email),
            send_updates=existing.send_updates if existing else None,
            reauth_reason=None,
            connected_at=now,
            updated_at=now,
        )
        if integration.target_calendar_id == "primary":
            integration = integration.model_copy(update={"target_calendar_id": account_email})
        ctx.store.save_integration(integration)
    except Exception:
        if existing is None or existing.account_subject != subject:  # a claim made by this attempt: give it back
            ctx.store.release_google_account(subject, user_id)
        raise
    ctx.forget_calendar_client(user_id)
    # Only another account's token: revoking the same account's old token would revoke the new grant too (docstring).
    previous_revoked = _revoke_replaced_token(ctx, existing, user_id) if account_changed else False
    reconnected = existing is not None
    if existing is not None and not account_changed:
        enablement.mark_calendars_due(ctx, user_id)
    from shared.sync.crm_to_google_run import release_held_pushes

    release_held_pushes(ctx, user_id, now=now)
    log_event(
        logger,
        "google account connected",
        user_id=user_id,
        account_email=account_email,
        scopes=scopes,
        key_id=key_id,
        reconnected=reconnected,
        account_changed=account_changed,
        previous_token_revoked=previous_revoked,
    )
    return ConnectResult(integration=integration, reconnected=reconnected, account_changed=account_changed)


def disconnect(ctx: AppContext, user_id: str) -> dict[str, Any]:
    """Stop every channel, disable sync, revoke the refresh token and forget it. CRM data is kept."""
    from shared.account import enablement

    integration = ctx.store.get_integration(user_id)
    if integration is None or integration.status == IntegrationStatus.DISCONNECTED:
        return {"disconnected": True, "revoked": False, "calendars_disabled": 0}
    disabled = enablement.disable_all(ctx, user_id, reason="disconnect")
    revoked = False
    if integration.refresh_token_ciphertext:
        try:
            refresh_token = ctx.cipher.decrypt(integration.refresh_token_ciphertext, owner=user_id)
        except SyncError:
            refresh_token = None
        if refresh_token:
            revoked = revoke_token(ctx, refresh_token)
    ctx.store.update_integration(
        user_id,
        {
            "status": IntegrationStatus.DISCONNECTED.value,
            "refresh_token_ciphertext": None,
            "key_id": None,
            "reauth_reason": None,
            "updated_at": ctx.clock(),
        },
    )
    if integration.account_subject:
        ctx.store.release_google_account(integration.account_subject, user_id)
    ctx.forget_calendar_client(user_id)
    log_event(logger, "google account disconnected", user_id=user_id, revoked=revoked, calendars_disabled=disabled)
    return {"disconnected": True, "revoked": revoked, "calendars_disabled": disabled}
