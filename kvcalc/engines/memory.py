"""Memory as each engine budgets it: the KV pool vLLM, SGLang and TensorRT-LLM would allocate per GPU, and the
checks of the flags that pick a rule's release and options. The rules' formulas are in formulas/engine_memory.py;
this module composes them for one deployment."""

from __future__ import annotations

import math
import re
import warnings

from kvcalc.checks import check_number, shown_value
from kvcalc.dtypes import BYTES_PER_ELEMENT
from kvcalc.errors import CapacityWarning, KvcalcError
from kvcalc.formulas import engine_memory as em
from kvcalc.formulas.capacity import kv_budget_bytes, longest_fitting
from kvcalc.formulas.memory import activation_workspace_bytes
from kvcalc.formulas.params import routed_expert_bytes, stage_weight_bytes, weight_bytes_per_gpu
from kvcalc.engines.scheduler import schedules_ahead
from kvcalc.specs.hardware import capability


def _visible_memory(hw) -> dict:
    """The device total an engine budgets from, and where the spec's figure comes from."""
    return {"visible_memory_bytes": hw.visible_memory_bytes,
            "visible_memory_source": ("visible_memory_GiB (what torch.cuda.mem_get_info reports)"
                                      if hw.visible_memory_GiB else
                                      "memory_GiB: the spec has no visible_memory_GiB, so the datasheet figure")}


def _non_torch_bytes(hw, gpus: int, nccl_in_budget: bool = True, band: str | None = None,
                    figures_GiB: tuple[float, float] | None = None, fusion_workspace: float = 0.0) -> float:
    """The engines' communication buffers and library workspaces per GPU of a group of `gpus`, by its link and
    (vLLM) release band."""
    return em.vllm_non_torch_bytes(gpus, "nvlink" in (hw.interconnect or "").lower(), nccl_in_budget, band,
                                   figures_GiB, fusion_workspace)


def _vllm_mxfp4_layout_bytes(spec, hw, p, tp: int, pp: int, ep: int, version: tuple[int, int]) -> float:
    """What vLLM's MXFP4 MoE backend adds to one GPU's routed experts beyond the checkpoint's bytes (padding, a kept
    copy of the scales, wider biases: formulas/engine_memory.py vllm_mxfp4_expert_bytes) [B]; 0 for other formats,
    parts whose backend kvcalc does not follow, and expert or pipeline parallelism (not checked against a log)."""
    q = spec.quantization
    if (q is None or q.weight_format != "mxfp4" or "experts" not in spec.quantized_classes or spec.moe is None
            or p.b_w != BYTES_PER_ELEMENT["mxfp4"] or pp > 1 or ep > 1 or spec.moe.expert_intermediate_size % tp):
        return 0.0
    backend = em.vllm_mxfp4_backend(hw.compute_capability, version)
    if backend is None:
        return 0.0
    return em.vllm_mxfp4_expert_bytes(spec, tp, backend) - routed_expert_bytes(spec, p.b_w) / tp


def check_vllm_batching(max_num_batched_tokens: int, max_num_seqs: int, default: bool = False) -> None:
    """vLLM refuses to start with max_num_batched_tokens below max_num_seqs (vllm/config/scheduler.py
    SchedulerConfig._verify_args): a one-line error naming the flags, from every command that sizes a vLLM server
    (the ninth round's S8 in the simulator; the tenth, S1: serve's closed form and capacity had answered). default:
    max_num_seqs is vLLM's default (no --max-num-seqs given), which the message says, with both ways past it."""
    if max_num_batched_tokens < max_num_seqs:
        whose = "its default max_num_seqs" if default else "max_num_seqs"
        raise KvcalcError(f"--step-tokens / --max-num-batched-tokens {max_num_batched_tokens:,}: vLLM refuses a "
                          f"max_num_batched_tokens below {whose} ({max_num_seqs:,}; SchedulerConfig); raise it to "
                          f"{max_num_seqs:,}, or give --max-num-seqs {max_num_batched_tokens:,} or fewer (serve "
                          "--simulate, capacity)")


# V0's EngineArgs turned chunked prefill on by default for models with a context over 32K ("enable chunked prefill by
# default for long context (> 32K) models", vllm/engine/arg_utils.py, 0.5-0.7)
V0_CHUNKED_ABOVE = 32768
# kvcalc's --speculate methods vLLM runs as EAGLE (SpeculativeConfig.use_eagle(): eagle, eagle3, mtp), with which
# VllmConfig turns the hybrid KV cache manager off for a model with chunked local attention (Llama 4: "Hybrid KV cache
# manager is not yet supported with chunked local attention + eagle", vllm/config/vllm.py, every release since the
# manager took chunked layers, PR #19351): each chunked layer then holds every token (the twentieth audit, N4)
VLLM_EAGLE_METHODS = ("eagle", "mtp")

