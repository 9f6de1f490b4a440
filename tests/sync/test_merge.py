"""The three-way merge (shared/sync/merge.py): every rule on hand-made cases, then hypothesis properties.

Pure: no emulator, no stand-in. Field values are compared through `_content`, written here independently of the
merge's digests, so a digest that missed a change would fail these tests.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.models import (
    CONTENT_FIELDS,
    Attendee,
    ConflictDecision,
    CrmEvent,
    GoogleLink,
    SyncBase,
    SyncInfo,
    dump_for_firestore,
)
from shared.sync.merge import (
    GOOGLE_OWNED_ATTENDEE_FIELDS,
    MERGED_FIELDS,
    MergeResult,
    attendee_field,
    base_of,
    three_way_merge,
)

WHOLE_FIELDS = tuple(name for name in MERGED_FIELDS if name != "attendees")
SIDES = ("crm", "google")


def meeting(**content: Any) -> CrmEvent:
    """A timed meeting 10:00-11:00 with two guests; `content` overrides any field."""
    fields: dict[str, Any] = {
        "id": "crm-1",
        "owner_id": "user-1",
        "title": "Kick-off",
        "location": "Room 1",
        "start": {"date_time": "2026-03-02T10:00:00+00:00", "time_zone": "Europe/Paris"},
        "end": {"date_time": "2026-03-02T11:00:00+00:00", "time_zone": "Europe/Paris"},
        "attendees": [
            {"email": "ana@example.com", "response_status": "accepted"},
            {"email": "bo@example.com"},
        ],
        "meta": {"deal_id": "deal-7"},
    }
    fields.update(content)
    return CrmEvent.model_validate(fields)


def edit(event: CrmEvent, **update: Any) -> CrmEvent:
    """The event with some fields replaced (validated, as a CRM write or a pulled Google version would be)."""
    return CrmEvent.model_validate({**event.model_dump(), **update})


def guest(event: CrmEvent, email: str) -> Attendee:
    (found,) = [a for a in event.attendees if a.email.lower() == email.lower()]
    return found


def with_guest(event: CrmEvent, key: str, **update: Any) -> CrmEvent:
    """The event with one guest's entry changed."""
    attendees = [a.model_dump() for a in event.attendees]
    for entry in attendees:
        if entry["email"].lower() == key:
            entry.update(update)
    return edit(event, attendees=attendees)


def without_guest(event: CrmEvent, email: str) -> CrmEvent:
    return edit(event, attendees=[a.model_dump() for a in event.attendees if a.email.lower() != email.lower()])


def _content(event: CrmEvent) -> dict[str, Any]:
    """What the merge is about, computed without the merge's code: whole fields, and guests by lower-cased e-mail
    without the Google-owned attributes (guest order is not content)."""
    content: dict[str, Any] = {name: event.model_dump(mode="json", include={name})[name] for name in WHOLE_FIELDS}
    guests: dict[str, list[dict[str, Any]]] = {}
    for attendee in event.attendees:
        entry = attendee.model_dump(mode="json", exclude={"email", *GOOGLE_OWNED_ATTENDEE_FIELDS})
        guests.setdefault(attendee.email.lower(), []).append(entry)
    content["attendees"] = guests
    return content


def assert_answers_from_google(merged: CrmEvent, google: CrmEvent) -> None:
    answers = {a.email.lower(): a.response_status for a in google.attendees}
    for attendee in merged.attendees:
        if attendee.email.lower() in answers:
            assert attendee.response_status == answers[attendee.email.lower()], attendee.email


# --- the field list and the base --------------------------------------------------------------------------------------


def test_every_content_field_merges_except_meta_and_deleted() -> None:
    assert set(MERGED_FIELDS) == set(CONTENT_FIELDS) - {"meta", "deleted"}
    assert {"title", "location", "start", "end", "attendees", "reminders", "recurrence"} <= set(MERGED_FIELDS)


