"""Google → CRM, the pure planner: from the stored CRM events and one batch of Google changes, typed actions.

No I/O (vdirsyncer-style): `plan_pull` computes, `apply_plan` shows the state the runner
(shared/sync/google_to_crm_run.py) will write, so tests and properties need neither Firestore nor Google.
- `CreateFromGoogle`     a Google event seen for the first time -> a CRM event whose id is derived from
                         (calendar id, Google id), so re-imports never duplicate (README, invariant 1);
- `UpdateFromGoogle`     Google's content (and link/etag) onto the stored CRM event; CRM metadata is kept;
                         `content_changed` False = only the link moved (etag differs, same content);
- `TombstoneFromGoogle`  a cancelled (deleted) Google event -> CRM tombstone (`deleted`, `purge_at`);
- `KeepLocal`            conflict: the CRM event has a not-yet-pushed edit -> keep it, merged with what Google alone
                         changed (CRM → Google pushes the result), store Google's etag and the decision; or hold
                         both versions for the user ("ask me": `sync.state = conflict`);
- `SkipEcho`             Google's etag is the one we stored (we wrote it, or we already applied it): nothing;
- `RemoveMissing`        full sync only: a CRM event linked to this calendar that Google no longer lists -> tombstone.
Matching a Google event to a stored CRM event: by link (google.event_id), by the CRM id CRM → Google put in
`extendedProperties.private.crmEventId` (not for an instance that merely inherited its series' properties), then by the
derived id. Cancelled instances of a series become cancelled exceptions (status `cancelled`, series link); modified
instances are stored linked to their series (`series.series_crm_id`).
Conflicts arise only when the CRM event `has_unpushed_change`; shared/sync/conflict.py merges, then decides (last write
wins by clock, ties to the CRM, a Google deletion always wins), or holds the conflict for the user ("ask me"). A held
event is not overwritten by a Google edit (only a deletion wins over it); the link keeps the etag it held, so the push
after the user's choice meets Google's newer version with a 412 and merges it then.
Echo (README, invariant 3): every write of this direction sets `sync.content_hash = content_hash(new)`, so the CRM
trigger sees nothing to push, and `sync.base` (shared/sync/merge.py) to what both sides now hold; a KeepLocal write sets
both to Google's version, whose etag it stores, so the CRM's remaining differences are exactly what CRM → Google pushes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.gcal.event_types import not_imported_reason, recorded_type_fields
from shared.gcal.wire import (
    STAMP_KEY,
    apply_google_event,
    content_hash,
    google_private,
    has_unpushed_change,
    is_cancelled,
    link_from_google,
    mark_synced_from_google,
    meta_from_google,
    new_crm_event_from_google,
    parse_rfc3339,
)
from shared.models import ConflictDecision, CrmEvent, GoogleLink, ImportTypes, SyncState, crm_event_id_for_google
from shared.sync.conflict import (
    ConflictMode,
    google_deletion_wins,
    held_for_user,
    last_write_wins,
    merge_then_decide,
    tombstone,
    with_decision,
)
from shared.sync.conflict_record import describe
from shared.sync.merge import base_of

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


def linked_here(event: CrmEvent, calendar_id: str) -> bool:
    return event.google is not None and event.google.calendar_id == calendar_id


class StoredIndex:
    """Stored CRM events by id and by Google link, updated as the plan proceeds (so duplicates in one batch no-op)."""

    def __init__(self, stored: dict[str, CrmEvent], calendar_id: str) -> None:
        self.calendar_id = calendar_id
        self.by_id: dict[str, CrmEvent] = dict(stored)
        self.by_link: dict[str, str] = {}
        for crm_id, event in stored.items():
            self._link(crm_id, event)

    def _link(self, crm_id: str, event: CrmEvent) -> None:
        if linked_here(event, self.calendar_id):
            assert event.google is not None
            self.by_link.setdefault(event.google.event_id, crm_id)

    def put(self, crm_id: str, event: CrmEvent) -> None:
        self.by_id[crm_id] = event
        if linked_here(event, self.calendar_id):
            assert event.google is not None
            self.by_link[event.google.event_id] = crm_id

    def match(self, google_event: dict[str, Any]) -> tuple[str, CrmEvent | None]:
        """(crm id to use, stored event or None): by link, then by CRM id (if it really is this event), then derived."""
        google_id = google_event["id"]
        linked = self.by_link.get(google_id)
        if linked is not None and linked in self.by_id:
            return linked, self.by_id[linked]
        crm_id = google_private(google_event).get("crmEventId")
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
        crm_id = google_private(google_event).get("crmEventId")
        if crm_id and crm_id in self.by_id:
            master = self.by_id[crm_id]
            if master.google is not None and master.google.event_id == recurring:
                return crm_id
        return crm_event_id_for_google(self.calendar_id, recurring)

    def has_series(self, google_event: dict[str, Any]) -> bool:
        """The CRM holds this instance's series (live or tombstoned)."""
        series = self.series_crm_id(google_event)
        return series is not None and series in self.by_id

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


