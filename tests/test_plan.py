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
# vllm/engine/arg_utils.py (vllm-project/vllm at 99d7eb5d), python/sglang/srt/server_args.py (sgl-project/sglang at
# 469c63e5), tensorrt_llm/commands/serve.py (NVIDIA/TensorRT-LLM at 00209af1, `trtllm-serve serve`'s click options).
ENGINE_PARSERS = {
    "vllm": {"--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--enable-expert-parallel",
             "--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--kv-cache-dtype",
             "--max-model-len", "--quantization", "--speculative-config", "--kv-transfer-config"},
    "sglang": {"--model-path", "--tp-size", "--pp-size", "--dp-size", "--ep-size", "--enable-dp-attention",
               "--max-running-requests", "--chunked-prefill-size", "--mem-fraction-static", "--kv-cache-dtype",
               "--context-length", "--quantization", "--speculative-algorithm", "--speculative-num-steps",
               "--disaggregation-mode"},
    "trtllm": {"--backend", "--tp_size", "--pp_size", "--ep_size", "--max_batch_size", "--max_num_tokens",
               "--max_seq_len", "--kv_cache_free_gpu_memory_fraction", "--extra_llm_api_options", "--server_role"},
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
    commands = [line for line in text.splitlines() if line and not line.startswith("#") and ":" not in line[:20]]
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
