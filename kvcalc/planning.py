"""What to deploy: attention variants side by side (compare) and GPU counts and concurrency (capacity).

Both print their assumptions. The KV budget per GPU is capacity * utilisation - weights / tp - activations,
where activations are the workspace of one prefill chunk (chunked prefill, as vLLM schedules it).
"""

from __future__ import annotations

import math
import warnings

from kvcalc.catalog import resolve_engine
from kvcalc.checks import MAX_BATCH, MAX_GPUS, MAX_TOKENS, check_int, check_number, check_price
from kvcalc.estimator import (
    SpeculativeTimer,
    check_dtypes,
    check_pp,
    load_deployment,
    check_memory_utilization,
    check_prefill_chunk,
    evaluate,
    phase_metrics,
)
from kvcalc.errors import KvcalcError
from kvcalc.formulas import engine_memory as em
from kvcalc.formulas.capacity import kv_budget_bytes, max_context, max_sequences
from kvcalc.formulas.kv import kv_bytes_per_token
from kvcalc.formulas.memory import DEFAULT_MEMORY_UTILIZATION, DEFAULT_PREFILL_CHUNK, activation_workspace_bytes
from kvcalc.formulas.parallel import check_ep, group_link_label
from kvcalc.formulas.params import stage_weight_bytes, weight_bytes_per_gpu
from kvcalc.formulas.workload import cost_per_million_tokens
from kvcalc.rewrite import NotDivisible, cache_layout, rewrite_attention

TP_DEGREES = (1, 2, 4, 8, 16, 32, 64)


def _check(context: int, memory_utilization: float, prefill_chunk: int) -> None:
    check_int("--context", context, 1, MAX_TOKENS)
    check_memory_utilization(memory_utilization)
    check_prefill_chunk(prefill_chunk)


class CapacityWarning(UserWarning):
    """A reported figure was capped or assumed (the CLI prints these on stderr; capacity's JSON lists them)."""


def capped_context(spec, tokens, warnings_out: list | None = None, warn: bool = True):
    """The longest context that fits, capped at the model's max_position_embeddings (with a warning past it)."""
    limit = spec.max_position_embeddings
    if limit is None or tokens <= limit:
        return tokens
    shown = "an unbounded context" if math.isinf(tokens) else f"a context of {tokens:,} tokens"
    message = (f"{spec.name}: memory would hold {shown}, past its max_position_embeddings {limit:,}; "
               f"reported as {limit:,}")
    if warnings_out is not None:
        warnings_out.append(message)
    if warn:
        warnings.warn(message, CapacityWarning, stacklevel=3)
    return limit


def gpu_count(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp=1, ep=1):
    """(KV budget per GPU, activation reserve per GPU), as formulas/memory.py's one rule."""
    activations = activation_workspace_bytes(spec, 1, prefill_chunk, p.b_a)
    usable = hw.visible_memory_bytes * memory_utilization
    weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep) * tp  # the tp group's share of the heaviest stage
    return kv_budget_bytes(usable, weights, activations, tp), activations / tp


