"""Event types through the stand-in and the emulator: what enters the CRM, what is recorded, what a CRM edit sends.

Each Google event is made as its user makes it (the stand-in's control API); the CRM sees it through the served
webhook; CRM edits go through the served push_event; the choice of types through sync_enable / sync_status.
"""

from __future__ import annotations

from typing import Any

from shared.models import SyncState
from tests.lifecycle.conftest import Api
from tests.pull.conftest import SyncedUser
from tests.push.helpers import edit, trigger
from tests.standin.helpers import timed
from tests.sync_types.conftest import ALICE, USER

START, END = "2027-03-01T10:00:00Z", "2027-03-01T11:00:00Z"
BIRTHDAY = {
    "summary": "Carol's birthday",
    "eventType": "birthday",
    "start": {"date": "2027-06-03"},
    "end": {"date": "2027-06-04"},
    "recurrence": ["RRULE:FREQ=YEARLY"],
}
OOO = timed(
    START,
    "2027-03-12T18:00:00Z",
    summary="OOO",
    eventType="outOfOffice",
    outOfOfficeProperties={"autoDeclineMode": "declineAllConflictingInvitations", "declineMessage": "Away"},
)
FOCUS = timed(START, END, summary="Focus", eventType="focusTime", focusTimeProperties={"chatStatus": "doNotDisturb"})
HOME = {
    "summary": "Home",
    "eventType": "workingLocation",
    "start": {"date": "2027-03-02"},
    "end": {"date": "2027-03-03"},
    "visibility": "public",
    "transparency": "transparent",
    "workingLocationProperties": {"type": "homeOffice", "homeOffice": {}},
}


def _make_all_types(google: Any) -> dict[str, dict[str, Any]]:
    return {
        "default": google.control.create_event(ALICE, timed(START, END, summary="Pitch")),
        "fromGmail": google.control.create_event(ALICE, timed(START, END, summary="Flight", eventType="fromGmail")),
        "outOfOffice": google.control.create_event(ALICE, OOO),
        "focusTime": google.control.create_event(ALICE, FOCUS),
        "workingLocation": google.control.create_event(ALICE, HOME),
        "birthday": google.control.create_event(ALICE, BIRTHDAY),
    }


def _by_type(alice: SyncedUser) -> dict[str, Any]:
    return {event.event_type: event for event in alice.events()}


