"""The convergence state machine: random interleavings of CRM and Google edits, lost / duplicated / reordered
notifications, Google faults, 410s, channel loss, crashes between writes and cron runs; then quiescence and the
invariants (both sides agree, nothing lost, no duplicate, no ping-pong, and an edit is lost only to a later edit of the
same field: `concurrent_field_edits` edits different fields of one meeting in the CRM and in Google at once, and what
each side wrote must be on both sides at the end unless a later rule edited that field or someone deleted the event).

What is real: the Firestore emulator, the Google stand-in (the engine talks to it through google-api-python-client),
and the webhook, served by functions-framework over HTTP: every Google-side change makes the stand-in POST a real
notification to it, and it pulls through shared.sync.coalesce. What is in-process, for speed: the Firestore trigger
(Eventarc) is played by calling `push_event(ctx, id)` (CRM -> Google) for every event document whose update time moved
(exactly what Eventarc would deliver; the served CloudEvent adapter is covered by tests/push), and the cron by
calling `shared.account.renewal.run_renewal(ctx)` (the served `renew` function is a thin adapter over it).

Per example: a fresh stand-in (control.reset) and a fresh Firestore project (emulator reset), two CRM users of one
CRM, each with their own Google account: the first with two calendars, the peer with one and every event type
imported, all enabled through `enable` (real channels to the served webhook). The two invite each other (from the CRM
and from Google), so meetings are shared through Google's invitation copies; they answer invitations from the CRM and
from Google; Google users make out-of-office, focus-time, working-location, birthday and Gmail events and split series
("this and following"). Added invariants: no user's data reaches the other user's CRM events or calendar except an
invitation Google shares; an event type the user does not import never enters the CRM; a CRM edit Google refuses for
the type or the user's role is restored, recorded and not retried. Notifications are held by the stand-in and
delivered only by the notification rules, so examples replay deterministically enough to shrink.

A "crash" runs the engine with Firestore commits failing after k of them, in this thread only, until the work
unwinds: the process died between two writes. Eventarc redelivers a crashed push; a crashed pull leaves its lease
to expire (the cron's stale-calendar pull takes over).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from shared.context import AppContext, set_default_context
from shared.gcal.wire import apply_google_event, content_hash, date_times_as_instants
from shared.models import CONTENT_FIELDS, CrmEvent, ImportTypes, SyncedCalendar, dump_for_firestore, utcnow

USER = "conv-user"
EMAIL = "conv@example.com"
# A second CRM user of the same CRM with their own Google account: the two invite each other, so meetings are shared
# (invitation copies with the same iCalUID in both calendars), and no user's data may reach the other's CRM events or
# calendar except through an invitation Google itself shares.
PEER = "conv-peer"
PEER_EMAIL = "peer@example.com"
USERS = {USER: EMAIL, PEER: PEER_EMAIL}
GUEST = "guest@example.com"  # a guest outside the CRM
# Google-made event types (guides/event-types): what each rule creates; the peer imports every type, the first user
# keeps the defaults (working locations and birthdays are not imported).
TYPED_BODIES: dict[str, dict[str, Any]] = {
    "outOfOffice": {
        "summary": "OOO",
        "outOfOfficeProperties": {"autoDeclineMode": "declineNone"},
    },
    "focusTime": {"summary": "Focus", "focusTimeProperties": {"chatStatus": "doNotDisturb"}},
    "workingLocation": {
        "summary": "Home",
        "visibility": "public",
        "transparency": "transparent",
        "workingLocationProperties": {"type": "homeOffice", "homeOffice": {}},
    },
    "birthday": {"summary": "Birthday", "recurrence": ["RRULE:FREQ=YEARLY"]},
    "fromGmail": {"summary": "Flight"},
}
ALL_DAY_TYPES = {"workingLocation", "birthday"}
# What a Google user may edit of each type in Calendar (the rules below edit titles and descriptions only).
GOOGLE_EDITABLE_TYPES = {"default", "outOfOffice", "focusTime"}
RESTRICTED_TYPES = {"birthday", "fromGmail"}  # a CRM edit of these may be refused in part (README, event types)
PEER_IMPORTS = {"out_of_office": True, "focus_time": True, "working_location": True, "birthday": True}
WRITE_METHODS = ("insert", "patch", "update", "delete", "import", "move")
FAULTS = [
    (500, "backendError"),
    (503, "backendError"),
    (429, "rateLimitExceeded"),
    (403, "userRateLimitExceeded"),
    (403, "rateLimitExceeded"),
]
FAULT_METHODS = [
    "*",
    "calendar.events.list",
    "calendar.events.insert",
    "calendar.events.patch",
    "calendar.events.delete",
    "calendar.events.get",
]
TITLES = st.sampled_from(["Demo", "Kickoff", "Review", "Lunch", "Call", "Sync", "Ünïcødé ✓"])
GOOGLE_KEYS = {"title": "summary", "location": "location", "description": "description"}
# (field the CRM edits, field Google edits): the case first (the CRM renames, Google moves the room).
FIELD_PAIRS = [("title", "location"), ("location", "title"), ("description", "title"), ("title", "description")]


class Divergence(AssertionError):
    """An invariant failed after quiescence."""


@dataclass
class Env:
    """What every example shares: the emulator, the stand-in, the served webhook, one Firestore project."""

    emulator: Any
    google: Any  # tests.fixtures.google.GoogleStandin
    webhook_url: str
    project: str = field(default_factory=lambda: f"conv-{uuid.uuid4().hex[:10]}")
    db: Any = None
    examples: int = 0
    divergences: list[str] = field(default_factory=list)
    raise_on_divergence: bool = True  # False: record only (the benchmark counts divergences over N examples)
    stats: dict[str, int] = field(default_factory=dict)
    on_example_done: Any = None  # called after each example's invariants were checked (the soak's progress report)

    def new_project(self) -> str:
        """A fresh Firestore project for the next example (cheaper than resetting the emulator). The finished
        example's documents are deleted: the emulator keeps every project in its heap, about 180 KB an example, which
        a long soak on a smaller machine would run out of."""
        from google.cloud import firestore

        if self.db is not None:
            self.db.close()
            self.emulator.reset(self.project)
        self.project = f"conv-{uuid.uuid4().hex[:10]}"
        self.db = firestore.Client(project=self.project)
        return self.project

    def client(self) -> Any:
        assert self.db is not None
        return self.db


ENV: Env | None = None


class Clock:
    """The engine's clock; `advance` moves the stand-in's clock too (channel expiry, token lifetimes)."""

    def __init__(self, google: Any) -> None:
        self.google = google
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.google.control.advance_clock(seconds)
        self.offset += dt.timedelta(seconds=seconds)


# --- crash injection ------------------------------------------------------------------------------------------------
class Crash(BaseException):
    """The process died (BaseException: no `except Exception` in the engine may swallow it)."""


_crash = threading.local()


def _install_crash_hooks() -> None:
    from google.cloud.firestore_v1 import batch as batch_module
    from google.cloud.firestore_v1 import document as document_module

    if getattr(batch_module.WriteBatch.commit, "_crash_hook", False):
        return
    original_commit = batch_module.WriteBatch.commit
    original_delete = document_module.DocumentReference.delete

    def check() -> None:
        budget = getattr(_crash, "budget", None)
        if budget is None:
            return
        if budget <= 0:
            raise Crash("crashed between two writes")
        _crash.budget = budget - 1

    def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        check()
        return original_commit(self, *args, **kwargs)

    def delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        check()
        return original_delete(self, *args, **kwargs)

    commit._crash_hook = True  # type: ignore[attr-defined]
    batch_module.WriteBatch.commit = commit  # type: ignore[method-assign]
    document_module.DocumentReference.delete = delete  # type: ignore[method-assign]


@contextlib.contextmanager
def crash_after(writes: int) -> Iterator[None]:
    """Firestore writes from this thread fail after `writes` of them, until the block exits (the crash unwinds)."""
    _install_crash_hooks()
    _crash.budget = writes
    try:
        yield
    except Crash:
        pass
    finally:
        _crash.budget = None


# --- Firestore outages ----------------------------------------------------------------------------------------------
_OUTAGE_PROXIES: dict[str, Any] = {}


def _outage_client(env: Env) -> tuple[Any, Any]:
    """The process's fault proxy in front of the example's emulator (infra/firestore_faults.py), and a Firestore
    client of the example's project that talks through it."""
    from google.cloud import firestore

    from infra.firestore_faults import FirestoreFaultProxy

    proxy = _OUTAGE_PROXIES.get(env.emulator.host)
    if proxy is None:
        proxy = _OUTAGE_PROXIES[env.emulator.host] = FirestoreFaultProxy(env.emulator.host).start()
    direct = os.environ["FIRESTORE_EMULATOR_HOST"]
    os.environ["FIRESTORE_EMULATOR_HOST"] = proxy.host
    try:
        return proxy, firestore.Client(project=env.project)
    finally:
        os.environ["FIRESTORE_EMULATOR_HOST"] = direct


