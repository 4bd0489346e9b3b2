"""kvcalc web's speed: time from `kvcalc web` starting to its first 200 response (target <= 1 s), and each page's
response time over HTTP (target <= 300 ms), min and median over runs.

    python benchmarks/web_speed.py [--starts 5] [--runs 7]

Each start is a fresh process (`python -m kvcalc web --port P`): the server imports FastAPI, numpy and the library the
pages call (kvcalc/web/app.py serve) and builds no command's options until a page asks (the first 200, /estimate's
empty form, builds estimate's). The pages are then timed on one server, the first request of each page (cold: that
page's options built, its spec and profile files parsed, nothing of its result computed before) reported apart from
the warm ones (for plan, served from kvcalc/web/views.py's cache of recent URLs). Prints a Markdown table; exit code
1 when a first request or a median misses its target.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

PAGES = {
    "estimate": "/estimate?model=llama-3-8b&batch=8&context=8192",
    "compare": "/compare?model=llama-3-8b",
    "roofline": "/roofline?model=llama-3-8b&batch=1,8,64,256",
    "capacity": "/capacity?model=llama-3-8b&context=8192",
    "serve": "/serve?model=llama-3-8b&input_len=1000&output_len=200&concurrency=1,8,32,128",
    "plan": "/plan?model=llama-3-8b&input_len=1000&output_len=200&request_rate=5&max_tpot_ms=50",
    "api/estimate": "/api/estimate?model=llama-3-8b",
}
START_TARGET_S, PAGE_TARGET_MS = 1.0, 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
            return r.status
    except OSError:
        return 0


def start(port: int) -> tuple[subprocess.Popen, float]:
    """A fresh `kvcalc web` and the seconds from its launch to the first 200 response."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kvcalc", "web", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while get(f"http://127.0.0.1:{port}/estimate") != 200:
        if proc.poll() is not None or time.perf_counter() - t0 > 30:
            proc.kill()
            raise SystemExit(f"kvcalc web did not answer (exit code {proc.poll()})")
        time.sleep(0.01)
    return proc, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    starts = []
    for _ in range(args.starts):
        proc, seconds = start(free_port())
        starts.append(seconds)
        proc.terminate()
        proc.wait()
    port = free_port()
    proc, _ = start(port)
    rows, ok = [], True
    try:
        for name, path in PAGES.items():
            times = []
            for _ in range(args.runs + 1):
                t0 = time.perf_counter()
                assert get(f"http://127.0.0.1:{port}{path}") == 200, path
                times.append((time.perf_counter() - t0) * 1e3)
            cold, warm = times[0], times[1:]
            median = statistics.median(warm)
            ok &= median <= PAGE_TARGET_MS and cold <= PAGE_TARGET_MS
            rows.append(f"| {name} | {cold:,.1f} | {'yes' if cold <= PAGE_TARGET_MS else 'NO'} | {min(warm):,.1f} | "
                        f"{median:,.1f} | {'yes' if median <= PAGE_TARGET_MS else 'NO'} |")
    finally:
        proc.terminate()
        proc.wait()
    start_median = statistics.median(starts)
    ok &= start_median <= START_TARGET_S
    print(f"start to first 200: min {min(starts):.3f} s, median {start_median:.3f} s over {len(starts)} starts "
          f"(target <= {START_TARGET_S:g} s: {'yes' if start_median <= START_TARGET_S else 'NO'})\n")
    print(f"| page | first request ms | <= {PAGE_TARGET_MS:g} ms | min ms | median ms (of {args.runs} more) | "
          f"<= {PAGE_TARGET_MS:g} ms |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
