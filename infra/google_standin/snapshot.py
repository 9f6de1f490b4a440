"""Save and load the stand-in's state as one JSON document, so `make run` can be stopped (or killed) and restarted
the way Google itself keeps calendars, channels and tokens across anything that happens to a client.

What is saved: accounts, calendars with their events and change-log positions (so sync tokens handed out before a
restart stay valid), OAuth clients and tokens (so stored refresh tokens keep working), the ID-token signing key (so
tokens minted before a restart still verify), push channels and the resource-id secret (so the webhook still knows
the channels), and the clock's offset. What is not: fault injections, counters and deliveries still queued, which a
restart forgets as a crash of a notifier would (the cron's pulls catch those up).

The snapshot is taken under the store's, OAuth's and the push manager's locks together, so it is one consistent
cut of the stand-in; `write_atomically` replaces the file in one rename, so a SIGKILL leaves the previous snapshot
or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.auth import crypt

from .oauth import AccessToken, Client, RefreshToken
from .push import Channel
from .store import Account, Calendar, EventRecord

log = logging.getLogger("google_standin.snapshot")
FORMAT = 1


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def capture(standin: Any) -> dict[str, Any]:
    """One consistent, JSON-ready copy of everything the stand-in must keep across a restart."""
    store, oauth, push = standin.store, standin.oauth, standin.push
    with store.lock, oauth.lock, push.cond:
        calendars = []
        for calendar in store.calendars.values():
            data = _fields(calendar)
            data["events"] = {key: {"data": r.data, "seq": r.seq} for key, r in calendar.events.items()}
            calendars.append(data)
        keys = oauth.keys
        state = {
            "format": FORMAT,
            "clock_offset": standin.clock.offset,
            "store": {
                "accounts": [_fields(a) for a in store.accounts.values()],
                "calendars": calendars,
                "etag_last": store._etag_last,
                "list_seq": store._list_seq,
            },
            "oauth": {
                "clients": [_fields(c) for c in oauth.clients.values()],
                "refresh_tokens": [_fields(t) for t in oauth.refresh_tokens.values()],
                "access_tokens": [_fields(t) for t in oauth.access_tokens.values()],
                "current_user": oauth.current_user,
                "key": {
                    "kid": keys.kid,
                    "private_pem": keys.key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    ).decode(),
                    "cert_pem": keys.cert_pem,
                },
            },
            "push": {"secret": push.secret, "channels": [_fields(c) for c in push.channels.values()]},
        }
        # Serialise while still holding the locks: event data are live dicts the API threads mutate.
        return json.loads(json.dumps(state))


def restore(standin: Any, state: dict[str, Any]) -> None:
    """Replace the stand-in's state with a snapshot taken by `capture` (on a fresh stand-in, before serving)."""
    if state.get("format") != FORMAT:
        raise ValueError(f"unknown stand-in snapshot format {state.get('format')!r}")
    store, oauth, push = standin.store, standin.oauth, standin.push
    with store.lock, oauth.lock, push.cond:
        standin.clock.reset()
        standin.clock.advance(float(state["clock_offset"]))
        saved = state["store"]
        store.accounts = {a["email"]: Account(**a) for a in saved["accounts"]}
        store.calendars = {}
        for data in saved["calendars"]:
            events = {key: EventRecord(**record) for key, record in data.pop("events").items()}
            store.calendars[data["id"]] = Calendar(**data, events=events)
        store._etag_last = int(saved["etag_last"])
        store._list_seq = int(saved["list_seq"])
        saved = state["oauth"]
        oauth.clients = {c["client_id"]: Client(**c) for c in saved["clients"]}
        oauth.refresh_tokens = {t["token"]: RefreshToken(**t) for t in saved["refresh_tokens"]}
        oauth.access_tokens = {t["token"]: AccessToken(**t) for t in saved["access_tokens"]}
        oauth.current_user = saved["current_user"]
        key = saved["key"]
        oauth.keys.key = serialization.load_pem_private_key(key["private_pem"].encode(), password=None)
        oauth.keys.kid = key["kid"]
        oauth.keys.cert = x509.load_pem_x509_certificate(key["cert_pem"].encode())
        oauth.keys.cert_pem = key["cert_pem"]
        oauth.keys.signer = crypt.RSASigner.from_string(key["private_pem"], key_id=key["kid"])
        push.secret = state["push"]["secret"]
        push.channels = {c["id"]: Channel(**c) for c in state["push"]["channels"]}


def write_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, rename it over `path` and fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(standin: Any, path: Path) -> bool:
    """Write the snapshot; False when it is byte-for-byte the one already on disk (nothing written)."""
    payload = json.dumps(capture(standin), separators=(",", ":"), sort_keys=True).encode()
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == payload:
            return False
    write_atomically(path, payload)
    return True


def load(standin: Any, path: Path) -> bool:
    """Restore from `path` when it exists; False when there is nothing to restore."""
    if not path.exists():
        return False
    restore(standin, json.loads(path.read_bytes()))
    return True


class PeriodicSnapshots:
    """Saves the stand-in every `interval_s` seconds when it changed, so a SIGKILL loses at most that much."""

    def __init__(self, standin: Any, path: Path, interval_s: float = 1.0) -> None:
        self.standin, self.path, self.interval_s = standin, path, interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="standin-snapshots", daemon=True)

    def start(self) -> PeriodicSnapshots:
        self._thread.start()
        return self

    def save_now(self) -> bool:
        with self._lock:
            return save(self.standin, self.path)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.save_now()
            except Exception:  # keep snapshotting; the next round retries
                log.exception("stand-in snapshot failed")

    def stop(self) -> None:
        """Stop the loop and write a last snapshot."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.save_now()
