"""kvcalc validate: measure each case with PyTorch, set it beside its prediction, append the row at once."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Callable

from kvcalc.errors import KvcalcError
from kvcalc.estimator import phase_metrics, precision
from kvcalc.formulas.roofline import step_time
from kvcalc.specs.catalog import load_gpu, load_model
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


def predict(case: Case, hw, dtype: str, profile=None) -> dict:
    """The prediction for one case: the spec's roofline, or an engine profile's measured kernel curves."""
    m = phase_metrics(step_time(case.ops, hw, dtype, speed_of_light=False, profile=profile, kv_dtype=dtype),
                      step_time(case.ops, hw, dtype, speed_of_light=True), 1, hw, dtype)
    return {"predicted_ms": m["ms"], "predicted_speed_of_light_ms": m["speed_of_light_ms"], "bound": str(m["bound"]),
            "arithmetic_intensity": m["arithmetic_intensity"], "flops": m["flops"], "bytes": m["bytes"]}


def input_sets(torch, case: Case, device) -> int:
    """How many independent copies of a case's tensors to run in turn on CUDA: enough to fill twice the L2 (at most
    64), so that each call reads its weights and KV cache from device memory, as it does inside a model's step where
    the other layers' traffic has evicted them (an H200's L2 holds a whole 4096 x 4096 bf16 weight). Run back to
    back, the calls also time the kernels as a step queues them, not one launch's round trip from an idle GPU."""
    if device.type != "cuda":
        return 1
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 2**26
    return max(1, min(64, math.ceil(2 * l2 / max(case.tensor_bytes, 1))))


def measure_case(torch, case: Case, device, dtype, repeats: int):
    """The median time of one call [ms], as launched and as a CUDA graph replay."""
    from kvcalc.validate import timing

    fns: list = []
    try:  # building the copies can run out of memory too: what was built is released all the same
        fns += [case.build(torch, device, dtype) for _ in range(input_sets(torch, case, device))]
        with torch.inference_mode():
            t = timing.measure(lambda: [fn() for fn in fns], device, warmup=2 if device.type == "cpu" else 5,
                               repeats=repeats)
        return timing.Timing(t.ms / len(fns), None if t.graph_ms is None else t.graph_ms / len(fns))
    finally:
        fns.clear()
        if device.type == "cuda":  # free_bytes reads the driver's figure: give back what this case cached
            torch.cuda.empty_cache()


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
                continue
            except RuntimeError as e:  # a kernel this torch build lacks for the shape: the other cases still run
                skipped.append(f"{label}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
                continue
            pred = predict(case, hw, dtype_name)
            ms = reference_ms(hw, t.ms, t.graph_ms)
            row = {"case": case.kind, "variant": case.variant, "batch": case.batch, "context": case.context,
                   "dtype": dtype_name, "device": dev.type, **pred, "measured_ms": t.ms, "measured_graph_ms": t.graph_ms,
                   "error_pct": (pred["predicted_ms"] - ms) / ms * 100,
                   "achieved_GBps": pred["bytes"] / ms / 1e6, "achieved_tflops": pred["flops"] / ms / 1e9}
            writer.writerow(row)
            f.flush()
            rows.append(row)
            if on_row:
                on_row(row)
    finally:
        f.close()
    return {"rows": rows, "skipped": skipped, "summary": summarise(rows)}


def reference_ms(hw, eager_ms: float, graph_ms: float | None, profile=None) -> float:
    """The measured time a prediction is scored against. A spec with a measured launch overhead (calibrate's), timed
    by its roofline, predicts launches as PyTorch makes them one by one, so it meets the time as launched; every
    other prediction (an engine profile's included) is the GPU's time, as engines run a step in a CUDA graph, so it
    meets the graph replay where there is one."""
    return eager_ms if (hw.launch_overhead_us and profile is None) or graph_ms is None else graph_ms


# Cases whose MLA decode runs DeepSeek's reference form (two batched GEMMs that read the latent twice), not the fused
# kernel (FlashMLA) the formulas count: summarised apart, so they neither hide nor inflate the standard cases' error.
REFERENCE_MLA_CASES = ("attention", "layer-decode", "model-decode")


def summary_group(row: dict) -> str:
    mla = row["variant"] == "mla" and row["case"] in REFERENCE_MLA_CASES
    return f"{row['case']} (mla, reference form)" if mla else row["case"]


def summarise(rows: list[dict]) -> dict:
    """Median and worst |error| per kind of case (MLA's reference-form decode apart), and over the memory-bound
    decode cases of standard attention."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        group = summary_group(r)
        groups.setdefault(group, []).append(abs(r["error_pct"]))
        if r["bound"] == "memory" and r["case"] != "layer-prefill" and group == r["case"]:
            groups.setdefault("memory-bound decode", []).append(abs(r["error_pct"]))
    return {k: {"n": len(v), "median_abs_error_pct": statistics.median(v), "worst_abs_error_pct": max(v)}
            for k, v in groups.items()}
