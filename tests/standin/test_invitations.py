"""Invitations: a guest who is another stand-in account gets a copy; non-organisers change only their part."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, error_of, timed

BOB = "bob@example.com"
START, END = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"
FORBIDDEN_BODY = {
    "error": {
        "errors": [
            {
                "domain": "calendar",
                "reason": "forbiddenForNonOrganizer",
                "message": "Shared properties can only be changed by the organizer of the event.",
            }
        ],
        "code": 403,
        "message": "Shared properties can only be changed by the organizer of the event.",
    }
}


@pytest.fixture
def alice(google):
    return google.service_for(ALICE)


@pytest.fixture
def bob(google):
    google.control.create_account(BOB)
    return google.service_for(BOB)


def invite(alice, **extra) -> dict:
    return (
        alice.events()
        .insert(
            calendarId="primary",
            body=timed(START, END, summary="Pitch", attendees=[{"email": ALICE}, {"email": BOB}], **extra),
        )
        .execute()
    )


def test_guest_gets_a_copy_with_the_organiser_and_self_flags(alice, bob) -> None:
    event = invite(alice, extendedProperties={"private": {"crm": "a1"}, "shared": {"deal": "9"}})
    assert event["organizer"] == {"email": ALICE, "self": True}
    copy = bob.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert copy["iCalUID"] == event["iCalUID"] and copy["summary"] == "Pitch"
    assert copy["organizer"] == {"email": ALICE} and copy["creator"] == {"email": ALICE}
    flags = {a["email"]: (a.get("self", False), a.get("organizer", False)) for a in copy["attendees"]}
    assert flags == {ALICE: (False, True), BOB: (True, False)}
    assert copy["extendedProperties"] == {"shared": {"deal": "9"}}  # alice's private properties stay hers
    listed = bob.events().list(calendarId="primary").execute()["items"]
    assert [e["id"] for e in listed] == [event["id"]]


def test_guest_cannot_change_shared_fields(alice, bob) -> None:
    event = invite(alice)
    for change in (
        {"summary": "Mine now"},
        {"location": "Bar"},
        {"extendedProperties": {"shared": {"x": "1"}}},
        {"attendees": [{"email": ALICE}, {"email": BOB}, {"email": "carol@example.com"}]},
    ):
        with pytest.raises(HttpError) as excinfo:
            bob.events().patch(calendarId="primary", eventId=event["id"], body=change).execute()
        assert error_of(excinfo) == (403, FORBIDDEN_BODY)
    with pytest.raises(HttpError) as excinfo:
        bob.events().delete(calendarId="primary", eventId="nonexistent1").execute()
    assert error_of(excinfo)[0] == 404
    assert alice.events().get(calendarId="primary", eventId=event["id"]).execute()["summary"] == "Pitch"


def test_update_without_guests_can_fields_is_forbidden(alice, bob) -> None:
    event = invite(alice, guestsCanInviteOthers=False)
    copy = bob.events().get(calendarId="primary", eventId=event["id"]).execute()
    body = {k: v for k, v in copy.items() if k != "guestsCanInviteOthers"}
    with pytest.raises(HttpError) as excinfo:
        bob.events().update(calendarId="primary", eventId=event["id"], body=body).execute()
    assert error_of(excinfo) == (403, FORBIDDEN_BODY)
    assert bob.events().update(calendarId="primary", eventId=event["id"], body=copy).execute()["summary"] == "Pitch"


def test_guest_answer_reaches_the_organiser_and_per_copy_fields_stay_per_copy(alice, bob) -> None:
    event = invite(alice)
    copy = bob.events().get(calendarId="primary", eventId=event["id"]).execute()
    attendees = [
        dict(a, responseStatus="accepted", comment="See you") if a.get("self") else a for a in copy["attendees"]
    ]
    answered = (
        bob.events()
        .patch(
            calendarId="primary",
            eventId=event["id"],
            body={
                "attendees": attendees,
                "colorId": "4",
                "extendedProperties": {"private": {"bobs": "1"}},
                "reminders": {"useDefault": False, "overrides": [{"method": "email", "minutes": 60}]},
            },
        )
        .execute()
    )
    assert answered["colorId"] == "4" and answered["extendedProperties"]["private"] == {"bobs": "1"}
    organiser = alice.events().get(calendarId="primary", eventId=event["id"]).execute()
    bob_entry = next(a for a in organiser["attendees"] if a["email"] == BOB)
    assert (bob_entry["responseStatus"], bob_entry["comment"]) == ("accepted", "See you")
    assert "colorId" not in organiser and organiser["reminders"] == {"useDefault": True}
    assert "private" not in organiser.get("extendedProperties", {})
    # the organiser's later edit keeps the guest's own colour, reminders and private properties
    alice.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "Pitch v2"}).execute()
    copy = bob.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert copy["summary"] == "Pitch v2" and copy["colorId"] == "4"
    assert copy["extendedProperties"]["private"] == {"bobs": "1"} and copy["reminders"]["overrides"]


def test_guests_can_modify(alice, bob) -> None:
    event = invite(alice, guestsCanModify=True)
    bob.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "Bob's agenda"}).execute()
    assert alice.events().get(calendarId="primary", eventId=event["id"]).execute()["summary"] == "Bob's agenda"


def test_removed_guest_keeps_a_cancelled_copy_with_its_body(alice, bob) -> None:
    event = invite(alice)
    token = bob.events().list(calendarId="primary").execute()["nextSyncToken"]
    alice.events().patch(calendarId="primary", eventId=event["id"], body={"attendees": [{"email": ALICE}]}).execute()
    changes = bob.events().list(calendarId="primary", syncToken=token).execute()["items"]
    assert [(c["id"], c["status"], c["summary"]) for c in changes] == [(event["id"], "cancelled", "Pitch")]
    assert changes[0]["organizer"] == {"email": ALICE}


def test_organiser_delete_cancels_guest_copy(alice, bob) -> None:
    event = invite(alice)
    token = bob.events().list(calendarId="primary").execute()["nextSyncToken"]
    alice.events().delete(calendarId="primary", eventId=event["id"]).execute()
    changes = bob.events().list(calendarId="primary", syncToken=token).execute()["items"]
    assert [(c["id"], c["status"]) for c in changes] == [(event["id"], "cancelled")]


def test_guest_delete_declines(alice, bob) -> None:
    event = invite(alice)
    bob.events().delete(calendarId="primary", eventId=event["id"]).execute()
    organiser = alice.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert organiser["status"] == "confirmed"
    assert next(a for a in organiser["attendees"] if a["email"] == BOB)["responseStatus"] == "declined"
    assert bob.events().list(calendarId="primary").execute()["items"] == []
    alice.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "Still on"}).execute()
    assert bob.events().list(calendarId="primary").execute()["items"] == []


def test_recurring_invitation_and_exception_reach_the_guest(alice, bob) -> None:
    series = (
        alice.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "Weekly",
                "attendees": [{"email": BOB}],
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
                "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2024-05-06T10:00:00", "timeZone": "UTC"},
            },
        )
        .execute()
    )
    instances = bob.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert len(instances) == 3
    alice.events().patch(calendarId="primary", eventId=instances[1]["id"], body={"summary": "Moved"}).execute()
    fetched = bob.events().get(calendarId="primary", eventId=instances[1]["id"]).execute()
    assert fetched["summary"] == "Moved" and fetched["recurringEventId"] == series["id"]


def test_invitation_copies_switch(google, alice, bob) -> None:
    google.control.set_options(invitation_copies=False)
    invite(alice)
    assert bob.events().list(calendarId="primary").execute()["items"] == []