def test_base_holds_one_short_digest_per_field_and_per_guest_by_lower_cased_email() -> None:
    event = meeting(attendees=[{"email": "Ana@Example.com"}, {"email": "bo@example.com", "optional": True}])
    base = base_of(event)
    assert set(base.fields) == set(WHOLE_FIELDS)
    assert set(base.attendees) == {"ana@example.com", "bo@example.com"}
    digests = [*base.fields.values(), *base.attendees.values()]
    assert all(len(d) == 11 for d in digests)  # 8 bytes, base64 without padding
    assert base.attendees["ana@example.com"] != base.attendees["bo@example.com"]


def test_base_changes_with_synced_content_only() -> None:
    event = meeting()
    base = base_of(event)
    assert base_of(edit(event, title="Kick-off (moved)")).fields["title"] != base.fields["title"]
    assert base_of(edit(event, description="")).fields["description"] != base.fields["description"]
    assert base_of(with_guest(event, "bo@example.com", optional=True)).attendees != base.attendees
    # Not merged, or not an edit to merge: CRM metadata, bookkeeping, a guest's answer, an e-mail's case.
    assert base_of(edit(event, meta={"deal_id": "deal-8"}, updated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))) == base
    assert base_of(with_guest(event, "bo@example.com", response_status="declined")) == base
    assert base_of(with_guest(event, "bo@example.com", email="Bo@Example.COM")) == base


def test_field_at_its_default_and_an_explicit_value_differ() -> None:
    """`reminders` at its default vs. the same object written out digest alike; a real change does not."""
    event = meeting()
    assert base_of(edit(event, reminders={"use_default": True, "overrides": []})) == base_of(event)
    changed = edit(event, reminders={"use_default": False, "overrides": [{"method": "popup", "minutes": 10}]})
    assert base_of(changed).fields["reminders"] != base_of(event).fields["reminders"]


# --- whole fields -----------------------------------------------------------------------------------------------------


def test_title_in_the_crm_and_location_in_google_both_survive() -> None:
    """The case of the issue: a CRM title edit and a Google location edit of the same meeting."""
    synced = meeting()
    crm = edit(synced, title="Kick-off with legal")
    google = edit(synced, location="Room 4")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == ("title",)
    assert result.fields_from_google == ("location",)
    assert result.fields_conflicting == ()
    assert not result.has_conflict
    assert result.fields_merged == ("title", "location")
    for winner in SIDES:
        merged = result.merged(winner)
        assert (merged.title, merged.location) == ("Kick-off with legal", "Room 4")


def test_same_change_on_both_sides_is_agreed_not_a_conflict() -> None:
    synced = meeting()
    crm = edit(synced, location="Room 4", title="CRM title")
    google = edit(synced, location="Room 4")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_agreed == ("location",)
    assert result.fields_from_crm == ("title",)
    assert result.fields_conflicting == ()
    assert result.merged("google").location == "Room 4"


def test_different_changes_to_one_field_conflict_and_the_winner_takes_only_those() -> None:
    synced = meeting()
    crm = edit(synced, title="CRM title", description="agenda")
    google = edit(synced, title="Google title", visibility="private")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_conflicting == ("title",)
    assert result.fields_from_crm == ("description",)
    assert result.fields_from_google == ("visibility",)
    assert result.has_conflict
    by_crm, by_google = result.merged("crm"), result.merged("google")
    assert by_crm.title == "CRM title"
    assert by_google.title == "Google title"
    for merged in (by_crm, by_google):
        assert (merged.description, merged.visibility) == ("agenda", "private")


def test_no_base_every_differing_field_conflicts_and_the_winner_takes_its_whole_content() -> None:
    """Events synced before bases were stored: plain last-write-wins, as before the merge."""
    synced = meeting()
    crm = with_guest(edit(synced, title="CRM title"), "ana@example.com", optional=True)
    google = edit(synced, location="Room 4", reminders={"use_default": False, "overrides": []})
    result = three_way_merge(None, crm, google)
    assert result.fields_from_crm == result.fields_from_google == ()
    assert set(result.fields_conflicting) == {"title", "location", "reminders", attendee_field("ana@example.com")}
    assert _content(result.merged("crm")) == _content(crm)
    assert _content(result.merged("google")) == _content(google)