# vLLM's mamba_cache_mode 'align' and 'all' under prefix caching (model_executor/models/config.py MambaModelConfig;
# MambaSpec.max_memory_usage_bytes: 2 state pages a request in 'align', cdiv(max_model_len, block) in 'all'), from
# PR #30877 (merged 2026-01-19, in 0.15.0's notes as "block-aligned prefix caching for hybrid models"); before it a
# hybrid model without Mamba prefix caching turned prefix caching off ("Hybrid or mamba-based model detected without
# support for prefix caching: disabling", 0.11.2). Hybrids' prefix caching stays opt-in (engine/arg_utils.py, 0.27.1:
# default_prefix_caching = is_prefix_caching_supported and not is_hybrid), so the default pool is 'none''s
VLLM_MAMBA_CACHE_MODES = (0, 15)
# ... until 0.28.0, which turns prefix caching on for hybrid models by default and makes 'align' the default mode
# (PR #50991 "[Mamba] enable prefix cache by default", merged 2026-08-04: default_prefix_caching =
# is_prefix_caching_supported; 0.28.0 ships it, as vllm-project/vllm-metal PR #645 "Bump vLLM to 0.28.0" records):
# a request then holds two state pages (2 + k under speculation: MambaSpec.max_memory_usage_bytes). The thirty-third
# audit, attention 2: Qwen3-Next at TP 2 on H200s, 4K tokens, had been sized at 714 requests where 0.30 holds 561.
# Not for MiniMax's lightning attention (kind "linear"), whose prefix caching vLLM's tracking issue #26201 leaves open.
VLLM_HYBRID_PREFIX_CACHING = (0, 28)


def vllm_extra_state_blocks(memory: dict) -> int:
    """The recurrent state blocks a request keeps beyond one under the rule `memory` describes (engine_memory_rule's
    dict): vLLM's k under speculation and one more in 'align' (vllm_align_state_pages); 0 for other engines."""
    if memory.get("engine") != "vllm":
        return 0
    return memory.get("speculative_tokens", 0) + (memory.get("mamba_cache_mode") == "align")


def vllm_draft_layers(spec, speculate_method: str | None) -> int:
    """Attention layers of the drafter that vLLM pages with the target's (em.vllm_layout): EAGLE's one and MTP's one
    module, of the full kind (vllm/model_executor/models/qwen3_next_mtp.py builds its layer as
    Qwen3NextDecoderLayer(layer_type="full_attention"); an EAGLE3 head is a Llama decoder layer), so their KV is in
    vLLM's blocks and not beside them (formulas/speculative.py draft_kv_bytes_per_sequence stays the other engines'
    and kvcalc's own). 0 for other methods (a draft model's own layers, which kvcalc keeps apart; Medusa and n-gram
    keep no cache) and for a model without softmax attention."""
    return 1 if speculate_method in VLLM_EAGLE_METHODS and spec.attention_layers else 0


def vllm_align_state_pages(spec, version: tuple[int, int]) -> bool:
    """Whether vLLM `version`'s default keeps two recurrent state pages a request (mamba_cache_mode 'align')."""
    la = spec.linear_attention
    return la is not None and la.kind != "linear" and version >= VLLM_HYBRID_PREFIX_CACHING


