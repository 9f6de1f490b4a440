"""`make run` killed mid-burst (SIGKILL of every process group of the stack, no polite stop) and started again: what
either side had committed before the last checkpoint is there after the restart, and after the cron both sides hold
the same meetings, each once, including writes made after that checkpoint that one side still had."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.firestore_emulator import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO_USER = "demo-user"
DEMO_EMAIL = "demo@example.com"


class Stack:
    """One `python -m infra.devstack` process on fixed ports and a given state directory."""

    def __init__(self, functions_port: int, standin_port: int, project: str, state_dir: Path) -> None:
        from infra.deployment import read_deployment
        from infra.front_doors import FrontDoors

        gateway_port = free_port()
        self.functions = f"http://127.0.0.1:{functions_port}"
        # Only the route table is used: the user-facing functions answer through the stack's gateway, never directly.
        self.doors = FrontDoors(
            read_deployment(project_id=project), None, "", gateway_url=f"http://127.0.0.1:{gateway_port}"
        )
        self.standin = f"http://127.0.0.1:{standin_port}"
        self.project, self.state_dir = project, state_dir
        env = {k: v for k, v in os.environ.items() if k not in ("FIRESTORE_EMULATOR_HOST", "FRESH")}
        # Tunables shortened so recovery takes seconds: a lease the kill left behind expires after 10 s (120 s by
        # default), and the cron's sweep pushes CRM edits whose trigger was lost 5 s after them (120 s by default).
        env.update(SYNC_LEASE_SECONDS="10", PUSH_SWEEP_GRACE_SECONDS="5")
        self.process = subprocess.Popen(
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
                str(state_dir),
                "--checkpoint-seconds",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[str] = []
        self.groups = {"devstack": self.process.pid, "firestore_emulator": None}
        try:
            self._wait_until_up()
        except BaseException:
            self.kill()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while not any("FIRESTORE_EMULATOR_HOST=" in line for line in self.seen):
            assert time.monotonic() < deadline, "".join(self.seen[-40:])
            assert self.process.poll() is None, "".join(self.seen[-40:])
            try:
                self.seen.append(self.lines.get(timeout=1))
            except queue.Empty:
                continue
        marker = "FIRESTORE_EMULATOR_HOST="
        self.emulator_host = next(line.split(marker)[1].split()[0] for line in self.seen if marker in line)
        self.groups = json.loads((self.state_dir / "processes.json").read_text())

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            self.lines.put(line)

    def db(self) -> Any:
        from google.cloud import firestore

        os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator_host
        return firestore.Client(project=self.project)

    def kill(self) -> None:
        """SIGKILL every process group of the stack at once: no handler runs, nothing is saved on the way out."""
        for pgid in (self.groups["devstack"], self.groups["firestore_emulator"]):
            if pgid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=240)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def cron(self) -> None:
        """One Cloud Scheduler run of `renew` through its Cloud Run IAM door, with the token production's job sends."""
        from infra.api_gateway import StandinTokens
        from infra.google_standin.control import ControlClient

        deployment = self.doors.deployment
        token = StandinTokens(ControlClient(self.standin), deployment.scheduler_account)(deployment.scheduler_audience)
        response = requests.post(
            f"{self.functions}/renew", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        assert response.status_code == 200, response.text

    def crm_titles(self) -> Counter[str]:
        return Counter(
            d.to_dict().get("title") for d in self.db().collection("events").stream() if not d.to_dict().get("deleted")
        )

    def google_titles(self) -> Counter[str]:
        listed = requests.get(f"{self.standin}/_control/calendars/{DEMO_EMAIL}/events", timeout=30).json()["events"]
        return Counter(e.get("summary") for e in listed if e.get("status") != "cancelled")


def _connect_and_enable(stack: Stack) -> None:
    token = (ROOT / ".run" / "demo-id-token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    doors = stack.doors
    start = requests.get(doors.route_url("oauth_start"), headers={**auth, "Accept": "application/json"}, timeout=30)
    assert start.status_code == 200, start.text
    consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
    callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=60)
    assert callback.status_code == 302, callback.text
    # Google's redirect hands code and state to the CRM page (in the fragment); the page finishes with the ID token.
    handoff = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback.headers["Location"]).fragment))
    finished = requests.post(
        doors.route_url("oauth_callback"),
        headers=auth,
        json={"code": handoff["google_code"], "state": handoff["google_state"]},
        timeout=60,
    )
    assert finished.status_code == 200, finished.text
    enable = requests.post(doors.route_url("sync_enable"), json={}, headers=auth, timeout=60)
    assert enable.status_code == 200, enable.text


