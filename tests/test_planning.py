"""compare, capacity and sweep: hand-derived numbers and agreement with estimate."""

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.estimator import estimate
from kvcalc.planning.capacity import capacity, compare
from kvcalc.specs.catalog import load_gpu, load_model

SPECS = Path(__file__).parents[1] / "hardware_specs"
runner = CliRunner()
GiB = 2**30

# Llama 3 70B (reference-figures.md): 80 layers, d 8192, 64 heads, 8 KV heads of 128, MLP 28672, vocab 128256.
LLAMA3_70B_PARAMS = (
    2 * 128256 * 8192  # embedding + untied lm_head
    + 80 * (2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192)  # q,o + k,v + MLP + 2 norms
    + 8192  # final norm
)


def hand_budget(tp: int) -> float:
    usable = 0.9 * 79.22 * GiB  # H100 SXM: 79.22 GiB as torch reports it (vLLM PRs #10511, #12126), at 90 %
    activations = 8192 * (2 * 8192 + 2 * 28672) * 2 + 128256 * 4  # one 8192-token prefill chunk, bf16; fp32 logits
    return usable - LLAMA3_70B_PARAMS * 2 / tp - activations / tp  # both split over the tensor-parallel group


def test_llama_3_70b_bf16_does_not_fit_one_h100():
    assert LLAMA3_70B_PARAMS * 2 > 0.9 * 80 * GiB
    plan = capacity("llama-3-70b", "h100", context=8192)
    assert plan["min_gpus_for_weights"] == 2


@pytest.mark.parametrize("tp", [2, 4])
def test_llama_3_70b_concurrency_at_8k_on_two_and_four_h100s(tp):
    # KV per token per GPU: 2 * (8 KV heads / tp) * 128 * 80 layers * 2 B.
    per_seq = 2 * (8 / tp) * 128 * 80 * 2 * 8192
    expected = math.floor(hand_budget(tp) / per_seq)
    assert expected == {2: 4, 4: 61}[tp]
    assert capacity("llama-3-70b", "h100", context=8192, gpus=tp)["max_sequences_at_context"] == expected


def test_throughput_target_and_cost_follow_from_the_decode_rate():
    plan = capacity("llama-3-8b", "h100", context=4096, batch=32, target_tokens_per_s=10_000, price_per_gpu_hour=2.0)
    rate = estimate("llama-3-8b", "h100", batch=32, context=4096).decode.tokens_per_s
    assert plan["tokens_per_s"] == pytest.approx(rate)
    assert plan["gpus_for_target"] == math.ceil(10_000 / rate)
    assert plan["cost_per_million_tokens"] == pytest.approx(2.0 / (rate * 3600) * 1e6)


def test_kv_cache_binds_when_the_batch_does_not_fit():
    plan = capacity("llama-3-70b", "h100", context=8192, gpus=2, batch=16)
    assert not plan["fits"] and plan["binding"].startswith("KV cache: only 4 sequences")


def test_compare_mqa_over_mha_kv_is_one_over_heads():
    rows = {r["variant"]: r for r in compare("llama-2-7b", ["mqa", "gqa8"], context=2048)}
    assert rows["mqa"]["kv_bytes_per_token_vs_own"] == 1 / 32  # llama-2-7b is MHA with 32 heads
    assert rows["gqa8"]["kv_bytes_per_token_vs_own"] == 8 / 32
    assert rows["mha (own)"]["decode_ms_vs_own"] == 1


def test_compare_rows_agree_with_estimate():
    row = compare("mistral-7b", ["mla"], batch=8, context=4096)[1]
    e = estimate("mistral-7b", attn="mla", batch=8, context=4096)
    assert row["decode_ms"] == pytest.approx(e.decode.ms) and row["kv_bytes_per_token"] == e.kv_cache.bytes_per_token


