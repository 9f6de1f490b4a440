"""A thin, retrying wrapper around the unmodified google-api-python-client Calendar v3 service.

Why: every Google call in the library goes through `CalendarClient.execute`, which (1) retries what Google asks us to
retry (403/429 rate limits, 500/502/503/504, transport errors) with truncated exponential backoff and full jitter and an
injectable sleep, (2) turns every other answer into a typed `shared.errors` exception, (3) counts calls per method for
the benchmarks. The discovery document is parsed once per process; each user gets an authorized HTTP of their own.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import (
    DuplicateId,
    FullSyncRequired,
    GoogleApiError,
    GoogleNotFound,
    GooglePermanentError,
    GoogleTransientError,
    NeedsReauth,
    PreconditionFailed,
)
from shared.logs import log_event

if TYPE_CHECKING:
    from google.oauth2.credentials import Credentials

    from shared.config import Settings

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
# 410 reasons that mean "list everything again" (guides/errors: "410: Gone" -> fullSyncRequired for a dead sync
# token, updatedMinTooLongAgo for an updatedMin Google no longer has deletions for). Every other 410 (`deleted`, on a
# write or delete of a deleted event) means the event is already gone.
FULL_SYNC_REASONS = frozenset({"fullSyncRequired", "updatedMinTooLongAgo"})
MAX_BACKOFF_SECONDS = 32.0
LIST_PAGE_SIZE = 2500  # Google's maximum: 10,000 events import in 4 pages, not 40.
HTTP_TIMEOUT_SECONDS = 30


def _error_reason(content: bytes | str | None) -> tuple[str, str]:
    """(reason, message) from Google's error body; empty strings when the body is not Google's shape."""
    try:
        body = json.loads(content or b"{}")
        error = body.get("error", {})
        if isinstance(error, str):  # OAuth-style {"error": "invalid_grant"}
            return error, str(body.get("error_description", ""))
        errors = error.get("errors") or [{}]
        return str(errors[0].get("reason", "")), str(error.get("message", ""))
    except (ValueError, AttributeError, TypeError):
        return "", ""


def classify_http_error(status: int, content: bytes | str | None) -> GoogleApiError:
    """Map one Google error answer to the library's typed exception (README, Google facts: errors and limits)."""
    reason, message = _error_reason(content)
    message = message or f"Google answered {status}"
    if status == 410 and reason in FULL_SYNC_REASONS:
        return FullSyncRequired(message, status=status, reason=reason)
    if status in (404, 410):
        return GoogleNotFound(message, status=status, reason=reason)
    if status == 409:
        return DuplicateId(message, status=status, reason=reason)
    if status == 412:
        return PreconditionFailed(message, status=status, reason=reason)
    if status in RETRYABLE_STATUSES or (status == 403 and reason in RATE_LIMIT_REASONS):
        return GoogleTransientError(message, status=status, reason=reason)
    return GooglePermanentError(message, status=status, reason=reason)


@functools.cache
def _discovery_service(api_endpoint: str | None) -> Any:
    """The Calendar v3 service object, built once per endpoint from the discovery doc shipped in the client."""
    import httplib2
    from googleapiclient.discovery import build

    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return build(
        "calendar",
        "v3",
        http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS),
        client_options=options,
        cache_discovery=False,
        static_discovery=True,
    )


@functools.cache
def _events_resource(api_endpoint: str | None) -> Any:
    """`service.events()`, built once: each call of it builds every method of the resource again from the discovery
    document (docstrings included), a fifth of an events.list call's CPU on the webhook's path."""
    return _discovery_service(api_endpoint).events()


def build_credentials(refresh_token: str, settings: Settings, scopes: list[str] | None = None) -> Credentials:
    """OAuth user credentials that google-auth refreshes against the configured token endpoint."""
    from google.oauth2.credentials import Credentials

    return Credentials(
        token=None,
        refresh_token=refresh_token,
        client_id=settings.oauth_client_id,
        client_secret=settings.oauth_client_secret,
        token_uri=settings.oauth_token_uri,
        scopes=scopes or None,
    )


