"""Operator commands: `python -m infra.ops <command> ...`. Every command prints JSON; every decision is logged.

    status        --user UID                          what the user's settings page shows
    resync        --user UID [--calendar ID] [--full] pull now (incremental, or a reconciling full sync)
    renew         --user UID [--calendar ID]          open a new channel now (overlap, then stop the old one)
    renew-run     [--deadline SECONDS]                one whole cron run, as Cloud Scheduler would trigger it
    stop-channel  --channel ID                        stop one channel at Google and in routing
    errors        [--limit N] [--since-hours H]       needs_reauth users, calendars and events in error
    scheduler-sync --project P --location L --url URL --service-account SA [--audience A] [--dry-run]
                  create or update the Cloud Scheduler job from shared/scheduler_job.json (CloudSchedulerClient)

The commands use the same settings (env vars) and library as the functions; they never print secrets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from typing import Any

from shared.logs import configure_logging, log_event

logger = logging.getLogger("infra.ops")


def _ctx() -> Any:
    from shared.context import default_context

    return default_context()


def _calendars(ctx: Any, user_id: str, calendar_id: str | None) -> list[Any]:
    from shared.errors import NotFound

    calendars = [c for c in ctx.store.list_calendars(user_id) if c.enabled]
    if calendar_id:
        calendars = [c for c in calendars if c.calendar_id == calendar_id]
    if not calendars:
        raise NotFound("no enabled calendar matches", user_id=user_id, calendar_id=calendar_id)
    return calendars


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    from shared.account.enablement import status

    return status(_ctx(), args.user).model_dump(mode="json")


def cmd_resync(args: argparse.Namespace) -> dict[str, Any]:
    from shared.account import enablement
    from shared.sync import coalesce

    ctx = _ctx()
    results: dict[str, Any] = {}
    for cal in _calendars(ctx, args.user, args.calendar):
        log_event(logger, "operator resync", user_id=args.user, calendar_id=cal.calendar_id, full=args.full)
        outcome = coalesce.request_pull(ctx, args.user, cal.calendar_id, reason="operator", full=args.full)
        enablement.after_pull(ctx, cal, outcome)
        results[cal.calendar_id] = outcome.outcome
    return {"resynced": results}


def cmd_renew(args: argparse.Namespace) -> dict[str, Any]:
    from shared.account import channels, enablement

    ctx = _ctx()
    integration = enablement.connected_integration(ctx, args.user)
    outcomes: dict[str, str] = {}
    for cal in _calendars(ctx, args.user, args.calendar):
        lease = channels.calendar_lease(ctx, args.user, cal.key, purpose="operator_renew")
        if lease is None:
            outcomes[cal.calendar_id] = "busy"
            continue
        try:
            outcome = enablement.ensure_channel(ctx, integration, cal.key, reason="operator", force=True)
            outcomes[cal.calendar_id] = outcome
        finally:
            ctx.store.release_lease(lease)
        log_event(logger, "operator renew", user_id=args.user, calendar_id=cal.calendar_id,
                  outcome=outcomes[cal.calendar_id])
    return {"renewed": outcomes}


def cmd_renew_run(args: argparse.Namespace) -> dict[str, Any]:
    from shared.account.renewal import run_renewal

    return run_renewal(_ctx(), deadline_seconds=args.deadline)


def cmd_stop_channel(args: argparse.Namespace) -> dict[str, Any]:
    from shared.account import channels, enablement
    from shared.errors import NotFound

    ctx = _ctx()
    route = ctx.store.get_channel_route(args.channel)
    if route is None:
        raise NotFound("no route for this channel id", channel_id=args.channel)
    client = enablement.client_if_possible(ctx, route.user_id)
    cal = ctx.store.get_calendar(route.user_id, route.calendar_key)
    was_current = cal is not None and cal.channel is not None and cal.channel.id == route.channel_id
    stopped = channels.retire_channel(
        ctx, client, route.channel_id, route.resource_id, reason="operator",
        user_id=route.user_id, calendar_id=route.calendar_id,
    )
    if was_current and cal is not None:
        # The calendar lost its channel: the next cron run re-watches it and catches up from the sync token.
        ctx.store.update_calendar(route.user_id, route.calendar_key, {"channel": None, "renew_due_at": ctx.clock()})
    return {"channel_id": route.channel_id, "stopped_at_google": stopped, "was_current": was_current}


def cmd_errors(args: argparse.Namespace) -> dict[str, Any]:
    ctx = _ctx()
    since = ctx.clock() - dt.timedelta(hours=args.since_hours)
    found = ctx.store.operator_error_report(since, args.limit)
    return {
        "needs_reauth": [{"user_id": d["id"], "reason": d.get("reauth_reason")} for d in found["needs_reauth"]],
        "calendars": [
            {k: d.get(k) for k in ("user_id", "calendar_id", "last_error", "last_error_at")} for d in found["calendars"]
        ],
        "events": [
            {"event_id": d["id"], "owner_id": d.get("owner_id"), "last_error": (d.get("sync") or {}).get("last_error")}
            for d in found["events"]
        ],
    }


def cmd_scheduler_sync(args: argparse.Namespace) -> dict[str, Any] | None:
    """Create or update the Cloud Scheduler job from the one definition (shared/scheduler_job.json)."""
    from shared.schedule import job_proto

    job = job_proto(
        project=args.project, location=args.location, target_url=args.url,
        service_account=args.service_account, audience=args.audience,
    )
    if args.dry_run:
        sys.stdout.write(str(type(job).pb(job)))
        return None
    from google.api_core import exceptions as gexc
    from google.cloud import scheduler_v1

    client = scheduler_v1.CloudSchedulerClient()
    try:
        client.get_job(name=job.name)
    except gexc.NotFound:
        created = client.create_job(parent=f"projects/{args.project}/locations/{args.location}", job=job)
        log_event(logger, "scheduler job created", job=created.name, schedule=created.schedule)
        return {"created": created.name, "schedule": created.schedule}
    updated = client.update_job(job=job)
    log_event(logger, "scheduler job updated", job=updated.name, schedule=updated.schedule)
    return {"updated": updated.name, "schedule": updated.schedule}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.ops", description="Operator commands for calendar sync")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="status of one user")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("resync", help="force a pull now")
    p.add_argument("--user", required=True)
    p.add_argument("--calendar")
    p.add_argument("--full", action="store_true", help="reconciling full sync instead of incremental")
    p.set_defaults(func=cmd_resync)

    p = sub.add_parser("renew", help="renew a user's channels now")
    p.add_argument("--user", required=True)
    p.add_argument("--calendar")
    p.set_defaults(func=cmd_renew)

    p = sub.add_parser("renew-run", help="one whole renewal + reconcile run")
    p.add_argument("--deadline", type=float, default=None)
    p.set_defaults(func=cmd_renew_run)

    p = sub.add_parser("stop-channel", help="stop one channel")
    p.add_argument("--channel", required=True)
    p.set_defaults(func=cmd_stop_channel)

    p = sub.add_parser("errors", help="list errors")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--since-hours", type=float, default=72.0)
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("scheduler-sync", help="create or update the Cloud Scheduler job")
    p.add_argument("--project", required=True)
    p.add_argument("--location", required=True)
    p.add_argument("--url", required=True, help="the renew function's HTTPS URL")
    p.add_argument("--service-account", required=True, help="the invoker service account's email")
    p.add_argument("--audience", default=None, help="OIDC audience (default: the URL)")
    p.add_argument("--dry-run", action="store_true", help="print the Job proto, call nothing")
    p.set_defaults(func=cmd_scheduler_sync)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.errors import SyncError

    args = build_parser().parse_args(argv)
    configure_logging()
    # Logs go to stderr while the command runs; its JSON answer alone goes to stdout.
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = sys.stderr  # plain assignment: setStream would flush a stream that may be closed
    try:
        result = args.func(args)
    except SyncError as exc:
        sys.stdout.write(json.dumps(exc.public_body(), default=str) + "\n")
        return 1
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.stream = stream
    if result is not None:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
