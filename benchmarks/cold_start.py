"""Cold start of `kvcalc estimate`: wall time of the installed console script, median of N fresh processes.

Also times the floors it cannot go below on this machine: the bare interpreter, and importing pydantic,
typer and rich (which every run needs). Issue 22's target: estimate in <= 2x that import floor, with bytecode
cached as on a user's machine: the processes run without PYTHONDONTWRITEBYTECODE (set on some CI and development
machines, where every module would be compiled from source on every run), so the warm-ups write kvcalc's
__pycache__. Run: python benchmarks/cold_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMAND = ["estimate", "--model", "chatglm2-6b", "--attn", "gqa8"]
TARGET_RATIO = 2.0
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def kvcalc_script() -> str:
    beside = Path(sys.executable).parent / "kvcalc"
    return str(beside) if beside.exists() else shutil.which("kvcalc")


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs + 2):  # two warm-ups fill the OS page cache
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t)
    return times[2:]


def heavy_modules_loaded() -> list[str]:
    probe = (
        "import sys, runpy; sys.argv = ['kvcalc', *%r]\n"
        "try:\n    runpy.run_module('kvcalc', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('HEAVY:' + ','.join(m for m in ('pandas', 'matplotlib', 'torch', 'numpy') if m in sys.modules))"
    ) % (COMMAND,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    rows = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import pydantic, typer, rich.console": [sys.executable, "-c", "import pydantic, typer, rich.console"],
        "kvcalc " + " ".join(COMMAND): [kvcalc_script(), *COMMAND],
    }
    print(f"{'command':48} {'median s':>9} {'min s':>7}   ({runs} runs, {sys.version.split()[0]})")
    medians = {}
    for label, argv in rows.items():
        t = wall_times(argv, runs)
        medians[label] = statistics.median(t)
        print(f"{label:48} {medians[label]:9.3f} {min(t):7.3f}")
    floor, run = medians["import pydantic, typer, rich.console"], medians["kvcalc " + " ".join(COMMAND)]
    print(f"estimate / import floor: {run / floor:.2f}x (target <= {TARGET_RATIO:g}x)")
    print("heavy modules imported by estimate:", heavy_modules_loaded() or "none")


if __name__ == "__main__":
    main()
