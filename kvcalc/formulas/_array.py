"""Elementwise min/max that take Python numbers or numpy arrays, importing numpy only for arrays."""

from __future__ import annotations

_SCALARS = (int, float)


def minimum(a, b):
    if isinstance(a, _SCALARS) and isinstance(b, _SCALARS):
        return min(a, b)
    import numpy as np

    return np.minimum(a, b)


def maximum(a, b):
    if isinstance(a, _SCALARS) and isinstance(b, _SCALARS):
        return max(a, b)
    import numpy as np

    return np.maximum(a, b)


def clip(x, lo, hi):
    return minimum(maximum(x, lo), hi)


def where(cond, a, b):
    if isinstance(cond, bool):
        return a if cond else b
    import numpy as np

    return np.where(cond, a, b)


def nonzero(x) -> bool:
    """Whether x is nonzero, for a number or an array all of whose elements agree (all zero or none); an array that
    mixes zeros and nonzeros raises ValueError (the caller splits it: an operator present for some elements only)."""
    if isinstance(x, _SCALARS) or not hasattr(x, "shape"):
        return bool(x)
    import numpy as np

    zero = np.asarray(x) == 0
    if zero.all():
        return False
    if not zero.any():
        return True
    raise ValueError("nonzero: an array mixing zeros and nonzeros")
