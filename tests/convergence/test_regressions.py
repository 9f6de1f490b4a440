"""Divergences the convergence machine found, each reduced to its smallest real reproduction (over the served webhook,
the real emulator and the stand-in). Each test states the invariant it protects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.account import enablement
from shared.context import AppContext
from shared.sync.crm_to_google_run import push_event
from tests.convergence import machine as conv
from tests.convergence.machine import SyncMachine, check_isolation
from tests.convergence.test_state_machine import env as convergence_env  # noqa: F401  (the machine's fixture)
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import connect_user, make_settings
from tests.push.helpers import crm_event

EMAIL = "reg@example.com"
USER = "reg-user"


@pytest.fixture(scope="module")
def webhook() -> Iterator[ServedFunction]:
    served = serve_function("webhook")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, webhook: ServedFunction) -> Any:
    return make_settings(firestore_project, google, webhook_url=webhook.url + "/")


@pytest.fixture
def synced(app_context: AppContext, google: Any) -> AppContext:
    google.control.create_account(EMAIL)
    connect_user(app_context, google, USER, EMAIL)
    enablement.enable(app_context, USER, enablement.EnableRequest())
    google.control.flush(timeout=20)
    return app_context


def test_google_deletion_of_a_crm_made_event_reaches_the_crm(synced: AppContext, google: Any) -> None:
    """Invariant 'deletions agree': the Google user deletes a meeting the CRM created; the notification's pull must
    tombstone the CRM event. (Google lists a deletion with only id/status/etag, so the pull must find the CRM document
    by its Google link, not only by the id derived from the Google id or by crmEventId.)"""
    ctx = synced
    ctx.store.save_event(crm_event("crm-del", owner_id=USER, title="Made in the CRM"))
    push_event(ctx, "crm-del")
    google.control.flush(timeout=20)
    stored = ctx.store.get_event("crm-del")
    assert stored is not None and stored.google is not None

    google.control.delete_event(stored.google.calendar_id, stored.google.event_id)
    google.control.flush(timeout=20)

    after = ctx.store.get_event("crm-del")
    assert after is not None and after.deleted, "the Google deletion never reached the CRM event"


@pytest.mark.usefixtures("convergence_env")
def test_google_deletion_seen_first_by_a_redelivered_push_keeps_the_link() -> None:
    """Invariant 'nothing lost' / 'deletions agree' (soak finding): a CRM edit is pushed but the function dies before
    its write-back; the channels lapse, the Google user deletes the event, and the redelivered push is the first to see
    the deletion (412, Google's deletion is newer: Google wins). Its tombstone must keep the Google link, as the pull's
    tombstones do, so the deletion stays traceable to the Google event it came from through a later 410 full sync."""
    machine = SyncMachine()
    machine.setup()
    machine.crm_edit_push_crashes(pick=0, writes=0, title="Demo")  # crm-1: Google written, write-back lost
    machine.time_passes_channel_lapses()  # no notification reaches the webhook
    assert machine.ctx is not None
    link = machine.ctx.store.get_event("crm-1").google
    assert link is not None
    machine.delete_in_google(link.calendar_id, link.event_id)
    machine.deliver_notifications(order="fifo")  # nothing held; the redelivered push runs

    tombstone = machine.ctx.store.get_event("crm-1")
    assert tombstone is not None and tombstone.deleted, "the Google deletion did not reach the CRM"
    assert tombstone.google is not None and tombstone.google.event_id == link.event_id
    assert tombstone.sync.decisions[-1].winner == "google"

    machine.invalidate_sync_tokens(cal=0)
    machine.teardown()  # quiescence (cron, full sync) and every invariant; raises Divergence


@pytest.mark.usefixtures("convergence_env")
def test_crm_edit_of_an_occurrence_does_not_revive_it_in_a_deleted_series() -> None:
    """Invariant 'deletions agree' (soak finding): the Google user deletes a whole series; before the notification is
    pulled, the CRM edits one of its modified occurrences. The push finds the occurrence cancelled (412) and its series
    deleted: the deletion wins, as in the pull. Before, last-write-wins let the newer CRM edit patch the occurrence back
    to life in Google, while the pull of the series deletion tombstoned its CRM copy."""
    machine = SyncMachine()
    machine.setup()
    calendar_id, series_id, _ = machine.series[0]
    machine.google_recurring_exception(pick=0, which=1, cancel=False, title="Demo")
    machine.deliver_notifications(order="fifo")
    [occurrence] = [event for event in machine._live_docs() if event.series is not None]
    assert occurrence.google is not None

    machine.delete_in_google(calendar_id, series_id)  # notifications are held: the CRM does not know yet
    assert machine.ctx is not None
    machine.ctx.store.update_event(occurrence.id, {"title": "Edited (crm)", "updated_at": machine._now()})
    machine.crm_changes += 1
    machine.deliver_triggers()

    in_google = machine.control.raw_events(calendar_id)
    instance = next(item for item in in_google if item["id"] == occurrence.google.event_id)
    assert instance["status"] == "cancelled", "the CRM edit revived an occurrence of a deleted series"
    stored = machine.ctx.store.get_event(occurrence.id)
    assert stored is not None and stored.deleted and stored.sync.decisions[-1].winner == "google"
    machine.teardown()  # quiescence and every invariant; raises Divergence


@pytest.mark.usefixtures("convergence_env")
def test_the_isolation_invariant_sees_a_meeting_in_the_wrong_users_crm() -> None:
    """The multi-user invariant can fail: a CRM event of the peer linked to the first user's calendar, and a meeting
    of the first user's CRM written into the peer's calendar without an invitation, are both reported."""
    machine = SyncMachine()
    machine.setup()
    assert machine.ctx is not None
    assert check_isolation(machine.ctx, machine.google, machine.calendars_of, machine.crm_owner) == []
    # The seeded world shares meetings: the peer's two invitations (one from its CRM, one made in Google) are
    # invitation copies in the first user's CRM.
    invited = [d for d in machine._live_docs() if d.owner_id == conv.USER and not d.user_is_organizer]
    assert len(invited) == 2 and all(d.organizer and d.organizer.email == conv.PEER_EMAIL for d in invited), invited
    mine = next(
        d for d in machine._live_docs() if d.owner_id != conv.PEER and d.google and d.google.calendar_id == conv.EMAIL
    )
    machine.ctx.store.update_event(mine.id, {"owner_id": conv.PEER})
    machine.control.create_event(
        conv.PEER_EMAIL,
        {
            "summary": "leaked",
            "start": {"dateTime": "2027-03-01T10:00:00Z"},
            "end": {"dateTime": "2027-03-01T11:00:00Z"},
            "extendedProperties": {"private": {"crmEventId": "crm-1"}},
        },
    )
    problems = check_isolation(machine.ctx, machine.google, machine.calendars_of, machine.crm_owner)
    assert any(f"CRM {mine.id} of {conv.PEER} links to {conv.EMAIL}" in p for p in problems), problems
    assert any("carries crm-1 of conv-user" in p for p in problems), problems
    machine.control.configure_push(hold=False)


@pytest.mark.usefixtures("convergence_env")
def test_an_invitation_changed_by_the_crons_push_reaches_a_guest_whose_channel_died() -> None:
    """Soak finding (harness): the peer renames a meeting it organises in the CRM while Google fails its patches, so
    the cron pushes it later; the first user, invited, has a channel Google stopped. The cron pulls before it pushes,
    so only the next stale pull brings the rename into the first user's CRM: convergence, one stale period later."""
    machine = SyncMachine()
    machine.setup()
    machine.google_fault(fault=(500, "backendError"), method="calendar.events.patch", count=6)
    machine.channel_dies_at_google(cal=0)
    docs = machine._live_docs()
    organised = next(i for i, d in enumerate(docs) if d.owner_id == conv.PEER and d.user_is_organizer and d.attendees)
    machine.crm_edit(pick=organised, title="Review", move=False, day=16)
    assert machine.ctx is not None
    assert machine.ctx.store.get_event(docs[organised].id).sync.state == "pending"  # Google refused for now
    machine.teardown()  # quiescence and every invariant; raises Divergence


@pytest.mark.usefixtures("convergence_env")
def test_a_merged_push_that_dies_after_its_google_write_keeps_googles_field() -> None:
    """Soak finding. The CRM renames a meeting while Google changes its description; the push meets the 412 and
    merges (title from the CRM, description from Google). It used to write Google at once and die before its
    write-back: the redelivered push found a version of ours in Google and re-applied the CRM's stale copy, so
    Google's description edit was lost though nobody edited that field later. The merge now goes into the CRM first
    and the trigger of that write pushes it, so a crash anywhere leaves a state the redelivery completes."""
    machine = SyncMachine()
    machine.setup()
    machine.google_create(cal=2, title="Kickoff", day=12, all_day=True, guest=False, peer=False)
    machine.deliver_notifications(order="fifo")
    machine.concurrent_field_edits(pick=0, fields=("title", "description"), order="later", title="Kickoff")
    machine.channel_dies_at_google(cal=1)
    machine.crm_edit_push_crashes(pick=0, writes=1, title="Demo")
    machine.cron()
    machine.teardown()  # raised Divergence before the fix: the description edit was lost


@pytest.mark.usefixtures("convergence_env")
def test_a_crm_edit_after_a_push_that_died_is_not_lost_to_our_own_pushed_value() -> None:
    """Soak finding. A CRM rename's push writes Google and dies before its write-back, so the CRM's base is older than
    what Google got from us. Then the CRM renames the meeting again while a Google user changes its description. The
    merge against the stale base saw the title changed on both sides (Google's copy holds our first rename) and last
    write wins gave Google's copy of our own older title back over the CRM's newer one. The pushed version is now found
    by its stamp on Google's copy and merged against (shared/sync/conflict.py `merge_base`): the title is the CRM's
    change alone, the description Google's."""
    machine = SyncMachine()
    machine.setup()
    machine.google_fault(fault=(500, "backendError"), method="calendar.events.list", count=4)
    machine.crm_edit_push_crashes(pick=37, writes=1, title="Sync")
    machine.google_reply(pick=34, answer="tentative")
    machine.concurrent_field_edits(pick=7, fields=("title", "description"), order="later", title="Review")
    machine.firestore_outage(pick=7, title="Demo", whole=False, code="UNAVAILABLE", calls=4)
    machine.invalidate_sync_tokens(cal=0)
    machine.firestore_outage(pick=7, title="Demo", whole=False, code="UNAVAILABLE", calls=4)
    machine.teardown()  # raised Divergence before the fix: the title 'Review (crm 4)' was lost to 'Sync (crashy)'
