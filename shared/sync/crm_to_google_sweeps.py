"""CRM → Google, the cron's sweeps: re-push what is due, and push CRM edits whose trigger never ran.

Called by the renewal run (shared/account/renewal.py). Both bound their work by a deadline (a `time.monotonic()`
instant) and leave the rest due for the next run; every push they make is `push_event`, idempotent, so concurrent
sweeps are harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared.errors import GoogleApiError
from shared.gcal.wire import content_hash
from shared.logs import log_event
from shared.sync.crm_to_google_run import push_event

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

SWEEP_OVERLAP = dt.timedelta(minutes=10)  # re-read a little before the watermark: late commits, client clocks
SWEEP_FIRST_WINDOW = dt.timedelta(days=1)


def push_due_events(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    """Re-push pending/error events whose `sync.next_attempt_at` <= now, oldest first, until `deadline`.

    `deadline` is a `time.monotonic()` instant (the repo's convention). Returns counts:
    {"due", "pushed", "failed", "deferred", "skipped"} (skipped: nothing left to do, or not reached before deadline).
    """
    counts = {"due": 0, "pushed": 0, "failed": 0, "deferred": 0, "skipped": 0}
    ids = ctx.store.due_event_ids(now, limit)
    counts["due"] = len(ids)
    for index, event_id in enumerate(ids):
        if time.monotonic() >= deadline:
            counts["skipped"] += len(ids) - index
            break
        try:
            outcome = push_event(ctx, event_id, now=now)
        except GoogleApiError:
            counts["failed"] += 1
            continue
        if outcome.outcome in ("pushed", "conflict"):
            counts["pushed"] += 1
        elif outcome.outcome == "failed":
            counts["failed"] += 1
        elif outcome.outcome == "deferred":
            counts["deferred"] += 1
        else:
            counts["skipped"] += 1
    log_event(logger, "due pushes done", **counts)
    return counts


def sweep_unpushed_edits(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    """Push CRM edits whose trigger never ran: nothing a CRM user writes is lost if one CloudEvent is.

    Reads only events edited since the last sweep (`updated_at` between the watermark and now − grace, a single-field
    range, no composite index), in pages of `limit`, until done or the deadline: the cost follows the volume of recent
    edits, not the number of events. An edit is pushed when its content differs from what was last synced and that
    content was not already tried (a failed try belongs to the retry queue, `push_due_events`). The watermark moves
    only over what was examined. Concurrent sweeps are harmless: every push is idempotent.
    """
    counts = {"swept": 0, "pushed": 0, "failed": 0, "skipped": 0}
    watermark = ctx.store.get_push_sweep_watermark()
    since = watermark - SWEEP_OVERLAP if watermark is not None else now - SWEEP_FIRST_WINDOW
    until = now - dt.timedelta(seconds=ctx.settings.push_sweep_grace_seconds)
    if until <= since:
        return counts
    reached, cursor, complete = since, None, False
    while not complete:
        page = ctx.store.events_edited_page(since, until, limit, cursor)
        for snapshot in page:
            if time.monotonic() >= deadline:
                break
            counts["swept"] += 1
            _sweep_one(ctx, snapshot, now, counts)
            reached = max(reached, (snapshot.to_dict() or {}).get("updated_at") or reached)
            cursor = snapshot
        else:
            complete = len(page) < limit
            continue
        break  # the deadline: the next run goes on from `reached`
    ctx.store.set_push_sweep_watermark(until if complete else reached, now)
    if counts["pushed"]:
        log_event(logger, "unpushed CRM edits swept", **counts)
    return counts


def _sweep_one(ctx: AppContext, snapshot: Any, now: dt.datetime, counts: dict[str, int]) -> None:
    try:
        event = ctx.store.event_from(snapshot)
    except ValidationError:
        event = None  # push_event records why the document cannot be synced
    if event is not None:
        current = content_hash(event)
        if event.sync.content_hash == current or event.sync.attempted_hash == current:
            counts["skipped"] += 1
            return
    try:
        outcome = push_event(ctx, snapshot.id, now=now)
    except GoogleApiError:
        counts["failed"] += 1
        return
    counts["pushed" if outcome.outcome in ("pushed", "conflict") else "skipped"] += 1
