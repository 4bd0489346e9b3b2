"""Transferred engine profiles: a measured sibling's kernel curves carried onto a part without measured tables.

What carries over, and why. A kernel curve (formulas/kernel_time.py) is a fixed latency t0, a per-item time and
fractions of the roofs (e_max, x_half): t = t0 + n per_item + smoothmax(F / (peak e_c(F)), B / (BW e_m(B))). The
roofs are always the spec in use (formulas/roofline.step_time reads peak and BW from it), so a carried curve already
runs at the target's datasheet bandwidth and peaks; what carries over is how close the engine's kernels get to them.
Within a die or a generation (same SM, same libraries: cuBLAS/CUTLASS, FlashAttention/FlashInfer builds for that
architecture) those fractions and the fixed latencies are the kernels', not the memory's, and are kept; on a GeForce
part of a professional sibling's die, whose bf16 rate is a product tier, so is the time a small kernel's compute term
takes (_small_kernel_latency_kept). Across
generations no public figure scales them that we could cite; t0 (launch, prologue, tail) is set mostly by the
driver and the host, and is kept, and the method says the transfer crosses a generation. The collectives follow the
target's links, never the source's (engines/links.py). Fit records stay with the source: the kernel ledger
(`kvcalc profiles ledger`) scores measured profiles only, and the published ledger scores transferred ones apart
(EngineProfile.provenance).
"""

from __future__ import annotations

from kvcalc.engines.links import carry_collectives
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.specs.profile import EngineProfile

KERNEL_SECTIONS = ("gemm", "attention_decode", "attention_prefill", "attention_decode_mla", "attention_prefill_mla",
                   "moe", "linear_attention_decode", "linear_attention_prefill")
# GEMM/MoE keys that run at a peak of their own (formulas/roofline.GEMM_CURVES); a target without that peak has no
# such kernels, and the key is dropped rather than timed against a peak the part lacks.
KEY_PEAK = {"fp8": "fp8", "fp8_block": "fp8", "w8a8": "int8", "nvfp4": "fp4"}

# Each bundled part without measured tables: its closest measured sibling and why. AMD parts are transferred from
# Hopper and then fitted to published runs (ledgers/fit_e2e.py).
SIBLINGS = {
    "a100-pcie-80gb": ("a100-sxm-80gb", "same die (GA100), HBM2e; PCIe card with an NVLink bridge pair"),
    "a100-sxm-40gb": ("a100-sxm-80gb", "same die (GA100) and board (HGX A100), HBM2 instead of HBM2e"),
    "h100-pcie": ("h100-sxm", "same die (GH100), HBM2e; PCIe card with an NVLink bridge pair"),
    "h100-nvl": ("h100-sxm", "same die (GH100), HBM3; PCIe card with an NVLink bridge pair"),
    "gh200": ("h100-sxm", "same die (GH100) with HBM3, as H100 SXM"),
    "gh200-144gb": ("h200", "same die (GH100) with HBM3e, as H200"),
    "l4": ("l40s", "same generation (Ada Lovelace, AD104 against AD102)"),
    "rtx-4090": ("l40s", "same die (AD102)"),
    "a10": ("a100-sxm-80gb", "same generation (Ampere, GA102 against GA100); no GA102 part is measured"),
    "a10g": ("a100-sxm-80gb", "same generation (Ampere, GA102 against GA100); no GA102 part is measured"),
    "rtx-3090": ("a100-sxm-80gb", "same generation (Ampere, GA102 against GA100); no GA102 part is measured"),
    "rtx-5090": ("rtx-pro-6000", "same die (GB202)"),
    "t4": ("a100-sxm-80gb", "ACROSS generations (Turing, sm75) from the oldest measured one (Ampere, sm80)"),
    "v100-sxm2-32gb": ("a100-sxm-80gb", "ACROSS generations (Volta, sm70) from the oldest measured one (Ampere)"),
    "mi300x": ("h100-sxm", "ACROSS vendors: Hopper's kernel efficiencies on CDNA 3 roofs, then fitted to published runs"),
    # the MI300X's sibling, whose compute die it has: the two differ by their roofs only (the twenty-fifth audit, G1)
    "mi325x": ("h100-sxm", "ACROSS vendors: Hopper's kernel efficiencies on CDNA 3 roofs, as the MI300X's"),
    "mi355x": ("h200", "ACROSS vendors: Hopper's kernel efficiencies on CDNA 4 roofs (fp4 GEMMs: no Hopper fp4 curve; MXFP4 MoE: Hopper's w4a16 curve)"),
    "mi250x": ("h100-sxm", "ACROSS vendors and generations: Hopper's kernel efficiencies on CDNA 2 roofs"),
    "mi250x-gcd": ("h100-sxm", "ACROSS vendors and generations: Hopper's kernel efficiencies on CDNA 2 roofs"),
    "mi210": ("h100-sxm", "ACROSS vendors and generations: Hopper's kernel efficiencies on CDNA 2 roofs"),
}

