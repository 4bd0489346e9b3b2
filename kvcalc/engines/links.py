"""Which all-reduce (and all-to-all) an engine runs over a part's links, as deployed.

A profile's measured collectives belong to the link they were measured on: an H100 SXM's vLLM all-reduce is vLLM's
custom one-shot/two-shot kernel over NVSwitch, which an H100 PCIe pair or an 8-card PCIe server does not have.
Carrying a profile to another part therefore carries its collectives only where the part's group of n GPUs crosses the
same kind of link, and otherwise takes them from the measured system that does cross that link:

    nvlink (NVSwitch, an NVLink bridge pair, an NVLink mesh) from nvlink: the source's curve, its bus bandwidth times
        the ratio of the two groups' NVLink bandwidths (formulas/parallel.group_link_bandwidth), t0 kept;
    pcie (PCIe-only cards; a bridged pair's groups beyond 2): the collective the engine runs there, as measured on
        the bundled PCIe server of the same PCIe generation (PCIE_MEASURED), scaled to the part's PCIe link and halved
        without peer-to-peer (formulas/parallel.pcie_allreduce_curve): vLLM's and SGLang's all-reduce is NCCL's
        beyond 2 GPUs or without peer-to-peer (NCCL_PCIE_ALLREDUCE), else the engine's own measured custom kernel;
        TensorRT-LLM's is its measured custom all-reduce; all-to-all is NCCL's. Those measurements already show what datasheets do not:
        past 2 GPUs an all-reduce over PCIe slows down (L40S, vLLM: bus bandwidth 19.3 GB/s at tp 2, 3.8 at tp 4, 2.1
        at tp 8), which is also why vLLM turns its custom all-reduce off on more than two PCIe-only GPUs and uses NCCL
        (vllm/distributed/device_communicators/custom_all_reduce.py: "Custom allreduce is disabled because it's not
        supported on more than two PCIe-only GPUs"). NCCL's own all-reduce on the same 8 x L40S server (PCIe 4.0,
        32 GB/s each way per GPU; aiconfigurator-core 0.12.0 systems/l40s.yaml and data/l40s/comm/nccl/2.27.3/
        nccl_perf.parquet, op all_reduce, half) collapses the same way: a 512 MB all-reduce takes 26.7 ms over 2
        GPUs, 156 ms over 4 and 649 ms over 8 (bus bandwidth ~20, ~5 and ~1.4 GB/s), so the custom curves stand in
        for NCCL there within ~30 %; the 8 x RTX PRO 6000 server (PCIe 5.0) holds up (13.9, 30.5, 38.1 ms);
    infinity-fabric-mesh (AMD): no measured curve exists here; RCCL is NCCL's port and runs its ring, so the group is
        timed by NCCL's ring cost model over the mesh's tp - 1 links (formulas/parallel.nccl_ring), as the roofline is.
        vLLM's ROCm custom and quick all-reduce (VLLM_ROCM_QUICK_REDUCE_QUANTIZATION) are not modelled apart;
    beyond the box (the scale-out network) or an unstated link: no curve; the NCCL ring model over the spec's links.
"""

from __future__ import annotations

from collections.abc import Callable

from kvcalc.formulas.parallel import (
    group_link_bandwidth,
    pcie_allreduce_curve,
    pcie_generation,
)
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.specs.profile import AllReduceCurve, EngineProfile

