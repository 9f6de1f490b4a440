"""Firestore access for the sync: typed reads and writes of integrations, calendars, channel routes and CRM events.

Why one class: every Firestore operation of the engine goes through here, so benchmarks can count reads, writes and
commits (`ops`), and batching (≤ 500 writes per commit) lives in one place. No transactions over hot documents:
concurrency is handled by create-if-absent leases and update-time preconditions on single event documents.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import BadRequest, StoreUnavailable
from shared.models import (
    CALENDARS,
    CHANNELS,
    EVENTS,
    INTEGRATIONS,
    ChannelRoute,
    CrmEvent,
    Integration,
    SyncedCalendar,
    calendar_key,
    dump_for_firestore,
)

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.firestore import DocumentReference, DocumentSnapshot

MAX_BATCH_WRITES = 500


class InvalidDocumentId(BadRequest):
    """An id that cannot name a Firestore document (so no stored document has it)."""

    code = "invalid_id"


def is_valid_document_id(doc_id: str) -> bool:
    """Firestore's rules for a document id: non-empty, ≤ 1500 bytes, no '/', not '.' or '..', not `__.*__`."""
    return (
        isinstance(doc_id, str)
        and 0 < len(doc_id.encode()) <= 1500
        and "/" not in doc_id
        and doc_id not in (".", "..")
        and not (doc_id.startswith("__") and doc_id.endswith("__"))
    )


def checked_document_id(doc_id: str) -> str:
    if not is_valid_document_id(doc_id):
        raise InvalidDocumentId("the id cannot name a document", length=len(doc_id) if isinstance(doc_id, str) else 0)
    return doc_id


def _transient(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"Firestore is unavailable: {type(exc).__name__}")


class BatchWriter:
    """Collects writes and commits them in batches of at most 500 (Firestore's limit per commit)."""

    def __init__(self, store: FirestoreStore) -> None:
        self._store = store
        self._batch: Any = None
        self._pending = 0

    def _ensure(self) -> Any:
        if self._batch is None:
            self._batch = self._store.db.batch()
        return self._batch

    def set(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False) -> None:
        self._ensure().set(ref, data, merge=merge)
        self._after_write()

    def update(self, ref: DocumentReference, data: dict[str, Any]) -> None:
        self._ensure().update(ref, data)
        self._after_write()

    def delete(self, ref: DocumentReference) -> None:
        self._ensure().delete(ref)
        self._after_write()

    def _after_write(self) -> None:
        self._pending += 1
        if self._pending >= MAX_BATCH_WRITES:
            self.commit()

    def commit(self) -> None:
        if self._batch is None or self._pending == 0:
            return
        try:
            self._batch.commit()
        except Exception as exc:
            raise _transient(exc) from exc
        self._store.count_commit(writes=self._pending)
        self._batch = None
        self._pending = 0

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()


