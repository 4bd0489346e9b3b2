"""Measured validate rows scored again against another spec or engine profile, without measuring (and without torch).

A validate CSV keeps what was measured (the time as launched and as a CUDA graph replay) beside the prediction of
the spec it ran with. Each row names its case (kind, variant, batch, context, dtype), so the same case, and with it
the operators the formulas count, can be rebuilt from the model spec (its FLOPs must match the row's, which catches
rows measured at another model's widths) and timed by any spec or engine profile:
measure once on a GPU, then ask how the datasheet roofline, a calibrated spec and each engine's measured kernels fare.
"""

from __future__ import annotations

import math
from pathlib import Path

from kvcalc.errors import KvcalcError
from kvcalc.estimator import precision
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.specs.files import read_csv_ledger
from kvcalc.validate.cases import case_named
from kvcalc.validate.run import COLUMNS, predict, reference_ms

MAX_COUNT = 2**31  # sequences or tokens: far past any GPU's memory, still exact in a float


def read_measured(path: str | Path) -> list[dict]:
    return read_csv_ledger(Path(path), "a validate CSV", tuple(COLUMNS))


def _number(row: dict, key: str, path_hint: str) -> float | None:
    text = row[key]
    if text == "" and key == "measured_graph_ms":  # no graph replay (the CPU)
        return None
    try:
        value = float(text)
    except ValueError:
        raise KvcalcError(f"{path_hint}: column {key}: expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise KvcalcError(f"{path_hint}: column {key}: expected a positive number, got {text!r}")
    return value


def rescore(rows: list[dict], gpu, model, engine: str = "roofline", source: str = "the CSV") -> list[dict]:
    """Each measured row with the prediction of `gpu` (a spec) under `engine` (roofline or an engine profile) for the
    case it names, and the error against the time that prediction means (run.reference_ms)."""
    hw, spec = load_gpu(gpu), load_model(model)
    profile = resolve_engine(engine, hw)
    out = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{source} line {i}"
        dtype = row["dtype"]
        if dtype not in ("bf16", "fp32"):
            raise KvcalcError(f"{where}: column dtype: expected bf16 or fp32, got {dtype!r}")
        try:
            batch, context = int(row["batch"]), int(row["context"])
        except ValueError:
            raise KvcalcError(f"{where}: batch and context must be integers") from None
        if not (1 <= batch <= MAX_COUNT and 0 <= context <= MAX_COUNT):
            raise KvcalcError(f"{where}: expected 1 <= batch and 0 <= context, each at most {MAX_COUNT}")
        case = case_named(spec, row["case"], row["variant"], batch, context, precision(dtype, dtype))
        if case is None:
            raise KvcalcError(f"{where}: {spec.name} has no {row['case']} case {row['variant']!r}: was it measured "
                              "at another model's widths? (--model)")
        pred = predict(case, hw, dtype, profile)
        if not math.isclose(pred["flops"], _number(row, "flops", where), rel_tol=1e-6):
            raise KvcalcError(f"{where}: this {row['case']} case does {pred['flops']:.6g} FLOPs at {spec.name}'s "
                              f"widths, the row {row['flops']}: was it measured at another model's widths? (--model)")
        eager, graph = _number(row, "measured_ms", where), _number(row, "measured_graph_ms", where)
        ms = reference_ms(hw, eager, graph, profile)
        out.append({"case": row["case"], "variant": row["variant"], "batch": batch, "context": context, "dtype": dtype,
                    "bound": row["bound"], "measured_ms": ms, "predicted_ms": pred["predicted_ms"],
                    "error_pct": (pred["predicted_ms"] - ms) / ms * 100})
    return out
