"""Regression tests for the tenth hostile audit (docs/validation.md, "Tenth hostile audit"), each named after its
finding, and for the ninth audit's items left then and closed in this round."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvcalc.engines.scheduler import vllm_v1
from kvcalc.formulas.speculative import cut_verify_tokens, expected_tokens, implied_alpha
from kvcalc.speculation import parse
from tests.test_simulate import run


def test_s2_a_verify_the_budget_cuts_yields_only_its_drafts_left():
    """vLLM V1 trims a running request's drafts to the tokens the budget lets through (Scheduler.schedule:
    num_scheduled_spec_tokens = num_new_tokens + num_computed_tokens - num_tokens; del spec_token_ids[...]).
    Budget 4, every step 1 s, k = 2 drafts at alpha 0.5: a full verify of 3 yields 1 + 0.5 + 0.25 = 1.75 tokens, one
    cut to 1 token (no draft left) yields 1. A and B (2 in; 3 and 4 out) prefill together in step 1 (first tokens
    at 1 s). Step 2: A verifies 3 (2.75 tokens so far), B gets the 1 token left (2). Step 3: A 3 more (4.5: done at
    3 s), B 1 (3). Step 4: B alone verifies 3 (4.75: done at 4 s). Crediting the cut verify 1.75 had B done at 3 s."""
    sp = parse("draft=llama-3.2-1b,k=2,alpha=0.5")
    assert sp.yields() == (0.0, 1.0, 1.5, 1.75)
    r = run(vllm_v1(budget=4, max_seqs=8, block_size=1), [0, 0], [2, 2], [3, 4], verify_tokens=3,
            tokens_per_step=1.75, cut_yields=sp.yields())
    assert list(r.first_token_s) == [1.0, 1.0] and list(r.finish_s) == [3.0, 4.0]


def test_s2_a_measured_acceptance_is_cut_at_its_implied_alpha():
    """accepted=2.2 with k = 3: the i.i.d. alpha with 1 + a + a^2 + a^3 = 2.2 (a = 0.6 gives 2.176, 0.61 gives 2.2079),
    and a verify cut to 2 tokens yields 1 + a."""
    a = implied_alpha(2.2, 3)
    assert 0.60 < a < 0.61 and expected_tokens(a, 3) == pytest.approx(2.2, abs=1e-9)
    assert parse("eagle,k=3,accepted=2.2").yields()[2] == pytest.approx(1 + a)
    assert cut_verify_tokens(0.5, 0) == 0.0


def test_s5_kv_transfers_queue_on_the_prefill_replicas_links():
    """Ready at 0, 0 and 5 s, each 2 s on the link, sent first in, first out: done at 2, 4 and 7 s; one ready after
    the link is free starts at once (ready 10: done 12)."""
    from kvcalc.serving.simulate import link_queue

    assert list(link_queue([0.0, 0.0, 5.0, 10.0], [2.0, 2.0, 2.0, 2.0])) == [2.0, 4.0, 7.0, 12.0]
    assert list(link_queue([3.0, 1.0], [1.0, 4.0])) == [6.0, 5.0]  # in the order they are ready


def test_s5_two_prompts_prefilled_together_reach_decode_one_transfer_apart(tmp_path):
    """Two 512-token prompts at t = 0 prefill in one step on the prefill GPU; their caches then cross its link one
    after the other, so the TTFTs differ by one transfer T (kv_transfer_ms_mean): over the two, p50 = a + T / 2 and
    p99 = a + 0.99 T (linear interpolation), p99 - p50 = 0.49 T, where the first token comes with the KV cache. Both
    had arrived together, p99 = p50. TensorRT-LLM's generation server streams the first token as its scheduler takes
    the request in (the thirty-ninth audit, disagg 1), so the second, arriving a transfer later while the first's
    decode step runs, is taken at the end of that step or the next (the overlap scheduler fills a step while the last
    runs): its first token T to T + 2 decode steps after the first's, p99 - p50 0.49 of that."""
    from kvcalc.serving.simulate import simulate

    trace = tmp_path / "two.csv"
    trace.write_text("arrival_s,input_len,output_len\n0,512,16\n0,512,16\n")
    r = simulate("llama-3-8b", "h100-sxm", arrivals="trace", trace=str(trace), disaggregate=(1, 1), engine="trtllm")
    transfer, step = r["kv_transfer_ms_mean"], r["tpot_ms"]["p50"]
    assert 0.49 * transfer <= r["ttft_ms"]["p99"] - r["ttft_ms"]["p50"] <= 0.49 * (transfer + 2 * step)


