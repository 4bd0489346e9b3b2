"""Regression tests for the fourth hostile audit (2026-12-05, 19:10-19:35 UTC; docs/validation.md "Fourth hostile
audit") and the defects found beside it: each reproduces a finding with the numbers worked by hand or against another
command."""

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app

runner = CliRunner()
FIXTURES_BENCH = Path(__file__).parent / "fixtures" / "benchmarks"


def test_profiles_fit_without_pyarrow_is_one_line(tmp_path, monkeypatch):
    """`kvcalc profiles fit --data DIR` where pyarrow is not installed (the profiles extra brings it) ended in pandas'
    ImportError traceback, exit 1; it is a one-line error naming what to install, exit 2."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    (tmp_path / "a100_sxm").mkdir()
    out = runner.invoke(app, ["profiles", "fit", "-g", "a100-sxm-80gb", "--engine", "vllm", "--data", str(tmp_path),
                              "--out-dir", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines() == [
        "kvcalc: error: profiles: reading the measured tables (Parquet) needs pyarrow: pip install 'kvcalc[profiles]'"]


def test_plan_judges_a_replica_where_it_meets_the_limit_past_four_replicas():
    """F1: `plan -m qwen3-30b-a3b -g l40s -i 1000 -o 500 --concurrency 2000 --max-tpot-ms 60` bought 32 GPUs (16 x TP 2
    at 128 in flight: the ladder's shares of the concurrency stopped at SHARES = 4 replicas) where serve puts the same
    deployment at 8 replicas of 250 in flight within the limit. The replica is now also timed where its TPOT reaches
    the limit, at the concurrency's shares there (limit_shares)."""
    import kvcalc

    r = kvcalc.plan("qwen3-30b-a3b", ["l40s"], input_len=1000, output_len=500, concurrency=2000, max_tpot_ms=60,
                    disaggregated=False)
    c = r["choice"]
    assert (c["gpus"], c["replicas"], c["in_flight_per_replica"]) == (16, 8, 250)
    same = kvcalc.serve("qwen3-30b-a3b", "l40s", input_len=1000, output_len=500, concurrency=2000, max_tpot_ms=60,
                        tp=c["tensor_parallel"], engine=c["engine"], weight_dtype=c["weight_dtype"],
                        kv_dtype=c["kv_dtype"])
    assert same["gpus"] == 16 and same["tpot_ms"] == pytest.approx(c["tpot_ms"], rel=1e-9) and c["tpot_ms"] <= 60
    # by request rate: Gemma-2-9B at 50 requests/s under a 45 ms TPOT on L40S with SGLang took 7 GPUs; serve gives 6
    g = kvcalc.plan("gemma-2-9b", ["l40s"], input_len=200, output_len=500, request_rate=50, max_tpot_ms=45,
                    engines=["sglang"], disaggregated=False)["choice"]
    served = kvcalc.serve("gemma-2-9b", "l40s", input_len=200, output_len=500, request_rate=50, max_tpot_ms=45,
                          engine="sglang", weight_dtype=g["weight_dtype"], kv_dtype=g["kv_dtype"])
    assert g["gpus"] == served["gpus"] == 6


def test_engine_version_sizes_vllms_pool_by_that_release():
    """F3: `capacity -m qwen3-30b-a3b -g h100 -c 4096 --engine vllm --engine-version 0.9` timed vLLM 0.9 but sized the
    pool by 0.30's memory rule (36 sequences); --vllm-version 0.9 gives 22. Without --vllm-version the run's own
    release, --engine-version's, now sizes it; a band's name (v1) keeps the newest rule."""
    import kvcalc

    def seqs(**kw):
        with pytest.warns(Warning):
            return kvcalc.capacity("qwen3-30b-a3b", "h100-sxm", context=4096, engine="vllm",
                                   **kw)["max_sequences_at_context"]

    assert seqs(engine_version="0.9") == seqs(vllm_version="0.9") == 22
    # a band's name: its newest release's rule (the verification pass: v0 had kept 0.30's while timing v0's steps)
    assert seqs(engine_version="v2") == seqs() == 36
    assert seqs(engine_version="v1") == seqs(vllm_version="0.28") == 31
    # V0 (up to 0.7) profiles with its own 256 sequences and max(max_model_len, 2,048) tokens (the fourteenth audit,
    # E2): the same pool as V1's rule given those two flags, which had been the 1,024 and 8,192 of 0.9 (22)
    v0 = seqs(engine_version="v0")
    assert v0 == seqs(engine_version="0.1-0.7") == seqs(vllm_version="0.7") == seqs(
        vllm_version="0.7", max_num_seqs=256, max_num_batched_tokens=4096) > seqs(
        vllm_version="0.7", max_num_seqs=1024, max_num_batched_tokens=8192) == 22


def test_compare_refuses_a_tp_that_does_not_divide_the_heads():
    """F4: `compare -m llama-3.1-8b --tp 3` printed a batch and a decode time where estimate, capacity and serve
    refuse a TP that does not divide the 32 query heads."""
    out = runner.invoke(app, ["compare", "-m", "llama-3.1-8b", "--tp", "3"])
    assert out.exit_code == 2
    assert out.output.strip() == ("kvcalc: error: --tp: tensor parallelism over 3 GPUs needs it to divide the 32 "
                                  "query heads")


def test_vllm_pipeline_speculation_is_named_with_engine_auto_everywhere():
    """F5: with --engine auto (vLLM's profile), serve, serve --simulate, compare and sweep timed vLLM speculation
    under pipeline parallelism without the warning estimate gives (vLLM does not start that layout)."""
    import kvcalc
    from kvcalc.serving.simulate import simulate

    said = "vLLM does not start speculative decoding under pipeline parallelism"
    kw = dict(pp=2, speculate="eagle,k=4")
    with pytest.warns(Warning, match=said):
        served = kvcalc.serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=100, concurrency=8, **kw)
    assert any(said in w for w in served["warnings"])
    with pytest.warns(Warning, match=said):
        simulate("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=100, concurrency=8, num_prompts=16, **kw)
    with pytest.warns(Warning, match=said):
        kvcalc.compare("llama-3.1-8b", ["mqa"], "h100-sxm", **kw)
    with pytest.warns(Warning, match=said):
        kvcalc.sweep(["llama-3.1-8b"], ["h100-sxm"], batch=[1], context=[1024], pp=[2], speculate=["eagle,k=4"])


def test_simulated_tensorrt_llm_pool_holds_what_capacity_says():
    """F6: capacity --engine trtllm holds 167 requests of 2,000 tokens of Qwen3-32B on 2 H100s; the simulator ran 166,
    padding each request to 32-token blocks again inside a pool counted at the unpadded length."""
    import kvcalc
    from kvcalc.serving.simulate import simulate

    with pytest.warns(Warning):
        held = kvcalc.capacity("qwen3-32b", "h100-sxm", context=2000, gpus=2, engine="trtllm")
    assert held["max_sequences_at_context"] == 167
    sim = simulate("qwen3-32b", "h100-sxm", tp=2, engine="trtllm", input_len=1000, output_len=1000, concurrency=167,
                   num_prompts=167)
    assert sim["max_running"] == 167 and sim["preemptions"] == 0


def test_uneven_expert_parallel_waves_step_in_lockstep():
    """F2: `serve -m jamba-v0.1 -g l40s --tp 2 --ep 4 --engine vllm --kv-dtype fp8 -i 4096 --output-len 64 -n 3
    --arrivals waves`: 3 requests over 2 attention replicas, budget 2,048 tokens a replica. The replica with 2
    prompts prefills 8,192 tokens in 4 steps; the other's request ends its prompt at step 2 and then decodes in steps 3
    and 4 beside them, each as long as the group's prefill step (~343 ms), then 61 steps of ~32 ms (the busiest GPU's
    share of the experts 3 tokens touch, 2 of 16 each, since the seventh audit's B2; ~22 ms at the average share):
    TPOT (2 x 343 + 61 x 32) / 63 ~ 42 ms, the median. The closed form had it decode at the decode step's pace and
    the latency at 2,092 ms; the simulator agrees with the closed form."""
    import kvcalc
    from kvcalc.serving.simulate import simulate

    kw = dict(input_len=4096, output_len=64, tp=2, ep=4, engine="vllm", kv_dtype="fp8")
    closed = kvcalc.serve("jamba-v0.1", "l40s", concurrency=3, arrivals="waves", **kw)
    sim = simulate("jamba-v0.1", "l40s", concurrency=3, num_prompts=3, **kw)
    assert 38 < closed["tpot_ms"] < 45
    for key, sim_key in (("ttft_ms", "ttft_ms"), ("tpot_ms", "tpot_ms"), ("latency_ms", "e2e_ms")):
        assert closed[key] == pytest.approx(sim[sim_key]["p50"], rel=0.02), key


def test_simulator_runs_long_lone_requests_and_stops_a_run_that_only_preempts(monkeypatch):
    """Part 2 finding 4 and part 1 finding 3: one request in flight over 30,000 prompts of 4,000 output tokens ran
    82 s, keeping one inter-token latency for each of its 1.2e8 decode steps (1.9 GB); a pool of two requests on an
    L4 preempted for over 100 s. A block of decode steps now keeps at most ITL_SAMPLES of its latencies, each weighing
    its share, and a run stops past MAX_ROUNDS scheduler rounds (4 a request for larger runs) with one line. The
    verification pass: a first cap on steps refused ordinary runs (1,000 prompts of 4,096 tokens, one in flight)."""
    import kvcalc.serving.simulate as sim

    r = sim.simulate("qwen3-0.6b", "h100-sxm", input_len=10, output_len=4000, concurrency=1, num_prompts=3000)
    assert r["itl_ms"]["p50"] == pytest.approx(r["tpot_ms"]["p50"], rel=0.02)  # a lone request's steps
    # the sampled latencies give the percentiles every latency gives: two requests in flight of 400-7,600 output
    # tokens, so decode blocks of one and of two requests, of many lengths, each sample weighing its block's share
    kw = dict(input_len=100, output_len=4000, concurrency=2, num_prompts=100, range_ratio=0.9, seed=1)
    sampled = sim.simulate("llama-3.1-8b", "h100-sxm", **kw)["itl_ms"]
    monkeypatch.setattr(sim, "ITL_SAMPLES", 10**9)
    every = sim.simulate("llama-3.1-8b", "h100-sxm", **kw)["itl_ms"]
    monkeypatch.setattr(sim, "ITL_SAMPLES", 1)
    one = sim.simulate("llama-3.1-8b", "h100-sxm", **kw)["itl_ms"]
    for key in ("p50", "p90", "p99"):
        assert sampled[key] == pytest.approx(every[key], rel=1e-3), key
    assert abs(one["p99"] / every["p99"] - 1) > 0.01  # the comparison can tell a coarser sampling apart
    monkeypatch.setattr(sim, "MAX_ROUNDS", 2_000)
    out = runner.invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "l4", "-i", "8000", "--output-len", "8000",
                              "--simulate", "--arrivals", "poisson", "--request-rate", "inf", "-e", "vllm",
                              "--num-prompts", "300"])
    assert out.exit_code == 2
    assert "the simulation passed 2,000 scheduler rounds with" in out.output.strip().splitlines()[-1]


