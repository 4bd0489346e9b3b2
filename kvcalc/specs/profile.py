"""EngineProfile: how fast one engine's kernels really run on one accelerator, fitted to measured tables.

A profile holds, per operator class and dtype, the few parameters of formulas/kernel_time.py (a fixed latency in
us, the largest fraction of each roof reached, and how that fraction rises with the kernel's size), each with the
record of its fit: which table, how many rows were fitted and held out, and the held-out error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvcalc.specs._base import StrictModel

GEMM_KEYS = ("bf16", "fp8", "fp8_block", "w8a8", "int8_wo", "int4_wo", "nvfp4")
LINEAR_KEYS = ("gated_deltanet",)  # kinds the tables measure (their Mamba-2 tables hold the conv alone)
MOE_KEYS = ("bf16", "fp8", "fp8_block", "int4_wo", "mxfp4")  # mxfp4: MXFP4 experts, bf16 activations (w4a16)
ATTENTION_KEYS = ("bf16", "fp8")


class FitRecord(StrictModel):
    """Where a curve's parameters come from and how well they reproduce measurements they were not fitted to."""

    table: str
    kernels: str = Field(description="the measured kernel(s); where several were measured, the fastest per shape")
    rows_fit: int = Field(ge=0)
    rows_held_out: int = Field(ge=0)
    fit_median_abs_error_pct: float = Field(ge=0)
    held_out_median_abs_error_pct: float | None = Field(None, ge=0)
    held_out_p90_abs_error_pct: float | None = Field(None, ge=0)
    rows_faster_than_datasheet: int | None = Field(
        None, ge=0, description="measured rows faster than max(FLOPs / peak, bytes / bandwidth): table and datasheet disagree")


class KernelCurve(StrictModel):
    """t = t0 + n * per_item + smoothmax(F / (peak * e_c(F)), B / (bandwidth * e_m(B))),
    e(x) = e_max x^a / (x^a + x_half^a); n counts (sequence, KV head) pairs for attention, input elements for GEMMs."""

    t0_us: float = Field(ge=0, le=1e5, description="fixed latency of one kernel [us]")
    # at least a millionth of the roof, as hardware specs' efficiencies: a denormal (5e-324) made times infinite (long fuzz)
    memory_efficiency: float = Field(ge=1e-6, le=1, description="largest fraction of the datasheet bandwidth reached")
    memory_half_MB: float = Field(ge=0, le=1e6, description="bytes moved [1e6 B] at which half of it is reached")
    compute_efficiency: float = Field(ge=1e-6, le=1, description="largest fraction of the datasheet dense peak reached")
    compute_half_GFLOP: float = Field(ge=0, le=1e6, description="FLOPs [1e9] at which half of it is reached")
    size_exponent: float = Field(1.0, ge=0.1, le=1, description="a: how sharply efficiency rises with size; a <= 1 keeps "
                                 "time = x / e(x) non-decreasing in x (a > 1 would make tiny kernels slower than small)")
    overlap_exponent: float = Field(4.0, ge=1, le=64, description="p of the smooth max; large p is the plain max")
    per_item_ns: float = Field(0.0, ge=0, le=1e6, description="time per work item [ns]: attention, per (sequence, KV "
                               "head) pair; GEMM, per input activation element (fp8's quantisation pass)")
    fit: FitRecord | None = None


class AllReduceCurve(StrictModel):
    """One all-reduce over tp GPUs: t = t0 + 2 (tp - 1) / tp * bytes / bus bandwidth."""

    t0_us: float = Field(ge=0, le=1e5)
    # 1 kB/s at the least: a spec's slowest link (0.01 GB/s) carries curves below it, a denormal made times infinite;
    # at most a spec's fastest link (1e7 GB/s, specs/hardware.py Bandwidth), onto which links.carry_collectives scales
    # a curve (the thirty-third audit, links 3: 1e5 here had made a 300,000 GB/s NVLink spec a pydantic traceback)
    bus_bandwidth_GBps: float = Field(ge=1e-6, le=1e7)
    fit: FitRecord | None = None


class EngineOverhead(StrictModel):
    """Time an engine spends outside its kernels: per step (scheduler, sampler, Python between kernels) and per
    request (API server, tokenisation, detokenisation; it lands in TTFT). Each figure names where it comes from."""

    step_us: float = Field(0.0, ge=0, le=1e6, description="added to every forward step [us]")
    step_us_per_extra_gpu: float = Field(0.0, ge=0, le=1e6, description="added to every step per GPU beyond the first "
                                         "(more worker processes to drive and synchronise) [us]")
    step_us_per_synced_layer: float = Field(0.0, ge=0, le=1e5, description="added to every step per layer whose "
                                            "GPUs synchronise (a tensor- or expert-parallel group: each layer's "
                                            "collective waits for the slowest GPU) [us]")
    request_ms: float = Field(0.0, ge=0, le=1e5, description="added once to each request's TTFT [ms]")
    sources: list[str] = Field(min_length=1, description="the published runs or code the figures come from")


