"""What a conflict decision records for the conflict center: the differing fields and both sides' values."""

from __future__ import annotations

import datetime as dt

from shared.models import Attendee, ConflictDecision, CrmEvent, CrmMeta, EventTime, SyncInfo
from shared.sync.conflict_record import describe

AT = dt.datetime(2027, 1, 5, 10, 0, tzinfo=dt.UTC)


def event(**changes: object) -> CrmEvent:
    base = CrmEvent(
        id="e1",
        owner_id="u1",
        title="Call",
        location="Room 1",
        start=EventTime(date_time="2027-01-05T10:00:00Z"),
        end=EventTime(date_time="2027-01-05T11:00:00Z"),
        attendees=[Attendee(email="a@example.com")],
        meta=CrmMeta(deal_id="d1"),
    )
    return base.model_copy(update=changes)


def decision(winner: str) -> ConflictDecision:
    return ConflictDecision(at=AT, winner=winner, reason="test")  # type: ignore[arg-type]


def test_only_differing_user_visible_fields_are_recorded_with_each_sides_values() -> None:
    crm = event(title="Call (CRM)", meta=CrmMeta(deal_id="d2"))  # CRM metadata is never a user's choice
    google = event(location="Room 9", end=EventTime(date_time="2027-01-05T11:30:00Z"))
    won_by_google = describe(decision("google"), crm=crm, google=google)
    assert won_by_google.fields == ["title", "location", "end"]
    assert won_by_google.winning == {
        "title": "Call",
        "location": "Room 9",
        "end": {"date": None, "date_time": "2027-01-05T11:30:00Z", "time_zone": None},
    }
    assert won_by_google.losing["title"] == "Call (CRM)" and won_by_google.losing["location"] == "Room 1"
    won_by_crm = describe(decision("crm"), crm=crm, google=google)
    assert won_by_crm.winning == won_by_google.losing and won_by_crm.losing == won_by_google.winning


def test_ids_are_stable_and_distinct_per_decision() -> None:
    crm, google = event(title="A"), event(title="B")
    first = describe(decision("crm"), crm=crm, google=google)
    assert first.id == describe(decision("crm"), crm=crm, google=google).id
    assert first.id != describe(decision("google"), crm=crm, google=google).id
    assert first.id is not None and len(first.id) == 20


def test_a_deletion_records_only_that_it_was_deleted() -> None:
    gone = describe(decision("google"), crm=event(title="edited"), google=None)
    assert gone.fields == ["deleted"] and gone.winning == {"deleted": True} and gone.losing == {"deleted": False}
    deleted_in_crm = describe(decision("crm"), crm=event(deleted=True), google=event(title="edited in Google"))
    assert deleted_in_crm.fields == ["deleted"] and deleted_in_crm.winning == {"deleted": True}


def test_last_decision_time_is_stored_with_the_decisions_for_the_conflict_center_query() -> None:
    info = SyncInfo(decisions=[decision("crm"), decision("google").model_copy(update={"at": AT + dt.timedelta(1)})])
    dumped = info.model_dump()
    assert dumped["last_decision_at"] == AT + dt.timedelta(1)
    assert SyncInfo.model_validate(dumped).last_decision_at == AT + dt.timedelta(1)
    assert SyncInfo().model_dump()["last_decision_at"] is None
