"""Google <-> CRM mapping: every kept field survives a round trip, and the content hash is the same either way."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.gcal.wire import (
    content_hash,
    crm_to_google,
    google_content,
    has_unpushed_change,
    meta_from_google,
    new_crm_event_from_google,
)
from shared.models import CrmEvent, CrmMeta, EventTime, google_event_id_for_crm

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
CAL = "owner@example.com"

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
emails = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.com", fullmatch=True)


@st.composite
def crm_events(draw: st.DrawFn) -> CrmEvent:
    all_day = draw(st.booleans())
    day = draw(st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31)))
    if all_day:
        start = EventTime(date=day.isoformat())
        end = EventTime(date=(day + dt.timedelta(days=draw(st.integers(1, 3)))).isoformat())
    else:
        zone = draw(st.sampled_from([None, "Europe/Paris", "America/New_York", "UTC"]))
        begin = dt.datetime.combine(day, dt.time(draw(st.integers(0, 22))), tzinfo=dt.UTC)
        finish = begin + dt.timedelta(minutes=draw(st.integers(0, 600)))
        start = EventTime(date_time=begin.isoformat(), time_zone=zone)
        end = EventTime(date_time=finish.isoformat(), time_zone=zone)
    attendees = [
        {"email": e, "response_status": draw(st.sampled_from(["needsAction", "accepted", "declined", "tentative"]))}
        for e in draw(st.lists(emails, max_size=4, unique=True))
    ]
    use_default = draw(st.booleans())
    return CrmEvent.model_validate(
        {
            "id": draw(st.from_regex(r"[A-Za-z0-9]{6,20}", fullmatch=True)),
            "owner_id": "user-1",
            "title": draw(texts),
            "description": draw(st.none() | texts),
            "location": draw(st.none() | texts),
            "start": start,
            "end": end,
            "status": draw(st.sampled_from(["confirmed", "tentative"])),
            "attendees": attendees,
            "reminders": {
                "use_default": use_default,
                "overrides": []
                if use_default
                else [
                    {"method": draw(st.sampled_from(["email", "popup"])), "minutes": draw(st.integers(0, 40320))}
                    for _ in range(draw(st.integers(0, 5)))
                ],
            },
            "recurrence": draw(st.sampled_from([[], ["RRULE:FREQ=WEEKLY;COUNT=5"]])) if not all_day else [],
            "attachments": [
                {"file_url": f"https://drive.example/{i}", "title": f"doc {i}"} for i in range(draw(st.integers(0, 3)))
            ],
            "visibility": draw(st.sampled_from(["default", "public", "private", "confidential"])),
            "transparency": draw(st.sampled_from(["opaque", "transparent"])),
            "meta": {"deal_id": draw(st.none() | st.just("deal-7")), "kind": draw(st.none() | st.just("demo"))},
        }
    )


def _as_google_returns(body: dict, google_id: str) -> dict:
    """What Google returns for that body: ids, etag, timestamps added; None fields absent."""
    returned = {k: v for k, v in body.items() if v is not None}
    returned.update({"id": google_id, "etag": '"1"', "updated": "2026-12-03T12:00:00.000Z", "kind": "calendar#event"})
    return returned


@settings(max_examples=150, deadline=None)
@given(crm_events())
def test_crm_to_google_to_crm_keeps_content_and_hash(event: CrmEvent) -> None:
    body = crm_to_google(event)
    google_event = _as_google_returns(body, google_event_id_for_crm(event.id))
    back = event.model_copy(update=google_content(google_event, CAL))
    assert content_hash(back) == content_hash(event)
    assert meta_from_google(google_event).crm_event_id == event.id
    assert meta_from_google(google_event).deal_id == event.meta.deal_id


def test_google_event_fields_land_in_the_crm_event() -> None:
    google_event = {
        "id": "abcdef12345",
        "etag": '"7"',
        "status": "confirmed",
        "summary": "Quarterly review",
        "description": "Bring numbers",
        "location": "Room 4",
        "htmlLink": "https://calendar.example/e/abcdef12345",
        "updated": "2026-12-01T09:30:00.000Z",
        "start": {"dateTime": "2026-12-10T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-12-10T11:00:00+01:00", "timeZone": "Europe/Paris"},
        "organizer": {"email": CAL, "self": True},
        "attendees": [{"email": "b@x.com", "responseStatus": "accepted", "displayName": "B"}],
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 15}]},
        "attachments": [{"fileUrl": "https://drive.example/f", "title": "deck", "mimeType": "application/pdf"}],
        "conferenceData": {"entryPoints": [{"entryPointType": "video", "uri": "https://meet.example/xyz"}]},
        "visibility": "private",
        "transparency": "transparent",
        "extendedProperties": {"private": {"crmDealId": "deal-1"}},
    }
    event = new_crm_event_from_google(google_event, CAL, "user-1", NOW)
    assert event.title == "Quarterly review" and event.location == "Room 4"
    assert event.start.time_zone == "Europe/Paris"
    assert event.attendees[0].response_status == "accepted"
    assert event.organizer is not None and event.organizer.is_self
    assert event.attachments[0].mime_type == "application/pdf"
    assert event.conference_link == "https://meet.example/xyz"
    assert event.google is not None and event.google.etag == '"7"'
    assert event.google.updated == dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    assert event.meta == CrmMeta()  # metadata from Google is never adopted as CRM metadata
    assert not has_unpushed_change(event)


def test_cancelled_instance_becomes_an_exception_at_its_original_slot() -> None:
    cancelled = {
        "id": "series1_20261210T090000Z",
        "status": "cancelled",
        "recurringEventId": "series1",
        "originalStartTime": {"dateTime": "2026-12-10T09:00:00Z", "timeZone": "UTC"},
    }
    content = google_content(cancelled, CAL)
    assert content["status"] == "cancelled"
    assert content["series"].recurring_event_id == "series1"
    assert content["start"].date_time == "2026-12-10T09:00:00Z"


def test_an_edit_shows_as_unpushed_change() -> None:
    event = new_crm_event_from_google(
        {"id": "abcdef12345", "summary": "a", "start": {"date": "2026-12-10"}, "end": {"date": "2026-12-11"}},
        CAL,
        "user-1",
        NOW,
    )
    edited = event.model_copy(update={"title": "b"})
    assert has_unpushed_change(edited)
    assert not has_unpushed_change(event)
