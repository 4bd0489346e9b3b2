"""Regression tests for the seventh round (2026-12-06, from 03:13 UTC; docs/validation.md "Seventh hostile audit"):
the sixth audit's "Left" items taken up, and the seventh audit's findings, each reproduced, with the expected
figures worked by hand or taken from a cited source or another command."""

import json
import warnings

import pytest
import yaml
from test_fifth_audit import one_line_error, runner  # tests/ is on sys.path (pytest's rootdir-relative imports)

from kvcalc.cli import app


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _manifest_images(args: list[str]) -> list[tuple[str, dict]]:
    doc = json.loads(runner.invoke(app, [*args, "--emit", "k8s", "-f", "json"]).stdout)
    out = []
    for d in yaml.safe_load_all(doc["launch"]):
        if d and d.get("kind") == "Deployment":
            (container,) = d["spec"]["template"]["spec"]["containers"]
            out.append((container["image"], container["resources"]["limits"]))
    return out


PLAN = ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "200", "--concurrency", "16"]


@pytest.mark.parametrize(("gpu", "engine", "image"), [
    # vLLM's docs (getting_started/installation/gpu.rocm.inc.md): the official ROCm image is vllm/vllm-openai-rocm
    ("mi300x", "vllm", "vllm/vllm-openai-rocm:v0.30.0"),
    # SGLang's ROCm builds are tagged by GPU family: mi30x for gfx942 (MI300X, MI325X), mi35x for gfx950 (MI355X)
    ("mi325x", "sglang", "lmsysorg/sglang:v0.5.11-rocm700-mi30x"),
    ("mi355x", "sglang", "lmsysorg/sglang:v0.5.11-rocm700-mi35x"),
    ("h100-sxm", "sglang", "lmsysorg/sglang:v0.5.14"),
    # the thirty-fourth audit (the thirty-third's L6): images at the release whose flags are emitted, not `latest`;
    # vLLM's at 0.30.0, whose memory rule plan sizes with (the thirty-sixth audit, launch 1)
    ("h100-sxm", "vllm", "vllm/vllm-openai:v0.30.0"),
    ("h200", "trtllm", "nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc20"),
])
def test_k8s_manifests_on_amd_gpus_run_the_engines_rocm_image(gpu, engine, image):
    """Sixth audit, left: `--emit k8s` on an AMD GPU named the CUDA image (vllm/vllm-openai, which cannot drive a
    ROCm device) beside an amd.com/gpu request."""
    (got,) = _manifest_images([*PLAN, "-g", gpu, "--engines", engine])
    assert got == (image, {"amd.com/gpu" if gpu.startswith("mi") else "nvidia.com/gpu": 1})


SGLANG_KV = "sglang stores no {0} KV cache (its --kv-cache-dtype takes fp8_e4m3, fp8_e5m2, bf16 or fp4_e2m1)"


@pytest.mark.parametrize("kv", ["int8", "int4"])
@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3-8b"],
    ["capacity", "-m", "llama-3-8b", "-c", "4096"],
    ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "4"],
    ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "4", "--simulate"],
    ["compare", "-m", "llama-3-8b"],
    ["sweep", "-m", "llama-3-8b", "-b", "1"],
])
def test_sglang_refuses_an_integer_kv_cache(args, kv):
    """Sixth audit, left: `--kv-dtype int4` (and int8) was accepted under SGLang's memory rule and time model, though
    SGLang's --kv-cache-dtype takes only auto, fp8_e5m2, fp8_e4m3, bf16/bfloat16 and fp4_e2m1 (server_args.py)."""
    assert SGLANG_KV.format(kv) in one_line_error([*args, "--engine", "sglang", "--kv-dtype", kv])


def test_a_calibrated_profile_refuses_another_releases_overheads(tmp_path):
    """Sixth audit, left: `estimate --profile deploy.toml --engine-version v0` replaced the step cost fitted on the
    user's own benchmark (4 ms planted) with vLLM V0's band (1.9 ms), without a word."""
    from test_calibrate_benchmark import _planted

    out = tmp_path / "deploy.toml"
    r = runner.invoke(app, ["calibrate", "--from-benchmark", str(_planted(tmp_path, 1.0, 4.0, 0.0)), "-m",
                            "llama-3-8b", "-g", "h100-sxm", "-o", str(out)])
    assert r.exit_code == 0, r.output
    base = ["estimate", "-m", "llama-3-8b", "-g", "h100-sxm", "--profile", str(out)]
    assert "states its own overheads" in one_line_error([*base, "--engine-version", "v0"])
    doc = json.loads(runner.invoke(app, [*base, "--engine-version", "latest", "-f", "json"]).stdout)
    assert doc["decode"]["overhead_ms"] == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize(("model", "hybrid"), [("gemma-3-27b", False), ("mistral-7b", False), ("gpt-oss-20b", True)])
