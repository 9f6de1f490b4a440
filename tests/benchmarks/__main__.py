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


def _markdown(results: dict[str, float]) -> str:
    lines = ["| figure | value | naive baseline |", "|---|---:|---:|"]
    for name in sorted(results):
        if ".naive_" in name or name.endswith(".naive"):
            continue
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
    report = dict(sorted(results.items()))
    (OUT_DIR / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    table = _markdown(report)
    (OUT_DIR / "results.md").write_text(table + "\n")
    if not argv:
        _update_readme(table)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    if failures:
        sys.stderr.write(f"benchmarks failed: {', '.join(failures)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
