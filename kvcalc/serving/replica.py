"""One replica of a deployment, ready to be run at any number of requests in flight: serve's own deployment (specs,
StepTimer, the KV pool as the engine's memory rule sizes it) and the closed form that turns a concurrency into TTFT,
TPOT and requests/s.

`plan` builds one per deployment and runs it at a ladder of concurrencies; building it once and running it many
times is what keeps the search fast (the memory rule and the specs are not recomputed per point)."""

from __future__ import annotations

import warnings

from collections.abc import Callable
from dataclasses import dataclass

from kvcalc.formulas.parallel import attention_groups
from kvcalc.formulas.workload import step_yield


@dataclass
class Replica:
    max_concurrency: int  # requests the pools hold at full length, over the replica's data-parallel groups
    pool_bytes_per_gpu: float
    run: Callable[[float], dict]  # requests in flight -> closed-form TTFT, TPOT, requests/s (serving/closed_form.py)
    time_model: str
    # numpy array of requests in flight (and optionally their steady state, steady_state_many's (B_d, p, s_p) for
    # `steady`'s parameters) -> arrays of ttft_s, tpot_s (None when output_len is 1), requests_per_s: run's numbers,
    # timed in one or two StepTimer calls for the whole array
    run_many: Callable[..., dict] | None = None
    steady: tuple[float, float, float] | None = None  # (step budget, decode gain, verify tokens); None: disaggregated
    # disaggregated: the decode pool's batches at an array of concurrencies, and their step times [s] (one StepTimer
    # call); replicas with the same decode_key share the decode step, so a search times them together and passes
    # the step times to run_many as its state
    decode_batches: Callable | None = None
    decode_seconds: Callable | None = None
    decode_key: tuple | None = None
    # decode_seconds as a call: batches -> (StepTimer, its seconds() arguments), for seconds_many
    decode_call: Callable | None = None
    # colocated: colocated_many's arguments but the concurrencies and state, (stepper, input_len, output_len, step
    # budget, request_s, run), so that a search times many replicas' ladders together (run_many_all)
    colocated: tuple | None = None


