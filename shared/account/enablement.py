"""Enable / disable / status per user and calendar, and `ensure_channel` (renew / re-watch one calendar's channel).

Why this shape:
- Every decision is taken on a fresh read of the calendar document while holding its channel lease
  (shared.account.channels), so enable twice, a double-clicked enable and concurrent cron runs converge on one channel.
- A calendar is enabled and due before its channel opens: if anything crashes from there on, the next renewal run
  (shared/account/renewal.py) re-watches it and catches up from the stored sync token.
- Calendars come from Google's calendarList (where calendarList sync would go: `_resolve_calendars`); only calendars
  the user may read can be synced, and only a writable one can receive CRM meetings.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.account import channels
from shared.errors import BadRequest, Conflict, GoogleApiError, NeedsReauth, NotFound, SyncError
from shared.logs import log_event
from shared.models import (
    ImportProgress,
    ImportTypes,
    Integration,
    IntegrationStatus,
    Strict,
    SyncedCalendar,
    SyncState,
    calendar_key,
)
from shared.sync.echo import channel_seems_dead, unanswered_since

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.gcal.client import CalendarClient
    from shared.store import Lease
    from shared.sync.coalesce import PullOutcome

logger = logging.getLogger(__name__)

MAX_CALENDARS_PER_REQUEST = 25
READABLE_ROLES = frozenset({"reader", "writer", "owner"})
WRITABLE_ROLES = frozenset({"writer", "owner"})


# --- request / response models ----------------------------------------------------------------------------------------
CalendarId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class EnableRequest(Strict):
    """POST sync_enable: calendars chosen from calendarList ("primary" allowed); which one receives CRM events."""

    calendar_ids: list[CalendarId] | None = Field(default=None, min_length=1, max_length=MAX_CALENDARS_PER_REQUEST)
    target_calendar_id: CalendarId | None = None
    # How conflicts are decided from now on (unchanged when absent): last write wins, or held for the user.
    conflict_mode: Literal["last_write_wins", "ask_me"] | None = None
    # Which out-of-office, focus-time, working-location and birthday events are imported from now on.
    import_types: ImportTypesChange | None = None


class ImportTypesChange(Strict):
    """sync_enable's `import_types`: which non-meeting event types enter the CRM (absent keys unchanged)."""

    out_of_office: bool | None = None
    focus_time: bool | None = None
    working_location: bool | None = None
    birthday: bool | None = None


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
    # The channel's id, resource id and expiration again, flat, for a settings table.
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
    # How alive the calendar looks (see `_liveness`): ok | quiet | repairing | disabled.
    health: str = "ok"
    last_notification_age_seconds: int | None = None
    last_sync_age_seconds: int | None = None
    # Our oldest write to this calendar that no notification has followed yet (normal for a few seconds).
    awaiting_notification_since: dt.datetime | None = None


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
    offered: bool = False  # syncable and not synced yet: a calendar that appeared (shared/account/calendar_access.py)


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
    import_types: ImportTypes = Field(default_factory=ImportTypes)
    google_calendars: list[GoogleCalendarChoice] | None = None  # only when asked for (one calendarList call)


# --- integration helpers ----------------------------------------------------------------------------------------------
def connected_integration(ctx: AppContext, user_id: str) -> Integration:
    integration = ctx.store.get_integration(user_id)
    if integration is None or integration.status == IntegrationStatus.DISCONNECTED:
        raise Conflict("no Google account is connected; connect one first", user_id=user_id)
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        raise NeedsReauth("the Google connection has expired; connect again", reason=integration.reauth_reason or "")
    return integration


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


def record_calendar_error(ctx: AppContext, cal: SyncedCalendar, message: str) -> None:
    try:
        ctx.store.update_calendar(cal.user_id, cal.key, {"last_error": message[:500], "last_error_at": ctx.clock()})
    except SyncError:
        logger.warning("could not record calendar error", extra={"fields": {"user_id": cal.user_id}})


