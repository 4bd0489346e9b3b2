"""Regression tests for the twentieth hostile audit (docs/validation.md, "Twentieth hostile audit"), each named after
its finding."""

from __future__ import annotations

import pathlib
import warnings

import pytest

import kvcalc


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --- the simulator's scheduler ---

def test_r1_vllm_from_0_19_admits_a_request_only_where_its_whole_sequence_fits():
    """vLLM 0.19 (PR #37307, scheduler_reserve_full_isl on by default) admits a waiting request only where its whole
    sequence fits (KVCacheManager.allocate_slots(..., full_sequence_must_fit=True)); before it, the first chunk was
    enough, and 22 Llama-3.1-8B requests of 20,000 + 1,000 tokens on an H100, one more than the pool holds at full
    length, preempted one another over and over. Since the thirty-fourth audit a preempted request finds what vLLM's
    prefix cache kept of it and waits for room to take it back, which calms that churn (2,390 preemptions had been
    16): 0.18 still preempts more than 0.19, at about the same throughput."""
    from kvcalc.serving.simulate import simulate

    kw = dict(input_len=20000, output_len=1000, arrivals="closed", concurrency=22, num_prompts=200, engine="vllm")
    new = _quiet(simulate, "llama-3.1-8b", "h100-sxm", **kw)
    old = _quiet(simulate, "llama-3.1-8b", "h100-sxm", vllm_version="0.18", **kw)
    assert old["preemptions"] > new["preemptions"]
    assert new["output_tokens_per_s"] >= old["output_tokens_per_s"]
    one_less = _quiet(simulate, "llama-3.1-8b", "h100-sxm", **{**kw, "concurrency": 21})
    assert new["output_tokens_per_s"] == pytest.approx(one_less["output_tokens_per_s"], rel=0.03)


# --- speculative decoding, sparse attention, expert parallelism ---

def test_n1_a_draft_step_is_charged_its_own_layers_all_reduces():
    """DeepSeek-V3's MTP module at TP 8 (roofline): the plain step's all-reduces take 1.269 ms over its 122 residual
    blocks; one MTP layer has 2 of them, so its draft step is its kernels plus about 21 us, 0.096 ms (1.344 ms had been
    charged, every draft step the whole model's 122)."""
    e = _quiet(kvcalc.estimate, "deepseek-v3", "h200", tp=8, batch=1, context=4096, engine="roofline", speculate="mtp=1")
    per_allreduce = e.decode.allreduce_ms / 122
    assert e.speculative.draft_ms < 0.15
    assert e.speculative.draft_ms > 2 * per_allreduce
    at_tp1 = _quiet(kvcalc.estimate, "llama-3.1-70b", "h100-sxm", tp=8, batch=1, context=4096, engine="roofline",
                    speculate="eagle,k=4")
    # four draft steps of one 70B layer, its fc and lm_head (about 0.51 GB a GPU at TP 8) and two all-reduces each
    assert at_tp1.speculative.draft_ms < 1.5


def test_n2_deepseek_v32s_indexer_is_whole_on_every_gpu():
    """vLLM's and SGLang's Indexer builds wq_b, wk and weights_proj as ReplicatedLinear, and every GPU scores all 64
    heads: at TP 8 and 65,536 tokens the scores are 61 x 64 x 128 x 2 x (65,536 x 65,537 / 2) FLOPs on each GPU (2.15
    PFLOP), at the fp8 peak; the prefill had been put under that alone (1.29 s, 1.08 s of it the indexer's fp8 floor)."""
    e = _quiet(kvcalc.estimate, "deepseek-v3.2", "h200", tp=8, batch=1, context=65536, kv_dtype="fp8",
               engine="roofline")
    scores = 61 * 64 * 128 * 2 * 65536 * 65537 / 2
    assert e.prefill.speed_of_light_ms > scores / 1979e12 * 1e3
    one = _quiet(kvcalc.estimate, "deepseek-v3.2", "h200", tp=1, batch=1, context=65536, kv_dtype="fp8",
                 engine="roofline")
    eight = e
    # and its projections whole on every GPU: 13,959,168 weights a layer (1,536 x 8,192 + 7,168 x 128 + 7,168 x 64)
    from kvcalc.formulas.params import tp_whole_bytes
    from kvcalc.specs.catalog import load_model

    spec = load_model("deepseek-v3.2")
    without = spec.model_copy(update={"attention": spec.attention.model_copy(update={
        "sparse_top_k": None, "indexer_heads": None, "indexer_head_dim": None})})
    indexer = 61 * (1536 * 8192 + 7168 * 128 + 7168 * 64)  # at 1 B a weight; its key's LayerNorm (2 x 128) in bf16
    k_norm = 61 * 2 * 128 * 2
    assert tp_whole_bytes(spec, 1.0, 8) - tp_whole_bytes(without, 1.0, 8) == pytest.approx((indexer + k_norm) * 7 / 8)
    assert one.decode.ms > eight.decode.ms  # more GPUs still decode faster


