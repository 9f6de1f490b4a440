"""Merge, then decide, as both directions run it (pure: the pull's planner and the push's conflict resolver).

The same concurrent edits go through Google → CRM (`plan_pull`: a Google change meets an unpushed CRM edit) and
CRM → Google (`resolve_conflict`: the push's conditional write lost to a newer Google version); both must end with the
same content and the same decided fields, whichever sees the conflict first. Then "ask me": a conflict is held, not
decided, and neither direction overwrites the held event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.gcal.wire import content_hash, format_rfc3339, has_unpushed_change, mark_synced_from_google
from shared.models import CrmEvent, GoogleLink, SyncState
from shared.sync.conflict import held_for_user
from shared.sync.crm_to_google_plan import STAMP_KEY, Nothing, google_body, google_view, plan_push, resolve_conflict
from shared.sync.google_to_crm_plan import KeepLocal, SkipEcho, TombstoneFromGoogle, UpdateFromGoogle, plan_pull
from shared.sync.merge import base_of
from tests.push.helpers import EMAIL, OWNER, T0, crm_event

GOOGLE_ID = "abcde12345"
NOW = T0 + dt.timedelta(days=1)
# CRM field -> (Google key, a value for the CRM's edit, a value for Google's edit)
EDITS: dict[str, tuple[str, str, str]] = {
    "title": ("summary", "Title from the CRM", "Title from Google"),
    "location": ("location", "Room from the CRM", "Room from Google"),
    "description": ("description", "Notes from the CRM", "Notes from Google"),
}


def synced(**content: Any) -> CrmEvent:
    """A CRM event in sync with Google at etag "e1": its hash and base are the content both sides hold."""
    event = crm_event(
        updated_at=T0 - dt.timedelta(hours=2),
        google=GoogleLink(calendar_id=EMAIL, event_id=GOOGLE_ID, etag='"e1"', updated=T0 - dt.timedelta(hours=2)),
        **content,
    )
    return mark_synced_from_google(event, T0 - dt.timedelta(hours=2), [])


def crm_edit(event: CrmEvent, at: dt.datetime, **fields: Any) -> CrmEvent:
    """An unpushed CRM edit: content changed, `sync` untouched."""
    edited = CrmEvent.model_validate({**event.model_dump(), **fields, "updated_at": at})
    assert has_unpushed_change(edited)
    return edited


def google_now(base: CrmEvent, at: dt.datetime | None, **google_fields: Any) -> dict[str, Any]:
    """Google's current version: the synced content with a Google user's edits (no stamp of ours), etag "e2"."""
    body = {k: v for k, v in google_body(base, for_patch=False).items() if v is not None}
    body["extendedProperties"]["private"].pop(STAMP_KEY)
    body.update({"id": GOOGLE_ID, "etag": '"e2"', "status": "confirmed", **google_fields})
    if at is not None:
        body["updated"] = format_rfc3339(at)
    return body


def through_pull(stored: CrmEvent, google_event: dict[str, Any], mode: str = "last_write_wins") -> Any:
    [action] = plan_pull(
        [google_event], {stored.id: stored}, calendar_id=EMAIL, owner_id=OWNER, now=NOW, full=False, conflict_mode=mode
    )
    return action


def through_push(stored: CrmEvent, google_event: dict[str, Any], mode: str = "last_write_wins") -> Any:
    return resolve_conflict(
        stored, google_event, EMAIL, NOW, "patch etag stale (412)", deleted_in_google=False, mode=mode
    )


def pull_result(action: Any) -> CrmEvent:
    """The content the CRM holds after the pull (Google then gets it from the push if it differs)."""
    assert isinstance(action, KeepLocal | UpdateFromGoogle), action
    return action.after


def push_result(stored: CrmEvent, google_event: dict[str, Any], resolution: Any) -> CrmEvent:
    """The content both sides hold after the push: the merged event pushed, or Google's version taken."""
    if resolution.kind == "take_google":
        return google_view(stored, google_event, EMAIL, NOW)
    assert resolution.kind == "push_crm", resolution
    return resolution.merged


def content(event: CrmEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in ("title", "location", "description", "start", "end")}


# --- the case: Google changes the location while the CRM changes the title -----------------------------------


