"""The one Firestore gateway: every collection name, query, batch, precondition and lease of the library.

Why one module: every Firestore operation goes through here, so benchmarks can count reads, writes and commits
(`ops`), batching (≤ 500 writes per commit, Firestore's limit) lives in one place, and the client library's errors
never leak: a lost precondition is `DocumentChanged` (or `DocumentMissing`), anything else `StoreUnavailable`.

No transactions over hot documents (the emulator aborts a few concurrent transactions on one document with "Transaction
lock timeout", and production Firestore contends the same way): concurrency is handled by create-if-absent leases,
blind writes and update-time preconditions on single documents. The one loop that re-reads and re-plans after a lost
precondition is `retry_if_changed`, kept in one place the way python-firestore keeps its transactional retry in
`transaction.py` (`_Transactional`, `_sleep`): jittered exponential backoff, an injectable sleep, one attempt limit
and a typed give-up error (`KeptChanging`).

Collections (document ids in braces):
    integrations/{userId}                      one Google connection per CRM user (refresh token encrypted)
    integrations/{userId}/calendars/{calKey}   a synced calendar: sync token, channel, due times, last sync / error
    channels/{channelId}                       webhook routing: the calendar a notification belongs to (one read)
    events/{eventId}                           CRM meetings, with their Google link and sync bookkeeping
    sync_leases/{userId}_{calKey}              the pull lease that coalesces notification bursts (TTL expires_at)
    sync_dirty/{userId}_{calKey}               "pull again" marker written by coalesced notifications (TTL expires_at)
    channel_leases/{userId}_{calKey}           the lease guarding every channel change of a calendar (TTL expires_at)
    oauth_states/{nonce}                       an OAuth flow's encrypted PKCE verifier, used once (TTL expires_at)
    sync_meta/push_sweep                       the CRM → Google sweep's watermark
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from shared.errors import BadRequest, DocumentChanged, DocumentMissing, KeptChanging, StoreUnavailable
from shared.models import (
    ChannelRoute,
    ChannelState,
    CrmEvent,
    Integration,
    IntegrationStatus,
    SyncedCalendar,
    SyncState,
    calendar_key,
    dump_for_firestore,
)

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.firestore import DocumentReference, DocumentSnapshot

logger = logging.getLogger(__name__)

# Collection names: one place, so the code, the Terraform indexes / TTL policies and the policy tests agree.
INTEGRATIONS = "integrations"
GOOGLE_ACCOUNTS = "google_accounts"  # {Google subject id}: the CRM user a Google account is linked to
CALENDARS = "calendars"  # subcollection of integrations/{userId}
CHANNELS = "channels"
EVENTS = "events"
SYNC_LEASES = "sync_leases"
SYNC_DIRTY = "sync_dirty"
CHANNEL_LEASES = "channel_leases"
OAUTH_STATES = "oauth_states"
SYNC_META = "sync_meta"
PUSH_SWEEP_STATE = "push_sweep"  # sync_meta/push_sweep: the CRM → Google sweep's watermark

MAX_BATCH_WRITES = 500
IN_QUERY_LIMIT = 30  # values per Firestore `in` filter
RETRY_ATTEMPTS = 4  # read → plan → write-if-unchanged attempts before KeptChanging
RETRY_INITIAL_SLEEP = 0.05  # seconds; doubled per lost attempt, full jitter (python-firestore uses 1 s / 30 s / 2)
RETRY_MAX_SLEEP = 1.0
T = TypeVar("T")


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


def _typed(exc: Exception) -> Exception:
    """google.api_core's error as ours: a lost precondition is DocumentChanged / DocumentMissing, else unavailable."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return DocumentMissing("the document does not exist")
    if isinstance(exc, gexc.FailedPrecondition | gexc.AlreadyExists):
        return DocumentChanged(f"the document changed since it was read ({type(exc).__name__})")
    return _transient(exc)


