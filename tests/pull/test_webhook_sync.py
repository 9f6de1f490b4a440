"""Google -> CRM over real HTTP: the stand-in notifies the served webhook, which pulls into the emulator."""

from __future__ import annotations

from typing import Any

from shared.gcal.wire import has_unpushed_change
from shared.models import CrmMeta
from tests.pull.conftest import SyncedUser

TIMED = {
    "summary": "Quarterly review",
    "description": "Bring numbers",
    "location": "Room 4",
    "start": {"dateTime": "2025-06-02T09:00:00+02:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2025-06-02T10:30:00+02:00", "timeZone": "Europe/Berlin"},
}


def _list_calls(google: Any) -> int:
    return int(google.control.counters()["by_method"].get("calendar.events.list", 0))


def _write_calls(google: Any) -> int:
    methods = google.control.counters()["by_method"]
    return sum(int(v) for k, v in methods.items() if k.split(".")[-1] in ("insert", "patch", "update", "delete"))


def test_create_edit_delete_in_google_lands_in_crm(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, TIMED)
    synced.flush()
    event = synced.by_google_id(created["id"])
    assert event.title == "Quarterly review"
    assert event.description == "Bring numbers"
    assert event.location == "Room 4"
    assert event.start.time_zone == "Europe/Berlin"
    assert event.start.instant().isoformat() == "2025-06-02T07:00:00+00:00"
    assert event.google.etag == created["etag"]
    assert event.sync.origin == "google"
    assert not has_unpushed_change(event)  # the push trigger sees nothing to push (no echo)

    edited = google.control.edit_event(
        synced.email, created["id"], {"summary": "Quarterly review (moved)", "location": "Room 9"}
    )
    synced.flush()
    event = synced.by_google_id(created["id"])
    assert event.title == "Quarterly review (moved)"
    assert event.location == "Room 9"
    assert event.google.etag == edited["etag"]

    google.control.delete_event(synced.email, created["id"])
    synced.flush()
    event = synced.by_google_id(created["id"])
    assert event.deleted
    assert event.purge_at is not None
    assert not has_unpushed_change(event)
    assert _write_calls(google) == 0  # a Google edit causes zero Google writes
    cal = synced.calendar()
    assert cal.last_notification_at is not None
    assert cal.last_sync_at is not None and cal.pull_due_at is not None


def test_all_day_and_time_zoned_events(synced: SyncedUser, google: Any) -> None:
    all_day = google.control.create_event(
        synced.email, {"summary": "Offsite", "start": {"date": "2025-07-01"}, "end": {"date": "2025-07-03"}}
    )
    tokyo = google.control.create_event(
        synced.email,
        {
            "summary": "Tokyo call",
            "start": {"dateTime": "2025-07-01T18:00:00+09:00", "timeZone": "Asia/Tokyo"},
            "end": {"dateTime": "2025-07-01T19:00:00+09:00", "timeZone": "Asia/Tokyo"},
        },
    )
    synced.flush()
    offsite = synced.by_google_id(all_day["id"])
    assert offsite.start.date == "2025-07-01" and offsite.end.date == "2025-07-03"
    assert offsite.start.is_all_day
    call = synced.by_google_id(tokyo["id"])
    assert call.start.time_zone == "Asia/Tokyo"
    assert call.start.instant().isoformat() == "2025-07-01T09:00:00+00:00"


def test_attendee_replies_update_response_status(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(
        synced.email,
        dict(TIMED, attendees=[{"email": "bob@example.com"}, {"email": "carol@example.com", "optional": True}]),
    )
    synced.flush()
    event = synced.by_google_id(created["id"])
    assert {a.email: a.response_status for a in event.attendees} == {
        "bob@example.com": "needsAction",
        "carol@example.com": "needsAction",
    }
    google.control.reply(synced.email, created["id"], "bob@example.com", "accepted")
    google.control.reply(synced.email, created["id"], "carol@example.com", "declined")
    synced.flush()
    event = synced.by_google_id(created["id"])
    statuses = {a.email: a.response_status for a in event.attendees}
    assert statuses == {"bob@example.com": "accepted", "carol@example.com": "declined"}
    assert [a.optional for a in event.attendees if a.email == "carol@example.com"] == [True]


def test_recurring_series_with_moved_and_cancelled_instances(synced: SyncedUser, google: Any) -> None:
    series = google.control.create_recurring_event(
        synced.email,
        {
            "summary": "Standup",
            "start": {"dateTime": "2025-06-02T09:00:00Z", "timeZone": "UTC"},
            "end": {"dateTime": "2025-06-02T09:15:00Z", "timeZone": "UTC"},
        },
        "FREQ=DAILY;COUNT=5",
    )
    synced.flush()
    master = synced.by_google_id(series["id"])
    assert master.recurrence == ["RRULE:FREQ=DAILY;COUNT=5"]
    assert master.series is None

    moved_id = f"{series['id']}_20250603T090000Z"
    cancelled_id = f"{series['id']}_20250604T090000Z"
    google.control.modify_instance(
        synced.email,
        moved_id,
        {"start": {"dateTime": "2025-06-03T11:00:00Z"}, "end": {"dateTime": "2025-06-03T11:15:00Z"}},
    )
    google.control.cancel_instance(synced.email, cancelled_id)
    synced.flush()

    moved = synced.by_google_id(moved_id)
    assert moved.series is not None
    assert moved.series.recurring_event_id == series["id"]
    assert moved.series.series_crm_id == master.id
    assert moved.series.original_start.instant().isoformat() == "2025-06-03T09:00:00+00:00"
    assert moved.start.instant().isoformat() == "2025-06-03T11:00:00+00:00"
    assert moved.status == "confirmed"

    cancelled = synced.by_google_id(cancelled_id)
    assert cancelled.status == "cancelled"
    assert not cancelled.deleted  # an exception of the series, not a deletion of an event
    assert cancelled.series is not None and cancelled.series.series_crm_id == master.id
    assert cancelled.series.original_start.instant().isoformat() == "2025-06-04T09:00:00+00:00"
    assert cancelled.title == "Standup"

    google.control.delete_event(synced.email, series["id"])
    synced.flush()
    assert synced.by_google_id(series["id"]).deleted
    assert synced.events() == []  # the master and its exceptions are gone from the CRM view


def test_crm_metadata_survives_google_edits(synced: SyncedUser, google: Any) -> None:
    created = google.control.create_event(synced.email, TIMED)
    synced.flush()
    event = synced.by_google_id(created["id"])
    meta = CrmMeta(deal_id="deal-1", company_id="company-2", quote_id="quote-3", kind="demo")
    # The CRM attaches its metadata (as the CRM would, a metadata-only write: no content change).
    synced.ctx.store.update_event(event.id, {"meta": meta.model_dump()})

    google.control.edit_event(
        synced.email,
        created["id"],
        {"summary": "Renamed in Google", "extendedProperties": {"private": {"crmDealId": "hijacked"}}},
    )
    synced.flush()
    event = synced.by_google_id(created["id"])
    assert event.title == "Renamed in Google"
    assert event.meta == meta


def test_sync_message_is_acknowledged_without_a_pull(synced: SyncedUser, google: Any) -> None:
    google.control.reset_counters()
    before = synced.ctx.store.ops["rpcs"]
    response = synced.notify(state="sync")
    assert response.status_code == 200
    assert response.json() == {"status": "acknowledged"}
    assert _list_calls(google) == 0
    assert synced.ctx.store.ops["rpcs"] - before == 1  # the route read only
