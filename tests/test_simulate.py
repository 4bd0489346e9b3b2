"""kvcalc serve --simulate: the request-level simulation (kvcalc/serving/simulate.py) against schedules worked by
hand, step by step, with toy step times, and against the closed forms where they are exact."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.engines.scheduler import (
    sglang_prefill_first,
    trtllm_guaranteed_no_evict,
    vllm_v1,
)
from kvcalc.errors import KvcalcError
from kvcalc.formulas.workload import waves
from kvcalc.serving.closed_form import _colocated
from kvcalc.serving.simulate import (
    StepGrid,
    Workload,
    read_trace,
    simulate,
    simulate_schedule,
    weighted_percentiles,
)


class ToyStepper:
    """A step of B decodes beside a chunk of P prompt tokens takes a + b B + c P seconds (context plays no part)."""

    decode_gain, decode_q, pp, tp, ep = 1.0, 1, 1, 1, 1  # StepTimer's attributes the closed forms read (one GPU)

    def __init__(self, a=1.0, b=0.0, c=0.0):
        self.a, self.b, self.c = a, b, c

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return self.a + self.b * decode_batch + self.c * chunk


def run(policy, arrivals, ins, outs, *, pool_tokens=10_000, stepper=None, concurrency=None, **kw):
    grid = StepGrid(stepper or ToyStepper(), 64, 4096, policy.budget)
    w = Workload(np.array(arrivals, dtype=float), np.array(ins), np.array(outs), concurrency=concurrency)
    return simulate_schedule(policy, grid, w, pool_tokens=pool_tokens, log_steps=True, **kw)


def test_vllm_chunked_prefill_schedule_by_hand():
    """Budget 4 tokens a step, every step 1 s. A (6 in, 3 out) and B (2 in, 2 out) arrive at 0.
    step 1 (0-1): A's first 4 prompt tokens (the budget).                          B waits.
    step 2 (1-2): A's last 2 (running requests first), B's 2 in what is left: both first tokens at t = 2.
    step 3 (2-3): A decodes (2nd token), B decodes (2nd token: done at 3).
    step 4 (3-4): A decodes (3rd token: done at 4)."""
    r = run(vllm_v1(budget=4, max_seqs=8, block_size=1), [0, 0], [6, 2], [3, 2])
    assert r.log[0]["ids"] == [0] and r.log[0]["chunk"] == 4
    assert r.log[1]["ids"] == [0, 1] and r.log[1]["chunk"] == 4
    assert list(r.first_token_s) == [2.0, 2.0] and list(r.finish_s) == [4.0, 3.0]
    assert r.preemptions == 0


def test_vllm_preempts_the_last_running_request_and_recomputes_it():
    """Pool 10 tokens (block 1), budget 8, steps 1 s. A and B (4 in, 4 out) arrive at 0.
    step 1: both prompts (8 tokens): first tokens at 1; 4 + 4 blocks.
    step 2: both decode: 5 + 5 = 10 blocks, the pool exactly; 2 tokens each.
    step 3: each needs a 6th block: none free, so B (last in the running list) is preempted (its 5 blocks freed,
            prompt and 2 outputs to recompute, 6 tokens); A decodes its 3rd token. B cannot re-enter this step.
    step 4: B's 6 tokens need 6 blocks but A holds 7: B waits; A's 4th token: done at 4.
    step 5: B recomputes its 6 tokens and samples its 3rd; step 6: its 4th, done at 6."""
    r = run(vllm_v1(budget=8, max_seqs=8, block_size=1), [0, 0], [4, 4], [4, 4], pool_tokens=10)
    assert r.preemptions == 1
    assert list(r.first_token_s) == [1.0, 1.0]  # TTFT is the first token, not the recomputed one
    assert list(r.finish_s) == [4.0, 6.0]


def test_trtllm_admits_only_what_fits_at_full_length():
    """Pool 10 tokens: A (6 in, 3 out) reserves 9 blocks, so B (2 in, 2 out: 4) waits until A is done, with the
    budget of 4 tokens: A's prompt in steps 1-2 (first token 2), tokens at 3, 4 (done); B's prompt in step 5, its
    second token in step 6. Nothing is ever preempted."""
    r = run(trtllm_guaranteed_no_evict(budget=4, max_seqs=8, block_size=1), [0, 0], [6, 2], [3, 2], pool_tokens=10)
    assert list(r.first_token_s) == [2.0, 5.0] and list(r.finish_s) == [4.0, 6.0] and r.preemptions == 0


def test_sglang_prefill_first_stalls_the_decodes_where_vllm_mixes():
    """A (2 in, 4 out) at 0, B (2 in, 2 out) at 1.5 s; steps 1 s.
    vLLM: 1 A's prompt; 2 A decodes (B arrives mid-step); 3 A decodes beside B's prompt (B's first token at 3);
          4 both decode: both done at 4.
    SGLang: 1 A's prompt; 2 A decodes; 3 a prefill batch of B alone (A waits); 4 both decode: B done;
            5 A's last token: done at 5."""
    args = ([0, 1.5], [2, 2], [4, 2])
    v = run(vllm_v1(budget=8, max_seqs=8, block_size=1), *args)
    s = run(sglang_prefill_first(budget=8, max_seqs=8, block_size=1), *args)
    assert list(v.first_token_s) == [1.0, 3.0] and list(v.finish_s) == [4.0, 4.0]
    assert list(s.first_token_s) == [1.0, 3.0] and list(s.finish_s) == [5.0, 4.0]


def test_the_step_time_follows_the_batch():
    """Steps of 0.01 + 0.001 B + 1e-5 P s: A (100 in, 3 out) alone: 0.011 (prompt), then two decodes of 0.011 each
    (B = 1): first token at 0.011, done at 0.033."""
    r = run(vllm_v1(), [0], [100], [3], stepper=ToyStepper(0.01, 0.001, 1e-5))
    assert r.first_token_s[0] == pytest.approx(0.011) and r.finish_s[0] == pytest.approx(0.033)


def test_staggered_closed_loop_equals_the_closed_form_steady_state():
    """C = O = 8, I = 100, steps 0.01 + 0.001 B + 1e-5 P: once staggered, every step carries one prompt and 7
    decodes (tau = 0.018 s), each request takes 1 + 7 steps: TTFT = tau, TPOT = tau, latency 8 tau, and the closed
    form (formulas/workload.py steady_state, serving/closed_form.py _colocated) says exactly that. The first 8
    requests are staggered by hand: request i arrives at the end of step i, whose 1 + (i - 1) requests take
    0.01 + 0.001 (i - 1) + 0.001 s."""
    toy = ToyStepper(0.01, 0.001, 1e-5)
    c, i_len, o_len, n = 8, 100, 8, 200
    ends = np.cumsum([0.011 + 0.001 * k for k in range(c)])  # end of step k + 1 while the loop fills
    arrivals = np.full(n, np.nan)
    arrivals[0], arrivals[1:c] = 0.0, ends[:c - 1]
    r = run(vllm_v1(), arrivals, [i_len] * n, [o_len] * n, stepper=toy, concurrency=c)
    steady = slice(2 * c, n - c)
    tau = 0.01 + 0.001 * 7 + 1e-5 * 100
    ttft = (r.first_token_s - r.arrival_s)[steady]
    tpot = ((r.finish_s - r.first_token_s) / (o_len - 1))[steady]
    assert ttft == pytest.approx(np.full(len(ttft), tau)) and tpot == pytest.approx(np.full(len(tpot), tau))
    closed = _colocated(toy, c, i_len, o_len, 8192)
    assert closed["ttft_s"] == pytest.approx(tau) and closed["tpot_s"] == pytest.approx(tau)
    done = np.sort(r.finish_s)[steady]
    sim_rate = (len(done) - 1) / (done[-1] - done[0])
    assert sim_rate == pytest.approx(closed["requests_per_s"], rel=1e-9)


def test_waves_from_time_zero_match_the_waves_closed_form():
    """C = 8 requests of 1,000 in / 1 out in a closed loop from t = 0, budget 2,000, steps 1 + 1e-3 P s: the prompts
    enter two a step (n_p = 4 prefill steps of 3 s), so TTFT_j = s_j x 3 s, s_j = 1, 1, 2, 2, 3, 3, 4, 4 (median
    7.5 s) and the wave ends with the last pair at 12 s; formulas/workload.py waves() gives the same."""
    toy = ToyStepper(1.0, 0.0, 1e-3)
    w = waves(8, 1000, 1, 2000, prefill_step_s=3.0, decode_step_s=1.0)
    assert w["ttft_s"] == 7.5 and w["wave_s"] == 12.0
    r = run(vllm_v1(budget=2000), [0] * 8 + [np.nan] * 8, [1000] * 16, [1] * 16, stepper=toy, concurrency=8)
    first_wave = slice(0, 8)
    ttft = (r.first_token_s - r.arrival_s)[first_wave]
    assert list(ttft) == pytest.approx([3, 3, 6, 6, 9, 9, 12, 12]) and np.median(ttft) == w["ttft_s"]
    assert r.finish_s[first_wave].max() == w["wave_s"]
    assert r.first_token_s[8] == pytest.approx(15.0)  # the next wave's first pair: one prefill step later


def test_waves_with_decodes_lag_the_closed_form_by_the_decodes_budget_share():
    """With 4 outputs the decodes take one token each of the 2,000-token budget (vLLM schedules running requests
    first), so from the second prefill step on a prompt spills into the next step: step 2 holds 2 decodes, prompt
    2 and 998 tokens of prompt 3, whose first token comes a step later than waves() (which leaves the decodes out of
    the budget) says. Prompts 0-2 match it (3, 3, then 3 + 2.998 s: step 2's chunk is 1,998 tokens); the rest lag by
    at most one prefill step (3 s)."""
    toy = ToyStepper(1.0, 0.0, 1e-3)
    r = run(vllm_v1(budget=2000), [0] * 8, [1000] * 8, [4] * 8, stepper=toy, concurrency=8)
    ttft = r.first_token_s - r.arrival_s
    closed = np.ceil(np.arange(1, 9) * 1000 / 2000) * 3.0
    assert list(ttft[:3]) == pytest.approx([3.0, 3.0, 5.998]) and ttft[3] > closed[3]
    assert np.all(ttft >= closed - 0.02) and np.all(ttft <= closed + 3.0)  # steps lose a few decode tokens (ms)


def test_weighted_percentile_by_hand():
    """Steps of 10 ms streaming 3 tokens and of 40 ms streaming 1: the gaps are 10, 10, 10 and 40 ms, and
    `vllm bench serve` takes np.percentile of them (linear): p50 at rank 1.5 = 10 ms, p90 at rank 2.7 =
    10 + 0.7 x 30 = 31 ms, p100 = 40 ms."""
    v, w = np.array([0.04, 0.01]), np.array([1.0, 3.0])
    assert weighted_percentiles(v, w, [50, 90, 100]) == pytest.approx([0.01, 0.031, 0.04], rel=1e-12)


def test_seed_makes_runs_repeatable_and_different_seeds_differ():
    kw = {"input_len": 256, "output_len": 64, "arrivals": "poisson", "request_rate": 20.0, "num_prompts": 60, "range_ratio": 0.5,
              "engine": "roofline"}
    a, b, c = (simulate("llama-3-8b", "h100-sxm", seed=s, **kw) for s in (1, 1, 2))
    assert a["ttft_ms"] == b["ttft_ms"] and a["ttft_ms"] != c["ttft_ms"]


def test_simulated_run_has_sane_physics():
    """A 1-in-flight closed loop: TTFT at least one prefill step, TPOT at least a batch-1 decode step, and output
    tokens/s = 1 / TPOT-ish (one user)."""
    r = simulate("llama-3-8b", "h100-sxm", input_len=512, output_len=128, concurrency=1, num_prompts=5,
                 engine="roofline")
    assert r["completed"] == 5 and r["preemptions"] == 0
    assert r["ttft_ms"]["p50"] < r["e2e_ms"]["p50"]
    e2e = r["ttft_ms"]["mean"] + 127 * r["tpot_ms"]["mean"]
    assert r["e2e_ms"]["mean"] == pytest.approx(e2e, rel=1e-9)
    assert r["requests_per_s"] == pytest.approx(1e3 / r["e2e_ms"]["mean"], rel=1e-6)


def test_requests_longer_than_the_context_are_reported_not_truncated(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,input_len,output_len\n0,100,10\n0.1,9000,10\n0.2,100,10\n")
    r = simulate("llama-3-8b", "h100-sxm", arrivals="trace", trace=f, engine="roofline")  # context 8,192
    assert r["completed"] == 2 and r["rejected_over_context"] == 1 and "8,192" in r["rejected_over_context_note"]


@pytest.mark.parametrize("body, where", [
    ("arrival_s,input_len,output_len\n0,100,10\n0.5,abc,10\n", "line 3, field input_len"),
    ("arrival_s,input_len,output_len\n0,100,-4\n", "line 2, field output_len"),
    ("arrival_s,input_len,output_len\n1,100,10\n0.5,100,10\n", "line 3, field arrival_s"),
])
def test_bad_trace_is_one_line_naming_file_line_and_field(tmp_path, body, where):
    f = tmp_path / "bad.csv"
    f.write_text(body)
    with pytest.raises(KvcalcError, match=where) as e:
        read_trace(f)
    assert "bad.csv" in str(e.value) and "\n" not in str(e.value)


def test_jsonl_trace(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"arrival_s": 2.0, "input_len": 10, "output_len": 3}\n{"arrival_s": 2.5, "input_len": 20, '
                 '"output_len": 4}\n')
    w = read_trace(f)
    assert list(w.arrival_s) == [0.0, 0.5] and list(w.input_len) == [10, 20] and list(w.output_len) == [3, 4]


def test_cli_simulate_json_is_finite_and_bad_trace_exits_2(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "-i", "256", "--output-len", "1", "-n", "4", "--simulate",
                            "--num-prompts", "20", "-e", "roofline", "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tpot_ms"]["p50"] is None and "tpot_ms_note" in out and out["completed"] == 20
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,input_len,output_len\n0,x,1\n")
    r = runner.invoke(app, ["serve", "-m", "llama-3-8b", "--simulate", "--arrivals", "trace", "--trace", str(bad)])
    assert r.exit_code == 2 and "Traceback" not in r.output and "line 2" in r.output


def test_goodput_counts_requests_within_both_limits():
    r = simulate("llama-3-8b", "h100-sxm", input_len=512, output_len=64, concurrency=4, num_prompts=40,
                 engine="roofline", max_ttft_ms=1e9, max_tpot_ms=1e9)
    assert r["goodput_requests_per_s"] == pytest.approx(r["requests_per_s"]) and r["slo_met_at_percentile"]
    r = simulate("llama-3-8b", "h100-sxm", input_len=512, output_len=64, concurrency=4, num_prompts=40,
                 engine="roofline", max_ttft_ms=1e-6)
    assert r["goodput_requests_per_s"] == 0 and not r["slo_met_at_percentile"]
    assert math.isfinite(r["output_tokens_per_s"])


def test_length_conventions_of_the_two_benchmark_clients():
    """vLLM's random dataset: uniform on [floor(L (1 - r)), ceil(L (1 + r))]; SGLang's bench_serving: on
    [max(1, int(L r)), L], so r = 1 is fixed lengths."""
    from kvcalc.serving.simulate import lengths

    rng = np.random.default_rng(0)
    v = lengths(20_000, 1000, 0.15, rng)
    assert v.min() == 850 and v.max() == 1150
    assert list(lengths(5, 3200, 1.0, rng, client="sglang")) == [3200] * 5
    s = lengths(20_000, 1000, 0.5, rng, client="sglang")
    assert s.min() == 500 and s.max() == 1000


def test_serving_ledger_scores_random_and_sharegpt_rows_and_skips_unknown_datasets(tmp_path):
    from kvcalc.ledgers.serving_sim import (
        COLUMNS,
        is_serving_sim_ledger,
        read_rows,
        score,
        summary,
    )

    f = tmp_path / "ledger.csv"
    row = dict.fromkeys(COLUMNS, "")
    row.update(id="a", engine="vllm", model="llama-3-8b", gpu="h100-sxm", tp="1", pp="1", ep="1", dp_attention="0",
               weight_dtype="bf16", kv_dtype="bf16", dataset="random", input_len="512", output_len="64",
               num_prompts="16", concurrency="4", output_tokens_per_s="1000", median_ttft_ms="50",
               note="vllm bench serve")
    share = {**row, "id": "b", "dataset": "sharegpt", "input_len": "", "output_len": ""}
    sonnet = {**row, "id": "c", "dataset": "sonnet"}
    f.write_text(",".join(COLUMNS) + "\n" + "\n".join(",".join(r[c] for c in COLUMNS) for r in (row, share, sonnet))
                 + "\n")
    assert is_serving_sim_ledger(f)
    res = score(read_rows(f))
    skipped = [r for r in res if "skipped" in r]
    assert [r["id"] for r in skipped] == ["c"] and "sonnet" in skipped[0]["skipped"]
    assert {r["id"] for r in res if r.get("metric") == "output_tokens_per_s"} == {"a", "b"}
    tok = next(r for r in res if r.get("metric") == "output_tokens_per_s")
    assert tok["sim_error_pct"] == pytest.approx((tok["simulated"] - 1000) / 10, abs=0.05)
    assert tok["vendor"] == "NVIDIA" and {s["rows"] for s in summary(res)} >= {"all", "engine=vllm", "vendor=NVIDIA"}


def test_disaggregated_at_low_load_is_the_closed_forms_prefill_transfer_and_decode():
    """One request at a time (0.05 requests/s): TTFT = the prompt's prefill step + its KV over the link, TPOT = a
    batch-1 decode step, as serve --disaggregate computes them (within the grid's interpolation, 2 %)."""
    from kvcalc.serving.closed_form import serve

    kw = {"input_len": 2048, "output_len": 64, "disaggregate": (1, 1), "engine": "roofline"}
    sim = simulate("llama-3-8b", "h100-sxm", arrivals="poisson", request_rate=0.05, num_prompts=20, **kw)
    closed = serve("llama-3-8b", "h100-sxm", request_rate=0.05, **kw)
    assert sim["kv_transfer_ms_mean"] == pytest.approx(closed["assumptions"]["kv_transfer_ms"])
    assert sim["ttft_ms"]["p50"] == pytest.approx(closed["ttft_ms"], rel=0.02)
    assert sim["tpot_ms"]["p50"] == pytest.approx(closed["tpot_ms"], rel=0.02)
    assert sim["gpus"] == 2


def test_disaggregated_simulation_refuses_a_missing_link_and_a_closed_loop():
    with pytest.raises(KvcalcError, match="interconnect_bandwidth_GBps"):
        simulate("llama-3-8b", "gh200", input_len=512, output_len=16, arrivals="poisson", request_rate=1.0,
                 num_prompts=4, disaggregate=(1, 1), engine="roofline")
    with pytest.raises(KvcalcError, match="open-loop"):
        simulate("llama-3-8b", "h100-sxm", input_len=512, output_len=16, concurrency=4, num_prompts=4,
                 disaggregate=(1, 1), engine="roofline")


def test_prefix_cache_hits_skip_their_prefill():
    """Budget 8 tokens, block 4, steps 1 s; one request of 16 in / 2 out. Without hits its prompt takes 2 steps
    (first token at 2, done at 3); with half the prompt cached (8 tokens, two whole blocks) one step (1, then 2)."""
    args = ([0], [16], [2])
    cold = run(vllm_v1(budget=8, block_size=4), *args)
    warm = run(vllm_v1(budget=8, block_size=4), *args, prefix_hit_rate=0.5)
    assert (cold.first_token_s[0], cold.finish_s[0]) == (2.0, 3.0)
    assert (warm.first_token_s[0], warm.finish_s[0]) == (1.0, 2.0)


def test_speculative_decoding_yields_E_tokens_a_step():
    """E = 2.5 tokens a verify step of 3: a request of 4 in / 6 out has its first token from the prefill (t = 1)
    and its other 5 in ceil(5 / 2.5) = 2 steps: done at 3 s."""
    r = run(vllm_v1(), [0], [4], [6], verify_tokens=3, tokens_per_step=2.5)
    assert r.first_token_s[0] == 1.0 and r.finish_s[0] == 3.0


def test_poisson_arrivals_follow_the_rate_and_bursts_arrive_together():
    from kvcalc.serving.simulate import make_workload

    w = make_workload("poisson", 20_000, 10, 10, request_rate=50.0, seed=3, client="sglang")
    assert w.arrival_s[0] == 0 and np.all(np.diff(w.arrival_s) >= 0)
    assert (len(w.arrival_s) - 1) / w.arrival_s[-1] == pytest.approx(50.0, rel=0.03)  # 20,000 gaps: 1 / sqrt(n)
    # vllm bench serve's client (benchmarks/serve.py get_request): the cumulative delays rescaled so that the last
    # request goes out at exactly N / rate, its clock started before the first gap (the twenty-fifth audit, S1)
    v = make_workload("poisson", 20_000, 10, 10, request_rate=50.0, seed=3)
    assert v.arrival_s[-1] == pytest.approx(20_000 / 50.0, rel=1e-12) and v.start_s == 0.0
    assert 0 < v.arrival_s[0] and np.all(np.diff(v.arrival_s) >= 0)
    b = make_workload("burst", 40, 10, 10, request_rate=4.0, burst_size=8, seed=3)
    assert len(np.unique(b.arrival_s)) == 5 and np.all(np.bincount(np.unique(b.arrival_s, return_inverse=True)[1]) == 8)


@pytest.mark.parametrize("policy", [sglang_prefill_first(budget=8, block_size=1), vllm_v1(budget=8, block_size=1),
                                    trtllm_guaranteed_no_evict(budget=8, block_size=1)])
def test_a_request_larger_than_the_pool_is_an_error_not_a_hang(policy):
    """Pool 6 tokens, one request of 4 in / 10 out: SGLang and TensorRT-LLM never admit it, vLLM admits it and
    then cannot hold its tokens; each says so in one line."""
    with pytest.raises(KvcalcError, match="KV pool cannot"):
        run(policy, [0], [4], [10], pool_tokens=6)


def test_sglang_retracts_when_decodes_outgrow_the_pool():
    """Pool 16 tokens (page 1), budget 8, steps 1 s; A (4 in / 6 out) and B (5 in / 6 out) at 0; new_token_ratio
    held at 0.1. PrefillAdder.add_one_req reserves an admitted request's prompt and output in full, a running one's
    output at the ratio (the twelfth audit, S2; this test had let B in beside A at 0.1 x its own output):
    step 1: A enters (4 + 6 = 10 < 16); B does not (4 + 6 + 5 + 6 = 21): A's first token at 1.
    step 2: B enters beside A running (4 held + 0.1 x 5 + 5 + 6 = 15.5 < 16): its prompt alone, first token at 2.
    steps 3-5: both decode (11, 13, 15 tokens held).
    step 6: each needs one more (17 > 16): with 4 tokens generated each, SGLang retracts the longer prompt, B,
            freeing its 8; the ratio becomes (4 + 20) / 6 -> 1. A decodes at 6 and 7 (done at 7); B (5 + 4 to
            recompute, 2 to come: 8 + 1 + 9 + 2 >= 16) waits for it.
    steps 8-9: B recomputes its 9 tokens in chunks of 8 and 1 and samples its 5th; 10: its 6th (done at 10)."""
    from dataclasses import replace

    policy = replace(sglang_prefill_first(budget=8, block_size=1), init_new_token_ratio=0.1,
                     min_new_token_ratio=0.1, new_token_ratio_decay=0.0)
    r = run(policy, [0, 0], [4, 5], [6, 6], pool_tokens=16)
    assert r.preemptions == 1 and list(r.first_token_s) == [1.0, 2.0] and list(r.finish_s) == [7.0, 10.0]


def test_vllm_multi_step_scheduling_makes_a_new_request_wait_for_the_block():
    """vLLM --num-scheduler-steps 4; budget 8, every step 1 s. A (1 in, 10 out) at 0, B (1 in, 2 out) at 2.5.
    step 1 (0-1): A's prompt, its first token at 1; the scheduler then hands out a block of 4 decode steps (1-5).
    B, arriving at 2.5, is scheduled when the block ends: step 6 (5-6) holds A's decode and B's prompt, B's first
    token at 6 and its second at 7. Without multi-step B enters the step after its arrival (3-4): tokens at 4 and
    5. A makes one token a step either way: done at 1 + 9 = 10."""
    from dataclasses import replace

    args = ([0, 2.5], [1, 1], [10, 2])
    multi = run(replace(vllm_v1(budget=8, block_size=1), multi_step=4), *args)
    single = run(vllm_v1(budget=8, block_size=1), *args)
    assert list(multi.first_token_s) == [1.0, 6.0] and list(multi.finish_s) == [10.0, 7.0]
    assert list(single.first_token_s) == [1.0, 4.0] and list(single.finish_s) == [10.0, 5.0]
    # V0 (vLLM 0.6, where multi-step came from): the same wait, then B's prompt in a step of its own (5-6), which A
    # sits out: A's 10th token at 11
    from kvcalc.engines.scheduler import vllm_v0

    v0 = run(replace(vllm_v0(budget=8, block_size=1), multi_step=4), *args)
    assert list(v0.first_token_s) == [1.0, 6.0] and list(v0.finish_s) == [11.0, 7.0]


class PieceStepper(ToyStepper):
    """A step of a chunk whose prompts' pieces are prompt_len tokens each: a + c x chunk x piece, the piece the
    whole chunk where none is given (causal attention's sum over the prompts of q^2, up to the linear term)."""

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return self.a + self.c * chunk * (min(chunk, prompt_len) if prompt_len else chunk)


def test_a_step_of_several_prompts_is_timed_by_their_pieces():
    """Budget 8, every step 1 s + 1/32 s x chunk x piece. Two prompts of 4 tokens (1 output token each) share the
    first step: its piece is (4^2 + 4^2) / 8 = 4, so it takes 1 + 8 x 4 / 32 = 2 s (as one 8-token sequence, 3 s).
    Prompts of 6 and 2 tokens: the piece is (36 + 4) / 8 = 5 tokens, 1 + 40 / 32 = 2.25 s: sum of the squared
    pieces kept exactly, between the grid's pieces 4 and 8."""
    policy = vllm_v1(budget=8, block_size=1)
    even = run(policy, [0, 0], [4, 4], [1, 1], stepper=PieceStepper(a=1.0, c=1 / 32))
    assert list(even.first_token_s) == [2.0, 2.0]
    uneven = run(policy, [0, 0], [6, 2], [1, 1], stepper=PieceStepper(a=1.0, c=1 / 32))
    assert list(uneven.first_token_s) == pytest.approx([2.25, 2.25], rel=1e-12)
    grid = StepGrid(PieceStepper(a=1.0, c=1e-6), 4, 4096, 8192)
    assert grid.seconds(0, 0, 4096, 0, 100.0) == pytest.approx(1.0 + 1e-6 * 4096 * 100, rel=1e-12)  # 64 < 100 < 128
    assert grid.seconds(0, 0, 4096, 0, 5000.0) == grid.seconds(0, 0, 4096, 0) == pytest.approx(1.0 + 1e-6 * 4096 ** 2)


def test_pooled_data_parallel_replicas_spread_a_full_chunk_but_not_one_prompt():
    """8 data-parallel attention replicas pooled into one scheduler (budget 8 x 8192): StepTimer runs the fullest
    replica's piece, max(chunk / 8, min(chunk, prompt_len)). With the per-replica budget as prompt_len, the full
    pooled chunk of 65,536 tokens costs one replica's 8,192 (c = 1 ms a token: 8.192 s + a = 1 s), and one prompt of
    3,200 tokens stays whole on its replica (3.2 s + 1 s)."""

    class ReplicaStepper(ToyStepper):
        def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
            local = max(chunk / 8, min(chunk, prompt_len)) if prompt_len else chunk
            return self.a + self.c * local

    grid = StepGrid(ReplicaStepper(a=1.0, c=1e-3), 4, 4096, 65_536, prompt_len=8192)
    assert grid.seconds(0, 0, 65_536, 0) == pytest.approx(1.0 + 8.192)
    assert grid.seconds(0, 0, 3200, 0) == pytest.approx(1.0 + 3.2, rel=0.02)  # interpolated between grid chunks


def test_vllm_v0_runs_prompts_first_in_steps_of_their_own():
    """vLLM V0 without chunked prefill; budget 4, every step 1 s. A (2 in, 3 out) at 0, B (2 in, 2 out) at 1.5.
    step 1 (0-1): A's prompt alone: first token at 1.      step 2 (1-2): A decodes (2nd token); B arrives at 1.5.
    step 3 (2-3): B's prompt alone, A waits: B's first token at 3.
    step 4 (3-4): A (3rd token) and B (2nd) decode: both done at 4.
    V1's mixed step 3 carries A's decode beside B's prompt: A done at 3, B's tokens at 3 and 4."""
    from kvcalc.engines.scheduler import vllm_v0

    args = ([0, 1.5], [2, 2], [3, 2])
    v0 = run(vllm_v0(budget=4, block_size=1), *args)
    v1 = run(vllm_v1(budget=4, block_size=1), *args)
    assert list(v0.first_token_s) == [1.0, 3.0] and list(v0.finish_s) == [4.0, 4.0]
    assert list(v1.first_token_s) == [1.0, 3.0] and list(v1.finish_s) == [3.0, 4.0]
    # the steps with prompts (decode-only steps are advanced in blocks, not logged): no decode rides along in V0
    assert [(e["t_end"], e["chunk"], e["decodes"]) for e in v0.log] == [(1.0, 2, 0), (3.0, 2, 0)]


class _PointByPoint:
    """A StepTimer behind a wrapper that StepGrid does not recognise, so it samples one grid point a call."""

    def __init__(self, stepper):
        self.inner = stepper

    def seconds(self, *args, **kwargs):
        return self.inner.seconds(*args, **kwargs)


@pytest.mark.parametrize("model, gpu, layout", [
    ("llama-3-8b", "h100-sxm", {}),
    ("llama-3-70b", "h100-sxm", {"tp": 2, "pp": 2}),                       # micro-batches over the stages
    ("deepseek-v3", "h200", {"ep": 8, "speculate": "mtp=1"}),              # expert parallel, pooled, speculative
    ("nemotron-h-8b", "h100-sxm", {}),                                     # mamba layers beside attention
    ("gpt-oss-20b", "h100-sxm", {}),                                       # sliding-window layers, MoE
])
def test_the_grid_sampled_in_array_calls_is_the_grid_sampled_point_by_point(model, gpu, layout):
    """StepGrid samples a StepTimer with numpy arrays (the decodes and the chunk all zero or all nonzero per call);
    every cell must be what one scalar call a point gives, up to numpy's vectorised pow rounding differently from
    the C library's in the last bit (~1e-16 relative, so 1e-12 here)."""
    from kvcalc.engines.memory import check_vllm_version
    from kvcalc.serving.closed_form import deployment

    kw = {"tp": 1, "pp": 1, "ep": 1, "speculate": None, **layout}
    d = deployment(model, gpu, input_len=1000, output_len=200, engine="vllm", weight_dtype="auto", kv_dtype="bf16",
                   memory_utilization=0.9, step_tokens=8192, vllm_runner="auto",
                   version=check_vllm_version("latest", "vllm"), cuda_graph_bytes=None, flashinfer_sampler=False, **kw)
    prompt_len = 8192 // (kw["ep"] // kw["tp"]) if kw["ep"] > kw["tp"] else None
    args = (96, 3000, 8192)
    fast = StepGrid(d["stepper"], *args, prompt_len=prompt_len, chunks=(1000, 7))
    slow = StepGrid(_PointByPoint(d["stepper"]), *args, prompt_len=prompt_len, chunks=(1000, 7))
    assert fast.k.tolist() == slow.k.tolist() and 7.0 in fast.k
    np.testing.assert_allclose(fast.t, slow.t, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fast.corr, slow.corr, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(fast.piece_corr, slow.piece_corr, rtol=1e-12, atol=1e-18)
    assert np.all(fast.t > 0) and fast.corr[0].tolist() == [0.0] * len(fast.kc)  # no chunk: no correction


def test_decode_steps_past_the_grid_extend_its_last_slope():
    """A toy step of 1 ms + 2 us per cached token (linear, so the grid is exact): inside the grid (contexts up to
    4,096) np.interp gives 1 + 0.002 x ms; beyond it the last cell's slope goes on (8,192: 1 + 16.384 ms) where
    np.interp alone would hold 9.192 ms. A scalar step agrees; no contexts, no steps."""

    class ContextStepper:
        def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
            return 1e-3 + 2e-6 * context

    grid = StepGrid(ContextStepper(), 8, 4096, 512)
    got = grid.decode_seconds(4, np.array([100.0, 4096.0, 8192.0]))
    np.testing.assert_allclose(got, [1.2e-3, 9.192e-3, 17.384e-3], rtol=1e-12)
    np.testing.assert_allclose(grid.decode_seconds(4, np.array([100.0, 3000.0])), [1.2e-3, 7e-3], rtol=1e-12)
    assert grid.seconds(4, 3000.0, 0, 0) == pytest.approx(7e-3, rel=1e-12)
    assert grid.decode_seconds(4, np.empty(0)).shape == (0,)
