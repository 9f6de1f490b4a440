"""Google's notification channels: open (events.watch), route, switch, retire (channels.stop), the per-calendar lease.

Why this shape:
- Google has no call that extends a channel: renewal opens a new channel first (events.watch), writes its route,
  switches the calendar to it, and only then stops the old one (channels.stop). Between the route write and the stop
  both routes are ACTIVE, so a notification on either is accepted: there is an overlap, never a gap.
- The channel's secret token is `secrets.token_urlsafe(32)`; only `secret_digest(token)` is stored (on the calendar's
  ChannelInfo and on the route). The webhook compares in constant time.
- Concurrency: one create-if-absent lease (shared/store.py, `channel_leases/{userId}_{calKey}`) guards every
  channel change (enable, renewal, re-watch), so concurrent cron runs or double clicks create one channel.
  No transactions on hot documents. A crashed holder's lease expires and is taken over (guarded delete).
- `renew_due_at` = expiration - min(renew_before, half the lifetime) minus a little jitter: the cron queries only that.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from shared.crypto import secret_digest
from shared.errors import DocumentMissing, GoogleApiError, NeedsReauth, SyncError
from shared.logs import log_event
from shared.models import ChannelInfo, ChannelRoute, ChannelState, SyncedCalendar, calendar_key, dump_for_firestore

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.gcal.client import CalendarClient
    from shared.store import Lease

logger = logging.getLogger(__name__)

LEASE_SECONDS = 120
RENEW_JITTER_FRACTION = 0.1  # renew up to 10% of renew_before earlier, to spread a cohort created together
_rng = random.Random()


def renew_due_at(
    ctx: AppContext, expiration: dt.datetime, now: dt.datetime, rng: random.Random | None = None
) -> dt.datetime:
    """When the cron should renew a channel: early enough, jittered earlier (never later), never before now."""
    lifetime = max(0.0, (expiration - now).total_seconds())
    before = min(float(ctx.settings.renew_before_seconds), lifetime / 2)
    jitter = (rng or _rng).uniform(0, before * RENEW_JITTER_FRACTION)
    return max(now, expiration - dt.timedelta(seconds=before + jitter))


def pull_due_at(ctx: AppContext, last_sync: dt.datetime) -> dt.datetime:
    """When a calendar with no newer successful sync should be pulled by the cron (a dropped notification's net)."""
    from shared.schedule import jittered_seconds

    return last_sync + dt.timedelta(seconds=jittered_seconds(ctx.settings.stale_sync_seconds, rng=_rng))


# --- the calendar's channel lease ------------------------------------------------------------------------------------
def calendar_lease(
    ctx: AppContext, user_id: str, cal_key: str, *, purpose: str, seconds: int = LEASE_SECONDS
) -> Lease | None:
    """The lease on one calendar's channel (taking over an expired one); None = another holder is busy with it.
    Release with `ctx.store.release_lease`."""
    ref = ctx.store.channel_lease_ref(f"{user_id}_{cal_key}")
    fields = {"user_id": user_id, "calendar_key": cal_key, "purpose": purpose}
    lease, took_over = ctx.store.acquire_lease(ref, fields, seconds, ctx.clock())
    if lease is not None and took_over:
        log_event(logger, "expired lease taken over", user_id=user_id, calendar_key=cal_key, purpose=purpose)
    return lease


# --- channels ---------------------------------------------------------------------------------------------------------
def _parse_expiration(value: Any, fallback: dt.datetime) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError):
        return fallback


OPENING_ROUTE_LIFETIME = dt.timedelta(minutes=10)