def vllm_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None, pp: int = 1,
                ep: int = 1, runner: str = "auto", version: tuple[int, int] = em.VLLM_LATEST,
                cuda_graph_bytes: float | None = None, flashinfer_sampler: bool = False,
                refit: dict | None = None, speculate_method: str | None = None, speculative_tokens: int = 0) -> dict:
    """The KV cache vLLM `version` would allocate per GPU, and what it would print, by formulas/engine_memory.py's
    rule. refit: the release band's constants refitted, {'sampler_bytes_per_logit': x, 'non_torch_GiB': (TP 1,
    NVLink addition)} (either may be absent), for the memory ledger's leave-one-source-out scoring. runner: vLLM's model runner, 'v0', 'v1' or 'v2'; 'auto' is the one that version gives the model.
    flashinfer_sampler: GPUModelRunner samples with FlashInfer's top-k/top-p kernel (its log says so).
    cuda_graph_bytes: vLLM's CUDA-graph estimate per GPU (its log's 'Estimated CUDA graph memory'), subtracted
    where the version counts it; None where unknown (the pool is then an upper bound, and `notes` says so)."""
    chunked_whole = speculate_method in VLLM_EAGLE_METHODS and spec.attention.window_kind == "chunked"
    if chunked_whole:  # no hybrid KV cache manager: every layer keeps every token (VLLM_EAGLE_METHODS)
        spec = spec.model_copy(update={"attention": spec.attention.model_copy(update={"sliding_window": None})})
    default_t, default_r = em.vllm_default_batching(hw.visible_memory_bytes / em.GiB, hw.name, version, context)
    t, r = max_num_batched_tokens or default_t, max_num_seqs or default_r
    check_vllm_batching(t, r, default=max_num_seqs is None)
    runner = em.vllm_model_runner(spec, version) if runner == "auto" else runner
    refit = refit or {}
    group = max(tp, ep)
    fusion = em.vllm_fusion_workspace_bytes(hw.compute_capability, hw.topology, version, group, pp, data_parallel=group // tp)
    non_torch = _non_torch_bytes(hw, group, band=em.vllm_non_torch_band(version),
                                 figures_GiB=refit.get("non_torch_GiB"), fusion_workspace=fusion)
    sampler_args = dict(compute_units=hw.compute_units, cublas_bytes=em.cublas_workspace_bytes(hw.compute_capability, hw.vendor))
    peak = em.vllm_profile_peak_bytes(spec, t, r, p.b_a, tp, ep, runner, version, flashinfer_sampler,
                                      refit.get("sampler_bytes_per_logit"), last_of_stages=pp > 1, **sampler_args)
    counted = em.vllm_counts_cuda_graphs(runner, version)
    graphs = (cuda_graph_bytes or 0.0) if counted else 0.0
    notes = []
    release = ".".join(map(str, version))
    if version < em.VLLM_V1_ENGINE and max_num_batched_tokens is None and context > V0_CHUNKED_ABOVE:
        notes.append(f"vLLM {release} turned chunked prefill on by default past {V0_CHUNKED_ABOVE:,} tokens of "
                     f"context, with a smaller step budget than the {t:,} tokens kvcalc profiles here (V0 without "
                     "it): pass --max-num-batched-tokens with the one its log prints")
    if chunked_whole:
        notes.append(f"vLLM turns its hybrid KV cache manager off for chunked local attention with {speculate_method} "
                     "speculation (vllm/config/vllm.py: 'not yet supported with chunked local attention + eagle'), so "
                     "the chunked layers keep every token, as sized here")
    align = vllm_align_state_pages(spec, version)
    if align:
        notes.append(f"vLLM {release} turns prefix caching on for hybrid models by default, in mamba_cache_mode "
                     "'align' (PR #50991, from 0.28): two recurrent state pages a request, as sized here; "
                     "--no-enable-prefix-caching gives back one a request (capacity and serve size that with "
                     "--vllm-version 0.27). "
                     "'align' also cuts prompt chunks at the attention block's boundaries, which serve does not")
    elif spec.linear_attention is not None and version >= VLLM_MAMBA_CACHE_MODES:  # the twenty-first audit, M1
        notes.append("vLLM keeps prefix caching off for hybrid models unless --enable-prefix-caching is given "
                     "(engine/arg_utils.py: 'keep it opt-in for now'), as sized here: one recurrent state a request. "
                     "With it on, vLLM keeps two a request (mamba_cache_mode 'align') or one every block ('all', "
                     "for models that support Mamba prefix caching), and holds fewer requests than this pool")
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
    window = em.vllm_window_tokens(t, version, runner, pp,
                                   schedules_ahead("vllm", release=version, pp=pp, speculation=speculate_method))
    drafter = vllm_draft_layers(spec, speculate_method)
    alignment = em.vllm_block_alignment(spec, hw.compute_capability)
    rope = em.vllm_rope_cache_bytes(spec)  # loaded with the weights, on every GPU of every stage
    if pp == 1:
        weights = (weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep) + rope
                   + _vllm_mxfp4_layout_bytes(spec, hw, p, tp, pp, ep, version))
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
        "fusion_workspace_bytes": fusion,  # FlashInfer's all-reduce fusion workspace, within non_torch_bytes
        "cuda_graph_bytes": graphs,
        "cuda_graphs_counted": counted,
        "available_kv_bytes": available,
        # with prefix caching off a state group's block is max_model_len (em.vllm_kv_tokens; the fortieth audit,
        # hybrid 5)
        "kv_tokens": em.vllm_kv_tokens(spec, pool, p.b_kv, tp, pp, alignment, speculative_tokens, drafter,
                                       state_block_tokens=None if align else context),
        "max_concurrency": em.vllm_max_concurrency(spec, pool, context, window, p.b_kv, tp, pp, alignment,
                                                   speculative_tokens, drafter, align),
        "draft_layers": drafter,  # the drafter's layers paged in the blocks (vllm_draft_layers): its KV is counted
        "speculative_tokens": speculative_tokens,  # a recurrent state's 1 + k blocks a request ...
        "mamba_cache_mode": "align" if align else "none",  # ... 2 + k in 'align' (vllm_align_state_pages)
        "window_tokens": window,  # what a sliding or chunked window is extended by (em.vllm_window_tokens)
        "binding_pipeline_stage": stage,
        "max_model_len": context,
        "max_num_batched_tokens": t,
        "max_num_seqs": r,
        "model_runner": runner,
        "sampler": ("flashinfer" if flashinfer_sampler and runner == "v1" else "logits" if runner == "v2" else
                    "triton" if runner == "v1" and version >= em.VLLM_SAMPLER_LOW and min(r, t) >= em.TRITON_TOPK_MIN_ROWS
                    else "sort"),
        "vllm_version": release,
        "notes": notes,
    }


