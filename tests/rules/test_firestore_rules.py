"""firestore.rules in the real Firestore emulator: every collection the sync owns is closed to clients, and a user reads
and writes only their own events without touching owner_id or the sync's fields.

The rules are loaded into a project of their own through the emulator's rules endpoint; client requests go through
the REST API with the emulator's unsigned ID tokens (`Authorization: Bearer <alg none JWT>`), as the Firebase client
SDKs send them to the emulator. Seeding uses the server client library, which (like the Admin SDK in production) is
not subject to rules. Each collection name comes from the code's own constant, so a renamed collection is tested.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared import store

RULES = Path(__file__).resolve().parents[2] / "firestore.rules"
ALICE, MALLORY = "alice-uid", "mallory-uid"
SYNC_OWNED = [
    (store.INTEGRATIONS, ALICE),
    (f"{store.INTEGRATIONS}/{ALICE}/{store.CALENDARS}", "primary"),
    (store.GOOGLE_ACCOUNTS, "google-subject-1"),
    (store.CHANNELS, "chan-1"),
    (store.OAUTH_STATES, "state-1"),
    (store.CHANNEL_LEASES, "lease-1"),
    (store.SYNC_LEASES, "lease-2"),
    (store.SYNC_DIRTY, "dirty-1"),
    (store.SYNC_META, store.PUSH_SWEEP_STATE),
    (f"{store.EVENTS}/evt-alice/notes", "n1"),
]


def unsigned_id_token(uid: str, project: str) -> str:
    """The unsigned token the Firestore emulator accepts in place of a Firebase ID token."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": uid,
        "user_id": uid,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "firebase": {"sign_in_provider": "password"},
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class Client:
    """A signed-in (or anonymous) client of the Firestore REST API on the emulator."""

    def __init__(self, host: str, project: str, uid: str | None) -> None:
        self.base = f"http://{host}/v1/projects/{project}/databases/(default)/documents"
        self.headers = {"Authorization": f"Bearer {unsigned_id_token(uid, project)}"} if uid else {}

    def get(self, path: str) -> int:
        return requests.get(f"{self.base}/{path}", headers=self.headers, timeout=10).status_code

    def create(self, collection: str, doc_id: str, fields: dict[str, Any]) -> int:
        return requests.post(
            f"{self.base}/{collection}",
            params={"documentId": doc_id},
            json={"fields": encode(fields)},
            headers=self.headers,
            timeout=10,
        ).status_code

    def update(self, path: str, fields: dict[str, Any], mask: list[str] | None = None) -> int:
        params = [("updateMask.fieldPaths", f) for f in (mask if mask is not None else list(fields))]
        return requests.patch(
            f"{self.base}/{path}", params=params, json={"fields": encode(fields)}, headers=self.headers, timeout=10
        ).status_code

    def replace(self, path: str, fields: dict[str, Any]) -> int:
        return requests.patch(
            f"{self.base}/{path}", json={"fields": encode(fields)}, headers=self.headers, timeout=10
        ).status_code

    def delete(self, path: str) -> int:
        return requests.delete(f"{self.base}/{path}", headers=self.headers, timeout=10).status_code

    def query_events(self, owner: str | None) -> int:
        query: dict[str, Any] = {"from": [{"collectionId": store.EVENTS}]}
        if owner is not None:
            query["where"] = {
                "fieldFilter": {"field": {"fieldPath": "owner_id"}, "op": "EQUAL", "value": {"stringValue": owner}}
            }
        response = requests.post(
            f"{self.base}:runQuery", json={"structuredQuery": query}, headers=self.headers, timeout=10
        )
        return response.status_code


def encode(fields: dict[str, Any]) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, bool):
            return {"booleanValue": v}
        if isinstance(v, int):
            return {"integerValue": str(v)}
        if isinstance(v, dict):
            return {"mapValue": {"fields": encode(v)}}
        if v is None:
            return {"nullValue": None}
        return {"stringValue": str(v)}

    return {k: value(v) for k, v in fields.items()}


def event(owner: str, **extra: Any) -> dict[str, Any]:
    return {
        "owner_id": owner,
        "title": "Call",
        "start": {"date_time": "2027-01-05T10:00:00Z"},
        "end": {"date_time": "2027-01-05T11:00:00Z"},
        **extra,
    }


