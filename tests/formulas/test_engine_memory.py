"""vLLM's start-up memory rule: closed forms, vLLM's own logged figures, and the ledger of public logs."""

import json
import math
import statistics
from pathlib import Path

import pytest

from kvcalc.formulas import engine_memory as em
from kvcalc.ledgers.memory import read_rows, score, summary
from kvcalc.planning.capacity import capacity
from kvcalc.specs.catalog import load_gpu, load_model

GiB = 1024**3
LEDGER = Path(__file__).parents[2] / "validation" / "engine-memory" / "vllm.csv"



def documentation(root) -> str:
    """The README and docs/validation.md, where the ledgers' figures are quoted."""
    return (root / "README.md").read_text() + (root / "docs" / "validation.md").read_text()

def test_forward_peak_matches_vllm_logged_activation_peaks_on_llama_3_1_8b():
    """vLLM issue #10517 (RTX 3090, no chunked prefill, T = max_model_len): peak_torch_memory minus the 14.9888 GB
    of weights is 17.06 - 14.99 = 2.07 GiB at 20,000 tokens and 17.98 - 14.99 = 2.99 GiB at 29,000."""
    m = load_model("llama-3.1-8b")
    for tokens, logged in ((20000, 2.07), (29000, 2.99)):
        closed = tokens * (3 * 4096 + 3 * 14336) * 2  # residual, normed input, MLP output; gate/up and SiLU product
        assert em.vllm_forward_peak_bytes(m, tokens, 2.0) == closed
        assert closed / GiB == pytest.approx(logged, rel=0.01)


def test_sampler_peak_is_the_logged_peak_at_tp_1_and_2():
    """PR #10511 logs 1.26 GiB of activation peak for Llama-3-8B at TP 1 and TP 2 alike (256 seqs, 128,256 vocab):
    the sampler over the gathered vocab, not the TP-split forward pass. (This V0 row sets the 41.21 bytes per logit:
    1.26 x 2^30 / (256 x 128,256) = 41.205.)"""
    m = load_model("llama-3-8b")
    assert 1.26 * GiB / (256 * 128256) == pytest.approx(41.21, abs=0.005)
    for tp in (1, 2):
        peak = em.vllm_profile_peak_bytes(m, 8192, 256, 2.0, tp, runner="v0", version=(0, 6))
        assert peak == 256 * 128256 * 41.21
        assert peak / GiB == pytest.approx(1.26, abs=0.01)


def test_vllm_serve_defaults_follow_get_batch_defaults():
    assert em.vllm_default_batching(79.22, "h100-sxm") == (8192, 1024)
    assert em.vllm_default_batching(79.15, "a100-sxm-80gb") == (2048, 256)  # A100s keep the small defaults
    assert em.vllm_default_batching(44.4, "l40s") == (2048, 256)
    # vLLM 0.28 (PR #51726): 16384 batched tokens on GPUs showing 160 GiB or more, such as a B200; not before
    assert em.vllm_default_batching(178.4, "b200", (0, 28)) == (16384, 1024)
    assert em.vllm_default_batching(178.4, "b200", (0, 27)) == (8192, 1024)
    assert em.vllm_default_batching(139.8, "h200", (0, 30)) == (8192, 1024)


def test_non_torch_memory_by_link_and_by_whether_nccl_counts():
    assert em.vllm_non_torch_bytes(1, nvlink=True) == pytest.approx(0.16 * GiB)
    assert em.vllm_non_torch_bytes(2, nvlink=True) == pytest.approx((0.16 + 1.79) * GiB)  # PR #10511's V0 log
    assert em.vllm_non_torch_bytes(2, nvlink=False) == pytest.approx(0.25 * GiB)  # issue #13061's RTX 4090s
    # from vLLM 0.11 NCCL's start-up buffers sit outside the budget: llm-d's 0.11.0 logs show 0.13 GiB at TP 1 and
    # 0.54-0.55 GiB at TP 2 (the band's fit: 0.13 and 0.54 - 0.13 = 0.41 more)
    assert em.vllm_non_torch_bytes(2, nvlink=True, nccl_in_budget=False) == pytest.approx(0.54 * GiB)
    assert em.vllm_non_torch_bytes(2, nvlink=True, band="0.11") == pytest.approx(0.54 * GiB)
    # from vLLM 0.17 (llm-d-planner's 0.19.0 logs on H100s): 0.25 GiB at TP 1, 2.07 at TP 2 and 2.13 at TP 4: the
    # band's fit, 0.25, plus FlashInfer's fusion workspace (3 x 512 MiB = 1.5 GiB) and the median of 2.07 - 0.25 - 1.5
    # and 2.13 - 0.25 - 1.5 = 0.35 more; over PCIe still the 0.09 GiB of issue #13061, and no workspace
    workspace = em.vllm_fusion_workspace_bytes("9.0", "nvswitch", (0, 19), 4)
    assert workspace == 3 * 512 * 1024**2 == 1.5 * GiB
    assert em.vllm_non_torch_bytes(1, nvlink=True, band="0.17") == pytest.approx(0.25 * GiB)
    assert em.vllm_non_torch_bytes(4, nvlink=True, band="0.17", fusion_workspace=workspace) == pytest.approx(2.10 * GiB)
    assert em.vllm_non_torch_bytes(2, nvlink=False, band="0.17") == pytest.approx(0.34 * GiB)
    assert [em.vllm_non_torch_band(v) for v in ((0, 10), (0, 11), (0, 16), (0, 17), (0, 30))] == [
        "pre-0.11", "0.11", "0.11", "0.17", "0.17"]


def test_flashinfer_fusion_workspace_only_where_vllm_builds_it():
    """vLLM's all-reduce + RMSNorm fusion pass (on by default from 0.17, PR #34299) runs for TP > 1 on compute
    capability 9.0 / 10.x with pp = dp = 1, and needs NVLink multicast (an NVSwitch system, PR #35085)."""
    f = em.vllm_fusion_workspace_bytes
    assert f("9.0", "nvswitch", (0, 17), 2) == f("10.0", "nvswitch", (0, 30), 8) == 1.5 * GiB
    assert f("9.0", "nvswitch", (0, 16), 2) == 0  # before the pass was on by default
    assert f("9.0", "nvswitch", (0, 19), 1) == 0  # one GPU: no all-reduce
    assert f("9.0", "nvswitch", (0, 19), 4, pp=2) == f("9.0", "nvswitch", (0, 19), 4, data_parallel=2) == 0
    assert f("9.0", "pcie", (0, 19), 2) == f("8.0", "nvswitch", (0, 19), 8) == 0  # no multicast; SM80
    # FlashInfer's fusion supports world sizes 2, 4 and 8 only (vllm/config/compilation.py FI_SUPPORTED_WORLD_SIZES)
    assert f("9.0", "nvswitch", (0, 19), 16) == f("10.0", "nvswitch", (0, 19), 6) == 0


def test_cublas_workspace_follows_pytorchs_default():
    """aten/src/ATen/cuda/CublasHandlePool.cpp parseChosenWorkspaceSize: ':4096:8' (32 MiB) on compute capability 9-12,
    else ':4096:2:16:8' = (4096 x 2 + 16 x 8) KiB; ROCm 128 MiB on gfx94x/gfx95x, else 32 MiB."""
    assert em.cublas_workspace_bytes("9.0") == em.cublas_workspace_bytes("12.0") == 32 * 1024**2
    assert em.cublas_workspace_bytes("8.0") == em.cublas_workspace_bytes("8.9") == (4096 * 2 + 16 * 8) * 1024
    assert em.cublas_workspace_bytes("gfx942", "AMD") == 128 * 1024**2
    assert em.cublas_workspace_bytes("gfx90a", "AMD") == 32 * 1024**2


def test_sliding_window_layers_hold_the_window_plus_one_chunk_and_a_block():
    """Gemma-2-9B: 42 layers, every second one global, window 4096: two groups of 21 layers. A request of 8192 tokens
    with 2048-token chunks takes 8192 / 16 = 512 blocks in the full group and ceil((4095 + 2048) / 16) + 1 = 385 in
    the sliding one (the window need not start at a block edge). With 8192-token chunks (vllm serve on an H100) the
    windowed layers hold all 8192 tokens, plus the block: nothing saved."""
    m = load_model("gemma-2-9b")
    layout = em.vllm_layout(m, 2.0)
    assert (layout.block_tokens, layout.group_layers, layout.groups) == (16, 21, {"full": 1, "window": 1})
    assert layout.page_bytes == 16 * 2 * 8 * 256 * 2
    assert em.vllm_request_blocks(m, layout, 8192, 2048) == 512 + 385
    assert em.vllm_request_blocks(m, layout, 8192, 8192) == 512 + 513


