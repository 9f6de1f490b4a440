"""THE conflict policy: who wins when the CRM and Google both changed one event. Both directions call this module.

- Last write wins, by clock. Google's clock is the event's `updated`; the CRM's is `deleted_at` for a CRM deletion,
  else `updated_at`, else `created_at`. A side whose clock is unknown counts as older than any known time (an edit
  that cannot say when it was made does not beat one that can). Ties, and two unknown clocks, go to the CRM: the CRM
  edit is the newest intention of the user who owns the meeting.
- A deletion in Google (of the event, or of its whole series) wins over any CRM edit: Google no longer has the event,
  so there is nothing to push the edit into. The CRM event becomes a tombstone that keeps its Google link (which
  Google event was deleted stays on record).
- Every decision is a `ConflictDecision` appended to `sync.decisions` (the newest MAX_DECISIONS kept).

Merge, then decide (`merge_then_decide`): before the rule, the three-way merge (shared/sync/merge.py) against
`sync.base` takes every field that only one side changed from that side; only fields both sides changed to different
values go to the rule, whose winner brings its values of those fields. No base (events synced before bases were
stored): every differing field goes to the rule, which is plain last-write-wins. A deletion is not merged: a Google
deletion wins as above, a CRM deletion against a Google edit is decided by the clocks as a whole.
"Ask me" (`Integration.conflict_mode == "ask_me"`): fields both sides changed are not decided; the one-sided fields
still merge into the CRM event, which holds the CRM's values of the conflicting fields and a pending decision (both
versions) in `sync.state = conflict`; no push and no pull overwrites it until the user chooses
(shared/account/conflict_center.py). A Google deletion still wins over a held event.

The Google → CRM planner asks when a Google change meets an unpushed CRM edit; the CRM → Google runner asks when its
conditional write finds a newer Google version. One rule, so the winner never depends on which function sees the
conflict first (a property test runs the same conflicts through both).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from shared.gcal.wire import content_hash, wire_event
from shared.models import ConflictDecision, CrmEvent, GoogleLink, SyncBase, SyncState
from shared.sync.conflict_record import describe_merge
from shared.sync.merge import MERGED_FIELDS, base_of, three_way_merge

Winner = Literal["crm", "google"]
ConflictMode = Literal["last_write_wins", "ask_me"]
HELD_REASON = "changed on both sides; held for your choice (ask me)"
MERGED_REASON = "merged: every field was changed on one side only"

MAX_DECISIONS = 10
TOMBSTONE_RETENTION = dt.timedelta(days=30)  # tombstones are purged by Firestore TTL (`purge_at`) after this


def crm_clock(event: CrmEvent) -> dt.datetime | None:
    """The CRM side's last-write-wins clock: the deletion time of a CRM deletion, else the edit (or creation) time."""
    if event.deleted and event.deleted_at is not None:
        return event.deleted_at
    return event.updated_at or event.created_at


def winner_by_clock(crm_time: dt.datetime | None, google_time: dt.datetime | None) -> Winner:
    """Later clock wins; an unknown clock is older than any known one; ties go to the CRM."""
    if google_time is None:
        return "crm"
    if crm_time is None:
        return "google"
    return "crm" if crm_time >= google_time else "google"


def last_write_wins(
    event: CrmEvent, google_updated: dt.datetime | None, now: dt.datetime, *, crm_reason: str, google_reason: str
) -> ConflictDecision:
    """Decide a conflict between the CRM event and a Google version last updated at `google_updated`."""
    crm_time = crm_clock(event)
    winner = winner_by_clock(crm_time, google_updated)
    return ConflictDecision(
        at=now,
        winner=winner,
        reason=crm_reason if winner == "crm" else google_reason,
        crm_updated_at=crm_time,
        google_updated=google_updated,
    )


def google_deletion_wins(
    event: CrmEvent, google_updated: dt.datetime | None, now: dt.datetime, reason: str
) -> ConflictDecision:
    """A deletion in Google against a CRM edit: Google wins, whatever the clocks say."""
    return ConflictDecision(
        at=now, winner="google", reason=reason, crm_updated_at=crm_clock(event), google_updated=google_updated
    )


def with_decision(decisions: Iterable[ConflictDecision], *new: ConflictDecision | None) -> list[ConflictDecision]:
    """`sync.decisions` after recording `new` (Nones skipped): the newest MAX_DECISIONS."""
    return [*decisions, *(decision for decision in new if decision is not None)][-MAX_DECISIONS:]


