"""Event types and their restrictions, as Google's "Event types" guide states them.

Sources: https://developers.google.com/workspace/calendar/api/guides/event-types (which methods each type allows,
birthday creation rules, fromGmail update restrictions), https://developers.google.com/workspace/calendar/api/
guides/calendar-status (focus time, out of office and working location: primary calendars only, each with its
properties object), the Workspace updates post of 2024-05-30 "The Calendar API now distinguishes events created from
Gmail" (fromGmail updates restricted to reminders, colorId, visibility, status, extendedProperties) and the events
reference (`eventType`: "cannot be modified after the event is created").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .errors import ApiError, invalid

PROPERTIES_FIELD = {
    "birthday": "birthdayProperties",
    "focusTime": "focusTimeProperties",
    "outOfOffice": "outOfOfficeProperties",
    "workingLocation": "workingLocationProperties",
}
STATUS_TYPES = ("focusTime", "outOfOffice", "workingLocation")
# Fields an update may change, per type (None: any field). Everything else must stay as stored.
# birthday: colorId, summary, reminders (event-types guide, "Birthday"); fromGmail: the Workspace update post plus
# transparency, which the guide lists with them; only the private extended properties.
UPDATABLE: dict[str, frozenset[str] | None] = {
    "default": None,
    "birthday": frozenset({"colorId", "summary", "reminders"}),
    "fromGmail": frozenset({"colorId", "reminders", "visibility", "transparency", "status", "extendedProperties"}),
    "focusTime": None,
    "outOfOffice": None,
    "workingLocation": None,
}
IGNORED_ON_COMPARE = frozenset(
    {
        "kind",
        "etag",
        "id",
        "htmlLink",
        "created",
        "updated",
        "creator",
        "organizer",
        "iCalUID",
        "recurringEventId",
        "originalStartTime",
        "sequence",
        "eventType",
    }
)
WORKING_LOCATION_TYPES = {
    "homeOffice": "homeOffice",
    "officeLocation": "officeLocation",
    "customLocation": "customLocation",
}
BIRTHDAY_TYPES_VIA_API = ("birthday",)


def restriction(message: str, location: str) -> ApiError:
    """400 for a write the event type does not allow (Google's reason for these is not documented)."""
    return ApiError(
        400, "eventTypeRestriction", message, domain="calendar", location=location, location_type="parameter"
    )


def check_properties(data: dict[str, Any]) -> None:
    """A type's properties object only on that type; status events need theirs."""
    event_type = data.get("eventType", "default")
    for other_type, field_name in PROPERTIES_FIELD.items():
        if field_name in data and other_type != event_type:
            raise invalid(f"{field_name} can only be set on events of type {other_type}.", location=field_name)
    if event_type in STATUS_TYPES and not isinstance(data.get(PROPERTIES_FIELD[event_type]), dict):
        data[PROPERTIES_FIELD[event_type]] = {}
    if event_type == "workingLocation":
        props = data["workingLocationProperties"]
        kind = props.get("type")
        if kind not in WORKING_LOCATION_TYPES:
            raise invalid(
                "A working location needs a type: homeOffice, officeLocation or customLocation.",
                location="workingLocationProperties.type",
            )
        if kind == "homeOffice":
            props.setdefault("homeOffice", {})
        elif not isinstance(props.get(kind), dict):
            raise required_property(f"workingLocationProperties.{kind}")


def required_property(location: str) -> ApiError:
    return ApiError(400, "required", "Required", location=location, location_type="parameter")


def check_create(data: dict[str, Any], *, primary: bool, via_api: bool, strict_status_events: bool) -> None:
    """Creation rules per type. `via_api` False is the user in the Calendar UI (or Gmail), which may do more."""
    event_type = data.get("eventType", "default")
    check_properties(data)
    if event_type == "fromGmail" and via_api:
        raise restriction("Events of type fromGmail cannot be created through the API.", "eventType")
    if event_type in STATUS_TYPES:
        if not primary:
            raise restriction(f"Events of type {event_type} can only be created in a primary calendar.", "eventType")
        if strict_status_events and data.get("attendees"):
            raise restriction(f"Events of type {event_type} cannot have attendees.", "attendees")
        if strict_status_events and event_type != "workingLocation" and "date" in (data.get("start") or {}):
            raise restriction(f"Events of type {event_type} cannot be all-day events.", "start")
    if event_type == "birthday":
        _check_birthday(data, via_api)


def _check_birthday(data: dict[str, Any], via_api: bool) -> None:
    """Guide: one all-day day, yearly recurrence, private, transparent; the API creates type 'birthday' only."""
    start, end = data.get("start") or {}, data.get("end") or {}
    if "date" not in start or "date" not in end:
        raise restriction("A birthday event must be an all-day event.", "start")
    if (date.fromisoformat(end["date"]) - date.fromisoformat(start["date"])).days != 1:
        raise restriction("A birthday event must span exactly one day.", "end")
    lines = data.get("recurrence") or []
    if not any(line.upper().startswith("RRULE:") and "FREQ=YEARLY" in line.upper() for line in lines):
        raise restriction("A birthday event must recur yearly.", "recurrence")
    if data.setdefault("visibility", "private") != "private":
        raise restriction("A birthday event must be private.", "visibility")
    if data.setdefault("transparency", "transparent") != "transparent":
        raise restriction("A birthday event must be transparent.", "transparency")
    props = data.setdefault("birthdayProperties", {})
    props.setdefault("type", "birthday")
    if via_api and props["type"] not in BIRTHDAY_TYPES_VIA_API:
        raise restriction(
            "Only birthdayProperties.type 'birthday' can be created through the API.", "birthdayProperties.type"
        )


def check_update(existing: dict[str, Any], data: dict[str, Any]) -> None:
    """An update may change only the fields its type allows; the type itself never changes."""
    event_type = existing.get("eventType", "default")
    if data.get("eventType", "default") != event_type:
        raise restriction("The event type cannot be changed.", "eventType")
    allowed = UPDATABLE.get(event_type)
    if allowed is None:
        check_properties(data)
        return
    keys = (set(existing) | set(data)) - IGNORED_ON_COMPARE
    for key in sorted(keys):
        if existing.get(key) == data.get(key):
            continue
        if key == "extendedProperties" and "extendedProperties" in allowed:
            if (existing.get(key) or {}).get("shared") == (data.get(key) or {}).get("shared"):
                continue
            raise restriction(
                f"Shared extended properties cannot be changed on events of type {event_type}.",
                "extendedProperties.shared",
            )
        if key not in allowed:
            raise restriction(f"The field {key} cannot be changed on events of type {event_type}.", key)


def check_move(existing: dict[str, Any]) -> None:
    """Only default events move: birthdays and fromGmail cannot, status events live in the primary calendar."""
    event_type = existing.get("eventType", "default")
    if event_type != "default":
        raise restriction(f"Events of type {event_type} cannot be moved.", "eventType")


def check_import(body: dict[str, Any]) -> None:
    """events.import brings in ordinary (default) events only."""
    if body.get("eventType", "default") != "default":
        raise restriction("Only events of type default can be imported.", "eventType")
