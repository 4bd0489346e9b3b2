"""--attn what-if rewrites."""

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.formulas.kv import kv_elements_per_token_per_layer
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_model


def test_mla_rewrite_uses_deepseek_v2_proportions():
    # d_c = 4 d_h = 512, d_r = d_h / 2 = 64 for d_h = 128: the DeepSeek-V2 shape, 576 elements per layer.
    a = rewrite_attention(load_model("llama-3-8b"), "mla").attention
    assert (a.kind, a.kv_lora_rank, a.qk_rope_head_dim, a.num_heads) == ("mla", 512, 64, 32)
    assert kv_elements_per_token_per_layer(a) == 576


def test_mla_rewrite_takes_explicit_latent_sizes():
    a = rewrite_attention(load_model("llama-3-8b"), "mla", kv_lora_rank=256, rope_dim=32).attention
    assert kv_elements_per_token_per_layer(a) == 288


@pytest.mark.parametrize("attn, kind, g", [("gqa1", "mqa", 1), ("gqa32", "mha", 32), ("gqa-4", "gqa", 4)])
def test_gqa_n_names_the_kv_heads(attn, kind, g):
    a = rewrite_attention(load_model("llama-2-7b"), attn).attention
    assert (a.kind, a.num_kv_heads, a.head_dim) == (kind, g, 128)


def test_mla_to_mha_keeps_the_per_head_width():
    a = rewrite_attention(load_model("deepseek-v2"), "mha").attention
    assert (a.kind, a.num_kv_heads, a.head_dim) == ("mha", 128, 128)


@pytest.mark.parametrize(
    "attn, kwargs, message",
    [
        ("gqa5", {}, "--attn: gqa5 needs N to divide the 32 query heads"),
        ("gqa0", {}, "--attn: gqa0 needs N to divide"),
        ("sparse", {}, "--attn: unknown attention 'sparse'"),
        ("mha", {"kv_lora_rank": 64}, "--kv-lora-rank and --rope-dim only apply to --attn mla"),
        (None, {"rope_dim": 64}, "--kv-lora-rank and --rope-dim need --attn mla"),
        ("mla", {"rope_dim": 0}, "--rope-dim: expected a whole number from 1 to 1,000,000, got 0"),
    ],
)
def test_bad_rewrites_name_the_flag(attn, kwargs, message):
    with pytest.raises(KvcalcError, match=message.replace("(", r"\(")):
        rewrite_attention(load_model("llama-2-7b"), attn, **kwargs)
