"""Benchmark: the capacity model, its inputs measured on a simulated population (tests/load/population.py).

CAPACITY_USERS (200) users live one business day on a compressed clock (hourly cron included), then the clock jumps to
the channels' renewal window for one cron run. Per user-day: Google calls by method, Firestore reads / writes /
queries, function invocations, CPU-seconds and billed seconds. The renewal run's cost is spread over the channel's
lifetime (channel TTL - renew-before = 6 days); its stale pull of every calendar is counted on top of the day's stale
pulls (an over-count of one pull per calendar and lifetime, kept: the model errs high).

The model (every input is a figure of this run; the limits and prices are Google's, cited in the README):
- users at the Calendar API's per-project quota: QUOTA_PROJECT_PER_MIN / (busiest hour's calls per user / 60);
  at the daily billing threshold: DAILY_BILLING_THRESHOLD / calls per user-day; the cron: what one run takes
  before its deadline (RENEWAL_CONCURRENCY threads at the measured seconds per due calendar, and the function's vCPU
  at the measured CPU-seconds per due calendar) x its runs a day / due calendars per user-day; the webhook: max
  instances x one instance's sustained notifications per second (bench_instance, or INSTANCE_RATE_FALLBACK) / the
  busiest hour's webhook calls per user and second. The first limit is the smallest of these.
- cost per 1,000 users a month: Firestore reads (queries count at least one read) and writes (deletes included, priced
  as writes) at list price, function invocations, and billed instance time (each request's wall time rounded up to
  100 ms, at the function's vCPU and memory) at Cloud Run's request-based list prices; free tiers left out.
- the cron at one million users: due calendars per run, and the concurrency and vCPU its deadline needs at the
  measured seconds and CPU-seconds per due calendar, at the deployed schedule's runs a day
  (shared/scheduler_job.json).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

PREFIX = "capacity"
# Calendar API usage limits (developers.google.com/workspace/calendar/api/guides/quota).
QUOTA_PROJECT_PER_MIN = 10_000
QUOTA_USER_PER_MIN = 600
DAILY_BILLING_THRESHOLD = 1_000_000
# Firestore Standard edition, multi-region list prices per document (cloud.google.com/firestore/pricing).
USD_PER_READ = 0.06 / 100_000
USD_PER_WRITE = 0.18 / 100_000
# Cloud Run (gen2 functions), request-based billing, Tier 1 list prices (cloud.google.com/run/pricing).
USD_PER_VCPU_S = 0.000024
USD_PER_GIB_S = 0.0000025
USD_PER_REQUEST = 0.40 / 1_000_000
# (vCPU, GiB) per function as terraform/locals.tf sizes them (gen2 default vCPU for the memory, webhook 1 vCPU).
FUNCTION_SIZE = {"webhook": (1.0, 0.5), "push_event": (0.333, 0.5), "renew": (1.0, 0.5), "sync_enable": (0.333, 0.5)}
DEFAULT_SIZE = (0.167, 0.25)
WEBHOOK_MAX_INSTANCES = 20
INSTANCE_RATE_FALLBACK = 20.0  # notifications/s one webhook instance sustains, when bench_instance has not run
DUE_BATCH_LIMIT = 1000  # shared.account.renewal.DUE_BATCH_LIMIT: due calendars per query (a run pages on)
CRON_DEADLINE_S = 240 * 0.9  # RENEWAL_DEADLINE_SECONDS, of which the run uses 90%
MILLION = 1_000_000
RENEWAL_CONCURRENCY = 16  # the cron's worker threads (RENEWAL_CONCURRENCY default, at most 64)


def cron_runs_per_day() -> int:
    """Runs a day of the deployed scheduler job (shared/scheduler_job.json, which Terraform deploys): `*/N * * * *`
    is 1,440 / N runs, `0 * * * *` 24. The simulated day runs the cron hourly; the due work per user-day does not
    depend on how often it runs, only how much one run must take does."""
    import json
    from pathlib import Path

    schedule = json.loads((Path(__file__).resolve().parents[2] / "shared" / "scheduler_job.json").read_text())
    minute, hour, *_ = schedule["schedule"].split()
    per_hour = 60 // int(minute[2:]) if minute.startswith("*/") else 1
    hours = 24 // int(hour[2:]) if hour.startswith("*/") else (24 if hour == "*" else 1)
    return per_hour * hours


def _calendar_calls(google: dict[str, int]) -> int:
    return sum(n for method, n in google.items() if method.startswith("calendar."))


def _sum(windows: list[Any], pick: Any) -> float:
    return float(sum(pick(w) for w in windows))


def model(day: list[Any], renewal: Any, users: int, lifetime_days: float, instance_rate: float) -> dict[str, float]:
    """The capacity figures from one measured day (hourly windows) and one renewal run (see the module docstring)."""
    out: dict[str, float] = {}
    windows = [*day, renewal]
    weight = [1.0] * len(day) + [1.0 / lifetime_days]  # the renewal run happens once a lifetime

    def per_user_day(pick: Any) -> float:
        return sum(w * pick(x) for w, x in zip(weight, windows, strict=True)) / users

    methods = sorted({m for x in windows for m in x.google})
    for method in methods:
        out[f"{PREFIX}.google.{method}_per_user_day"] = round(per_user_day(lambda x, m=method: x.google.get(m, 0)), 3)
    calls = per_user_day(lambda x: _calendar_calls(x.google))
    reads = per_user_day(lambda x: x.firestore.get("reads", 0) + x.firestore.get("queries", 0))
    writes = per_user_day(lambda x: x.firestore.get("writes", 0))
    out[f"{PREFIX}.google_calls_per_user_day"] = round(calls, 2)
    out[f"{PREFIX}.firestore_reads_per_user_day"] = round(reads, 1)
    out[f"{PREFIX}.firestore_writes_per_user_day"] = round(writes, 1)
    out[f"{PREFIX}.firestore_ops_per_user_day"] = round(reads + writes, 1)
    functions = sorted({f for x in windows for f in x.functions})
    usd_compute = 0.0
    for name in functions:

        def stat(key: str, name: str = name) -> float:
            return per_user_day(lambda x: x.functions.get(name, {}).get(key, 0))

        # The cron works in a thread pool: its CPU is the process's over the run (an upper bound, see population).
        invocations, billed = stat("invocations"), stat("billed_s")
        cpu = stat("process_cpu_s" if name == "renew" else "cpu_s")
        out[f"{PREFIX}.functions.{name}.invocations_per_user_day"] = round(invocations, 3)
        out[f"{PREFIX}.functions.{name}.cpu_s_per_user_day"] = round(cpu, 4)
        vcpu, gib = FUNCTION_SIZE.get(name, DEFAULT_SIZE)
        usd_compute += invocations * USD_PER_REQUEST + billed * (vcpu * USD_PER_VCPU_S + gib * USD_PER_GIB_S)
    out[f"{PREFIX}.invocations_per_user_day"] = round(
        per_user_day(lambda x: sum(f.get("invocations", 0) for f in x.functions.values())), 2
    )
    out[f"{PREFIX}.cpu_s_per_user_day"] = round(
        sum(out[f"{PREFIX}.functions.{n}.cpu_s_per_user_day"] for n in functions), 3
    )
    usd_firestore = reads * USD_PER_READ + writes * USD_PER_WRITE
    out[f"{PREFIX}.usd_per_1000_users_month"] = round((usd_firestore + usd_compute) * 1000 * 30, 2)
    out[f"{PREFIX}.usd_firestore_per_1000_users_month"] = round(usd_firestore * 1000 * 30, 2)
    out[f"{PREFIX}.usd_functions_per_1000_users_month"] = round(usd_compute * 1000 * 30, 2)

    # The cron: due calendars (renewals + stale pulls) and wall seconds per due calendar, measured on the simulated
    # day's hourly runs; the deployed schedule's runs a day share the same daily due work.
    runs_per_day = cron_runs_per_day()
    runs = [x for x in day if x.cron]

    def due(x: Any) -> int:
        counts = (x.cron or {}).get("counts", {})
        return int(counts.get("renew_due", 0) + counts.get("pull_due", 0))

    due_per_user_day = (sum(due(x) for x in runs) + due(renewal) / lifetime_days) / users
    idle = [x for x in runs if not due(x)]
    busy = [x for x in runs if due(x)]
    idle_wall = sum(x.functions.get("renew", {}).get("wall_s", 0) for x in idle) / max(1, len(idle))
    seconds_per_due = max(
        0.0,
        sum(x.functions.get("renew", {}).get("wall_s", 0) - idle_wall for x in busy)
        / max(1, sum(due(x) for x in busy)),
    )
    idle_cpu = sum(x.functions.get("renew", {}).get("process_cpu_s", 0) for x in idle) / max(1, len(idle))
    cpu_per_due = max(
        0.0,
        sum(x.functions.get("renew", {}).get("process_cpu_s", 0) - idle_cpu for x in busy)
        / max(1, sum(due(x) for x in busy)),
    )
    peak_due = max(due(x) for x in runs)
    # A run pages through what is due (batch after batch) until its deadline: what it takes is bounded by its worker
    # threads waiting on Google and Firestore, and by the function's vCPU.
    renew_vcpu = FUNCTION_SIZE["renew"][0]
    per_run_capacity = min(
        RENEWAL_CONCURRENCY * CRON_DEADLINE_S / seconds_per_due if seconds_per_due else math.inf,
        renew_vcpu * CRON_DEADLINE_S / cpu_per_due if cpu_per_due else math.inf,
    )
    due_per_run_1m = due_per_user_day / runs_per_day * MILLION
    out[f"{PREFIX}.cron.cpu_s_per_due"] = round(cpu_per_due, 4)
    out[f"{PREFIX}.cron.vcpu_needed_at_1m_users"] = round(due_per_run_1m * cpu_per_due / CRON_DEADLINE_S, 2)
    idle_reads = sum(x.cron.get("firestore", {}).get("reads", 0) for x in idle) / max(1, len(idle))
    out[f"{PREFIX}.cron.runs_per_day"] = float(runs_per_day)
    # What the schedule costs a project with nothing due: its runs' queries and invocations (not per user).
    idle_run_usd = (
        idle_reads * USD_PER_READ
        + USD_PER_REQUEST
        + idle_wall * (FUNCTION_SIZE["renew"][0] * USD_PER_VCPU_S + FUNCTION_SIZE["renew"][1] * USD_PER_GIB_S)
    )
    out[f"{PREFIX}.usd_cron_fixed_per_project_month"] = round(idle_run_usd * runs_per_day * 30, 2)
    out[f"{PREFIX}.cron.due_per_user_day"] = round(due_per_user_day, 3)
    out[f"{PREFIX}.cron.peak_due_per_run"] = float(peak_due)
    out[f"{PREFIX}.cron.firestore_reads_per_due"] = round(
        sum(x.cron.get("firestore", {}).get("reads", 0) for x in busy) / max(1, sum(due(x) for x in busy)), 2
    )
    out[f"{PREFIX}.cron.idle_run_firestore_reads"] = round(idle_reads, 2)
    out[f"{PREFIX}.cron.seconds_per_due"] = round(seconds_per_due, 4)
    out[f"{PREFIX}.cron.due_per_run_at_1m_users"] = float(int(due_per_run_1m))
    out[f"{PREFIX}.cron.concurrency_needed_at_1m_users"] = float(
        math.ceil(due_per_run_1m * seconds_per_due / CRON_DEADLINE_S)
    )
    out[f"{PREFIX}.cron.batches_per_run_at_1m_users"] = float(math.ceil(due_per_run_1m / DUE_BATCH_LIMIT))
    # The simulated day's busiest hourly run, spread over the deployed runs of that hour.
    peak_due_per_run = peak_due * 24 / runs_per_day
    out[f"{PREFIX}.cron.users_at_peak_run"] = (
        float(int(per_run_capacity / (peak_due_per_run / users))) if peak_due else -1.0
    )

    # Limits: users each one allows; the first to bite is the smallest.
    peak_calls = max(_calendar_calls(x.google) for x in day)
    peak_webhook = max(x.functions.get("webhook", {}).get("invocations", 0) for x in day)
    limits = {
        "calendar_project_per_minute": QUOTA_PROJECT_PER_MIN / (peak_calls / users / 60) if peak_calls else math.inf,
        "calendar_daily_billing_threshold": DAILY_BILLING_THRESHOLD / calls if calls else math.inf,
        # Steady state: what one run can take before its deadline x the schedule's runs a day.
        "cron_runs": per_run_capacity * runs_per_day / due_per_user_day if due_per_user_day else math.inf,
        "webhook_max_instances": (
            WEBHOOK_MAX_INSTANCES * instance_rate / (peak_webhook / users / 3600) if peak_webhook else math.inf
        ),
    }
    for name, value in limits.items():
        out[f"{PREFIX}.users_at.{name}"] = float(int(value)) if math.isfinite(value) else -1.0
    first = min(limits, key=lambda k: limits[k])
    out[f"{PREFIX}.first_limit.{first}"] = 1.0
    out[f"{PREFIX}.users_per_project_default_quota"] = float(int(limits["calendar_project_per_minute"]))
    out[f"{PREFIX}.users_per_project_first_limit"] = float(int(limits[first]))
    out[f"{PREFIX}.peak_hour_calls_per_user_min"] = round(peak_calls / users / 60, 4)
    out[f"{PREFIX}.peak_hour_share_of_day_calls"] = round(peak_calls / (calls * users), 3) if calls else 0.0
    out[f"{PREFIX}.peak_hour_webhook_per_user_s"] = round(peak_webhook / users / 3600, 6)
    return out


def _last_instance_rate() -> float:
    """One webhook instance's sustained rate from the last bench_instance run (a selected run of this module alone),
    else the fallback."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / ".bench" / "results.json"
    if path.exists():
        return float(json.loads(path.read_text()).get("instance.webhook.notifications_per_s") or INSTANCE_RATE_FALLBACK)
    return INSTANCE_RATE_FALLBACK