def test_negative_infinite_request_rate_is_refused():
    """Part 1 finding 2: `--request-rate -inf` passed the range check meant for inf (all at once) and ran as +inf
    (poisson) or failed with numpy's `scale < 0` traceback (burst)."""
    for arrivals in ("poisson", "burst"):
        out = runner.invoke(app, ["serve", "-m", "llama-3.1-8b", "-i", "100", "--output-len", "10", "--simulate",
                                  "--arrivals", arrivals, "--request-rate", "-inf"])
        assert out.exit_code == 2, out.output
        assert out.output.strip() == "kvcalc: error: --request-rate: expected a finite number in (0, 1e+09], got -inf"


def test_speculative_verify_under_pipeline_stages_is_not_below_a_plain_step():
    """Part 2 finding 1: under --pp the speculative step is one micro-batch's depth, its draft that micro-batch's,
    but verify_ms subtracted the whole batch's draft: Qwen3-0.6B drafting for itself on a B200 at --pp 2, batch 32,
    printed verify -0.907 ms, and Llama-3.1-8B at --pp 4 (draft Llama-3.2-1B) 2.16 ms where the plain decode step
    is 6.42 ms: checking 5 tokens a sequence reads the same 16.06 GB of weights (8.03B parameters in bf16) as
    checking 1: 4.79 ms at the H100's 3.35 TB/s."""
    import kvcalc

    for model, draft, pp in (("qwen3-0.6b", "qwen3-0.6b,k=2,alpha=0.9", 2), ("llama-3.1-8b", "llama-3.2-1b,k=4,alpha=0.7", 4)):
        verify = []
        for batch in (8, 16, 32, 64):
            e = kvcalc.estimate(model, "b200" if model == "qwen3-0.6b" else "h100-sxm", engine="roofline", pp=pp,
                                batch=batch, context=4096, speculate=f"draft={draft}")
            assert e.speculative.verify_ms >= e.decode.speed_of_light_ms > 0
            verify.append(e.speculative.verify_ms)
        assert verify == sorted(verify)
    e = kvcalc.estimate("llama-3.1-8b", "h100-sxm", engine="roofline", pp=4, batch=32, context=4096,
                        speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    assert e.speculative.verify_ms >= 16.06e9 / 3.35e12 * 1e3  # 4.79 ms


def test_a_moe_factor_below_one_never_times_below_the_speed_of_light(tmp_path):
    """Part 1 finding 5: a profile file with moe_time_scale = 0.01 (a value the schema takes) decoded Qwen3-30B-A3B
    on an L40S at batch 8 in 17.3 ms against its 19.1 ms speed of light. The scaled routed experts now stop at their
    own speed of light, so the step never goes below the step's."""
    import kvcalc
    from kvcalc.specs.catalog import load_gpu, resolve_engine
    from kvcalc.specs.toml_out import spec_to_toml

    profile = resolve_engine("vllm", load_gpu("l40s")).model_copy(update={"moe_time_scale": 0.01,
                                                                        "moe_time_scale_source": "a hostile test"})
    path = tmp_path / "l40s.vllm.toml"
    path.write_text(spec_to_toml(profile))
    e = kvcalc.estimate("qwen3-30b-a3b", "l40s", batch=8, context=2048, weight_dtype="fp8", engine="vllm",
                        profile_file=str(path))
    assert e.decode.ms >= e.decode.speed_of_light_ms
    plain = kvcalc.estimate("qwen3-30b-a3b", "l40s", batch=8, context=2048, weight_dtype="fp8", engine="vllm")
    assert e.decode.ms < plain.decode.ms  # the factor still shortens what lies above the speed of light


@pytest.mark.parametrize("version, why", [
    ("0.6.3garbage", "trailing text"), ("0.6 ; rm -rf", "a shell fragment"), ("\u0660.\u0665.\u0663", "Arabic-Indic digits"),
])
def test_engine_version_must_be_one_release_number(version, why):
    """Part 1 finding 6: release3's prefix match read '0.6.3garbage', '0.6 ; rm -rf' and Arabic-Indic digits as
    releases; --engine-version now takes a whole release number in ASCII digits, a band's name, or a band's range."""
    out = runner.invoke(app, ["estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "-e", "sglang",
                              "--engine-version", version])
    assert out.exit_code == 2, why
    assert out.output.startswith(f"kvcalc: error: --engine-version: sglang has no release {version!r}")


def test_a_bands_printed_range_names_the_band():
    """Part 1 finding 6: '0.4-0.5', the range kvcalc prints for SGLang's 0.4+ band, was read as release 0.4 and
    slowed DeepSeek-V3's experts x3.13 (11.49 ms a step on 8 H200s), where the band itself reaches past the era
    (7.63 ms, the profile's own kernels)."""
    import kvcalc
    from kvcalc.engines.kernel_eras import flag_release

    kw = dict(tp=8, engine="sglang", batch=1, context=4096)
    by_range = kvcalc.estimate("deepseek-v3", "h200", engine_version="0.4-0.5", **kw).decode.ms
    assert by_range == kvcalc.estimate("deepseek-v3", "h200", engine_version="0.4+", **kw).decode.ms
    assert by_range < kvcalc.estimate("deepseek-v3", "h200", engine_version="0.5.5", **kw).decode.ms
    assert [flag_release(v) for v in ("v0.5.5.post3", "1.3.0rc20", "0.7.4.dev181+gf35f8e22", "0.10.1.1")] == [
        (0, 5, 5), (1, 3, 0), (0, 7, 4), (0, 10, 1)]


def test_a_dense_models_time_model_names_no_moe_factor():
    """Part 1 finding 11: `estimate -m llama-3.1-8b --engine vllm --engine-version 0.8.0` named 'MoE kernels x2.12'
    in its time-model line though the model has no experts and no number changes."""
    import kvcalc

    dense = kvcalc.estimate("llama-3.1-8b", "h100-sxm", engine="vllm", engine_version="0.8.0")
    assert "MoE kernels" not in (dense.inputs.profile or "")
    moe = kvcalc.estimate("qwen3-30b-a3b", "h100-sxm", engine="vllm", engine_version="0.8.0")
    from kvcalc.engines.kernel_eras import ERAS

    assert f"MoE kernels x{next(e for e in ERAS if e.engine == 'vllm').moe_scale:g}" in moe.inputs.profile


def test_validate_ledgers_refuse_numbers_they_cannot_score(tmp_path):
    """Part 1 finding 7: an engine-memory row with pp or max_num_batched_tokens of 1e308 was an OverflowError
    traceback, and a serve ledger's measured throughput of 0 an IndexError in the table printer."""
    root = Path(__file__).resolve().parents[1]
    memory = (root / "validation" / "engine-memory" / "vllm.csv")
    lines = memory.read_text().splitlines()
    header = lines[0].split(",")
    row = next(line for line in lines[1:] if line.count(",") == len(header) - 1 and '"' not in line).split(",")
    row[header.index("pp")] = "1e308"
    bad = tmp_path / "memory.csv"
    bad.write_text("\n".join([lines[0], ",".join(row)]) + "\n")
    out = runner.invoke(app, ["validate", "--engine-memory", str(bad)])
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
    assert out.output.startswith("kvcalc: error: --engine-memory: row 2")
    serve = tmp_path / "serve.csv"
    serve.write_text("id,model,gpu,tp,weight_dtype,kv_dtype,input_len,output_len,total_output_tokens_per_s,source\n"
                     "x-1,llama-3.1-8b,h200,1,fp8,fp8,128,128,0,a test\n")
    out = runner.invoke(app, ["validate", "--serve", str(serve)])
    assert out.exit_code == 2
    assert out.output.strip() == (f"kvcalc: error: --serve: {serve}: line 2, column total_output_tokens_per_s: expected a number "
                                  "above 0, got '0'")


def test_calibrate_keeps_the_engines_request_cost_where_the_file_has_no_ttft(tmp_path):
    """Part 1 finding 9: a result file whose mean_ttft_ms is 0 (a tool's 'not measured') fitted 0 ms a request, as if
    measured; the request cost now stays the engine band's own (vLLM V1's request_ms) and the profile says why."""
    import json

    from kvcalc.validate.calibrate import calibrate_from_benchmark

    lines = (FIXTURES_BENCH / "nerdalert-llm-d-l40s-vllm-results.json").read_text().splitlines()
    runs = [json.loads(line) for line in lines if line.strip()]
    for run in runs:
        run["mean_ttft_ms"] = 0
    path = tmp_path / "no-ttft.json"
    path.write_text("\n".join(json.dumps(r) for r in runs) + "\n")
    profile, report = calibrate_from_benchmark(path, model="llama-3.2-3b", gpu="l40s", engine="vllm", replicas=4)
    from kvcalc.engines.overhead import band

    v1 = band("vllm", "v1").request_ms
    assert report["request_fitted"] is False and report["request_ms"] == v1
    assert profile.overhead.request_ms == v1
    assert "the engine band's own: no paced run in the file reports a TTFT" in profile.overhead.sources[0]


def test_a_multimodal_checkpoints_top_level_quantization_is_read(tmp_path):
    """Part 1 finding 1: MedGemma-27B's config.json with an FP8 block quantization_config at the top level (where a
    multimodal checkpoint writes it, for the whole model) was sized as bf16, 51.10 GiB of weights; inside text_config
    it gave fp8-block, 27.26 GiB. The top-level block is now read where text_config has none."""
    import json

    import kvcalc

    data = json.loads((Path(__file__).parent / "fixtures" / "hf" / "medgemma-27b-it" / "config.json").read_text())
    data["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    top = kvcalc.estimate(str(path))
    inner = dict(data, text_config=dict(data["text_config"], quantization_config=data.pop("quantization_config")))
    path.write_text(json.dumps(inner))
    assert top.inputs.weight_dtype == kvcalc.estimate(str(path)).inputs.weight_dtype == "fp8-block"
    assert top.memory.weights_bytes / 2**30 == pytest.approx(27.26, abs=0.01)


def test_a_llama_family_configs_layer_types_say_which_layers_slide(tmp_path):
    """Part 1 finding 8: a Llama-3-8B-shaped config with sliding_window 4,096 and layer_types of 1 full and 31 sliding
    layers held 512 MiB of KV cache at 32,768 tokens (every layer sliding). By hand, 8 KV heads x 128 x 2 (K, V) x 2 B
    = 4,096 B a token a layer: 1 x 32,768 x 4,096 + 31 x 4,096 x 4,096 B = 624 MiB. An unknown kind is refused."""
    import json

    import kvcalc

    base = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
            "max_position_embeddings": 131072, "sliding_window": 4096}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(base, layer_types=["full_attention"] + ["sliding_attention"] * 31)))
    e = kvcalc.estimate(str(path), batch=1, context=32768)
    assert e.memory.kv_cache_bytes == 32768 * 4096 + 31 * 4096 * 4096 == 624 * 2**20
    path.write_text(json.dumps(dict(base, layer_types=["banana"] * 32)))
    out = runner.invoke(app, ["estimate", "-m", str(path)])
    assert out.exit_code == 2
    assert out.output.strip().endswith("layer_types: 'banana' layers are not a kind kvcalc reads in this model_type "
                                       "(it reads full_attention and sliding_attention)")


