"""THE conflict policy: who wins when the CRM and Google both changed one event. Both directions call this module.

- Last write wins, by clock. Google's clock is the event's `updated`; the CRM's is `deleted_at` for a CRM deletion,
  else `updated_at`, else `created_at`. A side whose clock is unknown counts as older than any known time (an edit
  that cannot say when it was made does not beat one that can). Ties, and two unknown clocks, go to the CRM: the CRM
  edit is the newest intention of the user who owns the meeting.
- A deletion in Google (of the event, or of its whole series) wins over any CRM edit: Google no longer has the event,
  so there is nothing to push the edit into. The CRM event becomes a tombstone that keeps its Google link (which
  Google event was deleted stays on record).
- Every decision is a `ConflictDecision` appended to `sync.decisions` (the newest MAX_DECISIONS kept).

The Google → CRM planner asks when a Google change meets an unpushed CRM edit; the CRM → Google runner asks when its
conditional write finds a newer Google version. One rule, so the winner never depends on which function sees the
conflict first (a property test runs the same conflicts through both).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

from shared.models import ConflictDecision, CrmEvent, GoogleLink

Winner = Literal["crm", "google"]

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
