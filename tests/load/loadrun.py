"""Local load run against `make run`'s stack: N users x M calendars, sustained Google-side and CRM-side edits with
Google faults injected, then quiescence and a convergence check.

    python -m tests.load.loadrun --seconds 120 [--users 50 --calendars 3 --fault-rate 0.05 --rate 10]

The stack is the one `make run` starts (infra/devstack.py): the Firestore emulator, the Google stand-in, every
function served by functions-framework under one port, and the local Firestore trigger that turns `events` writes
into CloudEvents for push_event. All on loopback. Users are connected (refresh tokens the stand-in issued, encrypted at
rest) and enabled through the served `sync_enable` function with real ID tokens, so every calendar has a real channel
to the served webhook.

During the run a pool of workers keeps a steady rate of changes: Google-side creates and edits (the stand-in then
POSTs notifications to the webhook, which pulls) and CRM-side creates and edits (Firestore writes the local trigger
delivers to push_event), with `--fault-rate` of Google API calls failing with 503. A Firestore listener timestamps
every CRM document version, so notification -> CRM latency is measured per Google edit: from the edit to the first
time the CRM document carries that edit's etag (edits superseded before any pull are counted as coalesced).

At the end: faults cleared, deliveries and triggers drained, one cron run (in-process, 8 h later, so stale pulls and
push retries are due), drained again; then every calendar's Google events are compared with Firestore with the
convergence suite's invariants. Output: one JSON report.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import random
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

WRITE_METHODS = ("insert", "patch", "update", "delete", "import", "move")


@dataclass
class Stack:
    functions_url: str
    control: Any
    project: str
    trigger: Any = None
    cleanups: list[Any] = field(default_factory=list)
    doors: Any = None  # infra.front_doors.FrontDoors: the gateway and Cloud Run IAM in front of the functions

    def stop(self) -> None:
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()


def start_stack(project: str | None = None, wrap_app: Any = None) -> Stack:
    """`make run`'s stack in this process (emulator reused if FIRESTORE_EMULATOR_HOST answers); `wrap_app`, when
    given, wraps the functions' WSGI dispatcher (the capacity run meters invocations with it)."""
    from werkzeug.serving import make_server

    from infra.access_log import AccessLogRequestHandler
    from infra.devstack import PathDispatcher, build_function_apps, configure_environment
    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.server import start_standin
    from infra.local_trigger import start_local_trigger
    from shared.context import set_default_context

    project = project or f"load-{uuid.uuid4().hex[:8]}"
    cleanups: list[Any] = []
    saved_env = dict(os.environ)

    def restore_env() -> None:
        from shared.config import reset_settings

        os.environ.clear()
        os.environ.update(saved_env)
        reset_settings()
        set_default_context(None)

    cleanups.append(restore_env)
    emulator = existing_or_new()
    cleanups.append(emulator.stop)
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    standin = start_standin("127.0.0.1", 0, push_retry_base=0.05, push_workers=8)
    cleanups.append(standin.stop)
    # No access line per request (werkzeug sets its logger to INFO on first use): under load, formatting thousands of
    # them would take the CPU the stack under test runs on. Warnings and errors still show.
    access_log = logging.getLogger("werkzeug")
    previous_level = access_log.level
    access_log.setLevel(logging.WARNING)
    cleanups.append(lambda: access_log.setLevel(previous_level))
    from infra.deployment import read_deployment
    from infra.front_doors import FrontDoors

    # Production's front doors, from terraform/: functions behind Cloud Run IAM, sync_enable through the gateway, the
    # trigger presenting the Eventarc account's token.
    doors = FrontDoors(read_deployment(project_id=project), standin.control, standin.certs_url)
    dispatcher = PathDispatcher(doors.guard(build_function_apps()))
    server = make_server(
        "127.0.0.1",
        0,
        wrap_app(dispatcher) if wrap_app else dispatcher,
        threaded=True,
        request_handler=AccessLogRequestHandler,
    )
    functions_url = f"http://127.0.0.1:{server.server_port}"
    doors.functions_url = functions_url
    doors.serve_gateway()
    cleanups.append(doors.stop)
    configure_environment(project=project, standin=standin, functions_url=functions_url, doors=doors)
    set_default_context(None)
    threading.Thread(target=server.serve_forever, name="load-functions", daemon=True).start()
    cleanups.append(server.shutdown)
    trigger = start_local_trigger(
        project, f"{functions_url}/push_event", workers=8, token_provider=doors.trigger_token()
    )
    cleanups.append(trigger.stop)
    return Stack(functions_url, standin.control, project, trigger, cleanups, doors)


