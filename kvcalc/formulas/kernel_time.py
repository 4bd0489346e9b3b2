"""Measured kernel time: a fixed latency plus roofs whose efficiency rises with the kernel's size.

One kernel moving B bytes and doing F FLOPs on a part with peak P [FLOP/s] and bandwidth BW [B/s]:

    t = t0 + n * per_item + smoothmax(F / (P * e_c(F)), B / (BW * e_m(B)))
    e(x) = e_max * x^a / (x^a + x_half^a)            efficiency rises with size, saturating at e_max <= 1
    smoothmax(u, v) = (u^p + v^p)^(1/p)              p -> infinity is the plain roofline max

t0 is the kernel's fixed latency (launch, prologue, tail), n * per_item the cost of its n work items (attention: one
per sequence and KV head, each with its own setup; a GEMM: the m x k input activation elements, which per-tensor fp8
kernels quantise in a pass of their own: bf16 GEMM fits leave this term at ~0),
e_max the fraction of the roof a large kernel reaches,
x_half the size at which it reaches half of that, a how sharply it gets there, and p how far compute and memory
overlap near the ridge. NVIDIA's measured kernel tables show each (see hardware_specs/profiles/): an H100 bf16 GEMM
has t0 ~ 2-3 us and reaches ~0.88 of bandwidth only above ~100 MB. The speed of light is not this model: it
stays the plain roofline with efficiency 1 (formulas/roofline.py).
"""

from __future__ import annotations

from kvcalc.formulas._array import maximum
from kvcalc.specs.profile import AllReduceCurve, KernelCurve

_TINY = 1e-30  # stands in for a zero size so that (x_half / x)^a stays finite; the term it scales is then 0


def efficiency(work, e_max: float, half, a: float):
    """e(x) = e_max * x^a / (x^a + x_half^a): the fraction of a roof a kernel of size x reaches."""
    return e_max / (1 + (half / maximum(work, _TINY)) ** a)


def roof_seconds(work, roof_per_s: float, e_max: float, half, a: float):
    """work / (roof * e(work)) = work / (roof * e_max) * (1 + (half / work)^a); 0 for no work [s]."""
    return work / (roof_per_s * e_max) * (1 + (half / maximum(work, _TINY)) ** a)


def roof_terms(curve: KernelCurve, flops, bytes_, peak_flops: float, bandwidth_Bps: float):
    """(compute time, memory time) of one kernel [s], each at its size-dependent efficiency."""
    c = curve
    return (roof_seconds(flops, peak_flops, c.compute_efficiency, c.compute_half_GFLOP * 1e9, c.size_exponent),
            roof_seconds(bytes_, bandwidth_Bps, c.memory_efficiency, c.memory_half_MB * 1e6, c.size_exponent))


def kernel_seconds(curve: KernelCurve, flops, bytes_, peak_flops: float, bandwidth_Bps: float, items=0, terms=None):
    """Time of one kernel [s]: t0 + items * per_item + smoothmax(compute time, memory time), each roof at its
    size-dependent efficiency (`terms`: roof_terms already computed for these sizes)."""
    c = curve
    t_c, t_m = terms if terms is not None else roof_terms(curve, flops, bytes_, peak_flops, bandwidth_Bps)
    p = c.overlap_exponent
    # Scale by the larger term before the power so that p-th powers of tiny or huge times stay finite.
    big = maximum(maximum(t_c, t_m), _TINY)
    return c.t0_us * 1e-6 + items * c.per_item_ns * 1e-9 + big * ((t_c / big) ** p + (t_m / big) ** p) ** (1 / p)


def alltoall_curve_seconds(curve: AllReduceCurve, message_bytes, n: int):
    """One measured all-to-all of `message_bytes` per GPU over n GPUs [s]: t0 + (n - 1) / n * bytes / bus bandwidth
    (NCCL's bus-bandwidth convention: each GPU sends all but its own share)."""
    return curve.t0_us * 1e-6 + (n - 1) / n * message_bytes / (curve.bus_bandwidth_GBps * 1e9)


def allreduce_curve_seconds(curve: AllReduceCurve, message_bytes, tp: int):
    """One measured all-reduce of `message_bytes` over tp GPUs [s]: t0 + 2 (tp - 1) / tp * bytes / bus bandwidth."""
    return curve.t0_us * 1e-6 + 2 * (tp - 1) / tp * message_bytes / (curve.bus_bandwidth_GBps * 1e9)
