"""Regression tests for the tenth hostile audit (docs/validation.md, "Tenth hostile audit"), each named after its
finding, and for the ninth audit's items left then and closed in this round."""

from __future__ import annotations

import pytest

from kvcalc.engines.scheduler import vllm_v1
from kvcalc.formulas.speculative import cut_verify_tokens, expected_tokens, implied_alpha
from kvcalc.speculation import parse
from tests.test_simulate import run


def test_s2_a_verify_the_budget_cuts_yields_only_its_drafts_left():
    """vLLM V1 trims a running request's drafts to the tokens the budget lets through (Scheduler.schedule:
    num_scheduled_spec_tokens = num_new_tokens + num_computed_tokens - num_tokens; del spec_token_ids[...]).
    Budget 4, every step 1 s, k = 2 drafts at alpha 0.5: a full verify of 3 yields 1 + 0.5 + 0.25 = 1.75 tokens, one
    cut to 1 token (no draft left) yields 1. A and B (2 in; 3 and 4 out) prefill together in step 1 (first tokens
    at 1 s). Step 2: A verifies 3 (2.75 tokens so far), B gets the 1 token left (2). Step 3: A 3 more (4.5: done at
    3 s), B 1 (3). Step 4: B alone verifies 3 (4.75: done at 4 s). Crediting the cut verify 1.75 had B done at 3 s."""
    sp = parse("draft=llama-3.2-1b,k=2,alpha=0.5")
    assert sp.yields() == (0.0, 1.0, 1.5, 1.75)
    r = run(vllm_v1(budget=4, max_seqs=8, block_size=1), [0, 0], [2, 2], [3, 4], verify_tokens=3,
            tokens_per_step=1.75, cut_yields=sp.yields())
    assert list(r.first_token_s) == [1.0, 1.0] and list(r.finish_s) == [3.0, 4.0]


def test_s2_a_measured_acceptance_is_cut_at_its_implied_alpha():
    """accepted=2.2 with k = 3: the i.i.d. alpha with 1 + a + a^2 + a^3 = 2.2 (a = 0.6 gives 2.176, 0.61 gives 2.2079),
    and a verify cut to 2 tokens yields 1 + a."""
    a = implied_alpha(2.2, 3)
    assert 0.60 < a < 0.61 and expected_tokens(a, 3) == pytest.approx(2.2, abs=1e-9)
    assert parse("eagle,k=3,accepted=2.2").yields()[2] == pytest.approx(1 + a)
    assert cut_verify_tokens(0.5, 0) == 0.0


def test_s5_kv_transfers_queue_on_the_prefill_replicas_links():
    """Ready at 0, 0 and 5 s, each 2 s on the link, sent first in, first out: done at 2, 4 and 7 s; one ready after
    the link is free starts at once (ready 10: done 12)."""
    from kvcalc.serving.simulate import link_queue

    assert list(link_queue([0.0, 0.0, 5.0, 10.0], [2.0, 2.0, 2.0, 2.0])) == [2.0, 4.0, 7.0, 12.0]
    assert list(link_queue([3.0, 1.0], [1.0, 4.0])) == [6.0, 5.0]  # in the order they are ready


def test_s5_two_prompts_prefilled_together_reach_decode_one_transfer_apart(tmp_path):
    """Two 512-token prompts at t = 0 prefill in one step on the prefill GPU; their caches then cross its link one
    after the other, so the TTFTs differ by one transfer T (kv_transfer_ms_mean): over the two, p50 = a + T / 2 and
    p99 = a + 0.99 T (linear interpolation), p99 - p50 = 0.49 T. Both had arrived together, p99 = p50."""
    from kvcalc.serving.simulate import simulate

    trace = tmp_path / "two.csv"
    trace.write_text("arrival_s,input_len,output_len\n0,512,16\n0,512,16\n")
    r = simulate("llama-3-8b", "h100-sxm", arrivals="trace", trace=str(trace), disaggregate=(1, 1), engine="roofline")
    assert r["ttft_ms"]["p99"] - r["ttft_ms"]["p50"] == pytest.approx(0.49 * r["kv_transfer_ms_mean"], rel=1e-6)


def test_s6_the_closed_form_charges_whole_verify_steps_as_the_simulator_does():
    """One request of 100 in / 20 out with EAGLE k = 5 at alpha 0.8: a verify yields E = (1 - 0.8^6) / 0.2 = 3.6893
    tokens, so the 19 after the first take ceil(19 / 3.6893) = 6 whole steps, TPOT = 6 / 19 of a step (the closed
    form had charged 19 / E = 5.15 steps, 14 % under the simulator's TPOT)."""
    import math
    import warnings

    from kvcalc.formulas.workload import step_yield
    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.simulate import simulate

    e = (1 - 0.8 ** 6) / 0.2
    assert step_yield(e, 20) == pytest.approx(19 / 6) and math.ceil(19 / e) == 6
    assert step_yield(1.0, 20) == 1.0 and step_yield(3.3, 2) == 1.0  # no speculation; one token left, one step
    kw = dict(input_len=100, output_len=20, engine="vllm", speculate="eagle,k=5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed = serve("llama-3.1-8b", "a100-80gb", concurrency=1, **kw)
        sim = simulate("llama-3.1-8b", "a100-80gb", concurrency=1, num_prompts=5, **kw)
    assert closed["tpot_ms"] == pytest.approx(sim["tpot_ms"]["p50"], rel=1e-3)
