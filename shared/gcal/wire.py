"""Mapping between Google Calendar events (API dicts) and CRM events, and the content hash both directions share.

Why pure functions: both directions' planners decide from these alone; the content hash is the echo guard
(a CRM document whose content hashes to `sync.content_hash` has nothing new to push), so it must be computed the same
way whichever side the content came from. CRM metadata travels in `extendedProperties.private` and is read back only to
recognise our own events, never to overwrite the CRM's values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from shared.gcal.event_types import type_fields_from_google
from shared.models import (
    CONTENT_FIELDS,
    Attachment,
    Attendee,
    ConflictDecision,
    CrmEvent,
    CrmMeta,
    EventTime,
    GoogleLink,
    Person,
    ReminderOverride,
    Reminders,
    SeriesLink,
    SyncInfo,
    SyncState,
    crm_event_id_for_google,
)
from shared.sync.merge import base_of

# extendedProperties.private keys (≤ 44 chars each, Google silently drops longer keys).
META_KEYS: dict[str, str] = {
    "crm_event_id": "crmEventId",
    "deal_id": "crmDealId",
    "company_id": "crmCompanyId",
    "quote_id": "crmQuoteId",
    "kind": "crmKind",
}
MAX_PROPERTY_VALUE = 1024  # Google truncates longer values silently: we refuse to send them instead.


def parse_rfc3339(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def format_rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- times ----------------------------------------------------------------------------------------------------------
def event_time_from_google(raw: dict[str, Any]) -> EventTime:
    return EventTime(date=raw.get("date"), date_time=raw.get("dateTime"), time_zone=raw.get("timeZone"))


def event_time_to_google(time: EventTime) -> dict[str, Any]:
    if time.date is not None:
        return {"date": time.date}
    body: dict[str, Any] = {"dateTime": time.date_time}
    if time.time_zone:
        body["timeZone"] = time.time_zone
    return body


# --- Google -> CRM --------------------------------------------------------------------------------------------------
def _conference_link(google_event: dict[str, Any]) -> str | None:
    for entry in (google_event.get("conferenceData") or {}).get("entryPoints", []) or []:
        if entry.get("entryPointType") == "video" and entry.get("uri"):
            return str(entry["uri"])
    link = google_event.get("hangoutLink")
    return str(link) if link else None


def is_cancelled(google_event: dict[str, Any]) -> bool:
    return google_event.get("status") == "cancelled"


def is_instance(google_event: dict[str, Any]) -> bool:
    return bool(google_event.get("recurringEventId"))


def google_content(google_event: dict[str, Any], calendar_id: str) -> dict[str, Any]:
    """The CRM content fields of a live (or cancelled-instance) Google event, as CrmEvent keyword arguments."""
    series: SeriesLink | None = None
    if google_event.get("recurringEventId"):
        original = google_event.get("originalStartTime") or google_event.get("start") or {}
        series = SeriesLink(
            recurring_event_id=google_event["recurringEventId"],
            series_crm_id=crm_event_id_for_google(calendar_id, google_event["recurringEventId"]),
            original_start=event_time_from_google(original),
        )
    # A cancelled instance carries only id, recurringEventId and originalStartTime: it occupies its original slot.
    start_raw = google_event.get("start") or google_event.get("originalStartTime")
    end_raw = google_event.get("end") or start_raw
    reminders_raw = google_event.get("reminders") or {"useDefault": True}
    return {
        "title": google_event.get("summary", ""),
        "description": google_event.get("description"),
        "location": google_event.get("location"),
        "start": event_time_from_google(start_raw),
        "end": event_time_from_google(end_raw),
        "status": google_event.get("status", "confirmed"),
        "attendees": [
            Attendee(
                email=a["email"],
                display_name=a.get("displayName"),
                response_status=a.get("responseStatus", "needsAction"),
                optional=bool(a.get("optional", False)),
                organizer=bool(a.get("organizer", False)),
                is_self=bool(a.get("self", False)),
                resource=bool(a.get("resource", False)),
                comment=a.get("comment"),
                additional_guests=int(a.get("additionalGuests", 0)),
            )
            for a in google_event.get("attendees", []) or []
            if a.get("email")
        ],
        "reminders": Reminders(
            use_default=bool(reminders_raw.get("useDefault", False)),
            overrides=[ReminderOverride(**o) for o in reminders_raw.get("overrides", []) or []],
        ),
        "recurrence": list(google_event.get("recurrence", []) or []),
        "series": series,
        "attachments": [
            Attachment(
                file_url=a["fileUrl"],
                title=a.get("title"),
                mime_type=a.get("mimeType"),
                icon_link=a.get("iconLink"),
                file_id=a.get("fileId"),
            )
            for a in google_event.get("attachments", []) or []
            if a.get("fileUrl")
        ],
        "conference_link": _conference_link(google_event),
        "visibility": google_event.get("visibility", "default"),
        "transparency": google_event.get("transparency", "opaque"),
        "deleted": False,
    }


def google_organizer(google_event: dict[str, Any]) -> Person | None:
    organizer = google_event.get("organizer")
    if not organizer:
        return None
    return Person(
        email=organizer.get("email"), display_name=organizer.get("displayName"), is_self=bool(organizer.get("self"))
    )


def google_private(google_event: dict[str, Any]) -> dict[str, Any]:
    """A Google event's `extendedProperties.private` (where the CRM id, metadata and our content stamp travel)."""
    return (google_event.get("extendedProperties") or {}).get("private") or {}


