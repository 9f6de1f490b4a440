"""CRM -> Google push: a pure planner (`plan_push`) and an executor (`push_event`, `push_due_events`).

How one CRM write reaches Google exactly once (DESIGN.md invariants 1-4):
- The trigger re-reads the current document; what it carried is used only for a hard-deleted document (oldValue).
- `plan_push` decides from the document alone: content hash equal to `sync.content_hash` -> nothing (this is the echo
  guard for the pull engine's writes AND for our own bookkeeping write, which re-triggers us); otherwise insert (with
  the client-supplied id derived from the CRM id, so a retried insert is a 409 we adopt), patch with `If-Match: etag`,
  patch/cancel an instance of a series, or delete.
- The executor runs the action and writes back ONE update of only `google` and `sync` (plus `purge_at` for
  tombstones) with a `last_update_time` precondition, so a concurrent CRM edit is never clobbered: on
  FailedPrecondition it re-reads, re-plans (carrying the link Google just gave us) and tries again.
- Conflicts (412 on patch/delete, 409 on insert): the current Google event is fetched. If it already holds exactly
  our content we adopt it; if it holds a version *we* pushed earlier (stamp `crmContentHash` in
  extendedProperties.private matches its content) we re-apply without calling it a conflict; otherwise last write
  wins by timestamp (Google's `updated` vs the CRM edit time `updated_at`, ties to the CRM) and the decision is
  recorded in `sync.decisions` either way. A Google deletion (of the event, or of the whole series of an occurrence)
  always wins, as in the pull: the CRM event becomes a tombstone that keeps its link.

sendUpdates (who gets invitation / update / cancellation mails): `"none"` for events imported from Google
(`sync.origin == "google"`: Google already told the guests) and when the CRM wrote `send_updates="none"` on the event
(bulk imports must); else the owner's `Integration.send_updates`, else `settings.send_updates` (env SEND_UPDATES,
default `"all"`, right for interactive CRM edits). Cron re-pushes (`push_due_events`) are delayed retries of an
interactive edit whose mails were never sent, so they use the same rule; adopt-after-409 and conflict re-applies too.

Failures: the Google client already retried transient errors (bounded, jittered). What survives is *recorded* and the
function returns success, the cron re-pushes when due (Eventarc retries are not used for Google errors: one place
controls backoff, no double work):
- transient (5xx, 429, rate-limit 403, transport) -> `sync.state = pending`, attempts+1, jittered exponential
  `next_attempt_at`, `last_error`;
- permanent 4xx -> `sync.state = error` with the reason (visible in status), retried rarely by the cron and at once by
  the next CRM edit;
- dead refresh token -> the integration is marked `needs_reauth`, the event stays `pending`.
`sync.attempted_hash` + `next_attempt_at` stop our own failure bookkeeping write from re-triggering a retry storm.
Firestore errors (StoreUnavailable) propagate: the CloudEvent function fails and Eventarc redelivers.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared.conflict_record import describe as describe_conflict
from shared.errors import (
    DuplicateId,
    GoogleApiError,
    GoogleNotFound,
    GooglePermanentError,
    GoogleTransientError,
    NeedsReauth,
    PreconditionFailed,
)
from shared.logs import log_event
from shared.mapping import (
    apply_google_event,
    content_hash,
    crm_to_google,
    format_rfc3339,
    link_from_google,
    parse_rfc3339,
)
from shared.models import (
    EVENTS,
    ConflictDecision,
    CrmEvent,
    GoogleLink,
    Integration,
    IntegrationStatus,
    SyncInfo,
    SyncState,
    dump_for_firestore,
    google_event_id_for_crm,
)

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.google_api import CalendarClient

logger = logging.getLogger(__name__)

STAMP_KEY = "crmContentHash"  # extendedProperties.private: hash of the content we pushed (<= 44 chars key)
MAX_DECISIONS = 10
MAX_REPLANS = 4  # re-reads after a FailedPrecondition (a concurrent CRM edit) before giving up to the next trigger
MAX_CONFLICT_ROUNDS = 2  # 412 -> decide -> re-apply -> 412 again ... then treat as transient
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
ERROR_RETRY_SECONDS = 6 * 3600.0  # permanent errors: the cron tries again rarely (a new CRM edit retries at once)
REAUTH_RECHECK_SECONDS = 3600.0
TOMBSTONE_RETENTION = dt.timedelta(days=30)
SendUpdates = str  # "all" | "externalOnly" | "none"


# ---------------------------------------------------------------------------------------------------------------------
# Actions (what the planner decides)


@dataclass(frozen=True)
class Insert:
    calendar_id: str  # the owner's target calendar ("primary" only if the account email is unknown)
    event_id: str  # client-supplied, derived from the CRM id (base32hex)
    send_updates: SendUpdates
    kind: str = "insert"


@dataclass(frozen=True)
class Patch:
    calendar_id: str
    event_id: str
    etag: str | None
    send_updates: SendUpdates
    kind: str = "patch"


@dataclass(frozen=True)
class PatchInstance:
    """A CRM-made exception of a recurring series not linked yet: find the instance, then patch (or cancel) it."""

    calendar_id: str
    recurring_event_id: str
    cancel: bool
    send_updates: SendUpdates
    kind: str = "patch_instance"


@dataclass(frozen=True)
class Delete:
    calendar_id: str
    event_id: str
    etag: str | None  # None: unconditional (hard-deleted CRM document, or the CRM deletion won a conflict)
    send_updates: SendUpdates
    hard: bool = False  # the CRM document itself is gone: nothing to write back
    kind: str = "delete"


@dataclass(frozen=True)
class Finalize:
    """A tombstone that never reached Google: no Google call, just mark it synced and schedule its purge."""

    reason: str
    kind: str = "finalize"


@dataclass(frozen=True)
class Defer:
    """Cannot push now without calling Google (no or broken connection): keep the event pending."""

    reason: str
    retry_after: float | None  # seconds until the cron may retry; None: only a reconnect / new edit helps
    kind: str = "defer"


@dataclass(frozen=True)
class Nothing:
    reason: str  # "in sync (echo)", "backoff", "document gone", ...
    kind: str = "nothing"


PushAction = Insert | Patch | PatchInstance | Delete | Finalize | Defer | Nothing


@dataclass
class PushResult:
    """What one push did, for logs, the adapter and the cron's counts."""

    event_id: str
    outcome: str  # pushed | nothing | deferred | failed | conflict
    action: str
    reason: str = ""
    google_writes: int = 0
    wrote_back: bool = False
    decisions: list[ConflictDecision] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------------
