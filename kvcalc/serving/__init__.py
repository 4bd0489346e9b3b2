"""Serving a workload on one deployment: the closed-form steady state (closed_form.py, the fast path) and the
request-level simulation of the engine's scheduler (simulate.py, the reference; imported on demand)."""

from kvcalc.serving.closed_form import frontier, serve

__all__ = ["frontier", "serve"]