class FirestoreStore:
    """Typed Firestore reads and writes; `ops` counts reads, writes, commits and queries (and `rpcs`: round trips)."""

    def __init__(self, db: FirestoreClient) -> None:
        self.db = db
        self.ops: collections.Counter[str] = collections.Counter()

    # --- op counting: every Firestore round trip of the library is counted through these ----------------------
    def count_commit(self, writes: int = 1) -> None:
        """One commit round trip carrying `writes` document writes (0 for a commit a precondition refused)."""
        self.ops["commits"] += 1
        self.ops["rpcs"] += 1
        self.ops["writes"] += writes

    def count_reads(self, documents: int = 1, *, batch_get: bool = False, rpc: bool = True) -> None:
        """Documents read; `rpc` when this was its own round trip (query streams count the query once instead)."""
        self.ops["reads"] += documents
        if batch_get:
            self.ops["batch_gets"] += 1
        if rpc:
            self.ops["rpcs"] += 1

    # --- references ---------------------------------------------------------------------------------------------------
    # Ids from outside (channel ids from webhook headers, user ids from tokens, event ids from CloudEvent subjects)
    # become document ids: a '/' or a reserved name would address another document or crash the client library.
    def integration_ref(self, user_id: str) -> DocumentReference:
        return self.db.collection(INTEGRATIONS).document(checked_document_id(user_id))

    def calendar_ref(self, user_id: str, cal_key: str) -> DocumentReference:
        return self.integration_ref(user_id).collection(CALENDARS).document(checked_document_id(cal_key))

    def channel_ref(self, channel_id: str) -> DocumentReference:
        return self.db.collection(CHANNELS).document(checked_document_id(channel_id))

    def event_ref(self, event_id: str) -> DocumentReference:
        return self.db.collection(EVENTS).document(checked_document_id(event_id))

    def batch(self) -> BatchWriter:
        return BatchWriter(self)

    # --- low level ----------------------------------------------------------------------------------------------------
    def _get(self, ref: DocumentReference) -> DocumentSnapshot:
        try:
            snapshot = ref.get()
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_reads()
        return snapshot

    def get_all_documents(self, refs: list[DocumentReference]) -> list[DocumentSnapshot]:
        """Several documents in one round trip (missing ones come back with `exists == False`)."""
        try:
            snapshots = list(self.db.get_all(refs))
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_reads(len(snapshots), batch_get=True)
        return snapshots

    def _write(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False, **options: Any) -> None:
        try:
            ref.set(data, merge=merge, **options)
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_commit()

    def _update(self, ref: DocumentReference, data: dict[str, Any], **options: Any) -> None:
        """Partial update with dotted field paths; raises NotFound (google.api_core) if the document is missing."""
        from google.api_core import exceptions as gexc

        try:
            ref.update(data, **options)
        except (gexc.NotFound, gexc.FailedPrecondition):
            raise
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_commit()

    def create_if_absent(self, ref: DocumentReference, data: dict[str, Any]) -> bool:
        """Create a document only if it does not exist; False when it already did (leases, idempotency keys)."""
        from google.api_core import exceptions as gexc

        try:
            ref.create(data)
        except gexc.AlreadyExists:
            self.count_commit(writes=0)
            return False
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_commit()
        return True

    def query(self, query: Any) -> Iterator[DocumentSnapshot]:
        """Stream a query, counting the query and every document read."""
        self.ops["queries"] += 1
        self.ops["rpcs"] += 1
        try:
            for snapshot in query.stream():
                self.count_reads(rpc=False)
                yield snapshot
        except Exception as exc:
            raise _transient(exc) from exc

    def count_matching(self, query: Any) -> int:
        """A count aggregation: one round trip, billed as one read, whatever the count."""
        self.ops["queries"] += 1
        try:
            result = query.count().get()
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_reads()
        return int(result[0][0].value)

    # --- integrations -------------------------------------------------------------------------------------------------
    def get_integration(self, user_id: str) -> Integration | None:
        if not is_valid_document_id(user_id):
            return None
        snapshot = self._get(self.integration_ref(user_id))
        return Integration.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def save_integration(self, integration: Integration) -> None:
        self._write(self.integration_ref(integration.user_id), dump_for_firestore(integration), merge=True)

    def update_integration(self, user_id: str, fields: dict[str, Any]) -> None:
        self._update(self.integration_ref(user_id), fields)

    # --- calendars ----------------------------------------------------------------------------------------------------
    def get_calendar(self, user_id: str, cal_key: str) -> SyncedCalendar | None:
        snapshot = self._get(self.calendar_ref(user_id, cal_key))
        return SyncedCalendar.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def save_calendar(self, calendar: SyncedCalendar) -> None:
        ref = self.calendar_ref(calendar.user_id, calendar_key(calendar.calendar_id))
        self._write(ref, dump_for_firestore(calendar), merge=True)

    def update_calendar(self, user_id: str, cal_key: str, fields: dict[str, Any]) -> None:
        self._update(self.calendar_ref(user_id, cal_key), fields)

    def list_calendars(self, user_id: str) -> list[SyncedCalendar]:
        query = self.integration_ref(user_id).collection(CALENDARS)
        return [SyncedCalendar.model_validate(s.to_dict()) for s in self.query(query)]

    # --- channel routes -----------------------------------------------------------------------------------------------
    def get_channel_route(self, channel_id: str) -> ChannelRoute | None:
        if not is_valid_document_id(channel_id):
            return None  # no route can have this id: an unknown channel, with no read spent
        snapshot = self._get(self.channel_ref(channel_id))
        return ChannelRoute.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def save_channel_route(self, route: ChannelRoute) -> None:
        self._write(self.channel_ref(route.channel_id), dump_for_firestore(route))

    def update_channel_route(self, channel_id: str, fields: dict[str, Any]) -> None:
        self._update(self.channel_ref(channel_id), fields)

    # --- CRM events ---------------------------------------------------------------------------------------------------
    @staticmethod
    def event_from(snapshot: DocumentSnapshot) -> CrmEvent:
        data = snapshot.to_dict() or {}
        data["id"] = snapshot.id
        return CrmEvent.model_validate(data)

    def get_event(self, event_id: str) -> CrmEvent | None:
        if not is_valid_document_id(event_id):
            return None
        snapshot = self._get(self.event_ref(event_id))
        return self.event_from(snapshot) if snapshot.exists else None

    def get_event_snapshot(self, event_id: str) -> tuple[CrmEvent | None, dt.datetime | None]:
        """The event and its update time, for writes that must not clobber a concurrent edit."""
        if not is_valid_document_id(event_id):
            return None, None
        snapshot = self._get(self.event_ref(event_id))
        if not snapshot.exists:
            return None, None
        return self.event_from(snapshot), snapshot.update_time

    def get_events(self, event_ids: Iterable[str]) -> dict[str, CrmEvent]:
        """Many events in one RPC (missing ids are absent from the result)."""
        return {event_id: event for event_id, (event, _) in self.get_event_snapshots(event_ids).items()}

    def save_event(self, event: CrmEvent) -> None:
        data = dump_for_firestore(event)
        data.pop("id", None)
        self._write(self.event_ref(event.id), data)

    def update_event(
        self, event_id: str, fields: dict[str, Any], *, last_update_time: dt.datetime | None = None
    ) -> None:
        """Update some fields; with `last_update_time` the write fails (FailedPrecondition) if someone wrote since."""
        options: dict[str, Any] = {}
        if last_update_time is not None:
            options["option"] = self.db.write_option(last_update_time=last_update_time)
        self._update(self.event_ref(event_id), fields, **options)

    def events_linked_to_calendar(self, owner_id: str, calendar_id: str) -> Iterator[CrmEvent]:
        """Every CRM event of this owner linked to this Google calendar (composite index in shared/indexes.py)."""
        for event, _ in self.linked_event_snapshots(owner_id, calendar_id):
            yield event

    # --- additions for Google -> CRM (shared/sync/google_to_crm_run.py, shared/sync/coalesce.py) -------------------
    def linked_event_snapshots(self, owner_id: str, calendar_id: str) -> Iterator[tuple[CrmEvent, dt.datetime]]:
        """Like events_linked_to_calendar, with each document's update time (for precondition writes)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("owner_id", "==", owner_id))
            .where(filter=_field_filter("google.calendar_id", "==", calendar_id))
        )
        for snapshot in self.query(query):
            yield self.event_from(snapshot), snapshot.update_time

    def events_by_google_ids(
        self, owner_id: str, calendar_id: str, google_ids: Iterable[str]
    ) -> dict[str, tuple[CrmEvent, dt.datetime]]:
        """CRM events linked to these Google ids of one calendar (match by link), 30 ids per query (Firestore's `in`).

        Needed when Google's change carries nothing else to go by: a deletion lists only id/status/etag, and the id of
        an event the CRM created is derived from the CRM id, not the other way round.
        """
        ids = list(dict.fromkeys(google_ids))
        found: dict[str, tuple[CrmEvent, dt.datetime]] = {}
        for start in range(0, len(ids), 30):
            query = (
                self.db.collection(EVENTS)
                .where(filter=_field_filter("owner_id", "==", owner_id))
                .where(filter=_field_filter("google.calendar_id", "==", calendar_id))
                .where(filter=_field_filter("google.event_id", "in", ids[start : start + 30]))
            )
            for snapshot in self.query(query):
                found[snapshot.id] = (self.event_from(snapshot), snapshot.update_time)
        return found

    def series_exception_snapshots(
        self, owner_id: str, series_crm_id: str
    ) -> Iterator[tuple[str, tuple[CrmEvent, dt.datetime]]]:
        """The exceptions (modified / cancelled instances) stored for one series (composite index in indexes.py)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("owner_id", "==", owner_id))
            .where(filter=_field_filter("series.series_crm_id", "==", series_crm_id))
        )
        for snapshot in self.query(query):
            yield snapshot.id, (self.event_from(snapshot), snapshot.update_time)

    def get_event_snapshots(self, event_ids: Iterable[str]) -> dict[str, tuple[CrmEvent, dt.datetime]]:
        """Many events with their update times in one RPC (missing ids are absent from the result)."""
        refs = [self.event_ref(event_id) for event_id in dict.fromkeys(event_ids)]
        if not refs:
            return {}
        return {
            snapshot.id: (self.event_from(snapshot), snapshot.update_time)
            for snapshot in self.get_all_documents(refs)
            if snapshot.exists
        }

    def get_integration_and_calendar(
        self, user_id: str, cal_key: str
    ) -> tuple[Integration | None, SyncedCalendar | None]:
        """The integration and one of its calendars in one RPC (the pull's only state reads besides events)."""
        refs = [self.integration_ref(user_id), self.calendar_ref(user_id, cal_key)]
        integration: Integration | None = None
        calendar: SyncedCalendar | None = None
        for snapshot in self.get_all_documents(refs):
            if not snapshot.exists:
                continue
            if snapshot.reference.path == refs[0].path:
                integration = Integration.model_validate(snapshot.to_dict())
            else:
                calendar = SyncedCalendar.model_validate(snapshot.to_dict())
        return integration, calendar

    def get_document(self, ref: DocumentReference) -> DocumentSnapshot:
        """One raw document read (leases, markers), counted."""
        return self._get(ref)

    def set_document(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False) -> None:
        """One raw blind write (leases, markers), counted."""
        self._write(ref, data, merge=merge)

    def delete_document(self, ref: DocumentReference, *, last_update_time: dt.datetime | None = None) -> bool:
        """Delete (optionally only if unchanged since `last_update_time`); False when the precondition failed."""
        from google.api_core import exceptions as gexc

        options: dict[str, Any] = {}
        if last_update_time is not None:
            options["option"] = self.db.write_option(last_update_time=last_update_time)
        try:
            ref.delete(**options)
        except (gexc.FailedPrecondition, gexc.NotFound):
            self.count_commit(writes=0)
            return False
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_commit()
        return True


def _field_filter(path: str, op: str, value: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(path, op, value)