def test_gemma_3_pads_its_sliding_layers_to_groups_of_ten_as_a_vllm_log_shows():
    """Gemma-3-27B: 52 sliding and 10 full layers, so groups of 10: 6 sliding groups (8 layers of padding, vLLM's
    'Add 8 padding layers' warning) and 1 full. A public vLLM 0.11.0 start-up log of gemma-3-27b-it (ROCm,
    max_model_len 4096, 8192-token chunks) prints num_gpu_blocks 89,994, 'GPU KV cache size: 205,696 tokens'
    (89,994 // 7 groups x 16) and 'Maximum concurrency for 4,096 tokens per request: 50.05x' (89,994 / (256 +
    6 x 257) blocks), after 'Available KV cache memory: 109.86 GiB' (10 layers x 16 tokens x 8 KiB a block)."""
    m = load_model("gemma-3-27b")
    layout = em.vllm_layout(m, 2.0)
    assert (layout.group_layers, layout.groups) == (10, {"full": 1, "window": 6})
    assert layout.block_bytes == 10 * 16 * (2 * 16 * 128 * 2)
    assert em.vllm_request_blocks(m, layout, 4096, 8192) == 256 + 6 * 257
    available = 89_994 * layout.block_bytes
    assert em.vllm_kv_tokens(m, available, 2.0) == 205_696
    assert round(em.vllm_max_concurrency(m, available, 4096, 8192, 2.0), 2) == 50.05
    assert available / GiB == pytest.approx(109.86, abs=0.005)


def test_qwen3_next_pages_its_state_with_attention_blocks_as_a_vllm_log_shows():
    """Qwen3-Next-80B at TP 2, fp8 KV: an attention layer holds 1 KV head x 256 x 2 x 1 B = 512 B a token; a Gated
    DeltaNet layer's state (16 of 32 value heads x 128 x 128 and 3 x 4,096 conv channels, in the model's 2-byte
    dtype) is 548,864 B, so the block grows to 16 x ceil(548,864 / (16 x 512)) = 1,072 tokens. 12 attention and 36
    linear layers: 4 groups of 12. vLLM issue #26646 (vLLM 0.11, max_model_len 215,040) logs 'GPU KV cache size:
    90,048 tokens' = 84 x 1,072 and 'Maximum concurrency ... 1.66x' = 339 / (ceil(215,040 / 1,072) + 3)."""
    m = load_model("qwen3-next-80b-a3b")
    layout = em.vllm_layout(m, 1.0, tp=2)
    assert (layout.block_tokens, layout.page_bytes) == (1072, (16 * 128 * 128 + 3 * 4096) * 2)
    assert (layout.group_layers, layout.groups) == (12, {"full": 1, "state": 3})
    available = 339 * layout.block_bytes
    assert em.vllm_kv_tokens(m, available, 1.0, tp=2) == 90_048
    assert round(em.vllm_max_concurrency(m, available, 215_040, 2048, 1.0, tp=2), 2) == 1.66


def test_kv_tokens_are_whole_blocks():
    m = load_model("llama-3-8b")  # 32 layers x 8 KV heads x 128 x 2 x 2 B = 128 KiB per token
    page = 16 * 128 * 1024
    assert em.vllm_kv_tokens(m, 10 * page + page - 1, 2.0) == 160
    assert em.vllm_kv_tokens(m, -1.0, 2.0) == 0
    assert em.vllm_max_concurrency(m, 10 * page, 80, 2048, 2.0) == 2.0  # 160 tokens / 80 per request


FOLDER = LEDGER.parent


def _pct(median, worst) -> str:
    return f"median {median} %, worst {worst} %"


def test_memory_ledger_figures_in_docs_per_engine_held_out_in_band_and_generic():
    """docs/validation.md "Memory ledger" quotes the folder's summary: per engine, held-out and fit rows apart, scored
    leave-one-source-out, in-band (constants fitted on every fit row) and kvcalc's generic rule beside; recomputed
    here. The issue's targets (3 % median, 10 % worst on vLLM's held-out concurrency) are reached held out on the median, not on the worst row, and
    the docs say so; these figures are what the ledger gives, not targets."""
    results = score(read_rows(FOLDER))
    docs = (Path(__file__).parents[2] / "docs" / "validation.md").read_text()
    section = " ".join(docs[docs.index("## Memory ledger"):docs.index("## Serving ledgers")].split())
    lines = {(r["engine"], r["rows"]): r for r in summary(results)}
    engines = [r["engine"] for r in results]
    assert len(results) == 57 and (engines.count("vllm"), engines.count("sglang"), engines.count("trtllm")) == (45, 7, 5)
    from kvcalc.ledgers.memory import source_of

    assert len({source_of(r["source"]) for r in results}) == 24
    assert len({source_of(r["source"]) for r in results if r["engine"] == "vllm"}) == 15
    assert "57 public start-up logs from 24 sources" in section and "45 of vLLM" in section
    for role in ("held-out", "fit"):
        line = lines[("vllm", role)]
        row = (f"| {role} | {line['n']} | {_pct(line['median_abs_error_pct'], line['worst_abs_error_pct'])} | "
               f"{_pct(line['in_band_median_abs_error_pct'], line['in_band_worst_abs_error_pct'])} | "
               f"{_pct(line['generic_median_abs_error_pct'], line['generic_worst_abs_error_pct'])} |")
        assert row in section, row
    held = lines[("vllm", "held-out")]
    assert f"**vLLM, held out: {_pct(held['median_abs_error_pct'], held['worst_abs_error_pct'])}**" in section
    assert f"**in-band {_pct(held['in_band_median_abs_error_pct'], held['in_band_worst_abs_error_pct'])}**" in section
    assert f"**generic {_pct(held['generic_median_abs_error_pct'], held['generic_worst_abs_error_pct'])}**" in section
    # the docs: both targets (3 % median, 10 % worst) reached on the pool
    assert held["median_abs_error_pct"] <= 3 and held["worst_abs_error_pct"] <= 10
    assert "within the issue's 3 % and 10 % targets on the pool" in section
    assert (f"**weights within 2 %: {held['weights_within_2_pct']} held-out, "
            f"{lines[('vllm', 'fit')]['weights_within_2_pct']}") in section
    for engine, name in (("sglang", "SGLang"), ("trtllm", "TensorRT-LLM")):
        line = lines[(engine, "held-out")]
        assert f"**{name}: {_pct(line['median_abs_error_pct'], line['worst_abs_error_pct'])}**" in section
        assert f"{line['n']} rows scored" in section and lines[(engine, "excluded")]["n"] == {"sglang": 7, "trtllm": 5}[engine] - line["n"]
    # the held-out rows split by whether their band keeps another source's fit rows
    vllm_held = [r for r in results if r["engine"] == "vllm" and r["role"] == "held-out"]
    for refitted, words in ((True, "eighteen"), (False, "eighteen")):
        errors = [abs(r["error_pct"]) for r in vllm_held if bool(r["fallback"]) is not refitted]
        assert (f"The {words} held-out rows" in section or f"the {words} whose band" in section)
        assert f"{_pct(round(statistics.median(errors), 1), round(max(errors), 1))}" in section
    high = sum(r["in_sample_error_pct"] > 0 for r in vllm_held)
    assert f"({high} of {len(vllm_held)} high)" in section
    new_band = [r for r in results if r["engine"] == "vllm" and r["vllm"].startswith("0.19.0")
                and source_of(r["source"]) == "llm-d-incubation/llm-d-planner"]
    low = sum(r["error_pct"] < 0 for r in new_band)
    assert f"{low} of the {len(new_band)} 0.19.0 rows of llm-d-planner come out low" in section


def test_band_constants_are_the_fit_of_the_ledgers_fit_rows():
    """Each band constant of formulas/engine_memory.py is the median of what that band's fit rows log, by hand:
    V0 1.26 GiB / (256 x 128,256) = 41.21; GPUModelRunner 4.76 GiB / (1024 x 128,256) = 38.92 (0.11.0; the median
    with Qwen3-32B's 38.92 and a 0.10.2 log's 5.58 GiB / (1024 x 151,936) = 38.51); non-torch 0.13 at TP 1 and
    0.54 - 0.13 = 0.41 at TP 2 (0.11.0), 0.25 and the median of 2.07 - 0.25 - 1.5 and 2.13 - 0.25 - 1.5, 0.35 (0.19.0,
    less FlashInfer's 1.5 GiB fusion workspace). GPUModelRunner's sampler from 0.17 is a closed form: not fitted."""
    from kvcalc.ledgers.memory import fit_constants

    fitted = fit_constants(read_rows(FOLDER))
    assert fitted["fallback"] == []
    by_hand = {"v0": 1.26 * GiB / (256 * 128256),  # PR #10511 at TP 1 and 2 alike
               # llm-d's 0.11.0 Llama-3.1-8B (4.76 GiB) and Qwen3-32B at TP 2 (5.64 GiB over 1024 x 151,936), and
               # sungwon-chae/arxiv_confi's vLLM 0.10.2 Qwen3-Next-80B-A3B at TP 2 on H200s: 'Actual usage is 74.28 GiB
               # for weight, 5.58 GiB for peak activation' over vllm serve's 1024 rows x 151,936 (issue 23)
               "v1": statistics.median([4.76 * GiB / (1024 * 128256), 5.64 * GiB / (1024 * 151936),
                                        5.58 * GiB / (1024 * 151936)])}
    for band, value in by_hand.items():
        assert fitted["sampler"][band] == pytest.approx(value)
        assert em.SAMPLER_BYTES_PER_LOGIT[band] == pytest.approx(value, abs=0.005)
    assert fitted["non_torch"]["0.11"] == pytest.approx((0.13, 0.41))
    assert fitted["non_torch"]["0.17"] == pytest.approx((0.25, statistics.median([2.07 - 0.25 - 1.5,
                                                                               2.13 - 0.25 - 1.5])))
    assert set(fitted["sampler"]) == {"v0", "v1"}
    for band, figures in fitted["non_torch"].items():
        assert em.NON_TORCH_BANDS_GiB[band] == pytest.approx(figures, abs=0.005)
    assert [em.vllm_sampler_band("v1", v) for v in ((0, 8), (0, 16), (0, 17), (0, 24))] == [
        "v1", "v1", "v1-0.17", "v1-0.17"]


