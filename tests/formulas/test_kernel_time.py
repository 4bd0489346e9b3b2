"""The measured-kernel time model: closed forms, monotonicity, and recovery of known parameters."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.formulas.kernel_time import (
    allreduce_curve_seconds,
    kernel_seconds,
    roof_seconds,
)
from kvcalc.specs.profile import AllReduceCurve, KernelCurve

H100_PEAK, H100_BW = 989.5e12, 3.35e12  # datasheet dense bf16 and bandwidth (reference-figures.md)


def test_without_size_dependence_the_curve_is_the_issues_one_line_check():
    # The check the engine-profile issue states for H100 bf16 GEMMs: t = 3 us + max(F / (0.80 peak), B / (0.85 bw)).
    # With zero half-sizes and a large overlap exponent the curve reduces to it (smooth max within 2^(1/64)).
    curve = KernelCurve(t0_us=3, memory_efficiency=0.85, memory_half_MB=0, compute_efficiency=0.80,
                        compute_half_GFLOP=0, overlap_exponent=64)
    m, n, k = 16, 4096, 4096
    flops, bytes_ = 2 * m * n * k, (n * k + m * (n + k)) * 2
    one_line = 3e-6 + max(flops / (0.80 * H100_PEAK), bytes_ / (0.85 * H100_BW))
    assert one_line <= kernel_seconds(curve, flops, bytes_, H100_PEAK, H100_BW) <= one_line * 2 ** (1 / 64)


def test_efficiency_is_half_of_its_maximum_at_the_half_size():
    # e(x_half) = e_max / 2, so the time is twice work / (roof e_max), whatever the exponent.
    for a in (0.25, 0.5, 1.0):
        assert roof_seconds(8e6, 1e12, 0.8, 8e6, a) == pytest.approx(2 * 8e6 / (1e12 * 0.8))


def test_no_work_costs_only_the_fixed_latency_and_the_items():
    curve = KernelCurve(t0_us=11, memory_efficiency=0.9, memory_half_MB=40, compute_efficiency=0.9,
                        compute_half_GFLOP=3, size_exponent=0.6, per_item_ns=20)
    assert kernel_seconds(curve, 0.0, 0.0, H100_PEAK, H100_BW, items=64) == pytest.approx(11e-6 + 64 * 20e-9)


def test_allreduce_is_latency_plus_ring_traffic_over_bus_bandwidth():
    curve = AllReduceCurve(t0_us=5, bus_bandwidth_GBps=350)
    # 8 GPUs, 16 MiB: 2 * 7/8 * 16 MiB / 350 GB/s + 5 us
    assert allreduce_curve_seconds(curve, 2**24, 8) == pytest.approx(5e-6 + 1.75 * 2**24 / 350e9)


curves = st.builds(
    KernelCurve, t0_us=st.floats(0, 50), memory_efficiency=st.floats(0.05, 1), memory_half_MB=st.floats(0, 500),
    compute_efficiency=st.floats(0.05, 1), compute_half_GFLOP=st.floats(0, 500), size_exponent=st.floats(0.1, 1),
    overlap_exponent=st.floats(1, 30), per_item_ns=st.floats(0, 100),
)
sizes = st.floats(0, 1e13)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(curves, sizes, sizes, st.floats(1, 100))
def test_time_never_falls_as_work_grows(curve, flops, bytes_, factor):
    t = kernel_seconds(curve, flops, bytes_, H100_PEAK, H100_BW)
    assert math.isfinite(t) and t >= curve.t0_us * 1e-6
    assert kernel_seconds(curve, flops * factor, bytes_, H100_PEAK, H100_BW) >= t * (1 - 1e-12)
    assert kernel_seconds(curve, flops, bytes_ * factor, H100_PEAK, H100_BW) >= t * (1 - 1e-12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(curves, sizes, sizes)
def test_never_faster_than_the_speed_of_light(curve, flops, bytes_):
    # Efficiencies are <= 1, so no kernel beats max(F / peak, B / bandwidth).
    assert kernel_seconds(curve, flops, bytes_, H100_PEAK, H100_BW) >= max(flops / H100_PEAK, bytes_ / H100_BW) * (1 - 1e-12)


def test_fit_recovers_known_parameters_from_synthetic_kernels():
    np = pytest.importorskip("numpy")
    pytest.importorskip("scipy")
    from kvcalc.ledgers.kernel_tables import Rows, fit_curve

    truth = KernelCurve(t0_us=4.0, memory_efficiency=0.87, memory_half_MB=2.0, compute_efficiency=0.78,
                        compute_half_GFLOP=0.5, size_exponent=0.8, overlap_exponent=3.0)
    m, nk = np.meshgrid(2.0 ** np.arange(0, 15), 2.0 ** np.arange(9, 15), indexing="ij")
    m, n, k = m.ravel(), nk.ravel(), nk.ravel()
    flops, bytes_ = 2 * m * n * k, (n * k + m * (n + k)) * 2
    t = kernel_seconds(truth, flops, bytes_, H100_PEAK, H100_BW)
    got = fit_curve(Rows(flops, bytes_, t, np.zeros(len(t), bool), None, "synthetic"), H100_PEAK, H100_BW)
    for field in ("t0_us", "memory_efficiency", "compute_efficiency", "memory_half_MB", "compute_half_GFLOP"):
        assert getattr(got, field) == pytest.approx(getattr(truth, field), rel=0.02), field
