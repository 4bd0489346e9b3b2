"""kvcalc plan: the search agrees with serve and capacity, sizes workloads as worked by hand, honours the limits,
and emits launch commands an engine's own parser accepts."""

from __future__ import annotations

import json
import math
import shlex

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.engines.launch import emit, hf_repo_id
from kvcalc.errors import KvcalcError
from kvcalc.planning.plan import Deployment, Point, batch_ladder, pareto, plan, size
from kvcalc.serving.closed_form import serve
from kvcalc.serving.replica import replica_runner
from kvcalc.specs.catalog import load_gpu, load_model

RUNNER = CliRunner()

# The flags each engine's own parser defines, for the releases the profiles model (engines/launch.py cites them):
# vllm/engine/arg_utils.py (the vllm 0.30.0 wheel, lines 883-1713), python/sglang/srt/server_args.py (sgl-project/sglang at
# release 0.5.14), tensorrt_llm/commands/serve.py (NVIDIA/TensorRT-LLM at 00209af1, `trtllm-serve serve`'s click options).
ENGINE_PARSERS = {
    "vllm": {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--enable-expert-parallel",
             "--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--kv-cache-dtype",
             "--max-model-len", "--quantization", "--speculative-config", "--kv-transfer-config",
             "--trust-remote-code"},  # vllm/engine/arg_utils.py EngineArgs.trust_remote_code
    "sglang": {"--model-path", "--tp-size", "--pp-size", "--dp-size", "--ep-size", "--enable-dp-attention",
               "--max-running-requests", "--chunked-prefill-size", "--mem-fraction-static", "--kv-cache-dtype",
               "--context-length", "--quantization", "--speculative-algorithm", "--speculative-num-steps",
               "--speculative-eagle-topk", "--speculative-num-draft-tokens", "--disaggregation-mode", "--host",
               "--trust-remote-code", "--max-prefill-tokens"},  # python/sglang/srt/server_args.py
    "trtllm": {"--backend", "--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_num_tokens",
               "--max_seq_len", "--kv_cache_free_gpu_memory_fraction", "--extra_llm_api_options", "--server_role",
               "--host"},
}


def test_a_replica_is_timed_exactly_as_serve_times_it():
    """plan builds each replica once and runs it at many concurrencies; every point must be serve's own answer."""
    spec, hw = load_model("llama-3.1-70b"), load_gpu("h100-sxm")
    r = replica_runner(spec, hw, engine="vllm", weight_dtype="bf16", kv_dtype="bf16", tp=4, input_len=2000,
                       output_len=500)
    for c in (1, 16, 64):
        s = serve("llama-3.1-70b", "h100-sxm", input_len=2000, output_len=500, concurrency=c, tp=4, engine="vllm",
                  cuda_graph_GiB=0)
        point = r.run(c)
        assert point["ttft_s"] * 1e3 == pytest.approx(s["ttft_ms"], rel=1e-12)
        assert point["tpot_s"] * 1e3 == pytest.approx(s["tpot_ms"], rel=1e-12)
        assert point["requests_per_s"] == pytest.approx(s["requests_per_s"], rel=1e-12)
    assert r.max_concurrency == s["max_concurrency"]


def test_a_replica_holds_what_capacity_says_the_engine_holds():
    """plan, serve and capacity share one memory rule: the same most requests in flight."""
    from kvcalc.planning.capacity import capacity

    spec, hw = load_model("qwen3-32b"), load_gpu("h100-sxm")
    r = replica_runner(spec, hw, engine="vllm", weight_dtype="bf16", kv_dtype="bf16", tp=2, input_len=3000,
                       output_len=1096)
    c = capacity("qwen3-32b", "h100-sxm", context=4096, gpus=2, engine="vllm", cuda_graph_GiB=0)
    assert r.max_concurrency == math.floor(c["engine_memory"]["max_concurrency"])


