"""Regression tests for the eleventh hostile audit (docs/validation.md, "Eleventh hostile audit"), each named after
its finding."""

from __future__ import annotations

import pytest

from tests.test_fifth_audit import one_line_error


def test_e1_a_v1_or_v2_model_runner_before_vllm_0_7_is_refused():
    """vLLM's V1 engine (GPUModelRunner and the runners after it) came with 0.7.0's V1 alpha; --vllm-runner v2 with
    --vllm-version 0.5 had sized vLLM 0.5's pool by the v2 rule (+8 %)."""
    for runner in ("v1", "v2"):
        line = one_line_error(["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version", "0.5",
                               "--vllm-runner", runner])
        assert f"--vllm-runner {runner}: vLLM's V1 engine, and its model runners, came with 0.7.0" in line


def test_e3_capacity_says_its_target_is_met_at_the_fewest_gpus_a_replica():
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    d = json.loads(runner.invoke(app, ["capacity", "-m", "llama-3.1-70b", "-g", "h100-sxm", "-c", "8192",
                                       "--target-tokens-per-s", "20000", "-f", "json"]).stdout)
    assert d["gpus_for_target"] > d["gpus_per_replica"]
    assert any("the target is met with replicas of the fewest GPUs" in n for n in d["warnings"])


# --- config.json (part H) ---

def _hf(tmp_path, config: dict, beside: dict | None = None):
    from tests.test_tenth_audit import _hf as hf

    return hf(tmp_path, config, beside)


def _llama3(**extra) -> dict:
    from tests.test_tenth_audit import _llama3 as llama3

    return llama3(**extra)


def test_h1_absent_heads_take_the_familys_defaults(tmp_path):
    """MistralConfig's num_key_value_heads default is 8 (Mistral-7B: 7,241,732,096 parameters, KV 131,072 B a token)
    and Gemma's head_dim 256; Llama's MHA and hidden / heads had been taken in silence (KV 4x, and 25 % short)."""
    from kvcalc.formulas.params import total_params

    spec, warned = _hf(tmp_path, {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32,
                                  "num_attention_heads": 32, "intermediate_size": 14336, "vocab_size": 32000})
    assert spec.attention.num_kv_heads == 8 and total_params(spec) == 7_241_732_096
    assert any("mistral's transformers default" in w for w in warned)
    spec, _ = _hf(tmp_path, {"model_type": "gemma3_text", "hidden_size": 2560, "num_hidden_layers": 34,
                             "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 10240,
                             "vocab_size": 262208, "sliding_window": 1024, "sliding_window_pattern": 6})
    assert spec.attention.head_dim == 256


def _ct(groups: dict) -> dict:
    return {"quant_method": "compressed-tensors", "config_groups": groups}


def test_h2_h3_compressed_tensors_targets_and_blocks_are_read_or_refused(tmp_path):
    """A group whose targets name down_proj alone quantises it alone (vLLM matches targets to module names): kvcalc
    cannot size part of a class and refuses it (it had quantised the whole MLP, weights 26 % short); an fp8
    block_structure other than 128 x 128 is refused as the fp8 method's weight_block_size is."""
    from kvcalc.errors import KvcalcError

    fp8 = {"type": "float", "num_bits": 8, "strategy": "channel"}
    with pytest.raises(KvcalcError, match=r"targets: quantise down_proj of their layers"):
        _hf(tmp_path, _llama3(quantization_config=_ct({"g": {"targets": ["re:.*down_proj$"], "weights": fp8}})))
    block = {"type": "float", "num_bits": 8, "strategy": "block", "block_structure": [64, 64]}
    with pytest.raises(KvcalcError, match=r"block_structure \[64, 64\]: kvcalc stores fp8 weights in 128 x 128"):
        _hf(tmp_path, _llama3(quantization_config=_ct({"g": {"targets": ["Linear"], "weights": block}})))


def test_h4_a_layer_count_past_kvcalcs_cap_is_refused_at_once(tmp_path):
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="num_hidden_layers: expected at most 10,000,000 layers"):
        _hf(tmp_path, {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 100_000_000,
                       "num_attention_heads": 1, "intermediate_size": 64, "vocab_size": 10, "use_sliding_window": True,
                       "sliding_window": 4, "max_window_layers": 2})


def test_h6_modelopt_wildcards_keep_the_layers_they_name(tmp_path):
    """vLLM's is_layer_excluded matches ModelOpt's exclude_modules as regexes ('*' any run) against whole module
    names: 'model.layers.5.*' keeps layer 5 in bf16 (Llama-3-8B: 218,103,808 weights at 2 B instead of 0.5625, NVFP4's
    bytes); 'model.layers.1*' names layers 1, 10-19 and 100+ by a pattern, refused. Both had been dropped."""
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.params import weight_bytes

    nvfp4 = {"quant_algo": "NVFP4", "group_size": 16}
    base, _ = _hf(tmp_path, _llama3(), {"quantization": {**nvfp4, "exclude_modules": ["lm_head"]}})
    five, _ = _hf(tmp_path, _llama3(), {"quantization": {**nvfp4, "exclude_modules": ["lm_head", "model.layers.5.*"]}})
    layer = 2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert weight_bytes(five, 0.5625) - weight_bytes(base, 0.5625) == pytest.approx(layer * (2 - 0.5625))
    with pytest.raises(KvcalcError, match="'model.layers.1\\*' names some layers by a pattern"):
        _hf(tmp_path, _llama3(), {"quantization": {**nvfp4, "exclude_modules": ["model.layers.1*"]}})


