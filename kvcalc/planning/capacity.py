"""What to deploy: attention variants side by side (compare) and GPU counts and concurrency (capacity).

Both print their assumptions. The KV budget per GPU is capacity * utilisation - weights / tp - activations,
where activations are the workspace of one prefill chunk (chunked prefill, as vLLM schedules it).
"""

from __future__ import annotations

import math
import warnings

from kvcalc.checks import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_TOKENS,
    check_int,
    check_number,
    check_price,
)
from kvcalc.engines.memory import (
    ENGINE_MEMORY_RULES,
    check_cuda_graph_memory,
    check_flashinfer_sampler,
    check_vllm_runner,
    check_vllm_version,
    engine_longest_context,
    engine_memory_rule,
    engine_sequences_held,
    kvcalc_budget,
)
from kvcalc.engines.overhead import with_band
from kvcalc.errors import CapacityWarning, KvcalcError
from kvcalc.estimator import (
    SpeculativeTimer,
    check_dtypes,
    check_memory_utilization,
    check_pp,
    check_prefill_chunk,
    check_tp,
    evaluate,
    fp8_block_refusal,
    load_deployment,
    phase_metrics,
    speculative_block,
    time_model_text,
    tp_refusal,
    unprofiled_note,
    weights_overflow,
)
from kvcalc.formulas.capacity import max_context, max_sequences
from kvcalc.formulas.kv import kv_bytes_per_token
from kvcalc.formulas.memory import (
    DEFAULT_MEMORY_UTILIZATION,
    DEFAULT_PREFILL_CHUNK,
    replica_batch,
)
from kvcalc.formulas.parallel import beyond_node, check_ep, group_link_label
from kvcalc.formulas.params import weight_bytes_per_gpu
from kvcalc.formulas.workload import cost_per_million_tokens
from kvcalc.rewrite import NotDivisible, cache_layout, rewrite_attention
from kvcalc.specs.catalog import engine_refusal, resolve_engine
from kvcalc.speculation import no_mtp_module, unsupported_with

TP_DEGREES = (1, 2, 4, 8, 16, 32, 64)


def _check(context: int, memory_utilization: float, prefill_chunk: int) -> None:
    check_int("--context", context, 1, MAX_TOKENS)
    check_memory_utilization(memory_utilization)
    check_prefill_chunk(prefill_chunk)


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


# capacity -f csv writes these engine_memory columns whatever the rule (empty under kvcalc's), so files from
# different engines stack (audit I2); vLLM's rule reports all of them, SGLang's and TensorRT-LLM's a subset
ENGINE_MEMORY_KEYS = ("engine", "visible_memory_bytes", "visible_memory_source", "requested_bytes",
                      "weights_bytes_per_gpu", "rope_cache_bytes", "profile_peak_bytes", "non_torch_bytes",
                      "fusion_workspace_bytes", "cuda_graph_bytes", "cuda_graphs_counted", "available_kv_bytes",
                      "kv_tokens", "max_concurrency", "binding_pipeline_stage", "max_model_len",
                      "max_num_batched_tokens", "window_tokens", "speculative_tokens", "draft_layers",
                      "mamba_cache_mode", "speculative_state_bytes",
                      "max_num_seqs", "model_runner",
                      "sampler",
                      "vllm_version",
                      "state_slots", "notes")


def unbounded_context_note(spec) -> str:
    """Why the longest context that fits is unbounded (formulas/capacity.py, max_context returns inf)."""
    if spec.attention_layers == 0:
        return ("unbounded: no layer's cache grows with the context (every layer keeps a fixed linear-attention "
                "or state-space state)")
    return "unbounded: only sliding-window layers grow, and they stop at the window"


def _context_fields(spec, tokens) -> dict:
    """max_context_at_batch, with a note saying why when it is unbounded (JSON writes it as null)."""
    if isinstance(tokens, float) and math.isinf(tokens):
        return {"max_context_at_batch": tokens, "max_context_at_batch_note": unbounded_context_note(spec)}
    return {"max_context_at_batch": tokens}


def gpu_count(n: int) -> str:
    return f"{n} GPU" if n == 1 else f"{n} GPUs"


