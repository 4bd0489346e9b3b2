"""Serving a workload on one deployment: the closed-form steady state (closed_form.py)."""

from kvcalc.serving.closed_form import frontier, serve

__all__ = ["frontier", "serve"]
