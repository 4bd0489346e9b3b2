"""Configurations evaluated per second by kvcalc plan on one core (target: 10,000 in at most 1 s).

The question from the planning issue: DeepSeek-V3 on H200s or B200s, 2,000 in / 500 out at 100 requests/s, TTFT
under 2 s and TPOT under 50 ms, every engine with a profile, converted formats and disaggregation included. A
configuration is one deployment (GPU, engine, formats, layout) at one batch budget, or one deployment pruned by
memory. Spec loading is excluded by a warm-up call; min and median over runs. Run on one core:
taskset -c 0 python benchmarks/plan_speed.py [runs]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from kvcalc.planning.plan import plan  # noqa: E402

QUESTION = dict(input_len=2000, output_len=500, request_rate=100, max_ttft_ms=2000, max_tpot_ms=50,
                price_per_gpu_hour={"h200": 3.5, "b200": 5.0})


def main(runs: int = 3) -> None:
    plan("deepseek-v3", ["h200", "b200"], **QUESTION, engines=["vllm"], disaggregated=False)  # warm-up
    times, configurations = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        result = plan("deepseek-v3", ["h200", "b200"], **QUESTION)
        times.append(time.perf_counter() - t)
        configurations = result["searched"]["configurations"]
    best, median = min(times), statistics.median(times)
    print(f"{configurations:,} configurations, {runs} runs: min {best:.2f} s ({configurations / best:,.0f}/s), "
          f"median {median:.2f} s ({configurations / median:,.0f}/s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