def replica_runner(spec, hw, *, engine: str, weight_dtype: str, kv_dtype: str, tp: int, pp: int = 1, ep: int = 1,
                   disaggregate: tuple[int, int] | None = None, input_len: int, output_len: int,
                   step_tokens: int = 8192, memory_utilization: float = 0.9, memo: dict | None = None,
                   speculate: str | None = None) -> Replica:
    """The replica `serve` builds for these settings (serving/closed_form.py deployment(), the same closed forms and
    per-request overhead), with vLLM's CUDA-graph estimate taken as 0; raises KvcalcError when its KV pool cannot hold
    one full-length request or the layout is invalid. memo: a dict shared by the replicas of one search, where the
    deployments of tp x 1 layouts and step times that do not depend on the layout's pool sizes are kept (a
    disaggregated replica's prefill steps)."""
    from kvcalc.engines.memory import engine_version_of_run
    from kvcalc.engines.overhead import overhead_seconds
    from kvcalc.engines.scheduler import state_slot_cap
    from kvcalc.estimator import time_model_text
    from kvcalc.formulas.engine_memory import VLLM_LATEST
    from kvcalc.serving.closed_form import (
        _colocated,
        _disaggregated,
        deployment,
        prefill_pool_seconds,
        with_request_overhead,
    )

    memo = {} if memo is None else memo
    # One deployment per layout and formats: the pools of a disaggregated replica are TP replicas whose specs, step
    # timer and memory rule are those of the colocated TP replica (`disaggregate` only refuses pp or ep, checked
    # in deployment()), so a search builds each once. The key holds every argument deployment() reads (the specs by
    # identity: the memo lives for one search, which holds them).
    shared = pp == 1 and ep == 1
    key = ("deployment", id(spec), id(hw), engine, weight_dtype, kv_dtype, tp, input_len, output_len, step_tokens,
           memory_utilization, speculate)
    if shared and key in memo:
        d = memo[key]
    else:
        with warnings.catch_warnings():  # plan's launch passes --mem-fraction-static itself (engines/launch.py), so
            # SGLang's own default, which serve and capacity point at, is not the one it runs
            warnings.filterwarnings("ignore", message="SGLang derives mem_fraction_static")
            d = deployment(spec, hw, input_len=input_len, output_len=output_len, tp=tp, pp=pp, ep=ep, engine=engine,
                           weight_dtype=weight_dtype, kv_dtype=kv_dtype, memory_utilization=memory_utilization,
                           step_tokens=step_tokens, speculate=speculate, vllm_runner="auto", version=VLLM_LATEST,
                           cuda_graph_bytes=0.0, flashinfer_sampler=False, disaggregate=disaggregate,
                           engine_version=engine_version_of_run("latest", engine, None))  # serve's default release
        if shared:
            memo[key] = d
    stepper, request_s = d["stepper"], overhead_seconds(d["profile"])[1]
    if disaggregate is not None:
        prefill_gpus, decode_gpus = disaggregate
        groups = decode_gpus // tp

        def run(c):
            return with_request_overhead(_disaggregated(stepper, c, input_len, output_len, step_tokens,
                                                        prefill_gpus, decode_gpus), request_s)

        key = ("prefill", hw.name, engine, weight_dtype, kv_dtype, tp, input_len, step_tokens, speculate)
        if key not in memo:  # one pool replica's prefill steps, whatever the pools' sizes (closed_form.py)
            memo[key] = prefill_pool_seconds(stepper, input_len, step_tokens)
        prefill = _prefill_pool(stepper, input_len, step_tokens, prefill_gpus, decode_gpus, *memo[key], output_len)

        def run_many(cs, state=None):
            return disaggregated_many(stepper, cs, input_len, output_len, decode_gpus, request_s, run, prefill, state)

        def decode_batches(cs):
            import numpy as np

            return np.maximum(np.asarray(cs, dtype=float) / groups, 1.0)  # a request's step holds its own decode

        def decode_call(batches):
            return stepper, (batches, input_len + output_len / 2, 0, 0, None)

        def decode_seconds(batches):
            return stepper.seconds(*decode_call(batches)[1])
        decode_key = ("decode",) + key[1:]
        steady = colocated = None
    else:
        groups = ep // tp if ep > 1 else 1  # data-parallel attention groups, each with its own pool and budget

        def run(c):
            return with_request_overhead(_colocated(stepper, c, input_len, output_len, step_tokens * groups),
                                         request_s)

        def run_many(cs, state=None):
            return colocated_many(stepper, cs, input_len, output_len, step_tokens * groups, request_s, run, state)
        steady = (step_tokens * groups, step_yield(stepper.decode_gain, output_len), stepper.decode_q)
        colocated = (stepper, input_len, output_len, step_tokens * groups, request_s, run)
        decode_batches = decode_seconds = decode_key = decode_call = None
    # what the launch's --max-running-requests can run (SGLang's Mamba slots // 3)
    held = state_slot_cap(engine, d["max_concurrency"], d["state_slots"])
    return Replica(max_concurrency=held * groups, pool_bytes_per_gpu=d["pool"], run=run,
                   time_model=time_model_text(d["profile"], d["spec"]),  # as serve names it (the sixth audit)
                   run_many=run_many, steady=steady, decode_batches=decode_batches,
                   decode_seconds=decode_seconds, decode_key=decode_key, decode_call=decode_call,
                   colocated=colocated)


def _overhead_many(ttft, tpot, latency, rate, request_s) -> dict:
    """with_request_overhead over arrays (serving/closed_form.py): the per-request cost in TTFT and latency, and
    requests/s shrunk by latency / (latency + request_s)."""
    import numpy as np

    total = latency + request_s
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(total != 0, rate * latency / total, rate)
    return {"ttft_s": ttft + request_s, "tpot_s": tpot, "latency_s": total, "requests_per_s": rate}


def _by_point(cs, run) -> dict:
    """The scalar closed form point by point: the fallback where an array mixes an absent operator with a present one
    (formulas/_array.py nonzero)."""
    import numpy as np

    rows = [run(float(c)) for c in cs]
    tpot = None if rows and rows[0]["tpot_s"] is None else np.array([r["tpot_s"] for r in rows])
    return {"ttft_s": np.array([r["ttft_s"] for r in rows]), "tpot_s": tpot,
            "latency_s": np.array([r["latency_s"] for r in rows]),
            "requests_per_s": np.array([r["requests_per_s"] for r in rows])}