# Pure planning


def resolve_calendar_id(integration: Integration) -> str:
    """The owner's chosen target calendar, with "primary" resolved to the account email (the primary calendar's id)."""
    target = integration.target_calendar_id or "primary"
    if target == "primary" and integration.account_email:
        return integration.account_email.lower()
    return target


def resolve_send_updates(
    event: CrmEvent, integration: Integration | None, default: SendUpdates = "all", override: SendUpdates | None = None
) -> SendUpdates:
    """sendUpdates for pushing this event (module docstring: "none" for Google-origin events and bulk imports)."""
    if event.sync.origin == "google":
        return "none"
    if override is not None:
        return override
    if event.send_updates is not None:
        return event.send_updates
    if integration is not None and integration.send_updates is not None:
        return integration.send_updates
    return default


def wire_event(event: CrmEvent) -> CrmEvent:
    """The CRM event as it goes over the wire: a recurring series needs a timeZone on date-time start/end ("UTC")."""
    if not event.recurrence or event.series is not None:
        return event
    update: dict[str, Any] = {}
    for name in ("start", "end"):
        time_value = getattr(event, name)
        if time_value.date_time is not None and not time_value.time_zone:
            update[name] = time_value.model_copy(update={"time_zone": "UTC"})
    return event.model_copy(update=update) if update else event


def google_body(event: CrmEvent, *, for_patch: bool) -> dict[str, Any]:
    """The request body: every synced field, the CRM metadata and our content stamp in extendedProperties.private."""
    wire = wire_event(event)
    body = crm_to_google(wire)
    body["extendedProperties"]["private"][STAMP_KEY] = content_hash(wire)
    if for_patch and event.series is None and not event.recurrence:
        body["recurrence"] = None  # patch keeps omitted fields: clear a recurrence the CRM removed
    return body


def in_backoff(event: CrmEvent, now: dt.datetime) -> bool:
    """A failed push of exactly this content is waiting for its retry time (our failure write must not retry)."""
    sync = event.sync
    return (
        sync.state in (SyncState.PENDING, SyncState.ERROR)
        and sync.attempted_hash is not None
        and sync.attempted_hash == content_hash(event)
        and sync.next_attempt_at is not None
        and sync.next_attempt_at > now
    )


def plan_push(
    event: CrmEvent | None,
    old_value_link: GoogleLink | None,
    integration: Integration | None,
    now: dt.datetime,
    *,
    default_send_updates: SendUpdates = "all",
    send_updates_override: SendUpdates | None = None,
    old_event: CrmEvent | None = None,
) -> PushAction:
    """Decide what one trigger must do, from the current document alone (None: the document was hard-deleted)."""
    if event is None:
        if old_value_link is None:
            return Nothing("document gone and it was never linked to Google")
        if integration is None or integration.status == IntegrationStatus.DISCONNECTED:
            return Nothing("document gone; the owner has no Google connection")
        send = (
            resolve_send_updates(old_event, integration, default_send_updates, send_updates_override)
            if old_event is not None
            else (send_updates_override or integration.send_updates or default_send_updates)
        )
        return Delete(old_value_link.calendar_id, old_value_link.event_id, None, send, hard=True)
    if event.sync.content_hash == content_hash(event):
        return Nothing("in sync (echo of a sync write)")
    if in_backoff(event, now):
        return Nothing("backoff: a failed push of this content is waiting for the cron")
    if integration is None or integration.status == IntegrationStatus.DISCONNECTED:
        if event.deleted and event.google is None:
            return Finalize("tombstone of an event that never reached Google")
        return Defer("the owner has no Google connection", None)
    if integration.status == IntegrationStatus.NEEDS_REAUTH:
        return Defer("needs_reauth: the owner must reconnect Google", REAUTH_RECHECK_SECONDS)
    send = resolve_send_updates(event, integration, default_send_updates, send_updates_override)
    link = event.google
    if event.deleted:
        if link is None:
            return Finalize("tombstone of an event that never reached Google")
        return Delete(link.calendar_id, link.event_id, link.etag, send)
    if event.series is not None and event.status == "cancelled":
        if link is not None:
            return Delete(link.calendar_id, link.event_id, link.etag, send)
        return PatchInstance(resolve_calendar_id(integration), event.series.recurring_event_id, True, send)
    if link is not None:
        return Patch(link.calendar_id, link.event_id, link.etag, send)
    if event.series is not None:
        return PatchInstance(resolve_calendar_id(integration), event.series.recurring_event_id, False, send)
    return Insert(resolve_calendar_id(integration), google_event_id_for_crm(event.id), send)


