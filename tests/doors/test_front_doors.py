"""Production's front doors, played locally from terraform/ (infra/front_doors.py): Cloud Run IAM in front of every
function, API Gateway in front of the user-facing ones. Every refusal happens at the door, before our code runs, and a
change on the Terraform side (audience, invoker, route) in a copy of terraform/ changes what is admitted.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.access_log import AccessLogRequestHandler
from infra.api_gateway import NOT_DEFINED
from infra.cloud_run_iam import SIGNATURE_REMOVED, CloudRunIam
from infra.deployment import read_deployment
from infra.front_doors import FrontDoors
from infra.terraform_eval import TERRAFORM_DIR
from shared.context import AppContext

ROOT = Path(__file__).resolve().parents[2]
AUTH_PROJECT = "crm-doors"  # the project Terraform is evaluated for (SA emails, Firebase issuer / audience)
GOOGLE = "https://accounts.google.com"


@pytest.fixture(scope="module")
def function_apps() -> dict[str, Any]:
    from infra.devstack import build_function_apps

    return build_function_apps()


class OpenDoors:
    """A served stack: functions behind their IAM doors on one port, the gateway on another."""

    def __init__(self, doors: FrontDoors, server: Any) -> None:
        self.doors, self.server = doors, server

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.doors.stop()


def open_doors(google: Any, apps: dict[str, Any], terraform_dir: Path = TERRAFORM_DIR) -> OpenDoors:
    from werkzeug.serving import make_server

    from infra.devstack import PathDispatcher

    deployment = read_deployment(project_id=AUTH_PROJECT, terraform_dir=terraform_dir)
    doors = FrontDoors(deployment, google.control, google.certs_url)
    server = make_server(
        "127.0.0.1", 0, PathDispatcher(doors.guard(apps)), threaded=True, request_handler=AccessLogRequestHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    doors.functions_url = f"http://127.0.0.1:{server.server_port}"
    doors.serve_gateway()
    return OpenDoors(doors, server)


def configure(ctx: AppContext, doors: FrontDoors) -> None:
    """The functions' settings as Terraform sets them (audiences, invokers, Firebase issuer and audience)."""
    env = doors.environment()
    ctx.settings = ctx.settings.model_copy(
        update={
            "scheduler_oidc_audience": env["SCHEDULER_OIDC_AUDIENCE"],
            "scheduler_invoker_email": env["SCHEDULER_INVOKER_EMAIL"],
            "gateway_jwt_audiences": env["GATEWAY_JWT_AUDIENCES"],
            "gateway_invoker_email": env["GATEWAY_INVOKER_EMAIL"],
            "id_token_issuer": env["ID_TOKEN_ISSUER"],
            "id_token_audience": env["ID_TOKEN_AUDIENCE"],
        }
    )


@pytest.fixture
def stack(app_context: AppContext, google: Any, function_apps: dict[str, Any]) -> Iterator[FrontDoors]:
    opened = open_doors(google, function_apps)
    configure(app_context, opened.doors)
    try:
        yield opened.doors
    finally:
        opened.stop()


@pytest.fixture
def terraform_copy(tmp_path: Path) -> Callable[[str, str, str], Path]:
    """A copy of terraform/ (and the file it reads from shared/) with one text replaced in one file."""
    shutil.copytree(TERRAFORM_DIR, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform*", "*.zip"))
    (tmp_path / "shared").mkdir()
    shutil.copy(ROOT / "shared" / "scheduler_job.json", tmp_path / "shared" / "scheduler_job.json")

    def change(filename: str, old: str, new: str) -> Path:
        path = tmp_path / "terraform" / filename
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} is not in {filename} exactly once"
        path.write_text(text.replace(old, new), encoding="utf-8")
        return tmp_path / "terraform"

    return change


def google_token(google: Any, email: str, audience: str, **kwargs: Any) -> str:
    kwargs.setdefault("issued_at", time.time())
    kwargs.setdefault("claims", {"email_verified": True})
    return google.control.mint_id_token(
        email.split("@")[0], audience, issuer=kwargs.pop("issuer", GOOGLE), email=email, **kwargs
    )


def user_token(google: Any, uid: str = "user-a", audience: str = AUTH_PROJECT, **kwargs: Any) -> str:
    kwargs.setdefault("issuer", f"https://securetoken.google.com/{AUTH_PROJECT}")
    return google.control.mint_id_token(uid, audience, issued_at=time.time(), email=f"{uid}@example.com", **kwargs)