def test_a_base_without_a_field_treats_that_field_as_unknown() -> None:
    """A base stored before a field joined the merge: that field conflicts if the sides differ, the rest merges."""
    synced = meeting()
    old_base = base_of(synced)
    old_base = SyncBase(
        fields={k: v for k, v in old_base.fields.items() if k != "location"}, attendees=old_base.attendees
    )
    crm = edit(synced, title="CRM title")
    google = edit(synced, location="Room 4")
    result = three_way_merge(old_base, crm, google)
    assert result.fields_from_crm == ("title",)
    assert result.fields_conflicting == ("location",)


def test_unchanged_sides_merge_to_nothing() -> None:
    synced = meeting()
    result = three_way_merge(base_of(synced), synced, synced.model_copy(deep=True))
    assert result.fields_merged == result.fields_conflicting == result.fields_agreed == ()
    assert _content(result.merged("google")) == _content(synced)


def test_merged_keeps_the_crm_events_own_fields() -> None:
    """meta, deleted, ids, link and bookkeeping are not merged: they are the CRM document's, whoever wins."""
    synced = meeting()
    crm = edit(
        synced, title="CRM title", sync=SyncInfo(content_hash="h"), updated_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    )
    google = edit(
        synced,
        title="Google title",
        meta={"deal_id": "from-google"},
        google=GoogleLink(calendar_id="c", event_id="e", etag='"9"'),
        deleted=True,
    )
    merged = three_way_merge(base_of(synced), crm, google).merged("google")
    assert merged.title == "Google title"
    assert merged.meta.deal_id == "deal-7"
    assert (merged.id, merged.deleted, merged.google, merged.sync, merged.updated_at) == (
        crm.id,
        False,
        None,
        crm.sync,
        crm.updated_at,
    )


def test_merged_is_a_new_event_that_shares_nothing_with_the_sides() -> None:
    synced = meeting()
    google = edit(synced, location="Room 4")
    merged = three_way_merge(base_of(synced), synced, google).merged("crm")
    merged.attendees[0].optional = True
    merged.start.time_zone = "UTC"
    assert not google.attendees[0].optional
    assert google.start.time_zone == "Europe/Paris"


# --- start and end ----------------------------------------------------------------------------------------------------


def test_a_meeting_moved_on_one_side_moves() -> None:
    synced = meeting()
    crm = edit(synced, start={"date_time": "2026-03-02T14:00:00+00:00"}, end={"date_time": "2026-03-02T15:00:00+00:00"})
    google = edit(synced, title="Google title")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == ("start", "end")
    merged = result.merged("google")
    assert (merged.start, merged.end, merged.title) == (crm.start, crm.end, "Google title")


def test_start_and_end_changed_on_different_sides_are_decided_together() -> None:
    """The CRM moves the meeting to the afternoon, Google extends the morning slot: mixing them would end the meeting
    before it starts, so both go to the conflict rule and the winner brings its own start and end."""
    synced = meeting()
    crm = edit(synced, start={"date_time": "2026-03-02T14:00:00+00:00"}, end={"date_time": "2026-03-02T15:00:00+00:00"})
    google = edit(synced, end={"date_time": "2026-03-02T11:30:00+00:00", "time_zone": "Europe/Paris"})
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_conflicting == ("start", "end")
    for winner, side in (("crm", crm), ("google", google)):
        merged = result.merged(winner)
        assert (merged.start, merged.end) == (side.start, side.end)
        CrmEvent.model_validate(merged.model_dump())


def test_start_on_one_side_and_end_on_the_other_is_decided_together() -> None:
    synced = meeting()
    crm = edit(synced, start={"date_time": "2026-03-02T09:30:00+00:00", "time_zone": "Europe/Paris"})
    google = edit(synced, end={"date_time": "2026-03-02T11:30:00+00:00", "time_zone": "Europe/Paris"})
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_conflicting == ("start", "end")
    assert result.merged("google").start == synced.start


def test_an_all_day_conversion_against_a_timed_edit_never_mixes_kinds() -> None:
    synced = meeting()
    crm = edit(synced, start={"date": "2026-03-02"}, end={"date": "2026-03-03"})
    google = edit(synced, end={"date_time": "2026-03-02T12:00:00+00:00", "time_zone": "Europe/Paris"})
    result = three_way_merge(base_of(synced), crm, google)
    for winner in SIDES:
        merged = result.merged(winner)
        assert merged.start.is_all_day == merged.end.is_all_day
        CrmEvent.model_validate(merged.model_dump())


