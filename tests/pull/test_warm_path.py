"""The warm notification path (shared/sync/notification_path.py): a page whose CRM documents the webhook's one batchGet
already read is committed without another read, under preconditions from that read; and every way that read can be
out of date (a CRM edit, another writer of the calendar, another instance's pull, a stopped channel, a wrong token)
falls back without losing or overwriting anything. Through the served webhook, the emulator and the stand-in, except
where a race must be placed exactly (then the same functions are called in the webhook's order)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.gcal.wire import has_unpushed_change
from shared.models import calendar_key, utcnow
from shared.store import SYNC_LEASES
from shared.sync.coalesce import lease_id
from shared.sync.google_to_crm_run import pull_calendar
from shared.sync.notification_path import misses, read_pull_state, recent_events, route_hints, start_first_page
from tests.pull.conftest import SyncedUser

LIST = "calendar.events.list"
WINDOW_SECONDS = 1.5  # events.list latency while a test acts between the webhook's batchGet and its commit


def _simple(summary: str, day: int = 4) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2025-08-{day:02d}T10:00:00Z"},
        "end": {"dateTime": f"2025-08-{day:02d}T11:00:00Z"},
    }


def _spent(synced: SyncedUser, before: dict[str, int]) -> dict[str, int]:
    ops = synced.ctx.store.ops
    return {key: ops[key] - before.get(key, 0) for key in ("rpcs", "batch_gets", "commits")}


def _lists(google: Any) -> int:
    return int(google.control.counters()["by_method"].get(LIST, 0))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _lease_held(synced: SyncedUser) -> Callable[[], bool]:
    ref = synced.ctx.store.db.collection(SYNC_LEASES).document(lease_id(synced.user_id, synced.calendar_id))
    return lambda: ref.get().exists


def _while_the_webhook_lists(synced: SyncedUser, google: Any, google_edit: Callable[[], None], act: Callable[[], None]):
    """Make a Google edit, wait until the served webhook has read its state and taken its lease (its list is then in
    flight, made slow), do `act` (a write the webhook's batchGet did not see), and let the webhook finish."""
    google.control.set_latency(LIST, WINDOW_SECONDS)
    try:
        google_edit()
        _wait_for(_lease_held(synced), "the webhook's lease")
        act()
        synced.flush()
    finally:
        google.control.set_latency(LIST, 0)


def test_a_new_google_event_costs_one_batch_get_before_the_commit(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, _simple("teach the channel"))
    synced.flush()
    assert route_hints.get(synced.channel_id) is not None
    before = dict(synced.ctx.store.ops)
    lost = misses["early_commit_lost"]
    google.control.reset_counters()
    created = google.control.create_event(synced.email, _simple("new in Google", 5))
    synced.flush()
    assert synced.by_google_id(created["id"]).title == "new in Google"
    assert _lists(google) == 1
    # batchGet, lease create, one commit (a create: it fails if the document exists), the marker read.
    assert _spent(synced, before) == {"rpcs": 4, "batch_gets": 1, "commits": 2}
    assert misses["early_commit_lost"] == lost


def test_an_event_the_instance_has_not_seen_is_read_after_the_list(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, _simple("v1"))
    synced.flush()
    recent_events.remember(synced.user_id, synced.calendar_id, [f"g-other-{n}" for n in range(8)])  # pushed out
    before = dict(synced.ctx.store.ops)
    google.control.edit_event(synced.email, created["id"], {"summary": "v2"})
    synced.flush()
    assert synced.by_google_id(created["id"]).title == "v2"
    # batchGet, lease create, batchGet of the page's document with the calendar, commit, marker read: 4 in a row.
    assert _spent(synced, before) == {"rpcs": 5, "batch_gets": 2, "commits": 2}


def test_a_crm_edit_during_the_list_fails_the_early_commit_and_both_edits_survive(
    synced: SyncedUser, google: Any
) -> None:
    created = google.control.create_event(synced.email, _simple("title"))
    synced.flush()
    crm_id = synced.by_google_id(created["id"]).id
    lost = misses["early_commit_lost"]
    google.control.reset_counters()

    def crm_edit() -> None:
        synced.ctx.store.update_event(crm_id, {"title": "CRM title", "updated_at": utcnow()})

    _while_the_webhook_lists(
        synced, google, lambda: google.control.edit_event(synced.email, created["id"], {"location": "Room 7"}), crm_edit
    )
    event = synced.ctx.store.get_event(crm_id)
    assert event.title == "CRM title"  # not overwritten by a commit planned on the older read
    assert event.location == "Room 7"  # Google's field merged in
    assert has_unpushed_change(event)  # the CRM edit still goes to Google
    assert misses["early_commit_lost"] == lost + 1
    assert _lists(google) == 1  # planned again on a fresh read, not listed again


def test_another_write_to_the_calendar_during_the_list_costs_a_read_not_a_list(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, _simple("v1"))
    synced.flush()
    lost = misses["early_commit_lost"]
    google.control.reset_counters()
    key = calendar_key(synced.calendar_id)

    def touch_calendar() -> None:  # as the echo bookkeeping of a CRM write does
        synced.ctx.store.update_calendar(synced.user_id, key, {"echo_expected_at": utcnow()})

    def google_edit() -> None:
        google.control.edit_event(synced.email, created["id"], {"summary": "v2"})

    _while_the_webhook_lists(synced, google, google_edit, touch_calendar)
    assert synced.by_google_id(created["id"]).title == "v2"
    assert misses["early_commit_lost"] == lost + 1
    assert _lists(google) == 1
    calendar = synced.calendar()
    assert calendar.echo_expected_at is not None  # the other writer's field kept
    assert calendar.last_sync_at is not None and calendar.last_sync_at >= calendar.echo_expected_at


def test_a_sync_token_stored_by_another_instance_meanwhile_drops_the_early_page(
    synced: SyncedUser, google: Any
) -> None:
    """Another instance's pull commits between our batchGet and our lease: our page (listed with the older token) may
    be older than what it stored. The calendar's precondition fails our commit, the fresh read sees the new token, the
    page is dropped and the list runs again from it. Placed exactly: the webhook's steps, called in its order."""
    ctx = synced.ctx
    created = google.control.create_event(synced.email, _simple("v1"))
    synced.flush()
    google.control.pause_delivery()
    lost, dropped = misses["early_commit_lost"], misses["early_page_dropped"]
    try:
        state = read_pull_state(ctx, synced.user_id, synced.calendar_id)
        assert state.events  # the event's document rode in the batchGet
        google.control.edit_event(synced.email, created["id"], {"summary": "v2"})
        early = start_first_page(ctx, state, synced.user_id, synced.calendar_id)
        assert early is not None
        try:
            page = early.wait()
            google.control.edit_event(synced.email, created["id"], {"summary": "v3"})
            synced.pull(reason="another instance")  # lists v3 and stores it with a newer token
            report = pull_calendar(
                ctx, synced.user_id, synced.calendar_id, reason="webhook", prefetched=state, first_page=page
            )
        finally:
            early.release()
    finally:
        google.control.resume_delivery()
        synced.flush()
    assert synced.by_google_id(created["id"]).title == "v3"
    assert report.outcome == "ok" and report.list_calls == 2  # the dropped page and the list from the new token
    assert misses["early_commit_lost"] == lost + 1
    assert misses["early_page_dropped"] == dropped + 1


def test_a_stopped_channel_on_a_warm_instance_makes_no_call_and_no_write(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, _simple("teach the route"))
    synced.flush()
    synced.ctx.store.update_channel_route(synced.channel_id, {"state": "stopped"})
    before = dict(synced.ctx.store.ops)
    google.control.reset_counters()
    assert synced.notify().status_code == 410
    assert google.control.counters()["total"] == 0
    assert _spent(synced, before)["commits"] == 0


def test_a_changed_token_on_a_warm_instance_is_rejected_before_any_call(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, _simple("teach the route"))
    synced.flush()
    assert route_hints.get(synced.channel_id) is not None
    before = dict(synced.ctx.store.ops)
    google.control.reset_counters()
    assert synced.notify(token="a-token-from-before-a-renewal").status_code == 403
    assert synced.notify(resource_id="another-resource").status_code == 403
    assert google.control.counters()["total"] == 0
    assert _spent(synced, before)["commits"] == 0
    assert not _lease_held(synced)()


def test_a_410_after_a_page_planned_on_the_first_read_resyncs_in_full(synced: SyncedUser, google: Any) -> None:
    """Page 1 planned on the batchGet's documents (nothing committed yet), then Google answers 410 for page 2: the
    uncommitted page is dropped, the full list that follows covers it."""
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
            assert page.page is not None
            page.page.pop("nextSyncToken", None)
            page.page["nextPageToken"] = "page-2"  # as a long incremental list has
            google.control.inject_fault(LIST, 410, "fullSyncRequired", message="gone", count=1)
            report = pull_calendar(
                ctx, synced.user_id, synced.calendar_id, reason="webhook", prefetched=state, first_page=page
            )
        finally:
            early.release()
    finally:
        google.control.resume_delivery()
        synced.flush()
    assert report.outcome == "ok" and report.resynced_after_410
    assert synced.by_google_id(created["id"]).title == "v2"
    assert len(synced.events()) == 1
