"""KV cache size.

Per token and layer (DeepSeek-V2 paper, Table 1):
    MHA / GQA / MQA:  2 * g * d_h * b_kv          (K and V, g KV heads of d_h)
    MLA:              (d_c + d_r) * b_kv          (one latent of d_c plus one shared RoPE key of d_r)
    int4: 0.5 B a value and a bf16 scale per started 128 values of each K or V head vector (or MLA latent)
    + d_I + 4 with DeepSeek sparse attention (V3.2): the indexer's fp8 key and its fp32 scale; an 8-bit cache of
      it is FlashMLA's sparse fp8 record, d_c + 4 d_c / 128 + 2 d_r (kv_bytes_per_token_per_layer)
Sliding-window layers hold min(S, window) tokens; global layers hold S. Linear-attention layers of a hybrid model
hold a fixed state instead (LinearAttentionSpec.state_elements, in the model's dtype: linear_state_bytes), whatever
the context: "cache and state per sequence".
"""

from __future__ import annotations

import math

from kvcalc.dtypes import BYTES_PER_ELEMENT, INT4_GROUP_SIZE
from kvcalc.formulas._array import minimum
from kvcalc.specs.model import AttentionSpec, ModelSpec


def kv_elements_per_token_per_layer(attn: AttentionSpec) -> int:
    """Elements one token leaves in one layer's cache: 2*g*d_h, or d_c + d_r for MLA."""
    if attn.kind == "mla":
        return attn.kv_lora_rank + attn.qk_rope_head_dim
    return 2 * attn.num_kv_heads * attn.head_dim


INDEXER_SCALE_BYTES = 4  # one fp32 scale per 128-wide fp8 indexer key (DeepSeek-V3.2)


def indexer_bytes_per_token_per_layer(attn: AttentionSpec) -> float:
    """DeepSeek sparse attention's lightning-indexer key: indexer_head_dim fp8 values and an fp32 scale [B]; 0
    without one. Stored in fp8 whatever the main cache's dtype."""
    return 0.0 if attn.indexer_head_dim is None else attn.indexer_head_dim + INDEXER_SCALE_BYTES


SPARSE_FP8_TILE = 128  # FlashMLA's sparse fp8 latent: one fp32 scale per 128 values (DeepSeek-V3.2)


def kv_bytes_per_token_per_layer(attn: AttentionSpec, kv_bytes: float, record: bool = True) -> float:
    """Bytes one token leaves in one layer's cache [B] (with sparse attention, its indexer key too).

    DeepSeek sparse attention with an 8-bit cache stores FlashMLA's sparse fp8 record, not d_c + d_r fp8 values: the
    d_c latent in fp8, one fp32 scale per 128 of them, and the d_r RoPE key left in bf16, 512 + 16 + 128 = 656 B for
    DeepSeek-V3.2 (vLLM v1/attention/backends/mla/flashmla_sparse.py get_kv_cache_shape, 'fp8_ds_mla': "custom
    storage format is 656 bytes, see FlashMLA readme"; vLLM switches any fp8 cache of these models to it). The sixth
    audit: 708 B a token and layer with the indexer where vLLM holds 788. record=False: the plain d_c + d_r count,
    which SGLang budgets its pool with though it stores the record (model_runner.py profile_max_num_token's cell
    size: (kv_lora_rank + qk_rope_head_dim) x element size, plus the indexer's index_head_dim + index_head_dim / 128
    x 4 for NSA models)."""
    if record and attn.kind == "mla" and attn.sparse_top_k is not None and kv_bytes == 1:
        d_c = attn.kv_lora_rank
        latent = d_c + math.ceil(d_c / SPARSE_FP8_TILE) * 4 + attn.qk_rope_head_dim * 2
        return latent + indexer_bytes_per_token_per_layer(attn)
    if record and attn.kind == "mla" and attn.sparse_top_k is not None and kv_bytes == BYTES_PER_ELEMENT["nvfp4"]:
        # vLLM's 'nvfp4_ds_mla' record (flashmla_sparse.py, SM100 only): the d_c latent in e2m1, two a byte, one fp8
        # scale per 16 of them, and the d_r RoPE key in fp8 with no scale: 256 + 32 + 64 = 352 B for DeepSeek-V3.2.
        # The thirtieth audit, F2: all 576 values had been priced at 0.5 + 1/16 B (324 B)
        d_c = attn.kv_lora_rank
        return d_c / 2 + d_c / 16 + attn.qk_rope_head_dim + indexer_bytes_per_token_per_layer(attn)
    if kv_bytes == BYTES_PER_ELEMENT["int4"]:
        return int4_kv_bytes_per_token_per_layer(attn) + indexer_bytes_per_token_per_layer(attn)
    return kv_elements_per_token_per_layer(attn) * kv_bytes + indexer_bytes_per_token_per_layer(attn)


