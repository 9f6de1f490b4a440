"""The notification's critical path: from the webhook's request to the CRM commit in as few serial round trips as the
invariants allow (issue 17 §1).

A warm instance that has seen the channel before, for a change to an event its earlier pulls of this calendar touched
(or a new Google event), makes 3:
1. one batchGet: the channel's route (to authenticate, and its count of expected echoes), the integration
   (credentials), the calendar (sync token, update time), the pull lease, the "dirty" marker and the CRM documents the
   calendar's recent pulls on this instance landed on (`read_notification_state`; the route names what it belongs to,
   and a channel's (user, calendar) never changes, so an instance remembers it: `RouteHints`, and the documents:
   `RecentEvents`);
2. events.list (page 1), while the lease create is in flight on another thread (`start_first_page`);
3. one commit: the events, the calendar's new sync token and the lease release. It is planned on the documents read
   in step 1 and carries their update times as preconditions (a create: that the document does not exist yet), and
   the calendar write carries the calendar's update time from step 1: a pull that committed since, or any other
   write to those documents, fails the whole commit, nothing is stored, and the page is planned again on a fresh read
   as on the 4-round-trip path below (google_to_crm_run).
When the page names a document step 1 did not read (an event this instance has not pulled lately, one created in the
CRM, a recurring instance), the runner reads the page's documents and the calendar in one more batchGet before the
commit (4 round trips; a pull committed between step 1 and our lease drops the early page). A cold instance reads the
route alone first (one more round trip). The webhook authenticates from step 1's route before anything else happens
(invariant 6: a forged or stale notification makes no Google call and no write).

Why not list before step 1 (from a sync token and credentials remembered from earlier notifications)? Google calls
would be spent that nothing pays for, in two common cases: a notification of our own write is answered without a
list (the route's `echo_pending`, shared/sync/echo.py, is only known from step 1), and such echoes are as many as the
changes made in Google, or more, on a calendar the CRM writes to; and the sync token an instance remembers is stale
whenever another instance pulled the calendar last, which is most of the time once Cloud Run runs several instances.
Each such miss is a wasted events.list against the 600-per-user-minute quota; a stale document in step 3 costs one
failed commit and one batchGet instead.

Why the list may start before the lease is won, and what that costs: the list only reads. If the lease is lost (a
pull is already running), the page is dropped and the notification is queued as before; that discarded page is the
only Google call a lost race costs. Bursts (invariant 5): a notification starts its page early only when step 1 saw no
lease at all and no other request of this instance is starting one for the same calendar, so a burst arriving at one
instance costs one running list and at most one queued, as before; a burst spread over instances within one
Firestore round trip costs at most one dropped page per instance.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import functools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.logs import log_event
from shared.models import IntegrationStatus, calendar_key

if TYPE_CHECKING:
    from shared.context import AppContext
    from shared.models import ChannelRoute
    from shared.store import PullState

logger = logging.getLogger(__name__)

ROUTE_HINTS_MAX = 10_000  # channels one instance remembers (about 1 MB)
FIRST_PAGE_THREADS = 16  # early lists in flight at once per instance (more wait for a free thread)
RECENT_CALENDARS_MAX = 10_000  # calendars whose recently touched CRM documents one instance remembers
RECENT_EVENTS_PER_CALENDAR = 8  # documents read in step 1 per calendar (a few more document reads, no round trip)


class RouteHints:
    """channel id -> (user id, calendar id), learned from route reads. Safe to keep: a channel id is a fresh UUID per
    events.watch, and its route never changes owner or calendar (only its state: read fresh every time)."""

    def __init__(self, limit: int = ROUTE_HINTS_MAX) -> None:
        self._limit = limit
        self._items: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, channel_id: str) -> tuple[str, str] | None:
        with self._lock:
            hint = self._items.get(channel_id)
            if hint is not None:
                self._items.move_to_end(channel_id)
            return hint

    def remember(self, route: ChannelRoute) -> None:
        with self._lock:
            self._items[route.channel_id] = (route.user_id, route.calendar_id)
            self._items.move_to_end(route.channel_id)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def forget(self, channel_id: str) -> None:
        """A stopped or expired channel: its late notifications go back to costing one route read."""
        with self._lock:
            self._items.pop(channel_id, None)

    def clear(self) -> None:
        """Forget every channel (what a new instance knows: benchmarks measure the cold path with it)."""
        with self._lock:
            self._items.clear()


route_hints = RouteHints()


class RecentEvents:
    """(user id, calendar id) -> the CRM document ids its latest pulls on this instance wrote or read, newest last.
    Only a guess of what the next change will touch (a person edits the same meeting a few times in a row): read in
    step 1 and used only as read there, under update-time preconditions, so a wrong guess costs a round trip, never a
    stale write."""

    def __init__(self, calendars: int = RECENT_CALENDARS_MAX, per_calendar: int = RECENT_EVENTS_PER_CALENDAR) -> None:
        self._calendars = calendars
        self._per_calendar = per_calendar
        self._items: collections.OrderedDict[tuple[str, str], tuple[str, ...]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def ids(self, user_id: str, calendar_id: str) -> tuple[str, ...]:
        with self._lock:
            return self._items.get((user_id, calendar_id), ())

    def remember(self, user_id: str, calendar_id: str, crm_ids: Iterable[str]) -> None:
        fresh = list(dict.fromkeys(crm_ids))[-self._per_calendar :]
        if not fresh:
            return
        key = (user_id, calendar_id)
        with self._lock:
            kept = [crm_id for crm_id in self._items.get(key, ()) if crm_id not in fresh]
            self._items[key] = tuple(kept + fresh)[-self._per_calendar :]
            self._items.move_to_end(key)
            while len(self._items) > self._calendars:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


recent_events = RecentEvents()


def lease_doc_id(user_id: str, calendar_id: str) -> str:
    """sync_leases/ and sync_dirty/ document id of one calendar (the same as shared.sync.coalesce.lease_id)."""
    return f"{user_id}_{calendar_key(calendar_id)}"


def read_notification_state(ctx: AppContext, channel_id: str) -> tuple[ChannelRoute | None, PullState | None]:
    """The route, plus (when this instance knows the channel) everything the pull reads first, in one round trip.
    None for the state: read it with `read_pull_state` once the route has authenticated the notification."""
    hint = route_hints.get(channel_id)
    if hint is not None:
        user_id, calendar_id = hint
        # A pull of this calendar already running here: this notification will queue behind it (a burst), so the
        # event documents would only be decoded for nothing.
        busy = _pull_running_here(user_id, calendar_id)
        state = ctx.store.get_pull_state(
            user_id,
            calendar_key(calendar_id),
            lease_doc_id(user_id, calendar_id),
            channel_id=channel_id,
            event_ids=() if busy else recent_events.ids(user_id, calendar_id),
        )
        route = state.route
        if route is not None and (route.user_id, route.calendar_id) == hint:
            return route, state
        route_hints.forget(channel_id)
        return route, None
    route = ctx.store.get_channel_route(channel_id)
    if route is not None:
        route_hints.remember(route)
    return route, None


def read_pull_state(ctx: AppContext, user_id: str, calendar_id: str) -> PullState:
    return ctx.store.get_pull_state(
        user_id,
        calendar_key(calendar_id),
        lease_doc_id(user_id, calendar_id),
        event_ids=recent_events.ids(user_id, calendar_id),
    )


@dataclass
class FirstPage:
    """events.list page 1, started before the lease was won. `calendar_mark` is what the calendar looked like when
    the page's sync token was read; the runner compares it with a fresh read before storing anything."""

    sync_token: str
    calendar_mark: tuple[Any, ...]
    page: dict[str, Any] | None = None
    # Step 1's reads, for a commit planned on them (None / empty: the runner reads the page's documents itself).
    calendar_update_time: dt.datetime | None = None
    events: dict[str, Any] = field(default_factory=dict)  # CRM id -> DocumentSnapshot from step 1
    use_prefetched: bool = True  # False once a commit planned on step 1's reads lost a precondition
    error: BaseException | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self) -> FirstPage:
        self._done.wait()
        return self


