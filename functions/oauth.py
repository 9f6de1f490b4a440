"""HTTP adapters for connecting a Google account: start (signed-in user), callback (Google's redirect), disconnect.

No sync logic here: authenticate, validate, call shared.account.google_oauth, map outcomes to status codes and JSON.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from functions.http import handle, json_response, parse_json_body, require_method
from shared.account.identity import authenticate_user
from shared.context import default_context
from shared.errors import BadRequest
from shared.models import Strict

MAX_QUERY_VALUE = 2048


class DisconnectRequest(Strict):
    """POST oauth_disconnect: no fields (the user comes from the ID token)."""


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


def _callback(request: Any) -> Any:
    from shared.account import google_oauth

    require_method(request, "GET")
    ctx = default_context()
    result = google_oauth.complete_connection(
        ctx,
        _query_value(request, "state"),
        _query_value(request, "code"),
        error=_query_value(request, "error"),
    )
    body = {
        "connected": True,
        "account_email": result.integration.account_email,
        "scopes": result.integration.scopes,
        "reconnected": result.reconnected,
        "account_changed": result.account_changed,
    }
    return_url = ctx.settings.oauth_return_url
    if return_url:
        separator = "&" if urllib.parse.urlsplit(return_url).query else "?"
        location = f"{return_url}{separator}google=connected"
        return json_response(body, 302, {"Location": location})
    return json_response(body)


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
    return handle(request, _callback, name="oauth_callback")


def handle_disconnect(request: Any) -> Any:
    return handle(request, _disconnect, name="oauth_disconnect", cors=True)