def compare(model, attn=("mha", "mqa", "gqa8", "mla"), gpu="h100-sxm", *, batch: int = 1, context: int = 4096,
            weight_dtype: str = "auto", kv_dtype: str = "bf16",
            memory_utilization: float = DEFAULT_MEMORY_UTILIZATION, prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
            engine: str = "auto", speculate: str | None = None) -> list[dict]:
    """One row per attention variant (the model's own first), each also relative to the model's own. With
    speculate (estimate's --speculate forms), each row also gives the speculative time per token and speed-up.

    A variant that does not apply (gqaN with N not dividing the query heads) or that repeats the model's own
    cache layout (gqa8 of a GQA-8 model) is skipped with a warning; contexts are capped at max positions."""
    _check(context, memory_utilization, prefill_chunk)
    check_int("--batch", batch, 1, MAX_BATCH)
    check_dtypes(weight_dtype, kv_dtype)
    if not attn:
        raise KvcalcError("--attn: expected at least one variant")
    base, hw, weight_dtype, p = load_deployment(model, gpu, weight_dtype, kv_dtype)
    profile = resolve_engine(engine, hw)
    rows, seen, skipped, capped = [], {}, [], []
    for variant in (None, *attn):
        try:
            spec = rewrite_attention(base, variant)
        except NotDivisible:
            skipped.append(f"{variant} (does not divide the {base.attention.num_heads} query heads)")
            continue
        layout = cache_layout(spec.attention, spec.linear_attention)
        if layout in seen:
            skipped.append(f"{variant} (the same cache as {seen[layout]})")
            continue
        seen[layout] = variant or "the model's own attention"
        budget, _ = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, 1)
        ev = evaluate(spec, hw, batch=batch, context=context, prompt=context, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                      memory_utilization=memory_utilization, profile=profile, prefill_chunk=prefill_chunk)
        dec = phase_metrics(ev.decode, ev.decode_sol, batch, hw, weight_dtype)
        rows.append({
            "variant": variant or f"{base.attention.kind} (own)",
            "kv_bytes_per_token": kv_bytes_per_token(spec, p.b_kv),
            "max_context_at_batch": capped_context(spec, max_context(spec, batch, budget, p.b_kv), capped, warn=False),
            "max_batch_at_context": max_sequences(spec, context, budget, p.b_kv),
            "decode_ms": dec["ms"],
            "tokens_per_s": dec["tokens_per_s"],
            "arithmetic_intensity": dec["arithmetic_intensity"],
            "bound": str(dec["bound"]),
            "fits": bool(ev.fits),
        })
        if speculate:
            timer = SpeculativeTimer(spec, hw, speculate, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                                     profile=profile)
            plain, _, _, per_token, _ = timer.times(batch, context)
            rows[-1].update(speculative_ms_per_token=per_token * 1e3, speculative_speedup=plain / per_token,
                            speculative_breakeven_batch=timer.breakeven_batch(context))
    if skipped:
        warnings.warn(f"compare skipped {', '.join(skipped)}", CapacityWarning, stacklevel=2)
    if capped:
        warnings.warn(f"{len(capped)} of {len(rows)} variants would hold a longer context than {base.name}'s "
                      f"max_position_embeddings {base.max_position_embeddings:,}; their longest context is reported "
                      "as that", CapacityWarning, stacklevel=2)
    own = rows[0]
    for row in rows:
        for key in ("kv_bytes_per_token", "max_batch_at_context", "decode_ms", "tokens_per_s"):
            row[f"{key}_vs_own"] = row[key] / own[key] if own[key] else math.nan
    return rows


def _visible_memory(hw) -> dict:
    """The device total an engine budgets from, and where the spec's figure comes from."""
    return {"visible_memory_bytes": hw.visible_memory_bytes,
            "visible_memory_source": ("visible_memory_GiB (what torch.cuda.mem_get_info reports)"
                                      if hw.visible_memory_GiB else
                                      "memory_GiB: the spec has no visible_memory_GiB, so the datasheet figure")}


def _non_torch_bytes(hw, gpus: int, nccl_in_budget: bool = True) -> float:
    """The engines' communication buffers and library workspaces per GPU of a group of `gpus`, by its link."""
    return em.vllm_non_torch_bytes(gpus, "nvlink" in (hw.interconnect or "").lower(), nccl_in_budget)


