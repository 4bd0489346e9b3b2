"""Storage sizes of the number formats kvcalc knows, and which tensor-core peak a format computes at."""

from __future__ import annotations

from kvcalc.errors import KvcalcError

# Bytes per stored element, scales included (each format's layout as its checkpoints store it):
#   int4          packed 4-bit values + one bf16 scale per group of 128 (symmetric GPTQ/AWQ g128): 0.5 + 2/128
#   int4-gN       the same with groups of N (32, 64, 128) and a packed 4-bit zero point per group (AWQ's qzeros,
#                 GPTQ's asymmetric): 0.5 + (2 + 0.5)/N
#   int8-wo       8-bit weights, 16-bit activations (W8A16 weight-only); per-channel scales < 0.05 %, not counted
#   int8-gN       the same with groups of N (32, 64, 128): GPTQ 8-bit's fp16 scale and 8-bit zero point (qzeros) per
#                 group and output column: 1 + (2 + 1)/N (the sixth audit: read as int8-wo, 1.8 % short at N = 128)
#   int8, fp8     W8A8 (SmoothQuant int8, fp8 per-tensor or per-channel): 1 byte; per-channel scales not counted
#   fp8-block     fp8 with one fp32 scale per 128 x 128 block (DeepSeek-V3, Qwen3 FP8): 1 + 4/16384
#   nvfp4         fp4 (e2m1) with one fp8 (e4m3) scale per 16 elements: 0.5 + 1/16 (NVIDIA's NVFP4)
#   mxfp4         fp4 (e2m1) with one e8m0 scale per 32 elements: 0.5 + 1/32 (OCP microscaling; gpt-oss)
INT4_GROUP_SIZE = 128
FP8_BLOCK_SIDE = 128  # weight_block_size [128, 128]: a slice of a split matrix holds whole blocks of this side
FP8_BLOCK = FP8_BLOCK_SIDE * FP8_BLOCK_SIDE
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "fp8-block": 1.0 + 4.0 / FP8_BLOCK,
    "int8": 1.0,
    "int8-wo": 1.0,
    "int8-g32": 1.0 + 3.0 / 32,
    "int8-g64": 1.0 + 3.0 / 64,
    "int8-g128": 1.0 + 3.0 / 128,
    "int4": 0.5 + 2.0 / INT4_GROUP_SIZE,
    "int4-g32": 0.5 + 2.5 / 32,
    "int4-g64": 0.5 + 2.5 / 64,
    "int4-g128": 0.5 + 2.5 / 128,
    "nvfp4": 0.5 + 1.0 / 16,
    "mxfp4": 0.5 + 1.0 / 32,
}
WEIGHT_DTYPES = tuple(BYTES_PER_ELEMENT)
# KV caches: 16-bit; fp8 (e4m3; per-tensor or per-head scales are a few floats a layer, not per token: not counted);
# int8 (TensorRT-LLM's, one per-tensor scale); int4 with a bf16 scale per started 128 of each head vector
# (formulas/kv.py int4_kv_bytes_per_token_per_layer); nvfp4 (an fp8 scale per 16, as
# NVIDIA's fp4 KV cache stores it).
KV_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "nvfp4")
FP4_FORMATS = ("nvfp4", "mxfp4")
WEIGHT_ONLY = ("int4", "int4-g32", "int4-g64", "int4-g128", "int8-wo", "int8-g32", "int8-g64", "int8-g128")


def bytes_per_element(dtype: str, *, flag: str = "dtype") -> float:
    """Bytes one stored element takes (int4 counts its group scales)."""
    try:
        return BYTES_PER_ELEMENT[dtype]
    except KeyError:
        raise KvcalcError(f"{flag}: unknown dtype {dtype!r}; expected one of {', '.join(BYTES_PER_ELEMENT)}") from None


def activation_dtype(weight_dtype: str) -> str:
    """Activations stay in 16-bit floating point; fp16 checkpoints keep fp16, everything else runs bf16."""
    return "fp16" if weight_dtype == "fp16" else ("fp32" if weight_dtype == "fp32" else "bf16")


def matmul_compute_dtype(weight_dtype: str, peak_tflops: dict[str, float], vendor: str = "NVIDIA") -> str:
    """Which tensor-core peak a matmul with these weights runs at.

    fp8 (and fp8-block) and int8 weights run at the fp8/int8 peak where the part has one (W8A8); mxfp4 at the fp4
    peak where the part has one (Blackwell, CDNA 4), nvfp4 only where that part is NVIDIA's: AMD's scaled MFMA
    instructions read OCP MX blocks (an e8m0 scale per 32), not NVFP4's e4m3 scale per 16, so an NVFP4 checkpoint
    there is dequantised (the seventh audit, B12: MI355X prefill had been 3x too fast); otherwise, and always for the
    int4 and int8-wo formats, the weights are dequantised and the product runs at the activation dtype's peak
    (weight-only, as Marlin or AWQ kernels do).
    """
    base = {"fp8-block": "fp8"}.get(weight_dtype, weight_dtype)
    if base in ("fp8", "int8") and base in peak_tflops:
        return base
    if weight_dtype in FP4_FORMATS and "fp4" in peak_tflops and (weight_dtype == "mxfp4" or vendor == "NVIDIA"):
        return "fp4"
    return activation_dtype(weight_dtype)