# ---------------------------------------------------------------------------------------------------------------------
# Conflict helpers (pure)


def _private(google_event: dict[str, Any]) -> dict[str, Any]:
    return (google_event.get("extendedProperties") or {}).get("private") or {}


def google_view(event: CrmEvent, google_event: dict[str, Any], calendar_id: str, now: dt.datetime) -> CrmEvent:
    """The CRM event with Google's content (CRM metadata and the CRM's own series link kept)."""
    viewed = apply_google_event(event, google_event, calendar_id, now)
    if (
        event.series is not None
        and viewed.series is not None
        and viewed.series.recurring_event_id == event.series.recurring_event_id
    ):
        viewed = viewed.model_copy(update={"series": event.series})
    return viewed


def google_has_our_content(event: CrmEvent, google_event: dict[str, Any], calendar_id: str, now: dt.datetime) -> bool:
    """Google already holds exactly the content we want to push (a retried insert, a push that raced ours)."""
    if google_event.get("status") == "cancelled":
        return False
    return content_hash(google_view(event, google_event, calendar_id, now)) == content_hash(wire_event(event))


def google_is_our_version(event: CrmEvent, google_event: dict[str, Any], calendar_id: str, now: dt.datetime) -> bool:
    """Google holds a version we pushed, unchanged since (its content still hashes to our stamp): not a user edit."""
    stamp = _private(google_event).get(STAMP_KEY)
    if not stamp or google_event.get("status") == "cancelled":
        return False
    return content_hash(google_view(event, google_event, calendar_id, now)) == stamp


def crm_edit_time(event: CrmEvent, now: dt.datetime) -> dt.datetime:
    """The CRM side's clock for last-write-wins: the deletion or edit time (unknown -> the trigger time)."""
    if event.deleted and event.deleted_at is not None:
        return event.deleted_at
    return event.updated_at or event.created_at or now


def decide(event: CrmEvent, google_event: dict[str, Any], now: dt.datetime, reason: str) -> ConflictDecision:
    """Last write wins by timestamp; ties go to the CRM (the edit being pushed is the newest intention)."""
    crm_time = crm_edit_time(event, now)
    google_time = parse_rfc3339(google_event.get("updated"))
    winner = "crm" if google_time is None or crm_time >= google_time else "google"
    return ConflictDecision(at=now, winner=winner, reason=reason, crm_updated_at=crm_time, google_updated=google_time)


