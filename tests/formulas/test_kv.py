"""KV cache per token: golden numbers from shared/data/reference-figures.md (sources cited per test)."""

import pytest

from kvcalc.formulas.kv import (
    kv_bytes_per_sequence,
    kv_bytes_per_token,
    kv_elements_per_token_per_layer,
)
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_model

BF16 = 2


def test_deepseek_v2_mla_caches_576_elements_per_layer_and_34560_per_token():
    # DeepSeek-V2 paper, Table 1 / section 2.1: (d_c + d_h^R) = 512 + 64 = 576 per layer; 60 layers -> 34,560.
    m = load_model("deepseek-v2")
    assert kv_elements_per_token_per_layer(m.attention) == 576
    assert kv_bytes_per_token(m, 1) == 34_560


def test_deepseek_v2_mla_equals_gqa_with_2_25_groups():
    # DeepSeek-V2 paper: MLA's cache "is equal to GQA with only 2.25 groups": 2 * 2.25 * d_h(128) = 576.
    m = load_model("deepseek-v2")
    assert kv_elements_per_token_per_layer(m.attention) == 2 * 2.25 * 128


def test_deepseek_v2_as_mha_would_cache_1966080_elements_per_token():
    # DeepSeek-V2 paper, Table 1: MHA 2 n_h d_h l = 2 * 128 * 128 * 60 = 1,966,080.
    m = rewrite_attention(load_model("deepseek-v2"), "mha")
    assert kv_bytes_per_token(m, 1) == 1_966_080


@pytest.mark.parametrize(
    "attn, kv_heads",
    [(None, 2), ("gqa8", 8), ("mqa", 1), ("mha", 32)],
)
def test_chatglm2_kv_per_token_as_shipped_and_rewritten(attn, kv_heads):
    # chatglm2-6b config.json: 28 layers, multi_query_group_num 2, kv_channels 128; bf16 2 bytes.
    m = rewrite_attention(load_model("chatglm2-6b"), attn)
    assert kv_bytes_per_token(m, BF16) == 2 * kv_heads * 128 * 28 * BF16


@pytest.mark.parametrize(
    "name, layers, kv_heads, head_dim",
    [
        # reference-figures.md model table (from each model's config.json)
        ("llama-2-7b", 32, 32, 128),
        ("llama-2-13b", 40, 40, 128),
        ("llama-2-70b", 80, 8, 128),
        ("llama-3-8b", 32, 8, 128),
        ("llama-3.1-70b", 80, 8, 128),
        ("llama-3.1-405b", 126, 8, 128),
        ("qwen2-7b", 28, 4, 128),
        ("qwen2.5-72b", 80, 8, 128),
        ("gemma-2-9b", 42, 8, 256),
        ("falcon-7b", 32, 1, 64),
        ("falcon-40b", 60, 8, 64),
    ],
)
def test_kv_bytes_per_token_of_reference_rows(name, layers, kv_heads, head_dim):
    assert kv_bytes_per_token(load_model(name), BF16) == 2 * kv_heads * head_dim * layers * BF16


def test_mistral_7b_caches_131_kb_per_token_in_fp16():
    # zeux, "LLM inference speed of light": 32 * 128 * 8 * 2 = 65,536 elements = 131 KB in fp16.
    m = load_model("mistral-7b")
    assert kv_bytes_per_token(m, 1) == 65_536
    assert kv_bytes_per_token(m, 2) == 131_072


def test_command_r_cache_is_1_3_mb_per_token_5_3_gb_at_4k_and_260_gb_at_200k():
    # zeux: Command-R 40 * 128 * 64 * 2 = 655K elements = 1.3 MB/token fp16; 4K ctx 5.3 GB; 200K ctx 260 GB.
    m = load_model("command-r")
    assert kv_bytes_per_token(m, 2) == 1_310_720
    assert kv_bytes_per_sequence(m, 4096, 2) / 1e9 == pytest.approx(5.37, abs=0.01)
    assert kv_bytes_per_sequence(m, 200_000, 2) / 1e9 == pytest.approx(262, rel=0.01)


def test_sliding_window_layers_stop_growing_at_the_window():
    # Mistral 7B v0.1: every layer slides over 4096 tokens, so 8192 tokens cost what 4096 do.
    m = load_model("mistral-7b")
    assert kv_bytes_per_sequence(m, 8192, 2) == kv_bytes_per_sequence(m, 4096, 2) == 4096 * 131_072


def test_gemma2_alternating_window_caches_half_the_layers_up_to_4096():
    # Gemma 2: 42 layers alternate local (window 4096) and global; per layer 2 * 8 * 256 * 2 B = 8192 B.
    m = load_model("gemma-2-9b")
    assert kv_bytes_per_sequence(m, 8192, 2) == 8192 * (21 * 8192 + 21 * 4096)


def test_kv_formulas_take_numpy_arrays():
    np = pytest.importorskip("numpy")
    m = load_model("gemma-2-9b")
    contexts = np.array([1024, 4096, 8192])
    expected = [kv_bytes_per_sequence(m, int(s), 2) for s in contexts]
    assert list(kv_bytes_per_sequence(m, contexts, 2)) == expected
