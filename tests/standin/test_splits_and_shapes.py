"""'This and following' splits, deleted events in Google's shapes, and patch validation as Google does it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, Receiver, error_of, timed

START, END = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"
SERIES = {
    "summary": "Standup",
    "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
    "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2024-05-06T09:15:00", "timeZone": "Europe/Berlin"},
}


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def test_this_and_following_splits_the_series(google, service, receiver) -> None:
    series = service.events().insert(calendarId="primary", body=SERIES).execute()
    instances = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    service.events().patch(calendarId="primary", eventId=instances[3]["id"], body={"summary": "late"}).execute()
    token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    service.events().watch(
        calendarId="primary", body={"id": "split", "type": "web_hook", "address": receiver.url}
    ).execute()
    new = google.control.split_series(ALICE, series["id"], instances[2]["id"], {"summary": "Standup v2"})
    google.control.flush()
    assert new["id"] == f"{series['id']}_R20240508T070000" and new["iCalUID"] == f"{new['id']}@google.com"
    original = service.events().get(calendarId="primary", eventId=series["id"]).execute()
    assert original["recurrence"] == ["RRULE:FREQ=DAILY;UNTIL=20240508T065959Z"]
    assert new["recurrence"] == ["RRULE:FREQ=DAILY;COUNT=3"]
    before = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    after = service.events().instances(calendarId="primary", eventId=new["id"]).execute()["items"]
    assert [i["id"] for i in before] == [i["id"] for i in instances[:2]]
    assert [i["id"] for i in after] == [f"{new['id']}_202405{d}T070000Z" for d in ("08", "09", "10")]
    assert {i["summary"] for i in after} == {"Standup v2"}
    fetched = service.events().get(calendarId="primary", eventId=after[1]["id"]).execute()
    assert fetched["recurringEventId"] == new["id"]
    changes = service.events().list(calendarId="primary", syncToken=token).execute()["items"]
    assert {(c["id"], c["status"]) for c in changes} == {
        (series["id"], "confirmed"),
        (new["id"], "confirmed"),
        (instances[3]["id"], "cancelled"),
    }
    assert "exists" in receiver.states()


def test_split_all_day_series_and_splitting_at_the_first_instance(google, service) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "Trip",
                "start": {"date": "2024-05-06"},
                "end": {"date": "2024-05-07"},
                "recurrence": ["RRULE:FREQ=WEEKLY"],
            },
        )
        .execute()
    )
    instances = (
        service.events()
        .instances(calendarId="primary", eventId=series["id"], timeMax="2024-06-01T00:00:00Z")
        .execute()["items"]
    )
    new = google.control.split_series(ALICE, series["id"], instances[1]["id"])
    assert new["id"] == f"{series['id']}_R20240513" and new["start"] == {"date": "2024-05-13"}
    original = service.events().get(calendarId="primary", eventId=series["id"]).execute()
    assert original["recurrence"] == ["RRULE:FREQ=WEEKLY;UNTIL=20240512"]
    whole = google.control.split_series(ALICE, series["id"], instances[0]["id"], {"summary": "Whole"})
    assert whole["id"] == series["id"] and whole["summary"] == "Whole"


def test_deleted_shapes_per_list_kind(google, service) -> None:
    event = service.events().insert(calendarId="primary", body=timed(START, END, summary="secret")).execute()
    series = service.events().insert(calendarId="primary", body=SERIES).execute()
    instance = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"][1]
    token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    service.events().delete(calendarId="primary", eventId=event["id"]).execute()
    service.events().delete(calendarId="primary", eventId=instance["id"]).execute()
    changes = {c["id"]: c for c in service.events().list(calendarId="primary", syncToken=token).execute()["items"]}
    assert set(changes[event["id"]]) == {"kind", "etag", "id", "status"}
    assert set(changes[instance["id"]]) == {"kind", "etag", "id", "status", "recurringEventId", "originalStartTime"}
    shown = {c["id"]: c for c in service.events().list(calendarId="primary", showDeleted=True).execute()["items"]}
    assert shown[event["id"]]["start"] == shown[event["id"]]["end"] == {"date": "2000-01-01"}
    assert "summary" not in shown[event["id"]]
    assert shown[instance["id"]]["originalStartTime"]["timeZone"] == "Europe/Berlin"
    assert "start" not in shown[instance["id"]]  # a cancelled exception of a live series: no placeholder
    google.control.set_options(placeholder_deleted_dates=False)
    shown = {c["id"]: c for c in service.events().list(calendarId="primary", showDeleted=True).execute()["items"]}
    assert "start" not in shown[event["id"]]


def test_patch_leaving_an_odd_google_field_alone_succeeds(google, service) -> None:
    # Google returns series whose end has no timeZone; the UI (control) creates one
    odd = google.control.create_event(ALICE, dict(SERIES, end={"dateTime": "2024-05-06T09:15:00+02:00"}))
    patched = service.events().patch(calendarId="primary", eventId=odd["id"], body={"summary": "renamed"}).execute()
    assert patched["summary"] == "renamed" and "timeZone" not in patched["end"]
    with pytest.raises(HttpError) as excinfo:
        service.events().patch(
            calendarId="primary", eventId=odd["id"], body={"end": {"dateTime": "2024-05-06T09:30:00+02:00"}}
        ).execute()
    assert error_of(excinfo)[0] == 400
    with pytest.raises(HttpError) as excinfo:  # the API itself still refuses to create such a series
        service.events().insert(
            calendarId="primary", body=dict(SERIES, end={"dateTime": "2024-05-06T09:15:00+02:00"})
        ).execute()
    assert error_of(excinfo)[0] == 400


def test_attendee_resource_is_kept(service) -> None:
    room = {"email": "room-1@resource.calendar.google.com", "resource": True, "responseStatus": "accepted"}
    event = (
        service.events()
        .insert(calendarId="primary", body=timed(START, END, attendees=[room, {"email": "bob@example.org"}]))
        .execute()
    )
    patched = service.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "x"}).execute()
    assert patched["attendees"][0] == room
