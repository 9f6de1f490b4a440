"""The renewal run (Cloud Scheduler cron): renew and re-watch channels, pull stale calendars, re-push what is due,
sweep unpushed CRM edits, stop orphaned channels. Safe to run concurrently.

Why this shape:
- The cron queries only what is due: collection-group queries over `calendars` on `renew_due_at` and `pull_due_at`
  (composite indexes in shared/indexes.py), routes near expiry for orphans, and CRM → Google's own due query.
  Its cost grows with due work, not with the number of users; it takes what is due a batch at a time (a cursor after
  the last calendar taken, so one whose work failed is not retaken in the same run) until nothing is due or its
  deadline, bounds its concurrency, and leaves the rest due for the next run.
- A calendar due for a pull whose own write went unannounced past the grace (shared/sync/echo.py) has a dead
  channel: it is re-watched and pulled (shared/account/repair.py), not only pulled.
- Integrations in needs_reauth are skipped and reported; their calendars' due times move out by REAUTH_RECHECK so
  they do not crowd the head of the due queue, and reconnecting marks them due again.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shared.account import channels
from shared.account.enablement import (
    after_pull,
    disable_calendar,
    ensure_channel,
    record_calendar_error,
)
from shared.errors import NeedsReauth, SyncError
from shared.logs import log_event
from shared.models import Integration, IntegrationStatus, SyncedCalendar
from shared.sync import coalesce, echo

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

REAUTH_RECHECK = dt.timedelta(hours=6)
DUE_BATCH_LIMIT = 1000
PUSH_BATCH_LIMIT = 500
ORPHAN_BATCH_LIMIT = 500


class _Integrations:
    """One integration read per user per run, shared by the worker threads."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._cache: dict[str, Integration | None] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str) -> Integration | None:
        with self._lock:
            if user_id in self._cache:
                return self._cache[user_id]
        integration = self.ctx.store.get_integration(user_id)
        with self._lock:
            self._cache[user_id] = integration
        return integration

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._cache.pop(user_id, None)