@dataclass
class Write:
    """One document write of a batch: `create` (fails if it exists), `update` (optionally only if unchanged since
    `last_update_time`; fails if missing), `set` (blind; `merge` keeps other fields) or `delete`."""

    op: Literal["create", "update", "set", "delete"]
    ref: DocumentReference
    data: dict[str, Any] | None = None
    last_update_time: dt.datetime | None = None
    merge: bool = False


class BatchWriter:
    """Collects blind writes and commits them in batches of at most 500 (Firestore's limit per commit)."""

    def __init__(self, store: FirestoreStore) -> None:
        self._store = store
        self._writes: list[Write] = []

    def set(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False) -> None:
        self._add(Write("set", ref, data, merge=merge))

    def update(self, ref: DocumentReference, data: dict[str, Any]) -> None:
        self._add(Write("update", ref, data))

    def delete(self, ref: DocumentReference) -> None:
        self._add(Write("delete", ref))

    def _add(self, write: Write) -> None:
        self._writes.append(write)
        if len(self._writes) >= MAX_BATCH_WRITES:
            self.commit()

    def commit(self) -> None:
        if not self._writes:
            return
        writes, self._writes = self._writes, []
        self._store.commit_writes(writes)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.commit()


DEFAULT_CALL_DEADLINE_SECONDS = 20.0