# --- invariants -----------------------------------------------------------------------------------------------------
def content_of(event: CrmEvent) -> dict[str, Any]:
    """The synced content compared across sides (the series link is bookkeeping; Google owns attendee flags)."""
    content = event.model_dump(mode="json", include=set(CONTENT_FIELDS) - {"series"})
    date_times_as_instants(content)  # Google re-spells offsets; the instant is the content
    for attendee in content.get("attendees", []):
        attendee.pop("organizer", None)
        attendee.pop("is_self", None)
    return content


def check_convergence(
    ctx: AppContext,
    google: Any,
    calendars: list[str],
    *,
    crm_meta: dict[str, dict[str, Any]],
    must_live_crm: set[str],
    must_live_google: set[tuple[str, str]],
    imported: Any = None,
) -> list[str]:
    """Every invariant, as a list of human-readable divergences (empty: converged). `imported(calendar, item)` says
    whether the calendar's owner imports the item's event type (default: every type)."""
    problems: list[str] = []
    now = ctx.clock()
    docs: dict[str, CrmEvent] = {}
    for snapshot in ctx.store.db.collection("events").stream():
        data = snapshot.to_dict() or {}
        data["id"] = snapshot.id
        docs[snapshot.id] = CrmEvent.model_validate(data)
    raw: dict[tuple[str, str], dict[str, Any]] = {}
    for calendar_id in calendars:
        for item in google.control.raw_events(calendar_id):
            raw[(calendar_id, item["id"])] = item

    linked: dict[tuple[str, str], list[str]] = {}
    for crm_id, event in docs.items():
        if event.google is not None and not event.deleted:
            linked.setdefault((event.google.calendar_id, event.google.event_id), []).append(crm_id)

    # Google -> CRM: every live Google event exactly once, with equal content.
    crm_ids_in_google: dict[str, list[tuple[str, str]]] = {}
    for key, item in raw.items():
        cancelled = item.get("status") == "cancelled"
        holders = linked.get(key, [])
        if cancelled:
            for crm_id in holders:
                if docs[crm_id].status != "cancelled":
                    problems.append(f"Google {key} is deleted/cancelled but CRM {crm_id} is live")
            continue
        if imported is not None and not imported(key[0], item):
            if holders:
                problems.append(f"Google {key} is a {item.get('eventType')} the user does not import, in CRM {holders}")
            continue
        private = (item.get("extendedProperties") or {}).get("private") or {}
        if private.get("crmEventId") and not item.get("recurringEventId"):
            crm_ids_in_google.setdefault(private["crmEventId"], []).append(key)
        if len(holders) != 1:
            problems.append(f"Google {key} ({item.get('summary')!r}) has {len(holders)} live CRM copies: {holders}")
            continue
        event = docs[holders[0]]
        view = apply_google_event(event, item, key[0], now)
        if content_of(view) != content_of(event):
            mine, theirs = content_of(event), content_of(view)
            fields = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
            sync = event.sync
            problems.append(
                f"content differs for CRM {event.id} / Google {key}: {fields} (CRM sync {sync.state}, "
                f"unpushed={sync.content_hash != content_hash(event)}, attempts={sync.attempts}, "
                f"error={sync.last_error!r}, google etag {event.google.etag if event.google else None} "
                f"vs {item.get('etag')})"
            )
        refused = event.sync.state == "error" and (event.sync.last_error or "").startswith("refused:")
        if event.sync.state != "synced" and not refused:  # a refused edit is restored from Google and not retried
            problems.append(f"CRM {event.id} is {event.sync.state} after quiescence: {event.sync.last_error}")
        if refused and (event.event_type not in RESTRICTED_TYPES and event.user_is_organizer):
            problems.append(f"CRM {event.id} was refused although its user organises an unrestricted event")
    for crm_id, keys in crm_ids_in_google.items():
        # A "this and following" split copies the series' private properties into the new series `<id>_R<stamp>`
        # (the least forgiving reading of Google); each part has its own CRM copy (checked above), so one CRM id
        # shared by a series and its splits is Google's copy, not a duplicate we made.
        if len({(calendar_id, event_id.split("_R")[0]) for calendar_id, event_id in keys}) > 1:
            problems.append(f"CRM event {crm_id} exists {len(keys)} times in Google: {keys}")

    # CRM -> Google: every live CRM event is in Google; every CRM deletion is deleted in Google.
    for crm_id, event in docs.items():
        link = event.google
        if event.deleted:
            if link is not None:
                item = raw.get((link.calendar_id, link.event_id))
                if item is not None and item.get("status") != "cancelled":
                    problems.append(f"CRM {crm_id} is deleted but Google {link.event_id} is live")
            continue
        if link is None:
            problems.append(
                f"CRM {crm_id} ({event.title!r}) never reached Google (state {event.sync.state}, "
                f"{event.sync.last_error})"
            )
            continue
        item = raw.get((link.calendar_id, link.event_id))
        if item is None:
            problems.append(f"CRM {crm_id} links to Google {link.event_id}, which does not exist")
        elif item.get("status") == "cancelled" and event.status != "cancelled":
            problems.append(f"CRM {crm_id} is live but Google {link.event_id} is cancelled")

    # Nothing lost: what nobody deleted is still live on both sides; CRM metadata intact.
    for crm_id in must_live_crm:
        event = docs.get(crm_id)
        if event is None or event.deleted:
            problems.append(f"CRM event {crm_id} was lost (nobody deleted it)")
    for key in must_live_google:
        item = raw.get(key)
        if item is None or item.get("status") == "cancelled":
            problems.append(f"Google event {key} was lost (nobody deleted it)")
    for crm_id, meta in crm_meta.items():
        event = docs.get(crm_id)
        if event is None:
            problems.append(f"CRM event {crm_id} document vanished")
            continue
        got = event.meta.model_dump(exclude={"crm_event_id"})
        if got != meta:
            problems.append(f"CRM metadata of {crm_id} changed: {meta} -> {got}")
    return problems


