"""`make run`'s stack, end to end: it comes up, a Google edit reaches the CRM and a CRM edit reaches Google through
the real webhook, trigger and functions, and Ctrl-C takes everything down, the Firestore emulator included."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import requests

from infra.firestore_emulator import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO_USER = "demo-user"
DEMO_EMAIL = "demo@example.com"


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_local_stack_runs_both_directions_and_stops_cleanly(tmp_path: Path) -> None:
    functions_port, standin_port = free_port(), free_port()
    project = f"devstack-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.devstack", "--port", str(functions_port), "--standin-port", str(standin_port),
         "--project", project, "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    emulator_host = ""
    try:
        deadline = time.monotonic() + 120
        while not any("Local stack is up" in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen[-40:])
            assert process.poll() is None, "".join(seen[-40:])
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        time.sleep(0.5)
        while not lines.empty():
            seen.append(lines.get())
        emulator_host = next(
            line.split("FIRESTORE_EMULATOR_HOST=")[1].split()[0] for line in seen if "FIRESTORE_EMULATOR_HOST=" in line
        )
        functions = f"http://127.0.0.1:{functions_port}"
        standin = f"http://127.0.0.1:{standin_port}"
        token = (ROOT / ".run" / "demo-id-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        # 1. Connect Google through the real OAuth round trip.
        start = requests.get(f"{functions}/oauth_start", headers={**auth, "Accept": "application/json"}, timeout=30)
        assert start.status_code == 200, start.text
        consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
        assert consent.status_code == 302
        callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=60)
        assert callback.status_code in (200, 302, 303), callback.text

        # 2. Enable sync.
        enable = requests.post(f"{functions}/sync_enable", json={}, headers=auth, timeout=60)
        assert enable.status_code == 200, enable.text

        # 3. A Google-side edit reaches the CRM through the webhook.
        created = requests.post(
            f"{standin}/_control/calendars/{DEMO_EMAIL}/events",
            json={"summary": "Call with ACME", "start": {"dateTime": "2027-01-05T10:00:00Z"},
                  "end": {"dateTime": "2027-01-05T11:00:00Z"}},
            timeout=30,
        )
        assert created.status_code == 200, created.text

        from google.cloud import firestore

        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator_host
        try:
            db = firestore.Client(project=project)
            titles = lambda: {d.to_dict().get("title") for d in db.collection("events").stream()}  # noqa: E731
            _wait_for(lambda: "Call with ACME" in titles(), 30, "the Google event in Firestore")

            # 4. A CRM-side write reaches Google through the local trigger and push_event.
            db.collection("events").document("crm-meeting-1").set({
                "owner_id": DEMO_USER, "title": "Quote review", "start": {"date_time": "2027-01-06T09:00:00Z"},
                "end": {"date_time": "2027-01-06T09:30:00Z"}, "updated_at": time.time(),
            })

            def in_google() -> bool:
                listed = requests.get(f"{standin}/_control/calendars/{DEMO_EMAIL}/events", timeout=10).json()
                return any(e.get("summary") == "Quote review" for e in listed["events"])

            _wait_for(in_google, 30, "the CRM meeting in the stand-in")
            status = requests.get(f"{functions}/sync_status", headers=auth, timeout=30)
            assert status.status_code == 200
            assert status.json()["calendars"][0]["enabled"] is True
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert code == 0
    assert emulator_host
    assert not _answers(emulator_host), "the emulator outlived make run"