class VersionLog:
    """When each Google etag first reached a CRM document: the commit time (Firestore's update time) of the first
    version seen carrying it, so a listener running behind under load does not add its own lag to the figure.

    It rides on the local trigger's Firestore listener (an observer of the changes it already decodes): a second
    listener on `events` would double the harness's share of the CPU the stack under test runs on."""

    def __init__(self, trigger: Any) -> None:
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.active = True
        trigger.observe(self._on)

    def _on(self, _doc_id: str, data: dict[str, Any] | None, update_time: Any) -> None:
        if not self.active or data is None:
            return
        etag = (data.get("google") or {}).get("etag")
        if etag:
            committed = update_time.timestamp() if update_time is not None else time.time()
            with self.lock:
                self.seen[etag] = min(self.seen.get(etag, committed), committed)

    def stop(self) -> None:
        self.active = False


@dataclass
class Model:
    users: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (uid, email, calendar ids)
    google_events: dict[str, list[str]] = field(default_factory=dict)  # calendar -> Google ids we created
    crm_events: dict[str, str] = field(default_factory=dict)  # crm id -> owner
    crm_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    edits: list[tuple[str, float]] = field(default_factory=list)  # (etag, time of the Google edit)
    google_changes: int = 0
    crm_changes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1


def setup_users(stack: Stack, model: Model, users: int, calendars: int) -> None:
    from shared.config import GOOGLE_SCOPES
    from shared.context import default_context
    from shared.models import Integration, IntegrationStatus, utcnow

    ctx = default_context()
    settings = ctx.settings
    control = stack.control

    def one(index: int) -> tuple[str, str, list[str]]:
        uid, email = f"load-user-{index}", f"load{index}@example.com"
        control.create_account(email)
        secondary = [control.create_calendar(email, f"Team {k}")["id"] for k in range(calendars - 1)]
        token = control.issue_refresh_token(email, settings.oauth_client_id, list(GOOGLE_SCOPES))
        ciphertext, key_id = ctx.cipher.encrypt(token, owner=uid)
        ctx.store.save_integration(
            Integration(
                user_id=uid,
                status=IntegrationStatus.CONNECTED,
                account_email=email,
                scopes=list(GOOGLE_SCOPES),
                refresh_token_ciphertext=ciphertext,
                key_id=key_id,
                target_calendar_id=email,
                connected_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        id_token = control.mint_id_token(
            uid, settings.id_token_audience, issuer=settings.id_token_issuer, issued_at=time.time()
        )
        answer = requests.post(
            stack.doors.route_url("sync_enable"),
            json={"calendar_ids": [email, *secondary]},
            headers={"Authorization": f"Bearer {id_token}"},
            timeout=120,
        )
        if answer.status_code not in (200, 202):
            raise RuntimeError(f"enable failed for {uid}: {answer.status_code} {answer.text[:300]}")
        return uid, email, [email, *secondary]

    with ThreadPoolExecutor(max_workers=8) as pool:
        model.users = list(pool.map(one, range(users)))
    for _, _, cals in model.users:
        for cal in cals:
            model.google_events[cal] = []


def _times(rng: random.Random) -> tuple[str, str]:
    start = dt.datetime(2027, 5, 1, 8, tzinfo=dt.UTC) + dt.timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 9))
    return start.isoformat(), (start + dt.timedelta(hours=1)).isoformat()


def google_change(stack: Stack, model: Model, rng: random.Random) -> None:
    _, _, cals = rng.choice(model.users)
    cal = rng.choice(cals)
    with model.lock:
        existing = list(model.google_events[cal])
    if existing and rng.random() < 0.7:
        event_id = rng.choice(existing)
        result = stack.control.edit_event(cal, event_id, {"summary": f"edited {rng.random():.6f}"})
    else:
        start, end = _times(rng)
        result = stack.control.create_event(
            cal, {"summary": "load", "start": {"dateTime": start}, "end": {"dateTime": end}}
        )
        with model.lock:
            model.google_events[cal].append(result["id"])
    with model.lock:
        model.edits.append((result["etag"], time.time()))
        model.google_changes += 1


