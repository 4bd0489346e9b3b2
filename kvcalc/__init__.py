"""kvcalc: roofline and KV-cache calculator for transformer inference.

The Python API mirrors the CLI; names resolve lazily so `import kvcalc` stays cheap:
    kvcalc.estimate(model, gpu, ...) -> Estimate
    kvcalc.compare(model, attn, gpu, ...) -> list of rows
    kvcalc.sweep(models, gpus, attn, batch, context, ...) -> pandas.DataFrame
    kvcalc.capacity(model, gpu, context=..., ...) -> dict   (engine="vllm": memory as vLLM budgets it;
        vllm_runner="auto" | "v0" | "v1" | "v2", vllm_version="latest" | "0.11" | ...,
        cuda_graph_GiB=the CUDA-graph estimate vLLM's log prints, subtracted where the version counts it)
    kvcalc.serve(model, gpu, input_len=..., output_len=..., concurrency=... | request_rate=...) -> dict
        (arrivals="staggered" | "waves": a service's steady state, or a fixed-length benchmark's waves)
    kvcalc.serve_frontier(model, gpu, input_len=..., output_len=..., concurrencies=[...], tps=[...]) -> list
    kvcalc.plot.roofline(gpus, model, ...) -> matplotlib Figure
    kvcalc.load_model(name_or_path), kvcalc.load_gpu(name_or_path)
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "estimate": ("kvcalc.estimator", "estimate"),
    "Estimate": ("kvcalc.estimator", "Estimate"),
    "compare": ("kvcalc.planning.capacity", "compare"),
    "capacity": ("kvcalc.planning.capacity", "capacity"),
    "serve": ("kvcalc.serving.closed_form", "serve"),
    "serve_frontier": ("kvcalc.serving.closed_form", "frontier"),
    "sweep": ("kvcalc.grid", "sweep"),
    "plot": ("kvcalc.report.plot", None),
    "load_model": ("kvcalc.specs.catalog", "load_model"),
    "load_gpu": ("kvcalc.specs.catalog", "load_gpu"),
    "rewrite_attention": ("kvcalc.rewrite", "rewrite_attention"),
    "KvcalcError": ("kvcalc.errors", "KvcalcError"),
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        imported = importlib.import_module(module)
        return imported if attr is None else getattr(imported, attr)
    raise AttributeError(f"module 'kvcalc' has no attribute {name!r}")