def vllm_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None, pp: int = 1,
                ep: int = 1, runner: str = "auto", version: tuple[int, int] = em.VLLM_LATEST,
                cuda_graph_bytes: float | None = None, flashinfer_sampler: bool = False) -> dict:
    """The KV cache vLLM `version` would allocate per GPU, and what it would print, by formulas/engine_memory.py's
    rule. runner: vLLM's model runner, 'v0', 'v1' or 'v2'; 'auto' is the one that version gives the model.
    flashinfer_sampler: GPUModelRunner samples with FlashInfer's top-k/top-p kernel (its log says so).
    cuda_graph_bytes: vLLM's CUDA-graph estimate per GPU (its log's 'Estimated CUDA graph memory'), subtracted
    where the version counts it; None where unknown (the pool is then an upper bound, and `notes` says so)."""
    default_t, default_r = em.vllm_default_batching(hw.visible_memory_bytes / em.GiB, hw.name, version)
    t, r = max_num_batched_tokens or default_t, max_num_seqs or default_r
    runner = em.vllm_model_runner(spec, version) if runner == "auto" else runner
    non_torch = _non_torch_bytes(hw, max(tp, ep), nccl_in_budget=version < em.VLLM_NCCL_BEFORE_SNAPSHOT)
    peak = em.vllm_profile_peak_bytes(spec, t, r, p.b_a, tp, ep, runner, version, flashinfer_sampler)
    counted = em.vllm_counts_cuda_graphs(runner, version)
    graphs = (cuda_graph_bytes or 0.0) if counted else 0.0
    notes = []
    release = ".".join(map(str, version))
    if counted and cuda_graph_bytes is None:
        notes.append(f"vLLM {release} (model runner {runner}) also takes its CUDA-graph estimate out of the KV pool "
                     "('Estimated CUDA graph memory' in its log), which kvcalc does not predict: the pool is an upper "
                     "bound; pass --cuda-graph-memory with the logged figure (0 under --enforce-eager or "
                     "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0)")
    elif not counted and cuda_graph_bytes:
        notes.append(f"--cuda-graph-memory: vLLM {release} (model runner {runner}) keeps CUDA graphs out of the KV "
                     "budget, so it is not subtracted")
    if flashinfer_sampler and runner != "v1":
        notes.append(f"--flashinfer-sampler: model runner {runner} does not profile FlashInfer's sampler "
                     "(only GPUModelRunner, v1, does), so it changes nothing")
    rope = em.vllm_rope_cache_bytes(spec)  # loaded with the weights, on every GPU of every stage
    if pp == 1:
        weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep) + rope
        available = em.vllm_available_kv_bytes(hw.visible_memory_bytes, memory_utilization, weights, peak, non_torch,
                                               graphs)
        pool, stage = available, None  # pool: bytes as the heaviest stage's pages count them
    else:  # each stage profiles itself; the stage with the fewest blocks of its own layers binds
        layers = em.vllm_pipeline_layers(spec.num_layers, pp)
        forward = em.vllm_forward_peak_bytes(spec, t, p.b_a, tp, ep)
        peaks = [forward] * (pp - 1) + [peak]
        loaded = [w + rope for w in stage_weight_bytes(spec, p.b_w, layers, tp)]
        stages = [(w, pk, em.vllm_available_kv_bytes(hw.visible_memory_bytes, memory_utilization, w, pk, non_torch,
                                                     graphs))
                  for w, pk in zip(loaded, peaks)]
        stage = min(range(pp), key=lambda i: stages[i][2] / layers[i])
        weights, peak, available = stages[stage]
        pool = available * max(layers) / layers[stage]
    return {
        "engine": "vllm",
        **_visible_memory(hw),
        "requested_bytes": hw.visible_memory_bytes * memory_utilization,
        "weights_bytes_per_gpu": weights,
        "rope_cache_bytes": rope,
        "profile_peak_bytes": peak,
        "non_torch_bytes": non_torch,
        "cuda_graph_bytes": graphs,
        "cuda_graphs_counted": counted,
        "available_kv_bytes": available,
        "kv_tokens": em.vllm_kv_tokens(spec, pool, p.b_kv, tp, pp, em.vllm_block_alignment(spec, hw.name)),
        "max_concurrency": em.vllm_max_concurrency(spec, pool, context, t, p.b_kv, tp, pp,
                                                   em.vllm_block_alignment(spec, hw.name)),
        "binding_pipeline_stage": stage,
        "max_model_len": context,
        "max_num_batched_tokens": t,
        "max_num_seqs": r,
        "model_runner": runner,
        "sampler": ("flashinfer" if flashinfer_sampler and runner == "v1" else
                    "logits" if runner == "v2" else "sort"),
        "vllm_version": release,
        "notes": notes,
    }


