"""Serving a workload on one deployment: the closed-form steady state (closed_form.py, the fast path) and the
request-level simulation of the engine's scheduler (simulate.py, the reference; imported on demand)."""

from kvcalc.serving.closed_form import frontier, serve

__all__ = ["frontier", "serve"]

# The options only the request-level simulation reads (serve --simulate): the closed form has no prompts to draw, no
# seed, no percentiles and no scheduler cap, so the CLI and the web app refuse them without --simulate (the fresh
# audit: they had been taken and ignored).
SIMULATE_ONLY = ("num_prompts", "range_ratio", "dataset", "seed", "percentile", "prefix_hit_rate", "async_scheduling",
                 "burstiness")
