"""The `/_control/...` HTTP API: act as the Google user, inject faults, steer push delivery, inspect state."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .limits import FaultRule

if TYPE_CHECKING:
    from .server import Standin

# The user in the Calendar UI: every field writable, and what only the UI/Gmail may create (fromGmail events, birthday
# types other than "birthday", series whose end has no timeZone) allowed.
FULL_ACCESS = {"supportsAttachments": True, "conferenceDataVersion": 1, "_control": True}


class ControlApi:
    """Routes control requests; user-side writes go through the same store as API writes."""

    def __init__(self, standin: Standin) -> None:
        self.standin = standin
        self.routes: list[tuple[str, re.Pattern[str], Any]] = []
        for method, pattern, handler in [
            ("POST", r"reset", self.reset),
            ("GET", r"options", lambda m, q, b: self.standin.options.as_dict()),
            ("POST", r"options", self.set_options),
            ("POST", r"accounts", self.create_account),
            ("POST", r"calendars", self.create_calendar),
            ("POST", r"current_user", self.set_current_user),
            ("POST", r"clients", self.register_client),
            ("POST", r"refresh_tokens", self.issue_refresh_token),
            ("POST", r"access_tokens", self.issue_access_token),
            ("POST", r"revoke", self.revoke),
            ("POST", r"expire_access_tokens", lambda m, q, b: {"expired": self.standin.oauth.expire_access_tokens()}),
            ("POST", r"id_tokens", self.mint_id_token),
            ("PATCH", r"calendars/(?P<cal>[^/]+)", self.update_calendar),
            ("POST", r"calendars/(?P<cal>[^/]+)/events/(?P<event>[^/]+)/split", self.user_split_series),
            ("GET", r"calendars/(?P<cal>[^/]+)/events", self.raw_events),
            ("POST", r"calendars/(?P<cal>[^/]+)/events", self.user_create_event),
            ("PATCH", r"calendars/(?P<cal>[^/]+)/events/(?P<event>[^/]+)", self.user_patch_event),
            ("DELETE", r"calendars/(?P<cal>[^/]+)/events/(?P<event>[^/]+)", self.user_delete_event),
            ("POST", r"calendars/(?P<cal>[^/]+)/events/(?P<event>[^/]+)/move", self.user_move_event),
            ("POST", r"calendars/(?P<cal>[^/]+)/events/(?P<event>[^/]+)/reply", self.user_reply),
            ("POST", r"calendars/(?P<cal>[^/]+)/invalidate_sync_tokens", self.invalidate_sync_tokens),
            ("GET", r"emails", self.emails),
            ("POST", r"faults", self.add_fault),
            ("DELETE", r"faults", lambda m, q, b: self.standin.limits.clear_faults() or {}),
            ("POST", r"latency", self.set_latency),
            ("GET", r"counters", lambda m, q, b: self.standin.limits.counters()),
            ("DELETE", r"counters", self.reset_counters),
            ("GET", r"channels", lambda m, q, b: {"channels": self.standin.push.channel_list()}),
            ("POST", r"channels/(?P<channel>[^/]+)/expire", self.expire_channel),
            ("POST", r"channels/(?P<channel>[^/]+)/silence", self.silence_channel),
            ("POST", r"push", self.configure_push),
            ("POST", r"push/release", lambda m, q, b: {"released": self.standin.push.release(
                b.get("order", "reverse"))}),
            ("POST", r"push/flush", lambda m, q, b: self.standin.push.flush(float(b.get("timeout", 10)))),
            ("GET", r"notifications", lambda m, q, b: {"notifications": self.standin.push.deliveries()}),
            ("DELETE", r"notifications", lambda m, q, b: self.standin.push.clear_deliveries() or {}),
            ("GET", r"clock", self.clock),
            ("POST", r"clock/advance", self.advance_clock),
        ]:
            self.routes.append((method, re.compile(f"^/_control/{pattern}$"), handler))

    def handle(self, method: str, path: str, raw_query: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        query = {k: v[0] for k, v in urllib.parse.parse_qs(raw_query).items()}
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            return 400, {"error": "control body must be JSON"}
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and route_method == method:
                match_args = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                try:
                    result = handler(method, query, body, **match_args)
                except ApiError as error:
                    return error.code, error.body()
                except (ValueError, KeyError, TypeError) as error:
                    return 400, {"error": f"{type(error).__name__}: {error}"}
                return 200, result if result is not None else {}
        return 404, {"error": f"no control route {method} {path}"}

    # -- setup -----------------------------------------------------------------------------------------------------
    def reset(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.standin.reset()
        return {"reset": True}

    def set_options(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.standin.options.update(body)
        return self.standin.options.as_dict()

    def create_account(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self.standin.store.create_account(body["email"], body.get("timeZone", "UTC"), body.get("summary"))
        return {"email": account.email, "calendars": list(account.calendar_ids)}

    def create_calendar(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        store = self.standin.store
        if body["email"].lower() not in store.accounts:
            store.create_account(body["email"])
        calendar = store.create_calendar(body["email"], body.get("summary", "Secondary"), body.get("timeZone"),
                                         body.get("id"))
        return store.calendar_list_entry(calendar)

    def set_current_user(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.standin.oauth.current_user = body.get("email")
        return {"current_user": body.get("email")}

    def register_client(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        client = self.standin.oauth.register_client(body["client_id"], body["client_secret"],
                                                    body.get("redirect_uris"))
        return {"client_id": client.client_id}

    def issue_refresh_token(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        email = body["email"]
        if email.lower() not in self.standin.store.accounts:
            self.standin.store.create_account(email)
        record = self.standin.oauth.issue_refresh_token(
            email, body.get("client_id") or self.standin.options.default_client_id, body.get("scopes"))
        return {"refresh_token": record.token, "scopes": record.scopes}

    def issue_access_token(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        email = body["email"]
        if email.lower() not in self.standin.store.accounts:
            self.standin.store.create_account(email)
        record = self.standin.oauth.issue_access_token(
            email, body.get("client_id") or self.standin.options.default_client_id, body.get("scopes"))
        return {"access_token": record.token, "scopes": record.scopes,
                "expires_in": self.standin.options.access_token_lifetime}

    def revoke(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return {"revoked": self.standin.oauth.revoke(body["token"])}

    def mint_id_token(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        token = self.standin.oauth.mint_id_token(
            body["uid"], body["audience"], issuer=body.get("issuer"), expires_in=int(body.get("expires_in", 3600)),
            email=body.get("email"), issued_at=body.get("issued_at"), wrong_key=bool(body.get("wrong_key")),
            claims=body.get("claims"))
        return {"id_token": token}

    # -- acting as the Google user ---------------------------------------------------------------------------------
    def _calendar(self, calendar_id: str):
        calendar = self.standin.store.calendars.get(calendar_id)
        if calendar is None:
            raise ApiError(404, "notFound", f"Unknown calendar {calendar_id}")
        return calendar

    def raw_events(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str) -> dict[str, Any]:
        with self.standin.store.lock:
            calendar = self._calendar(cal)
            return {"seq": calendar.seq, "generation": calendar.generation,
                    "events": [dict(r.data, _seq=r.seq) for r in calendar.events.values()]}

    def user_create_event(self, method: str, query: dict[str, str], body: dict[str, Any],
                          cal: str) -> dict[str, Any]:
        params = dict(FULL_ACCESS, sendUpdates=body.pop("_sendUpdates", "none"))
        return self.standin.store.insert_event(self._calendar(cal), body, params)

    def user_patch_event(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str,
                         event: str) -> dict[str, Any]:
        return self.standin.store.write_event(self._calendar(cal), event, body, dict(FULL_ACCESS), patch=True)

    def user_delete_event(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str,
                          event: str) -> dict[str, Any]:
        self.standin.store.delete_event(self._calendar(cal), event, dict(FULL_ACCESS))
        return {"deleted": event}

    def user_move_event(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str,
                        event: str) -> dict[str, Any]:
        return self.standin.store.move_event(self._calendar(cal), event, self._calendar(body["destination"]), {})

    def update_calendar(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str) -> dict[str, Any]:
        calendar = self.standin.store.update_calendar(cal, body)
        return self.standin.store.calendar_list_entry(calendar)

    def user_split_series(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str,
                          event: str) -> dict[str, Any]:
        return self.standin.store.split_series(self._calendar(cal), event, body["instance"], body.get("patch") or {})

    def user_reply(self, method: str, query: dict[str, str], body: dict[str, Any], cal: str,
                   event: str) -> dict[str, Any]:
        return self.standin.store.reply(self._calendar(cal), event, body["email"], body["responseStatus"])

    def invalidate_sync_tokens(self, method: str, query: dict[str, str], body: dict[str, Any],
                               cal: str) -> dict[str, Any]:
        self.standin.store.invalidate_sync_tokens(cal)
        return {"invalidated": cal}

    def emails(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self.standin.store.lock:
            calendar = self._calendar(query["calendar_id"])
            sent = [e for e in calendar.emails if "event_id" not in query or e["eventId"] == query["event_id"]]
            return {"emails": sent, "recipients": sum(len(e["recipients"]) for e in sent)}

    # -- faults, push, clock ---------------------------------------------------------------------------------------
    def add_fault(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if body.get("count") is None and body.get("rate") is None:
            body["count"] = 1
        if body.get("seed") is not None:
            self.standin.limits.random.seed(body["seed"])
        retry_after = body.get("retry_after")
        rule = FaultRule(body["method"], int(body["status"]), body.get("reason", "backendError"),
                         body.get("message", "Backend Error"), body.get("count"), body.get("rate"),
                         str(retry_after) if retry_after is not None else None, body.get("domain", "global"),
                         body.get("location"), body.get("locationType"), body.get("body"))
        self.standin.limits.add_fault(rule)
        return {"added": body["method"]}

    def set_latency(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self.standin.limits.lock:
            self.standin.limits.latency[body["method"]] = float(body["seconds"])
        return {"latency": dict(self.standin.limits.latency)}

    def reset_counters(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self.standin.limits.lock:
            self.standin.limits.reset_counters()
        return {}

    def expire_channel(self, method: str, query: dict[str, str], body: dict[str, Any],
                       channel: str) -> dict[str, Any]:
        self.standin.push.expire(channel)
        return {"expired": channel}

    def silence_channel(self, method: str, query: dict[str, str], body: dict[str, Any],
                        channel: str) -> dict[str, Any]:
        self.standin.push.silence(channel)
        return {"silenced": channel}

    def configure_push(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.standin.push.configure(drop_next=body.get("drop_next"), drop_rate=body.get("drop_rate"),
                                    duplicate_next=body.get("duplicate_next"), hold=body.get("hold"),
                                    paused=body.get("paused"))
        return {}

    def clock(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return {"now": self.standin.clock.time(), "offset": self.standin.clock.offset}

    def advance_clock(self, method: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        offset = self.standin.clock.advance(float(body["seconds"]))
        return {"now": self.standin.clock.time(), "offset": offset}
