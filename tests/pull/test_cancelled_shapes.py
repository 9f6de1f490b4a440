"""Cancelled items in Google's shapes (issue 14 §3), through the stand-in and the emulator.

Google documents only the id of a deleted entry as guaranteed (sync guide "Synchronize resources efficiently"); a
cancelled exception carries id, recurringEventId and originalStartTime (events reference, "Recurring events" guide);
some deleted events are listed with 2000-01-01 placeholder dates (the stand-in's `placeholder_deleted_dates`). None of
these may become a live CRM event, erase what the CRM knew, or bring their placeholder dates into the CRM.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.gcal.wire import new_crm_event_from_google
from shared.models import CrmEvent, crm_event_id_for_google
from shared.sync.google_to_crm_plan import apply_plan, plan_pull
from tests.pull.conftest import SyncedUser, make_synced_user

SERIES = {
    "summary": "Standup",
    "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
    "start": {"dateTime": "2025-06-02T09:00:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2025-06-02T09:15:00", "timeZone": "Europe/Berlin"},
}
SINGLE = {
    "summary": "One-off",
    "start": {"dateTime": "2025-06-03T09:00:00Z"},
    "end": {"dateTime": "2025-06-03T10:00:00Z"},
}


def _instances(google: Any, email: str, series_id: str) -> list[dict[str, Any]]:
    service = google.service_for(email)
    return service.events().instances(calendarId=email, eventId=series_id).execute()["items"]


def _no_placeholder_dates(events: list[CrmEvent]) -> None:
    for event in events:
        for time in (event.start, event.end):
            assert not (time.date or time.date_time or "").startswith("2000-01-01"), event


def _no_orphan_cancellations(user: SyncedUser) -> None:
    """Every cancelled CRM event is an exception of a series the CRM holds, and looks like its series."""
    events = {e.id: e for e in user.all_events()}
    for event in events.values():
        if event.status != "cancelled" or event.deleted:
            continue
        assert event.series is not None, event
        assert event.series.series_crm_id in events, f"cancelled {event.id} of a series the CRM does not have"
        assert event.title, event


def test_minimal_cancellation_keeps_what_the_crm_knew(synced: SyncedUser, google: Any) -> None:
    series = google.control.create_event(synced.email, SERIES)
    synced.flush()
    instances = _instances(google, synced.email, series["id"])
    google.control.modify_instance(synced.email, instances[1]["id"], {"summary": "Standup (moved room)"})
    synced.flush()
    modified = synced.by_google_id(instances[1]["id"])
    assert modified.google.ical_uid and modified.google.html_link
    google.control.cancel_instance(synced.email, instances[1]["id"])
    synced.flush()
    cancelled = synced.by_google_id(instances[1]["id"])
    assert cancelled.status == "cancelled" and not cancelled.deleted
    assert cancelled.google.ical_uid == modified.google.ical_uid  # not erased by the minimal item
    assert cancelled.google.html_link == modified.google.html_link
    assert cancelled.title == "Standup (moved room)"
    assert cancelled.start == modified.start
    _no_orphan_cancellations(synced)


def test_instances_of_a_deleted_series_never_become_crm_events(synced: SyncedUser, google: Any) -> None:
    series = google.control.create_event(synced.email, SERIES)
    synced.flush()
    instances = _instances(google, synced.email, series["id"])
    google.control.cancel_instance(synced.email, instances[2]["id"])
    google.control.delete_event(synced.email, series["id"])
    google.control.set_options(page_size_cap=1)
    synced.flush()
    live = [e for e in synced.all_events() if not e.deleted]
    assert live == [], live
    _no_placeholder_dates(synced.all_events())


def test_a_split_series_never_seen_leaves_no_orphan(synced: SyncedUser, google: Any) -> None:
    series = google.control.create_event(synced.email, SERIES)
    synced.flush()
    instances = _instances(google, synced.email, series["id"])
    google.control.pause_delivery()
    new = google.control.split_series(synced.email, series["id"], instances[2]["id"], {"summary": "Standup v2"})
    new_instances = _instances(google, synced.email, new["id"])
    google.control.cancel_instance(synced.email, new_instances[0]["id"])
    google.control.delete_event(synced.email, new["id"])  # the _R series is gone before the CRM ever saw it
    google.control.set_options(page_size_cap=1)
    google.control.resume_delivery()
    synced.flush()
    assert not [e for e in synced.all_events() if e.google and e.google.event_id.startswith(new["id"])]
    _no_orphan_cancellations(synced)
    master = synced.by_google_id(series["id"])
    assert master.title == "Standup" and not master.deleted


def test_initial_import_of_deleted_shapes(app_context: Any, google: Any, webhook: Any) -> None:
    """Before the CRM ever synced: deleted events and series (listed with placeholder dates on showDeleted lists),
    a split series' cancelled instances and a cancelled exception of a live series."""
    email = "bob@example.com"
    google.control.set_options(sync_before_response=False)
    google.control.create_account(email)
    gone = google.control.create_event(email, SINGLE)
    google.control.delete_event(email, gone["id"])
    dead = google.control.create_event(email, SERIES)
    dead_instances = _instances(google, email, dead["id"])
    google.control.cancel_instance(email, dead_instances[1]["id"])
    google.control.delete_event(email, dead["id"])
    live = google.control.create_event(email, dict(SERIES, summary="Weekly"))
    live_instances = _instances(google, email, live["id"])
    google.control.cancel_instance(email, live_instances[3]["id"])
    split = google.control.split_series(email, live["id"], live_instances[2]["id"], {"summary": "Weekly v2"})
    split_instances = _instances(google, email, split["id"])
    google.control.cancel_instance(email, split_instances[1]["id"])
    listed = google.service_for(email).events().list(calendarId=email, showDeleted=True).execute()["items"]
    assert any(i["status"] == "cancelled" and i.get("start", {}).get("date") == "2000-01-01" for i in listed) or any(
        i["status"] == "cancelled" and "start" not in i for i in listed
    )

    google.control.set_options(page_size_cap=1)  # one item per page: a series may come pages after its instances
    user = make_synced_user(app_context, google, webhook.url + "/", user_id="user-bob", email=email)
    events = user.all_events()
    _no_placeholder_dates(events)
    _no_orphan_cancellations(user)
    by_google = {e.google.event_id: e for e in events if e.google}
    assert gone["id"] not in by_google and dead["id"] not in by_google
    assert not any(e.series and e.series.recurring_event_id == dead["id"] for e in events)
    assert by_google[live["id"]].title == "Weekly"
    assert by_google[split["id"]].title == "Weekly v2"
    cancelled = by_google[split_instances[1]["id"]]
    assert cancelled.status == "cancelled" and cancelled.series.series_crm_id == by_google[split["id"]].id
    assert cancelled.start.date_time and cancelled.start.instant() == by_google[split["id"]].start.instant().replace(
        day=cancelled.start.instant().day
    )