def test_s6_the_closed_form_charges_whole_verify_steps_as_the_simulator_does():
    """One request of 100 in / 20 out with EAGLE k = 5 at alpha 0.8: a verify yields E = (1 - 0.8^6) / 0.2 = 3.6893
    tokens, so the 19 after the first take ceil(19 / 3.6893) = 6 whole steps, TPOT = 6 / 19 of a step (the closed
    form had charged 19 / E = 5.15 steps, 14 % under the simulator's TPOT)."""
    import math
    import warnings

    from kvcalc.formulas.workload import step_yield
    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.simulate import simulate

    e = (1 - 0.8 ** 6) / 0.2
    assert step_yield(e, 20) == pytest.approx(19 / 6) and math.ceil(19 / e) == 6
    assert step_yield(1.0, 20) == 1.0 and step_yield(3.3, 2) == 1.0  # no speculation; one token left, one step
    kw = dict(input_len=100, output_len=20, engine="vllm", speculate="eagle,k=5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed = serve("llama-3.1-8b", "a100-80gb", concurrency=1, **kw)
        sim = simulate("llama-3.1-8b", "a100-80gb", concurrency=1, num_prompts=5, **kw)
    assert closed["tpot_ms"] == pytest.approx(sim["tpot_ms"]["p50"], rel=1e-3)


# --- config.json read right or refused (part H) ---

LLAMA3_8B = "tests/fixtures/hf/Meta-Llama-3-8B/config.json"


def _hf(tmp_path, config: dict, beside: dict | None = None):
    import json

    from kvcalc.specs.hf import load_hf_spec

    (tmp_path / "config.json").write_text(json.dumps(config))
    if beside is not None:
        (tmp_path / "hf_quant_config.json").write_text(json.dumps(beside))
    return load_hf_spec(tmp_path)


def _llama3(**extra) -> dict:
    import json
    from pathlib import Path

    return {**json.loads((Path(__file__).resolve().parents[1] / LLAMA3_8B).read_text()), **extra}


def test_h1_cohere_ties_its_lm_head_when_the_config_leaves_it_out(tmp_path):
    """Aya-23-8B's config (no tie_word_embeddings; CohereConfig's default is True): embedding 256,000 x 4,096 =
    1,048,576,000 once; 32 layers of q, o 4096^2, k, v 4096 x 1024 and a gated MLP 3 x 4096 x 14336 =
    6,979,321,856; one norm a layer (Cohere's parallel block) and the final one: 8,028,033,024 (the published "8B").
    Untied it had been 9,076,740,096."""
    from kvcalc.formulas.params import total_params

    spec, warned = _hf(tmp_path, {"model_type": "cohere", "hidden_act": "silu", "hidden_size": 4096,
                                  "intermediate_size": 14336, "max_position_embeddings": 8192,
                                  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
                                  "vocab_size": 256000})
    assert spec.tie_word_embeddings and any("assumed true" in w for w in warned)
    assert total_params(spec) == 1_048_576_000 + 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 33 * 4096
    assert total_params(spec) == 8_028_033_024


def test_h1_starcoder2_ties_its_lm_head_when_the_config_leaves_it_out(tmp_path):
    spec, _ = _hf(tmp_path, {"model_type": "starcoder2", "hidden_act": "gelu_pytorch_tanh", "hidden_size": 3072,
                             "intermediate_size": 12288, "max_position_embeddings": 16384, "num_attention_heads": 24,
                             "num_hidden_layers": 30, "num_key_value_heads": 2, "sliding_window": 4096,
                             "use_bias": True, "vocab_size": 49152})
    assert spec.tie_word_embeddings


def test_h3_relu2_is_a_plain_mlp_and_gpt2_names_with_swiglu_are_refused(tmp_path):
    """Nemotron-Mini-4B (relu2: up and down only): embedding and lm_head 2 x 256,000 x 3,072; a layer's attention
    2 x 3072^2 + 2 x 3072 x 1024 and MLP 2 x 3072 x 9216 (not the gated 3 x); 2 norms a layer and the final one:
    4,190,309,376 (published "4.19B"; gated, it had been 5,096,279,040). Jais (GPT-2 names, swiglu: c_fc, c_fc2,
    c_proj) is refused."""
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.params import total_params

    spec, _ = _hf(tmp_path, {"model_type": "nemotron", "hidden_act": "relu2", "hidden_size": 3072,
                             "intermediate_size": 9216, "max_position_embeddings": 4096, "num_attention_heads": 24,
                             "num_hidden_layers": 32, "num_key_value_heads": 8, "head_dim": 128,
                             "vocab_size": 256000})
    layer = 2 * 3072**2 + 2 * 3072 * 1024 + 2 * 3072 * 9216
    assert spec.mlp.kind == "plain" and total_params(spec) == 2 * 256_000 * 3072 + 32 * layer + 65 * 3072 == 4_190_309_376
    with pytest.raises(KvcalcError, match="activation_function 'swiglu'"):
        _hf(tmp_path, {"model_type": "jais", "activation_function": "swiglu", "n_embd": 5120, "n_layer": 40,
                       "n_head": 40, "n_inner": 13653, "n_positions": 2048, "vocab_size": 84992})


def test_h2_modelopt_awq_reads_its_group_size_and_zero_point(tmp_path):
    """ModelOpt's W4A16_AWQ export (group_size, has_zero_point false): groups of 128 are kvcalc's symmetric int4
    (0.5 + 2/128 B a weight); groups of 64 without zero points are a format kvcalc does not store: refused, naming
    hf_quant_config.json and how to get past it."""
    from kvcalc.errors import KvcalcError

    awq = {"quant_algo": "W4A16_AWQ", "has_zero_point": False, "exclude_modules": ["lm_head"]}
    spec, _ = _hf(tmp_path, _llama3(), {"quantization": {**awq, "group_size": 128}})
    assert spec.quantization.weight_format == "int4"
    with pytest.raises(KvcalcError, match=r"hf_quant_config.json: .*groups of 64.*move hf_quant_config.json aside"):
        _hf(tmp_path, _llama3(), {"quantization": {**awq, "group_size": 64}})
    with pytest.raises(KvcalcError, match="NVFP4 scales groups of 16"):
        _hf(tmp_path, _llama3(), {"quantization": {"quant_algo": "NVFP4", "group_size": 32}})


def test_h7_a_null_quantization_config_leaves_hf_quant_config_json_in_force(tmp_path):
    spec, _ = _hf(tmp_path, _llama3(quantization_config=None), {"quantization": {"quant_algo": "NVFP4",
                                                                                 "group_size": 16}})
    assert spec.quantization.weight_format == "nvfp4"


def test_h9_a_checkpoints_fp8_kv_cache_is_warned_of(tmp_path):
    """kv_cache_quant_algo FP8 (NVIDIA's ModelOpt checkpoints): vLLM's --kv-cache-dtype auto stores fp8 (vLLM's
    resolve_kv_cache_dtype_string); kvcalc warns and says which flag sizes it. A KV-only ModelOpt file: bf16 weights."""
    spec, warned = _hf(tmp_path, _llama3(), {"quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                              "kv_cache_quant_algo": "FP8"}})
    assert any("KV cache in fp8" in w and "--kv-dtype fp8" in w for w in warned)
    spec, warned = _hf(tmp_path, _llama3(), {"quantization": {"quant_algo": None, "kv_cache_quant_algo": "FP8"}})
    assert spec.quantization is None and any("KV cache in fp8" in w for w in warned)


@pytest.mark.parametrize("value", ["false", 0, "no"])
def test_h10_a_symmetric_that_is_not_a_boolean_is_refused(tmp_path, value):
    from kvcalc.errors import KvcalcError

    qc = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"type": "int", "num_bits": 4, "group_size": 128, "symmetric": value}}}}
    with pytest.raises(KvcalcError, match="weights.symmetric: expected true or false"):
        _hf(tmp_path, _llama3(quantization_config=qc))


