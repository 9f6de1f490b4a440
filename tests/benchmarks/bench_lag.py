"""Benchmark: bounded lag without polling everyone, and what our own writes' notifications cost.

Setup: its own emulator project, an in-process Google stand-in, the webhook served over HTTP (the stand-in delivers
Google's notifications to it), a clock shared by the library and the stand-in that the benchmark moves (no sleeping).
Every calendar is connected and enabled through the library (full import, events.watch).

1. Dead channels (`lag.dead_channel_detect_s`, p95 over DEAD calendars). Each calendar's channel dies at a random
   moment of the first cron period (the stand-in's `silence`: Google stops delivering and says nothing), a Google edit
   is made right after (the edit the dead channel swallows), and the CRM writes to the calendar once, uniformly within
   CRM_WRITE_WITHIN seconds after the death (profile: a calendar the CRM writes to about every five minutes). The clock
   moves in STEP-second steps; the cron (`run_renewal`, as the served `renew` runs it) runs every CRON_PERIOD seconds,
   the schedule of shared/scheduler_job.json. The figure is the time from the death to the step at which the missed
   Google edit is in the CRM; `lag.dead_channel_after_write_s` is the same from the CRM's write (the evidence).
   The naive twin is a poll of every calendar every 15 minutes (`naive_google_calls_per_calendar_day`).
2. Quiet calendars (`lag.google_calls_per_calendar_day`): QUIET enabled calendars with no activity for DAYS days,
   the cron run every hour of the simulated week (for a quiet calendar the cron's decisions depend only on due times,
   so a run every five minutes would find the same work): Calendar API calls per calendar-day, token refreshes apart
   (stale-calendar pulls + channel renewals). Naive twin: one poll every 15 minutes, its cost measured as one pull of
   a quiet calendar times 96.
3. Echoes (`push.echo_list_calls_per_edit`): ECHO_EDITS CRM edits pushed by `push_event`, each followed by Google's
   notification to the webhook: events.list calls per edit, and every Google call per edit all told
   (`push.google_calls_per_crm_edit`). Naive twin: the same edits written to Google without the expectation (as the
   sync wrote before shared/sync/echo.py), each notification then pulls.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import uuid
from typing import Any

DEAD = 40
QUIET = 20
ECHO_USERS = 10
ECHO_EDITS = 50
STEP = 15.0
CRON_PERIOD = 300.0
CRM_WRITE_WITHIN = 300.0
HORIZON = 1800.0
DAYS = 7
PREFIX = "lag"


class _Clock:
    """Our clock and the stand-in's, moved forward together."""

    def __init__(self, standin: Any) -> None:
        self.standin = standin
        self.offset = 0.0

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.standin.control.advance_clock(seconds)
        self.offset += seconds


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _calendar_calls(standin: Any, emails: list[str]) -> dict[str, int]:
    by_account = standin.control.counters()["by_account_method"]
    totals: dict[str, int] = {}
    for email in emails:
        for method, n in by_account.get(email, {}).items():
            if method.startswith("calendar."):
                totals[method] = totals.get(method, 0) + n
    return totals


def _enable_users(ctx: Any, standin: Any, prefix: str, n: int) -> list[tuple[str, str]]:
    from shared.account.enablement import EnableRequest, enable
    from tests.fixtures.sync import connect_user

    users = [(f"{prefix}-{i:03d}", f"{prefix}-{i:03d}@example.com") for i in range(n)]
    for uid, email in users:
        connect_user(ctx, standin, uid, email)
        enable(ctx, uid, EnableRequest())
    standin.control.flush(timeout=30)
    return users


def _crm_write(ctx: Any, uid: str, event_id: str, title: str) -> None:
    from shared.models import CrmEvent, EventTime
    from shared.sync.crm_to_google_run import push_event

    ctx.store.save_event(
        CrmEvent(
            id=event_id,
            owner_id=uid,
            title=title,
            updated_at=ctx.clock(),
            start=EventTime(date_time="2031-06-01T10:00:00+00:00"),
            end=EventTime(date_time="2031-06-01T11:00:00+00:00"),
        )
    )
    push_event(ctx, event_id)


def _google_body(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": "2031-06-02T10:00:00Z"},
        "end": {"dateTime": "2031-06-02T11:00:00Z"},
    }


def _dead_channels(ctx: Any, standin: Any, clock: _Clock, results: dict[str, float]) -> None:
    from shared.account.renewal import run_renewal
    from shared.models import calendar_key, crm_event_id_for_google

    rng = random.Random(7)
    users = _enable_users(ctx, standin, "dead", DEAD)
    plans = {}
    for uid, email in users:
        dies = rng.uniform(0, CRON_PERIOD)
        plans[uid] = {"email": email, "dies": dies, "writes": dies + rng.uniform(0, CRM_WRITE_WITHIN)}
    calls_before = _calendar_calls(standin, [e for _, e in users])
    elapsed = 0.0
    next_cron = CRON_PERIOD
    detected: dict[str, float] = {}
    while elapsed < HORIZON and len(detected) < len(users):
        elapsed += STEP
        clock.advance(STEP)
        for uid, plan in plans.items():
            if "missed" not in plan and plan["dies"] <= elapsed:
                cal = ctx.store.get_calendar(uid, calendar_key(plan["email"]))
                standin.control.silence_channel(cal.channel.id)
                plan["missed"] = standin.control.create_event(plan["email"], _google_body("missed"))["id"]
            if "written" not in plan and plan["writes"] <= elapsed:
                _crm_write(ctx, uid, f"crm-{uid}", "written by the CRM")
                plan["written"] = True
        standin.control.flush(timeout=30)
        if elapsed >= next_cron:
            run_renewal(ctx)
            next_cron += CRON_PERIOD
        for uid, plan in plans.items():
            if uid in detected or "missed" not in plan:
                continue
            if ctx.store.get_event(crm_event_id_for_google(plan["email"], plan["missed"])) is not None:
                detected[uid] = elapsed
    if len(detected) < len(users):
        raise RuntimeError(f"dead channels not repaired within {HORIZON} s: {len(users) - len(detected)}")
    from_death = [detected[uid] - plans[uid]["dies"] for uid in detected]
    from_write = [detected[uid] - plans[uid]["writes"] for uid in detected]
    calls = _calendar_calls(standin, [e for _, e in users])
    spent = sum(calls.values()) - sum(calls_before.values())
    results[f"{PREFIX}.dead_channel_detect_s"] = round(_p95(from_death), 1)
    results[f"{PREFIX}.dead_channel_detect_max_s"] = round(max(from_death), 1)
    results[f"{PREFIX}.dead_channel_after_write_s"] = round(_p95(from_write), 1)
    results[f"{PREFIX}.dead_channel_calendars"] = len(users)
    # The CRM's write itself (1) plus the repair (list + watch + stop) per calendar.
    results[f"{PREFIX}.dead_channel_google_calls_per_repair"] = round(spent / len(users), 2)


