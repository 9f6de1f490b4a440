"""Accounts, calendars, events and the per-calendar change log behind sync tokens.

Every write (API or control "act as the user") goes through `EventStore`, so etag, `updated`, sync tokens and push
notifications behave the same whichever side made the change.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import event_types, recurrence
from .clock import Clock, parse_rfc3339, rfc3339
from .errors import ApiError, full_sync_required, invalid, not_found, required
from .options import StandinOptions

EVENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
INSTANCE_ID_RE = re.compile(r"^(?P<parent>[a-v0-9]+(?:_R\d{8}(?:T\d{6})?)?)_(?P<stamp>\d{8}(T\d{6}Z)?)$")
SERVER_FIELDS = ("kind", "etag", "id", "htmlLink", "created", "updated", "creator", "organizer", "iCalUID",
                 "recurringEventId", "originalStartTime")
RESPONSE_STATUSES = ("needsAction", "declined", "tentative", "accepted")
EVENT_TYPES = ("default", "birthday", "focusTime", "fromGmail", "outOfOffice", "workingLocation")
XP_KEY_MAX, XP_VALUE_MAX, XP_COUNT_MAX, XP_BYTES_MAX = 44, 1024, 300, 32 * 1024
SEQUENCE_FIELDS = ("start", "end", "recurrence", "location")
ACCESS_ROLES = ("owner", "writer", "reader", "freeBusyReader")
# Per-copy parts of an invitation: each attendee keeps their own (guides/invite-attendees; events reference:
# "private: properties that are private to the copy of the event that appears on this calendar").
PER_COPY_FIELDS = ("reminders", "colorId")
# What an attendee may change about their own entry (events reference, attendees[]: responseStatus, comment,
# additionalGuests are the attendee's; everything else is the organiser's).
OWN_ATTENDEE_FIELDS = ("responseStatus", "comment", "additionalGuests")
PLACEHOLDER_DATE = {"date": "2000-01-01"}


@dataclass
class EventRecord:
    data: dict[str, Any]
    seq: int


@dataclass
class Calendar:
    id: str
    owner: str
    summary: str
    time_zone: str
    primary: bool
    created_seq: int
    events: dict[str, EventRecord] = field(default_factory=dict)
    seq: int = 0
    generation: int = 0
    emails: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    access_role: str = "owner"
    default_reminders: list[dict[str, Any]] | None = None  # None: Google's defaults (popup 10 on primary)

    @property
    def reminders(self) -> list[dict[str, Any]]:
        if self.default_reminders is not None:
            return copy.deepcopy(self.default_reminders)
        return [{"method": "popup", "minutes": 10}] if self.primary else []

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass
class Account:
    email: str
    time_zone: str
    calendar_ids: list[str] = field(default_factory=list)
    list_seq: int = 0


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(text: str) -> dict[str, Any]:
    padded = text + "=" * (-len(text) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise invalid(f"Invalid time zone definition for {where}.") from error


def parse_event_time(value: dict[str, Any], where: str, default_tz: ZoneInfo) -> datetime | date:
    """Validate an EventDateTime; returns an aware datetime (in its zone) or a date."""
    has_date, has_dt = value.get("date") is not None, value.get("dateTime") is not None
    if has_date == has_dt:
        raise invalid(f"Invalid {where} time.", reason="invalid")
    tz = _zone(value["timeZone"], where) if value.get("timeZone") else None
    if has_date:
        try:
            return date.fromisoformat(value["date"])
        except ValueError as error:
            raise invalid(f"Invalid {where} time.") from error
    text = value["dateTime"]
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError as error:
        raise invalid(f"Invalid {where} time.") from error
    if parsed.tzinfo is None:
        if tz is None:
            raise invalid(f"Missing time zone definition for {where} time.", reason="invalid")
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(tz) if tz else parsed


def to_instant(value: datetime | date, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)


def _merge_patch(target: dict[str, Any], patch: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Google patch: sent fields replace, null deletes, arrays replace whole, nested objects merge.

    start/end/originalStartTime are replaced whole (merging `date` into a `dateTime` value would be nonsense).
    """
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict) and not (
                top and key in ("start", "end", "originalStartTime")):
            result[key] = _merge_patch(result[key], value, top=False)
        else:
            result[key] = copy.deepcopy(value)
    return result


