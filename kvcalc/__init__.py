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
    kvcalc.simulate(model, gpu, input_len=..., output_len=..., arrivals="closed" | "poisson" | "burst" | "trace",
        concurrency=... | request_rate=..., engine="vllm" | "sglang" | "trtllm", seed=...) -> dict
        (the request-level simulation: p50/p90/p99 TTFT, TPOT, ITL, end-to-end latency, goodput, preemptions)
    kvcalc.plan(model, gpus=[...], input_len=..., output_len=..., request_rate=... | concurrency=... | gpu_budget=...,
        max_ttft_ms=..., max_tpot_ms=..., price_per_gpu_hour=... | {gpu: price}) -> dict
        (the cheapest deployment within the limits, the runners-up, the frontier and why the rest lost)
    kvcalc.serve_frontier(model, gpu, input_len=..., output_len=..., concurrencies=[...], tps=[...]) -> list
    kvcalc.plot.roofline(gpus, model, ...) -> matplotlib Figure
    kvcalc.load_model(name_or_path), kvcalc.load_gpu(name_or_path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what mypy and IDEs see: the real signatures (at run time __getattr__ imports them on first use)
    from kvcalc.errors import KvcalcError as KvcalcError
    from kvcalc.estimator import Estimate as Estimate
    from kvcalc.estimator import estimate as estimate
    from kvcalc.grid import sweep as sweep
    from kvcalc.planning.capacity import capacity as capacity
    from kvcalc.planning.capacity import compare as compare
    from kvcalc.planning.plan import plan as plan
    from kvcalc.report import plot as plot
    from kvcalc.rewrite import rewrite_attention as rewrite_attention
    from kvcalc.serving.closed_form import frontier as serve_frontier
    from kvcalc.serving.closed_form import serve as serve
    from kvcalc.serving.simulate import simulate as simulate
    from kvcalc.specs.catalog import load_gpu as load_gpu
    from kvcalc.specs.catalog import load_model as load_model

_API = {
    "estimate": ("kvcalc.estimator", "estimate"),
    "Estimate": ("kvcalc.estimator", "Estimate"),
    "compare": ("kvcalc.planning.capacity", "compare"),
    "capacity": ("kvcalc.planning.capacity", "capacity"),
    "serve": ("kvcalc.serving.closed_form", "serve"),
    "serve_frontier": ("kvcalc.serving.closed_form", "frontier"),
    "simulate": ("kvcalc.serving.simulate", "simulate"),
    "plan": ("kvcalc.planning.plan", "plan"),
    "sweep": ("kvcalc.grid", "sweep"),
    "plot": ("kvcalc.report.plot", None),
    "load_model": ("kvcalc.specs.catalog", "load_model"),
    "load_gpu": ("kvcalc.specs.catalog", "load_gpu"),
    "rewrite_attention": ("kvcalc.rewrite", "rewrite_attention"),
    "KvcalcError": ("kvcalc.errors", "KvcalcError"),
}

__all__ = sorted(_API)


# The public functions check their arguments' types at the boundary (kvcalc.checks.check_api_arguments): a str
# where a list belongs, a number where a name does, is one KvcalcError naming the argument (audit U5). The value:
# the arguments that take a list.
_CHECKED = {
    "estimate": frozenset(), "capacity": frozenset(), "serve": frozenset(), "load_model": frozenset(),
    "load_gpu": frozenset(), "compare": frozenset({"attn"}),
    "serve_frontier": frozenset({"concurrencies", "tps"}), "plan": frozenset({"gpus", "engines"}),
    "simulate": frozenset(),  # the twentieth audit, W4: a list for gpu had ended in a TypeError
    "rewrite_attention": frozenset(),  # the twenty-eighth audit, F6: a name or a number had ended in AttributeErrors
    "sweep": frozenset({"models", "gpus", "attn", "batch", "context", "weight_dtype", "kv_dtype", "engine", "tp", "pp",
                        "speculate", "ep"}),
}


def _checked(name: str, fn):
    import functools
    import inspect

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        from kvcalc.checks import check_api_arguments
        from kvcalc.errors import KvcalcError

        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:  # the thirty-sixth audit, web 3: Python's own binding error, not a KvcalcError
            raise _argument_error(name, signature.parameters, kwargs, e) from None
        passed_on = _passed_on(name)
        if passed_on is not None:  # serve_frontier's **kwargs go to serve (web 3: a typo named serve())
            for key in (k for k in kwargs if k not in signature.parameters):  # in the order given
                if key in FRONTIER_SETS:
                    from kvcalc.errors import ArgumentError

                    raise ArgumentError(f"{key}: kvcalc.serve_frontier sets it at each point; give {FRONTIER_SETS[key]}")
                if key not in passed_on:
                    raise _argument_error(name, {**signature.parameters, **passed_on}, {key: None}, None)
        labels = {"ref": "gpu" if name == "load_gpu" else "model"}
        if name == "plan":  # plan's speculate= switches the search of draft heads on or off; elsewhere it names one
            labels["speculate"] = "search_speculation"
        for key, value in check_api_arguments(bound.arguments, _CHECKED[name], labels).items():
            if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:  # serve_frontier's **kwargs
                value = check_api_arguments(value, frozenset(), labels)
            bound.arguments[key] = value
        try:
            result = fn(*bound.args, **bound.kwargs)
        except KvcalcError as e:  # the keyword the caller wrote, not the CLI's flag (the thirteenth audit, E3)
            from kvcalc.checks import api_label
            from kvcalc.errors import ArgumentError

            # the keyword the caller used: capacity's older gpus= for --tp where given so, serve's own keywords for
            # what serve_frontier passes on (web 5: 'tp:' for gpus=0, '--max-num-seqs:' for max_num_seqs=0)
            keywords = {"--tp": "gpus"} if name == "capacity" and "gpus" in bound.arguments else None
            named = api_label(str(e), {**signature.parameters, **(passed_on or {})}, keywords)
            if isinstance(e, ArgumentError):  # a missing keyword stays one (the fortieth audit, readme 4: plan's had
                # been re-raised as a plain KvcalcError), in the API's words where the error has them
                raise ArgumentError(e.api or named) from None
            if named == str(e):
                raise
            raise KvcalcError(named) from None
        if isinstance(result, (dict, list)):  # byte counts whole, as --format json prints them (the eighth audit, C2:
            from kvcalc.units import integer_bytes  # kvcalc.capacity() had given 45876206487.552 bytes)

            result = integer_bytes(result)
        return result

    return call


# serve's keywords serve_frontier sets itself at each point, and what to give instead
FRONTIER_SETS = {"tp": "tps=[...]", "concurrency": "concurrencies=[...]", "request_rate": "concurrencies=[...]",
                 "model": "it as the first argument", "gpu": "it as the second argument"}


def _passed_on(name: str):
    """The parameters a public function passes its **kwargs on to (serve_frontier: serve's), or None."""
    if name != "serve_frontier":
        return None
    import inspect

    from kvcalc.serving.closed_form import serve

    return inspect.signature(serve).parameters


def _argument_error(name: str, params, kwargs: dict, error: TypeError | None):
    """kvcalc.errors.ArgumentError for a call binding refused: the keyword not taken, with the closest one it takes;
    a required argument not given; else Python's own words, naming the function."""
    import difflib
    import inspect

    from kvcalc.errors import ArgumentError

    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params] if not takes_any or error is None else []
    if unknown:
        close = difflib.get_close_matches(unknown[0], [p for p in params if not p.startswith("_")], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return ArgumentError(f"{unknown[0]}: not an argument of kvcalc.{name}{hint}")
    message = str(error).removeprefix("missing a required argument: ")
    if message != str(error):
        return ArgumentError(f"{message.strip(chr(39))}: required by kvcalc.{name}")
    return ArgumentError(f"kvcalc.{name}: {error}")


def _plot_module(module):
    """kvcalc.plot: the module, its charts' errors naming the keywords the caller wrote (gpus=, weight_dtype=) rather
    than the CLI's flags, as the other public functions' do (the thirty-fourth audit, API 5)."""
    import functools
    import inspect
    import types

    from kvcalc.checks import api_label
    from kvcalc.errors import KvcalcError

    def relabelled(fn):
        signature = inspect.signature(fn)
        parameters = signature.parameters

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:  # a misspelt or surplus argument named, as the other public functions' (the thirty-eighth audit,
                # sweep 5: a bare TypeError)
                signature.bind(*args, **kwargs)
            except TypeError as e:
                raise _argument_error(f"plot.{fn.__name__}", parameters, kwargs, e) from None
            try:
                return fn(*args, **kwargs)
            except KvcalcError as e:
                named = api_label(str(e), parameters, {"--gpu": "gpus"})
                if named == str(e):
                    raise
                raise KvcalcError(named) from None

        return call

    proxy = types.ModuleType(module.__name__, module.__doc__)
    proxy.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    for fn in ("roofline", "roofline_inputs"):
        setattr(proxy, fn, relabelled(getattr(module, fn)))
    return proxy


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        imported = importlib.import_module(module)
        value = imported if attr is None else getattr(imported, attr)
        if name == "plot":
            value = _plot_module(imported)
            globals()[name] = value
        if name in _CHECKED:
            value = _checked(name, value)
            globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'kvcalc' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (tab completion shows it, not the package's modules)."""
    return sorted([*__all__, "__version__"])
