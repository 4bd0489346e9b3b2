"""Communication as deployed: a profile's collectives follow the part's own links (NVLink, Infinity Fabric, PCIe
with or without peer-to-peer), and never beat the spec's own link."""

import pytest

from kvcalc import estimate, load_model
from kvcalc.engines.links import group_link_kind
from kvcalc.formulas.parallel import (
    allreduce_seconds,
    pcie_allreduce_curve,
    pcie_generation,
)
from kvcalc.specs.catalog import load_gpu, resolve_engine
from kvcalc.specs.profile import AllReduceCurve

# NCCL's all-reduce measured on aiconfigurator-core 0.12.0's 8 x L40S server (PCIe 4.0), data/l40s/comm/nccl/2.27.3/
# nccl_perf.parquet, as fitted in kvcalc/engines/links.py NCCL_PCIE_ALLREDUCE: what vLLM runs beyond 2 PCIe GPUs.
L40S_TP4 = (11.23, 5.02)  # t0 [us], bus bandwidth [GB/s]
L40S_TP8 = (22.14, 1.419)
L40S_TRTLLM_TP4 = (12.6, 4.947)  # TensorRT-LLM's own custom all-reduce there: hardware_specs/profiles/l40s.trtllm.toml


@pytest.mark.parametrize("gpu, n, kind", [
    ("h100-sxm", 8, "nvlink"), ("h100-sxm", 16, None),  # beyond the HGX board: the network
    ("h100-pcie", 2, "nvlink"), ("h100-pcie", 4, "pcie"),  # a bridged pair, then PCIe
    ("l4", 2, "pcie"), ("mi300x", 8, "mesh"), ("gh200", 2, None),
])
def test_each_group_crosses_the_link_its_topology_says(gpu, n, kind):
    assert group_link_kind(load_gpu(gpu), n) == kind


def test_pcie_generation_from_the_x16_bandwidth():
    # PCIe x16 both ways: 32 GB/s (3.0), 64 (4.0), 128 (5.0)
    assert [pcie_generation(b) for b in (32, 64, 128, 63.0)] == [3, 4, 5, 4]


def test_a_bridged_pair_keeps_nvlink_scaled_by_the_link_and_crosses_pcie_beyond_it():
    p = resolve_engine("sglang", load_gpu("h100-nvl"))
    # h100-sxm.sglang [allreduce.tp2]: t0 2.607 us, 304.9 GB/s over NVLink 4 (900 GB/s); the NVL bridge is 600 GB/s
    assert p.allreduce["tp2"].t0_us == 2.607
    assert p.allreduce["tp2"].bus_bandwidth_GBps == pytest.approx(304.9 * 600 / 900)
    # tp4 crosses PCIe 5.0 (128 GB/s): hardware_specs/profiles/rtx-pro-6000.sglang.toml's measured curve
    assert p.allreduce["tp4"].bus_bandwidth_GBps < 40 and "rtx-pro-6000.sglang's measured PCIe curve" in p.method


def test_geforce_cards_without_peer_to_peer_halve_the_measured_pcie_bus_bandwidth():
    p = resolve_engine("vllm", load_gpu("rtx-4090"))  # PCIe 4.0 like the L40S server, pcie_p2p = false
    assert (p.allreduce["tp4"].t0_us, p.allreduce["tp4"].bus_bandwidth_GBps) == (L40S_TP4[0], L40S_TP4[1] / 2)
    assert "no peer-to-peer" in p.method and "vllm's custom all-reduce is off beyond 2 PCIe GPUs" in p.method
    t = resolve_engine("trtllm", load_gpu("rtx-4090"))  # TensorRT-LLM keeps its own kernel, measured over PCIe
    assert (t.allreduce["tp4"].t0_us, t.allreduce["tp4"].bus_bandwidth_GBps) == (L40S_TRTLLM_TP4[0],
                                                                                  L40S_TRTLLM_TP4[1] / 2)
    assert pcie_allreduce_curve(AllReduceCurve(t0_us=5, bus_bandwidth_GBps=20), 64, 32).bus_bandwidth_GBps == 10


def test_a_pcie_tp8_step_is_slower_than_tp4_where_the_measurements_say_so():
    # Llama-3.2-1B (16 layers, d 2048) on A10s (PCIe 4.0: the L40S server's NCCL), batch 64: each of the 32
    # all-reduces a step moves 64 x 2048 x 2 B = 262,144 B; t = t0 + 2 (tp - 1) / tp x bytes / bus bandwidth.
    tp4 = 32 * (L40S_TP4[0] * 1e-3 + 1.5 * 262144 / (L40S_TP4[1] * 1e9) * 1e3)  # 2.866 ms
    tp8 = 32 * (L40S_TP8[0] * 1e-3 + 1.75 * 262144 / (L40S_TP8[1] * 1e9) * 1e3)  # 11.05 ms
    r = {tp: estimate("llama-3.2-1b", "a10", tp=tp, batch=64, context=1024, engine="vllm") for tp in (4, 8)}
    assert r[4].decode.allreduce_ms == pytest.approx(tp4, rel=1e-9)
    assert r[8].decode.allreduce_ms == pytest.approx(tp8, rel=1e-9)
    # halving the kernels' share does not pay for the doubled all-reduce (engine overhead aside)
    steps = {tp: e.decode.ms - e.decode.overhead_ms for tp, e in r.items()}
    assert steps[8] > steps[4]
    # over NVSwitch the same step still gets faster from tp 4 to tp 8
    nv = {tp: estimate("llama-3.2-1b", "h100-sxm", tp=tp, batch=64, context=1024, engine="vllm") for tp in (4, 8)}
    assert nv[8].decode.allreduce_ms < 1.2 * nv[4].decode.allreduce_ms


def test_amd_groups_use_the_ring_model_over_the_infinity_fabric_mesh():
    p = resolve_engine("vllm", load_gpu("mi300x"))
    assert p.allreduce == {} and "RCCL's ring" in p.method


def test_a_measured_curve_never_beats_the_specs_own_link():
    m = load_model("llama-3-8b")  # d 4096, 64 residual blocks
    fast = AllReduceCurve(t0_us=0, bus_bandwidth_GBps=1e4)
    # 1 token x 4096 x 2 B at tp 2 over a 1 GB/s (bidirectional) link: 2 (1/2) 8192 B / 0.5e9 B/s each
    got = allreduce_seconds(m, 1, 2, 2, 1e9, fast)
    assert got == pytest.approx(64 * 8192 / 0.5e9, rel=1e-12)
