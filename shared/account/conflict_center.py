"""The conflict center: list a user's recorded conflict decisions and apply the user's choice.

Why through the CRM document: "keep the other version" is written as a new CRM edit of the chosen values, with a
precondition on the document's update time, so it travels the normal sync path (the push sends it to Google with
If-Match, the pull's echo guard keeps it from bouncing back) and a concurrent edit is never clobbered. Choosing the
version that already won changes no content and only records the choice.

A conflict held for the user ("ask me": a pending decision, the event in `sync.state = conflict` holding the CRM's
values and Google's in the record) is resolved the same way, and either choice releases the hold to the normal paths:
keeping the CRM's values makes them a new CRM edit that the push sends to Google with If-Match (the event kept Google's
etag, so a Google edit made meanwhile is merged first); keeping Google's values writes them to the CRM document with a
precondition, and the push sends whatever else the CRM changed (the merged one-sided fields), If-Match as well.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from shared.errors import BadRequest, Conflict, DocumentChanged, DocumentMissing, NotFound
from shared.gcal.wire import content_hash
from shared.logs import log_event
from shared.models import ConflictDecision, CrmEvent, Strict, SyncState, UserResolution
from shared.sync.conflict import held_for_user
from shared.sync.conflict_record import field_values

if TYPE_CHECKING:
    from shared.context import AppContext

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 50
MAX_CURSOR_CHARS = 2048
EventId = Annotated[str, StringConstraints(min_length=1, max_length=1500)]
DecisionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{20}$")]


class ResolveRequest(Strict):
    """POST sync_resolve: which decision of which event, and which version to keep."""

    event_id: EventId
    decision: DecisionId
    keep: Literal["crm", "google"]


class ConflictView(BaseModel):
    """One decision as the conflict center shows it."""

    model_config = ConfigDict(defer_build=True)

    event_id: str
    decision: str
    title: str
    at: dt.datetime
    winner: Literal["crm", "google"]
    reason: str
    crm_updated_at: dt.datetime | None
    google_updated: dt.datetime | None
    fields: list[str]
    crm: dict[str, Any]
    google: dict[str, Any]
    resolvable: bool
    resolved_by_user: UserResolution | None
    pending: bool = False  # held for the user's choice ("ask me"): nothing was applied yet


class ConflictPage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    conflicts: list[ConflictView]
    next_page: str | None


class ResolveResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    event_id: str
    decision: str
    keep: Literal["crm", "google"]
    changed: bool
    state: str


def _resolvable(decision: ConflictDecision) -> bool:
    """Only a content conflict recorded with both sides' values can be re-applied; a deletion cannot be undone here."""
    return bool(decision.id and decision.fields and decision.losing) and "deleted" not in decision.fields


def view(event: CrmEvent, decision: ConflictDecision) -> ConflictView:
    crm_side, google_side = (
        (decision.winning, decision.losing) if decision.winner == "crm" else (decision.losing, decision.winning)
    )
    return ConflictView(
        event_id=event.id,
        decision=decision.id or "",
        title=event.title,
        at=decision.at,
        winner=decision.winner,
        reason=decision.reason,
        crm_updated_at=decision.crm_updated_at,
        google_updated=decision.google_updated,
        fields=decision.fields,
        crm=crm_side,
        google=google_side,
        resolvable=_resolvable(decision) and decision.resolved_by_user is None,
        resolved_by_user=decision.resolved_by_user,
        pending=decision.pending and decision.resolved_by_user is None,
    )


