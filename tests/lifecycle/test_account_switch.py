"""Reconnecting with a different Google account, end to end (issue 14 §7): the old account's channels stop, its token
is revoked, the CRM events linked to it are marked (shared/account/account_switch.py) and never pushed again, nothing
is duplicated, and new CRM meetings go to the new account."""

from __future__ import annotations

from typing import Any

from shared.context import AppContext
from shared.models import CrmEvent, EventTime, SyncState, utcnow
from shared.store import EVENTS
from shared.sync.crm_to_google_run import push_event
from tests.lifecycle.conftest import Api
from tests.lifecycle.helpers import refresh_token_of
from tests.lifecycle.test_oauth_binding import _refresh

OLD, NEW = "alice@example.com", "alice.work@example.com"
MEETING = {
    "summary": "Board meeting",
    "start": {"dateTime": "2031-05-02T10:00:00Z"},
    "end": {"dateTime": "2031-05-02T11:00:00Z"},
}


def _crm_meeting(crm_id: str, title: str) -> CrmEvent:
    return CrmEvent(
        id=crm_id,
        owner_id="user-a",
        title=title,
        start=EventTime(date_time="2031-05-03T10:00:00Z"),
        end=EventTime(date_time="2031-05-03T11:00:00Z"),
        created_at=utcnow(),
        updated_at=utcnow(),
    )


def _events(app_context: AppContext) -> dict[str, CrmEvent]:
    return {s.id: app_context.store.event_from(s) for s in app_context.store.db.collection(EVENTS).stream()}


def _google_writes(google: Any) -> int:
    methods = google.control.counters()["by_method"]
    return sum(int(v) for k, v in methods.items() if k.rsplit(".", 1)[-1] in ("insert", "patch", "update", "delete"))


def test_reconnect_with_another_account_end_to_end(api: Api, app_context: AppContext, google: Any) -> None:
    google.control.create_account(OLD)
    google.control.create_account(NEW)
    from_google = google.control.create_event(OLD, MEETING)
    assert api.connect("user-a", OLD).status_code == 200
    assert api.enable("user-a").status_code == 200
    google.control.flush()
    app_context.store.save_event(_crm_meeting("crm-made", "Demo with ACME"))
    assert push_event(app_context, "crm-made").outcome == "pushed"
    old_token = refresh_token_of(app_context, "user-a")
    live_before = [c for c in google.control.channels() if not c["stopped"]]
    assert live_before
    linked = {e.id for e in _events(app_context).values() if e.google and e.google.calendar_id == OLD}
    assert len(linked) == 2

    switched = api.connect("user-a", NEW)
    assert switched.status_code == 200, switched.text

    # The old account's channels are stopped and its grant revoked.
    assert all(c["stopped"] for c in google.control.channels() if c["id"] in {c["id"] for c in live_before})
    assert _refresh(google, old_token).json().get("error") == "invalid_grant"
    # Its events are marked, not re-pushed: nothing lands in the new account.
    events = _events(app_context)
    for crm_id in linked:
        event = events[crm_id]
        assert event.sync.detached_from == OLD
        assert event.sync.state == SyncState.ERROR and OLD in (event.sync.last_error or "")
        assert event.google is not None and event.google.calendar_id == OLD  # the link stays on record
    writes = _google_writes(google)
    app_context.store.update_event("crm-made", {"title": "Demo with ACME (moved)", "updated_at": utcnow()})
    report = push_event(app_context, "crm-made")
    assert report.outcome == "nothing", report
    assert _google_writes(google) == writes
    assert google.control.raw_events(NEW) == []
    # A new CRM meeting goes to the new account, once.
    app_context.store.save_event(_crm_meeting("crm-new", "First with the new account"))
    assert push_event(app_context, "crm-new").outcome == "pushed"
    assert push_event(app_context, "crm-new").outcome == "nothing"
    assert [e["summary"] for e in google.control.raw_events(NEW)] == ["First with the new account"]
    assert from_google["id"] not in {e["id"] for e in google.control.raw_events(NEW)}
    status = api.call("sync_status", "user-a", method="GET")
    assert status.status_code == 200 and status.json()["account_email"] == NEW
    assert status.json()["events"]["error"] == 2
