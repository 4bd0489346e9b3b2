"""Regression tests for the ninth round (2026-12-06, from 07:00 UTC; docs/validation.md "Ninth hostile audit"):
config.json files read right or refused, spec and profile files validated, the simulator's and plan's findings;
each expected figure worked by hand from the published architecture or a cited source."""

import json

import pytest
from test_fifth_audit import one_line_error, runner  # tests/ is on sys.path (pytest's rootdir-relative imports)
from test_seventh_audit import _quiet  # noqa: F401  (warnings off in every test here)

from kvcalc.cli import app

# Llama-3.1-8B's shape: its linear layers hold 32 x (4096 x 6144 + 3 x 4096 x 14336) = 6,979,321,856 weights; the
# embedding, lm_head and norms 1,050,939,392 parameters, 2,101,878,784 B in bf16
LLAMA = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
         "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
         "max_position_embeddings": 131072}
LINEAR, KEPT_BYTES = 6_979_321_856, 2_101_878_784


def write(tmp_path, config: dict, name: str = "m"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def estimate_json(*args) -> dict:
    out = runner.invoke(app, ["estimate", *map(str, args), "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_h1_symmetric_int4_groups_other_than_128_are_refused(tmp_path):
    """H1: compressed-tensors' symmetric int4 in groups of 32 (a bf16 scale, no zero point) was sized as int4-g32,
    which counts a zero point too (+1.8 %). kvcalc stores no such format: refused, naming the field."""
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"], "config_groups": {
        "g": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                                 "group_size": 32}}}}
    line = one_line_error(["estimate", "-m", write(tmp_path, {**LLAMA, "quantization_config": qc})])
    assert "group_size 32" in line and "symmetric" in line


@pytest.mark.parametrize("block", [[64, 64], "abc", [-5, 0]])
def test_h2_fp8_blocks_other_than_128_are_refused(tmp_path, block):
    """H2: weight_block_size was never read, so [64, 64] (four times the scales) or "abc" sized as 128 x 128."""
    line = one_line_error(["estimate", "-m", write(tmp_path, {**LLAMA, "quantization_config": {
        "quant_method": "fp8", "weight_block_size": block}})])
    assert "weight_block_size" in line


def test_h2_128_blocks_are_read(tmp_path):
    """[128, 128]: 6,979,321,856 x (1 + 4 / 16,384) + 2,101,878,784 = 9,082,904,576 B."""
    doc = estimate_json("-m", write(tmp_path, {**LLAMA, "quantization_config": {
        "quant_method": "fp8", "weight_block_size": [128, 128]}}))
    assert doc["weights"]["bytes"] == round(LINEAR * (1 + 4 / 16384)) + KEPT_BYTES == 9_082_904_576


def test_h4_h5_h19_spec_and_profile_fields_are_validated(tmp_path):
    """H4, H5: a profile's engine "foo" ran with no overhead and engine_version "banana" took vLLM's newest band; H19:
    a GPU spec's vendor "nvidia" dequantised NVFP4 on a B200. Each is now a one-line error naming the field."""
    from pathlib import Path

    root = Path(__file__).parents[1]
    profile = (root / "hardware_specs/profiles/h100-sxm.vllm.toml").read_text()
    for field, bad in (("engine", "foo"), ("engine_version", "banana")):
        f = tmp_path / f"{field}.toml"
        f.write_text(profile.replace(f'\n{field} = "{"vllm" if field == "engine" else "0.24.0"}"',
                                     f'\n{field} = "{bad}"'))
        line = one_line_error(["estimate", "-m", "llama-3-8b", "-g", "h100-sxm", "--profile", f])
        assert f"{field}:" in line and "--profile" in line
    gpu = tmp_path / "b200.toml"
    gpu.write_text((root / "hardware_specs/b200.toml").read_text().replace('vendor = "NVIDIA"', 'vendor = "nvidia"'))
    assert "vendor" in one_line_error(["estimate", "-m", "llama-3-8b", "-g", gpu])