def tombstone(
    event: CrmEvent, now: dt.datetime, *, link: GoogleLink | None, deleted_at: dt.datetime | None = None
) -> CrmEvent:
    """The CRM event deleted because Google deleted it: content kept, Google link kept, purged after retention."""
    return event.model_copy(
        update={
            "deleted": True,
            "deleted_at": deleted_at or now,
            "purge_at": now + TOMBSTONE_RETENTION,
            "google": link,
        }
    )


def held_for_user(event: CrmEvent) -> bool:
    """The event holds both versions of a conflict for the user ("ask me"): no push or pull may overwrite it."""
    return event.sync.state == SyncState.CONFLICT and any(
        d.pending and d.resolved_by_user is None for d in event.sync.decisions
    )


@dataclass(frozen=True)
class MergeOutcome:
    """The CRM event after merging with Google's version and deciding what both sides changed.

    - content: the CRM event with the merged content (everything not merged: meta, ids, times, link, sync, kept);
    - decision: the described decision (`fields_merged`, `fields_decided`; `pending` when held);
    - held: "ask me" held a conflict: `content` keeps the CRM's values of the conflicting fields, nothing was decided;
    - google_only: the merged content is Google's version: nothing is left to push.
    """

    content: CrmEvent
    decision: ConflictDecision
    held: bool
    google_only: bool


MAX_STAMP_SEARCH_FIELDS = 6  # at most 2**6 candidates (two hashes each), only on the conflict path


def merge_base(event: CrmEvent, google: CrmEvent, stamp: str | None) -> SyncBase | None:
    """The base to merge against: `event.sync.base`, unless Google holds a version we pushed whose write-back never
    reached the CRM (the push died after its Google write); then that pushed version, which both sides held.

    Why: a push that dies between its Google write and its write-back leaves the CRM's base older than what Google
    got from us. A later CRM edit of a field that push carried and a later Google edit of another field would then both
    look like changes of that field, and last write wins could hand Google's copy of our own older value back over the
    CRM's newer edit. Google's copy carries our stamp (`crmContentHash`: the hash of the content we pushed, shared/sync/
    crm_to_google_plan.py). Every version we push is the CRM's content at the time (a merge goes into the CRM before it
    is pushed), so each of its fields still holds either in the CRM or in Google, unless both changed it since: the
    pushed version is the CRM's event with some of its differing fields taken from Google, found by its stamp. Found:
    its base is the newer agreement. Not found (the stamp is the CRM's synced hash, or both sides changed a field since,
    or too many fields differ to search): `event.sync.base`, as before."""
    if not stamp or stamp == event.sync.content_hash:
        return event.sync.base
    differing = [name for name in MERGED_FIELDS if getattr(event, name) != getattr(google, name)]
    if len(differing) > MAX_STAMP_SEARCH_FIELDS:
        return event.sync.base
    for size in range(len(differing) + 1):
        for names in combinations(differing, size):
            candidate = event.model_copy(update={name: getattr(google, name) for name in names}) if names else event
            if stamp in (content_hash(candidate), content_hash(wire_event(candidate))):
                return base_of(candidate)
    return event.sync.base


def merge_then_decide(
    event: CrmEvent,
    google: CrmEvent,
    google_updated: dt.datetime | None,
    now: dt.datetime,
    *,
    mode: ConflictMode = "last_write_wins",
    crm_reason: str,
    google_reason: str,
    stamp: str | None = None,
) -> MergeOutcome:
    """Merge the CRM event with Google's version (`google`: its content mapped onto the CRM event) against the base
    (`merge_base`: `event.sync.base`, or the version we pushed that Google holds by its `stamp` and the CRM never
    recorded), then decide the fields both sides changed by the rule, or hold them ("ask me")."""
    result = three_way_merge(merge_base(event, google, stamp), event, google)
    held = result.has_conflict and mode == "ask_me"
    if held:
        decision = ConflictDecision(
            at=now,
            winner="crm",
            reason=HELD_REASON,
            crm_updated_at=crm_clock(event),
            google_updated=google_updated,
            pending=True,
        )
    else:
        decision = last_write_wins(event, google_updated, now, crm_reason=crm_reason, google_reason=google_reason)
        if not result.has_conflict:
            decision = decision.model_copy(update={"reason": MERGED_REASON})
    winner: Winner = "crm" if held else decision.winner
    content = result.merged(winner)
    loser = google if winner == "crm" else event
    described = describe_merge(
        decision,
        applied=content,
        loser=loser,
        fields_merged=result.fields_merged,
        fields_decided=result.fields_conflicting,
    )
    as_google = google.model_copy(update={name: getattr(content, name) for name in MERGED_FIELDS})
    google_only = not held and content_hash(as_google) == content_hash(google)
    return MergeOutcome(content=content, decision=described, held=held, google_only=google_only)