def test_sglang_keeps_every_token_of_a_sliding_layer_outside_its_hybrid_families(model, hybrid):
    """Sixth audit, left: SGLang's rule gave Gemma-3's sliding layers their window, as a hybrid pool would; SGLang
    runs its hybrid sliding-window pool only for the architectures in model_config.py's is_hybrid_swa_model (Llama 4,
    gpt-oss, MiMo-V2-Flash, Step-3.5, Gemma 4), and keeps every token of every layer in one pool for the rest, so a
    request of C tokens takes layers x C cells: with the pool P from the output, P / (layers x cell x C) requests."""
    from kvcalc.specs.catalog import load_model

    spec = load_model(model)
    a = spec.attention
    cell = 2 * a.num_kv_heads * a.head_dim * 2  # K and V, bf16, one layer, one GPU
    context = 32768
    doc = json.loads(runner.invoke(app, ["capacity", "-m", model, "-g", "h200", "--tp", "1", "--engine", "sglang",
                                         "-c", str(context), "-f", "json"]).stdout)
    pool = doc["engine_memory"]["available_kv_bytes"]
    # SGLang's #tokens: every layer's tokens, or under its hybrid pool the full layers' (full_tokens = R / (F n_full +
    # r S n_swa): the twenty-third audit, M3)
    per_token = (spec.global_layers + 0.8 * spec.window_layers if hybrid else spec.attention_layers) * cell
    assert doc["engine_memory"]["kv_tokens"] == int(pool // per_token)
    # the hybrid pool splits its bytes between full tokens F and r F sliding ones (r = swa_full_tokens_ratio, 0.8:
    # model_runner_kv_cache_mixin.py _resolve_hybrid_swa_tokens), so a request of C tokens takes
    # (full layers + r x sliding layers) x max(C, min(C, window) / r) cells (the nineteenth audit, E1)
    r = 0.8
    window_tokens = ((spec.global_layers + r * spec.window_layers) * max(context, min(context, a.sliding_window) / r)
                     if hybrid else spec.attention_layers * context)
    assert doc["engine_memory"]["max_concurrency"] == pytest.approx(pool / (window_tokens * cell), rel=1e-9)  # the pool printed in whole bytes


@pytest.mark.parametrize("engine", ["sglang", "trtllm"])
def test_sglang_and_tensorrt_llm_servers_listen_beyond_loopback(engine):
    """C3: SGLang's server binds 127.0.0.1 by default (server_args.py host) and trtllm-serve localhost (serve.py
    --host), so the emitted servers, and the k8s pods running them, were unreachable from any Service or router."""
    from test_plan import _config, _flags

    from kvcalc.engines.launch import emit
    from kvcalc.specs.catalog import load_model

    text = emit(engine, load_model("deepseek-v3"), _config(), 2500)
    server = next(line for line in text.splitlines() if line.startswith(("python -m sglang.launch_server",
                                                                          "trtllm-serve serve")))
    assert _flags(server)["--host"] == "0.0.0.0"


def test_plan_deploys_serving_engines_only():
    """C2: plan chose gpt-fast (a batch-1 generate.py script: no server, no batching of requests) for Gemma-3-27B on
    8 A100s at 980 requests in flight, and --emit k8s then had nothing to launch; serve ran it as a batching server."""
    doc = json.loads(runner.invoke(app, ["plan", "-m", "gemma-3-27b", "-g", "a100-sxm-80gb", "-i", "1000", "-o",
                                         "200", "--gpu-budget", "8", "-f", "json"]).stdout)
    engines = {r["engine"] for r in [doc["choice"], *doc["runners_up"]]}
    assert engines and engines <= {"vllm", "sglang", "trtllm"}
    assert "batch-1 generation script" in one_line_error(
        ["plan", "-m", "llama-2-7b", "-g", "a100-sxm-80gb", "-i", "100", "-o", "10", "-n", "4", "--engines", "gpt-fast"])
    for extra in ([], ["--simulate"]):
        assert "batch-1 generation script" in one_line_error(
            ["serve", "-m", "llama-2-7b", "-g", "a100-sxm-80gb", "-e", "gpt-fast", "-i", "100", "--output-len", "10",
             "-n", "4", *extra])


PHI3_MEDIUM = {  # microsoft/Phi-3-medium-4k-instruct config.json's structural fields
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 5120, "intermediate_size": 17920,
    "num_attention_heads": 40, "num_key_value_heads": 10, "num_hidden_layers": 40, "vocab_size": 32064,
    "max_position_embeddings": 4096, "hidden_act": "silu", "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16"}


def test_tensor_parallelism_must_shard_the_kv_heads_and_widths_as_engines_do(tmp_path):
    """B6: Qwen2-7B (28 query heads, 4 KV heads, MLP width 18,944) at --tp 7 was priced (158 sequences on 7 L4s),
    though vLLM's QKVParallelLinear asserts the KV heads divide by tp or tp by them, and Phi-3-medium at --tp 4 held
    2.5 KV heads a GPU. Now refused in every command; tp 5 and 10 shard Phi-3-medium's 10 heads and 17,920 width."""
    refusal = "7 GPUs cannot share qwen2-7b's 4 KV heads"
    for args in (["capacity", "-m", "qwen2-7b", "-g", "l4", "-c", "8192", "--tp", "7", "--engine", "vllm"],
                 ["serve", "-m", "qwen2-7b", "-g", "l4", "-i", "1000", "--output-len", "100", "-n", "8", "--tp", "7"],
                 ["estimate", "-m", "qwen2-7b", "--tp", "7"]):
        assert refusal in one_line_error(args)
    config = tmp_path / "phi3m" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(PHI3_MEDIUM))
    assert "4 GPUs cannot share" in one_line_error(["estimate", "-m", str(config), "--tp", "4"])
    for tp in (5, 10, 20):
        doc = json.loads(runner.invoke(app, ["estimate", "-m", str(config), "--tp", str(tp), "-c", "2000", "-f",
                                             "json"]).stdout)
        # 40 layers x 2 (K, V) x 128 head_dim x 2 B x 2,000 tokens x the heads one GPU holds: 10 / tp, at least 1
        assert doc["memory"]["kv_cache_bytes"] == 40 * 2 * 128 * 2 * 2000 * max(10 // tp, 1)
    plan = json.loads(runner.invoke(app, ["plan", "-m", str(config), "-g", "h100-sxm", "-i", "1000", "-o", "100",
                                          "-n", "16", "-f", "json"]).stdout)
    assert all(not r["layout"].startswith(("TP4", "TP8")) for r in [plan["choice"], *plan["runners_up"]])


def test_nvfp4_weights_on_an_amd_part_run_at_the_16_bit_peak():
    """B12: NVFP4 weights on the MI355X were computed at its fp4 peak, which its scaled MFMA instructions give only
    to OCP MXFP4 blocks (hardware_specs/mi355x.toml: "fp4 (MXFP4)"); an NVFP4 checkpoint is dequantised there. The
    prefill's speed of light is then bf16's: 2 x params x tokens / the bf16 peak, as for bf16 weights."""
    import kvcalc

    sol = {wd: kvcalc.estimate("llama-3.1-8b", "mi355x", weight_dtype=wd, context=4096, engine="roofline")
           .prefill.speed_of_light_ms for wd in ("bf16", "nvfp4", "mxfp4")}
    assert sol["nvfp4"] == pytest.approx(sol["bf16"], rel=1e-9) and sol["mxfp4"] < sol["bf16"] / 2
    b200 = {wd: kvcalc.estimate("llama-3.1-8b", "b200", weight_dtype=wd, context=4096, engine="roofline")
            .prefill.speed_of_light_ms for wd in ("bf16", "nvfp4")}
    assert b200["nvfp4"] < b200["bf16"] / 2  # NVIDIA's own format keeps Blackwell's fp4 peak


def test_an_all_linear_model_prints_no_per_layer_cache():
    """B11: `estimate --attn linear` printed 4,096 B (2,048 elements) a token a layer beside 0 B a token: every layer
    rewritten to linear attention keeps no per-token cache, only its fixed state (32 layers x 32 heads x 128 x 128
    x 2 B = 33,554,432 B a sequence)."""
    doc = json.loads(runner.invoke(app, ["estimate", "-m", "llama-3.1-8b", "--attn", "linear", "-c", "1000", "-f",
                                         "json"]).stdout)
    kv = doc["kv_cache"]
    assert (kv["elements_per_token_per_layer"], kv["bytes_per_token_per_layer"], kv["bytes_per_token"]) == (0, 0, 0)
    assert kv["bytes_per_sequence"] == 32 * 32 * 128 * 128 * 2
    text = runner.invoke(app, ["estimate", "-m", "llama-3.1-8b", "--attn", "linear", "--explain"]).output
    assert "no layer keeps a per-token cache" in text


def test_the_python_apis_capacity_takes_tp_as_every_other_call_does():
    """B3/C9: kvcalc.capacity(..., tp=2) was a TypeError; only its older name gpus= worked. README question 2's
    answer (Llama-3.1-70B at 8,192 tokens on two H100s) is the same both ways."""
    import kvcalc

    from kvcalc.errors import KvcalcError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_tp = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, tp=2)
        by_gpus = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, gpus=2)
    assert by_tp["tensor_parallel"] == 2 and by_tp["max_sequences_at_context"] == by_gpus["max_sequences_at_context"]
    with pytest.raises(KvcalcError, match="give tp alone"):
        kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, tp=2, gpus=4)


