"""Pydantic models for everything the sync stores or exchanges.

Why pydantic at every boundary: Firestore documents, Google events and HTTP bodies are validated on the way in, so the
engine only ever sees well-formed data, and bad input fails with a precise message instead of a KeyError deep inside.

Firestore shape (README, Design: Firestore; collection names in shared/store.py):
- `integrations/{userId}`                      -> Integration
- `integrations/{userId}/calendars/{calKey}`   -> SyncedCalendar   (calKey = calendar_key(calendar_id))
- `channels/{channelId}`                       -> ChannelRoute     (webhook routing: one read per notification)
- `events/{eventId}`                           -> CrmEvent
"""

import base64
import datetime as dt
import hashlib
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

# ---------------------------------------------------------------------------------------------------------------------


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def calendar_key(calendar_id: str) -> str:
    """A Firestore-safe, stable document id for a Google calendar id (which may contain '/', '#', '@')."""
    return hashlib.sha256(calendar_id.encode()).hexdigest()[:32]


def crm_event_id_for_google(calendar_id: str, google_event_id: str) -> str:
    """The CRM document id of an event first seen in Google: derived: re-imports never duplicate (invariant 1)."""
    digest = hashlib.sha256(f"{calendar_id}\n{google_event_id}".encode()).hexdigest()[:40]
    return f"g{digest}"


def google_event_id_for_crm(crm_event_id: str) -> str:
    """The client-supplied Google id of an event created from the CRM: base32hex (a-v, 0-9), 32 chars, derived."""
    digest = hashlib.sha256(f"crm-event\n{crm_event_id}".encode()).digest()[:20]
    return base64.b32hexencode(digest).decode().lower().rstrip("=")


# Every model defers building its validator to first use (`defer_build`): importing a function's code stays cheap
# (cold start), and a function pays only for the models it really uses.
class Strict(BaseModel):
    """Base for boundary models: unknown fields are errors, not silently kept."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Stored(BaseModel):
    """Base for Firestore documents: tolerate fields added by later versions (forward compatible)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


# ---------------------------------------------------------------------------------------------------------------------
# Integration and calendars


class IntegrationStatus(StrEnum):
    CONNECTED = "connected"
    NEEDS_REAUTH = "needs_reauth"
    DISCONNECTED = "disconnected"


# Event types (shared/gcal/event_types.py says what each becomes in the CRM). Meetings are always imported.
MEETING_TYPES = frozenset({"default", "fromGmail"})
# sync_enable's `import_types` keys -> Google's eventType.
IMPORT_TYPE_KEYS: dict[str, str] = {
    "out_of_office": "outOfOffice",
    "focus_time": "focusTime",
    "working_location": "workingLocation",
    "birthday": "birthday",
}


class ImportTypes(Stored):
    """Which non-meeting event types a user imports (stored on the Integration; sync_enable / sync_status)."""

    out_of_office: bool = True
    focus_time: bool = True
    working_location: bool = False
    birthday: bool = False

    def imports(self, event_type: str) -> bool:
        """Meetings always; the other types as chosen; a type Google adds later is not imported."""
        if event_type in MEETING_TYPES:
            return True
        for key, google_type in IMPORT_TYPE_KEYS.items():
            if google_type == event_type:
                return bool(getattr(self, key))
        return False


class Integration(Stored):
    """`integrations/{userId}`: one Google connection per CRM user. The refresh token is only ever stored encrypted."""

    user_id: str
    status: IntegrationStatus = IntegrationStatus.DISCONNECTED
    account_email: str | None = None
    account_subject: str | None = None  # Google's stable account id; keys the google_accounts claim
    scopes: list[str] = Field(default_factory=list)
    refresh_token_ciphertext: str | None = Field(default=None, repr=False)
    key_id: str | None = None
    target_calendar_id: str = "primary"
    send_updates: Literal["all", "externalOnly", "none"] | None = None
    reauth_reason: str | None = None
    connected_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    # How conflicts are decided for this user: last write wins (the default) or held for the user ("ask me").
    conflict_mode: Literal["last_write_wins", "ask_me"] = "last_write_wins"
    # Which non-meeting Google event types enter the CRM (sync_enable `import_types`; new imports only).
    import_types: ImportTypes = Field(default_factory=ImportTypes)


