"""Calendars appear and disappear (issue 14 §6): a calendar the user can no longer see stops cleanly and shows in
status; a calendar that appeared is offered in status (shared/account/calendar_access.py says why not
calendarList.watch). Google answers a list of a deleted or unshared calendar 404 notFound (guides/errors "404: Not
found"); the stand-in plays that answer with an injected fault in Google's shape."""

from __future__ import annotations

from typing import Any

from shared.context import AppContext
from shared.models import calendar_key
from shared.sync.coalesce import request_pull
from tests.lifecycle.conftest import Api

EMAIL = "alice@example.com"
LIST = "calendar.events.list"


def test_a_calendar_that_disappears_stops_cleanly(api: Api, app_context: AppContext, google: Any) -> None:
    google.control.create_account(EMAIL)
    team = google.control.create_calendar(EMAIL, "Team")["id"]
    assert api.connect("user-a", EMAIL).status_code == 200
    enabled = api.enable("user-a", {"calendar_ids": [EMAIL, team]})
    assert enabled.status_code == 200, enabled.text
    google.control.flush()
    cal = app_context.store.get_calendar("user-a", calendar_key(team))
    assert cal is not None and cal.enabled and cal.channel is not None
    channel_id = cal.channel.id

    google.control.inject_fault(LIST, 404, "notFound", message="Not Found", count=1)
    outcome = request_pull(app_context, "user-a", team, reason="test")
    assert outcome.outcome == "access_lost"
    cal = app_context.store.get_calendar("user-a", calendar_key(team))
    assert cal is not None and not cal.enabled and cal.channel is None and cal.sync_token is None
    assert (cal.last_error or "").startswith("access_lost")
    assert [c["stopped"] for c in google.control.channels() if c["id"] == channel_id] == [True]
    assert app_context.store.get_channel_route(channel_id).stopped_at is not None
    lists = google.control.counters()["by_method"].get(LIST, 0)
    again = request_pull(app_context, "user-a", team, reason="test")  # no loop: nothing is listed any more
    assert again.outcome == "not_enabled"
    assert google.control.counters()["by_method"].get(LIST, 0) == lists

    status = api.call("sync_status", "user-a", method="GET")
    assert status.status_code == 200, status.text
    by_id = {c["calendar_id"]: c for c in status.json()["calendars"]}
    assert any(n.startswith("access_lost") for n in by_id[team]["notices"])
    assert by_id[EMAIL]["enabled"] is True  # the other calendar goes on


def test_a_new_calendar_is_offered(api: Api, app_context: AppContext, google: Any) -> None:
    google.control.create_account(EMAIL)
    assert api.connect("user-a", EMAIL).status_code == 200
    assert api.enable("user-a", {"calendar_ids": [EMAIL]}).status_code == 200
    fresh = google.control.create_calendar(EMAIL, "Projects")["id"]
    status = api.call("sync_status", "user-a", method="GET", params={"include": "google_calendars"})
    assert status.status_code == 200, status.text
    offered = {c["calendar_id"]: c["offered"] for c in status.json()["google_calendars"]}
    assert offered == {EMAIL: False, fresh: True}