# What a cancelled item is trusted for. The sync guide ("Synchronize resources efficiently") promises only the id of a
# deleted entry; the events reference says a cancelled exception carries id, recurringEventId, originalStartTime (and
# possibly status). Google also lists some deleted events with start/end of 2000-01-01 (recorded responses, the
# stand-in's `placeholder_deleted_dates`): a cancelled item's other fields are never read as content.
CANCELLED_TRUSTED_FIELDS = frozenset(
    {"kind", "id", "status", "recurringEventId", "originalStartTime", "etag", "updated", "iCalUID", "htmlLink"}
)
ORPHAN_CANCELLATION = "cancelled instance of a series the CRM does not have"


def cancelled_shape(google_event: dict[str, Any]) -> dict[str, Any]:
    """A cancelled item reduced to the fields Google guarantees for it (no placeholder dates, no stale content)."""
    if not is_cancelled(google_event):
        return google_event
    return {key: value for key, value in google_event.items() if key in CANCELLED_TRUSTED_FIELDS}


def kept_link(before: CrmEvent, link: GoogleLink) -> GoogleLink:
    """Google's link for a minimal item, with what the CRM knew where the item is silent (a minimal cancelled item
    carries no iCalUID, htmlLink or updated: it must not erase them)."""
    if before.google is None or before.google.event_id != link.event_id:
        return link
    known = before.google
    return link.model_copy(
        update={
            "etag": link.etag or known.etag,
            "updated": link.updated or known.updated,
            "ical_uid": link.ical_uid or known.ical_uid,
            "html_link": link.html_link or known.html_link,
        }
    )


def _google_version(
    before: CrmEvent | None,
    google_event: dict[str, Any],
    index: StoredIndex,
    crm_id: str,
    owner_id: str,
    now: dt.datetime,
) -> CrmEvent:
    """The CRM event as Google has it now (before sync bookkeeping), CRM metadata and ids kept."""
    calendar_id = index.calendar_id
    if before is None:
        event = new_crm_event_from_google(google_event, calendar_id, owner_id, now)
        update: dict[str, Any] = {"id": crm_id}
        private = google_private(google_event)
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
        link = kept_link(before, link_from_google(google_event, calendar_id))
        event = before.model_copy(
            update={"status": "cancelled", "google": link, "deleted": False, "deleted_at": None, "purge_at": None}
        )
        if event.series is None and google_event.get("recurringEventId"):
            fresh = new_crm_event_from_google(google_event, calendar_id, owner_id, now)
            event = event.model_copy(update={"series": fresh.series})
        return _fix_series(event, before, index.series_crm_id(google_event))
    event = apply_google_event(before, google_event, calendar_id, now)
    return _fix_series(event, before, index.series_crm_id(google_event))


def _tombstone(before: CrmEvent, google_event: dict[str, Any] | None, now: dt.datetime) -> CrmEvent:
    """The conflict policy's tombstone, its link carrying the etag of Google's deletion when there is one."""
    link = before.google
    if google_event is not None and link is not None and google_event.get("etag"):
        link = link.model_copy(update={"etag": google_event["etag"]})
    return tombstone(before, now, link=link)