class ChannelInfo(Stored):
    """A notification channel as stored on its calendar (id, resource id and expiration: a settings page shows them)."""

    id: str
    resource_id: str
    token_digest: str = Field(repr=False)
    expiration: dt.datetime
    address: str = ""
    created_at: dt.datetime | None = None


class ImportProgress(Stored):
    state: Literal["idle", "running", "done", "failed"] = "idle"
    pages: int = 0
    events_seen: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class SyncedCalendar(Stored):
    """`integrations/{userId}/calendars/{calKey}`: sync state of one Google calendar for one user."""

    user_id: str
    calendar_id: str
    enabled: bool = False
    is_target: bool = False
    sync_token: str | None = Field(default=None, repr=False)
    channel: ChannelInfo | None = None
    # Indexed "due" times so the cron queries only what is due (cost grows with due work, not with users).
    renew_due_at: dt.datetime | None = None
    pull_due_at: dt.datetime | None = None
    last_notification_at: dt.datetime | None = None
    last_sync_at: dt.datetime | None = None
    # Our first Google write whose notification has not arrived yet (shared/sync/echo.py: the dead-channel signal).
    echo_expected_at: dt.datetime | None = None
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    import_progress: ImportProgress = Field(default_factory=ImportProgress)
    counters: dict[str, int] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return calendar_key(self.calendar_id)


class ChannelState(StrEnum):
    OPENING = "opening"  # written before events.watch: Google's first `sync` can arrive before watch answers
    ACTIVE = "active"
    STOPPED = "stopped"


class ChannelRoute(Stored):
    """`channels/{channelId}`: how the webhook finds a calendar from X-Goog-Channel-ID with one document read."""

    channel_id: str
    user_id: str
    calendar_id: str
    calendar_key: str
    resource_id: str
    token_digest: str = Field(repr=False)
    expiration: dt.datetime
    state: ChannelState = ChannelState.ACTIVE
    created_at: dt.datetime | None = None
    # Notifications still expected for our own writes (shared/sync/echo.py); the webhook answers them without a list.
    echo_pending: int = 0
    stopped_at: dt.datetime | None = None


# ---------------------------------------------------------------------------------------------------------------------
# CRM events


