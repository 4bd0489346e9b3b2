"""Regression tests for the eleventh audit's left list and the twelfth hostile audit (docs/validation.md, "Twelfth
hostile audit"), each named after its finding."""

from __future__ import annotations

import json

import pytest

from tests.test_fifth_audit import one_line_error
from tests.test_tenth_audit import _llama3


# --- config.json ---

def test_a_key_given_twice_in_config_json_is_named_with_both_values(tmp_path):
    """Python's json keeps the last of two values for one key (transformers reads it so); the eleventh audit's left
    list: num_key_value_heads 8 then 32 had been read as MHA in silence, KV 4x. Meta-Llama-3-8B with 32 KV heads:
    2 x 32 layers x 32 heads x 128 x 2 B = 524,288 B a token, and the warning names both values."""
    from kvcalc.formulas.kv import kv_bytes_per_token
    from kvcalc.specs.hf import load_hf_spec

    text = json.dumps(_llama3()).rstrip("}") + ', "num_key_value_heads": 32}'
    (tmp_path / "config.json").write_text(text)
    spec, warned = load_hf_spec(tmp_path)
    assert kv_bytes_per_token(spec, 2) == 2 * 32 * 32 * 128 * 2
    assert "key 'num_key_value_heads' is given twice (8, then 32)" in " ".join(warned)
    (tmp_path / "config.json").write_text(json.dumps(_llama3()).rstrip("}") + ', "num_key_value_heads": 8}')
    assert not [w for w in load_hf_spec(tmp_path)[1] if "given twice" in w]  # the same value twice says nothing


def test_h7_a_field_missing_from_text_config_is_named_as_text_configs(tmp_path):
    llama = _llama3()
    del llama["num_hidden_layers"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": llama,
                                                      "vision_config": {"hidden_size": 1024}}))
    line = one_line_error(["estimate", "-m", str(tmp_path), "-g", "h100"])
    assert "config.json: text_config: missing essential field(s): num_hidden_layers" in line


def _load(tmp_path, config: dict):
    from kvcalc.specs.hf import load_hf_spec

    (tmp_path / "config.json").write_text(json.dumps(config))
    return load_hf_spec(tmp_path)


def test_h5_phi_3_5_moe_counts_its_layernorm_biases_and_lm_head_bias(tmp_path):
    """Phi-3.5-MoE-instruct's published config (microsoft/Phi-3.5-MoE-instruct): PhimoeForCausalLM's norms are
    nn.LayerNorm with a bias, its lm_head has bias=config.lm_head_bias, and LlamaAttention biases q, k, v and o with
    attention_bias. By hand: 41,873,153,344 (the card's "41.9B"); 298,304 had been missing."""
    from kvcalc.formulas.params import total_params

    spec, _ = _load(tmp_path, {
        "attention_bias": True, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 6400,
        "lm_head_bias": True, "max_position_embeddings": 131072, "model_type": "phimoe", "num_attention_heads": 32,
        "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 16,
        "rms_norm_eps": 1e-05, "sliding_window": 131072, "tie_word_embeddings": False, "vocab_size": 32064})
    d, layers, vocab, f, experts = 4096, 32, 32064, 6400, 16
    attention = (d * 4096 + 4096) + 2 * (d * 1024 + 1024) + (4096 * d + 4096)
    by_hand = 2 * vocab * d + vocab + layers * (attention + d * experts + experts * 3 * d * f) + (2 * layers + 1) * 2 * d
    assert total_params(spec) == by_hand == 41_873_153_344


def test_h5_glm_4_0414_has_four_norms_a_layer_and_no_o_proj_bias(tmp_path):
    """GLM-4-9B-0414's published config: Glm4DecoderLayer's four RMSNorms, Glm4Attention's o_proj bias=False.
    By hand: 9,400,279,040 (163,840 had been missing: two norms short, an o_proj bias over)."""
    from kvcalc.formulas.params import total_params

    spec, warned = _load(tmp_path, {
        "attention_bias": True, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 13696,
        "max_position_embeddings": 32768, "model_type": "glm4", "num_attention_heads": 32, "num_hidden_layers": 40,
        "num_key_value_heads": 2, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
        "vocab_size": 151552})
    d, layers, vocab, f = 4096, 40, 151552, 13696
    by_hand = 2 * vocab * d + layers * ((d * 4096 + 4096) + 2 * (d * 256 + 256) + 4096 * d + 3 * d * f + 4 * d) + d
    assert total_params(spec) == by_hand == 9_400_279_040
    assert not [w for w in warned if "not a known family" in w]


def test_h5_glm_4_5_air_has_no_o_proj_bias_and_keeps_its_router_bias(tmp_path):
    """GLM-4.5-Air's published config, without topk_method (Glm4MoeTopkRouter keeps e_score_correction_bias
    regardless): 106,852,251,264 by hand (the card's "106B total"; the multi-token-prediction layer apart)."""
    from kvcalc.formulas.params import total_params

    spec, _ = _load(tmp_path, {
        "attention_bias": True, "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 10944,
        "max_position_embeddings": 131072, "model_type": "glm4_moe", "moe_intermediate_size": 1408,
        "norm_topk_prob": True, "num_attention_heads": 96, "n_group": 1, "topk_group": 1, "n_routed_experts": 128,
        "n_shared_experts": 1, "routed_scaling_factor": 1.0, "num_experts_per_tok": 8, "first_k_dense_replace": 1,
        "num_hidden_layers": 46, "num_key_value_heads": 8, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05,
        "tie_word_embeddings": False, "vocab_size": 151552, "num_nextn_predict_layers": 1, "use_qk_norm": False})
    d, layers, vocab, experts, width, f = 4096, 46, 151552, 128, 1408, 10944
    attention = (d * 96 * 128 + 96 * 128) + 2 * (d * 8 * 128 + 8 * 128) + 96 * 128 * d
    moe_layer = d * experts + experts + experts * 3 * d * width + 3 * d * width  # router, its bias, experts, shared
    by_hand = 2 * vocab * d + layers * (attention + 2 * d) + d + 3 * d * f + (layers - 1) * moe_layer
    assert total_params(spec) == by_hand == 106_852_251_264


