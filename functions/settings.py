"""HTTP adapters for the CRM settings page: enable, disable and status of Google Calendar sync.

The user id comes only from the verified ID token (Authorization header); bodies are strict pydantic models.
"""

from __future__ import annotations

from typing import Any

from functions.http import handle, json_response, parse_json_body, require_method
from shared.account.identity import authenticate_user
from shared.context import default_context


def _enable(request: Any) -> Any:
    from shared.account import enablement

    require_method(request, "POST")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    body = parse_json_body(request, enablement.EnableRequest, allow_empty=True)
    result = enablement.enable(ctx, user.user_id, body)
    in_progress = any(c.outcome == "in_progress" for c in result.calendars)
    return json_response(result.model_dump(mode="json"), 202 if in_progress else 200)


def _disable(request: Any) -> Any:
    from shared.account import enablement

    require_method(request, "POST")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    body = parse_json_body(request, enablement.DisableRequest, allow_empty=True)
    return json_response(enablement.disable(ctx, user.user_id, body).model_dump(mode="json"))


def _status(request: Any) -> Any:
    from shared.account import enablement

    require_method(request, "GET")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    include = request.args.getlist("include")
    if set(request.args) - {"include"} or include not in ([], ["google_calendars"]):
        from shared.errors import BadRequest

        raise BadRequest(
            "status takes only `include=google_calendars`; the user comes from the ID token",
            fields=sorted(request.args),
        )
    result = enablement.status(ctx, user.user_id, include_google_calendars=bool(include))
    return json_response(result.model_dump(mode="json"))


def handle_enable(request: Any) -> Any:
    return handle(request, _enable, name="sync_enable", cors=True)


def handle_disable(request: Any) -> Any:
    return handle(request, _disable, name="sync_disable", cors=True)


def handle_status(request: Any) -> Any:
    return handle(request, _status, name="sync_status", cors=True)
