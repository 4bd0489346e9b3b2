"""The thirty-fourth hostile audit (docs/validation.md, "Thirty-fourth hostile audit") and the thirty-third's leftovers
it took: each test is named after its finding."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-e", "vllm"],
    ["capacity", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-c", "4096", "-e", "vllm"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8",
     "--simulate"],
])
def test_33_links1_rest_a_pcie_group_past_one_server_is_said_to_cross_the_network(args):
    """A server holds node_gpus (8) L40S; sixteen in one tensor-parallel group all-reduce across two servers over a
    network the spec does not give, which estimate, capacity and serve had timed over PCIe without a word."""
    out = CliRunner().invoke(app, [*args, "-f", "json"])
    assert out.exit_code == 0, out.output
    assert "a group of 16 l40s GPUs spans 2 servers of 8 (node_gpus)" in out.stderr + out.stdout


def test_33_links1_rest_eight_pcie_cards_fit_one_server():
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "8", "-f", "json"])
    assert out.exit_code == 0 and "servers of" not in out.stderr + out.stdout


@pytest.mark.parametrize("gpu, says", [("mi355x", "transferred (from h200.vllm) curves of the vllm 0.24.0 profile"),
                                       ("h100-sxm", "measured curves of the vllm 0.24.0 profile")])
def test_34_amd3_explain_names_where_the_curves_come_from(gpu, says):
    """`--explain`'s decode and prefill lines had called every profile's curves measured, beside a header that said
    the MI355X's were transferred from the H200's."""
    from kvcalc import estimate
    from kvcalc.report.explain import explain
    from kvcalc.specs.catalog import load_gpu, load_model

    steps = explain(estimate("llama-3.1-8b", gpu, engine="vllm"), load_model("llama-3.1-8b"), load_gpu(gpu))
    lines = [s.formula for s in steps if s.quantity in ("Decode time", "Prefill time")]
    assert len(lines) == 2 and all(says in line for line in lines)


def test_34_simulate1_a_preempted_vllm_request_recomputes_only_what_the_prefix_cache_lost():
    """vLLM V1 frees a preempted request's blocks tail-first into the free queue, keeping their hashes until
    get_new_blocks evicts them, and get_computed_blocks finds what is left when it is scheduled again
    (vllm/v1/core/sched/scheduler.py, block_pool.py). By hand: pool 10 tokens (block 1), budget 8, a step 1 s plus
    1 s a prompt token; A and B (4 in, 4 out) at 0.
    step 1 (0-9): both prompts, 8 tokens: first tokens at 9, 4 + 4 blocks.
    step 2 (9-10): both decode: 5 + 5 blocks, the pool full.
    step 3 (10-11): each needs a 6th block: B, last in the running list, is preempted with 5 full blocks cached;
      A takes one, evicting B's last. step 4 (11-12): A takes a 7th, evicting B's 4th, and finishes at 12.
    step 5 (12-16): B finds 3 of its 6 tokens (4 prompt + 2 generated) cached and recomputes 3: 1 + 3 s.
    step 6 (16-17): its 4th token, done at 17 (20 had it recomputed all 6: a 7 s step)."""
    import numpy as np

    from kvcalc.engines.scheduler import vllm_v1
    from kvcalc.serving.simulate import StepGrid, Workload, simulate_schedule

    class Toy:
        decode_gain, decode_q, pp, tp, ep = 1.0, 1, 1, 1, 1

        def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
            return 1.0 + chunk

    w = Workload(np.array([0.0, 0.0]), np.array([4, 4]), np.array([4, 4]))
    r = simulate_schedule(vllm_v1(budget=8, max_seqs=8, block_size=1), StepGrid(Toy(), 64, 4096, 8), w,
                          pool_tokens=10, log_steps=True)
    assert r.preemptions == 1 and list(r.first_token_s) == [9.0, 9.0] and list(r.finish_s) == [12.0, 17.0]
    assert r.log[-1]["chunk"] == 3 and r.log[-1]["ids"] == [1]


def test_34_config1_glm_4_7_flash_stores_its_mtp_layers_own_embedding_and_head():
    """GLM-4.7-Flash's published tensor list (tests/fixtures/hf/README.md) gives 31,221,488,576 parameters: by hand,
    embed_tokens and lm_head 2 x 154,880 x 2,048; 48 layers (47 and the MTP layer 47) of MLA (q_a 768 x 2,048,
    q_b 5,120 x 768, kv_a 576 x 2,048, kv_b 8,960 x 512, o 2,048 x 5,120, norms 2 x 2,048 + 768 + 512); layer 0's
    dense MLP 3 x 10,240 x 2,048; 47 MoE layers of 64 experts 3 x 2,048 x 1,536, a shared expert of the same, a
    64 x 2,048 router and 64 router biases; the MTP layer's eh_proj 2,048 x 4,096, enorm, hnorm, shared_head.norm and
    its own embed_tokens and shared_head.head; the final norm. All bf16 but the router biases (fp32). kvcalc had left the two copies
    out (1.27 GB, -2.0 %) and warned that config.json did not describe the weights."""
    from kvcalc.specs.hf import load_hf_spec, read_config, stored_weight_bytes

    V, d = 154_880, 2_048
    mla = 768 * d + 5_120 * 768 + 576 * d + 8_960 * 512 + d * 5_120 + 2 * d + 768 + 512
    params = (2 * V * d + 48 * mla + 3 * 10_240 * d + 47 * (65 * 3 * d * 1_536 + 64 * d + 64)
              + d * 4_096 + 3 * d + 2 * V * d + d)
    assert params == 31_221_488_576
    folder = Path(__file__).parent / "fixtures" / "hf" / "GLM-4.7-Flash"
    spec, notes = load_hf_spec(folder)
    ours, fmt, mtp = stored_weight_bytes(spec, read_config(folder / "config.json"))
    assert (fmt, mtp) == ("bf16", 1)
    assert ours == 2 * params  # the checkpoint's 47 x 64 fp32 router biases are 2 B more each: 6,016 B


@pytest.mark.parametrize("key", ["mtp_num_hidden_layers", "num_nextn_predict_layers"])
def test_34_config2_the_index_check_counts_mtp_layers_under_any_key(tmp_path, key):
    """Qwen3-Next names its MTP module mtp_num_hidden_layers; the index check had read num_nextn_predict_layers
    only, so the 1.65 billion parameters of Qwen3-Next-80B's MTP module were not in the bytes it compared."""
    from kvcalc.specs.hf import load_hf_spec, read_config, stored_weight_bytes

    base = json.loads((Path(__file__).parents[1] / "tests/fixtures/hf/Qwen3-30B-A3B/config.json").read_text())
    counts = []
    for extra in ({}, {key: 1}):
        folder = tmp_path / f"m{len(counts)}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**base, **extra}))
        spec, _ = load_hf_spec(folder)
        counts.append(stored_weight_bytes(spec, read_config(folder / "config.json"))[0])
    spec, _ = load_hf_spec(folder)
    from kvcalc.formulas.params import layer_weight_bytes

    d = spec.hidden_size
    assert counts[1] - counts[0] == layer_weight_bytes(spec, 2.0)[-1] + (2 * d * d + 3 * d) * 2


