"""Engine overheads (kvcalc/engines/overhead.py): time outside the kernels, per step and per request, by release band;
added to decode and prefill steps, never to the speed of light; --engine-version picks the band."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.engines.overhead import (
    BANDS,
    band,
    band_of_ledger_row,
    overhead_seconds,
    with_band,
)
from kvcalc.errors import KvcalcError
from kvcalc.estimator import StepTimer, estimate, evaluate, precision
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.specs.profile import EngineOverhead

H100 = load_gpu("h100-sxm")
LLAMA = load_model("llama-3-8b")


def _with(step_us=0.0, per_gpu_us=0.0, request_ms=0.0):
    return resolve_engine("vllm", H100).model_copy(update={"overhead": EngineOverhead(
        step_us=step_us, step_us_per_extra_gpu=per_gpu_us, request_ms=request_ms, sources=["test"])})


def test_a_stated_overhead_adds_to_decode_and_prefill_but_not_to_the_speed_of_light():
    # 1500 us a step + 500 us per GPU beyond the first, on tp = 2: 1500 + 500 * (2 - 1) = 2000 us = 2.0 ms a step
    kw = {"batch": 4, "context": 1024, "prompt": 512, "weight_dtype": "bf16", "kv_dtype": "bf16", "tp": 2}
    bare = evaluate(LLAMA, H100, profile=_with(), **kw)
    loaded = evaluate(LLAMA, H100, profile=_with(1500, 500), **kw)
    assert loaded.decode.seconds - bare.decode.seconds == pytest.approx(2.0e-3, abs=1e-12)
    assert loaded.prefill.seconds - bare.prefill.seconds == pytest.approx(2.0e-3, abs=1e-12)
    assert loaded.decode_sol.seconds == bare.decode_sol.seconds
    assert loaded.prefill_sol.seconds == bare.prefill_sol.seconds


def test_estimate_reports_the_overhead_inside_the_step_and_names_the_band():
    e = estimate("llama-3-8b", "h100-sxm", batch=1, context=1024, engine="vllm", engine_version="0.6.3")
    b = next(x for x in BANDS if x.engine == "vllm" and x.name == "v0")
    assert e.decode.overhead_ms == pytest.approx(b.step_us / 1000)  # one GPU: no per-GPU term
    assert "vllm v0 band" in e.inputs.profile
    operators_ms = sum(o.ms for o in e.decode.operators)
    assert e.decode.ms == pytest.approx(operators_ms + e.decode.allreduce_ms + e.decode.overhead_ms)


def test_step_timer_adds_the_same_step_overhead():
    p = precision("bf16", "bf16")
    bare = StepTimer(LLAMA, H100, p, 2, _with(), "bf16", "bf16").seconds(8, 2048, 256, 0)
    loaded = StepTimer(LLAMA, H100, p, 2, _with(1000, 250), "bf16", "bf16").seconds(8, 2048, 256, 0)
    assert loaded - bare == pytest.approx(1.25e-3, abs=1e-12)  # 1000 + 250 * (2 - 1) us


def test_the_roofline_and_gpt_fast_carry_no_overhead():
    assert overhead_seconds(None, 8) == (0.0, 0.0)
    assert overhead_seconds(resolve_engine("gpt-fast", load_gpu("a100-sxm-80gb")), 8) == (0.0, 0.0)


@pytest.mark.parametrize("engine, version, name", [
    ("vllm", "0.6.3", "v0"), ("vllm", "v0.7.3", "v0"), ("vllm", "0.8.0", "v1"), ("vllm", "0.24.0", "v1"),
    ("vllm", "0.29.1", "v2"), ("vllm", "v1", "v1"), ("trtllm", "0.9.0", "engine"), ("trtllm", "1.2.0rc1", "pytorch"),
    ("trtllm", "engine", "engine"), ("sglang", "0.5.14", "0.4+"),
])
def test_engine_version_picks_the_band_by_release_or_name(engine, version, name):
    assert band(engine, version).name == name


def test_the_default_band_is_the_profiles_own_release():
    # the bundled profiles are vLLM 0.24.0 (V1 engine) and TensorRT-LLM 1.3.0rc20 (PyTorch back end)
    assert band("vllm", None, resolve_engine("vllm", H100).engine_version).name == "v1"
    assert band("trtllm", None, resolve_engine("trtllm", H100).engine_version).name == "pytorch"


@pytest.mark.parametrize("engine, version", [("vllm", "0.35.0"), ("vllm", "banana"), ("trtllm", "0.4"),
                                             ("gpt-fast", "0.1")])
def test_a_release_kvcalc_does_not_know_is_refused(engine, version):
    with pytest.raises(KvcalcError, match="--engine-version"):
        band(engine, version)


def test_engine_version_on_the_command_line():
    runner = CliRunner()
    bad = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-e", "vllm", "--engine-version", "0.99"])
    assert bad.exit_code == 2 and "--engine-version" in bad.output and "Traceback" not in bad.output
    roof = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-e", "roofline", "--engine-version", "v1"])
    assert roof.exit_code == 2 and "--engine-version" in roof.output
    ok = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-e", "vllm", "--engine-version", "v0", "-f", "json"])
    assert ok.exit_code == 0
    assert "vllm v0 band" in json.loads(ok.stdout)["inputs"]["profile"]


def test_a_profile_that_states_its_overhead_keeps_it_unless_a_version_is_asked_for():
    own = _with(123.0)
    assert with_band(own, None).overhead.step_us == 123.0
    v0 = next(x for x in BANDS if x.engine == "vllm" and x.name == "v0")
    assert with_band(own, "v0").overhead.step_us == v0.step_us


@pytest.mark.parametrize("text, name", [("unknown (2024-10)", "v0"), ("commit acbed3ef (2023-10)", "v0"),
                                        ("unknown (2025-07)", "v1"), ("0.21.0", "v1")])
def test_ledger_rows_without_a_release_are_banded_by_the_month_of_the_run(text, name):
    # vLLM's V1 engine became the default in 0.8.0, March 2025
    assert band_of_ledger_row("vllm", text).name == name


@settings(max_examples=25, deadline=None)
@given(step_us=st.floats(0, 50_000), per_gpu_us=st.floats(0, 5_000), tp=st.sampled_from([1, 2, 4, 8]),
       batch=st.integers(1, 256))
def test_overheads_never_reach_the_speed_of_light(step_us, per_gpu_us, tp, batch):
    kw = {"batch": batch, "context": 2048, "prompt": 256, "weight_dtype": "bf16", "kv_dtype": "bf16", "tp": tp}
    bare, loaded = (evaluate(LLAMA, H100, profile=_with(*x), **kw) for x in ((0, 0), (step_us, per_gpu_us)))
    assert loaded.decode_sol.seconds == bare.decode_sol.seconds
    assert loaded.decode.seconds == pytest.approx(bare.decode.seconds + (step_us + per_gpu_us * (tp - 1)) * 1e-6)


@pytest.mark.parametrize("command", [
    ["serve", "-m", "llama-3-8b", "--input-len", "512", "--output-len", "128", "-n", "8", "-e", "vllm"],
    ["capacity", "-m", "llama-3-8b", "-c", "4096", "-e", "vllm"],
])
def test_serve_and_capacity_take_the_engine_version(command):
    runner = CliRunner()
    bad = runner.invoke(app, [*command, "--engine-version", "0.99"])
    assert bad.exit_code == 2 and "--engine-version" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(app, [*command, "--engine-version", "v1", "-f", "json"]).exit_code == 0


def test_serve_steps_carry_the_band_overhead(monkeypatch):
    # one request in flight: every step is that request's decode, so TPOT grows by exactly the band's step cost
    from dataclasses import replace

    from kvcalc.engines import overhead
    from kvcalc.serving.closed_form import serve

    kw = {"input_len": 512, "output_len": 128, "concurrency": 1, "engine": "vllm", "engine_version": "v1"}
    with_overhead = serve("llama-3-8b", "h100-sxm", **kw)["tpot_ms"]
    v1 = next(x for x in BANDS if x.engine == "vllm" and x.name == "v1")
    monkeypatch.setattr(overhead, "BANDS", tuple(replace(x, step_us=0.0) if x is v1 else x for x in BANDS))
    without = serve("llama-3-8b", "h100-sxm", **kw)["tpot_ms"]
    assert with_overhead - without == pytest.approx(v1.step_us / 1000)


def test_serve_adds_the_per_request_cost_to_ttft_and_latency_only(monkeypatch):
    # the band's request_ms (API server, tokenisation) lands once in each request's TTFT and latency
    from dataclasses import replace

    from kvcalc.engines import overhead
    from kvcalc.serving.closed_form import serve

    kw = {"input_len": 512, "output_len": 128, "concurrency": 4, "engine": "vllm", "engine_version": "v1"}
    v1 = next(x for x in BANDS if x.engine == "vllm" and x.name == "v1")
    monkeypatch.setattr(overhead, "BANDS", tuple(replace(x, request_ms=0.0) if x is v1 else x for x in BANDS))
    without = serve("llama-3-8b", "h100-sxm", **kw)
    monkeypatch.setattr(overhead, "BANDS", tuple(replace(x, request_ms=25.0) if x is v1 else x for x in BANDS))
    loaded = serve("llama-3-8b", "h100-sxm", **kw)
    assert loaded["ttft_ms"] - without["ttft_ms"] == pytest.approx(25.0)
    assert loaded["latency_ms"] - without["latency_ms"] == pytest.approx(25.0)
    assert loaded["tpot_ms"] == without["tpot_ms"]


def test_a_group_that_synchronises_adds_its_cost_a_layer():
    # vLLM V1's band on Llama-3-8B (32 layers): 1 GPU, the fixed step alone; TP 2 and TP 4, the fixed step plus
    # 32 x the synchronised-layer cost; a pipeline of 2 stages of 1 GPU each hands over once, syncing no layer
    from kvcalc.engines.overhead import SYNCED_LAYER_US

    v1 = band("vllm", "v1")
    kw = {"batch": 1, "context": 1024, "engine": "vllm"}
    assert estimate("llama-3-8b", "h100-sxm", **kw).decode.overhead_ms == pytest.approx(v1.step_us / 1000)
    for tp in (2, 4):
        e = estimate("llama-3-8b", "h100-sxm", tp=tp, **kw)
        assert e.decode.overhead_ms == pytest.approx((v1.step_us + 32 * SYNCED_LAYER_US) / 1000)
        assert e.prefill.overhead_ms == e.decode.overhead_ms
    assert estimate("llama-3-8b", "h100-sxm", pp=2, **kw).decode.overhead_ms == pytest.approx(v1.step_us / 1000)
    # expert parallelism alone (attention data-parallel, tp 1) synchronises every layer too: Qwen3-30B-A3B, 48 layers
    e = estimate("qwen3-30b-a3b", "h100-sxm", ep=4, **kw)
    assert e.decode.overhead_ms == pytest.approx((v1.step_us + 48 * SYNCED_LAYER_US) / 1000)
    # TensorRT-LLM's PyTorch back end has no fitted overhead: no sync cost either
    assert estimate("llama-3-8b", "h100-sxm", tp=4, batch=1, context=1024, engine="trtllm").decode.overhead_ms == 0
    # a stated overhead (a calibrated profile) carries only what it states
    assert overhead_seconds(_with(1000.0), 4, 32)[0] == pytest.approx(1e-3)
    assert "34.5 us per layer where GPUs synchronise" in estimate("llama-3-8b", "h100-sxm", tp=2, **kw).inputs.profile