def test_batch_ladder_doubles_up_to_the_pool():
    assert batch_ladder(1) == [1]
    assert batch_ladder(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert batch_ladder(64) == [1, 2, 4, 8, 16, 32, 64]


def _point(gpus_per_replica=8, rps=10.0, in_flight=32, tpot=40.0):
    d = Deployment("h200", "vllm", "bf16", "bf16", tp=gpus_per_replica)
    return Point(d, in_flight=in_flight, output_len=500, ttft_ms=300.0, tpot_ms=tpot, requests_per_s=rps)


def test_a_rate_needs_the_replicas_worked_by_hand():
    """100 req/s on replicas of 8 GPUs serving 30 req/s each: ceil(100 / 30) = 4 replicas, 32 GPUs; at $3.50 a
    GPU-hour that is $112/h for 100 x 500 = 50,000 output tokens/s: 112 / (50,000 x 3,600) x 1e6 = $0.6222 a
    million."""
    p = _point(rps=30.0)
    size(p, 500, request_rate=100.0, concurrency=None, gpu_budget=None, price=3.5)
    assert (p.replicas, p.gpus) == (4, 32)
    assert p.output_tokens_per_s == 50_000
    assert p.cost_per_hour == 112.0
    assert p.cost_per_million_output_tokens == pytest.approx(112 / (50_000 * 3600) * 1e6)


def test_a_concurrency_and_a_budget_size_by_hand():
    p = _point(in_flight=32)
    size(p, 500, request_rate=None, concurrency=100, gpu_budget=None, price=None)
    assert (p.replicas, p.gpus) == (4, 32)  # ceil(100 / 32)
    q = _point(rps=10.0)
    size(q, 500, request_rate=None, concurrency=None, gpu_budget=20, price=None)
    assert (q.replicas, q.gpus, q.output_tokens_per_s) == (2, 16, 2 * 10 * 500)  # floor(20 / 8) replicas


def test_pareto_keeps_only_points_no_other_beats_on_both_axes():
    a = _point(rps=10, tpot=20)   # 50 tok/s/user, 10 req/s on 8 GPUs
    b = _point(rps=20, tpot=40)   # 25 tok/s/user, twice the throughput
    c = _point(rps=8, tpot=40)    # beaten by b on throughput at the same speed per user
    d = _point(rps=30, tpot=100)  # 10 tok/s/user, the most throughput
    assert pareto([c, d, a, b]) == [a, b, d]


def test_the_deepseek_v3_question_from_the_issue():
    """'How should I serve DeepSeek-V3 at 100 requests/s, 2K in / 500 out, TTFT under 2 s and TPOT under 50 ms, on
    H200s or B200s': a choice within the limits, at the checkpoint's own fp8 (not a conversion) unless a cheaper
    format wins, sized for the rate."""
    r = plan("deepseek-v3", ["h200", "b200"], input_len=2000, output_len=500, request_rate=100, max_ttft_ms=2000,
             max_tpot_ms=50, price_per_gpu_hour={"h200": 3.5, "b200": 5.0}, engines=["vllm", "sglang"],
             disaggregated=False)
    c = r["choice"]
    assert c is not None and c["gpu"] in ("h200", "b200")
    assert c["ttft_ms"] <= 2000 and c["tpot_ms"] <= 50
    assert c["requests_per_s"] >= 100 * (1 - 1e-9)
    assert c["weight_dtype"] == "fp8-block" or c["converted_weights"]
    assert c["cost_per_hour"] == pytest.approx(c["gpus"] * (3.5 if c["gpu"] == "h200" else 5.0))
    for runner in r["runners_up"]:  # the runners-up meet the limits too, and cost no less
        assert not runner["misses"] and runner["cost_per_hour"] >= c["cost_per_hour"]
    assert r["rejected"]["counts"]["does not fit"] > 0  # bf16-sized layouts of one or two GPUs cannot hold it


@pytest.mark.parametrize("model", ["qwen3-32b", "qwen3-next-80b-a3b"])  # a dense and a hybrid model
def test_dense_and_hybrid_models_are_planned(model):
    r = plan(model, ["h100-sxm"], input_len=1000, output_len=200, concurrency=64, max_tpot_ms=60,
             engines=["vllm"], disaggregated=False)
    assert r["choice"] is not None and r["choice"]["tpot_ms"] <= 60
    assert r["choice"]["gpus"] >= 64 / r["choice"]["in_flight_per_replica"]


def test_an_impossible_limit_is_an_answer_not_an_error():
    r = plan("llama-3.1-8b", ["h100-sxm"], input_len=1000, output_len=100, request_rate=1, max_tpot_ms=0.01,
             engines=["vllm"], disaggregated=False)
    assert r["choice"] is None and r["closest"] and "TPOT" in r["closest"][0]["misses"]
    assert "no configuration meets the limits" in r["choice_note"]


def test_a_gpu_budget_is_never_exceeded():
    r = plan("llama-3.1-70b", ["h100-sxm"], input_len=1000, output_len=200, gpu_budget=8, engines=["vllm"])
    assert r["choice"]["gpus"] <= 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(request_rate=1, concurrency=4), "exactly one"),
    (dict(), "exactly one"),
    (dict(request_rate=1, percentile="p95"), "--percentile"),
    (dict(request_rate=0), "--request-rate"),
    (dict(request_rate=1, max_tpot_ms=0), "--max-tpot-ms"),
    (dict(request_rate=1, price_per_gpu_hour={"h100": 2.0}), "no price for h200"),
])
def test_bad_requests_are_one_line_errors(kwargs, message):
    with pytest.raises(KvcalcError, match=message):
        plan("llama-3.1-8b", ["h100-sxm", "h200"], input_len=100, output_len=10, **kwargs)


