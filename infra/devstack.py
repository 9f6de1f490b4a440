"""`make run`: the whole system on one machine — Firestore emulator, Google stand-in, every function, the Firestore
trigger and the scheduler — with a short walkthrough printed at start. Ctrl-C stops all of it.

Data survive restarts (infra/stack_state.py): Firestore is exported and the stand-in snapshotted under `.run/state/`
every few seconds and on stop, and both are loaded at the next start; `--fresh` (`make run FRESH=1`) starts empty.

Every function is served from one process, each under its own path (`/<entry_point>`), by the real
functions-framework apps built from main.py; the Firestore trigger and Cloud Scheduler are played with the same
payloads production sends (CloudEvents over HTTP, an authenticated POST to the renew function).

Production's front doors stand in front of them (infra/front_doors.py), configured from terraform/: each function
behind its Cloud Run IAM check, the user-facing ones reached through the local API Gateway (its own port), the
scheduler and the trigger holding the Google-signed tokens of the accounts Terraform grants. The webhook is public.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.logs import configure_logging, log_event

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
SETTINGS_PAGE = "/settings/index.html"
LOCAL_SIGN_IN = "/_local/id-token"
logger = logging.getLogger("infra.devstack")
DEMO_EMAIL = "demo@example.com"
DEMO_USER = "demo-user"


def entry_points() -> dict[str, str]:
    """{entry point: 'http' | 'cloudevent'} read from main.py's decorators."""
    found: dict[str, str] = {}
    for node in ast.parse(MAIN.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                name = ast.unparse(decorator)
                if name.endswith(".http"):
                    found[node.name] = "http"
                elif name.endswith(".cloud_event"):
                    found[node.name] = "cloudevent"
    return found


class PathDispatcher:
    """WSGI app routing `/<entry_point>[/...]` to that function's own functions-framework app (each one a Cloud Run
    service of its own in production; user-facing paths like `/sync/status` exist only on the API Gateway)."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "/")
        name, _, rest = path.lstrip("/").partition("/")
        app = self.apps.get(name)
        if app is None:
            body = json.dumps({"error": {"code": "not_found", "functions": sorted(self.apps)}}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        environ = dict(environ, SCRIPT_NAME=environ.get("SCRIPT_NAME", "") + "/" + name, PATH_INFO="/" + rest)
        return app(environ, start_response)


def demo_sign_in(standin: Any, project: str, user_id: str = DEMO_USER, email: str = DEMO_EMAIL) -> Callable[..., Any]:
    """Local only: POST answers a fresh 1-hour ID token for the demo user, signed by the stand-in as Firebase would
    sign it, so the standalone settings page can sign in. Served by the local gateway as an explicit local-only route
    (FrontDoors.local_routes) on the page's own origin; production has no such route: the CRM signs its users in."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            body = json.dumps({"error": {"code": "method_not_allowed", "message": "use POST"}}).encode()
            start_response("405 Method Not Allowed", [("Content-Type", "application/json"), ("Allow", "POST")])
            return [body]
        token = standin.control.mint_id_token(
            user_id, project, issuer=f"https://securetoken.google.com/{project}", email=email, issued_at=time.time()
        )
        body = json.dumps({"id_token": token, "expires_in": 3600, "user_id": user_id, "email": email}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [body]

    return app


def build_function_apps() -> dict[str, Any]:
    import functions_framework

    return {
        name: functions_framework.create_app(target=name, source=str(MAIN), signature_type=kind)
        for name, kind in entry_points().items()
    }


def configure_environment(*, project: str, standin: Any, functions_url: str, doors: Any = None) -> None:
    """The env vars production sets through Terraform, pointed at the local stand-ins; with `doors`, the audiences,
    invoker accounts and OAuth redirect come from Terraform's own values, and OAuth returns to the settings page on
    the local gateway."""
    from shared.crypto import generate_key

    run_dir = ROOT / ".run"
    run_dir.mkdir(exist_ok=True)
    key_file = run_dir / "token-keys.json"
    if not key_file.exists():
        key_file.write_text(json.dumps({"local1": generate_key()}))
        key_file.chmod(0o600)
    os.environ.update(
        {
            "GOOGLE_CLOUD_PROJECT": project,
            "GOOGLE_API_ENDPOINT": standin.api_endpoint,
            "GOOGLE_OAUTH_AUTH_URI": standin.auth_uri,
            "GOOGLE_OAUTH_TOKEN_URI": standin.token_uri,
            "GOOGLE_OAUTH_REVOKE_URI": standin.revoke_uri,
            "OAUTH_CLIENT_ID": standin.client_id,
            "OAUTH_CLIENT_SECRET": standin.client_secret,
            "OAUTH_REDIRECT_URI": f"{functions_url}/oauth_callback",
            "TOKEN_ENCRYPTION_KEYS": key_file.read_text(),
            "TOKEN_ENCRYPTION_ACTIVE_KEY_ID": "local1",
            "WEBHOOK_URL": f"{functions_url}/webhook",
            "ID_TOKEN_ISSUER": f"https://securetoken.google.com/{project}",
            "ID_TOKEN_AUDIENCE": project,
            "ID_TOKEN_CERTS_URL": standin.certs_url,
            # Without the doors there is no gateway to serve the page from: the settings_ui function's own path.
            "OAUTH_RETURN_URL": f"{functions_url}/settings_ui/index.html",
            "SCHEDULER_OIDC_AUDIENCE": f"{functions_url}/renew",
            "SCHEDULER_INVOKER_EMAIL": f"local-scheduler@{project}.iam.gserviceaccount.com",
        }
    )
    if doors is not None:
        os.environ.update(doors.environment())
    from shared.config import reset_settings

    reset_settings()


def walkthrough(project: str, functions_url: str, standin: Any, token_file: Path, doors: Any, state: str = "") -> str:
    control = standin.base_url + "/_control"
    auth = '-H "Authorization: Bearer $DEMO_ID_TOKEN"'
    return f"""
Local stack is up (Ctrl-C stops everything).
  Firestore emulator   FIRESTORE_EMULATOR_HOST={os.environ.get("FIRESTORE_EMULATOR_HOST")}  project={project}
  Google stand-in      {standin.base_url}   (control API under {control})
  Functions            {functions_url}/<entry point>: {", ".join(sorted(entry_points()))}
                       each behind its Cloud Run IAM stand-in (only the webhook is public)
  API Gateway          {doors.gateway_url}  routes: {", ".join(doors.deployment.openapi["paths"])}

Settings page (signs in '{DEMO_USER}' by itself): {doors.settings_page_url()}
  served through the gateway; Connect Google goes through the stand-in's consent and returns there to finish.
  State                {state}

Walkthrough, as the CRM user '{DEMO_USER}' whose Google account is {DEMO_EMAIL}:
  export DEMO_ID_TOKEN=$(cat {token_file.relative_to(ROOT)})      # a 1-hour ID token the stand-in signed
  1. Connect Google:  curl -s {auth} -H 'Accept: application/json' {doors.route_url("oauth_start")}
     then open the returned authorization_url in a browser: the stand-in consents as {DEMO_EMAIL}, the callback
     returns you to the settings page, which finishes with the demo user's ID token (or use the page's button).
  2. Enable sync:     curl -s {auth} -H 'Content-Type: application/json' -d '{{}}' {doors.route_url("sync_enable")}
  3. Edit in Google:  curl -s -H 'Content-Type: application/json' {control}/calendars/{DEMO_EMAIL}/events \\
        -d '{{"summary":"Call with ACME","start":{{"dateTime":"2027-01-05T10:00:00Z"}},'\\
'"end":{{"dateTime":"2027-01-05T11:00:00Z"}}}}'
     -> the stand-in POSTs a notification to the webhook; the event appears in Firestore `events`.
  4. Status:          curl -s {auth} {doors.route_url("sync_status")}
  5. Edit in the CRM: write a document to Firestore `events` (owner_id '{DEMO_USER}', title, start, end);
     the local trigger delivers a CloudEvent to push_event and the meeting appears in the stand-in's calendar.
  Operators: python -m infra.ops status {DEMO_USER}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="functions port")
    parser.add_argument("--standin-port", type=int, default=8089)
    parser.add_argument("--gateway-port", type=int, default=8081, help="the local API Gateway's port")
    parser.add_argument("--project", default="crm-gcal-sync-local")
    parser.add_argument(
        "--fresh",
        action="store_true",
        default=os.environ.get("FRESH", "") not in ("", "0"),
        help="forget the saved state and start empty (also FRESH=1)",
    )
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".run" / "state", help="where the state is kept")
    parser.add_argument("--checkpoint-seconds", type=float, default=5.0, help="how often Firestore is exported")
    args = parser.parse_args(argv)
    configure_logging()

    from werkzeug.serving import make_server

    from infra.access_log import AccessLogRequestHandler
    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.server import start_standin
    from infra.stack_state import StackState, make_pulls_due

    stopping = threading.Event()
    cleanups: list[Any] = []
    try:
        (ROOT / ".run").mkdir(exist_ok=True)
        state = StackState(args.state_dir, fresh=args.fresh, checkpoint_s=args.checkpoint_seconds)
        emulator = existing_or_new(
            log_path=str(ROOT / ".run" / "firestore-emulator.log"), import_data=state.firestore_import()
        )
        cleanups.append(emulator.stop)
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        # Which process groups make up the stack, for whoever has to kill it without a polite stop.
        groups = {"devstack": os.getpgid(0), "firestore_emulator": emulator.process.pid if emulator.process else None}
        (state.directory / "processes.json").write_text(json.dumps(groups))
        standin = start_standin("127.0.0.1", args.standin_port, push_retry_base=0.5)
        cleanups.append(standin.stop)
        state.restore_standin(standin.standin)
        cleanups.append(state.stop)  # runs after the functions, trigger and scheduler have stopped
        functions_url = f"http://127.0.0.1:{args.port}"
        from infra.deployment import read_deployment
        from infra.front_doors import FrontDoors

        doors = FrontDoors(
            read_deployment(project_id=args.project),
            standin.control,
            standin.certs_url,
            functions_url=functions_url,
            local_routes={LOCAL_SIGN_IN: demo_sign_in(standin, args.project)},
        )
        doors.serve_gateway(args.gateway_port)
        cleanups.append(doors.stop)
        configure_environment(project=args.project, standin=standin, functions_url=functions_url, doors=doors)
        standin.control.create_account(DEMO_EMAIL)
        standin.control.set_current_user(DEMO_EMAIL)
        standin.control.register_client(standin.client_id, standin.client_secret, [os.environ["OAUTH_REDIRECT_URI"]])

        if state.restored:
            from shared.context import default_context

            marked = make_pulls_due(default_context())
            log_event(logger, "local stack state restored", directory=str(args.state_dir), pulls_due=marked)

        dispatcher = PathDispatcher(doors.guard(build_function_apps()))
        server = make_server(
            "127.0.0.1",
            args.port,
            dispatcher,
            threaded=True,
            request_handler=AccessLogRequestHandler,
        )
        threading.Thread(target=server.serve_forever, name="functions", daemon=True).start()
        cleanups.append(server.shutdown)

        from infra.local_trigger import start_local_trigger

        trigger = start_local_trigger(args.project, f"{functions_url}/push_event", token_provider=doors.trigger_token())
        cleanups.append(trigger.stop)

        from infra.local_scheduler import start_local_scheduler

        scheduler = start_local_scheduler(f"{functions_url}/renew", token_provider=doors.scheduler_token())
        cleanups.append(scheduler.stop)

        state.start(emulator=emulator, standin=standin.standin, project=args.project)
        id_token = standin.control.mint_id_token(
            DEMO_USER, args.project, issuer=f"https://securetoken.google.com/{args.project}", email=DEMO_EMAIL
        )
        log_event(logger, "local stack started", functions_url=functions_url, standin_url=standin.base_url)
        token_file = ROOT / ".run" / "demo-id-token"
        token_file.write_text(id_token)
        token_file.chmod(0o600)
        kept = f"kept in {args.state_dir} across restarts"
        state_line = f"restored, {kept}" if state.restored else f"empty start, {kept} (`make run FRESH=1`: empty again)"
        sys.stdout.write(walkthrough(args.project, functions_url, standin, token_file, doors, state_line))
        sys.stdout.flush()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        stopping.wait()
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception:  # keep stopping the rest
                logger.exception("cleanup failed")
        log_event(logger, "local stack stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
