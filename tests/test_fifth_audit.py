"""Regression tests for the fifth hostile audit (2026-12-05, from 21:30 UTC; docs/validation.md "Fifth hostile audit")
and the inconsistency left open by the third and fourth: each reproduces a finding with the numbers worked by hand or
against another command."""

import warnings

import pytest

import kvcalc


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_estimate_checks_its_memory_rule_against_the_named_engines():
    """Left by the third and fourth audits: `estimate --engine vllm` fits a batch by kvcalc's own memory rule, which
    capacity and serve under the same --engine do not (Llama-3.1-70B on 2 H100s at 2,048 tokens: kvcalc's rule holds
    16 sequences, vLLM's 7, SGLang's 11). estimate now says so, with capacity's own count."""
    for engine in ("vllm", "sglang"):
        held = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2,
                               engine=engine)["max_sequences_at_context"]
        mine = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2)["max_sequences_at_context"]
        assert held < mine == 16
        r = kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=mine, context=2048, tp=2, engine=engine)
        assert r.memory.fits  # kvcalc's rule, as documented
        [w] = [w for w in r.warnings if "would queue" in w]
        assert f"one group of 2 GPUs holds {held} sequences of 2,048 tokens, fewer than the 16 asked for" in w
        assert f"not by {engine}'s" in w
        # at the engine's own count there is nothing to say
        assert not any("would queue" in w for w in kvcalc.estimate(
            "llama-3.1-70b", "h100-sxm", batch=held, context=2048, tp=2, engine=engine).warnings)
    # the timing-only default (--engine auto) keeps kvcalc's rule, as serve's and capacity's defaults do
    assert not any("memory rule" in w for w in kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=16, context=2048,
                                                                tp=2).warnings)


def test_estimate_names_the_engines_count_where_its_own_rule_refuses():
    """TensorRT-LLM's rule holds 30 sequences of Llama-3.1-70B at 2,048 on 2 H100s where kvcalc's holds 16: estimate's
    does-not-fit warning gives the engine's count beside its own verdict."""
    held = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2,
                           engine="trtllm")["max_sequences_at_context"]
    r = kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=held, context=2048, tp=2, engine="trtllm")
    assert not r.memory.fits and held > 16
    [w] = [w for w in r.warnings if w.startswith("does not fit")]
    assert f"by trtllm's own memory rule (`kvcalc capacity --engine trtllm`) one group of 2 GPUs holds {held} " in w


def test_estimate_counts_the_engines_pool_per_data_parallel_group():
    """Under --ep each data-parallel group of tp GPUs has its own pool (capacity: max_concurrency x ep / tp):
    DeepSeek-V3 fp8 on 8 H200s at 8,192 tokens, vLLM holds capacity's count and not one more."""
    c = kvcalc.capacity("deepseek-v3", "h200", context=8192, ep=8, engine="vllm", weight_dtype="fp8")
    n, groups = c["max_sequences_at_context"], 8 // c["tensor_parallel"]
    def queues(batch):
        return [w for w in kvcalc.estimate("deepseek-v3", "h200", batch=batch, context=8192, ep=8, tp=1,
                                           engine="vllm", weight_dtype="fp8").warnings if "would queue" in w]
    assert not queues(n)
    [w] = queues(n + 1)
    assert f"holds {n // groups} sequences of 8,192 tokens, fewer than the {n // groups + 1} asked for per data-parallel" in w