def test_sweep_rows_equal_estimate_for_the_same_scenario():
    from kvcalc.grid import sweep

    df = sweep(["llama-3-8b", "deepseek-v2-lite", "gemma-2-9b"], ["h100", "mi300x"], [None, "mqa"], [1, 7, 64],
               [512, 5000], ["bf16", "fp8"], ["bf16", "fp8"], ["auto", "roofline"])
    assert len(df) == 3 * 2 * 2 * 3 * 2 * 2 * 2 * 2
    for _, row in df.sample(12, random_state=0).iterrows():
        attn = None if row["attention"] == estimate(row["model"].split("+")[0]).inputs.attention else "mqa"
        e = estimate(row["model"].split("+")[0], row["gpu"], attn=attn, batch=int(row["batch"]),
                     context=int(row["context"]), weight_dtype=row["weight_dtype"], kv_dtype=row["kv_dtype"],
                     engine=row["engine"] if row["engine"] == "roofline" else "auto")
        assert row["decode_ms"] == pytest.approx(e.decode.ms)
        assert row["prefill_ms"] == pytest.approx(e.prefill.ms)
        assert row["kv_bytes"] == e.kv_cache.bytes and row["decode_bound"] == e.decode.bound
        assert row["memory_required_bytes"] == pytest.approx(e.memory.required_bytes) and row["fits"] == e.memory.fits


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: capacity("llama-3-8b", context=0), "--context: expected a whole number from 1 to 1,000,000,000, got 0"),
        (lambda: capacity("llama-3-8b", context=4096, price_per_gpu_hour=-1), "--price-per-gpu-hour: expected a finite number in"),
        (lambda: capacity("llama-3-8b", context=4096, gpus=3), "--tp: tensor parallelism over 3 GPUs needs it to divide"),
        (lambda: compare("llama-3-8b", [], context=4096), "--attn: expected at least one variant"),
    ],
)
def test_bad_planning_input_names_the_flag(call, message):
    with pytest.raises(KvcalcError, match=message):
        call()


def test_an_empty_sweep_grid_is_an_error():
    from kvcalc.grid import sweep

    with pytest.raises(KvcalcError, match="--batch: empty list"):
        sweep(["llama-3-8b"], batch=[])
    r = runner.invoke(app, ["sweep", "-m", "llama-3-8b", "-b", ",", "-o", "x.csv"])
    assert r.exit_code == 2 and "--batch: empty list" in r.stderr


def test_cli_compare_capacity_and_sweep(tmp_path):
    import json

    import pandas as pd

    r = runner.invoke(app, ["compare", "-m", "llama-2-7b", "--attn", "mqa", "-f", "json"])
    assert json.loads(r.stdout)[1]["kv_bytes_per_token_vs_own"] == 1 / 32
    r = runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-g", "h100", "-c", "8192", "--gpus", "4", "-f", "json"])
    assert json.loads(r.stdout)["max_sequences_at_context"] == 61
    r = runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-c", "8192", "--price-per-gpu-hour", "-2"])
    assert r.exit_code == 2 and "--price-per-gpu-hour" in r.stderr
    out = tmp_path / "s.csv"
    r = runner.invoke(app, ["sweep", "-m", "llama-3-8b,mistral-7b", "-b", "1,8", "-c", "1024,8192", "-o", str(out)])
    assert r.exit_code == 0 and len(pd.read_csv(out)) == 8


def test_the_python_api_mirrors_the_cli():
    import kvcalc

    assert kvcalc.sweep(["llama-3-8b"], batch=[2], context=[100]).loc[0, "kv_bytes"] == 2 * 100 * 131_072
    assert kvcalc.compare("llama-2-7b", ["mqa"])[1]["kv_bytes_per_token"] == 16_384
    assert kvcalc.capacity("llama-3-8b", context=4096)["tensor_parallel"] == 1
    assert type(kvcalc.plot.roofline(["h100"], "llama-3-8b", batch=[1])).__name__ == "Figure"


def test_tensor_parallel_allreduce_time_by_hand():
    # llama-3-70b on 2 H100s, batch 4: 2 all-reduces x 80 layers, each 2 (2-1)/2 x 4 tokens x 8192 x 2 B,
    # at 450 GB/s each way (NVLink 4's 900 GB/s is the bidirectional total).
    from kvcalc.formulas.parallel import allreduce_seconds
    from kvcalc.specs.catalog import load_model

    expected = 2 * 80 * (2 * 1 / 2) * (4 * 8192 * 2) / 450e9
    assert allreduce_seconds(load_model("llama-3-70b"), 4, 2, 2, 900e9) == pytest.approx(expected)
    assert allreduce_seconds(load_model("llama-3-70b"), 4, 2, 1, 900e9) == 0


def test_tensor_parallel_on_a_spec_without_link_bandwidth_is_a_one_line_error(tmp_path):
    spec = tmp_path / "no-link.toml"
    lines = (SPECS / "mi300x.toml").read_text().splitlines(keepends=True)
    spec.write_text("".join(x for x in lines if not x.startswith("interconnect_")))
    r = runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-g", str(spec), "-c", "8192", "--gpus", "2"])
    assert r.exit_code == 2 and "interconnect_bandwidth_GBps" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("tp, one_way_GBps", [(2, 64), (4, 192), (8, 448)])
