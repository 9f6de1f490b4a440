"""Fixtures for the lifecycle suite: real functions over HTTP, the stand-in, the emulator, a shared skewable clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from shared.config import Settings
from shared.context import AppContext
from shared.models import utcnow
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import make_settings

USER_FUNCTIONS = (
    "oauth_start",
    "oauth_callback",
    "oauth_disconnect",
    "sync_enable",
    "sync_disable",
    "sync_status",
    "renew",
)


@pytest.fixture(scope="session")
def served() -> Iterator[dict[str, ServedFunction]]:
    """Every lifecycle entry point and the webhook, served by functions-framework over HTTP."""
    functions = {name: serve_function(name) for name in (*USER_FUNCTIONS, "webhook")}
    try:
        yield functions
    finally:
        for function in functions.values():
            function.stop()


@pytest.fixture(scope="session")
def webhook_url(served: dict[str, ServedFunction]) -> str:
    return served["webhook"].url + "/"


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, webhook_url: str) -> Settings:
    """The suite's settings: the stand-in, the emulator project, the webhook, fast retries."""
    return make_settings(firestore_project, google, webhook_url=webhook_url)


class SkewClock:
    """Our clock and the stand-in's moved forward together (no sleeping)."""

    def __init__(self, google: Any) -> None:
        self.google = google
        self.offset = 0.0

    def __call__(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.google.control.advance_clock(seconds)
        self.offset += seconds


@pytest.fixture
def clock(app_context: AppContext, google: Any) -> SkewClock:
    skew = SkewClock(google)
    app_context.clock = skew
    return skew


@dataclass
class Api:
    """Calls the served functions as a signed-in CRM user would."""

    served: dict[str, ServedFunction]
    google: Any
    settings: Settings

    def id_token(self, uid: str, **kwargs: Any) -> str:
        kwargs.setdefault("issued_at", time.time())
        return self.google.control.mint_id_token(uid, self.settings.id_token_audience, **kwargs)

    def headers(self, uid: str | None, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token(uid, **kwargs)}"} if uid else {}

    def call(
        self,
        function: str,
        uid: str | None,
        *,
        method: str = "POST",
        json_body: Any = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif uid is not None:
            headers.update(self.headers(uid))
        return requests.request(
            method,
            self.served[function].url + "/",
            json=json_body,
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def enable(self, uid: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.call("sync_enable", uid, json_body=body if body is not None else {})

    def disable(self, uid: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.call("sync_disable", uid, json_body=body if body is not None else {})

    def status(self, uid: str) -> requests.Response:
        return self.call("sync_status", uid, method="GET")

    def renew(self, body: dict[str, Any] | None = None) -> requests.Response:
        return self.call("renew", None, json_body=body if body is not None else {})

    def connect(self, uid: str, email: str) -> requests.Response:
        """The whole OAuth round trip: start -> the stand-in's consent -> callback. Returns the callback answer."""
        start = self.call(
            "oauth_start", uid, method="GET", headers={"Accept": "application/json"}, params={"login_hint": email}
        )
        assert start.status_code == 200, start.text
        consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
        assert consent.status_code == 302, consent.text
        query = consent.headers["Location"].split("?", 1)[1]
        return self.finish(uid, query)

    def finish(self, uid: str | None, query: str) -> requests.Response:
        """Google's redirect to the callback, then the CRM page posting code and state with `uid`'s ID token."""
        redirect = requests.get(self.served["oauth_callback"].url + "/?" + query, timeout=60, allow_redirects=False)
        if redirect.status_code != 200:
            return redirect
        handoff = redirect.json()
        return self.call(
            "oauth_callback", uid, json_body={"code": handoff["google_code"], "state": handoff["google_state"]}
        )


@pytest.fixture
def api(served: dict[str, ServedFunction], google: Any, app_context: AppContext) -> Api:
    return Api(served, google, app_context.settings)