def test_serve_says_when_a_rate_loads_its_replicas_near_saturation():
    """Part 2 finding 2: serve sizes replicas as ceil(rate / the most requests/s one carries); gpt-oss-20b on 4 L40S
    (2,000 + 128 tokens) carried at most ~4.0 requests/s a replica, so 20 requests/s put 5 replicas at 99.6 % of it,
    TPOT 418 ms, between 30 ms at 10/s and 74 ms at 30/s. Under random arrivals a queue that loaded waits long (M/D/1:
    a mean wait of load / (2 (1 - load)) service times, 125 at 99.6 %); serve now says so and names the headroom.
    Since the fifth audit the L40S's TP 4 all-reduce is NCCL's (about 5.2 requests/s a replica): 20/s is 4 at ~96 %."""
    import kvcalc

    kw = dict(tp=4, input_len=2000, output_len=128)
    with pytest.warns(Warning, match=r"each of the 4 replicas carries 9\d\.\d% of the most requests/s it can") as got:
        near = kvcalc.serve("gpt-oss-20b", "l40s", request_rate=20, **kw)
    assert near["replicas"] == 4 and any("5 replicas, or --max-ttft-ms" in w for w in near["warnings"])
    import re

    m = next(re.search(r"carries ([\d.]+)% of the most requests/s it can \(5 of ([\d.]+)\)", str(w.message))
             for w in got if "carries" in str(w.message))
    assert float(m[1]) == pytest.approx(5 / float(m[2]) * 100, abs=0.05)  # 20/s over 4 replicas, of the most one carries
    calm = kvcalc.serve("gpt-oss-20b", "l40s", request_rate=8, **kw)  # 2 replicas at 77 %
    assert not any("most requests/s it can" in w for w in calm["warnings"])


