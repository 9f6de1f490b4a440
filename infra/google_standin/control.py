"""`ControlClient`: the Python face of `/_control/...`, used by tests, the demo and benchmarks."""

from __future__ import annotations

import urllib.parse
from typing import Any

import requests


class ControlError(RuntimeError):
    """The control API refused a request (status and body attached)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class ControlClient:
    """Thin HTTP client; every method maps to one control endpoint and returns its JSON."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, f"{self.base_url}/_control/{path}", json=body, params=params,
                                        timeout=self.timeout)
        payload = response.json() if response.content else {}
        if response.status_code >= 400:
            raise ControlError(response.status_code, payload)
        return payload

    # -- setup -----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        self._call("POST", "reset")

    def options(self) -> dict[str, Any]:
        return self._call("GET", "options")

    def set_options(self, **options: Any) -> dict[str, Any]:
        return self._call("POST", "options", options)

    def create_account(self, email: str, time_zone: str = "UTC", summary: str | None = None) -> dict[str, Any]:
        return self._call("POST", "accounts", {"email": email, "timeZone": time_zone, "summary": summary})

    def create_calendar(self, email: str, summary: str, time_zone: str | None = None,
                        calendar_id: str | None = None) -> dict[str, Any]:
        """Secondary calendar; returns its calendarList entry (use ["id"])."""
        return self._call("POST", "calendars", {"email": email, "summary": summary, "timeZone": time_zone,
                                                "id": calendar_id})

    def set_current_user(self, email: str | None) -> None:
        self._call("POST", "current_user", {"email": email})

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str] | None = None) -> None:
        self._call("POST", "clients", {"client_id": client_id, "client_secret": client_secret,
                                       "redirect_uris": redirect_uris})

    def issue_refresh_token(self, email: str, client_id: str | None = None,
                            scopes: list[str] | None = None) -> str:
        return self._call("POST", "refresh_tokens", {"email": email, "client_id": client_id,
                                                     "scopes": scopes})["refresh_token"]

    def issue_access_token(self, email: str, client_id: str | None = None, scopes: list[str] | None = None) -> str:
        return self._call("POST", "access_tokens", {"email": email, "client_id": client_id,
                                                    "scopes": scopes})["access_token"]

    def revoke_token(self, token: str) -> bool:
        return self._call("POST", "revoke", {"token": token})["revoked"]

    def expire_access_tokens(self) -> int:
        return self._call("POST", "expire_access_tokens")["expired"]

    def mint_id_token(self, uid: str, audience: str, *, issuer: str | None = None, expires_in: int = 3600,
                      email: str | None = None, issued_at: float | None = None, wrong_key: bool = False,
                      claims: dict[str, Any] | None = None) -> str:
        return self._call("POST", "id_tokens", {
            "uid": uid, "audience": audience, "issuer": issuer, "expires_in": expires_in, "email": email,
            "issued_at": issued_at, "wrong_key": wrong_key, "claims": claims})["id_token"]

    # -- acting as the Google user ---------------------------------------------------------------------------------
    def create_event(self, calendar_id: str, event: dict[str, Any], send_updates: str = "none") -> dict[str, Any]:
        return self._call("POST", f"calendars/{_q(calendar_id)}/events", dict(event, _sendUpdates=send_updates))

    def create_recurring_event(self, calendar_id: str, event: dict[str, Any], rrule: str | list[str]) -> dict[str, Any]:
        lines = [rrule] if isinstance(rrule, str) else list(rrule)
        lines = [line if ":" in line else f"RRULE:{line}" for line in lines]
        return self.create_event(calendar_id, dict(event, recurrence=lines))

    def edit_event(self, calendar_id: str, event_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Patch semantics; an instance id (`<series>_<stamp>`) stores a modified exception."""
        return self._call("PATCH", f"calendars/{_q(calendar_id)}/events/{_q(event_id)}", patch)

    def modify_instance(self, calendar_id: str, instance_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.edit_event(calendar_id, instance_id, patch)

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        self._call("DELETE", f"calendars/{_q(calendar_id)}/events/{_q(event_id)}")

    def cancel_instance(self, calendar_id: str, instance_id: str) -> None:
        self.delete_event(calendar_id, instance_id)

    def move_event(self, calendar_id: str, event_id: str, destination: str) -> dict[str, Any]:
        return self._call("POST", f"calendars/{_q(calendar_id)}/events/{_q(event_id)}/move",
                          {"destination": destination})

    def split_series(self, calendar_id: str, series_id: str, instance_id: str,
                     patch: dict[str, Any] | None = None) -> dict[str, Any]:
        """The user edits "this and following" from `instance_id`: returns the new series (`<id>_R<stamp>`)."""
        return self._call("POST", f"calendars/{_q(calendar_id)}/events/{_q(series_id)}/split",
                          {"instance": instance_id, "patch": patch or {}})

    def update_calendar(self, calendar_id: str, **settings: Any) -> dict[str, Any]:
        """Calendar settings the list envelope reports: summary, description, timeZone, accessRole,
        defaultReminders (a list, possibly []; None back to Google's default)."""
        return self._call("PATCH", f"calendars/{_q(calendar_id)}", settings)

    def reply(self, calendar_id: str, event_id: str, email: str, response_status: str) -> dict[str, Any]:
        return self._call("POST", f"calendars/{_q(calendar_id)}/events/{_q(event_id)}/reply",
                          {"email": email, "responseStatus": response_status})

    def raw_events(self, calendar_id: str) -> list[dict[str, Any]]:
        """Everything stored for a calendar, deleted events and exceptions included (`_seq` = change number)."""
        return self._call("GET", f"calendars/{_q(calendar_id)}/events")["events"]

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        self._call("POST", f"calendars/{_q(calendar_id)}/invalidate_sync_tokens")

    def emails(self, calendar_id: str, event_id: str | None = None) -> dict[str, Any]:
        """Invitation e-mails "sent" because of sendUpdates: {"emails": [...], "recipients": n}."""
        params = {"calendar_id": calendar_id}
        if event_id:
            params["event_id"] = event_id
        return self._call("GET", "emails", params=params)

    # -- faults, quota, counters -----------------------------------------------------------------------------------
    def inject_fault(self, method: str, status: int, reason: str = "backendError", *, message: str | None = None,
                     count: int | None = None, rate: float | None = None, seed: int | None = None,
                     retry_after: int | str | None = None, domain: str = "global", location: str | None = None,
                     location_type: str | None = None, body: dict[str, Any] | None = None) -> None:
        """Fail calls to `method` (e.g. `calendar.events.list`, `*` for all): next `count` calls or at `rate`.

        `body` is answered verbatim (a full custom error body); otherwise the body is built in Google's shape from
        domain, reason, message, location and location_type.
        """
        self._call("POST", "faults", {"method": method, "status": status, "reason": reason,
                                      "message": message or reason, "count": count, "rate": rate, "seed": seed,
                                      "retry_after": retry_after, "domain": domain, "location": location,
                                      "locationType": location_type, "body": body})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, method: str, seconds: float) -> None:
        self._call("POST", "latency", {"method": method, "seconds": seconds})

    def counters(self) -> dict[str, Any]:
        """{"total", "by_method", "by_account", "by_account_method", "by_status"}."""
        return self._call("GET", "counters")

    def reset_counters(self) -> None:
        self._call("DELETE", "counters")

    # -- push ------------------------------------------------------------------------------------------------------
    def channels(self) -> list[dict[str, Any]]:
        return self._call("GET", "channels")["channels"]

    def expire_channel(self, channel_id: str) -> None:
        self._call("POST", f"channels/{_q(channel_id)}/expire")

    def silence_channel(self, channel_id: str) -> None:
        """Google stops delivering on this channel without telling anyone (push.py `silence`)."""
        self._call("POST", f"channels/{_q(channel_id)}/silence")

    def configure_push(self, *, drop_next: int | None = None, drop_rate: float | None = None,
                       duplicate_next: int | None = None, hold: bool | None = None,
                       paused: bool | None = None) -> None:
        self._call("POST", "push", {"drop_next": drop_next, "drop_rate": drop_rate,
                                    "duplicate_next": duplicate_next, "hold": hold, "paused": paused})

    def drop_notifications(self, next_n: int | None = None, rate: float | None = None) -> None:
        self.configure_push(drop_next=next_n, drop_rate=rate)

    def duplicate_notifications(self, next_n: int) -> None:
        self.configure_push(duplicate_next=next_n)

    def hold_notifications(self) -> None:
        self.configure_push(hold=True)

    def release_notifications(self, order: str = "reverse") -> int:
        """Deliver held notifications in `reverse`, `shuffle` or `fifo` order."""
        return self._call("POST", "push/release", {"order": order})["released"]

    def pause_delivery(self) -> None:
        self.configure_push(paused=True)

    def resume_delivery(self) -> None:
        self.configure_push(paused=False)

    def flush(self, timeout: float = 10.0) -> dict[str, Any]:
        """Block until the delivery queue is idle (retries included); returns {"idle", "queued", "held", ...}."""
        return self._call("POST", "push/flush", {"timeout": timeout})

    def notifications(self) -> list[dict[str, Any]]:
        """Every delivery attempt: channel_id, message_number, resource_state, status, outcome, headers, ..."""
        return self._call("GET", "notifications")["notifications"]

    def clear_notifications(self) -> None:
        self._call("DELETE", "notifications")

    # -- clock -----------------------------------------------------------------------------------------------------
    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "clock/advance", {"seconds": seconds})

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "clock")