def meta_from_google(google_event: dict[str, Any]) -> CrmMeta:
    """CRM metadata found in a Google event (ours if it carries crmEventId)."""
    private = google_private(google_event)
    return CrmMeta(**{field: private.get(key) for field, key in META_KEYS.items()})


STAMP_KEY = "crmContentHash"  # extendedProperties.private: hash of the content we pushed (<= 44 chars key)


def wire_event(event: CrmEvent) -> CrmEvent:
    """The CRM event as it goes over the wire: a recurring series needs a timeZone on date-time start/end ("UTC")."""
    if not event.recurrence or event.series is not None:
        return event
    update: dict[str, Any] = {}
    for name in ("start", "end"):
        time_value = getattr(event, name)
        if time_value.date_time is not None and not time_value.time_zone:
            update[name] = time_value.model_copy(update={"time_zone": "UTC"})
    return event.model_copy(update=update) if update else event


def link_from_google(google_event: dict[str, Any], calendar_id: str) -> GoogleLink:
    return GoogleLink(
        calendar_id=calendar_id,
        event_id=google_event["id"],
        etag=google_event.get("etag"),
        updated=parse_rfc3339(google_event.get("updated")),
        ical_uid=google_event.get("iCalUID"),
        html_link=google_event.get("htmlLink"),
    )


def new_crm_event_from_google(
    google_event: dict[str, Any], calendar_id: str, owner_id: str, now: dt.datetime
) -> CrmEvent:
    """A CRM event for a Google event seen for the first time; its id is derived from (calendar, Google id)."""
    event = CrmEvent(
        id=crm_event_id_for_google(calendar_id, google_event["id"]),
        owner_id=owner_id,
        organizer=google_organizer(google_event),
        html_link=google_event.get("htmlLink"),
        meta=CrmMeta(),
        google=link_from_google(google_event, calendar_id),
        created_at=now,
        updated_at=parse_rfc3339(google_event.get("updated")) or now,
        **google_content(google_event, calendar_id),
        **type_fields_from_google(google_event),
    )
    event.sync = SyncInfo(
        state=SyncState.SYNCED, origin="google", content_hash=content_hash(event), pulled_at=now, base=base_of(event)
    )
    return event


def apply_google_event(event: CrmEvent, google_event: dict[str, Any], calendar_id: str, now: dt.datetime) -> CrmEvent:
    """The CRM event updated with Google's content and link; CRM metadata and ids untouched."""
    updated = event.model_copy(
        update={
            **google_content(google_event, calendar_id),
            **type_fields_from_google(google_event),
            "organizer": google_organizer(google_event) or event.organizer,
            "html_link": google_event.get("htmlLink") or event.html_link,
            "google": link_from_google(google_event, calendar_id),
            "deleted_at": None,
            "purge_at": None,
            "updated_at": parse_rfc3339(google_event.get("updated")) or now,
        }
    )
    return mark_synced_from_google(updated, now)