def _quiet_calendars(ctx: Any, standin: Any, clock: _Clock, results: dict[str, float]) -> None:
    from shared.account.renewal import run_renewal
    from shared.sync.coalesce import request_pull

    users = _enable_users(ctx, standin, "quiet", QUIET)
    emails = [e for _, e in users]
    before = _calendar_calls(standin, emails)
    for _ in range(DAYS * 24):
        clock.advance(3600)
        run_renewal(ctx)
        standin.control.flush(timeout=30)
    after = _calendar_calls(standin, emails)
    spent = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    per_day = sum(spent.values()) / (QUIET * DAYS)
    results[f"{PREFIX}.google_calls_per_calendar_day"] = round(per_day, 3)
    for method, n in sorted(spent.items()):
        if n:
            results[f"{PREFIX}.quiet.{method}_per_calendar_day"] = round(n / (QUIET * DAYS), 3)
    # Naive twin: poll every calendar every 15 minutes; one poll of a quiet calendar, measured.
    uid, email = users[0]
    poll_before = sum(_calendar_calls(standin, [email]).values())
    request_pull(ctx, uid, email, reason="bench_poll")
    poll = sum(_calendar_calls(standin, [email]).values()) - poll_before
    results[f"{PREFIX}.naive_google_calls_per_calendar_day"] = poll * 96


def _echoes(ctx: Any, standin: Any, results: dict[str, float]) -> None:
    users = _enable_users(ctx, standin, "echo", ECHO_USERS)
    emails = [e for _, e in users]
    for i in range(ECHO_EDITS):  # setup: one CRM event per edit, created and announced (not counted)
        uid, _ = users[i % ECHO_USERS]
        _crm_write(ctx, uid, f"echo-{i:03d}", "v0")
    standin.control.flush(timeout=30)

    before = _calendar_calls(standin, emails)
    for i in range(ECHO_EDITS):
        uid, _ = users[i % ECHO_USERS]
        ctx.store.update_event(f"echo-{i:03d}", {"title": "v1", "updated_at": ctx.clock()})
        from shared.sync.crm_to_google_run import push_event

        push_event(ctx, f"echo-{i:03d}")
        standin.control.flush(timeout=30)
    after = _calendar_calls(standin, emails)
    spent = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    results["push.echo_list_calls_per_edit"] = round(spent.get("calendar.events.list", 0) / ECHO_EDITS, 3)
    results["push.google_calls_per_crm_edit"] = round(sum(spent.values()) / ECHO_EDITS, 3)

    # Naive twin: the same edits written without announcing them (every notification then pulls).
    from shared.models import google_event_id_for_crm

    before = _calendar_calls(standin, emails)
    for i in range(ECHO_EDITS):
        uid, email = users[i % ECHO_USERS]
        client = ctx.calendar_client(ctx.store.get_integration(uid))
        client.patch_event(email, google_event_id_for_crm(f"echo-{i:03d}"), {"summary": "v2"}, etag=None)
        standin.control.flush(timeout=30)
    after = _calendar_calls(standin, emails)
    spent = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    results["push.naive_echo_list_calls_per_edit"] = round(spent.get("calendar.events.list", 0) / ECHO_EDITS, 3)
    results["push.naive_google_calls_per_crm_edit"] = round(sum(spent.values()) / ECHO_EDITS, 3)


def run(results: dict[str, float]) -> None:
    import logging

    from google.cloud import firestore

    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.server import start_standin
    from shared.context import AppContext, set_default_context
    from tests.fixtures.functions import serve_function
    from tests.fixtures.sync import make_settings

    logging.getLogger().setLevel(logging.WARNING)
    emulator = existing_or_new()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    standin = start_standin("127.0.0.1", 0, quota_per_minute=1_000_000, push_retry_base=0.01)
    project = f"bench-lag-{uuid.uuid4().hex[:8]}"
    db = firestore.Client(project=project)
    webhook = serve_function("webhook")
    ctx = AppContext.create(make_settings(project, standin, webhook_url=webhook.url + "/"), db)
    clock = _Clock(standin)
    ctx.clock = clock
    set_default_context(ctx)
    try:
        _echoes(ctx, standin, results)
        _dead_channels(ctx, standin, clock, results)
        _quiet_calendars(ctx, standin, clock, results)
    finally:
        webhook.stop()
        set_default_context(None)
        db.close()
        standin.stop()
        emulator.stop()  # only stops an emulator this run started


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
