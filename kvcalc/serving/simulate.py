"""A request-level discrete-event simulation of one deployment's scheduler (kvcalc serve --simulate).

Requests arrive (a closed loop at a concurrency as `vllm bench serve --max-concurrency` runs them, Poisson at a
rate, bursts, or a trace), wait, are admitted by the engine's scheduler policy (kvcalc/engines/scheduler.py), have
their prompts prefilled in chunks within the step's token budget, decode one token a step (E with speculation),
may be preempted when the KV pool runs out, and finish. Every step is timed by the same StepTimer estimate and
serve use, read from a grid precomputed over (decode batch, mean decode context, prefill chunk) and interpolated
multilinearly (exact for a step time linear in each, as the toy timers in the tests are).

Between events (an arrival that can be admitted, a prefill chunk, a completion, the pool filling) every step has
the same requests decoding, so the simulator advances all those steps at once: the step times over the contexts to
come are one vectorised interpolation, and their cumulative sum finds the step in which the next arrival lands.

State is numpy arrays indexed by request (arrival time, lengths, cached tokens, prefill left, generated tokens,
first-token and finish times), so 100,000 requests take a few MB.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from kvcalc.engines.scheduler import (
    SGLANG_CLIP_MAX_NEW_TOKENS,
    SchedulerPolicy,
    disaggregated_first_token,
    sglang_ratio_after_retraction,
    state_slot_cap,
)
from kvcalc.errors import KvcalcError
from kvcalc.formulas.engine_memory import VLLM_V1_ENGINE
from kvcalc.formulas.parallel import attention_groups, group_step_budget
from kvcalc.formulas.workload import through_stages
from kvcalc.specs.files import plain_number_text

# ----------------------------------------------------------------------------------------------------------------
# The step-time grid
# ----------------------------------------------------------------------------------------------------------------

def _axis(top: float, dense: tuple[float, ...]) -> np.ndarray:
    """0, the dense small values, then doubling up to `top` (inclusive)."""
    pts = [0.0, *[d for d in dense if d < top]]
    x = max(pts[-1] * 2, 1.0)
    while x < top:
        pts.append(x)
        x *= 2
    pts.append(float(top))
    return np.unique(np.array(pts, dtype=float))


def _sampler(stepper, s):
    """s(b, c, k, kc, prompt_len) over equal-length 1-D arrays of grid points (prompt_len: an array, or None for the
    grid's own). StepTimer takes numpy arrays (formulas/_array.py) as long as the decodes and the chunk are each all
    zero or all nonzero, so the points go in four such groups, one call each: the same arithmetic as one call a
    point, except that numpy's vectorised x ** y may differ from the C library's pow in the last bit, so a cell can
    move by ~1e-15 of itself (tests/test_simulate.py). Any other stepper (the tests' toy timers), or a StepTimer
    whose arrays raise, is called once a point (the old way: about 50 times slower, ~0.15 s for an 8B model's
    grid)."""
    from kvcalc.estimator import StepTimer

    def one_by_one(b, c, k, kc, pl=None):
        if pl is None:
            return np.array([s(*point) for point in zip(b, c, k, kc)], dtype=float)
        return np.array([s(*point[:4], float(point[4])) for point in zip(b, c, k, kc, pl)], dtype=float)

    if not isinstance(stepper, StepTimer):
        return one_by_one

    def grouped(b, c, k, kc, pl=None):
        out = np.empty(len(b))
        try:
            for b_zero in (True, False):
                for k_zero in (True, False):
                    m = ((b == 0) == b_zero) & ((k == 0) == k_zero)
                    if m.any():
                        args = (b[m], c[m], k[m], kc[m]) + (() if pl is None else (pl[m],))
                        out[m] = np.broadcast_to(s(*args), (int(m.sum()),))
        except (TypeError, ValueError):  # a layer kind whose formula takes scalars only: the slow, sure way
            return one_by_one(b, c, k, kc, pl)
        return out

    return grouped


MAX_WHOLE_PROMPTS = 16  # a fixed-length workload's steps of 1 to this many whole prompts are sampled exactly


class StepGrid:
    """Step time [s] of `decodes` decoding sequences at mean cached context `context` beside a prefill chunk of
    `chunk` tokens: stepper.seconds sampled on a (decodes x context x chunk) grid, multilinear in between; the
    tokens cached before the chunk (chunk_context) enter as an additive correction sampled on (chunk x chunk
    context). prompt_len: the largest piece of one prompt a step can hold (the per-replica budget where data-parallel
    attention replicas are pooled), so that StepTimer spreads a pooled chunk over the replicas only down to it.
    chunks: chunk sizes the workload will run (its prompts' pieces), sampled exactly: a MoE step's time is concave in
    its tokens (the distinct experts they touch), so a chord between grid points is too fast there (a 1-token prompt
    of Mixtral between the 0- and 16-token points: a third of its time, below the speed of light).
    A chunk of several prompts (`piece`: the tokens of a prompt's piece, their mean weighted by the tokens) enters as
    a second additive correction, sampled on (chunk x piece) against the chunk as one prompt: each prompt attends to
    itself only (StepTimer's prompt_len). Its attention is linear in the piece at a fixed chunk (chunk x (piece + 1) /
    2 positions), so the interpolation between pieces is close; the workload's own pieces are sampled exactly."""

    def __init__(self, stepper, max_decodes: int, max_context: int, max_chunk: int, prompt_len: int | None = None,
                 chunks=()):
        self.stepper = stepper
        self.b = _axis(max(max_decodes, 1), (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48))
        self.c = _axis(max(max_context, 1), (1, 128, 512, 1024, 2048))
        # dense where few tokens touch few experts: a MoE step is concave there, and a chord too fast (the third
        # audit: 8 one-token prompts of Mixtral between the 1- and 16-token points, TTFT 18.5 ms below the 21.1 ms
        # speed of light)
        self.k = _axis(max(max_chunk, 1), (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048,
                                           4096))
        extra = [float(x) for x in chunks if 0 < x < self.k[-1]]
        if extra:
            self.k = np.unique(np.concatenate([self.k, extra]))
        self.kc = _axis(max(max_context, 1), (256, 1024, 4096))
        def s(b, c, k, kc, pl=prompt_len):
            return stepper.seconds(b, c, k, kc) if pl is None else stepper.seconds(b, c, k, kc, prompt_len=pl)

        sample = _sampler(stepper, s)
        B, C, K = np.meshgrid(self.b, self.c, self.k, indexing="ij")
        self.t = sample(B.ravel(), C.ravel(), K.ravel(), np.zeros(B.size)).reshape(B.shape)  # [B, C, K]
        KK, KC = np.meshgrid(self.k, self.kc, indexing="ij")
        zero = np.zeros(KK.size)
        with_kc = sample(zero, zero, KK.ravel(), KC.ravel()).reshape(KK.shape)
        base = sample(zero[:len(self.k)], zero[:len(self.k)], self.k, zero[:len(self.k)])
        self.corr = np.where(KK > 0, with_kc - base[:, None], 0.0)  # [K, KC]
        self.q = np.unique(np.concatenate([_axis(max(max_chunk, 1), (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))[1:],
                                           extra]))  # piece sizes, from 1 token
        KQ, Q = np.meshgrid(self.k, self.q, indexing="ij")
        zero = np.zeros(KQ.size)
        pieces = Q.ravel() if prompt_len is None else np.minimum(Q.ravel(), prompt_len)
        split = sample(zero, zero, KQ.ravel(), zero, pieces).reshape(KQ.shape)
        self.piece_corr = np.where((KQ > 0) & (Q < KQ), split - base[:, None], 0.0)  # [K, Q]
        # seconds() runs once a step on scalars: Python floats and nested lists are several times faster there than
        # numpy scalars, and give the same IEEE double arithmetic
        self._b, self._c, self._k, self._kc = (a.tolist() for a in (self.b, self.c, self.k, self.kc))
        self._t, self._corr = self.t.tolist(), self.corr.tolist()
        self._q, self._piece_corr = self.q.tolist(), self.piece_corr.tolist()
        self._rows: dict = {}  # decode_seconds: decodes -> (its row over the contexts at chunk 0, the last slope)

    @staticmethod
    def _cell(axis: list, x: float):
        i = min(max(bisect.bisect_right(axis, x) - 1, 0), len(axis) - 2)
        lo, hi = axis[i], axis[i + 1]
        return i, min(max((x - lo) / (hi - lo), 0.0), 1.0) if x <= hi else (x - lo) / (hi - lo)

    def seconds(self, decodes: float, context: float, chunk: float, chunk_context: float,
                piece: float | None = None) -> float:
        i, u = self._cell(self._b, decodes)
        j, v = self._cell(self._c, context)
        k, w = self._cell(self._k, chunk)
        t0, t1 = self._t[i], self._t[i + 1]
        a = (t0[j][k] * (1 - w) + t0[j][k + 1] * w) * (1 - v) + (t0[j + 1][k] * (1 - w) + t0[j + 1][k + 1] * w) * v
        b = (t1[j][k] * (1 - w) + t1[j][k + 1] * w) * (1 - v) + (t1[j + 1][k] * (1 - w) + t1[j + 1][k + 1] * w) * v
        out = a * (1 - u) + b * u
        if chunk > 0:
            m, z = self._cell(self._kc, chunk_context)
            c0, c1 = self._corr[k], self._corr[k + 1]
            out += (c0[m] * (1 - z) + c0[m + 1] * z) * (1 - w) + (c1[m] * (1 - z) + c1[m + 1] * z) * w
            if piece is not None and piece < chunk:
                m, z = self._cell(self._q, piece)
                c0, c1 = self._piece_corr[k], self._piece_corr[k + 1]
                out += (c0[m] * (1 - z) + c0[m + 1] * z) * (1 - w) + (c1[m] * (1 - z) + c1[m + 1] * z) * w
        return float(out)

    def decode_seconds(self, decodes: float, contexts: np.ndarray) -> np.ndarray:
        """Pure decode steps of `decodes` sequences at each mean context in `contexts` (vectorised)."""
        cached = self._rows.get(decodes)
        if cached is None:
            i, u = self._cell(self._b, decodes)
            row = self.t[i, :, 0] * (1 - u) + self.t[i + 1, :, 0] * u
            # beyond the grid's last context, extend the last cell's slope (np.interp would hold it flat)
            slope = (row[-1] - row[-2]) / (self.c[-1] - self.c[-2])
            cached = self._rows[decodes] = (row, float(row[-1]), float(slope))
        row, last, slope = cached
        inside = np.interp(contexts, self.c, row)
        top = self._c[-1]
        if not len(contexts) or contexts.max() <= top:  # the common case: every context inside the grid
            return inside
        return np.where(contexts > top, last + (contexts - top) * slope, inside)


# ----------------------------------------------------------------------------------------------------------------
# Workloads
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Workload:
    """N requests: arrival times [s] (NaN: released by a completion in a closed loop), prompt and output lengths."""
    arrival_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    concurrency: int | None = None  # closed loop: requests in flight
    description: str = ""
    prefilled: bool = False  # requests arrive with their prompt cached and first token out (a decode pool's)
    # with prefilled, where the decode pool's first token comes from (engines/scheduler.py DISAGGREGATED_FIRST_TOKEN):
    # "arrival", handed over with the KV; "admission", streamed as the decode scheduler takes the request in; "step",
    # computed again in the request's first decode step
    first_token: str = "arrival"
    # where the benchmark's clock starts [s]: vllm bench serve starts it before the first request's gap (0); None: at
    # the first arrival, as SGLang's bench_serving sends its first request at once
    start_s: float | None = None
    # a request rate under a concurrency cap (vllm bench serve --request-rate R --max-concurrency C): each request's
    # time on the rate's schedule; it goes out then, or when one of the C in flight completes, whichever is later
    schedule: np.ndarray | None = None


def length_range(mean: int, range_ratio: float) -> tuple[int, int]:
    """The shortest and longest length vLLM's random dataset draws around `mean` (see `lengths`) [tokens]."""
    if range_ratio == 0:
        return mean, mean
    return max(1, math.floor(mean * (1 - range_ratio))), math.ceil(mean * (1 + range_ratio))


def lengths(n: int, mean: int, range_ratio: float, rng: np.random.Generator, client: str = "vllm") -> np.ndarray:
    """n lengths: fixed (range_ratio 0) or uniform on [floor(L (1 - r)), ceil(L (1 + r))] as vLLM's random dataset
    draws them (vllm/benchmarks/datasets.py RandomDataset.sample: np.random.randint(low, high + 1)); with
    client="sglang", uniform on [max(1, int(L r)), L] as SGLang's bench_serving.py sample_random_requests draws them
    (np.random.randint(max(int(input_len * range_ratio), 1), input_len + 1): r = 1 is fixed, r = 0 all of [1, L])."""
    if client == "sglang":
        if range_ratio >= 1:
            return np.full(n, mean, dtype=np.int64)
        return rng.integers(max(int(mean * range_ratio), 1), mean + 1, size=n, dtype=np.int64)
    if range_ratio == 0:
        return np.full(n, mean, dtype=np.int64)
    low, high = length_range(mean, range_ratio)
    return rng.integers(low, high + 1, size=n, dtype=np.int64)


# ShareGPT V3 (anon8231489123/ShareGPT_Vicuna_unfiltered, ShareGPT_V3_unfiltered_cleaned_split.json) as the serving
# benchmarks sample it (vllm benchmark_serving.py sample_sharegpt_requests, seed 0: the first turn's prompt, the
# reply's token count as max_tokens, pairs kept when prompt >= 4, reply >= 4, prompt <= 1024 and both <= 2048): the
# 320 prompt and generated lengths (Llama-3 tokenizer) published per request in LambdaLabsML/vllm-benchmark
# results/prompt_320/1xH100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1_len2048.json (commit a4f9f437, "input_lens" and
# "output_lens"; their sums 65,578 and 65,331 are the file's total_input_tokens and total_output_tokens). Published
# means: prompt 204.9, reply 204.2 tokens (215.6 over the 303 non-empty replies); medians 77 and 184. gpustack's
# 1,000-prompt runs of the same sampler (docs/performance-lab/qwen3-32b/h100.md, Qwen3 tokenizer) print 217,393
# prompt and ~201,400 generated tokens: means 217 and 201. A log-normal does not fit these prompts (bimodal: many
# under 30 tokens, many 300-800); the best log-normal truncated as the sampler truncates gives mean 175 at median 78
# against the published 205 and 77, so requests are drawn from the published pairs themselves (with replacement).
SHAREGPT_LONGEST = 2048  # the sampler's bound on prompt + reply (sample_sharegpt_requests: prompt_len + output_len > 2048 is pruned)
SHAREGPT_INPUT_LENS = (
    13, 25, 27, 10, 329, 29, 399, 328, 4, 205, 16, 372, 403, 9, 12, 770, 227, 8, 14, 390, 659, 59, 76, 744, 619,
    279, 344, 9, 10, 45, 11, 4, 80, 768, 317, 40, 619, 8, 298, 16, 17, 696, 575, 11, 7, 281, 12, 147, 481, 770, 336,
    6, 331, 9, 45, 222, 802, 481, 93, 641, 22, 15, 16, 77, 32, 689, 178, 9, 628, 480, 42, 336, 24, 515, 761, 112,
    113, 348, 82, 467, 245, 11, 24, 343, 13, 387, 258, 32, 28, 225, 248, 35, 133, 98, 27, 23, 58, 363, 203, 140,
    140, 230, 310, 521, 768, 317, 298, 336, 491, 19, 10, 59, 48, 20, 20, 54, 107, 53, 72, 18, 10, 768, 7, 933, 239,
    277, 26, 35, 462, 386, 25, 23, 17, 20, 44, 661, 631, 349, 53, 71, 37, 10, 21, 37, 496, 8, 9, 353, 10, 595, 5,
    49, 286, 305, 56, 43, 52, 310, 35, 7, 7, 238, 10, 143, 660, 191, 72, 39, 258, 312, 49, 9, 15, 561, 76, 561, 501,
    8, 66, 15, 303, 19, 455, 27, 143, 688, 9, 31, 361, 21, 117, 8, 12, 775, 338, 176, 349, 166, 419, 401, 307, 169,
    647, 21, 9, 34, 12, 37, 45, 154, 8, 10, 18, 253, 486, 611, 96, 19, 62, 529, 15, 30, 10, 445, 680, 762, 441, 77,
    12, 276, 178, 22, 159, 95, 366, 4, 7, 770, 8, 45, 480, 90, 32, 329, 768, 72, 86, 53, 83, 419, 44, 14, 56, 28,
    707, 235, 27, 668, 17, 427, 44, 370, 8, 674, 455, 185, 68, 19, 132, 304, 9, 34, 39, 54, 768, 661, 404, 240, 25,
    95, 60, 24, 12, 85, 66, 62, 462, 22, 241, 25, 32, 13, 175, 31, 342, 43, 339, 144, 233, 16, 10, 11, 269, 587, 8,
    233, 10, 48, 9, 335, 22, 61, 29, 692, 7, 332, 512, 13, 128, 24,
)
SHAREGPT_OUTPUT_LENS = (  # 0: the request streamed no token in that run (17 of 320); left out when drawing
    120, 613, 233, 194, 101, 741, 9, 3, 6, 31, 392, 84, 396, 45, 291, 9, 173, 277, 334, 37, 587, 372, 36, 135, 26,
    45, 450, 118, 226, 4, 5, 146, 59, 11, 567, 192, 476, 130, 13, 223, 188, 16, 35, 276, 202, 492, 239, 129, 26, 79,
    17, 204, 11, 207, 78, 340, 17, 9, 123, 6, 559, 5, 316, 26, 417, 206, 151, 42, 25, 18, 159, 0, 25, 267, 19, 12,
    768, 67, 628, 11, 218, 296, 382, 49, 125, 0, 26, 237, 350, 13, 490, 408, 58, 29, 512, 413, 526, 16, 416, 434,
    451, 17, 573, 0, 7, 8, 11, 22, 0, 249, 281, 392, 611, 572, 23, 256, 31, 39, 300, 355, 340, 9, 172, 458, 147,
    240, 154, 768, 0, 141, 42, 26, 780, 334, 125, 4, 4, 721, 63, 24, 331, 482, 110, 216, 184, 99, 285, 22, 355, 40,
    150, 46, 0, 0, 574, 572, 214, 0, 419, 163, 162, 77, 482, 170, 510, 53, 16, 384, 57, 9, 170, 356, 173, 19, 390,
    339, 77, 17, 520, 8, 8, 198, 510, 478, 304, 398, 16, 475, 91, 54, 509, 608, 36, 425, 15, 25, 12, 363, 0, 0, 44,
    43, 267, 474, 334, 31, 261, 402, 346, 176, 22, 22, 159, 203, 8, 16, 16, 216, 86, 0, 234, 258, 247, 23, 47, 16,
    447, 221, 702, 0, 44, 142, 740, 18, 76, 299, 250, 24, 300, 178, 5, 373, 25, 23, 76, 322, 87, 389, 21, 7, 527,
    485, 339, 394, 11, 27, 254, 313, 392, 111, 365, 0, 79, 11, 275, 22, 99, 373, 38, 0, 657, 283, 503, 250, 16, 407,
    0, 7, 261, 322, 322, 91, 56, 365, 342, 316, 25, 441, 646, 241, 222, 4, 27, 290, 7, 21, 336, 16, 360, 199, 381,
    297, 18, 338, 301, 189, 373, 478, 394, 23, 230, 455, 283, 0, 201, 0, 20, 308, 30, 295,
)


def sharegpt_pairs() -> tuple[np.ndarray, np.ndarray]:
    """The (prompt, output) lengths of the published ShareGPT V3 sample above that streamed a reply (303 of 320):
    mean prompt 193.9, mean output 215.6 tokens."""
    ins = np.array(SHAREGPT_INPUT_LENS, dtype=np.int64)
    outs = np.array(SHAREGPT_OUTPUT_LENS, dtype=np.int64)
    keep = outs > 0
    return ins[keep], outs[keep]


def sharegpt_lengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n (prompt, output) length pairs drawn with replacement from `sharegpt_pairs`."""
    ins, outs = sharegpt_pairs()
    pick = rng.integers(0, len(ins), size=n)
    return ins[pick], outs[pick]


VLLM_RESCALED_ARRIVALS = (0, 10)  # vllm bench serve's rescaled Poisson gaps (PR #21108)


def _whole_in_flight(concurrency, why: str) -> None:
    """--concurrency as a closed loop or a rate's cap takes it: from 1 to 10,000,000, whole."""
    from kvcalc.checks import check_number

    check_number("--concurrency", concurrency, 1, 10_000_000)
    if concurrency != int(concurrency):
        raise KvcalcError(f"--concurrency: {why}, got {concurrency!r}")


def make_workload(arrivals: str, num_prompts: int, input_len: int, output_len: int, *, concurrency=None,
                  request_rate=None, range_ratio: float = 0.0, seed: int = 0, burst_size: int | None = None,
                  client: str = "vllm", dataset: str = "random", rescaled: bool = True,
                  burstiness: float = 1.0) -> Workload:
    """closed: `concurrency` in flight from t = 0, each completion releasing the next (vllm bench serve
    --max-concurrency C --request-rate inf); poisson: exponential gaps at `request_rate` requests/s, burstiness 1:
    with client "vllm" as vllm bench serve draws them (benchmarks/serve.py get_request, from PR #21108: the cumulative
    delays rescaled so the last request goes out at exactly N / rate, the clock started before the first gap), with
    client "sglang" (or a vLLM client older than the rescaling: rescaled False) as sglang.bench_serving does (the
    first request at once, the gaps as drawn); burst: groups of `burst_size` (default: concurrency or 8) arriving
    together, the groups at Poisson times of rate request_rate / burst_size. dataset: random (input_len, output_len
    and range_ratio) or sharegpt (pairs drawn from the published ShareGPT sample, sharegpt_lengths; the lengths given
    are ignored)."""
    from kvcalc.checks import shown_value

    rng = np.random.default_rng(seed)
    # arrival times from a stream of their own, so that one seed's arrivals stay the same whatever the lengths drawn
    # (--range-ratio, --dataset), as vllm bench serve draws them apart (the twenty-fifth audit, S2)
    arrivals_rng = np.random.default_rng([1, seed])
    if dataset == "sharegpt":
        ins, outs = sharegpt_lengths(num_prompts, rng)
    elif dataset == "random":
        ins = lengths(num_prompts, input_len, range_ratio, rng, client)
        outs = lengths(num_prompts, output_len, range_ratio, rng, client)
    else:
        raise KvcalcError(f"--dataset: expected random or sharegpt, got {shown_value(dataset)}")
    if arrivals == "closed":
        c = int(concurrency)
        arrive = np.full(num_prompts, np.nan)
        arrive[:min(c, num_prompts)] = 0.0
        return Workload(arrive, ins, outs, concurrency=c, description=f"closed loop, {c} in flight")
    if arrivals == "poisson" and concurrency is not None:
        # --request-rate R --max-concurrency C: vllm bench serve's get_request keeps the rate's schedule and each
        # request then waits on asyncio.Semaphore(C) (vllm/benchmarks/serve.py benchmark: limited_request_func), its
        # TTFT timed from when it holds a slot (the twenty-second audit's S3, left until the twenty-eighth)
        c = int(concurrency)
        rated = make_workload("poisson", num_prompts, input_len, output_len, request_rate=request_rate,
                              range_ratio=range_ratio, seed=seed, client=client, dataset=dataset, rescaled=rescaled,
                              burstiness=burstiness)
        arrive = np.full(num_prompts, np.nan)
        arrive[:min(c, num_prompts)] = rated.arrival_s[:c]
        return Workload(arrive, rated.input_len, rated.output_len, concurrency=c, start_s=rated.start_s,
                        schedule=rated.arrival_s, description=f"{rated.description}, at most {c} in flight")
    if arrivals == "poisson":
        if math.isinf(request_rate):
            return Workload(np.zeros(num_prompts), ins, outs, description="all at t = 0 (request rate inf)")
        # vllm bench serve's get_request: gamma(shape=burstiness, scale=1 / (rate x burstiness)), the exponential at 1
        gaps = (arrivals_rng.exponential(1.0 / request_rate, size=num_prompts) if burstiness == 1.0 else
                arrivals_rng.gamma(burstiness, 1.0 / (request_rate * burstiness), size=num_prompts))
        kind = "Poisson" if burstiness == 1.0 else f"gamma gaps of burstiness {burstiness:g}"
        if client == "vllm" and rescaled:  # the twenty-fifth audit, S1: seeds 0-5 had spread 9.64-10.60 requests/s
            times = np.cumsum(gaps)
            return Workload(times * (num_prompts / request_rate / times[-1]), ins, outs, start_s=0.0,
                            description=f"{kind}, {request_rate:g} requests/s (vllm bench serve's: the last at "
                            f"N / rate)")
        gaps[0] = 0.0
        return Workload(np.cumsum(gaps), ins, outs, description=f"{kind}, {request_rate:g} requests/s")
    if arrivals == "burst":
        size = int(burst_size or concurrency or 8)
        groups = math.ceil(num_prompts / size)
        starts = np.cumsum(arrivals_rng.exponential(size / request_rate, size=groups))
        starts -= starts[0]
        return Workload(np.repeat(starts, size)[:num_prompts], ins, outs,
                        description=f"bursts of {size}, {request_rate:g} requests/s on average")
    raise KvcalcError(f"--arrivals: expected closed, poisson, burst or trace (the CLI's staggered and waves too), got "
                      f"{arrivals!r}")


# Bounds on what a simulation takes in, so that its clock and its arrays stay exact (audit of 2026-12-05, A9/A14):
# the clock is a double, whose spacing at 1e10 s is 1.9e-6 s (2**-19 s), a thousandth of a millisecond decode step;
# at 1e308 s a step of milliseconds is absorbed (t + dt == t) and TPOT comes out 0. 1e10 s holds Unix times in
# seconds (to the year 2286), which traces often carry, and 1e-6 requests/s (one every 11.6 days) is the slowest
# Poisson or burst rate taken. MAX_PROMPTS: the audit timed 100,000 requests at 17 s and 250 MB, so 1,000,000 (plan's
# own cap on its simulated prompts) is about 3 minutes and 2.5 GB; MAX_TRACE_BYTES holds 1,000,000 JSON lines of
# 130 bytes.
MAX_ARRIVAL_S = 1e10
MAX_PROMPTS = 1_000_000
MAX_PIPELINE_MICRO_BATCHES = 300_000  # under pp: micro-batches formed one by one (simulate() estimates them)
MAX_STEPS = 2_000_000  # the fewest steps a run's tokens need (simulate()'s count before it runs) it may take
# A block of decode steps keeps its inter-token latencies as at most this many evenly spaced steps, each weighing its
# share: within a block the batch is fixed and the step time grows smoothly with the context, and without it one
# request in flight over 30,000 prompts of 4,000 tokens kept 1.2e8 of them (1.9 GB; the fourth audit).
ITL_SAMPLES = 64
MAX_ROUNDS = 500_000  # scheduler rounds one simulation runs at most, or 4 a request: 40 us a round of decode
# blocks, up to some 150 us of small mixed steps (20-75 s on a 2-CPU machine; the fourth audit: a pool of two requests
# on an L4 preempted for over 100 s)
MAX_TRACE_BYTES = 128 << 20


def _trace_length(raw) -> int | None:
    """A trace's token count: a whole number (100, "100", 100.0 or "1e3"), or None where it is not a number."""
    if isinstance(raw, bool) or not plain_number_text(raw):
        return None
    if isinstance(raw, int):
        return raw
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else -1  # -1: a number, not a whole one


def _trace_time(raw) -> float | None:
    if isinstance(raw, bool) or raw is None or not plain_number_text(raw):
        return None
    try:
        return float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer beyond a double
        return None


def _trace_rows(path, text: str):
    """(line number, row) of a trace's text: JSON lines where the name ends in .jsonl or .ndjson (any case), or in .json
    with an object on its first line; else CSV whose header names the columns."""
    import csv
    import io
    import json

    from kvcalc.specs.files import RepeatedKey, once_each, parse_error

    # JSON lines by the name, or, under a .json name, by a first line that opens an object (the tenth audit, S2: a .json
    # trace of JSON lines had been read as CSV, and the error quoted a mangled header)
    first = text.lstrip()[:1]
    if first == "[":
        raise KvcalcError(f"--trace: {path} line 1: a JSON array; a trace is JSON lines (one object a line, .jsonl) "
                          "or CSV")
    if path.suffix.lower() in (".jsonl", ".ndjson") or (path.suffix.lower() == ".json" and first == "{"):
        for n, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 may sit inside a JSON string
            if line.strip():
                try:
                    yield n, json.loads(line, object_pairs_hook=once_each)
                except RepeatedKey as e:  # the sixth audit: the last of two input_len keys had won silently
                    raise KvcalcError(f"--trace: {path} line {n}, field {e}: given twice") from None
                except (ValueError, RecursionError) as e:  # JSONDecodeError, and 5,000-digit integers (fifth audit)
                    raise KvcalcError(f"--trace: {path} line {n}: not a JSON object"
                                      + ("" if isinstance(e, json.JSONDecodeError) else f" ({parse_error(e)})")) from None
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": a quoted field keeps its line breaks
    try:
        header = [h.strip() for h in reader.fieldnames or []]  # "arrival_s, input_len" as spreadsheets space it
        reader.fieldnames = header
        if not {"input_len", "output_len"} <= set(header) or not {"arrival_s", "timestamp"} & set(header):
            raise KvcalcError(f"--trace: {path} line 1: expected a header naming arrival_s (or timestamp), "
                              f"input_len and output_len, got {','.join(header)[:80]!r}")
        # a column named twice, or a row longer than the header, had been read silently (the sixth audit: the
        # second input_len column won, and a fourth cell under three columns was dropped)
        read = ("arrival_s", "timestamp", "input_len", "output_len")  # columns it does not read may repeat
        twice = next((h for n, h in enumerate(header) if h in read and h in header[:n]), None)
        if twice is not None:
            raise KvcalcError(f"--trace: {path} line 1, column {twice!r}: named twice in the header")
        for row in reader:
            if None in row:  # csv.DictReader's restkey: the cells beyond the header's columns
                raise KvcalcError(f"--trace: {path} line {reader.line_num}: {len(header) + len(row[None])} cells "
                                  f"under a header of {len(header)} columns")
            yield reader.line_num, row  # the row's last physical line (a quoted field may span several)
    except csv.Error as e:
        raise KvcalcError(f"--trace: {path} line {reader.line_num}: not CSV ({e})") from None


def read_trace(path) -> Workload:
    """A trace file: CSV with a header naming arrival_s (or timestamp), input_len, output_len, or JSON lines
    (.jsonl, .ndjson) with those keys; UTF-8, with or without the byte-order mark Excel writes. Times are seconds
    (a Mooncake trace, whose timestamps are milliseconds, is refused by its input_length field)
    from 0 to MAX_ARRIVAL_S that never go backwards; lengths whole numbers from 1 to MAX_TOKENS (100.0 is 100); at
    most MAX_PROMPTS requests. Every bad line is one error naming the file, the line and the field."""
    from pathlib import Path

    from kvcalc.checks import MAX_TOKENS, shown_value
    from kvcalc.specs.files import read_regular_file

    path = Path(path)
    try:
        data = read_regular_file(path, "a trace (CSV or JSON lines)", MAX_TRACE_BYTES)
    except KvcalcError as e:
        raise KvcalcError(f"--trace: {e}") from None
    try:
        text = data.decode("utf-8-sig")  # -sig: a leading byte-order mark (Excel's "CSV UTF-8") is not a column name
    except UnicodeDecodeError as e:
        raise KvcalcError(f"--trace: {path}: not UTF-8 text (byte {e.start:,} is {data[e.start]:#04x}); save it as "
                          f"UTF-8 CSV or JSON lines") from None
    if not text.strip():
        raise KvcalcError(f"--trace: {path} has no requests (the file is empty)")
    t: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    last = -math.inf
    for n, row in _trace_rows(path, text):
        if not isinstance(row, dict):
            raise KvcalcError(f"--trace: {path} line {n}: not an object")
        if len(t) == MAX_PROMPTS:
            raise KvcalcError(f"--trace: {path} has more than {MAX_PROMPTS:,} requests, the most one simulation "
                              f"runs (about 3 minutes and 2.5 GB); split the trace")
        if "input_length" in row and "input_len" not in row:  # the twenty-fifth audit, S5: Mooncake's and AIPerf's
            # traces time their requests in milliseconds under the name this reader takes in seconds
            raise KvcalcError(f"--trace: {path} line {n}: input_length, output_length and a timestamp in milliseconds "
                              "are Mooncake's trace (and AIPerf's); kvcalc reads input_len, output_len and arrival_s "
                              "(or timestamp) in seconds: convert the times and rename the fields")
        key = "timestamp" if "arrival_s" not in row and "timestamp" in row else "arrival_s"
        if ("arrival_s" in row and "timestamp" in row
                and _trace_time(row["arrival_s"]) != _trace_time(row["timestamp"])):  # two names of one field with
            # two values (the thirteenth audit, S8: arrival_s had been taken in silence)
            raise KvcalcError(f"--trace: {path} line {n}: arrival_s {str(row['arrival_s'])[:20]} and timestamp "
                              f"{str(row['timestamp'])[:20]} disagree; give one")
        raw = row.get(key)
        arrival = _trace_time(raw)
        if arrival is None:
            raise KvcalcError(f"--trace: {path} line {n}, field {key}: expected a number of seconds, "
                              f"got {shown_value(raw)}")
        if not 0 <= arrival <= MAX_ARRIVAL_S:  # NaN fails both
            raise KvcalcError(f"--trace: {path} line {n}, field {key}: expected seconds from 0 to "
                              f"{MAX_ARRIVAL_S:g} (beyond it a double cannot time a decode step), got {shown_value(raw)}")
        if arrival < last:
            raise KvcalcError(f"--trace: {path} line {n}, field {key}: {arrival:g} is before the line above "
                              f"({last:g}); times must not go backwards")
        last = arrival
        for name, out in (("input_len", ins), ("output_len", outs)):
            raw = row.get(name)
            value = _trace_length(raw)
            if value is None:
                got = "nothing" if raw is None else shown_value(raw)
                raise KvcalcError(f"--trace: {path} line {n}, field {name}: expected a number of tokens, got {got}")
            if not 1 <= value <= MAX_TOKENS:
                raise KvcalcError(f"--trace: {path} line {n}, field {name}: expected a whole number of tokens from "
                                  f"1 to {MAX_TOKENS:,}, got {shown_value(raw)}")
            out.append(value)
        t.append(arrival)
    if not t:
        raise KvcalcError(f"--trace: {path} has no requests")
    arrive = np.array(t)
    return Workload(arrive - arrive[0], np.array(ins, dtype=np.int64), np.array(outs, dtype=np.int64),
                    description=f"trace {path.name}")


# ----------------------------------------------------------------------------------------------------------------
# The simulation
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class SimResult:
    """Per-request times [s] and the step log."""
    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_len: np.ndarray
    output_len: np.ndarray
    preemptions: int
    itl_s: np.ndarray            # one entry per decode step (or block of steps): the step's duration
    itl_weight: np.ndarray       # tokens that step streamed (the decodes in it)
    timeline_s: np.ndarray       # each step's start and end (and its end again after completions: what runs on)
    waiting: np.ndarray          # requests queued then
    running: np.ndarray          # requests running then
    steps: int = 0
    log: list = field(default_factory=list)
    busy_s: float = 0.0          # time the engine ran steps (the run's duration less its idle gaps)


def simulate_schedule(policy: SchedulerPolicy, step_time, workload: Workload, *, pool_tokens: float,
                      verify_tokens: int = 1, tokens_per_step: float = 1.0, prefix_hit_rate: float = 0.0,
                      pipeline_stages: int = 1, log_steps: bool = False, client_overhead_s: float = 0.0,
                      cut_yields: tuple[float, ...] | None = None, state_blocks: int = 0) -> SimResult:
    """Run `workload` through `policy` with step times from step_time (a StepGrid, or anything with
    seconds(decodes, context, chunk, chunk_context) and decode_seconds(decodes, contexts)). pool_tokens: the KV pool
    in tokens. Speculative decoding: each decode puts verify_tokens into the step and yields tokens_per_step; one
    that the step's token budget cuts to s < verify_tokens tokens (vLLM V1 trims its drafts to fit) yields
    cut_yields[s] (Speculation.yields; the tenth audit, S2: a cut verify had been credited the full yield).
    prefix_hit_rate: the fraction of each prompt found in the prefix cache (not prefilled; its blocks still held).

    pipeline_stages (pp): the engines' micro-batches. Each step formed is one micro-batch, and step_time gives its
    whole depth (StepTimer.one_micro_batch). It enters the first stage when the micro-batch before it has left it
    (its depth / pp later) and leaves the last stage its depth after entering, when its tokens come out. A micro-batch
    is formed at once while fewer than pp are in the pipeline and something can be scheduled, else when the oldest
    leaves; a request in a micro-batch is scheduled again only once that micro-batch has left, while a prompt's next
    chunk may go into the next one. So requests admitted together stay together: a wave whose prompts fit one step
    runs as one micro-batch through every stage, its decodes too. Each micro-batch has the whole token budget; SGLang
    forms its pp slots in turn, each holding its requests for life and at most max_seqs // pp of them (below),
    TensorRT-LLM takes at most max_seqs // pp of the requests not in flight, vLLM's max_seqs counts them all. vLLM V1
    (EngineCore.step_with_batch_queue, its scheduler skipping a request with no new tokens; PR #13637 for the
    chunks), SGLang (event_loop_pp: running_mbs[mb_id], pp_max_micro_batch_size) and TensorRT-LLM (_executor_loop_pp:
    inflight_req_ids; PR #9308 for the chunks); the thirty-eighth audit, Serve 1: the step's requests had been spread
    evenly over min(requests, pp) micro-batches, a wave of 64 short prompts at pp 4 timed 2.5x short.

    state_blocks: blocks every request holds beside its tokens' (a hybrid model's fixed linear-attention or Mamba
    state, in the pool's token units: simulate() sizes it), from its admission to its end.

    client_overhead_s: the engine's per-request overhead (API server, tokenisation), which summarize adds to each
    TTFT; in a closed loop the client waits through it too, so a completion's replacement reaches the engine that
    much later."""
    arrive = workload.arrival_s.astype(float).copy()
    ins, outs = workload.input_len, workload.output_len
    per_token = _itl_per_token(policy, tokens_per_step)
    n = len(ins)
    bs = policy.block_size
    pool_blocks = int(pool_tokens // bs)
    q, gain = verify_tokens, tokens_per_step
    yields = np.array(cut_yields if cut_yields is not None else [0.0] + [gain] * q, dtype=float)
    if len(yields) != q + 1 or yields[q] != gain:
        raise ValueError("cut_yields: expected verify_tokens + 1 yields ending in tokens_per_step")
    # whole blocks of at most the prompt less its last token, the longest hit vLLM's KVCacheManager.get_computed_blocks
    # takes (max_cache_hit_length = num_tokens - 1, then whole blocks; the tenth audit, S10: capped after the
    # rounding, a full hit had left one token to prefill, below any hit vLLM has)
    hit = np.floor(np.minimum(ins * prefix_hit_rate, ins - 1) / bs) * bs
    kv = np.zeros(n)                         # tokens cached
    pre_left = (ins - hit).astype(float)     # tokens still to prefill
    gen = np.zeros(n)                        # tokens generated
    blocks = np.zeros(n, dtype=np.int64)     # KV blocks held
    first = np.full(n, np.nan)
    last_tok = np.full(n, np.nan)            # when each request last streamed a token (ITL: the gaps between them)
    if workload.prefilled and workload.first_token == "step":  # KV received, the prompt's last token to compute
        kv[:], pre_left[:], hit[:] = ins - 1, 1.0, 0.0
    elif workload.prefilled:  # KV received from a prefill pool: decode from the first step
        kv[:], pre_left[:], gen[:], hit[:] = ins, 0.0, 1.0, 0.0
        if workload.first_token == "arrival":
            first[:] = arrive
            last_tok[:] = arrive
    finish = np.full(n, np.nan)
    # under pp the engines' micro-batches, as vLLM V1 (EngineCore.step_with_batch_queue), SGLang (event_loop_pp) and
    # TensorRT-LLM (_executor_loop_pp) form them: a request is scheduled again only once the micro-batch it ran in has
    # left the last stage (ready), a prompt's next chunk at once; a micro-batch is formed while fewer than pp are in
    # the pipeline (flight, oldest first: its exit and the requests it completes) and runs each stage, a pp-th of its
    # depth, once that stage is free (stage_free, one a stage: a short micro-batch behind a long one waits for it at
    # every stage, and leaves after it)
    pipelined = pipeline_stages > 1
    ready = np.zeros(n)
    flight: deque = deque()  # (exit, the requests it completes, the requests it holds until then)
    stage_free = [0.0] * pipeline_stages
    # SGLang's micro-batches are slots (event_loop_pp: running_mbs[mb_id], mb_id = 0 .. pp - 1 formed in turn, each
    # once its last micro-batch's output is processed): a request decodes in the slot its prompt finished in, for life
    # (slot), and a slot holds at most max_running_requests // pp (get_num_allocatable_reqs: pp_max_micro_batch_size
    # less its running batch); vLLM and TensorRT-LLM form a micro-batch from every request not in the pipeline,
    # TensorRT-LLM at most max_batch_size of them in their order (kvcalc's max_seqs spans its pp micro-batches). The
    # thirty-ninth audit, ppsim 1-2: ready requests of every slot had merged into one micro-batch past the cap, SGLang's
    # output at pp 4 half the other engines'
    slotted = pipelined and policy.name.startswith("sglang")
    capped = pipelined and not policy.name.startswith("vllm")
    batch_seats = max(policy.max_seqs // pipeline_stages, 1)
    slot = np.full(n, -1, dtype=np.int64)
    slot_exit = [0.0] * pipeline_stages  # when each slot's last micro-batch leaves the pipeline
    turn, passes = 0, 0  # the slot formed next, and the slots passed over since one was formed
    closed = workload.concurrency is not None
    released = ClosedLoop(int(np.sum(~np.isnan(arrive))), client_overhead_s, workload.schedule)
    nxt = 0                                  # next request not yet queued (requests are in arrival order)
    waiting: deque = deque()
    run = np.empty(0, dtype=np.int64)
    used = 0                                 # blocks held
    t = 0.0
    done = 0
    preemptions = 0
    # a preempted request's cached prefix (policy.preempted_prefix_cached): its full blocks' tokens when it was
    # preempted, the count of blocks taken from the free queue after which its blocks start to be evicted (the free
    # blocks ahead of them, and its own uncached last block, which it freed first), and the blocks it took back
    cached_prefix, evicted_from, reclaimed = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    taken = [0]  # blocks taken from the free queue so far (not those a preempted request took back from the cache)
    keeps_prefix = policy.preempted_prefix_cached and state_blocks == 0  # a hybrid's state is not in the blocks
    ratio = policy.init_new_token_ratio
    itl_t: list = []
    itl_w: list = []
    tl_t: list = []
    tl_wait: list = []
    tl_run: list = []
    steps = 0
    busy = 0.0  # time spent in steps
    log: list = []
    # decode steps since the scheduler last ran: with policy.multi_step = m (vLLM --num-scheduler-steps m) it runs
    # again only after m of them, so a request queued mid-block waits for the block to end
    phase = [0]
    m = max(policy.multi_step, 1)
    piece_cap = policy.max_piece or policy.budget  # the most of one prompt a step takes
    unit = policy.chunk_unit
    # policy.ahead (vLLM's async scheduling, SGLang's and TensorRT-LLM's overlap schedulers): the scheduler filled
    # this step while the last one ran, at that step's start, so only requests that had arrived by then are queued
    # now; a later one waits a step more, unless the scheduler had nothing to run (the idle branch below; the
    # twentieth audit, R3)
    last_start = [0.0]
    # policy.ahead: the blocks and seats of the requests that finished in the last step, which the scheduler still saw
    # held when it filled this step (the engines free them as they process that step's output, after filling the
    # next: vLLM's update_from_output, SGLang's process_batch_result, TensorRT-LLM's _process_previous_batch; the
    # twenty-second audit, S1: a seat had been reused a step early)
    unfreed = [0, 0]

    def seen() -> float:  # the latest arrival the scheduler has taken in by this round
        return last_start[0] if policy.ahead else t

    def seats() -> int:  # requests the scheduler may run at once this round
        return policy.max_seqs - unfreed[1]

    def blocks_for(tokens):  # a running request's blocks at `tokens` tokens, its state's with them
        return np.ceil(tokens / bs).astype(np.int64) + state_blocks

    def full_blocks(i):  # blocks a request needs at its full length (TensorRT-LLM's guarantee)
        return math.ceil((ins[i] + outs[i]) / bs) + state_blocks

    def admissible(i, budget_left, run_ids, reserved_full: float = 0.0) -> bool:
        """Whether the head of the queue may enter now (memory only). reserved_full: under SGLang's token-ratio rule,
        the output tokens this step's prefill batch has reserved in full so far (its admitted requests')."""
        if policy.admission == "full_length":
            reserved = int(np.sum(np.ceil((ins[run_ids] + outs[run_ids]) / bs))) + state_blocks * len(run_ids)
            return reserved + full_blocks(i) <= pool_blocks - unfreed[0]
        s = min(pre_left[i], budget_left, piece_cap)
        if policy.full_sequence_admission:  # vLLM 0.19+: the whole sequence (a preempted one's outputs too)
            s = pre_left[i]
        # its cached prefix only while it is fresh: a preempted request recomputes its whole prompt (vLLM: less what
        # the cache kept of it, already in kv: recover_prefix), as its admission allocates it (the tenth audit, S11:
        # the check had asked for the hit's blocks on top)
        fresh = kv[i] == 0 and pre_left[i] == ins[i] - hit[i]
        need = math.ceil((kv[i] + s + hit[i] * fresh) / bs) + (state_blocks if blocks[i] == 0 else 0) - blocks[i]
        if policy.admission == "token_ratio":
            # SGLang's PrefillAdder.add_one_req (schedule_policy.py): the head's whole prompt (a chunked one too: it
            # holds its chunk, but the check is on extend_input_len) and its output clipped at CLIP_MAX_NEW_TOKENS,
            # in full, beside the outputs this batch reserved in full and the running requests' clipped outputs to
            # come at new_token_ratio (_get_running_request_total_token_offset; the twelfth audit, S2: the ratio had
            # been applied to the head's own whole output, and nothing clipped: 13 admitted where SGLang takes 9)
            whole = (math.ceil((kv[i] + pre_left[i] + hit[i] * fresh) / bs) + (state_blocks if blocks[i] == 0 else 0)
                     - blocks[i])
            decoding = run_ids[pre_left[run_ids] <= 0]  # the running batch (a chunked prompt in flight is not in it)
            to_come = float(sglang_outputs(decoding).sum()) if len(decoding) else 0.0
            return _token_ratio_fits(used + reserved_full / bs, whole, to_come, ratio, bs, pool_blocks - unfreed[0],
                                     float(sglang_outputs(i)))
        return used + need <= pool_blocks - unfreed[0]

    def recover_prefix(i) -> None:
        """A preempted request at the head of the queue finds what is left of its cached prefix (vLLM's
        get_computed_blocks), checked anew each time until it is admitted: the blocks taken from the free queue since
        its preemption evicted its blocks from its last one back. It takes the rest back when admitted."""
        if cached_prefix[i] and blocks[i] == 0:
            back = max(0, int(cached_prefix[i] // bs) - max(0, int(taken[0] - evicted_from[i])))
            pre_left[i] += kv[i] - back * bs  # (kv: the tokens found at the last check)
            kv[i], reclaimed[i] = back * bs, back

    def sglang_outputs(ids):  # PrefillAdder's output reserve: min(max_new_tokens - generated, CLIP_MAX_NEW_TOKENS)
        return np.minimum(np.maximum(outs[ids] - gen[ids], 0), SGLANG_CLIP_MAX_NEW_TOKENS)

    # SGLang's running_batch.batch_is_full: the batch size at which the head of the queue last failed for memory
    # (AddReqResult.NO_TOKEN), 0 where it has not. get_new_batch_prefill then admits nothing until the batch shrinks
    # (update_running_batch clears it when a request finishes or is retracted, or the batch empties), however
    # new_token_ratio decays meanwhile (the twentieth audit, R2: the head had entered as soon as the ratio allowed it)
    full_bs = 0
    rounds, most_rounds = 0, max(MAX_ROUNDS, 4 * n)  # a request's arrival, prompt and last decode: a few rounds each
    if pipelined:  # a micro-batch a round, and a round for each wait on the pipeline (SGLang: each slot passed over)
        most_rounds += (3 + pipeline_stages * slotted) * int(np.ceil(outs / gain).sum())

    def decode_block(limit: int | None) -> int:
        """The running requests' pure decode steps, advanced in one block (_decode_block) to its next event or
        `limit` steps; the steps it ran."""
        nonlocal run, t, done, used, steps, busy
        t0, before = t, steps
        unfreed[:] = [0, 0]  # this round's admission is decided; the block's completions set them anew
        run, t, done, used, steps = _decode_block(
            run, t, done, used, steps, waiting, arrive, nxt, kv, gen, blocks, outs, finish, first, policy,
            pool_blocks, step_time, q, gain, itl_t, itl_w, tl_t, tl_wait, tl_run, closed, released, n, phase=phase,
            limit=limit, state_blocks=state_blocks, last_tok=last_tok, last_start=last_start, unfreed=unfreed,
            taken=taken, per_token=per_token)
        busy += t - t0
        return steps - before

    def through_pipeline(dt: float) -> float:
        """Under pp: a micro-batch formed now, `dt` through the whole depth, through the stages in turn, each a pp-th
        of it once that stage is free (a flow shop); when it leaves the last."""
        nonlocal busy
        busy += dt / pipeline_stages  # the first stage's share
        return through_stages(t, stage_free, dt)

    def decode_micro_batch(ids) -> bool:
        """Under pp, with no request waiting: forms the micro-batch of `ids` as the general step would where each
        decodes its next tokens within the budget and the pool (no prompt, no admission, no preemption), and says
        whether it did; False leaves it to the general step."""
        nonlocal used, steps, ratio, full_bs
        if (pre_left[ids] > 0).any() or len(ids) * q > policy.budget:
            return False
        held = blocks[ids]
        grown = blocks_for(kv[ids] + q)
        if used + int((grown - held).sum()) > pool_blocks:  # (a preemption or retraction: the general step)
            return False
        if not policy.mixed and full_bs and len(run) < full_bs:  # (as SGLang's branch resets it)
            full_bs = 0
        new_blocks = np.maximum(grown, held)
        used += int((new_blocks - held).sum())
        taken[0] += int((new_blocks - held).sum())
        blocks[ids] = new_blocks
        d = len(ids)
        dt = step_time.seconds(d, float(kv[ids].sum()) / d, 0.0, 0.0, None)
        unfreed[:] = [0, 0]
        _step_starts(t, waiting, len(run), tl_t, tl_wait, tl_run)
        last_start[0] = t
        at = through_pipeline(dt)
        steps += 1
        phase[0] = 0
        if log_steps:
            log.append({"t_end": at, "decodes": d, "chunk": 0.0, "ids": ids.tolist()})
        kv[ids] += gain
        gen[ids] += gain
        _itl_gaps(np.where(np.isnan(last_tok[ids]), dt, at - last_tok[ids]), itl_t, itl_w,
                  np.full(d, gain) if per_token else None)
        last_tok[ids] = at
        tl_t.append(t)
        tl_wait.append(len(waiting))
        tl_run.append(len(run))
        entered(ids, ids[gen[ids] >= outs[ids] - 1e-9], at)
        if not policy.mixed:  # SGLang lowers new_token_ratio every decode step
            ratio = max(ratio - policy.new_token_ratio_decay, policy.min_new_token_ratio)
        return True

    def next_arrival() -> float:  # when the next request not yet queued arrives (inf: none known yet)
        return float(arrive[nxt]) if nxt < n and not np.isnan(arrive[nxt]) else math.inf

    def entered(held, fin, at: float) -> None:
        """Under pp: the micro-batch just formed holds `held` until it leaves the last stage at `at`, completing
        `fin`; under SGLang they are its slot's, and the next slot is in turn."""
        nonlocal turn, passes
        ready[held] = at
        flight.append((at, fin, held))
        if slotted:
            slot[held] = turn
            slot_exit[turn] = at
            turn, passes = (turn + 1) % pipeline_stages, 0

    def pass_turn() -> None:
        """SGLang under pp: the slot in turn forms nothing (event_loop_pp runs no batch for it); once every slot has
        passed, the engine waits for the next micro-batch to leave or the next arrival."""
        nonlocal turn, passes, t
        turn, passes = (turn + 1) % pipeline_stages, passes + 1
        if passes >= pipeline_stages:
            coming = next_arrival()
            nearest = min(flight[0][0] if flight else math.inf, coming)
            if nearest == math.inf:
                raise KvcalcError("simulation: the KV pool cannot hold the next request (its prompt, or its tokens so "
                                  "far); raise --tp or lower the lengths")
            t, passes = max(t, nearest), 0

    def slot_room() -> bool:  # SGLang under pp: whether the slot in turn has a seat for a request
        return not slotted or int((slot[run] == turn).sum()) < batch_seats

    def may_admit(ids) -> bool:
        """Under pp: whether a waiting request could join the micro-batch of `ids` for its seats (not its memory)."""
        return bool(waiting) and len(run) < seats() and not (capped and len(ids) >= batch_seats)

    def decode_ring(ids) -> bool:
        """Under pp: the micro-batches of decodes alone that follow while nothing else can happen, in one block.
        Every running request is in `ids`, formed now, or in a micro-batch in the pipeline, and each decodes again in
        its own as that leaves (a ring); the block ends before a micro-batch that completes a request, meets an
        arrival, could take a waiting request, or could need a block the pool may not have (a bound on the tokens
        added), and where two leave at once (their requests would form one). Each is formed as decode_micro_batch
        would form it (a context from the group's sum, exact for whole tokens); False, with nothing done, where fewer
        than two would be."""
        nonlocal used, steps, ratio, full_bs, t, busy, turn, passes
        if log_steps or (pre_left[run] > 0).any() or len(ids) + sum(len(f[2]) for f in flight) != len(run):
            return False
        groups = [ids] + [f[2] for f in flight]
        sizes = [len(g) for g in groups]
        if (min(sizes) == 0 or max(sizes) * q > policy.budget or (capped and max(sizes) > batch_seats)
                or (waiting and len(run) < seats()
                    and not (capped and len(groups) == pipeline_stages and min(sizes) >= batch_seats))):
            return False
        kv_sums = [float(kv[g].sum()) for g in groups]
        # micro-batches each group runs before the one that completes one of its requests
        left = [math.ceil(float((outs[g] - gen[g]).min()) / gain - 1e-9) - 1 for g in groups]
        # blocks the added tokens may take: each request's next token past its held blocks, at most one more each
        slack = (blocks[run] - state_blocks) * bs - kv[run] - q
        short = float(np.maximum(-slack, 0).sum())
        coming = next_arrival()
        gone = [len(f[1]) > 0 for f in flight]
        queue = deque((f[0], g + 1, f) for g, f in enumerate(flight))  # exit, group, the entry it was
        stage = stage_free[:]
        done_steps, last = [0] * len(groups), [0.0] * len(groups)
        first_gaps: list = []
        gaps, weights = [], []
        g, at_form, formed, added, busy_add, last_form, last_group = 0, t, 0, 0.0, 0.0, t, 0
        while True:
            d = sizes[g]
            if (done_steps[g] >= left[g] or coming <= at_form
                    or used + (added + d * gain + short) / bs + len(run) > pool_blocks):
                break
            if g != 0 or formed:  # (the one it forms again leaves the pipeline now)
                queue.popleft()
            dt = step_time.seconds(d, (kv_sums[g] + gain * d * done_steps[g]) / d, 0.0, 0.0, None)
            at = through_stages(at_form, stage, dt)
            busy_add += dt / pipeline_stages
            if done_steps[g] == 0:
                first_gaps.append(np.where(np.isnan(last_tok[groups[g]]), dt, at - last_tok[groups[g]]))
            else:
                gaps.append(at - last[g])
                weights.append(d)
            last[g], done_steps[g], added, formed, last_form = at, done_steps[g] + 1, added + d * gain, formed + 1, at_form
            last_group = g
            queue.append((at, g, None))
            out_t, g_next, _ = queue[0]  # the next is formed as the oldest in the pipeline leaves it
            if (g_next > 0 and gone[g_next - 1] and done_steps[g_next] == 0) or coming <= out_t or (
                    len(queue) > 1 and queue[1][0] <= out_t):
                break
            g, at_form = g_next, out_t
        if formed < 2:
            return False
        for g, k in enumerate(done_steps):
            if not k:
                continue
            held = groups[g]
            new_blocks = np.maximum(blocks_for(kv[held] + gain * (k - 1) + q), blocks[held])
            used += int((new_blocks - blocks[held]).sum())
            taken[0] += int((new_blocks - blocks[held]).sum())
            blocks[held] = new_blocks
            kv[held] += gain * k
            gen[held] += gain * k
            last_tok[held] = last[g]
            ready[held] = last[g]
            if slotted:
                slot_exit[int(slot[held[0]])] = last[g]
        if slotted:  # the slot after the last formed is in turn
            turn = (int(slot[groups[last_group][0]]) + 1) % pipeline_stages
        for first_gap in first_gaps:
            _itl_gaps(first_gap, itl_t, itl_w, np.full(len(first_gap), gain) if per_token else None)
        if gaps:
            per = gain if per_token else 1.0
            itl_t.append(np.array(gaps) / per)
            itl_w.append(np.array(weights, dtype=float) * per)
        flight.clear()
        flight.extend(entry if entry is not None else (out_t, np.empty(0, dtype=np.int64), groups[g])
                      for out_t, g, entry in queue)
        unfreed[:] = [0, 0]
        _step_starts(t, waiting, len(run), tl_t, tl_wait, tl_run)
        t = last_form
        last_start[0] = t
        stage_free[:] = stage
        busy += busy_add
        steps += formed
        phase[0] = 0
        passes = 0
        tl_t.append(t)
        tl_wait.append(len(waiting))
        tl_run.append(len(run))
        if not policy.mixed:
            if full_bs and len(run) < full_bs:
                full_bs = 0
            for _ in range(formed):  # (each decode micro-batch's, as decode_micro_batch lowers it)
                ratio = max(ratio - policy.new_token_ratio_decay, policy.min_new_token_ratio)
        return True

    def retire(upto: float) -> None:
        """Under pp: the micro-batches out of the pipeline by `upto`, oldest first: their completions."""
        nonlocal run, done, used
        while flight and flight[0][0] <= upto:
            out_t, fin_ids, _ = flight.popleft()
            if len(fin_ids):
                run, done, used = _finish(fin_ids, run, out_t, done, used, blocks, finish, arrive, closed, n,
                                          released)
                _after_completions(out_t, waiting, run, tl_t, tl_wait, tl_run)
    while done < n:
        rounds += 1
        if rounds > most_rounds:  # preemptions, or steps that schedule few tokens, make more rounds than simulate()'s
            # count of the fewest steps; a block of decode steps is one round
            passed = f"{rounds - 1:,} scheduler rounds"
            if preemptions > n:  # the pool holds fewer of these requests than run at once: they evict each other
                # (the nineteenth audit, S3: "lower --num-prompts" had been the advice where it equalled -n)
                raise KvcalcError(f"--num-prompts / --concurrency: the simulation passed {passed} with {done:,} of "
                                  f"{n:,} requests done and {preemptions:,} preemptions: the KV pool holds fewer of "
                                  "these requests at full length than run at once; lower --concurrency or "
                                  "--request-rate, shorten the requests, or give the pool more room (--tp, "
                                  "--kv-dtype fp8)")
            raise KvcalcError(f"--num-prompts / --concurrency: the simulation passed {passed} with "
                              f"{done:,} of {n:,} requests done (steps of few tokens make many rounds); lower "
                              "--num-prompts, raise --step-tokens or give the pool more room")
        if pipelined:
            retire(t)
            if done >= n:
                break
            if len(flight) >= pipeline_stages:  # pp micro-batches in the pipeline: the engine waits for the oldest
                t = max(t, flight[0][0])
                continue
            if slotted and slot_exit[turn] > t:  # SGLang: the slot in turn once its last micro-batch's output is in
                t = slot_exit[turn]
                continue
        # queue the arrivals up to now
        while nxt < n and not np.isnan(arrive[nxt]) and arrive[nxt] <= seen():
            waiting.append(nxt)
            nxt += 1
        if len(run) == 0:  # nothing else runs: the scheduler had processed the last step's output before this one
            unfreed[:] = [0, 0]
        if len(run) == 0 and not waiting:
            if nxt >= n or np.isnan(arrive[nxt]):
                raise KvcalcError("simulation: no request can run (internal: closed loop ran dry)")
            # an idle scheduler takes the next request as it comes (one that came during the last step, which it
            # had scheduled nothing after, as that step ends)
            t = max(t, float(arrive[nxt]))
            last_start[0] = t
            # an idle engine: SGLang's scheduler puts new_token_ratio back to its initial value whenever it has no
            # batch to run (scheduler.py self_check_during_idle: `self.new_token_ratio = self.init_new_token_ratio`;
            # the twelfth audit, S13: a burst after a quiet spell had been admitted at the decayed 0.098, 20 where
            # SGLang takes 12)
            ratio = policy.init_new_token_ratio
            continue
        # the requests this round may schedule: under pp those not in a micro-batch still in the pipeline
        # (SGLang: the slot in turn's, and a chunked prompt's next chunk; TensorRT-LLM: its first max_batch_size)
        if not pipelined:
            pool_ids = run
        elif slotted:
            pool_ids = run[(ready[run] <= t) & ((slot[run] == turn) | (pre_left[run] > 0))]
        else:
            pool_ids = run[ready[run] <= t][:batch_seats if capped else None]
        if pipelined and not len(pool_ids) and not waiting:  # all in the pipeline: the next exit or arrival
            if slotted:
                pass_turn()
                continue
            coming = next_arrival()
            t = max(t, min(flight[0][0] if flight else math.inf, coming))
            continue
        # the general step below, for decodes alone in fewer array operations (plan simulates pipelined finalists): a
        # ring of them while nothing else can happen, else one micro-batch
        if (pipelined and len(pool_ids) and not may_admit(pool_ids)
                and (decode_ring(pool_ids) or decode_micro_batch(pool_ids))):
            continue
        budget = policy.budget
        prefilling = pre_left[pool_ids] > 0
        step_ids = pool_ids
        preempted_now = False
        admit = True

        # SGLang: a prefill batch whenever a waiting request (or a chunked prompt in flight) can go
        if not policy.mixed:
            prefill_step = bool(prefilling.any())
            if full_bs and len(run) < full_bs:  # a request finished or was retracted since (or the batch emptied)
                full_bs = 0
            if (not prefill_step and waiting and len(run) < seats() and (phase[0] % m == 0 or not len(run))
                    and not full_bs and slot_room()):
                prefill_step = admissible(waiting[0], budget, run)
                if not prefill_step and len(run) and policy.admission == "token_ratio":
                    full_bs = len(run)
            if not prefill_step and not len(run):
                raise KvcalcError("simulation: the KV pool cannot admit the next request even with nothing running; "
                                  "raise --tp or lower the lengths")
            if not prefill_step and not len(pool_ids):  # under pp: its decodes all in the pipeline
                if slotted:
                    pass_turn()
                else:
                    t = max(t, flight[0][0])
                continue
            if not prefill_step:
                # decode step; retract if the pool cannot take the next token of every running request (under pp,
                # of the micro-batch's: SGLang's running_mbs[mb_id])
                cand = pool_ids
                need = blocks_for(kv[cand] + q) - blocks[cand]
                over = used + int(need.sum()) - pool_blocks
                if over > 0:
                    # ScheduleBatch.retract_decode (schedule_batch.py) sorts by (output tokens generated, -prompt
                    # length) and retracts from the end: the fewest generated first, the longest prompt first among
                    # equals (the ninth round, S7: the most output left had gone first, the same only at fixed lengths)
                    # Among equal keys Python's stable sort keeps the batch's order and pop() takes the last, the
                    # request merged last (the fourteenth audit, S5: the first had been taken)
                    order = np.lexsort((-np.arange(len(cand)), -ins[cand], gen[cand]))
                    # until the kept requests' next token fits: retract_decode's loop `while first_iter or not
                    # self.check_decode_mem(selected_indices=sorted_indices)` (schedule_batch.py at sgl-project/sglang
                    # 000eaff, since PR #9989). Before it, `available_size() < len(sorted_indices) x
                    # retract_decode_steps` (20 tokens a request kept), the rule the twelfth audit's S11 cited:
                    # those releases retracted more at once, which is not modelled here
                    freed, k = 0, 0
                    while freed < over and k < len(cand) - 1:
                        j = cand[order[k]]
                        freed += int(blocks[j]) + int(need[order[k]])
                        k += 1
                    drop = cand[order[:k]]
                    if not len(drop):
                        raise KvcalcError("simulation: the KV pool cannot hold one request's next token; raise --tp "
                                          "or lower the lengths")
                    for j in drop:
                        used -= int(blocks[j])
                        blocks[j] = 0
                        pre_left[j] = ins[j] + gen[j]
                        kv[j] = 0
                        # back to the queue's tail: Scheduler._add_request_to_queue(req, is_retracted=True) appends,
                        # and FCFS does not re-sort (the fourteenth audit, S6: put first, as vLLM's preempted are)
                        slot[j] = -1
                        waiting.append(j)
                    preemptions += len(drop)
                    run = run[~np.isin(run, drop)]
                    # retract_decode's estimate from the requests kept (schedule_batch.py: (their tokens decoded +
                    # retract_decode_steps x their count) / their max_new_tokens, at most 1), which the scheduler
                    # takes as its new_token_ratio (the tenth audit, S9: reset to the initial 0.7)
                    ratio = sglang_ratio_after_retraction(gen[run], outs[run])
                    continue
                if pipelined:  # one micro-batch of its decodes, formed below (no block of steps: each leaves the
                    # pipeline on its own)
                    step_ids, admit = cand, False
                    ratio = max(ratio - policy.new_token_ratio_decay, policy.min_new_token_ratio)
                else:
                    limit = None
                    if (policy.admission == "token_ratio" and waiting and len(run) < policy.max_seqs
                            and not full_bs):
                        limit = _steps_until_admitted(ratio, policy, waiting[0], run, used, pool_blocks, pre_left,
                                                      kv, gen, outs, blocks, hit, gain, state_blocks)
                    if waiting and any(unfreed):  # what the last step's completions free comes back after one step
                        limit = 1
                    ran = decode_block(limit)
                    # SGLang lowers new_token_ratio every decode step (scheduler.py sglang_prefill_first; the ninth
                    # audit, S1: once a block of thousands had held a waiting request until a completion)
                    ratio = max(ratio - policy.new_token_ratio_decay * ran, policy.min_new_token_ratio)
                    continue
            else:
                step_ids = pool_ids[prefilling]
        else:
            # mixed step (vLLM V1, TensorRT-LLM): the running requests first, in order, within the token budget
            boundary = phase[0] % m == 0
            if waiting:
                recover_prefix(waiting[0])
            pure_decode = len(run) and not prefilling.any() and len(run) * q <= budget and not (boundary and
                waiting and len(run) < seats() and admissible(waiting[0], budget - len(run) * q, run))
            fits = not pipelined and pure_decode and (policy.preempt is None or used + int(
                (blocks_for(kv[run] + q) - blocks[run]).sum()) <= pool_blocks)
            if fits:  # the same requests decode until the next event: advance them in one block
                decode_block(1 if waiting and any(unfreed) else None)  # (what the last step freed: a step later)
                continue

        # one general step: the step_ids in order, then admissions
        left, kv_ids, held = pre_left[step_ids], kv[step_ids], blocks[step_ids]
        need = np.where(left > 0, np.minimum(left, piece_cap), q)
        start = np.cumsum(need) - need
        sched = np.minimum(np.maximum(budget - start, 0), need)  # np.clip(budget - start, 0, need), without its wrapper
        if unit > 1:  # a piece short of its prompt's remaining context: whole units (TensorRT-LLM's blocks)
            sched = np.where((left > 0) & (sched < left), sched // unit * unit, sched)
        new_blocks = np.maximum(blocks_for(kv_ids + sched + hit[step_ids] * (kv_ids == 0)), held)
        if policy.preempt is not None and (step_ids is run or pipelined):  # (under pp: of the micro-batch formed)
            total = used - int(held.sum()) + np.cumsum(new_blocks)
            keep = int(np.searchsorted(total, pool_blocks, side="right"))
            if keep < len(step_ids):
                keep = max(keep, 1) if total[0] <= pool_blocks else 0
                victims = step_ids[keep:][::-1]
                for j in victims:  # vLLM: self.running.pop() until it fits; each prepended to waiting
                    if keeps_prefix:  # its full blocks stay cached behind the free ones (the thirty-fourth audit,
                        # simulate 1: it had recomputed its whole prompt and outputs, 5 s at 18K tokens on an L4)
                        cached_prefix[j] = kv[j] // bs * bs
                        evicted_from[j] = taken[0] + (pool_blocks - used) + (blocks[j] - kv[j] // bs)
                    used -= int(blocks[j])
                    blocks[j] = 0
                    kv[j] = 0
                    pre_left[j] = ins[j] + gen[j]
                    slot[j] = -1
                    waiting.appendleft(j)
                preemptions += len(victims)
                preempted_now = True
                run = run[~np.isin(run, victims)]  # (run[:keep] where the step is every running request)
                step_ids = step_ids[:keep]
                need, start, sched, new_blocks = need[:keep], start[:keep], sched[:keep], new_blocks[:keep]
        used += int((new_blocks - blocks[step_ids]).sum())
        taken[0] += int((new_blocks - blocks[step_ids]).sum())
        blocks[step_ids] = new_blocks
        budget_left = budget - int(sched.sum())
        admitted: list[int] = []  # the requests admitted this step, and their chunks' tokens
        admitted_s: list[int] = []
        reserved_full = 0.0  # SGLang: outputs this prefill batch reserves in full (admissible)
        if policy.admission == "token_ratio":  # a chunked prompt in flight, with its last chunk (add_chunked_req)
            ends = step_ids[(pre_left[step_ids] > 0) & (sched >= pre_left[step_ids])]
            reserved_full = float(sglang_outputs(ends).sum()) if len(ends) else 0.0
        if admit and not preempted_now:
            n_run = len(run)
            # under pp SGLang takes at most max_running_requests // pp into one micro-batch (pp_max_micro_batch_size)
            # and TensorRT-LLM max_batch_size, whose pp micro-batches kvcalc's max_seqs counts together; vLLM's
            # max_num_seqs is across them (scheduler.py: len(self.running), the batches in flight too)
            in_batch = (int((slot[run] == turn).sum()) + len(step_ids) if slotted else len(step_ids) if capped
                        else -math.inf)
            while waiting and budget_left > 0 and n_run < seats() and in_batch < batch_seats:
                i = waiting[0]
                recover_prefix(i)
                run_ids = run if not admitted or policy.admission == "on_demand" else (  # (on_demand: unused)
                    np.concatenate([run, np.array(admitted, dtype=np.int64)]))
                s = min(pre_left[i], budget_left, piece_cap)
                if s < pre_left[i]:  # cut by the budget: whole units (TensorRT-LLM's blocks), or the next step
                    s = s // unit * unit
                if s <= 0 < pre_left[i] or not admissible(i, budget_left, run_ids, reserved_full):
                    break
                waiting.popleft()
                if kv[i] == 0 and hit[i] > 0 and pre_left[i] == ins[i] - hit[i]:
                    kv[i] = hit[i]
                if workload.prefilled and pre_left[i] <= 0:  # its KV in place: it decodes in this step, beside the
                    # running ones (the fifteenth audit, S3: it had sat out a step wherever the replica was busy)
                    s = min(q, budget_left)
                    if np.isnan(first[i]):  # its first token streamed as the scheduler takes it in
                        first[i] = last_tok[i] = t
                nb = math.ceil((kv[i] + s) / bs) + state_blocks
                used += nb - int(blocks[i])
                taken[0] += nb - int(blocks[i]) - int(reclaimed[i])
                reclaimed[i], cached_prefix[i] = 0, 0
                blocks[i] = nb
                if policy.admission == "token_ratio" and s >= pre_left[i]:  # its whole prompt: output in full
                    reserved_full += float(sglang_outputs(i))
                admitted.append(i)
                admitted_s.append(s)
                budget_left -= s
                n_run += 1
                in_batch += 1
        adm = np.array(admitted, dtype=np.int64)
        ids = np.concatenate([step_ids, adm]) if len(adm) else step_ids
        all_sched = np.concatenate([sched, np.array(admitted_s, dtype=float)]) if len(adm) else sched
        if len(adm):
            run = np.concatenate([run, adm])
        is_pre = pre_left[ids] > 0
        dec = (~is_pre) & (all_sched > 0)
        pre = is_pre & (all_sched > 0)
        n_dec = int(dec.sum())
        pieces = all_sched[pre]
        chunk = float(pieces.sum())
        ctx = float(kv[ids[dec]].sum()) / n_dec if n_dec else 0.0  # their mean (np.mean's sum, then its division)
        # the tokens cached before each prompt's chunk, weighted by its tokens (StepTimer's chunk_context)
        chunk_ctx = float((kv[ids[pre]] * pieces).sum() / chunk) if chunk else 0.0
        # a prompt's piece, weighted by its tokens: chunk / piece prompts keep the chunk's attention (sum of q^2 / 2)
        piece = float(pieces @ pieces / chunk) if len(pieces) > 1 else None
        if n_dec == 0 and chunk == 0 and len(adm) and workload.prefilled:
            continue  # requests admitted with their KV already in place decode from the next step
        if n_dec == 0 and chunk == 0:
            if slotted:  # under pp: room comes back as a micro-batch leaves the pipeline
                pass_turn()
                continue
            if pipelined and flight:
                t = max(t, flight[0][0])
                continue
            # nothing fits (the pool is too small for the head of the queue and nothing runs)
            raise KvcalcError("simulation: the KV pool cannot hold the next request (its prompt, or its tokens so "
                              "far); raise --tp or lower the lengths")
        dt = step_time.seconds(n_dec, ctx, chunk, chunk_ctx, piece)
        unfreed[:] = [0, 0]
        _step_starts(t, waiting, len(run), tl_t, tl_wait, tl_run)
        last_start[0] = t
        if pipelined:
            at = through_pipeline(dt)
        else:
            t += dt
            at = t  # when the step's tokens come out
            busy += dt
        steps += 1
        phase[0] = 0  # a step with prompts is scheduled on its own: the scheduler runs again after it
        if log_steps:
            log.append({"t_end": at, "decodes": n_dec, "chunk": chunk, "ids": ids[all_sched > 0].tolist()})
        # advance the prefills
        pid = ids[pre]
        kv[pid] += all_sched[pre]
        pre_left[pid] -= all_sched[pre]
        sampled = pid[pre_left[pid] <= 0]
        pre_left[sampled] = 0
        gen[sampled] += 1
        newly = sampled[np.isnan(first[sampled])]
        first[newly] = at
        again = sampled[~np.isnan(last_tok[sampled])]  # recomputed after a preemption: its next token comes after
        if len(again):  # the stall (the thirteenth audit's S1: left out of ITL)
            _itl_gaps(at - last_tok[again], itl_t, itl_w)
        last_tok[sampled] = at
        # advance the decodes
        did = ids[dec]
        got = yields[all_sched[dec].astype(np.int64)]  # gain, or less where the budget cut the verify
        kv[did] += got
        gen[did] += got
        if n_dec:  # each request's gap since its last token: the step, and any prefill step it sat out (SGLang
            # runs prompts first; the thirteenth audit, S1: p99 ITL 6.4 ms where a hand schedule gives 27)
            _itl_gaps(np.where(np.isnan(last_tok[did]), dt, at - last_tok[did]), itl_t, itl_w,
                      got if per_token else None)
            last_tok[did] = at
        tl_t.append(t)
        tl_wait.append(len(waiting))
        tl_run.append(len(run))
        # completions
        fin = ids[(gen[ids] >= outs[ids] - 1e-9) & (all_sched > 0)]
        if pipelined:  # its requests scheduled again, and its completions done, once it leaves the pipeline
            entered(np.concatenate([did, sampled]), fin, at)
        elif len(fin):
            run, done, used = _finish(fin, run, t, done, used, blocks, finish, arrive, closed, n, released,
                                      unfreed if policy.ahead else None)
            _after_completions(t, waiting, run, tl_t, tl_wait, tl_run)
    return SimResult(workload.arrival_s if not closed else arrive, first, finish, ins, outs, preemptions,
                     np.concatenate(itl_t) if itl_t else np.empty(0),
                     np.concatenate(itl_w) if itl_w else np.empty(0),
                     np.array(tl_t), np.array(tl_wait), np.array(tl_run), steps, log, busy)


@dataclass
class ClosedLoop:
    """A closed loop's clients: requests released so far, and the delay from a client's answer to its next request's
    arrival at the engine (the server's per-request work); under a request rate (Workload.schedule), no request goes
    out before its time on the rate's schedule."""
    count: int
    delay_s: float
    schedule: np.ndarray | None = None


def _finish(fin, run, t, done, used, blocks, finish, arrive, closed, n, released: ClosedLoop, unfreed=None):
    """The requests `fin` done at t: their blocks back to the pool, a closed loop's next requests released. unfreed
    (policy.ahead): [blocks, seats] the scheduler filling the next step still saw held, counted here."""
    if unfreed is not None:
        unfreed[0] += int(blocks[fin].sum())
        unfreed[1] += len(fin)
    finish[fin] = t
    used -= int(blocks[fin].sum())
    blocks[fin] = 0
    run = run[np.isnan(finish[run])]  # the running requests that did not just finish, in order
    done += len(fin)
    if closed:  # each completion releases the next request of the closed loop
        # after the server's per-request work, which the client waits through (the sixth audit: rate x E2E had been
        # 1.61 in flight at -n 1). Under --pp t is when the answer's micro-batch leaves the last stage, the finish the
        # run reports (the twelfth audit, S4: released before it, rate x E2E had been 3.70 in flight for 3 clients);
        # never before a request released earlier
        k = min(len(fin), n - released.count)
        when = np.full(k, t + released.delay_s)
        if released.schedule is not None:  # a capped rate: not before the request's time on the schedule
            when = np.maximum(when, released.schedule[released.count:released.count + k])
        if released.count:
            when = np.maximum(when, arrive[released.count - 1])
        arrive[released.count:released.count + k] = when
        released.count += k
    return run, done, used


def _steps_until_admitted(ratio, policy, i, run, used, pool_blocks, pre_left, kv, gen, outs, blocks, hit, gain,
                          state_blocks: int = 0):
    """Decode steps after which SGLang's token-ratio admission takes the head of the queue, i, with new_token_ratio
    lowered by its decay each step (admissible()'s rule: blocks held + i's whole prompt + its output clipped at
    CLIP_MAX_NEW_TOKENS in full + ratio x the running requests' clipped outputs still to come, within the pool; the
    running requests' held blocks grow a block per block_size tokens they decode); None where none within the running
    requests' shortest remaining output."""
    bs = policy.block_size
    left = np.maximum(outs[run] - gen[run], 0)
    horizon = max(1, math.ceil(float(left.min()) / gain - 1e-9))
    k = np.arange(1, horizon + 1)
    r = np.maximum(ratio - policy.new_token_ratio_decay * k, policy.min_new_token_ratio)
    grown = (np.ceil((kv[run][None, :] + gain * k[:, None]) / bs).sum(axis=1) + state_blocks * len(run)
             - blocks[run].sum())
    whole = (math.ceil((kv[i] + pre_left[i] + hit[i] * (kv[i] == 0)) / bs) + (state_blocks if blocks[i] == 0 else 0)
             - blocks[i])
    to_come = np.minimum(np.maximum(left[None, :] - gain * k[:, None], 0), SGLANG_CLIP_MAX_NEW_TOKENS).sum(axis=1)
    own = min(max(float(outs[i] - gen[i]), 0.0), SGLANG_CLIP_MAX_NEW_TOKENS)
    ok = _token_ratio_fits(used + grown, whole, to_come, r, bs, pool_blocks, own)
    return int(k[np.argmax(ok)]) if ok.any() else None


def _token_ratio_fits(held, need, outputs_to_come, ratio, block_size, pool_blocks, own_outputs=0.0):
    """SGLang's admission (PrefillAdder.add_one_req): the blocks held (with the outputs reserved in full for requests
    admitted beside it), the head's prompt (need), its own clipped output in full (own_outputs) and new_token_ratio x
    the running requests' clipped outputs still to come, strictly within the pool (`total_tokens >=
    rem_total_tokens` refuses); numbers or numpy arrays."""
    return held + need + (ratio * outputs_to_come + own_outputs) / block_size < pool_blocks


def _itl_per_token(policy: SchedulerPolicy, tokens_per_step: float) -> bool:
    """Whether the engine's own benchmark counts a step's several tokens (speculative decoding) as that many gaps of
    step / tokens: SGLang's bench_serving does (python/sglang/bench_serving.py async_request_sglang_generate, its
    default backend: `adjust_itl = (timestamp - most_recent_timestamp) / num_new_tokens`, extended num_new_tokens
    times); vLLM's and TensorRT-LLM's record one gap a streamed chunk (vllm/benchmarks/lib/endpoint_request_func.py,
    tensorrt_llm/serve/scripts/backend_request_func.py: `output.itl.append(timestamp - most_recent_timestamp)`). The
    thirty-eighth audit, servesim 1: SGLang's ITL under EAGLE had been the whole verify step, 3x its benchmark's."""
    return policy.name.startswith("sglang") and tokens_per_step != 1


def _itl_gaps(gaps, itl_t: list, itl_w: list, tokens=None) -> None:
    """Inter-token gaps as ITL samples, one per request (equal gaps counted together). tokens (SGLang's benchmark,
    _itl_per_token): the tokens each gap streamed, which it counts as that many gaps of gap / tokens."""
    if tokens is not None:
        tokens = np.broadcast_to(np.asarray(tokens, dtype=float), np.shape(gaps))
        some = tokens > 0
        itl_t.append(np.asarray(gaps, dtype=float)[some] / tokens[some])
        itl_w.append(tokens[some].copy())
        return
    gaps = np.asarray(gaps, dtype=float)
    lo = gaps.min()
    if lo == gaps.max():  # the common case: every request waited the same step
        itl_t.append(np.array([lo]))
        itl_w.append(np.array([float(len(gaps))]))
        return
    values, counts = np.unique(gaps, return_counts=True)
    itl_t.append(values)
    itl_w.append(counts.astype(float))


def _decode_block(run, t, done, used, steps, waiting, arrive, nxt, kv, gen, blocks, outs, finish, first, policy,
                  pool_blocks, step_time, q, gain, itl_t, itl_w, tl_t, tl_wait, tl_run, closed, released, n,
                  phase=None, limit=None, state_blocks: int = 0, last_tok=None,
                  last_start=None, unfreed=None, taken=None, per_token: bool = False):
    """Advance pure decode steps of the same requests until the first completion, the pool filling, or an arrival
    that could be admitted, in one vectorised block. phase ([decode steps since the scheduler ran], with
    policy.multi_step = m): a queued or arriving request is taken only at the next multiple of m. limit: at most
    that many steps (SGLang's queue head admitted once its new_token_ratio has decayed enough). last_start: [the start
    of the block's last step], set here; under policy.ahead an arrival is queued after the first step that starts no
    earlier than it (the scheduler filled that step's successor at its start), not after the step it lands in."""
    m = max(policy.multi_step, 1) if phase is not None else 1
    d = len(run)
    kv_run, gen_run, outs_run = kv[run], gen[run], outs[run]  # copies, written back below
    kv_sum = float(kv_run.sum())  # (np.mean is this sum over d)
    n_steps = max(1, math.ceil(float((outs_run - gen_run).min()) / gain - 1e-9))
    if limit is not None:
        n_steps = min(n_steps, limit)
    if policy.preempt is not None:  # stop before a decode could find no free block
        bs = policy.block_size
        room = pool_blocks * bs - kv_sum - d * (bs + q + state_blocks * bs)
        n_steps = max(1, min(n_steps, int(room // (d * gain)) if room > 0 else 1))
    ctx0 = kv_sum / d
    times = step_time.decode_seconds(d, ctx0 + gain * np.arange(n_steps))
    cum = np.cumsum(times)
    if m > 1 and waiting and d < policy.max_seqs:  # queued requests are taken when this block of m steps ends
        n_steps = min(n_steps, m - phase[0] % m)
    if nxt < n and not np.isnan(arrive[nxt]) and d < policy.max_seqs:
        # the step after which it is queued: the first to end no earlier than its arrival
        marks = cum - times if policy.ahead else cum  # the steps' ends (ahead: their starts)
        k = int(np.searchsorted(marks, arrive[nxt] - t, side="left")) + 1
        if m > 1:
            k += -(phase[0] + k) % m
        n_steps = min(n_steps, k)
    if phase is not None:
        phase[0] += n_steps
    dt = float(cum[n_steps - 1])
    if last_start is not None:
        last_start[0] = t + dt - float(times[n_steps - 1])
    _step_starts(t, waiting, d, tl_t, tl_wait, tl_run)
    # the block's first token of each request comes after its gap since its last one: the step, and a prefill step
    # it sat out before the block (SGLang's prompts run first: the thirteenth audit, S1)
    sat_out = (t - last_tok[run]) if last_tok is not None else np.zeros(d)
    sat_out = np.where(np.isnan(sat_out), 0.0, sat_out)
    t += dt
    steps += n_steps
    kv_run += gain * n_steps
    gen_run += gain * n_steps
    kv[run], gen[run] = kv_run, gen_run  # (what kv[run] += ... does, without reading kv[run] again)
    if policy.preempt is not None:
        held = blocks[run]
        nb = np.maximum(np.ceil(kv_run / policy.block_size).astype(np.int64) + state_blocks, held)
        used += int((nb - held).sum())
        if taken is not None:
            taken[0] += int((nb - held).sum())
        blocks[run] = nb
    # per_token: each step's gap as its `gain` tokens' gaps of gap / gain (_itl_per_token)
    per = gain if per_token else 1.0
    _itl_gaps(times[0] + sat_out, itl_t, itl_w, gain if per_token else None)
    rest = n_steps - 1
    if rest > ITL_SAMPLES:  # a long block's other steps as ITL_SAMPLES evenly spaced ones, each weighing its share
        picked = 1 + ((np.arange(ITL_SAMPLES) + 0.5) * (rest / ITL_SAMPLES)).astype(np.int64)
        itl_t.append(times[picked] / per)
        itl_w.append(np.full(ITL_SAMPLES, d * rest / ITL_SAMPLES * per))
    elif rest:
        itl_t.append(times[1:n_steps] / per)
        itl_w.append(np.full(rest, d * per))
    if last_tok is not None:
        last_tok[run] = t
    tl_t.append(t)
    tl_wait.append(len(waiting))
    tl_run.append(d)
    fin = run[gen_run >= outs_run - 1e-9]
    if len(fin):
        run, done, used = _finish(fin, run, t, done, used, blocks, finish, arrive, closed, n, released,
                                  unfreed if policy.ahead else None)
        _after_completions(t, waiting, run, tl_t, tl_wait, tl_run)
    return run, t, done, used, steps


def _step_starts(t, waiting, running: int, tl_t, tl_wait, tl_run) -> None:
    """A timeline point at a step's (or a block of steps') start with the requests it runs, beside the one at its end:
    drawn forward (plot.py simulation_timeline, where="post"), a step's own count covers the step (the twelfth audit,
    S6: with points at the ends only, each step's count had lasted no time and the count after its completions was
    drawn across the next step: a closed loop of 4 prompt-only requests, busy 200 of 236 ms, drawn idle throughout)."""
    tl_t.append(t)
    tl_wait.append(len(waiting))
    tl_run.append(running)


def _after_completions(t, waiting, run, tl_t, tl_wait, tl_run) -> None:
    """A second timeline point at a step's end, after its completions: the step's own point counts the requests it
    ran (max_running), this one what runs on, so a drawn timeline drops to 0 where the engine goes idle (the tenth
    audit, S3: it had drawn a request running through a 2 s gap)."""
    tl_t.append(t)
    tl_wait.append(len(waiting))
    tl_run.append(len(run))


# ----------------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------------

PERCENTILES = (50, 90, 99)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, pcts: list[float]) -> list[float | None]:
    """Each pct-th percentile of values each counted `weight` times, interpolated between neighbouring ranks as
    np.percentile's default 'linear' (what `vllm bench serve` reports, and what the TTFT and TPOT percentiles use),
    from one sort. With whole-number weights it equals np.percentile(np.repeat(values, weights), pct)."""
    if len(values) == 0 or weights.sum() <= 0:
        return [None] * len(pcts)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    ranked = values[order]
    last = len(values) - 1

    def at(rank: float) -> float:  # the value at 0-based rank `rank` of the values repeated
        return float(ranked[min(int(np.searchsorted(cum, rank, side="right")), last)])

    out = []
    for q in pcts:
        h = max(float(cum[-1]) - 1, 0.0) * q / 100
        k = np.floor(h)
        lo, hi = at(k), at(k + 1)
        out.append(lo + (h - k) * (hi - lo))
    return out


def _pcts(x: np.ndarray, percentile: float) -> dict:
    if len(x) == 0:
        return {f"p{p:g}": None for p in (*PERCENTILES, percentile)} | {"mean": None}
    out = {f"p{p:g}": float(np.percentile(x, p)) for p in (*PERCENTILES, percentile)}
    out["mean"] = float(x.mean())
    return out


def _ms(seconds: float | None) -> float | None:
    return seconds * 1e3 if seconds is not None else None


def summarize(r: SimResult, *, gpus: int, request_overhead_s: float = 0.0, percentile: float = 99,
              max_ttft_ms: float | None = None, max_tpot_ms: float | None = None,
              start_s: float | None = None) -> dict:
    """TTFT, TPOT, ITL and end-to-end percentiles [ms], throughput, goodput and preemptions of a simulated run.

    TTFT = first token - arrival (+ the engine's per-request overhead); TPOT = (finish - first token) / (O - 1);
    ITL: every streamed decode step's duration, weighted by the tokens it streamed; duration = last finish - the
    benchmark's start (start_s: vllm bench serve's clock starts before the first request's gap; None: the first
    arrival)."""
    ok = ~np.isnan(r.finish_s)
    ttft = (r.first_token_s - r.arrival_s + request_overhead_s)[ok]
    e2e = (r.finish_s - r.arrival_s + request_overhead_s)[ok]
    outs, ins = r.output_len[ok], r.input_len[ok]
    multi = outs > 1
    tpot = ((r.finish_s[ok] - r.first_token_s[ok])[multi] / (outs[multi] - 1))
    start = float(np.nanmin(r.arrival_s)) if start_s is None else min(start_s, float(np.nanmin(r.arrival_s)))
    duration = float(np.nanmax(r.finish_s) - start + request_overhead_s)
    out_tok, all_tok = float(outs.sum()), float(outs.sum() + ins.sum())
    res = {
        "completed": int(ok.sum()), "duration_s": duration, "steps": r.steps, "preemptions": r.preemptions,
        "requests_per_s": ok.sum() / duration,
        "output_tokens_per_s": out_tok / duration, "total_tokens_per_s": all_tok / duration,
        "output_tokens_per_s_per_gpu": out_tok / duration / gpus,
        "total_tokens_per_s_per_gpu": all_tok / duration / gpus,
        "ttft_ms": {k: v * 1e3 if v is not None else None for k, v in _pcts(ttft, percentile).items()},
        "tpot_ms": {k: v * 1e3 if v is not None else None for k, v in _pcts(tpot, percentile).items()},
        "e2e_ms": {k: v * 1e3 if v is not None else None for k, v in _pcts(e2e, percentile).items()},
        # with the mean the benchmarks print beside the percentiles (vllm/benchmarks/serve.py calculate_metrics:
        # mean_itl_ms = np.mean(itls); the thirty-eighth audit, servesim 2)
        "itl_ms": {**{f"p{p:g}": _ms(v) for p, v in zip((*PERCENTILES, percentile), weighted_percentiles(
                       r.itl_s, r.itl_weight, [*PERCENTILES, percentile]))},
                   "mean": _ms(float(r.itl_s @ r.itl_weight / r.itl_weight.sum()) if r.itl_weight.sum() > 0
                               else None)},
        "tokens_per_s_per_user": {"mean": float(np.mean(1 / tpot)) if len(tpot) else None},
        "max_waiting": int(r.waiting.max()) if len(r.waiting) else 0,
        "max_running": int(r.running.max()) if len(r.running) else 0,
    }
    if not len(tpot):
        res["tpot_ms_note"] = "every request has one output token: no time per output token"
        res["tokens_per_s_per_user_note"] = res["tpot_ms_note"]
    if max_ttft_ms is not None or max_tpot_ms is not None:
        good = np.ones(ok.sum(), dtype=bool)
        if max_ttft_ms is not None:
            good &= ttft * 1e3 <= max_ttft_ms
        if max_tpot_ms is not None:
            tp = np.zeros(ok.sum())
            tp[multi] = tpot
            good &= tp * 1e3 <= max_tpot_ms
        key = f"p{percentile:g}"
        res["goodput_requests_per_s"] = float(good.sum() / duration)
        res["slo_met_at_percentile"] = bool(
            (max_ttft_ms is None or res["ttft_ms"][key] <= max_ttft_ms)
            and (max_tpot_ms is None or res["tpot_ms"][key] is None or res["tpot_ms"][key] <= max_tpot_ms))
    return res


# ----------------------------------------------------------------------------------------------------------------
# The public entry point
# ----------------------------------------------------------------------------------------------------------------

def simulate(model, gpu="h100-sxm", *, input_len: int | None = None, output_len: int | None = None,
             arrivals: str = "closed", concurrency: float | None = None, request_rate: float | None = None,
             num_prompts: int = 1000, range_ratio: float = 0.0, trace=None, seed: int = 0, tp: int = 1, pp: int = 1,
             ep: int = 1, engine: str = "auto", weight_dtype: str = "auto", kv_dtype: str = "bf16",
             memory_utilization: float = 0.9, step_tokens: int | None = None, max_num_seqs: int | None = None,
             speculate: str | None = None, prefix_hit_rate: float = 0.0, percentile: float = 99,
             max_ttft_ms: float | None = None, max_tpot_ms: float | None = None, burst_size: int | None = None,
             vllm_runner: str = "auto", vllm_version: str = "latest", keep_timeline: bool = False,
             scheduler: str | None = None, length_client: str = "vllm",
             disaggregate: tuple[int, int] | None = None, dataset: str = "random",
             num_scheduler_steps: int = 1, engine_version: str | None = None,
             moe_time_scale: float | None = None, cuda_graph_GiB: float | None = None,
             flashinfer_sampler: bool = False, price_per_gpu_hour: float | None = None, overhead=None,
             schedules_ahead: bool | None = None, profile_file: str | None = None,
             burstiness: float = 1.0, profile=None) -> dict:
    """Simulate num_prompts requests through one replica's scheduler (module docstring) and summarise them.

    arrivals: closed (concurrency in flight), poisson (request_rate; inf: all at once; with concurrency, at most that
    many in flight, as vllm bench serve's --max-concurrency gates them), burst, or trace (a file).
    engine picks the scheduler policy (kvcalc/engines/scheduler.py; auto and roofline run vLLM V1's) as well as the
    step-time profile and the KV pool's memory rule (scheduler, if given, picks the policy alone); step_tokens and
    max_num_seqs override the policy's defaults. length_client: whose --random-range-ratio convention (vllm or sglang
    bench_serving). With ep > tp the ep / tp data-parallel attention groups are pooled into one scheduler with ep / tp
    times the budget, requests and KV pool (their step is StepTimer's expert-parallel step). disaggregate=(P, D): P
    prefill GPUs and D decode GPUs in replicas of tp; requests go round-robin to a prefill replica, their KV cache
    crosses the link (formulas/workload.py transfer_seconds), then round-robin to a decode replica; TTFT is the
    prefill plus the transfer. Open-loop arrivals only (a closed loop couples the pools). dataset: random (the
    lengths above) or sharegpt (length pairs drawn from the published ShareGPT V3 sample; input_len and output_len
    are not needed). num_scheduler_steps: vLLM's --num-scheduler-steps (multi-step scheduling, 0.6-0.7): decode
    steps per scheduler call. engine_version: the release whose overheads and kernel era time the steps
    (engines/overhead.py, engines/kernel_eras.py; default the profile's own); moe_time_scale: the routed experts'
    time factor instead of the era's, overhead: an EngineOverhead instead of the band's (the serving ledger's held-out
    refits). profile_file: an engine profile file in place of the bundled one (calibrate --from-benchmark writes
    one); profile: an EngineProfile object in place of both (the serving ledger's profile refitted without the row's
    organisation), as serve takes it. burstiness: vllm bench serve's --burstiness for Poisson arrivals (gamma gaps
    of that shape, the same mean; the twenty-fifth audit, S3). cuda_graph_GiB, flashinfer_sampler:
    vLLM's memory rule as serve takes them (the third audit: the simulation had ignored them). schedules_ahead: whether
    the scheduler runs a step ahead of the GPU (vLLM --async-scheduling / --no-async-scheduling, SGLang
    --disable-overlap-schedule, TensorRT-LLM disable_overlap_scheduler); None: the engine's default for its release
    (engines/scheduler.py schedules_ahead); never under pp > 1."""
    from kvcalc.serving.closed_form import run_releases

    given_vllm_version = vllm_version  # checked as given: a vLLM flag under auto is still refused
    # a --profile file's engine schedules and sizes the pool; rules: under auto, the engine it times the GPU with
    engine, rules, engine_version, vllm_version = run_releases(profile_file, engine, gpu, vllm_version, engine_version,
                                                               vllm_runner)
    from kvcalc.checks import MAX_TOKENS, MIN_REQUEST_RATE, check_int, check_number, finite, shown_value
    from kvcalc.engines.memory import (
        check_cuda_graph_memory,
        check_flashinfer_sampler,
        check_vllm_runner,
        check_vllm_version,
    )
    from kvcalc.engines.scheduler import POLICIES, VLLM_FULL_SEQUENCE_ADMISSION, VLLM_SCHEDULED, scheduler_policy
    from kvcalc.estimator import time_model_text
    from kvcalc.serving.closed_form import deployment

    check_int("--seed", seed, 0, 2**63 - 1)
    step_given = step_tokens is not None  # kvcalc's own memory rule reserves a given step's activations (deployment)
    from kvcalc.estimator import check_memory_utilization

    check_memory_utilization(memory_utilization)  # as serve checks it (the thirteenth audit, S5, S6: 1.5 had been
    # taken, nan and inf had ended in a traceback)
    if length_client not in ("vllm", "sglang"):  # the thirteenth audit, S7
        raise KvcalcError(f"length_client: expected vllm or sglang, got {length_client!r:.40}")
    check_number("--range-ratio", range_ratio, 0, 1 if length_client == "sglang" else 0.999)  # vLLM: 0 <= r < 1
    check_number("--prefix-hit-rate", prefix_hit_rate, 0, 1)
    if isinstance(percentile, str):  # 'p99' as serve's --percentile and plan spell it (the twenty-eighth audit, F8)
        from kvcalc.option_values import percentile_number

        if (number := percentile_number(percentile)) is None:
            raise KvcalcError(f"--percentile: expected a number such as 99 or p99, got {percentile!r:.40}")
        percentile = number
    check_number("--percentile", percentile, 0, 100, lo_open=True)
    # the limits and the price as serve's closed form checks them (the sixth audit: nan, 0 and -1 had run, and made
    # a goodput of 0; a price of -1 had been dropped without a word)
    for flag, limit in (("--max-ttft-ms", max_ttft_ms), ("--max-tpot-ms", max_tpot_ms)):
        if limit is not None:
            check_number(flag, limit, 0, 1e9, lo_open=True)
    from kvcalc.checks import check_price

    check_price(price_per_gpu_hour)
    # a flag the arrival mode does not read is refused, not dropped (the fifth audit: --arrivals poisson with -n 1
    # ran 46 requests at once, and burst took -n unchecked as its group size)
    unread = {"trace": ("--concurrency", "--request-rate"), "closed": ("--request-rate",)}.get(arrivals, ())
    for flag in unread:
        if {"--concurrency": concurrency, "--request-rate": request_rate}[flag] is not None:
            raise KvcalcError(f"{flag}: not read with --arrivals {arrivals}; leave it out"
                              + ("" if arrivals == "trace" else " or pick the arrivals that use it (closed: "
                                 "--concurrency; poisson: --request-rate, and -n as the most in flight; burst: "
                                 "--request-rate, and -n as its burst size)"))
    check_number("--burstiness", burstiness, 1e-3, 1e3)
    if burstiness != 1.0 and arrivals != "poisson":
        raise KvcalcError(f"--burstiness: shapes Poisson arrivals' gaps (--request-rate), not --arrivals {arrivals}")
    from kvcalc.engines.kernel_eras import asks_latest, flag_release

    if burstiness != 1.0 and length_client == "vllm" and engine == "vllm" and not asks_latest(vllm_version):
        release = flag_release(vllm_version)  # the twenty-seventh audit, F4: vllm bench serve's --burstiness came
        if release is not None and release < (0, 6, 4):  # with PR #10105 (merged 2024-11-07, first in 0.6.4)
            raise KvcalcError(f"--burstiness: vllm bench serve of {vllm_version} has no --burstiness (it came in "
                              "0.6.4, PR #10105); its arrivals are Poisson")
    if arrivals == "trace" and seed != 0:  # the twenty-fifth audit, S6: reported as the run's seed, and unused
        raise KvcalcError("seed: not read with arrivals='trace' (the trace gives every arrival and length)")
    if arrivals == "burst" and concurrency is not None and burst_size is not None and concurrency != burst_size:
        raise KvcalcError(f"burst_size: {burst_size} and concurrency {concurrency:g} both name the burst size; give "
                          "one")  # the twenty-fifth audit, S6: concurrency had been dropped
    if arrivals == "burst":
        for flag, size in (("--concurrency (the burst size)", concurrency), ("burst_size", burst_size)):
            if size is not None:  # the CLI passes -n as a float: 8.0 is 8
                whole = isinstance(size, float) and math.isfinite(size) and size.is_integer()
                check_int(flag, int(size) if whole else size, 1, MAX_PROMPTS)
    if arrivals == "trace":
        if trace is None:
            raise KvcalcError("--arrivals trace: give --trace FILE")
        work = read_trace(trace)
    else:
        if dataset not in ("random", "sharegpt"):
            raise KvcalcError(f"--dataset: expected random or sharegpt, got {shown_value(dataset)}")
        if dataset == "sharegpt":
            input_len = output_len = 1  # unused: the lengths come from the ShareGPT sample
        if input_len is None or output_len is None:
            raise KvcalcError("--input-len / --output-len: needed unless --arrivals trace or --dataset sharegpt")
        check_int("--input-len", input_len, 1, MAX_TOKENS)
        check_int("--output-len", output_len, 1, MAX_TOKENS)
        if isinstance(num_prompts, int) and not isinstance(num_prompts, bool) and num_prompts > MAX_PROMPTS:
            raise KvcalcError(f"--num-prompts: at most {MAX_PROMPTS:,}, the most one simulation runs (about 3 minutes "
                              f"and 2.5 GB), got {num_prompts:,}")
        check_int("--num-prompts", num_prompts, 1, MAX_PROMPTS)
        group = concurrency if arrivals == "closed" else burst_size if arrivals == "burst" and burst_size else (
            concurrency if arrivals == "burst" else None)
        if isinstance(group, (int, float)) and finite(group) and group > num_prompts:  # the fourteenth audit,
            # S4: "closed loop, 100 in flight" where 10 ever ran
            what = "in flight" if arrivals == "closed" else "in a burst"
            raise KvcalcError(f"--concurrency: {group:g} {what} with --num-prompts {num_prompts:,}: at most "
                              f"{num_prompts:,} ever run at once; raise --num-prompts or lower -n")
        if arrivals == "closed":
            if concurrency is None:
                raise KvcalcError("--arrivals closed: give --concurrency (requests in flight)")
            _whole_in_flight(concurrency, "a closed loop keeps whole requests in flight")
        elif arrivals in ("poisson", "burst"):
            if request_rate is None:
                raise KvcalcError(f"--arrivals {arrivals}: give --request-rate")
            if arrivals == "poisson" and concurrency is not None:  # the cap on requests in flight (make_workload)
                _whole_in_flight(concurrency, "a cap on requests in flight is a whole number")
            if request_rate != math.inf:  # inf: all at once; -inf is checked (and refused) as any other number
                check_number("--request-rate", request_rate, 0, 1e9, lo_open=True)
                if request_rate < MIN_REQUEST_RATE:  # MAX_ARRIVAL_S: slower, the arrivals outrun the clock
                    raise KvcalcError(f"--request-rate: at least {MIN_REQUEST_RATE:g} requests/s (one every 11.6 "
                                      f"days) with --simulate, got {request_rate:g}")
        # vllm bench serve rescales its gaps from PR #21108 (merged 2025-07, taken as first released in 0.10); an
        # older vLLM run's client sent its first request at once and the gaps as drawn (the twenty-sixth audit, R5)
        old_client = (length_client == "vllm" and engine == "vllm" and vllm_version.strip().lower() != "latest"
                      and check_vllm_version(vllm_version, engine) < VLLM_RESCALED_ARRIVALS)
        work = make_workload(arrivals, num_prompts, input_len, output_len, concurrency=concurrency,
                             request_rate=request_rate, range_ratio=range_ratio, seed=seed, burst_size=burst_size,
                             client=length_client, dataset=dataset, rescaled=not old_client,
                             burstiness=burstiness)
        span = float(np.nanmax(work.arrival_s if work.schedule is None else work.schedule))
        if span > MAX_ARRIVAL_S:
            raise KvcalcError(f"--request-rate: {num_prompts:,} requests at {request_rate:g}/s arrive over "
                              f"{span:.3g} s; the simulator's clock times a step only to {MAX_ARRIVAL_S:g} s: raise "
                              f"--request-rate or lower --num-prompts")
    check_vllm_runner(vllm_runner, engine)  # the flags as given: auto's memory rule is kvcalc's, not vLLM's
    check_vllm_version(given_vllm_version, engine)
    version = check_vllm_version(vllm_version, rules)  # the release the run's rules follow (rule_engine)
    cuda_graph_bytes = check_cuda_graph_memory(cuda_graph_GiB, engine)
    check_flashinfer_sampler(flashinfer_sampler, engine)
    # flags named as the closed form names them (the fresh audit: --max-num-seqs 0 had been "the KV pool cannot hold
    # the next request", and --weight-dtype bogus "dtype: unknown dtype")
    from kvcalc.checks import MAX_BATCH
    from kvcalc.estimator import check_dtypes

    check_dtypes(weight_dtype, kv_dtype, engine)
    if step_tokens is not None:
        check_int("--step-tokens", step_tokens, 1, MAX_TOKENS)
        from kvcalc.engines.scheduler import check_trtllm_step

        check_trtllm_step(rules, step_tokens)
    if max_num_seqs is not None:
        check_int("--max-num-seqs", max_num_seqs, 1, MAX_BATCH)
    seqs_given = max_num_seqs is not None
    if (scheduler or engine) in VLLM_SCHEDULED and (step_tokens is None or max_num_seqs is None):
        # vllm serve's defaults depend on the GPU and the release (engines/scheduler.py vllm_server_defaults); auto
        # runs vLLM's scheduler, so it takes them too (the thirteenth audit, S2: an A10G had been given the H100's
        # 8,192 tokens and 1,024 sequences)
        from kvcalc.engines.scheduler import vllm_server_defaults
        from kvcalc.specs.catalog import load_gpu

        hw = load_gpu(gpu)
        budget, seqs = vllm_server_defaults(hw.name, hw.visible_memory_bytes / 2**30, version)
        if budget is None:  # before 0.8: the budget serve's closed form takes for the GPU (the thirtieth audit, fuzz
            # 2: the policy's 8,192 had stepped where the closed form, and V0 with chunked prefill, take 2,048)
            from kvcalc.serving.closed_form import default_step_tokens

            budget = default_step_tokens(rules, gpu, vllm_version=vllm_version, engine_version=engine_version)
        step_tokens = step_tokens if step_tokens is not None else budget
        max_num_seqs = max_num_seqs if max_num_seqs is not None else seqs
    if (scheduler or engine) == "sglang" and step_tokens is None:  # by the GPU's memory and the release, shared by the
        # data-parallel attention ranks (the twentieth audit, R4)
        from kvcalc.checks import MAX_GPUS
        from kvcalc.serving.closed_form import default_step_tokens

        for flag, v in (("--tp", tp), ("--ep", ep)):
            check_int(flag, v, 1, MAX_GPUS)
        step_tokens = default_step_tokens("sglang", gpu, engine_version=engine_version,
                                          groups=attention_groups(ep, tp))
    if scheduler == "vllm-v0" and step_tokens is None:
        # V0's SchedulerConfig: max_num_batched_tokens = max(max_model_len, 2048) with chunked prefill off, so a prompt
        # runs whole (the ninth round, S4: the policy's 2,048 had split a 6,000-token prompt in three)
        from kvcalc.specs.catalog import load_model as _load_model

        longest = (model if hasattr(model, "max_position_embeddings") else _load_model(model)).max_position_embeddings
        step_tokens = max(longest or 0, int(work.input_len.max()) + 1, 2048)
    if scheduler is not None and scheduler not in POLICIES:  # named as the argument given (the twenty-eighth
        # audit, F8: it had been "engine x: no scheduler policy")
        raise KvcalcError(f"scheduler: expected one of {', '.join(POLICIES)} or None, got {scheduler!r:.40}")
    policy = scheduler_policy(scheduler or engine, budget=step_tokens, max_seqs=max_num_seqs)
    if policy.name == "vllm-v1" and (engine not in VLLM_SCHEDULED or (
            isinstance(version, tuple) and version >= VLLM_FULL_SEQUENCE_ADMISSION)):
        # a waiting request's whole sequence must fit (the twentieth audit, R1: its first chunk had been enough, and
        # 22 long prompts thrashed where vLLM runs 21); the roofline runs today's vLLM scheduler too (the
        # twenty-eighth audit, serving 1: it had thrashed, 73,122 preemptions, where -e vllm completes)
        policy = replace(policy, full_sequence_admission=True)
    if policy.name == "vllm-v1" and engine in VLLM_SCHEDULED:  # -e auto runs vLLM's (the nineteenth audit, S4)
        from kvcalc.engines.memory import check_vllm_batching

        check_vllm_batching(policy.budget, policy.max_seqs, default=not seqs_given)
    # at least the prompts' tokens over the budget, and the outputs over the most decodes a step holds: refused past
    # MAX_STEPS rather than run for minutes (the third audit: --step-tokens 1 on 20,000 prompts of 8,000 tokens)
    fewest = (float(work.input_len.sum()) / policy.budget
              + float(work.output_len.sum()) / max(min(policy.max_seqs, policy.budget), 1))
    if fewest > MAX_STEPS:
        raise KvcalcError(f"--step-tokens / --num-prompts: these {len(work.input_len):,} requests take at least "
                          f"{fewest:,.0f} steps of at most {policy.budget:,} tokens; the simulator runs at most "
                          f"{MAX_STEPS:,} (about a minute): raise --step-tokens or lower --num-prompts")
    prompt_steps = float(work.input_len.sum()) / policy.budget  # each a scheduler round of its own: past the rounds
    # the run may take, refused now rather than after a minute (the twelfth audit, S5: -n 1 --step-tokens 1)
    if prompt_steps > max(MAX_ROUNDS, 4 * len(work.input_len)):
        raise KvcalcError(f"--step-tokens / --num-prompts: these {len(work.input_len):,} prompts take at least "
                          f"{prompt_steps:,.0f} steps of at most {policy.budget:,} token{'s' * (policy.budget != 1)}, "
                          "each a scheduler round; the "
                          f"simulator runs at most {max(MAX_ROUNDS, 4 * len(work.input_len)):,}: raise --step-tokens "
                          "or lower --num-prompts")
    check_int("--num-scheduler-steps", num_scheduler_steps, 1, 1024)
    if num_scheduler_steps > 1:
        policy = replace(policy, multi_step=num_scheduler_steps)
    # requests longer than the model's context are refused, as the engine refuses them (reported, not truncated),
    # before the pool is sized on the mean length (one 1e8-token request must not make the pool look too small)
    from kvcalc.specs.catalog import load_model

    named = load_model(model)
    limit = named.max_position_embeddings
    too_long = (work.input_len + work.output_len > limit) if limit else np.zeros(len(work.input_len), dtype=bool)
    rejected = int(too_long.sum())
    if rejected:
        if rejected == len(too_long):
            given = f"--trace {trace}" if arrivals == "trace" else "--input-len / --output-len"  # the eleventh, S6
            raise KvcalcError(f"{given}: every request ({rejected:,}) is longer than {named.name}'s context of "
                              f"{limit:,} tokens")
        keep = ~too_long
        concurrency, description = work.concurrency, work.description
        if arrivals == "closed" and concurrency is not None and concurrency > int(keep.sum()):  # what can run at
            # once of those kept (the nineteenth audit, S7: "closed loop, 20 in flight" where 7 requests were left)
            concurrency = int(keep.sum())
            description = f"closed loop, {concurrency} in flight"
        work = Workload(work.arrival_s[keep], work.input_len[keep], work.output_len[keep], concurrency, description,
                        start_s=work.start_s, schedule=None if work.schedule is None else work.schedule[keep])
    mean_in, mean_out = round(work.input_len.mean()), round(work.output_len.mean())
    d = deployment(model, gpu, input_len=mean_in, output_len=max(mean_out, 1), tp=tp, pp=pp, ep=ep, engine=engine,
                   weight_dtype=weight_dtype, kv_dtype=kv_dtype, memory_utilization=memory_utilization,
                   step_tokens=policy.budget, speculate=speculate, vllm_runner=vllm_runner, version=version,
                   cuda_graph_bytes=cuda_graph_bytes, flashinfer_sampler=flashinfer_sampler, disaggregate=disaggregate,
                   engine_version=engine_version, moe_time_scale=moe_time_scale, overhead=overhead,
                   # vLLM's memory rule with the run's max_num_seqs (the tenth audit's verification, V2: sized, and
                   # its step budget checked, at vLLM's default 1,024 where --max-num-seqs 64 was given)
                   max_num_seqs=policy.max_seqs if policy.name.startswith("vllm") else None,
                   profile_file=profile_file, profile=profile,
                   step_given=step_given)
    spec, stepper = d["spec"], d["stepper"]
    if pp > 1:  # every micro-batch formed one by one, a round of about 0.1 ms each: its decode tokens over the requests
        # a micro-batch holds, at most the requests in flight over the stages (the thirty-eighth audit's review, 5:
        # 8 in flight at pp 2 over 2,000 prompts of 2,000 tokens ran 72 s and 293 MB)
        in_flight = min(work.concurrency or policy.max_seqs, policy.max_seqs, len(work.input_len))
        micro_batches = float(np.ceil(work.output_len / stepper.decode_gain).sum()) / max(in_flight / pp, 1.0)
        if micro_batches > MAX_PIPELINE_MICRO_BATCHES:
            raise KvcalcError(f"--pp / --num-prompts: these {len(work.input_len):,} requests take about "
                              f"{micro_batches:,.0f} micro-batches, formed one by one under pipeline stages; the "
                              f"simulator runs at most {MAX_PIPELINE_MICRO_BATCHES:,} (about a minute): lower "
                              "--num-prompts or the output length")
    if policy.name == "sglang" and not seqs_given:  # SGLang's own max_running_requests for this pool and model, 48
        # under EAGLE-family speculation (engines/scheduler.py sglang_max_running; the fourteenth audit, S7 and S8)
        policy = replace(policy, max_seqs=d["max_running"])
    elif policy.name == "sglang":  # a given one clamped to its Mamba slots // 3 (engines/scheduler.py state_slot_cap;
        # the thirty-eighth audit's review, 2: the closed form had clamped it, the simulator not)
        policy = replace(policy, max_seqs=state_slot_cap("sglang", policy.max_seqs, d["state_slots"]))
    # the engine's scheduler runs a step ahead of the GPU where its release does so by default (the twentieth
    # audit, R3: an arrival had entered the step after the one it came in, where the engines take it a step later)
    profile = d["profile"]
    runs = {"vllm-v1": "vllm", "sglang": "sglang", "trtllm": "trtllm"}.get(policy.name)
    if schedules_ahead is not None:
        if not isinstance(schedules_ahead, bool):
            raise KvcalcError(f"schedules_ahead: expected True, False or None, got {schedules_ahead!r:.40}")
        policy = replace(policy, ahead=schedules_ahead and pp == 1)
    elif profile is not None and runs is not None and runs == profile.engine:
        from kvcalc.engines.overhead import band as release_band
        from kvcalc.engines.scheduler import schedules_ahead as default_ahead
        from kvcalc.speculation import parse as parse_speculation

        trt_band = release_band(runs, engine_version, profile.engine_version) if runs == "trtllm" else None
        policy = replace(policy, ahead=default_ahead(
            runs, release=version if isinstance(version, tuple) else None, band=trt_band.name if trt_band else None,
            pp=pp, speculation=parse_speculation(speculate).method if speculate else None))
    if scheduler is None and policy.name == "vllm-v1" and isinstance(version, tuple) and version < VLLM_V1_ENGINE:
        # the release's overheads and MoE era are V0's, its scheduler is not modelled (the sixth audit: the output
        # called such a run "vllm-v1 scheduler" without a word)
        v0_note = ("vLLM releases before 0.8 run the V0 engine, whose scheduler (whole prompts in steps of their own "
                   "unless chunked prefill is on: by default only above a 32K context) is not V1's decode-first token "
                   "budget simulated here; the ledger's V0 rows take scheduler='vllm-v0'")
        import warnings

        from kvcalc.errors import CapacityWarning

        warnings.warn(v0_note, CapacityWarning, stacklevel=2)
    else:
        v0_note = None
    from kvcalc.estimator import unprofiled_operators

    unprofiled = unprofiled_operators(spec, d["hw"], d["profile"], d["weight_dtype"], kv_dtype, tp, pp, ep)
    if unprofiled:  # as estimate and serve say it (the sixth audit)
        import warnings

        from kvcalc.errors import CapacityWarning

        warnings.warn(unprofiled, CapacityWarning, stacklevel=2)
    full = mean_in + mean_out
    # the pool in tokens: what it holds of requests at the mean full length, times that length (exact for attention
    # whose cache grows linearly; sliding windows and linear layers make this the mean length's rate)
    per_request = d["engine_request"] or d["request_bytes"](full)
    # an engine's rule counts a request in whole blocks (TensorRT-LLM's 32 tokens, vLLM's 16: trtllm_request_bytes,
    # vLLM's KV cache groups), as this simulator's blocks of policy.block_size pad it again: its pool is that many
    # padded requests (the fourth audit: 166 against 167 under TensorRT-LLM; the sixth: vLLM's pool 0.35-1.5 % short of
    # capacity's, 3.9 % with a sliding window, and preempting requests the pool holds)
    held = math.ceil(full / policy.block_size) * policy.block_size if d["engine_request"] else full
    pool_tokens = math.floor(d["pool"] / per_request * held)  # whole tokens, as an engine's pool holds them
    if d["engine_request"]:  # in whole blocks, as the engine counts them and capacity reports them (the
        # seventeenth audit, S1: TensorRT-LLM's 129,553 tokens where its 4,048 blocks of 32 hold 129,536)
        pool_tokens = pool_tokens // policy.block_size * policy.block_size
    # a fixed state beside a cache that grows a token at a time (Qwen3-Next's Gated DeltaNet, Jamba's and Nemotron-H's
    # Mamba layers): the pool in the growing cache's tokens, and each request holds its state as state_blocks more
    # (the tenth audit, S13: at the mean request's rate a 60,010-token request the pool holds had been refused, and
    # short requests beside long ones charged too little); the state's share of a request as kvcalc counts it
    state_blocks = 0
    rb = d["request_bytes"]
    fixed = rb(0)
    if fixed > 0 and math.isclose(rb(2 * full) - rb(full), rb(full) - fixed, rel_tol=1e-9):
        share = fixed / rb(full)
        per_token = per_request * (1 - share) / held
        state_blocks = math.ceil(per_request * share / per_token / policy.block_size)
        # the pool in tokens, its state blocks rounded up as each request's are, so that it holds as many requests of
        # the mean length as the engine's rule counts (the eleventh audit, S5: 555 of Nemotron-H's 557 under
        # TensorRT-LLM's 32-token blocks)
        pool_tokens = math.floor(d["pool"] / per_request * (held + state_blocks * policy.block_size))
    dp = attention_groups(ep, tp)
    replica_tokens = pool_tokens  # one data-parallel replica's pool: a request lives in one replica's
    flags = policy  # the scheduler each replica runs, as its flags set it (the output reports these)
    if dp > 1:  # data-parallel attention groups, pooled
        policy = replace(policy, budget=policy.budget * dp, max_seqs=policy.max_seqs * dp, max_piece=policy.budget)
        pool_tokens *= dp
    if work.concurrency is not None:  # the first C go out at once, or under a rate at their times on its schedule
        first_c = min(work.concurrency, len(work.arrival_s))
        work.arrival_s[:] = np.nan
        work.arrival_s[:first_c] = 0.0 if work.schedule is None else work.schedule[:first_c]
    longest = int((work.input_len + work.output_len).max())
    if math.ceil(longest / policy.block_size) + state_blocks > replica_tokens // policy.block_size:
        # against one replica's pool under --ep (the tenth audit, S7: the replicas' pools added together had held a
        # request that no replica can, which the closed form refuses)
        whose = "one data-parallel replica's KV pool" if dp > 1 else "the KV pool"
        state = f" and its {state_blocks * policy.block_size:,}-token state" if state_blocks else ""
        raise KvcalcError(f"{spec.name}: {whose} ({replica_tokens:,.0f} tokens) does not hold one request of "
                          f"{longest:,} tokens{state}; raise --tp")
    pieces = np.unique(np.concatenate([np.minimum(work.input_len, policy.budget), work.input_len % policy.budget]))
    # fixed lengths (and few): their steps exact, and the steps of several whole prompts too, n x a piece (a MoE
    # step is concave in its tokens, and under --ep StepTimer spreads whole prompts over the replicas: the fifteenth
    # audit, S2, a chord 5-14 % slow between the grid's points)
    totals = (np.unique([n * x for x in pieces if x > 0 for n in range(1, MAX_WHOLE_PROMPTS + 1)
                         if n * x <= policy.budget]) if len(pieces) <= 4 else np.array([]))
    exact = np.unique(np.concatenate([pieces, totals])) if len(pieces) <= 32 else ()
    # under pp each step the simulator forms is one micro-batch through the whole depth (simulate_schedule)
    grid = StepGrid(stepper.one_micro_batch() if pp > 1 else stepper, min(policy.max_seqs, len(work.input_len)),
                    longest, policy.budget,
                    prompt_len=group_step_budget(policy.budget, ep, tp) if dp > 1 else None, chunks=exact)
    from kvcalc.engines.overhead import overhead_seconds

    request_s = overhead_seconds(d["profile"])[1]  # once per request, in its TTFT (the step overhead is in the grid)
    if disaggregate is not None:
        res, transfer_ms = _disaggregated(policy, grid, work, d, disaggregate, tp, pool_tokens, prefix_hit_rate,
                                          state_blocks)
    else:
        res = simulate_schedule(policy, grid, work, pool_tokens=pool_tokens, verify_tokens=stepper.decode_q,
                                tokens_per_step=stepper.decode_gain, cut_yields=stepper.decode_yields,
                                prefix_hit_rate=prefix_hit_rate, state_blocks=state_blocks,
                                pipeline_stages=pp, client_overhead_s=request_s)
    gpus = tp * pp if ep == 1 else ep
    if disaggregate is not None:
        gpus = sum(disaggregate)
    out = {
        "model": spec.name, "gpu": d["hw"].name, "engine": policy.name, "tensor_parallel": tp,
        "pipeline_parallel": pp, "expert_parallel": ep, "gpus": gpus,
        "arrivals": work.description, "num_prompts": len(work.input_len), "seed": seed,
        "mean_input_len": float(work.input_len.mean()), "mean_output_len": float(work.output_len.mean()),
        "rejected_over_context": rejected,
        # each replica's, as the flags name them, where --ep pools dp replicas into one scheduler of dp times each
        # (the twelfth audit, S10: the pooled 16,384 and 32 had been reported for --step-tokens 4096 --max-num-seqs 8)
        "step_tokens": flags.budget, "max_num_seqs": flags.max_seqs, "kv_pool_tokens": pool_tokens,
        "schedules_ahead": policy.ahead,
        **summarize(res, gpus=gpus, request_overhead_s=request_s, percentile=percentile,
                    max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms, start_s=work.start_s),
        "request_overhead_ms": request_s * 1e3,
        "cost_per_million_output_tokens": None,
        # what timed the steps, as serve's closed form names it (the sixth audit: no profile, band or MoE factor)
        "time_model": time_model_text(d["profile"], spec),
        # what the closed form's deployment warned of, in the output as serve's closed form carries it (the fifth
        # audit: --format json had them on stderr only)
        "warnings": [*d["notes"], *([v0_note] if v0_note else []), *([unprofiled] if unprofiled else [])],
    }
    if price_per_gpu_hour is not None:
        from kvcalc.formulas.workload import cost_per_million_tokens

        if out["output_tokens_per_s"] > 0:
            out["cost_per_million_output_tokens"] = cost_per_million_tokens(price_per_gpu_hour, gpus,
                                                                            out["output_tokens_per_s"])
    if dp > 1:
        out["data_parallel_replicas"] = dp
        out["data_parallel_note"] = (
            f"--ep {ep} over --tp {tp}: {dp} data-parallel attention replicas, simulated as one scheduler pooling "
            f"them: {policy.budget:,} tokens a step, {policy.max_seqs:,} requests and a KV pool of {pool_tokens:,} "
            f"tokens in all (step_tokens and max_num_seqs are each replica's; kv_pool_tokens and max_running are the "
            f"pooled replicas')")
    if disaggregate is not None:
        out["disaggregate"] = f"{disaggregate[0]}:{disaggregate[1]}"
        out["kv_transfer_ms_mean"] = transfer_ms
    if rejected:
        many = "requests are" if rejected != 1 else "request is"
        out["rejected_over_context_note"] = (f"{rejected:,} {many} longer than the model's context of {limit:,} "
                                             "tokens; the engine refuses them, so they are left out")
        import warnings  # the table shows it too (the third audit: only JSON and CSV had carried it)

        from kvcalc.errors import CapacityWarning

        warnings.warn(out["rejected_over_context_note"], CapacityWarning, stacklevel=2)
        out["warnings"].append(out["rejected_over_context_note"])
    if out["preemptions"] > max(out["completed"], 1):  # the seventh audit, V4: SGLang's simulated pool had thrashed
        # (52,226 preemptions for 80 requests, TPOT 56 s) where vLLM's on the same pool preempted 687 times: SGLang
        # reserves decode room for what it admits (its new-token ratio), which this scheduler does not model
        import warnings

        from kvcalc.errors import CapacityWarning

        thrash = (f"{out['preemptions']:,} preemptions for {out['completed']:,} requests: the KV pool holds fewer of "
                  "these requests than run at once, and each preemption recomputes a request's cache (vLLM: what its "
                  "prefix cache lost of it); the engine's "
                  "own admission control (SGLang's reserve for decode tokens, vLLM's watermark) may preempt less "
                  "than this scheduler does, so its latencies are an upper bound; a smaller --concurrency or "
                  "--max-num-seqs, or more GPUs, avoid it")
        warnings.warn(thrash, CapacityWarning, stacklevel=2)
        out["warnings"].append(thrash)
    # what the deployment serves while it runs: completions over the time it spent in steps (a run's duration holds its
    # idle gaps and the arrivals' own pace: the eleventh audit, S1, had warned of 3.59/s, 10 requests over 2.8 s, for a
    # deployment that serves 12/s)
    served = out["completed"] / res.busy_s if res.busy_s > 0 else math.inf
    if (request_rate is not None and arrivals in ("poisson", "burst") and served < 0.9 * request_rate
            and out["max_waiting"] >= max(2, 0.1 * out["completed"])):  # the tenth audit, S8: no word where one
        # deployment was given a rate several need (TTFT 23 s where serve's 4 replicas give 40 ms)
        import warnings

        from kvcalc.errors import CapacityWarning

        over = (f"{request_rate:g} requests/s arrive where this deployment serves {float(served):.3g}/s: the queue "
                f"grows through the run (up to {out['max_waiting']:,} waiting) and TTFT with it; the simulation runs "
                "one deployment, where serve without --simulate adds the replicas the rate needs")
        warnings.warn(over, CapacityWarning, stacklevel=2)
        out["warnings"].append(over)
    if keep_timeline:
        # each request's TTFT and end-to-end latency as the percentiles count them, the engine's per-request
        # overhead included (the fourteenth audit, S3: the plotted CDFs had sat 9 ms left of the printed table)
        out["timeline"] = {"t_s": res.timeline_s, "waiting": res.waiting, "running": res.running,
                           "ttft_s": res.first_token_s - res.arrival_s + request_s,
                           "e2e_s": res.finish_s - res.arrival_s + request_s}
    return out


def link_queue(ready_s, transfer_s, sender=None, receiver=None):
    """When each KV cache has crossed the links, sent one at a time in the order they are ready (first in, first
    out): a transfer starts when its prompt's prefill ends and both its prefill replica's links (sender) and its
    decode replica's (receiver; -1: none, a request that ends at the prefill pool) are free of the transfers before
    it. sender, receiver: replica indices, by default one sender and no receiver (the ninth audit's S5: prompts
    prefilled in one step had each crossed the links in one transfer's time, as if each had them to itself; the
    twenty-third audit, D2: four prefill replicas had sent one decode GPU 61 GB/s through a 50 GB/s link)."""
    ready_s, transfer_s = np.asarray(ready_s, dtype=float), np.asarray(transfer_s, dtype=float)
    n = len(ready_s)
    sender = np.zeros(n, dtype=np.int64) if sender is None else np.asarray(sender, dtype=np.int64)
    receiver = np.full(n, -1, dtype=np.int64) if receiver is None else np.asarray(receiver, dtype=np.int64)
    sent_free = np.full(int(sender.max()) + 1 if n else 1, -np.inf)
    got_free = np.full(int(receiver.max()) + 1 if n and receiver.max() >= 0 else 1, -np.inf)
    done = np.empty(n)
    for i in np.argsort(ready_s, kind="stable"):
        s, r = sender[i], receiver[i]
        start = max(ready_s[i], sent_free[s], got_free[r] if r >= 0 else -np.inf)
        done[i] = sent_free[s] = start + transfer_s[i]
        if r >= 0:
            got_free[r] = done[i]
    return done


def _disaggregated(policy, grid, work: Workload, d: dict, split: tuple[int, int], tp: int, pool_tokens: float,
                   prefix_hit_rate: float, state_blocks: int = 0):
    """Prefill replicas (round-robin, one output token each), the KV transfers (queued on each prefill replica's
    links and each decode replica's: link_queue), then decode replicas (round-robin,
    prompts already cached); one SimResult of the whole path."""
    from kvcalc.checks import MAX_GPUS, check_int
    from kvcalc.formulas.workload import kv_transfer_seconds

    for flag, gpus in (("--disaggregate (prefill GPUs)", split[0]), ("--disaggregate (decode GPUs)", split[1])):
        check_int(flag, gpus, tp, MAX_GPUS)
        if gpus % tp:
            raise KvcalcError(f"{flag}: {gpus} is not a multiple of --tp {tp}")
    if work.concurrency is not None:
        raise KvcalcError("--disaggregate: with --simulate, open-loop arrivals only (--request-rate or --trace)")
    hw, spec, stepper = d["hw"], d["spec"], d["stepper"]
    n = len(work.input_len)
    transfer = kv_transfer_seconds(spec, hw, work.input_len.astype(float), d["p"].b_kv, tp,  # each request's own
                                   split[0] + split[1])
    finish = np.full(n, np.nan)
    itl_t, itl_w, prefills, decodes = [], [], [], []
    preemptions = steps = 0
    p_rep, d_rep = split[0] // tp, split[1] // tp
    ones = np.ones(n, dtype=np.int64)
    prefilled = np.full(n, np.nan)  # when each prompt's prefill (its first token) ends
    for r in range(p_rep):
        idx = np.arange(r, n, p_rep)
        sub = Workload(work.arrival_s[idx], work.input_len[idx], ones[idx])
        # TensorRT-LLM's context servers run without the overlap scheduler (engines/launch.py writes it off)
        res = simulate_schedule(replace(policy, ahead=policy.ahead and policy.name != "trtllm"), grid, sub, pool_tokens=pool_tokens, prefix_hit_rate=prefix_hit_rate,
                                state_blocks=state_blocks)
        prefilled[idx] = res.first_token_s
        preemptions += res.preemptions
        steps += res.steps
        prefills.append(res)
    index = np.arange(n)
    first = link_queue(prefilled, transfer, index % p_rep, np.where(work.output_len > 1, index % d_rep, -1))
    handed = disaggregated_first_token(policy.name)
    for r in range(d_rep):
        idx = np.arange(r, n, d_rep)
        # a request done at its first token leaves at the prefill pool: no decode-pool admission, step or ITL (the
        # twelfth audit, S8: 50 one-token requests had run 50 decode steps and reported a 7.32 ms ITL)
        idx = idx[work.output_len[idx] > 1]
        if not len(idx):
            continue
        idx = idx[np.argsort(first[idx], kind="stable")]
        sub = Workload(first[idx], work.input_len[idx], work.output_len[idx], prefilled=True, first_token=handed)
        res = simulate_schedule(policy, grid, sub, pool_tokens=pool_tokens, verify_tokens=stepper.decode_q,
                                tokens_per_step=stepper.decode_gain, cut_yields=stepper.decode_yields,
                                state_blocks=state_blocks)
        finish[idx] = res.finish_s
        if handed != "arrival":  # the client's first token comes from the decode replica
            first[idx] = res.first_token_s
        preemptions += res.preemptions
        steps += res.steps
        itl_t.append(res.itl_s)
        itl_w.append(res.itl_weight)
        decodes.append(res)
    one_token = work.output_len <= 1
    finish[one_token] = first[one_token]  # its answer once its KV (and first token) has left the prefill replica
    # the deployment's timeline: requests waiting in every replica's queue (the twenty-third audit, D3: a decode pool
    # that cannot keep up had shown none waiting, and no warning), running in every replica of either pool (the ninth
    # round, S9: the first decode replica's alone, max_waiting 0 while requests waited 12 s
    # for prefill; the twelfth audit, S8: the prefill replicas' left out, max_running 0 for 50 one-token requests)
    times = np.unique(np.concatenate([r.timeline_s for r in prefills + decodes]))

    def total(results, field):
        out = np.zeros(len(times))
        for r in results:
            if len(r.timeline_s):
                at = np.searchsorted(r.timeline_s, times, side="right") - 1
                out += np.where(at >= 0, getattr(r, field)[np.maximum(at, 0)], 0)
        return out

    # what the deployment serves while busy: the slower pool's completions over its replicas' busy time, so simulate()
    # warns of a rate it cannot keep up with (the twelfth audit, S1: no busy time, and no warning with 369 waiting)
    def pool_rate(results) -> float:
        rates = [len(r.input_len) / r.busy_s for r in results if r.busy_s > 0]
        return sum(rates) if rates else math.inf

    slowest = min(pool_rate(prefills), pool_rate(decodes))
    out = SimResult(work.arrival_s, first, finish, work.input_len, work.output_len, preemptions,
                    np.concatenate(itl_t) if itl_t else np.empty(0), np.concatenate(itl_w) if itl_w else np.empty(0),
                    times, total(prefills + decodes, "waiting"), total(prefills + decodes, "running"), steps,
                    busy_s=n / slowest if math.isfinite(slowest) else 0.0)
    return out, float(transfer.mean() * 1e3)
