"""Start and stop the official Cloud Firestore emulator (Java, behind gcloud's wrapper scripts).

Why a module of its own: tests, `make run` and the benchmarks all need the *real* emulator, started once on a free
port and stopped by its own process group so no Java process outlives the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from shared.logs import log_event

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "The Cloud Firestore emulator is missing. Install it with "
    "`apt-get install google-cloud-cli google-cloud-cli-firestore-emulator` "
    "(or `gcloud components install cloud-firestore-emulator`), and a Java runtime."
)


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed or did not come up."""


def free_port() -> int:
    """A free loopback TCP port (small race accepted; the emulator fails loudly if taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FirestoreEmulator:
    """A running emulator; `host` is what FIRESTORE_EMULATOR_HOST must hold."""

    host: str
    process: subprocess.Popen[bytes] | None = None
    log_path: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def reset(self, project: str) -> None:
        """Delete every document of one project (the emulator's own reset endpoint)."""
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def export(self, project: str, directory: str) -> str:
        """Export every document to a new `firestore_export_*` folder under `directory` (the emulator's own export
        endpoint); returns the path of its `.overall_export_metadata` file, what `--import-data` takes."""
        os.makedirs(directory, exist_ok=True)
        before = set(os.listdir(directory))
        body = json.dumps({"database": f"projects/{project}/databases/(default)", "export_directory": directory})
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project}:export",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        (created,) = set(os.listdir(directory)) - before
        return os.path.join(directory, created, f"{created}.overall_export_metadata")

    def stop(self) -> None:
        """Stop the wrapper and its Java child together, by our own process group only."""
        if self.process is None or self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # The Java child can outlive its wrapper for a moment; make sure nothing of the group remains.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _is_up(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_emulator(
    port: int | None = None, log_path: str | None = None, timeout_s: float = 90.0, import_data: str | None = None
) -> FirestoreEmulator:
    """Start `gcloud emulators firestore start` in its own process group and wait until it answers.

    `import_data`: an export's `.overall_export_metadata` file to load at start (`--import-data`)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailable(INSTALL_HINT)
    port = port or free_port()
    host = f"127.0.0.1:{port}"
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [gcloud, "emulators", "firestore", "start", f"--host-port={host}", "--quiet"]
        + ([f"--import-data={import_data}"] if import_data else []),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    emulator = FirestoreEmulator(host=host, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            emulator.stop()
            raise EmulatorUnavailable(f"the Firestore emulator exited with code {process.returncode}. {INSTALL_HINT}")
        if _is_up(host):
            log_event(logger, "firestore emulator started", host=host, pid=process.pid)
            return emulator
        time.sleep(0.25)
    emulator.stop()
    raise EmulatorUnavailable(f"the Firestore emulator did not answer on {host} within {timeout_s:.0f}s")


def existing_or_new(log_path: str | None = None, import_data: str | None = None) -> FirestoreEmulator:
    """Reuse FIRESTORE_EMULATOR_HOST when it points at a live emulator, else start one we own (loading
    `import_data` when given)."""
    host = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if host and _is_up(host):
        return FirestoreEmulator(host=host)
    return start_emulator(log_path=log_path, import_data=import_data)
