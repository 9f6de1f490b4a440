"""Google → CRM, the runner (`pull_calendar`): list Google's changes, plan them (google_to_crm_plan.py), write them.

Where a Google notification goes: functions/webhook.py checks the channel, shared/sync/coalesce.py folds a burst into
one run, and this module lists and stores the changes.

Executor (`pull_calendar`): one batchGet for the integration + calendar, then `events.list` page by page (2500 per
page) with the stored sync token (none, or a 410 on the way: a full, reconciling list). Per page one batchGet of the
candidate CRM ids, then the page's writes are queued into chunks of <= 500 writes per commit: creates use
`create` (fails if the document exists), updates carry a `last_update_time` precondition (a concurrent CRM edit is
never clobbered: the chunk is then replayed write by write and the losing events re-planned on a fresh read). The new
sync token, `last_sync_at`, `pull_due_at`, counters and (optionally) the lease release go into the LAST commit, after
every change it covers (README, invariant 2). Full syncs also refresh the lease and `import_progress` between pages.
From the webhook the integration + calendar come already read and page 1 may come already listed (listed while the
lease was created: shared/sync/notification_path.py). When the webhook's batchGet also read every CRM document that
page names, the page is planned on those and committed at once, every write under a precondition from that read (the
calendar's too: a pull committed meanwhile fails it); a lost precondition stores nothing and the page is planned
again on a fresh read (`_SpeculationLost`). Otherwise that page's events batchGet also reads the calendar, and a pull
committed in between drops the page and lists again, before anything is stored.
A full pull from `request_pull` may take its lease in its first batch commit instead of a commit of its own
(`deferred_lease`): that commit also carries the calendar's update time read before the list, so it fails whole if
anyone holds the lease or a pull committed meanwhile; the lease is then taken alone (`LeaseNotWon` if it is held).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import (
    DocumentChanged,
    DocumentMissing,
    FullSyncRequired,
    GoogleApiError,
    GooglePermanentError,
    GoogleTransientError,
    KeptChanging,
    NeedsReauth,
    SyncError,
)
from shared.gcal.wire import google_private
from shared.logs import log_event
from shared.models import (
    CrmEvent,
    ImportTypes,
    IntegrationStatus,
    calendar_key,
    crm_event_id_for_google,
    dump_for_firestore,
)
from shared.store import MAX_BATCH_WRITES, Lease, Write, is_valid_document_id, retry_if_changed
from shared.sync.conflict import ConflictMode
from shared.sync.google_to_crm_plan import (
    ORPHAN_CANCELLATION,
    Action,
    CreateFromGoogle,
    SkipEcho,
    StoredIndex,
    TombstoneFromGoogle,
    WriteAction,
    deleted_series_ids,
    linked_here,
    plan_one,
    plan_removals,
    plan_series_removal,
)

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.store import PullState
    from shared.sync.notification_path import FirstPage

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Executor


@dataclass
class GoogleToCrmReport:
    """What one pull run did (for logs, the webhook answer, benchmarks and the cron)."""

    user_id: str
    calendar_id: str
    full: bool = False
    outcome: str = "ok"  # ok | needs_reauth | not_enabled | not_connected
    pages: int = 0
    events_seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    replanned: int = 0
    resynced_after_410: bool = False
    list_calls: int = 0
    duration_ms: float = 0.0

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


class _SpeculationLost(Exception):
    """A commit planned on the webhook's first batchGet lost a precondition (or would need more than one commit):
    nothing was stored; the page is planned again on a fresh read."""


class LeaseNotWon(Exception):
    """A full pull's deferred lease (`deferred_lease`) is held by another pull: nothing of this run was stored."""


class _StaleFirstPage(Exception):
    """A pull committed between the state read that gave the early page its sync token and our lease: the page may be
    older than what that pull stored, so it is dropped and the list starts again from the stored token."""


@dataclass
class _Queued:
    """A store write queued by the run, with what it stores (to re-plan it if a concurrent write beats it)."""

    write: Write
    action: WriteAction | None = None
    google_event: dict[str, Any] | None = None
    final: bool = False  # the calendar write carrying the new sync token


