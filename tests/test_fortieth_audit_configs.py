"""The fortieth hostile audit (docs/validation.md, "Fortieth hostile audit"), its findings on config.json readers. Each
test is named after the finding it holds fixed and asserts a hand count or the source's own structure."""

import json
from pathlib import Path

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.specs.hf import load_hf_spec

FIXTURES = Path(__file__).parent / "fixtures" / "hf"
NEMOTRON_H = FIXTURES / "Nemotron-H-8B-Base-8K" / "config.json"


def _write(tmp_path, config: dict, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


def test_40_configs1_a_latent_moe_is_refused_by_its_field(tmp_path):
    """configs 1: Nemotron 3 Super's LatentMoE runs its 512 routed experts on a 1,024-wide latent of the 4,096-wide
    hidden state (vLLM's nemotron_h.py NemotronHMoE: use_latent_moe = moe_latent_size is not None, FusedMoE(hidden_size=
    moe_latent_size), fc1_latent_proj / fc2_latent_proj), which kvcalc does not model: read at the hidden width it
    had 458.6 B parameters where the model has 120.7 B, in silence. Refused by the field, whatever the model_type."""
    config = json.loads(NEMOTRON_H.read_text())
    config.update(moe_latent_size=1024, n_routed_experts=512, num_experts_per_tok=22, moe_intermediate_size=2688)
    for model_type in ("nemotron_h", "some_new_moe"):
        with pytest.raises(KvcalcError, match=r"moe_latent_size: .*1024-wide latent.*does not model"):
            load_hf_spec(_write(tmp_path, {**config, "model_type": model_type}, f"{model_type}.json"))


def test_40_configs2_nemotron_h_layers_block_type_reads_as_its_pattern(tmp_path):
    """configs 2: transformers' NemotronHConfig saves the layers as layers_block_type (mamba, attention, mlp, moe), its
    num_hidden_layers the list's length, and hybrid_override_pattern only as a backward-compatibility property; such
    a config had been refused for a missing num_hidden_layers. Nemotron-H-8B's pattern written as that list gives the
    same spec as the string."""
    config = json.loads(NEMOTRON_H.read_text())
    names = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
    listed = {k: v for k, v in config.items() if k not in ("hybrid_override_pattern", "num_hidden_layers")}
    listed["layers_block_type"] = [names[ch] for ch in config["hybrid_override_pattern"]]
    as_string, _ = load_hf_spec(str(NEMOTRON_H), name="n")
    as_list, _ = load_hf_spec(_write(tmp_path, listed), name="n")
    assert as_list.layer_pattern == as_string.layer_pattern == config["hybrid_override_pattern"]
    assert as_list.num_layers == 52
    assert as_list.model_dump(exclude={"sources", "notes"}) == as_string.model_dump(exclude={"sources", "notes"})
    with pytest.raises(KvcalcError, match=r"layers_block_type: expected a list of block names"):
        load_hf_spec(_write(tmp_path, {**listed, "layers_block_type": ["mamba", "conv"]}, "bad.json"))


def test_40_configs3_bitnet_is_a_gated_mlp_with_its_sub_norms(tmp_path):
    """configs 3: BitNet b1.58 (transformers' modular_bitnet.py: BitNetMLP(GemmaMLP) gate, up and down projections,
    down_proj(ffn_sub_norm(act(gate_proj(x)) * up_proj(x))); BitNetAttention adds attn_sub_norm before o_proj) had been
    read as a plain relu2 MLP: 1,881,694,720 parameters. microsoft/bitnet-b1.58-2B-4T-bf16's config, by hand:
    a layer 2,560 x (2,560 + 2 x 640) q/k/v + 2,560^2 o + 3 x 2,560 x 6,912 MLP + 3 x 2,560 norms + 6,912
    ffn_sub_norm = 69,482,752; 30 layers, the tied 128,256 x 2,560 embedding and the final norm: 2,412,820,480, the
    model card's 2.41 B. Its KV cache: 30 layers x 2 x 5 heads x 128 x 2 B = 76,800 B a token."""
    from kvcalc.formulas.kv import kv_bytes_per_token
    from kvcalc.formulas.params import params_breakdown

    config = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "hidden_act": "relu2",
              "hidden_size": 2560, "intermediate_size": 6912, "max_position_embeddings": 4096,
              "num_attention_heads": 20, "num_hidden_layers": 30, "num_key_value_heads": 5,
              "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
              "vocab_size": 128256}
    spec, _ = load_hf_spec(_write(tmp_path, config), name="bitnet")
    layer = 2560 * (2560 + 2 * 640) + 2560 ** 2 + 3 * 2560 * 6912 + 3 * 2560 + 6912
    assert layer == 69_482_752
    assert params_breakdown(spec)["total"] == 30 * layer + 128256 * 2560 + 2560 == 2_412_820_480
    assert spec.mlp.kind == "gated" and spec.mlp.activation == "relu2"
    assert kv_bytes_per_token(spec, 2.0) == 30 * 2 * 5 * 128 * 2 == 76_800


def test_40_configs4_an_xlstm_config_is_said_to_have_no_attention(tmp_path):
    """configs 4: an xLSTM config (transformers' xLSTMConfig: embedding_dim, num_blocks, num_heads; mLSTM blocks, no
    attention and no KV cache) had been refused for missing num_hidden_layers, hidden_size and num_attention_heads,
    fields that would then have read it as a Llama; it is now named as a model without attention, as Mamba and RWKV."""
    config = {"model_type": "xlstm", "embedding_dim": 4096, "num_blocks": 32, "num_heads": 8, "vocab_size": 50304}
    with pytest.raises(KvcalcError, match=r"model_type 'xlstm' is a model without attention"):
        load_hf_spec(_write(tmp_path, config))
