"""Compose the formulas into one Estimate: the table, --explain and the JSON output all read this."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from kvcalc.checks import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_TOKENS,
    case_hint,
    check_int,
    check_number,
    check_speculate,
    past_positions,
)
from kvcalc.dtypes import FP8_BLOCK_SIDE, KV_DTYPES, WEIGHT_DTYPES, activation_dtype, bytes_per_element
from kvcalc.engines.formats import engine_kv_refusal
from kvcalc.engines.overhead import describe, overhead_seconds, synced_layers, with_band
from kvcalc.engines.kernel_eras import describe as describe_era
from kvcalc.engines.memory import ENGINE_MEMORY_RULES, engine_sequences_held
from kvcalc.engines.links import dispatch_copies
from kvcalc.errors import AssumptionWarning, KvcalcError
from kvcalc.formulas._array import maximum, minimum, nonzero
from kvcalc.formulas.forward import (
    Precision,
    decode_ops,
    forward_ops,
    mixed_ops,
    prefill_ops,
)
from kvcalc.formulas.kv import (
    kv_bytes_per_sequence,
    kv_bytes_per_token,
    kv_bytes_per_token_per_layer,
    kv_elements_per_token_per_layer,
)
from kvcalc.formulas.memory import (
    DEFAULT_MEMORY_UTILIZATION,
    DEFAULT_PREFILL_CHUNK,
    memory_required,
    replica_batch,
)
from kvcalc.formulas.parallel import (
    allreduce_curves,
    allreduce_seconds,
    alltoall_link_bandwidth,
    beyond_node,
    fullest_share,
    check_ep,
    expert_parallel_comm_seconds,
    group_link_bandwidth,
    group_link_label,
    kv_bytes_all_gpus,
    microbatches,
    nccl_ring,
    pipeline_fill_fraction,
    pipeline_send_seconds,
    stage_link_bandwidth,
    shard_experts,
    shard_op,
)
from kvcalc.formulas.params import counted_once, params_breakdown, weight_bytes
from kvcalc.formulas.roofline import (
    StepTime,
    engine_dtype,
    intensity,
    ridge_point,
    step_time,
)
from kvcalc.formulas.workload import chunk_weight_rereads, prompts_in
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs import HardwareSpec, ModelSpec
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.specs.profile import EngineProfile
from kvcalc.units import fmt_bytes


class Inputs(BaseModel):
    model: str
    gpu: str
    attention: str
    batch: int
    context: int
    prompt: int
    weight_dtype: str
    kv_dtype: str
    activation_dtype: str
    memory_utilization: float
    prefill_chunk: int  # tokens whose activation workspace is reserved (one chunked-prefill step)
    engine: str  # the time model: an engine profile's name, or roofline (datasheet efficiencies)
    profile: str | None  # the profile's engine version and source tables; None for the roofline
    tensor_parallel: int
    pipeline_parallel: int = 1  # stages of tensor_parallel GPUs each; GPUs in all: tp x pp
    expert_parallel: int = 1  # GPUs the routed experts spread over (data-parallel attention replicas of tp)
    allreduce_link: str  # the link the tensor-parallel all-reduces cross, in words


class KvCache(BaseModel):
    elements_per_token_per_layer: int
    bytes_per_token_per_layer: float
    bytes_per_token: float  # all layers, while the token is inside every sliding window
    bytes_per_sequence: float  # one sequence at the context (sliding windows applied)
    bytes: float  # the whole batch at the context, on all the GPUs together (replicated parts once a GPU)


class Weights(BaseModel):
    params: int
    active_params: int
    bytes: float  # the checkpoint's weights, one copy (what every GPU keeps whole counted once)
    breakdown: dict[str, int]


class Memory(BaseModel):
    capacity_bytes: float
    usable_bytes: float
    weights_bytes: float
    kv_cache_bytes: float  # at max(context, prompt)
    activations_bytes: float
    # with --speculate: the draft's weights and its KV cache at max(context, prompt) (speculation.py); 0 without
    draft_bytes: float = 0.0
    required_bytes: float  # weights + KV cache + activations + draft
    headroom_bytes: float  # usable - required; negative when it does not fit
    fits: bool


class Operator(BaseModel):
    name: str
    op_class: str
    dtype: str
    flops: float
    bytes: float
    arithmetic_intensity: float
    ms: float
    bound: str
    kernels: int  # launches the time model counted (a measured fused MoE: one module per layer)
    work_items_per_kernel: float  # attention: (sequence, KV head) pairs each kernel works on; 0 otherwise
    time_model: str  # the engine profile's curve that timed it (e.g. "vllm gemm.bf16"), or "roofline"


class Phase(BaseModel):
    ms: float
    speed_of_light_ms: float
    tokens_per_s: float
    bound: str
    flops: float
    bytes: float
    weight_bytes: float
    kv_read_bytes: float
    kv_write_bytes: float
    activation_bytes: float
    arithmetic_intensity: float
    ridge_point: float
    allreduce_ms: float  # tensor-parallel all-reduces, included in ms
    pipeline_ms: float = 0.0  # pipeline stages' activation sends (and a prefill's pipeline fill), included in ms
    overhead_ms: float = 0.0  # the engine's time outside its kernels (scheduler, sampler, Python), included in ms
    hypothetical: bool  # the workload does not fit in memory
    operators: list[Operator]


class Speculative(BaseModel):
    """Speculative decoding at this batch and context (kvcalc/formulas/speculative.py)."""

    method: str
    draft_model: str | None
    k: int  # tokens drafted per verify step (a tree's depth)
    verify_tokens: int  # tokens the verify pass runs per sequence: k + 1, or a tree's nodes
    alpha: float | None  # per-token acceptance; None when accepted_tokens_per_step was given
    tokens_per_step: float  # expected tokens each sequence gains per verify step
    verify_ms: float
    draft_ms: float
    ms_per_token: float  # (verify + draft) / tokens_per_step
    tokens_per_s: float  # over the batch
    speedup: float  # plain decode step / ms_per_token
    verify_arithmetic_intensity: float
    breakeven_batch: int | None  # smallest power-of-two batch where speedup <= 1 (None: not up to 4096)
    draft_weights_bytes: float  # per GPU
    draft_kv_bytes: float  # per GPU, for the batch at this context
    draft_prefill_ms: float | None = None  # the draft's own pass over the batch's prompts, beside the prefill step


class Estimate(BaseModel):
    inputs: Inputs
    kv_cache: KvCache
    weights: Weights
    memory: Memory
    decode: Phase
    prefill: Phase
    speculative: Speculative | None = None
    warnings: list[str]

    def to_json_dict(self) -> dict:
        """The document `kvcalc estimate --format json` prints (docs/json-schema.md, docs/schema/estimate.json):
        schema_version first, every section, decode.step_ms alongside decode.ms, byte counts as integers rounded half
        up, and each null's KEY_note beside it (serialize.json_safe; the fortieth audit, outputs 4: `speculative`
        had been null with no note, and the document short of the version its schema requires)."""
        from kvcalc.serialize import json_safe

        out = self.model_dump()
        out["decode"]["step_ms"] = out["decode"]["ms"]
        return json_safe(out)


def _check_workload(batch, context, prompt, weight_dtype, kv_dtype, memory_utilization, engine=None) -> None:
    check_int("--batch", batch, 1, MAX_BATCH)
    check_int("--context", context, 0, MAX_TOKENS)
    check_int("--prompt", prompt, 1, MAX_TOKENS)
    check_dtypes(weight_dtype, kv_dtype, engine)
    check_memory_utilization(memory_utilization)


def check_memory_utilization(memory_utilization: float) -> None:
    check_number("--memory-utilization", memory_utilization, 0, 1, lo_open=True)


def check_prefill_chunk(prefill_chunk) -> None:
    check_int("--prefill-chunk", prefill_chunk, 1, 10**7)


def check_dtypes(weight_dtype: str, kv_dtype: str, engine: str | None = None) -> None:
    """Known formats; with `engine`, a KV format that engine stores (ENGINE_KV_REFUSED)."""
    if weight_dtype not in WEIGHT_DTYPES and weight_dtype != "auto":
        raise KvcalcError(f"--weight-dtype: unknown dtype {weight_dtype!r}{case_hint(weight_dtype, WEIGHT_DTYPES)}; "
                          f"expected auto or one of {', '.join(WEIGHT_DTYPES)}")
    if kv_dtype not in KV_DTYPES:
        raise KvcalcError(f"--kv-dtype: unknown dtype {kv_dtype!r}{case_hint(kv_dtype, KV_DTYPES)}; expected one of "
                          f"{', '.join(KV_DTYPES)}")
    why = engine_kv_refusal(engine, kv_dtype)
    if why is not None:
        raise KvcalcError(why)


def resolve_weight_dtype(weight_dtype: str, spec: ModelSpec) -> str:
    """'auto': the format the model's checkpoint stores (its quantization spec, from config.json's
    quantization_config), else bf16; anything else as given."""
    if weight_dtype != "auto":
        return weight_dtype
    return spec.quantization.weight_format if spec.quantization is not None else "bf16"


def load_deployment(model, gpu, weight_dtype: str, kv_dtype: str):
    """(model spec, accelerator spec, resolved weight format, precision) for the planning commands."""
    spec, hw = load_model(model), load_gpu(gpu)
    weight_dtype = resolve_weight_dtype(weight_dtype, spec)
    return spec, hw, weight_dtype, precision(weight_dtype, kv_dtype)


def alltoall_curve(profile: EngineProfile | None, hw: HardwareSpec, ep: int):
    """The all-to-all an expert-parallel group of ep GPUs runs: the profile's measured NCCL curve for ep; where it has
    none for ep (a group past its NVLink domain), the largest measured group's fixed latency with the transfer over
    the spec's own link (half its bidirectional figure, formulas/parallel.alltoall_link_bandwidth: past the domain
    the share for other nodes over the GPU's NIC) or at the largest group's bus bandwidth, the slower, so that
    a larger group is never timed faster than a measured smaller one (the seventh audit, B7: 16 H200s over InfiniBand
    had come out 5x faster than 8 over NVLink, with no latency at all); None without measured curves (the bare
    transfer)."""
    from kvcalc.specs.profile import AllReduceCurve

    if profile is None or not profile.alltoall:
        return None
    exact = profile.alltoall.get(f"ep{ep}")
    link = alltoall_link_bandwidth(hw, ep)
    if exact is not None or not link:
        return exact
    largest = profile.alltoall[max(profile.alltoall, key=lambda k: int(k.removeprefix("ep")))]
    # nor at more than the largest group's measured bus bandwidth (the thirty-third audit, links 1: eight L40S over
    # PCIe measure 1.0 GB/s, and sixteen had been timed at the datasheet's 32, 60x faster)
    return AllReduceCurve(t0_us=largest.t0_us, bus_bandwidth_GBps=min(link / 2 / 1e9, largest.bus_bandwidth_GBps))


def check_tp(tp, spec: ModelSpec, weight_dtype: str | None = None, ep: int = 1) -> None:
    """--tp as the engines shard the model (tp_refusal) and, given the resolved weight format, its fp8 scale blocks
    (fp8_block_refusal)."""
    check_int("--tp", tp, 1, MAX_GPUS)
    why = tp_refusal(spec, tp, ep) or (fp8_block_refusal(spec, weight_dtype, tp, ep) if weight_dtype else None)
    if why:
        raise KvcalcError(f"--tp: {why}")


def fp8_block_refusal(spec: ModelSpec, weight_dtype: str, tp: int, ep: int = 1) -> str | None:
    """Why fp8-block weights cannot be split over tp GPUs, or None. Each GPU's slice of a block-quantised matrix must
    hold whole 128-wide blocks: vLLM refuses to load a checkpoint whose slice does not, for the routed experts'
    gate/up/down widths (Fp8MoEMethod.create_weights, vllm/model_executor/layers/quantization/fp8.py: "The output_size
    of gate's and up's weight = 192 is not divisible by weight quantization block_n = 128") and for a row-parallel
    layer's input (validate_fp8_block_shape, .../quantization/utils/fp8_utils.py at 364d019: the MLP's down_proj,
    the attention's o_proj); SGLang prints the same error (its fp8 path is adapted from vLLM's). Expert parallelism
    (ep > 1) keeps each expert whole. The seventh audit, W6: Qwen3-235B-A22B-FP8 at --tp 8 (1,536 / 8 = 192) was
    priced, where users' logs show both engines refusing it and running --enable-expert-parallel instead."""
    if tp == 1 or weight_dtype != "fp8-block":
        return None
    a, q = spec.attention, spec.quantization
    classes = set(q.quantized) if q is not None and q.weight_format == "fp8-block" else {"attention", "mlp", "experts",
                                                                                         "shared_experts"}
    widths = []
    if "attention" in classes and spec.attention_layers:
        widths.append(("attention output projection's", a.num_heads * a.value_head_dim))
    if "mlp" in classes and (spec.moe is None or spec.moe.first_dense_layers or spec.moe.every > 1):
        widths.append(("MLP", spec.mlp.intermediate_size))
    if spec.moe is not None:
        if "experts" in classes and ep == 1:
            widths.append(("experts'", spec.moe.expert_intermediate_size))
        if "shared_experts" in classes and spec.moe.num_shared_experts:
            widths.append(("shared experts'", spec.moe.shared_width))
    for what, width in widths:
        if width % tp == 0 and (width // tp) % FP8_BLOCK_SIDE:
            fix = " (--ep keeps the experts whole)" if what == "experts'" else ""
            return (f"fp8-block weights over {tp} GPUs: the {what} width {width:,} / {tp} = {width // tp:,} is not a "
                    f"multiple of the {FP8_BLOCK_SIDE}-wide scale block, and vLLM and SGLang refuse to load such a "
                    f"slice{fix}")
    return None


def tp_refusal(spec: ModelSpec, tp: int, ep: int = 1) -> str | None:
    """Why tensor parallelism over tp GPUs cannot shard this model as the engines shard it, or None. vLLM's (and
    SGLang's, adapted from it) linear layers divide exactly: QKVParallelLinear splits the KV heads evenly where
    tp <= their number and otherwise replicates each over tp / heads GPUs (`divide` asserts both), and
    MergedColumnParallelLinear divides the MLP's width (vllm/model_executor/layers/linear.py). The seventh audit, B6:
    Qwen2-7B at --tp 7 (4 KV heads, width 18,944) and Phi-3-medium at --tp 4 (10 KV heads: 2.5 a GPU) were priced.
    Under expert parallelism (ep > 1) the routed experts stay whole (vLLM's --enable-expert-parallel, SGLang's
    --ep-size), so their width need not divide (the eighth audit, V5)."""
    a = spec.attention
    if a.num_heads % tp:
        return f"tensor parallelism over {tp} GPUs needs it to divide the {a.num_heads} query heads"
    if a.kind != "mla" and spec.attention_layers:
        g = a.kv_heads
        if (g % tp if tp <= g else tp % g):
            return (f"{tp} GPUs cannot share {spec.name}'s {g} KV heads: engines split them evenly (a --tp dividing "
                    f"{g}) or replicate each over the same number of GPUs (a multiple of {g})")
    la = spec.linear_attention
    if la is not None and la.kind == "mamba2" and la.num_key_heads > 1 and la.num_key_heads % tp:
        # vLLM's MambaMixer2 asserts n_groups % tp == 0 or n_groups == 1 (model_executor/layers/mamba/mamba_mixer2.py;
        # the twelfth audit, E4: Nemotron-H-8B's 8 groups had been priced at --tp 16)
        return (f"tensor parallelism over {tp} GPUs needs it to divide the {la.num_key_heads} Mamba-2 groups "
                "(n_groups), as vLLM's MambaMixer2 asserts")
    widths = []
    if spec.moe is None or spec.moe.first_dense_layers or spec.moe.every > 1:
        widths.append(("MLP", spec.mlp.intermediate_size))
    if spec.moe is not None:
        if ep == 1:
            widths.append(("experts'", spec.moe.expert_intermediate_size))
        if spec.moe.num_shared_experts:
            widths.append(("shared experts'", spec.moe.shared_width))
    for what, width in widths:
        if width % tp:
            return f"tensor parallelism over {tp} GPUs needs it to divide the {what} width {width:,}"
    return None


def check_pp(pp, spec: ModelSpec) -> None:
    check_int("--pp", pp, 1, MAX_GPUS)
    if pp > spec.num_layers:
        raise KvcalcError(f"--pp: {pp} pipeline stages exceed {spec.name}'s {spec.num_layers} layers")


def deployment_profile(path, engine: str, hw: HardwareSpec, notes: list[str] | None = None) -> EngineProfile:
    """--profile FILE: an engine profile file (kvcalc calibrate --from-benchmark writes one) for this GPU; notes: the
    output's warnings, which get the notice of a profile moved onto an edited spec."""
    from pathlib import Path

    from kvcalc.specs.catalog import load_spec_file

    if not str(path).strip():  # the sixth audit: --profile '' had been taken as no profile, without a word
        raise KvcalcError("--profile: empty; expected an engine profile file (kvcalc calibrate --from-benchmark "
                          "writes one)")
    try:
        profile = load_spec_file("profile", Path(path))
    except KvcalcError as e:  # named by the flag; a hardware or model spec passed here says what it is not
        raise KvcalcError(f"--profile: {e}" + ("; expected an engine profile file (engine, gpu and curves), not a "
                                               "hardware or model spec" if "unknown field" in str(e) else "")) from None
    from kvcalc.specs.catalog import bundled_path, onto_spec

    reference = bundled_path("gpu", profile.gpu)
    if profile.gpu != hw.name:
        if reference is None:  # the tenth audit, H8: "pass --gpu zz" for a GPU that is none
            raise KvcalcError(f"--profile: {path} names the GPU {profile.gpu!r}, which is not a bundled GPU; fix its "
                              f"gpu field (this run's is {hw.name})")
        if reference != bundled_path("gpu", hw.name):  # an alias of the same part is that part (the thirty-fourth
            # audit, specs 6: gpu = "h100" had been refused beside -g h100)
            raise KvcalcError(f"--profile: {path} was fitted on {profile.gpu}, not {hw.name}; pass --gpu "
                              f"{profile.gpu}")
    if engine not in ("auto", profile.engine):
        raise KvcalcError(f"--profile: {path} is a {profile.engine} profile; drop --engine {engine}")
    # onto the spec in use, as a bundled profile is: an edited copy's roofs and links, not the reference's (the
    # thirty-fourth audit, specs 1: an H800 copy of the H100 spec had all-reduced on the H100's 900 GB/s curve)
    return onto_spec(profile, hw, notes) if reference is not None else profile


def file_profile(path, engine: str, hw: HardwareSpec, engine_version: str | None,
                 notes: list[str] | None = None) -> EngineProfile:
    """--profile FILE for estimate, serve and the simulator (deployment_profile), refusing an --engine-version
    beside a profile that states its own overheads (the sixth audit: the release band's step cost had silently
    replaced the one fitted on the user's run)."""
    profile = deployment_profile(path, engine, hw, notes)
    if profile.overhead is not None and engine_version not in (None, "latest"):
        raise KvcalcError(f"--engine-version: {path} states its own overheads (fitted on your benchmark, of the "
                          "release you ran); drop --engine-version, or --profile to time another release")
    return profile


def time_model_text(profile: EngineProfile | None, spec: ModelSpec | None = None) -> str:
    """What timed an answer, in words, for the assumptions of serve, capacity and the simulator alike: the profile
    (measured, transferred or fitted, and from what), its release band's overheads and an older release's MoE
    factor (engine_label), or the datasheet roofline."""
    name, label = engine_label(profile, spec)
    return f"{name} {label} measured kernel curves" if label else "datasheet efficiencies (roofline)"


def engine_label(profile: EngineProfile | None, spec: ModelSpec | None = None) -> tuple[str, str | None]:
    """(engine name, profile description) for the output; an older release's MoE factor only for a model with routed
    experts (the fourth audit: a dense model's time-model line named a factor that changes none of its numbers)."""
    if profile is None:
        return "roofline", None
    overhead = describe(profile)
    era = describe_era(profile) if spec is None or spec.moe is not None else ""
    return profile.engine, (f"{profile.label} ({profile.engine} {profile.engine_version}; "  # label: provenance
                            f"{profile.sources[0]})" + (f"; {overhead}" if overhead else "")
                            + (f"; {era}" if era else ""))


# Formats to suggest when the weights overflow, largest first: fp8 (Hopper and later natively, older GPUs as
# weight-only Marlin kernels in vLLM) and 4-bit AWQ/GPTQ with group 128, which every engine kvcalc models runs.
SMALLER_WEIGHT_FORMATS = ("fp8", "int4-g128")
MOST_TP = 64  # the largest tensor-parallel degree the overflow hint tries ("up to 64" in its message)


def weights_overflow(spec: ModelSpec, weight_dtype: str, usable_bytes: float, tp: int = 1, pp: int = 1,
                     ep: int = 1, *, hw: HardwareSpec | None = None, engine: str | None = None) -> str | None:
    """When the weights alone overflow one GPU's usable memory: one line saying by how much, the fewest
    tensor-parallel GPUs (a degree the model divides by, tp_refusal: GPT-3 175B's 24, not only powers of two, the tenth
    audit's E7) that hold them at this format, and the largest
    smaller format that holds them on these GPUs; None when they fit. Weights per GPU: formulas/params.py
    weight_bytes_per_gpu; "hold" counts the weights only (the KV cache and activations need room on top). With hw, a
    format the engine (vLLM, the widest, for the roofline) does not load on that part is not offered (the twenty-eighth
    audit, H1: fp8 had been offered on an MI210, where it does not start)."""
    from kvcalc.engines.formats import engine_format_refusal
    from kvcalc.engines.launch import LAUNCHED
    from kvcalc.formulas.params import weight_bytes_per_gpu

    def per_gpu(dtype: str, t: int) -> float:
        return weight_bytes_per_gpu(spec, bytes_per_element(dtype), t, pp, ep)

    weights = per_gpu(weight_dtype, tp)
    if weights <= usable_bytes:
        return None
    gpus = tp * pp if ep == 1 else ep
    fixes = []
    if ep == 1:
        fewest = next((t for t in range(tp + 1, MOST_TP + 1) if tp_refusal(spec, t) is None
                       and fp8_block_refusal(spec, weight_dtype, t) is None
                       and per_gpu(weight_dtype, t) <= usable_bytes), None)
        if fewest is not None:
            fixes.append(f"--tp {fewest} holds them at {weight_dtype}" + (f" ({fewest * pp} GPUs)" if pp > 1 else ""))
    smaller = next((f for f in SMALLER_WEIGHT_FORMATS if bytes_per_element(f) < bytes_per_element(weight_dtype)
                    and per_gpu(f, tp) <= usable_bytes
                    and (hw is None or engine_format_refusal(engine if engine in LAUNCHED else "vllm",
                                                             hw, f) is None)), None)
    if smaller is not None:
        fixes.append(f"--weight-dtype {smaller} holds them on {gpus} GPU{'s' if gpus > 1 else ''}")
    hint = "; ".join(fixes) if fixes else "no tensor-parallel degree up to 64 or smaller format holds them"
    return (f"the weights alone ({fmt_bytes(weights)} a GPU at {weight_dtype}) exceed the {fmt_bytes(usable_bytes)} "
            f"usable by {fmt_bytes(weights - usable_bytes)}: {hint}")


def precision(weight_dtype: str, kv_dtype: str) -> Precision:
    act = activation_dtype(weight_dtype)
    return Precision(b_w=bytes_per_element(weight_dtype), b_kv=bytes_per_element(kv_dtype), b_a=bytes_per_element(act))


@dataclass(frozen=True)
class Evaluation:
    """Every quantity of one scenario, or of a grid of them: batch, context and prompt may be numpy arrays."""

    spec: ModelSpec
    hw: HardwareSpec
    p: Precision
    weight_dtype: str
    memory: dict  # memory_required(): weights, kv_cache, activations, total
    usable_bytes: float
    decode: StepTime
    decode_sol: StepTime
    prefill: StepTime
    prefill_sol: StepTime
    comm_s: Any  # tensor-parallel all-reduce time per decode step
    prefill_comm_s: Any  # and over the prefill
    comm_sol_s: Any  # the decode step's all-reduces at the datasheet link rate, no latency (speed of light)
    prefill_comm_sol_s: Any
    pipeline_s: Any = 0.0  # pipeline stages: the decode step's activation sends
    prefill_pipeline_s: Any = 0.0  # and the prefill's sends plus its pipeline fill
    prefill_pipeline_sol_s: Any = 0.0

    @property
    def fits(self):
        return self.memory["total"] <= self.usable_bytes


def unprofiled_note(ev: Evaluation, profile: EngineProfile | None, engine: str, weight_dtype: str,
                    kv_dtype: str) -> str | None:
    """The warning that operators of this evaluation fell back to the datasheet efficiencies (the profile has no
    measured curve for them), or None; W8A8 int8 timed by a weight-only table is said too (formulas/roofline.py
    GEMM_CURVES; the twenty-third audit, G6: vLLM's int8 prefill on an H100 1.9x bf16's, with no word)."""
    unprofiled = sorted(set(ev.decode.unprofiled) | set(ev.prefill.unprofiled))
    name = profile.engine if profile else engine
    stand_in = (f"--weight-dtype int8 (W8A8): the {name} profile has no measured W8A8 kernel, so its GEMMs are timed "
                "by the weight-only int8 table (W8A16 at the 16-bit peak), slower than int8 tensor cores run (twice "
                "the bf16 peak on most parts); --engine roofline gives the int8 bound"
                if weight_dtype == "int8" and profile is not None and "w8a8" not in profile.gemm
                and "int8_wo" in profile.gemm else None)
    if not unprofiled:
        return stand_in
    note = (f"the {name} profile has no measured curve for {', '.join(unprofiled)} "
            f"with {weight_dtype} weights and {kv_dtype} KV: those operators use the datasheet efficiencies")
    return f"{note}; {stand_in}" if stand_in else note


def unprofiled_operators(spec: ModelSpec, hw: HardwareSpec, profile: EngineProfile | None, weight_dtype: str,
                         kv_dtype: str, tp: int = 1, pp: int = 1, ep: int = 1) -> str | None:
    """unprofiled_note for a deployment (serve, the simulator, capacity): its operators at one sequence, where they
    are all present (the sixth audit: only estimate had said so)."""
    if profile is None:
        return None
    ev = evaluate(spec, hw, batch=max(ep // tp, 1), context=1024, prompt=1024, weight_dtype=weight_dtype,
                  kv_dtype=kv_dtype, tp=tp, profile=profile, pp=pp, ep=ep)
    return unprofiled_note(ev, profile, profile.engine, weight_dtype, kv_dtype)


def evaluate(spec: ModelSpec, hw: HardwareSpec, *, batch, context, prompt, weight_dtype: str, kv_dtype: str,
             memory_utilization: float = DEFAULT_MEMORY_UTILIZATION, tp: int = 1,
             profile: EngineProfile | None = None, prefill_chunk: int = DEFAULT_PREFILL_CHUNK, pp: int = 1,
             ep: int = 1) -> Evaluation:
    """Compose the formulas for one model on one accelerator (per GPU of a tensor-parallel group of tp, in pp
    pipeline stages); the expected times come from the engine profile's measured curves where given, else the
    datasheet efficiencies. With pp > 1 the operators are those of one micro-batch through the whole depth
    (formulas/parallel.py), and the phases add the stage-to-stage sends and the prefill's pipeline fill. With
    ep > 1 (expert parallel, ep GPUs in all) a GPU runs its data-parallel replica's sequences through attention,
    ceil(batch / (ep / tp)) whole ones in the fullest replica (a sequence lives in one replica; the step is as slow
    as the fullest), and 1 / ep of the whole batch's expert work, with a dispatch and a combine per MoE layer."""
    p = precision(weight_dtype, kv_dtype)
    m = microbatches(batch, pp)
    micro = batch / m if pp > 1 else batch
    if ep > 1:  # data-parallel attention replicas of tp GPUs, the fullest with ceil(batch / dp); experts over all ep
        micro = replica_batch(batch, ep, tp)
    dec = [shard_op(o, spec, tp) for o in decode_ops(spec, micro, context, p)]
    pre = [shard_op(o, spec, tp) for o in prefill_ops(spec, micro, prompt, p)]
    if ep > 1:
        def experts(ops, tokens):  # the busiest GPU's share of the experts the step's tokens touch
            return shard_experts(next(o for o in ops if o.name == "moe/routed"), ep, spec, tokens)

        dec = [o for o in dec if o.name != "moe/routed"] + [experts(decode_ops(spec, batch, context, p), batch)]
        pre = [o for o in pre if o.name != "moe/routed"] + [experts(prefill_ops(spec, batch, prompt, p),
                                                                    batch * prompt)]
    link = group_link_bandwidth(hw, tp) if tp > 1 else None
    curve, floor = allreduce_curves(profile.allreduce if profile is not None else {}, tp)
    ring = nccl_ring(hw, tp) if tp > 1 else None

    def timed(ops, speed_of_light):
        return step_time(ops, hw, weight_dtype, speed_of_light=speed_of_light, profile=profile, kv_dtype=kv_dtype)

    decode, decode_sol, prefill, prefill_sol = timed(dec, False), timed(dec, True), timed(pre, False), timed(pre, True)
    step_overhead_s = overhead_seconds(profile, max(tp * pp, ep),  # engines/overhead.py; never in the SOL
                                       synced_layers(spec.num_layers, tp, ep))[0]
    decode, prefill = (replace(t, overhead_s=step_overhead_s) for t in (decode, prefill))
    ev = dict(
        comm_s=allreduce_seconds(spec, micro, p.b_a, tp, link, curve, ring, floor),
        prefill_comm_s=allreduce_seconds(spec, micro * prompt, p.b_a, tp, link, curve, ring, floor),
        comm_sol_s=allreduce_seconds(spec, micro, p.b_a, tp, link) if link or tp == 1 else 0.0,
        prefill_comm_sol_s=allreduce_seconds(spec, micro * prompt, p.b_a, tp, link) if link or tp == 1 else 0.0,
    )
    if ep > tp:  # the attention's all-reduce stays within tp; the MoE's becomes a dispatch and a combine
        # (at ep = tp every GPU already holds every token: the experts' outputs are all-reduced as under TP)
        ep_link = alltoall_link_bandwidth(hw, ep)
        a2a = alltoall_curve(profile, hw, ep)  # NCCL's measured all-to-all
        for key, tokens in (("comm_s", micro), ("prefill_comm_s", micro * prompt)):
            ev[key] = expert_parallel_comm_seconds(spec, ev[key], tokens, p.b_a, ep, ep_link, a2a, tp,
                                                   dispatch_copies(profile, ep))
        # the floor moves a token once to each GPU its experts are on, at most min(top_k, ep) of them, which no
        # engine's dispatch undercuts (the thirty-ninth audit, fuzz 1: top_k copies at ep 2 < top_k 8 had put the
        # speed of light at 4x the bytes vLLM's all-gather moves, a prefill of 152.7 ms beside a floor of 245.9)
        for key, tokens in (("comm_sol_s", micro), ("prefill_comm_sol_s", micro * prompt)):
            ev[key] = expert_parallel_comm_seconds(spec, ev[key], tokens, p.b_a, ep, ep_link, tp=tp,
                                                   copies=min(spec.moe.top_k, ep) if spec.moe else None)
    if pp > 1:
        stage_link = stage_link_bandwidth(hw, tp, pp)
        fill = pipeline_fill_fraction(m, pp)
        pre_send = pipeline_send_seconds(spec, micro * prompt, p.b_a, pp, stage_link)
        ev.update(
            pipeline_s=pipeline_send_seconds(spec, micro, p.b_a, pp, stage_link),
            prefill_pipeline_s=pre_send + fill * (prefill.seconds + ev["prefill_comm_s"]),
            prefill_pipeline_sol_s=pre_send + fill * (prefill_sol.seconds + ev["prefill_comm_sol_s"]),
        )
    return Evaluation(
        spec=spec, hw=hw, p=p, weight_dtype=weight_dtype,
        memory=memory_required(spec, batch, context, prompt, p.b_w, p.b_kv, p.b_a, tp, prefill_chunk, pp, ep),
        usable_bytes=hw.visible_memory_bytes * memory_utilization,
        decode=decode, decode_sol=decode_sol, prefill=prefill, prefill_sol=prefill_sol, **ev,
    )


def phase_metrics(step: StepTime, sol: StepTime, tokens, hw: HardwareSpec, weight_dtype: str, comm_s=0.0,
                  comm_sol_s=None, pipeline_s=0.0, pipeline_sol_s=None) -> dict:
    """Headline numbers of one phase; works elementwise on arrays. comm_sol_s: the all-reduces at the speed of
    light (ideal ring at the datasheet link rate); defaults to comm_s. pipeline_s: pipeline stages' sends (and a
    prefill's fill), likewise. FLOPs and bytes are one micro-batch's under pipeline parallelism."""
    costs = [t.op.cost for t in step.ops]
    flops = sum(c.flops for c in costs)
    bytes_ = sum(c.bytes for c in costs)
    seconds = step.seconds + comm_s + pipeline_s
    return {
        "ms": seconds * 1e3,
        "speed_of_light_ms": (sol.seconds + (comm_s if comm_sol_s is None else comm_sol_s)
                              + (pipeline_s if pipeline_sol_s is None else pipeline_sol_s)) * 1e3,
        "tokens_per_s": tokens / seconds,
        "bound": step.bound,
        "flops": flops,
        "bytes": bytes_,
        "weight_bytes": sum(c.weight_bytes for c in costs),
        "kv_read_bytes": sum(c.kv_read_bytes for c in costs),
        "kv_write_bytes": sum(c.kv_write_bytes for c in costs),
        "activation_bytes": sum(c.act_bytes for c in costs),
        "arithmetic_intensity": intensity(flops, bytes_),
        "ridge_point": ridge_point(hw.peak_flops(engine_dtype("matmul", weight_dtype, hw)), hw.bandwidth_Bps),
        "allreduce_ms": comm_s * 1e3,
        "pipeline_ms": pipeline_s * 1e3,
        "overhead_ms": step.overhead_s * 1e3,
    }


def _phase(step: StepTime, sol: StepTime, tokens: int, hw: HardwareSpec, weight_dtype: str, fits: bool,
           comm_s: float, comm_sol_s: float, engine: str, pipeline_s: float = 0.0,
           pipeline_sol_s: float | None = None) -> Phase:
    return Phase(
        **phase_metrics(step, sol, tokens, hw, weight_dtype, comm_s, comm_sol_s, pipeline_s, pipeline_sol_s),
        hypothetical=not fits,
        operators=[
            Operator(
                name=t.op.name, op_class=t.op.op_class, dtype=t.dtype, flops=t.op.cost.flops, bytes=t.op.cost.bytes,
                arithmetic_intensity=intensity(t.op.cost.flops, t.op.cost.bytes) if t.op.cost.bytes else 0.0,
                ms=t.seconds * 1e3, bound="compute" if t.compute_bound else "memory",
                kernels=t.op.layers if t.curve.startswith("moe.") else t.op.kernels,
                work_items_per_kernel=t.op.items_per_kernel, time_model=f"{engine} {t.curve}" if t.curve else "roofline",
            )
            for t in step.ops
        ],
    )


class SpeculativeTimer:
    """Times speculative decoding of one model on one deployment: plain decode, verify and draft steps, for a
    batch and context that may be numpy arrays (sweep)."""

    def __init__(self, spec: ModelSpec, hw: HardwareSpec, speculate: str, *, weight_dtype: str, kv_dtype: str,
                 tp: int = 1, profile: EngineProfile | None = None, ep: int = 1):
        from kvcalc.speculation import load_draft, mtp_depth_refusal, parse

        self.sp = parse(speculate)
        if why := mtp_depth_refusal(spec, self.sp):  # every command times speculation here: estimate, compare, sweep,
            # capacity, serve, simulate, plan and the web pages (the fortieth audit, speculate 1)
            raise KvcalcError(why)
        self.draft = load_draft(self.sp.draft) if self.sp.method == "draft" and self.sp.draft else None
        if self.draft is not None and self.draft.vocab_size != spec.vocab_size:
            raise KvcalcError(f"--speculate: the draft {self.draft.name} has a vocabulary of "
                              f"{self.draft.vocab_size:,}, the target {spec.vocab_size:,}: a draft must share the "
                              "target's tokenizer")
        self.spec, self.hw, self.tp, self.profile, self.ep = spec, hw, tp, profile, ep
        self.weight_dtype, self.kv_dtype = weight_dtype, kv_dtype
        self.p = precision(weight_dtype, kv_dtype)
        # once per plain or verify step (the target's layers synchronising its group); drafts run inside it
        self.overhead_s = overhead_seconds(profile, tp, synced_layers(spec.num_layers, tp))[0]
        # what each of the draft's own layers adds when they too synchronise the group (the seventh audit's
        # verification, W2): a draft model's layers, or the one layer of an EAGLE head or MTP module, a step
        per_layer = overhead_seconds(profile, tp, 1)[0] - overhead_seconds(profile, tp, 0)[0]
        draft_layers = {"draft": self.draft.num_layers if self.draft else 0, "eagle": 1, "mtp": 1}.get(
            self.sp.method, 0)
        self.draft_sync_s = per_layer * synced_layers(draft_layers, tp)
        self.link = group_link_bandwidth(hw, tp) if tp > 1 else None
        self.curve, self.floor = allreduce_curves(profile.allreduce if profile is not None else {}, tp)
        self.ring = nccl_ring(hw, tp) if tp > 1 else None

    def _seconds(self, ops, model, tokens):
        sharded = [shard_op(o, model, self.tp) for o in ops]
        t = step_time(sharded, self.hw, self.weight_dtype, speed_of_light=False, profile=self.profile,
                      kv_dtype=self.kv_dtype)
        return (t.seconds + allreduce_seconds(model, tokens, self.p.b_a, self.tp, self.link, self.curve, self.ring,
                                              self.floor),
                sharded)

    def draft_weight_bytes(self) -> float:
        """The draft's own weights on one GPU [B] (formulas/speculative.py draft_weight_bytes_per_gpu)."""
        from kvcalc.formulas.speculative import draft_weight_bytes_per_gpu

        return draft_weight_bytes_per_gpu(self.spec, self.sp.method, self.sp.k, self.draft, self.p.b_w, self.tp,
                                          self.ep)

    def draft_kv_bytes_per_sequence(self, tokens):
        """The draft's KV cache for one sequence of `tokens` on one GPU [B] (formulas/speculative.py; 0 for Medusa)."""
        from kvcalc.formulas.speculative import draft_kv_bytes_per_sequence

        return draft_kv_bytes_per_sequence(self.spec, self.sp.method, self.sp.k, self.draft, tokens, self.p.b_kv,
                                           self.tp)

    def draft_bytes(self, batch, tokens):
        """What the draft adds to one GPU's memory with `batch` sequences of `tokens` there [B]: its weights and
        batch x its KV cache per sequence. Works on numbers or numpy arrays."""
        return self.draft_weight_bytes() + batch * self.draft_kv_bytes_per_sequence(tokens)

    def sequences_held(self, tokens, pool_bytes, pp: int = 1) -> int:
        """Sequences of `tokens` a KV pool per GPU (net of the draft's weights) holds with the draft's cache beside
        the target's (formulas/speculative.py)."""
        from kvcalc.formulas.speculative import sequences_held

        return sequences_held(self.spec, self.sp.method, self.sp.k, self.draft, tokens, pool_bytes, self.p.b_kv, self.tp,
                              pp)

    def longest_context(self, batch, pool_bytes, pp: int = 1) -> float:
        """The longest context `batch` sequences reach in a KV pool per GPU (net of the draft's weights) with the
        draft's cache beside the target's (formulas/speculative.py)."""
        from kvcalc.formulas.speculative import longest_context

        return longest_context(self.spec, self.sp.method, self.sp.k, self.draft, batch, pool_bytes, self.p.b_kv,
                               self.tp, pp)

    def draft_chunk_seconds(self, chunk, prompts=1.0):
        """The draft's own pass over a step's prompt tokens [s] (0 without any), `prompts` prompts' pieces of
        chunk / prompts tokens each: a draft model prefills them into its own cache, and an EAGLE head or the MTP
        modules (one layer and its fc each) run over them, as vLLM's drafter proposes from the step's new tokens,
        prompts included; Medusa's heads read the target's last hidden state only. Attention over each prompt's
        earlier chunks is left out (the draft's is small beside its linears). The seventh audit, B4: TTFT with an 8B
        draft of a 70B model had left out its 47 ms prefill; the fourteenth, E3: 32 prompts had been one causal
        sequence of 32 x 8,192 tokens, a 1B draft's prefill slower than its 8B target's."""
        from kvcalc.formulas.forward import Op
        from kvcalc.formulas.speculative import draft_layer, fc_cost

        if self.sp.method in ("medusa", "ngram"):  # no draft model or layer runs over the prompt
            return 0.0 * chunk
        model = self.draft if self.sp.method == "draft" else draft_layer(self.spec, self.sp.method)
        ops = mixed_ops(model, decode_batch=0, context=0, chunk=maximum(chunk, 1), chunk_context=0, p=self.p,
                        chunk_prompts=maximum(prompts, 1.0))
        if self.sp.method != "draft":
            ops = [*ops, Op("draft/fc", "projection", "matmul", fc_cost(self.spec, maximum(chunk, 1), self.p))]
        # one pass: the one MTP module's (or EAGLE head's) cache of the prompt, however many draft steps reuse it
        return nonzero(chunk) * (self._seconds(ops, model, maximum(chunk, 1))[0] + self.draft_sync_s)

    def draft_seconds(self, batch, context, group_batch=None):
        """The drafts of one verify step for `batch` sequences: k sequential draft steps, or Medusa's heads once [s].
        group_batch: under expert parallelism, the sequences of the whole expert-parallel group, whose draft tokens an
        EAGLE or MTP layer of a MoE target sends to the experts spread over the ep GPUs, as the target's are."""
        from kvcalc.formulas.speculative import draft_layer, draft_ops

        w = self.sp.draft_width
        d_ops, steps = draft_ops(self.spec, self.sp.method, batch, context, self.sp.k, self.p, self.draft, w)
        if not steps:  # n-gram lookup: no draft runs on the GPU
            return 0.0 * batch
        # a draft model's all-reduces are its own layers'; an EAGLE head's, an MTP module's or Medusa's heads' those of
        # the one layer they run, as draft_chunk_seconds takes them (the twentieth audit, N1: every draft step had
        # been charged the target's 122 all-reduces, DeepSeek-V3's MTP at TP 8 1.34 ms where its layer takes 0.1)
        synced = self.draft if self.sp.method == "draft" else draft_layer(self.spec, self.sp.method)
        if group_batch is not None and self.ep > 1 and synced.moe is not None and self.sp.method == "mtp":
            return (self._expert_parallel_draft(d_ops, synced, batch * w, group_batch * w) + self.draft_sync_s) * steps
        return (self._seconds(d_ops, synced, batch * w)[0] + self.draft_sync_s) * steps

    def _expert_parallel_draft(self, ops, layer, tokens, group_tokens):
        """One draft step of an EAGLE or MTP layer under expert parallelism: its attention and shared parts for this
        replica's tokens, its routed experts as the busiest GPU's share of the group's (shard_experts: each GPU holds
        1 / ep of them, as draft_weight_bytes_per_gpu counts), and a dispatch and combine (the twentieth audit, N6:
        one GPU had read every expert the group's tokens touch, 11 GB a step for DeepSeek-V3's MTP at --ep 8 and
        batch 1,024, where it holds 1.4)."""
        from kvcalc.formulas.parallel import expert_parallel_comm_seconds, shard_experts

        routed = next(o for o in forward_ops(layer, batch=group_tokens, q=1, context=0, absorbed=True, p=self.p)
                      if o.name == "moe/routed")
        local = [shard_op(o, layer, self.tp) for o in ops if o.name != "moe/routed"]
        t = step_time([*local, shard_experts(routed, self.ep, layer, group_tokens)], self.hw, self.weight_dtype,
                      speed_of_light=False, profile=self.profile, kv_dtype=self.kv_dtype).seconds
        comm = allreduce_seconds(layer, tokens, self.p.b_a, self.tp, self.link, self.curve, self.ring,
                                 self.floor)
        if self.ep > self.tp:
            comm = expert_parallel_comm_seconds(layer, comm, tokens, self.p.b_a, self.ep,
                                                alltoall_link_bandwidth(self.hw, self.ep),
                                                alltoall_curve(self.profile, self.hw, self.ep), self.tp,
                                                dispatch_copies(self.profile, self.ep))
        return t + comm

    def times(self, batch, context):
        """(plain decode step, verify step, draft time per verify, time per token, verify operators) [s]."""
        from kvcalc.formulas.speculative import time_per_token, verify_ops

        sp, spec, p = self.sp, self.spec, self.p
        plain, _ = self._seconds(decode_ops(spec, batch, context, p), spec, batch)
        verify, ops = self._seconds(verify_ops(spec, batch, context, sp.verify_tokens, p), spec,
                                    batch * sp.verify_tokens)
        plain, verify = plain + self.overhead_s, verify + self.overhead_s
        drafting = self.draft_seconds(batch, context)
        return plain, verify, drafting, time_per_token(verify, drafting, sp.tokens_per_step()), ops

    def breakeven_batch(self, context) -> int | None:
        """The power-of-two batch from which speculation is no faster than plain decoding up to 4096 (None: it still
        pays at 4096). On a MoE the speed-up is not monotone (verifying k + 1 tokens wakes more experts at small
        batches): the sixth audit found 1 here, beside a 1.66x speed-up at batch 64, where it loses at 1-8 and pays
        from 16 on; the batch after the last one where it pays is the one that holds."""
        return breakeven_after(lambda b: (t := self.times(b, context))[0] > t[3])


def breakeven_after(pays_at) -> int | None:
    """The power-of-two batch (1 ... 4096) after the last one where speculation pays (pays_at(batch): the plain step
    is longer than the speculative step per token), 1 where it never does, None where it still pays at 4096: the
    rule of both timing paths, plain and under --pp / --ep (the seventh audit, V10: the latter had kept the first
    batch where it loses, "1x or less from batch 1" beside a 1.55x speed-up)."""
    batches = [2 ** n for n in range(13)]
    pays = [b for b in batches if pays_at(b)]
    if not pays:
        return 1
    return None if pays[-1] == batches[-1] else pays[-1] * 2


def attention_label(spec: ModelSpec) -> str:
    """The attention a model runs, as estimate and sweep name it: its kind (mha, gqa, mqa, mla), or linear where every
    layer is linear (--attn linear: no softmax attention is left to name; the tenth audit, E12, and the thirty-eighth,
    sweep 2, where sweep had still said gqa)."""
    return "linear" if spec.linear_attention is not None and not spec.attention_layers else spec.attention.kind


class StepTimer:
    """Times one step of a deployment (serve's continuous batching, estimate's speculative steps under pp or ep):
    tp GPUs in each of pp pipeline stages, or an expert-parallel group of ep, its engine profile, its dtypes.

    prompt_len: the tokens of one prompt's piece in the chunk (a prompt's length, or the mean piece weighted by its
    tokens); the chunk then holds chunk / prompt_len prompts (at least one), each attending only to itself
    (formulas/forward.py mixed_ops' chunk_prompts). Without it the chunk is one prompt's piece.

    With pp stages the step's work runs as min(decodes + prompts in the chunk, pp) micro-batches
    (formulas/parallel.py): a step is the whole depth at one micro-batch's share of the decodes and of the prompt
    chunk, plus the stage-to-stage sends. The chunk splits over micro-batches only by whole prompts: each
    micro-batch carries at least one prompt's piece, min(chunk, prompt_len), so load never shortens a prompt's
    prefill (audit F6), and a chunk of many short prompts is spread over the stages (the long fuzz: a wave of 64
    prompts ran as one micro-batch); likewise it carries at least one whole decode where there is one (the long
    fuzz: one decode beside a prompt was timed as half a decode, below its speed of light)."""

    def __init__(self, spec, hw, p, tp, profile, weight_dtype, kv_dtype, pp=1, ep=1, speculative=None):
        self.spec, self.hw, self.p, self.tp, self.pp, self.ep, self.profile = spec, hw, p, tp, pp, ep, profile
        self.speculative = speculative  # a SpeculativeTimer: each decode is a verify step of k + 1 (or tree) tokens
        self.decode_q = speculative.sp.verify_tokens if speculative else 1
        self.decode_gain = speculative.sp.tokens_per_step() if speculative else 1.0  # tokens a decode step yields
        # ... and by how many of its decode_q tokens a step's budget let through (0 to decode_q)
        self.decode_yields = speculative.sp.yields() if speculative else (0.0, 1.0)
        self.ep_link = alltoall_link_bandwidth(hw, ep) if ep > tp else None
        self.weight_dtype, self.kv_dtype = weight_dtype, kv_dtype
        self.link = group_link_bandwidth(hw, tp) if tp > 1 else None
        self.stage_link = stage_link_bandwidth(hw, tp, pp) if pp > 1 else None
        self.curve, self.floor = allreduce_curves(profile.allreduce if profile is not None else {}, tp)
        self.ring = nccl_ring(hw, tp) if tp > 1 else None
        self.a2a = alltoall_curve(profile, hw, ep) if ep > tp else None
        self.overhead_s = overhead_seconds(profile, max(tp * pp, ep),  # the engine's time outside its kernels
                                           synced_layers(spec.num_layers, tp, ep))[0]
        self.split = True  # under pp: a step's work spread over min(decodes + prompts, pp) micro-batches ...
        self.max_micro = None  # ... and at most this many (a wave: the step budgets its prompts fill)

    def _with(self, **changes) -> "StepTimer":
        import copy

        timer = copy.copy(self)
        timer.__dict__.update(changes)
        return timer

    def at_most_micro_batches(self, count: int) -> "StepTimer":
        """This timer with a step spread over at most `count` micro-batches (under pp): the engines keep requests
        admitted together in one micro-batch, so a wave runs as the step budgets its prompts fill, not as its
        requests (the thirty-eighth audit, Serve 1: a wave of 64 short prompts at pp 4 had been spread over four,
        TTFT 64.9 ms where the engines' one micro-batch takes 162)."""
        return self._with(max_micro=max(int(count), 1))

    def one_micro_batch(self) -> "StepTimer":
        """This timer with the step's work taken as one micro-batch through the whole depth (under pp), as the
        simulator forms the engines' micro-batches itself (serving/simulate.py simulate_schedule)."""
        return self._with(split=False)

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None) -> float:
        if self.ep > 1:
            return self._expert_parallel_seconds(decode_batch, context, chunk, chunk_context, prompt_len)
        ops, decode_batch, chunk, prompts = self.step_ops(decode_batch, context, chunk, chunk_context, prompt_len)
        return self.time_ops(ops, decode_batch, chunk, context, prompts=prompts)

    def step_ops(self, decode_batch, context, chunk, chunk_context, prompt_len=None) -> tuple:
        """(the step's operators before sharding, one micro-batch's decodes, its chunk, the prompts whose pieces share
        it): the part of `seconds` that depends only on the model, the precision, pp and decode_q (not on tp, the GPU
        or the engine profile), so a search can build it once for many StepTimers (serving/replica.py seconds_many).
        Not under ep > 1."""
        # formulas/_array.py: numbers or numpy arrays alike
        whole = nonzero(prompt_len)
        prompts = prompts_in(chunk, prompt_len) if whole else (chunk > 0) * 1.0
        m = maximum(1.0, minimum(decode_batch + prompts, self.pp if self.max_micro is None else
                                 min(self.pp, self.max_micro))) if self.split else 1.0
        decode_batch = fullest_share(decode_batch, m)
        if whole:
            chunk = maximum(chunk / m, minimum(chunk, prompt_len))  # prompts not cut (F6)
            prompts = prompts_in(chunk, prompt_len)
        prompts = maximum(prompts, 1.0)
        return mixed_ops(self.spec, decode_batch=decode_batch, context=context, chunk=chunk,
                         chunk_context=chunk_context, p=self.p, decode_q=self.decode_q,
                         chunk_prompts=prompts), decode_batch, chunk, prompts

    def time_ops(self, ops, decode_batch, chunk, context, shards: dict | None = None, prompts=1.0) -> float:
        """The step's time from step_ops' operators, decodes and chunk: the operators sharded over tp and timed by
        the profile, plus drafting, the all-reduces, the pipeline sends and the engine's overhead [s]. shards: a dict
        the caller keeps for these operators (of this model), where each tp's sharded operators are kept for the next
        StepTimer that times them."""
        if shards is not None and self.tp in shards:
            ops = shards[self.tp]
        else:
            ops = [shard_op(o, self.spec, self.tp) for o in ops]
            if shards is not None:
                shards[self.tp] = ops
        t = step_time(ops, self.hw, self.weight_dtype, speed_of_light=False, profile=self.profile,
                      kv_dtype=self.kv_dtype).seconds
        tokens = decode_batch * self.decode_q + chunk
        drafting = (self.speculative.draft_seconds(decode_batch, context) if self.speculative and nonzero(decode_batch)
                    else 0.0)
        if self.speculative is not None:  # the draft's own pass over the step's prompt tokens (B4)
            drafting = drafting + self.speculative.draft_chunk_seconds(chunk, prompts)
        comm = allreduce_seconds(self.spec, tokens, self.p.b_a, self.tp, self.link, self.curve, self.ring,
                                 self.floor)
        return (t + drafting + comm + pipeline_send_seconds(self.spec, tokens, self.p.b_a, self.pp, self.stage_link)
                + self.overhead_s)


    def _expert_parallel_seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None) -> float:
        """A step of the whole expert-parallel group: each of the ep / tp data-parallel replicas runs its share of
        the decodes and prompts through attention; the experts see all of them, 1 / ep each (formulas/parallel.py).
        A prompt lives in one replica and is not cut: as under pp, the fullest replica's chunk is at least one
        prompt's piece, min(chunk, prompt_len), and without prompt_len the chunk is one prompt's, whole (fuzz 2:
        serve's TTFT under --ep was below one prompt's prefill speed of light)."""
        dp, q = self.ep // self.tp, self.decode_q
        local_chunk = maximum(chunk / dp, minimum(chunk, prompt_len)) if nonzero(prompt_len) else chunk
        # the fullest replica holds at least one whole decode where there is one (the fresh audit: one request at
        # --ep 8 read an eighth of its own KV cache, TPOT 0.77 ms under a 1.27 ms speed of light)
        local_decodes = fullest_share(decode_batch, dp)
        prompts = maximum(prompts_in(local_chunk, prompt_len), 1.0) if nonzero(prompt_len) else 1
        local = [shard_op(o, self.spec, self.tp) for o in mixed_ops(
            self.spec, decode_batch=local_decodes, context=context, chunk=local_chunk, chunk_context=chunk_context,
            p=self.p, decode_q=q, chunk_prompts=prompts) if o.name != "moe/routed"]
        # the routed experts see every token of the step: mixed_ops' shared pass over decode_batch x q + chunk tokens
        routed = next(o for o in forward_ops(self.spec, batch=decode_batch * q + chunk, q=1, context=0, absorbed=True,
                                             p=self.p) if o.name == "moe/routed")
        t = step_time([*local, shard_experts(routed, self.ep, self.spec, decode_batch * q + chunk)], self.hw,
                      self.weight_dtype, speed_of_light=False,
                      profile=self.profile, kv_dtype=self.kv_dtype).seconds
        tokens = local_decodes * q + local_chunk  # the fullest replica's
        comm = allreduce_seconds(self.spec, tokens, self.p.b_a, self.tp, self.link, self.curve, self.ring,
                                 self.floor)
        if self.ep > self.tp:
            comm = expert_parallel_comm_seconds(self.spec, comm, tokens, self.p.b_a, self.ep, self.ep_link, self.a2a,
                                                self.tp, dispatch_copies(self.profile, self.ep))
        # each replica drafts for its own sequences, an EAGLE or MTP layer's experts spread over the group as the
        # target's are (N6), and passes its own prompts through the draft (the seventh audit's verification, W1)
        drafting = (self.speculative.draft_seconds(local_decodes, context, group_batch=decode_batch)
                    if self.speculative and nonzero(decode_batch) else 0.0)
        if self.speculative is not None:
            drafting = drafting + self.speculative.draft_chunk_seconds(local_chunk, prompts)
        return t + comm + drafting + self.overhead_s


