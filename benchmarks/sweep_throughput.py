"""Scenario evaluations per second of kvcalc.sweep on one core (target: at least 1,000,000).

The grid: 4 models x 2 GPUs x 2 attention variants x 2 weight dtypes x 64 batches x 256 contexts
= 524,288 scenarios. Imports and spec loading are excluded by a warm-up call. Run with
OMP_NUM_THREADS=1 (numpy element-wise work is single-threaded anyway): python benchmarks/sweep_throughput.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from kvcalc.grid import sweep  # noqa: E402

AXES = dict(
    models=["llama-3-8b", "mixtral-8x7b", "deepseek-v2-lite", "gemma-2-9b"],
    gpus=["h100-sxm", "a100-sxm-80gb"],
    attn=[None, "mqa"],
    batch=list(range(1, 65)),
    context=list(range(256, 256 * 257, 256)),
    weight_dtype=["bf16", "fp8"],
)


def main(repeats: int = 3) -> None:
    sweep(**{**AXES, "batch": [1], "context": [256]})  # warm-up: imports, spec files
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        df = sweep(**AXES)
        best = min(best, time.perf_counter() - t)
    print(f"{len(df):,} scenarios in {best:.3f} s (best of {repeats}): {len(df) / best:,.0f} scenarios/s")


if __name__ == "__main__":
    main()
