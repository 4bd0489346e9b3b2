"""kvcalc serve: the steady state in closed form, Little's law, the request-rate solve, the pure-decode step
against estimate, and the ledger of TensorRT-LLM's published throughput."""

import json
import math
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kvcalc import estimate
from kvcalc.cli import app
from kvcalc.estimator import precision
from kvcalc.formulas.forward import decode_ops, mixed_ops
from kvcalc.formulas.workload import steady_state, waves
from kvcalc.ledgers.serve import read_rows, score, summary
from kvcalc.serving.closed_form import frontier, serve
from kvcalc.specs.catalog import load_model

ROOT = Path(__file__).parents[1]
LEDGER = ROOT / "validation" / "serve" / "trtllm-perf-overview.csv"



def documentation(root) -> str:
    """The README and docs/validation.md, where the ledgers' figures are quoted."""
    return (root / "README.md").read_text() + (root / "docs" / "validation.md").read_text()

def test_steady_state_below_the_step_budget():
    """C = 10, I = 100, O = 11: each request spends 1 prefill step and 10 decode steps, so B_d = 10 x 10 / 11, and
    prompts enter as fast as outputs finish: p = B_d x 100 / 10 tokens a step."""
    decode, chunk, s_p = steady_state(10, 100, 11, 8192)
    assert decode == pytest.approx(100 / 11) and chunk == pytest.approx(1000 / 11) and s_p == 1


def test_steady_state_when_the_step_budget_binds():
    """C = 6000, I = O = 128, T = 8192: the decodes may grow only to T (O - 1) / (I + O - 1) = 8192 x 127 / 255;
    the rest of the step is prefill, and the other requests wait (C - B_d) I / p steps."""
    decode, chunk, s_p = steady_state(6000, 128, 128, 8192)
    cap = 8192 * 127 / 255
    assert decode == pytest.approx(cap) and chunk == pytest.approx(8192 - cap)
    assert s_p == pytest.approx((6000 - cap) * 128 / (8192 - cap))


def test_mixed_step_reads_the_weights_once():
    m, p = load_model("llama-3-8b"), precision("bf16", "bf16")
    mixed = mixed_ops(m, decode_batch=32, context=2048, chunk=512, chunk_context=256, p=p)
    alone = decode_ops(m, 32, 2048, p)
    matmul = lambda ops: sum(o.cost.weight_bytes for o in ops if o.engine == "matmul")  # noqa: E731
    assert matmul(mixed) == matmul(alone)  # (the embedding gathers one row per token, so it is left out)
    wide = decode_ops(m, 32 + 512, 2048, p)
    mlp = lambda ops: sum(o.cost.flops for o in ops if o.op_class == "mlp")  # noqa: E731
    assert mlp(mixed) == mlp(wide)  # the MLP sees decodes and chunk together


def test_a_chunk_of_whole_prompts_attends_each_prompt_to_itself():
    """Llama-3-8B (32 layers, 32 query heads of 128): a chunk of 315 prompts of 26 tokens attends
    315 x 26 x 27 / 2 = 110,565 positions a head (each prompt causal over itself), 2 x 32 x (128 + 128) FLOPs each,
    in 32 layers: 57,967,902,720 FLOPs, where one 8,190-token sequence would attend 33,542,145. Logits: one row a
    prompt. chunk_prompts 1 is the single sequence."""
    m, p = load_model("llama-3-8b"), precision("bf16", "bf16")
    core = lambda ops: sum(o.cost.flops for o in ops if o.op_class == "attention")  # noqa: E731
    many = mixed_ops(m, decode_batch=0, context=0, chunk=315 * 26, chunk_context=0, p=p, chunk_prompts=315)
    one = mixed_ops(m, decode_batch=0, context=0, chunk=315 * 26, chunk_context=0, p=p)
    assert core(many) == pytest.approx(2 * 32 * 256 * 32 * 315 * 26 * 27 / 2, rel=1e-12) == 57_967_902_720
    assert core(one) == pytest.approx(2 * 32 * 256 * 32 * 8190 * 8191 / 2, rel=1e-12)
    head = lambda ops: next(o for o in ops if o.op_class == "lm_head").cost.flops  # noqa: E731
    assert head(many) == pytest.approx(315 * head(one), rel=1e-12)


