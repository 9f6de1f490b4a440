"""Composite indexes the library's queries need. Terraform declares each one; a policy test keeps them in step.

Each entry: (collection group, ((field path, "ASCENDING"|"DESCENDING"), ...)). Single-field equality queries need none.
"""

from __future__ import annotations

COMPOSITE_INDEXES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("events", (("owner_id", "ASCENDING"), ("google.calendar_id", "ASCENDING"))),
)

# Firestore TTL policies: (collection group, field) — documents are deleted some time after the field's time.
TTL_FIELDS: tuple[tuple[str, str], ...] = (("events", "purge_at"),)