def test_pcie_servers_own_profiles_time_nccl_all_reduce_where_vllm_and_sglang_run_it():
    """F1: the L40S's and RTX PRO 6000's own vLLM and SGLang profiles timed TP 4 and 8 all-reduces with the custom
    kernel's table, which those engines switch off on more than two PCIe-only GPUs (engines/links.py), so an L40S
    at TP 4 was 32 % slower than the L4 beside it on the same PCIe 4.0 link, and 31 % faster at TP 8. They now take
    NCCL's all-reduce measured on the same server (the figures links.py's NCCL_PCIE_ALLREDUCE holds).
    Qwen3-32B prefill of 4,000 tokens: 64 layers x 2 all-reduces of 4,000 x 5,120 x 2 bytes, a ring moving
    2 (n - 1) / n of it at NCCL's bus bandwidth (5.02 GB/s at TP 4, 1.419 at TP 8) after its t0."""
    from kvcalc.engines.links import NCCL_PCIE_ALLREDUCE
    from kvcalc.specs.catalog import resolve_engine, load_gpu

    for gpu, key in (("l40s", "l40s"), ("rtx-pro-6000", "rtx-pro-6000")):
        for engine in ("vllm", "sglang"):
            curves = resolve_engine(engine, load_gpu(gpu)).allreduce
            for tp in ("tp4", "tp8"):
                assert (curves[tp].t0_us, curves[tp].bus_bandwidth_GBps) == NCCL_PCIE_ALLREDUCE[key][tp]
                assert curves[tp].fit.kernels == "NCCL"
            assert curves["tp2"].fit.kernels != "NCCL"  # two cards keep the engine's custom kernel
    message = 4000 * 5120 * 2
    for tp, (t0, bus) in ((4, (11.23, 5.02)), (8, (22.14, 1.419))):
        hand_ms = 128 * (t0 * 1e-6 + 2 * (tp - 1) / tp * message / (bus * 1e9)) * 1e3
        for gpu in ("l40s", "l4"):
            got = kvcalc.estimate("qwen3-32b", gpu, tp=tp, context=4000, engine="vllm").prefill.allreduce_ms
            assert got == pytest.approx(hand_ms, rel=2e-3)


@pytest.mark.parametrize("max_window_layers, full_layers", [(28, 28), (20, 20), (0, 0)])
def test_qwen2_slides_only_from_max_window_layers(tmp_path, max_window_layers, full_layers):
    """F2: a Qwen2 config with use_sliding_window true and no layer_types was read with every layer sliding, where
    transformers' Qwen2Config makes layer i slide only when i >= max_window_layers: with 28 of 28 no layer slides,
    and the KV cache at 32,768 tokens was 8x short. Qwen2-7B's shape (28 layers, 4 KV heads of 128), window 4,096:
    full layers x 2 x 4 x 128 x 2 B x 32,768 + sliding layers x the same at 4,096."""
    import json

    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
              "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
              "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": True,
              "sliding_window": 4096, "max_window_layers": max_window_layers}
    (tmp_path / "config.json").write_text(json.dumps(config))
    r = kvcalc.estimate(str(tmp_path / "config.json"), "h100-sxm", context=32768, engine="roofline")
    per_token_layer = 2 * 4 * 128 * 2
    hand = per_token_layer * (full_layers * 32768 + (28 - full_layers) * 4096)
    assert r.kv_cache.bytes_per_sequence == hand  # 1,879,048,192 / 1,409,286,144 / 234,881,024


# ---- part 1 of the audit: inputs, messages and the process -----------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

from kvcalc.cli import app  # noqa: E402

runner = CliRunner()


def one_line_error(args: list[str]) -> str:
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvcalc: error: "), out.output
    return lines[0]


SIM = ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "--simulate", "--num-prompts", "20"]