def test_yaml_spec_integers_are_decimal(tmp_path):
    """V1: YAML spec files are read with 1.2's numbers (catalog._core_schema_loader), but the integers went through
    PyYAML's 1.1 constructor: `num_layers: 040` was read as octal 32 layers, and 080 refused with int()'s text.
    040 is now 40 layers (40 x 8 KV heads x 128 x 2 x 2 B = 163,840 B a token), and a hex integer one line."""
    toml = runner.invoke(app, ["show", "model", "llama-3-8b", "-f", "toml"]).stdout
    import tomllib

    data = tomllib.loads(toml)
    for text, layers in (("040", 40), ("080", 80)):
        path = tmp_path / f"m{text}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False).replace("num_layers: 32", f"num_layers: {text}"))
        doc = json.loads(runner.invoke(app, ["estimate", "-m", str(path), "-f", "json"]).stdout)
        assert doc["kv_cache"]["bytes_per_token"] == layers * 8 * 128 * 2 * 2
    path = tmp_path / "hex.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False).replace("num_layers: 32", "num_layers: !!int 0x20"))
    assert one_line_error(["estimate", "-m", str(path)]) == (
        f"kvcalc: error: --model: {path}: not valid YAML: expected a decimal integer, got '0x20'")


def test_a_refused_quantization_config_names_a_way_past_it(tmp_path):
    """V3: a refused compressed-tensors 8-bit group (symmetric: a scale and no zero point) told the user to pass
    --weight-dtype int8-g128, which gave the same refusal: the config is read before the flag applies. The message
    now names what works, and doing it works."""
    from pathlib import Path

    base = json.loads((Path(__file__).parent / "fixtures/hf/Meta-Llama-3-8B/config.json").read_text())
    quantised = {**base, "quantization_config": {"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "strategy": "group", "group_size": 128,
                                           "symmetric": True}}}}}
    folder = tmp_path / "ct8g128sym"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(quantised))
    for extra in ([], ["--weight-dtype", "int8-g128"]):
        message = one_line_error(["estimate", "-m", str(folder), *extra])
        assert "drop quantization_config from a copy of config.json and pass --weight-dtype" in message
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps(base))
    r = runner.invoke(app, ["estimate", "-m", str(plain), "--weight-dtype", "int8-g128", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["inputs"]["weight_dtype"] == "int8-g128"


def test_a_benchmark_csv_header_may_be_spaced_as_a_trace_header_may(tmp_path):
    """V9: `batch, input_len, output_len, tpot_ms` (a space after each comma, as spreadsheets write it) was refused by
    calibrate as "field input_len: missing", where the trace reader read the same spacing."""
    spaced, plain = tmp_path / "spaced.csv", tmp_path / "plain.csv"
    rows = "1,1000,200,12.5\n8,1000,200,14.0\n32,1000,200,18.25\n"
    spaced.write_text("batch, input_len, output_len, tpot_ms\n" + rows)
    plain.write_text("batch,input_len,output_len,tpot_ms\n" + rows)
    outs = []
    for path in (spaced, plain):
        out = tmp_path / f"{path.stem}.toml"
        r = runner.invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", "llama-3-8b", "-g", "h100-sxm",
                                "-o", str(out)])
        assert r.exit_code == 0, r.output
        outs.append(out.read_text().replace(path.name, "FILE"))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("args", [
    ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "4", "--simulate"],
    ["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "-n", "4"],
])
def test_a_percentile_without_a_latency_limit_is_refused(args):
    """V12: --percentile says at which percentile --max-ttft-ms / --max-tpot-ms hold; without a limit serve's closed
    form refused it, while serve --simulate and plan dropped it without a word."""
    assert one_line_error([*args, "--percentile", "90"]) == (
        "kvcalc: error: --percentile: only with --max-ttft-ms or --max-tpot-ms (the percentile they must hold at); "
        "add one, or leave out --percentile")
    assert runner.invoke(app, [*args, "--percentile", "90", "--max-tpot-ms", "500", "-f", "json"]).exit_code == 0


