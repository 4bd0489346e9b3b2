"""The left lists of the twentieth and twenty-second audits taken up, and the twenty-third hostile audit
(docs/validation.md, "Twenty-third hostile audit"): each test is named after its finding."""

import csv
from pathlib import Path

import pytest

from kvcalc.engines.scheduler import ahead_before_default, sglang_rank_chunk, sglang_server_budget
from kvcalc.serving.closed_form import serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("gpu_GiB", "chunk"), [
    # sgl-project/sglang python/sglang/srt/server_args.py _handle_gpu_memory_settings (PR #10975), gpu_mem in MiB:
    # < 20 GiB 2048 (T4), < 35 GiB 2048 (A10, 4090, 5090), < 60 GiB 4096 (A100 40GB, L40), < 90 GiB 8192 (H100),
    # < 160 GiB 8192 (H200), else 16384 (B200, MI300)
    (16, 2048), (24, 2048), (32, 2048), (40, 4096), (48, 4096), (80, 8192), (94, 8192), (141, 8192), (180, 16384),
    (192, 16384), (288, 16384)])
def test_20_r4_sglang_chunk_by_the_gpus_memory(gpu_GiB, chunk):
    assert sglang_server_budget(gpu_GiB * 1024) == chunk
    assert sglang_server_budget(gpu_GiB * 1024, "0.5.3") == chunk  # the first release with PR #10975 (bumped 2025-10-06)
    # before it, from PR #2268 (v0.4.0): `if gpu_mem < 25_000: 2048` else 8192 (the twenty-third audit, F2)
    before = 2048 if gpu_GiB * 1024 < 25_000 else 8192
    assert sglang_server_budget(gpu_GiB * 1024, "0.5.2") == before
    assert sglang_server_budget(gpu_GiB * 1024, "unknown (2025-09)") == before
    assert sglang_server_budget(gpu_GiB * 1024, "0.3.0") == 8192
    assert sglang_server_budget(gpu_GiB * 1024, "unknown (2025-11)") == chunk


def test_20_r4_sglang_dp_attention_ranks_share_the_chunk():
    """server_args.py _handle_data_parallelism, after _handle_gpu_memory_settings: `self.chunked_prefill_size =
    self.chunked_prefill_size // self.dp_size` under --enable-dp-attention (PR #4390, 2025-03); before it,
    `self.chunked_prefill_size // 2` with dp_size = tp_size."""
    assert sglang_server_budget(141 * 1024, "0.5.3", dp=8) == 1024
    assert sglang_server_budget(192 * 1024, None, dp=8) == 2048
    assert sglang_server_budget(141 * 1024, "0.4.3.post2", dp=8) == 4096
    assert sglang_rank_chunk(65536, 8, "0.5.14") == 8192
    assert sglang_rank_chunk(8192, 1, "0.5.14") == 8192


def test_20_r4_serve_and_simulate_take_sglangs_chunk():
    from kvcalc.serving.simulate import simulate

    b200 = serve("llama-3-8b", "b200", engine="sglang", input_len=4000, output_len=200, concurrency=16)
    l40s = serve("llama-3-8b", "l40s", engine="sglang", input_len=4000, output_len=200, concurrency=16)
    assert "at most 16,384 tokens a step" in b200["assumptions"]["batching"]
    assert "at most 4,096 tokens a step" in l40s["assumptions"]["batching"]
    sim = simulate("llama-3-8b", "b200", engine="sglang", input_len=4000, output_len=20, concurrency=4,
                   num_prompts=8)
    assert sim["step_tokens"] == 16384
    # DeepSeek-V2-Lite over 8 H200s as 8 data-parallel attention ranks: 8,192 // 8 a rank
    dp = simulate("deepseek-v2-lite", "h200", engine="sglang", ep=8, input_len=2000, output_len=8, concurrency=8,
                  num_prompts=8)
    assert dp["step_tokens"] == 1024


