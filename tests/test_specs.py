"""Spec schemas: every bundled file loads, cites sources, and bad files fail naming the field."""

import pytest

from kvcalc.errors import KvcalcError
from kvcalc.specs.catalog import bundled_specs, load_gpu, load_spec_file

REFERENCE_MODELS = {
    "chatglm2-6b", "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3.1-8b", "llama-3-70b",
    "llama-3.1-70b", "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "qwen2-7b", "qwen2.5-72b", "falcon-7b",
    "falcon-40b", "gemma-2-9b", "gpt-3-175b", "command-r", "deepseek-v2", "deepseek-v2-lite", "deepseek-v3",
}
LEDGER_MODELS = {"qwen3-235b-a22b", "deepseek-r1-distill-qwen-14b",  # models of the vLLM memory ledger
                 "llama-3.2-1b",  # a draft model for speculative decoding
                 "gpt-oss-120b",  # an MXFP4 checkpoint, experts only
                 "qwen3-next-80b-a3b",  # a hybrid of linear and softmax attention
                 "jamba-v0.1", "nemotron-h-8b",  # hybrids of Mamba / Mamba-2 and softmax attention
                 "kimi-k2", "gemma-3-27b", "llama-4-scout", "deepseek-v3.2",  # today's models
                 "qwen3-0.6b", "qwen3-32b", "gpt-oss-20b",  # llm-d's vLLM 0.11 memory runs
                 "qwen3-30b-a3b",  # a vLLM 0.10.2 run on L40Ss
                 "qwen3-235b-a22b-2507", "qwen3-30b-a3b-2507",  # the 2507 releases those runs served
                 "llama-3.2-3b"}  # the model of the llm-d L40S benchmark file (tests/fixtures/benchmarks/)
REFERENCE_GPUS = {
    "h100-sxm", "h100-pcie", "h100-nvl", "h200", "a100-sxm-80gb", "a100-sxm-40gb", "a100-pcie-80gb", "l40s",
    "rtx-4090", "b200", "mi300x", "mi325x",
}
INFERENCE_GPUS = {"l4", "t4", "a10", "v100-sxm2-32gb", "gb200", "mi250x", "mi250x-gcd", "mi210", "b300", "rtx-pro-6000", "gb300", "mi355x", "rtx-3090", "gh200", "gh200-144gb", "a10g", "rtx-5090"}  # beyond the reference table


def test_every_reference_model_and_gpu_is_bundled_with_sources():
    models, gpus = bundled_specs("model"), bundled_specs("gpu")
    assert {m.name for m in models} == REFERENCE_MODELS | LEDGER_MODELS
    assert {g.name for g in gpus} == REFERENCE_GPUS | INFERENCE_GPUS
    assert all(s.sources for s in [*models, *gpus])


@pytest.mark.parametrize(
    "name, memory_GiB, bandwidth, bf16, fp8",
    [
        # reference-figures.md accelerator table (dense peaks; vendors' sparse figures are twice these)
        ("h100-sxm", 80, 3350, 989.5, 1979),
        ("h100-pcie", 80, 2000, 756.5, 1513),
        ("h200", 141, 4800, 989.5, 1979),
        ("a100-sxm-80gb", 80, 2039, 312, None),
        ("rtx-4090", 24, 1008, 165.2, 330.3),
        ("b200", 180, 7700, 2250, 4500),
        ("mi300x", 192, 5300, 1307.4, 2614.9),
    ],
)
def test_gpu_specs_hold_the_dense_datasheet_figures(name, memory_GiB, bandwidth, bf16, fp8):
    g = next(g for g in bundled_specs("gpu") if g.name == name)
    assert (g.memory_GiB, g.memory_bandwidth_GBps, g.peak_tflops.bf16, g.peak_tflops.fp8) == (
        memory_GiB, bandwidth, bf16, fp8,
    )


@pytest.mark.parametrize("name", ["mi300x", "mi325x"])
def test_cdna3_parts_carry_the_white_paper_fabric_and_int8(name):
    # AMD CDNA 3 white paper, Table 2: 7 x16 Infinity Fabric links, 896 GB/s peak aggregate (8 GPUs); INT8
    # 2,614.9 TOPS dense (5,229.8 with sparsity) on both parts.
    g = next(g for g in bundled_specs("gpu") if g.name == name)
    assert (g.interconnect_bandwidth_GBps, g.interconnect_peer_links, g.peak_tflops.int8) == (896, 7, 2614.9)