@pytest.mark.slow
def test_plans_aggregated_rows_say_so_without_claiming_disaggregation_was_not_asked():
    """C5/V14: plan's aggregated rows said "not asked: ... (no --disaggregate)" (serve's note) though --disaggregate
    is plan's default and its disaggregated layouts were searched and ranked."""
    doc = json.loads(runner.invoke(app, ["plan", "-m", "deepseek-v3", "-g", "h200,b200", "-i", "2000", "-o", "500",
                                         "--request-rate", "100", "--max-ttft-ms", "2000", "--max-tpot-ms", "50",
                                         "-f", "json"]).stdout)
    rows = [doc["choice"], *doc["runners_up"]]
    assert any(r["disaggregate"] for r in rows)  # searched, and ranked
    for r in rows:
        note = r.get("disaggregate_note")
        assert (note is None) == bool(r["disaggregate"]) and "not asked" not in (note or "")


def test_a_sharegpt_plan_launches_for_the_benchmarks_longest_request():
    """C10: plan --dataset sharegpt emitted --max-model-len 1391, the longest pair of the published 320-request sample;
    the benchmark's sampler (vLLM benchmark_serving.py sample_sharegpt_requests) keeps any pair with
    prompt <= 1,024 and prompt + reply <= 2,048, so the server must admit 2,048 tokens."""
    doc = json.loads(runner.invoke(app, ["plan", "-m", "llama-3.1-8b", "--dataset", "sharegpt", "-n", "32",
                                         "--max-tpot-ms", "50", "--emit", "vllm", "-f", "json"]).stdout)
    assert doc["workload"]["max_model_len"] == 2048 and "--max-model-len 2048" in doc["launch"]


