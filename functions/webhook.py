"""The webhook for Google Calendar's change notifications (public HTTP). Adapter only: validate, authenticate, call.

Google POSTs an empty body with X-Goog-* headers (README, Google facts: notifications). Google retries ONLY
500/502/503/504; every other status is a final answer. So garbage gets a 4xx (never retried) and only a transient
failure on our side gets a 5xx.

Status codes:
- 200 `sync` message acknowledged; or the notification was the one expected for our own write (`own_write`, no list:
      shared/sync/echo.py); or the pull ran (body: counts); or the user's Google connection is dead
      (`needs_reauth`: nothing Google can fix by retrying; the integration is marked, syncs stop); or Google refused the
      list permanently (recorded on the calendar as last_error; the cron retries later).
- 202 a pull for this calendar is already running: this notification was coalesced into one queued re-run.
- 400 missing or malformed X-Goog-* headers (pydantic), or a non-empty body.
- 404 unknown channel id (no route, or an id that cannot name a route).
- 405 not a POST.
- 410 the channel was stopped (renewed / disabled) or has expired.
- 403 wrong or missing channel token (constant-time digest comparison), or resource id mismatch. A route still
      OPENING (written just before events.watch, whose first `sync` may overtake its answer) is authenticated by the
      secret token alone, as its resource id is not known yet; it expires within minutes unless the watch succeeds.
- 503 transient: Firestore or Google unavailable (after bounded retries) -> Google retries with backoff.
- 500 an unexpected bug (also retried by Google; nothing internal is leaked).
Every 4xx costs one round trip (the route; when this instance has seen the channel before, the batchGet that also
reads the pull's state: shared/sync/notification_path.py; none for 400/405) and makes no Google call and no write.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from pydantic import ValidationError

from functions.http import handle, json_response, require_method, validation_details
from shared.errors import (
    BadRequest,
    ChannelGone,
    ChannelRejected,
    GooglePermanentError,
    NeedsReauth,
    UnknownChannel,
)
from shared.logs import log_event
from shared.models import ChannelState, NotificationHeaders

logger = logging.getLogger("functions.webhook")

_HEADER_ALIASES = tuple(f.alias for f in NotificationHeaders.model_fields.values() if f.alias)


def parse_headers(request: Any) -> NotificationHeaders:
    """The X-Goog-* headers, case-insensitively, validated; 400 with the failing fields otherwise."""
    values = {alias: request.headers.get(alias) for alias in _HEADER_ALIASES if request.headers.get(alias) is not None}
    try:
        return NotificationHeaders.model_validate(values)
    except ValidationError as exc:
        raise BadRequest("missing or malformed notification headers", fields=validation_details(exc)) from exc


def _require_empty_body(request: Any) -> None:
    length = request.content_length
    if (length is not None and length > 0) or request.get_data(cache=False)[:1]:
        raise BadRequest("a push notification has an empty body")


def _reject(fields: dict[str, Any], why: str) -> None:
    log_event(logger, "notification rejected", level=logging.WARNING, why=why, **fields)


def handle_notification(request: Any) -> Any:
    return handle(request, _notification, name="webhook")


def _notification(request: Any) -> Any:
    from shared.context import default_context
    from shared.crypto import secret_matches
    from shared.sync.notification_path import read_notification_state, read_pull_state, route_hints

    require_method(request, "POST")
    _require_empty_body(request)
    headers = parse_headers(request)
    ctx = default_context()
    fields: dict[str, Any] = {"channel_id": headers.channel_id, "message_number": headers.message_number}
    # One round trip: the route, and (when this instance has seen the channel) the pull's state with it.
    route, state = read_notification_state(ctx, headers.channel_id)
    if route is None:
        raise UnknownChannel("unknown channel")
    # Who the channel belongs to goes to our logs only, never into an answer to an unauthenticated caller.
    fields.update(user_id=route.user_id, calendar_id=route.calendar_id)
    if route.state not in (ChannelState.ACTIVE, ChannelState.OPENING):
        route_hints.forget(route.channel_id)
        _reject(fields, "stopped")
        raise ChannelGone("the channel was stopped")
    if route.expiration <= ctx.clock():
        route_hints.forget(route.channel_id)
        _reject(fields, "expired")
        raise ChannelGone("the channel has expired")
    token_ok = secret_matches(headers.channel_token, route.token_digest)
    # While the watch call is still in flight the resource id is unknown: the secret token alone authenticates.
    opening = route.state == ChannelState.OPENING
    resource_ok = opening or hmac.compare_digest(headers.resource_id.encode(), route.resource_id.encode())
    if not (token_ok and resource_ok):
        _reject(fields, "bad token" if not token_ok else "resource id mismatch")
        raise ChannelRejected("the notification does not match its channel")
    if headers.resource_state == "sync":
        log_event(logger, "channel sync acknowledged", **fields)
        return json_response({"status": "acknowledged"})

    from shared.sync.echo import consume

    if consume(ctx, route):
        # Expected for a write of our own (shared/sync/echo.py): answered without a list.
        return json_response({"status": "own_write"})
    from shared.sync.coalesce import request_pull

    try:
        if state is None:  # authenticated now: read what the pull needs (a cold instance's second round trip)
            state = read_pull_state(ctx, route.user_id, route.calendar_id)
        outcome = request_pull(ctx, route.user_id, route.calendar_id, reason="webhook", prefetched=state)
    except NeedsReauth:
        log_event(logger, "notification acknowledged: needs reauth", level=logging.WARNING, **fields)
        return json_response({"status": "needs_reauth"})
    except GooglePermanentError as exc:
        # Retrying the same request will not help (recorded as the calendar's last_error; the cron tries later).
        log_event(
            logger, "pull refused by Google", level=logging.WARNING, status=exc.status, reason=exc.reason, **fields
        )
        return json_response({"status": "failed", "reason": exc.reason or exc.code})
    if outcome.queued:
        return json_response({"status": "queued"}, 202)
    report = outcome.report
    body: dict[str, Any] = {"status": outcome.outcome, "runs": outcome.runs}
    if report is not None:
        body.update(pages=report.pages, counts=report.counts)
    log_event(logger, "notification handled", status=outcome.outcome, runs=outcome.runs, **fields)
    return json_response(body)
