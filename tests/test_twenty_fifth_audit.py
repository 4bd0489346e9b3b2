"""The twenty-fifth hostile audit (docs/validation.md, "Twenty-fifth hostile audit"): each test is named after its
finding."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.specs.hf import load_hf_spec

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hf"
# Meta-Llama-3-8B's shape, a config.json to give quantization_config lists to
LLAMA3_8B = json.loads((FIXTURES / "Meta-Llama-3-8B" / "config.json").read_text())


def _config(tmp_path, config: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def _estimate(path: Path, *extra: str):
    return CliRunner().invoke(app, ["estimate", "-m", str(path), "-f", "json", *extra])


# --- config.json ------------------------------------------------------------------------------------------------

def test_25_h1_smollm3_ties_its_embeddings_as_its_config_class_does():
    """SmolLM3-3B's config.json leaves tie_word_embeddings out and SmolLM3Config defaults it to true (transformers
    configuration_smollm3.py); its two shards hold 4,966,315,264 + 1,183,919,744 = 6,150,235,008 B. By hand: 36 layers
    of q 2048x2048, k and v 2048x512, o 2048x2048, MLP 3 x 2048 x 11008 and two norms, the embedding 128,256 x 2,048
    once, the final norm."""
    layer = 2048 * 2048 * 2 + 2 * 2048 * 512 + 3 * 2048 * 11008 + 2 * 2048
    params = 36 * layer + 128_256 * 2048 + 2048
    assert params == 3_075_098_624
    spec, _ = load_hf_spec(FIXTURES / "SmolLM3-3B" / "config.json")
    assert spec.tie_word_embeddings
    out = json.loads(_estimate(FIXTURES / "SmolLM3-3B" / "config.json").stdout)
    assert out["weights"]["params"] == params
    shards = 4_966_315_264 + 1_183_919_744
    assert abs(out["weights"]["bytes"] - shards) / shards < 1e-4  # the rest is the shards' JSON headers
    assert out["kv_cache"]["bytes_per_token"] == 36 * 2 * 4 * 128 * 2


@pytest.mark.parametrize(("model_type", "reason"), [
    # LongCat-Flash-Chat's fields (num_layers 28, MLA, 512 routed and 256 zero-computation experts): each layer has
    # two attention blocks and two dense MLPs (transformers modeling_longcat_flash.py), KV 56 x 576 x 2 B a token
    ("longcat_flash", "two attention blocks"),
    # MiMo-V2-Flash: hybrid_layer_pattern, swa_num_key_value_heads, v_head_dim 128 beside head_dim 192
    ("mimo_v2_flash", "hybrid_layer_pattern"),
    # Granite 4.0: layer_types of 'attention' and 'mamba', a shared MLP
    ("granitemoehybrid", "shared_intermediate_size"),
])
def test_25_h2_h3_h5_families_refused_by_name(tmp_path, model_type, reason):
    """Each had been refused for another field than its own (num_hidden_layers, moe_layer_freq, an 'attention' layer
    kind), and LongCat and MiMo read wrong once that field was supplied (KV half, and ~80x low)."""
    config = {**LLAMA3_8B, "model_type": model_type, "kv_lora_rank": 512} if model_type == "longcat_flash" else \
        {**LLAMA3_8B, "model_type": model_type}
    out = _estimate(_config(tmp_path, config))
    assert out.exit_code == 2 and reason in out.output and "Traceback" not in out.output


def test_25_h3_values_narrower_than_keys_are_refused_in_an_unknown_family(tmp_path):
    """MiMo-V2-Flash's K is 192 wide and V 128 (head_dim, v_head_dim): read by its fields as K = V, the full layers'
    9 x 4 x 320 x 2 = 23,040 B a token came out 27,648."""
    out = _estimate(_config(tmp_path, {**LLAMA3_8B, "model_type": "new_family", "head_dim": 192,
                                       "v_head_dim": 128}))
    assert out.exit_code == 2 and "v_head_dim: 128 where keys are 192 wide" in out.output
    same = _estimate(_config(tmp_path, {**LLAMA3_8B, "model_type": "new_family", "v_head_dim": 128}, "same.json"))
    assert same.exit_code == 0  # 4096 / 32 = 128: one width


MODELOPT_NVFP4 = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "kv_cache_quant_algo": None}


def test_25_h4_modelopt_wildcards_under_ignore_are_matched_as_under_exclude_modules(tmp_path):
    """ModelOpt's config.json writes its exclusions under 'ignore' (MiniMax-M2's NVFP4 export:
    "model.layers.*.self_attn*"); vLLM's ModelOpt is_layer_excluded matches '*' as any run under either key. A glob
    naming some layers ('model.layers.1*': 1 and 10-19) is refused under both, where 'ignore' had dropped it, 11
    layers sized as NVFP4; '*mlp*' keeps the MLPs in bf16 under both."""
    for key in ("ignore", "exclude_modules"):
        some = {**LLAMA3_8B, "quantization_config": {**MODELOPT_NVFP4, key: ["lm_head", "model.layers.1*"]}}
        out = _estimate(_config(tmp_path, some, f"{key}.json"))
        assert out.exit_code == 2 and "'model.layers.1*' names some layers by a pattern" in out.output, key
    sizes = []
    for key in ("ignore", "exclude_modules"):
        mlp = {**LLAMA3_8B, "quantization_config": {**MODELOPT_NVFP4, key: ["lm_head", "*mlp*"]}}
        sizes.append(json.loads(_estimate(_config(tmp_path, mlp, f"mlp-{key}.json")).stdout)["weights"]["bytes"])
    # by hand: 32 layers' MLPs 3 x 4096 x 14336 and the lm_head and embedding in bf16, attention (q, o 4096 x 4096;
    # k, v 4096 x 1024) in NVFP4 at 0.5625 B a weight, 65 norms of 4096 in bf16
    mlp_params, attn_params = 32 * 3 * 4096 * 14336, 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024)
    by_hand = 2 * (mlp_params + 2 * 128_256 * 4096 + 65 * 4096) + 0.5625 * attn_params
    assert sizes[0] == sizes[1] == pytest.approx(by_hand, rel=1e-6)


def test_25_h6_a_config_nesting_its_models_says_where_they_are(tmp_path):
    """Qwen3-Omni's language model sits under thinker_config.text_config: the missing fields' error says so."""
    out = _estimate(_config(tmp_path, {"model_type": "qwen3_omni_moe", "thinker_config": {"text_config": {}},
                                       "talker_config": {}}))
    assert out.exit_code == 2 and "nests its models under talker_config, thinker_config" in out.output


# --- accelerators and their profiles ----------------------------------------------------------------------------

@pytest.mark.parametrize("gpu", ["mi300x", "mi325x"])
def test_25_g1_a_fitted_profile_is_what_its_fit_gives_today(gpu):
    """The bundled fitted profiles are what `kvcalc profiles fit-e2e` writes now (MI300X's had been fitted before the
    overhead bands and the synchronised-layer cost, x 1.490, where its fit gives x 1.234 today); the MI325X, with no
    published runs of its own, carries the MI300X's scale (fit_e2e.SCALE_SIBLINGS)."""
    from kvcalc.ledgers.fit_e2e import fit_bundled
    from kvcalc.ledgers.published import read_points
    from kvcalc.specs.catalog import bundled_profile

    fitted = fit_bundled(read_points(ROOT / "validation/published/unseen-amd-pcie.csv"), gpu, "vllm")
    shipped = bundled_profile(gpu, "vllm")
    assert shipped.provenance == "fitted" and shipped.time_scale == pytest.approx(fitted.time_scale, rel=1e-9)
    # Oracle's five fit rows and, since the thirty-fourth audit, AMD's own three latency rows (amd-041..043)
    assert shipped.fitted_on == fitted.fitted_on == ["amd-001", "amd-002", "amd-003", "amd-008", "amd-009", "amd-041",
                                                     "amd-042", "amd-043"]


