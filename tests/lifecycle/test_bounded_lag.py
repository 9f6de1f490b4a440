"""Bounded lag (shared/sync/echo.py, shared/account/repair.py): our own write's notification costs no list, a foreign
change made meanwhile still arrives, a channel that dies is noticed by its missing echo and repaired, sync_enable on
an enabled calendar repairs, and sync_status says when a calendar is quiet or being repaired."""

from __future__ import annotations

from typing import Any

from shared.account.repair import FRESH_CHANNEL_SECONDS
from shared.context import AppContext
from shared.models import CrmEvent, EventTime, crm_event_id_for_google
from shared.sync.crm_to_google_run import push_event
from shared.sync.echo import ECHO_GRACE_SECONDS
from tests.lifecycle.conftest import Api, SkewClock
from tests.lifecycle.helpers import calendar, live_channels, route, setup_user

ALICE = "alice@example.com"


def _enabled(api: Api, app_context: AppContext, google: Any) -> dict[str, Any]:
    setup_user(app_context, google, "user-a", ALICE)
    answer = api.enable("user-a")
    assert answer.status_code == 200, answer.text
    google.control.flush()
    [channel] = live_channels(google)
    return channel


def _crm_write(app_context: AppContext, clock: SkewClock, event_id: str, title: str) -> None:
    """A CRM meeting written and pushed to Google (the push trigger's work, called as the trigger calls it)."""
    app_context.store.save_event(
        CrmEvent(
            id=event_id,
            owner_id="user-a",
            title=title,
            updated_at=clock(),
            start=EventTime(date_time="2031-06-01T10:00:00+00:00"),
            end=EventTime(date_time="2031-06-01T11:00:00+00:00"),
        )
    )
    report = push_event(app_context, event_id)
    assert report.outcome == "pushed" and report.google_writes == 1, report


def _google_event(summary: str, start: str = "2031-06-02T10:00:00Z") -> dict[str, Any]:
    return {"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": start.replace("T10", "T11")}}


def _lists(google: Any) -> int:
    return google.control.counters()["by_method"].get("calendar.events.list", 0)


def test_notification_of_our_own_write_costs_no_list(api: Api, app_context: AppContext, google, clock) -> None:
    channel = _enabled(api, app_context, google)
    google.control.reset_counters()

    google.control.hold_notifications()
    _crm_write(app_context, clock, "crm-1", "Written by the CRM")
    assert route(app_context, channel["id"]).echo_pending == 1  # counted with the write, before its notification
    assert google.control.release_notifications() == 1
    google.control.flush()

    assert _lists(google) == 0  # the echo was answered without an events.list
    assert route(app_context, channel["id"]).echo_pending == 0
    cal = calendar(app_context, "user-a", ALICE)
    assert cal.echo_expected_at is None and cal.last_notification_at is not None
    assert cal.pull_due_at > clock()  # back to the stale-calendar pull, nothing due now
    delivered = [n for n in google.control.notifications() if n["resource_state"] == "exists"]
    assert [n["status"] for n in delivered] == [200]


def test_foreign_edit_between_our_write_and_its_notification_arrives(
    api: Api, app_context: AppContext, google, clock
) -> None:
    _enabled(api, app_context, google)
    control = google.control
    control.hold_notifications()  # our write's notification is still on its way ...
    _crm_write(app_context, clock, "crm-1", "Written by the CRM")
    foreign = control.create_event(ALICE, _google_event("Made in Google meanwhile"))  # ... when the user edits
    control.reset_counters()
    # The foreign change's notification first: it is the one taken for our echo, and ours then pulls.
    assert control.release_notifications(order="reverse") == 2
    control.flush()

    arrived = app_context.store.get_event(crm_event_id_for_google(ALICE, foreign["id"]))
    assert arrived is not None and arrived.title == "Made in Google meanwhile"
    assert _lists(google) == 1  # two notifications, one of them ours: one list