def sglang_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float, pp: int = 1,
                  ep: int = 1, speculate_method: str | None = None, engine_version: str | None = None,
                  speculative_tokens: int = 0, max_running: int | None = None) -> dict:
    """The KV pool SGLang would allocate per GPU (memory_utilization as mem_fraction_static), by
    formulas/engine_memory.py's rule; with speculate_method, the fraction SGLang would derive keeps its reserve for
    the draft where the release (engine_version; None: the profiled 0.5.14) kept one (the note), and a model with
    linear-attention layers keeps the per-draft-token states of max_running requests (--max-running-requests; None:
    SGLang's 48 under speculation) out of the pool before it is split (em.sglang_speculative_state_bytes, with
    speculative_tokens k drafts: k + 1 draft tokens, as plan's launch passes --speculative-num-draft-tokens)."""
    from kvcalc.engines.scheduler import SGLANG_SPECULATIVE, SGLANG_SPECULATIVE_RUNNING

    weights = em.sglang_weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep)
    non_torch = _non_torch_bytes(hw, max(tp, ep))
    pool = em.sglang_kv_bytes(hw.visible_memory_bytes, memory_utilization, weights, non_torch)
    per_request = em.sglang_request_bytes(spec, context, p.b_kv, tp, pp, em.sglang_hybrid_swa(spec, hw.compute_capability))
    slots, reserve = None, 0.0
    if spec.linear_attention is not None:  # a pool of whole states beside the KV tokens (em.sglang_mamba_held)
        if speculate_method in SGLANG_SPECULATIVE and speculative_tokens:
            running = max_running or SGLANG_SPECULATIVE_RUNNING  # the server's, split over its DP attention ranks
            reserve = em.sglang_speculative_state_bytes(spec, p.b_kv, tp, pp, running // (ep // tp if ep > tp else 1),
                                                        speculative_tokens + 1)
        kv_pool, slots, held = em.sglang_mamba_held(spec, pool, per_request, p.b_kv, tp, pp, reserve)
    else:
        kv_pool, held = pool, max(pool, 0.0) / per_request
    tokens = em.sglang_kv_tokens(spec, kv_pool, p.b_kv, tp, pp, em.sglang_hybrid_swa(spec, hw.compute_capability))
    # the fraction SGLang takes when --mem-fraction-static is not given, by its own rule on the GPU's memory as it
    # reads it (nvidia-smi's total: 81,559 MiB on an H100, 0.835; HardwareSpec.device_total_MiB); said
    # where --memory-utilization differs (the nineteenth audit, E3: 0.9 had been taken without a word, 10 % more pool)
    # (the twenty-ninth audit's R2, the rest: with speculation SGLang before 0.5.14 kept 2 GiB more for EAGLE or MTP,
    # 6 GiB for a draft model; 0.5.14, the profiled release, keeps none: em.SGLANG_NO_SPECULATION_RESERVE)
    own = sglang_own_fraction(hw, tp, pp, ep, speculate_method, engine_version)
    if vision := sglang_vision_note(spec, own):  # the thirty-first audit, M2, and the review's 7
        notes = [vision]
    else:
        notes = ([f"SGLang derives mem_fraction_static {own:g} for this GPU and layout when it is not given "
                  f"(server_args.py _handle_gpu_memory_settings); kvcalc takes --memory-utilization "
                  f"({memory_utilization:g}) as it: pass --memory-utilization {own:g} for SGLang's default"]
                 if abs(own - memory_utilization) > 5e-4 and 0 < own < 1 else
                 # a GPU too small for SGLang's own reserve: no fraction to pass (the thirty-eighth audit, capacity 4)
                 [f"SGLang's own mem_fraction_static rule leaves nothing for {hw.name} at this layout ({own:g}): pass "
                  "--mem-fraction-static yourself; kvcalc takes --memory-utilization "
                  f"({memory_utilization:g}) as it"] if not 0 < own < 1 else [])
    if getattr(spec.attention, "sparse_top_k", None) and (capability(hw.compute_capability) or (0, 0))[0] >= 10 \
            and p.b_kv > 1:
        # SGLang stores a DeepSeek Sparse Attention model's KV cache in fp8 on Blackwell unless told otherwise
        # (server_args.py _set_default_dsa_kv_cache_dtype in release 0.5.14: "fp8_e4m3" if major >= 10 else "bfloat16";
        # the twenty-ninth audit, M3: its default pool on a B200 holds 1.81x the bf16 tokens sized here)
        # (in words every command can act on: plan has no --kv-dtype, and its launch names bf16; the thirty-third
        # audit, launch L5)
        notes.append(f"SGLang's default KV cache for {spec.name}'s sparse attention on {hw.name} is fp8_e4m3, not the "
                     "bf16 sized here, unless --kv-cache-dtype names bf16 (plan's launch does): estimate, capacity and "
                     "serve size SGLang's default with --kv-dtype fp8")
    return {
        "engine": "sglang",
        **_visible_memory(hw),
        "requested_bytes": hw.visible_memory_bytes * memory_utilization,
        "weights_bytes_per_gpu": weights,
        "profile_peak_bytes": 0.0,
        "non_torch_bytes": non_torch,
        "available_kv_bytes": pool,
        "kv_tokens": tokens,
        "max_concurrency": held,
        "max_model_len": context,
        "state_slots": slots,
        "speculative_state_bytes": reserve,  # the per-draft-token states set aside before the split (hybrid 2)
        "notes": notes,
    }