def test_h5_deepseek_v3_2_counts_its_indexers_key_norm(tmp_path):
    """DeepSeek-V3.2's lightning indexer a layer (DeepSeek-V3.2-Exp inference/model.py, Indexer): wq_b q_lora_rank x
    heads x head_dim, wk d x head_dim, weights_proj d x heads, and k_norm, a LayerNorm of head_dim with its bias."""
    from pathlib import Path

    from kvcalc.formulas.params import total_params

    v3 = json.loads((Path(__file__).resolve().parent / "fixtures/hf/DeepSeek-V3/config.json").read_text())
    base, _ = _load(tmp_path, v3)
    v32, _ = _load(tmp_path, {**v3, "model_type": "deepseek_v32", "index_topk": 2048, "index_n_heads": 64,
                              "index_head_dim": 128})
    assert total_params(v32) - total_params(base) == 61 * (1536 * 64 * 128 + 7168 * 128 + 7168 * 64 + 2 * 128)


# --- plan ---

def test_p4_replicas_held_at_the_cap_under_a_gpu_budget_are_named():
    """--gpu-budget 10,000 with a 1-GPU layout: 9,999 replicas (plan's cap, MAX_REPLICAS - 1) and a note saying the
    budget holds more; at 100 GPUs nothing binds and nothing is said (the eleventh audit, P4)."""
    from tests.test_tenth_audit import _plan_json

    args = ["-m", "qwen3-32b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--max-tpot-ms", "60", "--no-disaggregate",
            "--gpu-budget"]  # (a 2P:1D replica of 3 GPUs serves more since the fourteenth audit's S2; the cap is 1-GPU)
    capped = _plan_json([*args, "10000"])["choice"]
    assert capped["gpus_per_replica"] == 1 and capped["replicas"] == 9_999
    assert capped["replicas_note"].startswith("held at plan's cap of 9,999 replicas")
    assert "replicas_note" not in _plan_json([*args, "100"])["choice"]  # no null note (the fortieth audit, outputs 4)


def test_p1_at_a_request_rate_plan_times_a_replica_at_the_load_serve_finds():
    """Llama-3.1-8B on H100s at 40 requests/s: plan had timed its one replica at the chord's 226 in flight (TPOT
    27.9 ms) where serve carries 40/s at 207 (25.9 ms); both commands now agree within 0.5 % (the eleventh audit, P1)."""
    from kvcalc.serving.closed_form import serve
    from tests.test_tenth_audit import _plan_json

    c = _plan_json(["-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--request-rate", "40"])["choice"]
    s = serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=200, request_rate=40, tp=c["tensor_parallel"],
              pp=c["pipeline_parallel"], engine=c["engine"], weight_dtype=c["weight_dtype"], kv_dtype=c["kv_dtype"],
              step_tokens=c["max_num_batched_tokens"])
    assert c["replicas"] == s["replicas"]
    assert c["in_flight_per_replica"] == pytest.approx(s["concurrency"] / s["replicas"], rel=5e-3)
    assert c["tpot_ms"] == pytest.approx(s["tpot_ms"], rel=5e-3) and c["ttft_ms"] == pytest.approx(s["ttft_ms"], rel=5e-3)


def _quantised(tmp_path, qc: dict) -> str:
    (tmp_path / "config.json").write_text(json.dumps(_llama3(quantization_config=qc)))
    return str(tmp_path)


