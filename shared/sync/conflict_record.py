"""What a conflict decision records beyond its winner: the fields the two versions differed on and both sides' values.

Why a module of its own: the pull and the push each decide conflicts; both pass their decision through `describe`, so
the record the conflict center shows (and can undo) is built one way whichever function met the conflict.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.models import ConflictDecision, CrmEvent

# Synced content a user can see and choose between. CRM metadata (CRM-owned), the series link and the tombstone flag
# are not a user's choice; a deletion is recorded as the single field "deleted".
CHOOSABLE_FIELDS: tuple[str, ...] = (
    "title",
    "description",
    "location",
    "start",
    "end",
    "status",
    "attendees",
    "reminders",
    "recurrence",
    "attachments",
    "conference_link",
    "visibility",
    "transparency",
)


def field_values(event: CrmEvent, fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The JSON form of some content fields of an event (what is stored in a decision and compared on resolve)."""
    return event.model_dump(mode="json", include=set(fields))


def differing_fields(crm: CrmEvent, google: CrmEvent) -> list[str]:
    crm_values, google_values = field_values(crm, CHOOSABLE_FIELDS), field_values(google, CHOOSABLE_FIELDS)
    return [name for name in CHOOSABLE_FIELDS if crm_values.get(name) != google_values.get(name)]


def decision_id(decision: ConflictDecision) -> str:
    """Stable within an event: derived from what was decided and when."""
    basis = f"{decision.at.isoformat()}\n{decision.winner}\n{decision.reason}"
    return hashlib.sha256(basis.encode()).hexdigest()[:20]


def describe(decision: ConflictDecision, *, crm: CrmEvent, google: CrmEvent | None) -> ConflictDecision:
    """The decision with its id, the differing fields and each side's values of them.

    `google` is Google's version as a CRM event (None when Google deleted the event). When either side is a deletion
    only "deleted" is recorded: the conflict center shows it but offers no undo.
    """
    if google is None or crm.deleted:
        fields = ["deleted"]
        crm_side: dict[str, Any] = {"deleted": crm.deleted}
        google_side: dict[str, Any] = {"deleted": google is None}
    else:
        fields = differing_fields(crm, google)
        crm_side, google_side = field_values(crm, fields), field_values(google, fields)
    winning, losing = (crm_side, google_side) if decision.winner == "crm" else (google_side, crm_side)
    described = decision.model_copy(update={"fields": fields, "winning": winning, "losing": losing})
    return described.model_copy(update={"id": decision_id(described)})


def described(
    decision: ConflictDecision | None, crm: CrmEvent, google: CrmEvent | None = None
) -> ConflictDecision | None:
    """`describe` for an optional decision (the planners record None when there was no conflict)."""
    return None if decision is None else describe(decision, crm=crm, google=google)


def choosable_fields(merge_fields: tuple[str, ...] | list[str]) -> list[str]:
    """The choosable fields a merge's field names touch (a guest `attendees[x]` is the field `attendees`)."""
    touched = {name.split("[", 1)[0] for name in merge_fields}
    return [name for name in CHOOSABLE_FIELDS if name in touched]


def describe_merge(
    decision: ConflictDecision,
    *,
    applied: CrmEvent,
    loser: CrmEvent,
    fields_merged: tuple[str, ...],
    fields_decided: tuple[str, ...],
) -> ConflictDecision:
    """A decision after a three-way merge: only the decided fields are a user's choice.

    `winning` holds the values the event now has (`applied`: the merge's result), `losing` the other side's values of
    the decided fields, so "keep the other version" changes only what the rule decided and keeps every merged edit.
    A merge without a decided field records `fields_merged` and no choosable field (nothing to undo).
    """
    fields = choosable_fields(fields_decided)
    described = decision.model_copy(
        update={
            "fields": fields,
            "winning": field_values(applied, fields) if fields else {},
            "losing": field_values(loser, fields) if fields else {},
            "fields_merged": list(fields_merged),
            "fields_decided": list(fields_decided),
        }
    )
    return described.model_copy(update={"id": decision_id(described)})
