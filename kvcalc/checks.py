"""Bounds on every number a user passes: each flag has a physical range, and a value outside it is a one-line
error naming the flag, before any formula runs (so nothing downstream overflows into inf or wraps an int64)."""

from __future__ import annotations

import math

from kvcalc.errors import KvcalcError

MAX_BATCH = 10**7  # sequences
MAX_TOKENS = 10**9  # context or prompt length
MAX_GPUS = 1024
MAX_PRICE = 1e6  # per GPU-hour, any currency


def check_int(flag: str, value, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise KvcalcError(f"{flag}: expected a whole number from {lo:,} to {hi:,}, got {_show(value)}")
    return value


def check_number(flag: str, value, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A finite number in [lo, hi] ((lo, hi] with lo_open)."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > lo if lo_open else value >= lo) and value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise KvcalcError(f"{flag}: expected a finite number in {interval}, got {_show(value)}")
    return value


def check_price(value) -> None:
    """--price-per-gpu-hour, where given: a positive finite price."""
    if value is not None:
        check_number("--price-per-gpu-hour", value, 0, MAX_PRICE, lo_open=True)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