def trtllm_memory(spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                  max_num_tokens: int | None = None, pp: int = 1, ep: int = 1) -> dict:
    """The KV cache TensorRT-LLM would allocate per GPU (memory_utilization as free_gpu_memory_fraction), by
    formulas/engine_memory.py's rule."""
    t = max_num_tokens or em.TRTLLM_MAX_NUM_TOKENS
    weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep, extra_layers="first")  # TensorRT-LLM's stages
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
        raise KvcalcError(f"--vllm-runner: expected auto, {', '.join(em.MODEL_RUNNERS)}, got {shown_value(runner)}")
    if runner != "auto" and engine != "vllm":
        raise KvcalcError("--vllm-runner: only vLLM's memory rule uses it; add --engine vllm")


def vllm_version_of_run(vllm_version: str, engine: str, engine_version: str | None, runner: str = "auto") -> str:
    """The release whose vLLM memory rule applies: --vllm-version where given; else, with vLLM's rule, the release
    --engine-version names, since the run's pool is sized by the release that times its steps (the fourth audit:
    --engine-version 0.9 had timed 0.9's steps in 0.30's pool); a band's name (v0, v1, v2) its newest release's; a
    release past the newest the rule follows keeps the newest rule. Flags that name two releases, or a runner the
    release named does not have, are refused (check_release_flags)."""
    from kvcalc.engines.kernel_eras import flag_release

    check_release_flags(vllm_version, engine, engine_version, runner)
    if not isinstance(vllm_version, str) or vllm_version.strip().lower() != "latest" or engine != "vllm":
        return vllm_version
    release = flag_release(engine_version) if isinstance(engine_version, str) else None
    if release is None and isinstance(engine_version, str):  # a band (v0, 0.1-0.7): the newest release in it
        from kvcalc.engines.overhead import band_named

        band = band_named("vllm", engine_version)
        release = (*band.last, 0) if band is not None else None
    if release is None or not (0, 1) <= release[:2] <= em.VLLM_RELEASED:
        return vllm_version
    ruled = min(release[:2], em.VLLM_LATEST)  # a published release past the rule: the newest rule
    return f"{ruled[0]}.{ruled[1]}"


def engine_version_of_run(vllm_version, engine: str, engine_version: str | None) -> str | None:
    """The release whose step times apply: --engine-version where given; else, under --engine vllm, the release
    --vllm-version names, as --engine-version alone sets the pool too (vllm_version_of_run): one question, asked
    either way, gets one answer (the seventh audit, C8: --vllm-version 0.7.3 had timed 0.24's V1 steps in 0.7.3's
    pool, TPOT 36.1 ms, where --engine-version 0.7.3 gave 62.4); "latest" (the default, whose pool is the newest
    release's) the newest band (the eighth audit, C1: the default run was sized as vLLM 0.30 under the name of the
    band of 0.8-0.28). Call it with the flag as given, before vllm_version_of_run."""
    if engine_version is not None or engine != "vllm" or not isinstance(vllm_version, str):
        return engine_version
    if vllm_version.strip().lower() == "latest":
        return "latest"
    # a minor series as --vllm-version takes it (0.11.x): its first release, as the pool reads it (the thirty-sixth
    # audit, releases 3: passed on as given, it had been refused under --engine-version, a flag not given)
    series = vllm_series(vllm_version)
    return f"{series[0]}.{series[1]}.0" if series else vllm_version


def vllm_series(text: str) -> tuple[int, int] | None:
    """--vllm-version's minor series ('0.6.x', as the memory ledger's logs name some; 'v0.11.X') as (major, minor),
    or None for any other text."""
    m = re.fullmatch(r"v?([0-9]{1,4})\.([0-9]{1,4})\.x", text.strip().lower())
    return (int(m[1]), int(m[2])) if m else None


# vLLM removed its V0 engine in 0.11.0 (vllm-project/vllm PR #25033 "[V0 Deprecation] Remove LLMEngine"; "the V0
# engine has been completely removed from vLLM starting with version 0.11.0", huggingface/optimum-neuron PR #1027)
VLLM_WITHOUT_V0 = (0, 11)
# vLLM V1's alpha, opt-in with VLLM_USE_V1=1, shipped in 0.7.0 (blog.vllm.ai/2025/01/27/v1-alpha-release.html, the
# release's day): no release before it has a V1 model runner
VLLM_V1_ALPHA = (0, 7)