def test_25_g1_mi325x_times_as_the_mi300x_die_it_has():
    """Same compute die and peaks (bf16 1,307.4 TFLOPS dense both), HBM3e 6.0 TB/s against 5.3: a compute-bound
    prefill takes the same time on both (it had been 1.45x faster on the MI325X) and a batch-1 decode at most
    6.0 / 5.3 = 1.13x faster (it had been 1.39x)."""
    from kvcalc import estimate

    def run(gpu):
        out = estimate("llama-3.1-8b", gpu, engine="vllm", batch=1, context=4096)
        return out.prefill.ms, out.decode.ms

    (p300, d300), (p325, d325) = run("mi300x"), run("mi325x")
    assert p325 == pytest.approx(p300, rel=0.02)
    assert 1.0 < d300 / d325 <= 6.0 / 5.3


def test_25_g2_engine_memory_follows_the_parts_capability_not_its_name(tmp_path):
    """A renamed copy of h100-sxm.toml (a user's H800 or H20 starts so) keeps vLLM's Hopper rules: FlashInfer's
    1.5 GiB all-reduce fusion workspace at TP 2 on NVSwitch and the triton_kernels MXFP4 layout. gpt-oss-120b at TP 2
    had held 141 sequences of 8,192 tokens on the copy where the bundled spec holds 124, its weights 32.67 GB a GPU
    where they are 36.20."""
    from kvcalc.formulas import engine_memory as em
    from kvcalc.planning.capacity import capacity

    text = (ROOT / "hardware_specs" / "h100-sxm.toml").read_text()
    lines = [("name = \"my-hopper\"" if line.startswith("name =") else "aliases = []" if line.startswith("aliases =")
              else line) for line in text.splitlines()]
    copy = tmp_path / "my-hopper.toml"
    copy.write_text("\n".join(lines) + "\n")
    bundled = capacity("gpt-oss-120b", "h100-sxm", context=8192, tp=2, engine="vllm")
    renamed = capacity("gpt-oss-120b", str(copy), context=8192, tp=2, engine="vllm")
    assert renamed["max_sequences_at_context"] == bundled["max_sequences_at_context"]
    assert renamed["engine_memory"]["weights_bytes_per_gpu"] == bundled["engine_memory"]["weights_bytes_per_gpu"]
    # the rules themselves, by capability: Hopper 9.0 and datacenter Blackwell 10.x build the fusion workspace
    assert em.vllm_fusion_workspace_bytes("9.0", "nvswitch", (0, 19), 2) == 1.5 * 1024**3
    assert em.vllm_fusion_workspace_bytes("10.3", "nvswitch", (0, 19), 2) == 1.5 * 1024**3
    assert em.vllm_fusion_workspace_bytes("12.0", "nvswitch", (0, 19), 2) == 0
    assert em.vllm_mxfp4_backend("8.6", (0, 19)) == "marlin" and em.vllm_mxfp4_backend("7.5", (0, 19)) is None


