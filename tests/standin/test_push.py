"""events.watch, channels.stop and the delivery worker."""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import Iterator

import pytest
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, Raw, Receiver, error_of, reason_of, timed


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def watch(service, receiver: Receiver, channel_id: str = "chan-1", **extra):
    body = {"id": channel_id, "type": "web_hook", "address": receiver.url, **extra}
    return service.events().watch(calendarId="primary", body=body).execute()


def change(service, summary: str = "x") -> dict:
    return (
        service.events()
        .insert(calendarId="primary", body=timed("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", summary=summary))
        .execute()
    )


def test_watch_response_and_sync_before_response(google, service, receiver) -> None:
    channel = watch(service, receiver, token="secret-token", params={"ttl": "3600"})
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1" and channel["token"] == "secret-token"
    assert channel["resourceUri"].startswith("https://www.googleapis.com/calendar/v3/calendars/")
    assert isinstance(channel["expiration"], str)
    now_ms = int(google.control.clock()["now"] * 1000)
    assert abs(int(channel["expiration"]) - (now_ms + 3600_000)) < 5000
    assert receiver.states() == ["sync"]  # already there when the watch call returned
    headers = receiver.requests[0]["headers"]
    assert headers["X-Goog-Message-Number"] == "1"
    assert headers["X-Goog-Channel-ID"] == "chan-1"
    assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert headers["X-Goog-Channel-Token"] == "secret-token"
    assert headers["User-Agent"] == "APIs-Google"
    assert headers["Content-Length"] == "0" and receiver.requests[0]["body"] == b""
    expiry = email.utils.parsedate_to_datetime(headers["X-Goog-Channel-Expiration"])
    assert int(expiry.timestamp()) == int(channel["expiration"]) // 1000
    assert headers["X-Goog-Channel-Expiration"].endswith("GMT")


def test_sync_after_response_option(google, service, receiver) -> None:
    google.control.set_options(sync_before_response=False)
    watch(service, receiver)
    google.control.flush()
    assert receiver.states() == ["sync"]


def test_exists_on_every_change_with_gaps(google, service, receiver) -> None:
    channel = watch(service, receiver)
    event = change(service)
    service.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "y"}).execute()
    google.control.delete_event(ALICE, event["id"])
    google.control.flush()
    assert receiver.states() == ["sync", "exists", "exists", "exists"]
    numbers = receiver.numbers()
    assert numbers[0] == 1 and numbers == sorted(numbers) and len(set(numbers)) == 4
    assert any(b - a > 1 for a, b in itertools.pairwise(numbers))
    second = watch(service, receiver, channel_id="chan-2")
    assert second["resourceId"] == channel["resourceId"]  # stable per calendar


def test_stop_and_expiry_end_delivery(google, service, receiver) -> None:
    channel = watch(service, receiver)
    service.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    change(service)
    google.control.flush()
    assert receiver.states() == ["sync"]
    with pytest.raises(HttpError) as excinfo:
        service.channels().stop(body={"id": "unknown", "resourceId": channel["resourceId"]}).execute()
    assert error_of(excinfo)[0] == 404
    expiring = watch(service, receiver, channel_id="chan-2", params={"ttl": "60"})
    google.control.advance_clock(61)
    change(service)
    google.control.flush()
    assert receiver.states() == ["sync", "sync"]
    third = watch(service, receiver, channel_id="chan-3")
    google.control.expire_channel(third["id"])
    change(service)
    google.control.flush()
    assert receiver.states() == ["sync", "sync", "sync"]
    assert expiring["id"] == "chan-2"


def test_expiration_is_the_strictest_limit(google, service, receiver) -> None:
    now_ms = int(google.control.clock()["now"] * 1000)
    asked = watch(service, receiver, channel_id="a", expiration=now_ms + 120_000)
    assert abs(int(asked["expiration"]) - (now_ms + 120_000)) < 2000
    as_string = watch(service, receiver, channel_id="b", expiration=str(now_ms + 130_000))
    assert abs(int(as_string["expiration"]) - (now_ms + 130_000)) < 2000
    google.control.set_options(max_channel_lifetime=600)
    capped = watch(service, receiver, channel_id="c")
    assert int(capped["expiration"]) - now_ms <= 601_000


def test_watch_validation(google, service, receiver) -> None:
    raw = Raw(google)
    path = "calendars/primary/events/watch"
    base = {"id": "v1", "type": "web_hook", "address": receiver.url}
    assert raw("POST", path, json={**base, "id": "x" * 65}).status_code == 400
    assert raw("POST", path, json={**base, "type": "email"}).status_code == 400
    assert raw("POST", path, json={k: v for k, v in base.items() if k != "address"}).status_code == 400
    assert raw("POST", path, json={**base, "token": "t" * 257}).status_code == 400
    assert raw("POST", path, json={**base, "address": "http://example.com/hook"}).status_code == 400
    assert raw("POST", path, json={**base, "type": "webhook"}).status_code == 200
    duplicate = raw("POST", path, json={**base, "type": "webhook"})
    assert duplicate.status_code == 400 and reason_of(duplicate.json()) == "channelIdNotUnique"
    google.control.set_options(require_https=True)
    assert raw("POST", path, json={**base, "id": "v2"}).status_code == 400


def test_retries_on_5xx_but_not_on_other_errors(google, service, receiver) -> None:
    watch(service, receiver)
    receiver.statuses = [503, 500, 200]
    change(service)
    google.control.flush()
    outcomes = [(n["status"], n["outcome"]) for n in google.control.notifications() if n["resource_state"] == "exists"]
    assert outcomes == [(503, "retrying"), (500, "retrying"), (200, "delivered")]
    receiver.statuses = [404]
    change(service)
    google.control.flush()
    last = google.control.notifications()[-1]
    assert (last["status"], last["outcome"]) == (404, "failed")
    google.control.set_options(push_max_attempts=2)
    receiver.statuses = [502, 502, 502]
    change(service)
    google.control.flush()
    tail = google.control.notifications()[-2:]
    assert [(n["status"], n["outcome"]) for n in tail] == [(502, "retrying"), (502, "failed")]


def test_drop_duplicate_and_reorder(google, service, receiver) -> None:
    watch(service, receiver)
    google.control.drop_notifications(next_n=1)
    change(service)
    google.control.flush()
    assert receiver.states() == ["sync"]
    assert google.control.notifications()[-1]["outcome"] == "dropped"
    google.control.duplicate_notifications(1)
    change(service)
    google.control.flush()
    assert receiver.numbers()[-1] == receiver.numbers()[-2]
    google.control.hold_notifications()
    change(service)
    change(service)
    google.control.flush()
    before = len(receiver.requests)
    assert google.control.release_notifications("reverse") == 2
    google.control.flush()
    held_numbers = receiver.numbers()[before:]
    assert held_numbers == sorted(held_numbers, reverse=True)


def test_pause_and_resume(google, service, receiver) -> None:
    watch(service, receiver)
    google.control.pause_delivery()
    change(service)
    state = google.control.flush(timeout=0.2)
    assert state["queued"] == 1 and receiver.states() == ["sync"]
    google.control.resume_delivery()
    assert google.control.flush()["idle"]
    assert receiver.states() == ["sync", "exists"]


def test_calendar_list_watch(google, service, receiver) -> None:
    channel = service.calendarList().watch(body={"id": "cl", "type": "web_hook", "address": receiver.url}).execute()
    assert channel["resourceUri"].endswith("users/me/calendarList?alt=json")
    google.control.create_calendar(ALICE, "New")
    google.control.flush()
    assert receiver.states() == ["sync", "exists"]