def deletion_wins(event: CrmEvent, google_event: dict[str, Any], now: dt.datetime, reason: str) -> ConflictDecision:
    """A Google deletion wins over any CRM edit, as in the pull: the outcome must not depend on which function sees
    the deletion first, and a deleted event (or an occurrence of a deleted series) has nothing to push the edit into."""
    return ConflictDecision(
        at=now,
        winner="google",
        reason=f"{reason}; deleted in Google (a deletion wins)",
        crm_updated_at=crm_edit_time(event, now),
        google_updated=parse_rfc3339(google_event.get("updated")),
    )


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Truncated exponential backoff with jitter (between half and all of the step)."""
    step = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return rng.uniform(step / 2, step)


# ---------------------------------------------------------------------------------------------------------------------
# Executor


class _Conflict(Exception):
    """Internal: the conditional write lost again after a decision; retry later."""


@dataclass
class _Done:
    """The outcome of running one action, before write-back."""

    outcome: str
    reason: str = ""
    link: GoogleLink | None = None  # Google's state after our write (None + clear_link: no link)
    clear_link: bool = False
    pushed: bool = False  # Google now holds this event's content: sync.content_hash = content_hash(event)
    tombstone_done: bool = False
    google_writes: int = 0
    replaced: CrmEvent | None = None  # Google won: the whole CRM event is replaced by this one
    decisions: list[ConflictDecision] = field(default_factory=list)


class _Executor:
    def __init__(self, ctx: AppContext, event: CrmEvent, integration: Integration, now: dt.datetime) -> None:
        self.ctx = ctx
        self.event = event
        self.integration = integration
        self.now = now
        self.client: CalendarClient = ctx.calendar_client(integration)
        self.done = _Done(outcome="pushed")

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _log(self, message: str, **fields: Any) -> None:
        log_event(logger, message, user_id=self.event.owner_id, event_id=self.event.id, **fields)

    def _calendar(self, calendar_id: str) -> str:
        if calendar_id != "primary":
            return calendar_id
        entry = self.client.execute(self.client.service.calendars().get(calendarId="primary"))
        return str(entry["id"])

    def _record(self, decision: ConflictDecision, calendar_id: str, google_event: dict[str, Any] | None) -> None:
        """Keep the decision, described for the conflict center (`google_event` None: Google deleted the event)."""
        google = None if google_event is None else google_view(self.event, google_event, calendar_id, self.now)
        decision = describe_conflict(decision, crm=self.event, google=google)
        self.done.decisions.append(decision)
        self._log(
            "push conflict decided",
            calendar_id=calendar_id,
            winner=decision.winner,
            reason=decision.reason,
            crm_updated_at=decision.crm_updated_at,
            google_updated=decision.google_updated,
        )

    def _wrote(self, google_event: dict[str, Any], calendar_id: str) -> None:
        self.done.google_writes += 1
        self.done.link = link_from_google(google_event, calendar_id)
        self.done.pushed = True

    def _deleted_in_google(self, current: dict[str, Any], calendar_id: str) -> bool:
        """A deletion, not a cancelled occurrence of a live series: the event itself, or its whole series, is gone.
        (One extra read, only in the conflict path, only for a cancelled occurrence.)"""
        if current.get("status") != "cancelled":
            return False
        series_id = current.get("recurringEventId")
        if not series_id:
            return True
        try:
            series = self.client.get_event(calendar_id, series_id)
        except GoogleNotFound:
            return True
        return series.get("status") == "cancelled"

    def _take_google(self, google_event: dict[str, Any], calendar_id: str, *, deleted: bool = False) -> None:
        """Google won: the CRM event becomes Google's version. A deletion (`deleted`: of the event or of its whole
        series) becomes a tombstone that keeps its link, as the pull's tombstones do: which Google event was deleted
        stays on record, whichever function saw it first."""
        if deleted:
            link = self.event.google
            if link is not None and link.event_id == google_event.get("id"):
                link = link.model_copy(update={"etag": google_event.get("etag") or link.etag})
            else:
                link = link_from_google(google_event, calendar_id)
            replaced = self.event.model_copy(
                update={
                    "deleted": True,
                    "deleted_at": parse_rfc3339(google_event.get("updated")) or self.now,
                    "google": link,
                    "purge_at": self.now + TOMBSTONE_RETENTION,
                }
            )
        else:
            replaced = google_view(self.event, google_event, calendar_id, self.now)
        replaced.sync = replaced.sync.model_copy(
            update={
                "state": SyncState.SYNCED,
                "content_hash": content_hash(replaced),
                "pulled_at": self.now,
                "last_error": None,
                "last_error_at": None,
                "attempts": 0,
                "next_attempt_at": None,
                "attempted_hash": None,
            }
        )
        self.done.replaced = replaced
        self.done.outcome = "conflict"

    # -- actions ---------------------------------------------------------------------------------------------------
    def run(self, action: PushAction) -> _Done:
        if isinstance(action, Insert):
            self._insert(action)
        elif isinstance(action, Patch):
            self._patch(action.calendar_id, action.event_id, action.etag, action.send_updates)
        elif isinstance(action, PatchInstance):
            self._patch_instance(action)
        elif isinstance(action, Delete):
            self._delete(action)
        return self.done

    def _insert(self, action: Insert) -> None:
        calendar_id = self._calendar(action.calendar_id)
        body = google_body(self.event, for_patch=False)
        body["id"] = action.event_id
        try:
            created = self.client.insert_event(calendar_id, body, send_updates=action.send_updates)
        except DuplicateId:
            # A retried insert (or one whose write-back was lost): the id is ours by construction; adopt it.
            existing = self.client.get_event(calendar_id, action.event_id)
            owner = _private(existing).get("crmEventId")
            if owner not in (None, self.event.id, self.event.meta.crm_event_id):
                raise GooglePermanentError(
                    "the derived Google id belongs to another CRM event", status=409, reason="duplicate"
                ) from None
            self._log("push insert adopted existing Google event", calendar_id=calendar_id)
            self._resolve(existing, calendar_id, action.send_updates, "insert found an existing event (409)")
            return
        self._wrote(created, calendar_id)

    def _patch(self, calendar_id: str, event_id: str, etag: str | None, send_updates: str, rounds: int = 0) -> None:
        body = google_body(self.event, for_patch=True)
        try:
            patched = self.client.patch_event(calendar_id, event_id, body, etag=etag, send_updates=send_updates)
        except PreconditionFailed:
            if rounds >= MAX_CONFLICT_ROUNDS:
                raise _Conflict("Google kept changing the event during the push") from None
            current = self.client.get_event(calendar_id, event_id)
            self._resolve(current, calendar_id, send_updates, "patch etag stale (412)", rounds + 1)
            return
        except GoogleNotFound:
            if self.event.series is not None:
                raise
            # Gone from Google entirely: re-create under the same derived id (a 409 there is adopted).
            self._log("push patch target missing; re-inserting", calendar_id=calendar_id)
            self._insert(Insert(calendar_id, google_event_id_for_crm(self.event.id), send_updates))
            return
        self._wrote(patched, calendar_id)

    def _resolve(
        self, current: dict[str, Any], calendar_id: str, send_updates: str, reason: str, rounds: int = 1
    ) -> None:
        """Google's current version vs ours: adopt, re-apply, or decide by last write wins."""
        if google_has_our_content(self.event, current, calendar_id, self.now):
            self.done.link = link_from_google(current, calendar_id)
            self.done.pushed = True
            return
        if google_is_our_version(self.event, current, calendar_id, self.now):
            self._patch(calendar_id, current["id"], current.get("etag"), send_updates, rounds)
            return
        if self._deleted_in_google(current, calendar_id):
            self._record(deletion_wins(self.event, current, self.now, reason), calendar_id, None)
            self._take_google(current, calendar_id, deleted=True)
            return
        decision = decide(self.event, current, self.now, reason)
        self._record(decision, calendar_id, current)
        if decision.winner == "crm":
            self._patch(calendar_id, current["id"], current.get("etag"), send_updates, rounds)
        else:
            self._take_google(current, calendar_id)

    def _find_instance(self, calendar_id: str, recurring_event_id: str) -> dict[str, Any]:
        assert self.event.series is not None
        original = self.event.series.original_start
        events = self.client.service.events()
        if original.date_time is not None:
            request = events.instances(
                calendarId=calendar_id,
                eventId=recurring_event_id,
                originalStart=format_rfc3339(original.instant()),
                showDeleted=True,
            )
        else:
            day = original.instant()
            request = events.instances(
                calendarId=calendar_id,
                eventId=recurring_event_id,
                timeMin=format_rfc3339(day - dt.timedelta(days=1)),
                timeMax=format_rfc3339(day + dt.timedelta(days=2)),
                showDeleted=True,
            )
        page = self.client.execute(request)
        for item in page.get("items", []):
            start = item.get("originalStartTime") or item.get("start") or {}
            if original.date is not None and start.get("date") == original.date:
                return item
            if (
                original.date_time is not None
                and start.get("dateTime")
                and parse_rfc3339(start["dateTime"]) == original.instant()
            ):
                return item
        raise GoogleNotFound(
            "the series has no instance at the exception's original start", status=404, reason="notFound"
        )

    def _patch_instance(self, action: PatchInstance) -> None:
        calendar_id = self._calendar(action.calendar_id)
        instance = self._find_instance(calendar_id, action.recurring_event_id)
        if action.cancel:
            if instance.get("status") != "cancelled":
                self.client.delete_event(
                    calendar_id, instance["id"], etag=instance.get("etag"), send_updates=action.send_updates
                )
                self.done.google_writes += 1
            self.done.clear_link = True
            self.done.pushed = True
            return
        self._patch(calendar_id, instance["id"], instance.get("etag"), action.send_updates)

    def _delete(self, action: Delete) -> None:
        try:
            self.client.delete_event(
                action.calendar_id, action.event_id, etag=action.etag, send_updates=action.send_updates
            )
        except PreconditionFailed:
            current = self.client.get_event(action.calendar_id, action.event_id)
            if current.get("status") != "cancelled":
                decision = decide(self.event, current, self.now, "delete etag stale (412)")
                self._record(decision, action.calendar_id, current)
                if decision.winner == "google":
                    self._take_google(current, action.calendar_id)
                    return
                self.client.delete_event(
                    action.calendar_id, action.event_id, etag=None, send_updates=action.send_updates
                )
        self.done.google_writes += 1
        self.done.clear_link = True
        self.done.pushed = True
        self.done.tombstone_done = bool(self.event.deleted)