def test_h6_starcoder2_is_read_as_its_family(tmp_path):
    """H6: StarCoder2 was read by its fields as Llama-like, a gated MLP without biases (+37 %). By hand from
    transformers' modeling_starcoder2.py (q, k, v, o and c_fc, c_proj with use_bias; LayerNorms with biases; tied
    embeddings): StarCoder2-3B = 49,152 x 3,072 + 30 x 95,979,008 + 6,144 = 3,030,371,328 parameters."""
    cfg = {"model_type": "starcoder2", "hidden_size": 3072, "intermediate_size": 12288, "num_hidden_layers": 30,
           "num_attention_heads": 24, "num_key_value_heads": 2, "vocab_size": 49152, "use_bias": True,
           "norm_type": "layer_norm", "hidden_act": "gelu_pytorch_tanh", "sliding_window": 4096,
           "max_position_embeddings": 16384, "tie_word_embeddings": True}
    d, kv = 3072, 2 * 128
    layer = (d * d + d) * 2 + 2 * (d * kv + kv) + (d * 12288 + 12288) + (12288 * d + d) + 4 * d
    assert layer == 95_979_008
    doc = estimate_json("-m", write(tmp_path, cfg), "-c", "1")
    assert doc["weights"]["params"] == 49152 * d + 30 * layer + 2 * d == 3_030_371_328


def test_h13_h14_what_kvcalc_does_not_model_is_refused(tmp_path):
    """H13: a compressed-tensors 2:4 sparse checkpoint was sized dense (+40 %); H14: Llama 3.2 Vision's
    cross-attention layers were counted as self-attention caching every text token (+25 % KV)."""
    qc = {"quant_method": "compressed-tensors", "sparsity_config": {"format": "sparse-24-bitmask"},
          "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float"}}}}
    assert "sparsity_config" in one_line_error(["estimate", "-m", write(tmp_path, {**LLAMA, "quantization_config": qc},
                                                                          "sparse")])
    text = {**LLAMA, "model_type": "mllama_text_model", "num_hidden_layers": 40,
            "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38]}
    mllama = write(tmp_path, {"model_type": "mllama", "text_config": text}, "mllama")
    assert "cross_attention_layers" in one_line_error(["estimate", "-m", mllama])


def test_h15_h20_sliding_layers_as_the_configs_build_them(tmp_path):
    """H15: Cohere2's sliding_window_pattern (every 4th layer global, Cohere2Config's layer_types) was read as every
    layer sliding, the KV at 128K 8.75x short; by hand, 64 layers, 16 global, 8 KV heads of 128 in bf16 (4,096 B a
    layer a token): 16 x 131,072 x 4,096 + 48 x 4,096 x 4,096 B. H20: a gpt-oss config without layer_types took
    Gemma 3's one global layer in six where GptOssConfig alternates: the same KV as the published config's list."""
    cohere = {"model_type": "cohere2", "hidden_size": 12288, "intermediate_size": 36864, "num_hidden_layers": 64,
              "num_attention_heads": 96, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 256000,
              "tie_word_embeddings": True, "max_position_embeddings": 131072, "sliding_window": 4096,
              "sliding_window_pattern": 4}
    doc = estimate_json("-m", write(tmp_path, cohere, "cohere"), "-c", 131072, "-g", "b200")
    assert doc["kv_cache"]["bytes"] == 16 * 131072 * 4096 + 48 * 4096 * 4096
    from pathlib import Path

    published = Path(__file__).parent / "fixtures/hf/gpt-oss-20b"
    config = json.loads((published / "config.json").read_text())
    config.pop("layer_types")
    bare = write(tmp_path, config, "gptoss")
    assert (estimate_json("-m", bare, "-c", 131072)["kv_cache"]["bytes"]
            == estimate_json("-m", published, "-c", 131072)["kv_cache"]["bytes"])


def test_h17_h18_quantisation_where_the_engines_read_it(tmp_path):
    """H17: compressed-tensors' older key compression_config (vLLM's _parse_quant_hf_config falls back to it) and
    ModelOpt's hf_quant_config.json beside config.json (SGLang's model_config.py reads it) were sized as bf16; H18:
    fp8's ignored_layers (vLLM's Fp8Config) was not read. FP8 linears with the lm_head in bf16: 6,979,321,856 x 1 B +
    2,101,878,784 = 9,081,200,640 B; attention kept bf16 too: + 32 x (4096 x 6144 + 4096 x 4096) B = 10,423,377,920 B."""
    fp8 = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"], "config_groups": {
        "g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                                                 "strategy": "channel"}}}}
    assert LINEAR + KEPT_BYTES == 9_081_200_640
    assert estimate_json("-m", write(tmp_path, {**LLAMA, "compression_config": fp8}, "ct"))["weights"]["bytes"] == (
        9_081_200_640)
    modelopt = write(tmp_path, LLAMA, "modelopt")
    (modelopt / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt"}, "quantization": {
        "quant_algo": "FP8", "exclude_modules": ["lm_head"]}}))
    assert estimate_json("-m", modelopt)["weights"]["bytes"] == 9_081_200_640
    ignored = {"quant_method": "fp8", "ignored_layers": ["lm_head", "model.layers.*.self_attn"]}
    assert estimate_json("-m", write(tmp_path, {**LLAMA, "quantization_config": ignored}, "ign"))["weights"][
        "bytes"] == 9_081_200_640 + 32 * (4096 * 6144 + 4096 * 4096)  # q, k, v and o, +1 B a weight