def test_sweep_skips_a_pair_whose_engine_does_not_run_there():
    """Part 2, minor: `sweep -g mi210,h100 --engine sglang` refused the whole grid because SGLang does not run on the
    MI210 (gfx90a); the pair is now skipped with its reason and the H100's rows written."""
    import kvcalc

    with pytest.warns(Warning, match="sweep skipped mi210 x sglang: sglang does not run on mi210"):
        df = kvcalc.sweep(["llama-3.1-8b"], ["mi210", "h100-sxm"], engine=["sglang"], batch=[1], context=[1024])
    assert list(df["gpu"].astype(str)) == ["h100-sxm"]


def test_plan_times_the_point_where_the_limit_is_reached_not_a_share_past_it():
    """The verification pass: Mistral-7B on L40S under TensorRT-LLM at TP 4 meets TPOT 8 ms at 5 in flight (7.96 ms)
    and misses it at 8 (9.54); the replicas' share of 1,000 requests near the interpolated point was rounded up to 6,
    and plan bought 250 replicas (1,000 GPUs) where 200 (800 GPUs) meet the limit."""
    import kvcalc

    c = kvcalc.plan("mistral-7b", ["l40s"], input_len=1024, output_len=512, concurrency=1000, max_tpot_ms=8,
                    max_ttft_ms=3000, engines=["trtllm"], disaggregated=False, speculate=False, convert=False)["choice"]
    assert (c["gpus"], c["in_flight_per_replica"]) == (800, 5) and c["tpot_ms"] <= 8
    served = kvcalc.serve("mistral-7b", "l40s", input_len=1024, output_len=512, concurrency=5, tp=4, engine="trtllm",
                          weight_dtype=c["weight_dtype"], kv_dtype=c["kv_dtype"])
    assert served["tpot_ms"] == pytest.approx(c["tpot_ms"], rel=1e-9)