class EventTime(Stored):
    """Either an all-day `date` (YYYY-MM-DD) or a `date_time` (RFC 3339) with an optional IANA `time_zone`."""

    date: str | None = None
    date_time: str | None = None
    time_zone: str | None = None

    @field_validator("date")
    @classmethod
    def _check_date(cls, value: str | None) -> str | None:
        if value is not None:
            dt.date.fromisoformat(value)
            if len(value) != 10:
                raise ValueError("date must be YYYY-MM-DD")
        return value

    @field_validator("date_time")
    @classmethod
    def _check_date_time(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError("date_time needs a UTC offset (RFC 3339)")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> "EventTime":
        if (self.date is None) == (self.date_time is None):
            raise ValueError("exactly one of date or date_time is required")
        return self

    @property
    def is_all_day(self) -> bool:
        return self.date is not None

    def instant(self) -> dt.datetime:
        """A comparable UTC instant (all-day dates at midnight UTC)."""
        if self.date is not None:
            return dt.datetime.fromisoformat(self.date).replace(tzinfo=dt.UTC)
        assert self.date_time is not None  # guaranteed by the validator
        return dt.datetime.fromisoformat(self.date_time.replace("Z", "+00:00")).astimezone(dt.UTC)


ResponseStatus = Literal["needsAction", "declined", "tentative", "accepted"]


class Attendee(Stored):
    email: str
    display_name: str | None = None
    response_status: ResponseStatus = "needsAction"
    optional: bool = False
    organizer: bool = False
    is_self: bool = False
    resource: bool = False
    comment: str | None = None
    additional_guests: int = 0


class Person(Stored):
    email: str | None = None
    display_name: str | None = None
    is_self: bool = False


class ReminderOverride(Stored):
    method: Literal["email", "popup"]
    minutes: int = Field(ge=0, le=40_320)


class Reminders(Stored):
    use_default: bool = True
    overrides: list[ReminderOverride] = Field(default_factory=list, max_length=5)


class Attachment(Stored):
    file_url: str
    title: str | None = None
    mime_type: str | None = None
    icon_link: str | None = None
    file_id: str | None = None


class SeriesLink(Stored):
    """Set on an instance exception: which series it belongs to and which occurrence it replaces."""

    recurring_event_id: str  # Google id of the series master
    series_crm_id: str | None = None
    original_start: EventTime


class CrmMeta(Stored):
    """CRM-owned metadata: travels to Google in extendedProperties.private, never overwritten from Google."""

    crm_event_id: str | None = None
    deal_id: str | None = None
    company_id: str | None = None
    quote_id: str | None = None
    kind: str | None = None


class GoogleLink(Stored):
    """Where this CRM event lives in Google, as of the last sync."""

    calendar_id: str
    event_id: str
    etag: str | None = None
    updated: dt.datetime | None = None
    ical_uid: str | None = None
    html_link: str | None = None


class SyncState(StrEnum):
    PENDING = "pending"
    SYNCED = "synced"
    ERROR = "error"
    CONFLICT = "conflict"


class UserResolution(Stored):
    """What the user chose for a recorded conflict in the conflict center."""

    at: dt.datetime
    keep: Literal["crm", "google"]
    user_id: str
    changed: bool  # False when the user kept the version that had already won


class ConflictDecision(Stored):
    """A recorded last-write-wins decision (invariant 4), with what the conflict center shows and undoes.

    `fields` are the synced fields on which the two versions differed; `winning` / `losing` hold each side's values of
    those fields (JSON form), so "keep the other version" can re-apply the losing side. A deletion in Google has no
    losing values to re-apply (`fields` is ["deleted"]). Decisions recorded before these fields existed have them empty.
    """

    at: dt.datetime
    winner: Literal["crm", "google"]
    reason: str
    crm_updated_at: dt.datetime | None = None
    google_updated: dt.datetime | None = None
    id: str | None = None
    fields: list[str] = Field(default_factory=list)
    winning: dict[str, Any] = Field(default_factory=dict)
    losing: dict[str, Any] = Field(default_factory=dict)
    resolved_by_user: UserResolution | None = None
    # From the three-way merge (shared/sync/merge.py): the fields one side changed alone, taken without a decision,
    # and the fields both sides changed differently, which this decision settled. Both empty: a deletion's decision.
    fields_merged: list[str] = Field(default_factory=list)
    fields_decided: list[str] = Field(default_factory=list)
    # "Ask me" mode: the conflicting fields were not decided; the event holds both versions (`sync.state` conflict,
    # `winning` the CRM's values, `losing` Google's) until the user chooses in the conflict center.
    pending: bool = False


class SyncBase(Stored):
    """The synced content both sides last agreed on, as short digests: enough to tell which side changed what."""

    fields: dict[str, str] = Field(default_factory=dict)  # merged field name -> digest of its value
    attendees: dict[str, str] = Field(default_factory=dict)  # lower-cased email -> digest of the guest's entry
    own_answer: str | None = None  # digest of the user's own answer (the `is_self` guest's response); None: unknown


class SyncInfo(Stored):
    state: SyncState = SyncState.PENDING
    origin: Literal["crm", "google"] = "crm"
    content_hash: str | None = None  # hash of the synced content at the last successful sync (echo suppression)
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    attempts: int = 0
    next_attempt_at: dt.datetime | None = None
    pushed_at: dt.datetime | None = None
    pulled_at: dt.datetime | None = None
    decisions: list[ConflictDecision] = Field(default_factory=list)
    # The content hash the last *failed* push attempted: with next_attempt_at it stops our own failure bookkeeping
    # write from re-triggering an immediate retry (the cron retries when due; a new CRM edit retries at once).
    attempted_hash: str | None = None
    # The three-way merge's base, written with every successful push or pull; None for events synced before it.
    base: SyncBase | None = None
    # The Google account this event's link belongs to, once the owner reconnected with another account: not synced.
    detached_from: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def last_decision_at(self) -> dt.datetime | None:
        """Stored with the decisions so the conflict center can query an owner's decided events, newest first."""
        return max((d.at for d in self.decisions), default=None)


class CrmEvent(Stored):
    """`events/{eventId}`: a CRM meeting. Content fields sync; `meta` is CRM-owned; `google`/`sync` are ours."""

    id: str = ""
    owner_id: str
    title: str = ""
    description: str | None = None
    location: str | None = None
    start: EventTime
    end: EventTime
    status: Literal["confirmed", "tentative", "cancelled"] = "confirmed"
    attendees: list[Attendee] = Field(default_factory=list)
    organizer: Person | None = None
    reminders: Reminders = Field(default_factory=Reminders)
    recurrence: list[str] = Field(default_factory=list)
    series: SeriesLink | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=25)
    conference_link: str | None = None
    visibility: Literal["default", "public", "private", "confidential"] = "default"
    transparency: Literal["opaque", "transparent"] = "opaque"
    html_link: str | None = None
    # Google-owned, recorded from Google, not synced content (shared/gcal/event_types.py): the event's type and its
    # properties object, whether the CRM treats it as a meeting, and the user's role in it (an invitation from
    # someone else has user_is_organizer False; guests_can_modify widens what such a user may change).
    event_type: str = "default"  # a type Google adds later is stored as it comes
    type_properties: dict[str, Any] | None = None
    is_meeting: bool = True
    user_is_organizer: bool = True
    guests_can_modify: bool = False
    meta: CrmMeta = Field(default_factory=CrmMeta)
    google: GoogleLink | None = None
    sync: SyncInfo = Field(default_factory=SyncInfo)
    deleted: bool = False
    deleted_at: dt.datetime | None = None
    # Written by the CRM with the change: Google's sendUpdates for pushing it (bulk imports write "none");
    # None = the owner's Integration.send_updates, else settings.send_updates. Not synced content.
    send_updates: Literal["all", "externalOnly", "none"] | None = None
    purge_at: dt.datetime | None = None  # TTL field: tombstones are purged by Firestore TTL after this time
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None  # the CRM edit time (last-write-wins clock for the CRM side)

    @model_validator(mode="after")
    def _end_not_before_start(self) -> "CrmEvent":
        if self.start.is_all_day != self.end.is_all_day:
            raise ValueError("start and end must both be all-day dates or both date-times")
        if self.end.instant() < self.start.instant():
            raise ValueError("end must not be before start")
        return self


