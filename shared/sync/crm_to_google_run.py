"""CRM → Google, the runner: `push_event` runs what crm_to_google_plan.py decides for one CRM write.

How one CRM write reaches Google exactly once (README, invariants 1-4):
- The trigger (functions/crm_trigger.py) re-reads the current document; what it carried is used only for a
  hard-deleted document (oldValue).
- The runner calls Google and writes back ONE update of only `google` and `sync` (plus `purge_at` for tombstones) with
  a `last_update_time` precondition, so a concurrent CRM edit is never clobbered: when it loses, it re-reads, re-plans
  (carrying the link Google just gave it) and tries again (shared/store.py `retry_if_changed`).
- Conflicts (412 on patch/delete, 409 on insert): the current Google event is fetched and `resolve_conflict` says what
  to do (shared/sync/conflict.py merges, then decides); decisions are recorded in `sync.decisions` either way. A merge
  that took fields from Google is written to the CRM first, linked to Google's etag with Google's version as its base
  (as the pull's merge is), and the trigger of that write pushes the CRM's side: Google only ever holds versions the
  CRM holds too, so a push that dies after its Google write cannot make a redelivery undo a merge; "ask me"
  holds a conflict (no Google write; the event stores both versions in `sync.state = conflict`). A Google deletion
  (of the event, or of the whole series of an occurrence) always wins, as in Google → CRM: the CRM event becomes a
  tombstone that keeps its link.

Failures: the Google client already retried transient errors (bounded, jittered). What survives is *recorded* and the
function returns success, the cron re-pushes when due (Eventarc retries are not used for Google errors: one place
controls backoff, no double work):
- transient (5xx, 429, rate-limit 403, transport) -> `sync.state = pending`, attempts+1, jittered exponential
  `next_attempt_at`, `last_error`;
- permanent 4xx -> `sync.state = error` with the reason (visible in status), retried rarely by the cron and at once by
  the next CRM edit;
- dead refresh token -> the integration is marked `needs_reauth` (AppContext.reauth_guard), the event stays `pending`.
`sync.attempted_hash` + `next_attempt_at` stop our own failure bookkeeping write from re-triggering a retry storm.
Firestore errors (StoreUnavailable) propagate: the CloudEvent function fails and Eventarc redelivers.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared.errors import (
    DocumentChanged,
    DocumentMissing,
    DuplicateId,
    GoogleApiError,
    GoogleNotFound,
    GooglePermanentError,
    GoogleTransientError,
    KeptChanging,
    NeedsReauth,
    PreconditionFailed,
)
from shared.gcal.event_types import is_restricted
from shared.gcal.wire import content_hash, format_rfc3339, google_private, link_from_google, parse_rfc3339
from shared.logs import log_event
from shared.models import (
    ConflictDecision,
    CrmEvent,
    GoogleLink,
    Integration,
    SyncInfo,
    SyncState,
    crm_event_id_for_google,
    dump_for_firestore,
    google_event_id_for_crm,
)
from shared.store import retry_if_changed
from shared.sync.conflict import TOMBSTONE_RETENTION, tombstone, with_decision
from shared.sync.conflict_record import describe as describe_conflict
from shared.sync.crm_to_google_plan import (
    REAUTH_RECHECK_SECONDS,
    Defer,
    Delete,
    Finalize,
    Insert,
    Nothing,
    Patch,
    PatchInstance,
    PushAction,
    SendUpdates,
    decide,
    google_body,
    google_view,
    plan_push,
    resolve_conflict,
    retry_delay,
)
from shared.sync.merge import base_of
from shared.sync.restricted_push import is_refusal, plan_restricted

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.gcal.client import CalendarClient

logger = logging.getLogger(__name__)

MAX_CONFLICT_ROUNDS = 2  # 412 -> decide -> re-apply -> 412 again ... then treat as transient
MERGED_PUSH_SAFETY_SECONDS = 60.0  # a merge written to the CRM is due for the cron if its own trigger never pushed it
ERROR_RETRY_SECONDS = 6 * 3600.0  # permanent errors: the cron tries again rarely (a new CRM edit retries at once)


@dataclass
class CrmToGoogleReport:
    """What one push did, for logs, the adapter and the cron's counts."""

    event_id: str
    outcome: str  # pushed | nothing | deferred | failed | conflict
    action: str
    reason: str = ""
    google_writes: int = 0
    wrote_back: bool = False
    decisions: list[ConflictDecision] = field(default_factory=list)


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
    replaced: CrmEvent | None = None  # Google won, a merge, or a hold: the whole CRM event is replaced by this one
    refused: str | None = None  # the change was refused (type / role restriction): why; `replaced` restores it
    decisions: list[ConflictDecision] = field(default_factory=list)


