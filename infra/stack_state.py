"""What `make run` keeps across restarts, under `.run/state/` (`make run FRESH=1` starts empty).

- `firestore/firestore_export_*`: Firestore emulator exports (its export endpoint), taken every `checkpoint_s`
  seconds and on a polite stop; the newest complete one is loaded with `--import-data` at the next start.
- `standin.json`: the Google stand-in's snapshot (infra/google_standin/snapshot.py), written atomically every second
  when it changed, after every export, and on stop.
- `processes.json`: the process groups of the running stack (the dev stack and its emulator).
- `checkpoint.json`: which export is current and when it was started (written atomically, after the stand-in
  snapshot that follows that export).

Why this order: a SIGKILL takes the CRM's database (the emulator) back to its last export, a few seconds, and the
stand-in back at most a second. Flipping `checkpoint.json` only after a stand-in snapshot taken once the export had
finished keeps the restored stand-in at least as new as the restored Firestore, as with the real services, where Google
never loses what it acknowledged: the CRM is never restored to links to Google events Google does not have.
What Google holds and the CRM lost (pushes of lost CRM writes, Google edits already pulled) comes back through the
sync itself: on a restore every enabled calendar's pull is made due, so the first cron run pulls each from its stored
sync token; CRM writes whose trigger the kill lost are pushed by the cron's sweep of unpushed edits.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from infra.google_standin.snapshot import PeriodicSnapshots, write_atomically
from shared.logs import log_event

logger = logging.getLogger("infra.stack_state")


class StackState:
    """The state directory of one local stack; `checkpoint()` makes one consistent restart point."""

    def __init__(self, directory: Path, *, fresh: bool = False, checkpoint_s: float = 5.0) -> None:
        self.directory = directory
        self.checkpoint_s = checkpoint_s
        self.exports = directory / "firestore"
        self.standin_file = directory / "standin.json"
        self.pointer = directory / "checkpoint.json"
        if fresh and directory.exists():
            shutil.rmtree(directory)
        self.exports.mkdir(parents=True, exist_ok=True)
        self.restored = self.pointer.exists() or self.standin_file.exists()
        self._drop_unreferenced_exports()
        self._emulator: Any = None
        self._project = ""
        self._snapshots: PeriodicSnapshots | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def current(self) -> dict[str, Any] | None:
        """The last complete checkpoint: {export, firestore_started_at, standin_saved_at}, or None."""
        if not self.pointer.exists():
            return None
        return dict(json.loads(self.pointer.read_text()))

    def firestore_import(self) -> str | None:
        """The `.overall_export_metadata` file the emulator should load at start, if any."""
        current = self.current()
        return str(self.directory / current["export"]) if current else None

    def _drop_unreferenced_exports(self) -> None:
        """Exports a kill interrupted, or older than the current one, are of no further use."""
        current = self.current()
        keep = Path(current["export"]).parts[1] if current else None
        for entry in self.exports.iterdir():
            if entry.name != keep:
                shutil.rmtree(entry, ignore_errors=True)

    def restore_standin(self, standin: Any) -> bool:
        from infra.google_standin.snapshot import load

        return load(standin, self.standin_file)

    def start(self, *, emulator: Any, standin: Any, project: str) -> StackState:
        """Start the stand-in's snapshots (every second) and the checkpoints (every `checkpoint_s`)."""
        self._emulator, self._project = emulator, project
        self._snapshots = PeriodicSnapshots(standin, self.standin_file).start()
        self._thread = threading.Thread(target=self._loop, name="stack-checkpoints", daemon=True)
        self._thread.start()
        return self

    def checkpoint(self) -> dict[str, Any]:
        """Export Firestore, then snapshot the stand-in, then point `checkpoint.json` at the new export."""
        assert self._emulator is not None
        assert self._snapshots is not None
        with self._lock:
            started = time.time()
            metadata = Path(self._emulator.export(self._project, str(self.exports)))
            self._snapshots.save_now()
            record = {
                "export": str(metadata.relative_to(self.directory)),
                "firestore_started_at": started,
                "standin_saved_at": time.time(),
            }
            write_atomically(self.pointer, json.dumps(record).encode())
            self._drop_unreferenced_exports()
            return record

    def _loop(self) -> None:
        while not self._stop.wait(self.checkpoint_s):
            try:
                self.checkpoint()
            except Exception:  # the next round retries; the previous checkpoint stays current
                logger.exception("checkpoint failed")

    def stop(self) -> None:
        """On a polite stop: end the loops and take a last checkpoint."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=180)
        assert self._snapshots is not None
        self._snapshots.stop()
        record = self.checkpoint()
        log_event(logger, "local stack state saved", directory=str(self.directory), export=record["export"])


def make_pulls_due(ctx: Any) -> int:
    """After a restore: every enabled calendar's pull is due now, so the next cron run pulls it from its stored sync
    token and fetches what Google holds that the restored Firestore does not. Returns how many were marked."""
    marked = 0
    now = ctx.clock()
    for calendar in ctx.store.all_calendars():
        if calendar.enabled:
            ctx.store.update_calendar(calendar.user_id, calendar.key, {"pull_due_at": now})
            marked += 1
    return marked
