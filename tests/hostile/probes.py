"""Probes shared by the hostile, convergence and load suites: a movable engine clock, a recursive Firestore snapshot,
the stand-in's externally visible state, the secrets it issued, and an in-process log capture."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from shared.config import Settings
from shared.context import AppContext
from shared.logs import CloudLoggingFormatter
from shared.models import utcnow
from tests.fixtures.functions import ServedFunction
from tests.fixtures.sync import TEST_KEYS


class SkewClock:
    """The engine's clock, movable forward without sleeping (the stand-in's clock is moved separately)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


# --- probes -----------------------------------------------------------------------------------------------------------
def firestore_snapshot(db: Any) -> dict[str, tuple[Any, Any]]:
    """Every document of the project, recursively (missing parents of subcollections included): path -> (update
    time, data). Collections are discovered, not listed by hand, so a new collection cannot escape the check."""
    found: dict[str, tuple[Any, Any]] = {}

    def walk(collection: Any) -> None:
        for ref in collection.list_documents():
            snapshot = ref.get()
            found[ref.path] = (snapshot.update_time, snapshot.to_dict()) if snapshot.exists else (None, None)
            for sub in ref.collections():
                walk(sub)

    for collection in db.collections():
        walk(collection)
    return found


def diff_snapshots(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changes = [f"created {p}" for p in sorted(set(after) - set(before))]
    changes += [f"deleted {p}" for p in sorted(set(before) - set(after))]
    changes += [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return changes


def google_state(google: Any) -> dict[str, Any]:
    """What a Google call would move: API/token call counters, revocations, channels, stored events."""
    counters = google.control.counters()
    oauth = google.handle.standin.oauth
    with oauth.lock:
        revoked = sorted(t.token[:8] for t in oauth.refresh_tokens.values() if t.revoked)
    channels = sorted((c["id"], c["stopped"]) for c in google.control.channels())
    return {"calls": counters.get("by_method", {}), "revoked": revoked, "channels": channels}


def issued_secrets(google: Any, settings: Settings) -> dict[str, str]:
    """Every secret that must never appear in plaintext: refresh and access tokens the stand-in issued, channel tokens,
    the OAuth client secret and the token encryption keys."""
    oauth = google.handle.standin.oauth
    found: dict[str, str] = {}
    with oauth.lock:
        for token in oauth.refresh_tokens:
            found[token] = "refresh token"
        for token in oauth.access_tokens:
            found[token] = "access token"
    for channel in google.handle.standin.push.channels.values():
        if channel.token:
            found[channel.token] = "channel token"
    found[settings.oauth_client_secret] = "client secret"
    for key in json.loads(TEST_KEYS).values():
        found[key] = "encryption key"
    return {k: v for k, v in found.items() if k and len(k) >= 8}


class LogCapture(logging.Handler):
    """Everything logged in-process (the served functions run in threads of this process), formatted as shipped."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(CloudLoggingFormatter())
        self.buffer = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.buffer.write(self.format(record) + "\n")
        except Exception:  # never break the code under test
            self.buffer.write(f"<unformattable {record.name}>\n")

    def text(self) -> str:
        return self.buffer.getvalue()

    def mark(self) -> int:
        return len(self.buffer.getvalue())

    def since(self, mark: int) -> str:
        return self.buffer.getvalue()[mark:]


@dataclass
class World:
    """Two connected users with sync enabled on their primary calendars, one synced event each."""

    ctx: AppContext
    google: Any
    served: dict[str, ServedFunction]
    clock: SkewClock
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Production's front doors (infra/front_doors.py): when set, the harness sends user-facing calls through the API
    # Gateway and renew through its Cloud Run IAM door with the scheduler's token; None = straight to the function.
    doors: Any = None

    def id_token(self, uid: str, **kwargs: Any) -> str:
        import time

        kwargs.setdefault("issued_at", time.time())
        audience = kwargs.pop("audience", self.ctx.settings.id_token_audience)
        kwargs.setdefault("issuer", self.ctx.settings.id_token_issuer)
        return self.google.control.mint_id_token(uid, audience, **kwargs)

    def url(self, function: str) -> str:
        return self.served[function].url + "/"

    def channel_headers(self, uid: str, **overrides: str | None) -> dict[str, str]:
        """The headers Google sends for a change on `uid`'s live channel; override (None = drop) any of them."""
        user = self.users[uid]
        headers = {
            "X-Goog-Channel-ID": user["channel_id"],
            "X-Goog-Message-Number": "7",
            "X-Goog-Resource-ID": user["resource_id"],
            "X-Goog-Resource-State": "exists",
            "X-Goog-Resource-URI": user["resource_uri"],
            "X-Goog-Channel-Expiration": "Tue, 19 Nov 2030 01:13:52 GMT",
            "X-Goog-Channel-Token": user["channel_token"],
            "User-Agent": "APIs-Google",
        }
        for key, value in overrides.items():
            name = {
                "channel_id": "X-Goog-Channel-ID",
                "number": "X-Goog-Message-Number",
                "resource_id": "X-Goog-Resource-ID",
                "state": "X-Goog-Resource-State",
                "uri": "X-Goog-Resource-URI",
                "expiration": "X-Goog-Channel-Expiration",
                "token": "X-Goog-Channel-Token",
            }.get(key, key)
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return headers


USERS = {"user-a": "alice@example.com", "user-b": "bob@example.com"}


def live_channel(google: Any, calendar_id: str) -> Any:
    found = [
        c
        for c in google.handle.standin.push.channels.values()
        if c.target == calendar_id and not c.stopped and c.kind == "events"
    ]
    assert len(found) == 1, found
    return found[0]