# --- the planner alone, on the shapes Google sends ------------------------------------------------------------------
CAL = "alice@example.com"
NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
MINIMAL = {
    "kind": "calendar#event",
    "etag": '"3"',
    "id": "abc123_R20250604T070000_20250605T070000Z",
    "status": "cancelled",
    "recurringEventId": "abc123_R20250604T070000",
    "originalStartTime": {"dateTime": "2025-06-05T09:00:00+02:00", "timeZone": "Europe/Berlin"},
}
PLACEHOLDER = {
    "kind": "calendar#event",
    "etag": '"4"',
    "id": "series1_20250603T070000Z",
    "status": "cancelled",
    "recurringEventId": "series1",
    "originalStartTime": {"dateTime": "2025-06-03T09:00:00+02:00"},
    "start": {"date": "2000-01-01"},
    "end": {"date": "2000-01-02"},
    "summary": "",
}
MASTER = {
    "kind": "calendar#event",
    "etag": '"1"',
    "id": "series1",
    "status": "confirmed",
    "summary": "Standup",
    "iCalUID": "series1@google.com",
    "updated": "2025-02-01T00:00:00Z",
    "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
    "start": {"dateTime": "2025-06-02T09:00:00+02:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2025-06-02T09:15:00+02:00", "timeZone": "Europe/Berlin"},
}


def test_planner_skips_a_cancelled_instance_of_an_unknown_series() -> None:
    for full in (True, False):
        actions = plan_pull([MINIMAL], {}, calendar_id=CAL, owner_id="u", now=NOW, full=full)
        assert [a.kind for a in actions] == ["skip"]
        assert apply_plan({}, actions) == {}


def test_planner_waits_for_a_series_listed_after_its_cancelled_instance() -> None:
    actions = plan_pull([PLACEHOLDER, MASTER], {}, calendar_id=CAL, owner_id="u", now=NOW, full=True)
    state = apply_plan({}, actions)
    master = state[crm_event_id_for_google(CAL, "series1")]
    cancelled = state[crm_event_id_for_google(CAL, PLACEHOLDER["id"])]
    assert cancelled.status == "cancelled" and cancelled.series.series_crm_id == master.id
    assert cancelled.title == "Standup"
    assert cancelled.start.date is None and cancelled.start.instant() == dt.datetime(2025, 6, 3, 7, tzinfo=dt.UTC)
    assert cancelled.end == cancelled.start  # its original slot, never the 2000-01-01 placeholder


def test_planner_never_takes_placeholder_dates_onto_a_known_event() -> None:
    stored = new_crm_event_from_google(
        dict(MASTER, id=PLACEHOLDER["id"], recurringEventId="series1", recurrence=None, etag='"2"'), CAL, "u", NOW
    )
    master = new_crm_event_from_google(MASTER, CAL, "u", NOW)
    state = {stored.id: stored, master.id: master}
    [action] = plan_pull([PLACEHOLDER], state, calendar_id=CAL, owner_id="u", now=NOW, full=False)
    after = apply_plan(state, [action])[stored.id]
    assert after.status == "cancelled"
    assert (after.start, after.end) == (stored.start, stored.end)
    assert after.google.ical_uid == stored.google.ical_uid
