"""Fitted profiles: a transferred profile scaled to published end-to-end runs on its part (AMD: no kernel tables).

A transferred profile carries a sibling's kernel efficiencies (engines/transfer.py); on another vendor's part (ROCm:
hipBLASLt, AITER, Triton kernels instead of cuBLAS, FlashAttention/FlashInfer) they are a starting point, not a
measurement. One factor s on every kernel's time absorbs the difference: t0 and per-item times times s, the roof
fractions e_max divided by s (capped at 1, so a fitted curve never beats the roofs). Without the cap every kernel's
time is exactly s times the transferred one (formulas/kernel_time.py: t0 + n per_item + x / (roof e(x)) are each
linear in 1 / e_max and in t0). s is fitted on published runs: the geometric median of measured / predicted time over
the fitted rows, iterated (vector operators and collectives are not scaled, so one pass is not exact).

fit_scale is a pure function of the rows and the base profile, so a leave-one-source-out ledger can refit it
without the publisher it scores.
"""

from __future__ import annotations

import math
import statistics
import zlib

from kvcalc.errors import KvcalcError
from kvcalc.specs.profile import EngineProfile, KernelCurve

KERNEL_SECTIONS = ("gemm", "attention_decode", "attention_prefill", "attention_decode_mla", "attention_prefill_mla",
                   "moe", "linear_attention_decode", "linear_attention_prefill")
RATES = {"decode_tokens_per_s", "throughput_out_tokens_per_s_per_gpu"}  # ledgers/published.RATES: higher is faster


def scale_curve(curve: KernelCurve, s: float) -> KernelCurve:
    """The curve with its time multiplied by s: t0 and per-item times x s, roof fractions / s (capped at 1)."""
    return curve.model_copy(update={
        "t0_us": curve.t0_us * s, "per_item_ns": curve.per_item_ns * s,
        "memory_efficiency": min(1.0, curve.memory_efficiency / s),
        "compute_efficiency": min(1.0, curve.compute_efficiency / s)})


def scale_kernels(profile: EngineProfile, s: float) -> EngineProfile:
    """Every kernel curve of the profile scaled by s (collectives unchanged)."""
    return profile.model_copy(update={
        section: {k: scale_curve(c, s) for k, c in getattr(profile, section).items()} for section in KERNEL_SECTIONS})


def time_ratio(point: dict, predicted: float) -> float:
    """measured / predicted, as a ratio of times (a rate's ratio inverted)."""
    m = point["measured"]
    return predicted / m if point["metric"] in RATES else m / predicted


def fit_rows(points: list[dict], gpu: str, engine: str) -> list[dict]:
    """The documented fit subset for gpu x engine: the rows marked `fit`; where none are, those whose crc32(id) is
    even (the same rule as the kernel fits), the odd ones held out."""
    mine = [p for p in points if p["gpu"] == gpu and p["engine"] == engine and not p["use"].startswith("excluded")]
    marked = [p for p in mine if p["use"] == "fit"]
    return marked or [p for p in mine if zlib.crc32(p["id"].encode()) % 2 == 0]


def fit_scale(rows: list[dict], base: EngineProfile, *, predict=None, rounds: int = 6) -> EngineProfile:
    """`base` (a transferred profile) with every kernel's time scaled by the factor that makes the median row's
    predicted time equal its measured one. rows: published measurements (ledgers/published.read_points) on base's
    GPU and engine; predict(point, profile) -> (expected, speed of light) defaults to ledgers/published.predict."""
    if predict is None:
        from kvcalc.ledgers.published import predict
    rows = [r for r in rows if r["gpu"] == base.gpu and r["engine"] == base.engine]
    if not rows:
        raise KvcalcError(f"--published: no rows for {base.gpu} x {base.engine} to fit")
    s = 1.0
    for _ in range(rounds):
        ratios = [time_ratio(r, predict(r, scale_kernels(base, s))[0]) for r in rows]
        step = math.exp(statistics.median(math.log(x) for x in ratios))
        s *= step
        if abs(math.log(step)) < 1e-3:
            break
    publishers = sorted({r.get("publisher") or r.get("source", "") for r in rows})
    method = (f"{base.method} Then fitted (kvcalc profiles fit-e2e, kvcalc/ledgers/fit_e2e.py): every kernel's time x "
              f"{s:.3f} (t0 and per-item times x {s:.3f}, roof fractions / {s:.3f}, capped at 1), the geometric median "
              f"of measured / predicted time over {len(rows)} published rows ({', '.join(r['id'] for r in rows)}); "
              "the other rows of the same CSV are held out.")
    return scale_kernels(base, s).model_copy(update={
        "provenance": "fitted", "time_scale": s, "fitted_on": [r["id"] for r in rows], "method": method,
        "sources": [*base.sources, *(f"fitted to: {p}" for p in publishers)]})


# A fitted factor beyond these bounds says the rows measure what kernel time does not (an engine's scheduler or
# serving stack, speculative decoding, a mislabelled setup), not that the part's kernels run that much slower or
# faster than its sibling's: such a fit is refused and the transferred profile kept.
SCALE_BOUNDS = (1 / 3, 3.0)


# A part with no published runs of its own whose kernels are another fitted part's: it takes that part's fitted
# scale on its own transferred profile (the twenty-fifth audit, G1: the MI325X, MI300X's compute die under the same
# ROCm engines, had been timed unscaled, its prefill 1.45x the MI300X's where their compute peaks are equal).
SCALE_SIBLINGS = {"mi325x": ("mi300x", "the MI325X has the MI300X's compute die (CDNA 3, the same peaks) and runs the "
                             "same ROCm engines; only its HBM3e differs")}


def carry_scale(base: EngineProfile, fitted: EngineProfile, why: str) -> EngineProfile:
    """`base` (the part's transferred profile) with the kernel-time scale of `fitted`, another part's fit."""
    s = fitted.time_scale or 1.0
    method = (f"{base.method} Then every kernel's time x {s:.3f}, the scale fitted on {fitted.gpu}'s published rows "
              f"({', '.join(fitted.fitted_on)}; kvcalc/ledgers/fit_e2e.py), carried over: {why}.")
    return scale_kernels(base, s).model_copy(update={
        "provenance": "fitted", "time_scale": s, "fitted_on": list(fitted.fitted_on), "method": method,
        "sources": [*base.sources, f"kernel-time scale: {fitted.gpu}.{fitted.engine}'s fit",
                    *(x for x in fitted.sources if x.startswith("fitted to: "))]})


def fit_bundled(points: list[dict], gpu: str, engine: str) -> EngineProfile:
    """The fitted GPU.ENGINE profile: the part's transferred profile (engines/transfer.transfer), scaled on the
    documented fit subset of `points` (fit_rows), or with its SCALE_SIBLINGS part's scale."""
    from kvcalc.engines.transfer import transfer

    if gpu in SCALE_SIBLINGS:
        sibling, why = SCALE_SIBLINGS[gpu]
        return carry_scale(transfer(gpu, engine), fit_bundled(points, sibling, engine), why)
    base = transfer(gpu, engine)
    fitted = fit_scale(fit_rows(points, base.gpu, engine), base)
    lo, hi = SCALE_BOUNDS
    if not lo <= fitted.time_scale <= hi:
        raise KvcalcError(f"--published: {base.gpu} x {engine}: the fit rows ask for kernel times x "
                          f"{fitted.time_scale:.3g}, outside [{lo:.3g}, {hi:g}]: they measure more than kernels "
                          "(scheduler, serving stack, setup); the transferred profile is kept")
    return fitted
