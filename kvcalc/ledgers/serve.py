"""kvcalc serve against published continuous-batching throughput (validation/serve/*.csv).

Each row is one cell of TensorRT-LLM's performance overview: trtllm-bench's offline maximum-throughput run (every
request queued at once, uniform input and output lengths) of a ModelOpt FP8 or FP4 checkpoint on tp x pp GPUs
(an optional pp column, 1 when absent), printed as total output tokens/s. kvcalc runs the same workload at the most
requests the KV pool holds at full length (serve(concurrency="max")), or at the most trtllm-bench lets in flight
where that is fewer (pp x its max_batch_size: formulas/engine_memory.py, trtllm_bench_settings), with TensorRT-LLM's
measured kernel profile for the GPU and the row's weight and KV formats, and compares output tokens/s per GPU.
Nothing in serve was fitted to these rows: every one is held out.

A benchmark ledger (a `concurrency` column) holds closed-loop runs instead (`vllm bench serve --max-concurrency C
--ignore-eos` with fixed lengths): each row one run, with the engine, its memory fraction and the median TTFT, median
TPOT and output tokens/s it printed. kvcalc runs serve at that concurrency with arrivals in waves, as such a run's
requests start and finish together, and scores each of the three figures.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from kvcalc.errors import KvcalcError
from kvcalc.estimator import precision
from kvcalc.formulas import engine_memory as em
from kvcalc.serving.closed_form import serve
from kvcalc.specs.catalog import load_gpu, load_model
from kvcalc.specs.files import read_csv_ledger

COLUMNS = ("id", "model", "gpu", "tp", "weight_dtype", "kv_dtype", "input_len", "output_len",
           "total_output_tokens_per_s", "source")

NUMBERS = ("tp", "input_len", "output_len", "total_output_tokens_per_s")


def read_rows(path: Path) -> list[dict]:
    return read_csv_ledger(path, "a serve ledger CSV", COLUMNS, numbers=NUMBERS, optional_numbers=("pp",),
                           positive=NUMBERS)


def score(rows: list[dict], engine: str = "trtllm") -> list[dict]:
    """kvcalc's output tokens/s per GPU for each row and the error against the published figure [%]."""
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            tp, pp = int(row["tp"]), int(row.get("pp") or 1)
            measured = float(row["total_output_tokens_per_s"]) / (tp * pp)
            run = dict(input_len=int(row["input_len"]), output_len=int(row["output_len"]), tp=tp, pp=pp,
                       weight_dtype=row["weight_dtype"], kv_dtype=row["kv_dtype"], engine=engine)
            s = serve(row["model"], row["gpu"], concurrency="max", **run)
            in_flight = pp * bench_batch(row["model"], row["gpu"], **run)
            if s["concurrency"] > in_flight:
                s = serve(row["model"], row["gpu"], concurrency=in_flight, **run)
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


def bench_batch(model: str, gpu: str, *, input_len: int, output_len: int, tp: int, pp: int, weight_dtype: str,
                kv_dtype: str, **_) -> int:
    """The max_batch_size trtllm-bench sets for each micro-batch of the run, from the GPU's visible memory (NVML's
    total, which it reads, is within 1 % of it)."""
    spec, hw = load_model(model), load_gpu(gpu)
    b_kv = precision(weight_dtype, kv_dtype).b_kv
    return em.trtllm_bench_settings(spec, hw.visible_memory_bytes / em.GiB, weight_dtype, b_kv, tp, pp, input_len,
                                    output_len)[0]


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


BENCH_COLUMNS = ("id", "model", "gpu", "tp", "pp", "engine", "weight_dtype", "kv_dtype", "memory_utilization",
                 "input_len", "output_len", "concurrency", "output_tokens_per_s", "median_tpot_ms", "median_ttft_ms",
                 "source")
BENCH_METRICS = {"output_tokens_per_s": "output_tokens_per_s", "median_tpot_ms": "tpot_ms", "median_ttft_ms": "ttft_ms"}
BENCH_NUMBERS = ("tp", "pp", "memory_utilization", "input_len", "output_len", "concurrency", *BENCH_METRICS)


def read_bench_rows(path: Path) -> list[dict]:
    return read_csv_ledger(path, "a serve benchmark ledger CSV", BENCH_COLUMNS, numbers=BENCH_NUMBERS,
                           positive=BENCH_NUMBERS)


def is_bench(path: Path) -> bool:
    """Whether a serve ledger CSV holds closed-loop benchmark runs (it has a concurrency column)."""
    from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file

    head = read_regular_file(path, "a serve ledger CSV", MAX_TABLE_BYTES).split(b"\n", 1)[0]
    return b"concurrency" in head.split(b",")


def score_bench(rows: list[dict], engine: str | None = None) -> list[dict]:
    """kvcalc serve's figures for each benchmark run, one result per run and metric, with the error [%]. engine:
    the time model (None: each row's engine, whose memory rule and measured kernels serve then uses). An optional
    vllm_version column gives the release the run used, whose memory rule vLLM rows then follow."""
    out = []
    for n, row in enumerate(rows, start=2):
        run_engine = engine or row["engine"]
        release = (row.get("vllm_version") or "latest") if run_engine == "vllm" else "latest"
        try:
            s = serve(row["model"], row["gpu"], input_len=int(row["input_len"]), output_len=int(row["output_len"]),
                      concurrency=float(row["concurrency"]), tp=int(row["tp"]), pp=int(row["pp"]),
                      weight_dtype=row["weight_dtype"], kv_dtype=row["kv_dtype"], engine=run_engine,
                      memory_utilization=float(row["memory_utilization"]), arrivals="waves", vllm_version=release)
            for column, key in BENCH_METRICS.items():
                measured = float(row[column])
                if s[key] is None and measured:  # the sixth audit: one output token has no TPOT (a TypeError here)
                    raise KvcalcError(f"{column}: measured {measured:g}, but a run of {row['output_len']} output "
                                      f"token has no {column.replace('median_', '').split('_')[0].upper()} to score "
                                      "against it")
                out.append({"id": row["id"], "model": row["model"], "gpu": row["gpu"], "tp": int(row["tp"]),
                            "pp": int(row["pp"]), "concurrency": int(float(row["concurrency"])), "metric": column,
                            "measured": measured, "predicted": s[key],
                            "error_pct": (s[key] - measured) / measured * 100 if measured and s[key] is not None
                            else None})
        except KvcalcError as e:
            raise KvcalcError(f"--serve: row {n} ({row.get('id')}): {e}") from None
        except (ValueError, ZeroDivisionError) as e:
            raise KvcalcError(f"--serve: row {n} ({row.get('id')}): expected numbers in tp, pp, memory_utilization, "
                              f"input_len, output_len, concurrency and the three measured figures "
                              f"({str(e).splitlines()[0]})") from None
    return out


def summary_bench(results: list[dict]) -> list[dict]:
    """Median and worst |error| per metric."""
    rows = []
    for metric in BENCH_METRICS:
        errors = [abs(r["error_pct"]) for r in results if r["metric"] == metric and r["error_pct"] is not None]
        if errors:
            rows.append({"rows": metric, "n": len(errors), "median_abs_error_pct": round(statistics.median(errors), 1),
                         "worst_abs_error_pct": round(max(errors), 1), "within_10_pct": sum(e <= 10 for e in errors)})
    return rows