def _valid_doc_id(value: Any) -> bool:
    """A CRM id read from Google is untrusted input: only look up plausible Firestore document ids."""
    return isinstance(value, str) and len(value) <= 512 and is_valid_document_id(value)


def _event_data(event: CrmEvent) -> dict[str, Any]:
    data = dump_for_firestore(event)
    data.pop("id", None)
    return data


def _diff(before: CrmEvent, after: CrmEvent) -> dict[str, Any]:
    old, new = _event_data(before), _event_data(after)
    return {key: value for key, value in new.items() if old.get(key) != value}


class _Writer:
    """Queues writes and commits them in chunks of <= 500; a chunk that fails a precondition is replayed one by one."""

    def __init__(self, ctx: AppContext, report: GoogleToCrmReport, replan: Callable[[_Queued], bool]) -> None:
        self.ctx = ctx
        self.report = report
        self.replan = replan
        self.pending: list[_Queued] = []
        self.pending_ids: set[str] = set()
        self.update_times: dict[str, dt.datetime] = {}
        self.abandoned = 0  # events whose Google change could not be stored: the sync token must not advance
        # The calendar's update time from the webhook's batchGet when the page was planned on that read: the run's
        # writes must then go in ONE commit whose calendar write carries it (any lost precondition: _SpeculationLost).
        self.speculative_since: dt.datetime | None = None
        # A full pull's lease not taken yet (`deferred_lease`): its create and the calendar's precondition ride in the
        # first commit.
        self.deferred: tuple[Write, Write] | None = None

    def add(self, queued: _Queued) -> None:
        self.pending.append(queued)
        if queued.action is not None:
            self.pending_ids.add(queued.action.crm_id)
        if self.speculative_since is None and len(self.pending) >= MAX_BATCH_WRITES - self._reserved():
            self.flush()

    def _reserved(self) -> int:
        return len(self.deferred) if self.deferred is not None else 0

    def flush(self) -> None:
        if self.speculative_since is not None:
            if len(self.pending) > MAX_BATCH_WRITES or not any(queued.final for queued in self.pending):
                raise _SpeculationLost()
            chunk, self.pending = self.pending, []
            self._commit_speculative(chunk)
        while self.pending:
            size = MAX_BATCH_WRITES - self._reserved()
            chunk, self.pending = self.pending[:size], self.pending[size:]
            self._commit(chunk)
        self.pending_ids.clear()

    def _commit_speculative(self, chunk: list[_Queued]) -> None:
        try:
            times = self.ctx.store.commit_writes([queued.write for queued in chunk])
        except (DocumentChanged, DocumentMissing) as exc:
            raise _SpeculationLost() from exc
        self.speculative_since = None
        for queued, update_time in zip(chunk, times, strict=False):
            self._remember(queued, update_time)

    def _take_deferred_lease(self) -> None:
        """The deferred lease alone (its create and the calendar's precondition): after a first commit that failed,
        to tell "someone holds the lease or pulled meanwhile" (LeaseNotWon) from a concurrent edit of an event."""
        assert self.deferred is not None
        try:
            self.ctx.store.commit_writes(list(self.deferred))
        except (DocumentChanged, DocumentMissing) as exc:
            raise LeaseNotWon() from exc
        self.deferred = None

    def _commit(self, chunk: list[_Queued]) -> None:
        deferred = list(self.deferred) if self.deferred is not None else []
        if deferred and {w.ref.path for w in deferred} & {queued.write.ref.path for queued in chunk}:
            self._take_deferred_lease()  # one document written twice in one commit: take the lease on its own
            deferred = []
        try:
            times = self.ctx.store.commit_writes([*deferred, *(queued.write for queued in chunk)])
        except DocumentChanged:
            if deferred:
                self._take_deferred_lease()
                self._commit(chunk)
                return
            log_event(logger, "pull chunk hit a concurrent write; replaying one by one", writes=len(chunk))
            for queued in chunk:
                self._one(queued)
            return
        self.deferred = None
        for queued, update_time in zip(chunk, times[len(deferred) :], strict=False):
            self._remember(queued, update_time)

    def _remember(self, queued: _Queued, update_time: dt.datetime | None) -> None:
        if queued.action is not None and update_time is not None:
            self.update_times[queued.action.crm_id] = update_time

    def _one(self, queued: _Queued) -> None:
        write = queued.write
        if queued.final and self.abandoned and write.data is not None:
            write.data.pop("sync_token", None)  # re-list these changes next time rather than lose them
        try:
            [update_time] = self.ctx.store.commit_writes([write])
        except DocumentChanged:
            if queued.action is not None:
                self.report.replanned += 1
                if queued.google_event is None or not self.replan(queued):
                    self.abandoned += 1
            return
        self._remember(queued, update_time)


