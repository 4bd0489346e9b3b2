"""kvcalc calibrate: measure the roofs of this device and write them as a hardware spec.

Bandwidth: a device-to-device copy, counting bytes read and written. Compute: a square matmul per dtype.
Launch overhead: the median time of a one-element add. With a base spec (default h100-sxm on CUDA) the datasheet
roofs stay and the measured fractions become the efficiencies; without one (default on the CPU, which has no
datasheet here) the measured values are the roofs, at efficiency 1.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from kvcalc.errors import KvcalcError
from kvcalc.specs.catalog import load_gpu
from kvcalc.specs.files import write_text
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.validate.run import import_torch, resolve_device
from kvcalc.validate.timing import measure

SIZES = {"cuda": {"copy_bytes": 2**30, "matmul_n": 8192}, "cpu": {"copy_bytes": 2**29, "matmul_n": 1024}}


def measure_bandwidth_GBps(torch, device) -> float:
    n = SIZES[device.type]["copy_bytes"] // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), device, repeats=10, graphs=False)
    return 2 * src.nbytes / t.ms / 1e6  # read + write


def matmul_dtypes(torch, device) -> dict:
    if device.type == "cpu":
        return {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def measure_matmul_tflops(torch, device, dtype) -> float:
    n = SIZES[device.type]["matmul_n"]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = measure(lambda: a @ b, device, repeats=10, graphs=False)
    return 2 * n**3 / t.ms / 1e9


def measure_launch_us(torch, device) -> float:
    x = torch.zeros(1, device=device)
    # One kernel per call: what a launch (and on the CPU, one dispatch) costs beyond its work.
    return measure(lambda: x.add_(1), device, warmup=20, repeats=200, graphs=False).ms * 1e3


def host_memory_GiB() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def calibrate(device: str | None = None, *, base: str | None = None, name: str | None = None) -> tuple[HardwareSpec, dict]:
    """(the spec, the raw measurements)."""
    torch = import_torch()
    dev = resolve_device(torch, device)
    with torch.inference_mode():
        measured = {
            "bandwidth_GBps": measure_bandwidth_GBps(torch, dev),
            "tflops": {k: measure_matmul_tflops(torch, dev, v) for k, v in matmul_dtypes(torch, dev).items()},
            "launch_overhead_us": measure_launch_us(torch, dev),
        }
    if base is None and dev.type == "cuda":
        base = "h100-sxm"
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    stamp = (f"measured by kvcalc calibrate on {where} ({dev.type}), torch {torch.__version__}, "
             f"{datetime.date.today().isoformat()}: copy {measured['bandwidth_GBps']:.1f} GB/s, matmul "
             + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in measured["tflops"].items())
             + f", launch {measured['launch_overhead_us']:.1f} us")
    if base:
        b = load_gpu(base)
        main = "bf16" if "bf16" in measured["tflops"] and b.peak_tflops.bf16 else "fp32"
        data = b.model_dump()
        data.update(
            name=name or f"{b.name}-calibrated", aliases=[], sources=[*b.sources, stamp],
            launch_overhead_us=measured["launch_overhead_us"],
            efficiency={
                "memory": min(measured["bandwidth_GBps"] / b.memory_bandwidth_GBps, 1.0),
                "compute": min(measured["tflops"][main] / b.peak_flops(main) * 1e12, 1.0),
                "source": f"measured against {b.name}'s datasheet roofs ({main} matmul); {stamp}",
            },
        )
    else:
        data = {
            "name": name or f"{dev.type}-calibrated", "display_name": f"{where} ({dev.type}, calibrated)",
            "vendor": platform.system(), "sources": [stamp],
            "notes": "No datasheet: the measured copy bandwidth and matmul throughput are the roofs.",
            "memory_GiB": host_memory_GiB() if dev.type == "cpu" else torch.cuda.get_device_properties(dev).total_memory / 2**30,
            "memory_bandwidth_GBps": measured["bandwidth_GBps"],
            "peak_tflops": dict(measured["tflops"]),
            "launch_overhead_us": measured["launch_overhead_us"],
            "efficiency": {"memory": 1.0, "compute": 1.0, "source": f"the roofs are measured: {stamp}"},
        }
    try:
        return HardwareSpec.model_validate(data), measured
    except ValueError as e:
        raise KvcalcError(f"calibrate: the measured spec is invalid: {e}") from None


def write_spec(spec: HardwareSpec, out: Path) -> None:
    from kvcalc.specs.toml_out import spec_to_toml

    write_text(out, f"# Written by `kvcalc calibrate`\n{spec_to_toml(spec)}", "--out")