def _burst(stack: Stack, seconds: float) -> list[tuple[str, str, float]]:
    """CRM writes and Google edits, alternating, for `seconds`; each (side, title, time acknowledged)."""
    from google.cloud import firestore

    db = stack.db()
    acknowledged: list[tuple[str, str, float]] = []
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
        day = 1 + n % 27
        crm_title = f"crm-{n}"
        db.collection("events").document(f"burst-{n}").set(
            {
                "owner_id": DEMO_USER,
                "title": crm_title,
                "start": {"date_time": f"2027-02-{day:02d}T09:00:00Z"},
                "end": {"date_time": f"2027-02-{day:02d}T09:30:00Z"},
                "updated_at": firestore.SERVER_TIMESTAMP,
            }
        )
        acknowledged.append(("crm", crm_title, time.time()))
        google_title = f"google-{n}"
        created = requests.post(
            f"{stack.standin}/_control/calendars/{DEMO_EMAIL}/events",
            json={
                "summary": google_title,
                "start": {"dateTime": f"2027-03-{day:02d}T10:00:00Z"},
                "end": {"dateTime": f"2027-03-{day:02d}T11:00:00Z"},
            },
            timeout=30,
        )
        assert created.status_code == 200, created.text
        acknowledged.append(("google", google_title, time.time()))
        time.sleep(0.1)
    return acknowledged


@pytest.mark.timeout(900)
def test_whole_stack_sigkilled_mid_burst_restarts_and_converges(tmp_path: Path) -> None:
    functions_port, standin_port = free_port(), free_port()
    project = f"restart-{uuid.uuid4().hex[:8]}"
    state_dir = tmp_path / "state"
    previous_host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    first = Stack(functions_port, standin_port, project, state_dir)
    second = None
    try:
        _connect_and_enable(first)
        acknowledged = _burst(first, seconds=12)
        first.kill()
        checkpoint = json.loads((state_dir / "checkpoint.json").read_text())
        committed_before = checkpoint["firestore_started_at"]
        committed = {(side, title) for side, title, at in acknowledged if at < committed_before}
        after_checkpoint = {(side, title) for side, title, at in acknowledged if at >= committed_before}
        # The kill really fell mid-burst: writes on both sides before the last checkpoint, and some after it.
        assert {side for side, _ in committed} == {"crm", "google"}, checkpoint
        assert after_checkpoint, checkpoint

        second = Stack(functions_port, standin_port, project, state_dir)
        assert any("local stack state restored" in line for line in second.seen), "".join(second.seen[-40:])
        restored_crm, restored_google = second.crm_titles(), second.google_titles()
        # The restart point holds every write acknowledged before it (the CRM's own, and Google's).
        assert {t for s, t in committed if s == "crm"} <= set(restored_crm)
        assert {t for s, t in committed if s == "google"} <= set(restored_google)

        converged = False
        for _ in range(30):
            second.cron()
            time.sleep(3)
            crm, google = second.crm_titles(), second.google_titles()
            if set(crm) == set(google):
                converged = True
                break
        while not second.lines.empty():
            second.seen.append(second.lines.get())
        assert converged, (sorted(set(crm) ^ set(google)), "".join(second.seen[-60:]))
        titles = {t for _, t in committed}
        # Nothing committed is lost, nothing restored on either side is lost, and nothing is doubled.
        assert titles <= set(crm) and titles <= set(google)
        assert set(restored_crm) | set(restored_google) <= set(crm)
        assert all(count == 1 for count in crm.values()), crm
        assert all(count == 1 for count in google.values()), google
        assert second.stop() == 0
        assert (state_dir / "checkpoint.json").exists()
    finally:
        first.process.poll() is None and first.kill()
        if second is not None and second.process.poll() is None:
            second.kill()
        if previous_host is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous_host
