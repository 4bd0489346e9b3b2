"""Mamba, Mamba-2 and lightning-attention layers: hybrid models read from their config.json (Jamba, Nemotron-H,
Falcon-H1, MiniMax-Text-01), checked against published totals and against parameter counts derived here by hand from
each family's module shapes (Hugging Face transformers' modeling files)."""

import pytest

from kvcalc import estimate
from kvcalc.errors import KvcalcError
from kvcalc.estimator import precision
from kvcalc.formulas.forward import decode_ops
from kvcalc.formulas.kv import kv_bytes_per_sequence, kv_bytes_per_token
from kvcalc.formulas.params import active_params, params_breakdown, total_params
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.hf import config_to_spec_dict
from kvcalc.specs.model import ModelSpec

# ai21labs/Jamba-v0.1 config.json (as published, and as copied by its fine-tunes, e.g. jondurbin/airoboros-jamba-3-3)
JAMBA = {"model_type": "jamba", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "attn_layer_offset": 4, "attn_layer_period": 8,
         "expert_layer_offset": 1, "expert_layer_period": 2, "num_experts": 16, "num_experts_per_tok": 2,
         "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_state": 16, "mamba_dt_rank": 256, "mamba_expand": 2,
         "mamba_inner_layernorms": True, "mamba_proj_bias": False, "vocab_size": 65536, "tie_word_embeddings": False,
         "n_ctx": 262144}

# nvidia/Nemotron-H-8B-Base-8K config.json (as reproduced in NVIDIA-NeMo/Megatron-Bridge's tests)
NEMOTRON_H = {"model_type": "nemotron_h", "hidden_size": 4096, "intermediate_size": 21504, "num_hidden_layers": 52,
              "hybrid_override_pattern": "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
              "num_attention_heads": 32, "num_key_value_heads": 8, "attention_head_dim": 128, "mamba_num_heads": 128,
              "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8, "conv_kernel": 4, "expand": 2,
              "mlp_hidden_act": "relu2", "mlp_bias": False, "attention_bias": False, "use_conv_bias": True,
              "vocab_size": 131072, "max_position_embeddings": 8192, "tie_word_embeddings": False}

# MiniMaxAI/MiniMax-Text-01 config.json: 80 layers, softmax attention every 8th (attn_type_list 1), the rest lightning
MINIMAX = {"model_type": "minimax_text_01", "hidden_size": 6144, "intermediate_size": 9216, "num_hidden_layers": 80,
           "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 128, "num_local_experts": 32,
           "num_experts_per_tok": 2, "vocab_size": 200064, "tie_word_embeddings": False,
           "max_position_embeddings": 10240000, "attn_type_list": [0, 0, 0, 0, 0, 0, 0, 1] * 10}

# Falcon-H1-0.5B's shape (transformers' FalconH1 table: 36 layers, d 1024, 8 heads / 2 KV, 24 Mamba heads of 64,
# d_state 128; its config: intermediate_size 2048, mamba_d_ssm 1536, one group, conv 4, no mixer norm). The
# vocabulary is left out of the hand count below.
FALCON_H1 = {"model_type": "falcon_h1", "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 36,
             "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "mamba_d_ssm": 1536,
             "mamba_n_heads": 24, "mamba_d_head": 64, "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4,
             "mamba_rms_norm": False, "mamba_conv_bias": True, "mamba_proj_bias": False, "projectors_bias": False,
             "vocab_size": 32768, "tie_word_embeddings": False, "max_position_embeddings": 16384}


def spec(config: dict, name: str = "m") -> ModelSpec:
    fields, _ = config_to_spec_dict(config, name=name, source="config.json")
    return ModelSpec.model_validate(fields)


def test_jamba_totals_match_the_published_ones():
    """Open LLM Leaderboard (safetensors): 51.57B; model card: 52B total, 12B active."""
    m = spec(JAMBA)
    assert (m.attention_layers, m.linear_layers, m.moe_layers, m.dense_layers) == (4, 28, 16, 16)
    assert total_params(m) == pytest.approx(51.57e9, abs=0.005e9)
    assert active_params(m) == pytest.approx(12e9, rel=0.02)