class CalendarClient:
    """One user's Calendar API access: typed errors, bounded jittered retries, call counting."""

    def __init__(
        self,
        credentials: Credentials,
        settings: Settings,
        *,
        user_id: str = "",
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._credentials = credentials
        self._settings = settings
        self._service = _discovery_service(settings.google_api_endpoint)
        self._events = _events_resource(settings.google_api_endpoint)
        self._local = threading.local()
        self.user_id = user_id
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.calls: collections.Counter[str] = collections.Counter()
        # (method, started, finished) per call when a benchmark attaches a list (the critical path is measured).
        self.call_log: list[tuple[str, float, float]] | None = None

    @property
    def service(self) -> Any:
        return self._service

    def _http(self) -> Any:
        """httplib2 is not thread-safe: one authorized HTTP per thread, sharing the credentials."""
        http = getattr(self._local, "http", None)
        if http is None:
            import google_auth_httplib2
            import httplib2

            http = google_auth_httplib2.AuthorizedHttp(
                self._credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS)
            )
            self._local.http = http
        return http

    def execute(self, request: Any, *, headers: dict[str, str] | None = None) -> Any:
        """Run one API request with Google's recommended backoff; raise a typed error on failure."""
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import HttpError

        method = getattr(request, "methodId", "") or "unknown"
        if headers:
            request.headers.update(headers)
        attempts = self._settings.google_max_retries + 1
        last_error: GoogleApiError | None = None
        for attempt in range(attempts):
            self.calls[method] += 1
            started = time.perf_counter()
            try:
                return request.execute(http=self._http())
            except HttpError as exc:
                error = classify_http_error(int(exc.resp.status), exc.content)
                if exc.resp.status == 401:
                    raise NeedsReauth("Google rejected the refreshed access token", reason="authError") from exc
                if not isinstance(error, GoogleTransientError):
                    raise error from exc
                last_error = error
            except RefreshError as exc:
                if "invalid_grant" in str(exc) or "invalid_client" in str(exc):
                    raise NeedsReauth(
                        "the Google refresh token was revoked or expired", reason="invalid_grant"
                    ) from exc
                last_error = GoogleTransientError("token refresh failed", status=503, reason="refreshFailed")
            except (TransportError, OSError, TimeoutError) as exc:
                last_error = GoogleTransientError(
                    f"transport error: {type(exc).__name__}", status=503, reason="transport"
                )
            finally:
                if self.call_log is not None:
                    self.call_log.append((method, started, time.perf_counter()))
            if attempt + 1 < attempts:
                delay = self.rng.uniform(
                    0, min(MAX_BACKOFF_SECONDS, self._settings.google_retry_base_seconds * 2**attempt)
                )
                log_event(
                    logger,
                    "google call retried",
                    level=logging.WARNING,
                    method=method,
                    attempt=attempt + 1,
                    status=last_error.status,
                    reason=last_error.reason,
                    delay_s=round(delay, 3),
                    user_id=self.user_id,
                )
                self.sleep(delay)
        assert last_error is not None
        raise last_error

    # --- events ---------------------------------------------------------------------------------------------------
    def list_events_page(
        self,
        calendar_id: str,
        *,
        sync_token: str | None = None,
        page_token: str | None = None,
        max_results: int = LIST_PAGE_SIZE,
    ) -> dict[str, Any]:
        """One page of events.list: incremental with a sync token, else a full list including deletions."""
        params: dict[str, Any] = {"calendarId": calendar_id, "maxResults": max_results, "showDeleted": True}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        return self.execute(self._events.list(**params))

    def iter_event_pages(self, calendar_id: str, *, sync_token: str | None = None) -> Iterator[dict[str, Any]]:
        """Every page of one list run; the last page carries nextSyncToken."""
        page_token: str | None = None
        while True:
            page = self.list_events_page(calendar_id, sync_token=sync_token, page_token=page_token)
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return

    def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        return self.execute(self._events.get(calendarId=calendar_id, eventId=event_id))

    def insert_event(self, calendar_id: str, body: dict[str, Any], *, send_updates: str = "none") -> dict[str, Any]:
        request = self._events.insert(
            calendarId=calendar_id,
            body=body,
            sendUpdates=send_updates,
            supportsAttachments=True,
            conferenceDataVersion=1,
        )
        return self.execute(request)

    def patch_event(
        self,
        calendar_id: str,
        event_id: str,
        body: dict[str, Any],
        *,
        etag: str | None = None,
        send_updates: str = "none",
    ) -> dict[str, Any]:
        request = self._events.patch(
            calendarId=calendar_id,
            eventId=event_id,
            body=body,
            sendUpdates=send_updates,
            supportsAttachments=True,
            conferenceDataVersion=1,
        )
        return self.execute(request, headers={"If-Match": etag} if etag else None)

    def delete_event(
        self, calendar_id: str, event_id: str, *, etag: str | None = None, send_updates: str = "none"
    ) -> None:
        """Delete; a 404/410 (already gone) counts as done."""
        request = self._events.delete(calendarId=calendar_id, eventId=event_id, sendUpdates=send_updates)
        try:
            self.execute(request, headers={"If-Match": etag} if etag else None)
        except GoogleNotFound:
            return

    # --- notification channels and calendars ---------------------------------------------------------------------
    def watch_events(self, calendar_id: str, channel: dict[str, Any]) -> dict[str, Any]:
        return self.execute(self._events.watch(calendarId=calendar_id, body=channel))

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a channel; one that Google no longer knows is already stopped."""
        try:
            self.execute(self._service.channels().stop(body={"id": channel_id, "resourceId": resource_id}))
        except GoogleNotFound:
            return

    def list_calendars(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        while True:
            page = self.execute(self._service.calendarList().list(maxResults=250, pageToken=page_token))
            items.extend(page.get("items", []))
            page_token = page.get("nextPageToken")
            if not page_token:
                return items