def _encode_cursor(at: dt.datetime, event_id: str) -> str:
    raw = json.dumps({"at": at.isoformat(), "id": event_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class _Cursor(Strict):
    at: dt.datetime
    id: EventId


def _decode_cursor(cursor: str) -> _Cursor:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadRequest("`page` is too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return _Cursor.model_validate(json.loads(raw))
    except (ValueError, ValidationError, UnicodeDecodeError) as exc:
        raise BadRequest("`page` is not a page token this service issued") from exc


def list_conflicts(ctx: AppContext, user_id: str, *, page_size: int, page: str | None) -> ConflictPage:
    """The user's events with recorded decisions, newest decision first; each event's described decisions, newest
    first. Paged by event (`page_size` events), so a page is one bounded query."""
    after = None
    if page:
        cursor = _decode_cursor(page)
        after = (cursor.at, cursor.id)
    events = ctx.store.events_with_decisions(user_id, limit=page_size + 1, after=after)
    views: list[ConflictView] = []
    for event in events[:page_size]:
        for decision in sorted(event.sync.decisions, key=lambda d: d.at, reverse=True):
            if decision.id and decision.fields:
                views.append(view(event, decision))
    next_page = None
    if len(events) > page_size:
        last = events[page_size - 1]
        assert last.sync.last_decision_at is not None
        next_page = _encode_cursor(last.sync.last_decision_at, last.id)
    return ConflictPage(conflicts=views, next_page=next_page)


def _chosen_event(event: CrmEvent, decision: ConflictDecision) -> CrmEvent:
    """The event with the losing side's values of the decided fields, validated as a whole event."""
    candidate = event.model_dump(mode="json")
    candidate.update(decision.losing)
    try:
        return CrmEvent.model_validate(candidate)
    except ValidationError as exc:
        raise Conflict("the other version is no longer a valid event") from exc


def _chosen_update(event: CrmEvent, decision: ConflictDecision, now: dt.datetime) -> dict[str, Any]:
    """The CRM edit that puts the losing side's values back: checked as a whole event before anything is written."""
    current = field_values(event, decision.fields)
    if current != decision.winning:
        raise Conflict(
            "the event changed after this conflict was decided; the other version would overwrite that change",
            fields=[name for name in decision.fields if current.get(name) != decision.winning.get(name)],
        )
    values = _chosen_event(event, decision).model_dump(mode="python", include=set(decision.fields))
    return {**values, "updated_at": now, "sync.state": SyncState.PENDING.value}


def _release_hold(event: CrmEvent, decision: ConflictDecision, keep: str, now: dt.datetime) -> dict[str, Any]:
    """The write that ends a hold: the chosen values as a new CRM edit, pending for the push.

    Keeping the CRM's values writes no content (the event holds them). Keeping Google's is checked like any "keep the
    other version" (the CRM's held values must still be there). When the result is exactly what Google holds at the
    stored etag, the push must still run once, If-Match that etag, so a Google edit skipped while the event was held
    is merged rather than lost: the echo guard's hash is cleared.
    """
    if keep == "google":
        fields = _chosen_update(event, decision, now)
        chosen = _chosen_event(event, decision)
    else:
        fields = {"updated_at": now, "sync.state": SyncState.PENDING.value}
        chosen = event
    if content_hash(chosen) == event.sync.content_hash:
        fields["sync.content_hash"] = None
    return fields


def resolve(ctx: AppContext, user_id: str, request: ResolveRequest) -> ResolveResponse:
    """Record the user's choice; keeping the losing version writes it to the CRM as a new edit (then pushed)."""
    event, update_time = ctx.store.get_event_snapshot(request.event_id)
    if event is None or event.owner_id != user_id:
        raise NotFound("no such event among your conflicts", event_id=request.event_id)
    index = next((i for i, d in enumerate(event.sync.decisions) if d.id == request.decision), None)
    if index is None:
        raise NotFound("no such conflict decision on this event (only the last 10 are kept)", event_id=event.id)
    decision = event.sync.decisions[index]
    if decision.resolved_by_user is not None:
        if decision.resolved_by_user.keep == request.keep:
            return ResolveResponse(
                event_id=event.id,
                decision=request.decision,
                keep=request.keep,
                changed=False,
                state=event.sync.state.value,
            )
        raise Conflict("this conflict was already resolved the other way", keep=decision.resolved_by_user.keep)
    now = ctx.clock()
    changed = request.keep != decision.winner
    held = decision.pending and held_for_user(event)
    if decision.pending and not held:
        raise Conflict("this conflict is no longer held: the event was deleted in Google", event_id=event.id)
    if changed and not _resolvable(decision):
        raise Conflict("a deletion in Google cannot be undone from the conflict center", fields=decision.fields)
    if held:
        fields: dict[str, Any] = _release_hold(event, decision, request.keep, now)
    else:
        fields = _chosen_update(event, decision, now) if changed else {}
    resolution = UserResolution(at=now, keep=request.keep, user_id=user_id, changed=changed)
    decisions = [d.model_dump(mode="python") for d in event.sync.decisions]
    decisions[index]["resolved_by_user"] = resolution.model_dump(mode="python")
    fields["sync.decisions"] = decisions
    try:
        ctx.store.update_event(event.id, fields, last_update_time=update_time)
    except (DocumentChanged, DocumentMissing) as exc:
        raise Conflict("the event changed while resolving; reload and choose again", event_id=event.id) from exc
    log_event(
        logger,
        "conflict resolved by user",
        user_id=user_id,
        event_id=event.id,
        decision=request.decision,
        keep=request.keep,
        changed=changed,
    )
    state = SyncState.PENDING.value if changed or held else event.sync.state.value
    return ResolveResponse(
        event_id=event.id, decision=request.decision, keep=request.keep, changed=changed, state=state
    )


def query_page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"`page_size` must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)
