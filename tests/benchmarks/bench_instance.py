"""Benchmark: notifications per second one webhook instance sustains with p95 under a bound, served as deployed.

The webhook runs in its own process the way the Python functions buildpack serves a function: the
`functions-framework --target webhook` command, which serves with gunicorn (functions_framework/_http/gunicorn.py:
one worker, gthread with `THREADS` threads, default 4 per CPU, request timeout `CLOUD_RUN_TIMEOUT_SECONDS`, 0 = none).
THREADS is INSTANCE_THREADS (4: the framework's default on the 1-vCPU instance terraform sizes the webhook with).
Behind it: the Firestore emulator and the Google stand-in, on loopback, on this machine's cores.

Setup (not measured): INSTANCE_CALENDARS users connect and enable their primary calendar (real channels whose address
is the served webhook); the stand-in's own deliveries are paused, so only the harness's notifications arrive.
After one unmeasured warm-up notification per calendar (the import and each calendar's Google client, paid once per
instance), each step offers a fixed rate for INSTANCE_STEP_SECONDS, open loop (each notification has a scheduled send
time and its latency counts from then, so a backlog shows as latency): per notification, one Google edit of an event
in a calendar (round robin) and the `exists` notification Google would send for it, with its channel's id, token and
resource id. Rates climb through INSTANCE_RATES until p95 exceeds INSTANCE_P95_BOUND_MS or a request fails.

Figures: instance.webhook.notifications_per_s (the highest rate that held), instance.webhook.p95_ms at that rate,
instance.webhook.p95_ms_at_<rate> per step (-1: not offered), instance.webhook.stopped_at_rate and .failures_at_stop,
instance.webhook.threads, instance.webhook.p95_bound_ms. The machine is shared, so steps near the knee vary between
runs by a step or two.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "instance.webhook"
RATES = tuple(float(r) for r in os.environ.get("INSTANCE_RATES", "5,10,15,20,25,30,40,60").split(","))
STEP_SECONDS = float(os.environ.get("INSTANCE_STEP_SECONDS", 10))
P95_BOUND_MS = float(os.environ.get("INSTANCE_P95_BOUND_MS", 1000))
THREADS = int(os.environ.get("INSTANCE_THREADS", 4))
CALENDARS = int(os.environ.get("INSTANCE_CALENDARS", 48))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_webhook(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`functions-framework --target webhook` (gunicorn, gthread) in its own process group."""
    command = [
        str(Path(sys.executable).parent / "functions-framework"),
        "--target",
        "webhook",
        "--source",
        str(ROOT / "main.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError("the webhook did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _step(url: str, channels: list[dict[str, Any]], control: Any, rate: float, numbers: Any) -> tuple[float, int]:
    """One open-loop step at `rate` notifications/s: (p95 ms, failures)."""
    count = max(1, int(rate * STEP_SECONDS))
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    started = time.perf_counter() + 0.2

    def one(index: int) -> None:
        nonlocal failures
        channel = channels[index % len(channels)]
        due = started + index / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        try:
            control.edit_event(channel["calendar"], channel["event"], {"summary": f"edit {index}"})
            answer = requests.post(
                url,
                timeout=30,
                headers={
                    "X-Goog-Channel-ID": channel["id"],
                    "X-Goog-Channel-Token": channel["token"],
                    "X-Goog-Resource-ID": channel["resourceId"],
                    "X-Goog-Resource-State": "exists",
                    "X-Goog-Resource-URI": channel["resourceUri"],
                    "X-Goog-Message-Number": str(next(numbers)),
                    "X-Goog-Channel-Expiration": "Tue, 19 Nov 2030 01:13:52 GMT",
                    "User-Agent": "APIs-Google",
                },
            )
            ok = answer.status_code in (200, 202)
        except requests.RequestException:
            ok = False
        with lock:
            latencies.append((time.perf_counter() - due) * 1000)
            failures += 0 if ok else 1

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(one, range(count)))
    return _percentile(latencies, 0.95), failures


def run(results: dict[str, float]) -> None:
    import logging

    from infra.devstack import configure_environment
    from infra.google_standin.server import start_standin
    from shared.account.enablement import EnableRequest, enable
    from shared.config import GOOGLE_SCOPES, get_settings, reset_settings
    from shared.context import AppContext
    from shared.models import Integration, IntegrationStatus, utcnow

    logging.getLogger().setLevel(logging.WARNING)
    saved_env = dict(os.environ)
    standin = start_standin("127.0.0.1", 0, quota_per_minute=1_000_000, push_retry_base=0.05)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    process = None
    try:
        configure_environment(
            project=f"bench-instance-{uuid.uuid4().hex[:8]}", standin=standin, functions_url=f"http://127.0.0.1:{port}"
        )
        os.environ["WEBHOOK_URL"] = url
        reset_settings()
        env = dict(os.environ, THREADS=str(THREADS), WORKERS="1", CLOUD_RUN_TIMEOUT_SECONDS="0", PYTHONPATH=str(ROOT))
        process = _serve_webhook(env, port)
        ctx = AppContext.create(get_settings())
        control = standin.control
        channels: list[dict[str, Any]] = []
        for index in range(CALENDARS):
            uid, email = f"inst-user-{index}", f"inst{index}@example.com"
            control.create_account(email)
            token = control.issue_refresh_token(email, ctx.settings.oauth_client_id, list(GOOGLE_SCOPES))
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
                )
            )
            event = control.create_event(
                email,
                {
                    "summary": "seed",
                    "start": {"dateTime": "2030-05-01T09:00:00Z"},
                    "end": {"dateTime": "2030-05-01T10:00:00Z"},
                },
            )
            enable(ctx, uid, EnableRequest(calendar_ids=[email]))
            channels.append({"calendar": email, "event": event["id"]})
        control.flush(timeout=60)
        control.pause_delivery()
        live = {c["target"]: c for c in control.channels() if not c["stopped"] and c["kind_watched"] == "events"}
        for channel in channels:
            channel.update(live[channel["calendar"]])
        numbers = itertools.count(1000)
        # Warm-up, not measured: the instance's first request imports the function, and each calendar's first pull
        # builds its Google client (one token refresh); a deployed instance pays these once, not per notification.
        _step(url, channels, control, rate=len(channels) / STEP_SECONDS, numbers=numbers)
        sustained, p95_sustained = 0.0, 0.0
        stopped = False
        for rate in RATES:
            if stopped:
                results[f"{PREFIX}.p95_ms_at_{rate:g}"] = -1.0  # not offered: a lower rate broke the bound
                continue
            p95, failures = _step(url, channels, control, rate, numbers)
            results[f"{PREFIX}.p95_ms_at_{rate:g}"] = round(p95, 1)
            if failures or p95 > P95_BOUND_MS:
                results[f"{PREFIX}.stopped_at_rate"] = rate
                results[f"{PREFIX}.failures_at_stop"] = float(failures)
                stopped = True
                continue
            sustained, p95_sustained = rate, p95
        results[f"{PREFIX}.notifications_per_s"] = sustained
        results[f"{PREFIX}.p95_ms"] = round(p95_sustained, 1)
        results[f"{PREFIX}.threads"] = float(THREADS)
        results[f"{PREFIX}.p95_bound_ms"] = P95_BOUND_MS
    finally:
        if process is not None:
            _stop(process)
        standin.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        reset_settings()


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
