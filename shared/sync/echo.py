"""Expected notifications: the echo of our own Google writes, what it costs, and what its absence says.

Every write we make to a watched calendar is followed by Google's notification on the calendar's channel within
seconds ([PUSH]: https://developers.google.com/workspace/calendar/api/guides/push). Before this module each such
echo cost an `events.list` that found only our own change (`push.echo_list_calls_per_edit` = 1). Now:

- `expect_write` (CRM → Google, BEFORE the Google write): one more notification is expected on the calendar's channel
  (`channels/{id}.echo_pending`, an Increment), and the calendar remembers its oldest unanswered write
  (`echo_expected_at`) and becomes due for the cron at that time + ECHO_GRACE_SECONDS (`pull_due_at`, unless due
  earlier). `cancel` takes the count back when no Google write happened.
- `consume` (the webhook, before pulling): while the route expects notifications, one notification is answered
  without a list: the count goes down (a write with a precondition on the route's update time, so of two notifications
  racing for the last count exactly one pulls), `last_notification_at` moves, and when no notification is expected
  any more the calendar's expectation is cleared and its next pull is the stale-calendar pull again.
- `channel_seems_dead` (the cron, sync_status): a write older than ECHO_GRACE_SECONDS with no notification since
  means the channel is dead: the cron re-watches and pulls (shared/account/repair.py).

Why no foreign change is lost: the count is raised before our write, so our notification always finds it; each
notification delivered beyond the number of our own writes pulls, and a pull lists every change made before it. So
of the notifications for k of our writes and one foreign change, at most k are answered without a list and the one
processed last among them pulls. What is left is what Google does not deliver (a dropped or merged notification,
or a count left behind by a push that crashed between counting and writing): it is caught as any lost notification
is, by the stale-calendar pull (`pull_due_at`, `STALE_SYNC_SECONDS` after the last successful pull) or, when the lost
one was our own, by the dead-channel rule within ECHO_GRACE_SECONDS plus one cron period.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import DocumentChanged, DocumentMissing, StoreUnavailable
from shared.logs import log_event
from shared.models import ChannelRoute, SyncedCalendar, calendar_key
from shared.store import Write

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

# Google announces a change within seconds; a write unannounced after this long means the channel no longer delivers.
ECHO_GRACE_SECONDS = 180
CONSUME_ATTEMPTS = 3


@dataclass(frozen=True)
class Expectation:
    """One notification we expect for one Google write (to take back with `cancel` if the write did not happen)."""

    user_id: str
    calendar_id: str
    channel_id: str


def unanswered_since(cal: SyncedCalendar) -> dt.datetime | None:
    """Our oldest write to this calendar that no notification has followed yet (None: nothing is awaited)."""
    expected = cal.echo_expected_at
    if expected is None:
        return None
    if cal.last_notification_at is not None and cal.last_notification_at >= expected:
        return None  # a notification arrived after it: the channel delivered
    return expected


def channel_seems_dead(cal: SyncedCalendar, now: dt.datetime) -> bool:
    """A write of ours has waited longer than the grace for its notification: the channel no longer delivers."""
    since = unanswered_since(cal)
    return cal.enabled and since is not None and since + dt.timedelta(seconds=ECHO_GRACE_SECONDS) <= now


def expect_write(ctx: AppContext, user_id: str, calendar_id: str | None) -> Expectation | None:
    """Before a Google write to `calendar_id`: count the notification it will cause (None: the calendar is not
    watched, nothing to expect). One calendar read and one commit; a failure here never blocks the write."""
    if not calendar_id or calendar_id == "primary":
        return None  # calendars are stored under their real id; "primary" is only the default of a never-synced user
    try:
        cal = ctx.store.get_calendar(user_id, calendar_key(calendar_id))
        now = ctx.clock()
        if cal is None or not cal.enabled or cal.channel is None or cal.channel.expiration <= now:
            return None
        since = unanswered_since(cal) or now
        check_at = since + dt.timedelta(seconds=ECHO_GRACE_SECONDS)
        due = min(cal.pull_due_at, check_at) if cal.pull_due_at is not None else check_at
        ctx.store.commit_writes(
            [
                Write("update", ctx.store.channel_ref(cal.channel.id), {"echo_pending": _increment(1)}),
                Write(
                    "update",
                    ctx.store.calendar_ref(user_id, cal.key),
                    {"echo_expected_at": since, "pull_due_at": due},
                ),
            ]
        )
    except (DocumentMissing, DocumentChanged, StoreUnavailable) as exc:
        log_event(logger, "expected notification not recorded", level=logging.WARNING, user_id=user_id, why=str(exc))
        return None
    return Expectation(user_id=user_id, calendar_id=calendar_id, channel_id=cal.channel.id)


def cancel(ctx: AppContext, expectation: Expectation | None) -> None:
    """The write did not happen: take its expected notification back (best effort; a count left behind costs at most
    one deferred pull, see the module docstring)."""
    if expectation is None:
        return
    try:
        ctx.store.update_channel_route(expectation.channel_id, {"echo_pending": _increment(-1)})
    except (DocumentMissing, DocumentChanged, StoreUnavailable) as exc:
        log_event(logger, "expected notification not taken back", level=logging.WARNING, why=str(exc))


def consume(ctx: AppContext, route: ChannelRoute) -> bool:
    """A notification on `route`: True when it was one we expected for our own write and was answered without a
    list; False when the caller must pull (nothing expected, or another notification took the last count)."""
    if route.echo_pending <= 0:
        return False
    route_ref = ctx.store.channel_ref(route.channel_id)
    cal_ref = ctx.store.calendar_ref(route.user_id, route.calendar_key)
    for _ in range(CONSUME_ATTEMPTS):
        snapshots = {s.reference.path: s for s in ctx.store.get_all_documents([route_ref, cal_ref])}
        route_snapshot, cal_snapshot = snapshots[route_ref.path], snapshots[cal_ref.path]
        pending = int((route_snapshot.to_dict() or {}).get("echo_pending") or 0) if route_snapshot.exists else 0
        if pending <= 0 or not cal_snapshot.exists:
            return False
        cal = SyncedCalendar.model_validate(cal_snapshot.to_dict())
        now = ctx.clock()
        fields: dict[str, object] = {"last_notification_at": now}
        if pending == 1:
            fields.update(echo_expected_at=None, pull_due_at=_pull_due_after_echoes(ctx, cal, now))
        try:
            ctx.store.commit_writes(
                [
                    Write(
                        "update",
                        route_ref,
                        {"echo_pending": pending - 1},
                        last_update_time=route_snapshot.update_time,
                    ),
                    Write("update", cal_ref, fields),
                ]
            )
        except DocumentChanged:
            continue  # a push counted, or another notification consumed, meanwhile: look again
        except DocumentMissing:
            return False
        log_event(
            logger,
            "notification of our own write: pull deferred",
            user_id=route.user_id,
            calendar_id=route.calendar_id,
            channel_id=route.channel_id,
            still_expected=pending - 1,
        )
        return True
    return False


def _pull_due_after_echoes(ctx: AppContext, cal: SyncedCalendar, now: dt.datetime) -> dt.datetime:
    """The calendar's next pull once nothing is expected: a due time set for another reason (earlier than the echo
    check) stays; otherwise the stale-calendar pull, counted from the last successful pull (never later)."""
    expected = cal.echo_expected_at
    if cal.pull_due_at is not None and (
        expected is None or cal.pull_due_at < expected + dt.timedelta(seconds=ECHO_GRACE_SECONDS)
    ):
        return cal.pull_due_at
    last = cal.last_sync_at or now
    return max(now, last + dt.timedelta(seconds=ctx.settings.stale_sync_seconds))


def _increment(n: int) -> object:
    from google.cloud import firestore

    return firestore.Increment(n)