def _merge_carried(event: CrmEvent, carried: tuple[GoogleLink | None, bool, str] | None) -> CrmEvent:
    """After a lost write-back race, re-plan on the re-read document with what Google now holds (if newer)."""
    if carried is None:
        return event
    link, cleared, pushed_hash = carried
    stored = event.google
    if cleared:
        return event.model_copy(
            update={"google": None, "sync": event.sync.model_copy(update={"content_hash": pushed_hash})}
        )
    if link is None:
        return event
    if (
        stored is not None
        and stored.event_id == link.event_id
        and stored.updated
        and link.updated
        and stored.updated >= link.updated
    ):
        return event  # the document already knows a newer (or the same) Google version
    return event.model_copy(
        update={"google": link, "sync": event.sync.model_copy(update={"content_hash": pushed_hash})}
    )


def _success_sync(event: CrmEvent, done: _Done, now: dt.datetime) -> SyncInfo:
    return event.sync.model_copy(
        update={
            "state": SyncState.SYNCED,
            "content_hash": content_hash(event),
            "last_error": None,
            "last_error_at": None,
            "attempts": 0,
            "next_attempt_at": None,
            "attempted_hash": None,
            "pushed_at": now if done.google_writes else event.sync.pushed_at,
            "decisions": [*event.sync.decisions, *done.decisions][-MAX_DECISIONS:],
        }
    )


def _failure_sync(
    event: CrmEvent, state: SyncState, message: str, now: dt.datetime, delay: float | None, *, attempted: bool
) -> SyncInfo:
    return event.sync.model_copy(
        update={
            "state": state,
            "last_error": message[:500],
            "last_error_at": now if attempted or event.sync.last_error != message[:500] else event.sync.last_error_at,
            "attempts": event.sync.attempts + (1 if attempted else 0),
            "next_attempt_at": None if delay is None else now + dt.timedelta(seconds=delay),
            "attempted_hash": content_hash(event),
        }
    )


