"""The thirty-eighth hostile audit (docs/validation.md, "Thirty-eighth hostile audit"): each test is named after its
finding. Hand-worked where a figure is asserted; sources cited beside each."""

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.engines.scheduler import sglang_prefill_first, trtllm_guaranteed_no_evict, vllm_v1
from kvcalc.errors import ArgumentError, KvcalcError
from kvcalc.planning.plan import _trade
from kvcalc.serving.simulate import StepGrid, Workload, simulate_schedule, summarize

runner = CliRunner()


# configs 1: Ouro (ByteDance's looped model) runs its 24 layers total_ut_steps = 4 times a token, each pass with a KV
# cache of its own (vLLM's vllm/model_executor/models/ouro.py: one Attention per ut_step at unique_layer_idx =
# ut_step * total_layers + base_layer_idx): read as a Llama, its KV cache and FLOPs were 4x low
OURO_1_4B = {"model_type": "ouro", "architectures": ["OuroForCausalLM"], "total_ut_steps": 4,
             "num_hidden_layers": 24, "hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 16,
             "head_dim": 128, "intermediate_size": 5632, "vocab_size": 49152, "tie_word_embeddings": False,
             "max_position_embeddings": 65536, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("model_type", ["ouro", "looped_llm"])
def test_38_configs1_looped_layers_are_refused_by_name(tmp_path, model_type):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**OURO_1_4B, "model_type": model_type}))
    out = runner.invoke(app, ["estimate", "-m", str(path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "total_ut_steps" in out.output and len(out.output.strip().splitlines()) == 1


# servesim 1 and 2: ITL as the engines' own benchmarks count it


class DecodesCost:
    """A step takes 1 s plus 1 s a decode in it (linear in the decodes, so StepGrid's interpolation is exact)."""

    decode_gain, decode_q = 1.0, 1

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return 1.0 + decode_batch


def test_38_servesim2_mean_itl_by_hand():
    """A (3 output tokens) and B (2) arrive together: step 1 prefills both (1 s, first tokens at 1 s); step 2 decodes
    both (3 s: B's last token at 4 s); step 3 decodes A alone (2 s, at 6 s). The gaps: A 3 and 2, B 3: vllm bench
    serve's mean_itl_ms = np.mean(itls) = 8 / 3 s (vllm/benchmarks/serve.py calculate_metrics), its median 3 s."""
    policy = vllm_v1(budget=4096, max_seqs=8, block_size=16)
    grid = StepGrid(DecodesCost(), 8, 4096, policy.budget)
    r = simulate_schedule(policy, grid, Workload(np.zeros(2), np.array([100, 100]), np.array([3, 2])),
                          pool_tokens=10_000)
    assert list(r.first_token_s) == [1.0, 1.0] and list(r.finish_s) == [6.0, 4.0]
    itl = summarize(r, gpus=1)["itl_ms"]
    assert itl["mean"] == pytest.approx(8000 / 3) and itl["p50"] == pytest.approx(3000)


def test_38_servesim1_sglang_counts_each_speculated_token_as_a_gap():
    """SGLang's bench_serving (python/sglang/bench_serving.py async_request_sglang_generate) counts a chunk of n new
    tokens as n gaps of (its gap / n); vLLM's and TensorRT-LLM's benchmarks append one gap a chunk. With EAGLE's
    ~3 tokens a step, SGLang's ITL is TPOT's size; vLLM's is the whole verify step, several TPOTs."""
    kw = dict(input_len=500, output_len=200, concurrency=4, num_prompts=40, speculate="eagle,k=3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sglang = kvcalc.simulate("llama-3.1-8b", "h100-sxm", engine="sglang", **kw)
        vllm = kvcalc.simulate("llama-3.1-8b", "h100-sxm", engine="vllm", **kw)
    assert sglang["itl_ms"]["mean"] == pytest.approx(sglang["tpot_ms"]["mean"], rel=0.05)
    assert vllm["itl_ms"]["p50"] > 2 * vllm["tpot_ms"]["p50"]


def test_38_servesim1_plain_decoding_is_counted_alike():
    """Without speculation a chunk is one token, so the two conventions agree: one gap a step either way."""
    policy = sglang_prefill_first(budget=4096, max_seqs=8, block_size=16)
    grid = StepGrid(DecodesCost(), 8, 4096, policy.budget)
    r = simulate_schedule(policy, grid, Workload(np.zeros(2), np.array([100, 100]), np.array([3, 2])),
                          pool_tokens=10_000)
    itl = summarize(r, gpus=1)["itl_ms"]
    assert itl["mean"] == pytest.approx(8000 / 3)  # the same hand schedule as vLLM's above: prefill first, then 3, 2


# sweep 1-5


def test_38_sweep1_a_combination_is_computed_once():
    """batch=[1, 1] is refused as the CLI's --batch 1,1 is; -e auto,vllm on an H100 (auto resolves to vLLM's measured
    profile) and --weight-dtype auto,bf16 on a bf16 checkpoint make one row each, the repeat said; '' is no method."""
    with pytest.raises(KvcalcError, match=r"^batch: 1 listed twice"):
        kvcalc.sweep(["llama-3.1-8b"], batch=[1, 1], context=[8])
    with pytest.raises(KvcalcError, match=r"^kv_dtype: bf16 listed twice"):
        kvcalc.sweep(["llama-3.1-8b"], kv_dtype=["bf16", "bf16"], batch=[1], context=[8])
    with pytest.raises(KvcalcError, match=r"^speculate: empty"):
        kvcalc.sweep(["llama-3.1-8b"], speculate=[None, ""], batch=[1], context=[8])
    with pytest.warns(UserWarning, match="the same as a combination listed before it"):
        df = kvcalc.sweep(["llama-3.1-8b"], engine=["auto", "vllm", "sglang"], batch=[1], context=[1024])
    assert df["engine"].tolist() == ["vllm", "sglang"]
    with pytest.warns(UserWarning, match="the same as a combination listed before it"):
        df = kvcalc.sweep(["llama-3.1-8b"], weight_dtype=["auto", "bf16"], batch=[1], context=[1024])
    assert len(df) == 1


def test_38_sweep2_linear_attention_is_named_as_estimate_names_it():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = kvcalc.sweep(["llama-3.1-8b"], attn=[None, "linear"], batch=[16], context=[8192])
        one = kvcalc.estimate("llama-3.1-8b", attn="linear", batch=16, context=8192)
    assert df["attention"].tolist() == ["gqa", "linear"] == ["gqa", one.inputs.attention]


@pytest.mark.parametrize("frame,row,column", [
    ({"arithmetic_intensity": ["a", "b"], "achieved_tflops": ["x", "y"]}, 0, "arithmetic_intensity"),
    ({"arithmetic_intensity": [1.0, 2.0], "achieved_tflops": [3.0, float("nan")]}, 1, "achieved_tflops"),
    ({"arithmetic_intensity": [1.0, -2.0], "achieved_tflops": [3.0, 4.0]}, 1, "arithmetic_intensity"),
])
def test_38_sweep3_measured_points_are_checked_as_the_csv_is(frame, row, column):
    with pytest.raises(KvcalcError, match=rf"^measured: row {row}, column {column}: expected a positive number"):
        kvcalc.plot.roofline(["h100"], "llama-3.1-8b", batch=[1], measured=pd.DataFrame(frame))


def test_38_sweep4_a_cache_the_engine_does_not_store_names_kv_dtype():
    out = runner.invoke(app, ["sweep", "-m", "llama-3.1-8b", "-e", "vllm", "--kv-dtype", "int8", "-b", "1", "-c",
                              "1024", "-o", "x.csv"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "--kv-dtype: no combination applies" in out.output and "under vllm" in out.output


def test_38_sweep5_roofline_arguments_are_named():
    with pytest.raises(ArgumentError, match=r"^batches: not an argument of kvcalc.plot.roofline \(did you mean batch"):
        kvcalc.plot.roofline(["h100"], "llama-3.1-8b", batches=[1])
    with pytest.raises(ArgumentError, match="too many positional arguments"):
        kvcalc.plot.roofline(["h100"], "llama-3.1-8b", ["mla"])


# newcomer 1-5


def _point(ttft, tpot, sim_ttft=None, sim_tpot=None, gpus=8, cost=40.0):
    simulated = None if sim_ttft is None else {"percentile": "p99", "ttft_ms": sim_ttft, "tpot_ms": sim_tpot}
    return SimpleNamespace(gpus=gpus, cost_per_hour=cost, ttft_ms=ttft, tpot_ms=tpot, simulated=simulated)


def test_38_newcomer1_a_runner_up_is_traded_on_the_figures_the_limits_were_judged_at():
    """The audit's plan: the choice at 82.3 ms steady-state TTFT, 98.9 ms simulated p99; a runner-up at 48.9 ms
    steady-state, 410 ms simulated. By the simulated figures it is 410 / 98.9 - 1 = +315 % to the first token, not the
    steady state's -41 %; unsimulated points trade on the steady state, said so."""
    best = _point(82.3, 40.0, 98.9, 45.0)
    assert (_trade(_point(48.9, 30.0, 410.0, 45.0), best)
            == "+0 % cost, simulated p99 TPOT +0 %, simulated p99 TTFT +315 %")
    assert _trade(_point(48.9, 30.0), best) == "+0 % cost, steady-state TPOT -25 %, steady-state TTFT -41 %"


def test_38_newcomer2_plan_says_what_load_its_times_and_seqs_are_at():
    out = runner.invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200",
                              "--concurrency", "16", "--max-tpot-ms", "60"], terminal_width=400)
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "the steady state at the requests each replica runs at once" in text
    assert "seqs: the max_num_seqs a replica is launched with, its ceiling" in text
    assert "at the replica's budget" not in text


def test_38_newcomer3_serve_help_names_each_engines_step_budget():
    text = " ".join(runner.invoke(app, ["serve", "--help"], terminal_width=400).stdout.split())
    assert "SGLang's chunked_prefill_size" in text and "else 8192" not in text


def test_38_newcomer4_capacity_says_what_load_its_cost_is_at():
    """Priced at one replica's decode batch: price x GPUs / (tokens/s x 3,600) x 1e6, said in the JSON and the table."""
    doc = json.loads(runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-g", "h100", "--tp", "4", "-c", "8192",
                                         "--price-per-gpu-hour", "2.5", "-f", "json"]).stdout)
    assert doc["cost_per_million_tokens"] == pytest.approx(2.5 * 4 / (doc["tokens_per_s"] * 3600) * 1e6)
    assert f"decoding at batch {doc['batch']}" in doc["cost_per_million_tokens_note"]
    assert "prefill not counted" in doc["cost_per_million_tokens_note"]


def test_38_newcomer5_vllm_version_default_is_shown_once():
    text = " ".join(runner.invoke(app, ["serve", "--help"], terminal_width=400).stdout.split())
    assert text.count("[default: latest, 0.30's rule]") == 1 and "[default: latest]" not in text


# capacity 1 and 4


def _json(*args):
    out = runner.invoke(app, [*args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_38_capacity1_sglang_runs_a_hybrid_at_its_state_slots_over_three_whatever_it_is_launched_with():
    """SGLang's init_memory clamps max_running_requests, given or not, to max_mamba_cache_size // 3 (radix cache on):
    Nemotron-H-8B at 2,560 tokens on an H100 holds 279 state slots, so 93 run, however many --max-running-requests
    asks for; plan sizes and launches no more (it had put 250 in flight on one replica)."""
    cap = _json("capacity", "-m", "nemotron-h-8b", "-c", "2560", "--tp", "1", "-e", "sglang", "--kv-dtype", "fp8")
    slots = cap["engine_memory"]["state_slots"]
    served = _json("serve", "-m", "nemotron-h-8b", "-i", "2048", "--output-len", "512", "-n", "250", "-e", "sglang",
                   "--kv-dtype", "fp8", "--max-num-seqs", "250")
    assert served["max_running"] == slots // 3 == cap["batch"]
    plan = _json("plan", "-m", "nemotron-h-8b", "-i", "2048", "-o", "512", "-n", "250", "-g", "h100-sxm",
                 "--no-disaggregate", "--no-speculate", "--no-convert", "--engines", "sglang")
    assert plan["choice"]["max_in_flight_per_replica"] == slots // 3
    assert plan["choice"]["max_num_seqs"] <= slots // 3


def test_38_capacity4_an_smi_total_below_the_visible_memory_is_refused(tmp_path):
    text = (Path(__file__).parent.parent / "hardware_specs" / "h100-sxm.toml").read_text()
    lines = [("smi_memory_MiB = 1000" if line.startswith("smi_memory_MiB") else line) for line in text.splitlines()]
    path = tmp_path / "gpu.toml"
    path.write_text("\n".join(lines) + "\n")
    out = runner.invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-g", str(path), "-e", "sglang"])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "smi_memory_MiB 1000 is below visible_memory_GiB 79.22" in out.output


class OneSecond:
    """Every micro-batch takes 1 s through the whole depth, whatever it holds: only the schedule shows."""

    decode_gain, decode_q = 1.0, 1

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return 1.0


@pytest.mark.parametrize("make,firsts,lasts", [
    (vllm_v1, [1.0] * 4, [3.0] * 4),
    (sglang_prefill_first, [1.0, 1.0, 1.5, 1.5], [3.0, 3.0, 3.5, 3.5]),
    (trtllm_guaranteed_no_evict, [1.0, 1.0, 1.5, 1.5], [3.0, 3.0, 3.5, 3.5]),
])
def test_38_serve1_a_micro_batch_takes_each_engines_own_share_of_the_requests(make, firsts, lasts):
    """Four 100-token prompts (3 tokens out) arrive together at pp 2 with room for 4 requests. vLLM's max_num_seqs
    counts every micro-batch's requests together (scheduler.py: len(self.running)), so its first micro-batch takes
    all four: out at 1 s, decoding together to 3 s. SGLang takes max_running_requests // pp = 2 into one
    (pp_max_micro_batch_size), TensorRT-LLM its max_batch_size, kvcalc's 4 over 2 micro-batches: two micro-batches of
    two, the second entering as the first leaves the first stage (0.5 s), each pair keeping its own to the end."""
    policy = make(budget=4096, max_seqs=4, block_size=1)
    r = simulate_schedule(policy, StepGrid(OneSecond(), 64, 16384, policy.budget),
                          Workload(np.zeros(4), np.full(4, 100), np.full(4, 3)), pool_tokens=100_000,
                          pipeline_stages=2)
    assert list(r.first_token_s) == firsts and list(r.finish_s) == lasts


def test_38_sweep6_the_documented_columns_are_the_dataframes():
    """docs/json-schema.md tables sweep's columns with their dtypes: the table's names, in order, are the DataFrame's,
    and each dtype is the one it gives (pandas' string dtype or object for start_note)."""
    text = (Path(__file__).parent.parent / "docs" / "json-schema.md").read_text()
    table = text[text.index("| column | dtype | unit, scope |"):].split("\n\n")[0].splitlines()[2:]
    documented = [(name.strip("` "), cells[1].strip()) for cells in (row.strip("|").split("|") for row in table)
                  for name in cells[0].split(",")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = kvcalc.sweep(["llama-3.1-8b"], batch=[1], context=[1024], speculate=["eagle,k=3"])
    assert [name for name, _ in documented] == list(df.columns)
    for name, dtype in documented:
        dtype_name = str(df[name].dtype)
        shown = "string" if df[name].dtype == object or dtype_name in ("str", "string") else dtype_name
        assert shown == dtype, name


class ChunkCost:
    """A micro-batch takes 1 s plus 1 s a hundred prompt tokens through the whole depth (linear: StepGrid is exact)."""

    decode_gain, decode_q = 1.0, 1

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return 1.0 + chunk / 100


def test_38_serve1_review1_a_short_micro_batch_waits_behind_a_long_one_at_every_stage():
    """Two stages, each a micro-batch's depth / 2. A (100 tokens, 3 out) at 0 s: its prefill (2 s) runs stage 1 0-1,
    stage 2 1-2; first token at 2. B (800 tokens, 1 out) at 0.1 s: 9 s, stage 1 1-5.5, stage 2 5.5-10; its token at
    10. A's decode (1 s), formed at 2: stage 1 once B leaves it (5.5-6), stage 2 once B leaves that (10-10.5), so its
    second token at 10.5, not before B's; its third: stage 1 10.5-11, stage 2 11-11.5. (Timing the first stage alone
    had let it out at 6.5, past B inside the pipeline: the thirty-eighth audit's review, 1.)"""
    policy = vllm_v1(budget=4096, max_seqs=8, block_size=16)
    r = simulate_schedule(policy, StepGrid(ChunkCost(), 8, 4096, policy.budget),
                          Workload(np.array([0.0, 0.1]), np.array([100, 800]), np.array([3, 1])), pool_tokens=100_000,
                          pipeline_stages=2)
    assert list(r.first_token_s) == [2.0, 10.0] and list(r.finish_s) == [11.5, 10.0]


def test_38_serve1_review3_5_a_micro_batch_holds_a_request_and_a_long_run_is_refused():
    """SGLang's pp_max_micro_batch_size is max(max_running_requests // pp, 1): 2 requests at pp 4 run (they had been
    refused as if the pool were too small); under pp every micro-batch is formed one by one, so a run of about a million
    is refused up front (8 in flight at pp 2 over 2,000 prompts of 2,000 tokens had run 72 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = kvcalc.simulate("llama-3.1-8b", "h100-sxm", engine="sglang", pp=4, max_num_seqs=2, concurrency=2,
                            input_len=500, output_len=50, num_prompts=8)
        assert r["completed"] == 8
        refused = r"^pp / num_prompts: these 2,000 requests take about 1,000,000 micro-batches"
        with pytest.raises(KvcalcError, match=refused):
            kvcalc.simulate("llama-3.1-8b", "h100-sxm", pp=2, concurrency=8, input_len=100, output_len=2000,
                            num_prompts=2000)