def test_the_breakeven_batch_follows_one_rule_under_pp_and_ep():
    """V10: the sixth audit's E1 rule (the batch after the last one where speculation pays) held on the plain path only;
    under --ep or --pp the old rule (the first batch where it loses) said "1x or less from batch 1" beside a 1.55x
    speed-up. Under --ep 2 and --pp 2 speculation pays at 64 and 256 here, so neither can break even from batch 1,
    nor before 512."""
    import kvcalc

    kw = dict(context=1024, speculate="eagle,k=4,alpha=0.5")
    for lay in (dict(tp=2, ep=2), dict(pp=2)):
        s = {b: kvcalc.estimate("qwen3-30b-a3b", "h100-sxm", batch=b, **lay, **kw).speculative for b in (64, 256)}
        assert s[64].speedup > 1 and s[256].speedup > 1 and (s[64].breakeven_batch or 8192) > 256, lay


def test_csv_and_json_carry_the_same_warnings_and_whole_byte_counts():
    """V7, V8, V13: compare's JSON had no warnings (they went to stderr only); serve's CSV for a list of
    concurrencies wrote 59890629271.552 bytes and Python's repr of its warnings; estimate's CSV had no warnings."""
    import csv
    import io

    doc = json.loads(runner.invoke(app, ["compare", "-m", "qwen3-0.6b", "-g", "v100-sxm2-32gb", "--attn", "mla", "-c",
                                         "4096", "-f", "json"]).stdout)
    assert all(any("no engine profile for v100-sxm2-32gb" in w for w in row["warnings"]) for row in doc)
    base = ["serve", "-m", "llama-3-8b", "-g", "v100-sxm2-32gb", "-i", "100", "--output-len", "10", "-n", "4,8"]
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, [*base, "-f", "csv"]).stdout)))
    js = json.loads(runner.invoke(app, [*base, "-f", "json"]).stdout)
    assert [r["kv_pool_bytes_per_gpu"] for r in rows] == [str(r["kv_pool_bytes_per_gpu"]) for r in js]
    assert rows[0]["warnings"] == "; ".join(js[0]["warnings"]) and not rows[0]["warnings"].startswith("[")
    est = ["estimate", "-m", "llama-3-8b", "--pp", "2", "--speculate", "eagle", "-e", "vllm"]
    row = next(csv.DictReader(io.StringIO(runner.invoke(app, [*est, "-f", "csv"]).stdout)))
    assert row["warnings"] == "; ".join(json.loads(runner.invoke(app, [*est, "-f", "json"]).stdout)["warnings"])
    assert "does not start speculative decoding under pipeline parallelism" in row["warnings"]


def test_mtp_on_a_model_without_mtp_layers_is_named_a_hypothetical():
    """B8/C7: `--speculate mtp=D` (DeepSeek-V3's multi-token-prediction module, at its 0.875 acceptance) halved
    Qwen3-32B's TPOT and sped Llama-3.1-8B up 1.75x without a word; neither checkpoint has such layers, so no engine
    can load one. Every command that times it now says so; DeepSeek-V3, which ships one, is timed as before."""
    mark = "ships no multi-token-prediction layers that kvcalc knows of"
    est = json.loads(runner.invoke(app, ["estimate", "-m", "llama-3.1-8b", "-b", "8", "--speculate", "mtp=1", "-f",
                                         "json"]).stdout)
    assert any(mark in w for w in est["warnings"])
    srv = json.loads(runner.invoke(app, ["serve", "-m", "qwen3-32b", "-i", "1000", "--output-len", "200", "-n", "16",
                                         "--speculate", "mtp=2,alpha=0.875", "-f", "json"]).stdout)
    assert any(mark in w for w in srv["warnings"])
    cmp = json.loads(runner.invoke(app, ["compare", "-m", "qwen3-32b", "--speculate", "mtp=1", "-f", "json"]).stdout)
    assert any(mark in w for w in cmp[0]["warnings"])
    ds = json.loads(runner.invoke(app, ["estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "-b", "8",
                                        "--speculate", "mtp=1", "-f", "json"]).stdout)
    assert not any(mark in w for w in ds["warnings"])


