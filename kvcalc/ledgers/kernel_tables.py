"""Fit engine profiles to NVIDIA's measured kernel tables, and score them on rows held out of the fit.

The tables are the parquet files bundled in aiconfigurator-core (Apache-2.0), under
aiconfigurator_core/systems/data/<gpu>/<op>/<framework>/<version>/. This is the only module that reads them,
and only `kvcalc profiles fit` and `kvcalc profiles ledger` import it (pandas, pyarrow and scipy: the `profiles`
extra). The package itself is never imported: its folder is found with importlib's spec lookup.

Every row is costed by kvcalc's own formulas (formulas/forward.py), so that a fitted curve predicts exactly the
FLOPs and bytes that `estimate` later asks it about. Rows are split by shape (crc32 of the shape key): odd shapes
are held out of the fit and only scored, so the held-out error is error on shapes the fit never saw.
"""

from __future__ import annotations

import importlib.util
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kvcalc.engines.links import CUSTOM_ALLREDUCE_NEEDS_NVLINK_BEYOND_2, group_link_kind
from kvcalc.errors import KvcalcError
from kvcalc.formulas.forward import (
    Precision,
    attention_core_cost,
    linear_attention_ops,
    linear_cost,
    routed_experts_cost,
)
from kvcalc.formulas.kernel_time import (
    allreduce_curve_seconds,
    alltoall_curve_seconds,
    kernel_seconds,
)
from kvcalc.formulas.params import Linear
from kvcalc.specs.catalog import load_gpu
from kvcalc.specs.files import is_existing_path
from kvcalc.specs.model import ModelSpec
from kvcalc.specs.profile import AllReduceCurve, EngineProfile, FitRecord, KernelCurve

PACKAGE = "aiconfigurator-core 0.12.0"
# kvcalc's spec name -> the table folder of the same part
TABLE_GPUS = {"h100-sxm": "h100_sxm", "h200": "h200_sxm", "a100-sxm-80gb": "a100_sxm", "b200": "b200_sxm", "l40s": "l40s",
              "b300": "b300_sxm", "gb200": "gb200", "gb300": "gb300", "rtx-pro-6000": "rtx_pro_6000_server"}
TABLE_ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}
# table gemm_dtype -> (profile key, bytes per weight, the dtype whose peak the curve is fitted against; None: bf16)
GEMM_DTYPES = {
    "bfloat16": ("bf16", 2.0, None), "fp8": ("fp8", 1.0, "fp8"), "fp8_block": ("fp8_block", 1.0, "fp8"),
    "sq": ("w8a8", 1.0, "int8"), "int8_wo": ("int8_wo", 1.0, None), "int4_wo": ("int4_wo", 0.5 + 2 / 128, None),
    "nvfp4": ("nvfp4", 0.5 + 1 / 16, "fp4"),
}
KV_DTYPES = {"bfloat16": ("bf16", 2.0), "fp8": ("fp8", 1.0)}
B_ACT = 2.0  # activations are bf16 in every table

# Starting point and bounds of (t0_us, e_m, half_MB, e_c, half_GFLOP, a, p, per_item_ns); rows without work items
# (MoE modules) fit only the first seven.
X0 = [3.0, 0.85, 1.0, 0.8, 1.0, 1.0, 4.0, 1.0]
LO = [0.0, 0.01, 1e-4, 0.01, 1e-4, 0.3, 1.0, 0.0]
HI = [1e3, 1.0, 1e4, 1.0, 1e4, 1.0, 30.0, 1e5]  # a <= 1: time must not fall as a kernel grows


def tables_root(data: Path | None = None) -> Path:
    """The folder of measured tables: `data`, else the installed aiconfigurator-core's systems/data."""
    if importlib.util.find_spec("pyarrow") is None:  # the tables are Parquet files
        raise KvcalcError("profiles: reading the measured tables (Parquet) needs pyarrow: pip install 'kvcalc[profiles]'")
    if data is not None:
        if not is_existing_path(str(data)) or not data.is_dir():
            raise KvcalcError(f"--data: {data} is not a folder")
        if not any((data / folder).is_dir() for folder in TABLE_GPUS.values()):
            raise KvcalcError(f"--data: {data} holds none of {', '.join(TABLE_GPUS.values())}: expected "
                              "aiconfigurator_core/systems/data")
        return data
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise KvcalcError("profiles: the measured tables come with aiconfigurator-core: pip install 'kvcalc[profiles]', "
                          "or pass --data aiconfigurator_core/systems/data")
    return Path(list(spec.submodule_search_locations)[0]) / "systems" / "data"


def _version_key(v: str) -> tuple:
    """Sort 0.5.6.post2 < 0.5.14 < 1.3.0rc20 numerically, part by part."""
    import re

    return tuple(int(n) for n in re.findall(r"\d+", v))


def tables_newest_first(root: Path, gpu: str, op: str, engine: str, filename: str) -> list[Path]:
    """Every engine version's table of this op, the newest first."""
    base = root / TABLE_GPUS[gpu] / op / TABLE_ENGINES[engine]
    found = [p for p in base.glob(f"*/{filename}")] if base.is_dir() else []
    return sorted(found, key=lambda p: _version_key(p.parent.name), reverse=True)


def newest_table(root: Path, gpu: str, op: str, engine: str, filename: str) -> Path | None:
    """The newest engine version's table of this op, or None."""
    found = tables_newest_first(root, gpu, op, engine, filename)
    return found[0] if found else None