def test_both_moved_the_end_alike_and_the_crm_also_the_start_merges_without_conflict() -> None:
    synced = meeting()
    crm = edit(
        synced,
        start={"date_time": "2026-03-02T10:30:00+00:00", "time_zone": "Europe/Paris"},
        end={"date_time": "2026-03-02T12:00:00+00:00", "time_zone": "Europe/Paris"},
    )
    google = edit(synced, end={"date_time": "2026-03-02T12:00:00+00:00", "time_zone": "Europe/Paris"})
    result = three_way_merge(base_of(synced), crm, google)
    assert (result.fields_from_crm, result.fields_agreed, result.fields_conflicting) == (("start",), ("end",), ())
    assert (result.merged("google").start, result.merged("google").end) == (crm.start, crm.end)


# --- attendees --------------------------------------------------------------------------------------------------------


def test_a_guest_added_on_one_side_and_another_guests_flag_changed_on_the_other_both_survive() -> None:
    synced = meeting()
    crm = edit(synced, attendees=[*[a.model_dump() for a in synced.attendees], {"email": "cy@example.com"}])
    google = with_guest(synced, "bo@example.com", optional=True)
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == (attendee_field("cy@example.com"),)
    assert result.fields_from_google == (attendee_field("bo@example.com"),)
    assert not result.has_conflict
    for winner in SIDES:
        merged = result.merged(winner)
        assert [a.email for a in merged.attendees] == ["ana@example.com", "bo@example.com", "cy@example.com"]
        assert guest(merged, "bo@example.com").optional


@pytest.mark.parametrize("remover", SIDES)
def test_a_guest_removed_on_one_side_and_untouched_on_the_other_is_removed(remover: str) -> None:
    synced = meeting()
    removed = without_guest(synced, "bo@example.com")
    crm, google = (removed, synced) if remover == "crm" else (synced, removed)
    result = three_way_merge(base_of(synced), crm, google)
    listed = result.fields_from_crm if remover == "crm" else result.fields_from_google
    assert listed == (attendee_field("bo@example.com"),)
    for winner in SIDES:
        assert [a.email for a in result.merged(winner).attendees] == ["ana@example.com"]


def test_a_guest_removed_on_one_side_and_changed_on_the_other_is_the_conflict_rules() -> None:
    synced = meeting()
    crm = with_guest(synced, "bo@example.com", optional=True)
    google = without_guest(synced, "bo@example.com")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_conflicting == (attendee_field("bo@example.com"),)
    assert guest(result.merged("crm"), "bo@example.com").optional
    assert [a.email for a in result.merged("google").attendees] == ["ana@example.com"]


def test_the_same_guest_added_alike_on_both_sides_is_agreed() -> None:
    synced = meeting()
    added = edit(synced, attendees=[*[a.model_dump() for a in synced.attendees], {"email": "cy@example.com"}])
    result = three_way_merge(base_of(synced), added, added.model_copy(deep=True))
    assert result.fields_agreed == (attendee_field("cy@example.com"),)
    assert len(result.merged("crm").attendees) == 3


def test_a_guests_answer_is_always_googles_and_never_a_merge() -> None:
    """The CRM changes Bo's optional flag while Bo declines in Google: the flag is the CRM's, the answer Google's;
    an answer the CRM changed on its own is not an edit (Google's stands)."""
    synced = meeting()
    crm = with_guest(synced, "bo@example.com", optional=True)
    crm = with_guest(crm, "ana@example.com", response_status="tentative")
    google = with_guest(synced, "bo@example.com", response_status="declined", is_self=True)
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == (attendee_field("bo@example.com"),)
    assert result.fields_from_google == result.fields_conflicting == ()
    for winner in SIDES:
        merged = result.merged(winner)
        bo = guest(merged, "bo@example.com")
        assert (bo.optional, bo.response_status, bo.is_self) == (True, "declined", True)
        assert guest(merged, "ana@example.com").response_status == "accepted"


