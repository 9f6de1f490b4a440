"""CRM → Google for events Google restricts: birthdays, events from Gmail, and invitations organised by someone else.

Why a separate path: a full-body patch (crm_to_google_plan.google_body) re-sends every synced field, and Google
refuses a birthday rename sent that way, or any write of a non-organiser that touches the organiser's fields (403
`forbiddenForNonOrganizer`). So for these events the runner reads Google's current copy, and `plan_restricted`
compares the CRM event with it field by field (shared/gcal/event_types.py `changed_fields`): the changes the type and
the user's role allow go out as a patch of those fields only; the rest is refused with a recorded reason and the CRM
copy takes Google's values back (README, invariant 10: never send what Google would refuse, record instead of
retrying). An RSVP is the user's own attendee entry: the patch carries Google's attendee list with only that entry's
answer changed (a patch replaces arrays whole, and an attendee may not touch the other entries).
Pure: no I/O.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from shared.errors import GoogleApiError
from shared.gcal.event_types import OWN_RESPONSE, allowed_fields, changed_fields, refusal_reason
from shared.gcal.wire import crm_private_properties, crm_to_google, google_private
from shared.models import CrmEvent
from shared.sync.crm_to_google_plan import google_view, wire_event

# CRM field -> the Google body key it is sent as (`meta` travels in extendedProperties.private).
GOOGLE_KEY: dict[str, str] = {
    "title": "summary",
    "description": "description",
    "location": "location",
    "start": "start",
    "end": "end",
    "status": "status",
    "attendees": "attendees",
    "reminders": "reminders",
    "recurrence": "recurrence",
    "attachments": "attachments",
    "visibility": "visibility",
    "transparency": "transparency",
}
# The user's own attendee entry, CRM name -> Google name.
OWN_ENTRY_KEYS: dict[str, str] = {
    "response_status": "responseStatus",
    "comment": "comment",
    "additional_guests": "additionalGuests",
}


@dataclass(frozen=True)
class RestrictedPlan:
    """What to send (`body`, None: nothing allowed changed) and what to refuse, judged against Google's copy."""

    google_version: CrmEvent  # Google's copy as the CRM event (CRM metadata kept)
    body: dict[str, Any] | None
    sent: tuple[str, ...]
    refused: tuple[str, ...]

    @property
    def refusal(self) -> str | None:
        return refusal_reason(self.google_version, list(self.refused)) if self.refused else None


def _own_entry(attendees: list[dict[str, Any]], event: CrmEvent) -> list[dict[str, Any]]:
    """Google's attendee list with only the user's own answer taken from the CRM event."""
    own = next((a for a in attendees if a.get("self")), None)
    if own is None:
        return attendees
    mine = next((a for a in event.attendees if a.email.lower() == str(own.get("email", "")).lower()), None)
    if mine is None:
        return attendees
    updated = copy.deepcopy(attendees)
    for entry in updated:
        if entry.get("self"):
            for crm_key, google_key in OWN_ENTRY_KEYS.items():
                value = getattr(mine, crm_key)
                if value in (None, 0) and crm_key != "response_status":
                    entry.pop(google_key, None)
                else:
                    entry[google_key] = value
    return updated


def restricted_body(event: CrmEvent, current: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """A patch body that carries exactly `fields` of the CRM event (and nothing else Google could object to)."""
    full = crm_to_google(wire_event(event))
    body: dict[str, Any] = {}
    for name in fields:
        if name == "meta":
            body["extendedProperties"] = {"private": crm_private_properties(event)}
        elif name in GOOGLE_KEY:
            body[GOOGLE_KEY[name]] = full.get(GOOGLE_KEY[name])
    if OWN_RESPONSE in fields and "attendees" not in fields:
        body["attendees"] = _own_entry(list(current.get("attendees") or []), event)
    return body


def plan_restricted(event: CrmEvent, current: dict[str, Any], calendar_id: str, now: dt.datetime) -> RestrictedPlan:
    """Split the CRM event's differences from Google's current copy into what to send and what to refuse.

    The type and role come from Google's copy (they are Google's to say); CRM metadata a type cannot carry (a
    birthday's) stays in the CRM without a refusal: it is the CRM's own and Google never needed it.
    """
    google_version = google_view(event, current, calendar_id, now)
    allowed = allowed_fields(google_version)
    changed = changed_fields(event, google_version, google_private(current))
    sent = [name for name in changed if allowed is None or name in allowed]
    refused = [name for name in changed if name not in sent and name != "meta"]
    body = restricted_body(event, current, sent) if sent else None
    return RestrictedPlan(google_version, body, tuple(sent), tuple(refused))


def is_refusal(exc: GoogleApiError, event: CrmEvent) -> bool:
    """Google refused the write for the event's type or the user's role: permanent, restore instead of retrying."""
    if exc.status == 403 and exc.reason == "forbiddenForNonOrganizer":
        return True
    return exc.status == 400 and (exc.reason == "eventTypeRestriction" or event.event_type != "default")
