"""Regression tests for the thirteenth audit's left list and the fourteenth hostile audit (docs/validation.md,
"Fourteenth hostile audit"), each named after its finding."""

from __future__ import annotations

import json
import warnings

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.cli import app
from tests.test_fifth_audit import one_line_error, runner


# --- the thirteenth audit's left list ---

def test_13_s2_auto_schedules_with_vllms_own_defaults_for_the_gpu():
    """`--engine auto` runs vLLM V1's scheduler; vllm serve gives a GPU showing under 70 GiB 2,048 tokens a step and
    256 sequences (EngineArgs._set_default_args, cited in formulas/engine_memory.py). An A10G (24 GB) had been given
    the H100's 8,192 and 1,024, in the simulator and in the closed form alike."""
    import kvcalc
    from kvcalc.serving.closed_form import default_step_tokens

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = kvcalc.simulate("llama-3.1-8b", "a10g", input_len=100, output_len=10, arrivals="closed", concurrency=4,
                              num_prompts=8, engine="auto")
        big = kvcalc.simulate("llama-3.1-8b", "h100-sxm", input_len=100, output_len=10, arrivals="closed",
                              concurrency=4, num_prompts=8, engine="auto")
    assert (sim["step_tokens"], sim["max_num_seqs"]) == (2048, 256)
    assert (big["step_tokens"], big["max_num_seqs"]) == (8192, 1024)
    assert default_step_tokens("auto", "a10g") == 2048
    # SGLang's own chunked prefill size, not vLLM's rule: by its memory tiers (the twentieth audit, R4, where 8,192 had
    # been asserted for every GPU), 4,096 on an L40S where vLLM takes 2,048
    assert (default_step_tokens("sglang", "l40s"), default_step_tokens("auto", "l40s")) == (4096, 2048)


def _bench(tmp_path, **fields):
    run = {"backend": "vllm", "model_id": "meta-llama/Llama-3.1-8B-Instruct", "num_prompts": 100, "completed": 100,
           "total_input_tokens": 102400, "total_output_tokens": 12800, "request_throughput": 3.33,
           "mean_ttft_ms": 120.0, "mean_tpot_ms": 30.0, "mean_e2el_ms": 1136.0, "max_concurrency": 16,
           "request_rate": "inf"} | fields
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(run))
    return path


def test_13_e2_calibrate_warns_of_a_file_that_served_another_model_or_engine(tmp_path):
    """vllm bench serve --save-result writes model_id and backend: a 70B run fitted as the 8B had given 23 ms a step
    of "engine overhead" in silence, and an SGLang run had been fitted from vLLM's profile."""
    from kvcalc.validate.calibrate import calibrate_from_benchmark

    with pytest.warns(UserWarning) as seen:
        calibrate_from_benchmark(_bench(tmp_path, model_id="meta-llama/Llama-3.1-70B-Instruct"),
                                 model="llama-3.1-8b", gpu="h100-sxm")
    said = " ".join(str(w.message) for w in seen)
    assert "model_id 'meta-llama/Llama-3.1-70B-Instruct' is not --model llama-3.1-8b" in said
    with pytest.warns(UserWarning, match="backend 'sglang' is not --engine vllm: .* pass --engine sglang"):
        calibrate_from_benchmark(_bench(tmp_path, backend="sglang", mean_tpot_ms=9.0, mean_e2el_ms=1000.0),
                                 model="llama-3.1-8b", gpu="h100-sxm")
    with warnings.catch_warnings():  # the model it served, on its own engine: nothing said of either
        warnings.simplefilter("error")
        calibrate_from_benchmark(_bench(tmp_path, mean_tpot_ms=9.0, mean_e2el_ms=1000.0), model="llama-3.1-8b",
                                 gpu="h100-sxm")


def test_13_e5_a_fitted_step_cost_ten_times_the_engines_own_is_warned_of(tmp_path):
    """A run far slower than its kernels (here 30 ms a token for an 8B model at 16 in flight on an H100, whose
    kernels take about 8 ms) fits as tens of ms of 'engine overhead' a step: more than 10x vLLM V1's band (1,280 us,
    validation/published/README.md)."""
    from kvcalc.validate.calibrate import calibrate_from_benchmark

    with pytest.warns(UserWarning, match=r"fitted \d+ us a step outside the kernels is \d+x vllm's own 1280 us"):
        calibrate_from_benchmark(_bench(tmp_path), model="llama-3.1-8b", gpu="h100-sxm")