def test_20_r4_ledger_rows_take_the_ranks_chunk():
    from kvcalc.ledgers.serving_sim import row_kwargs

    rows = {r["id"]: r for r in csv.DictReader(open(ROOT / "validation/serve/unseen-serving.csv"))}
    assert row_kwargs(rows["sv-016"])["step_tokens"] == 1024  # SGLang 0.5.3, DeepSeek-R1 on 8 H200s, DP attention
    assert row_kwargs(rows["sv-045"])["step_tokens"] == 4096  # SGLang 0.4.3.post2, the same: halved
    assert row_kwargs(rows["sv-014"])["step_tokens"] == 8192  # 0.5.3 without DP attention


def test_release_before_keeps_the_ahead_rule():
    """ahead_before_default now reads releases through release_before (behaviour unchanged)."""
    assert ahead_before_default("vllm", "0.13.1") is False
    assert ahead_before_default("vllm", "0.14.0") is None
    assert ahead_before_default("vllm", "unknown (2025-12)") is False
    assert ahead_before_default("vllm", "unknown (2026-01)") is None
    assert ahead_before_default("sglang", "0.3.0") is False


def _estimate_config(tmp_path, config: dict):
    import json

    from typer.testing import CliRunner

    from kvcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return CliRunner().invoke(app, ["estimate", "-m", str(path), "-f", "json"])


# LiquidAI LFM2-1.2B's config.json, its structural fields (as vendored verbatim in a public test of an NPU port;
# transformers' Lfm2Config: layers in full_attn_idxs attention, the others short convolutions)
LFM2 = {"architectures": ["Lfm2ForCausalLM"], "model_type": "lfm2", "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "vocab_size": 65536, "max_position_embeddings": 128000, "full_attn_idxs": [2, 5, 8, 10, 12, 14],
        "conv_L_cache": 3, "conv_dim": 2048, "torch_dtype": "bfloat16"}


def test_23_h1_lfm2_is_refused_by_its_convolution_layers(tmp_path):
    """Read as 16 attention layers its KV had been 32,768 B a token where LFM2-1.2B's 6 attention layers keep
    6 x 2 x 8 x 64 x 2 = 12,288."""
    out = _estimate_config(tmp_path, LFM2)
    assert out.exit_code == 2 and "LFM2's short-convolution layers" in out.output
    out = _estimate_config(tmp_path, {**LFM2, "model_type": "lfm_fork"})  # by its fields, whatever the name
    assert out.exit_code == 2 and "full_attn_idxs: layers other than softmax attention" in out.output


def test_23_h2_h3_h4_families_refused_for_their_own_fields(tmp_path):
    """Gemma 4, Llama-Nemotron NAS, ERNIE 4.5 MoE, Hunyuan MoE and Step-3.5 had been refused for another field (a rope
    type, intermediate_size, a top-k name, layer_types' length) and read wrong once it was supplied."""
    base = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 4, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 32000}
    for model_type, field in (("gemma4_text", "attention_k_eq_v"), ("nemotron-nas", "block_configs"),
                              ("ernie4_5_moe", "moe_k"), ("hunyuan_v1_moe", "moe_topk"),
                              ("step3p5", "num_attention_groups"), ("deci", "num_key_value_heads_per_layer")):
        out = _estimate_config(tmp_path, {**base, "model_type": model_type})
        assert out.exit_code == 2 and field in out.output, (model_type, out.output)


def test_23_h4_moe_num_shared_experts_is_read(tmp_path):
    """ERNIE-4.5-21B-A3B's fields under a model_type kvcalc reads by its fields (baidu's config.json as vendored in
    a public mlx-swift test, num_experts_per_tok added as a user would): transformers' Ernie4_5_MoeSparseMoeBlock
    builds shared_experts of moe_intermediate_size x moe_num_shared_experts, so its 27 MoE layers hold
    27 x 3 x 2560 x (1536 x 2) = 637,009,920 shared-expert weights (they had been left out: 0)."""
    ernie = {"architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie_fork", "hidden_size": 2560,
             "intermediate_size": 12288, "max_position_embeddings": 131072, "num_attention_heads": 20,
             "num_key_value_heads": 4, "num_hidden_layers": 28, "vocab_size": 103424, "use_bias": False,
             "tie_word_embeddings": True, "moe_num_experts": 64, "moe_layer_start_index": 1,
             "moe_intermediate_size": 1536, "moe_k": 6, "moe_layer_interval": 1, "moe_num_shared_experts": 2,
             "num_experts_per_tok": 6, "torch_dtype": "bfloat16"}
    import json

    out = _estimate_config(tmp_path, ernie)
    assert out.exit_code == 0, out.output
    weights = json.loads(out.stdout)["weights"]["breakdown"]
    assert weights["moe/shared"] == 27 * 3 * 2560 * 1536 * 2


