"""Events: discovery checks, single-event writes, preconditions, field rules."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, Raw, error_of, reason_of, timed

START, END = "2024-05-01T10:00:00+02:00", "2024-05-01T11:00:00+02:00"


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def test_api_endpoint_routes_real_requests_to_the_standin(google, service) -> None:
    assert google.api_endpoint.endswith("/calendar/v3/")
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    assert google.control.counters()["by_method"]["calendar.events.insert"] == 1
    assert event["kind"] == "calendar#event"
    assert event["organizer"] == {"email": ALICE, "self": True}
    assert event["creator"] == {"email": ALICE, "self": True}
    assert event["iCalUID"] == f"{event['id']}@google.com"
    assert event["status"] == "confirmed" and event["sequence"] == 0
    assert event["etag"].startswith('"') and event["etag"][1:-1].isdigit()
    assert event["updated"].endswith("Z") and len(event["updated"]) == len("2024-05-01T10:00:00.000Z")


def test_unknown_query_parameter_is_400(google) -> None:
    raw = Raw(google)
    assert raw("GET", "calendars/primary/events", params={"fooBar": "1"}).status_code == 400
    assert raw("GET", "calendars/primary/events", params={"maxResults": "ten"}).status_code == 400
    assert raw("GET", "calendars/primary/events", params={"singleEvents": "maybe"}).status_code == 400
    assert raw("GET", "calendars/primary/events", params={"orderBy": "summary"}).status_code == 400
    assert raw("GET", "calendars/primary/events", params={"timeMin": "yesterday"}).status_code == 400
    ok = raw(
        "GET",
        "calendars/primary/events",
        params={"maxResults": "5", "prettyPrint": "false", "alt": "json", "quotaUser": "u1"},
    )
    assert ok.status_code == 200, ok.text


def test_unknown_body_field_is_400_recursively(google) -> None:
    raw = Raw(google)
    top = raw("POST", "calendars/primary/events", json=timed(START, END, colour="red"))
    assert top.status_code == 400 and reason_of(top.json()) == "badRequest"
    nested = raw(
        "POST",
        "calendars/primary/events",
        json={"summary": "x", "start": {"dateTime": START, "tz": "x"}, "end": {"dateTime": END}},
    )
    assert nested.status_code == 400
    in_array = raw(
        "POST", "calendars/primary/events", json=timed(START, END, attendees=[{"email": "b@x.com", "rsvp": True}])
    )
    assert in_array.status_code == 400
    wrong_type = raw("POST", "calendars/primary/events", json=timed(START, END, guestsCanModify="yes"))
    assert wrong_type.status_code == 400
    channel = raw(
        "POST",
        "calendars/primary/events/watch",
        json={"id": "c1", "type": "web_hook", "address": "https://x", "bogus": 1},
    )
    assert channel.status_code == 400


def test_unknown_path_and_method(google) -> None:
    raw = Raw(google)
    assert raw("GET", "calendars/primary/nothing").status_code == 404
    assert raw("PUT", "calendars/primary/events").status_code in (404, 405)


def test_client_supplied_ids_and_duplicates(service) -> None:
    event_id = "abcdefghijklmnopqrstuv0123456789"
    created = service.events().insert(calendarId="primary", body=timed(START, END, id=event_id)).execute()
    assert created["id"] == event_id
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=timed(START, END, id=event_id)).execute()
    status, body = error_of(excinfo)
    assert status == 409 and reason_of(body) == "duplicate"
    assert body["error"]["errors"][0]["message"] == "The requested identifier already exists."
    for bad in ("abcd", "ABCDEFGH", "wxyz12345", "abc-defgh"):
        with pytest.raises(HttpError) as excinfo:
            service.events().insert(calendarId="primary", body=timed(START, END, id=bad)).execute()
        assert error_of(excinfo)[0] == 400


def test_get_delete_lifecycle(service) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().get(calendarId="primary", eventId="nosuchevent").execute()
    status, body = error_of(excinfo)
    assert status == 404 and reason_of(body) == "notFound"
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    assert service.events().delete(calendarId="primary", eventId=event["id"]).execute() == ""
    fetched = service.events().get(calendarId="primary", eventId=event["id"]).execute()
    assert fetched["status"] == "cancelled"
    with pytest.raises(HttpError) as excinfo:
        service.events().delete(calendarId="primary", eventId=event["id"]).execute()
    status, body = error_of(excinfo)
    assert status == 410 and reason_of(body) == "deleted" and body["error"]["errors"][0]["domain"] == "global"
    with pytest.raises(HttpError) as excinfo:
        service.events().delete(calendarId="primary", eventId="unknownevent").execute()
    assert error_of(excinfo)[0] == 404


def test_if_match_and_if_none_match(google, service) -> None:
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    raw = Raw(google)
    path = f"calendars/primary/events/{event['id']}"
    stale = raw("PATCH", path, json={"summary": "a"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and reason_of(stale.json()) == "conditionNotMet"
    fresh = raw("PATCH", path, json={"summary": "a"}, headers={"If-Match": event["etag"]})
    assert fresh.status_code == 200 and fresh.json()["etag"] != event["etag"]
    assert raw("PUT", path, json=timed(START, END), headers={"If-Match": event["etag"]}).status_code == 412
    assert raw("DELETE", path, headers={"If-Match": event["etag"]}).status_code == 412
    assert raw("GET", path, headers={"If-None-Match": fresh.json()["etag"]}).status_code == 304
    assert raw("GET", path, headers={"If-None-Match": event["etag"]}).status_code == 200
    assert raw("DELETE", path, headers={"If-Match": fresh.json()["etag"]}).status_code == 204


def test_update_replaces_and_patch_merges(service) -> None:
    body = timed(
        START,
        END,
        location="Room 1",
        extendedProperties={"private": {"a": "1", "b": "2"}},
        attendees=[{"email": "bob@example.com"}, {"email": ALICE}],
    )
    event = service.events().insert(calendarId="primary", body=body).execute()
    assert [a["responseStatus"] for a in event["attendees"]] == ["needsAction", "needsAction"]
    assert event["attendees"][1].get("self") is True and event["attendees"][1].get("organizer") is True
    patched = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=event["id"],
            body={
                "extendedProperties": {"private": {"b": None, "c": "3"}},
                "attendees": [{"email": "carol@example.com"}],
            },
        )
        .execute()
    )
    assert patched["extendedProperties"]["private"] == {"a": "1", "c": "3"}
    assert [a["email"] for a in patched["attendees"]] == ["carol@example.com"]
    assert patched["location"] == "Room 1" and patched["summary"] == "Meeting"
    updated = (
        service.events()
        .update(
            calendarId="primary",
            eventId=event["id"],
            body=timed(START, END, extendedProperties={"private": {"a": "1"}}),
        )
        .execute()
    )
    assert updated["extendedProperties"]["private"] == {"a": "1"}
    assert "location" not in updated and "attendees" not in updated
    assert updated["created"] == event["created"] and updated["id"] == event["id"]
    assert len({event["etag"], patched["etag"], updated["etag"]}) == 3


def test_sequence_bumps_on_time_change_only(service) -> None:
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    renamed = service.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "x"}).execute()
    assert renamed["sequence"] == 0
    moved = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=event["id"],
            body={"start": {"dateTime": "2024-05-02T10:00:00Z"}, "end": {"dateTime": "2024-05-02T11:00:00Z"}},
        )
        .execute()
    )
    assert moved["sequence"] == 1


def test_reminder_only_change_keeps_updated(google, service) -> None:
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    google.control.advance_clock(5)
    changed = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=event["id"],
            body={"reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}},
        )
        .execute()
    )
    assert changed["updated"] == event["updated"] and changed["etag"] != event["etag"]


@pytest.mark.parametrize(
    "body",
    [
        timed(END, START),
        {"summary": "no times"},
        {"start": {"dateTime": "2024-05-01T10:00:00"}, "end": {"dateTime": "2024-05-01T11:00:00"}},
        {"start": {"date": "2024-05-01", "dateTime": START}, "end": {"date": "2024-05-02"}},
        {"start": {"date": "2024-05-01"}, "end": {"dateTime": END}},
        {"start": {"dateTime": START, "timeZone": "Mars/Olympus"}, "end": {"dateTime": END}},
        timed(START, END, recurrence=["RRULE:FREQ=DAILY;COUNT=2"]),
        timed(START, END, reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 1}] * 6}),
        timed(START, END, reminders={"useDefault": False, "overrides": [{"method": "sms", "minutes": 1}]}),
        timed(START, END, reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 40321}]}),
        timed(START, END, reminders={"useDefault": True, "overrides": [{"method": "popup", "minutes": 5}]}),
        timed(START, END, attendees=[{"displayName": "nobody"}]),
        timed(START, END, status="maybe"),
    ],
)
def test_invalid_event_bodies_are_400(service, body) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=body).execute()
    assert error_of(excinfo)[0] == 400


def test_time_range_empty_reason(service) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=timed(END, START)).execute()
    assert reason_of(error_of(excinfo)[1]) == "timeRangeEmpty"


def test_time_zone_without_offset_and_all_day(service) -> None:
    zoned = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "start": {"dateTime": "2024-05-01T10:00:00", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2024-05-01T11:00:00", "timeZone": "Europe/Berlin"},
            },
        )
        .execute()
    )
    assert zoned["start"]["timeZone"] == "Europe/Berlin"
    all_day = (
        service.events()
        .insert(calendarId="primary", body={"start": {"date": "2024-05-01"}, "end": {"date": "2024-05-02"}})
        .execute()
    )
    assert all_day["start"] == {"date": "2024-05-01"}


def test_attachments_need_supports_attachments(service) -> None:
    attachment = {"fileUrl": "https://drive.google.com/file/d/1", "title": "doc"}
    dropped = service.events().insert(calendarId="primary", body=timed(START, END, attachments=[attachment])).execute()
    assert "attachments" not in dropped
    kept = (
        service.events()
        .insert(calendarId="primary", supportsAttachments=True, body=timed(START, END, attachments=[attachment]))
        .execute()
    )
    assert kept["attachments"] == [attachment]
    unchanged = service.events().patch(calendarId="primary", eventId=kept["id"], body={"attachments": []}).execute()
    assert unchanged["attachments"] == [attachment]
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary", supportsAttachments=True, body=timed(START, END, attachments=[{"title": "no url"}])
        ).execute()
    assert error_of(excinfo)[0] == 400
    with pytest.raises(HttpError):
        service.events().insert(
            calendarId="primary", supportsAttachments=True, body=timed(START, END, attachments=[attachment] * 26)
        ).execute()


def test_conference_data_needs_version_1(service) -> None:
    conference = {"conferenceId": "abc-defg-hij", "conferenceSolution": {"key": {"type": "hangoutsMeet"}}}
    dropped = service.events().insert(calendarId="primary", body=timed(START, END, conferenceData=conference)).execute()
    assert "conferenceData" not in dropped
    kept = (
        service.events()
        .insert(calendarId="primary", conferenceDataVersion=1, body=timed(START, END, conferenceData=conference))
        .execute()
    )
    assert kept["conferenceData"]["conferenceId"] == "abc-defg-hij"


def test_extended_property_silent_limits(service) -> None:
    event = (
        service.events()
        .insert(
            calendarId="primary",
            body=timed(
                START, END, extendedProperties={"private": {"k" * 44: "ok", "k" * 45: "dropped", "long": "v" * 2000}}
            ),
        )
        .execute()
    )
    private = event["extendedProperties"]["private"]
    assert "k" * 45 not in private and private["k" * 44] == "ok" and len(private["long"]) == 1024


@pytest.mark.parametrize("mode", ["reject", "truncate"])
def test_extended_property_count_limit_is_configurable(google, service, mode) -> None:
    google.control.set_options(xprops_over_limit=mode)
    many = {f"key{i}": "v" for i in range(301)}
    request = service.events().insert(
        calendarId="primary", body=timed(START, END, extendedProperties={"private": many})
    )
    if mode == "reject":
        with pytest.raises(HttpError) as excinfo:
            request.execute()
        assert error_of(excinfo)[0] == 400
    else:
        assert len(request.execute()["extendedProperties"]["private"]) == 300


def test_send_updates_are_counted(google, service) -> None:
    attendees = [{"email": "bob@other.com"}, {"email": "carol@example.com"}, {"email": ALICE}]
    event = (
        service.events()
        .insert(calendarId="primary", sendUpdates="all", body=timed(START, END, attendees=attendees))
        .execute()
    )
    service.events().patch(
        calendarId="primary", eventId=event["id"], sendUpdates="externalOnly", body={"summary": "x"}
    ).execute()
    service.events().patch(
        calendarId="primary", eventId=event["id"], sendUpdates="none", body={"summary": "y"}
    ).execute()
    mails = google.control.emails(ALICE, event["id"])
    assert [m["sendUpdates"] for m in mails["emails"]] == ["all", "externalOnly"]
    assert mails["emails"][0]["recipients"] == ["bob@other.com", "carol@example.com"]
    assert mails["emails"][1]["recipients"] == ["bob@other.com"]


def test_fields_selector_partial_response(service) -> None:
    service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    page = service.events().list(calendarId="primary", fields="items(id,status),nextSyncToken").execute()
    assert set(page) == {"items", "nextSyncToken"} and set(page["items"][0]) == {"id", "status"}


def test_move_leaves_cancelled_event_behind(google, service) -> None:
    other = google.control.create_calendar(ALICE, "Work")["id"]
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    moved = service.events().move(calendarId="primary", eventId=event["id"], destination=other).execute()
    assert moved["id"] == event["id"]
    assert service.events().get(calendarId="primary", eventId=event["id"]).execute()["status"] == "cancelled"
    assert service.events().get(calendarId=other, eventId=event["id"]).execute()["status"] == "confirmed"


def test_other_users_calendar_is_404(google, service) -> None:
    google.control.create_account("bob@example.com")
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="bob@example.com").execute()
    assert error_of(excinfo)[0] == 404
