"""Benchmark: the convergence state machine over N examples, counting divergences instead of stopping at the first.

Same machine as tests/convergence (real served webhook, real emulator, the stand-in), hypothesis in generate-only mode
(no shrinking) so every example runs: BENCH_CONVERGENCE_EXAMPLES (default 200) examples of
BENCH_CONVERGENCE_STEPS (default 8) steps. Figures: convergence.examples, convergence.divergences,
convergence.seconds_per_example. There is no naive twin: a divergence count has no meaningful naive baseline.
"""

from __future__ import annotations

import os
import time
from typing import Any


def run(results: dict[str, Any]) -> None:
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from infra.firestore_emulator import existing_or_new
    from infra.google_standin.control import ControlClient
    from infra.google_standin.server import start_standin
    from tests.convergence.machine import Env, SyncMachine, bind
    from tests.fixtures.functions import serve_function
    from tests.fixtures.google import TEST_OPTIONS, GoogleStandin

    examples = int(os.environ.get("BENCH_CONVERGENCE_EXAMPLES", 200))
    steps = int(os.environ.get("BENCH_CONVERGENCE_STEPS", 8))
    emulator = existing_or_new()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    handle = start_standin("127.0.0.1", 0, **TEST_OPTIONS)
    webhook = serve_function("webhook")
    env = Env(emulator, GoogleStandin(handle, ControlClient(handle.base_url)), webhook.url + "/")
    env.raise_on_divergence = False
    bind(env)
    started = time.perf_counter()
    try:
        run_state_machine_as_test(
            SyncMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        webhook.stop()
        handle.stop()
        if env.db is not None:
            env.db.close()
    elapsed = time.perf_counter() - started
    results["convergence.examples"] = env.examples
    results["convergence.divergences"] = len(env.divergences)
    results["convergence.seconds_per_example"] = round(elapsed / max(1, env.examples), 3)
    for index, text in enumerate(env.divergences[:3]):
        print(f"convergence divergence {index + 1}: {text[:500]}")
