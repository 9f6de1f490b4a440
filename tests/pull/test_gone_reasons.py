"""Every 410 by its reason (guides/errors "410: Gone"; sync guide "Synchronize resources efficiently"):
`fullSyncRequired` and `updatedMinTooLongAgo` mean "list everything again", `deleted` on a delete means already gone,
and no 410 ever makes the webhook answer a status Google would retry (500/502/503/504)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import FullSyncRequired, GoogleNotFound
from shared.gcal.client import classify_http_error
from tests.pull.conftest import SyncedUser
from tests.pull.test_robustness import assert_no_duplicates, list_calls, simple

LIST = "calendar.events.list"
RETRIED_BY_GOOGLE = {500, 502, 503, 504}


@pytest.mark.parametrize("reason", ["fullSyncRequired", "updatedMinTooLongAgo"])
def test_a_410_on_the_incremental_list_resyncs_in_full(synced: SyncedUser, google: Any, reason: str) -> None:
    first = google.control.create_event(synced.email, simple("before the 410"))
    synced.flush()
    assert synced.by_google_id(first["id"]).title == "before the 410"
    token_before = synced.calendar().sync_token
    google.control.pause_delivery()
    later = google.control.create_event(synced.email, simple("after the 410", 3))
    google.control.inject_fault(LIST, 410, reason, message="gone", count=1)
    calls = list_calls(google)
    answer = synced.notify()
    google.control.resume_delivery()
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ok"
    assert list_calls(google) - calls >= 2  # the refused incremental list, then the full one
    assert synced.by_google_id(later["id"]).title == "after the 410"
    assert_no_duplicates(synced)
    cal = synced.calendar()
    assert cal.sync_token and cal.sync_token != token_before
    assert cal.last_error is None
    assert cal.counters.get("full_syncs", 0) >= 2


def test_a_410_on_the_full_list_too_is_recorded_not_retried(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, simple("one"))
    synced.flush()
    token_before = synced.calendar().sync_token
    google.control.pause_delivery()
    google.control.create_event(synced.email, simple("two", 3))
    google.control.inject_fault(LIST, 410, "updatedMinTooLongAgo", message="gone", count=2)
    answer = synced.notify()
    assert answer.status_code not in RETRIED_BY_GOOGLE, answer.text
    assert answer.json()["status"] == "failed"
    cal = synced.calendar()
    assert "updatedMinTooLongAgo" in (cal.last_error or "")
    assert cal.sync_token == token_before  # nothing was stored that the refused lists did not cover
    # Google lists again: the next notification catches up.
    google.control.resume_delivery()
    synced.flush()
    answer = synced.notify()
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    assert {e.title for e in synced.events()} == {"one", "two"}


def test_410_reasons_are_classified() -> None:
    def body(reason: str) -> bytes:
        error = {"errors": [{"domain": "global", "reason": reason, "message": "m"}], "code": 410, "message": "m"}
        return json.dumps({"error": error}).encode()

    assert isinstance(classify_http_error(410, body("fullSyncRequired")), FullSyncRequired)
    assert isinstance(classify_http_error(410, body("updatedMinTooLongAgo")), FullSyncRequired)
    deleted = classify_http_error(410, body("deleted"))
    assert isinstance(deleted, GoogleNotFound) and not isinstance(deleted, FullSyncRequired)


def test_deleting_an_event_google_already_deleted_is_done(synced: SyncedUser, google: Any) -> None:
    event = google.control.create_event(synced.email, simple("to delete"))
    synced.flush()
    google.control.delete_event(synced.email, event["id"])
    integration = synced.ctx.store.get_integration(synced.user_id)
    client = synced.ctx.calendar_client(integration)
    before = google.control.counters()["by_method"].get("calendar.events.delete", 0)
    client.delete_event(synced.calendar_id, event["id"])  # 410 deleted from Google: already gone, no raise
    assert google.control.counters()["by_method"].get("calendar.events.delete", 0) - before == 1