@pytest.mark.parametrize("engine, kv, said", [
    ("vllm", "int4", "vllm's int4_per_token_head cache adds an fp32 scale per token and KV head"),
    ("vllm", "int8", "vllm's int8_per_token_head cache adds an fp32 scale per token and KV head"),
    ("trtllm", "int4", "trtllm stores no int4 KV cache (its KV formats are fp8, int8 and nvfp4)"),
])
def test_13_e4_an_engine_without_the_kv_layout_refuses_it(engine, kv, said):
    """vLLM's integer caches carry an fp32 scale per token and head (AttentionSpec.page_size_bytes adds
    2 x block x kv_heads x 4 B); TensorRT-LLM quantises its KV cache to FP8, INT8 or NVFP4 only. Both had been taken,
    and capacity -e vllm had printed a pool vLLM cannot hold."""
    line = one_line_error(["capacity", "-m", "llama-3.1-8b", "-c", "8192", "-e", engine, "--kv-dtype", kv])
    assert said in line and "pick another --kv-dtype or --engine" in line


def test_13_e4_trtllms_int8_cache_is_still_taken():
    r = runner.invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "8192", "-e", "trtllm", "--kv-dtype", "int8",
                               "-f", "json"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("model, per_layer", [
    # DeepSeek-V3's MLA latent: 512 + 64 = 576 values, 288 B packed and ceil(576 / 128) = 5 bf16 scales
    ("deepseek-v3", 288 + 5 * 2),
    # Falcon-7B's one KV head of 64: K and V each 32 B packed and one bf16 scale of their own
    ("falcon-7b", 2 * (32 + 2)),
    # gpt-oss-20b: 8 KV heads of 64, 16 head vectors of 32 + 2 B
    ("gpt-oss-20b", 16 * (32 + 2)),
    # Llama-3.1-8B: 8 KV heads of 128, 16 vectors of 64 + 2 B (unchanged: 128 is one whole group)
    ("llama-3.1-8b", 16 * (64 + 2)),
])
def test_13_e6_an_int4_kv_cache_stores_a_scale_per_started_group_of_each_vector(model, per_layer):
    """The thirteenth audit, E6: 0.5 + 2/128 B an element had priced half a scale for a 64-wide head and 4.5 scales
    for the 576-wide latent."""
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kv = kvcalc.estimate(model, "b200", kv_dtype="int4", engine="roofline").kv_cache
    assert kv.bytes_per_token_per_layer == per_layer


def test_13_e3_the_api_takes_numpy_scalars_and_names_its_own_keywords():
    """A value read back from sweep's DataFrame is a NumPy scalar: np.int64(4) had been "expected a whole number from
    1 to 10,000,000, got np.int64(4)"; the API's messages named CLI flags (--batch, --cuda-graph-memory)."""
    import numpy as np

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert kvcalc.estimate("llama-3.1-8b", batch=np.int64(4)).inputs.batch == 4
        assert kvcalc.estimate("llama-3.1-8b", batch=4).decode.ms == kvcalc.estimate("llama-3.1-8b",
                                                                                    batch=np.int64(4)).decode.ms
        frame = kvcalc.sweep(["llama-3.1-8b"], ["h100-sxm"], ["own"], np.array([1, 2]), [1024])
        assert list(frame["batch"]) == [1, 2]
        served = kvcalc.serve("llama-3.1-8b", input_len=np.int64(100), output_len=10, concurrency=np.float64(4))
    json.dumps(served, allow_nan=False)  # plain numbers: the result serialises
    with pytest.raises(KvcalcError, match=r"^batch: expected a whole number from 1 to 10,000,000, got 0$"):
        kvcalc.estimate("llama-3.1-8b", batch=0)
    with pytest.raises(KvcalcError, match=r"^cuda_graph_GiB: expected a finite number in \[0, 10000\], got -1$"):
        kvcalc.capacity("llama-3.1-8b", context=4096, engine="vllm", cuda_graph_GiB=-1)
    with pytest.raises(KvcalcError, match=r"^concurrency / request_rate: give exactly one$"):
        kvcalc.serve("llama-3.1-8b", input_len=10, output_len=10)


def test_13_estimates_past_positions_warning_is_the_one_the_other_commands_print():
    r = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-c", "200000"])
    assert r.exit_code == 0
    assert "context 200,000 exceeds llama-3-8b's max_position_embeddings 8,192" in r.output