def layout_times(timer: SpeculativeTimer, tp: int, pp: int, ep: int):
    """Under pp or ep: (the plain step and the speculative step as StepTimer runs them, one to a batch and context)."""
    args = (timer.spec, timer.hw, timer.p, tp, timer.profile, timer.weight_dtype, timer.kv_dtype, pp, ep)
    plain, spec = StepTimer(*args), StepTimer(*args, timer)
    return (lambda b, s: plain.seconds(b, s, 0, 0)), (lambda b, s: spec.seconds(b, s, 0, 0))


def speculative_block(spec: ModelSpec, hw: HardwareSpec, speculate: str, *, batch: int, context: int,
                      weight_dtype: str, kv_dtype: str, tp: int, profile: EngineProfile | None, pp: int = 1,
                      ep: int = 1, timer: SpeculativeTimer | None = None, prompt: int | None = None) -> Speculative:
    """Time one speculative step (verify + draft) against a plain decode step, and find where it stops paying.
    Under pp or ep both steps are timed as serve times them (micro-batches through the stages; data-parallel
    attention replicas each drafting for their own sequences, experts over ep GPUs); the verify intensity is then
    the tensor-parallel verify pass's. timer: the SpeculativeTimer of these settings, if one was built already."""
    if timer is None:
        timer = SpeculativeTimer(spec, hw, speculate, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp,
                                 profile=profile, ep=ep)
    sp, draft = timer.sp, timer.draft
    plain, verify, drafting, per_token, ops = timer.times(batch, context)
    breakeven = timer.breakeven_batch(context)
    if pp > 1 or ep > 1:
        plain_step, spec_step = layout_times(timer, tp, pp, ep)
        # the draft's share of StepTimer's step: one micro-batch's sequences under pp (the step is one micro-batch's
        # depth), the fullest replica's under ep (the fourth audit: the whole batch's draft, subtracted from a
        # micro-batch's step, left a verify of -0.91 ms)
        drafting = timer.draft_seconds(fullest_share(batch, ep // tp if ep > 1 else microbatches(batch, pp)), context,
                                       group_batch=batch if ep > 1 else None)
        step = spec_step(batch, context)
        plain, verify, per_token = plain_step(batch, context), step - drafting, step / sp.tokens_per_step()
        breakeven = breakeven_after(lambda b: plain_step(b, context) > spec_step(b, context) / sp.tokens_per_step())
    flops = sum(o.cost.flops for o in ops)
    bytes_ = sum(o.cost.bytes for o in ops)
    return Speculative(
        method=sp.method, draft_model=draft.name if draft else None, k=sp.k, verify_tokens=sp.verify_tokens,
        alpha=sp.alpha,
        tokens_per_step=sp.tokens_per_step(), verify_ms=verify * 1e3, draft_ms=drafting * 1e3,
        ms_per_token=per_token * 1e3, tokens_per_s=batch / per_token, speedup=plain / per_token,
        verify_arithmetic_intensity=intensity(flops, bytes_), breakeven_batch=breakeven,
        draft_weights_bytes=timer.draft_weight_bytes(),
        # the sequences one GPU holds (an --ep replica's share, as memory.kv_cache_bytes counts them) at this context
        draft_kv_bytes=replica_batch(batch, ep, tp) * timer.draft_kv_bytes_per_sequence(context),
        # the draft's pass over the prompts, which serve and the simulator add to TTFT (SpeculativeTimer.
        # draft_chunk_seconds; the fullest data-parallel replica's under --ep; the eighth round: estimate had none)
        draft_prefill_ms=(timer.draft_chunk_seconds(fullest_share(batch, ep // tp if ep > 1 else 1) * prompt,
                                                    fullest_share(batch, ep // tp if ep > 1 else 1)) * 1e3
                          if prompt else None),
    )


def estimate(
    model: str | ModelSpec,
    gpu: str | HardwareSpec = "h100-sxm",
    *,
    attn: str | None = None,
    batch: int = 1,
    context: int = 4096,
    prompt: int | None = None,
    weight_dtype: str = "auto",
    kv_dtype: str = "bf16",
    kv_lora_rank: int | None = None,
    rope_dim: int | None = None,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    engine: str = "auto",
    tp: int = 1,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    pp: int = 1,
    ep: int = 1,
    speculate: str | None = None,
    engine_version: str | None = None,
    profile_file: str | None = None,
) -> Estimate:
    """KV cache, weights, memory and decode and prefill time for one model on one accelerator (memory per GPU of
    a tensor-parallel group of tp; KV cache and weights for the whole deployment). The keywords are
    estimate_with_specs's, which returns the specs as well; `kvcalc estimate --help` describes each."""
    return estimate_with_specs(
        model, gpu, attn=attn, batch=batch, context=context, prompt=prompt, weight_dtype=weight_dtype,
        kv_dtype=kv_dtype, kv_lora_rank=kv_lora_rank, rope_dim=rope_dim, memory_utilization=memory_utilization,
        engine=engine, tp=tp, prefill_chunk=prefill_chunk, pp=pp, ep=ep, speculate=speculate,
        engine_version=engine_version, profile_file=profile_file,
    )[0]


def load_recording_assumptions(model: str | ModelSpec, warnings_out: list[str]) -> ModelSpec:
    """load_model, with the assumptions a Hugging Face config needed recorded (not printed): they belong in the
    estimate's warnings, which the CLI prints once."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AssumptionWarning)
        spec = load_model(model)
    for w in caught:
        if issubclass(w.category, AssumptionWarning):
            warnings_out.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return spec


def resolve_recording(engine: str, hw: HardwareSpec, warnings_out: list[str]) -> EngineProfile | None:
    """resolve_engine, its ProfileWarnings recorded in the estimate's warnings (which the CLI prints once) rather
    than printed: the sixth audit found `--format json` without the no-profile warning that stderr had."""
    import warnings

    from kvcalc.specs.catalog import ProfileWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfileWarning)
        return resolve_engine(engine, hw, warnings_out)


@counted_once()  # the parameters are counted once a call, not four times (the fortieth audit, readme 2)
def estimate_with_specs(
    model: str | ModelSpec,
    gpu: str | HardwareSpec = "h100-sxm",
    *,
    attn: str | None = None,
    batch: int = 1,
    context: int = 4096,
    prompt: int | None = None,
    weight_dtype: str = "auto",
    kv_dtype: str = "bf16",
    kv_lora_rank: int | None = None,
    rope_dim: int | None = None,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    engine: str = "auto",
    tp: int = 1,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    pp: int = 1,
    ep: int = 1,
    speculate: str | None = None,
    engine_version: str | None = None,
    profile_file: str | None = None,
) -> tuple[Estimate, ModelSpec, HardwareSpec]:
    """(the Estimate, the model spec as rewritten, the accelerator spec): KV cache, weights, memory and decode and
    prefill time for one model on one accelerator (per GPU of a tensor-parallel group of tp).

    context: tokens already cached per sequence when a decode step runs; prompt: prefill length
    (default: the context). engine: a measured engine profile (vllm, sglang, trtllm), roofline (datasheet
    efficiencies), or auto (vLLM's profile where the accelerator has one, else the roofline). engine_version: the
    release band whose per-step overhead to add (engines/overhead.py); default: the profile's own release's.
    """
    if prompt is None:  # a context of 0 alone had been answered for a 1-token prompt nobody asked for, where every
        # other command refuses it (the twelfth audit, E5); with --prompt it times that prefill on an empty cache
        check_int("--context", context, 1, MAX_TOKENS, hint="(0 only with --prompt, a prefill on an empty cache)")
        prompt = context
    _check_workload(batch, context, prompt, weight_dtype, kv_dtype, memory_utilization, engine)
    check_prefill_chunk(prefill_chunk)
    check_speculate(speculate)
    warnings: list[str] = []
    spec = rewrite_attention(load_recording_assumptions(model, warnings), attn, kv_lora_rank=kv_lora_rank,
                             rope_dim=rope_dim)
    hw = load_gpu(gpu)
    profile: EngineProfile | None
    if profile_file is not None:
        profile = file_profile(profile_file, engine, hw, engine_version, warnings)
        check_dtypes(weight_dtype, kv_dtype, profile.engine)  # the profile's engine stores the cache (the tenth
        # audit, E6: an SGLang profile had priced an int4 cache that -e sglang refuses)
    else:
        profile = resolve_recording(engine, hw, warnings)
    # the overhead of the release asked for, or the deployment profile's own; vLLM's default is its newest release, as
    # serve and capacity take it (engine_version_of_run; the thirty-first audit, M4: estimate had named the v1 band
    # where they name v2, the same figures)
    if engine_version is None and profile_file is None and profile is not None and profile.engine == "vllm":
        engine_version = "latest"
    profile = with_band(profile, engine_version)
    weight_dtype = resolve_weight_dtype(weight_dtype, spec)
    check_tp(tp, spec, weight_dtype, ep)
    check_pp(pp, spec)
    check_ep(ep, spec, tp)
    if ep > 1 and pp > 1:
        raise KvcalcError("--ep: not with --pp (expert parallelism is modelled on one pipeline stage)")
    ev = evaluate(spec, hw, batch=batch, context=context, prompt=prompt, weight_dtype=weight_dtype,
                  kv_dtype=kv_dtype, memory_utilization=memory_utilization, tp=tp, profile=profile,
                  prefill_chunk=prefill_chunk, pp=pp, ep=ep)
    mem, usable, p = dict(ev.memory), ev.usable_bytes, ev.p
    timer = None
    mem["draft"] = 0.0
    if speculate:  # the draft's weights and KV cache share the GPU (audit 2026-12-05 A: they were left out of fits)
        timer = SpeculativeTimer(spec, hw, speculate, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp,
                                 profile=profile, ep=ep)
        mem["draft"] = timer.draft_bytes(replica_batch(batch, ep, tp), max(context, prompt))
        mem["total"] += mem["draft"]
    fits = bool(mem["total"] <= usable)

    unprofiled = unprofiled_note(ev, profile, engine, weight_dtype, kv_dtype)
    if unprofiled:
        warnings.append(unprofiled)
    from kvcalc.speculation import draft_past_context, no_mtp_module, unsupported_with

    if speculate and (why := unsupported_with(engine, pp, profile, speculate)):
        warnings.append(why)
    if why := no_mtp_module(spec, speculate):
        warnings.append(why)
    if timer is not None and (why := draft_past_context(timer.draft, max(context, prompt))):
        warnings.append(why)
    from kvcalc.engines.launch import format_warnings, layout_refusal

    if profile is not None and (why := layout_refusal(profile.engine, tp, ep, spec, pp)):
        warnings.append(why)
    if why := beyond_node(hw, tp, ep):
        warnings.append(why)
    rereads_s = chunk_weight_rereads(batch * prompt, prefill_chunk, mem["weights"], hw.bandwidth_Bps)
    if rereads_s > 0.05 * float(ev.prefill.seconds):  # the third audit: memory sized for 16-token chunks, time for
        warnings.append(  # one pass (prefill 0.95 s where 2,048 chunks re-read 15 GB of weights each: 9.3 s)
            f"--prefill-chunk {prefill_chunk:,}: the workspace is sized for chunks of {prefill_chunk:,} tokens, but the "
            f"prefill is timed as one pass of {batch * prompt:,}; an engine that chunks it reads the weights once a "
            f"chunk, {rereads_s * 1e3:,.4g} ms more at the speed of light, which this time leaves out: "
            f"`serve --step-tokens {prefill_chunk}` times the chunks"
        )
    if why := past_positions(spec, max(context, prompt)):  # the words compare, roofline and capacity print
        warnings.append(why)
    warnings.extend(format_warnings(hw, weight_dtype, profile.engine if profile is not None else None, kv_dtype,
                                    spec))
    # estimate's memory is kvcalc's rule whatever --engine times it; where --engine names an engine whose pool kvcalc
    # sizes, its verdict is checked against that engine's (the fresh audit: `capacity -e sglang` held 2,202 sequences
    # that estimate -e sglang said do not fit; the fifth: estimate said fits where capacity and serve queue)
    held = (engine_sequences_held(engine, spec, hw, p, tp, length=max(context, prompt),
                                  memory_utilization=memory_utilization, pp=pp, ep=ep, engine_version=engine_version,
                                  draft_weight_bytes=timer.draft_weight_bytes() if timer else 0.0,
                                  draft_kv_bytes=timer.draft_kv_bytes_per_sequence(max(context, prompt)) if timer
                                  else 0.0, speculative_tokens=timer.sp.k if timer else 0,
                                  speculate_method=timer.sp.method if timer else None)
            if engine in ENGINE_MEMORY_RULES and engine not in hw.unsupported_engines else None)
    per_group = replica_batch(batch, ep, tp)
    by_engine = "" if held is None else (
        f"; by {engine}'s own memory rule (`kvcalc capacity --engine {engine}`) one group of {tp} GPU"
        f"{'s' if tp > 1 else ''}{f' x {pp} stages' if pp > 1 else ''} holds {held:,} sequence{'s' if held != 1 else ''}"
        f" of {max(context, prompt):,} tokens")
    if not fits:
        warnings.append(
            f"does not fit: needs {fmt_bytes(mem['total'])}, {fmt_bytes(usable)} usable "
            f"({memory_utilization:.0%} of {fmt_bytes(hw.visible_memory_bytes)}); latencies are hypothetical"
            + (f". This is kvcalc's memory rule (one prefill chunk's activations reserved){by_engine}"
               if held is not None else "")
        )
        overflow = weights_overflow(spec, weight_dtype, usable, tp, pp, ep, hw=hw,
                                    engine=profile.engine if profile is not None else None)
        if overflow:
            warnings.append(overflow)
    elif held is not None and per_group > held:
        warnings.append(f"fits by kvcalc's memory rule, but not by {engine}'s{by_engine}, fewer than the "
                        f"{per_group:,} asked for{' per data-parallel group' if ep > tp else ''}: {engine} would queue "
                        "the rest (`kvcalc serve` times that)")

    breakdown = params_breakdown(spec)
    engine_name, profile_text = engine_label(profile, spec)
    result = Estimate(
        inputs=Inputs(
            model=spec.name, gpu=hw.name, batch=batch, context=context,
            attention=attention_label(spec),
            prompt=prompt, weight_dtype=weight_dtype, kv_dtype=kv_dtype, activation_dtype=activation_dtype(weight_dtype),
            memory_utilization=memory_utilization, prefill_chunk=prefill_chunk, engine=engine_name, profile=profile_text,
            tensor_parallel=tp, pipeline_parallel=pp, expert_parallel=ep,
            allreduce_link=group_link_label(hw, tp) + (f"; all-to-all over {group_link_label(hw, ep, alltoall=True)}"
                                                       if ep > tp else ""),
        ),
        kv_cache=KvCache(  # per layer: a softmax-attention layer's; none where no layer keeps a per-token cache
            # (--attn linear: the seventh audit, B11, had printed the rewritten model's old 4,096 B beside 0 a token)
            elements_per_token_per_layer=kv_elements_per_token_per_layer(spec.attention) if spec.attention_layers else 0,
            bytes_per_token_per_layer=kv_bytes_per_token_per_layer(spec.attention, p.b_kv) if spec.attention_layers else 0.0,
            bytes_per_token=kv_bytes_per_token(spec, p.b_kv),
            bytes_per_sequence=kv_bytes_per_sequence(spec, context, p.b_kv),
            # every GPU's share summed: a replicated latent or KV head counted once a GPU, as the docs have said of
            # this key (the fortieth audit, outputs 1: one copy, 8x short of DeepSeek-V3's at TP 8)
            bytes=kv_bytes_all_gpus(spec, batch, context, p.b_kv, tp),
        ),
        weights=Weights(
            params=breakdown["total"],
            active_params=params_breakdown(spec, active=True)["total"],
            bytes=weight_bytes(spec, p.b_w),
            breakdown=breakdown,
        ),
        memory=Memory(
            capacity_bytes=hw.visible_memory_bytes, usable_bytes=usable, weights_bytes=mem["weights"],
            kv_cache_bytes=mem["kv_cache"], activations_bytes=mem["activations"], draft_bytes=mem["draft"],
            required_bytes=mem["total"],
            headroom_bytes=usable - mem["total"], fits=fits,
        ),
        decode=_phase(ev.decode, ev.decode_sol, batch, hw, weight_dtype, fits, ev.comm_s, ev.comm_sol_s, engine_name,
                      ev.pipeline_s),
        prefill=_phase(ev.prefill, ev.prefill_sol, batch * prompt, hw, weight_dtype, fits, ev.prefill_comm_s,
                       ev.prefill_comm_sol_s, engine_name, ev.prefill_pipeline_s, ev.prefill_pipeline_sol_s),
        warnings=warnings,
    )
    if speculate:
        result.speculative = speculative_block(spec, hw, speculate, batch=batch, context=context,
                                               weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp, profile=profile,
                                               pp=pp, ep=ep, timer=timer, prompt=prompt)
    return result, spec, hw