FP8_GROUP = {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel"}}


def test_h8_an_ignore_pattern_that_backtracks_exponentially_is_refused_at_once(tmp_path):
    """'re:(.+)+X' against a 31-character module name tries 2^31 ways: every command had hung; vLLM's own patterns
    (a few '.*', alternatives side by side) still read."""
    qc = {"quant_method": "compressed-tensors", "config_groups": {"g": FP8_GROUP}, "ignore": ["lm_head", "re:(.+)+X"]}
    line = one_line_error(["estimate", "-m", _quantised(tmp_path, qc), "-e", "roofline"])
    assert "'re:(.+)+X': a repeat inside a repeat" in line
    from kvcalc.specs.hf import _backtracking_risk

    assert _backtracking_risk(".*self_attn.(q|k|v)_proj$") is None and _backtracking_risk(".*mlp.*") is None
    assert _backtracking_risk("(a|ab)*c") == "alternatives inside a repeat"
    assert "unbounded repeats" in _backtracking_risk(".*a" * 12)


@pytest.mark.parametrize("field, value, message", [
    ("block_structure", 128, "block_structure: expected a list of two sizes ([128, 128]), got 128"),
    ("targets", [{"x": 1}], "g.targets: expected a list of module names"),
    ("ignore", ["lm_head", 5], "ignore: expected a list of module names"),
    ("sparsity_config", "2:4", "sparsity_config: expected an object, got '2:4'"),
])
def test_h10_wrong_types_in_a_compressed_tensors_config_are_one_line_errors(tmp_path, field, value, message):
    """A number for block_structure had ended in a TypeError traceback; object targets had quantised nothing (an fp8
    checkpoint sized as bf16); non-string ignore entries were dropped; a string sparsity_config was ignored."""
    group = {**FP8_GROUP, "weights": {**FP8_GROUP["weights"], "strategy": "block"}}
    if field == "block_structure":
        group["weights"]["block_structure"] = value
    elif field == "targets":
        group["targets"] = value
    qc = {"quant_method": "compressed-tensors", "config_groups": {"g": group}}
    if field in ("ignore", "sparsity_config"):
        qc[field] = value
    assert message in one_line_error(["estimate", "-m", _quantised(tmp_path, qc), "-e", "roofline"])


def test_h6_a_modelopt_kv_format_other_than_fp8_is_warned_of_and_an_unknown_one_refused(tmp_path):
    """TensorRT-LLM's QuantConfig reads kv_cache_quant_algo FP8, INT8 and NVFP4; NVFP4 and INT8 had been ignored in
    silence (the KV sized at bf16, 3.6x nvfp4's), and an unknown value accepted."""
    from kvcalc.specs.hf import load_hf_spec

    qc = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head"]}
    for algo, fmt in (("NVFP4", "nvfp4"), ("INT8", "int8"), ("FP8", "fp8")):
        _, warned = load_hf_spec(_quantised(tmp_path, {**qc, "kv_cache_quant_algo": algo}))
        assert any(f"stores its KV cache in {fmt}" in w and f"--kv-dtype {fmt}" in w for w in warned)
    line = one_line_error(["estimate", "-m", _quantised(tmp_path, {**qc, "kv_cache_quant_algo": "BANANA"})])
    assert "kv_cache_quant_algo 'BANANA': expected one of FP8, INT8, NVFP4" in line


def test_h2_qwen_v1_reads_each_mlp_matrix_as_half_its_intermediate_size(tmp_path):
    """Qwen/Qwen-7B's config (modeling_qwen.py: w1, w2 d x intermediate_size / 2, c_attn biased): by hand
    2 x 151,936 x 4,096 + 32 x (4,096 x 12,288 + 12,288 + 4,096^2 + 3 x 4,096 x 11,008 + 2 x 4,096) + 4,096 =
    7,721,324,544 (the card's 7.7B); 12,049,453,056 had been read."""
    from kvcalc.formulas.params import total_params

    spec, warned = _load(tmp_path, {
        "hidden_size": 4096, "intermediate_size": 22016, "kv_channels": 128, "max_position_embeddings": 8192,
        "model_type": "qwen", "no_bias": True, "num_attention_heads": 32, "num_hidden_layers": 32, "rotary_pct": 1.0,
        "seq_length": 8192, "tie_word_embeddings": False, "vocab_size": 151936})
    layer = 4096 * 12288 + 12288 + 4096 ** 2 + 3 * 4096 * 11008 + 2 * 4096
    assert total_params(spec) == 2 * 151936 * 4096 + 32 * layer + 4096 == 7_721_324_544
    assert not warned


def test_h3_internlm_and_stablelm_read_the_biases_their_configs_name(tmp_path):
    """internlm-7b (bias: true on q, k, v and o): 7,321,423,872 + 32 x 4 x 4,096 = 7,321,948,160; stablelm-2-1.6b
    (use_qkv_bias, LayerNorms with a bias): + 24 x 3 x 2,048 + (2 x 24 + 1) x 2,048 = 1,644,515,328."""
    from kvcalc.formulas.params import total_params

    internlm, _ = _load(tmp_path, {"model_type": "internlm", "bias": True, "hidden_act": "silu", "hidden_size": 4096,
                                   "intermediate_size": 11008, "max_position_embeddings": 2048,
                                   "num_attention_heads": 32, "num_hidden_layers": 32, "tie_word_embeddings": False,
                                   "vocab_size": 103168})
    assert total_params(internlm) == 7_321_423_872 + 32 * 4 * 4096 == 7_321_948_160
    stablelm, _ = _load(tmp_path, {"model_type": "stablelm", "hidden_act": "silu", "hidden_size": 2048,
                                   "intermediate_size": 5632, "max_position_embeddings": 4096,
                                   "num_attention_heads": 32, "num_hidden_layers": 24, "num_key_value_heads": 32,
                                   "partial_rotary_factor": 0.25, "qk_layernorm": False, "tie_word_embeddings": False,
                                   "use_parallel_residual": False, "use_qkv_bias": True, "vocab_size": 100352})
    d = 2048
    by_hand = 2 * 100352 * d + 24 * (4 * d * d + 3 * d + 3 * d * 5632) + (2 * 24 + 1) * 2 * d
    assert total_params(stablelm) == by_hand == 1_644_515_328


def test_h4_gemma_3_4b_it_takes_gemma3textconfigs_defaults(tmp_path):
    """google/gemma-3-4b-it's text_config names six fields; Gemma3TextConfig supplies vocab_size 262,208, 8 heads,
    4 KV heads, head_dim 256 and one global layer in 6. Its text model by hand: 262,208 x 2,560 (tied) + 34 x
    (2 x 2,560 x 2,048 + 2 x 2,560 x 1,024 + 2 x 256 + 3 x 2,560 x 10,240 + 4 x 2,560) + 2,560 = 3,880,263,168."""
    from kvcalc.formulas.params import params_breakdown

    spec, warned = _load(tmp_path, {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "patch_size": 14, "vision_use_head": False}})
    parts = params_breakdown(spec)
    assert parts["total"] - parts.get("vision", 0) == 3_880_263_168
    assert "num_attention_heads absent: 8, gemma3_text's transformers default" in warned


def test_h9_llama_4_layer_lists_other_than_the_defaults_are_refused(tmp_path):
    maverick = {"model_type": "llama4_text", "hidden_size": 5120, "intermediate_size": 8192,
                "intermediate_size_mlp": 16384, "num_hidden_layers": 48, "num_attention_heads": 40,
                "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 202048, "num_local_experts": 128,
                "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "tie_word_embeddings": False,
                "attention_chunk_size": 8192, "use_qk_norm": True, "max_position_embeddings": 1048576}
    from kvcalc.formulas.params import total_params

    spec, _ = _load(tmp_path, {**maverick, "moe_layers": list(range(1, 48, 2)), "no_rope_layers": []})
    assert total_params(spec) == 400_711_848_960  # the defaults, spelt out, read as before
    (tmp_path / "config.json").write_text(json.dumps({**maverick, "moe_layers": [1, 3]}))
    assert "moe_layers [1, 3]: kvcalc places a MoE layer every" in one_line_error(["estimate", "-m", str(tmp_path)])
    (tmp_path / "config.json").write_text(json.dumps({**maverick, "no_rope_layers": [1] * 48}))
    assert "no_rope_layers" in one_line_error(["estimate", "-m", str(tmp_path)])


# --- the core commands (part E) ---

def test_e4_a_mamba2_hybrid_refuses_a_tp_that_does_not_divide_its_groups():
    """vLLM's MambaMixer2 asserts n_groups % tp == 0 (or one group): Nemotron-H-8B's 8 groups run at TP 1-8."""
    line = one_line_error(["estimate", "-m", "nemotron-h-8b", "-g", "h200", "--tp", "16"])
    assert "needs it to divide the 8 Mamba-2 groups" in line