# GeForce parts on their professional sibling's die, whose bf16 tensor peak is the fp32-accumulate rate, half the
# sibling's per SM (RTX 4090: 165.2 against the L40S's 362; RTX 5090 against the RTX PRO 6000): a product-tier limit
# the kernels' small sizes do not feel. Elsewhere a lower peak is fewer SMs or a lower clock (H100 PCIe: 114 SMs
# against 132), which small kernels do feel, and the curves' fractions of the peak are kept as they are (the
# thirty-third audit's review, 2).
TIER_SIBLINGS = frozenset({"rtx-4090", "rtx-5090"})


def _runs_on(key: str, hw: HardwareSpec) -> bool:
    return key not in KEY_PEAK or KEY_PEAK[key] in hw.peak_tflops.available()


def _peak_dtype(section: str, key: str) -> str:
    """The dtype whose peak a curve is evaluated against (formulas/roofline.profile_curve): a GEMM or MoE key's own
    (fp8, int8, fp4), else the 16-bit activations' (bf16)."""
    return KEY_PEAK.get(key, "bf16") if section in ("gemm", "moe") else "bf16"


def _small_kernel_latency_kept(curve, section: str, key: str, source_hw: HardwareSpec, target_hw: HardwareSpec):
    """The curve with compute_half_GFLOP moved so that a small kernel's compute term takes on the target what it takes
    on the source. That term, F / (peak e_max) x (1 + (half / F)^a), is F^(1-a) half^a / (peak e_max) for small F: a
    fixed cost of the kernel (its tiles, waves and tail), not of the datasheet peak, which only the saturated term
    F / (peak e_max) follows. Kept at the source's, half x (target peak / source peak)^(1/a). The thirty-third audit,
    agree F1: the RTX 4090's bf16 peak is the GeForce fp32-accumulate rate, 165 TFLOPS against the L40S's 362 on
    the same AD102, and SGLang's fused MoE at batch 1 (18.9 MFLOP a kernel, 0.1 % of the L40S curve's half) had
    doubled with it: 12.0 ms where the L40S takes 5.5 and the RTX 3090 4.4."""
    dtype = _peak_dtype(section, key)
    available = source_hw.peak_tflops.available()
    if dtype not in available or dtype not in target_hw.peak_tflops.available() or not curve.compute_half_GFLOP:
        return curve
    ratio = target_hw.peak_flops(dtype) / source_hw.peak_flops(dtype)
    half = curve.compute_half_GFLOP * ratio ** (1 / curve.size_exponent)
    return curve.model_copy(update={"compute_half_GFLOP": float(f"{min(half, 1e6):.6g}")})


# Curves fitted on a kernel only NVIDIA's builds run, and the source's curve of the kernel the engine runs instead on
# another vendor's part: vLLM on ROCm runs fp8 MoE through AITER or its Triton fused_experts
# (vllm/model_executor/layers/fused_moe/rocm_aiter_fused_moe.py, use_fp8_w8a8), never FlashInfer's CUTLASS MoE that
# Hopper's moe.fp8 table times (ModelOptFp8MoE, FlashInfer: CUDA only), so the source's Triton fp8 MoE curve (its
# fp8_block table's vllm_fp8moe_triton kernel) stands in. The thirty-fourth audit, AMD 2: the CUTLASS curve had
# decoded fp8 MoE on an MI300X 2x slower than bf16 (Mixtral-8x7B 20.3 ms against 10.1).
ACROSS_VENDOR_STAND_INS = {("moe", "fp8"): ("fp8_block", ("flashinfer", "cutlass"), "triton")}


def _stand_in(source: EngineProfile, section: str, key: str, curve):
    """The curve another vendor's part runs in place of `curve` (ACROSS_VENDOR_STAND_INS), and what was done in
    words; (curve, None) where it is kept."""
    rule = ACROSS_VENDOR_STAND_INS.get((section, key))
    kernels = (curve.fit.kernels if curve.fit is not None else "") or ""
    if rule is None or not any(k in kernels for k in rule[1]):
        return curve, None
    other = getattr(source, section).get(rule[0])
    if other is None or other.fit is None or rule[2] not in (other.fit.kernels or ""):
        return curve, None
    return other, (f"{section}.{key} from {source.gpu}'s {section}.{rule[0]} curve ({other.fit.kernels}: the "
                   f"{rule[2].title()} kernel the engine runs here; its {section}.{key} table times {kernels}, which "
                   "only NVIDIA's builds have)")