def check_release_flags(vllm_version, engine: str, engine_version, runner: str = "auto") -> None:
    """--vllm-version and --engine-version naming different vLLM releases (0.30.1 and 0.6.3: 0.6.3's step overhead in
    0.30's pool), or --vllm-runner v0 with a release named from 0.11 on, are one-line errors (the fifth audit: both
    had been taken silently)."""
    if engine != "vllm":
        return
    from kvcalc.engines.kernel_eras import flag_release
    from kvcalc.engines.overhead import band_named

    named = isinstance(vllm_version, str) and vllm_version.strip().lower() != "latest"
    asked = check_vllm_version(vllm_version, engine) if named else None
    if isinstance(engine_version, str) and engine_version.strip().lower() not in ("", "latest"):
        release, band = flag_release(engine_version), band_named("vllm", engine_version)
        written = flag_release(vllm_version) if named else None
        given = written[:2] if written else asked  # the release as written, before check_vllm_version's newest rule
        if asked is not None and ((release is not None and release[:2] != given)
                                  or (band is not None and not band.first <= asked <= band.last)):
            raise KvcalcError(f"--vllm-version {vllm_version.strip()} and --engine-version {engine_version.strip()}: "
                              "they name different vLLM releases; give one (--engine-version alone sets the step "
                              "times and the memory rule)")
        if asked is None:  # the release the pool is sized at: a band's newest (vllm_version_of_run)
            asked = release[:2] if release is not None else band.last if band is not None else None
    if runner == "v0" and asked is not None and asked >= VLLM_WITHOUT_V0:
        raise KvcalcError(f"--vllm-runner v0: vLLM removed its V0 engine in 0.11.0, and the release named is "
                          f"{asked[0]}.{asked[1]}; leave --vllm-runner out or name a release before 0.11")
    if runner in ("v1", "v2") and asked is not None and asked < VLLM_V1_ALPHA:  # the eleventh audit, E1
        raise KvcalcError(f"--vllm-runner {runner}: vLLM's V1 engine, and its model runners, came with 0.7.0 (the V1 "
                          f"alpha, 2025-01-27), and the release named is {asked[0]}.{asked[1]}; leave --vllm-runner "
                          "out or name a release from 0.7")


def check_vllm_version(version: str, engine: str) -> tuple[int, int]:
    """--vllm-version: 'latest' or a release such as 0.11, 0.11.0, v0.30.1 or 0.6.5.dev, as (major, minor); only
    with vLLM's memory rule."""
    text = version.strip().lower().removeprefix("v")
    if text == "latest":
        return em.VLLM_LATEST
    if engine != "vllm":
        raise KvcalcError("--vllm-version: only vLLM's memory rule uses it; add --engine vllm")
    # one whole release number as --engine-version takes it (kernel_eras.flag_release: ASCII digits, the engines' own
    # tags; the verification pass: '0.²' was a traceback, Arabic-Indic digits and '0.11.3garbage' were read as
    # releases), or a minor series (0.6.x, as the memory ledger's logs name some); the rule needs major.minor
    from kvcalc.engines.kernel_eras import flag_release

    series = vllm_series(text)
    found = (*series, 0) if series else flag_release(text)
    if found is None:
        raise KvcalcError(f"--vllm-version: expected latest or a release such as 0.11 or 0.30.1, got {version!r}")
    release = found[:2]
    # releases that exist: 0.1 (v0.1.0, June 2023) to the newest published (em.VLLM_RELEASED); there is no 1.x (audit
    # O5). Those past the newest the rule follows (em.VLLM_LATEST) run its rule, said (the thirty-sixth audit,
    # releases 2: 0.31-0.34, the releases pip installs today, had been refused as releases that do not exist)
    newest, published = (".".join(map(str, v)) for v in (em.VLLM_LATEST, em.VLLM_RELEASED))
    if not (0, 1) <= release <= em.VLLM_RELEASED:
        raise KvcalcError(f"--vllm-version: no vLLM release {version!r}; expected 0.1 to {published} (or latest)")
    if release > em.VLLM_LATEST:
        warnings.warn(f"vLLM {version.strip()}: newer than the vLLM memory rule kvcalc follows ({newest}'s, read from "
                      f"its source); sized by {newest}'s rule", CapacityWarning, stacklevel=2)
        return em.VLLM_LATEST
    return release


def engine_memory_rule(engine: str, spec, hw, p, tp: int, *, context: int, memory_utilization: float,
                       max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                       pp: int = 1, ep: int = 1, vllm_runner: str = "auto",
                       vllm_version: tuple[int, int] = em.VLLM_LATEST,
                       cuda_graph_bytes: float | None = None, flashinfer_sampler: bool = False,
                       speculate_method: str | None = None, speculative_tokens: int = 0,
                       engine_version: str | None = None) -> dict:
    """The KV pool per GPU as `engine` (one of ENGINE_MEMORY_RULES) sizes it, and what it would print. With ep > 1
    each GPU holds its tp share of attention and 1 / ep of the routed experts; its pool serves its own data-parallel
    group's sequences, so the concurrency is per group of tp GPUs."""
    if engine == "sglang":
        return sglang_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization, pp=pp, ep=ep,
                             speculate_method=speculate_method, engine_version=engine_version,
                             speculative_tokens=speculative_tokens, max_running=max_num_seqs)
    if engine == "trtllm":
        return trtllm_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                             max_num_tokens=max_num_batched_tokens, pp=pp, ep=ep)
    return vllm_memory(spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                       max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, pp=pp, ep=ep,
                       runner=vllm_runner, version=vllm_version, cuda_graph_bytes=cuda_graph_bytes,
                       flashinfer_sampler=flashinfer_sampler, speculate_method=speculate_method,
                       speculative_tokens=speculative_tokens)


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