def test_h8_kept_layers_counts_are_checked(tmp_path):
    from pathlib import Path

    from tests.test_fifth_audit import one_line_error

    spec = (Path(__file__).resolve().parents[1] / "model_specs/llama-3.1-8b.toml").read_text()
    for n, want in ((-1, "expected 0 to 32"), (500, "expected 0 to 32")):
        path = tmp_path / f"k{n}.toml"
        path.write_text(spec + f'\n[quantization]\nweight_format = "fp8"\nkept_layers = {{mlp = {n}}}\n')
        assert f"quantization.kept_layers.mlp {n}: {want}" in one_line_error(["estimate", "-m", str(path)])


def test_h9_gptq_overrides_are_refused_and_a_quantised_head_read(tmp_path):
    """GPTQ's lm_head: true stores the 525,336,576-parameter head at int4-g128 (0.51953125 B a weight, not 2): the
    weights 777,744,384 B lighter than with a bf16 head; dynamic and modules_in_block_to_quantize are refused."""
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.params import weight_bytes

    gptq = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}
    plain, _ = _hf(tmp_path, _llama3(quantization_config=gptq))
    head, _ = _hf(tmp_path, _llama3(quantization_config={**gptq, "lm_head": True}))
    assert weight_bytes(plain, 0.51953125) - weight_bytes(head, 0.51953125) == pytest.approx(777_744_384)
    for key, value in (("dynamic", {"-:.*mlp.*": {}}), ("modules_in_block_to_quantize", [["self_attn.q_proj"]])):
        with pytest.raises(KvcalcError, match=f"quantization_config {key}: per-module overrides"):
            _hf(tmp_path, _llama3(quantization_config={**gptq, key: value}))


# --- serving (part S) ---

def test_s1_the_overload_warning_compares_the_rate_with_what_the_engine_serves_while_busy():
    """10 Poisson requests at 5/s on a deployment of one request at a time that serves about 12/s (82 ms each): no
    warning (it had said 3.59/s, the 10 requests over the run's 2.8 s, idle gaps included); 100/s on one H100, which
    serves about 27/s, still warns."""
    import warnings

    from kvcalc.serving.simulate import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calm = simulate("llama-3.1-8b", "h100-sxm", input_len=100, output_len=10, max_num_seqs=1, arrivals="poisson",
                        request_rate=5.0, num_prompts=10, seed=0)
        over = simulate("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=200, arrivals="poisson",
                        request_rate=100.0, num_prompts=400)
    assert not any("arrive where" in w for w in calm["warnings"])
    assert any("arrive where this deployment serves" in w for w in over["warnings"])


def test_s2_s6_messages_say_what_burst_takes_and_name_the_trace(tmp_path):
    trace = tmp_path / "b20.csv"
    trace.write_text("arrival_s,input_len,output_len\n0,200000,10\n")
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "--simulate", "--arrivals", "trace", "--trace", str(trace)])
    assert f"--trace {trace}: every request (1) is longer than" in line
    # (poisson takes -n as the most in flight since the twenty-eighth audit's S3: the message is closed's)
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "--simulate", "-i", "100", "--output-len", "10",
                           "--arrivals", "closed", "-n", "4", "--request-rate", "5", "--num-prompts", "10"])
    assert "burst: --request-rate, and -n as its burst size" in line and "-n as the most in flight" in line
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "10", "--simulate",
                           "--arrivals", "poisson", "--request-rate", "5", "--num-prompts", "5", "--max-ttft-ms", "100",
                           "--percentile=5e1"])
    assert "plain decimal" in line and "no exponent" in line


# --- plan and launch (part P) ---

def test_p2_each_data_parallel_rank_gets_its_share_of_the_requests():
    """Under --ep each data-parallel rank runs its own scheduler: 4 ranks of a 1,024-request replica take 256 each.
    Its step budget is the plan's own, which each rank's scheduler takes whole (the nineteenth audit, P1, corrected
    this test's 2,048: plan times each group at the whole --step-tokens)."""
    from kvcalc.engines.launch import _tokens_per_group, vllm_command
    from kvcalc.specs.catalog import load_model

    c = {"expert_parallel": 8, "tensor_parallel": 2, "pipeline_parallel": 1, "max_num_seqs": 1024,
         "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9, "kv_dtype": "bf16", "converted_weights": False,
         "weight_dtype": "fp8-block", "speculate": None, "disaggregate": None}
    assert _tokens_per_group(c) == 8192
    cmd = vllm_command(load_model("deepseek-v3"), c, 2000)
    assert cmd[cmd.index("--max-num-batched-tokens") + 1] == "8192" and cmd[cmd.index("--max-num-seqs") + 1] == "256"


def test_s5_the_simulated_pool_holds_as_many_hybrid_requests_as_capacity_counts():
    """Nemotron-H under TensorRT-LLM: capacity and serve -n max hold 557 requests of 3,000 + 500 tokens; a wave of 557
    all runs at once in the simulator (it had held 555: each request's Mamba state rounded up to whole 32-token
    blocks beside a pool counted in exact tokens)."""
    import warnings

    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.simulate import simulate

    kw = dict(input_len=3000, output_len=500, engine="trtllm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held = serve("nemotron-h-8b", "h100-sxm", concurrency="max", **kw)["max_concurrency"]
        r = simulate("nemotron-h-8b", "h100-sxm", concurrency=held, num_prompts=held, **kw)
    assert held == 557 and r["max_running"] == held and r["preemptions"] == 0