def test_a_vllm_release_asked_either_way_times_the_same():
    """C8: --vllm-version 0.7.3 alone sized 0.7.3's pool but timed vLLM 0.24's V1 steps (TPOT 36.1 ms), where
    --engine-version 0.7.3 gave 0.7.3's V0 band and MoE factor (62.4 ms); naming the same release both ways gave a
    third answer, refused. One release now times and sizes the run whichever flag names it."""
    base = ["serve", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "-i", "1000", "--output-len", "200", "-n", "64",
            "--engine", "vllm", "--weight-dtype", "fp8-block", "-f", "json"]
    docs = [json.loads(runner.invoke(app, [*base, *flags]).stdout) for flags in (
        ["--vllm-version", "0.7.3"], ["--engine-version", "0.7.3"], ["--vllm-version", "0.7.3", "--engine-version", "0.7.3"])]
    assert len({(d["tpot_ms"], d["ttft_ms"], d["max_concurrency"]) for d in docs}) == 1
    assert "vllm v0 band" in docs[0]["assumptions"]["time_model"]


def test_an_attention_free_config_is_refused_as_such(tmp_path):
    """B5: state-spaces/mamba-2.8b-hf's config (model_type mamba) was refused as "missing num_attention_heads", a field
    no value of which could make it right."""
    folder = tmp_path / "mamba"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "mamba", "hidden_size": 2560, "num_hidden_layers": 64, "state_size": 16, "conv_kernel": 4,
        "expand": 2, "intermediate_size": 5120, "vocab_size": 50280, "tie_word_embeddings": True}))
    message = one_line_error(["estimate", "-m", str(folder)])
    assert "model_type 'mamba' is a model without attention" in message and "num_attention_heads" not in message


def test_gptj_and_phi_count_their_lm_head_bias():
    """B10: GPT-J's and Phi-2's lm_head is nn.Linear(hidden, vocab) with a bias (transformers GPTJForCausalLM,
    PhiForCausalLM), V parameters that were left out without a word. Phi-2's own safetensors index (fp16) now equals
    kvcalc's weight bytes to the byte: 5,559,367,680 B = 2 x 2,779,683,840 parameters; GPT-J gains its 50,400."""
    from pathlib import Path

    hf = Path(__file__).parent / "fixtures/hf"
    index = json.loads((hf / "phi-2/model.safetensors.index.json").read_text())["metadata"]["total_size"]
    phi = json.loads(runner.invoke(app, ["estimate", "-m", str(hf / "phi-2"), "-f", "json"]).stdout)
    assert phi["weights"]["params"] * 2 == index == 5_559_367_680
    gptj = json.loads(runner.invoke(app, ["estimate", "-m", str(hf / "gpt-j-6b/config.json"), "-f", "json"]).stdout)
    d, V, L, f = 4096, 50400, 28, 16384  # n_embd, vocab_size, n_layer, n_inner (4 x n_embd)
    per_layer = 4 * d * d + (d * f + f) + (f * d + d) + 2 * d  # q, k, v, out (no biases); fc_in, fc_out; one LayerNorm
    assert gptj["weights"]["params"] == V * d + L * per_layer + 2 * d + (V * d + V)


def test_a_drafts_own_prefill_is_in_ttft():
    """B4: a draft model keeps its own cache of the prompt, so the prompt goes through it too before the first
    drafts; TTFT with an 8B draft of a 70B model on 4 H100s (8,000-token prompt) had been the plain 512.5 ms. It now
    adds the draft's prefill as estimate times the 8B model's (less the engine's step overhead, paid once)."""
    import kvcalc

    kw = dict(concurrency=1, input_len=8000, output_len=100, engine="vllm", tp=4)
    plain = kvcalc.serve("llama-3.1-70b", "h100-sxm", **kw)["ttft_ms"]
    draft = kvcalc.serve("llama-3.1-70b", "h100-sxm", speculate="draft=llama-3.1-8b,k=4,alpha=0.7", **kw)["ttft_ms"]
    sim = kvcalc.simulate("llama-3.1-70b", "h100-sxm", arrivals="closed", num_prompts=5,
                          speculate="draft=llama-3.1-8b,k=4,alpha=0.7", **kw)["ttft_ms"]["p50"]
    e = kvcalc.estimate("llama-3.1-8b", "h100-sxm", engine="vllm", context=8000, prompt=8000, tp=4)
    assert draft - plain == pytest.approx(e.prefill.ms - e.prefill.overhead_ms, rel=0.02)
    assert sim == pytest.approx(draft, rel=1e-6)


