"""The whole local stack in front of a real headless Chromium (Debian's package, driven by Playwright).

One WSGI server plays the gateway's paths for every function (infra.devstack.PathDispatcher, the same as `make run`),
over the real Firestore emulator and the Google stand-in; the local Firestore trigger delivers CRM writes to
push_event. Each test gets a fresh browser profile, fails on any console error or page error, and saves a screenshot
under .bench/screenshots.
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

from infra.devstack import LOCAL_SIGN_IN, SETTINGS_PAGE, PathDispatcher, build_function_apps, demo_sign_in
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


class _Swappable:
    """The server's WSGI app, swapped per test (each test has its own emulator project and stand-in state)."""

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@pytest.fixture(scope="session")
def function_apps() -> dict[str, Any]:
    return build_function_apps()


@pytest.fixture(scope="session")
def stack_server() -> Iterator[tuple[str, _Swappable]]:
    from werkzeug.serving import make_server

    swappable = _Swappable()
    server = make_server("127.0.0.1", 0, swappable, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-stack", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", swappable
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    url: str
    ctx: AppContext
    google: Any
    project: str
    trigger: Any = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def page_url(self) -> str:
        return self.url + SETTINGS_PAGE

    def id_token(self, uid: str = DEMO_USER, email: str = DEMO_EMAIL) -> str:
        return self.google.control.mint_id_token(
            uid,
            self.project,
            issuer=f"https://securetoken.google.com/{self.project}",
            email=email,
            issued_at=time.time(),
        )

    def call(self, route: str, body: Any = None, method: str = "POST", uid: str = DEMO_USER) -> Any:
        import requests

        return requests.request(
            method, self.url + route, json=body, headers={"Authorization": f"Bearer {self.id_token(uid)}"}, timeout=60
        )

    def start_trigger(self) -> None:
        from infra.local_trigger import start_local_trigger

        self.trigger = start_local_trigger(self.project, f"{self.url}/push_event")
        self.cleanups.append(self.trigger.stop)


@pytest.fixture
def stack(
    stack_server: tuple[str, _Swappable],
    function_apps: dict[str, Any],
    firestore_project: str,
    firestore_db: Any,
    google: Any,
) -> Iterator[Stack]:
    url, swappable = stack_server
    settings = make_settings(
        firestore_project,
        google,
        oauth_redirect_uri=f"{url}/oauth/callback",
        oauth_return_url=url + SETTINGS_PAGE,
        webhook_url=f"{url}/webhook",
    )
    ctx = AppContext.create(settings, firestore_db)
    set_default_context(ctx)
    google.control.register_client(google.client_id, google.client_secret, [f"{url}/oauth/callback"])
    google.control.create_account(DEMO_EMAIL)
    google.control.set_current_user(DEMO_EMAIL)
    swappable.app = PathDispatcher(function_apps, {LOCAL_SIGN_IN: demo_sign_in(google, firestore_project)})
    built = Stack(url=url, ctx=ctx, google=google, project=firestore_project)
    try:
        yield built
    finally:
        for cleanup in reversed(built.cleanups):
            cleanup()
        swappable.app = None
        set_default_context(None)


@dataclass
class BrowserPage:
    """A page of a fresh Chromium profile, with every console error and page error collected."""

    page: Any
    console_errors: list[str]
    name: str

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
    assert page.console_errors == [], page.console_errors


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
    assert page.console_errors == [], page.console_errors


def wait_until(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