def test_p4_an_infeasible_plan_without_limits_names_what_binds():
    """P4: Mixtral-8x7B on A10Gs within --gpu-budget 4 (bf16 weights 93.4 GB; no deployment under 8 GPUs holds a
    request) was answered "no configuration meets the limits" where no limit was given."""
    out = runner.invoke(app, ["plan", "-m", "mixtral-8x7b", "-g", "a10g", "-i", "2000", "-o", "1", "--gpu-budget", "4",
                              "-f", "json"])
    doc = json.loads(out.stdout)
    assert doc["choice"] is None and "limits" not in doc["choice_note"]
    assert "--gpu-budget" in doc["choice_note"] and "8" in doc["choice_note"]


@pytest.mark.slow
def test_p6_launch_commands_trust_the_code_a_checkpoint_ships(tmp_path):
    """P6: Kimi-K2's tokenizer and ChatGLM2's model are the repositories' own code; their launch commands lacked
    --trust-remote-code and the servers would not start. A config.json with auto_map sets it too; Llama needs none."""
    def launch(model, engine):
        out = runner.invoke(app, ["plan", "-m", str(model), "-g", "h200", "-i", "1000", "-o", "200", "--request-rate",
                                  "2", "--emit", engine, "-f", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["launch"]

    assert "--trust-remote-code" in launch("kimi-k2", "sglang")
    assert "--trust-remote-code" in launch("chatglm2-6b", "vllm")
    assert "trust_remote_code: true" in launch("kimi-k2", "trtllm")  # (ChatGLM2 TensorRT-LLM cannot load: P9)
    assert "trust" not in launch("llama-3.1-8b", "vllm")
    from pathlib import Path

    assert "--trust-remote-code" in launch(Path(__file__).parent / "fixtures/hf/chatglm2-6b", "vllm")


@pytest.mark.parametrize("command", [["estimate", "-m", "llama-3-8b"],
                                     ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200",
                                      "--request-rate", "1"]])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_p7_explain_is_refused_where_it_would_be_dropped(command, fmt):
    """P7: --explain with -f json or csv printed the same bytes as without it, exit 0."""
    assert "--explain" in one_line_error([*command, "-f", fmt, "--explain"])


def test_p8_the_plan_page_renders_at_one_output_token():
    """P8: the web's /plan page was a 500 at --output-len 1 (the frontier chart compared a null tokens/s per user)."""
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app(), raise_server_exceptions=False)
    q = {"model": "llama-3.1-8b", "input_len": "1000", "output_len": "1", "request_rate": "1"}
    assert client.get("/plan", params=q).status_code == 200
    assert client.get("/api/plan", params=q).status_code == 200


@pytest.mark.parametrize(("engine", "tp", "in_flight"), [("sglang", 4, 256), ("vllm", 4, 475), ("vllm", 1, 1),
                                                         ("trtllm", 2, 8)])
