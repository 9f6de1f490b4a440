"""Fixtures for the hostile-input suite: every HTTP entry point served over real HTTP, two connected users with live
channels, and the probes every case uses (Firestore snapshot, Google call counters, captured logs, known secrets)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shared.config import Settings
from shared.context import AppContext
from shared.logs import configure_logging
from tests.fixtures.functions import ServedFunction, serve_function
from tests.fixtures.sync import make_settings
from tests.hostile.probes import USERS, LogCapture, SkewClock, World, live_channel

HTTP_FUNCTIONS = (
    "webhook",
    "oauth_start",
    "oauth_callback",
    "oauth_disconnect",
    "sync_enable",
    "sync_disable",
    "sync_status",
    "sync_conflicts",
    "sync_resolve",
    "settings_ui",
    "renew",
)


@pytest.fixture(scope="session")
def served() -> Iterator[dict[str, ServedFunction]]:
    """Every main.py entry point, built by functions-framework and served over loopback HTTP (once per session)."""
    configure_logging()  # before any capture handler is attached: it replaces the root handlers once
    functions = {name: serve_function(name) for name in HTTP_FUNCTIONS}
    functions["push_event"] = serve_function("push_event", "cloudevent")
    try:
        yield functions
    finally:
        for function in functions.values():
            function.stop()


# The project Terraform is evaluated for: its Firebase issuer / audience are what the gateway accepts.
DOORS_PROJECT = "crm-hostile"
DOOR_SETTINGS = {
    "id_token_issuer": f"https://securetoken.google.com/{DOORS_PROJECT}",
    "id_token_audience": DOORS_PROJECT,
}


@pytest.fixture(scope="session")
def front_doors(google_standin_server: Any) -> Iterator[Any]:
    """Every function again, behind production's front doors built from terraform/ (Cloud Run IAM per function, the
    API Gateway on its own port): the harness sends each case the way production's caller would."""
    from werkzeug.serving import make_server

    from infra.access_log import AccessLogRequestHandler
    from infra.deployment import read_deployment
    from infra.devstack import PathDispatcher, build_function_apps
    from infra.front_doors import FrontDoors
    from infra.google_standin.control import ControlClient
    from tests.fixtures.google import GoogleStandin

    google = GoogleStandin(google_standin_server, ControlClient(google_standin_server.base_url))
    doors = FrontDoors(read_deployment(project_id=DOORS_PROJECT), google.control, google.certs_url)
    server = make_server(
        "127.0.0.1",
        0,
        PathDispatcher(doors.guard(build_function_apps())),
        threaded=True,
        request_handler=AccessLogRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="hostile-doors", daemon=True)
    thread.start()
    doors.functions_url = f"http://127.0.0.1:{server.server_port}"
    doors.serve_gateway()
    try:
        yield doors
    finally:
        doors.stop()
        server.shutdown()
        server.server_close()


@pytest.fixture
def sync_settings(firestore_project: str, google: Any, served: dict[str, ServedFunction]) -> Settings:
    return make_settings(firestore_project, google, webhook_url=served["webhook"].url + "/", **DOOR_SETTINGS)


@pytest.fixture
def clock(app_context: AppContext) -> SkewClock:
    skew = SkewClock()
    app_context.clock = skew
    return skew


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    configure_logging()
    handler = LogCapture()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def build_world(
    ctx: AppContext, google: Any, served: dict[str, ServedFunction], clock: SkewClock, doors: Any = None
) -> World:
    """Two users connected (refresh tokens really issued), sync enabled through the lifecycle code (real channels
    whose address is the served webhook), one Google-made and one CRM-made event each, all synced."""
    from shared.account import enablement
    from shared.sync.crm_to_google_run import push_event
    from tests.fixtures.sync import connect_user
    from tests.push.helpers import crm_event

    w = World(ctx, google, served, clock, doors=doors)
    for uid, email in USERS.items():
        connect_user(ctx, google, uid, email)
        enablement.enable(ctx, uid, enablement.EnableRequest())
        google.control.create_event(
            email,
            {
                "summary": f"Google meeting of {uid}",
                "start": {"dateTime": "2027-02-01T10:00:00Z"},
                "end": {"dateTime": "2027-02-01T11:00:00Z"},
            },
        )
        event = crm_event(f"crm-{uid}", owner_id=uid, title=f"CRM meeting of {uid}")
        ctx.store.save_event(event)
        push_event(ctx, event.id)
        channel = live_channel(google, email)
        w.users[uid] = {
            "email": email,
            "channel_id": channel.id,
            "resource_id": channel.resource_id,
            "resource_uri": channel.resource_uri,
            "channel_token": channel.token,
        }
    google.control.flush(timeout=20)
    return w


@pytest.fixture
def world(
    app_context: AppContext, google: Any, served: dict[str, ServedFunction], clock: SkewClock, front_doors: Any
) -> World:
    """A fresh world for cases that change it first (disable, renew, clock moves)."""
    return build_world(app_context, google, served, clock, front_doors)


@pytest.fixture(scope="module")
def shared_world(
    firestore_emulator: Any, google_standin_server: Any, served: dict[str, ServedFunction], front_doors: Any
) -> Iterator[World]:
    """One world for every case of a module that does not prepare anything: each case proves it changed nothing, so
    the world stays valid for the next one (and setup is paid once)."""
    import uuid

    from google.cloud import firestore

    from infra.google_standin.control import ControlClient
    from shared.context import set_default_context
    from tests.fixtures.google import GoogleStandin

    google = GoogleStandin(google_standin_server, ControlClient(google_standin_server.base_url))
    google.control.reset()
    project = f"test-hostile-{uuid.uuid4().hex[:10]}"
    db = firestore.Client(project=project)
    clock = SkewClock()
    ctx = AppContext.create(
        make_settings(project, google, webhook_url=served["webhook"].url + "/", **DOOR_SETTINGS), db, clock=clock
    )
    set_default_context(ctx)
    try:
        yield build_world(ctx, google, served, clock, front_doors)
    finally:
        set_default_context(None)
        db.close()


@pytest.fixture
def any_world(request: pytest.FixtureRequest) -> Any:
    """`world` (fresh) for a case with a prepare step, else the module's shared world (re-installed as default)."""
    from shared.context import set_default_context

    def pick(case: Any) -> World:
        if case.prepare is not None:
            return request.getfixturevalue("world")
        shared = request.getfixturevalue("shared_world")
        set_default_context(shared.ctx)
        return shared

    return pick
