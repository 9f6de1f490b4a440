"""Helpers for push tests: CRM documents, CloudEvents over HTTP, stand-in inspection."""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests

from infra.local_trigger import build_cloud_event, document_name, document_proto, encode_http
from shared.models import CrmEvent, dump_for_firestore

OWNER = "user-1"
EMAIL = "owner@example.com"
T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def crm_event(event_id: str = "crm-1", **overrides: Any) -> CrmEvent:
    values: dict[str, Any] = {
        "id": event_id,
        "owner_id": OWNER,
        "title": "Demo with ACME",
        "description": "Quarterly review",
        "location": "Room 1",
        "start": {"date_time": "2027-01-05T10:00:00+00:00", "time_zone": "Europe/Paris"},
        "end": {"date_time": "2027-01-05T11:00:00+00:00", "time_zone": "Europe/Paris"},
        "meta": {"deal_id": "deal-7", "company_id": "acme", "quote_id": "q-1", "kind": "demo"},
        "created_at": dt.datetime.now(dt.UTC),
        "updated_at": dt.datetime.now(dt.UTC),
    }
    values.update(overrides)
    return CrmEvent.model_validate(values)


def save(ctx: Any, event: CrmEvent) -> None:
    ctx.store.save_event(event)


def edit(ctx: Any, event_id: str, **fields: Any) -> None:
    """A CRM edit: content fields plus the CRM edit time."""
    data = {k: (dump_for_firestore(v) if hasattr(v, "model_dump") else v) for k, v in fields.items()}
    data.setdefault("updated_at", dt.datetime.now(dt.UTC))
    ctx.store.update_event(event_id, data)


def post_written(
    url: str,
    project: str,
    event_id: str,
    *,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    mode: str = "binary",
    content: str = "json",
) -> requests.Response:
    """POST one real `document.v1.written` CloudEvent to the served push_event function."""
    name = document_name(project, event_id)
    event = build_cloud_event(
        project,
        event_id,
        value=document_proto(name, new) if new is not None else None,
        old_value=document_proto(name, old) if old is not None else None,
        content=content,
    )
    headers, body = encode_http(event, mode)
    response = requests.post(url, data=body, headers=headers, timeout=60)
    return response


def trigger(served: Any, ctx: Any, event_id: str, **kwargs: Any) -> requests.Response:
    """Deliver the CloudEvent for the current document (as Eventarc would after a write); assert success."""
    snapshot = ctx.store.event_ref(event_id).get()
    new = snapshot.to_dict() if snapshot.exists else None
    response = post_written(served.url, ctx.settings.project_id, event_id, new=new, **kwargs)
    assert response.status_code == 200, response.text
    return response


def google_writes(counters: dict[str, Any]) -> int:
    methods = counters.get("by_method", {})
    return sum(
        methods.get(f"calendar.events.{m}", 0) for m in ("insert", "patch", "update", "delete", "import", "move")
    )


def stored_google_event(google: Any, calendar_id: str, event_id: str) -> dict[str, Any] | None:
    for item in google.control.raw_events(calendar_id):
        if item["id"] == event_id:
            return item
    return None