def test_pull_keeps_the_crm_title_and_takes_googles_location() -> None:
    before = synced()
    stored = crm_edit(before, T0, title="Renamed in the CRM")
    google_event = google_now(before, T0 + dt.timedelta(minutes=5), location="Room 7 (moved in Google)")
    action = through_pull(stored, google_event)

    assert isinstance(action, KeepLocal)
    after = action.after
    assert after.title == "Renamed in the CRM" and after.location == "Room 7 (moved in Google)"
    assert after.google is not None and after.google.etag == '"e2"'
    # What Google holds at "e2" is the base and the echo guard: the CRM's title is exactly what remains to push.
    google_version = google_view(stored, google_event, EMAIL, NOW)
    assert after.sync.base == base_of(google_version)
    assert after.sync.content_hash == content_hash(google_version) != content_hash(after)
    decision = action.decision
    assert sorted(decision.fields_merged) == ["location", "title"] and decision.fields_decided == []
    assert decision.fields == [] and after.sync.decisions[-1] == decision  # nothing for the user to undo


def test_push_412_pushes_the_crm_title_with_googles_location() -> None:
    before = synced()
    stored = crm_edit(before, T0 + dt.timedelta(minutes=10), title="Renamed in the CRM")  # the CRM edit is newer
    google_event = google_now(before, T0, location="Room 7 (moved in Google)")
    resolution = through_push(stored, google_event)

    assert resolution.kind == "push_crm"
    assert resolution.merged.title == "Renamed in the CRM"
    assert resolution.merged.location == "Room 7 (moved in Google)"
    assert resolution.merged.meta == stored.meta  # CRM metadata is never merged from Google
    assert sorted(resolution.decision.fields_merged) == ["location", "title"]


def test_a_push_whose_write_back_was_lost_is_the_base_found_by_its_stamp() -> None:
    """The CRM renamed the meeting; its push wrote Google (stamped) and died before its write-back, so the CRM's base
    is still the older agreement. Then the CRM renames it again and a Google user (later) edits the description. The
    pushed version is found by its stamp: the title is the CRM's alone and the description Google's, in both
    directions. Against the stale base the title would look changed on both sides, and Google's later clock would
    hand it our own first rename back."""
    before = synced()
    pushed = crm_edit(before, T0, title="First rename")
    google_event = google_now(pushed, T0 + dt.timedelta(minutes=30), description="Notes from Google")
    google_event["extendedProperties"]["private"][STAMP_KEY] = google_body(pushed, for_patch=False)[
        "extendedProperties"
    ]["private"][STAMP_KEY]
    stored = crm_edit(pushed, T0 + dt.timedelta(minutes=10), title="Second rename")  # sync: still `before`'s
    for result in (
        pull_result(through_pull(stored, google_event)),
        push_result(stored, google_event, through_push(stored, google_event)),
    ):
        assert (result.title, result.description) == ("Second rename", "Notes from Google")
    assert through_pull(stored, google_event).decision.fields_decided == []
    # Without a stamp of ours (a Google user's copy, or an unknown push), the stored base decides, as before.
    google_event["extendedProperties"]["private"].pop(STAMP_KEY)
    assert pull_result(through_pull(stored, google_event)).title == "First rename"


def test_a_field_changed_on_both_sides_is_decided_and_the_others_still_merge() -> None:
    before = synced()
    stored = crm_edit(before, T0, title="CRM title", description="CRM notes")
    google_event = google_now(before, T0 + dt.timedelta(minutes=1), summary="Google title", location="Google room")
    for result in (
        pull_result(through_pull(stored, google_event)),
        push_result(stored, google_event, through_push(stored, google_event)),
    ):
        # Google's title is newer: it wins the title; each side's one-sided field survives.
        assert (result.title, result.description, result.location) == ("Google title", "CRM notes", "Google room")
    decision = through_pull(stored, google_event).decision
    assert decision.winner == "google" and decision.fields_decided == ["title"] and decision.fields == ["title"]
    assert decision.winning == {"title": "Google title"} and decision.losing == {"title": "CRM title"}
    assert sorted(decision.fields_merged) == ["description", "location"]


def test_without_a_base_it_is_last_write_wins_for_the_whole_event() -> None:
    before = synced()
    stored = crm_edit(before, T0, title="CRM title").model_copy()
    stored.sync = stored.sync.model_copy(update={"base": None})
    google_event = google_now(before, T0 + dt.timedelta(minutes=1), location="Google room")
    action = through_pull(stored, google_event)
    assert isinstance(action, UpdateFromGoogle)  # Google's version, newer, wins everything: the CRM title is lost
    assert action.after.title == before.title and action.after.location == "Google room"
    assert through_push(stored, google_event).kind == "take_google"


