"""HTTP adapter for the renewal cron (Cloud Scheduler -> private HTTP function).

Cloud Run IAM admits only the scheduler's service account; when SCHEDULER_OIDC_AUDIENCE is set the function also
verifies the scheduler's OIDC token itself. The answer is the run's JSON report of counts.
"""

from __future__ import annotations

from typing import Any

from functions.http import handle, json_response, parse_json_body, require_method
from shared.account.identity import authenticate_scheduler
from shared.context import default_context
from shared.models import Strict


class RenewRequest(Strict):
    """Cloud Scheduler posts `{}`; operators may pass a shorter deadline."""

    deadline_seconds: float | None = None


def _renew(request: Any) -> Any:
    from shared.account.renewal import run_renewal

    require_method(request, "POST")
    ctx = default_context()
    authenticate_scheduler(request, ctx.settings)
    body = parse_json_body(request, RenewRequest, allow_empty=True)
    deadline = ctx.settings.renewal_deadline_seconds
    if body.deadline_seconds is not None:
        deadline = max(1.0, min(deadline, body.deadline_seconds))
    return json_response(run_renewal(ctx, deadline_seconds=deadline))


def handle_renew(request: Any) -> Any:
    return handle(request, _renew, name="renew")
