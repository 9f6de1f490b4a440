"""A small version of the load run inside `make test`: 3 users x 2 calendars, a few seconds of sustained Google and
CRM changes with 5% of Google calls failing, against `make run`'s stack started in-process; zero divergence."""

from __future__ import annotations

from typing import Any

from tests.load.loadrun import run


def test_load_smoke_converges(firestore_emulator: Any) -> None:
    report = run(users=3, calendars=2, seconds=6, rate=8, workers=4, fault_rate=0.05)
    assert report["changes"] >= 20, report
    assert report["divergences"] == 0, report["divergence_samples"]
    assert not [k for k in report["errors"] if k.startswith("driver:")], report["errors"]
    assert report["notification_to_crm_ms"]["measured"] > 0, report
    assert report["google_calls_per_change"] < 10, report
