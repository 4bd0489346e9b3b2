"""plan's shared work (issue 22: the web app's plan page within 300 ms): the operators a step is made of are built
once for every StepTimer that shares them and each deployment's replica once for its layouts, and nothing of that
changes a number. The equivalences are exact (bit for bit): the shared path computes each element with the same
operations as its own call."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kvcalc.errors import KvcalcError
from kvcalc.estimator import StepTimer, precision
from kvcalc.formulas.forward import PER_SEQUENCE, forward_ops, sequence_ops
from kvcalc.planning.plan import plan
from kvcalc.serving import closed_form
from kvcalc.serving.replica import replica_runner, seconds_many
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine


def _same(a, b) -> bool:
    """Equal to the last bit: numbers by value and type, arrays by dtype, shape and bytes."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and (a == b or (math.isnan(a) and math.isnan(b)))


def _same_op(a, b) -> bool:
    fields = ("name", "op_class", "engine", "kernels", "kernel_class", "unquantised", "layers")
    costs = ("flops", "weight_bytes", "kv_read_bytes", "kv_write_bytes", "act_bytes")
    return (all(getattr(a, f) == getattr(b, f) for f in fields)
            and all(_same(getattr(a.cost, c), getattr(b.cost, c)) for c in costs)
            and _same(a.items_per_kernel, b.items_per_kernel))


# Each kind of attention the forward pass distinguishes: GQA, MLA, sliding windows (Gemma 2's alternate layers,
# gpt-oss's), Llama 4's chunked local attention, DeepSeek sparse attention, Mamba-2 and Mamba hybrids.
MODELS = ["llama-3-8b", "deepseek-v3", "gemma-2-9b", "gpt-oss-20b", "llama-4-scout", "deepseek-v3.2",
          "nemotron-h-8b", "jamba-v0.1"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("absorbed", [True, False])
def test_sequence_ops_are_the_forward_passes_per_sequence_operators(model, absorbed):
    spec, p = load_model(model), precision("fp8", "fp8")
    batches = [3.0, np.array([1.0, 8.0, 300.0])]
    for batch in batches:
        q = 1 if absorbed else 1000.0
        kw = {"batch": batch, "q": q, "context": 4096.0 if absorbed else 0.0, "absorbed": absorbed, "p": p}
        want = [o for o in forward_ops(spec, **kw) if o.op_class in PER_SEQUENCE]
        got = sequence_ops(spec, **kw)
        assert want, "every model here has attention or linear-attention layers"
        assert len(got) == len(want) and all(_same_op(g, w) for g, w in zip(got, want)), model


def _timers():
    """StepTimers of one model and precision that differ in tp, pp, GPU and engine profile."""
    spec = load_model("llama-3-8b")
    out = []
    for gpu, engines in (("h100-sxm", ("vllm", "sglang", "trtllm", "roofline")), ("a100-sxm-80gb", ("vllm",))):
        hw = load_gpu(gpu)
        for engine in engines:
            for tp, pp in ((1, 1), (2, 1), (4, 1), (2, 2), (1, 4)):
                out.append(StepTimer(spec, hw, precision("bf16", "fp8"), tp, resolve_engine(engine, hw), "bf16",
                                     "fp8", pp))
    return out


def test_seconds_many_is_each_steptimer_call_bit_for_bit(monkeypatch):
    timers = _timers()
    rng = np.random.default_rng(22)
    calls = []
    for n, t in enumerate(timers):
        size = 3 + n % 5
        decodes = np.round(rng.uniform(1, 300, size))
        chunks = np.round(rng.uniform(1, 8000, size))
        calls.append((t, (decodes, 1100.0, chunks, np.maximum(1000 - chunks, 0) / 2, 1000.0)))  # colocated steps
        calls.append((t, (decodes, 1100.0, 0, 0, None)))  # a decode pool's steps
        calls.append((t, (0, 0, 8000, 0, None)))  # one prefill step, numbers only
    built = []
    real = StepTimer.step_ops
    monkeypatch.setattr(StepTimer, "step_ops", lambda self, *a: built.append(self.pp) or real(self, *a))
    out = seconds_many(calls)
    # the operators were built once per kind of call and pp (1, 2 or 4), not once for each of the 75 calls
    assert sorted(built) == [1, 1, 1, 2, 2, 2, 4, 4, 4]
    monkeypatch.undo()
    for (t, args), got in zip(calls, out):
        assert _same(got, t.seconds(*args))


def test_seconds_many_answers_an_operator_present_at_some_elements_only_as_its_own_call_would():
    t = _timers()[0]
    mixed = (np.array([0.0, 4.0]), 1100.0, 0, 0, None)  # no decodes at the first element, four at the second
    with pytest.raises(ValueError):
        t.seconds(*mixed)
    fine = (np.array([2.0, 4.0]), 1100.0, 0, 0, None)
    out = seconds_many([(t, mixed), (t, fine)])
    assert isinstance(out[0], ValueError) and _same(out[1], t.seconds(*fine))


def test_plan_builds_one_replica_per_tp_layout_and_format_not_one_per_pool_split(monkeypatch):
    """llama-3-8b on an H100 under vLLM: TP 1, 2, 4, 8 (32 heads) x PP 1, 2, 4 = 12 colocated layouts and
    4 x 6 = 24 disaggregated ones (tp x the six prefill:decode ratios), in 2 x 2 formats (bf16 or fp8* weights, bf16 or
    fp8 KV): 144 deployments, whose replicas are 12 x 4 = 48, the pools of a disaggregated replica being TP
    replicas of the colocated layout (TP, PP 1)."""
    built = []
    real = closed_form.deployment

    def counting(*args, **kwargs):
        built.append((kwargs["engine"], kwargs["weight_dtype"], kwargs["kv_dtype"], kwargs["tp"], kwargs["pp"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(closed_form, "deployment", counting)
    r = plan("llama-3-8b", ["h100-sxm"], input_len=1000, output_len=200, request_rate=5.0, engines=["vllm"])
    assert r["searched"]["deployments"] == 144 and r["searched"]["fit"] == 144
    assert len(built) == 48 and len(set(built)) == 48


def test_a_search_shares_a_replica_only_where_it_fits_and_its_numbers_are_its_own():
    """replica_runner's memo (one search): a TP 1 replica of llama-3-70b in bf16 (141 GB of weights) fits no 80 GB
    H100, colocated or as the pools of a disaggregated replica, with the same one-line reason; a TP 4 one fits, and
    the disaggregated replica built from the shared deployment gives the numbers of one built alone."""
    spec, hw = load_model("llama-3-70b"), load_gpu("h100-sxm")
    kw = {"engine": "vllm", "weight_dtype": "bf16", "kv_dtype": "bf16", "input_len": 1000, "output_len": 200}
    memo: dict = {}
    with pytest.raises(KvcalcError) as colocated:
        replica_runner(spec, hw, tp=1, memo=memo, **kw)
    with pytest.raises(KvcalcError) as pools:
        replica_runner(spec, hw, tp=1, disaggregate=(1, 1), memo=memo, **kw)
    assert str(colocated.value) == str(pools.value)
    replica_runner(spec, hw, tp=4, memo=memo, **kw)
    shared = replica_runner(spec, hw, tp=4, disaggregate=(4, 8), memo=memo, **kw)
    alone = replica_runner(spec, hw, tp=4, disaggregate=(4, 8), **kw)
    cs = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    a, b = shared.run_many(cs), alone.run_many(cs)
    assert shared.max_concurrency == alone.max_concurrency > 16
    assert all(_same(a[k], b[k]) for k in ("ttft_s", "tpot_s", "requests_per_s"))
