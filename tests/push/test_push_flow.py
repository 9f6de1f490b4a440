"""CRM -> Google through the real trigger path: CloudEvents over HTTP to main.push_event, the emulator, the stand-in."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.gcal.wire import content_hash
from shared.models import GoogleLink, IntegrationStatus, SyncState, google_event_id_for_crm
from shared.sync.crm_to_google_plan import STAMP_KEY
from shared.sync.crm_to_google_sweeps import push_due_events
from tests.push.helpers import (
    EMAIL,
    OWNER,
    crm_event,
    edit,
    post_written,
    save,
    stored_google_event,
    trigger,
)

GID = google_event_id_for_crm("crm-1")


def push_new(ctx: Any, push_fn: Any, google: Any, event_id: str = "crm-1", **fields: Any) -> dict[str, Any]:
    save(ctx, crm_event(event_id, **fields))
    trigger(push_fn, ctx, event_id)
    stored = stored_google_event(google, EMAIL, google_event_id_for_crm(event_id))
    assert stored is not None
    return stored


def calls(google: Any) -> dict[str, int]:
    return google.control.counters()["by_method"]


# --- create / edit / delete ---------------------------------------------------------------------------------------
def test_create_round_trip_stores_link_and_is_echo_free(app_context, google, push_fn, owner) -> None:
    event = crm_event(attendees=[{"email": "guest@client.com", "display_name": "Guest"}])
    save(app_context, event)
    trigger(push_fn, app_context, "crm-1")

    stored = stored_google_event(google, EMAIL, GID)
    assert stored is not None and stored["summary"] == "Demo with ACME"
    assert stored["start"] == {"dateTime": "2027-01-05T10:00:00+00:00", "timeZone": "Europe/Paris"}
    private = stored["extendedProperties"]["private"]
    assert private == {
        "crmEventId": "crm-1",
        "crmDealId": "deal-7",
        "crmCompanyId": "acme",
        "crmQuoteId": "q-1",
        "crmKind": "demo",
        STAMP_KEY: content_hash(event),
    }
    doc = app_context.store.get_event("crm-1")
    assert doc.google.event_id == GID and doc.google.calendar_id == EMAIL
    assert doc.google.etag == stored["etag"] and doc.google.updated is not None
    assert doc.sync.state == SyncState.SYNCED and doc.sync.content_hash == content_hash(doc)
    # default sendUpdates "all": the guest got an invitation
    assert google.control.emails(EMAIL, GID)["recipients"] == 1

    # Our bookkeeping write fires the trigger again: nothing to push, nothing written.
    google.control.reset_counters()
    before = app_context.store.event_ref("crm-1").get().update_time
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")  # and a duplicated delivery
    assert google.control.counters()["total"] == 0
    assert app_context.store.event_ref("crm-1").get().update_time == before


def test_edit_is_one_conditional_patch(app_context, google, push_fn, owner) -> None:
    first = push_new(app_context, push_fn, google)
    google.control.reset_counters()
    edit(app_context, "crm-1", title="Renamed", location=None)
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")  # our write-back's own trigger

    assert calls(google) == {"calendar.events.patch": 1}
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["summary"] == "Renamed" and "location" not in stored
    assert stored["etag"] != first["etag"]
    doc = app_context.store.get_event("crm-1")
    assert doc.google.etag == stored["etag"] and doc.sync.state == SyncState.SYNCED


def test_a_crm_metadata_change_alone_reaches_google(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    google.control.reset_counters()
    edit(app_context, "crm-1", meta={"crm_event_id": "crm-1", "deal_id": "deal-42", "kind": "demo"})
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")  # our write-back's own trigger

    assert calls(google) == {"calendar.events.patch": 1}
    private = stored_google_event(google, EMAIL, GID)["extendedProperties"]["private"]
    assert private["crmDealId"] == "deal-42"
    assert private["crmKind"] == "demo"
    assert private["crmEventId"] == "crm-1"


def test_all_fields_all_day_attendees_reminders(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    edit(
        app_context,
        "crm-1",
        start={"date": "2027-02-01", "date_time": None, "time_zone": None},
        end={"date": "2027-02-03", "date_time": None, "time_zone": None},
        attendees=[{"email": "a@client.com", "optional": True, "response_status": "needsAction"}],
        reminders={"use_default": False, "overrides": [{"method": "email", "minutes": 60}]},
        visibility="private",
        transparency="transparent",
        status="tentative",
    )
    trigger(push_fn, app_context, "crm-1")
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["start"] == {"date": "2027-02-01"} and stored["end"] == {"date": "2027-02-03"}
    assert stored["attendees"][0]["email"] == "a@client.com" and stored["attendees"][0]["optional"] is True
    assert stored["reminders"] == {"useDefault": False, "overrides": [{"method": "email", "minutes": 60}]}
    assert (stored["visibility"], stored["transparency"], stored["status"]) == ("private", "transparent", "tentative")


def test_tombstone_delete_round_trip(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    google.control.reset_counters()
    edit(app_context, "crm-1", deleted=True, deleted_at=dt.datetime.now(dt.UTC))
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")

    assert calls(google) == {"calendar.events.delete": 1}
    assert stored_google_event(google, EMAIL, GID)["status"] == "cancelled"
    doc = app_context.store.get_event("crm-1")
    assert doc.deleted and doc.google is None and doc.sync.state == SyncState.SYNCED
    assert doc.purge_at is not None and doc.purge_at > dt.datetime.now(dt.UTC)


def test_delete_already_gone_in_google_is_done(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    google.control.delete_event(EMAIL, GID)  # the user deleted it too; our etag is now stale
    edit(app_context, "crm-1", deleted=True, deleted_at=dt.datetime.now(dt.UTC))
    trigger(push_fn, app_context, "crm-1")
    doc = app_context.store.get_event("crm-1")
    assert doc.deleted and doc.google is None and doc.sync.state == SyncState.SYNCED


@pytest.mark.parametrize(("mode", "content"), [("binary", "protobuf"), ("structured", "json")])
def test_hard_deleted_document_is_deleted_in_google_from_old_value(
    app_context, google, push_fn, owner, mode, content
) -> None:
    push_new(app_context, push_fn, google)
    old = app_context.store.event_ref("crm-1").get().to_dict()
    app_context.store.event_ref("crm-1").delete()
    response = post_written(push_fn.url, app_context.settings.project_id, "crm-1", old=old, mode=mode, content=content)
    assert response.status_code == 200
    assert stored_google_event(google, EMAIL, GID)["status"] == "cancelled"


def test_not_an_event_document_is_a_logged_no_op(app_context, google, push_fn, owner) -> None:
    import requests
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    for subject in ("documents/integrations/user-1", "documents/events/crm-1/sub/x"):
        attributes = {
            "id": "1",
            "source": f"//firestore.googleapis.com/projects/{app_context.settings.project_id}/databases/(default)",
            "type": "google.cloud.firestore.document.v1.written",
            "subject": subject,
        }
        headers, body = to_binary(CloudEvent(attributes, {}))
        assert requests.post(push_fn.url, data=body, headers=headers, timeout=30).status_code == 200
    assert google.control.counters()["total"] == 0


# --- conflicts and races -------------------------------------------------------------------------------------------
def test_conflict_google_newer_takes_google_version_and_records_decision(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    crm_edit_time = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # edited in the CRM before the Google edit
    google.control.edit_event(EMAIL, GID, {"summary": "Renamed in Google"})
    edit(app_context, "crm-1", title="Renamed in CRM", updated_at=crm_edit_time)
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")

    assert calls(google) == {"calendar.events.patch": 1, "calendar.events.get": 1}  # the 412, then the fetch
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["summary"] == "Renamed in Google"
    doc = app_context.store.get_event("crm-1")
    assert doc.title == "Renamed in Google" and doc.google.etag == stored["etag"]
    assert doc.meta.deal_id == "deal-7"  # CRM metadata never overwritten from Google
    assert doc.sync.state == SyncState.SYNCED and doc.sync.content_hash == content_hash(doc)
    [decision] = doc.sync.decisions
    assert decision.winner == "google" and "412" in decision.reason
    assert decision.google_updated > decision.crm_updated_at


def test_conflict_crm_newer_reapplies_and_records_decision(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    google.control.edit_event(EMAIL, GID, {"summary": "Renamed in Google"})
    edit(app_context, "crm-1", title="Renamed in CRM", updated_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")

    assert calls(google) == {"calendar.events.patch": 2, "calendar.events.get": 1}  # 412, fetch, conditional re-apply
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["summary"] == "Renamed in CRM"
    doc = app_context.store.get_event("crm-1")
    assert doc.google.etag == stored["etag"] and doc.sync.state == SyncState.SYNCED
    [decision] = doc.sync.decisions
    assert decision.winner == "crm" and decision.crm_updated_at > decision.google_updated


def test_delete_conflict_google_edited_later_restores_event(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    deleted_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    google.control.edit_event(EMAIL, GID, {"summary": "Still on, moved room"})
    edit(app_context, "crm-1", deleted=True, deleted_at=deleted_at, updated_at=deleted_at)
    trigger(push_fn, app_context, "crm-1")
    doc = app_context.store.get_event("crm-1")
    assert not doc.deleted and doc.title == "Still on, moved room"
    assert stored_google_event(google, EMAIL, GID)["status"] == "confirmed"
    assert doc.sync.decisions[-1].winner == "google"


def test_google_deletion_wins_over_a_newer_crm_edit(app_context, google, push_fn, owner) -> None:
    """The user deletes the meeting in Google; an edit made in the CRM a minute later must not resurrect it: a Google
    deletion wins, as in the pull, so the outcome does not depend on which function sees the deletion first. The
    tombstone keeps the link to the deleted Google event."""
    push_new(app_context, push_fn, google)
    google.control.delete_event(EMAIL, GID)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    edit(app_context, "crm-1", title="Edited after the deletion", updated_at=later)
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")

    assert calls(google) == {"calendar.events.patch": 1, "calendar.events.get": 1}  # 412, fetch: nothing written
    assert stored_google_event(google, EMAIL, GID)["status"] == "cancelled"
    doc = app_context.store.get_event("crm-1")
    assert doc.deleted and doc.purge_at is not None and doc.sync.state == SyncState.SYNCED
    assert doc.google is not None and doc.google.event_id == GID
    [decision] = doc.sync.decisions
    assert decision.winner == "google" and "a deletion wins" in decision.reason
    assert decision.crm_updated_at > decision.google_updated


def test_412_from_our_own_earlier_push_is_not_a_conflict(app_context, google, push_fn, owner) -> None:
    """Our write-back of push N was lost (etag stale) but Google holds our version: re-apply, no decision."""
    first = push_new(app_context, push_fn, google)
    edit(app_context, "crm-1", title="v2")
    trigger(push_fn, app_context, "crm-1")
    # Simulate the lost write-back: the CRM still has v1's etag and hash, and a newer CRM edit arrives (v3).
    doc = app_context.store.get_event("crm-1")
    stale = doc.google.model_copy(update={"etag": first["etag"]})
    app_context.store.update_event("crm-1", {"google": stale.model_dump(), "title": "v3"})
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")

    assert calls(google) == {"calendar.events.patch": 2, "calendar.events.get": 1}
    assert stored_google_event(google, EMAIL, GID)["summary"] == "v3"
    doc = app_context.store.get_event("crm-1")
    assert doc.sync.decisions == [] and doc.sync.state == SyncState.SYNCED


def test_retried_insert_is_adopted_never_duplicated(app_context, google, push_fn, owner) -> None:
    push_new(app_context, push_fn, google)
    # The insert reached Google but our write-back was lost: the document has no link and no hash.
    app_context.store.update_event("crm-1", {"google": None, "sync": {"state": "pending"}})
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    assert calls(google) == {"calendar.events.insert": 1, "calendar.events.get": 1}  # 409, then adopt
    doc = app_context.store.get_event("crm-1")
    assert doc.google.event_id == GID and doc.sync.state == SyncState.SYNCED
    assert [e["id"] for e in google.control.raw_events(EMAIL)] == [GID]

    # Same, but the CRM was edited meanwhile: adopt and patch the difference with the fresh etag.
    app_context.store.update_event("crm-1", {"google": None, "sync": {"state": "pending"}, "title": "edited"})
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    assert calls(google) == {"calendar.events.insert": 1, "calendar.events.get": 1, "calendar.events.patch": 1}
    assert stored_google_event(google, EMAIL, GID)["summary"] == "edited"
    assert len(google.control.raw_events(EMAIL)) == 1


def test_concurrent_crm_edit_during_push_is_not_clobbered(app_context, google, push_fn, owner) -> None:
    """The write-back precondition: a CRM edit landing while we talk to Google survives, and gets pushed."""
    from shared.sync.crm_to_google_run import push_event

    push_new(app_context, push_fn, google)
    edit(app_context, "crm-1", title="v2")
    real_client = app_context.calendar_client

    def client_with_concurrent_edit(integration):
        client = real_client(integration)
        original = client.patch_event

        def patch_then_edit(*args, **kwargs):
            result = original(*args, **kwargs)
            if kwargs.get("body", args[2] if len(args) > 2 else {}).get("summary") == "v2":
                edit(app_context, "crm-1", title="v3")
            return result

        client.patch_event = patch_then_edit
        return client

    app_context.calendar_client = client_with_concurrent_edit
    try:
        push_event(app_context, "crm-1")
    finally:
        app_context.calendar_client = real_client
        app_context.forget_calendar_client(OWNER)
    doc = app_context.store.get_event("crm-1")
    assert doc.title == "v3"  # not clobbered
    assert stored_google_event(google, EMAIL, GID)["summary"] == "v3"
    assert (
        doc.sync.content_hash == content_hash(doc)
        and doc.google.etag == stored_google_event(google, EMAIL, GID)["etag"]
    )


# --- failures --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "reason"), [(503, "backendError"), (429, "rateLimitExceeded")])
def test_transient_storm_records_pending_then_cron_repushes(
    app_context, google, push_fn, owner, status, reason
) -> None:
    google.control.inject_fault("calendar.events.insert", status, reason, count=50)
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")
    retries = app_context.settings.google_max_retries + 1
    assert calls(google)["calendar.events.insert"] == retries  # bounded retries, then recorded

    doc = app_context.store.get_event("crm-1")
    assert doc.sync.state == SyncState.PENDING and doc.sync.attempts == 1 and str(status) in doc.sync.last_error
    assert doc.sync.next_attempt_at > dt.datetime.now(dt.UTC)
    # our failure write triggers again: backoff, no Google call, no write
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    assert google.control.counters()["total"] == 0
    assert app_context.store.get_event("crm-1").sync.attempts == 1

    google.control.clear_faults()
    import time

    counts = push_due_events(
        app_context, now=doc.sync.next_attempt_at + dt.timedelta(seconds=1), limit=50, deadline=time.monotonic() + 30
    )
    assert counts["pushed"] == 1 and counts["due"] == 1
    doc = app_context.store.get_event("crm-1")
    assert doc.sync.state == SyncState.SYNCED and doc.sync.attempts == 0 and doc.sync.last_error is None
    assert len(google.control.raw_events(EMAIL)) == 1


def test_short_rate_limit_burst_is_absorbed_by_client_retries(app_context, google, push_fn, owner) -> None:
    google.control.inject_fault("calendar.events.insert", 403, "userRateLimitExceeded", count=2)
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")
    assert app_context.store.get_event("crm-1").sync.state == SyncState.SYNCED
    assert calls(google)["calendar.events.insert"] == 3
    assert len(google.control.raw_events(EMAIL)) == 1


def test_permanent_error_is_visible_and_does_not_loop(app_context, google, push_fn, owner) -> None:
    google.control.inject_fault("calendar.events.insert", 400, "invalid", message="Invalid attendee", count=1)
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")
    doc = app_context.store.get_event("crm-1")
    assert doc.sync.state == SyncState.ERROR and "400" in doc.sync.last_error and "invalid" in doc.sync.last_error
    google.control.reset_counters()
    trigger(push_fn, app_context, "crm-1")
    assert google.control.counters()["total"] == 0
    # a new CRM edit retries at once
    edit(app_context, "crm-1", title="fixed")
    trigger(push_fn, app_context, "crm-1")
    assert app_context.store.get_event("crm-1").sync.state == SyncState.SYNCED


def test_revoked_token_marks_integration_and_keeps_event_pending(app_context, google, push_fn, owner) -> None:
    token = app_context.cipher.decrypt(owner.refresh_token_ciphertext, owner=OWNER)
    assert google.control.revoke_token(token)
    save(app_context, crm_event())
    trigger(push_fn, app_context, "crm-1")

    integration = app_context.store.get_integration(OWNER)
    assert integration.status == IntegrationStatus.NEEDS_REAUTH
    doc = app_context.store.get_event("crm-1")
    assert doc.sync.state == SyncState.PENDING and "needs_reauth" in doc.sync.last_error
    assert doc.google is None
    google.control.reset_counters()
    edit(app_context, "crm-1", title="edited while disconnected")
    trigger(push_fn, app_context, "crm-1")
    trigger(push_fn, app_context, "crm-1")
    assert google.control.counters()["total"] == 0
    assert app_context.store.get_event("crm-1").sync.state == SyncState.PENDING


# --- recurring series and exceptions ---------------------------------------------------------------------------------
def test_recurring_series_and_crm_exceptions(app_context, google, push_fn, owner) -> None:
    master = push_new(
        app_context,
        push_fn,
        google,
        "series-1",
        title="Weekly sync",
        start={"date_time": "2027-01-04T09:00:00+00:00"},
        end={"date_time": "2027-01-04T09:30:00+00:00"},
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
    )
    assert master["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4"]
    assert master["start"]["timeZone"] == "UTC"  # required for recurring events
    series = {
        "recurring_event_id": master["id"],
        "series_crm_id": "series-1",
        "original_start": {"date_time": "2027-01-11T09:00:00+00:00"},
    }

    # A moved occurrence, edited in the CRM
    save(
        app_context,
        crm_event(
            "exc-1",
            title="Weekly sync (moved)",
            series=series,
            start={"date_time": "2027-01-11T14:00:00+00:00", "time_zone": "UTC"},
            end={"date_time": "2027-01-11T14:30:00+00:00", "time_zone": "UTC"},
        ),
    )
    trigger(push_fn, app_context, "exc-1")
    exc = app_context.store.get_event("exc-1")
    assert exc.sync.state == SyncState.SYNCED, exc.sync.last_error
    instance = stored_google_event(google, EMAIL, exc.google.event_id)
    assert instance["recurringEventId"] == master["id"] and instance["summary"] == "Weekly sync (moved)"
    assert instance["start"]["dateTime"].startswith("2027-01-11T14:00:00")

    # Edit the exception again: a conditional patch of the instance
    edit(app_context, "exc-1", title="Weekly sync (moved again)")
    trigger(push_fn, app_context, "exc-1")
    assert stored_google_event(google, EMAIL, exc.google.event_id)["summary"] == "Weekly sync (moved again)"

    # A cancelled occurrence, made in the CRM
    series2 = dict(series, original_start={"date_time": "2027-01-18T09:00:00+00:00"})
    save(
        app_context,
        crm_event(
            "exc-2",
            title="Weekly sync",
            series=series2,
            status="cancelled",
            start={"date_time": "2027-01-18T09:00:00+00:00"},
            end={"date_time": "2027-01-18T09:30:00+00:00"},
        ),
    )
    trigger(push_fn, app_context, "exc-2")
    assert app_context.store.get_event("exc-2").sync.state == SyncState.SYNCED
    cancelled = [
        e
        for e in google.control.raw_events(EMAIL)
        if e.get("recurringEventId") == master["id"] and e["status"] == "cancelled"
    ]
    assert len(cancelled) == 1 and cancelled[0]["originalStartTime"]["dateTime"].startswith("2027-01-18T09:00:00")
    # the series still shows the other occurrences
    service = google.service_for(EMAIL)
    live = service.events().instances(calendarId=EMAIL, eventId=master["id"]).execute()["items"]
    assert len(live) == 3


# --- sendUpdates --------------------------------------------------------------------------------------------------
def test_no_invitations_for_google_origin_or_bulk_imports(app_context, google, push_fn, owner) -> None:
    guests = [{"email": "guest@client.com"}]
    save(app_context, crm_event("bulk-1", attendees=guests, send_updates="none"))
    trigger(push_fn, app_context, "bulk-1")
    imported = crm_event("imp-1", attendees=guests)
    imported.sync.origin = "google"
    save(app_context, imported)
    trigger(push_fn, app_context, "imp-1")
    assert google.control.emails(EMAIL)["recipients"] == 0
    app_context.store.update_integration(OWNER, {"send_updates": "externalOnly"})
    save(app_context, crm_event("int-1", attendees=[{"email": "guest@client.com"}, {"email": "colleague@example.com"}]))
    trigger(push_fn, app_context, "int-1")
    assert google.control.emails(EMAIL)["recipients"] == 1  # only the external guest


def test_link_fields_match_google_response_for_pull_echo_guard(app_context, google, push_fn, owner) -> None:
    stored = push_new(app_context, push_fn, google)
    doc = app_context.store.get_event("crm-1")
    assert doc.google == GoogleLink(
        calendar_id=EMAIL,
        event_id=stored["id"],
        etag=stored["etag"],
        updated=doc.google.updated,
        ical_uid=stored["iCalUID"],
        html_link=stored["htmlLink"],
    )
    assert doc.google.updated.isoformat(timespec="milliseconds").startswith(stored["updated"][:23])