def transfer_profile(source: EngineProfile, source_hw: HardwareSpec, target_hw: HardwareSpec, *, why: str,
                     measured, load_gpu, same_die: bool = False) -> EngineProfile:
    """`source`'s curves on `target_hw`: kernel curves kept (they are fractions of whichever roofs are in use; GEMM
    formats the target has no peak for dropped), fit records left with the source, collectives re-derived for the
    target's links (engines/links.carry_collectives). measured(gpu, engine) -> bundled measured profile or None;
    load_gpu(name) -> bundled spec. same_die: the target is a GeForce part on the source's die (TIER_SIBLINGS), whose
    small kernels' compute time is kept where the peaks differ (_small_kernel_latency_kept)."""
    kernels = {}
    dropped, stood_in = [], []
    for section in KERNEL_SECTIONS:
        curves = {}
        for key, curve in getattr(source, section).items():
            if section in ("gemm", "moe") and not _runs_on(key, target_hw):
                dropped.append(f"{section}.{key}")
                continue
            if target_hw.vendor != source_hw.vendor:
                curve, said = _stand_in(source, section, key, curve)
                stood_in += [said] if said else []
            if same_die:
                curve = _small_kernel_latency_kept(curve, section, key, source_hw, target_hw)
            curves[key] = curve.model_copy(update={"fit": None})
        kernels[section] = curves
    allreduce, alltoall, links = carry_collectives(source, source_hw, target_hw, measured, load_gpu)
    method = (f"Transferred by `kvcalc profiles transfer --from {source.gpu} --to {target_hw.name} --engine "
              f"{source.engine}`: {why}. Kernel curves (t0, per-item times, fractions of the roofs) carried over "
              + ("and evaluated against " if same_die else "unchanged and evaluated against ")
              + f"{target_hw.name}'s own datasheet roofs"
              + (", each compute half-size moved by (peak ratio)^(1/a) so that a small kernel's compute time stays "
                 "the source's (a GeForce bf16 rate is a product tier, not fewer SMs)" if same_die else "")
              + (f"; dropped (no such peak on {target_hw.name}): {', '.join(dropped)}" if dropped else "")
              + (f"; {'; '.join(stood_in)}" if stood_in else "")
              + ". Collectives follow " + target_hw.name + "'s links: " + ("; ".join(links) or "none") + ".")
    return EngineProfile(
        gpu=target_hw.name, engine=source.engine, engine_version=source.engine_version,
        sources=[f"curves of {source.gpu}.{source.engine}: {source.sources[0]}",
                 f"roofs and links: hardware_specs/{target_hw.name}.toml"],
        notes=f"Fit records of the carried curves: hardware_specs/profiles/{source.gpu}.{source.engine}.toml.",
        provenance="transferred", transferred_from=f"{source.gpu}.{source.engine}", method=method,
        overhead=source.overhead, allreduce=allreduce, alltoall=alltoall, **kernels)


def retarget(profile: EngineProfile, reference_hw: HardwareSpec, hw: HardwareSpec, *, measured,
             load_gpu) -> EngineProfile:
    """A bundled profile applied to a spec that is not the one it was fitted against (an edited copy, or a spec
    borrowing another part's name): the same transfer, onto the spec in use."""
    base = profile if profile.provenance == "measured" else profile.model_copy(update={"provenance": "measured"})
    out = transfer_profile(base, reference_hw, hw, measured=measured, load_gpu=load_gpu,
                           why=f"the spec in use differs from hardware_specs/{reference_hw.name}.toml in its roofs "
                           "or links")
    return out.model_copy(update={"transferred_from": profile.label, "time_scale": profile.time_scale})


TRANSFER_ENGINES = ("vllm", "sglang", "trtllm")


def transfer(target: str, engine: str, source: str | None = None) -> EngineProfile:
    """The transferred GPU.ENGINE profile for a bundled part: from `source`'s measured profile, or its sibling's."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.catalog import engine_refusal, load_gpu, measured_profile

    target_hw = load_gpu(target)
    if engine in target_hw.unsupported_engines:
        raise KvcalcError(engine_refusal(engine, target_hw))
    if source is None:
        if target_hw.name not in SIBLINGS:
            raise KvcalcError(f"--to: no sibling listed for {target_hw.name}; name one with --from")
        source, why = SIBLINGS[target_hw.name]
    else:
        why = f"from {source}, as asked"
    source_hw = load_gpu(source)
    profile = measured_profile(source_hw.name, engine)
    if profile is None:
        raise KvcalcError(f"--from: {source_hw.name} has no measured {engine} profile to transfer")
    return transfer_profile(profile, source_hw, target_hw, why=why, measured=measured_profile, load_gpu=load_gpu,
                            same_die=target_hw.name in TIER_SIBLINGS and SIBLINGS[target_hw.name][0] == source_hw.name)


def missing_pairs() -> list[tuple[str, str]]:
    """(gpu, engine) of every bundled part x engine that runs there and has no measured profile."""
    from kvcalc.specs.catalog import bundled_specs, measured_profile

    return [(hw.name, e) for hw in bundled_specs("gpu") for e in TRANSFER_ENGINES
            if e not in hw.unsupported_engines and measured_profile(hw.name, e) is None]