def test_a_guest_only_the_crm_has_keeps_the_crms_answer() -> None:
    synced = meeting()
    crm = edit(
        synced,
        attendees=[
            *[a.model_dump() for a in synced.attendees],
            {"email": "cy@example.com", "response_status": "accepted"},
        ],
    )
    merged = three_way_merge(base_of(synced), crm, synced).merged("google")
    assert guest(merged, "cy@example.com").response_status == "accepted"


def test_guests_match_by_lower_cased_email() -> None:
    synced = meeting()
    google = with_guest(synced, "ana@example.com", email="ANA@example.com")
    crm = with_guest(synced, "ana@example.com", optional=True)
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == (attendee_field("ana@example.com"),)
    merged = result.merged("google")
    assert len(merged.attendees) == 2
    assert guest(merged, "ana@example.com").optional


def test_guests_removed_on_both_sides_are_agreed() -> None:
    synced = meeting()
    removed = without_guest(synced, "bo@example.com")
    result = three_way_merge(base_of(synced), removed, removed.model_copy(deep=True))
    assert result.fields_agreed == (attendee_field("bo@example.com"),)
    assert [a.email for a in result.merged("crm").attendees] == ["ana@example.com"]


# --- the decision record and the stored base --------------------------------------------------------------------------


def test_decision_record_names_merged_and_decided_fields_and_reads_old_records() -> None:
    synced = meeting()
    result = three_way_merge(base_of(synced), edit(synced, title="A", location="L"), edit(synced, title="B"))
    decision = ConflictDecision(
        at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        winner="google",
        reason="test",
        fields_merged=list(result.fields_merged),
        fields_decided=list(result.fields_conflicting),
    )
    stored = ConflictDecision.model_validate(dump_for_firestore(decision))
    assert (stored.fields_merged, stored.fields_decided) == (["location"], ["title"])
    old = ConflictDecision.model_validate({"at": decision.at, "winner": "crm", "reason": "before the merge"})
    assert old.fields_merged == old.fields_decided == []


def test_sync_info_stores_the_base_and_reads_events_without_one() -> None:
    event = meeting()
    event.sync = SyncInfo(base=base_of(event))
    stored = CrmEvent.model_validate({**dump_for_firestore(event)})
    assert stored.sync.base == base_of(event)
    assert CrmEvent.model_validate({**dump_for_firestore(meeting()), "sync": {"state": "synced"}}).sync.base is None


# --- properties -------------------------------------------------------------------------------------------------------
POOL = ("ana@example.com", "bo@example.com", "cy@example.com", "di@example.com")
ANSWERS = st.sampled_from(["needsAction", "accepted", "declined", "tentative"])


def _slot(day: dt.date, hour: int, minutes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    begin = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    return (
        {"date_time": begin.isoformat(), "time_zone": "Europe/Paris"},
        {"date_time": (begin + dt.timedelta(minutes=minutes)).isoformat(), "time_zone": "Europe/Paris"},
    )


@st.composite
def guests(draw: st.DrawFn, emails: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "email": email,
            "optional": draw(st.booleans()),
            "display_name": draw(st.sampled_from([None, "Ana", "Bo"])),
            "response_status": draw(ANSWERS),
        }
        for email in emails
    ]


@st.composite
def synced_events(draw: st.DrawFn) -> CrmEvent:
    day = dt.date(2026, 3, 2) + dt.timedelta(days=draw(st.integers(0, 3)))
    if draw(st.integers(0, 4)) == 0:
        start, end = {"date": day.isoformat()}, {"date": (day + dt.timedelta(days=1)).isoformat()}
    else:
        start, end = _slot(day, draw(st.integers(8, 16)), draw(st.sampled_from([30, 60, 90])))
    return CrmEvent.model_validate(
        {
            "id": "crm-1",
            "owner_id": "user-1",
            "title": draw(st.sampled_from(["Kick-off", "Demo", ""])),
            "description": draw(st.sampled_from([None, "", "agenda"])),
            "location": draw(st.sampled_from([None, "Room 1", "Room 2"])),
            "start": start,
            "end": end,
            "status": draw(st.sampled_from(["confirmed", "tentative"])),
            "attendees": draw(guests(draw(st.lists(st.sampled_from(POOL), unique=True, max_size=3)))),
            "reminders": draw(st.sampled_from([{}, {"use_default": False, "overrides": []}])),
            "recurrence": draw(st.sampled_from([[], ["RRULE:FREQ=WEEKLY;COUNT=5"]])),
            "visibility": draw(st.sampled_from(["default", "private"])),
            "transparency": draw(st.sampled_from(["opaque", "transparent"])),
            "meta": {"deal_id": "deal-7"},
        }
    )


