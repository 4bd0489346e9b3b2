"""sweep(): a grid of scenarios as a pandas DataFrame.

The structural axes (model, gpu, attention, dtypes) are looped over; batch x context is one numpy grid per
combination, evaluated by the same formulas as `estimate` in a single call (no Python loop per scenario).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

from kvcalc.checks import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_TOKENS,
    check_int,
    check_speculate,
    past_positions,
)
from kvcalc.engines.formats import engine_kv_refusal
from kvcalc.errors import KvcalcError
from kvcalc.estimator import (
    SpeculativeTimer,
    attention_label,
    check_dtypes,
    check_memory_utilization,
    check_prefill_chunk,
    evaluate,
    fp8_block_refusal,
    layout_times,
    phase_metrics,
    resolve_weight_dtype,
    tp_refusal,
)
from kvcalc.formulas.kv import kv_bytes_per_token
from kvcalc.formulas.memory import (
    DEFAULT_MEMORY_UTILIZATION,
    DEFAULT_PREFILL_CHUNK,
    replica_batch,
)
from kvcalc.formulas.parallel import kv_bytes_all_gpus
from kvcalc.formulas.params import active_params, total_params, weight_bytes
from kvcalc.option_values import first_repeat
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.engines.launch import format_warnings, layout_refusal
from kvcalc.speculation import no_mtp_module, unsupported_with



def skip_reason(spec, tp: int, pp: int, ep: int, weight_dtype: str | None = None) -> str:
    """Why sweep leaves a layout out, naming the flag ('' where it applies): tp must shard the model (tp_refusal)
    and its fp8 scale blocks (fp8_block_refusal), pp be at most the layers, ep need a MoE model, a multiple of tp
    dividing its experts, and no pp."""
    why = tp_refusal(spec, tp, ep) or (fp8_block_refusal(spec, weight_dtype, tp, ep) if weight_dtype else None)
    if why:
        return f"--tp: {why}"
    if pp > spec.num_layers:
        return f"--pp: {pp} stages exceed the {spec.num_layers} layers"
    if ep > 1 and spec.moe is None:
        return f"--ep: {spec.name} has no experts"
    if ep > 1 and (ep % tp or spec.moe.num_experts % ep):
        return f"--ep: {ep} must be a multiple of --tp {tp} dividing the {spec.moe.num_experts} experts"
    if ep > 1 and pp > 1:
        return "--ep: not with --pp"
    return ""

def _nonempty(flag: str, values) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):  # not read letter by letter (U5)
        raise KvcalcError(f"{flag}: expected a list of values, got {type(values).__name__} {values!r:.40}")
    values = list(values)
    if not values:
        raise KvcalcError(f"{flag}: empty list; expected at least one value")
    return values


def _once(flag: str, values: list) -> list:
    """values, each listed once, as the CLI's lists are (option_values.split; the thirty-eighth audit, sweep 1:
    batch=[1, 1] had made two identical rows of each combination)."""
    twice = first_repeat(values)
    if twice is not None:
        raise KvcalcError(f"{flag}: {twice!s:.40} listed twice; give each once")
    return values


def _ints(flag: str, values, minimum: int, maximum: int) -> list[int]:
    return _once(flag, [check_int(flag, v, minimum, maximum) for v in _nonempty(flag, values)])


# rows one sweep computes: 200,000 take about 20 s and 1.3 GB here; a grid of 2,000 x 2,000 (26 GB) had run until
# numpy's MemoryError (the thirty-fourth audit, API 1)
MAX_SWEEP_ROWS = 500_000


def sweep(
    models: Sequence,
    gpus: Sequence = ("h100-sxm",),
    attn: Sequence = (None,),
    batch: Sequence[int] = (1,),
    context: Sequence[int] = (4096,),
    weight_dtype: Sequence[str] = ("auto",),
    kv_dtype: Sequence[str] = ("bf16",),
    engine: Sequence[str] = ("auto",),
    tp: Sequence[int] = (1,),
    pp: Sequence[int] = (1,),
    speculate: Sequence[str | None] = (None,),
    ep: Sequence[int] = (1,),
    *,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    on_combination: Callable[[], None] | None = None,
):
    """Every combination of the axes, one DataFrame row each, at most MAX_SWEEP_ROWS (500,000) rows a call (a larger
    grid raises KvcalcError: split it into several). The prompt of each row equals its context.
    engine: time models (auto, roofline, vllm, sglang, trtllm), each its own rows. tp, pp: tensor-parallel GPUs
    and pipeline stages; a tp that does not divide a model's query heads, or a pp above its layers, is skipped
    for that model with a warning. speculate: estimate's --speculate forms (None: plain decoding), each its own
    rows, with the speculative time per token and speed-up over plain decoding (under pipeline stages or expert
    parallelism timed by serve's step timer, one batch and context at a time). ep:
    expert-parallel GPUs (1: none); a combination it does not apply to (a dense model, ep not a multiple of tp or
    not dividing the experts, or with pp) is skipped with a warning. The label columns (model, gpu, ...) are
    categoricals: group them with observed=True, since pandas 2 also makes groups of unobserved categories."""
    import numpy as np
    import pandas as pd

    models, gpus, attn = _nonempty("--model", models), _nonempty("--gpu", gpus), _nonempty("--attn", attn)
    batch, context = _ints("--batch", batch, 1, MAX_BATCH), _ints("--context", context, 1, MAX_TOKENS)
    weight_dtype = _once("--weight-dtype", _nonempty("--weight-dtype", weight_dtype))
    kv_dtype = _once("--kv-dtype", _nonempty("--kv-dtype", kv_dtype))
    engine = _once("--engine", _nonempty("--engine", engine))
    speculate = _once("--speculate", _nonempty("--speculate", speculate))
    for sv in speculate:  # '' is no method, as estimate's check_speculate refuses it (the thirty-eighth audit, sweep 1)
        check_speculate(sv)
    tp, pp, ep = _ints("--tp", tp, 1, MAX_GPUS), _ints("--pp", pp, 1, MAX_GPUS), _ints("--ep", ep, 1, MAX_GPUS)
    for w, k in itertools.product(weight_dtype, kv_dtype):
        check_dtypes(w, k)  # an engine that stores no such cache skips its own cells (below), not the grid
    check_memory_utilization(memory_utilization)
    check_prefill_chunk(prefill_chunk)
    rows = math.prod(len(axis) for axis in (models, gpus, attn, batch, context, weight_dtype, kv_dtype, engine, tp,
                                            pp, speculate, ep))
    if rows > MAX_SWEEP_ROWS:
        raise KvcalcError(f"--batch / --context / ...: the axes make {rows:,} combinations; a sweep computes at most "
                          f"{MAX_SWEEP_ROWS:,} (split it into several)")
    B, S = (a.ravel() for a in np.meshgrid(np.array(batch, dtype=np.int64), np.array(context, dtype=np.int64), indexing="ij"))
    Bf, Sf = B.astype(float), S.astype(float)
    # by position: a loaded spec (as estimate and capacity take) is no dict key (the twelfth audit, E9: a TypeError)
    specs = [load_model(m) for m in models]
    hws = [load_gpu(g) for g in gpus]
    for flag, loaded, given in (("--model", specs, models), ("--gpu", hws, gpus)):  # one spec under two names (an
        # alias, a Hugging Face id) had made identical rows (the thirty-fourth audit, API 6)
        names = [spec.name for spec in loaded]
        twice = first_repeat(names)
        if twice is not None:
            as_given = ", ".join(str(g) for g, n in zip(given, names) if n == twice)
            raise KvcalcError(f"{flag}: {twice} listed twice ({as_given}); give each once")
    from kvcalc.specs.catalog import ENGINES

    for e in engine:  # a name that is no engine at all is refused, as `-e NAME` alone is (the thirteenth audit, E7:
        # skipped with a warning in a list)
        if e not in ENGINES:
            resolve_engine(e, hws[0])
    profiles, refused = {}, {}  # an engine that does not run on a part skips that pair, with its reason
    for g, e in itertools.product(range(len(gpus)), engine):
        try:
            profiles[g, e] = resolve_engine(e, hws[g])
        except KvcalcError as e_refused:
            refused[g, e] = str(e_refused)
    if refused and len(refused) == len(gpus) * len(engine):
        raise KvcalcError(next(iter(refused.values())))
    for (g, e), reason in refused.items():  # the fourth audit: one such pair refused the whole grid
        warnings.warn(f"sweep skipped {hws[g].name} x {e}: {reason.removeprefix('--engine: ')}", stacklevel=2)
    labels: list[tuple] = []  # one (model, gpu, attention, weight_dtype, kv_dtype, engine) per combination
    columns: dict[str, list] = {}
    skipped: list[str] = []
    unsupported: list[str] = []  # layouts an engine does not run (kvcalc/speculation.py), timed with a warning
    n = len(B)
    done: set = set()  # the combinations computed, as resolved: auto and the engine or format it names are one
    for m, g, a, w, k, e, t, q, sv, x in itertools.product(range(len(models)), range(len(gpus)), attn, weight_dtype, kv_dtype, engine, tp,
                                                           pp, speculate, ep):
        if (g, e) in refused:
            if on_combination:
                on_combination()
            continue
        spec, hw, profile = rewrite_attention(specs[m], a), hws[g], profiles[g, e]
        w = resolve_weight_dtype(w, spec)  # auto: the checkpoint's own format, as estimate reads it (audit U1)
        # -e auto,vllm or --weight-dtype auto,fp8-block name one combination twice once resolved: computed once, the
        # repeat said (the thirty-eighth audit, sweep 1: two rows alike, which a groupby counts twice)
        key = (m, g, a, w, k, profile.engine if profile else "roofline", t, q, sv, x)
        if key in done:
            skipped.append(f"{spec.name} on {hw.name} with {e} / {w} / {k} (the same as a combination listed before "
                           "it, once auto is resolved)")
            if on_combination:
                on_combination()
            continue
        done.add(key)
        skip = skip_reason(spec, t, q, x, w)
        kv_skip = engine_kv_refusal(e, k)
        if skip or kv_skip:  # each named by its flag (the thirty-eighth audit, sweep 4: a cache an engine does not
            # store had been put as the layout's fault)
            where = (f"at tp {t} x pp {q}" + (f" x ep {x}" if x > 1 else "")) if skip else f"under {e}"
            skipped.append(f"{spec.name} {where} ({skip or kv_skip})")
            if on_combination:
                on_combination()
            continue
        # in floats, as estimate's Python numbers turn to floats past 2**63 (the fresh audit: batch 107 x 131,072
        # tokens of Llama-3.1-405B, 1.9e19 prefill FLOPs, wrapped around in int64 and halved the prefill time)
        ev = evaluate(spec, hw, batch=Bf, context=Sf, prompt=Sf, weight_dtype=w, kv_dtype=k, tp=t, pp=q, ep=x,
                      memory_utilization=memory_utilization, profile=profile, prefill_chunk=prefill_chunk)
        dec = phase_metrics(ev.decode, ev.decode_sol, B, hw, w, ev.comm_s, ev.comm_sol_s, ev.pipeline_s)
        pre = phase_metrics(ev.prefill, ev.prefill_sol, B * S, hw, w, ev.prefill_comm_s, ev.prefill_comm_sol_s,
                            ev.prefill_pipeline_s, ev.prefill_pipeline_sol_s)
        labels.append((spec.name, hw.name, attention_label(spec), w, k, profile.engine if profile else "roofline",
                       sv or "none"))
        required = ev.memory["total"]
        # what does not start as asked, said once on stderr and, row by row, in the starts / start_note columns (the
        # twenty-fifth audit, F3: every row had read fits=True, TensorRT-LLM's block fp8 on an L40S among them)
        refusals = [why for why in (unsupported_with(e, q, profile, sv) if sv else None, no_mtp_module(spec, sv),
                                    layout_refusal(profile.engine, t, x, spec, q) if profile is not None else None,
                                    *format_warnings(hw, w, profile.engine if profile is not None else None, k, spec))
                    if why]
        unsupported.extend(refusals)
        if why := past_positions(spec, max(context)):  # as estimate warns (the eighteenth audit, E1)
            unsupported.append(why)
        if sv:
            # its layer's routed experts spread over the expert-parallel GPUs, as estimate holds them (the fifteenth
            # audit, E2: whole on every GPU, 9.2 GiB a GPU over estimate for DeepSeek-V3 at --ep 8)
            timer = SpeculativeTimer(spec, hw, sv, weight_dtype=w, kv_dtype=k, tp=t, profile=profile, ep=x)
            required = required + timer.draft_bytes(replica_batch(B, x, t), S)  # as estimate counts the draft
            if q == 1 and x == 1:
                plain, _, _, per_token, _ = timer.times(B, S)
            else:  # stages or expert parallelism: serve's step timer, one batch and context at a time
                plain_step, spec_step = layout_times(timer, t, q, x)
                pairs = list(zip(B.tolist(), S.tolist()))
                plain = np.array([plain_step(b, s) for b, s in pairs])
                per_token = np.array([spec_step(b, s) for b, s in pairs]) / timer.sp.tokens_per_step()
            spec_ms, spec_x = per_token * 1e3, plain / per_token
        else:
            spec_ms = spec_x = np.full(n, np.nan)
        for name, value in {
            "tensor_parallel": t, "pipeline_parallel": q, "expert_parallel": x,
            "batch": B, "context": S, "prompt": S,
            "kv_bytes_per_token": kv_bytes_per_token(spec, ev.p.b_kv),
            # on all the GPUs together, as estimate's kv_cache.bytes (the fortieth audit, outputs 1: one copy)
            "kv_bytes": kv_bytes_all_gpus(spec, B, S, ev.p.b_kv, t),
            "params": total_params(spec), "active_params": active_params(spec),
            # the checkpoint's, one copy, as estimate's weights.bytes (the sixth audit: one GPU's share under tp or
            # pp had been written here)
            "weights_bytes": weight_bytes(spec, ev.p.b_w),
            "memory_required_bytes": required, "fits": required <= ev.usable_bytes,
            "starts": not refusals, "start_note": "; ".join(refusals),
            "decode_ms": dec["ms"], "decode_speed_of_light_ms": dec["speed_of_light_ms"],
            "decode_tokens_per_s": dec["tokens_per_s"], "decode_bound": dec["bound"] == "compute",
            "decode_arithmetic_intensity": dec["arithmetic_intensity"],
            "prefill_ms": pre["ms"], "prefill_speed_of_light_ms": pre["speed_of_light_ms"],
            "prefill_bound": pre["bound"] == "compute",
            "speculative_ms_per_token": spec_ms, "speculative_speedup": spec_x,
        }.items():
            columns.setdefault(name, []).append(np.broadcast_to(value, n))
        if on_combination:
            on_combination()
    if not labels:  # one line naming the flag at fault where one is (the sixth audit: an --ep blamed --tp/--pp)
        flags = {flag for flag in ("--tp", "--pp", "--ep", "--kv-dtype")
                 if any(f"({flag}:" in s or f"({flag} " in s for s in skipped)}
        flag = next(iter(flags)) if len(flags) == 1 else "/".join(sorted(flags)) or "--tp/--pp/--ep"
        raise KvcalcError(f"{flag}: no combination applies to the models given: {'; '.join(skipped)[:300]}")
    if skipped:
        warnings.warn(f"sweep skipped {', '.join(skipped)}", stacklevel=2)
    for why in dict.fromkeys(unsupported):
        warnings.warn(why, stacklevel=2)
    # Label columns become categoricals built from integer codes, once: per-row Python strings would cost more
    # than every formula of the sweep together.
    combination = np.repeat(np.arange(len(labels)), n)
    data = {}
    for j, name in enumerate(("model", "gpu", "attention", "weight_dtype", "kv_dtype", "engine", "speculate")):
        categories = list(dict.fromkeys(label[j] for label in labels))
        codes = np.array([categories.index(label[j]) for label in labels])[combination]
        data[name] = pd.Categorical.from_codes(codes, categories)
    from kvcalc.units import is_byte_count

    for name, parts in columns.items():
        data[name] = np.concatenate(parts)
        if is_byte_count(name) and np.issubdtype(data[name].dtype, np.floating):  # whole bytes, as the JSON and the
            # CSV give them, halves up (units.round_half_up; the eighth audit's verification, W4)
            finite = np.isfinite(data[name])
            if finite.all() and np.abs(data[name]).max(initial=0.0) < 2.0**63:  # past int64, whole floats (the
                # thirty-fourth audit, API 2: 9.4e18 bytes had wrapped to -9,223,372,036,854,775,808)
                data[name] = np.floor(data[name] + 0.5).astype(np.int64)
            else:  # a byte count past every bound stays a float, inf, as the formulas give it, or past int64
                data[name] = np.where(finite, np.floor(np.where(finite, data[name], 0) + 0.5), data[name])
    for name in ("decode_bound", "prefill_bound"):
        data[name] = pd.Categorical.from_codes(data[name].astype(np.int8), ["memory", "compute"])
    order = ["model", "gpu", "attention", "weight_dtype", "kv_dtype", "engine", "speculate", *columns]
    return pd.DataFrame({name: data[name] for name in order})


def combinations(models, gpus, attn, weight_dtype, kv_dtype, engine=("auto",), tp=(1,), pp=(1,),
                 speculate=(None,), ep=(1,)) -> int:
    return (len(models) * len(gpus) * len(attn) * len(weight_dtype) * len(kv_dtype) * len(engine) * len(tp) * len(pp)
            * len(speculate) * len(ep))
