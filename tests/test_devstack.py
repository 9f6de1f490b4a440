"""`make run`'s stack, end to end: it comes up, a Google edit reaches the CRM and a CRM edit reaches Google through
the real webhook, trigger and functions, and Ctrl-C takes everything down, the Firestore emulator included.

User calls go through the local API Gateway (routes read from terraform/), the trigger and the scheduler through the
functions' Cloud Run IAM doors; calling a user-facing function directly is refused at its door. The settings page,
its demo sign-in and the OAuth return are on the gateway's origin; the functions' port serves none of them."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
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


def _assert_one_json_object_per_log_line(output: list[str], secrets: list[str]) -> None:
    """Every log line is one JSON object with a plain message (no JSON inside JSON, no colour codes), and the OAuth
    code and state that passed through the callback's query string appear nowhere."""
    logged = [line for line in output if line.startswith("{")]
    assert any('"logger": "infra.access"' in line for line in logged)
    for line in output:
        assert "\x1b[" not in line, line
        assert not any(secret in line for secret in secrets), line
    for line in logged:
        entry = json.loads(line)
        assert isinstance(entry["message"], str) and not entry["message"].lstrip().startswith("{"), line
        assert "GET /oauth_callback?" not in entry["message"], line


def test_local_stack_runs_both_directions_and_stops_cleanly(tmp_path: Path) -> None:
    functions_port, standin_port, gateway_port = free_port(), free_port(), free_port()
    project = f"devstack-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.devstack",
            "--port",
            str(functions_port),
            "--standin-port",
            str(standin_port),
            "--gateway-port",
            str(gateway_port),
            "--project",
            project,
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    emulator_host = ""
    secrets_in_query: list[str] = []
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
        from infra.deployment import read_deployment
        from infra.front_doors import FrontDoors

        doors = FrontDoors(
            read_deployment(project_id=project), None, "", gateway_url=f"http://127.0.0.1:{gateway_port}"
        )
        token = (ROOT / ".run" / "demo-id-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        # 0. The walkthrough names the settings page on the gateway; it is served with its CSP, and the demo sign-in
        #    is a local-only route on that same origin. The functions' own port serves neither.
        page_url = next(m.group(0) for line in seen if (m := re.search(r"http://\S+/settings/index\.html", line)))
        assert page_url == doors.settings_page_url()
        page = requests.get(page_url, timeout=30)
        assert page.status_code == 200 and "crm-calendar-sync" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        module = requests.get(doors.gateway_url + "/settings/crm-calendar-sync.js", timeout=30)
        assert module.status_code == 200 and "google_code" in module.text
        signed_in = requests.post(f"{doors.gateway_url}/_local/id-token", timeout=30)
        assert signed_in.status_code == 200 and signed_in.json()["user_id"] == DEMO_USER
        assert requests.get(f"{functions}/settings_ui/index.html", timeout=30).status_code == 401
        assert requests.post(f"{functions}/_local/id-token", timeout=30).status_code == 404

        # 1. Connect Google through the real OAuth round trip.
        direct = requests.get(f"{functions}/oauth_start", headers={**auth, "Accept": "application/json"}, timeout=30)
        assert direct.status_code == 401, "a user-facing function answered without its Cloud Run IAM door"
        start = requests.get(doors.route_url("oauth_start"), headers={**auth, "Accept": "application/json"}, timeout=30)
        assert start.status_code == 200, start.text
        consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
        assert consent.status_code == 302
        callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=60)
        assert callback.status_code == 302, callback.text
        # The browser lands on the settings page (the fragment stays in the browser), which posts code and state back
        # to the callback's route on its own origin with the user's ID token (tests/browser drive that part).
        landing = urllib.parse.urlsplit(callback.headers["Location"])
        assert landing._replace(fragment="").geturl() == page_url
        page = requests.get(landing._replace(fragment="").geturl(), timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"], page.text
        handoff = dict(urllib.parse.parse_qsl(landing.fragment))
        secrets_in_query = [handoff["google_code"], handoff["google_state"]]
        finished = requests.post(
            doors.route_url("oauth_callback"),
            headers=auth,
            timeout=60,
            json={"code": handoff["google_code"], "state": handoff["google_state"]},
        )
        assert finished.status_code == 200, finished.text
        assert finished.json()["connected"] is True

        # 2. Enable sync.
        enable = requests.post(doors.route_url("sync_enable"), json={}, headers=auth, timeout=60)
        assert enable.status_code == 200, enable.text

        # 3. A Google-side edit reaches the CRM through the webhook.
        created = requests.post(
            f"{standin}/_control/calendars/{DEMO_EMAIL}/events",
            json={
                "summary": "Call with ACME",
                "start": {"dateTime": "2027-01-05T10:00:00Z"},
                "end": {"dateTime": "2027-01-05T11:00:00Z"},
            },
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
            db.collection("events").document("crm-meeting-1").set(
                {
                    "owner_id": DEMO_USER,
                    "title": "Quote review",
                    "start": {"date_time": "2027-01-06T09:00:00Z"},
                    "end": {"date_time": "2027-01-06T09:30:00Z"},
                    "updated_at": time.time(),
                }
            )

            def in_google() -> bool:
                listed = requests.get(f"{standin}/_control/calendars/{DEMO_EMAIL}/events", timeout=10).json()
                return any(e.get("summary") == "Quote review" for e in listed["events"])

            _wait_for(in_google, 30, "the CRM meeting in the stand-in")
            status = requests.get(doors.route_url("sync_status"), headers=auth, timeout=30)
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
    while not lines.empty():
        seen.append(lines.get())
    _assert_one_json_object_per_log_line(seen, secrets_in_query)
    assert emulator_host
    assert not _answers(emulator_host), "the emulator outlived make run"
