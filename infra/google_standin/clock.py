"""Injectable clock: tests move the stand-in's "now" forward instead of sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall clock plus an adjustable forward offset (seconds)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch as the stand-in sees them."""
        with self._lock:
            return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def now_ms(self) -> int:
        return int(self.time() * 1000)

    def advance(self, seconds: float) -> float:
        """Skew the clock forward so expiries happen without sleeping; returns the total offset."""
        with self._lock:
            self._offset += seconds
            return self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    @property
    def offset(self) -> float:
        return self._offset


def rfc3339(value: datetime) -> str:
    """RFC 3339 with milliseconds and `Z`, the format Google uses for `updated`/`created`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries an offset; raises ValueError otherwise."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    parsed = datetime.fromisoformat(candidate)
    if "T" not in candidate.upper() or parsed.tzinfo is None:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {text!r}")
    return parsed


def rfc1123(epoch_seconds: float) -> str:
    """RFC 1123 date as in `X-Goog-Channel-Expiration`, e.g. `Tue, 19 Nov 2013 01:13:52 GMT`."""
    from email.utils import formatdate

    return formatdate(epoch_seconds, usegmt=True)


ZERO = timedelta(0)