def test_pipeline_micro_batches_count_the_chunks_prompts():
    """--pp 2, no decodes: a chunk of 64 whole prompts of 65 tokens splits into two micro-batches of 32 prompts
    (2,080 tokens each), a step the depth of one of them; a chunk of one 4,160-token prompt cannot split."""
    from kvcalc.estimator import StepTimer, load_deployment

    spec, hw, _, _ = load_deployment("llama-3-8b", "h100-sxm", "bf16", "bf16")
    timer = StepTimer(spec, hw, precision("bf16", "bf16"), 1, None, "bf16", "bf16", pp=2)
    ops, decodes, chunk, _ = timer.step_ops(0, 0, 64 * 65, 0, prompt_len=65)
    assert (decodes, chunk) == (0, 32 * 65)
    assert ops == mixed_ops(spec, decode_batch=0, context=0, chunk=32 * 65, chunk_context=0, p=timer.p,
                            chunk_prompts=32)
    assert timer.step_ops(0, 0, 64 * 65, 0, prompt_len=64 * 65)[2] == 64 * 65
    assert timer.step_ops(0, 0, 64 * 65, 0)[2] == 64 * 65


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, 4000), st.integers(2, 4000), st.floats(1, 200))
def test_littles_law_holds(input_len, output_len, concurrency):
    r = serve("llama-3-8b", "h100", input_len=input_len, output_len=output_len, concurrency=concurrency,
              engine="roofline")
    assert r["requests_per_s"] * r["latency_ms"] / 1e3 == pytest.approx(concurrency, rel=1e-9)
    assert r["output_tokens_per_s"] == pytest.approx(r["requests_per_s"] * output_len)
    assert r["ttft_ms"] > 0 and r["tpot_ms"] > 0 and all(
        math.isfinite(v) for v in (r["ttft_ms"], r["tpot_ms"], r["output_tokens_per_s_per_gpu"]))


def test_request_rate_finds_the_concurrency_and_the_replicas():
    one = serve("llama-3-8b", "h100", input_len=1000, output_len=200, request_rate=5)
    assert one["replicas"] == 1 and one["requests_per_s"] == pytest.approx(5, rel=1e-6)
    top = serve("llama-3-8b", "h100", input_len=1000, output_len=200, concurrency="max")
    many = serve("llama-3-8b", "h100", input_len=1000, output_len=200, request_rate=top["requests_per_s"] * 2.5)
    assert many["replicas"] == 3 and many["gpus"] == 3


def test_disaggregated_decode_step_is_estimates_decode_step():
    """With separate pools the decode pool runs pure decode steps: TPOT equals estimate's decode step at the same
    batch (concurrency / decode replicas) and mean context."""
    r = serve("llama-3-8b", "h100", input_len=1000, output_len=202, concurrency=64, tp=1, disaggregate=(1, 2),
              engine="roofline")
    e = estimate("llama-3-8b", "h100", batch=32, context=1000 + 101, prompt=1, engine="roofline")
    assert r["tpot_ms"] == pytest.approx(e.decode.ms, rel=1e-9)
    assert r["gpus"] == 3 and r["ttft_ms"] > 0


def test_frontier_marks_one_best_point_within_the_limits():
    rows = frontier("llama-3.1-70b", "h100", input_len=1000, output_len=500, concurrencies=[1, 8, 32, 128],
                    tps=[2, 4], weight_dtype="fp8", max_tpot_ms=40)
    best = [r for r in rows if r["best"]]
    assert len(best) == 1 and best[0]["tpot_ms"] <= 40
    assert best[0]["output_tokens_per_s_per_gpu"] == max(r["output_tokens_per_s_per_gpu"] for r in rows
                                                         if r["within_limits"])


