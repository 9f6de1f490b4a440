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
