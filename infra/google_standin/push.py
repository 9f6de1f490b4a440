"""Push channels (events.watch) and background delivery with Google's headers, retries and test controls."""

from __future__ import annotations

import hashlib
import heapq
import http.client
import itertools
import logging
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, rfc1123, rfc3339
from .errors import ApiError, invalid, not_found, required
from .options import StandinOptions

log = logging.getLogger("google_standin.push")
SUCCESS = {200, 201, 202, 204, 102}
RETRYABLE = {500, 502, 503, 504}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int
    kind: str  # "events" or "calendarList"
    target: str  # calendar id or account email
    account: str
    client_id: str
    stopped: bool = False
    last_number: int = 0
    # Google no longer delivers on this channel although it is neither stopped nor expired (`silence`).
    silent: bool = False

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expiration_ms

    def as_resource(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "api#channel", "id": self.id, "resourceId": self.resource_id,
                                "resourceUri": self.resource_uri, "expiration": str(self.expiration_ms)}
        if self.token is not None:
            body["token"] = self.token
        return body


@dataclass(order=True)
class Delivery:
    due: float
    order: int
    channel: Channel = field(compare=False)
    state: str = field(compare=False)
    number: int = field(compare=False)
    attempt: int = field(compare=False, default=0)
    duplicate: bool = field(compare=False, default=False)
    first_attempt_done: threading.Event = field(compare=False, default_factory=threading.Event)


