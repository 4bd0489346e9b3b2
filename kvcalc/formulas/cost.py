"""Cost: FLOPs and bytes moved by kind, a small record that adds and scales (after JAX's roofline module)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Cost:
    """Work of one operator. Fields are floats or numpy arrays of one shape (a sweep)."""

    flops: float = 0.0
    weight_bytes: float = 0.0  # weights (and embedding rows) read
    kv_read_bytes: float = 0.0  # KV cache read
    kv_write_bytes: float = 0.0  # KV cache written for the new tokens
    act_bytes: float = 0.0  # activations read and written

    @property
    def bytes(self):
        return self.weight_bytes + self.kv_read_bytes + self.kv_write_bytes + self.act_bytes

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f) + getattr(other, f) for f in _FIELDS))

    def __mul__(self, n) -> Cost:
        return Cost(*(getattr(self, f) * n for f in _FIELDS))

    __rmul__ = __mul__


_FIELDS = tuple(f.name for f in fields(Cost))  # looked up once, not on every add and scale