def test_34_config3_a_bare_bias_of_an_unknown_family_biases_q_k_v_and_o(tmp_path):
    """openPangu-Embedded-7B's config (as mirrored in IDLEOAK/openpangu-lightweight-methods at bc3cf2c) says
    "bias": true, model_type PanguEmbedded, and its index holds q, k, v and o_proj biases on each of the 34 layers:
    34 x (4,096 + 1,024 + 1,024 + 4,096) = 348,160 parameters, which had been dropped without a word."""
    from kvcalc.formulas.params import total_params
    from kvcalc.specs.hf import load_hf_spec

    config = {"architectures": ["PanguEmbeddedForCausalLM"], "bias": True, "hidden_act": "silu", "hidden_size": 4096,
              "intermediate_size": 12800, "max_position_embeddings": 32768, "model_type": "PanguEmbedded",
              "num_attention_heads": 32, "num_hidden_layers": 34, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": 153376}
    counts, said = [], []
    for bias in (True, False):
        folder = tmp_path / str(bias)
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**config, "bias": bias}))
        spec, notes = load_hf_spec(folder)
        counts.append(total_params(spec))
        said.append(any("bias true: read as biases on q, k, v and o_proj" in n for n in notes))
    assert counts[0] - counts[1] == 34 * (4096 + 1024 + 1024 + 4096) and said == [True, False]


@pytest.mark.parametrize("key", ["mm_vision_tower", "siglip_config"])
def test_34_config4_an_index_past_the_text_model_names_a_llava_style_tower(tmp_path, key):
    """alibaba/Logics-Thinking names its tower mm_vision_tower and siglip_config: its index's 13.5 % more than the
    text model had been blamed on config.json alone."""
    from kvcalc.specs.hf import load_hf_spec

    base = json.loads((Path(__file__).parent / "fixtures/hf/Meta-Llama-3-8B/config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**base, key: "google/siglip-so400m-patch14-384"}))
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {"total_size": 18000000000}}')
    _, notes = load_hf_spec(tmp_path)
    assert any("total_size" in n and "vision or audio towers" in n for n in notes)


def test_34_config6_an_mlx_checkpoint_is_refused_as_mlx(tmp_path):
    """mlx-lm writes {bits, group_size} with no quant_method (root-hypercube/qwen3-mlx, Qwen3-14B-MLX-4bit): the
    refusal had called it quant_method '(none)'."""
    base = json.loads((Path(__file__).parent / "fixtures/hf/Qwen3-0.6B/config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**base, "quantization_config": {"bits": 4, "group_size": 64}}))
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path)])
    assert out.exit_code == 2 and "mlx-lm's format" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("gpu", ["mi300x", "mi325x", "mi355x"])
def test_34_amd2_fp8_moe_on_rocm_is_not_timed_by_flashinfers_cutlass_kernel(gpu):
    """vLLM on ROCm runs fp8 MoE through AITER or its Triton fused_experts, never FlashInfer's CUTLASS MoE, whose
    Hopper table the AMD profiles had carried: Mixtral-8x7B decoded 2x slower in fp8 than in bf16 on an MI300X
    (20.3 ms against 10.1), though fp8 reads half the expert bytes. Memory-bound at batch 1, fp8 must be faster."""
    from kvcalc import estimate
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    profile = resolve_engine("vllm", load_gpu(gpu))
    assert "moe.fp8 from" in profile.method and "vllm_fp8moe_triton_tritonexperts" in profile.method

    def decode_ms(weights):
        return estimate("mixtral-8x7b", gpu, engine="vllm", weight_dtype=weights, batch=1, context=1024).decode.ms

    assert decode_ms("fp8") < decode_ms("bf16")
    # the stand-in is the source's Triton fp8 MoE curve itself (before a fitted profile's scale), not another
    # kernel's: the transfer's moe.fp8 equals the Hopper source's moe.fp8_block, whose table names the Triton kernel
    from kvcalc.engines.transfer import transfer
    from kvcalc.specs.catalog import bundled_profile

    source = bundled_profile(*profile.transferred_from.split("."))
    assert "triton" in source.moe["fp8_block"].fit.kernels and "cutlass" in source.moe["fp8"].fit.kernels
    stood = transfer(gpu, "vllm").moe["fp8"].model_dump(exclude={"fit"})
    assert stood == source.moe["fp8_block"].model_dump(exclude={"fit"})
    assert stood != source.moe["fp8"].model_dump(exclude={"fit"})


def test_34_api1_a_sweep_past_its_row_cap_is_refused_before_any_work():
    """1,000 batches x 1,000 contexts had run until numpy's MemoryError (a grid of 2,000 x 2,000 needs ~26 GB)."""
    import kvcalc
    from kvcalc.errors import KvcalcError
    from kvcalc.grid import MAX_SWEEP_ROWS

    with pytest.raises(KvcalcError, match=f"1,000,000 combinations; a sweep computes at most {MAX_SWEEP_ROWS:,}"):
        kvcalc.sweep(["llama-3-8b"], batch=list(range(1, 1001)), context=list(range(1, 1001)))


def test_34_api2_a_byte_count_past_int64_is_not_wrapped():
    """Llama 3 8B caches 32 layers x 8 KV heads x 128 x 2 x 2 B = 131,072 B a token: 10,000,000 sequences of
    1,000,000,000 tokens are 1.31072e21 B, which int64 had wrapped to -9,223,372,036,854,775,808."""
    import warnings

    import kvcalc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = kvcalc.sweep(["llama-3-8b"], batch=[10_000_000], context=[1_000_000_000])
    assert df["kv_bytes"].iloc[0] == 131_072 * 10_000_000 * 1_000_000_000


def test_34_api3_plan_plot_at_one_output_token_is_refused_as_serve_refuses_it():
    out = CliRunner().invoke(app, ["plan", "-m", "llama-3-8b", "-g", "h100-sxm", "-i", "100", "-o", "1",
                                   "--concurrency", "8", "--plot", "frontier.png"])
    assert out.exit_code == 2 and "--output-len 1" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("measured", [[1, 2], "validate.csv"])
def test_34_api4_a_roofline_given_no_measured_frame_says_so(measured):
    import kvcalc
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError, match="measured: expected a DataFrame with arithmetic_intensity"):
        kvcalc.plot.roofline(measured=measured)