def test_23_s2_falcon_sums_attention_and_mlp_into_one_all_reduce():
    """vLLM's falcon.py: reduce_row_parallel_results = not (new_decoder_architecture or parallel_attn), and
    FalconDecoderLayer adds the MLP's and attention's outputs before one tensor_model_parallel_all_reduce. Falcon-40B
    (both set) runs 60 all-reduces a step at TP 8, not 120: the same spec with two a layer takes twice the time."""
    from kvcalc.estimator import estimate
    from kvcalc.specs.catalog import load_model

    falcon = load_model("falcon-40b")
    assert falcon.single_reduce and falcon.residual_blocks == 60
    one = estimate(falcon, "h100-sxm", batch=1, context=2048, tp=8)
    two = estimate(falcon.model_copy(update={"single_reduce": False}), "h100-sxm", batch=1, context=2048, tp=8)
    assert two.decode.allreduce_ms == pytest.approx(2 * one.decode.allreduce_ms, rel=1e-9)


def test_23_s2_falcon_configs_say_so(tmp_path):
    import json

    from kvcalc.specs.hf import load_hf_spec

    base = {"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71, "num_hidden_layers": 32,
            "vocab_size": 65024, "multi_query": True, "bias": False}
    for parallel, one in ((True, True), (False, False)):
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**base, "parallel_attn": parallel}))
        assert load_hf_spec(path)[0].single_reduce is one


def test_23_s4_ep_that_does_not_divide_the_experts_says_why():
    from typer.testing import CliRunner

    from kvcalc.cli import app

    out = CliRunner().invoke(app, ["estimate", "-m", "deepseek-v3", "-g", "h200", "--ep", "24"])
    assert out.exit_code == 2 and "as SGLang and TensorRT-LLM require" in out.output
    assert "determine_expert_map" in out.output


@pytest.mark.parametrize(("engine", "gpu", "weight_dtype", "says"), [
    # vLLM's Mxfp4Config.get_min_capability() is 80: a T4 is 7.5 (NVIDIA's compute capability table)
    ("vllm", "t4", "mxfp4", "compute capability 8.0"),
    # TensorRT-LLM's hardware support matrix (docs/source/features/quantization.md): MXFP4 on Hopper and Blackwell
    ("trtllm", "a100-sxm-80gb", "mxfp4", "Hopper and Blackwell only"),
    ("trtllm", "l40s", "mxfp4", "Hopper and Blackwell only"),
    # vLLM's ROCm FP8 kernels require MI3xx; its weight-only FP8 Marlin is CUDA-only: CDNA 2 has neither
    ("vllm", "mi250x-gcd", "fp8", "MI300 or later"),
    ("vllm", "mi210", "fp8-block", "MI300 or later"),
    # the same matrix's FP8 (block scaling): Hopper and Blackwell sm100/103, not Ada or sm120
    ("trtllm", "l40s", "fp8-block", "sm89"),
    ("trtllm", "rtx-5090", "fp8-block", "sm120"),
])
def test_23_g1_g4_formats_an_engine_does_not_load_on_the_part(engine, gpu, weight_dtype, says):
    from kvcalc.engines.formats import engine_format_refusal
    from kvcalc.specs.catalog import load_gpu

    why = engine_format_refusal(engine, load_gpu(gpu), weight_dtype)
    assert why is not None and says in why and "does not start" in why


@pytest.mark.parametrize(("engine", "gpu", "weight_dtype"), [
    ("vllm", "a100-sxm-80gb", "mxfp4"), ("trtllm", "h100-sxm", "mxfp4"), ("vllm", "mi300x", "fp8"),
    ("trtllm", "h100-sxm", "fp8-block"), ("trtllm", "b200", "fp8-block"), ("trtllm", "l40s", "fp8"),
    ("vllm", "a100-sxm-80gb", "fp8")])  # vLLM's FP8 Marlin on Ampere, weight-only