def test_13_p2_plan_buys_no_replica_more_than_serve_finds_within_the_limits():
    """The thirteenth audit, P2: plan had bought 6 MI355Xs where serve's 5 replicas of the same deployment carry
    40 requests/s within both limits; the second pass places the limit on an affine between two ladder budgets,
    which can be a replica off, and the third pass now also takes the share of one and two replicas fewer."""
    import kvcalc

    ask = dict(input_len=2000, output_len=16, request_rate=40, max_ttft_ms=1000, max_tpot_ms=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = kvcalc.plan("mixtral-8x7b", gpus=["mi355x"], engines=["vllm"], convert=False, disaggregated=False,
                             **ask)["choice"]
        served = kvcalc.serve("mixtral-8x7b", "mi355x", engine="vllm", tp=1, weight_dtype="bf16", kv_dtype="bf16",
                              **ask)
    assert chosen["deployment"].startswith("1 x mi355x, vllm, TP1, bf16/bf16")
    assert served["ttft_ms"] <= 1000 and served["tpot_ms"] <= 10
    assert chosen["gpus"] == served["gpus"] == 5


def test_13_p4_engines_that_run_on_some_of_the_gpus_are_searched_there():
    """`--engines trtllm,sglang -g h100-sxm,mi300x` had been refused whole, though the default search pairs each GPU
    with the engines that run on it; now trtllm is searched on the H100 only, and that is said."""
    import kvcalc

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        out = kvcalc.plan("llama-3.1-8b", gpus=["h100-sxm", "mi300x"], engines=["trtllm", "sglang"], input_len=500,
                          output_len=100, request_rate=1, max_tpot_ms=50)
    assert any(w.startswith("--engines: trtllm not searched on mi300x: trtllm does not run on mi300x")
               for w in out["warnings"])
    searched = {row["deployment"].split(", ")[1] + "@" + row["deployment"].split(" x ")[1].split(",")[0]
                for row in out["frontier"]}
    assert "trtllm@mi300x" not in searched and "trtllm@h100-sxm" in {e + "@h100-sxm" for e in out["best_by_engine"]}
    line = one_line_error(["plan", "-m", "llama-3.1-8b", "-i", "500", "-o", "100", "--request-rate", "1",
                           "-g", "mi300x,mi325x", "--engines", "trtllm"])
    assert "--engines: trtllm runs on none of the GPUs: trtllm does not run on mi300x" in line
    assert line.endswith("(likewise on mi325x)")


# --- the fourteenth audit: config.json ---

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "hf"


def _spec(tmp_path, config: dict):
    from kvcalc.specs.hf import load_hf_spec

    (tmp_path / "config.json").write_text(json.dumps(config))
    return load_hf_spec(tmp_path)


def test_h1_cohere_qk_norms_hold_a_weight_for_every_heads_channels(tmp_path):
    """CohereAttention's q_norm = CohereLayerNorm((num_heads, head_dim)) and k_norm over (kv_heads, head_dim), weight
    only: Command R+ (CohereForAI/c4ai-command-r-plus's fields) holds 64 x (96 + 8) x 128 of them, where one
    head_dim-wide norm each had been counted (835,584 short)."""
    from kvcalc.formulas.params import norm_params

    spec, _ = _spec(tmp_path, dict(model_type="cohere", hidden_size=12288, num_hidden_layers=64,
                                   num_attention_heads=96, num_key_value_heads=8, intermediate_size=33792,
                                   vocab_size=256000, max_position_embeddings=8192, use_qk_norm=True))
    # one LayerNorm a layer (CohereDecoderLayer's parallel block) and the final one, d wide, weight only
    assert norm_params(spec) == (64 + 1) * 12288 + 64 * (96 + 8) * 128 == 1_650_688


@pytest.mark.parametrize("model_type, qk_per_layer", [("olmo2", (32 + 32) * 128), ("olmoe", None)])
def test_h5_olmo2_and_olmoe_normalise_q_and_k_over_all_heads(tmp_path, model_type, qk_per_layer):
    """Olmo2Attention (and OlmoeAttention, Olmo3Attention) always build q_norm(heads x head_dim) and
    k_norm(kv_heads x head_dim); no config field says so, and they had been left out: allenai/OLMo-2-1124-7B's
    fields give 7,298,617,344 parameters by hand, 2 x 100,352 x 4,096 + 32 x (4 x 4,096^2 + 3 x 4,096 x 11,008
    + 4 x 4,096) + 4,096."""
    from kvcalc.formulas.params import total_params

    config = dict(model_type=model_type, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, intermediate_size=11008, vocab_size=100352, tie_word_embeddings=False,
                  max_position_embeddings=4096)
    if model_type == "olmoe":  # allenai/OLMoE-1B-7B-0924: 16 layers of 64 experts (top 8) of 1,024, 16 heads of 128
        config.update(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                      intermediate_size=1024, vocab_size=50304, num_experts=64, num_experts_per_tok=8)
    spec, _ = _spec(tmp_path, config)
    assert spec.attention.qk_norm and spec.attention.qk_norm_scope == "layer"
    if model_type == "olmo2":
        assert total_params(spec) == 7_298_617_344
    else:  # the audit's hand count from modeling_olmoe.py, 65,536 norm weights more than before: 16 x 2 x 2,048
        assert total_params(spec) == 6_919_161_856


def test_h5_olmo_1s_weightless_layer_norms_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(
        model_type="olmo", hidden_size=2048, num_hidden_layers=16, num_attention_heads=16, intermediate_size=8192,
        vocab_size=50304, max_position_embeddings=2048)))
    line = one_line_error(["estimate", "-m", str(tmp_path)])
    assert ("model_type 'olmo': OLMo's non-parametric LayerNorms (no weight or bias), which kvcalc does not model"
            in line)


