"""The stored base survives Firestore (the emulator): guest keys are e-mail addresses, with '.', '@' and '+' in them."""

from __future__ import annotations

from typing import Any

from shared.models import CrmEvent, SyncInfo, dump_for_firestore
from shared.store import FirestoreStore
from shared.sync.merge import base_of


def test_base_round_trips_through_the_emulator_by_save_and_by_update(firestore_db: Any) -> None:
    store = FirestoreStore(firestore_db)
    event = CrmEvent.model_validate(
        {
            "id": "crm-1",
            "owner_id": "user-1",
            "title": "Kick-off",
            "start": {"date_time": "2026-03-02T10:00:00+00:00"},
            "end": {"date_time": "2026-03-02T11:00:00+00:00"},
            "attendees": [{"email": "Ana.Lima+crm@example.com"}, {"email": "bo@sub.example.co.uk", "optional": True}],
        }
    )
    event.sync = SyncInfo(base=base_of(event))
    store.save_event(event)
    stored = store.get_event("crm-1")
    assert stored is not None and stored.sync.base == base_of(event)
    assert set(stored.sync.base.attendees) == {"ana.lima+crm@example.com", "bo@sub.example.co.uk"}

    moved = event.model_copy(update={"location": "Room 4"})
    store.update_event("crm-1", {"sync": dump_for_firestore(moved.sync.model_copy(update={"base": base_of(moved)}))})
    stored = store.get_event("crm-1")
    assert stored is not None and stored.sync.base == base_of(moved) != base_of(event)