def test_n3_a_tensor_parallel_replica_splits_its_tokens_before_the_dispatch():
    """vLLM's use_sequence_parallel_moe (expert parallelism, TP > 1, DP > 1): each of a replica's TP ranks dispatches
    its 1 / tp of the tokens. DeepSeek-V3 at batch 256 on 16 H100s: TP 8 x EP 16 had decoded in 61 ms (34 ms of it
    all-to-all, the whole replica's tokens on every rank) against TP 1 x EP 16's 25 ms."""
    kw = dict(batch=256, context=4096, engine="roofline")
    tp8 = _quiet(kvcalc.estimate, "deepseek-v3", "h100-sxm", tp=8, ep=16, **kw)
    tp1 = _quiet(kvcalc.estimate, "deepseek-v3", "h100-sxm", tp=1, ep=16, **kw)
    assert tp8.decode.allreduce_ms < 2 * tp1.decode.allreduce_ms + tp8.decode.allreduce_ms / 2
    assert tp8.decode.ms < 40
    assert tp8.prefill.ms < 2 * tp1.prefill.ms  # 136 s had been given against 20


# --- the Python API and the web app ---

@pytest.mark.parametrize("bad, said", [
    ({"memory_utilization": 2.0}, "memory_utilization: expected a finite number in (0, 1]"),
    ({"memory_utilization": float("nan")}, "memory_utilization: expected a finite number"),
    ({"step_tokens": 0}, "step_tokens: expected a whole number"),
    ({"runners_up": -1}, "runners_up: expected a whole number from 0"),
    ({"convert": "no"}, "convert: expected True or False"),
    ({"disaggregated": 2}, "disaggregated: expected True or False"),
])
def test_w1_plan_checks_its_python_arguments(bad, said):
    with pytest.raises(kvcalc.KvcalcError) as e:
        kvcalc.plan("llama-3-8b", gpus=["h100-sxm"], input_len=100, output_len=10, request_rate=1, **bad)
    assert said in str(e.value)


def test_w2_a_page_with_a_tpot_limit_at_no_finite_x_draws_no_line():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    r = client.get("/serve", params={"model": "llama-3-8b", "input_len": "1000", "output_len": "200",
                                     "concurrency": "1,2", "max_tpot_ms": "1e-306"})
    assert r.status_code == 200 and "TPOT limit 1e-306" not in r.text


@pytest.mark.parametrize("ref, said", [(pathlib.Path("/tmp/kvcalc-no-such-spec.toml"), "no such file"),
                                       (pathlib.Path("llama-3-8b"), None)])
def test_w3_a_pathlib_path_is_read_as_the_path_it_names(ref, said):
    if said:
        with pytest.raises(kvcalc.KvcalcError, match=said):
            kvcalc.estimate(ref, "h100-sxm")
    else:
        assert _quiet(kvcalc.estimate, ref, "h100-sxm").inputs.model == "llama-3-8b"


@pytest.mark.parametrize("bad, said", [({"gpu": ["h100-sxm"]}, "gpu: expected a name"),
                                       ({"keep_timeline": "no"}, "keep_timeline: expected True or False"),
                                       ({"concurrency": "4"}, "concurrency: expected a finite number")])