def test_p1_plans_ladder_times_a_long_prompt_as_serve_does(engine, tp, in_flight):
    """P1: plan's batched replica ladder (serving/replica.py) still split an 8,000-token prompt into equal pieces where
    serve's closed form runs full steps then the rest within the prompt's own budget (the eighth audit's C4): plan's
    TTFT was 15-25 % under serve's for the same replica, and plan bought half the GPUs a TTFT limit needs."""
    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.replica import replica_runner
    from kvcalc.specs.catalog import load_gpu, load_model

    r = replica_runner(load_model("mistral-7b"), load_gpu("h100-sxm"), engine=engine, weight_dtype="bf16",
                       kv_dtype="fp8", tp=tp, input_len=8000, output_len=1000)
    s = serve("mistral-7b", "h100-sxm", input_len=8000, output_len=1000, concurrency=in_flight, tp=tp, engine=engine,
              weight_dtype="bf16", kv_dtype="fp8", step_tokens=8192, **({"cuda_graph_GiB": 0} if engine == "vllm" else {}))
    assert r.run(in_flight)["ttft_s"] * 1e3 == pytest.approx(s["ttft_ms"], rel=1e-9)
    import numpy as np

    assert r.run_many is not None  # the ladder plan searches: every element its own serve
    many = r.run_many(np.array([1.0, 8.0, float(in_flight)]))
    assert many["ttft_s"][-1] * 1e3 == pytest.approx(s["ttft_ms"], rel=1e-9)


@pytest.mark.slow
def test_p2_p3_each_engines_best_at_a_percentile_is_one_the_simulator_checked():
    """P2, P3: at p99 best_by_engine listed 1-GPU replicas the simulator never checked as meeting the limits, where the
    same JSON's simulated_misses showed them 2.5x over the TTFT limit, and --emit launched one. Each engine's best is
    now simulated and meets the limits, and a frontier row left unsimulated says so."""
    out = runner.invoke(app, ["plan", "-m", "qwen3-0.6b", "-g", "a100-sxm-80gb", "-i", "2000", "-o", "1000", "-n", "64",
                              "--max-ttft-ms", "300", "--max-tpot-ms", "100", "--percentile", "p99", "-f", "json"])
    doc = json.loads(out.stdout)
    assert doc["best_by_engine"]
    for row in doc["best_by_engine"].values():
        assert row["simulated"] and row["simulated"]["met"] and not row["misses"]
        assert row["simulated"]["ttft_ms"] <= 300
    assert all(r["simulated"] or "not simulated" in r.get("simulated_note", "") for r in doc["frontier"])


def test_s7_sglang_retracts_the_request_with_the_fewest_tokens_generated():
    """S7: SGLang's ScheduleBatch.retract_decode sorts by (len(output_ids), -len(origin_input_ids)) and retracts from
    the end, the fewest generated first; the simulator retracted the one with the most output left (the same only at
    fixed lengths). A (10 + 1,000, at 0 s) and B (10 + 400, at 0.3 s), 1 ms steps, a pool of 1,100 tokens, the ratio
    pinned at 0.1: when the pool fills A has 690 generated, B 390: B goes, A finishes without a recompute."""
    from dataclasses import replace

    import numpy as np

    from kvcalc.engines.scheduler import sglang_prefill_first
    from kvcalc.serving.simulate import Workload, simulate_schedule

    class Toy:
        def seconds(self, d, c, k, kc, pl=None):
            return 1e-3

        def decode_seconds(self, d, ctxs):
            return np.full(len(ctxs), 1e-3)

    policy = replace(sglang_prefill_first(), init_new_token_ratio=0.1, min_new_token_ratio=0.1,
                     new_token_ratio_decay=0.0)
    r = simulate_schedule(policy, Toy(), Workload(np.array([0.0, 0.3]), np.array([10, 10]), np.array([1000, 400])),
                          pool_tokens=1100, log_steps=True)
    assert r.preemptions == 1
    assert r.finish_s[0] == pytest.approx(1.001)  # A: its prefill and 1,000 decode steps, never recomputed
    assert any(step["ids"] == [1] and step["chunk"] == 401 for step in r.log)  # B re-prefilled: 10 + 390 + 1


