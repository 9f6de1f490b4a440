"""A small capacity run inside `make test`: 4 users live one simulated day (hourly cron) and one renewal window
through the whole local stack; the counts the capacity model is built on must add up."""

from __future__ import annotations

import math
from typing import Any

from tests.benchmarks.bench_capacity import model
from tests.load.population import Population


def test_population_day_and_renewal_are_counted(firestore_emulator: Any) -> None:
    population = Population(4, seed=3)
    try:
        day = population.run_day(workers=4)
        renewal = population.run_renewal_window()
    finally:
        population.stop()

    assert len(day) == 24
    # The cron ran once per simulated hour, through the served function.
    assert [w.functions.get("renew", {}).get("invocations") for w in day] == [1] * 24
    # Every CRM write reached push_event through the trigger (edits of a missing event create one: still a write).
    crm_writes = sum(n for w in day for k, n in w.cron["actions_by_kind"].items() if k.startswith("crm_"))
    assert sum(w.functions.get("push_event", {}).get("invocations", 0) for w in day) >= crm_writes > 0
    # Google-side changes came back through the webhook and were pulled.
    google_changes = sum(n for w in day for k, n in w.cron["actions_by_kind"].items() if k.startswith("google_"))
    if google_changes:
        assert sum(w.functions.get("webhook", {}).get("invocations", 0) for w in day) > 0
        assert sum(w.google.get("calendar.events.list", 0) for w in day) > 0
    # The renewal window renews every calendar once: a new channel each, the old one stopped.
    assert renewal.cron["renewed"] == 4, renewal.cron
    assert renewal.google.get("calendar.events.watch", 0) >= 4
    assert renewal.google.get("calendar.channels.stop", 0) >= 4
    assert renewal.firestore.get("writes", 0) > 0

    figures = model(day, renewal, users=4, lifetime_days=6.0, instance_rate=10.0)
    assert figures["capacity.google_calls_per_user_day"] > 0
    assert figures["capacity.firestore_ops_per_user_day"] > 0
    assert figures["capacity.usd_per_1000_users_month"] > 0
    assert math.isfinite(figures["capacity.users_per_project_default_quota"])
    assert figures["capacity.users_per_project_first_limit"] <= figures["capacity.users_per_project_default_quota"]
    assert sum(1 for name in figures if name.startswith("capacity.first_limit.")) == 1
