"""Fixtures for the lifecycle suite: real functions over HTTP, the stand-in, the emulator, a shared skewable clock."""

from __future__ import annotations

import datetime as dt
import importlib.util
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

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
HAS_WEBHOOK = importlib.util.find_spec("functions.webhook") is not None
HAS_PULL_ENGINE = importlib.util.find_spec("shared.coalesce") is not None
needs_pull_engine = pytest.mark.skipif(not HAS_PULL_ENGINE, reason="shared.coalesce (pull engine) not available yet")
needs_webhook = pytest.mark.skipif(not HAS_WEBHOOK, reason="functions/webhook.py not available yet")


@dataclass
class Receiver:
    """A stand-in webhook (used only until functions/webhook.py exists): records headers, answers 200."""

    url: str
    server: Any
    received: list[dict[str, str]] = field(default_factory=list)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _start_receiver() -> Receiver:
    received: list[dict[str, str]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received.append({k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Receiver(f"http://127.0.0.1:{server.server_port}/", server, received)


@pytest.fixture(scope="session")
def served() -> Iterator[dict[str, ServedFunction]]:
    """Every lifecycle entry point (and the webhook, when it exists) served by functions-framework over HTTP."""
    functions = {name: serve_function(name) for name in USER_FUNCTIONS}
    if HAS_WEBHOOK:
        functions["webhook"] = serve_function("webhook")
    try:
        yield functions
    finally:
        for function in functions.values():
            function.stop()


@pytest.fixture(scope="session")
def webhook_url(served: dict[str, ServedFunction]) -> Iterator[str]:
    if "webhook" in served:
        yield served["webhook"].url + "/"
        return
    receiver = _start_receiver()
    try:
        yield receiver.url
    finally:
        receiver.stop()


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

    def call(self, function: str, uid: str | None, *, method: str = "POST", json_body: Any = None,
             token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif uid is not None:
            headers.update(self.headers(uid))
        return requests.request(method, self.served[function].url + "/", json=json_body, headers=headers,
                                timeout=60, allow_redirects=False, **kwargs)

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
        start = self.call("oauth_start", uid, method="GET", headers={"Accept": "application/json"},
                          params={"login_hint": email})
        assert start.status_code == 200, start.text
        consent = requests.get(start.json()["authorization_url"], allow_redirects=False, timeout=30)
        assert consent.status_code == 302, consent.text
        query = consent.headers["Location"].split("?", 1)[1]
        return requests.get(self.served["oauth_callback"].url + "/?" + query, timeout=60)


@pytest.fixture
def api(served: dict[str, ServedFunction], google: Any, app_context: AppContext) -> Api:
    return Api(served, google, app_context.settings)


def stub_request_pull(ctx: AppContext, user_id: str, calendar_id: str, *, reason: str, full: bool = False) -> object:
    """Stand-in for shared.coalesce.request_pull until the pull engine lands: lists, keeps the sync token."""
    from shared.models import calendar_key

    integration = ctx.store.get_integration(user_id)
    assert integration is not None
    cal = ctx.store.get_calendar(user_id, calendar_key(calendar_id))
    token = None if full or cal is None else cal.sync_token
    client = ctx.calendar_client(integration)
    next_token = None
    for page in client.iter_event_pages(calendar_id, sync_token=token):
        next_token = page.get("nextSyncToken") or next_token
    fields = {"sync_token": next_token, "last_sync_at": ctx.clock()}
    ctx.store.update_calendar(user_id, calendar_key(calendar_id), fields)
    return {"reason": reason}


@pytest.fixture(autouse=True)
def _pull_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAS_PULL_ENGINE:
        monkeypatch.setattr("shared.lifecycle.request_pull", stub_request_pull)
