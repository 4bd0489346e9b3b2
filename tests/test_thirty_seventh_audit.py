"""Regression tests for the thirty-seventh hostile audit (docs/validation.md, "Thirty-seventh hostile audit"); each
test is named after its finding."""

import json

from kvcalc import estimate


def _write(tmp_path, config: dict):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_37_import1_vaultgemma_ties_its_embeddings_as_gemma2config_does(tmp_path):
    """VaultGemmaConfig subclasses Gemma2Config (tie_word_embeddings True; transformers' modular_vaultgemma.py), and a
    config.json leaves out a value equal to its class's default; kvcalc had read the head as a second 256,000 x 1,152
    matrix. VaultGemma-1B's shape (26 layers of 4 x 256-wide heads, MHA, a 6,912 gated MLP, two norms a layer) counted
    by hand: 26 x (4 x 1,152 x 1,024 + 3 x 1,152 x 6,912 + 2 x 1,152) + 256,000 x 1,152 + 1,152."""
    layer = 4 * 1152 * 1024 + 3 * 1152 * 6912 + 2 * 1152
    config = {"architectures": ["VaultGemmaForCausalLM"], "model_type": "vaultgemma", "vocab_size": 256000,
              "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 1152,
              "intermediate_size": 6912, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
              "sliding_window": 512, "max_position_embeddings": 1024, "layer_types": ["full_attention"] * 26,
              "torch_dtype": "bfloat16"}
    w = estimate(_write(tmp_path, config), "h100-sxm", context=1024).weights
    assert w.params == 26 * layer + 256_000 * 1152 + 1152 == 1_038_741_120


def test_37_import2_dots_llm1_has_qwen3s_qk_norms_and_deepseek_v3s_router_bias(tmp_path):
    """dots.llm1's Dots1Attention is Qwen3Attention (q_norm, k_norm of head_dim) and its Dots1TopkRouter is
    DeepseekV3TopkRouter (e_score_correction_bias, one per routed expert; transformers' modular_dots1.py), neither
    named by a config field: 62 x 256 + 61 x 128 = 23,680 parameters had been left out. The whole count by hand: two
    untied 152,064 x 4,096 matrices; 62 layers of MHA (4 x 4,096^2), q/k norms and two RMSNorms; one dense 10,944
    MLP; 61 MoE layers of 128 routed and 2 shared 1,408-wide experts, a router and its bias; the final norm."""
    d, vocab, experts = 4096, 152064, 128
    expected = (2 * vocab * d + 62 * (4 * d * d + 2 * 128 + 2 * d) + 3 * d * 10944
                + 61 * ((experts + 2) * 3 * d * 1408 + experts * d + experts) + d)
    config = {"architectures": ["Dots1ForCausalLM"], "model_type": "dots1", "hidden_size": d,
              "num_hidden_layers": 62, "intermediate_size": 10944, "num_attention_heads": 32,
              "num_key_value_heads": 32, "vocab_size": vocab, "first_k_dense_replace": 1,
              "moe_intermediate_size": 1408, "n_routed_experts": experts, "n_shared_experts": 2,
              "num_experts_per_tok": 6, "norm_topk_prob": True, "scoring_func": "sigmoid",
              "max_position_embeddings": 32768, "attention_bias": False, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}
    w = estimate(_write(tmp_path, config), "h100-sxm", context=1024).weights
    assert w.params == expected == 142_774_381_696


