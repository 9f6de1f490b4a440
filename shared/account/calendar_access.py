"""A synced calendar the user lost access to (unshared, deleted, or downgraded to free/busy): stop it cleanly.

Why here and why on the pull: Google answers a list of such a calendar 404 `notFound` (deleted or unshared), 410 (a
deleted calendar's events) or 403 (no reader access any more; guides/errors). Retrying can never succeed, so the first
such answer disables the calendar (route stopped, channel stopped at Google when it still answers, sync token
forgotten), records `access_lost` as its last error (sync_status shows it as a notice), and the CRM events keep their
links. Reconnecting or sharing the calendar again and re-enabling it starts a fresh import.

Why not calendarList.watch: a second channel per user, with its own renewal and webhook route, to learn sooner what
the events channel of that very calendar already tells us (Google notifies the calendar's events channel when it is
deleted or unshared, and the pull then gets the 404), and what the cron's stale-sync pull finds within its period when a
notification is lost. New calendars are offered by `sync_status?include=google_calendars` (one calendarList call when
the settings page asks): every syncable calendar not synced yet is listed with `offered: true`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.errors import GoogleApiError
from shared.logs import log_event
from shared.models import calendar_key

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

ACCESS_LOST = "access_lost"
# 403 reasons that mean "this user may not read this calendar (any more)"; rate limits are 403 too and are not these.
NO_ACCESS_REASONS = frozenset({"forbidden", "requiredAccessLevel", "notACalendarUser", "insufficientPermissions"})


def is_access_lost(exc: GoogleApiError) -> bool:
    """Google's answer to listing a calendar says the user cannot see it any more."""
    if exc.status in (404, 410) and exc.reason not in ("fullSyncRequired", "updatedMinTooLongAgo"):
        return True
    return exc.status == 403 and exc.reason in NO_ACCESS_REASONS


def stop_lost_calendar(ctx: AppContext, user_id: str, calendar_id: str, exc: GoogleApiError) -> None:
    """Disable the calendar (route and channel stopped), forget its sync token, record why (module docstring)."""
    from shared.account import enablement

    cal = ctx.store.get_calendar(user_id, calendar_key(calendar_id))
    if cal is None:
        return
    client = enablement.client_if_possible(ctx, user_id)
    enablement.disable_calendar(ctx, cal, client, reason=ACCESS_LOST, forget_sync_token=True)
    message = f"{ACCESS_LOST}: Google answered {exc.status} {exc.reason or ''} for this calendar; sync stopped"
    ctx.store.update_calendar(user_id, cal.key, {"last_error": message.strip()[:500], "last_error_at": ctx.clock()})
    log_event(
        logger,
        "calendar access lost; sync stopped",
        level=logging.WARNING,
        user_id=user_id,
        calendar_id=calendar_id,
        status=exc.status,
        reason=exc.reason,
    )
