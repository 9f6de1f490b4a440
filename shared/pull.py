"""Google -> CRM: the pure pull planner (`plan_pull`) and the executor (`pull_calendar`).

Planner (pure, vdirsyncer-style): from the stored CRM events and one batch of Google changes it computes typed actions:
- `CreateFromGoogle`     a Google event seen for the first time -> a CRM event whose id is derived from
                         (calendar id, Google id), so re-imports never duplicate (invariant 1);
- `UpdateFromGoogle`     Google's content (and link/etag) onto the stored CRM event; CRM metadata is kept;
                         `content_changed` False = only the link moved (etag differs, same content);
- `TombstoneFromGoogle`  a cancelled (deleted) Google event -> CRM tombstone (`deleted`, `purge_at`);
- `KeepLocal`            conflict: the CRM event has a newer, not-yet-pushed edit -> keep it (the push engine pushes
                         it), store Google's etag and the decision;
- `SkipEcho`             Google's etag is the one we stored (we wrote it, or we already applied it): nothing;
- `RemoveMissing`        full sync only: a CRM event linked to this calendar that Google no longer lists -> tombstone.
Matching a Google event to a stored CRM event: by link (google.event_id), by the CRM id the push engine put in
`extendedProperties.private.crmEventId` (not for an instance that merely inherited its series' properties), then by the
derived id. Cancelled instances of a series become cancelled exceptions (status `cancelled`, series link); modified
instances are stored linked to their series (`series.series_crm_id`).
Last write wins (invariant 4): only when the CRM event `has_unpushed_change`. Google's time is the event's `updated`,
the CRM's is `updated_at` (or `deleted_at` for a CRM deletion); ties go to the CRM (as the push engine decides). A
Google deletion always wins (Google no longer has the event; nothing to push the edit into); the tombstone keeps the
CRM content. Every conflict decision is appended to `sync.decisions` (last 10 kept).
Echo (invariant 3): every pull write sets `sync.content_hash = content_hash(new)`, so the push trigger sees nothing to
push; a KeepLocal write leaves the hash alone (the unpushed edit stays visible to the push engine).

Executor (`pull_calendar`): one batchGet for the integration + calendar, then `events.list` page by page (2500 per
page) with the stored sync token (none, or a 410 on the way: a full, reconciling list). Per page one batchGet of the
candidate CRM ids, then the page's writes are queued into chunks of <= 500 writes per commit: creates use
`create` (fails if the document exists), updates carry a `last_update_time` precondition (a concurrent CRM edit is
never clobbered: the chunk is then replayed write by write and the losing events re-planned on a fresh read). The new
sync token, `last_sync_at`, `pull_due_at`, counters and (optionally) the lease release go into the LAST commit, after
every change it covers (invariant 2). Full syncs also refresh the lease and `import_progress` between pages.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.conflict_record import describe as describe_conflict
from shared.errors import FullSyncRequired, NeedsReauth, SyncError
from shared.logs import log_event
from shared.mapping import (
    apply_google_event,
    content_hash,
    has_unpushed_change,
    is_cancelled,
    link_from_google,
    mark_synced_from_google,
    meta_from_google,
    new_crm_event_from_google,
    parse_rfc3339,
)
from shared.models import (
    ConflictDecision,
    CrmEvent,
    GoogleLink,
    IntegrationStatus,
    calendar_key,
    crm_event_id_for_google,
    dump_for_firestore,
)

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

MAX_DECISIONS = 10
TOMBSTONE_RETENTION = dt.timedelta(days=30)
MAX_BATCH_WRITES = 500
MAX_REPLANS = 3


# ---------------------------------------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True)
class CreateFromGoogle:
    crm_id: str
    google_id: str
    after: CrmEvent
    kind: str = "create"


@dataclass(frozen=True)
class UpdateFromGoogle:
    crm_id: str
    google_id: str
    before: CrmEvent
    after: CrmEvent
    content_changed: bool
    decision: ConflictDecision | None = None
    kind: str = "update"


@dataclass(frozen=True)
class TombstoneFromGoogle:
    crm_id: str
    google_id: str
    before: CrmEvent
    after: CrmEvent
    decision: ConflictDecision | None = None
    kind: str = "tombstone"


@dataclass(frozen=True)
class KeepLocal:
    crm_id: str
    google_id: str
    before: CrmEvent
    after: CrmEvent  # the local content with Google's link (etag) and the decision recorded
    decision: ConflictDecision
    kind: str = "keep_local"


@dataclass(frozen=True)
class SkipEcho:
    crm_id: str | None
    google_id: str
    reason: str
    kind: str = "skip"


@dataclass(frozen=True)
class RemoveMissing:
    crm_id: str
    google_id: str
    before: CrmEvent
    after: CrmEvent
    decision: ConflictDecision | None = None
    kind: str = "remove_missing"


Action = CreateFromGoogle | UpdateFromGoogle | TombstoneFromGoogle | KeepLocal | SkipEcho | RemoveMissing
WriteAction = CreateFromGoogle | UpdateFromGoogle | TombstoneFromGoogle | KeepLocal | RemoveMissing


# ---------------------------------------------------------------------------------------------------------------------
# Pure planning


def _private(google_event: dict[str, Any]) -> dict[str, Any]:
    return (google_event.get("extendedProperties") or {}).get("private") or {}


def _with_decision(
    event: CrmEvent, decision: ConflictDecision | None, google: CrmEvent | None = None
) -> list[ConflictDecision]:
    """The event's decisions plus this one, described for the conflict center (`google` None: a deletion)."""
    if decision is None:
        return list(event.sync.decisions)
    return [*event.sync.decisions, describe_conflict(decision, crm=event, google=google)][-MAX_DECISIONS:]


