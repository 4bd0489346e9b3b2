"""Roofline time.

Per operator: t = max(FLOPs / (peak * eff_compute), bytes / (bandwidth * eff_memory)), summed over operators
(a per-operator max is more honest than one max over the whole step). Speed of light uses eff = 1.
Ridge point = peak / bandwidth [FLOP/B]: an operator whose intensity is below it is memory-bound.
Where the spec has a measured launch_overhead_us, the expected time adds kernels * overhead per operator
(the speed of light never does): it dominates small decode steps that run without CUDA graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcalc.dtypes import activation_dtype, matmul_compute_dtype
from kvcalc.formulas._array import maximum, where
from kvcalc.formulas.forward import Op
from kvcalc.specs.hardware import HardwareSpec


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
        return matmul_compute_dtype(weight_dtype, hw.peak_tflops.available())
    return activation_dtype(weight_dtype)


@dataclass(frozen=True)
class OpTime:
    op: Op
    dtype: str
    seconds: float
    compute_bound: bool


@dataclass(frozen=True)
class StepTime:
    ops: list[OpTime]

    @property
    def seconds(self):
        return sum(o.seconds for o in self.ops)

    @property
    def compute_bound_seconds(self):
        return sum(where(o.compute_bound, o.seconds, 0.0) for o in self.ops)

    @property
    def bound(self):
        """'compute' where compute-bound operators take most of the time, else 'memory'."""
        return where(self.compute_bound_seconds * 2 > self.seconds, "compute", "memory")


def step_time(ops: list[Op], hw: HardwareSpec, weight_dtype: str, *, speed_of_light: bool) -> StepTime:
    """Sum of per-operator roofline times; with the spec's efficiencies unless speed_of_light."""
    eff_m = 1.0 if speed_of_light else hw.efficiency.memory
    eff_c = 1.0 if speed_of_light else hw.efficiency.compute
    launch_s = 0.0 if speed_of_light or not hw.launch_overhead_us else hw.launch_overhead_us * 1e-6
    timed = []
    for op in ops:
        dtype = engine_dtype(op.engine, weight_dtype, hw)
        t, cb = roofline(op.cost.flops, op.cost.bytes, hw.peak_flops(dtype) * eff_c, hw.bandwidth_Bps * eff_m)
        timed.append(OpTime(op, dtype, t + op.kernels * launch_s, cb))
    return StepTime(timed)