def test_a_simulation_that_preempts_more_than_it_completes_says_so():
    """V4: a pool short of what runs at once made the simulated scheduler preempt (and recompute) requests over and
    over (SGLang: 52,226 preemptions for 80 DeepSeek-V3 requests, TPOT 56 s) without a word; the engines' own
    admission control may preempt far less. More preemptions than completed requests is now a warning."""
    # (outputs of 3,000: since the thirty-fourth audit a preempted request finds what the prefix cache kept, which
    # makes 1,500 thrash less)
    args = ["serve", "-m", "llama-3-8b", "-g", "l4", "-i", "3000", "--output-len", "3000", "-n", "16", "--simulate",
            "--num-prompts", "32", "-f", "json"]
    # vLLM before 0.19 admits a request whose first chunk fits, and thrashes here; from 0.19 its whole sequence must
    # fit (scheduler_reserve_full_isl, the twentieth audit's R1), and it preempts a few times only
    doc = json.loads(runner.invoke(app, [*args, "-e", "vllm", "--vllm-version", "0.18"]).stdout)
    assert doc["preemptions"] > doc["completed"]
    assert any(w.startswith(f"{doc['preemptions']:,} preemptions for 32 requests") for w in doc["warnings"])
    latest = json.loads(runner.invoke(app, [*args, "-e", "vllm"]).stdout)
    assert latest["preemptions"] <= latest["completed"] and not any("preemptions for" in w for w in latest["warnings"])
    calm = json.loads(runner.invoke(app, [*args, "-e", "sglang"]).stdout)
    assert calm["preemptions"] <= calm["completed"] and not any("preemptions for" in w for w in calm["warnings"])