def _crm_time(event: CrmEvent) -> dt.datetime | None:
    if event.deleted and event.deleted_at is not None:
        return event.deleted_at
    return event.updated_at or event.created_at


def _linked_here(event: CrmEvent, calendar_id: str) -> bool:
    return event.google is not None and event.google.calendar_id == calendar_id


class _Index:
    """Stored CRM events by id and by Google link, updated as the plan proceeds (so duplicates in one batch no-op)."""

    def __init__(self, stored: dict[str, CrmEvent], calendar_id: str) -> None:
        self.calendar_id = calendar_id
        self.by_id: dict[str, CrmEvent] = dict(stored)
        self.by_link: dict[str, str] = {}
        for crm_id, event in stored.items():
            self._link(crm_id, event)

    def _link(self, crm_id: str, event: CrmEvent) -> None:
        if _linked_here(event, self.calendar_id):
            assert event.google is not None
            self.by_link.setdefault(event.google.event_id, crm_id)

    def put(self, crm_id: str, event: CrmEvent) -> None:
        self.by_id[crm_id] = event
        if _linked_here(event, self.calendar_id):
            assert event.google is not None
            self.by_link[event.google.event_id] = crm_id

    def match(self, google_event: dict[str, Any]) -> tuple[str, CrmEvent | None]:
        """(crm id to use, stored event or None): by link, then by CRM id (if it really is this event), then derived."""
        google_id = google_event["id"]
        linked = self.by_link.get(google_id)
        if linked is not None and linked in self.by_id:
            return linked, self.by_id[linked]
        crm_id = _private(google_event).get("crmEventId")
        if crm_id and crm_id in self.by_id and self._is_this_event(self.by_id[crm_id], google_event):
            return crm_id, self.by_id[crm_id]
        derived = crm_event_id_for_google(self.calendar_id, google_id)
        return derived, self.by_id.get(derived)

    def _is_this_event(self, event: CrmEvent, google_event: dict[str, Any]) -> bool:
        """A CRM id in the private properties names this Google event unless it is the series master's (inherited)."""
        if event.google is not None:
            return event.google.calendar_id == self.calendar_id and event.google.event_id == google_event["id"]
        recurring = google_event.get("recurringEventId")
        if recurring:
            return event.series is not None and event.series.recurring_event_id == recurring
        return event.series is None

    def series_crm_id(self, google_event: dict[str, Any]) -> str | None:
        recurring = google_event.get("recurringEventId")
        if not recurring:
            return None
        linked = self.by_link.get(recurring)
        if linked is not None:
            return linked
        crm_id = _private(google_event).get("crmEventId")
        if crm_id and crm_id in self.by_id:
            master = self.by_id[crm_id]
            if master.google is not None and master.google.event_id == recurring:
                return crm_id
        return crm_event_id_for_google(self.calendar_id, recurring)

    def series_deleted(self, google_event: dict[str, Any]) -> bool:
        series = self.series_crm_id(google_event)
        master = self.by_id.get(series) if series else None
        return master is not None and master.deleted

    def master_title(self, google_event: dict[str, Any]) -> str | None:
        series = self.series_crm_id(google_event)
        master = self.by_id.get(series) if series else None
        return master.title if master is not None else None


