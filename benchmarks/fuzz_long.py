"""The long fuzz mode (kvcalc issue 23, item 4): run tests/test_fuzz_long.py under `--hypothesis-profile=long` with
fresh random seeds for a given number of minutes, and write a summary of what it found.

    nice -n 10 python benchmarks/fuzz_long.py --minutes 60 --out fuzz-summary.md

Each round runs one property test (in turn) in a pytest subprocess with a new `--hypothesis-seed` and
KVCALC_FUZZ_EXAMPLES examples (tests/conftest.py's `long` profile reads it), so that the time is shared across the
tests and a slow test cannot eat the hour. The summary lists, per test, the rounds and examples run and every distinct
failure (test and first line of its message) with the seed and the command that replays it. The fixed-seed suite
(tests/test_fuzz.py, and tests/test_fuzz_long.py under the default profile) stays in CI; this is for whoever wants an
hour of it. Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_fuzz_long.py"


def collect(select: str | None) -> list[str]:
    # -n 0: one process, whatever pyproject's addopts ask of pytest-xdist (a round is one test)
    cmd = [sys.executable, "-m", "pytest", TESTS, "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider"]
    if select:
        cmd += ["-k", select]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def run_round(node: str, seed: int, examples: int, seconds: float) -> dict:
    """One pytest run of one test; its outcome, the failure's message and the time it took."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", node, "--hypothesis-profile=long", f"--hypothesis-seed={seed}", "-q",
               "-n", "0", "-p", "no:cacheprovider", f"--junitxml={xml}", f"--basetemp={tmp}/t"]
        calls = Path(tmp) / "calls"  # tests/test_fuzz_long.py writes a byte per kvcalc call into it
        env = {**os.environ, "KVCALC_FUZZ_EXAMPLES": str(examples), "KVCALC_FUZZ_CALLS": str(calls)}

        def counted() -> int:
            return calls.stat().st_size if calls.exists() else 0

        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=max(seconds, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and any kvcalc subprocess it started
            output, _ = proc.communicate()
            return {"node": node, "seed": seed, "outcome": "cut off", "seconds": time.monotonic() - start,
                    "calls": counted()}
        result = {"node": node, "seed": seed, "outcome": "passed", "seconds": time.monotonic() - start,
                  "calls": counted()}
        if not xml.exists():
            return {**result, "outcome": "error", "message": output.strip().splitlines()[-1:] or ["no output"]}
        for case in ET.parse(xml).getroot().iter("testcase"):
            for tag in ("failure", "error"):
                bad = case.find(tag)
                if bad is not None:
                    text = (bad.get("message") or bad.text or "").strip()
                    result.update(outcome="failed", message=text.splitlines()[:12])
            if case.find("skipped") is not None and result["outcome"] == "passed":
                result["outcome"] = "skipped"
        if result["outcome"] == "failed":
            result["output_tail"] = output[-4000:]
        return result


def summary_markdown(args, rounds: list[dict], elapsed: float) -> str:
    title = (f"# kvcalc long fuzz: {elapsed / 60:.1f} minutes, {len(rounds)} rounds, "
             f"{args.examples} examples a round (hypothesis profile `long`), "
             f"{sum(r.get('calls', 0) for r in rounds):,} kvcalc calls, seed of the seeds {args.seed}")
    lines = [title, ""]
    lines += ["| test | rounds | passed | failed | cut off | kvcalc calls | seconds |", "|---|---|---|---|---|---|---|"]
    for node in sorted({r["node"] for r in rounds}):
        mine = [r for r in rounds if r["node"] == node]
        count = {o: sum(r["outcome"] == o for r in mine) for o in ("passed", "failed", "error", "cut off")}
        lines.append(f"| {node.split('::')[-1]} | {len(mine)} | {count['passed']} | {count['failed'] + count['error']} | "
                     f"{count['cut off']} | {sum(r.get('calls', 0) for r in mine):,} | "
                     f"{sum(r['seconds'] for r in mine):.0f} |")
    failures: dict[tuple, dict] = {}
    for r in rounds:
        if r["outcome"] in ("failed", "error"):
            key = (r["node"], (r.get("message") or [""])[0][:160])
            failures.setdefault(key, r)
    lines += ["", f"## Distinct failures: {len(failures)}", ""]
    for (node, first), r in failures.items():
        replay = (f"replay: `python -m pytest '{node}' --hypothesis-profile=long --hypothesis-seed={r['seed']}` "
                  f"(KVCALC_FUZZ_EXAMPLES={args.examples})")
        lines += [f"### {node.split('::')[-1]}", "", replay, "", "```", *(r.get("message") or []), "```", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock time to fuzz for")
    parser.add_argument("--examples", type=int, default=60, help="hypothesis examples per round (one test, one seed)")
    parser.add_argument("-k", dest="select", help="pytest -k expression: fuzz only these tests")
    parser.add_argument("--out", type=Path, default=Path("fuzz-long-summary.md"), help="summary (markdown; .json beside)")
    parser.add_argument("--seed", type=int, help="seed of the seeds (default: random)")
    args = parser.parse_args()
    nodes = collect(args.select)
    if not nodes:
        print(f"no tests collected from {TESTS}", file=sys.stderr)
        return 2
    if args.seed is None:  # drawn here, so that the summary can name it and the run can be replayed
        args.seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    start, rounds, i = time.monotonic(), [], 0
    while time.monotonic() < deadline - 5:
        node = nodes[i % len(nodes)]
        i += 1
        r = run_round(node, rng.randrange(2**32), args.examples, deadline - time.monotonic())
        rounds.append(r)
        print(f"[{(time.monotonic() - start) / 60:5.1f} min] {r['outcome']:8} {node.split('::')[-1]} seed {r['seed']}, "
              f"{r.get('calls', 0)} calls"
              + (f": {r['message'][0][:150]}" if r.get("message") else ""), flush=True)
        args.out.write_text(summary_markdown(args, rounds, time.monotonic() - start))
        args.out.with_suffix(".json").write_text(json.dumps(rounds, indent=1))
    print(f"summary: {args.out}")
    return 1 if any(r["outcome"] in ("failed", "error") for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
