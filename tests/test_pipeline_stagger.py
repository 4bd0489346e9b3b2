"""Under pipeline parallelism the simulator forms micro-batches as the engines do (the thirty-eighth audit, Serve 1:
vLLM V1's batch queue, SGLang's event_loop_pp, TensorRT-LLM's _executor_loop_pp): each with its own token budget,
formed while fewer than pp are in the pipeline, entering the first stage when the one before leaves it, its tokens
out a whole depth later; a request runs again only once its micro-batch is out, so requests admitted together stay
together. The closed form's waves spread a step over min(decodes + prompts, pp, the budgets the wave's prompts fill)
micro-batches, its prompts a mean place (m - 1) / 2 x step / pp behind the first (audit 23, the fresh-audit gap: a
burst at --pp 2 had come out with one prompt's TTFT). Worked by hand with toy step times, then against the speed of
light of real models."""

import numpy as np
import pytest

from kvcalc import serve
from kvcalc.engines.scheduler import vllm_v1
from kvcalc.formulas.workload import pipeline_exits, waves
from kvcalc.serving.simulate import StepGrid, Workload, simulate, simulate_schedule


class Constant:
    """Every step takes 1 s, whatever it holds (so the lag is k / pp of it)."""

    decode_gain, decode_q = 1.0, 1

    def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
        return 1.0


def run(n_prompts, stages, outs=3, ins=100, budget=4096):
    policy = vllm_v1(budget=budget, max_seqs=64, block_size=1)
    grid = StepGrid(Constant(), 64, 16384, policy.budget)
    w = Workload(np.zeros(n_prompts), np.full(n_prompts, ins), np.full(n_prompts, outs))
    return simulate_schedule(policy, grid, w, pool_tokens=100_000, pipeline_stages=stages)


def test_two_prompts_over_two_stages_by_hand():
    """A and B (100 tokens each) arrive together and fit one budget of 4,096: one micro-batch holds both (vLLM's
    schedule() admits every waiting request that fits), through both stages in 1 s; they decode together, a token a
    second: first tokens at 1 s, 3rd at 3 s, as without stages. With a budget of 100 each takes a micro-batch: A's
    enters at 0 and leaves at 1 s, B's enters as A's leaves the first stage (0.5 s) and leaves at 1.5 s; each then
    decodes in its own micro-batch, a second apart: 3rd tokens at 3 and 3.5 s."""
    r = run(2, 2)
    assert list(r.first_token_s) == [1.0, 1.0] and list(r.finish_s) == [3.0, 3.0]
    apart = run(2, 2, budget=100)
    assert list(apart.first_token_s) == [1.0, 1.5] and list(apart.finish_s) == [3.0, 3.5]
    one = run(2, 1)  # without pipeline stages both come out at the step's end
    assert list(one.first_token_s) == [1.0, 1.0] and list(one.finish_s) == [3.0, 3.0]


def test_prompts_spread_over_the_micro_batches_only_by_the_budget():
    """Six prompts of 100 over four stages: within a budget of 4,096 one micro-batch takes all six (first tokens at
    1 s, as one prompt alone); with a budget of 200 three micro-batches of two, entering a stage-time (0.25 s) apart:
    first tokens at 1, 1.25 and 1.5 s, and each pair keeps its place to its 3rd token (3, 3.25, 3.5 s)."""
    assert list(run(6, 4).first_token_s) == [1.0] * 6
    r = run(6, 4, budget=200)
    assert list(r.first_token_s) == [1.0, 1.0, 1.25, 1.25, 1.5, 1.5]
    assert list(r.finish_s) == [3.0, 3.0, 3.25, 3.25, 3.5, 3.5]
    assert list(run(1, 4).first_token_s) == [1.0]


def test_a_prompt_joining_a_step_never_brings_the_others_first_token_forward():
    """The fresh audit (consistency, finding 6): `serve -m gemma-2-9b -g gb200 -e trtllm --pp 2 -i 100 --output-len 16
    --arrivals waves -n 2` gave a median TTFT of 5.74 ms and -n 3 4.87 (prompts placed in order moved prompt 1 up to
    the first micro-batch). With the mean place, TTFT and latency never fall with one more prompt in the wave."""
    from kvcalc import serve

    last = None
    for n in range(1, 9):
        r = serve("gemma-2-9b", "gb200", engine="trtllm", pp=2, input_len=100, output_len=16, concurrency=n,
                  arrivals="waves")
        if last is not None:
            assert r["ttft_ms"] >= last["ttft_ms"] and r["latency_ms"] >= last["latency_ms"], n
        last = r


def test_the_closed_forms_pipeline_exits_by_hand():
    """pipeline_exits runs a wave's prefill steps as the engines form them: the k-th micro-batch at once while fewer
    than pp are in flight, else as the (k - pp)-th leaves, each stage a pp-th of its depth once the one before has
    left it. Equal steps of 1 s at pp 2 leave at 1, 1.5, 2, 2.5 and 3 s (D + (k - 1) D / pp). Steps of 1 and 3 s:
    the second enters the first stage at 0.5 s, leaves it at 2, and the second stage at 3.5. Steps of 1, 1 and 4 s:
    the third is formed as the first leaves (1 s), leaves the first stage at 3 and the second at 5."""
    def timeline(depths):
        ends = np.concatenate([[0.0], np.cumsum(depths)])
        return lambda k: np.interp(k, np.arange(len(depths) + 1), ends)

    assert pipeline_exits(timeline([1.0] * 5), 5, 2)(np.arange(1, 6)).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert pipeline_exits(timeline([1.0, 3.0]), 2, 2)(np.array([1, 2])).tolist() == [1.0, 3.5]
    assert pipeline_exits(timeline([1.0, 1.0, 4.0]), 3, 2)(np.array([1, 2, 3])).tolist() == [1.0, 1.5, 5.0]
    assert pipeline_exits(timeline([2.0] * 8), 8, 4)(np.arange(1, 9)).tolist() == [2 + 0.5 * k for k in range(8)]


