"""Listing, paging and incremental sync."""

from __future__ import annotations

import pytest
from googleapiclient.errors import HttpError

from infra.google_standin.errors import FULL_SYNC_REQUIRED_BODY
from tests.standin.helpers import ALICE, Raw, error_of, reason_of, timed


@pytest.fixture
def service(google):
    return google.service_for(ALICE)


def _insert(service, n: int, **extra) -> list[dict]:
    return [
        service.events()
        .insert(
            calendarId="primary",
            body=timed(
                f"2024-05-{n_ + 1:02d}T10:00:00Z", f"2024-05-{n_ + 1:02d}T11:00:00Z", summary=f"event {n_}", **extra
            ),
        )
        .execute()
        for n_ in range(n)
    ]


def _list_all(service, **params) -> tuple[list[dict], str, int]:
    items, token, pages = [], None, 0
    while True:
        page = service.events().list(calendarId="primary", pageToken=token, **params).execute()
        pages += 1
        assert not ("nextPageToken" in page and "nextSyncToken" in page)
        items += page["items"]
        token = page.get("nextPageToken")
        if not token:
            return items, page["nextSyncToken"], pages


def test_paging_sync_token_only_on_last_page(service) -> None:
    created = _insert(service, 7)
    items, sync_token, pages = _list_all(service, maxResults=3)
    assert pages == 3 and sync_token
    assert sorted(i["id"] for i in items) == sorted(e["id"] for e in created)


def test_short_page_mode(google, service) -> None:
    _insert(service, 5)
    google.control.set_options(page_size_cap=2)
    first = service.events().list(calendarId="primary", maxResults=250).execute()
    assert len(first["items"]) == 2 and "nextPageToken" in first
    items, _, pages = _list_all(service)
    assert len(items) == 5 and pages == 3


def test_max_results_clamped_to_2500(google) -> None:
    response = Raw(google)("GET", "calendars/primary/events", params={"maxResults": "100000"})
    assert response.status_code == 200
    assert Raw(google)("GET", "calendars/primary/events", params={"maxResults": "0"}).status_code == 400


def test_incremental_sync_returns_changes_and_tombstones(google, service) -> None:
    first, second, third = _insert(service, 3)
    _, token, _ = _list_all(service)
    service.events().patch(calendarId="primary", eventId=first["id"], body={"summary": "changed"}).execute()
    service.events().delete(calendarId="primary", eventId=second["id"]).execute()
    google.control.create_event(ALICE, timed("2024-06-01T10:00:00Z", "2024-06-01T11:00:00Z", summary="by user"))
    changes, token2, _ = _list_all(service, syncToken=token)
    by_id = {c["id"]: c for c in changes}
    assert third["id"] not in by_id and len(changes) == 3
    assert by_id[first["id"]]["summary"] == "changed"
    assert by_id[second["id"]]["status"] == "cancelled"
    nothing, _, _ = _list_all(service, syncToken=token2)
    assert nothing == []
    full, _, _ = _list_all(service)
    assert second["id"] not in {i["id"] for i in full}
    with_deleted, _, _ = _list_all(service, showDeleted=True)
    assert second["id"] in {i["id"] for i in with_deleted}


def test_incremental_sync_paged(google, service) -> None:
    _, token, _ = _list_all(service)
    _insert(service, 5)
    changes, _, pages = _list_all(service, syncToken=token, maxResults=2)
    assert len(changes) == 5 and pages == 3


def test_write_during_paging_is_not_lost(service) -> None:
    created = _insert(service, 4)
    first = service.events().list(calendarId="primary", maxResults=2).execute()
    seen = [i["id"] for i in first["items"]]
    service.events().patch(calendarId="primary", eventId=seen[0], body={"summary": "late edit"}).execute()
    rest = service.events().list(calendarId="primary", maxResults=2, pageToken=first["nextPageToken"]).execute()
    assert len(seen) + len(rest["items"]) == len(created)
    changes = service.events().list(calendarId="primary", syncToken=rest["nextSyncToken"]).execute()
    assert [c["summary"] for c in changes["items"]] == ["late edit"]


