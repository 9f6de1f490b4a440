"""The notification's critical path: from the webhook's request to the CRM commit in as few serial round trips as the
invariants allow (issue 17 §1).

A warm instance that has seen the channel before:
1. one batchGet: the channel's route (to authenticate), the integration (credentials), the calendar (sync token), the
   pull lease and the "dirty" marker (`read_notification_state`; the route names what it belongs to, and a channel's
   (user, calendar) never changes, so an instance remembers it: `RouteHints`);
2. events.list (page 1), while the lease create is in flight on another thread (`start_first_page`);
3. one batchGet: the listed events' CRM documents, plus the calendar again (google_to_crm_run: was a pull committed
   between step 1 and our lease? then the page is dropped and the list starts again from the newer token);
4. one commit: the events, the calendar's new sync token and the lease release.
A cold instance reads the route alone first (one more round trip). The webhook authenticates from step 1's route
before anything else happens (invariant 6: a forged or stale notification makes no Google call and no write).

Why the list may start before the lease is won, and what that costs: the list only reads. If the lease is lost (a
pull is already running), the page is dropped and the notification is queued as before; that discarded page is the
only Google call a lost race costs. Bursts (invariant 5): a notification starts its page early only when step 1 saw no
lease at all and no other request of this instance is starting one for the same calendar, so a burst arriving at one
instance costs one running list and at most one queued, as before; a burst spread over instances within one
Firestore round trip costs at most one dropped page per instance.
"""

from __future__ import annotations

import collections
import logging
import threading
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


route_hints = RouteHints()


def lease_doc_id(user_id: str, calendar_id: str) -> str:
    """sync_leases/ and sync_dirty/ document id of one calendar (the same as shared.sync.coalesce.lease_id)."""
    return f"{user_id}_{calendar_key(calendar_id)}"


def read_notification_state(ctx: AppContext, channel_id: str) -> tuple[ChannelRoute | None, PullState | None]:
    """The route, plus (when this instance knows the channel) everything the pull reads first, in one round trip.
    None for the state: read it with `read_pull_state` once the route has authenticated the notification."""
    hint = route_hints.get(channel_id)
    if hint is not None:
        user_id, calendar_id = hint
        state = ctx.store.get_pull_state(
            user_id, calendar_key(calendar_id), lease_doc_id(user_id, calendar_id), channel_id=channel_id
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
    return ctx.store.get_pull_state(user_id, calendar_key(calendar_id), lease_doc_id(user_id, calendar_id))


@dataclass
class FirstPage:
    """events.list page 1, started before the lease was won. `calendar_mark` is what the calendar looked like when
    the page's sync token was read; the runner compares it with a fresh read before storing anything."""

    sync_token: str
    calendar_mark: tuple[Any, ...]
    page: dict[str, Any] | None = None
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
    first = FirstPage(sync_token=calendar.sync_token, calendar_mark=calendar_mark(calendar))
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

    threading.Thread(target=list_page, name="first-page", daemon=True).start()
    return FirstPageStart(slot, first)


def log_dropped(user_id: str, calendar_id: str, why: str) -> None:
    log_event(logger, "early list page dropped", user_id=user_id, calendar_id=calendar_id, why=why)
