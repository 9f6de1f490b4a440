"""The whole local stack in front of a real headless Chromium (Debian's package, driven by Playwright).

Production's front doors, as `make run` has them (infra/front_doors.py, built from terraform/): every function behind
its Cloud Run IAM stand-in on one port, the API Gateway stand-in on another. The browser talks only to the gateway:
the settings page (`/settings/index.html`), the API on the same origin, the OAuth callback, and the local-only demo
sign-in route. Over the real Firestore emulator and the Google stand-in; the local Firestore trigger delivers CRM
writes to push_event with Eventarc's token. Each test gets a fresh browser profile, fails on any console error or
page error, and saves a screenshot under .bench/screenshots.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra.devstack import LOCAL_SIGN_IN, PathDispatcher, build_function_apps, demo_sign_in
from shared.config import ENV_VARS
from shared.context import AppContext, set_default_context
from tests.fixtures.sync import make_settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".bench" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_USER = "demo-user"
DEMO_EMAIL = "demo@example.com"
# The project Terraform is evaluated for: its Firebase issuer and audience are what the gateway and functions accept.
AUTH_PROJECT = "crm-browser"


@pytest.fixture(scope="session")
def doors(google_standin_server: Any) -> Iterator[Any]:
    """Every function behind its Cloud Run IAM door, and the API Gateway with the demo sign-in as its one local-only
    route (served once per session; each test installs its own context as the functions' default)."""
    from werkzeug.serving import make_server

    from infra.access_log import AccessLogRequestHandler
    from infra.deployment import read_deployment
    from infra.front_doors import FrontDoors
    from infra.google_standin.control import ControlClient
    from tests.fixtures.google import GoogleStandin

    google = GoogleStandin(google_standin_server, ControlClient(google_standin_server.base_url))
    front = FrontDoors(
        read_deployment(project_id=AUTH_PROJECT),
        google.control,
        google.certs_url,
        local_routes={LOCAL_SIGN_IN: demo_sign_in(google, AUTH_PROJECT)},
    )
    server = make_server(
        "127.0.0.1",
        0,
        PathDispatcher(front.guard(build_function_apps())),
        threaded=True,
        request_handler=AccessLogRequestHandler,
    )
    threading.Thread(target=server.serve_forever, name="browser-functions", daemon=True).start()
    front.functions_url = f"http://127.0.0.1:{server.server_port}"
    front.serve_gateway()
    try:
        yield front
    finally:
        front.stop()
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    doors: Any  # infra.front_doors.FrontDoors
    ctx: AppContext
    google: Any
    trigger: Any = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The gateway: the only origin the browser talks to."""
        return self.doors.gateway_url

    @property
    def page_url(self) -> str:
        return self.doors.settings_page_url()

    def id_token(self, uid: str = DEMO_USER, email: str = DEMO_EMAIL) -> str:
        return self.google.control.mint_id_token(
            uid,
            AUTH_PROJECT,
            issuer=f"https://securetoken.google.com/{AUTH_PROJECT}",
            email=email,
            issued_at=time.time(),
        )

    def call(self, route: str, body: Any = None, method: str = "POST", uid: str = DEMO_USER, **kwargs: Any) -> Any:
        """A user's call through the gateway (`route` is its path, e.g. /sync/enable)."""
        import requests

        headers = {"Authorization": f"Bearer {self.id_token(uid)}", **kwargs.pop("headers", {})}
        return requests.request(method, self.url + route, json=body, headers=headers, timeout=60, **kwargs)

    def start_trigger(self) -> None:
        """CRM writes reach push_event through its Cloud Run IAM door with Eventarc's token, as in production."""
        from infra.local_trigger import start_local_trigger

        self.trigger = start_local_trigger(
            self.ctx.settings.project_id,
            self.doors.function_url("push_event"),
            token_provider=self.doors.trigger_token(),
        )
        self.cleanups.append(self.trigger.stop)


@pytest.fixture
def stack(doors: Any, firestore_project: str, firestore_db: Any, google: Any) -> Iterator[Stack]:
    # What Terraform gives the functions (audiences, invokers, Firebase issuer / audience, OAuth redirect and return
    # URL on the local gateway), over the stand-in's URLs.
    from_terraform = {ENV_VARS[name]: value for name, value in doors.environment().items() if name in ENV_VARS}
    settings = make_settings(firestore_project, google, webhook_url=doors.function_url("webhook"), **from_terraform)
    ctx = AppContext.create(settings, firestore_db)
    set_default_context(ctx)
    google.control.register_client(google.client_id, google.client_secret, [settings.oauth_redirect_uri])
    google.control.create_account(DEMO_EMAIL)
    google.control.set_current_user(DEMO_EMAIL)
    built = Stack(doors=doors, ctx=ctx, google=google)
    try:
        yield built
    finally:
        for cleanup in reversed(built.cleanups):
            cleanup()
        set_default_context(None)


@dataclass
class BrowserPage:
    """A page of a fresh Chromium profile, with every console error and page error collected."""

    page: Any
    console_errors: list[str]
    name: str
    expected_errors: list[str] = field(default_factory=list)

    def expect_console_error(self, text: str) -> None:
        """A console error the test provokes on purpose (Chromium logs every refused fetch as "Failed to load
        resource: ... status of 403"); any other error still fails the test."""
        self.expected_errors.append(text)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.console_errors if not any(text in e for text in self.expected_errors)]

    def screenshot(self, suffix: str = "") -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}{suffix}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


def open_browser(driver: Any, name: str, *, width: int = 1100, height: int = 900) -> tuple[Any, BrowserPage, str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    context = driver.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": width, "height": height},
        timezone_id="UTC",
        locale="en-GB",
    )
    page = context.pages[0] if context.pages else context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.set_default_timeout(90_000)
    return context, BrowserPage(page, errors, name), profile


@pytest.fixture
def browser(playwright_driver: Any, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    context, page, profile = open_browser(playwright_driver, request.node.name)
    try:
        yield page
    finally:
        try:
            page.screenshot()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert page.unexpected_errors() == [], page.console_errors


@pytest.fixture
def phone(playwright_driver: Any, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    context, page, profile = open_browser(playwright_driver, request.node.name + "-phone", width=375, height=740)
    try:
        yield page
    finally:
        try:
            page.screenshot()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)
    assert page.unexpected_errors() == [], page.console_errors


def wait_until(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
