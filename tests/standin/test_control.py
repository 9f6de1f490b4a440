"""Control API: acting as the Google user, raw store, and the switchable UNCONFIRMED behaviours."""

from __future__ import annotations

import pytest
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request

from infra.google_standin.control import ControlError
from tests.standin.helpers import ALICE, Raw, timed

START, END = "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def test_user_changes_behave_like_api_writes(google, service) -> None:
    token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    event = google.control.create_event(ALICE, timed(START, END, attendees=[{"email": "bob@example.com"}]))
    replied = google.control.reply(ALICE, event["id"], "bob@example.com", "accepted")
    assert replied["attendees"][0]["responseStatus"] == "accepted" and replied["etag"] != event["etag"]
    edited = google.control.edit_event(ALICE, event["id"], {"summary": "renamed"})
    assert edited["attendees"][0]["responseStatus"] == "accepted"
    work = google.control.create_calendar(ALICE, "Work")["id"]
    google.control.move_event(ALICE, event["id"], work)
    changes = service.events().list(calendarId="primary", syncToken=token).execute()["items"]
    assert [(c["id"], c["status"]) for c in changes] == [(event["id"], "cancelled")]
    assert service.events().get(calendarId=work, eventId=event["id"]).execute()["summary"] == "renamed"
    raw = google.control.raw_events(ALICE)
    assert raw[0]["status"] == "cancelled" and raw[0]["_seq"] >= 4
    with pytest.raises(ControlError):
        google.control.reply(ALICE, event["id"], "nobody@example.com", "accepted")


@pytest.mark.parametrize("minimal", [True, False])
def test_cancelled_item_detail_is_configurable(google, service, minimal) -> None:
    google.control.set_options(minimal_cancelled=minimal)
    event = service.events().insert(calendarId="primary", body=timed(START, END, summary="secret")).execute()
    token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    service.events().delete(calendarId="primary", eventId=event["id"]).execute()
    tombstone = service.events().list(calendarId="primary", syncToken=token).execute()["items"][0]
    assert tombstone["status"] == "cancelled" and tombstone["id"] == event["id"]
    assert ("summary" in tombstone) is (not minimal)


@pytest.mark.parametrize("reject", [True, False])
def test_duplicate_channel_id_behaviour_is_configurable(google, reject) -> None:
    google.control.set_options(reject_duplicate_channel_ids=reject)
    raw = Raw(google)
    body = {"id": "same", "type": "web_hook", "address": "https://hooks.example.com/x"}
    google.control.pause_delivery()  # the address is not reachable; nothing needs to be delivered
    assert raw("POST", "calendars/primary/events/watch", json=body).status_code == 200
    assert raw("POST", "calendars/primary/events/watch", json=body).status_code == (400 if reject else 200)


def test_calendar_list_page_sizes(google, service) -> None:
    for index in range(100):
        google.control.create_calendar(ALICE, f"Cal {index}")
    default = service.calendarList().list().execute()
    assert len(default["items"]) == 100 and "nextPageToken" in default
    clamped = Raw(google)("GET", "users/me/calendarList", params={"maxResults": "1000"}).json()
    assert len(clamped["items"]) == 101 and "nextSyncToken" in clamped


def test_refresh_tokens_beyond_limit_are_silently_invalidated(google) -> None:
    google.control.set_options(refresh_tokens_per_client_limit=2)
    first = google.credentials_for(ALICE)
    google.credentials_for(ALICE)
    google.credentials_for(ALICE)
    service = google.service_for(ALICE)
    assert service.calendars().get(calendarId="primary").execute()["id"] == ALICE
    with pytest.raises(RefreshError):
        first.refresh(Request())


def test_reset_forgets_everything(google, service) -> None:
    service.events().insert(calendarId="primary", body=timed(START, END)).execute()
    google.control.advance_clock(100)
    google.control.reset()
    assert google.control.clock()["offset"] == 0
    with pytest.raises(RefreshError, match="invalid_grant"):  # tokens are gone: 401, then the refresh fails
        service.events().list(calendarId="primary").execute()
