"""CRM → Google, the pure planner: what one CRM write needs in Google (`plan_push`), and how a conflict is resolved.

No I/O: the runner (shared/sync/crm_to_google_run.py) reads, calls Google and writes back; this module decides.
- `plan_push` decides from the document alone: content hash equal to `sync.content_hash` -> nothing (the echo guard
  for Google → CRM's writes AND for the runner's own bookkeeping write, which re-triggers it); otherwise insert (with
  the client-supplied id derived from the CRM id, so a retried insert is a 409 the runner adopts), patch with
  `If-Match: etag`, patch/cancel an instance of a series, or delete.
- `resolve_conflict`: after a 412 (stale etag) or a 409 (the derived id exists), Google's current version is compared
  with ours: Google already holds exactly our content -> adopt it; it holds a version we pushed earlier (our stamp
  `crmContentHash` in extendedProperties.private matches its content) -> re-apply without calling it a conflict;
  otherwise shared/sync/conflict.py merges, then decides (fields one side changed are taken from it; fields both sides
  changed go to last write wins by clock, ties to the CRM; a Google deletion wins) and the decision is recorded; in
  "ask me" mode a conflict is held for the user instead (no Google write).
- A held event (`conflict.held_for_user`) is not pushed until the user chooses; a CRM deletion still is.

sendUpdates (who gets invitation / update / cancellation mails): `"none"` for events imported from Google
(`sync.origin == "google"`: Google already told the guests) and when the CRM wrote `send_updates="none"` on the event
(bulk imports must); else the owner's `Integration.send_updates`, else `settings.send_updates` (env SEND_UPDATES,
default `"all"`, right for interactive CRM edits). Cron re-pushes are delayed retries of an interactive edit whose
mails were never sent, so they use the same rule; adopt-after-409 and conflict re-applies too.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any, Literal

from shared.gcal.wire import (
    STAMP_KEY,
    apply_google_event,
    content_hash,
    crm_to_google,
    google_private,
    parse_rfc3339,
    wire_event,
)
from shared.models import (
    ConflictDecision,
    CrmEvent,
    GoogleLink,
    Integration,
    IntegrationStatus,
    SyncState,
    google_event_id_for_crm,
)
from shared.sync.conflict import ConflictMode, google_deletion_wins, held_for_user, last_write_wins, merge_then_decide

RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
REAUTH_RECHECK_SECONDS = 3600.0
SendUpdates = str  # "all" | "externalOnly" | "none"

# ---------------------------------------------------------------------------------------------------------------------
# Actions


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


def google_body(event: CrmEvent, *, for_patch: bool, minimal: bool = False) -> dict[str, Any]:
    """The request body: every synced field, the CRM metadata and our content stamp in extendedProperties.private.

    `minimal` (a patch of an event both sides agreed on): only what the CRM changed (shared/sync/minimal_patch.py);
    the stamp then hashes what Google will hold, which keeps its own start/end when they are not sent."""
    wire = wire_event(event)
    body = crm_to_google(wire)
    if for_patch and event.series is None and not event.recurrence:
        body["recurrence"] = None  # patch keeps omitted fields: clear a recurrence the CRM removed
    if for_patch and minimal:
        from shared.sync.minimal_patch import minimal_patch

        partial = minimal_patch(event, body)
        if partial is not None:
            stamped = wire if "start" in partial else event
            partial["extendedProperties"]["private"][STAMP_KEY] = content_hash(stamped)
            return partial
    body["extendedProperties"]["private"][STAMP_KEY] = content_hash(wire)
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
    if event.sync.detached_from:
        return Nothing("linked to a replaced Google account (shared/account/account_switch.py)")
    if held_for_user(event) and not event.deleted:
        return Nothing("held for the user's choice (ask me)")
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
# Conflicts


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
    held = content_hash(google_view(event, google_event, calendar_id, now))
    return held in (content_hash(wire_event(event)), content_hash(event))  # a minimal patch leaves start/end as is


def google_is_our_version(event: CrmEvent, google_event: dict[str, Any], calendar_id: str, now: dt.datetime) -> bool:
    """Google holds a version we pushed, unchanged since (its content still hashes to our stamp): not a user edit."""
    stamp = google_private(google_event).get(STAMP_KEY)
    if not stamp or google_event.get("status") == "cancelled":
        return False
    return content_hash(google_view(event, google_event, calendar_id, now)) == stamp


def decide(event: CrmEvent, google_event: dict[str, Any], now: dt.datetime, reason: str) -> ConflictDecision:
    """shared/sync/conflict.py's last-write-wins rule against this Google version (its `updated`)."""
    return last_write_wins(
        event, parse_rfc3339(google_event.get("updated")), now, crm_reason=reason, google_reason=reason
    )


@dataclass(frozen=True)
class ConflictResolution:
    """What the runner does with Google's current version after its conditional write lost.

    adopt: Google already holds our content; reapply: Google holds a version we pushed, re-apply ours (no conflict);
    push_crm: push `merged` (the CRM's edit merged with Google's, the CRM's values where the CRM won); take_google:
    Google's version is the result (`deleted`: it deleted the event or its series); hold: "ask me" held a conflict,
    `merged` is what the CRM event holds meanwhile (the CRM's values of the conflicting fields), nothing is pushed.
    `google`: Google's version as a CRM event (for push_crm and hold).
    """

    kind: Literal["adopt", "reapply", "push_crm", "take_google", "hold"]
    decision: ConflictDecision | None = None
    deleted: bool = False
    merged: CrmEvent | None = None
    google: CrmEvent | None = None


def resolve_conflict(
    event: CrmEvent,
    current: dict[str, Any],
    calendar_id: str,
    now: dt.datetime,
    reason: str,
    *,
    deleted_in_google: bool,
    mode: ConflictMode = "last_write_wins",
) -> ConflictResolution:
    """Google's current version vs ours (`deleted_in_google`: the event, or its whole series, is deleted there)."""
    if google_has_our_content(event, current, calendar_id, now):
        return ConflictResolution("adopt")
    if google_is_our_version(event, current, calendar_id, now):
        return ConflictResolution("reapply")
    if deleted_in_google:
        google_updated = parse_rfc3339(current.get("updated"))
        decision = google_deletion_wins(event, google_updated, now, f"{reason}; deleted in Google (a deletion wins)")
        return ConflictResolution("take_google", decision, deleted=True)
    google = google_view(event, current, calendar_id, now)
    outcome = merge_then_decide(
        event,
        google,
        parse_rfc3339(current.get("updated")),
        now,
        mode=mode,
        crm_reason=reason,
        google_reason=reason,
        stamp=google_private(current).get(STAMP_KEY),
    )
    if outcome.held:
        return ConflictResolution("hold", outcome.decision, merged=outcome.content, google=google)
    if outcome.google_only:
        return ConflictResolution("take_google", outcome.decision)
    return ConflictResolution("push_crm", outcome.decision, merged=outcome.content, google=google)


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Truncated exponential backoff with jitter (between half and all of the step)."""
    step = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return rng.uniform(step / 2, step)
