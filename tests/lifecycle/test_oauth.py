"""Connecting Google over real HTTP: the OAuth round trip against the stand-in, state tampering, ID-token checks."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse

import requests

from shared.context import AppContext
from shared.store import OAUTH_STATES
from tests.lifecycle.conftest import Api, SkewClock
from tests.lifecycle.helpers import refresh_token_of

ALICE = "alice@example.com"


def _start(api: Api, uid: str, email: str) -> dict[str, str]:
    response = api.call(
        "oauth_start", uid, method="GET", headers={"Accept": "application/json"}, params={"login_hint": email}
    )
    assert response.status_code == 200, response.text
    url = response.json()["authorization_url"]
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()} | {"_url": url}


def _consent(url: str) -> dict[str, str]:
    consent = requests.get(url, allow_redirects=False, timeout=30)
    assert consent.status_code == 302, consent.text
    query = urllib.parse.urlsplit(consent.headers["Location"]).query
    return {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}


def _callback(api: Api, params: dict[str, str], uid: str = "user-a") -> requests.Response:
    """Google's redirect, then the CRM page finishing with `uid`'s ID token."""
    return api.finish(uid, urllib.parse.urlencode(params))


def test_oauth_round_trip_stores_an_encrypted_refresh_token(api: Api, app_context: AppContext, google) -> None:
    params = _start(api, "user-a", ALICE)
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert "calendar.events" in params["scope"] and "calendar.calendarlist.readonly" in params["scope"]
    assert params["redirect_uri"] == app_context.settings.oauth_redirect_uri

    answer = _callback(api, _consent(params["_url"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["connected"] is True
    assert body["account_email"] == ALICE
    assert body["reconnected"] is False

    integration = app_context.store.get_integration("user-a")
    assert integration is not None
    assert integration.status == "connected"
    assert integration.account_email == ALICE
    assert integration.key_id == "k1"
    assert set(integration.scopes) >= {
        "https://www.googleapis.com/auth/calendar.events",
        "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    }
    raw = app_context.store.integration_ref("user-a").get().to_dict()
    refresh_token = app_context.cipher.decrypt(integration.refresh_token_ciphertext, owner="user-a")
    assert refresh_token.startswith("1//")
    assert refresh_token not in json.dumps(raw, default=str)
    # The stored token works against Google, and the one-time state document is gone.
    assert app_context.calendar_client(integration).list_calendars()[0]["id"] == ALICE
    assert list(app_context.store.db.collection(OAUTH_STATES).stream()) == []


def test_oauth_start_redirects_browsers(api: Api) -> None:
    response = api.call("oauth_start", "user-a", method="GET", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith(api.google.auth_uri + "?")


def test_callback_replay_and_tampering_are_rejected(api: Api, app_context: AppContext) -> None:
    params = _start(api, "user-a", ALICE)
    granted = _consent(params["_url"])
    version, payload, signature = granted["state"].split(".")

    # Another user's id in a re-encoded payload, with the original signature.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["u"] = "user-b"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for state in (
        f"{version}.{forged_payload}.{signature}",
        f"{version}.{payload}.{signature[:-2]}AA",
        f"v2.{payload}.{signature}",
        "not-a-state",
        "",
    ):
        answer = _callback(api, dict(granted, state=state))
        assert answer.status_code == 400, (state, answer.text)
        assert answer.json()["error"]["code"] in ("invalid_state", "bad_request")
    assert app_context.store.get_integration("user-b") is None
    assert app_context.store.get_integration("user-a") is None

    # The genuine state still works once, then never again.
    assert _callback(api, granted).status_code == 200
    replay = _callback(api, granted)
    assert replay.status_code == 400
    assert replay.json()["error"]["code"] == "invalid_state"


def test_expired_state_is_rejected(api: Api, app_context: AppContext, clock: SkewClock) -> None:
    params = _start(api, "user-a", ALICE)
    granted = _consent(params["_url"])
    clock.offset += 11 * 60  # our clock only: the state is older than its 10 minutes
    answer = _callback(api, granted)
    assert answer.status_code == 400
    assert "expired" in answer.json()["error"]["message"]
    assert app_context.store.get_integration("user-a") is None


def test_consent_refused_changes_nothing(api: Api, app_context: AppContext) -> None:
    params = _start(api, "user-a", ALICE)
    answer = _callback(api, {"state": params["state"], "error": "access_denied"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "access_denied"
    assert app_context.store.get_integration("user-a") is None


def test_id_tokens_are_verified(api: Api) -> None:
    audience = api.settings.id_token_audience
    cases = {
        "missing": None,
        "expired": api.id_token("user-a", issued_at=time.time() - 7200, expires_in=3600),
        "wrong key": api.id_token("user-a", wrong_key=True),
        "wrong audience": api.google.control.mint_id_token(
            "user-a", "other-project", issuer=f"https://securetoken.google.com/{audience}", issued_at=time.time()
        ),
        "wrong issuer": api.id_token("user-a", issuer="https://securetoken.google.com/other-project"),
        "not a jwt": "abc",
    }
    for name, token in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for function, method in (("sync_status", "GET"), ("sync_enable", "POST"), ("oauth_start", "GET")):
            response = api.call(function, None, method=method, headers=dict(headers), json_body={})
            assert response.status_code == 401, (name, function, response.text)
            assert response.headers["Content-Type"] == "application/json"
            assert response.json()["error"]["code"] == "unauthenticated"
    # A token in the query string or body is never accepted.
    token = api.id_token("user-a")
    response = api.call("sync_status", None, method="GET", params={"access_token": token})
    assert response.status_code == 401


def test_disconnect_revokes_and_disables(api: Api, app_context: AppContext, google) -> None:
    assert api.connect("user-a", ALICE).status_code == 200
    integration = app_context.store.get_integration("user-a")
    refresh_token = app_context.cipher.decrypt(integration.refresh_token_ciphertext, owner="user-a")
    answer = api.call("oauth_disconnect", "user-a")
    assert answer.status_code == 200, answer.text
    assert answer.json()["revoked"] is True
    stored = app_context.store.get_integration("user-a")
    assert stored.status == "disconnected"
    assert stored.refresh_token_ciphertext is None
    refresh = requests.post(
        google.token_uri,
        timeout=30,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": google.client_id,
            "client_secret": google.client_secret,
        },
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    status = api.status("user-a").json()
    assert status["connected"] is False
    # Disconnecting again is harmless.
    assert api.call("oauth_disconnect", "user-a").status_code == 200


def test_reconnect_keeps_events_without_duplicates(api: Api, app_context: AppContext, google) -> None:
    from shared.store import EVENTS

    google.control.create_account(ALICE)
    for day in range(1, 6):
        google.control.create_event(
            ALICE,
            {
                "summary": f"Meeting {day}",
                "start": {"dateTime": f"2031-05-0{day}T10:00:00Z"},
                "end": {"dateTime": f"2031-05-0{day}T11:00:00Z"},
            },
        )
    assert api.connect("user-a", ALICE).status_code == 200
    assert api.enable("user-a").status_code == 200

    def crm_events() -> list[str]:
        return sorted(s.id for s in app_context.store.db.collection(EVENTS).stream())

    imported = crm_events()
    assert len(imported) == 5
    first_ciphertext = app_context.store.get_integration("user-a").refresh_token_ciphertext

    again = api.connect("user-a", ALICE)
    assert again.status_code == 200 and again.json()["reconnected"] is True
    integration = app_context.store.get_integration("user-a")
    assert integration.refresh_token_ciphertext != first_ciphertext
    assert integration.status == "connected"
    enabled = api.enable("user-a")
    assert enabled.status_code == 200
    assert enabled.json()["calendars"][0]["outcome"] == "verified"  # enabled already: pulled (channel still new)
    # Disable and enable again after the reconnect: caught up from the kept sync token, still no duplicates.
    assert api.disable("user-a").status_code == 200
    assert api.enable("user-a").status_code == 200
    google.control.flush()
    assert crm_events() == imported


def test_reconnect_releases_pushes_held_while_the_token_was_dead(api: Api, app_context: AppContext, google) -> None:
    import datetime as dt

    from shared.models import CrmEvent, EventTime, IntegrationStatus, google_event_id_for_crm
    from shared.sync.crm_to_google_run import push_event
    from shared.sync.crm_to_google_sweeps import push_due_events

    google.control.create_account(ALICE)
    assert api.connect("user-a", ALICE).status_code == 200
    google.control.revoke_token(refresh_token_of(app_context, "user-a"))
    app_context.store.save_event(
        CrmEvent(
            id="crm-held",
            owner_id="user-a",
            title="Held back",
            start=EventTime(date_time="2031-06-01T10:00:00+00:00"),
            end=EventTime(date_time="2031-06-01T11:00:00+00:00"),
            updated_at=app_context.clock(),
        )
    )
    outcome = push_event(app_context, "crm-held")
    assert outcome.outcome == "deferred"
    assert app_context.store.get_integration("user-a").status == IntegrationStatus.NEEDS_REAUTH
    held = app_context.store.get_event("crm-held")
    assert held.sync.state == "pending"
    assert held.sync.next_attempt_at > app_context.clock()  # parked, not retried hot

    assert api.connect("user-a", ALICE).status_code == 200
    released = app_context.store.get_event("crm-held")
    assert released.sync.next_attempt_at <= app_context.clock() + dt.timedelta(seconds=1)
    counts = push_due_events(
        app_context, now=app_context.clock() + dt.timedelta(seconds=1), limit=50, deadline=time.monotonic() + 30
    )
    assert counts["pushed"] == 1
    assert any(e["id"] == google_event_id_for_crm("crm-held") for e in google.control.raw_events(ALICE))
