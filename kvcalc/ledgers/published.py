"""kvcalc against published end-to-end measurements of real stacks (validation/published/measurements.csv).

Each row is a figure an engine's README, documentation or a benchmark page printed, with its setup. kvcalc predicts
it through the same evaluate() every command uses, with the row's engine profile and tensor-parallel degree:
    decode_tokens_per_s   1000 / decode step ms at the mean cached context (input + output / 2), one sequence
    tpot_ms               the decode step ms at the mean cached context
    ttft_ms               the prefill of input_len tokens
    throughput_out_tokens_per_s_per_gpu
                          a static batch: B * output / (prefill of B x input + (output - 1) decode steps) / GPUs
Rows marked `fit` fitted a profile and are reported apart from the `score` rows; `excluded: why` rows are kept
but not scored. No measurement may beat kvcalc's speed of light: one that does points at a wrong spec or formula.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from kvcalc.errors import KvcalcError
from kvcalc.estimator import check_tp, evaluate, phase_metrics
from kvcalc.formulas.workload import (
    mean_decode_context,
    output_tokens_per_s_per_gpu,
    static_batch_seconds,
)
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file
from kvcalc.specs.model import QuantizationSpec
from kvcalc.specs.profile import EngineProfile, FitRecord

COLUMNS = ["id", "engine", "engine_version", "gpu", "model", "weight_dtype", "kv_dtype", "tp", "metric", "batch",
           "input_len", "output_len", "measured", "use", "source"]
INTS = ("tp", "batch", "input_len", "output_len")
RATES = {"decode_tokens_per_s", "throughput_out_tokens_per_s_per_gpu"}  # higher is faster
METRICS = RATES | {"tpot_ms", "ttft_ms"}


def read_points(path: Path) -> list[dict]:
    """The rows, with numbers parsed; a malformed row is a one-line error naming the row and field."""
    raw = read_regular_file(path, "a CSV of published measurements", MAX_TABLE_BYTES)
    try:
        rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise KvcalcError(f"--published: cannot read {path} ({e})") from None
    if not rows or set(COLUMNS) - set(rows[0]):
        raise KvcalcError(f"--published: {path} needs the columns {', '.join(COLUMNS)}")
    points = []
    for row in rows:
        where = f"{path}: row {row.get('id') or len(points) + 1}"
        try:
            point = {**row, **{k: int(row[k]) for k in INTS}, "measured": float(row["measured"])}
        except (TypeError, ValueError):
            raise KvcalcError(f"{where}: {', '.join(INTS)} must be integers and measured a number") from None
        if point["metric"] not in METRICS:
            raise KvcalcError(f"{where}: metric {point['metric']!r}; expected one of {', '.join(sorted(METRICS))}")
        if not (point["use"] in ("fit", "score") or point["use"].startswith("excluded")):
            raise KvcalcError(f"{where}: use must be fit, score or 'excluded: reason'")
        points.append(point)
    return points


def predict(point: dict, profile: EngineProfile | None) -> tuple[float, float]:
    """(expected, speed of light) of the row's metric, in its unit."""
    spec, hw = load_model(point["model"]), load_gpu(point["gpu"])
    if point["engine"] == "gpt-fast" and point["weight_dtype"] in ("int8", "int4"):
        # gpt-fast's quantize.py replaces every nn.Linear, the output layer included, with its int8/int4 version
        spec = spec.model_copy(update={"quantization": QuantizationSpec(
            weight_format=point["weight_dtype"], lm_head=True, source="gpt-fast quantize.py: every nn.Linear")})
    b, p_len, o_len, tp = point["batch"], point["input_len"], point["output_len"], point["tp"]
    check_tp(tp, spec)
    context = 0 if point["metric"] == "ttft_ms" else mean_decode_context(p_len, o_len)
    ev = evaluate(spec, hw, batch=b, context=context, prompt=p_len, weight_dtype=point["weight_dtype"],
                  kv_dtype=point["kv_dtype"], tp=tp, profile=profile)
    w = point["weight_dtype"]
    dec = phase_metrics(ev.decode, ev.decode_sol, b, hw, w, ev.comm_s, ev.comm_sol_s)
    pre = phase_metrics(ev.prefill, ev.prefill_sol, b * p_len, hw, w, ev.prefill_comm_s, ev.prefill_comm_sol_s)
    out = []
    for key in ("ms", "speed_of_light_ms"):
        metric = point["metric"]
        if metric == "decode_tokens_per_s":
            out.append(1000 / dec[key])
        elif metric == "tpot_ms":
            out.append(dec[key])
        elif metric == "ttft_ms":
            out.append(pre[key])
        else:
            seconds = static_batch_seconds(pre[key] / 1000, dec[key] / 1000, o_len)
            out.append(output_tokens_per_s_per_gpu(b, o_len, seconds, tp))
    return out[0], out[1]


def profile_for(point: dict) -> EngineProfile | None:
    return resolve_engine(point["engine"], load_gpu(point["gpu"]))


def faster_than_light(point: dict, speed_of_light: float) -> bool:
    m = point["measured"]
    return m > speed_of_light * (1 + 1e-9) if point["metric"] in RATES else m < speed_of_light * (1 - 1e-9)