@pytest.mark.parametrize("fixture, drop, kv_per_token", [
    # Qwen3Config's head_dim 128 (configuration_qwen3.py): 28 layers x 8 KV heads x 128 x 2 x 2 B
    ("Qwen3-0.6B", "head_dim", 28 * 8 * 128 * 2 * 2),
    # GptOssConfig's head_dim 64 and num_key_value_heads 8: 24 layers x 8 x 64 x 2 x 2 B (every layer while the
    # context is inside its window)
    ("gpt-oss-20b", "head_dim", 24 * 8 * 64 * 2 * 2),
    ("gpt-oss-20b", "num_key_value_heads", 24 * 8 * 64 * 2 * 2),
])
def test_h8_an_absent_field_takes_the_familys_transformers_default(tmp_path, fixture, drop, kv_per_token):
    from kvcalc.formulas.kv import kv_bytes_per_token

    config = json.loads((FIXTURES / fixture / "config.json").read_text())
    whole, _ = _spec(tmp_path, config)
    del config[drop]
    spec, said = _spec(tmp_path, config)
    assert kv_bytes_per_token(spec, 2) == kv_per_token == kv_bytes_per_token(whole, 2)
    assert any(f"{drop} absent: " in s and "transformers default" in s for s in said)


def test_h8_gpt_oss_without_attention_bias_keeps_its_biases(tmp_path):
    """GptOssConfig's attention_bias defaults to true: 192,000 bias parameters had been dropped in silence."""
    from kvcalc.formulas.params import total_params

    config = json.loads((FIXTURES / "gpt-oss-20b" / "config.json").read_text())
    whole, _ = _spec(tmp_path, config)
    del config["attention_bias"]
    spec, said = _spec(tmp_path, config)
    assert total_params(spec) == total_params(whole)
    assert any("attention_bias absent: true" in s for s in said)


@pytest.mark.parametrize("extra, said", [
    ({"text_config": "x"}, "text_config: expected an object, got 'x'"),
    ({"text_config": [1]}, "text_config: expected an object, got [1]"),
    ({"model_type": ["llama"]}, "model_type: expected a string, got ['llama']"),
    ({"model_type": 5}, "model_type: expected a string, got 5"),
])
def test_h2_h3_a_structured_field_of_the_wrong_type_is_refused(tmp_path, extra, said):
    config = json.loads((FIXTURES / "Meta-Llama-3-8B" / "config.json").read_text()) | extra
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert said in one_line_error(["estimate", "-m", str(tmp_path)])