def test_25_g3_a_package_is_planned_as_the_gpus_its_driver_shows():
    """ROCm shows an MI250X as two 64 GB GCDs, each a GPU to an engine: plan had chosen vLLM at TP 1 on the whole
    128 GB package for Mixtral-8x7B (93 GB in bf16), a deployment that does not exist, timed without the all-reduces
    between the dies. Now the package is left out with the reason, and the GCDs run TP 2 over the package's four
    in-package Infinity Fabric links (50 GB/s each way each: 400 GB/s both ways; ROCm's MI250 microarchitecture page,
    Pearson 2023)."""
    from kvcalc import estimate
    from kvcalc.specs.catalog import load_gpu

    gcd = load_gpu("mi250x-gcd")
    assert (gcd.interconnect_bandwidth_GBps, gcd.scale_up_gpus) == (400, 2)
    args = ["plan", "-m", "mixtral-8x7b", "--request-rate", "1", "--input-len", "1024", "--output-len", "256",
            "-f", "json"]
    only = CliRunner().invoke(app, [*args, "-g", "mi250x"])
    assert only.exit_code == 2 and "mi250x is a package its driver shows as 2 GPUs" in only.output
    assert "use -g mi250x-gcd" in only.output
    both = CliRunner().invoke(app, [*args, "-g", "mi250x,mi250x-gcd"])
    assert both.exit_code == 0, both.output
    result = json.loads(both.stdout)
    assert result["choice"]["gpu"] == "mi250x-gcd" and result["choice"]["gpus"] == 2
    # said where another GPU is searched too (the twenty-sixth audit, R2: dropped in silence)
    assert any("mi250x is a package" in w and "left out of the search" in w for w in result["warnings"])
    out = estimate("llama-3.1-8b", "mi250x", engine="vllm")
    assert any("is a package its driver shows as 2 GPUs" in w for w in out.warnings)
    assert not any("package" in w for w in estimate("llama-3.1-8b", "mi250x", engine="roofline").warnings)
    two = estimate("mixtral-8x7b", "mi250x-gcd", engine="vllm", tp=2)
    assert two.decode.allreduce_ms > 0


@pytest.mark.parametrize(("gpu", "mib"), [
    ("gb200", 189_471),  # aiconfigurator-core 0.12.0 systems/gb200.yaml: '189471MiB reported by nvidia-smi'
    ("rtx-5090", 32_607),  # aiconfigurator systems/rtx_5090.yaml @603ba74: 'Observed on this node ... 32607 MiB VRAM'
])
def test_25_g4_memory_rules_start_from_what_the_device_shows(gpu, mib):
    """The GB200 had budgeted 186 GiB and the RTX 5090 32 GiB, where nvidia-smi shows 185.03 and 31.84."""
    from kvcalc.specs.catalog import load_gpu

    hw = load_gpu(gpu)
    assert hw.visible_memory_GiB == round(mib / 1024, 2)
    assert hw.visible_memory_bytes == pytest.approx(mib * 1024**2, rel=1e-4)


# --- calibrate --------------------------------------------------------------------------------------------------

def test_25_c1_calibrate_recovers_the_profile_from_a_serving_benchmark_of_it(tmp_path):
    """A `vllm bench serve --save-result` record per concurrency, its TPOT and TTFT what kvcalc's own serve gives for
    the bundled vLLM profile on an H100 (1,000 + 200 tokens): the truth is that profile, kernels x 1 and the band's
    1,280 us a step. Fitted as plain decode steps (each request's TPOT also carries the other requests' prompts), the
    kernels had come out x 1.37 with no step cost."""
    import kvcalc
    from kvcalc.validate.calibrate import calibrate_from_benchmark

    records = []
    for c in (1, 8, 32, 64):
        out = kvcalc.serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=200, concurrency=c, engine="vllm")
        n = max(10 * c, 100)
        records.append({"backend": "vllm", "completed": n, "total_input_tokens": 1000 * n,
                        "total_output_tokens": 200 * n, "request_rate": "inf", "max_concurrency": c,
                        "request_throughput": out["requests_per_s"], "mean_ttft_ms": out["ttft_ms"],
                        "mean_tpot_ms": out["tpot_ms"]})
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    profile, report = calibrate_from_benchmark(path, model="llama-3.1-8b", gpu="h100-sxm", engine="vllm")
    assert report["time_scale"] == pytest.approx(1.0, abs=0.02)
    assert report["step_us"] == pytest.approx(1280, rel=0.03)
    assert report["held_out_median_abs_error_pct"] < 1
    # the same runs 1.3x slower: kernels x 1.3 and 1.3 x 1,280 us a step, and the fit error is the candidate's own
    # (the twenty-sixth audit, R1: the fitted profile had been rescored with the bundled one, 13.5 % at x 0.85)
    for r in records:
        r.update(mean_ttft_ms=r["mean_ttft_ms"] * 1.3, mean_tpot_ms=r["mean_tpot_ms"] * 1.3,
                 request_throughput=r["request_throughput"] / 1.3)
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    profile, report = calibrate_from_benchmark(path, model="llama-3.1-8b", gpu="h100-sxm", engine="vllm")
    assert report["time_scale"] == pytest.approx(1.3, rel=0.02)
    assert report["step_us"] == pytest.approx(1.3 * 1280, rel=0.05)
    assert report["fit_median_abs_error_pct"] < 1 and report["held_out_median_abs_error_pct"] < 1


# --- the serving simulator --------------------------------------------------------------------------------------

def test_25_s1_s2_a_vllm_clients_poisson_run_is_timed_as_vllm_bench_serve_times_it():
    """vllm bench serve rescales its drawn gaps so that the last of N requests goes out at N / rate and starts its
    clock before the first gap (benchmarks/serve.py get_request, PR #21108): over seeds 0-5 at 10 requests/s the
    simulated throughput had spread 9.64-10.60 requests/s (seed 2 above the offered rate). And one seed's arrivals
    stay the same whatever lengths are drawn (S2)."""
    from kvcalc.serving.simulate import make_workload, simulate

    rates = []
    for seed in range(6):
        out = simulate("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=200, arrivals="poisson",
                       request_rate=10, num_prompts=1000, engine="vllm", seed=seed)
        rates.append(out["requests_per_s"])
    assert max(rates) < 10 and max(rates) / min(rates) < 1.005
    fixed = make_workload("poisson", 500, 1000, 200, request_rate=4.0, seed=7)
    ranged = make_workload("poisson", 500, 1000, 200, request_rate=4.0, seed=7, range_ratio=0.5)
    assert list(fixed.arrival_s) == list(ranged.arrival_s)
    assert list(fixed.input_len) != list(ranged.input_len)


