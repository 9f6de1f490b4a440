"""The pure rules: which types are imported, what a type and a role allow, and how a CRM edit is split."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.gcal.event_types import allowed_fields, changed_fields, not_imported_reason, type_fields_from_google
from shared.gcal.wire import new_crm_event_from_google
from shared.models import ImportTypes
from shared.sync.restricted_push import plan_restricted

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
CAL = "alice@example.com"


def google_event(**extra: Any) -> dict[str, Any]:
    base = {
        "id": "abc123",
        "etag": '"1"',
        "status": "confirmed",
        "summary": "Pitch",
        "start": {"dateTime": "2027-03-01T10:00:00Z"},
        "end": {"dateTime": "2027-03-01T11:00:00Z"},
        "organizer": {"email": CAL, "self": True},
        "updated": "2027-01-01T00:00:00Z",
    }
    base.update(extra)
    return base


INVITATION = google_event(
    organizer={"email": "bob@example.com"},
    attendees=[
        {"email": "bob@example.com", "organizer": True, "responseStatus": "accepted"},
        {"email": CAL, "self": True, "responseStatus": "needsAction"},
    ],
)


@pytest.mark.parametrize(
    ("event_type", "imported"),
    [
        ("default", True),
        ("fromGmail", True),
        ("outOfOffice", True),
        ("focusTime", True),
        ("workingLocation", False),
        ("birthday", False),
        ("someFutureType", False),
    ],
)
def test_default_import_choice(event_type: str, imported: bool) -> None:
    reason = not_imported_reason(google_event(eventType=event_type), ImportTypes())
    assert (reason is None) is imported
    if not imported:
        assert event_type in reason


def test_opting_in_and_out() -> None:
    chosen = ImportTypes(out_of_office=False, birthday=True)
    assert not_imported_reason(google_event(eventType="outOfOffice"), chosen) is not None
    assert not_imported_reason(google_event(eventType="birthday"), chosen) is None
    assert not_imported_reason(google_event(eventType="default"), ImportTypes(out_of_office=False)) is None


def test_type_and_role_are_recorded() -> None:
    fields = type_fields_from_google(google_event(eventType="focusTime", focusTimeProperties={"chatStatus": "x"}))
    assert fields == {
        "event_type": "focusTime",
        "type_properties": {"chatStatus": "x"},
        "is_meeting": False,
        "user_is_organizer": True,
        "guests_can_modify": False,
    }
    invitation = type_fields_from_google(dict(INVITATION, guestsCanModify=True))
    assert invitation["user_is_organizer"] is False and invitation["guests_can_modify"] is True


def _crm(google: dict[str, Any]) -> Any:
    return new_crm_event_from_google(google, CAL, "user-1", NOW)


def test_allowed_fields_per_type_and_role() -> None:
    assert allowed_fields(_crm(google_event())) is None
    assert allowed_fields(_crm(google_event(eventType="outOfOffice"))) is None
    assert allowed_fields(_crm(google_event(eventType="birthday"))) == {"title", "reminders"}
    assert allowed_fields(_crm(INVITATION)) == {"own_response", "reminders", "meta"}
    # guestsCanModify opens the organiser's fields to a guest, but never beyond what the type allows.
    assert "location" in allowed_fields(_crm(dict(INVITATION, guestsCanModify=True)))
    gmail_invite = dict(INVITATION, guestsCanModify=True, eventType="fromGmail")
    assert allowed_fields(_crm(gmail_invite)) == {"reminders", "visibility", "transparency", "status", "meta"}


def test_an_rsvp_is_the_own_entry_only() -> None:
    event = _crm(INVITATION)
    answered = event.model_copy(
        update={
            "attendees": [
                a.model_copy(update={"response_status": "declined"}) if a.is_self else a for a in event.attendees
            ]
        }
    )
    assert changed_fields(answered, event, {}) == ["own_response"]
    plan = plan_restricted(answered, INVITATION, CAL, NOW)
    assert plan.refused == () and plan.sent == ("own_response",)
    assert plan.body == {
        "attendees": [
            {"email": "bob@example.com", "organizer": True, "responseStatus": "accepted"},
            {"email": CAL, "self": True, "responseStatus": "declined"},
        ]
    }


def test_a_guest_edit_of_someone_elses_answer_is_refused() -> None:
    event = _crm(INVITATION)
    forged = event.model_copy(
        update={
            "attendees": [
                a.model_copy(update={"response_status": "declined"}) if not a.is_self else a for a in event.attendees
            ],
            "title": "Mine",
        }
    )
    plan = plan_restricted(forged, INVITATION, CAL, NOW)
    assert plan.body is None and set(plan.refused) == {"title", "attendees"}
    assert "bob@example.com" in plan.refusal and "summary" in plan.refusal


def test_birthday_metadata_stays_in_the_crm_without_a_refusal() -> None:
    birthday = google_event(
        eventType="birthday",
        start={"date": "2027-06-03"},
        end={"date": "2027-06-04"},
        recurrence=["RRULE:FREQ=YEARLY"],
    )
    event = _crm(birthday)
    linked = event.model_copy(update={"meta": event.meta.model_copy(update={"deal_id": "d1"}), "title": "Carol"})
    plan = plan_restricted(linked, birthday, CAL, NOW)
    assert plan.sent == ("title",) and plan.refused == () and plan.body == {"summary": "Carol"}
