"""Faults and adversaries over real HTTP: 410, duplicated / reordered / dropped notifications, revoked tokens, spoofed
notifications, bursts, conflicts, echoes and a worker that dies mid-sync."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections import Counter
from typing import Any

import pytest
import requests

import shared.sync.google_to_crm_run as pull_module
from shared.gcal.client import CalendarClient
from shared.gcal.wire import content_hash, crm_to_google, has_unpushed_change, link_from_google
from shared.models import (
    CrmEvent,
    EventTime,
    GoogleLink,
    IntegrationStatus,
    SyncInfo,
    SyncState,
    calendar_key,
    dump_for_firestore,
    google_event_id_for_crm,
    utcnow,
)
from shared.store import SYNC_DIRTY, SYNC_LEASES, FirestoreStore
from shared.sync.coalesce import lease_id
from tests.pull.conftest import SyncedUser

LIST = "calendar.events.list"


def list_calls(google: Any) -> int:
    return int(google.control.counters()["by_method"].get(LIST, 0))


def google_writes(google: Any) -> int:
    methods = google.control.counters()["by_method"]
    return sum(int(v) for k, v in methods.items() if k.rsplit(".", 1)[-1] in ("insert", "patch", "update", "delete"))


def simple(summary: str, day: int = 2) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2025-06-{day:02d}T09:00:00Z"},
        "end": {"dateTime": f"2025-06-{day:02d}T10:00:00Z"},
    }


def assert_no_duplicates(user: SyncedUser) -> None:
    linked = Counter(e.google.event_id for e in user.all_events() if e.google is not None)
    assert all(n == 1 for n in linked.values()), linked


def crm_pushed_event(user: SyncedUser, crm_id: str, title: str) -> CrmEvent:
    """What the push engine leaves behind: a CRM event inserted in Google with the derived id, link stored."""
    event = CrmEvent(
        id=crm_id,
        owner_id=user.user_id,
        title=title,
        start=EventTime(date_time="2025-06-10T08:00:00Z"),
        end=EventTime(date_time="2025-06-10T09:00:00Z"),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    integration = user.ctx.store.get_integration(user.user_id)
    client: CalendarClient = user.ctx.calendar_client(integration)
    body = crm_to_google(event)
    body["id"] = google_event_id_for_crm(crm_id)
    created = client.insert_event(user.calendar_id, body)
    event = event.model_copy(update={"google": link_from_google(created, user.calendar_id)})
    event.sync = SyncInfo(state=SyncState.SYNCED, origin="crm", content_hash=content_hash(event))
    data = dump_for_firestore(event)
    data.pop("id")
    user.ctx.store.event_ref(crm_id).set(data)
    return event


# --- 410 -------------------------------------------------------------------------------------------------------------
def test_410_mid_life_full_resync_no_duplicates_no_lost_edits(synced: SyncedUser, google: Any) -> None:
    keep = google.control.create_event(synced.email, simple("keep"))
    edit_in_google = google.control.create_event(synced.email, simple("before", 3))
    edit_in_crm = google.control.create_event(synced.email, simple("crm will edit", 4))
    synced.flush()
    crm_made = crm_pushed_event(synced, "crm-made-1", "made in the CRM")
    synced.flush()
    # A CRM event linked to a Google event that no longer exists anywhere (its deletion was never seen).
    ghost = CrmEvent(
        id="crm-ghost",
        owner_id=synced.user_id,
        title="ghost",
        start=EventTime(date="2025-06-20"),
        end=EventTime(date="2025-06-21"),
        google=GoogleLink(calendar_id=synced.calendar_id, event_id="ghost000000", etag='"x"'),
    )
    ghost.sync = SyncInfo(state=SyncState.SYNCED, content_hash=content_hash(ghost))
    ghost_data = dump_for_firestore(ghost)
    ghost_data.pop("id")
    synced.ctx.store.event_ref("crm-ghost").set(ghost_data)
    # A CRM edit not yet pushed, newer than anything in Google.
    local = synced.by_google_id(edit_in_crm["id"])
    synced.ctx.store.update_event(
        local.id, {"title": "edited in the CRM", "updated_at": utcnow() + dt.timedelta(hours=1)}
    )
    # A CRM event never pushed (no link): must survive the reconciliation untouched.
    pending = CrmEvent(
        id="crm-pending",
        owner_id=synced.user_id,
        title="pending push",
        start=EventTime(date="2025-06-22"),
        end=EventTime(date="2025-06-23"),
    )
    pending_data = dump_for_firestore(pending)
    pending_data.pop("id")
    synced.ctx.store.event_ref("crm-pending").set(pending_data)

    google.control.invalidate_sync_tokens(synced.email)
    google.control.edit_event(synced.email, edit_in_google["id"], {"summary": "after"})
    new = google.control.create_event(synced.email, simple("new after 410", 5))
    synced.flush()

    assert_no_duplicates(synced)
    assert synced.by_google_id(keep["id"]).title == "keep"
    assert synced.by_google_id(edit_in_google["id"]).title == "after"
    assert synced.by_google_id(new["id"]).title == "new after 410"
    kept = synced.by_google_id(edit_in_crm["id"])
    assert kept.title == "edited in the CRM"  # the unpushed CRM edit is not lost
    assert has_unpushed_change(kept)  # ... and still waits for the push engine
    crm = synced.ctx.store.get_event("crm-made-1")
    assert crm is not None and not crm.deleted and crm.title == crm_made.title
    assert synced.ctx.store.get_event("crm-ghost").deleted  # reconciled away: not in Google
    survivor = synced.ctx.store.get_event("crm-pending")
    assert survivor is not None and not survivor.deleted
    cal = synced.calendar()
    assert cal.import_progress.state == "done"
    assert cal.counters.get("full_syncs", 0) >= 2  # the initial import and the 410 resync
    assert google_writes(google) == 1  # only our own simulated push insert


# --- duplicated, reordered, dropped ---------------------------------------------------------------------------------
def test_duplicated_notifications_apply_once(synced: SyncedUser, google: Any) -> None:
    google.control.duplicate_notifications(3)
    created = google.control.create_event(synced.email, simple("dup"))
    synced.flush()
    assert synced.by_google_id(created["id"]).title == "dup"
    assert_no_duplicates(synced)


def test_reordered_notifications_converge_to_the_latest(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, simple("v1"))
    synced.flush()
    google.control.hold_notifications()
    for version in ("v2", "v3", "v4"):
        google.control.edit_event(synced.email, created["id"], {"summary": version})
    google.control.release_notifications(order="reverse")
    google.control.configure_push(hold=False)
    synced.flush()
    assert synced.by_google_id(created["id"]).title == "v4"
    assert_no_duplicates(synced)


def test_dropped_notification_is_caught_up_by_the_next_one_or_the_cron(synced: SyncedUser, google: Any) -> None:
    google.control.drop_notifications(next_n=1)
    lost = google.control.create_event(synced.email, simple("dropped"))
    synced.flush()
    assert not [e for e in synced.all_events() if e.google and e.google.event_id == lost["id"]]
    # The cron's stale-calendar pull (the lifecycle calls request_pull) catches it up from the stored token.
    outcome = synced.pull(reason="stale_sync")
    assert outcome.ran and outcome.report.counts.get("create") == 1
    assert synced.by_google_id(lost["id"]).title == "dropped"
    google.control.drop_notifications(next_n=1)
    google.control.edit_event(synced.email, lost["id"], {"summary": "edit 1 (dropped)"})
    google.control.edit_event(synced.email, lost["id"], {"summary": "edit 2"})
    synced.flush()
    assert synced.by_google_id(lost["id"]).title == "edit 2"


# --- needs_reauth ---------------------------------------------------------------------------------------------------
def test_revoked_token_marks_needs_reauth_and_stops_google_calls(synced: SyncedUser, google: Any) -> None:
    integration = synced.ctx.store.get_integration(synced.user_id)
    refresh_token = synced.ctx.cipher.decrypt(integration.refresh_token_ciphertext, owner=synced.user_id)
    google.control.revoke_token(refresh_token)
    google.control.expire_access_tokens()
    google.control.create_event(synced.email, simple("after revoke"))
    synced.flush()
    integration = synced.ctx.store.get_integration(synced.user_id)
    assert integration.status == IntegrationStatus.NEEDS_REAUTH
    assert integration.reauth_reason

    google.control.reset_counters()
    response = synced.notify()
    assert response.status_code == 200
    assert response.json()["status"] == "needs_reauth"
    assert google.control.counters()["total"] == 0  # no Google call while needs_reauth


# --- spoofing -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"channel_id": "00000000-0000-0000-0000-000000000000"}, 404),
        ({"token": "not-the-token"}, 403),
        ({"token": None}, 403),
        ({"resource_id": "some-other-resource"}, 403),
        ({"X-Goog-Message-Number": "zero"}, 400),
        ({"X-Goog-Resource-State": "bogus"}, 400),
        ({"channel_id": None}, 400),
    ],
)
def test_spoofed_notifications_change_nothing(
    synced: SyncedUser, google: Any, overrides: dict[str, Any], status: int
) -> None:
    google.control.create_event(synced.email, simple("would be pulled"))  # a real change is waiting
    synced.flush()
    google.control.reset_counters()
    ops_before = dict(synced.ctx.store.ops)
    response = synced.notify(**overrides)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"]
    assert google.control.counters()["total"] == 0
    ops = synced.ctx.store.ops
    assert ops["writes"] == ops_before.get("writes", 0)
    assert ops["rpcs"] - ops_before.get("rpcs", 0) <= 1  # at most the route read
    assert "user" not in response.text  # nothing about the channel's owner leaks to the caller


def test_stopped_and_expired_channels_are_gone(synced: SyncedUser, google: Any) -> None:
    store = synced.ctx.store
    store.update_channel_route(synced.channel_id, {"state": "stopped"})
    google.control.reset_counters()
    assert synced.notify().status_code == 410
    store.update_channel_route(synced.channel_id, {"state": "active", "expiration": utcnow() - dt.timedelta(minutes=1)})
    writes = store.ops["writes"]
    assert synced.notify().status_code == 410
    assert store.ops["writes"] == writes
    assert google.control.counters()["total"] == 0


def test_body_and_method_are_checked(synced: SyncedUser) -> None:
    headers = {
        "X-Goog-Channel-ID": synced.channel_id,
        "X-Goog-Message-Number": "3",
        "X-Goog-Resource-ID": synced.resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
        "X-Goog-Channel-Token": synced.token,
    }
    assert requests.post(synced.webhook_url, headers=headers, data=b'{"a":1}', timeout=10).status_code == 400
    assert requests.get(synced.webhook_url, headers=headers, timeout=10).status_code == 405


# --- bursts ---------------------------------------------------------------------------------------------------------
def test_burst_of_100_notifications_is_coalesced(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, simple("burst"))
    synced.flush()
    google.control.edit_event(synced.email, created["id"], {"summary": "burst edited"})
    synced.flush()
    google.control.reset_counters()
    # One process serves the webhook here (GIL): 100 requests take ~1.5 s end to end on an idle machine and twice that
    # on a loaded one, so the pull is made slow enough (list latency) for the burst to land while its runs go on, as
    # it does in production where instances run in parallel.
    google.control.set_latency(LIST, 3.0)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(lambda _: synced.notify().status_code, range(100)))
    finally:
        google.control.set_latency(LIST, 0)
    counts = Counter(statuses)
    assert set(counts) <= {200, 202}, counts
    assert list_calls(google) <= 3, google.control.counters()["by_method"]
    assert counts[202] >= 90
    assert synced.by_google_id(created["id"]).title == "burst edited"
    lease_ref = synced.ctx.store.db.collection(SYNC_LEASES).document(lease_id(synced.user_id, synced.calendar_id))
    assert not lease_ref.get().exists  # released
    dirty_ref = synced.ctx.store.db.collection(SYNC_DIRTY).document(lease_id(synced.user_id, synced.calendar_id))
    assert not dirty_ref.get().exists  # consumed by the re-run


# --- conflicts and echoes -------------------------------------------------------------------------------------------
def test_conflict_last_write_wins_both_ways(synced: SyncedUser, google: Any) -> None:
    newer_in_crm = google.control.create_event(synced.email, simple("a"))
    newer_in_google = google.control.create_event(synced.email, simple("b", 3))
    synced.flush()
    store = synced.ctx.store
    crm_a = synced.by_google_id(newer_in_crm["id"])
    crm_b = synced.by_google_id(newer_in_google["id"])
    store.update_event(crm_a.id, {"title": "CRM wins", "updated_at": utcnow() + dt.timedelta(hours=1)})
    store.update_event(crm_b.id, {"title": "CRM loses", "updated_at": utcnow() - dt.timedelta(days=30)})
    google.control.edit_event(synced.email, newer_in_crm["id"], {"summary": "Google loses"})
    google.control.edit_event(synced.email, newer_in_google["id"], {"summary": "Google wins"})
    synced.flush()
    a = synced.by_google_id(newer_in_crm["id"])
    b = synced.by_google_id(newer_in_google["id"])
    assert a.title == "CRM wins" and has_unpushed_change(a)
    assert a.sync.decisions[-1].winner == "crm"
    assert b.title == "Google wins" and not has_unpushed_change(b)
    assert b.sync.decisions[-1].winner == "google"


def test_echo_of_our_own_push_changes_nothing(synced: SyncedUser, google: Any) -> None:
    crm_pushed_event(synced, "crm-echo-1", "pushed by the CRM")
    snapshot_before = synced.ctx.store.event_ref("crm-echo-1").get()
    synced.flush()  # the notification for our own insert
    snapshot_after = synced.ctx.store.event_ref("crm-echo-1").get()
    assert snapshot_after.update_time == snapshot_before.update_time  # no CRM write at all
    assert_no_duplicates(synced)
    assert len(synced.events()) == 1


# --- a worker that dies mid-sync -----------------------------------------------------------------------------------
class WorkerKilled(BaseException):
    """Not an Exception: nothing in the engine catches it, as with a killed process."""


def test_worker_killed_mid_sync_is_completed_by_the_next_notification(
    synced: SyncedUser, google: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    google.control.set_options(page_size_cap=2)
    google.control.pause_delivery()
    ids = [google.control.create_event(synced.email, simple(f"e{n}", 2 + n))["id"] for n in range(5)]
    token_before = synced.calendar().sync_token

    calls = {"n": 0}
    real_list = CalendarClient.list_events_page

    def dying_list(self: CalendarClient, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise WorkerKilled
        return real_list(self, *args, **kwargs)

    # Die on page 3, after committing pages 1-2 (half-applied), leaving the lease behind like a killed process.
    monkeypatch.setattr(CalendarClient, "list_events_page", dying_list)
    monkeypatch.setattr(pull_module, "MAX_BATCH_WRITES", 2)
    monkeypatch.setattr(FirestoreStore, "release_lease", lambda self, lease: None)
    with pytest.raises(WorkerKilled):
        synced.pull(reason="webhook")
    monkeypatch.undo()
    google.control.set_options(page_size_cap=2)

    half = [e for e in synced.all_events() if e.google and e.google.event_id in ids]
    assert 0 < len(half) < 5  # some changes stored ...
    assert synced.calendar().sync_token == token_before  # ... but the token did not advance
    lease_ref = synced.ctx.store.db.collection(SYNC_LEASES).document(lease_id(synced.user_id, synced.calendar_id))
    assert lease_ref.get().exists

    # While the dead holder's lease is live, a notification is queued (202), not run.
    assert synced.notify().status_code == 202
    # Later (past the lease), the next notification takes the lease over and completes the work.
    real_clock = synced.ctx.clock
    synced.ctx.clock = lambda: real_clock() + dt.timedelta(seconds=synced.ctx.settings.sync_lease_seconds + 5)
    try:
        response = synced.notify()
    finally:
        synced.ctx.clock = real_clock
    assert response.status_code == 200, response.text
    for google_id in ids:
        assert synced.by_google_id(google_id).title.startswith("e")
    assert_no_duplicates(synced)
    assert synced.calendar().sync_token != token_before
    assert not lease_ref.get().exists
    google.control.resume_delivery()
    google.control.set_options(page_size_cap=None)


def test_calendar_state_after_a_pull(synced: SyncedUser, google: Any) -> None:
    google.control.create_event(synced.email, simple("x"))
    synced.flush()
    cal = synced.calendar()
    assert cal.sync_token
    assert cal.last_sync_at is not None
    assert cal.pull_due_at == cal.last_sync_at + dt.timedelta(seconds=synced.ctx.settings.stale_sync_seconds)
    assert cal.last_error is None
    assert cal.counters["pulls"] >= 2
    assert synced.ctx.store.get_calendar(synced.user_id, calendar_key(synced.calendar_id)).enabled
