"""Parameter counts: published totals (within 2 %), and an independent count of torch modules on the meta device."""

import pytest

from kvcalc.formulas.params import active_params, params_breakdown, total_params
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_model


@pytest.mark.parametrize(
    "name, published_total, published_active",
    [
        ("llama-2-7b", 6.74e9, None),  # Llama 2 paper / model card
        ("llama-3-8b", 8.03e9, None),  # Llama 3 model card
        ("mixtral-8x7b", 46.7e9, 12.9e9),  # "Mixtral of experts": 46.7B total, 12.9B active
        ("deepseek-v2", 236e9, 21e9),  # DeepSeek-V2 paper: 236B total, 21B activated
        ("deepseek-v3", 671e9, 37e9),  # DeepSeek-V3 report: 671B total, 37B activated
        ("qwen3-235b-a22b", 235e9, 22e9),  # Qwen3 technical report: 235B total, 22B activated
        ("qwen3-30b-a3b", 30.5e9, 3.3e9),  # Qwen3 technical report: 30.5B total, 3.3B activated
        ("qwen3-235b-a22b-2507", 235e9, 22e9),  # the 2507 releases keep the layout
        ("qwen3-30b-a3b-2507", 30.5e9, 3.3e9),
        ("deepseek-r1-distill-qwen-14b", 14.7e9, None),  # Qwen2.5 report, Table 1: Qwen2.5-14B, 14.7B
        ("llama-3.2-1b", 1.23e9, None),  # Llama 3.2 model card
        ("gemma-3-27b", 1416e6 + 25600e6, None),  # Gemma 3 report, Table 1: embedding + non-embedding (text)
        ("llama-4-scout", 109e9, 17e9),  # Llama 4 model card (the vision encoder is not modelled)
    ],
)
def test_parameter_totals_within_2_percent_of_published(name, published_total, published_active):
    m = load_model(name)
    assert total_params(m) == pytest.approx(published_total, rel=0.02)
    if published_active:
        assert active_params(m) == pytest.approx(published_active, rel=0.02)


def test_qwen3_dense_models_counted_by_hand_and_against_their_cards():
    """Qwen3 dense layers by hand: q (d x 128 H), k and v (d x 128 KV each), o (128 H x d), q_norm and k_norm (128
    each), gate/up/down (3 d I), two norms (2 d); plus the embedding, the lm_head unless tied, the final norm.
    Model cards: Qwen3-0.6B 0.44B non-embedding; Qwen3-32B 32.8B total, 31.2B non-embedding; vLLM 0.27.1 logs
    Qwen3-32B's checkpoint as 61.02 GiB (kubesimplify's two-GPU post)."""
    def by_hand(d, layers, heads, kv, inter, vocab, tied):
        layer = d * 128 * heads * 2 + d * 128 * kv * 2 + 2 * 128 + 3 * d * inter + 2 * d
        return layers * layer + vocab * d * (1 if tied else 2) + d, layers * layer + d

    for name, dims, non_embedding in (("qwen3-0.6b", (1024, 28, 16, 8, 3072, 151936, True), 0.44e9),
                                      ("qwen3-32b", (5120, 64, 64, 8, 25600, 151936, False), 31.2e9)):
        total, body = by_hand(*dims)
        m = load_model(name)
        assert total_params(m) == total
        assert body == pytest.approx(non_embedding, rel=0.01)
    assert total_params(load_model("qwen3-32b")) == pytest.approx(32.8e9, rel=0.002)
    assert total_params(load_model("qwen3-32b")) * 2 / 1024**3 == pytest.approx(61.02, abs=0.005)


def test_dense_model_active_equals_total():
    m = load_model("llama-3-8b")
    assert active_params(m) == total_params(m)


def test_gqa_rewrite_changes_only_the_kv_projections():
    # chatglm2-6b has 2 KV groups with q,k,v biases; gqa8 adds 6 groups of K and V (4096 x 128 each, + bias).
    m = load_model("chatglm2-6b")
    before = params_breakdown(m)["attention/qkv"]
    after = params_breakdown(rewrite_attention(m, "gqa8"))["attention/qkv"]
    assert after - before == 28 * 2 * 6 * (4096 * 128 + 128)


torch = pytest.importorskip("torch")
nn = torch.nn


def meta_count(modules) -> int:
    return sum(p.numel() for mod in modules for p in mod.parameters())


def llama_like_modules(d, L, V, h, g, dh, f, tied):
    """A Llama decoder written out as HF's LlamaForCausalLM names its modules (an independent account)."""
    with torch.device("meta"):
        mods = [nn.Embedding(V, d)]
        for _ in range(L):
            mods += [
                nn.Linear(d, h * dh, bias=False), nn.Linear(d, g * dh, bias=False), nn.Linear(d, g * dh, bias=False),
                nn.Linear(h * dh, d, bias=False),
                nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False),
                nn.RMSNorm(d), nn.RMSNorm(d),
            ]
        mods.append(nn.RMSNorm(d))
        if not tied:
            mods.append(nn.Linear(d, V, bias=False))
    return mods


