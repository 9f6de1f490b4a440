"""Fixtures for event types and invitations: the served webhook, push_event, sync_enable and sync_status over HTTP,
the stand-in as Google and the emulator as Firestore."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import Settings
from shared.context import AppContext
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import make_settings
from tests.lifecycle.conftest import Api
from tests.pull.conftest import SyncedUser, make_synced_user

ALICE = "alice@example.com"
BOB = "bob@example.com"
USER = "user-1"


@pytest.fixture(scope="session")
def served() -> Iterator[dict[str, ServedFunction]]:
    functions = {name: serve_function(name) for name in ("webhook", "sync_enable", "sync_status")}
    functions["push_event"] = serve_function("push_event", "cloudevent")
    try:
        yield functions
    finally:
        for function in functions.values():
            function.stop()


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, served: dict[str, ServedFunction]) -> Settings:
    return make_settings(firestore_project, google, webhook_url=served["webhook"].url + "/")


@pytest.fixture
def api(served: dict[str, ServedFunction], google: Any, app_context: AppContext) -> Api:
    return Api(served, google, app_context.settings)


@pytest.fixture
def alice(app_context: AppContext, google: Any, served: dict[str, ServedFunction]) -> SyncedUser:
    """ALICE's primary calendar synced for USER (watched, first full pull done)."""
    google.control.set_options(sync_before_response=False)
    google.control.create_account(BOB)
    return make_synced_user(app_context, google, served["webhook"].url + "/", user_id=USER, email=ALICE)
