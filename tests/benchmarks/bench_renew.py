"""Benchmark: one renewal run over 10,000 enabled calendars of which 300 are due -> Firestore reads, Google calls.

Setup (not measured): its own emulator project and an in-process Google stand-in. 100 connected Google accounts own
the 300 due calendars (primary + 2 secondary each); their channels expire in 12 h, so renewal is due. 9,700 more
enabled calendars (1,940 users x 5) have channels that expire in 5 days and were synced recently: nothing is due.
Every calendar has its ACTIVE channel route, every user an integration; seeded with batched writes (500 per commit).

Ours: `run_renewal` on a fresh context (no cached clients), as the cron runs it: indexed due queries
(renew_due_at / pull_due_at over the `calendars` collection group), leases, new channel first, switch, stop the old.
Naive baseline, same data: the scan a cron without due fields would need to find the same 300 (every calendar read).

Figures: renew.cal10k_due300.firestore_reads (target: proportional to 300), .google_calls (Calendar API calls the
stand-in served: watch + stop per renewed calendar), .token_refreshes, .renewed (must be 300), .wall_s,
.naive_firestore_reads, .naive_wall_s.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import uuid
from typing import Any

TOTAL = 10_000
DUE_ACCOUNTS = 100
DUE_PER_ACCOUNT = 3
IDLE_PER_USER = 5
PREFIX = "renew.cal10k_due300"


def _receiver() -> tuple[str, Any]:
    """A webhook that answers 200 (the stand-in's first `sync` message needs somewhere to go)."""
    from werkzeug.serving import make_server

    from infra.access_log import AccessLogRequestHandler

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=AccessLogRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", server


def _seed(ctx: Any, standin: Any, now: dt.datetime) -> int:
    from shared.config import GOOGLE_SCOPES
    from shared.crypto import secret_digest
    from shared.models import (
        ChannelInfo,
        ChannelRoute,
        Integration,
        IntegrationStatus,
        SyncedCalendar,
        calendar_key,
        dump_for_firestore,
    )

    store = ctx.store
    control = standin.control
    digest = secret_digest("seeded")
    seeded = 0
    with store.batch() as batch:

        def add(user_id: str, calendar_id: str, expiration: dt.datetime, renew_at: dt.datetime) -> None:
            nonlocal seeded
            channel_id = str(uuid.uuid4())
            info = ChannelInfo(
                id=channel_id,
                resource_id=f"res-{channel_id[:8]}",
                token_digest=digest,
                expiration=expiration,
                address=ctx.settings.webhook_url,
                created_at=now,
            )
            cal = SyncedCalendar(
                user_id=user_id,
                calendar_id=calendar_id,
                enabled=True,
                sync_token="seeded-token",
                channel=info,
                renew_due_at=renew_at,
                pull_due_at=now + dt.timedelta(hours=3),
                last_sync_at=now - dt.timedelta(hours=1),
            )
            batch.set(store.calendar_ref(user_id, calendar_key(calendar_id)), dump_for_firestore(cal))
            route = ChannelRoute(
                channel_id=channel_id,
                user_id=user_id,
                calendar_id=calendar_id,
                calendar_key=calendar_key(calendar_id),
                resource_id=info.resource_id,
                token_digest=digest,
                expiration=expiration,
                created_at=now - dt.timedelta(days=6),
            )
            batch.set(store.channel_ref(channel_id), dump_for_firestore(route))
            seeded += 1

        for index in range(DUE_ACCOUNTS):
            email = f"due{index}@example.com"
            control.create_account(email)
            calendars = [email] + [control.create_calendar(email, f"Cal {k}")["id"] for k in range(DUE_PER_ACCOUNT - 1)]
            refresh_token = control.issue_refresh_token(email, standin.client_id, list(GOOGLE_SCOPES))
            ciphertext, key_id = ctx.cipher.encrypt(refresh_token, owner=f"due-user-{index}")
            integration = Integration(
                user_id=f"due-user-{index}",
                status=IntegrationStatus.CONNECTED,
                account_email=email,
                scopes=list(GOOGLE_SCOPES),
                refresh_token_ciphertext=ciphertext,
                key_id=key_id,
                target_calendar_id=email,
                connected_at=now,
            )
            batch.set(store.integration_ref(integration.user_id), dump_for_firestore(integration))
            for offset, calendar_id in enumerate(calendars):
                add(
                    integration.user_id,
                    calendar_id,
                    now + dt.timedelta(hours=12),
                    now - dt.timedelta(minutes=10 + offset),
                )
        idle_users = (TOTAL - DUE_ACCOUNTS * DUE_PER_ACCOUNT) // IDLE_PER_USER
        for index in range(idle_users):
            user_id = f"idle-user-{index}"
            integration = Integration(
                user_id=user_id,
                status=IntegrationStatus.CONNECTED,
                account_email=f"idle{index}@example.com",
                refresh_token_ciphertext="v1:k1:x",
                key_id="k1",
                connected_at=now,
            )
            batch.set(store.integration_ref(user_id), dump_for_firestore(integration))
            for k in range(IDLE_PER_USER):
                add(user_id, f"idle{index}-{k}@example.com", now + dt.timedelta(days=5), now + dt.timedelta(days=4))
    return seeded


def run(results: dict[str, float]) -> None:
    import logging

    from google.cloud import firestore

    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.server import start_standin
    from shared.account.renewal import run_renewal
    from shared.context import AppContext
    from shared.store import CALENDARS
    from tests.fixtures.sync import make_settings

    logging.getLogger().setLevel(logging.WARNING)
    emulator = existing_or_new()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    standin = start_standin("127.0.0.1", 0, quota_per_minute=1_000_000, push_retry_base=0.01)
    webhook_url, receiver = _receiver()
    project = f"bench-renew-{uuid.uuid4().hex[:8]}"
    db = firestore.Client(project=project)
    settings = make_settings(project, standin, webhook_url=webhook_url)
    try:
        now = dt.datetime.now(dt.UTC)
        seeded = _seed(AppContext.create(settings, db), standin, now)
        assert seeded == TOTAL, seeded

        # Naive baseline: find the due calendars by reading every calendar.
        naive = AppContext.create(settings, db)
        started = time.perf_counter()
        due = sum(
            1
            for snapshot in naive.store.query(db.collection_group(CALENDARS))
            if (snapshot.get("renew_due_at") or now) <= now
        )
        results[f"{PREFIX}.naive_firestore_reads"] = float(naive.store.ops["reads"])
        results[f"{PREFIX}.naive_wall_s"] = round(time.perf_counter() - started, 2)
        results[f"{PREFIX}.naive_found_due"] = float(due)
        # Ours: a fresh context, as a cold cron invocation.
        ctx = AppContext.create(settings, db)
        standin.control.reset_counters()
        started = time.perf_counter()
        report = run_renewal(ctx)
        wall = time.perf_counter() - started
        counters = standin.control.counters()
        api_calls = sum(n for method, n in counters["by_method"].items() if method.startswith("calendar."))
        results[f"{PREFIX}.firestore_reads"] = float(report["firestore"].get("reads", 0))
        results[f"{PREFIX}.google_calls"] = float(api_calls)
        results[f"{PREFIX}.token_refreshes"] = float(counters["by_method"].get("oauth.token", 0))
        results[f"{PREFIX}.renewed"] = float(report["renewed"])
        results[f"{PREFIX}.wall_s"] = round(wall, 2)

    finally:
        receiver.shutdown()
        db.close()
        standin.stop()
        emulator.stop()  # only stops an emulator this run started


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