# NCCL's own all-reduce on the same PCIe servers: aiconfigurator-core 0.12.0, systems/data/l40s/comm/nccl/2.27.3 and
# rtx_pro_6000_server/comm/nccl/2.29.2, nccl_perf.parquet (op_name all_reduce, nccl_dtype half), fitted by
# kvcalc/ledgers/kernel_tables.fit_allreduce (t0 [us], bus bandwidth [GB/s]; 12 message sizes fitted, 9 held out,
# held-out median |error| 8.3, 2.8, 4.4 % on the L40S server and 9.7, 5.3, 13.1 % on the RTX PRO 6000 server).
NCCL_PCIE_ALLREDUCE = {
    "l40s": {"tp2": (7.446, 18.57), "tp4": (11.23, 5.02), "tp8": (22.14, 1.419)},
    "rtx-pro-6000": {"tp2": (6.89, 33.86), "tp4": (13.72, 24.12), "tp8": (26.54, 20.16)},
}
NCCL_PCIE_SOURCE = "NCCL all_reduce measured in aiconfigurator-core 0.12.0's nccl_perf.parquet"
# Engines whose custom all-reduce switches itself off on more than two PCIe-only GPUs (no full NVLink) or without
# peer-to-peer access, and then runs NCCL: vllm/distributed/device_communicators/custom_all_reduce.py ("Custom
# allreduce is disabled because it's not supported on more than two PCIe-only GPUs"; the _can_p2p check) and SGLang's
# sglang/srt/distributed/device_communicators/custom_all_reduce.py, adapted from it with the same checks.
CUSTOM_ALLREDUCE_NEEDS_NVLINK_BEYOND_2 = ("vllm", "sglang")

# Bundled measured profiles of PCIe-only servers (aiconfigurator-core 0.12.0's l40s and rtx_pro_6000_server comm
# tables), by the PCIe generation of their links; a generation without one takes the nearest.
PCIE_MEASURED = {4: "l40s", 5: "rtx-pro-6000"}
GROUP_SIZES = (2, 4, 8)


def group_link_kind(hw: HardwareSpec, n: int) -> str | None:
    """The kind of link a group of n GPUs of this part crosses: nvlink, pcie, mesh, or None (the scale-out network
    or a link the spec does not state)."""
    beyond = hw.scale_up_gpus is not None and n > hw.scale_up_gpus
    if hw.topology == "pcie" or (hw.topology == "nvlink-bridge" and beyond):
        return "pcie"
    if beyond or hw.topology is None:
        return None
    return "mesh" if hw.topology == "infinity-fabric-mesh" else "nvlink"


def pcie_link_GBps(hw: HardwareSpec, n: int) -> float | None:
    """The PCIe bandwidth (bidirectional, x16) a group of n GPUs crosses: the card's own, or a bridged pair's
    scale-out link; None where the spec does not list it."""
    if hw.topology == "nvlink-bridge" and hw.scale_up_gpus is not None and n > hw.scale_up_gpus:
        return hw.scale_out_bandwidth_GBps
    return hw.interconnect_bandwidth_GBps


def carry_collectives(source: EngineProfile, source_hw: HardwareSpec, target_hw: HardwareSpec,
                      measured: Callable[[str, str], EngineProfile | None],
                      load_gpu: Callable[[str], HardwareSpec]) -> tuple[dict, dict, list[str]]:
    """(all-reduce curves by tpN, all-to-all curves by epN, what was done, in words) for `source`'s engine on
    `target_hw`. measured(gpu, engine): a bundled measured profile or None; load_gpu: a bundled spec by name."""
    out = {"allreduce": {}, "alltoall": {}}
    said: list[str] = []
    for table, prefix in (("allreduce", "tp"), ("alltoall", "ep")):
        for n in GROUP_SIZES:
            key, kind = f"{prefix}{n}", group_link_kind(target_hw, n)
            curve, how = None, None
            target_bw = group_link_bandwidth(target_hw, n) if kind == "nvlink" else None
            if target_bw and group_link_kind(source_hw, n) == "nvlink" and key in getattr(source, table):
                ratio = target_bw / group_link_bandwidth(source_hw, n)
                src = getattr(source, table)[key]
                curve = AllReduceCurve(t0_us=src.t0_us, bus_bandwidth_GBps=src.bus_bandwidth_GBps * ratio)
                how = f"{source.gpu}'s NVLink curve{_kernels(src)} x {ratio:.3g} (link ratio)"
            elif kind == "pcie":
                curve, how = _pcie_curve(source.engine, table, key, target_hw, n, measured, load_gpu)
            if curve is not None:
                out[table][key] = curve
                said.append(f"{table} {key}: {how}")
    kinds = {group_link_kind(target_hw, n) for n in GROUP_SIZES}
    if "mesh" in kinds:
        said.append("Infinity Fabric groups: RCCL's ring, timed by NCCL's ring cost model over the mesh's links")
    if None in kinds:
        said.append("groups beyond the box or over an unstated link: NCCL's ring cost model over the spec's links")
    return out["allreduce"], out["alltoall"], said


