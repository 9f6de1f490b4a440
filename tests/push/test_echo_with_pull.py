"""No echo in either direction, with the real pull engine (shared.sync.google_to_crm_run) next to the push trigger."""

from __future__ import annotations

from typing import Any

import pytest

from shared.models import google_event_id_for_crm
from tests.fixtures.sync import connect_user
from tests.push.helpers import EMAIL, OWNER, crm_event, edit, google_writes, save, stored_google_event, trigger

pull = pytest.importorskip("shared.sync.google_to_crm_run")
GID = google_event_id_for_crm("crm-1")


@pytest.fixture
def synced_owner(app_context: Any, google: Any) -> Any:
    return connect_user(app_context, google, OWNER, EMAIL, enable_calendars=(EMAIL,))


def test_one_crm_edit_one_google_write_zero_crm_writes(app_context, google, push_fn, synced_owner) -> None:
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")
    pull.pull_calendar(app_context, OWNER, EMAIL)  # initial sync token (our own event is skipped by etag)
    google.control.reset_counters()

    edit(app_context, "crm-1", title="Edited in the CRM")
    trigger(push_fn, app_context, "crm-1")  # the edit
    trigger(push_fn, app_context, "crm-1")  # our write-back
    before = app_context.store.event_ref("crm-1").get().update_time
    pull.pull_calendar(app_context, OWNER, EMAIL)  # what Google's notification of our write causes
    trigger(push_fn, app_context, "crm-1")  # (a redelivered trigger changes nothing either)

    assert google_writes(google.control.counters()) == 1
    assert app_context.store.event_ref("crm-1").get().update_time == before  # zero CRM writes from the echo


def test_one_google_edit_one_crm_write_zero_google_writes(app_context, google, push_fn, synced_owner) -> None:
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")
    pull.pull_calendar(app_context, OWNER, EMAIL)
    google.control.edit_event(EMAIL, GID, {"summary": "Edited in Google"})
    google.control.reset_counters()

    pull.pull_calendar(app_context, OWNER, EMAIL)
    doc = app_context.store.get_event("crm-1")
    assert doc.title == "Edited in Google"
    trigger(push_fn, app_context, "crm-1")  # the pull's CRM write fires the push trigger
    assert google_writes(google.control.counters()) == 0
    assert stored_google_event(google, EMAIL, GID)["summary"] == "Edited in Google"
