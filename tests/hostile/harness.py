"""The hostile-case runner: send one request to a served entry point and prove it was refused cleanly.

Each case: the documented 4xx status and error code, a JSON error body with a message, no Google call (API calls,
token refreshes, revocations, channel stops), no Firestore change (every document of the project, recursively), and no
secret (tokens the stand-in issued, channel tokens, the client secret, encryption keys, the caller's ID token) in the
response or in anything logged while it ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.hostile.probes import LogCapture, World, diff_snapshots, firestore_snapshot, google_state, issued_secrets


@dataclass
class Req:
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes | str | None = None
    params: dict[str, str] | list[tuple[str, str]] | None = None
    path: str = ""


@dataclass
class Case:
    id: str
    function: str
    build: Callable[[World], Req]
    status: int
    code: str | None
    prepare: Callable[[World], None] | None = None
    # Extra strings that must not appear in the answer (e.g. who owns a channel, for unauthenticated callers).
    private: Callable[[World], list[str]] = field(default=lambda w: [])

    def __str__(self) -> str:
        return self.id


def door_url(world: World, function: str, req: Req) -> tuple[str, dict[str, str]]:
    """Where production's caller would send it: the gateway route of a user-facing function, the Cloud Run door of
    renew (with the scheduler's token unless the case brings its own), the public webhook as it is."""
    doors = world.doors
    service = doors.deployment.services[function]
    if service.access == "gateway":
        # A path under the route (settings_ui's files) is its own segment: /settings + / + index.html.
        return doors.route_url(function) + ("/" if req.path else ""), dict(req.headers)
    headers = dict(req.headers)
    if service.access == "private" and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {doors.scheduler_token()()}"
    return doors.function_url(function) + "/", headers


def refused_by_a_door(response: requests.Response) -> bool:
    """The gateway's own answer ({"code", "message"}) or Cloud Run's page: our code never ran."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/html"):
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"code", "message"}


def send(world: World, function: str, req: Req) -> requests.Response:
    if world.doors is not None:
        url, headers = door_url(world, function, req)
        return requests.request(
            req.method,
            url + req.path,
            headers=headers,
            data=req.data,
            params=req.params,
            timeout=60,
            allow_redirects=False,
        )
    return requests.request(
        req.method,
        world.url(function) + req.path,
        headers=req.headers,
        data=req.data,
        params=req.params,
        timeout=60,
        allow_redirects=False,
    )


def settle(world: World) -> None:
    """Let in-flight notifications (e.g. the `sync` message of a fresh channel) land before the baseline."""
    world.google.control.flush(timeout=20)
    time.sleep(0.05)


def run_case(world: World, logs: LogCapture, case: Case) -> requests.Response:
    if case.prepare is not None:
        case.prepare(world)
    settle(world)
    req = case.build(world)
    db = world.ctx.store.db
    before_fs = firestore_snapshot(db)
    before_google = google_state(world.google)
    mark = logs.mark()

    response = send(world, case.function, req)

    settle(world)
    after_google = google_state(world.google)
    after_fs = firestore_snapshot(db)
    logged = logs.since(mark)
    context = f"{case.id}: {response.status_code} {response.text[:500]}"

    if world.doors is not None and refused_by_a_door(response):
        # Refused before our code: the same refusal (an undeclared method is the gateway's 404), nothing changed.
        expected = {case.status, 404} if case.status == 405 else {case.status}
        assert response.status_code in expected, context
    else:
        assert response.status_code == case.status, context
        assert response.headers.get("Content-Type", "").startswith("application/json"), context
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), context
        assert body["error"].get("message"), context
        if case.code is not None:
            assert body["error"].get("code") == case.code, context
    assert before_google == after_google, f"{case.id}: a Google call was made: {before_google} -> {after_google}"
    assert diff_snapshots(before_fs, after_fs) == [], f"{case.id}: Firestore changed"

    answer = response.text + json.dumps(dict(response.headers))
    secrets = issued_secrets(world.google, world.ctx.settings)
    auth = req.headers.get("Authorization", "")
    if auth.lower().startswith("bearer ") and len(auth) > 20:
        secrets[auth[7:]] = "the caller's ID token"
    for secret, what in secrets.items():
        assert secret not in answer, f"{case.id}: the answer contains a {what}"
        assert secret not in logged, f"{case.id}: the logs contain a {what}"
    for text in case.private(world):
        assert text not in answer, f"{case.id}: the answer reveals {text!r}"
    return response
