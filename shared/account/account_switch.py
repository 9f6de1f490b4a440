"""Reconnecting with ANOTHER Google account: what becomes of the CRM events linked to the old one.

Why marked, not re-pushed: an event linked to the old account lives in a calendar the new account usually cannot see.
Events that came from that calendar are the old account's meetings, not the CRM's to copy elsewhere; re-inserting the
CRM's own meetings into the new account would send every guest a second invitation (sendUpdates follows the event) for
a meeting they already hold. So every event linked to one of the old account's calendars is marked: `sync.state`
`error`, `sync.last_error` naming the old account, and `sync.detached_from` holding it, which the push planner honours
(no Google call, no retry loop; shared/sync/crm_to_google_plan.plan_push). Their Google link stays on record, nothing
is duplicated, and the CRM decides (for example: copy a meeting as a new CRM event, which pushes to the new account).
Events never pushed (no link) are untouched: they go to the new account's target calendar as usual.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.logs import log_event
from shared.models import SyncState
from shared.store import MAX_BATCH_WRITES, Write

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)


def detach_old_account_events(ctx: AppContext, user_id: str, old_account: str, calendar_ids: set[str]) -> int:
    """Mark this user's events linked to the old account's calendars (module docstring). Returns how many."""
    now = ctx.clock()
    reason = (
        f"account_replaced: linked to the Google account {old_account}, which was replaced; "
        "not synced any more (copy it as a new CRM event to send it to the connected account)"
    )
    writes: list[Write] = []
    for calendar_id in sorted(calendar_ids):
        for event in ctx.store.events_linked_to_calendar(user_id, calendar_id):
            if event.deleted or event.sync.detached_from:
                continue
            fields = {
                "sync.state": SyncState.ERROR.value,
                "sync.last_error": reason,
                "sync.last_error_at": now,
                "sync.next_attempt_at": None,
                "sync.detached_from": old_account,
            }
            writes.append(Write("update", ctx.store.event_ref(event.id), fields))
    for start in range(0, len(writes), MAX_BATCH_WRITES):
        ctx.store.commit_writes(writes[start : start + MAX_BATCH_WRITES])
    log_event(logger, "events of the replaced google account marked", user_id=user_id, events=len(writes))
    return len(writes)
