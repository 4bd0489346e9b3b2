"""Quantisation formats as checkpoints store them: HF quantization_config, scales, what stays 16-bit, and a
published checkpoint size."""

import json

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.dtypes import bytes_per_element, matmul_compute_dtype
from kvcalc.errors import KvcalcError
from kvcalc.formulas.params import params_breakdown, total_params, weight_bytes
from kvcalc.specs.catalog import load_model
from kvcalc.specs.hf import quantization_from_config

GiB = 1024**3


def test_gpt_oss_120b_checkpoint_is_the_model_cards_60_8_gib():
    """OpenAI's gpt-oss model card, Table 1: 116.83B parameters, 5.13B active (the embedding not counted),
    checkpoint 60.8 GiB: MXFP4 experts (4.25 bits a weight), everything else bf16."""
    m = load_model("gpt-oss-120b")
    assert total_params(m) == pytest.approx(116.83e9, rel=1e-3)
    parts = params_breakdown(m, active=True)
    assert parts["total"] - parts["embedding"] == pytest.approx(5.13e9, rel=5e-3)
    assert weight_bytes(m, bytes_per_element("mxfp4")) / GiB == pytest.approx(60.8, rel=5e-3)
    # gpt-oss-20b (bundled): the same layers, 24 of them, 32 experts: 20.91B parameters, 3.61B active, 12.8 GiB
    small = load_model("gpt-oss-20b")
    assert small == m.model_copy(update={"name": small.name, "display_name": small.display_name, "aliases": small.aliases,
                                         "sources": small.sources, "notes": small.notes, "num_layers": 24,
                                         "moe": m.moe.model_copy(update={"num_experts": 32})})
    assert total_params(small) == pytest.approx(20.91e9, rel=2e-3)
    parts = params_breakdown(small, active=True)
    assert parts["total"] - parts["embedding"] == pytest.approx(3.61e9, rel=5e-3)
    assert weight_bytes(small, bytes_per_element("mxfp4")) / GiB == pytest.approx(12.8, rel=1e-2)


@pytest.mark.parametrize("qc, fmt, kept", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "int4-g128", set()),
    ({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False}, "int4-g32", set()),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "int8-g128", set()),  # scales and zeros per group
    ({"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}, "fp8-block", set()),  # DeepSeek-V3
    ({"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                           "model.embed_tokens", "lm_head"]}, "mxfp4",
     {"attention", "mlp", "shared_experts"}),  # gpt-oss: MXFP4 quantises the routed experts only (vLLM's
    # Mxfp4Config.get_quant_method: UnquantizedLinearMethod for every LinearBase; the thirteenth audit, H1)
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "weights": {"type": "float", "num_bits": 8, "strategy": "channel"}, "input_activations": {}}},
      "ignore": ["lm_head"]}, "fp8", set()),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4", set()),
])
def test_quantization_config_to_format_and_kept_classes(qc, fmt, kept):
    q = quantization_from_config(qc, "config.json")
    assert q["weight_format"] == fmt
    assert set(q["quantized"]) == {"attention", "mlp", "experts", "shared_experts"} - kept


def test_unknown_quantization_is_a_one_line_error():
    with pytest.raises(KvcalcError, match="quant_method 'bitsandbytes'"):
        quantization_from_config({"quant_method": "bitsandbytes", "load_in_4bit": True}, "config.json")
    with pytest.raises(KvcalcError, match="group_size 256"):
        quantization_from_config({"quant_method": "awq", "bits": 4, "group_size": 256}, "config.json")


def test_fp4_runs_at_the_fp4_peak_only_where_the_part_has_one():
    assert matmul_compute_dtype("nvfp4", {"bf16": 1, "fp8": 2, "fp4": 4}) == "fp4"  # Blackwell
    assert matmul_compute_dtype("mxfp4", {"bf16": 1, "fp8": 2}) == "bf16"  # Hopper: dequantised (Marlin)
    assert matmul_compute_dtype("fp8-block", {"bf16": 1, "fp8": 2}) == "fp8"
    assert matmul_compute_dtype("int4-g64", {"bf16": 1, "fp8": 2, "int8": 2}) == "bf16"


def test_a_quantised_config_sets_the_weight_format_when_none_is_given(tmp_path):
    config = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
              "max_position_embeddings": 8192, "tie_word_embeddings": False,
              "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = CliRunner().invoke(app, ["estimate", "-m", str(path), "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["inputs"]["weight_dtype"] == "int4-g128"
    kept = 2 * 128256 * 4096 + 65 * 4096  # embedding, lm_head, 65 RMSNorms stay bf16
    linear = out["weights"]["params"] - kept
    assert out["weights"]["bytes"] == pytest.approx(linear * (0.5 + 2.5 / 128) + kept * 2)
    r = CliRunner().invoke(app, ["estimate", "-m", str(path), "--weight-dtype", "bf16", "-f", "json"])
    assert json.loads(r.stdout)["inputs"]["weight_dtype"] == "bf16"  # an explicit flag wins


