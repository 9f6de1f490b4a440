"""The "ask me" mode through the served functions: `sync_enable` turns it on, Google's notification reaches the served
webhook and the pull holds the conflict, the served `push_event` leaves the held event alone, `sync_conflicts` shows
both versions and `sync_resolve` applies the user's choice through the normal push (If-Match), checked in Google and
in the CRM. The stand-in is Google, the emulator Firestore.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from shared.gcal.wire import has_unpushed_change
from shared.models import SyncState, google_event_id_for_crm
from shared.sync.conflict import held_for_user
from shared.sync.merge import base_of
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import connect_user
from tests.lifecycle.conftest import Api
from tests.push.helpers import crm_event, edit, google_writes, save, stored_google_event, trigger

USER = "ask-me-user"
EMAIL = "ask.me@example.com"
GID = google_event_id_for_crm("crm-1")


@pytest.fixture(scope="module")
def conflict_functions() -> Iterator[dict[str, ServedFunction]]:
    served = {
        "sync_conflicts": serve_function("sync_conflicts"),
        "sync_resolve": serve_function("sync_resolve"),
        "push_event": serve_function("push_event", "cloudevent"),
    }
    try:
        yield served
    finally:
        for function in served.values():
            function.stop()


@pytest.fixture
def ask_me_api(api: Api, conflict_functions: dict[str, ServedFunction]) -> Api:
    return Api({**api.served, **conflict_functions}, api.google, api.settings)


def held_meeting(ctx: Any, google: Any, api: Api) -> dict[str, Any]:
    """A pushed meeting; then the CRM renames it while a Google user renames it too and moves it: held."""
    push_fn = api.served["push_event"]
    save(ctx, crm_event(owner_id=USER, title="Kick-off", location="Room 1"))
    trigger(push_fn, ctx, "crm-1")
    google.control.flush()
    edit(ctx, "crm-1", title="CRM title", updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    google.control.edit_event(EMAIL, GID, {"summary": "Google title", "location": "Google room"})
    google.control.flush()  # the notification: the served webhook pulls and meets the unpushed CRM edit

    doc = ctx.store.get_event("crm-1")
    assert doc.sync.state == SyncState.CONFLICT and held_for_user(doc)
    assert doc.title == "CRM title" and doc.location == "Google room"  # not decided; Google's room merged
    writes = google_writes(google.control.counters())
    trigger(push_fn, ctx, "crm-1")  # the CRM edit's trigger: the held event is not pushed
    assert google_writes(google.control.counters()) == writes
    assert stored_google_event(google, EMAIL, GID)["summary"] == "Google title"

    page = api.call("sync_conflicts", USER, method="GET")
    assert page.status_code == 200, page.text
    [conflict] = page.json()["conflicts"]
    assert conflict["pending"] and conflict["resolvable"] and conflict["fields"] == ["title"]
    assert conflict["crm"] == {"title": "CRM title"} and conflict["google"] == {"title": "Google title"}
    return conflict


@pytest.mark.parametrize("keep", ["crm", "google"])
def test_a_held_conflict_waits_for_the_user_and_goes_the_chosen_way(
    app_context: Any, google: Any, ask_me_api: Api, keep: str
) -> None:
    api = ask_me_api
    connect_user(app_context, google, USER, EMAIL)
    enabled = api.enable(USER, {"calendar_ids": [EMAIL], "conflict_mode": "ask_me"})
    assert enabled.status_code == 200, enabled.text
    status = api.status(USER)
    assert status.json()["conflict_mode"] == "ask_me"
    conflict = held_meeting(app_context, google, api)
    assert api.status(USER).json()["events"]["conflict"] == 1

    answer = api.call(
        "sync_resolve", USER, json_body={"event_id": "crm-1", "decision": conflict["decision"], "keep": keep}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "pending"
    trigger(api.served["push_event"], app_context, "crm-1")  # the resolution's write: the normal push, If-Match
    trigger(api.served["push_event"], app_context, "crm-1")
    google.control.flush()

    title = "CRM title" if keep == "crm" else "Google title"
    stored = stored_google_event(google, EMAIL, GID)
    assert stored["summary"] == title and stored["location"] == "Google room"
    doc = app_context.store.get_event("crm-1")
    assert doc.title == title and doc.location == "Google room"
    assert doc.sync.state == SyncState.SYNCED and not has_unpushed_change(doc) and not held_for_user(doc)
    assert doc.google.etag == stored["etag"] and doc.sync.base == base_of(doc)
    decision = next(d for d in doc.sync.decisions if d.id == conflict["decision"])
    assert decision.resolved_by_user is not None and decision.resolved_by_user.keep == keep

    # Resolved once: the other choice is refused and changes nothing.
    other = "google" if keep == "crm" else "crm"
    again = api.call(
        "sync_resolve", USER, json_body={"event_id": "crm-1", "decision": conflict["decision"], "keep": other}
    )
    assert again.status_code == 409, again.text
    assert app_context.store.get_event("crm-1").title == title


def test_last_write_wins_stays_the_default(app_context: Any, google: Any, ask_me_api: Api) -> None:
    api = ask_me_api
    connect_user(app_context, google, USER, EMAIL)
    assert api.enable(USER, {"calendar_ids": [EMAIL]}).status_code == 200
    save(app_context, crm_event(owner_id=USER, title="Kick-off"))
    trigger(api.served["push_event"], app_context, "crm-1")
    google.control.flush()
    edit(app_context, "crm-1", title="CRM title", updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    google.control.edit_event(EMAIL, GID, {"summary": "Google title"})
    google.control.flush()
    doc = app_context.store.get_event("crm-1")
    assert doc.sync.state == SyncState.SYNCED and doc.title == "Google title"  # Google's newer edit won
    assert doc.sync.decisions[-1].winner == "google" and not doc.sync.decisions[-1].pending
