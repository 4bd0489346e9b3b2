"""HardwareSpec: one accelerator's memory, bandwidth and dense peak throughput, with sources."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import Field, model_validator

from kvcalc.errors import KvcalcError
from kvcalc.specs._base import StrictModel

GiB = 1024**3
# Physical ranges (a 5e-324 bandwidth or a 1e308 peak is a broken spec, not a machine). A peak down to a MFLOP/s: a CPU
# without bf16 instructions (AVX2 only) emulates bf16 matmuls at about 1 GFLOP/s, which `kvcalc calibrate --device
# cpu` measures (the twenty-fifth session: 0.00095 TFLOPS on an AVX2 EPYC had been refused as an invalid spec)
Tflops = Annotated[float, Field(ge=1e-6, le=1e6)]
Bandwidth = Annotated[float, Field(ge=1e-2, le=1e7, description="decimal GB/s")]


def capability(cc: str | None) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA compute capability ('9.0' -> (9, 0)); None for an AMD target or none given."""
    if not cc or cc.startswith("gfx"):
        return None
    major, minor = cc.split(".")
    return int(major), int(minor)


def hopper(cc: str | None) -> bool:
    return capability(cc) == (9, 0)


def datacenter_blackwell(cc: str | None) -> bool:
    """Compute capability 10.x (B200, B300, GB200, GB300): vLLM's is_device_capability_family(100), SGLang's
    is_sm100_supported."""
    return (capability(cc) or (0, 0))[0] == 10


class PeakTflops(StrictModel):
    """Dense tensor-core peaks in TFLOPS (TOPS for int8). Vendors often print 2:4-sparse figures, twice these."""

    fp32: Tflops | None = None
    tf32: Tflops | None = None
    bf16: Tflops | None = None
    fp16: Tflops | None = None
    fp8: Tflops | None = None
    fp4: Tflops | None = None  # Blackwell's fp4 tensor cores (NVFP4, MXFP4)
    int8: Tflops | None = None

    @model_validator(mode="after")
    def _at_least_one(self):  # an empty table had loaded and failed later, unnamed, and `show -f toml` had written a
        # file it could not read back (the thirty-fourth audit, specs 7)
        if not self._available:
            raise ValueError("no peak given; expected at least one of fp32, tf32, bf16, fp16, fp8, fp4, int8")
        return self

    def available(self) -> dict[str, float]:
        return self._available

    @functools.cached_property
    def _available(self) -> dict[str, float]:  # the spec is frozen: computed once, not once per operator
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Efficiency(StrictModel):
    """Fractions of the datasheet roofs that real kernels reach; `kvcalc calibrate` measures them."""

    # Down to 1e-9: a slow device calibrated against a fast one's datasheet (a CPU against an H100: ~1e-3 compute, and
    # 1e-6 where the CPU emulates bf16) is a real measurement, while 5e-324 or 0 is a broken spec.
    memory: float = Field(ge=1e-9, le=1)
    compute: float = Field(ge=1e-9, le=1)
    source: str


Topology = Literal["nvswitch", "nvlink-bridge", "nvlink-mesh", "infinity-fabric-mesh", "pcie"]