def test_ledger_figures_are_the_readme_ones():
    results = score(read_rows(LEDGER))
    assert len(results) == 40
    overall = summary(results)[0]
    readme = documentation(ROOT)
    assert (f"median {overall['median_abs_error_pct']} %, worst {overall['worst_abs_error_pct']} % "
            f"({overall['within_10_pct']} of 40 within 10 %)") in readme
    baseline = summary(score(read_rows(LEDGER), engine="roofline"))[0]
    assert f"{baseline['median_abs_error_pct']} % median on the datasheet roofline" in readme


def test_cli_serve_json_frontier_plot_and_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "128", "-n", "16", "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["concurrency"] == 16
    png = tmp_path / "f.png"
    r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "128", "-n", "1,16,64",
                            "--tp", "1,2", "--plot", str(png), "-f", "csv"])
    assert r.exit_code == 0, r.output and png.stat().st_size > 10_000
    for args, says in ((["--disaggregate", "x"], "--disaggregate"), (["-n", "abc"], "--concurrency"),
                       (["--request-rate", "2", "-n", "4"], "exactly one"), (["-n", "4", "--tp", "3"], "--tp")):
        r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "512", "--output-len", "128", *args])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (args, r.output)


def test_speculative_serving_matches_estimate_at_one_request_and_keeps_littles_law():
    """One request in flight: each step is a verify of k + 1 tokens plus its drafts, yielding E tokens, so TPOT is
    estimate's speculative time per token at the mean context (prefills of the next request add a little)."""
    e = estimate("llama-3.1-8b", "h100", batch=1, context=1000 + 250, speculate="eagle,k=4")
    r = serve("llama-3.1-8b", "h100", input_len=1000, output_len=500, concurrency=1, speculate="eagle,k=4")
    assert r["tpot_ms"] == pytest.approx(e.speculative.ms_per_token, rel=0.1)
    assert r["requests_per_s"] * r["latency_ms"] / 1e3 == pytest.approx(1, rel=1e-9)
    plain = serve("llama-3.1-8b", "h100", input_len=1000, output_len=500, concurrency=64)
    fast = serve("llama-3.1-8b", "h100", input_len=1000, output_len=500, concurrency=64, speculate="eagle,k=4")
    assert fast["output_tokens_per_s_per_gpu"] > plain["output_tokens_per_s_per_gpu"]
    assert fast["tpot_ms"] < plain["tpot_ms"]


def test_speculative_serving_with_pipeline_expert_parallel_and_disaggregated_pools():
    """Each decode step is a verify of k + 1 tokens plus its drafts whatever the layout: with --disaggregate the
    decode pool's TPOT is its verify step over the tokens a step yields; with --pp and --ep the gain holds too."""
    from kvcalc.speculation import parse

    kw = dict(input_len=1000, output_len=500, concurrency=8)
    tau = parse("eagle,k=4").tokens_per_step()
    dis = serve("llama-3.1-8b", "h100", disaggregate=(1, 1), speculate="eagle,k=4", **kw)
    # 499 tokens after the first in whole verify steps of tau: ceil(499 / tau) of them (formulas/workload.py step_yield)
    assert dis["tpot_ms"] == pytest.approx(dis["assumptions"]["step_ms"] * math.ceil(499 / tau) / 499)
    plain_dis = serve("llama-3.1-8b", "h100", disaggregate=(1, 1), **kw)
    assert dis["tpot_ms"] < plain_dis["tpot_ms"]
    for layout in (dict(tp=2, pp=2, gpu="h100"), dict(ep=8, gpu="h200", weight_dtype="fp8")):
        model = "deepseek-v3" if "ep" in layout else "llama-3.1-70b"
        gpu = layout.pop("gpu")
        plain = serve(model, gpu, **layout, **kw)
        fast = serve(model, gpu, **layout, speculate="mtp=1", **kw) if "ep" in layout else serve(
            model, gpu, **layout, speculate="draft=llama-3.2-1b,k=4,alpha=0.7", **kw)
        assert fast["tpot_ms"] < plain["tpot_ms"], layout