def test_w4_simulate_checks_its_arguments_as_the_other_functions_do(bad, said):
    kw = dict(input_len=100, output_len=10, num_prompts=20, arrivals="closed", concurrency=4) | bad
    with pytest.raises(kvcalc.KvcalcError) as e:
        kvcalc.simulate("llama-3-8b", **kw)
    assert str(e.value).startswith(said)


@pytest.mark.parametrize("args, flag", [
    (["roofline", "-m", "llama-3-8b", "-b", "1,1"], "--batch"),
    (["compare", "-m", "llama-3-8b", "--attn", "mha,mha"], "--attn"),
    (["sweep", "-m", "llama-3-8b", "--gpu", "h100-sxm,h100-sxm"], "--gpu"),
])
def test_w6_a_value_listed_twice_is_refused_as_serve_refuses_it(args, flag):
    from tests.test_fifth_audit import one_line_error

    line = one_line_error(args)
    assert f"{flag}: " in line and "listed twice" in line


def test_w7_the_openapi_schema_advertises_the_formats_the_api_answers():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    schema = client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        if path.startswith("/api/"):
            fmt = next((p for p in item["get"]["parameters"] if p["name"] == "format"), None)  # roofline: json only
            assert fmt is None or (fmt["schema"]["default"] == "json" and fmt["schema"]["enum"] == ["json", "csv"]), path
    assert sum("format" in [p["name"] for p in i["get"]["parameters"]] for i in schema["paths"].values() if "get" in i
               and "parameters" in i["get"]) == 5
    # the default it advertises is one the API takes
    assert client.get("/api/estimate", params={"format": "json", "model": "llama-3-8b"}).status_code == 200


def test_w5_the_form_shows_what_the_result_used_and_keeps_url_only_options():
    """/plan?...&no_convert=true had searched without conversion while the form showed --convert true (so Calculate
    changed the result); capacity's gpus= is --tp; an option the form does not show is kept for the next submit."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")
    import re

    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    client = TestClient(create_app())
    page = client.get("/plan", params={"model": "llama-3-8b", "input_len": "1000", "output_len": "200",
                                       "request_rate": "5", "no_convert": "true"}).text
    select = re.search(r'<select id="f-convert".*?</select>', page)[0]
    assert '<option value="false" selected>' in select and '<option value="true" selected>' not in select
    page = client.get("/capacity", params={"model": "llama-3-8b", "context": "8192", "gpus": "4",
                                           "prefill_chunk": "512"}).text
    assert re.search(r'id="f-tp" name="tp" value="4"', page)
    assert '<input type="hidden" name="prefill_chunk" value="512">' in page


def test_n6_an_mtp_draft_under_expert_parallelism_reads_only_its_gpus_experts():
    """DeepSeek-V3's MTP layer at --ep 8 holds 32 of its 256 routed experts on each GPU (draft_weight_bytes_per_gpu);
    at batch 1,024 the group's 1,024 draft tokens touch nearly all 256, and the busiest GPU reads its own 32 (each
    3 x 7,168 x 2,048 weights, 1.41 GB of fp8 in all): its draft step had read all 251 touched, 11 GB (3.2 ms on an
    H200), and now stays under the weights it holds plus the rest of the layer."""
    from kvcalc.specs.catalog import load_gpu

    e = _quiet(kvcalc.estimate, "deepseek-v3", "h200", ep=8, batch=1024, context=2048, engine="roofline",
               speculate="mtp=1")
    own_experts = 32 * 3 * 7168 * 2048 * (1 + 4 / 128 ** 2)  # fp8-block: 1 B a weight and a fp32 scale per block
    bandwidth = load_gpu("h200").memory_bandwidth_GBps * 1e9
    assert e.speculative.draft_ms < 1.0 + own_experts / bandwidth * 1e3 * 2  # was 3.2 ms
    assert e.speculative.draft_ms > own_experts / bandwidth * 1e3  # never under its own experts' read
