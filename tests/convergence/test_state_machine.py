"""Convergence under faults: the hypothesis state machine of tests/convergence/machine.py, bounded and soak profiles.

`make test`: CONVERGENCE_EXAMPLES (default 200) examples of up to CONVERGENCE_STEPS (default 8) steps; any divergence
fails the test with hypothesis's shrunk reproduction. `make soak` (SOAK=1): SOAK_EXAMPLES (default 20,000) examples,
then `.bench/soak.json` records examples run and divergences found.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Verbosity, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.convergence.machine import Env, SyncMachine, bind
from tests.fixtures.functions import serve_function
from tests.fixtures.google import GoogleStandin

ROOT = Path(__file__).resolve().parents[2]


def webhook_door() -> Any:
    """The webhook's Cloud Run IAM door as terraform/ declares it (public: its allUsers binding), so the notifications
    the stand-in posts go through production's door."""
    from infra.cloud_run_iam import CloudRunIam
    from infra.deployment import read_deployment

    service = read_deployment(project_id="crm-convergence").services["webhook"]
    return lambda app: CloudRunIam.for_service(app, service, certs_url="")


@pytest.fixture(scope="module")
def env(firestore_emulator: Any, google_standin_server: Any) -> Iterator[Env]:
    from infra.google_standin.control import ControlClient

    webhook = serve_function("webhook", door=webhook_door())
    google = GoogleStandin(google_standin_server, ControlClient(google_standin_server.base_url))
    environment = Env(firestore_emulator, google, webhook.url + "/")
    bind(environment)
    try:
        yield environment
    finally:
        webhook.stop()
        if environment.db is not None:
            environment.db.close()
        google.control.reset()


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=int(os.environ.get("CONVERGENCE_STEPS", 8)),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        verbosity=Verbosity.verbose if os.environ.get("CONVERGENCE_VERBOSE") else Verbosity.normal,
        derandomize=os.environ.get("CONVERGENCE_SEED") is None,
    )


@pytest.mark.timeout(1200)
def test_converges_under_faults(env: Env) -> None:
    examples = int(os.environ.get("CONVERGENCE_EXAMPLES", 200))
    run_state_machine_as_test(SyncMachine, settings=_settings(examples))
    assert env.examples >= examples
    print(json.dumps({"examples": env.examples, "rules": env.stats}))
    assert env.divergences == []


@pytest.mark.soak
@pytest.mark.timeout(0)
@pytest.mark.skipif(os.environ.get("SOAK") != "1", reason="soak profile: make soak")
def test_soak_converges(env: Env) -> None:
    """Every example runs (generation only, no shrinking); divergences are counted and reported as the run goes (a
    killed worker leaves its progress), then asserted. `make soak` runs several of these (tests/convergence/soak.py)."""
    from hypothesis import Phase

    examples = int(os.environ.get("SOAK_EXAMPLES", 20_000))
    report_path = Path(os.environ.get("SOAK_REPORT", ROOT / ".bench" / "soak.json"))
    report_path.parent.mkdir(exist_ok=True)
    env.raise_on_divergence = False
    started = time.monotonic()

    def write_report() -> None:
        report = {
            "examples": env.examples,
            "divergences": len(env.divergences),
            "first_divergences": env.divergences[:5],
            "rules": env.stats,
            "seconds": round(time.monotonic() - started, 1),
        }
        report_path.write_text(json.dumps(report, indent=2) + "\n")

    env.on_example_done = write_report
    errors: list[str] = []
    # SIGTERM (the soak runner stopping its workers) ends the loop: the interrupt it raises can surface from
    # hypothesis as an ordinary exception (FlakyStrategyDefinition), which must not read as a finding and go on.
    terminated: list[int] = []
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        terminated.append(signum)
        if callable(previous_term):
            previous_term(signum, frame)
        else:
            raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        # An exception escaping a rule ends hypothesis's run: it is recorded (a failure, like a divergence) and the
        # remaining examples run, so one finding does not cost the rest of the soak.
        while env.examples < examples and len(errors) < 50 and not terminated:
            try:
                run_state_machine_as_test(
                    SyncMachine,
                    settings=settings(_settings(examples - env.examples), derandomize=False, phases=[Phase.generate]),
                )
            except Exception as exc:
                if terminated:
                    break
                errors.append(f"{type(exc).__name__}: {str(exc)[:2000]}")
                env.divergences.append(f"example raised {errors[-1]}")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        write_report()
    print(report_path.read_text())
    assert env.divergences == [], env.divergences[:5]
    assert env.examples >= examples