class RenewalRun:
    """One cron run: counts in `report`, users needing reauth in `needs_reauth_users`."""

    def __init__(self, ctx: AppContext, *, now: dt.datetime | None = None, deadline_seconds: float | None = None):
        self.ctx = ctx
        self.now = now or ctx.clock()
        self.started = time.monotonic()
        budget = deadline_seconds if deadline_seconds is not None else ctx.settings.renewal_deadline_seconds
        self.deadline = self.started + budget * 0.9  # leave room to answer before the scheduler's attempt deadline
        self.report: collections.Counter[str] = collections.Counter()
        self.needs_reauth_users: set[str] = set()
        self._skipped: set[tuple[str, str]] = set()
        self.integrations = _Integrations(ctx)
        self._lock = threading.Lock()

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.report[key] += n

    # -- per calendar ------------------------------------------------------------------------------------------------
    def _usable(self, cal: SyncedCalendar) -> Integration | None:
        """The connected integration, or None after handling a calendar whose user cannot be served."""
        integration = self.integrations.get(cal.user_id)
        if integration is not None and integration.status == IntegrationStatus.CONNECTED:
            return integration
        if integration is not None and integration.status == IntegrationStatus.NEEDS_REAUTH:
            self._postpone(cal, "needs_reauth")
            return None
        # Disconnected or gone: the calendar should not be enabled at all.
        disable_calendar(self.ctx, cal, None, reason="integration_disconnected")
        self.count("orphan_calendars_disabled")
        return None

    def _postpone(self, cal: SyncedCalendar, reason: str) -> None:
        with self._lock:
            if (cal.user_id, cal.key) in self._skipped:
                return  # already skipped in this run (due for renewal and for a pull)
            self._skipped.add((cal.user_id, cal.key))
        later = self.now + REAUTH_RECHECK
        fields: dict[str, Any] = {}
        if cal.renew_due_at is not None and cal.renew_due_at <= self.now:
            fields["renew_due_at"] = later
        if cal.pull_due_at is not None and cal.pull_due_at <= self.now:
            fields["pull_due_at"] = later
        if fields:
            self.ctx.store.update_calendar(cal.user_id, cal.key, fields)
        with self._lock:
            self.needs_reauth_users.add(cal.user_id)
        self.count("needs_reauth_skipped")
        log_event(logger, "calendar skipped", user_id=cal.user_id, calendar_id=cal.calendar_id, reason=reason)

    def _reauth(self, cal: SyncedCalendar) -> None:
        """The user's token died during this run (already marked by the reauth guard): skip their calendars."""
        self.integrations.forget(cal.user_id)
        self._postpone(cal, "needs_reauth")

    def renew_one(self, cal: SyncedCalendar) -> None:
        if self.time_left() <= 0:
            self.count("deferred")
            return
        try:
            integration = self._usable(cal)
            if integration is None:
                return
            lease = channels.calendar_lease(self.ctx, cal.user_id, cal.key, purpose="renewal")
            if lease is None:
                self.count("busy")
                log_event(logger, "renewal skipped: lease held", user_id=cal.user_id, calendar_id=cal.calendar_id)
                return
            try:
                with self.ctx.reauth_guard(cal.user_id):
                    outcome = ensure_channel(self.ctx, integration, cal.key, reason="renewal")
            finally:
                self.ctx.store.release_lease(lease)
            self.count(outcome)
        except Exception as exc:
            self._failed(cal, exc, counter="renew_failed", what="renewal", record=True)

    def pull_one(self, cal: SyncedCalendar) -> None:
        if self.time_left() <= 0:
            self.count("deferred")
            return
        try:
            integration = self._usable(cal)
            if integration is None:
                return
            if echo.channel_seems_dead(cal, self.now):
                self.repair_one(integration, cal)
                return
            with self.ctx.reauth_guard(cal.user_id):
                outcome = coalesce.request_pull(self.ctx, cal.user_id, cal.calendar_id, reason="stale_sync")
            after_pull(self.ctx, cal, outcome)
            if not outcome.succeeded:
                self.count("pull_failed")
                log_event(
                    logger,
                    "stale pull did not complete",
                    level=logging.WARNING,
                    user_id=cal.user_id,
                    calendar_id=cal.calendar_id,
                    outcome=outcome.outcome,
                )
                return
            self.count("pulled")
            log_event(logger, "stale calendar pulled", user_id=cal.user_id, calendar_id=cal.calendar_id)
        except Exception as exc:
            self._failed(cal, exc, counter="pull_failed", what="stale pull", record=False)

    def repair_one(self, integration: Integration, cal: SyncedCalendar) -> None:
        """Our write went unannounced (shared/sync/echo.py): the channel is dead; re-watch and pull."""
        from shared.account.repair import repair_calendar

        log_event(
            logger,
            "channel silent after our write; repairing",
            level=logging.WARNING,
            user_id=cal.user_id,
            calendar_id=cal.calendar_id,
            channel_id=cal.channel.id if cal.channel else None,
            unanswered_since=cal.echo_expected_at,
        )
        with self.ctx.reauth_guard(cal.user_id):
            outcome = repair_calendar(self.ctx, integration, cal.calendar_id, reason="dead_channel")
        self.count("dead_channels")
        self.count(outcome)

    def _failed(self, cal: SyncedCalendar, exc: Exception, *, counter: str, what: str, record: bool) -> None:
        """One calendar's work failed: a dead token is needs_reauth; a typed error is counted and logged (and, with
        `record`, kept as the calendar's last error); anything else is a crash, logged with its traceback."""
        if isinstance(exc, NeedsReauth):
            self._reauth(cal)
            return
        self.count(counter)
        fields = {"user_id": cal.user_id, "calendar_id": cal.calendar_id}
        if not isinstance(exc, SyncError):
            logger.exception(f"{what} crashed", exc_info=exc, extra={"fields": fields})
            return
        if record:
            record_calendar_error(self.ctx, cal, f"{what} failed: {exc.message}")
        log_event(logger, f"{what} failed", level=logging.WARNING, code=exc.code, reason=exc.message, **fields)

    # -- orphans ----------------------------------------------------------------------------------------------------
    def sweep_orphans(self, limit: int) -> None:
        horizon = self.now + dt.timedelta(seconds=self.ctx.settings.renew_before_seconds)
        recent = self.now - dt.timedelta(seconds=channels.LEASE_SECONDS)
        for route in self.ctx.store.routes_near_expiry(horizon, limit):
            if self.time_left() <= 0:
                self.count("deferred")
                continue
            if route.created_at is not None and route.created_at > recent:
                continue  # possibly mid-renewal in a concurrent run: not an orphan yet
            if route.expiration <= self.now:
                channels.stop_route(self.ctx, route.channel_id, reason="expired")
                self.count("routes_expired")
                continue
            cal = self.ctx.store.get_calendar(route.user_id, route.calendar_key)
            if cal is not None and cal.enabled and cal.channel is not None and cal.channel.id == route.channel_id:
                continue  # the calendar's current channel: renewal's business
            integration = self.integrations.get(route.user_id)
            client = None
            if integration is not None and integration.status == IntegrationStatus.CONNECTED:
                try:
                    client = self.ctx.calendar_client(integration)
                except SyncError:
                    client = None
            channels.retire_channel(
                self.ctx,
                client,
                route.channel_id,
                route.resource_id,
                reason="orphan",
                user_id=route.user_id,
                calendar_id=route.calendar_id,
            )
            self.count("orphans_stopped")

    # -- the whole run ----------------------------------------------------------------------------------------------
    def take_due_batches(self, batch_limit: int) -> None:
        """Renewals and stale pulls, a batch of each at a time (cursor-paged, oldest due first), until nothing is due
        or the deadline: a run's work is what is due, and one run takes as much of it as its deadline allows (the
        capacity model in the README sizes concurrency and deadline for one million users from this)."""
        ctx = self.ctx
        renew_cursor: Any = None
        pull_cursor: Any = None
        renew_more = pull_more = True
        rewatched: set[tuple[str, str]] = set()
        batches = 0
        with ThreadPoolExecutor(max_workers=ctx.settings.renewal_concurrency, thread_name_prefix="renew") as pool:
            while (renew_more or pull_more) and (batches == 0 or self.time_left() > 0):
                renew_due: list[SyncedCalendar] = []
                pull_page: list[SyncedCalendar] = []
                if renew_more:
                    renew_due, renew_cursor = ctx.store.due_calendars(
                        "renew_due_at", self.now, batch_limit, after=renew_cursor
                    )
                    renew_more = renew_cursor is not None
                # Calendars without a live channel are re-watched and caught up in the renewal step: no second pull.
                rewatched |= {
                    (c.user_id, c.key) for c in renew_due if c.channel is None or c.channel.expiration <= self.now
                }
                if pull_more:
                    pull_page, pull_cursor = ctx.store.due_calendars(
                        "pull_due_at", self.now, batch_limit, after=pull_cursor
                    )
                    pull_more = pull_cursor is not None
                pull_due = [c for c in pull_page if (c.user_id, c.key) not in rewatched]
                self.count("renew_due", len(renew_due))
                self.count("pull_due", len(pull_due))
                log_event(
                    logger,
                    "renewal run started" if batches == 0 else "renewal run: next batch",
                    renew_due=len(renew_due),
                    pull_due=len(pull_due),
                    batch=batches + 1,
                )
                list(pool.map(self.renew_one, renew_due))
                list(pool.map(self.pull_one, pull_due))
                batches += 1
        self.report["due_batches"] = batches

    def run(self, *, batch_limit: int = DUE_BATCH_LIMIT) -> dict[str, Any]:
        ctx = self.ctx
        ops_before = collections.Counter(ctx.store.ops)
        google_before = ctx.google_call_count()
        self.take_due_batches(batch_limit)
        from shared.sync.crm_to_google_sweeps import push_due_events, sweep_unpushed_edits

        pushed: dict[str, int] = {}
        if self.time_left() > 0:
            try:
                pushed = dict(push_due_events(ctx, now=self.now, limit=PUSH_BATCH_LIMIT, deadline=self.deadline))
            except SyncError as exc:
                self.count("push_failed")
                log_event(logger, "push retry failed", level=logging.WARNING, code=exc.code, reason=exc.message)
        swept: dict[str, int] = {}
        if self.time_left() > 0:
            try:
                swept = sweep_unpushed_edits(ctx, now=self.now, limit=PUSH_BATCH_LIMIT, deadline=self.deadline)
            except SyncError as exc:
                self.count("sweep_failed")
                log_event(
                    logger, "unpushed-edit sweep failed", level=logging.WARNING, code=exc.code, reason=exc.message
                )
        if self.time_left() > 0:
            self.sweep_orphans(ORPHAN_BATCH_LIMIT)
        ops = collections.Counter(ctx.store.ops)
        ops.subtract(ops_before)
        result: dict[str, Any] = {
            "ok": True,
            "now": self.now.isoformat(),
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "counts": dict(sorted(self.report.items())),
            "renewed": self.report["renewed"],
            "rewatched": self.report["rewatched"],
            "pulled": self.report["pulled"],
            "repaired": self.report["dead_channels"],
            "deferred": self.report["deferred"],
            "needs_reauth_users": sorted(self.needs_reauth_users),
            "pushed": pushed,
            "swept": swept,
            "firestore": {k: v for k, v in ops.items() if v},
            "google_calls": ctx.google_call_count() - google_before,
        }
        log_event(
            logger,
            "renewal run finished",
            **{k: v for k, v in result.items() if k != "needs_reauth_users"},
            needs_reauth=len(self.needs_reauth_users),
        )
        return result


def run_renewal(
    ctx: AppContext,
    *,
    now: dt.datetime | None = None,
    deadline_seconds: float | None = None,
    batch_limit: int = DUE_BATCH_LIMIT,
) -> dict[str, Any]:
    """The cron's work: renew, re-watch, pull stale, push due, stop orphans. Safe to run concurrently."""
    return RenewalRun(ctx, now=now, deadline_seconds=deadline_seconds).run(batch_limit=batch_limit)
