"""Event types and invitations: what each Google event becomes in the CRM, and which CRM edits Google can take.

Why a module of its own: Google restricts writes per event type and per role, and both directions must agree on it.
The pull decides from `ImportTypes` what enters the CRM; the push (shared/sync/restricted_push.py) decides from
`allowed_fields` which CRM changes it may send and refuses the rest (README, invariant 10). Pure, no I/O.

What Google documents, and what the CRM makes of it:
- Event types (https://developers.google.com/workspace/calendar/api/guides/event-types; status events:
  https://developers.google.com/workspace/calendar/api/guides/calendar-status): `default` and `fromGmail` are
  meetings; `outOfOffice` and `focusTime` are busy blocks (shown, not meetings); `workingLocation` and `birthday`
  enter the CRM only when the user opts in. `eventType` cannot change after creation (events reference).
  A birthday takes changes to `summary`, `reminders` and `colorId` only; a fromGmail event to `reminders`,
  `colorId`, `visibility`, `transparency`, `status` and private `extendedProperties` only (the guide, and the
  Workspace updates post of 2024-05-30 on events created from Gmail).
- Invitations (https://developers.google.com/workspace/calendar/api/guides/invite-attendees; 403
  `forbiddenForNonOrganizer` in https://developers.google.com/workspace/calendar/api/guides/errors): in a copy whose
  `organizer.self` is false, the user may change only their own attendee entry (`responseStatus`, `comment`,
  `additionalGuests`), their reminders and colour, and the copy's private extended properties; anything else needs
  `guestsCanModify` ("Whether attendees other than the organizer can modify the event", events reference).
"""

from __future__ import annotations

from typing import Any, Literal

from shared.models import MEETING_TYPES, Attendee, CrmEvent, ImportTypes

EventType = Literal["default", "outOfOffice", "focusTime", "workingLocation", "birthday", "fromGmail"]
# Google's eventType -> its properties object (recorded on the CRM event as `type_properties`).
PROPERTIES_FIELD: dict[str, str] = {
    "outOfOffice": "outOfOfficeProperties",
    "focusTime": "focusTimeProperties",
    "workingLocation": "workingLocationProperties",
    "birthday": "birthdayProperties",
}

# The CRM content fields a change may touch, named as the push compares them. `own_response` is the user's own
# attendee entry (response_status, comment, additional_guests); `attendees` is every other part of the guest list.
OWN_RESPONSE = "own_response"
OWN_ATTENDEE_FIELDS = ("response_status", "comment", "additional_guests")
COMPARED_FIELDS: tuple[str, ...] = (
    "title",
    "description",
    "location",
    "start",
    "end",
    "status",
    "attendees",
    OWN_RESPONSE,
    "reminders",
    "recurrence",
    "attachments",
    "visibility",
    "transparency",
    "meta",
)
# Attendee flags Google owns (and `resource`, which the CRM does not edit): never a CRM change.
GOOGLE_OWNED_ATTENDEE_FLAGS = frozenset({"organizer", "is_self", "resource"})
# Per type, the CRM fields a change may touch (None: any). `meta` travels in extendedProperties.private.
TYPE_ALLOWED: dict[str, frozenset[str] | None] = {
    "default": None,
    "outOfOffice": None,
    "focusTime": None,
    "workingLocation": None,
    "birthday": frozenset({"title", "reminders"}),
    "fromGmail": frozenset({"reminders", "visibility", "transparency", "status", "meta"}),
}
# What an attendee who is not the organiser may change without guestsCanModify.
GUEST_ALLOWED = frozenset({OWN_RESPONSE, "reminders", "meta"})
# Friendly names for a refusal message.
GOOGLE_NAMES: dict[str, str] = {
    "title": "summary",
    "own_response": "your response",
    "meta": "extendedProperties.private",
}


def event_type_of(google_event: dict[str, Any]) -> str:
    return str(google_event.get("eventType") or "default")


def not_imported_reason(google_event: dict[str, Any], import_types: ImportTypes) -> str | None:
    """Why the pull leaves a Google event it has never stored out of the CRM (None: it is imported)."""
    event_type = event_type_of(google_event)
    if import_types.imports(event_type):
        return None
    return f"event type {event_type} is not imported (import_types)"


