"""Regression tests for the numeric findings of the second hostile audit (2026-12-05, audit B) that the closed form
and the README's worked figures answer: each test quotes its reproducer."""

from __future__ import annotations

import warnings

import pytest

from kvcalc import estimate
from kvcalc.formulas.workload import decode_step_chunk
from kvcalc.serving.closed_form import serve
from kvcalc.serving.simulate import simulate


def _decode_ms(model: str, context: int, **kw) -> float:
    return estimate(model=model, batch=1, context=context, **kw).decode.ms


def test_b_one_request_in_flight_decodes_alone():
    """`kvcalc serve -m llama-3.1-8b -i 8000 --output-len 2 -n 1 -e vllm` printed TPOT 91.0 ms: the steady state put
    4,000 prompt tokens (half of its own prompt) into each of its decode steps. With one request in flight there is
    no other prompt: TPOT is `estimate -b 1 -c 8001`'s decode step (the mean cached context, 8000 + 2 / 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = serve("llama-3.1-8b", "h100-sxm", input_len=8000, output_len=2, concurrency=1, engine="vllm")
        step = _decode_ms("llama-3.1-8b", 8001, engine="vllm")
    assert r["tpot_ms"] == pytest.approx(step, rel=1e-9)
    # and 30,000 + 50 (audit A2: 24.7 ms where the decode step is 8.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = serve("llama-3.1-8b", "h100-sxm", input_len=30000, output_len=50, concurrency=1, engine="vllm")
        step = _decode_ms("llama-3.1-8b", 30025, engine="vllm")
    assert r["tpot_ms"] == pytest.approx(step, rel=1e-9)


def test_b_a_decode_step_carries_only_the_other_requests_prompts():
    """min(p, (C - 1) I / D): at C = 1 nothing; C = O = 8, I = 100 (every step one prompt, 7 decodes): 7 x 100 / 7 =
    100 = p; C = 2, O = 2, I = 8000: the other request's whole prompt, 8000; C = 1000, I = 128, O = 4096:
    999 x 128 / 4095 = 31.22 under the mean chunk 1000 x 128 / 4096 = 31.25."""
    assert decode_step_chunk(4000.0, 1, 8000, 2) == 0.0
    assert decode_step_chunk(100.0, 8, 100, 8) == 100.0
    assert decode_step_chunk(8000.0, 2, 8000, 2) == 8000.0
    assert decode_step_chunk(1000 * 128 / 4096, 1000, 128, 4096) == pytest.approx(999 * 128 / 4095)
    # speculative decoding: E tokens a step shorten the D = (O - 1) / E decode steps
    assert decode_step_chunk(1e9, 3, 100, 11, tokens_per_step=2.0) == pytest.approx(2 * 100 / 5)


def test_readme_expert_parallel_claim():
    """README, --ep: 'DeepSeek-V3 in its block-fp8 checkpoint on 8 H200s, 1,000 + 1,000 tokens, holds 5.3x the
    requests at --ep 8 as at --tp 8 and serves 1.6x the output tokens per GPU' (audit B: it said 4x, true only of
    vLLM's per-tensor fp8 MoE curve, slower than bf16 on Hopper)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tp = serve("deepseek-v3", "h200", input_len=1000, output_len=1000, concurrency="max", tp=8)
        ep = serve("deepseek-v3", "h200", input_len=1000, output_len=1000, concurrency="max", tp=1, ep=8)
        block = serve("deepseek-v3", "h200", input_len=1000, output_len=1000, concurrency="max", tp=8,
                      weight_dtype="fp8-block")
    assert (block["concurrency"], block["tpot_ms"]) == (tp["concurrency"], tp["tpot_ms"])  # the checkpoint's format
    assert round(ep["concurrency"] / tp["concurrency"], 1) == 5.3
    assert round(ep["output_tokens_per_s_per_gpu"] / tp["output_tokens_per_s_per_gpu"], 1) == 1.6


def test_readme_waves_are_one_wave():
    """README, --arrivals waves: 'Llama-3.1-8B, 1,000 + 200 tokens at 128 in flight: median TTFT 1.29 s as one wave,
    0.17 s over 1,280 prompts' (audit B-E: waves and the simulator disagreed past the first wave); with as many
    prompts as the concurrency the simulator is one wave too."""
    kw = dict(input_len=1000, output_len=200, engine="vllm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wave = serve("llama-3.1-8b", "h100-sxm", concurrency=128, arrivals="waves", **kw)
        many = simulate("llama-3.1-8b", "h100-sxm", arrivals="closed", concurrency=128, num_prompts=1280, **kw)
        one = simulate("llama-3.1-8b", "h100-sxm", arrivals="closed", concurrency=128, num_prompts=128, **kw)
    assert round(wave["ttft_ms"] / 1e3, 2) == 1.29
    assert round(many["ttft_ms"]["p50"] / 1e3, 2) == 0.17
    assert one["ttft_ms"]["p50"] == pytest.approx(wave["ttft_ms"], rel=0.05)


def test_readme_speculative_serving_claim():
    """README, serve --speculate: 'Llama 3.1 8B on an H100 at 64 requests of 1000 in and 500 out goes from about 5,000
    to 8,800 output tokens/s with --speculate eagle,k=4' (the figures it had, 5,600 and 9,300, were stale)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=500, concurrency=64)
        eagle = serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=500, concurrency=64, speculate="eagle,k=4")
    assert round(plain["output_tokens_per_s"], -2) == 5000 and round(eagle["output_tokens_per_s"], -2) == 8800