def sglang_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float, pp: int = 1,
                  ep: int = 1) -> dict:
    """The KV pool SGLang would allocate per GPU (memory_utilization as mem_fraction_static), by
    formulas/engine_memory.py's rule."""
    weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep)
    non_torch = _non_torch_bytes(hw, max(tp, ep))
    pool = em.sglang_kv_bytes(hw.visible_memory_bytes, memory_utilization, weights, non_torch)
    tokens = em.sglang_kv_tokens(spec, pool, p.b_kv, tp, pp)
    per_request = em.sglang_request_bytes(spec, context, p.b_kv, tp, pp)
    return {
        "engine": "sglang",
        **_visible_memory(hw),
        "requested_bytes": hw.visible_memory_bytes * memory_utilization,
        "weights_bytes_per_gpu": weights,
        "profile_peak_bytes": 0.0,
        "non_torch_bytes": non_torch,
        "available_kv_bytes": pool,
        "kv_tokens": tokens,
        "max_concurrency": max(pool, 0.0) / per_request,
        "max_model_len": context,
    }


def trtllm_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                  max_num_tokens: int | None = None, pp: int = 1, ep: int = 1) -> dict:
    """The KV cache TensorRT-LLM would allocate per GPU (memory_utilization as free_gpu_memory_fraction), by
    formulas/engine_memory.py's rule."""
    t = max_num_tokens or em.TRTLLM_MAX_NUM_TOKENS
    weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep)
    activations = em.vllm_forward_peak_bytes(spec, t, p.b_a, tp, ep)
    non_torch = _non_torch_bytes(hw, max(tp, ep))
    kv = em.trtllm_kv_bytes(hw.visible_memory_bytes, memory_utilization, weights, activations, non_torch)
    per_request = em.trtllm_request_bytes(spec, context, p.b_kv, tp, pp)
    return {
        "engine": "trtllm",
        **_visible_memory(hw),
        "requested_bytes": memory_utilization * (hw.visible_memory_bytes - weights - activations - non_torch),
        "weights_bytes_per_gpu": weights,
        "profile_peak_bytes": activations,
        "non_torch_bytes": non_torch,
        "available_kv_bytes": kv,
        "kv_tokens": em.trtllm_kv_tokens(spec, kv, p.b_kv, tp, pp),
        "max_concurrency": max(kv, 0.0) / per_request,
        "max_model_len": context,
        "max_num_batched_tokens": t,
    }


ENGINE_MEMORY_RULES = ("vllm", "sglang", "trtllm")


def check_vllm_runner(runner: str, engine: str) -> None:
    """--vllm-runner: auto, v0, v1 or v2, and only with vLLM's memory rule."""
    if runner not in ("auto", *em.MODEL_RUNNERS):
        raise KvcalcError(f"--vllm-runner: expected auto, {', '.join(em.MODEL_RUNNERS)}, got {runner!r}")
    if runner != "auto" and engine != "vllm":
        raise KvcalcError("--vllm-runner: only vLLM's memory rule uses it; add --engine vllm")


def check_vllm_version(version: str, engine: str) -> tuple[int, int]:
    """--vllm-version: 'latest' or a release such as 0.11, 0.11.0, v0.30.1 or 0.6.5.dev, as (major, minor); only
    with vLLM's memory rule."""
    text = version.strip().lower().removeprefix("v")
    if text == "latest":
        return em.VLLM_LATEST
    if engine != "vllm":
        raise KvcalcError("--vllm-version: only vLLM's memory rule uses it; add --engine vllm")
    parts = text.split(".")  # major.minor, then a patch or a dev tag (0.6.5.dev), which the rule does not need
    if not (len(text) <= 40 and len(parts) >= 2 and all(x.isdigit() and len(x) <= 4 for x in parts[:2])):
        raise KvcalcError(f"--vllm-version: expected latest or a release such as 0.11 or 0.30.1, got {version!r}")
    return int(parts[0]), int(parts[1])