def colocated_many(stepper, cs, input_len: int, output_len: int, step_tokens: int, request_s: float, run,
                   state=None) -> dict:
    """serving/closed_form.py _colocated plus with_request_overhead over an array of concurrencies: the same steps,
    each StepTimer call made once for the whole array (its formulas work on arrays elementwise), so each element
    equals run(c). state: steady_state_many's (B_d, p, s_p) for cs, when the caller bisected many replicas at once."""
    import numpy as np

    from kvcalc.formulas.workload import steady_state_many

    cs = np.asarray(cs, dtype=float)
    gain, q = step_yield(stepper.decode_gain, output_len), stepper.decode_q
    decode, chunk, s_p = state if state is not None else steady_state_many(cs, input_len, output_len, step_tokens,
                                                                           gain, q)
    try:
        if output_len == 1:
            from kvcalc.serving.closed_form import own_prefill_seconds

            tau = stepper.seconds(0, 0, chunk, np.maximum(input_len - chunk, 0) / 2, prompt_len=input_len)
            from kvcalc.formulas.parallel import attention_groups
            from kvcalc.formulas.workload import own_budget_per_replica

            own = own_budget_per_replica(step_tokens, 0.0, 1.0, attention_groups(stepper.ep, stepper.tp), 0.0, 1)
            alone = own_prefill_seconds(stepper, 0.0, 0, input_len, float(own), 0.0)  # as _colocated times it
            latency = np.maximum(cs * input_len * tau / chunk, alone)
            return _overhead_many(latency, None, latency, cs / latency, request_s)
        (args, where), alone = _colocated_call(stepper, cs, input_len, output_len, step_tokens, decode, chunk, s_p)
        both = stepper.seconds(*args)
        lone = [stepper.seconds(*a) for a in alone]
    except ValueError:  # an operator present at some concurrencies only
        return _by_point(cs, run)
    return _colocated_finish(both, lone, cs, where, s_p, gain, output_len, request_s)


