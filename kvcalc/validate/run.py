"""kvcalc validate: measure each case with PyTorch, set it beside its prediction, append the row at once."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Callable

from kvcalc.catalog import load_gpu, load_model
from kvcalc.errors import KvcalcError
from kvcalc.estimator import phase_metrics, precision
from kvcalc.formulas.roofline import step_time
from kvcalc.validate.cases import Case, cases

COLUMNS = [
    "case", "variant", "batch", "context", "dtype", "device", "predicted_ms", "predicted_speed_of_light_ms",
    "measured_ms", "measured_graph_ms", "error_pct", "bound", "arithmetic_intensity", "flops", "bytes",
    "achieved_GBps", "achieved_tflops",
]


def import_torch():
    try:
        import torch
    except ImportError:
        raise KvcalcError("validate and calibrate need PyTorch: pip install 'kvcalc[validate]'") from None
    return torch


def resolve_device(torch, device: str | None):
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cuda", "cpu"):
        raise KvcalcError(f"--device: expected cuda or cpu, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise KvcalcError("--device: cuda requested but torch sees no CUDA device")
    return torch.device(name)


def free_bytes(torch, device) -> float:
    if device.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf


def open_csv(path: Path):
    """Append to `path` (header written when new); an existing file with other columns is refused, not overwritten."""
    try:
        return _open_csv(path)
    except OSError as e:
        raise KvcalcError(f"--out: cannot write {path} ({e.strerror})") from None


def _open_csv(path: Path):
    if path.exists() and not path.is_file():
        raise KvcalcError(f"--out: {path} is not a regular file")
    if path.exists() and path.stat().st_size:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != COLUMNS:
            raise KvcalcError(f"--out: {path} exists with other columns; choose another file")
        f = path.open("a", newline="")
        return f, csv.DictWriter(f, COLUMNS)
    f = path.open("w", newline="")
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    f.flush()
    return f, writer


def predict(case: Case, hw, dtype: str) -> dict:
    m = phase_metrics(step_time(case.ops, hw, dtype, speed_of_light=False),
                      step_time(case.ops, hw, dtype, speed_of_light=True), 1, hw, dtype)
    return {"predicted_ms": m["ms"], "predicted_speed_of_light_ms": m["speed_of_light_ms"], "bound": str(m["bound"]),
            "arithmetic_intensity": m["arithmetic_intensity"], "flops": m["flops"], "bytes": m["bytes"]}


def measure_case(torch, case: Case, device, dtype, repeats: int):
    from kvcalc.validate import timing

    fn = case.build(torch, device, dtype)
    with torch.inference_mode():
        return timing.measure(fn, device, warmup=2 if device.type == "cpu" else 5, repeats=repeats)


def validate(gpu, *, model="llama-3-8b", device: str | None = None, quick: bool = False,
             out: Path = Path("validation.csv"), on_row: Callable[[dict], None] | None = None) -> dict:
    """Measure every case; returns {'rows': [...], 'skipped': [...], 'summary': {...}}. Rows reach `out` one by one."""
    torch = import_torch()
    dev = resolve_device(torch, device)
    hw, spec = load_gpu(gpu), load_model(model)
    dtype_name = "bf16" if dev.type == "cuda" else "fp32"  # CPUs lack fast bf16 matmuls; fp32 is what they run
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    p = precision(dtype_name, dtype_name)
    hw.peak_flops(dtype_name)  # a spec without this dtype's peak is a clear error before anything is measured
    rows, skipped = [], []
    f, writer = open_csv(out)
    try:
        for case in cases(spec, p, quick=quick):
            label = f"{case.kind} {case.variant} b{case.batch} s{case.context}"
            if case.tensor_bytes > 0.8 * free_bytes(torch, dev):
                skipped.append(f"{label}: needs {case.tensor_bytes / 2**30:.1f} GiB")
                continue
            try:
                t = measure_case(torch, case, dev, dtype, repeats=5 if quick else 20)
            except torch.OutOfMemoryError:
                skipped.append(f"{label}: out of memory")
                torch.cuda.empty_cache()
                continue
            pred = predict(case, hw, dtype_name)
            row = {"case": case.kind, "variant": case.variant, "batch": case.batch, "context": case.context,
                   "dtype": dtype_name, "device": dev.type, **pred, "measured_ms": t.ms, "measured_graph_ms": t.graph_ms,
                   "error_pct": (pred["predicted_ms"] - t.ms) / t.ms * 100,
                   "achieved_GBps": pred["bytes"] / t.ms / 1e6, "achieved_tflops": pred["flops"] / t.ms / 1e9}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            if on_row:
                on_row(row)
    finally:
        f.close()
    return {"rows": rows, "skipped": skipped, "summary": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    """Median and worst |error| per kind of case, and over the memory-bound decode cases."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["case"], []).append(abs(r["error_pct"]))
        if r["bound"] == "memory" and r["case"] != "layer-prefill":
            groups.setdefault("memory-bound decode", []).append(abs(r["error_pct"]))
    return {k: {"n": len(v), "median_abs_error_pct": statistics.median(v), "worst_abs_error_pct": max(v)}
            for k, v in groups.items()}
