"""How many sequences, and how long a context, fit beside the weights.

per-GPU budget = capacity * utilisation - weights / tp - activation reserve / tp (formulas/memory.py)
max sequences at context S = floor(budget / (kv per sequence at S * kv shard))
max context at batch B: the largest S whose B sequences fit (sliding-window layers stop growing at W).
"""

from __future__ import annotations

import math

from kvcalc.formulas.kv import kv_bytes_per_token_per_layer, linear_state_bytes
from kvcalc.formulas.parallel import (
    kv_shard_fraction,
    sequence_bytes_per_gpu,
    stage_layer_fraction,
)
from kvcalc.specs.model import ModelSpec


def kv_budget_bytes(usable_bytes: float, weight_bytes: float, activation_bytes: float, tp: int = 1) -> float:
    """Bytes one GPU has left for the KV cache [B]; weight_bytes and activation_bytes are the tp group's (with
    pipeline stages, pass the heaviest stage's weights x tp)."""
    return usable_bytes - weight_bytes / tp - activation_bytes / tp


def max_sequences(model: ModelSpec, context: int, budget_bytes: float, b_kv: float, tp: int = 1, pp: int = 1) -> int:
    """floor(budget / per-GPU KV of one sequence at S); 0 when nothing fits."""
    per_seq = sequence_bytes_per_gpu(model, context, b_kv, tp, pp)
    if budget_bytes <= 0:
        return 0
    return math.floor(budget_bytes / per_seq) if per_seq else 0


def longest_fitting(fits, limit: int) -> float:
    """The largest whole length n >= 1 with fits(n), for a test that holds up to some length and fails beyond it
    (a request's memory never shrinks as it grows): 0 where fits(1) fails, inf where the first power of two at or past
    `limit` still fits (only windowed layers or fixed state grow, and they stop). Doubling, then bisection: about
    2 log2(n) calls of fits."""
    hi = 1
    while fits(hi):
        if hi >= limit:
            return math.inf
        hi *= 2
    if hi == 1:
        return 0
    lo = hi // 2
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def max_context(model: ModelSpec, batch: int, budget_bytes: float, b_kv: float, tp: int = 1, pp: int = 1) -> float:
    """Largest S with batch * per-GPU KV(S) <= budget; inf when only windowed layers grow and they are capped."""
    if budget_bytes <= 0:
        return 0
    stage = stage_layer_fraction(model, pp)
    per_layer = kv_bytes_per_token_per_layer(model.attention, b_kv) * kv_shard_fraction(model, tp) * stage
    state = linear_state_bytes(model, b_kv, tp) * stage  # a hybrid's fixed state first, one GPU's share
    if budget_bytes / batch <= state:
        return 0
    if model.attention_layers == 0:
        return math.inf  # only fixed state: any context fits
    tokens = (budget_bytes / batch - state) / per_layer  # layer-tokens one sequence may hold
    lg, lw, w = model.global_layers, model.window_layers, model.attention.sliding_window
    if lw == 0 or tokens <= model.attention_layers * w:
        return math.floor(tokens / model.attention_layers)
    if lg == 0:
        return math.inf
    return math.floor((tokens - lw * w) / lg)