def test_a_mesh_without_a_switch_gives_a_tensor_parallel_group_one_link_per_peer(tp, one_way_GBps):
    # AMD CDNA 3 white paper, Table 2: MI300X has 7 x16 Infinity Fabric links at 32 Gbps per lane (64 GB/s each
    # way), one to each of its 7 peers, 896 GB/s in all. A group of tp GPUs reaches its peers over tp - 1 of them.
    from kvcalc.estimator import evaluate

    spec, hw = load_model("llama-3-70b"), load_gpu("mi300x")
    ev = evaluate(spec, hw, batch=4, context=1024, prompt=1024, weight_dtype="bf16", kv_dtype="bf16", tp=tp)
    per_allreduce = 4 * 8192 * 2
    assert ev.comm_sol_s == pytest.approx(2 * 80 * 2 * (tp - 1) / tp * per_allreduce / (one_way_GBps * 1e9))
    # Behind a switch (H100 SXM, NVLink 4: 900 GB/s, 450 each way) the group size does not change the link rate.
    h100 = evaluate(spec, load_gpu("h100"), batch=4, context=1024, prompt=1024, weight_dtype="bf16",
                    kv_dtype="bf16", tp=tp, profile=None)
    assert h100.comm_sol_s == pytest.approx(2 * 80 * 2 * (tp - 1) / tp * per_allreduce / 450e9)


@pytest.mark.parametrize("gpu, tp, one_way_GBps", [
    # NVLink bridges join pairs (A100 datasheet: "NVLink Bridge for 2 GPUs: 600 GB/s; PCIe Gen4: 64 GB/s"; H100
    # PCIe: NVLink 600 GB/s, PCIe Gen5 128 GB/s): a pair runs at 300 each way, four cards at PCIe's half.
    ("h100-pcie", 2, 300), ("h100-pcie", 4, 64), ("h100-nvl", 8, 64), ("a100-pcie-80gb", 4, 32),
    # Past the 8-GPU HGX board, the DGX datasheets' one NIC per GPU: ConnectX-7 400 Gb/s (H100), ConnectX-6
    # 200 Gb/s HDR (A100) = 50 and 25 GB/s each way, and NCCL's ring channel per NIC crosses between nodes over all
    # 8 of a node's: 400 and 200 GB/s each way, under NVLink's 450 and 300 (the fortieth audit, comms 1: one NIC's
    # 50 and 25 had been the ring's rate, where 32 H100s measure a bus bandwidth of 330.93 GB/s)
    ("h100", 8, 450), ("h100", 16, 400), ("a100-sxm-80gb", 16, 200),
])
def test_a_group_beyond_its_scale_up_domain_is_bound_by_the_slower_link(gpu, tp, one_way_GBps):
    from kvcalc.estimator import evaluate

    ev = evaluate(load_model("llama-3-70b"), load_gpu(gpu), batch=4, context=1024, prompt=1024, weight_dtype="bf16",
                  kv_dtype="bf16", tp=tp)
    assert ev.comm_sol_s == pytest.approx(2 * 80 * 2 * (tp - 1) / tp * (4 * 8192 * 2) / (one_way_GBps * 1e9))


@pytest.mark.parametrize("gpu, tp, latency_us, simple_us, one_way_GBps", [
    # NCCL's ring model (tuning.cc): base 3.6 us for LL, then 2 (tp - 1) steps of 0.47 us over NVLink or Infinity
    # Fabric, 1.0 us over PCIe; a ring across 2 HGX nodes has 2 network steps of 2.7 us and its 28 others at 1.8 x.
    # Simple: base 8.4 us, steps of 3.4 (NVLink), 5.7 (PCIe) and 9.6 us (network).
    ("mi300x", 8, 3.6 + 14 * 0.47, 8.4 + 14 * 3.4, 448),
    ("h100-pcie", 4, 3.6 + 6 * 1.0, 8.4 + 6 * 5.7, 64),
    ("h100", 16, 3.6 + 28 * 0.47 * 1.8 + 2 * 2.7, 8.4 + 28 * 3.4 + 2 * 9.6, 400),  # 8 NICs a node (comms 1)
])
def test_without_a_measured_curve_an_all_reduce_pays_nccls_ring_latency(gpu, tp, latency_us, simple_us, one_way_GBps):
    """Llama-3-70B at batch 4: 160 all-reduces of 4 x 8192 x 2 bytes in a decode step, each NCCL's LL ring (its
    latency plus the transfer at a quarter of the link rate), which beats Simple at this size; the prefill's
    1024-times larger messages take Simple (its latency plus the transfer at the full rate)."""
    from kvcalc.estimator import evaluate

    ev = evaluate(load_model("llama-3-70b"), load_gpu(gpu), batch=4, context=1024, prompt=1024, weight_dtype="bf16",
                  kv_dtype="bf16", tp=tp, profile=None)
    transfer = 2 * (tp - 1) / tp * (4 * 8192 * 2) / (one_way_GBps * 1e9)
    assert ev.comm_s == pytest.approx(160 * (latency_us * 1e-6 + 4 * transfer))
    assert ev.comm_sol_s == pytest.approx(160 * transfer)
    assert ev.prefill_comm_s == pytest.approx(160 * (simple_us * 1e-6 + 1024 * transfer))