def _colocated_call(stepper, cs, input_len: int, output_len: int, step_tokens: int, decode, chunk, s_p) -> tuple:
    """((the StepTimer.seconds arguments that time colocated_many's steps with a prompt chunk in one call, where each
    part of that call's result lies), the arguments of a second call for the decode steps that carry no prompt, or
    None). The first call: the steady step at every concurrency; the prefill step of the prompts that enter unqueued
    (i), carrying the prompt's mean piece (each with whole prompts per micro-batch or replica, as _colocated times
    them); and, for a request's own decode steps that carry other prompts within the budget (m), the steps with
    n + 1 whole pieces and, where n > 0, with n (formulas/workload.py whole_prompt_mix). A decode step with no chunk
    has no prefill operators, so it is timed apart (the second call: own steps with no prompt, z, and the mix's
    steps with none, m0): one call over elements of differing operators would raise and fall back to one call a
    point."""
    import numpy as np

    from kvcalc.formulas.workload import (
        decode_step_chunk,
        decodes_beside_own_prompt,
        own_budget_per_replica,
        own_prefill_pieces,
        steady_pipeline_lag,
        whole_prompt_mix,
    )

    running = np.maximum(decode, 1.0)
    context = input_len + output_len / 2
    left = step_tokens - decode * stepper.decode_q
    beside_own = decodes_beside_own_prompt(decode, cs)
    others = decode_step_chunk(chunk, cs, input_len, output_len, step_yield(stepper.decode_gain, output_len))
    entering = np.flatnonzero(chunk < left)  # prompts enter unqueued: their prefill steps are timed apart
    i = entering[beside_own[entering] > 0]  # beside other requests' decodes
    i0 = entering[beside_own[entering] <= 0]  # alone (one in flight): a step with no decode operators
    z = np.flatnonzero(others <= 0)  # own decode steps with no prompt
    m = np.flatnonzero((others > 0) & (others < left))  # own decode steps that carry whole prompts in some steps
    lo, hi, f, w = whole_prompt_mix(others[m], left[m], input_len)
    pieces = np.maximum(input_len - w, 0) / 2
    m1 = np.flatnonzero(lo > 0)  # (positions in m) mixes whose lighter step still carries prompts
    # an unqueued prompt's own steps as _colocated times them (closed_form.own_prefill_seconds): full steps of its
    # own budget, then the rest (the ninth round, P1: equal pieces here had put plan's TTFT 20 % under serve's)
    dp = attention_groups(stepper.ep, stepper.tp)
    _, full, n_full, rest = own_prefill_pieces(
        input_len, np.asarray(own_budget_per_replica(step_tokens, decode, cs, dp, beside_own, stepper.decode_q)))
    ii = i[n_full[i] > 0]  # (those entering beside decodes) with full steps before the rest
    parts = [(running, chunk, np.maximum(input_len - chunk, 0) / 2),
             (beside_own[i], np.maximum(rest[i], others[i]), n_full[i] * full[i]),
             (running[m], hi, pieces), (running[m][m1], lo[m1], pieces[m1]),
             (beside_own[ii], np.maximum(full[ii], others[ii]), full[ii] * (n_full[ii] - 1) / 2)]
    joint = tuple(np.concatenate([part[k] for part in parts]) for k in range(3))
    ends = np.cumsum([0, *(len(part[0]) for part in parts)])
    m0 = np.flatnonzero(lo <= 0)
    # the calls without prompt chunks (own decode steps: z and the mix's m0) and without decodes (a lone prompt's
    # steps: i0) each have their own operators: joined to the first call they made it raise, and the search fell back
    # to one call a point (the sixth audit: plan 7x slower once a lone prompt was timed without its own decode)
    bare = np.concatenate([running[z], running[m][m0]])
    alone = [(bare, context, np.zeros(len(bare)), np.full(len(bare), input_len / 2), float(input_len))] if len(bare) \
        else []
    i00 = i0[n_full[i0] > 0]
    if len(i0):
        alone.append((np.zeros(len(i0)), context, np.maximum(rest[i0], others[i0]), n_full[i0] * full[i0],
                      float(input_len)))
    if len(i00):
        alone.append((np.zeros(len(i00)), context, np.maximum(full[i00], others[i00]),
                      full[i00] * (n_full[i00] - 1) / 2, float(input_len)))
    if stepper.pp > 1:  # a decode micro-batch, which the prompt's waits half a stage-time behind (_colocated)
        alone.append((running, context, np.zeros(len(running)), np.full(len(running), input_len / 2),
                      float(input_len)))
    where = {"i": i, "i0": i0, "ii": ii, "i00": i00, "n_full": n_full, "z": z, "m": m, "m0": m0,
             "m1": m1, "f": f, "ends": ends, "others": others, "left": left, "bare": len(bare),
             "lag": steady_pipeline_lag(beside_own, stepper.pp),  # as closed_form._colocated
             "pipelined": stepper.pp > 1, "stages": stepper.pp}
    return ((joint[0], context, joint[1], joint[2], float(input_len)), where), alone


def _colocated_finish(both, lone, cs, where: dict, s_p, gain: float, output_len: int, request_s: float) -> dict:
    """colocated_many's closed form from the step times of _colocated_call's calls (both: the first's; lone: the
    others', in their order)."""
    import numpy as np

    ends, i, i0, z, m, m0, m1, f = (where[k] for k in ("ends", "i", "i0", "z", "m", "m0", "m1", "f"))
    ii, i00, n_full = where["ii"], where["i00"], where["n_full"]
    tau, rest_i, t_hi, t_lo1, full_ii = (both[ends[k]:ends[k + 1]] for k in range(5))
    own_decode = tau.copy()  # where the other prompts fill every step (the budget binds), the steady step itself
    t_lo = np.empty(len(m))
    t_lo[m1] = t_lo1
    lone = list(lone)
    if where["bare"]:
        bare = lone.pop(0)
        own_decode[z] = bare[:len(z)]
        t_lo[m0] = bare[len(z):]
    own_decode[m] = (1 - f) * t_lo + f * t_hi
    ttft = s_p * tau
    if len(i) or len(i0):  # the unqueued prompts: the rest's step, plus the full steps before it (under pp through
        # the stages in turn: closed_form.own_prefill_seconds)
        from kvcalc.formulas.workload import pipelined_prefill

        ttft = ttft.copy()
        ttft[i] = rest_i
        ttft[ii] = pipelined_prefill(ttft[ii], full_ii, n_full[ii], where["stages"])
        if len(i0):
            ttft[i0] = lone.pop(0)
        if len(i00):
            ttft[i00] = pipelined_prefill(ttft[i00], lone.pop(0), n_full[i00], where["stages"])
    if where["pipelined"]:  # the wait for the first stage, in decode micro-batches (closed_form._colocated)
        ttft = ttft + where["lag"] * lone.pop(0)
    tpot = own_decode / gain
    latency = ttft + (output_len - 1) * tpot  # formulas/workload.py request_latency
    return _overhead_many(ttft, tpot, latency, cs / latency, request_s)


