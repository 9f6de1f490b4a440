"""Minimal round trips (issue 14 §4): a CRM edit of an event that came from Google sends Google what changed and
nothing else, so what the CRM does not model survives, and date-times compare as instants.

Google's events.patch keeps every field the body omits and merges nested objects (events.patch reference; guide
"Performance tips", "Patch (partial update)"). Through the stand-in and the emulator: pull, edit in the CRM, push.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.gcal.wire import has_unpushed_change
from shared.sync.crm_to_google_run import push_event
from tests.pull.conftest import SyncedUser

RICH_SERIES = {
    "summary": "Weekly client sync",
    "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
    "start": {"dateTime": "2025-06-02T09:00:00+02:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2025-06-02T10:00:00+02:00", "timeZone": "Europe/Berlin"},
    "attendees": [
        {"email": "alice@example.com", "responseStatus": "accepted"},
        {"email": "room-4@resource.calendar.google.com", "resource": True, "responseStatus": "accepted"},
        {"email": "client@acme.example", "displayName": "Client"},
    ],
    "conferenceData": {
        "conferenceId": "abc-defg-hij",
        "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
        "entryPoints": [{"entryPointType": "video", "uri": "https://meet.google.com/abc-defg-hij"}],
    },
    "extendedProperties": {"shared": {"roomBooking": "R4"}, "private": {"otherApp": "keep-me"}},
    "guestsCanModify": True,
    "guestsCanInviteOthers": False,
    "colorId": "5",
    "source": {"url": "https://tickets.example/42", "title": "Ticket 42"},
}
UNMODELLED = ("attendees", "conferenceData", "guestsCanModify", "guestsCanInviteOthers", "colorId", "source")


def _raw(google: Any, email: str, event_id: str) -> dict[str, Any]:
    return next(e for e in google.control.raw_events(email) if e["id"] == event_id)


def _crm_edit(user: SyncedUser, crm_id: str, **fields: Any) -> None:
    fields["updated_at"] = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    user.ctx.store.update_event(crm_id, fields)


def test_a_crm_title_edit_changes_only_the_title(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, RICH_SERIES)
    # Google keeps an odd but valid shape as it is: the series' end without timeZone (not touched by this patch).
    google.control.edit_event(synced.email, created["id"], {"end": {"dateTime": "2025-06-02T10:00:00+02:00"}})
    synced.flush()
    before = _raw(google, synced.email, created["id"])
    assert "timeZone" not in before["end"]
    event = synced.by_google_id(created["id"])
    assert not has_unpushed_change(event)

    _crm_edit(synced, event.id, title="Weekly client sync (agenda)")
    report = push_event(synced.ctx, event.id)
    assert report.outcome == "pushed", report
    after = _raw(google, synced.email, created["id"])
    assert after["summary"] == "Weekly client sync (agenda)"
    assert after["end"] == before["end"]  # no end.timeZone "UTC" added
    assert after["start"] == before["start"]
    for key in UNMODELLED:
        assert after.get(key) == before.get(key), key
    assert after["extendedProperties"]["shared"] == {"roomBooking": "R4"}
    assert after["extendedProperties"]["private"]["otherApp"] == "keep-me"
    assert after["extendedProperties"]["private"]["crmEventId"] == event.id
    synced.flush()  # the notification of our own write: nothing comes back as a change
    assert not has_unpushed_change(synced.by_google_id(created["id"]))
    assert synced.by_google_id(created["id"]).title == "Weekly client sync (agenda)"


def test_a_crm_guest_change_keeps_the_room_resource(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, dict(RICH_SERIES, recurrence=None))
    synced.flush()
    event = synced.by_google_id(created["id"])
    guests = [a.model_dump(mode="json") for a in event.attendees]
    guests[2]["optional"] = True
    _crm_edit(synced, event.id, attendees=guests)
    assert push_event(synced.ctx, event.id).outcome == "pushed"
    after = _raw(google, synced.email, created["id"])
    by_email = {a["email"]: a for a in after["attendees"]}
    assert by_email["room-4@resource.calendar.google.com"].get("resource") is True
    assert by_email["client@acme.example"].get("optional") is True
    for key in ("conferenceData", "guestsCanModify", "colorId", "source"):
        assert after.get(key) == created.get(key), key


def test_a_respelled_instant_is_not_a_change(synced: SyncedUser, google: Any) -> None:
    """The stand-in's rerender_matching_offsets (on by default): Google spells UTC as "Z" whatever was sent."""
    assert google.control.options()["rerender_matching_offsets"] is True
    created = google.control.create_event(
        synced.email,
        {
            "summary": "UTC call",
            "start": {"dateTime": "2025-06-02T09:00:00+00:00"},
            "end": {"dateTime": "2025-06-02T10:00:00+00:00"},
        },
    )
    synced.flush()
    event = synced.by_google_id(created["id"])
    _crm_edit(
        synced,
        event.id,
        start={"date_time": "2025-06-02T11:00:00+02:00"},
        end={"date_time": "2025-06-02T12:00:00+02:00"},
    )
    stored = synced.ctx.store.get_event(event.id)
    assert stored is not None and not has_unpushed_change(stored)  # same instants: nothing to push
    assert push_event(synced.ctx, event.id).outcome == "nothing"


def test_a_crm_rule_change_sends_the_series_times_with_it(synced: SyncedUser, google: Any) -> None:
    """Google checks a series' start/end time zones whenever the rule changes: they travel with the rule."""
    created = google.control.create_event(synced.email, RICH_SERIES)
    synced.flush()
    event = synced.by_google_id(created["id"])
    _crm_edit(synced, event.id, recurrence=["RRULE:FREQ=WEEKLY;COUNT=6"])
    assert push_event(synced.ctx, event.id).outcome == "pushed"
    after = _raw(google, synced.email, created["id"])
    assert after["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=6"]
    assert after["start"]["timeZone"] == "Europe/Berlin"
    for key in UNMODELLED:
        assert after.get(key) == created.get(key), key
