"""Cold start: import cost of each entry point's code path against the import cost of the libraries it needs.

For every entry point in main.py, a fresh interpreter imports `main` and the entry point's adapter module (what the
runtime loads before the first request reaches the handler; the engine modules a handler needs are imported inside
it, on first use); another fresh interpreter imports only the third-party and standard-library modules (every one, in
the same order) that the same path loaded. ratio = entry / libraries; the target is ≤ 1.10 (our own code adds under
10%). Entry points that share an adapter (the three oauth_*, the three sync_*) share one measurement.

The ratio counts instructions (valgrind's callgrind), less those of an interpreter that imports nothing: the same
number on every run and whatever else the machine is doing, where import wall times on a shared 2-core machine
wander by ±15%. `import_ms` / `naive_import_ms` are wall times (best of WALL_RUNS) for scale.

Like for like: the libraries load from the bytecode pip compiled at install, so our code is measured from a copy of
the deployed files (main.py, functions/, shared/) byte-compiled the way the Cloud Functions Python buildpack compiles
dependencies (`compileall --invalidation-mode unchecked-hash`). `source_ratio` is the same path compiled from source
on import (what an instance pays when the app's own files carry no bytecode).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = ("main", "functions", "shared", "infra", "tests")
WALL_RUNS = 5

_DISCOVER = """
import sys, json
before = set(sys.modules)
import main, {module}
own = {own!r}
mods = [m for m in sys.modules if m not in before and m.split('.')[0] not in own]
print(json.dumps(mods))
"""
_ENTRY = "import main, {module}"
_LIBS = (
    "import importlib\nfor m in {mods!r}:\n    try:\n        importlib.import_module(m)\n    except Exception:\n"
    "        pass"
)
_NOTHING = "import importlib"
_WALL = "import time; t=time.perf_counter()\n{code}\nprint(time.perf_counter()-t)"
_COLLECTED = re.compile(r"Collected : (\d+)")


def adapters() -> dict[str, str]:
    """{entry point: adapter module} from the `from functions.x import ...` inside each entry point of main.py."""
    found: dict[str, str] = {}
    for node in ast.parse((ROOT / "main.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("functions."):
                    found[node.name] = inner.module
    return found


def deployed_copy(target: Path, *, compiled: bool) -> Path:
    """The files the deploy archive holds (terraform/source.tf), optionally byte-compiled as the buildpack would."""
    shutil.copy2(ROOT / "main.py", target / "main.py")
    for package in ("functions", "shared"):
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if compiled:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-qq", "--invalidation-mode", "unchecked-hash", str(target)],
            check=True,
            timeout=120,
        )
    return target


def _env() -> dict[str, str]:
    # Never write bytecode: the source copy must stay source, and the compiled copy already has its own.
    return dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")


def _run(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=_env(), capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip().splitlines()[-1]


def instructions(code: str, cwd: Path) -> int:
    """Instructions a fresh interpreter executes for `code` (callgrind: deterministic, load-independent)."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("the cold-start benchmark counts instructions with valgrind; install valgrind")
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found = _COLLECTED.search(result.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no instruction count: {result.stderr[-500:]}")
    return int(found.group(1))


def measure(
    module: str, mods: list[str], bundle: Path, pool: ThreadPoolExecutor, *, wall_runs: int
) -> dict[str, float]:
    """Instruction counts (entry, libraries, an empty interpreter) and best-of `wall_runs` wall times for one adapter;
    `mods` are the libraries its path loads (the same whether our files are compiled or not)."""
    entry_code, libs_code = _ENTRY.format(module=module), _LIBS.format(mods=mods)
    counts = pool.map(lambda code: instructions(code, bundle), [entry_code, libs_code, _NOTHING])
    entry, libs, nothing = counts
    entry_wall, libs_wall = [], []
    for _ in range(wall_runs):  # alternating, so machine load hits both alike
        entry_wall.append(float(_run(_WALL.format(code=entry_code), bundle)))
        libs_wall.append(float(_run(_WALL.format(code=libs_code), bundle)))
    return {
        "ratio": (entry - nothing) / (libs - nothing),
        "entry_instructions": entry - nothing,
        "libs_instructions": libs - nothing,
        "entry_s": min(entry_wall, default=0.0),
        "libs_s": min(libs_wall, default=0.0),
    }


def run(results: dict[str, float]) -> None:
    entry_points = adapters()
    with (
        tempfile.TemporaryDirectory() as compiled_dir,
        tempfile.TemporaryDirectory() as source_dir,
        ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool,
    ):
        compiled = deployed_copy(Path(compiled_dir), compiled=True)
        source = deployed_copy(Path(source_dir), compiled=False)
        for module in sorted(set(entry_points.values())):
            mods = json.loads(_run(_DISCOVER.format(module=module, own=OWN), compiled))
            figures = measure(module, mods, compiled, pool, wall_runs=WALL_RUNS)
            source_figures = measure(module, mods, source, pool, wall_runs=0)  # only its ratio is reported
            for entry_point in sorted(e for e, m in entry_points.items() if m == module):
                prefix = f"coldstart.{entry_point}"
                results[f"{prefix}.ratio"] = round(figures["ratio"], 3)
                results[f"{prefix}.source_ratio"] = round(source_figures["ratio"], 3)
                results[f"{prefix}.instructions_m"] = round(figures["entry_instructions"] / 1e6, 1)
                results[f"{prefix}.naive_instructions_m"] = round(figures["libs_instructions"] / 1e6, 1)
                results[f"{prefix}.import_ms"] = round(figures["entry_s"] * 1000, 1)
                results[f"{prefix}.naive_import_ms"] = round(figures["libs_s"] * 1000, 1)