def test_head_dim_is_explicit_not_hidden_over_heads():
    gemma = next(m for m in bundled_specs("model") if m.name == "gemma-2-9b")
    assert gemma.attention.head_dim == 256 != gemma.hidden_size // gemma.attention.num_heads


GOOD = """
name = "tiny"
family = "llama"
sources = ["test"]
num_layers = 2
hidden_size = 64
vocab_size = 100
[attention]
kind = "gqa"
num_heads = 8
num_kv_heads = 2
head_dim = 8
[mlp]
kind = "gated"
intermediate_size = 128
"""


def write(tmp_path, text, name="spec.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_good_spec_file_loads(tmp_path):
    assert load_spec_file("model", write(tmp_path, GOOD)).attention.num_kv_heads == 2


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("num_kv_heads = 2", "num_kv_heads = 3", "attention.num_heads (8) must be divisible by attention.num_kv_heads (3)"),
        ("hidden_size = 64", "hidden_size = 0", "hidden_size: Input should be greater than or equal to 1"),
        # the unknown key first, with the field it may mean (audit U6)
        ("head_dim = 8", "head_dim = 8\nhead_dimm = 8", "attention: head_dimm: unknown field (did you mean head_dim?)"),
        ('kind = "gqa"', 'kind = "mla"', "attention.kind 'mla' needs attention.kv_lora_rank"),
        ('kind = "gqa"', 'kind = "mha"', "attention.kind 'mha' does not match num_heads 8 and num_kv_heads 2"),
        ('sources = ["test"]', "sources = []", "sources: List should have at least 1 item"),
    ],
)
def test_a_bad_spec_file_names_the_file_and_field(tmp_path, old, new, message):
    p = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(KvcalcError) as err:
        load_spec_file("model", p)
    assert str(err.value).startswith(f"{p}: {message}")
    assert "\n" not in str(err.value)


def test_moe_top_k_beyond_the_experts_is_rejected(tmp_path):
    p = write(tmp_path, GOOD + "[moe]\nnum_experts = 4\ntop_k = 6\nexpert_intermediate_size = 32\n")
    with pytest.raises(KvcalcError, match=r"moe.top_k \(6\) exceeds moe.num_experts \(4\)"):
        load_spec_file("model", p)


def test_invalid_toml_names_the_file(tmp_path):
    p = write(tmp_path, "name = \n")
    with pytest.raises(KvcalcError, match=f"{p}: not valid TOML"):
        load_spec_file("model", p)


@pytest.mark.parametrize("name, memory_GiB, bandwidth, bf16, fp16, int8", [
    # NVIDIA datasheets: L4 242* bf16, 485* int8 (* 2:4 sparse, halved here); A10 250* bf16, 500* int8;
    # T4 65 fp16 and 130 int8 (Turing: dense); V100 SXM2 125 tensor (Volta: dense, fp16 only).
    ("l4", 24, 300, 121, 121, 242.5), ("a10", 24, 600, 125, 125, 250), ("t4", 16, 320, None, 65, 130),
    ("v100-sxm2-32gb", 32, 900, None, 125, None),
])
def test_inference_gpus_carry_their_datasheet_dense_peaks(name, memory_GiB, bandwidth, bf16, fp16, int8):
    from kvcalc.specs.catalog import load_gpu

    g = load_gpu(name)
    assert (g.memory_GiB, g.memory_bandwidth_GBps) == (memory_GiB, bandwidth)
    assert (g.peak_tflops.bf16, g.peak_tflops.fp16, g.peak_tflops.int8) == (bf16, fp16, int8)
    assert g.peak_flops("bf16") == fp16 * 1e12  # no bf16 listed: bf16 work runs at the fp16 peak


def test_gb200_nvlink_domain_is_the_rack_and_mi250x_gcd_is_half_the_package():
    from kvcalc.errors import KvcalcError
    from kvcalc.formulas.parallel import group_link_bandwidth

    gb = load_gpu("gb200")
    assert gb.scale_up_gpus == 72 and group_link_bandwidth(gb, 64) == 1800e9  # 64 GPUs still on NVLink
    with pytest.raises(KvcalcError, match="scale_out_bandwidth_GBps"):
        group_link_bandwidth(gb, 128)
    # NVIDIA's rack figures: 360 PF bf16 and 720 PF fp8 sparse, 576 TB/s, over 72 GPUs
    assert gb.peak_tflops.bf16 == 360_000 / 2 / 72 and gb.peak_tflops.fp8 == 720_000 / 2 / 72
    assert gb.memory_bandwidth_GBps == 576_000 / 72
    pkg, gcd = load_gpu("mi250x"), load_gpu("mi250x-gcd")
    assert gcd.memory_GiB * 2 == pkg.memory_GiB and gcd.memory_bandwidth_GBps * 2 == pkg.memory_bandwidth_GBps
    assert gcd.peak_tflops.bf16 * 2 == pkg.peak_tflops.bf16 == 383.0


