"""Hugging Face config.json as a model spec (fixtures: tests/fixtures/hf, copies of the published configs)."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.estimator import estimate
from kvcalc.formulas.params import active_params, params_breakdown, total_params
from kvcalc.specs.catalog import load_model, load_spec_file
from kvcalc.specs.hf import AssumptionWarning, load_hf_spec

HF = Path(__file__).parent / "fixtures" / "hf"
runner = CliRunner()

SAME_AS_BUNDLED = [
    ("Meta-Llama-3-8B", "llama-3-8b"),
    ("Mistral-7B-v0.1", "mistral-7b"),
    ("Mixtral-8x7B-v0.1", "mixtral-8x7b"),
    ("Qwen2-7B", "qwen2-7b"),
    ("gemma-2-9b", "gemma-2-9b"),
    ("falcon-7b", "falcon-7b"),
    ("falcon-40b", "falcon-40b"),
    ("chatglm2-6b", "chatglm2-6b"),
    ("DeepSeek-V2-Lite", "deepseek-v2-lite"),
    ("DeepSeek-V3", "deepseek-v3"),
]


def numbers(model) -> dict:
    e = estimate(model, "h100", batch=4, context=8192, prompt=1024)
    return {
        "kv_per_token": e.kv_cache.bytes_per_token, "kv": e.kv_cache.bytes, "params": e.weights.params,
        "active": e.weights.active_params, "decode_ms": e.decode.ms, "prefill_ms": e.prefill.ms,
        "fits": e.memory.fits,
    }


@pytest.mark.parametrize("folder, bundled", SAME_AS_BUNDLED)
def test_config_json_gives_the_numbers_of_the_bundled_spec(folder, bundled, recwarn):
    assert numbers(str(HF / folder / "config.json")) == numbers(bundled)
    assert numbers(str(HF / folder)) == numbers(bundled)  # the folder that holds it
    assert not [w for w in recwarn if issubclass(w.category, AssumptionWarning)]  # known families assume nothing


@pytest.mark.parametrize(
    "folder, total, active, rel",
    [
        ("gpt2", 124_439_808, None, 0),  # HF GPT2LMHeadModel.num_parameters()
        ("opt-125m", 125_239_296, None, 0),  # HF OPTForCausalLM.num_parameters()
        ("gpt-neox-20b", 20_554_567_680, None, 1e-3),  # Black et al. 2022, GPT-NeoX-20B: 20,554,567,680
        ("gemma-7b", 8.54e9, None, 0.01),  # Gemma model card: 8.54B
        ("Phi-3-mini-4k-instruct", 3.8e9, None, 0.01),  # Phi-3 report: 3.8B
        ("gemma-3-1b-pt", 1.0e9, None, 0.01),  # Gemma 3 model card: 1B
        ("Qwen3-0.6B", 0.6e9, None, 0.02),  # Qwen3-0.6B model card: 0.6B (0.44B non-embedding)
        ("Qwen3-30B-A3B", 30.5e9, 3.3e9, 0.02),  # Qwen3-30B-A3B model card: 30.5B total, 3.3B activated
        ("Qwen1.5-MoE-A2.7B", 14.3e9, 2.7e9, 0.02),  # Qwen1.5-MoE blog: 14.3B total, 2.7B activated
    ],
)
def test_parameter_totals_match_the_published_ones(folder, total, active, rel):
    spec, _ = load_hf_spec(HF / folder)
    assert total_params(spec) == pytest.approx(total, rel=rel)
    if active:
        assert active_params(spec) == pytest.approx(active, rel=rel)


def test_qwen3_head_dim_is_read_not_derived():
    # Qwen3-0.6B: hidden 1024 / 16 heads = 64, but head_dim is 128; 0.44B non-embedding parameters.
    spec, _ = load_hf_spec(HF / "Qwen3-0.6B")
    assert spec.attention.head_dim == 128
    assert estimate(spec).kv_cache.bytes_per_token == 2 * 8 * 128 * 28 * 2
    assert total_params(spec) - params_breakdown(spec)["embedding"] == pytest.approx(0.44e9, rel=0.01)


def test_gemma_7b_head_dim_256_is_not_hidden_over_heads():
    spec, _ = load_hf_spec(HF / "gemma-7b")
    assert (spec.attention.head_dim, spec.hidden_size // spec.attention.num_heads) == (256, 192)
    assert estimate(spec).kv_cache.bytes_per_token == 2 * 16 * 256 * 28 * 2


def test_gemma3_sliding_pattern_keeps_every_sixth_layer_global():
    # gemma-3-1b: 26 layers, sliding_window 512, sliding_window_pattern 6 -> layers 5, 11, 17, 23 global;
    # per layer 2 * 1 KV head * 256 * 2 B = 1024 B.
    spec, _ = load_hf_spec(HF / "gemma-3-1b-pt")
    assert estimate(spec, context=8192).kv_cache.bytes == 1024 * (4 * 8192 + 22 * 512)


def test_gemma3_layer_types_list_is_read_like_the_pattern(tmp_path):
    cfg = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    cfg.pop("sliding_window_pattern")
    cfg["layer_types"] = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_hf_spec(tmp_path)[0].global_layers == 4


def test_multimodal_wrapper_reads_the_text_config(tmp_path):
    text = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text, "vision_config": {}}))
    assert numbers(str(tmp_path)) == numbers(str(HF / "gemma-3-1b-pt"))


def make_cache(root: Path, repo_id: str, folder: str) -> None:
    """The huggingface_hub cache layout: models--ORG--NAME/{refs/main, snapshots/<hash>/config.json}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    shutil.copy(HF / folder / "config.json", repo / "snapshots" / "0123abcd" / "config.json")


