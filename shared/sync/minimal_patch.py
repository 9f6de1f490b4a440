"""CRM → Google: a patch carries what the CRM changed since both sides last agreed, and nothing else.

Why: a patch that resends every synced field rewrites what Google holds in ways the user never asked for: a title edit
of a recurring series whose `end` has no `timeZone` would add `end.timeZone: "UTC"`, attendees would lose `resource`,
and any spelling Google normalised comes back as a "change". Google's patch semantics (events.patch reference and the
"Performance tips" guide, "Patch (partial update)") keep every field the body omits and merge nested objects, so a body
with only the changed fields leaves alone everything the CRM does not model (conferenceData, attachments' Drive
metadata, extendedProperties.shared, type-specific properties, guestsCan*, colorId, source).

What changed is read from `sync.base` (shared/sync/merge.py: one digest per field and per guest of the content both
sides last agreed on), compared with the CRM event now. Without a base (events synced before bases were stored) the
caller sends every synced field, as before. `start` and `end` travel together (Google checks them as a pair), and
`extendedProperties.private` always travels: it carries the CRM id, the CRM metadata and our content stamp (a nested
object: Google merges it, so `shared` and foreign private keys stay).
"""

from __future__ import annotations

from typing import Any

from shared.models import CrmEvent
from shared.sync.merge import base_of

# CRM content field -> the Google keys that carry it. Fields not listed (series, conference_link, meta, deleted) are
# never patched as content: Google owns the first two, meta travels in extendedProperties, deletion is a delete.
GOOGLE_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("summary",),
    "description": ("description",),
    "location": ("location",),
    "start": ("start", "end"),
    "end": ("start", "end"),
    "status": ("status",),
    "attendees": ("attendees",),
    "reminders": ("reminders",),
    "recurrence": ("recurrence", "start", "end"),  # Google checks a series' start/end time zones with its rule
    "attachments": ("attachments",),
    "visibility": ("visibility",),
    "transparency": ("transparency",),
}
ALWAYS_SENT = "extendedProperties"


def changed_since_base(event: CrmEvent) -> set[str] | None:
    """CRM content fields that differ from the last agreed content; None when no base is stored."""
    base = event.sync.base
    if base is None:
        return None
    now = base_of(event)
    changed = {name for name, digest in now.fields.items() if base.fields.get(name) != digest}
    if now.attendees != base.attendees:
        changed.add("attendees")
    return changed


def minimal_patch(event: CrmEvent, full_body: dict[str, Any]) -> dict[str, Any] | None:
    """The part of `full_body` (every synced field) that the CRM changed; None: unknown, send `full_body`."""
    changed = changed_since_base(event)
    if changed is None:
        return None
    keys = {ALWAYS_SENT}
    for name in changed:
        keys.update(GOOGLE_KEYS.get(name, ()))
    return {key: value for key, value in full_body.items() if key in keys}
