"""The conflict center in a real browser: two recorded conflicts (one won by Google, one by the CRM), each resolved the
other way from the page; the chosen version ends up in the CRM (emulator) and in Google (stand-in)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.models import utcnow
from tests.browser.conftest import DEMO_EMAIL, DEMO_USER, BrowserPage, Stack, wait_until
from tests.fixtures.sync import connect_user


def google_event(stack: Stack, event_id: str) -> dict[str, Any]:
    return next(e for e in stack.google.control.raw_events(DEMO_EMAIL) if e["id"] == event_id)


def crm_event(stack: Stack, crm_id: str) -> Any:
    event = stack.ctx.store.get_event(crm_id)
    assert event is not None
    return event


def pulled_event(stack: Stack, summary: str, location: str) -> tuple[str, str]:
    """A meeting created in Google and pulled into the CRM by the webhook; (CRM id, Google id)."""
    created = stack.google.control.create_event(
        DEMO_EMAIL,
        {
            "summary": summary,
            "location": location,
            "start": {"dateTime": "2027-03-02T10:00:00Z"},
            "end": {"dateTime": "2027-03-02T11:00:00Z"},
        },
    )

    def find() -> str | None:
        for snapshot in stack.ctx.store.db.collection("events").stream():
            data = snapshot.to_dict()
            if (data.get("google") or {}).get("event_id") == created["id"]:
                return snapshot.id
        return None

    return wait_until(find, what=f"{summary} pulled into the CRM"), created["id"]


def conflict(stack: Stack, summary: str, *, crm_newer: bool) -> tuple[str, str]:
    """Both sides edit one meeting's title, and the CRM its room too; the CRM edit is not pushed yet when Google's
    change is pulled, so the pull merges (the CRM's room is a one-sided edit) and decides the title by last write wins
    (the CRM edit's time set before or after Google's)."""
    crm_id, google_id = pulled_event(stack, summary, "Room 1")
    edited_at = utcnow() + (dt.timedelta(minutes=5) if crm_newer else -dt.timedelta(minutes=5))
    stack.ctx.store.update_event(
        crm_id,
        {
            "title": f"{summary} (CRM)",
            "location": "Room 2",
            "updated_at": edited_at,
            "sync.state": "pending",
        },
    )
    stack.google.control.edit_event(DEMO_EMAIL, google_id, {"summary": f"{summary} (Google)"})
    wait_until(lambda: crm_event(stack, crm_id).sync.decisions, what=f"the conflict on {summary} recorded")
    return crm_id, google_id


def test_resolve_a_conflict_each_way(stack: Stack, browser: BrowserPage) -> None:
    page = browser.page
    connect_user(stack.ctx, stack.google, DEMO_USER, DEMO_EMAIL)
    assert stack.call("/sync/enable", {}).status_code == 200
    google_won, google_won_gid = conflict(stack, "Pricing review", crm_newer=False)
    crm_won, crm_won_gid = conflict(stack, "Kick-off", crm_newer=True)
    assert crm_event(stack, google_won).title == "Pricing review (Google)"
    assert crm_event(stack, crm_won).title == "Kick-off (CRM)"
    assert crm_event(stack, google_won).location == crm_event(stack, crm_won).location == "Room 2"  # merged
    stack.start_trigger()  # from now on CRM writes reach push_event, as Eventarc delivers them

    page.goto(stack.page_url)
    center = page.wait_for_selector("#conflict-center")
    page.locator(f'li.conflict[data-event="{google_won}"]').wait_for()
    text = center.inner_text()
    assert "Conflicts (2 to review)" in text
    assert "Google Calendar won" in text and "CRM won" in text
    # Side by side: the differing fields, each side's value, highlighted.
    row = page.locator(f'li.conflict[data-event="{google_won}"] td[data-field="title"]')
    assert row.count() == 2
    assert (
        page.locator(
            f'li.conflict[data-event="{google_won}"] td[data-side="crm"][data-field="title"] mark'
        ).inner_text()
        == "Pricing review (CRM)"
    )
    # Only the title was decided: the room, changed in the CRM alone, was merged and is not offered to undo.
    assert page.locator(f'li.conflict[data-event="{google_won}"] td[data-field="location"]').count() == 0
    browser.screenshot("-center")

    # Google won "Pricing review": keep the CRM's version instead -> written to the CRM, pushed to Google.
    page.locator(f'li.conflict[data-event="{google_won}"] button[data-keep="crm"]').click()
    page.locator("#message", has_text="Keeping the CRM version").wait_for()
    wait_until(
        lambda: google_event(stack, google_won_gid)["summary"] == "Pricing review (CRM)",
        what="the CRM version in Google",
    )
    assert google_event(stack, google_won_gid)["location"] == "Room 2"
    kept = wait_until(
        lambda: (e := crm_event(stack, google_won)).sync.state == "synced" and e, what="the kept version synced"
    )
    assert kept.title == "Pricing review (CRM)" and kept.location == "Room 2"
    assert kept.sync.decisions[0].resolved_by_user is not None
    assert kept.sync.decisions[0].resolved_by_user.keep == "crm"

    # The CRM won "Kick-off": keep Google's title instead -> in the CRM and in Google; the merged room stays.
    page.locator(f'li.conflict[data-event="{crm_won}"] button[data-keep="google"]').click()
    page.locator("#message", has_text="Keeping the Google Calendar version").wait_for()
    taken = wait_until(
        lambda: (e := crm_event(stack, crm_won)).sync.state == "synced" and e, what="Google's version synced"
    )
    assert taken.title == "Kick-off (Google)" and taken.location == "Room 2"
    assert google_event(stack, crm_won_gid)["summary"] == "Kick-off (Google)"
    assert google_event(stack, crm_won_gid)["location"] == "Room 2"

    page.locator("li.conflict .resolved").nth(1).wait_for()
    assert page.locator("li.conflict button[data-keep]").count() == 0
    assert "to review" not in page.inner_text("#conflicts-heading")
    browser.screenshot("-resolved")
