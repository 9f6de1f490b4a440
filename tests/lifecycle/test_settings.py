"""Enable / disable / status over real HTTP against the stand-in and the emulator."""

from __future__ import annotations

import json
import threading
from typing import Any

import requests

from shared.context import AppContext
from shared.crypto import secret_digest
from shared.models import CrmEvent, EventTime, SyncInfo, SyncState
from tests.lifecycle.conftest import Api
from tests.lifecycle.helpers import calendar, live_channels, route, setup_user

ALICE = "alice@example.com"
BOB = "bob@example.com"


def test_enable_twice_creates_one_channel(api: Api, app_context: AppContext, google, webhook_url: str) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    first = api.enable("user-a")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["connected"] is True and body["needs_reauth"] is False
    [cal] = body["calendars"]
    assert cal["calendar_id"] == ALICE  # "primary" resolved to the real id
    assert cal["enabled"] is True and cal["is_target"] is True
    assert cal["outcome"] == "enabled"
    assert cal["channel_id"] and cal["resource_id"] and cal["webhook_expiration"]
    assert body["target_calendar_id"] == ALICE

    [channel] = live_channels(google)
    assert channel["id"] == cal["channel_id"]
    assert channel["address"] == webhook_url
    assert channel["target"] == ALICE
    stored = calendar(app_context, "user-a", ALICE)
    assert stored.channel is not None and stored.sync_token
    assert stored.renew_due_at is not None and stored.renew_due_at < stored.channel.expiration
    the_route = route(app_context, channel["id"])
    assert the_route.state == "active" and the_route.user_id == "user-a" and the_route.calendar_id == ALICE
    # Only the digest of the channel's secret token is stored.
    assert the_route.token_digest == stored.channel.token_digest == secret_digest(channel["token"])
    raw = json.dumps(
        [
            app_context.store.channel_ref(channel["id"]).get().to_dict(),
            app_context.store.calendar_ref("user-a", stored.key).get().to_dict(),
        ],
        default=str,
    )
    assert channel["token"] not in raw

    second = api.enable("user-a", {"calendar_ids": ["primary"]})
    assert second.status_code == 200, second.text
    [again] = second.json()["calendars"]
    # Enabling an enabled calendar verifies it: its channel is minutes old, so it is kept and the calendar pulled.
    assert again["outcome"] == "verified"
    assert again["channel_id"] == channel["id"]
    assert len(google.control.channels()) == 1


def test_concurrent_enables_create_one_channel(api: Api, app_context: AppContext, google) -> None:
    [work] = setup_user(app_context, google, "user-a", ALICE, secondary=("Work",))
    results: list[requests.Response] = []
    threads = [
        threading.Thread(target=lambda: results.append(api.enable("user-a", {"calendar_ids": [work, "primary"]})))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code in (200, 202) for r in results), [r.text for r in results]
    assert len(live_channels(google, work)) == 1
    assert len(live_channels(google, ALICE)) == 1
    assert len(google.control.channels()) == 2