def _fix_series(event: CrmEvent, before: CrmEvent | None, series_crm_id: str | None) -> CrmEvent:
    """Keep the CRM's own series link when it names the same series; else point at the series' CRM id."""
    if event.series is None:
        return event
    if (
        before is not None
        and before.series is not None
        and before.series.recurring_event_id == event.series.recurring_event_id
    ):
        return event.model_copy(update={"series": before.series})
    if series_crm_id and event.series.series_crm_id != series_crm_id:
        return event.model_copy(update={"series": event.series.model_copy(update={"series_crm_id": series_crm_id})})
    return event


def _is_minimal_cancelled(google_event: dict[str, Any]) -> bool:
    return is_cancelled(google_event) and "start" not in google_event


def _google_version(
    before: CrmEvent | None, google_event: dict[str, Any], index: _Index, crm_id: str, owner_id: str, now: dt.datetime
) -> CrmEvent:
    """The CRM event as Google has it now (before sync bookkeeping), CRM metadata and ids kept."""
    calendar_id = index.calendar_id
    if before is None:
        event = new_crm_event_from_google(google_event, calendar_id, owner_id, now)
        update: dict[str, Any] = {"id": crm_id}
        private = _private(google_event)
        if private.get("crmEventId") and not google_event.get("recurringEventId"):
            # The CRM document it came from is gone; keep the CRM metadata it carried (not the dead CRM id).
            update["meta"] = meta_from_google(google_event).model_copy(update={"crm_event_id": None})
        if _is_minimal_cancelled(google_event):
            update["title"] = index.master_title(google_event) or ""
            update["updated_at"] = now
        event = event.model_copy(update=update)
        return _fix_series(event, None, index.series_crm_id(google_event))
    if _is_minimal_cancelled(google_event):
        # A cancelled instance carries only id/recurringEventId/originalStartTime: keep what we know, mark cancelled.
        link = link_from_google(google_event, calendar_id)
        if before.google is not None and link.updated is None:
            link = link.model_copy(update={"updated": before.google.updated, "html_link": before.google.html_link})
        event = before.model_copy(
            update={"status": "cancelled", "google": link, "deleted": False, "deleted_at": None, "purge_at": None}
        )
        if event.series is None and google_event.get("recurringEventId"):
            fresh = new_crm_event_from_google(google_event, calendar_id, owner_id, now)
            event = event.model_copy(update={"series": fresh.series})
        return _fix_series(event, before, index.series_crm_id(google_event))
    event = apply_google_event(before, google_event, calendar_id, now)
    return _fix_series(event, before, index.series_crm_id(google_event))


def _tombstone(before: CrmEvent, google_event: dict[str, Any] | None, calendar_id: str, now: dt.datetime) -> CrmEvent:
    link = before.google
    if google_event is not None and link is not None and google_event.get("etag"):
        link = link.model_copy(update={"etag": google_event["etag"]})
    return before.model_copy(
        update={
            "deleted": True,
            "deleted_at": now,
            "purge_at": now + TOMBSTONE_RETENTION,
            "google": link,
        }
    )