def post_renew(doors: FrontDoors, token: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(doors.function_url("renew"), data="{}", headers=headers, timeout=60)


def refused_at_the_door(response: requests.Response, status: int) -> None:
    """Cloud Run's own page, not our JSON: the function never ran."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("text/html"), response.text


# --- Cloud Run IAM --------------------------------------------------------------------------------------------------
def test_the_scheduler_passes_cloud_run_iam_and_the_functions_own_check(stack: FrontDoors) -> None:
    answer = post_renew(stack, stack.scheduler_token()())
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True


REFUSED = {
    "no-token": (lambda g, d: None, 401),
    "firebase-user-token": (lambda g, d: user_token(g), 401),
    "wrong-audience": (lambda g, d: google_token(g, d.deployment.scheduler_account, "https://other.run.app"), 401),
    "wrong-key": (
        lambda g, d: google_token(g, d.deployment.scheduler_account, d.deployment.scheduler_audience, wrong_key=True),
        401,
    ),
    "expired": (
        lambda g, d: google_token(
            g, d.deployment.scheduler_account, d.deployment.scheduler_audience, issued_at=time.time() - 7200
        ),
        401,
    ),
    "email-unverified": (
        lambda g, d: google_token(
            g, d.deployment.scheduler_account, d.deployment.scheduler_audience, claims={"email_verified": False}
        ),
        401,
    ),
    "gateway-account": (
        lambda g, d: google_token(g, d.deployment.gateway_account, d.deployment.scheduler_audience),
        403,
    ),
    "trigger-account": (
        lambda g, d: google_token(g, d.deployment.trigger_account, d.deployment.scheduler_audience),
        403,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_cloud_run_iam_refuses_renew_callers_before_the_code(stack: FrontDoors, google: Any, case: str) -> None:
    make, status = REFUSED[case]
    refused_at_the_door(post_renew(stack, make(google, stack)), status)


def test_push_event_admits_only_the_trigger_account(stack: FrontDoors, google: Any) -> None:
    from infra.local_trigger import build_cloud_event, encode_http

    event = build_cloud_event(AUTH_PROJECT, "evt-never-written")
    headers, body = encode_http(event)
    url = stack.function_url("push_event")
    refused_at_the_door(requests.post(url, data=body, headers=headers, timeout=30), 401)
    other = google_token(google, stack.deployment.scheduler_account, stack.deployment.services["push_event"].url)
    refused_at_the_door(
        requests.post(url, data=body, headers={**headers, "Authorization": f"Bearer {other}"}, timeout=30), 403
    )
    admitted = requests.post(
        url, data=body, headers={**headers, "Authorization": f"Bearer {stack.trigger_token()()}"}, timeout=60
    )
    assert admitted.status_code < 300, admitted.text


def test_the_webhook_stays_public(stack: FrontDoors) -> None:
    answer = requests.post(stack.function_url("webhook"), timeout=30)
    assert not answer.headers.get("Content-Type", "").startswith("text/html")
    assert answer.status_code != 403


def test_cloud_run_forwards_the_token_with_its_signature_removed(google: Any) -> None:
    """What the container receives: the same header and claims, signature replaced; X-Serverless-Authorization wins."""
    seen: dict[str, str] = {}

    def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update({k: v for k, v in environ.items() if k.endswith("AUTHORIZATION")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    email, audience = "caller@p.iam.gserviceaccount.com", "https://svc-1.europe-west1.run.app"
    door = CloudRunIam(echo, "svc", frozenset({audience}), frozenset({f"serviceAccount:{email}"}), google.certs_url)
    token = google_token(google, email, audience)
    status: list[str] = []
    door({"HTTP_AUTHORIZATION": f"Bearer {token}", "PATH_INFO": "/"}, lambda s, h: status.append(s))
    head, payload, signature = seen["HTTP_AUTHORIZATION"].split(" ")[1].split(".")
    assert status == ["200 OK"] and signature == SIGNATURE_REMOVED
    assert f"{head}.{payload}" == token.rsplit(".", 1)[0]
    seen.clear()
    door(
        {
            "HTTP_X_SERVERLESS_AUTHORIZATION": f"Bearer {token}",
            "HTTP_AUTHORIZATION": "Bearer user-token",
            "PATH_INFO": "/",
        },
        lambda s, h: status.append(s),
    )
    assert seen["HTTP_X_SERVERLESS_AUTHORIZATION"].endswith(SIGNATURE_REMOVED)
    assert seen["HTTP_AUTHORIZATION"] == "Bearer user-token"


# --- API Gateway ------------------------------------------------------------------------------------------------
def test_the_gateway_forwards_a_signed_in_user_to_the_function(stack: FrontDoors, google: Any) -> None:
    answer = requests.get(
        stack.route_url("sync_status"), headers={"Authorization": f"Bearer {user_token(google)}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "Jwt is missing"),
        ("other-project-audience", "Audiences in Jwt are not allowed"),
        ("other-issuer", "Jwt issuer is not configured"),
        ("wrong-key", "Jwt verification fails"),
        ("google-service-account-token", "Jwt issuer is not configured"),
    ],
)
def test_the_gateway_refuses_bad_user_tokens_itself(stack: FrontDoors, google: Any, case: str, message: str) -> None:
    tokens = {
        "missing": None,
        "other-project-audience": user_token(google, audience="another-project"),
        "other-issuer": user_token(google, issuer="https://securetoken.google.com/another-project"),
        "wrong-key": user_token(google, wrong_key=True),
        "google-service-account-token": google_token(google, stack.deployment.gateway_account, AUTH_PROJECT),
    }
    headers = {"Origin": "https://crm.example.com"}
    if tokens[case]:
        headers["Authorization"] = f"Bearer {tokens[case]}"
    answer = requests.post(stack.route_url("sync_enable"), json={}, headers=headers, timeout=30)
    assert answer.status_code == 401, answer.text
    assert answer.json() == {"code": 401, "message": message}
    assert "Access-Control-Allow-Origin" not in answer.headers  # managed API Gateway adds no CORS to its own 401s


def test_the_gateway_serves_only_the_documents_routes(stack: FrontDoors, google: Any) -> None:
    auth = {"Authorization": f"Bearer {user_token(google)}"}
    for path in ("/renew", "/push_event", "/webhook", "/sync/status/extra", "/"):
        answer = requests.get(stack.gateway_url + path, headers=auth, timeout=30)
        assert answer.status_code == 404, path
        assert answer.json()["message"] == "The current request is not defined by this API."
    assert requests.delete(stack.route_url("sync_status"), headers=auth, timeout=30).status_code == 404


def test_the_settings_files_go_through_the_routes_path_template(stack: FrontDoors) -> None:
    """`/settings/{asset}` (APPEND_PATH_TO_ADDRESS, no jwt_audience: the address is the audience) reaches settings_ui
    with the request path appended; a template matches one segment only; the page route is GET only."""
    page = requests.get(stack.settings_page_url(), timeout=30)
    assert page.status_code == 200, page.text
    assert "crm-calendar-sync" in page.text and "script-src 'self'" in page.headers["Content-Security-Policy"]
    module = requests.get(stack.route_url("settings_ui") + "/crm-calendar-sync.js", timeout=30)
    assert module.status_code == 200 and module.headers["Content-Type"].startswith("text/javascript")
    bare = requests.get(stack.route_url("settings_ui"), allow_redirects=False, timeout=30)
    assert bare.status_code == 302 and bare.headers["Location"] == "/settings/index.html"
    for path in ("/settings/web/index.html", "/settings/"):
        answer = requests.get(stack.gateway_url + path, timeout=30)
        assert answer.status_code == 404 and answer.json()["message"] == NOT_DEFINED, path
    assert requests.post(stack.settings_page_url(), data="{}", timeout=30).json()["message"] == NOT_DEFINED


def test_a_local_only_route_exists_only_where_it_is_given(stack: FrontDoors, google: Any) -> None:
    """The demo sign-in of `make run` is an extra route of the local gateway (FrontDoors.local_routes), never part of
    the OpenAPI document: a gateway built without it does not have it."""
    from werkzeug.test import Client

    from infra.devstack import LOCAL_SIGN_IN, demo_sign_in

    assert requests.post(stack.gateway_url + LOCAL_SIGN_IN, timeout=30).status_code == 404
    assert LOCAL_SIGN_IN not in stack.deployment.openapi["paths"]
    stack.local_routes = {LOCAL_SIGN_IN: demo_sign_in(google, AUTH_PROJECT)}
    signed_in = Client(stack.gateway()).post(LOCAL_SIGN_IN)
    assert signed_in.status_code == 200 and signed_in.json["user_id"] == "demo-user"
    assert Client(stack.gateway()).get(LOCAL_SIGN_IN).status_code == 405


def test_preflight_reaches_the_function_without_a_token(stack: FrontDoors) -> None:
    answer = requests.options(
        stack.route_url("sync_enable"),
        headers={
            "Origin": "https://crm.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=30,
    )
    assert answer.status_code == 204, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in answer.headers["Access-Control-Allow-Headers"].lower()


def test_the_oauth_callback_route_needs_no_user_token(stack: FrontDoors) -> None:
    answer = requests.get(
        stack.route_url("oauth_callback"), params={"state": "x", "code": "y"}, allow_redirects=False, timeout=30
    )
    assert not answer.headers.get("Content-Type", "").startswith("text/html"), "the gateway's call was refused"
    # The function answered (its redirect or its own error shape), not the gateway's {"code", "message"}.
    assert answer.status_code in (302, 303) or "error" in answer.json(), answer.text


def test_a_user_facing_function_refuses_a_call_that_skipped_the_gateway(stack: FrontDoors, google: Any) -> None:
    """Even holding the gateway account's token, a call without the gateway's forwarded user header is refused by the
    function's own check; a user's token alone never passes Cloud Run IAM."""
    url = stack.function_url("sync_status")
    refused_at_the_door(requests.get(url, headers={"Authorization": f"Bearer {user_token(google)}"}, timeout=30), 401)
    gateway = google_token(google, stack.deployment.gateway_account, stack.deployment.services["sync_status"].url)
    answer = requests.get(url, headers={"Authorization": f"Bearer {gateway}"}, timeout=30)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated", answer.text


# --- Terraform is the source: a change there changes what the doors admit ------------------------------------------
def test_a_changed_scheduler_audience_is_refused(
    app_context: AppContext, google: Any, function_apps: Any, terraform_copy: Any
) -> None:
    changed = terraform_copy(
        "scheduler.tf",
        "      audience              = local.renew_url",
        '      audience              = "https://gcal-renew.example.com"',
    )
    opened = open_doors(google, function_apps, changed)
    try:
        configure(app_context, opened.doors)
        assert opened.doors.deployment.scheduler_audience == "https://gcal-renew.example.com"
        refused_at_the_door(post_renew(opened.doors, opened.doors.scheduler_token()()), 401)
    finally:
        opened.stop()


def test_a_changed_invoker_is_refused(
    app_context: AppContext, google: Any, function_apps: Any, terraform_copy: Any
) -> None:
    changed = terraform_copy(
        "iam.tf",
        '  name     = google_cloudfunctions2_function.fn["renew"].service_config[0].service\n  role     = '
        '"roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.scheduler.email}"',
        '  name     = google_cloudfunctions2_function.fn["renew"].service_config[0].service\n  role     = '
        '"roles/run.invoker"\n  member   = "serviceAccount:${google_service_account.trigger.email}"',
    )
    opened = open_doors(google, function_apps, changed)
    try:
        configure(app_context, opened.doors)
        refused_at_the_door(post_renew(opened.doors, opened.doors.scheduler_token()()), 403)
    finally:
        opened.stop()


def test_a_changed_route_moves_the_function(
    app_context: AppContext, google: Any, function_apps: Any, terraform_copy: Any
) -> None:
    changed = terraform_copy("locals.tf", 'path = "/sync/status"', 'path = "/sync/state"')
    opened = open_doors(google, function_apps, changed)
    try:
        configure(app_context, opened.doors)
        auth = {"Authorization": f"Bearer {user_token(google)}"}
        assert requests.get(opened.doors.gateway_url + "/sync/status", headers=auth, timeout=30).status_code == 404
        assert requests.get(opened.doors.gateway_url + "/sync/state", headers=auth, timeout=30).status_code == 200
    finally:
        opened.stop()


def test_a_changed_gateway_audience_is_refused_at_the_backend(
    app_context: AppContext, google: Any, function_apps: Any, terraform_copy: Any
) -> None:
    changed = terraform_copy(
        "gateway.tf",
        "              jwt_audience     = local.function_urls[k]",
        '              jwt_audience     = "https://${local.function_names[k]}.example.com"',
    )
    opened = open_doors(google, function_apps, changed)
    try:
        configure(app_context, opened.doors)
        answer = requests.get(
            opened.doors.route_url("sync_status"), headers={"Authorization": f"Bearer {user_token(google)}"}, timeout=30
        )
        refused_at_the_door(answer, 401)
    finally:
        opened.stop()