def score(points: list[dict], roofline: bool = False) -> list[dict]:
    """One result per row: predicted, speed of light, error % = (predicted - measured) / measured.
    roofline: every row on the datasheet-efficiency roofline instead of its engine's profile (the baseline)."""
    out = []
    for point in points:
        if point["use"].startswith("excluded"):
            out.append({**point, "predicted": None, "speed_of_light": None, "error_pct": None,
                        "faster_than_speed_of_light": None})
            continue
        profile = None if roofline else profile_for(point)
        predicted, sol = predict(point, profile)
        out.append({**point, "predicted": predicted, "speed_of_light": sol,
                    "error_pct": (predicted - point["measured"]) / point["measured"] * 100,
                    "faster_than_speed_of_light": faster_than_light(point, sol)})
    return out


def summary(results: list[dict]) -> list[dict]:
    """Median and worst |error| per engine and overall, for scored rows and for fitted rows apart."""
    rows = []
    for use in ("score", "fit"):
        scored = [r for r in results if r["use"] == use]
        groups = {"all engines": scored, **{e: [r for r in scored if r["engine"] == e]
                                            for e in sorted({r["engine"] for r in scored})}}
        for name, group in groups.items():
            if not group:
                continue
            errors = [abs(r["error_pct"]) for r in group]
            rows.append({"rows": use, "engine": name, "n": len(group),
                         "median_abs_error_pct": round(statistics.median(errors), 1),
                         "worst_abs_error_pct": round(max(errors), 1),
                         "faster_than_speed_of_light": sum(bool(r["faster_than_speed_of_light"]) for r in group)})
    return rows


def fit_gpt_fast(points: list[dict], base: EngineProfile, allreduce_from: EngineProfile) -> EngineProfile:
    """gpt-fast's profile from its published `fit` rows: the base engine's measured GEMM and attention curve shapes
    on the same GPU, with two parameters refitted (the GEMMs' fixed latency, and a factor on their memory
    efficiency: gpt-fast's compiled GEMV kernels and its power-limited A100), and the base's all-reduce curves."""
    from scipy.optimize import least_squares

    fit_rows = [p for p in points if p["engine"] == "gpt-fast" and p["use"] == "fit"]
    if not fit_rows:
        raise KvcalcError("--published: no gpt-fast rows marked fit")
    gemm = {k: base.gemm[k] for k in ("bf16", "int8_wo") if k in base.gemm}

    def build(x) -> EngineProfile:
        curves = {k: c.model_copy(update={"t0_us": float(x[0]), "fit": None,
                                          "memory_efficiency": min(1.0, c.memory_efficiency * float(x[1]))})
                  for k, c in gemm.items()}
        return base.model_copy(update={"gemm": curves, "allreduce": allreduce_from.allreduce})

    def residuals(x):
        import math

        profile = build(x)
        return [math.log(predict(p, profile)[0] / p["measured"]) * (1 if p["metric"] in RATES else -1) for p in fit_rows]

    x = least_squares(residuals, [3.0, 1.0], bounds=([0.0, 0.3], [50.0, 1.5])).x
    x = [float(f"{v:.4g}") for v in x]
    fitted = build(x)
    held = [p for p in points if p["engine"] == "gpt-fast" and p["use"] == "score"]
    fit_err = [abs(predict(p, fitted)[0] / p["measured"] - 1) * 100 for p in fit_rows]
    held_err = sorted(abs(predict(p, fitted)[0] / p["measured"] - 1) * 100 for p in held)
    record = FitRecord(
        table="validation/published/measurements.csv: gpt-fast decode tokens/s (fit on the rows marked fit, held out: "
              "the rows marked score)", kernels="gpt-fast's compiled GEMV/GEMM, on the base engine's curve shape",
        rows_fit=len(fit_rows), rows_held_out=len(held), fit_median_abs_error_pct=round(statistics.median(fit_err), 2),
        held_out_median_abs_error_pct=round(statistics.median(held_err), 2) if held else None,
        held_out_p90_abs_error_pct=round(held_err[int(0.9 * (len(held_err) - 1))], 2) if held else None,
    )
    fitted = fitted.model_copy(update={"gemm": {k: c.model_copy(update={"fit": record}) for k, c in fitted.gemm.items()}})
    return EngineProfile(
        gpu=base.gpu, engine="gpt-fast", engine_version="README benchmarks (PyTorch nightly, late 2023)",
        sources=["github.com/pytorch-labs/gpt-fast README.md: batch-1 tokens/s on an A100-80GB power-limited to "
                 "330 W (validation/published/measurements.csv, rows marked fit: " + ", ".join(p["id"] for p in fit_rows) + ")",
                 *base.sources],
        notes=(f"Fitted by `kvcalc profiles fit-published` on gpt-fast's {len(fit_rows)} single-GPU rows only: the "
               f"{base.engine} {base.engine_version} GEMM curves of this GPU with t0 refitted to {x[0]:g} us and their "
               f"memory efficiency scaled by {x[1]:g}; attention curves as {base.engine}'s; all-reduce curves are "
               f"{allreduce_from.engine} {allreduce_from.engine_version}'s (gpt-fast's intra-node all-reduce is "
               "not in the tables). Its multi-GPU rows were never fitted to and are scored as held out."),
        gemm=fitted.gemm, attention_decode=base.attention_decode, attention_prefill=base.attention_prefill,
        allreduce=allreduce_from.allreduce,
    )
