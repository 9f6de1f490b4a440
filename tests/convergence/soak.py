"""`make soak`: the convergence state machine's long profile, split over parallel workers.

One example costs about half a CPU-second of Python plus the emulator's share, and a worker waits on HTTP and gRPC
much of the time, so several workers against one shared emulator run the 20,000 examples in a fraction of the time
one would. Each worker is a pytest run of `test_soak_converges` with its own stand-in, served webhook and Firestore
projects, and its own random seed; it writes `.bench/soak-<round>-<n>.json` as it goes. The runner merges them into
`.bench/soak.json`: examples run, divergences found (with the first few), rule counts, workers, seconds.

    python -m tests.convergence.soak [--examples 20000] [--workers N] [--round-examples 4000]

The examples run in rounds, each against a fresh emulator. The emulator keeps something of every project it has seen
even after the machine deletes the project's documents (about 400 KB an example): one emulator, at its default heap
of a quarter of the machine's memory, ran 16,000 examples at 2 to 3 a second and then, its heap full, 2 a minute.

An interrupted run (Ctrl-C, SIGTERM) still writes the merged report, marked `"complete": false`. Exit status: 0 only
when every worker finished, the examples reached the target and no divergence was found.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / ".bench"
STOP_GRACE_SECONDS = 15.0


ROUND_EXAMPLES = 4_000


def _worker_report(round_index: int, index: int) -> Path:
    return OUT_DIR / f"soak-{round_index}-{index}.json"


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` shares that differ by at most one (the larger first)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the workers' reports: counts add up, the first divergences are kept."""
    rules: dict[str, int] = {}
    first: list[str] = []
    for report in reports:
        for name, count in report.get("rules", {}).items():
            rules[name] = rules.get(name, 0) + count
        first.extend(report.get("first_divergences", []))
    return {
        "examples": sum(r.get("examples", 0) for r in reports),
        "divergences": sum(r.get("divergences", 0) for r in reports),
        "first_divergences": first[:5],
        "rules": dict(sorted(rules.items(), key=lambda kv: -kv[1])),
    }


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=int(os.environ.get("SOAK_EXAMPLES", 20_000)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("SOAK_WORKERS", 2 * (os.cpu_count() or 1))))
    parser.add_argument(
        "--round-examples", type=int, default=int(os.environ.get("SOAK_ROUND_EXAMPLES", ROUND_EXAMPLES))
    )
    args = parser.parse_args(argv)
    workers = max(1, min(args.workers, args.examples))
    rounds = split(args.examples, max(1, -(-args.examples // max(1, args.round_examples))))

    OUT_DIR.mkdir(exist_ok=True)
    for stale in OUT_DIR.glob("soak-*.json"):
        stale.unlink()
    started = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    interrupted_at: float | None = None
    codes: list[int] = []
    reports: list[Path] = []
    rounds_run = 0

    def stop(signum: int, _frame: object) -> None:
        nonlocal interrupted_at
        interrupted_at = interrupted_at or time.monotonic()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous_int = signal.signal(signal.SIGINT, stop)
    previous_term = signal.signal(signal.SIGTERM, stop)
    try:
        for round_index, round_examples in enumerate(rounds):
            if interrupted_at is not None:
                break
            round_workers = max(1, min(workers, round_examples))
            processes = []
            round_codes, round_reports = _run_round(
                round_index, split(round_examples, round_workers), processes, lambda: interrupted_at
            )
            rounds_run += 1
            codes.extend(round_codes)
            reports.extend(round_reports)
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)

    report = merge([_read(path) for path in reports])
    complete = interrupted_at is None and report["examples"] >= args.examples
    report.update(
        target=args.examples,
        workers=workers,
        rounds=rounds_run,
        complete=complete,
        seconds=round(time.monotonic() - started, 1),
        worker_exit_codes=codes,
    )
    (OUT_DIR / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("examples", "divergences", "target", "workers", "complete", "seconds")}))
    return 0 if complete and report["divergences"] == 0 and not any(codes) else 1


def _run_round(
    round_index: int,
    shares: list[int],
    processes: list[subprocess.Popen[bytes]],
    interrupted_at: Any,
) -> tuple[list[int], list[Path]]:
    """One round: a fresh emulator (unless FIRESTORE_EMULATOR_HOST names one to share), one worker per share, wait.
    `processes` is filled as workers start, so the caller's signal handler can stop them."""
    from infra.firestore_emulator import existing_or_new

    emulator = existing_or_new(log_path=str(OUT_DIR / "firestore-emulator-soak.log"))
    reports = [_worker_report(round_index, index) for index in range(len(shares))]
    try:
        for index, share in enumerate(shares):
            env = dict(
                os.environ,
                SOAK="1",
                SOAK_EXAMPLES=str(share),
                SOAK_REPORT=str(reports[index]),
                FIRESTORE_EMULATOR_HOST=emulator.host,
            )
            log = open(OUT_DIR / f"soak-{round_index}-{index}.log", "wb")  # noqa: SIM115 - the child keeps its own
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-m",
                        "soak",
                        "-p",
                        "no:cacheprovider",
                        "-q",
                        "tests/convergence/test_state_machine.py",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        # A worker interrupted inside a gRPC call can be left waiting on a broken channel: after a grace period it is
        # killed. Its report was written after its last finished example, so only the example in flight is lost.
        while any(process.poll() is None for process in processes):
            stopped_at = interrupted_at()
            if stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_SECONDS:
                for process in processes:
                    if process.poll() is None:
                        process.kill()
            time.sleep(0.5)
        return [process.wait() for process in processes], reports
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