def test_leave_one_source_out_refits_without_the_source_and_falls_back_to_the_nearest_band():
    from kvcalc.ledgers.memory import fit_constants, source_of

    assert source_of("https://github.com/vllm-project/vllm/issues/10517") == "vllm-project/vllm#10517"
    assert source_of("https://github.com/NVIDIA/TensorRT-LLM/issues/4275#issuecomment-2941155249") == \
        "nvidia/tensorrt-llm#4275"
    assert source_of("https://github.com/llm-d/llm-d-benchmark/blob/87ab/config_explorer/x.md") == \
        "llm-d/llm-d-benchmark"
    assert source_of("https://myoceane.fr/index.php/ai-vllm-a100-gemma-4/") == "myoceane.fr"
    rows = read_rows(FOLDER)
    # without llm-d-planner the 0.17 band has no fit row: its non-torch figures are the 0.11 band's (the sampler and
    # the fusion workspace are closed forms, which no source sets)
    without = fit_constants(rows, exclude_source="llm-d-incubation/llm-d-planner")
    assert without["non_torch"]["0.17"] == pytest.approx((0.13, 0.41))
    assert without["fallback"] == ["non_torch_tp1@0.17<-0.11", "non_torch_nvlink@0.17<-0.11"]
    # without llm-d the 0.11 band keeps a sampler of its own: sungwon-chae/arxiv_confi's vLLM 0.10.2 log, 5.58 GiB over
    # 1024 x 151,936 logits (issue 23); only its non-torch figures, logged by llm-d alone, fall back to the 0.17 band
    without = fit_constants(rows, exclude_source="llm-d/llm-d-benchmark")
    assert without["sampler"]["v1"] == pytest.approx(5.58 * GiB / (1024 * 151936))  # 38.51 B a logit
    assert "sampler@v1<-v0" not in without["fallback"] and "non_torch_tp1@0.11<-0.17" in without["fallback"]
    # and a source that sets nothing changes nothing
    assert fit_constants(rows, exclude_source="myoceane.fr") == fit_constants(rows)
    results = score(rows)
    planner = [r for r in results if source_of(r["source"]) == "llm-d-incubation/llm-d-planner"]
    assert all("non_torch_tp1@0.17<-0.11" in r["fallback"] for r in planner)
    assert all(r["fallback"] == "" for r in results if source_of(r["source"]) == "dennislee22/vllm-benchmarking")


def test_qwen3_next_at_tp_2_on_h200_under_vllm_0_10_2_against_its_log():
    """The 0.11 band's second source (issue 23): Qwen3-Next-80B-A3B-Instruct at TP 2 on two H200s under vLLM 0.10.2,
    sungwon-chae/arxiv_confi tmp_memo.md at 4a05207: 'Model loading took 74.2812 GiB', 'Actual usage is 74.28 GiB for
    weight, 5.58 GiB for peak activation', 'GPU KV cache size: 973,760 tokens', 'Maximum concurrency for 262,144 tokens
    per request: 14.77x'. The peak is GPUModelRunner's sort sampler over vllm serve's 1024 rows of 151,936 logits,
    1024 x 151,936 x 38.92 B = 5.64 GiB (1.1 % over the log), far above the forward pass: 8192 tokens x (3 x 2048 +
    10 x (3 x 512 / 2 + 2048)) x 2 B = 0.52 GiB."""
    row = next(r for r in read_rows(FOLDER) if r["model"] == "qwen3-next-80b-a3b")
    assert row["role"] == "fit" and row["vllm"].startswith("0.10.2") and row["sampler"] == ""
    forward = em.vllm_forward_peak_bytes(load_model("qwen3-next-80b-a3b"), 8192, 2, tp=2)
    assert forward == 8192 * (3 * 2048 + 10 * (3 * 512 / 2 + 2048)) * 2
    result = next(r for r in score(read_rows(FOLDER)) if r["model"] == "qwen3-next-80b-a3b")
    assert result["profile_peak_GiB"] == pytest.approx(1024 * 151936 * 38.92 / GiB, rel=1e-3)
    assert result["profile_peak_GiB"] == pytest.approx(5.58, rel=0.012)
    assert result["weights_GiB"] == pytest.approx(74.2812, rel=1e-3)
    assert abs(result["error_pct"]) < 2 and result["max_concurrency"] == pytest.approx(14.77, rel=0.02)


def test_llama_3_1_8b_at_tp_2_under_vllm_0_19_against_its_log():
    """llm-d-planner's vLLM 0.19.0 log (a fit row): Llama-3.1-8B-Instruct at TP 2 on H100s (total_memory 79.19 GiB,
    --gpu-memory-utilization 0.95, max_model_len 8192), 'Available KV cache memory: 63.76 GiB', 'GPU KV cache size:
    1,044,688 tokens', 'Maximum concurrency for 8,192 tokens per request: 127.53x'. By hand: 0.95 x 79.19 - weights
    (7.51 GiB logged) - the sampler's run (1.885 GiB; the log: 1.89) - non-torch 0.25 + 0.35 + FlashInfer's 1.5 GiB
    fusion workspace; a page of 16 tokens is 32 layers x 4 KV heads a GPU x 128 x 2 x 2 B x 16 = 64 KiB x 16. The
    sampler from vLLM's source (formulas/engine_memory.py TRITON_TOPK_MIN_ROWS): bf16 logits, their fp32 copy, fp32
    probabilities and draws over 1024 x 128,256 (14 B each), the Triton buffer of 132 (the H100's SMs) x 128,256 fp32,
    the dummy forward's 8192 x 4096 bf16 hidden states and two 1024-row copies, and PyTorch's 32 MiB cuBLAS workspace."""
    plan = capacity("llama-3.1-8b", "h100-sxm", context=8192, gpus=2, engine="vllm", memory_utilization=0.95,
                    vllm_version="0.19.0")["engine_memory"]
    sampler = 1024 * 128256 * 14 + 132 * 128256 * 4 + 8192 * 4096 * 2 + 2 * 1024 * 4096 * 2 + 32 * 1024**2
    assert plan["profile_peak_bytes"] == sampler == 2_023_837_696
    assert sampler / GiB == pytest.approx(1.89, abs=0.006)
    assert plan["fusion_workspace_bytes"] == 1.5 * GiB
    assert plan["non_torch_bytes"] == pytest.approx(2.10 * GiB)
    by_hand = 0.95 * 79.22 * GiB - plan["weights_bytes_per_gpu"] - sampler - 2.10 * GiB
    assert plan["available_kv_bytes"] == pytest.approx(by_hand)
    assert plan["weights_bytes_per_gpu"] / GiB == pytest.approx(7.51, rel=0.005)
    logged = 63.76 + 0.95 * (79.22 - 79.19)  # the spec's 79.22 GiB against the log's 79.19
    assert plan["available_kv_bytes"] / GiB == pytest.approx(logged, rel=0.005)
    assert plan["kv_tokens"] == 16 * math.floor(by_hand / (16 * 32 * 4 * 128 * 2 * 2))


def test_sglang_default_mem_fraction_by_tp_as_v0_4_sets_it():
    assert [em.sglang_default_mem_fraction(tp) for tp in (1, 2, 4, 8, 16)] == [0.88, 0.87, 0.85, 0.81, 0.79]


def test_excluded_rows_keep_their_reason_and_are_not_scored():
    results = score(read_rows(FOLDER))
    excluded = [r for r in results if r["role"] == "excluded"]
    assert len(excluded) == 5 and all(len(r["excluded"]) > 40 for r in excluded)
    assert all(r["error_pct"] is None for r in excluded)
    assert all(not r.get("excluded") for r in results if r["role"] != "excluded")


