"""Storage sizes of the number formats kvcalc knows, and which tensor-core peak a format computes at."""

from __future__ import annotations

from kvcalc.errors import KvcalcError

# int4 is stored as packed 4-bit values plus one bf16 scale per group of 128 weights (GPTQ/AWQ g128):
# 0.5 + 2/128 bytes per weight. fp8 and int8 per-channel scales add one value per output row (< 0.05 %)
# and are not counted.
INT4_GROUP_SIZE = 128
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5 + 2.0 / INT4_GROUP_SIZE,
}
WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
KV_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")


def bytes_per_element(dtype: str, *, flag: str = "dtype") -> float:
    """Bytes one stored element takes (int4 counts its group scales)."""
    try:
        return BYTES_PER_ELEMENT[dtype]
    except KeyError:
        raise KvcalcError(f"{flag}: unknown dtype {dtype!r}; expected one of {', '.join(BYTES_PER_ELEMENT)}") from None


def activation_dtype(weight_dtype: str) -> str:
    """Activations stay in 16-bit floating point; fp16 checkpoints keep fp16, everything else runs bf16."""
    return "fp16" if weight_dtype == "fp16" else ("fp32" if weight_dtype == "fp32" else "bf16")


def matmul_compute_dtype(weight_dtype: str, peak_tflops: dict[str, float]) -> str:
    """Which tensor-core peak a matmul with these weights runs at.

    fp8 and int8 weights run at the fp8/int8 peak where the part has one (W8A8); otherwise, and always for
    int4, the weights are dequantised and the product runs at the activation dtype's peak (weight-only
    quantisation, as Marlin or AWQ kernels do).
    """
    if weight_dtype in ("fp8", "int8") and weight_dtype in peak_tflops:
        return weight_dtype
    return activation_dtype(weight_dtype)