# --- commands agreeing ------------------------------------------------------------------------------------------

def test_25_f1_serve_under_auto_reserves_the_prefill_chunk_capacity_reserves():
    """Under --engine auto serve had reserved the activations of vLLM's default step for the GPU (2,048 tokens on a
    24 GB card) where capacity and estimate reserve --prefill-chunk's 8,192: Qwen3-32B over 3 RTX 3090s, which
    capacity says holds no sequence (its KV budget 255 MB below zero), had served 5 requests."""
    import warnings

    import kvcalc
    from kvcalc.errors import KvcalcError
    from kvcalc.planning.capacity import capacity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = capacity("qwen3-32b", "rtx-3090", context=1024, tp=1, pp=3)
        assert c["max_sequences_at_context"] == 0
        with pytest.raises(KvcalcError, match="leaving no KV pool"):
            kvcalc.serve("qwen3-32b", "rtx-3090", pp=3, input_len=1000, output_len=24, concurrency=8)
        # and on the GPUs of 160 GiB or more, whose default vLLM step is 16,384 tokens (the twenty-seventh audit,
        # F1: serve had reserved that step's activations, capacity the 8,192-token chunk)
        for gpu in ("l4", "mi325x", "gb200"):
            s = kvcalc.serve("llama-3.1-8b", gpu, input_len=1000, output_len=1000, concurrency="max")
            c = capacity("llama-3.1-8b", gpu, context=2000)
            assert s["kv_pool_bytes_per_gpu"] == pytest.approx(c["kv_budget_bytes_per_gpu"], abs=1), gpu
            assert s["concurrency"] == c["max_sequences_at_context"], gpu


def test_25_f2_vllm_v0_profiles_its_own_batch_in_serve_as_in_capacity():
    """vLLM's V0 SchedulerConfig takes max(max_model_len, 2,048) batched tokens without chunked prefill; serve had
    profiled Mixtral's MoE workspace at the closed form's 8,192 (a pool 1.3 GB smaller than capacity's)."""
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = kvcalc.capacity("mixtral-8x7b", "h100-sxm", engine="vllm", engine_version="0.7", pp=2, context=104)
        s = kvcalc.serve("mixtral-8x7b", "h100-sxm", engine="vllm", engine_version="0.7", pp=2, input_len=100,
                         output_len=4, concurrency=1)
    assert c["engine_memory"]["max_num_batched_tokens"] == 2048
    assert s["kv_pool_bytes_per_gpu"] == c["kv_budget_bytes_per_gpu"]
    assert "V0 engine prefills a prompt whole" in s["assumptions"]["batching"]


def test_25_c6_the_published_ledger_holds_out_an_organisation_as_the_serving_ledger_does(tmp_path, monkeypatch):
    """Scored by publisher, NVIDIA's documentation ("TensorRT-LLM") stayed in the fit that scored its blogs. Toy
    ledger (tests/test_published.py's: every row's kernels take 10 ms, each publisher weighs 1 in the fit of the
    step overhead): publisher a's row implies 2 ms, NVIDIA's three names' 10 ms each. Holding out the organisation
    leaves a's 2 ms: 12 ms for each NVIDIA row; holding out one name had left two of NVIDIA's, 10 ms: 20."""
    from kvcalc.ledgers import published
    from kvcalc.ledgers.published import read_points, score

    assert published.organisation("TensorRT-LLM") == published.organisation("nvidia-trtllm-blogs") == "nvidia"
    head = ("id,engine,engine_version,gpu,model,weight_dtype,kv_dtype,tp,pp,ep,metric,batch,input_len,output_len,"
            "measured,use,publisher,link,source,note\n")
    rows = [("a1", "a", 12), ("t1", "TensorRT-LLM", 20), ("n1", "nvidia-trtllm-blogs", 20),
            ("m1", "nvidia-nim-docs", 20)]
    body = "".join(f"{i},vllm,0.10.0,h100-sxm,llama-3-8b,bf16,bf16,1,1,1,tpot_ms,1,128,128,{m},score,{p},single,s,\n"
                   for i, p, m in rows)
    path = tmp_path / "toy.csv"
    path.write_text(head + body)
    monkeypatch.setattr(published, "kernel_times", lambda point, profile: {
        "prefill_ms": 10.0, "decode_ms": 10.0, "prefill_sol_ms": 1.0, "decode_sol_ms": 1.0})
    results = {r["id"]: r for r in score(read_points(path))}
    for i in ("t1", "n1", "m1"):
        assert results[i]["predicted"] == pytest.approx(12.0, abs=0.2), i