def run(results: dict[str, float]) -> None:
    from tests.load.population import Population

    users = int(os.environ.get("CAPACITY_USERS", 200))
    started = time.perf_counter()
    population = Population(users)
    try:
        results[f"{PREFIX}.setup_s"] = round(time.perf_counter() - started, 1)
        settings = population.ctx.settings
        lifetime_days = (
            settings.channel_ttl_seconds - min(settings.renew_before_seconds, settings.channel_ttl_seconds / 2)
        ) / 86_400
        day = population.run_day()
        renewal = population.run_renewal_window()
    finally:
        population.stop()
    instance_rate = results.get("instance.webhook.notifications_per_s") or _last_instance_rate()
    results[f"{PREFIX}.instance_rate_used"] = instance_rate
    results.update(model(day, renewal, users, lifetime_days, instance_rate))
    results[f"{PREFIX}.users"] = float(users)
    results[f"{PREFIX}.actions"] = float(sum((x.cron or {}).get("actions", 0) for x in day))
    results[f"{PREFIX}.renewed"] = float((renewal.cron or {}).get("renewed", 0))
    results[f"{PREFIX}.wall_s"] = round(time.perf_counter() - started, 1)


if __name__ == "__main__":
    import json

    figures: dict[str, float] = {}
    run(figures)
    print(json.dumps(figures, indent=2))
