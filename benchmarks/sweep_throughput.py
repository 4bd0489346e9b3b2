"""Scenario evaluations per second of kvcalc.sweep on one core (target: at least 2,000,000).

The grid: 4 models x 2 GPUs x 2 attention variants x 2 weight dtypes x 64 batches x 240 contexts
= 491,520 scenarios, under the 500,000 rows a sweep computes at most (kvcalc.grid.MAX_SWEEP_ROWS), with the
default engine (vLLM's measured kernel curves on both GPUs). Imports and spec
loading are excluded by a warm-up call; min and median over runs. Run on one core:
taskset -c 0 python benchmarks/sweep_throughput.py [runs]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from kvcalc.grid import sweep  # noqa: E402

AXES = dict(
    models=["llama-3-8b", "mixtral-8x7b", "deepseek-v2-lite", "gemma-2-9b"],
    gpus=["h100-sxm", "a100-sxm-80gb"],
    attn=[None, "mqa"],
    batch=list(range(1, 65)),
    # 240 contexts, not 256: kvcalc.sweep computes at most kvcalc.grid.MAX_SWEEP_ROWS (500,000) rows a call since
    # 8815717 (2026-12-07), and 256 made 524,288, which it refuses (the fortieth audit, readme 1)
    context=list(range(256, 256 * 241, 256)),
    weight_dtype=["bf16", "fp8"],
)


def main(runs: int = 5) -> None:
    sweep(**{**AXES, "batch": [1], "context": [256]})  # warm-up: imports, spec files
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        df = sweep(**AXES)
        times.append(time.perf_counter() - t)
    best, median = min(times), statistics.median(times)
    print(f"{len(df):,} scenarios, {runs} runs: min {best:.3f} s ({len(df) / best:,.0f} scenarios/s), "
          f"median {median:.3f} s ({len(df) / median:,.0f} scenarios/s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