def test_23_g1_g4_formats_that_start(engine, gpu, weight_dtype):
    from kvcalc.engines.formats import engine_format_refusal
    from kvcalc.specs.catalog import load_gpu

    assert engine_format_refusal(engine, load_gpu(gpu), weight_dtype) is None


def test_23_g1_plan_says_why_nothing_starts():
    """gpt-oss-20b (MXFP4) on a T4: SGLang and TensorRT-LLM do not run there, and vLLM refuses MXFP4 below 8.0: plan
    had chosen vLLM, and then said 'no deployment holds one full-length request' once vLLM was left out."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    out = CliRunner().invoke(app, ["plan", "-m", "gpt-oss-20b", "-g", "t4", "-i", "500", "-o", "100", "-n", "4"])
    assert out.exit_code == 2 and "no deployment of gpt-oss-20b starts on t4" in out.output
    assert "compute capability 8.0" in out.output


def test_23_g_every_bundled_gpu_states_its_compute_capability():
    from kvcalc.specs.catalog import bundled_specs

    for hw in bundled_specs("gpu"):
        name = hw.name
        assert hw.compute_capability, name
        assert hw.compute_capability.startswith("gfx") == (hw.vendor == "AMD"), name


def _quiet(f, *a, **k):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


# Llama-2-7B (MHA: 32 layers x 32 KV heads x 128) keeps 2 x 32 x 32 x 128 x 2 B = 524,288 B a token: a 512-token
# prompt's cache is 268,435,456 B, 5.369 ms over a B200's 50 GB/s each way (scale_out_bandwidth_GBps 100, both ways)
LLAMA2_512_TRANSFER_S = 512 * 524_288 / 50e9


def test_23_d1_the_prefill_pool_hands_on_no_more_caches_than_its_link_carries():
    r = _quiet(serve, "llama-2-7b", "b200", input_len=512, output_len=64, disaggregate=(1, 1), concurrency="max",
               engine="vllm", weight_dtype="fp8")
    assert r["assumptions"]["kv_transfer_ms"] == pytest.approx(LLAMA2_512_TRANSFER_S * 1e3, rel=1e-9)
    # 186.3/s, not 252.7; vLLM's per-request cost (engines/overhead.py) takes it to C / (latency + 9 ms) of that
    assert r["requests_per_s"] <= 1 / LLAMA2_512_TRANSFER_S
    assert r["requests_per_s"] == pytest.approx(1 / LLAMA2_512_TRANSFER_S, rel=0.01)


def test_23_d2_a_decode_replica_receives_one_cache_at_a_time():
    """Two prefill replicas send at t = 0 to one decode replica, 2 s a transfer: the second waits for the receiving
    link (done at 2 and 4, where each sender's link alone had allowed 2 and 2); to two decode replicas, 2 and 2."""
    from kvcalc.serving.simulate import link_queue

    assert list(link_queue([0.0, 0.0], [2.0, 2.0], [0, 1], [0, 0])) == [2.0, 4.0]
    assert list(link_queue([0.0, 0.0], [2.0, 2.0], [0, 1], [0, 1])) == [2.0, 2.0]
    assert list(link_queue([0.0, 0.0], [2.0, 2.0], [0, 1], [-1, -1])) == [2.0, 2.0]  # one-token requests: no receiver


def test_23_d2_four_prefill_replicas_into_one_decode_gpu(tmp_path):
    """4:1 at 240 requests/s evenly spaced: one decode GPU's link takes at most 1 / 5.369 ms = 186 caches a second;
    the simulator had served 228 (61 GB/s through a 50 GB/s link)."""
    trace = tmp_path / "ev.csv"
    trace.write_text("arrival_s,input_len,output_len\n" + "".join(f"{i / 240},512,64\n" for i in range(1200)))
    from kvcalc.serving.simulate import simulate

    r = _quiet(simulate, "llama-2-7b", "b200", engine="vllm", weight_dtype="fp8", arrivals="trace",
               trace=str(trace), disaggregate=(4, 1))
    assert r["requests_per_s"] <= 1 / LLAMA2_512_TRANSFER_S


def test_23_d3_a_decode_pool_that_cannot_keep_up_is_said():
    """Llama-3.1-8B on L40S, 2,000 + 4,000 tokens, 1 request/s into a 1:1 split that serves about 0.17/s: the decode
    pool's queue grows; it had shown none waiting and no warning (TTFT taken as the transfer ended)."""
    from kvcalc.serving.simulate import simulate

    r = _quiet(simulate, "llama-3.1-8b", "l40s", engine="vllm", input_len=2000, output_len=4000, arrivals="poisson",
               request_rate=1, num_prompts=100, disaggregate=(1, 1))
    assert r["max_waiting"] > 10
    assert any("requests/s arrive where this deployment serves" in w for w in r["warnings"])
    assert r["ttft_ms"]["p99"] > 10_000  # the last ones wait for the decode pool's seats


def test_23_d4_vllms_first_token_comes_from_a_decode_step_sglangs_is_handed_on():
    """vLLM's decode instance sets num_computed_tokens one short of the prompt (Scheduler.
    _update_waiting_for_remote_kv) and streams the token its first step computes; SGLang's decode server streams the
    prefill's token as it takes the request in. The closed form: vLLM's TTFT holds one decode step more."""
    ask = dict(input_len=1000, output_len=200, disaggregate=(1, 1), request_rate=10)
    v = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="vllm", **ask)
    s = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="sglang", **ask)
    v_alone = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="vllm", input_len=1000, output_len=200, concurrency=1)
    s_alone = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="sglang", input_len=1000, output_len=200,
                     concurrency=1)
    a = v["assumptions"]
    assert v["ttft_ms"] == pytest.approx(v_alone["ttft_ms"] + a["kv_transfer_ms"] + a["step_ms"], rel=1e-9)
    assert s["ttft_ms"] == pytest.approx(s_alone["ttft_ms"] + s["assumptions"]["kv_transfer_ms"], rel=1e-9)