@pytest.mark.parametrize("args, says", [
    (["sweep", "-m", "llama-3-8b,meta-llama/Meta-Llama-3-8B", "-o", "rows.csv"], "--model: llama-3-8b listed twice"),
    (["sweep", "-m", "llama-3-8b", "-g", "h100-sxm,h100", "-o", "rows.csv"], "--gpu: h100-sxm listed twice"),
    (["roofline", "-m", "llama-3-8b", "-g", "h100,h100-sxm", "-o", "r.svg"], "--gpu: h100-sxm listed twice"),
])
def test_34_api6_one_spec_under_two_names_is_listed_twice(args, says):
    """An alias or a Hugging Face id beside the spec's own name had made identical rows and points."""
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2 and says in out.output


def test_34_api7_a_long_list_is_checked_for_repeats_in_one_pass():
    """option_values.split had compared each value with every one before it: 20,000 batches took 8 s to refuse.
    200,000 distinct values must split, and a repeat at the end still be found."""
    from kvcalc.errors import KvcalcError
    from kvcalc.option_values import split

    text = ",".join(map(str, range(1, 200_001)))
    assert len(split("--batch", text, int)) == 200_000
    with pytest.raises(KvcalcError, match="--batch: 7 listed twice"):
        split("--batch", text + ",7", int)


def _h100_copy(tmp_path, edit) -> Path:
    text = (Path(__file__).parents[1] / "hardware_specs" / "h100-sxm.toml").read_text()
    path = tmp_path / "edited.toml"
    path.write_text(edit(text))
    return path


@pytest.mark.parametrize("args", [["estimate", "-b", "64", "-c", "4096"],
                                  ["serve", "-i", "2000", "--output-len", "200", "-n", "64"]])
def test_34_specs1_a_profile_file_is_applied_to_the_spec_in_use(tmp_path, args):
    """An H800 (NVLink 400 GB/s) written as a copy of the H100 spec: with --profile the H100's measured 900 GB/s
    all-reduce curve had timed it (TPOT 10 % fast), where the bundled profile is moved onto its links."""
    import re

    spec = _h100_copy(tmp_path, lambda t: re.sub(r"(?m)^interconnect_bandwidth_GBps = .*$",
                                                 "interconnect_bandwidth_GBps = 400", t))
    profile = Path(__file__).parents[1] / "hardware_specs/profiles/h100-sxm.vllm.toml"
    runs = []
    for extra in ([], ["--profile", str(profile)]):
        out = CliRunner().invoke(app, [args[0], "-m", "llama-3-70b", "-g", str(spec), "--tp", "8", *args[1:], *extra,
                                       "-f", "json"])
        assert out.exit_code == 0, out.output
        runs.append(json.loads(out.stdout))
    key = ("decode", "ms") if args[0] == "estimate" else ("tpot_ms",)
    a, b = runs
    for k in key:
        a, b = a[k], b[k]
    assert a == pytest.approx(b, rel=1e-9)


def test_34_specs2_a_calibrated_launch_overhead_is_not_added_to_an_engine_profile(tmp_path):
    """kvcalc calibrate measures eager kernel launches (validation/h200/h200-calibrated.toml: 14.2 us); an engine
    replays CUDA graphs, which its profile's curves time: the calibrated H200 had decoded Llama 3 8B 16 % slower
    under vLLM's profile (6.91 ms against 5.97) from 65 norm kernels' launches."""
    text = (Path(__file__).parents[1] / "validation/h200/h200-calibrated.toml").read_text()
    spec = tmp_path / "h200.toml"
    spec.write_text(text.replace('name = "h200-calibrated"', 'name = "h200"'))
    tpot = []
    for gpu in (str(spec), "h200"):
        out = CliRunner().invoke(app, ["serve", "-m", "llama-3-8b", "-g", gpu, "-i", "1000", "--output-len", "200",
                                       "-n", "1", "-f", "json"])
        assert out.exit_code == 0, out.output
        tpot.append(json.loads(out.stdout)["tpot_ms"])
    assert tpot[0] == pytest.approx(tpot[1], rel=1e-4)


def test_34_specs3_a_launch_follows_the_spec_file_planned_on(tmp_path):
    """A copy of the H100 spec whose servers hold 4 GPUs (node_gpus 4): the 8-GPU manifest had asked one pod for 8,
    the bundled spec's node, which such a node never schedules."""
    from kvcalc.engines.launch import emit
    from kvcalc.specs.catalog import load_gpu, load_model

    spec = _h100_copy(tmp_path, lambda t: t.replace('display_name', 'node_gpus = 4\ndisplay_name', 1))
    c = {"expert_parallel": 1, "tensor_parallel": 8, "pipeline_parallel": 1, "max_num_seqs": 64,
         "max_num_batched_tokens": 8192, "gpu_memory_utilization": 0.9, "kv_dtype": "bf16", "converted_weights": False,
         "weight_dtype": "bf16", "speculate": None, "disaggregate": None, "gpu": "h100-sxm", "engine": "vllm",
         "gpus_per_replica": 8, "replicas": 1}
    bundled = emit("k8s", load_model("llama-3.1-70b"), c, 4096)
    edited = emit("k8s", load_model("llama-3.1-70b"), c, 4096, hw=load_gpu(str(spec)))
    assert "LeaderWorkerSet" not in bundled and "LeaderWorkerSet" in edited


def test_34_specs6_a_profile_naming_its_gpu_by_an_alias_is_that_gpu(tmp_path):
    text = (Path(__file__).parents[1] / "hardware_specs/profiles/h100-sxm.vllm.toml").read_text()
    profile = tmp_path / "mine.vllm.toml"
    profile.write_text(text.replace('gpu = "h100-sxm"', 'gpu = "h100"', 1))
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", "h100", "--profile", str(profile), "-f",
                                   "json"])
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("edit, says", [
    (lambda t: re.sub(r'(?m)^name = .*$', 'name = "../profiles/h100-sxm"', t, count=1), "name: String should match"),
    (lambda t: re.sub(r"(?ms)^\[peak_tflops\]\n.*?\n\n", "[peak_tflops]\n\n", t), "peak_tflops: no peak given"),
    (lambda t: re.sub(r"(?m)^interconnect_bandwidth_GBps = .*$", "interconnect_bandwidth_GBps = 1e6", t),
     "interconnect_bandwidth_GBps: 1e+06 exceeds memory_bandwidth_GBps 3350"),
])
def test_34_specs4_7_8_a_hardware_spec_that_cannot_be_right_is_refused(tmp_path, edit, says):
    """A name holding a path had found a profile file anywhere (specs 4); an empty [peak_tflops] had loaded and failed
    later unnamed (7); an NVLink of 1e6 GB/s beside 3,350 GB/s of HBM had run (8)."""
    spec = _h100_copy(tmp_path, edit)
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", str(spec)])
    assert out.exit_code == 2 and says in out.output and str(spec) in out.output and "Traceback" not in out.output


