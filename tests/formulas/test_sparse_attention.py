"""DeepSeek sparse attention (V3.2): the indexer's key in the cache, every key scored, only the top k read."""

import pytest

from kvcalc.estimator import precision
from kvcalc.formulas.forward import attention_core_cost
from kvcalc.formulas.kv import kv_bytes_per_token_per_layer
from kvcalc.formulas.params import total_params
from kvcalc.specs.catalog import load_model
from kvcalc.specs.hf import config_to_spec_dict
from kvcalc.specs.model import ModelSpec


def test_indexer_key_joins_the_cache_and_its_parameters_the_model():
    v3, v32 = load_model("deepseek-v3"), load_model("deepseek-v3.2")
    # MLA latent (512 + 64) in bf16, plus the indexer's 128 fp8 values and one fp32 scale
    assert kv_bytes_per_token_per_layer(v32.attention, 2.0) == 576 * 2 + 128 + 4
    # per layer: indexer queries 1536 -> 64 x 128, key 7168 -> 128, head weights 7168 -> 64, and the key's LayerNorm,
    # weight and bias of 128 (Indexer.k_norm in DeepSeek-V3.2-Exp's inference/model.py)
    assert total_params(v32) - total_params(v3) == 61 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64 + 2 * 128)


def test_decode_reads_the_top_k_latents_and_every_indexer_key():
    m, p = load_model("deepseek-v3.2"), precision("bf16", "bf16")
    s = 131072
    cost = attention_core_cost(m, 1, 1, s, None, True, p)
    assert cost.kv_read_bytes == 2048 * 1152 + s * 132
    dense = attention_core_cost(load_model("deepseek-v3"), 1, 1, s, None, True, p)
    assert dense.kv_read_bytes == s * 1152 and cost.kv_read_bytes < dense.kv_read_bytes / 3
    short = attention_core_cost(m, 1, 1, 1000, None, True, p)  # below k, every key is read anyway
    assert short.kv_read_bytes == 1000 * (1152 + 132)


def test_config_json_with_the_indexer():
    config = {"model_type": "deepseek_v32", "hidden_size": 7168, "intermediate_size": 18432,
              "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128,
              "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
              "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
              "v_head_dim": 128, "vocab_size": 129280, "max_position_embeddings": 163840, "index_topk": 2048,
              "index_n_heads": 64, "index_head_dim": 128, "topk_method": "noaux_tc"}  # as the published config
    fields, _ = config_to_spec_dict(config, name="deepseek-v3.2", source="config.json")
    assert total_params(ModelSpec.model_validate(fields)) == total_params(load_model("deepseek-v3.2"))


def test_sparse_fields_go_together():
    from pydantic import ValidationError

    from kvcalc.specs.model import AttentionSpec

    with pytest.raises(ValidationError, match="go together"):
        AttentionSpec(kind="mha", num_heads=8, num_kv_heads=8, head_dim=64, sparse_top_k=2048)
