"""Regression tests for the third hostile audit (2026-12-05, 16:35-17:45 UTC; docs/validation.md "Third hostile
audit"): each reproduces a finding with the numbers worked by hand or against another command."""

import json

import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.formulas.parallel import sequence_bytes_per_gpu, shard_op, state_shard_fraction
from kvcalc.specs.catalog import load_model

runner = CliRunner()


def _json(args: list[str]) -> dict:
    out = runner.invoke(app, [*args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_requests_past_the_pool_wait_in_the_queue():
    """serve -n 128 where the pool holds 16 at full length: the engine runs 16 and the rest queue. Qwen3-32B keeps
    64 layers x 8 KV heads x 128 x 2 (K, V) x 2 B = 262,144 B a token, 655 MB a request of 2,500 tokens; 128 of them
    would need 84 GB. The answer is -n 16's steady state with (128 - 16) / (requests/s) more TTFT (Little's law). It
    had printed 2.8x the throughput and a TTFT 550x short (the simulator: 473 tokens/s, p50 TTFT 122 s)."""
    base = ["serve", "-m", "qwen3-32b", "-g", "h100", "--engine", "sglang", "-i", "2000", "--output-len", "500"]
    full, held = _json([*base, "-n", "128"]), _json([*base, "-n", "16"])
    assert full["max_concurrency"] == 16
    assert full["output_tokens_per_s"] == pytest.approx(held["output_tokens_per_s"], rel=1e-9)
    wait_ms = (128 - 16) / held["requests_per_s"] * 1e3
    assert full["ttft_ms"] == pytest.approx(held["ttft_ms"] + wait_ms, rel=1e-9)
    assert 100_000 < full["ttft_ms"] < 140_000 and 440 < full["output_tokens_per_s"] < 520
    assert any("wait in the queue" in w for w in full["warnings"])


def test_past_the_pool_throughput_does_not_rise():
    """The verification pass: counting the requests the pool holds at their average length, -n 16 on an L40S
    (Llama-3.1-8B, 8,192 + 8,192 tokens, 12 at full length) had served more than -n 12, where the simulator's
    preemptions make it serve less (0.017 against 0.029 requests/s): past the full-length count nothing rises."""
    base = ["serve", "-m", "llama-3.1-8b", "-g", "l40s", "-i", "8192", "--output-len", "8192"]
    at = {n: _json([*base, "-n", str(n)]) for n in (12, 16, 24)}
    assert at[12]["max_concurrency"] == 12
    assert at[16]["requests_per_s"] == at[24]["requests_per_s"] == pytest.approx(at[12]["requests_per_s"], rel=1e-12)
    assert at[12]["ttft_ms"] < at[16]["ttft_ms"] < at[24]["ttft_ms"]


def test_a_wave_larger_than_the_pool_is_refused():
    out = runner.invoke(app, ["serve", "-m", "qwen3-32b", "-g", "h100", "--engine", "sglang", "-i", "2000",
                              "--output-len", "500", "-n", "128", "--arrivals", "waves"])
    assert out.exit_code == 2 and "--concurrency" in out.output and "the 16 " in out.output
    assert "Traceback" not in out.output


def test_a_hybrids_linear_state_is_split_by_its_own_heads():
    """Qwen3-Next-80B at TP 8: its 12 softmax layers keep 2 KV heads (2 x 2 x 256 x 2 B = 2,048 B a token and layer,
    half a GPU's each at TP 8); its 36 Gated DeltaNet layers keep 32 value heads x 128 x 128 state plus the last 3
    conv inputs of 16 x 128 x 2 + 32 x 128 = 8,192 channels, in bf16, split over 8 GPUs by those heads. At 128
    tokens: 12 x 128 x 2,048 / 2 + 36 x (524,288 + 24,576) x 2 / 8 = 1,572,864 + 4,939,776 = 6,512,640 B a GPU (the
    state had been split as the 2 KV heads: 21.3 MB, 3.3x; vLLM's rule had it right)."""
    spec = load_model("qwen3-next-80b-a3b")
    assert state_shard_fraction(spec, 8) == 1 / 8
    assert sequence_bytes_per_gpu(spec, 128, 2.0, tp=8) == 12 * 128 * 2048 / 2 + 36 * (524_288 + 24_576) * 2 / 8
    with pytest.warns(UserWarning, match="max_position_embeddings"):
        kvcalc_rule = kvcalc.capacity("qwen3-next-80b-a3b", "h100-sxm", context=128, gpus=8)
        # vLLM 0.27's one state a request (0.28 keeps two: test_33_attention2)
        vllm_rule = kvcalc.capacity("qwen3-next-80b-a3b", "h100-sxm", context=128, gpus=8, engine="vllm",
                                    vllm_version="0.27")
    ours, theirs = kvcalc_rule["max_sequences_at_context"], vllm_rule["max_sequences_at_context"]
    assert ours > theirs > 0.8 * ours  # the same state a GPU; vLLM's peak and blocks take a little more


def test_the_state_operator_reads_a_gpus_share_of_the_state():
    from kvcalc.estimator import precision
    from kvcalc.formulas.forward import decode_ops

    spec = load_model("qwen3-next-80b-a3b")
    op = next(o for o in decode_ops(spec, 64, 128, precision("bf16", "bf16")) if o.name == "linear_attention/state")
    assert shard_op(op, spec, 8).cost.kv_read_bytes == pytest.approx(op.cost.kv_read_bytes / 8, rel=1e-12)


def test_a_lone_prompt_past_the_budget_is_timed_as_its_pieces():
    """serve -i 9000 --output-len 1 -n 1 with an 8,192-token budget: one request alone, the same in every mode. It
    had timed two full 8,192-token steps (394 ms) where the waves, the simulator (220 ms) and estimate's prefill
    (216 ms) time 9,000 tokens."""
    base = ["serve", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-e", "trtllm", "-i", "9000", "--output-len", "1",
            "-n", "1"]
    staggered, waves = _json(base), _json([*base, "--arrivals", "waves"])
    prefill = _json(["estimate", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-e", "trtllm", "-c", "9000"])["prefill"]["ms"]
    assert staggered["ttft_ms"] == pytest.approx(waves["ttft_ms"], rel=0.03)
    assert prefill < staggered["ttft_ms"] < 1.1 * prefill


def test_expert_parallel_waves_time_each_replicas_last_piece():
    """--ep 8, one request a replica: past 8,192 tokens a replica's last step holds 808 tokens of its own; it had
    been timed as the group's 6,464 (TTFT 1,620 -> 2,865 -> 3,378 ms at 8,192 / 9,000 / 16,384 tokens)."""
    base = ["serve", "-m", "qwen3-30b-a3b", "-g", "h100-pcie", "-e", "trtllm", "--ep", "8", "-n", "8",
            "--output-len", "2", "--arrivals", "waves"]
    t = {i: _json([*base, "-i", str(i)])["ttft_ms"] for i in (8192, 9000, 16384)}
    assert t[8192] < t[9000] < t[16384]
    assert t[9000] - t[8192] < 0.5 * (t[16384] - t[9000])  # 808 more tokens cost less than 7,384 more
    sim = _json(["serve", *base[1:-2], "-i", "9000", "--simulate", "--arrivals", "closed", "--num-prompts", "8"])
    assert t[9000] == pytest.approx(sim["ttft_ms"]["p50"], rel=0.1)


def test_plan_times_a_replica_where_it_carries_the_rate():
    """20 requests/s of 1,000 + 1,000 tokens on H200s under TensorRT-LLM: plan buys the GPUs serve needs at that rate
    within TTFT 1 s and TPOT 40 ms; it had timed 512 (18.1/s) and 1,024 in flight (TPOT 45.8 ms) and bought two GPUs
    where serve's one replica carried the rate. Since the thirty-seventh audit gave the H200's TensorRT-LLM profile
    its measured MoE curves (the experts had run at the datasheet roofline), one GPU no longer carries 20 requests/s:
    serve runs two replicas of one GPU, and plan two GPUs (TP 2)."""
    limits = dict(input_len=1000, output_len=1000, request_rate=20, max_ttft_ms=1000, max_tpot_ms=40)
    out = kvcalc.plan("qwen3-30b-a3b", gpus=["h200"], engines=["trtllm"], disaggregated=False, speculate=False,
                      **limits)
    choice = out["choice"]
    assert choice["requests_per_s"] >= 20 and choice["tpot_ms"] <= 40
    served = kvcalc.serve("qwen3-30b-a3b", "h200", input_len=1000, output_len=1000, request_rate=20,
                          engine="trtllm", weight_dtype=choice["weight_dtype"], kv_dtype=choice["kv_dtype"])
    assert served["tpot_ms"] <= 40 and choice["gpus"] == served["replicas"] * served["tensor_parallel"] == 2


def test_plan_never_pairs_vllm_pipeline_parallelism_with_speculation():
    """vLLM's MTP under --pipeline-parallel-size > 1 fails (vllm-project/vllm #49355, #52069; recipes #875); SGLang's
    server_args refuses it outside disaggregated prefill (the sixth audit: plan had chosen SGLang TP2xPP2+mtp)."""
    from kvcalc.planning.plan import deployments
    from kvcalc.specs.catalog import load_gpu

    found = deployments(load_model("deepseek-v3"), [load_gpu("h100-sxm")], ["vllm", "sglang"], convert=False,
                        max_gpus=16, disaggregated=False, speculate=True)
    assert any(d.pp > 1 and d.engine == "sglang" for d in found)
    assert not any(d.speculate and d.pp > 1 and d.engine in ("vllm", "sglang") for d in found)
    assert any(d.speculate and d.engine == "vllm" for d in found) and any(d.speculate and d.engine == "sglang"
                                                                          for d in found)


def test_a_small_prefill_chunk_says_the_time_leaves_its_weight_reads_out():
    """--prefill-chunk 16 on a 32,768-token prompt: 2,048 chunks, each re-reading Llama-3.1-8B's 16 GB of weights
    (9.8 s at 3.35 TB/s) that the one-pass prefill (0.95 s) leaves out; the default chunk says nothing."""
    small = kvcalc.estimate("llama-3.1-8b", "h100-sxm", context=32768, engine="roofline", prefill_chunk=16)
    assert any("--prefill-chunk 16" in w and "serve --step-tokens 16" in w for w in small.warnings)
    default = kvcalc.estimate("llama-3.1-8b", "h100-sxm", batch=8, context=4096, engine="roofline")
    assert not any("--prefill-chunk" in w for w in default.warnings)


def test_the_simulation_takes_the_cuda_graph_memory_and_checks_it():
    """serve --simulate had ignored --cuda-graph-memory (and --flashinfer-sampler) and skipped their checks. 10 GiB set
    aside leaves the pool 10 GiB smaller: 10 x 2^30 / 131,072 B a token (Llama-3-8B: 32 layers x 8 KV heads x 128 x
    2 x 2 B) = 81,920 tokens fewer, in 16-token blocks."""
    base = ["serve", "-m", "llama-3-8b", "-i", "1024", "--output-len", "128", "-e", "vllm", "--simulate",
            "--request-rate", "4", "--num-prompts", "50"]
    zero, ten = (_json([*base, "--cuda-graph-memory", g])["kv_pool_tokens"] for g in ("0", "10"))
    assert zero - ten == pytest.approx(10 * 2**30 / 131_072, abs=16)
    bad = runner.invoke(app, [*base, "--cuda-graph-memory", "nan"])
    assert bad.exit_code == 2 and "--cuda-graph-memory" in bad.output


def test_a_simulation_that_would_run_for_hours_is_refused():
    out = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "8000", "--output-len", "1", "--simulate",
                              "--num-prompts", "20000", "--step-tokens", "1", "--request-rate", "1000",
                              "--max-num-seqs", "1"])  # vLLM refuses a step budget below max_num_seqs
    assert out.exit_code == 2 and "--step-tokens" in out.output and "160,020,000 steps" in out.output


def test_requests_refused_for_their_length_are_said_in_the_table_too():
    out = runner.invoke(app, ["serve", "-m", "llama-3-8b", "--simulate", "--range-ratio", "0.9", "--request-rate", "2",
                              "--num-prompts", "200", "-i", "7000", "--output-len", "1000"])
    assert out.exit_code == 0 and "requests are longer than the model's context of 8,192 tokens" in out.output


@pytest.mark.parametrize("flag, ledger", [("--engine-memory", "validation/engine-memory/vllm.csv"),
                                          ("--serve", "validation/serve/trtllm-perf-overview.csv")])
def test_a_ledger_with_a_byte_order_mark_reads(tmp_path, flag, ledger):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (root / ledger).read_bytes())
    plain = runner.invoke(app, ["validate", flag, str(root / ledger), "-f", "json"])
    bom = runner.invoke(app, ["validate", flag, str(path), "-f", "json"])
    assert bom.exit_code == plain.exit_code == 0, bom.output
    assert json.loads(bom.stdout) == json.loads(plain.stdout.replace(str(root / ledger), str(path)))


@pytest.mark.parametrize("args, flag", [
    (["plan", "-m", "llama-3.1-8b", "-i", "100", "-o", "100", "-n", "8", "--emit", "vllm", "-f", "csv"], "--emit"),
    (["plan", "-m", "llama-3.1-8b", "-i", "100", "-o", "100", "-n", "8", "--engines", ""], "--engines"),
    (["plan", "-m", "llama-3.1-8b", "-i", "100", "-o", "100", "-n", "8", "--price-per-gpu-hour",
      "h100-sxm=3,h100-sxm=4"], "--price-per-gpu-hour"),
    (["estimate", "-m", "llama-3.1-8b", "--speculate", "eagle,k=4,k=5"], "--speculate"),
    (["sweep", "-m", "llama-3-8b", "--tp", "1,,2"], "--tp"),
    (["profiles", "fit-e2e", "-g", "h100-sxm", "--published", "validation/published/unseen-nvidia.csv",
      "--out-dir", "/nonexistent"], "--gpu"),
])
def test_input_once_taken_leniently_is_a_one_line_error(args, flag):
    out = runner.invoke(app, args)
    assert out.exit_code == 2 and out.output.startswith(f"kvcalc: error: {flag}") and "Traceback" not in out.output


def test_a_file_written_is_not_reported_failed_when_stdout_is_closed(tmp_path):
    """`kvcalc sweep -o s.csv >&-` wrote the file, then exited 2 for its status line: the line goes to stderr."""
    import subprocess
    import sys

    out = tmp_path / "s.csv"
    done = subprocess.run([sys.executable, "-m", "kvcalc", "sweep", "-m", "llama-3-8b", "-b", "1,2", "-o", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=lambda: __import__("os").close(1))
    assert done.returncode == 0, done.stderr
    rows = out.read_text().count("\n") - 1  # under the header
    assert rows >= 2 and f"wrote {rows} rows" in done.stderr


def test_the_gpt_fast_fit_names_the_row_it_cannot_read(tmp_path):
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "validation/published/measurements.csv").read_text().splitlines()
    broken = [source[0], source[1].replace(",bf16,bf16,", ",,bf16,", 1), *source[2:]]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(broken) + "\n")
    out = runner.invoke(app, ["profiles", "fit-published", "--measurements", str(path), "--out-dir", str(tmp_path)])
    first = source[1].split(",")[0]
    assert out.exit_code == 2 and f"--measurements: row {first}" in out.output and "dtype" in out.output


