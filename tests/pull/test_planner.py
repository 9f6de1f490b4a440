"""Unit tests of the pure pull planner: no I/O, Google changes as dicts, stored state as CrmEvents."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.gcal.wire import content_hash, has_unpushed_change, new_crm_event_from_google
from shared.models import CrmEvent, CrmMeta, EventTime, GoogleLink, SyncInfo, crm_event_id_for_google
from shared.sync.google_to_crm_plan import (
    CreateFromGoogle,
    KeepLocal,
    RemoveMissing,
    SkipEcho,
    TombstoneFromGoogle,
    UpdateFromGoogle,
    apply_plan,
    plan_pull,
)

CAL = "alice@example.com"
OWNER = "user-1"
NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def g_event(event_id: str, etag: str = '"1"', *, updated: str = "2025-03-01T10:00:00.000Z", **extra: Any) -> dict:
    body = {
        "kind": "calendar#event",
        "id": event_id,
        "etag": etag,
        "status": "confirmed",
        "summary": f"Meeting {event_id}",
        "start": {"dateTime": "2025-03-02T09:00:00Z"},
        "end": {"dateTime": "2025-03-02T10:00:00Z"},
        "updated": updated,
        "iCalUID": f"{event_id}@google.com",
    }
    body.update(extra)
    return body


def stored_from(google: dict, **update: Any) -> CrmEvent:
    event = new_crm_event_from_google(google, CAL, OWNER, NOW - dt.timedelta(days=1))
    return event.model_copy(update=update) if update else event


def plan(changes: list[dict], stored: dict[str, CrmEvent], *, full: bool = False) -> list:
    return plan_pull(changes, stored, calendar_id=CAL, owner_id=OWNER, now=NOW, full=full)


def test_new_google_event_creates_with_derived_id_and_echo_hash() -> None:
    [action] = plan([g_event("abc")], {})
    assert isinstance(action, CreateFromGoogle)
    assert action.crm_id == crm_event_id_for_google(CAL, "abc")
    assert action.after.sync.content_hash == content_hash(action.after)
    assert not has_unpushed_change(action.after)
    assert action.after.google is not None and action.after.google.etag == '"1"'


def test_same_etag_is_an_echo() -> None:
    google = g_event("abc")
    stored = stored_from(google)
    [action] = plan([google], {stored.id: stored})
    assert isinstance(action, SkipEcho)


def test_new_etag_same_content_updates_only_the_link() -> None:
    google = g_event("abc")
    stored = stored_from(google)
    [action] = plan([g_event("abc", '"2"')], {stored.id: stored})
    assert isinstance(action, UpdateFromGoogle)
    assert not action.content_changed
    assert action.after.google.etag == '"2"'
    assert content_hash(action.after) == content_hash(stored)


def test_google_edit_updates_content_and_keeps_crm_metadata() -> None:
    google = g_event("abc")
    meta = CrmMeta(deal_id="deal-9", company_id="co-1", kind="demo")
    stored = stored_from(google, meta=meta)
    edited = g_event("abc", '"2"', summary="Renamed", location="Room 5", updated="2025-03-01T11:00:00.000Z")
    # Google cannot overwrite CRM metadata even when its private properties say otherwise.
    edited["extendedProperties"] = {"private": {"crmDealId": "evil"}}
    [action] = plan([edited], {stored.id: stored})
    assert isinstance(action, UpdateFromGoogle)
    assert action.content_changed
    assert action.after.title == "Renamed"
    assert action.after.location == "Room 5"
    assert action.after.meta == meta
    assert action.after.sync.content_hash == content_hash(action.after)


def test_cancelled_event_becomes_tombstone() -> None:
    google = g_event("abc")
    stored = stored_from(google)
    [action] = plan([{"id": "abc", "status": "cancelled", "etag": '"3"'}], {stored.id: stored})
    assert isinstance(action, TombstoneFromGoogle)
    assert action.after.deleted
    assert action.after.purge_at is not None
    assert action.after.title == stored.title  # the tombstone keeps the content
    assert not has_unpushed_change(action.after)


def test_cancelled_unknown_event_is_skipped() -> None:
    [action] = plan([{"id": "zzz", "status": "cancelled"}], {})
    assert isinstance(action, SkipEcho)


def test_cancelled_instance_becomes_cancelled_exception_of_its_series() -> None:
    master = g_event("series1", recurrence=["RRULE:FREQ=DAILY;COUNT=5"])
    master_stored = stored_from(master)
    cancelled = {
        "id": "series1_20250303T090000Z",
        "status": "cancelled",
        "etag": '"7"',
        "recurringEventId": "series1",
        "originalStartTime": {"dateTime": "2025-03-03T09:00:00Z"},
    }
    [action] = plan([cancelled], {master_stored.id: master_stored})
    assert isinstance(action, CreateFromGoogle)
    exception = action.after
    assert exception.status == "cancelled"
    assert not exception.deleted
    assert exception.series is not None
    assert exception.series.recurring_event_id == "series1"
    assert exception.series.series_crm_id == master_stored.id
    assert exception.series.original_start.date_time == "2025-03-03T09:00:00Z"
    assert exception.title == master_stored.title


def test_modified_instance_of_a_crm_series_links_to_the_crm_master() -> None:
    # A series created by the CRM: its CRM id is not derived; instances inherit its private properties.
    master_google = g_event("crmseries", extendedProperties={"private": {"crmEventId": "crm-42"}})
    master = stored_from(master_google).model_copy(update={"id": "crm-42"})
    instance = g_event(
        "crmseries_20250303T090000Z",
        '"9"',
        recurringEventId="crmseries",
        originalStartTime={"dateTime": "2025-03-03T09:00:00Z"},
        summary="Moved",
        extendedProperties={"private": {"crmEventId": "crm-42"}},
    )
    [action] = plan([instance], {"crm-42": master})
    # Not matched to the master (inherited crmEventId): a new exception linked to the CRM series.
    assert isinstance(action, CreateFromGoogle)
    assert action.crm_id == crm_event_id_for_google(CAL, "crmseries_20250303T090000Z")
    assert action.after.series.series_crm_id == "crm-42"


def test_crm_created_event_matched_by_crm_id_before_link_write_back() -> None:
    """The push engine inserted it in Google but its write-back has not landed: same content -> adopt the link."""
    google = g_event("b32id", extendedProperties={"private": {"crmEventId": "crm-1"}})
    local = stored_from(google).model_copy(update={"id": "crm-1", "google": None, "sync": SyncInfo()})
    assert has_unpushed_change(local)
    [action] = plan([google], {"crm-1": local})
    assert isinstance(action, UpdateFromGoogle)
    assert action.crm_id == "crm-1"
    assert not action.content_changed
    assert action.after.google.event_id == "b32id"
    assert not has_unpushed_change(action.after)


def _local_edit(stored: CrmEvent, title: str, at: dt.datetime) -> CrmEvent:
    # A CRM edit not yet pushed: content changed, content_hash still the synced one.
    return stored.model_copy(update={"title": title, "updated_at": at})


def test_conflict_crm_newer_keeps_local_and_records_decision() -> None:
    google = g_event("abc")
    stored = _local_edit(stored_from(google), "CRM title", dt.datetime(2025, 3, 1, 11, 30, tzinfo=dt.UTC))
    edited = g_event("abc", '"2"', summary="Google title", updated="2025-03-01T11:00:00.000Z")
    [action] = plan([edited], {stored.id: stored})
    assert isinstance(action, KeepLocal)
    assert action.after.title == "CRM title"
    assert has_unpushed_change(action.after)  # the push engine still sees the edit
    assert action.after.google.etag == '"2"'
    assert action.after.sync.decisions[-1].winner == "crm"


def test_conflict_google_newer_takes_google_and_records_decision() -> None:
    google = g_event("abc")
    stored = _local_edit(stored_from(google), "CRM title", dt.datetime(2025, 3, 1, 10, 30, tzinfo=dt.UTC))
    edited = g_event("abc", '"2"', summary="Google title", updated="2025-03-01T11:00:00.000Z")
    [action] = plan([edited], {stored.id: stored})
    assert isinstance(action, UpdateFromGoogle)
    assert action.after.title == "Google title"
    assert action.decision is not None and action.decision.winner == "google"
    assert action.after.sync.decisions[-1].winner == "google"
    assert not has_unpushed_change(action.after)


def test_decisions_are_bounded() -> None:
    google = g_event("abc")
    stored = stored_from(google)
    for n in range(15):
        stored = _local_edit(stored, f"CRM {n}", dt.datetime(2025, 3, 1, 11, 30, tzinfo=dt.UTC))
        [action] = plan([g_event("abc", f'"{n + 2}"', summary=f"G {n}")], {stored.id: stored})
        stored = action.after
    assert len(stored.sync.decisions) == 10


def test_full_sync_removes_linked_events_gone_from_google_but_not_pending_ones() -> None:
    kept = stored_from(g_event("keep"))
    gone = stored_from(g_event("gone"))
    pending = CrmEvent(
        id="crm-new",
        owner_id=OWNER,
        title="not pushed yet",
        start=EventTime(date="2025-03-05"),
        end=EventTime(date="2025-03-06"),
    )
    other_calendar = stored_from(g_event("other")).model_copy(
        update={"google": GoogleLink(calendar_id="other@x", event_id="other", etag='"1"')}
    )
    stored = {e.id: e for e in (kept, gone, pending, other_calendar)}
    actions = plan([g_event("keep")], stored, full=True)
    removed = [a for a in actions if isinstance(a, RemoveMissing)]
    assert [a.crm_id for a in removed] == [gone.id]
    assert removed[0].after.deleted


def test_full_sync_matches_by_link_and_never_duplicates() -> None:
    google = g_event("b32id", '"5"', extendedProperties={"private": {"crmEventId": "crm-7"}})
    crm = stored_from(google).model_copy(update={"id": "crm-7"})
    actions = plan([google, g_event("new1")], {"crm-7": crm}, full=True)
    kinds = {type(a) for a in actions}
    assert CreateFromGoogle in kinds
    creates = [a for a in actions if isinstance(a, CreateFromGoogle)]
    assert [a.google_id for a in creates] == ["new1"]


def test_duplicate_change_in_one_batch_is_applied_once() -> None:
    actions = plan([g_event("abc"), g_event("abc")], {})
    assert isinstance(actions[0], CreateFromGoogle)
    assert isinstance(actions[1], SkipEcho)


# --- properties -------------------------------------------------------------------------------------------------------
IDS = st.sampled_from(["a1", "a2", "b3", "c4", "d5"])


@st.composite
def google_change(draw: st.DrawFn) -> dict:
    event_id = draw(IDS)
    if draw(st.booleans()) and draw(st.booleans()):
        return {"id": event_id, "status": "cancelled", "etag": f'"c{draw(st.integers(1, 4))}"'}
    minute = draw(st.integers(0, 59))
    summary = draw(st.sampled_from(["x", "y", "z"]))
    # Etags identify versions: equal etag, equal content (as in Google).
    return g_event(event_id, f'"{summary}{minute}"', summary=summary, updated=f"2025-03-01T10:{minute:02d}:00.000Z")


@st.composite
def stored_state(draw: st.DrawFn) -> dict[str, CrmEvent]:
    stored: dict[str, CrmEvent] = {}
    for event_id in draw(st.lists(IDS, unique=True, max_size=5)):
        event = stored_from(g_event(event_id, f'"{draw(st.integers(1, 4))}"', summary=draw(st.sampled_from("xy"))))
        if draw(st.booleans()):
            minute = draw(st.integers(0, 59))
            event = _local_edit(event, "local", dt.datetime(2025, 3, 1, 10, minute, tzinfo=dt.UTC))
        if draw(st.integers(0, 4)) == 0:
            event = event.model_copy(update={"deleted": True, "deleted_at": NOW})
        stored[event.id] = event
    return stored


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored=stored_state(), changes=st.lists(google_change(), max_size=8), full=st.booleans())
def test_applying_the_plan_twice_changes_nothing(stored: dict, changes: list, full: bool) -> None:
    # One list result holds each event once (its latest version), as Google's does.
    latest = list({c["id"]: c for c in changes}.values())
    once = apply_plan(stored, plan(latest, stored, full=full))
    again = plan(latest, once, full=full)
    assert all(isinstance(a, SkipEcho) for a in again), again
    # The same list delivered twice more (duplicated notifications re-list it) still changes nothing.
    assert apply_plan(once, again) == once


@settings(max_examples=200, deadline=None)
@given(stored=stored_state(), changes=st.lists(google_change(), max_size=8), full=st.booleans())
def test_no_duplicates_one_crm_event_per_google_event(stored: dict, changes: list, full: bool) -> None:
    result = apply_plan(stored, plan(changes, stored, full=full))
    linked = [e.google.event_id for e in result.values() if e.google is not None]
    assert len(linked) == len(set(linked))
    for event in result.values():
        assert event.owner_id == OWNER


@settings(max_examples=200, deadline=None)
@given(stored=stored_state(), changes=st.lists(google_change(), max_size=8))
def test_pull_writes_are_never_pushed_back_except_kept_local_edits(stored: dict, changes: list) -> None:
    for action in plan(changes, stored):
        if isinstance(action, SkipEcho):
            continue
        if isinstance(action, KeepLocal):
            assert has_unpushed_change(action.after)
        else:
            assert not has_unpushed_change(action.after)