def test_23_d6_a_kv_transfer_takes_the_link_it_can():
    """MI300X (no scale-out figure in its spec): 4:4 at TP 4 stays on one 8-GPU board, each prefill GPU sending its
    quarter of Llama-3.1-70B's 4,000-token cache (4,000 x 327,680 B / 4 = 327.68 MB) over the one Infinity Fabric
    link to its decode GPU, 64 GB/s each way (the CDNA 3 white paper's x16 at 32 Gbps; the spec's 896 GB/s over 7
    peer links): 5.12 ms (had been 0.73, all seven links); 8:8 at TP 8 spans two boards, which needs the spec's
    scale-out figure, as a tensor-parallel group of 16 does."""
    from kvcalc.errors import KvcalcError

    ask = dict(input_len=4000, output_len=300, request_rate=1, engine="vllm")
    r = _quiet(serve, "llama-3.1-70b", "mi300x", tp=4, disaggregate=(4, 4), **ask)
    assert r["assumptions"]["kv_transfer_ms"] == pytest.approx(4000 * 327_680 / 4 / 64e9 * 1e3, rel=1e-9)
    with pytest.raises(KvcalcError, match="pools of 16 move their KV caches between boxes"):
        _quiet(serve, "llama-3.1-70b", "mi300x", tp=8, disaggregate=(8, 8), **ask)


def test_23_s1_sglang_splits_lm_head_dense_layers_and_shared_experts_over_the_ep_group():
    """DeepSeek-V3 (config.json: vocab 129,280, hidden 7,168, 3 dense layers of 18,432, 58 MoE layers with one shared
    expert of 2,048) in block FP8 at --tp 1 --ep 8 under SGLang's data-parallel attention: its lm_head (bf16,
    129,280 x 7,168), dense MLPs (3 x 3 x 7,168 x 18,432) and shared experts (58 x 3 x 7,168 x 2,048, at 1 + 4 / 128^2
    bytes a weight) are split over the 8 GPUs (deepseek_v2.py), where vLLM's layout keeps them whole on each: 7 / 8 of
    them, 4,897,977,280 B a GPU, less weight and that much more pool."""
    from kvcalc.engines.memory import sglang_memory
    from kvcalc.estimator import precision
    from kvcalc.specs.catalog import load_gpu, load_model

    spec, hw = load_model("deepseek-v3"), load_gpu("h200")
    p = precision("fp8-block", "bf16")
    s = sglang_memory(spec, hw, p, 1, context=4096, memory_utilization=0.9, ep=8)
    from kvcalc.formulas.params import weight_bytes_per_gpu

    split = 7 / 8 * (129_280 * 7_168 * 2 + (3 * 3 * 7_168 * 18_432 + 58 * 3 * 7_168 * 2_048) * (1 + 4 / 128**2))
    assert weight_bytes_per_gpu(spec, p.b_w, 1, 1, 8) - s["weights_bytes_per_gpu"] == pytest.approx(split, rel=1e-12)


