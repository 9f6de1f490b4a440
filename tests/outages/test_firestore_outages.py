"""Firestore outages, staged with the fault proxy: the webhook answers 503 so Google retries, the push trigger fails
so Eventarc redelivers, the cron fails or stops part-way and the next run resumes; afterwards both sides converge
with nothing lost and nothing doubled.

The Firestore client retries some statuses by itself (UNAVAILABLE on every call, DEADLINE_EXCEEDED on reads,
RESOURCE_EXHAUSTED on commits) for up to its default 60 s, so a short outage of those is absorbed inside a request;
the immediate failures are staged with the statuses the client does not retry on that call."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from infra.firestore_faults import FirestoreFaultProxy
from shared.models import calendar_key
from shared.store import EVENTS
from tests.fixtures.sync import connect_user
from tests.pull.conftest import make_synced_user
from tests.push.helpers import EMAIL, OWNER, crm_event, google_writes, post_written, save


def _crm_titles(ctx: Any) -> list[str]:
    return sorted(s.to_dict().get("title") for s in ctx.store.db.collection(EVENTS).stream())


def _google_titles(google: Any, calendar_id: str) -> list[str]:
    return sorted(e.get("summary") for e in google.control.raw_events(calendar_id) if e.get("status") != "cancelled")


def _new_google_event(google: Any, calendar_id: str, title: str, day: int = 5) -> dict[str, Any]:
    return google.control.create_event(
        calendar_id,
        {
            "summary": title,
            "start": {"dateTime": f"2027-01-{day:02d}T10:00:00Z"},
            "end": {"dateTime": f"2027-01-{day:02d}T11:00:00Z"},
        },
    )


@pytest.mark.parametrize("code", ["ABORTED", "RESOURCE_EXHAUSTED"])
def test_webhook_answers_503_during_an_outage_and_googles_retry_applies_the_change(
    app_context: Any, google: Any, served: Any, firestore_faults: FirestoreFaultProxy, code: str
) -> None:
    google.control.set_options(sync_before_response=False, push_retry_base=0.5)
    user = make_synced_user(app_context, google, served["webhook"].url + "/")
    before = _crm_titles(app_context)

    firestore_faults.inject(code)
    answer = user.notify()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "store_unavailable"
    assert answer.headers.get("Retry-After")
    # Google's own notification of a new event meets the same outage and is retried.
    _new_google_event(google, user.calendar_id, "Budget review")
    deadline = time.monotonic() + 20
    while not any(n.get("status") == 503 for n in google.control.notifications()):
        assert time.monotonic() < deadline, google.control.notifications()
        time.sleep(0.1)
    assert firestore_faults.refused, "the outage refused nothing"
    firestore_faults.clear()

    assert _crm_titles(app_context) == before  # the refused notification changed nothing
    user.flush()  # Google's retry, now that Firestore answers
    assert _crm_titles(app_context) == sorted([*before, "Budget review"])
    assert any(n.get("status") == 200 for n in google.control.notifications())


def test_a_short_unavailable_outage_is_absorbed_by_the_client_retries(
    app_context: Any, google: Any, served: Any, firestore_faults: FirestoreFaultProxy
) -> None:
    google.control.set_options(sync_before_response=False)
    user = make_synced_user(app_context, google, served["webhook"].url + "/")
    google.control.pause_delivery()
    _new_google_event(google, user.calendar_id, "Kick-off")
    firestore_faults.inject("UNAVAILABLE", seconds=2)
    answer = user.notify()
    assert answer.status_code == 200, answer.text
    assert firestore_faults.refused, "the outage refused nothing"
    assert "Kick-off" in _crm_titles(app_context)
    google.control.resume_delivery()


@pytest.mark.parametrize("methods", [None, {"Commit"}], ids=["every-call", "commits-only"])
def test_push_trigger_fails_during_an_outage_and_the_redelivery_writes_google_once(
    app_context: Any, google: Any, served: Any, firestore_faults: FirestoreFaultProxy, methods: set[str] | None
) -> None:
    connect_user(app_context, google, OWNER, EMAIL)
    save(app_context, crm_event("crm-outage-1", title="Quote review"))
    new = app_context.store.event_ref("crm-outage-1").get().to_dict()
    url, project = served["push_event"].url, app_context.settings.project_id

    # Every call refused: nothing is read, nothing reaches Google. Commits only: the Google write may happen and
    # its link cannot be stored, which the redelivery must adopt instead of writing a second copy.
    firestore_faults.inject("ABORTED", methods=methods)
    failed = post_written(url, project, "crm-outage-1", new=new)
    # A CloudEvent function signals failure by raising (functions/push.py): any non-2xx makes Eventarc redeliver.
    assert failed.status_code >= 500, failed.text
    again = post_written(url, project, "crm-outage-1", new=new)
    assert again.status_code >= 500, again.text
    firestore_faults.clear()
    if methods is None:  # nothing could be read: nothing reached Google
        assert google_writes(google.control.counters()) == 0
        assert _google_titles(google, EMAIL) == []
    else:  # the event reached Google, its link did not reach Firestore
        assert _google_titles(google, EMAIL) == ["Quote review"]
        stored = app_context.store.get_event("crm-outage-1")
        assert stored is not None and stored.google is None

    redelivered = post_written(url, project, "crm-outage-1", new=new)
    assert redelivered.status_code == 200, redelivered.text
    assert _google_titles(google, EMAIL) == ["Quote review"]
    stored = app_context.store.get_event("crm-outage-1")
    assert stored is not None and stored.google is not None
    assert stored.sync.state.value == "synced"


def test_cron_fails_during_an_outage_stops_part_way_in_a_flaky_one_and_the_next_run_resumes(
    app_context: Any, google: Any, served: Any, firestore_faults: FirestoreFaultProxy
) -> None:
    google.control.set_options(sync_before_response=False)
    webhook = served["webhook"].url + "/"
    users = [
        make_synced_user(app_context, google, webhook, user_id=f"user-{i}", email=f"u{i}@example.com") for i in range(3)
    ]
    google.control.pause_delivery()  # notifications lost: only the cron's pulls can bring these edits
    expected: list[str] = []
    for i, user in enumerate(users):
        for j in range(2):
            expected.append(_new_google_event(google, user.calendar_id, f"u{i}-meeting-{j}", day=1 + j)["summary"])
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for user in users:
        app_context.store.update_calendar(user.user_id, calendar_key(user.calendar_id), {"pull_due_at": past})

    def renew() -> Any:
        import requests

        return requests.post(served["renew"].url + "/", json={}, timeout=120)

    # A whole outage: the run cannot even find what is due; a 5xx, so Cloud Scheduler retries the job.
    firestore_faults.inject("ABORTED")
    failed = renew()
    assert failed.status_code >= 500, failed.text
    assert failed.json()["error"]["code"] == "store_unavailable"
    firestore_faults.clear()

    # A flaky Firestore: the first commits of the run are refused; the run goes on with the other calendars.
    firestore_faults.inject("ABORTED", methods={"Commit"}, calls=2)
    partial = renew()
    assert partial.status_code == 200, partial.text
    assert firestore_faults.refused["Commit"] == 2
    assert partial.json()["pulled"] < len(users), partial.json()
    firestore_faults.clear()

    runs = 0
    while sorted(_crm_titles(app_context)) != sorted(expected):
        runs += 1
        assert runs <= 6, (_crm_titles(app_context), expected)
        time.sleep(app_context.settings.sync_lease_seconds / 2)  # a lease the refused pull left must expire
        assert renew().status_code == 200
    google.control.resume_delivery()


def test_a_standing_unavailable_outage_gets_a_503_not_a_hung_request(
    app_context: Any, google: Any, served: Any, firestore_faults: FirestoreFaultProxy
) -> None:
    """UNAVAILABLE is retried by the client itself (for 300 s on batchGet by default): the store bounds every call
    (FIRESTORE_CALL_DEADLINE_SECONDS), so a notification during a standing outage is answered 503 while Google still
    waits for the answer, and Google's retry later applies it. Here the bound is 1 s."""
    from shared.context import AppContext, set_default_context

    google.control.set_options(sync_before_response=False)
    user = make_synced_user(app_context, google, served["webhook"].url + "/")
    before = _crm_titles(app_context)
    bounded = AppContext.create(
        app_context.settings.model_copy(update={"firestore_call_deadline_seconds": 1.0}), app_context.store.db
    )
    set_default_context(bounded)
    try:
        firestore_faults.inject("UNAVAILABLE")  # until cleared
        answer = user.notify()  # the test client gives up after 30 s
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert sum(firestore_faults.refused.values()) > 1, "the client's own retries were not used"
    finally:
        firestore_faults.clear()
        set_default_context(app_context)
    assert _crm_titles(app_context) == before