def _plan_one(
    google_event: dict[str, Any],
    index: _Index,
    *,
    owner_id: str,
    now: dt.datetime,
    deleted_series: frozenset[str] = frozenset(),
) -> Action:
    calendar_id = index.calendar_id
    google_id = google_event["id"]
    crm_id, stored = index.match(google_event)
    etag = google_event.get("etag")
    google_time = parse_rfc3339(google_event.get("updated"))

    if stored is not None and _linked_here(stored, calendar_id):
        assert stored.google is not None
        if stored.google.event_id == google_id and etag and stored.google.etag == etag:
            return SkipEcho(crm_id, google_id, "etag already stored")

    cancelled = is_cancelled(google_event)
    recurring = google_event.get("recurringEventId")
    # A cancelled instance is an exception of its series, unless the whole series was deleted: then it goes too.
    deletion = cancelled and (not recurring or recurring in deleted_series or index.series_deleted(google_event))

    if deletion:
        if stored is None:
            return SkipEcho(None, google_id, "deletion of an event the CRM never had")
        if stored.deleted:
            return SkipEcho(crm_id, google_id, "already a tombstone")
        decision = None
        if has_unpushed_change(stored):
            decision = ConflictDecision(
                at=now,
                winner="google",
                reason="deleted in Google while the CRM had an unpushed edit (a deletion wins)",
                crm_updated_at=_crm_time(stored),
                google_updated=google_time,
            )
        after = mark_synced_from_google(
            _tombstone(stored, google_event, calendar_id, now), now, _with_decision(stored, decision)
        )
        return TombstoneFromGoogle(crm_id, google_id, stored, after, decision)

    if stored is None:
        after = _google_version(None, google_event, index, crm_id, owner_id, now)
        return CreateFromGoogle(crm_id, google_id, mark_synced_from_google(after, now, []))

    google_version = _google_version(stored, google_event, index, crm_id, owner_id, now)
    same_content = content_hash(google_version) == content_hash(stored)
    if has_unpushed_change(stored) and not same_content:
        crm_time = _crm_time(stored)
        if crm_time is not None and (google_time is None or crm_time >= google_time):
            decision = ConflictDecision(
                at=now,
                winner="crm",
                reason="the CRM edit is newer than Google's change; kept (pushed later)",
                crm_updated_at=crm_time,
                google_updated=google_time,
            )
            link = google_version.google
            if stored.google is not None and not _linked_here(stored, calendar_id):
                link = stored.google
            after = stored.model_copy(
                update={
                    "google": link,
                    "sync": stored.sync.model_copy(
                        update={"decisions": _with_decision(stored, decision, google_version)}
                    ),
                }
            )
            return KeepLocal(crm_id, google_id, stored, after, decision)
        decision = ConflictDecision(
            at=now,
            winner="google",
            reason="Google's change is newer than the CRM's unpushed edit",
            crm_updated_at=crm_time,
            google_updated=google_time,
        )
        after = mark_synced_from_google(google_version, now, _with_decision(stored, decision, google_version))
        return UpdateFromGoogle(crm_id, google_id, stored, after, True, decision)

    if same_content:
        # Same content (an etag-only change, or our own push whose write-back is still on its way): link only.
        after = stored.model_copy(update={"google": google_version.google})
        after = mark_synced_from_google(after, now, list(stored.sync.decisions))
        return UpdateFromGoogle(crm_id, google_id, stored, after, False)
    after = mark_synced_from_google(google_version, now, list(stored.sync.decisions))
    return UpdateFromGoogle(crm_id, google_id, stored, after, True)


def _deleted_series(changes: Iterable[dict[str, Any]]) -> frozenset[str]:
    return frozenset(g["id"] for g in changes if is_cancelled(g) and not g.get("recurringEventId"))


def plan_changes(
    changes: Iterable[dict[str, Any]],
    index: _Index,
    *,
    owner_id: str,
    now: dt.datetime,
) -> list[Action]:
    changes = [g for g in changes if g.get("id")]
    deleted_series = _deleted_series(changes)
    actions: list[Action] = []
    for google_event in changes:
        action = _plan_one(google_event, index, owner_id=owner_id, now=now, deleted_series=deleted_series)
        if not isinstance(action, SkipEcho):
            index.put(action.crm_id, action.after)
        actions.append(action)
    return actions


