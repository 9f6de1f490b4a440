"""Event types: created through the control API with their properties, restricted per the "Event types" guide."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from infra.google_standin.control import ControlError
from tests.standin.helpers import ALICE, error_of, reason_of, timed

START, END = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"
BIRTHDAY = {
    "summary": "Carol's birthday",
    "eventType": "birthday",
    "start": {"date": "2024-06-03"},
    "end": {"date": "2024-06-04"},
    "recurrence": ["RRULE:FREQ=YEARLY"],
}


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def refused(excinfo) -> tuple[int, str]:
    status, body = error_of(excinfo)
    return status, reason_of(body)


def test_each_type_is_creatable_by_the_user_with_its_properties(google, service) -> None:
    made = {
        "default": google.control.create_event(ALICE, timed(START, END)),
        "outOfOffice": google.control.create_event(
            ALICE,
            timed(
                START,
                END,
                summary="OOO",
                eventType="outOfOffice",
                outOfOfficeProperties={"autoDeclineMode": "declineAllConflictingInvitations", "declineMessage": "Away"},
            ),
        ),
        "focusTime": google.control.create_event(
            ALICE,
            timed(
                START,
                END,
                summary="Focus",
                eventType="focusTime",
                focusTimeProperties={"autoDeclineMode": "declineNone", "chatStatus": "doNotDisturb"},
            ),
        ),
        "workingLocation": google.control.create_event(
            ALICE,
            {
                "summary": "Home",
                "eventType": "workingLocation",
                "start": {"date": "2024-05-02"},
                "end": {"date": "2024-05-03"},
                "visibility": "public",
                "transparency": "transparent",
                "workingLocationProperties": {"type": "homeOffice", "homeOffice": {}},
            },
        ),
        "birthday": google.control.create_event(
            ALICE, dict(BIRTHDAY, birthdayProperties={"type": "anniversary", "contact": "people/c123"})
        ),
        "fromGmail": google.control.create_event(ALICE, timed(START, END, summary="Flight", eventType="fromGmail")),
    }
    for event_type, event in made.items():
        fetched = service.events().get(calendarId="primary", eventId=event["id"]).execute()
        assert fetched["eventType"] == event_type
    birthday = service.events().get(calendarId="primary", eventId=made["birthday"]["id"]).execute()
    assert birthday["birthdayProperties"] == {"type": "anniversary", "contact": "people/c123"}
    assert (birthday["visibility"], birthday["transparency"]) == ("private", "transparent")
    ooo = service.events().list(calendarId="primary", eventTypes=["outOfOffice"]).execute()["items"]
    assert [e["outOfOfficeProperties"]["declineMessage"] for e in ooo] == ["Away"]


def test_api_cannot_create_from_gmail_or_special_birthdays(service) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=timed(START, END, eventType="fromGmail")).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary", body=dict(BIRTHDAY, birthdayProperties={"type": "anniversary"})
        ).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    created = service.events().insert(calendarId="primary", body=BIRTHDAY).execute()
    assert created["birthdayProperties"] == {"type": "birthday"}


@pytest.mark.parametrize(
    "change",
    [
        {"end": {"date": "2024-06-05"}},  # two days
        {"recurrence": ["RRULE:FREQ=MONTHLY"]},
        {"visibility": "public"},
        {"start": {"dateTime": START}, "end": {"dateTime": END}},
    ],
)
def test_birthday_creation_rules(service, change) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body={**BIRTHDAY, **change}).execute()
    assert refused(excinfo)[0] == 400
    assert service.events().list(calendarId="primary").execute()["items"] == []


def test_birthday_takes_a_rename_but_not_a_wider_patch(service) -> None:
    birthday = service.events().insert(calendarId="primary", body=BIRTHDAY).execute()
    renamed = (
        service.events()
        .patch(calendarId="primary", eventId=birthday["id"], body={"summary": "Carol turns 40", "colorId": "3"})
        .execute()
    )
    assert renamed["summary"] == "Carol turns 40"
    for forbidden in (
        {"location": "Pub"},
        {"description": "cake"},
        {"start": {"date": "2024-06-04"}, "end": {"date": "2024-06-05"}},
        {"extendedProperties": {"private": {"crm": "1"}}},
    ):
        with pytest.raises(HttpError) as excinfo:
            service.events().patch(calendarId="primary", eventId=birthday["id"], body=forbidden).execute()
        assert refused(excinfo) == (400, "eventTypeRestriction")
    assert service.events().get(calendarId="primary", eventId=birthday["id"]).execute()["etag"] == renamed["etag"]


def test_from_gmail_updates_are_restricted(google, service) -> None:
    gmail = google.control.create_event(ALICE, timed(START, END, summary="Flight", eventType="fromGmail"))
    ok = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=gmail["id"],
            body={
                "colorId": "5",
                "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 30}]},
                "extendedProperties": {"private": {"crm": "7"}},
                "transparency": "transparent",
            },
        )
        .execute()
    )
    assert ok["extendedProperties"] == {"private": {"crm": "7"}}
    for forbidden in (
        {"summary": "Renamed"},
        {"extendedProperties": {"shared": {"crm": "7"}}},
        {"attendees": [{"email": "bob@example.com"}]},
    ):
        with pytest.raises(HttpError) as excinfo:
            service.events().patch(calendarId="primary", eventId=gmail["id"], body=forbidden).execute()
        assert refused(excinfo) == (400, "eventTypeRestriction")


def test_status_events_rules(google, service) -> None:
    work = google.control.create_calendar(ALICE, "Work")["id"]
    focus = timed(START, END, eventType="focusTime", focusTimeProperties={"chatStatus": "doNotDisturb"})
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId=work, body=focus).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary", body=dict(focus, attendees=[{"email": "bob@example.com"}])
        ).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary",
            body=dict(
                focus,
                eventType="outOfOffice",
                focusTimeProperties=None,
                start={"date": "2024-05-01"},
                end={"date": "2024-05-02"},
            ),
        ).execute()
    assert refused(excinfo)[0] == 400
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary",
            body={
                "eventType": "workingLocation",
                "start": {"date": "2024-05-02"},
                "end": {"date": "2024-05-03"},
                "workingLocationProperties": {"type": "officeLocation"},
            },
        ).execute()
    assert refused(excinfo) == (400, "required")
    created = service.events().insert(calendarId="primary", body=focus).execute()
    with pytest.raises(HttpError) as excinfo:
        service.events().patch(calendarId="primary", eventId=created["id"], body={"eventType": "default"}).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    with pytest.raises(HttpError) as excinfo:
        service.events().move(calendarId="primary", eventId=created["id"], destination=work).execute()
    assert refused(excinfo) == (400, "eventTypeRestriction")
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=timed(START, END, focusTimeProperties={})).execute()
    assert refused(excinfo) == (400, "invalid")


def test_strict_status_events_switch(google, service) -> None:
    google.control.set_options(strict_status_events=False)
    created = (
        service.events()
        .insert(
            calendarId="primary",
            body=timed(START, END, eventType="focusTime", attendees=[{"email": "bob@example.com"}]),
        )
        .execute()
    )
    assert created["eventType"] == "focusTime" and created["focusTimeProperties"] == {}


def test_control_refuses_a_type_it_does_not_know(google) -> None:
    with pytest.raises(ControlError):
        google.control.create_event(ALICE, timed(START, END, eventType="holiday"))
