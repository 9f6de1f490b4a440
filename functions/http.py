"""The HTTP edge shared by every HTTP function: JSON bodies, pydantic validation, and errors to status codes.

Why here and only here: the library raises typed `SyncError`s; this module is the single place that turns them (and
validation errors) into a status code and a JSON body that says what is wrong, without leaking secrets or internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest, MethodNotAllowed, PayloadTooLarge, SyncError, UnsupportedMediaType
from shared.logs import configure_logging, log_event

logger = logging.getLogger("functions.http")
MAX_BODY_BYTES = 64 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> tuple[str, int, dict[str, str]]:
    return json.dumps(body, default=str), status, {**JSON_HEADERS, **(headers or {})}


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as [{field, problem}] without echoing the submitted values."""
    return [{"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]} for err in exc.errors()]


def require_method(request: Any, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"use {' or '.join(methods)}", allowed=list(methods))


def parse_json_body(request: Any, model: type[ModelT], *, allow_empty: bool = False) -> ModelT:
    """Read a bounded JSON body and validate it; unknown fields, wrong types and bad dates are 4xx."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if allow_empty:
            return model()
        raise BadRequest("a JSON body is required")
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body is not valid JSON") from exc
    except RecursionError as exc:  # `[[[[...` thousands deep fits in the size limit and exhausts the parser's stack
        raise BadRequest("the body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("the body is not valid", fields=validation_details(exc)) from exc


def error_response(exc: SyncError) -> tuple[str, int, dict[str, str]]:
    headers = {"Retry-After": "30"} if exc.retryable and exc.http_status >= 500 else None
    return json_response(exc.public_body(), exc.http_status, headers)


# Browsers call the user-facing functions with an `Authorization: Bearer` header, never cookies, so any origin may
# ask: the ID token, not the origin, is what authenticates.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "3600",
}


def _with_cors(response: Any) -> Any:
    if isinstance(response, tuple) and len(response) == 3:
        body, status, headers = response
        return body, status, {**headers, "Access-Control-Allow-Origin": "*"}
    return response


def handle(
    request: Any, handler: Callable[[Any], tuple[str, int, dict[str, str]]], *, name: str, cors: bool = False
) -> Any:
    """Run one handler; typed errors become their status, anything unexpected a 500 with no internals.

    With `cors`, a browser's preflight (OPTIONS) is answered here, before authentication, as browsers send no token
    on a preflight; every other answer carries the allow-origin header.
    """
    configure_logging()
    if cors and request.method == "OPTIONS":
        return "", 204, CORS_HEADERS
    response = _handle(request, handler, name=name)
    return _with_cors(response) if cors else response


def _handle(request: Any, handler: Callable[[Any], tuple[str, int, dict[str, str]]], *, name: str) -> Any:
    try:
        return handler(request)
    except SyncError as exc:
        log_event(
            logger,
            "request rejected" if exc.http_status < 500 else "request failed",
            level=logging.WARNING if exc.http_status < 500 else logging.ERROR,
            function=name,
            status=exc.http_status,
            code=exc.code,
            reason=exc.message,
        )
        return error_response(exc)
    except Exception:
        logger.exception("unexpected error", extra={"fields": {"function": name}})
        return json_response({"error": {"code": "internal", "message": "internal error"}}, 500)
