"""Whole requests from single steps: a static batch, and continuous batching in steady state.

Static batch (TensorRT-LLM's gptSessionBenchmark): B sequences of P prompt and O output tokens each,
    time = prefill(B x P) + (O - 1) * decode step at the mean cached context
    mean cached context = P + O // 2   (the first token comes from the prefill; attention grows linearly, so the
                                        mean step costs what the step at the mean context costs)
    output tokens/s per GPU = B * O / time / GPUs

Continuous batching with chunked prefill (vLLM, SGLang, TensorRT-LLM in-flight batching), C requests in flight,
I input and O output tokens each, at most T tokens per step:
    a request spends s_p = max(1, ceil(I / (T - min(B_d, C - 1)))) steps in prefill (the other requests' decodes
    share its prompt's steps, never its own) and O - 1 in decode, so
    decoding sequences   B_d = C (O - 1) / (O - 1 + s_p)
    prefill tokens/step  p   = min(B_d I / (O - 1), T - B_d)   (new requests arrive as fast as others finish)
    the step budget binds past B_d = T (O - 1) / (I + O - 1): then p = T - B_d and the other C - B_d requests
    wait, s_p = (C - B_d) I / p steps, before their first token
    step time tau = one forward pass of B_d decode tokens at the mean context I + O / 2 plus a p-token chunk
    TPOT = tau; TTFT = s_p steps that each carry the decodes and up to T - B_d of the prompt (s_p x tau once the
    budget binds); latency = TTFT + (O - 1) TPOT
    requests/s = C / latency (Little's law); output tokens/s = O x requests/s

Waves (a closed-loop benchmark with fixed lengths: `vllm bench serve --max-concurrency C --ignore-eos` with every
prompt queued at once): the C requests of a wave start together, so their prompts are prefilled back to back in
n_p = ceil(C I / T) full steps, request j's ending at step s_j = ceil((j + 1) I / T); from then it decodes one token
a step (g with speculative decoding), beside the other prompts' chunks (steps of t_p) and, once every prompt is in,
in pure decode steps of the requests still decoding (t_d; wave_batches counts both). Its first token comes with its
last chunk, so
    TTFT_j = s_j t_p;  latency_j = TTFT_j + m_j t_p + (O - 1 - g m_j) / g t_d,  m_j = min(n_p - s_j, (O - 1) / g)
and the wave takes the longest latency, after which the next wave starts. requests/s = C / that; the TTFT and TPOT
a benchmark prints are medians over requests.
"""

from __future__ import annotations

import math

from kvcalc.formulas._array import maximum


def step_yield(tokens_per_step, output_len: int):
    """Tokens one decode step yields a request over its output: E with speculative decoding (1 without) a step, in
    ceil((O - 1) / E) whole steps, (O - 1) / ceil((O - 1) / E), as the simulator advances a request E tokens a step
    (the seventh audit's C6 and the ninth's S6: the last tokens had been charged a fraction of a verify step, up to
    14 % under the simulator at one request). Never more than the O - 1 it has left, so a request with a token or
    two left still takes a whole step (the last review: with --output-len 2 and EAGLE's E = 3.3 the closed forms'
    TPOT was 2.98 ms, a third of the 10.0 ms verify step)."""
    left = max(output_len - 1, 1)
    return left / math.ceil(left / tokens_per_step - 1e-9)


def mean_decode_context(prompt_len: int, output_len: int) -> int:
    """Tokens cached, on average, while the output is decoded [tokens]."""
    return prompt_len + output_len // 2


def static_batch_seconds(prefill_s, decode_step_s, output_len: int):
    """One static batch from first prompt token to last output token [s]."""
    return prefill_s + (output_len - 1) * decode_step_s


def output_tokens_per_s_per_gpu(batch: int, output_len: int, seconds, gpus: int):
    """Output tokens per second per GPU of a static batch [tokens/s]."""
    return batch * output_len / seconds / gpus


def prompts_in(chunk, prompt_len):
    """The prompts whose pieces of prompt_len tokens (or fewer: one whole chunk) a prefill chunk holds:
    max(chunk / prompt_len, 1) where the chunk has tokens, 0 where it has none; numbers or arrays alike."""
    return (chunk > 0) * maximum(chunk / prompt_len, 1.0)


def prefill_steps(input_len: int, budget_left: float) -> int:
    """Steps one request's prompt takes when each step leaves budget_left tokens for prefill."""
    return max(1, math.ceil(input_len / max(budget_left, 1.0)))


def wave_prefill_steps(concurrency: int, input_len: int, step_budget: int) -> int:
    """The steps a wave's prompts fill, laid end to end in budgets of step_budget tokens: ceil(C I / T)."""
    return math.ceil(concurrency * input_len / step_budget)