def after_pull(ctx: AppContext, cal: SyncedCalendar, outcome: PullOutcome) -> None:
    """After a pull: the next stale-sync pull is due a stale period from now.

    The pull writes `pull_due_at` itself in the commit that stores the sync token; this only covers an outcome that
    does not say it did (a queued pull is left to the running one, a failed pull stays due).
    """
    if outcome.ran or outcome.queued or not outcome.succeeded:
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
    with ctx.reauth_guard(user_id):
        client = ctx.calendar_client(integration)
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
        from shared.sync import coalesce  # imported on use: status and disable never load the sync engine

        after_pull(ctx, cal, coalesce.request_pull(ctx, user_id, cal.calendar_id, reason=f"{reason}:catch_up"))
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
    """Initial full import, then events.watch, for each chosen calendar; idempotent (no second channel). A calendar
    already enabled is repaired instead (re-watched and pulled): what a user does when sync looks stuck."""
    integration = connected_integration(ctx, user_id)
    with ctx.reauth_guard(user_id):
        client = ctx.calendar_client(integration)
        entries, primary, wanted = _resolve_calendars(client, request.calendar_ids)
    existing = {c.calendar_id: c for c in ctx.store.list_calendars(user_id)}
    enabled_after = {cid for cid, c in existing.items() if c.enabled} | set(wanted)
    target = _choose_target(request, integration, primary, enabled_after)
    if entries.get(target, {}).get("accessRole") not in WRITABLE_ROLES:
        raise BadRequest("the target calendar must be writable", calendar_id=target)
    if request.conflict_mode is not None and request.conflict_mode != integration.conflict_mode:
        ctx.store.update_integration(user_id, {"conflict_mode": request.conflict_mode, "updated_at": ctx.clock()})
    _store_import_types(ctx, integration, request.import_types)
    outcomes: dict[str, str] = {}
    for calendar_id in wanted:
        outcomes[calendar_id] = _enable_one(ctx, integration, calendar_id, existing.get(calendar_id), target)
    _set_target(ctx, integration, target, {c.calendar_id: c for c in ctx.store.list_calendars(user_id)})
    log_event(logger, "sync enabled", user_id=user_id, outcomes=outcomes, target_calendar_id=target)
    return status(ctx, user_id, outcomes=outcomes)


def _store_import_types(ctx: AppContext, integration: Integration, change: ImportTypesChange | None) -> None:
    """Merge the request's import_types into the stored choice (before the import, so it already applies)."""
    if change is None:
        return
    chosen = integration.import_types.model_copy(update=change.model_dump(exclude_none=True))
    if chosen == integration.import_types:
        return
    switched_on = [key for key, on in chosen.model_dump().items() if on and not getattr(integration.import_types, key)]
    ctx.store.update_integration(integration.user_id, {"import_types": chosen.model_dump(), "updated_at": ctx.clock()})
    integration.import_types = chosen
    if switched_on:
        # Events of a type just switched on exist in Google already: the next pull of each enabled calendar lists
        # everything (a full list reconciles with what is stored, README invariant 2) and brings them in.
        now = ctx.clock()
        with ctx.store.batch() as batch:
            for cal in ctx.store.list_calendars(integration.user_id):
                if cal.enabled:
                    batch.update(
                        ctx.store.calendar_ref(integration.user_id, cal.key), {"sync_token": None, "pull_due_at": now}
                    )
        log_event(logger, "import types switched on; full pull due", user_id=integration.user_id, types=switched_on)


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
        return _repair(ctx, integration, calendar_id, None)
    lease = channels.calendar_lease(ctx, user_id, cal_key, purpose="enable")
    if lease is None:
        return "in_progress"
    try:
        cal = ctx.store.get_calendar(user_id, cal_key)
        if cal is not None and cal.enabled and cal.channel is not None and cal.channel.expiration > now:
            return _repair(ctx, integration, calendar_id, lease)
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
        from shared.sync import coalesce

        try:
            with ctx.reauth_guard(user_id):
                pulled = coalesce.request_pull(ctx, user_id, calendar_id, reason="enable", full=first_import)
            after_pull(ctx, cal, pulled)
        except NeedsReauth:
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
            record_calendar_error(ctx, cal, f"import failed: {exc.message}")
        try:
            with ctx.reauth_guard(user_id):
                outcome = ensure_channel(ctx, integration, cal_key, reason="enable", catch_up=False)
        except NeedsReauth:
            raise
        except GoogleApiError as exc:
            record_calendar_error(ctx, cal, f"watch failed: {exc.message}")
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
        ctx.store.release_lease(lease)


def _repair(ctx: AppContext, integration: Integration, calendar_id: str, lease: Lease | None) -> str:
    """Enable on an enabled calendar: a new channel (unless the current one is minutes old) and a pull
    (shared/account/repair.py): "repaired" or "verified"."""
    from shared.account.repair import repair_calendar

    return repair_calendar(ctx, integration, calendar_id, reason="enable_again", lease=lease)


