"""Invitations from other people through the stand-in and the emulator: recorded as such, RSVP from the CRM, forbidden
changes refused with a reason and restored from Google, guestsCanModify honoured."""

from __future__ import annotations

from typing import Any

from shared.models import SyncState
from tests.pull.conftest import SyncedUser
from tests.push.helpers import edit, trigger
from tests.standin.helpers import timed
from tests.sync_types.conftest import ALICE, BOB

START, END = "2027-03-01T10:00:00Z", "2027-03-01T11:00:00Z"
CLIENT = "client@acme.example"


def _invite(google: Any, **extra: Any) -> dict[str, Any]:
    """BOB (organiser) invites ALICE (our user) and a client, as he would in Google Calendar."""
    attendees = [{"email": BOB}, {"email": ALICE}, {"email": CLIENT}]
    return google.control.create_event(BOB, timed(START, END, summary="ACME pitch", attendees=attendees, **extra))


def _answers(google: Any, email: str, event_id: str) -> dict[str, str]:
    body = google.service_for(email).events().get(calendarId="primary", eventId=event_id).execute()
    return {a["email"]: a.get("responseStatus", "needsAction") for a in body["attendees"]}


def _imported(alice: SyncedUser, event_id: str) -> Any:
    alice.flush()
    alice.pull()
    return alice.by_google_id(event_id)


def test_an_invitation_is_recorded_as_not_ours(alice: SyncedUser, google: Any) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    assert event.user_is_organizer is False and event.guests_can_modify is False
    assert event.organizer is not None and event.organizer.email == BOB and event.organizer.is_self is False
    assert event.is_meeting and event.event_type == "default"
    [mine] = [a for a in event.attendees if a.is_self]
    assert mine.email == ALICE and mine.response_status == "needsAction"