def own_prefill_pieces(input_len: int, own_budget):
    """(steps, full, n_full, rest) of one request's prompt as the engine schedules it within the budget its own prompt
    has a step (own_budget): n_full = steps - 1 steps of `full` tokens, then the `rest` (the eighth audit, C4: equal
    pieces had timed 2,100 tokens at a budget of 2,048 as two of 1,050). Numbers or numpy arrays."""
    import numpy as np

    own = np.maximum(own_budget, 1.0)
    steps = np.maximum(1.0, np.ceil(input_len / own))
    full = np.minimum(own, input_len)
    n_full = steps - 1
    rest = np.maximum(input_len - n_full * full, 0.0)
    if np.ndim(steps) == 0:
        return float(steps), float(full), float(n_full), float(rest)
    return steps, full, n_full, rest


def pipelined_prefill(rest_s, full_s, n_full, stages: int):
    """A prompt's prefill through pp = `stages` stages [s]: n_full full chunks of full_s each (a whole depth), then
    the rest's rest_s. The engines put a prompt's next chunk in the next micro-batch, without waiting for the one
    before to leave (vLLM PR #13637, and #38726: "chunks should flow through the pipeline stages like
    micro-batches"; SGLang's scheduler-wide chunked_req; TensorRT-LLM PR #9308), so the chunks run as a flow shop:
    the first's depth, then a stage-time each, full_s + (n_full - 1) full_s / pp + rest_s / pp, and never before
    the full chunks have passed the first stage and the rest its whole depth (n_full full_s / pp + rest_s). The sum
    without stages. Numbers or numpy arrays (the thirty-ninth audit, fuzz 2: a lone 32,768-token prompt at pp 4 had
    taken pp 1's 1,064 ms where the simulator, pipelining its chunks, gives 531)."""
    import numpy as np

    if stages <= 1:
        return rest_s + n_full * full_s
    flow = np.where(n_full > 0, full_s + (n_full - 1) * full_s / stages + rest_s / stages, rest_s)
    out = np.maximum(flow, n_full * full_s / stages + rest_s)
    return float(out) if np.ndim(out) == 0 else out


def own_budget_per_replica(step_tokens, decode, concurrency, dp: int, beside_own, verify_tokens):
    """The tokens a request's own prompt has in each of its prefill steps: the step budget less the decodes of the
    other requests beside it; under expert parallelism's dp data-parallel attention replicas, its replica's share
    less the other requests' decodes in that replica, about C / dp - 1 (the eighth audit's B3 and W6)."""
    import numpy as np

    if dp <= 1:
        return step_tokens - beside_own * verify_tokens
    in_replica = np.maximum(np.minimum(decode / dp, concurrency / dp - 1), 0.0)
    return step_tokens / dp - in_replica * verify_tokens


def steady_state(concurrency: float, input_len: int, output_len: int, step_budget: int,
                 tokens_per_step: float = 1.0, verify_tokens: int = 1) -> tuple[float, float, float]:
    """(decoding sequences B_d, prefill tokens per step p, prefill steps per request s_p) of C requests in flight.

    With speculative decoding a decoding sequence puts verify_tokens (k + 1) tokens into each step and gains
    tokens_per_step (E) of them, so it decodes for D = (O - 1) / E steps instead of O - 1. s_p and B_d depend on
    each other through the budget the decodes leave: B_d = C D / (D + s_p(B_d)), whose one solution is bisected."""
    if output_len == 1:  # no decode steps: every request is a prompt
        p = min(concurrency * input_len, step_budget)
        return 0.0, p, prefill_steps(input_len, step_budget)
    steps = (output_len - 1) / tokens_per_step  # decode steps per request, D

    def own_left(b):  # the budget a request's own prompt steps have: the others' decodes, at most C - 1, take
        # theirs (the eighth audit, C4: one request's own decodes had taken budget from its own 8,192-token prompt,
        # two steps at a budget of 8,192)
        return step_budget - min(b, max(concurrency - 1, 0.0)) * verify_tokens

    def excess(b):  # B_d - C D / (D + s_p(B_d)): rises with B_d, so its zero (the fixed point) is unique
        return b - concurrency * steps / (steps + prefill_steps(input_len, own_left(b)))

    # Bisect the fixed point rather than iterate it: with k + 1 verify tokens a decode the iteration oscillates
    # between two values (audit F1). s_p is a step function, so the zero may be a jump; take its upper end.
    lo, hi = 0.0, float(concurrency)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    decode = hi
    # Prompts must enter as fast as outputs finish: B_d I / D prefill tokens a step, within the T - B_d (k + 1) the
    # decodes leave. Past B_d = T / ((k + 1) + I / D) the budget binds, whatever the fixed point above says: the
    # decode batch stops growing and the other requests wait for their prefill, (C - B_d) I / p steps on average
    # (Little's law).
    cap = step_budget / (verify_tokens + input_len / steps)
    if decode > cap:
        decode = cap
        p = step_budget - decode * verify_tokens
        return decode, p, max(1.0, (concurrency - decode) * input_len / p)
    s_p = prefill_steps(input_len, own_left(decode))
    p = max(0.0, min(decode * input_len / steps, step_budget - decode * verify_tokens))
    return decode, p, s_p



