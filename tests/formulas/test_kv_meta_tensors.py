"""The KV cache formula against real cache tensors built on torch's meta device (no memory allocated).

Layouts are those of the engines: standard attention keeps K and V as [B, g, S, d_h] per layer
(HF DynamicCache); MLA keeps one compressed latent plus the shared RoPE key, [B, S, d_c + d_r] per layer
(DeepSeek-V2 reference code / vLLM's MLA cache). Sliding-window layers keep the last `window` tokens.
"""

import pytest

from kvcalc.estimator import estimate

torch = pytest.importorskip("torch")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.float8_e4m3fn, "fp32": torch.float32}


def cache_nbytes(model, batch: int, context: int, dtype) -> int:
    a, total = model.attention, 0
    for layer in range(model.num_layers):
        is_global = a.sliding_window is None or (a.global_every is not None and (layer + 1) % a.global_every == 0)
        tokens = context if is_global else min(context, a.sliding_window)
        if a.kind == "mla":
            latent = torch.empty(batch, tokens, a.kv_lora_rank + a.qk_rope_head_dim, dtype=dtype, device="meta")
            total += latent.nbytes
        else:
            k = torch.empty(batch, a.num_kv_heads, tokens, a.head_dim, dtype=dtype, device="meta")
            v = torch.empty(batch, a.num_kv_heads, tokens, a.head_dim, dtype=dtype, device="meta")
            total += k.nbytes + v.nbytes
    return total


@pytest.mark.parametrize(
    "name, attn, batch, context, kv_dtype",
    [
        ("chatglm2-6b", None, 3, 4096, "bf16"),
        ("chatglm2-6b", "gqa8", 2, 1000, "bf16"),
        ("llama-3-8b", None, 8, 8192, "fp8"),
        ("falcon-7b", None, 4, 2048, "fp16"),
        ("deepseek-v2-lite", None, 5, 3000, "bf16"),
        ("deepseek-v3", None, 1, 4096, "fp8"),
        ("mistral-7b", None, 2, 10000, "bf16"),
        ("gemma-2-9b", None, 2, 6000, "bf16"),
        ("qwen2-7b", "mla", 2, 512, "bf16"),
    ],
)
def test_kv_cache_bytes_match_meta_tensors(name, attn, batch, context, kv_dtype):
    from kvcalc.rewrite import rewrite_attention
    from kvcalc.specs.catalog import load_model

    spec = rewrite_attention(load_model(name), attn)
    e = estimate(spec, batch=batch, context=context, kv_dtype=kv_dtype)
    assert e.kv_cache.bytes == cache_nbytes(spec, batch, context, DTYPES[kv_dtype])