class PushManager:
    """Channel registry plus a delivery queue served by worker threads."""

    def __init__(self, clock: Clock, options: StandinOptions, secret: str) -> None:
        self.clock = clock
        self.options = options
        self.secret = secret
        self.cond = threading.Condition()
        self._order = itertools.count()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        for index in range(max(1, self.options.push_workers)):
            worker = threading.Thread(target=self._work, name=f"standin-push-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def shutdown(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    def reset(self) -> None:
        with self.cond:
            self.channels: dict[str, Channel] = {}
            self.queue: list[Delivery] = []
            self.held: list[Delivery] = []
            self.records: list[dict[str, Any]] = []
            self.in_flight = 0
            self.paused = False
            self.holding = False
            self.drop_next = 0
            self.drop_rate = 0.0
            self.duplicate_next = 0
            self.random = random.Random(self.options.seed)
            self.cond.notify_all()

    def configure(self, *, drop_next: int | None = None, drop_rate: float | None = None,
                  duplicate_next: int | None = None, hold: bool | None = None, paused: bool | None = None) -> None:
        with self.cond:
            if drop_next is not None:
                self.drop_next = drop_next
            if drop_rate is not None:
                self.drop_rate = drop_rate
            if duplicate_next is not None:
                self.duplicate_next = duplicate_next
            if hold is not None:
                self.holding = hold
            if paused is not None:
                self.paused = paused
            self.cond.notify_all()

    def release(self, order: str = "reverse") -> int:
        """Deliver held messages, in `fifo`, `reverse` or `shuffle` order (reordering for tests)."""
        with self.cond:
            held, self.held = self.held, []
            self.holding = False
            if order == "reverse":
                held.reverse()
            elif order == "shuffle":
                self.random.shuffle(held)
            for delivery in held:
                delivery.due = time.monotonic()
                delivery.order = next(self._order)
                heapq.heappush(self.queue, delivery)
            self.cond.notify_all()
            return len(held)

    def flush(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until nothing is queued or in flight (paused/held messages are not waited for)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while (self.queue and not self.paused) or self.in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)
            idle = not self.in_flight and not self.queue
            return {"idle": idle, "queued": len(self.queue), "held": len(self.held), "in_flight": self.in_flight}

    # -- channels --------------------------------------------------------------------------------------------------
    def resource_id(self, kind: str, target: str) -> str:
        """Opaque and stable per watched resource."""
        digest = hashlib.sha256(f"{self.secret}:{kind}:{target}".encode()).hexdigest()
        return digest[:27]

    def create_channel(self, body: dict[str, Any], *, kind: str, target: str, account: str, client_id: str,
                       resource_uri: str) -> Channel:
        channel_id = body.get("id")
        if not channel_id:
            raise required("resource.id")
        if len(channel_id) > 64:
            raise invalid("Channel id must be at most 64 characters.", location="resource.id")
        if body.get("type") not in ("web_hook", "webhook"):
            raise invalid("Invalid channel type.", location="resource.type", reason="invalidArgument") \
                if body.get("type") else required("resource.type")
        address = body.get("address")
        if not address:
            raise required("resource.address")
        parsed = urllib.parse.urlsplit(address)
        https_ok = parsed.scheme == "https"
        loopback_http = parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS
        if not (https_ok or (loopback_http and not self.options.require_https)):
            raise ApiError(400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: " + address)
        token = body.get("token")
        if token is not None and len(token) > 256:
            raise invalid("Channel token must be at most 256 characters.", location="resource.token")
        now_ms = self.clock.now_ms()
        ttl = (body.get("params") or {}).get("ttl")
        try:
            ttl_seconds = int(ttl) if ttl is not None else 604800
        except ValueError as error:
            raise invalid("Invalid ttl.", location="resource.params.ttl") from error
        limits = [now_ms + ttl_seconds * 1000, now_ms + self.options.max_channel_lifetime * 1000]
        if body.get("expiration") is not None:
            limits.append(int(body["expiration"]))
        expiration = min(limits)
        with self.cond:
            existing = self.channels.get(channel_id)
            if existing and self.options.reject_duplicate_channel_ids and not existing.stopped \
                    and not existing.expired(now_ms):
                raise ApiError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
            channel = Channel(channel_id, self.resource_id(kind, target), resource_uri, address, token, expiration,
                              kind, target, account, client_id)
            self.channels[channel_id] = channel
            return channel

    def stop(self, channel_id: str | None, resource_id: str | None, account: str, client_id: str) -> None:
        with self.cond:
            channel = self.channels.get(channel_id or "")
            if channel is None or channel.resource_id != resource_id or channel.client_id != client_id:
                raise ApiError(404, "notFound", f"Channel '{channel_id}' not found for project")
            if channel.account != account:
                raise ApiError(403, "forbidden", "Only the user who created the channel may stop it.")
            if channel.stopped:
                raise not_found()
            channel.stopped = True

    def expire(self, channel_id: str) -> None:
        with self.cond:
            channel = self.channels.get(channel_id)
            if channel is None:
                raise not_found()
            channel.expiration_ms = self.clock.now_ms()

    def silence(self, channel_id: str) -> None:
        """The channel dies without a word: no further notification is delivered, and nothing tells the owner.

        Google's push guide says notifications are "not 100% reliable" and that a small percentage of messages are
        dropped under normal conditions (https://developers.google.com/workspace/calendar/api/guides/push); it
        documents no signal for a channel Google has stopped serving, so the least forgiving reading is modelled:
        the channel still looks live (no error, its expiration unchanged, `channels.stop` still accepted) and simply
        never delivers again.
        """
        with self.cond:
            channel = self.channels.get(channel_id)
            if channel is None:
                raise not_found()
            channel.silent = True

    def channel_list(self) -> list[dict[str, Any]]:
        with self.cond:
            now_ms = self.clock.now_ms()
            return [dict(c.as_resource(), address=c.address, kind_watched=c.kind, target=c.target,
                         account=c.account, stopped=c.stopped, expired=c.expired(now_ms), silent=c.silent)
                    for c in self.channels.values()]

    # -- queueing --------------------------------------------------------------------------------------------------
    def notify(self, kind: str, target: str) -> None:
        """A watched resource changed: one `exists` message per live channel."""
        with self.cond:
            now_ms = self.clock.now_ms()
            for channel in list(self.channels.values()):
                if channel.kind == kind and channel.target == target and not channel.stopped \
                        and not channel.silent and not channel.expired(now_ms):
                    self.enqueue(channel, "exists")

    def enqueue(self, channel: Channel, state: str) -> Delivery | None:
        with self.cond:
            if state == "sync":
                number = 1
            else:
                number = channel.last_number + self.random.randint(2, max(2, self.options.message_number_gap_max))
            channel.last_number = max(channel.last_number, number)
            delivery = Delivery(time.monotonic(), next(self._order), channel, state, number)
            if self.drop_next > 0 or (self.drop_rate and self.random.random() < self.drop_rate):
                self.drop_next = max(0, self.drop_next - 1)
                self._record(delivery, None, "dropped", headers={})
                delivery.first_attempt_done.set()
                return delivery
            copies = [delivery]
            if self.duplicate_next > 0:
                self.duplicate_next -= 1
                copies.append(Delivery(time.monotonic(), next(self._order), channel, state, number, duplicate=True))
            for item in copies:
                if self.holding:
                    self.held.append(item)
                else:
                    heapq.heappush(self.queue, item)
            self.cond.notify_all()
            return delivery

    def _record(self, delivery: Delivery, status: int | None, outcome: str, headers: dict[str, str],
                error: str | None = None) -> None:
        self.records.append({
            "channel_id": delivery.channel.id, "message_number": delivery.number,
            "resource_state": delivery.state, "resource_id": delivery.channel.resource_id,
            "address": delivery.channel.address, "attempt": delivery.attempt + 1, "status": status,
            "outcome": outcome, "error": error, "duplicate": delivery.duplicate, "headers": headers,
            "time": rfc3339(self.clock.now()),
        })

    def deliveries(self) -> list[dict[str, Any]]:
        with self.cond:
            return list(self.records)

    def clear_deliveries(self) -> None:
        with self.cond:
            self.records.clear()

    # -- workers ---------------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self.cond:
                while not self._stopping and (self.paused or not self.queue or self.queue[0].due > time.monotonic()):
                    timeout = None if (self.paused or not self.queue) else self.queue[0].due - time.monotonic()
                    self.cond.wait(timeout)
                if self._stopping:
                    return
                delivery = heapq.heappop(self.queue)
                self.in_flight += 1
            try:
                self._deliver(delivery)
            except Exception:  # a broken receiver must never kill the worker
                log.exception("push delivery crashed", extra={"channel_id": delivery.channel.id})
            finally:
                delivery.first_attempt_done.set()
                with self.cond:
                    self.in_flight -= 1
                    self.cond.notify_all()

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        channel = delivery.channel
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Message-Number": str(delivery.number),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-State": delivery.state,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Channel-Expiration": rfc1123(channel.expiration_ms / 1000),
            "User-Agent": "APIs-Google",
            "Content-Length": "0",
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        return headers

    def _deliver(self, delivery: Delivery) -> None:
        channel = delivery.channel
        with self.cond:
            if channel.stopped:
                self._record(delivery, None, "skipped_stopped", headers={})
                return
            if channel.expired(self.clock.now_ms()):
                self._record(delivery, None, "skipped_expired", headers={})
                return
        headers = self._headers(delivery)
        status, error = self._post(channel.address, headers)
        retry = (status is None or status in RETRYABLE) and delivery.attempt + 1 < self.options.push_max_attempts
        outcome = "delivered" if status in SUCCESS else ("retrying" if retry else "failed")
        log.info("push_delivery", extra={"channel_id": channel.id, "message_number": delivery.number,
                                         "status": status, "outcome": outcome})
        with self.cond:
            self._record(delivery, status, outcome, headers, error)
            if retry:
                delay = self.options.push_retry_base * (2 ** delivery.attempt)
                delivery.attempt += 1
                delivery.due = time.monotonic() + delay
                delivery.order = next(self._order)
                heapq.heappush(self.queue, delivery)
                self.cond.notify_all()

    def _post(self, address: str, headers: dict[str, str]) -> tuple[int | None, str | None]:
        parsed = urllib.parse.urlsplit(address)
        connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        connection = connection_class(parsed.hostname, parsed.port, timeout=self.options.push_timeout)
        try:
            connection.request("POST", path, body=b"", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status, None
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