def _action_write(ctx: AppContext, action: WriteAction, update_time: dt.datetime | None) -> _Queued | None:
    ref = ctx.store.event_ref(action.crm_id)
    if isinstance(action, CreateFromGoogle):
        return _Queued(Write("create", ref, _event_data(action.after)), action=action)
    data = _diff(action.before, action.after)
    if not data:
        return None
    return _Queued(Write("update", ref, data, last_update_time=update_time), action=action)


def pull_calendar(
    ctx: AppContext,
    user_id: str,
    calendar_id: str,
    *,
    full: bool = False,
    lease: Lease | None = None,
    reason: str = "",
    prefetched: PullState | None = None,
    first_page: FirstPage | None = None,
    deferred_lease: Write | None = None,
) -> GoogleToCrmReport:
    """Pull one calendar's Google changes into the CRM (non-coalesced). Raises typed errors; see module docstring.

    `lease` (from shared.sync.coalesce): refreshed between pages of a full list, deleted in the final commit (or on
    error). `prefetched` / `first_page` (shared.sync.notification_path): the integration and calendar as already read,
    and events.list page 1 as already fetched with that calendar's sync token (checked before anything is stored).
    `deferred_lease`: the create of `lease`, not committed yet: it rides in the first batch commit (LeaseNotWon when
    someone holds the lease or a pull committed since the calendar was read; nothing is stored then).
    """
    started = time.perf_counter()
    report = GoogleToCrmReport(user_id=user_id, calendar_id=calendar_id, full=full)
    store = ctx.store
    cal_key = calendar_key(calendar_id)
    cal_ref = store.calendar_ref(user_id, cal_key)
    lease_released = False
    restart = False
    run: _GoogleToCrmRun | None = None
    try:
        if prefetched is not None:
            integration, calendar = prefetched.integration, prefetched.calendar
            calendar_time = prefetched.calendar_update_time
        else:
            integration, calendar, calendar_time = store.get_integration_and_calendar_at(user_id, cal_key)
        if integration is None or integration.status != IntegrationStatus.CONNECTED:
            report.outcome = (
                "needs_reauth"
                if integration is not None and integration.status == IntegrationStatus.NEEDS_REAUTH
                else "not_connected"
            )
            return report
        if calendar is None or not calendar.enabled:
            report.outcome = "not_enabled"
            return report
        deferred: tuple[Write, Write] | None = None
        if deferred_lease is not None:
            if calendar_time is None:
                raise LeaseNotWon()
            # Unchanged since read (the update carries nothing new): fails if a pull committed meanwhile.
            guard = Write("update", cal_ref, {"enabled": True}, last_update_time=calendar_time)
            deferred = (deferred_lease, guard)
        sync_token = None if full else calendar.sync_token
        early_refusal = _early_refusal(first_page, sync_token)
        if first_page is not None and (first_page.page is None or first_page.sync_token != sync_token):
            first_page = None  # the early list failed transiently (listed again here) or does not apply
        with ctx.reauth_guard(user_id):
            client = ctx.calendar_client(integration)

            def new_run() -> _GoogleToCrmRun:
                fresh = _GoogleToCrmRun(ctx, report, user_id, calendar_id, cal_ref, lease, reason)
                fresh.import_types = integration.import_types
                fresh.conflict_mode = integration.conflict_mode
                fresh.writer.deferred = deferred
                return fresh

            run = new_run()
            try:
                if early_refusal is not None:
                    report.list_calls += 1
                    raise early_refusal  # Google's answer to this very list: a 410 or a refusal repeats for it
                before = dataclasses.replace(report, counts=dict(report.counts))
                try:
                    run.run(client, sync_token, first_page=first_page)
                except _SpeculationLost:
                    from shared.sync.notification_path import note_miss

                    assert first_page is not None
                    note_miss("early_commit_lost")
                    log_event(logger, "early commit lost a precondition; planned again", user_id=user_id)
                    first_page.use_prefetched = False
                    for name in ("pages", "events_seen", "counts", "conflicts", "replanned", "list_calls"):
                        setattr(report, name, getattr(before, name))
                    run = new_run()
                    run.run(client, sync_token, first_page=first_page)
            except FullSyncRequired as exc:
                if sync_token is None:
                    raise _full_list_refused(exc) from exc
                log_event(
                    logger,
                    "sync token rejected (410); full resync",
                    level=logging.WARNING,
                    user_id=user_id,
                    calendar_id=calendar_id,
                )
                report.resynced_after_410 = True
                if run.writer.speculative_since is not None:
                    run.writer.pending.clear()  # planned on the webhook's read, never committed: the full list has it
                else:
                    run.writer.flush()
                deferred = run.writer.deferred  # still to take if that flush committed nothing
                run = new_run()
                try:
                    run.run(client, None)
                except FullSyncRequired as again:
                    raise _full_list_refused(again) from again
        lease_released = lease is not None
        return report
    except _StaleFirstPage:
        restart = True
    except GoogleApiError as exc:
        from shared.account.calendar_access import is_access_lost, stop_lost_calendar

        if not is_access_lost(exc):
            held = lease if deferred_lease is None or (run is not None and run.writer.deferred is None) else None
            _record_failure(ctx, cal_ref, exc, report, held)
            lease_released = lease is not None
            raise
        stop_lost_calendar(ctx, user_id, calendar_id, exc)
        report.outcome = "access_lost"
        return report
    except SyncError as exc:
        held = lease if deferred_lease is None or (run is not None and run.writer.deferred is None) else None
        _record_failure(ctx, cal_ref, exc, report, held)
        lease_released = lease is not None
        raise
    finally:
        report.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        lease_taken = deferred_lease is None or (run is not None and run.writer.deferred is None)
        if lease is not None and lease_taken and not lease_released and not restart:
            ctx.store.release_lease(lease)
    # Only after _StaleFirstPage (nothing stored yet): the ordinary pull, still under our lease.
    from shared.sync.notification_path import log_dropped

    log_dropped(user_id, calendar_id, "a pull committed meanwhile")
    fresh = pull_calendar(ctx, user_id, calendar_id, full=full, lease=lease, reason=reason)
    fresh.list_calls += report.list_calls
    return fresh