@pytest.mark.parametrize("extra, flag", [
    (["--arrivals", "closed", "-n", "4", "--request-rate", "nan"], "--request-rate"),
    (["--arrivals", "poisson", "--request-rate", "20", "-n", "0.5"], "--concurrency"),  # a cap is whole requests
    (["--arrivals", "burst", "--request-rate", "10", "-n", "inf"], "--concurrency (the burst size)"),
    (["--arrivals", "burst", "--request-rate", "10", "-n", "0.5"], "--concurrency (the burst size)"),  # ZeroDivision
    (["--arrivals", "burst", "--request-rate", "10", "-n", "-5"], "--concurrency (the burst size)"),
    (["--arrivals", "burst", "--request-rate", "10", "-n", "0"], "--concurrency (the burst size)"),  # had become 8
    (["--arrivals", "waves", "--request-rate", "10"], "--arrivals waves"),  # had named --arrivals closed
])
def test_simulate_refuses_flags_its_arrivals_do_not_read(extra, flag):
    """F1-F2 of part 1: `--simulate --arrivals poisson --request-rate 20 -n 1` dropped -n (TTFT p50 29 ms with 46
    requests running, where one in flight makes the median request wait about 144 s); burst took -n unchecked as its
    group size (inf, 0.5 and -5 were tracebacks, 1e9 an 8 GB array, 0 became 8)."""
    assert one_line_error(SIM + extra).startswith(f"kvcalc: error: {flag}")