def test_a_repo_id_is_found_in_the_local_hf_cache(tmp_path, monkeypatch):
    make_cache(tmp_path / "hub", "Qwen/Qwen3-0.6B", "Qwen3-0.6B")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert numbers("Qwen/Qwen3-0.6B") == numbers(str(HF / "Qwen3-0.6B"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    r = runner.invoke(app, ["estimate", "--model", "Qwen/Qwen3-0.6B", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kv_cache"]["bytes_per_token"] == 114_688


def test_an_uncached_repo_id_says_how_to_fetch_only_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    r = runner.invoke(app, ["estimate", "--model", "Qwen/Qwen3-8B"])
    assert r.exit_code == 2
    assert "not in the local Hugging Face cache" in r.stderr
    assert "hf download Qwen/Qwen3-8B config.json" in r.stderr


@pytest.mark.parametrize("folder", sorted(p.name for p in HF.iterdir() if p.is_dir()))
def test_import_writes_a_spec_that_gives_the_same_numbers(folder, tmp_path):
    out = tmp_path / "imported.toml"
    r = runner.invoke(app, ["import", str(HF / folder / "config.json"), "--name", "imported", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert numbers(load_spec_file("model", out)) == numbers(str(HF / folder))


def test_import_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.toml"
    out.write_text("keep me")
    r = runner.invoke(app, ["import", str(HF / "gpt2"), "--name", "x", "--out", str(out)])
    assert r.exit_code == 2 and out.read_text() == "keep me"


def write_config(tmp_path, **changes):
    cfg = json.loads((HF / "Meta-Llama-3-8B" / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "config.json"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_key_value_heads": 5}, "num_attention_heads (32) is not divisible by num_key_value_heads (5)"),
        ({"hidden_size": -4096}, "hidden_size: expected a positive integer"),
        ({"num_hidden_layers": 10**9}, "num_hidden_layers: expected a positive integer up to 100,000,000"),
        ({"vocab_size": "many"}, "vocab_size: expected a positive integer"),
        ({"num_hidden_layers": None, "vocab_size": None}, "missing essential field(s): num_hidden_layers, vocab_size"),
        ({"partial_rotary_factor": 2}, "partial_rotary_factor: expected a fraction in (0, 1]"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_field(tmp_path, changes, message):
    path = write_config(tmp_path, **changes)
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and f"{path}: " in r.stderr and message in r.stderr


def test_rotary_width_follows_the_config(tmp_path):
    """The dims RoPE turns (vLLM's cos/sin table is that wide): GPT-NeoX-20B's rotary_pct 0.25 of its 96-wide heads,
    ChatGLM2's half of 128 (as the bundled spec), a partial_rotary_factor, none with learned positions."""
    assert load_hf_spec(HF / "gpt-neox-20b")[0].rotary_width == 24
    assert load_hf_spec(HF / "chatglm2-6b")[0].rotary_width == 64 == load_model("chatglm2-6b").rotary_width
    assert load_hf_spec(HF / "Meta-Llama-3-8B")[0].rotary_width == 128
    assert load_hf_spec(write_config(tmp_path, partial_rotary_factor=0.25))[0].rotary_width == 32
    assert load_hf_spec(HF / "gpt2")[0].rotary_width == 0


def test_invalid_json_and_a_folder_without_config_are_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["estimate", "--model", str(bad)])
    assert r.exit_code == 2 and f"{bad}: not valid JSON" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["estimate", "--model", str(empty)])
    assert r.exit_code == 2 and f"{empty} holds no config.json" in r.stderr
    r = runner.invoke(app, ["estimate", "--model", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_an_unknown_model_type_is_read_with_every_assumption_named(tmp_path):
    path = write_config(tmp_path, model_type="newarch", num_key_value_heads=None, tie_word_embeddings=None)
    with pytest.warns(AssumptionWarning) as caught:
        spec = load_model(str(path))
    said = " ".join(str(w.message) for w in caught)
    for assumption in ("not a known family", "num_key_value_heads absent: assumed MHA",
                       "head_dim absent: assumed hidden_size / num_attention_heads = 128",
                       "tie_word_embeddings absent: assumed false", "MLP assumed gated"):
        assert assumption in said
    assert spec.attention.kind == "mha"
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 0 and "warning: " in r.stderr and "assumed MHA" in r.stderr


def test_an_unknown_model_type_missing_essentials_names_them(tmp_path):
    path = write_config(tmp_path, model_type="newarch", intermediate_size=None)
    with pytest.raises(KvcalcError, match=r"missing essential field\(s\): intermediate_size"):
        load_model(str(path))


def test_an_irregular_layer_types_list_is_counted(tmp_path):
    """Gemma 3 with any layer_types: 5 global layers placed irregularly among 26 are counted as 5 global and 21
    windowed (gemma-3-1b's 512 tokens), so the KV per sequence at 8K is 5 x 8192 + 21 x 512 tokens a layer."""
    config = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    types = ["sliding_attention"] * 26
    for i in (0, 3, 11, 12, 25):
        types[i] = "full_attention"
    (tmp_path / "config.json").write_text(json.dumps({**config, "layer_types": types}))
    spec, _ = load_hf_spec(tmp_path)
    assert (spec.global_layers, spec.window_layers) == (5, 21)
    from kvcalc.formulas.kv import kv_bytes_per_sequence, kv_bytes_per_token_per_layer

    per = kv_bytes_per_token_per_layer(spec.attention, 2.0)
    assert kv_bytes_per_sequence(spec, 8192, 2.0) == per * (5 * 8192 + 21 * 512)


# Structure from the fields, whatever the model_type (kvcalc issue 23)


def test_phi_2_has_two_mlp_projections_with_biases():
    """Phi-2: fc1 2560 x 10240 and fc2 10240 x 2560, both biased (not three SwiGLU matrices), one LayerNorm a layer
    feeding attention and MLP side by side, partial RoPE 0.4 x 80 = 32 dims. HF PhiForCausalLM.num_parameters():
    2,779,683,840 (= its index's 5,559,367,680 fp16 bytes / 2), the lm_head bias (51,200) included (the seventh
    audit, B10)."""
    spec, assumptions = load_hf_spec(HF / "phi-2")
    assert assumptions == []
    parts = params_breakdown(spec)
    assert parts["mlp"] == 32 * (2 * 2560 * 10240 + 10240 + 2560)
    assert total_params(spec) == 2_779_683_840
    assert (spec.rotary_width, spec.norms_per_layer, spec.norm) == (32, 1, "layernorm")


def test_gpt_j_field_names_are_read_not_refused():
    """GPT-J-6B (n_layer / n_embd / n_head / rotary_dim): per layer ln_1 (w, b), q, k, v, out without bias, fc_in
    4096 x 16384 and fc_out with biases; ln_f; untied lm_head with its bias (50,400). Worked by hand:
    206,438,400 + 28 x 201,355,264 + 8,192 + 206,438,400 + 50,400; the model card gives 6,053,381,344 parameters."""
    spec, assumptions = load_hf_spec(HF / "gpt-j-6b")
    assert assumptions == []
    assert total_params(spec) == 206_438_400 + 28 * 201_355_264 + 8_192 + 206_438_400 + 50_400
    assert total_params(spec) == pytest.approx(6_053_381_344, rel=1e-3)
    assert spec.rotary_width == 64 and spec.attention.kind == "mha"


def test_minimax_m2_is_read_as_the_230b_moe_it_is():
    """MiniMax-M2 (model card: 230B total, 10B activated): 256 experts of width 1536 (its intermediate_size), top-8,
    in all 62 layers; fp8 with 128 x 128 block scales, gate and lm_head bf16. Read as a dense Llama it was 2.9 GiB
    of weights; its fp8 weights are 214 GiB, 107 GiB a GPU at TP 2, what vLLM loads (kvcalc issue 23)."""
    spec, _ = load_hf_spec(HF / "MiniMax-M2")
    assert (spec.moe.num_experts, spec.moe.top_k, spec.moe.expert_intermediate_size) == (256, 8, 1536)
    assert spec.moe_layers == 62 and spec.attention.rotary_dim == 64 and spec.attention.qk_norm
    assert total_params(spec) == pytest.approx(230e9, rel=0.01)
    parts = params_breakdown(spec, active=True)
    assert parts["total"] - parts["embedding"] - parts["lm_head"] == pytest.approx(10e9, rel=0.03)
    e = estimate(str(HF / "MiniMax-M2"), "h100", tp=2)
    assert e.inputs.weight_dtype == "fp8-block"
    assert e.weights.bytes / 2**30 == pytest.approx(214, rel=0.01)
    assert e.memory.weights_bytes / 2**30 == pytest.approx(107, rel=0.01)  # one GPU of two


def test_an_unknown_model_type_with_moe_fields_is_read_as_moe_with_each_choice_named(tmp_path):
    config = json.loads((HF / "MiniMax-M2" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "newmoe"}))
    spec, assumptions = load_hf_spec(tmp_path)
    assert total_params(spec) == total_params(load_hf_spec(HF / "MiniMax-M2")[0])
    said = " ".join(assumptions)
    assert "not a known family" in said and "expert width: intermediate_size" in said


def test_granitemoe_is_read_from_its_fields():
    """granite-3.1-1b-a400m (model_type granitemoe, no kvcalc reader): 32 experts of width 512, top-8, tied
    embeddings; its float32 index holds 5,338,513,408 B = 1,334,628,352 parameters x 4."""
    spec, assumptions = load_hf_spec(HF / "granite-3.1-1b-a400m-instruct")
    assert (spec.moe.num_experts, spec.moe.top_k, spec.moe.expert_intermediate_size) == (32, 8, 512)
    assert total_params(spec) == 5_338_513_408 // 4
    assert any("granitemoe" in a for a in assumptions)


def test_llama_3_1_405b_fp8_keeps_attention_and_two_mlps_in_bf16():
    """Meta's fbgemm_fp8 checkpoint leaves every layer's q/k/v/o and the MLPs of layers 0 and 125 in bf16
    (modules_to_not_convert). By hand: fp8 MLPs in 124 layers (3 x 16384 x 53248 each, 1 B), bf16 for the rest;
    read as all-fp8 the weights came out 17 % low (kvcalc issue 23)."""
    spec, _ = load_hf_spec(HF / "Llama-3.1-405B-FP8")
    assert spec.quantization.weight_format == "fp8" and "attention" not in spec.quantization.quantized
    mlp = 3 * 16384 * 53248
    fp8 = 124 * mlp
    e = estimate(str(HF / "Llama-3.1-405B-FP8"), "h100")
    assert e.weights.bytes == fp8 + (total_params(spec) - fp8) * 2
    all_fp8 = (total_params(spec) - 2 * 128256 * 16384 - (126 * 2 + 1) * 16384) + (2 * 128256 + 253) * 16384 * 2
    assert 1 - all_fp8 / e.weights.bytes == pytest.approx(0.16, abs=0.01)


def mimo_like(tmp_path, **changes):
    """MiMo-7B's config under a model_type kvcalc does not know, read from its fields (MiMo itself is read as the
    Qwen2 it is built on)."""
    config = json.loads((HF / "MiMo-7B" / "config.json").read_text())
    config.pop("num_nextn_predict_layers")
    config["model_type"] = "qwen2_like_unknown"
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path / "config.json"


@pytest.mark.parametrize("changes, message", [
    ({"ssm_state_size": 128}, "ssm_state_size: layers other than softmax attention"),
    ({"hybrid_override_pattern": "M*" * 18}, "hybrid_override_pattern: layers other than softmax attention"),
    ({"layer_types": ["linear_attention", "full_attention"] * 18}, "layer_types: 'linear_attention' layers"),
    ({"attn_type_list": [0, 1] * 18}, "attn_type_list: entries other than 1"),
    ({"moe_intermediate_size": 512}, "moe_intermediate_size is set but no expert count"),
    ({"num_experts": 64}, "missing essential field(s): num_experts_per_tok|moe_top_k"),
    ({"num_experts": 64, "num_experts_per_tok": 4, "mlp_only_layers": [0]}, "mlp_only_layers: dense layers"),
])
def test_a_structure_kvcalc_cannot_infer_is_a_one_line_error_naming_the_field(tmp_path, changes, message):
    path = mimo_like(tmp_path, **changes)
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 2, r.stdout
    assert r.stderr.count("\n") == 1 and f"{path}: " in r.stderr and message in r.stderr


def test_unknown_qwen2_style_config_keeps_its_sliding_window_off(tmp_path):
    """MiMo carries sliding_window 32768 with use_sliding_window false, as Qwen2 does: every layer attends fully."""
    spec, _ = load_hf_spec(mimo_like(tmp_path))
    assert spec.attention.sliding_window is None and spec.global_layers == 36


# Quantisation configs as checkpoints write them


def qc_spec(tmp_path, qc):
    config = json.loads((HF / "Qwen3-0.6B" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "quantization_config": qc}))
    return load_hf_spec(tmp_path)[0].quantization


@pytest.mark.parametrize("qc, fmt", [
    ({"quant_method": "gptq", "bits": "4", "group_size": 128}, "int4-g128"),  # audit U2: bits as a string
    ({"quant_method": "gptq", "bits": 8.0, "group_size": "128"}, "int8-g128"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128.0}, "int4-g128"),  # audit U2: not int4-g128.0
    ({"quant_method": "awq", "w_bit": 4, "q_group_size": 64}, "int4-g64"),  # AutoAWQ's own names
    ({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0}, "fp8"),
    ({"quant_method": "modelopt", "quantization": {"quant_algo": "FP8"}}, "fp8"),  # hf_quant_config.json layout
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {
        "type": "int", "num_bits": 4, "group_size": 128, "symmetric": True}}}}, "int4"),  # no zero points stored
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {
        "type": "float", "num_bits": 4, "group_size": 16}}}}, "nvfp4"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {
        "type": "float", "num_bits": 8, "strategy": "block", "block_structure": [128, 128]}}}}, "fp8-block"),
])
def test_quantization_configs_are_read_as_their_writers_spell_them(tmp_path, qc, fmt):
    assert qc_spec(tmp_path, qc).weight_format == fmt


