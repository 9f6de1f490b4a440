"""The Google client wrapper against the stand-in: what it retries, what it refuses to retry, and typed errors."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import (
    DuplicateId,
    FullSyncRequired,
    GoogleNotFound,
    GooglePermanentError,
    GoogleTransientError,
    NeedsReauth,
    PreconditionFailed,
)
from shared.gcal.client import CalendarClient, build_credentials
from tests.fixtures.sync import make_settings

EMAIL = "owner@example.com"


@pytest.fixture
def client_and_sleeps(google: Any) -> tuple[CalendarClient, list[float]]:
    google.control.create_account(EMAIL)
    settings = make_settings("unused", google, google_max_retries=3, google_retry_base_seconds=0.5)
    refresh_token = google.control.issue_refresh_token(EMAIL, settings.oauth_client_id)
    sleeps: list[float] = []
    client = CalendarClient(build_credentials(refresh_token, settings), settings, sleep=sleeps.append)
    return client, sleeps


EVENT = {"summary": "x", "start": {"date": "2027-01-01"}, "end": {"date": "2027-01-02"}}


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (503, "backendError"),
        (500, "backendError"),
        (429, "rateLimitExceeded"),
        (403, "userRateLimitExceeded"),
        (403, "rateLimitExceeded"),
    ],
)
def test_retryable_answers_are_retried_with_bounded_full_jitter(
    google: Any, client_and_sleeps: tuple[CalendarClient, list[float]], status: int, reason: str
) -> None:
    client, sleeps = client_and_sleeps
    google.control.inject_fault("calendar.events.list", status, reason, count=2)
    page = client.list_events_page(EMAIL)
    assert "nextSyncToken" in page
    assert client.calls["calendar.events.list"] == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0  # the cap doubles each attempt


def test_retries_are_bounded_then_a_typed_transient_error(
    google: Any, client_and_sleeps: tuple[CalendarClient, list[float]]
) -> None:
    client, sleeps = client_and_sleeps
    google.control.inject_fault("calendar.events.list", 503, "backendError", count=10)
    with pytest.raises(GoogleTransientError) as caught:
        client.list_events_page(EMAIL)
    assert caught.value.status == 503
    assert client.calls["calendar.events.list"] == 4  # 1 + google_max_retries
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (400, "invalid", GooglePermanentError),
        (403, "forbiddenForNonOrganizer", GooglePermanentError),
        (404, "notFound", GoogleNotFound),
    ],
)
def test_other_client_errors_are_not_retried(
    google: Any, client_and_sleeps: tuple[CalendarClient, list[float]], status: int, reason: str, error: type
) -> None:
    client, sleeps = client_and_sleeps
    google.control.inject_fault("calendar.events.list", status, reason, count=1)
    with pytest.raises(error):
        client.list_events_page(EMAIL)
    assert client.calls["calendar.events.list"] == 1
    assert sleeps == []


def test_typed_errors_for_sync_and_write_conflicts(
    google: Any, client_and_sleeps: tuple[CalendarClient, list[float]]
) -> None:
    client, _ = client_and_sleeps
    token = client.list_events_page(EMAIL)["nextSyncToken"]
    google.control.invalidate_sync_tokens(EMAIL)
    with pytest.raises(FullSyncRequired):
        client.list_events_page(EMAIL, sync_token=token)

    created = client.insert_event(EMAIL, dict(EVENT, id="abcdef0123"))
    with pytest.raises(DuplicateId):
        client.insert_event(EMAIL, dict(EVENT, id="abcdef0123"))
    with pytest.raises(PreconditionFailed):
        client.patch_event(EMAIL, created["id"], {"summary": "y"}, etag='"stale"')
    patched = client.patch_event(EMAIL, created["id"], {"summary": "y"}, etag=created["etag"])
    assert patched["etag"] != created["etag"]
    client.delete_event(EMAIL, created["id"])
    client.delete_event(EMAIL, created["id"])  # 410 deleted: already done, not an error


def test_revoked_refresh_token_is_needs_reauth_without_retries(
    google: Any, client_and_sleeps: tuple[CalendarClient, list[float]]
) -> None:
    client, sleeps = client_and_sleeps
    google.control.revoke_token(client._credentials.refresh_token)
    with pytest.raises(NeedsReauth):
        client.list_events_page(EMAIL)
    assert sleeps == []
    assert google.control.counters()["by_method"].get("calendar.events.list", 0) == 0