@pytest.fixture
def rules_project(firestore_emulator: Any) -> Iterator[tuple[str, str]]:
    """A fresh project with firestore.rules loaded and one event per user plus every sync-owned document seeded."""
    from google.cloud import firestore

    project = f"rules-{uuid.uuid4().hex[:10]}"
    loaded = requests.put(
        f"http://{firestore_emulator.host}/emulator/v1/projects/{project}:securityRules",
        json={"rules": {"files": [{"name": "firestore.rules", "content": RULES.read_text(encoding="utf-8")}]}},
        timeout=10,
    )
    assert loaded.status_code == 200, loaded.text
    db = firestore.Client(project=project)
    db.document(f"{store.EVENTS}/evt-alice").set(
        event(ALICE, google={"calendar_id": "alice@example.com", "event_id": "g1"}, sync={"state": "synced"})
    )
    db.document(f"{store.EVENTS}/evt-mallory").set(event(MALLORY))
    for collection, doc_id in SYNC_OWNED:
        db.document(f"{collection}/{doc_id}").set({"owner_id": ALICE, "user_id": ALICE, "x": 1})
    db.close()
    yield firestore_emulator.host, project
    firestore_emulator.reset(project)


def test_the_rules_are_enforced_at_all(rules_project: tuple[str, str]) -> None:
    """Without a token nothing is readable (guards against a test that passes because rules never loaded)."""
    anonymous = Client(*rules_project, uid=None)
    assert anonymous.get(f"{store.EVENTS}/evt-alice") == 403
    assert anonymous.create(store.EVENTS, "anon", event(ALICE)) == 403


@pytest.mark.parametrize(("collection", "doc_id"), SYNC_OWNED, ids=[c for c, _ in SYNC_OWNED])
def test_sync_owned_documents_are_closed_even_to_their_owner(
    rules_project: tuple[str, str], collection: str, doc_id: str
) -> None:
    alice = Client(*rules_project, uid=ALICE)
    path = f"{collection}/{doc_id}"
    assert alice.get(path) == 403
    assert alice.update(path, {"x": 2}) == 403
    assert alice.delete(path) == 403
    assert alice.create(collection, f"new-{uuid.uuid4().hex[:6]}", {"owner_id": ALICE}) == 403


def test_a_user_reads_and_lists_only_their_own_events(rules_project: tuple[str, str]) -> None:
    alice = Client(*rules_project, uid=ALICE)
    assert alice.get(f"{store.EVENTS}/evt-alice") == 200
    assert alice.get(f"{store.EVENTS}/evt-mallory") == 403
    assert alice.query_events(ALICE) == 200
    assert alice.query_events(MALLORY) == 403
    assert alice.query_events(None) == 403  # rules are not filters: an unconstrained list is refused


def test_a_user_creates_events_only_as_themselves_and_without_sync_fields(rules_project: tuple[str, str]) -> None:
    alice = Client(*rules_project, uid=ALICE)
    assert alice.create(store.EVENTS, "a-new", event(ALICE)) == 200
    assert alice.create(store.EVENTS, "a-forged-owner", event(MALLORY)) == 403
    assert alice.create(store.EVENTS, "a-no-owner", {"title": "x"}) == 403
    for field, forged in (
        ("google", {"calendar_id": "victim@example.com", "event_id": "g9"}),
        ("sync", {"state": "synced"}),
        ("purge_at", "2027-01-01T00:00:00Z"),
    ):
        assert alice.create(store.EVENTS, f"a-{field}", event(ALICE, **{field: forged})) == 403, field


def test_a_user_updates_only_their_own_events_and_never_owner_or_sync_fields(rules_project: tuple[str, str]) -> None:
    alice = Client(*rules_project, uid=ALICE)
    mine, theirs = f"{store.EVENTS}/evt-alice", f"{store.EVENTS}/evt-mallory"
    assert alice.update(mine, {"title": "Renamed"}) == 200
    assert alice.update(theirs, {"title": "Hijacked"}) == 403
    assert alice.update(mine, {"owner_id": MALLORY}) == 403
    assert alice.update(theirs, {"owner_id": ALICE}) == 403
    assert alice.update(mine, {"google": {"calendar_id": "victim@example.com", "event_id": "g9"}}) == 403
    assert alice.update(mine, {"sync": {"state": "pending"}}) == 403
    assert alice.update(mine, {"purge_at": "2027-01-01T00:00:00Z"}) == 403
    # A whole-document replace drops the sync's fields: that changes them too.
    assert alice.replace(mine, event(ALICE, title="Replaced")) == 403


def test_a_user_deletes_only_their_own_events(rules_project: tuple[str, str]) -> None:
    alice = Client(*rules_project, uid=ALICE)
    assert alice.delete(f"{store.EVENTS}/evt-mallory") == 403
    assert alice.delete(f"{store.EVENTS}/evt-alice") == 200