def test_23_s3_each_engine_splits_pipeline_stages_its_own_way():
    """Layers left over go to the stages before the last in vLLM (get_pp_indices), to the last in SGLang
    (python/sglang/srt/distributed/utils.py get_pp_indices: `if pp_rank >= pp_size - remainder`) and to the first in
    TensorRT-LLM (mapping.py pp_layers: torch.tensor_split); each engine's pool is sized at its own heaviest stage."""
    from kvcalc.engines.memory import sglang_memory, trtllm_memory
    from kvcalc.estimator import precision
    from kvcalc.formulas.params import pipeline_stage_layers, stage_weight_bytes
    from kvcalc.specs.catalog import load_gpu, load_model

    assert pipeline_stage_layers(64, 3) == [21, 22, 21]
    assert pipeline_stage_layers(64, 3, "last") == [21, 21, 22]
    assert pipeline_stage_layers(64, 3, "first") == [22, 21, 21]
    assert pipeline_stage_layers(61, 4, "last") == [15, 15, 15, 16]
    spec, hw, p = load_model("qwen3-32b"), load_gpu("h100-sxm"), precision("bf16", "bf16")
    s = sglang_memory(spec, hw, p, 1, context=8192, memory_utilization=0.9, pp=3)
    t = trtllm_memory(spec, hw, p, 1, context=8192, memory_utilization=0.9, pp=3)
    assert s["weights_bytes_per_gpu"] == max(stage_weight_bytes(spec, p.b_w, [21, 21, 22]))
    assert t["weights_bytes_per_gpu"] == max(stage_weight_bytes(spec, p.b_w, [22, 21, 21]))