def test_e8_an_mtp_layer_spreads_its_routed_experts_over_the_expert_parallel_gpus():
    """DeepSeek-V3's MTP module is a full decoder layer with the model's MoE: 256 experts x 3 x 7,168 x 2,048 =
    11,274,289,152 routed parameters. At --ep 8 each GPU holds an eighth of them (vLLM's DeepSeekMTP and SGLang's
    NextN build the layer with the model's FusedMoE under the server's expert parallelism), so the draft's weights
    on a GPU are 7/8 of those experts' bytes (fp8-block: 1 B a weight and a 4-B scale a 128 x 128 block) lighter."""
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one, eight = (kvcalc.estimate("deepseek-v3", "h200", batch=64, context=8192, speculate="mtp=1", ep=ep)
                      for ep in (1, 8))
    routed = 256 * 3 * 7168 * 2048
    assert routed == 11_274_289_152
    drop = one.speculative.draft_weights_bytes - eight.speculative.draft_weights_bytes
    assert drop == pytest.approx(routed * 7 / 8 * (1 + 4 / 128**2), abs=2)


def test_e4_the_python_roofline_defaults_to_the_checkpoints_own_weight_format():
    """kvcalc roofline, and every other command, sizes weights at the checkpoint's format by default (DeepSeek-V3:
    fp8-block); the Python roofline_data and plot.roofline had defaulted to bf16 (1.94x the bytes)."""
    from kvcalc.report.roofline_data import roofline_data

    assert roofline_data(["h200"], "deepseek-v3", batch=[1])["weight_dtype"] == "fp8-block"


def test_s6_simulated_waves_are_one_wave_of_the_concurrency_unless_num_prompts_is_given():
    """--arrivals waves -n 8 --simulate: 8 requests from t = 0 (a wave), not the default 1,000 in a closed loop,
    which breaks the waves up; --num-prompts given is kept."""
    import json

    from tests.test_fifth_audit import runner
    from kvcalc.cli import app

    base = ["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "20", "-n", "8", "--arrivals", "waves",
            "--simulate", "-f", "json"]
    one = json.loads(runner.invoke(app, base).stdout)
    assert one["num_prompts"] == 8 and one["completed"] == 8
    assert json.loads(runner.invoke(app, base + ["--num-prompts", "24"]).stdout)["num_prompts"] == 24


# --- plan (part P) ---