def test_rsvp_from_the_crm_reaches_the_organiser(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    google.control.reset_counters()
    attendees = [
        a.model_copy(update={"response_status": "accepted", "comment": "See you"}) if a.is_self else a
        for a in event.attendees
    ]
    edit(app_context, event.id, attendees=[a.model_dump() for a in attendees])
    trigger(served["push_event"], app_context, event.id)

    assert _answers(google, BOB, made["id"]) == {BOB: "needsAction", ALICE: "accepted", CLIENT: "needsAction"}
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert next(a for a in organiser_copy["attendees"] if a["email"] == ALICE)["comment"] == "See you"
    counters = google.control.counters()["by_method"]
    assert counters.get("calendar.events.patch") == 1
    stored = app_context.store.get_event(event.id)
    assert stored.sync.state == SyncState.SYNCED and stored.sync.last_error is None

    # The notification of our own answer changes nothing in the CRM and pushes nothing back (no echo).
    google.control.reset_counters()
    alice.flush()
    alice.pull()
    trigger(served["push_event"], app_context, event.id)
    assert "calendar.events.patch" not in google.control.counters()["by_method"]
    assert [a.response_status for a in alice.by_google_id(made["id"]).attendees if a.is_self] == ["accepted"]


def test_a_forbidden_change_is_refused_restored_and_not_retried(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    attendees = [a.model_copy(update={"response_status": "tentative"}) if a.is_self else a for a in event.attendees]
    edit(app_context, event.id, title="Our pitch", location="Our office", attendees=[a.model_dump() for a in attendees])
    trigger(served["push_event"], app_context, event.id)

    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert organiser_copy["summary"] == "ACME pitch" and "location" not in organiser_copy
    assert _answers(google, BOB, made["id"])[ALICE] == "tentative"  # the RSVP, which is allowed, went out
    stored = app_context.store.get_event(event.id)
    assert stored.sync.state == SyncState.ERROR
    assert BOB in stored.sync.last_error and "summary" in stored.sync.last_error
    assert stored.title == "ACME pitch" and stored.location is None  # restored from Google
    assert [a.response_status for a in stored.attendees if a.is_self] == ["tentative"]

    alice.flush()  # our write's notification is handled first (its pull lists once)
    google.control.reset_counters()
    trigger(served["push_event"], app_context, event.id)
    trigger(served["push_event"], app_context, event.id)
    assert google.control.counters()["total"] == 0


def test_guests_can_modify_lets_the_crm_edit_the_invitation(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google, guestsCanModify=True)
    event = _imported(alice, made["id"])
    assert event.guests_can_modify is True and event.user_is_organizer is False
    edit(app_context, event.id, location="Room 7")
    trigger(served["push_event"], app_context, event.id)
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert organiser_copy["location"] == "Room 7"
    assert app_context.store.get_event(event.id).sync.state == SyncState.SYNCED


def test_crm_reminders_and_metadata_stay_on_the_users_copy(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    reminders = {"use_default": False, "overrides": [{"method": "popup", "minutes": 5}]}
    edit(app_context, event.id, reminders=reminders, meta={"deal_id": "deal-1"})
    trigger(served["push_event"], app_context, event.id)
    mine = google.service_for(ALICE).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert mine["reminders"] == {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}
    assert mine["extendedProperties"]["private"]["crmDealId"] == "deal-1"
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert "private" not in (organiser_copy.get("extendedProperties") or {})
    assert app_context.store.get_event(event.id).sync.state == SyncState.SYNCED


def test_an_invitation_stored_before_roles_were_recorded_is_refused_by_google_once(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    """A CRM copy that does not know it is an invitation sends a full patch; Google's 403 is recorded, not retried."""
    made = _invite(google)
    event = _imported(alice, made["id"])
    app_context.store.update_event(event.id, {"user_is_organizer": True})  # as stored by an earlier version
    edit(app_context, event.id, title="Our pitch")
    google.control.reset_counters()
    trigger(served["push_event"], app_context, event.id)

    stored = app_context.store.get_event(event.id)
    assert stored.sync.state == SyncState.ERROR and "refused by Google" in stored.sync.last_error
    assert stored.title == "ACME pitch" and stored.user_is_organizer is False  # restored, role now recorded
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert organiser_copy["summary"] == "ACME pitch"
    alice.flush()  # our write's notification is handled first (its pull lists once)
    google.control.reset_counters()
    trigger(served["push_event"], app_context, event.id)
    assert google.control.counters()["total"] == 0


def test_organiser_changes_reach_the_crm_and_deleting_the_invitation_declines_it(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    google.control.edit_event(BOB, made["id"], {"location": "ACME HQ", "guestsCanModify": True})
    event = _imported(alice, made["id"])
    assert event.location == "ACME HQ" and event.guests_can_modify is True and event.user_is_organizer is False

    edit(app_context, event.id, deleted=True)
    trigger(served["push_event"], app_context, event.id)
    assert _answers(google, BOB, made["id"])[ALICE] == "declined"  # the organiser's event stays, answered
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert organiser_copy["status"] == "confirmed"
    stored = app_context.store.get_event(event.id)
    assert stored.deleted and stored.sync.state == SyncState.SYNCED


def test_an_rsvp_meeting_the_organisers_concurrent_change_keeps_both(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    """The user's own answer is theirs to change: the organiser renames the meeting in Google while the CRM's RSVP is
    not yet pushed. Whichever function meets the conflict first (the push's 412, or the pull), both the rename and
    the answer survive, on both sides."""
    made = _invite(google)
    event = _imported(alice, made["id"])
    attendees = [a.model_copy(update={"response_status": "declined"}) if a.is_self else a for a in event.attendees]
    edit(app_context, event.id, attendees=[a.model_dump() for a in attendees])
    google.control.edit_event(BOB, made["id"], {"summary": "ACME pitch (moved room)"})

    trigger(served["push_event"], app_context, event.id)  # 412: Google changed since the CRM's etag
    # The merge goes into the CRM first; that write's own trigger (Eventarc) pushes the answer. When the pull of the
    # organiser's change won the race instead, the first trigger already pushed and this one finds nothing to do.
    trigger(served["push_event"], app_context, event.id)

    assert _answers(google, BOB, made["id"])[ALICE] == "declined"
    organiser_copy = google.service_for(BOB).events().get(calendarId="primary", eventId=made["id"]).execute()
    assert organiser_copy["summary"] == "ACME pitch (moved room)"
    alice.flush()
    alice.pull()
    stored = app_context.store.get_event(event.id)
    assert stored.title == "ACME pitch (moved room)"
    assert [a.response_status for a in stored.attendees if a.is_self] == ["declined"]


def test_an_unpushed_rsvp_survives_the_pull_of_the_organisers_change(
    alice: SyncedUser, google: Any, served: dict[str, Any], app_context: Any
) -> None:
    made = _invite(google)
    event = _imported(alice, made["id"])
    attendees = [a.model_copy(update={"response_status": "tentative"}) if a.is_self else a for a in event.attendees]
    edit(app_context, event.id, attendees=[a.model_dump() for a in attendees])
    google.control.edit_event(BOB, made["id"], {"summary": "ACME pitch (v2)"})
    alice.flush()
    alice.pull()  # the pull meets the unpushed answer first
    merged = app_context.store.get_event(event.id)
    assert merged.title == "ACME pitch (v2)"
    assert [a.response_status for a in merged.attendees if a.is_self] == ["tentative"]

    trigger(served["push_event"], app_context, event.id)
    assert _answers(google, BOB, made["id"])[ALICE] == "tentative"
