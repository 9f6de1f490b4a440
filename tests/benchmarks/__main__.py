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
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
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
    "push.edits1000.google_writes",
    "push.edits1000.google_calls_per_edit",
    "push.edits1000.echo_crm_writes",
    "push.edits1000.wall_s",
    "renew.cal10k_due300.firestore_reads",
    "renew.cal10k_due300.google_calls",
    "renew.cal10k_due300.renewed",
    "convergence.examples",
    "convergence.divergences",
    "load.throughput_changes_per_s",
    "load.p50_ms",
    "load.p95_ms",
    "load.google_calls_per_change",
    "load.divergences",
    "merge.base_bytes_per_event",
)


def _markdown(results: dict[str, float]) -> str:
    lines = ["| figure | value | naive baseline |", "|---|---:|---:|"]
    shown = [n for n in README_FIGURES if n in results] + sorted(n for n in results if n.endswith(".ratio"))
    for name in shown:
        prefix, _, leaf = name.rpartition(".")
        baseline = results.get(f"{prefix}.naive_{leaf}")
        lines.append(f"| `{name}` | {results[name]:g} | {'' if baseline is None else f'{baseline:g}'} |")
    return "\n".join(lines)


def _update_readme(table: str) -> None:
    if not README.exists():
        return
    text = README.read_text()
    if TABLE_START in text and TABLE_END in text:
        head, rest = text.split(TABLE_START, 1)
        _, tail = rest.split(TABLE_END, 1)
        README.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}")


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
    _update_readme(table)  # a selected run's table holds the last full run's other figures (see above)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    if failures:
        sys.stderr.write(f"benchmarks failed: {', '.join(failures)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
