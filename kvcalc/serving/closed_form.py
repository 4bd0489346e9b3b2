"""A workload served with continuous batching: latency, throughput, KV pool and cost (kvcalc serve).

The steady state comes from kvcalc/formulas/workload.py; each step is one forward pass of the decodes plus a
prefill chunk (formulas/forward.py mixed_ops), timed like every other step (the engine profile's measured
kernels, or the roofline) with the tensor-parallel all-reduces. TTFT is the steps a prompt takes, each carrying the decodes beside its chunk; TPOT the mean step, whose
prefill share is the prompts that enter while others finish. Disaggregated serving (`disaggregate=(P, D)`)
splits the GPUs into a prefill pool and a decode pool: TTFT is the prompt's prefill alone plus the transfer of its
KV cache over the link between the pools, TPOT a pure decode step, and the pool that saturates first sets the rate.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

from kvcalc.checks import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_TOKENS,
    MIN_CONCURRENCY,
    MIN_REQUEST_RATE,
    check_int,
    check_number,
    check_price,
    unused_tpot_limit,
)
from kvcalc.engines.memory import (
    ENGINE_MEMORY_RULES,
    check_cuda_graph_memory,
    check_flashinfer_sampler,
    check_vllm_runner,
    check_vllm_version,
    engine_memory_rule,
    engine_request_bytes,
    kvcalc_budget,
    vllm_extra_state_blocks,
)
from kvcalc.engines.overhead import overhead_seconds, with_band
from kvcalc.formulas.parallel import attention_groups, group_step_budget
from kvcalc.errors import ArgumentError, CapacityWarning, KvcalcError
from kvcalc.estimator import (
    SpeculativeTimer,
    StepTimer,
    check_dtypes,
    check_memory_utilization,
    check_pp,
    check_tp,
    engine_label,
    load_deployment,
    time_model_text,
    unprofiled_operators,
)
from kvcalc.formulas.capacity import max_sequences
from kvcalc.formulas.engine_memory import TRTLLM_BLOCK_TOKENS
from kvcalc.formulas.memory import DEFAULT_MEMORY_UTILIZATION, DEFAULT_PREFILL_CHUNK
from kvcalc.formulas.parallel import beyond_node, check_ep, sequence_bytes_per_gpu
from kvcalc.formulas.workload import (
    cost_per_million_tokens,
    own_budget_per_replica,
    own_prefill_pieces,
    pipelined_prefill,
    prompt_end_steps,
    queue_wait,
    replica_share,
    split_rate,
    request_latency,
    decode_step_chunk,
    full_steps_cached,
    full_steps_piece,
    kv_transfer_seconds,
    steady_state,
    decodes_beside_own_prompt,
    steady_pipeline_lag,
    step_yield,
    wave_batches,
    wave_medians,
    wave_prefill_steps,
    waves,
    whole_prompt_mix,
)
from kvcalc.specs.catalog import resolve_engine
from kvcalc.units import fmt_bytes

DEFAULT_STEP_TOKENS = 8192  # tokens one step may schedule (vLLM's max_num_batched_tokens on an H100)


def own_prefill_seconds(stepper: StepTimer, decodes: float, context: float, input_len: int, own_budget: float,
                         chunk: float) -> float:
    """A request's prompt over its prefill steps as the engine schedules it [s]: full steps of the
    budget its own prompt has (own_budget), then the rest (formulas/workload.py own_prefill_pieces), each beside
    `decodes` decodes and carrying at least `chunk` prompt tokens (the other requests' mean: whole prompts per
    micro-batch or replica, none cut; none at one request in flight)."""
    _, full, n_full, rest = own_prefill_pieces(input_len, own_budget)
    t = stepper.seconds(decodes, context, max(rest, chunk), n_full * full, prompt_len=input_len)
    # the full steps, at the mean context cached before each, and under pp the chunks through the stages in turn
    full_s = stepper.seconds(decodes, context, max(full, chunk), full * (n_full - 1) / 2, prompt_len=input_len) \
        if n_full else 0.0
    return pipelined_prefill(t, full_s, n_full, stepper.pp)


def _colocated(stepper: StepTimer, concurrency: float, input_len: int, output_len: int, step_tokens: int) -> dict:
    """The steady state of C requests in flight (formulas/workload.py steady_state), timed per step. A request that
    runs is timed as a whole request: its step carries at least its own decode, and its prompt whole (up to the
    step budget), even where the mean decode batch or chunk is a fraction of one at low load (audit F5)."""
    gain = step_yield(stepper.decode_gain, output_len)
    decode, chunk, s_p = steady_state(concurrency, input_len, output_len, step_tokens, gain, stepper.decode_q)
    if output_len == 1:
        tau = stepper.seconds(0, 0, chunk, max(input_len - chunk, 0) / 2, prompt_len=input_len)
        # one prompt alone: full steps of the budget, then the rest (the third audit: two full 8,192-token steps for
        # a 9,000-token prompt, TTFT 394 ms where its prefill takes 216)
        # (in its replica's own budget under --ep, as below: the thirty-ninth audit, fuzz 3)
        own = own_budget_per_replica(step_tokens, 0.0, concurrency, attention_groups(stepper.ep, stepper.tp), 0.0, 1)
        alone = own_prefill_seconds(stepper, 0.0, 0, input_len, float(own), 0.0)
        latency = max(concurrency * input_len * tau / chunk, alone)  # Little's law; never faster than one prompt
        return {"ttft_s": latency, "tpot_s": None, "latency_s": latency, "requests_per_s": concurrency / latency,
                "decode_batch": 0.0, "prefill_tokens_per_step": chunk, "step_s": tau}
    running = max(decode, 1.0)  # a decoding request's step holds at least its own decode
    tau = stepper.seconds(running, input_len + output_len / 2, chunk, max(input_len - chunk, 0) / 2,
                          prompt_len=input_len)
    left = step_tokens - decode * stepper.decode_q
    # at one in flight the steady state's mean decode, ~1 (its own), had been timed beside its own prefill
    beside_own = decodes_beside_own_prompt(decode, concurrency)
    if chunk < left or beside_own == 0:  # prompts enter unqueued (a lone request's always: the twelfth audit, S3, at
        # --step-tokens 1 its chunk filled the budget, and its prompt had been timed beside its own decode): a request's prefill runs in s_p steps (up to `left` tokens each), and
        # the engine fills each step's budget with it and runs the rest last (the eighth audit, C4: equal pieces
        # had timed 2,100 tokens at a budget of 2,048 as two of 1,050, 11 % under the engine's 2,048 + 52 on a MoE),
        # beside the other prompts entering (the mean chunk)
        # Under --ep the pooled budget is dp = ep / tp data-parallel attention replicas' own, and a prompt runs in
        # one of them, within its share less the decodes of the other requests in that replica, about C / dp - 1
        # (the eighth audit, B3: a lone 12,000-token prompt at --ep 2 had run in one step of the pooled 16,384, TTFT
        # 280 ms where waves and the simulator give 297; its verification, W6: the other replica's decodes had been
        # charged to this one's budget, a 2,048-token prompt in two steps at 2 in flight)
        dp = attention_groups(stepper.ep, stepper.tp)
        own_budget = float(own_budget_per_replica(step_tokens, decode, concurrency, dp, beside_own, stepper.decode_q))
        ttft = own_prefill_seconds(stepper, beside_own, input_len + output_len / 2, input_len, own_budget,
                                    decode_step_chunk(chunk, concurrency, input_len, output_len, gain))
    else:  # the step budget binds: every step is full, and requests queue for their prefill
        ttft = s_p * tau
    # under pp the prompt's micro-batch first waits for the first stage, half a decode micro-batch's stage-time (the
    # fifth audit: the wait had been left out, and staggered TTFT at pp 4 fell below its own pp 1 figure); its own
    # decodes never share its prompt's step: at most the other C - 1 requests decode beside it (the verification
    # pass: one request in flight had counted its own decode as a second micro-batch)
    context = input_len + output_len / 2
    bare = (running, context, 0, input_len / 2, input_len)  # a decode step that carries no prompt
    if stepper.pp > 1:
        ttft += steady_pipeline_lag(beside_own, stepper.pp) * stepper.seconds(*bare)
    # TPOT, as a benchmark measures it (after the first token), spans a request's own D decode steps, whose chunks
    # are other requests' prompts only: at most the other C - 1 prompts over D steps, else the mean chunk (formulas/
    # workload.py decode_step_chunk). At C = 1 a request decodes alone (audit 2026-12-05 B: one 8,000-token prompt
    # had put 4,000 tokens into each of its own decode steps)
    others = decode_step_chunk(chunk, concurrency, input_len, output_len, gain)

    def mixed_step(tokens):  # steps carrying `tokens` prompt tokens on average, the prompts whole in some of them
        # (formulas/workload.py whole_prompt_mix)
        lo, hi, f, w = whole_prompt_mix(tokens, left, input_len)
        pieces = max(input_len - w, 0) / 2  # the tokens cached before a piece of w, on average
        t_lo = stepper.seconds(running, context, lo, pieces, input_len) if lo > 0 else stepper.seconds(*bare)
        return (1 - f) * t_lo + f * stepper.seconds(running, context, hi, pieces, input_len)

    if others <= 0:
        tpot_step = stepper.seconds(*bare)
    elif others < left:  # the prompts enter whole, in some of the steps
        tpot_step = mixed_step(others)
    else:  # every step full: the steady step
        tpot_step = tau
    latency = request_latency(ttft, tpot_step / gain, output_len)
    # the mean step as the engine runs it, every prompt whole in some of the steps as TPOT's own steps are timed, not
    # the mean chunk smeared over every step (the thirty-seventh audit, agree 1: a MoE model's smeared chunk touches
    # every expert every step, 21.8 ms reported beside a 6.6 ms TPOT and the simulator's 6.9 ms mean step)
    step = mixed_step(chunk) if 0 < chunk < left else tau
    return {"ttft_s": ttft, "tpot_s": tpot_step / gain, "latency_s": latency, "requests_per_s": concurrency / latency,
            "decode_batch": decode, "prefill_tokens_per_step": chunk, "step_s": step}


MAX_COUNTED_WAVE = 1_000_000  # requests whose prompt end steps are counted (prompt_end_steps: about 2 s at this size)


def _in_waves(stepper: StepTimer, concurrency: float, input_len: int, output_len: int, step_tokens: int,
              prefill_first: bool = False, chunk_unit: int = 1) -> dict:
    """Requests that start together and run to the same length (formulas/workload.py waves): a prefill step carries
    a full chunk (the last one what is left) beside the requests decoding by then, a decode step those still decoding
    (formulas/workload.py wave_batches: half the rest of the wave, and the whole wave, while the prompts take fewer
    steps than a request decodes). prefill_first (SGLang's scheduler, engines/scheduler.py sglang_prefill_first): a
    prefill batch runs whenever a prompt waits, with no decodes beside it, so the wave's prompts all go first and
    then every request decodes together. chunk_unit: a cut chunk's tokens are whole multiples of it (TensorRT-LLM's
    KV blocks, as the simulator cuts them: engines/scheduler.py trtllm_guaranteed_no_evict).

    Under --ep the wave is spread over the dp = ep / tp data-parallel attention replicas, each scheduling its own
    share within its own step budget (step_tokens / dp of the pooled budget serve passes): C mod dp of them hold
    ceil(C / dp) requests, the others floor(C / dp). Each share's wave is timed with the group's steps (the experts
    see every busy replica's tokens), and the medians are over all C requests (the fresh audit's verification: a
    pooled wave's TPOT had stepped 10.5, 20.1, 7.5 ms at 4, 5, 7 requests where the simulator's rises, and then
    every replica timed as the fullest put 5 requests at 8's TTFT)."""
    import numpy as np

    c = int(concurrency)  # serve() refuses a fractional wave (audit I1)
    dp = attention_groups(stepper.ep, stepper.tp)
    budget = group_step_budget(step_tokens, stepper.ep, stepper.tp)
    # under pp each prefill step is one micro-batch through the whole depth (waves pipelines them: pipeline_exits),
    # beside it the decodes of the one budget's requests that left the pipeline before it was formed, a share of
    # those decoding (groups: the budgets that cycle, at most pp); the decode steps after the prompts are each
    # group's turn, the wave's decodes over its micro-batches
    groups = 1.0
    prefill_timer = stepper
    if stepper.pp > 1:
        groups = float(min(stepper.pp, wave_prefill_steps(c, input_len, budget)))
        prefill_timer = stepper.one_micro_batch()
        stepper = stepper.at_most_micro_batches(wave_prefill_steps(c, input_len, budget))
    gain = step_yield(stepper.decode_gain, output_len)
    lo, extra = divmod(c, dp)
    shares = [(n, count) for n, count in ((lo + 1, extra), (lo, dp - extra)) if n > 0 and count > 0]

    def loads(n):  # one replica's prefill chunk and its decodes beside a chunk and in a decode step
        beside, decoding = wave_batches(n, input_len, output_len, budget, gain)
        return min(budget // chunk_unit * chunk_unit, n * input_len), *((0.0, float(n)) if prefill_first else
                                                                         (beside, decoding))

    # the group's step: every busy replica's chunk and decodes (StepTimer spreads them over the dp replicas), each
    # prompt's piece within its replica's budget
    chunk, beside, decoding = (sum(count * loads(n)[k] for n, count in shares) for k in range(3))
    # the pieces a full step holds (full_steps_piece: prompts laid end to end are cut at every step's end, and a step
    # carries the tail of one and the head of the next, whether or not a prompt is longer than the budget: the
    # thirtieth audit, fuzz 1: eight 6,000-token prompts in 8,192-token steps had been timed as whole 6,000-token
    # pieces, TTFT 7.6 % over the simulator's); under --ep one replica's own share in its own budget (the review of
    # the change, 5: it had kept whole pieces there, 5 % over)
    piece = full_steps_piece(shares[0][0], input_len, budget)
    cached = full_steps_cached(shares[0][0], input_len, budget)  # before a full step's pieces, on average
    prefill_s = prefill_timer.seconds(beside / groups, input_len, chunk, cached, prompt_len=piece)
    decode_s = stepper.seconds(decoding, input_len + output_len / 2, 0, 0)
    plans = []  # each share's prompt end steps, what its last prefill step holds, and its prefill steps
    for n, count in shares:
        ends = None  # the prompts' end steps, where decodes take their tokens of each step first (not SGLang's)
        if prefill_first or (output_len == 1 and chunk_unit == 1) or n > MAX_COUNTED_WAVE:  # (past it, the prompts
            # take the whole budget)
            last = n * input_len - (math.ceil(n * input_len / budget) - 1) * budget  # what the last step holds
        else:  # TensorRT-LLM's whole-block chunks step by step, a lone token a request too
            ends, last = prompt_end_steps(n, input_len, output_len, budget, gain, stepper.decode_q, unit=chunk_unit,
                                          stages=stepper.pp)
        plans.append((n, count, ends, last, int(ends[-1]) if ends is not None else math.ceil(n * input_len / budget)))
    # the group's prefill steps, in lockstep: each holds every replica's piece, a full chunk while its prompts last, its
    # last piece in its last step, then nothing (its requests decode beside the others' chunks). A last piece is no
    # larger than what that step holds and attends to the rest of its prompt, cached before it (the third audit: under
    # --ep a replica's 808-token tail had been timed as the group's 6,464, TTFT 2,865 ms where the simulator gives
    # 1,913; the fourth: a replica's lone request had decoded at the decode step's pace beside another's prompts)
    def step_s(mid: float, lasts: list) -> float:  # mid: the full chunks; lasts: [(replicas, last piece)]
        tokens = mid + sum(count * last for count, last in lasts)
        if mid:
            return prefill_s if tokens == chunk else prefill_timer.seconds(beside / groups, input_len, tokens, cached,
                                                                          prompt_len=piece)
        tail = min(piece, max(last for _, last in lasts))
        return prefill_timer.seconds(beside / groups, input_len, tokens, max(input_len - tail, 0), prompt_len=tail)

    group, done = [], 0
    for end in sorted({n_p for *_, n_p in plans}):
        mid = sum(count * loads(n)[0] for n, count, _, _, n_p in plans if n_p >= end)
        if end - 1 > done:  # the steps before `end` hold the full chunks of the prompts that last to it
            group.append((end - 1 - done, step_s(mid, [])))
        group.append((1, step_s(sum(count * loads(n)[0] for n, count, _, _, n_p in plans if n_p > end),
                                [(count, last) for _, count, _, last, n_p in plans if n_p == end])))
        done = end
    if dp == 1 and plans[0][2] is not None:  # one replica whose prompts end step by step: each prefill step
        # with the requests decoding beside it by then (prompt_end_steps' segments), none before the first prompt
        # ends (the fourteenth audit, S1: every step had carried the wave's mean decodes, and with speculation each
        # costs a verify and its drafts: TTFT 6-28 % over the hand schedule and the simulator)
        segments: list = []
        prompt_end_steps(c, input_len, output_len, budget, gain, stepper.decode_q, segments, chunk_unit, stepper.pp)
        steps, decodes, tokens = (np.array(column, dtype=float) for column in zip(*segments))
        times = np.zeros_like(steps)
        for kind in ((True, True), (True, False), (False, True)):  # the step timer takes arrays all zero or none
            at = ((decodes > 0) == kind[0]) & ((tokens > 0) == kind[1])
            if at.any():
                times[at] = prefill_timer.seconds(decodes[at] if kind[0] else 0, input_len,
                                                  tokens[at] if kind[1] else 0, cached if kind[1] else 0,
                                                  prompt_len=piece if kind[1] else None)
        # the last step holds what is left, the tail of the last prompt, which attends to the rest of it (step_s)
        tail = min(piece, tokens[-1])
        times[-1] = prefill_timer.seconds(decodes[-1], input_len, tokens[-1], max(input_len - tail, 0),
                                          prompt_len=tail)
        group = list(zip(steps, times))
    ttft, latency, wave_s = [], [], 0.0
    for n, count, ends, _, _ in plans:
        w = waves(n, input_len, output_len, budget, prefill_s, decode_s, gain, last_prefill_step_s=group[-1][1],
                  pipeline_stages=stepper.pp, prefill_first=prefill_first, prompt_ends=ends,
                  group_prefill_steps=group if len(plans) > 1 or (dp == 1 and ends is not None) else None)
        ttft.append(np.repeat(w["ttft_each"], count))
        latency.append(np.repeat(w["latency_each"], count))
        wave_s = max(wave_s, w["wave_s"])
    return {**wave_medians(np.concatenate(ttft), np.concatenate(latency), output_len), "requests_per_s": c / wave_s,
            "decode_batch": float(c), "prefill_tokens_per_step": chunk, "step_s": decode_s}


def prefill_pool_seconds(stepper: StepTimer, input_len: int, step_tokens: int) -> tuple[float, float]:
    """(one step of the prompts a prefill replica takes together, one prompt alone) [s]: max(1, budget // prompt)
    prompts a step; a prompt past the budget runs in its chunks, each attending to the ones before
    (own_prefill_seconds), as the prefill pool's engine schedules it (the fourteenth audit, S2: one unchunked pass
    whatever --step-tokens)."""
    per_batch = max(1, step_tokens // input_len)
    alone_s = own_prefill_seconds(stepper, 0.0, 0.0, input_len, step_tokens, 0.0)
    batch_s = stepper.seconds(0, 0, per_batch * input_len, 0, prompt_len=input_len) if per_batch > 1 else alone_s
    return batch_s, alone_s


def prefill_pool_rate(per_batch: int, batch_s: float, prefill_replicas: int, decode_replicas: int | None,
                      transfer_s: float) -> float:
    """Requests/s a prefill pool hands its decode pool: its replicas' steps of per_batch prompts, and no more KV caches
    than cross the links one at a time, each prefill replica's out and each decode replica's in (None: requests that
    end at the prefill pool, one-token outputs, cross no decode link), transfer_s apiece (the twenty-third audit, D1
    and D2: Llama-2-7B's 268 MB a request over a B200's 50 GB/s had been handed on at 253 a second, where the link
    carries 186 and the simulator serves 181)."""
    rate = prefill_replicas * per_batch / batch_s
    if transfer_s > 0:
        rate = min(rate, min(prefill_replicas, decode_replicas or prefill_replicas) / transfer_s)
    return rate


def first_token_source(stepper: StepTimer) -> str:
    """Where a disaggregated request's first token comes from under the stepper's engine (engines/scheduler.py
    disaggregated_first_token): 'step' (vLLM: TTFT holds one decode step; the twenty-third audit, D4, 8.2 ms short for
    Llama-3.1-8B on an H100), 'admission' (SGLang) or 'arrival' (TensorRT-LLM)."""
    from kvcalc.engines.scheduler import disaggregated_first_token

    return disaggregated_first_token(stepper.profile.engine if stepper.profile is not None else None)


def first_token_on_decode(stepper: StepTimer) -> bool:
    """Whether a disaggregated request's first token is computed in a decode-pool step (first_token_source 'step')."""
    return first_token_source(stepper) == "step"


def _disaggregated(stepper: StepTimer, concurrency: float, input_len: int, output_len: int, step_tokens: int,
                   prefill_gpus: int, decode_gpus: int) -> dict:
    spec, hw, tp = stepper.spec, stepper.hw, stepper.tp
    prefill_replicas, decode_replicas = prefill_gpus // tp, decode_gpus // tp
    per_batch = max(1, step_tokens // input_len)  # prompts one prefill step takes together
    batch_s, alone_s = prefill_pool_seconds(stepper, input_len, step_tokens)
    transfer_s = kv_transfer_seconds(spec, hw, input_len, stepper.p.b_kv, tp, prefill_gpus + decode_gpus)
    prefill_rate = prefill_pool_rate(per_batch, batch_s, prefill_replicas, decode_replicas if output_len > 1 else None,
                                     transfer_s)
    batch = concurrency / decode_replicas
    gain = step_yield(stepper.decode_gain, output_len)
    # a decoding request's step holds at least its own decode (audit F5)
    step = stepper.seconds(max(batch, 1.0), input_len + output_len / 2, 0, 0) if output_len > 1 else None
    tpot = step / gain if step is not None else None
    ttft = alone_s + transfer_s + (step if step is not None and first_token_on_decode(stepper) else 0.0)
    latency = request_latency(ttft, tpot, output_len)
    rate = min(concurrency / latency, prefill_rate)
    # where the prefill pool binds, the other requests wait in its queue: their TTFT holds the wait, C / rate - latency
    # by Little's law (the sixteenth audit, P1: 64 in flight had been answered with one prompt's TTFT, 525 ms, at a
    # rate that keeps 4.6 in flight)
    wait = max(concurrency / rate - latency, 0.0)
    ttft, latency = ttft + wait, latency + wait
    return {"ttft_s": ttft, "tpot_s": tpot, "latency_s": latency, "requests_per_s": rate, "decode_batch": batch,
            "prefill_tokens_per_step": per_batch * input_len, "step_s": step or batch_s, "prefill_step_s": alone_s,
            "kv_transfer_s": transfer_s, "prefill_pool_requests_per_s": prefill_rate}


def parse_concurrency(text: str | None) -> float | str | None:
    """--concurrency for one run: a number of requests in flight, or max (as many as the KV pool holds)."""
    if text is None or text == "max":
        return text
    try:
        if not text.isascii():  # the fifth audit: '٣' had been read as 3
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise KvcalcError(f"--concurrency: expected a number, a list or max, got {text!r}") from None


def default_step_tokens(engine: str, gpu, vllm_version: str = "latest", engine_version: str | None = None,
                        groups: int = 1) -> int:
    """Tokens one step (of one of `groups` data-parallel attention groups) may schedule when --step-tokens is not
    given: vLLM's own max_num_batched_tokens for the GPU and release (formulas/engine_memory.py vllm_default_batching,
    the default capacity --engine vllm uses) for the engines scheduled as vLLM's (auto too, as the simulator takes
    it), SGLang's chunked_prefill_size for the GPU and release, shared by its data-parallel attention ranks
    (engines/scheduler.py sglang_server_budget), else DEFAULT_STEP_TOKENS."""
    from kvcalc.engines.scheduler import VLLM_SCHEDULED, sglang_server_budget
    from kvcalc.specs.catalog import load_gpu

    if engine == "sglang":
        return sglang_server_budget(load_gpu(gpu).device_total_MiB, engine_version, groups)
    if engine not in VLLM_SCHEDULED:
        return DEFAULT_STEP_TOKENS
    from kvcalc.formulas import engine_memory as em

    hw = load_gpu(gpu)
    # V0 (before 0.8) ran a prompt whole, which the closed form does not model: it keeps V1's budget for the GPU
    release = max(check_vllm_version(vllm_version, engine), em.VLLM_V1_ENGINE)
    return em.vllm_default_batching(hw.visible_memory_bytes / em.GiB, hw.name, release)[0]


def with_request_overhead(r: dict, request_s: float) -> dict:
    """A closed-form point with the engine's per-request cost (API server, tokenisation: engines/overhead.py) in its
    TTFT and latency. Little's law holds over the whole latency, so the same requests in flight complete at
    C / (latency + request_s): requests/s shrinks by latency / (latency + request_s)."""
    latency = r["latency_s"] + request_s
    return {**r, "ttft_s": r["ttft_s"] + request_s, "latency_s": latency,
            "requests_per_s": r["requests_per_s"] * r["latency_s"] / latency if latency else r["requests_per_s"]}


def queued_beyond(run, held: float):
    """run(C) where at most `held` requests run at once and the rest wait in the queue, (C - held) / (requests/s)
    each on top of the TTFT (Little's law over the queue). The third audit: -n 128 where the pool holds 16 had been
    timed as 128 decoding at once, 2.8x the throughput and a TTFT 550x short (the simulator: 473 tokens/s)."""
    def point(c):
        if c <= held:
            return run(c)
        r = run(held)
        wait = queue_wait(c, held, r["requests_per_s"])
        return {**r, "ttft_s": r["ttft_s"] + wait, "latency_s": r["latency_s"] + wait}

    return point


def _meets(r: dict, max_ttft_ms: float | None, max_tpot_ms: float | None) -> bool:
    return ((max_ttft_ms is None or r["ttft_s"] * 1e3 <= max_ttft_ms)
            and (max_tpot_ms is None or r["tpot_s"] is None or r["tpot_s"] * 1e3 <= max_tpot_ms))


# A replica loaded past this share of the most requests/s it carries is near saturation: with random (Poisson)
# arrivals a queue's mean wait grows as load / (2 (1 - load)) service times (M/D/1: 4.5 at 90 %, 500 at 99.9 %), so
# the closed form's deterministic steady state there is far from what a benchmark sees; serve says so (the fourth
# audit: replicas sized at 99.6 % of saturation put TPOT at 418 ms where one more replica gives 30 ms).
NEAR_SATURATION = 0.9


MAX_LIMIT_REPLICAS = 10**7  # the most replicas serve's limits add


def _within_limits(run, rate_point, request_rate, concurrency: float, replicas: int, r: dict, max_ttft_ms,
                  max_tpot_ms) -> tuple[float, int, dict]:
    """(requests in flight per replica, replicas, the point) with the fewest replicas whose steady state meets the
    limits: the rate shared evenly over more replicas, or the requests in flight (concurrency x replicas) as whole
    requests, judged at the fullest replicas' load ceil(C / k). A limit that even a lone request misses is a one-line
    error."""
    total = concurrency * replicas

    def at(k):  # requests in flight per replica; whole requests where the total is whole: the fullest replicas'
        # load, ceil(C / k) (the verification pass: 333 over 243 replicas put 180 requests, the median one among
        # them, 2 to a replica, TPOT 9.6 ms, where the limit was judged at 1.37, under 8 ms)
        c = rate_point(request_rate / k) if request_rate is not None else replica_share(total, k)
        return c, run(c)

    if _meets(r, max_ttft_ms, max_tpot_ms):
        return concurrency, replicas, r
    lone = run(1.0)
    if not _meets(lone, max_ttft_ms, max_tpot_ms):
        ttft = max_ttft_ms is not None and lone["ttft_s"] * 1e3 > max_ttft_ms
        what = f"TTFT {lone['ttft_s'] * 1e3:,.1f} ms" if ttft else f"TPOT {lone['tpot_s'] * 1e3:,.2f} ms"
        # the flag that binds leads (the twelfth audit, P3: a TPOT limit alone had been named as --max-ttft-ms, the
        # web form's field with it)
        raise KvcalcError(f"{'--max-ttft-ms' if ttft else '--max-tpot-ms'}: no number of replicas meets it: one "
                          f"request alone takes {what} here (a faster GPU, a larger --tp or a smaller format might; "
                          "kvcalc plan searches)")
    lo, hi = replicas, replicas * 2  # lo misses; grow hi until it meets, then bisect the fewest replicas
    while not _meets(at(hi)[1], max_ttft_ms, max_tpot_ms) and hi < MAX_LIMIT_REPLICAS:
        lo, hi = hi, hi * 2
    if not _meets(at(hi)[1], max_ttft_ms, max_tpot_ms):  # the thirty-second audit, serve 5: 10^7 replicas that
        # still missed the limit had been bisected as if they met it (--request-rate 1e8 --max-tpot-ms 8: 8.90 ms)
        flag = "--max-ttft-ms" if max_ttft_ms is not None and not _meets(at(hi)[1], max_ttft_ms, None) else (
            "--max-tpot-ms")
        raise KvcalcError(f"{flag}: {hi:,} replicas still miss it at this load; lower --request-rate or the "
                          "concurrency, or loosen the limit")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _meets(at(mid)[1], max_ttft_ms, max_tpot_ms) else (mid, hi)
    c, r = at(hi)
    return c, hi, r


def profile_engine(profile_file: str | None, engine: str, gpu) -> str:
    """The engine a --profile file times (its scheduler and memory rule follow it), or `engine` without one."""
    if profile_file is None:
        return engine
    from kvcalc.estimator import deployment_profile
    from kvcalc.specs.catalog import load_gpu

    return deployment_profile(profile_file, engine, load_gpu(gpu)).engine


def rule_engine(engine: str, gpu) -> str:
    """The engine whose release rules (--engine-version, --vllm-version) a run takes: `engine`, or under auto the
    engine auto times the GPU with (the thirty-first audit, readme 2: `serve --simulate --engine-version 0.13` under
    auto had kept the newest vLLM's async scheduler where --engine vllm drops it)."""
    if engine != "auto":
        return engine
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    import warnings

    with warnings.catch_warnings():  # auto's own words are said where the run resolves it
        warnings.simplefilter("ignore")
        profile = resolve_engine("auto", load_gpu(gpu))
    return profile.engine if profile is not None else engine


def profile_release(profile_file: str | None, engine: str, gpu, vllm_version: str) -> str:
    """The vLLM release a run takes its memory rule and scheduler from: --vllm-version as given, unless it is the
    default and the --profile file was calibrated as another release than its tables' (calibrate --from-benchmark
    --engine-version 0.11.0 writes engine_version 0.11.0): that release (the thirty-first audit, calibrate 7: such a
    profile had been simulated with 0.30's async scheduling, its TTFT 18 % apart)."""
    if profile_file is None or engine != "vllm" or not isinstance(vllm_version, str) or vllm_version != "latest":
        return vllm_version
    from kvcalc.engines.overhead import release_tuple
    from kvcalc.estimator import deployment_profile
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    hw = load_gpu(gpu)
    profile, tables = deployment_profile(profile_file, engine, hw), resolve_engine(engine, hw)
    release = release_tuple(profile.engine_version)
    if profile.provenance != "fitted" or tables is None or release is None or (
            profile.engine_version == tables.engine_version):
        return vllm_version
    return f"{release[0]}.{release[1]}"


def run_releases(profile_file: str | None, engine: str, gpu, vllm_version: str, engine_version: str | None,
                 vllm_runner: str) -> tuple[str, str, str | None, str]:
    """(engine, rules, engine_version, vllm_version) of a serve or simulate run: the --profile file's engine, the
    engine whose release rules apply (rule_engine: under auto, the one auto times the GPU with), the release whose
    step times apply (engine_version_of_run) and the vLLM release of its memory rule and scheduler
    (vllm_version_of_run, or a calibrated profile's: profile_release). The flags as given are checked by the caller
    against `engine` (auto's memory rule is kvcalc's, not vLLM's), the derived release against `rules`."""
    from kvcalc.engines.memory import engine_version_of_run, vllm_version_of_run

    engine = profile_engine(profile_file, engine, gpu)
    rules = rule_engine(engine, gpu)
    engine_version = engine_version_of_run(vllm_version, rules, engine_version)  # the run's own step times
    vllm_version = vllm_version_of_run(vllm_version, rules, engine_version, vllm_runner)  # the run's own release
    return engine, rules, engine_version, profile_release(profile_file, rules, gpu, vllm_version)


def deployment(model, gpu, *, input_len: int, output_len: int, tp: int, pp: int, ep: int, engine: str,
               weight_dtype: str, kv_dtype: str, memory_utilization: float, step_tokens: int, speculate: str | None,
               vllm_runner: str, version, cuda_graph_bytes, flashinfer_sampler: bool,
               disaggregate: tuple[int, int] | None = None, engine_version: str | None = None,
               moe_time_scale: float | None = None, overhead=None, max_num_seqs: int | None = None,
               profile_file: str | None = None, profile=None, step_given: bool = False) -> dict:
    """One replica as serve and the simulator see it: specs, step timer, the KV pool per GPU as the engine's
    memory rule sizes it, and how many full-length requests it holds. moe_time_scale: the routed experts' time
    factor instead of the release era's (engines/kernel_eras.py); max_num_seqs: the requests the engine runs at once
    (--max-num-seqs), for vLLM's memory rule and max_running (engines/scheduler.py running_cap); overhead: an EngineOverhead instead of the release
    band's (engines/overhead.py). Both are the serving ledger's held-out refits. profile_file: an engine profile
    file (kvcalc calibrate --from-benchmark writes one) in place of the bundled profile, as estimate --profile;
    profile: an EngineProfile object in place of both (calibrate times its candidate profiles with it).
    step_given: step_tokens is a --step-tokens given, whose activations kvcalc's own memory rule reserves where it
    passes the prefill chunk capacity reserves (8,192 tokens); else that chunk, not the engine's default step."""
    from kvcalc.checks import check_speculate

    check_speculate(speculate)  # '' is not "none" (the fifteenth audit, E4)
    if engine == "gpt-fast":  # the seventh audit, C2: its batch-1 profile had been run as a batching server
        from kvcalc.engines.scheduler import GPT_FAST_IS_NO_SERVER

        raise KvcalcError(f"--engine gpt-fast: {GPT_FAST_IS_NO_SERVER}; serve times vllm, sglang, trtllm or roofline")
    spec, hw, weight_dtype, p = load_deployment(model, gpu, weight_dtype, kv_dtype)
    check_tp(tp, spec, weight_dtype, ep)
    check_pp(pp, spec)
    check_ep(ep, spec, tp)
    if ep > 1 and (pp > 1 or disaggregate is not None):
        raise KvcalcError("--ep: not with --pp or --disaggregate")
    if disaggregate is not None and pp > 1:
        raise KvcalcError("--pp: not with --disaggregate (each pool is tensor-parallel only)")
    warned: list[str] = []  # resolve_engine's warnings (warned there), for the output's list (the sixth audit)
    if profile is not None:  # calibrate's candidate (the twenty-sixth audit, R1: timed with the bundled one)
        profile = with_band(profile, engine_version)
    elif profile_file is not None:  # the twenty-fifth audit, C2: only estimate had taken a calibrated profile
        from kvcalc.estimator import file_profile

        profile = with_band(file_profile(profile_file, engine, hw, engine_version, warned), engine_version)
    else:
        profile = with_band(resolve_engine(engine, hw, warned), engine_version)  # the release band's step overhead
    if moe_time_scale is not None and profile is not None:
        check_number("moe_time_scale", moe_time_scale, 0, 100, lo_open=True)
        profile = profile.model_copy(update={"moe_time_scale": moe_time_scale,
                                             "moe_time_scale_source": "given (moe_time_scale)"})
    if overhead is not None and profile is not None:
        from kvcalc.specs.profile import EngineOverhead

        if not isinstance(overhead, EngineOverhead):  # the thirteenth audit, S7: 0 had ended in an AttributeError
            raise KvcalcError(f"overhead: expected an EngineOverhead (kvcalc.specs.profile), got {overhead!r:.40}")
        profile = profile.model_copy(update={"overhead": overhead})
    timer = (SpeculativeTimer(spec, hw, speculate, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp,
                              profile=profile, ep=ep) if speculate else None)
    stepper = StepTimer(spec, hw, p, tp, profile, weight_dtype, kv_dtype, pp, ep, timer)

    # The KV pool of one replica and how many full-length requests it holds: as the engine named by --engine sizes it
    # where kvcalc models its rule (vLLM, SGLang, TensorRT-LLM; the step budget as its max_num_batched_tokens), else
    # kvcalc's own rule, as capacity uses them (so the default, --engine auto, agrees with capacity's default).
    full_length = input_len + output_len
    memory_rule = engine if engine in ENGINE_MEMORY_RULES else None
    engine_request = None  # bytes the engine sets aside per full-length request (its blocks, its window rules)
    notes: list[str] = []
    from kvcalc.speculation import unsupported_with

    # the engine that runs it: --engine auto resolves to a profile's engine (vLLM's first), as estimate names it
    if speculate and (why := unsupported_with(engine, pp, profile, speculate)):
        notes.append(why)
    from kvcalc.speculation import no_mtp_module

    if why := no_mtp_module(spec, speculate):
        notes.append(why)
    from kvcalc.speculation import draft_past_context

    if timer is not None and (why := draft_past_context(timer.draft, full_length)):  # as estimate says it
        notes.append(why)
    from kvcalc.engines.launch import layout_refusal

    if profile is not None and (why := layout_refusal(profile.engine, tp, ep, spec, pp)):
        notes.append(why)
    if why := beyond_node(hw, tp, ep):
        notes.append(why)
    from kvcalc.engines.launch import format_warnings

    notes += format_warnings(hw, weight_dtype, profile.engine if profile is not None else None, kv_dtype, spec)
    if memory_rule is not None:
        from kvcalc.formulas.engine_memory import VLLM_V1_ENGINE

        # vLLM's V0 engine (before 0.8) profiles max(max_model_len, 2,048) tokens, its own default, whatever budget
        # the closed form schedules (the twenty-fifth audit, F2: a MoE's profiled workspace had been sized at 8,192)
        v0 = memory_rule == "vllm" and version < VLLM_V1_ENGINE
        em = engine_memory_rule(memory_rule, spec, hw, p, tp, context=full_length,
                                memory_utilization=memory_utilization,
                                max_num_batched_tokens=None if v0 else step_tokens,
                                max_num_seqs=max_num_seqs, pp=pp,
                                ep=ep, vllm_runner=vllm_runner, vllm_version=version, cuda_graph_bytes=cuda_graph_bytes,
                                flashinfer_sampler=flashinfer_sampler,
                                speculate_method=timer.sp.method if timer is not None else None,
                                speculative_tokens=timer.sp.k if timer is not None else 0,
                                engine_version=engine_version)
        notes.extend(em.get("notes", ()))
    for note in notes:
        warnings.warn(note, CapacityWarning, stacklevel=2)
    notes = [*warned, *notes]
    if memory_rule is not None:
        budget, reserve = em["available_kv_bytes"], em.get("profile_peak_bytes", 0.0)
        if em["max_concurrency"] > 0:
            engine_request = budget / em["max_concurrency"]
    else:
        # kvcalc's rule reserves a prefill chunk's activations as capacity and estimate do (--prefill-chunk's 8,192
        # tokens), or a larger step's (the twenty-fifth audit, F1: under --engine auto vLLM's 2,048-token step on a
        # small GPU had reserved a quarter of it, and a model capacity says does not fit had served 5 requests)
        # (and the twenty-seventh, F1: not the engine's default step where it is larger, 16,384 on a GPU of 160 GiB
        # or more, which capacity does not reserve: only a --step-tokens given)
        reserve_tokens = max(step_tokens, DEFAULT_PREFILL_CHUNK) if step_given else DEFAULT_PREFILL_CHUNK
        budget, reserve = kvcalc_budget(spec, hw, p, memory_utilization, reserve_tokens, tp, pp, ep)

    def draft_kv(tokens):  # the draft's cache of one request per GPU, beside the target's in the pool (speculation.py)
        return timer.draft_kv_bytes_per_sequence(tokens) if timer is not None else 0.0

    # vLLM pages an EAGLE or MTP drafter's layer in its own blocks (engines/memory.py vllm_draft_layers), where its
    # max_concurrency already counts it: added beside the blocks it would be counted twice (the fortieth audit,
    # hybrid 1)
    beside = 0.0 if memory_rule is not None and em.get("draft_layers") else 1.0

    if timer is not None:  # the draft's weights share the GPUs, and each request keeps the draft's KV cache too
        budget -= timer.draft_weight_bytes()  # (audit 2026-12-05 A: the draft's KV had been left out)
        if engine_request:
            engine_request += beside * draft_kv(full_length)
    pool = max(budget, 0.0)  # bytes per GPU for cache and state

    # vLLM's rule keeps more than one recurrent state a request: k more under speculation, one more in 'align'
    # (engines/memory.py: em["max_concurrency"] counts them); the request's own bytes carry them too, so that the
    # simulator's state blocks are the engine's, not one state's with the rest spread over every token (the
    # thirty-third audit's review, 3)
    extra_states = vllm_extra_state_blocks(em) if memory_rule is not None else 0
    one_state = sequence_bytes_per_gpu(spec, 0, p.b_kv, tp, pp) if extra_states else 0.0

    def request_bytes(tokens):  # one request's cache and state per GPU at `tokens` tokens, the draft's with it
        return sequence_bytes_per_gpu(spec, tokens, p.b_kv, tp, pp) + extra_states * one_state + draft_kv(tokens)

    # pool / (budget / N) is N to float order, and may land a hair below it: floor(1387006.9999999998) lost one
    max_concurrency = (math.floor(pool / engine_request * (1 + 1e-12)) if engine_request else
                       timer.sequences_held(full_length, pool, pp) if timer is not None else
                       max_sequences(spec, full_length, pool, p.b_kv, tp, pp))
    if max_concurrency < 1:  # the request as the pool counts it: the engine's blocks (its window groups), else bytes
        refused = (engine_request_bytes(em, spec, hw, p, tp, pp, full_length) + beside * draft_kv(full_length)
                   if memory_rule is not None else request_bytes(full_length))
        gpus = f"{max(ep, tp * pp)} {hw.name}" + (f" (--ep {ep}: each GPU holds 1/{ep} of the experts)" if ep > 1 else "")
        step = (f"; one step of {step_tokens:,} tokens (--step-tokens) reserves {fmt_bytes(reserve)} a GPU for its "
                "activations: lower it, or" if step_tokens and step_tokens > 8192 and reserve >= refused else ";")
        if budget <= 0:  # the weights (and the engine's reserves) alone fill the GPUs: said so, not as a pool of
            # 0 B that holds no request (the twelfth audit, P4)
            raise KvcalcError(f"--tp: {spec.name} on {gpus}: the weights and the engine's reserves exceed the memory a "
                              f"GPU can use by {fmt_bytes(-budget)}, leaving no KV pool{step} raise --tp"
                              + (" or --ep" if ep > 1 else "") + ", or use a smaller --weight-dtype")
        # named by --tp, the flag the advice is of and the web app's form shows it beside (the thirty-third audit, web 4)
        raise KvcalcError(f"--tp: {spec.name} on {gpus}: the KV pool ({fmt_bytes(pool)} per GPU) does not hold one "
                          f"request of {full_length:,} tokens ({fmt_bytes(refused)}){step} raise --tp"
                          + (" or --ep, or use a smaller --weight-dtype" if ep > 1 else ""))
    from kvcalc.engines.scheduler import running_cap

    state_slots = em.get("state_slots") if memory_rule is not None else None
    max_running = running_cap(engine, hw.name, hw.visible_memory_bytes / 2**30, version,
                              pool_tokens=em.get("kv_tokens", 0.0) if memory_rule is not None else 0.0,
                              context_len=spec.max_position_embeddings or full_length,
                              speculate_method=timer.sp.method if timer is not None else None, given=max_num_seqs,
                              state_slots=state_slots)
    if engine == "auto":  # vLLM's scheduler with its defaults (engines/scheduler.py VLLM_SCHEDULED), which refuses a
        # step budget below its max_num_seqs as -e vllm does (the nineteenth audit, S4: --step-tokens 100 had run)
        from kvcalc.engines.memory import check_vllm_batching

        check_vllm_batching(step_tokens, max_running, default=max_num_seqs is None)
    return {"spec": spec, "hw": hw, "p": p, "profile": profile, "timer": timer, "stepper": stepper,
            "memory_rule": memory_rule, "notes": notes, "pool": pool, "request_bytes": request_bytes,
            "max_concurrency": max_concurrency, "max_running": max_running, "engine_request": engine_request,
            "weight_dtype": weight_dtype, "state_slots": state_slots}


def serve(model, gpu="h100-sxm", *, input_len: int, output_len: int, concurrency: float | str | None = None,
          request_rate: float | None = None, tp: int = 1, engine: str = "auto", weight_dtype: str = "auto",
          kv_dtype: str = "bf16", memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
          step_tokens: int | None = None, price_per_gpu_hour: float | None = None,
          disaggregate: tuple[int, int] | None = None, pp: int = 1, ep: int = 1,
          speculate: str | None = None, vllm_runner: str = "auto", vllm_version: str = "latest",
          arrivals: str = "staggered", cuda_graph_GiB: float | None = None,
          flashinfer_sampler: bool = False, engine_version: str | None = None, max_ttft_ms: float | None = None,
          max_tpot_ms: float | None = None, moe_time_scale: float | None = None, overhead=None,
          max_num_seqs: int | None = None, profile_file: str | None = None, profile=None) -> dict:
    """Serve requests of input_len prompt and output_len output tokens on replicas of a tp-GPU group.

    max_ttft_ms / max_tpot_ms: the load is spread over as many replicas as it takes for the steady state to meet
    them (the rate shared evenly; the requests in flight as whole requests, judged at the fullest replicas'); a
    limit no number of replicas meets is an error.

    concurrency: requests in flight (a closed loop, as benchmark clients run), or "max": as many as the KV pool
    holds at full length (an offline throughput run). request_rate: requests/s arriving (an open loop); the
    replicas needed to keep up follow. Exactly one of the two. A replica is tp x pp GPUs, or, with ep > 1, ep GPUs
    whose experts are spread over all of them and whose attention runs in ep / tp data-parallel groups, each with
    its own KV pool, sequences and step budget. arrivals: "staggered" (requests enter as others finish: the
    steady state of a service) or "waves" (a fixed-length benchmark's requests start and finish together, as
    `vllm bench serve --max-concurrency C --ignore-eos` runs them; TTFT and TPOT are then medians over requests)."""
    given_vllm_version = vllm_version  # checked as given: a vLLM flag under auto is still refused
    engine, rules, engine_version, vllm_version = run_releases(profile_file, engine, gpu, vllm_version, engine_version,
                                                               vllm_runner)
    check_int("--input-len", input_len, 1, MAX_TOKENS)
    check_int("--output-len", output_len, 1, MAX_TOKENS)
    check_int("--tp", tp, 1, MAX_GPUS)
    check_int("--ep", ep, 1, MAX_GPUS)  # before the default step budget, which SGLang shares among ep / tp ranks
    step_given = step_tokens is not None
    if step_tokens is None:  # the engine's own default budget, as capacity --engine vllm takes it
        step_tokens = default_step_tokens(rules, gpu, vllm_version, engine_version, attention_groups(ep, tp))
    check_int("--step-tokens", step_tokens, 1, MAX_TOKENS)
    from kvcalc.engines.scheduler import check_trtllm_step

    check_trtllm_step(rules, step_tokens)
    check_memory_utilization(memory_utilization)
    check_dtypes(weight_dtype, kv_dtype, engine)
    check_vllm_runner(vllm_runner, engine)  # the flags as given: auto's memory rule is kvcalc's, not vLLM's
    check_vllm_version(given_vllm_version, engine)
    version = check_vllm_version(vllm_version, rules)  # the release the run's rules follow (rule_engine)
    cuda_graph_bytes = check_cuda_graph_memory(cuda_graph_GiB, engine)
    check_flashinfer_sampler(flashinfer_sampler, engine)
    if arrivals not in ("staggered", "waves"):
        simulated = arrivals in ("closed", "poisson", "burst", "trace")  # the twelfth audit, S12: each error listed
        # half the values
        raise KvcalcError(f"--arrivals: {arrivals!r} is an arrival mode of the simulation: add --simulate" if simulated
                          else f"--arrivals: expected staggered or waves (with --simulate also closed, poisson, burst "
                          f"or trace), got {arrivals!r}")
    if arrivals == "waves" and (disaggregate is not None or request_rate is not None):
        raise KvcalcError("--arrivals waves: with --concurrency, not with --request-rate or --disaggregate")
    if (concurrency is None) == (request_rate is None):
        # a missing (or surplus) keyword, as plan's (the fortieth audit, readme 4)
        raise ArgumentError("--concurrency / --request-rate: give exactly one")
    if request_rate is not None:
        check_number("--request-rate", request_rate, MIN_REQUEST_RATE, 1e9)
    check_price(price_per_gpu_hour)
    for flag, v in (("--max-ttft-ms", max_ttft_ms), ("--max-tpot-ms", max_tpot_ms)):  # before the deployment's
        # warnings, so a bad limit is the one line (the twenty-first audit, C6)
        if v is not None:
            check_number(flag, v, 0, 1e9, lo_open=True)
    unused = unused_tpot_limit(output_len, max_tpot_ms)
    if unused:
        warnings.warn(unused, CapacityWarning, stacklevel=2)
    if max_num_seqs is not None:
        check_int("--max-num-seqs", max_num_seqs, 1, MAX_BATCH)
    d = deployment(model, gpu, input_len=input_len, output_len=output_len, tp=tp, pp=pp, ep=ep, engine=engine,
                   weight_dtype=weight_dtype, kv_dtype=kv_dtype, memory_utilization=memory_utilization,
                   step_tokens=step_tokens, speculate=speculate, vllm_runner=vllm_runner, version=version,
                   cuda_graph_bytes=cuda_graph_bytes, flashinfer_sampler=flashinfer_sampler,
                   disaggregate=disaggregate, engine_version=engine_version, moe_time_scale=moe_time_scale,
                   overhead=overhead, max_num_seqs=max_num_seqs, profile_file=profile_file, profile=profile,
                   step_given=step_given)
    spec, hw, profile, timer, stepper = d["spec"], d["hw"], d["profile"], d["timer"], d["stepper"]
    memory_rule, notes, pool, request_bytes = d["memory_rule"], list(d["notes"]), d["pool"], d["request_bytes"]
    notes += [unused] if unused else []
    from kvcalc.formulas.engine_memory import VLLM_V1_ENGINE

    if engine == "vllm" and version < VLLM_V1_ENGINE:  # as simulate says it (the nineteenth audit, S5: V1's
        # mixed chunked steps had been modelled for a V0 release without a word, TPOT 12 % under its own scheduler's)
        v0 = (f"vLLM {'.'.join(map(str, version))} runs the V0 engine, whose scheduler (whole prompts in steps of "
              "their own, prefill first, unless chunked prefill is on: by default only above a 32K context) is not "
              "V1's decode-first token budget this closed form takes; the Python API's simulate(..., "
              "scheduler='vllm-v0') runs it")
        warnings.warn(v0, CapacityWarning, stacklevel=2)
        notes.append(v0)
    max_concurrency, full_length = d["max_concurrency"], input_len + output_len
    if timer is not None and step_tokens < stepper.decode_q:  # the fifteenth audit, S4: timed whole, faster than the
        # drafts the budget lets through allow
        raise KvcalcError(f"--step-tokens {step_tokens:,}: below the {stepper.decode_q} tokens a verify step schedules "
                          f"for each request (--speculate {speculate}); the engine cuts the verify to the budget, which "
                          f"only --simulate follows: raise --step-tokens to {stepper.decode_q} or more")
    if (unprofiled := unprofiled_operators(spec, hw, profile, d["weight_dtype"], kv_dtype, tp, pp, ep)):
        warnings.warn(unprofiled, CapacityWarning, stacklevel=2)  # as estimate says it (the sixth audit)
        notes.append(unprofiled)
    if spec.max_position_embeddings and full_length > spec.max_position_embeddings:  # as estimate warns (the fresh
        # audit: serve had answered for 9,002-token requests of a 4,096-token model without a word)
        too_long = (f"requests of {full_length:,} tokens exceed {spec.name}'s max_position_embeddings "
                    f"{spec.max_position_embeddings:,}: an engine refuses them (serve --simulate leaves them out)")
        warnings.warn(too_long, CapacityWarning, stacklevel=2)
        notes = [*notes, too_long]

    # SGLang's scheduler runs prompts first (the fresh audit: a wave's TPOT 170 ms where its simulation gives 602)
    batching = (partial(_in_waves, prefill_first=engine == "sglang",
                        chunk_unit=TRTLLM_BLOCK_TOKENS if engine == "trtllm" else 1)
                if arrivals == "waves" else _colocated)
    request_s = overhead_seconds(profile)[1]
    if disaggregate is not None:
        prefill_gpus, decode_gpus = disaggregate
        for flag, n in (("--disaggregate (prefill GPUs)", prefill_gpus), ("--disaggregate (decode GPUs)", decode_gpus)):
            check_int(flag, n, tp, MAX_GPUS)
            if n % tp:
                raise KvcalcError(f"{flag}: {n} is not a multiple of --tp {tp}")
        replicas_in_group, gpus = decode_gpus // tp, prefill_gpus + decode_gpus

        def run(c):
            return with_request_overhead(_disaggregated(stepper, c, input_len, output_len, step_tokens,
                                                        prefill_gpus, decode_gpus), request_s)
    elif ep > 1:  # data-parallel attention groups, each with its own pool and step budget
        replicas_in_group, gpus = ep // tp, ep

        def run(c):
            return with_request_overhead(batching(stepper, c, input_len, output_len, step_tokens * (ep // tp)),
                                         request_s)
    else:
        replicas_in_group, gpus = 1, tp * pp

        def run(c):
            return with_request_overhead(batching(stepper, c, input_len, output_len, step_tokens), request_s)

    held = max_concurrency * replicas_in_group
    # past what the pool holds at full length the rest wait in the queue: an engine that admits more (vLLM and SGLang
    # admit a request whose prompt fits) preempts them as they grow, and the simulator's throughput then falls, not
    # rises (Llama-3.1-8B on an L40S, 8,192 + 8,192 tokens: 0.029 requests/s at 12 in flight, 0.017 at 16); and past
    # the requests the engine's scheduler runs at once (its max_num_seqs, max_running_requests or max_batch_size) the
    # rest wait too (the fourteenth audit, S9: 507 decoded a step where vLLM on an L40S runs 256)
    limit = min(max_concurrency, d["max_running"]) * replicas_in_group
    capped = limit < held  # the scheduler's cap binds, not the pool
    cap_flag = {"sglang": "max_running_requests", "trtllm": "max_batch_size"}.get(engine, "max_num_seqs")
    point = queued_beyond(run, limit)
    replicas = 1
    if isinstance(concurrency, str) and concurrency == "max":  # (an array's == is elementwise: the thirty-seventh
        concurrency = limit  # audit, fuzz 5; check_number below refuses it by name)
    for flag, v in (("--max-ttft-ms", max_ttft_ms), ("--max-tpot-ms", max_tpot_ms)):
        if v is not None:
            check_number(flag, v, 0, 1e9, lo_open=True)
            if arrivals == "waves":
                raise KvcalcError(f"{flag}: with --arrivals staggered (a wave's requests are not spread over replicas)")

    def rate_point(target: float) -> float:  # requests/s rises with the requests in flight: bisect C = rate x latency
        lo, hi = 0.0, float(limit)
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if run(mid)["requests_per_s"] < target else (lo, mid)
        c = hi
        for _ in range(3):  # below the bisection's resolution, Little's law directly (latency is flat there; W2)
            if c > 1e-3:
                break
            c = target * run(c)["latency_s"]
        return c

    if request_rate is not None:
        top = run(limit)
        replicas = max(1, math.ceil(request_rate / top["requests_per_s"] * (1 + 1e-12)))
        concurrency = rate_point(request_rate / replicas)
        load = request_rate / replicas / top["requests_per_s"]
        if load > NEAR_SATURATION and max_ttft_ms is None and max_tpot_ms is None:
            near = (f"each of the {replicas:,} replicas carries {load:.1%} of the most requests/s it can "
                    f"({request_rate / replicas:,.4g} of {top['requests_per_s']:,.4g}): this steady state is the "
                    "deterministic one, and under random arrivals the mean queue wait grows as load / (2 (1 - load)) "
                    "service times; "
                    f"{replicas + 1:,} replicas, or --max-ttft-ms / --max-tpot-ms, size for headroom")
            warnings.warn(near, CapacityWarning, stacklevel=2)
            notes = [*notes, near]
    else:
        concurrency = check_number("--concurrency", concurrency, MIN_CONCURRENCY, MAX_BATCH)  # the same number
        if arrivals == "waves" and concurrency != int(concurrency):  # audit I1: a wave is whole requests
            raise KvcalcError(f"--concurrency: --arrivals waves runs whole requests together, got {concurrency:g}")
        if arrivals == "waves" and concurrency > limit:  # a wave's requests reach full length together
            held_by = (f"the {limit:,} {engine}'s scheduler runs at once ({cap_flag})" if capped else
                       f"the {limit:,} the KV pool holds at full length")
            raise KvcalcError(f"--concurrency: {concurrency:g} requests in a wave exceed {held_by}; the engine would "
                              f"queue or preempt some, which only --simulate follows (or -n {limit:,})")
    r = point(concurrency)
    asked = concurrency * replicas  # requests in flight over the deployment (with -n: as asked)
    if max_ttft_ms is not None or max_tpot_ms is not None:
        concurrency, replicas, r = _within_limits(point, rate_point, request_rate, concurrency, replicas, r,
                                                  max_ttft_ms, max_tpot_ms)
    # C requests over k replicas are judged at the fullest one's share, and served at each replica's own rate (the
    # twelfth audit, P6: -n 13 had been answered for 14 in flight, two replicas of 7, +4.4 %; its verification, V2:
    # 13 at the fuller replica's latency, -3 %): rate(7) + rate(6)
    served = (r["requests_per_s"] * replicas if request_rate is not None or concurrency * replicas <= asked
              else split_rate(asked, replicas, lambda c: point(c)["requests_per_s"] if c > 0 else 0.0))
    if request_rate is not None:  # no more than arrives, as plan takes it (the eleventh audit's S4/S8: where a
        # replica's requests/s is not monotone in its requests in flight, the bisection's point had carried 5.27/s of 5)
        served = min(served, request_rate)
    out_rate = served / replicas * output_len
    if concurrency > limit:
        queued = (f"{concurrency - limit:,.4g} of the {concurrency:,.4g} requests in flight per replica wait in the "
                  "queue: " + (f"{engine}'s scheduler runs {limit:,} at once ("
                               + ("--max-num-seqs" if max_num_seqs else f"its default {cap_flag}") + ")" if capped else
                               f"the KV pool holds {limit:,} at full length") + "; their TTFT includes the wait")
        warnings.warn(queued, CapacityWarning, stacklevel=2)
        notes = [*notes, queued]
    in_flight = min(concurrency, limit) / replicas_in_group  # requests one pool holds
    needed = in_flight * request_bytes(full_length)
    scheduler = profile.engine if profile is not None else "vllm"  # auto and the roofline run vLLM's scheduler
    if concurrency > limit and not capped and scheduler != "trtllm":  # the tenth audit, S12: "none" beside a queue
        # vLLM never forms
        preemption = (f"likely: {scheduler} allocates KV blocks as requests grow, so it admits more than the "
                      f"{limit:,} the pool holds at full length and preempts as they grow; this closed form queues "
                      "them instead (TensorRT-LLM's rule); --simulate follows the preemptions")
    elif needed <= pool:
        preemption = "none: every request in flight fits at full length"
    elif in_flight * request_bytes(input_len + output_len / 2) <= pool:
        preemption = (f"possible: {fmt_bytes(needed)} at full length exceed the {fmt_bytes(pool)} pool per GPU; "
                      "the average fits")
    else:
        preemption = f"certain: even at their average length the requests exceed the {fmt_bytes(pool)} pool per GPU"
    total_gpus = gpus * replicas
    name, label = engine_label(profile, spec)
    # where a disaggregated request's first token comes from the decode pool (vLLM computes it again; SGLang streams
    # it as its decode scheduler takes the request in), which the arrivals note says it waits for
    first_on_decode = bool(disaggregate) and first_token_source(stepper) != "arrival"
    return {
        "model": spec.name, "gpu": hw.name, "tensor_parallel": tp, "pipeline_parallel": pp, "expert_parallel": ep,
        "engine": name,
        "engine_version": label,
        "input_len": input_len, "output_len": output_len,
        "concurrency": min(concurrency * replicas, asked) if request_rate is None else concurrency * replicas,
        "request_rate": request_rate,
        "arrivals": arrivals,  # --arrivals: staggered or waves (assumptions.arrivals says what it means)
        "replicas": replicas, "gpus": total_gpus,
        "disaggregate": f"{disaggregate[0]}:{disaggregate[1]}" if disaggregate else None,
        "ttft_ms": r["ttft_s"] * 1e3,
        "tpot_ms": r["tpot_s"] * 1e3 if r["tpot_s"] is not None else None,
        "latency_ms": r["latency_s"] * 1e3,
        "requests_per_s": served,
        "output_tokens_per_s": out_rate * replicas,
        "output_tokens_per_s_per_gpu": out_rate / gpus,
        "total_tokens_per_s_per_gpu": served / replicas * full_length / gpus,
        "tokens_per_s_per_user": 1 / r["tpot_s"] if r["tpot_s"] else None,
        "kv_pool_bytes_per_gpu": pool,
        "kv_bytes_needed_per_gpu": needed,
        "max_concurrency": held,
        "max_running": limit,
        "preemption_risk": preemption,
        "cost_per_million_output_tokens": (cost_per_million_tokens(price_per_gpu_hour, gpus, out_rate)
                                           if price_per_gpu_hour else None),
        "warnings": notes,
        "assumptions": {
            "speculative": (f"{timer.sp.method}, k {timer.sp.k}: {timer.sp.tokens_per_step():.2f} tokens per verify "
                            "step" if timer else None),
            "batching": ((f"continuous, chunked prefill of at most {step_tokens:,} tokens a step" if not (
                engine == "vllm" and version < VLLM_V1_ENGINE) else f"continuous, timed as V1's chunked prefill of "
                f"at most {step_tokens:,} tokens a step (vLLM {'.'.join(map(str, version))}'s V0 engine prefills a "
                "prompt whole in a step of its own)")
                         # TensorRT-LLM's LLM API leaves enable_chunked_prefill off by default (llm_args.py), and
                         # then refuses a prompt past max_num_tokens; plan's launch turns it on (the fourteenth
                         # audit, S10, said as an assumption)
                         + ("; TensorRT-LLM's enable_chunked_prefill on, as plan's launch sets it (its default is "
                            "off, where a prompt past max_num_tokens is refused)" if engine == "trtllm" else "")
                         + ("; requests in waves that start and finish together (medians over requests)"
                            if arrivals == "waves" else "") if not disaggregate else
                         f"disaggregated: {disaggregate[0]} prefill GPUs, {disaggregate[1]} decode GPUs"),
            "arrivals": (("a steady stream at the rate, evenly spaced: no request waits for another's prefill, and "
                          "each prompt starts at a step's start, where an arrival mid-step waits for the step in "
                          f"progress, half a step ({r['step_s'] * 1e3 / 2:.3g} ms) on average, which TTFT leaves out. "
                          if not disaggregate else
                          # the prefill pool's step, and the decode pool's where the first token comes from it (the
                          # twenty-third audit, D5: the decode step had been quoted as the one a prompt waits for)
                          "a steady stream at the rate, evenly spaced, no request waiting for another's prefill "
                          f"while they arrive further apart than one prompt's prefill "
                          f"({r.get('prefill_step_s', 0.0) * 1e3:.3g} ms; closer, they batch up and wait longer, "
                          "which --simulate times); an arrival mid-step waits for the prefill step in progress, half "
                          "of one on average"
                          + (", and its first token for the decode pool's step in progress, half a step "
                             f"({r['step_s'] * 1e3 / 2:.3g} ms)" if first_on_decode else "")
                          + ", which TTFT leaves out. ")
                         + "Poisson arrivals queue as the load nears capacity, and TTFT and "
                         "TPOT grow past these: --simulate runs them" if request_rate is not None else
                         # under --concurrency the mode, which moves TTFT 5x (the fortieth audit, outputs 6: null
                         # here, the mode said only inside batching's text under waves)
                         "waves: the requests in flight start together and finish together, as `vllm bench serve "
                         "--max-concurrency C --ignore-eos` runs a fixed-length benchmark; TTFT and TPOT are medians "
                         "over the requests (--arrivals waves)" if arrivals == "waves" else
                         "staggered: a closed loop, each request entering as another finishes, evenly spaced over a "
                         "request's life (the steady state of a service): a prompt runs beside the others' decodes, "
                         "and waits only where the step budget is full; --arrivals waves starts them together, as a "
                         "fixed-length benchmark does"),
            # what the closed form takes of the engines' micro-batches (the thirty-eighth audit, Serve 1)
            **({"pipeline": (
                f"{pp} stages: a step spread over min(decodes + prompts, {pp}) micro-batches, each through the whole "
                "depth; "
                + ("a wave's requests over at most the step budgets its prompts fill, as the engines keep requests "
                   "admitted together in one micro-batch (a wave within one budget runs as one); --simulate forms "
                   "the micro-batches one by one" if arrivals == "waves" else
                   "a prompt's micro-batch, formed as it arrives, waits half a decode micro-batch's stage-time for "
                   "the first stage"))} if pp > 1 else {}),
            "decode_batch_per_replica": r["decode_batch"],
            "prefill_tokens_per_step": r["prefill_tokens_per_step"],
            "step_ms": r["step_s"] * 1e3,
            "kv_transfer_ms": r.get("kv_transfer_s", 0.0) * 1e3 if disaggregate else None,
            "memory_rule": (f"{memory_rule}'s (formulas/engine_memory.py), --memory-utilization as its fraction and "
                            f"--step-tokens as its batched-token limit" if memory_rule else
                            "kvcalc's (formulas/memory.py), one step's activations reserved"),
            "time_model": time_model_text(profile, spec),
        },
    }


def frontier_wanted(concurrency: str | None, tps: list[int], request_rate: float | None, plot: bool = False) -> bool:
    """Whether serve's flags ask for the frontier (a list of concurrencies or of TP degrees, or a plot) rather than
    one run; a combination neither runs is a one-line error naming what is wrong (the twelfth audit, P1: a list with
    --request-rate was told to give a list)."""
    many = concurrency is not None and ("," in concurrency or len(tps) > 1)
    if many or plot:
        if request_rate is not None and many:
            raise KvcalcError("--request-rate: a frontier (a list of --concurrency or --tp) runs at fixed "
                              "concurrencies; leave out --request-rate, or give one concurrency and one --tp")
        if request_rate is not None or concurrency in (None, "max"):
            raise KvcalcError("--concurrency: the frontier (and --plot) needs a list of concurrencies "
                              "(e.g. 1,8,32,128)")
        return True
    if len(tps) > 1:
        raise KvcalcError("--tp: several degrees make a frontier, which needs --concurrency (a number or a list)")
    return False


MAX_FRONTIER_POINTS = 1000  # concurrency x TP points one frontier runs (as a roofline chart draws at most 1,000)


def frontier(model, gpu="h100-sxm", *, input_len: int, output_len: int, concurrencies: list[int],
             tps: list[int], max_ttft_ms: float | None = None, max_tpot_ms: float | None = None, **kwargs) -> list[dict]:
    """serve() over concurrency x tensor parallelism: the throughput-per-GPU vs tokens/s-per-user frontier.

    Each point is one replica holding all its requests; points whose requests do not fit its KV pool are dropped;
    `best` marks the highest output tokens/s per GPU within the TTFT and TPOT limits among them. serve() with the
    limits spreads a point over replicas to meet them, which the frontier does not (the eighth audit, C6: TP2 at 128
    in flight, over the limit here, meets it on two replicas with more tokens/s per GPU than the point marked)."""
    if len(tps) * len(concurrencies) > MAX_FRONTIER_POINTS:  # each point is a serve() run: 30,000 had taken 90 s
        # and 30 MB of JSON, and held the web app's lock for every other user (the thirty-third audit, web 1)
        raise KvcalcError(f"--concurrency: {len(concurrencies):,} concurrencies x {len(tps)} --tp degrees are "
                          f"{len(tps) * len(concurrencies):,} points; a frontier runs at most {MAX_FRONTIER_POINTS:,}")
    for flag, v in (("--max-ttft-ms", max_ttft_ms), ("--max-tpot-ms", max_tpot_ms)):  # as serve checks them (the
        if v is not None:  # thirty-seventh audit, fuzz 2: the frontier had taken -1, nan and '100' unchecked)
            check_number(flag, v, 0, 1e9, lo_open=True)
    rows, dropped, passed_on = [], [], set()
    for tp in tps:
        for c in concurrencies:
            with warnings.catch_warnings(record=True) as said:  # a dropped point's warnings are not the output's
                warnings.simplefilter("always")  # (the nineteenth audit, S6: a queue warned of for a dropped row)
                try:
                    row = serve(model, gpu, input_len=input_len, output_len=output_len, concurrency=c, tp=tp,
                                **kwargs)
                except KvcalcError as e:
                    if any(why in str(e) for why in ("does not hold one request", "divide", "in a wave exceed")):
                        # past the pool (a wave larger than it holds is refused), or a degree the heads refuse
                        dropped.append(f"--tp {tp}: {str(e).split(': ', 1)[-1][:120]}" if "divide" in str(e)
                                       else f"tp {tp} at {c:,} in flight: past the KV pool")
                        continue
                    raise
            if c > row["max_concurrency"]:
                dropped.append(f"tp {tp} at {c:,} in flight: past the KV pool's {row['max_concurrency']:,.0f}")
                continue
            for w in said:  # once each, as the default filter had said them
                if (str(w.message), w.category) not in passed_on:
                    passed_on.add((str(w.message), w.category))
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            ok = ((max_ttft_ms is None or row["ttft_ms"] <= max_ttft_ms)
                  and (max_tpot_ms is None or (row["tpot_ms"] or 0) <= max_tpot_ms))
            rows.append({**row, "within_limits": ok, "best": False})
    if dropped:  # said, not left out in silence (the nineteenth audit, S6: --tp 3 of a 64-head model had vanished)
        unique = list(dict.fromkeys(dropped))
        warnings.warn(f"frontier: {len(dropped):,} point{'s' * (len(dropped) != 1)} left out: "
                      + "; ".join(unique[:4]) + ("; ..." if len(unique) > 4 else ""), CapacityWarning, stacklevel=2)
    eligible = [r for r in rows if r["within_limits"]]
    if eligible:
        max(eligible, key=lambda r: r["output_tokens_per_s_per_gpu"])["best"] = True
    return rows