def test_37_links4_a_pipeline_stage_sends_the_residual_beside_the_hidden_states():
    """vLLM's LlamaModel.forward returns IntermediateTensors({"hidden_states", "residual"}) on every stage but the last
    (SGLang's PPProxyTensors the same two); GPT-2 adds its residual inside the layer and sends the hidden states alone
    (vLLM's GPT2Model). By hand at PP 2 on H100s (NVLink 900 GB/s, 450 one way), one micro-batch of one token:
    Llama-3.1-8B 2 x 4,096 x 2 B = 16,384 B, 36.4 ns; GPT-3 175B (LayerNorm) 12,288 x 2 B, 54.6 ns."""
    import pytest

    llama = estimate("llama-3.1-8b", "h100-sxm", pp=2, batch=1, context=1024, engine="roofline")
    assert llama.decode.pipeline_ms == pytest.approx(2 * 4096 * 2 / 450e9 * 1e3, rel=1e-9)
    gpt3 = estimate("gpt-3-175b", "h100-sxm", pp=2, batch=1, context=1024, engine="roofline")
    assert gpt3.decode.pipeline_ms == pytest.approx(12288 * 2 / 450e9 * 1e3, rel=1e-9)


def test_37_plan2_a_percentile_verdict_says_what_it_was_taken_over():
    """plan's p90/p99 verdict comes from one simulated run of 1,000 requests at the simulator's default seed, its
    ramp-up and drain included (the audit: a choice met p99 TPOT over 1,000 requests and missed it by 12-15 % over
    3,000-30,000); the JSON now says so, and the seed it names is the one that reproduces the verdict in simulate."""
    from typer.testing import CliRunner

    from kvcalc.cli import app
    from kvcalc.serving.simulate import simulate

    out = CliRunner().invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1024", "-o", "256",
                                   "--request-rate", "10", "--max-tpot-ms", "50", "--percentile", "p90",
                                   "--engines", "vllm", "--no-disaggregate", "-f", "json"])
    assert out.exit_code == 0, out.output
    choice = json.loads(out.stdout)["choice"]
    sim = choice["simulated"]
    assert sim["seed"] == 0 and sim["num_prompts"] == 1000
    assert sim["taken_over"] == "the 1,000 requests of one simulated run (seed 0), its ramp-up and drain included"
    kw = dict(input_len=1024, output_len=256, num_prompts=1000, engine="vllm", weight_dtype=choice["weight_dtype"],
              kv_dtype=choice["kv_dtype"], max_num_seqs=choice["max_num_seqs"], arrivals="poisson",
              request_rate=10, percentile=90, max_tpot_ms=50)
    again = simulate("llama-3.1-8b", "h100-sxm", seed=0, **kw)
    assert again["tpot_ms"]["p90"] == sim["tpot_ms"] and again["ttft_ms"]["p90"] == sim["ttft_ms"]
    assert simulate("llama-3.1-8b", "h100-sxm", seed=1, **kw)["ttft_ms"]["p90"] != sim["ttft_ms"]


def _cli(*args):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    return CliRunner().invoke(app, list(args))


