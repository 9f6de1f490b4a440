"""Sync lifecycle: enable / disable / status per user and calendar, and the scheduled renewal + reconcile run.

Why this shape:
- Every decision is taken on a fresh read of the calendar document while holding its channel lease
  (shared.channels), so enable twice, a double-clicked enable and concurrent cron runs converge on one channel.
- The cron queries only what is due: collection-group queries over `calendars` on `renew_due_at` and `pull_due_at`
  (composite indexes in shared/indexes.py), routes near expiry for orphans, and the push engine's own due query.
  Its cost grows with due work, not with the number of users; it bounds its concurrency and stops starting work at
  its deadline, leaving the rest due for the next run.
- Integrations in needs_reauth are skipped and reported; their calendars' due times move out by REAUTH_RECHECK so
  they do not crowd the head of the due queue, and reconnecting marks them due again.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared import channels
from shared.errors import BadRequest, Conflict, GoogleApiError, NeedsReauth, NotFound, SyncError
from shared.logs import log_event
from shared.models import (
    CALENDARS,
    CHANNELS,
    EVENTS,
    ChannelRoute,
    ChannelState,
    ImportProgress,
    Integration,
    IntegrationStatus,
    Strict,
    SyncedCalendar,
    SyncState,
    calendar_key,
)

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.google_api import CalendarClient

logger = logging.getLogger(__name__)

REAUTH_RECHECK = dt.timedelta(hours=6)
DUE_BATCH_LIMIT = 1000
PUSH_BATCH_LIMIT = 500
ORPHAN_BATCH_LIMIT = 500
MAX_CALENDARS_PER_REQUEST = 25
READABLE_ROLES = frozenset({"reader", "writer", "owner"})
WRITABLE_ROLES = frozenset({"writer", "owner"})


# --- contracts with the pull and push engines (other modules; imported lazily) ----------------------------------------
def request_pull(ctx: AppContext, user_id: str, calendar_id: str, *, reason: str, full: bool = False) -> object:
    from shared.coalesce import request_pull as _request_pull

    return _request_pull(ctx, user_id, calendar_id, reason=reason, full=full)


def push_due_events(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    from shared.push import push_due_events as _push_due_events

    return _push_due_events(ctx, now=now, limit=limit, deadline=deadline)


def sweep_unpushed_edits(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    from shared.push import sweep_unpushed_edits as _sweep

    return _sweep(ctx, now=now, limit=limit, deadline=deadline)


# --- request / response models ----------------------------------------------------------------------------------------
CalendarId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class EnableRequest(Strict):
    """POST sync_enable: calendars chosen from calendarList ("primary" allowed); which one receives CRM events."""

    calendar_ids: list[CalendarId] | None = Field(default=None, min_length=1, max_length=MAX_CALENDARS_PER_REQUEST)
    target_calendar_id: CalendarId | None = None
    # How conflicts are decided from now on (unchanged when absent): last write wins, or held for the user.
    conflict_mode: Literal["last_write_wins", "ask_me"] | None = None


class DisableRequest(Strict):
    """POST sync_disable: the calendars to stop syncing (default: all enabled ones)."""

    calendar_ids: list[CalendarId] | None = Field(default=None, min_length=1, max_length=MAX_CALENDARS_PER_REQUEST)


class ChannelStatus(BaseModel):
    model_config = ConfigDict(defer_build=True)

    channel_id: str
    resource_id: str
    expiration: dt.datetime
    expires_in_seconds: int
    renewal_due_at: dt.datetime | None


class CalendarStatus(BaseModel):
    model_config = ConfigDict(defer_build=True)

    calendar_id: str
    enabled: bool
    is_target: bool
    channel: ChannelStatus | None
    # The seed's columns, flat, for a settings table.
    channel_id: str | None
    resource_id: str | None
    webhook_expiration: dt.datetime | None
    last_notification_at: dt.datetime | None
    last_sync_at: dt.datetime | None
    last_error: str | None
    last_error_at: dt.datetime | None
    import_progress: ImportProgress
    importing: bool
    notices: list[str]
    outcome: str | None = None


class EventCounts(BaseModel):
    model_config = ConfigDict(defer_build=True)

    pending: int = 0
    error: int = 0
    conflict: int = 0


class GoogleCalendarChoice(BaseModel):
    """One entry of the account's calendar list, for the settings page's checkboxes."""

    model_config = ConfigDict(defer_build=True)

    calendar_id: str
    summary: str
    primary: bool
    access_role: str
    syncable: bool
    writable: bool


class StatusResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    user_id: str
    connected: bool
    status: str
    needs_reauth: bool
    reauth_reason: str | None
    account_email: str | None
    scopes: list[str]
    target_calendar_id: str | None
    calendars: list[CalendarStatus]
    events: EventCounts
    generated_at: dt.datetime
    conflict_mode: str = "last_write_wins"
    google_calendars: list[GoogleCalendarChoice] | None = None  # only when asked for (one calendarList call)


# --- integration helpers ----------------------------------------------------------------------------------------------
def connected_integration(ctx: AppContext, user_id: str) -> Integration:
    integration = ctx.store.get_integration(user_id)
    if integration is None or integration.status == IntegrationStatus.DISCONNECTED:
        raise Conflict("no Google account is connected; connect one first", user_id=user_id)
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        raise NeedsReauth("the Google connection has expired; connect again", reason=integration.reauth_reason or "")
    return integration


def _client_or_reauth(ctx: AppContext, integration: Integration) -> CalendarClient:
    try:
        return ctx.calendar_client(integration)
    except NeedsReauth:
        ctx.mark_needs_reauth(integration.user_id, "missing_credentials")
        raise


def mark_calendars_due(ctx: AppContext, user_id: str) -> int:
    """After a reconnect: every enabled calendar is pulled, and re-watched if its channel is gone, by the next run."""
    now = ctx.clock()
    count = 0
    with ctx.store.batch() as batch:
        for cal in ctx.store.list_calendars(user_id):
            if not cal.enabled:
                continue
            fields: dict[str, Any] = {"pull_due_at": now}
            if cal.channel is None or cal.channel.expiration <= now:
                fields["renew_due_at"] = now
            batch.update(ctx.store.calendar_ref(user_id, cal.key), fields)
            count += 1
    return count


def _record_calendar_error(ctx: AppContext, cal: SyncedCalendar, message: str) -> None:
    try:
        ctx.store.update_calendar(cal.user_id, cal.key, {"last_error": message[:500], "last_error_at": ctx.clock()})
    except Exception:
        logger.warning("could not record calendar error", extra={"fields": {"user_id": cal.user_id}})


def pull_succeeded(outcome: object) -> bool:
    """Whether a request_pull outcome is a success (ran ok, or coalesced into a running pull)."""
    if getattr(outcome, "queued", False):
        return True
    report = getattr(outcome, "report", None)
    return report is None or getattr(report, "outcome", "ok") == "ok"


def _pulled(ctx: AppContext, cal: SyncedCalendar, outcome: object) -> None:
    """After a pull: the next stale-sync pull is due a stale period from now.

    The pull engine writes `pull_due_at` itself in the commit that stores the sync token; this only covers an outcome
    that does not say it did (a queued pull is left to the running one, a failed pull stays due).
    """
    if getattr(outcome, "ran", False) or getattr(outcome, "queued", False) or not pull_succeeded(outcome):
        return
    ctx.store.update_calendar(cal.user_id, cal.key, {"pull_due_at": channels.pull_due_at(ctx, ctx.clock())})


# --- channel decisions ------------------------------------------------------------------------------------------------
def ensure_channel(
    ctx: AppContext,
    integration: Integration,
    cal_key: str,
    *,
    reason: str,
    force: bool = False,
    catch_up: bool = True,
) -> str:
    """With the calendar's lease held: renew / re-watch / leave alone. Returns the outcome.

    - live channel not yet due (and not forced): "not_due" (a concurrent run already renewed it)
    - live channel due: new channel, route, switch, then stop the old one: "renewed"
    - no channel or an expired one: new channel, switch, catch up from the stored sync token: "rewatched"
    """
    user_id = integration.user_id
    now = ctx.clock()
    cal = ctx.store.get_calendar(user_id, cal_key)
    if cal is None or not cal.enabled:
        return "not_enabled"
    current = cal.channel
    live = current is not None and current.expiration > now
    if live and not force and cal.renew_due_at is not None and cal.renew_due_at > now:
        return "not_due"
    client = _client_or_reauth(ctx, integration)
    info = channels.open_channel(ctx, client, cal)
    # A re-watch leaves the calendar due for a pull until the catch-up below has run (crash safety).
    channels.switch_calendar_to(ctx, cal, info, pull_now=not live and catch_up)
    fields = {"user_id": user_id, "calendar_id": cal.calendar_id}
    if current is not None:
        # Old channel last: both routes were ACTIVE until now (overlap, never a gap). An expired one needs no call.
        channels.retire_channel(
            ctx,
            client if live else None,
            current.id,
            current.resource_id,
            reason="renewed" if live else "expired",
            **fields,
        )
    if live:
        log_event(logger, "channel renewed", reason=reason, channel_id=info.id, old_channel_id=current.id, **fields)
        return "renewed"
    log_event(
        logger,
        "channel re-watched",
        reason=reason,
        channel_id=info.id,
        old_channel_id=current.id if current else None,
        **fields,
    )
    if catch_up:
        # Changes made in Google while no channel existed are caught up from the stored sync token.
        _pulled(ctx, cal, request_pull(ctx, user_id, cal.calendar_id, reason=f"{reason}:catch_up"))
    return "rewatched"


# --- enable / disable / status ----------------------------------------------------------------------------------------
def _resolve_calendars(
    client: CalendarClient, requested: list[str] | None
) -> tuple[dict[str, dict[str, Any]], str, list[str]]:
    """calendarList entries by id, the primary id, and the requested ids resolved ("primary" -> the real id)."""
    entries = {str(e["id"]): e for e in client.list_calendars() if not e.get("deleted")}
    primary = next((cid for cid, e in entries.items() if e.get("primary")), None)
    if primary is None:
        raise SyncError("the Google account has no primary calendar")
    resolved = [primary if cid == "primary" else cid for cid in (requested or [primary])]
    resolved = list(dict.fromkeys(resolved))
    unknown = [cid for cid in resolved if cid not in entries]
    if unknown:
        raise BadRequest("these calendars are not in the account's calendar list", unknown=unknown)
    unreadable = [cid for cid in resolved if entries[cid].get("accessRole") not in READABLE_ROLES]
    if unreadable:
        raise BadRequest("these calendars only share free/busy information and cannot be synced", calendars=unreadable)
    return entries, primary, resolved


def enable(ctx: AppContext, user_id: str, request: EnableRequest) -> StatusResponse:
    """Initial full import, then events.watch, for each chosen calendar; idempotent (no second channel)."""
    integration = connected_integration(ctx, user_id)
    client = _client_or_reauth(ctx, integration)
    try:
        entries, primary, wanted = _resolve_calendars(client, request.calendar_ids)
    except NeedsReauth as exc:
        ctx.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "invalid_grant"))
        raise
    existing = {c.calendar_id: c for c in ctx.store.list_calendars(user_id)}
    enabled_after = {cid for cid, c in existing.items() if c.enabled} | set(wanted)
    target = _choose_target(request, integration, primary, enabled_after)
    if entries.get(target, {}).get("accessRole") not in WRITABLE_ROLES:
        raise BadRequest("the target calendar must be writable", calendar_id=target)
    if request.conflict_mode is not None and request.conflict_mode != integration.conflict_mode:
        ctx.store.update_integration(user_id, {"conflict_mode": request.conflict_mode, "updated_at": ctx.clock()})
    outcomes: dict[str, str] = {}
    for calendar_id in wanted:
        outcomes[calendar_id] = _enable_one(ctx, integration, calendar_id, existing.get(calendar_id), target)
    _set_target(ctx, integration, target, {c.calendar_id: c for c in ctx.store.list_calendars(user_id)})
    log_event(logger, "sync enabled", user_id=user_id, outcomes=outcomes, target_calendar_id=target)
    return status(ctx, user_id, outcomes=outcomes)


def _choose_target(request: EnableRequest, integration: Integration, primary: str, enabled_after: set[str]) -> str:
    if request.target_calendar_id:
        target = primary if request.target_calendar_id == "primary" else request.target_calendar_id
        if target not in enabled_after:
            raise BadRequest("the target calendar must be one of the enabled calendars", calendar_id=target)
        return target
    current = primary if integration.target_calendar_id == "primary" else integration.target_calendar_id
    return current if current in enabled_after or current == primary else primary


def _set_target(ctx: AppContext, integration: Integration, target: str, existing: dict[str, SyncedCalendar]) -> None:
    if integration.target_calendar_id != target:
        ctx.store.update_integration(integration.user_id, {"target_calendar_id": target, "updated_at": ctx.clock()})
    # Only documents that exist: a calendar another request is still enabling gets its flag from that request.
    with ctx.store.batch() as batch:
        for cid, cal in existing.items():
            if cal.is_target != (cid == target):
                batch.update(ctx.store.calendar_ref(integration.user_id, cal.key), {"is_target": cid == target})


def _enable_one(
    ctx: AppContext, integration: Integration, calendar_id: str, known: SyncedCalendar | None, target: str
) -> str:
    user_id = integration.user_id
    cal_key = calendar_key(calendar_id)
    now = ctx.clock()
    if known is not None and known.enabled and known.channel is not None and known.channel.expiration > now:
        return "already_enabled"
    lease = channels.acquire_lease(ctx, user_id, cal_key, purpose="enable")
    if not lease.acquired:
        return "in_progress"
    try:
        cal = ctx.store.get_calendar(user_id, cal_key)
        if cal is not None and cal.enabled and cal.channel is not None and cal.channel.expiration > now:
            return "already_enabled"
        if cal is None:
            cal = SyncedCalendar(user_id=user_id, calendar_id=calendar_id, is_target=calendar_id == target)
            ctx.store.save_calendar(cal)
        # Enabled and due first: if we crash from here on, the next cron run re-watches and catches up.
        ctx.store.update_calendar(
            user_id,
            cal_key,
            {"enabled": True, "renew_due_at": now, "pull_due_at": now, "last_error": None, "last_error_at": None},
        )
        first_import = cal.sync_token is None
        try:
            _pulled(ctx, cal, request_pull(ctx, user_id, calendar_id, reason="enable", full=first_import))
        except NeedsReauth as exc:
            ctx.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "invalid_grant"))
            raise
        except SyncError as exc:
            # The channel is still opened; the cron retries the import (pull_due_at stays due).
            log_event(
                logger,
                "initial import failed",
                level=logging.WARNING,
                user_id=user_id,
                calendar_id=calendar_id,
                code=exc.code,
                reason=exc.message,
            )
            _record_calendar_error(ctx, cal, f"import failed: {exc.message}")
        try:
            outcome = ensure_channel(ctx, integration, cal_key, reason="enable", catch_up=False)
        except NeedsReauth as exc:
            ctx.mark_needs_reauth(user_id, str(exc.detail.get("reason") or "invalid_grant"))
            raise
        except GoogleApiError as exc:
            _record_calendar_error(ctx, cal, f"watch failed: {exc.message}")
            log_event(
                logger,
                "watch failed",
                level=logging.WARNING,
                user_id=user_id,
                calendar_id=calendar_id,
                status=exc.status,
            )
            return "watch_failed"
        return "enabled" if outcome in ("rewatched", "renewed") else outcome
    finally:
        lease.release(ctx)


def _disable_calendar(
    ctx: AppContext, cal: SyncedCalendar, client: CalendarClient | None, *, reason: str, forget_sync_token: bool = False
) -> None:
    """Route STOPPED first (late notifications ignored), calendar disabled, then channels.stop. CRM data is kept."""
    fields: dict[str, Any] = {
        "enabled": False,
        "channel": None,
        "renew_due_at": None,
        "pull_due_at": None,
        "is_target": False if forget_sync_token else cal.is_target,
    }
    if forget_sync_token:
        fields["sync_token"] = None
    if cal.channel is not None:
        channels.stop_route(ctx, cal.channel.id, reason=reason)
    ctx.store.update_calendar(cal.user_id, cal.key, fields)
    if cal.channel is not None:
        live = cal.channel.expiration > ctx.clock()
        channels.stop_at_google(
            ctx,
            client if live else None,
            cal.channel.id,
            cal.channel.resource_id,
            user_id=cal.user_id,
            calendar_id=cal.calendar_id,
        )
    log_event(
        logger,
        "calendar disabled",
        user_id=cal.user_id,
        calendar_id=cal.calendar_id,
        channel_id=cal.channel.id if cal.channel else None,
        reason=reason,
    )


def _client_if_possible(ctx: AppContext, user_id: str) -> CalendarClient | None:
    integration = ctx.store.get_integration(user_id)
    if integration is None or integration.status != IntegrationStatus.CONNECTED:
        return None
    try:
        return ctx.calendar_client(integration)
    except SyncError:
        return None


def disable(ctx: AppContext, user_id: str, request: DisableRequest) -> StatusResponse:
    """channels.stop, routing removed, calendar disabled; CRM data kept. Disabling a disabled calendar is a no-op."""
    integration = ctx.store.get_integration(user_id)
    if integration is None:
        raise NotFound("no Google account was ever connected")
    calendars = {c.calendar_id: c for c in ctx.store.list_calendars(user_id)}
    primary = integration.account_email
    wanted = (
        [primary if cid == "primary" and primary else cid for cid in request.calendar_ids]
        if request.calendar_ids
        else [cid for cid, c in calendars.items() if c.enabled]
    )
    unknown = [cid for cid in wanted if cid not in calendars]
    if unknown:
        raise BadRequest("sync was never enabled for these calendars", unknown=unknown)
    client = _client_if_possible(ctx, user_id)
    outcomes: dict[str, str] = {}
    for calendar_id in dict.fromkeys(wanted):
        cal = calendars[calendar_id]
        lease = channels.acquire_lease(ctx, user_id, cal.key, purpose="disable")
        try:
            fresh = ctx.store.get_calendar(user_id, cal.key) or cal
            if not fresh.enabled and fresh.channel is None:
                outcomes[calendar_id] = "already_disabled"
                continue
            _disable_calendar(ctx, fresh, client, reason="disable")
            outcomes[calendar_id] = "disabled"
        finally:
            lease.release(ctx)
    log_event(logger, "sync disabled", user_id=user_id, outcomes=outcomes)
    return status(ctx, user_id, outcomes=outcomes)


def disable_all(ctx: AppContext, user_id: str, *, reason: str, forget_sync_tokens: bool = False) -> int:
    """Disable every enabled calendar of a user (disconnect, account switch). Returns how many were disabled."""
    client = _client_if_possible(ctx, user_id)
    count = 0
    for cal in ctx.store.list_calendars(user_id):
        if cal.enabled or cal.channel is not None or forget_sync_tokens:
            _disable_calendar(ctx, cal, client, reason=reason, forget_sync_token=forget_sync_tokens)
            count += 1
    return count


def _count_events(ctx: AppContext, user_id: str, state: SyncState) -> int:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        ctx.store.db.collection(EVENTS)
        .where(filter=FieldFilter("owner_id", "==", user_id))
        .where(filter=FieldFilter("sync.state", "==", state.value))
    )
    return ctx.store.count_matching(query)


def calendar_status(
    ctx: AppContext, cal: SyncedCalendar, now: dt.datetime, outcome: str | None = None
) -> CalendarStatus:
    channel = None
    notices: list[str] = []
    if cal.channel is not None:
        remaining = int((cal.channel.expiration - now).total_seconds())
        channel = ChannelStatus(
            channel_id=cal.channel.id,
            resource_id=cal.channel.resource_id,
            expiration=cal.channel.expiration,
            expires_in_seconds=remaining,
            renewal_due_at=cal.renew_due_at,
        )
        if remaining <= 0:
            notices.append("channel_expired: it will be re-watched by the next renewal run")
        elif cal.renew_due_at is not None and cal.renew_due_at <= now:
            notices.append("renewal_due: the channel will be renewed by the next renewal run")
    elif cal.enabled:
        notices.append("no_channel: a channel will be opened by the next renewal run")
    if cal.last_error:
        notices.append("last_sync_failed")
    importing = cal.import_progress.state == "running"
    return CalendarStatus(
        calendar_id=cal.calendar_id,
        enabled=cal.enabled,
        is_target=cal.is_target,
        channel=channel,
        channel_id=cal.channel.id if cal.channel else None,
        resource_id=cal.channel.resource_id if cal.channel else None,
        webhook_expiration=cal.channel.expiration if cal.channel else None,
        last_notification_at=cal.last_notification_at,
        last_sync_at=cal.last_sync_at,
        last_error=cal.last_error,
        last_error_at=cal.last_error_at,
        import_progress=cal.import_progress,
        importing=importing,
        notices=notices,
        outcome=outcome,
    )


def google_calendar_choices(ctx: AppContext, integration: Integration) -> list[GoogleCalendarChoice]:
    """The account's calendar list (one calendarList call); a lost grant marks the integration needs_reauth."""
    client = _client_or_reauth(ctx, integration)
    try:
        entries = client.list_calendars()
    except NeedsReauth as exc:
        ctx.mark_needs_reauth(integration.user_id, str(exc.detail.get("reason") or "invalid_grant"))
        raise
    choices = [
        GoogleCalendarChoice(
            calendar_id=str(entry["id"]),
            summary=str(entry.get("summaryOverride") or entry.get("summary") or entry["id"]),
            primary=bool(entry.get("primary")),
            access_role=str(entry.get("accessRole") or ""),
            syncable=entry.get("accessRole") in READABLE_ROLES,
            writable=entry.get("accessRole") in WRITABLE_ROLES,
        )
        for entry in entries
        if not entry.get("deleted")
    ]
    return sorted(choices, key=lambda c: (not c.primary, c.summary.lower()))


