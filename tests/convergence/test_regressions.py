"""Divergences the convergence machine found, each reduced to its smallest real reproduction (over the served webhook,
the real emulator and the stand-in). Each test states the invariant it protects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared import lifecycle
from shared.context import AppContext
from shared.push import push_event
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import connect_user, make_settings
from tests.push.helpers import crm_event

EMAIL = "reg@example.com"
USER = "reg-user"


@pytest.fixture(scope="module")
def webhook() -> Iterator[ServedFunction]:
    served = serve_function("webhook")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, webhook: ServedFunction) -> Any:
    return make_settings(firestore_project, google, webhook_url=webhook.url + "/")


@pytest.fixture
def synced(app_context: AppContext, google: Any) -> AppContext:
    google.control.create_account(EMAIL)
    connect_user(app_context, google, USER, EMAIL)
    lifecycle.enable(app_context, USER, lifecycle.EnableRequest())
    google.control.flush(timeout=20)
    return app_context


def test_google_deletion_of_a_crm_made_event_reaches_the_crm(synced: AppContext, google: Any) -> None:
    """Invariant 'deletions agree': the Google user deletes a meeting the CRM created; the notification's pull must
    tombstone the CRM event. (Google lists a deletion with only id/status/etag, so the pull must find the CRM document
    by its Google link, not only by the id derived from the Google id or by crmEventId.)"""
    ctx = synced
    ctx.store.save_event(crm_event("crm-del", owner_id=USER, title="Made in the CRM"))
    push_event(ctx, "crm-del")
    google.control.flush(timeout=20)
    stored = ctx.store.get_event("crm-del")
    assert stored is not None and stored.google is not None

    google.control.delete_event(stored.google.calendar_id, stored.google.event_id)
    google.control.flush(timeout=20)

    after = ctx.store.get_event("crm-del")
    assert after is not None and after.deleted, "the Google deletion never reached the CRM event"
