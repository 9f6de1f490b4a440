"""Google Calendar API v3 stand-in: a real HTTP server for the unmodified google-api-python-client.

Start it
    python -m infra.google_standin --port 8089 [--option push_retry_base=0.01 ...]   (logs its URL as JSON)
    from infra.google_standin.server import start_standin; handle = start_standin("127.0.0.1", 0, **options)
    handle.api_endpoint  -> http://127.0.0.1:PORT/calendar/v3/   (client_options={"api_endpoint": ...};
                            build() replaces rootUrl+servicePath with it)
    handle.token_uri /token, handle.auth_uri /o/oauth2/v2/auth, handle.revoke_uri /revoke,
    handle.certs_url /robot/v1/metadata/x509/securetoken@system.gserviceaccount.com, handle.stop()
Pytest: tests/fixtures/google.py (fixtures `google_standin_server`, `google`).

Modules: server (HTTP routing, Standin state, start_standin), discovery (checks against calendar.v3.json),
store (accounts/calendars/events/change log, sync tokens), api (method handlers, lists, paging, watch),
recurrence (RRULE expander), push (channels, delivery workers), oauth (OAuth + ID tokens), limits (quota, faults,
latency, counters), control_api (/_control HTTP), control (ControlClient), options (StandinOptions), fields.

Control API (JSON in/out; ControlClient method in brackets)
    POST   /_control/reset                                   [reset()] everything, options back to start values
    GET/POST /_control/options                               [options(), set_options(**kw)] StandinOptions fields
    POST   /_control/accounts {email,timeZone?,summary?}     [create_account] primary calendar id = email
    POST   /_control/calendars {email,summary,timeZone?,id?} [create_calendar] secondary calendar
    PATCH  /_control/calendars/{cal} {summary?,description?,timeZone?,accessRole?,defaultReminders?}
           [update_calendar] the calendar's settings, which the events.list envelope and calendarList report;
           defaultReminders may be [] (null: back to Google's default); accessRole reader/freeBusyReader
           makes API writes 403 requiredAccessLevel
    POST   /_control/current_user {email}                    [set_current_user] who consents at /o/oauth2/v2/auth
    POST   /_control/clients {client_id,client_secret,redirect_uris?}          [register_client]
    POST   /_control/refresh_tokens {email,client_id?,scopes?} [issue_refresh_token] no browser flow
    POST   /_control/access_tokens {email,client_id?,scopes?}  [issue_access_token]
    POST   /_control/revoke {token}                          [revoke_token]
    POST   /_control/expire_access_tokens                    [expire_access_tokens]
    POST   /_control/id_tokens {uid,audience,issuer?,expires_in?,email?,issued_at?,wrong_key?,claims?} [mint_id_token]
    POST   /_control/calendars/{cal}/events {event...}       [create_event, create_recurring_event]
           as the user in the UI: any eventType (default, outOfOffice, focusTime, workingLocation, birthday,
           fromGmail) with its *Properties; fromGmail and non-"birthday" birthday types only here, not via the API;
           a series whose end has no timeZone (as Google returns some) only here
    PATCH  /_control/calendars/{cal}/events/{id} {patch}     [edit_event, modify_instance]
    DELETE /_control/calendars/{cal}/events/{id}             [delete_event, cancel_instance]
    POST   /_control/calendars/{cal}/events/{id}/move {destination}             [move_event]
    POST   /_control/calendars/{cal}/events/{id}/reply {email,responseStatus}   [reply]
    POST   /_control/calendars/{cal}/events/{id}/split {instance,patch?}        [split_series]
           "this and following" from `instance`: original gets UNTIL, new series <id>_R<YYYYMMDDTHHMMSS> (UTC;
           _R<YYYYMMDD> all-day) with the patch applied; later exceptions of the original cancelled
    GET    /_control/calendars/{cal}/events                  [raw_events] raw store incl. deleted, with _seq
    POST   /_control/calendars/{cal}/invalidate_sync_tokens  [invalidate_sync_tokens] -> next use 410
    GET    /_control/emails?calendar_id=&event_id=           [emails] invitation mails counted from sendUpdates
    POST   /_control/faults {method,status,reason,message?,domain?,location?,locationType?,body?,
                             count?|rate?,seed?,retry_after?}  [inject_fault]  `body`: answered verbatim
    DELETE /_control/faults                                  [clear_faults]
    POST   /_control/latency {method,seconds}                [set_latency]  (method id or "*")
    GET/DELETE /_control/counters                            [counters(), reset_counters()]
    GET    /_control/channels; POST /_control/channels/{id}/expire   [channels(), expire_channel]
    POST   /_control/channels/{id}/silence (stops delivering, silently)   [silence_channel]
    POST   /_control/push {drop_next,drop_rate,duplicate_next,hold,paused}
           [configure_push, drop_notifications, duplicate_notifications, hold_notifications, pause/resume_delivery]
    POST   /_control/push/release {order: reverse|shuffle|fifo} [release_notifications]
    POST   /_control/push/flush {timeout}                    [flush] waits until the delivery queue is idle
    GET/DELETE /_control/notifications                       [notifications(), clear_notifications()]
    GET    /_control/clock; POST /_control/clock/advance {seconds}   [clock(), advance_clock(seconds)]

Options (StandinOptions; UNCONFIRMED Google behaviour is switchable): see options.py. Notable: page_size_cap
(short pages), quota_per_minute=600, rate_limit_status=403|429, access_token_lifetime=3600, require_https=False,
max_channel_lifetime=7d, sync_before_response=True, push_retry_base=1.0 s (doubling), push_max_attempts=5,
xprops_over_limit=reject|truncate, minimal_cancelled=True, recurrence_horizon_days=366, max_instances_per_series=2500,
sync_token_ttl_seconds=None, reject_duplicate_channel_ids=True, rate_limit_reason=userRateLimitExceeded (or
rateLimitExceeded; 429 always rateLimitExceeded), updated_min_max_age_days=28 (410 updatedMinTooLongAgo),
placeholder_deleted_dates=True, render_in_calendar_offset=True, invitation_copies=True, strict_status_events=True,
revoke_whole_grant=True (revoking one token revokes every token of that user for that client).

Behaviour notes: patch merges nested objects but replaces start/end whole and arrays whole; null deletes; a patch
is validated on what it touches (a series' missing end.timeZone is refused only when the patch touches start, end
or recurrence). Cancelled items in lists carry only id/status/etag/kind (+recurringEventId/originalStartTime)
unless minimal_cancelled=False; a guest's copy cancelled by the organiser keeps its whole body; on showDeleted /
updatedMin lists deleted events (not cancelled exceptions of a live series) carry start/end {"date":
"2000-01-01"}. dateTime values are rendered in the calendar's UTC offset (timeZone kept as stored).
Invitations: an attendee who is a stand-in account gets a copy in their primary calendar (same id and iCalUID,
organizer/creator without self, their own attendee entry self). A guest may change only their own
responseStatus/comment/additionalGuests (which reach the organiser's event and every copy) and the per-copy
reminders, colorId and private extended properties; anything else is 403 forbiddenForNonOrganizer unless
guestsCanModify (then it reaches the organiser). A guest deleting their copy declines; a removed guest, or every
guest when the organiser deletes, gets a cancelled copy. Event types: type immutable; birthday (API: one all-day
day, yearly, private, transparent, type "birthday"; updates: colorId, summary, reminders only), fromGmail (not
creatable via API; updates: colorId, reminders, visibility, transparency, status, private extendedProperties),
focusTime/outOfOffice/workingLocation (primary calendar only; with strict_status_events no attendees and
focusTime/outOfOffice not all-day); only default events move or import.
Sync and page tokens are opaque base64 JSON (calendar, generation, change number); paging is
keyset-based so writes during paging lose nothing. Instance ids: <seriesId>_<YYYYMMDDTHHMMSSZ> or _<YYYYMMDD>.
ID tokens are minted on the stand-in clock: after advance_clock() they look issued in the future to real verifiers.
google.oauth2.id_token.verify_firebase_token has Google's cert URL built in: use verify_token(certs_url=...).

Not implemented (501 notImplemented): batch, quickAdd, acl.*, settings.*, colors, freebusy, calendars
insert/patch/update/delete/clear, calendarList insert/patch/update/delete. Recurrence: no BYSETPOS/BYWEEKNO/
BYYEARDAY/BYHOUR (400); guest copies live in the guest's primary calendar only; guestsCanInviteOthers and
guestsCanSeeOtherGuests are stored but not enforced.
"""