def _early_refusal(first_page: FirstPage | None, sync_token: str | None) -> BaseException | None:
    """The early list's error when Google refused that same list for good (a 410 for the token, a permanent 4xx,
    a dead grant): asking again would get the same answer, so it is handled as this run's own list error."""
    if first_page is None or first_page.error is None or first_page.sync_token != sync_token:
        return None
    error = first_page.error
    if isinstance(error, NeedsReauth) or (
        isinstance(error, GoogleApiError) and not isinstance(error, GoogleTransientError)
    ):
        return error
    return None


def _full_list_refused(exc: FullSyncRequired) -> GooglePermanentError:
    """A 410 on a list that already had no sync token and no updatedMin: listing again would only loop, so it is a
    permanent refusal of this run (recorded on the calendar; the cron's stale-sync pull tries again later)."""
    return GooglePermanentError(
        f"Google refused a full list (410 {exc.reason}): {exc.message}", status=exc.status, reason=exc.reason or "gone"
    )


def _record_failure(
    ctx: AppContext, cal_ref: Any, exc: SyncError, report: GoogleToCrmReport, lease: Lease | None
) -> None:
    """One write: the calendar's last_error (and a failed import), plus the lease release."""
    now = ctx.clock()
    fields: dict[str, Any] = {"last_error": f"{exc.code}: {exc.message}"[:500], "last_error_at": now}
    if report.full:
        fields["import_progress.state"] = "failed"
        fields["import_progress.finished_at"] = now
    writes = [Write("update", cal_ref, fields)] + ([lease.release_write()] if lease is not None else [])
    try:
        ctx.store.commit_writes(writes)
    except SyncError:
        logger.warning("could not record the pull failure", extra={"fields": {"user_id": report.user_id}})
        if lease is not None:
            ctx.store.release_lease(lease)
    log_event(
        logger,
        "pull failed",
        level=logging.WARNING,
        user_id=report.user_id,
        calendar_id=report.calendar_id,
        code=exc.code,
        reason=exc.message,
    )


