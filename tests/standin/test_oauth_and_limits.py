"""OAuth flows, bearer checks, scopes, ID tokens, quota, faults, latency and counters."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.parse

import pytest
import requests
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request
from google.oauth2 import id_token
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.standin.helpers import ALICE, Raw, error_of, reason_of

READONLY = "https://www.googleapis.com/auth/calendar.readonly"
REDIRECT = "http://127.0.0.1:9/callback"


def _authorize(google, **extra) -> dict:
    params = {
        "client_id": google.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "https://www.googleapis.com/auth/calendar.events openid",
        "state": "st-1",
        "access_type": "offline",
        "prompt": "consent",
        **extra,
    }
    response = requests.get(google.auth_uri, params=params, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    location = urllib.parse.urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return dict(urllib.parse.parse_qsl(location.query))


def _pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(b"v" * 40).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def test_authorization_code_flow_with_pkce(google) -> None:
    verifier, challenge = _pkce()
    redirect = _authorize(google, login_hint=ALICE, code_challenge=challenge, code_challenge_method="S256")
    assert redirect["state"] == "st-1"
    form = {
        "code": redirect["code"],
        "client_id": google.client_id,
        "client_secret": google.client_secret,
        "redirect_uri": REDIRECT,
        "grant_type": "authorization_code",
    }
    missing = requests.post(google.token_uri, data=form, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
    wrong = requests.post(google.token_uri, data={**form, "code_verifier": "wrong" * 10}, timeout=10)
    assert wrong.status_code == 400
    token = requests.post(google.token_uri, data={**form, "code_verifier": verifier}, timeout=10)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] and body["access_token"] and "calendar.events" in body["scope"]
    reused = requests.post(google.token_uri, data={**form, "code_verifier": verifier}, timeout=10)
    assert reused.status_code == 400
    bad_secret = requests.post(google.token_uri, data={**form, "client_secret": "nope"}, timeout=10)
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    listed = requests.get(
        google.api_endpoint + "calendars/primary/events",
        timeout=10,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert listed.status_code == 200


def test_current_user_consent_and_redirect_mismatch(google) -> None:
    google.control.set_current_user("bob@example.com")
    redirect = _authorize(google)
    token = requests.post(
        google.token_uri,
        timeout=10,
        data={
            "code": redirect["code"],
            "client_id": google.client_id,
            "client_secret": google.client_secret,
            "redirect_uri": "http://127.0.0.1:9/other",
            "grant_type": "authorization_code",
        },
    )
    assert token.status_code == 400
    google.control.register_client("strict-client", "s3cret", [REDIRECT])
    response = requests.get(
        google.auth_uri,
        allow_redirects=False,
        timeout=10,
        params={
            "client_id": "strict-client",
            "redirect_uri": "http://evil/",
            "response_type": "code",
            "scope": "calendar",
        },
    )
    assert response.status_code == 400


def test_refresh_revoke_and_expiry_with_google_auth(google) -> None:
    service = google.service_for(ALICE)
    service.events().list(calendarId="primary").execute()
    counters = google.control.counters()["by_method"]
    assert counters["oauth.token"] == 1
    google.control.expire_access_tokens()
    service.events().list(calendarId="primary").execute()  # google-auth refreshes after the 401
    assert google.control.counters()["by_method"]["oauth.token"] == 2
    credentials = google.credentials_for(ALICE)
    requests.post(google.revoke_uri, params={"token": credentials.refresh_token}, timeout=10).raise_for_status()
    with pytest.raises(auth_exceptions.RefreshError):
        credentials.refresh(Request())
    response = requests.post(
        google.token_uri,
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            "client_id": google.client_id,
            "client_secret": google.client_secret,
        },
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


def test_bad_bearer_is_401_auth_error(google) -> None:
    response = requests.get(
        google.api_endpoint + "calendars/primary/events", timeout=10, headers={"Authorization": "Bearer nonsense"}
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401 and error["errors"][0]["reason"] == "authError"
    assert error["errors"][0]["location"] == "Authorization"
    raw = Raw(google)
    google.control.advance_clock(3601)
    assert raw("GET", "calendars/primary/events").status_code == 401


def test_scopes(google) -> None:
    raw = Raw(google, scopes=[READONLY])
    assert raw("GET", "calendars/primary/events").status_code == 200
    insert = raw(
        "POST", "calendars/primary/events", json={"start": {"date": "2024-01-01"}, "end": {"date": "2024-01-02"}}
    )
    assert insert.status_code == 403 and reason_of(insert.json()) == "insufficientPermissions"
    email_only = Raw(google, scopes=["email"])
    assert email_only("GET", "users/me/calendarList").status_code == 403


def test_id_tokens_verify_with_google_auth(google) -> None:
    request = Request()
    token = google.control.mint_id_token("user-1", "crm-project", email="u1@example.com")
    claims = id_token.verify_token(token, request, audience="crm-project", certs_url=google.certs_url)
    assert claims["sub"] == "user-1" and claims["user_id"] == "user-1"
    assert claims["iss"] == "https://securetoken.google.com/crm-project" and claims["email"] == "u1@example.com"
    assert {"iat", "exp", "auth_time"} <= set(claims)
    forged = google.control.mint_id_token("user-1", "crm-project", wrong_key=True)
    with pytest.raises(ValueError):
        id_token.verify_token(forged, request, audience="crm-project", certs_url=google.certs_url)
    with pytest.raises(ValueError):
        id_token.verify_token(token, request, audience="other-project", certs_url=google.certs_url)
    expired = google.control.mint_id_token("user-1", "crm-project", issued_at=time.time() - 7200, expires_in=3600)
    with pytest.raises(ValueError):
        id_token.verify_token(expired, request, audience="crm-project", certs_url=google.certs_url)


@pytest.mark.parametrize(("status", "reason"), [(403, "userRateLimitExceeded"), (429, "rateLimitExceeded")])
def test_per_user_quota(google, status, reason) -> None:
    google.control.set_options(quota_per_minute=3, rate_limit_status=status)
    raw = Raw(google)
    assert [raw("GET", "calendars/primary/events").status_code for _ in range(3)] == [200, 200, 200]
    limited = raw("GET", "calendars/primary/events")
    assert limited.status_code == status and reason_of(limited.json()) == reason
    other = Raw(google, email="bob@example.com")
    assert other("GET", "calendars/primary/events").status_code == 200  # per user
    google.control.advance_clock(61)
    assert raw("GET", "calendars/primary/events").status_code == 200


def test_fault_injection_counters_and_latency(google) -> None:
    service = google.service_for(ALICE)
    google.control.inject_fault("calendar.events.list", 503, "backendError", count=2, retry_after=3)
    raw = Raw(google)
    first = raw("GET", "calendars/primary/events")
    assert first.status_code == 503 and first.headers["Retry-After"] == "3"
    assert raw("GET", "calendars/primary/events").status_code == 503
    assert raw("GET", "calendars/primary/events").status_code == 200
    google.control.inject_fault("calendar.events.insert", 500, rate=1.0, seed=7)
    with pytest.raises(HttpError) as excinfo:
        service.events().insert(
            calendarId="primary", body={"start": {"date": "2024-01-01"}, "end": {"date": "2024-01-02"}}
        ).execute()
    assert error_of(excinfo)[0] == 500
    google.control.clear_faults()
    counters = google.control.counters()
    assert counters["by_method"]["calendar.events.list"] == 3
    assert counters["by_account"][ALICE] >= 4
    google.control.reset_counters()
    assert google.control.counters()["total"] == 0
    google.control.set_latency("calendar.calendars.get", 0.05)
    started = time.monotonic()
    service.calendars().get(calendarId="primary").execute()
    assert time.monotonic() - started >= 0.05


def test_build_against_standin_with_explicit_credentials(google) -> None:
    from google.oauth2.credentials import Credentials

    refresh = google.control.issue_refresh_token(ALICE)
    creds = Credentials(
        token=None,
        refresh_token=refresh,
        client_id=google.client_id,
        client_secret=google.client_secret,
        token_uri=google.token_uri,
    )
    service = build(
        "calendar", "v3", credentials=creds, client_options={"api_endpoint": google.api_endpoint}, cache_discovery=False
    )
    assert service.calendarList().get(calendarId="primary").execute()["primary"] is True


def test_revocation_is_grant_wide_by_default(google) -> None:
    """Option revoke_whole_grant (default True): revoking one token revokes every token of that user for that client;
    off, only that token (and its own access tokens) goes."""
    first = google.control.issue_refresh_token("grant@example.com")
    second = google.control.issue_refresh_token("grant@example.com")
    other_user = google.control.issue_refresh_token("other@example.com")
    assert google.control.revoke_token(first)
    assert _refresh_status(google, second) == 400
    assert _refresh_status(google, other_user) == 200
    google.control.set_options(revoke_whole_grant=False)
    third = google.control.issue_refresh_token("grant@example.com")
    fourth = google.control.issue_refresh_token("grant@example.com")
    assert google.control.revoke_token(third)
    assert _refresh_status(google, fourth) == 200


def _refresh_status(google, refresh_token: str) -> int:
    import requests

    answer = requests.post(
        google.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": google.client_id,
            "client_secret": google.client_secret,
        },
        timeout=30,
    )
    return answer.status_code