def test_simulate_holds_a_poisson_run_to_n_in_flight():
    """-n with --request-rate had been dropped (46 running where one was asked), then refused; it is now the cap on
    requests in flight, as vllm bench serve --max-concurrency (the twenty-eighth audit, S3)."""
    import json

    for extra in (["--arrivals", "poisson", "--request-rate", "20", "-n", "1"], ["-n", "4", "--request-rate", "2"]):
        out = runner.invoke(app, SIM + extra + ["-f", "json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["max_running"] <= int(extra[extra.index("-n") + 1])
        assert "in flight" in json.loads(out.stdout)["arrivals"]


def test_simulate_still_runs_bursts_of_n():
    out = runner.invoke(app, SIM + ["--arrivals", "burst", "--request-rate", "10", "-n", "4", "-f", "json"])
    assert out.exit_code == 0, out.output


def test_numbers_past_pythons_digit_limit_are_one_line(tmp_path):
    """F3: integers of more than 4,300 digits were Python's ValueError traceback in spec files, profiles, traces and
    benchmark results, and config.json's message told the user to call sys.set_int_max_str_digits()."""
    big = "9" * 5000
    (tmp_path / "m.yaml").write_text(f"name: x\nnum_layers: {big}\n")
    (tmp_path / "g.toml").write_text(f'name = "x"\nmemory_GiB = {big}\n')
    (tmp_path / "t.jsonl").write_text(f'{{"arrival_s": 0, "input_len": {big}, "output_len": 5}}\n')
    (tmp_path / "b.json").write_text(f'{{"max_concurrency": {big}}}')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(f'{{"model_type": "llama", "hidden_size": {big}}}')
    for args in (["estimate", "-m", str(tmp_path / "m.yaml")], ["show", "gpu", str(tmp_path / "g.toml")],
                 ["serve", "-m", "llama-3-8b", "--simulate", "--arrivals", "trace", "--trace", str(tmp_path / "t.jsonl")],
                 ["calibrate", "--from-benchmark", str(tmp_path / "b.json"), "-m", "llama-3.2-1b", "-g", "l40s", "-o",
                  str(tmp_path / "o.toml")],
                 ["estimate", "-m", str(tmp_path / "c" / "config.json")]):
        line = one_line_error(args)
        assert "an integer of more than 4,300 digits" in line and "set_int_max_str_digits" not in line


def test_a_deeply_nested_benchmark_file_is_one_line(tmp_path):
    """F5: 50,000 opening brackets were a RecursionError traceback."""
    (tmp_path / "deep.json").write_text("[" * 50000)
    line = one_line_error(["calibrate", "--from-benchmark", str(tmp_path / "deep.json"), "-m", "llama-3.2-1b", "-g",
                           "l40s", "-o", str(tmp_path / "o.toml")])
    assert "nested too deeply" in line


@pytest.mark.parametrize("total", ["-1", "9" * 400])
def test_a_checkpoint_index_total_outside_reason_is_one_line(tmp_path, total):
    """F4: metadata.total_size 0 or of 400 digits took the index's fast path unchecked: ZeroDivisionError and
    OverflowError in estimate, import and serve. (0 is a placeholder some repositories write: since the thirty-fourth
    audit it is said and not compared, test_34_config5.)"""
    import json

    config = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors.index.json").write_text(f'{{"metadata": {{"total_size": {total}}}, "weight_map": {{}}}}')
    assert "metadata.total_size: expected a positive number of bytes" in one_line_error(
        ["estimate", "-m", str(tmp_path)])


def test_ledgers_with_nothing_to_score_or_overflowing_lengths(tmp_path):
    """F6: a published ledger whose rows are all excluded was an IndexError in the table printer; F7: a serving
    ledger's input_len of 1e400 an OverflowError."""
    pub = tmp_path / "pub.csv"
    pub.write_text("id,engine,engine_version,gpu,model,weight_dtype,kv_dtype,tp,metric,batch,input_len,output_len,"
                   "measured,use,source\ngf-05,gpt-fast,2023-12,a100-sxm-80gb,llama-2-70b,int4,bf16,1,"
                   "decode_tokens_per_s,1,5,200,25.25,excluded: group size 32,gpt-fast README\n")
    out = runner.invoke(app, ["validate", "--published", str(pub)])
    assert out.exit_code == 0 and "no rows" in out.output, out.output
    header = ("id,engine,engine_version,model,gpu,tp,pp,ep,dp_attention,weight_dtype,kv_dtype,dataset,input_len,"
              "output_len,range_ratio,num_prompts,concurrency,request_rate,output_tokens_per_s,request_throughput,"
              "median_ttft_ms,p99_ttft_ms,median_tpot_ms,p99_tpot_ms,median_itl_ms,publisher,source,note,server_args")
    serve = tmp_path / "serve.csv"
    serve.write_text(header + "\nsv-1,vllm,0.11.0,llama-3-8b,h100-sxm,1,1,1,0,bf16,bf16,random,1e400,800,1,500,8,,"
                     "164.1,0.2,3967.1,4018.3,43.4,46.3,43.4,x,https://example.org,,\n")
    assert "line 2, column input_len: expected a positive number" in one_line_error(["validate", "--serve", str(serve)])


def test_release_flags_that_contradict_are_refused():
    """F8: `--engine-version 0.6.3 --vllm-version 0.30.1` timed 0.6.3's overhead in 0.30's pool, and
    `--engine-version v2 --vllm-runner v0` ran a runner vLLM removed in 0.11.0, both silently."""
    base = ["capacity", "-m", "llama-3.1-70b", "--tp", "2", "-c", "8192", "-e", "vllm"]
    assert "they name different vLLM releases" in one_line_error(
        base + ["--engine-version", "0.6.3", "--vllm-version", "0.30.1"])
    assert "removed its V0 engine in 0.11.0" in one_line_error(base + ["--engine-version", "v2", "--vllm-runner", "v0"])
    for agree in (["--engine-version", "v1", "--vllm-version", "0.19"], ["--engine-version", "0.6.3", "--vllm-runner",
                                                                          "v0"]):
        assert runner.invoke(app, base + agree + ["-f", "json"]).exit_code == 0


@pytest.mark.parametrize("args, flag", [
    (["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "\u0663"], "--concurrency"),
    (["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "8", "--tp", "\uff12"], "--tp"),
    (["sweep", "-m", "llama-3-8b", "-b", "1,\u0663", "-c", "1024"], "--batch"),
    (["estimate", "-m", "llama-3-8b", "--attn", "gqa\uff12"], "--attn"),
    (["estimate", "-m", "llama-3-8b", "--speculate", "eagle,k=\u0663"], "--speculate"),
    (["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "8", "--disaggregate", "\u0663:1"],
     "--disaggregate"),
    (["plan", "-m", "llama-3-8b", "-g", "h100-sxm", "-i", "100", "-o", "10", "--concurrency", "8",
      "--price-per-gpu-hour", "h100-sxm=\u0663"], "--price-per-gpu-hour"),
    (SIM + ["-n", "4", "--percentile", "\u06630"], "--percentile"),
])
def test_numbers_in_other_scripts_digits_are_refused(args, flag):
    """F10: kvcalc's own option parsers took Arabic-Indic and full-width digits (Python's int() and float() do),
    where the typer-parsed options and --engine-version refuse them."""
    assert one_line_error(args).startswith(f"kvcalc: error: {flag}")


def test_messages_name_the_flag_and_the_deployment(tmp_path):
    """F9: serve --ep 8 named '1 h100-sxm' and --tp alone; roofline --measured and validate --rescore errors named
    the file but not the flag, and a blank path printed 'kvcalc: error:  : cannot read'; F12: validate --published
    --plot wrote nothing and said nothing."""
    line = one_line_error(["serve", "-m", "deepseek-v3", "--ep", "8", "-i", "1000", "--output-len", "100", "-n", "8"])
    assert "deepseek-v3 on 8 h100-sxm (--ep 8" in line
    assert one_line_error(["roofline", "-m", "llama-3-8b", "--measured", " ", "-o", str(tmp_path / "x.png")]).startswith(
        "kvcalc: error: --measured: ' ': an empty path")
    assert one_line_error(["validate", "--rescore", str(tmp_path / "none.csv"), "-g", "h100-sxm"]).startswith(
        "kvcalc: error: --rescore: ")
    assert one_line_error(["validate", "--published", str(tmp_path / "x.csv"), "--plot", str(tmp_path / "p.png")]
                          ).startswith("kvcalc: error: --plot: only when measuring")


def test_web_names_a_taken_port():
    """F11: a port in use ended in uvicorn's own ERROR line and exit 3."""
    import socket

    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert one_line_error(["web", "--port", str(port)]).startswith(f"kvcalc: error: --port: cannot listen on "
                                                                       f"127.0.0.1:{port}")


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "chatglm", "gpt2"])
def test_a_latent_kv_is_refused_in_every_family_read_as_standard_attention(tmp_path, model_type):
    """F13: kv_lora_rank was refused for Llama but silently ignored for Mixtral, Qwen2-MoE, ChatGLM and GPT-2, which
    were then sized as standard attention."""
    import json

    config = {"model_type": model_type, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "kv_lora_rank": 512,
              "num_local_experts": 8, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 1408,
              "n_embd": 4096, "n_layer": 32, "n_head": 32, "num_layers": 32, "ffn_hidden_size": 13696,
              "multi_query_group_num": 2, "padded_vocab_size": 65024, "kv_channels": 128, "seq_length": 8192,
              "n_positions": 1024}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert "kv_lora_rank: a latent (MLA) KV" in one_line_error(["estimate", "-m", str(tmp_path / "config.json")])


# ---- part 3 of the audit: commands against each other ----------------------------------------------------------


def test_compare_times_speculation_under_ep_and_pp_as_estimate_does():
    """Part 3, F3: compare --speculate timed speculation as if --ep and --pp were not set: Qwen3-30B-A3B on 4 L40S,
    --ep 8, eagle k=4 at 32 x 32,768 printed 41.5 ms a token (x1.29), where estimate prints 116.4 ms (x0.62), and its
    own decode_ms (72.1, the --ep figure) over 41.5 is not 1.29."""
    kw = dict(speculate="eagle,k=4,alpha=0.6", batch=32, context=32768, weight_dtype="fp8")
    for layout in (dict(tp=4, ep=8), dict(tp=2, pp=2)):
        [row] = kvcalc.compare("qwen3-30b-a3b", attn=(None,), gpu="l40s", **kw, **layout)
        e = kvcalc.estimate("qwen3-30b-a3b", "l40s", **kw, **layout).speculative
        assert row["speculative_ms_per_token"] == pytest.approx(e.ms_per_token, rel=1e-12)
        assert row["speculative_speedup"] == pytest.approx(e.speedup, rel=1e-12)
        assert row["speculative_breakeven_batch"] == e.breakeven_batch
    assert e.ms_per_token != pytest.approx(41.48, rel=0.05)  # the figure without the layout


def test_the_steady_state_under_pp_waits_for_its_micro_batch():
    """Part 3, F2: the staggered closed form left the pipeline's wait out, so Qwen3-32B on H200s with 8 in flight
    (1,000 in / 200 out, TensorRT-LLM) had a TTFT at --pp 4 below its own at --pp 1. The engines form a prompt's
    micro-batch when it arrives; it waits for the micro-batch in the first stage, other requests' decodes, to leave
    it: half its stage-time, 1 / (2 pp) of a decode micro-batch's depth where decodes run beside it (the thirty-eighth
    audit, Serve 1: (m - 1) / (2 pp) of the prompt's own step had put the closed form 33 % over the simulator, which
    forms micro-batches as the engines do). A long closed loop of drawn lengths in the simulator gives p50 TTFTs of
    94.5 and 94.6 ms at pp 2 and 4; the closed form 96.3 and 93.6."""
    from kvcalc.formulas.workload import steady_pipeline_lag

    assert steady_pipeline_lag(7, 4) == 1 / 8 and steady_pipeline_lag(0.4, 4) == pytest.approx(0.4 / 8)
    assert steady_pipeline_lag(1, 2) == 1 / 4 and steady_pipeline_lag(7, 1) == 0.0 and steady_pipeline_lag(0, 4) == 0
    kw = dict(input_len=1000, output_len=200, concurrency=8, engine="trtllm")
    ttft = [kvcalc.serve("qwen3-32b", "h200", pp=pp, **kw)["ttft_ms"] for pp in (1, 2, 4)]
    assert ttft[0] < ttft[1] and ttft[0] < ttft[2]  # the wait (and the sends) on top of its micro-batch's prefill
    for pp, closed in ((2, ttft[1]), (4, ttft[2])):
        sim = kvcalc.simulate("qwen3-32b", "h200", pp=pp, arrivals="closed", num_prompts=1500, range_ratio=0.3, **kw)
        assert closed == pytest.approx(sim["ttft_ms"]["p50"], rel=0.03), pp


@pytest.mark.slow
def test_plan_shows_the_percentile_it_judged_the_limits_at(tmp_path):
    """Part 3, F4: `plan --percentile p90` printed the steady state's 17.1 ms TTFT where the simulated p90 it judged
    the limit at is 1,091 ms (4 sequences at 2 requests/s of 1.54 s each run 77 % busy); the table and CSV now carry
    the simulator's figures beside the steady state's."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    args = ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "300", "--request-rate", "2",
            "--max-ttft-ms", "2000", "--percentile", "p90", "--no-disaggregate"]
    import json

    result = json.loads(CliRunner().invoke(app, args + ["-f", "json"]).stdout)
    simulated = result["choice"]["simulated"]["ttft_ms"]
    # (with its pool's seats since the ninth round's P5, the p90 is no longer 20x the steady state's median)
    assert simulated != pytest.approx(result["choice"]["ttft_ms"], rel=1e-3)
    import csv
    import io

    choice = next(csv.DictReader(io.StringIO(CliRunner().invoke(app, args + ["-f", "csv"]).stdout)))
    assert choice["rank"] == "choice" and float(choice["sim TTFT ms"]) == pytest.approx(simulated)


def test_simulated_json_carries_its_warnings():
    """Part 3, minor: `serve --simulate --format json` had no warnings where serve's closed form carries them (the
    vLLM pipeline-plus-speculation warning went to stderr only)."""
    r = kvcalc.simulate("llama-3.1-8b", "h100-sxm", input_len=100, output_len=10, arrivals="closed", concurrency=4,
                        num_prompts=8, pp=2, speculate="eagle,k=3", engine="vllm")
    assert any("vLLM does not start speculative decoding under pipeline parallelism" in w for w in r["warnings"])
    assert kvcalc.simulate("llama-3.1-8b", "h100-sxm", input_len=100, output_len=10, arrivals="closed",
                           concurrency=4, num_prompts=8, engine="roofline")["warnings"] == []


# ---- the verification pass over these fixes ---------------------------------------------------------------------


def test_one_request_in_flight_waits_for_no_micro_batch():
    """The pipeline wait first counted a lone request's own decode as a second micro-batch: Gemma-3-27B, 8,000 tokens,
    one in flight on H100s, TTFT 708.2 ms at pp 2 where pp 1 gives 568.9 and the simulator 567.9. Nothing shares a
    lone prompt's step, so there is no wait (the pipeline sends only)."""
    kw = dict(input_len=8000, output_len=200, concurrency=1, engine="vllm")
    one = kvcalc.serve("gemma-3-27b", "h100-sxm", **kw)["ttft_ms"]
    for pp in (2, 4):
        assert kvcalc.serve("gemma-3-27b", "h100-sxm", pp=pp, **kw)["ttft_ms"] == pytest.approx(one, rel=0.005)


def test_verification_pass_messages_and_release_bands(tmp_path):
    """A band's runner check takes the release its pool is sized at (v1's newest, 0.28, has no V0 runner); a
    simulation with neither -n nor --request-rate names both; a checkpoint index without total_size says so; an
    empty --host is refused (it had been every interface, as uvicorn takes it, until the thirty-seventh audit, fuzz 6:
    an unset $HOST opened the app to the network); plan keeps its $/h column without prices."""
    assert "the release named is 0.28" in one_line_error(
        ["capacity", "-m", "llama-3.1-70b", "--tp", "2", "-c", "8192", "-e", "vllm", "--engine-version", "v1",
         "--vllm-runner", "v0"])
    assert one_line_error(SIM) == ("kvcalc: error: --simulate: give -n/--concurrency (a closed loop) or "
                                   "--request-rate (Poisson arrivals)")
    import json

    config = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {}, "weight_map": {}}')
    assert "metadata.total_size: absent" in one_line_error(["estimate", "-m", str(tmp_path)])  # (H10: "got None")
    from kvcalc.cli.web_cmd import _check_listen
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="--host: empty; give 127.0.0.1"):
        _check_listen("", 0)
    # a closed loop's median TTFT is simulated too, as a request rate's is (the twenty-eighth audit, plan 1; the
    # thirtieth, plan 1: a choice planned at 87.5 ms had run at 1,176)
    out = runner.invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "300",
                              "--concurrency", "8", "--max-ttft-ms", "2000", "--no-disaggregate"],
                        env={"COLUMNS": "200"})
    assert "$/h" in out.output and "sim TTFT" in out.output


def test_qwen_vl_text_configs_slide_from_max_window_layers(tmp_path):
    """The verification pass: qwen2_vl and qwen2_5_vl_text configs slid every layer under use_sliding_window, as the
    Qwen2 rule had (transformers builds their layer_types from max_window_layers alike)."""
    import json

    for model_type in ("qwen2_vl", "qwen2_5_vl_text"):
        config = {"model_type": model_type, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                  "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                  "max_position_embeddings": 32768, "use_sliding_window": True, "sliding_window": 4096,
                  "max_window_layers": 28}
        (tmp_path / "config.json").write_text(json.dumps(config))
        r = kvcalc.estimate(str(tmp_path / "config.json"), "h100-sxm", context=32768, engine="roofline")
        assert r.kv_cache.bytes_per_sequence == 28 * 2 * 4 * 128 * 2 * 32768  # 1,879,048,192: no layer slides