@pytest.mark.parametrize(("record", "message"), [
    # C3: an open loop's request rate is checked as a closed loop's is
    ({"max_concurrency": None, "request_rate": "fast"}, 'field request_rate: expected a positive number or "inf"'),
    ({"max_concurrency": None, "request_rate": -3}, 'field request_rate: expected a positive number or "inf"'),
    # C5: a required field that is absent is said to be missing
    ({"completed": None}, "field completed: missing"),
    ({"total_input_tokens": None}, "field total_input_tokens: missing"),
])
def test_25_c3_c5_calibrate_checks_every_field_it_reads(tmp_path, record, message):
    from kvcalc.validate.calibrate import read_benchmark

    base = {"completed": 100, "total_input_tokens": 100_000, "total_output_tokens": 20_000, "mean_tpot_ms": 9.5,
            "mean_ttft_ms": 40.0, "request_throughput": 2.0, "max_concurrency": 8, "request_rate": "inf"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({k: v for k, v in {**base, **record}.items() if v is not None or k in (
        "max_concurrency",)}))
    with pytest.raises(KvcalcError, match=message):
        read_benchmark(path)


def test_25_c4_a_json_key_given_twice_is_refused(tmp_path):
    """As the CSV and trace readers refuse a column named twice: the last of two mean_tpot_ms had been fitted."""
    from kvcalc.validate.calibrate import read_benchmark

    path = tmp_path / "run.json"
    path.write_text('{"completed": 100, "total_input_tokens": 100000, "total_output_tokens": 20000, '
                    '"mean_tpot_ms": 7.33, "mean_tpot_ms": 9.5, "max_concurrency": 8}')
    with pytest.raises(KvcalcError, match="line 1: field mean_tpot_ms: given twice"):
        read_benchmark(path)
    path.write_text(path.read_text() + "\n" + path.read_text())  # JSON lines, as --append-result writes them
    with pytest.raises(KvcalcError, match="line 1: field mean_tpot_ms: given twice"):
        read_benchmark(path)


# --- plan -------------------------------------------------------------------------------------------------------

def test_25_p1_plans_unknown_engine_lists_the_engines_it_searches():
    args = ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "--concurrency", "8", "-i", "100", "-o", "10"]
    out = CliRunner().invoke(app, [*args, "--engines", "VLLM"])
    assert out.exit_code == 2
    assert "unknown engine 'VLLM' (did you mean vllm?); expected one of vllm, sglang, trtllm, roofline" in out.output


def test_25_p2_plan_says_where_sglang_runs_above_its_own_memory_fraction():
    """SGLang derives mem_fraction_static 0.835 for one H100 (server_args.py _handle_gpu_memory_settings; the
    nineteenth audit's E3 test checks the rule by hand): plan sizes and launches 0.9 unless told, and now says so."""
    import warnings

    from kvcalc.planning.plan import plan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = plan("qwen3-32b", ["h100-sxm"], engines=["sglang"], concurrency=16, input_len=1000, output_len=200)
    assert r["choice"]["engine"] == "sglang"
    assert any("above the 0.835 SGLang derives for itself" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan("qwen3-32b", ["h100-sxm"], engines=["sglang"], concurrency=16, input_len=1000, output_len=200,
             memory_utilization=0.835)
    assert not any("SGLang derives for itself" in str(w.message) for w in caught)


def test_25_f3_sweep_marks_the_rows_that_do_not_start():
    """TensorRT-LLM does not load block-scaled FP8 on Ada (the twenty-third audit's G4) and no engine keeps an NVFP4
    cache off datacenter Blackwell (the twenty-fourth's K1): sweep had written fits=True on every such row."""
    import warnings

    from kvcalc import sweep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = sweep(["llama-3.1-8b"], ["l40s"], engine=["trtllm", "vllm"], weight_dtype=["fp8-block", "fp8"],
                   kv_dtype=["nvfp4", "bf16"], batch=[1], context=[1024])
    rows = {(r.engine, r.weight_dtype, r.kv_dtype): r for r in df.itertuples()}
    assert not rows["trtllm", "fp8-block", "bf16"].starts
    assert "block-scaled FP8" in rows["trtllm", "fp8-block", "bf16"].start_note
    assert not rows["vllm", "fp8", "nvfp4"].starts and "NVFP4 KV cache" in rows["vllm", "fp8", "nvfp4"].start_note
    assert rows["vllm", "fp8", "bf16"].starts and rows["vllm", "fp8", "bf16"].start_note == ""


@pytest.mark.parametrize("version", ["0.5", "v0.5", "0.4"])
def test_25_f4_a_series_is_not_an_sglang_release(version):
    """SGLang's '0.5' had been read as 0.5.0: the older MoE kernel era and the pre-0.5.3 chunk rule, TTFT 2x what
    '0.5.14' gives. A series is refused, a release taken."""
    out = CliRunner().invoke(app, ["estimate", "-m", "qwen3-30b-a3b", "-g", "h200", "-e", "sglang",
                                   "--engine-version", version])
    assert out.exit_code == 2 and "names a series" in out.output and "Traceback" not in out.output
    for release in ("0.5.3", "0.5.3rc1", "0.4+", "latest"):
        assert CliRunner().invoke(app, ["estimate", "-m", "qwen3-30b-a3b", "-g", "h200", "-e", "sglang",
                                        "--engine-version", release]).exit_code == 0, release


def test_25_h5_exaone4s_letter_pattern_is_its_period(tmp_path):
    """Exaone4Config documents sliding_window_pattern 'LLLG' as the integer 4 (layers 0-2 local, 3 global,
    repeated). EXAONE 4.0 32B's shape (64 layers, 40 heads, 8 KV heads of 128, window 4,096): at 131,072 tokens
    16 global layers keep every token and 48 local ones 4,096: 2 x 8 x 128 x 2 B x (16 x 131,072 + 48 x 4,096)."""
    base = {"model_type": "exaone4", "hidden_size": 5120, "intermediate_size": 27392, "num_hidden_layers": 64,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 102400,
            "max_position_embeddings": 131072, "sliding_window": 4096, "tie_word_embeddings": False}
    want = 2 * 8 * 128 * 2 * (16 * 131_072 + 48 * 4_096)
    for pattern in ("LLLG", 4):
        path = _config(tmp_path, {**base, "sliding_window_pattern": pattern}, f"{pattern}.json")
        out = _estimate(path, "-c", "131072")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["kv_cache"]["bytes"] == want
    bad = _estimate(_config(tmp_path, {**base, "sliding_window_pattern": "LGLG"}, "bad.json"))
    assert bad.exit_code == 2 and "sliding_window_pattern: 'LGLG'" in bad.output


def test_25_s4_the_judged_percentile_is_a_column_of_the_table():
    out = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "h100", "-i", "1000", "--output-len", "200",
                                   "--simulate", "--request-rate", "10", "--num-prompts", "200", "--max-ttft-ms",
                                   "100", "--percentile", "95"])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.stdout.splitlines() if "metric" in line)
    assert header.split() == ["metric", "p50", "p90", "p95", "p99"]
    assert "at p95 the limits are" in out.stdout