def crm_change(stack: Stack, model: Model, rng: random.Random, db: Any) -> None:
    from shared.models import CrmEvent, utcnow

    uid, _, _ = rng.choice(model.users)
    with model.lock:
        mine = [cid for cid, owner in model.crm_events.items() if owner == uid]
    if mine and rng.random() < 0.6:
        crm_id = rng.choice(mine)
        db.collection("events").document(crm_id).update(
            {"title": f"crm edit {rng.random():.6f}", "updated_at": utcnow()}
        )
    else:
        crm_id = f"load-{uuid.uuid4().hex[:16]}"
        start, end = _times(rng)
        meta = {"deal_id": f"deal-{crm_id[-6:]}", "company_id": "acme", "quote_id": None, "kind": "demo"}
        event = CrmEvent.model_validate(
            {
                "id": crm_id,
                "owner_id": uid,
                "title": "crm meeting",
                "start": {"date_time": start},
                "end": {"date_time": end},
                "meta": meta,
                "created_at": utcnow(),
                "updated_at": utcnow(),
            }
        )
        from shared.models import dump_for_firestore

        data = dump_for_firestore(event)
        data.pop("id", None)
        db.collection("events").document(crm_id).set(data)
        with model.lock:
            model.crm_events[crm_id] = uid
            model.crm_meta[crm_id] = meta
    with model.lock:
        model.crm_changes += 1