def sglang_vision_note(spec, own: float) -> str | None:
    """What SGLang's own mem_fraction_static is for a model with a vision tower: below its text rule's `own`, by
    server_args.py adjust_mem_fraction_for_vlm (x 0.95 and a factor of the tower's depth and width), which kvcalc does
    not model as the spec has no tower shape; None for a model without one."""
    if not getattr(spec, "vision_encoder_params", 0):
        return None
    return (f"{spec.name} has a vision tower: SGLang's own mem_fraction_static is below the {own:g} its text rule "
            "gives this GPU and layout (server_args.py adjust_mem_fraction_for_vlm: x 0.95 and a factor of the "
            "tower's depth and width), which kvcalc does not model; it takes --memory-utilization as given")


def sglang_own_fraction(hw, tp: int, pp: int = 1, ep: int = 1, speculation: str | None = None,
                        engine_version: str | None = None) -> float:
    """The mem_fraction_static SGLang derives for this GPU and layout when it is not given
    (formulas/engine_memory.py sglang_derived_mem_fraction), from the device's total as SGLang reads it
    (HardwareSpec.device_total_MiB: nvidia-smi's, 81,559 MiB on an H100; the thirty-sixth audit, hwspecs 1: the
    datasheet's 24 GiB on an A10 had given 0.847 where nvidia-smi's 23,028 MiB gives 0.837); under expert parallelism
    its ep GPUs and ep / tp data-parallel attention ranks; with speculation (draft, eagle, mtp) its reserve for the
    draft."""
    from kvcalc.engines.kernel_eras import asks_latest, release3
    from kvcalc.engines.overhead import band_named

    # the release's own draft reserve (the thirty-sixth audit, releases 4: 0.5.13's had been said as 0.5.14's); a
    # band's name or latest: the band's newest, the profiled release's rule
    named = engine_version is None or asks_latest(engine_version) or band_named("sglang", engine_version) is not None
    release = None if named else release3(engine_version)
    ranks = tp if ep <= 1 else ep  # SGLang's --tp-size: the expert-parallel group under DP attention
    if release is not None and release < em.SGLANG_RESERVED_MEMORY_RULE:  # the TP ladder (the thirty-seventh audit,
        return em.sglang_default_mem_fraction(ranks)  # memory 1: 0.835 had been said for 0.4.4)
    return em.sglang_derived_mem_fraction(hw.device_total_MiB, ranks, pp, ep // tp if ep > tp else 1, speculation,
                                          release)


def kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp=1, ep=1):
    """(KV budget per GPU, activation reserve per GPU), as formulas/memory.py's one rule."""
    activations = activation_workspace_bytes(spec, 1, prefill_chunk, p.b_a)
    usable = hw.visible_memory_bytes * memory_utilization
    weights = weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep) * tp  # the tp group's share of the heaviest stage
    return kv_budget_bytes(usable, weights, activations, tp), activations / tp


# engine_longest_context calls a pool that still holds this many tokens a request unbounded: past any window plus a
# step's tokens, so only a pool whose requests stop growing holds it
LONGEST_SEARCHED_TOKENS = 2**50


def engine_longest_context(memory: dict, spec, hw, p, tp: int, pp: int = 1, batch: int = 1) -> float:
    """The longest context each of `batch` requests may have in the pool `memory` describes (engine_memory_rule's
    dict for this deployment): the largest L at which that engine's maximum concurrency is still at least `batch`
    [tokens], so every figure the table prints comes from one rule (audit 12-05 D). Per engine, one request of L
    tokens takes:
      vllm    vllm_request_blocks: whole blocks in every group of the layout, a sliding group
              ceil(min(W - 1 + T, L) / block) + 1 and a chunked one ceil(min(C + T, L) / block) blocks (T: the
              tokens in flight, em.vllm_window_tokens: two steps' from vLLM 0.27 under async scheduling), from the
              num_blocks behind the printed concurrency (num_blocks = concurrency x the blocks of one request of
              max_model_len, so the two agree whatever the pool);
      trtllm  trtllm_request_bytes: whole 32-token blocks;
      sglang  sglang_request_bytes: single tokens.
    Gemma-3-27B on an H100 at utilisation 0.75 (vLLM 0.30, 5,575 blocks of 10 pages, 7 groups): past 1,023 + 2 x
    8,192 tokens six sliding groups would take 6 x 1,089 blocks, more than the pool, so below it a request of c full
    blocks takes 7 c + 6: c = 795, 12,720 tokens.
    inf where no length outgrows the pool (only windowed layers or fixed states grow); 0 where not even one token
    fits."""
    pool, per_request = _request_size(memory, spec, hw, p, tp, pp)
    if memory["engine"] == "sglang" and spec.linear_attention is not None:
        # SGLang's hybrid pool: whole states in their slots (at most one request a slot, at any length) and the KV
        # part beside them (em.sglang_mamba_held; the thirty-first audit, M1: the whole pool over a request's KV and
        # state had put Qwen3-Next's longest context 1.9x past what its KV part holds, and a context at batches the
        # slots cannot seat)
        if batch > memory["state_slots"]:
            return 0
        whole, share = per_request, per_request(0)  # share: a request's state, sglang_request_bytes at no tokens
        pool = em.sglang_mamba_held(spec, pool, share, p.b_kv, tp, pp, memory.get("speculative_state_bytes", 0.0))[0]

        def per_request(n):  # its KV alone
            return whole(n) - share

    def fits(length: int) -> bool:  # the engine's max_concurrency at this length is at least batch
        return pool > 0 and pool / per_request(length) >= batch

    return longest_fitting(fits, LONGEST_SEARCHED_TOKENS)