def test_mi210_holds_anandtechs_table_figures():
    """AnandTech's MI200 table: MI210 181 TFLOPS fp16 matrix, 181 TOPS int8, 64 GB at 1.6 TB/s; one GCD of 104 CUs
    against the MI250X's two of 110, so below half the package's fp16 (383.0 / 2 x 104 / 110 = 181.05)."""
    mi210, gcd = load_gpu("mi210"), load_gpu("mi250x-gcd")
    assert (mi210.memory_GiB, mi210.memory_bandwidth_GBps, mi210.peak_tflops.bf16, mi210.peak_tflops.int8) == (
        64, 1600, 181, 181)
    assert mi210.peak_tflops.fp16 == pytest.approx(gcd.peak_tflops.fp16 * 104 / 110, abs=0.1)
    assert mi210.peak_tflops.fp8 is None


def test_b300_and_rtx_pro_6000_hold_nvidias_figures():
    """aiconfigurator-core's systems/b300_sxm.yaml (Blackwell Ultra datasheet): 62 TB/s over 8 GPUs, 4.5 PF bf16 and
    9 PF fp8 sparse, 14 PF fp4 dense, 307 TOPS int8 sparse; rtx_pro_6000_server.yaml: 467.8 TF bf16. The Server
    Edition's datasheet: 1,597 GB/s (the yaml's 1.792 TB/s is the Workstation Edition's; the thirtieth audit, H2)."""
    b300, pro = load_gpu("b300"), load_gpu("rtx-pro-6000")
    assert b300.memory_bandwidth_GBps == 62_000 / 8
    assert (b300.peak_tflops.bf16, b300.peak_tflops.fp8, b300.peak_tflops.fp4, b300.peak_tflops.int8) == (
        4500 / 2, 9000 / 2, 14000, 307 / 2)
    assert (pro.memory_bandwidth_GBps, pro.peak_tflops.bf16, pro.peak_tflops.fp4) == (1597, 467.8, 1871.2)
    assert pro.interconnect_bandwidth_GBps == 2 * 64  # PCIe Gen5 x16, each way 64 GB/s


def test_gb300_is_blackwell_ultra_per_gpu_in_a_72_gpu_domain():
    """aiconfigurator-core's systems/gb300.yaml: 8 TB/s, 2.5 PF bf16, 5 PF fp8, 15 PF fp4, 165 TOPS int8 (dense)."""
    gb = load_gpu("gb300")
    assert (gb.memory_bandwidth_GBps, gb.peak_tflops.bf16, gb.peak_tflops.fp8, gb.peak_tflops.fp4,
            gb.peak_tflops.int8, gb.scale_up_gpus) == (8000, 2500, 5000, 15000, 165, 72)


def test_mi355x_peaks_follow_from_amds_isscc_figures():
    """256 CUs x 8,192 FP8 FLOPs a clock x 2.4 GHz = AMD's 'five petaflops' of FP8; bf16 half, fp4 twice."""
    mi = load_gpu("mi355x")
    fp8 = 8 * 32 * 8192 * 2.4e9 / 1e12
    assert mi.peak_tflops.fp8 == pytest.approx(fp8, abs=0.1) and fp8 == pytest.approx(5000, rel=0.01)
    assert (mi.peak_tflops.bf16, mi.peak_tflops.fp4) == (pytest.approx(fp8 / 2, abs=0.1), pytest.approx(fp8 * 2, abs=0.1))
    assert (mi.memory_GiB, mi.memory_bandwidth_GBps) == (288, 8000)
    # Infinity Fabric: seven ~153.6 GB/s links, one to each peer of an 8-GPU board (the spec's third-party source)
    assert (mi.interconnect_bandwidth_GBps, mi.interconnect_peer_links) == (pytest.approx(7 * 153.6), 7)


def test_rtx_3090_is_the_ga102_whitepapers_fp32_accumulate_rate_and_vllms_visible_memory():
    """GA102 whitepaper: 71 TFLOPS fp16 tensor with fp32 accumulate (half of the 142 with fp16 accumulate), 936 GB/s;
    vLLM issue #10517 logs total_gpu_memory=23.58GiB on it."""
    g = load_gpu("rtx-3090")
    assert (g.peak_tflops.bf16, g.memory_bandwidth_GBps, g.visible_memory_GiB) == (142 / 2, 936, 23.58)
    assert g.peak_tflops.fp8 is None


