"""HTTP adapters for the conflict center: list the caller's conflict decisions (paged) and resolve one.

The user id comes only from the verified ID token; an event of another user answers 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

from functions.http import handle, json_response, parse_json_body, require_method
from shared.account.identity import authenticate_user
from shared.context import default_context
from shared.errors import BadRequest

LIST_PARAMETERS = frozenset({"page", "page_size"})


def _single(request: Any, name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"`{name}` was given more than once")
    return values[0] if values else None


def _list(request: Any) -> Any:
    from shared.account import conflict_center as conflicts

    require_method(request, "GET")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    unknown = sorted(set(request.args) - LIST_PARAMETERS)
    if unknown:
        raise BadRequest("unknown parameters; the user comes from the ID token", fields=unknown)
    page_size = conflicts.query_page_size(_single(request, "page_size"))
    page = conflicts.list_conflicts(ctx, user.user_id, page_size=page_size, page=_single(request, "page"))
    return json_response(page.model_dump(mode="json"))


def _resolve(request: Any) -> Any:
    from shared.account import conflict_center as conflicts

    require_method(request, "POST")
    ctx = default_context()
    user = authenticate_user(request, ctx.settings)
    body = parse_json_body(request, conflicts.ResolveRequest)
    return json_response(conflicts.resolve(ctx, user.user_id, body).model_dump(mode="json"))


def handle_list(request: Any) -> Any:
    return handle(request, _list, name="sync_conflicts", cors=True)


def handle_resolve(request: Any) -> Any:
    return handle(request, _resolve, name="sync_resolve", cors=True)
