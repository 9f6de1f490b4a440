"""Burst coalescing for pulls (invariant 5): a create-if-absent lease plus a blindly written "dirty" marker.

    sync_leases/{userId}_{calKey}  {holder, user_id, calendar_id, reason, acquired_at, expires_at}   (TTL: expires_at)
    sync_dirty/{userId}_{calKey}   {requested_at, expires_at, full?}                                 (TTL: expires_at)

`request_pull`:
1. `create` the lease. Created -> we run. Exists and expired (its holder died mid-sync) -> delete it with a precondition
   on the update time we read, then create it again (two contenders: one wins). Exists and live -> blind-write the dirty
   marker, then read the lease once more: if it vanished meanwhile (the holder finished between our two looks), try to
   take it ourselves; otherwise return `queued` (the webhook answers 202).
2. The runner pulls (shared.pull.pull_calendar); the lease is deleted in the pull's final commit (no extra write).
3. After releasing, the runner reads the dirty marker. Present -> delete it (precondition on its update time), take
   the lease again and pull once more. So N notifications arriving together cause one running pull and at most one
   queued re-run, whatever N is. A marker written while a lease is held is always seen by that holder after its release
   (it reads after deleting the lease), and a writer that saw a live lease re-checks after writing: nothing is stranded.
No transactions: only creates, blind writes and deletes with preconditions, so a burst never contends on one document.
A holder that dies leaves its lease to expire (`settings.sync_lease_seconds`; refreshed between pages of long imports);
the next notification or the cron's stale-calendar pull takes it over and re-lists from the stored sync token, which
only ever advances in the same commit as the changes it covers.

Firestore operations of a steady-state run: lease create 1, integration+calendar batchGet 1, events batchGet 1 per
page, final commit 1 (events + calendar + lease delete), dirty read 1 (plus the webhook's route read: 6 in all).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.logs import log_event
from shared.models import calendar_key
from shared.pull import LeaseHandle, PullReport, pull_calendar

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

SYNC_LEASES = "sync_leases"
SYNC_DIRTY = "sync_dirty"
MAX_RUNS = 3  # one run plus re-runs for markers written meanwhile; a later notification / the cron does the rest
DIRTY_TTL = dt.timedelta(days=1)


@dataclass
class PullOutcome:
    """What `request_pull` did: `ran` (this call pulled), `queued` (coalesced into a running pull)."""

    user_id: str
    calendar_id: str
    ran: bool = False
    queued: bool = False
    runs: int = 0
    report: PullReport | None = None  # the last run's report
    reports: list[PullReport] = field(default_factory=list)
    took_over: bool = False  # an expired lease (dead holder) was taken over

    @property
    def outcome(self) -> str:
        if self.queued:
            return "queued"
        return self.report.outcome if self.report is not None else "none"


def lease_id(user_id: str, calendar_id: str) -> str:
    return f"{user_id}_{calendar_key(calendar_id)}"


def _refs(ctx: AppContext, user_id: str, calendar_id: str) -> tuple[Any, Any]:
    doc_id = lease_id(user_id, calendar_id)
    db = ctx.store.db
    return db.collection(SYNC_LEASES).document(doc_id), db.collection(SYNC_DIRTY).document(doc_id)


def _try_acquire(
    ctx: AppContext, ref: Any, user_id: str, calendar_id: str, reason: str, *, create_first: bool = True
) -> tuple[LeaseHandle | None, bool]:
    """(lease or None when a live holder has it, whether an expired lease was taken over)."""
    seconds = ctx.settings.sync_lease_seconds
    holder = uuid.uuid4().hex
    now = ctx.clock()
    data = {
        "holder": holder,
        "user_id": user_id,
        "calendar_id": calendar_id,
        "reason": reason[:100],
        "acquired_at": now,
        "expires_at": now + dt.timedelta(seconds=seconds),
    }
    if create_first and ctx.store.create_if_absent(ref, data):
        return LeaseHandle(ref, holder, seconds), False
    snapshot = ctx.store.get_document(ref)
    if not snapshot.exists:
        if ctx.store.create_if_absent(ref, data):
            return LeaseHandle(ref, holder, seconds), False
        return None, False
    expires_at = (snapshot.to_dict() or {}).get("expires_at")
    if isinstance(expires_at, dt.datetime) and expires_at > now:
        return None, False
    if not ctx.store.delete_document(ref, last_update_time=snapshot.update_time):
        return None, False  # another contender took it over first
    log_event(logger, "expired pull lease taken over", user_id=user_id, calendar_id=calendar_id, reason=reason)
    if ctx.store.create_if_absent(ref, data):
        return LeaseHandle(ref, holder, seconds), True
    return None, False


def _mark_dirty(ctx: AppContext, ref: Any, full: bool) -> None:
    now = ctx.clock()
    data: dict[str, Any] = {"requested_at": now, "expires_at": now + DIRTY_TTL}
    if full:
        data["full"] = True
    ctx.store.set_document(ref, data, merge=True)


def request_pull(ctx: AppContext, user_id: str, calendar_id: str, *, reason: str, full: bool = False) -> PullOutcome:
    """Run (or queue) a pull of one calendar; see the module docstring. Raises the pull's typed errors
    (NeedsReauth after marking the integration, GoogleTransientError / StoreUnavailable for retryable failures)."""
    outcome = PullOutcome(user_id=user_id, calendar_id=calendar_id)
    lease_ref, dirty_ref = _refs(ctx, user_id, calendar_id)
    lease, took_over = _try_acquire(ctx, lease_ref, user_id, calendar_id, reason)
    if lease is None:
        _mark_dirty(ctx, dirty_ref, full)
        # The holder may have finished between our create attempt and the marker: look again, never strand it.
        lease, took_over = _try_acquire(ctx, lease_ref, user_id, calendar_id, reason, create_first=False)
        if lease is None:
            outcome.queued = True
            log_event(
                logger, "pull queued behind a running one", user_id=user_id, calendar_id=calendar_id, reason=reason
            )
            return outcome
    outcome.took_over = took_over
    while True:
        report = pull_calendar(ctx, user_id, calendar_id, full=full, lease=lease, reason=reason)
        outcome.ran = True
        outcome.runs += 1
        outcome.report = report
        outcome.reports.append(report)
        if report.outcome != "ok":
            return outcome
        snapshot = ctx.store.get_document(dirty_ref)
        if not snapshot.exists:
            return outcome
        if outcome.runs >= MAX_RUNS:
            log_event(
                logger,
                "pull re-runs bounded; marker left for the next request",
                user_id=user_id,
                calendar_id=calendar_id,
            )
            return outcome
        marker = snapshot.to_dict() or {}
        ctx.store.delete_document(dirty_ref, last_update_time=snapshot.update_time)
        full = bool(marker.get("full"))
        lease, _ = _try_acquire(ctx, lease_ref, user_id, calendar_id, f"{reason}:rerun")
        if lease is None:
            return outcome  # someone else runs now; its run started after the marker, so it covers it
        log_event(
            logger, "pull re-run for notifications that arrived meanwhile", user_id=user_id, calendar_id=calendar_id
        )
