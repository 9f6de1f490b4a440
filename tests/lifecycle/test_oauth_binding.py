"""Who a Google connection belongs to, over real HTTP through the stand-in's consent page: the browser that finishes the
flow (login CSRF), one CRM user per Google account, the refresh token a reconnect replaces, and where the callback
sends the browser."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import requests

from shared.context import AppContext
from shared.store import EVENTS, OAUTH_STATES
from tests.lifecycle.conftest import Api, SkewClock
from tests.lifecycle.helpers import refresh_token_of

VICTIM = "victim@example.com"
ATTACKER = "mallory@example.com"
GOOGLE_ACCOUNTS = "google_accounts"
RETURN_URL = "https://crm.example.com/settings/calendar?tab=google"


def _consent_url(api: Api, uid: str, login_hint: str | None) -> str:
    params = {"login_hint": login_hint} if login_hint else {}
    start = api.call("oauth_start", uid, method="GET", headers={"Accept": "application/json"}, params=params)
    assert start.status_code == 200, start.text
    return start.json()["authorization_url"]


def _strip_login_hint(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "login_hint"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _google_redirect_query(url: str) -> str:
    """The browser at Google's consent page: consent, and the query Google redirects back with."""
    consent = requests.get(url, allow_redirects=False, timeout=30)
    assert consent.status_code == 302, consent.text
    return urllib.parse.urlsplit(consent.headers["Location"]).query


def _refresh(google: Any, refresh_token: str) -> requests.Response:
    return requests.post(
        google.token_uri,
        timeout=30,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": google.client_id,
            "client_secret": google.client_secret,
        },
    )


@pytest.fixture
def with_return_url(app_context: AppContext) -> str:
    app_context.settings = app_context.settings.model_copy(update={"oauth_return_url": RETURN_URL})
    return RETURN_URL


def test_login_csrf_a_consent_started_by_another_user_links_nothing(api: Api, app_context: AppContext, google) -> None:
    """The attacker starts a flow with their own ID token, strips login_hint and gets the victim to open it: the
    victim consents as themself, and the victim's CRM page finishes with the victim's ID token."""
    google.control.create_account(VICTIM)
    google.control.create_event(
        VICTIM,
        {
            "summary": "Private",
            "start": {"dateTime": "2031-05-01T10:00:00Z"},
            "end": {"dateTime": "2031-05-01T11:00:00Z"},
        },
    )
    lure = _strip_login_hint(_consent_url(api, "attacker", ATTACKER))
    google.control.set_current_user(VICTIM)  # the browser signed in to Google is the victim's
    try:
        query = _google_redirect_query(lure)
    finally:
        google.control.set_current_user(None)

    answer = api.finish("victim", query)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "oauth_user_mismatch"
    assert "another CRM user" in answer.json()["error"]["message"]
    assert app_context.store.get_integration("attacker") is None
    assert app_context.store.get_integration("victim") is None
    assert list(app_context.store.db.collection(GOOGLE_ACCOUNTS).stream()) == []
    assert list(app_context.store.db.collection(EVENTS).stream()) == []
    # The state is burnt: not even the attacker's own ID token can finish it afterwards.
    assert list(app_context.store.db.collection(OAUTH_STATES).stream()) == []
    late = api.finish("attacker", query)
    assert late.status_code == 400
    assert late.json()["error"]["code"] == "invalid_state"
    assert app_context.store.get_integration("attacker") is None


def test_the_redirect_leg_exchanges_nothing_without_the_users_id_token(api: Api, app_context: AppContext) -> None:
    query = _google_redirect_query(_consent_url(api, "user-a", "alice@example.com"))
    handoff = requests.get(api.served["oauth_callback"].url + "/?" + query, timeout=60, allow_redirects=False)
    assert handoff.status_code == 200
    assert app_context.store.get_integration("user-a") is None
    no_token = api.call(
        "oauth_callback",
        None,
        json_body={"code": handoff.json()["google_code"], "state": handoff.json()["google_state"]},
    )
    assert no_token.status_code == 401
    assert app_context.store.get_integration("user-a") is None
    assert api.finish("user-a", query).status_code == 200


