"""Under pipeline parallelism a step's micro-batches leave the last stage one stage-time apart (audit 23, the
fresh-audit gap: a burst of prompts at --pp 2 had all come out with one prompt's TTFT, below the speed of light of
their prefill). Worked by hand with toy step times, then against the speed of light of real models."""

import numpy as np
import pytest

from kvcalc import serve
from kvcalc.engines.scheduler import vllm_v1
from kvcalc.formulas.workload import pipeline_lags, waves
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
    """A and B (100 tokens each) arrive together; one step of 1 s holds both, as two micro-batches of one prompt.
    Stage time 0.5 s: A leaves stage 2 at 1.0 s, B (half a step behind it in the pipe) at 1.5 s. Each then decodes
    a token a step (1 s), keeping its place: A's 3rd token at 3.0 s, B's at 3.5 s."""
    r = run(2, 2)
    assert list(r.first_token_s) == [1.0, 1.5] and list(r.finish_s) == [3.0, 3.5]
    one = run(2, 1)  # without pipeline stages both come out at the step's end
    assert list(one.first_token_s) == [1.0, 1.0] and list(one.finish_s) == [3.0, 3.0]


def test_prompts_spread_over_the_micro_batches_in_order():
    """Six prompts over four stages: four micro-batches, prompts 0, 1 | 2 | 3, 4 | 5 by floor(i m / P) = floor(4 i
    / 6) = 0, 0, 1, 2, 2, 3: first tokens 1 + k / 4 s. One prompt alone runs as one micro-batch: no lag."""
    r = run(6, 4)
    assert list(r.first_token_s) == [1.0, 1.0, 1.25, 1.5, 1.5, 1.75]
    assert list(run(1, 4).first_token_s) == [1.0]


def test_wave_lags_by_hand_and_the_closed_form_agrees():
    """pipeline_lags, by hand: 2 prompts of 2,000 in a budget of 8,192 at pp 2: one step, two micro-batches: lags 0
    and 1/2 a step. 4 prompts of 3,000 at pp 2, budget 8,192: step 1 holds prompts 0, 1 and 2's first 2,192 tokens
    (0 and 1 end there: 3 prompts, 2 micro-batches: floor(2 i / 3) = 0, 0); step 2 holds 2's last 808 and all of 3
    (both end) beside 0 and 1's decodes: micro = min(2 + 2, 2) = 2, and 3 is the step's second prompt of two:
    floor(1 x 2 / 2) = 1, half a step. 3 prompts of 1,000 at pp 4, one step: floor(i 3 / 3) / 4 = 0, 1/4, 1/2."""
    assert list(pipeline_lags(2, 2000, 100, 8192, 2)) == [0.0, 0.5]
    assert list(pipeline_lags(4, 3000, 100, 8192, 2)) == [0.0, 0.0, 0.0, 0.5]
    assert list(pipeline_lags(3, 1000, 100, 8192, 4)) == [0.0, 0.25, 0.5]
    w = waves(2, 2000, 3, 8192, prefill_step_s=1.0, decode_step_s=1.0, pipeline_stages=2)
    assert w["ttft_s"] == 1.25  # the median of 1.0 and 1.5, as the simulator's run(2, 2) gives them
    assert w["wave_s"] == 3.5
    sim = run(4, 2, outs=100, ins=3000, budget=8192)  # the simulator's steps of 1 s: at(s_j) + lag = 1, 1, 2, 2.5
    assert list(sim.first_token_s) == [1.0, 1.0, 2.0, 2.5]


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