def _capacity(*args):
    out = CliRunner().invoke(app, ["capacity", *args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


@pytest.mark.parametrize("args", [["-m", "llama-3.1-8b", "-c", "8192", "--pp", "4"],
                                  ["-m", "qwen3-30b-a3b", "-c", "4096", "--ep", "4"]])
def test_34_capacity1_a_layout_wider_than_needed_is_not_blamed_on_the_weights(args):
    """Llama 3.1 8B (16 GB of bf16 weights) fits one H100 (`capacity -m llama-3.1-8b -c 8192`: one GPU holds it); at
    --pp 4 the binding had read "weights: they need 4 GPUs' memory", as at --ep 4 for Qwen3-30B-A3B."""
    assert _capacity("-m", args[1], "-c", args[3])["binding"] == "none: one GPU holds it"
    binding = _capacity(*args)["binding"]
    assert binding.startswith("none: the 4 GPUs asked for hold it (1 GPU would hold")


def test_34_capacity2_under_ep_the_fewest_tensor_parallel_gpus_that_hold_a_sequence_are_taken():
    """Llama 4 Scout at 32K on 8 L40S: --ep 8 had taken --tp 1 and said it does not fit, where --ep 8 --tp 2 holds
    sequences."""
    given = _capacity("-m", "llama-4-scout", "-g", "l40s", "-c", "32768", "--ep", "8", "--tp", "2")
    assert given["max_sequences_at_context"] >= 1
    chosen = _capacity("-m", "llama-4-scout", "-g", "l40s", "-c", "32768", "--ep", "8")
    assert chosen["tensor_parallel"] == 2 and chosen["max_sequences_at_context"] == given["max_sequences_at_context"]


def test_34_capacity3_4_the_cost_says_it_counts_decode_only_and_a_batch_past_the_cap_is_hypothetical():
    """capacity times decode steps at --context (prefill not counted), which its cost had not said; -b 3,000 under
    vLLM's max_num_seqs of 1,024 had been costed as a batch vLLM runs."""
    out = _capacity("-m", "llama-3.2-1b", "-c", "512", "-b", "3000", "-e", "vllm", "--price-per-gpu-hour", "2")
    assert "prefill not counted" in out["assumptions"]["throughput"]
    assert out["hypothetical"] is True
    assert any("more than the engine runs at once (1,024" in w for w in out["warnings"])


def test_34_capacity5_6_the_table_says_whose_tokens_and_prints_a_small_cost():
    out = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "1024", "--price-per-gpu-hour", "0.05",
                                   "--tp", "2"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.replace("│", " ").split())  # the table's cells, unwrapped
    assert "per replica of 2 GPUs" in text
    cost = _capacity("-m", "llama-3.1-8b", "-c", "1024", "--price-per-gpu-hour", "0.05", "--tp", "2")
    # the load it is priced at said beside it (the thirty-eighth audit, newcomer 4), the row's label wrapped
    assert f"{cost['cost_per_million_tokens']:.3g} (decode at that full load" in text
    assert "cost per million output tokens at" in text and f"batch {cost['batch']}" in text


@pytest.mark.parametrize("line, says", [("pcie_p2p: yes", "pcie_p2p: expected true or false, got 'yes'"),
                                        ("on: 1", "on: unknown field")])
def test_34_specs9_yaml_booleans_are_yaml_1_2s(tmp_path, line, says):
    """YAML 1.1 reads yes/no/on/off as booleans, which 1.2 (and TOML) do not: `pcie_p2p: yes` had read true, and a
    key `on:` had been reported as `True: unknown field`."""
    import tomllib

    import yaml

    spec = tomllib.loads((Path(__file__).parents[1] / "hardware_specs" / "l40s.toml").read_text())
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "pcie_p2p"}) + line + "\n")
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", str(path)])
    assert out.exit_code == 2 and says in out.output


@pytest.mark.parametrize("args", [["-m", "deepseek-v3", "-g", "l40s", "-c", "8192", "--ep", "2"],
                                  ["-m", "qwen3-30b-a3b", "-g", "l4", "-c", "32768", "--ep", "2"]])
def test_34_review1_under_ep_a_model_no_layout_holds_is_a_one_line_refusal(args):
    """With no tensor-parallel degree of the group holding a sequence, the fewest-TP search had left --tp None: a
    TypeError traceback."""
    out = CliRunner().invoke(app, ["capacity", *args])
    assert out.exit_code == 2 and "does not fit on 2" in out.output and "Traceback" not in out.output


def test_34_review2_capacity_agrees_with_itself_on_the_fewest_gpus():
    """The binding said one GPU holds Llama 3.1 8B where min_gpus_for_weights beside it said 4 (--pp 4)."""
    out = _capacity("-m", "llama-3.1-8b", "-c", "8192", "--pp", "4")
    assert out["min_gpus_for_weights"] == 1 and "1 GPU would hold" in out["binding"]


def test_34_review9_capacitys_cost_by_hand():
    """price x GPUs / (tokens/s x 3,600) x 1e6: at $2 a GPU-hour on 2 GPUs, a batch of B decoding a step of d ms
    makes B x 1,000 / d tokens/s."""
    out = _capacity("-m", "llama-3.1-8b", "-c", "1024", "--tp", "2", "-b", "64", "--price-per-gpu-hour", "2")
    tokens_per_s = 64 * 1000 / out["decode_ms"]
    assert out["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-9)
    assert out["cost_per_million_tokens"] == pytest.approx(2 * 2 / (tokens_per_s * 3600) * 1e6, rel=1e-9)


@pytest.mark.parametrize("index", ['{"metadata": {"total_size": 0}, "weight_map": {}}',
                                   '{"weight_map": {}, "metadata": {"total_size": 0}}'])
def test_34_config5_a_placeholder_total_size_is_said_not_refused(tmp_path, index):
    """sarcascoder/nvidia-reason2 ships a Qwen3-VL index whose total_size is 0: estimate and import had refused the
    model, which sizes cleanly without it."""
    base = json.loads((Path(__file__).parent / "fixtures/hf/Meta-Llama-3-8B/config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(base))
    (tmp_path / "model.safetensors.index.json").write_text(index)
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path), "-f", "json"])
    assert out.exit_code == 0, out.output
    assert any("metadata.total_size is 0, a placeholder" in w for w in json.loads(out.stdout)["warnings"])


def test_34_specs10_a_symlink_loop_is_named_as_one(tmp_path):
    (tmp_path / "a.toml").symlink_to(tmp_path / "b.toml")
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", str(tmp_path / "a.toml")])
    assert out.exit_code == 2 and "is a symbolic link that leads to no file" in out.output


