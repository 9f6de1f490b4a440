"""Google-shaped API errors (`{"error": {"errors": [...], "code", "message"}}`)."""

from __future__ import annotations

from typing import Any

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ApiError(Exception):
    """An error answered to an API client exactly in Google's JSON error shape."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}
        self._body = body

    def body(self) -> dict[str, Any]:
        if self._body is not None:
            return self._body
        item: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location_type:
            item["locationType"] = self.location_type
        if self.location:
            item["location"] = self.location
        return {"error": {"errors": [item], "code": self.code, "message": self.message}}


def invalid(message: str, *, location: str | None = None, reason: str = "invalid") -> ApiError:
    """400 for a semantically invalid value (Google uses reason `invalid` or a specific one)."""
    return ApiError(400, reason, message, location=location, location_type="parameter" if location else None)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "badRequest", message)


def required(field: str) -> ApiError:
    return ApiError(400, "required", "Required", location=field, location_type="parameter")


def not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


FULL_SYNC_REQUIRED_BODY: dict[str, Any] = {
    "error": {
        "errors": [
            {
                "domain": "calendar",
                "reason": "fullSyncRequired",
                "message": "Sync token is no longer valid, a full sync is required.",
                "locationType": "parameter",
                "location": "syncToken",
            }
        ],
        "code": 410,
        "message": "Sync token is no longer valid, a full sync is required.",
    }
}


def full_sync_required() -> ApiError:
    """410 with exactly the body from the facts sheet."""
    import copy

    return ApiError(
        410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.",
        domain="calendar", body=copy.deepcopy(FULL_SYNC_REQUIRED_BODY),
    )


def updated_min_too_long_ago() -> ApiError:
    """410 as https://developers.google.com/workspace/calendar/api/guides/errors lists it ("410: Gone",
    updatedMinTooLongAgo)."""
    return ApiError(410, "updatedMinTooLongAgo", "The requested minimum modification time lies too far in the past.",
                    domain="calendar", location="updatedMin", location_type="parameter")


def auth_error() -> ApiError:
    return ApiError(
        401, "authError", "Invalid Credentials", location="Authorization", location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def insufficient_permissions() -> ApiError:
    return ApiError(
        403, "insufficientPermissions", "Request had insufficient authentication scopes.",
        body={
            "error": {
                "errors": [
                    {"domain": "global", "reason": "insufficientPermissions", "message": "Insufficient Permission"}
                ],
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
            }
        },
    )
