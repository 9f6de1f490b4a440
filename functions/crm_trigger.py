"""CloudEvent adapter for `push_event`: Firestore `events/{eventId}` written ->
`shared.sync.crm_to_google_run.push_event`.

Eventarc delivers `google.cloud.firestore.document.v1.written` with `subject: documents/events/{id}`. The payload is a
`google.events.cloud.firestore.v1.DocumentEventData` — protobuf (`application/protobuf`, production's default) or its
JSON form (`application/json`, what the local trigger sends). Both are parsed here: the protobuf with a proto-plus
message declaring the same three fields over the installed `google.cloud.firestore_v1` Document type (the
google-events package is not needed). The payload is NOT trusted for the current state: the push re-reads the document
(idempotent, order-independent). Only `oldValue` is used, and only when the document no longer exists (hard delete).

Outcomes: anything not about a top-level `events/{id}` document is a logged no-op (success, so Eventarc does not
retry). Google failures are recorded on the event by the library and the function succeeds (the cron retries);
Firestore failures raise, so the function fails and Eventarc redelivers.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import re
from typing import Any

from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.logs import configure_logging, log_event

logger = logging.getLogger("functions.crm_trigger")

WRITTEN_TYPES = frozenset(
    {
        "google.cloud.firestore.document.v1.written",
        "google.cloud.firestore.document.v1.created",
        "google.cloud.firestore.document.v1.updated",
        "google.cloud.firestore.document.v1.deleted",
    }
)
SUBJECT_RE = re.compile(r"^documents/events/(?P<id>[^/]+)$")
NAME_RE = re.compile(r"^projects/[^/]+/databases/[^/]+/documents/events/(?P<id>[^/]+)$")


class CloudEventAttributes(BaseModel):
    """The CloudEvent attributes the adapter uses (others, e.g. Firestore's extensions, are ignored)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    specversion: str = "1.0"
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None


class FirestoreDocument(BaseModel):
    """A document in DocumentEventData's JSON form (Firestore REST `Value` encoding in `fields`)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    name: str = ""
    fields: dict[str, Any] = Field(default_factory=dict)
    create_time: str | None = Field(default=None, alias="createTime")
    update_time: str | None = Field(default=None, alias="updateTime")


class DocumentEventPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    value: FirestoreDocument | None = None
    old_value: FirestoreDocument | None = Field(default=None, alias="oldValue")


# --- protobuf DocumentEventData with what is installed ------------------------------------------------------------
@functools.cache
def document_event_data_type() -> Any:
    """proto-plus `DocumentEventData` (google/events/cloud/firestore/v1/data.proto: value=1, old_value=2,
    update_mask=3), over firestore_v1's Document, whose field numbers the events proto shares."""
    import proto
    from google.cloud.firestore_v1.types import common, document

    class DocumentEventData(proto.Message):
        value = proto.Field(proto.MESSAGE, number=1, message=document.Document)
        old_value = proto.Field(proto.MESSAGE, number=2, message=document.Document)
        update_mask = proto.Field(proto.MESSAGE, number=3, message=common.DocumentMask)

    return DocumentEventData


def payload_from_data(data: Any, content_type: str | None) -> DocumentEventPayload | None:
    """DocumentEventData from a CloudEvent's data: dict (JSON), protobuf bytes, or None when absent/unreadable."""
    if data in (None, b"", ""):
        return None
    try:
        if isinstance(data, dict):
            return DocumentEventPayload.model_validate(data)
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, bytes | bytearray):
            if content_type and "json" in content_type:
                return DocumentEventPayload.model_validate(json.loads(data))
            message_type = document_event_data_type()
            message = message_type.deserialize(bytes(data))
            return DocumentEventPayload.model_validate(json.loads(message_type.to_json(message)))
    except (ValueError, TypeError, RecursionError, ValidationError, DecodeError) as exc:
        log_event(
            logger,
            "push trigger payload unreadable; using subject only",
            level=logging.WARNING,
            error=type(exc).__name__,
        )
    return None


# --- Firestore REST Value -> Python --------------------------------------------------------------------------------
def decode_value(value: dict[str, Any]) -> Any:
    """One Firestore `Value` in JSON form to Python (timestamps to aware datetimes)."""
    if "nullValue" in value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "booleanValue" in value:
        return bool(value["booleanValue"])
    if "integerValue" in value:
        return int(value["integerValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "timestampValue" in value:
        return dt.datetime.fromisoformat(str(value["timestampValue"]).replace("Z", "+00:00"))
    if "mapValue" in value:
        return decode_fields((value["mapValue"] or {}).get("fields") or {})
    if "arrayValue" in value:
        return [decode_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "referenceValue" in value:
        return value["referenceValue"]
    if "geoPointValue" in value:
        return value["geoPointValue"]
    return None


def decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: decode_value(value) for key, value in fields.items()}


def event_id_from(attributes: CloudEventAttributes, payload: DocumentEventPayload | None) -> str | None:
    """The CRM event id from `subject` (documents/events/{id}), else from the payload's document name."""
    if attributes.subject:
        match = SUBJECT_RE.match(attributes.subject)
        return match.group("id") if match else None
    if payload is not None:
        for document in (payload.value, payload.old_value):
            if document is not None and document.name:
                match = NAME_RE.match(document.name)
                return match.group("id") if match else None
    return None


def old_event_from(payload: DocumentEventPayload | None, event_id: str) -> Any:
    """The previous document as a CrmEvent (used only if the document is gone), or None."""
    from shared.models import CrmEvent

    if payload is None or payload.old_value is None or not payload.old_value.fields:
        return None
    try:
        data = decode_fields(payload.old_value.fields)
        data["id"] = event_id
        return CrmEvent.model_validate(data)
    except (ValidationError, ValueError, TypeError):
        log_event(logger, "push trigger oldValue is not a CRM event", level=logging.WARNING, event_id=event_id)
        return None


def handle_event_written(cloud_event: Any) -> None:
    """Entry point body for main.push_event."""
    configure_logging()
    try:
        attributes = CloudEventAttributes.model_validate(dict(cloud_event.get_attributes()))
    except ValidationError:
        log_event(logger, "push trigger ignored: not a valid CloudEvent", level=logging.WARNING)
        return
    if attributes.type not in WRITTEN_TYPES:
        log_event(
            logger,
            "push trigger ignored: unexpected event type",
            level=logging.WARNING,
            ce_type=attributes.type,
            ce_id=attributes.id,
        )
        return
    payload = payload_from_data(cloud_event.data, attributes.datacontenttype)
    event_id = event_id_from(attributes, payload)
    if event_id is None:
        log_event(
            logger,
            "push trigger ignored: not an events/{id} document",
            level=logging.WARNING,
            subject=attributes.subject,
            ce_id=attributes.id,
        )
        return

    from shared.context import default_context
    from shared.sync.crm_to_google_run import push_event

    result = push_event(default_context(), event_id, old_event=old_event_from(payload, event_id))
    log_event(
        logger,
        "push trigger handled",
        ce_id=attributes.id,
        event_id=event_id,
        outcome=result.outcome,
        action=result.action,
        reason=result.reason,
        google_writes=result.google_writes,
    )
