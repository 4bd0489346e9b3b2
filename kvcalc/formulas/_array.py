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
