"""Fixtures for the pull suite: the real webhook over HTTP, the stand-in as Google, the emulator as Firestore.

Enabling is done here by hand (events.watch through our own client, the route and the calendar's channel written
directly) so this suite does not depend on the lifecycle engine.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from shared.context import AppContext
from shared.crypto import secret_digest
from shared.models import (
    ChannelInfo,
    ChannelRoute,
    CrmEvent,
    calendar_key,
    dump_for_firestore,
)
from shared.sync.coalesce import PullOutcome, request_pull
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import connect_user


@pytest.fixture(scope="session")
def webhook() -> Iterator[ServedFunction]:
    served = serve_function("webhook")
    try:
        yield served
    finally:
        served.stop()


@dataclass
class SyncedUser:
    """One CRM user with one Google calendar synced through a real push channel to the served webhook."""

    ctx: AppContext
    google: Any
    user_id: str
    email: str
    webhook_url: str
    channel_id: str = ""
    resource_id: str = ""
    token: str = ""

    @property
    def calendar_id(self) -> str:
        return self.email

    # -- setup ---------------------------------------------------------------------------------------------------------
    def watch(self) -> None:
        integration = self.ctx.store.get_integration(self.user_id)
        assert integration is not None
        client = self.ctx.calendar_client(integration)
        self.channel_id = str(uuid.uuid4())
        self.token = secrets.token_urlsafe(32)
        answer = client.watch_events(
            self.calendar_id,
            {"id": self.channel_id, "type": "web_hook", "address": self.webhook_url, "token": self.token},
        )
        self.resource_id = answer["resourceId"]
        expiration = dt.datetime.fromtimestamp(int(answer["expiration"]) / 1000, dt.UTC)
        digest = secret_digest(self.token)
        route = ChannelRoute(
            channel_id=self.channel_id,
            user_id=self.user_id,
            calendar_id=self.calendar_id,
            calendar_key=calendar_key(self.calendar_id),
            resource_id=self.resource_id,
            token_digest=digest,
            expiration=expiration,
        )
        self.ctx.store.save_channel_route(route)
        info = ChannelInfo(id=self.channel_id, resource_id=self.resource_id, token_digest=digest, expiration=expiration)
        self.ctx.store.update_calendar(
            self.user_id, calendar_key(self.calendar_id), {"channel": dump_for_firestore(info)}
        )

    # -- acting ---------------------------------------------------------------------------------------------------
    def pull(self, *, full: bool = False, reason: str = "test") -> PullOutcome:
        return request_pull(self.ctx, self.user_id, self.calendar_id, reason=reason, full=full)

    def flush(self) -> None:
        state = self.google.control.flush(timeout=20)
        assert state.get("idle", True), state

    def notify(self, *, state: str = "exists", **overrides: Any) -> requests.Response:
        """A hand-made notification exactly as Google sends it (headers only, empty body)."""
        headers = {
            "X-Goog-Channel-ID": self.channel_id,
            "X-Goog-Message-Number": "7",
            "X-Goog-Resource-ID": self.resource_id,
            "X-Goog-Resource-State": state,
            "X-Goog-Resource-URI": f"https://www.googleapis.com/calendar/v3/calendars/{self.calendar_id}/events",
            "X-Goog-Channel-Token": self.token,
            "User-Agent": "APIs-Google",
        }
        for key, value in overrides.items():
            name = {
                "channel_id": "X-Goog-Channel-ID",
                "resource_id": "X-Goog-Resource-ID",
                "token": "X-Goog-Channel-Token",
                "state": "X-Goog-Resource-State",
            }.get(key, key)
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return requests.post(self.webhook_url, headers=headers, data=b"", timeout=30)

    # -- reading the CRM ------------------------------------------------------------------------------------------
    def events(self, *, include_deleted: bool = False) -> list[CrmEvent]:
        found = list(self.ctx.store.events_linked_to_calendar(self.user_id, self.calendar_id))
        return [e for e in found if include_deleted or not e.deleted]

    def all_events(self) -> list[CrmEvent]:
        from shared.store import EVENTS

        return [self.ctx.store.event_from(s) for s in self.ctx.store.db.collection(EVENTS).stream()]

    def by_google_id(self, google_id: str) -> CrmEvent:
        matches = [e for e in self.all_events() if e.google is not None and e.google.event_id == google_id]
        assert len(matches) == 1, f"{len(matches)} CRM events for Google event {google_id}"
        return matches[0]

    def calendar(self) -> Any:
        cal = self.ctx.store.get_calendar(self.user_id, calendar_key(self.calendar_id))
        assert cal is not None
        return cal


def make_synced_user(
    ctx: AppContext,
    google: Any,
    webhook_url: str,
    *,
    user_id: str = "user-1",
    email: str = "alice@example.com",
    initial_pull: bool = True,
) -> SyncedUser:
    connect_user(ctx, google, user_id, email, enable_calendars=(email,))
    user = SyncedUser(ctx, google, user_id, email, webhook_url)
    user.watch()
    user.flush()  # the "sync" message (it may arrive before the route exists: a 404 Google does not retry)
    if initial_pull:
        user.pull(full=True, reason="enable")
    return user


@pytest.fixture
def synced(app_context: AppContext, google: Any, webhook: ServedFunction) -> SyncedUser:
    google.control.set_options(sync_before_response=False)
    return make_synced_user(app_context, google, webhook.url + "/")