def test_34_api9_estimate_csv_has_one_set_of_columns_for_every_model():
    """The parameter breakdown's parts had been columns only where the model has them: 78 for Llama 3 8B, 81 for
    DeepSeek-V3 (MoE), 82 for Qwen3-Next (hybrid), so rows of several models shifted under one header."""
    import csv
    import io

    headers = []
    for model in ("llama-3-8b", "deepseek-v3", "qwen3-next-80b-a3b"):
        out = CliRunner().invoke(app, ["estimate", "-m", model, "-g", "h200", "--tp", "8", "-f", "csv"])
        assert out.exit_code == 0, out.output
        header, row = list(csv.reader(io.StringIO(out.stdout)))
        headers.append(header)
        if model == "llama-3-8b":
            assert row[header.index("weights.breakdown.moe/routed")] == "0"
    assert headers[0] == headers[1] == headers[2]


@pytest.mark.parametrize("kw, says", [({"weight_dtype": "int3"}, "weight_dtype: unknown dtype 'int3'"),
                                      ({"gpus": ["nope-gpu"]}, "gpus: unknown gpu 'nope-gpu'")])
def test_34_api5_kvcalc_plot_names_the_keywords_the_caller_wrote(kw, says):
    """kvcalc.plot.roofline's refusals had named the CLI's --weight-dtype and --gpu, where the caller wrote
    weight_dtype= and gpus=."""
    import kvcalc
    from kvcalc.errors import KvcalcError

    with pytest.raises(KvcalcError) as e:
        kvcalc.plot.roofline(**kw)
    assert str(e.value).startswith(says) and "--" not in str(e.value).split(":")[0]


def test_35_plan1_a_median_ttft_limit_under_a_gpu_budget_is_checked_in_the_simulation():
    """Under --gpu-budget the median TTFT limit had been the closed form's only: 4 replicas of TP 2 chosen at a
    planned 166 ms simulated (serve --simulate, their 84 in flight) at 1,199 ms, past a 300 ms limit."""
    out = CliRunner().invoke(app, ["plan", "-m", "llama-3.1-70b", "-g", "h100-sxm", "--gpu-budget", "8", "-i", "2000",
                                   "-o", "500", "--max-tpot-ms", "50", "--max-ttft-ms", "300", "-f", "json"])
    assert out.exit_code == 0, out.output
    choice = json.loads(out.stdout)["choice"]
    assert choice["simulated"] is not None and choice["simulated"]["met"] is True
    assert choice["simulated"]["ttft_ms"] <= 300


def test_35_readme1_the_plan_example_is_what_plan_prints():
    """README's fourth common question had shown 835 requests a replica and 20,569 configurations searched where plan
    prints 817 and 19,780 (19,154 since the thirty-sixth audit timed SGLang's expert dispatch as it gathers, 19,000
    since the thirty-seventh sent the residual between pipeline stages and timed TensorRT-LLM's measured MoE, 19,005
    since the thirty-eighth's pipeline wait moved the ladders of pipelined layouts, 19,029 since the thirty-ninth
    rounded the load passes' requests in flight to 1e-9, where numpy 1.24 and 2.x had counted 19,004 and 19,005, 19,051
    since the fortieth bisected the shares a load pass had placed past the fewest requests in flight carrying them and
    19,151 since it crossed nodes over all of a node's NICs, comms 1 and 2): its
    choice row, its search line and its launch's budget are checked against the command."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme[readme.index("**4. How many GPUs"):readme.index("**5. What would MLA")]
    out = CliRunner().invoke(app, ["plan", "-m", "deepseek-v3", "-g", "h200,b200", "-i", "2000", "-o", "500",
                                   "--request-rate", "100", "--max-ttft-ms", "2000", "--max-tpot-ms", "50",
                                   "--price-per-gpu-hour", "h200=3.5,b200=5", "--emit", "sglang", "-f", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    choice = doc["choice"]
    shown = next(line for line in block.splitlines() if line.startswith("choice"))
    assert shown.split()[1:4] == [choice["gpu"], choice["engine"], "TP4+mtp"]
    assert f" {choice['gpus']} " in shown and f" {choice['max_num_seqs']:,} " in shown
    assert f"--max-running-requests {choice['max_num_seqs']}" in block
    assert f"searched {doc['searched']['configurations']:,} configurations" in block
    # and README's speed note on the same question, with and without MTP searched
    plain = CliRunner().invoke(app, ["plan", "-m", "deepseek-v3", "-g", "h200,b200", "-i", "2000", "-o", "500",
                                     "--request-rate", "100", "--max-ttft-ms", "2000", "--max-tpot-ms", "50",
                                     "--price-per-gpu-hour", "h200=3.5,b200=5", "--no-speculate", "-f", "json"])
    speed = (f"searches {doc['searched']['configurations']:,} configurations as printed "
             f"({json.loads(plain.stdout)['searched']['configurations']:,} with `--no-speculate`)")
    assert speed in " ".join(readme.split())


def test_34_api9_every_part_a_bundled_model_breaks_into_has_its_column():
    """estimate's CSV columns come from formulas/params.BREAKDOWN_PARTS, a list beside params_breakdown: every part
    params_breakdown gives for a bundled model (dense, MoE, MLA, hybrid, multimodal) must be in it, in its order."""
    from kvcalc.formulas.params import BREAKDOWN_PARTS, params_breakdown
    from kvcalc.specs.catalog import bundled_specs

    for spec in bundled_specs("model"):
        parts = list(params_breakdown(spec))
        assert set(parts) <= set(BREAKDOWN_PARTS), (spec.name, set(parts) - set(BREAKDOWN_PARTS))
        assert parts == [p for p in BREAKDOWN_PARTS if p in parts], spec.name


def test_36_hwspecs1_sglangs_own_fraction_reads_nvidia_smis_total():
    """SGLang sizes its default mem_fraction_static and prefill chunk by nvidia-smi's memory.total (sgl-project/
    sglang python/sglang/srt/utils/common.py get_nvgpu_memory_capacity), which kvcalc had taken as the datasheet's
    memory: an A10's 24 GiB where nvidia-smi prints 23,028 MiB. By hand, SGLang's rule on 23,028 MiB at TP 1 (below
    35 GiB: chunk 2,048, 24 CUDA graphs): reserved = 512 + 2,048 x 1.5 + 24 x 2 + 1,024 / 8 = 3,760 MiB, so
    (23,028 - 3,760) / 23,028 = 0.837, not the 0.847 of 24,576 MiB; an H100's 81,559 MiB gives 0.835 (13,440 MiB
    reserved), not 0.836. AMD parts keep torch's total, as SGLang's get_amdgpu_memory_capacity reads it."""
    from kvcalc.engines.memory import sglang_own_fraction
    from kvcalc.specs.catalog import load_gpu

    assert load_gpu("a10").device_total_MiB == 23_028
    assert sglang_own_fraction(load_gpu("a10"), 1) == round((23_028 - 3_760) / 23_028, 3) == 0.837
    assert sglang_own_fraction(load_gpu("h100-sxm"), 1) == round((81_559 - 13_440) / 81_559, 3) == 0.835
    assert load_gpu("mi300x").device_total_MiB == pytest.approx(191.98 * 1024)
    out = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "8192", "-g", "a10", "-e", "sglang"])
    assert out.exit_code == 0 and "--memory-utilization 0.837" in out.output


def test_36_hwspecs1_smi_total_past_the_datasheet_is_refused(tmp_path):
    """A spec's nvidia-smi total above its datasheet memory is a contradiction, refused naming both fields."""
    text = (Path(__file__).resolve().parents[1] / "hardware_specs/h100-sxm.toml").read_text()
    text = text.replace("smi_memory_MiB = 81559", "smi_memory_MiB = 90000")
    (tmp_path / "big.toml").write_text(text)
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", str(tmp_path / "big.toml")])
    assert out.exit_code == 2 and "smi_memory_MiB 90000 exceeds memory_GiB 80" in out.output