def calendar_mark(calendar: Any) -> tuple[Any, ...]:
    """What changes when a pull commits (its token and time) or the calendar is switched off."""
    return (calendar.sync_token, calendar.last_sync_at, calendar.enabled)


_starting: set[str] = set()
_starting_lock = threading.Lock()


def _pull_running_here(user_id: str, calendar_id: str) -> bool:
    with _starting_lock:
        return lease_doc_id(user_id, calendar_id) in _starting


class FirstPageStart:
    """The in-flight early list of one request (`start_first_page`). The calendar's slot stays taken until the
    request's pull is over (`release`): another request of this instance that read the state before our lease landed
    must not start a page of its own."""

    def __init__(self, slot: str, first: FirstPage) -> None:
        self._slot = slot
        self.first = first

    def wait(self) -> FirstPage:
        return self.first.wait()

    def release(self) -> None:
        with _starting_lock:
            _starting.discard(self._slot)


def start_first_page(ctx: AppContext, state: PullState, user_id: str, calendar_id: str) -> FirstPageStart | None:
    """Start events.list page 1 on a thread when the pull will most likely run: connected, enabled, a sync token,
    no lease document at all, and no other request of this instance starting one for this calendar. None otherwise
    (the pull then lists after its lease, as before)."""
    integration, calendar = state.integration, state.calendar
    if (
        integration is None
        or integration.status != IntegrationStatus.CONNECTED
        or not integration.refresh_token_ciphertext
        or calendar is None
        or not calendar.enabled
        or not calendar.sync_token
        or state.lease.exists
    ):
        return None
    slot = lease_doc_id(user_id, calendar_id)
    with _starting_lock:
        if slot in _starting:
            return None
        _starting.add(slot)
    first = FirstPage(
        sync_token=calendar.sync_token,
        calendar_mark=calendar_mark(calendar),
        calendar_update_time=state.calendar_update_time,
        events=dict(state.events),
    )
    try:
        client = ctx.calendar_client(integration)
    except Exception:
        with _starting_lock:
            _starting.discard(slot)
        return None

    def list_page() -> None:
        try:
            first.page = client.list_events_page(calendar_id, sync_token=first.sync_token)
        except BaseException as exc:  # handed to the runner, which lists again the ordinary way
            first.error = exc
        finally:
            first._done.set()

    _first_page_pool().submit(list_page)
    return FirstPageStart(slot, first)


@functools.cache
def _first_page_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Long-lived threads for the early lists: starting a thread per notification waits for it to be scheduled, and
    the client keeps one HTTP connection per thread, so a new thread also meant a new connection to Google."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=FIRST_PAGE_THREADS, thread_name_prefix="first-page")


# What the warm path's guesses cost this process (benchmarks and tests read it): "early_page_dropped" (a listed page
# thrown away: a pull was running or committed meanwhile) and "early_commit_lost" (a commit planned on step 1's reads
# lost a precondition and was planned again on a fresh read: no Google call, two more Firestore round trips).
misses: collections.Counter[str] = collections.Counter()
_misses_lock = threading.Lock()


def note_miss(kind: str) -> None:
    with _misses_lock:
        misses[kind] += 1


def log_dropped(user_id: str, calendar_id: str, why: str) -> None:
    note_miss("early_page_dropped")
    log_event(logger, "early list page dropped", user_id=user_id, calendar_id=calendar_id, why=why)
