"""Spoofed and malformed push notifications against the real webhook (functions-framework over HTTP).

Documented answers (functions/webhook.py): 400 malformed headers or a non-empty body, 403 wrong / missing token or
resource id mismatch, 404 unknown channel, 405 not a POST, 410 stopped (renewed, disabled) or expired channel. Every
case: no Google call, no Firestore change, nothing secret in the answer or the logs, and an unauthenticated caller
never learns whose channel it hit.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.account import enablement
from shared.models import calendar_key
from tests.hostile.harness import Case, Req, run_case, send
from tests.hostile.probes import World


def notify(uid: str = "user-a", **overrides: Any) -> Any:
    return lambda w: Req("POST", w.channel_headers(uid, **overrides))


def owners(w: World) -> list[str]:
    return [*w.users, *(u["email"] for u in w.users.values())]


def renew_channel(w: World) -> None:
    """Renew user A's channel: the old one (whose headers the case replays) is stopped."""
    integration = w.ctx.store.get_integration("user-a")
    assert integration is not None
    outcome = enablement.ensure_channel(
        w.ctx, integration, calendar_key(w.users["user-a"]["email"]), reason="test", force=True
    )
    assert outcome == "renewed"


def disable_a(w: World) -> None:
    enablement.disable(w.ctx, "user-a", enablement.DisableRequest())


def expire(w: World) -> None:
    w.clock.advance(8 * 86_400)  # past the 7-day channel lifetime (our clock: the route's expiration is ours)


def other_token(w: World) -> str:
    return w.users["user-b"]["channel_token"]


