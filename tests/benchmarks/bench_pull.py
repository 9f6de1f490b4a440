"""Google -> CRM pull benchmarks (issue: the webhook and the incremental sync engine), each beside a naive baseline.

Figures (counts matter; wall times are reported, never asserted):
- pull.burst100.*    100 notifications for one change set, fired at the served webhook from 50 threads. One process
                     serves the webhook here (the GIL serialises ~15 ms of work per request, so the burst takes ~1.5 s
                     to land, where Cloud Functions instances would take it in parallel in a few ms); the stand-in's
                     events.list latency is therefore set to 1.5 s so that the burst lands while a pull runs, which
                     is what it models. Naive baseline: one pull per notification (no lease, no marker), same latency.
- pull.steady.*      200 single Google edits, one notification each, through the real webhook over HTTP:
                     events.list calls per edit, Google writes (must be 0), Firestore round trips per edit (one
                     batchGet of route + integration + calendar + lease + marker + the event's CRM document, lease
                     create, one commit, marker read).
- pull.import10k.*   first import of 10,000 events (200 of them recurring series): list calls (pages of 2500),
                     Firestore commits (the lease rides in the first), wall time, peak memory; naive baseline: pages
                     of 250, one write per event.
- pull.latency.*     Google-side edit -> CRM document updated (p50/p95, polling the document from a separate client),
                     and the floor: one events.list round trip plus one Firestore commit, measured in the same run.
                     `path_*`: the same samples from the start of the notification's first round trip to the end of
                     the CRM commit (the round-trip logs), the part comparable with the floor: Google's edit call,
                     the notification's delivery and the poller's reads are left out.
- pull.critical_path.round_trips   serial round trips from a notification's arrival to the CRM commit, measured
                     during the latency samples from the store's and the Google client's round-trip logs (start and end
                     of every Firestore RPC and Google call): the most of them that ran one after another, i.e. that
                     did not overlap (median over the samples): a warm instance, an edit of an event it pulled
                     before. `_new_event`: a warm instance, an event created in Google. `_unseen_event`: a warm
                     instance, an edit of an event it has not pulled lately. `_cold`: a new instance (it knows no
                     channel and no event). `early_commit_lost` / `early_page_dropped`: the warm path's misses over
                     all samples. The floor is 2 (one events.list, one commit). Naive baseline: the same notification
                     handled the pre-batched way (route read, then request_pull without the prefetched state: lease
                     create, integration + calendar read, list, events, commit).
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time
import tracemalloc
import uuid
from typing import Any

LIST = "calendar.events.list"
BURST = 100
STEADY_EDITS = 200
LATENCY_SAMPLES = 60
IMPORT_EVENTS = 10_000
IMPORT_SERIES = 200


def serial_round_trips(log: list[tuple[str, float, float]]) -> int:
    """The most round trips of `log` that ran one after another (no two overlapping), up to the last commit that
    started after the last events.list ended: the CRM commit (what follows it, the marker read, is not on the path)."""
    lists = [entry for entry in log if entry[0].endswith("events.list")]
    if not lists:
        return 0
    listed = max(end for _, _, end in lists)
    commits = [entry for entry in log if entry[0] == "commit" and entry[1] >= listed]
    if not commits:
        return 0
    until = max(end for _, _, end in commits)
    chain, last_end = 0, float("-inf")
    for _, start, end in sorted((e for e in log if e[2] <= until), key=lambda e: e[2]):
        if start >= last_end:  # greedy by end time: the largest set of pairwise non-overlapping intervals
            chain += 1
            last_end = end
    return chain


def path_duration_ms(log: list[tuple[str, float, float]]) -> float | None:
    """From the start of the notification's first round trip to the end of the CRM commit (as `serial_round_trips`
    finds it), in ms: the part of the latency the floor is comparable with (no Google edit call, no notification
    delivery, no polling). None when the log holds no list followed by a commit."""
    lists = [entry for entry in log if entry[0].endswith("events.list")]
    if not lists:
        return None
    listed = max(end for _, _, end in lists)
    commits = [entry for entry in log if entry[0] == "commit" and entry[1] >= listed]
    if not commits:
        return None
    until = max(end for _, _, end in commits)
    return (until - min(start for _, start, end in log if end <= until)) * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class _Env:
    """Emulator (reused when the runner started one), the stand-in in-process, the served webhook, one context."""

    def __init__(self) -> None:
        from infra.firestore_emulator import existing_or_new
        from infra.google_standin.control import ControlClient
        from infra.google_standin.server import start_standin
        from tests.fixtures.functions import serve_function
        from tests.fixtures.google import GoogleStandin

        self._owned_emulator = None
        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            self._owned_emulator = existing_or_new()
            os.environ["FIRESTORE_EMULATOR_HOST"] = self._owned_emulator.host
        self.handle = start_standin("127.0.0.1", 0, push_retry_base=0.005, push_timeout=10.0)
        self.google = GoogleStandin(self.handle, ControlClient(self.handle.base_url))
        self.webhook = serve_function("webhook")

    def context(self) -> Any:
        from google.cloud import firestore

        from shared.context import AppContext, set_default_context
        from tests.fixtures.sync import make_settings

        project = f"bench-pull-{uuid.uuid4().hex[:8]}"
        ctx = AppContext.create(make_settings(project, self.google), firestore.Client(project=project))
        set_default_context(ctx)
        return ctx

    def user(self, ctx: Any, email: str, *, initial_pull: bool = True) -> Any:
        from tests.pull.conftest import make_synced_user

        self.google.control.set_options(sync_before_response=False)
        return make_synced_user(
            ctx, self.google, self.webhook.url + "/", user_id=f"u-{email}", email=email, initial_pull=initial_pull
        )

    def list_calls(self) -> int:
        return int(self.google.control.counters()["by_method"].get(LIST, 0))

    def close(self) -> None:
        from shared.context import set_default_context

        set_default_context(None)
        self.webhook.stop()
        self.handle.stop()
        if self._owned_emulator is not None:
            self._owned_emulator.stop()


def _simple(summary: str, n: int) -> dict[str, Any]:
    day, hour = 1 + n % 28, n % 20
    return {
        "summary": summary,
        "start": {"dateTime": f"2025-08-{day:02d}T{hour:02d}:00:00Z"},
        "end": {"dateTime": f"2025-08-{day:02d}T{hour:02d}:30:00Z"},
    }


# --- 1. burst -----------------------------------------------------------------------------------------------------
def bench_burst(env: _Env, results: dict[str, float]) -> None:
    from shared.sync.google_to_crm_run import pull_calendar

    ctx = env.context()
    user = env.user(ctx, "burst@example.com")
    control = env.google.control
    created = control.create_event(user.email, _simple("burst", 1))
    user.flush()
    control.set_latency(LIST, 1.5)
    try:
        control.pause_delivery()  # the stand-in's own notification is replaced by our burst of 100
        control.edit_event(user.email, created["id"], {"summary": "burst change set"})
        control.reset_counters()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(lambda _: user.notify().status_code, range(BURST)))
        wall = time.perf_counter() - started
        assert set(statuses) <= {200, 202}, statuses
        assert statuses.count(200) >= 1, statuses  # the runner answers after its (re-)runs: all work is done here
        results["pull.burst100.list_calls"] = env.list_calls()
        results["pull.burst100.wall_ms"] = round(wall * 1000, 1)
        results["pull.burst100.queued_202"] = statuses.count(202)

        # Naive baseline: every notification runs its own pull.
        control.edit_event(user.email, created["id"], {"summary": "burst change set 2"})
        control.reset_counters()
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            list(pool.map(lambda _: pull_calendar(ctx, user.user_id, user.calendar_id, reason="naive"), range(BURST)))
        results["pull.burst100.naive_list_calls"] = env.list_calls()
        results["pull.burst100.naive_wall_ms"] = round((time.perf_counter() - started) * 1000, 1)
    finally:
        control.set_latency(LIST, 0)
        control.resume_delivery()
        user.flush()


# --- 2. steady state and 4. latency -------------------------------------------------------------------------------
def bench_steady_and_latency(env: _Env, results: dict[str, float]) -> None:
    from google.cloud import firestore

    from shared.models import crm_event_id_for_google
    from shared.sync.notification_path import misses

    ctx = env.context()
    user = env.user(ctx, "steady@example.com")
    control = env.google.control
    event = control.create_event(user.email, _simple("steady", 2))
    user.flush()
    control.reset_counters()
    ops_before = dict(ctx.store.ops)
    for n in range(STEADY_EDITS):
        control.edit_event(user.email, event["id"], {"summary": f"edit {n}"})
        user.flush()
    counters = control.counters()["by_method"]
    writes = sum(v for k, v in counters.items() if k.rsplit(".", 1)[-1] in ("insert", "patch", "update", "delete"))
    crm_id = crm_event_id_for_google(user.calendar_id, event["id"])
    assert ctx.store.get_event(crm_id).title == f"edit {STEADY_EDITS - 1}"
    ops = {k: ctx.store.ops[k] - ops_before.get(k, 0) for k in ("rpcs", "commits", "reads", "writes")}
    results["pull.steady.list_calls_per_edit"] = round(counters.get(LIST, 0) / STEADY_EDITS, 3)
    results["pull.steady.google_writes"] = writes
    results["pull.steady.firestore_ops_per_edit"] = round(ops["rpcs"] / STEADY_EDITS, 3)
    results["pull.steady.firestore_commits_per_edit"] = round(ops["commits"] / STEADY_EDITS, 3)
    results["pull.steady.firestore_doc_reads_per_edit"] = round(ops["reads"] / STEADY_EDITS, 3)
    results["pull.steady.firestore_doc_writes_per_edit"] = round(ops["writes"] / STEADY_EDITS, 3)

    # Latency: Google-side edit -> CRM document updated, observed from a separate Firestore client. Meanwhile the
    # store and the user's Google client log every round trip (start, end) for the critical path's count.
    observer = firestore.Client(project=ctx.settings.project_id)
    doc = observer.collection("events").document(crm_id)
    google_client = ctx.calendar_client(ctx.store.get_integration(user.user_id))
    samples: list[float] = []
    chains: list[int] = []
    paths: list[float] = []
    misses_before = dict(misses)
    for n in range(LATENCY_SAMPLES):
        title = f"latency {n}"
        log: list[tuple[str, float, float]] = []
        ctx.store.rpc_log = google_client.call_log = log
        started = time.perf_counter()
        control.edit_event(user.email, event["id"], {"summary": title})
        while (doc.get().to_dict() or {}).get("title") != title:
            if time.perf_counter() - started > 10:
                raise RuntimeError("the CRM document was not updated within 10 s")
        samples.append((time.perf_counter() - started) * 1000)
        user.flush()
        ctx.store.rpc_log = google_client.call_log = None
        chains.append(serial_round_trips(log))
        if (path := path_duration_ms(log)) is not None:
            paths.append(path)
    results["pull.latency.p50_ms"] = round(statistics.median(samples), 1)
    results["pull.latency.p95_ms"] = round(_pct(samples, 0.95), 1)
    results["pull.latency.path_p50_ms"] = round(statistics.median(paths), 1)
    results["pull.latency.path_p95_ms"] = round(_pct(paths, 0.95), 1)
    results["pull.critical_path.round_trips"] = statistics.median_low(chains)
    results["pull.critical_path.round_trips_max"] = max(chains)
    for kind in ("early_commit_lost", "early_page_dropped"):
        results[f"pull.critical_path.{kind}"] = misses[kind] - misses_before.get(kind, 0)
    for case in ("new_event", "unseen_event", "cold"):
        results[f"pull.critical_path.round_trips_{case}"] = _case_round_trips(env, ctx, user, google_client, case)
    results["pull.critical_path.naive_round_trips"] = _naive_round_trips(env, ctx, user, google_client, event["id"])

    # Floor: one events.list round trip with the sync token plus one Firestore commit of one document.
    client = ctx.calendar_client(ctx.store.get_integration(user.user_id))
    token = user.calendar().sync_token
    floor: list[float] = []
    ref = observer.collection("bench_floor").document("x")
    for n in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        client.list_events_page(user.calendar_id, sync_token=token)
        batch = observer.batch()
        batch.set(ref, {"n": n})
        batch.commit()
        floor.append((time.perf_counter() - started) * 1000)
    results["pull.latency.floor_p50_ms"] = round(statistics.median(floor), 1)
    results["pull.latency.floor_p95_ms"] = round(_pct(floor, 0.95), 1)
    results["pull.latency.path_p95_over_floor_p95"] = round(
        results["pull.latency.path_p95_ms"] / results["pull.latency.floor_p95_ms"], 2
    )
    observer.close()


def _case_round_trips(env: _Env, ctx: Any, user: Any, google_client: Any, case: str) -> int:
    """Serial round trips of one notification through the served webhook (median of 5): an event created in Google
    (`new_event`), an edit of an event this instance has not pulled lately (`unseen_event`), or any edit on an
    instance that knows nothing yet (`cold`: its channel and event memories emptied, as in a new instance)."""
    from shared.sync.notification_path import recent_events, route_hints

    control = env.google.control
    chains: list[int] = []
    for n in range(5):
        created = control.create_event(user.email, _simple(f"{case} {n}", 3 + n))
        user.flush()
        if case == "unseen_event":
            recent_events.clear()
        elif case == "cold":
            route_hints.clear()
            recent_events.clear()
        log: list[tuple[str, float, float]] = []
        ctx.store.rpc_log = google_client.call_log = log
        if case == "new_event":
            control.create_event(user.email, _simple(f"{case} {n} created", 3 + n))
        else:
            control.edit_event(user.email, created["id"], {"summary": f"{case} {n} edited"})
        user.flush()
        ctx.store.rpc_log = google_client.call_log = None
        chains.append(serial_round_trips(log))
    return statistics.median_low(chains)


def _naive_round_trips(env: _Env, ctx: Any, user: Any, google_client: Any, event_id: str) -> int:
    """One Google edit handled the way the webhook did before the one-batchGet path: the route read, then the pull
    reading its own state after its lease (the notification itself is held back: this runs the same code in-process)."""
    from shared.sync.coalesce import request_pull

    control = env.google.control
    control.pause_delivery()
    try:
        control.edit_event(user.email, event_id, {"summary": "naive"})
        log: list[tuple[str, float, float]] = []
        ctx.store.rpc_log = google_client.call_log = log
        route = ctx.store.get_channel_route(user.channel_id)
        request_pull(ctx, route.user_id, route.calendar_id, reason="webhook")
        ctx.store.rpc_log = google_client.call_log = None
    finally:
        control.resume_delivery()
        user.flush()
    return serial_round_trips(log)


# --- 3. initial import ------------------------------------------------------------------------------------------------
def _seed_calendar(env: _Env, email: str) -> None:
    """10,000 events (200 of them weekly series) created through the control API from 8 connections."""
    from infra.google_standin.control import ControlClient

    env.google.control.create_account(email)
    clients = [ControlClient(env.handle.base_url) for _ in range(8)]

    def make(n: int) -> None:
        client = clients[n % len(clients)]
        if n < IMPORT_SERIES:
            body = _simple(f"series {n}", n)
            body["start"]["timeZone"] = body["end"]["timeZone"] = "UTC"
            client.create_recurring_event(email, body, "FREQ=WEEKLY;COUNT=10")
        else:
            client.create_event(email, _simple(f"single {n}", n))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(make, range(IMPORT_EVENTS)))


def bench_import(env: _Env, results: dict[str, float]) -> None:
    from shared.gcal.wire import new_crm_event_from_google
    from shared.sync.coalesce import request_pull

    email = "import@example.com"
    _seed_calendar(env, email)
    control = env.google.control

    ctx = env.context()
    user = env.user(ctx, email, initial_pull=False)
    control.pause_delivery()
    control.reset_counters()
    ops_before = dict(ctx.store.ops)
    tracemalloc.start()
    started = time.perf_counter()
    outcome = request_pull(ctx, user.user_id, user.calendar_id, reason="enable", full=True)
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcome.report is not None and outcome.report.counts.get("create") == IMPORT_EVENTS, outcome.report
    results["pull.import10k.list_calls"] = env.list_calls()
    # Every commit of the request: ceil(10,010 writes / 500) batch commits (10,000 events, 3 progress + 3 lease
    # refreshes between pages, the final calendar write and the lease delete, and in the first commit the lease
    # create with the calendar's precondition: no commit of its own).
    results["pull.import10k.commits"] = ctx.store.ops["commits"] - ops_before.get("commits", 0)
    results["pull.import10k.wall_s"] = round(wall, 2)
    results["pull.import10k.peak_mb"] = round(peak / 1e6, 1)

    # Naive baseline: default page size (250) and one write per event.
    from tests.fixtures.sync import connect_user

    naive_ctx = env.context()
    naive_user_id = "u-naive"
    connect_user(naive_ctx, env.google, naive_user_id, email, enable_calendars=(email,))
    client = naive_ctx.calendar_client(naive_ctx.store.get_integration(naive_user_id))
    control.reset_counters()
    commits_before = naive_ctx.store.ops["commits"]
    tracemalloc.start()
    started = time.perf_counter()
    page_token = None
    while True:
        page = client.list_events_page(email, page_token=page_token, max_results=250)
        for item in page.get("items", []):
            naive_ctx.store.save_event(new_crm_event_from_google(item, email, naive_user_id, naive_ctx.clock()))
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    wall = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["pull.import10k.naive_list_calls"] = env.list_calls()
    results["pull.import10k.naive_commits"] = naive_ctx.store.ops["commits"] - commits_before
    results["pull.import10k.naive_wall_s"] = round(wall, 2)
    results["pull.import10k.naive_peak_mb"] = round(peak / 1e6, 1)
    control.resume_delivery()


def run(results: dict[str, float]) -> None:
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    env = _Env()
    try:
        bench_steady_and_latency(env, results)
        bench_burst(env, results)
        bench_import(env, results)
    finally:
        env.close()


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