def engine_memory_rule(engine: str, spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                       max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                       pp: int = 1, ep: int = 1, vllm_runner: str = "auto",
                       vllm_version: tuple[int, int] = em.VLLM_LATEST,
                       cuda_graph_bytes: float | None = None, flashinfer_sampler: bool = False) -> dict:
    """The KV pool per GPU as `engine` (one of ENGINE_MEMORY_RULES) sizes it, and what it would print. With ep > 1
    each GPU holds its tp share of attention and 1 / ep of the routed experts; its pool serves its own data-parallel
    group's sequences, so the concurrency is per group of tp GPUs."""
    if engine == "sglang":
        return sglang_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization, pp=pp, ep=ep)
    if engine == "trtllm":
        return trtllm_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                             max_num_tokens=max_num_batched_tokens, pp=pp, ep=ep)
    return vllm_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                       max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, pp=pp, ep=ep,
                       runner=vllm_runner, version=vllm_version, cuda_graph_bytes=cuda_graph_bytes,
                       flashinfer_sampler=flashinfer_sampler)


def check_flashinfer_sampler(on: bool, engine: str) -> None:
    """--flashinfer-sampler: only with vLLM's memory rule."""
    if not isinstance(on, bool):
        raise KvcalcError(f"--flashinfer-sampler: expected true or false, got {on!r}")
    if on and engine != "vllm":
        raise KvcalcError("--flashinfer-sampler: only vLLM's memory rule uses it; add --engine vllm")


def check_cuda_graph_memory(GiB: float | None, engine: str) -> float | None:
    """--cuda-graph-memory: vLLM's logged CUDA-graph estimate in GiB (0 to 10,000), only with vLLM's memory rule;
    returns bytes."""
    if GiB is None:
        return None
    check_number("--cuda-graph-memory", GiB, 0, 1e4)
    if engine != "vllm":
        raise KvcalcError("--cuda-graph-memory: only vLLM's memory rule uses it; add --engine vllm")
    return GiB * em.GiB


