"""Cloud Functions entry points. Thin on purpose: each one imports only its own adapter, on first call.

Entry point -> adapter:
- webhook          (HTTP, public)     Google's change notifications         functions/webhook.py
- oauth_start      (HTTP)             begin connecting a Google account      functions/oauth.py
- oauth_callback   (HTTP)             finish connecting                      functions/oauth.py
- oauth_disconnect (HTTP)             revoke and disconnect                  functions/oauth.py
- sync_enable      (HTTP)             enable sync for calendars              functions/settings.py
- sync_disable     (HTTP)             disable sync                           functions/settings.py
- sync_status      (HTTP)             status for a settings page             functions/settings.py
- sync_conflicts   (HTTP)             the conflict center's list (paged)     functions/conflicts.py
- sync_resolve     (HTTP)             keep one version of a conflict         functions/conflicts.py
- settings_ui      (HTTP, static)     the settings component's files         functions/settings_ui.py
- renew            (HTTP, private)    Cloud Scheduler cron                   functions/renew.py
- push_event       (CloudEvent)       Firestore events/{eventId} written     functions/crm_trigger.py
"""

from __future__ import annotations

import json
import logging
from typing import Any

import functions_framework
from cloudevents.exceptions import DataUnmarshallerError  # already loaded by functions_framework


@functions_framework.http
def webhook(request: Any) -> Any:
    from functions.webhook import handle_notification

    return handle_notification(request)


@functions_framework.http
def oauth_start(request: Any) -> Any:
    from functions.oauth import handle_start

    return handle_start(request)


@functions_framework.http
def oauth_callback(request: Any) -> Any:
    from functions.oauth import handle_callback

    return handle_callback(request)


@functions_framework.http
def oauth_disconnect(request: Any) -> Any:
    from functions.oauth import handle_disconnect

    return handle_disconnect(request)


@functions_framework.http
def sync_enable(request: Any) -> Any:
    from functions.settings import handle_enable

    return handle_enable(request)


@functions_framework.http
def sync_disable(request: Any) -> Any:
    from functions.settings import handle_disable

    return handle_disable(request)


@functions_framework.http
def sync_status(request: Any) -> Any:
    from functions.settings import handle_status

    return handle_status(request)


@functions_framework.http
def sync_conflicts(request: Any) -> Any:
    from functions.conflicts import handle_list

    return handle_list(request)


@functions_framework.http
def sync_resolve(request: Any) -> Any:
    from functions.conflicts import handle_resolve

    return handle_resolve(request)


@functions_framework.http
def settings_ui(request: Any) -> Any:
    from functions.settings_ui import handle_request

    return handle_request(request)


@functions_framework.http
def renew(request: Any) -> Any:
    from functions.renew import handle_renew

    return handle_renew(request)


@functions_framework.errorhandler(DataUnmarshallerError)
def unreadable_cloud_event(error: Exception) -> Any:
    """A CloudEvent whose data functions-framework cannot parse (JSON nested thousands deep fits the size limit and
    exhausts the parser's stack) is the sender's error: a 400 that changes nothing, not a crash with a traceback."""
    from shared.logs import configure_logging, log_event

    configure_logging()
    log_event(
        logging.getLogger("functions.crm_trigger"),
        "push trigger rejected: unreadable CloudEvent data",
        level=logging.WARNING,
        error=type(error.__cause__ or error).__name__,
    )
    body = {"error": {"code": "bad_request", "message": "the CloudEvent's data could not be parsed"}}
    return json.dumps(body), 400, {"Content-Type": "application/json"}


@functions_framework.cloud_event
def push_event(cloud_event: Any) -> None:
    from functions.crm_trigger import handle_event_written

    handle_event_written(cloud_event)