def test_e5_estimate_refuses_context_0_without_a_prompt_as_its_siblings_do():
    line = one_line_error(["estimate", "-m", "llama-3-8b", "-c", "0"])
    assert line.startswith("kvcalc: error: --context: expected a whole number from 1")
    import kvcalc

    assert kvcalc.estimate("llama-3-8b", "h100-sxm", context=0, prompt=100).prefill.ms > 0  # a prefill alone


def test_e9_sweep_takes_loaded_specs_as_estimate_does():
    import kvcalc

    model, gpu = kvcalc.load_model("llama-3-8b"), kvcalc.load_gpu("h200")
    row = kvcalc.sweep([model], [gpu]).iloc[0]
    assert (row["model"], row["gpu"]) == ("llama-3-8b", gpu.name)
    assert row["decode_ms"] == pytest.approx(kvcalc.estimate(model, gpu).decode.ms)


# --- serve and plan messages ---

def test_p1_a_frontier_with_a_request_rate_names_the_rate_and_a_tp_list_needs_any_concurrency():
    args = ["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "10"]
    assert "--request-rate: a frontier (a list of --concurrency or --tp) runs at fixed concurrencies" in (
        one_line_error([*args, "-n", "1,2", "--request-rate", "3"]))
    assert "--tp: several degrees make a frontier, which needs --concurrency" in one_line_error([*args, "--tp", "1,2"])
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    r = TestClient(create_app()).get("/api/serve", params=dict(model="llama-3.1-8b", input_len=100, output_len=10,
                                                                concurrency="1,2", request_rate=3))
    assert r.status_code == 422 and r.json()["field"] == "--request-rate"


def test_p3_an_unmeetable_tpot_limit_is_named_as_max_tpot_ms():
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "10", "-n", "max",
                           "--max-tpot-ms", "1"])
    assert line.startswith("kvcalc: error: --max-tpot-ms: no number of replicas meets it: one request alone takes TPOT")


def test_p7_plan_with_only_engines_that_cannot_load_the_model_says_why():
    line = one_line_error(["plan", "-m", "gemma-2-9b", "--engines", "trtllm", "--request-rate", "1", "-i", "100",
                           "-o", "100"])
    assert "--engines: TensorRT-LLM's PyTorch back end has no model class for gemma2" in line


def test_p8_a_gpu_priced_under_two_names_or_not_searched_is_refused():
    args = ["plan", "-m", "llama-3.2-3b", "-i", "100", "-o", "10", "--request-rate", "1", "-g", "h100-sxm",
            "--price-per-gpu-hour"]
    assert "h100 is h100-sxm, already priced as h100-sxm" in one_line_error([*args, "h100-sxm=2,h100=3"])
    assert "h200 is not among the GPUs searched" in one_line_error([*args, "h100-sxm=2,h200=7"])


def test_s12_arrival_modes_of_the_simulation_ask_for_simulate():
    args = ["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "10", "-n", "4", "--arrivals"]
    assert "'poisson' is an arrival mode of the simulation: add --simulate" in one_line_error([*args, "poisson"])
    assert "(the CLI's staggered and waves too)" in one_line_error([*args, "bogus", "--simulate"])


def test_s5_prompt_steps_past_the_simulators_rounds_are_refused_at_once():
    """1,000 prompts of 1,000 tokens at --step-tokens 1 are 1,000,000 one-token steps, each a scheduler round: past
    the 500,000 the simulator runs, it had failed after 30-50 s."""
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "20", "-n", "1", "--engine",
                           "sglang", "--step-tokens", "1", "--simulate"])
    assert "take at least 1,000,000 steps of at most 1 token, each a scheduler round" in line


def test_s1_a_disaggregated_simulation_warns_of_a_rate_it_cannot_keep_up_with():
    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    out = runner.invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "h100", "-i", "4000", "--output-len", "200",
                              "--simulate", "--request-rate", "200", "--num-prompts", "400", "--disaggregate", "1:1",
                              "-f", "json"])
    d = json.loads(out.stdout)
    assert any(w.startswith("200 requests/s arrive where this deployment serves") for w in d["warnings"])


# --- calibrate (part E) ---

def _bench(max_concurrency, completed, **extra) -> dict:
    return {"backend": "vllm", "num_prompts": completed, "request_rate": "inf", "max_concurrency": max_concurrency,
            "completed": completed, "total_input_tokens": 1000 * completed, "total_output_tokens": 200 * completed,
            "request_throughput": 1.0, "mean_ttft_ms": 80.0, "mean_tpot_ms": 12.0, **extra}


def test_e1_a_benchmark_runs_no_more_requests_in_flight_than_it_sent_or_its_rate_keeps(tmp_path):
    """vllm bench serve gates num_prompts requests through asyncio.Semaphore(max_concurrency): 16 requests under a
    cap of 1,024 are 16 in flight (they had been timed at 1,024 and refused as faster than light); with a finite
    --request-rate, Little's law: 1 request/s x 1.632 s = 1.632 in flight under a cap of 256."""
    from kvcalc.validate.calibrate import read_benchmark

    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (
        _bench(1024, 16), _bench(256, 100, request_rate=1.0, mean_e2el_ms=1632.0), _bench(8, 100))))
    runs = read_benchmark(path)
    assert [r["concurrency"] for r in runs] == [16, pytest.approx(1.632), 8]


def test_e7_a_draft_models_weights_a_gpu_are_what_kvcalc_sizes_that_model_at():
    """Llama-3.2-1B as the draft of Llama-3.1-70B at TP 8: every GPU keeps its 67,584 norm weights whole, as the same
    model served alone at TP 8: 309,071,872 B a GPU, not its total / 8 (118,272 B short)."""
    import kvcalc

    d = kvcalc.estimate("llama-3.1-70b", "h100-sxm", tp=8, batch=4, context=2048,
                        speculate="draft=llama-3.2-1b,k=4,alpha=0.7").to_json_dict()
    alone = kvcalc.estimate("llama-3.2-1b", "h100-sxm", tp=8).to_json_dict()
    assert d["speculative"]["draft_weights_bytes"] == alone["memory"]["weights_bytes"] == 309_071_872


