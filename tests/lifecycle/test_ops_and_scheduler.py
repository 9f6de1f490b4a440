"""The ops command line, the scheduler job definition and the local scheduler."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from infra import ops
from infra.local_scheduler import LocalScheduler, StandinTokenProvider
from shared.context import AppContext
from shared.schedule import JOB_FILE, jittered_seconds, job_proto, load_job
from tests.lifecycle.conftest import Api, SkewClock
from tests.lifecycle.helpers import calendar, live_channels, refresh_token_of, route, setup_user

ALICE = "alice@example.com"


def _ops(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    code = ops.main(list(argv))
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip().startswith(("{", "[")) else out)


def test_job_definition_is_the_single_source() -> None:
    raw = json.loads(JOB_FILE.read_text())
    job = load_job()
    proto = job_proto(
        project="p",
        location="europe-west1",
        target_url="https://renew.example",
        service_account="sched@p.iam.gserviceaccount.com",
    )
    assert proto.name == f"projects/p/locations/europe-west1/jobs/{raw['name']}"
    assert proto.schedule == raw["schedule"] == job.schedule
    assert proto.time_zone == raw["time_zone"]
    assert proto.attempt_deadline.total_seconds() == raw["attempt_deadline_seconds"]
    assert proto.retry_config.retry_count == raw["retry"]["retry_count"]
    assert proto.http_target.oidc_token.audience == "https://renew.example"
    assert proto.http_target.body == b"{}"
    rng = random.Random(7)
    samples = [jittered_seconds(100, rng=rng) for _ in range(500)]
    assert 75 <= min(samples) < 85 and 115 < max(samples) <= 125


def test_scheduler_sync_dry_run_prints_the_job(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _ops(
        capsys,
        "scheduler-sync",
        "--project",
        "p",
        "--location",
        "europe-west1",
        "--url",
        "https://renew.example",
        "--service-account",
        "sched@p.iam.gserviceaccount.com",
        "--dry-run",
    )
    assert code == 0
    assert f'schedule: "{load_job().schedule}"' in out
    assert "oidc_token" in out and "sched@p.iam.gserviceaccount.com" in out


def test_ops_commands(
    api: Api, app_context: AppContext, google, clock: SkewClock, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_user(app_context, google, "user-a", ALICE)
    assert api.enable("user-a").status_code == 200
    [first] = live_channels(google)

    code, status = _ops(capsys, "status", "--user", "user-a")
    assert code == 0 and status["calendars"][0]["channel_id"] == first["id"]

    code, renewed = _ops(capsys, "renew", "--user", "user-a")
    assert code == 0 and renewed == {"renewed": {ALICE: "renewed"}}
    [second] = live_channels(google)
    assert second["id"] != first["id"] and route(app_context, first["id"]).state == "stopped"

    code, resync = _ops(capsys, "resync", "--user", "user-a", "--full")
    assert code == 0 and ALICE in resync["resynced"]

    code, stopped = _ops(capsys, "stop-channel", "--channel", second["id"])
    assert code == 0 and stopped["was_current"] is True
    assert live_channels(google) == []
    assert calendar(app_context, "user-a", ALICE).channel is None

    code, run = _ops(capsys, "renew-run")
    assert code == 0 and run["rewatched"] == 1  # the stopped calendar was due and is watched again
    assert len(live_channels(google)) == 1

    google.control.revoke_token(refresh_token_of(app_context, "user-a"))
    clock.advance(6.5 * 86400)
    _ops(capsys, "renew-run")
    code, errors = _ops(capsys, "errors")
    assert code == 0
    assert [e["user_id"] for e in errors["needs_reauth"]] == ["user-a"]

    code, missing = _ops(capsys, "stop-channel", "--channel", "nope")
    assert code == 1 and missing["error"]["code"] == "not_found"


def test_local_scheduler_posts_with_a_verifiable_oidc_token(api: Api, app_context: AppContext, google) -> None:
    url = api.served["renew"].url + "/"
    app_context.settings = app_context.settings.model_copy(
        update={
            "scheduler_oidc_audience": url,
            "scheduler_invoker_email": "local-scheduler@crm-gcal-sync-local.iam.gserviceaccount.com",
        }
    )
    provider = StandinTokenProvider(audience=url, base_url=google.base_url)
    scheduler = LocalScheduler(url, load_job(), 0.05, provider)
    report = scheduler.fire()
    assert report is not None and report["ok"] is True

    # Without a token the renew function refuses (and the scheduler does not retry a 4xx).
    refused = LocalScheduler(url, load_job(), 0.05, lambda: None)
    assert refused.fire() is not None and refused.runs == 1
    assert refused.last_report["error"]["code"] == "unauthenticated"

    scheduler.start()
    deadline = time.monotonic() + 5
    while scheduler.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert scheduler.runs >= 3