def check_isolation(
    ctx: AppContext, google: Any, calendars_of: dict[str, list[str]], crm_owner: dict[str, str]
) -> list[str]:
    """No user's data reaches another user: a CRM event links only to a calendar of its owner and carries only its
    owner's CRM metadata; a user's calendar holds only events the user made (in Google or through their own CRM
    events) and invitations in which the user is a guest (Google's own sharing, `attendees[].self`)."""
    problems: list[str] = []
    owner_of_calendar = {calendar: user for user, calendars in calendars_of.items() for calendar in calendars}
    owner_of_deal = {f"deal-{crm_id.removeprefix('crm-')}": user for crm_id, user in crm_owner.items()}
    for snapshot in ctx.store.db.collection("events").stream():
        data = snapshot.to_dict() or {}
        owner, link = data.get("owner_id"), data.get("google")
        if link and owner_of_calendar.get(link["calendar_id"]) != owner:
            problems.append(f"CRM {snapshot.id} of {owner} links to {link['calendar_id']}, another user's calendar")
        deal = (data.get("meta") or {}).get("deal_id")
        if deal and owner_of_deal.get(deal, owner) != owner:
            problems.append(f"CRM {snapshot.id} of {owner} carries {deal}, a meeting of {owner_of_deal[deal]}")
    for calendar_id, owner in owner_of_calendar.items():
        for item in google.control.raw_events(calendar_id):
            if item.get("status") == "cancelled" or item.get("recurringEventId"):
                continue
            private = (item.get("extendedProperties") or {}).get("private") or {}
            crm_id = private.get("crmEventId")
            if crm_id and crm_owner.get(crm_id, owner) != owner:
                problems.append(f"Google {calendar_id}/{item['id']} carries {crm_id} of {crm_owner[crm_id]}")
            if (item.get("organizer") or {}).get("self"):
                continue
            if not any(a.get("self") for a in item.get("attendees") or []):
                problems.append(f"Google {calendar_id}/{item['id']} is someone else's event without inviting {owner}")
    return problems


def check_field_edits(ctx: AppContext, google: Any, field_edits: dict[tuple[str, str, str], str]) -> list[str]:
    """An edit is lost only to a later edit of the same field: every concurrent edit no later rule superseded is on
    both sides, unless the meeting was deleted (a deletion wins, the existing rule). Fields both sides edited before
    syncing are left out by the caller: the conflict rule decides those by the meeting's clocks."""
    problems: list[str] = []
    docs: dict[tuple[str, str], CrmEvent] = {}
    for snapshot in ctx.store.db.collection("events").stream():
        data = snapshot.to_dict() or {}
        data["id"] = snapshot.id
        event = CrmEvent.model_validate(data)
        if event.google is not None and not event.deleted:
            docs[(event.google.calendar_id, event.google.event_id)] = event
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for calendar_id in {key[0] for key in field_edits}:
        for item in google.control.raw_events(calendar_id):
            items[(calendar_id, item["id"])] = item
    for (calendar_id, event_id, name), value in sorted(field_edits.items()):
        event, item = docs.get((calendar_id, event_id)), items.get((calendar_id, event_id))
        if event is None or item is None or item.get("status") == "cancelled" or event.status == "cancelled":
            continue  # deleted on one side: the deletion rule decides
        in_crm, in_google = getattr(event, name), item.get(GOOGLE_KEYS[name])
        if in_crm != value or in_google != value:
            problems.append(
                f"the edit {name}={value!r} of {event.id} / Google {event_id} was lost without a later edit of "
                f"{name}: CRM {in_crm!r}, Google {in_google!r}"
            )
    return problems


def google_writes(counters: dict[str, Any]) -> int:
    by_method = counters.get("by_method", {})
    return sum(by_method.get(f"calendar.events.{m}", 0) for m in WRITE_METHODS)