@pytest.mark.parametrize(("args", "flag", "part"), [
    (["estimate", "-m", "llama-3-8b", "-b", "1_6"], "--batch", "1_6"),
    (["estimate", "-m", "llama-3-8b", "--context=4_096"], "--context", "4_096"),
    (["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "4,8_0"], "--concurrency", "8_0"),
])
def test_numbers_with_separators_are_refused_on_the_command_line_as_in_files(args, flag, part):
    """V11: '1_6' was refused in every file kvcalc reads but read as 16 from a flag, the web's query and
    --percentile (which also took 'p 90', 'p+90' and 'p1e1')."""
    assert one_line_error(args) == f"kvcalc: error: {flag}: {part!r}: write the number without '_' separators"


def test_numbers_with_separators_and_odd_percentiles_are_refused_on_the_web_and_in_percentile():
    from kvcalc.option_values import percentile_number
    from kvcalc.web.params import InputError, parse

    with pytest.raises(InputError, match="write the number without '_' separators"):
        parse("estimate", {"model": "llama-3-8b", "batch": "1_6"})
    assert [percentile_number(t) for t in ("90", "p90", "P99.9", "p9_0", "p 90", "p+90", "p1e1")] == [
        90.0, 90.0, 99.9, None, None, None, None]


def test_expert_parallelism_past_nvlink_is_never_faster_than_within_it():
    """B7: past one NVLink domain the all-to-all had no latency: --ep 16 over InfiniBand came out 5x faster than the
    measured 8-GPU NVLink call (0.25 against 1.23 ms a step) and the output named the link "none (one GPU)". A group
    without its own measured curve now takes the largest measured group's fixed latency and the spec's own link."""
    docs = {ep: json.loads(runner.invoke(app, ["estimate", "-m", "deepseek-v3", "-g", "h200", "--ep", str(ep), "-b",
                                               str(ep), "-c", "4096", "-f", "json"]).stdout) for ep in (8, 16)}
    assert docs[16]["decode"]["allreduce_ms"] > docs[8]["decode"]["allreduce_ms"]
    assert "all-to-all over 16 GPUs exceed the 8 that NVLink 4 joins" in docs[16]["inputs"]["allreduce_link"]


def test_the_verification_passes_findings():
    """The verification pass over this round's fixes (W1-W5): a draft's prefill was left out of TTFT under --ep; a
    draft model's own layers paid no synchronisation cost at tp > 1; '_' numbers inside compound values were read;
    capacity sized gpt-fast as a batching server without a word; sweep refused its whole grid over one engine's
    KV format."""
    import kvcalc

    from kvcalc.engines.overhead import SYNCED_LAYER_US

    kw = dict(concurrency=1, input_len=2000, output_len=100, engine="vllm")
    for lay in (dict(tp=2), dict(tp=2, ep=2)):
        plain = kvcalc.serve("qwen3-30b-a3b", "h100-sxm", **lay, **kw)["ttft_ms"]
        draft = kvcalc.serve("qwen3-30b-a3b", "h100-sxm", speculate="draft=qwen3-0.6b,k=4,alpha=0.7", **lay,
                             **kw)["ttft_ms"]
        assert draft > plain
    # a Llama-3.2-1B draft (16 layers) at tp 4: its 4 draft steps each synchronise 16 layers, as the target's do
    from kvcalc.estimator import SpeculativeTimer
    from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine

    spec, hw = load_model("llama-3.1-70b"), load_gpu("h100-sxm")
    timers = {tp: SpeculativeTimer(spec, hw, "draft=llama-3.2-1b,k=4,alpha=0.7", weight_dtype="bf16", kv_dtype="bf16",
                                   tp=tp, profile=resolve_engine("vllm", hw)) for tp in (1, 4)}
    assert timers[1].draft_sync_s == 0 and timers[4].draft_sync_s == pytest.approx(16 * SYNCED_LAYER_US * 1e-6)
    four = kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=1, context=2048, tp=4, engine="vllm",
                           speculate="draft=llama-3.2-1b,k=4,alpha=0.7").speculative
    assert four.draft_ms == pytest.approx(timers[4].draft_seconds(1, 2048) * 1e3, rel=1e-9)
    for args, part in ((["estimate", "-m", "llama-3-8b", "--speculate", "eagle,k=1_0"], "1_0"),
                       (["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "-n", "4", "--price-per-gpu-hour",
                         "h100-sxm=2_5"], "2_5")):
        assert f"{part!r}: write the number without '_' separators" in one_line_error(args)
    cap = json.loads(runner.invoke(app, ["capacity", "-m", "llama-2-7b", "-g", "a100-sxm-80gb", "-c", "2048",
                                         "--engine", "gpt-fast", "-f", "json"]).stdout)
    assert any("gpt-fast is a batch-1 generation script" in w for w in cap["warnings"])


def test_sweep_skips_an_engines_unstorable_kv_cell_only(tmp_path):
    out = tmp_path / "sw.csv"
    r = runner.invoke(app, ["sweep", "-m", "llama-3-8b", "-e", "vllm,sglang", "--kv-dtype", "bf16,int8", "-b", "1,2",
                            "-c", "1024", "-o", str(out)])
    assert r.exit_code == 0, r.output
    # 2 engines x 2 formats x 2 batches, less int8 for both: SGLang stores none, and vLLM's int8_per_token_head adds
    # a scale per token and head that kvcalc's int8 does not count (the thirteenth audit, E4)
    assert len(out.read_text().splitlines()) == 1 + 4


def test_mtp_depth_reuses_the_checkpoints_one_module():
    """W7: --speculate mtp=2 on DeepSeek-V3 counted two MTP modules (weights and KV cache twice) where the checkpoint
    ships one layer (num_nextn_predict_layers 1) that vLLM and SGLang run twice; the memory is one module's at any
    depth, the draft time two steps'."""
    import kvcalc

    # alpha given: a depth past the checkpoint's one layer takes an acceptance (the fortieth audit, speculate 1)
    one, two = (kvcalc.estimate("deepseek-v3", "h200", tp=8, batch=8, context=4096,
                                speculate=f"mtp={k},alpha=0.875").speculative for k in (1, 2))
    assert two.draft_weights_bytes == one.draft_weights_bytes and two.draft_kv_bytes == one.draft_kv_bytes
    assert two.draft_ms == pytest.approx(2 * one.draft_ms, rel=1e-9)


def busiest_by_draws(spec, tokens: int, ep: int, draws: int) -> tuple[float, float]:
    """(expected experts touched, mean of the busiest GPU's touched experts) by direct simulation: each of `tokens`
    tokens draws top_k distinct experts of E, laid out E / ep a GPU."""
    import numpy as np

    E, k = spec.moe.num_experts, spec.moe.top_k
    rng = np.random.default_rng(0)
    most = []
    for _ in range(draws):
        touched = np.zeros(E, bool)
        for _ in range(tokens):
            touched[rng.choice(E, k, replace=False)] = True
        most.append(touched.reshape(ep, E // ep).sum(axis=1).max())
    return E * (1 - (1 - k / E) ** tokens), float(np.mean(most))


@pytest.mark.parametrize(("tokens", "ep"), [(1, 8), (2, 8), (8, 8), (1, 4), (4, 2)])
def test_expert_parallelism_charges_the_busiest_gpus_experts(tokens, ep):
    """B2: --ep charged every GPU 1/ep of the experts a step touches, where each MoE layer's combine waits for the GPU
    holding the most of them. Qwen3-30B-A3B (8 of 128 experts a token): the busiest GPU's expected count, by direct
    simulation of the draws here, is matched within 2 % by busiest_expert_share (exact given the number touched, since
    the eighth audit's V1; the normal approximation it replaced was within 7 % here)."""
    import numpy as np

    from kvcalc.formulas.parallel import busiest_expert_share
    from kvcalc.specs.catalog import load_model

    spec = load_model("qwen3-30b-a3b")
    expected_touched, most = busiest_by_draws(spec, tokens, ep, 4000)
    assert busiest_expert_share(spec, tokens, ep) * expected_touched == pytest.approx(most, rel=0.02)
    assert busiest_expert_share(spec, 4096, ep) == pytest.approx(1 / ep)  # every expert touched: balanced