def test_s4_s8_vllm_schedules_as_its_configs_allow():
    """S4: scheduler='vllm-v0' split a 6,000-token prompt at the policy's 2,048 where V0's SchedulerConfig takes
    max_num_batched_tokens = max(max_model_len, 2048) with chunked prefill off: one prefill step, not three. S8: vLLM
    refuses max_num_batched_tokens below max_num_seqs at start-up (SchedulerConfig._verify_args); it was simulated."""
    import kvcalc

    d = kvcalc.simulate("llama-3.1-8b", "h100-sxm", input_len=6000, output_len=10, arrivals="closed", concurrency=1,
                        num_prompts=1, scheduler="vllm-v0", engine="vllm", vllm_version="0.6.3")
    assert d["steps"] == 10  # one prefill step, nine decodes
    assert "--step-tokens / --max-num-batched-tokens 512: vLLM refuses" in one_line_error(
        ["serve", "-m", "llama-3.1-8b", "-e", "vllm", "-i", "100", "--output-len", "10", "--simulate", "-n", "4",
         "--num-prompts", "10", "--step-tokens", "512"])


def test_h10_h11_h12_spec_files_say_what_is_wrong(tmp_path):
    """H10: a string total_size was printed unquoted ("expected a positive number ... got 13476839424") and an absent
    one as None; H11: attention.global_count above num_layers was clamped in silence, and a quantised class the model
    lacks printed "fp8" beside bf16 bytes; H12: a YAML spec with a key given twice took the last value (16 of 32
    layers), where TOML refuses it."""
    from pathlib import Path

    import yaml

    folder = write(tmp_path, LLAMA, "index")
    (folder / "model.safetensors.index.json").write_text('{"metadata": {"total_size": "13476839424"}, "weight_map": {}}')
    assert "the string '13476839424'" in one_line_error(["estimate", "-m", folder])
    spec = (Path(__file__).parents[1] / "model_specs/llama-3.1-8b.toml").read_text()
    windowed = tmp_path / "g.toml"
    windowed.write_text(spec.replace("head_dim = 128", "head_dim = 128\nsliding_window = 4096\nglobal_count = 64", 1))
    assert "attention.global_count (64) exceeds num_layers (32)" in one_line_error(["estimate", "-m", windowed])
    quantised = tmp_path / "q.toml"
    quantised.write_text(spec + '\n[quantization]\nweight_format = "fp8"\nquantized = ["experts"]\n')
    assert "quantization.quantized" in one_line_error(["estimate", "-m", quantised])
    import tomllib

    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump(tomllib.loads(spec)) + "num_layers: 16\n")
    assert "'num_layers' given twice" in one_line_error(["estimate", "-m", twice])


def test_h16_hybrid_layer_kinds_are_read_or_refused(tmp_path):
    """H16: in Qwen3-Next's layer_types, 'banana' or 'sliding_attention' was read as a Gated DeltaNet layer, and a
    full_attention_interval past the layers left a model of 0 KV bytes a token; Jamba and the attention-free families
    are refused in one line. (A Nemotron-H pattern of Mamba blocks only is read: its pool holds whole states.)"""
    q = {"model_type": "qwen3_next", "hidden_size": 2048, "intermediate_size": 5120, "num_hidden_layers": 48,
         "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256, "num_experts": 512,
         "num_experts_per_tok": 10, "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512,
         "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
         "linear_value_head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 262144}
    kinds = ["linear_attention"] * 3 + ["full_attention"]
    ok = estimate_json("-m", write(tmp_path, {**q, "layer_types": kinds * 12}, "ok"), "-c", 1)
    assert ok["kv_cache"]["bytes_per_token"] == 12 * 2 * 2 * 256 * 2  # 12 full layers, 2 KV heads of 256, K and V
    for n, bad in enumerate(("banana", "sliding_attention")):
        folder = write(tmp_path, {**q, "layer_types": [t if t == "full_attention" else bad for t in kinds * 12]}, bad)
        assert f"'{bad}'" in one_line_error(["estimate", "-m", folder])
    assert "full_attention_interval" in one_line_error(["estimate", "-m", write(tmp_path, {
        **q, "full_attention_interval": 100}, "interval")])


@pytest.mark.parametrize(("ignore", "expected"), [
    # layer 0's MLP in bf16: 9,081,200,640 + 3 x 4,096 x 14,336 B (one more byte a weight)
    (["lm_head", "re:model.layers.0.mlp.*"], 9_081_200_640 + 3 * 4096 * 14336),
    (["lm_head", "re:.*layers\\.0\\.mlp\\..*"], 9_081_200_640 + 3 * 4096 * 14336),  # H8: escaped dots, the same
    (["lm_head", "model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"],
     9_081_200_640 + 3 * 4096 * 14336),
    (["lm_head", "re:.*down_proj"], None),  # H9: one projection of a class: refused, not dropped or widened
    (["lm_head", "model.layers.*.mlp.down_proj"], None),
])
def test_h8_h9_ignore_lists_keep_whole_classes_or_are_refused(tmp_path, ignore, expected):
    """H8: an ignore regex with escaped dots kept every layer's MLP in bf16 (+59 %); H9: an entry naming one
    projection counted 0, 1 or 3 of its class's matrices depending on its spelling. kvcalc keeps whole classes."""
    qc = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ignore, "config_groups": {
        "g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "symmetric": True,
                                                 "strategy": "channel"}}}}
    folder = write(tmp_path, {**LLAMA, "quantization_config": qc})
    if expected is None:
        assert "down_proj" in one_line_error(["estimate", "-m", folder])
    else:
        assert estimate_json("-m", folder)["weights"]["bytes"] == expected