class HardwareSpec(StrictModel):
    # a slug: the name finds the part's engine profiles (hardware_specs/profiles/NAME.ENGINE.toml), so a path in it had
    # loaded a profile from anywhere, and a newline had split the one-line warnings (the thirty-fourth audit, specs 4)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
    aliases: list[str] = []
    display_name: str
    vendor: Literal["NVIDIA", "AMD", "other"] = Field(
        description="picks vendor-specific formats and kernels (NVFP4's fp4 peak, ROCm images); 'other' for a part "
        "of neither (a CPU calibrated by kvcalc calibrate). The ninth round, H19: 'nvidia' had dequantised NVFP4 on a "
        "B200 in silence")
    sources: list[str] = Field(min_length=1)
    notes: str = ""
    compute_capability: str | None = Field(
        None, pattern=r"^([1-9]|1[0-9])\.[0-9]$|^gfx[0-9a-f]{3,4}$", description="NVIDIA's compute capability (8.9) or AMD's LLVM "
        "target (gfx942): what the engines gate their kernels and number formats by (engines/formats.py engine_format_refusal); "
        "unset: not stated, nothing refused by it")
    memory_GiB: float = Field(ge=1e-3, le=1e6, description="HBM/GDDR capacity; vendors' 'GB' for these parts is binary GiB")
    visible_memory_GiB: float | None = Field(
        None, ge=1e-3, le=1e6, description="total that torch.cuda.mem_get_info reports (what engines budget from); "
        "below memory_GiB by what the driver and ECC reserve. Unset: memory_GiB is used")
    smi_memory_MiB: float | None = Field(
        None, ge=1, le=1e9, description="the total nvidia-smi prints (memory.total) [MiB], above what torch reports "
        "and below the datasheet's: what SGLang sizes its own memory fraction and prefill chunk by (get_nvgpu_memory_"
        "capacity). Unset: memory_GiB x 1024; AMD parts use visible_memory_GiB (SGLang reads torch's total there)")
    memory_bandwidth_GBps: Bandwidth
    peak_tflops: PeakTflops
    interconnect: str | None = None
    interconnect_bandwidth_GBps: Bandwidth | None = None
    interconnect_peer_links: int | None = Field(
        None, ge=1, le=1024, description="links to peers in a fully connected mesh (no switch), each carrying "
        "interconnect_bandwidth_GBps / this; unset: a switch gives every pair the full bandwidth")
    scale_up_gpus: int | None = Field(
        None, ge=1, le=1_000_000, description="GPUs the interconnect joins (2 for an NVLink bridge pair); a "
        "tensor-parallel group beyond them crosses scale_out_bandwidth_GBps; unset: no limit")
    node_gpus: int = Field(
        8, ge=1, le=1024, description="GPUs one node holds (a server, or a rack's compute tray), the most a "
        "Kubernetes pod of plan's manifests asks for; 8 (an HGX or MI300X platform board) unless the spec says")
    scale_out_bandwidth_GBps: Bandwidth | None = Field(
        None, description="bidirectional bandwidth per GPU beyond scale_up_gpus (PCIe for bridged cards)")
    scale_out_nic_per_gpu: bool = Field(
        False, description="whether every GPU of the scale-up domain has a scale-out NIC of its own (the DGX "
        "datasheets' one ConnectX per GPU): NCCL runs a ring channel per NIC, so a ring past scale_up_gpus crosses "
        "between nodes over all of a node's NICs at once, and an all-to-all sends over its own NIC only the bytes "
        "for GPUs in other nodes. False: the scale-out link is one GPU's alone (a bridged pair's PCIe)")
    topology: Topology | None = Field(
        None, description="how GPUs of one box reach each other: nvswitch (every pair at the full NVLink bandwidth), "
        "nvlink-bridge (pairs; beyond them PCIe), nvlink-mesh (NVLink point to point, no switch), "
        "infinity-fabric-mesh (AMD xGMI, one link per peer), pcie (no GPU link: the host's PCIe switches and "
        "sockets); unset: not stated")
    pcie_p2p: bool | None = Field(
        None, description="whether the driver lets GPUs read each other's memory over PCIe (peer-to-peer); without "
        "it NCCL stages every transfer through host memory. Unset: not stated (taken as enabled)")
    unsupported_engines: dict[str, str] = Field(
        default_factory=dict, description="engine -> why it does not run on this part, with the source that says so")
    tdp_W: float | None = Field(None, gt=0, le=1e6)
    compute_units: int | None = Field(
        None, ge=1, le=100_000, description="streaming multiprocessors (NVIDIA) or compute units (AMD): what "
        "kernels sized per SM allocate by (vLLM's top-k/top-p buffer); unset: not stated")
    launch_overhead_us: float | None = Field(
        None, ge=0, le=1e6, description="time one kernel launch adds (kvcalc calibrate measures it); unset: not modelled"
    )
    efficiency: Efficiency

    @model_validator(mode="after")
    def _visible_within_capacity(self):
        if self.visible_memory_GiB is not None and self.visible_memory_GiB > self.memory_GiB:
            raise ValueError(f"visible_memory_GiB {self.visible_memory_GiB} exceeds memory_GiB {self.memory_GiB}")
        if self.smi_memory_MiB is not None and self.smi_memory_MiB > self.memory_GiB * 1024:
            raise ValueError(f"smi_memory_MiB {self.smi_memory_MiB:g} exceeds memory_GiB {self.memory_GiB:g} "
                             f"({self.memory_GiB * 1024:g} MiB)")
        # nvidia-smi's total is above what torch reports (81,559 MiB beside 79.22 GiB on an H100), or equal where the
        # spec takes the smi figure as visible; below it, SGLang's own fraction had come out at -2.728 and been
        # advised as a flag value (the thirty-eighth audit, capacity 4). visible_memory_GiB is given to 0.01 GiB.
        if (self.smi_memory_MiB is not None and self.visible_memory_GiB is not None
                and self.smi_memory_MiB < (self.visible_memory_GiB - 0.005) * 1024):
            raise ValueError(f"smi_memory_MiB {self.smi_memory_MiB:g} is below visible_memory_GiB "
                             f"{self.visible_memory_GiB:g} ({self.visible_memory_GiB * 1024:,.0f} MiB): nvidia-smi's "
                             "total is at least what torch reports")
        engines = ("vllm", "sglang", "trtllm", "gpt-fast")  # the profiles' engines (specs/profile.py)
        unknown = sorted(set(self.unsupported_engines) - set(engines))
        if unknown:  # the tenth audit, H8: a misspelt 'vLLM' key had been taken, and vLLM still ran
            raise ValueError(f"unsupported_engines: {unknown[0]!r} is not an engine; expected {', '.join(engines)}")
        # link fields that contradict each other (the thirty-third audit, links 7): a mesh's peer links past the
        # peers it joins had split the bandwidth (1,024 links on an 8-GPU board: 0.875 GB/s a pair); a bridge with no
        # pair size had carried TP 16 over one bridge
        if (self.interconnect_peer_links is not None and self.scale_up_gpus is not None
                and self.interconnect_peer_links > self.scale_up_gpus - 1):
            raise ValueError(f"interconnect_peer_links: {self.interconnect_peer_links} links to peers where "
                             f"scale_up_gpus joins {self.scale_up_gpus} GPUs; expected at most {self.scale_up_gpus - 1}")
        link, out = self.interconnect_bandwidth_GBps, self.scale_out_bandwidth_GBps
        if link is not None and out is not None and out > link:  # the thirty-fourth audit, specs 8: TP 16 across
            # two nodes at a 5,000 GB/s scale-out had beaten one node's NVLink
            raise ValueError(f"scale_out_bandwidth_GBps: {out:g} exceeds interconnect_bandwidth_GBps {link:g}; the "
                             "link beyond scale_up_gpus is the slower one")
        if link is not None and link > self.memory_bandwidth_GBps:  # a GPU cannot feed a link faster than its memory
            raise ValueError(f"interconnect_bandwidth_GBps: {link:g} exceeds memory_bandwidth_GBps "
                             f"{self.memory_bandwidth_GBps:g}; expected a link no faster than the memory it reads")
        if self.scale_out_nic_per_gpu and (self.topology == "nvlink-bridge" or self.scale_up_gpus is None):
            # the fortieth audit, comms 1: the NICs of a node spread its rings; a bridged pair's scale-out is the
            # host's PCIe, and without a domain there is nothing to cross
            raise ValueError("scale_out_nic_per_gpu: a NIC per GPU beyond the scale-up domain needs scale_up_gpus and "
                             "a topology other than nvlink-bridge (whose pairs cross the host's PCIe)")
        if self.topology == "nvlink-bridge" and self.scale_up_gpus is None:
            raise ValueError("topology: nvlink-bridge joins pairs of cards; expected scale_up_gpus (2) with it")
        cc = self.compute_capability
        if cc is not None and self.vendor != "other" and cc.startswith("gfx") != (self.vendor == "AMD"):
            # the twenty-third audit, F7: an AMD part with "9.0" had been taken as Hopper
            want = "an LLVM target such as gfx942" if self.vendor == "AMD" else "a compute capability such as 9.0"
            raise ValueError(f"compute_capability: {cc!r} on an {self.vendor} part; expected {want}")
        return self

    @property
    def memory_bytes(self) -> float:
        return self.memory_GiB * GiB

    @property
    def visible_memory_bytes(self) -> float:
        return (self.visible_memory_GiB or self.memory_GiB) * GiB

    @property
    def device_total_MiB(self) -> float:
        """The device's total as SGLang reads it [MiB] (sgl-project/sglang python/sglang/srt/utils/common.py
        get_device_memory_capacity): nvidia-smi's memory.total on NVIDIA parts (smi_memory_MiB, else the datasheet's
        memory_GiB x 1024), torch's total_memory on AMD ones (get_amdgpu_memory_capacity; visible_memory_GiB)."""
        if self.vendor == "AMD":
            return self.visible_memory_bytes / 2**20
        return self.smi_memory_MiB if self.smi_memory_MiB is not None else self.memory_GiB * 1024

    @property
    def bandwidth_Bps(self) -> float:
        return self.memory_bandwidth_GBps * 1e9

    def peak_flops(self, dtype: str) -> float:
        """Dense peak in FLOP/s for a compute dtype, falling back fp16 <-> bf16 where only one is listed."""
        peaks = self.peak_tflops.available()
        for candidate in (dtype, {"fp16": "bf16", "bf16": "fp16"}.get(dtype)):
            if candidate in peaks:
                return peaks[candidate] * 1e12
        raise KvcalcError(f"--gpu: {self.name} lists no {dtype} peak (peak_tflops.{dtype}), which this workload computes at")