def plan_one(
    google_event: dict[str, Any],
    index: StoredIndex,
    *,
    owner_id: str,
    now: dt.datetime,
    deleted_series: frozenset[str] = frozenset(),
    import_types: ImportTypes | None = None,
    conflict_mode: ConflictMode = "last_write_wins",
) -> Action:
    calendar_id = index.calendar_id
    google_event = cancelled_shape(google_event)
    google_id = google_event["id"]
    crm_id, stored = index.match(google_event)
    if stored is None and import_types is not None and (skip := not_imported_reason(google_event, import_types)):
        return SkipEcho(None, google_id, skip)  # a type switched off: new ones stay out, stored ones keep syncing
    etag = google_event.get("etag")
    google_time = parse_rfc3339(google_event.get("updated"))

    if stored is not None and linked_here(stored, calendar_id):
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
            decision = describe(
                google_deletion_wins(
                    stored, google_time, now, "deleted in Google while the CRM had an unpushed edit (a deletion wins)"
                ),
                crm=stored,
                google=None,
            )
        after = mark_synced_from_google(
            _tombstone(stored, google_event, now), now, with_decision(stored.sync.decisions, decision)
        )
        return TombstoneFromGoogle(crm_id, google_id, stored, after, decision)

    if stored is None:
        if cancelled and not index.has_series(google_event):
            # Its series was deleted (and purged) or is a split series `…_R<date>` never seen: nothing to cancel.
            return SkipEcho(None, google_id, ORPHAN_CANCELLATION)
        after = _google_version(None, google_event, index, crm_id, owner_id, now)
        return CreateFromGoogle(crm_id, google_id, mark_synced_from_google(after, now, []))
    if held_for_user(stored):
        return SkipEcho(crm_id, google_id, "held for the user's choice (ask me)")

    google_version = _google_version(stored, google_event, index, crm_id, owner_id, now)
    same_content = content_hash(google_version) == content_hash(stored)
    if has_unpushed_change(stored) and not same_content and not stored.deleted:
        stamp = google_private(google_event).get(STAMP_KEY)
        return _merge(crm_id, google_id, stored, google_version, google_time, now, calendar_id, conflict_mode, stamp)
    if has_unpushed_change(stored) and not same_content:
        # A CRM deletion against a Google edit: not merged, the clocks decide the whole event.
        decision = last_write_wins(
            stored,
            google_time,
            now,
            crm_reason="the CRM edit is newer than Google's change; kept (pushed later)",
            google_reason="Google's change is newer than the CRM's unpushed edit",
        )
        decision = describe(decision, crm=stored, google=google_version)
        if decision.winner == "crm":
            link = google_version.google
            if stored.google is not None and not linked_here(stored, calendar_id):
                link = stored.google
            after = stored.model_copy(
                update={
                    "google": link,
                    "sync": stored.sync.model_copy(
                        update={"decisions": with_decision(stored.sync.decisions, decision)}
                    ),
                }
            )
            return KeepLocal(crm_id, google_id, stored, after, decision)
        after = mark_synced_from_google(google_version, now, with_decision(stored.sync.decisions, decision))
        return UpdateFromGoogle(crm_id, google_id, stored, after, True, decision)

    if same_content:
        # Same content (an etag-only change, or our own push whose write-back is still on its way): link only.
        after = stored.model_copy(update={"google": google_version.google, **recorded_type_fields(google_version)})
        after = mark_synced_from_google(after, now, list(stored.sync.decisions))
        return UpdateFromGoogle(crm_id, google_id, stored, after, False)
    after = mark_synced_from_google(google_version, now, list(stored.sync.decisions))
    return UpdateFromGoogle(crm_id, google_id, stored, after, True)