def _ops_key(stepper, args) -> tuple | None:
    """What StepTimer.step_ops reads of a StepTimer.seconds call (the model, precision, pp and decode_q, its scalar
    arguments by value and type, which of its arguments are arrays), or None where it cannot be shared (ep > 1, or an
    argument neither a number nor a 1-d array of the call's length)."""
    import numpy as np

    decode_batch, context, chunk, chunk_context, prompt_len = args
    sizes, kinds = set(), []
    for a in (decode_batch, chunk, chunk_context):
        if isinstance(a, np.ndarray) and a.ndim == 1:
            sizes.add(len(a))
            kinds.append("array")
        elif type(a) in (int, float):
            kinds.append((type(a), a))
        else:
            return None
    if stepper.ep > 1 or len(sizes) > 1 or type(context) not in (int, float) or type(prompt_len) not in (
            int, float, type(None)):
        return None
    return (id(stepper.spec), stepper.p, stepper.pp, stepper.decode_q, type(context), context, type(prompt_len),
            prompt_len, *kinds)


def memo_seconds(stepper, args: tuple, memo: dict):
    """stepper.seconds(*args) for numbers, its operators (StepTimer.step_ops) kept in memo for the next StepTimer of
    the search that shares them (_ops_key): the prefill steps of every engine and tp of one precision."""
    key = _ops_key(stepper, args)
    if key is None or "array" in key:
        return stepper.seconds(*args)
    key = ("ops", *key)
    if key not in memo:
        memo[key] = (*stepper.step_ops(*args[:4], args[4]), {})
    ops, decode_batch, chunk, prompts, shards = memo[key]
    return stepper.time_ops(ops, decode_batch, chunk, args[1], shards, prompts)


def seconds_many(calls: list) -> list:
    """[stepper.seconds(*args) for stepper, args in calls], a call that raises ValueError giving that exception
    instead. Calls with the same _ops_key (StepTimers that differ in tp, GPU or engine profile only, and the same
    scalar arguments) build their operators once, over their array arguments joined (StepTimer.step_ops), and each
    is timed over the join (its tp, GPU and profile) and cut back out: the formulas work elementwise, so each element
    is what its own call gives, and a search of many deployments builds the operators once per precision and layout
    depth rather than once per deployment (issue 22)."""
    import numpy as np

    out: list = [None] * len(calls)
    groups: dict = {}
    for n, (stepper, args) in enumerate(calls):
        key = _ops_key(stepper, args)
        groups.setdefault(("alone", n) if key is None else key, []).append(n)
    for members in groups.values():
        if len(members) > 1:
            first, (_, context, _, _, prompt_len) = calls[members[0]]
            arrays = [k for k in (0, 2, 3) if isinstance(calls[members[0]][1][k], np.ndarray)]
            sizes = [len(calls[n][1][arrays[0]]) for n in members] if arrays else []
            joined = [np.concatenate([calls[n][1][k] for n in members]) if k in arrays else calls[members[0]][1][k]
                      for k in (0, 2, 3)]
            starts = np.cumsum([0, *sizes])
            try:
                ops, decode_batch, chunk, prompts = first.step_ops(joined[0], context, joined[1], joined[2],
                                                                   prompt_len)
                shards: dict = {}  # each tp's share of the operators, sharded once for the group
                for m, n in enumerate(members):
                    t = calls[n][0].time_ops(ops, decode_batch, chunk, context, shards, prompts)
                    out[n] = t[starts[m]:starts[m + 1]] if arrays else t
                continue
            except ValueError:  # an operator present for some elements only: each call on its own, as it would be
                pass
        for n in members:
            stepper, args = calls[n]
            try:
                out[n] = stepper.seconds(*args)
            except ValueError as e:
                out[n] = e
    return out