def test_25_s5_s6_the_simulator_refuses_what_it_would_read_wrong_or_drop(tmp_path):
    """S5: a Mooncake trace (input_length, output_length, timestamp in ms) is named, not read after a rename as
    seconds. S6: the Python API refuses a seed with a trace (reported, and unused) and two burst sizes that differ
    (concurrency had been dropped), as the CLI does."""
    from kvcalc.serving.simulate import read_trace, simulate

    mooncake = tmp_path / "mooncake.jsonl"
    mooncake.write_text('{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}\n')
    with pytest.raises(KvcalcError, match="Mooncake's trace"):
        read_trace(mooncake)
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_len,output_len\n0,100,10\n1,100,10\n")
    with pytest.raises(KvcalcError, match="seed: not read with arrivals='trace'"):
        simulate("llama-3.1-8b", arrivals="trace", trace=str(trace), seed=5, engine="roofline")
    with pytest.raises(KvcalcError, match="both name the burst size"):
        simulate("llama-3.1-8b", input_len=100, output_len=10, arrivals="burst", request_rate=4, concurrency=4,
                 burst_size=8, num_prompts=16, engine="roofline")


def test_25_c2_serve_and_the_simulator_take_a_calibrated_profile(tmp_path):
    """Only estimate had taken calibrate's --profile. A profile whose fitted step costs 10 ms (the bundled vLLM band:
    1.28 ms) adds 8.72 ms to every decode step, so to the TPOT of a batch-1 closed loop, in serve's closed form and in
    the simulator alike; a profile of another GPU, or --engine-version beside a fitted overhead, is refused."""
    import kvcalc
    from kvcalc.serving.simulate import simulate
    from kvcalc.specs.catalog import bundled_profile
    from kvcalc.specs.profile import EngineOverhead
    from kvcalc.specs.toml_out import spec_to_toml

    shipped = bundled_profile("h100-sxm", "vllm")
    slow = shipped.model_copy(update={"overhead": EngineOverhead(step_us=10_000, request_ms=9.04,
                                                                 sources=["a test's own"])})
    path = tmp_path / "slow.toml"
    path.write_text(spec_to_toml(slow))
    args = dict(input_len=1000, output_len=200, concurrency=1)
    base = kvcalc.serve("llama-3.1-8b", "h100-sxm", engine="vllm", engine_version="0.24.0", **args)
    mine = kvcalc.serve("llama-3.1-8b", "h100-sxm", profile_file=str(path), **args)
    assert mine["tpot_ms"] - base["tpot_ms"] == pytest.approx(10.0 - 1.28, rel=0.01)
    sim = dict(input_len=1000, output_len=200, arrivals="closed", concurrency=1, num_prompts=20)
    sim_base = simulate("llama-3.1-8b", "h100-sxm", engine="vllm", engine_version="0.24.0", **sim)
    sim_mine = simulate("llama-3.1-8b", "h100-sxm", profile_file=str(path), **sim)
    assert sim_mine["tpot_ms"]["p50"] - sim_base["tpot_ms"]["p50"] == pytest.approx(10.0 - 1.28, rel=0.01)
    with pytest.raises(KvcalcError, match="fitted on h100-sxm, not h200"):
        kvcalc.serve("llama-3.1-8b", "h200", profile_file=str(path), **args)
    with pytest.raises(KvcalcError, match="states its own overheads"):
        kvcalc.serve("llama-3.1-8b", "h100-sxm", profile_file=str(path), engine_version="0.10.0", **args)
    out = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "--output-len",
                                   "200", "-n", "1", "--profile", str(path), "-f", "json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["tpot_ms"] == pytest.approx(mine["tpot_ms"])


def test_26_r4_a_model_the_engine_has_no_class_for_is_said_as_plan_refuses_it():
    """TensorRT-LLM's PyTorch back end has no model class for Jamba (its supported-models table); plan refused it
    while estimate and sweep timed it in silence (starts=True)."""
    import warnings

    from kvcalc import estimate, sweep

    out = estimate("jamba-v0.1", "h100-sxm", engine="trtllm")
    assert any("no model class for jamba" in w for w in out.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = sweep(["jamba-v0.1"], ["h100-sxm"], engine=["trtllm", "vllm"])
    starts = dict(zip(df["engine"], df["starts"]))
    assert starts == {"trtllm": False, "vllm": True}


def test_26_r3_r6_r7_r8_small_fixes(tmp_path):
    """R3: a series past every SGLang band is the unknown-release error, not a suggestion of releases kvcalc then
    refuses. R6: fit-e2e into a missing folder is one line, as transfer's. R7: PyTorch's 32 MiB cuBLAS workspace is
    for compute capability 9, 10 and 12 only (CublasHandlePool.cpp). R8: the MI325X's SGLang profile, transferred
    and not fitted, no longer says it carries a fitted scale."""
    from kvcalc.formulas import engine_memory as em
    from kvcalc.specs.catalog import bundled_profile

    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "h200", "-e", "sglang",
                                   "--engine-version", "0.3"])
    assert out.exit_code == 2 and "names a series" not in out.output and "no release '0.3'" in out.output
    out = CliRunner().invoke(app, ["profiles", "fit-e2e", "--gpu", "mi300x", "--out-dir", str(tmp_path / "none")])
    assert out.exit_code == 2 and "is not a folder" in out.output and "Traceback" not in out.output
    assert em.cublas_workspace_bytes("11.0") == (4096 * 2 + 16 * 8) * 1024
    assert em.cublas_workspace_bytes("10.3") == em.cublas_workspace_bytes("12.1") == 32 * 1024**2
    sglang = bundled_profile("mi325x", "sglang")
    assert sglang.provenance == "transferred" and "fitted scale" not in sglang.method


