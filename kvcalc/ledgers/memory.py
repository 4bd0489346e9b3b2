"""kvcalc's vLLM memory rule against vLLM's own start-up logs (validation/engine-memory/vllm.csv).

Each row is one public log with the settings it ran under. kvcalc predicts every figure from the model spec alone
(weights as loaded, profiling peak, non-torch memory: kvcalc/formulas/engine_memory.py); only the device's visible
memory comes from the log, as it does for vLLM. Errors are (predicted - logged) / logged on the KV token count where
the log prints one (else the available KV memory) and on the maximum concurrency. Rows marked `fit` set a constant
of the rule and are reported apart; `held-out` rows set nothing. `model_runner` is the runner the log shows (v0: the
V0 worker; v1: GPUModelRunner; v2: Model Runner V2), which sets how the sampler is profiled, and an optional
`sampler` column says "flashinfer" where the log says "Using FlashInfer for top-p & top-k sampling", and an optional
`ep` column the expert-parallel size of a run with --enable-expert-parallel (tp x dp GPUs; empty: 1); `vllm` starts
with the release, which sets whether NCCL's start-up buffers count.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from kvcalc.engines.memory import check_vllm_version, vllm_memory
from kvcalc.errors import KvcalcError
from kvcalc.estimator import check_dtypes, precision
from kvcalc.formulas import engine_memory as em
from kvcalc.specs.catalog import load_gpu, load_model
from kvcalc.specs.files import read_csv_ledger

GiB = 1024**3
COLUMNS = ("source", "vllm", "model", "gpu", "visible_GiB", "tp", "pp", "gpu_memory_utilization", "max_model_len",
           "max_num_batched_tokens", "max_num_seqs", "weight_dtype", "kv_dtype", "logged_available_GiB",
           "logged_kv_tokens", "logged_max_concurrency", "role", "model_runner")

NUMBERS = ("visible_GiB", "tp", "pp", "gpu_memory_utilization", "max_model_len", "max_num_batched_tokens",
           "max_num_seqs")
LOGGED = ("logged_available_GiB", "logged_kv_tokens", "logged_max_concurrency", "ep")  # empty where not logged


def read_rows(path: Path) -> list[dict]:
    return read_csv_ledger(path, "a vLLM memory ledger CSV", COLUMNS, numbers=NUMBERS, optional_numbers=LOGGED)


def predict(row: dict) -> dict:
    """kvcalc's figures for one logged start-up, by the rule `capacity --engine vllm` uses (planning.vllm_memory)
    with the device total the log printed."""
    spec, hw = load_model(row["model"]), load_gpu(row["gpu"])
    tp, pp, ep = int(row["tp"]), int(row["pp"]), int(row.get("ep") or 1)
    t, r, length = int(row["max_num_batched_tokens"]), int(row["max_num_seqs"]), int(row["max_model_len"])
    visible, utilization = float(row["visible_GiB"]), float(row["gpu_memory_utilization"])
    runner, sampler = row["model_runner"], (row.get("sampler") or "").strip()
    if (min(tp, pp, ep, t, r, length) < 1 or not (0 < visible < 1e6 and 0 < utilization <= 1)
            or runner not in em.MODEL_RUNNERS or sampler not in ("", "flashinfer")):
        raise ValueError("counts must be >= 1, visible_GiB positive, gpu_memory_utilization in (0, 1], "
                         "model_runner v0, v1 or v2 and sampler empty or flashinfer")
    check_dtypes(row["weight_dtype"], row["kv_dtype"])
    version = check_vllm_version((row["vllm"].split() or [""])[0], "vllm")
    e = vllm_memory(spec, hw.model_copy(update={"visible_memory_GiB": visible}),
                    precision(row["weight_dtype"], row["kv_dtype"]), tp, context=length, memory_utilization=utilization,
                    max_num_batched_tokens=t, max_num_seqs=r, pp=pp, ep=ep, runner=runner, version=version,
                    flashinfer_sampler=sampler == "flashinfer")
    return {
        "weights_GiB": e["weights_bytes_per_gpu"] / GiB, "profile_peak_GiB": e["profile_peak_bytes"] / GiB,
        "non_torch_GiB": e["non_torch_bytes"] / GiB, "available_GiB": e["available_kv_bytes"] / GiB,
        "kv_tokens": e["kv_tokens"], "max_concurrency": e["max_concurrency"],
    }


def _error(predicted: float, logged: str) -> float | None:
    if not logged or float(logged) == 0:
        return None
    return (predicted - float(logged)) / float(logged) * 100


def score(rows: list[dict]) -> list[dict]:
    """One result per row: kvcalc's figures and the error on each logged figure [%]."""
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            p = predict(row)
        except KvcalcError as e:
            raise KvcalcError(f"--engine-memory: row {n} ({row.get('source')}): {e}") from None
        except (ValueError, TypeError, ZeroDivisionError) as e:
            raise KvcalcError(f"--engine-memory: row {n} ({row.get('source')}): expected numbers in visible_GiB, tp, "
                              f"pp, ep, gpu_memory_utilization, max_model_len, max_num_batched_tokens and max_num_seqs; "
                              f"v0, v1 or v2 in model_runner; empty or flashinfer in sampler "
                              f"({str(e).splitlines()[0]})") from None
        errors = {
            "kv_tokens_error_pct": _error(p["kv_tokens"], row["logged_kv_tokens"]),
            "available_error_pct": _error(p["available_GiB"], row["logged_available_GiB"]),
            "max_concurrency_error_pct": _error(p["max_concurrency"], row["logged_max_concurrency"]),
        }
        headline = errors["kv_tokens_error_pct"]
        if headline is None:
            headline = errors["available_error_pct"]
        out.append({**row, **p, **errors, "error_pct": headline})
    return out


def summary(results: list[dict]) -> list[dict]:
    """Median and worst |error| of the KV pool (tokens, else GiB), held-out rows and fit rows apart."""
    out = []
    for role in ("held-out", "fit"):
        errors = [abs(r["error_pct"]) for r in results if r["role"] == role and r["error_pct"] is not None]
        if errors:
            out.append({"rows": role, "n": len(errors), "median_abs_error_pct": round(statistics.median(errors), 1),
                        "worst_abs_error_pct": round(max(errors), 1)})
    return out
