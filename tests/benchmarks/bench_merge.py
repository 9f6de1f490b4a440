"""Benchmark: what the three-way merge's stored base (`sync.base`) adds to an event document.

Pure (no emulator, no stand-in): a seeded, generated set of realistic CRM meetings, sized by Firestore's documented
storage rules (https://cloud.google.com/firestore/docs/storage-size: a string is its UTF-8 bytes + 1, a field name
likewise, a map the sum of its field names and values, a document its name + fields + 32 bytes).

The set (MERGE_BENCH_EVENTS, default 2,000 meetings): titles of 10-60 characters, a description on 60% (up to 2,000
characters), a location on half, a weekly recurrence on 20%, custom reminders on half, attachments on 10%, and guests
as a sales CRM's meetings have them: none on 20%, 1-3 on 35%, 4-8 on 30%, 9-20 on 10%, 21-60 on 5%, with addresses
like `first.last@company.example`.

Figures: merge.base_bytes_per_event (p95; also _p50 and _max), beside merge.naive_base_bytes_per_event (p95 of a base
that stores the values themselves, as a merge that keeps a copy of the last agreed content would);
merge.event_bytes_per_event (p95 of the document without the base) and merge.base_share_p95 (p95 of base / document);
merge.base_of_us / merge.merge_us (wall time per event, reported, never asserted). The base lives in the event
document and is written in the commit that records the sync, so it adds no Firestore operation.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import string
import time
from typing import Any

SEED = 18
PREFIX = "merge"
GUEST_COUNTS = ((0, 0, 20), (1, 3, 35), (4, 8, 30), (9, 20, 10), (21, 60, 5))  # (fewest, most, % of meetings)


def firestore_bytes(value: Any) -> int:
    """Storage size of a Firestore value (see the module docstring for the rules)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | dt.datetime):
        return 8
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return sum(firestore_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(len(str(key).encode()) + 1 + firestore_bytes(item) for key, item in value.items())
    raise TypeError(f"no Firestore size for {type(value).__name__}")


def document_bytes(collection: str, document_id: str, fields: dict[str, Any]) -> int:
    return firestore_bytes(collection) + firestore_bytes(document_id) + 16 + firestore_bytes(fields) + 32


def _words(rng: random.Random, low: int, high: int) -> str:
    length = rng.randint(low, high)
    text = " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(length // 5 + 1))
    return text[:length]


def _name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))


def _guest_count(rng: random.Random) -> int:
    fewest, most, _ = rng.choices(GUEST_COUNTS, weights=[w for *_, w in GUEST_COUNTS])[0]
    return rng.randint(fewest, most)


def realistic_event(rng: random.Random, index: int) -> Any:
    from shared.models import CrmEvent

    day = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randint(0, 365))
    begin = dt.datetime.combine(day, dt.time(rng.randint(7, 18), rng.choice([0, 15, 30, 45])), tzinfo=dt.UTC)
    companies = [f"{_name(rng)}-{_name(rng)}.example" for _ in range(3)]
    guests = [
        {
            "email": f"{_name(rng)}.{_name(rng)}@{rng.choice(companies)}",
            "display_name": f"{_name(rng).title()} {_name(rng).title()}" if rng.random() < 0.4 else None,
            "optional": rng.random() < 0.15,
            "response_status": rng.choice(["needsAction", "accepted", "declined", "tentative"]),
        }
        for _ in range(_guest_count(rng))
    ]
    custom_reminders = rng.random() < 0.5
    return CrmEvent.model_validate(
        {
            "id": f"crm-{index:06d}",
            "owner_id": f"user-{rng.randint(1, 50)}",
            "title": _words(rng, 10, 60),
            "description": _words(rng, 20, 2000) if rng.random() < 0.6 else None,
            "location": _words(rng, 8, 60) if rng.random() < 0.5 else None,
            "start": {"date_time": begin.isoformat(), "time_zone": "Europe/Berlin"},
            "end": {
                "date_time": (begin + dt.timedelta(minutes=rng.choice([30, 45, 60, 90]))).isoformat(),
                "time_zone": "Europe/Berlin",
            },
            "attendees": guests,
            "reminders": {
                "use_default": not custom_reminders,
                "overrides": [{"method": "popup", "minutes": 10}, {"method": "email", "minutes": 1440}][
                    : rng.randint(1, 2)
                ]
                if custom_reminders
                else [],
            },
            "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO"] if rng.random() < 0.2 else [],
            "attachments": [
                {"file_url": f"https://drive.example/file/{_name(rng)}{i}", "title": _words(rng, 5, 30)}
                for i in range(rng.randint(1, 3) if rng.random() < 0.1 else 0)
            ],
            "meta": {"deal_id": f"deal-{rng.randint(1, 9999)}", "kind": rng.choice(["demo", "call", "meeting"])},
            "google": {"calendar_id": "primary", "event_id": f"g{index:031d}", "etag": '"3181161784712000"'},
            "sync": {"state": "synced", "content_hash": "0" * 64},
        }
    )