def held_out(keys) -> np.ndarray:
    """True for shapes held out of the fit: odd crc32 of the shape key (stable across runs and machines)."""
    return np.array([zlib.crc32(repr(k).encode()) % 2 == 1 for k in keys], dtype=bool)


@dataclass
class Rows:
    """Measured kernels costed by kvcalc's formulas: FLOPs, bytes, measured seconds, and the held-out mask."""

    flops: np.ndarray
    bytes: np.ndarray
    seconds: np.ndarray
    held_out: np.ndarray
    peak_dtype: str | None
    kernels: str
    items: np.ndarray | float = 0.0  # attention: (sequence, KV head) pairs per kernel


def _fastest(df, shape_cols: list[str]):
    """Where several kernels were measured for a shape, keep the fastest (what a tuned engine would pick)."""
    kernels = ", ".join(sorted(df["kernel_source"].unique())) if "kernel_source" in df else "the engine's kernel"
    return df.groupby(shape_cols, as_index=False)["latency"].min(), kernels


def gemm_rows(df, gemm_dtype: str) -> Rows:
    key, b_w, peak = GEMM_DTYPES[gemm_dtype]
    d, kernels = _fastest(df[df["gemm_dtype"] == gemm_dtype], ["m", "n", "k"])
    p = Precision(b_w=b_w, b_kv=2.0, b_a=B_ACT)
    costs = [linear_cost([Linear("gemm", int(k), int(n))], int(m), p) for m, n, k in zip(d["m"], d["n"], d["k"])]
    items = (d["m"] * d["k"]).to_numpy(float)  # input activation elements (fp8 per-tensor quantises each)
    return Rows(np.array([c.flops for c in costs], float), np.array([c.bytes for c in costs], float),
                d["latency"].to_numpy(float) * 1e-3, held_out(zip(d["n"], d["k"])), peak, kernels, items)


def table_model(attention: dict, hidden: int = 1, moe: dict | None = None) -> ModelSpec:
    """A one-layer model holding just what a measured row describes, so that kvcalc's formulas can cost it."""
    width = moe["expert_intermediate_size"] if moe else 1
    return ModelSpec.model_validate({
        "name": "table-row", "family": "table", "sources": ["measured table"], "num_layers": 1, "hidden_size": hidden,
        "vocab_size": 1, "attention": attention, "mlp": {"kind": "gated", "intermediate_size": width},
        **({"moe": moe} if moe else {}),
    })


def _attention_model(h: int, g: int, dh: int) -> ModelSpec:
    kind = "mha" if g == h else ("mqa" if g == 1 else "gqa")
    return table_model({"kind": kind, "num_heads": h, "num_kv_heads": g, "head_dim": dh}, hidden=h * dh)


def attention_rows(df, kv_dtype: str, decode: bool) -> Rows:
    """Decode rows: B sequences, one new token, `step` tokens cached. Prefill rows: B prompts of isl tokens."""
    df = df[(df["kv_cache_dtype"] == kv_dtype) & (df["num_heads"] % df["num_key_value_heads"] == 0)]
    if "window_size" not in df:
        df = df.assign(window_size=0)
    d, kernels = _fastest(df, ["batch_size", "isl", "step", "num_heads", "num_key_value_heads", "head_dim", "window_size"])
    p = Precision(b_w=2.0, b_kv=KV_DTYPES[kv_dtype][1], b_a=B_ACT)
    flops, bytes_ = [], []
    models: dict[tuple, ModelSpec] = {}
    for b, isl, step, h, g, dh, w in zip(d["batch_size"], d["isl"], d["step"], d["num_heads"], d["num_key_value_heads"],
                                         d["head_dim"], d["window_size"]):
        model = models.setdefault((h, g, dh), _attention_model(int(h), int(g), int(dh)))
        q, context = (1, int(step)) if decode else (int(isl), 0)
        c = attention_core_cost(model, int(b), q, context, int(w) or None, absorbed=decode, p=p)
        flops.append(c.flops)
        bytes_.append(c.bytes)
    keys = zip(d["num_heads"], d["num_key_value_heads"], d["head_dim"], d["batch_size"])
    items = (d["batch_size"] * d["num_key_value_heads"]).to_numpy(float)
    return Rows(np.array(flops, float), np.array(bytes_, float), d["latency"].to_numpy(float) * 1e-3, held_out(keys),
                None, kernels, items)


MOE_DTYPES = {**{k: v for k, v in GEMM_DTYPES.items() if k in ("bfloat16", "fp8", "fp8_block", "int4_wo")},
              # MXFP4 experts with bf16 activations (gpt-oss; the tables' kernel_source: vLLM's triton_kernels
              # matmul_ogs on Hopper, FlashInfer's TRT-LLM kernel on Blackwell, Marlin; SGLang's; TensorRT-LLM's)
              "w4a16_mxfp4": ("mxfp4", 0.5 + 1 / 32, None)}
