"""The issue's case through the stand-in and the emulator: a Google user moves a meeting to another room while a CRM
user renames it. Both edits survive, whichever function meets the conflict first: the push (its If-Match patch gets
412 `conditionNotMet`, it fetches Google's version, merges into the CRM event, and that write's trigger pushes) or the
pull (Google's change meets the unpushed CRM edit). The push runs through the served `push_event` CloudEvent
function; the pull is the real engine.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.gcal.wire import content_hash, has_unpushed_change
from shared.models import SyncState, google_event_id_for_crm
from shared.sync.google_to_crm_run import pull_calendar
from shared.sync.merge import base_of
from tests.fixtures.sync import connect_user
from tests.push.helpers import EMAIL, OWNER, crm_event, edit, google_writes, save, stored_google_event, trigger

GID = google_event_id_for_crm("crm-1")
ROOM = "Room 7 (moved in Google)"
TITLE = "Renamed in the CRM"


@pytest.fixture
def synced_owner(app_context: Any, google: Any) -> Any:
    return connect_user(app_context, google, OWNER, EMAIL, enable_calendars=(EMAIL,))


def in_sync_meeting(ctx: Any, google: Any, push_fn: Any) -> dict[str, Any]:
    """A CRM meeting pushed to Google, the calendar's sync token taken; returns Google's copy."""
    save(ctx, crm_event())
    trigger(push_fn, ctx, "crm-1")
    pull_calendar(ctx, OWNER, EMAIL)
    doc = ctx.store.get_event("crm-1")
    assert doc.sync.base == base_of(doc)  # the push stored the base with its write-back
    stored = stored_google_event(google, EMAIL, GID)
    assert stored is not None
    return stored


def assert_both_edits_everywhere(ctx: Any, google: Any) -> Any:
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["summary"] == TITLE and stored["location"] == ROOM
    doc = ctx.store.get_event("crm-1")
    assert doc.title == TITLE and doc.location == ROOM
    assert doc.meta.deal_id == "deal-7"
    assert doc.google.etag == stored["etag"] and doc.sync.state == SyncState.SYNCED
    assert not has_unpushed_change(doc) and doc.sync.content_hash == content_hash(doc)
    assert doc.sync.base == base_of(doc)
    decision = doc.sync.decisions[-1]
    assert sorted(decision.fields_merged) == ["location", "title"] and decision.fields_decided == []
    return doc


def test_push_meets_the_412_first_and_merges(app_context, google, push_fn, synced_owner) -> None:
    in_sync_meeting(app_context, google, push_fn)
    google.control.edit_event(EMAIL, GID, {"location": ROOM})
    # The CRM edit is the older one: last write wins would have let Google's version take the title back.
    edit(app_context, "crm-1", title=TITLE, updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    # The 412 and the fetch; the merge goes into the CRM first (pending, linked to Google's version), Google unwritten.
    assert google.control.counters()["by_method"] == {"calendar.events.patch": 1, "calendar.events.get": 1}
    merged = app_context.store.get_event("crm-1")
    assert merged.title == TITLE and merged.location == ROOM and merged.sync.state == SyncState.PENDING
    assert stored_google_event(google, EMAIL, GID)["summary"] != TITLE
    trigger(push_fn, app_context, "crm-1")  # the merge's own trigger pushes the CRM's side, If-Match Google's etag
    trigger(push_fn, app_context, "crm-1")  # our write-back's own trigger: nothing more

    assert google.control.counters()["by_method"] == {"calendar.events.patch": 2, "calendar.events.get": 1}
    doc = assert_both_edits_everywhere(app_context, google)

    # Google's notification of our merged patch: no CRM write, no Google write.
    before = app_context.store.event_ref("crm-1").get().update_time
    writes = google_writes(google.control.counters())
    pull_calendar(app_context, OWNER, EMAIL)
    assert app_context.store.event_ref("crm-1").get().update_time == before
    assert google_writes(google.control.counters()) == writes
    assert app_context.store.get_event("crm-1").sync.decisions == doc.sync.decisions


def test_pull_meets_the_unpushed_edit_first_and_merges(app_context, google, push_fn, synced_owner) -> None:
    in_sync_meeting(app_context, google, push_fn)
    edit(app_context, "crm-1", title=TITLE, updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    google.control.edit_event(EMAIL, GID, {"location": ROOM})
    google.control.reset_counters()

    pull_calendar(app_context, OWNER, EMAIL)  # before the CRM trigger ran
    doc = app_context.store.get_event("crm-1")
    assert doc.title == TITLE and doc.location == ROOM and has_unpushed_change(doc)
    assert google_writes(google.control.counters()) == 0

    trigger(push_fn, app_context, "crm-1")  # the CRM edit's trigger (or the pull's write's): one If-Match patch
    trigger(push_fn, app_context, "crm-1")
    assert google.control.counters()["by_method"].get("calendar.events.patch") == 1
    assert "calendar.events.get" not in google.control.counters()["by_method"]  # no 412: the etag was Google's
    assert_both_edits_everywhere(app_context, google)

    before = app_context.store.event_ref("crm-1").get().update_time
    pull_calendar(app_context, OWNER, EMAIL)
    assert app_context.store.event_ref("crm-1").get().update_time == before
    assert google_writes(google.control.counters()) == 1