@pytest.mark.slow
def test_p5_a_replica_at_a_rate_is_simulated_with_its_pools_seats():
    """P5: at a request rate plan simulated each replica with max_num_seqs at the closed form's mean in flight (1-4
    seats), so Poisson bursts queued and Llama-3.1-8B on one H100 at 10 ShareGPT requests/s was called infeasible at
    p90 where serve --simulate of one GPU meets it (TTFT p90 about 30 ms). The replica now batches what arrives up to
    its pool, and the launch command's max_num_seqs is the one simulated."""
    out = runner.invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "--dataset", "sharegpt",
                              "--request-rate", "10", "--max-ttft-ms", "500", "--max-tpot-ms", "30", "--percentile",
                              "p90", "-f", "json"])
    doc = json.loads(out.stdout)
    choice = doc["choice"]
    assert choice is not None and choice["gpus"] == 1
    assert choice["simulated"]["met"] and choice["max_num_seqs"] == choice["simulated"]["max_num_seqs"]


def test_s9_a_disaggregated_simulation_reports_the_whole_deployments_queue():
    """S9: with 300 requests arriving within 0.3 s at one prefill GPU, the disaggregated simulation reported
    max_waiting 0 (the first decode replica's queue) while requests waited 12 s for prefill; max_running was one
    decode replica's. The queue now sums the prefill replicas', the running requests every decode replica's."""
    base = ["serve", "-m", "llama-3.1-8b", "-e", "vllm", "-i", "4000", "--output-len", "50", "--simulate",
            "--arrivals", "poisson", "--request-rate", "1000", "--num-prompts", "300", "-f", "json"]
    one = json.loads(runner.invoke(app, [*base, "--disaggregate", "1:1"]).stdout)
    three = json.loads(runner.invoke(app, [*base, "--disaggregate", "1:3"]).stdout)
    assert one["max_waiting"] > 250 and three["max_waiting"] == one["max_waiting"]  # the same prefill queue
    assert three["max_running"] > 3  # three decode replicas' requests, not the first one's


@pytest.mark.parametrize("model", ["jamba-v0.1", "falcon-7b", "chatglm2-6b", "gemma-2-9b", "command-r"])
def test_p9_plan_leaves_tensorrt_llm_out_for_architectures_it_cannot_load(model):
    """P9: plan chose and --emit trtllm launched TensorRT-LLM's PyTorch back end for Jamba, Falcon, ChatGLM2, Gemma 2
    and Command-R, none of which is in its supported-models table (1.3.0rc20): the server would not start."""
    args = ["plan", "-m", model, "-g", "h200", "-i", "1000", "-o", "200", "--request-rate", "2"]
    doc = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert "trtllm" not in doc["best_by_engine"] and (doc["choice"] is None or doc["choice"]["engine"] != "trtllm")
    assert "supported-models" in one_line_error([*args, "--emit", "trtllm"])
