"""The thirtieth hostile audit (docs/validation.md, "Thirtieth hostile audit"), with the twenty-eighth audit's
hardware findings H4-H6 that it had left: each test is named after its finding."""

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.specs.catalog import load_gpu

GiB = 2**30


@pytest.mark.parametrize("gpu, total_bytes", [
    ("h100-nvl", 99_960_750_080),  # cudaDeviceProp.totalGlobalMem in a public H100 NVL micro-benchmark report
    ("gh200-144gb", 153_008_209_920),  # cuDeviceTotalMem asserted for an 'NVIDIA GH200 144G HBM3e'
])
def test_28_h4_the_driver_total_is_the_memory_engines_budget_from(gpu, total_bytes):
    """vLLM and SGLang budget a fraction of what the driver reports, not the datasheet's GB: an H100 NVL's 94 had
    given 0.9 GiB more pool than the card has, a GH200's 144 1.5 GiB."""
    assert load_gpu(gpu).visible_memory_GiB == round(total_bytes / GiB, 2)


def test_28_h4_twin_parts_get_one_pool():
    """nvidia-smi shows an H100 PCIe's 81,559 MiB as it shows the SXM's: the same total, not 80 GiB on one and
    79.22 on the other."""
    assert load_gpu("h100-pcie").visible_memory_GiB == load_gpu("h100-sxm").visible_memory_GiB == 79.22


def test_28_h4_estimate_says_when_it_counts_the_datasheet_figure(tmp_path):
    # every bundled spec now has visible_memory_GiB (the thirty-third stop): a copy of the B200's without it
    text = (Path(__file__).parents[1] / "hardware_specs/b200.toml").read_text()
    spec = tmp_path / "b200.toml"
    spec.write_text(re.sub(r"(?m)^visible_memory_GiB = .*\n", "", text))
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", str(spec)], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "90% of 180.00 GiB, the datasheet's: the spec has no visible_memory_GiB" in out.output
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "h100-nvl"], env={"COLUMNS": "250"})
    assert "(90% of 93.10 GiB)" in out.output and "datasheet" not in out.output


@pytest.mark.parametrize("value, shown", [(242.5, "243"), (989.5, "990"), (1670.5, "1,671"), (2.675, "2.68"),
                                          (-0.125, "-0.125"), (12.0, "12"), (123_456.5, "123,457")])
def test_28_h5_tables_round_halves_up(value, shown):
    """Python's half-to-even printed L4's 242.5 TFLOPS as 242 beside GH200's 989.5 as 990."""
    from kvcalc.cli.output import _cell

    assert _cell(value) == shown


def test_28_h5_a_number_column_with_a_gap_in_its_first_row_is_right_aligned():
    out = CliRunner().invoke(app, ["gpus"], env={"COLUMNS": "200"})
    l4 = next(line for line in out.output.splitlines() if line.startswith(" l4 "))
    assert "    243  " in l4  # fp8 right-aligned under its header, though a10 (the first row) has none


def test_28_h6_mi355x_runs_int8_at_the_fp8_rate():
    """AMD's MI350 launch figures: MI355X INT8 5 POPS dense (10.1 with sparsity), the fp8 rate."""
    peaks = load_gpu("mi355x").peak_tflops
    assert peaks.int8 == peaks.fp8 == 5033.2


CWM = {"architectures": ["CwmForCausalLM"], "model_type": "cwm", "vocab_size": 128256, "hidden_size": 6144,
       "intermediate_size": 21504, "num_hidden_layers": 64, "num_attention_heads": 48, "num_key_value_heads": 8,
       "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 131072, "tie_word_embeddings": False,
       "sliding_window": 8192, "torch_dtype": "bfloat16"}


def test_30_c1_an_unknown_family_that_slides_without_saying_which_layers_is_refused(tmp_path):
    """transformers' CwmConfig makes layer i full where i % 4 == 0 when layer_types is absent; every layer had been
    read as sliding (KV 4.75x low at 131,072 tokens)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CWM))
    out = CliRunner().invoke(app, ["estimate", "-m", str(path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "sliding_window: 8192 with neither layer_types nor sliding_window_pattern" in out.output
    # written out, as the config class builds them, the layers are read: 16 full layers at 131,072 tokens and 48
    # sliding at 8,192, each token 8 KV heads x 128 x 2 (K and V) x 2 B = 4,096 B a layer
    path.write_text(json.dumps(CWM | {"layer_types": ["full_attention" if i % 4 == 0 else "sliding_attention"
                                                      for i in range(64)]}))
    out = CliRunner().invoke(app, ["estimate", "-m", str(path), "-c", "131072", "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["kv_cache"]["bytes_per_sequence"] == 16 * 131072 * 4096 + 48 * 8192 * 4096


@pytest.mark.parametrize("gpu, int8", [
    ("gb200", 720_000 / 2 / 72),  # GB200 NVL72: INT8 720 POPS per rack with sparsity, 72 GPUs
    ("rtx-3090", 568 / 2),  # GA102 whitepaper, Appendix A: Peak INT8 Tensor TOPS 284/568
    ("rtx-5090", 1676 / 2),  # RTX Blackwell whitepaper, Table 3: Peak INT8 Tensor TOPS 838/1676
])
def test_30_h1_h3_int8_peaks_the_datasheets_print(gpu, int8):
    assert load_gpu(gpu).peak_tflops.int8 == int8


def test_30_h1_gb200_w8a8_prefill_is_not_slower_than_on_a_b200():
    """Same die, higher clocks: without an int8 peak GB200's W8A8 GEMMs had run at the bf16 peak, 611 ms where the
    B200 took 367."""
    def prefill(gpu):
        out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-70b", "-g", gpu, "-e", "roofline", "--weight-dtype",
                                       "int8", "--prompt", "8192", "-c", "8192", "-f", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["prefill"]["ms"]

    assert prefill("gb200") < prefill("b200")


def test_30_h4_int8_weights_on_a_spec_without_an_int8_peak_are_said():
    """A10G's spec has no int8 peak: W8A8 is timed at the bf16 peak, and estimate says so where it had said nothing."""
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "a10g", "-e", "roofline", "--weight-dtype",
                                   "int8", "-f", "json"])
    assert out.exit_code == 0, out.output
    assert any("a10g's spec has no peak_tflops.int8" in w for w in json.loads(out.stdout)["warnings"])
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "rtx-3090", "-e", "roofline",
                                   "--weight-dtype", "int8", "-f", "json"])
    assert not any("peak_tflops.int8" in w for w in json.loads(out.stdout)["warnings"])


def test_30_f2_deepseek_v32_nvfp4_cache_is_vllms_352_byte_record():
    """vLLM's 'nvfp4_ds_mla' (flashmla_sparse.py): 512 e2m1 NoPE values two a byte (256 B), 64 fp8 RoPE values (64 B)
    and an fp8 scale per 16 NoPE values (32 B): 352 B, plus the indexer's 128 fp8 values and one fp32 scale (132 B),
    in each of the 61 layers. All 576 values at 0.5 + 1/16 B had given 324 + 132."""
    out = CliRunner().invoke(app, ["estimate", "-m", "deepseek-v3.2", "-g", "b200", "--tp", "8", "--kv-dtype", "nvfp4",
                                   "-e", "vllm", "-f", "json"])
    assert out.exit_code == 0, out.output
    kv = json.loads(out.stdout)["kv_cache"]
    assert kv["bytes_per_token_per_layer"] == 256 + 64 + 32 + 132
    assert kv["bytes_per_token"] == 61 * (256 + 64 + 32 + 132)


def test_30_f3_sparse_attention_prefill_runs_over_the_latent():
    """DSA is MLA in its MQA mode (the DeepSeek-V3.2-Exp paper, 2.1), prefill included: 2 x 128 heads x (576 + 512)
    per attended position, each query attending min(i, 2,048) keys, 61 layers over 8 GPUs. The expanded form (192 +
    128) had given 3.4x fewer FLOPs."""
    out = CliRunner().invoke(app, ["estimate", "-m", "deepseek-v3.2", "-g", "h200", "--tp", "8", "-c", "65536",
                                   "--prompt", "65536", "-e", "roofline", "-f", "json"])
    assert out.exit_code == 0, out.output
    core = next(o for o in json.loads(out.stdout)["prefill"]["operators"] if o["name"] == "attention/core (global)")
    positions = sum(min(i, 2048) for i in range(1, 65537))
    assert core["flops"] == 2 * 128 * (576 + 512) * positions * 61 / 8


class _Toy:
    """A step of 10 ms, 1 ms a decode and 0.01 ms a prefill token: each step's time written out below."""

    def seconds(self, decodes, context, chunk, chunk_context, piece=None):
        return 0.010 + 0.001 * decodes + 0.00001 * chunk

    def decode_seconds(self, decodes, contexts):
        import numpy as np

        return np.full(len(contexts), 0.010 + 0.001 * decodes)