def steady_state_many(concurrency, input_len: int, output_len: int, step_budget, tokens_per_step=1.0,
                      verify_tokens=1):
    """steady_state over numpy arrays: (B_d, p, s_p) arrays for an array of concurrencies C, with the step budget T,
    E and k + 1 given per element or once. The same fixed point, bisected elementwise with the same float operations
    in the same order (100 halvings of [0, C], stopping early once no element moves), so each element equals
    steady_state's scalar answer exactly."""
    import numpy as np

    c = np.asarray(concurrency, dtype=float)
    budget = np.broadcast_to(np.asarray(step_budget, dtype=float), c.shape)
    q = np.broadcast_to(np.asarray(verify_tokens, dtype=float), c.shape)
    if output_len == 1:  # no decode steps: every request is a prompt
        left = np.maximum(budget, 1.0)
        return np.zeros_like(c), np.minimum(c * input_len, budget), np.maximum(1.0, np.ceil(input_len / left))
    steps = (output_len - 1) / np.broadcast_to(np.asarray(tokens_per_step, dtype=float), c.shape)

    def s_p(left):  # prefill_steps, elementwise
        return np.maximum(1.0, np.ceil(input_len / np.maximum(left, 1.0)))

    def own_left(b):  # steady_state's own_left, elementwise
        return budget - np.minimum(b, np.maximum(c - 1, 0.0)) * q

    lo, hi = np.zeros_like(c), c.copy()
    for _ in range(100):
        mid = (lo + hi) / 2
        below = mid - c * steps / (steps + s_p(own_left(mid))) < 0
        new_lo, new_hi = np.where(below, mid, lo), np.where(below, hi, mid)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):  # converged to adjacent floats: the rest of
            break  # the 100 halvings would leave every element where it is (the same state gives the same step)
        lo, hi = new_lo, new_hi
    decode = hi
    cap = budget / (q + input_len / steps)
    binds = decode > cap
    decode = np.where(binds, cap, decode)
    left = budget - decode * q
    with np.errstate(divide="ignore", invalid="ignore"):
        queued = np.maximum(1.0, (c - decode) * input_len / left)
    p = np.where(binds, left, np.maximum(0.0, np.minimum(decode * input_len / steps, left)))
    return decode, p, np.where(binds, queued, s_p(own_left(decode)))


def decode_step_chunk(chunk, concurrency, input_len: int, output_len: int, tokens_per_step=1.0):
    """Prompt tokens in one of a request's own decode steps, of C requests in flight whose steps carry `chunk` prompt
    tokens on average (steady_state's p) [tokens]. Over a request's lifetime of s_p + D steps the C requests' prompts
    take C I tokens; its own I run in its s_p prefill steps, so its D = (O - 1) / E decode steps carry only the other
    C - 1 prompts, at most (C - 1) I / D a step, and the mean chunk where that is more:
        min(p, (C - 1) I / D)
    At C = 1: 0 (a request decodes alone); once (C - 1) s_p >= D the mean chunk, as in a uniform steady state
    (C = O = 8, I = 100: every step one prompt, 100 = 7 x 100 / 7)."""
    import numpy as np

    steps = max(output_len - 1, 1) / np.asarray(tokens_per_step, dtype=float)
    others = np.maximum(np.asarray(concurrency, dtype=float) - 1.0, 0.0) * input_len / steps
    out = np.minimum(chunk, others)
    return float(out) if np.ndim(out) == 0 else out


def whole_prompt_mix(others, left, input_len: int):
    """How a request's own decode steps carry the `others` prompt tokens they hold on average (decode_step_chunk)
    when the budget does not bind (others < left, the tokens a step leaves the prompts): an engine schedules a
    waiting prompt whole, up to `left` tokens (vLLM V1's scheduler takes min(prompt left, budget left)), so its steps
    carry whole pieces of w = min(I, left) tokens, n or n + 1 of them, not a thin slice of every prompt in every step:
        n = floor(others / w),  lo = n w,  hi = min((n + 1) w, left),  f = (others - lo) / (hi - lo)
    and the mean own step is (1 - f) step(lo) + f step(hi), which keeps the tokens (the mean is `others`) and each
    step's true shape. The slice had cost a MoE model every expert in every step (a 64-token slice of prompts costs
    Qwen3-30B-A3B 25 ms on an H100, the whole 4,096-token prompt 71 ms once: the fresh audit's TPOT 2-3.5x too high at
    low load). Elementwise on arrays: (lo, hi, f, w)."""
    import numpy as np

    others, left = np.asarray(others, dtype=float), np.asarray(left, dtype=float)
    w = np.maximum(np.minimum(float(input_len), left), 1.0)
    n = np.floor(others / w)
    lo = n * w
    hi = np.maximum(np.minimum(lo + w, left), lo + 1e-9)  # a full last step stays a step's worth of pieces
    f = np.clip((others - lo) / (hi - lo), 0.0, 1.0)
    if np.ndim(f) == 0:
        return float(lo), float(hi), float(f), float(w)
    return lo, hi, f, w


def cost_per_million_tokens(price_per_gpu_hour: float, gpus: int, tokens_per_s):
    """What a million tokens cost at a GPU-hour price, on `gpus` GPUs producing tokens_per_s [price units]."""
    return price_per_gpu_hour * gpus / (tokens_per_s * 3600) * 1e6