def _times(draw: st.DrawFn, event: CrmEvent) -> dict[str, Any]:
    """A new start, end or both: moved, shortened from the start, extended at the end, or made all-day."""
    kind = draw(st.sampled_from(["move", "start", "end", "all_day"]))
    day = dt.date.fromisoformat((event.start.date or event.start.date_time or "")[:10])
    if kind == "all_day" or event.start.is_all_day:
        days = draw(st.integers(0, 2))
        return {
            "start": {"date": (day + dt.timedelta(days=days)).isoformat()},
            "end": {"date": (day + dt.timedelta(days=days + draw(st.integers(1, 2)))).isoformat()},
        }
    start, end = _slot(day, draw(st.integers(8, 16)), draw(st.sampled_from([30, 60])))
    if kind == "start":
        end_at = event.end.instant()
        start = {
            "date_time": (end_at - dt.timedelta(minutes=draw(st.sampled_from([15, 45])))).isoformat(),
            "time_zone": event.start.time_zone,
        }
        return {"start": start}
    if kind == "end":
        end = {
            "date_time": (event.start.instant() + dt.timedelta(minutes=draw(st.sampled_from([45, 120])))).isoformat(),
            "time_zone": event.end.time_zone,
        }
        return {"end": end}
    return {"start": start, "end": end}


def _guest_edits(draw: st.DrawFn, event: CrmEvent) -> list[dict[str, Any]]:
    """Adds, removals, flag and name changes, answers and e-mail re-casing of some guests."""
    attendees = [a.model_dump() for a in event.attendees]
    for entry in list(attendees):
        change = draw(st.sampled_from(["keep", "keep", "remove", "optional", "name", "answer", "case"]))
        if change == "remove":
            attendees.remove(entry)
        elif change == "optional":
            entry["optional"] = not entry["optional"]
        elif change == "name":
            entry["display_name"] = draw(st.sampled_from([None, "Ana B.", "Bo C."]))
        elif change == "answer":
            entry["response_status"] = draw(ANSWERS)
        elif change == "case":
            entry["email"] = entry["email"].upper()
    present = {a.email.lower() for a in event.attendees}
    for email in draw(
        st.lists(st.sampled_from([e for e in POOL if e not in present] or ["ed@example.com"]), unique=True, max_size=2)
    ):
        attendees.extend(draw(guests([email])))
    return attendees


@st.composite
def edits_of(draw: st.DrawFn, event: CrmEvent) -> CrmEvent:
    """One side's edit of `event`: a random subset of fields, from small value sets so both sides often collide."""
    update: dict[str, Any] = {}
    choices = {
        "title": st.sampled_from(["Kick-off", "Kick-off (moved)", "Review"]),
        "description": st.sampled_from([None, "agenda", "new agenda"]),
        "location": st.sampled_from([None, "Room 1", "Room 4"]),
        "status": st.sampled_from(["confirmed", "tentative"]),
        "reminders": st.sampled_from([{}, {"use_default": False, "overrides": [{"method": "popup", "minutes": 10}]}]),
        "recurrence": st.sampled_from([[], ["RRULE:FREQ=DAILY;COUNT=3"]]),
        "attachments": st.sampled_from([[], [{"file_url": "https://drive.example/1", "title": "deck"}]]),
        "conference_link": st.sampled_from([None, "https://meet.example/abc"]),
        "visibility": st.sampled_from(["default", "public"]),
        "transparency": st.sampled_from(["opaque", "transparent"]),
    }
    for name, values in choices.items():
        if draw(st.integers(0, 3)) == 0:
            update[name] = draw(values)
    if draw(st.integers(0, 2)) == 0:
        update.update(_times(draw, event))
    if draw(st.booleans()):
        update["attendees"] = _guest_edits(draw, event)
    if draw(st.integers(0, 4)) == 0:
        update["meta"] = {"deal_id": "deal-8"}
    return edit(event, **update)