def test_h4_the_modelopt_refusal_lists_every_format_read(tmp_path):
    config = json.loads((FIXTURES / "Meta-Llama-3-8B" / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    line = one_line_error(["estimate", "-m", str(tmp_path)])
    assert ("(FP8, FP8_PER_CHANNEL_PER_TOKEN, FP8_BLOCK_WISE, NVFP4, W4A16_AWQ, W4A8_AWQ, W8A8_SQ_PER_CHANNEL)"
            in line)


def test_h6_import_of_an_empty_path_is_refused(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text((FIXTURES / "gpt2" / "config.json").read_text())
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["import", "", "-n", "x", "-o", str(tmp_path / "out.toml")])
    assert line == ("kvcalc: error: CONFIG: empty; expected a config.json, a folder holding one or an ORG/NAME "
                    "repo id")
    assert not (tmp_path / "out.toml").exists()


def test_h7_a_fifo_given_as_model_is_named_by_its_flag(tmp_path):
    import os

    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    line = one_line_error(["estimate", "-m", str(fifo)])
    assert line == (f"kvcalc: error: --model: {fifo}: not a regular file (a FIFO, device or socket); expected a "
                    "config.json")


# --- the fourteenth audit: core commands ---

def test_e1_calibrate_refuses_runs_of_a_deployment_that_cannot_hold_the_model(tmp_path):
    """Llama-3.1-70B's 70.6 B bf16 parameters (141 GB) on one 80 GB H100: the runs cannot be this deployment, and the
    fit had been written, its 'overhead' the difference."""
    line = one_line_error(["calibrate", "--from-benchmark", str(_bench(tmp_path, model_id="meta-llama/Llama-3.1-70B")),
                           "-m", "llama-3.1-70b", "-g", "h100-sxm", "-o", str(tmp_path / "p.toml")])
    assert "the runs cannot be llama-3.1-70b at bf16 on 1 x h100-sxm: the weights alone" in line
    assert "--tp 2 holds them at bf16" in line and not (tmp_path / "p.toml").exists()


def test_e2_vllm_v0_profiles_with_its_own_256_sequences():
    """vLLM before 0.8 (V0): EngineArgs' max_num_seqs 256 and, without chunked prefill, max(max_model_len, 2,048)
    batched tokens; V1's 1,024 sequences had sized the sampler's peak 3.8 GiB over (51 sequences of 8,192 where V0's
    rule holds 54). The sampler's logits peak scales with the sequences: 256 x 128,256 logits, not 1,024 x."""
    import kvcalc
    from kvcalc.formulas import engine_memory as em

    assert em.vllm_default_batching(79.2, "h100-sxm", (0, 6), max_model_len=8192) == (8192, 256)
    assert em.vllm_default_batching(79.2, "h100-sxm", (0, 6), max_model_len=1024) == (2048, 256)
    assert em.vllm_default_batching(79.2, "h100-sxm", (0, 8)) == (8192, 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = kvcalc.capacity("llama-3-8b", "h100-sxm", context=8192, engine="vllm", vllm_version="0.6")
        said = kvcalc.capacity("llama-3-8b", "h100-sxm", context=8192, engine="vllm", vllm_version="0.6",
                               max_num_seqs=256, max_num_batched_tokens=8192)
    mine = old["engine_memory"]
    assert (mine["max_num_seqs"], mine["max_num_batched_tokens"]) == (256, 8192)
    assert mine["kv_tokens"] == said["engine_memory"]["kv_tokens"]


def test_e2_v0_past_32k_says_its_chunked_prefill_default_is_not_followed():
    """vLLM 0.5-0.7's EngineArgs turned chunked prefill on for max_model_len > 32,768 (arg_utils.py, "enable chunked
    prefill by default for long context (> 32K) models")."""
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = kvcalc.capacity("llama-3.1-8b", "h100-sxm", context=65536, engine="vllm", vllm_version="0.6")
    assert any("turned chunked prefill on by default past 32,768 tokens" in n
               for n in out["engine_memory"]["notes"])


def test_e3_a_batch_of_prompts_is_drafted_as_its_prompts_not_one_long_one():
    """32 prompts of 8,192 tokens are 32 causal sequences: their draft prefill can never exceed 32 passes of one (the
    weights are read once for all), where one sequence of 262,144 tokens had made a 1B draft's prefill (7.3 s) slower
    than its 8B target's (5.6 s)."""
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in ("draft=llama-3.2-1b,k=4,alpha=0.7", "eagle,k=4"):
            one, many = (kvcalc.estimate("llama-3.1-8b", "h100-sxm", batch=b, context=8192, speculate=spec)
                         for b in (1, 32))
            assert many.speculative.draft_prefill_ms <= 32 * one.speculative.draft_prefill_ms
            assert many.speculative.draft_prefill_ms < many.prefill.ms / 4


def test_e4_nvfp4_on_an_amd_part_is_said_not_to_run():
    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        said = kvcalc.estimate("llama-3.1-8b", "mi300x", weight_dtype="nvfp4").warnings
        quiet = kvcalc.estimate("llama-3.1-8b", "b200", weight_dtype="nvfp4").warnings
    assert any(w.startswith("--weight-dtype nvfp4: NVIDIA's 4-bit format, which mi300x (AMD)") for w in said)
    assert not any("NVIDIA's 4-bit format" in w for w in quiet)


# --- the fourteenth audit: serving ---

def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.mark.parametrize("engine, step_tokens, input_len, output_len, n", [
    ("vllm", 1024, 3000, 64, 2),   # the audit's hand schedule: 122.45 ms (the closed form had 130.5)
    ("trtllm", 100, 1000, 20, 2),  # had been 28 % over
])
def test_s1_a_waves_prefill_steps_carry_only_the_decodes_running_by_then(engine, step_tokens, input_len, output_len,
                                                                           n):
    """With speculation each decode beside a chunk costs a verify and its drafts; every prefill step had carried the
    wave's mean decodes, also those before any prompt had ended. The closed form and the simulator schedule the same
    steps for a wave of fixed lengths, so they agree (docs/validation.md, "Serving under load")."""
    import kvcalc

    ask = dict(engine=engine, step_tokens=step_tokens, speculate="eagle,k=4", input_len=input_len,
               output_len=output_len)
    closed = _quiet(kvcalc.serve, "llama-3.1-8b", concurrency=n, arrivals="waves", **ask)
    # one wave of n requests: the CLI's --simulate --arrivals waves
    sim = _quiet(kvcalc.simulate, "llama-3.1-8b", concurrency=n, arrivals="closed", num_prompts=n, **ask)
    assert closed["ttft_ms"] == pytest.approx(sim["ttft_ms"]["p50"], rel=0.01)
    assert closed["tpot_ms"] == pytest.approx(sim["tpot_ms"]["p50"], rel=0.01)


def test_s2_the_prefill_pool_chunks_a_prompt_past_its_budget(tmp_path):
    """A 20,000-token prompt at --step-tokens 8,192 runs in three chunks, each attending to the ones before, in the
    prefill pool as on shared GPUs: its TTFT is the colocated lone request's plus the KV transfer (had been one
    unchunked pass at every budget), plus the decode step in which vLLM's decode instance computes the first token
    again (the twenty-third audit, D4)."""
    import kvcalc

    ask = dict(engine="vllm", step_tokens=8192, input_len=20000, output_len=100)
    split = _quiet(kvcalc.serve, "llama-3.1-8b", disaggregate=(1, 1), request_rate=0.01, **ask)
    alone = _quiet(kvcalc.serve, "llama-3.1-8b", concurrency=1, **ask)
    assert split["ttft_ms"] == pytest.approx(alone["ttft_ms"] + split["assumptions"]["kv_transfer_ms"]
                                             + split["assumptions"]["step_ms"], rel=1e-9)
    (tmp_path / "long.csv").write_text("arrival_s,input_len,output_len\n0,20000,100\n")
    sim = _quiet(kvcalc.simulate, "llama-3.1-8b", disaggregate=(1, 1), arrivals="trace",
                 trace=str(tmp_path / "long.csv"), engine="vllm", step_tokens=8192)
    assert split["ttft_ms"] == pytest.approx(sim["ttft_ms"]["p50"], rel=0.002)


def test_s3_the_timeline_counts_the_request_overhead_the_percentiles_do(tmp_path):
    import numpy as np

    import kvcalc

    (tmp_path / "t.csv").write_text("arrival_s,input_len,output_len\n0,1000,4\n0,500,4\n0.5,300,8\n")
    d = _quiet(kvcalc.simulate, "llama-3.1-8b", engine="vllm", arrivals="trace", trace=str(tmp_path / "t.csv"),
               keep_timeline=True)
    assert d["request_overhead_ms"] > 0
    assert np.median(d["timeline"]["ttft_s"]) * 1e3 == pytest.approx(d["ttft_ms"]["p50"], rel=1e-9)
    assert np.median(d["timeline"]["e2e_s"]) * 1e3 == pytest.approx(d["e2e_ms"]["p50"], rel=1e-9)


@pytest.mark.parametrize("extra, what", [(["--arrivals", "closed"], "in flight"),
                                         (["--arrivals", "burst", "--request-rate", "5"], "in a burst")])
def test_s4_more_in_flight_than_prompts_is_refused(extra, what):
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "--simulate", *extra, "-n", "100", "--num-prompts", "10",
                           "-i", "100", "--output-len", "10"])
    assert f"--concurrency: 100 {what} with --num-prompts 10: at most 10 ever run at once" in line


class _OneSecondSteps:
    def seconds(self, *a, **k):
        return 1.0

    def decode_seconds(self, d, ctx):
        import numpy as np

        return np.ones(len(ctx))


def test_s5_s6_sglang_retracts_the_newest_of_equals_and_queues_it_last():
    """SGLang's retract_decode sorts by (tokens generated, -prompt length) with a stable reverse sort and pops the
    last, the request merged last among equals (S5: the first had gone); Scheduler._add_request_to_queue appends the
    retracted request to the waiting queue's tail, and FCFS does not re-sort (S6: it had been put first, vLLM's
    rule). Requests 1-3 join together (same lengths); the pool takes the next token of only two, so request 3 goes;
    request 4, queued at t = 1,000, is prefilled before it."""
    import numpy as np

    from kvcalc.engines.scheduler import sglang_prefill_first
    from kvcalc.serving.simulate import Workload, simulate_schedule

    work = Workload(np.array([0, 0.1, 0.5, 0.9, 1000.0]), np.array([10, 10, 10, 10, 9000]),
                    np.array([2, 5000, 5000, 5000, 10]))
    r = simulate_schedule(sglang_prefill_first(budget=8192, max_seqs=64, block_size=1), _OneSecondSteps(), work,
                          pool_tokens=12400)
    assert r.preemptions == 1
    assert r.finish_s[1] == r.finish_s[2] == 5001.0  # the two older equals kept
    assert r.first_token_s[4] < r.finish_s[3]  # request 4 prefilled before request 3 is redone
    assert r.finish_s[4] < r.finish_s[3]


def test_s7_s8_sglang_runs_its_own_max_running_requests():
    """SGLang's resolve_max_num_reqs: max(min(int(pool / context_len x 512), 4096), 2048), at most pool // 2; Llama-3.1-
    8B on an H100 (pool 460,230 tokens, context 131,072): int(1,797.8) -> 2,048 (4,096 had been taken). Under EAGLE or
    MTP without --max-running-requests, 48 ("Max running requests is reset to 48 for speculative decoding")."""
    import kvcalc
    from kvcalc.engines.scheduler import sglang_max_running

    assert sglang_max_running(460_230, 131_072) == 2048
    assert sglang_max_running(4_000_000, 131_072) == 4096 and sglang_max_running(3000, 131_072) == 1500
    assert sglang_max_running(460_230, 131_072, "mtp") == sglang_max_running(1e9, 1, "eagle") == 48
    sim = _quiet(kvcalc.simulate, "llama-3.1-8b", engine="sglang", arrivals="closed", concurrency=64,
                 input_len=100, output_len=20, num_prompts=128, speculate="eagle,k=4")
    assert sim["max_num_seqs"] == 48 and sim["max_running"] == 48
    closed = _quiet(kvcalc.serve, "llama-3.1-8b", engine="sglang", concurrency=64, input_len=100, output_len=20,
                    speculate="eagle,k=4")
    assert closed["max_running"] == 48 and closed["assumptions"]["decode_batch_per_replica"] <= 48


def test_s9_serve_runs_at_most_the_engines_max_num_seqs_and_queues_the_rest():
    """vLLM on an L40S (44.4 GiB visible, under 70) defaults to 256 sequences: 512 in flight had been decoded 507 a
    step (TTFT 98.5 ms where the simulator's is 5 s); capacity caps SGLang's and TensorRT-LLM's batch too."""
    import kvcalc

    closed = _quiet(kvcalc.serve, "llama-3.1-8b", "l40s", engine="vllm", concurrency=512, input_len=100,
                    output_len=100)
    assert closed["max_running"] == 256 < closed["max_concurrency"]
    assert closed["assumptions"]["decode_batch_per_replica"] <= 256
    sim = _quiet(kvcalc.simulate, "llama-3.1-8b", "l40s", engine="vllm", arrivals="closed", concurrency=512,
                 input_len=100, output_len=100, num_prompts=2048)
    assert closed["ttft_ms"] == pytest.approx(sim["ttft_ms"]["mean"], rel=0.1)
    assert closed["tpot_ms"] == pytest.approx(sim["tpot_ms"]["mean"], rel=0.1)
    for engine, flag in (("sglang", "max_running_requests 2,048"), ("trtllm", "max_batch_size 2,048")):
        cap = _quiet(kvcalc.capacity, "llama-3.1-8b", "h100-sxm", context=100, engine=engine)
        assert any(n.startswith(f"{flag} caps the sequences running at once") for n in cap["warnings"])
        assert cap["batch"] == 2048


# --- the fourteenth audit: plan, launch and web ---

def test_p1_a_package_shown_as_two_gpus_is_not_launched_as_one():
    line = one_line_error(["plan", "-m", "mixtral-8x7b", "-g", "mi250x", "-i", "3000", "-o", "300", "-n", "2",
                           "--max-tpot-ms", "60", "--max-ttft-ms", "2000", "--emit", "k8s"])
    assert "--emit: mi250x is a package its driver shows as 2 GPUs (mi250x-gcd each)" in line
    assert "plan with -g mi250x-gcd" in line


def test_p2_the_api_refuses_a_table_it_cannot_give():
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    ask = dict(model="llama-3.1-8b", gpu="h100-sxm", batch=1)
    r = client.get("/api/estimate", params=ask | {"format": "table"})
    assert r.status_code == 422 and r.json()["field"] == "--format"
    assert client.get("/api/estimate", params=ask).status_code == 200  # the default: JSON
    assert client.get("/api/estimate", params=ask | {"format": "csv"}).headers["content-type"].startswith("text/csv")


def test_p3_plan_under_a_gpu_budget_says_why_no_rate():
    import kvcalc

    out = _quiet(kvcalc.plan, "llama-3.1-8b", gpus=["h100-sxm"], input_len=1000, output_len=200, gpu_budget=3,
                 max_tpot_ms=50)
    assert out["workload"]["request_rate_note"] == "not asked: the load is a --concurrency or a --gpu-budget"


def test_p4_p5_the_roofline_and_auto_are_not_sent_to_dead_ends():
    r = runner.invoke(app, ["plan", "-m", "gemma-2-9b", "-g", "v100-sxm2-32gb", "-i", "1000", "-o", "100", "-n", "8",
                            "--max-tpot-ms", "80", "--emit", "k8s"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1] == (
        "kvcalc: error: --emit: the plan runs on 'roofline', and no engine kvcalc launches (vllm, sglang, trtllm) runs "
        "on v100-sxm2-32gb: the plan is a datasheet-roofline bound, with no launch command")
    line = one_line_error(["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "200", "--request-rate", "5",
                           "--engines", "auto"])
    assert "--engines: auto is not an engine of its own" in line


def test_p6_the_text_launch_says_how_many_replicas():
    """--emit vllm had printed one server's command where the deployment is several; only the k8s manifest said."""
    r = runner.invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200",
                            "--request-rate", "100", "--max-tpot-ms", "20", "--engines", "vllm", "--no-disaggregate",
                            "--emit", "vllm", "-f", "json"])
    out = json.loads(r.stdout)
    launched = out["best_by_engine"]["vllm"]
    assert launched["replicas"] > 1
    assert out["launch"].startswith(f"# {launched['replicas']} replicas of this deployment (each on its own "
                                    f"{launched['gpus_per_replica']} GPUs), behind a load balancer\n")


