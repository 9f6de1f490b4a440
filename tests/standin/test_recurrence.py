"""Recurring events: the expander and the API's series/instance/exception behaviour."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.errors import HttpError

from infra.google_standin.recurrence import RecurrenceError, expand, validate
from tests.standin.helpers import ALICE, error_of

BERLIN = ZoneInfo("Europe/Berlin")
FAR = datetime(2030, 1, 1, tzinfo=UTC)


def test_expander_weekly_byday_count_exdate() -> None:
    start = datetime(2024, 3, 25, 10, tzinfo=BERLIN)
    got = expand(
        start, BERLIN, ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=5", "EXDATE;TZID=Europe/Berlin:20240327T100000"], FAR
    )
    assert [d.day for d in got] == [25, 1, 3, 8]
    assert all(d.hour == 10 for d in got)  # wall-clock kept across the DST switch on 31 March


def test_expander_until_interval_monthly_yearly_rdate() -> None:
    start = datetime(2024, 1, 31, 9, tzinfo=UTC)
    assert [d.month for d in expand(start, UTC, ["RRULE:FREQ=MONTHLY;COUNT=4"], FAR)] == [1, 3, 5, 7]
    daily = expand(start, UTC, ["RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20240206T090000Z"], FAR)
    assert [d.day for d in daily] == [31, 2, 4, 6]
    last_friday = expand(datetime(2024, 1, 26, 9, tzinfo=UTC), UTC, ["RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=3"], FAR)
    assert [d.date() for d in last_friday] == [date(2024, 1, 26), date(2024, 2, 23), date(2024, 3, 29)]
    yearly = expand(date(2024, 2, 29), None, ["RRULE:FREQ=YEARLY;COUNT=2"], FAR)
    assert yearly == [date(2024, 2, 29), date(2028, 2, 29)]
    with_rdate = expand(start, UTC, ["RRULE:FREQ=DAILY;COUNT=1", "RDATE:20240215T090000Z"], FAR)
    assert len(with_rdate) == 2
    unbounded = expand(start, UTC, ["RRULE:FREQ=DAILY"], FAR, limit=50)
    assert len(unbounded) == 50


@pytest.mark.parametrize(
    "line", ["RRULE:FREQ=HOURLY", "RRULE:FREQ=DAILY;COUNT=2;UNTIL=20240101", "FOO:BAR", "RRULE:FREQ=DAILY;BYHOUR=3"]
)
def test_expander_rejects_unsupported(line) -> None:
    with pytest.raises(RecurrenceError):
        validate([line], UTC)


def series_body(rule: str = "RRULE:FREQ=DAILY;COUNT=5") -> dict:
    return {
        "summary": "Standup",
        "recurrence": [rule],
        "start": {"dateTime": "2024-05-06T09:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2024-05-06T09:15:00", "timeZone": "Europe/Berlin"},
    }


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def test_instances_ids_and_fields(service) -> None:
    series = service.events().insert(calendarId="primary", body=series_body()).execute()
    instances = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert len(instances) == 5
    first = instances[0]
    assert first["id"] == f"{series['id']}_20240506T070000Z"
    assert first["recurringEventId"] == series["id"] and "recurrence" not in first
    # rendered in the calendar's offset (ALICE's calendar is UTC), the series' zone kept in timeZone
    assert first["originalStartTime"] == {"dateTime": "2024-05-06T07:00:00Z", "timeZone": "Europe/Berlin"}
    assert {i["iCalUID"] for i in instances} == {series["iCalUID"]}
    fetched = service.events().get(calendarId="primary", eventId=instances[2]["id"]).execute()
    assert fetched["start"]["dateTime"] == "2024-05-08T07:00:00Z"
    with pytest.raises(HttpError):
        service.events().get(calendarId="primary", eventId=f"{series['id']}_20240506T080000Z").execute()


def test_all_day_instance_ids(service) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "Holiday",
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"],
                "start": {"date": "2024-05-06"},
                "end": {"date": "2024-05-07"},
            },
        )
        .execute()
    )
    items = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert [i["id"] for i in items] == [f"{series['id']}_20240506", f"{series['id']}_20240513"]


def test_exceptions_in_lists(service) -> None:
    series = service.events().insert(calendarId="primary", body=series_body()).execute()
    instances = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    moved = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=instances[1]["id"],
            body={
                "start": {"dateTime": "2024-05-07T10:00:00+02:00"},
                "end": {"dateTime": "2024-05-07T10:30:00+02:00"},
                "summary": "Late standup",
            },
        )
        .execute()
    )
    assert moved["recurringEventId"] == series["id"]
    assert moved["originalStartTime"] == instances[1]["originalStartTime"]
    service.events().delete(calendarId="primary", eventId=instances[3]["id"]).execute()
    plain = service.events().list(calendarId="primary").execute()["items"]
    by_id = {i["id"]: i for i in plain}
    assert set(by_id) == {series["id"], moved["id"], instances[3]["id"]}
    cancelled = by_id[instances[3]["id"]]
    assert cancelled["status"] == "cancelled" and cancelled["recurringEventId"] == series["id"]
    assert "originalStartTime" in cancelled
    single = (
        service.events()
        .list(
            calendarId="primary",
            singleEvents=True,
            orderBy="startTime",
            timeMin="2024-05-01T00:00:00Z",
            timeMax="2024-06-01T00:00:00Z",
        )
        .execute()["items"]
    )
    assert len(single) == 4
    assert [i["summary"] for i in single][1] == "Late standup"
    assert instances[3]["id"] not in {i["id"] for i in single}
    again = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    assert len(again) == 4


def test_deleting_series_hides_everything(service) -> None:
    series = service.events().insert(calendarId="primary", body=series_body()).execute()
    first = service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"][0]
    service.events().patch(calendarId="primary", eventId=first["id"], body={"summary": "x"}).execute()
    service.events().delete(calendarId="primary", eventId=series["id"]).execute()
    assert service.events().list(calendarId="primary").execute()["items"] == []
    assert service.events().list(calendarId="primary", singleEvents=True).execute()["items"] == []


def test_recurring_needs_time_zone_and_valid_rule(service) -> None:
    body = series_body()
    body["start"] = {"dateTime": "2024-05-06T09:00:00+02:00"}
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(calendarId="primary", body=body).execute()
    assert error_of(excinfo)[0] == 400
    with pytest.raises(HttpError):
        service.events().insert(calendarId="primary", body=series_body("RRULE:FREQ=SOMETIMES")).execute()


def test_unbounded_series_is_capped(google, service) -> None:
    google.control.set_options(max_instances_per_series=30)
    series = service.events().insert(calendarId="primary", body=series_body("RRULE:FREQ=DAILY")).execute()
    items = service.events().instances(calendarId="primary", eventId=series["id"], maxResults=2500).execute()
    assert len(items["items"]) == 30


def test_control_user_series_and_instance_edits(google, service) -> None:
    series = google.control.create_recurring_event(
        ALICE, {k: v for k, v in series_body().items() if k != "recurrence"}, "FREQ=WEEKLY;COUNT=3"
    )
    token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    instance_id = f"{series['id']}_20240513T070000Z"
    google.control.modify_instance(ALICE, instance_id, {"summary": "moved by user"})
    google.control.cancel_instance(ALICE, f"{series['id']}_20240520T070000Z")
    changes = service.events().list(calendarId="primary", syncToken=token).execute()["items"]
    assert {c["id"]: c["status"] for c in changes} == {
        instance_id: "confirmed",
        f"{series['id']}_20240520T070000Z": "cancelled",
    }