def _merge(
    crm_id: str,
    google_id: str,
    stored: CrmEvent,
    google_version: CrmEvent,
    google_time: dt.datetime | None,
    now: dt.datetime,
    calendar_id: str,
    conflict_mode: ConflictMode,
    stamp: str | None,
) -> UpdateFromGoogle | KeepLocal:
    """A Google change meets an unpushed CRM edit: shared/sync/conflict.py merges, then decides (or holds); `stamp`:
    the content stamp our last push left on Google's copy (conflict.merge_base)."""
    outcome = merge_then_decide(
        stored,
        google_version,
        google_time,
        now,
        mode=conflict_mode,
        crm_reason="the CRM edit is newer than Google's change; kept (pushed later)",
        google_reason="Google's change is newer than the CRM's unpushed edit",
        stamp=stamp,
    )
    decisions = with_decision(stored.sync.decisions, outcome.decision)
    if outcome.google_only:
        after = mark_synced_from_google(google_version, now, decisions)
        return UpdateFromGoogle(crm_id, google_id, stored, after, True, outcome.decision)
    sync_update: dict[str, Any] = {"decisions": decisions}
    link = google_version.google
    if stored.google is not None and not linked_here(stored, calendar_id):
        link = stored.google
    else:
        # The CRM now holds Google's version merged in: it is the base, and what Google holds at the stored etag.
        sync_update.update(content_hash=content_hash(google_version), base=base_of(google_version))
    if outcome.held:
        sync_update["state"] = SyncState.CONFLICT
    after = outcome.content.model_copy(update={"google": link, "sync": stored.sync.model_copy(update=sync_update)})
    return KeepLocal(crm_id, google_id, stored, after, outcome.decision)


def deleted_series_ids(changes: Iterable[dict[str, Any]]) -> frozenset[str]:
    return frozenset(g["id"] for g in changes if is_cancelled(g) and not g.get("recurringEventId"))


def plan_changes(
    changes: Iterable[dict[str, Any]],
    index: StoredIndex,
    *,
    owner_id: str,
    now: dt.datetime,
    import_types: ImportTypes | None = None,
    conflict_mode: ConflictMode = "last_write_wins",
) -> list[Action]:
    changes = [g for g in changes if g.get("id")]
    deleted_series = deleted_series_ids(changes)
    actions: list[Action] = []
    orphans: list[dict[str, Any]] = []

    def plan(google_event: dict[str, Any]) -> Action:
        return plan_one(
            google_event,
            index,
            owner_id=owner_id,
            now=now,
            deleted_series=deleted_series,
            import_types=import_types,
            conflict_mode=conflict_mode,
        )

    def keep(action: Action) -> None:
        if not isinstance(action, SkipEcho):
            index.put(action.crm_id, action.after)
        actions.append(action)

    for google_event in changes:
        action = plan(google_event)
        if isinstance(action, SkipEcho) and action.reason == ORPHAN_CANCELLATION:
            orphans.append(google_event)  # planned again below: its series may come later in the batch
            continue
        keep(action)
    for google_event in orphans:
        keep(plan(google_event))
    return actions


def plan_removals(
    stored: Iterable[tuple[str, CrmEvent]], seen_google_ids: set[str], *, calendar_id: str, now: dt.datetime
) -> list[RemoveMissing]:
    """Full sync: CRM events linked to this calendar whose Google event is not listed any more -> tombstones.

    Only linked events are candidates, so a CRM event never pushed (pending, no link) is never removed.
    """
    removals: list[RemoveMissing] = []
    for crm_id, event in stored:
        if not linked_here(event, calendar_id) or event.deleted:
            continue
        assert event.google is not None
        if event.google.event_id in seen_google_ids:
            continue
        decision = None
        if has_unpushed_change(event):
            decision = describe(
                google_deletion_wins(
                    event, None, now, "gone from Google while the CRM had an unpushed edit (a deletion wins)"
                ),
                crm=event,
                google=None,
            )
        decisions = with_decision(event.sync.decisions, decision)
        after = mark_synced_from_google(_tombstone(event, None, now), now, decisions)
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
        after = mark_synced_from_google(_tombstone(event, None, now), now, list(event.sync.decisions))
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
    import_types: ImportTypes | None = None,
    conflict_mode: ConflictMode = "last_write_wins",
) -> list[Action]:
    """The actions that bring `stored` in line with Google's `changes` (all of Google's events when `full`).

    `import_types`: which non-meeting event types may enter the CRM (None: every type)."""
    index = StoredIndex(stored, calendar_id)
    actions = plan_changes(
        changes, index, owner_id=owner_id, now=now, import_types=import_types, conflict_mode=conflict_mode
    )
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