def test_foreign_edit_whose_notification_is_lost_arrives_with_the_stale_pull(
    api: Api, app_context: AppContext, google, clock
) -> None:
    """The worst case of deferring: Google announces our write but drops the foreign change's notification. The
    foreign change then waits for the stale-calendar pull, as any lost notification does: that is the bound."""
    _enabled(api, app_context, google)
    control = google.control
    _crm_write(app_context, clock, "crm-1", "Written by the CRM")
    control.flush()  # our echo answered, no list
    control.drop_notifications(next_n=1)
    foreign = control.create_event(ALICE, _google_event("Notification lost"))
    control.flush()
    foreign_id = crm_event_id_for_google(ALICE, foreign["id"])
    assert app_context.store.get_event(foreign_id) is None

    clock.advance(app_context.settings.stale_sync_seconds * 1.15)  # past the (jittered) stale-calendar pull
    report = api.renew().json()
    assert report["pulled"] == 1, report
    assert app_context.store.get_event(foreign_id).title == "Notification lost"


def test_silent_channel_is_noticed_by_its_missing_echo_and_repaired(
    api: Api, app_context: AppContext, google, clock
) -> None:
    channel = _enabled(api, app_context, google)
    control = google.control
    control.silence_channel(channel["id"])  # Google stops delivering and says nothing
    missed = control.create_event(ALICE, _google_event("Missed by the dead channel"))
    control.flush()
    missed_id = crm_event_id_for_google(ALICE, missed["id"])
    assert app_context.store.get_event(missed_id) is None

    _crm_write(app_context, clock, "crm-1", "Written by the CRM")  # its notification never comes
    control.flush()
    clock.advance(ECHO_GRACE_SECONDS / 3)
    assert api.renew().json()["repaired"] == 0  # within the grace: just waiting
    [waiting] = api.status("user-a").json()["calendars"]
    assert waiting["health"] == "ok" and waiting["awaiting_notification_since"] is not None

    clock.advance(ECHO_GRACE_SECONDS)
    [silent] = api.status("user-a").json()["calendars"]
    assert silent["health"] == "repairing"
    assert any(n.startswith("no_notification_since") for n in silent["notices"]), silent["notices"]

    report = api.renew().json()
    assert report["repaired"] == 1, report
    assert app_context.store.get_event(missed_id).title == "Missed by the dead channel"
    [new] = live_channels(google)
    assert new["id"] != channel["id"] and not new["silent"]
    assert route(app_context, channel["id"]).state == "stopped"
    [healthy] = api.status("user-a").json()["calendars"]
    assert healthy["health"] == "ok" and healthy["awaiting_notification_since"] is None
    assert healthy["last_sync_age_seconds"] == 0

    # The new channel delivers: the next CRM write's echo is answered again without a list.
    control.reset_counters()
    _crm_write(app_context, clock, "crm-2", "After the repair")
    control.flush()
    assert _lists(google) == 0 and calendar(app_context, "user-a", ALICE).echo_expected_at is None


def test_enable_on_an_enabled_calendar_repairs_it(api: Api, app_context: AppContext, google, clock) -> None:
    channel = _enabled(api, app_context, google)
    google.control.silence_channel(channel["id"])
    missed = google.control.create_event(ALICE, _google_event("Missed"))
    google.control.flush()
    clock.advance(FRESH_CHANNEL_SECONDS + 60)  # later the user finds the meeting missing and clicks enable

    answer = api.enable("user-a")
    assert answer.status_code == 200, answer.text
    [cal] = answer.json()["calendars"]
    assert cal["outcome"] == "repaired"
    assert cal["channel_id"] != channel["id"]
    assert app_context.store.get_event(crm_event_id_for_google(ALICE, missed["id"])).title == "Missed"


def test_status_says_when_a_calendar_has_been_quiet(api: Api, app_context: AppContext, google, clock) -> None:
    _enabled(api, app_context, google)
    google.control.create_event(ALICE, _google_event("One change"))
    google.control.flush()
    [fresh] = api.status("user-a").json()["calendars"]
    assert fresh["health"] == "ok" and fresh["last_notification_age_seconds"] is not None

    clock.advance(app_context.settings.stale_sync_seconds + 60)
    [quiet] = api.status("user-a").json()["calendars"]
    assert quiet["health"] == "quiet"
    assert quiet["last_notification_age_seconds"] >= app_context.settings.stale_sync_seconds
    assert quiet["last_sync_age_seconds"] >= app_context.settings.stale_sync_seconds
    assert any(n.startswith("quiet: no notification since") for n in quiet["notices"]), quiet["notices"]