class _GoogleToCrmRun:
    """One list run (incremental or full) with its writer."""

    def __init__(
        self,
        ctx: AppContext,
        report: GoogleToCrmReport,
        user_id: str,
        calendar_id: str,
        cal_ref: Any,
        lease: Lease | None,
        reason: str,
    ) -> None:
        self.ctx = ctx
        self.report = report
        self.user_id = user_id
        self.calendar_id = calendar_id
        self.cal_ref = cal_ref
        self.lease = lease
        self.reason = reason
        self.now = ctx.clock()
        self.writer = _Writer(ctx, report, self._replan)
        self.linked: dict[str, CrmEvent] = {}
        self.linked_times: dict[str, dt.datetime] = {}
        self.seen: set[str] = set()
        self.deleted_series: set[str] = set()
        self.orphan_cancellations: list[dict[str, Any]] = []  # re-planned at the end: their series may come later
        self.import_types: ImportTypes | None = None  # the owner's choice (pull_calendar sets it)
        self.conflict_mode: ConflictMode = "last_write_wins"  # the owner's Integration.conflict_mode
        self.touched: list[str] = []  # CRM ids this incremental run read or wrote (notification_path.RecentEvents)
        self.assumed_new: set[str] = set()  # derived ids planned as absent without a read (see _prefetched)

    # -- helpers ------------------------------------------------------------------------------------------------------
    def _candidate_ids(self, items: list[dict[str, Any]]) -> set[str]:
        ids: set[str] = set()
        for item in items:
            if not item.get("id"):
                continue
            ids.add(crm_event_id_for_google(self.calendar_id, item["id"]))
            crm_id = google_private(item).get("crmEventId")
            if _valid_doc_id(crm_id):
                ids.add(crm_id)
            if item.get("recurringEventId"):
                ids.add(crm_event_id_for_google(self.calendar_id, item["recurringEventId"]))
        return ids

    def _by_link(
        self, items: list[dict[str, Any]], found: dict[str, tuple[CrmEvent, dt.datetime]]
    ) -> dict[str, tuple[CrmEvent, dt.datetime]]:
        """Stored events matched by their Google link, for changes nothing else identifies.

        Only cancelled items without a CRM id whose derived document does not exist need it (a deletion of an event
        the CRM created): one indexed query per page that has such items, none in the steady state. A full sync already
        loaded every linked event.
        """
        if self.report.full:
            return {}
        linked_ids = {
            event.google.event_id
            for event, _ in found.values()
            if linked_here(event, self.calendar_id) and event.google
        }
        unmatched = [
            item["id"]
            for item in items
            if item.get("id")
            and item.get("status") == "cancelled"
            and not google_private(item).get("crmEventId")
            and item["id"] not in linked_ids
            and crm_event_id_for_google(self.calendar_id, item["id"]) not in found
        ]
        unmatched += self._unmatched_series(items, found, linked_ids)
        if not unmatched:
            return {}
        return self.ctx.store.events_by_google_ids(self.user_id, self.calendar_id, unmatched)

    def _unmatched_series(
        self, items: list[dict[str, Any]], found: dict[str, tuple[CrmEvent, dt.datetime]], linked_ids: set[str]
    ) -> list[str]:
        """Series of cancelled instances that nothing loaded identifies (a CRM-made series: its CRM id is not derived
        from the Google id, and a minimal cancelled instance carries no private properties)."""
        return [
            item["recurringEventId"]
            for item in items
            if item.get("status") == "cancelled"
            and item.get("recurringEventId")
            and item["recurringEventId"] not in linked_ids
            and crm_event_id_for_google(self.calendar_id, item["recurringEventId"]) not in found
        ]

    def _queue(self, action: Action, google_event: dict[str, Any] | None, update_time: dt.datetime | None) -> None:
        self.report.count(action.kind)
        if isinstance(action, SkipEcho):
            return
        if getattr(action, "decision", None) is not None:
            self.report.conflicts += 1
        write = _action_write(self.ctx, action, update_time)
        if write is None:
            return
        write.google_event = google_event
        self.writer.add(write)
        if action.crm_id in self.linked:
            self.linked[action.crm_id] = action.after

    def _replan(self, queued: _Queued) -> bool:
        """A concurrent write beat ours: re-read that event and plan it again (store.retry_if_changed). False = not
        stored (left to the next run)."""
        assert queued.action is not None
        assert queued.google_event is not None
        crm_id = queued.action.crm_id
        google_event = queued.google_event

        def attempt() -> bool:
            found = self.ctx.store.get_event_snapshots([crm_id])
            stored = {crm_id: found[crm_id][0]} if crm_id in found else {}
            action = plan_one(
                google_event,
                StoredIndex(stored, self.calendar_id),
                owner_id=self.user_id,
                now=self.now,
                deleted_series=frozenset(self.deleted_series),
                import_types=self.import_types,
                conflict_mode=self.conflict_mode,
            )
            if isinstance(action, SkipEcho):
                return True
            if action.crm_id != crm_id:
                return False  # it matches a different document now: re-list it next time from fresh state
            retry = _action_write(self.ctx, action, found[crm_id][1] if crm_id in found else None)
            if retry is not None:
                self.ctx.store.commit_writes([retry.write])
            return True

        try:
            return retry_if_changed(attempt, sleep=self.ctx.sleep, what="pull write")
        except KeptChanging:
            log_event(
                logger,
                "pull left an event to the next run (kept changing)",
                level=logging.WARNING,
                user_id=self.user_id,
                calendar_id=self.calendar_id,
                event_id=crm_id,
            )
            return False

    # -- the run -----------------------------------------------------------------------------------------------------
    def run(self, client: Any, sync_token: str | None, first_page: FirstPage | None = None) -> None:
        report = self.report
        full = sync_token is None
        report.full = full
        store = self.ctx.store
        if full:
            # Loaded BEFORE the first list call: anything linked later was inserted in Google after it, so it is
            # either listed or not in this map; removals then never race a concurrent push.
            for event, update_time in store.linked_event_snapshots(self.user_id, self.calendar_id):
                self.linked[event.id] = event
                self.linked_times[event.id] = update_time
        page_token: str | None = None
        next_sync_token: str | None = None
        while True:
            early = first_page if first_page is not None and page_token is None and not full else None
            if early is not None and early.page is not None:
                page = early.page  # listed while the lease was being created (shared.sync.notification_path)
            else:
                early = None
                page = client.list_events_page(self.calendar_id, sync_token=sync_token, page_token=page_token)
            report.list_calls += 1
            report.pages += 1
            items = [i for i in page.get("items", []) or [] if i.get("id")]
            report.events_seen += len(items)
            self._apply_page(items, early=early)
            page_token = page.get("nextPageToken")
            if not page_token:
                next_sync_token = page.get("nextSyncToken")
                break
            if full:
                self._between_pages()
        self._replan_orphan_cancellations()
        if full:
            removals = plan_removals(list(self.linked.items()), self.seen, calendar_id=self.calendar_id, now=self.now)
            for removal in removals:
                self._queue(
                    removal, None, self.writer.update_times.get(removal.crm_id) or self.linked_times.get(removal.crm_id)
                )
        self._finish(next_sync_token)

    def _replan_orphan_cancellations(self) -> None:
        """Cancelled instances whose series was not known when their page was planned: their series may have been
        listed on a later page. Planned once more now; those still without a series are skipped for good."""
        deferred, self.orphan_cancellations = self.orphan_cancellations, []
        if deferred:
            self._apply_page(deferred, final=True)

    def _apply_page(self, items: list[dict[str, Any]], early: FirstPage | None = None, *, final: bool = False) -> None:
        if not items:
            return  # an early page without items stores nothing: an older sync token only means re-listing later
        ids = self._candidate_ids(items)
        if ids & self.writer.pending_ids:
            self.writer.flush()
        lookup = ids - set(self.linked)
        prefetched = self._prefetched(items, lookup, early) if early is not None and early.use_prefetched else None
        if prefetched is not None:
            found = prefetched
        elif early is not None:
            found = self._read_checking(lookup, early)
        else:
            found = self.ctx.store.get_event_snapshots(lookup) if lookup else {}
        found.update(self._by_link(items, found))
        stored: dict[str, CrmEvent] = {crm_id: event for crm_id, (event, _) in found.items()}
        stored.update(self.linked)
        # Freshest known update time per document: the full sync's initial read < our own commits < this page's read.
        times: dict[str, dt.datetime] = dict(self.linked_times)
        times.update(self.writer.update_times)
        times.update({crm_id: t for crm_id, (_, t) in found.items()})
        index = StoredIndex(stored, self.calendar_id)
        self.deleted_series |= deleted_series_ids(items)
        for item in items:
            self.seen.add(item["id"])
            action = plan_one(
                item,
                index,
                owner_id=self.user_id,
                now=self.now,
                deleted_series=frozenset(self.deleted_series),
                import_types=self.import_types,
                conflict_mode=self.conflict_mode,
            )
            if (
                self.assumed_new
                and not isinstance(action, CreateFromGoogle)
                and crm_event_id_for_google(self.calendar_id, item["id"]) in self.assumed_new
            ):
                raise _SpeculationLost()  # planned as absent, yet not a create: only a read can tell
            if isinstance(action, SkipEcho) and action.reason == ORPHAN_CANCELLATION and not final:
                self.orphan_cancellations.append(item)
                continue
            if not isinstance(action, SkipEcho):
                index.put(action.crm_id, action.after)
            self._queue(action, item, times.get(action.crm_id) if action.crm_id else None)
            if action.crm_id and not self.report.full:
                self.touched.append(action.crm_id)
            if isinstance(action, TombstoneFromGoogle) and action.before.recurrence:
                self._remove_exceptions(action.crm_id, index)

    def _prefetched(
        self, items: list[dict[str, Any]], lookup: set[str], early: FirstPage
    ) -> dict[str, tuple[CrmEvent, dt.datetime]] | None:
        """The page's CRM documents as the webhook's batchGet read them, when that read covers the page: each id read
        there (a derived id read as absent counts: only a pull creates one, and a pull commits the calendar, whose
        update time the commit carries), or the derived id of an item Google created and never changed since (listed
        for the first time, so no pull stored it: planned as a create, which fails if the document exists). None
        otherwise: the page's documents are read after the list. The run's writes then go in one commit under the
        calendar's update time from that read (`_Writer.speculative_since`)."""
        if early.calendar_update_time is None or self.writer.pending:
            return None
        derived: set[str] = set()
        new: set[str] = set()
        for item in items:
            own = crm_event_id_for_google(self.calendar_id, item["id"])
            derived.add(own)
            if item.get("recurringEventId"):
                derived.add(crm_event_id_for_google(self.calendar_id, item["recurringEventId"]))
            elif (
                item.get("status") != "cancelled"
                and item.get("created")
                and item.get("created") == item.get("updated")
                and not google_private(item).get("crmEventId")
            ):
                new.add(own)
        found: dict[str, tuple[CrmEvent, dt.datetime]] = {}
        assumed: set[str] = set()
        for crm_id in lookup:
            snapshot = early.events.get(crm_id)
            if snapshot is not None and snapshot.exists:
                found[crm_id] = (self.ctx.store.event_from(snapshot), snapshot.update_time)
            elif snapshot is not None and crm_id in derived:
                continue
            elif snapshot is None and crm_id in new:
                assumed.add(crm_id)
            else:
                return None
        self.assumed_new = assumed
        self.writer.speculative_since = early.calendar_update_time
        return found

    def _read_checking(self, lookup: set[str], early: FirstPage) -> dict[str, tuple[CrmEvent, dt.datetime]]:
        """The page's CRM documents and the calendar in one batchGet; _StaleFirstPage if a pull committed since the
        early page's sync token was read (its page could be older than what that pull stored)."""
        from shared.models import SyncedCalendar
        from shared.sync.notification_path import calendar_mark

        found, snapshot = self.ctx.store.get_event_snapshots_and(lookup, self.cal_ref)
        calendar = SyncedCalendar.model_validate(snapshot.to_dict()) if snapshot.exists else None
        if calendar is None or calendar_mark(calendar) != early.calendar_mark:
            raise _StaleFirstPage()
        return found

    def _remove_exceptions(self, master_id: str, index: StoredIndex) -> None:
        """One query per deleted series (rare): its exceptions stored in the CRM become tombstones too."""
        found = dict(self.ctx.store.series_exception_snapshots(self.user_id, master_id))
        exceptions = [(crm_id, index.by_id.get(crm_id, event)) for crm_id, (event, _) in found.items()]
        for action in plan_series_removal(master_id, exceptions, calendar_id=self.calendar_id, now=self.now):
            index.put(action.crm_id, action.after)
            if self.report.full:
                self.seen.add(action.google_id)
            update_time = self.writer.update_times.get(action.crm_id) or found[action.crm_id][1]
            self._queue(action, None, update_time)

    def _between_pages(self) -> None:
        """Full lists: show progress and keep the lease alive (queued with the page's writes, no extra commit)."""
        now = self.ctx.clock()
        progress = {
            "import_progress.state": "running",
            "import_progress.pages": self.report.pages,
            "import_progress.events_seen": self.report.events_seen,
            "import_progress.started_at": self.now,
            "import_progress.finished_at": None,
        }
        self.writer.add(_Queued(Write("update", self.cal_ref, progress)))
        if self.lease is not None:
            self.writer.add(_Queued(self.lease.refresh_write(now)))

    def _finish(self, next_sync_token: str | None) -> None:
        from google.cloud import firestore

        report = self.report
        now = self.ctx.clock()
        fields: dict[str, Any] = {
            "last_sync_at": now,
            "pull_due_at": now + dt.timedelta(seconds=self.ctx.settings.stale_sync_seconds),
            "last_error": None,
            "last_error_at": None,
            "counters.pulls": firestore.Increment(1),
        }
        if next_sync_token:
            fields["sync_token"] = next_sync_token
        if self.reason == "webhook":
            fields["last_notification_at"] = self.now
        if report.full:
            fields["counters.full_syncs"] = firestore.Increment(1)
            fields["import_progress"] = {
                "state": "done",
                "pages": report.pages,
                "events_seen": report.events_seen,
                "started_at": self.now,
                "finished_at": now,
            }
        for kind in ("create", "update", "tombstone", "keep_local", "remove_missing"):
            if report.counts.get(kind):
                fields[f"counters.{kind}"] = firestore.Increment(report.counts[kind])
        guard = self.writer.speculative_since
        self.writer.add(_Queued(Write("update", self.cal_ref, fields, last_update_time=guard), final=True))
        if self.lease is not None:
            self.writer.add(_Queued(self.lease.release_write()))
        self.writer.flush()
        if self.touched:
            from shared.sync.notification_path import recent_events

            recent_events.remember(self.user_id, self.calendar_id, self.touched)
        log_event(
            logger,
            "pull done",
            user_id=self.user_id,
            calendar_id=self.calendar_id,
            full=report.full,
            pages=report.pages,
            events_seen=report.events_seen,
            counts=report.counts,
            conflicts=report.conflicts,
            reason=self.reason,
        )
