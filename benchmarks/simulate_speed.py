"""How fast the request-level simulator runs (kvcalc/serving/simulate.py).

The issue's target: 10,000 requests of 1,024 in / 1,024 out in a closed loop at concurrency 256 in <= 1 s on one
core. Prints min / median over runs of (a) the schedule alone, the step-time grid built once (the grid depends only
on the deployment, so a sweep builds it once), and (b) the whole kvcalc.simulate() call, grid included. Also the
memory of a 100,000-request run (target <= 200 MB; peak RSS growth). Then `kvcalc plan`'s re-check of its finalists
at p99 (kvcalc/planning/plan.py verify_at_percentile: one 1,000-request simulation each; target <= 0.3 s a
finalist): plan at p99 less plan at p50 (the same search without the simulations), over the finalists simulated.
--cpu reads process CPU time instead of the wall clock (steadier on a shared machine).

    OMP_NUM_THREADS=1 python benchmarks/simulate_speed.py [--runs 5] [--cpu] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


from kvcalc.engines.scheduler import vllm_v1
from kvcalc.estimator import StepTimer, load_deployment
from kvcalc.serving.simulate import StepGrid, make_workload, simulate, simulate_schedule
from kvcalc.specs.catalog import resolve_engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--cpu", action="store_true", help="time with process CPU time, not the wall clock")
    ap.add_argument("--skip-memory", action="store_true", help="leave out the 100,000-request memory run")
    args = ap.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    spec, hw, wd, p = load_deployment("llama-3-8b", "h100-sxm", "auto", "bf16")
    stepper = StepTimer(spec, hw, p, 1, resolve_engine("vllm", hw), wd, "bf16")
    policy = vllm_v1()
    t0 = clock()
    grid = StepGrid(stepper, 256, 2048, policy.budget)
    grid_s = clock() - t0
    pool_tokens = 1e6  # enough for 256 x 2,048 tokens: no preemption, the scheduler's own cost
    sched, whole = [], []
    for _ in range(args.runs):
        work = make_workload("closed", args.requests, 1024, 1024, concurrency=256)
        t0 = clock()
        r = simulate_schedule(policy, grid, work, pool_tokens=pool_tokens)
        sched.append(clock() - t0)
        t0 = clock()
        simulate("llama-3-8b", "h100-sxm", input_len=1024, output_len=1024, concurrency=256,
                 num_prompts=args.requests, engine="vllm")
        whole.append(clock() - t0)
    print(f"grid: {grid.t.size + grid.corr.size} step times in {grid_s:.3f} s")
    print(f"schedule of {args.requests:,} requests (1,024 / 1,024, closed loop at 256; {r.steps:,} steps): "
          f"min {min(sched):.3f} s, median {statistics.median(sched):.3f} s")
    print(f"kvcalc.simulate(), grid and KV pool included (vLLM's pool preempts here): "
          f"min {min(whole):.3f} s, median {statistics.median(whole):.3f} s")
    plan_recheck(args.runs, clock)
    if args.skip_memory:
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    work = make_workload("poisson", 100_000, 128, 16, request_rate=100.0, range_ratio=0.5, seed=1)
    t0 = clock()
    simulate_schedule(policy, grid, work, pool_tokens=pool_tokens)
    run_s = clock() - t0
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e3  # kB on Linux
    print(f"100,000-request Poisson run (128 / 16 tokens, 100 requests/s; {run_s:.1f} s): peak RSS grew "
          f"{grew:.1f} MB "
          f"(arrays: {sum(a.nbytes for a in (work.arrival_s, work.input_len, work.output_len)) / 1e6:.1f} MB in)")


def plan_recheck(runs: int, clock=time.perf_counter) -> None:
    """kvcalc plan at p99 against p50: the difference is the finalists' request-level simulations."""
    import warnings

    from kvcalc.planning.plan import plan

    kw = {"input_len": 1000, "output_len": 200, "request_rate": 20.0, "max_ttft_ms": 2000.0, "max_tpot_ms": 60.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan("qwen3-32b", ["h100-sxm"], **kw)  # warm the spec and profile caches
        p50, p99 = [], []
        for _ in range(runs):
            t0 = clock()
            plan("qwen3-32b", ["h100-sxm"], percentile="p50", **kw)
            p50.append(clock() - t0)
            t0 = clock()
            r = plan("qwen3-32b", ["h100-sxm"], percentile="p99", **kw)
            p99.append(clock() - t0)
    n = sum(1 for p in (r["choice"], *r["runners_up"], *r["simulated_misses"]) if p and p.get("simulated"))
    each = (statistics.median(p99) - statistics.median(p50)) / max(n, 1)
    print(f"plan qwen3-32b on h100-sxm, 1,000 / 200 at 20 requests/s, TTFT <= 2 s, TPOT <= 60 ms: p50 min "
          f"{min(p50):.3f} s, median {statistics.median(p50):.3f} s; p99 min {min(p99):.3f} s, median "
          f"{statistics.median(p99):.3f} s; re-check {each:.3f} s a finalist ({n} simulated, medians)")


if __name__ == "__main__":
    main()
