"""kvcalc serve against published continuous-batching throughput (validation/serve/*.csv).

Each row is one cell of TensorRT-LLM's performance overview: trtllm-bench's offline maximum-throughput run (every
request queued at once, uniform input and output lengths) of a ModelOpt FP8 or FP4 checkpoint on tp x pp GPUs
(an optional pp column, 1 when absent), printed as total output tokens/s. kvcalc runs the same workload at the most
requests the KV pool holds at full length (serve(concurrency="max")), with TensorRT-LLM's measured kernel profile
for the GPU and the row's weight and KV formats, and compares output tokens/s per GPU. Nothing in serve was fitted
to these rows: every one is held out.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from kvcalc.errors import KvcalcError
from kvcalc.files import read_csv_ledger
from kvcalc.serving import serve

COLUMNS = ("id", "model", "gpu", "tp", "weight_dtype", "kv_dtype", "input_len", "output_len",
           "total_output_tokens_per_s", "source")


def read_rows(path: Path) -> list[dict]:
    return read_csv_ledger(path, "a serve ledger CSV", COLUMNS)


def score(rows: list[dict], engine: str = "trtllm") -> list[dict]:
    """kvcalc's output tokens/s per GPU for each row and the error against the published figure [%]."""
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            tp, pp = int(row["tp"]), int(row.get("pp") or 1)
            measured = float(row["total_output_tokens_per_s"]) / (tp * pp)
            s = serve(row["model"], row["gpu"], input_len=int(row["input_len"]), output_len=int(row["output_len"]),
                      concurrency="max", tp=tp, pp=pp, weight_dtype=row["weight_dtype"], kv_dtype=row["kv_dtype"],
                      engine=engine)
        except KvcalcError as e:
            raise KvcalcError(f"--serve: row {n} ({row.get('id')}): {e}") from None
        except (ValueError, ZeroDivisionError) as e:
            raise KvcalcError(f"--serve: row {n} ({row.get('id')}): expected numbers in tp, input_len, output_len "
                              f"and total_output_tokens_per_s ({str(e).splitlines()[0]})") from None
        predicted = s["output_tokens_per_s_per_gpu"]
        out.append({"id": row["id"], "model": row["model"], "gpu": row["gpu"], "tp": tp, "pp": pp,
                    "input_len": int(row["input_len"]), "output_len": int(row["output_len"]),
                    "concurrency": round(s["concurrency"]), "measured": measured, "predicted": predicted,
                    "error_pct": (predicted - measured) / measured * 100 if measured else None})
    return out


def summary(results: list[dict]) -> list[dict]:
    """Median and worst |error| over all rows and per GPU x model."""
    groups = {"all": results}
    for r in results:
        layout = f"tp{r['tp']}" + (f" pp{r['pp']}" if r.get("pp", 1) > 1 else "")
        groups.setdefault(f"{r['model']} on {r['gpu']} {layout}", []).append(r)
    rows = []
    for name, group in groups.items():
        errors = [abs(r["error_pct"]) for r in group if r["error_pct"] is not None]
        if errors:
            rows.append({"rows": name, "n": len(errors), "median_abs_error_pct": round(statistics.median(errors), 1),
                         "worst_abs_error_pct": round(max(errors), 1),
                         "within_10_pct": sum(e <= 10 for e in errors)})
    return rows
