"""Under pipeline parallelism a step's micro-batches leave the last stage one stage-time apart (audit 23, the
fresh-audit gap: a burst of prompts at --pp 2 had all come out with one prompt's TTFT, below the speed of light of
their prefill); the step's prompts take the mean of those places, (m - 1) / 2 x step / pp, which keeps the mean TTFT
and keeps it from falling when a prompt joins. Worked by hand with toy step times, then against the speed of light
of real models."""

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
    Stage time 0.5 s: one leaves stage 2 at 1.0 s, the other half a step behind at 1.5 s; each gets the mean, 1.25 s
    (the mean TTFT is exact). Each then decodes a token a step (1 s) keeping its place: 3rd token at 3.25 s."""
    r = run(2, 2)
    assert list(r.first_token_s) == [1.25, 1.25] and list(r.finish_s) == [3.25, 3.25]
    one = run(2, 1)  # without pipeline stages both come out at the step's end
    assert list(one.first_token_s) == [1.0, 1.0] and list(one.finish_s) == [3.0, 3.0]


def test_prompts_spread_over_the_micro_batches():
    """Six prompts over four stages: four micro-batches, places 0 .. 3 quarter-steps behind the first, mean 3/8:
    first tokens at 1.375 s. One prompt alone runs as one micro-batch: no lag."""
    r = run(6, 4)
    assert list(r.first_token_s) == [1.375] * 6
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


def test_wave_lags_by_hand_and_the_closed_form_agrees():
    """pipeline_lags, by hand: 2 prompts of 2,000 in a budget of 8,192 at pp 2: one step, two micro-batches: both
    (2 - 1) / 2 / 2 = 1/4 of a step behind. 4 prompts of 3,000 at pp 2, budget 8,192: step 1 holds prompts 0, 1 and
    2's first 2,192 tokens (3 prompts, m = 2: 1/4); step 2 holds 2's last 808 and all of 3 beside 0 and 1's decodes
    (m = min(2 + 2, 2) = 2: 1/4). 3 prompts of 1,000 at pp 4, one step, m = 3: 2 / 2 / 4 = 1/4; 1 prompt: 0."""
    assert list(pipeline_lags(2, 2000, 100, 8192, 2)) == [0.25, 0.25]
    assert list(pipeline_lags(4, 3000, 100, 8192, 2)) == [0.25] * 4
    assert list(pipeline_lags(3, 1000, 100, 8192, 4)) == [0.25] * 3
    assert list(pipeline_lags(1, 1000, 100, 8192, 4)) == [0.0]
    w = waves(2, 2000, 3, 8192, prefill_step_s=1.0, decode_step_s=1.0, pipeline_stages=2)
    assert w["ttft_s"] == 1.25  # as the simulator's run(2, 2) gives them
    assert w["wave_s"] == 3.25
    sim = run(4, 2, outs=100, ins=3000, budget=8192)  # the simulator's steps of 1 s: at(s_j) + 1/4 = 1.25, .., 2.25
    assert list(sim.first_token_s) == [1.25, 1.25, 2.25, 2.25]


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