def test_each_type_becomes_what_a_crm_user_expects(alice: SyncedUser, google: Any, api: Api) -> None:
    made = _make_all_types(google)
    alice.flush()
    alice.pull()
    found = _by_type(alice)
    # Defaults: meetings and busy blocks come in; working locations and birthdays do not.
    assert set(found) == {"default", "fromGmail", "outOfOffice", "focusTime"}
    assert found["default"].is_meeting and found["fromGmail"].is_meeting
    assert not found["outOfOffice"].is_meeting and not found["focusTime"].is_meeting
    assert found["outOfOffice"].type_properties == {
        "autoDeclineMode": "declineAllConflictingInvitations",
        "declineMessage": "Away",
    }
    assert found["focusTime"].type_properties == {"chatStatus": "doNotDisturb"}
    assert found["default"].type_properties is None
    assert all(event.user_is_organizer for event in found.values())
    assert found["outOfOffice"].google.event_id == made["outOfOffice"]["id"]

    status = api.status(USER)
    assert status.status_code == 200, status.text
    assert status.json()["import_types"] == {
        "out_of_office": True,
        "focus_time": True,
        "working_location": False,
        "birthday": False,
    }

    # Opting in to birthdays (other keys unchanged) forgets the sync token, so the pull that enable's repair of the
    # already-enabled calendar runs (or the next one) is a full list that brings the existing birthday in.
    answer = api.enable(USER, {"import_types": {"birthday": True}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["import_types"] == {
        "out_of_office": True,
        "focus_time": True,
        "working_location": False,
        "birthday": True,
    }
    assert alice.calendar().counters.get("full_syncs", 0) >= 2, "opting in must list the calendar in full again"
    alice.pull()
    found = _by_type(alice)
    assert set(found) == {"default", "fromGmail", "outOfOffice", "focusTime", "birthday"}
    birthday = found["birthday"]
    assert not birthday.is_meeting and birthday.type_properties == {"type": "birthday"}
    assert birthday.recurrence == ["RRULE:FREQ=YEARLY"] and birthday.start.date == "2027-06-03"

    # Switching focus time off: new ones stay out, the one already imported stays and keeps syncing.
    assert api.enable(USER, {"import_types": {"focus_time": False}}).json()["import_types"]["focus_time"] is False
    google.control.create_event(ALICE, dict(FOCUS, summary="Focus 2"))
    google.control.edit_event(ALICE, made["focusTime"]["id"], {"summary": "Deep work"})
    alice.flush()
    alice.pull()
    focus = [event for event in alice.events() if event.event_type == "focusTime"]
    assert [event.title for event in focus] == ["Deep work"]


def test_import_types_are_validated(alice: SyncedUser, api: Api) -> None:
    for body in (
        {"import_types": {"holidays": True}},
        {"import_types": {"birthday": "yes please"}},
        {"import_types": ["birthday"]},
    ):
        answer = api.enable(USER, body)
        assert answer.status_code == 400, (body, answer.text)
        assert "import_types" in answer.text
    assert api.status(USER).json()["import_types"]["birthday"] is False


def test_a_birthday_rename_sends_only_the_summary(
    alice: SyncedUser, google: Any, api: Api, served: dict[str, Any], app_context: Any
) -> None:
    assert api.enable(USER, {"import_types": {"birthday": True}}).status_code == 200
    made = google.control.create_event(ALICE, BIRTHDAY)
    alice.flush()
    alice.pull()
    event = alice.by_google_id(made["id"])
    google.control.reset_counters()
    edit(app_context, event.id, title="Carol turns 40")
    trigger(served["push_event"], app_context, event.id)

    counters = google.control.counters()["by_method"]
    assert counters.get("calendar.events.patch") == 1 and "calendar.events.update" not in counters
    stored = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert stored["summary"] == "Carol turns 40"
    assert "extendedProperties" not in stored  # a birthday takes summary, reminders and colorId only
    event = app_context.store.get_event(event.id)
    assert event.sync.state == SyncState.SYNCED and event.sync.last_error is None


def test_a_forbidden_birthday_edit_is_refused_and_restored_without_retrying(
    alice: SyncedUser, google: Any, api: Api, served: dict[str, Any], app_context: Any
) -> None:
    assert api.enable(USER, {"import_types": {"birthday": True}}).status_code == 200
    made = google.control.create_event(ALICE, BIRTHDAY)
    alice.flush()
    alice.pull()
    event = alice.by_google_id(made["id"])
    google.control.reset_counters()
    edit(app_context, event.id, title="Carol turns 40", location="The pub", meta={"deal_id": "deal-9"})
    trigger(served["push_event"], app_context, event.id)

    stored = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert stored["summary"] == "Carol turns 40" and "location" not in stored  # the allowed part went out
    event = app_context.store.get_event(event.id)
    assert event.sync.state == SyncState.ERROR
    assert "location" in event.sync.last_error and "birthday" in event.sync.last_error
    assert event.location is None and event.title == "Carol turns 40"  # restored from Google
    assert event.meta.deal_id == "deal-9"  # CRM metadata stays the CRM's
    assert google.control.counters()["by_method"].get("calendar.events.patch") == 1

    # No retry loop: our write-back and a redelivery push nothing; the cron finds nothing due.
    alice.flush()  # our write's notification is handled first (its pull lists once)
    google.control.reset_counters()
    trigger(served["push_event"], app_context, event.id)
    trigger(served["push_event"], app_context, event.id)
    assert google.control.counters()["total"] == 0
    assert event.sync.next_attempt_at is None


def test_from_gmail_takes_visibility_but_not_a_new_time(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = google.control.create_event(ALICE, timed(START, END, summary="Flight", eventType="fromGmail"))
    alice.flush()
    alice.pull()
    event = alice.by_google_id(made["id"])
    edit(app_context, event.id, visibility="private", meta={"deal_id": "deal-3"})
    trigger(served["push_event"], app_context, event.id)
    stored = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert stored["visibility"] == "private"
    assert stored["extendedProperties"]["private"]["crmDealId"] == "deal-3"
    assert app_context.store.get_event(event.id).sync.state == SyncState.SYNCED

    moved = {"date_time": "2027-03-01T15:00:00+00:00", "time_zone": None}
    edit(app_context, event.id, start=moved, end={"date_time": "2027-03-01T16:00:00+00:00", "time_zone": None})
    trigger(served["push_event"], app_context, event.id)
    stored = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert stored["start"]["dateTime"].startswith("2027-03-01T10:00:00")
    event = app_context.store.get_event(event.id)
    assert event.sync.state == SyncState.ERROR and "fromGmail" in event.sync.last_error
    assert event.start.instant().hour == 10  # the CRM copy is Google's again


def test_an_out_of_office_edit_is_an_ordinary_patch(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = google.control.create_event(ALICE, OOO)
    alice.flush()
    alice.pull()
    event = alice.by_google_id(made["id"])
    edit(app_context, event.id, title="Vacation")
    trigger(served["push_event"], app_context, event.id)
    stored = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert stored["summary"] == "Vacation" and stored["eventType"] == "outOfOffice"
    assert stored["outOfOfficeProperties"]["declineMessage"] == "Away"
    event = app_context.store.get_event(event.id)
    assert event.sync.state == SyncState.SYNCED and event.type_properties["declineMessage"] == "Away"