def test_w8a8_llama_3_1_70b_loads_as_vllm_logged():
    """vLLM PR #12569: neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8 (int8 weights and activations,
    compressed-tensors) logs 'Loading model weights took 67.7229 GB' (vLLM divides by 2^30). Linear layers at 1 byte,
    embedding, lm_head and norms at 2; per-channel scales (about 0.03 GiB) are not counted."""
    m = load_model("llama-3.1-70b")
    assert weight_bytes(m, bytes_per_element("int8")) / GiB == pytest.approx(67.7229, rel=2e-3)


def test_gpt_oss_and_llama4_config_json_read_as_the_bundled_specs():
    from kvcalc.specs.hf import config_to_spec_dict
    from kvcalc.specs.model import ModelSpec

    gpt_oss = {"model_type": "gpt_oss", "num_hidden_layers": 36, "hidden_size": 2880, "num_attention_heads": 64,
               "num_key_value_heads": 8, "head_dim": 64, "attention_bias": True, "sliding_window": 128,
               "layer_types": ["sliding_attention", "full_attention"] * 18, "num_local_experts": 128,
               "num_experts_per_tok": 4, "intermediate_size": 2880, "vocab_size": 201088,
               "max_position_embeddings": 131072, "tie_word_embeddings": False,
               "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
                   "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}}
    llama4 = {"model_type": "llama4", "text_config": {
        "model_type": "llama4_text", "num_hidden_layers": 48, "hidden_size": 5120, "num_attention_heads": 40,
        "num_key_value_heads": 8, "head_dim": 128, "num_local_experts": 16, "num_experts_per_tok": 1,
        "intermediate_size": 8192, "intermediate_size_mlp": 16384, "interleave_moe_layer_step": 1,
        "attention_chunk_size": 8192, "vocab_size": 202048, "max_position_embeddings": 10485760,
        "tie_word_embeddings": False}, "vision_config": {"multi_modal_projector_bias": False,
        "model_type": "llama4_vision_model", "hidden_size": 1408, "intermediate_size": 5632, "num_hidden_layers": 34,
        "patch_size": 14, "image_size": 336, "num_channels": 3, "projector_input_dim": 4096,
        "projector_output_dim": 4096, "vision_output_dim": 4096, "pixel_shuffle_ratio": 0.5}}
    for config, name in ((gpt_oss, "gpt-oss-120b"), (llama4, "llama-4-scout")):
        fields, _ = config_to_spec_dict(config, name=name, source="config.json")
        imported, bundled = ModelSpec.model_validate(fields), load_model(name)
        assert total_params(imported) == total_params(bundled)
        assert imported.global_layers == bundled.global_layers and imported.window_layers == bundled.window_layers
    assert imported.quantization is None
    oss = ModelSpec.model_validate(config_to_spec_dict(gpt_oss, name="x", source="config.json")[0])
    assert oss.quantization.weight_format == "mxfp4" and oss.quantization.quantized == ["experts"]


# Llama-3.1-8B-Instruct's config.json, with each quantised checkpoint's quantization_config as published
LLAMA_31_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
               "max_position_embeddings": 131072, "tie_word_embeddings": False}


@pytest.mark.parametrize("repo, qc, published_GB, rel", [
    # hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4 (files 4.68 GB + 1.05 GB)
    ("AWQ", {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, 5.73, 2e-3),
    # hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4 (4.97 GB + 764 MB). GPTQ also stores g_idx, 4 bytes per
    # input row of every linear layer (5.0 MB here), which kvcalc does not count.
    ("GPTQ", {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True}, 5.734, 2e-3),
    # neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8 (5 GB + 4.08 GB): compressed-tensors fp8 per-tensor, lm_head ignored
    ("FP8", {"quant_method": "compressed-tensors", "ignore": ["lm_head"], "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"type": "float", "num_bits": 8, "strategy": "tensor"},
        "input_activations": {"type": "float", "num_bits": 8, "strategy": "tensor"}}}}, 9.08, 2e-3),
])
def test_quantised_checkpoints_weigh_what_their_published_files_do(repo, qc, published_GB, rel):
    """The safetensors files' sizes on each repo's Hugging Face file listing (decimal GB), against kvcalc's weights as
    loaded: int4 with a 16-bit scale and a 4-bit zero point per group of 128, or 1-byte fp8; the embedding, lm_head
    and norms in 16 bit."""
    from kvcalc.specs.hf import config_to_spec_dict
    from kvcalc.specs.model import ModelSpec

    fields, _ = config_to_spec_dict({**LLAMA_31_8B, "quantization_config": qc}, name=repo, source="config.json")
    m = ModelSpec.model_validate(fields)
    assert weight_bytes(m, bytes_per_element(m.quantization.weight_format)) / 1e9 == pytest.approx(published_GB, rel=rel)