def test_llama_3_8b_count_matches_torch_modules_on_meta_device():
    assert total_params(load_model("llama-3-8b")) == meta_count(
        llama_like_modules(4096, 32, 128256, 32, 8, 128, 14336, tied=False)
    )


def test_gemma_2_9b_count_matches_torch_modules_on_meta_device():
    # head_dim 256 with 16 heads: q is 3584 -> 4096, not hidden/heads; four norms per layer; tied embeddings.
    mods = llama_like_modules(3584, 42, 256000, 16, 8, 256, 14336, tied=True)
    with torch.device("meta"):
        mods += [nn.RMSNorm(3584) for _ in range(2 * 42)]
    assert total_params(load_model("gemma-2-9b")) == meta_count(mods)


def test_deepseek_v2_lite_mla_moe_count_matches_torch_modules_on_meta_device():
    # DeepSeek-V2-Lite as its modeling code builds it: q_proj (no q_lora), kv_a_proj_with_mqa, kv_a_layernorm,
    # kv_b_proj, o_proj; layer 0 dense MLP 10944, the rest 64 routed + 2 shared experts of 1408, gate 64 x 2048.
    d, L, V, h, d_c, d_r, d_n, d_v = 2048, 27, 102400, 16, 512, 64, 128, 128

    def mlp(f):
        return [nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False)]

    with torch.device("meta"):
        mods = [nn.Embedding(V, d), nn.RMSNorm(d), nn.Linear(d, V, bias=False)]
        for layer in range(L):
            mods += [
                nn.Linear(d, h * (d_n + d_r), bias=False), nn.Linear(d, d_c + d_r, bias=False), nn.RMSNorm(d_c),
                nn.Linear(d_c, h * (d_n + d_v), bias=False), nn.Linear(h * d_v, d, bias=False),
                nn.RMSNorm(d), nn.RMSNorm(d),
            ]
            if layer == 0:
                mods += mlp(10944)
            else:
                for _ in range(64):
                    mods += mlp(1408)
                mods += mlp(2 * 1408)  # the two shared experts, fused as DeepSeek's code does
                mods.append(nn.Linear(d, 64, bias=False))  # router
    assert total_params(load_model("deepseek-v2-lite")) == meta_count(mods)


def test_quantised_weights_keep_embeddings_lm_head_and_norms_in_bf16():
    """Llama-3.1-8B (config.json: vocab 128256, hidden 4096, 32 layers, untied lm_head) as an fp8 or int4-g128
    checkpoint: every linear layer quantised, the two 128256 x 4096 embedding matrices and the 65 RMSNorm vectors
    in bf16. Counted here from the config alone, not from kvcalc's breakdown."""
    from kvcalc.dtypes import bytes_per_element
    from kvcalc.formulas.params import weight_bytes

    m = load_model("llama-3.1-8b")
    kept = 2 * 128256 * 4096 + (2 * 32 + 1) * 4096
    linear = total_params(m) - kept
    assert weight_bytes(m, 1.0) == linear * 1 + kept * 2
    assert weight_bytes(m, bytes_per_element("int4")) == pytest.approx(linear * (0.5 + 2 / 128) + kept * 2, rel=1e-12)
    assert weight_bytes(m, 2.0) == total_params(m) * 2  # bf16: nothing kept apart
    assert weight_bytes(m, 4.0) == total_params(m) * 4


def test_kimi_k2_is_a_trillion_parameters_with_32b_active():
    """Kimi K2 model card: 1T total (rounded), 32B activated."""
    m = load_model("kimi-k2")
    assert total_params(m) == pytest.approx(1.0e12, rel=0.03)
    assert active_params(m) == pytest.approx(32e9, rel=0.03)


def test_kimi_k2_config_json_reads_as_the_deepseek_v3_layout():
    from kvcalc.specs.hf import config_to_spec_dict
    from kvcalc.specs.model import ModelSpec

    config = {"model_type": "kimi_k2", "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
              "num_hidden_layers": 61, "num_attention_heads": 64, "num_key_value_heads": 64, "n_routed_experts": 384,
              "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 1, "kv_lora_rank": 512,
              "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128,
              "vocab_size": 163840, "max_position_embeddings": 131072, "tie_word_embeddings": False,
              "topk_method": "noaux_tc",  # as Kimi-K2-Instruct's config.json: the gate's e_score_correction_bias
              "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    fields, _ = config_to_spec_dict(config, name="kimi-k2", source="config.json")
    imported = ModelSpec.model_validate(fields)
    assert total_params(imported) == total_params(load_model("kimi-k2"))
    assert imported.quantization.weight_format == "fp8-block"