def compare(model, attn=("mha", "mqa", "gqa8", "mla"), gpu="h100-sxm", *, batch: int = 1, context: int = 4096,
            weight_dtype: str = "auto", kv_dtype: str = "bf16",
            memory_utilization: float = DEFAULT_MEMORY_UTILIZATION, prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
            engine: str = "auto", speculate: str | None = None, tp: int = 1, pp: int = 1,
            ep: int = 1) -> list[dict]:
    """One row per attention variant (the model's own first), each also relative to the model's own. With
    speculate (estimate's --speculate forms), each row also gives the speculative time per token and speed-up.
    tp, pp, ep: the deployment each variant runs on, as estimate's --tp/--pp/--ep (one GPU's share of the KV
    cache and weights; max_batch_at_context counts every data-parallel attention group of an --ep deployment).

    A variant that does not apply (gqaN with N not dividing the query heads) or that repeats the model's own
    cache layout (gqa8 of a GQA-8 model) is skipped with a warning; contexts are capped at max positions."""
    _check(context, memory_utilization, prefill_chunk)
    check_int("--batch", batch, 1, MAX_BATCH)
    check_int("--tp", tp, 1, MAX_GPUS)
    check_dtypes(weight_dtype, kv_dtype, engine)
    from kvcalc.checks import check_speculate

    check_speculate(speculate)  # '' is not "none" (the fifteenth audit, E4)
    if not attn:
        raise KvcalcError("--attn: expected at least one variant")
    base, hw, weight_dtype, p = load_deployment(model, gpu, weight_dtype, kv_dtype)
    check_tp(tp, base, weight_dtype, ep)  # as estimate, capacity and serve refuse it
    check_pp(pp, base)
    check_ep(ep, base, tp)
    if ep > 1 and pp > 1:
        raise KvcalcError("--ep: not with --pp yet")
    groups = ep // tp if ep > 1 else 1  # data-parallel attention groups, each with its own sequences
    said: list[str] = []  # every warning, also in each row's `warnings` (the seventh audit, V7: the JSON had none)

    def say(message: str) -> None:
        said.append(message)
        warnings.warn(message, CapacityWarning, stacklevel=3)

    profile = resolve_engine(engine, hw, said)  # its no-profile warning is warned there
    from kvcalc.checks import past_positions

    if why := past_positions(base, context):  # as estimate, capacity and sweep warn (the twelfth audit, E3)
        say(why)
    if speculate and (why := unsupported_with(engine, pp, profile, speculate)):
        say(why)
    if why := no_mtp_module(base, speculate):
        say(why)
    from kvcalc.engines.launch import layout_refusal

    if profile is not None and (why := layout_refusal(profile.engine, tp, ep, base, pp)):
        say(why)
    if why := beyond_node(hw, tp, ep):
        say(why)
    from kvcalc.engines.launch import format_warnings

    for why in format_warnings(hw, weight_dtype, profile.engine if profile is not None else None, kv_dtype, base):
        say(why)  # as estimate, capacity, serve and sweep say them (the twenty-seventh audit, R1: compare had not)
    rows: list[dict] = []
    seen: dict[tuple, str] = {}  # cache layout -> the first variant with it
    skipped: list[str] = []
    capped: list[str] = []  # capped_context's warnings
    by_engine: list[str] = []  # variants whose count the named engine's own rule puts elsewhere (the sixth audit)
    # the model's own row comes first whatever is asked; "own" among the variants names it, not a second row to skip
    # (the thirty-seventh audit, agree 4: --attn own,mqa had warned "compare skipped own" beside the own row)
    asked = [v for v in attn if v is not None and not (isinstance(v, str) and v.strip().lower() == "own")]
    for variant in (None, *asked):
        try:
            spec = rewrite_attention(base, variant)
        except NotDivisible:
            skipped.append(f"{variant} (does not divide the {base.attention.num_heads} query heads)")
            continue
        layout = cache_layout(spec.attention, spec.linear_attention)
        if layout in seen:
            skipped.append(f"{variant or 'own'} (the same cache as {seen[layout]})")
            continue
        seen[layout] = variant or "the model's own attention"
        budget, _ = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp, ep)
        ev = evaluate(spec, hw, batch=batch, context=context, prompt=context, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                      memory_utilization=memory_utilization, profile=profile, prefill_chunk=prefill_chunk, tp=tp,
                      pp=pp, ep=ep)
        dec = phase_metrics(ev.decode, ev.decode_sol, batch, hw, weight_dtype, ev.comm_s, ev.comm_sol_s, ev.pipeline_s)
        if not rows and (unprofiled := unprofiled_note(ev, profile, engine, weight_dtype, kv_dtype)):
            say(unprofiled)  # as estimate says it (the sixth audit)
        local = replica_batch(batch, ep, tp)
        longest, most, fits = (max_context(spec, local, budget, p.b_kv, tp, pp),
                               max_sequences(spec, context, budget, p.b_kv, tp, pp), bool(ev.fits))
        timer = (SpeculativeTimer(spec, hw, speculate, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp,
                                  profile=profile, ep=ep) if speculate else None)
        if timer is not None:  # the draft's weights and KV cache share the GPU, as estimate and serve count them
            pool = budget - timer.draft_weight_bytes()
            longest, most = timer.longest_context(local, pool, pp), timer.sequences_held(context, pool, pp)
            fits = bool(ev.memory["total"] + timer.draft_bytes(local, context) <= ev.usable_bytes)
        if engine in ENGINE_MEMORY_RULES and engine not in hw.unsupported_engines:
            # estimate's cross-check of kvcalc's rule against the named engine's, per data-parallel group
            held = engine_sequences_held(
                engine, spec, hw, p, tp, length=context, memory_utilization=memory_utilization, pp=pp, ep=ep,
                draft_weight_bytes=timer.draft_weight_bytes() if timer else 0.0,
                draft_kv_bytes=timer.draft_kv_bytes_per_sequence(context) if timer else 0.0,
                speculative_tokens=timer.sp.k if timer else 0, speculate_method=timer.sp.method if timer else None)
            if held != most:  # on the row's scale: every data-parallel group's
                by_engine.append(f"{variant or 'own'} {held * groups:,} (kvcalc's {most * groups:,})")
        rows.append({
            "variant": variant or f"{base.attention.kind} (own)",
            "kv_bytes_per_token": kv_bytes_per_token(spec, p.b_kv),
            **_context_fields(spec, capped_context(spec, longest, capped, warn=False)),
            "max_batch_at_context": most * groups,
            "decode_ms": dec["ms"],
            "tokens_per_s": dec["tokens_per_s"],
            "arithmetic_intensity": dec["arithmetic_intensity"],
            "bound": str(dec["bound"]),
            "fits": fits,
        })
        if timer is not None and speculate:  # as estimate times it, under --pp and --ep too (the fifth audit: compare had timed
            # speculation without them, 41.5 ms a token and x1.29 where estimate gives 116.4 ms and x0.62)
            sb = speculative_block(spec, hw, speculate, batch=batch, context=context, weight_dtype=weight_dtype,
                                   kv_dtype=kv_dtype, tp=tp, profile=profile, pp=pp, ep=ep, timer=timer)
            rows[-1].update(speculative_ms_per_token=sb.ms_per_token, speculative_speedup=sb.speedup,
                            speculative_breakeven_batch=sb.breakeven_batch)
    if by_engine:  # a replica's GPUs, tp x pp or the expert-parallel group, and the command that prints the same count
        # (capacity has no --speculate: serve -n max counts the draft's KV; the thirty-seventh audit, agree 2: "one
        # group of 2 GPUs" had been said of TP 2 x PP 2, and per data-parallel group beside the row's total under --ep)
        gpus = max(tp, ep) * pp
        where = (f"`kvcalc serve -n max --speculate {speculate} --engine {engine} -f json`'s max_concurrency"
                 if speculate else f"`kvcalc capacity --engine {engine}`")
        say(f"max_batch_at_context is kvcalc's memory rule; by {engine}'s own ({where}) a replica of {gpus} "
            f"GPU{'s' if gpus > 1 else ''} holds, at {context:,} tokens: {', '.join(by_engine)}")
    if skipped:
        say(f"compare skipped {', '.join(dict.fromkeys(skipped))}")
    if capped:
        say(f"{len(capped)} of {len(rows)} variants would hold a longer context than {base.name}'s "
            f"max_position_embeddings {base.max_position_embeddings:,}; their longest context is reported as that")
    own = rows[0]
    for row in rows:
        for key in ("kv_bytes_per_token", "max_batch_at_context", "decode_ms", "tokens_per_s"):
            row[f"{key}_vs_own"] = row[key] / own[key] if own[key] else None
            if not own[key]:  # None and why, as the JSON writer words a NaN: the API's rows dump as strict JSON too
                # (the twenty-eighth audit, F7: NaN where the model's own attention holds nothing at the context)
                row[f"{key}_vs_own_note"] = f"the model's own attention has {key} 0 here: no ratio"
        row["warnings"] = list(said)
    return rows