def test_30_s1_trtllm_rounds_a_cut_context_chunk_down_to_whole_blocks():
    """microBatchScheduler.cpp setCtxRequestsChunkSize<kFIRST_COME_FIRST_SERVED>: a chunk the token budget cuts is
    actualChunkSize / chunkUnitSize * chunkUnitSize, the unit tokens_per_block (32). Budget 100, prompts of 40 and
    150 tokens, both at t = 0:
      step 1: A's 40 and B's 60 cut to 32: 72 tokens, 10.72 ms (A's first token);
      step 2: A's decode and B's 99 cut to 96: 11.96 ms, ends at 22.68 ms;
      step 3: A's decode and B's last 22 tokens: 11.22 ms, ends at 33.90 ms (B's first token).
    The exact remainder (60, then 90) had given B its first token at the end of step 2."""
    import numpy as np

    from kvcalc.engines.scheduler import trtllm_guaranteed_no_evict
    from kvcalc.serving.simulate import Workload, simulate_schedule

    work = Workload(np.array([0.0, 0.0]), np.array([40, 150]), np.array([50, 2]))
    r = simulate_schedule(trtllm_guaranteed_no_evict(budget=100), _Toy(), work, pool_tokens=1e9, log_steps=True)
    assert [s["chunk"] for s in r.log[:3]] == [72, 96, 22]
    assert r.first_token_s == pytest.approx([0.01072, 0.0339])
    # vLLM V1 takes the exact remainder: B's 60 and then its last 90 with A's decode
    from kvcalc.engines.scheduler import vllm_v1

    r = simulate_schedule(vllm_v1(budget=100), _Toy(), work, pool_tokens=1e9, log_steps=True)
    assert [s["chunk"] for s in r.log[:2]] == [100, 90]


