"""The notification's critical path (shared/sync/notification_path.py): one batchGet before the list, the first page
listed while the lease is created, and what keeps that early page from storing anything stale."""

from __future__ import annotations

from typing import Any

from shared.sync.google_to_crm_run import pull_calendar
from shared.sync.notification_path import read_pull_state, route_hints, start_first_page
from tests.pull.conftest import SyncedUser

LIST = "calendar.events.list"


def _simple(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": "2025-08-04T10:00:00Z"},
        "end": {"dateTime": "2025-08-04T11:00:00Z"},
    }


def test_a_known_channel_and_event_cost_one_batch_get_before_the_commit(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, _simple("first"))
    synced.flush()  # this notification taught the served webhook the channel's (user, calendar)
    assert route_hints.get(synced.channel_id) == (synced.user_id, synced.calendar_id)
    store = synced.ctx.store
    before = dict(store.ops)
    google.control.reset_counters()
    google.control.edit_event(synced.email, created["id"], {"summary": "second"})
    synced.flush()
    assert synced.by_google_id(created["id"]).title == "second"
    assert google.control.counters()["by_method"].get(LIST, 0) == 1
    spent = {key: store.ops[key] - before.get(key, 0) for key in ("rpcs", "batch_gets", "commits")}
    # batchGet (route, integration, calendar, lease, marker and the event's CRM document, which the first
    # notification's pull touched), lease create, one commit (event, calendar, lease release), the marker read after.
    assert spent == {"rpcs": 4, "batch_gets": 1, "commits": 2}, spent


def test_a_stopped_channel_is_forgotten_and_costs_one_read(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, _simple("teach the route"))
    synced.flush()
    synced.ctx.store.update_channel_route(synced.channel_id, {"state": "stopped"})
    google.control.reset_counters()
    assert synced.notify().status_code == 410  # read in the one batchGet, then forgotten
    assert route_hints.get(synced.channel_id) is None
    before = synced.ctx.store.ops["rpcs"]
    assert synced.notify().status_code == 410
    assert synced.ctx.store.ops["rpcs"] - before == 1
    assert google.control.counters()["total"] == 0


def test_an_early_page_older_than_a_committed_pull_is_dropped(synced: SyncedUser, google: Any) -> None:
    """The early page lists before the lease is won. If a whole pull committed in between, the page may be older than
    what that pull stored: storing it would put an old title back. It is dropped and the list runs again."""
    ctx = synced.ctx
    created = google.control.create_event(synced.email, _simple("v1"))
    synced.flush()
    google.control.pause_delivery()
    try:
        state = read_pull_state(ctx, synced.user_id, synced.calendar_id)
        google.control.edit_event(synced.email, created["id"], {"summary": "v2"})
        early = start_first_page(ctx, state, synced.user_id, synced.calendar_id)
        assert early is not None
        try:
            page = early.wait()
            assert [item["summary"] for item in page.page["items"]] == ["v2"]
            # Another pull runs to the end meanwhile and stores a newer Google version.
            google.control.edit_event(synced.email, created["id"], {"summary": "v3"})
            synced.pull(reason="other")
            assert synced.by_google_id(created["id"]).title == "v3"
            google.control.reset_counters()
            report = pull_calendar(
                ctx, synced.user_id, synced.calendar_id, reason="webhook", prefetched=state, first_page=page
            )
            lists = google.control.counters()["by_method"].get(LIST, 0)
            title = synced.by_google_id(created["id"]).title
        finally:
            early.release()
    finally:
        google.control.resume_delivery()
        synced.flush()
    assert title == "v3"  # not put back to v2 (not even until the next notification)
    assert report.outcome == "ok"
    assert lists == 1  # listed again from the stored token
    assert report.list_calls == 2  # the dropped page and the fresh one


def test_an_early_page_is_used_when_nothing_committed_meanwhile(synced: SyncedUser, google: Any) -> None:
    ctx = synced.ctx
    created = google.control.create_event(synced.email, _simple("v1"))
    synced.flush()
    google.control.pause_delivery()
    try:
        state = read_pull_state(ctx, synced.user_id, synced.calendar_id)
        google.control.edit_event(synced.email, created["id"], {"summary": "v2"})
        early = start_first_page(ctx, state, synced.user_id, synced.calendar_id)
        assert early is not None
        assert start_first_page(ctx, state, synced.user_id, synced.calendar_id) is None  # one per calendar
        try:
            page = early.wait()
            google.control.reset_counters()
            report = pull_calendar(
                ctx, synced.user_id, synced.calendar_id, reason="webhook", prefetched=state, first_page=page
            )
            lists = google.control.counters()["by_method"].get(LIST, 0)
            title = synced.by_google_id(created["id"]).title
        finally:
            early.release()
    finally:
        google.control.resume_delivery()
        synced.flush()
    assert report.outcome == "ok" and report.counts.get("update") == 1
    assert lists == 0  # the early page was the list
    assert title == "v2"
