"""Roofline time.

Per operator: t = max(FLOPs / (peak * eff_compute), bytes / (bandwidth * eff_memory)), summed over operators
(a per-operator max is more honest than one max over the whole step). Speed of light uses eff = 1.
Ridge point = peak / bandwidth [FLOP/B]: an operator whose intensity is below it is memory-bound.
Where the spec has a measured launch_overhead_us, the expected time adds kernels * overhead per operator
(the speed of light never does, nor an engine profile, whose engines replay CUDA graphs): it dominates small decode
steps that run without CUDA graphs.

With an engine profile, the expected time of each matmul and attention operator is instead its kernels' measured
curve (formulas/kernel_time.py): kernels * t_kernel(FLOPs / kernels, bytes / kernels). Operators the profile has
no curve for (vector ops, which the tables do not measure, or a dtype the engine's tables lack) keep the
datasheet-efficiency roofline, and are listed in StepTime.unprofiled.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcalc.dtypes import activation_dtype, matmul_compute_dtype
from kvcalc.formulas._array import maximum, where
from kvcalc.formulas.forward import Op
from kvcalc.formulas.kernel_time import kernel_seconds, roof_terms
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.specs.profile import EngineProfile, KernelCurve


def roofline(flops, bytes_, peak_flops: float, bandwidth_Bps: float):
    """(time [s], compute-bound?) for work of `flops` FLOPs and `bytes_` bytes on one roof pair."""
    t_compute = flops / peak_flops
    t_memory = bytes_ / bandwidth_Bps
    return maximum(t_compute, t_memory), t_compute > t_memory


def ridge_point(peak_flops: float, bandwidth_Bps: float) -> float:
    """Arithmetic intensity [FLOP/B] where the memory roof meets the compute roof."""
    return peak_flops / bandwidth_Bps


def intensity(flops, bytes_):
    """Arithmetic intensity [FLOP/B]."""
    return flops / bytes_


def engine_dtype(engine: str, weight_dtype: str, hw: HardwareSpec) -> str:
    """The dtype whose peak an operator runs at (vector ops have no FLOPs worth a roof: activation dtype)."""
    if engine == "matmul":
        return matmul_compute_dtype(weight_dtype, hw.peak_tflops.available(), hw.vendor)
    return activation_dtype(weight_dtype)


@dataclass(frozen=True)
class OpTime:
    op: Op
    dtype: str
    seconds: float
    compute_bound: bool
    curve: str = ""  # the engine profile's curve that timed it (e.g. "gemm.bf16"); "" for the roofline


@dataclass(frozen=True)
class StepTime:
    ops: list[OpTime]
    unprofiled: tuple[str, ...] = ()  # matmul/attention operators an engine profile had no curve for
    overhead_s: float = 0.0  # the engine's time outside its kernels in this step (engines/overhead.py); never in SOL

    @property
    def seconds(self):
        return sum(o.seconds for o in self.ops) + self.overhead_s

    @property
    def compute_bound_seconds(self):
        return sum(where(o.compute_bound, o.seconds, 0.0) for o in self.ops)

    @property
    def bound(self):
        """'compute' where compute-bound operators take most of the time, else 'memory'."""
        return where(self.compute_bound_seconds * 2 > self.seconds, "compute", "memory")


# kvcalc's weight dtype -> the profile's GEMM key and the peak its curve was fitted against. int8 is W8A8
# (SmoothQuant) where the engine measured it, else weight-only; int4 is always weight-only (dequantised to 16-bit).
GEMM_CURVES = {
    "bf16": (("bf16", None),), "fp16": (("bf16", None),), "fp8": (("fp8", "fp8"),),
    "int8": (("w8a8", "int8"), ("int8_wo", None)), "int4": (("int4_wo", None),),
    "fp8-block": (("fp8_block", "fp8"), ("fp8", "fp8")), "int8-wo": (("int8_wo", None),),
    "int8-g32": (("int8_wo", None),), "int8-g64": (("int8_wo", None),), "int8-g128": (("int8_wo", None),),
    "int4-g32": (("int4_wo", None),), "int4-g64": (("int4_wo", None),), "int4-g128": (("int4_wo", None),),
    # fp4 at the fp4 peak (Blackwell): the tables measure NVFP4 GEMMs; MXFP4 (32-element blocks, e8m0 scales) runs on
    # the same fp4 tensor cores and is timed by that curve
    "nvfp4": (("nvfp4", "fp4"),), "mxfp4": (("nvfp4", "fp4"),),
}
# MoE modules measured in their own format first: MXFP4 experts with bf16 activations (gpt-oss's w4a16 kernels: vLLM's
# triton_kernels on Hopper, FlashInfer's TRT-LLM MXFP4 x BF16 on Blackwell), timed against the bf16 peak
MOE_CURVES = {"mxfp4": (("mxfp4", None),)}
ATTENTION_CURVE_KEYS = {"bf16": "bf16", "fp16": "bf16", "fp8": "fp8"}
# a weight-only checkpoint's float format (Op.weight_only) -> the weight-only format of the same width whose kernels
# time it: weights dequantised to 16 bit (vLLM's Marlin schemes: CompressedTensorsW4A16Fp4 for NVFP4A16 and MXFP4A16,
# CompressedTensorsW8A16Fp8 for FP8 W8A16), at the activation dtype's peak; the op's bytes stay its own format's
WEIGHT_ONLY_TWINS = {"fp8": "int8-wo", "fp8-block": "int8-wo", "nvfp4": "int4", "mxfp4": "int4"}


def profile_curve(op: Op, profile: EngineProfile, weight_dtype: str, kv_dtype: str) -> tuple[KernelCurve, str, str] | None:
    """(the measured curve for this operator, the dtype whose peak it was fitted against, its name), or None."""
    act = activation_dtype(weight_dtype)
    if op.engine == "matmul":
        for table in (("moe", "gemm") if op.kernel_class == "moe" else ("gemm",)):
            own = MOE_CURVES.get(weight_dtype, ()) if table == "moe" else ()
            for key, peak_dtype in (*own, *GEMM_CURVES.get(weight_dtype, ())):
                if key in getattr(profile, table):
                    return getattr(profile, table)[key], peak_dtype or act, f"{table}.{key}"
        return None
    if op.engine == "attention" and ":" in op.kernel_class:  # a linear-attention layer: section:kind
        section, kind = op.kernel_class.split(":")
        curve = getattr(profile, section, {}).get(kind)
        return None if curve is None else (curve, act, f"{section}.{kind}")
    if op.engine == "attention":
        # MLA uses its own measured decode and prefill kernels where the tables have them, else the standard curves.
        fallback = {"attention_decode_mla": "attention_decode", "attention_prefill_mla": "attention_prefill"}
        classes = (op.kernel_class, fallback[op.kernel_class]) if op.kernel_class in fallback else (op.kernel_class,)
        key = ATTENTION_CURVE_KEYS.get(kv_dtype)
        for name in classes:
            if key in getattr(profile, name, {}):
                return getattr(profile, name)[key], act, f"{name}.{key}"
        return None
    return None


def step_time(ops: list[Op], hw: HardwareSpec, weight_dtype: str, *, speed_of_light: bool,
              profile: EngineProfile | None = None, kv_dtype: str = "bf16") -> StepTime:
    """Sum of per-operator times: the roofline at 100 % (speed_of_light), the measured curves of an engine
    profile, or the roofline at the spec's efficiencies."""
    eff_m = 1.0 if speed_of_light else hw.efficiency.memory
    eff_c = 1.0 if speed_of_light else hw.efficiency.compute
    # an engine replays its decode steps in CUDA graphs, which a profile's curves time, so a calibrated launch
    # overhead (eager kernels) is not added to the operators the curves leave out (the thirty-fourth audit, specs 2:
    # 14.2 us on each of 65 norm kernels, TPOT 16 % long); a prefill past the captured sizes launches those
    # operators eagerly, which is left out too, small beside its GEMMs
    launch_s = (0.0 if speed_of_light or profile is not None or not hw.launch_overhead_us
                else hw.launch_overhead_us * 1e-6)
    timed, unprofiled = [], []
    peaks = {}  # dtype -> FLOP/s, looked up once per step rather than once per operator
    for op in ops:
        wd = activation_dtype(weight_dtype) if op.unquantised else weight_dtype  # kept 16-bit by the checkpoint
        if op.weight_only:
            wd = WEIGHT_ONLY_TWINS.get(wd, wd)
        found = None if speed_of_light or profile is None else profile_curve(op, profile, wd, kv_dtype)
        if found is not None:
            curve, dtype, name = found
            peak = peaks[dtype] if dtype in peaks else peaks.setdefault(dtype, hw.peak_flops(dtype))
            k, bw = (op.layers if name.startswith("moe.") else op.kernels), hw.bandwidth_Bps  # fused MoE: one a layer
            flops, bytes_ = op.cost.flops / k, op.cost.bytes / k
            t_c, t_m = roof_terms(curve, flops, bytes_, peak, bw)  # the compute-bound test reuses them
            seconds = k * kernel_seconds(curve, flops, bytes_, peak, bw, op.items_per_kernel, terms=(t_c, t_m))
            timed.append(OpTime(op, dtype, scaled(seconds, op, profile, peak, bw), t_c > t_m, name))
            continue
        if profile is not None and not speed_of_light and op.engine != "vector":
            unprofiled.append(op.name)
        dtype = (op.compute_dtype if op.compute_dtype in hw.peak_tflops.available() else
                 engine_dtype(op.engine, wd, hw))
        peak = peaks[dtype] if dtype in peaks else peaks.setdefault(dtype, hw.peak_flops(dtype))
        t, cb = roofline(op.cost.flops, op.cost.bytes, peak * eff_c, hw.bandwidth_Bps * eff_m)
        t = t + op.kernels * launch_s
        timed.append(OpTime(op, dtype, t if speed_of_light else scaled(t, op, profile, peak, hw.bandwidth_Bps), cb))
    return StepTime(timed, tuple(unprofiled))


def scaled(seconds: float, op: Op, profile: EngineProfile | None, peak: float, bandwidth: float) -> float:
    """The operator's time with an older release's MoE factor, never below its speed of light (a factor under 1 in a
    profile file, the fourth audit, had decoded below it)."""
    s = moe_scale(op, profile)
    return seconds if s == 1.0 else maximum(seconds * s, maximum(op.cost.flops / peak, op.cost.bytes / bandwidth))


def moe_scale(op: Op, profile: EngineProfile | None) -> float:
    """An older release's factor on the routed experts' time, however the profile times them (engines/kernel_eras.py);
    1 for the default release and for every other operator."""
    return profile.moe_time_scale if profile is not None and op.name == "moe/routed" else 1.0