def _pcie_curve(engine: str, table: str, key: str, hw: HardwareSpec, n: int, measured, load_gpu):
    link = pcie_link_GBps(hw, n)
    if not link:
        return None, None
    gen = pcie_generation(link)
    ref_gpu = PCIE_MEASURED.get(gen) or PCIE_MEASURED[min(PCIE_MEASURED, key=lambda g: abs(g - gen))]
    p2p = hw.pcie_p2p is not False
    if table == "allreduce" and engine in CUSTOM_ALLREDUCE_NEEDS_NVLINK_BEYOND_2 and (n > 2 or not p2p):
        t0, bus = NCCL_PCIE_ALLREDUCE[ref_gpu][key]
        ref_link = load_gpu(ref_gpu).interconnect_bandwidth_GBps
        curve = pcie_allreduce_curve(AllReduceCurve(t0_us=t0, bus_bandwidth_GBps=bus), ref_link, link, p2p)
        how = (f"{ref_gpu}'s {NCCL_PCIE_SOURCE} ({engine}'s custom all-reduce is off "
               + ("beyond 2 PCIe GPUs" if n > 2 else "without peer-to-peer") + f") x {link / ref_link:.3g} (PCIe link "
               "ratio)" + ("" if p2p else " x 0.5 (no peer-to-peer: through host memory)"))
        return curve, how
    for eng in (engine, "vllm"):
        ref = measured(ref_gpu, eng)
        if ref is not None and key in getattr(ref, table):
            ref_link = load_gpu(ref_gpu).interconnect_bandwidth_GBps
            curve = pcie_allreduce_curve(getattr(ref, table)[key], ref_link, link, p2p)
            how = (f"{ref_gpu}.{eng}'s measured PCIe curve{_kernels(getattr(ref, table)[key])} x "
                   f"{link / ref_link:.3g} (PCIe link ratio)"
                   + ("" if p2p else " x 0.5 (no peer-to-peer: through host memory)"))
            return curve, how
    return None, None


def _kernels(curve: AllReduceCurve) -> str:
    """Which collective implementation the curve measured (its fit record's kernels), in brackets."""
    return f" ({curve.fit.kernels})" if curve.fit is not None else ""


def dispatch_copies(profile: EngineProfile | None, ep: int) -> float | None:
    """How many GPUs' worth of each token the profile's engine moves in an expert-parallel dispatch, where it is not
    an all-to-all of the top_k copies (None: TensorRT-LLM, the roofline): vLLM's default all2all backend,
    allgather_reducescatter (vllm/config/parallel.py ParallelConfig.all2all_backend, 0.24; AgRsAll2AllManager:
    all_gatherv to dispatch, reduce_scatterv to combine), gathers every token to every one of the ep GPUs, ep / top_k
    times the bytes (the thirty-third audit, links 4: Llama 4 Scout at EP 8 had moved 147 MB a GPU and MoE layer
    where vLLM moves 1,174). SGLang likewise under data-parallel attention with its default --moe-a2a-backend none
    (python/sglang/srt/server_args.py of 0.5.14; plan launches no other): the StandardDispatcher sends nothing
    to all, the layer communicator gathers every group's tokens onto every rank before the MoE (layers/communicator.py
    dp_gather_partial) and reduce-scatters them after (the thirty-sixth audit, launch 2: Scout at EP 8 had been timed
    as a top-1 all-to-all, 1/8 of the bytes). An engine's rule, so here and not in formulas/parallel.py, which takes
    the copies."""
    return float(ep) if profile is not None and profile.engine in ("vllm", "sglang") else None