def test_ignore_lists_and_targets_decide_what_stays_bf16(tmp_path):
    ct = {"quant_method": "compressed-tensors", "ignore": ["lm_head", "re:.*self_attn.*", "re:.*mlp.gate$"],
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"type": "float", "num_bits": 8}}}}
    assert qc_spec(tmp_path, ct).quantized == ["mlp", "experts", "shared_experts"]
    vision = {**ct, "ignore": ["lm_head", "re:visual.*", "model.vision_tower.blocks.0.attn.qkv"]}  # a VLM's tower
    assert qc_spec(tmp_path, vision).quantized == ["attention", "mlp", "experts", "shared_experts"]
    experts_only = {"quant_method": "compressed-tensors", "config_groups": {"g": {
        "targets": ["re:.*mlp.experts.*"], "weights": {"type": "int", "num_bits": 4, "group_size": 32,
                                                                  "symmetric": False}}}}
    moe = json.loads((HF / "Qwen3-30B-A3B" / "config.json").read_text())  # (a dense model has no experts to hold
    (tmp_path / "config.json").write_text(json.dumps({**moe, "quantization_config": experts_only}))  # them: refused)
    assert load_hf_spec(tmp_path)[0].quantization.quantized == ["experts"]
    modelopt = {"quant_method": "modelopt", "quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                             "exclude_modules": ["lm_head", "model.layers.*.self_attn*"]}}
    q = qc_spec(tmp_path, modelopt)
    assert (q.weight_format, q.quantized) == ("nvfp4", ["mlp", "experts", "shared_experts"])
    per_layer = {"quant_method": "fbgemm_fp8", "modules_to_not_convert": ["lm_head"] + [
        f"model.layers.{i}.mlp.{proj}" for i in (0, 27) for proj in ("down_proj", "up_proj", "gate_proj")]}
    assert qc_spec(tmp_path, per_layer).kept_layers == {"mlp": 2}  # (part of a layer's MLP is refused: H9)


@pytest.mark.parametrize("qc, message", [
    # audit F8: a non-object "weights" was an AttributeError
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": ["int", 4]}}},
     "quantization_config config_groups.g.weights: expected an object"),
    # audit U2: the problem is bits, and the message says so
    ({"quant_method": "gptq", "bits": 3, "group_size": 128}, "quantization_config bits 3: kvcalc stores 4- or 8-bit"),
    ({"quant_method": "awq", "bits": 4, "group_size": 96}, "quantization_config group_size 96: kvcalc stores"),
    ({"quant_method": "gptq", "bits": "four", "group_size": 128}, "quantization_config bits: expected a whole number"),
    ({"quant_method": "compressed-tensors", "config_groups": {
        "a": {"targets": ["re:.*self_attn.*"], "weights": {"type": "float", "num_bits": 8}},
        "b": {"targets": ["re:.*mlp.*"], "weights": {"type": "int", "num_bits": 4, "group_size": 128}}}},
     "config_groups store weights in 2 formats"),
    ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION"}, "quant_algo 'MIXED_PRECISION'"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "quant_method 'bitsandbytes' is not one kvcalc reads"),
    ("fp8", "quantization_config: expected an object"),
])
def test_a_quantization_config_kvcalc_cannot_store_is_one_line_naming_the_field(tmp_path, qc, message):
    config = json.loads((HF / "Qwen3-0.6B" / "config.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "quantization_config": qc}))
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr and "int4-g128.0" not in r.stderr
    if isinstance(qc, dict) and qc.get("quant_method") == "gptq":
        assert "quant_method" not in r.stderr  # the method is fine; only the bits are not


def test_a_dense_family_that_names_experts_is_read_as_moe_not_guessed_dense(tmp_path):
    """A llama model_type carrying Mixtral's expert fields (as a merged fine-tune keeps them) is read as the MoE the
    fields describe: Mixtral-8x7B's config relabelled llama gives Mixtral's parameters, with the choice named."""
    cfg = json.loads((HF / "Mixtral-8x7B-v0.1" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    spec, assumptions = load_hf_spec(tmp_path)
    assert total_params(spec) == total_params(load_hf_spec(HF / "Mixtral-8x7B-v0.1")[0]) == 46_702_792_704
    assert any("num_local_experts 8 in a dense model_type" in a for a in assumptions)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "llama", "kv_lora_rank": 512}))
    with pytest.raises(KvcalcError, match="kv_lora_rank: a latent"):
        load_hf_spec(tmp_path)


@given(group=st.sampled_from([32, 64, 128]), spell=st.sampled_from([int, float, str]),
       method=st.sampled_from(["awq", "gptq"]))
def test_a_whole_number_reads_the_same_however_it_is_written(group, spell, method):
    """bits 4 and group_size N as 4 / 4.0 / "4": one format, int4-gN (audit U2)."""
    from kvcalc.specs.hf import quantization_from_config

    q = quantization_from_config({"quant_method": method, "bits": spell(4), "group_size": spell(group)}, "config.json")
    assert q["weight_format"] == f"int4-g{group}"


@pytest.mark.parametrize("folder, total", [
    ("gpt2", 124_439_808),  # HF GPT2LMHeadModel.num_parameters()
    ("falcon-7b", None),  # the bundled falcon-7b's count, from its own reader
    ("gpt-j-6b", 206_438_400 + 28 * 201_355_264 + 8_192 + 206_438_400 + 50_400),  # worked by hand above
])
def test_gpt2_gptj_and_falcon_naming_is_recognised_under_any_model_type(tmp_path, folder, total):
    cfg = json.loads((HF / folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "renamed"}))
    spec, assumptions = load_hf_spec(tmp_path)
    assert total_params(spec) == (total or total_params(load_model("falcon-7b")))
    assert any("field names" in a for a in assumptions)