def int4_kv_bytes_per_token_per_layer(attn: AttentionSpec) -> float:
    """An int4 cache [B]: packed 4-bit values and one bf16 scale per started group of INT4_GROUP_SIZE values of each
    vector it quantises, K and V head by head (2 g vectors of d_h) or MLA's one latent of d_c + d_r. The thirteenth
    audit, E6: a scale per 128 elements had been priced pro rata, half a scale for a 64-wide head and 4.5 for
    DeepSeek-V3's 576-wide latent (297 B a layer where its five scales make 298)."""
    if attn.kind == "mla":
        vectors, width = 1, attn.kv_lora_rank + attn.qk_rope_head_dim
    else:
        vectors, width = 2 * attn.num_kv_heads, attn.head_dim
    return vectors * (width * 0.5 + math.ceil(width / INT4_GROUP_SIZE) * 2)


def kv_bytes_per_token(model: ModelSpec, kv_bytes: float) -> float:
    """Bytes one token leaves across the attention layers while it is inside every window [B]: layers * per-layer
    (a hybrid model's linear layers keep no per-token cache)."""
    return model.attention_layers * kv_bytes_per_token_per_layer(model.attention, kv_bytes)


# Engines keep the recurrent (Mamba, DeltaNet, linear-attention) state in the model's dtype whatever the KV cache's
# (Nemotron-H's recurrent matrices in float32: LinearAttentionSpec.recurrent_state_bytes):
# vLLM's mamba_cache_dtype 'auto' is the model dtype, set apart from kv_cache_dtype (vllm/config/cache.py); TensorRT-
# LLM's mamba_ssm_cache_dtype offers no fp8. So a bf16 state under an fp8, int8, int4 or nvfp4 cache; an fp32 cache
# (an fp32 model) keeps an fp32 state (the fresh audit: --kv-dtype fp8 had halved Nemotron-H's state, 3,453 requests
# where vLLM's rule holds 1,944).
STATE_MIN_BYTES = 2


def linear_state_bytes(model: ModelSpec, kv_bytes: float, tp: int = 1) -> float:
    """Bytes of one sequence's linear-attention state over all linear layers [B], at max(b_kv, 2): the model's dtype
    (STATE_MIN_BYTES); 0 without such layers. tp: one GPU's share of it (LinearAttentionSpec.state_bytes)."""
    la = model.linear_attention
    return 0.0 if la is None else model.linear_layers * la.state_bytes(max(kv_bytes, STATE_MIN_BYTES), tp)


def cached_tokens(context, window: int | None):
    """Tokens a layer keeps at context S: S, or min(S, window) for a sliding-window layer."""
    return context if window is None else minimum(context, window)


def kv_bytes_per_sequence(model: ModelSpec, context, kv_bytes: float, record: bool = True):
    """Bytes one sequence at context S holds [B]: per-layer * (global_layers * S + window_layers * min(S, W)), plus
    the linear layers' fixed state (record: kv_bytes_per_token_per_layer's)."""
    per_layer = kv_bytes_per_token_per_layer(model.attention, kv_bytes, record)
    window = model.attention.sliding_window
    tokens = model.global_layers * context + model.window_layers * cached_tokens(context, window)
    return per_layer * tokens + linear_state_bytes(model, kv_bytes)
