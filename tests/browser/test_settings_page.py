"""The settings page in a real browser against the whole local stack: connect through the stand-in's consent, choose
calendars, enable and watch the import, lose Google access and reconnect, at desktop and phone width."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.models import calendar_key
from tests.browser.conftest import DEMO_EMAIL, DEMO_USER, BrowserPage, Stack

LIST = "calendar.events.list"
IMPORTED = 1100


def seed_google(stack: Stack, events: int) -> str:
    """A secondary calendar and `events` meetings in the primary one; returns the secondary calendar's id."""
    team = stack.google.control.create_calendar(DEMO_EMAIL, "Team meetings")["id"]

    def create(n: int) -> None:
        stack.google.control.create_event(
            DEMO_EMAIL,
            {
                "summary": f"Customer call {n}",
                "start": {"dateTime": f"2027-02-{1 + n % 27:02d}T{8 + n % 9:02d}:00:00Z"},
                "end": {"dateTime": f"2027-02-{1 + n % 27:02d}T{8 + n % 9:02d}:30:00Z"},
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(events)))
    return team


def connect_through_consent(page: Any, stack: Stack, button: str) -> None:
    """Click connect: the page asks oauth_start, the browser goes through the stand-in's consent and the callback
    and lands back on the settings page."""
    page.click(button)
    page.wait_for_url(lambda url: url.startswith(stack.page_url), timeout=90_000)
    page.wait_for_selector("#account-email")


def crm_titles(stack: Stack) -> set[str]:
    return {s.to_dict()["title"] for s in stack.ctx.store.db.collection("events").stream()}


def test_connect_choose_enable_and_watch_the_import(stack: Stack, browser: BrowserPage) -> None:
    page = browser.page
    # The import commits its progress with its writes (every 500), so the progress shows on a large import: 1,100
    # events in short pages (Google may return fewer than asked for) from a slow list.
    team = seed_google(stack, IMPORTED)
    stack.google.control.set_options(page_size_cap=100)
    stack.google.control.set_latency(LIST, 1.0)

    page.goto(stack.page_url)
    page.wait_for_selector("#connect")
    assert "demo@example.com" in page.inner_text("#signed-in")
    connect_through_consent(page, stack, "#connect")
    assert page.inner_text("#account-email") == DEMO_EMAIL
    # The page finished the connection with the code and state Google's redirect left in the fragment, and took
    # them out of the address bar.
    assert "google_code" not in page.url and "google_state" not in page.url
    assert f"{DEMO_EMAIL} is connected" in page.inner_text("#message")

    # Both calendars are offered; the primary is pre-selected and receives CRM meetings.
    primary_box = page.locator(f'input[data-calendar="{DEMO_EMAIL}"]')
    team_box = page.locator(f'input[data-calendar="{team}"]')
    assert primary_box.is_checked() and not team_box.is_checked()
    assert page.locator(f'input[name="target"][value="{DEMO_EMAIL}"]').is_checked()
    team_box.check()
    page.locator("#mode-ask_me").check()
    page.click("#save-calendars")

    progress = page.wait_for_selector("#import-progress", timeout=90_000)
    assert "events read from Google" in progress.inner_text()
    browser.screenshot("-importing")
    page.locator("#message", has_text="Saved").wait_for(timeout=120_000)
    page.wait_for_selector("#import-progress", state="detached")
    stack.google.control.set_latency(LIST, 0)

    # What the page shows is what is stored: both calendars enabled with live channels, the mode, every event.
    for calendar_id in (DEMO_EMAIL, team):
        stored = stack.ctx.store.get_calendar(DEMO_USER, calendar_key(calendar_id))
        assert stored is not None and stored.enabled and stored.channel is not None
    integration = stack.ctx.store.get_integration(DEMO_USER)
    assert integration is not None and integration.conflict_mode == "ask_me"
    assert len(crm_titles(stack)) == IMPORTED
    text = page.inner_text(".root")
    assert text.count("Syncing") == 2 and "Last successful sync" in text
    assert page.locator("#mode-ask_me").is_checked()


def test_lost_google_access_shows_the_banner_and_reconnect_restores_it(stack: Stack, browser: BrowserPage) -> None:
    page = browser.page
    seed_google(stack, 2)
    page.goto(stack.page_url)
    connect_through_consent(page, stack, "#connect")
    page.click("#save-calendars")
    page.locator("#message", has_text="Saved").wait_for()

    # The user revokes our access in their Google account.
    integration = stack.ctx.store.get_integration(DEMO_USER)
    assert integration is not None and integration.refresh_token_ciphertext
    refresh_token = stack.ctx.cipher.decrypt(integration.refresh_token_ciphertext, owner=DEMO_USER)
    assert stack.google.control.revoke_token(refresh_token)
    page.reload()
    banner = page.wait_for_selector("#reauth-banner")
    assert "Reconnect" in banner.inner_text()
    assert page.locator("#save-calendars").count() == 0  # nothing to configure while access is lost
    browser.screenshot("-needs-reauth")
    after = stack.ctx.store.get_integration(DEMO_USER)
    assert after is not None and after.status == "needs_reauth"

    banner.query_selector("#reconnect").focus()
    page.keyboard.press("Enter")  # keyboard reaches the banner's button
    page.wait_for_url(lambda url: url.startswith(stack.page_url), timeout=90_000)
    page.wait_for_selector("#account-email")
    assert page.locator("#reauth-banner").count() == 0
    reconnected = stack.ctx.store.get_integration(DEMO_USER)
    assert reconnected is not None and reconnected.status == "connected"
    assert reconnected.refresh_token_ciphertext != integration.refresh_token_ciphertext


