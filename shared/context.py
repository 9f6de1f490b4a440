"""The dependencies every sync operation needs, created lazily by one cached factory and injectable in tests.

Why: functions never build clients at import (cold start, credentials); tests pass their own Firestore client (the
emulator, one project per test), clock and sleep, and the code under test does not branch on "am I in a test".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.config import Settings, get_settings
from shared.errors import NeedsReauth
from shared.models import Integration, IntegrationStatus, utcnow

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient

    from shared.crypto import TokenCipher
    from shared.gcal.client import CalendarClient
    from shared.store import FirestoreStore


def new_firestore_client(settings: Settings) -> FirestoreClient:
    """A Firestore client; it talks to the emulator by itself when FIRESTORE_EMULATOR_HOST is set."""
    from google.cloud import firestore

    return firestore.Client(project=settings.project_id, database=settings.firestore_database)


@dataclass
class AppContext:
    """Settings, store, cipher and per-user Google clients, plus the clock and sleep the engine uses."""

    settings: Settings
    store: FirestoreStore
    clock: Callable[[], dt.datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    _calendar_clients: dict[tuple[str, str], CalendarClient] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, settings: Settings, db: FirestoreClient | None = None, **overrides: object) -> AppContext:
        from shared.store import FirestoreStore

        store = FirestoreStore(
            db or new_firestore_client(settings), call_deadline=settings.firestore_call_deadline_seconds
        )
        return cls(settings=settings, store=store, **overrides)  # type: ignore[arg-type]

    @functools.cached_property
    def cipher(self) -> TokenCipher:
        from shared.crypto import cipher_from_settings

        return cipher_from_settings(self.settings.token_encryption_keys, self.settings.token_encryption_active_key_id)

    def calendar_client(self, integration: Integration) -> CalendarClient:
        """The user's Google client, cached per (user, ciphertext) so a reconnect gets fresh credentials."""
        from shared.gcal.client import CalendarClient, build_credentials

        if integration.status != IntegrationStatus.CONNECTED or not integration.refresh_token_ciphertext:
            raise NeedsReauth(
                "the user has no working Google connection", user_id=integration.user_id, reason="missing_credentials"
            )
        cache_key = (integration.user_id, integration.refresh_token_ciphertext)
        with self._lock:
            client = self._calendar_clients.get(cache_key)
            if client is None:
                refresh_token = self.cipher.decrypt(integration.refresh_token_ciphertext, owner=integration.user_id)
                credentials = build_credentials(refresh_token, self.settings, integration.scopes)
                client = CalendarClient(credentials, self.settings, user_id=integration.user_id, sleep=self.sleep)
                self._calendar_clients[cache_key] = client
            return client

    @contextlib.contextmanager
    def reauth_guard(self, user_id: str) -> Iterator[None]:
        """The one place a dead Google credential is handled: a NeedsReauth raised inside marks the integration
        (once, however many guards it passes through) and goes on up, for the caller to answer or skip."""
        try:
            yield
        except NeedsReauth as exc:
            if not exc.recorded:
                self.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "invalid_grant"))
                exc.recorded = True
            raise

    def google_call_count(self) -> int:
        """Calendar API calls made through this context's cached clients (token refreshes not included)."""
        with self._lock:
            clients = list(self._calendar_clients.values())
        return sum(sum(client.calls.values()) for client in clients)

    def mark_needs_reauth(self, user_id: str, reason: str) -> None:
        """The user's refresh token is dead: the integration says `needs_reauth` (the settings page shows "reconnect"),
        the cached client is dropped, and every sync of that user stops until they connect again."""
        from shared.errors import DocumentMissing
        from shared.logs import log_event

        with contextlib.suppress(DocumentMissing):  # the integration vanished meanwhile: nothing to mark
            self.store.update_integration(
                user_id,
                {
                    "status": IntegrationStatus.NEEDS_REAUTH.value,
                    "reauth_reason": reason[:200],
                    "updated_at": self.clock(),
                },
            )
        self.forget_calendar_client(user_id)
        log_event(logger, "integration needs reauth", level=logging.WARNING, user_id=user_id, reason=reason)

    def forget_calendar_client(self, user_id: str) -> None:
        with self._lock:
            for key in [k for k in self._calendar_clients if k[0] == user_id]:
                del self._calendar_clients[key]


_default: AppContext | None = None
_default_lock = threading.Lock()


def default_context() -> AppContext:
    """The process-wide context for deployed functions, built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = AppContext.create(get_settings())
        return _default


def set_default_context(context: AppContext | None) -> None:
    """Replace (or clear, with None) the process-wide context: the local runner and tests use this."""
    global _default
    with _default_lock:
        _default = context