def test_26_h1_a_published_hybrid_fp8_list_of_norms_and_state_parameters_is_read(tmp_path):
    """Qwen3-Next-80B-A3B-Instruct-FP8's modules_to_not_convert names, besides its Linear layers kept in bf16 (the
    Gated DeltaNets' in_proj_ba, the routers, shared_expert_gate, lm_head), every layer's norms, A_log, dt_bias and
    conv1d and its MTP module: parameters no format quantises. They had been refused as keeping a mixer in bf16."""
    base = {"model_type": "qwen3_next", "hidden_size": 2048, "intermediate_size": 5120, "num_hidden_layers": 4,
            "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256, "vocab_size": 151936,
            "max_position_embeddings": 262144, "num_experts": 512, "num_experts_per_tok": 10,
            "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "linear_num_key_heads": 16,
            "linear_num_value_heads": 32, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
            "full_attention_interval": 4, "tie_word_embeddings": False}
    kept = ["lm_head", "mtp.fc", "mtp.norm"]
    for i in range(4):
        kept += [f"model.layers.{i}.input_layernorm", f"model.layers.{i}.post_attention_layernorm",
                 f"model.layers.{i}.mlp.gate", f"model.layers.{i}.mlp.shared_expert_gate"]
        kept += ([f"model.layers.{i}.self_attn.q_norm", f"model.layers.{i}.self_attn.k_norm"] if i == 3 else
                 [f"model.layers.{i}.linear_attn.{n}" for n in ("A_log", "conv1d", "dt_bias", "in_proj_ba", "norm")])
    fp8 = {**base, "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128],
                                           "modules_to_not_convert": kept}}
    out = _estimate(_config(tmp_path, fp8))
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["inputs"]["weight_dtype"] == "fp8-block"


def test_26_h2_qwen35s_stated_ssm_dtype_sizes_its_state():
    """Qwen3.5's config.json states mamba_ssm_dtype float32 (the REAP fixture, as published): each of its 30 Gated
    DeltaNet layers keeps 32 x 128 x 128 recurrent elements a sequence at 4 B (they had been sized at 2 B)."""
    spec, _ = load_hf_spec(FIXTURES / "Qwen3.5-18B-REAP-A3B-Coding" / "config.json")
    la = spec.linear_attention
    assert la.recurrent_state_bytes == 4
    assert la.recurrent_elements == 32 * 128 * 128
    conv = la.state_elements - la.recurrent_elements
    assert la.state_bytes(2) == conv * 2 + 32 * 128 * 128 * 4


def test_26_h3_glm5s_shared_indexer_layers_are_refused(tmp_path):
    """GLM-5.3's indexer_types marks 57 of 78 layers "shared" (no indexer of their own): counted on every layer, KV
    had been 78 x 1,284 B a token where it is 78 x 1,152 + 21 x 132."""
    # GLM-5's fields (its published config.json, trimmed to 4 layers), with GLM-5.3's IndexShare list
    glm = {"model_type": "glm_moe_dsa", "hidden_size": 6144, "intermediate_size": 12288, "num_hidden_layers": 4,
           "num_attention_heads": 64, "num_key_value_heads": 64, "vocab_size": 154880, "kv_lora_rank": 512,
           "q_lora_rank": 2048, "qk_rope_head_dim": 64, "qk_nope_head_dim": 192, "v_head_dim": 256,
           "first_k_dense_replace": 3, "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1,
           "num_experts_per_tok": 8, "index_topk": 2048, "index_n_heads": 32, "index_head_dim": 128,
           "max_position_embeddings": 202752, "tie_word_embeddings": False}
    assert _estimate(_config(tmp_path, glm, "glm5.json")).exit_code == 0
    glm["indexer_types"] = ["full", "shared", "shared", "full"]
    out = _estimate(_config(tmp_path, glm))
    assert out.exit_code == 2 and "indexer_types" in out.output and "share another's indexer" in out.output
    # the same written as a period, as vLLM reads it (the twenty-seventh audit, R4: read silently)
    del glm["indexer_types"]
    out = _estimate(_config(tmp_path, {**glm, "index_topk_freq": 4, "index_skip_topk_offset": 3}, "freq.json"))
    assert out.exit_code == 2 and "index_topk_freq: 4" in out.output
    out = _estimate(_config(tmp_path, {**glm, "indexer_types": []}, "empty.json"))
    assert out.exit_code == 2 and "indexer_types: expected a list" in out.output


