"""Benchmark: 1,000 CRM edits -> Google writes, Google calls per edit, CRM writes caused by echoes, wall time.

Ours (the real path): 100 CRM events are created and pushed (setup, not counted), the calendar is pulled once to get a
sync token, then 10 rounds edit every event once (1,000 edits). Each edit is a Firestore write followed by the
CloudEvent Eventarc would send, POSTed over HTTP to the served `push_event` function; then the CloudEvent for our own
write-back (Eventarc fires for it too) is POSTed as well. After the edits the pull engine runs for the calendar (what
the Google notifications for our 1,000 writes would cause) and every CRM event document whose update time changed is
counted as a CRM write caused by an echo. Google calls come from the stand-in's per-account counters.

Naive baseline, same run, its own account: no etags (blind PUT), no echo suppression: the push handler pushes on every
trigger including the one fired by its own write-back, and the pull rewrites the CRM document on every notification of
a Google write. That loop never converges; it is cut after one echo generation (edit -> push -> write-back -> push
again -> notification -> rewrite), so the naive figures are lower bounds.

Figures: push.edits1000.google_writes (target 1000), push.edits1000.google_calls_per_edit,
push.edits1000.echo_crm_writes (target 0), push.edits1000.wall_s, each with its naive_ twin.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

EVENTS = 100
ROUNDS = 10
WORKERS = 8
OWNER, EMAIL = "bench-owner", "bench-owner@example.com"
NAIVE_OWNER, NAIVE_EMAIL = "bench-naive", "bench-naive@example.com"
WRITE_METHODS = ("insert", "patch", "update", "delete", "import", "move")


def _writes(by_method: dict[str, int]) -> int:
    return sum(by_method.get(f"calendar.events.{m}", 0) for m in WRITE_METHODS)


def _account_calls(standin: Any, email: str) -> dict[str, int]:
    return dict(standin.control.counters()["by_account_method"].get(email, {}))


def _event(event_id: str, owner: str) -> Any:
    from shared.models import CrmEvent

    now = dt.datetime.now(dt.UTC)
    return CrmEvent.model_validate(
        {
            "id": event_id,
            "owner_id": owner,
            "title": f"Meeting {event_id}",
            "start": {"date_time": "2027-03-01T10:00:00+00:00", "time_zone": "Europe/Paris"},
            "end": {"date_time": "2027-03-01T11:00:00+00:00", "time_zone": "Europe/Paris"},
            "attendees": [{"email": "guest@client.example"}],
            "meta": {"deal_id": "deal-1", "kind": "demo"},
            "created_at": now,
            "updated_at": now,
        }
    )


def _post(session: Any, url: str, project: str, event_id: str, data: dict[str, Any] | None) -> None:
    from infra.local_trigger import build_cloud_event, document_name, document_proto, encode_http

    name = document_name(project, event_id)
    event = build_cloud_event(project, event_id, value=document_proto(name, data) if data is not None else None)
    headers, body = encode_http(event)
    response = session.post(url, data=body, headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"push_event answered {response.status_code}: {response.text[:200]}")


def _update_times(ctx: Any, ids: list[str]) -> dict[str, Any]:
    refs = [ctx.store.event_ref(i) for i in ids]
    return {s.id: s.update_time for s in ctx.store.db.get_all(refs)}


def _pull(ctx: Any, user_id: str, calendar_id: str) -> int:
    """Run the pull engine once (coalesced entry point if present); returns the events it saw (-1: unknown)."""
    try:
        from shared.sync.coalesce import request_pull
    except ImportError:
        request_pull = None  # type: ignore[assignment]
    if request_pull is not None:
        outcome = request_pull(ctx, user_id, calendar_id, reason="bench")
        report = getattr(outcome, "report", outcome)
        return int(getattr(report, "events_seen", -1))
    from shared.sync.google_to_crm_run import pull_calendar

    return pull_calendar(ctx, user_id, calendar_id, reason="bench").events_seen


def _run_ours(ctx: Any, standin: Any, served: Any, results: dict[str, float]) -> None:
    import requests

    from shared.models import SyncState

    project = ctx.settings.project_id
    ids = [f"bench-{i:04d}" for i in range(EVENTS)]

    def setup(event_id: str) -> None:
        session = requests.Session()
        ctx.store.save_event(_event(event_id, OWNER))
        _post(session, served.url, project, event_id, {"created": True})

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(setup, ids))
    assert all(e.sync.state == SyncState.SYNCED for e in ctx.store.get_events(ids).values())
    pull_mode = "unavailable"
    try:
        _pull(ctx, OWNER, EMAIL)  # initial full sync: the sync token the echo measurement starts from
        pull_mode = "ok"
    except ImportError:
        pass
    standin.control.flush(timeout=10)
    before_calls = _account_calls(standin, EMAIL)
    writes_before = ctx.store.ops["writes"]

    def edit_chain(event_id: str, round_no: int, session: Any) -> None:
        ctx.store.update_event(
            event_id, {"title": f"Meeting {event_id} v{round_no}", "updated_at": dt.datetime.now(dt.UTC)}
        )
        _post(session, served.url, project, event_id, {"edit": round_no})  # the CRM edit's CloudEvent
        _post(session, served.url, project, event_id, {"writeback": round_no})  # our write-back's CloudEvent

    started = time.perf_counter()
    sessions = [requests.Session() for _ in range(WORKERS)]
    for round_no in range(1, ROUNDS + 1):
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda p, r=round_no: edit_chain(p[1], r, sessions[p[0] % WORKERS]), enumerate(ids)))
    wall = time.perf_counter() - started
    after_calls = _account_calls(standin, EMAIL)
    delta = {k: after_calls.get(k, 0) - before_calls.get(k, 0) for k in after_calls}
    edits = EVENTS * ROUNDS
    results["push.edits1000.google_writes"] = _writes(delta)
    results["push.edits1000.google_calls_per_edit"] = round(sum(delta.values()) / edits, 3)
    # Firestore writes by the push per edit (the benchmark's own 1,000 edit writes subtracted): the write-back only.
    bookkeeping = ctx.store.ops["writes"] - writes_before - edits
    results["push.edits1000.crm_bookkeeping_writes_per_edit"] = round(bookkeeping / edits, 3)
    results["push.edits1000.wall_s"] = round(wall, 2)
    results["push.edits1000.edits_per_s"] = round(edits / wall, 1)

    # Google now notifies about our 1,000 writes: the pull engine must not rewrite any CRM event.
    if pull_mode == "ok":
        before = _update_times(ctx, ids)
        results["push.edits1000.pull_events_seen"] = _pull(ctx, OWNER, EMAIL)
        after = _update_times(ctx, ids)
        results["push.edits1000.echo_crm_writes"] = sum(1 for i in ids if after.get(i) != before.get(i))
        # ... and the push trigger for any such write would push nothing: re-deliver one CloudEvent per event.
        again_before = sum(_account_calls(standin, EMAIL).values())
        session = requests.Session()
        for event_id in ids:
            _post(session, served.url, project, event_id, {"redelivery": True})
        results["push.edits1000.redelivery_google_calls"] = sum(_account_calls(standin, EMAIL).values()) - again_before


def _run_naive(ctx: Any, standin: Any, results: dict[str, float]) -> None:
    """No etags, no echo suppression (see module docstring); direct calls, the same 1,000 edits."""
    from shared.gcal.wire import apply_google_event, crm_to_google, link_from_google
    from shared.models import dump_for_firestore, google_event_id_for_crm

    integration = ctx.store.get_integration(NAIVE_OWNER)
    client = ctx.calendar_client(integration)
    ids = [f"naive-{i:04d}" for i in range(EVENTS)]
    crm_writes = {"echo": 0}

    def naive_push(event_id: str) -> None:
        event = ctx.store.get_event(event_id)
        body = crm_to_google(event)
        gid = google_event_id_for_crm(event_id)
        if event.google is None:
            google_event = client.insert_event(NAIVE_EMAIL, dict(body, id=gid))
        else:
            # A blind PUT, no If-Match.
            blind_put = client.service.events().update(calendarId=NAIVE_EMAIL, eventId=gid, body=body)
            google_event = client.execute(blind_put)
        ctx.store.update_event(event_id, {"google": dump_for_firestore(link_from_google(google_event, NAIVE_EMAIL))})

    def naive_notification(event_id: str) -> None:
        """The naive pull: every notification rewrites the CRM event from Google (no etag comparison)."""
        event = ctx.store.get_event(event_id)
        google_event = client.get_event(NAIVE_EMAIL, google_event_id_for_crm(event_id))
        updated = apply_google_event(event, google_event, NAIVE_EMAIL, dt.datetime.now(dt.UTC))
        data = dump_for_firestore(updated)
        data.pop("id", None)
        ctx.store.update_event(event_id, data)
        crm_writes["echo"] += 1

    for event_id in ids:
        ctx.store.save_event(_event(event_id, NAIVE_OWNER))
        naive_push(event_id)
    before_calls = _account_calls(standin, NAIVE_EMAIL)

    def edit_chain(event_id: str, round_no: int) -> None:
        ctx.store.update_event(event_id, {"title": f"Meeting {event_id} v{round_no}"})
        naive_push(event_id)  # the edit's trigger
        naive_push(event_id)  # the trigger of its own write-back: pushes again
        naive_notification(event_id)  # Google's notification for write 1 ...
        naive_notification(event_id)  # ... and for write 2 (the loop is cut here)

    started = time.perf_counter()
    for round_no in range(1, ROUNDS + 1):
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda event_id, r=round_no: edit_chain(event_id, r), ids))
    wall = time.perf_counter() - started
    after_calls = _account_calls(standin, NAIVE_EMAIL)
    delta = {k: after_calls.get(k, 0) - before_calls.get(k, 0) for k in after_calls}
    edits = EVENTS * ROUNDS
    results["push.edits1000.naive_google_writes"] = _writes(delta)
    results["push.edits1000.naive_google_calls_per_edit"] = round(sum(delta.values()) / edits, 3)
    results["push.edits1000.naive_echo_crm_writes"] = crm_writes["echo"]
    results["push.edits1000.naive_wall_s"] = round(wall, 2)


def run(results: dict[str, float]) -> None:
    import logging

    from google.cloud import firestore

    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.server import start_standin
    from shared.context import AppContext, set_default_context
    from tests.fixtures.functions import serve_function
    from tests.fixtures.sync import connect_user, make_settings

    logging.getLogger().setLevel(logging.WARNING)
    emulator = existing_or_new()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    standin = start_standin("127.0.0.1", 0, quota_per_minute=1_000_000, push_retry_base=0.01)
    project = f"bench-push-{uuid.uuid4().hex[:8]}"
    db = firestore.Client(project=project)
    ctx = AppContext.create(make_settings(project, standin), db)
    set_default_context(ctx)
    served = serve_function("push_event", "cloudevent")
    try:
        connect_user(ctx, standin, OWNER, EMAIL, enable_calendars=(EMAIL,))
        connect_user(ctx, standin, NAIVE_OWNER, NAIVE_EMAIL)
        _run_ours(ctx, standin, served, results)
        _run_naive(ctx, standin, results)
    finally:
        served.stop()
        set_default_context(None)
        db.close()
        standin.stop()
        emulator.stop()  # only stops an emulator this run started


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