def type_fields_from_google(google_event: dict[str, Any]) -> dict[str, Any]:
    """The CrmEvent fields that record a Google event's type and the user's role (Google-owned, not synced content)."""
    event_type = event_type_of(google_event)
    props_field = PROPERTIES_FIELD.get(event_type)
    props = google_event.get(props_field) if props_field else None
    organizer = google_event.get("organizer")
    return {
        "event_type": event_type,
        "type_properties": dict(props) if isinstance(props, dict) else None,
        "is_meeting": event_type in MEETING_TYPES,
        # No organizer in the body (a minimal item, or an event the CRM created): the user's own event.
        "user_is_organizer": bool(organizer.get("self")) if isinstance(organizer, dict) else True,
        "guests_can_modify": bool(google_event.get("guestsCanModify", False)),
    }


TYPE_FIELDS = ("event_type", "type_properties", "is_meeting", "user_is_organizer", "guests_can_modify")


def recorded_type_fields(event: CrmEvent) -> dict[str, Any]:
    """The type and role fields of a CRM event (carried onto a stored event whose content did not change)."""
    return {name: getattr(event, name) for name in TYPE_FIELDS}


def allowed_fields(event: CrmEvent) -> frozenset[str] | None:
    """The CRM fields a change of this event may touch in Google (None: any), from its type and the user's role."""
    by_type = TYPE_ALLOWED.get(event.event_type, frozenset())
    by_role: frozenset[str] | None = None
    if not event.user_is_organizer and not event.guests_can_modify:
        by_role = GUEST_ALLOWED
    elif not event.user_is_organizer:
        by_role = frozenset(COMPARED_FIELDS)
    if by_type is None:
        return by_role
    if by_role is None:
        return by_type
    return by_type & by_role


def is_restricted(event: CrmEvent) -> bool:
    """True when a push of this event must send only what Google allows (checked against Google's current copy)."""
    return allowed_fields(event) is not None


def _own_email(google_version: CrmEvent) -> str | None:
    return next((a.email.lower() for a in google_version.attendees if a.is_self), None)


def _attendee_view(attendees: list[Attendee], own: str | None, *, own_only: bool) -> list[dict[str, Any]]:
    """Attendees as compared: without Google's flags; the user's own answer split from the rest of the list."""
    view = []
    for attendee in attendees:
        dumped = attendee.model_dump(mode="json", exclude=set(GOOGLE_OWNED_ATTENDEE_FLAGS))
        mine = own is not None and attendee.email.lower() == own
        if own_only:
            if mine:
                view.append({key: dumped[key] for key in OWN_ATTENDEE_FIELDS})
            continue
        if mine:
            for key in OWN_ATTENDEE_FIELDS:
                dumped.pop(key, None)
        view.append(dumped)
    return view


def changed_fields(crm: CrmEvent, google_version: CrmEvent, google_private: dict[str, str]) -> list[str]:
    """The COMPARED_FIELDS on which the CRM event differs from Google's current copy of it.

    `google_version` is Google's copy mapped into the CRM event (its `meta` is the CRM's, never taken from Google),
    so `meta` is compared with the CRM properties Google holds (`google_private`, extendedProperties.private).
    """
    from shared.gcal.wire import META_KEYS, crm_private_properties

    changed: list[str] = []
    own = _own_email(google_version)
    for name in COMPARED_FIELDS:
        if name == "meta":
            ours = crm_private_properties(crm)
            ours.pop(META_KEYS["crm_event_id"], None)
            theirs = {key: google_private.get(key) for key in ours if key != META_KEYS["crm_event_id"]}
            if any(theirs.get(key) != value for key, value in ours.items()):
                changed.append(name)
        elif name == "attendees":
            if _attendee_view(crm.attendees, own, own_only=False) != _attendee_view(
                google_version.attendees, own, own_only=False
            ):
                changed.append(name)
        elif name == OWN_RESPONSE:
            if own is not None and _attendee_view(crm.attendees, own, own_only=True) != _attendee_view(
                google_version.attendees, own, own_only=True
            ):
                changed.append(name)
        elif crm.model_dump(mode="json", include={name}) != google_version.model_dump(mode="json", include={name}):
            changed.append(name)
    return changed


def refusal_reason(event: CrmEvent, refused: list[str]) -> str:
    """The recorded reason of a refused CRM change (sync.last_error)."""
    names = ", ".join(GOOGLE_NAMES.get(name, name) for name in refused)
    if not event.user_is_organizer and event.event_type in MEETING_TYPES:
        who = "an invitation from another organiser"
        if event.organizer is not None and event.organizer.email:
            who = f"an invitation organised by {event.organizer.email}"
        return (
            f"refused: Google does not let an attendee change {names} of {who} "
            f"(only your response, reminders and private properties); the CRM copy was restored from Google"
        )
    return (
        f"refused: Google does not allow changing {names} on an event of type {event.event_type}; "
        f"the CRM copy was restored from Google"
    )