class _CrmToGoogleRun:
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
        if decision.id is None:  # a merge's decision comes described
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
            replaced = tombstone(self.event, self.now, link=link, deleted_at=parse_rfc3339(google_event.get("updated")))
        else:
            replaced = google_view(self.event, google_event, calendar_id, self.now)
        replaced.sync = replaced.sync.model_copy(
            update={
                "state": SyncState.SYNCED,
                "content_hash": content_hash(replaced),
                "base": base_of(replaced),
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
            owner = google_private(existing).get("crmEventId")
            if owner not in (None, self.event.id, self.event.meta.crm_event_id):
                raise GooglePermanentError(
                    "the derived Google id belongs to another CRM event", status=409, reason="duplicate"
                ) from None
            self._log("push insert adopted existing Google event", calendar_id=calendar_id)
            self._resolve(existing, calendar_id, action.send_updates, "insert found an existing event (409)")
            return
        self._wrote(created, calendar_id)

    def _patch(self, calendar_id: str, event_id: str, etag: str | None, send_updates: str, rounds: int = 0) -> None:
        if is_restricted(self.event):
            self._patch_restricted(calendar_id, event_id, send_updates, rounds)
            return
        # Minimal only on the first round: after a conflict, the CRM's whole version is what wins.
        minimal = rounds == 0 and self.event.google is not None and self.event.google.event_id == event_id
        body = google_body(self.event, for_patch=True, minimal=minimal)
        try:
            patched = self.client.patch_event(calendar_id, event_id, body, etag=etag, send_updates=send_updates)
        except GooglePermanentError as exc:
            if not is_refusal(exc, self.event):
                raise
            # Google knows a restriction the CRM copy did not record (e.g. an exception of an invitation's series).
            self._refuse(self.client.get_event(calendar_id, event_id), calendar_id, f"refused by Google: {exc.message}")
            return
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

    def _patch_restricted(self, calendar_id: str, event_id: str, send_updates: str, rounds: int) -> None:
        """A birthday, an event from Gmail or an invitation: send only what Google allows, refuse the rest
        (shared/sync/restricted_push.py). Judged against Google's current copy (one events.get); a copy Google
        changed since our last sync first goes through the conflict rule, as a stale If-Match would."""
        current = self.client.get_event(calendar_id, event_id)
        link = self.event.google
        stale = link is not None and link.event_id == event_id and link.etag and link.etag != current.get("etag")
        if current.get("status") == "cancelled" or (stale and rounds == 0):
            self._resolve(current, calendar_id, send_updates, "Google's copy changed since the last sync", rounds + 1)
            return
        plan = plan_restricted(self.event, current, calendar_id, self.now)
        result = current
        if plan.body is not None:
            try:
                result = self.client.patch_event(
                    calendar_id, event_id, plan.body, etag=current.get("etag"), send_updates=send_updates
                )
            except PreconditionFailed:
                if rounds >= MAX_CONFLICT_ROUNDS:
                    raise _Conflict("Google kept changing the event during the push") from None
                self._patch_restricted(calendar_id, event_id, send_updates, rounds + 1)
                return
            except GooglePermanentError as exc:
                if not is_refusal(exc, plan.google_version):
                    raise
                self._refuse(current, calendar_id, f"refused by Google: {exc.message}")
                return
            self._wrote(result, calendar_id)
        if plan.refusal is not None:
            self._refuse(result, calendar_id, plan.refusal)
            return
        self.done.link = link_from_google(result, calendar_id)
        self.done.pushed = True
        self._log("pushed an allowed change only", calendar_id=calendar_id, fields=list(plan.sent))

    def _refuse(self, google_event: dict[str, Any], calendar_id: str, reason: str) -> None:
        """A CRM change Google cannot take: the CRM copy becomes Google's (CRM metadata kept), `sync.state` error
        with the reason; its content hash is the synced one, so nothing retries it until the next CRM edit."""
        restored = google_view(self.event, google_event, calendar_id, self.now)
        restored.sync = restored.sync.model_copy(
            update={
                "state": SyncState.ERROR,
                "content_hash": content_hash(restored),
                "pulled_at": self.now,
                "last_error": reason[:500],
                "last_error_at": self.now,
                "attempts": 0,
                "next_attempt_at": None,
                "attempted_hash": None,
            }
        )
        self.done.replaced = restored
        self.done.outcome = "refused"
        self.done.refused = reason
        self._log("push refused: a change Google does not allow", level=logging.WARNING, reason=reason)

    def _resolve(
        self, current: dict[str, Any], calendar_id: str, send_updates: str, reason: str, rounds: int = 1
    ) -> None:
        """Google's current version vs ours: crm_to_google_plan.resolve_conflict decides, this carries it out."""
        deleted = self._deleted_in_google(current, calendar_id)
        resolution = resolve_conflict(
            self.event,
            current,
            calendar_id,
            self.now,
            reason,
            deleted_in_google=deleted,
            mode=self.integration.conflict_mode,
        )
        if resolution.decision is not None:
            self._record(resolution.decision, calendar_id, None if resolution.deleted else current)
        if resolution.kind == "adopt":
            self.done.link = link_from_google(current, calendar_id)
            self.done.pushed = True
        elif resolution.kind == "take_google":
            self._take_google(current, calendar_id, deleted=resolution.deleted)
        elif resolution.kind == "hold":
            assert resolution.merged is not None
            assert resolution.google is not None
            self._hold(resolution.merged, resolution.google, current, calendar_id)
        elif resolution.merged is not None and content_hash(resolution.merged) != content_hash(self.event):
            assert resolution.google is not None
            self._merge_into_crm(resolution.merged, resolution.google, current, calendar_id)
        else:
            self._patch(calendar_id, current["id"], current.get("etag"), send_updates, rounds)

    def _merge_into_crm(self, merged: CrmEvent, google: CrmEvent, current: dict[str, Any], calendar_id: str) -> None:
        """A merge that took fields from Google goes into the CRM first, as the pull's merge does; the trigger of that
        write pushes the CRM's side (If-Match Google's etag, a minimal patch against Google's version as the base).

        Why not push the merged event at once: a push that dies between its Google write and its write-back leaves
        Google holding a version we made, which a redelivery re-applies from the CRM's stale copy, and the fields the
        merge took from Google would be lost. Written to the CRM first, every version we write to Google is one the
        CRM already holds. `next_attempt_at` is the safety net: the cron re-pushes it if that trigger never runs."""
        due = self.now + dt.timedelta(seconds=MERGED_PUSH_SAFETY_SECONDS)
        self._keep_in_crm(merged, google, current, calendar_id, SyncState.PENDING, due)
        self.done.reason = "merged with Google's version; the CRM's side is pushed next"

    def _hold(self, held: CrmEvent, google: CrmEvent, current: dict[str, Any], calendar_id: str) -> None:
        """ "Ask me": the CRM event keeps both versions for the user; Google is not written. Its link, hash and base
        become Google's version (what Google holds at that etag), so the push after the user's choice sends exactly
        the CRM's differences, If-Match that etag."""
        self._keep_in_crm(held, google, current, calendar_id, SyncState.CONFLICT, None)
        self.done.reason = "held for the user's choice (ask me)"

    def _keep_in_crm(
        self,
        content: CrmEvent,
        google: CrmEvent,
        current: dict[str, Any],
        calendar_id: str,
        state: SyncState,
        next_attempt_at: dt.datetime | None,
    ) -> None:
        """The CRM event becomes `content`, linked to Google's current version, which is also its synced hash and its
        base: what Google holds at that etag. Google is not written here."""
        replaced = content.model_copy(update={"google": link_from_google(current, calendar_id)})
        replaced.sync = replaced.sync.model_copy(
            update={
                "state": state,
                "content_hash": content_hash(google),
                "base": base_of(google),
                "last_error": None,
                "last_error_at": None,
                "attempts": 0,
                "next_attempt_at": next_attempt_at,
                "attempted_hash": None,
            }
        )
        self.done.replaced = replaced
        self.done.outcome = "conflict"

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


def _kept_refusal(stored: CrmEvent, refusal: tuple[str, str], now: dt.datetime) -> dict[str, Any]:
    """The refusal's record on a document a pull brought to the restored content meanwhile ({}: nothing to keep)."""
    restored_hash, reason = refusal
    if content_hash(stored) != restored_hash or stored.sync.last_error == reason[:500]:
        return {}
    sync = stored.sync.model_copy(
        update={"state": SyncState.ERROR, "last_error": reason[:500], "last_error_at": now, "next_attempt_at": None}
    )
    return {"sync": dump_for_firestore(sync)}


def _success_sync(event: CrmEvent, done: _Done, now: dt.datetime) -> SyncInfo:
    return event.sync.model_copy(
        update={
            "state": SyncState.SYNCED,
            "content_hash": content_hash(event),
            "base": base_of(event),  # both sides now hold this content: the three-way merge's base
            "last_error": None,
            "last_error_at": None,
            "attempts": 0,
            "next_attempt_at": None,
            "attempted_hash": None,
            "pushed_at": now if done.google_writes else event.sync.pushed_at,
            "decisions": with_decision(event.sync.decisions, *done.decisions),
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
) -> CrmToGoogleReport:
    """Push the current state of `events/{event_id}` to Google: idempotent, order-independent, echo-free.

    `old_event` / `old_google_link` (the trigger's oldValue) are used only when the document no longer exists.
    """
    now = now or ctx.clock()
    carried: tuple[GoogleLink | None, bool, str] | None = None
    refusal: tuple[str, str] | None = None  # (restored content hash, reason) of a refusal whose write-back raced
    result = CrmToGoogleReport(event_id=event_id, outcome="nothing", action="nothing")

    def attempt() -> CrmToGoogleReport:
        """Read, plan, run, write back if the document is unchanged (DocumentChanged: run again on a fresh read)."""
        nonlocal carried, refusal
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
        if isinstance(action, Nothing) and refusal is not None and (kept := _kept_refusal(stored, refusal, now)):
            # The notification of our own allowed patch was pulled first: the content is Google's, keep the reason.
            fields, done = kept, None
            result.outcome, result.reason = "refused", refusal[1]
        elif isinstance(action, Nothing) and event is not stored:
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
        except DocumentMissing:
            return result  # hard-deleted meanwhile: its own trigger deletes in Google
        except DocumentChanged:
            # A concurrent write (usually a newer CRM edit) landed meanwhile: re-read and re-plan.
            if done is not None and done.refused is not None and done.replaced is not None:
                refusal = (content_hash(done.replaced), done.refused)
            if done is not None and done.pushed and done.replaced is None:
                carried = (done.link, done.clear_link, content_hash(event))
            log_event(
                logger, "push write-back raced a newer write; re-planning", user_id=event.owner_id, event_id=event_id
            )
            raise
        result.wrote_back = True
        return result

    try:
        return retry_if_changed(attempt, sleep=ctx.sleep, what="push write-back")
    except KeptChanging:
        result.outcome = "pending"
        result.reason = "the document kept changing; its newest write triggers its own push"
        return result


def _record_invalid_document(
    ctx: AppContext, event_id: str, exc: ValidationError, now: dt.datetime, result: CrmToGoogleReport
) -> CrmToGoogleReport:
    """A CRM document the sync cannot read: say why on the document (`sync.state = error`) and make no Google call.

    Not raised: a failing trigger makes Eventarc redeliver the same poison event for a day. Our own bookkeeping write
    triggers us again; the digest of what was judged invalid (in `sync.attempted_hash`) makes that second look a no-op.
    """
    import hashlib
    import json

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
    except DocumentChanged:
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
    result: CrmToGoogleReport,
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
        with ctx.reauth_guard(integration.user_id):
            done = _run_announced(ctx, event, integration, now, action, calendar_id)
    except NeedsReauth as exc:
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
        replaced.sync = replaced.sync.model_copy(
            update={"decisions": with_decision(event.sync.decisions, *done.decisions)}
        )
        result.outcome, result.reason = (
            ("refused", done.refused) if done.refused else ("conflict", done.reason or "Google's version won")
        )
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


def _run_announced(
    ctx: AppContext,
    event: CrmEvent,
    integration: Integration,
    now: dt.datetime,
    action: PushAction,
    calendar_id: str | None,
) -> _Done:
    """Run the action with its notification expected beforehand (shared/sync/echo.py), so the webhook answers our own
    write's echo without a list; the expectation is taken back when no Google write happened."""
    from shared.sync import echo

    expected = echo.expect_write(ctx, integration.user_id, calendar_id)
    try:
        done = _CrmToGoogleRun(ctx, event, integration, now).run(action)
    except BaseException:
        echo.cancel(ctx, expected)
        raise
    if done.google_writes == 0:
        echo.cancel(ctx, expected)
    return done


def owns_google_event(event_id: str, link: GoogleLink) -> bool:
    """True when the Google event's id derives from this CRM id, or this CRM id from the Google event (invariant 1)."""
    return link.event_id == google_event_id_for_crm(event_id) or event_id == crm_event_id_for_google(
        link.calendar_id, link.event_id
    )


def _google_event_names(client: Any, link: GoogleLink, event_id: str) -> bool:
    """True when the Google event carries this CRM id in `extendedProperties.private.crmEventId` (one events.get)."""
    try:
        google_event = client.get_event(link.calendar_id, link.event_id)
    except GoogleNotFound:
        return False
    return google_private(google_event).get("crmEventId") == event_id


def _push_hard_delete(
    ctx: AppContext,
    event_id: str,
    old_event: CrmEvent | None,
    old_google_link: GoogleLink | None,
    send_updates: SendUpdates | None,
    now: dt.datetime,
    result: CrmToGoogleReport,
) -> CrmToGoogleReport:
    """The CRM document is gone (not a tombstone): delete, from the old value, the Google event it owned.

    The old value is only trusted so far: a Google event whose id does not derive from this CRM id (or the reverse) and
    that does not name it in `crmEventId` is left alone and the attempt logged (a forged or stray trigger)."""
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
    assert link is not None
    try:
        with ctx.reauth_guard(integration.user_id):
            client = ctx.calendar_client(integration)
            if not owns_google_event(event_id, link) and not _google_event_names(client, link, event_id):
                log_event(
                    logger,
                    "hard delete refused: the Google event is not this CRM document's",
                    level=logging.WARNING,
                    user_id=owner,
                    event_id=event_id,
                    calendar_id=link.calendar_id,
                    google_event_id=link.event_id,
                )
                result.outcome, result.reason = "nothing", "the old value's Google event is not this CRM document's"
                return result
            client.delete_event(action.calendar_id, action.event_id, etag=None, send_updates=action.send_updates)
    except NeedsReauth:
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


def release_held_pushes(ctx: AppContext, user_id: str, *, now: dt.datetime) -> int:
    """Make a user's pending events due now (after a reconnect): they were held back while the connection was dead.

    Uses the (owner_id, sync.state) index; one batched write per 500 events; the next cron run pushes them.
    """
    released = ctx.store.make_pending_events_due(user_id, now)
    if released:
        log_event(logger, "held pushes released", user_id=user_id, events=released)
    return released
