"""The renewal + reconcile run: overlap, re-watch after downtime, concurrency, needs_reauth, orphans, deadline."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from shared.account import channels, renewal
from shared.context import AppContext
from shared.models import ChannelRoute, calendar_key
from shared.sync import coalesce
from tests.lifecycle.conftest import Api, SkewClock
from tests.lifecycle.helpers import calendar, live_channels, refresh_token_of, route, setup_user

ALICE = "alice@example.com"
BOB = "bob@example.com"
DAY = 86400
INTO_RENEW_WINDOW = 6.5 * DAY  # channels live 7 days; renewal is due from ~1 day before expiry


def _enable(api: Api, uid: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = api.enable(uid, body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_nothing_due_means_no_work(api: Api, app_context: AppContext, google, clock: SkewClock) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    _enable(api, "user-a")
    google.control.reset_counters()
    answer = api.renew()
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["counts"]["renew_due"] == 0 and report["counts"]["pull_due"] == 0
    assert report["google_calls"] == 0
    assert google.control.counters()["total"] == 0


def test_renewal_overlaps_old_and_new_channel(
    api: Api, app_context: AppContext, google, clock: SkewClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    _enable(api, "user-a")
    [old] = live_channels(google)
    clock.advance(INTO_RENEW_WINDOW)

    seen: dict[str, Any] = {}
    real_retire = channels.retire_channel

    def spy(ctx: AppContext, client: Any, channel_id: str, resource_id: str, **kwargs: Any) -> bool:
        # At the moment the old channel is retired, the new one already exists and routes, and the old still routes.
        cal = calendar(ctx, "user-a", ALICE)
        seen["calendar_channel"] = cal.channel.id
        seen["old_route"] = route(ctx, channel_id).state
        seen["new_route"] = route(ctx, cal.channel.id).state
        seen["live_at_google"] = {c["id"] for c in live_channels(google)}
        return real_retire(ctx, client, channel_id, resource_id, **kwargs)

    monkeypatch.setattr(channels, "retire_channel", spy)
    report = api.renew().json()
    assert report["renewed"] == 1, report
    new_id = seen["calendar_channel"]
    assert new_id != old["id"]
    assert seen["old_route"] == "active" and seen["new_route"] == "active"
    assert seen["live_at_google"] == {old["id"], new_id}
    # Afterwards: the old channel is stopped and its route STOPPED; the new one is current.
    assert route(app_context, old["id"]).state == "stopped"
    assert [c["id"] for c in live_channels(google)] == [new_id]
    cal = calendar(app_context, "user-a", ALICE)
    assert cal.channel.id == new_id and cal.renew_due_at > clock()
    # A second run finds nothing to renew.
    assert api.renew().json()["renewed"] == 0


def test_concurrent_cron_runs_create_one_new_channel_per_calendar(
    api: Api, app_context: AppContext, google, clock: SkewClock
) -> None:
    work, home = setup_user(app_context, google, "user-a", ALICE, secondary=("Work", "Home"))
    _enable(api, "user-a", {"calendar_ids": ["primary", work, home]})
    assert len(google.control.channels()) == 3
    clock.advance(INTO_RENEW_WINDOW)
    reports: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: reports.append(api.renew().json())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["renewed"] for r in reports) == 3, reports
    assert len(google.control.channels()) == 6  # 3 old + exactly 3 new
    for calendar_id in (ALICE, work, home):
        [live] = live_channels(google, calendar_id)
        assert calendar(app_context, "user-a", calendar_id).channel.id == live["id"]


def test_expired_channel_is_rewatched_and_caught_up(
    api: Api, app_context: AppContext, google, clock: SkewClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    _enable(api, "user-a")
    [old] = live_channels(google)
    pulls: list[tuple[str, str]] = []
    real_pull = coalesce.request_pull

    def spy(ctx: AppContext, user_id: str, calendar_id: str, *, reason: str, full: bool = False) -> object:
        pulls.append((calendar_id, reason))
        return real_pull(ctx, user_id, calendar_id, reason=reason, full=full)

    monkeypatch.setattr(coalesce, "request_pull", spy)
    clock.advance(8 * DAY)  # the service was down: the channel expired at Google
    assert live_channels(google) == []
    report = api.renew().json()
    assert report["rewatched"] == 1, report
    assert pulls == [(ALICE, "renewal:catch_up")]  # caught up from the stored sync token, not re-imported
    [new] = live_channels(google)
    assert new["id"] != old["id"]
    assert route(app_context, old["id"]).state == "stopped"
    cal = calendar(app_context, "user-a", ALICE)
    assert cal.channel.id == new["id"] and cal.pull_due_at > clock()


def test_changes_made_while_no_channel_existed_all_arrive(
    api: Api, app_context: AppContext, google, clock: SkewClock
) -> None:
    from shared.models import crm_event_id_for_google

    setup_user(app_context, google, "user-a", ALICE)
    control = google.control
    keep = control.create_event(ALICE, _event("Kept", "2031-03-01T10:00:00Z"))
    edit = control.create_event(ALICE, _event("Before edit", "2031-03-02T10:00:00Z"))
    gone = control.create_event(ALICE, _event("To delete", "2031-03-03T10:00:00Z"))
    _enable(api, "user-a")
    control.flush()
    clock.advance(8 * DAY)  # downtime: the channel expires, then the user changes things in Google
    assert live_channels(google) == []
    added = control.create_event(ALICE, _event("Added in downtime", "2031-03-04T10:00:00Z"))
    control.edit_event(ALICE, edit["id"], {"summary": "After edit"})
    control.delete_event(ALICE, gone["id"])
    assert control.notifications() == [] or all(
        n["resource_state"] == "sync" or n["time"] < added["created"] for n in control.notifications()
    )

    report = api.renew().json()
    assert report["rewatched"] == 1, report
    events = {
        e.id: e
        for e in (
            app_context.store.get_event(crm_event_id_for_google(ALICE, g["id"])) for g in (keep, edit, gone, added)
        )
        if e is not None
    }
    assert events[crm_event_id_for_google(ALICE, keep["id"])].title == "Kept"
    assert events[crm_event_id_for_google(ALICE, edit["id"])].title == "After edit"
    assert events[crm_event_id_for_google(ALICE, added["id"])].title == "Added in downtime"
    deleted = events.get(crm_event_id_for_google(ALICE, gone["id"]))
    assert deleted is None or deleted.deleted


def _event(summary: str, start: str) -> dict[str, Any]:
    end = (dt.datetime.fromisoformat(start.replace("Z", "+00:00")) + dt.timedelta(hours=1)).isoformat()
    return {"summary": summary, "start": {"dateTime": start}, "end": {"dateTime": end}}


def test_revoked_token_is_needs_reauth_and_reported(
    api: Api, app_context: AppContext, google, clock: SkewClock
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    setup_user(app_context, google, "user-b", BOB)
    _enable(api, "user-a")
    _enable(api, "user-b")
    google.control.revoke_token(refresh_token_of(app_context, "user-a"))
    clock.advance(INTO_RENEW_WINDOW)
    report = api.renew().json()
    assert report["needs_reauth_users"] == ["user-a"], report
    assert report["counts"]["needs_reauth_skipped"] == 1
    assert report["renewed"] == 1  # Bob is unaffected
    integration = app_context.store.get_integration("user-a")
    assert integration.status == "needs_reauth"
    status = api.status("user-a").json()
    assert status["needs_reauth"] is True and status["connected"] is False
    # Skipped, not retried in a hot loop: the next run does not touch user-a's calendar at all.
    google.control.reset_counters()
    again = api.renew().json()
    assert again["counts"].get("renew_due", 0) == 0
    assert google.control.counters()["total"] == 0
    # Enabling more calendars needs a reconnect (409 with a clear code).
    blocked = api.enable("user-a")
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "needs_reauth"
    # Reconnecting makes the calendar due again; the next run re-watches it.
    assert api.connect("user-a", ALICE).status_code == 200
    cal = calendar(app_context, "user-a", ALICE)
    assert cal.pull_due_at <= clock()


def test_stale_calendar_is_pulled(
    api: Api, app_context: AppContext, google, clock: SkewClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    _enable(api, "user-a")
    pulls: list[str] = []
    real_pull = coalesce.request_pull
    monkeypatch.setattr(
        coalesce,
        "request_pull",
        lambda ctx, uid, cid, *, reason, full=False: (
            pulls.append(reason) or real_pull(ctx, uid, cid, reason=reason, full=full)
        ),
    )
    clock.advance(app_context.settings.stale_sync_seconds * 1.3)  # past the (jittered) stale-sync time
    report = api.renew().json()
    assert report["pulled"] == 1 and report["renewed"] == 0, report
    assert pulls == ["stale_sync"]
    assert calendar(app_context, "user-a", ALICE).pull_due_at > clock()


def test_due_pushes_are_retried(api: Api, app_context: AppContext, google, clock: SkewClock) -> None:
    """A CRM edit that failed transiently (Google 503 storm) is pushed by the cron once its backoff has passed."""
    from shared.models import CrmEvent, EventTime, google_event_id_for_crm
    from shared.sync.crm_to_google_run import push_event

    setup_user(app_context, google, "user-a", ALICE)
    app_context.store.save_event(
        CrmEvent(
            id="crm-retry",
            owner_id="user-a",
            title="Retried",
            updated_at=clock(),
            start=EventTime(date_time="2031-08-01T10:00:00+00:00"),
            end=EventTime(date_time="2031-08-01T11:00:00+00:00"),
        )
    )
    google.control.inject_fault("calendar.events.insert", 503, "backendError", count=50)
    assert push_event(app_context, "crm-retry").outcome == "failed"
    parked = app_context.store.get_event("crm-retry")
    assert parked.sync.state == "pending"
    assert parked.sync.next_attempt_at > clock()
    google.control.clear_faults()

    report = api.renew().json()  # not due yet: the backoff is respected
    assert report["pushed"]["pushed"] == 0, report
    clock.advance(2 * 3600)
    report = api.renew().json()
    assert report["pushed"]["pushed"] == 1, report
    gid = google_event_id_for_crm("crm-retry")
    assert [e["summary"] for e in google.control.raw_events(ALICE) if e["id"] == gid] == ["Retried"]
    assert app_context.store.get_event("crm-retry").sync.state == "synced"


def test_orphaned_channel_is_stopped(api: Api, app_context: AppContext, google, clock: SkewClock) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    _enable(api, "user-a")
    [channel] = live_channels(google)
    # A crash left the route ACTIVE while the calendar is no longer enabled.
    cal = calendar(app_context, "user-a", ALICE)
    app_context.store.update_calendar("user-a", cal.key, {"enabled": False, "channel": None, "renew_due_at": None})
    clock.advance(INTO_RENEW_WINDOW)
    report = api.renew().json()
    assert report["counts"]["orphans_stopped"] == 1, report
    assert route(app_context, channel["id"]).state == "stopped"
    assert live_channels(google) == []


def test_expired_routes_are_closed_without_google_calls(app_context: AppContext, google, clock: SkewClock) -> None:
    now = clock()
    app_context.store.save_channel_route(
        ChannelRoute(
            channel_id="dead-channel",
            user_id="user-x",
            calendar_id="x@example.com",
            calendar_key=calendar_key("x@example.com"),
            resource_id="r",
            token_digest="d",
            expiration=now - dt.timedelta(hours=1),
            created_at=now - dt.timedelta(days=8),
        )
    )
    report = renewal.run_renewal(app_context)
    assert report["counts"]["routes_expired"] == 1
    assert report["google_calls"] == 0
    assert route(app_context, "dead-channel").state == "stopped"


def test_run_stops_at_its_deadline(api: Api, app_context: AppContext, google, clock: SkewClock) -> None:
    work, home = setup_user(app_context, google, "user-a", ALICE, secondary=("Work", "Home"))
    _enable(api, "user-a", {"calendar_ids": ["primary", work, home]})
    clock.advance(INTO_RENEW_WINDOW)
    report = renewal.run_renewal(app_context, deadline_seconds=1e-6)
    assert report["renewed"] == 0 and report["deferred"] >= 3
    # Everything is still due for the next run.
    assert renewal.run_renewal(app_context)["renewed"] == 3


def test_one_run_takes_batch_after_batch_until_nothing_is_due(
    api: Api, app_context: AppContext, google, clock: SkewClock
) -> None:
    """More due than one batch: the run pages on (cursor after the last taken) instead of leaving the rest for the next
    run, and a calendar whose renewal failed stays due for the next run without being taken twice in this one."""
    work, home = setup_user(app_context, google, "user-a", ALICE, secondary=("Work", "Home"))
    _enable(api, "user-a", {"calendar_ids": ["primary", work, home]})
    setup_user(app_context, google, "user-b", BOB)
    _enable(api, "user-b")
    clock.advance(INTO_RENEW_WINDOW)
    retries = app_context.settings.google_max_retries
    google.control.inject_fault("calendar.events.watch", status=500, count=retries + 1)  # the first renewal fails
    report = renewal.run_renewal(app_context, batch_limit=1)
    counts = report["counts"]
    assert counts["renew_due"] == 4, counts  # every due calendar taken once, one per batch
    assert counts["due_batches"] >= 4, counts
    assert report["renewed"] == 3, report
    still_due, _ = app_context.store.due_calendars("renew_due_at", clock(), 10)
    assert len(still_due) == 1
    # The next run takes the one left due, and only it.
    again = renewal.run_renewal(app_context, batch_limit=1)
    assert again["counts"]["renew_due"] == 1 and again["renewed"] == 1, again


def test_cost_grows_with_due_work_not_with_calendars(app_context: AppContext, google, clock: SkewClock) -> None:
    """Many enabled calendars that are not due cost nothing; only the due one is read."""
    from shared.models import ChannelInfo, SyncedCalendar

    now = clock()
    with app_context.store.batch() as batch:
        for index in range(60):
            cal = SyncedCalendar(
                user_id=f"idle-{index}",
                calendar_id=f"idle-{index}@example.com",
                enabled=True,
                channel=ChannelInfo(
                    id=f"c{index}", resource_id="r", token_digest="d", expiration=now + dt.timedelta(days=5)
                ),
                renew_due_at=now + dt.timedelta(days=4),
                pull_due_at=now + dt.timedelta(hours=3),
            )
            batch.set(app_context.store.calendar_ref(cal.user_id, cal.key), cal.model_dump())
    report = renewal.run_renewal(app_context)
    assert report["counts"]["renew_due"] == 0
    assert report["firestore"].get("reads", 0) <= 2


def test_renew_function_checks_method_and_scheduler_token(api: Api, app_context: AppContext, google) -> None:
    assert api.call("renew", None, method="GET").status_code == 405
    assert api.renew({"unexpected": 1}).status_code == 400
    renew_url = api.served["renew"].url + "/"
    app_context.settings = app_context.settings.model_copy(
        update={
            "scheduler_oidc_audience": renew_url,
            "scheduler_invoker_email": "scheduler@proj.iam.gserviceaccount.com",
        }
    )
    assert api.renew().status_code == 401
    import time

    def token(email: str, audience: str = renew_url) -> str:
        return google.control.mint_id_token(
            "1234567890", audience, issuer="https://accounts.google.com", email=email, issued_at=time.time()
        )

    assert api.call("renew", None, token=token("someone@else.com"), json_body={}).status_code == 401
    assert (
        api.call(
            "renew", None, token=token("scheduler@proj.iam.gserviceaccount.com", "https://x"), json_body={}
        ).status_code
        == 401
    )
    ok = api.call("renew", None, token=token("scheduler@proj.iam.gserviceaccount.com"), json_body={})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True


def test_cron_pushes_crm_edits_whose_trigger_never_ran(api: Api, app_context: AppContext, google) -> None:
    from shared.models import CrmEvent, EventTime, google_event_id_for_crm

    setup_user(app_context, google, "user-a", ALICE)
    now = app_context.clock()
    old_enough = now - dt.timedelta(minutes=10)
    too_fresh = now - dt.timedelta(seconds=30)  # its trigger may still be on its way: left to it

    def write(event_id: str, title: str, updated_at: dt.datetime) -> None:
        app_context.store.save_event(
            CrmEvent(
                id=event_id,
                owner_id="user-a",
                title=title,
                updated_at=updated_at,
                start=EventTime(date_time="2031-07-01T10:00:00+00:00"),
                end=EventTime(date_time="2031-07-01T11:00:00+00:00"),
            )
        )

    def in_google(event_id: str) -> dict[str, Any] | None:
        gid = google_event_id_for_crm(event_id)
        return next((e for e in google.control.raw_events(ALICE) if e["id"] == gid), None)

    write("lost-create", "Never triggered", old_enough)
    write("fresh-create", "Trigger on its way", too_fresh)
    report = renewal.run_renewal(app_context, now=now)
    assert report["swept"]["pushed"] == 1
    assert in_google("lost-create")["summary"] == "Never triggered"
    assert in_google("fresh-create") is None

    # A later edit whose trigger is lost too: the next run pushes it as one conditional patch.
    app_context.store.update_event(
        "lost-create", {"title": "Edited, trigger lost", "updated_at": now + dt.timedelta(minutes=1)}
    )
    google.control.reset_counters()
    later = now + dt.timedelta(minutes=10)
    report = renewal.run_renewal(app_context, now=later)
    assert in_google("lost-create")["summary"] == "Edited, trigger lost"
    assert in_google("fresh-create")["summary"] == "Trigger on its way"
    by_method = google.control.counters()["by_method"]
    assert by_method.get("calendar.events.insert", 0) == 1  # fresh-create only
    assert by_method.get("calendar.events.patch", 0) == 1  # lost-create's edit

    # Nothing left: a third run writes nothing to Google.
    google.control.reset_counters()
    renewal.run_renewal(app_context, now=later + dt.timedelta(minutes=10))
    writes = {
        m: n
        for m, n in google.control.counters()["by_method"].items()
        if m.split(".")[-1] in ("insert", "patch", "update", "delete")
    }
    assert writes == {}


def test_sweep_pages_through_every_recent_edit(app_context: AppContext, google) -> None:
    from shared.models import CrmEvent, EventTime
    from shared.sync.crm_to_google_sweeps import sweep_unpushed_edits

    setup_user(app_context, google, "user-a", ALICE)
    now = app_context.clock()
    with app_context.store.batch() as batch:
        for n in range(7):
            event = CrmEvent(
                id=f"lost-{n}",
                owner_id="user-a",
                title=f"Lost {n}",
                updated_at=now - dt.timedelta(minutes=30 - n),
                start=EventTime(date="2031-09-01"),
                end=EventTime(date="2031-09-02"),
            )
            data = event.model_dump(mode="python")
            data.pop("id")
            batch.set(app_context.store.event_ref(event.id), data)
    counts = sweep_unpushed_edits(app_context, now=now, limit=3, deadline=time.monotonic() + 60)
    assert counts["swept"] == 7
    assert counts["pushed"] == 7
    assert len(google.control.raw_events(ALICE)) == 7
