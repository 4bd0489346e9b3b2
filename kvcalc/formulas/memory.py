"""Device memory a workload needs, against what the device offers (per GPU of a tensor-parallel group of tp).

required = weights / tp (+ what every GPU keeps whole) + KV cache of B sequences at max(S, P) tokens * kv shard
           + activation reserve / tp
usable   = capacity * utilisation (default 0.9, as vLLM's gpu_memory_utilization)
The activation reserve is the workspace of one prefill chunk (default 8192 tokens), whatever the batch: engines
prefill in chunks of at most max_num_batched_tokens and reserve that peak once (vLLM's profiling run does). Every
command (estimate, compare, sweep, capacity) uses this one rule, so they agree on what fits.
"""

from __future__ import annotations

import math

from kvcalc.formulas._array import maximum
from kvcalc.formulas.parallel import sequence_bytes_per_gpu
from kvcalc.formulas.params import attention_in_linears, weight_bytes_per_gpu
from kvcalc.specs.model import ModelSpec

DEFAULT_MEMORY_UTILIZATION = 0.9
DEFAULT_PREFILL_CHUNK = 8192  # tokens of one prefill chunk held in flight (vLLM's max_num_batched_tokens order)
LOGITS_BYTES = 4  # fp32 logits


def activation_workspace_bytes(model: ModelSpec, batch, prompt, b_a: float):
    """Largest live activations of one layer during prefill [B]: the residual stream and its normed copy
    (2d), the widest projection output (q,k,v or the MLP's up projection), and fp32 logits for B rows.
    An estimate of the peak, not a measurement; engines that chunk prefill need less."""
    d = model.hidden_size
    qkv = sum(x.out_features for x in attention_in_linears(model.attention, d))
    up = 2 * model.mlp.intermediate_size if model.mlp.kind == "gated" else model.mlp.intermediate_size
    if model.moe is not None:
        up = max(up, 2 * model.moe.expert_intermediate_size * model.moe.top_k)
    return batch * prompt * (2 * d + max(qkv, up)) * b_a + batch * model.vocab_size * LOGITS_BYTES


def activation_reserve_bytes(model: ModelSpec, prefill_chunk: int, b_a: float, tp: int = 1) -> float:
    """Activations one GPU reserves: the workspace of one prefill chunk, split over tp [B]."""
    return activation_workspace_bytes(model, 1, prefill_chunk, b_a) / tp


def replica_batch(batch, ep: int, tp: int):
    """Sequences the fullest data-parallel replica holds under expert parallelism [sequences]:
    ceil(batch / dp) with dp = ep / tp attention replicas of tp GPUs (a sequence lives in one replica, whole);
    batch itself when ep = 1. Takes a number or a numpy array (sweep)."""
    if ep <= 1:
        return batch
    dp = max(ep // tp, 1)
    if isinstance(batch, (int, float)):
        return -(-batch // dp) if isinstance(batch, int) else float(math.ceil(batch / dp))
    import numpy as np

    return np.ceil(np.asarray(batch) / dp)


def memory_required(model: ModelSpec, batch, context, prompt, b_w: float, b_kv: float, b_a: float, tp: int = 1,
                    prefill_chunk: int = DEFAULT_PREFILL_CHUNK, pp: int = 1, ep: int = 1) -> dict:
    """Bytes one GPU needs by component, with 'total' (tp = pp = 1: the whole model on one device; with pipeline
    stages, the heaviest stage's weights and KV cache; with expert parallelism over ep GPUs, 1 / ep of the routed
    experts and the KV of the ceil(batch / (ep / tp)) whole sequences its fullest data-parallel replica holds)."""
    local = replica_batch(batch, ep, tp)
    out = {
        "weights": weight_bytes_per_gpu(model, b_w, tp, pp, ep),
        "kv_cache": local * sequence_bytes_per_gpu(model, maximum(context, prompt), b_kv, tp, pp),
        "activations": activation_reserve_bytes(model, prefill_chunk, b_a, tp),
    }
    out["total"] = out["weights"] + out["kv_cache"] + out["activations"]
    return out
