"""One replica of a deployment, ready to be run at any number of requests in flight: serve's own deployment (specs,
StepTimer, the KV pool as the engine's memory rule sizes it) and the closed form that turns a concurrency into TTFT,
TPOT and requests/s.

`plan` builds one per deployment and runs it at a ladder of concurrencies; building it once and running it many
times is what keeps the search fast (the memory rule and the specs are not recomputed per point)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Replica:
    max_concurrency: int  # requests the pools hold at full length, over the replica's data-parallel groups
    pool_bytes_per_gpu: float
    run: Callable[[float], dict]  # requests in flight -> closed-form TTFT, TPOT, requests/s (serving/closed_form.py)
    time_model: str


def replica_runner(spec, hw, *, engine: str, weight_dtype: str, kv_dtype: str, tp: int, pp: int = 1, ep: int = 1,
                   disaggregate: tuple[int, int] | None = None, input_len: int, output_len: int,
                   step_tokens: int = 8192, memory_utilization: float = 0.9) -> Replica:
    """The replica `serve` builds for these settings (serving/closed_form.py deployment(), the same closed forms and
    per-request overhead), with vLLM's CUDA-graph estimate taken as 0; raises KvcalcError when its KV pool cannot hold
    one full-length request or the layout is invalid."""
    from kvcalc.engines.overhead import overhead_seconds
    from kvcalc.estimator import engine_label
    from kvcalc.formulas.engine_memory import VLLM_LATEST
    from kvcalc.serving.closed_form import _colocated, _disaggregated, deployment, with_request_overhead

    d = deployment(spec, hw, input_len=input_len, output_len=output_len, tp=tp, pp=pp, ep=ep, engine=engine,
                   weight_dtype=weight_dtype, kv_dtype=kv_dtype, memory_utilization=memory_utilization,
                   step_tokens=step_tokens, speculate=None, vllm_runner="auto", version=VLLM_LATEST,
                   cuda_graph_bytes=0.0, flashinfer_sampler=False, disaggregate=disaggregate)
    stepper, request_s = d["stepper"], overhead_seconds(d["profile"])[1]
    if disaggregate is not None:
        prefill_gpus, decode_gpus = disaggregate
        groups = decode_gpus // tp

        def run(c):
            return with_request_overhead(_disaggregated(stepper, c, input_len, output_len, step_tokens,
                                                        prefill_gpus, decode_gpus), request_s)
    else:
        groups = ep // tp if ep > 1 else 1  # data-parallel attention groups, each with its own pool and budget

        def run(c):
            return with_request_overhead(_colocated(stepper, c, input_len, output_len, step_tokens * groups),
                                         request_s)
    name, version = engine_label(d["profile"])
    return Replica(max_concurrency=d["max_concurrency"] * groups, pool_bytes_per_gpu=d["pool"], run=run,
                   time_model=f"{name} profile ({version})" if version else "datasheet efficiencies (roofline)")
