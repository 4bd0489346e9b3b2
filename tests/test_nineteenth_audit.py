"""Regression tests for the nineteenth hostile audit (docs/validation.md, "Nineteenth hostile audit"), each named after
its finding."""

from __future__ import annotations

import json

import pytest

from tests.test_fifteenth_audit import _refused, _spec
from tests.test_fifth_audit import one_line_error

# Kimi-Linear-48B-A3B-Instruct's config.json, its fields as a parser's test of the released file quotes them: 27
# layers, 7 of them full (MLA) attention and 20 KDA (linear attention); 256 experts of 1,024 under num_experts
KIMI_LINEAR = {
    "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear", "hidden_act": "silu", "q_lora_rank": None,
    "tie_word_embeddings": False, "hidden_size": 2304, "num_hidden_layers": 27, "vocab_size": 163840,
    "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 72, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "num_experts": 256,
    "num_experts_per_token": 8, "num_shared_experts": 1, "moe_intermediate_size": 1024, "moe_layer_freq": 1,
    "first_k_dense_replace": 1, "intermediate_size": 9216, "torch_dtype": "bfloat16",
    "linear_attn_config": {"full_attn_layers": [4, 8, 12, 16, 20, 24, 27],
                           "kda_layers": [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 25, 26],
                           "head_dim": 128, "num_heads": 32, "short_conv_kernel_size": 4}}


def test_h1_a_latent_attention_hybrid_is_refused_and_other_expert_names_are_read(tmp_path):
    """Kimi-Linear had been read as a 3.3 B dense model with MLA on all 27 layers (KV 3.9x, weights 15x short)."""
    assert "linear_attn_config: layers other than softmax attention" in _refused(tmp_path, KIMI_LINEAR)
    # its MoE under Qwen's field names, on a latent-attention model without hybrid layers: read, not dropped. By hand:
    # 26 MoE layers x (256 routed + 1 shared) experts x 3 x 2304 x 1024, and the one dense layer's 3 x 2304 x 9216
    plain = {k: v for k, v in KIMI_LINEAR.items() if k != "linear_attn_config"}
    moe = _spec(tmp_path, plain)[0].moe
    assert (moe.num_experts, moe.top_k, moe.expert_intermediate_size, moe.num_shared_experts,
            moe.first_dense_layers) == (256, 8, 1024, 1, 1)
    from kvcalc.formulas.params import params_breakdown

    parts = params_breakdown(_spec(tmp_path, plain)[0])
    assert parts["moe/routed"] == 26 * 256 * 3 * 2304 * 1024
    assert parts["moe/shared"] == 26 * 3 * 2304 * 1024
    assert parts["mlp"] == 3 * 2304 * 9216


# Qwen3-Next-80B-A3B-Instruct's fields (model_specs/qwen3-next-80b-a3b.toml's sources) and its FP8 release's
# quantization_config: fp8 in 128 x 128 blocks, with every linear-attention layer's in_proj_ba, the routers and shared
# expert gates, the embedding and the lm_head not converted (as an SGLang analysis quotes the published file)
QWEN3_NEXT = {
    "architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "num_hidden_layers": 48, "hidden_size": 2048,
    "full_attention_interval": 4, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
    "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4, "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512, "intermediate_size": 5120, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "vocab_size": 151936, "max_position_embeddings": 262144, "tie_word_embeddings": False, "partial_rotary_factor": 0.25,
    "hidden_act": "silu", "rope_theta": 10000000, "torch_dtype": "bfloat16", "mtp_num_hidden_layers": 1}
LINEAR_LAYERS = [i for i in range(48) if (i + 1) % 4]  # 36: every fourth layer is full attention