def status(
    ctx: AppContext,
    user_id: str,
    *,
    outcomes: dict[str, str] | None = None,
    include_google_calendars: bool = False,
) -> StatusResponse:
    """Everything a settings page shows, for the calling user only."""
    now = ctx.clock()
    integration = ctx.store.get_integration(user_id)
    calendars = ctx.store.list_calendars(user_id) if integration is not None else []
    outcomes = outcomes or {}
    counts = EventCounts(
        pending=_count_events(ctx, user_id, SyncState.PENDING),
        error=_count_events(ctx, user_id, SyncState.ERROR),
        conflict=_count_events(ctx, user_id, SyncState.CONFLICT),
    )
    state = integration.status if integration else IntegrationStatus.DISCONNECTED
    choices = None
    if include_google_calendars and integration is not None and state == IntegrationStatus.CONNECTED:
        try:
            choices = google_calendar_choices(ctx, integration)
        except NeedsReauth:
            return status(ctx, user_id, outcomes=outcomes)
    return StatusResponse(
        user_id=user_id,
        connected=state == IntegrationStatus.CONNECTED,
        status=state.value,
        needs_reauth=state == IntegrationStatus.NEEDS_REAUTH,
        reauth_reason=integration.reauth_reason if integration else None,
        account_email=integration.account_email if integration else None,
        scopes=integration.scopes if integration else [],
        target_calendar_id=integration.target_calendar_id if integration else None,
        calendars=[
            calendar_status(ctx, c, now, outcomes.get(c.calendar_id))
            for c in sorted(calendars, key=lambda c: (not c.is_target, c.calendar_id))
        ],
        events=counts,
        generated_at=now,
        conflict_mode=integration.conflict_mode if integration else "last_write_wins",
        google_calendars=choices,
    )