def _request_size(memory: dict, spec, hw, p, tp: int, pp: int):
    """(pool, size of one request of L tokens as a function of L) in the units the engine's max_concurrency divides:
    vLLM's blocks (or, without softmax attention, whole states: one a request), else bytes per GPU."""
    if memory["engine"] == "sglang":
        hybrid = em.sglang_hybrid_swa(spec, hw.compute_capability)
        return max(memory["available_kv_bytes"], 0.0), lambda n: em.sglang_request_bytes(spec, n, p.b_kv, tp, pp,
                                                                                           hybrid)
    if memory["engine"] == "trtllm":
        return max(memory["available_kv_bytes"], 0.0), lambda n: em.trtllm_request_bytes(spec, n, p.b_kv, tp, pp)
    layout = _vllm_layout_of(memory, spec, hw, p, tp, pp)
    if layout is None:  # state only: the concurrency is whole states, one a request at any length
        return memory["max_concurrency"], lambda n: 1
    steps = memory.get("window_tokens", memory["max_num_batched_tokens"])
    k = vllm_extra_state_blocks(memory)
    blocks = round(memory["max_concurrency"]
                   * em.vllm_request_blocks(spec, layout, memory["max_model_len"], steps, k))
    return blocks, lambda n: em.vllm_request_blocks(spec, layout, n, steps, k)


def engine_request_bytes(memory: dict, spec, hw, p, tp: int, pp: int, length: int) -> float:
    """Bytes of the pool one request of `length` tokens takes per GPU under the engine rule `memory` describes
    (engine_memory_rule's dict), what a refusal should quote beside the pool [B]: vLLM's blocks in every group
    (vllm_request_blocks) x a block's bytes (a model without softmax attention: one state), TensorRT-LLM's whole
    32-token blocks, SGLang's single tokens. Gemma-3-27B at 40,945 tokens under vLLM: (ceil(40,945 / 16) + 6 x 577)
    = 6,022 blocks of 1,310,720 B, 7.35 GiB, where kvcalc's window-flat count is 3.53 GiB."""
    _, per_request = _request_size(memory, spec, hw, p, tp, pp)
    if memory["engine"] != "vllm":
        return per_request(length)
    layout = _vllm_layout_of(memory, spec, hw, p, tp, pp)
    if layout is None:  # as vllm_max_concurrency counts a state-only model: one state a request
        return em.vllm_request_state_bytes(spec, tp, pp, memory.get("speculative_tokens", 0))
    return per_request(length) * layout.block_bytes


def _vllm_layout_of(memory: dict, spec, hw, p, tp: int, pp: int):
    """em.vllm_layout of the deployment the vLLM rule `memory` (vllm_memory's dict) sized: its speculation's wider
    state and drafter's layers with it."""
    return em.vllm_layout(spec, p.b_kv, tp, pp, em.vllm_block_alignment(spec, hw.compute_capability),
                          memory.get("speculative_tokens", 0), memory.get("draft_layers", 0))


def engine_sequences_held(engine: str, spec, hw, p, tp: int, *, length: int, memory_utilization: float,
                          pp: int = 1, ep: int = 1, engine_version: str | None = None,
                          draft_weight_bytes: float = 0.0, draft_kv_bytes: float = 0.0,
                          speculative_tokens: int = 0, speculate_method: str | None = None) -> int:
    """How many sequences of `length` tokens one data-parallel group of tp GPUs holds in the pool `engine` (one of
    ENGINE_MEMORY_RULES) sizes with its defaults, as `capacity --engine X` and `serve --engine X` count them: the
    engine's max_concurrency at max_model_len = length, floored; with speculation the draft's weights come out of
    the pool and its KV joins each request's share, as serve counts them. estimate's cross-check of its own rule
    (the fifth audit: estimate said a batch fits that capacity and serve under the same --engine queue)."""
    rule = engine_memory_rule(engine, spec, hw, p, tp, context=length, memory_utilization=memory_utilization,
                              pp=pp, ep=ep, vllm_version=check_vllm_version(
                                  vllm_version_of_run("latest", engine, engine_version), engine),
                              speculative_tokens=speculative_tokens, speculate_method=speculate_method)
    held = rule["max_concurrency"]
    if rule.get("draft_layers"):  # vLLM pages the drafter's layers in its blocks: its KV is in the concurrency
        draft_kv_bytes = 0.0
    if held > 0 and (draft_weight_bytes or draft_kv_bytes):
        pool = max(rule["available_kv_bytes"] - draft_weight_bytes, 0.0)
        held = pool / (rule["available_kv_bytes"] / held + draft_kv_bytes)
    return math.floor(held * (1 + 1e-12))  # pool / (pool / N) is N to float order (serve's guard)