def test_a_string_where_a_list_of_gpus_belongs_is_refused():
    with pytest.raises(KvcalcError, match="gpus: expected a list"):
        plan("llama-3.1-8b", "h100-sxm", input_len=100, output_len=10, request_rate=1)


def _config(**over):
    c = {"engine": "vllm", "gpu": "h200", "tensor_parallel": 8, "pipeline_parallel": 1, "expert_parallel": 1,
         "disaggregate": None, "max_num_seqs": 256, "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9,
         "kv_dtype": "fp8", "weight_dtype": "fp8-block", "converted_weights": False, "gpus_per_replica": 8,
         "replicas": 3}
    c.update(over)
    return c


def _flags(command: str) -> dict[str, str | None]:
    words = shlex.split(command)
    out = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[w] = None if nxt is None or nxt.startswith("--") else nxt
    return out


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("layout", [dict(), dict(expert_parallel=16, tensor_parallel=2, gpus_per_replica=16),
                                    dict(pipeline_parallel=2, gpus_per_replica=16),
                                    dict(disaggregate="8:16", gpus_per_replica=24)])
def test_emitted_commands_use_only_flags_the_engine_defines(engine, layout):
    spec = load_model("deepseek-v3")
    text = emit(engine, spec, _config(**layout), 2500)
    # the servers' command lines (a disaggregated plan also starts its router, whose flags are the router's own)
    servers = ("vllm serve ", "python -m sglang.launch_server ", "trtllm-serve serve ")
    commands = [line for line in text.splitlines() if line.startswith(servers)]
    assert commands
    for command in commands:
        flags = _flags(command)
        assert set(flags) <= ENGINE_PARSERS[engine], set(flags) - ENGINE_PARSERS[engine]
        assert hf_repo_id(spec) == "deepseek-ai/DeepSeek-V3" and "deepseek-ai/DeepSeek-V3" in command


def test_emitted_vllm_command_carries_the_plan():
    """TP 2 attention groups over 16 expert-parallel GPUs: vLLM runs 8 data-parallel ranks of TP 2 with
    --enable-expert-parallel, and each rank schedules 256 / 8 = 32 sequences."""
    flags = _flags(emit("vllm", load_model("deepseek-v3"),
                        _config(expert_parallel=16, tensor_parallel=2, gpus_per_replica=16), 2500))
    assert flags["--tensor-parallel-size"] == "2" and flags["--data-parallel-size"] == "8"
    assert "--enable-expert-parallel" in flags and flags["--max-num-seqs"] == "32"
    assert flags["--max-model-len"] == "2500" and flags["--kv-cache-dtype"] == "fp8"
    assert "--quantization" not in flags  # the checkpoint's own fp8: vLLM reads its quantization_config