def test_one_google_account_one_crm_user(api: Api, app_context: AppContext, google) -> None:
    shared_account = "shared@example.com"
    google.control.create_account(shared_account)
    google.control.create_event(
        shared_account,
        {
            "summary": "Board meeting",
            "start": {"dateTime": "2031-05-02T10:00:00Z"},
            "end": {"dateTime": "2031-05-02T11:00:00Z"},
        },
    )
    assert api.connect("user-a", shared_account).status_code == 200
    assert api.enable("user-a").status_code == 200
    first_token = refresh_token_of(app_context, "user-a")

    second = api.connect("user-b", shared_account)
    assert second.status_code == 409, second.text
    error = second.json()["error"]
    assert error["code"] == "google_account_in_use"
    assert shared_account in error["message"]
    assert "user-a" not in second.text
    assert app_context.store.get_integration("user-b") is None
    assert api.enable("user-b").status_code == 409  # not connected: nothing to enable
    # user-a's connection is untouched and every CRM event is user-a's.
    assert refresh_token_of(app_context, "user-a") == first_token
    assert _refresh(google, first_token).status_code == 200
    google.control.flush()
    owners = {s.to_dict()["owner_id"] for s in app_context.store.db.collection(EVENTS).stream()}
    assert owners == {"user-a"}

    # Once user-a disconnects, the account is free for user-b.
    assert api.call("oauth_disconnect", "user-a").status_code == 200
    assert list(app_context.store.db.collection(GOOGLE_ACCOUNTS).stream()) == []
    assert api.connect("user-b", shared_account).status_code == 200
    holders = [s.to_dict()["user_id"] for s in app_context.store.db.collection(GOOGLE_ACCOUNTS).stream()]
    assert holders == ["user-b"]


def test_reconnect_with_another_account_revokes_the_old_accounts_token(
    api: Api, app_context: AppContext, google
) -> None:
    assert api.connect("user-a", "alice@example.com").status_code == 200
    old_token = refresh_token_of(app_context, "user-a")
    assert _refresh(google, old_token).status_code == 200

    again = api.connect("user-a", "alice.work@example.com")
    assert again.status_code == 200, again.text
    new_token = refresh_token_of(app_context, "user-a")
    assert new_token != old_token
    refused = _refresh(google, old_token)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert _refresh(google, new_token).status_code == 200
    holders = [(s.id, s.to_dict()["user_id"]) for s in app_context.store.db.collection(GOOGLE_ACCOUNTS).stream()]
    assert len(holders) == 1 and holders[0][1] == "user-a"  # a changed account releases the old claim


def test_reconnect_with_the_same_account_keeps_the_new_grant_alive(api: Api, app_context: AppContext, google) -> None:
    """Google's revocation is grant-wide (the stand-in's default `revoke_whole_grant`): revoking the replaced token of
    the same account would revoke the one just issued, so a same-account reconnect revokes nothing."""
    assert google.control.options()["revoke_whole_grant"] is True
    assert api.connect("user-a", "alice@example.com").status_code == 200
    old_token = refresh_token_of(app_context, "user-a")
    again = api.connect("user-a", "alice@example.com")
    assert again.status_code == 200, again.text
    new_token = refresh_token_of(app_context, "user-a")
    assert new_token != old_token
    assert _refresh(google, new_token).status_code == 200
    enabled = api.enable("user-a")  # calls Google with the new token
    assert enabled.status_code == 200, enabled.text
    integration = app_context.store.get_integration("user-a")
    assert integration is not None and integration.status == "connected"


def test_callback_returns_the_browser_to_the_crm_page(
    api: Api, app_context: AppContext, with_return_url: str, clock: SkewClock
) -> None:
    def redirect(query: str) -> urllib.parse.SplitResult:
        answer = requests.get(api.served["oauth_callback"].url + "/?" + query, timeout=60, allow_redirects=False)
        assert answer.status_code == 302, answer.text
        location = urllib.parse.urlsplit(answer.headers["Location"])
        assert location._replace(query="", fragment="").geturl() == "https://crm.example.com/settings/calendar"
        return location

    url = _consent_url(api, "user-a", "alice@example.com")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["state"]
    refused = redirect(urllib.parse.urlencode({"state": state, "error": "access_denied"}))
    assert dict(urllib.parse.parse_qsl(refused.query)) == {
        "tab": "google",
        "google": "error",
        "reason": "access_denied",
    }
    garbage = redirect("state=garbage&code=abc")
    assert dict(urllib.parse.parse_qsl(garbage.query))["reason"] == "invalid_state"
    assert "abc" not in garbage.geturl()

    query = _google_redirect_query(url)
    success = redirect(query)
    assert dict(urllib.parse.parse_qsl(success.query)) == {"tab": "google"}
    handoff = dict(urllib.parse.parse_qsl(success.fragment))
    finished = api.call(
        "oauth_callback", "user-a", json_body={"code": handoff["google_code"], "state": handoff["google_state"]}
    )
    assert finished.status_code == 200, finished.text
    assert app_context.store.get_integration("user-a").status == "connected"

    late_query = _google_redirect_query(_consent_url(api, "user-a", "alice@example.com"))
    clock.offset += 11 * 60  # our clock only: the state is older than its 10 minutes
    expired = redirect(late_query)
    assert dict(urllib.parse.parse_qsl(expired.query))["reason"] == "invalid_state"