def test_cli_scores_the_folder_as_json_without_nan(tmp_path):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(FOLDER), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    out = json.loads(r.stdout)
    assert len(out["rows"]) == 57 and {s["engine"] for s in out["summary"]} == {"vllm", "sglang", "trtllm"}
    bad = tmp_path / "bad.csv"
    bad.write_text(LEDGER.read_text().replace(",fit,v0,", ",score,v0,", 1))
    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(bad)])
    assert r.exit_code == 2 and "role expected one of fit, held-out, excluded" in r.output
    empty = tmp_path / "none"
    empty.mkdir()
    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(empty)])
    assert r.exit_code == 2 and "no *.csv ledger" in r.output and "Traceback" not in r.output


def test_model_runner_v2_profiles_the_sampler_without_its_sort():
    """Model Runner V2 profiles the sampler without top-k/top-p: the fp32 logits, 4 bytes each, against 38.92 under
    GPUModelRunner and 41 under the V0 worker; from vLLM 0.29 its sampling is sharded over TP."""
    models = ("qwen3-32b", "llama-3.1-8b", "mixtral-8x7b", "qwen3-next-80b-a3b", "gpt-oss-20b")
    by_version = {(0, 6): ["v0"] * 5, (0, 11): ["v1"] * 5,
                  (0, 27): ["v2", "v2", "v1", "v1", "v1"],  # v0.25 made V2 the default for dense models (PR #44443)
                  (0, 29): ["v2"] * 5}  # and v0.29 for every model (PR #53183)
    for version, runners in by_version.items():
        assert [em.vllm_model_runner(load_model(n), version) for n in models] == runners, version
    m = load_model("qwen3-0.6b")
    assert em.vllm_sampler_peak_bytes(m, 1024, "v2", version=(0, 27)) == 1024 * 151936 * 4
    assert em.vllm_sampler_peak_bytes(m, 1024, "v2", tp=2, version=(0, 29)) == 1024 * 151936 * 4 / 2
    assert em.vllm_sampler_peak_bytes(m, 1024, "v2", tp=2, version=(0, 27)) == 1024 * 151936 * 4
    assert em.vllm_sampler_peak_bytes(m, 1024, "v1", version=(0, 11)) == 1024 * 151936 * 38.92
    # the figure's source: llm-d's vLLM 0.11.0 log of Llama-3.1-8B, 'activation peak 4.76 GiB' at 1024 seqs
    llama = load_model("llama-3.1-8b")
    assert em.vllm_sampler_peak_bytes(llama, 1024, "v1", version=(0, 11)) / GiB == pytest.approx(4.76, abs=0.005)
    # from 0.17 GPUModelRunner's Triton top-k/top-p works in place: 14 B a bf16 logit, the kernel's buffer of
    # min(next_pow2(min(SMs, R)), SMs) vocab rows, the dummy forward's hidden states (T x d) and two R-row copies, and
    # the cuBLAS workspace; llama on an H100 at T = 8192: 1.885 GiB, where llm-d-planner's vLLM 0.19.0 logs say 1.89
    assert em.vllm_sampler_peak_bytes(m, 1024, "v1", version=(0, 19)) == (1024 * 151936 * 14 + 132 * 151936 * 4
                                                                          + 2 * 1024 * 1024 * 2)
    at_h100 = dict(tokens=8192, b_model=2.0, compute_units=132, cublas_bytes=32 * 1024**2)
    assert em.vllm_sampler_peak_bytes(llama, 1024, "v1", version=(0, 19), **at_h100) / GiB == pytest.approx(
        1.89, abs=0.006)
    # an A100 (108 SMs) and 100 rows: a buffer of min(next_pow2(100), 108) = 108 rows; fp32 model: no fp32 copy
    assert em.vllm_triton_sampler_peak_bytes(llama, 100, 0, 4.0, 108) == (100 * 128256 * 12 + 108 * 128256 * 4
                                                                          + 2 * 100 * 4096 * 4)
    # below 8 rows vLLM sorts in PyTorch, as before 0.17
    assert em.vllm_sampler_peak_bytes(llama, 4, "v1", version=(0, 19)) == 4 * 128256 * 38.92
    assert em.vllm_sampler_peak_bytes(m, 1024, "v0") == 1024 * 151936 * 41.21
    # Qwen3-0.6B, 8192 tokens: the forward pass (3 x 1024 + 3 x 3072 a token, 2 bytes) is 0.19 GiB, under the
    # logits' 0.58 GiB, so V2's peak is the logits; V1's the sort's 5.5 GiB.
    assert em.vllm_profile_peak_bytes(m, 8192, 1024, 2.0, runner="v2") == 1024 * 151936 * 4
    assert em.vllm_forward_peak_bytes(m, 8192, 2.0) == 8192 * (3 * 1024 + 3 * 3072) * 2


def test_llama_70b_fp8_on_two_h100s_under_vllm_0_11_against_its_log():
    """llm-d's vLLM 0.11.0 log (held out): RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic at TP 2 on H100s (79.18 GiB
    visible, 0.9), 'weights 33.88, activation peak 4.84, non-torch 0.55 GiB' a GPU, 32.00 GiB available. By hand:
    the sampler 1024 x 128,256 x 38.92 B = 4.76 GiB (GPUModelRunner), non-torch 0.13 + 0.41 GiB (NCCL's start-up
    buffers outside the budget since 0.11; the 0.11 band's fit). Under 0.10's rule they count, 1.95 GiB, and the
    pool is 4.4 % low."""
    def pool(version):
        return capacity("llama-3.1-70b", "h100-sxm", context=16000, gpus=2, engine="vllm", weight_dtype="fp8",
                        max_num_seqs=1024, vllm_version=version)["engine_memory"]

    new, old = pool("0.11.0"), pool("0.10")
    sampler = 1024 * 128256 * 38.92
    assert new["model_runner"] == "v1" and new["profile_peak_bytes"] == pytest.approx(sampler)
    assert new["non_torch_bytes"] == pytest.approx(0.54 * GiB) and old["non_torch_bytes"] == pytest.approx(1.95 * GiB)
    # weights by hand, over TP 2: 80 layers of fp8 linears (q, k, v, o: 8192 x (8192 + 2 x 1024 + 8192); gate, up,
    # down: 3 x 8192 x 28,672) at 1 byte and the bf16 embedding and lm_head (2 x 128,256 x 8192) split in two; the
    # bf16 norms (161 x 8192) whole on both GPUs, and vLLM's RoPE table (131,072 positions x 128 x 2 B) beside them
    linears = 80 * (8192 * (8192 + 2 * 1024 + 8192) + 3 * 8192 * 28672)
    weights = (linears * 1 + 2 * 128256 * 8192 * 2) / 2 + 161 * 8192 * 2 + 131072 * 128 * 2
    assert new["weights_bytes_per_gpu"] == pytest.approx(weights)
    assert weights / GiB == pytest.approx(33.88, abs=0.02)  # as logged (the rest: the checkpoint's fp8 scales)
    by_hand = 0.9 * 79.22 * GiB - weights - sampler - 0.54 * GiB  # the spec's 79.22 GiB
    assert new["available_kv_bytes"] == pytest.approx(by_hand)
    logged = 32.00 + 0.9 * (79.22 - 79.18)  # the log's device showed 79.18 GiB
    assert new["available_kv_bytes"] / GiB == pytest.approx(logged, rel=0.01)
    assert old["available_kv_bytes"] / GiB == pytest.approx(logged - 1.41, rel=0.01)