def test_23_m1_sglang_sets_a_pool_of_states_apart_for_linear_attention_models():
    """Qwen3-Next-80B-A3B on two H200s under SGLang (model_runner_kv_cache_mixin.py handle_max_mamba_cache): of the
    pool, 0.9 / 1.9 goes to whole per-request states, each on one GPU 36 Gated DeltaNet layers x (the conv's 3 past
    inputs of 4,096 channels in bf16 + 16 heads' 128 x 128 SSM matrices in float32) = 36 x (24,576 + 1,048,576) =
    38,633,472 B; the rest holds KV tokens of 12,288 B (12 attention layers, one KV head of 256 a GPU, K and V in
    bf16); max_running_requests at most the states // 3."""
    from kvcalc.planning.capacity import capacity

    c = _quiet(capacity, "qwen3-next-80b-a3b", "h200", tp=2, context=32768, engine="sglang", memory_utilization=0.85)
    e = c["engine_memory"]
    state = 36 * (3 * 4_096 * 2 + 16 * 128 * 128 * 4)
    slots = int(e["available_kv_bytes"] * 0.9 / 1.9 // state)
    assert e["state_slots"] == slots
    assert e["kv_tokens"] == (e["available_kv_bytes"] - slots * state) // 12_288
    short = _quiet(capacity, "qwen3-next-80b-a3b", "h200", tp=2, context=1024, engine="sglang",
                   memory_utilization=0.85)
    assert any(f"max_running_requests {slots // 3:,} caps" in n for n in short["warnings"])


def test_23_m3_sglangs_token_count_of_a_hybrid_sliding_pool_is_its_full_layers():
    """gpt-oss-120b on an H100 under SGLang's hybrid pool (model_runner_kv_cache_mixin.py, full_tokens = R / (F n_full
    + r S n_swa), r = 0.8): 18 full and 18 sliding layers of 8 KV heads x 64 x 2 x 2 B = 2,048 B a token."""
    from kvcalc.planning.capacity import capacity

    c = _quiet(capacity, "gpt-oss-120b", "h100-sxm", tp=1, context=131072, engine="sglang", memory_utilization=0.85)
    e = c["engine_memory"]
    assert e["kv_tokens"] == int(e["available_kv_bytes"] // (2_048 * (18 + 0.8 * 18)))


def test_23_g6_w8a8_timed_by_a_weight_only_table_is_said():
    """kvcalc's int8 is W8A8 (dtypes.py); a profile without a measured W8A8 kernel times it by the weight-only int8
    table (W8A16), which runs slower than int8 tensor cores do (vLLM's int8 prefill on an H100 had been 1.9x bf16's,
    with no word). TensorRT-LLM's A100 tables measure W8A8 (gemm.w8a8), and int8-wo asks for weight-only."""
    from kvcalc.estimator import estimate

    said = "no measured W8A8 kernel"
    assert any(said in w for w in _quiet(estimate, "llama-3.1-8b", "h100-sxm", weight_dtype="int8",
                                         engine="vllm").warnings)
    assert not any(said in w for w in _quiet(estimate, "llama-3.1-8b", "a100-sxm-80gb", weight_dtype="int8",
                                             engine="trtllm").warnings)
    assert not any(said in w for w in _quiet(estimate, "llama-3.1-8b", "h100-sxm", weight_dtype="int8-wo",
                                             engine="vllm").warnings)


def test_23_f4_a_non_text_engine_version_is_refused_by_name():
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="--engine-version: expected a release"):
        serve("llama-3-8b", "h100-sxm", engine="sglang", input_len=100, output_len=10, concurrency=1, engine_version=5)


def test_23_f1_one_token_requests_cross_no_decode_link(tmp_path):
    """A request done at its first token leaves at the prefill pool (the simulator's link_queue gives it no receiver):
    with one-token outputs the decode replicas' links do not bound the rate, so 4:1 serves what 4:4 does. On an H100
    copy whose scale-out link is 1 GB/s, where the links bind."""
    spec = (ROOT / "hardware_specs/h100-sxm.toml").read_text()
    path = tmp_path / "slow.toml"
    path.write_text(spec.replace("scale_out_bandwidth_GBps = 100", "scale_out_bandwidth_GBps = 1"))
    ask = dict(engine="vllm", input_len=2000, output_len=1, concurrency=256)
    one = _quiet(serve, "llama-3.1-8b", str(path), disaggregate=(4, 1), **ask)
    four = _quiet(serve, "llama-3.1-8b", str(path), disaggregate=(4, 4), **ask)
    assert one["requests_per_s"] == pytest.approx(four["requests_per_s"], rel=1e-3)
    assert one["requests_per_s"] > 3 / (one["assumptions"]["kv_transfer_ms"] / 1e3)  # four senders, not one receiver


@pytest.mark.parametrize(("vendor_name", "cc", "says"), [
    ("mi300x", "9.0", "on an AMD part; expected an LLVM target"),
    ("h100-sxm", "gfx942", "on an NVIDIA part; expected a compute capability"),
    ("h100-sxm", "\u0669.0", "should match pattern"),  # an Arabic-Indic nine
    ("h100-sxm", "99.9", "should match pattern")])
def test_23_f7_compute_capability_is_checked(tmp_path, vendor_name, cc, says):
    import re

    from typer.testing import CliRunner

    from kvcalc.cli import app

    text = (ROOT / f"hardware_specs/{vendor_name}.toml").read_text()
    text = re.sub(r'^compute_capability = .*$', lambda _: f'compute_capability = "{cc}"', text, flags=re.M)
    text = re.sub(r'^name = ".*"$', 'name = "my-part"', text, count=1, flags=re.M)
    path = tmp_path / "part.toml"
    path.write_text(text, encoding="utf-8")
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", str(path)])
    assert out.exit_code == 2 and says in out.output, out.output


def test_23_d5_the_disaggregated_arrivals_note_names_the_prefill_step_and_the_decode_wait():
    """The note had quoted half the decode pool's step as the wait for a prefill step. Under vLLM the first token also
    waits for the decode pool's step in progress, and under TensorRT-LLM too, whose generation server streams it as
    its scheduler takes the request in (the thirty-ninth audit, disagg 1: its context server had been taken to hand
    the token on with the KV)."""
    ask = dict(input_len=500, output_len=100, disaggregate=(1, 1), request_rate=50)
    v = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="vllm", **ask)["assumptions"]["arrivals"]
    t = _quiet(serve, "llama-3.1-8b", "h100-sxm", engine="trtllm", **ask)["assumptions"]["arrivals"]
    assert "further apart than one prompt's prefill" in v and "prefill step in progress" in v
    assert "decode pool's step in progress" in v and "decode pool's step in progress" in t


