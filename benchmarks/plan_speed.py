"""Configurations evaluated per second by kvcalc plan on one core (target: 10,000 in at most 1 s).

The question from the planning issue: DeepSeek-V3 on H200s or B200s, 2,000 in / 500 out at 100 requests/s, TTFT
under 2 s and TPOT under 50 ms, every engine with a profile, converted formats and disaggregation included. A
configuration is one deployment (GPU, engine, formats, layout, speculation) at one batch budget, or one deployment
pruned by memory; the question runs without and with MTP speculation (which doubles the deployments). Spec loading is excluded by a warm-up call; min and median over runs. Run on one core:
taskset -c 0 python benchmarks/plan_speed.py [runs]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from kvcalc.planning.plan import plan

QUESTION = dict(input_len=2000, output_len=500, request_rate=100, max_ttft_ms=2000, max_tpot_ms=50,
                price_per_gpu_hour={"h200": 3.5, "b200": 5.0})


def main(runs: int = 3) -> None:
    plan("deepseek-v3", ["h200", "b200"], **QUESTION, engines=["vllm"], disaggregated=False)  # warm-up
    for speculate in (False, True):  # without, then with DeepSeek-V3's MTP speculation as a search dimension
        times, cpu, configurations = [], [], 0
        for _ in range(runs):
            t, c = time.perf_counter(), time.process_time()
            result = plan("deepseek-v3", ["h200", "b200"], **QUESTION, speculate=speculate)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)  # CPU seconds: what a shared machine's other load does not inflate
            configurations = result["searched"]["configurations"]
        best, median = min(times), statistics.median(times)
        print(f"speculate={speculate}: {configurations:,} configurations, {runs} runs: min {best:.2f} s "
              f"({configurations / best:,.0f}/s), median {median:.2f} s ({configurations / median:,.0f}/s); "
              f"CPU min {min(cpu):.2f} s, median {statistics.median(cpu):.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