@pytest.mark.parametrize(
    "param",
    [
        {"iCalUID": "x@google.com"},
        {"orderBy": "updated"},
        {"privateExtendedProperty": "a=b"},
        {"q": "x"},
        {"sharedExtendedProperty": "a=b"},
        {"timeMin": "2024-01-01T00:00:00Z"},
        {"timeMax": "2024-01-01T00:00:00Z"},
        {"updatedMin": "2024-01-01T00:00:00Z"},
        {"showDeleted": False},
    ],
)
def test_forbidden_sync_token_combinations(service, param) -> None:
    _, token, _ = _list_all(service)
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary", syncToken=token, **param).execute()
    status, body = error_of(excinfo)
    assert status == 400 and reason_of(body) == "invalid"


def test_invalidated_and_garbage_tokens_give_exact_410(google, service) -> None:
    _, token, _ = _list_all(service)
    google.control.invalidate_sync_tokens(ALICE)
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert error_of(excinfo) == (410, FULL_SYNC_REQUIRED_BODY)
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary", syncToken="garbage").execute()
    assert error_of(excinfo) == (410, FULL_SYNC_REQUIRED_BODY)
    _, fresh, _ = _list_all(service)
    assert service.events().list(calendarId="primary", syncToken=fresh).execute()["items"] == []


@pytest.mark.parametrize("ttl", [None, 60])
def test_sync_token_lifetime_option(google, service, ttl) -> None:
    google.control.set_options(sync_token_ttl_seconds=ttl)
    _, token, _ = _list_all(service)
    google.control.advance_clock(120)
    request = service.events().list(calendarId="primary", syncToken=token)
    if ttl is None:
        assert request.execute()["items"] == []
    else:
        with pytest.raises(HttpError) as excinfo:
            request.execute()
        assert error_of(excinfo)[0] == 410


def test_filters(google, service) -> None:
    a, b, c = _insert(service, 3)
    service.events().patch(
        calendarId="primary",
        eventId=a["id"],
        body={"extendedProperties": {"private": {"crmId": "42"}}, "description": "Quarterly review"},
    ).execute()
    assert [i["id"] for i in _list_all(service, privateExtendedProperty="crmId=42")[0]] == [a["id"]]
    assert [i["id"] for i in _list_all(service, q="quarterly")[0]] == [a["id"]]
    assert [i["id"] for i in _list_all(service, iCalUID=b["iCalUID"])[0]] == [b["id"]]
    window = _list_all(service, timeMin="2024-05-02T00:00:00Z", timeMax="2024-05-03T00:00:00Z")[0]
    assert [i["id"] for i in window] == [b["id"]]
    google.control.advance_clock(60)
    cutoff = service.events().patch(calendarId="primary", eventId=c["id"], body={"summary": "new"}).execute()
    recent = _list_all(service, updatedMin=cutoff["updated"])[0]
    assert [i["id"] for i in recent] == [c["id"]]


def test_order_by_start_time_requires_single_events(service) -> None:
    with pytest.raises(HttpError) as excinfo:
        service.events().list(calendarId="primary", orderBy="startTime").execute()
    assert error_of(excinfo)[0] == 400
    _insert(service, 3)
    items = service.events().list(calendarId="primary", orderBy="startTime", singleEvents=True).execute()["items"]
    assert [i["start"]["dateTime"] for i in items] == sorted(i["start"]["dateTime"] for i in items)


def test_calendar_list_and_calendars(google, service) -> None:
    for index in range(3):
        google.control.create_calendar(ALICE, f"Extra {index}", "Europe/Berlin")
    entries = service.calendarList().list(maxResults=2).execute()
    assert len(entries["items"]) == 2 and "nextPageToken" in entries
    rest = service.calendarList().list(pageToken=entries["nextPageToken"]).execute()
    everything = entries["items"] + rest["items"]
    assert len(everything) == 4 and "nextSyncToken" in rest
    primary = [e for e in everything if e.get("primary")]
    assert [p["id"] for p in primary] == [ALICE]
    assert all(e["accessRole"] == "owner" for e in everything)
    assert service.calendarList().get(calendarId="primary").execute()["id"] == ALICE
    assert service.calendars().get(calendarId=everything[-1]["id"]).execute()["timeZone"] == "Europe/Berlin"
    raw = Raw(google)
    assert raw("GET", "users/me/calendarList", params={"maxResults": "1000"}).status_code == 200
