"""Linear and hybrid attention: a fixed state per sequence beside the KV cache (Qwen3-Next's Gated DeltaNet)."""

import math

import pytest

from kvcalc import compare, estimate
from kvcalc.estimator import precision
from kvcalc.formulas.forward import decode_ops
from kvcalc.formulas.kv import kv_bytes_per_sequence, kv_bytes_per_token
from kvcalc.formulas.params import params_breakdown, total_params
from kvcalc.specs.catalog import load_model
from kvcalc.specs.hf import config_to_spec_dict
from kvcalc.specs.model import ModelSpec

# Qwen3-Next-80B-A3B config.json (model card: 80B total, 3B activated; 3 of 4 layers Gated DeltaNet)
CONFIG = {"model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 16,
          "num_key_value_heads": 2, "head_dim": 256, "full_attention_interval": 4, "linear_conv_kernel_dim": 4,
          "linear_key_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
          "linear_value_head_dim": 128, "intermediate_size": 5120, "moe_intermediate_size": 512,
          "shared_expert_intermediate_size": 512, "num_experts": 512, "num_experts_per_tok": 10,
          "vocab_size": 151936, "max_position_embeddings": 262144, "tie_word_embeddings": False,
          "decoder_sparse_step": 1, "mlp_only_layers": [], "attn_output_gate": True}


def test_qwen3_next_parameters_and_its_config_json():
    m = load_model("qwen3-next-80b-a3b")
    assert total_params(m) == pytest.approx(80e9, rel=0.02)
    active = params_breakdown(m, active=True)
    assert active["total"] - active["embedding"] - active["lm_head"] == pytest.approx(3e9, rel=0.1)
    fields, _ = config_to_spec_dict(CONFIG, name="qwen3-next-80b-a3b", source="config.json")
    imported = ModelSpec.model_validate(fields)
    assert total_params(imported) == total_params(m) and imported.linear_layers == 36 and imported.attention_layers == 12


def test_cache_and_state_per_sequence_closed_form():
    """12 attention layers x 2 KV heads x 256 x (K, V) x 2 B = 2,048 B a token and layer; 36 Gated DeltaNet layers of
    32 x 128 x 128 state plus 3 past inputs of the 2 x 16 x 128 + 32 x 128 conv channels, 2 B each."""
    m = load_model("qwen3-next-80b-a3b")
    state = 36 * (32 * 128 * 128 + 3 * (2 * 16 * 128 + 32 * 128)) * 2
    for s in (1, 4096, 262144):
        assert kv_bytes_per_sequence(m, s, 2.0) == 12 * 2048 * s + state
    assert kv_bytes_per_token(m, 2.0) == 12 * 2048


def test_the_linear_layers_cost_the_same_at_any_context():
    m, p = load_model("qwen3-next-80b-a3b"), precision("bf16", "bf16")
    state = lambda s: next(o.cost for o in decode_ops(m, 8, s, p) if o.name == "linear_attention/state")  # noqa: E731
    assert state(1024).bytes == state(200_000).bytes
    assert state(1024).flops == 8 * 36 * 4 * 32 * 128 * 128


def test_compare_rewrites_attention_to_linear():
    rows = compare("llama-3-8b", ["linear"], batch=16, context=32768)
    own, linear = rows
    assert linear["kv_bytes_per_token"] == 0  # only a fixed state: 32 layers x 32 heads x 128 x 128 x 2 B
    assert linear["max_batch_at_context"] > 10 * own["max_batch_at_context"]
    assert linear["tokens_per_s"] > own["tokens_per_s"]
    e = estimate("llama-3-8b", attn="linear", batch=1, context=100_000)
    assert e.kv_cache.bytes == 32 * 32 * 128 * 128 * 2 and math.isfinite(e.decode.ms)


def test_the_roofline_places_the_linear_layers_apart():
    """The recurrence reads and writes its bf16 state once a token for 4 FLOPs an element: about 1 FLOP/B, at
    any batch, left of softmax attention's point."""
    from kvcalc.report.plot import operating_points

    points = operating_points("qwen3-next-80b-a3b", [None], [1, 64], 4096)
    linear = [pt for pt in points if pt[2] == "linear attention"]
    assert len(linear) == 2 and all(0.9 < pt[5] <= 1.0 for pt in linear)
    assert not [pt for pt in operating_points("llama-3-8b", [None], [1], 4096) if pt[2] == "linear attention"]


def test_qwen3_5_hybrids_read_like_qwen3_next_with_their_layer_types():
    """Qwen3.5's configs (model_type qwen3_5 wrapping a qwen3_5_moe_text or qwen3_5_text text_config) carry
    Qwen3-Next's fields and a layer_types list: the same layers give the same numbers; a dense one has an MLP
    instead of experts; an irregular list is counted, not assumed periodic."""
    types = ["linear_attention"] * 3 + ["full_attention"]
    moe = {"model_type": "qwen3_5", "text_config": {**CONFIG, "model_type": "qwen3_5_moe_text", "layer_types": types * 12}}
    fields, _ = config_to_spec_dict(moe, name="q", source="config.json")
    assert total_params(ModelSpec.model_validate(fields)) == total_params(load_model("qwen3-next-80b-a3b"))
    dense = {k: v for k, v in CONFIG.items() if not k.startswith(("num_experts", "moe_", "shared_expert"))}
    irregular = types * 11 + ["linear_attention", "full_attention", "full_attention", "full_attention"]
    fields, _ = config_to_spec_dict({**dense, "model_type": "qwen3_5_text", "layer_types": irregular}, name="d",
                                    source="config.json")
    m = ModelSpec.model_validate(fields)
    assert (m.linear_layers, m.attention_layers, m.moe) == (34, 14, None)
    assert params_breakdown(m)["mlp"] == 48 * 3 * 2048 * 5120  # gate, up and down of every layer
