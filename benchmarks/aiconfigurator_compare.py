"""kvcalc plan beside NVIDIA's aiconfigurator on shared cases: the aggregated configuration each picks under the same
lengths, limits and GPU count, and its predicted output tokens/s per GPU.

aiconfigurator is an optional, separate install (never imported by kvcalc): pass its command, e.g.
    python -m venv /tmp/aic && /tmp/aic/bin/pip install aiconfigurator==0.12.0
    python benchmarks/aiconfigurator_compare.py /tmp/aic/bin/aiconfigurator > comparison.md
Without it, only kvcalc's column is printed. aiconfigurator writes agg/best_config_topn.csv under --save-dir; its
first row is its choice (the most tokens/s per GPU within the limits).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kvcalc.planning.plan import plan

# (kvcalc model, Hugging Face id, kvcalc GPU, aiconfigurator system, GPUs, engine)
CASES = [
    ("qwen3-32b", "Qwen/Qwen3-32B", "h100-sxm", "h100_sxm", 8, "vllm"),
    ("qwen3-32b", "Qwen/Qwen3-32B", "h200", "h200_sxm", 8, "vllm"),
    ("llama-3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "h100-sxm", "h100_sxm", 8, "vllm"),
    ("llama-3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "h200", "h200_sxm", 8, "sglang"),
    ("deepseek-v3", "deepseek-ai/DeepSeek-V3", "h200", "h200_sxm", 16, "sglang"),
    ("deepseek-v3", "deepseek-ai/DeepSeek-V3", "b200", "b200_sxm", 16, "trtllm"),
]
ISL, OSL, TTFT_MS, TPOT_MS = 2000, 500, 2000, 50


def kvcalc_choice(model, gpu, gpus, engine) -> dict:
    t = time.perf_counter()
    r = plan(model, [gpu], input_len=ISL, output_len=OSL, gpu_budget=gpus, max_ttft_ms=TTFT_MS,
             max_tpot_ms=TPOT_MS, engines=[engine], disaggregated=False, convert=False)
    c = r["choice"]
    seconds = time.perf_counter() - t
    if c is None:
        return {"config": "none within the limits", "tok_s_gpu": None, "seconds": seconds}
    layout = c["layout"] + f" x{c['replicas']}, {c['max_num_seqs']} in flight per replica"
    return {"config": layout, "tok_s_gpu": c["replica_output_tokens_per_s_per_gpu"], "seconds": seconds}


def aiconfigurator_choice(command, hf_id, system, gpus, engine) -> dict:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        run = subprocess.run([command, "cli", "default", "--model-path", hf_id, "--total-gpus", str(gpus),
                              "--system", system, "--backend", engine, "--isl", str(ISL), "--osl", str(OSL),
                              "--ttft", str(TTFT_MS), "--tpot", str(TPOT_MS), "--serving-mode", "agg",
                              "--save-dir", out, "--log-level", "ERROR"], capture_output=True, text=True)
        seconds = time.perf_counter() - t
        found = sorted(Path(out).rglob("agg/best_config_topn.csv"))
        if run.returncode or not found:
            return {"config": f"failed ({(run.stderr or run.stdout).strip().splitlines()[-1][:80]})",
                    "tok_s_gpu": None, "seconds": seconds}
        row = next(csv.DictReader(found[0].open()))
        return {"config": f"{row['parallel']}, batch {row['bs']}", "tok_s_gpu": float(row["tokens/s/gpu"]),
                "seconds": seconds}


def main(command: str | None) -> None:
    print(f"{ISL:,} in / {OSL:,} out, TTFT <= {TTFT_MS:,} ms, TPOT <= {TPOT_MS} ms, aggregated serving\n")
    print("| model | GPUs | engine | kvcalc choice | kvcalc tok/s/GPU | aiconfigurator choice | aiconfigurator "
          "tok/s/GPU | seconds (kvcalc / aiconfigurator) |")
    print("|---|---|---|---|---|---|---|---|")
    for model, hf_id, gpu, system, gpus, engine in CASES:
        k = kvcalc_choice(model, gpu, gpus, engine)
        a = (aiconfigurator_choice(command, hf_id, system, gpus, engine) if command else
             {"config": "not run", "tok_s_gpu": None, "seconds": None})

        def num(v):
            return f"{v:,.0f}" if v is not None else "-"
        a_s = f"{a['seconds']:.1f}" if a["seconds"] is not None else "-"
        print(f"| {model} | {gpus} x {gpu} | {engine} | {k['config']} | {num(k['tok_s_gpu'])} | {a['config']} | "
              f"{num(a['tok_s_gpu'])} | {k['seconds']:.1f} / {a_s} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