# --- the renewal + reconcile run --------------------------------------------------------------------------------------
def _field_filter(path: str, op: str, value: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(path, op, value)


def query_due_calendars(ctx: AppContext, field: str, now: dt.datetime, limit: int) -> list[SyncedCalendar]:
    """Enabled calendars whose `field` (renew_due_at / pull_due_at) has passed, oldest first (collection group)."""
    query = (
        ctx.store.db.collection_group(CALENDARS)
        .where(filter=_field_filter("enabled", "==", True))
        .where(filter=_field_filter(field, "<=", now))
        .order_by(field)
        .limit(limit)
    )
    return [SyncedCalendar.model_validate(s.to_dict()) for s in ctx.store.query(query)]


def query_routes_near_expiry(ctx: AppContext, horizon: dt.datetime, limit: int) -> list[ChannelRoute]:
    query = (
        ctx.store.db.collection(CHANNELS)
        .where(filter=_field_filter("state", "==", ChannelState.ACTIVE.value))
        .where(filter=_field_filter("expiration", "<=", horizon))
        .order_by("expiration")
        .limit(limit)
    )
    return [ChannelRoute.model_validate(s.to_dict()) for s in ctx.store.query(query)]


class _Integrations:
    """One integration read per user per run, shared by the worker threads."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._cache: dict[str, Integration | None] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str) -> Integration | None:
        with self._lock:
            if user_id in self._cache:
                return self._cache[user_id]
        integration = self.ctx.store.get_integration(user_id)
        with self._lock:
            self._cache[user_id] = integration
        return integration

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._cache.pop(user_id, None)


class RenewalRun:
    """One cron run: counts in `report`, users needing reauth in `needs_reauth_users`."""

    def __init__(self, ctx: AppContext, *, now: dt.datetime | None = None, deadline_seconds: float | None = None):
        self.ctx = ctx
        self.now = now or ctx.clock()
        self.started = time.monotonic()
        budget = deadline_seconds if deadline_seconds is not None else ctx.settings.renewal_deadline_seconds
        self.deadline = self.started + budget * 0.9  # leave room to answer before the scheduler's attempt deadline
        self.report: collections.Counter[str] = collections.Counter()
        self.needs_reauth_users: set[str] = set()
        self._skipped: set[tuple[str, str]] = set()
        self.integrations = _Integrations(ctx)
        self._lock = threading.Lock()

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.report[key] += n

    # -- per calendar ------------------------------------------------------------------------------------------------
    def _usable(self, cal: SyncedCalendar) -> Integration | None:
        """The connected integration, or None after handling a calendar whose user cannot be served."""
        integration = self.integrations.get(cal.user_id)
        if integration is not None and integration.status == IntegrationStatus.CONNECTED:
            return integration
        if integration is not None and integration.status == IntegrationStatus.NEEDS_REAUTH:
            self._postpone(cal, "needs_reauth")
            return None
        # Disconnected or gone: the calendar should not be enabled at all.
        _disable_calendar(self.ctx, cal, None, reason="integration_disconnected")
        self.count("orphan_calendars_disabled")
        return None

    def _postpone(self, cal: SyncedCalendar, reason: str) -> None:
        with self._lock:
            if (cal.user_id, cal.key) in self._skipped:
                return  # already skipped in this run (due for renewal and for a pull)
            self._skipped.add((cal.user_id, cal.key))
        later = self.now + REAUTH_RECHECK
        fields: dict[str, Any] = {}
        if cal.renew_due_at is not None and cal.renew_due_at <= self.now:
            fields["renew_due_at"] = later
        if cal.pull_due_at is not None and cal.pull_due_at <= self.now:
            fields["pull_due_at"] = later
        if fields:
            self.ctx.store.update_calendar(cal.user_id, cal.key, fields)
        with self._lock:
            self.needs_reauth_users.add(cal.user_id)
        self.count("needs_reauth_skipped")
        log_event(logger, "calendar skipped", user_id=cal.user_id, calendar_id=cal.calendar_id, reason=reason)

    def _reauth(self, cal: SyncedCalendar, exc: NeedsReauth) -> None:
        self.ctx.mark_needs_reauth(cal.user_id, str(exc.detail.get("reason") or "invalid_grant"))
        self.integrations.forget(cal.user_id)
        self._postpone(cal, "needs_reauth")

    def renew_one(self, cal: SyncedCalendar) -> None:
        if self.time_left() <= 0:
            self.count("deferred")
            return
        try:
            integration = self._usable(cal)
            if integration is None:
                return
            lease = channels.acquire_lease(self.ctx, cal.user_id, cal.key, purpose="renewal")
            if not lease.acquired:
                self.count("busy")
                log_event(logger, "renewal skipped: lease held", user_id=cal.user_id, calendar_id=cal.calendar_id)
                return
            try:
                outcome = ensure_channel(self.ctx, integration, cal.key, reason="renewal")
            finally:
                lease.release(self.ctx)
            self.count(outcome)
        except Exception as exc:
            self._failed(cal, exc, counter="renew_failed", what="renewal", record=True)

    def pull_one(self, cal: SyncedCalendar) -> None:
        if self.time_left() <= 0:
            self.count("deferred")
            return
        try:
            if self._usable(cal) is None:
                return
            outcome = request_pull(self.ctx, cal.user_id, cal.calendar_id, reason="stale_sync")
            _pulled(self.ctx, cal, outcome)
            if not pull_succeeded(outcome):
                self.count("pull_failed")
                log_event(
                    logger,
                    "stale pull did not complete",
                    level=logging.WARNING,
                    user_id=cal.user_id,
                    calendar_id=cal.calendar_id,
                    outcome=str(getattr(outcome, "outcome", "")),
                )
                return
            self.count("pulled")
            log_event(logger, "stale calendar pulled", user_id=cal.user_id, calendar_id=cal.calendar_id)
        except Exception as exc:
            self._failed(cal, exc, counter="pull_failed", what="stale pull", record=False)

    def _failed(self, cal: SyncedCalendar, exc: Exception, *, counter: str, what: str, record: bool) -> None:
        """One calendar's work failed: a dead token is needs_reauth; a typed error is counted and logged (and, with
        `record`, kept as the calendar's last error); anything else is a crash, logged with its traceback."""
        if isinstance(exc, NeedsReauth):
            self._reauth(cal, exc)
            return
        self.count(counter)
        fields = {"user_id": cal.user_id, "calendar_id": cal.calendar_id}
        if not isinstance(exc, SyncError):
            logger.exception(f"{what} crashed", exc_info=exc, extra={"fields": fields})
            return
        if record:
            _record_calendar_error(self.ctx, cal, f"{what} failed: {exc.message}")
        log_event(logger, f"{what} failed", level=logging.WARNING, code=exc.code, reason=exc.message, **fields)

    # -- orphans ----------------------------------------------------------------------------------------------------
    def sweep_orphans(self, limit: int) -> None:
        horizon = self.now + dt.timedelta(seconds=self.ctx.settings.renew_before_seconds)
        recent = self.now - dt.timedelta(seconds=channels.LEASE_SECONDS)
        for route in query_routes_near_expiry(self.ctx, horizon, limit):
            if self.time_left() <= 0:
                self.count("deferred")
                continue
            if route.created_at is not None and route.created_at > recent:
                continue  # possibly mid-renewal in a concurrent run: not an orphan yet
            if route.expiration <= self.now:
                channels.stop_route(self.ctx, route.channel_id, reason="expired")
                self.count("routes_expired")
                continue
            cal = self.ctx.store.get_calendar(route.user_id, route.calendar_key)
            if cal is not None and cal.enabled and cal.channel is not None and cal.channel.id == route.channel_id:
                continue  # the calendar's current channel: renewal's business
            integration = self.integrations.get(route.user_id)
            client = None
            if integration is not None and integration.status == IntegrationStatus.CONNECTED:
                try:
                    client = self.ctx.calendar_client(integration)
                except SyncError:
                    client = None
            channels.retire_channel(
                self.ctx,
                client,
                route.channel_id,
                route.resource_id,
                reason="orphan",
                user_id=route.user_id,
                calendar_id=route.calendar_id,
            )
            self.count("orphans_stopped")

    # -- the whole run ----------------------------------------------------------------------------------------------
    def run(self, *, batch_limit: int = DUE_BATCH_LIMIT) -> dict[str, Any]:
        ctx = self.ctx
        ops_before = collections.Counter(ctx.store.ops)
        google_before = google_call_count(ctx)
        renew_due = query_due_calendars(ctx, "renew_due_at", self.now, batch_limit)
        # Calendars without a live channel are re-watched and caught up in the renewal step: no second pull.
        rewatch_keys = {(c.user_id, c.key) for c in renew_due if c.channel is None or c.channel.expiration <= self.now}
        pull_due = [
            c
            for c in query_due_calendars(ctx, "pull_due_at", self.now, batch_limit)
            if (c.user_id, c.key) not in rewatch_keys
        ]
        self.report["renew_due"] = len(renew_due)
        self.report["pull_due"] = len(pull_due)
        log_event(logger, "renewal run started", renew_due=len(renew_due), pull_due=len(pull_due))
        workers = ctx.settings.renewal_concurrency
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="renew") as pool:
            list(pool.map(self.renew_one, renew_due))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pull") as pool:
            list(pool.map(self.pull_one, pull_due))
        pushed: dict[str, int] = {}
        if self.time_left() > 0:
            try:
                pushed = dict(push_due_events(ctx, now=self.now, limit=PUSH_BATCH_LIMIT, deadline=self.deadline))
            except ImportError:
                pushed = {"unavailable": 1}
            except SyncError as exc:
                self.count("push_failed")
                log_event(logger, "push retry failed", level=logging.WARNING, code=exc.code, reason=exc.message)
        swept: dict[str, int] = {}
        if self.time_left() > 0:
            try:
                swept = sweep_unpushed_edits(ctx, now=self.now, limit=PUSH_BATCH_LIMIT, deadline=self.deadline)
            except SyncError as exc:
                self.count("sweep_failed")
                log_event(
                    logger, "unpushed-edit sweep failed", level=logging.WARNING, code=exc.code, reason=exc.message
                )
        if self.time_left() > 0:
            self.sweep_orphans(ORPHAN_BATCH_LIMIT)
        ops = collections.Counter(ctx.store.ops)
        ops.subtract(ops_before)
        result: dict[str, Any] = {
            "ok": True,
            "now": self.now.isoformat(),
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "counts": dict(sorted(self.report.items())),
            "renewed": self.report["renewed"],
            "rewatched": self.report["rewatched"],
            "pulled": self.report["pulled"],
            "deferred": self.report["deferred"],
            "needs_reauth_users": sorted(self.needs_reauth_users),
            "pushed": pushed,
            "swept": swept,
            "firestore": {k: v for k, v in ops.items() if v},
            "google_calls": google_call_count(ctx) - google_before,
        }
        log_event(
            logger,
            "renewal run finished",
            **{k: v for k, v in result.items() if k != "needs_reauth_users"},
            needs_reauth=len(self.needs_reauth_users),
        )
        return result


def google_call_count(ctx: AppContext) -> int:
    """Calendar API calls made through the context's cached clients (token refreshes not included)."""
    with ctx._lock:
        clients = list(ctx._calendar_clients.values())
    return sum(sum(c.calls.values()) for c in clients)


def run_renewal(
    ctx: AppContext,
    *,
    now: dt.datetime | None = None,
    deadline_seconds: float | None = None,
    batch_limit: int = DUE_BATCH_LIMIT,
) -> dict[str, Any]:
    """The cron's work: renew, re-watch, pull stale, push due, stop orphans. Safe to run concurrently."""
    return RenewalRun(ctx, now=now, deadline_seconds=deadline_seconds).run(batch_limit=batch_limit)