def test_e3_compare_and_roofline_warn_of_a_context_past_the_models_positions():
    import warnings

    import kvcalc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = kvcalc.compare("llama-3-8b", context=200_000)
        kvcalc.plot.roofline(["h100-sxm"], "llama-3-8b", context=200_000)
    said = "context 200,000 exceeds llama-3-8b's max_position_embeddings 8,192"
    assert said in rows[0]["warnings"]
    assert sum(said in str(w.message) for w in caught) >= 2


# --- serving (part S) ---

def test_s3_a_lone_request_at_a_one_token_budget_prefills_without_its_own_decode():
    """One request alone at --step-tokens 1 prefills 1,000 one-token steps with nothing beside them, the sum the
    simulator takes step by step (6,395 ms); the closed form had timed each beside its own decode, 6,775 ms."""
    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.simulate import simulate

    kw = dict(input_len=1000, output_len=20, engine="sglang", step_tokens=1)
    closed = serve("llama-3.1-8b", "h100-sxm", concurrency=1, **kw)["ttft_ms"]
    simulated = simulate("llama-3.1-8b", "h100-sxm", concurrency=1, num_prompts=5, **kw)["ttft_ms"]["p50"]
    assert closed == pytest.approx(simulated, rel=2e-3)


def test_h5_refusals_name_the_layout_and_the_way_past(tmp_path):
    """BLOOM had been asked for GPT-2's n_embd and n_positions; per-channel int4 (compressed-tensors strategy
    "channel", GPTQ group_size -1) was told its group size "is missing", with no way past."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bloom", "hidden_size": 1024, "n_head": 16,
                                                      "n_layer": 24, "vocab_size": 250880}))
    assert "model_type 'bloom': BLOOM's layout (ALiBi" in one_line_error(["estimate", "-m", str(tmp_path)])
    channel = {"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "symmetric": True, "strategy": "channel", "group_size": None}}}}
    for qc in (channel, {"quant_method": "gptq", "bits": 4, "group_size": -1}):
        line = one_line_error(["estimate", "-m", _quantised(tmp_path, qc)])
        assert "int4 with one scale per output channel (no groups) is not a format kvcalc stores" in line
        assert line.endswith("drop quantization_config from a copy of config.json and pass --weight-dtype")


def test_p5_p6_a_concurrency_is_served_as_asked_by_plan_and_serve_alike():
    """-n 13 over two replicas judged at the fuller one's 7: each replica at its own rate, rate(7) + rate(6), not two
    full replicas' 2 x rate(7) for 14 in flight (+4.4 %; the verification's V2: nor 13 at the fuller one's latency,
    -3 %); -n 0.5 (a time average) at 0.5's rate, not a whole request's; -n 13.5 over two, 6.75 each (V1: plan had
    rounded its share up). plan and serve give the same figure."""
    from kvcalc.serving.closed_form import serve
    from tests.test_tenth_audit import _plan_json

    common = ["-m", "llama-3.1-8b", "-g", "rtx-4090", "-i", "3000", "-o", "300", "--max-tpot-ms", "20",
              "--no-disaggregate", "--max-gpus-per-replica", "1", "--engines", "sglang"]
    for n in (0.5, 13, 13.5):
        c = _plan_json([*common, "-n", str(n)])["choice"]
        # at the step budget plan launches with (--chunked-prefill-size), which on an RTX 4090 is not SGLang's own
        # default (2,048 below 35 GiB: the twentieth audit, R4)
        kw = dict(input_len=3000, output_len=300, engine="sglang", weight_dtype=c["weight_dtype"],
                  kv_dtype=c["kv_dtype"], step_tokens=c["max_num_batched_tokens"])
        s = serve("llama-3.1-8b", "rtx-4090", concurrency=n, max_tpot_ms=20, **kw)

        def rate(k: float) -> float:  # one replica at k in flight
            return serve("llama-3.1-8b", "rtx-4090", concurrency=k, **kw)["requests_per_s"]

        by_hand = {0.5: rate(0.5), 13: rate(7) + rate(6), 13.5: 2 * rate(6.75)}[n]
        assert s["concurrency"] == n and s["replicas"] == c["replicas"] == (1 if n < 1 else 2)
        assert c["requests_per_s"] == pytest.approx(by_hand) and s["requests_per_s"] == pytest.approx(by_hand)


def test_p2_plan_searches_mtp_for_every_family_that_ships_it_and_launches_its_method():
    """DeepSeek-V3.2 ships DeepSeek's MTP layer (speculation.MTP_FAMILIES): plan had searched it for the bundled name
    deepseek-v3 only, and chose 16 H200s where serve --speculate mtp meets the same TPOT limit with 8. Qwen3-Next's
    launches with vLLM's mtp method (qwen3_next_mtp is its deprecated alias); TensorRT-LLM's MTP runs DeepSeek's only."""
    from tests.test_tenth_audit import _plan_json

    d = _plan_json(["-m", "deepseek-v3.2", "-g", "h200", "--request-rate", "5", "-i", "2000", "-o", "500",
                    "--max-tpot-ms", "50", "--engines", "vllm", "--no-disaggregate"])
    assert d["choice"]["speculate"] == "mtp" and d["choice"]["gpus"] == 8
    q = _plan_json(["-m", "qwen3-next-80b-a3b", "-g", "h200", "--request-rate", "5", "-i", "2000", "-o", "500",
                    "--max-tpot-ms", "50", "--engines", "vllm,trtllm", "--no-disaggregate", "--emit", "vllm"])
    rows = [q["choice"], *q["runners_up"], *q["frontier"]]
    assert any(r["speculate"] == "mtp" for r in rows)
    assert not any(r["speculate"] and r["engine"] == "trtllm" for r in rows)
    if q["choice"]["speculate"]:
        assert '"method": "mtp"' in q["launch"]  # qwen3_next_mtp, a deprecated alias (the 21st audit, L5)


def test_p4_weights_that_fill_the_gpus_are_said_so():
    line = one_line_error(["serve", "-m", "deepseek-v3", "-g", "l4", "--tp", "4", "-n", "1", "-i", "100",
                           "--output-len", "100"])
    assert "the weights and the engine's reserves exceed the memory a GPU can use by" in line
    assert "KV pool (0 B" not in line


