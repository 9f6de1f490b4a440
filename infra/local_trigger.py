"""Plays Eventarc's Firestore trigger locally: `events` writes in the emulator -> CloudEvents POSTed to push_event.

A google-cloud-firestore `on_snapshot` listener on the emulator's `events` collection (FIRESTORE_EMULATOR_HOST) turns
every document change after the initial snapshot (added, modified, removed) into one real CloudEvent, as production:
`type: google.cloud.firestore.document.v1.written`, `source: //firestore.googleapis.com/projects/{p}/databases/
(default)`, `subject: documents/events/{id}`, Firestore's extension attributes, and `DocumentEventData` with `value` /
`oldValue` ({name, fields, createTime, updateTime}). Content: JSON (`application/json`, default) or the protobuf bytes
production sends (`application/protobuf`); binary (default) or structured CloudEvents content mode.

Differences from Eventarc, on purpose or by nature: the listener coalesces writes that land between two snapshots
into one event (Eventarc delivers each write; the push function is idempotent and re-reads, so the result is the
same); delivery retries a few times on 5xx / connection errors; events of one document are delivered in order by one
worker (Eventarc promises no order; the function does not rely on it), different documents in parallel.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.logs import log_event

logger = logging.getLogger("infra.local_trigger")

EVENT_TYPE = "google.cloud.firestore.document.v1.written"
COLLECTION = "events"
DELIVERY_ATTEMPTS = 4


def document_json(
    name: str,
    data: dict[str, Any] | None,
    create_time: dt.datetime | None = None,
    update_time: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """One document in DocumentEventData's JSON form (Firestore REST Value encoding)."""
    message = document_proto(name, data, create_time, update_time)
    if message is None:
        return None
    return json.loads(type(message).to_json(message))


def document_proto(
    name: str,
    data: dict[str, Any] | None,
    create_time: dt.datetime | None = None,
    update_time: dt.datetime | None = None,
) -> Any:
    from google.cloud.firestore_v1 import _helpers
    from google.cloud.firestore_v1.types import document

    if data is None:
        return None
    message = document.Document(name=name, fields=_helpers.encode_dict(data))
    if create_time is not None:
        message.create_time = create_time
    if update_time is not None:
        message.update_time = update_time
    return message


def document_name(project_id: str, event_id: str, database: str = "(default)") -> str:
    return f"projects/{project_id}/databases/{database}/documents/{COLLECTION}/{event_id}"