def drive(stack: Stack, model: Model, seconds: float, rate: float, workers: int, seed: int) -> float:
    """Keep `rate` changes per second (60% Google, 40% CRM) for `seconds`; returns the measured duration."""
    from google.cloud import firestore

    db = firestore.Client(project=stack.project)
    interval = workers / rate
    started = time.monotonic()
    deadline = started + seconds

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        next_at = time.monotonic() + rng.random() * interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            if now < next_at:
                time.sleep(min(next_at - now, deadline - now))
                continue
            next_at += interval
            try:
                if rng.random() < 0.6:
                    google_change(stack, model, rng)
                else:
                    crm_change(stack, model, rng, db)
            except Exception as exc:  # counted; the run goes on
                model.error(f"driver:{type(exc).__name__}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, range(workers)))
    db.close()
    return time.monotonic() - started


def _events_fingerprint() -> dict[str, Any]:
    """Every event's update time, through the stack's own client (names and update times only: no field data)."""
    from shared.context import default_context

    return {s.id: s.update_time for s in default_context().store.db.collection("events").select([]).stream()}


def drain(stack: Stack, budget: float) -> bool:
    """Until the stand-in's deliveries are idle, the trigger's queue is empty and `events` stops changing (or the
    budget runs out): the backlog a sustained load leaves is worked off, not cut short."""
    deadline = time.monotonic() + budget
    previous = None
    while time.monotonic() < deadline:
        idle = bool(stack.control.flush(timeout=min(60, max(1, deadline - time.monotonic()))).get("idle"))
        time.sleep(1.0)
        current = _events_fingerprint()
        # The trigger's listener may run behind: its queue is empty only once it has seen every current write.
        while not stack.trigger.caught_up(current) and time.monotonic() < deadline:
            time.sleep(0.2)
        drained = stack.trigger.drain(timeout=min(120, max(1, deadline - time.monotonic())))
        if idle and drained and current == previous:
            return True
        previous = current
    return False


def quiesce(stack: Stack, budget: float = 600) -> dict[str, Any]:
    """Faults off, backlog drained, one cron run past the stale period (in-process), drained again."""
    from shared.account.renewal import run_renewal
    from shared.context import default_context
    from shared.models import utcnow

    stack.control.clear_faults()
    started = time.monotonic()
    first = drain(stack, budget)
    before = stack.control.counters().get("by_method", {})
    ctx = default_context()
    later = utcnow() + dt.timedelta(seconds=ctx.settings.stale_sync_seconds + 2 * 3600)
    report = run_renewal(ctx, now=later, deadline_seconds=600)
    after = stack.control.counters().get("by_method", {})
    # The final reconcile's own calls: past the stale period every calendar is pulled once (a harness step, not load).
    report["reconcile_calls_by_method"] = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    second = drain(stack, budget)
    report["drained"] = first and second
    report["quiesce_seconds"] = round(time.monotonic() - started, 1)
    return report


def check(stack: Stack, model: Model) -> list[str]:
    from shared.context import default_context
    from tests.convergence.machine import check_convergence

    calendars = [cal for _, _, cals in model.users for cal in cals]
    must_google = {(cal, eid) for cal, ids in model.google_events.items() for eid in ids}

    class _Google:
        control = stack.control

    return check_convergence(
        default_context(),
        _Google(),
        calendars,
        crm_meta=model.crm_meta,
        must_live_crm=set(model.crm_events),
        must_live_google=must_google,
    )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(
    *,
    users: int = 50,
    calendars: int = 3,
    seconds: float = 120,
    fault_rate: float = 0.05,
    rate: float = 10.0,
    workers: int = 8,
    seed: int = 7,
    stack: Stack | None = None,
) -> dict[str, Any]:
    own = stack is None
    stack = stack or start_stack()
    versions = None
    try:
        model = Model()
        t0 = time.monotonic()
        setup_users(stack, model, users, calendars)
        stack.control.flush(timeout=60)
        setup_seconds = time.monotonic() - t0
        versions = VersionLog(stack.trigger)
        stack.control.reset_counters()
        stack.control.clear_notifications()
        if fault_rate > 0:
            stack.control.inject_fault("*", 503, "backendError", rate=fault_rate, seed=seed)
        duration = drive(stack, model, seconds, rate, workers, seed)
        counters_load = stack.control.counters()
        cron = quiesce(stack)
        counters = stack.control.counters()
        time.sleep(1.0)  # the listener's last snapshots
        divergences = check(stack, model)
        with versions.lock:
            seen = dict(versions.seen)
        latencies = [(seen[etag] - at) * 1000 for etag, at in model.edits if etag in seen]
        notifications = stack.control.notifications()
        failed_deliveries = sum(1 for n in notifications if n.get("outcome") == "failed")
        by_method = counters.get("by_method", {})
        api_calls = sum(v for k, v in by_method.items() if k.startswith("calendar."))
        writes = sum(by_method.get(f"calendar.events.{m}", 0) for m in WRITE_METHODS)
        changes = model.google_changes + model.crm_changes
        # Per change, the final reconcile's pulls are left out of ours and of the naive twin alike: it pulls every
        # calendar once because the harness moved the clock 8 h (the with_reconcile figure keeps them). Its pushes
        # stay in: they are retries of pushes the faults failed during the load.
        reconcile = cron.get("reconcile_calls_by_method", {})
        reconcile_pulls = reconcile.get("calendar.events.list", 0)
        workload_calls = api_calls - reconcile_pulls
        list_calls = by_method.get("calendar.events.list", 0) - reconcile_pulls
        # Naive twin, same run: no coalescing, one events.list per delivered change notification, meeting the same
        # injected fault rate (so retried as often as ours); its other calls (the pushes and their retries) as ours.
        exists = sum(1 for n in notifications if n.get("resource_state") == "exists" and n.get("status") is not None)
        naive_calls = workload_calls - list_calls + exists / (1 - fault_rate)
        errors = dict(model.errors)
        if failed_deliveries:
            errors["notification_deliveries_failed"] = failed_deliveries
        if stack.trigger.failed:
            errors["trigger_deliveries_failed"] = stack.trigger.failed
        return {
            "users": users,
            "calendars_per_user": calendars,
            "seconds": round(duration, 1),
            "setup_seconds": round(setup_seconds, 1),
            "fault_rate": fault_rate,
            "changes": changes,
            "google_changes": model.google_changes,
            "crm_changes": model.crm_changes,
            "throughput_changes_per_s": round(changes / duration, 2) if duration else 0,
            "notification_to_crm_ms": {
                "measured": len(latencies),
                "coalesced_or_missed": len(model.edits) - len(latencies),
                "p50": round(percentile(latencies, 0.5) or 0, 1),
                "p95": round(percentile(latencies, 0.95) or 0, 1),
                "mean": round(statistics.fmean(latencies), 1) if latencies else 0,
            },
            "google_api_calls": api_calls,
            "google_api_calls_during_load": sum(
                v for k, v in counters_load.get("by_method", {}).items() if k.startswith("calendar.")
            ),
            "google_writes": writes,
            "google_calls_per_change": round(workload_calls / changes, 3) if changes else 0,
            "naive_google_calls_per_change": round(naive_calls / changes, 3) if changes else 0,
            "google_calls_per_change_with_reconcile": round(api_calls / changes, 3) if changes else 0,
            "reconcile_calls_by_method": reconcile,
            "events_list_calls": list_calls,
            "change_notifications_delivered": exists,
            "google_faults_injected": counters.get("by_status", {}).get("503", 0),
            "notifications": len(notifications),
            "errors": errors,
            "errors_total": sum(errors.values()),
            "cron": {k: cron.get(k) for k in ("counts", "pushed", "google_calls")},
            "quiesce_seconds": cron.get("quiesce_seconds"),
            "drained": cron.get("drained"),
            "divergences": len(divergences),
            "divergence_samples": divergences[:10],
        }
    finally:
        if versions is not None:
            versions.stop()
        if own:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local load run (see module docstring)")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--calendars", type=int, default=3)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second (60%% Google, 40%% CRM)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from shared.logs import configure_logging

    configure_logging()
    logging.getLogger().setLevel(logging.WARNING)  # the report is the output; warnings and errors still show
    report = run(
        users=args.users,
        calendars=args.calendars,
        seconds=args.seconds,
        fault_rate=args.fault_rate,
        rate=args.rate,
        workers=args.workers,
        seed=args.seed,
    )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if report["divergences"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
