"""Hostile input through the Firestore trigger: the CRM wrote a document the sync cannot read (bad dates, end before
start, wrong types), or something that is not a CloudEvent reached push_event. Served over HTTP by functions-framework.

Expected: no Google call; the function does not fail (a 5xx makes Eventarc redeliver the same poison event again and
again), and the reason is recorded on the document for the CRM to show (`sync.state = error`, `sync.last_error`).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.hostile.probes import World, diff_snapshots, firestore_snapshot, google_state
from tests.push.helpers import post_written

BAD_DOCUMENTS = {
    "bad-date": {
        "owner_id": "user-a",
        "title": "x",
        "start": {"date_time": "2027-13-45T99:00:00Z"},
        "end": {"date_time": "2027-01-01T10:00:00Z"},
    },
    "end-before-start": {
        "owner_id": "user-a",
        "title": "x",
        "start": {"date": "2027-01-02"},
        "end": {"date": "2027-01-01"},
    },
    "naive-datetime": {
        "owner_id": "user-a",
        "title": "x",
        "start": {"date_time": "2027-01-01T10:00:00"},
        "end": {"date_time": "2027-01-01T11:00:00"},
    },
    "wrong-types": {"owner_id": 5, "title": ["x"], "start": "tomorrow"},
}


@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_invalid_crm_document_is_recorded_not_retried_forever(shared_world: World, name: str) -> None:
    from shared.context import set_default_context

    w = shared_world
    set_default_context(w.ctx)
    ref = w.ctx.store.db.collection("events").document(f"bad-{name}")
    ref.set(BAD_DOCUMENTS[name])
    google_before = google_state(w.google)
    answer = post_written(w.served["push_event"].url, w.ctx.settings.project_id, ref.id, new={"title": "x"})
    assert google_state(w.google) == google_before, "a Google call was made for an invalid document"
    recorded = ref.get()
    data = recorded.to_dict() or {}
    # Our own bookkeeping write triggers the function again: that second look must write nothing (no loop).
    again = post_written(w.served["push_event"].url, w.ctx.settings.project_id, ref.id, new={"title": "x"})
    assert again.status_code < 500
    assert ref.get().update_time == recorded.update_time, "the error record was rewritten: a trigger loop"
    ref.delete()
    assert answer.status_code < 500, f"{answer.status_code}: Eventarc would redeliver this poison event forever"
    sync = data.get("sync") or {}
    assert sync.get("state") == "error" and sync.get("last_error"), f"no error recorded on the document: {data}"


CE = {
    "ce-id": "1",
    "ce-source": "//firestore.googleapis.com/projects/x/databases/(default)",
    "ce-specversion": "1.0",
    "ce-type": "google.cloud.firestore.document.v1.written",
}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({"Content-Type": "application/json"}, b"{}", id="not-a-cloudevent"),
        pytest.param({"Content-Type": "application/json"}, b"not json", id="not-json"),
        pytest.param(
            {**CE, "ce-subject": "documents/integrations/user-a", "Content-Type": "application/json"},
            b"{}",
            id="other-collection",
        ),
        pytest.param(
            {
                **CE,
                "ce-type": "com.example.other",
                "ce-subject": "documents/events/crm-user-a",
                "Content-Type": "application/json",
            },
            b"{}",
            id="other-event-type",
        ),
        pytest.param(
            {**CE, "ce-subject": "documents/events/../integrations/user-a", "Content-Type": "application/json"},
            b"{}",
            id="subject-path-trick",
        ),
        pytest.param(
            {**CE, "ce-subject": "documents/events/crm-user-a", "Content-Type": "application/json"},
            b'{"oldValue": {"name": "x", "fields": {"owner_id": {"stringValue": "user-b"}}}}',
            id="forged-old-value-of-live-document",
        ),
        pytest.param(
            {**CE, "ce-subject": "documents/events/crm-user-a", "Content-Type": "application/protobuf"},
            b"\xff\xfe garbage",
            id="garbage-protobuf",
        ),
    ],
)
def test_push_trigger_ignores_what_is_not_an_event_write(
    shared_world: World, headers: dict[str, str], body: bytes
) -> None:
    from shared.context import set_default_context

    w = shared_world
    set_default_context(w.ctx)
    before = firestore_snapshot(w.ctx.store.db)
    google_before = google_state(w.google)
    answer = requests.post(w.served["push_event"].url, data=body, headers=headers, timeout=30)
    assert answer.status_code < 500, answer.text[:300]
    assert google_state(w.google) == google_before
    assert diff_snapshots(before, firestore_snapshot(w.ctx.store.db)) == []


def test_push_trigger_rejects_are_not_followed_by_google_calls(shared_world: Any) -> None:
    """Control: a genuine CloudEvent for an unchanged, synced document is an echo: no Google call either."""
    from shared.context import set_default_context

    w = shared_world
    set_default_context(w.ctx)
    google_before = google_state(w.google)
    answer = post_written(w.served["push_event"].url, w.ctx.settings.project_id, "crm-user-a", new={"title": "x"})
    assert answer.status_code == 200, answer.text
    assert google_state(w.google) == google_before


def test_forged_hard_delete_of_a_document_that_never_existed_deletes_nothing(shared_world: World, logs: Any) -> None:
    """A `written` CloudEvent for a document that never existed, whose oldValue carries a real event's Google link
    and owner: the Google event is not that document's, so nothing is deleted and the attempt is logged."""
    from shared.context import set_default_context

    w = shared_world
    set_default_context(w.ctx)
    real = w.ctx.store.db.collection("events").document("crm-user-a").get().to_dict()
    assert real and real["google"]["event_id"]
    before = firestore_snapshot(w.ctx.store.db)
    google_before = google_state(w.google)
    answer = post_written(w.served["push_event"].url, w.ctx.settings.project_id, "forged-never-existed", old=real)
    assert answer.status_code < 500, answer.text[:300]
    after = google_state(w.google)
    reads = {
        m: n - google_before["calls"].get(m, 0)
        for m, n in after["calls"].items()
        if n != google_before["calls"].get(m, 0)
    }
    assert set(reads) <= {"calendar.events.get", "oauth.token"}, f"a forged hard delete wrote to Google: {reads}"
    assert after["channels"] == google_before["channels"] and after["revoked"] == google_before["revoked"]
    event = w.google.control.raw_events("alice@example.com")
    assert any(e["id"] == real["google"]["event_id"] and e.get("status") != "cancelled" for e in event)
    assert diff_snapshots(before, firestore_snapshot(w.ctx.store.db)) == []
    assert "hard delete refused: the Google event is not this CRM document" in logs.text()


def test_deeply_nested_cloudevent_data_changes_nothing(shared_world: World) -> None:
    from shared.context import set_default_context

    w = shared_world
    set_default_context(w.ctx)
    before = firestore_snapshot(w.ctx.store.db)
    google_before = google_state(w.google)
    deep = b'{"oldValue":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    headers = {**CE, "ce-subject": "documents/events/crm-user-a", "Content-Type": "application/json"}
    answer = requests.post(w.served["push_event"].url, data=deep, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["code"] == "bad_request"
    assert google_state(w.google) == google_before
    assert diff_snapshots(before, firestore_snapshot(w.ctx.store.db)) == []