def test_37_fuzz1_an_integer_past_the_largest_double_is_refused_by_name():
    """math.isfinite(10**400) raises OverflowError, and repr() of an int past 4,300 digits raises ValueError: every
    float check had crashed on them, in the API and in serve's frontier list (-n 1,10**400)."""
    import pytest

    from kvcalc import simulate
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match=r"^memory_utilization: expected a finite number in \(0, 1\], got "
                                          r"10000000000000000000\.\.\. \(401 characters\)$"):
        estimate("llama-3-8b", "h100-sxm", memory_utilization=10**400)
    with pytest.raises(KvcalcError, match="^batch: expected a whole number from 1 to 10,000,000, got an integer of "
                                          "16,610 bits$"):
        estimate("llama-3-8b", "h100-sxm", batch=10**5000)
    with pytest.raises(KvcalcError, match="^concurrency: expected a finite number"):
        simulate("llama-3-8b", "h100-sxm", input_len=512, output_len=32, concurrency=10**400, num_prompts=8)
    out = _cli("serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "64", "-n", f"1,{10**400}")
    assert out.exit_code == 2 and out.output.startswith("kvcalc: error: --concurrency: expected a finite number")


def test_37_fuzz2_serves_frontier_checks_its_limits_as_one_point_does():
    """-n 1,4 --max-ttft-ms -1 had printed a frontier of misses, exit 0; the API's '100' a bare TypeError."""
    import pytest

    from kvcalc import serve_frontier
    from kvcalc.errors import KvcalcError

    for value in ("-1", "nan", "0"):
        out = _cli("serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "64", "-n", "1,4", "--max-ttft-ms", value)
        assert out.exit_code == 2 and "--max-ttft-ms: expected a finite number in (0, 1e+09]" in out.output
    with pytest.raises(KvcalcError, match=r"^max_tpot_ms: expected a finite number in \(0, 1e\+09\], got '100'$"):
        serve_frontier("llama-3-8b", "h100-sxm", input_len=512, output_len=64, concurrencies=[1, 4], tps=[1],
                       max_tpot_ms="100")


def test_37_fuzz3_the_memory_ledger_reads_a_path_as_the_other_ledgers_do(tmp_path):
    """validate --engine-memory had read the whole file before any check (a 300 MB file: 3.3 s, 650 MB), and a
    300-character name or /proc/self/mem ended in a traceback."""
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate((64 << 20) + 1)
    out = _cli("validate", "--engine-memory", str(big))
    assert out.exit_code == 2 and "67,108,865 bytes; a memory ledger CSV is at most 67,108,864" in out.output
    out = _cli("validate", "--engine-memory", "a" * 300 + ".csv")
    assert out.exit_code == 2 and out.output.startswith("kvcalc: error: --engine-memory: aaaa")
    assert "File name too long" in out.output and "Traceback" not in out.output


def test_37_fuzz4_plan_refuses_a_free_gpu_as_serve_and_capacity_do():
    for price in ("0", "-0", "h100-sxm=0"):
        out = _cli("plan", "-m", "llama-3-8b", "-i", "512", "-o", "64", "-n", "4", "--engines", "roofline",
                   f"--price-per-gpu-hour={price}")
        assert out.exit_code == 2 and "expected a finite number in (0, 1e+06]" in out.output, price


def test_37_fuzz5_an_array_of_concurrencies_is_refused_by_name():
    import numpy as np
    import pytest

    from kvcalc import serve
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match=r"^concurrency: expected a finite number"):
        serve("llama-3-8b", "h100-sxm", input_len=512, output_len=64, concurrency=np.array([1, 2]))


def test_37_fuzz6_an_empty_host_is_refused_not_every_interface():
    """uvicorn binds '' to every interface: --host "$HOST" with HOST unset had opened the app to the network. The
    check is called itself, so that without it the test fails rather than starting a server (the review, 4)."""
    import pytest

    from kvcalc.cli.web_cmd import _check_listen
    from kvcalc.errors import KvcalcError

    for host in ("", "  "):
        with pytest.raises(KvcalcError, match=r"^--host: empty; give 127\.0\.0\.1 \(this machine only\) or 0\.0\.0\.0 "
                                              r"\(every interface\)$"):
            _check_listen(host, 0)


def test_37_fuzz7_a_5000_digit_flag_value_is_cut_in_the_message_and_gqa_of_it_is_no_traceback():
    digits = "1" * 5000
    xs = "x" * 5000
    for args in (["sweep", "-m", "llama-3-8b", "-b", digits],
                 ["estimate", "-m", "llama-3-8b", "--speculate", f"eagle,k={digits}"],
                 ["estimate", "-m", "llama-3-8b", "--attn", f"gqa{digits}"],
                 ["estimate", "-m", "llama-3-8b", "--speculate", f"eagle,alpha={xs}"],  # (the review, 3)
                 ["estimate", "-m", "llama-3-8b", "--speculate", xs],
                 ["estimate", "-m", "llama-3-8b", "--speculate", f"eagle,{xs}=1"],
                 ["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "-n", "4", "--dataset", xs],
                 ["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "-n", "4", "--emit", xs],
                 ["capacity", "-m", "llama-3-8b", "-c", "1024", "-e", "vllm", "--vllm-runner", xs]):
        out = _cli(*args)
        assert out.exit_code == 2 and len(out.output) < 200 and "characters)" in out.output, args
    assert "gqaN needs N" not in _cli("estimate", "-m", "llama-3-8b", "--attn", "gqa00000008").output  # 8 divides 32
    import pytest

    import kvcalc
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="^vllm_version: expected a release such as \"0.11\", got an integer of"):
        kvcalc.capacity("llama-3-8b", "h100-sxm", context=1024, engine="vllm", vllm_version=10**5000)
    with pytest.raises(KvcalcError, match="^on_combination: expected a function to call \\(or None\\), got int an "
                                          "integer of 16,610 bits$"):  # (the second reading of the change)
        kvcalc.sweep(["llama-3-8b"], ["h100-sxm"], on_combination=10**5000)


def test_37_trtllm1_the_newest_moe_table_that_yields_a_curve_is_taken(tmp_path):
    """aiconfigurator-core 0.12.0's TensorRT-LLM 1.3.0rc23 MoE folders hold shapes kvcalc fits no curve to, where
    1.3.0rc20's hold the gated experts; the fit had taken the newest folder whatever it held, and six profiles had
    no MoE curve. Two synthetic release folders: the newer holds non-gated rows only, the older gated ones."""
    from kvcalc.ledgers import kernel_tables as kt

    base = tmp_path / kt.TABLE_GPUS["h100-sxm"] / "moe" / kt.TABLE_ENGINES["trtllm"]
    for version in ("1.3.0rc20", "1.3.0rc23"):
        (base / version).mkdir(parents=True)
        (base / version / "moe_perf.parquet").write_bytes(b"")
    assert [p.parent.name for p in kt.tables_newest_first(tmp_path, "h100-sxm", "moe", "trtllm",
                                                          "moe_perf.parquet")] == ["1.3.0rc23", "1.3.0rc20"]
    # the bundled profiles: each of the six carries bf16, fp8 and fp8-block MoE curves from the rc20 tables
    import tomllib
    from pathlib import Path

    profiles = Path(__file__).parents[1] / "hardware_specs" / "profiles"
    for gpu in ("h100-sxm", "h200", "b200", "b300", "gb200", "gb300"):
        moe = tomllib.loads((profiles / f"{gpu}.trtllm.toml").read_text())["moe"]
        assert set(moe) == {"bf16", "fp8", "fp8_block"}, gpu
        assert all("/trtllm/1.3.0rc20/moe_perf.parquet" in c["fit"]["table"] for c in moe.values()), gpu
        assert all("nongated" not in c["fit"]["kernels"] for c in moe.values()), gpu  # (the review, 1)


def test_37_memory1_sglang_0_4_s_own_fraction_is_its_tp_ladder():
    """SGLang 0.4.x set mem_fraction_static by TP size (server_args.py __post_init__: 0.88 at TP 1, 0.85 from TP 4)
    until PR #7054 (merged 2025-06-10) derived it from reserved memory; the advice had said 0.835 for 0.4.4, which
    the memory ledger's ~0.4.4 row (PR #4760's log, 442,750 tokens) puts 5.6 % short where 0.88 is within 1.0 %."""
    from kvcalc.engines.memory import sglang_own_fraction
    from kvcalc.specs.catalog import load_gpu

    h100 = load_gpu("h100-sxm")
    assert sglang_own_fraction(h100, 1, engine_version="0.4.4") == 0.88
    assert sglang_own_fraction(h100, 4, engine_version="0.4.6.post5") == 0.85
    assert sglang_own_fraction(h100, 8, engine_version="0.4.3.post2") == 0.81
    # from 0.4.7 the reserved-memory rule, as the profiled release's
    assert sglang_own_fraction(h100, 1, engine_version="0.4.7") == sglang_own_fraction(h100, 1) != 0.88
    out = _cli("capacity", "-m", "llama-3.1-70b", "-c", "8192", "-g", "h100-sxm", "--tp", "4", "--engine", "sglang",
               "--engine-version", "0.4.4")
    assert "SGLang derives mem_fraction_static 0.85 for this GPU" in out.output


def test_37_agree2_compares_engine_count_is_a_replicas_on_the_rows_scale():
    """compare's note of the engine's own count had said "one group of 2 GPUs" of TP 2 x PP 2, per data-parallel
    group beside the row's total under --ep (64 where capacity says 512), and cited capacity under --speculate, which
    capacity does not take. Each count is now the one the cited command prints."""
    import warnings

    import kvcalc

    def note(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = kvcalc.compare(**kw)
        [said] = [w for w in rows[0]["warnings"] if "max_batch_at_context is kvcalc's memory rule" in w]
        return said, rows[0]["max_batch_at_context"]

    said, row = note(model="llama-3.1-70b", gpu="h100-sxm", tp=2, pp=2, context=8192, attn=["own"], engine="vllm")
    held = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, gpus=2, pp=2, engine="vllm")
    own = held["max_sequences_at_context"]
    assert f"a replica of 4 GPUs holds, at 8,192 tokens: own {own:,} (kvcalc's {row:,})" in said
    said, row = note(model="deepseek-v3", gpu="h200", ep=8, tp=1, context=8192, attn=["own"], engine="sglang")
    held = kvcalc.capacity("deepseek-v3", "h200", context=8192, ep=8, gpus=1, engine="sglang")
    assert held["max_sequences_at_context"] == 512 and row == 456
    assert "a replica of 8 GPUs holds, at 8,192 tokens: own 512 (kvcalc's 456)" in said
    said, _ = note(model="deepseek-v3", gpu="h200", tp=8, context=4096, batch=1, attn=["own"], engine="sglang",
                   speculate="mtp=1")
    assert "(`kvcalc serve -n max --speculate mtp=1 --engine sglang -f json`'s max_concurrency)" in said
    # and that command prints the count the note gives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        served = kvcalc.serve("deepseek-v3", "h200", tp=8, input_len=2048, output_len=2048, concurrency="max",
                              speculate="mtp=1", engine="sglang")
    assert f"own {served['max_concurrency']:,} (kvcalc's" in said


def test_37_agree4_own_is_not_skipped_and_a_scheduler_cap_is_what_binds():
    out = _cli("compare", "-m", "llama-3-8b", "--attn", "own,mqa")
    assert out.exit_code == 0 and "skipped" not in out.output
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = kvcalc.capacity("falcon-7b", "a10g", context=2048, engine="vllm", batch=300)
    assert c["max_sequences_at_context"] == 417 and not c["fits"] and c["hypothetical"]
    assert c["binding"].startswith("scheduler: the engine runs at most 256 at once")


def test_37_agree1_serves_mean_step_carries_its_tokens_per_second():
    """Every step streams one token to each decode in it, so output tokens/s = decode batch / mean step (Little's law
    on the steps). serve had reported the step with the mean prompt chunk smeared over every step, which touches
    every expert of a MoE model every step: 21.8 ms for gpt-oss-120b at 2 in flight beside 289 tokens/s from 2
    decodes (6.9 ms a step, the simulator's mean step). Now the step is the whole-prompt mix TPOT is timed with."""
    import warnings

    import kvcalc

    cases = [("gpt-oss-120b", "h100-sxm", 1, 8000, 512, 2, "vllm"),
             ("gpt-oss-120b", "h100-sxm", 1, 8000, 512, 16, "vllm"),
             ("deepseek-v3", "h200", 8, 4000, 500, 32, "sglang"),
             ("llama-3.1-8b", "h100-sxm", 1, 4000, 500, 32, "vllm")]
    for model, gpu, tp, i, o, n, engine in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = kvcalc.serve(model, gpu, tp=tp, input_len=i, output_len=o, concurrency=n, engine=engine)
        a = r["assumptions"]
        implied = a["decode_batch_per_replica"] / (a["step_ms"] / 1e3)
        assert abs(implied / r["output_tokens_per_s"] - 1) < 0.02, (model, n, implied, r["output_tokens_per_s"])