def test_serve_sizes_replicas_for_whole_requests_under_a_tpot_limit():
    """The verification pass: `serve -m llama-3.1-70b -g h200 --tp 8 -e trtllm -n 333 --max-tpot-ms 8` judged 243
    replicas at 333 / 243 = 1.37 requests each (TPOT 7.99 ms); whole requests put 2 in 90 of them, 180 requests with
    the median among them, at TPOT 9.6 ms. The limit is now judged at the fullest replicas' whole load: 333 replicas,
    as plan says."""
    import kvcalc

    kw = dict(input_len=4096, output_len=64, engine="trtllm", tp=8, weight_dtype="bf16", kv_dtype="fp8")
    two = kvcalc.serve("llama-3.1-70b", "h200", concurrency=2, **kw)
    assert two["tpot_ms"] > 8
    sized = kvcalc.serve("llama-3.1-70b", "h200", concurrency=333, max_tpot_ms=8, **kw)
    assert (sized["replicas"], sized["gpus"]) == (333, 2664) and sized["tpot_ms"] <= 8


@pytest.mark.parametrize("version", ["0.\u00b2", "\u0660.\u0661\u0661"])
def test_vllm_version_takes_ascii_digits(version):
    """The verification pass: `--vllm-version 0.\u00b2` was a ValueError traceback and Arabic-Indic digits were read as
    0.11 (str.isdigit takes both)."""
    out = runner.invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version", version])
    assert out.exit_code == 2
    assert out.output.strip() == ("kvcalc: error: --vllm-version: expected latest or a release such as 0.11 or 0.30.1, "
                                  f"got {version!r}")