def test_36_hwspecs2_every_nvidia_part_states_its_sms():
    """vLLM sizes its sampler's top-k/top-p buffer by the SM count; T4, A10, A10G, L4, V100 and B200 had fallen back
    to the H100's 132 where their own count is published (T4 40 and B200 148 from torch's multi_processor_count, A10
    72 and L4 58 from their datasheets' CUDA cores at 128 an SM, V100 80 from its whitepaper, A10G 80 from torch)."""
    from kvcalc.specs.catalog import load_gpu

    got = {g: load_gpu(g).compute_units for g in ("t4", "a10", "a10g", "l4", "v100-sxm2-32gb", "b200")}
    assert got == {"t4": 40, "a10": 72, "a10g": 80, "l4": 58, "v100-sxm2-32gb": 80, "b200": 148}


def test_36_launch1_the_vllm_image_runs_the_release_plan_sizes_with():
    """plan sizes vLLM's pool with the memory rule of formulas/engine_memory.py VLLM_LATEST (0.30) and launched
    vllm/vllm-openai:v0.24.0, whose rule holds fewer requests (Gemma-3-27B on an H200: 104 where plan launched 108):
    the images run the release the rule is."""
    from kvcalc.engines.launch import IMAGES, ROCM_IMAGES
    from kvcalc.formulas.engine_memory import VLLM_LATEST

    release = "v" + ".".join(map(str, VLLM_LATEST)) + ".0"
    assert IMAGES["vllm"] == f"vllm/vllm-openai:{release}" and ROCM_IMAGES["vllm"][""].endswith(f":{release}")


def test_36_launch2_sglangs_expert_dispatch_gathers_every_token_as_its_default_backend_does():
    """SGLang 0.5.14's --moe-a2a-backend defaults to none (server_args.py), whose StandardDispatcher leaves the
    tokens where DP attention's communicator gathered them: every group's tokens on every rank, reduce-scattered after
    the MoE. Timed as a top-k all-to-all, Llama 4 Scout (top_k 1) at EP 8 had moved 1/8 of the bytes; plan launches no
    other backend."""
    from kvcalc.engines.links import dispatch_copies
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    sglang = resolve_engine("sglang", load_gpu("h100-sxm"), [])
    assert dispatch_copies(sglang, 8) == 8.0
    args = ["-m", "llama-4-scout", "-g", "h100-sxm", "--tp", "4", "--ep", "8", "-b", "512", "-c", "2500", "-f", "json"]
    comm = {e: json.loads(CliRunner().invoke(app, ["estimate", *args, "--engine", e]).stdout)["decode"]["allreduce_ms"]
            for e in ("vllm", "sglang")}
    assert comm["sglang"] == pytest.approx(comm["vllm"], rel=0.25)  # the same bytes, each engine's measured curve
    plan_args = ["plan", "-m", "llama-4-scout", "-g", "h100-sxm", "-i", "2000", "-o", "500", "--concurrency", "1024",
                 "--max-tpot-ms", "80", "--engines", "sglang", "--emit", "sglang"]
    assert "--moe-a2a-backend" not in CliRunner().invoke(app, plan_args).output


def test_36_launch3_sglang_is_asked_for_the_prefill_batch_plan_times():
    """SGLang stops adding requests to a prefill batch past --max-prefill-tokens, 16,384 by default (server_args.py
    0.5.14; schedule_policy.py PrefillAdder), so a --step-tokens 32768 plan had launched 32,768-token chunks that ran
    as about 24K-token batches; the command now asks for the budget, and leaves the default alone within it."""
    base = ["plan", "-m", "llama-3.1-8b", "-g", "h100-sxm", "-i", "8000", "-o", "200", "--concurrency", "32",
            "--max-tpot-ms", "50", "--engines", "sglang", "--emit", "sglang"]
    big = CliRunner().invoke(app, [*base, "--step-tokens", "32768"])
    assert big.exit_code == 0, big.output
    assert "--chunked-prefill-size 32768" in big.output and "--max-prefill-tokens 32768" in big.output
    small = CliRunner().invoke(app, base)
    assert small.exit_code == 0 and "--max-prefill-tokens" not in small.output


def test_36_models1_qwen2_5_72b_is_the_instruct_checkpoint_its_limit_is():
    """The bundled qwen2.5-72b carried max_position_embeddings 32,768, the value of Qwen2.5-72B-Instruct's config.json,
    cited to the base Qwen2.5-72B's, whose config says 131,072 (litgpt's entry annotated with that URL: block_size
    131072), and answered to both names: it now answers to the Instruct's and cites it; the base name is looked up
    as any other repo id (its config.json imported from the cache)."""
    from kvcalc.specs.catalog import bundled_path, load_model

    spec = load_model("Qwen/Qwen2.5-72B-Instruct")
    assert spec.name == "qwen2.5-72b" and spec.max_position_embeddings == 32_768
    assert "Qwen2.5-72B-Instruct/blob/main/config.json: max_position_embeddings 32768" in spec.sources[0]
    assert bundled_path("model", "Qwen/Qwen2.5-72B") is None


def test_36_models2_llama_4_scouts_vision_tower_is_counted():
    """vLLM loads Llama 4 Scout's vision tower (Llama4ForConditionalGeneration); kvcalc had left it out, 0.8 % short of
    the checkpoint and of the card's 109B. The tower's parts as transformers counts them from the config's
    vision_config: 809,467,648 (34 layers) + 39,845,888 (adapter) + 1,647,360 (embeddings, norms) + 20,971,520
    (projector) = 871,932,416, beside the text model's 107,769,861,120 (that part unchanged)."""
    from kvcalc import estimate

    tower = 809_467_648 + 39_845_888 + 1_647_360 + 20_971_520
    assert tower == 871_932_416
    w = estimate("llama-4-scout", "h200").weights
    assert w.params == 107_769_861_120 + tower == 108_641_793_536
    assert abs(w.params / 109e9 - 1) < 0.005