def test_disconnect_and_phone_width(stack: Stack, phone: BrowserPage) -> None:
    page = phone.page
    seed_google(stack, 1)
    page.goto(stack.page_url)
    connect_through_consent(page, stack, "#connect")
    page.click("#save-calendars")
    page.locator("#message", has_text="Saved").wait_for()
    # Nothing wider than the phone's screen: no horizontal scrolling of the page.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    # Every control has an accessible name.
    unnamed = page.evaluate("""() => [...document.querySelector('crm-calendar-sync').shadowRoot
        .querySelectorAll('button, input')].filter((el) => !(el.labels && el.labels.length) &&
        !el.getAttribute('aria-label') && !el.textContent.trim()).map((el) => el.id || el.outerHTML)""")
    assert unnamed == []
    phone.screenshot("-enabled")

    page.click("#disconnect")
    page.wait_for_selector("#connect")
    stored = stack.ctx.store.get_integration(DEMO_USER)
    assert stored is not None and stored.status == "disconnected"
    assert "Your CRM meetings are kept" in page.inner_text("#message")


def test_a_refused_or_foreign_google_return_links_nothing_and_says_why(stack: Stack, browser: BrowserPage) -> None:
    """Both ways back from Google that must not connect: the callback's error redirect (a bad state), and a flow
    another CRM user started (login CSRF) whose code and state reach the demo user's page."""
    import requests

    page = browser.page
    refused = requests.get(
        stack.url + "/oauth/callback", params={"state": "v1.forged", "code": "x"}, allow_redirects=False, timeout=30
    )
    assert refused.status_code == 302
    assert refused.headers["Location"] == stack.page_url + "?google=error&reason=invalid_state"
    page.goto(refused.headers["Location"])
    error = page.wait_for_selector("#error")
    assert "expired or was already used" in error.inner_text()
    assert page.url == stack.page_url  # the error marker is taken out of the address
    page.wait_for_selector("#connect")

    # Another CRM user starts a flow and gets the demo user to consent; Google's redirect hands code and state to
    # the page, which posts them with the demo user's ID token: refused, nothing linked to either user.
    started = stack.call("/oauth/start", {}, uid="attacker", headers={"Accept": "application/json"})
    assert started.status_code == 200, started.text
    consent = requests.get(started.json()["authorization_url"], allow_redirects=False, timeout=30)
    assert consent.status_code == 302
    browser.expect_console_error("the server responded with a status of 403")  # the refused POST /oauth/callback
    page.goto(consent.headers["Location"])  # the browser follows Google's redirect: callback, then the page
    page.locator("#error", has_text="started by a different CRM user").wait_for()
    assert "google_code" not in page.url and "google_state" not in page.url
    assert page.locator("#connect").is_visible()
    for uid in (DEMO_USER, "attacker"):
        linked = stack.ctx.store.get_integration(uid)
        assert linked is None or linked.status != "connected"
    browser.screenshot("-refused")


def test_import_choices_follow_what_the_sync_reports(stack: Stack, browser: BrowserPage) -> None:
    """The per-type import choices appear exactly when sync_status reports `import_types`; saved, they are what
    sync_status then reports."""
    page = browser.page
    seed_google(stack, 1)
    page.goto(stack.page_url)
    connect_through_consent(page, stack, "#connect")
    reported = stack.call("/sync/status", method="GET").json().get("import_types")
    if reported is None:
        assert page.locator("#import-types").count() == 0
        assert "out_of_office" not in page.inner_text(".root")
        page.click("#save-calendars")
        page.locator("#message", has_text="Saved").wait_for()
        return
    for key, on in reported.items():
        assert page.locator(f"#import-{key}").is_checked() == on
    wanted = {key: not on for key, on in reported.items()}
    for key, on in wanted.items():
        page.locator(f"#import-{key}").set_checked(on)
    page.click("#save-calendars")
    page.locator("#message", has_text="Saved").wait_for()
    assert stack.call("/sync/status", method="GET").json()["import_types"] == wanted
    page.reload()
    for key, on in wanted.items():
        page.locator(f"#import-{key}").wait_for()
        assert page.locator(f"#import-{key}").is_checked() == on