def build_cloud_event(
    project_id: str,
    event_id: str,
    *,
    value: Any = None,
    old_value: Any = None,
    content: str = "json",
    database: str = "(default)",
    time: dt.datetime | None = None,
) -> Any:
    """A `document.v1.written` CloudEvent; `value`/`old_value` are firestore_v1 Document protos (or None)."""
    from cloudevents.http import CloudEvent

    from functions.crm_trigger import document_event_data_type

    message_type = document_event_data_type()
    message = message_type()
    if value is not None:
        message.value = value
    if old_value is not None:
        message.old_value = old_value
    if content == "protobuf":
        data: Any = message_type.serialize(message)
        content_type = "application/protobuf"
    else:
        data = json.loads(message_type.to_json(message))
        content_type = "application/json"
    attributes = {
        "id": uuid.uuid4().hex,
        "source": f"//firestore.googleapis.com/projects/{project_id}/databases/{database}",
        "type": EVENT_TYPE,
        "specversion": "1.0",
        "subject": f"documents/{COLLECTION}/{event_id}",
        "time": (time or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": content_type,
        # Firestore's CloudEvent extension attributes
        "project": project_id,
        "database": database,
        "namespace": "(default)",
        "document": f"{COLLECTION}/{event_id}",
        "location": "nam5",
    }
    return CloudEvent(attributes, data)


def encode_http(event: Any, mode: str = "binary") -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of a CloudEvent in binary or structured content mode (bytes data kept as bytes)."""
    from cloudevents.conversion import to_binary, to_structured

    raw = isinstance(event.data, bytes | bytearray)
    if mode == "structured":  # bytes data travel base64-encoded as data_base64
        headers, body = to_structured(event)
    else:
        headers, body = to_binary(event, data_marshaller=(lambda d: d) if raw else None)
    return dict(headers), body if isinstance(body, bytes) else str(body).encode()


@dataclass
class LocalTrigger:
    """A running listener; `stop()` unsubscribes and drains the delivery workers."""

    project_id: str
    function_url: str
    mode: str = "binary"
    content: str = "json"
    workers: int = 4
    # Eventarc calls the private push_event service with the trigger account's Google-signed token (front doors).
    token_provider: Callable[[], str] | None = None
    delivered: int = 0
    failed: int = 0
    _queues: list[queue.Queue[Any]] = field(default_factory=list, repr=False)
    _cache: dict[str, tuple[dict[str, Any], Any, Any]] = field(default_factory=dict, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _watch: Any = None
    _client: Any = None
    _observers: list[Callable[[str, dict[str, Any] | None, Any], None]] = field(default_factory=list, repr=False)

    def observe(self, callback: Callable[[str, dict[str, Any] | None, Any], None]) -> None:
        """Also hand every later change (document id, data or None when removed, update time) to `callback`, from the
        listener's thread: a second observer of `events` (the load run's latency log) without a second listener."""
        self._observers.append(callback)

    def start(self) -> LocalTrigger:
        from google.cloud import firestore

        for index in range(self.workers):
            self._queues.append(queue.Queue())
            thread = threading.Thread(
                target=self._deliver_loop, args=(self._queues[index],), name=f"local-trigger-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._client = firestore.Client(project=self.project_id)
        self._watch = self._client.collection(COLLECTION).on_snapshot(self._on_snapshot)
        if not self._ready.wait(30):
            raise RuntimeError("the Firestore listener did not deliver its initial snapshot")
        log_event(logger, "local trigger listening", project=self.project_id)
        return self

    def _on_snapshot(self, _snapshots: Any, changes: Any, _read_time: Any) -> None:
        initial = not self._ready.is_set()
        for change in changes:
            snapshot = change.document
            doc_id = snapshot.id
            with self._lock:
                previous = self._cache.get(doc_id)
                if change.type.name == "REMOVED":
                    self._cache.pop(doc_id, None)
                    current = None
                else:
                    current = (snapshot.to_dict() or {}, snapshot.create_time, snapshot.update_time)
                    self._cache[doc_id] = current
            if initial:
                continue
            for observer in self._observers:
                observer(doc_id, current[0] if current else None, snapshot.update_time)
            name = document_name(self.project_id, doc_id)
            value = document_proto(name, *current) if current else None
            old_value = document_proto(name, *previous) if previous else None
            if change.type.name == "REMOVED" and old_value is None:
                old_value = document_proto(name, snapshot.to_dict() or {}, snapshot.create_time, snapshot.update_time)
            self._queues[zlib.crc32(doc_id.encode()) % len(self._queues)].put(
                build_cloud_event(self.project_id, doc_id, value=value, old_value=old_value, content=self.content)
            )
        self._ready.set()

    def _deliver_loop(self, inbox: queue.Queue[Any]) -> None:
        import requests

        session = requests.Session()
        while True:
            event = inbox.get()
            if event is None:
                inbox.task_done()
                return
            try:
                self._deliver(session, event)
            finally:
                inbox.task_done()

    def _deliver(self, session: Any, event: Any) -> None:
        import time

        import requests

        headers, body = encode_http(event, self.mode)
        if self.token_provider is not None:
            headers["Authorization"] = f"Bearer {self.token_provider()}"
        for attempt in range(DELIVERY_ATTEMPTS):
            try:
                response = session.post(self.function_url, data=body, headers=headers, timeout=60)
                if response.status_code < 500:
                    with self._lock:
                        self.delivered += 1
                    if response.status_code >= 400:
                        log_event(
                            logger,
                            "push_event refused the event",
                            level=logging.WARNING,
                            status=response.status_code,
                            subject=event["subject"],
                        )
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2 * 2**attempt)
        with self._lock:
            self.failed += 1
        log_event(logger, "CloudEvent delivery failed", level=logging.ERROR, subject=event["subject"])

    def caught_up(self, update_times: dict[str, Any]) -> bool:
        """Whether the listener has seen each document at (at least) the given update time: nothing it has yet to
        turn into a CloudEvent is older than those writes (its snapshots can run seconds behind under load)."""
        with self._lock:
            for doc_id, update_time in update_times.items():
                cached = self._cache.get(doc_id)
                if cached is None or cached[2] is None or cached[2] < update_time:
                    return False
        return True

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued event was delivered (tests and benchmarks)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(inbox.unfinished_tasks == 0 for inbox in self._queues):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
            self._watch = None
        for inbox in self._queues:
            inbox.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self._client is not None:
            self._client.close()
            self._client = None


def start_local_trigger(
    project_id: str,
    function_url: str,
    *,
    mode: str = "binary",
    content: str = "json",
    workers: int = 4,
    token_provider: Callable[[], str] | None = None,
) -> LocalTrigger:
    """Listen to `events` in the emulator project and POST a CloudEvent per change to `function_url`."""
    if mode not in ("binary", "structured") or content not in ("json", "protobuf"):
        raise ValueError("mode is binary|structured and content is json|protobuf")
    return LocalTrigger(
        project_id, function_url, mode=mode, content=content, workers=workers, token_provider=token_provider
    ).start()