def test_36_hwspecs6_a_release_for_an_engine_without_a_kernel_profile_picks_its_memory_rule(tmp_path):
    """capacity -e vllm --engine-version 0.19.0 on a spec file no profile names had said 'the roofline has no engine;
    pick one with --engine', though --engine vllm was given (without the release it warns and sizes vLLM's pool):
    the release picks vLLM's memory rule, the decode is timed on the roofline as the note says; the roofline itself
    still takes no release."""
    text = (Path(__file__).resolve().parents[1] / "hardware_specs/a10.toml").read_text()
    spec = tmp_path / "a10-copy.toml"
    spec.write_text(text.replace('name = "a10"', 'name = "a10-copy"', 1))
    args = ["capacity", "-m", "llama-3.1-8b", "-c", "8192", "-g", str(spec), "--engine-version", "0.19.0"]
    out = CliRunner().invoke(app, [*args, "-e", "vllm", "-f", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["engine_memory"]["vllm_version"] == "0.19"
    assert any("no vllm kernel profile for a10-copy" in w for w in doc["warnings"])
    roofline = CliRunner().invoke(app, [*args, "-e", "roofline"])
    assert roofline.exit_code == 2 and "the roofline has no engine" in roofline.output


def test_36_hwspecs3_explain_says_where_the_gpus_figures_come_from():
    """--explain derived every number but named no source for the GPU's own figures, nor that an A10's efficiencies
    are the H100's measured fractions assumed for it: it names the spec's first source and its efficiencies' source."""
    from kvcalc.specs.catalog import load_gpu

    hw = load_gpu("a10")
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "a10", "-e", "roofline", "--explain"],
                             env={"COLUMNS": "2000"})
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.startswith("GPU figures (a10): "))
    assert hw.sources[0] in line and hw.efficiency.source in line and "kvcalc show gpu a10" in line


def test_36_releases1_a_band_name_stands_for_the_bands_newest_release():
    """SGLang's one band, '0.4+' (0.4-0.5), holds the profiled 0.5.14, yet the scheduler read the name as release
    0.4.0: the pre-0.5.3 chunk rule and the pre-0.4.4 DP split, DeepSeek-V3's TTFT at EP 8 a third of 0.5.14's. A band
    name now stands for its newest release, as its overheads and kernel era do."""
    from kvcalc.engines.scheduler import (
        SGLANG_CHUNK_BY_MEMORY_SINCE,
        release_before,
        sglang_rank_chunk,
        sglang_server_budget,
    )

    for name in ("0.4+", "0.4-0.5"):
        assert not release_before(name, SGLANG_CHUNK_BY_MEMORY_SINCE)
        assert sglang_server_budget(143_771, name, dp=8) == sglang_server_budget(143_771, "0.5.14", dp=8)
        assert sglang_rank_chunk(16384, 8, name) == sglang_rank_chunk(16384, 8, "0.5.14") == 2048
    assert release_before("0.1-0.7", ((0, 14, 0), (2026, 1)))  # vLLM's v0 band: its newest, 0.7, is before 0.14
    args = ["serve", "-m", "deepseek-v3", "-g", "h200", "--tp", "1", "--ep", "8", "--weight-dtype", "fp8-block", "-i",
            "8000", "--output-len", "200", "-n", "64", "-e", "sglang", "-f", "json"]
    ttft = {v: json.loads(CliRunner().invoke(app, [*args, "--engine-version", v]).stdout)["ttft_ms"]
            for v in ("0.5.14", "0.4+")}
    assert ttft["0.4+"] == ttft["0.5.14"]


def test_36_releases2_published_releases_past_kvcalcs_rules_run_the_newest_rule_and_say_so():
    """vLLM 0.31-0.34 and TensorRT-LLM 1.4.0rc0/rc1 are on PyPI (`pip index versions`, 2026-12-07) and had been
    refused as releases that do not exist; they run the newest rule and band kvcalc follows, with a warning. A release
    past any published one is still refused."""
    from kvcalc.engines.overhead import band

    out = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version",
                                   "0.33.0"])
    assert out.exit_code == 0, out.output
    assert "vLLM 0.33.0: newer than the vLLM memory rule kvcalc follows (0.30's" in out.output
    with pytest.warns(UserWarning, match="trtllm 1.4.0rc1: newer than the releases kvcalc's overheads follow"):
        assert band("trtllm", "1.4.0rc1").name == "pytorch"
    with pytest.warns(UserWarning, match="vllm 0.34.0: newer"):
        assert band("vllm", "0.34.0").name == "v2"
    bad = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-e", "vllm", "--engine-version", "0.35.0"])
    assert bad.exit_code == 2 and "vllm has no release '0.35.0'" in bad.output
    bad = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version",
                                   "0.35"])
    assert bad.exit_code == 2 and "expected 0.1 to 0.34" in bad.output


def test_36_releases3_a_vllm_series_runs_as_its_first_release():
    """--vllm-version takes a minor series (0.11.x, as logs name some) and then handed the text to the release bands,
    which refused it under --engine-version, a flag not given: the series runs as its first release."""
    args = ["capacity", "-m", "qwen3-30b-a3b", "-c", "4096", "-e", "vllm", "-f", "json", "--vllm-version"]
    series, first = (CliRunner().invoke(app, [*args, v]) for v in ("0.11.x", "0.11.0"))
    assert series.exit_code == 0, series.output
    assert json.loads(series.stdout)["engine_memory"] == json.loads(first.stdout)["engine_memory"]


def test_36_web3_a_call_with_arguments_a_function_does_not_take_is_a_kvcalc_error():
    """A misspelt keyword, a missing required one or too many positional arguments had been Python's own TypeError
    from signature binding, which `except kvcalc.KvcalcError` does not catch; serve_frontier's misspelt pass-through
    keyword named serve(). They are kvcalc.errors.ArgumentError, a KvcalcError and a TypeError, naming the argument
    and the closest one the function takes."""
    import kvcalc
    from kvcalc.errors import ArgumentError

    cases = [(lambda: kvcalc.estimate("llama-3-8b", "h100-sxm", bacth=8),
              "bacth: not an argument of kvcalc.estimate (did you mean batch?)"),
             (lambda: kvcalc.capacity("llama-3-8b", "h100-sxm"), "context: required by kvcalc.capacity"),
             (lambda: kvcalc.estimate("llama-3-8b", "h100-sxm", 8), "kvcalc.estimate: too many positional arguments"),
             (lambda: kvcalc.serve_frontier("llama-3-8b", "h100-sxm", input_len=100, output_len=10, concurrencies=[1],
                                            tps=[1], enigne="vllm"),
              "enigne: not an argument of kvcalc.serve_frontier (did you mean engine?)")]
    for call, message in cases:
        with pytest.raises(ArgumentError) as e:
            call()
        assert str(e.value) == message and isinstance(e.value, (TypeError, kvcalc.KvcalcError))