def test_second_ledger_figures_are_the_readme_ones():
    """The Blackwell / 405B / pipeline cells of the same page: the figures the README quotes, recomputed."""
    import statistics

    path = ROOT / "validation" / "serve" / "trtllm-perf-overview-blackwell-405b.csv"
    results = score(read_rows(path))
    assert len(results) == 106
    flat = [abs(r["error_pct"]) for r in results if r["pp"] == 1]
    fp4 = [abs(r["error_pct"]) for r in results
           if r["pp"] == 1 and r["model"] == "llama-3.1-70b" and r["gpu"] in ("b200", "gb200")]
    readme = documentation(ROOT)
    assert (f"median {round(statistics.median(flat), 1)} %, worst {round(max(flat), 1)} % ({len(flat)} rows,\n"
            f"{sum(e <= 10 for e in flat)} within 10 %)") in readme
    assert f"B200 and GB200 {round(statistics.median(fp4), 1)} % (worst {round(max(fp4), 1)} %)" in readme
    # the pipeline rows by stage count, as docs/validation.md's second ledger quotes them: 10 rows at pp 2, 10 at pp 4,
    # 16 at pp 8 (the 70B's 10 and the 405B's 6); the fortieth audit, readme 5: quoted as 10.1, 27.8 and 42.2 %, the
    # figures before the thirty-eighth audit's waves (f676249), which had moved them to 10.1, 27.9 and 42.1 %
    by_pp = {pp: [abs(r["error_pct"]) for r in results if r["pp"] == pp] for pp in (2, 4, 8)}
    assert {pp: len(rows) for pp, rows in by_pp.items()} == {2: 10, 4: 10, 8: 16}
    medians = [round(statistics.median(rows), 1) for rows in by_pp.values()]
    assert medians == [10.1, 27.9, 42.1]
    assert f"{medians[0]}, {medians[1]} and {medians[2]} % since the" in readme
    assert "27.8 and 42.2 % since" not in readme and "unchanged (10.1, 27.8, 42.2 %)" not in readme
    overall = summary(results)[0]
    assert f"median {overall['median_abs_error_pct']} %)" in readme
    roofline = score(read_rows(path), engine="roofline")
    roofline_flat = statistics.median(abs(r["error_pct"]) for r in roofline if r["pp"] == 1)
    assert (f"**{round(roofline_flat, 1)} %** median for the datasheet roofline on the same {len(flat)} rows "
            f"({summary(roofline)[0]['median_abs_error_pct']} % over all 106)") in readme
    # the README's Accuracy section quotes the roofline on the same cells as kvcalc's 6.1 % (the twenty-fourth
    # audit, R9: it had quoted the 106 cells' 51 % beside the 70 cells' figure)
    accuracy = (ROOT / "README.md").read_text().split("## Accuracy")[1]
    assert f"{round(roofline_flat)} % for the datasheet roofline on the same cells" in accuracy


@pytest.mark.parametrize("engine", ["auto", "vllm", "sglang", "trtllm"])
def test_serve_and_capacity_hold_the_same_requests(engine):
    """One memory model: serve's KV pool at concurrency max holds as many full-length requests as capacity finds
    at that context, under kvcalc's rule (auto) and under each engine's own (its batched-token limit the same)."""
    from kvcalc.planning.capacity import capacity

    kw = {} if engine == "auto" else {"max_num_batched_tokens": 8192} if engine != "sglang" else {}
    s = serve("llama-3.1-8b", "h100", input_len=1000, output_len=1000, concurrency="max", engine=engine)
    c = capacity("llama-3.1-8b", "h100", context=2000, engine=engine, **kw)
    assert s["concurrency"] == c["max_sequences_at_context"]


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_expert_parallel_engine_memory_counts_experts_over_ep_and_sequences_per_group(engine):
    """DeepSeek-V3 fp8 on 8 H200s as 8 data-parallel attention groups of one GPU (ep 8, tp 1): each GPU holds the
    non-expert weights whole and 1/8 of the routed experts, its pool serves its own group, so the deployment holds 8
    times the group's requests; serve at concurrency max agrees with capacity."""
    from kvcalc.formulas.params import routed_expert_bytes, weight_bytes
    from kvcalc.planning.capacity import capacity

    kw = {"max_num_batched_tokens": 8192} if engine != "sglang" else {}
    c = capacity("deepseek-v3", "h200", context=2000, ep=8, weight_dtype="fp8-block", engine=engine, **kw)
    spec = load_model("deepseek-v3")
    routed = routed_expert_bytes(spec, 1.0 + 4 / 128**2)
    # SGLang splits the lm_head, dense MLPs and shared experts over all 8 (the twenty-third audit, S1; its test
    # checks those bytes by hand)
    split = (7 / 8 * (129_280 * 7_168 * 2 + (3 * 3 * 7_168 * 18_432 + 58 * 3 * 7_168 * 2_048) * (1 + 4 / 128**2))
             if engine == "sglang" else 0.0)
    assert c["engine_memory"]["weights_bytes_per_gpu"] == pytest.approx(
        weight_bytes(spec, 1.0 + 4 / 128**2) - routed + routed / 8 - split, rel=1e-3)
    assert c["max_sequences_at_context"] == 8 * math.floor(c["engine_memory"]["max_concurrency"])
    s = serve("deepseek-v3", "h200", input_len=1000, output_len=1000, concurrency="max", ep=8,
              weight_dtype="fp8-block", engine=engine)
    assert s["concurrency"] == c["max_sequences_at_context"]


