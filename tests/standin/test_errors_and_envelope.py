"""Error bodies exactly as Google documents them, and the list envelope taken from the calendar's settings."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, error_of, timed

START, END = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (403, "userRateLimitExceeded", "User Rate Limit Exceeded"),
        (403, "rateLimitExceeded", "Rate Limit Exceeded"),
        (429, "rateLimitExceeded", "Rate Limit Exceeded"),
    ],
)
def test_rate_limit_bodies(google, service, status, reason, message) -> None:
    google.control.set_options(quota_per_minute=1, rate_limit_status=status, rate_limit_reason=reason)
    service.events().list(calendarId="primary").execute()
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary").execute()
    assert error_of(excinfo) == (
        status,
        {
            "error": {
                "errors": [{"domain": "usageLimits", "reason": reason, "message": message}],
                "code": status,
                "message": message,
            }
        },
    )


def test_429_cannot_carry_user_rate_limit(google) -> None:
    from infra.google_standin.control import ControlError

    with pytest.raises(ControlError):
        google.control.set_options(rate_limit_status=429, rate_limit_reason="userRateLimitExceeded")


def test_updated_min_too_long_ago(google, service) -> None:
    now = google.control.clock()["now"]
    from datetime import UTC, datetime, timedelta

    recent = (datetime.fromtimestamp(now, UTC) - timedelta(days=27)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = (datetime.fromtimestamp(now, UTC) - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert service.events().list(calendarId="primary", updatedMin=recent).execute()["items"] == []
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary", updatedMin=old).execute()
    message = "The requested minimum modification time lies too far in the past."
    assert error_of(excinfo) == (
        410,
        {
            "error": {
                "errors": [
                    {
                        "domain": "calendar",
                        "reason": "updatedMinTooLongAgo",
                        "message": message,
                        "locationType": "parameter",
                        "location": "updatedMin",
                    }
                ],
                "code": 410,
                "message": message,
            }
        },
    )
    google.control.set_options(updated_min_max_age_days=None)
    assert service.events().list(calendarId="primary", updatedMin=old).execute()["items"] == []


def test_fault_with_location_and_full_custom_body(google, service) -> None:
    google.control.inject_fault(
        "calendar.events.list",
        400,
        "invalid",
        message="Invalid value",
        domain="calendar",
        location="timeMin",
        location_type="parameter",
    )
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary").execute()
    assert error_of(excinfo)[1]["error"]["errors"] == [
        {
            "domain": "calendar",
            "reason": "invalid",
            "message": "Invalid value",
            "locationType": "parameter",
            "location": "timeMin",
        }
    ]
    custom = {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}
    google.control.inject_fault("calendar.events.get", 503, body=custom)
    with pytest.raises(HttpError) as excinfo:
        service.events().get(calendarId="primary", eventId="abcdefgh").execute()
    assert error_of(excinfo) == (503, custom)


def test_list_envelope_comes_from_the_calendar(google, service) -> None:
    default = service.events().list(calendarId="primary").execute()
    assert (default["summary"], default["description"], default["timeZone"], default["accessRole"]) == (
        ALICE,
        "",
        "UTC",
        "owner",
    )
    assert default["defaultReminders"] == [{"method": "popup", "minutes": 10}]
    google.control.update_calendar(
        ALICE, summary="Alice Work", description="Team calendar", timeZone="America/Sao_Paulo", defaultReminders=[]
    )
    listed = service.events().list(calendarId="primary").execute()
    assert (listed["summary"], listed["description"], listed["timeZone"], listed["defaultReminders"]) == (
        "Alice Work",
        "Team calendar",
        "America/Sao_Paulo",
        [],
    )
    entry = service.calendarList().get(calendarId="primary").execute()
    assert entry["defaultReminders"] == [] and entry["summary"] == "Alice Work"
    assert service.calendars().get(calendarId="primary").execute()["description"] == "Team calendar"


def test_reader_access_is_reported_and_refuses_writes(google, service) -> None:
    event = service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    google.control.update_calendar(ALICE, accessRole="reader")
    assert service.events().list(calendarId="primary").execute()["accessRole"] == "reader"
    with pytest.raises(HttpError) as excinfo:
        service.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "x"}).execute()
    status, body = error_of(excinfo)
    assert status == 403 and body["error"]["errors"][0]["reason"] == "requiredAccessLevel"
    assert service.events().get(calendarId="primary", eventId=event["id"]).execute()["summary"] == "Meeting"


def test_bad_calendar_settings_are_refused(google) -> None:
    from infra.google_standin.control import ControlError

    for bad in (
        {"accessRole": "boss"},
        {"timeZone": "Mars/Olympus"},
        {"colour": "red"},
        {"defaultReminders": [{"method": "sms", "minutes": 5}]},
    ):
        with pytest.raises(ControlError):
            google.control.update_calendar(ALICE, **bad)


def test_datetime_rendered_in_the_calendar_offset(google) -> None:
    paulo = "paulo@example.com"
    google.control.create_account(paulo, "America/Sao_Paulo")
    service = google.service_for(paulo)
    body = {
        "summary": "LA call",
        "start": {"dateTime": "2024-05-01T10:00:00", "timeZone": "America/Los_Angeles"},
        "end": {"dateTime": "2024-05-01T11:00:00", "timeZone": "America/Los_Angeles"},
    }
    created = service.events().insert(calendarId="primary", body=body).execute()
    assert created["start"] == {"dateTime": "2024-05-01T14:00:00-03:00", "timeZone": "America/Los_Angeles"}
    listed = service.events().list(calendarId="primary").execute()["items"][0]
    assert listed["end"] == {"dateTime": "2024-05-01T15:00:00-03:00", "timeZone": "America/Los_Angeles"}
    google.control.set_options(render_in_calendar_offset=False)
    fetched = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert fetched["start"]["dateTime"].startswith("2024-05-01T10:00:00")  # as stored: local wall time


def test_values_already_in_the_calendar_offset_switch(google, service) -> None:
    assert google.control.options()["rerender_matching_offsets"] is True  # the default: re-spelled as Google does
    google.control.set_options(rerender_matching_offsets=False)
    body = {"start": {"dateTime": "2024-05-01T12:00:00+02:00"}, "end": {"dateTime": "2024-05-01T10:00:00+00:00"}}
    created = service.events().insert(calendarId="primary", body=body).execute()
    assert (created["start"], created["end"]) == (
        {"dateTime": "2024-05-01T10:00:00Z"},
        {"dateTime": "2024-05-01T10:00:00+00:00"},
    )
    google.control.set_options(rerender_matching_offsets=True)
    fetched = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert fetched["end"] == {"dateTime": "2024-05-01T10:00:00Z"}