def test_qwen3_32b_on_two_rtx_pro_6000s_under_vllm_0_27_against_its_log():
    """kubesimplify's 'Running a single LLM across two GPUs with vLLM' (vLLM 0.27.1, Model Runner V2, 95.01 GiB
    visible, PCIe, --gpu-memory-utilization 0.426, --max-model-len 32768): weights 30.59 GiB a worker, 'Available KV
    cache memory: 8.22 GiB', 'GPU KV cache size: 67,296 tokens', 'Maximum concurrency ... 2.05x'. By hand: 0.426 x
    95.01 GiB - 61.02 / 2 GiB of weights - the forward pass of 8192 tokens at TP 2 (8192 x (3 x 5120 + 3 x 25600 / 2)
    x 2 B = 0.82 GiB) - 0.34 GiB non-torch (the 0.17 band's 0.25 at TP 1 and PCIe's 0.09) = 8.80 GiB, 7 % high: what
    else vLLM 0.27 took out (its CUDA-graph accounting, say) kvcalc does not model. GPUModelRunner's sampler of that
    band (1024 x 151,936 x 14 B, 188 (the card's SMs) x 151,936 x 4 B of Triton buffer, 8192 x 5120 x 2 B of hidden
    states and two 1024-row copies, 32 MiB of cuBLAS workspace: 2.26 GiB) would leave 7.35 GiB."""
    plan = capacity("qwen3-32b", "rtx-pro-6000", context=32768, gpus=2, engine="vllm", memory_utilization=0.426,
                    vllm_version="0.27.1")
    vllm = plan["engine_memory"]
    assert vllm["model_runner"] == "v2" and (vllm["max_num_batched_tokens"], vllm["max_num_seqs"]) == (8192, 1024)
    assert vllm["profile_peak_bytes"] == 8192 * (3 * 5120 + 3 * 25600 // 2) * 2
    # Qwen3-32B's parameters (counted in test_params), bf16, over TP 2, but for the norms each GPU keeps whole:
    # 64 layers' two norms of 5120 and per-head q and k norms of 128, and the final norm
    norms = (64 * 2 + 1) * 5120 + 64 * 2 * 128
    weights = (32_762_123_264 - norms) * 2 / 2 + norms * 2 + 40960 * 128 * 2  # and the RoPE table
    by_hand = 0.426 * 95.01 * GiB - weights - 8192 * 53760 * 2 - 0.34 * GiB
    assert vllm["weights_bytes_per_gpu"] == pytest.approx(weights)
    assert vllm["available_kv_bytes"] == pytest.approx(by_hand)
    assert by_hand / GiB == pytest.approx(8.80, abs=0.01)
    assert vllm["available_kv_bytes"] / GiB == pytest.approx(8.22, rel=0.10)
    assert vllm["kv_tokens"] == pytest.approx(67296, rel=0.10)
    assert vllm["max_concurrency"] == pytest.approx(2.05, rel=0.10)
    v1 = capacity("qwen3-32b", "rtx-pro-6000", context=32768, gpus=2, engine="vllm", memory_utilization=0.426,
                  vllm_runner="v1", vllm_version="0.27.1")["engine_memory"]
    sampler = 1024 * 151936 * 14 + 188 * 151936 * 4 + 8192 * 5120 * 2 + 2 * 1024 * 5120 * 2 + 32 * 1024**2
    assert v1["available_kv_bytes"] / GiB == pytest.approx((by_hand - sampler + 8192 * 53760 * 2) / GiB)
    assert v1["available_kv_bytes"] / GiB == pytest.approx(7.35, abs=0.01)


def test_vllm_splits_pipeline_layers_as_its_logs_print():
    """get_pp_indices: L // pp a stage, the remainder one each to the stages before the last. Logged: 'Hidden layers
    were unevenly partitioned: [31,30]' (DeepSeek-V3, 61 layers, PP 2) and 21 / 22 / 21 (64 layers, PP 3)."""
    assert em.vllm_pipeline_layers(61, 2) == [31, 30]
    assert em.vllm_pipeline_layers(64, 3) == [21, 22, 21]
    assert em.vllm_pipeline_layers(27, 2) == [14, 13]
    assert em.vllm_pipeline_layers(32, 4) == [8, 8, 8, 8]


def test_deepseek_v2_lite_tp2_pp2_on_l4s_binds_on_its_first_stage_as_logged():
    """vLLM PR #20665: DeepSeek-V2-Lite, --tensor-parallel-size 2 --pipeline-parallel-size 2 on L4s, max_model_len
    1024: the first stage's workers log 'Available KV cache memory: 12.13 GiB', the last's 11.33; 'GPU KV cache size:
    807,792 tokens' and 788.86x follow from the first (14 layers of 576-element MLA latents) binding over the last
    (13 layers, but the lm_head and the sampler). By hand for the first stage: 0.9 x 22.04 GiB - its weights / 2
    - the MoE forward of 2048 tokens (2048 x (3 x 2048 + 6 x (3 x 1408 / 2 + 2048)) x 2 B) - 0.34 GiB non-torch over
    PCIe (today's release band: 0.25 at TP 1 and PCIe's 0.09). Its weights, from config.json: the embedding (102,400 x 2048), 14 layers' MLA attention and norms
    (13,767,168 each: the 15,287,051,776 layer parameters less the MLP and the experts, over 27), layer 0's dense MLP
    (3 x 2048 x 10944, first_k_dense_replace 1) and 13 MoE layers (66 experts of 3 x 2048 x 1408, 64 routed and 2
    shared, and a 2048 x 64 router each), in bf16, over TP 2; each GPU keeps whole what vLLM does not split: the
    stage's 14 / 27 of the kv_a projections (27 x 2048 x 576), the routers (26 x 2048 x 64) and the norms (55 x 2048
    and 27 KV-latent norms of 512), and the RoPE table (163,840 positions x 64 rotated dims x 2 B)."""
    plan = capacity("deepseek-v2-lite", "l4", context=1024, gpus=2, pp=2, engine="vllm")
    vllm = plan["engine_memory"]
    assert vllm["binding_pipeline_stage"] == 0
    moe_layer = 66 * 3 * 2048 * 1408 + 2048 * 64
    attention = (15_287_051_776 - 3 * 2048 * 10944 - 26 * moe_layer) / 27
    assert attention == 13_767_168
    whole = 27 * 2048 * 576 + 26 * 2048 * 64 + 55 * 2048 + 27 * 512
    weights = ((102_400 * 2048 + 14 * attention + 3 * 2048 * 10944 + 13 * moe_layer) * 2 / 2
               + whole * (1 - 1 / 2) * 14 / 27 * 2 + 163_840 * 64 * 2)
    by_hand = 0.9 * 22.04 * GiB - weights - 2048 * (3 * 2048 + 6 * (3 * 1408 // 2 + 2048)) * 2 - 0.34 * GiB
    assert vllm["weights_bytes_per_gpu"] == pytest.approx(weights)
    assert vllm["available_kv_bytes"] == pytest.approx(by_hand)
    assert vllm["kv_tokens"] == 16 * math.floor(by_hand / (16 * 14 * 576 * 2))
    assert vllm["available_kv_bytes"] / GiB == pytest.approx(12.13, rel=0.03)
    assert vllm["kv_tokens"] == pytest.approx(807_792, rel=0.03)
    assert vllm["max_concurrency"] == pytest.approx(788.86, rel=0.03)


@pytest.mark.parametrize("args, says", [
    (["--engine", "vllm", "--vllm-runner", "v3"], "--vllm-runner: expected auto, v0, v1, v2"),
    (["--vllm-runner", "v1"], "--vllm-runner: only vLLM's memory rule uses it"),
    (["--engine", "vllm", "--vllm-version", "11"], "--vllm-version: expected latest or a release"),
    (["--engine", "vllm", "--vllm-version", "0.x"], "--vllm-version: expected latest or a release"),
    (["--vllm-version", "0.11"], "--vllm-version: only vLLM's memory rule uses it"),
])
def test_vllm_runner_and_version_flag_errors(args, says):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    for command in (["capacity", "-m", "qwen3-32b", "-c", "8192"],
                    ["serve", "-m", "qwen3-32b", "--input-len", "128", "--output-len", "128", "-n", "8"]):
        r = CliRunner().invoke(app, [*command, *args])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output


def test_generic_rule_beside_the_engine_rule_is_what_capacity_without_engine_budgets():
    """The baseline the engine rule is weighed against (the docs' 'generic rule' column): kvcalc's own rule, as
    `capacity` without --engine budgets it, on the same logs; the ledger's generic figure is that plan's KV budget."""
    checked = 0
    for row in score(read_rows(FOLDER)):
        if row["engine"] != "vllm" or row["role"] == "excluded" or not row["logged_available_GiB"]:
            continue
        if row["visible_GiB"] not in ("", "79.22") or row["gpu"] != "h100-sxm" or row["link"]:
            continue  # capacity takes the spec's device total; compare where the spec's is the log's
        plan = capacity(row["model"], row["gpu"], context=int(row["max_model_len"]), gpus=int(row["tp"]),
                        pp=int(row["pp"]), ep=int(row["ep"] or 1), weight_dtype=row["weight_dtype"],
                        kv_dtype=row["kv_dtype"], memory_utilization=float(row["gpu_memory_utilization"]),
                        prefill_chunk=int(row["max_num_batched_tokens"]), engine="roofline")
        assert plan["kv_budget_bytes_per_gpu"] / GiB == pytest.approx(row["generic_available_GiB"], rel=1e-9)
        checked += 1
    assert checked >= 2


def test_qwen3_235b_fp8_on_four_h100s_against_vllm_log():
    """vLLM issue #21348: Qwen3-235B-A22B-FP8, TP 4 on H100s, vllm serve defaults: 'Available KV cache memory:
    8.11 GiB', 'GPU KV cache size: 178,880 tokens' (vLLM 0.9: GPUModelRunner, NCCL's buffers in the budget).
    kvcalc predicts both from the model spec alone, 6 % and 7 % high; under today's rule (V2, NCCL outside) the pool is
    far larger, which is what today's vLLM would leave."""
    plan = capacity("qwen3-235b-a22b", "h100", context=40960, gpus=4, weight_dtype="fp8", engine="vllm",
                    vllm_version="0.9")
    vllm = plan["engine_memory"]
    assert vllm["max_num_batched_tokens"] == 8192 and vllm["max_num_seqs"] == 1024
    assert vllm["available_kv_bytes"] / GiB == pytest.approx(8.11, rel=0.10)
    assert vllm["kv_tokens"] == pytest.approx(178880, rel=0.10)
    assert plan["kv_budget_bytes_per_gpu"] == vllm["available_kv_bytes"]
    assert plan["max_sequences_at_context"] == math.floor(vllm["max_concurrency"])


def test_qwen3_235b_fp8_at_tp_8_with_expert_parallel_on_l40s_against_its_log():
    """tim-roethig/ai-platform's vLLM 0.10.2 log (held out): Qwen3-235B-A22B-Instruct-2507-FP8, --tensor-parallel-size
    8 --enable-expert-parallel on 8 x L40S over PCIe, defaults otherwise (0.9; 2048 batched tokens, as logged, and 256
    sequences for a 44 GiB GPU). Each worker logs 'Free memory on device (43.93/44.42 GiB)', '27.72 GiB for weight,
    1.4 GiB for peak activation, 0.21 GiB for non-torch memory'; the engine keeps 14,834 blocks, 237,344 tokens, 7.24x
    at 32,768. By hand from config.json (d 4096, 94 layers, 64 query heads and 4 KV heads of 128, 128 experts of
    3 x 4096 x 1536, vocab 151,936): the fp8 projections and experts, the bf16 embedding and lm_head over 8 GPUs;
    whole on each GPU the bf16 routers and norms and, the 8 GPUs outnumbering the 4 KV heads, one KV head's k and v;
    and the RoPE table of the 2507 checkpoint's 262,144 positions."""
    plan = capacity("qwen3-235b-a22b-2507", "l40s", context=32768, gpus=8, ep=8, weight_dtype="fp8", engine="vllm",
                    vllm_version="0.10.2")
    vllm = plan["engine_memory"]
    assert (vllm["max_num_batched_tokens"], vllm["max_num_seqs"], vllm["model_runner"]) == (2048, 256, "v1")
    d, layers, vocab = 4096, 94, 151936
    split = 2 * vocab * d * 2 + layers * (2 * d * 64 * 128 + 128 * 3 * d * 1536) * 1  # over the 8 GPUs
    whole = layers * (d * 128 * 2 + ((2 + 1 / layers) * d + 2 * 128) * 2) + layers * 2 * d * 128 * 1
    rope = 262_144 * 128 * 2
    weights = split / 8 + whole + rope  # routers and norms in bf16, one KV head's k and v in fp8
    assert vllm["weights_bytes_per_gpu"] == pytest.approx(weights, rel=1e-12)
    # as logged (the rest: the checkpoint's 128 x 128 block scales); an even split without the RoPE table, 27.52 GiB,
    # is 0.20 short
    assert weights / GiB == pytest.approx(27.72, abs=0.015)
    from kvcalc.formulas.params import tp_whole_bytes

    even = weights - rope - tp_whole_bytes(load_model("qwen3-235b-a22b-2507"), 1.0, 8)
    assert even / GiB == pytest.approx(27.52, abs=0.005)
    sampler = 256 * vocab * 38.92  # GPUModelRunner's sort (FlashInfer not installed), over the forward's 0.31 GiB
    assert vllm["profile_peak_bytes"] == pytest.approx(sampler) and sampler / GiB == pytest.approx(1.4, abs=0.02)
    by_hand = 0.9 * 44.42 * GiB - weights - sampler - 0.25 * GiB  # non-torch: 0.16 + 0.09 over PCIe
    assert vllm["available_kv_bytes"] == pytest.approx(by_hand)
    per_token = layers * 1 * 128 * 2 * 2  # one KV head a GPU
    assert vllm["kv_tokens"] == 16 * math.floor(by_hand / (16 * per_token))
    assert vllm["available_kv_bytes"] / GiB == pytest.approx(10.64, rel=0.005)
    assert vllm["kv_tokens"] == pytest.approx(237_344, rel=0.005)
    assert vllm["max_concurrency"] == pytest.approx(7.24, rel=0.005)


def test_every_tensor_parallel_gpu_keeps_norms_routers_mla_down_projections_and_a_kv_head_whole():
    """The README's figures: 0.13 GiB a GPU for Qwen3-235B in fp8 at TP 8 (routers 94 x 4096 x 128 and norms in bf16,
    7/8 of them beyond an even split; each GPU's KV head in fp8, 4 / 8 of a head beyond its share), 0.93 GiB for
    DeepSeek-V3 in fp8 at TP 8 (MLA's q_a and kv_a, 61 x 7168 x (1536 + 576) in fp8, the routers, 58 x 7168 x 256
    and their e_score_correction_bias, 58 x 256, and norms in bf16, 7/8 of them beyond an even split)."""
    from kvcalc.formulas.params import tp_whole_bytes

    qwen = 94 * (4096 * 128 * 2 + (2 * 4096 + 2 * 128) * 2) + 4096 * 2
    assert tp_whole_bytes(load_model("qwen3-235b-a22b"), 1.0, 8) == pytest.approx(
        qwen * 7 / 8 + 94 * 2 * 4096 * 128 * (1 - 4 / 8))
    deepseek = 61 * 7168 * 2112 + (58 * 7168 * 256 + 58 * 256 + 123 * 7168 + 61 * (512 + 1536)) * 2
    assert tp_whole_bytes(load_model("deepseek-v3"), 1.0, 8) == pytest.approx(deepseek * 7 / 8)
    readme = documentation(Path(__file__).parents[2])
    qwen, deepseek = (tp_whole_bytes(load_model(n), 1.0, 8) / GiB for n in ("qwen3-235b-a22b", "deepseek-v3"))
    assert f"{qwen:.2f} GiB a GPU for Qwen3-235B at TP 8, {deepseek:.2f} GiB for DeepSeek-V3 in fp8 at TP 8" in readme
    assert tp_whole_bytes(load_model("llama-3-8b"), 2.0, 1) == 0


def test_vllm_loads_a_rope_table_beside_the_weights():
    """vLLM's weights as loaded include RoPE's cos/sin table, positions x rotated dims x 2 bytes on every GPU. vLLM
    issue #10517's RTX 3090 log: 'Loading model weights took 14.9888 GB' for Llama-3.1-8B, its 8,030,261,248 bf16
    parameters (14.9575 GiB) and the table of 131,072 x 128 to the fourth decimal; llm-d's 0.11.0 H100 log rounds the
    same to 14.99. Models without RoPE build none; partial RoPE builds a narrower one."""
    vllm = capacity("llama-3.1-8b", "rtx-3090", context=20000, engine="vllm", vllm_version="0.6",
                    max_num_batched_tokens=20000, max_num_seqs=256)["engine_memory"]
    assert vllm["rope_cache_bytes"] == 131_072 * 128 * 2
    assert vllm["weights_bytes_per_gpu"] == 8_030_261_248 * 2 + 131_072 * 128 * 2
    assert round(vllm["weights_bytes_per_gpu"] / GiB, 4) == 14.9888
    assert em.vllm_rope_cache_bytes(load_model("llama-4-scout")) == 10_485_760 * 128 * 2  # 2.5 GiB a GPU
    assert em.vllm_rope_cache_bytes(load_model("qwen3-next-80b-a3b")) == 262_144 * 64 * 2  # 64 of 256 dims turn
    assert em.vllm_rope_cache_bytes(load_model("deepseek-v3")) == 163_840 * 64 * 2  # MLA's qk_rope_head_dim
    for name in ("jamba-v0.1", "nemotron-h-8b", "gpt-3-175b"):  # no RoPE: none, or learned positions
        assert em.vllm_rope_cache_bytes(load_model(name)) == 0
    readme = documentation(Path(__file__).parents[2])
    assert 'took 14.9888 GB" for Llama-3.1-8B is its bf16 parameters, 14.9575 GiB' in readme
    assert f"the table is {em.vllm_rope_cache_bytes(load_model('llama-4-scout')) / GiB:.1f} GiB a GPU" in readme


def test_visible_memory_cannot_exceed_capacity(tmp_path):
    from kvcalc.errors import KvcalcError

    text = (Path(__file__).parents[2] / "hardware_specs" / "h100-sxm.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("visible_memory_GiB = 79.22", "visible_memory_GiB = 81"))
    with pytest.raises(KvcalcError, match="visible_memory_GiB"):
        load_gpu(str(bad))


def test_cli_vllm_memory_json_and_flag_errors(capsys):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    r = CliRunner().invoke(app, ["capacity", "-m", "llama-3-8b", "-c", "8192", "--engine", "vllm",
                                 "--max-num-seqs", "256", "-f", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["engine_memory"]["max_num_seqs"] == 256 and out["engine_memory"]["kv_tokens"] % 16 == 0
    r = CliRunner().invoke(app, ["capacity", "-m", "llama-3-8b", "-c", "8192", "--max-num-seqs", "256"])
    assert r.exit_code == 2 and "--engine vllm" in r.output and "Traceback" not in r.output


# a cell that is no number is named by the reader (file, line, column: audit F8); a number out of range by the row
@pytest.mark.parametrize("cell, says", [("abc", "line 2, column visible_GiB: expected a number, got 'abc'"),
                                        ("0", "row 2")])
def test_ledger_bad_rows_are_one_line_errors(tmp_path, cell, says):
    from typer.testing import CliRunner

    from kvcalc.cli import app

    header, first = LEDGER.read_text().splitlines()[:2]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + first.replace(",79.22,", f",{cell},", 1) + "\n")
    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(bad)])
    assert r.exit_code == 2 and says in r.output and "expected" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("ep", ["0", "two"])
def test_ledger_expert_parallel_column_takes_a_count(tmp_path, ep):
    """The optional ep column (empty: 1) is a count like tp and pp; the table shows it beside them."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    header, first = LEDGER.read_text().splitlines()[:2]
    assert ",tp,pp,ep," in header and ",79.22,1,1,,0.90," in first
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\n" + first.replace(",79.22,1,1,,0.90,", f",79.22,1,1,{ep},0.90,", 1) + "\n")
    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(bad)])
    where = "line 2, column ep" if ep == "two" else "row 2"  # not a number: the reader names the cell (F8)
    assert r.exit_code == 2 and "ep" in r.output and where in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["validate", "--engine-memory", str(LEDGER), "-f", "json"])
    assert [row["tp"] for row in json.loads(r.stdout)["rows"]][-2:] == ["8 ep8", "2 ep2"]


def test_sglang_pool_against_its_log():
    """vLLM issue #21348 (the SGLang half): Qwen3-235B-A22B-FP8, TP 4 on H100s, --mem-fraction-static 0.93:
    'KV Cache is allocated. #tokens: 367404'. SGLang keeps 7 % of the memory for activations and CUDA graphs and
    gives the pool the rest after loading; kvcalc takes the communication buffers from its vLLM rule (nothing is
    fitted to this row)."""
    plan = capacity("qwen3-235b-a22b", "h100", context=40960, gpus=4, weight_dtype="fp8", engine="sglang",
                    memory_utilization=0.93)
    sg = plan["engine_memory"]
    assert sg["engine"] == "sglang"
    assert sg["available_kv_bytes"] == pytest.approx(79.22 * GiB * 0.93 - sg["weights_bytes_per_gpu"]
                                                     - em.vllm_non_torch_bytes(4, nvlink=True))
    assert sg["kv_tokens"] == pytest.approx(367404, rel=0.03)
    # a token of this model on one of 4 GPUs: 94 layers x 1 KV head x 128 x (K, V) x 2 B
    assert sg["kv_tokens"] == math.floor(sg["available_kv_bytes"] / (94 * 128 * 2 * 2))


def test_trtllm_kv_cache_against_its_log():
    """TensorRT-LLM issue #1400: Llama-2-7B SmoothQuant (int8 weights, fp16 KV) on an A100 80GB, max_num_tokens 4096,
    the default free_gpu_memory_fraction 0.9, logged 'Allocate 69524783104 bytes for k/v cache' and 'Using 132608
    tokens in paged KV cache' (512 KiB a token). The log does not print the device total; torch reports 79.15 GiB on
    an A100 80GB ('79.15 GiB total capacity' in its out-of-memory messages). Nothing here is fitted."""
    m = load_model("llama-2-7b")
    from kvcalc.formulas.params import weight_bytes

    weights = weight_bytes(m, 1.0)
    assert weights / em.GiB == pytest.approx(6683 / 1024, abs=0.02)  # the log's engine: GPU 6683 MiB
    kv = em.trtllm_kv_bytes(79.15 * em.GiB, 0.9, weights, em.vllm_forward_peak_bytes(m, 4096, 2.0),
                            em.vllm_non_torch_bytes(1, False))
    assert kv == pytest.approx(69_524_783_104, rel=0.005)
    tokens = em.trtllm_kv_tokens(m, kv, 2.0)
    assert tokens % 32 == 0 and tokens == pytest.approx(132_608, rel=0.005)


def test_capacity_engine_trtllm_reports_its_pool():
    plan = capacity("llama-3.1-8b", "h100", context=8192, engine="trtllm")
    em_ = plan["engine_memory"]
    assert em_["engine"] == "trtllm" and em_["max_num_batched_tokens"] == 8192
    free = 79.22 * em.GiB - em_["weights_bytes_per_gpu"] - em_["profile_peak_bytes"] - em_["non_torch_bytes"]
    assert em_["available_kv_bytes"] == pytest.approx(0.9 * free)
    assert em_["kv_tokens"] == math.floor(em_["available_kv_bytes"] / (32 * 131072)) * 32  # 128 KiB a token
    assert plan["max_sequences_at_context"] == math.floor(em_["available_kv_bytes"] / (8192 * 131072))


def test_blackwell_aligns_a_256_wide_head_to_32_token_blocks_beside_linear_layers():
    """vLLM's HybridAttentionMambaModelConfig: FlashInfer on compute capability 10.x has no 16-token blocks for head
    size 256, so the block is a multiple of 32: Qwen3-Next at TP 2 with fp8 KV grows to 32 x ceil(548,864 / (32 x
    512)) = 1,088 tokens on a B200, where an H100 takes 1,072."""
    m = load_model("qwen3-next-80b-a3b")
    assert em.vllm_block_alignment(m, "10.0") == 32 and em.vllm_block_alignment(m, "9.0") == 16
    assert em.vllm_layout(m, 1.0, tp=2, alignment=32).block_tokens == 1088
    assert em.vllm_block_alignment(load_model("llama-3.1-8b"), "10.0") == 16  # head size 128


def test_cuda_graph_estimate_counts_from_0_21_under_gpu_model_runner_and_from_0_29_under_model_runner_v2():
    """vLLM 0.21 made GPUModelRunner take its CUDA-graph estimate out of the budget (a 0.27.1 log, gpustack/runner
    PR #251: 'CUDA graph memory profiling is enabled (default since v0.21.0)'); Model Runner V2's estimate was a
    placeholder 0 until 0.29 (PR #36520, issue #49224); the V0 worker never had one. The same log's arithmetic,
    estimate 0.36 GiB and '--gpu-memory-utilization=0.8200 is equivalent to --gpu-memory-utilization=0.8048
    without CUDA graph memory profiling', says the estimate comes off the whole budget: lowering the utilisation by
    estimate / total gives the same pool."""
    assert [em.vllm_counts_cuda_graphs("v1", v) for v in ((0, 20), (0, 21), (0, 30))] == [False, True, True]
    assert [em.vllm_counts_cuda_graphs("v2", v) for v in ((0, 25), (0, 28), (0, 29))] == [False, False, True]
    assert not em.vllm_counts_cuda_graphs("v0", (0, 30))
    total = 0.36 * GiB / (0.8200 - 0.8048)  # the device the log implies: 23.7 GiB, a 24 GB card
    assert 23.5 < total / GiB < 23.9
    weights, peak, non_torch = 10 * GiB, 1 * GiB, 0.2 * GiB
    assert em.vllm_available_kv_bytes(total, 0.82, weights, peak, non_torch, 0.36 * GiB) == pytest.approx(
        em.vllm_available_kv_bytes(total, 0.8048, weights, peak, non_torch), rel=1e-12)


def test_cuda_graph_memory_comes_off_the_pool_only_where_the_version_counts_it():
    """Qwen3-32B on two RTX PRO 6000s (the ledger's vLLM 0.27.1 row, Model Runner V2): a logged 0.5 GiB estimate is
    not subtracted under 0.27 (V2's placeholder), and is under 0.29, where it costs 0.5 GiB / 2 MiB = 256 blocks of
    16 tokens: a block of Qwen3-32B at TP 2 is 16 tokens x 64 layers x 4 KV heads x 128 x 2 (K, V) x 2 B = 2 MiB.
    Left unknown under a version that counts it, the pool is an upper bound and the warnings say so."""
    def pool(version, graphs):
        return capacity("qwen3-32b", "rtx-pro-6000", context=32768, gpus=2, engine="vllm",
                        memory_utilization=0.426, vllm_version=version, cuda_graph_GiB=graphs)

    block = 16 * 64 * 4 * 128 * 2 * 2
    assert block == 2 * 1024**2
    for version in ("0.27.1", "0.29"):
        unknown, given = pool(version, None)["engine_memory"], pool(version, 0.5)
        counted = version == "0.29"
        assert given["engine_memory"]["cuda_graphs_counted"] is counted
        assert unknown["available_kv_bytes"] - given["engine_memory"]["available_kv_bytes"] == pytest.approx(
            0.5 * GiB if counted else 0.0)
        assert unknown["kv_tokens"] - given["engine_memory"]["kv_tokens"] == (256 * 16 if counted else 0)
        assert any("upper bound" in w for w in pool(version, None)["warnings"]) is counted
        assert any("not subtracted" in w for w in given["warnings"]) is not counted
    with pytest.raises(Exception, match="--cuda-graph-memory: only vLLM's memory rule"):
        capacity("qwen3-32b", "rtx-pro-6000", context=32768, gpus=2, cuda_graph_GiB=0.5)


def test_flashinfer_sampler_profiles_ten_bytes_a_logit_as_a100_logs_show():
    """GPUModelRunner with FlashInfer's top-k/top-p kernel keeps the bf16 logits, their fp32 copy and the fp32
    probabilities: 2 + 4 + 4 bytes a logit, no sort. Two vLLM 0.10.1.1 logs of Qwen2-7B on one A100 80GB
    (dennislee22/vLLM-benchmarking, 'Using FlashInfer for top-p & top-k sampling', weights 14.2488 GiB, T 2048, R 256)
    by hand, from the 79.15 GiB an 80GB A100 shows (vLLM issue #10533): 0.25 -> 5.01 GiB and 0.5 -> 24.83 GiB
    logged. The forward pass (2048 x (3 x 3584 + 3 x 18944) x 2 B = 0.26 GiB) is under the sampler (0.36 GiB)."""
    m = load_model("qwen2-7b")
    sampler = 256 * 152064 * 10
    assert em.vllm_sampler_peak_bytes(m, 256, "v1", flashinfer=True) == sampler
    assert em.vllm_sampler_peak_bytes(m, 256, "v2", flashinfer=True) == 256 * 152064 * 4  # V2 profiles no top-k/p
    assert em.vllm_sampler_peak_bytes(m, 256, "v0", flashinfer=True) == 256 * 152064 * 41.21  # nor V0 FlashInfer
    forward = 2048 * (3 * 3584 + 3 * 18944) * 2
    assert em.vllm_profile_peak_bytes(m, 2048, 256, 2.0, flashinfer=True) == max(forward, sampler) == sampler
    for utilization, logged in ((0.25, 5.01), (0.5, 24.83)):
        by_hand = (79.15 * utilization - 14.2488) * GiB - sampler - 0.16 * GiB
        assert by_hand / GiB == pytest.approx(logged, rel=0.015)
        with_sort = (79.15 * utilization - 14.2488) * GiB - 256 * 152064 * 38.92 - 0.16 * GiB
        if utilization == 0.25:
            assert with_sort / GiB < 0.81 * logged  # the sort's figure leaves this pool 20 % low
        plan = capacity("qwen2-7b", "a100-pcie-80gb", context=16384, engine="vllm", memory_utilization=utilization,
                        vllm_version="0.10", flashinfer_sampler=True)["engine_memory"]
        assert plan["sampler"] == "flashinfer" and plan["max_num_batched_tokens"] == 2048
        assert plan["available_kv_bytes"] / GiB == pytest.approx(logged, rel=0.015)
    with pytest.raises(Exception, match="--flashinfer-sampler: only vLLM's memory rule"):
        capacity("qwen2-7b", "a100-pcie-80gb", context=16384, flashinfer_sampler=True)


def test_pipeline_stages_weigh_their_own_layers():
    """A MoE model's dense first layers weigh less than its expert layers, so the stage that holds them is lighter
    than the mean layer says: DeepSeek-V2-Lite's layer 0 (3 x 2048 x 10944 MLP parameters) against its MoE layers
    (66 x 3 x 2048 x 1408 + 2048 x 64); the stages add up to the whole model, and a dense model's layers are equal."""
    from kvcalc.formulas.params import (
        layer_weight_bytes,
        stage_weight_bytes,
        weight_bytes,
    )

    m = load_model("deepseek-v2-lite")
    layers = layer_weight_bytes(m, 2.0)
    assert layers[1] - layers[0] == 2 * (66 * 3 * 2048 * 1408 + 2048 * 64 - 3 * 2048 * 10944)
    assert len(set(layers[1:])) == 1
    for split in ([14, 13], [7, 7, 7, 6], [27]):
        assert sum(stage_weight_bytes(m, 2.0, split)) == pytest.approx(weight_bytes(m, 2.0), rel=1e-12)
    fp8 = layer_weight_bytes(m, 1.0)  # the router stays bf16 in a quantised checkpoint
    assert fp8[1] - fp8[0] == 66 * 3 * 2048 * 1408 * 1.0 + 2048 * 64 * 2.0 - 3 * 2048 * 10944 * 1.0
    dense = layer_weight_bytes(load_model("llama-3.1-8b"), 2.0)
    assert len(set(dense)) == 1 and len(dense) == 32


def test_vllm_mxfp4_experts_as_marlin_and_triton_kernels_lay_them_out():
    """gpt-oss-20b (24 layers, 32 experts, hidden 2880, expert width 2880, biased). By hand from vLLM's source:
    Marlin pads H to 256 (3,072) and I to 128 (2,944): 32 x (5,888 x 3,072 + 3,072 x 2,944) values at 17/32 of a
    byte (4 bits and a scale byte per 32) = 461,242,368 B a layer, bf16 biases 32 x (5,888 + 3,072) x 2 = 573,440:
    24 layers, 11,083,579,392 B. Triton on Hopper at TP 2: I = 1,440 -> 1,472; values 32 x (2,944 x 1,472 + 2,880 x
    768) = 209,453,056; swizzled scales 32 x (3,072 x 90 + 3,072 x 46) = 13,369,344; the checkpoint's scales kept,
    (2 x 1,472 x 2,880 + 2,880 x 1,472) = 12,718,080; fp32 biases 32 x (2,944 + 2,880) x 4 = 745,472: 24 x
    236,285,952 = 5,670,862,848 B. The four logs that print gpt-oss's 'Model loading took' then come within 2 %
    (13.72 GiB on an A100 and 7.01 on each of two H100s under 0.19.0; 17.22 for gpt-oss-120b at TP 4 on A100s)."""
    m = load_model("gpt-oss-20b")
    assert em.vllm_mxfp4_expert_bytes(m, 1, "marlin") == 24 * (461_242_368 + 573_440) == 11_083_579_392
    assert em.vllm_mxfp4_expert_bytes(m, 2, "triton-hopper") == 24 * 236_285_952 == 5_670_862_848
    assert 209_453_056 + 13_369_344 + 12_718_080 + 745_472 == 236_285_952
    # vLLM 0.11 on Hopper: triton_kernels' layout without the packed values' 64-byte padding, as llm-d's 0.11.0 H100
    # weights show it (13.47 GiB for gpt-oss-20b, 64.38 for 120b; Marlin's would be 13.70 and 65.93: the
    # twenty-sixth audit, M1); 0.10.x needs triton_kernels there and is not followed. By hand, gpt-oss-20b at TP 1:
    # 24 x 32 x ((5,760 x 1,440 + 2,880 x 1,440) values + (5,888 x 90 + 3,072 x 90) swizzled scales + 3 x 2,880 x
    # 2,880 / 32 kept scales + (5,760 + 2,880) x 4 fp32 biases)
    assert em.vllm_mxfp4_expert_bytes(m, 1, "triton-hopper-0.11") == 24 * 32 * (
        5_760 * 1_440 + 2_880 * 1_440 + 5_888 * 90 + 3_072 * 90 + 3 * 2_880 * 2_880 // 32 + 8_640 * 4)
    assert [em.vllm_mxfp4_backend(g, v) for g, v in (("8.0", (0, 10)), ("9.0", (0, 11)),
                                                     ("9.0", (0, 10)), ("9.0", (0, 19)), ("10.0", (0, 19)),
                                                     ("gfx942", (0, 19)))] \
        == ["marlin", "triton-hopper-0.11", None, "triton-hopper", None, None]
    # the thirty-fifth audit, memory 2: gpt-oss-120b on one H100 logs 'Model loading took 64.38 GiB' under 0.14.1
    # (issue #33155, unpadded triton_kernels); 0.10's layout depends on the install (memory 1, left)
    import json

    from typer.testing import CliRunner

    from kvcalc.cli import app

    for version, logged in (("0.14.1", 64.38),):
        out = CliRunner().invoke(app, ["capacity", "-m", "gpt-oss-120b", "-g", "h100-sxm", "-c", "4096", "--tp", "1",
                                       "-e", "vllm", "--vllm-version", version, "-f", "json"])
        got = json.loads(out.stdout)["engine_memory"]["weights_bytes_per_gpu"] / 2**30
        assert abs(got / logged - 1) < 0.005, (version, got)
    # gpt_oss.py asks get_rope for float32: its YaRN table of 131,072 x 64 is 32 MiB
    assert em.vllm_rope_cache_bytes(m) == 131_072 * 64 * 4
    rows = {(r["model"], r["gpu"], r["tp"]): r for r in score(read_rows(FOLDER))
            if r["engine"] == "vllm" and r["model"].startswith("gpt-oss")}
    for key, logged in ((("gpt-oss-20b", "a100-sxm-80gb", "1"), 13.72), (("gpt-oss-20b", "h100-sxm", "2"), 7.01),
                        (("gpt-oss-120b", "a100-pcie-80gb", "4"), 17.22), (("gpt-oss-20b", "h100-sxm", "1"), 13.47)):
        assert abs(rows[key]["weights_GiB"] / logged - 1) < 0.02, (key, rows[key]["weights_GiB"])