def test_the_closed_forms_waves_give_the_simulators_hand_schedule():
    """The closed form's waves under pp (the thirty-ninth audit, Serve 1: each step had been spread over
    micro-batches, a prompt (m - 1) / 2 stage-times behind the first, TTFT 18-30 % short where a wave fills several
    budgets). 4 prompts of 3,000 at pp 2 in budgets of 8,192, 1 s a step: step 1 (prompts 0, 1 and 2's first
    2,192 tokens) out at 1 s, step 2 at 1.5; 0 and 1 decode from 1 s, their first decode behind step 2 in the second
    stage (out at 2), then one a second: 100th token at 100 s; 2 and 3 at 100.5. As the simulator's
    test_a_long_prompt_chunk_enters_the_next_micro_batch, below. A wave within one budget is one micro-batch."""
    w = waves(4, 3000, 100, 8192, prefill_step_s=1.0, decode_step_s=1.0, pipeline_stages=2)
    assert w["ttft_each"].tolist() == [1.0, 1.0, 1.5, 1.5] and w["latency_each"].tolist() == [100.0, 100.0, 100.5, 100.5]
    w = waves(2, 2000, 3, 8192, prefill_step_s=1.0, decode_step_s=1.0, pipeline_stages=2)
    assert w["ttft_s"] == 1.0 and w["wave_s"] == 3.0  # the simulator's run(2, 2), above


def test_a_wave_within_one_budget_runs_as_one_micro_batch_in_the_closed_form_too():
    """The Left item this closes: 64 prompts of 128 tokens at pp 4 fill one 8,192-token budget, so the engines run
    them as one micro-batch through the four stages: TTFT and TPOT at least pp 1's (the sends on top); the closed
    form had spread them over four micro-batches, TTFT 64.9 ms where pp 1's is 162. The simulator agrees."""
    kw = dict(input_len=128, output_len=64, concurrency=64, step_tokens=8192)
    one = serve("llama-3.1-8b", "h100-sxm", pp=1, arrivals="waves", **kw)
    four = serve("llama-3.1-8b", "h100-sxm", pp=4, arrivals="waves", **kw)
    assert four["ttft_ms"] >= one["ttft_ms"] and four["tpot_ms"] >= one["tpot_ms"]
    sim = simulate("llama-3.1-8b", "h100-sxm", pp=4, arrivals="closed", num_prompts=64, **kw)
    assert four["ttft_ms"] == pytest.approx(sim["ttft_ms"]["p50"], rel=0.02)
    assert four["tpot_ms"] == pytest.approx(sim["tpot_ms"]["p50"], rel=0.02)


def test_a_long_prompt_chunk_enters_the_next_micro_batch():
    """The simulator, as the engines run it: 4 prompts of 3,000 at pp 2 with a budget of 8,192. The first
    micro-batch holds prompts 0 and 1 and 2,192 tokens of prompt 2; the next, formed at once (one in the pipeline),
    the last 808 of prompt 2 (a prompt's next chunk need not wait: vLLM PR #13637) and prompt 3, entering at 0.5 s.
    First tokens at 1, 1, 1.5 and 1.5 s; each pair then decodes in its micro-batch once a second, the 100th token
    at 100 and 100.5 s, as the closed form's waves give them (above)."""
    sim = run(4, 2, outs=100, ins=3000, budget=8192)
    assert list(sim.first_token_s) == [1.0, 1.0, 1.5, 1.5] and list(sim.finish_s) == [100.0, 100.0, 100.5, 100.5]


def prefill_speed_of_light_s(prompt, n):
    """A lower bound, by hand: Llama-3.1-8B's matmul weights (8.03e9 parameters less the 128,256 x 4,096 embedding
    table, 7.50e9) cost 2 x 7.50e9 FLOPs a prompt token; an H100 SXM's dense BF16 peak is 989.4 TFLOPS (NVIDIA H100
    datasheet, 1,979 with sparsity, halved). Through pp = 2 stages the k-th prompt leaves at (k + 2) / 2 of one
    prompt's full depth at best; the mean over n."""
    one = 2 * (8.03e9 - 128_256 * 4096) * prompt / 989.4e12
    return float(np.mean([(k + 2) / 2 * one for k in range(n)]))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_a_burst_at_pp2_is_never_below_the_speed_of_light_of_its_prefill(n):
    """The fresh audit's case: a burst of n 2,000-token prompts on two H100 stages."""
    sim = simulate("llama-3.1-8b", "h100", input_len=2000, output_len=20, num_prompts=n, concurrency=n, pp=2)
    mean_ttft_s = (sim["ttft_ms"]["mean"] - sim["request_overhead_ms"]) / 1e3
    assert mean_ttft_s >= prefill_speed_of_light_s(2000, n)
    closed = serve("llama-3.1-8b", "h100", input_len=2000, output_len=20, concurrency=n, pp=2, arrivals="waves")
    one = serve("llama-3.1-8b", "h100", input_len=2000, output_len=20, concurrency=1, pp=2, arrivals="waves")
    assert closed["ttft_ms"] > one["ttft_ms"]  # a second prompt in the pipe is later than a lone one