def test_waves_by_hand():
    """Four requests of 3,000 prompt and 5 output tokens, 8,192 tokens a step: two prefill steps; requests 0 and 1
    finish their prompts in the first (8,192 > 6,000) and decode one token beside the second, requests 2 and 3 in the
    second. With 1 s prefill steps and 0.1 s decode steps: TTFT 1, 1, 2, 2 s (median 1.5); latencies 1 + 1 + 3 x
    0.1 = 2.3 s and 2 + 4 x 0.1 = 2.4 s; TPOT (2.3 - 1) / 4 = 0.325 and 0.1 (median 0.2125); the wave lasts 2.4 s.
    Two tokens a decode step (speculation): 1 + 1 + 2 / 2 x 0.1 = 2.1 and 2 + 4 / 2 x 0.1 = 2.2 s."""
    w = waves(4, 3000, 5, 8192, 1.0, 0.1)
    medians = ("ttft_s", "tpot_s", "latency_s", "wave_s", "prefill_steps")
    assert {k: w[k] for k in medians} == pytest.approx({"ttft_s": 1.5, "tpot_s": 0.2125, "latency_s": 1.5 + 4 * 0.2125,
                                                        "wave_s": 2.4, "prefill_steps": 2})
    assert list(w["ttft_each"]) == [1, 1, 2, 2] and list(w["latency_each"]) == pytest.approx([2.3, 2.3, 2.4, 2.4])
    assert waves(4, 3000, 5, 8192, 1.0, 0.1, gain=2.0)["wave_s"] == pytest.approx(2.2)
    one = waves(1, 100, 1, 8192, 0.5, 0.1)
    assert {k: one[k] for k in medians} == {"ttft_s": 0.5, "tpot_s": None, "latency_s": 0.5, "wave_s": 0.5,
                                            "prefill_steps": 1}


def test_serve_in_waves_is_the_closed_form_over_serve_steps():
    """serve(arrivals="waves") at one request: the TTFT is one prefill step of the prompt alone, the latency TTFT +
    (O - 1) TPOT, the throughput O tokens over that; at 32 requests the prompts queue
    (4 steps of 8,192 tokens for 32 x 1,024), so the median TTFT is 2-3 prefill steps and the throughput falls
    below the staggered steady state's."""
    one = serve("llama-3.1-8b", "h100", input_len=1024, output_len=256, concurrency=1, arrivals="waves")
    staggered = serve("llama-3.1-8b", "h100", input_len=1024, output_len=256, concurrency=1)
    assert one["latency_ms"] == pytest.approx(one["ttft_ms"] + 255 * one["tpot_ms"])
    assert one["output_tokens_per_s"] == pytest.approx(256 / one["latency_ms"] * 1e3)
    # a lone prompt's prefill step, in the steady state too: at one in flight no request decodes beside it (the
    # steady state had timed its mean decode, its own, beside its prompt, 1-5 % above the simulator)
    assert staggered["ttft_ms"] == pytest.approx(one["ttft_ms"], rel=1e-9)
    many = serve("llama-3.1-8b", "h100", input_len=1024, output_len=256, concurrency=32, arrivals="waves")
    steady = serve("llama-3.1-8b", "h100", input_len=1024, output_len=256, concurrency=32)
    assert many["assumptions"]["prefill_tokens_per_step"] == 8192
    assert many["output_tokens_per_s"] < steady["output_tokens_per_s"] and many["ttft_ms"] > 2 * steady["ttft_ms"]


