"""Small helpers shared by the lifecycle tests."""

from __future__ import annotations

from typing import Any

from shared.context import AppContext
from shared.models import ChannelRoute, SyncedCalendar, calendar_key
from tests.fixtures.sync import connect_user


def setup_user(ctx: AppContext, google: Any, uid: str, email: str, secondary: tuple[str, ...] = ()) -> list[str]:
    """A Google account (plus secondary calendars) connected for `uid`; returns the secondary calendar ids."""
    google.control.create_account(email)
    ids = [google.control.create_calendar(email, summary)["id"] for summary in secondary]
    connect_user(ctx, google, uid, email)
    return ids


def live_channels(google: Any, target: str | None = None) -> list[dict[str, Any]]:
    return [
        c
        for c in google.control.channels()
        if not c["stopped"] and not c["expired"] and (target is None or c["target"] == target)
    ]


def calendar(ctx: AppContext, uid: str, calendar_id: str) -> SyncedCalendar:
    cal = ctx.store.get_calendar(uid, calendar_key(calendar_id))
    assert cal is not None
    return cal


def route(ctx: AppContext, channel_id: str) -> ChannelRoute:
    found = ctx.store.get_channel_route(channel_id)
    assert found is not None
    return found


def refresh_token_of(ctx: AppContext, uid: str) -> str:
    integration = ctx.store.get_integration(uid)
    assert integration is not None and integration.refresh_token_ciphertext
    return ctx.cipher.decrypt(integration.refresh_token_ciphertext, owner=uid)