def test_the_k8s_manifest_requests_the_replicas_gpus():
    yaml = pytest.importorskip("yaml")
    one_node = list(yaml.safe_load_all(emit("k8s", load_model("deepseek-v3"), _config(), 2500)))
    assert one_node[0]["kind"] == "Deployment" and one_node[0]["spec"]["replicas"] == 3
    container = one_node[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["command"][:3] == ["vllm", "serve", "deepseek-ai/DeepSeek-V3"]
    multi = list(yaml.safe_load_all(emit("k8s", load_model("deepseek-v3"),
                                         _config(engine="sglang", expert_parallel=32, tensor_parallel=1,
                                                 gpus_per_replica=32), 2500)))
    assert multi[0]["kind"] == "LeaderWorkerSet" and multi[0]["spec"]["leaderWorkerTemplate"]["size"] == 4
    disaggregated = list(yaml.safe_load_all(emit("k8s", load_model("deepseek-v3"),
                                                 _config(disaggregate="8:16", gpus_per_replica=24), 2500)))
    assert [d["spec"]["replicas"] for d in disaggregated] == [3, 6]  # 3 x 8 / 8 prefill, 3 x 16 / 8 decode


def test_plan_cli_prints_the_choice_and_its_launch_command():
    r = RUNNER.invoke(app, ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200",
                            "--request-rate", "5", "--max-tpot-ms", "40", "--engines", "vllm", "--no-disaggregate",
                            "--emit", "vllm", "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["choice"]["tpot_ms"] <= 40 and out["launch"].startswith("vllm serve meta-llama/")


@pytest.mark.parametrize("args, message", [
    (["--request-rate", "1", "--concurrency", "4"], "exactly one"),
    (["--request-rate", "1", "--engines", "nope"], "--engine"),
    (["--request-rate", "1", "--price-per-gpu-hour", "cheap"], "--price-per-gpu-hour"),
    (["--request-rate", "1", "--emit", "docker"], "--emit"),
])
def test_plan_cli_bad_input_is_one_line_exit_2(args, message):
    r = RUNNER.invoke(app, ["plan", "-m", "llama-3.1-8b", "-i", "100", "-o", "10", *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------------------------------------------------------
# The vectorised search (issue 21 item 6): every point is still serve's closed form, to the last bits
# ---------------------------------------------------------------------------------------------------------------

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.formulas.workload import steady_state, steady_state_many


@settings(max_examples=60, deadline=None)
@given(input_len=st.integers(1, 40_000), output_len=st.integers(1, 5_000), budget=st.sampled_from([512, 2048, 8192, 65536]),
       gain=st.sampled_from([1.0, 1.875, 2.3]), q=st.sampled_from([1, 2, 5]),
       cs=st.lists(st.floats(0.01, 5_000, allow_nan=False), min_size=1, max_size=8))
def test_steady_state_many_is_steady_state_elementwise(input_len, output_len, budget, gain, q, cs):
    """The array bisection runs the scalar one's float operations in the same order: equal, not merely close."""
    import numpy as np

    many = steady_state_many(np.array(cs), input_len, output_len, budget, gain, q)
    for i, c in enumerate(cs):
        assert tuple(float(a[i]) for a in many) == tuple(float(x) for x in steady_state(c, input_len, output_len,
                                                                                        budget, gain, q))


def test_step_timer_takes_arrays_and_keeps_its_scalar_answers():
    """StepTimer.seconds over arrays (pipeline micro-batches, expert-parallel groups, speculation's drafts) equals
    the scalar call element by element (to rounding: numpy's and Python's float power differ in the last bit); an
    operator present at some elements only is refused, not mistimed."""
    import numpy as np

    from kvcalc.formulas._array import nonzero
    from kvcalc.formulas.engine_memory import VLLM_LATEST
    from kvcalc.serving.closed_form import deployment

    b, chunk = np.array([1.0, 3.0, 40.5, 300.0]), np.array([50.0, 900.0, 2000.0, 7000.0])
    cctx = np.array([0, 5, 9, 1e3])
    for lay, speculate in (({"tp": 8, "pp": 2, "ep": 1}, None), ({"tp": 2, "pp": 1, "ep": 16}, "mtp"),
                           ({"tp": 8, "pp": 1, "ep": 1}, "mtp")):
        st_ = deployment("deepseek-v3", "h200", input_len=2000, output_len=500, engine="vllm", weight_dtype="fp8-block",
                         kv_dtype="fp8", memory_utilization=0.9, step_tokens=8192, speculate=speculate,
                         vllm_runner="auto", version=VLLM_LATEST, cuda_graph_bytes=0.0, flashinfer_sampler=False,
                         **lay)["stepper"]
        many = st_.seconds(b, 2250.0, chunk, cctx, prompt_len=2000)
        assert many.tolist() == pytest.approx([st_.seconds(float(x), 2250.0, float(c), float(k), prompt_len=2000)
                                               for x, c, k in zip(b, chunk, cctx)], rel=1e-13)
    assert nonzero(np.zeros(3)) is False and nonzero(np.ones(2)) is True and nonzero(0.0) is False
    with pytest.raises(ValueError):
        nonzero(np.array([0.0, 1.0]))


def test_the_search_times_every_point_as_the_replica_runs_it():
    """plan bisects every replica's steady state in one array, times each ladder in one StepTimer call and the
    disaggregated decode pools of one kind together: each point equals the replica's scalar run (serve's closed form,
    checked against serve() above) to 1e-12, for every layout kind, with and without speculation."""
    from kvcalc.planning.plan import _ladder_points, _runner, steady_states

    spec, hw = load_model("deepseek-v3"), load_gpu("h200")
    ds = [Deployment("h200", "vllm", "fp8-block", "fp8", tp=8, pp=2), Deployment("h200", "sglang", "fp8-block", "fp8",
                                                                                   tp=2, ep=16),
          Deployment("h200", "vllm", "fp8-block", "fp8", tp=8, disaggregate=(8, 16)),
          Deployment("h200", "vllm", "fp8-block", "fp8", tp=8, disaggregate=(16, 8)),
          Deployment("h200", "trtllm", "fp8-block", "bf16", tp=4, ep=16, speculate="mtp"),
          Deployment("h200", "vllm", "fp8-block", "fp8", tp=8, disaggregate=(8, 8), speculate="mtp")]
    memo = {}
    built = [(d, r, batch_ladder(r.max_concurrency)) for d in ds
             for r in [_runner(spec, hw, d, input_len=2000, output_len=500, step_tokens=8192,
                               memory_utilization=0.9, memo=memo)]]
    assert sum(1 for _, r, _ in built if r.decode_key == built[2][1].decode_key) == 2  # the two pools share a kind
    checked = 0
    for (d, r, ladder), state in zip(built, steady_states(built, 2000, 500)):
        for p in _ladder_points(d, r, ladder, 500, 8192, 0.9, state):
            s = r.run(p.in_flight)
            assert p.ttft_ms == pytest.approx(s["ttft_s"] * 1e3, rel=1e-12)
            assert p.tpot_ms == pytest.approx(s["tpot_s"] * 1e3, rel=1e-12)
            assert p.requests_per_s == pytest.approx(s["requests_per_s"], rel=1e-12)
            checked += 1
    assert checked > 6 * 5


def test_a_speculative_replica_is_serves_speculative_deployment():
    """The MTP dimension times a replica as `serve --speculate mtp` does (its draft's weights out of the pool)."""
    spec, hw = load_model("deepseek-v3"), load_gpu("h200")
    r = replica_runner(spec, hw, engine="vllm", weight_dtype="fp8-block", kv_dtype="fp8", tp=8, input_len=2000,
                       output_len=500, speculate="mtp")
    s = serve("deepseek-v3", "h200", input_len=2000, output_len=500, concurrency=32, tp=8, engine="vllm",
              kv_dtype="fp8", cuda_graph_GiB=0, speculate="mtp")
    point = r.run(32)
    assert point["tpot_s"] * 1e3 == pytest.approx(s["tpot_ms"], rel=1e-12)
    assert point["ttft_s"] * 1e3 == pytest.approx(s["ttft_ms"], rel=1e-12)
    assert r.max_concurrency == s["max_concurrency"]


def test_speculation_is_a_marked_dimension_only_where_the_checkpoint_has_a_draft_head():
    """DeepSeek-V3 ships one MTP module: every deployment again with --speculate mtp, marked in its label, but for
    vLLM's pipeline-parallel ones (MTP does not start under --pipeline-parallel-size > 1: the third audit); Llama
    ships none: no speculative deployments."""
    from kvcalc.planning.plan import deployments

    hws = [load_gpu("h200")]
    plain = deployments(load_model("deepseek-v3"), hws, ["vllm"], convert=False, max_gpus=16, disaggregated=False)
    both = deployments(load_model("deepseek-v3"), hws, ["vllm"], convert=False, max_gpus=16, disaggregated=False,
                       speculate=True)
    assert len(both) == len(plain) + len([d for d in plain if d.pp == 1]) < 2 * len(plain)
    assert {d.speculate for d in both} == {None, "mtp"}
    assert next(d for d in both if d.speculate).label().endswith(", speculative mtp")
    llama = deployments(load_model("llama-3.1-8b"), hws, ["vllm"], convert=False, max_gpus=8, disaggregated=False,
                        speculate=True)
    assert all(d.speculate is None for d in llama)


def _finalists(n):
    return [Point(Deployment("h100-sxm", "vllm", "bf16", "bf16", tp=t), in_flight=16, output_len=100, ttft_ms=100.0,
                  tpot_ms=20.0, requests_per_s=5.0, replicas=2, max_in_flight=64) for t in (1, 2, 4, 8)[:n]]


def test_a_finalist_that_misses_at_the_percentile_is_replaced_by_the_next(monkeypatch):
    """The closed form's typical request meets the limits; the simulation says the first finalist's p99 TTFT does
    not (300 ms > 250 ms): it is marked and the next one, whose p99 is within, takes its place. The replica is
    simulated at what sizing gives it: 10 req/s over 2 replicas = Poisson at 5 req/s, max_num_seqs its pool's 64
    seats, not the 16 in flight on average (the ninth round, P5: bursts had queued behind a server sized to the mean)."""
    import kvcalc.serving.simulate as sim
    from kvcalc.planning.plan import verify_at_percentile

    calls = []

    def fake(model, gpu, **kw):
        calls.append(kw)
        ttft = 300.0 if kw["tp"] == 1 else 200.0
        return {"ttft_ms": {"p99": ttft}, "tpot_ms": {"p99": 22.0}}

    monkeypatch.setattr(sim, "simulate", fake)
    pts = _finalists(3)
    chosen = verify_at_percentile(load_model("llama-3.1-8b"), pts, 1, percentile="p99", input_len=1000,
                                  output_len=100, request_rate=10.0, concurrency=None, step_tokens=8192,
                                  memory_utilization=0.9, max_ttft_ms=250.0, max_tpot_ms=30.0)
    assert chosen == [pts[1]] and pts[0].misses == ["TTFT p99"] and pts[0].simulated["met"] is False
    assert pts[1].simulated == {"percentile": "p99", "ttft_ms": 200.0, "tpot_ms": 22.0, "num_prompts": 1000,
                                "seed": 0, "taken_over": "the 1,000 requests of one simulated run (seed 0), its "
                                "ramp-up and drain included", "max_num_seqs": 64, "arrivals": "Poisson, 5 requests/s",
                                "met": True}
    assert calls[0]["arrivals"] == "poisson" and calls[0]["request_rate"] == 5.0 and calls[0]["max_num_seqs"] == 64
    assert calls[0]["percentile"] == 99.0 and len(calls) == 2  # stops once it has the one it needs


def test_a_p99_plan_simulates_its_choice_within_the_limits():
    """End to end on a small model: the choice carries its simulated p99, and it is within the limits."""
    r = plan("llama-3.1-8b", ["h100-sxm"], input_len=500, output_len=50, request_rate=5, max_ttft_ms=500,
             max_tpot_ms=30, percentile="p99", engines=["vllm"], disaggregated=False, runners_up=1,
             simulated_prompts=200)
    c = r["choice"]
    assert c["simulated"]["percentile"] == "p99" and c["simulated"]["met"]
    assert c["simulated"]["ttft_ms"] <= 500 and c["simulated"]["tpot_ms"] <= 30
    assert "re-checked by the request-level simulator" in r["time_model"]


def test_an_array_the_step_timer_refuses_falls_back_to_the_scalar_closed_form():
    """Where an operator is present at some concurrencies only (formulas/_array.py nonzero raises), run_many times
    the ladder point by point: the numbers are still run(c)'s."""
    import numpy as np

    from kvcalc.serving.replica import colocated_many

    class Refusing:
        decode_gain, decode_q, pp, tp, ep = 1.0, 1, 1, 1, 1

        def seconds(self, *args, **kwargs):
            raise ValueError("nonzero: an array mixing zeros and nonzeros")

    r = replica_runner(load_model("llama-3.1-8b"), load_gpu("h100-sxm"), engine="vllm", weight_dtype="bf16",
                       kv_dtype="bf16", tp=1, input_len=1000, output_len=100)
    many = colocated_many(Refusing(), np.array([1.0, 8.0, 64.0]), 1000, 100, 8192, 0.0, r.run)
    assert many["tpot_s"].tolist() == [r.run(c)["tpot_s"] for c in (1.0, 8.0, 64.0)]
    assert many["requests_per_s"].tolist() == [r.run(c)["requests_per_s"] for c in (1.0, 8.0, 64.0)]


@pytest.mark.parametrize("engine, expected", [
    ("vllm", {"--speculative-config": '{"method": "mtp", "num_speculative_tokens": 1}'}),
    ("sglang", {"--speculative-algorithm": "EAGLE", "--speculative-num-steps": "1", "--speculative-eagle-topk": "1",
                "--speculative-num-draft-tokens": "2"}),
])
def test_a_speculative_plan_launches_with_the_checkpoints_mtp_head(engine, expected):
    """DeepSeek-V3's one MTP module (k = 1): vLLM's method mtp (deepseek_mtp its deprecated alias) with one speculative token; SGLang's EAGLE
    (NextN) chain of one step and two draft tokens (the root and the draft)."""
    flags = _flags(emit(engine, load_model("deepseek-v3"), _config(speculate="mtp"), 2500))
    assert set(flags) <= ENGINE_PARSERS[engine]
    assert {k: flags[k] for k in expected} == expected
    trt = emit("trtllm", load_model("deepseek-v3"), _config(speculate="mtp"), 2500)
    assert "decoding_type: MTP" in trt and "num_nextn_predict_layers: 1" in trt


def test_length_distributions_give_their_means_and_longest_request():
    """Worked by hand. Uniform lengths as vllm bench's --random-range-ratio draws them, [floor(L (1 - r)), ceil(L (1 +
    r))]: with r = 0.5, prompts 500-1500 and outputs 100-300 tokens, mean 1,000 / 200, longest 1,500 + 300 = 1,800.
    ShareGPT: LambdaLabsML/vllm-benchmark's 320 pairs sum to 65,578 prompt and 65,331 output tokens; the 303 with a
    reply hold 58,753 prompt tokens: means 58,753 / 303 = 193.9 -> 194 and 65,331 / 303 = 215.6 -> 216."""
    from kvcalc.planning.plan import workload_lengths

    assert workload_lengths(1000, 200) == (1000, 200, 1200)
    assert workload_lengths(1000, 200, 0.5) == (1000, 200, 1800)
    mean_in, mean_out, longest = workload_lengths(None, None, dataset="sharegpt")
    assert (mean_in, mean_out) == (194, 216)
    assert 1024 < longest <= 2048  # the sampler keeps prompts <= 1024 and prompt + reply <= 2048
    for kwargs, message in (({"input_len": 100, "output_len": None, "dataset": "sharegpt"}, "--dataset sharegpt"),
                            ({"input_len": None, "output_len": 200}, "--input-len / --output-len"),
                            ({"input_len": 100, "output_len": 200, "range_ratio": 1.0}, "--range-ratio"),
                            ({"input_len": 100, "output_len": 200, "dataset": "lmsys"}, "--dataset")):
        with pytest.raises(KvcalcError, match=message):
            workload_lengths(**kwargs)


def test_varied_lengths_are_simulated_even_at_the_median_and_launch_for_the_longest():
    """With --range-ratio the closed form runs at the mean lengths and the finalists are re-checked by the simulator
    over the drawn lengths, at p50 too; the emitted --max-model-len holds the longest request (1,800 tokens)."""
    args = ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--range-ratio", "0.5",
            "--request-rate", "5", "--max-tpot-ms", "40", "--engines", "vllm", "--no-disaggregate", "--emit", "vllm",
            "-f", "json"]
    r = RUNNER.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["workload"]["max_model_len"] == 1800 and out["workload"]["range_ratio"] == 0.5
    assert out["choice"]["simulated"]["percentile"] == "p50" and out["choice"]["simulated"]["tpot_ms"] <= 40
    assert "--max-model-len 1800" in out["launch"]
    bad = RUNNER.invoke(app, ["plan", "-m", "llama-3.1-8b", "--dataset", "sharegpt", "-i", "100",
                              "--request-rate", "5"])
    assert bad.exit_code == 2 and "--dataset sharegpt" in bad.output and "Traceback" not in bad.output