def test_p9_a_local_config_launches_its_folder_and_a_spec_without_a_checkpoint_says_so(tmp_path):
    import shutil
    from pathlib import Path

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    folder = tmp_path / "phi2"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures/hf/phi-2/config.json", folder / "config.json")
    out = runner.invoke(app, ["plan", "-m", str(folder), "-g", "l4", "--request-rate", "2", "-i", "500", "-o", "100",
                              "--emit", "vllm", "-f", "json"])
    assert json.loads(out.stdout)["launch"].startswith(f"vllm serve {folder.resolve()} ")
    out = runner.invoke(app, ["plan", "-m", "gpt-3-175b", "-g", "h200", "--request-rate", "2", "-i", "1000", "-o",
                              "200", "--max-tpot-ms", "60", "--emit", "vllm", "-f", "json"])
    assert "# model: gpt-3-175b cites no published checkpoint" in json.loads(out.stdout)["launch"]


def test_p11_a_tpot_limit_on_one_token_outputs_is_warned_of():
    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    for args in (["plan", "-m", "llama-3.2-3b", "-g", "l4", "-i", "500", "-o", "1", "-n", "4", "--max-tpot-ms", "10"],
                 ["serve", "-m", "llama-3.2-3b", "-g", "l4", "-i", "500", "--output-len", "1", "-n", "4",
                  "--max-tpot-ms", "10"]):
        out = runner.invoke(app, [*args, "-f", "json"])
        assert out.exit_code == 0 and "--max-tpot-ms: no effect with --output-len 1" in out.stderr


@pytest.mark.slow
def test_p10_a_simulated_finalist_says_which_arrivals_it_ran():
    from tests.test_tenth_audit import _plan_json

    c = _plan_json(["-m", "llama-3.2-3b", "-g", "l40s", "--percentile", "p90", "-i", "4000", "-o", "64", "-n", "64",
                    "--max-ttft-ms", "1000", "--max-tpot-ms", "40"])["choice"]
    # one replica's share of the 64 in flight (the choice runs several replicas since the fourteenth audit)
    expected = ("Poisson" if c["disaggregate"] else f"closed loop, {-(-64 // c['replicas'])} in flight")
    assert c["simulated"]["arrivals"].startswith(expected)


def test_h7_minimax_m2s_per_layer_qk_norms_span_every_head():
    """MiniMax-M2 (qk_norm_type per_layer; MiniMaxM2Attention's q_norm over head_dim x 48 heads, k_norm over head_dim
    x 8): norms (2 x 62 + 1) x 3,072 + 62 x (48 + 8) x 128 = 828,416, where 62 x 2 x 128 had been counted."""
    from pathlib import Path

    from kvcalc.formulas.params import params_breakdown
    from kvcalc.specs.hf import load_hf_spec

    spec, _ = load_hf_spec(Path(__file__).parent / "fixtures/hf/MiniMax-M2")
    assert spec.attention.qk_norm_scope == "layer"
    assert params_breakdown(spec)["norms"] == (2 * 62 + 1) * 3072 + 62 * (48 + 8) * 128 == 828_416


def test_h1_rope_scaling_extends_the_context_as_vllm_derives_max_model_len(tmp_path):
    """vLLM's _get_and_verify_max_len: max_position_embeddings x rope_scaling.factor (YaRN from its
    original_max_position_embeddings; not llama3, longrope or Gemma 3, already extended). vicuna-7b-v1.5-16k (4,096 x
    4, linear) serves 16,384 tokens; a Qwen2.5 config with the card's YaRN (32,768 x 4) 131,072; Llama 3.1's llama3
    scaling keeps its 131,072."""
    llama2 = {"hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 4096,
              "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
              "rope_scaling": {"factor": 4.0, "type": "linear"}, "tie_word_embeddings": False, "vocab_size": 32000}
    assert _load(tmp_path, llama2)[0].max_position_embeddings == 4096 * 4
    yarn = {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}
    qwen = {"hidden_size": 3584, "intermediate_size": 18944, "max_position_embeddings": 32768, "model_type": "qwen2",
            "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "vocab_size": 152064,
            "tie_word_embeddings": False, "rope_scaling": yarn}
    assert _load(tmp_path, qwen)[0].max_position_embeddings == 32768 * 4
    llama31 = {**llama2, "max_position_embeddings": 131072, "rope_scaling": {
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        "rope_type": "llama3"}}
    assert _load(tmp_path, llama31)[0].max_position_embeddings == 131072


def test_e8_a_pipeline_stage_holds_its_own_layers_caches():
    """vLLM's split of Gemma-3-27B's 62 layers over 8 stages puts two global layers (every 6th) on a stage of 8: at
    131,072 tokens 2 x 131,072 x 8,192 + 6 x 1,024 x 8,192 = 2,197,815,296 B, where the mean layer gave 1.44 GB;
    Qwen3-Next's 48 over 8: a stage of 6 with two full-attention layers (every 4th), 2 x 131,072 x 2,048 + 4 x
    1,097,728 B of DeltaNet state = 541,261,824."""
    import kvcalc

    def kv(model, pp):
        return kvcalc.estimate(model, "h200", pp=pp, context=131072).to_json_dict()["memory"]["kv_cache_bytes"]

    assert kv("gemma-3-27b", 8) == 2 * 131072 * 8192 + 6 * 1024 * 8192 == 2_197_815_296
    assert kv("qwen3-next-80b-a3b", 8) == 2 * 131072 * 2048 + 4 * 1_097_728 == 541_261_824


@pytest.mark.parametrize("flag, value, hint", [("-e", "VLLM", "vllm"), ("--kv-dtype", "FP8", "fp8"),
                                               ("--weight-dtype", "FP8", "fp8")])
def test_e10_a_name_refused_for_its_letter_case_says_the_name_it_means(flag, value, hint):
    line = one_line_error(["estimate", "-m", "llama-3-8b", flag, value])
    assert f"{value!r} (did you mean {hint}?)" in line


