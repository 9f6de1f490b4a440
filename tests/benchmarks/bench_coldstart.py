"""Cold start: import time of each entry point's code path against the import time of the libraries it needs.

For every entry point in main.py, a fresh interpreter imports `main` and the entry point's adapter module (what the
first request costs); other fresh interpreters import only the third-party and standard-library modules (every one,
in the same order) that the same path loaded. ratio = entry / libraries; the target is ≤ 1.10 (our own code adds
under 10%). Pydantic models defer building their validators to first use, so importing our models is cheap.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = ("main", "functions", "shared", "infra", "tests")
RUNS = 9

_DISCOVER = """
import sys, json
before = set(sys.modules)
import main, {module}
own = {own!r}
mods = [m for m in sys.modules if m not in before and m.split('.')[0] not in own]
print(json.dumps(mods))
"""
_TIME_ENTRY = "import time; t=time.perf_counter(); import main, {module}; print(time.perf_counter()-t)"
_TIME_LIBS = (
    "import time, importlib; mods={mods!r}; t=time.perf_counter()\n"
    "for m in mods:\n    try:\n        importlib.import_module(m)\n    except Exception:\n        pass\n"
    "print(time.perf_counter()-t)"
)


def adapters() -> dict[str, str]:
    """{entry point: adapter module} from the `from functions.x import ...` inside each entry point of main.py."""
    found: dict[str, str] = {}
    for node in ast.parse((ROOT / "main.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("functions."):
                    found[node.name] = inner.module
    return found


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip().splitlines()[-1]


def measure(module: str) -> tuple[float, float]:
    """Best of RUNS fresh interpreters each, entry and libraries alternating so machine load hits both alike
    (the minimum, as timeit reports, is the least noisy estimate of an import's own cost)."""
    mods = json.loads(_run(_DISCOVER.format(module=module, own=OWN)))
    entry_times: list[float] = []
    lib_times: list[float] = []
    for _ in range(RUNS):
        entry_times.append(float(_run(_TIME_ENTRY.format(module=module))))
        lib_times.append(float(_run(_TIME_LIBS.format(mods=mods))))
    return min(entry_times), min(lib_times)


def run(results: dict[str, float]) -> None:
    for entry_point, module in sorted(adapters().items()):
        entry, libs = measure(module)
        results[f"coldstart.{entry_point}.import_ms"] = round(entry * 1000, 1)
        results[f"coldstart.{entry_point}.naive_import_ms"] = round(libs * 1000, 1)
        results[f"coldstart.{entry_point}.ratio"] = round(entry / libs, 3) if libs else 0.0