def transfer_seconds(nbytes, link_bandwidth_GBps: float | None):
    """Moving nbytes one way over a link whose datasheet gives the bidirectional total [s]; 0 without a link."""
    return nbytes / (link_bandwidth_GBps * 1e9 / 2) if link_bandwidth_GBps else 0.0


def kv_transfer_seconds(model, hw, tokens, b_kv: float, tp: int, gpus: int | None = None):
    """A disaggregated request's KV cache moving from the prefill pool to the decode pool [s]: each GPU of the
    prefill replica sends the share it holds (formulas/parallel.py sequence_bytes_per_gpu) over its own link, the spec's
    scale-out network, else its interconnect (the fresh audit: the whole cache had crossed one link at every TP
    degree): in a mesh of peer links (interconnect_peer_links) the one link to the GPU it sends to. gpus: the pools'
    GPUs together; more than the interconnect joins (scale_up_gpus) cross boxes, which needs the scale-out figure, as
    tensor parallelism that wide does (the twenty-third audit, D6: 8:8 MI300Xs at TP 8 had crossed two boards over
    Infinity Fabric, and each GPU's cache had taken all seven of its links). tokens: a number or an array of prompt
    lengths."""
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.parallel import scale_out_missing, sequence_bytes_per_gpu

    link = hw.scale_out_bandwidth_GBps
    if not link:
        if gpus is not None and hw.scale_up_gpus is not None and gpus > hw.scale_up_gpus:
            raise scale_out_missing(hw, "--disaggregate", f"pools of {gpus} move their KV caches between boxes")
        link = hw.interconnect_bandwidth_GBps
        if link and hw.interconnect_peer_links:  # one peer link of the mesh to the decode GPU it sends to
            link = link / hw.interconnect_peer_links
    if not link:  # audit W1: no link is not a free transfer
        raise KvcalcError(f"--disaggregate: moving the KV cache between the pools needs the spec's "
                          f"interconnect_bandwidth_GBps or scale_out_bandwidth_GBps; {hw.name} gives neither")
    return transfer_seconds(sequence_bytes_per_gpu(model, tokens, b_kv, tp), link)


def replica_share(concurrency: float, replicas: int) -> float:
    """Requests in flight the fullest of `replicas` replicas carries of C: whole requests, ceil(C / k), where C is a
    whole number of requests (13 over 2: 7 and 6); C / k where C is fractional, a time average (serve -n 2.5)."""
    if concurrency >= 1 and concurrency == int(concurrency):
        return float(math.ceil(concurrency / replicas - 1e-9))
    return concurrency / replicas


def split_rate(concurrency: float, replicas: int, rate_at) -> float:
    """Requests/s of C requests in flight over k replicas, each at its own rate (Little's law per replica): C mod k
    replicas at ceil(C / k), the others at one fewer, where C is whole; k replicas at C / k where it is fractional.
    rate_at(c): one replica's requests/s at c in flight (0 at none). -n 13 over 2 replicas: rate(7) + rate(6)."""
    share = replica_share(concurrency, replicas)
    if share != int(share) or concurrency != int(concurrency):
        return replicas * rate_at(share)
    fuller = int(concurrency) - replicas * (int(share) - 1)  # the replicas at the share; the rest hold one fewer
    return fuller * rate_at(share) + (replicas - fuller) * (rate_at(share - 1) if share > 1 else 0.0)


def in_flight_at_rate(rate: float, latency_at_zero: float, latency_slope: float) -> float | None:
    """Requests in flight C that a replica carrying `rate` requests/s keeps, by Little's law C = rate x latency(C)
    with the latency affine in C, latency(C) = a + b C: C = rate a / (1 - rate b); None where rate b >= 1 (no
    steady state: each request added lengthens the others past the rate)."""
    if rate * latency_slope >= 1:
        return None
    return rate * latency_at_zero / (1 - rate * latency_slope)


def queue_wait(in_flight, held, requests_per_s):
    """Time a request waits for a place when `in_flight` are in the system and `held` run at once, served at
    requests_per_s [s]: (C - held) / X past the pool (Little's law over the queue), 0 within it."""
    return max(in_flight - held, 0) / requests_per_s