def _call_policies(deadline: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(read, write) keyword arguments every Firestore call of the gateway passes: the client's own retry predicates
    (google.cloud.firestore_v1 transports: reads, which go through batchGet and runQuery, retry DEADLINE_EXCEEDED,
    INTERNAL and UNAVAILABLE; commits RESOURCE_EXHAUSTED and UNAVAILABLE) with one bounded deadline instead of 60 s
    (300 s for batchGet and queries). Under a standing outage a request then fails within `deadline` as
    StoreUnavailable: the webhook answers 503 while Google still waits for it, and a push fails in time for
    Eventarc's retry, instead of holding the request for minutes."""
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    def retry(*errors: type[Exception]) -> Retry:
        return Retry(initial=0.1, maximum=2.0, multiplier=1.3, predicate=if_exception_type(*errors), timeout=deadline)

    reads = retry(gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ServiceUnavailable)
    writes = retry(gexc.ResourceExhausted, gexc.ServiceUnavailable)
    return {"retry": reads, "timeout": deadline}, {"retry": writes, "timeout": deadline}


class FirestoreStore:
    """Typed Firestore reads and writes; `ops` counts reads, writes, commits and queries (and `rpcs`: round trips)."""

    def __init__(self, db: FirestoreClient, *, call_deadline: float = DEFAULT_CALL_DEADLINE_SECONDS) -> None:
        self.db = db
        self._read_policy, self._write_policy = _call_policies(call_deadline)
        self.ops: collections.Counter[str] = collections.Counter()
        # (kind, started, finished) per round trip when a benchmark attaches a list: the critical path is measured,
        # not counted by hand (tests/benchmarks/bench_pull.py). None in production: no cost.
        self.rpc_log: list[tuple[str, float, float]] | None = None

    # --- op counting: every Firestore round trip of the library is counted through these ----------------------
    def count_commit(self, writes: int = 1, *, started: float | None = None) -> None:
        """One commit round trip carrying `writes` document writes (0 for a commit a precondition refused)."""
        self.ops["commits"] += 1
        self.ops["rpcs"] += 1
        self.ops["writes"] += writes
        self._log_rpc("commit", started)

    def count_reads(
        self, documents: int = 1, *, batch_get: bool = False, rpc: bool = True, started: float | None = None
    ) -> None:
        """Documents read; `rpc` when this was its own round trip (query streams count the query once instead)."""
        self.ops["reads"] += documents
        if batch_get:
            self.ops["batch_gets"] += 1
        if rpc:
            self.ops["rpcs"] += 1
            self._log_rpc("read", started)

    def _log_rpc(self, kind: str, started: float | None) -> None:
        if self.rpc_log is not None and started is not None:
            self.rpc_log.append((kind, started, time.perf_counter()))

    # --- references ---------------------------------------------------------------------------------------------------
    # Ids from outside (channel ids from webhook headers, user ids from tokens, event ids from CloudEvent subjects)
    # become document ids: a '/' or a reserved name would address another document or crash the client library.
    def _ref(self, collection: str, doc_id: str) -> DocumentReference:
        return self.db.collection(collection).document(checked_document_id(doc_id))

    def integration_ref(self, user_id: str) -> DocumentReference:
        return self._ref(INTEGRATIONS, user_id)

    def calendar_ref(self, user_id: str, cal_key: str) -> DocumentReference:
        return self.integration_ref(user_id).collection(CALENDARS).document(checked_document_id(cal_key))

    def channel_ref(self, channel_id: str) -> DocumentReference:
        return self._ref(CHANNELS, channel_id)

    def event_ref(self, event_id: str) -> DocumentReference:
        return self._ref(EVENTS, event_id)

    def sync_lease_ref(self, doc_id: str) -> DocumentReference:
        return self._ref(SYNC_LEASES, doc_id)

    def sync_dirty_ref(self, doc_id: str) -> DocumentReference:
        return self._ref(SYNC_DIRTY, doc_id)

    def channel_lease_ref(self, doc_id: str) -> DocumentReference:
        return self._ref(CHANNEL_LEASES, doc_id)

    def oauth_state_ref(self, nonce: str) -> DocumentReference:
        return self._ref(OAUTH_STATES, nonce)

    def batch(self) -> BatchWriter:
        return BatchWriter(self)

    # --- batches and preconditions ------------------------------------------------------------------------------------
    def _stage(self, batch: Any, write: Write) -> None:
        if write.op == "create":
            batch.create(write.ref, write.data)
        elif write.op == "update":
            if write.last_update_time is not None:
                option = self.db.write_option(last_update_time=write.last_update_time)
                batch.update(write.ref, write.data, option=option)
            else:
                batch.update(write.ref, write.data)
        elif write.op == "set":
            batch.set(write.ref, write.data, merge=write.merge)
        else:
            batch.delete(write.ref)

    def commit_writes(self, writes: Sequence[Write]) -> list[dt.datetime | None]:
        """Commit ≤ 500 writes atomically; each write's update time. A lost precondition (a create of an existing
        document, an update of a changed or missing one) commits nothing and raises DocumentChanged."""
        if len(writes) > MAX_BATCH_WRITES:
            raise ValueError(f"at most {MAX_BATCH_WRITES} writes per commit")
        batch = self.db.batch()
        for write in writes:
            self._stage(batch, write)
        started = time.perf_counter()
        try:
            results = batch.commit(**self._write_policy)
        except Exception as exc:
            typed = _typed(exc)
            if isinstance(typed, DocumentChanged):
                self.count_commit(writes=0, started=started)
            raise typed from exc
        self.count_commit(writes=len(writes), started=started)
        return [getattr(result, "update_time", None) for result in results or []]

    # --- low level ----------------------------------------------------------------------------------------------------
    def _get(self, ref: DocumentReference) -> DocumentSnapshot:
        started = time.perf_counter()
        try:
            snapshot = ref.get(**self._read_policy)
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_reads(started=started)
        return snapshot

    def get_all_documents(self, refs: list[DocumentReference]) -> list[DocumentSnapshot]:
        """Several documents in one round trip (missing ones come back with `exists == False`)."""
        started = time.perf_counter()
        try:
            snapshots = list(self.db.get_all(refs, **self._read_policy))
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_reads(len(snapshots), batch_get=True, started=started)
        return snapshots

    def _write(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False, **options: Any) -> None:
        started = time.perf_counter()
        try:
            ref.set(data, merge=merge, **options, **self._write_policy)
        except Exception as exc:
            raise _transient(exc) from exc
        self.count_commit(started=started)

    def _update(self, ref: DocumentReference, data: dict[str, Any], **options: Any) -> None:
        """Partial update with dotted field paths; DocumentMissing if the document is missing, DocumentChanged if a
        precondition failed."""
        started = time.perf_counter()
        try:
            ref.update(data, **options, **self._write_policy)
        except Exception as exc:
            raise _typed(exc) from exc
        self.count_commit(started=started)

    def create_if_absent(self, ref: DocumentReference, data: dict[str, Any]) -> bool:
        """Create a document only if it does not exist; False when it already did (leases, idempotency keys)."""
        started = time.perf_counter()
        try:
            ref.create(data, **self._write_policy)
        except Exception as exc:
            typed = _typed(exc)
            if isinstance(typed, DocumentChanged):
                self.count_commit(writes=0, started=started)
                return False
            raise typed from exc
        self.count_commit(started=started)
        return True

    def query(self, query: Any) -> Iterator[DocumentSnapshot]:
        """Stream a query, counting the query and every document read."""
        self.ops["queries"] += 1
        self.ops["rpcs"] += 1
        started = time.perf_counter()
        try:
            for snapshot in query.stream(**self._read_policy):
                self.count_reads(rpc=False)
                yield snapshot
        except Exception as exc:
            raise _transient(exc) from exc
        self._log_rpc("query", started)

    def count_matching(self, query: Any) -> int:
        """A count aggregation: one round trip, billed as one read, whatever the count."""
        self.ops["queries"] += 1
        try:
            result = query.count().get(**self._read_policy)
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

    # --- google accounts: one CRM user per Google account ------------------------------------------------------------
    def google_account_ref(self, subject: str) -> DocumentReference:
        return self._ref(GOOGLE_ACCOUNTS, subject)

    def claim_google_account(self, subject: str, user_id: str, account_email: str, now: dt.datetime) -> str:
        """Create `google_accounts/{subject}` for this user unless it exists; returns the CRM user that holds it.

        Create-if-absent, so two users linking one account at once cannot both win.
        """
        ref = self.google_account_ref(subject)
        data = {"user_id": user_id, "account_email": account_email, "claimed_at": now}
        if self.create_if_absent(ref, data):
            return user_id
        snapshot = self._get(ref)
        holder = (snapshot.to_dict() or {}).get("user_id") if snapshot.exists else None
        if holder is None:  # released between our create and read: try once more
            return user_id if self.create_if_absent(ref, data) else str(self._get(ref).to_dict()["user_id"])
        return str(holder)

    def release_google_account(self, subject: str, user_id: str) -> bool:
        """Delete `google_accounts/{subject}` if this user holds it (never another user's claim)."""
        ref = self.google_account_ref(subject)
        snapshot = self._get(ref)
        if not snapshot.exists or (snapshot.to_dict() or {}).get("user_id") != user_id:
            return False
        return self.delete_document(ref, last_update_time=snapshot.update_time)

    # --- calendars ----------------------------------------------------------------------------------------------------
    def get_calendar(self, user_id: str, cal_key: str) -> SyncedCalendar | None:
        snapshot = self._get(self.calendar_ref(user_id, cal_key))
        return SyncedCalendar.model_validate(snapshot.to_dict()) if snapshot.exists else None

    def save_calendar(self, calendar: SyncedCalendar) -> None:
        ref = self.calendar_ref(calendar.user_id, calendar_key(calendar.calendar_id))
        self._write(ref, dump_for_firestore(calendar), merge=True)

    def update_calendar(self, user_id: str, cal_key: str, fields: dict[str, Any]) -> None:
        self._update(self.calendar_ref(user_id, cal_key), fields)

    def all_calendars(self) -> list[SyncedCalendar]:
        """Every user's calendars (one collection-group query): maintenance after restoring a local stack, never a
        request path."""
        return [SyncedCalendar.model_validate(s.to_dict()) for s in self.query(self.db.collection_group(CALENDARS))]

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
        """Update some fields; with `last_update_time` the write fails (DocumentChanged) if someone wrote since."""
        options: dict[str, Any] = {}
        if last_update_time is not None:
            options["option"] = self.db.write_option(last_update_time=last_update_time)
        self._update(self.event_ref(event_id), fields, **options)

    def events_linked_to_calendar(self, owner_id: str, calendar_id: str) -> Iterator[CrmEvent]:
        """Every CRM event of this owner linked to this Google calendar (composite index in shared/indexes.py)."""
        for event, _ in self.linked_event_snapshots(owner_id, calendar_id):
            yield event

    # --- CRM events with their update times (for precondition writes) -------------------------------------------------
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
        for start in range(0, len(ids), IN_QUERY_LIMIT):
            query = (
                self.db.collection(EVENTS)
                .where(filter=_field_filter("owner_id", "==", owner_id))
                .where(filter=_field_filter("google.calendar_id", "==", calendar_id))
                .where(filter=_field_filter("google.event_id", "in", ids[start : start + IN_QUERY_LIMIT]))
            )
            for snapshot in self.query(query):
                found[snapshot.id] = (self.event_from(snapshot), snapshot.update_time)
        return found

    def events_with_decisions(
        self, owner_id: str, *, limit: int, after: tuple[dt.datetime, str] | None = None
    ) -> list[CrmEvent]:
        """One owner's events that recorded conflict decisions, newest decision first (the conflict center's page);
        `after` is the (last_decision_at, event id) of the previous page's last event."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("owner_id", "==", owner_id))
            .where(filter=_field_filter("sync.last_decision_at", ">", dt.datetime(1970, 1, 1, tzinfo=dt.UTC)))
            .order_by("sync.last_decision_at", direction="DESCENDING")
            .order_by("__name__", direction="DESCENDING")
        )
        if after is not None:
            query = query.start_after({"sync.last_decision_at": after[0], "__name__": self.event_ref(after[1])})
        return [self.event_from(snapshot) for snapshot in self.query(query.limit(limit))]

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
        integration, calendar, _ = self.get_integration_and_calendar_at(user_id, cal_key)
        return integration, calendar

    def get_integration_and_calendar_at(
        self, user_id: str, cal_key: str
    ) -> tuple[Integration | None, SyncedCalendar | None, dt.datetime | None]:
        """Like get_integration_and_calendar, plus the calendar's update time (a precondition for a later write that
        must fail if a pull committed meanwhile: every pull writes the calendar)."""
        refs = [self.integration_ref(user_id), self.calendar_ref(user_id, cal_key)]
        integration: Integration | None = None
        calendar: SyncedCalendar | None = None
        calendar_time: dt.datetime | None = None
        for snapshot in self.get_all_documents(refs):
            if not snapshot.exists:
                continue
            if snapshot.reference.path == refs[0].path:
                integration = Integration.model_validate(snapshot.to_dict())
            else:
                calendar = SyncedCalendar.model_validate(snapshot.to_dict())
                calendar_time = snapshot.update_time
        return integration, calendar, calendar_time

    def get_pull_state(
        self,
        user_id: str,
        cal_key: str,
        lease_doc_id: str,
        *,
        channel_id: str | None = None,
        event_ids: Iterable[str] = (),
    ) -> PullState:
        """Everything a pull reads before it lists, in one batchGet: the integration, the calendar (its sync token),
        the pull lease and its "dirty" marker, and (for the webhook) the channel's route and the CRM documents the
        calendar's recent changes landed on (kept raw: parsed only if the list names them)."""
        refs = {
            "integration": self.integration_ref(user_id),
            "calendar": self.calendar_ref(user_id, cal_key),
            "lease": self.sync_lease_ref(lease_doc_id),
            "dirty": self.sync_dirty_ref(lease_doc_id),
        }
        if channel_id is not None:
            refs["route"] = self.channel_ref(channel_id)
        event_refs = {event_id: self.event_ref(event_id) for event_id in event_ids if is_valid_document_id(event_id)}
        by_path = {
            snapshot.reference.path: snapshot
            for snapshot in self.get_all_documents([*refs.values(), *event_refs.values()])
        }
        found = {name: by_path[ref.path] for name, ref in refs.items()}

        def model(name: str, kind: Any) -> Any:
            snapshot = found.get(name)
            return kind.model_validate(snapshot.to_dict()) if snapshot is not None and snapshot.exists else None

        calendar_snapshot = found["calendar"]
        return PullState(
            integration=model("integration", Integration),
            calendar=model("calendar", SyncedCalendar),
            lease=found["lease"],
            dirty=found["dirty"],
            route=model("route", ChannelRoute),
            calendar_update_time=calendar_snapshot.update_time if calendar_snapshot.exists else None,
            events={event_id: by_path[ref.path] for event_id, ref in event_refs.items()},
        )

    def get_event_snapshots_and(
        self, event_ids: Iterable[str], other: DocumentReference
    ) -> tuple[dict[str, tuple[CrmEvent, dt.datetime]], DocumentSnapshot]:
        """Like get_event_snapshots, plus one other document, in the same round trip."""
        refs = [self.event_ref(event_id) for event_id in dict.fromkeys(event_ids)]
        snapshots = self.get_all_documents([*refs, other])
        extra = next(s for s in snapshots if s.reference.path == other.path)
        events = {
            s.id: (self.event_from(s), s.update_time) for s in snapshots if s.exists and s.reference.path != other.path
        }
        return events, extra

    def get_document(self, ref: DocumentReference) -> DocumentSnapshot:
        """One raw document read (leases, markers), counted."""
        return self._get(ref)

    def set_document(self, ref: DocumentReference, data: dict[str, Any], *, merge: bool = False) -> None:
        """One raw blind write (leases, markers), counted."""
        self._write(ref, data, merge=merge)

    def delete_document(self, ref: DocumentReference, *, last_update_time: dt.datetime | None = None) -> bool:
        """Delete (optionally only if unchanged since `last_update_time`); False when the precondition failed."""
        options: dict[str, Any] = {}
        if last_update_time is not None:
            options["option"] = self.db.write_option(last_update_time=last_update_time)
        started = time.perf_counter()
        try:
            ref.delete(**options, **self._write_policy)
        except Exception as exc:
            typed = _typed(exc)
            if isinstance(typed, DocumentChanged):
                self.count_commit(writes=0, started=started)
                return False
            raise typed from exc
        self.count_commit(started=started)
        return True

    # --- leases: create-if-absent documents with an expiry, taken over (guarded delete) once expired ---------------
    def create_lease(
        self, ref: DocumentReference, fields: dict[str, Any], seconds: int, now: dt.datetime
    ) -> Lease | None:
        """Create the lease document if absent; None when someone holds (or held) it."""
        lease, create = self.lease_create_write(ref, fields, seconds, now)
        assert create.data is not None
        if self.create_if_absent(ref, create.data):
            return lease
        return None

    def lease_create_write(
        self, ref: DocumentReference, fields: dict[str, Any], seconds: int, now: dt.datetime
    ) -> tuple[Lease, Write]:
        """A lease and the `create` that takes it, to ride in a batch: the batch commits only if nobody holds it."""
        holder = uuid.uuid4().hex
        data = {"holder": holder, **fields, "acquired_at": now, "expires_at": now + dt.timedelta(seconds=seconds)}
        return Lease(ref, holder, seconds), Write("create", ref, data)

    def take_over_lease(
        self, ref: DocumentReference, snapshot: DocumentSnapshot, fields: dict[str, Any], seconds: int, now: dt.datetime
    ) -> Lease | None:
        """The lease is absent or expired (its holder died): replace it; of several contenders one wins."""
        if snapshot.exists and not self.delete_document(ref, last_update_time=snapshot.update_time):
            return None  # another contender took it over first
        return self.create_lease(ref, fields, seconds, now)

    def acquire_lease(
        self, ref: DocumentReference, fields: dict[str, Any], seconds: int, now: dt.datetime
    ) -> tuple[Lease | None, bool]:
        """(the lease or None when a live holder has it, whether an expired lease was taken over)."""
        lease = self.create_lease(ref, fields, seconds, now)
        if lease is not None:
            return lease, False
        snapshot = self.get_document(ref)
        if lease_is_live(snapshot, now):
            return None, False
        return self.take_over_lease(ref, snapshot, fields, seconds, now), snapshot.exists

    def release_lease(self, lease: Lease) -> None:
        """Best effort: an unreleased lease only delays the next holder until it expires."""
        try:
            self.delete_document(lease.ref)
        except StoreUnavailable:
            logger.warning("lease release failed; it will expire", extra={"fields": {"lease": lease.ref.id}})

    # --- queries ------------------------------------------------------------------------------------------------------
    def due_calendars(
        self, field: str, now: dt.datetime, limit: int, *, after: DocumentSnapshot | None = None
    ) -> tuple[list[SyncedCalendar], DocumentSnapshot | None]:
        """Enabled calendars whose `field` (renew_due_at / pull_due_at) has passed, oldest first (collection group),
        at most `limit`, after the cursor `after`; with the cursor of the next page (None: this was the last page).
        The cursor keeps a calendar that stays due (its work failed) from being taken twice in one run."""
        query = (
            self.db.collection_group(CALENDARS)
            .where(filter=_field_filter("enabled", "==", True))
            .where(filter=_field_filter(field, "<=", now))
            .order_by(field)
        )
        if after is not None:
            query = query.start_after(after)
        snapshots = list(self.query(query.limit(limit)))
        calendars = [SyncedCalendar.model_validate(s.to_dict()) for s in snapshots]
        return calendars, (snapshots[-1] if len(snapshots) == limit else None)

    def routes_near_expiry(self, horizon: dt.datetime, limit: int) -> list[ChannelRoute]:
        """ACTIVE channel routes expiring before `horizon`, soonest first (the cron's orphan sweep)."""
        query = (
            self.db.collection(CHANNELS)
            .where(filter=_field_filter("state", "==", ChannelState.ACTIVE.value))
            .where(filter=_field_filter("expiration", "<=", horizon))
            .order_by("expiration")
            .limit(limit)
        )
        return [ChannelRoute.model_validate(s.to_dict()) for s in self.query(query)]

    def count_events(self, owner_id: str, state: SyncState) -> int:
        """How many of a user's events are in `state` (a count aggregation: one read whatever the count)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("owner_id", "==", owner_id))
            .where(filter=_field_filter("sync.state", "==", state.value))
        )
        return self.count_matching(query)

    def due_event_ids(self, now: dt.datetime, limit: int) -> list[str]:
        """pending/error events whose retry time has come, oldest first (index: sync.state, sync.next_attempt_at)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("sync.state", "in", [SyncState.PENDING.value, SyncState.ERROR.value]))
            .where(filter=_field_filter("sync.next_attempt_at", "<=", now))
            .order_by("sync.next_attempt_at")
            .limit(limit)
        )
        return [snapshot.id for snapshot in self.query(query)]

    def make_pending_events_due(self, owner_id: str, now: dt.datetime) -> int:
        """Every pending event of a user becomes due now (index: owner_id, sync.state); batched blind updates."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("owner_id", "==", owner_id))
            .where(filter=_field_filter("sync.state", "==", SyncState.PENDING.value))
        )
        released = 0
        with self.batch() as batch:
            for snapshot in self.query(query):
                batch.update(snapshot.reference, {"sync.next_attempt_at": now})
                released += 1
        return released

    def events_edited_page(
        self, since: dt.datetime, until: dt.datetime, limit: int, after: DocumentSnapshot | None
    ) -> list[DocumentSnapshot]:
        """One page of events by `updated_at` in [since, until], after the cursor (a single-field range, no index)."""
        query = (
            self.db.collection(EVENTS)
            .where(filter=_field_filter("updated_at", ">=", since))
            .where(filter=_field_filter("updated_at", "<=", until))
            .order_by("updated_at")
        )
        if after is not None:
            query = query.start_after(after)
        return list(self.query(query.limit(limit)))

    def get_push_sweep_watermark(self) -> dt.datetime | None:
        snapshot = self.get_document(self._ref(SYNC_META, PUSH_SWEEP_STATE))
        watermark = (snapshot.to_dict() or {}).get("watermark") if snapshot.exists else None
        return watermark if isinstance(watermark, dt.datetime) else None

    def set_push_sweep_watermark(self, watermark: dt.datetime, now: dt.datetime) -> None:
        self.set_document(self._ref(SYNC_META, PUSH_SWEEP_STATE), {"watermark": watermark, "swept_at": now})

    def operator_error_report(self, since: dt.datetime, limit: int) -> dict[str, list[dict[str, Any]]]:
        """For the ops CLI: integrations needing reauth, calendars with recent errors, events in error."""
        reauth = (
            self.db.collection(INTEGRATIONS)
            .where(filter=_field_filter("status", "==", IntegrationStatus.NEEDS_REAUTH.value))
            .limit(limit)
        )
        calendars = (
            self.db.collection_group(CALENDARS)
            .where(filter=_field_filter("enabled", "==", True))
            .where(filter=_field_filter("last_error_at", ">=", since))
            .order_by("last_error_at", direction="DESCENDING")
            .limit(limit)
        )
        events = self.db.collection(EVENTS).where(filter=_field_filter("sync.state", "==", SyncState.ERROR.value))
        return {
            "needs_reauth": [{"id": s.id, **(s.to_dict() or {})} for s in self.query(reauth)],
            "calendars": [{"id": s.id, **(s.to_dict() or {})} for s in self.query(calendars)],
            "events": [{"id": s.id, **(s.to_dict() or {})} for s in self.query(events.limit(limit))],
        }


@dataclass
class Lease:
    """A held lease document; `holder` is written into it so a refresh or an inspection can tell who holds it."""

    ref: DocumentReference
    holder: str
    seconds: int

    def refresh_write(self, now: dt.datetime) -> Write:
        """The write that keeps the lease alive (queued with other writes: no extra commit)."""
        return Write(
            "set", self.ref, {"holder": self.holder, "expires_at": now + dt.timedelta(seconds=self.seconds)}, merge=True
        )

    def release_write(self) -> Write:
        return Write("delete", self.ref)


@dataclass
class PullState:
    """What a pull reads before its first events.list (store.get_pull_state): one batchGet, not three round trips."""

    integration: Integration | None
    calendar: SyncedCalendar | None
    lease: DocumentSnapshot
    dirty: DocumentSnapshot
    route: ChannelRoute | None = None
    calendar_update_time: dt.datetime | None = None
    events: dict[str, DocumentSnapshot] = field(default_factory=dict)  # CRM id -> snapshot (exists or not)


def lease_is_live(snapshot: DocumentSnapshot, now: dt.datetime) -> bool:
    expires_at = (snapshot.to_dict() or {}).get("expires_at") if snapshot.exists else None
    return isinstance(expires_at, dt.datetime) and expires_at > now


def retry_if_changed(
    attempt: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    what: str,
    attempts: int = RETRY_ATTEMPTS,
    rng: random.Random | None = None,
) -> T:
    """Run `attempt` (read → plan → write if unchanged) until its conditional write sticks.

    `attempt` raises DocumentChanged when its precondition lost (a concurrent write landed between its read and its
    write); it is then run again on a fresh read, after a jittered exponential pause (`sleep` is injected: tests pass
    their fake clock's). After `attempts` lost rounds: KeptChanging; the newest write's own trigger or the next run
    finishes the work. Modelled on python-firestore's `transaction.py` (`_Transactional`, `_sleep`).
    """
    pause = RETRY_INITIAL_SLEEP
    rng = rng or random.Random()
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except DocumentChanged:
            if number == attempts:
                break
            sleep(rng.uniform(0, pause))
            pause = min(pause * 2, RETRY_MAX_SLEEP)
    raise KeptChanging(f"{what}: the document kept changing", attempts=attempts)


def _field_filter(path: str, op: str, value: Any) -> Any:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return FieldFilter(path, op, value)
