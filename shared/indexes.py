"""Composite indexes the library's queries need. Terraform declares each one; a policy test keeps them in step.

Each entry: (collection group, ((field path, "ASCENDING"|"DESCENDING"), ...)). Single-field equality queries need none.
"""

from __future__ import annotations

COMPOSITE_INDEXES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("events", (("owner_id", "ASCENDING"), ("google.calendar_id", "ASCENDING"))),
    # CRM → Google retries (FirestoreStore.due_event_ids): sync.state in [pending, error] and
    # sync.next_attempt_at <= now, oldest first.
    ("events", (("sync.state", "ASCENDING"), ("sync.next_attempt_at", "ASCENDING"))),
    # Settings page counts (FirestoreStore.count_events) and held pushes: events of one owner in one sync state.
    ("events", (("owner_id", "ASCENDING"), ("sync.state", "ASCENDING"))),
    # Exceptions of a deleted series (FirestoreStore.series_exception_snapshots).
    ("events", (("owner_id", "ASCENDING"), ("series.series_crm_id", "ASCENDING"))),
    # Match by link: Google deletions of events the CRM created (FirestoreStore.events_by_google_ids).
    ("events", (("owner_id", "ASCENDING"), ("google.calendar_id", "ASCENDING"), ("google.event_id", "ASCENDING"))),
    # The conflict center (shared.account.conflict_center.list_conflicts): an owner's decided events, newest first.
    ("events", (("owner_id", "ASCENDING"), ("sync.last_decision_at", "DESCENDING"))),
    # Orphan sweep of the renewal run: active routes near expiry (FirestoreStore.routes_near_expiry).
    ("channels", (("state", "ASCENDING"), ("expiration", "ASCENDING"))),
)

# Composite indexes with COLLECTION_GROUP query scope (queries over every `integrations/*/calendars`), same shape.
# The renewal cron's due queries (FirestoreStore.due_calendars):
# enabled == true AND <due> <= now, ordered.
COLLECTION_GROUP_INDEXES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("calendars", (("enabled", "ASCENDING"), ("renew_due_at", "ASCENDING"))),
    ("calendars", (("enabled", "ASCENDING"), ("pull_due_at", "ASCENDING"))),
    # `python -m infra.ops errors`: enabled calendars with a recent error, newest first.
    ("calendars", (("enabled", "ASCENDING"), ("last_error_at", "DESCENDING"))),
)

# Firestore TTL policies: (collection group, field) — documents are deleted some time after the field's time.
TTL_FIELDS: tuple[tuple[str, str], ...] = (
    ("events", "purge_at"),
    ("oauth_states", "expires_at"),  # PKCE verifiers of OAuth flows never completed (shared.account.google_oauth)
    ("channel_leases", "expires_at"),  # leases of crashed holders (shared.account.channels)
    ("sync_leases", "expires_at"),  # pull leases of crashed holders (shared.sync.coalesce)
    ("sync_dirty", "expires_at"),  # "pull again" markers nobody consumed (shared.sync.coalesce)
)
