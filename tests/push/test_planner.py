"""plan_push and the pure conflict helpers: every decision without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.gcal.wire import content_hash, crm_to_google
from shared.models import GoogleLink, Integration, IntegrationStatus, SeriesLink, SyncState, google_event_id_for_crm
from shared.sync.crm_to_google_plan import (
    STAMP_KEY,
    Defer,
    Delete,
    Finalize,
    Insert,
    Nothing,
    Patch,
    PatchInstance,
    decide,
    google_body,
    google_has_our_content,
    google_is_our_version,
    plan_push,
    resolve_send_updates,
    retry_delay,
    wire_event,
)
from tests.push.helpers import EMAIL, T0, crm_event

INTEGRATION = Integration(
    user_id="user-1", status=IntegrationStatus.CONNECTED, account_email=EMAIL, refresh_token_ciphertext="x"
)
LINK = GoogleLink(calendar_id=EMAIL, event_id="abcde12345", etag='"e1"', updated=T0)


def synced(event, **link):
    event.google = LINK.model_copy(update=link)
    event.sync.content_hash = content_hash(event)
    event.sync.state = SyncState.SYNCED
    return event


def test_new_event_is_inserted_with_derived_id_in_target_calendar() -> None:
    action = plan_push(crm_event(), None, INTEGRATION, T0)
    assert action == Insert(EMAIL, google_event_id_for_crm("crm-1"), "all")


def test_primary_target_resolves_to_account_email() -> None:
    integration = INTEGRATION.model_copy(update={"target_calendar_id": "primary", "account_email": "Owner@Example.com"})
    assert plan_push(crm_event(), None, integration, T0).calendar_id == "owner@example.com"
    other = INTEGRATION.model_copy(update={"target_calendar_id": "team@group.calendar.google.com"})
    assert plan_push(crm_event(), None, other, T0).calendar_id == "team@group.calendar.google.com"


def test_unchanged_content_is_nothing_echo_guard() -> None:
    event = synced(crm_event())
    action = plan_push(event, None, INTEGRATION, T0)
    assert isinstance(action, Nothing) and "echo" in action.reason


def test_pull_written_event_is_not_pushed() -> None:
    event = crm_event()
    event.sync.origin = "google"
    event.sync.content_hash = content_hash(event)
    assert isinstance(plan_push(event, None, INTEGRATION, T0), Nothing)


def test_edit_of_linked_event_is_patch_with_etag() -> None:
    event = synced(crm_event())
    event.title = "Changed"
    assert plan_push(event, None, INTEGRATION, T0) == Patch(EMAIL, "abcde12345", '"e1"', "all")


def test_tombstone_deletes_with_etag_then_is_done() -> None:
    event = synced(crm_event())
    event.deleted = True
    assert plan_push(event, None, INTEGRATION, T0) == Delete(EMAIL, "abcde12345", '"e1"', "all")
    event.google = None
    event.sync.content_hash = content_hash(event)
    assert isinstance(plan_push(event, None, INTEGRATION, T0), Nothing)


def test_tombstone_never_pushed_is_finalized_without_google() -> None:
    event = crm_event(deleted=True)
    assert isinstance(plan_push(event, None, INTEGRATION, T0), Finalize)


def test_hard_deleted_document_deletes_unconditionally_from_old_link() -> None:
    action = plan_push(None, LINK, INTEGRATION, T0)
    assert action == Delete(EMAIL, "abcde12345", None, "all", hard=True)
    assert isinstance(plan_push(None, None, INTEGRATION, T0), Nothing)


def test_no_connection_defers_and_needs_reauth_defers_with_retry() -> None:
    assert plan_push(crm_event(), None, None, T0) == Defer("the owner has no Google connection", None)
    reauth = INTEGRATION.model_copy(update={"status": IntegrationStatus.NEEDS_REAUTH})
    action = plan_push(crm_event(), None, reauth, T0)
    assert isinstance(action, Defer) and action.retry_after and "needs_reauth" in action.reason


def test_backoff_suppresses_our_own_failure_write_but_not_a_new_edit() -> None:
    event = crm_event()
    event.sync.state = SyncState.PENDING
    event.sync.attempted_hash = content_hash(event)
    event.sync.next_attempt_at = T0 + dt.timedelta(minutes=5)
    assert isinstance(plan_push(event, None, INTEGRATION, T0), Nothing)
    assert isinstance(plan_push(event, None, INTEGRATION, T0 + dt.timedelta(minutes=6)), Insert)  # due: the cron
    event.title = "edited again"
    assert isinstance(plan_push(event, None, INTEGRATION, T0), Insert)


def test_crm_exception_of_a_series_patches_the_instance() -> None:
    series = SeriesLink(recurring_event_id="master12345", original_start={"date_time": "2027-01-12T10:00:00Z"})
    event = crm_event("exc-1", series=series)
    assert plan_push(event, None, INTEGRATION, T0) == PatchInstance(EMAIL, "master12345", False, "all")
    cancelled = crm_event("exc-2", series=series, status="cancelled")
    assert plan_push(cancelled, None, INTEGRATION, T0) == PatchInstance(EMAIL, "master12345", True, "all")
    linked = synced(crm_event("exc-3", series=series), event_id="master12345_20270112T100000Z")
    linked.status = "cancelled"
    assert plan_push(linked, None, INTEGRATION, T0) == Delete(EMAIL, "master12345_20270112T100000Z", '"e1"', "all")


@pytest.mark.parametrize(
    ("origin", "event_value", "integration_value", "override", "expected"),
    [
        ("crm", None, None, None, "all"),
        ("crm", None, "externalOnly", None, "externalOnly"),
        ("crm", "none", "all", None, "none"),  # bulk import wrote "none" on the event
        ("google", None, "all", None, "none"),  # imported from Google: never invite again
        ("google", "all", "all", "all", "none"),
        ("crm", None, "all", "none", "none"),
    ],
)
def test_send_updates_resolution(origin, event_value, integration_value, override, expected) -> None:
    event = crm_event(send_updates=event_value)
    event.sync.origin = origin
    integration = INTEGRATION.model_copy(update={"send_updates": integration_value})
    assert resolve_send_updates(event, integration, "all", override) == expected


def test_recurring_series_gets_a_time_zone_and_body_carries_meta_and_stamp() -> None:
    event = crm_event(
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"],
        start={"date_time": "2027-01-05T10:00:00+00:00"},
        end={"date_time": "2027-01-05T11:00:00+00:00"},
    )
    body = google_body(event, for_patch=False)
    assert body["start"]["timeZone"] == "UTC" and body["end"]["timeZone"] == "UTC"
    assert body["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=3"]
    private = body["extendedProperties"]["private"]
    assert private["crmEventId"] == "crm-1" and private["crmDealId"] == "deal-7" and private["crmKind"] == "demo"
    assert private[STAMP_KEY] == content_hash(wire_event(event)) != content_hash(event)
    assert google_body(crm_event(), for_patch=True)["recurrence"] is None


def _as_google(event, **changes):
    body = google_body(event, for_patch=False)
    returned = {k: v for k, v in body.items() if v is not None}
    returned.update({"id": "abcde12345", "etag": '"e2"', "updated": "2026-12-03T12:00:00.000Z", "status": "confirmed"})
    returned.update(changes)
    return returned


def test_conflict_helpers_tell_ours_from_a_user_edit() -> None:
    event = crm_event()
    ours = _as_google(event)
    assert google_has_our_content(event, ours, EMAIL, T0)
    older = crm_event(title="older title")
    assert not google_has_our_content(event, _as_google(older), EMAIL, T0)
    assert google_is_our_version(event, _as_google(older), EMAIL, T0)  # a version we pushed, untouched since
    user_edit = _as_google(older, summary="the user renamed it in Google")
    assert not google_is_our_version(event, user_edit, EMAIL, T0)


def test_last_write_wins_by_timestamp_ties_to_crm() -> None:
    event = crm_event(updated_at=T0)
    newer = decide(event, {"updated": "2026-12-03T12:00:01Z"}, T0, "r")
    assert newer.winner == "google" and newer.google_updated > newer.crm_updated_at
    assert decide(event, {"updated": "2026-12-03T11:59:59Z"}, T0, "r").winner == "crm"
    assert decide(event, {"updated": "2026-12-03T12:00:00Z"}, T0, "r").winner == "crm"
    tombstone = crm_event(updated_at=T0 - dt.timedelta(hours=1), deleted=True, deleted_at=T0 + dt.timedelta(seconds=5))
    assert decide(tombstone, {"updated": "2026-12-03T12:00:01Z"}, T0, "r").winner == "crm"


def test_retry_delay_is_jittered_and_bounded() -> None:
    import random

    rng = random.Random(1)
    delays = [retry_delay(n, rng) for n in range(1, 12)]
    assert 15 <= delays[0] <= 30 and all(d <= 3600 for d in delays)
    assert len({round(d, 3) for d in delays}) == len(delays)


def test_crm_to_google_body_is_used_unchanged_for_content() -> None:
    event = crm_event(
        attendees=[{"email": "a@x.com"}],
        reminders={"use_default": False, "overrides": [{"method": "popup", "minutes": 10}]},
        start={"date": "2027-01-05"},
        end={"date": "2027-01-06"},
    )
    body = google_body(event, for_patch=False)
    expected = crm_to_google(event)
    for key in ("summary", "start", "end", "attendees", "reminders", "visibility", "transparency"):
        assert body[key] == expected[key]
    assert body["start"] == {"date": "2027-01-05"}