MLA = {"kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}  # DeepSeek V2/V3


def _moe_model(hidden: int, inter: int, experts: int, top_k: int) -> ModelSpec:
    return table_model({"kind": "mqa", "num_heads": 1, "num_kv_heads": 1, "head_dim": 1}, hidden=hidden,
                       moe={"num_experts": experts, "top_k": top_k, "expert_intermediate_size": inter})


def moe_rows(df, moe_dtype: str) -> Rows:
    """One fused MoE layer of T tokens with balanced routing, no expert or tensor parallelism, costed as kvcalc's
    routed experts (the expected distinct experts' weights read once). Gated experts only: TensorRT-LLM's tables
    also time Nemotron's two-matrix experts (kernel_source moe_torch_flow_nongated), which kvcalc's gated expert
    would cost at 1.5x their bytes and FLOPs (the review of the thirty-seventh audit, 1: every MoE row "faster than
    the datasheet" on H100 and H200 was one of them)."""
    _, b_w, peak = MOE_DTYPES[moe_dtype]
    df = df[(df["moe_dtype"] == moe_dtype) & (df["moe_tp_size"] == 1) & (df["moe_ep_size"] == 1)
            & (df["distribution"] == "balanced")]
    if "kernel_source" in df:
        df = df[~df["kernel_source"].astype(str).str.endswith("_nongated")]
    d, kernels = _fastest(df, ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts"])
    p = Precision(b_w=b_w, b_kv=2.0, b_a=B_ACT)
    costs = [routed_experts_cost(_moe_model(int(h), int(f), int(e), int(k)), int(t), p)
             for t, h, f, k, e in zip(d["num_tokens"], d["hidden_size"], d["inter_size"], d["topk"], d["num_experts"])]
    keys = zip(d["hidden_size"], d["inter_size"], d["topk"], d["num_experts"])
    return Rows(np.array([c.flops for c in costs], float), np.array([c.bytes for c in costs], float),
                d["latency"].to_numpy(float) * 1e-3, held_out(keys), peak, kernels)


def mla_decode_rows(df, kv_dtype: str) -> Rows:
    """Absorbed MLA decode over DeepSeek's latent (d_c 512 + d_r 64) for `num_heads` query heads on one GPU."""
    df = df[(df["kv_cache_dtype"] == kv_dtype) & (df.get("mla_dtype", "bfloat16") == "bfloat16")]
    d, kernels = _fastest(df, ["batch_size", "step", "num_heads"])
    p = Precision(b_w=2.0, b_kv=KV_DTYPES[kv_dtype][1], b_a=B_ACT)
    flops, bytes_ = [], []
    for b, step, h in zip(d["batch_size"], d["step"], d["num_heads"]):
        model = table_model({"kind": "mla", "num_heads": int(h), **MLA})
        c = attention_core_cost(model, int(b), 1, int(step), None, absorbed=True, p=p)
        flops.append(c.flops)
        bytes_.append(c.bytes)
    return Rows(np.array(flops, float), np.array(bytes_, float), d["latency"].to_numpy(float) * 1e-3,
                held_out(zip(d["num_heads"], d["batch_size"])), None, kernels, d["batch_size"].to_numpy(float))


def mla_prefill_rows(df, kv_dtype: str) -> Rows:
    """MLA prefill, expanded per head (d_n + d_r query/key, d_v value), of B prompts of isl tokens for `num_heads`
    query heads on one GPU (the table's tp_size shards them)."""
    df = df[(df["kv_cache_dtype"] == kv_dtype) & (df.get("mla_dtype", "bfloat16") == "bfloat16") & (df["step"] == 0)]
    d, kernels = _fastest(df, ["batch_size", "isl", "num_heads"])
    p = Precision(b_w=2.0, b_kv=KV_DTYPES[kv_dtype][1], b_a=B_ACT)
    flops, bytes_ = [], []
    for b, isl, h in zip(d["batch_size"], d["isl"], d["num_heads"]):
        model = table_model({"kind": "mla", "num_heads": int(h), **MLA})
        c = attention_core_cost(model, int(b), int(isl), 0, None, absorbed=False, p=p)
        flops.append(c.flops)
        bytes_.append(c.bytes)
    return Rows(np.array(flops, float), np.array(bytes_, float), d["latency"].to_numpy(float) * 1e-3,
                held_out(zip(d["num_heads"], d["batch_size"])), None, kernels,
                (d["batch_size"] * d["num_heads"]).to_numpy(float))


def _curve(x) -> KernelCurve:
    t0, em, hm, ec, hc, a, p, item = (float(f"{v:.4g}") for v in (*x, 0.0)[:8])
    return KernelCurve(t0_us=t0, memory_efficiency=em, memory_half_MB=hm, compute_efficiency=ec,
                       compute_half_GFLOP=hc, size_exponent=a, overlap_exponent=p, per_item_ns=item)


def abs_errors_pct(predicted, measured) -> np.ndarray:
    return np.abs(predicted / measured - 1) * 100


def fit_curve(rows: Rows, peak_flops: float, bandwidth_Bps: float, mask=None) -> KernelCurve:
    """Least squares on log(predicted / measured), soft-L1 so that a few odd kernels do not steer the fit."""
    from scipy.optimize import least_squares

    m = np.ones_like(rows.seconds, bool) if mask is None else mask
    F, B, t = rows.flops[m], rows.bytes[m], rows.seconds[m]
    items = rows.items[m] if isinstance(rows.items, np.ndarray) else None
    n = 8 if items is not None else 7

    def residuals(x):
        return np.log(kernel_seconds(_curve_raw(x), F, B, peak_flops, bandwidth_Bps, 0 if items is None else items) / t)

    result = least_squares(residuals, X0[:n], bounds=(LO[:n], HI[:n]), loss="soft_l1", f_scale=0.1)
    return _curve(result.x)


def _curve_raw(x) -> KernelCurve:
    """Unrounded and unvalidated parameters, for the optimiser's inner loop."""
    return KernelCurve.model_construct(t0_us=x[0], memory_efficiency=x[1], memory_half_MB=x[2], compute_efficiency=x[3],
                                       compute_half_GFLOP=x[4], size_exponent=x[5], overlap_exponent=x[6],
                                       per_item_ns=x[7] if len(x) > 7 else 0.0)


def score(curve: KernelCurve, rows: Rows, peak_flops: float, bandwidth_Bps: float, mask) -> np.ndarray:
    items = rows.items[mask] if isinstance(rows.items, np.ndarray) else 0
    return abs_errors_pct(kernel_seconds(curve, rows.flops[mask], rows.bytes[mask], peak_flops, bandwidth_Bps, items),
                          rows.seconds[mask])


MIN_ROWS = 10  # on each side of the split: fewer fitted or held-out rows make no curve (its error could not be shown)


def fitted(rows: Rows, hw, table: str) -> KernelCurve | None:
    """Fit on the shapes not held out; record the error on both halves. None when either half is too small."""
    if (~rows.held_out).sum() < MIN_ROWS or rows.held_out.sum() < MIN_ROWS:
        return None
    peak, bw = hw.peak_flops(rows.peak_dtype or "bf16"), hw.bandwidth_Bps
    curve = fit_curve(rows, peak, bw, ~rows.held_out)
    fit_err, held = score(curve, rows, peak, bw, ~rows.held_out), score(curve, rows, peak, bw, rows.held_out)
    speed_of_light = np.maximum(rows.flops / peak, rows.bytes / bw)
    record = FitRecord(
        rows_faster_than_datasheet=int((rows.seconds < speed_of_light * (1 - 1e-9)).sum()),
        table=table, kernels=rows.kernels, rows_fit=int((~rows.held_out).sum()), rows_held_out=int(rows.held_out.sum()),
        fit_median_abs_error_pct=round(float(np.median(fit_err)), 2),
        held_out_median_abs_error_pct=round(float(np.median(held)), 2) if len(held) else None,
        held_out_p90_abs_error_pct=round(float(np.percentile(held, 90)), 2) if len(held) else None,
    )
    return curve.model_copy(update={"fit": record})


def allreduce_rows(df, tp: int):
    """(bytes, seconds) of the fastest measured all-reduce per message size; message_size counts bf16 elements."""
    d = df[df["num_gpus"] == tp].groupby("message_size", as_index=False)["latency"].min()
    return d["message_size"].to_numpy(float) * 2, d["latency"].to_numpy(float) * 1e-3


def nccl_allreduce_rows(df, tp: int):
    """(bytes, seconds) of NCCL's measured all-reduce over tp GPUs in half precision (2 bytes an element)."""
    return allreduce_rows(df[(df["op_name"] == "all_reduce") & (df["nccl_dtype"] == "half")], tp)


def alltoall_rows(df, n: int):
    """(bytes per GPU, seconds) of NCCL's measured all-to-all over n GPUs in half precision (2 bytes an element)."""
    d = df[(df["op_name"] == "alltoall") & (df["nccl_dtype"] == "half") & (df["num_gpus"] == n)]
    d = d.groupby("message_size", as_index=False)["latency"].min()
    return d["message_size"].to_numpy(float) * 2, d["latency"].to_numpy(float) * 1e-3


def newest_nccl_table(root: Path, gpu: str) -> Path | None:
    """The newest NCCL version's collective table of this part (the same for every engine), or None."""
    base = root / TABLE_GPUS[gpu] / "comm" / "nccl"
    found = list(base.glob("*/nccl_perf.parquet")) if base.is_dir() else []
    return max(found, key=lambda p: _version_key(p.parent.name)) if found else None


def fit_allreduce(df, tp: int, table: str, collective: str = "allreduce") -> AllReduceCurve | None:
    """t0 and bus bandwidth of one collective over tp GPUs: the engine's custom all-reduce (allreduce), NCCL's
    all-reduce (nccl_allreduce) or NCCL's all-to-all (alltoall)."""
    from scipy.optimize import least_squares

    rows = {"allreduce": allreduce_rows, "nccl_allreduce": nccl_allreduce_rows, "alltoall": alltoall_rows}
    size, t = rows[collective](df, tp)
    if len(size) < 4:
        return None
    out = held_out(size.astype(int))
    seconds = alltoall_curve_seconds if collective == "alltoall" else allreduce_curve_seconds

    def predict(x, s):
        return seconds(AllReduceCurve.model_construct(t0_us=x[0], bus_bandwidth_GBps=x[1]), s, tp)

    r = least_squares(lambda x: np.log(predict(x, size[~out]) / t[~out]), [10.0, 300.0], bounds=([0, 1], [1e3, 1e5]),
                      loss="soft_l1", f_scale=0.1)
    fit_err, held = abs_errors_pct(predict(r.x, size[~out]), t[~out]), abs_errors_pct(predict(r.x, size[out]), t[out])
    return AllReduceCurve(t0_us=float(f"{r.x[0]:.4g}"), bus_bandwidth_GBps=float(f"{r.x[1]:.4g}"), fit=FitRecord(
        table=table, kernels=", ".join(sorted(df["kernel_source"].unique())), rows_fit=int((~out).sum()),
        rows_held_out=int(out.sum()), fit_median_abs_error_pct=round(float(np.median(fit_err)), 2),
        held_out_median_abs_error_pct=round(float(np.median(held)), 2),
        held_out_p90_abs_error_pct=round(float(np.percentile(held, 90)), 2)))


def _relative(path: Path, root: Path) -> str:
    return f"{PACKAGE}: systems/data/{path.relative_to(root)}"


def _disagreements(fields: dict) -> str:
    """Where measured kernels ran faster than the datasheet roofs allow (fit.rows_faster_than_datasheet)."""
    faster = [f"{section}.{key} ({c.fit.rows_faster_than_datasheet} of {c.fit.rows_fit + c.fit.rows_held_out} rows)"
              for section in ("gemm", "attention_decode", "attention_prefill", "attention_decode_mla", "moe")
              for key, c in fields[section].items() if c is not None and c.fit.rows_faster_than_datasheet]
    if not faster:
        return "No measured kernel is faster than the datasheet roofs (max(FLOPs / peak, bytes / bandwidth))."
    return ("Table and datasheet disagree: some measured kernels are faster than the datasheet roofs allow, in "
            + ", ".join(faster) + " (kvcalc's byte count may exceed what the kernel moves, e.g. cache hits, or the "
            "part runs above its datasheet clocks); the curves still never predict below the roofs.")


def fit_profile(root: Path, gpu: str, engine: str) -> EngineProfile | None:
    """The profile of one GPU x engine from the newest tables of each op; None when the tables lack its GEMMs."""
    import pandas as pd

    hw = load_gpu(gpu)
    gemm_path = newest_table(root, gpu, "gemm", engine, "gemm_perf.parquet")
    if gemm_path is None:
        return None
    fields: dict = {"gemm": {}, "attention_decode": {}, "attention_prefill": {}, "attention_decode_mla": {},
                    "attention_prefill_mla": {}, "moe": {}, "allreduce": {}, "alltoall": {},
                    "linear_attention_decode": {}, "linear_attention_prefill": {}}
    gemm = pd.read_parquet(gemm_path)
    for gemm_dtype in sorted(set(gemm["gemm_dtype"]) & set(GEMM_DTYPES)):
        rows = gemm_rows(gemm, gemm_dtype)
        if rows.peak_dtype and rows.peak_dtype not in hw.peak_tflops.available():
            continue  # the datasheet lists no such peak to fit against
        fields["gemm"][GEMM_DTYPES[gemm_dtype][0]] = fitted(rows, hw, _relative(gemm_path, root) + f" (gemm_dtype {gemm_dtype})")
    versions = {"gemm": gemm_path.parent.name}
    stand_in = _vllm_fp8_block(root, gpu, hw) if engine == "vllm" and "fp8_block" in fields["gemm"] else None
    if stand_in is not None:
        fields["gemm"]["fp8_block"] = stand_in
    weight_only = _weight_only_stand_ins(root, gpu, engine, hw, fields["gemm"])
    fields["gemm"].update(weight_only)
    for phase, filename in (("attention_decode", "generation_attention_perf.parquet"),
                            ("attention_prefill", "context_attention_perf.parquet")):
        path = newest_table(root, gpu, "attention", engine, filename)
        if path is None:
            continue
        versions["attention"] = path.parent.name
        table = pd.read_parquet(path)
        for kv_dtype in sorted(set(table["kv_cache_dtype"]) & set(KV_DTYPES)):
            rows = attention_rows(table, kv_dtype, decode=phase == "attention_decode")
            fields[phase][KV_DTYPES[kv_dtype][0]] = fitted(rows, hw, _relative(path, root) + f" (kv_cache_dtype {kv_dtype})")
    # the newest table that yields a curve: a release's folder can hold a supplement of a few shapes only
    # (aiconfigurator-core 0.12.0's TensorRT-LLM 1.3.0rc23 MoE tables: on H100 and H200 10,692 rows of three
    # Nemotron-3 non-gated shapes, on B200, B300, GB200 and GB300 4,212-5,103 rows of w4a8_mxfp4_mxfp8 experts, a
    # format kvcalc does not fit, where 1.3.0rc20's hold 126,360-219,186 rows of bf16, fp8 and fp8_block experts; the
    # thirty-seventh audit, trtllm 1: six profiles had timed every routed expert at the datasheet roofline). The rule
    # is per operator, not per dtype: a newer table that fits one dtype hides an older table's others, which no
    # bundled release does today.
    for path in tables_newest_first(root, gpu, "moe", engine, "moe_perf.parquet"):
        table = pd.read_parquet(path)
        for moe_dtype in sorted(set(table["moe_dtype"]) & set(MOE_DTYPES)):
            rows = moe_rows(table, moe_dtype)
            if not (rows.peak_dtype and rows.peak_dtype not in hw.peak_tflops.available()):
                fields["moe"][MOE_DTYPES[moe_dtype][0]] = fitted(rows, hw, _relative(path, root) + f" (moe_dtype {moe_dtype})")
        fields["moe"] = {k: c for k, c in fields["moe"].items() if c is not None}
        if fields["moe"]:  # a table none of whose rows fit a curve is no source (the eighth audit, C5: seven
            versions["moe"] = path.parent.name  # TensorRT-LLM profiles named a MoE table and timed grouped GEMMs)
            break
    for section, filename, rows_of in (("attention_decode_mla", "generation_mla_perf.parquet", mla_decode_rows),
                                       ("attention_prefill_mla", "context_mla_perf.parquet", mla_prefill_rows)):
        path = newest_table(root, gpu, "mla", engine, filename)
        if path is None:
            continue
        versions.setdefault("mla", path.parent.name)
        table = pd.read_parquet(path)
        for kv_dtype in sorted(set(table["kv_cache_dtype"]) & set(KV_DTYPES)):
            fields[section][KV_DTYPES[kv_dtype][0]] = fitted(
                rows_of(table, kv_dtype), hw, _relative(path, root) + f" (kv_cache_dtype {kv_dtype})")
    path = newest_table(root, gpu, "linear_attention", engine, "gdn_perf.parquet")
    if path is not None:
        versions["linear_attention"] = path.parent.name
        table = pd.read_parquet(path)
        for section in ("linear_attention_decode", "linear_attention_prefill"):
            rows = linear_attention_rows(table, decode=section == "linear_attention_decode")
            if len(rows.seconds):
                fields[section]["gated_deltanet"] = fitted(rows, hw, _relative(path, root) + " (Gated DeltaNet)")
    path = newest_table(root, gpu, "comm", engine, "custom_allreduce_perf.parquet")
    if path is not None:
        table = pd.read_parquet(path)
        versions["allreduce"] = path.parent.name
        for tp in sorted(int(n) for n in table["num_gpus"].unique()):
            curve = fit_allreduce(table, tp, _relative(path, root))
            if curve is not None:
                fields["allreduce"][f"tp{tp}"] = curve
    path = newest_nccl_table(root, gpu)
    if path is not None and engine in CUSTOM_ALLREDUCE_NEEDS_NVLINK_BEYOND_2:
        # vLLM and SGLang switch their custom all-reduce off on more than two PCIe-only GPUs or without peer-to-peer
        # and run NCCL there (engines/links.py), so those groups take NCCL's all-reduce measured on the same server,
        # not the custom kernel's table (the fifth audit: L40S TP 4 prefill all-reduces 32 % slow, TP 8 31 % fast)
        table, nccl_groups = pd.read_parquet(path), []
        for key in list(fields["allreduce"]):
            n = int(key.removeprefix("tp"))
            if group_link_kind(hw, n) == "pcie" and (n > 2 or hw.pcie_p2p is False):
                curve = fit_allreduce(table, n, _relative(path, root), collective="nccl_allreduce")
                if curve is not None:
                    fields["allreduce"][key], nccl_groups = curve, [*nccl_groups, key]
        if nccl_groups:
            versions["allreduce"] += f" ({', '.join(nccl_groups)}: nccl {path.parent.name}, the custom kernel is off)"
    if path is not None and fields["moe"]:  # expert parallelism: only where the engine's tables have MoE layers
        table = pd.read_parquet(path)
        versions["alltoall"] = f"nccl {path.parent.name}"
        for n in sorted(int(v) for v in table.loc[table["op_name"] == "alltoall", "num_gpus"].unique()):
            curve = fit_allreduce(table, n, _relative(path, root), collective="alltoall")
            if curve is not None:
                fields["alltoall"][f"ep{n}"] = curve
    for section in ("gemm", "attention_decode", "attention_prefill", "attention_decode_mla", "attention_prefill_mla",
                    "moe", "linear_attention_decode", "linear_attention_prefill"):
        fields[section] = {k: c for k, c in fields[section].items() if c is not None}
    return EngineProfile(
        gpu=gpu, engine=engine, engine_version=versions["gemm"],
        sources=[f"NVIDIA's measured kernel tables in {PACKAGE} (Apache-2.0), systems/data/{TABLE_GPUS[gpu]}/: "
                 + ", ".join(f"{op} {v}" if op == "alltoall" else f"{op} {engine} {v}" for op, v in versions.items())
                 + ("; gemm.fp8_block: " + " ".join(Path(stand_in.fit.table.split(" (")[0]).parts[-3:-1])
                    + "'s table (FP8_BLOCK_STAND_INS in kvcalc/ledgers/kernel_tables.py)" if stand_in is not None
                    else "")
                 + "".join(f"; gemm.{key}: " + " ".join(Path(c.fit.table.split(" (")[0]).parts[-3:-1])
                           + "'s table (WEIGHT_ONLY_DTYPES in kvcalc/ledgers/kernel_tables.py)"
                           for key, c in weight_only.items()),
                 f"roofs: hardware_specs/{gpu}.toml (datasheet dense peaks and bandwidth)"],
        notes=("Fitted by `kvcalc profiles fit`: each curve on the shapes with an even crc32 of their key, scored on "
               "the odd ones (held out). Every row is costed by kvcalc's formulas. Where a table holds several kernels "
               "for one shape, the fastest is kept. All-reduce message_size is read as bf16 elements (2 bytes each); "
               "vector ops (norms, embedding) are not in the tables and keep the datasheet efficiencies. "
               + _disagreements(fields)),
        **fields,
    )


# vLLM's fp8_block GEMM rows are timed without a CUDA graph, one layer per launch: ai-dynamo/aiconfigurator
# collector/vllm/collect_gemm.py (commit 00e9bde) benchmarks with `use_cuda_graph=gemm_type != "fp8_block"`, so a small
# GEMM records the host's launch of vLLM's layer (no row with m <= 64 under 55 us on the H100, where SGLang's and
# TensorRT-LLM's graph-timed tables time the same shapes at 10-16 us; at 1 ms and more the three agree within a few
# per cent). A served vLLM replays its decode steps as CUDA graphs and runs the same block-scaled kernels (DeepGEMM from
# m = 32, FlashInfer/CUTLASS below), so on the GPUs where SGLang's table times DeepGEMM (Hopper, Blackwell) its
# fp8_block curve is fitted on that table. Elsewhere (L40S, RTX PRO 6000: vLLM's Triton or CUTLASS block kernel, which
# no graph-timed table here times) vLLM's own table stays, launch time included: too slow at small m.
FP8_BLOCK_STAND_INS = ("sglang",)


def _vllm_fp8_block(root: Path, gpu: str, hw) -> KernelCurve | None:
    """vLLM's fp8_block GEMM curve from a graph-timed table of the same GPU (FP8_BLOCK_STAND_INS), or None."""
    import pandas as pd

    for engine in FP8_BLOCK_STAND_INS:
        path = newest_table(root, gpu, "gemm", engine, "gemm_perf.parquet")
        if path is None:
            continue
        table = pd.read_parquet(path)
        if "fp8_block" not in set(table["gemm_dtype"]):
            continue
        return fitted(gemm_rows(table, "fp8_block"), hw, _relative(path, root) + " (gemm_dtype fp8_block; vLLM's own "
                      "fp8_block table is timed without a CUDA graph, so it holds launch time: see FP8_BLOCK_STAND_INS)")
    return None


# Weight-only GEMMs (int8 or int4 weights, bf16 activations: AWQ, GPTQ, Marlin, TensorRT-LLM's fpA_intB) that an
# engine's own table of a GPU does not time are taken from another table of the same GPU that does (the engine's own
# older releases first, then the other engines' tables by release number): on the A100, TensorRT-LLM 1.0.0's int4_wo
# and int8_wo rows stand in for vLLM and SGLang (whose A100 tables hold bf16 only); on the H100, SGLang 0.5.6.post2's
# int8_wo rows for every engine. A kernel measured on the same silicon is closer to the engine's own weight-only kernel
# than the datasheet efficiencies that time these GEMMs otherwise (the A100 curves keep a launch latency, t0 6.6-8 us;
# the H100 int8_wo fit has none, t0 ~0, its table holding 70 rows faster than the datasheet roofs): Qwen2-7B GPTQ-Int4 at batch 1 on an A100 under vLLM 0.6.3 decodes at 148 tokens/s
# (qwen.readthedocs.io, "Speed Benchmark"; ledger row nv-130), which vLLM's A100 profile put at 227 tokens/s with the
# datasheet efficiencies and puts at 153 with TensorRT-LLM's int4_wo table (validation/published/README.md).
WEIGHT_ONLY_DTYPES = ("int8_wo", "int4_wo")


def _weight_only_stand_ins(root: Path, gpu: str, engine: str, hw, have: dict) -> dict:
    """{profile key: curve} for the weight-only GEMM dtypes `have` lacks, each fitted on another table of the same
    GPU that times it: this engine's own older releases first, then the other engines' tables, highest release
    number first."""
    import pandas as pd

    base = root / TABLE_GPUS[gpu] / "gemm"
    tables = sorted(base.glob("*/*/gemm_perf.parquet"), key=lambda p: (p.parent.parent.name == engine,
                                                                        _version_key(p.parent.name)), reverse=True)
    out = {}
    for gemm_dtype in WEIGHT_ONLY_DTYPES:
        key = GEMM_DTYPES[gemm_dtype][0]
        if key in have:
            continue
        for path in tables:
            table = pd.read_parquet(path, columns=["gemm_dtype"])
            if gemm_dtype not in set(table["gemm_dtype"]):
                continue
            curve = fitted(gemm_rows(pd.read_parquet(path), gemm_dtype), hw,
                           _relative(path, root) + f" (gemm_dtype {gemm_dtype}; {engine}'s own tables do not time it: "
                           "see WEIGHT_ONLY_DTYPES)")
            if curve is not None:
                out[key] = curve
                break
    return out


LINEAR_SHAPE = ["batch_size", "seq_len", "d_model", "d_conv", "num_k_heads", "head_k_dim", "num_v_heads", "head_v_dim"]


def _gdn_model(d: int, conv: int, nk: int, dk: int, nv: int, dv: int) -> ModelSpec:
    """One Gated DeltaNet layer and nothing else."""
    return ModelSpec.model_validate({
        "name": "table-row", "family": "table", "sources": ["measured table"], "num_layers": 1, "hidden_size": d,
        "vocab_size": 1, "attention": {"kind": "mha", "num_heads": 1, "num_kv_heads": 1, "head_dim": 1},
        "mlp": {"kind": "gated", "intermediate_size": 1},
        "linear_attention": {"kind": "gated_deltanet", "num_key_heads": nk, "num_value_heads": nv, "key_head_dim": dk,
                             "value_head_dim": dv, "conv_kernel": conv},
    })


def linear_attention_rows(df, decode: bool) -> Rows:
    """Gated DeltaNet layers: the short convolution and the recurrence (decode: causal_conv1d_update and the fused
    recurrent kernel, B sequences of one token; prefill: causal_conv1d_fn and the chunked kernel, B prompts of
    seq_len tokens), their times summed per shape (the fastest of each), costed as kvcalc's linear_attention/state
    operator (state read and written in bf16)."""
    df = df[df["phase"] == ("generation" if decode else "context")]
    per_kernel = df.groupby([*LINEAR_SHAPE, "kernel_source"], as_index=False)["latency"].min()
    per_kernel["conv"] = per_kernel["kernel_source"].str.startswith("causal_conv1d")
    both = per_kernel.groupby(LINEAR_SHAPE, as_index=False).agg(latency=("latency", "sum"), parts=("conv", "nunique"))
    d = both[both["parts"] == 2]  # the conv and the recurrence both measured
    kernels = ", ".join(sorted(df["kernel_source"].unique()))
    p = Precision(b_w=2.0, b_kv=2.0, b_a=B_ACT)
    flops, bytes_ = [], []
    for b, s, dm, conv, nk, dk, nv, dv in zip(*(d[c] for c in LINEAR_SHAPE)):
        model = _gdn_model(int(dm), int(conv), int(nk), int(dk), int(nv), int(dv))
        q = 1 if decode else int(s)
        state = next(o for o in linear_attention_ops(model, int(b), q, p, p, decode=decode)
                     if o.name == "linear_attention/state")
        flops.append(state.cost.flops)
        bytes_.append(state.cost.bytes)
    keys = zip(d["num_k_heads"], d["head_k_dim"], d["num_v_heads"], d["head_v_dim"], d["d_model"], d["batch_size"])
    items = (d["batch_size"] * d["num_v_heads"]).to_numpy(float)
    return Rows(np.array(flops, float), np.array(bytes_, float), d["latency"].to_numpy(float) * 1e-3, held_out(keys),
                None, kernels, items)


@contextmanager
def unreadable_table(path: Path):
    """A kernel table that is not as aiconfigurator-core writes it (not Parquet, a column missing, no rows) as one line
    naming it (the thirty-second audit, validate 8: `profiles ledger --data` had stopped with ArrowInvalid, KeyError
    and IndexError tracebacks)."""
    try:
        yield
    except KvcalcError:
        raise
    except (ValueError, KeyError, IndexError, OSError) as e:
        raise KvcalcError(f"--data: {path}: not a kernel table as aiconfigurator-core writes it ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:100] if str(e) else 'no detail'})") from None


def table_dtype(section: str, key: str) -> str:
    """The table's dtype name of a GEMM or MoE curve's key: the MoE tables' own (MOE_DTYPES, mxfp4 experts too; the
    thirtieth audit: `profiles ledger` had looked MoE keys up among the GEMM dtypes and stopped at the first mxfp4
    curve with a StopIteration traceback)."""
    table = MOE_DTYPES if section == "moe" else GEMM_DTYPES
    found = next((d for d, spec in table.items() if spec[0] == key), None)
    if found is None:  # a curve of a dtype no table reader knows (the review of the change, 11): said, not a traceback
        raise KvcalcError(f"profiles ledger: no {section} table dtype for the curve {key!r}; expected one of "
                          f"{', '.join(spec[0] for spec in table.values())}")
    return found


def ledger(root: Path, profiles: list[EngineProfile]) -> list[dict]:
    """Each curve fitted to these tables re-scored against them: |error| on the held-out shapes (and on the fitted
    ones). Profiles of engines the tables lack (gpt-fast) are scored by `kvcalc validate --published` instead."""
    import pandas as pd

    out = []
    for prof in profiles:
        if prof.engine not in TABLE_ENGINES:
            continue
        hw = load_gpu(prof.gpu)
        for section in ("gemm", "attention_decode", "attention_prefill", "attention_decode_mla",
                        "attention_prefill_mla", "moe", "linear_attention_decode", "linear_attention_prefill"):
            for key, curve in getattr(prof, section).items():
                if curve.fit is None or not curve.fit.table.startswith(PACKAGE):
                    continue
                path = root / curve.fit.table.split("systems/data/", 1)[1].split(" (")[0]
                if not path.is_file():
                    raise KvcalcError(f"--data: {root} lacks {path.relative_to(root)}, which {prof.gpu}.{prof.engine} "
                                      "was fitted to")
                with unreadable_table(path):
                    df = pd.read_parquet(path)
                    if section == "gemm":
                        rows = gemm_rows(df, table_dtype(section, key))
                    elif section == "moe":
                        rows = moe_rows(df, table_dtype(section, key))
                    elif section.startswith("linear_attention"):
                        rows = linear_attention_rows(df, decode=section == "linear_attention_decode")
                    elif section == "attention_decode_mla":
                        rows = mla_decode_rows(df, next(d for d, spec in KV_DTYPES.items() if spec[0] == key))
                    elif section == "attention_prefill_mla":
                        rows = mla_prefill_rows(df, next(d for d, spec in KV_DTYPES.items() if spec[0] == key))
                    else:
                        dtype = next(d for d, spec in KV_DTYPES.items() if spec[0] == key)
                        rows = attention_rows(df, dtype, decode=section == "attention_decode")
                    peak, bw = hw.peak_flops(rows.peak_dtype or "bf16"), hw.bandwidth_Bps
                    held, fit = score(curve, rows, peak, bw, rows.held_out), score(curve, rows, peak, bw, ~rows.held_out)
                out.append({
                    "gpu": prof.gpu, "engine": f"{prof.engine} {path.parent.name}", "operator": section, "dtype": key,
                    "held_out_rows": int(len(held)), "held_out_median_pct": round(float(np.median(held)), 1),
                    "held_out_p90_pct": round(float(np.percentile(held, 90)), 1),
                    "fit_rows": int(len(fit)), "fit_median_pct": round(float(np.median(fit)), 1),
                })
    return out