def _fp8(gates: list[str]) -> dict:
    kept = ["lm_head", "model.embed_tokens"] + [f"model.layers.{i}.mlp.{g}" for i in range(48)
                                                 for g in ("gate", "shared_expert_gate")]
    return QWEN3_NEXT | {"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                                 "weight_block_size": [128, 128], "modules_to_not_convert": kept + gates}}


def test_h2_qwen3_next_fp8_keeps_its_gated_deltanet_gates_in_bf16(tmp_path):
    """The FP8 release had been refused as keeping a whole mixer in bf16. Its in_proj_ba (2 x 32 rows of 2,048 a layer,
    36 layers) is counted at bf16 where the rest is fp8-block: 4,718,592 weights at 2 B, not 1 + 4 / 128^2."""
    from kvcalc.dtypes import bytes_per_element
    from kvcalc.formulas.params import weight_bytes

    gates = [f"model.layers.{i}.linear_attn.in_proj_ba" for i in LINEAR_LAYERS]
    kept, without = _spec(tmp_path, _fp8(gates))[0], _spec(tmp_path, _fp8([]))[0]
    assert kept.quantization.kept_linears == ["in_ba"] and without.quantization.kept_linears == []
    b = bytes_per_element("fp8-block")
    assert b == 1 + 4 / 128 ** 2
    assert weight_bytes(kept, b) - weight_bytes(without, b) == pytest.approx(36 * 2048 * 64 * (2 - b), abs=1e-3)
    # Qwen3.5's split in_proj_a and in_proj_b name the same weights
    split = [f"model.layers.{i}.linear_attn.in_proj_{x}" for i in LINEAR_LAYERS for x in "ab"]
    assert _spec(tmp_path, _fp8(split))[0].quantization.kept_linears == ["in_ba"]


@pytest.mark.parametrize("gates, said", [
    ([f"model.layers.{i}.linear_attn.in_proj_ba" for i in LINEAR_LAYERS[:-1]], "of 35 layers in bf16, of the model's 36"),
    ([f"model.layers.{i}.linear_attn.in_proj_a" for i in LINEAR_LAYERS], "keeps in_proj_a of layer 0's Gated DeltaNet"),
    (["model.layers.0.linear_attn.in_proj_qkvz"], "keeps one kind of this hybrid's mixers"),
])
def test_h2_a_part_of_the_gates_or_of_a_mixer_is_still_refused(tmp_path, gates, said):
    assert said in _refused(tmp_path, _fp8(gates))


def test_h3_apertus_xielu_mlp_is_two_matrices_and_its_count_is_the_published_one(tmp_path):
    """ApertusMLP is up_proj and down_proj around xIELU (transformers' modeling_apertus.py), whose alpha_p and alpha_n
    are parameters (activations.py XIELUActivation). Apertus-8B by hand: embedding and lm_head 2 x 131,072 x 4,096;
    a layer's q, k, v, o 2 x 4,096^2 + 2 x 4,096 x 1,024, MLP 2 x 4,096 x 21,504, two norms of 4,096, q and k norms of
    128, xIELU's 2; the final norm: 8,053,338,176, swiss-ai/Apertus-8B-2509's published count."""
    config = {"architectures": ["ApertusForCausalLM"], "model_type": "apertus", "hidden_act": "xielu",
              "hidden_size": 4096, "intermediate_size": 21504, "max_position_embeddings": 65536, "mlp_bias": False,
              "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "qk_norm": True,
              "attention_bias": False, "rms_norm_eps": 1e-05, "rope_theta": 12000000, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "vocab_size": 131072}
    from kvcalc.formulas.params import params_breakdown, total_params

    spec = _spec(tmp_path, config)[0]
    layer = 2 * 4096 ** 2 + 2 * 4096 * 1024 + 2 * 4096 * 21504 + 2 * 4096 + 2 * 128 + 2
    assert total_params(spec) == 2 * 131072 * 4096 + 32 * layer + 4096 == 8_053_338_176
    assert params_breakdown(spec)["mlp/activation"] == 64
    # xIELU's scalars stay bf16 in a quantised checkpoint, with the norms
    from kvcalc.formulas.params import UNQUANTISED

    assert "mlp/activation" in UNQUANTISED


# --- plan and launch ---

def _c(**kw) -> dict:
    return {"expert_parallel": 8, "tensor_parallel": 1, "pipeline_parallel": 1, "max_num_seqs": 1736,
            "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9, "kv_dtype": "bf16",
            "converted_weights": False, "weight_dtype": "fp8-block", "speculate": None, "disaggregate": None,
            "gpu": "h200", "engine": "vllm", "gpus_per_replica": 8, "replicas": 1} | kw


def test_p1_each_data_parallel_rank_launches_with_the_step_budget_plan_timed():
    """plan, serve and the simulator give each of the ep / tp attention groups the whole --step-tokens (a replica is
    timed at budget x groups): vLLM's DP ranks and TensorRT-LLM's attention-DP ranks each take it, and SGLang's
    --chunked-prefill-size carries it times dp_size, which SGLang divides by dp_size (server_args.py
    _handle_data_parallelism). The eleventh audit's P2 had divided it by the groups, 1,024 a rank for a plan at 8,192."""
    from kvcalc.engines.launch import sglang_command, trtllm_command, vllm_command
    from kvcalc.specs.catalog import load_model

    spec, c = load_model("deepseek-v3"), _c()
    cmd = vllm_command(spec, c, 2000)
    assert cmd[cmd.index("--max-num-batched-tokens") + 1] == "8192"
    cmd = sglang_command(spec, c, 2000)
    assert cmd[cmd.index("--chunked-prefill-size") + 1] == str(8192 * 8) and cmd[cmd.index("--dp-size") + 1] == "8"
    cmd, _ = trtllm_command(spec, c, 2000)
    assert cmd[cmd.index("--max_num_tokens") + 1] == "8192"
    # without attention data parallelism SGLang takes the budget as it is
    cmd = sglang_command(spec, _c(expert_parallel=1, tensor_parallel=8), 2000)
    assert cmd[cmd.index("--chunked-prefill-size") + 1] == "8192"


def test_p2_p3_launched_seats_queue_no_burst_and_vllm_accepts_them():
    """At a request rate the launch takes the pool's seats, as the simulated finalists do: a server capped at the mean
    in flight (27) queues Poisson bursts, TTFT p50 701 ms in the simulator where plan gave 33. vLLM's seats stay within
    its step budget (it refuses max_num_seqs above max_num_batched_tokens: 36,182 beside 8,192 had been emitted)."""
    from kvcalc.planning.plan import plan

    r = plan("llama-3.1-8b", ["h100-sxm"], input_len=2000, output_len=300, request_rate=10, max_ttft_ms=200,
             max_tpot_ms=30)["choice"]
    assert r["max_num_seqs"] == r["max_in_flight_per_replica"] > r["in_flight_per_replica"] + 1
    r = plan("llama-3.2-1b", ["h200"], input_len=16, output_len=200, gpu_budget=1, max_tpot_ms=500,
             engines=["vllm"])["choice"]
    assert r["in_flight_per_replica"] > r["max_num_batched_tokens"] == r["max_num_seqs"] == 8192


def test_p4_p5_gb200_pods_are_compute_trays_and_every_pod_mounts_shm():
    """A GB200 NVL72 compute tray holds four GPUs (hardware_specs/gb200.toml), so a TP8 replica is a LeaderWorkerSet of
    two 4-GPU pods, never an 8-GPU pod; every pod mounts a memory-backed /dev/shm (a container's 64 MiB is too small
    for a tensor-parallel server)."""
    yaml = pytest.importorskip("yaml")
    from kvcalc.engines.launch import emit
    from kvcalc.specs.catalog import load_gpu, load_model

    assert load_gpu("gb200").node_gpus == load_gpu("gb300").node_gpus == 4 and load_gpu("h100-sxm").node_gpus == 8
    c = _c(expert_parallel=1, tensor_parallel=8, gpu="gb200", max_num_seqs=64, gpus_per_replica=8)
    docs = [d for d in yaml.safe_load_all(emit("k8s", load_model("llama-3.1-405b"), c, 2000)) if d]
    (lws,) = [d for d in docs if d["kind"] == "LeaderWorkerSet"]
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    for role in ("leaderTemplate", "workerTemplate"):
        pod = template[role]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
        assert {"name": "shm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
        assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]


def test_p6_emit_says_why_nothing_is_launched():
    line = one_line_error(["plan", "-m", "llama-3.1-70b", "-g", "l4", "--max-gpus-per-replica", "1", "-i", "2000",
                           "-o", "500", "--request-rate", "1", "--emit", "vllm"])
    assert "none fits in memory (llama-3.1-70b on 1 l4" in line and "meets the limits" not in line


def test_18_s1_rate_mode_matches_evenly_spaced_arrivals():
    """The closed form at a request rate models arrivals evenly spaced (serve's assumptions say so), where a request's
    decode steps carry the prompts that arrive during them: at 1 request/s of 2,048 + 256 tokens, none (the last
    left before the next arrives). The simulator, run on that trace, gives the same TPOT within 1 %."""
    from kvcalc.serving.closed_form import serve
    from kvcalc.serving.simulate import simulate

    closed = serve("llama-3.1-8b", "h100-sxm", input_len=2048, output_len=256, request_rate=1.0, engine="vllm")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / "even.csv"
        trace.write_text("arrival_s,input_len,output_len\n" + "".join(f"{i}.0,2048,256\n" for i in range(200)))
        sim = simulate("llama-3.1-8b", "h100-sxm", arrivals="trace", trace=str(trace), engine="vllm")
    assert closed["tpot_ms"] == pytest.approx(sim["tpot_ms"]["mean"], rel=0.01)



# --- core commands: engine memory ---

def test_e1_sglang_hybrid_pool_splits_its_tokens_by_swa_full_tokens_ratio():
    """SGLang's hybrid pool holds F full tokens and 0.8 F sliding ones in the same bytes (server_args.py
    swa_full_tokens_ratio; model_runner_kv_cache_mixin.py _resolve_hybrid_swa_tokens): gpt-oss-120b's 18 full and 18
    sliding layers on an H100 hold in the bytes of 151,028 tokens of all 36 layers F = 151,028 x 36 / (18 + 0.8 x 18)
    = 167,809 full-layer tokens (SGLang's #tokens; the twenty-third audit, M3: the 151,028 had been reported as it),
    one request of 131,072 (2.3 had been given). On a B200 SGLang runs gpt-oss with trtllm_mha and no hybrid pool,
    every layer holding every token: 1,471,972 / 131,072 = 11.2."""
    from kvcalc.planning.capacity import capacity

    h100 = capacity("gpt-oss-120b", "h100-sxm", context=131072, engine="sglang")["engine_memory"]
    assert h100["kv_tokens"] == 167_809
    assert h100["max_concurrency"] == pytest.approx(151_028 * 36 / (18 + 0.8 * 18) / 131072, rel=1e-4)
    b200 = capacity("gpt-oss-120b", "b200", context=131072, engine="sglang")["engine_memory"]
    assert b200["max_concurrency"] == pytest.approx(b200["kv_tokens"] / 131072, rel=1e-6)  # tokens are whole


def test_e2_nemotron_h_keeps_its_ssm_state_in_float32():
    """vLLM's NemotronHForCausalLMConfig resolves mamba_ssm_cache_dtype 'auto' to float32 (and SGLang's
    mamba_ssm_dtype defaults to it); the conv's past inputs stay bf16. Nemotron-H-8B per sequence at 8,192 tokens:
    4 attention layers x 2 x 8 x 128 x 2 B x 8,192 = 134,217,728, and 24 Mamba-2 layers x (3 x (2 x 8 x 128 + 8,192)
    x 2 B + 128 x 128 x 64 x 4 B) = 102,137,856: 236,355,584 (bf16 state had made 186,023,936)."""
    from kvcalc.formulas.kv import kv_bytes_per_sequence
    from kvcalc.specs.catalog import load_model

    spec = load_model("nemotron-h-8b")
    attention = 4 * 2 * 8 * 128 * 2 * 8192
    state = 24 * (3 * (2 * 8 * 128 + 128 * 64) * 2 + 128 * 128 * 64 * 4)
    assert kv_bytes_per_sequence(spec, 8192, 2) == attention + state == 236_355_584
    # read so from its config.json, whose mamba_ssm_cache_dtype is absent; a config that names bf16 keeps bf16
    from tests.test_fifteenth_audit import FIXTURES

    config = json.loads((FIXTURES / "Nemotron-H-8B-Base-8K" / "config.json").read_text())
    assert config.get("mamba_ssm_cache_dtype") is None


@pytest.mark.parametrize("dtype, element", [(None, 4), ("float32", 4), ("bfloat16", 2)])
def test_e2_the_config_names_the_ssm_dtype(tmp_path, dtype, element):
    from tests.test_fifteenth_audit import FIXTURES

    config = json.loads((FIXTURES / "Nemotron-H-8B-Base-8K" / "config.json").read_text())
    if dtype:
        config["mamba_ssm_cache_dtype"] = dtype
    assert _spec(tmp_path, config)[0].linear_attention.recurrent_state_bytes == element


def test_e3_sglang_says_its_own_mem_fraction_static():
    """SGLang derives mem_fraction_static when none is given (server_args.py _handle_gpu_memory_settings): an H100
    reports 81,559 MiB, which takes chunked_prefill_size 8,192 and cuda_graph_max_bs 256 at TP 1; reserved = 512 +
    8,192 x 1.5 + 256 x 2 + 1 / 8 x 1,024 = 13,440 MiB: (81,559 - 13,440) / 81,559 = 0.835."""
    from kvcalc.formulas.engine_memory import sglang_derived_mem_fraction
    from kvcalc.planning.capacity import capacity

    assert sglang_derived_mem_fraction(81_559, 1) == 0.835
    # an H200 at TP 8: 8,192 and 512; reserved 512 + 12,288 + 1,024 + 1,024 = 14,848 of 143,771 MiB
    assert sglang_derived_mem_fraction(143_771, 8) == round((143_771 - 14_848) / 143_771, 3)
    notes = capacity("llama-3-8b", "h100-sxm", context=8192, engine="sglang")["warnings"]
    assert any("SGLang derives mem_fraction_static 0.835" in n and "--memory-utilization 0.835" in n for n in notes)


def test_e4_a_fit_a_factor_of_two_off_is_refused(tmp_path):
    """A fit that predicts 121 ms where the file says 1,000 s had been written at '99.99 %' (an under-prediction never
    passes 100 %): the median miss is now a factor either way, refused past 2."""
    path = tmp_path / "b.csv"
    path.write_text("batch,input_len,output_len,tpot_ms\n1,1024,256,1e6\n8,1024,256,2e6\n")
    line = one_line_error(["calibrate", "--from-benchmark", str(path), "-m", "llama-3-8b", "-o",
                           str(tmp_path / "p.toml")])
    assert "misses the measured times by a median factor of" in line and "no profile written" in line
    assert not (tmp_path / "p.toml").exists()


# --- serving ---

def test_s1_capacity_under_auto_runs_vllms_max_num_seqs():
    """--engine auto runs vLLM's scheduler with its defaults (serve takes it so): an L40S runs 256 at once, not the
    pool's 782."""
    from kvcalc.planning.capacity import capacity

    auto = capacity("llama-3.1-8b", "l40s", context=256)
    assert auto["batch"] == 256 and any("max_num_seqs 256 caps" in n for n in auto["warnings"])


@pytest.mark.parametrize("extra", [[], ["--simulate"]])
def test_s4_auto_refuses_a_step_budget_below_vllms_max_num_seqs(extra):
    line = one_line_error(["serve", "-m", "llama-3.1-8b", "-i", "1024", "--output-len", "64", "-n", "4",
                           "--step-tokens", "100", *extra])
    assert "vLLM refuses a max_num_batched_tokens below its default max_num_seqs (1,024" in line


def test_s5_a_v0_release_says_its_scheduler_is_not_modelled():
    from kvcalc.serving.closed_form import serve

    with pytest.warns(Warning, match="runs the V0 engine"):
        r = serve("llama-3.1-8b", "h100-sxm", input_len=1024, output_len=256, engine="vllm", vllm_version="0.6.3",
                  concurrency=32)
    assert any("V0 engine" in w for w in r["warnings"])


def test_s6_the_frontier_says_which_points_it_left_out():
    from kvcalc.serving.closed_form import frontier

    with pytest.warns(Warning, match=r"frontier: \d+ points? left out: .*--tp 3: .*64 query heads"):
        rows = frontier("llama-3.1-70b", "h100-sxm", input_len=1024, output_len=256, concurrencies=[1, 16],
                        tps=[2, 3])
    assert {r["tensor_parallel"] for r in rows} == {2}


def test_s7_a_closed_loop_says_what_runs_once_requests_are_refused_for_length():
    from kvcalc.serving.simulate import simulate

    with pytest.warns(Warning):
        r = simulate("llama-3.1-8b", "h100-sxm", input_len=120000, output_len=10000, range_ratio=0.5,
                     concurrency=20, num_prompts=20, arrivals="closed")
    kept = r["num_prompts"]
    assert r["rejected_over_context"] == 20 - kept and r["arrivals"] == f"closed loop, {kept} in flight"
