"""In-process estimates by name: kvcalc.estimate(model name, gpu name, ...) in a loop, as a script calls it.

Each run times N estimates of llama-3-8b on the h100-sxm (vLLM profile, the default engine), cycling batch and
context so that nothing can be answered from a cache of results; parsed spec files are cached by design. Reports
min and median over runs. Run: python benchmarks/estimate_throughput.py [--runs 7] [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def one_run(n: int) -> float:
    import kvcalc

    start = time.perf_counter()
    for i in range(n):
        kvcalc.estimate("llama-3-8b", "h100-sxm", batch=1 + i % 64, context=512 * (1 + i % 16))
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    import kvcalc

    kvcalc.estimate("llama-3-8b", "h100-sxm")  # first call parses the spec files
    per = [one_run(args.n) for _ in range(args.runs)]
    best, median = min(per), statistics.median(per)
    print(f"python {sys.version.split()[0]}, {args.runs} runs of {args.n} estimates")
    print(f"per estimate: min {best * 1e6:.0f} us, median {median * 1e6:.0f} us")
    print(f"estimates/s:  best {1 / best:,.0f}, median {1 / median:,.0f}")


if __name__ == "__main__":
    main()