def test_a_google_deletion_still_wins_over_a_crm_edit() -> None:
    before = synced()
    stored = crm_edit(before, T0 + dt.timedelta(hours=1), title="CRM title")
    deleted = {"id": GOOGLE_ID, "etag": '"e3"', "status": "cancelled"}
    action = through_pull(stored, deleted)
    assert isinstance(action, TombstoneFromGoogle) and action.after.deleted
    resolution = resolve_conflict(stored, deleted, EMAIL, NOW, "412", deleted_in_google=True)
    assert resolution.kind == "take_google" and resolution.deleted


def test_every_successful_pull_stores_the_base_of_what_it_wrote() -> None:
    before = synced()
    google_event = google_now(before, T0, location="Google room")
    action = through_pull(before, google_event)
    assert isinstance(action, UpdateFromGoogle) and action.decision is None
    assert action.after.sync.base == base_of(action.after) != before.sync.base


# --- both directions agree -----------------------------------------------------------------------------------------

FIELDS = st.sampled_from(sorted(EDITS))


@settings(max_examples=150, deadline=None)
@given(
    crm_fields=st.sets(FIELDS, min_size=1),
    google_fields=st.sets(FIELDS, min_size=1),
    crm_offset=st.integers(-3, 3),
    google_offset=st.integers(-3, 3),
)
def test_both_directions_end_with_the_same_content(
    crm_fields: set[str], google_fields: set[str], crm_offset: int, google_offset: int
) -> None:
    before = synced()
    crm_values = {name: EDITS[name][1] for name in crm_fields}
    google_values = {EDITS[name][0]: EDITS[name][2] for name in google_fields}
    stored = crm_edit(before, T0 + dt.timedelta(minutes=crm_offset), **crm_values)
    google_event = google_now(before, T0 + dt.timedelta(minutes=google_offset), **google_values)

    action = through_pull(stored, google_event)
    resolution = through_push(stored, google_event)
    pulled, pushed = pull_result(action), push_result(stored, google_event, resolution)
    assert content(pulled) == content(pushed)
    decided = set(action.decision.fields_decided)
    assert decided == set(resolution.decision.fields_decided) == crm_fields & google_fields
    # An edit is lost only to an edit of the same field on the other side.
    for name in crm_fields - google_fields:
        assert getattr(pulled, name) == EDITS[name][1], name
    for name in google_fields - crm_fields:
        assert getattr(pulled, name) == EDITS[name][2], name
    winner = action.decision.winner
    for name in crm_fields & google_fields:
        assert getattr(pulled, name) == EDITS[name][1 if winner == "crm" else 2], name


# --- ask me --------------------------------------------------------------------------------------------------------


def test_ask_me_holds_a_conflict_in_the_pull_and_merges_the_rest() -> None:
    before = synced()
    stored = crm_edit(before, T0, title="CRM title")
    google_event = google_now(before, T0 + dt.timedelta(minutes=1), summary="Google title", location="Google room")
    action = through_pull(stored, google_event, "ask_me")

    assert isinstance(action, KeepLocal)
    held = action.after
    assert held.sync.state == SyncState.CONFLICT and held_for_user(held)
    assert held.title == "CRM title" and held.location == "Google room"  # nothing decided; the rest merged
    decision = held.sync.decisions[-1]
    assert decision.pending and decision.fields == ["title"] and decision.fields_decided == ["title"]
    assert decision.winning == {"title": "CRM title"} and decision.losing == {"title": "Google title"}
    assert decision.fields_merged == ["location"]

    # No push overwrites it, and no later Google edit either; a Google deletion still wins.
    assert isinstance(plan_push(held, None, None, NOW), Nothing)
    later = google_now(before, T0 + dt.timedelta(minutes=2), summary="Google again") | {"etag": '"e3"'}
    assert isinstance(through_pull(held, later, "ask_me"), SkipEcho)
    deleted = {"id": GOOGLE_ID, "etag": '"e4"', "status": "cancelled"}
    assert isinstance(through_pull(held, deleted, "ask_me"), TombstoneFromGoogle)


def test_ask_me_holds_a_conflict_in_the_push() -> None:
    before = synced()
    stored = crm_edit(before, T0 + dt.timedelta(minutes=5), title="CRM title")
    google_event = google_now(before, T0, summary="Google title", location="Google room")
    resolution = through_push(stored, google_event, "ask_me")
    assert resolution.kind == "hold" and resolution.decision.pending
    assert resolution.merged.title == "CRM title" and resolution.merged.location == "Google room"
    # Without a field changed on both sides there is nothing to ask: the merge is pushed as usual.
    google_event = google_now(before, T0, location="Google room")
    assert through_push(stored, google_event, "ask_me").kind == "push_crm"
