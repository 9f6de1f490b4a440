"""One conflict policy: the same conflict decided by Google → CRM's planner and by CRM → Google's resolver has the same
winner, whichever function sees it first (shared/sync/conflict.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from shared.gcal.wire import format_rfc3339, has_unpushed_change
from shared.models import CrmEvent, GoogleLink, SyncInfo
from shared.sync.crm_to_google_plan import STAMP_KEY, google_body, resolve_conflict
from shared.sync.google_to_crm_plan import KeepLocal, TombstoneFromGoogle, UpdateFromGoogle, plan_pull
from tests.push.helpers import EMAIL, OWNER, T0, crm_event

GOOGLE_ID = "abcde12345"
NOW = T0 + dt.timedelta(days=1)
offsets = st.none() | st.integers(min_value=-3, max_value=3)


def _at(offset: int | None) -> dt.datetime | None:
    return None if offset is None else T0 + dt.timedelta(seconds=offset)


def _stored(updated: int | None, created: int | None, deleted_at: int | None, deleted: bool) -> CrmEvent:
    """A linked CRM event with an unpushed edit (its content differs from the last synced hash)."""
    event = crm_event(
        updated_at=_at(updated),
        created_at=_at(created),
        deleted=deleted,
        deleted_at=_at(deleted_at) if deleted else None,
        google=GoogleLink(calendar_id=EMAIL, event_id=GOOGLE_ID, etag='"e1"', updated=T0 - dt.timedelta(hours=1)),
        sync=SyncInfo(content_hash="the content Google had"),
    )
    assert has_unpushed_change(event)
    return event


def _google(event: CrmEvent, updated: int | None, deleted_in_google: bool) -> dict[str, Any]:
    """Google's current version: a user's edit (another title, no stamp of ours), or a deletion."""
    if deleted_in_google:
        body: dict[str, Any] = {"id": GOOGLE_ID, "etag": '"e2"', "status": "cancelled"}
    else:
        body = {k: v for k, v in google_body(event, for_patch=False).items() if v is not None}
        body["extendedProperties"]["private"].pop(STAMP_KEY)
        body.update({"id": GOOGLE_ID, "etag": '"e2"', "status": "confirmed", "summary": "Renamed in Google"})
    if updated is not None:
        body["updated"] = format_rfc3339(T0 + dt.timedelta(seconds=updated))
    return body


def _pull_winner(stored: CrmEvent, google_event: dict[str, Any]) -> str:
    [action] = plan_pull([google_event], {stored.id: stored}, calendar_id=EMAIL, owner_id=OWNER, now=NOW, full=False)
    if isinstance(action, KeepLocal):
        return "crm"
    assert isinstance(action, UpdateFromGoogle | TombstoneFromGoogle), action
    assert action.decision is not None and action.after.sync.decisions[-1] == action.decision
    return action.decision.winner


def _push_winner(stored: CrmEvent, google_event: dict[str, Any], deleted_in_google: bool) -> str:
    resolution = resolve_conflict(stored, google_event, EMAIL, NOW, "412", deleted_in_google=deleted_in_google)
    assert resolution.kind in ("push_crm", "take_google") and resolution.decision is not None, resolution
    assert (resolution.kind == "push_crm") == (resolution.decision.winner == "crm")
    return resolution.decision.winner


@given(
    updated=offsets,
    created=offsets,
    deleted_at=offsets,
    crm_deleted=st.booleans(),
    google_updated=offsets,
    deleted_in_google=st.booleans(),
)
def test_both_directions_pick_the_same_winner(
    updated: int | None,
    created: int | None,
    deleted_at: int | None,
    crm_deleted: bool,
    google_updated: int | None,
    deleted_in_google: bool,
) -> None:
    assume(not (crm_deleted and deleted_in_google))  # deleted on both sides: they agree, no conflict to decide
    stored = _stored(updated, created, deleted_at, crm_deleted)
    google_event = _google(stored, google_updated, deleted_in_google)
    assert _pull_winner(stored, google_event) == _push_winner(stored, google_event, deleted_in_google)


def test_the_rule_itself() -> None:
    """Later clock wins, ties to the CRM, an unknown CRM clock loses to a known Google one, deletions in Google win."""
    cases = [
        ((0, None), 1, False, "google"),
        ((1, None), 0, False, "crm"),
        ((0, None), 0, False, "crm"),
        ((None, None), 0, False, "google"),  # neither updated_at nor created_at: both directions let Google win
        ((None, 5), 0, False, "crm"),  # created_at stands in for a missing updated_at
        ((None, None), None, False, "crm"),  # no clock on either side: a tie
        ((9, None), 0, True, "google"),
    ]
    for (updated, created), google_updated, deleted_in_google, winner in cases:
        stored = _stored(updated, created, None, False)
        google_event = _google(stored, google_updated, deleted_in_google)
        assert _pull_winner(stored, google_event) == winner, (updated, created, google_updated)
        assert _push_winner(stored, google_event, deleted_in_google) == winner, (updated, created, google_updated)
