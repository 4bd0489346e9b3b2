"""HardwareSpec: one accelerator's memory, bandwidth and dense peak throughput, with sources."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from kvcalc.errors import KvcalcError
from kvcalc.specs._base import StrictModel

GiB = 1024**3


class PeakTflops(StrictModel):
    """Dense tensor-core peaks in TFLOPS (TOPS for int8). Vendors often print 2:4-sparse figures, twice these."""

    fp32: PositiveFloat | None = None
    tf32: PositiveFloat | None = None
    bf16: PositiveFloat | None = None
    fp16: PositiveFloat | None = None
    fp8: PositiveFloat | None = None
    int8: PositiveFloat | None = None

    def available(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Efficiency(StrictModel):
    """Fractions of the datasheet roofs that real kernels reach; `kvcalc calibrate` measures them."""

    memory: float = Field(gt=0, le=1)
    compute: float = Field(gt=0, le=1)
    source: str


class HardwareSpec(StrictModel):
    name: str
    aliases: list[str] = []
    display_name: str
    vendor: str
    sources: list[str] = Field(min_length=1)
    notes: str = ""
    memory_GiB: PositiveFloat = Field(description="HBM/GDDR capacity; vendors' 'GB' for these parts is binary GiB")
    memory_bandwidth_GBps: PositiveFloat = Field(description="decimal GB/s (1e9 bytes/s)")
    peak_tflops: PeakTflops
    interconnect: str | None = None
    interconnect_bandwidth_GBps: PositiveFloat | None = None
    tdp_W: PositiveFloat | None = None
    launch_overhead_us: float | None = Field(
        None, ge=0, description="time one kernel launch adds (kvcalc calibrate measures it); unset: not modelled"
    )
    efficiency: Efficiency

    @property
    def memory_bytes(self) -> float:
        return self.memory_GiB * GiB

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
