"""Calendar v3 method handlers: events, calendarList, calendars, watch/stop."""

from __future__ import annotations

import copy
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .clock import parse_rfc3339, rfc3339
from .errors import ApiError, full_sync_required, invalid, not_found, updated_min_too_long_ago
from .oauth import AccessToken
from .push import PushManager
from .store import Calendar, EventStore

RESOURCE_URI_BASE = "https://www.googleapis.com/calendar/v3/"
SYNC_FORBIDDEN = ("iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin",
                  "timeMax", "updatedMin")


@dataclass
class Call:
    """One routed API request."""

    method_id: str
    path: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any] | None
    headers: dict[str, str]
    access: AccessToken
    after_response: list[Callable[[], None]] = field(default_factory=list)

    @property
    def account(self) -> str:
        return self.access.email


@dataclass
class Result:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


class CalendarApi:
    """Implements the calendar methods on top of the store and the push manager."""

    def __init__(self, store: EventStore, push: PushManager) -> None:
        self.store = store
        self.push = push
        self.handlers: dict[str, Callable[[Call], Result]] = {
            "calendar.events.insert": self.events_insert,
            "calendar.events.import": self.events_import,
            "calendar.events.get": self.events_get,
            "calendar.events.update": self.events_update,
            "calendar.events.patch": self.events_patch,
            "calendar.events.delete": self.events_delete,
            "calendar.events.move": self.events_move,
            "calendar.events.list": self.events_list,
            "calendar.events.instances": self.events_instances,
            "calendar.events.watch": self.events_watch,
            "calendar.channels.stop": self.channels_stop,
            "calendar.calendarList.list": self.calendar_list_list,
            "calendar.calendarList.get": self.calendar_list_get,
            "calendar.calendarList.watch": self.calendar_list_watch,
            "calendar.calendars.get": self.calendars_get,
        }

    def handle(self, call: Call) -> Result:
        handler = self.handlers.get(call.method_id)
        if handler is None:
            raise ApiError(501, "notImplemented", f"{call.method_id} is not implemented by the stand-in")
        with self.store.lock:
            return handler(call)

    def _calendar(self, call: Call, key: str = "calendarId") -> Calendar:
        return self.store.calendar_for(call.account, call.path.get(key) or call.query.get(key, ""))

    def _writable(self, call: Call) -> Calendar:
        calendar = self._calendar(call)
        self.store.require_writer(calendar)
        return calendar

    # -- events: single ------------------------------------------------------------------------------------------
    def events_insert(self, call: Call) -> Result:
        calendar = self._writable(call)
        return Result(200, self.store.render(calendar, self.store.insert_event(calendar, call.body or {},
                                                                                call.query)))

    def events_import(self, call: Call) -> Result:
        calendar = self._writable(call)
        return Result(200, self.store.render(calendar, self.store.import_event(calendar, call.body or {},
                                                                                call.query)))

    def events_get(self, call: Call) -> Result:
        calendar = self._calendar(call)
        event = self.store.render(calendar, self.store.get_event(calendar, call.path["eventId"]))
        if_none_match = call.headers.get("if-none-match")
        if if_none_match and event["etag"] in [t.strip() for t in if_none_match.split(",")]:
            return Result(304, None, {"ETag": event["etag"]})
        return Result(200, event, {"ETag": event["etag"]})

    def events_update(self, call: Call) -> Result:
        calendar = self._writable(call)
        return Result(200, self.store.render(calendar, self.store.write_event(
            calendar, call.path["eventId"], call.body or {}, call.query, patch=False,
            if_match=call.headers.get("if-match"))))

    def events_patch(self, call: Call) -> Result:
        calendar = self._writable(call)
        return Result(200, self.store.render(calendar, self.store.write_event(
            calendar, call.path["eventId"], call.body or {}, call.query, patch=True,
            if_match=call.headers.get("if-match"))))

    def events_delete(self, call: Call) -> Result:
        self.store.delete_event(self._writable(call), call.path["eventId"], call.query,
                                if_match=call.headers.get("if-match"))
        return Result(204, None)

    def events_move(self, call: Call) -> Result:
        source = self._writable(call)
        destination = self.store.calendar_for(call.account, call.query["destination"])
        self.store.require_writer(destination)
        return Result(200, self.store.render(destination, self.store.move_event(source, call.path["eventId"],
                                                                                 destination, call.query)))

    # -- events: lists -------------------------------------------------------------------------------------------
    def _envelope(self, calendar: Calendar, items: list[dict[str, Any]]) -> dict[str, Any]:
        latest = max((item.get("updated", "") for item in items), default="") or rfc3339(self.store.clock.now())
        return {
            "kind": "calendar#events", "etag": f'"p3{calendar.seq:014d}g"', "summary": calendar.summary,
            "description": calendar.description, "updated": latest, "timeZone": calendar.time_zone,
            "accessRole": calendar.access_role, "defaultReminders": calendar.reminders, "items": items,
        }

    def _matches_filters(self, calendar: Calendar, item: dict[str, Any], query: dict[str, Any]) -> bool:
        if query.get("iCalUID") and item.get("iCalUID") != query["iCalUID"]:
            return False
        if query.get("eventTypes") and item.get("eventType", "default") not in query["eventTypes"]:
            return False
        if query.get("updatedMin") and item.get("updated", "") and \
                parse_rfc3339(item["updated"]) < parse_rfc3339(query["updatedMin"]):
            return False
        for param, scope in (("privateExtendedProperty", "private"), ("sharedExtendedProperty", "shared")):
            bag = (item.get("extendedProperties") or {}).get(scope) or {}
            for constraint in query.get(param) or []:
                key, _, value = constraint.partition("=")
                if bag.get(key) != value:
                    return False
        if query.get("q"):
            needle = query["q"].lower()
            haystack = " ".join([item.get("summary", ""), item.get("description", ""), item.get("location", "")]
                                + [a.get("email", "") + " " + a.get("displayName", "")
                                   for a in item.get("attendees", [])]).lower()
            if not all(word in haystack for word in needle.split()):
                return False
        if (query.get("timeMin") or query.get("timeMax")) and item.get("start"):
            start, end = self.store.event_bounds(calendar, item)
            if item.get("recurrence"):  # a master matches when the series reaches into the window
                instances = self.store.expand_series(calendar, item, self.store.expansion_end(query))
                bounds = [self.store.event_bounds(calendar, i) for i in instances] or [(start, end)]
                return any(self._in_window(s, e, query) for s, e in bounds)
            return self._in_window(start, end, query)
        return True

    @staticmethod
    def _in_window(start: datetime, end: datetime, query: dict[str, Any]) -> bool:
        if query.get("timeMin"):
            time_min = parse_rfc3339(query["timeMin"]).astimezone(UTC)
            # an event ending at or before timeMin is outside (zero-length events at timeMin still count)
            if end <= time_min and not end == start == time_min:
                return False
        return not (query.get("timeMax") and start >= parse_rfc3339(query["timeMax"]).astimezone(UTC))

    def _collect(self, calendar: Calendar, query: dict[str, Any], since: int | None) -> list[dict[str, Any]]:
        """Items of a list call before paging; `since` is the sync-token sequence for incremental lists."""
        records = list(calendar.events.values())
        if since is not None:
            records = [r for r in records if r.seq > since]
        show_deleted = bool(query.get("showDeleted")) or since is not None
        single = bool(query.get("singleEvents"))
        items: list[dict[str, Any]] = []
        window_end = self.store.expansion_end(query)
        for record in records:
            data = record.data
            cancelled = data["status"] == "cancelled"
            if cancelled and not show_deleted:
                master = calendar.events.get(data.get("recurringEventId", ""))
                live_exception = master is not None and master.data["status"] != "cancelled" and not single
                since_updated_min = bool(query.get("updatedMin"))
                if not (live_exception or since_updated_min):
                    continue
            if single and data.get("recurrence") and not cancelled:
                items.extend(self.store.expand_series(calendar, data, window_end))
            elif single and data.get("recurrence") and cancelled and since is None:
                continue  # a deleted series has no instances to show
            else:
                items.append(data)
        if since is not None:  # incremental lists take no filters (forbidden combinations were rejected)
            return [copy.deepcopy(item) for item in items]
        return [copy.deepcopy(item) for item in items if self._matches_filters(calendar, item, query)]

    def _sort_key(self, calendar: Calendar, item: dict[str, Any], order_by: str | None) -> list[str]:
        if order_by == "startTime" and item.get("start"):
            start, _ = self.store.event_bounds(calendar, item)
            return [start.isoformat(), item["id"]]
        if order_by == "updated":
            return [item.get("updated", ""), item["id"]]
        return [item["id"]]

    def _page(self, calendar: Calendar, call: Call, items: list[dict[str, Any]], *, default_size: int,
              max_size: int, sync_base: int | None, with_sync_token: bool = True) -> dict[str, Any]:
        query = call.query
        query_hash = self.store.hash_query(query)
        order_by = query.get("orderBy")
        as_of = calendar.seq
        after: list[str] | None = None
        if query.get("pageToken"):
            page = self.store.decode_page(query["pageToken"], query_hash)
            if page["g"] != calendar.generation and sync_base is not None:
                raise full_sync_required()
            as_of, after = page["a"], page["k"]
        keyed = sorted(((self._sort_key(calendar, item, order_by), item) for item in items), key=lambda p: p[0])
        if after is not None:
            keyed = [pair for pair in keyed if pair[0] > after]
        size = min(query.get("maxResults") or default_size, max_size)
        if self.store.options.page_size_cap:
            size = min(size, self.store.options.page_size_cap)
        page_items = keyed[:size]
        placeholders = sync_base is None and bool(query.get("showDeleted") or query.get("updatedMin"))
        body = self._envelope(calendar, [self.store.render(calendar, self.store.minimal(
            item, placeholders=placeholders, live_exception=self._live_exception(calendar, item)))
            for _, item in page_items])
        if len(keyed) > size:
            body["nextPageToken"] = self.store.encode_page(page_items[-1][0], as_of, calendar, query_hash)
        elif with_sync_token:
            body["nextSyncToken"] = self.store.make_sync_token(calendar, as_of)
        return body

    @staticmethod
    def _live_exception(calendar: Calendar, item: dict[str, Any]) -> bool:
        master = calendar.events.get(item.get("recurringEventId") or "")
        return master is not None and master.data["status"] != "cancelled"

    def events_list(self, call: Call) -> Result:
        calendar = self._calendar(call)
        query = call.query
        if query.get("orderBy") == "startTime" and not query.get("singleEvents"):
            raise invalid("The requested ordering is not available for the particular query.", location="orderBy")
        if query.get("timeMin") and query.get("timeMax") and \
                parse_rfc3339(query["timeMin"]) >= parse_rfc3339(query["timeMax"]):
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.", location="timeMax",
                           location_type="parameter")
        since = None
        if query.get("syncToken"):
            for name in SYNC_FORBIDDEN:
                if name in query:
                    raise invalid(f"{name} cannot be combined with syncToken.", location=name)
            if query.get("showDeleted") is False:
                raise invalid("showDeleted=false cannot be combined with syncToken.", location="showDeleted")
            since = self.store.read_sync_token(calendar, query["syncToken"])
        max_age = self.store.options.updated_min_max_age_days
        if query.get("updatedMin") and max_age is not None and \
                parse_rfc3339(query["updatedMin"]) < self.store.clock.now() - timedelta(days=max_age):
            raise updated_min_too_long_ago()
        items = self._collect(calendar, query, since)
        return Result(200, self._page(calendar, call, items, default_size=250, max_size=2500, sync_base=since))

    def events_instances(self, call: Call) -> Result:
        calendar = self._calendar(call)
        record = calendar.events.get(call.path["eventId"])
        if record is None or not record.data.get("recurrence"):
            raise not_found()
        if record.data["status"] == "cancelled" and not call.query.get("showDeleted"):
            raise ApiError(410, "deleted", "Resource has been deleted")
        master = record.data
        query = call.query
        items = self.store.expand_series(calendar, master, self.store.expansion_end(query))
        items += [copy.deepcopy(r.data) for r in calendar.events.values()
                  if r.data.get("recurringEventId") == master["id"]]
        if not query.get("showDeleted"):
            items = [i for i in items if i["status"] != "cancelled"]
        if query.get("originalStart"):
            wanted = parse_rfc3339(query["originalStart"]).astimezone(UTC)
            items = [i for i in items if self._original_instant(calendar, i) == wanted]
        window = {k: query[k] for k in ("timeMin", "timeMax") if k in query}
        items = [i for i in items if self._in_window(*self.store.event_bounds(calendar, i), window)]
        call.query = dict(query, orderBy="startTime")
        body = self._page(calendar, call, items, default_size=250, max_size=2500, sync_base=None,
                          with_sync_token=False)
        return Result(200, body)

    def _original_instant(self, calendar: Calendar, item: dict[str, Any]) -> datetime:
        start = item.get("originalStartTime") or item["start"]
        return self.store.event_bounds(calendar, {"start": start, "end": start})[0]

    # -- push ------------------------------------------------------------------------------------------------------
    def _watch(self, call: Call, kind: str, target: str, resource_uri: str) -> Result:
        channel = self.push.create_channel(call.body or {}, kind=kind, target=target, account=call.account,
                                           client_id=call.access.client_id, resource_uri=resource_uri)
        if self.store.options.sync_before_response:
            delivery = self.push.enqueue(channel, "sync")
            if delivery is not None and not self.push.paused and not self.push.holding:
                self.store.lock.release()  # let the receiver call back into the API while we wait
                try:
                    delivery.first_attempt_done.wait(self.store.options.push_timeout + 1)
                finally:
                    self.store.lock.acquire()
        else:
            call.after_response.append(lambda: self.push.enqueue(channel, "sync"))
        return Result(200, channel.as_resource())

    def events_watch(self, call: Call) -> Result:
        calendar = self._calendar(call)
        uri = f"{RESOURCE_URI_BASE}calendars/{urllib.parse.quote(calendar.id, safe='@')}/events?alt=json"
        return self._watch(call, "events", calendar.id, uri)

    def calendar_list_watch(self, call: Call) -> Result:
        return self._watch(call, "calendarList", call.account, f"{RESOURCE_URI_BASE}users/me/calendarList?alt=json")

    def channels_stop(self, call: Call) -> Result:
        body = call.body or {}
        self.push.stop(body.get("id"), body.get("resourceId"), call.account, call.access.client_id)
        return Result(204, None)

    # -- calendars -------------------------------------------------------------------------------------------------
    def calendar_list_list(self, call: Call) -> Result:
        account = self.store.require_account(call.account)
        query = call.query
        since = None
        if query.get("syncToken"):
            try:
                since = int(query["syncToken"].removeprefix("cl:"))
            except ValueError as error:
                raise full_sync_required() from error
        calendars = [self.store.calendars[cid] for cid in account.calendar_ids]
        if since is not None:
            calendars = [c for c in calendars if c.created_seq > since]
        entries = [self.store.calendar_list_entry(c) for c in calendars]
        offset = 0
        if query.get("pageToken"):
            try:
                offset = int(query["pageToken"].removeprefix("o:"))
            except ValueError as error:
                raise invalid("Invalid page token value.", location="pageToken") from error
        size = min(query.get("maxResults") or 100, 250)
        if self.store.options.page_size_cap:
            size = min(size, self.store.options.page_size_cap)
        body: dict[str, Any] = {"kind": "calendar#calendarList", "etag": f'"p3{account.list_seq:014d}g"',
                                "items": entries[offset:offset + size]}
        if offset + size < len(entries):
            body["nextPageToken"] = f"o:{offset + size}"
        else:
            body["nextSyncToken"] = f"cl:{account.list_seq}"
        return Result(200, body)

    def calendar_list_get(self, call: Call) -> Result:
        return Result(200, self.store.calendar_list_entry(self._calendar(call)))

    def calendars_get(self, call: Call) -> Result:
        return Result(200, self.store.calendar_resource(self._calendar(call)))
