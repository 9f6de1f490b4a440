"""One exception base for the whole library, with typed subclasses.

Why: the library raises what went wrong in domain terms; only the HTTP edge (`functions/`) turns an error into a status
code and a JSON body, through `http_status` and `public_body()`. Nothing secret ever goes into `detail`.
"""

from __future__ import annotations

from typing import Any


class SyncError(Exception):
    """Base of every error the sync library raises on purpose."""

    http_status: int = 500
    code: str = "internal"
    retryable: bool = False

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def public_body(self) -> dict[str, Any]:
        """The JSON body an HTTP caller sees: a stable code, a message, and non-secret details."""
        body: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if self.detail:
            body["error"]["detail"] = self.detail
        return body


# --- bad input (4xx, nothing changed) -----------------------------------------------------------------------------
class BadRequest(SyncError):
    http_status = 400
    code = "bad_request"


class PayloadTooLarge(BadRequest):
    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BadRequest):
    http_status = 415
    code = "unsupported_media_type"


class MethodNotAllowed(BadRequest):
    http_status = 405
    code = "method_not_allowed"


class Unauthenticated(SyncError):
    http_status = 401
    code = "unauthenticated"


class Forbidden(SyncError):
    http_status = 403
    code = "forbidden"


class NotFound(SyncError):
    http_status = 404
    code = "not_found"


class Conflict(SyncError):
    http_status = 409
    code = "conflict"


# --- webhook rejections: the documented non-retryable statuses for Google -----------------------------------------
class ChannelRejected(SyncError):
    """A notification we will not act on. 4xx so Google does not retry it (it retries only 500/502/503/504)."""

    http_status = 403
    code = "channel_rejected"


class UnknownChannel(ChannelRejected):
    http_status = 404
    code = "unknown_channel"


class ChannelGone(ChannelRejected):
    """Stopped or expired channel: 410 tells a human reading logs it existed once."""

    http_status = 410
    code = "channel_gone"


# --- Google side --------------------------------------------------------------------------------------------------
class GoogleApiError(SyncError):
    """An error answer from Google Calendar, with Google's status and reason."""

    http_status = 502
    code = "google_error"

    def __init__(self, message: str, *, status: int, reason: str = "", **detail: Any) -> None:
        super().__init__(message, status=status, reason=reason, **detail)
        self.status = status
        self.reason = reason


class GoogleTransientError(GoogleApiError):
    """5xx, 429 or a rate-limit 403 that survived our bounded retries: the caller should retry later."""

    http_status = 503
    code = "google_unavailable"
    retryable = True


class GooglePermanentError(GoogleApiError):
    """A 4xx that retrying will not fix (bad request, forbidden, not found...)."""

    code = "google_rejected"


class FullSyncRequired(GoogleApiError):
    """410 fullSyncRequired: the stored sync token is dead; run a reconciling full sync."""

    code = "full_sync_required"


class PreconditionFailed(GoogleApiError):
    """412 conditionNotMet: the etag we sent is stale."""

    code = "precondition_failed"


class DuplicateId(GoogleApiError):
    """409 duplicate: an event with the client-supplied id already exists."""

    code = "duplicate"


class GoogleNotFound(GoogleApiError):
    """404 notFound or 410 deleted."""

    code = "google_not_found"


class NeedsReauth(SyncError):
    """The stored refresh token is dead (invalid_grant) or missing: the user must connect again.

    `recorded` is set once the integration has been marked (by `AppContext.reauth_guard`), so an outer guard that sees
    the same exception does not mark it twice.
    """

    http_status = 409
    code = "needs_reauth"
    recorded: bool = False


class StoreUnavailable(SyncError):
    """Firestore did not answer; the caller should retry (5xx at the edge so Google retries)."""

    http_status = 503
    code = "store_unavailable"
    retryable = True


# --- Firestore conditional writes (raised by shared/store.py only) -------------------------------------------------
class DocumentChanged(SyncError):
    """A conditional write lost: the document changed, appeared or vanished since it was read. Re-read and re-plan."""

    http_status = 409
    code = "document_changed"
    retryable = True


class DocumentMissing(DocumentChanged):
    """The document to update or delete does not exist (any more)."""

    code = "document_missing"


class KeptChanging(SyncError):
    """Read -> plan -> write-if-unchanged lost every attempt: the document kept changing; leave it to a later run."""

    http_status = 503
    code = "kept_changing"
    retryable = True
