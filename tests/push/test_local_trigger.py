"""End to end through the local Eventarc stand-in: Firestore write -> on_snapshot -> CloudEvent -> push -> Google."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from infra.local_trigger import start_local_trigger
from shared.models import SyncState, google_event_id_for_crm
from tests.push.helpers import EMAIL, crm_event, edit, google_writes, save, stored_google_event

GID = google_event_id_for_crm("crm-1")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize(("mode", "content"), [("binary", "json"), ("structured", "protobuf")])
def test_crm_writes_reach_google_through_the_local_trigger(app_context, google, push_fn, owner, mode, content) -> None:
    trigger = start_local_trigger(app_context.settings.project_id, push_fn.url, mode=mode, content=content)
    try:
        save(app_context, crm_event())
        wait_for(lambda: (e := app_context.store.get_event("crm-1")) and e.sync.state == SyncState.SYNCED)
        assert stored_google_event(google, EMAIL, GID)["summary"] == "Demo with ACME"

        edit(app_context, "crm-1", title="Edited in the CRM")
        wait_for(lambda: stored_google_event(google, EMAIL, GID)["summary"] == "Edited in the CRM")
        wait_for(lambda: app_context.store.get_event("crm-1").sync.content_hash is not None)
        wait_for(
            lambda: app_context.store.get_event("crm-1").google.etag == stored_google_event(google, EMAIL, GID)["etag"]
        )
        assert trigger.drain()
        time.sleep(0.3)  # let the trigger of our own write-back arrive and be handled
        assert trigger.drain()
        assert google_writes(google.control.counters()) == 2  # one insert, one patch; the write-backs echo nothing

        app_context.store.event_ref("crm-1").delete()  # a hard delete: the CloudEvent's oldValue carries the link
        wait_for(lambda: stored_google_event(google, EMAIL, GID)["status"] == "cancelled")
        assert trigger.failed == 0 and trigger.delivered >= 4
    finally:
        trigger.stop()
