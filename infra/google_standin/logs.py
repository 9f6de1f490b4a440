"""Structured JSON logging for the stand-in (one JSON object per line)."""

from __future__ import annotations

import json
import logging
from typing import Any

STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {"severity": record.levelname, "logger": record.name,
                                   "message": record.getMessage()}
        payload.update({k: v for k, v in vars(record).items() if k not in STANDARD_ATTRS})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("google_standin")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