def test_rtx_5090_halves_the_sparse_figures_and_fp32_accumulation_only_for_16_bit():
    """NVIDIA's 5090 figures are sparse: FP16 tensor 838.4 (fp16 accumulate), FP8 1,676.8, FP4 3,352; dense they are
    419.2, 838.4 and 1,676. GeForce halves fp32 accumulation for 16-bit inputs (209.5 dense, as NVIDIA's datasheet
    prints it; a measured RTX 5060 Ti: 47.0 against 87.9 TFLOPS), not for fp8 and nvfp4 (184.6 and 341.9 there).
    1,792 GB/s = 28 Gb/s x 512 bits / 8; fp32 = 21,760 cores x 2 x 2.407 GHz."""
    g = load_gpu("rtx-5090")
    assert g.peak_tflops.bf16 == pytest.approx(838.4 / 2 / 2, abs=0.2)
    assert (g.peak_tflops.fp8, g.peak_tflops.fp4) == (1676.8 / 2, 3352 / 2)
    assert g.memory_bandwidth_GBps == 28 * 512 / 8
    assert g.peak_tflops.fp32 == pytest.approx(21760 * 2 * 2.407e-3, abs=0.05)
    assert (g.memory_GiB, g.visible_memory_GiB) == (32, 31.84)  # 32,607 MiB (nvidia-smi)
    assert g.peak_tflops.int8 == 1676 / 2  # the whitepaper's Table 3: Peak INT8 Tensor TOPS 838/1676 (the thirtieth audit)


@pytest.mark.parametrize("name, memory_GiB, bandwidth", [("gh200", 96, 4000), ("gh200-144gb", 144, 4900)])
def test_gh200_is_the_h100s_compute_with_the_datasheets_memory(name, memory_GiB, bandwidth):
    """GH200 datasheet: 96GB HBM3 at 4 TB/s or 144GB HBM3e at 4.9 TB/s; BF16 1,979 and FP8/INT8 3,958 with sparsity,
    so dense 989.5 and 1,979, the H100 SXM's. NVLink-C2C (900 GB/s) joins the GPU to its CPU, not to other GPUs."""
    g, h100 = load_gpu(name), load_gpu("h100-sxm")
    assert (g.memory_GiB, g.memory_bandwidth_GBps) == (memory_GiB, bandwidth)
    assert (g.peak_tflops.bf16, g.peak_tflops.fp8, g.peak_tflops.int8) == (1979 / 2, 3958 / 2, 3958 / 2)
    assert g.peak_tflops.model_dump() == h100.peak_tflops.model_dump()  # the figures (pydantic before 2.6 also
    # compared which fields each instance had set, which the run's order of tests can change on a cached spec)
    assert g.interconnect_bandwidth_GBps is None


def test_a10g_shares_the_a10s_memory_not_its_tensor_peak():
    """A10G datasheet as quoted: 600 GB/s, 70 TFLOPS bf16 dense (140 sparse); the A10's datasheet prints 125."""
    a10g, a10 = load_gpu("a10g"), load_gpu("a10")
    assert (a10g.memory_GiB, a10g.memory_bandwidth_GBps) == (a10.memory_GiB, a10.memory_bandwidth_GBps) == (24, 600)
    assert (a10g.peak_tflops.bf16, a10.peak_tflops.bf16) == (140 / 2, 125)
    assert a10g.visible_memory_GiB == 22.06 and a10g.peak_tflops.fp8 is None


def test_l4_and_l40s_carry_the_totals_torch_reports():
    """The EC2 comparison report's torch allocator totals: L4 22.04 GiB (below EC2's listed 22,888 MiB, less the
    driver's share), L40S 44.4 GiB (EC2 lists 45,776 MiB with ECC), which a vLLM 0.10.2 log on L40Ss prints to two
    decimals, 'Free memory on device (43.93/44.42 GiB)'; the datasheet figures stay beside them."""
    assert (load_gpu("l4").visible_memory_GiB, load_gpu("l4").memory_GiB) == (22.04, 24)
    assert (load_gpu("l40s").visible_memory_GiB, load_gpu("l40s").memory_GiB) == (44.42, 48)
    l40s = load_gpu("l40s").visible_memory_GiB
    assert 22.04 < 22_888 / 1024 and round(l40s, 1) == 44.4 and l40s < 45_776 / 1024  # the report's figure, rounded
