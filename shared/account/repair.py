"""Repair one calendar whose channel may be dead: re-watch it and pull what was missed.

Google gives no way to ask whether a channel still delivers ([PUSH]: notifications are "not 100% reliable",
https://developers.google.com/workspace/calendar/api/guides/push), so a repair does not verify the channel, it
replaces it: a new channel (events.watch, route, switch; the old one stopped, as a renewal does) and a pull from the
stored sync token, which brings in every change the dead channel did not announce. Three Google calls.

Who repairs: the cron, for a calendar whose own write went unannounced (shared/sync/echo.py `channel_seems_dead`),
and `sync_enable` on a calendar that is already enabled (the user says something is wrong: we do not argue).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.account import channels
from shared.account.enablement import after_pull, ensure_channel
from shared.logs import log_event
from shared.models import Integration, SyncedCalendar, calendar_key

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.store import Lease

logger = logging.getLogger(__name__)

FRESH_CHANNEL_SECONDS = channels.LEASE_SECONDS  # younger than this: kept (see `_fresh_channel`)


def repair_calendar(
    ctx: AppContext, integration: Integration, calendar_id: str, *, reason: str, lease: Lease | None = None
) -> str:
    """Re-watch and pull one enabled calendar: "repaired", "verified" (its channel is minutes old and kept; pulled),
    "in_progress" (another holder is changing its channel), "not_enabled", or "repaired_pull_pending" (the pull
    failed and stays due for the cron).
    With `lease`, the caller already holds the calendar's channel lease."""
    user_id = integration.user_id
    cal_key = calendar_key(calendar_id)
    held = lease or channels.calendar_lease(ctx, user_id, cal_key, purpose="repair")
    if held is None:
        return "in_progress"
    try:
        current = ctx.store.get_calendar(user_id, cal_key)
        if current is None or not current.enabled:
            return "not_enabled"
        fresh = _fresh_channel(ctx, current)
        if not fresh:
            with ctx.reauth_guard(user_id):
                ensure_channel(ctx, integration, cal_key, reason=reason, force=True, catch_up=False)
    finally:
        if lease is None:
            ctx.store.release_lease(held)
    # The new channel announces from now on; what the old one swallowed comes with the pull below.
    ctx.store.update_calendar(user_id, cal_key, {"echo_expected_at": None, "pull_due_at": ctx.clock()})
    from shared.sync import coalesce

    with ctx.reauth_guard(user_id):
        pulled = coalesce.request_pull(ctx, user_id, calendar_id, reason=f"{reason}:catch_up")
    cal = SyncedCalendar(user_id=user_id, calendar_id=calendar_id)
    after_pull(ctx, cal, pulled)
    log_event(logger, "calendar repaired", user_id=user_id, calendar_id=calendar_id, reason=reason, pull=pulled.outcome)
    if not pulled.succeeded:
        return "repaired_pull_pending"
    return "verified" if fresh else "repaired"


def _fresh_channel(ctx: AppContext, cal: SyncedCalendar) -> bool:
    """A channel opened moments ago (a double-clicked enable, concurrent enables) is not replaced again: replacing it
    would prove nothing more; the pull alone catches up."""
    channel = cal.channel
    if channel is None or channel.created_at is None or channel.expiration <= ctx.clock():
        return False
    return (ctx.clock() - channel.created_at).total_seconds() < FRESH_CHANNEL_SECONDS