def test_enable_validates_input(api: Api, app_context: AppContext, google) -> None:
    not_connected = api.enable("user-a")
    assert not_connected.status_code == 409
    setup_user(app_context, google, "user-a", ALICE)
    cases: list[tuple[Any, int]] = [
        ({"calendar_ids": ["nobody@example.com"]}, 400),
        ({"calendar_ids": []}, 400),
        ({"calendar_ids": "primary"}, 400),
        ({"user_id": "user-b"}, 400),
        ({"calendar_ids": ["primary"], "target_calendar_id": "elsewhere@example.com"}, 400),
    ]
    for body, expected in cases:
        response = api.enable("user-a", body)
        assert response.status_code == expected, (body, response.text)
        assert "error" in response.json()
    bad_json = api.call("sync_enable", "user-a", data="{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert api.call("sync_enable", "user-a", method="GET").status_code == 405
    assert google.control.channels() == []


def test_target_calendar_choice(api: Api, app_context: AppContext, google) -> None:
    [work] = setup_user(app_context, google, "user-a", ALICE, secondary=("Work",))
    answer = api.enable("user-a", {"calendar_ids": ["primary", work], "target_calendar_id": work})
    assert answer.status_code == 200, answer.text
    assert answer.json()["target_calendar_id"] == work
    assert app_context.store.get_integration("user-a").target_calendar_id == work
    assert calendar(app_context, "user-a", work).is_target is True
    assert calendar(app_context, "user-a", ALICE).is_target is False


def test_disable_stops_channel_and_ignores_late_notifications(
    api: Api, app_context: AppContext, google, served
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    assert api.enable("user-a").status_code == 200
    [channel] = live_channels(google)
    google.control.flush()
    answer = api.disable("user-a")
    assert answer.status_code == 200, answer.text
    [cal] = answer.json()["calendars"]
    assert cal["enabled"] is False and cal["channel_id"] is None and cal["outcome"] == "disabled"
    assert route(app_context, channel["id"]).state == "stopped"
    assert live_channels(google) == []
    stored = calendar(app_context, "user-a", ALICE)
    assert stored.renew_due_at is None and stored.pull_due_at is None
    assert stored.sync_token  # kept: re-enabling catches up without a duplicate import

    # Disabling again is a no-op.
    again = api.disable("user-a", {"calendar_ids": ["primary"]})
    assert again.status_code == 200 and again.json()["calendars"][0]["outcome"] == "already_disabled"

    # A late notification on the stopped channel (as Google would send it): rejected, no Google call, no change.
    google.control.reset_counters()
    before = app_context.store.calendar_ref("user-a", stored.key).get().to_dict()
    late = requests.post(
        served["webhook"].url + "/",
        data=b"",
        timeout=30,
        headers={
            "X-Goog-Channel-ID": channel["id"],
            "X-Goog-Message-Number": "99",
            "X-Goog-Resource-ID": channel["resourceId"],
            "X-Goog-Resource-State": "exists",
            "X-Goog-Resource-URI": channel["resourceUri"],
            "X-Goog-Channel-Token": channel["token"],
        },
    )
    assert 400 <= late.status_code < 500, late.text
    assert google.control.counters()["total"] == 0
    assert app_context.store.calendar_ref("user-a", stored.key).get().to_dict() == before

    # Re-enabling opens a fresh channel.
    reenabled = api.enable("user-a")
    assert reenabled.status_code == 200
    [fresh] = live_channels(google)
    assert fresh["id"] != channel["id"]


def test_status_shows_what_a_settings_page_needs(api: Api, app_context: AppContext, google) -> None:
    empty = api.status("user-a")
    assert empty.status_code == 200
    assert empty.json()["connected"] is False and empty.json()["calendars"] == []
    setup_user(app_context, google, "user-a", ALICE)
    assert api.enable("user-a").status_code == 200
    for index, state in enumerate([SyncState.PENDING, SyncState.PENDING, SyncState.ERROR, SyncState.CONFLICT]):
        app_context.store.save_event(
            CrmEvent(
                id=f"ev{index}",
                owner_id="user-a",
                title="x",
                start=EventTime(date_time="2030-01-01T10:00:00Z"),
                end=EventTime(date_time="2030-01-01T11:00:00Z"),
                sync=SyncInfo(state=state),
            )
        )
    app_context.store.save_event(
        CrmEvent(
            id="other",
            owner_id="user-b",
            title="x",
            start=EventTime(date="2030-01-01"),
            end=EventTime(date="2030-01-02"),
        )
    )
    body = api.status("user-a").json()
    assert body["events"] == {"pending": 2, "error": 1, "conflict": 1}
    [cal] = body["calendars"]
    for key in (
        "enabled",
        "channel",
        "webhook_expiration",
        "last_notification_at",
        "last_sync_at",
        "last_error",
        "import_progress",
        "importing",
        "notices",
        "is_target",
    ):
        assert key in cal
    assert cal["channel"]["expires_in_seconds"] > 6 * 86400
    assert cal["last_sync_at"] is not None
    assert body["needs_reauth"] is False
    assert api.call("sync_status", "user-a", method="GET", params={"user_id": "user-b"}).status_code == 400


def test_cross_user_isolation(api: Api, app_context: AppContext, google) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    [bob_work] = setup_user(app_context, google, "user-b", BOB, secondary=("Bob work",))
    assert api.enable("user-b", {"calendar_ids": ["primary", bob_work]}).status_code == 200
    bob_before = api.status("user-b").json()["calendars"]

    # Alice cannot enable Bob's calendars: they are not in her calendar list.
    assert api.enable("user-a", {"calendar_ids": [BOB]}).status_code == 400
    assert api.enable("user-a", {"calendar_ids": [bob_work]}).status_code == 400
    # Nor disable them: they are not hers.
    assert api.disable("user-a", {"calendar_ids": [BOB]}).status_code in (400, 404)
    # Nor name Bob anywhere in a body or query.
    assert api.enable("user-a", {"user_id": "user-b"}).status_code == 400
    assert api.call("sync_status", "user-a", method="GET", params={"uid": "user-b"}).status_code == 400
    # Alice's status shows only Alice.
    alice = api.status("user-a").json()
    assert alice["user_id"] == "user-a" and alice["calendars"] == []
    # Bob is untouched.
    bob_after = api.status("user-b").json()["calendars"]
    assert [(c["calendar_id"], c["enabled"], c["channel_id"]) for c in bob_after] == [
        (c["calendar_id"], c["enabled"], c["channel_id"]) for c in bob_before
    ]
    assert len(live_channels(google)) == 2
    # Disconnecting Alice leaves Bob's channels alone.
    assert api.call("oauth_disconnect", "user-a").status_code == 200
    assert len(live_channels(google)) == 2


def test_browser_preflight_is_answered_without_a_token_and_changes_nothing(
    api: Api, app_context: AppContext, google
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    google.control.reset_counters()
    before = app_context.store.integration_ref("user-a").get().to_dict()
    for function in ("sync_enable", "sync_disable", "sync_status", "oauth_start", "oauth_disconnect"):
        answer = api.call(function, None, method="OPTIONS", headers={"Origin": "https://crm.example"})
        assert answer.status_code == 204, (function, answer.text)
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]
    assert google.control.counters()["total"] == 0
    assert app_context.store.integration_ref("user-a").get().to_dict() == before
    # Real requests carry the allow-origin header too, including rejections.
    rejected = api.call("sync_status", None, method="GET")
    assert rejected.status_code == 401
    assert rejected.headers["Access-Control-Allow-Origin"] == "*"


def test_token_forwarded_by_api_gateway_is_verified_like_a_direct_one(
    api: Api, app_context: AppContext, google
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    gateway_headers = {
        "Authorization": "Bearer gateway.service-account.token",  # the gateway's own token, not the user's
        "X-Forwarded-Authorization": f"Bearer {api.id_token('user-a')}",
    }
    answer = api.call("sync_status", None, method="GET", headers=gateway_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["connected"] is True
    forged = dict(gateway_headers, **{"X-Forwarded-Authorization": f"Bearer {api.id_token('user-a', wrong_key=True)}"})
    assert api.call("sync_status", None, method="GET", headers=forged).status_code == 401


def test_first_sync_message_arriving_before_the_watch_answer_is_acknowledged(
    api: Api, app_context: AppContext, google
) -> None:
    assert google.control.options()["sync_before_response"] is True  # Google's documented race, on
    setup_user(app_context, google, "user-a", ALICE)
    assert api.enable("user-a").status_code == 200
    google.control.flush()
    [channel_id] = [c["id"] for c in google.control.channels()]
    notes = google.control.notifications()
    syncs = [n for n in notes if n["channel_id"] == channel_id and n["resource_state"] == "sync"]
    assert syncs, "the stand-in sent no sync message"
    assert all(n["status"] == 200 for n in syncs), syncs
    stored = route(app_context, channel_id)
    assert stored.state == "active"
    assert stored.resource_id  # filled in once watch answered


def test_a_failed_watch_leaves_no_route_behind(api: Api, app_context: AppContext, google) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    google.control.inject_fault("calendar.events.watch", 400, "invalid", count=10)
    answer = api.enable("user-a")
    assert answer.status_code >= 400 or answer.json()["calendars"][0]["outcome"] != "enabled", answer.text
    assert list(app_context.store.db.collection("channels").stream()) == []
