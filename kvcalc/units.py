"""Human-readable numbers for tables (binary byte units, as device memory is sized)."""

from __future__ import annotations

import math
import re


def fmt_bytes(n: float) -> str:
    sign, n = ("-" if n < 0 else ""), abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:,.0f} {unit}" if unit == "B" else f"{sign}{n:,.2f} {unit}"
        n /= 1024
    raise AssertionError


def fmt_count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f}{unit}"
    return f"{n:,.0f}"


def fmt_flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} FLOP"


def fmt_ms(ms: float) -> str:
    """A duration for a table: milliseconds below 10 s ('8.412 ms', '2,736.1 ms'), seconds from 10 s on ('56.9 s'),
    so a long prefill or latency never reads as five-digit milliseconds (newcomer review, finding 7)."""
    if ms >= 9_999.95:  # what would print as 10,000.0 ms
        return f"{ms / 1e3:,.1f} s"
    return f"{ms:,.3f} ms" if ms < 10 else f"{ms:,.1f} ms"


# A JSON key that holds a count of bytes: 'bytes', 'kv_cache_bytes', 'bytes_per_token', 'weights_bytes_per_gpu',
# 'kv_bytes_needed_per_gpu'; not a ratio of two ('kv_bytes_per_token_vs_own') or a size per element or parameter.
_BYTE_COUNT = re.compile(r"(^|_)bytes(_needed)?(_per_(token|sequence|gpu|layer|replica|request|stage))*$")


def is_byte_count(key: str) -> bool:
    return bool(_BYTE_COUNT.search(key))


def round_half_up(x: float) -> int:
    """The nearest integer, halves away from zero (x.5 -> x + 1; -x.5 -> -(x + 1)); Python's round() rounds halves
    to even."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def integer_bytes(obj):
    """A JSON document with every finite float under a byte-count key (is_byte_count) as an int, rounded half up:
    a byte count is a whole number even where a formula gives a fraction (a visible memory of 79.22 GiB, a 4.5-bit
    format's per-token size)."""
    if isinstance(obj, dict):
        return {k: round_half_up(v) if isinstance(v, float) and math.isfinite(v) and is_byte_count(k)
                else integer_bytes(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [integer_bytes(v) for v in obj]
    return obj
