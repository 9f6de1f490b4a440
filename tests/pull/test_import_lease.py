"""A full pull's lease rides in its first batch commit (shared/sync/coalesce.py, `deferred_lease` in
google_to_crm_run.py): no commit of its own, and nothing of the import is stored while another pull holds the lease or
after another pull committed since the calendar was read."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from shared.context import AppContext
from shared.models import calendar_key, utcnow
from shared.store import SYNC_DIRTY, SYNC_LEASES
from shared.sync.coalesce import lease_id
from tests.fixtures.functions import ServedFunction
from tests.pull.conftest import SyncedUser, make_synced_user

LIST = "calendar.events.list"
EVENTS = 600  # more than one commit of 500 writes


def _seed(google: Any, email: str, n: int) -> None:
    def make(i: int) -> None:
        google.control.create_event(
            email,
            {
                "summary": f"imported {i}",
                "start": {"dateTime": f"2025-09-{1 + i % 28:02d}T{i % 20:02d}:00:00Z"},
                "end": {"dateTime": f"2025-09-{1 + i % 28:02d}T{i % 20:02d}:30:00Z"},
            },
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make, range(n)))


def _fresh_user(app_context: AppContext, google: Any, webhook: ServedFunction) -> SyncedUser:
    """Connected and watched, never pulled; Google's notifications held back (the test pulls by hand)."""
    google.control.set_options(sync_before_response=False)
    user = make_synced_user(app_context, google, webhook.url + "/", initial_pull=False)
    google.control.pause_delivery()
    return user


def _refs(user: SyncedUser) -> tuple[Any, Any]:
    db, doc_id = user.ctx.store.db, lease_id(user.user_id, user.calendar_id)
    return db.collection(SYNC_LEASES).document(doc_id), db.collection(SYNC_DIRTY).document(doc_id)


def test_an_import_takes_its_lease_in_its_first_batch_and_never_beside_a_holder(
    app_context: AppContext, google: Any, webhook: ServedFunction
) -> None:
    user = _fresh_user(app_context, google, webhook)
    _seed(google, user.email, EVENTS)
    lease_ref, dirty_ref = _refs(user)
    store = user.ctx.store
    # Another pull holds the lease: the import's first commit fails whole, it queues a full re-run.
    held = store.create_lease(lease_ref, {"user_id": user.user_id, "reason": "other"}, 60, utcnow())
    assert held is not None
    outcome = user.pull(full=True, reason="enable")
    assert outcome.queued
    assert user.events() == []  # nothing of the import was stored
    assert lease_ref.get().to_dict()["holder"] == held.holder  # the holder's lease left alone
    assert (dirty_ref.get().to_dict() or {}).get("full") is True  # the holder runs the import after its own pull

    store.release_lease(held)
    dirty_ref.delete()
    before = store.ops["commits"]
    outcome = user.pull(full=True, reason="enable")
    assert outcome.report is not None and outcome.report.counts.get("create") == EVENTS
    # 600 events + the calendar + the lease's create and release (+ the calendar's precondition): 604 writes, 2
    # commits; a lease taken on its own would make 3.
    assert store.ops["commits"] - before == 2
    assert not lease_ref.get().exists
    assert len(user.events()) == EVENTS


def test_a_small_import_takes_its_lease_alone_first(
    app_context: AppContext, google: Any, webhook: ServedFunction
) -> None:
    user = _fresh_user(app_context, google, webhook)
    _seed(google, user.email, 3)
    store = user.ctx.store
    before = store.ops["commits"]
    outcome = user.pull(full=True, reason="enable")
    assert outcome.report is not None and outcome.report.counts.get("create") == 3
    assert store.ops["commits"] - before == 2  # the lease (one document is never written twice in a commit), then all
    assert not _refs(user)[0].get().exists


def test_a_pull_committed_during_the_import_list_makes_it_start_again_under_its_lease(
    app_context: AppContext, google: Any, webhook: ServedFunction
) -> None:
    user = _fresh_user(app_context, google, webhook)
    _seed(google, user.email, 5)
    store = user.ctx.store
    key = calendar_key(user.calendar_id)
    google.control.reset_counters()
    google.control.set_latency(LIST, 1.5)
    try:
        reads = store.ops["batch_gets"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(user.pull, full=True, reason="enable")
            deadline = time.monotonic() + 10
            while store.ops["batch_gets"] == reads:  # the import has read the calendar; its list is in flight
                assert time.monotonic() < deadline, "the import did not start"
                time.sleep(0.005)
            # As another pull's commit would: the calendar changes after the import read it.
            store.update_calendar(user.user_id, key, {"last_sync_at": utcnow()})
            outcome = running.result(timeout=30)
    finally:
        google.control.set_latency(LIST, 0)
    assert outcome.ran and outcome.report is not None and outcome.report.counts.get("create") == 5
    assert int(google.control.counters()["by_method"].get(LIST, 0)) == 2  # listed again under the lease
    assert len(user.events()) == 5
    assert not _refs(user)[0].get().exists