def disable_calendar(
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


def client_if_possible(ctx: AppContext, user_id: str) -> CalendarClient | None:
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
    client = client_if_possible(ctx, user_id)
    outcomes: dict[str, str] = {}
    for calendar_id in dict.fromkeys(wanted):
        cal = calendars[calendar_id]
        lease = channels.calendar_lease(ctx, user_id, cal.key, purpose="disable")  # busy: disable all the same
        try:
            fresh = ctx.store.get_calendar(user_id, cal.key) or cal
            if not fresh.enabled and fresh.channel is None:
                outcomes[calendar_id] = "already_disabled"
                continue
            disable_calendar(ctx, fresh, client, reason="disable")
            outcomes[calendar_id] = "disabled"
        finally:
            if lease is not None:
                ctx.store.release_lease(lease)
    log_event(logger, "sync disabled", user_id=user_id, outcomes=outcomes)
    return status(ctx, user_id, outcomes=outcomes)


def disable_all(ctx: AppContext, user_id: str, *, reason: str, forget_sync_tokens: bool = False) -> int:
    """Disable every enabled calendar of a user (disconnect, account switch). Returns how many were disabled."""
    client = client_if_possible(ctx, user_id)
    count = 0
    for cal in ctx.store.list_calendars(user_id):
        if cal.enabled or cal.channel is not None or forget_sync_tokens:
            disable_calendar(ctx, cal, client, reason=reason, forget_sync_token=forget_sync_tokens)
            count += 1
    return count


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
    if not cal.enabled and (cal.last_error or "").startswith("access_lost"):
        notices.append("access_lost: Google no longer shows this calendar to the account; sync stopped")
    health = _liveness(cal, now, ctx.settings.stale_sync_seconds, notices)
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
        health=health,
        last_notification_age_seconds=_age(cal.last_notification_at, now),
        last_sync_age_seconds=_age(cal.last_sync_at, now),
        awaiting_notification_since=unanswered_since(cal),
    )


def _age(moment: dt.datetime | None, now: dt.datetime) -> int | None:
    return None if moment is None else max(0, int((now - moment).total_seconds()))


def _liveness(cal: SyncedCalendar, now: dt.datetime, stale_seconds: int, notices: list[str]) -> str:
    """Say when a calendar has gone quiet against expectations (appending notices); its health in one word.

    - repairing: no live channel, or our own write went unannounced past the grace (shared/sync/echo.py): the next
      renewal run re-watches and pulls;
    - quiet: no notification for longer than the stale-calendar period; nothing is known to be wrong (a quiet
      calendar is quiet), and the stale-calendar pull checks for what a silent channel would have missed;
    - ok otherwise; disabled when sync is off.
    """
    if not cal.enabled:
        return "disabled"
    since = unanswered_since(cal)
    heard = cal.last_notification_at or (cal.channel.created_at if cal.channel else None)
    heard_text = heard.isoformat() if heard is not None else "the channel opened"
    if since is not None and channel_seems_dead(cal, now):
        notices.append(
            f"no_notification_since: nothing from Google since {heard_text}, although the sync wrote to this "
            f"calendar at {since.isoformat()}; repairing: the channel will be replaced and the calendar pulled by "
            "the next renewal run"
        )
        return "repairing"
    if cal.channel is None or cal.channel.expiration <= now:
        return "repairing"
    if cal.pull_due_at is not None and cal.pull_due_at <= now - dt.timedelta(seconds=stale_seconds):
        last = cal.last_sync_at.isoformat() if cal.last_sync_at else "never"
        notices.append(f"pull_overdue: last successful pull {last}; the next renewal run pulls it")
    if heard is None or heard <= now - dt.timedelta(seconds=stale_seconds):
        due = cal.pull_due_at.isoformat() if cal.pull_due_at else "the next renewal run"
        notices.append(
            f"quiet: no notification since {heard_text}; a pull at {due} checks for changes a silent channel missed"
        )
        return "quiet"
    return "ok"


def google_calendar_choices(ctx: AppContext, integration: Integration) -> list[GoogleCalendarChoice]:
    """The account's calendar list (one calendarList call); a lost grant marks the integration needs_reauth."""
    with ctx.reauth_guard(integration.user_id):
        entries = ctx.calendar_client(integration).list_calendars()
    synced = {cal.calendar_id for cal in ctx.store.list_calendars(integration.user_id) if cal.enabled}
    choices = [
        GoogleCalendarChoice(
            calendar_id=str(entry["id"]),
            summary=str(entry.get("summaryOverride") or entry.get("summary") or entry["id"]),
            primary=bool(entry.get("primary")),
            access_role=str(entry.get("accessRole") or ""),
            syncable=entry.get("accessRole") in READABLE_ROLES,
            writable=entry.get("accessRole") in WRITABLE_ROLES,
            offered=entry.get("accessRole") in READABLE_ROLES and str(entry["id"]) not in synced,
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
        pending=ctx.store.count_events(user_id, SyncState.PENDING),
        error=ctx.store.count_events(user_id, SyncState.ERROR),
        conflict=ctx.store.count_events(user_id, SyncState.CONFLICT),
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
        import_types=integration.import_types if integration else ImportTypes(),
        google_calendars=choices,
    )
