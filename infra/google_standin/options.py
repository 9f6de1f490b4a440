"""Runtime options of the stand-in. Every UNCONFIRMED Google behaviour is a switch here, changeable via control."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class StandinOptions:
    """Defaults follow Google where documented; UNCONFIRMED points are noted."""

    # OAuth / tokens
    access_token_lifetime: int = 3600
    refresh_tokens_per_client_limit: int = 100  # oldest silently invalidated beyond this (documented by Google)
    default_client_id: str = "standin-client.apps.googleusercontent.com"
    default_client_secret: str = "standin-client-secret"
    auto_create_accounts: bool = True  # OAuth consent for an unknown login_hint creates the account
    # Revoking any token revokes the whole grant: every refresh and access token of that user for that client.
    # RFC 7009 §2.1 lets a server revoke "other tokens based on the same authorization grant", Google's "Revoking a
    # token" (identity/protocols/oauth2/web-server#tokenrevoke) says an access token's refresh token goes too, and
    # users report that a revocation also signs out the app's other tokens: UNCONFIRMED in Google's docs, so strict
    # (grant-wide) by default; False revokes only that token and its own access tokens.
    revoke_whole_grant: bool = True
    # Quota
    quota_per_minute: int = 600
    # Which documented rate-limit answer the per-user quota gives (guides/errors: "403: User rate limit exceeded",
    # "403: Rate limit exceeded", "429: Too many requests"): 403 + userRateLimitExceeded|rateLimitExceeded, or 429 +
    # rateLimitExceeded. Which one Google picks for the per-user minute quota is UNCONFIRMED.
    rate_limit_status: int = 403
    rate_limit_reason: str = "userRateLimitExceeded"
    # Listing
    page_size_cap: int | None = None  # "short pages": cap every page below what the client asked for
    recurrence_horizon_days: int = 366  # singleEvents without timeMax expands up to now/timeMin + this
    max_instances_per_series: int = 2500
    minimal_cancelled: bool = True  # cancelled items in lists carry only Google's guaranteed fields
    sync_token_ttl_seconds: int | None = None  # UNCONFIRMED lifetime; None = never expires by age
    # events.list updatedMin older than this many days -> 410 updatedMinTooLongAgo (guides/errors documents the error,
    # not the limit: UNCONFIRMED; Google keeps deleted events for a few weeks, so 28 days is the strict guess).
    updated_min_max_age_days: float | None = 28
    # Deleted events on updatedMin / showDeleted lists carry start/end 2000-01-01 placeholders, as recorded Google
    # responses do (UNCONFIRMED in the docs, which promise only the id of a deleted event).
    placeholder_deleted_dates: bool = True
    # dateTime values rendered in the calendar's UTC offset whatever the event's timeZone (recorded Google responses;
    # the events reference only says "the time zone offset is required unless a time zone is specified").
    render_in_calendar_offset: bool = True
    # Also re-spell values already in the calendar's offset (UTC as "Z", as recorded Google responses show), instead
    # of returning them as stored. On: the sync compares date-times as instants (shared/gcal/wire.content_hash).
    rerender_matching_offsets: bool = True
    # Attendees who are stand-in accounts get a copy of the event in their primary calendar (guides/invite-attendees).
    invitation_copies: bool = True
    # Status events (focusTime, outOfOffice, workingLocation) refused with attendees, and focusTime / outOfOffice
    # refused as all-day events (guides/calendar-status describes them as the user's own timed blocks: UNCONFIRMED
    # as refusals, so strict by default).
    strict_status_events: bool = True
    # Extended properties over the 300 properties / 32 kB limit: "reject" (400) or "truncate" (UNCONFIRMED)
    xprops_over_limit: str = "reject"
    # Push
    require_https: bool = False  # Google requires https; loopback http is accepted unless this is set
    max_channel_lifetime: int = 7 * 24 * 3600  # UNCONFIRMED maximum lifetime for events.watch, seconds
    sync_before_response: bool = True  # the first "sync" message arrives before the watch response
    push_retry_base: float = 1.0  # seconds; first retry delay after 5xx, doubling each time (UNCONFIRMED schedule)
    push_max_attempts: int = 5
    push_timeout: float = 5.0
    push_workers: int = 1
    message_number_gap_max: int = 17  # message numbers increase by a random 2..gap_max
    seed: int = 1234
    reject_duplicate_channel_ids: bool = True  # 400 channelIdNotUnique (UNCONFIRMED)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown options: {sorted(unknown)}")
        for key, value in values.items():
            setattr(self, key, value)
        if self.xprops_over_limit not in ("reject", "truncate"):
            raise ValueError("xprops_over_limit must be 'reject' or 'truncate'")
        if self.rate_limit_status not in (403, 429):
            raise ValueError("rate_limit_status must be 403 or 429")
        if self.rate_limit_reason not in ("userRateLimitExceeded", "rateLimitExceeded"):
            raise ValueError("rate_limit_reason must be userRateLimitExceeded or rateLimitExceeded")
        if self.rate_limit_status == 429 and "rate_limit_reason" not in values:
            self.rate_limit_reason = "rateLimitExceeded"
        if self.rate_limit_status == 429 and self.rate_limit_reason != "rateLimitExceeded":
            raise ValueError("429 always carries rateLimitExceeded")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