def open_channel(ctx: AppContext, client: CalendarClient, calendar: SyncedCalendar) -> ChannelInfo:
    """events.watch with a fresh UUID id and secret; writes the ACTIVE route. The calendar is not switched yet."""
    settings = ctx.settings
    if not settings.webhook_url:
        raise SyncError("WEBHOOK_URL is not configured")
    channel_id = str(uuid.uuid4())
    token = secrets.token_urlsafe(32)
    now = ctx.clock()
    body = {
        "id": channel_id,
        "type": "web_hook",
        "address": settings.webhook_url,
        "token": token,
        "params": {"ttl": str(settings.channel_ttl_seconds)},
    }
    # The route exists before Google does: its first message (`sync`, and any `exists` right after) can arrive before
    # watch answers. An OPENING route is authenticated by the secret token alone (the resource id is not known yet)
    # and lives only minutes unless the watch succeeds.
    opening = ChannelRoute(
        channel_id=channel_id,
        user_id=calendar.user_id,
        calendar_id=calendar.calendar_id,
        calendar_key=calendar_key(calendar.calendar_id),
        resource_id="",
        token_digest=secret_digest(token),
        expiration=now + OPENING_ROUTE_LIFETIME,
        state=ChannelState.OPENING,
        created_at=now,
    )
    ctx.store.save_channel_route(opening)
    try:
        answer = client.watch_events(calendar.calendar_id, body)
    except Exception:
        with contextlib.suppress(SyncError):
            ctx.store.delete_document(ctx.store.channel_ref(channel_id))
        raise
    expiration = _parse_expiration(answer.get("expiration"), now + dt.timedelta(seconds=settings.channel_ttl_seconds))
    info = ChannelInfo(
        id=str(answer.get("id") or channel_id),
        resource_id=str(answer["resourceId"]),
        token_digest=secret_digest(token),
        expiration=expiration,
        address=settings.webhook_url,
        created_at=now,
    )
    route = ChannelRoute(
        channel_id=info.id,
        user_id=calendar.user_id,
        calendar_id=calendar.calendar_id,
        calendar_key=calendar_key(calendar.calendar_id),
        resource_id=info.resource_id,
        token_digest=info.token_digest,
        expiration=expiration,
        state=ChannelState.ACTIVE,
        created_at=now,
    )
    ctx.store.save_channel_route(route)
    log_event(
        logger,
        "channel opened",
        user_id=calendar.user_id,
        calendar_id=calendar.calendar_id,
        channel_id=info.id,
        expiration=expiration.isoformat(),
    )
    return info


def switch_calendar_to(ctx: AppContext, calendar: SyncedCalendar, info: ChannelInfo, *, pull_now: bool) -> None:
    """Point the calendar at its new channel and set the next renewal time."""
    now = ctx.clock()
    fields: dict[str, Any] = {
        "channel": dump_for_firestore(info),
        "renew_due_at": renew_due_at(ctx, info.expiration, now),
    }
    if pull_now:
        fields["pull_due_at"] = now
    ctx.store.update_calendar(calendar.user_id, calendar_key(calendar.calendar_id), fields)


def stop_route(ctx: AppContext, channel_id: str, *, reason: str) -> bool:
    """Mark a route STOPPED (the webhook then ignores the channel). False when there was no route."""
    try:
        ctx.store.update_channel_route(
            channel_id, {"state": ChannelState.STOPPED.value, "stopped_at": ctx.clock(), "stop_reason": reason}
        )
    except DocumentMissing:
        return False
    return True


def stop_at_google(
    ctx: AppContext, client: CalendarClient | None, channel_id: str, resource_id: str, **log_fields: Any
) -> bool:
    """channels.stop, best effort: a channel Google no longer knows is stopped; failures leave it to expire."""
    if client is None:
        return False
    try:
        client.stop_channel(channel_id, resource_id)
    except NeedsReauth:
        log_event(
            logger, "channel stop skipped: needs reauth", level=logging.WARNING, channel_id=channel_id, **log_fields
        )
        return False
    except GoogleApiError as exc:
        log_event(
            logger,
            "channel stop failed; it will expire",
            level=logging.WARNING,
            channel_id=channel_id,
            status=exc.status,
            reason=exc.reason,
            **log_fields,
        )
        return False
    return True


def retire_channel(
    ctx: AppContext, client: CalendarClient | None, channel_id: str, resource_id: str, *, reason: str, **log_fields: Any
) -> bool:
    """Stop routing first (late notifications are then ignored), then stop at Google."""
    stop_route(ctx, channel_id, reason=reason)
    stopped = stop_at_google(ctx, client, channel_id, resource_id, **log_fields)
    log_event(logger, "channel retired", channel_id=channel_id, reason=reason, stopped_at_google=stopped, **log_fields)
    return stopped
