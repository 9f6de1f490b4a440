"""Structured JSON logs that Cloud Logging understands (severity, message, labels), never `print`.

Why: one line of JSON per decision, with user / calendar / channel ids as fields, is what makes a sync service
debuggable in production. Secrets are redacted by key name before anything is written (`code` is
free for error codes: an OAuth authorization code is only ever logged, if at all, as `authorization_code`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRET_KEYS = frozenset(
    {
        "refresh_token",
        "access_token",
        "token",
        "id_token",
        "client_secret",
        "authorization_code",
        "code_verifier",
        "authorization",
    }
)
_configured = False


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if k.lower() in _SECRET_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one JSON object with Cloud Logging's special fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(_redact(fields))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Install the JSON formatter on the root logger once (idempotent; cheap at cold start)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


def log_event(logger: logging.Logger, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured decision; `fields` become top-level JSON keys (secrets redacted by name)."""
    logger.log(level, message, extra={"fields": fields})