def test_20_n4_llama4_with_eagle_under_vllm_keeps_every_token_in_its_chunked_layers():
    """vllm/config/vllm.py: with chunked local attention (attention_chunk_size) and EAGLE-family speculation,
    need_disable_hybrid_kv_cache_manager ('not yet supported with chunked local attention + eagle'): every layer then
    holds every token, as a model without chunked layers does. Llama 4 Scout at TP 4 on H200s, 32,000 + 1,000 tokens."""
    from kvcalc.specs.catalog import load_model

    ask = dict(engine="vllm", tp=4, input_len=32000, output_len=1000, concurrency="max",
               speculate="eagle,k=3,alpha=0.7")
    scout = load_model("llama-4-scout")
    eagle = _quiet(serve, scout, "h200", **ask)
    whole = scout.model_copy(update={"attention": scout.attention.model_copy(update={"sliding_window": None})})
    assert eagle["max_concurrency"] == _quiet(serve, whole, "h200", **ask)["max_concurrency"]
    plain = _quiet(serve, scout, "h200", **{**ask, "speculate": None})
    assert plain["max_concurrency"] > eagle["max_concurrency"]  # without EAGLE the chunked layers keep their chunk
    assert any("hybrid KV cache manager off" in w for w in eagle["warnings"])


@pytest.mark.parametrize(("engine", "gpu", "refused"), [
    ("vllm", "h100-sxm", True), ("trtllm", "h100-sxm", True), ("vllm", "rtx-5090", True), ("vllm", "mi300x", True),
    ("vllm", "a100-sxm-80gb", True), ("vllm", "b200", False), ("trtllm", "gb200", False), ("trtllm", "b300", False)])
def test_24_k1_an_nvfp4_cache_runs_on_datacenter_blackwell_only(engine, gpu, refused):
    """vLLM's NVFP4 KV cache runs through FlashInfer's trtllm-gen path on compute capability 10.x only (PR #40177,
    issue #49011: 'SM120 was excluded outright'); TensorRT-LLM's 'only available for SM10X in trtllm-gen' (issue
    #10241); NVFP4 is NVIDIA's format. capacity, estimate and serve say so (an H100's pool had held 3.6x bf16's)."""
    from kvcalc.planning.capacity import capacity

    c = _quiet(capacity, "llama-3.1-8b", gpu, context=8192, engine=engine, kv_dtype="nvfp4")
    said = any("an NVFP4 KV cache runs on datacenter Blackwell only" in w for w in c["warnings"])
    assert said is refused


def test_24_k3_engine_auto_says_the_kv_formats_its_vllm_profile_does_not_store():
    from kvcalc.estimator import estimate

    w = _quiet(estimate, "llama-3.1-8b", "h100-sxm", kv_dtype="int8").warnings
    assert any(x.startswith("--kv-dtype int8: vllm's int8_per_token_head cache") for x in w)


def test_24_r5_plan_says_which_engine_carries_no_overhead():
    """TensorRT-LLM's PyTorch back end (1.0-1.3) has no published run in the ledger, so kvcalc models no per-step or
    per-request cost for it (engines/overhead.py) and its rows rank too well: plan says so where it searches it."""
    import warnings

    import kvcalc

    ask = dict(input_len=1000, output_len=200, concurrency=64)
    with warnings.catch_warnings(record=True) as both:
        warnings.simplefilter("always")
        kvcalc.plan("llama-3.1-8b", ["h100-sxm"], **ask)
    with warnings.catch_warnings(record=True) as vllm_only:
        warnings.simplefilter("always")
        kvcalc.plan("llama-3.1-8b", ["h100-sxm"], engines=["vllm"], **ask)
    said = "carries no engine overhead in kvcalc"
    assert any(said in str(w.message) and str(w.message).startswith("trtllm") for w in both)
    assert not any(said in str(w.message) for w in vllm_only)