@pytest.mark.parametrize("args, says", [
    (["--arrivals", "bursty"], "--arrivals: expected staggered or waves"),
    (["--arrivals", "waves", "--disaggregate", "1:1"], "--arrivals waves: with --concurrency"),
])
def test_arrivals_flag_errors(args, says):
    r = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "--input-len", "128", "--output-len", "128",
                                 "-n", "8", *args])
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output


def test_benchmark_ledger_figures_are_the_readme_ones():
    """vLLM 0.27.1 `vllm bench serve` runs of Qwen3-32B on two RTX PRO 6000s (kubesimplify's post): every figure
    the README quotes, recomputed; nothing fitted."""
    from kvcalc.ledgers.serve import BENCH_COLUMNS, score_bench, summary_bench
    from kvcalc.specs.files import read_csv_ledger

    path = ROOT / "validation" / "serve" / "vllm-bench-rtx-pro-6000-qwen3-32b.csv"
    results = score_bench(read_csv_ledger(path, "a serve benchmark ledger CSV", BENCH_COLUMNS))
    assert len(results) == 12
    readme = documentation(ROOT)
    names = {"output_tokens_per_s": "output tokens/s", "median_tpot_ms": "median TPOT", "median_ttft_ms": "median TTFT"}
    for s in summary_bench(results):
        assert f"{names[s['rows']]} {s['median_abs_error_pct']} % (worst {s['worst_abs_error_pct']} %)" in readme
    pp_c1 = {r["metric"]: r["error_pct"] for r in results if r["id"] == "pp2-c1"}
    assert max(abs(e) for e in pp_c1.values()) < 15  # a lone request through two stages: within 15 % on all three


def test_benchmark_ledger_bad_row_is_a_one_line_error(tmp_path):
    path = ROOT / "validation" / "serve" / "vllm-bench-rtx-pro-6000-qwen3-32b.csv"
    header, first = path.read_text().splitlines()[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + first.replace(",0.426,", ",lots,", 1) + "\n")
    r = CliRunner().invoke(app, ["validate", "--serve", str(bad)])
    # the reader names the file, line and column (audit F8)
    assert r.exit_code == 2 and f"{bad}: line 2, column memory_utilization: expected a number, got 'lots'" in r.output
    assert "Traceback" not in r.output, r.output


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 300), st.integers(1, 20000), st.integers(1, 5000), st.integers(256, 16384),
       st.floats(1e-3, 2.0), st.floats(1e-4, 0.5), st.floats(1.0, 4.0))
def test_a_wave_lasts_its_prefill_steps_then_its_decode(c, input_len, output_len, budget, t_p, t_d, gain):
    """The last prompt to finish its prefill decodes nothing beside other chunks, so when the output outlasts the
    prefill the wave takes n_p prefill steps and then (O - 1) / g decode steps; every median lies within the wave."""
    w = waves(c, input_len, output_len, budget, t_p, t_d, gain)
    n_p = math.ceil(c * input_len / budget)
    assert w["prefill_steps"] == n_p
    if (output_len - 1) / gain >= n_p - 1:
        assert w["wave_s"] == pytest.approx(n_p * t_p + (output_len - 1) / gain * t_d)
    assert t_p * math.ceil(input_len / budget) <= w["ttft_s"] <= n_p * t_p * (1 + 1e-12)
    assert w["ttft_s"] <= w["wave_s"] * (1 + 1e-12)