def test_a_jamba_mamba_layer_by_hand():
    """in_proj 4096 x 16384; conv 8192 x 4 + bias; x_proj 8192 x (256 + 32); dt_proj 256 x 8192 + bias; A 8192 x 16;
    D 8192; out_proj 8192 x 4096; norms on dt, B and C (256 + 16 + 16)."""
    by_hand = (4096 * 16384 + 8192 * 5 + 8192 * 288 + 256 * 8192 + 8192 + 8192 * 16 + 8192 + 8192 * 4096) * 28
    parts = params_breakdown(spec(JAMBA))
    assert parts["linear_attention"] == by_hand
    assert parts["norms"] == (32 * 2 + 1) * 4096 + 28 * (256 + 16 + 16)


def test_jamba_state_per_sequence_is_constant_in_context():
    """28 layers x (8192 x 16 state + 3 past conv inputs x 8192); 4 attention layers x 8 KV heads x 128 x 2."""
    m = spec(JAMBA)
    state = 28 * (8192 * 16 + 3 * 8192) * 2
    assert kv_bytes_per_token(m, 2.0) == 4 * 8 * 128 * 2 * 2
    for s in (1, 262144):
        assert kv_bytes_per_sequence(m, s, 2.0) == 4 * 8 * 128 * 2 * 2 * s + state


def test_nemotron_h_parameters_by_hand():
    """24 Mamba-2 blocks: in_proj 4096 x (2 x 8192 + 2 x 8 x 128 + 128), conv (8192 + 2048) x 4 + bias, A, D and dt
    bias 3 x 128, gated norm 8192, out_proj 8192 x 4096; 4 attention blocks 4096 x (4096 + 2 x 1024) + 4096 x 4096;
    24 squared-ReLU MLP blocks 2 x 4096 x 21504; 52 block norms and the final one; untied 131072 x 4096 twice.
    NVIDIA's card: "8B model parameters"."""
    mamba = 4096 * 18560 + 10240 * 5 + 3 * 128 + 8192 + 8192 * 4096
    attention = 4096 * 6144 + 4096 * 4096
    by_hand = 24 * mamba + 4 * attention + 24 * 2 * 4096 * 21504 + 53 * 4096 + 2 * 131072 * 4096
    m = spec(NEMOTRON_H)
    assert (m.attention_layers, m.linear_layers, m.dense_layers, m.moe_layers) == (4, 24, 24, 0)
    assert total_params(m) == by_hand == pytest.approx(8.1e9, rel=0.01)


def test_nemotron_h_cache_and_state_and_tp_all_reduces():
    """4 attention blocks x 8 KV heads x 128 x 2 x 2 B = 16 KiB a token; 24 blocks of 128 x 128 x 64 SSM state in
    float32 (vLLM's and SGLang's default for Nemotron-H: the nineteenth audit, E2) plus 3 x (8192 + 2 x 8 x 128) conv
    inputs in bf16. One all-reduce a block (52), not two a layer."""
    m = spec(NEMOTRON_H)
    assert kv_bytes_per_token(m, 2.0) == 16384
    assert kv_bytes_per_sequence(m, 8192, 2.0) == 16384 * 8192 + 24 * (128 * 128 * 64 * 4 + 3 * 10240 * 2)
    assert m.residual_blocks == 52
    one, two = (estimate(m, "h100", batch=1, context=1024, tp=t) for t in (1, 2))
    # the GPU's share of the work halves; the engine's own per-step cost (engines/overhead.py) is not the model's
    assert two.decode.ms - two.decode.overhead_ms < one.decode.ms - one.decode.overhead_ms


def test_minimax_text_01_totals():
    """MiniMax-01 report: 456B total, 45.9B activated (the activated count leaves out the embedding and lm_head)."""
    m = spec(MINIMAX)
    assert (m.attention_layers, m.linear_layers) == (10, 70)
    assert total_params(m) == pytest.approx(456e9, rel=0.002)
    active = params_breakdown(m, active=True)
    assert active["total"] - active["embedding"] - active["lm_head"] == pytest.approx(45.9e9, rel=0.002)


def test_minimax_lightning_state_is_64_heads_of_128_by_128():
    m = spec(MINIMAX)
    assert m.linear_attention.state_elements == 64 * 128 * 128  # no convolution
    assert kv_bytes_per_sequence(m, 1_000_000, 2.0) == 10 * 8 * 128 * 2 * 2 * 1_000_000 + 70 * 64 * 128 * 128 * 2