class EngineProfile(StrictModel):
    gpu: str = Field(description="the bundled hardware spec whose roofs the curves were fitted against")
    engine: Literal["vllm", "sglang", "trtllm", "gpt-fast"] = Field(
        description="the engine whose kernels the curves time (the ninth round, H4: 'foo' had run with no overhead)")
    engine_version: str = Field(description="the release the kernels were measured on (a release number for vllm, "
                                "sglang and trtllm: it picks the overhead band; the ninth round, H5)")
    sources: list[str] = Field(min_length=1)
    notes: str = ""
    provenance: Literal["measured", "transferred", "fitted"] = Field(
        "measured", description="measured: fitted to this part's own kernel tables; transferred: a sibling's curves "
        "carried onto this part's roofs and links (kvcalc profiles transfer); fitted: transferred, then scaled to "
        "published end-to-end runs on this part (kvcalc profiles fit-e2e)")
    transferred_from: str | None = Field(None, description="GPU.ENGINE of the measured profile the curves come from")
    method: str = Field("", description="how the curves were carried over and what was fitted, in words")
    time_scale: float | None = Field(
        None, gt=0, le=100, description="fitted: the factor on every kernel's time (t0 and per-item times multiplied, "
        "roof efficiencies divided by it) that the published rows asked for")
    fitted_on: list[str] = Field(default_factory=list, description="fitted: ids of the published rows fitted")
    overhead: EngineOverhead | None = Field(None, description="time outside the kernels; None: not modelled")
    moe_time_scale: float = Field(
        1.0, gt=0, le=100, description="factor on the fused-MoE kernel's time (moe curves), never on the speed of "
        "light: an older release's MoE layers against these tables (engines/kernel_eras.py)")
    moe_time_scale_source: str = Field("", description="where moe_time_scale comes from, in words")
    gemm: dict[str, KernelCurve] = Field(default_factory=dict, description="by weight format: " + ", ".join(GEMM_KEYS))
    attention_decode: dict[str, KernelCurve] = Field(default_factory=dict, description="by KV dtype: bf16, fp8")
    attention_prefill: dict[str, KernelCurve] = Field(default_factory=dict, description="by KV dtype: bf16, fp8")
    attention_decode_mla: dict[str, KernelCurve] = Field(
        default_factory=dict, description="MLA decode (absorbed, over the latent), by KV dtype; else attention_decode")
    attention_prefill_mla: dict[str, KernelCurve] = Field(
        default_factory=dict, description="MLA prefill (expanded per head), by KV dtype; else attention_prefill")
    moe: dict[str, KernelCurve] = Field(
        default_factory=dict, description="one fused MoE layer (routed experts), by weight format; else the GEMM curve")
    allreduce: dict[str, AllReduceCurve] = Field(default_factory=dict, description="by group size: tp2, tp4, tp8")
    alltoall: dict[str, AllReduceCurve] = Field(
        default_factory=dict, description="NCCL all-to-all (expert-parallel dispatch and combine), by group size: ep2, "
        "ep4, ep8; t = t0 + (n - 1) / n * bytes / bus bandwidth")
    linear_attention_decode: dict[str, KernelCurve] = Field(
        default_factory=dict, description="one linear-attention layer's conv and recurrence on a decode step, by kind: "
        "gated_deltanet")
    linear_attention_prefill: dict[str, KernelCurve] = Field(
        default_factory=dict, description="the same over a prompt (the chunked form), by kind: gated_deltanet")

    @model_validator(mode="after")
    def _check_keys(self) -> EngineProfile:
        import re

        if self.engine != "gpt-fast" and not re.match(r"\s*v?\d{1,4}\.\d{1,4}", self.engine_version):
            raise ValueError(f"engine_version: expected the {self.engine} release the kernels were measured on "
                             f"(such as 0.24.0), got {self.engine_version[:40]!r}")
        for table, allowed in (("gemm", GEMM_KEYS), ("attention_decode", ATTENTION_KEYS),
                               ("attention_prefill", ATTENTION_KEYS), ("attention_decode_mla", ATTENTION_KEYS),
                               ("attention_prefill_mla", ATTENTION_KEYS),
                               ("moe", MOE_KEYS), ("linear_attention_decode", LINEAR_KEYS),
                               ("linear_attention_prefill", LINEAR_KEYS)):
            unknown = set(getattr(self, table)) - set(allowed)
            if unknown:
                raise ValueError(f"{table}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(allowed)}")
        for key in self.allreduce:
            if not (key.startswith("tp") and key[2:].isdigit() and int(key[2:]) >= 2):
                raise ValueError(f"allreduce: key {key!r} should be tpN with N >= 2")
        for key in self.alltoall:
            if not (key.startswith("ep") and key[2:].isdigit() and int(key[2:]) >= 2):
                raise ValueError(f"alltoall: key {key!r} should be epN with N >= 2")
        if self.provenance != "measured" and not (self.transferred_from and self.method):
            raise ValueError(f"provenance {self.provenance}: needs transferred_from and method (where the curves "
                             "come from and how they were carried over)")
        return self

    @property
    def label(self) -> str:
        """GPU.ENGINE, and where its curves come from when they are not this part's own measurements."""
        own = f"{self.gpu}.{self.engine}"
        return own if self.provenance == "measured" else f"{own}, {self.provenance} from {self.transferred_from}"