def _serve(*args):
    out = CliRunner().invoke(app, ["serve", *args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_30_fuzz1_a_wave_of_prompts_shorter_than_the_step_is_cut_where_steps_end():
    """Eight 6,000-token prompts in 8,192-token steps: a step holds the tail of one prompt and the head of the next.
    The closed form had timed whole 6,000-token pieces, a median TTFT of 311.9 ms where a step-by-step schedule gives
    289.7."""
    args = ["-m", "qwen3-30b-a3b", "-g", "h100-sxm", "-e", "roofline", "-i", "6000", "--output-len", "1", "-n", "8",
            "--arrivals", "waves"]
    closed = _serve(*args)["ttft_ms"]
    simulated = _serve(*args, "--simulate", "--num-prompts", "8")["ttft_ms"]["p50"]
    assert closed == pytest.approx(simulated, rel=0.01)


def test_30_fuzz2_a_v0_release_steps_the_budget_the_closed_form_takes():
    """vLLM before 0.8 (V0): the simulator had stepped its policy's 8,192 tokens where serve's closed form (and V0's
    SchedulerConfig with chunked prefill) take 2,048 on an L40S."""
    args = ["-m", "llama-3.2-1b", "-g", "l40s", "-e", "vllm", "-i", "1000", "--output-len", "10", "-n", "33",
            "--arrivals", "waves", "--engine-version", "v0"]
    simulated = _serve(*args, "--simulate", "--num-prompts", "33")
    assert simulated["step_tokens"] == 2048
    assert _serve(*args)["ttft_ms"] == pytest.approx(simulated["ttft_ms"]["p50"], rel=0.01)


def test_30_plan1_a_median_ttft_under_a_concurrency_is_checked_in_the_simulator():
    """At 64 in flight the closed form had planned 2 x H100 TensorRT-LLM at a median TTFT of 87.5 ms that the
    simulator put at 1,176 ms, past the 500 ms limit, while the same question at p90 was simulated."""
    out = CliRunner().invoke(app, ["plan", "-m", "llama-3.1-70b", "-i", "1000", "-o", "300", "-n", "64",
                                   "--max-tpot-ms", "50", "--max-ttft-ms", "500", "-g", "h100-sxm", "-f", "json"])
    assert out.exit_code == 0, out.output
    choice = json.loads(out.stdout)["choice"]
    assert choice["simulated"]["percentile"] == "p50" and choice["simulated"]["met"]
    assert choice["simulated"]["ttft_ms"] <= 500


def test_30_plan2_sglangs_best_beside_another_engines_choice_is_said_too():
    """--emit sglang launches SGLang's best, which sat at --mem-fraction-static 0.9 beside a TensorRT-LLM choice in
    silence; SGLang derives 0.834 for an H100 at TP 2 (server_args.py _handle_gpu_memory_settings)."""
    out = CliRunner().invoke(app, ["plan", "-m", "llama-3.1-70b", "-i", "2000", "-o", "500", "--request-rate", "5",
                                   "--max-ttft-ms", "1000", "--max-tpot-ms", "40", "-g", "h100-sxm", "-f", "json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["choice"]["engine"] != "sglang" and "sglang" in r["best_by_engine"]
    assert any("SGLang's best (what --emit sglang launches)" in w and "above the 0.834 SGLang derives" in w
               for w in r["warnings"])


def test_30_plan4_cheapest_without_prices_says_what_it_ranks_by():
    args = ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "200", "-n", "16", "--max-ttft-ms", "2000",
            "--max-tpot-ms", "50", "-g", "h100-sxm,h200"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "cheapest: the fewest GPUs (no --price-per-gpu-hour" in out.output
    out = CliRunner().invoke(app, [*args, "--price-per-gpu-hour", "h100-sxm=2,h200=3"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "no --price-per-gpu-hour" not in out.output


def test_33_plan_json_says_what_it_ranks_by():
    """The JSON carried no word of the ranking the table's note gives (the thirty-second audit's leftover): a script
    reading `choice` could not tell that, unpriced, an H200 and an H100 of the same count tie on cost."""
    args = ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "200", "-n", "16", "--max-ttft-ms", "2000",
            "--max-tpot-ms", "50", "-g", "h100-sxm,h200", "-f", "json"]
    unpriced = json.loads(CliRunner().invoke(app, args).stdout)["ranked_by"]
    priced = json.loads(CliRunner().invoke(app, [*args, "--price-per-gpu-hour", "2"]).stdout)["ranked_by"]
    budget = json.loads(CliRunner().invoke(app, [*args[:7], "--gpu-budget", "8", *args[9:]]).stdout)["ranked_by"]
    assert unpriced.startswith("the fewest GPUs (no --price-per-gpu-hour")
    assert priced.startswith("the lowest cost per hour")
    assert budget.startswith("the most output tokens/s within --gpu-budget")


@pytest.mark.parametrize("pp, heaviest", [(7, 3_140_909_312), (5, 3_931_799_296), (8, 2_788_579_584)])
def test_30_f4_nemotron_h_stages_hold_the_blocks_their_pattern_places(pp, heaviest):
    """The audit's independent oracle prices each block of Nemotron-H-8B's layer_pattern by its kind (M: the Mamba-2
    mixer, *: attention, -: the MLP) and splits the 52 blocks as vLLM does; at the mean block the heaviest stage had
    been 5.6 % light at PP 7 (2,965,663,390 B). Within 1e-5: kvcalc spreads the norms evenly over the blocks."""
    out = CliRunner().invoke(app, ["estimate", "-m", "nemotron-h-8b", "-g", "h200", "--pp", str(pp), "-e", "roofline",
                                   "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["memory"]["weights_bytes"] == pytest.approx(heaviest, rel=1e-5)


def test_30_c3_mxfp4_on_a_model_without_experts_names_the_config_field(tmp_path):
    """vLLM's Mxfp4Config quantises routed experts only: a dense config with quant_method mxfp4 stores nothing in it,
    and the refusal had named kvcalc's own spec field ('quantization.quantized') and the folder."""
    config = {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
              "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
              "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "mxfp4"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = CliRunner().invoke(app, ["estimate", "-m", str(path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "quantization_config quant_method 'mxfp4': it quantises routed experts only" in out.output
    assert "quantization.quantized" not in out.output


def test_30_every_fitted_moe_curve_names_a_dtype_the_ledger_can_score():
    """`kvcalc profiles ledger` re-reads each curve's table by the curve's dtype; the MoE curves' mxfp4 (the tables'
    w4a16_mxfp4) had been looked up among the GEMM dtypes, and the ledger stopped with a StopIteration traceback."""
    from kvcalc.ledgers.kernel_tables import PACKAGE, table_dtype
    from kvcalc.specs.catalog import bundled_specs

    fitted = [(section, key, curve.fit.table) for p in bundled_specs("profile") for section in ("gemm", "moe")
              for key, curve in getattr(p, section).items()
              if curve.fit is not None and curve.fit.table.startswith(PACKAGE)]
    assert ("moe", "mxfp4") in {f[:2] for f in fitted}
    for section, key, table in fitted:  # the dtype the curve was fitted on, as its fit record names it
        dtype = table_dtype(section, key)
        assert re.search(rf"\({section}_dtype {dtype}[);]", table), (key, table)


def test_29_r2_serve_says_sglangs_own_fraction_with_its_speculation_reserve():
    """SGLang's _handle_gpu_memory_settings before 0.5.14 kept 2 GiB more for EAGLE or MTP; 0.5.14, the release the
    profiles time, keeps none (test_29_r2 checks the rule against the source): on 8 B200s DeepSeek-V3's own fraction
    is 0.852 with MTP or without. (0.842 with MTP from the twenty-ninth audit until the thirty-third; 0.853 on the
    datasheet's 184,320 MiB until the thirty-sixth, hwspecs 1.)"""
    def fraction(*speculate):
        r = _serve("-m", "deepseek-v3", "-g", "b200", "--tp", "8", "-e", "sglang", "-i", "1000", "--output-len", "200",
                   "-n", "32", *speculate)
        note = next(w for w in r["warnings"] if "derives mem_fraction_static" in w)
        return float(re.search(r"derives mem_fraction_static ([0-9.]+)", note)[1])

    # server_args.py on a B200 (nvidia-smi's 183,359 MiB) at TP 8: chunked_prefill_size 16,384, cuda_graph_max_bs
    # 512, so 512 + 1.5 x 16,384 + 2 x 512 + 8 / 8 x 1,024 = 27,136 MiB reserved; nothing for MTP in 0.5.14
    memory = 183_359
    assert fraction() == fraction("--speculate", "mtp") == round((memory - 27_136) / memory, 3) == 0.852


_HEAD = ("id,engine,engine_version,gpu,model,weight_dtype,kv_dtype,tp,pp,ep,metric,batch,input_len,output_len,"
         "measured,use,publisher,link,source,note\n")


def test_31_l1_one_measurement_is_scored_once(tmp_path):
    """Millstone AI's RTX PRO 6000 figures had been scored twice, from two files (pc-028 and nv-118), moving the RTX
    group's held-out median from 43.1 % to 23.5 %; a second scored row of the same measurement is refused, and the
    folder scores each once."""
    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.published import read_points, scored

    row = "vllm,0.10.0,h100-sxm,llama-3-8b,bf16,bf16,1,1,1,tpot_ms,1,128,128,12.5,{use},p,single,s,\n"
    (tmp_path / "a.csv").write_text(_HEAD + "a1," + row.format(use="score"))
    (tmp_path / "b.csv").write_text(_HEAD + "b1," + row.format(use="score"))
    with pytest.raises(KvcalcError, match="rows a1 and b1 are the same measurement"):
        read_points(tmp_path)
    (tmp_path / "b.csv").write_text(_HEAD + "b1," + row.format(use='"excluded: the same measurement as a1"'))
    assert [p["id"] for p in scored(read_points(tmp_path))] == ["a1"]
    from pathlib import Path

    ids = {p["id"] for p in scored(read_points(Path(__file__).parents[1] / "validation/published"))}
    assert {"nv-118", "nv-120"} <= ids and not {"pc-028", "pc-029"} & ids


def test_31_l3_a_row_of_an_engine_with_bands_names_its_release_or_month(tmp_path):
    """NIM's 'unknown (NIM 1.8.0)' names neither, so no engine-overhead band applied and seven TensorRT-LLM rows had
    been scored with no step cost at all."""
    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.published import read_points

    path = tmp_path / "a.csv"
    path.write_text(_HEAD + "n1,trtllm,unknown (NIM 1.8.0),h100-sxm,llama-3-8b,bf16,bf16,1,1,1,tpot_ms,1,128,128,12.5,"
                    "score,p,single,s,\n")
    with pytest.raises(KvcalcError, match="row n1: field engine_version: 'unknown \\(NIM 1.8.0\\)' names neither"):
        read_points(path)
    path.write_text(path.read_text().replace("unknown (NIM 1.8.0)", "unknown (2025-04)"))
    assert read_points(path)[0]["id"] == "n1"


def _capacity(*args):
    out = CliRunner().invoke(app, ["capacity", *args, "-f", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_31_m1_sglangs_longest_context_is_its_kv_part_and_its_slots():
    """SGLang gives 0.9 / 1.9 of a hybrid model's pool to whole Mamba states (handle_max_mamba_cache,
    --mamba-full-memory-ratio 0.9) and the rest to KV: one request at batch 1 holds at most the KV part's tokens
    (the 'KV Cache is allocated' count), where the whole pool had given 178,455; and a batch past the state slots has
    no context at all (2,893 had been given at 40 with 27 slots). A slot is one request's state on one GPU: 36 Gated
    DeltaNet layers of 32 value heads x 128 x 128 in float32 and a conv of (2 x 16 + 32) x 128 channels x 3 past
    inputs in bf16, over TP 4: 77,266,944 / 4 = 19,316,736 B (the thirty-third audit's attention 1 halved it: 27
    slots had been counted where there are 54)."""
    args = ["-m", "qwen3-next-80b-a3b", "-e", "sglang", "--tp", "4", "--memory-utilization", "0.52"]
    one = _capacity(*args, "-c", "32768")
    # a token's KV on one GPU: the 12 full-attention layers of 48 (full_attention_interval 4), the 2 KV heads one
    # each on 4 GPUs, 256 wide, K and V in bf16; the KV part is 1 / 1.9 of the pool, less one state slot at most
    per_token = 12 * 1 * 256 * 2 * 2
    kv_part = one["engine_memory"]["available_kv_bytes"] / 1.9
    assert one["max_context_at_batch"] == one["engine_memory"]["kv_tokens"]
    assert one["max_context_at_batch"] * per_token == pytest.approx(kv_part, rel=0.02)
    past = _capacity(*args, "-c", "1024", "-b", "60")
    slots = math.floor(past["engine_memory"]["available_kv_bytes"] * 0.9 / 1.9 / 19_316_736)
    assert past["engine_memory"]["state_slots"] == slots == 54 and past["max_context_at_batch"] == 0


_AIPERF = ('{"time_to_first_token": {"unit": "ms", "avg": 58.7}, "inter_token_latency": {"unit": "ms", "avg": 10.6},'
           ' "input_sequence_length": {"unit": "tokens", "avg": 1000}, "output_sequence_length": {"unit": "tokens",'
           ' "avg": 200}, "request_throughput": {"unit": "requests/sec", "avg": 0.5}, "request_latency": {"unit": "ms",'
           ' "avg": 2160.0}, "input_config": {"loadgen": %s, "endpoint": {"model_names": ["%s"]}}}')


def test_31_calibrate1_an_aiperf_rate_under_a_concurrency_cap_keeps_the_rates_requests_in_flight(tmp_path):
    """AIPerf's 'Request Rate with Max Concurrency': the concurrency is a ceiling. 0.5 requests/s of 2.16 s each keep
    1.08 in flight (Little's law), not the cap of 16; without a rate the concurrency is the run's."""
    from kvcalc.validate.calibrate import read_benchmark

    path = tmp_path / "profile_export_aiperf.json"
    path.write_text(_AIPERF % ('{"request_rate": 0.5, "concurrency": 16}', "meta-llama/Llama-3.1-8B-Instruct"))
    run = read_benchmark(path)[0]
    assert run["concurrency"] == pytest.approx(0.5 * 2.16) and run["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    path.write_text(_AIPERF % ('{"concurrency": 16}', "meta-llama/Llama-3.1-8B-Instruct"))
    assert read_benchmark(path)[0]["concurrency"] == 16


def test_31_calibrate2_3_a_file_of_more_runs_than_a_profile_can_name_is_refused(tmp_path):
    from kvcalc.errors import KvcalcError
    from kvcalc.validate.calibrate import MAX_BENCH_RUNS, read_benchmark

    path = tmp_path / "runs.jsonl"
    path.write_text("{}\n" * (MAX_BENCH_RUNS + 1))
    with pytest.raises(KvcalcError, match=f"{MAX_BENCH_RUNS + 1:,} runs; calibrate fits at most"):
        read_benchmark(path)


def _trtllm_report(gpu_name: str, tp: int) -> str:
    return json.dumps({"engine": {"model": "meta-llama/Llama-3.1-8B", "backend": "Pytorch", "version": "1.0.0"},
                       "machine": {"name": gpu_name}, "world_info": {"tp_size": tp, "pp_size": 1},
                       "request_info": {"num_requests": 512, "avg_num_concurrent_requests": 8,
                                        "avg_input_length": 1000, "avg_output_length": 200},
                       "streaming_metrics": {"avg_ttft_ms": 63.2, "avg_tpot_ms": 13.1}}) + "\n"


def test_31_calibrate4_a_trtllm_bench_report_of_another_gpu_or_tp_is_said(tmp_path):
    """reporting.py writes machine.name (_query_gpu_info) and world_info.tp_size: an A100's report had been fitted
    as an H100's in silence; another TP is refused."""
    import warnings

    from kvcalc.errors import KvcalcError
    from kvcalc.specs.catalog import load_model
    from kvcalc.validate.calibrate import read_benchmark, served_elsewhere

    spec, h100 = load_model("llama-3.1-8b"), load_gpu("h100-sxm")
    path = tmp_path / "report.jsonl"
    path.write_text(_trtllm_report("NVIDIA A100-SXM4-80GB", 1))
    with pytest.warns(UserWarning, match="machine.name 'NVIDIA A100-SXM4-80GB' is not --gpu h100-sxm"):
        served_elsewhere(path, read_benchmark(path), spec, "trtllm", h100, 1)
    path.write_text(_trtllm_report("NVIDIA H100 80GB HBM3", 2))
    with pytest.raises(KvcalcError, match="world_info.tp_size 2 is not --tp 1: pass --tp 2"):
        served_elsewhere(path, read_benchmark(path), spec, "trtllm", h100, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        served_elsewhere(path, read_benchmark(path), spec, "trtllm", h100, 2)  # its own GPU and TP: nothing said


def test_31_calibrate5_6_one_file_one_model_on_one_engine(tmp_path):
    """Runs of Llama-3.1-8B and Qwen3-8B, or of three engines, had been fitted as one deployment; a model of the same
    size but another family had been taken for --model."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.catalog import load_model
    from kvcalc.validate.calibrate import read_benchmark, served_elsewhere

    spec = load_model("llama-3.1-8b")
    path = tmp_path / "runs.jsonl"
    path.write_text(_AIPERF % ('{"concurrency": 4}', "meta-llama/Llama-3.1-8B-Instruct") + "\n"
                    + _AIPERF % ('{"concurrency": 8}', "Qwen/Qwen3-8B") + "\n")
    with pytest.raises(KvcalcError, match="the runs served 2 models"):
        served_elsewhere(path, read_benchmark(path), spec, "vllm")
    path.write_text(_AIPERF % ('{"concurrency": 4}', "Qwen/Qwen3-8B") + "\n")
    with pytest.warns(UserWarning, match="'Qwen/Qwen3-8B' is not --model llama-3.1-8b \\(another family\\)"):
        served_elsewhere(path, read_benchmark(path), spec, "vllm")


def test_31_calibrate9_a_genai_perf_csv_export_names_the_json_to_pass(tmp_path):
    from kvcalc.errors import KvcalcError
    from kvcalc.validate.calibrate import read_benchmark

    path = tmp_path / "profile_export_genai_perf.csv"
    path.write_text("Metric,avg,min,max\nTime To First Token (ms),45.2,30.1,84.1\n")
    with pytest.raises(KvcalcError, match="a genai-perf or AIPerf CSV export, which calibrate does not read"):
        read_benchmark(path)


def test_31_calibrate7_a_profile_calibrated_as_an_older_release_is_simulated_as_it(tmp_path):
    """calibrate --engine-version 0.11.0 writes engine_version 0.11.0, and serve and the simulator take vLLM's rules
    of that release: no async scheduling before 0.14 (engines/scheduler.py VLLM_ASYNC_SCHEDULING). It had been
    simulated as the tables' 0.24 and then the newest release, a step ahead, its TTFT 18 % apart."""
    from kvcalc.serving.closed_form import profile_release
    from kvcalc.specs.catalog import resolve_engine
    from kvcalc.specs.toml_out import spec_to_toml

    tables = resolve_engine("vllm", load_gpu("h100-sxm"))
    path = tmp_path / "calibrated.toml"
    for version, expected in (("0.11.0", "0.11"), (tables.engine_version, "latest")):
        fitted = tables.model_copy(update={"provenance": "fitted", "engine_version": version,
                                           "transferred_from": "h100-sxm.vllm", "method": "calibrated"})
        path.write_text(spec_to_toml(fitted))
        assert profile_release(str(path), "vllm", "h100-sxm", "latest") == expected
    path.write_text(spec_to_toml(tables.model_copy(update={"provenance": "fitted", "engine_version": "0.11.0",
                                                           "transferred_from": "h100-sxm.vllm", "method": "calibrated"})))
    r = _serve("-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "--simulate", "--request-rate", "4",
               "--num-prompts", "100", "--profile", str(path))
    assert r["schedules_ahead"] is False


def test_31_calibrate8_the_request_cost_is_refined_past_the_coarse_grid():
    """A TTFT of kernels + steps + exactly 30 ms a request had come back as 30.72 ms (the grid is 6 % apart)."""
    from kvcalc.validate.calibrate import fit_benchmark

    runs = [{"concurrency": c, "tpot_kernel_ms": 5.0 + c, "tpot_steps": 1.0, "tpot_ms": 5.0 + c + 1.0,
             "ttft_kernel_ms": 40.0 + 3 * c, "ttft_steps": 2.0, "ttft_ms": 40.0 + 3 * c + 2.0 + 30.0}
            for c in (1, 4, 16)]
    fit = fit_benchmark(runs)
    assert fit["time_scale"] == pytest.approx(1.0, abs=0.01) and fit["step_us"] == pytest.approx(1000, rel=0.01)
    assert fit["request_ms"] == pytest.approx(30.0, rel=0.002)


def test_31_readme2_auto_takes_the_release_rules_of_the_engine_it_times_with():
    """On an H100 auto times vLLM: --engine-version 0.13 (before async scheduling, 0.14) drops the step ahead under
    auto as under --engine vllm; auto had kept the newest scheduler (median TTFT 481 ms against 322)."""
    args = ["-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "-n", "32", "--simulate", "--arrivals",
            "closed", "--num-prompts", "128", "--engine-version", "0.13"]
    auto, vllm = _serve(*args), _serve(*args, "--engine", "vllm")
    assert auto["schedules_ahead"] is vllm["schedules_ahead"] is False
    assert auto["ttft_ms"]["p50"] == vllm["ttft_ms"]["p50"]


def test_31_speculate3_sglang_has_no_medusa():
    """SGLang's SpeculativeAlgorithm (python/sglang/srt/speculative/spec_info.py): DFLASH, EAGLE, EAGLE3,
    FROZEN_KV_MTP, STANDALONE, NGRAM; Medusa under SGLang had been timed without a word."""
    r = _serve("-m", "llama-3.1-8b", "-e", "sglang", "-i", "2000", "--output-len", "200", "-n", "16", "--speculate",
               "medusa=4")
    assert any("SGLang has no Medusa decoding" in w for w in r["warnings"])
    r = _serve("-m", "llama-3.1-8b", "-e", "vllm", "-i", "2000", "--output-len", "200", "-n", "16", "--speculate",
               "medusa=4")
    assert not any("Medusa" in w for w in r["warnings"])


def test_31_speculate4_a_draft_past_its_own_context_is_said():
    """Llama-3-8B's max_position_embeddings is 8,192: vLLM caps the draft there
    (SpeculativeConfig._maybe_override_draft_max_model_len)."""
    def warned(context):
        out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-70b", "--tp", "4", "-c", str(context),
                                       "--speculate", "draft=llama-3-8b,k=4,alpha=0.6", "-f", "json"])
        assert out.exit_code == 0, out.output
        return any("the draft's context ends at 8,192 tokens" in w for w in json.loads(out.stdout)["warnings"])

    assert warned(32768) and not warned(8192)


def test_31_speculate1_vllm_keeps_1_plus_k_state_blocks_a_request_under_speculation():
    """vllm/v1/kv_cache_interface.py MambaSpec.max_memory_usage_bytes: page_size_bytes * (1 + num_speculative_blocks),
    num_speculative_blocks = num_speculative_tokens: every recurrent-state group keeps k more blocks a request.
    Nemotron-H-8B at 8,192 tokens with n-gram speculation of 8: 248 requests had been held, as without it."""
    from kvcalc.estimator import precision
    from kvcalc.formulas import engine_memory as em
    from kvcalc.specs.catalog import load_model

    spec = load_model("nemotron-h-8b")
    layout = em.vllm_layout(spec, precision("bf16", "bf16").b_kv, 1, 1, em.BLOCK_TOKENS)
    plain, spec8 = (em.vllm_request_blocks(spec, layout, 8192, 8192, k) for k in (0, 8))
    assert spec8 - plain == 8 * layout.groups["state"]
    args = ["-m", "nemotron-h-8b", "-e", "vllm", "-i", "8000", "--output-len", "192", "-n", "4"]
    held, held8 = _serve(*args)["max_concurrency"], _serve(*args, "--speculate", "ngram=8,alpha=0.5")["max_concurrency"]
    # vLLM 0.30 (the default) keeps two state pages a request in 'align' (test_33_attention2): the pool's 3,472 to
    # 3,479 blocks over 14 + 6 = 20 blocks a request, then over 14 + 6 + 8 x 6 = 68 (248 and 56 before 'align')
    assert (held, held8) == (173, 51)
    assert held8 / held == pytest.approx((plain + 6) / (spec8 + 6), rel=0.02)


def test_31_speculate2_an_eagle_head_of_a_moe_target_is_one_dense_layer():
    """EAGLE-3 heads of MoE targets are one dense Llama layer (SGLang-EAGLE3-Qwen3-Coder-30B-A3B: '~350MB (single
    transformer layer)'); Qwen3-30B-A3B's had been sized with all 128 experts, 1.26 GB. A dense layer of d 2,048 and
    intermediate 6,144 (Qwen3-30B-A3B's config): q 32 x 128, k and v 4 x 128 each, o, three MLP projections, three
    norms of d (two in the layer, the head's final one), two q/k norms of 128, and EAGLE's 2d -> d fc, in bf16; and
    its cache, one layer of 4 KV heads x 128 x 2 x 2 B a token, at 4,096 tokens. MTP keeps the target's experts."""
    from kvcalc.formulas.speculative import draft_layer
    from kvcalc.specs.catalog import load_model

    spec = load_model("qwen3-30b-a3b")
    assert draft_layer(spec, "eagle").moe is None and draft_layer(spec, "mtp").moe is not None
    d, q, kv, f = 2048, 32 * 128, 4 * 128, 6144
    layer = d * q + 2 * d * kv + q * d + 3 * d * f + 3 * d + 2 * 128
    out = CliRunner().invoke(app, ["estimate", "-m", "qwen3-30b-a3b", "--speculate", "eagle", "-b", "1", "-c", "4096",
                                   "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["memory"]["draft_bytes"] == (layer + 2 * d * d) * 2 + 4096 * 4 * 128 * 2 * 2


def test_31_m2_sglangs_own_fraction_for_a_model_with_a_vision_tower_is_said_to_be_lower():
    """SGLang's adjust_mem_fraction_for_vlm (server_args.py) lowers mem_fraction_static further for a model with a
    vision_config; kvcalc had advised its text-model figure as 'SGLang's default' for Gemma-3-27B."""
    notes = _capacity("-m", "gemma-3-27b", "-c", "8192", "-e", "sglang")["engine_memory"]["notes"]
    assert any("has a vision tower: SGLang's own mem_fraction_static is below the 0.835" in n for n in notes)
    assert not any("for SGLang's default" in n for n in notes)  # the text rule's figure is not advised as it
    notes = _capacity("-m", "llama-3.1-8b", "-c", "8192", "-e", "sglang")["engine_memory"]["notes"]
    assert not any("vision tower" in n for n in notes)


@pytest.mark.parametrize("release", ["0.13", "v2"])
def test_31_review1_serve_under_auto_takes_a_vllm_engine_version(release):
    """The review of this change: serve's closed form under auto had refused every --engine-version with a message
    about --vllm-version, a flag not given; it answers as --engine vllm does."""
    args = ["-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "-n", "32", "--engine-version", release]
    assert _serve(*args)["ttft_ms"] == _serve(*args, "--engine", "vllm")["ttft_ms"]
    out = CliRunner().invoke(app, ["serve", *args[:-2], "--vllm-version", "0.13"])
    assert out.exit_code == 2 and "only vLLM's memory rule uses it; add --engine vllm" in out.output


@pytest.mark.parametrize("input_len, output_len, n, speculate", [
    (1000, 20, 2, "eagle,k=4"), (50, 50, 4, None), (70, 1, 8, None), (70, 100, 8, None)])
def test_31_review3_trtllm_waves_cut_prompts_as_the_simulator_does(input_len, output_len, n, speculate):
    """At --step-tokens 100 TensorRT-LLM takes a prompt whole where it fits and cuts the one it does not to whole
    32-token blocks (96, then 64 beside a decode of 5 tokens): serve's waves and the simulator had been 20-34 % apart
    once one of them rounded. Fixed-length waves are the case where the two must agree."""
    import warnings

    import kvcalc

    ask = dict(engine="trtllm", step_tokens=100, input_len=input_len, output_len=output_len, speculate=speculate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed = kvcalc.serve("llama-3.1-8b", concurrency=n, arrivals="waves", **ask)
        simulated = kvcalc.simulate("llama-3.1-8b", concurrency=n, arrivals="closed", num_prompts=n, **ask)
    assert closed["ttft_ms"] == pytest.approx(simulated["ttft_ms"]["p50"], rel=0.005)


def test_31_review2_a_trtllm_step_under_one_block_is_refused_not_looped():
    for extra in ([], ["--simulate", "--num-prompts", "4"]):
        out = CliRunner().invoke(app, ["serve", "-m", "llama-3.1-8b", "-e", "trtllm", "-i", "100", "--output-len", "10",
                                       "-n", "2", "--arrivals", "waves", "--step-tokens", "16", *extra])
        assert out.exit_code == 2 and "under TensorRT-LLM's 32-token KV block" in out.output


@pytest.mark.parametrize("device, gpu, named", [
    ("NVIDIA L40S", "l4", False), ("NVIDIA A100-SXM4-80GB", "a10", False), ("NVIDIA GH200 480GB", "h200", False),
    ("NVIDIA GB200", "b200", False), ("NVIDIA H100 80GB HBM3", "h100-sxm", True),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000", True), ("AMD Instinct MI300X", "mi300x", True)])
def test_31_review8_a_device_name_names_a_gpu_by_whole_words(device, gpu, named):
    """trtllm-bench's machine.name against --gpu: an L40S's report had passed for an L4's, a GH200's for an H200's."""
    from kvcalc.validate.calibrate import _names_gpu

    assert _names_gpu(device, gpu) is named


def test_32_serve5_a_limit_the_most_replicas_still_miss_is_refused():
    """--request-rate 1e8 --max-tpot-ms 8: 10^7 replicas and more still miss 8 ms, and serve had answered with a TPOT
    of 8.90 ms as if they met it; at 100 requests/s 27 replicas meet it."""
    args = ["serve", "-m", "llama-3.1-8b", "-i", "1000", "--output-len", "200", "-e", "vllm", "--max-tpot-ms", "8"]
    out = CliRunner().invoke(app, [*args, "--request-rate", "1e8"])
    assert out.exit_code == 2 and "replicas still miss it at this load" in out.output
    r = _serve(*args[1:], "--request-rate", "100")
    assert r["tpot_ms"] <= 8


@pytest.mark.parametrize("field, value, message", [
    ("pp", "1000000000", "pp: expected a whole number of GPUs from 1 to"),  # had hung, a list entry a stage
    ("pp", "100", "--pp: 100 pipeline stages exceed qwen3-235b-a22b's 94 layers"),  # had been scored at +40,344 %
    ("tp", "2.5", "tp: expected a whole number of GPUs"), ("tp", "-1", "tp: expected a whole number of GPUs"),
    ("mem_fraction_static", "7", "mem_fraction_static: expected a fraction in (0, 1], got 7"),
    ("mem_fraction_static", "0", "mem_fraction_static: expected a fraction in (0, 1], got 0")])
def test_32_validate2_an_engine_memory_row_is_checked_as_capacity_checks_its_flags(tmp_path, field, value, message):
    """The SGLang memory ledger's rows: a layout capacity refuses had been scored (or, at pp 10^9, hung)."""
    import csv
    import io
    from pathlib import Path

    source = Path(__file__).parents[1] / "validation/engine-memory/sglang.csv"
    rows = list(csv.DictReader(io.StringIO(source.read_text())))
    row = next(r for r in rows if r["model"] == "qwen3-235b-a22b")
    path = tmp_path / "sglang.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow({**row, field: value})
    out = CliRunner().invoke(app, ["validate", "--engine-memory", str(path)])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_32_validate8_a_kernel_table_kvcalc_cannot_read_is_one_line(tmp_path):
    """`profiles ledger --data` and `profiles fit --data` had stopped with ArrowInvalid, KeyError and IndexError
    tracebacks on a table that is not Parquet, lacks a column or has no rows."""
    import numpy as np

    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.kernel_tables import unreadable_table

    path = tmp_path / "gemm_perf.parquet"
    for failure in (lambda: np.load(path), lambda: {}["gemm_dtype"], lambda: [][0]):
        path.write_text("not parquet")
        with pytest.raises(KvcalcError, match="gemm_perf.parquet: not a kernel table as aiconfigurator-core writes"):
            with unreadable_table(path):
                failure()
    with pytest.raises(KvcalcError, match="^own words$"):  # kvcalc's own refusals pass through as they are
        with unreadable_table(path):
            raise KvcalcError("own words")


def test_31_review5_waves_under_ep_cut_each_replicas_prompts_where_its_steps_end():
    """Sixteen 6,000-token prompts over two data-parallel replicas (--ep 2), 8 each in its own budget: each replica's
    steps cut its prompts as one replica's do; whole pieces had put the closed form 5 % over the simulator."""
    args = ["-m", "qwen3-30b-a3b", "-g", "h100-sxm", "-e", "roofline", "-i", "6000", "--output-len", "1", "-n", "16",
            "--arrivals", "waves", "--ep", "2"]
    closed = _serve(*args)["ttft_ms"]
    simulated = _serve(*args, "--simulate", "--num-prompts", "16")["ttft_ms"]["p50"]
    assert closed == pytest.approx(simulated, rel=0.01)


# the thirty-second stop's leftover: thirteen specs had no visible_memory_GiB, so every engine memory rule started
# from the datasheet's nominal figure (an MI300X's 192 GiB where the device shows 191.98; a T4's 16 where torch sees
# 14.75, 8 % more pool than exists). Each figure is the cited total in bytes or MiB, converted here by hand.
@pytest.mark.parametrize("gpu, total_bytes", [
    ("mi300x", 201_310_208 * 1024),        # rocminfo Pool 1: 201310208 KB
    ("mi355x", 309_220_868_096),           # rocm-smi VRAM Total Memory (B)
    ("mi210", 68_702_699_520),             # rocm-smi VRAM Total Memory (B)
    ("mi250x-gcd", 68_702_699_520),
    ("mi250x", 2 * 68_702_699_520),        # two GCDs
    ("b200", 182_642 * 2**20),             # torch total_memory=182642MB (MiB)
    ("a100-sxm-40gb", 42_505_273_344),     # deviceQuery
    ("t4", 15_102 * 2**20),                # torch total_memory=15102MB, driver 535
    ("v100", 34_089_730_048),              # cudaGetDeviceProperties
    ("gh200", 97_280 * 2**20),             # OpenCL global memory, 97280 MB
])
def test_33_visible_memory_is_the_cited_device_total(gpu, total_bytes):
    from kvcalc.specs.catalog import load_gpu

    assert load_gpu(gpu).visible_memory_GiB == round(total_bytes / 2**30, 2)


def test_33_every_bundled_gpu_says_what_memory_the_device_shows():
    from kvcalc.specs.catalog import bundled_specs

    missing = [hw.name for hw in bundled_specs("gpu") if hw.visible_memory_GiB is None]
    assert missing == []


@pytest.mark.parametrize("tp", [2, 4, 8, 16])
def test_33_attention1_sglang_state_splits_by_value_heads(tp):
    """SGLang shapes a Gated DeltaNet layer's state (linear_num_value_heads / tp, head_k_dim, head_v_dim) in float32
    and its conv state by the TP size too (python/sglang/srt/configs/mamba_utils.py Mamba2StateShape.create). By hand,
    Qwen3-Next-80B-A3B (36 linear layers, 32 value heads and 16 key heads of 128, conv kernel 4): per layer
    32 * 128 * 128 * 4 B + (2 * 16 * 128 + 32 * 128) * 3 * 2 B = 2,146,304 B; 36 layers 77,266,944 B, over tp GPUs.
    It had been split by the 2 KV heads of the softmax layers: the same 36.84 MiB at TP 2, 4, 8 and 16."""
    from kvcalc.formulas.engine_memory import sglang_state_bytes
    from kvcalc.specs.catalog import load_model

    assert sglang_state_bytes(load_model("qwen3-next-80b-a3b"), 2, tp=tp) == pytest.approx(77_266_944 / tp, rel=1e-12)


@pytest.mark.parametrize("gpu, engine, small, large", [("l40s", "vllm", 8, 16), ("rtx-4090", "vllm", 8, 16),
                                                       ("h100-pcie", "vllm", 8, 16), ("gb300", "vllm", 16, 32),
                                                       ("gb200", "sglang", 4, 8)])
def test_33_links1_a_group_past_the_measured_curves_is_no_faster_than_the_largest_measured(gpu, engine, small, large):
    """The profiles measure all-reduces up to 8 GPUs (4 on GB200, 16 on GB300); a larger group had been timed by the
    ring model over the datasheet link: eight L40S over PCIe run NCCL at 1.4 GB/s, sixteen at the PCIe datasheet's 32,
    so the decode all-reduce fell from 29.4 ms at TP 8 to 10.3 ms at TP 16 (a larger ring moves more bytes a GPU over
    more steps); GB300's TP 32 had beaten its measured TP 16."""
    from kvcalc import estimate

    def allreduce_ms(tp):
        return estimate("llama-3.1-70b", gpu, tp=tp, batch=8, context=2048, engine=engine).decode.allreduce_ms

    assert allreduce_ms(large) >= allreduce_ms(small) * (1 - 1e-9)


def test_33_links1_expert_parallel_past_the_measured_curves_is_no_faster():
    """Eight L40S measure NCCL's all-to-all at 1.0 GB/s; sixteen had been timed at the PCIe datasheet's 32 GB/s:
    prefill communication 45 s at EP 8 and 0.76 s at EP 16."""
    from kvcalc.estimator import alltoall_curve
    from kvcalc.specs.catalog import bundled_profile, load_gpu

    profile, hw = bundled_profile("l40s", "vllm"), load_gpu("l40s")
    assert alltoall_curve(profile, hw, 16).bus_bandwidth_GBps <= profile.alltoall["ep8"].bus_bandwidth_GBps


@pytest.mark.parametrize("field, tp", [("interconnect_bandwidth_GBps", 8), ("scale_out_bandwidth_GBps", 4)])
def test_33_links3_a_link_the_schema_takes_does_not_crash(tmp_path, field, tp):
    """A link of 1e7 GB/s, the schema's bound, carried the measured curves past AllReduceCurve's 1e5 GB/s: every
    command on such a spec was a 68-line pydantic traceback, exit 1. (The memory, and a bridge's NVLink, as fast: a
    link faster than either is refused since the thirty-fourth audit, specs 8.)"""
    base = {"interconnect_bandwidth_GBps": "h100-sxm", "scale_out_bandwidth_GBps": "h100-pcie"}[field]
    text = (Path(__file__).parents[1] / "hardware_specs" / f"{base}.toml").read_text()
    spec = tmp_path / "fast.toml"
    for key in {field, "interconnect_bandwidth_GBps", "memory_bandwidth_GBps"}:
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = 1e7", text)
    spec.write_text(text)
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", str(spec), "--tp", str(tp), "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["decode"]["allreduce_ms"] > 0


def test_33_links5_v100_groups_past_one_dgx1_need_a_network():
    """The DGX-1's hybrid cube-mesh joins 8 V100s (NVIDIA WP-08437-002); TP 16 had run over NVLink 2 as one node."""
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", "v100", "--tp", "16", "-e", "roofline"])
    assert out.exit_code == 2 and "joins 8 GPUs" in out.output and "scale_out_bandwidth_GBps" in out.output


def test_33_links8_geforce_pipeline_sends_cross_pcie_twice():
    """Without PCIe peer-to-peer NCCL stages every chunk through host memory (its SHM transport), as kvcalc already
    halves the GeForce cards' all-reduce bandwidth; the stage-to-stage sends had used the whole link. By hand,
    Llama-3.1-8B at PP 2 on RTX 4090s, batch 8 in two micro-batches of 4: one send of the hidden states and the
    residual (the thirty-seventh audit, links 4), 2 x 4 x 4,096 x 2 B, over 64 GB/s / 2 (one way) / 2 (twice) =
    4.096 us."""
    from kvcalc import estimate

    e = estimate("llama-3.1-8b", "rtx-4090", pp=2, batch=8, context=1024, engine="roofline")
    assert e.decode.pipeline_ms == pytest.approx(2 * 4 * 4096 * 2 / (64e9 / 4) * 1e3, rel=1e-9)


def test_33_quant_f2_f3_who_runs_a_checkpoints_kv_format(tmp_path):
    """vLLM's --kv-cache-dtype auto reads a ModelOpt checkpoint's KV format only, and maps fp8 only
    (vllm/utils/torch_utils.py get_kv_cache_quant_algo_string, MODELOPT_TO_VLLM_KV_CACHE_DTYPE_MAP = {"fp8": ...}).
    A compressed-tensors fp8 kv_cache_scheme had been said to run under vLLM's auto; a ModelOpt 4-bit float
    kv_cache_scheme (NVFP4) had gone without a word."""
    from tests.test_tenth_audit import _hf, _llama3

    ct = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
        "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True}}},
        "ignore": ["lm_head"], "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor",
                                                   "dynamic": False, "symmetric": True}}
    _, warned = _hf(tmp_path, _llama3(quantization_config=ct))
    kv = [w for w in warned if "KV cache in fp8" in w]
    assert kv and "vLLM runs with --kv-cache-dtype fp8" in kv[0] and "--kv-cache-dtype auto)" not in kv[0]
    mo = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "ignore": ["lm_head"],
          "kv_cache_scheme": {"dynamic": False, "num_bits": 4, "type": "float"}}
    _, warned = _hf(tmp_path, _llama3(quantization_config=mo))
    assert any("KV cache in nvfp4" in w and "--kv-dtype nvfp4" in w and "maps fp8 only" in w for w in warned)
    mo["kv_cache_scheme"]["num_bits"] = 8
    _, warned = _hf(tmp_path, _llama3(quantization_config=mo))
    assert any("KV cache in fp8, as vLLM (--kv-cache-dtype auto) and TensorRT-LLM run it" in w for w in warned)


@pytest.mark.parametrize("glob", ["model.layers.61*", "model.layers.61.*"])
def test_33_quant_f1_an_excluded_mtp_layer_is_not_a_served_layer(tmp_path, glob):
    """NVIDIA's FP4 DeepSeek checkpoints exclude every layer's self_attn and the appended MTP layer,
    'model.layers.61*' (SGLang's DeepseekV3ForCausalLMNextN maps model.layers.<num_hidden_layers> to its draft
    decoder). The entry had been read as one of the 61 served layers kept in bf16: its 256 experts and shared expert,
    3 x 7,168 x 2,048 x 257 = 11,318,329,344 weights, at 2 B not 0.5625 (NVFP4: 4 bits and an fp8 scale per 16),
    +16,270,098,432 B. The checkpoint does store the MTP layer in bf16, and with it its eh_proj (2 x 7,168 x 7,168
    weights): the index check counts both so."""
    from kvcalc.specs.hf import load_hf_spec, stored_weight_bytes, read_config
    from kvcalc.formulas.params import weight_bytes

    config = json.loads((Path(__file__).parent / "fixtures/hf/DeepSeek-V3/config.json").read_text())
    config.pop("quantization_config")
    excluded = ["lm_head", *(f"model.layers.{i}.self_attn*" for i in range(61))]
    sizes = {}
    for name, extra in (("with", [glob]), ("without", [])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt"}, "quantization": {
            "quant_algo": "NVFP4", "group_size": 16, "exclude_modules": excluded + extra}}))
        spec, _ = load_hf_spec(folder)
        data = {**read_config(folder / "config.json"), "quantization_config": {
            "quant_method": "modelopt", **json.loads((folder / "hf_quant_config.json").read_text())}}
        sizes[name] = weight_bytes(spec, 0.5625), stored_weight_bytes(spec, data)[0]
    assert sizes["with"][0] == sizes["without"][0]  # the served layers alike
    assert sizes["with"][1] - sizes["without"][1] == pytest.approx((11_318_329_344 + 2 * 7168**2) * (2 - 0.5625), abs=1)


@pytest.mark.parametrize("algo, words", [("FP8_PB_WO", "weight-only"), ("MXFP8", "MXFP8 weights")])
def test_33_quant_f4_modelopt_formats_vllm_loads_are_refused_for_what_they_are(tmp_path, algo, words):
    """vLLM's ModelOpt support lists FP8_PB_WO (block-scaled fp8, weight-only) and MXFP8
    (docs/features/quantization/modelopt.md); kvcalc had refused them as formats it does not know."""
    from kvcalc.errors import KvcalcError
    from tests.test_tenth_audit import _hf, _llama3

    with pytest.raises(KvcalcError) as e:
        _hf(tmp_path, _llama3(), {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": algo}})
    assert words in str(e.value) and "not a ModelOpt format kvcalc knows" not in str(e.value)


def test_33_attention4_cross_layer_attention_is_refused(tmp_path):
    """Hunyuan's use_cla shares one KV cache between cla_share_factor layers (vLLM's hunyuan_v1.py,
    kv_sharing_target_layer_name); read from its fields, every layer's cache had been counted, 131,072 B a token
    where the model keeps 65,536. With use_cla false the config reads as before."""
    from kvcalc.errors import KvcalcError
    from tests.test_tenth_audit import _hf

    config = {"architectures": ["HunYuanDenseV1ForCausalLM"], "model_type": "hunyuan_v1_dense", "head_dim": 128,
              "cla_share_factor": 2, "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
              "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32,
              "num_key_value_heads": 8, "tie_word_embeddings": True, "use_cla": True, "vocab_size": 128256}
    with pytest.raises(KvcalcError, match="use_cla: layers share their KV cache"):
        _hf(tmp_path, config)
    spec, _ = _hf(tmp_path, {**config, "use_cla": False})
    assert spec.num_layers == 32


def test_33_attention5_explain_shows_no_conv_term_for_a_mixer_without_one(tmp_path):
    """MiniMax-Text-01's lightning attention has no convolution; --explain had printed '0 * 24,576' conv channels.
    By hand: 70 linear layers x 64 heads x 128 x 128 x 2 B = 146,800,640 B = 140.00 MiB a sequence."""
    config = {"architectures": ["MiniMaxText01ForCausalLM"], "model_type": "minimax_text_01", "head_dim": 128,
              "hidden_size": 6144, "intermediate_size": 9216, "max_position_embeddings": 10240000,
              "num_attention_heads": 64, "num_experts_per_tok": 2, "num_hidden_layers": 80, "num_key_value_heads": 8,
              "num_local_experts": 32, "rotary_dim": 64, "vocab_size": 200064, "tie_word_embeddings": False,
              "shared_intermediate_size": 0, "torch_dtype": "bfloat16",
              "attn_type_list": [1 if (i + 1) % 8 == 0 else 0 for i in range(80)]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path / "config.json"), "-g", "h200", "--tp", "8",
                                   "-c", "100000", "--explain"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "= 70 * 64 * 128 * 128 * 2 B" in out.output and "140.00 MiB" in out.output
    assert "conv channels" not in out.output


def test_33_launch_l3_a_checkpoint_without_mtp_layers_is_not_planned_with_mtp(tmp_path):
    """A DeepSeek-V3-architecture checkpoint with num_nextn_predict_layers 0 (Moonlight's, or a conversion that dropped
    the module): plan had searched and launched MTP by the family alone, and vLLM 0.24 divides by the 0 draft layers
    at start-up (config/speculative.py: n_predict 0, then 1 % 0)."""
    config = json.loads((Path(__file__).parent / "fixtures/hf/DeepSeek-V3/config.json").read_text())
    config.update(num_nextn_predict_layers=0, num_hidden_layers=8)
    config.pop("quantization_config")
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["plan", "-m", str(tmp_path / "config.json"), "-g", "h200", "-i", "2000", "-o", "300", "-n", "64",
            "--engines", "vllm"]
    out = CliRunner().invoke(app, [*args, "--emit", "vllm"])
    assert out.exit_code == 0, out.output
    assert "--speculative-config" not in out.output
    doc = json.loads(CliRunner().invoke(app, [*args, "-f", "json"]).stdout)
    assert {r["speculate"] for r in [doc["choice"], *doc["frontier"]]} == {None}
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path / "config.json"), "-g", "h200", "--speculate", "mtp",
                                   "-f", "json"])
    assert "num_nextn_predict_layers 0" in out.output


def test_33_launch_l2_trtllm_pipeline_stages_split_the_batch_budget():
    """TensorRT-LLM's capacity scheduler holds max_batch_size x pp_size requests (_torch/pyexecutor/_util.py
    create_py_executor_instance): a TP 8 x PP 2 replica planned for 32 requests had launched --max_batch_size 32,
    admitting 64."""
    args = ["plan", "-m", "llama-3.1-405b", "-g", "a100-sxm-80gb", "-i", "1000", "-o", "200", "-n", "32",
            "--max-tpot-ms", "300", "--engines", "trtllm", "--no-convert", "--no-disaggregate"]
    choice = json.loads(CliRunner().invoke(app, [*args, "-f", "json"]).stdout)["choice"]
    out = CliRunner().invoke(app, [*args, "--emit", "trtllm"])
    pp, seqs = choice["pipeline_parallel"], choice["max_num_seqs"]
    assert pp == 2 and f"--pp_size {pp}" in out.output
    assert f"--max_batch_size {-(-seqs // pp)} " in out.output


@pytest.mark.parametrize("engine, named, auto", [("vllm", "--kv-cache-dtype bfloat16", None),
                                                 ("sglang", "--kv-cache-dtype bf16", "--kv-cache-dtype auto")])
def test_33_launch_l1_a_bf16_cache_is_named_where_auto_would_take_the_checkpoints_fp8(tmp_path, engine, named, auto):
    """vLLM's and SGLang's auto takes a ModelOpt checkpoint's declared fp8 cache (vLLM's resolve_kv_cache_dtype_string,
    SGLang's configure_kv_cache_dtype): a pool sized in bf16 had launched in fp8. Elsewhere auto, the model's own
    16-bit dtype, stays: a float16 checkpoint (chatglm2-6b) with a bfloat16 cache reads its bits wrong (the review's
    1)."""
    from kvcalc.engines.launch import sglang_command, vllm_command
    from kvcalc.specs.catalog import load_model
    from tests.test_tenth_audit import _hf, _llama3

    choice = json.loads(CliRunner().invoke(app, [
        "plan", "-m", "llama-3.1-8b", "-g", "a100-sxm-80gb", "-i", "2000", "-o", "300", "-n", "16", "--engines", engine,
        "--no-convert", "-f", "json"]).stdout)["choice"]
    assert choice["kv_dtype"] == "bf16"
    modelopt, _ = _hf(tmp_path, _llama3(), {"producer": {"name": "modelopt"}, "quantization": {
        "quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}})
    command = {"vllm": vllm_command, "sglang": sglang_command}[engine]
    assert named in " ".join(command(modelopt, choice, 2300))
    plain = " ".join(command(load_model("chatglm2-6b"), choice, 2300))
    assert named not in plain and (auto is None or auto in plain)


@pytest.mark.parametrize("release, blocks_a_request", [("0.27", 8 + 3 * 1), ("0.30", 8 + 3 * 2)])
def test_33_attention2_vllm_0_28_keeps_two_state_pages_a_hybrid_request(release, blocks_a_request):
    """vLLM 0.28 turns prefix caching on for hybrid models by default in mamba_cache_mode 'align' (PR #50991; 0.28.0's
    bump in vllm-project/vllm-metal PR #645), which holds two state pages a request (MambaSpec.max_memory_usage_bytes).
    Qwen3-Next-80B at TP 2 lays out 544-token pages in four groups of 12 layers, one full-attention and three Gated
    DeltaNet (vLLM's 'Setting attention block size to 544 tokens'): a 4,096-token request takes ceil(4,096 / 544) = 8
    pages of the full group and one (0.27) or two (0.30) of each state group. The pool's pages are kv_tokens / 544 in
    each of the four groups."""
    out = CliRunner().invoke(app, ["capacity", "-m", "qwen3-next-80b-a3b", "-c", "4096", "-g", "h200", "--tp", "2",
                                   "-e", "vllm", "--vllm-version", release, "--cuda-graph-memory", "0", "-f", "json"])
    memory = json.loads(out.stdout)["engine_memory"]
    pages = memory["kv_tokens"] / 544 * 4
    assert memory["max_concurrency"] == pytest.approx(pages / blocks_a_request, rel=2e-3)


def test_33_attention3_mla_prefill_over_a_cached_context_expands_the_latents():
    """vLLM's MLA prefill gathers a later chunk's cached latents and runs kv_b_proj over them before attention
    (MLACommonImpl._compute_prefill_context). By hand, DeepSeek-V3 (128 heads, d_c 512, d_n 128, d_r 64, d_v 128), one
    layer, a 2,048-token piece after 6,144 cached: attention 2 x 128 x (192 + 128) x (2,048 x 6,144 + 2,048 x 2,049 / 2)
    = 1,202,674,728,960 FLOPs, the expansion 2 x 512 x 128 x (128 + 128) x 6,144 = 206,158,430,208 more; its
    expanded keys and values, 128 x 256 x 6,144 x 2 B, written and read back. A first piece has none."""
    from kvcalc.estimator import precision
    from kvcalc.formulas.forward import attention_core_cost
    from kvcalc.specs.catalog import load_model

    model, p = load_model("deepseek-v3"), precision("fp8-block", "bf16")
    later = attention_core_cost(model, 1, 2048, 6144, None, False, p)
    first = attention_core_cost(model, 1, 2048, 0, None, False, p)
    assert later.flops == 1_202_674_728_960 + 206_158_430_208
    assert first.flops == 2 * 128 * 320 * 2048 * 2049 / 2
    assert later.act_bytes - first.act_bytes == 2 * 128 * 256 * 6144 * 2


@pytest.mark.parametrize("base, edit, says", [
    ("mi300x", lambda t: re.sub(r"(?m)^interconnect_peer_links = .*$", "interconnect_peer_links = 1024", t),
     "interconnect_peer_links: 1024 links to peers where scale_up_gpus joins 8 GPUs"),
    ("h100-pcie", lambda t: re.sub(r"(?m)^scale_up_gpus = .*\n", "", t),
     "topology: nvlink-bridge joins pairs of cards; expected scale_up_gpus"),
])
def test_33_links7_link_fields_that_contradict_each_other_are_refused(tmp_path, base, edit, says):
    """1,024 peer links on the 8-GPU MI300X board had split its Infinity Fabric to 0.875 GB/s a pair (an all-reduce
    of 50 ms at TP 2); an NVLink bridge with no pair size had carried TP 16 over one bridge."""
    spec = tmp_path / f"{base}.toml"
    spec.write_text(edit((Path(__file__).parents[1] / "hardware_specs" / f"{base}.toml").read_text()))
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-g", str(spec), "--tp", "2"])
    assert out.exit_code == 2 and says in out.output and "Traceback" not in out.output


def test_33_agree_f1_a_geforce_part_is_no_slower_than_the_same_die_at_a_small_kernel():
    """The RTX 4090's bf16 peak (165 TFLOPS, GeForce's fp32-accumulate rate) is half the L40S's on the same AD102; the
    L40S curves carried onto it had doubled every small kernel's compute term with it, and SGLang's fused MoE at batch
    1 (18.9 MFLOP a kernel) took 12.0 ms a step, where the L40S takes 5.5 and the RTX 3090, worse on every datasheet
    figure, 4.4: Qwen3-30B-A3B at TP 4 decoded in 17.1 ms on the 4090, 10.2 on the 3090. On one die a small kernel's
    compute term now takes what it takes on the source: F^(1-a) half^a / (peak e_max) is kept by half x (peak ratio)^(1/a),
    while a large kernel still runs at the target's peak."""
    from kvcalc import estimate
    from kvcalc.formulas.kernel_time import roof_terms
    from kvcalc.specs.catalog import bundled_profile, load_gpu

    def decode_ms(gpu):
        return estimate("qwen3-30b-a3b", gpu, tp=4, batch=1, context=1024, engine="sglang").decode.ms

    assert decode_ms("rtx-4090") <= min(decode_ms("rtx-3090"), decode_ms("l40s"))
    source, target = bundled_profile("l40s", "sglang").moe["bf16"], bundled_profile("rtx-4090", "sglang").moe["bf16"]
    l40s, rtx = load_gpu("l40s").peak_flops("bf16"), load_gpu("rtx-4090").peak_flops("bf16")
    small, large = 18.9e6, 1e15
    # within the saturated part F / (peak e_max), still the target's, here 0.2 % of the term
    assert roof_terms(target, small, 0, rtx, 1e12)[0] == pytest.approx(roof_terms(source, small, 0, l40s, 1e12)[0],
                                                                      rel=5e-3)
    assert roof_terms(target, large, 0, rtx, 1e12)[0] == pytest.approx(
        roof_terms(source, large, 0, l40s, 1e12)[0] * l40s / rtx, rel=1e-3)


def test_33_web5_the_command_line_says_each_warning_once():
    """plan had printed SGLang's vision-tower note 8 times on stderr (one per configuration that raised it), where the
    web app's X-Kvcalc-Warnings header carries it once."""
    out = CliRunner().invoke(app, ["plan", "-m", "gemma-3-27b", "-i", "1", "-o", "1000", "--request-rate", "0.5",
                                   "--max-gpus-per-replica", "2", "-f", "json"])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert lines and len(lines) == len(set(lines))


def test_33_links4_vllm_dispatches_experts_by_all_gather():
    """vLLM's default all2all backend is allgather_reducescatter (vllm/config/parallel.py ParallelConfig, 0.24): every
    token's hidden state goes to every GPU of the expert-parallel group and comes back by a reduce-scatter. By hand,
    Llama 4 Scout (d 5,120, top 1) at EP 8 over H100 NVLink (450 GB/s one way), 1,000 tokens a GPU in bf16: a top-k
    all-to-all sends 1,000 x 1 x 5,120 x 2 x 7 / 8 B a way, an all-gather 1,000 x 8 x 5,120 x 2 x 7 / 8: 8x the
    bytes. The roofline's stays the top-k all-to-all; SGLang's default (--moe-a2a-backend none) gathers too (the
    thirty-sixth audit, launch 2: test_36_launch2)."""
    from kvcalc.engines.links import dispatch_copies
    from kvcalc.formulas.parallel import alltoall_seconds
    from kvcalc.specs.catalog import bundled_profile, load_model

    scout = load_model("llama-4-scout")
    top_k = alltoall_seconds(scout, 1000, 2, 8, 900e9)
    vllm = bundled_profile("h100-sxm", "vllm")
    gather = alltoall_seconds(scout, 1000, 2, 8, 900e9, copies=dispatch_copies(vllm, 8))
    assert top_k == pytest.approx(2 * scout.moe_layers * 1000 * 1 * 5120 * 2 * 7 / 8 / 450e9, rel=1e-12)
    assert gather == pytest.approx(8 * top_k, rel=1e-12)
    assert dispatch_copies(bundled_profile("h100-sxm", "sglang"), 8) == 8 and dispatch_copies(None, 8) is None


def test_33_review3_a_vllm_request_carries_both_of_its_align_state_pages():
    """serve's request bytes had counted one recurrent state where vLLM 0.30's pool keeps two ('align'), so at the
    561 requests that pool holds it reported 39.3 GB needed of a 52.5 GB pool, and the simulator spread the second
    state over every token. By hand, Qwen3-Next-80B at TP 2, 4,000 + 96 tokens: its 12 full-attention layers' 2 KV
    heads of 256, K and V in bf16, one head a GPU: 12 x 1,024 B a token, x 4,096 = 50,331,648 B; a state of 36 Gated
    DeltaNet layers, (32 x 128 x 128 + 8,192 x 3) x 2 B over 2 GPUs = 19,759,104 B, twice."""
    r = _serve("-m", "qwen3-next-80b-a3b", "-g", "h200", "--tp", "2", "-e", "vllm", "-i", "4000", "--output-len", "96",
               "-n", "600")
    assert r["max_concurrency"] == 561
    assert r["kv_bytes_needed_per_gpu"] == 561 * (4096 * 12 * 1024 + 2 * 19_759_104)


def test_33_review8_every_step_timer_takes_vllms_expert_dispatch(monkeypatch):
    """estimate's evaluate and serve's StepTimer both pass vLLM's dispatch (engines/links.dispatch_copies): with
    the all-gather's ep copies taken away, Llama 4 Scout's prefill communication at EP 8 and serve's TPOT under vLLM
    both fall (test_33_links4 checks the formula)."""
    import kvcalc.estimator as estimator
    from kvcalc import estimate

    args = ["-m", "llama-4-scout", "-g", "h100-sxm", "-e", "vllm", "--ep", "8", "-i", "2000", "--output-len", "200",
            "-n", "64"]

    def measured():
        comm = estimate("llama-4-scout", "h100-sxm", ep=8, batch=64, context=2048, engine="vllm").prefill.allreduce_ms
        return comm, _serve(*args)["tpot_ms"]

    gathered = measured()
    monkeypatch.setattr(estimator, "dispatch_copies", lambda profile, ep: None)
    top_k = measured()
    assert gathered[0] > 4 * top_k[0] and gathered[1] > top_k[1]


@pytest.mark.parametrize("fixture, key", [("MiMo-7B", "num_nextn_predict_layers"),
                                          ("DeepSeek-V3", "num_nextn_predict_layers")])
def test_33_review4_every_mtp_family_reads_its_mtp_layers(tmp_path, fixture, key):
    """mtp_layers had been set in DeepSeek's reader only: a MiMo checkpoint with num_nextn_predict_layers 0 was timed
    with an MTP head at DeepSeek-V3's acceptance, with no word."""
    config = json.loads((Path(__file__).parent / "fixtures/hf" / fixture / "config.json").read_text())
    config.pop("quantization_config", None)
    config[key] = 0
    (tmp_path / "config.json").write_text(json.dumps(config))
    out = CliRunner().invoke(app, ["estimate", "-m", str(tmp_path), "--speculate", "mtp=1", "-f", "json"])
    assert "ships no multi-token-prediction layers" in out.output