def run_many_all(runners: list, ladders: list, states: list) -> list:
    """[runner.run_many(ladder, state) ...] for many replicas, the colocated ones' steps timed together
    (seconds_many): the search's replicas at their ladders of batch budgets."""
    import numpy as np

    out: list = [None] * len(runners)
    pending = []  # (index, cs, state) of the colocated replicas whose steps seconds_many times
    for n, (runner, ladder, state) in enumerate(zip(runners, ladders, states)):
        cs = np.asarray(ladder, dtype=float)
        if runner.colocated is None or runner.colocated[2] == 1 or state is None:
            out[n] = runner.run_many(cs, state)
        else:
            pending.append((n, cs, state))
    calls, indices, alones = [], [], []
    for n, cs, (decode, chunk, s_p) in pending:
        stepper, input_len, output_len, step_tokens, _, _ = runners[n].colocated
        (args, where), alone = _colocated_call(stepper, cs, input_len, output_len, step_tokens, decode, chunk, s_p)
        calls.append((stepper, args))
        indices.append(where)
        alones.append([(stepper, a) for a in alone])
    lone_at = []  # where in calls each replica's other calls are (timed together across replicas too)
    for alone in alones:
        lone_at.append(range(len(calls), len(calls) + len(alone)))
        calls.extend(alone)
    times = seconds_many(calls)
    for k, ((n, cs, state), where) in enumerate(zip(pending, indices)):
        stepper, _, output_len, _, request_s, run = runners[n].colocated
        both, lone = times[k], [times[j] for j in lone_at[k]]
        out[n] = (_by_point(cs, run) if any(isinstance(t, ValueError) for t in (both, *lone)) else
                  _colocated_finish(both, lone, cs, where, state[2], step_yield(stepper.decode_gain, output_len),
                                    output_len, request_s))
    return out


def _prefill_pool(stepper, input_len: int, step_tokens: int, prefill_gpus: int, decode_gpus: int, batch_s: float,
                  alone_s: float, output_len: int = 2) -> tuple[float, float]:
    """(TTFT [s], the prefill pool's requests/s) of serving/closed_form.py _disaggregated, from its two prefill step
    times: one step of per_batch prompts, one prompt alone; its KV cache crosses the link between the pools."""
    from kvcalc.formulas.workload import kv_transfer_seconds
    from kvcalc.serving.closed_form import prefill_pool_rate

    per_batch = max(1, step_tokens // input_len)
    transfer_s = kv_transfer_seconds(stepper.spec, stepper.hw, input_len, stepper.p.b_kv, stepper.tp,
                                     prefill_gpus + decode_gpus)
    rate = prefill_pool_rate(per_batch, batch_s, prefill_gpus // stepper.tp,
                             decode_gpus // stepper.tp if output_len > 1 else None, transfer_s)
    return alone_s + transfer_s, rate


def disaggregated_many(stepper, cs, input_len: int, output_len: int, decode_gpus: int, request_s: float, run,
                       prefill: tuple[float, float], step_s=None) -> dict:
    """serving/closed_form.py _disaggregated plus with_request_overhead over an array of concurrencies: the prefill
    pool and the KV transfer do not depend on the concurrency (`prefill`: _prefill_pool's TTFT and rate), the decode
    step is one StepTimer call for the whole array (or step_s, its times at max(C / decode replicas, 1))."""
    import numpy as np

    from kvcalc.serving.closed_form import first_token_on_decode

    cs = np.asarray(cs, dtype=float)
    ttft, prefill_rate = prefill
    batch = cs / (decode_gpus // stepper.tp)
    if output_len > 1:
        try:
            if step_s is None:
                step_s = stepper.seconds(np.maximum(batch, 1.0), input_len + output_len / 2, 0, 0)
        except ValueError:
            return _by_point(cs, run)
        tpot = step_s / step_yield(stepper.decode_gain, output_len)
        if first_token_on_decode(stepper):  # vLLM's first token from a decode step (closed_form._disaggregated)
            ttft = ttft + step_s
        latency = ttft + (output_len - 1) * tpot
    else:
        tpot, latency = None, np.full_like(cs, ttft)
    rate = np.minimum(cs / latency, prefill_rate)
    wait = np.maximum(cs / rate - latency, 0.0)  # the prefill pool's queue, as _disaggregated takes it
    return _overhead_many(ttft + wait, tpot, latency + wait, rate, request_s)