def test_s7_a_wave_of_prompts_longer_than_the_budget_carries_their_pieces():
    """8 prompts of 9,000 tokens in steps of 8,192 (vLLM): each full step holds the tail of one prompt and the head of
    the next (808 + 7,384 in the second), whose self-attention is 808^2 / 2 + 7,384^2 / 2 pairs, not 8,192^2 / 2. By
    hand, step by step with the deployment's own step times (vLLM V1: decodes first, then FCFS prompt tokens), the
    median TTFT is 1,016.1 ms; the closed form had said 1,076.8 (+6 %), the simulator 1,014.8."""
    from kvcalc.formulas.workload import full_steps_piece
    from kvcalc.serving.closed_form import serve

    # the full steps of 8 x 9,000 at 8,192 (8 of them): pieces 8,192; 808 + 7,384; 1,616 + 6,576; ... 5,656 + 2,536
    pieces = [8192] + [x for k in range(1, 8) for x in (808 * k, 8192 - 808 * k)]
    assert full_steps_piece(8, 9000, 8192) == pytest.approx(sum(p * p for p in pieces) / (8 * 8192))
    wave = serve("llama-3.1-8b", "h100-sxm", input_len=9000, output_len=20, concurrency=8, engine="vllm",
                 arrivals="waves")
    assert wave["ttft_ms"] == pytest.approx(1016.1, rel=0.015)


def test_v3_a_llama_4_layer_list_of_the_wrong_type_is_one_line(tmp_path):
    maverick = {"model_type": "llama4_text", "hidden_size": 5120, "intermediate_size": 8192,
                "intermediate_size_mlp": 16384, "num_hidden_layers": 48, "num_attention_heads": 40,
                "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 202048, "num_local_experts": 128,
                "num_experts_per_tok": 1, "interleave_moe_layer_step": 2, "attention_chunk_size": 8192}
    for key, value in (("moe_layers", 5), ("no_rope_layers", 7), ("moe_layers", 1.5)):
        (tmp_path / "config.json").write_text(json.dumps({**maverick, key: value}))
        assert f"{key}: expected a list of whole numbers" in one_line_error(["estimate", "-m", str(tmp_path)])


def test_v4_v5_plan_json_carries_its_warnings_and_an_engine_it_did_not_search():
    from tests.test_tenth_audit import _plan_json

    d = _plan_json(["-m", "gemma-2-9b", "--engines", "trtllm,vllm", "--request-rate", "1", "-i", "100", "-o", "100"])
    assert any(w.startswith("--engines: trtllm not searched: TensorRT-LLM's PyTorch back end") for w in d["warnings"])
    d = _plan_json(["-m", "llama-3.2-3b", "-g", "l4", "-i", "500", "-o", "1", "-n", "4", "--max-tpot-ms", "10"])
    assert any("--max-tpot-ms: no effect with --output-len 1" in w for w in d["warnings"])


def test_stablelm_2_12bs_per_head_qk_layernorms_are_counted(tmp_path):
    """stabilityai/stablelm-2-12b (qk_layernorm, use_parallel_residual): StableLmLayerNormPerHead is a LayerNorm of
    head_dim without a bias for each of the 32 query and 8 KV heads, (32 + 8) x 160 weights a layer; the verification
    pass found it refused. By hand: 2 x 100,352 x 5,120 + 40 x (5,120 x 5,120 + 2 x 5,120 x 1,280 + 5,120 x 5,120
    + 3 x 5,120 x 13,824 + 40 x 160 + 2 x 5,120) + 2 x 5,120 = 12,143,185,920 (the card's "12.1B")."""
    from kvcalc.formulas.params import total_params

    spec, _ = _load(tmp_path, {
        "model_type": "stablelm", "hidden_act": "silu", "hidden_size": 5120, "intermediate_size": 13824,
        "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 40,
        "num_key_value_heads": 8, "partial_rotary_factor": 0.25, "qk_layernorm": True, "tie_word_embeddings": False,
        "use_parallel_residual": True, "use_qkv_bias": False, "vocab_size": 100352})
    d, layer = 5120, 2 * 5120 * 5120 + 2 * 5120 * 1280 + 3 * 5120 * 13824 + 40 * 160 + 2 * 5120
    assert total_params(spec) == 2 * 100352 * d + 40 * layer + 2 * d == 12_143_185_920


# --- the thirteenth audit ---