def test_36_web1_2_4_5_api_arguments_of_the_wrong_kind_are_named():
    """simulate's scheduler as a list (unhashable: a TypeError), plan's price keyed by a number (a TypeError from
    pathlib), sweep's on_combination not callable (a TypeError after the first cell) are KvcalcErrors naming the
    argument; capacity's gpus= and serve_frontier's max_num_seqs= are named as the caller wrote them, not as tp or
    --max-num-seqs."""
    import kvcalc

    cases = [(lambda: kvcalc.simulate("llama-3-8b", "h100-sxm", input_len=100, output_len=10, concurrency=1,
                                      num_prompts=5, scheduler=["vllm-v1"]), "scheduler: expected a string or None"),
             (lambda: kvcalc.plan("llama-3-8b", ["l4"], input_len=100, output_len=10, concurrency=1,
                                  price_per_gpu_hour={1: 2}), "price_per_gpu_hour: a key must be a GPU name, got int 1"),
             (lambda: kvcalc.sweep(["llama-3-8b"], on_combination=1), "on_combination: expected a function to call"),
             (lambda: kvcalc.capacity("llama-3-8b", "h100-sxm", context=4096, gpus=0), "gpus: expected a whole number"),
             (lambda: kvcalc.serve_frontier("llama-3-8b", "h100-sxm", input_len=100, output_len=10, concurrencies=[1],
                                            tps=[1], max_num_seqs=0), "max_num_seqs: expected a whole number")]
    for call, start in cases:
        with pytest.raises(kvcalc.KvcalcError) as e:
            call()
        assert str(e.value).startswith(start), str(e.value)


def test_36_releases4_sglangs_own_fraction_follows_the_release_asked():
    """SGLang before 0.5.14 kept 2 GiB more for an EAGLE draft (server_args.py _handle_gpu_memory_settings; the
    twenty-ninth audit's R2), but serve's note gave 0.5.14's figure for any --engine-version. By hand on an H100
    (nvidia-smi's 81,559 MiB) at TP 1: 13,440 MiB reserved, 2,048 more under 0.5.13: (81,559 - 15,488) / 81,559 =
    0.810; 0.5.14 and the band's name give 0.835."""
    def fraction(version):
        r = CliRunner().invoke(app, ["serve", "-m", "qwen3-30b-a3b", "-g", "h100-sxm", "-e", "sglang", "-i", "1000",
                                     "--output-len", "200", "-n", "8", "--speculate", "eagle", "--engine-version",
                                     version, "-f", "json"])
        note = next(w for w in json.loads(r.stdout)["warnings"] if "derives mem_fraction_static" in w)
        return float(re.search(r"derives mem_fraction_static ([0-9.]+)", note)[1])

    assert fraction("0.5.13") == round((81_559 - 13_440 - 2_048) / 81_559, 3) == 0.81
    assert fraction("0.5.14") == fraction("0.4+") == round((81_559 - 13_440) / 81_559, 3)


def test_36_review_api_and_release_edges():
    """The review of the thirty-sixth audit's change: serve_frontier's tp= and concurrency= (which it sets at each
    point) named as such, not Python's 'multiple values'; misspelt pass-through keywords reported in the order given;
    --vllm-version and --engine-version naming two releases past the rule still refused; capacity on a GPU without a
    kernel profile still checks --engine-version; Llama 4's adapter bias (vision_config multi_modal_projector_bias:
    vLLM's Llama4VisionPixelShuffleMLP) adds the adapter's two bias vectors, 4,096 + 4,096."""
    import kvcalc
    from kvcalc.errors import ArgumentError
    from kvcalc.formulas.params import llama4_vision_params

    base = dict(input_len=100, output_len=10, concurrencies=[1], tps=[1])
    with pytest.raises(ArgumentError, match=r"^tp: kvcalc.serve_frontier sets it at each point; give tps="):
        kvcalc.serve_frontier("llama-3-8b", "h100-sxm", tp=2, **base)
    with pytest.raises(ArgumentError, match=r"^aaa: not an argument"):
        kvcalc.serve_frontier("llama-3-8b", "h100-sxm", aaa=1, zzz=2, **base)
    both = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version",
                                    "0.30", "--engine-version", "0.32.1"])
    assert both.exit_code == 2 and "they name different vLLM releases" in both.output
    text = (Path(__file__).resolve().parents[1] / "hardware_specs/a10.toml").read_text()
    args = ["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--engine-version", "banana"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "a10-copy.toml"
        spec.write_text(text.replace('name = "a10"', 'name = "a10-copy"', 1))
        bad = CliRunner().invoke(app, [*args, "-g", str(spec)])
    assert bad.exit_code == 2 and "--engine-version" in bad.output and "banana" in bad.output
    scout = (1408, 5632, 34, 14, 336, 4096, 4096, 4096, 5120)
    assert llama4_vision_params(*scout, adapter_bias=True) - llama4_vision_params(*scout) == 4096 + 4096


# DeepSeek-V4-Flash's config.json (huggingface.co/deepseek-ai/DeepSeek-V4-Flash/blob/main/config.json, as a public
# repository quotes it; TensorRT-LLM's test config carries the same fields): its structural fields
DEEPSEEK_V4_FLASH = {
    "model_type": "deepseek_v4", "hidden_size": 4096, "num_hidden_layers": 43, "num_attention_heads": 64,
    "num_key_value_heads": 1, "head_dim": 512, "q_lora_rank": 1024, "o_lora_rank": 1024, "o_groups": 8,
    "qk_rope_head_dim": 64, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 6,
    "moe_intermediate_size": 2048, "sliding_window": 128, "hc_mult": 4, "vocab_size": 129280,
    "max_position_embeddings": 1048576, "tie_word_embeddings": False, "expert_dtype": "fp4",
    "compress_ratios": [0, 0] + [4, 128] * 20 + [4, 0]}


@pytest.mark.parametrize("model_type, named", [("deepseek_v4", "DeepSeek-V4's layout"),
                                                ("my_finetune", "compress_ratios")])
def test_36_import1_deepseek_v4_is_refused_for_its_own_layout(tmp_path, model_type, named):
    """DeepSeek-V4-Flash had been refused for intermediate_size, then for sliding_window, and once both were
    supplied as the errors asked, read with every layer a 128-token window of one 512-wide head (its compressed
    whole-context cache, hyper-connections and FP4 experts dropped): 290.9B parameters, 88 KB a token. It is refused
    for its layout, by model_type and, renamed, by its fields."""
    config = {**DEEPSEEK_V4_FLASH, "model_type": model_type, "intermediate_size": 2048,
              "layer_types": ["sliding_attention"] * 43}
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path / "config.json")])
    assert out.exit_code == 2 and named in out.output and "Traceback" not in out.output