def test_serve_says_when_the_vllm_pool_is_an_upper_bound():
    """Under a vLLM release that takes its CUDA-graph estimate out of the pool (Model Runner V2 from 0.29), serve
    warns until the logged estimate is given, and the given estimate shrinks the pool by exactly itself."""
    import warnings as w

    kw = dict(input_len=1000, output_len=1000, concurrency=16, tp=2, engine="vllm")
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        unknown = serve("qwen3-32b", "h100-sxm", **kw)
    assert any("upper bound" in n for n in unknown["warnings"]) and any("upper bound" in str(c.message) for c in caught)
    given = serve("qwen3-32b", "h100-sxm", cuda_graph_GiB=1.0, **kw)
    assert given["warnings"] == []
    assert unknown["kv_pool_bytes_per_gpu"] - given["kv_pool_bytes_per_gpu"] == pytest.approx(2**30)
    old = serve("qwen3-32b", "h100-sxm", vllm_version="0.27", **kw)  # V2 estimated 0 before 0.29: nothing to warn of
    assert old["warnings"] == []


def test_trtllm_bench_settings_follow_its_tuning_heuristic():
    """trtllm-bench throughput (tensorrt_llm/bench/build/tuning.py) sizes its batch from the checkpoint's safetensors
    element count: nvidia/Llama-3.3-70B-Instruct-FP4 packs two 4-bit weights a byte with an fp8 scale per 16, so
    68,451,041,280 quantised weights count 9/16 each beside the 2,102,665,216 bf16 ones (embeddings, lm_head, norms),
    all at 0.5 B: 18.91 GiB. At 163,840 B a token (fp8 KV, 80 layers, 8 KV heads of 128) and 0.95 of the rest of one
    95.01 GiB RTX PRO 6000, 1,851 requests of 128 + 128 tokens fit: rounded up to 2048, and 3,702 tokens to 3,840.
    Over 8 stages the 4096 cap binds: 512 a micro-batch, 2048 tokens (the floor)."""
    from kvcalc.formulas.engine_memory import trtllm_bench_settings
    from kvcalc.formulas.params import quantised_and_kept_params

    m = load_model("llama-3.1-70b")
    assert quantised_and_kept_params(m) == (68_451_041_280, 2_102_665_216)
    engine_GiB = (68_451_041_280 * 9 / 16 + 2_102_665_216) * 0.5 / 2**30
    requests = (95.01 - engine_GiB) * 0.95 * 2**30 / (163_840 * 256)
    assert 1850 < requests < 1852
    assert trtllm_bench_settings(m, 95.01, "nvfp4", 1.0, 1, 1, 128, 128) == (2048, 3840)
    assert trtllm_bench_settings(m, 95.01, "nvfp4", 1.0, 1, 8, 128, 128) == (512, 2048)
    assert trtllm_bench_settings(m, 95.01, "nvfp4", 1.0, 1, 4, 128, 128) == (1024, 2048)


def test_serve_honours_tpot_and_ttft_limits_by_spreading_the_load_or_refuses():
    """The newcomer's case: serve --request-rate 100 --max-tpot-ms 50 printed a 96 ms TPOT without a word. Now the
    rate is spread over the fewest replicas whose steady state meets the limit: that count meets it and one replica
    fewer does not (each checked with serve itself, at the rate / replicas), and a limit a lone request misses is one
    line."""
    kw = dict(input_len=2000, output_len=500, tp=8, engine="vllm", cuda_graph_GiB=0)
    free = serve("deepseek-v3", "h200", request_rate=100, **kw)
    held = serve("deepseek-v3", "h200", request_rate=100, max_tpot_ms=60, **kw)
    assert free["tpot_ms"] > 60 >= held["tpot_ms"] and held["requests_per_s"] == pytest.approx(100, rel=1e-6)
    k = held["replicas"]
    assert k > 1 and serve("deepseek-v3", "h200", request_rate=100 / (k - 1), **kw)["tpot_ms"] > 60  # k - 1 miss
    assert held["gpus"] == 8 * k
    lone = serve("deepseek-v3", "h200", concurrency=1, **kw)["tpot_ms"]
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="--max-tpot-ms: no number of replicas meets it"):
        serve("deepseek-v3", "h200", request_rate=100, max_tpot_ms=lone * 0.9, **kw)


