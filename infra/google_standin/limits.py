"""Per-user quota, injected faults, added latency and call counters."""

from __future__ import annotations

import random
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .errors import ApiError
from .options import StandinOptions


@dataclass
class FaultRule:
    """Answer `status`/`reason` for the next `count` calls, or at `rate` (seeded), for one method id."""

    method: str
    status: int
    reason: str
    message: str
    count: int | None = None
    rate: float | None = None
    retry_after: str | None = None
    domain: str = "global"
    location: str | None = None
    location_type: str | None = None
    body: dict[str, Any] | None = None  # a full custom error body, answered verbatim

    def as_error(self) -> ApiError:
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return ApiError(self.status, self.reason, self.message, domain=self.domain, headers=headers,
                        location=self.location, location_type=self.location_type, body=self.body)


class Limits:
    """Everything that can make a well-formed call fail or slow down, plus counting."""

    def __init__(self, clock: Clock, options: StandinOptions) -> None:
        self.clock = clock
        self.options = options
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.windows: dict[str, deque[float]] = defaultdict(deque)
            self.faults: list[FaultRule] = []
            self.latency: dict[str, float] = {}
            self.random = random.Random(self.options.seed)
            self.reset_counters()

    def reset_counters(self) -> None:
        self.by_method: dict[str, int] = defaultdict(int)
        self.by_account: dict[str, int] = defaultdict(int)
        self.by_account_method: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_status: dict[str, int] = defaultdict(int)
        self.total = 0

    def count(self, method: str, account: str | None) -> None:
        with self.lock:
            self.total += 1
            self.by_method[method] += 1
            if account:
                self.by_account[account] += 1
                self.by_account_method[account][method] += 1

    def count_status(self, status: int) -> None:
        with self.lock:
            self.by_status[str(status)] += 1

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": self.total,
                "by_method": dict(self.by_method),
                "by_account": dict(self.by_account),
                "by_account_method": {a: dict(m) for a, m in self.by_account_method.items()},
                "by_status": dict(self.by_status),
            }

    def check_quota(self, account: str) -> None:
        """Sliding one-minute window per account, on the stand-in clock.

        Bodies as https://developers.google.com/workspace/calendar/api/guides/errors shows them: domain
        usageLimits, message "User Rate Limit Exceeded" or "Rate Limit Exceeded".
        """
        with self.lock:
            now = self.clock.time()
            window = self.windows[account]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.options.quota_per_minute:
                reason = self.options.rate_limit_reason
                message = "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" else "Rate Limit Exceeded"
                raise ApiError(self.options.rate_limit_status, reason, message, domain="usageLimits")
            window.append(now)

    def add_fault(self, rule: FaultRule) -> None:
        with self.lock:
            self.faults.append(rule)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def pick_fault(self, method: str) -> ApiError | None:
        with self.lock:
            for rule in self.faults:
                if rule.method not in (method, "*"):
                    continue
                if rule.count is not None:
                    if rule.count <= 0:
                        continue
                    rule.count -= 1
                    return rule.as_error()
                if rule.rate is not None and self.random.random() < rule.rate:
                    return rule.as_error()
            return None

    def delay_for(self, method: str) -> float:
        with self.lock:
            return self.latency.get(method, 0.0) + self.latency.get("*", 0.0)