def test_a_group_beyond_the_interconnect_without_a_scale_out_link_is_a_one_line_error(tmp_path):
    spec = tmp_path / "bridged.toml"
    lines = (SPECS / "h100-pcie.toml").read_text().splitlines(keepends=True)
    spec.write_text("".join(x for x in lines if not x.startswith("scale_out_")))
    r = runner.invoke(app, ["estimate", "-m", "llama-3-70b", "-g", str(spec), "--tp", "4"])
    assert r.exit_code == 2 and "scale_out_bandwidth_GBps" in r.stderr and "Traceback" not in r.stderr
    assert runner.invoke(app, ["estimate", "-m", "llama-3-70b", "-g", str(spec), "--tp", "2"]).exit_code == 0


def test_capacity_names_the_link_its_all_reduces_cross():
    plan = capacity("llama-3.1-405b", "h100", context=8192, engine="roofline")
    assert plan["tensor_parallel"] == 16
    assert plan["assumptions"]["allreduce_link"].startswith("16 GPUs exceed the 8 that NVLink 4 joins")
    e = estimate("llama-3-70b", "h100-pcie", tp=4)
    assert e.inputs.allreduce_link.startswith("4 GPUs exceed the 2 that NVLink bridge joins")
    r = runner.invoke(app, ["estimate", "-m", "llama-3-70b", "-g", "mi300x", "--tp", "16"])
    assert r.exit_code == 2 and "scale_out_bandwidth_GBps" in r.stderr


def test_mi300x_runs_tensor_parallel_from_the_cli():
    r = runner.invoke(app, ["capacity", "-m", "llama-3-70b", "-g", "mi300x", "-c", "8192", "--gpus", "2",
                            "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["tensor_parallel"] == 2


@pytest.mark.parametrize("model, gpu, context, tp", [
    ("llama-3-8b", "h100", 8192, 1), ("mistral-7b", "a100-sxm-80gb", 20000, 1), ("llama-3-70b", "h100", 4096, 2),
])
def test_the_largest_batch_capacity_reports_fits_in_estimate_and_one_more_does_not(model, gpu, context, tp):
    # One memory model: every command reserves one prefill chunk of activations (issue: estimate said 56
    # sequences of llama-3-8b at 8192 need 102 GiB while capacity said they fit).
    seqs = capacity(model, gpu, context=context, gpus=tp)["max_sequences_at_context"]
    assert seqs > 1
    assert estimate(model, gpu, batch=seqs, context=context, tp=tp).memory.fits
    assert not estimate(model, gpu, batch=seqs + 1, context=context, tp=tp).memory.fits


def test_compare_passes_memory_utilization_to_fits():
    # llama-3-8b, 16 x 8192 tokens x 128 KiB = 16 GiB of KV beside 15 GiB of weights: fits in 72 GiB, not in 24.
    low = compare("llama-3-8b", ["mqa"], batch=16, context=8192, memory_utilization=0.3)
    high = compare("llama-3-8b", ["mqa"], batch=16, context=8192, memory_utilization=0.9)
    assert not low[0]["fits"] and high[0]["fits"]


def test_capacity_names_the_real_binding_constraint_for_gpus_asked_for():
    # llama-3-8b (16 GB of bf16 weights) fits one H100: four GPUs asked for are a choice, not a need.
    plan = capacity("llama-3-8b", "h100", context=4096, gpus=4)
    assert plan["min_gpus_for_weights"] == 1
    assert plan["binding"] == "none: the 4 GPUs asked for hold it (1 GPU would hold the weights)"
    r = runner.invoke(app, ["capacity", "-m", "llama-3-8b", "-c", "4096"])
    assert "1 GPU " in r.stdout and "1 GPUs" not in r.stdout