def test_26_m1_vllm_011_on_hopper_lays_out_gpt_oss_experts_as_its_logs_show():
    """llm-d's vLLM 0.11.0 sweep on one H100 (79.18 GiB) logs 'Model loading took' 13.47 GiB for gpt-oss-20b and
    64.38 for gpt-oss-120b: Marlin's layout, which kvcalc had taken for 0.11 on Hopper, gives 13.70 and 65.93."""
    import warnings

    from kvcalc.planning.capacity import capacity

    GiB = 1024**3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model, logged in (("gpt-oss-20b", 13.47), ("gpt-oss-120b", 64.38)):
            c = capacity(model, "h100-sxm", context=16000, tp=1, engine="vllm", vllm_version="0.11.0")
            assert c["engine_memory"]["weights_bytes_per_gpu"] / GiB == pytest.approx(logged, rel=0.005), model


def test_25_s3_burstiness_shapes_the_gaps_as_vllm_bench_serves_does():
    """vllm bench serve --burstiness b draws gaps from gamma(shape b, scale 1 / (rate b)): mean 1 / rate, coefficient
    of variation 1 / sqrt(b) (1 for Poisson). It could only be simulated with a trace."""
    import numpy as np

    from kvcalc.serving.simulate import make_workload, simulate

    for b in (0.25, 1.0, 4.0):
        w = make_workload("poisson", 20_000, 10, 10, request_rate=50.0, seed=3, client="sglang", burstiness=b)
        gaps = np.diff(w.arrival_s)
        assert gaps.mean() == pytest.approx(1 / 50, rel=0.05)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / b**0.5, rel=0.05), b
    with pytest.raises(KvcalcError, match="--burstiness: shapes Poisson arrivals' gaps"):
        simulate("llama-3.1-8b", input_len=100, output_len=10, arrivals="closed", concurrency=4, burstiness=0.5,
                 engine="roofline")
    out = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "h100", "-i", "1000", "--output-len", "200",
                                   "--simulate", "--request-rate", "10", "--num-prompts", "200", "--burstiness",
                                   "0.5", "-f", "json"])
    assert out.exit_code == 0, out.output
    assert "gamma gaps of burstiness 0.5" in json.loads(out.stdout)["arrivals"]
    closed = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-g", "h100", "-i", "1000", "--output-len",
                                      "200", "-n", "8", "--burstiness", "0.5"])
    assert closed.exit_code == 2 and "--burstiness" in closed.output
    # vllm bench serve had no --burstiness before 0.6.4 (PR #10105; the twenty-seventh audit, F4)
    with pytest.raises(KvcalcError, match="has no --burstiness"):
        simulate("llama-3.1-8b", input_len=100, output_len=10, arrivals="poisson", request_rate=5, engine="vllm",
                 vllm_version="0.6.3", burstiness=0.3, num_prompts=20)


def test_27_r5_the_untested_fixes():
    """The twenty-seventh audit's R5: a vLLM release before 0.10 keeps its client's unrescaled Poisson arrivals (the
    first request at once), and a spec may hold what calibrate measures on a CPU that emulates bf16 (0.00095 TFLOPS,
    an efficiency of 9.6e-7 against an H100's datasheet), while 0 stays refused."""
    from pydantic import ValidationError

    from kvcalc.serving.simulate import simulate
    from kvcalc.specs.catalog import load_gpu
    from kvcalc.specs.hardware import HardwareSpec

    args = dict(input_len=100, output_len=10, arrivals="poisson", request_rate=5, engine="vllm", num_prompts=50)
    old = simulate("llama-3.1-8b", vllm_version="0.6.3", **args)
    new = simulate("llama-3.1-8b", vllm_version="0.10.0", **args)
    assert "N / rate" in new["arrivals"] and "N / rate" not in old["arrivals"]
    data = load_gpu("h100-sxm").model_dump()
    data["peak_tflops"]["bf16"] = 0.00095
    data["efficiency"]["compute"] = 9.6e-7
    assert HardwareSpec.model_validate(data).peak_tflops.bf16 == 0.00095
    data["peak_tflops"]["bf16"] = 0.0
    with pytest.raises(ValidationError):
        HardwareSpec.model_validate(data)


def test_27_r1_compare_says_what_the_other_commands_say_of_a_deployment_that_does_not_start():
    """compare had never called format_warnings: no word of TensorRT-LLM having no class for Jamba, or of an MI250X
    package, where estimate, capacity, serve and sweep say them."""
    import warnings

    from kvcalc.planning.capacity import compare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare("jamba-v0.1", ["gqa8"], "h100-sxm", engine="trtllm", tp=2)
        assert any("no model class for jamba" in w for w in rows[0]["warnings"])
        rows = compare("llama-3.1-8b", ["gqa4"], "mi250x", engine="vllm")
        assert any("is a package" in w for w in rows[0]["warnings"])


def test_27_r3_a_pattern_that_names_a_class_is_not_skipped_as_a_norm(tmp_path):
    """'re:.*visual.*|.*mlp.*' keeps the MLPs in bf16 (it had been dropped whole, as a vision-tower entry)."""
    q = {"quant_method": "compressed-tensors", "format": "float-quantized",
         "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float",
                                                                    "strategy": "channel", "symmetric": True},
                                 "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                                                       "dynamic": True, "symmetric": True}}},
         "ignore": ["lm_head", "re:.*visual.*|.*mlp.*"]}
    plain = json.loads(_estimate(_config(tmp_path, {**LLAMA3_8B, "quantization_config": {**q, "ignore": ["lm_head"]}},
                                         "plain.json")).stdout)["weights"]["bytes"]
    out = _estimate(_config(tmp_path, {**LLAMA3_8B, "quantization_config": q}))
    assert out.exit_code == 0, out.output  # the MLPs (32 x 3 x 4096 x 14336 weights) kept in bf16, a byte more each
    assert json.loads(out.stdout)["weights"]["bytes"] == plain + 32 * 3 * 4096 * 14336
