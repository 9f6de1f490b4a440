"""HTTP adapters for connecting a Google account: start (signed-in user), callback (Google's redirect), disconnect.

The callback has two legs, which bind the flow to the browser's signed-in CRM user (login CSRF, see
shared.account.google_oauth):
- GET is Google's redirect. It checks the signed state, exchanges nothing, and sends the browser back to
  OAUTH_RETURN_URL with `code` and `state` in the URL fragment (`#google_code=...&google_state=...`; a fragment never
  reaches a server log or a Referer), or with `?google=error&reason=<code>` on a refusal or a bad or expired state.
- POST is the CRM page finishing the exchange with `{"code", "state"}` and the same user's ID token.
No sync logic here: authenticate, validate, call shared.account.google_oauth, map outcomes to status codes and JSON.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from pydantic import Field

from functions.http import handle, json_response, parse_json_body, require_method
from shared.account.identity import authenticate_user
from shared.context import default_context
from shared.errors import BadRequest, SyncError
from shared.logs import log_event
from shared.models import Strict

MAX_QUERY_VALUE = 2048
logger = logging.getLogger("functions.oauth")


class DisconnectRequest(Strict):
    """POST oauth_disconnect: no fields (the user comes from the ID token)."""


class CompleteRequest(Strict):
    """POST oauth_callback: what Google's redirect handed to the CRM page; the user comes from the ID token."""

    code: str = Field(min_length=1, max_length=MAX_QUERY_VALUE)
    state: str = Field(min_length=1, max_length=MAX_QUERY_VALUE)


class ConsentRefused(BadRequest):
    code = "access_denied"


def _query_value(request: Any, name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"`{name}` was given more than once")
    value = values[0] if values else None
    if value is not None and len(value) > MAX_QUERY_VALUE:
        raise BadRequest(f"`{name}` is too long")
    return value


def _wants_json(request: Any) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _start(request: Any) -> Any:
    from shared.account import google_oauth

    require_method(request, "GET", "POST")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    login_hint = _query_value(request, "login_hint") or user.email
    url = google_oauth.build_authorization_url(ctx, user.user_id, login_hint=login_hint)
    if _wants_json(request) or request.method == "POST":
        return json_response({"authorization_url": url})
    return json_response({"authorization_url": url}, 302, {"Location": url})


def _return_location(
    return_url: str, *, query: dict[str, str] | None = None, fragment: dict[str, str] | None = None
) -> str:
    parts = urllib.parse.urlsplit(return_url)
    merged = "&".join(p for p in (parts.query, urllib.parse.urlencode(query or {})) if p)
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, merged, urllib.parse.urlencode(fragment or {}) or parts.fragment)
    )


def _google_redirect(request: Any) -> Any:
    """Google's redirect: check the state, then hand code and state to the CRM page (nothing is exchanged here)."""
    from shared.account import google_oauth as oauth

    ctx = default_context()
    return_url = ctx.settings.oauth_return_url
    state, code, error = _query_value(request, "state"), _query_value(request, "code"), _query_value(request, "error")
    try:
        claims = oauth.verify_state(ctx, state)
        if error:
            log_event(logger, "oauth consent refused", user_id=claims.user_id, reason=error[:64])
            raise ConsentRefused("Google did not grant access", reason=error[:64])
        if not code:
            raise BadRequest("the authorization code is missing")
    except SyncError as exc:
        if not return_url:
            raise
        log_event(logger, "oauth callback refused", status=exc.http_status, code=exc.code)
        return json_response(
            exc.public_body(),
            302,
            {"Location": _return_location(return_url, query={"google": "error", "reason": exc.code})},
        )
    handoff = {"google_code": str(code), "google_state": str(state)}
    if return_url:
        return json_response(
            {"next": "the CRM page posts code and state back"},
            302,
            {"Location": _return_location(return_url, fragment=handoff)},
        )
    return json_response({**handoff, "next": "POST {code, state} to oauth_callback with the user's ID token"})


def _complete(request: Any) -> Any:
    """The CRM page finishing the connection for its signed-in user."""
    from shared.account import google_oauth as oauth

    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    body = parse_json_body(request, CompleteRequest)
    result = oauth.complete_connection(ctx, body.state, body.code, user_id=user.user_id)
    return json_response(
        {
            "connected": True,
            "account_email": result.integration.account_email,
            "scopes": result.integration.scopes,
            "reconnected": result.reconnected,
            "account_changed": result.account_changed,
        }
    )


def _callback(request: Any) -> Any:
    require_method(request, "GET", "POST")
    return _complete(request) if request.method == "POST" else _google_redirect(request)


def _disconnect(request: Any) -> Any:
    from shared.account import google_oauth

    require_method(request, "POST")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    parse_json_body(request, DisconnectRequest, allow_empty=True)
    return json_response(google_oauth.disconnect(ctx, user.user_id))


def handle_start(request: Any) -> Any:
    return handle(request, _start, name="oauth_start", cors=True)


def handle_callback(request: Any) -> Any:
    return handle(request, _callback, name="oauth_callback", cors=True)


def handle_disconnect(request: Any) -> Any:
    return handle(request, _disconnect, name="oauth_disconnect", cors=True)