CASES = [
    # --- routing and authentication of the channel ---------------------------------------------------------------
    Case(
        "unknown-channel", "webhook", notify(channel_id="3f1c9a2e-0000-4000-8000-000000000000"), 404, "unknown_channel"
    ),
    Case(
        "unknown-channel-sync-state",
        "webhook",
        notify(channel_id="nope", state="sync", number="1"),
        404,
        "unknown_channel",
    ),
    Case(
        "wrong-token", "webhook", notify(token="forged-token-value-0123456789"), 403, "channel_rejected", private=owners
    ),
    Case("missing-token", "webhook", notify(token=None), 403, "channel_rejected", private=owners),
    Case("empty-token", "webhook", notify(token=""), 403, "channel_rejected", private=owners),
    Case(
        "other-users-token",
        "webhook",
        lambda w: Req("POST", w.channel_headers("user-a", token=other_token(w))),
        403,
        "channel_rejected",
        private=owners,
    ),
    Case(
        "token-prefix",
        "webhook",
        lambda w: Req("POST", w.channel_headers("user-a", token=w.users["user-a"]["channel_token"][:-1])),
        403,
        "channel_rejected",
        private=owners,
    ),
    Case(
        "wrong-resource-id",
        "webhook",
        notify(resource_id="forged-resource-id"),
        403,
        "channel_rejected",
        private=owners,
    ),
    Case(
        "other-users-resource-id",
        "webhook",
        lambda w: Req("POST", w.channel_headers("user-a", resource_id=w.users["user-b"]["resource_id"])),
        403,
        "channel_rejected",
        private=owners,
    ),
    Case(
        "wrong-token-on-sync-message",
        "webhook",
        notify(token="forged", state="sync", number="1"),
        403,
        "channel_rejected",
        private=owners,
    ),
    Case("replayed-after-disable", "webhook", notify(), 410, "channel_gone", prepare=disable_a, private=owners),
    Case(
        "stale-channel-after-renewal", "webhook", notify(), 410, "channel_gone", prepare=renew_channel, private=owners
    ),
    Case("expired-channel", "webhook", notify(), 410, "channel_gone", prepare=expire, private=owners),
    # --- malformed headers -------------------------------------------------------------------------------------------
    Case("no-headers", "webhook", lambda w: Req("POST", {}), 400, "bad_request"),
    Case("missing-channel-id", "webhook", notify(channel_id=None), 400, "bad_request"),
    Case("missing-message-number", "webhook", notify(number=None), 400, "bad_request"),
    Case("missing-resource-id", "webhook", notify(resource_id=None), 400, "bad_request"),
    Case("missing-resource-state", "webhook", notify(state=None), 400, "bad_request"),
    Case("missing-resource-uri", "webhook", notify(uri=None), 400, "bad_request"),
    Case("non-numeric-message-number", "webhook", notify(number="seven"), 400, "bad_request"),
    Case("zero-message-number", "webhook", notify(number="0"), 400, "bad_request"),
    Case("negative-message-number", "webhook", notify(number="-3"), 400, "bad_request"),
    Case("float-message-number", "webhook", notify(number="1e3"), 400, "bad_request"),
    Case("unknown-resource-state", "webhook", notify(state="deleted"), 400, "bad_request"),
    Case("empty-channel-id", "webhook", notify(channel_id=""), 400, "bad_request"),
    Case("channel-id-too-long", "webhook", notify(channel_id="c" * 65), 400, "bad_request"),
    Case("token-too-long", "webhook", notify(token="t" * 257), 400, "bad_request"),
    Case("channel-expiration-too-long", "webhook", notify(expiration="x" * 65), 400, "bad_request"),
    Case("resource-uri-too-long", "webhook", notify(uri="https://x/" + "u" * 2100), 400, "bad_request"),
    # Channel ids are looked up as Firestore document ids: path tricks must not reach another document.
    Case("channel-id-with-slash", "webhook", notify(channel_id="x/y"), 404, "unknown_channel"),
    Case(
        "channel-id-path-to-integration",
        "webhook",
        lambda w: Req("POST", w.channel_headers("user-a", channel_id="../integrations/user-a")),
        404,
        "unknown_channel",
    ),
    Case("channel-id-dunder", "webhook", notify(channel_id="__reserved__"), 404, "unknown_channel"),
    Case("channel-id-dot-dot", "webhook", notify(channel_id=".."), 404, "unknown_channel"),
    # --- bodies and methods ------------------------------------------------------------------------------------------
    Case(
        "non-empty-body", "webhook", lambda w: Req("POST", w.channel_headers("user-a"), data=b"x"), 400, "bad_request"
    ),
    Case(
        "json-body",
        "webhook",
        lambda w: Req(
            "POST",
            {**w.channel_headers("user-a"), "Content-Type": "application/json"},
            data=b'{"user_id": "user-b", "calendar_id": "bob@example.com"}',
        ),
        400,
        "bad_request",
    ),
    Case(
        "oversized-body",
        "webhook",
        lambda w: Req("POST", w.channel_headers("user-a"), data=b"a" * (2 << 20)),
        400,
        "bad_request",
    ),
    Case("get", "webhook", lambda w: Req("GET", w.channel_headers("user-a")), 405, "method_not_allowed"),
    Case("put", "webhook", lambda w: Req("PUT", w.channel_headers("user-a")), 405, "method_not_allowed"),
    Case("delete", "webhook", lambda w: Req("DELETE", w.channel_headers("user-a")), 405, "method_not_allowed"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_webhook_rejects(any_world: Any, logs: Any, case: Case) -> None:
    run_case(any_world(case), logs, case)


def test_genuine_notification_is_accepted(world: World) -> None:
    """The harness's control case: the same headers, unmodified, are accepted and pull the change."""
    email = world.users["user-a"]["email"]
    world.google.control.pause_delivery()  # we deliver this one ourselves
    world.google.control.create_event(
        email,
        {"summary": "new", "start": {"dateTime": "2027-03-01T10:00:00Z"}, "end": {"dateTime": "2027-03-01T11:00:00Z"}},
    )
    response = send(world, "webhook", Req("POST", world.channel_headers("user-a")))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"
    stored = [d.to_dict()["title"] for d in world.ctx.store.db.collection("events").stream()]
    assert "new" in stored


def test_rejections_are_logged_with_their_error_code(shared_world: World, logs: Any) -> None:
    """Invariant 7's other half: structured logs say what happened (the stable error code), not just that it did."""
    import json

    from shared.context import set_default_context

    set_default_context(shared_world.ctx)
    mark = logs.mark()
    response = send(shared_world, "webhook", Req("POST", shared_world.channel_headers("user-a", channel_id="nope")))
    assert response.status_code == 404
    lines = [json.loads(line) for line in logs.since(mark).splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line.get("message") == "request rejected"]
    assert rejected and rejected[0].get("code") == "unknown_channel", rejected
