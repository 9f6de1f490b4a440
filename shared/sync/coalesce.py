"""Google → CRM burst coalescing (README, invariant 5): a create-if-absent lease plus a blindly written "dirty" marker.

    sync_leases/{userId}_{calKey}  {holder, user_id, calendar_id, reason, acquired_at, expires_at}   (TTL: expires_at)
    sync_dirty/{userId}_{calKey}   {requested_at, expires_at, full?}                                 (TTL: expires_at)

`request_pull`:
1. `create` the lease. Created -> we run. Otherwise read the lease and the marker in one batchGet:
   - lease expired (its holder died mid-sync) -> delete it with a precondition on the update time we read, then create
     it again (of two contenders one wins);
   - lease live and a marker already there -> return `queued` with NO write (a re-run is already due; the burst does
     not hammer one document: 2 RPCs per coalesced notification);
   - lease live, no marker -> blind-write the marker, then read the lease once more: if it vanished meanwhile (the
     holder finished between our looks) take it ourselves; otherwise `queued` (the webhook answers 202).
   A full pull (`full=True`, the first import) skips step 1: its lease create rides in the runner's first batch
   commit, with a precondition on the calendar's update time read before its list (`deferred_lease`), so a 10,000-
   event import needs no commit of its own for the lease. If someone holds the lease, or a pull committed since
   that read, the commit fails whole (nothing is stored) and the request goes through step 1 as above (LeaseNotWon):
   queued behind the holder, or run again under the lease. What that costs: the list pages listed before that
   first commit (one page of up to 2,500 events for a large import; a small one takes its lease alone before its
   only commit, as before), and, for the few milliseconds until that commit, the lease does not yet keep other
   requests out (they take it, and this one queues behind them).
2. The runner pulls (shared.sync.google_to_crm_run.pull_calendar); the lease is deleted in the pull's final
   commit (no extra write).
3. After releasing, the runner reads the marker. Present -> create the lease again (if someone else holds it, leave
   the marker to them), THEN delete the marker (precondition on its update time) and pull once more.
Why nothing is stranded: a marker is deleted only by a runner that holds the lease and pulls right after, so a
notification that saw (live lease + marker) is covered by a run starting later; a notifier that wrote the marker
re-checks the lease after writing; a holder always reads the marker after its release. N notifications arriving
together therefore cause one running pull and one queued re-run, not N.
No transactions: only creates, blind writes and deletes with preconditions, so a burst never contends on one document.
A holder that dies leaves its lease to expire (`settings.sync_lease_seconds`; refreshed between pages of long imports);
the next notification or the cron's stale-calendar pull takes it over and re-lists from the stored sync token, which
only ever advances in the same commit as the changes it covers.

Firestore operations of a steady-state run from the webhook (shared/sync/notification_path.py): one batchGet of the
route, integration, calendar, lease, marker and the CRM documents the calendar's recent pulls touched (`prefetched`),
lease create 1 (while events.list page 1 is in flight), final commit 1 (events + calendar + lease delete, under
preconditions from that batchGet), marker read 1: 4 in all, 3 of them before the CRM commit is done (one more batchGet
of the listed events' documents when the first one did not read them all). Without `prefetched` the pull reads its
state after the lease (one more round trip).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.logs import log_event
from shared.models import calendar_key
from shared.store import Lease, PullState, Write, lease_is_live
from shared.sync.google_to_crm_run import GoogleToCrmReport, LeaseNotWon, pull_calendar
from shared.sync.notification_path import FirstPageStart, log_dropped, start_first_page

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

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
    report: GoogleToCrmReport | None = None  # the last run's report
    reports: list[GoogleToCrmReport] = field(default_factory=list)
    took_over: bool = False  # an expired lease (dead holder) was taken over

    @property
    def succeeded(self) -> bool:
        """Ran without error, or coalesced into a running pull (which covers this request)."""
        return self.queued or self.report is None or self.report.outcome == "ok"

    @property
    def outcome(self) -> str:
        if self.queued:
            return "queued"
        return self.report.outcome if self.report is not None else "none"


def lease_id(user_id: str, calendar_id: str) -> str:
    return f"{user_id}_{calendar_key(calendar_id)}"


def _refs(ctx: AppContext, user_id: str, calendar_id: str) -> tuple[Any, Any]:
    doc_id = lease_id(user_id, calendar_id)
    return ctx.store.sync_lease_ref(doc_id), ctx.store.sync_dirty_ref(doc_id)


def _lease_fields(user_id: str, calendar_id: str, reason: str) -> dict[str, Any]:
    return {"user_id": user_id, "calendar_id": calendar_id, "reason": reason[:100]}


def _create(ctx: AppContext, ref: Any, user_id: str, calendar_id: str, reason: str) -> Lease | None:
    fields = _lease_fields(user_id, calendar_id, reason)
    return ctx.store.create_lease(ref, fields, ctx.settings.sync_lease_seconds, ctx.clock())


def _take_over(ctx: AppContext, ref: Any, snapshot: Any, user_id: str, calendar_id: str, reason: str) -> Lease | None:
    """The lease is absent or expired (its holder died): replace it; of several contenders one wins."""
    fields = _lease_fields(user_id, calendar_id, reason)
    lease = ctx.store.take_over_lease(ref, snapshot, fields, ctx.settings.sync_lease_seconds, ctx.clock())
    if lease is not None and snapshot.exists:
        log_event(logger, "expired pull lease taken over", user_id=user_id, calendar_id=calendar_id, reason=reason)
    return lease


def _get_both(ctx: AppContext, lease_ref: Any, dirty_ref: Any) -> tuple[Any, Any]:
    """The lease and the marker in one RPC."""
    snapshots = {s.reference.path: s for s in ctx.store.get_all_documents([lease_ref, dirty_ref])}
    return snapshots[lease_ref.path], snapshots[dirty_ref.path]


def _mark_dirty(ctx: AppContext, ref: Any, full: bool) -> None:
    now = ctx.clock()
    data: dict[str, Any] = {"requested_at": now, "expires_at": now + DIRTY_TTL}
    if full:
        data["full"] = True
    ctx.store.set_document(ref, data, merge=True)


def _acquire_or_queue(
    ctx: AppContext,
    lease_ref: Any,
    dirty_ref: Any,
    user_id: str,
    calendar_id: str,
    reason: str,
    full: bool,
    seen: PullState | None = None,
) -> tuple[Lease | None, bool]:
    """(our lease, took_over) or (None, False) when the request was queued behind a live holder. `seen`: the lease and
    marker as just read (the webhook's batchGet): a live lease with its marker there is queued with no further RPC.
    (A live lease without a marker takes the ordinary path: a burst that saw no marker at once would otherwise write
    it all at once, and the emulator aborts concurrent writes to one document with "Transaction lock timeout".)"""
    if seen is not None and lease_is_live(seen.lease, ctx.clock()) and seen.dirty.exists:
        lease_snapshot, dirty_snapshot = seen.lease, seen.dirty
    else:
        lease = _create(ctx, lease_ref, user_id, calendar_id, reason)
        if lease is not None:
            return lease, False
        lease_snapshot, dirty_snapshot = _get_both(ctx, lease_ref, dirty_ref)
    if not lease_is_live(lease_snapshot, ctx.clock()):
        lease = _take_over(ctx, lease_ref, lease_snapshot, user_id, calendar_id, reason)
        if lease is not None:
            return lease, lease_snapshot.exists
        return None, False  # a contender won the takeover; it runs after our change
    if dirty_snapshot.exists and (not full or (dirty_snapshot.to_dict() or {}).get("full")):
        # A re-run is already queued behind this live lease: it starts after now, so it covers our change.
        return None, False
    _mark_dirty(ctx, dirty_ref, full)
    # The holder may have finished (and checked the marker) between our two looks: look again, never strand it.
    lease_snapshot = ctx.store.get_document(lease_ref)
    if lease_is_live(lease_snapshot, ctx.clock()):
        return None, False
    lease = _take_over(ctx, lease_ref, lease_snapshot, user_id, calendar_id, reason)
    return lease, lease is not None and lease_snapshot.exists


def request_pull(
    ctx: AppContext,
    user_id: str,
    calendar_id: str,
    *,
    reason: str,
    full: bool = False,
    prefetched: PullState | None = None,
) -> PullOutcome:
    """Run (or queue) a pull of one calendar; see the module docstring. Raises the pull's typed errors
    (NeedsReauth after marking the integration, GoogleTransientError / StoreUnavailable for retryable failures).

    `prefetched` (the webhook's one batchGet, shared.sync.notification_path): the pull does not read its state again,
    and its first events.list page overlaps the lease create."""
    early = start_first_page(ctx, prefetched, user_id, calendar_id) if prefetched is not None and not full else None
    try:
        return _acquire_and_run(ctx, user_id, calendar_id, reason, full, prefetched, early)
    finally:
        if early is not None:
            early.release()


def _acquire_and_run(
    ctx: AppContext,
    user_id: str,
    calendar_id: str,
    reason: str,
    full: bool,
    prefetched: PullState | None,
    early: FirstPageStart | None,
) -> PullOutcome:
    outcome = PullOutcome(user_id=user_id, calendar_id=calendar_id)
    lease_ref, dirty_ref = _refs(ctx, user_id, calendar_id)
    deferred: Write | None = None
    first_page = None
    if full and prefetched is None:  # the lease rides in the import's first batch commit (module docstring)
        fields = _lease_fields(user_id, calendar_id, reason)
        lease, deferred = ctx.store.lease_create_write(lease_ref, fields, ctx.settings.sync_lease_seconds, ctx.clock())
        took_over = False
    else:
        try:
            lease, took_over = _acquire_or_queue(
                ctx, lease_ref, dirty_ref, user_id, calendar_id, reason, full, seen=prefetched
            )
        finally:
            first_page = early.wait() if early is not None else None
    if lease is None:
        outcome.queued = True
        if first_page is not None:
            log_dropped(user_id, calendar_id, "a pull is already running")
        log_event(logger, "pull queued behind a running one", user_id=user_id, calendar_id=calendar_id, reason=reason)
        return outcome
    outcome.took_over = took_over
    state = prefetched
    while True:
        try:
            report = pull_calendar(
                ctx,
                user_id,
                calendar_id,
                full=full,
                lease=lease,
                reason=reason,
                prefetched=state,
                first_page=first_page,
                deferred_lease=deferred,
            )
        except LeaseNotWon:
            # Nothing was stored: take the lease the ordinary way (queued behind its holder, or run under it).
            deferred = None
            lease, took_over = _acquire_or_queue(ctx, lease_ref, dirty_ref, user_id, calendar_id, reason, full)
            if lease is None:
                outcome.queued = True
                log_event(logger, "full pull queued behind a running one", user_id=user_id, calendar_id=calendar_id)
                return outcome
            outcome.took_over = took_over
            continue
        state, first_page, deferred = None, None, None  # a re-run reads afresh
        outcome.ran = True
        outcome.runs += 1
        outcome.report = report
        outcome.reports.append(report)
        if report.outcome != "ok":
            return outcome
        # Released (in the pull's final commit). A marker now means notifications arrived while we ran.
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
        # Lease first, marker second: a marker is only ever consumed by a holder that runs right after.
        lease = _create(ctx, lease_ref, user_id, calendar_id, f"{reason}:rerun")
        if lease is None:
            return outcome  # someone else holds it now; it will find the marker after its own run
        marker = snapshot.to_dict() or {}
        ctx.store.delete_document(dirty_ref, last_update_time=snapshot.update_time)
        full = bool(marker.get("full"))
        log_event(
            logger, "pull re-run for notifications that arrived meanwhile", user_id=user_id, calendar_id=calendar_id
        )