# Fields of CrmEvent that are synced content (hashed for echo suppression and change detection). `meta` is in: a
# CRM-only change of deal / company / quote / kind must reach Google's extendedProperties; the pull keeps `meta` as
# the CRM has it, so a pulled event still hashes equal to what the push would send.
CONTENT_FIELDS: tuple[str, ...] = (
    "meta",
    "title",
    "description",
    "location",
    "start",
    "end",
    "status",
    "attendees",
    "reminders",
    "recurrence",
    "series",
    "attachments",
    "conference_link",
    "visibility",
    "transparency",
    "deleted",
)


def dump_for_firestore(model: BaseModel) -> dict[str, Any]:
    """A model as a Firestore-ready dict (datetimes stay datetimes; None kept so fields can be cleared)."""
    return model.model_dump(mode="python", by_alias=False)


# ---------------------------------------------------------------------------------------------------------------------
# Webhook boundary


class NotificationHeaders(Strict):
    """The headers Google sends with a push notification (README, Google facts: notifications)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)

    channel_id: str = Field(alias="X-Goog-Channel-ID", min_length=1, max_length=64)
    message_number: int = Field(alias="X-Goog-Message-Number", ge=1)
    resource_id: str = Field(alias="X-Goog-Resource-ID", min_length=1, max_length=512)
    resource_state: Literal["sync", "exists", "not_exists"] = Field(alias="X-Goog-Resource-State")
    resource_uri: str = Field(alias="X-Goog-Resource-URI", min_length=1, max_length=2048)
    channel_expiration: str | None = Field(default=None, alias="X-Goog-Channel-Expiration", max_length=64)
    channel_token: str | None = Field(default=None, alias="X-Goog-Channel-Token", max_length=256)