def test_falcon_h1_runs_mamba_beside_attention_in_every_layer():
    """Per layer: attention 1024 x (512 + 2 x 128) + 512 x 1024; Mamba-2 in_proj 1024 x (2 x 1536 + 2 x 128 + 24),
    conv (1536 + 256) x 5, 3 x 24 scalars, out_proj 1536 x 1024 (no mixer norm); gated MLP 3 x 1024 x 2048; 2 norms."""
    m = spec(FALCON_H1)
    assert m.attention_layers == m.linear_layers == 36
    layer = (1024 * 768 + 512 * 1024 + 1024 * 3352 + 1792 * 5 + 72 + 1536 * 1024 + 3 * 1024 * 2048 + 2 * 1024)
    parts = params_breakdown(m)
    assert parts["total"] - parts["embedding"] - parts["lm_head"] == 36 * layer + 1024
    state = 36 * (24 * 128 * 64 + 3 * 1792) * 2
    assert kv_bytes_per_sequence(m, 4096, 2.0) == 36 * 2 * 64 * 2 * 2 * 4096 + state


def test_a_mamba_decode_step_reads_the_state_not_the_context():
    m, p = spec(NEMOTRON_H), precision("bf16", "bf16")
    state = lambda s: next(o.cost for o in decode_ops(m, 8, s, p) if o.name == "linear_attention/state")  # noqa: E731
    assert state(128).bytes == state(8192).bytes
    assert state(128).flops == 8 * 24 * 4 * 128 * 128 * 64


def test_rewriting_nemotron_h_to_linear_turns_its_attention_blocks_linear():
    linear = rewrite_attention(spec(NEMOTRON_H), "linear")
    assert linear.attention_layers == 0 and linear.linear_layers == 28 and kv_bytes_per_token(linear, 2.0) == 0


@pytest.mark.parametrize("changes, message", [
    ({"hybrid_override_pattern": "M-M*"}, "hybrid_override_pattern"),
    ({"hybrid_override_pattern": "X" * 52}, "unknown block 'X'"),
    ({"mamba_num_heads": None}, "mamba_num_heads"),
])
def test_bad_nemotron_h_configs_are_one_line_errors(changes, message):
    config = {**NEMOTRON_H, **changes}
    with pytest.raises((KvcalcError, ValueError), match=message):
        spec({k: v for k, v in config.items() if v is not None})


def test_falcon_h1_with_an_inner_width_unlike_its_heads_is_refused():
    with pytest.raises(KvcalcError, match="mamba_d_ssm"):
        spec({**FALCON_H1, "mamba_d_ssm": 2048})


@pytest.mark.parametrize("name, config", [("jamba-v0.1", JAMBA), ("nemotron-h-8b", NEMOTRON_H)])
def test_the_bundled_specs_are_their_config_json(name, config):
    from kvcalc.specs.catalog import load_model

    bundled, imported = load_model(name), spec(config, name)
    assert params_breakdown(bundled) == params_breakdown(imported)
    assert kv_bytes_per_sequence(bundled, 4096, 2.0) == kv_bytes_per_sequence(imported, 4096, 2.0)
    assert bundled.max_position_embeddings == imported.max_position_embeddings


def test_a_model_of_mamba_blocks_only_sizes_its_pool_in_whole_states():
    """No softmax attention: no KV pages (0 tokens), and vLLM's concurrency is the whole states that fit."""
    from kvcalc.formulas import engine_memory as em

    m = spec({**NEMOTRON_H, "num_hidden_layers": 4, "hybrid_override_pattern": "M-M-"})
    request = 2 * (128 * 128 * 64 * 4 + 3 * 10240 * 2)  # two layers' state: SSM in float32, conv in bf16
    assert em.vllm_layout(m, 2.0) is None
    assert em.vllm_kv_tokens(m, 10 * request + 1, 2.0) == 0
    assert em.vllm_max_concurrency(m, 10 * request + 1, 4096, 8192, 2.0) == 10


def test_a_layer_pattern_without_a_mixer_is_refused():
    with pytest.raises(ValueError, match="no attention"):
        spec({**NEMOTRON_H, "num_hidden_layers": 2, "hybrid_override_pattern": "--"})