@st.composite
def concurrent_edits(draw: st.DrawFn) -> tuple[CrmEvent, CrmEvent, CrmEvent]:
    synced = draw(synced_events())
    return synced, draw(edits_of(synced)), draw(edits_of(synced))


def _changed(before: dict[str, Any], after: dict[str, Any], name: str) -> bool:
    return before[name] != after[name]


def _one_sided(synced: CrmEvent, side: CrmEvent, other: CrmEvent) -> tuple[list[str], list[str]]:
    """Whole fields (start and end as one) and guests that `side` changed and `other` left as they were."""
    base, mine, theirs = _content(synced), _content(side), _content(other)
    groups = [("start", "end"), *((name,) for name in WHOLE_FIELDS if name not in ("start", "end"))]
    fields = [
        name
        for group in groups
        if any(_changed(base, mine, n) for n in group) and not any(_changed(base, theirs, n) for n in group)
        for name in group
    ]
    keys = set(base["attendees"]) | set(mine["attendees"])
    guests_changed = [
        key
        for key in keys
        if base["attendees"].get(key) != mine["attendees"].get(key)
        and base["attendees"].get(key) == theirs["attendees"].get(key)
    ]
    return fields, guests_changed


def _swapped(result: MergeResult) -> tuple[tuple[str, ...], ...]:
    return (result.fields_from_google, result.fields_from_crm, result.fields_conflicting, result.fields_agreed)


@settings(max_examples=200, deadline=None)
@given(concurrent_edits())
def test_swapping_sides_swaps_from_crm_and_from_google(sides: tuple[CrmEvent, CrmEvent, CrmEvent]) -> None:
    synced, crm, google = sides
    result = three_way_merge(base_of(synced), crm, google)
    swapped = three_way_merge(base_of(synced), google, crm)
    assert _swapped(result) == (
        swapped.fields_from_crm,
        swapped.fields_from_google,
        swapped.fields_conflicting,
        swapped.fields_agreed,
    )
    # Without a conflict, the merged content does not depend on which side is which (or on the rule).
    if not result.has_conflict:
        assert _content(result.merged("crm")) == _content(result.merged("google")) == _content(swapped.merged("crm"))


@settings(max_examples=200, deadline=None)
@given(concurrent_edits())
def test_a_change_made_on_one_side_only_is_never_lost(sides: tuple[CrmEvent, CrmEvent, CrmEvent]) -> None:
    synced, crm, google = sides
    result = three_way_merge(base_of(synced), crm, google)
    for winner in SIDES:
        merged = _content(result.merged(winner))
        for side, other in ((crm, google), (google, crm)):
            fields, changed_guests = _one_sided(synced, side, other)
            wanted = _content(side)
            for name in fields:
                assert merged[name] == wanted[name], (winner, name)
            for key in changed_guests:
                assert merged["attendees"].get(key) == wanted["attendees"].get(key), (winner, key)


@settings(max_examples=200, deadline=None)
@given(concurrent_edits(), st.sampled_from(SIDES))
def test_merging_with_the_base_equal_to_one_side_returns_the_other(
    sides: tuple[CrmEvent, CrmEvent, CrmEvent], unchanged: str
) -> None:
    synced, _, edited = sides
    crm, google = (synced, edited) if unchanged == "crm" else (edited, synced)
    result = three_way_merge(base_of(synced), crm, google)
    assert not result.has_conflict
    assert (result.fields_from_crm if unchanged == "crm" else result.fields_from_google) == ()
    for winner in SIDES:
        merged = result.merged(winner)
        assert _content(merged) == _content(edited)
        assert_answers_from_google(merged, google)