# --- the machine ----------------------------------------------------------------------------------------------------
class SyncMachine(RuleBasedStateMachine):
    """Two CRM users, three synced calendars (each primary receives its user's CRM events); see the module
    docstring."""

    def __init__(self) -> None:
        super().__init__()
        assert ENV is not None, "call tests.convergence.machine.bind(env) first"
        self.env = ENV
        self.google = ENV.google
        self.control = ENV.google.control
        self.ctx: AppContext | None = None
        self.calendars: list[str] = []
        self.crm_meta: dict[str, dict[str, Any]] = {}
        self.crm_deleted: set[str] = set()  # CRM ids deleted by a CRM rule
        self.trace: list[str] = []  # this example's rule steps (after the seeded setup)
        self.unsettled: list[str] = []  # deliveries the harness saw still in flight when it went on
        self.google_deleted: set[tuple[str, str]] = set()  # Google events deleted by a Google rule
        self.google_created: set[tuple[str, str]] = set()
        self.series: list[tuple[str, str, list[str]]] = []  # (calendar, series id, instance ids)
        self.triggered: dict[str, Any] = {}  # event id -> update time already delivered to push_event
        self.redeliver: set[str] = set()
        self.crm_changes = 0
        self.n = 0
        # (calendar, Google id, CRM field) -> the value a concurrent edit wrote; dropped when a later rule edits it.
        self.field_edits: dict[tuple[str, str, str], str] = {}
        # Which side made each recorded field edit; a field the two sides both edited before either edit could sync
        # is "contested": the conflict rule decides it by the event's clocks (Google gives no per-field edit times),
        # so its loser is not a lost edit; both sides must still agree (the general invariants check that).
        self.field_edit_side: dict[tuple[str, str, str], str] = {}
        self.contested_fields: set[tuple[str, str, str]] = set()
        self.calendars_of: dict[str, list[str]] = {}  # CRM user -> their synced calendars
        self.crm_owner: dict[str, str] = {}  # CRM id made by a CRM rule -> its owner

    # -- setup ---------------------------------------------------------------------------------------------------
    @initialize()
    def setup(self) -> None:
        from shared.account import enablement
        from tests.fixtures.sync import connect_user, make_settings

        env = self.env
        self.control.reset()
        if os.environ.get("CONVERGENCE_FULL_CANCELLED"):
            # Exploration aid: cancelled items keep their properties (the stand-in's UNCONFIRMED switch).
            self.control.set_options(minimal_cancelled=False)
        self.clock = Clock(self.google)
        settings = make_settings(env.new_project(), self.google, webhook_url=env.webhook_url, google_max_retries=3)
        self.ctx = AppContext.create(settings, env.client(), clock=self.clock)
        set_default_context(self.ctx)
        self.control.create_account(EMAIL)
        self.control.create_account(PEER_EMAIL)
        secondary = self.control.create_calendar(EMAIL, "Team")["id"]
        self.calendars = [EMAIL, secondary, PEER_EMAIL]
        self.calendars_of = {USER: [EMAIL, secondary], PEER: [PEER_EMAIL]}
        # A small synced world, so every rule has something to act on: one Google event per calendar of the first
        # user (one with a guest) and a daily series in their primary calendar, a meeting the peer organises in
        # Google inviting the first user (imported by enable's full sync on both sides), then two CRM meetings of
        # the first user (one with a guest) and one of the peer inviting the first user, pushed, and their
        # notifications delivered.
        self.google_create(0, "Seed", 3, False, True)
        self.google_create(1, "Seed", 4, True, False)
        self.google_recurring_create(0, "Seed", 0)
        self.google_create(2, "Seed shared", 5, False, False, peer=True)
        connect_user(self.ctx, self.google, USER, EMAIL)
        connect_user(self.ctx, self.google, PEER, PEER_EMAIL)
        enablement.enable(self.ctx, USER, enablement.EnableRequest(calendar_ids=[EMAIL, secondary]))
        enablement.enable(
            self.ctx,
            PEER,
            enablement.EnableRequest(
                calendar_ids=[PEER_EMAIL], import_types=enablement.ImportTypesChange(**PEER_IMPORTS)
            ),
        )
        self.crm_create("Seed", 1, 10, False, True)
        self.crm_create("Seed all-day", 2, 10, True, False)
        self.crm_create("Seed shared", 3, 11, False, False, owner=1, peer=True)
        self.control.flush(timeout=20)
        self.deliver_triggers()
        self.control.configure_push(hold=True)
        self.crm_changes = 0
        self.env.stats.clear() if self.env.examples == 0 else None
        self.writes_at_start = google_writes(self.control.counters())
        self.env.examples += 1
        self.trace = []

    # -- helpers -------------------------------------------------------------------------------------------------
    def _step(self, rule_name: str, arguments: dict[str, Any]) -> None:
        """Count the rule and keep it in this example's trace: a divergence found without shrinking (the soak) still
        says which steps led to it."""
        self.env.stats[rule_name] = self.env.stats.get(rule_name, 0) + 1
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items() if k != "self")
        self.trace.append(f"{rule_name}({shown})")

    def _now(self) -> dt.datetime:
        return self.clock()

    def _live_docs(self) -> list[CrmEvent]:
        assert self.ctx is not None
        found = []
        for snapshot in self.ctx.store.db.collection("events").stream():
            data = snapshot.to_dict() or {}
            data["id"] = snapshot.id
            event = CrmEvent.model_validate(data)
            if not event.deleted and event.status != "cancelled":
                found.append(event)
        return sorted(found, key=lambda e: e.id)

    def _live_google(self) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for calendar_id in self.calendars:
            for item in self.control.raw_events(calendar_id):
                if item.get("status") != "cancelled":
                    found.append((calendar_id, item))
        return sorted(found, key=lambda x: (x[0], x[1]["id"]))

    @staticmethod
    def _other_email(user: str) -> str:
        return PEER_EMAIL if user == USER else EMAIL

    def _owner_of(self, calendar_id: str) -> str:
        return next(user for user, calendars in self.calendars_of.items() if calendar_id in calendars)

    def _imported(self, calendar_id: str, item: dict[str, Any]) -> bool:
        """Whether the calendar's owner imports the item's event type (the peer chose every type)."""
        chosen = ImportTypes(**PEER_IMPORTS) if self._owner_of(calendar_id) == PEER else ImportTypes()
        return chosen.imports(item.get("eventType", "default"))

    def _organised(self) -> list[tuple[str, dict[str, Any]]]:
        """Live Google events (not occurrences) the calendar's owner organises: what a Google user may edit."""
        return [
            (calendar_id, item)
            for calendar_id, item in self._live_google()
            if not item.get("recurringEventId") and (item.get("organizer") or {}).get("self")
        ]

    def _push(self, event_id: str) -> None:
        from shared.sync.crm_to_google_run import push_event

        assert self.ctx is not None
        push_event(self.ctx, event_id)

    def deliver_triggers(self, rounds: int = 6) -> None:
        """Eventarc: every event document whose update time moved is pushed (until nothing moves: bounded)."""
        assert self.ctx is not None
        for _ in range(rounds):
            # Names and update times only (an empty projection): Eventarc looks at what moved, not at the data.
            moved = [
                (event_id, update_time)
                for event_id, update_time in self._update_times().items()
                if self.triggered.get(event_id) != update_time or event_id in self.redeliver
            ]
            if not moved:
                return
            for event_id, update_time in moved:
                self.triggered[event_id] = update_time
                self.redeliver.discard(event_id)
                self._push(event_id)
        raise Divergence(f"the push trigger kept firing after {rounds} rounds (ping-pong)")

    def _times(self, day: int, hour: int, all_day: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        date = dt.date(2027, 3, 1) + dt.timedelta(days=day)
        if all_day:
            return {"date": date.isoformat()}, {"date": (date + dt.timedelta(days=1)).isoformat()}
        start = dt.datetime.combine(date, dt.time(hour), tzinfo=dt.UTC)
        return ({"date_time": start.isoformat()}, {"date_time": (start + dt.timedelta(hours=1)).isoformat()})

    # -- CRM rules -----------------------------------------------------------------------------------------------
    @rule(
        title=TITLES,
        day=st.integers(0, 20),
        hour=st.integers(6, 18),
        all_day=st.booleans(),
        guest=st.booleans(),
        owner=st.integers(0, 1),
        peer=st.booleans(),
    )
    def crm_create(
        self, title: str, day: int, hour: int, all_day: bool, guest: bool, owner: int = 0, peer: bool = False
    ) -> None:
        """A CRM user makes a meeting (`guest`: with an outside guest; `peer`: inviting the other CRM user, whose
        Google calendar then holds an invitation copy that their own sync imports)."""
        self._step("crm_create", locals())
        assert self.ctx is not None
        self.n += 1
        crm_id = f"crm-{self.n}"
        user = list(USERS)[owner]
        start, end = self._times(day, hour, all_day)
        meta = {"deal_id": f"deal-{self.n}", "company_id": "acme", "quote_id": None, "kind": "demo"}
        attendees = [{"email": GUEST}] if guest else []
        if peer:
            attendees.append({"email": self._other_email(user)})
        event = CrmEvent.model_validate(
            {
                "id": crm_id,
                "owner_id": user,
                "title": title,
                "start": start,
                "end": end,
                "meta": meta,
                "attendees": attendees,
                "created_at": self._now(),
                "updated_at": self._now(),
            }
        )
        self.ctx.store.save_event(event)
        self.crm_meta[crm_id] = meta
        self.crm_owner[crm_id] = user
        self.crm_changes += 1
        self.deliver_triggers()

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), title=TITLES, move=st.booleans(), day=st.integers(0, 20))
    def crm_edit(self, pick: int, title: str, move: bool, day: int) -> None:
        self._step("crm_edit", locals())
        docs = self._live_docs()
        if not docs:
            return
        event = docs[pick % len(docs)]
        fields: dict[str, Any] = {"title": f"{title} (crm)", "updated_at": self._now()}
        if move and event.series is None and not event.recurrence:
            start, end = self._times(day, 9, event.start.is_all_day)
            fields["start"], fields["end"] = start, end
        assert self.ctx is not None
        self.ctx.store.update_event(event.id, fields)
        self._superseded(event, *(name for name in fields if name != "updated_at"))
        self.crm_changes += 1
        self.deliver_triggers()

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50))
    def crm_delete(self, pick: int) -> None:
        self._step("crm_delete", locals())
        docs = [d for d in self._live_docs() if d.series is None]
        if not docs:
            return
        event = docs[pick % len(docs)]
        assert self.ctx is not None
        now = self._now()
        self.ctx.store.update_event(event.id, {"deleted": True, "deleted_at": now, "updated_at": now})
        self.crm_deleted.add(event.id)
        self.crm_changes += 1
        self.deliver_triggers()

    # -- Google rules --------------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctx is not None)
    @rule(
        cal=st.integers(0, 2),
        title=TITLES,
        day=st.integers(0, 20),
        all_day=st.booleans(),
        guest=st.booleans(),
        peer=st.booleans(),
    )
    def google_create(self, cal: int, title: str, day: int, all_day: bool, guest: bool, peer: bool = False) -> None:
        """A Google user makes an event (`peer`: inviting the other CRM user, who gets an invitation copy)."""
        self._step("google_create", locals())
        start, end = self._times(day, 14, all_day)
        body: dict[str, Any] = {
            "summary": f"{title} (google)",
            "start": {"date": start["date"]} if all_day else {"dateTime": start["date_time"]},
            "end": {"date": end["date"]} if all_day else {"dateTime": end["date_time"]},
        }
        attendees = [{"email": GUEST}] if guest else []
        if peer:
            attendees.append({"email": self._other_email(self._owner_of(self.calendars[cal]))})
        if attendees:
            body["attendees"] = attendees
        created = self.control.create_event(self.calendars[cal], body)
        self.google_created.add((self.calendars[cal], created["id"]))

    @precondition(lambda self: self.ctx is not None)
    @rule(
        user=st.integers(0, 1),
        kind=st.sampled_from(sorted(TYPED_BODIES)),
        day=st.integers(0, 20),
    )
    def google_typed_create(self, user: int, kind: str, day: int) -> None:
        """The Google user makes an out-of-office, focus-time, working-location, birthday or Gmail event in their
        primary calendar: each becomes what the README's event-type table says, or nothing when not imported."""
        self._step("google_typed_create", locals())
        calendar_id = list(USERS.values())[user]
        all_day = kind in ALL_DAY_TYPES
        start, end = self._times(day, 7, all_day)
        body: dict[str, Any] = {
            **TYPED_BODIES[kind],
            "eventType": kind,
            "start": {"date": start["date"]} if all_day else {"dateTime": start["date_time"]},
            "end": {"date": end["date"]} if all_day else {"dateTime": end["date_time"]},
        }
        created = self.control.create_event(calendar_id, body)
        self.google_created.add((calendar_id, created["id"]))

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), title=TITLES, describe=st.booleans())
    def google_edit(self, pick: int, title: str, describe: bool) -> None:
        self._step("google_edit", locals())
        live = [x for x in self._organised() if x[1].get("eventType", "default") in GOOGLE_EDITABLE_TYPES]
        if not live:
            return
        calendar_id, item = live[pick % len(live)]
        patch: dict[str, Any] = {"summary": f"{title} (g-edit)"}
        if describe:
            patch["description"] = f"notes {self.n}"
        self.control.edit_event(calendar_id, item["id"], patch)
        for name in ("title", "description") if describe else ("title",):
            self._forget_field_edit((calendar_id, item["id"], name), "google")

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50))
    def google_delete(self, pick: int) -> None:
        self._step("google_delete", locals())
        live = [x for x in self._live_google() if not x[1].get("recurringEventId")]
        if not live:
            return
        calendar_id, item = live[pick % len(live)]
        self.delete_in_google(calendar_id, item["id"])

    def delete_in_google(self, calendar_id: str, event_id: str) -> None:
        """The Google user deletes an event (recorded: what it takes from the CRM was deleted by someone)."""
        self.control.delete_event(calendar_id, event_id)
        self.google_deleted.add((calendar_id, event_id))

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), answer=st.sampled_from(["accepted", "declined", "tentative"]))
    def google_reply(self, pick: int, answer: str) -> None:
        """The outside guest answers an invitation (the organiser's event changes)."""
        self._step("google_reply", locals())
        live = [x for x in self._organised() if any(a.get("email") == GUEST for a in x[1].get("attendees", []))]
        if not live:
            return
        calendar_id, item = live[pick % len(live)]
        self.control.reply(calendar_id, item["id"], GUEST, answer)

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), answer=st.sampled_from(["accepted", "declined", "tentative"]))
    def google_guest_answers(self, pick: int, answer: str) -> None:
        """A CRM user answers, in Google Calendar, an invitation the other CRM user sent (their own copy changes,
        and through Google the organiser's event)."""
        self._step("google_guest_answers", locals())
        invitations = [
            (calendar_id, item)
            for calendar_id, item in self._live_google()
            if calendar_id in USERS.values()
            and not item.get("recurringEventId")
            and not (item.get("organizer") or {}).get("self")
        ]
        if not invitations:
            return
        calendar_id, item = invitations[pick % len(invitations)]
        self.control.reply(calendar_id, item["id"], calendar_id, answer)

    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), answer=st.sampled_from(["accepted", "declined", "tentative"]))
    def crm_rsvp(self, pick: int, answer: str) -> None:
        """A CRM user answers an invitation from the CRM: their own attendee entry's response (README, invitations)."""
        self._step("crm_rsvp", locals())
        assert self.ctx is not None
        invitations = [
            d
            for d in self._live_docs()
            if not d.user_is_organizer and d.google is not None and any(a.is_self for a in d.attendees)
        ]
        if not invitations:
            return
        event = invitations[pick % len(invitations)]
        attendees = [a.model_dump(mode="json") for a in event.attendees]
        for attendee in attendees:
            if attendee.get("is_self"):
                attendee["response_status"] = answer
        self.ctx.store.update_event(event.id, {"attendees": attendees, "updated_at": self._now()})
        self.crm_changes += 1
        self.deliver_triggers()

    @precondition(lambda self: self.ctx is not None)
    @rule(cal=st.integers(0, 2), title=TITLES, day=st.integers(0, 10))
    def google_recurring_create(self, cal: int, title: str, day: int) -> None:
        self._step("google_recurring_create", locals())
        start = dt.datetime.combine(dt.date(2027, 4, 1) + dt.timedelta(days=day), dt.time(8), tzinfo=dt.UTC)
        body = {
            "summary": f"{title} (series)",
            "start": {"dateTime": start.isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
            "end": {"dateTime": (start + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z"), "timeZone": "UTC"},
        }
        created = self.control.create_recurring_event(self.calendars[cal], body, "RRULE:FREQ=DAILY;COUNT=4")
        instances = [f"{created['id']}_{(start + dt.timedelta(days=i)).strftime('%Y%m%dT%H%M%SZ')}" for i in range(4)]
        self.series.append((self.calendars[cal], created["id"], instances))
        self.google_created.add((self.calendars[cal], created["id"]))

    @precondition(lambda self: self.ctx is not None and bool(self.series))
    @rule(pick=st.integers(0, 50), which=st.integers(0, 3), cancel=st.booleans(), title=TITLES)
    def google_recurring_exception(self, pick: int, which: int, cancel: bool, title: str) -> None:
        self._step("google_recurring_exception", locals())
        calendar_id, series_id, instances = self.series[pick % len(self.series)]
        if (calendar_id, series_id) in self.google_deleted or which >= len(instances):
            return  # deleted, or that instance now belongs to a split-off series
        instance = instances[which]
        try:
            if cancel:
                self.control.cancel_instance(calendar_id, instance)
            else:
                self.control.modify_instance(calendar_id, instance, {"summary": f"{title} (exception)"})
        except Exception as exc:  # the series may have been deleted from the CRM side meanwhile
            if "404" not in str(exc) and "410" not in str(exc):
                raise

    @precondition(lambda self: self.ctx is not None and bool(self.series))
    @rule(pick=st.integers(0, 50), which=st.integers(1, 3), title=TITLES)
    def google_split_series(self, pick: int, which: int, title: str) -> None:
        """The Google user edits "this and following" of a series: the original ends before the chosen instance and
        a new series `<id>_R<stamp>` starts there with the edit (the CRM has never seen it)."""
        self._step("google_split_series", locals())
        calendar_id, series_id, instances = self.series[pick % len(self.series)]
        if (calendar_id, series_id) in self.google_deleted or which >= len(instances):
            return
        try:
            created = self.control.split_series(
                calendar_id, series_id, instances[which], {"summary": f"{title} (following)"}
            )
        except Exception as exc:  # the series or that instance may be gone (deleted from either side)
            if "404" not in str(exc) and "410" not in str(exc) and "400" not in str(exc):
                raise
            return
        if created["id"] == series_id:
            return  # split at the first instance: the whole series was edited
        self.series[pick % len(self.series)] = (calendar_id, series_id, instances[:which])
        self.series.append(
            (calendar_id, created["id"], [f"{created['id']}_{i.rsplit('_', 1)[1]}" for i in instances[which:]])
        )
        self.google_created.add((calendar_id, created["id"]))

    @precondition(lambda self: self.ctx is not None)
    @rule(
        pick=st.integers(0, 50),
        fields=st.sampled_from(FIELD_PAIRS),
        order=st.sampled_from(["push_first", "pull_first", "later"]),
        title=TITLES,
    )
    def concurrent_field_edits(self, pick: int, fields: tuple[str, str], order: str, title: str) -> None:
        """The CRM edits one field of a synced meeting while a Google user edits another; then the push meets the
        412 first, or the pull meets the unpushed CRM edit first, or other rules deliver both later."""
        self._step("concurrent_field_edits", locals())
        assert self.ctx is not None
        live = {(c, item["id"]) for c, item in self._live_google()}
        docs = [
            d
            for d in self._live_docs()
            if d.google is not None
            and d.series is None
            and not d.recurrence
            and d.user_is_organizer
            and d.event_type in GOOGLE_EDITABLE_TYPES
            and (d.google.calendar_id, d.google.event_id) in live
        ]
        if not docs:
            return
        event = docs[pick % len(docs)]
        assert event.google is not None
        key = (event.google.calendar_id, event.google.event_id)
        crm_field, google_field = fields
        self.n += 1
        crm_value, google_value = f"{title} (crm {self.n})", f"{title} (google {self.n})"
        self.ctx.store.update_event(event.id, {crm_field: crm_value, "updated_at": self._now()})
        self.crm_changes += 1
        self.control.edit_event(key[0], key[1], {GOOGLE_KEYS[google_field]: google_value})
        for name, side, value in ((crm_field, "crm", crm_value), (google_field, "google", google_value)):
            if self.field_edit_side.get((*key, name), side) != side:
                self.contested_fields.add((*key, name))
            self.field_edits[(*key, name)] = value
            self.field_edit_side[(*key, name)] = side
        if order == "push_first":
            self.deliver_triggers()
        elif order == "pull_first":
            self.control.release_notifications("fifo")
            self._settle()
            self.control.configure_push(hold=True)
            self.deliver_triggers()

    def _superseded(self, event: CrmEvent, *fields: str) -> None:
        """A later CRM edit of these fields: an earlier concurrent edit of them may rightly be gone."""
        if event.google is not None:
            for name in fields:
                self._forget_field_edit((event.google.calendar_id, event.google.event_id, name), "crm")

    def _forget_field_edit(self, key: tuple[str, str, str], side: str) -> None:
        """A later edit of this field by `side` supersedes the recorded one; a later concurrent edit of it by the
        other side is contested (this one may not have synced yet)."""
        self.field_edits.pop(key, None)
        self.contested_fields.discard(key)
        self.field_edit_side[key] = side

    # -- notifications -------------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctx is not None)
    @rule(order=st.sampled_from(["fifo", "reverse", "shuffle"]))
    def deliver_notifications(self, order: str) -> None:
        self._step("deliver_notifications", locals())
        self.control.release_notifications(order)
        self._settle()
        self.control.configure_push(hold=True)
        self.deliver_triggers()

    @precondition(lambda self: self.ctx is not None)
    @rule(n=st.integers(1, 3))
    def drop_notifications(self, n: int) -> None:
        self._step("drop_notifications", locals())
        self.control.drop_notifications(next_n=n)

    @precondition(lambda self: self.ctx is not None)
    @rule(n=st.integers(1, 3))
    def duplicate_notifications(self, n: int) -> None:
        self._step("duplicate_notifications", locals())
        self.control.duplicate_notifications(n)

    # -- faults --------------------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctx is not None)
    @rule(fault=st.sampled_from(FAULTS), method=st.sampled_from(FAULT_METHODS), count=st.integers(1, 6))
    def google_fault(self, fault: tuple[int, str], method: str, count: int) -> None:
        self._step("google_fault", locals())
        status, reason = fault
        self.control.inject_fault(method, status, reason, count=count, retry_after=0)

    @precondition(lambda self: self.ctx is not None)
    @rule(cal=st.integers(0, 2))
    def invalidate_sync_tokens(self, cal: int) -> None:
        self._step("invalidate_sync_tokens", locals())
        self.control.invalidate_sync_tokens(self.calendars[cal])

    @precondition(lambda self: self.ctx is not None)
    @rule(cal=st.integers(0, 2))
    def channel_dies_at_google(self, cal: int) -> None:
        """Google stops notifying early (a lost channel): only the cron's stale pull catches up."""
        self._step("channel_dies_at_google", locals())
        for channel in self.control.channels():
            if channel["target"] == self.calendars[cal] and not channel["stopped"]:
                self.control.expire_channel(channel["id"])

    @precondition(lambda self: self.ctx is not None)
    @rule()
    def time_passes_channel_lapses(self) -> None:
        """A week goes by with no cron: every channel lapses; the next cron re-watches and catches up."""
        self._step("time_passes_channel_lapses", locals())
        self.clock.advance(7 * 86_400 + 3600)

    @precondition(lambda self: self.ctx is not None)
    @rule(
        pick=st.integers(0, 50),
        title=TITLES,
        whole=st.booleans(),
        code=st.sampled_from(["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"]),
        calls=st.integers(1, 8),
    )
    def firestore_outage(self, pick: int, title: str, whole: bool, code: str, calls: int) -> None:
        """Firestore refuses our calls (`whole`: all of them, with ABORTED, which the client does not retry, until
        the outage ends; else the next `calls` with `code`) while a CRM edit's push, Google's held notifications
        and a cron run meet it. Eventarc redelivers a failed push, Google retries a 503 (and gives up after its
        attempts), a failed cron is retried by the next run."""
        self._step("firestore_outage", locals())
        from shared.account.renewal import run_renewal
        from shared.errors import SyncError

        assert self.ctx is not None
        if getattr(self, "_outage", None) is None:  # one per example: its Google client is built once
            proxy, db = _outage_client(self.env)
            self._outage = (proxy, db, AppContext.create(self.ctx.settings, db, clock=self.clock))
        proxy, _, outage = self._outage
        docs = self._live_docs()
        edited = None
        if docs:
            edited = docs[pick % len(docs)].id
            self.ctx.store.update_event(edited, {"title": f"{title} (outage)", "updated_at": self._now()})
            self._superseded(docs[pick % len(docs)], "title")  # a later CRM edit of the title
            self.crm_changes += 1
            self.triggered[edited] = self.ctx.store.event_ref(edited).get().update_time
        proxy.inject("ABORTED" if whole else code, calls=None if whole else calls)
        set_default_context(outage)  # the served webhook meets the outage too
        try:
            if edited is not None:
                try:
                    from shared.sync.crm_to_google_run import push_event

                    push_event(outage, edited)
                except SyncError:
                    self.redeliver.add(edited)  # the function failed: Eventarc redelivers
            self.control.release_notifications("fifo")
            self._settle()
            self.control.configure_push(hold=True)
            with contextlib.suppress(SyncError):  # a failed run: Cloud Scheduler's next run resumes
                run_renewal(outage)
        finally:
            proxy.clear()
            set_default_context(self.ctx)
        self.deliver_triggers()

    # -- crashes and cron ----------------------------------------------------------------------------------------
    @precondition(lambda self: self.ctx is not None)
    @rule(pick=st.integers(0, 50), writes=st.integers(0, 2), title=TITLES)
    def crm_edit_push_crashes(self, pick: int, writes: int, title: str) -> None:
        """A CRM edit whose push function dies after `writes` Firestore writes; Eventarc redelivers it later."""
        self._step("crm_edit_push_crashes", locals())
        docs = self._live_docs()
        if not docs:
            return
        event = docs[pick % len(docs)]
        assert self.ctx is not None
        self.ctx.store.update_event(event.id, {"title": f"{title} (crashy)", "updated_at": self._now()})
        self._superseded(event, "title")
        self.crm_changes += 1
        snapshot = self.ctx.store.event_ref(event.id).get()
        self.triggered[event.id] = snapshot.update_time
        with crash_after(writes):
            self._push(event.id)
        self.redeliver.add(event.id)

    @precondition(lambda self: self.ctx is not None)
    @rule(cal=st.integers(0, 2), writes=st.integers(0, 3))
    def pull_crashes(self, cal: int, writes: int) -> None:
        """A pull (as the webhook would run it) dies after `writes` Firestore writes."""
        self._step("pull_crashes", locals())
        from shared.errors import SyncError
        from shared.sync.coalesce import request_pull

        assert self.ctx is not None
        # A SyncError (a Google fault may be active) is what the webhook answers with a status; a 5xx is redelivered.
        with crash_after(writes), contextlib.suppress(SyncError):
            calendar_id = self.calendars[cal]
            request_pull(self.ctx, self._owner_of(calendar_id), calendar_id, reason="webhook")

    @precondition(lambda self: self.ctx is not None)
    @rule(writes=st.integers(0, 4), later=st.booleans())
    def cron_crashes(self, writes: int, later: bool) -> None:
        """The cron dies after `writes` Firestore writes of its own thread (due queries, re-pushes, orphan sweep);
        `later`: it runs past the stale period, so stale pulls and push retries are due when it dies."""
        self._step("cron_crashes", locals())
        from shared.account.renewal import run_renewal

        assert self.ctx is not None
        if later:
            self.clock.advance(self.ctx.settings.stale_sync_seconds + 2 * 3600)
        with crash_after(writes):
            run_renewal(self.ctx)
        self.deliver_triggers()

    @precondition(lambda self: self.ctx is not None)
    @rule()
    def cron(self) -> None:
        self._step("cron", locals())
        from shared.account.renewal import run_renewal

        assert self.ctx is not None
        run_renewal(self.ctx)
        self.deliver_triggers()

    # -- quiescence and the invariants ---------------------------------------------------------------------------
    def _settle(self) -> None:
        """Wait for the stand-in's deliveries; one still in flight after the timeout (a starved machine) is noted,
        so a divergence it causes reads as a harness timing, not as a sync bug."""
        state = self.control.flush(timeout=30)
        if not state.get("idle"):
            self.unsettled.append(f"deliveries not idle after 30 s: {state}")

    def quiesce(self) -> None:
        from shared.account.renewal import run_renewal

        assert self.ctx is not None
        self.control.clear_faults()
        self.control.configure_push(drop_next=0, duplicate_next=0)
        self.control.release_notifications("fifo")
        self._settle()
        self.deliver_triggers()
        # Past pull staleness, push backoff and any dead holder's lease, until a round writes nothing to Google and
        # changes no CRM document, and at least twice: a cron run pulls before it pushes, and a push of one user's
        # meeting changes the other user's invitation copy after that user's calendar was pulled (with that user's
        # channel dead at Google, only the next stale pull sees it: the documented bound for a calendar with no
        # evidence of a dead channel); and a notification that arrives while a round runs can defer that calendar's
        # pull as the echo of our own write (shared/sync/echo.py), due a few minutes after the round's clock: the
        # documented bound of a deferral, which the next round's clock has passed.
        for round_number in range(5):
            writes = google_writes(self.control.counters())
            documents = self._update_times()
            self.clock.advance(self.ctx.settings.stale_sync_seconds + 2 * 3600)
            run_renewal(self.ctx)
            self.control.release_notifications("fifo")
            self._settle()
            self.deliver_triggers()
            quiet = google_writes(self.control.counters()) == writes and self._update_times() == documents
            if quiet and round_number >= 1:
                break

    def _update_times(self) -> dict[str, Any]:
        """Every CRM event document's update time, by id (an empty projection: names and times only)."""
        assert self.ctx is not None
        return {s.id: s.update_time for s in self.ctx.store.db.collection("events").select([]).stream()}

    def check(self) -> list[str]:
        assert self.ctx is not None
        self.quiesce()
        before_writes = google_writes(self.control.counters())
        problems = check_convergence(
            self.ctx,
            self.google,
            self.calendars,
            crm_meta=self.crm_meta,
            must_live_crm=self._must_live_crm(),
            must_live_google=self._must_live_google(),
            imported=self._imported,
        )
        problems += check_isolation(self.ctx, self.google, self.calendars_of, self.crm_owner)
        uncontested = {k: v for k, v in self.field_edits.items() if k not in self.contested_fields}
        problems += check_field_edits(self.ctx, self.google, uncontested)
        # No ping-pong: a further round of notifications, triggers and cron changes nothing anywhere.
        events_before = self._update_times()
        self.quiesce()
        events_after = self._update_times()
        extra = google_writes(self.control.counters()) - before_writes
        if extra:
            problems.append(f"{extra} Google writes after quiescence (echo / ping-pong)")
        moved = sorted(k for k in events_after if events_before.get(k) != events_after[k])
        if moved:
            problems.append(f"CRM documents rewritten after quiescence (echo / ping-pong): {moved}")
        total = google_writes(self.control.counters()) - self.writes_at_start
        bound = 4 * self.crm_changes + 8
        if total > bound:
            problems.append(f"{total} Google writes for {self.crm_changes} CRM changes (bound {bound})")
        return problems

    def _must_live_crm(self) -> set[str]:
        """CRM events nobody deleted: not by a CRM rule, not via their Google copy."""
        assert self.ctx is not None
        alive = set()
        for crm_id in self.crm_meta:
            if crm_id in self.crm_deleted:
                continue
            snapshot = self.ctx.store.event_ref(crm_id).get()
            link = (snapshot.to_dict() or {}).get("google") if snapshot.exists else None
            if link and (link["calendar_id"], link["event_id"]) in self.google_deleted:
                continue
            alive.add(crm_id)
        return alive

    def _must_live_google(self) -> set[tuple[str, str]]:
        """Google-made events nobody deleted: not in Google, not through their CRM copy."""
        assert self.ctx is not None
        deleted_in_crm = set()
        for snapshot in self.ctx.store.db.collection("events").stream():
            data = snapshot.to_dict() or {}
            if snapshot.id in self.crm_deleted and data.get("google"):
                deleted_in_crm.add((data["google"]["calendar_id"], data["google"]["event_id"]))
            elif data.get("deleted") and data.get("google") and (data.get("sync") or {}).get("origin") == "google":
                pass
        from shared.models import crm_event_id_for_google

        result = set()
        for key in self.google_created - self.google_deleted - deleted_in_crm:
            crm_id = crm_event_id_for_google(key[0], key[1])
            if crm_id in self.crm_deleted:
                continue
            result.add(key)
        return result

    def teardown(self) -> None:
        if self.ctx is None:
            return
        try:
            problems = self.check()
        finally:
            self.control.configure_push(hold=False)
            set_default_context(None)
            if getattr(self, "_outage", None) is not None:
                self._outage[1].close()
        if problems:
            settled = f" | harness: {'; '.join(self.unsettled)}" if self.unsettled else ""
            self.env.divergences.append("; ".join(problems) + " | steps: " + "; ".join(self.trace) + settled)
        if self.env.on_example_done is not None:
            self.env.on_example_done()
        if problems and self.env.raise_on_divergence:
            raise Divergence("\n".join(problems))


def bind(env: Env) -> None:
    global ENV
    ENV = env


def describe(env: Env) -> str:
    return json.dumps({"examples": env.examples, "divergences": len(env.divergences)})


# Silence unused-import linters for names kept for readers of the module.
_ = (SyncedCalendar, dump_for_firestore)