def capacity(model, gpu="h100-sxm", *, context: int, batch: int | None = None, gpus: int | None = None,
             target_tokens_per_s: float | None = None, price_per_gpu_hour: float | None = None,
             weight_dtype: str = "auto", kv_dtype: str = "bf16", memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
             prefill_chunk: int = DEFAULT_PREFILL_CHUNK, engine: str = "auto",
             max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None, pp: int = 1,
             ep: int = 1, vllm_runner: str = "auto", vllm_version: str = "latest",
             cuda_graph_GiB: float | None = None, flashinfer_sampler: bool = False,
             engine_version: str | None = None, tp: int | None = None) -> dict:
    """Size a tensor-parallel deployment: fewest GPUs for the weights, concurrency, context, throughput, cost.

    tp: tensor-parallel GPUs, as the CLI's --tp and every other call name it (gpus: its older name; give one).
    engine="vllm" budgets memory as vLLM does (visible memory, its profiling peak for max_num_batched_tokens and
    max_num_seqs, non-torch buffers) and reports the KV tokens and maximum concurrency it would print at start-up
    with max_model_len = context; engine="sglang" as SGLang does (memory_utilization as mem_fraction_static);
    engine="trtllm" as TensorRT-LLM does (memory_utilization as free_gpu_memory_fraction); every other engine uses
    kvcalc's rule (formulas/memory.py). Under an engine's rule the longest context at the batch is
    the longest request its own layout admits at that concurrency (engines/memory.py engine_longest_context).
    pp: pipeline stages, each a tensor-parallel group; a replica is tp x pp GPUs. ep: expert-parallel GPUs of a
    MoE model (a replica of ep GPUs, attention in ep / tp data-parallel groups of tp = gpus, default 1)."""
    from kvcalc.engines.memory import engine_version_of_run, vllm_version_of_run

    if tp is not None:  # the seventh audit, B3/C9: the API's capacity alone had no tp=
        if gpus is not None and gpus != tp:
            raise KvcalcError(f"tp: {tp} and gpus={gpus} name one figure twice; give tp alone")
        gpus = tp
    from kvcalc.serving.closed_form import rule_engine

    # the run's own step times; under auto those of the engine auto times the GPU with, as serve names them
    engine_version = engine_version_of_run(vllm_version, rule_engine(engine, gpu), engine_version)
    vllm_version = vllm_version_of_run(vllm_version, engine, engine_version, vllm_runner)  # the run's own release
    _check(context, memory_utilization, prefill_chunk)
    for flag, value in (("--max-num-batched-tokens", max_num_batched_tokens), ("--max-num-seqs", max_num_seqs)):
        if value is not None:
            check_int(flag, value, 1, MAX_TOKENS)
            if engine != "vllm" and not (engine == "trtllm" and flag == "--max-num-batched-tokens"):
                users = ("vLLM's and TensorRT-LLM's memory rules use it (its max_num_tokens); add --engine vllm or "
                         "trtllm" if flag == "--max-num-batched-tokens" else
                         "only vLLM's memory rule uses it; add --engine vllm")
                raise KvcalcError(f"{flag}: {users}")
    check_dtypes(weight_dtype, kv_dtype, engine)
    check_vllm_runner(vllm_runner, engine)
    version = check_vllm_version(vllm_version, engine)
    cuda_graph_bytes = check_cuda_graph_memory(cuda_graph_GiB, engine)
    check_flashinfer_sampler(flashinfer_sampler, engine)
    if batch is not None:
        check_int("--batch", batch, 1, MAX_BATCH)
    if gpus is not None:
        check_int("--tp", gpus, 1, MAX_GPUS)  # the flag (--gpus its old alias); the keyword keeps gpus
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
    warned: list[str] = []
    if engine in hw.unsupported_engines:  # as estimate and serve refuse it (the fresh audit: capacity had answered)
        raise KvcalcError(engine_refusal(engine, hw))
    try:
        profile = resolve_engine(engine, hw, warned)  # warned there; in the output's list too (the sixth audit)
    except KvcalcError:
        if not engine_rule:
            raise
        profile = None  # the engine's memory rule needs no kernel profile; the decode step falls back to the roofline
        notes.append(f"no {engine} kernel profile for {hw.name}: memory as {engine} budgets it, decode timed on the "
                     "datasheet roofline")
    # the release band's step overhead (engines/overhead.py); without a kernel profile the release still picks the
    # engine's memory rule below, and the roofline takes no overhead (the thirty-sixth audit, hwspecs 6: "the roofline
    # has no engine; pick one with --engine" had answered an --engine vllm --engine-version 0.19.0)
    if profile is None and engine_rule:  # the release is still checked, as with a profile (the review of the
        # thirty-sixth audit's change, 2: 'banana' had been taken on this path)
        from kvcalc.engines.overhead import band

        band(engine, engine_version)
    else:
        profile = with_band(profile, engine_version)
    # a weight or KV format the part or the engine does not run, as estimate and serve say it (the twenty-fourth
    # audit, K1: an NVFP4 cache on an H100 had held 3.6x bf16's requests without a word)
    from kvcalc.engines.launch import format_warnings

    notes += format_warnings(hw, weight_dtype, profile.engine if profile is not None else None, kv_dtype, spec)

    def engine_memory(tp, graphs=cuda_graph_bytes, stages=pp, experts=ep):
        return engine_memory_rule(engine, spec, hw, p, tp, context=context, memory_utilization=memory_utilization,
                                  max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, pp=stages,
                                  ep=experts, vllm_runner=vllm_runner, vllm_version=version,
                                  cuda_graph_bytes=graphs, flashinfer_sampler=flashinfer_sampler,
                                  engine_version=engine_version)

    def fits_one_sequence(tp, stages=pp, experts=ep):
        if engine_rule:
            return engine_memory(tp, stages=stages, experts=experts)["max_concurrency"] >= 1
        budget, _ = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, stages, experts)
        return max_sequences(spec, context, budget, p.b_kv, tp, stages) >= 1

    def refusal(t, experts=ep):  # as check_tp refuses a degree
        return tp_refusal(spec, t, experts) or fp8_block_refusal(spec, weight_dtype, t, experts)

    def fewest(degrees, stages=pp, experts=ep):  # the first degree the model allows that holds one sequence
        return next((t for t in degrees if refusal(t, experts) is None and fits_one_sequence(t, stages, experts)),
                    None)

    candidates = [t for t in TP_DEGREES if refusal(t) is None and (ep == 1 or (t <= ep and ep % t == 0))]
    min_tp = fewest(candidates)
    if gpus is not None and refusal(gpus):
        raise KvcalcError(f"--tp: {refusal(gpus)}")
    upto = min_tp or gpus  # the degrees that divide the model (tp_refusal) below the smallest power of two that
    # holds it, or up to the --gpus asked for (GPT-3 175B's 96 heads and width 49,152: 3, 6, 12, 24; the tenth audit,
    # E7: 32 L4s had been the fewest where 24 hold it)
    if ep == 1 and upto:
        min_tp = fewest(range(1, upto + 1)) or min_tp
    # under --ep the fewest tensor-parallel GPUs of a group that hold a sequence (candidates: those dividing --ep), as
    # without it (the thirty-fourth audit, capacity 2: --tp 1 had been taken, and the model said not to fit on GPUs
    # that hold it at --tp 2)
    tp = gpus or min_tp
    if ep > 1 and tp is not None and not fits_one_sequence(tp):
        tp = None
    if tp is None:
        most = gpus or max(candidates)
        if engine_rule and cuda_graph_bytes and engine_memory(most, 0)["max_concurrency"] >= 1:  # audit U3
            raise KvcalcError(f"--cuda-graph-memory: the {cuda_graph_GiB:g} GiB it sets aside on every GPU leave no "
                              f"room for the KV cache of one sequence of {context:,} tokens ({spec.name} on "
                              f"{most * pp} {hw.name} GPUs fits without it; more GPUs do not change it)")
        # larger degrees the fp8 scale blocks refuse (the eighth audit's verification, W5: MiniMax-M2's fp8-block
        # experts at TP 8 and 16 had gone unmentioned beside "does not fit on 4 GPUs")
        blocked = [(t, why) for t in TP_DEGREES if gpus is None and t > most and tp_refusal(spec, t, ep) is None
                   and (why := fp8_block_refusal(spec, weight_dtype, t, ep))]
        # named by --context, the flag the web app's form shows it beside (the thirty-third audit, web 4)
        raise KvcalcError(f"--context: {spec.name} at context {context} does not fit on {max(most * pp, ep)} "
                          f"{hw.name} GPUs at --memory-utilization {memory_utilization:g}"
                          + (f" (--ep {ep}: each GPU holds 1/{ep} of the experts and its replica's sequences)"
                             if ep > 1 else "")
                          + (f"; --tp {', '.join(str(t) for t, _ in blocked)} refused: "
                             f"{blocked[0][1].split(': ', 1)[1]}; --ep or --pp spread it further" if blocked else ""))
    budget, activations = kvcalc_budget(spec, hw, p, memory_utilization, prefill_chunk, tp, pp, ep)
    replicas_dp = ep // tp if ep > 1 else 1  # data-parallel attention groups, each with its own sequences
    seqs = max_sequences(spec, context, budget, p.b_kv, tp, pp) * replicas_dp
    vllm = None
    running = seqs  # the sequences the scheduler runs at once: those the pool holds, or fewer (max_num_seqs)
    from kvcalc.engines.scheduler import VLLM_SCHEDULED, running_cap

    if engine_rule or engine in VLLM_SCHEDULED:
        if engine_rule:
            vllm = engine_memory(tp)
            budget, activations = vllm["available_kv_bytes"], vllm["profile_peak_bytes"]
            seqs = running = math.floor(vllm["max_concurrency"]) * replicas_dp
        # the scheduler runs at most its max_num_seqs (vLLM's SchedulerConfig; the tenth audit, E11: --max-num-seqs 4
        # had decoded at the pool's 110), max_running_requests (SGLang) or max_batch_size (TensorRT-LLM) at once
        # (the fourteenth audit, S9: SGLang at 4,602 and TensorRT-LLM at 3,643); --engine auto runs vLLM's scheduler
        # with its defaults, as serve takes it (the nineteenth audit, S1: an L40S at the pool's 782, not vLLM's 256)
        cap = running_cap(engine, hw.name, hw.visible_memory_bytes / 2**30, version,
                          pool_tokens=(vllm or {}).get("kv_tokens", 0.0),
                          context_len=spec.max_position_embeddings or context,
                          given=(vllm or {}).get("max_num_seqs") or max_num_seqs,
                          state_slots=(vllm or {}).get("state_slots"))
        flag = {"sglang": "max_running_requests", "trtllm": "max_batch_size"}.get(engine, "max_num_seqs")
        if cap and seqs > cap * replicas_dp:
            running = cap * replicas_dp
            notes.append(f"{flag} {cap:,} caps the sequences running at once"
                         + (" in each data-parallel replica" if replicas_dp > 1 else "")
                         + f" (the KV pool holds {seqs:,}): the batch, its tokens/s and the replicas for a target are "
                         f"at {running:,}" + (" unless --batch is given" if batch else ""))
    if vllm is not None:
        notes.extend(vllm.get("notes", ()))
        if hw.visible_memory_GiB is None:
            notes.append(f"{hw.name} has no visible_memory_GiB: {engine}'s budget starts from the datasheet "
                         f"{hw.memory_GiB:g} GiB, which overstates what torch.cuda.mem_get_info reports")
    from kvcalc.engines.launch import layout_refusal

    if tp is not None and (why := layout_refusal(profile.engine if profile else engine, tp, ep, spec, pp)):
        notes.append(why)
    if tp is not None and (why := beyond_node(hw, tp, ep)):
        notes.append(why)
    if (profile.engine if profile else engine) == "gpt-fast":  # the seventh audit's verification, W4
        from kvcalc.engines.scheduler import GPT_FAST_IS_NO_SERVER

        notes.append(f"gpt-fast is {GPT_FAST_IS_NO_SERVER}: the batch, throughput and replicas here time its "
                     "kernels at that batch, which gpt-fast itself does not serve")
    for note in notes:
        warnings.warn(note, CapacityWarning, stacklevel=2)
    notes[:0] = warned
    from kvcalc.checks import past_positions

    if why := past_positions(spec, context):
        notes.append(why)
        warnings.warn(why, CapacityWarning, stacklevel=2)
    # the longest context at the batch: under an engine's rule, its own request size (whole blocks, per-group window
    # blocks) in its pool, so it agrees with the max_concurrency beside it; else kvcalc's byte count (audit 12-05 D)
    per_replica = replica_batch(batch or 1, ep, tp)
    longest = (engine_longest_context(vllm, spec, hw, p, tp, pp, per_replica) if vllm else
               max_context(spec, per_replica, budget, p.b_kv, tp, pp))
    run_batch = batch or max(min(seqs, running), 1)
    ev = evaluate(spec, hw, batch=run_batch, context=context, prompt=context, weight_dtype=weight_dtype,
                  kv_dtype=kv_dtype, tp=tp, profile=profile, pp=pp, ep=ep,
                  memory_utilization=memory_utilization)  # its usable bytes name the binding (the sixth audit)
    dec = phase_metrics(ev.decode, ev.decode_sol, run_batch, hw, weight_dtype, ev.comm_s, None, ev.pipeline_s)
    if (unprofiled := unprofiled_note(ev, profile, engine, weight_dtype, kv_dtype)):  # as estimate (sixth audit)
        warnings.warn(unprofiled, CapacityWarning, stacklevel=2)
        notes.append(unprofiled)
    group = ep if ep > 1 else tp * pp
    replicas = math.ceil(target_tokens_per_s / dec["tokens_per_s"]) if target_tokens_per_s else 1
    if target_tokens_per_s and gpus is None and replicas > 1:  # the eleventh audit, E3: 326 GPUs at TP 2 where 40
        # at TP 8 serve the same target, without a word
        notes.append(f"the target is met with replicas of the fewest GPUs that hold the model ({gpu_count(group)}); a "
                     "larger --tp holds more sequences a GPU and may need fewer GPUs in all (kvcalc plan searches "
                     "the layouts for the cheapest)")
        warnings.warn(notes[-1], CapacityWarning, stacklevel=2)
    hypothetical = run_batch > seqs  # the eighth audit, B4: -b 1000 where 55 fit had sized GPUs and cost in silence
    if not hypothetical and run_batch > running:  # more than the scheduler runs at once (the thirty-fourth audit,
        # capacity 4: -b 3,000 under vLLM's 1,024 had been timed and costed as a real batch)
        hypothetical = True
        notes.append(f"the batch {run_batch:,} is more than the engine runs at once ({running:,}: its max_num_seqs, "
                     "max_running_requests or max_batch_size): its decode time and tokens/s"
                     + (", the GPUs for the target" if target_tokens_per_s else "")
                     + (" and the cost" if price_per_gpu_hour else "") + " are hypothetical; raise the engine's cap "
                     "(--max-num-seqs) to run it")
        warnings.warn(notes[-1], CapacityWarning, stacklevel=2)
    elif hypothetical:
        notes.append(f"the batch {run_batch:,} does not fit ({max(seqs, 0):,} sequences of {context:,} tokens do): its "
                     "decode time and tokens/s" + (", the GPUs for the target" if target_tokens_per_s else "")
                     + (" and the cost" if price_per_gpu_hour else "") + " are hypothetical"
                     + ("; drop --batch to size them at the most that fits" if batch and seqs >= 1 else ""))
        warnings.warn(notes[-1], CapacityWarning, stacklevel=2)
    # the fewest GPUs that hold the weights and a sequence with neither --pp nor --ep, where those were asked for
    plain = fewest([t for t in TP_DEGREES if t < group], 1, 1) if group > 1 and (ep > 1 or pp > 1) else None
    if seqs < 1:
        overflow = weights_overflow(spec, weight_dtype, ev.usable_bytes, tp, pp, ep, hw=hw,
                                    engine=profile.engine if profile else engine)
        binding = f"weights: {overflow}" if overflow else "memory: not even one sequence fits at this context"
    elif batch and batch > seqs:
        binding = f"KV cache: only {seqs} sequences fit at context {context}, fewer than the batch {batch}"
    elif run_batch > running:  # the engine's scheduler, not memory (the thirty-seventh audit, agree 4: "none: one GPU
        # holds it" beside fits false for -b 300 under vLLM's 256)
        binding = (f"scheduler: the engine runs at most {running:,} at once (its max_num_seqs, max_running_requests "
                   f"or max_batch_size), fewer than the batch {run_batch:,}")
    elif replicas > 1:
        binding = f"throughput: {replicas} replicas of {gpu_count(group)} for {target_tokens_per_s:,.0f} tokens/s"
    elif plain is not None and plain < min(group, min_tp * pp if ep == 1 and min_tp else group):
        # the thirty-fourth audit, capacity 1: "weights: they need 4 GPUs' memory" for an 8B model at --pp 4
        binding = (f"none: the {gpu_count(group)} asked for hold it ({gpu_count(plain)} would hold the weights and a "
                   "sequence without --pp or --ep)")
    elif ep == 1 and min_tp is not None and tp > min_tp:  # ep == 1: min_tp is None only where seqs < 1
        binding = f"none: the {gpu_count(group)} asked for hold it ({gpu_count(min_tp * pp)} would hold the weights)"
    elif group > 1:
        weights_tp = next((t for t in candidates if t <= tp
                           and not weights_overflow(spec, weight_dtype, ev.usable_bytes, t, pp, ep)), tp)
        binding = (f"weights: they need {gpu_count(group)}' memory" if ep > 1 or weights_tp >= tp else
                   f"KV cache: the weights fit on {gpu_count(weights_tp * pp)}, but one sequence of {context:,} tokens "
                   f"beside them needs {gpu_count(group)}")  # third review C7: the weights were blamed
    else:
        binding = "none: one GPU holds it"
    return {
        "model": spec.name, "gpu": hw.name, "context": context, "weight_dtype": weight_dtype, "kv_dtype": kv_dtype,
        # the fewest in any layout, --pp and --ep dropped where fewer hold it then (the review of the thirty-fourth
        # audit, 2: 4 beside a binding that said 1 holds it)
        "min_gpus_for_weights": min((x for x in (ep if ep > 1 else (min_tp * pp if min_tp else None), plain) if x),
                                    default=None),
        **({} if ep > 1 or min_tp else {"min_gpus_for_weights_note": (
            f"no tensor-parallel degree up to {gpu_count((gpus or max(candidates)) * pp)} holds one sequence of "
            f"{context:,} tokens")}),
        "tensor_parallel": tp, "pipeline_parallel": pp,
        "expert_parallel": ep,
        "gpus_per_replica": group,
        "weights_bytes_per_gpu": weight_bytes_per_gpu(spec, p.b_w, tp, pp, ep),
        "kv_budget_bytes_per_gpu": budget,
        "max_sequences_at_context": seqs,
        **_context_fields(spec, capped_context(spec, longest, notes)),
        # the batch that longest context is at: -b, else 1 (the tenth audit, E2: beside "batch", the most that fit)
        "max_context_batch": batch or 1,
        "batch": run_batch,
        # one replica's (gpus_per_replica GPUs) at `batch`; tokens_per_s kept beside the keys that name their scope,
        # as serve's output_tokens_per_s_per_gpu does (the fortieth audit, outputs 3: read as per GPU, or the
        # deployment's, it is 4x or 12x off for Llama-3.1-70B at TP 4 and a 20,000 tokens/s target)
        "decode_ms": dec["ms"], "tokens_per_s": dec["tokens_per_s"],
        "tokens_per_s_per_replica": dec["tokens_per_s"], "tokens_per_s_per_gpu": dec["tokens_per_s"] / group,
        "fits": not hypothetical, "hypothetical": hypothetical,
        "replicas_for_target": replicas, "gpus_for_target": replicas * group if target_tokens_per_s else None,
        "cost_per_million_tokens": (cost_per_million_tokens(price_per_gpu_hour, group, dec["tokens_per_s"])
                                    if price_per_gpu_hour else None),
        # what load it is priced at (the thirty-eighth audit, newcomer 4: read as the target's cost, 1.53 where the
        # target's 5,000 tokens/s on its 12 GPUs cost 1.67)
        **({"cost_per_million_tokens_note": (
            f"a replica of {gpu_count(group)} decoding at batch {run_batch} ({dec['tokens_per_s']:,.0f} tokens/s), "
            "prefill not counted: the cost at that full load; serve --request-rate and plan price the load asked "
            "for")} if price_per_gpu_hour else {}),
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
                            "kvcalc's: visible memory (the spec's visible_memory_GiB, else its datasheet memory) x "
                            "utilisation - weights - one prefill chunk's activations"),
            "memory_utilization": memory_utilization,
            "activation_reserve_bytes_per_gpu": activations,
            "prefill_chunk_tokens": vllm.get("max_num_batched_tokens", prefill_chunk) if vllm else prefill_chunk,
            "tensor_parallel": "weights / tp; KV heads max(g / tp, 1) per GPU, linear-attention state by its heads; MLA "
                               "latent replicated; two all-reduces "
                               "per layer: the engine profile's measured curve where it has one for this group size, "
                               "else ring at half the bidirectional link bandwidth with NCCL's ring latency "
                               "(formulas/parallel.py, NCCL's tuning model)",
            "allreduce_link": group_link_label(hw, tp),
            "pipeline": (f"{pp} stages of at most {math.ceil(spec.num_layers / pp)} layers (the first with the "
                         "embedding, the last with the lm_head); a decode step runs the batch as min(batch, pp) "
                         "micro-batches through the whole depth, plus pp - 1 activation sends" if pp > 1 else "none"),
            # the profile, its band and an older release's MoE factor, as serve names them (the sixth audit: this
            # row had named "vllm 0.24.0 measured kernel curves" for transferred and fitted profiles and every band)
            "throughput": f"decode at batch {run_batch} and context {context}, {time_model_text(profile, spec)}; "
                          "every sequence decoding at --context, prefill not counted (the cost and the GPUs for a "
                          "target too: kvcalc serve and plan cost a workload's prompts as well)",
        },
    }