def _naive_base(event: Any) -> dict[str, Any]:
    """A base that keeps the last agreed values themselves, in the same shape as ours."""
    from shared.models import dump_for_firestore
    from shared.sync.merge import GOOGLE_OWNED_ATTENDEE_FIELDS, MERGED_FIELDS

    content = dump_for_firestore(event)
    fields = {name: content[name] for name in MERGED_FIELDS if name != "attendees"}
    attendees = {
        a.email.lower(): a.model_dump(exclude={"email", *GOOGLE_OWNED_ATTENDEE_FIELDS}) for a in event.attendees
    }
    return {"fields": fields, "attendees": attendees}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(results: dict[str, Any]) -> None:
    from shared.models import dump_for_firestore
    from shared.sync.merge import base_of, three_way_merge

    count = int(os.environ.get("MERGE_BENCH_EVENTS", 2000))
    rng = random.Random(SEED)
    events = [realistic_event(rng, index) for index in range(count)]

    started = time.perf_counter()
    bases = [base_of(event) for event in events]
    base_of_s = time.perf_counter() - started
    edited = [event.model_copy(update={"location": "Room 4"}) for event in events]
    started = time.perf_counter()
    for base, event, google in zip(bases, events, edited, strict=True):
        three_way_merge(base, event, google).merged("crm")
    merge_s = time.perf_counter() - started

    ours, naive, documents, shares = [], [], [], []
    for event, base in zip(events, bases, strict=True):
        added = firestore_bytes("base") + firestore_bytes(base.model_dump())
        fields = dump_for_firestore(event)
        document_id = fields.pop("id")
        document = document_bytes("events", document_id, fields)
        ours.append(added)
        naive.append(firestore_bytes("base") + firestore_bytes(_naive_base(event)))
        documents.append(document)
        shares.append(added / document)

    results[f"{PREFIX}.base_bytes_per_event"] = _percentile(ours, 0.95)
    results[f"{PREFIX}.base_bytes_per_event_p50"] = _percentile(ours, 0.50)
    results[f"{PREFIX}.base_bytes_per_event_max"] = max(ours)
    results[f"{PREFIX}.naive_base_bytes_per_event"] = _percentile(naive, 0.95)
    results[f"{PREFIX}.event_bytes_per_event"] = _percentile(documents, 0.95)
    results[f"{PREFIX}.base_share_p95"] = round(_percentile(shares, 0.95), 3)
    results[f"{PREFIX}.base_of_us"] = round(base_of_s / count * 1e6, 1)
    results[f"{PREFIX}.merge_us"] = round(merge_s / count * 1e6, 1)
    results[f"{PREFIX}.events"] = count


if __name__ == "__main__":
    import json

    figures: dict[str, Any] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