def test_the_frontier_drops_a_wave_past_the_pool():
    rows = kvcalc.serve_frontier("qwen3-32b", "h100-sxm", input_len=2000, output_len=500, concurrencies=[1, 16, 128],
                           tps=[1], engine="sglang", arrivals="waves")
    assert [r["concurrency"] for r in rows] == [1, 16]


def test_vllm_speculation_under_pipeline_parallelism_is_said_to_be_a_layout_it_does_not_run():
    """estimate and serve time what is asked, but say that vLLM does not start MTP or a draft with
    --pipeline-parallel-size > 1 (vllm-project/vllm #49355, #52069); SGLang's --pp-size with MTP is not flagged."""
    args = ["-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--pp", "2", "--speculate", "mtp"]
    vllm_est = kvcalc.estimate("deepseek-v3", "h200", tp=8, pp=2, speculate="mtp", engine="vllm")
    assert any("vLLM does not start speculative decoding" in w for w in vllm_est.warnings)
    sglang_est = kvcalc.estimate("deepseek-v3", "h200", tp=8, pp=2, speculate="mtp", engine="sglang")
    assert not any("does not start speculative decoding" in w for w in sglang_est.warnings)
    served = _json(["serve", *args, "--engine", "vllm", "-i", "1000", "--output-len", "100", "-n", "8"])
    assert any("vLLM does not start speculative decoding" in w for w in served["warnings"])


def test_the_queue_and_the_chunk_rereads_are_worked_by_hand():
    from kvcalc.formulas.workload import chunk_weight_rereads, queue_wait

    assert queue_wait(128, 16, 0.5) == 224.0 and queue_wait(8, 16, 0.5) == 0.0  # 112 ahead at 0.5 requests/s
    # 32,768 tokens in 16-token chunks: 2,048 chunks, 2,047 re-reads of 15 GB at 3.35 TB/s = 9.166 s
    assert chunk_weight_rereads(32_768, 16, 15e9, 3.35e12) == pytest.approx(2047 * 15e9 / 3.35e12, rel=1e-15)
    assert chunk_weight_rereads(8_192, 8_192, 15e9, 3.35e12) == 0.0