def plan_removals(
    stored: Iterable[tuple[str, CrmEvent]], seen_google_ids: set[str], *, calendar_id: str, now: dt.datetime
) -> list[RemoveMissing]:
    """Full sync: CRM events linked to this calendar whose Google event is not listed any more -> tombstones.

    Only linked events are candidates, so a CRM event never pushed (pending, no link) is never removed.
    """
    removals: list[RemoveMissing] = []
    for crm_id, event in stored:
        if not _linked_here(event, calendar_id) or event.deleted:
            continue
        assert event.google is not None
        if event.google.event_id in seen_google_ids:
            continue
        decision = None
        if has_unpushed_change(event):
            decision = ConflictDecision(
                at=now,
                winner="google",
                reason="gone from Google while the CRM had an unpushed edit (a deletion wins)",
                crm_updated_at=_crm_time(event),
                google_updated=None,
            )
        after = mark_synced_from_google(_tombstone(event, None, calendar_id, now), now, _with_decision(event, decision))
        removals.append(RemoveMissing(crm_id, event.google.event_id, event, after, decision))
    return removals


def plan_series_removal(
    master_id: str, exceptions: Iterable[tuple[str, CrmEvent]], *, calendar_id: str, now: dt.datetime
) -> list[TombstoneFromGoogle]:
    """A deleted series takes its stored exceptions with it (Google may not re-list exceptions already cancelled)."""
    actions: list[TombstoneFromGoogle] = []
    for crm_id, event in exceptions:
        if event.deleted or event.series is None or event.series.series_crm_id != master_id:
            continue
        google_id = event.google.event_id if event.google is not None else ""
        after = mark_synced_from_google(_tombstone(event, None, calendar_id, now), now, list(event.sync.decisions))
        actions.append(TombstoneFromGoogle(crm_id, google_id, event, after))
    return actions


def plan_pull(
    changes: list[dict[str, Any]],
    stored: dict[str, CrmEvent],
    *,
    calendar_id: str,
    owner_id: str,
    now: dt.datetime,
    full: bool,
) -> list[Action]:
    """The actions that bring `stored` in line with Google's `changes` (all of Google's events when `full`)."""
    index = _Index(stored, calendar_id)
    actions = plan_changes(changes, index, owner_id=owner_id, now=now)
    if full:
        seen = {g["id"] for g in changes if g.get("id")}
        actions.extend(plan_removals(list(index.by_id.items()), seen, calendar_id=calendar_id, now=now))
    return actions


def apply_plan(stored: dict[str, CrmEvent], actions: Iterable[Action]) -> dict[str, CrmEvent]:
    """The stored state after the actions (pure; what the executor writes, for tests and properties)."""
    result = dict(stored)
    for action in actions:
        if not isinstance(action, SkipEcho):
            result[action.crm_id] = action.after
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Executor


@dataclass
class PullReport:
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


@dataclass
class _Write:
    op: str  # create | update | set | delete
    ref: Any
    data: dict[str, Any] | None = None
    last_update_time: dt.datetime | None = None
    action: WriteAction | None = None
    google_event: dict[str, Any] | None = None
    final: bool = False  # the calendar write carrying the new sync token