def chunk_weight_rereads(tokens: int, chunk: int, weight_bytes: float, bandwidth_Bps: float) -> float:
    """Time the weights take to be read again by every chunk after the first when `tokens` prompt tokens are
    prefilled in chunks of `chunk` [s], at the speed of light: (ceil(tokens / chunk) - 1) x weights / bandwidth."""
    return (-(-tokens // chunk) - 1) * weight_bytes / bandwidth_Bps


def request_latency(ttft_s, tpot_s, output_len: int):
    """End-to-end latency of a request: its first token, then O - 1 more at the time per output token [s]."""
    return ttft_s + (output_len - 1) * (tpot_s or 0.0)


def wave_batches(concurrency: int, input_len: int, output_len: int, step_budget: int,
                 gain: float = 1.0) -> tuple[float, float]:
    """(requests decoding beside a prefill step, requests in a pure decode step), each on average over a wave's
    steps of that kind (module docstring: waves) [requests]:
        beside = sum_j m_j / n_p,   decode = sum_j t_j / max_j t_j,   t_j = (O - 1) / g - m_j
    A request decodes (O - 1) / g steps in all, m_j of them beside the later prompts' chunks, so the wave's decode
    work is C (O - 1) / g request-steps however its prompts enter. Once the prompts take more steps than a request
    decodes, the early requests finish during the prefill: fewer than the (C - 1) / 2 of a short prefill decode
    beside a chunk, and fewer than C are left for the pure decode steps."""
    import numpy as np

    n_p = wave_prefill_steps(concurrency, input_len, step_budget)
    s_j = np.ceil(np.arange(1, concurrency + 1) * input_len / step_budget)
    m_j = np.minimum(n_p - s_j, (output_len - 1) / gain)
    t_j = (output_len - 1) / gain - m_j
    decode = float(t_j.sum() / t_j.max()) if t_j.max() > 0 else float(concurrency)
    return float(m_j.sum() / n_p), decode


def full_steps_piece(concurrency: int, input_len: int, step_budget: int) -> float:
    """The prompt piece a wave's full prefill steps carry, as the mean of their pieces' squares per token, sum(p^2) / T
    over those steps (each piece attends to itself, p^2 / 2 pairs): the C prompts laid end to end and cut every T
    tokens, a step holds the tail of one prompt and the head of the next. 9,000-token prompts in steps of 8,192 carry
    808 + 7,384, not one piece of 8,192 (the twelfth audit, S7: 40 % more attention, TTFT 6 % over a step-by-step
    schedule); input_len where a step holds no cut. Vectorised over the cuts."""
    import numpy as np

    full = (wave_prefill_steps(concurrency, input_len, step_budget) - 1) * step_budget  # tokens in the full steps
    if full <= 0:
        return float(min(input_len, step_budget))
    cuts = np.union1d(np.arange(0, full + 1, input_len, dtype=float), np.arange(0, full + 1, step_budget, dtype=float))
    pieces = np.diff(np.append(cuts[cuts < full], full))
    return float((pieces ** 2).sum() / full)


def full_steps_cached(concurrency: int, input_len: int, step_budget: int) -> float:
    """Tokens of its own prompt cached before a prompt token's piece, on average over the tokens of a wave's full
    prefill steps (all but its last), the wave's C prompts laid end to end and cut every T tokens: a piece of a
    prompt that starts s tokens into it has s cached. A lone prompt of 16,383 tokens at T = 8,192 runs 8,192 tokens
    with none cached, then 8,191 after them (the eighth audit, B2: the full step had been timed at (I - T) / 2 =
    4,095 cached, 27 ms more than at 16,384 tokens, whose two pieces average that). Vectorised over the prompts."""
    import numpy as np

    full = (wave_prefill_steps(concurrency, input_len, step_budget) - 1) * step_budget  # tokens in the full steps
    if full <= 0:
        return 0.0
    a = np.arange(min(concurrency, math.ceil(full / input_len)), dtype=float) * input_len  # each prompt's start
    b = np.minimum(a + input_len, full)  # its end within the full steps
    first_cut = (np.floor(a / step_budget) + 1) * step_budget  # the piece from `a` to here has nothing cached
    k = np.where(b > first_cut, np.ceil((b - first_cut) / step_budget), 0.0)  # pieces after the first
    whole = np.maximum(k - 1, 0.0)  # of them, full T-token pieces starting at first_cut + i T
    total = step_budget * (whole * (first_cut - a) + step_budget * whole * (whole - 1) / 2)
    last_start = first_cut + whole * step_budget
    total += np.where(k > 0, (b - last_start) * (last_start - a), 0.0)
    return float(total.sum() / full)


def waves(concurrency: int, input_len: int, output_len: int, step_budget: int, prefill_step_s: float,
          decode_step_s: float, gain: float = 1.0, last_prefill_step_s: float | None = None,
          pipeline_stages: int = 1, prefill_first: bool = False, prompt_ends=None,
          group_prefill_steps=None) -> dict:
    """Requests that run in waves of `concurrency` (module docstring): the median TTFT and TPOT [s], the wave's
    duration [s], and the prefill steps a wave takes. last_prefill_step_s: the last prefill step, which holds only
    what is left of the wave's prompts, C I - (n_p - 1) T tokens [default: a full step, prefill_step_s].

    pipeline_stages (pp): each prefill step is one micro-batch (the engines keep the requests admitted together in
    one; the simulator forms them so: serving/simulate.py simulate_schedule), its time the whole depth, and the
    steps run through the stages as a flow shop, the k-th formed at once while fewer than pp are in flight, else as
    the (k - pp)-th leaves (pipeline_exits): the k-th budget's first tokens come out at D + (k - 1) D / pp of equal
    steps, not k D. A step decoding beside the later chunks is a whole turn of the request's micro-batch, a step's
    depth; under prefill_first a request decodes after the last budget its slot takes (SGLang's slots, in turn: the
    thirty-ninth audit, Serve 1: each step had been spread over micro-batches, TTFT 18-30 % short of the engines'
    schedule where a wave fills several budgets).

    prefill_first (SGLang): no request decodes beside a prompt's chunk; the wave's prompts all run first, then every
    request decodes, so request j waits from its first token to the end of the n_p prefill steps:
    latency_j = at(n_p) + (O - 1) / g t_d.

    prompt_ends: the step each prompt ends in, where the decodes running beside a prefill step take their tokens of
    its budget first (prompt_end_steps) [default: ceil((j + 1) I / T), the prompts with the whole budget].

    group_prefill_steps: [(steps, seconds each), ...], the prefill steps in order of the group this wave's replica
    steps in lockstep with (expert parallelism's data-parallel attention replicas, whose experts run every replica's
    tokens together), where other replicas' prompts make them longer or more than this wave's own: its requests
    decode beside those chunks, each step as long as the group's, to the group's last prefill step; it replaces
    prefill_step_s and last_prefill_step_s (the fourth audit: a lone request beside a replica prefilling two had been
    timed decoding at the decode step's pace, TPOT 22 ms where the simulator gives 32)."""
    import numpy as np

    if prompt_ends is not None:
        s_j = np.asarray(prompt_ends, dtype=float)
        n_p = int(s_j[-1])
    else:
        n_p = wave_prefill_steps(concurrency, input_len, step_budget)
        s_j = np.ceil(np.arange(1, concurrency + 1) * input_len / step_budget)  # the step each prompt's prefill ends
    if group_prefill_steps is not None:  # the group's steps, in segments of equal steps
        group_prefill_steps = [(n, t) for n, t in group_prefill_steps if n > 0]
        counts = np.array([n for n, _ in group_prefill_steps], dtype=float)
        xs = np.concatenate([[0.0], np.cumsum(counts)])  # steps run, and when [s]
        ys = np.concatenate([[0.0], np.cumsum(counts * np.array([t for _, t in group_prefill_steps], dtype=float))])
        n_p = max(n_p, int(xs[-1]))  # the steps that carry a prompt's chunk, this wave's or the group's
    beside = np.minimum(n_p - s_j, (output_len - 1) / gain)  # steps decoding beside the other prompts' chunks
    if prefill_first:
        beside = np.zeros_like(s_j)

    def at(k):  # when the wave's first k prefill steps (k may be fractional) have run [s]; no array of n_p steps
        if group_prefill_steps is not None:
            return np.interp(k, xs, ys)
        if last_prefill_step_s is None:
            return k * prefill_step_s
        return np.where(k <= n_p - 1, k * prefill_step_s,
                        (n_p - 1) * prefill_step_s + (k - (n_p - 1)) * last_prefill_step_s)

    if pipeline_stages > 1:
        pp = pipeline_stages
        out = pipeline_exits(at, n_p, pp)  # when the k-th step's micro-batch leaves the last stage
        ttft = out(s_j)
        # its requests decode in the micro-batch formed as theirs leaves, beside the chunk pp steps on, while there is
        # one (SGLang's slot runs its prompts first: after the last budget it takes, every pp-th step to n_p)
        turns = np.zeros_like(s_j) if prefill_first else np.minimum((n_p - s_j) // pp, (output_len - 1) / gain)
        done = out(s_j + (n_p - s_j) // pp * pp) if prefill_first else out(s_j + turns * pp)
        # then decodes alone, the first leaving behind the prompts' micro-batches still in the stages
        left = (output_len - 1) / gain - turns
        latency = np.where(left > 0, np.maximum(done + decode_step_s, out(n_p) + decode_step_s / pp)
                           + np.maximum(left - 1, 0) * decode_step_s, done)
        return {**wave_medians(ttft, latency, output_len), "wave_s": float(latency.max()), "prefill_steps": n_p,
                "ttft_each": ttft, "latency_each": latency}
    ttft = at(s_j)
    done = at(s_j + beside)  # after the steps decoding beside the chunks
    if prefill_first:
        done = at(np.full_like(s_j, n_p))  # after every prompt of the wave
    latency = done + (output_len - 1 - gain * beside) / gain * decode_step_s
    return {**wave_medians(ttft, latency, output_len), "wave_s": float(latency.max()), "prefill_steps": n_p,
            "ttft_each": ttft, "latency_each": latency}


def wave_medians(ttft, latency, output_len: int) -> dict:
    """What a benchmark prints of a wave's requests, from each one's TTFT and latency [s]: the median TTFT, the
    median TPOT, (latency - TTFT) / (O - 1) (None at O = 1), and the latency of a request at those medians."""
    import numpy as np

    tpot = float(np.median((latency - ttft) / (output_len - 1))) if output_len > 1 else None
    median_ttft = float(np.median(ttft))
    return {"ttft_s": median_ttft, "tpot_s": tpot, "latency_s": request_latency(median_ttft, tpot, output_len)}


def prompt_end_steps(concurrency: int, input_len: int, output_len: int, step_budget: int, gain: float = 1.0,
                     verify_tokens: int = 1, segments: list | None = None, unit: int = 1, stages: int = 1):
    """(the step each of a wave's C prompts ends in [steps], the prompt tokens its last prefill step holds) when the
    requests decoding take their verify_tokens of each step's budget T first, as vLLM V1 schedules the running
    requests before the waiting ones: step s leaves T - q d_s tokens to the prompts, d_s the requests whose prompts
    ended before s and that still decode (D = max((O - 1) / g, 1) steps each: a request with a token left decodes
    for a whole step, however many a speculative step yields), and prompt j ends at the first step whose cumulated
    prompt tokens reach (j + 1) I (the fresh audit: 4 prompts of 8,192 + 2 tokens had a median TTFT of 464 ms, the
    prompts given the whole budget, where the simulator, which schedules every token, gives 644).

    Counted from event to event (a prompt ending, a request's decodes ending), between which the budget is the
    same, so a wave of C requests takes at most 2 C turns however many steps its prompts span (a step-by-step count
    had run for minutes on 1,000,000 prompts of 400,000 tokens in steps of 1,024).

    segments: where a list is given, the prefill steps are appended to it as (steps, requests decoding beside each,
    prompt tokens each), in order; the last step, which holds only what is left, as a segment of its own. unit: the
    prompt tokens a step takes are whole multiples of it (TensorRT-LLM rounds a cut chunk down to whole KV blocks,
    microBatchScheduler.cpp; the thirtieth audit, S1).

    stages (pp): each step is a micro-batch, and a request whose prompt ends in step e decodes beside every pp-th step
    from e + pp (its micro-batch is formed as the one it ended in leaves), so a step holds on average a pp-th of
    the requests in that window (waves' pipeline_exits)."""
    import math

    import numpy as np
    from collections import deque

    if unit > 1:
        return _whole_unit_steps(concurrency, input_len, output_len, step_budget, gain, verify_tokens, segments, unit,
                                 stages)
    decode_steps = max((output_len - 1) / gain, 1.0)
    ends = np.empty(concurrency)
    n = 0
    pending: deque = deque()  # end steps of the prompts whose requests do not decode yet (under pp)
    running: deque = deque()  # end steps of the prompts whose requests still decode
    done, step, budget = 0.0, 0, float(step_budget)
    while n < concurrency:
        while pending and step + 1 >= pending[0] + stages:  # its first decode is in the next step
            running.append(pending.popleft())
        while running and step + 1 - running[0] > stages * decode_steps:  # its decodes are over before the next step
            running.popleft()
        decoding = len(running) / stages
        budget = max(step_budget - verify_tokens * decoding, 0)
        to_end = math.ceil(((n + 1) * input_len - done) / budget) if budget > 0 else math.inf
        to_change = min(math.floor(running[0] + stages * decode_steps - step) if running else math.inf,
                        pending[0] + stages - 1 - step if pending else math.inf)  # the same budget till then
        k = max(1, min(to_end, to_change))
        if segments is not None:
            segments.append((k, decoding, budget))
        step += k
        done += k * budget
        while n < concurrency and done >= (n + 1) * input_len:
            ends[n] = step
            n += 1
            pending.append(step)
    last = concurrency * input_len - (done - budget)
    if segments is not None:  # the last step holds what is left
        k, decoding, full = segments.pop()
        segments += [(k - 1, decoding, full)] * (k > 1) + [(1, decoding, last)]
    return ends, last


def _whole_unit_steps(concurrency: int, input_len: int, output_len: int, step_budget: int, gain: float,
                      verify_tokens: int, segments: list | None, unit: int, stages: int = 1):
    """prompt_end_steps step by step for a scheduler that takes a prompt whole where it fits the step and cuts the
    one it does not fit to whole units (TensorRT-LLM's setCtxRequestsChunkSize<kFIRST_COME_FIRST_SERVED>: the
    remaining context, or what is left of max_num_tokens rounded down to tokens_per_block), as the simulator
    schedules it: the cut depends on where each step ends in its prompt, so steps cannot be counted event to event.
    A wave holds at most MAX_COUNTED_WAVE prompts (the caller's bound), so the steps are C I / T at most."""
    from collections import deque

    import numpy as np

    from kvcalc.errors import KvcalcError

    decode_steps = max((output_len - 1) / gain, 1.0) if output_len > 1 else 0.0
    ends = np.empty(concurrency)
    n, progress, step, last = 0, 0, 0, 0
    pending: deque = deque()  # (under pp, as prompt_end_steps)
    running: deque = deque()
    while n < concurrency:
        while pending and step + 1 >= pending[0] + stages:
            running.append(pending.popleft())
        while running and step + 1 - running[0] > stages * decode_steps:
            running.popleft()
        decoding = len(running) / stages if stages > 1 else len(running)
        cap, taken, ended = max(math.floor(step_budget - verify_tokens * decoding), 0), 0, 0
        while n + ended < concurrency:
            remaining = input_len - progress
            if remaining <= cap:  # its whole remaining context
                cap, taken, progress, ended = cap - remaining, taken + remaining, 0, ended + 1
                continue
            piece = cap // unit * unit  # cut: whole units, or none this step
            taken, progress = taken + piece, progress + piece
            break
        if taken == 0 and not running and not pending:
            raise KvcalcError(f"--step-tokens: {step_budget:,} tokens a step is under one {unit}-token block, so a "
                              "prompt it cuts never starts; give at least one block")
        step += 1
        for _ in range(ended):
            ends[n] = step
            pending.append(step)
            n += 1
        if segments is not None:
            if segments and segments[-1][1:] == (decoding, taken):
                segments[-1] = (segments[-1][0] + 1, decoding, taken)
            else:
                segments.append((1, decoding, taken))
        if taken:
            last = taken
    return ends, last


def through_stages(start: float, stage_free: list, depth: float) -> float:
    """A micro-batch of `depth` [s] (its whole depth) entering the pipeline at `start`, through the stages as a flow
    shop: each stage takes a pp-th of its depth (pp = len(stage_free)) once that stage is free, stage_free[i] the
    time stage i last came free (updated); when it leaves the last stage. The simulator's micro-batches
    (serving/simulate.py) and the closed form's wave steps (pipeline_exits) alike."""
    stages = len(stage_free)
    for i in range(stages):
        start = max(start, stage_free[i]) + depth / stages
        stage_free[i] = start
    return start


PIPELINE_EXITS_STEPS = 20_000  # prefill steps pipeline_exits runs one by one; past them, the steady flow's form


def pipeline_exits(at, steps: int, stages: int):
    """Under pp = `stages`, for `steps` prefill steps whose whole-depth times are at(k) - at(k - 1): a function of k
    giving when the k-th step's micro-batch leaves the last stage. As the engines run them (serving/simulate.py
    simulate_schedule): the k-th is formed at once while fewer than pp are in flight, else as the (k - pp)-th leaves,
    and each stage takes a pp-th of its depth once the micro-batch before has left it (a flow shop), so equal steps
    of depth D come out at D + (k - 1) D / pp. Past PIPELINE_EXITS_STEPS steps, at(1) + (at(k) - at(1)) / pp."""
    import numpy as np

    if steps > PIPELINE_EXITS_STEPS:
        first = float(at(1))
        return lambda k: np.where(k >= 1, first + (at(k) - first) / stages, at(k))
    depths = np.diff(at(np.arange(steps + 1, dtype=float))).tolist()
    stage_free = [0.0] * stages
    exits: list[float] = []
    for k, depth in enumerate(depths):
        exits.append(through_stages(exits[k - stages] if k >= stages else 0.0, stage_free, depth))
    table = np.array([0.0, *exits])
    return lambda k: np.interp(k, np.arange(steps + 1, dtype=float), table)


def decodes_beside_own_prompt(decodes, concurrency):
    """The decodes that share a request's own prefill steps in the steady state of `concurrency` (C) in flight: the
    mean decode batch, but at most the other C - 1 requests (its own decodes come after its prompt) and never below
    0; elementwise over arrays (plan's ladders)."""
    import numpy as np

    beside = np.clip(np.minimum(decodes, np.asarray(concurrency) - 1), 0.0, None)
    return float(beside) if np.ndim(beside) == 0 else beside


def steady_pipeline_lag(decodes, stages: int):
    """Under pp = `stages`, in the steady state: how long a prompt's micro-batch waits to enter the first stage, in
    decode micro-batches' depths. The engines form it when the prompt arrives (serving/simulate.py simulate_schedule),
    and the micro-batch in the first stage then, other requests' decodes, leaves it half its stage-time later on
    average: 1 / (2 pp) of a decode micro-batch's depth, where decodes run beside the prompt (a mean: 0.4 decodes on
    average, 40 % of the time). The thirty-eighth audit, Serve 1: it had been (m - 1) / (2 pp) of the prompt's own
    step, as if the step's m micro-batches were formed together, 33 % over the engines' schedule for Qwen3-32B at
    pp 4. 0 without pipeline stages; elementwise over arrays (plan's ladders)."""
    import numpy as np

    if stages <= 1:
        return 0.0
    lag = np.minimum(np.asarray(decodes, dtype=float), 1.0) / (2 * stages)
    return float(lag) if np.ndim(lag) == 0 else lag


def serving_tpot(decode_step, prefill_one, concurrency: int, output_len: int):
    """Mean time per output token of one of `concurrency` (C) requests a serving benchmark keeps in flight [the unit
    of the steps]. In steady state each of the other C - 1 requests finishes and is replaced once during this one's
    O - 1 decode steps, and the replacement's prompt is prefilled (as a chunk beside the decodes, or in a step of its
    own) in that window, so
        TPOT = decode step at batch C + (C - 1) x prefill of one prompt / (O - 1)
    the first-order form of steady_state's step time (its p-token chunk costs p / I prompts' prefill). At C = 1 it is
    the decode step. A median inter-token latency, by contrast, is the plain decode step (most gaps carry no chunk)."""
    return decode_step + (concurrency - 1) * prefill_one / max(output_len - 1, 1)