class EventStore:
    """All calendar state of the stand-in; guarded by one re-entrant lock."""

    def __init__(self, clock: Clock, options: StandinOptions) -> None:
        self.clock = clock
        self.options = options
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.calendars: dict[str, Calendar] = {}
        self.on_change: Callable[[str, str], None] = lambda calendar_id, kind: None
        self._etag_last = 0
        self._list_seq = 0

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.calendars.clear()

    # -- ids, etags ------------------------------------------------------------------------------------------------
    def new_etag(self) -> str:
        """Quoted 16-digit number like Google's `"3181161784712000"`, strictly increasing."""
        with self.lock:
            self._etag_last = max(self._etag_last + 1, int(self.clock.time() * 1_000_000))
            return f'"{self._etag_last}"'

    @staticmethod
    def new_event_id() -> str:
        alphabet = "0123456789abcdefghijklmnopqrstuv"
        return "".join(secrets.choice(alphabet) for _ in range(26))

    # -- accounts and calendars ------------------------------------------------------------------------------------
    def create_account(self, email: str, time_zone: str = "UTC", summary: str | None = None) -> Account:
        with self.lock:
            email = email.lower()
            if email in self.accounts:
                return self.accounts[email]
            _zone(time_zone, "calendar")
            account = Account(email=email, time_zone=time_zone)
            self.accounts[email] = account
            self._add_calendar(account, email, summary or email, time_zone, primary=True)
            return account

    def create_calendar(self, email: str, summary: str, time_zone: str | None = None,
                        calendar_id: str | None = None) -> Calendar:
        with self.lock:
            account = self.require_account(email)
            calendar_id = calendar_id or f"c_{secrets.token_hex(16)}@group.calendar.google.com"
            if calendar_id in self.calendars:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            _zone(time_zone or account.time_zone, "calendar")
            calendar = self._add_calendar(account, calendar_id, summary, time_zone or account.time_zone, False)
            self.on_change(email, "calendarList")
            return calendar

    def _add_calendar(self, account: Account, calendar_id: str, summary: str, time_zone: str,
                      primary: bool) -> Calendar:
        self._list_seq += 1
        calendar = Calendar(calendar_id, account.email, summary, time_zone, primary, self._list_seq)
        self.calendars[calendar_id] = calendar
        account.calendar_ids.append(calendar_id)
        account.list_seq = self._list_seq
        return calendar

    def require_account(self, email: str) -> Account:
        account = self.accounts.get(email.lower())
        if account is None:
            raise ApiError(404, "notFound", f"Unknown account {email}")
        return account

    def calendar_for(self, account_email: str, calendar_id: str) -> Calendar:
        """Resolve `primary` and check ownership; other people's calendars are a 404 as on Google."""
        resolved = account_email.lower() if calendar_id == "primary" else calendar_id
        calendar = self.calendars.get(resolved) or self.calendars.get(resolved.lower())
        if calendar is None or calendar.owner != account_email.lower():
            raise not_found()
        return calendar

    def calendar_list_entry(self, calendar: Calendar) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": "calendar#calendarListEntry",
            "etag": f'"{1600000000000000 + calendar.created_seq}"',
            "id": calendar.id,
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "colorId": "14",
            "backgroundColor": "#9fe1e7",
            "foregroundColor": "#000000",
            "selected": True,
            "accessRole": calendar.access_role,
            "defaultReminders": calendar.reminders,
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }
        if calendar.primary:
            entry["primary"] = True
            entry["notificationSettings"] = {"notifications": [{"type": "eventCreation", "method": "email"}]}
        return entry

    def calendar_resource(self, calendar: Calendar) -> dict[str, Any]:
        return {
            "kind": "calendar#calendar",
            "etag": f'"{1600000000000000 + calendar.created_seq}"',
            "id": calendar.id,
            "summary": calendar.summary,
            "description": calendar.description,
            "timeZone": calendar.time_zone,
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }

    def update_calendar(self, calendar_id: str, values: dict[str, Any]) -> Calendar:
        """Control: what the user sets in Calendar settings (summary, description, timeZone, accessRole,
        defaultReminders). The list envelope and calendarList entry read these (events.list reference: summary,
        description, timeZone, accessRole, defaultReminders are the calendar's)."""
        with self.lock:
            calendar = self.calendars.get(calendar_id)
            if calendar is None:
                raise not_found()
            unknown = set(values) - {"summary", "description", "timeZone", "accessRole", "defaultReminders"}
            if unknown:
                raise invalid(f"Unknown calendar settings {sorted(unknown)}.")
            if "timeZone" in values:
                _zone(values["timeZone"], "calendar")
                calendar.time_zone = values["timeZone"]
            if "accessRole" in values:
                if values["accessRole"] not in ACCESS_ROLES:
                    raise invalid("Invalid accessRole.", location="accessRole")
                calendar.access_role = values["accessRole"]
            if "defaultReminders" in values:
                reminders = values["defaultReminders"]
                if reminders is not None and (not isinstance(reminders, list) or any(
                        r.get("method") not in ("email", "popup") or not isinstance(r.get("minutes"), int)
                        for r in reminders)):
                    raise invalid("Invalid defaultReminders.", location="defaultReminders")
                calendar.default_reminders = copy.deepcopy(reminders)
            calendar.summary = values.get("summary", calendar.summary)
            calendar.description = values.get("description", calendar.description)
            self.on_change(calendar.owner, "calendarList")
            return calendar

    def require_writer(self, calendar: Calendar) -> None:
        """Writes need writer access or better (reason as Google answers it on a read-only calendar)."""
        if calendar.access_role not in ("owner", "writer"):
            raise ApiError(403, "requiredAccessLevel", "You need to have writer access to this calendar.")

    # -- rendering -------------------------------------------------------------------------------------------------
    def render(self, calendar: Calendar, data: dict[str, Any]) -> dict[str, Any]:
        """The event as this calendar's reader sees it: internal keys dropped, dateTime values in the calendar's
        UTC offset whatever the event's timeZone (recorded Google responses show an America/Los_Angeles event at
        -03:00 on a Sao Paulo calendar; the events reference only requires an offset when timeZone is absent)."""
        out = {k: v for k, v in data.items() if not k.startswith("_")}
        if not self.options.render_in_calendar_offset:
            return out
        for key in ("start", "end", "originalStartTime"):
            value = out.get(key)
            if isinstance(value, dict) and value.get("dateTime"):
                try:
                    parsed = parse_event_time(value, key, calendar.tz)
                except ApiError:
                    continue
                if not isinstance(parsed, datetime):
                    continue
                local_dt = parsed.astimezone(calendar.tz)
                written_offset = datetime.fromisoformat(value["dateTime"].upper().replace("Z", "+00:00")).utcoffset()
                if written_offset == local_dt.utcoffset() and not self.options.rerender_matching_offsets:
                    continue  # already in the calendar's offset: returned as stored (option above)
                local = local_dt.isoformat()
                out[key] = dict(value, dateTime=local[:-6] + "Z" if local.endswith("+00:00") else local)
        return out

    # -- change log ------------------------------------------------------------------------------------------------
    def _save(self, calendar: Calendar, data: dict[str, Any]) -> EventRecord:
        previous = calendar.events.get(data["id"])
        calendar.seq += 1
        record = EventRecord(data=data, seq=calendar.seq)
        calendar.events[data["id"]] = record
        self.on_change(calendar.id, "events")
        if not data.get("_origin") and (data.get("organizer") or {}).get("self"):
            before = {a["email"].lower() for a in (previous.data.get("attendees") or [])} if previous else set()
            self._share_with_attendees(calendar, data, before)
        return record

    # -- invitations -----------------------------------------------------------------------------------------------
    def _share_with_attendees(self, calendar: Calendar, data: dict[str, Any], before: set[str]) -> None:
        """Keep each invited stand-in account's copy in step with the organiser's event.

        https://developers.google.com/workspace/calendar/api/guides/invite-attendees (the event appears in each
        guest's calendar, same iCalUID, organiser the inviter, `self` on the guest's own entry). A guest removed from
        the list, or every guest when the organiser deletes the event, keeps a cancelled copy with its full body
        (recorded Google responses; sync-token lists carry it whole).
        """
        if not self.options.invitation_copies:
            return
        invited = {a["email"].lower() for a in data.get("attendees") or []}
        for email in sorted(invited | before):
            target = self.calendars.get(email)
            if email == calendar.owner or target is None or target.id == calendar.id:
                continue
            existing = target.events.get(data["id"])
            if existing is not None and existing.data.get("_origin") != calendar.id:
                continue  # an unrelated event of the guest's own with the same id
            if existing is not None and existing.data.get("_removed_by_attendee"):
                continue
            if email in invited and data["status"] != "cancelled":
                self._save(target, self._guest_copy(calendar, target, data, existing.data if existing else None))
            elif existing is not None and existing.data["status"] != "cancelled":
                cancelled = copy.deepcopy(existing.data)
                cancelled.update(status="cancelled", updated=rfc3339(self.clock.now()), etag=self.new_etag(),
                                 _keep_body=not data.get("recurringEventId"))
                self._save(target, cancelled)

    def _guest_copy(self, origin: Calendar, target: Calendar, data: dict[str, Any],
                    existing: dict[str, Any] | None) -> dict[str, Any]:
        guest = {k: copy.deepcopy(v) for k, v in data.items() if not k.startswith("_")}
        guest["organizer"] = {k: v for k, v in data["organizer"].items() if k != "self"}
        guest["creator"] = {k: v for k, v in data.get("creator", {}).items() if k != "self"}
        for attendee in guest.get("attendees") or []:
            attendee.pop("self", None)
            if attendee["email"].lower() == target.owner:
                attendee["self"] = True
        guest["htmlLink"] = "https://www.google.com/calendar/event?eid=" + base64.urlsafe_b64encode(
            f"{data['id']} {target.id}".encode()).decode().rstrip("=")
        guest["_origin"] = origin.id
        for key in PER_COPY_FIELDS:
            guest.pop(key, None)
            if existing and key in existing:
                guest[key] = copy.deepcopy(existing[key])
        guest.setdefault("reminders", {"useDefault": True})
        xprops = guest.get("extendedProperties") or {}
        xprops.pop("private", None)
        own_private = ((existing or {}).get("extendedProperties") or {}).get("private")
        if own_private:
            xprops["private"] = copy.deepcopy(own_private)
        if xprops:
            guest["extendedProperties"] = xprops
        else:
            guest.pop("extendedProperties", None)
        guest["etag"] = self.new_etag()
        return guest

    def _shared_view(self, calendar: Calendar, data: dict[str, Any], me: str) -> dict[str, Any]:
        """What only the organiser may change: everything but the per-copy fields and the guest's own answer."""
        view = {k: copy.deepcopy(v) for k, v in data.items() if not k.startswith("_") and k not in
                event_types.IGNORED_ON_COMPARE and k not in PER_COPY_FIELDS and v is not None}
        for key in ("start", "end"):
            if isinstance(view.get(key), dict) and view[key].get("dateTime"):
                instant = parse_event_time(view[key], key, calendar.tz)
                view[key] = dict(view[key], dateTime=to_instant(instant, calendar.tz).isoformat())
        xprops = view.pop("extendedProperties", None) or {}
        if xprops.get("shared"):
            view["extendedProperties.shared"] = xprops["shared"]
        attendees = []
        for attendee in view.pop("attendees", None) or []:
            entry = {k: v for k, v in attendee.items() if k not in ("self", "organizer")}
            if entry.get("email", "").lower() == me:
                entry = {k: v for k, v in entry.items() if k not in OWN_ATTENDEE_FIELDS}
            entry.setdefault("responseStatus", "needsAction")
            attendees.append(entry)
        if attendees:
            view["attendees"] = attendees
        return view

    def _guest_write(self, calendar: Calendar, current: dict[str, Any], new_body: dict[str, Any],
                     params: dict[str, Any]) -> dict[str, Any]:
        """A guest writes their copy: only their own answer and per-copy fields, unless guestsCanModify.

        https://developers.google.com/workspace/calendar/api/guides/errors ("403: Forbidden for non-organizer")
        and the events reference (guestsCanModify: "Whether attendees other than the organizer can modify the
        event"; extendedProperties.private: "private to the copy of the event that appears on this calendar").
        The error body is the one Google answers (quoted whole in github.com/kewisch/gdata-provider/issues/426).
        """
        me = calendar.owner
        origin = self.calendars.get(current["_origin"])
        shared_changed = self._shared_view(calendar, current, me) != self._shared_view(calendar, new_body, me)
        if origin is None or (shared_changed and not current.get("guestsCanModify")):
            message = "Shared properties can only be changed by the organizer of the event."
            raise ApiError(403, "forbiddenForNonOrganizer", message, domain="calendar")
        organiser = self.get_event(origin, current["id"])
        mine = next((a for a in new_body.get("attendees") or [] if a.get("email", "").lower() == me), None)
        if shared_changed:
            patch = {k: copy.deepcopy(v) for k, v in new_body.items() if not k.startswith("_")
                     and k not in event_types.IGNORED_ON_COMPARE and k not in PER_COPY_FIELDS
                     and k != "extendedProperties"}
            shared_xprops = (new_body.get("extendedProperties") or {}).get("shared")
            patch["extendedProperties"] = {"shared": shared_xprops}
            for key in set(organiser) - set(new_body) - event_types.IGNORED_ON_COMPARE - set(PER_COPY_FIELDS):
                if not key.startswith("_") and key != "extendedProperties":
                    patch[key] = None
        else:
            patch = {}
        attendees = copy.deepcopy(patch.get("attendees", organiser.get("attendees") or []))
        for attendee in attendees:
            if attendee["email"].lower() == me and mine is not None:
                for key in OWN_ATTENDEE_FIELDS:
                    if key in mine:
                        attendee[key] = mine[key]
        if attendees != organiser.get("attendees") or shared_changed:
            patch["attendees"] = attendees
            self.write_event(origin, current["id"], patch, dict(params, _as_organiser=True), patch=True)
        refreshed = self.get_event(calendar, current["id"])
        per_copy = {key: new_body.get(key) for key in PER_COPY_FIELDS}
        private = (new_body.get("extendedProperties") or {}).get("private")
        if per_copy != {key: refreshed.get(key) for key in PER_COPY_FIELDS} or \
                private != (refreshed.get("extendedProperties") or {}).get("private"):
            for key, value in per_copy.items():
                if value is None:
                    refreshed.pop(key, None)
                else:
                    refreshed[key] = copy.deepcopy(value)
            self._check_reminders(refreshed)
            xprops = refreshed.get("extendedProperties") or {}
            xprops["private"] = copy.deepcopy(private) if private else None
            refreshed["extendedProperties"] = {k: v for k, v in xprops.items() if v}
            self._apply_xprops_limits(refreshed)
            refreshed["etag"] = self.new_etag()
            self._save(calendar, refreshed)
        return copy.deepcopy(calendar.events[current["id"]].data)

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        with self.lock:
            calendar = self.calendars.get(calendar_id)
            if calendar is None:
                raise not_found()
            calendar.generation += 1

    def make_sync_token(self, calendar: Calendar, as_of: int) -> str:
        return _b64({"c": calendar.id, "g": calendar.generation, "s": as_of, "t": int(self.clock.time())})

    def read_sync_token(self, calendar: Calendar, token: str) -> int:
        try:
            data = _unb64(token)
            ok = data["c"] == calendar.id and data["g"] == calendar.generation and 0 <= data["s"] <= calendar.seq
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise full_sync_required()
        ttl = self.options.sync_token_ttl_seconds
        if ttl is not None and self.clock.time() - data["t"] > ttl:
            raise full_sync_required()
        return int(data["s"])

    # -- event normalisation ---------------------------------------------------------------------------------------
    def _check_times(self, calendar: Calendar, data: dict[str, Any], recurring: bool,
                     require_zones: tuple[str, ...] = ("start", "end")) -> None:
        """Times must parse and not run backwards; a recurring event needs timeZone on the sides in
        `require_zones` (events reference, start.timeZone: "For recurring events this field is required")."""
        for where in ("start", "end"):
            if not isinstance(data.get(where), dict):
                raise required(where)
        start = parse_event_time(data["start"], "start", calendar.tz)
        end = parse_event_time(data["end"], "end", calendar.tz)
        if isinstance(start, datetime) != isinstance(end, datetime):
            raise invalid("Start and end times must either both be date or both be dateTime.")
        if to_instant(end, calendar.tz) < to_instant(start, calendar.tz):
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.", location="end.dateTime",
                           location_type="parameter")
        if recurring:
            if "start" in require_zones and isinstance(start, datetime) and not data["start"].get("timeZone"):
                raise invalid("Missing time zone definition for start time.")
            if "end" in require_zones and isinstance(end, datetime) and not data["end"].get("timeZone"):
                raise invalid("Missing time zone definition for end time.")
            tz = _zone(data["start"]["timeZone"], "start") if data["start"].get("timeZone") else calendar.tz
            lines = data.get("recurrence") or []
            if not isinstance(lines, list):
                raise invalid("Invalid recurrence rule.")
            try:
                recurrence.validate(lines, tz)
            except (recurrence.RecurrenceError, ZoneInfoNotFoundError, ValueError) as error:
                raise invalid("Invalid recurrence rule.") from error

    @staticmethod
    def _check_reminders(data: dict[str, Any]) -> None:
        reminders = data.get("reminders")
        if reminders is None:
            data["reminders"] = {"useDefault": True}
            return
        overrides = reminders.get("overrides") or []
        if reminders.get("useDefault") and overrides:
            raise invalid("Cannot specify both default reminders and overrides at the same time.",
                          reason="cannotUseDefaultRemindersAndSpecifyOverride")
        if len(overrides) > 5:
            raise invalid("The maximum number of override reminders is 5.", reason="invalid")
        for override in overrides:
            if override.get("method") not in ("email", "popup"):
                raise invalid("Invalid reminder method.", location="reminders.overrides.method")
            minutes = override.get("minutes")
            if minutes is None or not 0 <= int(minutes) <= 40320:
                raise invalid("Invalid value for reminder minutes.", location="reminders.overrides.minutes")
            override["minutes"] = int(minutes)
        if "useDefault" not in reminders:
            reminders["useDefault"] = False

    def _check_attendees(self, calendar: Calendar, data: dict[str, Any]) -> None:
        attendees = data.get("attendees")
        if not attendees:
            data.pop("attendees", None)
            return
        organizer_email = data["organizer"]["email"].lower()
        for attendee in attendees:
            if not attendee.get("email"):
                raise required("attendees.email")
            status = attendee.get("responseStatus") or "needsAction"
            if status not in RESPONSE_STATUSES:
                raise invalid("Invalid attendee response status.", location="attendees.responseStatus")
            attendee["responseStatus"] = status
            attendee.pop("self", None)
            attendee.pop("organizer", None)
            email = attendee["email"].lower()
            if email == calendar.owner or email == calendar.id.lower():
                attendee["self"] = True
            if email == organizer_email:
                attendee["organizer"] = True

    def _apply_xprops_limits(self, data: dict[str, Any]) -> None:
        """Google's silent limits: long keys dropped, long values truncated; over 300/32 kB per option."""
        xprops = data.get("extendedProperties")
        if not xprops:
            data.pop("extendedProperties", None)
            return
        count = size = 0
        for scope in ("private", "shared"):
            bag = xprops.get(scope)
            if bag is None:
                xprops.pop(scope, None)
                continue
            cleaned: dict[str, str] = {}
            for key, value in bag.items():
                if value is None or len(key) > XP_KEY_MAX:
                    continue
                value = str(value)[:XP_VALUE_MAX]
                if count + 1 > XP_COUNT_MAX or size + len((key + value).encode()) > XP_BYTES_MAX:
                    if self.options.xprops_over_limit == "reject":
                        raise invalid("The event's extended properties exceed the allowed size.",
                                      location="extendedProperties")
                    continue
                count += 1
                size += len((key + value).encode())
                cleaned[key] = value
            xprops[scope] = cleaned

    def _normalise(self, calendar: Calendar, body: dict[str, Any], existing: dict[str, Any] | None,
                   params: dict[str, Any], event_id: str) -> dict[str, Any]:
        """Turn a client body into the stored resource, keeping server-owned fields from `existing`."""
        data = {k: copy.deepcopy(v) for k, v in body.items()
                if v is not None and k not in SERVER_FIELDS and not k.startswith("_")}
        via_api = not params.get("_control")
        now = rfc3339(self.clock.now())
        owner_ref = {"email": calendar.owner if calendar.primary else calendar.id, "self": True}
        if not calendar.primary:
            owner_ref["displayName"] = calendar.summary
        if existing:
            for key in SERVER_FIELDS:
                if key in existing:
                    data[key] = copy.deepcopy(existing[key])
            for key in existing:
                if key.startswith("_"):
                    data[key] = copy.deepcopy(existing[key])
        else:
            data.update({
                "kind": "calendar#event", "id": event_id, "created": now,
                "htmlLink": "https://www.google.com/calendar/event?eid="
                + base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("="),
                "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                "creator": {"email": calendar.owner, "self": True} if calendar.primary else dict(owner_ref),
                "organizer": owner_ref,
            })
        data["status"] = data.get("status") or "confirmed"
        if data["status"] not in ("confirmed", "tentative", "cancelled"):
            raise invalid("Invalid event status.", location="status")
        for key, allowed in (("visibility", ("default", "public", "private", "confidential")),
                             ("transparency", ("opaque", "transparent")), ("eventType", EVENT_TYPES)):
            if key in data and data[key] not in allowed:
                raise invalid(f"Invalid value for {key}.", location=key)
        data.setdefault("eventType", existing.get("eventType", "default") if existing else "default")
        if existing and existing.get("recurringEventId"):
            data.pop("recurrence", None)
        recurring = bool(data.get("recurrence"))
        if not recurring:
            data.pop("recurrence", None)
        # A patch is validated on what it touches: a series Google returned with an `end` lacking timeZone takes a
        # title patch (recorded Google responses); the UI (control) creates such series.
        touched = params.get("_touched")
        if not via_api:
            zones: tuple[str, ...] = ("start",)
        elif touched is None:
            zones = ("start", "end")
        else:
            zones = tuple(side for side in ("start", "end") if side in touched or "recurrence" in touched)
        self._check_times(calendar, data, recurring, zones)
        if not existing:
            event_types.check_create(data, primary=calendar.primary, via_api=via_api,
                                     strict_status_events=self.options.strict_status_events)
        self._check_reminders(data)
        self._check_attendees(calendar, data)
        self._apply_xprops_limits(data)
        # Attachments change only with supportsAttachments=true; otherwise what is stored stays.
        if params.get("supportsAttachments"):
            attachments = data.get("attachments") or []
            if len(attachments) > 25:
                raise invalid("Too many attachments; the maximum is 25.", location="attachments")
            for attachment in attachments:
                if not attachment.get("fileUrl"):
                    raise required("attachments.fileUrl")
            if not attachments:
                data.pop("attachments", None)
        else:
            data.pop("attachments", None)
            if existing and existing.get("attachments"):
                data["attachments"] = copy.deepcopy(existing["attachments"])
        if params.get("conferenceDataVersion", 0) < 1:
            data.pop("conferenceData", None)
            if existing and existing.get("conferenceData"):
                data["conferenceData"] = copy.deepcopy(existing["conferenceData"])
        if existing:
            event_types.check_update(existing, data)
        # sequence: bumped when the time/place of the event changes (simple rule).
        if existing:
            sequence = int(existing.get("sequence", 0))
            if any(existing.get(k) != data.get(k) for k in SEQUENCE_FIELDS):
                sequence += 1
            data["sequence"] = max(sequence, int(body.get("sequence") or 0))
            only_reminders = ({k: v for k, v in existing.items() if k not in ("etag", "updated", "reminders",
                                                                                "sequence")} ==
                              {k: v for k, v in data.items() if k not in ("etag", "updated", "reminders",
                                                                          "sequence")})
            changed_reminders = existing.get("reminders") != data.get("reminders")
            data["updated"] = existing["updated"] if only_reminders and changed_reminders else now
        else:
            data["sequence"] = int(body.get("sequence") or 0)
            data["updated"] = now
        data["etag"] = self.new_etag()
        return data

    def _record_emails(self, calendar: Calendar, data: dict[str, Any], params: dict[str, Any], action: str) -> None:
        mode = params.get("sendUpdates") or ("all" if params.get("sendNotifications") else "none")
        if mode == "none":
            return
        organizer_domain = calendar.owner.split("@")[-1]
        recipients = [a["email"] for a in data.get("attendees", []) if not a.get("self")
                      and (mode == "all" or a["email"].split("@")[-1].lower() != organizer_domain)]
        calendar.emails.append({"eventId": data["id"], "action": action, "sendUpdates": mode,
                                "recipients": recipients, "time": rfc3339(self.clock.now())})

    # -- recurring helpers -----------------------------------------------------------------------------------------
    def _series_tz(self, calendar: Calendar, master: dict[str, Any]) -> ZoneInfo:
        name = master["start"].get("timeZone")
        return ZoneInfo(name) if name else calendar.tz

    def occurrences(self, calendar: Calendar, master: dict[str, Any], window_end: datetime,
                    limit: int | None = None) -> list[datetime | date]:
        tz = self._series_tz(calendar, master)
        start = parse_event_time(master["start"], "start", tz)
        return recurrence.expand(start, tz, master.get("recurrence") or [], window_end,
                                 limit or self.options.max_instances_per_series)

    def instance_from_master(self, calendar: Calendar, master: dict[str, Any],
                             occurrence: datetime | date) -> dict[str, Any]:
        tz = self._series_tz(calendar, master)
        start = parse_event_time(master["start"], "start", tz)
        end = parse_event_time(master["end"], "end", tz)
        data = copy.deepcopy(master)
        data.pop("recurrence", None)
        if isinstance(occurrence, datetime):
            end_tz = ZoneInfo(master["end"]["timeZone"]) if master["end"].get("timeZone") else tz
            local_start = occurrence.astimezone(tz)
            local_end = (local_start + (end - start)).astimezone(end_tz)
            data["start"] = {"dateTime": local_start.isoformat(), "timeZone": master["start"].get("timeZone")}
            data["end"] = {"dateTime": local_end.isoformat(), "timeZone": master["end"].get("timeZone")}
            for item in (data["start"], data["end"]):
                if item["timeZone"] is None:
                    item.pop("timeZone")
            suffix = local_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        else:
            data["start"] = {"date": occurrence.isoformat()}
            data["end"] = {"date": (occurrence + (end - start)).isoformat()}
            suffix = occurrence.strftime("%Y%m%d")
        data["id"] = f"{master['id']}_{suffix}"
        data["recurringEventId"] = master["id"]
        data["originalStartTime"] = copy.deepcopy(data["start"])
        return data

    def _virtual_instance(self, calendar: Calendar, event_id: str) -> dict[str, Any] | None:
        """An unmodified instance of a live series, computed from the master."""
        match = INSTANCE_ID_RE.match(event_id)
        if not match:
            return None
        master_record = calendar.events.get(match.group("parent"))
        if master_record is None or not master_record.data.get("recurrence"):
            return None
        master = master_record.data
        if master["status"] == "cancelled":
            return None
        stamp = match.group("stamp")
        tz = self._series_tz(calendar, master)
        if "T" in stamp:
            target = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        else:
            target = datetime.combine(datetime.strptime(stamp, "%Y%m%d").date(), time(0), tzinfo=tz)
        for occurrence in self.occurrences(calendar, master, target + timedelta(seconds=1)):
            instance = self.instance_from_master(calendar, master, occurrence)
            if instance["id"] == event_id:
                return instance
        return None

    # -- event operations ------------------------------------------------------------------------------------------
    def get_event(self, calendar: Calendar, event_id: str) -> dict[str, Any]:
        with self.lock:
            record = calendar.events.get(event_id)
            if record is not None:
                return copy.deepcopy(record.data)
            instance = self._virtual_instance(calendar, event_id)
            if instance is None:
                raise not_found()
            return instance

    @staticmethod
    def check_if_match(current_etag: str, if_match: str | None) -> None:
        if if_match is None:
            return
        candidates = [tag.strip() for tag in if_match.split(",")]
        if "*" in candidates or current_etag in candidates:
            return
        raise ApiError(412, "conditionNotMet", "Precondition Failed", location="If-Match", location_type="header")

    def insert_event(self, calendar: Calendar, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            event_id = body.get("id")
            if event_id is not None:
                if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
                    raise invalid("Invalid resource id value.", location="id")
                if event_id in calendar.events:
                    raise ApiError(409, "duplicate", "The requested identifier already exists.")
            else:
                event_id = self.new_event_id()
            data = self._normalise(calendar, body, None, params, event_id)
            self._save(calendar, data)
            self._record_emails(calendar, data, params, "insert")
            return copy.deepcopy(data)

    def import_event(self, calendar: Calendar, body: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            uid = body.get("iCalUID")
            if not uid:
                raise required("iCalUID")
            event_types.check_import(body)
            for record in calendar.events.values():
                if record.data.get("iCalUID") == uid and not record.data.get("recurringEventId"):
                    return self.write_event(calendar, record.data["id"], body, params, patch=False)
            return self.insert_event(calendar, {k: v for k, v in body.items() if k != "id"}, params)

    def write_event(self, calendar: Calendar, event_id: str, body: dict[str, Any], params: dict[str, Any], *,
                    patch: bool, if_match: str | None = None) -> dict[str, Any]:
        """update (PUT, full replace) or patch; writing an instance id stores a modified exception."""
        with self.lock:
            current = self.get_event(calendar, event_id)
            self.check_if_match(current["etag"], if_match)
            public = {k: v for k, v in current.items() if k not in ("etag",)}
            new_body = _merge_patch(public, body) if patch else body
            if current.get("_origin") and not params.get("_as_organiser"):
                return self._guest_write(calendar, current, new_body, params)
            params = dict(params, _touched=set(body) if patch else None)
            data = self._normalise(calendar, new_body, current, params, event_id)
            self._save(calendar, data)
            self._record_emails(calendar, data, params, "update")
            return copy.deepcopy(data)

    def delete_event(self, calendar: Calendar, event_id: str, params: dict[str, Any],
                     if_match: str | None = None) -> None:
        with self.lock:
            current = self.get_event(calendar, event_id)
            if current["status"] == "cancelled":
                raise ApiError(410, "deleted", "Resource has been deleted")
            self.check_if_match(current["etag"], if_match)
            if current.get("_origin") and not params.get("_as_organiser"):
                self._guest_delete(calendar, current, params)
                return
            self._cancel(calendar, current)
            self._record_emails(calendar, current, params, "delete")
            if current.get("recurrence"):
                for record in list(calendar.events.values()):
                    if record.data.get("recurringEventId") == event_id and record.data["status"] != "cancelled":
                        self._cancel(calendar, record.data)

    def _guest_delete(self, calendar: Calendar, current: dict[str, Any], params: dict[str, Any]) -> None:
        """A guest deleting an invitation removes it from their calendar and declines it (the organiser's event
        stays; the guest's answer becomes `declined`, as Calendar does when a guest removes an event)."""
        removed = copy.deepcopy(current)
        removed.update(status="cancelled", updated=rfc3339(self.clock.now()), etag=self.new_etag(),
                       _keep_body=True, _removed_by_attendee=True)
        self._save(calendar, removed)
        origin = self.calendars.get(current["_origin"])
        if origin is None:
            return
        try:
            organiser = self.get_event(origin, current["id"])
        except ApiError:
            return
        attendees = copy.deepcopy(organiser.get("attendees") or [])
        for attendee in attendees:
            if attendee["email"].lower() == calendar.owner:
                attendee["responseStatus"] = "declined"
        if organiser["status"] != "cancelled":
            self.write_event(origin, current["id"], {"attendees": attendees}, dict(params, _as_organiser=True),
                             patch=True)

    def _cancel(self, calendar: Calendar, data: dict[str, Any]) -> None:
        cancelled = copy.deepcopy(data)
        cancelled["status"] = "cancelled"
        cancelled["updated"] = rfc3339(self.clock.now())
        cancelled["etag"] = self.new_etag()
        self._save(calendar, cancelled)

    def move_event(self, calendar: Calendar, event_id: str, destination: Calendar,
                   params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            record = calendar.events.get(event_id)
            if record is None or record.data["status"] == "cancelled":
                raise not_found()
            if record.data.get("recurringEventId"):
                raise invalid("Cannot move an instance of a recurring event.", reason="cannotChangeOrganizerOfInstance")
            event_types.check_move(record.data)
            if record.data.get("_origin"):
                raise ApiError(403, "forbiddenForNonOrganizer",
                               "Shared properties can only be changed by the organizer of the event.",
                               domain="calendar")
            if event_id in destination.events:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            moved = copy.deepcopy(record.data)
            self._cancel(calendar, record.data)
            owner_ref = {"email": destination.owner if destination.primary else destination.id, "self": True}
            if not destination.primary:
                owner_ref["displayName"] = destination.summary
            moved["organizer"] = owner_ref
            moved["updated"] = rfc3339(self.clock.now())
            moved["etag"] = self.new_etag()
            self._save(destination, moved)
            return copy.deepcopy(moved)

    def reply(self, calendar: Calendar, event_id: str, email: str, status: str) -> dict[str, Any]:
        """An attendee answers the invitation; stored like any other write."""
        with self.lock:
            current = self.get_event(calendar, event_id)
            attendees = copy.deepcopy(current.get("attendees") or [])
            for attendee in attendees:
                if attendee["email"].lower() == email.lower():
                    attendee["responseStatus"] = status
                    break
            else:
                raise ApiError(404, "notFound", f"{email} is not an attendee")
            return self.write_event(calendar, event_id, {"attendees": attendees}, {"supportsAttachments": False,
                                                                                    "conferenceDataVersion": 1},
                                    patch=True)

    def split_series(self, calendar: Calendar, series_id: str, instance_id: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        """The user edits "this and following events" in Calendar: the series splits in two.

        https://developers.google.com/workspace/calendar/api/guides/recurringevents ("Modifying all following
        instances": the original gets an UNTIL just before the chosen instance and a new series starts there).
        As recorded from Google: the new series' id is `<id>_R<YYYYMMDDTHHMMSS>` (the split instant in UTC, or
        `_R<YYYYMMDD>` for all-day series), its iCalUID `<new id>@google.com`; exceptions of the original from the
        split on are dropped (cancelled), and a COUNT is shared out between the two series. Both writes reach the
        change log, so sync lists and push notifications show both series.
        """
        with self.lock:
            record = calendar.events.get(series_id)
            if record is None or not record.data.get("recurrence") or record.data["status"] == "cancelled":
                raise not_found()
            master = record.data
            instance = self.get_event(calendar, instance_id)
            if instance.get("recurringEventId") != series_id:
                raise invalid("Not an instance of this series.", location="instance")
            tz = self._series_tz(calendar, master)
            split_at = parse_event_time(instance["originalStartTime"], "originalStartTime", tz)
            first = parse_event_time(master["start"], "start", tz)
            control = {"_control": True, "supportsAttachments": True, "conferenceDataVersion": 1}
            if to_instant(split_at, tz) <= to_instant(first, tz):
                return self.write_event(calendar, series_id, patch, control, patch=True)
            before = list(self.occurrences(calendar, master, to_instant(split_at, tz)))
            if isinstance(split_at, datetime):
                stamp = split_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
                until = (split_at.astimezone(UTC) - timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
            else:
                stamp = split_at.strftime("%Y%m%d")
                until = (split_at - timedelta(days=1)).strftime("%Y%m%d")
            new_id = f"{series_id}_R{stamp}"
            original_lines, new_lines = [], []
            for line in master["recurrence"]:
                if not line.upper().startswith("RRULE:"):
                    original_lines.append(line)
                    new_lines.append(line)
                    continue
                parts = [p for p in line.split(":", 1)[1].split(";") if p]
                count = next((int(p.split("=", 1)[1]) for p in parts if p.upper().startswith("COUNT=")), None)
                kept = [p for p in parts if not p.upper().startswith(("COUNT=", "UNTIL="))]
                original_lines.append("RRULE:" + ";".join([*kept, f"UNTIL={until}"]))
                rest = [p for p in parts if not p.upper().startswith("COUNT=")]
                if count is not None:
                    rest.append(f"COUNT={max(count - len(before), 1)}")
                new_lines.append("RRULE:" + ";".join(rest))
            start = parse_event_time(master["start"], "start", tz)
            end = parse_event_time(master["end"], "end", tz)
            body = {k: copy.deepcopy(v) for k, v in master.items() if k not in SERVER_FIELDS and
                    not k.startswith("_") and k not in ("etag", "sequence")}
            if isinstance(split_at, datetime):
                end_tz = _zone(master["end"]["timeZone"], "end") if master["end"].get("timeZone") else tz
                body["start"] = dict(master["start"], dateTime=split_at.astimezone(tz).isoformat())
                body["end"] = dict(master["end"], dateTime=(split_at + (end - start)).astimezone(end_tz).isoformat())
            else:
                body["start"] = {"date": split_at.isoformat()}
                body["end"] = {"date": (split_at + (end - start)).isoformat()}
            body["recurrence"] = new_lines
            body = _merge_patch(body, patch)
            body["iCalUID"] = f"{new_id}@google.com"
            self.write_event(calendar, series_id, {"recurrence": original_lines}, control, patch=True)
            for other in list(calendar.events.values()):
                data = other.data
                if data.get("recurringEventId") == series_id and data["status"] != "cancelled" and \
                        to_instant(parse_event_time(data["originalStartTime"], "originalStartTime", tz), tz) >= \
                        to_instant(split_at, tz):
                    self._cancel(calendar, data)
            created = self._normalise(calendar, body, None, control, new_id)
            self._save(calendar, created)
            return copy.deepcopy(created)

    # -- listing ---------------------------------------------------------------------------------------------------
    def minimal(self, data: dict[str, Any], *, placeholders: bool = False,
                live_exception: bool = False) -> dict[str, Any]:
        """A cancelled item as a list shows it.

        guides/sync and the events reference (status "cancelled"): a cancelled exception of a live series carries
        id, recurringEventId and originalStartTime; any other deleted event only its id. A guest's copy removed by
        the organiser keeps its whole body (recorded Google responses). `placeholders`: on updatedMin /
        showDeleted lists deleted events carry start/end 2000-01-01 (recorded Google responses; option
        placeholder_deleted_dates).
        """
        if data["status"] != "cancelled":
            return data
        if data.get("_keep_body") or not self.options.minimal_cancelled:
            shaped = dict(data)
        else:
            keys = ("kind", "etag", "id", "status", "recurringEventId", "originalStartTime")
            shaped = {k: data[k] for k in keys if k in data}
        if placeholders and not live_exception and self.options.placeholder_deleted_dates:
            shaped["start"] = dict(PLACEHOLDER_DATE)
            shaped["end"] = dict(PLACEHOLDER_DATE)
        return shaped

    def event_bounds(self, calendar: Calendar, data: dict[str, Any]) -> tuple[datetime, datetime]:
        start = parse_event_time(data["start"], "start", calendar.tz)
        end = parse_event_time(data["end"], "end", calendar.tz)
        return to_instant(start, calendar.tz), to_instant(end, calendar.tz)

    @staticmethod
    def hash_query(params: dict[str, Any]) -> str:
        relevant = {k: v for k, v in params.items() if k not in ("pageToken", "maxResults", "calendarId")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def encode_page(self, key: list[str], as_of: int, calendar: Calendar, query_hash: str) -> str:
        return _b64({"k": key, "a": as_of, "g": calendar.generation, "h": query_hash})

    @staticmethod
    def decode_page(token: str, query_hash: str) -> dict[str, Any]:
        try:
            data = _unb64(token)
            if data["h"] != query_hash:
                raise ValueError("page token from another query")
            return data
        except (ValueError, KeyError, TypeError) as error:
            raise invalid("Invalid page token value.", location="pageToken") from error

    def expansion_end(self, params: dict[str, Any]) -> datetime:
        if params.get("timeMax"):
            return parse_rfc3339(params["timeMax"]).astimezone(UTC)
        anchor = self.clock.now()
        if params.get("timeMin"):
            anchor = max(anchor, parse_rfc3339(params["timeMin"]).astimezone(UTC))
        return anchor + timedelta(days=self.options.recurrence_horizon_days)

    def expand_series(self, calendar: Calendar, master: dict[str, Any], window_end: datetime) -> list[dict[str, Any]]:
        """Unmodified instances of a series (stored exceptions are separate records and are skipped here)."""
        instances = []
        for occurrence in self.occurrences(calendar, master, window_end):
            instance = self.instance_from_master(calendar, master, occurrence)
            if instance["id"] not in calendar.events:
                instances.append(instance)
        return instances
