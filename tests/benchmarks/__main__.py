"""`make bench`: run every tests/benchmarks/bench_*.py, write one flat JSON report and the README's table.

Each benchmark module exposes `run(results: dict[str, float]) -> None` and adds figures (name -> number), each beside
a naive baseline measured in the same run. Counts (Google API calls, Firestore operations) are the figures that
matter; wall times are reported, never asserted.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from infra.firestore_emulator import existing_or_new

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / ".bench"
README = ROOT / "README.md"
TABLE_START = "<!-- bench:start -->"
TABLE_END = "<!-- bench:end -->"


def _benchmark_modules(selected: list[str]) -> list[str]:
    # bench_capacity runs last: its model reads other benchmarks' figures of the same run (bench_instance's rate).
    names = sorted(
        (m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")),
        key=lambda name: (name == "bench_capacity", name),
    )
    return [n for n in names if not selected or any(s in n for s in selected)]


# The README's short table: the figures the issues name (every figure is in .bench/results.json).
README_FIGURES = (
    "pull.burst100.list_calls",
    "pull.steady.list_calls_per_edit",
    "pull.steady.firestore_ops_per_edit",
    "pull.import10k.list_calls",
    "pull.import10k.commits",
    "pull.import10k.wall_s",
    "pull.latency.p50_ms",
    "pull.latency.p95_ms",
    "pull.latency.floor_p95_ms",
    "pull.latency.path_p95_ms",
    "pull.latency.path_p95_over_floor_p95",
    "pull.critical_path.round_trips",
    "pull.critical_path.round_trips_new_event",
    "pull.critical_path.round_trips_unseen_event",
    "pull.critical_path.round_trips_cold",
    "push.edits1000.google_writes",
    "push.edits1000.google_calls_per_edit",
    "push.edits1000.echo_crm_writes",
    "push.edits1000.wall_s",
    "push.echo_list_calls_per_edit",
    "push.google_calls_per_crm_edit",
    "renew.cal10k_due300.firestore_reads",
    "renew.cal10k_due300.google_calls",
    "renew.cal10k_due300.renewed",
    "lag.dead_channel_detect_s",
    "lag.dead_channel_after_write_s",
    "lag.google_calls_per_calendar_day",
    "convergence.examples",
    "convergence.divergences",
    "load.throughput_changes_per_s",
    "load.p50_ms",
    "load.p95_ms",
    "load.google_calls_per_change",
    "load.divergences",
    "merge.base_bytes_per_event",
    "capacity.google_calls_per_user_day",
    "capacity.firestore_ops_per_user_day",
    "capacity.users_per_project_default_quota",
    "capacity.users_per_project_first_limit",
    "capacity.usd_per_1000_users_month",
    "instance.webhook.notifications_per_s",
    "instance.webhook.p95_ms",
)


def _markdown(results: dict[str, float]) -> str:
    lines = ["| figure | value | naive baseline |", "|---|---:|---:|"]
    shown = [n for n in README_FIGURES if n in results] + sorted(n for n in results if n.endswith(".ratio"))
    for name in shown:
        prefix, _, leaf = name.rpartition(".")
        baseline = results.get(f"{prefix}.naive_{leaf}")
        lines.append(f"| `{name}` | {results[name]:g} | {'' if baseline is None else f'{baseline:g}'} |")
    return "\n".join(lines)


# The README's Capacity section: (figure, what it means), rendered from the last run (bench_capacity, bench_instance).
CAPACITY_FIGURES = (
    ("capacity.users", "simulated users (one business day, hourly cron, then one renewal run)"),
    ("capacity.google_calls_per_user_day", "Calendar API calls per user-day (all methods; token refreshes apart)"),
    ("capacity.google.calendar.events.list_per_user_day", "of which events.list"),
    ("capacity.google.calendar.events.insert_per_user_day", "of which events.insert"),
    ("capacity.google.calendar.events.patch_per_user_day", "of which events.patch"),
    ("capacity.google.calendar.events.watch_per_user_day", "of which events.watch"),
    ("capacity.google.oauth.token_per_user_day", "OAuth token refreshes per user-day (no Calendar quota)"),
    ("capacity.firestore_ops_per_user_day", "Firestore reads + writes per user-day"),
    ("capacity.firestore_reads_per_user_day", "of which reads (an empty query counted as one)"),
    ("capacity.firestore_writes_per_user_day", "of which writes (deletes included)"),
    ("capacity.invocations_per_user_day", "function invocations per user-day"),
    ("capacity.functions.webhook.invocations_per_user_day", "of which webhook"),
    ("capacity.functions.push_event.invocations_per_user_day", "of which push_event"),
    ("capacity.cpu_s_per_user_day", "function CPU-seconds per user-day"),
    ("capacity.peak_hour_calls_per_user_min", "Calendar calls per user and minute in the busiest hour"),
    ("capacity.users_at.calendar_project_per_minute", "users at 10,000 Calendar requests/min per project"),
    ("capacity.users_at.calendar_daily_billing_threshold", "users at 1,000,000 Calendar requests/day per project"),
    ("capacity.users_at.cron_runs", "users the cron keeps up with (batch 1,000 or deadline, x runs a day)"),
    ("capacity.users_at.webhook_max_instances", "users the webhook's max instances carry at peak"),
    ("capacity.users_per_project_default_quota", "users per project at the default Calendar quota"),
    ("capacity.users_per_project_first_limit", "users per project at the first limit that bites"),
    ("capacity.usd_per_1000_users_month", "USD per 1,000 users a month (Firestore + functions, list prices)"),
    ("capacity.usd_firestore_per_1000_users_month", "of which Firestore"),
    ("capacity.usd_functions_per_1000_users_month", "of which Cloud Run functions"),
    ("capacity.cron.due_per_user_day", "cron work per user-day (renewals + stale pulls)"),
    ("capacity.cron.idle_run_firestore_reads", "Firestore reads of a cron run with nothing due"),
    ("capacity.cron.seconds_per_due", "cron wall seconds per due calendar (local stack)"),
    ("capacity.cron.runs_per_day", "cron runs a day (the deployed schedule)"),
    ("capacity.usd_cron_fixed_per_project_month", "USD a month the schedule costs a project with nothing due"),
    ("capacity.cron.due_per_run_at_1m_users", "due calendars per cron run at 1,000,000 users"),
    ("capacity.cron.batches_per_run_at_1m_users", "1,000-calendar batches per run at 1,000,000 users"),
    ("capacity.cron.concurrency_needed_at_1m_users", "cron workers its deadline needs at 1,000,000 users"),
    ("capacity.cron.cpu_s_per_due", "cron CPU-seconds per due calendar (the process's: an upper bound)"),
    ("capacity.cron.vcpu_needed_at_1m_users", "renew function vCPU its deadline needs at 1,000,000 users"),
    ("instance.webhook.notifications_per_s", "notifications/s one webhook instance sustains (gunicorn, gthread)"),
    ("instance.webhook.p95_ms", "p95 ms at that rate"),
    ("instance.webhook.p95_bound_ms", "the p95 bound"),
    ("instance.webhook.threads", "gunicorn threads (= Cloud Run concurrency)"),
)
CAPACITY_START = "<!-- capacity:start -->"
CAPACITY_END = "<!-- capacity:end -->"


def _capacity_markdown(results: dict[str, float]) -> str:
    lines = ["| figure | last run | meaning |", "|---|---:|---|"]
    lines += [f"| `{name}` | {results[name]:g} | {meaning} |" for name, meaning in CAPACITY_FIGURES if name in results]
    first = [n.rpartition(".")[2] for n in results if n.startswith("capacity.first_limit.")]
    if first:
        lines.append(f"| first limit | `{first[0]}` | the smallest of the `capacity.users_at.*` |")
    return "\n".join(lines)


def _replace_block(text: str, start: str, end: str, block: str) -> str:
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def _update_readme(table: str, capacity: str) -> None:
    if not README.exists():
        return
    text = README.read_text()
    text = _replace_block(text, TABLE_START, TABLE_END, table)
    README.write_text(_replace_block(text, CAPACITY_START, CAPACITY_END, capacity))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    OUT_DIR.mkdir(exist_ok=True)
    emulator = existing_or_new(log_path=str(OUT_DIR / "firestore-emulator.log"))
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    results: dict[str, float] = {}
    failures: list[str] = []
    try:
        for name in _benchmark_modules(argv):
            started = time.perf_counter()
            try:
                importlib.import_module(f"tests.benchmarks.{name}").run(results)
            except Exception:
                failures.append(name)
                traceback.print_exc()
            results[f"bench.{name}.wall_s"] = round(time.perf_counter() - started, 2)
    finally:
        emulator.stop()
    if argv and (OUT_DIR / "results.json").exists():
        # A selected run refreshes its own figures and keeps the others from the last full run.
        results = {**json.loads((OUT_DIR / "results.json").read_text()), **results}
    report = dict(sorted(results.items()))
    (OUT_DIR / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    table = _markdown(report)
    (OUT_DIR / "results.md").write_text(table + "\n")
    _update_readme(table, _capacity_markdown(report))  # a selected run keeps the last full run's other figures
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    if failures:
        sys.stderr.write(f"benchmarks failed: {', '.join(failures)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