def _write_fields(
    event: CrmEvent, *, google: GoogleLink | None, sync: SyncInfo, extra: dict[str, Any]
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if google != event.google:
        fields["google"] = dump_for_firestore(google) if google is not None else None
    if sync != event.sync:
        fields["sync"] = dump_for_firestore(sync)
    for key, value in extra.items():
        if getattr(event, key) != value:
            fields[key] = value
    return fields


def push_event(
    ctx: AppContext,
    event_id: str,
    *,
    old_google_link: GoogleLink | None = None,
    old_event: CrmEvent | None = None,
    send_updates: SendUpdates | None = None,
    now: dt.datetime | None = None,
) -> PushResult:
    """Push the current state of `events/{event_id}` to Google: idempotent, order-independent, echo-free.

    `old_event` / `old_google_link` (the trigger's oldValue) are used only when the document no longer exists.
    """
    from google.api_core import exceptions as gexc

    now = now or ctx.clock()
    carried: tuple[GoogleLink | None, bool, str] | None = None
    result = PushResult(event_id=event_id, outcome="nothing", action="nothing")
    for _ in range(MAX_REPLANS):
        try:
            stored, update_time = ctx.store.get_event_snapshot(event_id)
        except ValidationError as exc:
            return _record_invalid_document(ctx, event_id, exc, now, result)
        if stored is None:
            return _push_hard_delete(ctx, event_id, old_event, old_google_link, send_updates, now, result)
        event = _merge_carried(stored, carried)
        integration = ctx.store.get_integration(event.owner_id)
        action = plan_push(
            event,
            None,
            integration,
            now,
            default_send_updates=ctx.settings.send_updates,
            send_updates_override=send_updates,
        )
        result.action = action.kind
        if isinstance(action, Nothing) and event is not stored:
            # We pushed, lost the write-back race, and nothing newer needs pushing: store what Google now holds.
            fields = _write_fields(
                stored, google=event.google, sync=_success_sync(event, _Done("pushed"), now), extra={}
            )
            done = None
            result.outcome, result.reason = "pushed", "stored the link of our push after a concurrent write"
        else:
            fields, done = _execute(ctx, stored, event, integration, action, now, result)
        if not fields:
            return result
        try:
            ctx.store.update_event(event_id, fields, last_update_time=update_time)
        except gexc.FailedPrecondition:
            # A concurrent write (usually a newer CRM edit) landed meanwhile: re-read and re-plan.
            if done is not None and done.pushed and done.replaced is None:
                carried = (done.link, done.clear_link, content_hash(event))
            log_event(
                logger, "push write-back raced a newer write; re-planning", user_id=event.owner_id, event_id=event_id
            )
            continue
        except gexc.NotFound:
            return result  # hard-deleted meanwhile: its own trigger deletes in Google
        result.wrote_back = True
        return result
    result.outcome = "pending"
    result.reason = "the document kept changing; its newest write triggers its own push"
    return result


def _record_invalid_document(
    ctx: AppContext, event_id: str, exc: ValidationError, now: dt.datetime, result: PushResult
) -> PushResult:
    """A CRM document the sync cannot read: say why on the document (`sync.state = error`) and make no Google call.

    Not raised: a failing trigger makes Eventarc redeliver the same poison event for a day. Our own bookkeeping write
    triggers us again; the digest of what was judged invalid (in `sync.attempted_hash`) makes that second look a no-op.
    """
    import hashlib
    import json

    from google.api_core import exceptions as gexc

    ref = ctx.store.event_ref(event_id)
    snapshot = ctx.store.get_document(ref)
    raw = snapshot.to_dict() or {}
    sync = raw.get("sync") if isinstance(raw.get("sync"), dict) else {}
    content = {key: value for key, value in raw.items() if key != "sync"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(document)'}: {error['msg']}" for error in exc.errors()[:5]
    )
    result.outcome, result.action, result.reason = "invalid", "nothing", f"invalid document: {problems}"
    if sync.get("state") == SyncState.ERROR.value and sync.get("attempted_hash") == digest:
        return result
    fields = {
        "sync.state": SyncState.ERROR.value,
        "sync.last_error": result.reason[:1000],
        "sync.last_error_at": now,
        "sync.attempted_hash": digest,
        "sync.next_attempt_at": None,
    }
    try:
        ctx.store.update_event(event_id, fields, last_update_time=snapshot.update_time)
    except (gexc.FailedPrecondition, gexc.NotFound):
        return result  # rewritten or deleted meanwhile: that write triggers its own push
    result.wrote_back = True
    owner = raw.get("owner_id") if isinstance(raw.get("owner_id"), str) else None
    log_event(
        logger,
        "invalid CRM event recorded",
        level=logging.WARNING,
        user_id=owner,
        event_id=event_id,
        reason=result.reason,
    )
    return result


def _execute(
    ctx: AppContext,
    stored: CrmEvent,
    event: CrmEvent,
    integration: Integration | None,
    action: PushAction,
    now: dt.datetime,
    result: PushResult,
) -> tuple[dict[str, Any], _Done | None]:
    """Run one action planned on `event` (= `stored` plus any carried Google state); return the write-back fields
    (a diff against `stored`; empty: nothing to write) and the execution outcome."""
    calendar_id = event.google.calendar_id if event.google else getattr(action, "calendar_id", None)
    if isinstance(action, Nothing):
        result.outcome, result.reason = "nothing", action.reason
        return {}, None
    if isinstance(action, Finalize):
        result.outcome, result.reason = "pushed", action.reason
        sync = _success_sync(event, _Done(outcome="pushed"), now)
        return _write_fields(stored, google=None, sync=sync, extra={"purge_at": now + TOMBSTONE_RETENTION}), None
    if isinstance(action, Defer):
        result.outcome, result.reason = "deferred", action.reason
        delay = action.retry_after
        keep_time = event.sync.next_attempt_at if event.sync.attempted_hash == content_hash(event) else None
        sync = _failure_sync(event, SyncState.PENDING, action.reason, now, delay, attempted=False)
        if keep_time is not None and keep_time > now:
            sync = sync.model_copy(update={"next_attempt_at": keep_time})
        log_event(logger, "push deferred", user_id=event.owner_id, event_id=event.id, reason=action.reason)
        return _write_fields(stored, google=event.google, sync=sync, extra={}), None
    assert integration is not None
    rng = random.Random()
    try:
        executor = _Executor(ctx, event, integration, now)
        done = executor.run(action)
    except NeedsReauth as exc:
        ctx.mark_needs_reauth(integration.user_id, exc.message)
        result.outcome, result.reason = "deferred", f"needs_reauth: {exc.message}"
        sync = _failure_sync(event, SyncState.PENDING, result.reason, now, REAUTH_RECHECK_SECONDS, attempted=True)
        return _write_fields(stored, google=event.google, sync=sync, extra={}), None
    except (GoogleTransientError, _Conflict) as exc:
        detail = f"google {exc.status} {exc.reason}: {exc.message}" if isinstance(exc, GoogleApiError) else str(exc)
        result.outcome, result.reason = "failed", f"transient: {detail}"
        delay = retry_delay(event.sync.attempts + 1, rng)
        sync = _failure_sync(event, SyncState.PENDING, result.reason, now, delay, attempted=True)
        log_event(
            logger,
            "push failed; will retry",
            level=logging.WARNING,
            user_id=event.owner_id,
            event_id=event.id,
            calendar_id=calendar_id,
            reason=result.reason,
            retry_in_s=round(delay),
        )
        return _write_fields(stored, google=event.google, sync=sync, extra={}), None
    except GoogleApiError as exc:
        # Permanent 4xx (and anything else Google refused): visible in status, retried rarely and on the next edit.
        reason = f"google {exc.status} {exc.reason}: {exc.message}".strip()
        result.outcome, result.reason = "failed", reason
        sync = _failure_sync(event, SyncState.ERROR, reason, now, ERROR_RETRY_SECONDS, attempted=True)
        log_event(
            logger,
            "push rejected by Google",
            level=logging.ERROR,
            user_id=event.owner_id,
            event_id=event.id,
            calendar_id=calendar_id,
            status=exc.status,
            reason=exc.reason,
        )
        return _write_fields(stored, google=event.google, sync=sync, extra={}), None
    result.google_writes = done.google_writes
    result.decisions = list(done.decisions)
    if done.replaced is not None:
        replaced = done.replaced
        replaced.sync = replaced.sync.model_copy(update={"decisions": with_decision_list(event.sync, done.decisions)})
        result.outcome, result.reason = "conflict", "Google's version won"
        data = dump_for_firestore(replaced)
        data.pop("id", None)
        return data, done
    result.outcome = "pushed"
    sync = _success_sync(event, done, now)
    google = None if done.clear_link else (done.link or event.google)
    extra: dict[str, Any] = {}
    if done.tombstone_done:
        extra["purge_at"] = now + TOMBSTONE_RETENTION
    log_event(
        logger,
        "pushed to Google",
        user_id=event.owner_id,
        event_id=event.id,
        calendar_id=(google.calendar_id if google else calendar_id),
        action=action.kind,
        google_writes=done.google_writes,
        decisions=[d.winner for d in done.decisions],
    )
    return _write_fields(stored, google=google, sync=sync, extra=extra), done


def with_decision_list(sync: SyncInfo, decisions: list[ConflictDecision]) -> list[ConflictDecision]:
    return [*sync.decisions, *decisions][-MAX_DECISIONS:]


def _push_hard_delete(
    ctx: AppContext,
    event_id: str,
    old_event: CrmEvent | None,
    old_google_link: GoogleLink | None,
    send_updates: SendUpdates | None,
    now: dt.datetime,
    result: PushResult,
) -> PushResult:
    """The CRM document is gone (not a tombstone): delete its Google event, unconditionally, from the old value."""
    link = old_google_link or (old_event.google if old_event is not None else None)
    owner = old_event.owner_id if old_event is not None else None
    integration = ctx.store.get_integration(owner) if owner else None
    action = plan_push(
        None,
        link,
        integration,
        now,
        default_send_updates=ctx.settings.send_updates,
        send_updates_override=send_updates,
        old_event=old_event,
    )
    result.action = action.kind
    if not isinstance(action, Delete):
        result.outcome, result.reason = "nothing", getattr(action, "reason", "")
        return result
    assert integration is not None
    try:
        client = ctx.calendar_client(integration)
        client.delete_event(action.calendar_id, action.event_id, etag=None, send_updates=action.send_updates)
    except NeedsReauth as exc:
        ctx.mark_needs_reauth(integration.user_id, exc.message)
        result.outcome, result.reason = "failed", "needs_reauth; the deletion could not reach Google"
        return result
    except GoogleApiError as exc:
        # No document to record a retry on: fail the function so Eventarc redelivers this deletion.
        log_event(
            logger,
            "hard delete could not reach Google",
            level=logging.ERROR,
            user_id=owner,
            event_id=event_id,
            calendar_id=action.calendar_id,
            status=exc.status,
            reason=exc.reason,
        )
        raise
    result.outcome, result.google_writes = "pushed", 1
    log_event(
        logger,
        "deleted in Google (CRM document hard-deleted)",
        user_id=owner,
        event_id=event_id,
        calendar_id=action.calendar_id,
    )
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Cron entry point (shared/lifecycle.py)


def due_events_query(ctx: AppContext, now: dt.datetime, limit: int) -> Any:
    """pending/error events whose retry time has come (composite index: sync.state, sync.next_attempt_at)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    return (
        ctx.store.db.collection(EVENTS)
        .where(filter=FieldFilter("sync.state", "in", [SyncState.PENDING.value, SyncState.ERROR.value]))
        .where(filter=FieldFilter("sync.next_attempt_at", "<=", now))
        .order_by("sync.next_attempt_at")
        .limit(limit)
    )


def push_due_events(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    """Re-push pending/error events whose `sync.next_attempt_at` <= now, oldest first, until `deadline`.

    `deadline` is a `time.monotonic()` instant (the repo's convention). Returns counts:
    {"due", "pushed", "failed", "deferred", "skipped"} (skipped: nothing left to do, or not reached before deadline).
    """
    counts = {"due": 0, "pushed": 0, "failed": 0, "deferred": 0, "skipped": 0}
    ids = [snapshot.id for snapshot in ctx.store.query(due_events_query(ctx, now, limit))]
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


def release_held_pushes(ctx: AppContext, user_id: str, *, now: dt.datetime) -> int:
    """Make a user's pending events due now (after a reconnect): they were held back while the connection was dead.

    Uses the (owner_id, sync.state) index; one batched write per 500 events; the next cron run pushes them.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        ctx.store.db.collection(EVENTS)
        .where(filter=FieldFilter("owner_id", "==", user_id))
        .where(filter=FieldFilter("sync.state", "==", SyncState.PENDING.value))
    )
    released = 0
    with ctx.store.batch() as batch:
        for snapshot in ctx.store.query(query):
            batch.update(snapshot.reference, {"sync.next_attempt_at": now})
            released += 1
    if released:
        log_event(logger, "held pushes released", user_id=user_id, events=released)
    return released


SWEEP_STATE = ("sync_meta", "push_sweep")  # the sweep's watermark document
SWEEP_OVERLAP = dt.timedelta(minutes=10)  # re-read a little before the watermark: late commits, client clocks
SWEEP_FIRST_WINDOW = dt.timedelta(days=1)


def sweep_unpushed_edits(ctx: AppContext, *, now: dt.datetime, limit: int, deadline: float) -> dict[str, int]:
    """Push CRM edits whose trigger never ran: nothing a CRM user writes is lost if one CloudEvent is.

    Reads only events edited since the last sweep (`updated_at` between the watermark and now − grace, a single-field
    range, no composite index), in pages of `limit`, until done or the deadline: the cost follows the volume of recent
    edits, not the number of events. An edit is pushed when its content differs from what was last synced and that
    content was not already tried (a failed try belongs to the retry queue, `push_due_events`). The watermark moves
    only over what was examined. Concurrent sweeps are harmless: every push is idempotent.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    counts = {"swept": 0, "pushed": 0, "failed": 0, "skipped": 0}
    state_ref = ctx.store.db.collection(SWEEP_STATE[0]).document(SWEEP_STATE[1])
    state = ctx.store.get_document(state_ref)
    watermark = (state.to_dict() or {}).get("watermark") if state.exists else None
    since = watermark - SWEEP_OVERLAP if isinstance(watermark, dt.datetime) else now - SWEEP_FIRST_WINDOW
    until = now - dt.timedelta(seconds=ctx.settings.push_sweep_grace_seconds)
    if until <= since:
        return counts
    base = (
        ctx.store.db.collection(EVENTS)
        .where(filter=FieldFilter("updated_at", ">=", since))
        .where(filter=FieldFilter("updated_at", "<=", until))
        .order_by("updated_at")
    )
    reached, cursor, complete = since, None, False
    while not complete:
        page = list(ctx.store.query((base.start_after(cursor) if cursor is not None else base).limit(limit)))
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
    ctx.store.set_document(state_ref, {"watermark": until if complete else reached, "swept_at": now})
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