def _valid_doc_id(value: Any) -> bool:
    """A CRM id read from Google is untrusted input: only look up plausible Firestore document ids."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 512
        and "/" not in value
        and value not in (".", "..")
        and not (value.startswith("__") and value.endswith("__"))
    )


def _event_data(event: CrmEvent) -> dict[str, Any]:
    data = dump_for_firestore(event)
    data.pop("id", None)
    return data


def _diff(before: CrmEvent, after: CrmEvent) -> dict[str, Any]:
    old, new = _event_data(before), _event_data(after)
    return {key: value for key, value in new.items() if old.get(key) != value}


class _Writer:
    """Queues writes and commits them in chunks of <= 500; a chunk that fails a precondition is replayed one by one."""

    def __init__(self, ctx: AppContext, report: PullReport, replan: Callable[[_Write], bool]) -> None:
        self.ctx = ctx
        self.report = report
        self.replan = replan
        self.pending: list[_Write] = []
        self.pending_ids: set[str] = set()
        self.update_times: dict[str, dt.datetime] = {}
        self.abandoned = 0  # events whose Google change could not be stored: the sync token must not advance

    def add(self, write: _Write) -> None:
        self.pending.append(write)
        if write.action is not None:
            self.pending_ids.add(write.action.crm_id)
        if len(self.pending) >= MAX_BATCH_WRITES:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            chunk, self.pending = self.pending[:MAX_BATCH_WRITES], self.pending[MAX_BATCH_WRITES:]
            self._commit(chunk)
        self.pending_ids.clear()

    def _commit(self, chunk: list[_Write]) -> None:
        from google.api_core import exceptions as gexc

        store = self.ctx.store
        batch = store.db.batch()
        for write in chunk:
            self._stage(batch, write)
        try:
            results = batch.commit()
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound):
            store.count_commit(writes=0)
            log_event(logger, "pull chunk hit a concurrent write; replaying one by one", writes=len(chunk))
            for write in chunk:
                self._one(write)
            return
        except SyncError:
            raise
        except Exception as exc:
            from shared.errors import StoreUnavailable

            raise StoreUnavailable(f"Firestore is unavailable: {type(exc).__name__}") from exc
        store.count_commit(writes=len(chunk))
        for write, result in zip(chunk, results, strict=False):
            if write.action is not None and getattr(result, "update_time", None) is not None:
                self.update_times[write.action.crm_id] = result.update_time

    def _stage(self, batch: Any, write: _Write) -> None:
        db = self.ctx.store.db
        if write.op == "create":
            batch.create(write.ref, write.data)
        elif write.op == "update":
            option = db.write_option(last_update_time=write.last_update_time) if write.last_update_time else None
            if option is not None:
                batch.update(write.ref, write.data, option=option)
            else:
                batch.update(write.ref, write.data)
        elif write.op == "set":
            batch.set(write.ref, write.data, merge=True)
        else:
            batch.delete(write.ref)

    def _one(self, write: _Write) -> None:
        from google.api_core import exceptions as gexc

        store = self.ctx.store
        if write.final and self.abandoned and write.data is not None:
            write.data.pop("sync_token", None)  # re-list these changes next time rather than lose them
        batch = store.db.batch()
        self._stage(batch, write)
        try:
            results = batch.commit()
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound):
            store.count_commit(writes=0)
            if write.action is not None:
                self.report.replanned += 1
                if write.google_event is None or not self.replan(write):
                    self.abandoned += 1
            return
        except Exception as exc:
            from shared.errors import StoreUnavailable

            raise StoreUnavailable(f"Firestore is unavailable: {type(exc).__name__}") from exc
        store.count_commit()
        if write.action is not None and results and getattr(results[0], "update_time", None) is not None:
            self.update_times[write.action.crm_id] = results[0].update_time


@dataclass
class LeaseHandle:
    """What the coalescer lends the engine: refresh between pages, release in the final commit."""

    ref: Any
    holder: str
    seconds: int


def _action_write(ctx: AppContext, action: WriteAction, update_time: dt.datetime | None) -> _Write | None:
    ref = ctx.store.event_ref(action.crm_id)
    if isinstance(action, CreateFromGoogle):
        return _Write("create", ref, _event_data(action.after), action=action)
    data = _diff(action.before, action.after)
    if not data:
        return None
    return _Write("update", ref, data, last_update_time=update_time, action=action)


def pull_calendar(
    ctx: AppContext,
    user_id: str,
    calendar_id: str,
    *,
    full: bool = False,
    lease: LeaseHandle | None = None,
    reason: str = "",
) -> PullReport:
    """Pull one calendar's Google changes into the CRM (non-coalesced). Raises typed errors; see module docstring.

    `lease` (from shared.coalesce): refreshed between pages of a full list, deleted in the final commit (or on error).
    """
    started = time.perf_counter()
    report = PullReport(user_id=user_id, calendar_id=calendar_id, full=full)
    store = ctx.store
    cal_key = calendar_key(calendar_id)
    cal_ref = store.calendar_ref(user_id, cal_key)
    lease_released = False
    try:
        integration, calendar = store.get_integration_and_calendar(user_id, cal_key)
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
        try:
            client = ctx.calendar_client(integration)
        except NeedsReauth as exc:
            ctx.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "missing_credentials"))
            raise
        sync_token = None if full else calendar.sync_token
        engine = _Engine(ctx, report, user_id, calendar_id, cal_ref, lease, reason)
        try:
            try:
                engine.run(client, sync_token)
            except FullSyncRequired:
                if sync_token is None:
                    raise
                log_event(
                    logger,
                    "sync token rejected (410); full resync",
                    level=logging.WARNING,
                    user_id=user_id,
                    calendar_id=calendar_id,
                )
                report.resynced_after_410 = True
                engine.writer.flush()
                engine = _Engine(ctx, report, user_id, calendar_id, cal_ref, lease, reason)
                engine.run(client, None)
        except NeedsReauth as exc:
            ctx.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "invalid_grant"))
            raise
        lease_released = lease is not None
        return report
    except SyncError as exc:
        _record_failure(ctx, cal_ref, exc, report, lease)
        lease_released = lease is not None
        raise
    finally:
        report.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if lease is not None and not lease_released:
            _release(ctx, lease)


def _release(ctx: AppContext, lease: LeaseHandle) -> None:
    try:
        ctx.store.delete_document(lease.ref)
    except SyncError:
        logger.warning("pull lease release failed; it will expire", extra={"fields": {"lease": lease.ref.id}})


def _record_failure(
    ctx: AppContext, cal_ref: Any, exc: SyncError, report: PullReport, lease: LeaseHandle | None
) -> None:
    """One write: the calendar's last_error (and a failed import), plus the lease release."""
    now = ctx.clock()
    fields: dict[str, Any] = {"last_error": f"{exc.code}: {exc.message}"[:500], "last_error_at": now}
    if report.full:
        fields["import_progress.state"] = "failed"
        fields["import_progress.finished_at"] = now
    try:
        batch = ctx.store.db.batch()
        batch.update(cal_ref, fields)
        if lease is not None:
            batch.delete(lease.ref)
        batch.commit()
        ctx.store.count_commit(writes=2 if lease is not None else 1)
    except Exception:
        logger.warning("could not record the pull failure", extra={"fields": {"user_id": report.user_id}})
        if lease is not None:
            _release(ctx, lease)
    log_event(
        logger,
        "pull failed",
        level=logging.WARNING,
        user_id=report.user_id,
        calendar_id=report.calendar_id,
        code=exc.code,
        reason=exc.message,
    )