def capacity(model, gpu="h100-sxm", *, context: int, batch: int | None = None, gpus: int | None = None,
             target_tokens_per_s: float | None = None, price_per_gpu_hour: float | None = None,
             weight_dtype: str = "auto", kv_dtype: str = "bf16", memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
             prefill_chunk: int = DEFAULT_PREFILL_CHUNK, engine: str = "auto",
             max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None, pp: int = 1,
             ep: int = 1, vllm_runner: str = "auto", vllm_version: str = "latest",
             cuda_graph_GiB: float | None = None, flashinfer_sampler: bool = False) -> dict:
    """Size a tensor-parallel deployment: fewest GPUs for the weights, concurrency, context, throughput, cost.

    engine="vllm" budgets memory as vLLM does (visible memory, its profiling peak for max_num_batched_tokens and
    max_num_seqs, non-torch buffers) and reports the KV tokens and maximum concurrency it would print at start-up
    with max_model_len = context; engine="sglang" as SGLang does (memory_utilization as mem_fraction_static); every
    other engine uses kvcalc's rule (formulas/memory.py).
    pp: pipeline stages, each a tensor-parallel group; a replica is tp x pp GPUs. ep: expert-parallel GPUs of a
    MoE model (a replica of ep GPUs, attention in ep / tp data-parallel groups of tp = gpus, default 1)."""
    _check(context, memory_utilization, prefill_chunk)
    for flag, value in (("--max-num-batched-tokens", max_num_batched_tokens), ("--max-num-seqs", max_num_seqs)):
        if value is not None:
            check_int(flag, value, 1, MAX_TOKENS)
            if engine != "vllm" and not (engine == "trtllm" and flag == "--max-num-batched-tokens"):
                raise KvcalcError(f"{flag}: only vLLM's memory rule (and TensorRT-LLM's, for the batched tokens) "
                                  "uses it; add --engine vllm")
    check_dtypes(weight_dtype, kv_dtype)
    check_vllm_runner(vllm_runner, engine)
    version = check_vllm_version(vllm_version, engine)
    cuda_graph_bytes = check_cuda_graph_memory(cuda_graph_GiB, engine)
    check_flashinfer_sampler(flashinfer_sampler, engine)
    if batch is not None:
        check_int("--batch", batch, 1, MAX_BATCH)
    if gpus is not None:
        check_int("--gpus", gpus, 1, MAX_GPUS)
    if target_tokens_per_s is not None:
        check_number("--target-tokens-per-s", target_tokens_per_s, 0, 1e12, lo_open=True)
    check_price(price_per_gpu_hour)
    spec, hw, weight_dtype, p = load_deployment(model, gpu, weight_dtype, kv_dtype)
    check_pp(pp, spec)
    check_ep(ep, spec, gpus or 1)
    engine_rule = engine in ENGINE_MEMORY_RULES  # an engine whose memory budget kvcalc models
    if ep > 1 and pp > 1:
        raise KvcalcError("--ep: not with --pp yet")
    notes: list[str] = []
    try:
        profile = resolve_engine(engine, hw)
    except KvcalcError:
        if not engine_rule:
            raise
        profile = None  # the engine's memory rule needs no kernel profile; the decode step falls back to the roofline
        notes.append(f"no {engine} kernel profile for {hw.name}: memory as {engine} budgets it, decode timed on the "
                     "datasheet roofline")
    heads = spec.attention.num_heads

    def engine_memory(tp):
        return engine_memory_rule(engine, spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                                  max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, pp=pp,
                                  ep=ep, vllm_runner=vllm_runner, vllm_version=version,
                                  cuda_graph_bytes=cuda_graph_bytes, flashinfer_sampler=flashinfer_sampler)

    def fits_one_sequence(tp):
        if engine_rule:
            return engine_memory(tp)["max_concurrency"] >= 1
        budget, _ = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp, ep)
        return max_sequences(spec, context, budget, p.b_kv, tp, pp) >= 1

    candidates = [t for t in TP_DEGREES if heads % t == 0 and (ep == 1 or (t <= ep and ep % t == 0))]
    min_tp = next((t for t in candidates if fits_one_sequence(t)), None)
    if gpus is not None and heads % gpus:
        raise KvcalcError(f"--gpus: tensor parallelism over {gpus} GPUs needs it to divide the {heads} query heads")
    tp = gpus or (1 if ep > 1 else min_tp)
    if ep > 1 and not fits_one_sequence(tp):
        tp = None
    if tp is None:
        raise KvcalcError(f"{spec.name} at context {context} does not fit on {max(candidates) * pp} {hw.name} GPUs")
    budget, activations = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp, ep)
    replicas_dp = ep // tp if ep > 1 else 1  # data-parallel attention groups, each with its own sequences
    seqs = max_sequences(spec, context, budget, p.b_kv, tp, pp) * replicas_dp
    vllm = None
    if engine_rule:
        vllm = engine_memory(tp)
        budget, activations = vllm["available_kv_bytes"], vllm["profile_peak_bytes"]
        seqs = math.floor(vllm["max_concurrency"]) * replicas_dp
        notes.extend(vllm.get("notes", ()))
        if hw.visible_memory_GiB is None:
            notes.append(f"{hw.name} has no visible_memory_GiB: {engine}'s budget starts from the datasheet "
                         f"{hw.memory_GiB:g} GiB, which overstates what torch.cuda.mem_get_info reports")
    for note in notes:
        warnings.warn(note, CapacityWarning, stacklevel=2)
    if spec.max_position_embeddings and context > spec.max_position_embeddings:
        notes.append(f"context {context:,} exceeds {spec.name}'s max_position_embeddings {spec.max_position_embeddings:,}")
        warnings.warn(notes[-1], CapacityWarning, stacklevel=2)
    run_batch = batch or max(seqs, 1)
    ev = evaluate(spec, hw, batch=run_batch, context=context, prompt=context, weight_dtype=weight_dtype,
                  kv_dtype=kv_dtype, tp=tp, profile=profile, pp=pp, ep=ep)
    dec = phase_metrics(ev.decode, ev.decode_sol, run_batch, hw, weight_dtype, ev.comm_s, None, ev.pipeline_s)
    group = ep if ep > 1 else tp * pp
    replicas = math.ceil(target_tokens_per_s / dec["tokens_per_s"]) if target_tokens_per_s else 1
    if seqs < 1:
        binding = "memory: not even one sequence fits at this context"
    elif batch and batch > seqs:
        binding = f"KV cache: only {seqs} sequences fit at context {context}, fewer than the batch {batch}"
    elif replicas > 1:
        binding = f"throughput: {replicas} replicas of {gpu_count(group)} for {target_tokens_per_s:,.0f} tokens/s"
    elif ep == 1 and tp > min_tp:
        binding = f"none: the {gpu_count(group)} asked for hold it ({gpu_count(min_tp * pp)} would hold the weights)"
    elif group > 1:
        binding = f"weights: they need {gpu_count(group)}' memory"
    else:
        binding = "none: one GPU holds it"
    return {
        "model": spec.name, "gpu": hw.name, "context": context, "weight_dtype": weight_dtype, "kv_dtype": kv_dtype,
        "min_gpus_for_weights": ep if ep > 1 else (min_tp * pp if min_tp else None),
        "tensor_parallel": tp, "pipeline_parallel": pp,
        "expert_parallel": ep,
        "gpus_per_replica": group,
        "weights_bytes_per_gpu": weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep),
        "kv_budget_bytes_per_gpu": budget,
        "max_sequences_at_context": seqs,
        "max_context_at_batch": capped_context(spec, max_context(spec, batch or 1, budget, p.b_kv, tp, pp), notes),
        "batch": run_batch,
        "decode_ms": dec["ms"], "tokens_per_s": dec["tokens_per_s"],
        "fits": bool(run_batch <= seqs),
        "replicas_for_target": replicas, "gpus_for_target": replicas * group if target_tokens_per_s else None,
        "cost_per_million_tokens": (cost_per_million_tokens(price_per_gpu_hour, group, dec["tokens_per_s"])
                                    if price_per_gpu_hour else None),
        "binding": binding,
        "engine_memory": vllm,
        "warnings": notes,
        "assumptions": {
            "memory_rule": ("SGLang's: visible memory x mem_fraction_static - weights - non-torch buffers "
                            "(formulas/engine_memory.py)" if vllm and vllm["engine"] == "sglang" else
                            "TensorRT-LLM's: free_gpu_memory_fraction x (visible memory - weights - activations of "
                            "max_num_tokens - non-torch buffers) (formulas/engine_memory.py)"
                            if vllm and vllm["engine"] == "trtllm" else
                            "vLLM's: visible memory x utilisation - weights - profiling peak - non-torch buffers "
                            "- CUDA-graph estimate where the version counts it (formulas/engine_memory.py)" if vllm else
                            "kvcalc's: datasheet memory x utilisation - weights - one prefill chunk's activations"),
            "memory_utilization": memory_utilization,
            "activation_reserve_bytes_per_gpu": activations,
            "prefill_chunk_tokens": vllm.get("max_num_batched_tokens", prefill_chunk) if vllm else prefill_chunk,
            "tensor_parallel": "weights / tp; KV heads max(g / tp, 1) per GPU; MLA latent replicated; two all-reduces "
                               "per layer: the engine profile's measured curve where it has one for this group size, "
                               "else ring at half the bidirectional link bandwidth with NCCL's ring latency "
                               "(formulas/parallel.py, NCCL's tuning model)",
            "allreduce_link": group_link_label(hw, tp),
            "pipeline": (f"{pp} stages of at most {math.ceil(spec.num_layers / pp)} layers (the first with the "
                         "embedding, the last with the lm_head); a decode step runs the batch as min(batch, pp) "
                         "micro-batches through the whole depth, plus pp - 1 activation sends" if pp > 1 else "none"),
            "throughput": f"decode at batch {run_batch} and context {context}, "
                          + (f"{profile.engine} {profile.engine_version} measured kernel curves" if profile
                             else "datasheet efficiencies (roofline)"),
        },
    }