def mark_synced_from_google(
    event: CrmEvent, now: dt.datetime, decisions: list[ConflictDecision] | None = None
) -> CrmEvent:
    """The event marked in sync with its own content: the echo guard that keeps the CRM trigger from resending it,
    and the three-way merge's base (both sides now hold this content), in the same write."""
    update: dict[str, Any] = {
        "state": SyncState.SYNCED,
        "content_hash": content_hash(event),
        "base": base_of(event),
        "pulled_at": now,
        "last_error": None,
        "last_error_at": None,
        "attempts": 0,
        "next_attempt_at": None,
        "attempted_hash": None,
    }
    if decisions is not None:
        update["decisions"] = decisions
    event.sync = event.sync.model_copy(update=update)
    return event


# --- CRM -> Google --------------------------------------------------------------------------------------------------
def crm_private_properties(event: CrmEvent) -> dict[str, str]:
    """The CRM metadata for extendedProperties.private (the CRM id always; None values omitted)."""
    meta = event.meta.model_copy(update={"crm_event_id": event.meta.crm_event_id or event.id})
    values = {key: getattr(meta, field) for field, key in META_KEYS.items() if getattr(meta, field) is not None}
    return {key: str(value)[:MAX_PROPERTY_VALUE] for key, value in values.items()}


def crm_to_google(event: CrmEvent) -> dict[str, Any]:
    """The Google request body for a CRM event (insert, update, or patch with every synced field)."""
    body: dict[str, Any] = {
        "summary": event.title,
        "description": event.description,
        "location": event.location,
        "start": event_time_to_google(event.start),
        "end": event_time_to_google(event.end),
        "status": "tentative" if event.status == "tentative" else "confirmed",
        "attendees": [
            {
                key: value
                for key, value in {
                    "email": a.email,
                    "displayName": a.display_name,
                    "responseStatus": a.response_status,
                    "optional": a.optional or None,
                    "resource": a.resource or None,  # a room stays a room: the attendees array is replaced whole
                    "comment": a.comment,
                    "additionalGuests": a.additional_guests or None,
                }.items()
                if value is not None
            }
            for a in event.attendees
        ],
        "reminders": {
            "useDefault": event.reminders.use_default,
            **(
                {"overrides": [o.model_dump() for o in event.reminders.overrides]}
                if not event.reminders.use_default
                else {}
            ),
        },
        "attachments": [
            {
                key: value
                for key, value in {
                    "fileUrl": a.file_url,
                    "title": a.title,
                    "mimeType": a.mime_type,
                    "iconLink": a.icon_link,
                    "fileId": a.file_id,
                }.items()
                if value is not None
            }
            for a in event.attachments
        ],
        "visibility": event.visibility,
        "transparency": event.transparency,
        "extendedProperties": {"private": crm_private_properties(event)},
    }
    if event.recurrence and event.series is None:
        body["recurrence"] = list(event.recurrence)
    return body


# --- hashing --------------------------------------------------------------------------------------------------------
def content_hash(event: CrmEvent) -> str:
    """SHA-256 over the synced content fields in canonical JSON: equal content, equal hash, whichever side wrote it."""
    content = event.model_dump(mode="json", include=set(CONTENT_FIELDS))
    date_times_as_instants(content)
    # Google owns these attendee flags; they must not make a CRM-side copy look changed.
    for attendee in content.get("attendees", []):
        attendee.pop("organizer", None)
        attendee.pop("is_self", None)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _instant(value: str) -> str:
    """One spelling per instant: Google re-renders date-times in the calendar's offset ("Z" for UTC)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def date_times_as_instants(content: dict[str, Any]) -> None:
    """Compare date-times as instants, not strings: `start`, `end` and a series' `original_start` (in place)."""
    times = [content.get("start"), content.get("end"), (content.get("series") or {}).get("original_start")]
    for time in times:
        if isinstance(time, dict) and time.get("date_time"):
            time["date_time"] = _instant(time["date_time"])


def has_unpushed_change(event: CrmEvent) -> bool:
    """True when the CRM content differs from what was last synced (a local edit not yet in Google)."""
    return event.sync.content_hash != content_hash(event)