class _Engine:
    """One list run (incremental or full) with its writer."""

    def __init__(
        self,
        ctx: AppContext,
        report: PullReport,
        user_id: str,
        calendar_id: str,
        cal_ref: Any,
        lease: LeaseHandle | None,
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

    # -- helpers ------------------------------------------------------------------------------------------------------
    def _candidate_ids(self, items: list[dict[str, Any]]) -> set[str]:
        ids: set[str] = set()
        for item in items:
            if not item.get("id"):
                continue
            ids.add(crm_event_id_for_google(self.calendar_id, item["id"]))
            crm_id = _private(item).get("crmEventId")
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
            if _linked_here(event, self.calendar_id) and event.google
        }
        unmatched = [
            item["id"]
            for item in items
            if item.get("id")
            and item.get("status") == "cancelled"
            and not _private(item).get("crmEventId")
            and item["id"] not in linked_ids
            and crm_event_id_for_google(self.calendar_id, item["id"]) not in found
        ]
        if not unmatched:
            return {}
        return self.ctx.store.events_by_google_ids(self.user_id, self.calendar_id, unmatched)

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

    def _replan(self, write: _Write) -> bool:
        """A concurrent write beat ours: re-read that event and plan it again (bounded). False = not stored."""
        assert write.action is not None
        assert write.google_event is not None
        crm_id = write.action.crm_id
        for _ in range(MAX_REPLANS):
            found = self.ctx.store.get_event_snapshots([crm_id])
            stored = {crm_id: found[crm_id][0]} if crm_id in found else {}
            index = _Index(stored, self.calendar_id)
            action = _plan_one(
                write.google_event,
                index,
                owner_id=self.user_id,
                now=self.now,
                deleted_series=frozenset(self.deleted_series),
            )
            if isinstance(action, SkipEcho):
                return True
            if action.crm_id != crm_id:
                return False  # it matches a different document now: re-list it next time from fresh state
            retry = _action_write(self.ctx, action, found[crm_id][1] if crm_id in found else None)
            if retry is None:
                return True
            batch = self.ctx.store.db.batch()
            self.writer._stage(batch, retry)
            from google.api_core import exceptions as gexc

            try:
                batch.commit()
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound):
                self.ctx.store.count_commit(writes=0)
                continue
            self.ctx.store.count_commit()
            return True
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
    def run(self, client: Any, sync_token: str | None) -> None:
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
            page = client.list_events_page(self.calendar_id, sync_token=sync_token, page_token=page_token)
            report.list_calls += 1
            report.pages += 1
            items = [i for i in page.get("items", []) or [] if i.get("id")]
            report.events_seen += len(items)
            self._apply_page(items)
            page_token = page.get("nextPageToken")
            if not page_token:
                next_sync_token = page.get("nextSyncToken")
                break
            if full:
                self._between_pages()
        if full:
            removals = plan_removals(list(self.linked.items()), self.seen, calendar_id=self.calendar_id, now=self.now)
            for removal in removals:
                self._queue(
                    removal, None, self.writer.update_times.get(removal.crm_id) or self.linked_times.get(removal.crm_id)
                )
        self._finish(next_sync_token)

    def _apply_page(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        ids = self._candidate_ids(items)
        if ids & self.writer.pending_ids:
            self.writer.flush()
        lookup = ids - set(self.linked)
        found = self.ctx.store.get_event_snapshots(lookup) if lookup else {}
        found.update(self._by_link(items, found))
        stored: dict[str, CrmEvent] = {crm_id: event for crm_id, (event, _) in found.items()}
        stored.update(self.linked)
        # Freshest known update time per document: the full sync's initial read < our own commits < this page's read.
        times: dict[str, dt.datetime] = dict(self.linked_times)
        times.update(self.writer.update_times)
        times.update({crm_id: t for crm_id, (_, t) in found.items()})
        index = _Index(stored, self.calendar_id)
        self.deleted_series |= _deleted_series(items)
        for item in items:
            self.seen.add(item["id"])
            action = _plan_one(
                item, index, owner_id=self.user_id, now=self.now, deleted_series=frozenset(self.deleted_series)
            )
            if not isinstance(action, SkipEcho):
                index.put(action.crm_id, action.after)
            self._queue(action, item, times.get(action.crm_id) if action.crm_id else None)
            if isinstance(action, TombstoneFromGoogle) and action.before.recurrence:
                self._remove_exceptions(action.crm_id, index)

    def _remove_exceptions(self, master_id: str, index: _Index) -> None:
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
        self.writer.add(
            _Write(
                "update",
                self.cal_ref,
                {
                    "import_progress.state": "running",
                    "import_progress.pages": self.report.pages,
                    "import_progress.events_seen": self.report.events_seen,
                    "import_progress.started_at": self.now,
                    "import_progress.finished_at": None,
                },
            )
        )
        if self.lease is not None:
            self.writer.add(
                _Write(
                    "set",
                    self.lease.ref,
                    {"holder": self.lease.holder, "expires_at": now + dt.timedelta(seconds=self.lease.seconds)},
                )
            )

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
        self.writer.add(_Write("update", self.cal_ref, fields, final=True))
        if self.lease is not None:
            self.writer.add(_Write("delete", self.lease.ref))
        self.writer.flush()
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


__all__ = [
    "Action",
    "CreateFromGoogle",
    "GoogleLink",
    "KeepLocal",
    "LeaseHandle",
    "PullReport",
    "RemoveMissing",
    "SkipEcho",
    "TombstoneFromGoogle",
    "UpdateFromGoogle",
    "apply_plan",
    "plan_pull",
    "plan_removals",
    "pull_calendar",
]