def test_13_h1_mxfp4_quantises_the_routed_experts_only(tmp_path):
    """vLLM's Mxfp4Config.get_quant_method gives every LinearBase UnquantizedLinearMethod and FusedMoE Mxfp4MoEMethod
    (model_executor/layers/quantization/mxfp4.py): gpt-oss-20b without modules_to_not_convert is 13,761,264,768 B,
    as with it; a dense model under mxfp4 has nothing MXFP4 stores and is refused."""
    from pathlib import Path

    import kvcalc

    fixtures = Path(__file__).parent / "fixtures/hf"
    oss = json.loads((fixtures / "gpt-oss-20b/config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**oss, "quantization_config": {"quant_method": "mxfp4"}}))
    bare = kvcalc.estimate(str(tmp_path), "h100-sxm", context=1, engine="roofline").to_json_dict()
    shipped = kvcalc.estimate(str(fixtures / "gpt-oss-20b"), "h100-sxm", context=1, engine="roofline").to_json_dict()
    assert bare["weights"]["bytes"] == shipped["weights"]["bytes"] == 13_761_264_768
    line = one_line_error(["estimate", "-m", _quantised(tmp_path, {"quant_method": "mxfp4"})])
    assert "quant_method 'mxfp4': it quantises routed experts only" in line  # named by the config's field (audit 30, C3)


@pytest.mark.parametrize("change, message", [
    ({"format": "marlin-24"}, "format 'marlin-24': 2:4-sparse weights are not a layout kvcalc stores"),
    ({"strategy": "foo"}, "weights.strategy: expected one of tensor, channel, group, block"),
])
def test_13_h4_h5_marlin_24_and_unknown_strategies_are_refused(tmp_path, change, message):
    group = {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                                 "group_size": 128}}
    qc = {"quant_method": "compressed-tensors", "config_groups": {"g": group}}
    if "format" in change:
        qc.update(change)
    else:
        group["weights"].update(change)
    assert message in one_line_error(["estimate", "-m", _quantised(tmp_path, qc)])


@pytest.mark.parametrize("scaling, message", [
    ("x", "rope_scaling: expected an object or null, got 'x'"),
    ({"type": "banana", "factor": 2}, "rope_scaling.rope_type: expected one of linear, dynamic, yarn"),
])
def test_13_h8_a_rope_scaling_kvcalc_cannot_read_is_refused(tmp_path, scaling, message):
    (tmp_path / "config.json").write_text(json.dumps(_llama3(rope_scaling=scaling)))
    assert message in one_line_error(["estimate", "-m", str(tmp_path)])


def test_13_s4_to_s8_the_simulators_inputs_are_checked_as_serves(tmp_path):
    """--memory-utilization nan had ended in a traceback under --simulate and 1.5 had been taken (S5, S6); a
    near-whole -n was echoed rounded to a whole number (S4); length_client and overhead were unchecked (S7); a trace
    with arrival_s and timestamp disagreeing had taken arrival_s in silence (S8)."""
    import kvcalc
    from kvcalc.errors import KvcalcError

    base = ["serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "50", "--simulate"]
    for value in ("nan", "inf", "1.5"):
        assert "--memory-utilization" in one_line_error([*base, "-n", "4", "--memory-utilization", value])
    assert "got 63.9999999" in one_line_error([*base, "-n", "63.9999999"])
    for kw, message in ((dict(length_client="nonsense"), "length_client: expected vllm or sglang"),
                        (dict(overhead=0), "overhead: expected an EngineOverhead")):
        with pytest.raises(KvcalcError, match=message):
            kvcalc.simulate("llama-3.1-8b", input_len=1000, output_len=50, concurrency=4, num_prompts=20, **kw)
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,arrival_s,input_len,output_len\n0,0,100,10\n5,1,100,10\n")
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "--simulate", "--arrivals", "trace", "--trace", str(trace)])
    assert "line 3: arrival_s 1 and timestamp 5 disagree; give one" in line


def test_13_p1_p3_p5_p6_plan_launches_what_the_gpu_runs_and_speaks_its_own_flags():
    """MI355X gets no NVFP4 (NVIDIA's format; P1); a T4, which has no bf16, launches vLLM with --dtype half (P3); a
    p90 plan of a small model on vLLM simulates its finalists within vLLM's max_num_seqs <= max_num_batched_tokens
    (P5: every one had gone unsimulated); plan's reasons name --max-gpus-per-replica, not serve's --tp (P6)."""
    from tests.test_tenth_audit import _plan_json

    d = _plan_json(["-m", "llama-3.1-8b", "-g", "mi355x", "--request-rate", "5", "-i", "1000", "-o", "100"])
    assert not any(r["weight_dtype"] == "nvfp4" for r in [d["choice"], *d["runners_up"], *d["frontier"]])
    t4 = _plan_json(["-m", "llama-3.2-3b", "-g", "t4", "--request-rate", "1", "-i", "500", "-o", "100", "--emit",
                     "vllm"])
    assert t4["launch"].rstrip().endswith("--dtype half")
    p90 = _plan_json(["-m", "llama-3.2-1b", "-g", "b200", "-i", "64", "-o", "64", "--request-rate", "50",
                      "--max-tpot-ms", "30", "--percentile", "p90", "--engines", "vllm", "--no-disaggregate"])
    assert p90["choice"]["simulated"]["met"] and p90["choice"]["simulated"]["max_num_seqs"] <= 8192
    ds = _plan_json(["-m", "deepseek-v3", "-g", "l4", "--max-gpus-per-replica", "4", "--request-rate", "1", "-i",
                     "100", "-o", "100"])
    reason = ds["rejected"]["does_not_fit_examples"][0]["reason"]
    assert "--max-gpus-per-replica" in reason and "--tp" not in reason


def test_13_e1_e7_a_benchmarks_request_rate_is_checked_and_sweep_refuses_an_unknown_engine(tmp_path):
    from kvcalc.validate.calibrate import read_benchmark

    path = tmp_path / "b.json"
    for rate in ("abc", -5, 0, True):
        path.write_text(json.dumps(_bench(8, 100, request_rate=rate)))
        from kvcalc.errors import KvcalcError

        with pytest.raises(KvcalcError, match="field request_rate: expected a positive number"):
            read_benchmark(path)
    line = one_line_error(["sweep", "-m", "llama-3-8b", "-e", "vllm,sglnag", "-o", str(tmp_path / "s.csv")])
    assert "unknown engine 'sglnag'" in line


def test_13_h2_h3_h7_dbrx_a_malformed_vision_tower_and_an_unknown_context_are_said(tmp_path):
    from pathlib import Path

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dbrx", "d_model": 6144, "n_layers": 40}))
    assert "model_type 'dbrx': DBRX's layout" in one_line_error(["estimate", "-m", str(tmp_path)])
    gemma = json.loads((Path(__file__).parent / "fixtures/hf/medgemma-27b-it/config.json").read_text())
    for vision, message in (({**gemma["vision_config"], "hidden_size": -1}, "vision_config hidden_size: expected"),
                            ("x", "vision_config: expected an object"),
                            ({**gemma["vision_config"], "vision_use_head": True}, "vision_config vision_use_head")):
        (tmp_path / "config.json").write_text(json.dumps({**gemma, "vision_config": vision}))
        assert message in one_line_error(["estimate", "-m", str(tmp_path)])
    llama = _llama3()
    del llama["max_position_embeddings"]
    (tmp_path / "config.json").write_text(json.dumps(llama))
    from kvcalc.specs.hf import load_hf_spec

    assert any("max_position_embeddings absent" in w for w in load_hf_spec(tmp_path)[1])


def test_13_h6_a_dangling_symlink_is_named_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").symlink_to(tmp_path / "nowhere")
    assert one_line_error(["estimate", "-m", "org/name"]).endswith("org/name: a symbolic link to nothing (dangling or "
                                                                   "looping)")