def test_serve_takes_vllms_own_step_budget_so_it_agrees_with_capacity():
    """The fuzzer's finding: on an A100, vLLM's default max_num_batched_tokens is 2048 (its arg_utils, for GPUs
    under 70 GiB or A100s; formulas/engine_memory.py vllm_default_batching), which capacity --engine vllm used while
    serve took 8192, so the two disagreed on the requests the pool holds (706 against 714 for Llama-3.1-8B)."""
    import math

    from kvcalc.planning.capacity import capacity

    s = serve("llama-3.1-8b", "a100-sxm-80gb", input_len=1000, output_len=1000, concurrency="max", engine="vllm",
              cuda_graph_GiB=0)
    c = capacity("llama-3.1-8b", "a100-sxm-80gb", context=2000, engine="vllm", cuda_graph_GiB=0)
    assert s["max_concurrency"] == math.floor(c["engine_memory"]["max_concurrency"])
    assert "2,048 tokens a step" in s["assumptions"]["batching"]


def test_benchmark_ledger_prose_figures():
    """docs/validation.md's prose on the RTX PRO 6000 benchmark rows, recomputed: PP 2 within 3 % (one request) and
    6 % (32) on throughput, TTFT 8 % short and within 0.1 % (9 % and 7 % short before the thirty-ninth audit
    pipelined a wave's budgets); TP 2's lone decode 1 %, 39 % too fast at 32 requests, its
    one-request TTFT 53 % short; staggered at 32 requests 45 % too fast (TP 2) and 1 % too slow (PP 2), TTFTs 96 % and
    91 % short (90 % before the thirty-eighth audit's wait of half a decode stage-time, 92 % before the steady state's
    pipeline lag). (Before a wave's decodes took their share of each prefill step: TTFT 21 % short at 32; before a
    step's micro-batches were staggered: 10 % and 28 %; before prompts entered a request's
    decode steps whole: 71 % and 18 % too fast; earlier still 6, 12, 13, 24, 12, 45, 57, 76, 30 and 96-97 %.)"""
    from kvcalc.ledgers.serve import BENCH_COLUMNS, score_bench
    from kvcalc.specs.files import read_csv_ledger

    path = ROOT / "validation" / "serve" / "vllm-bench-rtx-pro-6000-qwen3-32b.csv"
    rows = read_csv_ledger(path, "a serve benchmark ledger CSV", BENCH_COLUMNS)
    e = {(r["id"], r["metric"]): r["error_pct"] for r in score_bench(rows)}
    assert [round(abs(e[("pp2-c1", "output_tokens_per_s")])), round(abs(e[("pp2-c32", "output_tokens_per_s")]))] == [3, 6]
    assert round(-e[("pp2-c1", "median_ttft_ms")]) == 8 and abs(e[("pp2-c32", "median_ttft_ms")]) < 0.1
    assert round(abs(e[("tp2-c1", "median_tpot_ms")])) == 1 and round(e[("tp2-c32", "output_tokens_per_s")]) == 39
    assert round(-e[("tp2-c1", "median_ttft_ms")]) == 53
    measured = {r["id"]: r for r in rows}
    docs = (ROOT / "docs" / "validation.md").read_text()
    assert "PP 2: within 3 % at one request, 6 % at 32 on throughput, TTFT 8 % short and within 0.1 %" in " ".join(
        docs.split())
    found = []
    for tp, pp, row in ((2, 1, "tp2-c32"), (1, 2, "pp2-c32")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = serve("qwen3-32b", "rtx-pro-6000", tp=tp, pp=pp, input_len=1024, output_len=256, concurrency=32,
                      engine="vllm", memory_utilization=0.426, vllm_version="0.27.1")
        found.append((round(100 * (s["output_tokens_per_s"] / float(measured[row]["output_tokens_per_s"]) - 1)),
                      round(100 * (1 - s["ttft_ms"] / float(measured[row]["median_ttft_ms"])))))
    assert found == [(45, 96), (-1, 91)]
    assert ("would be 45 % (TP 2) too fast and, at PP 2, 1 % too slow, with TTFTs 96 % and 91 % short"
            in " ".join(docs.split()))
