"""One replica of a deployment, ready to be run at any number of requests in flight: its step timer, its KV pool as
the engine's memory rule sizes it, and the closed form that turns a concurrency into TTFT, TPOT and requests/s.

`plan` builds one per deployment and runs it at a ladder of concurrencies; building it once and running it many
times is what keeps the search fast (the memory rule and the specs are not recomputed per point)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from kvcalc.errors import KvcalcError


@dataclass
class Replica:
    max_concurrency: int  # requests the pools hold at full length, over the replica's data-parallel groups
    pool_bytes_per_gpu: float
    run: Callable[[float], dict]  # requests in flight -> closed-form TTFT, TPOT, requests/s (serving/closed_form.py)
    time_model: str
    request_overhead_s: float = 0.0


def replica_runner(spec, hw, *, engine: str, weight_dtype: str, kv_dtype: str, tp: int, pp: int = 1, ep: int = 1,
                   disaggregate: tuple[int, int] | None = None, input_len: int, output_len: int,
                   step_tokens: int = 8192, memory_utilization: float = 0.9) -> Replica:
    """The replica `serve` would build for these settings (same memory rule, same StepTimer, same closed forms);
    raises KvcalcError when its KV pool cannot hold one full-length request or the layout is invalid."""
    from kvcalc.engines.memory import ENGINE_MEMORY_RULES, engine_memory_rule, kvcalc_budget
    from kvcalc.estimator import StepTimer, check_pp, check_tp, engine_label, precision
    from kvcalc.formulas.capacity import max_sequences
    from kvcalc.formulas.parallel import check_ep
    from kvcalc.serving.closed_form import _colocated, _disaggregated
    from kvcalc.specs.catalog import resolve_engine

    check_tp(tp, spec)
    check_pp(pp, spec)
    check_ep(ep, spec, tp)
    profile = resolve_engine(engine, hw)
    p = precision(weight_dtype, kv_dtype)
    stepper = StepTimer(spec, hw, p, tp, profile, weight_dtype, kv_dtype, pp, ep)
    full_length = input_len + output_len
    if engine in ENGINE_MEMORY_RULES:
        rule = engine_memory_rule(engine, spec, hw, p, tp, context=full_length, memory_utilization=memory_utilization,
                                  max_num_batched_tokens=step_tokens, pp=pp, ep=ep, cuda_graph_bytes=0.0)
        pool = max(rule["available_kv_bytes"], 0.0)
        max_concurrency = math.floor(rule["max_concurrency"])
    else:
        budget, _ = kvcalc_budget(spec, hw, p, memory_utilization, step_tokens, tp, pp, ep)
        pool = max(budget, 0.0)
        max_concurrency = max_sequences(spec, full_length, pool, p.b_kv, tp, pp)
    if max_concurrency < 1:
        raise KvcalcError(f"the KV pool ({pool / 2**30:.1f} GiB per GPU) does not hold one request of "
                          f"{full_length:,} tokens")
    if disaggregate is not None:
        prefill_gpus, decode_gpus = disaggregate
        groups = decode_gpus // tp

        def run(c):
            return _disaggregated(stepper, c, input_len, output_len, step_tokens, prefill_gpus, decode_gpus)
    elif ep > 1:  # data-parallel attention groups, each with its own pool and step budget
        groups = ep // tp

        def run(c):
            return _colocated(stepper, c, input_len, output_len, step_tokens * groups)
    else:
        groups = 1

        def run(c):
            return _colocated(stepper, c, input_len, output_len, step_tokens)
    name, version = engine_label(profile)
    overhead = getattr(profile, "overhead", None)
    return Replica(max_concurrency=max_concurrency * groups, pool_bytes_per_gpu=pool, run=run,
                   time_model=f"{name} profile ({version})" if version else "datasheet efficiencies (roofline)",
                   request_overhead_s=overhead.request_ms / 1e3 if overhead else 0.0)