@settings(max_examples=200, deadline=None)
@given(concurrent_edits())
def test_every_merged_event_is_valid_and_answers_come_from_google(sides: tuple[CrmEvent, CrmEvent, CrmEvent]) -> None:
    synced, crm, google = sides
    for base in (base_of(synced), None):
        result = three_way_merge(base, crm, google)
        for winner in SIDES:
            merged = result.merged(winner)
            CrmEvent.model_validate(merged.model_dump())
            assert_answers_from_google(merged, google)
            assert merged.meta == crm.meta


@settings(max_examples=200, deadline=None)
@given(concurrent_edits())
def test_without_a_base_the_winner_takes_all_it_holds_differently(sides: tuple[CrmEvent, CrmEvent, CrmEvent]) -> None:
    _, crm, google = sides
    result = three_way_merge(None, crm, google)
    assert result.fields_merged == result.fields_agreed == ()
    assert _content(result.merged("crm")) == _content(crm)
    assert _content(result.merged("google")) == _content(google)


@settings(max_examples=200, deadline=None)
@given(synced_events(), st.data())
def test_independent_guest_edits_on_both_sides_are_all_kept(synced: CrmEvent, data: st.DataObject) -> None:
    """Each side edits, adds or removes its own guests (disjoint sets): no conflict, and every edit is in the result."""
    crm_keys = set(data.draw(st.lists(st.sampled_from(POOL), unique=True, max_size=2)))
    google_keys = set(data.draw(st.lists(st.sampled_from([e for e in POOL if e not in crm_keys]), unique=True)))

    def edited_guests(keys: set[str]) -> CrmEvent:
        kept = [a.model_dump() for a in synced.attendees if a.email not in keys]
        for key in sorted(keys):
            if data.draw(st.booleans()):  # this side adds the guest, or changes or removes it
                kept.extend(data.draw(guests([key])))
        return edit(synced, attendees=kept)

    crm, google = edited_guests(crm_keys), edited_guests(google_keys)
    result = three_way_merge(base_of(synced), crm, google)
    assert not result.has_conflict
    for winner in SIDES:
        merged = _content(result.merged(winner))["attendees"]
        for keys, side in ((crm_keys, crm), (google_keys, google)):
            for key in keys:
                assert merged.get(key) == _content(side)["attendees"].get(key)


# --- the user's own answer (an RSVP from the CRM) ---------------------------------------------------------------------
def _invitation() -> CrmEvent:
    """An invitation: the user (bo) is a guest whose own entry Google marks `is_self`."""
    return with_guest(meeting(), "bo@example.com", is_self=True, response_status="needsAction")


def test_an_answer_given_in_the_crm_only_is_kept_beside_googles_change() -> None:
    synced = _invitation()
    crm = with_guest(synced, "bo@example.com", response_status="accepted")
    google = edit(synced, title="Kick-off (moved)")
    result = three_way_merge(base_of(synced), crm, google)
    assert result.fields_from_crm == ("attendees[self].response_status",)
    assert not result.has_conflict
    merged = result.merged("google")
    assert merged.title == "Kick-off (moved)"
    assert guest(merged, "bo@example.com").response_status == "accepted"
    assert guest(merged, "ana@example.com").response_status == "accepted"  # another guest's answer: Google's


@pytest.mark.parametrize(
    ("base_answer", "google_answer"),
    [("needsAction", "declined"), (None, "needsAction")],
    ids=["answered-on-both-sides", "no-base-answer"],
)
def test_an_own_answer_is_googles_unless_only_the_crm_changed_it(base_answer: str | None, google_answer: str) -> None:
    synced = _invitation()
    crm = with_guest(synced, "bo@example.com", response_status="accepted")
    google = with_guest(synced, "bo@example.com", response_status=google_answer)
    base = base_of(synced).model_copy(update={"own_answer": None}) if base_answer is None else base_of(synced)
    merged = three_way_merge(base, crm, google).merged("crm")
    assert guest(merged, "bo@example.com").response_status == google_answer


def test_the_own_answer_has_its_own_base_digest() -> None:
    synced = _invitation()
    assert base_of(synced).own_answer is not None
    assert (
        base_of(with_guest(synced, "bo@example.com", response_status="accepted")).own_answer
        != base_of(synced).own_answer
    )
    assert base_of(meeting()).own_answer is None  # no entry of the user's own