def test_s9_max_num_seqs_caps_the_closed_form_as_the_simulator():
    """serve --max-num-seqs (vLLM's max_num_seqs, SGLang's max_running_requests, TensorRT-LLM's max_batch_size) now
    binds the closed form too: 8 in flight at 4 runs 4 and queues 4, one wave's service time each."""
    r = runner.invoke(app, ["serve", "-m", "llama-3.1-8b", "-e", "vllm", "-i", "1000", "--output-len", "100", "-n", "8",
                            "--max-num-seqs", "4", "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["max_running"] == 4 and out["assumptions"]["decode_batch_per_replica"] <= 4
    assert any("4 of the 8 requests in flight per replica wait in the queue: vllm's scheduler runs 4 at once "
               "(--max-num-seqs)" in w for w in out["warnings"])
    four = json.loads(runner.invoke(app, ["serve", "-m", "llama-3.1-8b", "-e", "vllm", "-i", "1000", "--output-len",
                                          "100", "-n", "4", "-f", "json"]).stdout)
    assert out["requests_per_s"] == pytest.approx(four["requests_per_s"], rel=1e-9)  # the same 4 run; more wait
    assert out["ttft_ms"] > four["ttft_ms"]


def test_s10_trtllms_chunked_context_is_said_as_an_assumption():
    """TensorRT-LLM's llm_args.py leaves enable_chunked_prefill off by default; kvcalc's TensorRT-LLM schedule chunks
    prompts, as plan's launch configures it, and serve says so."""
    import kvcalc

    out = _quiet(kvcalc.serve, "llama-3.1-8b", engine="trtllm", concurrency=4, input_len=100, output_len=10)
    assert "TensorRT-LLM's enable_chunked_prefill on, as plan's launch sets it" in out["assumptions"]["batching"]
    vllm = _quiet(kvcalc.serve, "llama-3.1-8b", engine="vllm", concurrency=4, input_len=100, output_len=10)
    assert "TensorRT-LLM" not in vllm["assumptions"]["batching"]