def _plan_json(args):
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    out = runner.invoke(app, ["plan", *args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_p1_a_replica_is_judged_at_no_more_requests_than_the_workload_holds():
    """-n 1 at --output-len 1: one request in flight on one replica (its TTFT is one prompt's, as serve -n 1 gives),
    not the ladder's top budget of 448 that the tie-breaks on requests/s had picked (TTFT 8.5 s)."""
    import warnings

    from kvcalc.serving.closed_form import serve

    args = ["-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "--engines", "vllm", "--no-convert",
            "--no-disaggregate"]
    c = _plan_json([*args, "-o", "1", "-n", "1"])["choice"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = serve("llama-3.1-8b", "h100-sxm", engine="vllm", input_len=1000, output_len=1, concurrency=1)
    assert c["in_flight_per_replica"] == 1 and c["replicas"] == 1
    assert c["ttft_ms"] == pytest.approx(one["ttft_ms"], rel=0.01)


def test_p4_p5_more_budget_never_serves_less_and_the_budget_is_named_when_it_binds():
    """--gpu-budget 10,000 had dropped every 1-GPU layout at the 10,000-replica cap (8 % less than at 9,999); and
    Kimi-K2 on 8 H100s, whose layouts meet the limits only on 16 or more GPUs, is infeasible for the budget."""
    args = ["-m", "qwen3-32b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--max-tpot-ms", "60"]
    a, b = (_plan_json([*args, "--gpu-budget", n])["choice"] for n in ("9999", "10000"))
    assert b["output_tokens_per_s"] >= a["output_tokens_per_s"]
    d = _plan_json(["-m", "kimi-k2", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--gpu-budget", "8",
                    "--max-tpot-ms", "30", "--max-ttft-ms", "1000"])
    assert d["choice"] is None and d["choice_note"].startswith("no configuration serves the load within --gpu-budget")


def test_p3_the_web_api_refuses_explain_with_json_or_csv_as_the_cli_does():
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    c = TestClient(create_app())
    for fmt in ("json", "csv"):
        r = c.get(f"/api/estimate?model=qwen3-32b&gpu=h100-sxm&explain=true&format={fmt}")
        assert r.status_code == 422 and r.json()["field"] == "--explain"
    r = c.get("/api/plan?model=qwen3-32b&gpu=h100-sxm&input_len=1000&output_len=200&concurrency=64&explain=true")
    assert r.status_code == 422 and r.json()["field"] == "--explain"
    assert c.get("/estimate?model=qwen3-32b&gpu=h100-sxm&explain=true").status_code == 200  # the page draws them


def test_s7_under_ep_a_request_must_fit_one_data_parallel_replicas_pool(tmp_path):
    """--ep 4 at tp 1: four attention replicas, each with its own pool (Qwen3-30B-A3B at 98,304 B a token); a
    30,100-token request that no replica holds is refused, as serve's closed form refuses it, where the four pools
    added together had held it."""
    from kvcalc.errors import KvcalcError
    from kvcalc.serving.simulate import simulate

    trace = tmp_path / "big.csv"
    trace.write_text("arrival_s,input_len,output_len\n" + "0,100,100\n" * 9 + "0,30000,100\n")
    with pytest.raises(KvcalcError, match="one data-parallel replica's KV pool"):
        simulate("qwen3-30b-a3b", "h100-sxm", ep=4, arrivals="trace", trace=str(trace), memory_utilization=0.23)


def test_s9_sglang_takes_retract_decodes_estimate_as_its_ratio():
    """After a retraction SGLang's scheduler sets new_token_ratio to ScheduleBatch.retract_decode's estimate over
    the kept requests: two kept with 30 and 50 tokens decoded of 200 and 400: (80 + 20 x 2) / 600 = 0.2; with 390 of
    400 decoded, min(1, 410 / 400) = 1 (the simulator had reset it to the initial 0.7)."""
    from kvcalc.engines.scheduler import sglang_ratio_after_retraction

    assert sglang_ratio_after_retraction([30, 50], [200, 400]) == pytest.approx(0.2)
    assert sglang_ratio_after_retraction([390], [400]) == 1.0


def test_e7_the_fewest_gpus_need_not_be_a_power_of_two():
    """GPT-3 175B (96 heads, d_ff 49,152: 24 divides both) on L4s: 350 GB of bf16 weights over 24 GPUs is 14.56 GB a
    GPU, within the 19.84 GiB usable; over 16, 21.9 GB is not. capacity's fewest GPUs and the overflow hint at --tp 12
    say 24 (they had said 32, the next power of two)."""
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    base = ["capacity", "-m", "gpt-3-175b", "-g", "l4", "-c", "2048", "-f", "json"]
    assert json.loads(runner.invoke(app, base).stdout)["min_gpus_for_weights"] == 24
    assert "--tp 24 holds them" in json.loads(runner.invoke(app, base + ["--tp", "12"]).stdout)["binding"]


def test_e11_capacity_runs_no_more_sequences_than_max_num_seqs():
    """vLLM's scheduler runs at most max_num_seqs sequences a step: with --max-num-seqs 4 capacity decodes at batch
    4 (about 500 tokens/s, as serve --simulate gives), not at the pool's 110; what the pool holds (vLLM's log line,
    max_concurrency, and max_sequences_at_context, which serve's pool matches) stays 110."""
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    d = json.loads(runner.invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm",
                                       "--max-num-seqs", "4", "-f", "json"]).stdout)
    assert d["batch"] == 4 and d["max_sequences_at_context"] == 110 == int(d["engine_memory"]["max_concurrency"])
    assert 400 < d["tokens_per_s"] < 600


def test_e5_e9_calibrate_from_a_benchmark_checks_its_formats_and_the_speed_of_light(tmp_path):
    """A TPOT of 3.0 ms for Llama-3.1-8B on one H100 SXM at batch 1: its step reads about 16 GB of weights, 4.8 ms at
    3.35 TB/s, so the run is not this deployment: refused, naming the line (it had been fitted, and the profile then
    timed the run at 5.27 ms). A KV format estimate refuses (fp8-block, a weight format; SGLang's int4) is refused."""
    from kvcalc.errors import KvcalcError
    from kvcalc.validate.calibrate import calibrate_from_benchmark

    path = tmp_path / "fast.csv"
    path.write_text("batch,input_len,output_len,tpot_ms\n1,1000,200,3.0\n16,1000,200,3.6\n64,1000,200,5.2\n")
    with pytest.raises(KvcalcError, match=r"line 2: TPOT 3 ms is below the speed of light"):
        calibrate_from_benchmark(path, model="llama-3.1-8b", gpu="h100-sxm")
    with pytest.raises(KvcalcError, match="--kv-dtype: unknown dtype 'fp8-block'"):
        calibrate_from_benchmark(path, model="llama-3.1-8b", gpu="h100-sxm", kv_dtype="fp8-block")
    with pytest.raises(KvcalcError, match="sglang stores no int4 KV cache"):
        calibrate_from_benchmark(path, model="llama-3.1-8b", gpu="h100-sxm", engine="sglang", kv_dtype="int4")


def test_e6_a_profile_files_engine_refuses_the_kv_formats_it_does_not_store():
    from kvcalc.errors import KvcalcError
    from kvcalc.estimator import estimate

    with pytest.raises(KvcalcError, match="sglang stores no int4 KV cache"):
        estimate("llama-3.1-8b", "h100-sxm", kv_dtype="int4",
                 profile_file=str(Path(__file__).resolve().parents[1] / "hardware_specs/profiles/h100-sxm.sglang.toml"))


def _fp8_ignoring(base: str, ignore: list):
    """A compressed-tensors fp8 checkpoint of the fixture `base` whose ignore list is `ignore`: its ModelSpec."""
    import json

    from kvcalc.specs.hf import config_to_spec_dict
    from kvcalc.specs.model import ModelSpec

    cfg = json.loads((Path(__file__).resolve().parent / "fixtures" / "hf" / base / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "compressed-tensors", "ignore": ignore, "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"type": "float", "num_bits": 8, "strategy": "channel"}}}}
    return ModelSpec.model_validate(config_to_spec_dict(cfg, name=base, source=base)[0])


@pytest.mark.parametrize("base, entry", [
    ("DeepSeek-V2-Lite", "re:.*kv_a_proj_with_mqa$"),  # H4: MLA's projection had been dropped in silence
    ("DeepSeek-V2-Lite", "model.layers.0.self_attn.kv_b_proj"),  # H4: counted as layer 0's whole attention
    ("gpt2", "re:.*attn.c_proj$"),  # H4: counted as the whole attention (c_attn too)
    ("gpt2", "re:.*c_proj$"),  # attention's and the MLP's alike
    ("Qwen3-30B-A3B", "re:.*mlp.experts.*down_proj$"),  # H5: counted as all three expert matrices
    ("Qwen3-30B-A3B", "model.layers.0.mlp.experts.5"),  # H5: one expert counted as all 128 of layer 0's
])
def test_h4_h5_an_ignore_list_naming_part_of_a_class_is_refused(base, entry):
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="quantization_config ignore"):
        _fp8_ignoring(base, ["lm_head", entry])


def test_h6_a_container_regex_keeps_every_class_it_matches():
    """Qwen3-30B-A3B (48 layers of 128 experts of 3 x 2,048 x 768): 're:.*mlp.*' matches every expert's modules, so
    they stay bf16 as 're:.*mlp.experts.*' keeps them; 're:.*layers.*' matches every decoder Linear: nothing is
    quantised. Both had been dropped in silence (sized at fp8, -48 %)."""
    from kvcalc.formulas.params import params_breakdown

    experts = _fp8_ignoring("Qwen3-30B-A3B", ["lm_head", "re:.*mlp.*"])
    assert "experts" not in experts.quantization.quantized
    assert params_breakdown(experts)["moe/routed"] == 48 * 128 * 3 * 2048 * 768
    assert _fp8_ignoring("Qwen3-30B-A3B", ["lm_head", "re:.*layers.*"]).quantization is None


def test_h8_e10_paths_profiles_engines_and_import_are_named_right(tmp_path, monkeypatch):
    from tests.test_fifth_audit import one_line_error

    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    assert "--model: ./my-model: no such file or folder" in one_line_error(["estimate", "-m", "./my-model"])
    (tmp_path / "p.toml").write_text((root / "hardware_specs/profiles/h100-sxm.vllm.toml").read_text()
                                     .replace('gpu = "h100-sxm"', 'gpu = "zz"'))
    assert "names the GPU 'zz', which is not a bundled GPU" in one_line_error(
        ["estimate", "-m", "llama-3.1-8b", "--profile", "p.toml"])
    (tmp_path / "g.toml").write_text((root / "hardware_specs/h100-sxm.toml").read_text()
                                     + '\n[unsupported_engines]\nvLLM = "does not run here"\n')
    assert "unsupported_engines: 'vLLM' is not an engine" in one_line_error(
        ["estimate", "-m", "llama-3.1-8b", "-g", "g.toml"])
    assert "CONFIG: 'llama-3.1-8b' is neither a config.json" in one_line_error(["import", "llama-3.1-8b", "-n", "q"])


def test_e1_sweep_refuses_empty_speculate_items_and_runs_a_repeated_form_once(tmp_path):
    from kvcalc.cli import app
    from tests.test_fifth_audit import one_line_error, runner

    base = ["sweep", "-m", "llama-3.1-8b", "-o", str(tmp_path / "s.csv"), "-b", "1", "-c", "4096", "--speculate"]
    assert "--speculate: an empty item" in one_line_error(base + ["eagle,k=2;;medusa=2"])
    assert "--speculate: empty list" in one_line_error(base + [" "])
    assert runner.invoke(app, base + ["eagle,k=2;eagle,k=2"]).exit_code == 0
    assert len((tmp_path / "s.csv").read_text().strip().splitlines()) == 2  # the header and one row


def test_e3_runs_of_a_json_array_are_named_by_their_own_line(tmp_path):
    """A vllm bench JSON array of three runs, indented, the third's TPOT negative: the error names the line the
    third run starts on (and the run), where every run had been "line 1"."""
    import json

    from kvcalc.errors import KvcalcError
    from kvcalc.validate.calibrate import read_benchmark

    run = {"max_concurrency": 16, "total_input_tokens": 16000, "total_output_tokens": 3200, "completed": 16,
           "mean_tpot_ms": 8.0, "mean_ttft_ms": 40.0}
    path = tmp_path / "b.json"
    path.write_text(json.dumps([run, run, {**run, "mean_tpot_ms": -3}], indent=1))
    third = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line == " {"][2]
    with pytest.raises(KvcalcError, match=rf"line {third} \(run 3\): field mean_tpot_ms: expected a positive number"):
        read_benchmark(path)


def test_s2_a_json_trace_of_json_lines_is_read_as_such_and_an_array_is_named(tmp_path):
    from kvcalc.errors import KvcalcError
    from kvcalc.serving.simulate import read_trace

    lines = tmp_path / "t.json"
    lines.write_text('{"arrival_s": 0, "input_len": 100, "output_len": 10}\n'
                     '{"arrival_s": 0.5, "input_len": 200, "output_len": 20}\n')
    w = read_trace(lines)
    assert list(w.input_len) == [100, 200] and list(w.arrival_s) == [0.0, 0.5]
    array = tmp_path / "a.json"
    array.write_text('[{"arrival_s": 0, "input_len": 100, "output_len": 10}]')
    with pytest.raises(KvcalcError, match="a JSON array; a trace is JSON lines"):
        read_trace(array)


def test_s5_a_step_budget_that_empties_the_pool_is_named():
    from tests.test_fifth_audit import one_line_error

    line = one_line_error(["serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "100", "-n", "16",
                           "--step-tokens", "1000000"])
    assert "one step of 1,000,000 tokens (--step-tokens) reserves" in line and "lower it" in line


def test_s8_a_rate_one_deployment_cannot_serve_is_warned_of():
    """100 requests/s of 1,000 + 200 tokens on one H100 (which serves about 27/s): the simulator runs the one
    deployment it is given, and says the queue grows; at 5/s it says nothing."""
    import warnings

    from kvcalc.serving.simulate import simulate

    kw = dict(input_len=1000, output_len=200, arrivals="poisson", num_prompts=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        over = simulate("llama-3.1-8b", "h100-sxm", request_rate=100.0, **kw)
        calm = simulate("llama-3.1-8b", "h100-sxm", request_rate=5.0, **kw)
    assert any("requests/s arrive where this deployment serves" in w for w in over["warnings"])
    assert not any("arrive where" in w for w in calm["warnings"])


def test_e12_explain_substitutes_the_bytes_each_line_counts():
    """Qwen3-Next at an fp8 cache: its linear state is kept at 2 B, 36 x (32 x 128 x 128 + 3 x 8,192) x 2 B =
    37.69 MiB (the line had shown x 1 B); DeepSeek-V3.2's fp8 record and indexer key: 512 + 4 x 4 + 2 x 64 + 132 =
    788 B (it had shown (512 + 64) x 1.36806 B)."""
    from tests.test_fifth_audit import runner
    from kvcalc.cli import app

    out = runner.invoke(app, ["estimate", "-m", "qwen3-next-80b-a3b", "-c", "4096", "-b", "2", "--kv-dtype", "fp8",
                              "--explain"]).output
    assert "= 36 * (32 * 128 * 128 + 3 * 8,192) * 2 B" in out and 36 * (32 * 128 * 128 + 3 * 8192) * 2 == 39_518_208
    out = runner.invoke(app, ["estimate", "-m", "deepseek-v3.2", "-g", "h200", "--tp", "8", "-c", "4096",
                              "--kv-dtype", "fp8", "--explain"]).output
    assert "= 512 + 4 * 4 + 2 * 64 B + 132 B" in out and "= 788 B" in out


def test_p6_plans_nulls_say_what_was_not_asked():
    d = _plan_json(["-m", "qwen3-32b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "-n", "64", "--max-tpot-ms",
                    "60"])
    assert d["limits"]["max_ttft_ms_note"] == "not asked: no --max-ttft-ms"
    assert d["workload"]["gpu_budget_note"] == "not asked: no --gpu-budget"
    assert d["choice"]["cost_per_hour_note"] == d["choice"]["cost_per_million_output_tokens_note"]


def test_e2_capacity_says_which_batch_its_longest_context_is_at():
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    base = ["capacity", "-m", "llama-3.1-8b", "-c", "8192", "-f", "json"]
    d = json.loads(runner.invoke(app, base).stdout)
    assert d["max_context_batch"] == 1 and d["batch"] > 1
    assert json.loads(runner.invoke(app, base + ["-b", "4"]).stdout)["max_context_batch"] == 4


def test_e13_the_estimate_objects_exact_bytes_round_to_the_jsons():
    """README: the Estimate object keeps the formulas' exact bytes and to_json_dict() is the JSON, whole bytes
    rounded half up (the tenth audit's E13 had found the two differ without a word): an H200's usable bytes at 0.9
    are fractional in the object and whole in the JSON."""
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = kvcalc.estimate("llama-3.1-8b", "h200", weight_dtype="int4-g32", kv_dtype="int4")
    exact, doc = e.memory.usable_bytes, e.to_json_dict()["memory"]["usable_bytes"]
    assert isinstance(doc, int) and doc == int(exact + 0.5) and exact != doc


def test_s1_every_command_that_sizes_a_vllm_server_refuses_a_budget_below_max_num_seqs():
    """vLLM's SchedulerConfig._verify_args refuses max_num_batched_tokens below max_num_seqs (1,024 by default on an
    H100): serve's closed form and capacity answered for it where the simulator refused it."""
    from tests.test_fifth_audit import one_line_error

    for args in (["serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "-n", "1", "--step-tokens",
                  "256", "-e", "vllm"],
                 ["capacity", "-m", "llama-3.1-8b", "-c", "1200", "--max-num-batched-tokens", "256", "-e", "vllm"]):
        line = one_line_error(args)
        assert "256: vLLM refuses a max_num_batched_tokens below its default max_num_seqs (1,024" in line
        assert "give --max-num-seqs 256 or fewer (serve --simulate, capacity)" in line


def test_v2_a_given_max_num_seqs_sizes_and_checks_vllms_pool():
    """--simulate --max-num-seqs 64 --step-tokens 128: vLLM accepts it (128 >= 64); the pool had been sized and checked
    at vLLM's default 1,024 and the run refused."""
    import warnings

    from kvcalc.serving.simulate import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate("llama-3.1-8b", "h100-sxm", engine="vllm", input_len=500, output_len=100, concurrency=64,
                     num_prompts=128, max_num_seqs=64, step_tokens=128)
    assert r["max_num_seqs"] == 64 and r["completed"] == 128


def test_s10_a_full_prefix_hit_leaves_the_last_block_to_prefill():
    """vLLM hits whole blocks of at most the prompt less one token: 16 tokens in blocks of 4 at a hit rate of 1 cache
    12 and prefill 4 (a step of 1 + 0.1 x 4 = 1.4 s with this toy timer); 15 cached (one token prefilled, 1.1 s) had
    been faster than any hit vLLM has."""
    from kvcalc.engines.scheduler import vllm_v1
    from tests.test_simulate import ToyStepper

    r = run(vllm_v1(budget=8, block_size=4), [0], [16], [2], stepper=ToyStepper(a=1.0, c=0.1), prefix_hit_rate=1.0)
    assert r.first_token_s[0] == pytest.approx(1.4)


def test_s11_a_preempted_request_is_readmitted_for_the_tokens_it_recomputes():
    """Pool 30 tokens (blocks of 1), budget 100, steps 1 s; A, B, C of 10 tokens (5 cached) and 20, 20, 3 out at 0.
    They prefill together; decodes preempt C, then B. When A finishes (t = 20), B recomputes 16 tokens and C 11:
    27 fit the pool, and both enter the next step (C done at 22). The admission check had asked for C's 5 cached
    tokens on top of its recompute (16 of the 14 left beside B's), so C waited for B (done at 36). Since the
    thirty-fourth audit a preempted vLLM request finds what its prefix cache kept: B, preempted at t = 6 with 15 full
    blocks, loses 14 of them to A's growth to 29 tokens, and recomputes 15 tokens, not 16; C's 10 went long before:
    26 tokens in the step."""
    from kvcalc.engines.scheduler import vllm_v1

    r = run(vllm_v1(budget=100, block_size=1), [0, 0, 0], [10, 10, 10], [20, 20, 3], pool_tokens=30,
            prefix_hit_rate=0.5)
    assert r.preemptions == 2 and list(r.finish_s) == [20.0, 34.0, 22.0]
    assert any(step["ids"] == [1, 2] and step["chunk"] == 26 for step in r.log)


def test_s12_past_the_pool_an_on_demand_engine_is_said_to_preempt():
    import warnings

    from kvcalc.serving.closed_form import serve

    kw = dict(input_len=1000, output_len=500, concurrency=64, memory_utilization=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vllm = serve("llama-3.1-8b", "h100-sxm", engine="vllm", **kw)
        trt = serve("llama-3.1-8b", "h100-sxm", engine="trtllm", **kw)
    assert vllm["preemption_risk"].startswith("likely: vllm allocates KV blocks as requests grow")
    assert trt["preemption_risk"].startswith("none")


def test_s3_s4_charts_show_idle_time_and_refuse_an_undefined_axis(tmp_path):
    """S3: after a step's completions the timeline drops to what runs on, so a 2 s gap between Poisson arrivals is
    drawn idle (it had held 1 running); S4: serve's frontier at --output-len 1 has no x axis (1 / TPOT): refused."""
    import warnings

    from kvcalc.serving.simulate import simulate
    from tests.test_fifth_audit import one_line_error

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate("llama-3.1-8b", input_len=100, output_len=10, arrivals="poisson", request_rate=0.5,
                     num_prompts=5, keep_timeline=True)
    tl = r["timeline"]
    assert 0 in list(tl["running"]) and r["max_running"] == max(tl["running"])
    assert "--plot: the frontier's x axis" in one_line_error(
        ["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "1", "-n", "1,4", "--plot",
         str(tmp_path / "p.png")])


def test_s13_a_hybrids_state_is_held_per_request_not_charged_per_token(tmp_path):
    """Qwen3-Next keeps a fixed Gated DeltaNet state (36 x (32 x 128 x 128 + 3 x 8,192) x 2 B = 39,518,208 B) beside
    12 full-attention layers' cache of 24,576 B a token: a request of 60,010 tokens needs 39.5 MB + 1.475 GB =
    1,514,323,968 B, which a 1.98 GB pool holds (serve and capacity say so). The simulator had converted the pool to
    tokens at the trace's mean request, charging the state to every token (4.8 GB for this one), and refused it; it
    now holds each request's state as blocks of its own beside its tokens."""
    import warnings

    from kvcalc.serving.simulate import simulate

    assert 36 * (32 * 128 * 128 + 3 * 8192) * 2 + 60_010 * 12 * 2 * 2 * 256 * 2 == 1_514_323_968
    trace = tmp_path / "hyb.csv"
    trace.write_text("arrival_s,input_len,output_len\n" + "0,100,10\n" * 99 + "0,60000,10\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate("qwen3-next-80b-a3b", "h200", weight_dtype="fp8", arrivals="trace", trace=str(trace),
                     memory_utilization=0.55)
    assert r["completed"] == 100


@pytest.mark.parametrize("model, gpu, rate, tp, pp, weight, kv", [
    ("llama-3.1-70b", "l40s", 20, 8, 1, "fp8", "bf16"),  # plan 440 GPUs where serve needs 344
    ("qwen3-235b-a22b", "l4", 20, 8, 2, "fp8", "fp8"),  # 896 where 768
])
def test_p2_at_a_rate_plan_buys_the_gpus_serve_needs_for_its_choice(model, gpu, rate, tp, pp, weight, kv):
    """At a request rate a replica carries rate / k, a fraction of a request in flight (Little's law), as serve takes
    it; plan had judged whole requests (2 where 2.95 meet a 30 ms TPOT) and bought up to 28 % more GPUs than serve
    for the deployment it chose."""
    import warnings

    from kvcalc.serving.closed_form import serve

    c = _plan_json(["-m", model, "-g", gpu, "-i", "128", "-o", "200", "--request-rate", str(rate), "--max-tpot-ms", "30",
                    "--no-disaggregate", "--no-speculate"])["choice"]
    assert (c["tensor_parallel"], c["pipeline_parallel"], c["weight_dtype"], c["kv_dtype"]) == (tp, pp, weight, kv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = serve(model, gpu, engine=c["engine"], tp=tp, pp=pp, weight_dtype=weight, kv_dtype=kv, input_len=128,
                  output_len=200, request_rate=float(rate), max_tpot_ms=30)
    assert c["gpus"] == s["gpus"] and c["tpot_ms"] <= 30


def test_v4_an_ignore_regex_names_one_layer_or_is_refused_and_a_dense_layer_has_no_experts():
    """Llama-3-8B's layer is 2 x 4096^2 + 2 x 4096 x 1024 + 3 x 4096 x 14336 = 218,103,808 weights, 1 B more each in
    bf16 than fp8: 're:model.layers.0.*' keeps layer 0 (it had been dropped); a pattern over several layers
    ('re:model.layers.[0-3]\\..*', and 're:model.layers.1.*', whose dots also match layers 10-19 and 100-127) is
    refused (the first had kept the whole model in bf16). DeepSeek-V2-Lite's layer 0 is dense (first_k_dense_replace
    1): attention 13,762,560 + MLP 3 x 2048 x 10944 = 81,002,496 weights more, no experts (it had been charged a MoE
    layer's)."""
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.params import weight_bytes

    base = weight_bytes(_fp8_ignoring("Meta-Llama-3-8B", ["lm_head"]), 1.0)
    layer = 2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert weight_bytes(_fp8_ignoring("Meta-Llama-3-8B", ["re:model.layers.0.*"]), 1.0) == base + layer
    for entry in ("re:model.layers.[0-3]\\..*", "re:model.layers.1.*"):
        with pytest.raises(KvcalcError, match="names some layers by a pattern"):
            _fp8_ignoring("Meta-Llama-3-8B", [entry])
    ds = weight_bytes(_fp8_ignoring("DeepSeek-V2-Lite", ["lm_head"]), 1.0)
    assert weight_bytes(_fp8_ignoring("DeepSeek-V2-Lite", ["re:model.layers.0.*"]), 1.0) == ds + 13_762_560 + 3 * 2048 * 10944


@pytest.mark.parametrize("entry", ["re:.*query_key_value$", "re:.*dense$", "re:.*c_attn$"])
def test_v5_an_ignore_entry_naming_another_familys_module_names_nothing(entry):
    """vLLM matches ignore entries against the model's own modules: GPT-NeoX's query_key_value and dense, or GPT-2's
    c_attn, name nothing in Llama 3 8B, which stays fp8 throughout (they had been refused as part of a class)."""
    from kvcalc.formulas.params import weight_bytes

    plain = weight_bytes(_fp8_ignoring("Meta-Llama-3-8B", ["lm_head"]), 1.0)
    assert weight_bytes(_fp8_ignoring("Meta-Llama-3-8B", ["lm_head", entry]), 1.0) == plain


def test_v1_at_one_output_token_each_replica_is_judged_at_its_share():
    """-n 8 at -o 1 under a 100 ms TTFT on H100s: two replicas of 4 in flight (serve: TTFT 57.1 ms, 140 requests/s),
    not two of 7 (TTFT 97.7 ms, 143 requests/s, the rate of 14 in flight)."""
    import warnings

    from kvcalc.serving.closed_form import serve

    c = _plan_json(["-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "1", "-n", "8", "--max-ttft-ms",
                    "100"])["choice"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = serve("llama-3.1-8b", "h100-sxm", engine=c["engine"], weight_dtype=c["weight_dtype"],
                  kv_dtype=c["kv_dtype"], tp=c["tensor_parallel"], input_len=1000, output_len=1, concurrency=8,
                  max_ttft_ms=100)
    assert c["in_flight_per_replica"] * c["replicas"] == 8 and c["replicas"] == s["replicas"]
    assert c["ttft_ms"] == pytest.approx(s["ttft_ms"], rel=1e-3)


def test_v6_v8_messages_name_the_file_and_the_cap(tmp_path):
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match=r"hf_quant_config.json: quantization.quant_algo 'W4A8_FP8'"):
        _hf(tmp_path, _llama3(), {"quantization": {"quant_algo": "W4A8_FP8"}})
    _, warned = _hf(tmp_path, _llama3(), {"quantization": {"quant_algo": "NVFP4", "group_size": 16,
                                                           "kv_cache_quant_algo": "FP8"}})
    assert any("hf_quant_config.json quantization.kv_cache_quant_algo" in w for w in warned)
    d = _plan_json(["-m", "llama-3.1-70b", "-g", "l4", "-i", "1000", "-o", "200", "--request-rate", "200000",
                    "--max-tpot-ms", "100"])
    assert d["choice_note"].startswith("no configuration serves the load within 10,000 replicas")


def test_e12_an_all_linear_rewrite_names_its_attention_linear():
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert kvcalc.estimate("llama-3.1-8b", attn="linear").inputs.attention == "linear"
        assert kvcalc.estimate("qwen3-next-80b-a3b").inputs.attention == "gqa"  # a hybrid keeps its softmax layers'


def test_p2_littles_law_with_an_affine_latency():
    """C = rate x (a + b C): at 0.25 requests/s with a latency of 2 s + 0.5 s a request in flight, C = 0.5 / 0.875 =
    0.5714...; at 2/s each request added lengthens the others by 1 s a second: no steady state (None)."""
    from kvcalc.formulas.workload import in_flight_at_rate

    assert in_flight_at_rate(0.25, 2.0, 0.5) == pytest.approx(4 / 7)
    assert in_flight_at_rate(2.0, 1.0, 0.5) is None
