"""The twelfth hostile audit, part S (the request-level simulator): each finding's reproducer against the numbers
worked by hand from the engine rule it cites (audit report S2, S4, S6, S8, S10, S13)."""

import warnings

import numpy as np
import pytest

from kvcalc.engines.scheduler import SGLANG_CLIP_MAX_NEW_TOKENS, scheduler_policy
from kvcalc.serving.simulate import Workload, simulate, simulate_schedule


class OneSecond:
    """A toy step timer: every step (prefill, decode or mixed) takes 1 s, so only the schedule shows."""

    def seconds(self, b, c, k, kc, piece=None):
        return 1.0

    def decode_seconds(self, d, ctx):
        return np.ones(len(ctx))


def quiet_simulate(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate(*args, **kw)


def admitted_in_one_batch(pool, held, reserve_each, room_for_running=0.0):
    """How many requests SGLang's PrefillAdder.add_one_req takes into one prefill batch: each reserves its prompt and
    its clipped output in full (reserve_each) and is refused once it no longer fits strictly in what is left of the
    pool (`total_tokens >= rem_total_tokens`) after the blocks held, the running requests' reserve and the batch's."""
    m = 0
    while held + room_for_running + (m + 1) * reserve_each < pool:
        m += 1
    return m


@pytest.mark.parametrize("out", [3000, 6000, 16000])
def test_s2_sglang_reserves_a_new_requests_clipped_output_in_full(out):
    """S2: 16 requests of 100 + O tokens at t = 0, a pool of 30,000 tokens (page 1). SGLang's PrefillAdder
    (schedule_policy.py add_one_req) reserves each admitted request's prompt + min(O, CLIP_MAX_NEW_TOKENS = 4,096) in
    full: 100 + 3,000 -> 9 in the first batch (kvcalc had charged 100 + 0.7 x 3,000 and taken 13), 100 + 4,096 -> 7
    for O = 6,000 (it had taken 6) and O = 16,000. The next prefill batch sees them running, each reserving
    min(O - 1, 4,096) x 0.7 (_get_running_request_total_token_offset) beside 100 tokens held."""
    w = Workload(np.zeros(16), np.full(16, 100), np.full(16, out))
    r = simulate_schedule(scheduler_policy("sglang"), OneSecond(), w, pool_tokens=30000, log_steps=True)
    each = 100 + min(out, SGLANG_CLIP_MAX_NEW_TOKENS)
    first = admitted_in_one_batch(30000, 0, each)
    assert first == {3000: 9, 6000: 7, 16000: 7}[out]
    assert len(r.log[0]["ids"]) == first
    running = first * 0.7 * min(out - 1, SGLANG_CLIP_MAX_NEW_TOKENS)
    second = admitted_in_one_batch(30000, first * 100, each, running)
    assert r.log[1]["decodes"] == 0 and len(r.log[1]["ids"]) == second  # prefill first: another prefill batch
    if out == 16000:
        assert second == 2  # 700 + 7 x 2,867.2 + 2 x 4,196 < 30,000 <= ... + 3 x 4,196


def test_s13_sglang_puts_its_new_token_ratio_back_when_idle():
    """S13: a burst of 20 x (100 + 1,000) at t = 5,000 s on a pool of 10,000 tokens, with and without one 10 + 700
    request at t = 0 whose 699 decode steps take the ratio to its floor, 0.098. SGLang resets the ratio to 0.7
    whenever its scheduler has nothing to run (scheduler.py self_check_during_idle), so the burst runs alike: a
    first batch of 9 (each 1,100 in full), then, with those 9 running (900 tokens held, 0.7 x 999 each to come),
    a second batch of 2. At the decayed 0.098 it had taken 7."""
    first = admitted_in_one_batch(10000, 0, 1100)
    second = admitted_in_one_batch(10000, first * 100, 1100, first * 0.7 * 999)
    assert (first, second) == (9, 2)
    assert admitted_in_one_batch(10000, first * 100, 1100, first * 0.098 * 999) == 7  # the decayed ratio's
    for lead in (False, True):
        a = ([0.0] if lead else []) + [5000.0] * 20
        w = Workload(np.array(a), np.array(([10] if lead else []) + [100] * 20),
                     np.array(([700] if lead else []) + [1000] * 20))
        r = simulate_schedule(scheduler_policy("sglang"), OneSecond(), w, pool_tokens=10000, log_steps=True)
        burst = [step for step in r.log if step["t_end"] > 5000]
        assert [len(step["ids"]) for step in burst[:2]] == [first, second]


def test_s8_a_one_token_request_leaves_at_the_prefill_pool():
    """S8: 50 requests of 1,000 + 1 at 5/s, disaggregated 1:1. Each is done at its first token, so the decode pool
    runs nothing: the steps are the prefill pool's, those the colocated run takes for the same prompts (one a
    prompt, or fewer where two share a step), and no inter-token latency is streamed (it had run 50 phantom decode steps, 99 in all, and
    reported a 7.32 ms ITL); the prefill pool's running requests count in max_running (it had said 0)."""
    args = dict(input_len=1000, output_len=1, arrivals="poisson", request_rate=5, num_prompts=50)
    split = quiet_simulate("llama-3.1-8b", "h100-sxm", disaggregate=(1, 1), **args)
    together = quiet_simulate("llama-3.1-8b", "h100-sxm", **args)
    assert split["steps"] == together["steps"] and 45 <= split["steps"] <= 50
    assert split["itl_ms"]["p50"] is None and split["tpot_ms"]["p50"] is None
    assert split["max_running"] >= 1 and split["completed"] == 50


def test_s4_a_pipelined_closed_loop_releases_at_the_finish_it_reports():
    """S4: under --pp a closed loop's client sends its next request when its answer leaves the last stage. By hand,
    pp 2, two clients, 1 + 1-token requests, 1 s micro-batches: both prompts fit one budget, so one micro-batch
    holds them (the thirty-eighth audit, Serve 1: the engines do not spread them), out at 1 s; the next two arrive
    then and are out at 2 s. With a budget of 1 token each takes a micro-batch, the second entering half a second
    behind: out at 1 and 1.5 s, and their successors at 2 and 2.5 s."""
    w = Workload(np.array([0.0, 0.0, np.nan, np.nan]), np.ones(4, dtype=np.int64), np.ones(4, dtype=np.int64),
                 concurrency=2)
    r = simulate_schedule(scheduler_policy("vllm"), OneSecond(), w, pool_tokens=1000, pipeline_stages=2)
    assert list(r.finish_s[:2]) == [1.0, 1.0]
    assert list(r.arrival_s[2:]) == [1.0, 1.0] and list(r.finish_s[2:]) == [2.0, 2.0]
    w = Workload(np.array([0.0, 0.0, np.nan, np.nan]), np.ones(4, dtype=np.int64), np.ones(4, dtype=np.int64),
                 concurrency=2)
    r = simulate_schedule(scheduler_policy("vllm", budget=1, max_seqs=8), OneSecond(), w, pool_tokens=1000,
                          pipeline_stages=2)
    assert list(r.finish_s) == [1.0, 1.5, 2.0, 2.5] and list(r.arrival_s[2:]) == [1.0, 1.5]


@pytest.mark.parametrize(("model", "engine", "out", "clients", "prompts"),
                         [("gemma-2-9b", "trtllm", 1, 3, 60), ("llama-3.1-8b", "vllm", 2, 16, 400)])
def test_s4_little_law_holds_under_pp(model, engine, out, clients, prompts):
    """S4's reproducers: requests/s x mean E2E, the requests in flight by Little's law, is at most the closed loop's
    clients (it had been 3.70 for 3 and 19.13 for 16)."""
    d = quiet_simulate(model, "h100-sxm", input_len=500, output_len=out, arrivals="closed", concurrency=clients,
                       num_prompts=prompts, pp=2, engine=engine, seed=1)
    in_flight = d["requests_per_s"] * d["e2e_ms"]["mean"] / 1e3
    assert clients * 0.97 < in_flight <= clients * (1 + 1e-9)


def test_s10_ep_reports_each_replicas_flags():
    """S10: --ep 4 over --tp 1 is 4 data-parallel attention replicas, which the simulator pools into one scheduler
    of 4 x 4,096 tokens and 4 x 8 requests; step_tokens and max_num_seqs report the flags as given (each replica's:
    vllm serve --max-num-batched-tokens 4096 --max-num-seqs 8), the pooled ones in a note (they had been 16,384 and
    32 under the flags' names)."""
    d = quiet_simulate("qwen3-30b-a3b", "h100-sxm", ep=4, input_len=1000, output_len=20, arrivals="closed",
                       concurrency=16, num_prompts=32, max_num_seqs=8, step_tokens=4096, engine="vllm")
    assert (d["step_tokens"], d["max_num_seqs"], d["data_parallel_replicas"]) == (4096, 8, 4)
    assert "16,384 tokens a step, 32 requests" in d["data_parallel_note"]
    assert d["max_running"] <= 4 * 8


def test_s6_the_timeline_draws_a_busy_engine_busy():
    """S6: a closed loop of 4 one-token requests, 1 s steps and a 0.5 s client overhead: the engine prefills 4
    prompts in 0-1, 1.5-2.5, ... (5 steps for 20 requests, idle 0.5 s between them). Drawn as plot.py
    simulation_timeline draws it (each value held until the next point, where="post"), "running" is 4 for 5 s of
    the 7 s and 0 in the four gaps (it had been 0 throughout, the steps' own counts lasting no time)."""
    w = Workload(np.array([0.0] * 4 + [np.nan] * 16), np.ones(20, dtype=np.int64), np.ones(20, dtype=np.int64),
                 concurrency=4)
    r = simulate_schedule(scheduler_policy("vllm"), OneSecond(), w, pool_tokens=1000, client_overhead_s=0.5)
    t, running = r.timeline_s, r.running
    held = np.diff(t)  # where="post": running[i] from t[i] to t[i + 1]
    assert r.steps == 5 and t[-1] == pytest.approx(5 * 1.0 + 4 * 0.5)
    assert held[running[:-1] == 4].sum() == pytest.approx(5.0)
    assert held[running[:-1] == 0].sum() == pytest.approx(2.0)
    assert running.max() == 4 and running[-1] == 0
