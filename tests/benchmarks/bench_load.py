"""Benchmark: the local load run (tests/load/loadrun.py) against `make run`'s stack.

LOAD_USERS (50) x LOAD_CALENDARS (3) calendars, LOAD_SECONDS (120) of sustained Google-side and CRM-side changes at
LOAD_RATE (10/s) with LOAD_FAULT_RATE (0.05) of Google calls failing with 503, then quiescence and a convergence check.
Figures: load.divergences (target 0), load.p50_ms / load.p95_ms (Google edit -> commit of the first CRM version
carrying its etag), load.google_calls_per_change (the final reconcile's pulls left out, see loadrun),
load.throughput_changes_per_s, load.errors. Naive twin: load.naive_google_calls_per_change = the same run without
burst coalescing (one events.list per delivered change notification, retried at the same fault rate, instead of the
lists actually made; every other call the same). Under a steady spread of changes over 150 calendars bursts are rare,
so the two are close; `pull.burst100` measures the burst case.
"""

from __future__ import annotations

import os
from typing import Any


def run(results: dict[str, Any]) -> None:
    from tests.load.loadrun import run as load_run

    report = load_run(
        users=int(os.environ.get("LOAD_USERS", 50)),
        calendars=int(os.environ.get("LOAD_CALENDARS", 3)),
        seconds=float(os.environ.get("LOAD_SECONDS", 120)),
        rate=float(os.environ.get("LOAD_RATE", 10)),
        fault_rate=float(os.environ.get("LOAD_FAULT_RATE", 0.05)),
    )
    latency = report["notification_to_crm_ms"]
    results["load.divergences"] = report["divergences"]
    results["load.p50_ms"] = latency["p50"]
    results["load.p95_ms"] = latency["p95"]
    results["load.google_calls_per_change"] = report["google_calls_per_change"]
    results["load.throughput_changes_per_s"] = report["throughput_changes_per_s"]
    results["load.errors"] = report["errors_total"]
    results["load.changes"] = report["changes"]
    results["load.quiesce_seconds"] = report["quiesce_seconds"] or 0
    results["load.google_calls_per_change_with_reconcile"] = report["google_calls_per_change_with_reconcile"]
    results["load.latency_measured"] = latency["measured"]
    if report.get("naive_google_calls_per_change") is not None:
        results["load.naive_google_calls_per_change"] = report["naive_google_calls_per_change"]
    for sample in report["divergence_samples"][:3]:
        print(f"load divergence: {sample[:500]}")
