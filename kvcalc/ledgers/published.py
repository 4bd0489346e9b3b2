"""kvcalc against published end-to-end measurements of real stacks (validation/published/: every CSV there).

Each row is a figure an engine's README, documentation or a benchmark page printed, with its setup. kvcalc predicts
it through the same evaluate() every command uses, with the row's engine profile and tensor-parallel degree:
    decode_tokens_per_s   1000 / decode step ms at the mean cached context (input + output / 2), one sequence
    tpot_ms               the decode step ms at the mean cached context; at batch C > 1 (a serving benchmark at
                          concurrency C) plus the other C - 1 prompts' prefill spread over the O - 1 steps
    itl_median_ms         the median inter-token latency: the decode step ms at the mean cached context
    ttft_ms               the prefill of input_len tokens
    throughput_out_tokens_per_s_per_gpu
                          a static batch: B * output / (prefill of B x input + (output - 1) decode steps) / GPUs
Each step adds the engine's time outside its kernels and each TTFT its per-request cost (engines/overhead.py),
fitted here per release band on the rows where the kernels are a small share (fit_overheads). Scoring is leave one
source out: an organisation's rows (organisation(): NVIDIA's documentation and blogs are one, as the serving ledger
holds them) are predicted with every fitted constant (those overheads, and the kernel-time scale of a profile
fitted to end-to-end runs: ledgers/fit_e2e.py, and the fused-MoE factor of an older release's kernel era:
engines/kernel_eras.py, fit_moe_scales) refitted without that organisation's rows.
Rows marked `fit` fitted a profile and are reported apart from the `score` rows; `excluded: why` rows are kept
but not scored. No measurement may beat kvcalc's speed of light: one that does points at a wrong spec or formula.
"""

from __future__ import annotations

import csv
import functools
import math
import statistics
from pathlib import Path

import numpy as np

from kvcalc.engines.kernel_eras import ERAS, era_of_ledger_row
from kvcalc.engines.kernel_eras import MIN_PUBLISHERS as MIN_ERA_PUBLISHERS
from kvcalc.engines.overhead import (
    BANDS,
    band_of_ledger_row,
    bands,
    overhead_seconds,
    step_cost_us,
    synced_layers,
)
from kvcalc.checks import MAX_BATCH, MAX_GPUS, MAX_TOKENS
from kvcalc.errors import KvcalcError
from kvcalc.estimator import check_tp, evaluate, phase_metrics
from kvcalc.formulas.workload import (
    mean_decode_context,
    output_tokens_per_s_per_gpu,
    serving_tpot,
    static_batch_seconds,
)
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine
from kvcalc.specs.files import MAX_TABLE_BYTES, is_folder, plain_number_text, read_regular_file
from kvcalc.specs.model import QuantizationSpec
from kvcalc.specs.profile import EngineOverhead, EngineProfile, FitRecord

NO_OVERHEAD = EngineOverhead(sources=["kernels alone: the ledger fits the overheads itself"])

COLUMNS = ["id", "engine", "engine_version", "gpu", "model", "weight_dtype", "kv_dtype", "tp", "metric", "batch",
           "input_len", "output_len", "measured", "use", "source"]
OPTIONAL = {"pp": "1", "ep": "1", "publisher": "", "link": "", "note": ""}  # the newer files' columns
INTS = ("tp", "pp", "ep", "batch", "input_len", "output_len")
# each integer's most, kvcalc's own (kvcalc/checks.py): GPUs, sequences, tokens
INT_LIMITS = {"tp": MAX_GPUS, "pp": MAX_GPUS, "ep": MAX_GPUS, "batch": MAX_BATCH, "input_len": MAX_TOKENS,
              "output_len": MAX_TOKENS}
RATES = {"decode_tokens_per_s", "throughput_out_tokens_per_s_per_gpu"}  # higher is faster
METRICS = RATES | {"tpot_ms", "ttft_ms", "itl_median_ms"}


def read_points(path: Path) -> list[dict]:
    """The rows of one CSV, or of every CSV in a folder (sorted by name), with numbers parsed; a malformed row is a
    one-line error naming the file, row and field. Each row carries its publisher: the `publisher` column, else the
    first word of its `source` (the older measurements.csv), which leave-one-source-out scoring holds out together."""
    path = Path(path)
    if is_folder(path):
        files = sorted(path.glob("*.csv"))
        if not files:
            raise KvcalcError(f"--published: {path} holds no .csv files")
        points = [p for f in files for p in read_points(f)]
        seen: set[str] = set()
        for p in points:
            if p["id"] in seen:
                raise KvcalcError(f"--published: {path}: row id {p['id']!r} appears twice")
            seen.add(p["id"])
        return _once(points, path)
    return _once(_read_file(path), path)


# what makes two rows one measurement: the same publisher's figure for the same question
SAME_MEASUREMENT = ("publisher", "source", "engine", "gpu", "model", "metric", "tp", "pp", "ep", "batch", "input_len",
                    "output_len", "measured")


def _once(points: list[dict], path: Path) -> list[dict]:
    """The points, each scored measurement once: a second scored row of the same measurement is an error (the
    thirty-first audit, L1: Millstone AI's two RTX PRO 6000 figures had been scored twice, from two files, moving the
    RTX group's median from 43.1 % to 23.5 %); and a scored row of an engine with overhead bands must name its
    release or month (L3: NIM's 'unknown (NIM 1.8.0)' had been scored with no engine overhead at all)."""
    first: dict[tuple, str] = {}
    for p in scored(points):
        key = tuple(p[k] for k in SAME_MEASUREMENT)
        if key in first:
            raise KvcalcError(f"--published: {path}: rows {first[key]} and {p['id']} are the same measurement; "
                              "exclude one of them ('excluded: the same measurement as ...')")
        first[key] = p["id"]
        if bands(p["engine"]) and band_of_ledger_row(p["engine"], p["engine_version"]) is None:
            raise KvcalcError(f"--published: {path}: row {p['id']}: field engine_version: {p['engine_version']!r:.60} "
                              "names neither a release nor a month ('unknown (2025-04)'), so no engine-overhead band "
                              "applies; name one, or exclude the row")
    return points


def _read_file(path: Path) -> list[dict]:
    raw = read_regular_file(path, "a CSV of published measurements", MAX_TABLE_BYTES)
    try:
        reader = csv.DictReader(raw.decode("utf-8-sig").splitlines())
        rows, lines = [], []
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)  # the row's last line (a quoted cell may span several)
    except (UnicodeDecodeError, csv.Error) as e:
        raise KvcalcError(f"--published: cannot read {path} ({e})") from None
    if not rows or set(COLUMNS) - set(rows[0]):
        raise KvcalcError(f"--published: {path} needs the columns {', '.join(COLUMNS)}")
    # a column named twice had been read as its last copy (the twenty-first audit, C3: a second `measured` column
    # of 5 fitted row gf-01 at 5 tokens/s where its own cell says 104.9), as the benchmark and trace readers refuse it
    header = reader.fieldnames or []
    twice = next((h for k, h in enumerate(header) if h in header[:k]), None)
    if twice is not None:
        raise KvcalcError(f"--published: {path}: line 1: field {twice}: named twice in the header")
    seen: set[str] = set()
    for row in rows:
        if row.get("id") in seen:
            raise KvcalcError(f"--published: {path}: row id {row['id']!r} appears twice")
        seen.add(row.get("id"))
    points: list[dict] = []
    for row, line in zip(rows, lines):
        where = f"{path}: row {row.get('id') or len(points) + 1}"
        if None in row.keys():  # fuzz 2: a row longer or shorter than the header was a traceback further on
            raise KvcalcError(f"{where}: more cells than the header's {len(row) - 1}")
        short = [k for k in COLUMNS if row.get(k) is None]
        if short:
            raise KvcalcError(f"{where}: column {short[0]}: missing (the row is shorter than the header)")
        row = {**OPTIONAL, **{k: v for k, v in row.items() if v not in (None, "") or k not in OPTIONAL}}
        row["publisher"] = row["publisher"] or (row["source"].split() or ["unknown"])[0]
        point = dict(row)
        if point["engine"] not in LEDGER_ENGINES:  # the sixth audit: 'GPT-Fast' had been scored on the roofline
            raise KvcalcError(f"{where}: field engine: expected one of {', '.join(LEDGER_ENGINES)}, got "
                              f"{point['engine']!r} (line {line})")
        for field in (*INTS, "measured"):
            if not plain_number_text(row[field]):
                raise KvcalcError(f"{where}: field {field}: expected ASCII digits, got {row[field]!r} (line {line})")
            try:
                point[field] = float(row[field]) if field == "measured" else int(row[field])
            except (TypeError, ValueError):
                raise KvcalcError(f"{where}: field {field}: expected {'a number' if field == 'measured' else 'an integer'}"
                                  f", got {row[field]!r:.40} (line {line})") from None
            # fresh audit C: batch -1 was a TypeError traceback in the roofline, batch 0 and a negative measurement
            # were scored; a batch, a length, a parallel degree and a measurement are all above zero; an integer is
            # within kvcalc's own limits (the twenty-first audit, C2: 10**400 overflowed math.isfinite, 1e20 was fitted)
            limit = INT_LIMITS.get(field)
            if limit is not None and point[field] > limit:
                raise KvcalcError(f"{where}: field {field}: {row[field]:.40} is past kvcalc's limit of {limit:,} "
                                  f"(line {line})")
            if not (math.isfinite(point[field]) and point[field] > 0):
                raise KvcalcError(f"{where}: field {field}: expected a positive "
                                  f"{'finite number' if field == 'measured' else 'integer'}, got {row[field]!r:.40} "
                                  f"(line {line})")
        if point["metric"] not in METRICS:
            raise KvcalcError(f"{where}: metric {point['metric']!r}; expected one of {', '.join(sorted(METRICS))}")
        if not (point["use"] in ("fit", "score") or point["use"].startswith("excluded")):
            raise KvcalcError(f"{where}: use must be fit, score or 'excluded: reason'")
        points.append(point)
    return points


LEDGER_ENGINES = ("vllm", "sglang", "trtllm", "gpt-fast")  # the engines a published row can be timed by


def kernel_times(point: dict, profile: EngineProfile | None) -> dict:
    """The row's prefill and decode step [ms] from the kernels alone (no engine overhead), and at the speed of
    light: what every overhead fit starts from (a closed form in the overheads then gives the metric)."""
    if profile is not None:
        profile = profile.model_copy(update={"overhead": NO_OVERHEAD})
    spec, hw = load_model(point["model"]), load_gpu(point["gpu"])
    if point["engine"] == "gpt-fast" and point["weight_dtype"] in ("int8", "int4"):
        # gpt-fast's quantize.py replaces every nn.Linear, the output layer included, with its int8/int4 version
        spec = spec.model_copy(update={"quantization": QuantizationSpec(
            weight_format=point["weight_dtype"], lm_head=True, source="gpt-fast quantize.py: every nn.Linear")})
    b, p_len, o_len, tp = point["batch"], point["input_len"], point["output_len"], point["tp"]
    pp, ep = point.get("pp", 1), point.get("ep", 1)
    check_tp(tp, spec, point["weight_dtype"], ep)
    context = 0 if point["metric"] == "ttft_ms" else mean_decode_context(p_len, o_len)
    ev = evaluate(spec, hw, batch=b, context=context, prompt=p_len, weight_dtype=point["weight_dtype"],
                  kv_dtype=point["kv_dtype"], tp=tp, profile=profile, pp=pp, ep=ep)
    w = point["weight_dtype"]
    dec = phase_metrics(ev.decode, ev.decode_sol, b, hw, w, ev.comm_s, ev.comm_sol_s, ev.pipeline_s)
    pre = phase_metrics(ev.prefill, ev.prefill_sol, b * p_len, hw, w, ev.prefill_comm_s, ev.prefill_comm_sol_s,
                        ev.prefill_pipeline_s, ev.prefill_pipeline_sol_s)
    return {"prefill_ms": pre["ms"], "decode_ms": dec["ms"], "prefill_sol_ms": pre["speed_of_light_ms"],
            "decode_sol_ms": dec["speed_of_light_ms"],
            # the fused-MoE kernels' share, which a kernel era's factor multiplies (engines/kernel_eras.py)
            "moe_prefill_ms": _moe_ms(ev.prefill), "moe_decode_ms": _moe_ms(ev.decode)}


def _moe_ms(step) -> float:
    return float(sum(o.seconds for o in step.ops if o.op.name == "moe/routed")) * 1e3


def gpus(point: dict) -> int:
    """GPUs the run used: tp x pp, or the expert-parallel group."""
    return max(point["tp"] * point.get("pp", 1), point.get("ep", 1))


def synced(point: dict) -> int:
    """Layers of the run's steps whose GPUs synchronise (engines/overhead.py synced_layers)."""
    return synced_layers(_layers(point["model"]), point["tp"], point.get("ep", 1))


@functools.lru_cache(maxsize=256)
def _layers(model: str) -> int:
    return load_model(model).num_layers


def metric_value(point: dict, prefill_ms, decode_ms, step_ms=0.0, request_ms=0.0):
    """The row's metric from a prefill and a decode step [ms] plus the engine's overheads (a closed form; works on
    numpy arrays of overheads): each step, prefill and decode, adds step_ms; a request's TTFT adds request_ms."""
    metric, b, o_len = point["metric"], point["batch"], point["output_len"]
    if metric == "decode_tokens_per_s":
        return 1000 / (decode_ms + step_ms)
    if metric == "itl_median_ms":  # the median gap between tokens: a plain decode step (formulas/workload.py)
        return decode_ms + step_ms
    if metric == "tpot_ms":  # at batch C > 1 a serving benchmark at concurrency C: the other C - 1 requests'
        # prompts are prefilled during this one's decode (serving_tpot); prefill_ms is the C prompts together
        return serving_tpot(decode_ms + step_ms, prefill_ms / b, b, o_len)
    if metric == "ttft_ms":
        return prefill_ms + step_ms + request_ms
    seconds = static_batch_seconds((prefill_ms + step_ms) / 1000, (decode_ms + step_ms) / 1000, o_len)
    return output_tokens_per_s_per_gpu(b, o_len, seconds, gpus(point))


def predict(point: dict, profile: EngineProfile | None) -> tuple[float, float]:
    """(expected, speed of light) of the row's metric, in its unit: the kernels plus the profile's overhead (its
    stated one, else its release band's: engines/overhead.py), as `kvcalc estimate` adds it; the speed of light
    never includes an overhead."""
    k = kernel_times(point, profile)
    step_s, request_s = overhead_seconds(profile, gpus(point), synced(point))
    return (metric_value(point, k["prefill_ms"], k["decode_ms"], step_s * 1e3, request_s * 1e3),
            metric_value(point, k["prefill_sol_ms"], k["decode_sol_ms"]))


def profile_for(point: dict) -> EngineProfile | None:
    return resolve_engine(point["engine"], load_gpu(point["gpu"]))


def _profile_or_none(point: dict) -> EngineProfile | None:
    """The row's engine profile; where its GPU has none (no measured or transferred tables), the datasheet roofline,
    which the provenance column then names."""
    try:
        return profile_for(point)
    except KvcalcError:
        return None


def faster_than_light(point: dict, speed_of_light: float) -> bool:
    m = point["measured"]
    return m > speed_of_light * (1 + 1e-9) if point["metric"] in RATES else m < speed_of_light * (1 - 1e-9)


def scored(points: list[dict]) -> list[dict]:
    return [p for p in points if not p["use"].startswith("excluded")]


def band_key(point: dict) -> str | None:
    """'engine band' of the row's release (engines/overhead.py), or None where the engine has no bands."""
    b = band_of_ledger_row(point["engine"], point["engine_version"])
    return f"{b.engine} {b.name}" if b else None


def era_key(point: dict) -> str | None:
    """'engine era' of the row's release (engines/kernel_eras.py), or None: the profile's own kernels."""
    e = era_of_ledger_row(point["engine"], point["engine_version"])
    return f"{e.engine} {e.name}" if e else None


STEP_GRID_US = np.concatenate([[0.0], np.geomspace(10, 60_000, 200)])  # fixed part of the step cost [us]
PER_GPU_GRID_US = np.concatenate([[0.0], np.geomspace(10, 20_000, 80)])  # per GPU beyond the first [us]
REQUEST_GRID_MS = np.concatenate([[0.0], np.geomspace(0.1, 3_000, 120)])
# weight formats whose GEMMs the profiles time from their own tables: a weight-only int4/int8 row (AWQ, GPTQ,
# Marlin kernels at batch 1) would have its kernels' error pass for overhead
OVERHEAD_WEIGHTS = ("bf16", "fp16", "fp8")
MIN_SLOPE_PUBLISHERS = 2  # a per-GPU term is fitted only where multi-GPU rows come from at least two publishers.
# With 1, vLLM V1's term (2.4 ms a GPU) rested on one source's TP 2 runs and made an 8B model at batch 1 slower on
# two GPUs than on one; the term fitted on old TensorRT-LLM engine rows put TensorRT-LLM's own perf-overview ledger
# (validation/serve, 40 rows it was never fitted to) at 11.4 % against 9.9 % without it. It did lower the multi-GPU
# rows' held-out median here (31 % against 40 %, 260 rows, 2026-12-05): what those rows miss is not yet explained.
SYNC_GRID_US = np.concatenate([[0.0], np.geomspace(1, 500, 80)])  # per synchronised layer [us]
MIN_SYNC_PUBLISHERS = 2  # the synchronised-layer cost is fitted where multi-GPU rows come from this many publishers
MIN_PUBLISHERS = 1  # a band (or an engine) is fitted on its own rows where this many publishers give some (2 was
# tried: it pools vLLM's Python overheads into TensorRT-LLM's C++ runtime, and scores worse held out)
SMALL_BATCH = 1  # overheads are fitted where the kernels are a small share and no other request's prefill
# shares the step: one sequence (a serving benchmark's TPOT at concurrency 4-8 carries prefill chunks the ledger's
# decode-step metric does not model, and would be read as overhead)


def overhead_rows(rows: list[dict]) -> list[dict]:
    """The rows an overhead may be fitted on: a release band, a measured engine profile (a transferred one or the
    datasheet roofline would have the overhead absorb its own kernel error), one sequence (SMALL_BATCH), 16-bit or
    fp8 weights (OVERHEAD_WEIGHTS), and no PCIe group (the all-reduces over PCIe, which kvcalc times less well, would pass for a per-GPU overhead)."""
    return [r for r in rows if r["band"] and r["provenance"] == "measured" and r["batch"] <= SMALL_BATCH
            and not (gpus(r) > 1 and is_pcie(r)) and r["weight_dtype"] in OVERHEAD_WEIGHTS]


def step_ms(point: dict, step_us, per_gpu_us, per_layer_us=0.0):
    return step_cost_us(step_us, per_gpu_us, per_layer_us, gpus(point), synced(point)) / 1000


def _publisher_weights(rows: list[dict]) -> dict[str, float]:
    """1 / (the organisation's rows): every source weighs the same in a fit, however many rows it printed, and an
    organisation publishing under several names (LMSYS's blog and SGLang's repository; NVIDIA's three) weighs once
    (the thirty-fourth audit, overhead 5: counted by name, NVIDIA had weighed three times)."""
    count: dict[str, int] = {}
    for r in rows:
        count[organisation(r["publisher"])] = count.get(organisation(r["publisher"]), 0) + 1
    return {r["id"]: 1 / count[organisation(r["publisher"])] for r in rows}


def fit_one(rows: list[dict], per_gpu_term: bool = True, per_layer_us: float = 0.0) -> tuple[float, float, float]:
    """(step [us], per extra GPU [us], request [ms]) minimising the summed |log(predicted / measured)| over rows,
    each source weighing the same (a row weighs 1 / its publisher's rows), on a grid (0, then log-spaced: 10 us -
    60 ms, 10 us - 20 ms, 0.1 ms - 3 s), with per_layer_us a synchronised layer (fit_overheads fits it over every
    band). The step cost is fitted on the rows that are not TTFT (on the TTFT rows where there are no others), its
    per-GPU term where multi-GPU rows exist (MIN_SLOPE_PUBLISHERS), the request cost then on the TTFT rows.
    per_gpu_term False: no per-GPU term (a fit pooled over engines)."""
    return _fit_one(rows, per_gpu_term, per_layer_us)[0]


def _fit_one(rows: list[dict], per_gpu_term: bool, per_layer_us: float) -> tuple[tuple[float, float, float], float]:
    """(fit_one's figures, the summed weighted |log error| of the step rows at them). Rows of first-token times only
    fit the per-request cost, no per-step one: a gap there is the request's (API server, tokenisation), and taken as
    a step's it had been added to every decode step of TensorRT-LLM's engine band (2,070 us fitted on NVIDIA's ten
    batch-1 TTFT rows; the thirty-fourth audit, overhead 3)."""
    steps = [r for r in rows if r["metric"] != "ttft_ms"]
    if not steps:
        request_ms, loss = _fit_request(rows, 0.0, 0.0, per_layer_us)
        return (0.0, 0.0, float(f"{request_ms:.3g}")), loss
    several = {organisation(r["publisher"]) for r in steps if gpus(r) > 1}
    per_gpu = PER_GPU_GRID_US if per_gpu_term and len(several) >= MIN_SLOPE_PUBLISHERS else np.array([0.0])
    fixed, slope = np.meshgrid(STEP_GRID_US, per_gpu, indexing="ij")
    w = _publisher_weights(steps)
    loss = sum(w[r["id"]] * np.abs(np.log(metric_value(r, r["prefill_ms"], r["decode_ms"],
                                                       step_ms(r, fixed, slope, per_layer_us)) / r["measured"]))
               for r in steps)
    i = np.unravel_index(int(np.argmin(loss)), loss.shape)
    step_us, per_gpu_us = float(fixed[i]), float(slope[i])
    ttft = [r for r in rows if r["metric"] == "ttft_ms"]
    request_ms = _fit_request(ttft, step_us, per_gpu_us, per_layer_us)[0] if ttft else 0.0
    return tuple(float(f"{x:.3g}") for x in (step_us, per_gpu_us, request_ms)), float(loss[i])


def _fit_request(ttft: list[dict], step_us: float, per_gpu_us: float, per_layer_us: float) -> tuple[float, float]:
    """(the per-request cost [ms] on REQUEST_GRID_MS that the first-token rows `ttft` fit best beside the step costs
    given, its summed weighted |log error|)."""
    w = _publisher_weights(ttft)
    loss = sum(w[r["id"]] * np.abs(np.log(metric_value(r, r["prefill_ms"], r["decode_ms"], step_ms(
        r, step_us, per_gpu_us, per_layer_us), REQUEST_GRID_MS) / r["measured"])) for r in ttft)
    i = int(np.argmin(loss))
    return float(REQUEST_GRID_MS[i]), float(loss[i])


def fit_overheads(rows: list[dict], wanted: set[str] | None = None) -> dict[str, dict]:
    """Per release band ('vllm v1'), its overheads fitted on `rows` (overhead_rows of them): on the band's own rows
    where it has any (MIN_PUBLISHERS), else on its engine's, else on every engine's (pooled). A band the
    table marks transferred takes the band it names. One cost per synchronised layer is fitted over every band
    together (SYNC_GRID_US; where multi-GPU rows come from MIN_SYNC_PUBLISHERS publishers): the one whose bands,
    each refitted beside it, sum to the least loss. Each entry: step_us, step_us_per_extra_gpu,
    step_us_per_synced_layer, request_ms, level (band, engine or all engines) and the ids of the rows fitted on."""
    usable = overhead_rows(rows)
    wanted = set(wanted or {r["band"] for r in rows if r["band"]})

    def level(chosen: list[dict]) -> list[dict] | None:
        return chosen if len({organisation(r["publisher"]) for r in chosen}) >= MIN_PUBLISHERS else None

    plan: dict[str, tuple[str, list[dict]] | None] = {}
    for key in sorted(wanted):
        engine, name = key.split(" ", 1)
        b = next(x for x in bands(engine) if x.name == name)
        if b.provenance.startswith("not modelled"):
            plan[key] = None
            continue
        if b.provenance.startswith("transferred from "):
            key_from = f"{engine} {b.provenance.removeprefix('transferred from ')}"
        else:
            key_from = key
        for where, chosen in (("band", level([r for r in usable if r["band"] == key_from])),
                              ("engine", level([r for r in usable if r["engine"] == engine])),
                              ("all engines", usable)):
            if chosen is not None:
                break
        plan[key] = (where if key_from == key else f"{where} of {key_from}", chosen or [])

    def fits_at(per_layer_us: float) -> tuple[dict, float]:
        # pooled over engines: the fixed step cost only. A per-GPU term is one runtime's (its processes' launch and
        # sync); pooled, TensorRT-LLM's and vLLM's TP 2-4 rows gave SGLang at TP 8 a 1.35 ms-a-GPU term (10.8 ms a
        # step) that no engine's own band fits (MIN_SLOPE_PUBLISHERS)
        pooled = _fit_one(usable, False, per_layer_us) if usable else ((0.0, 0.0, 0.0), 0.0)
        out, total, counted = {}, 0.0, set()
        for key, entry in plan.items():
            if entry is None:
                continue
            where, chosen = entry
            figures, loss = (_fit_one(chosen, True, per_layer_us) if chosen and not where.startswith("all engines")
                             else pooled)
            out[key] = figures
            ids = frozenset(r["id"] for r in chosen)
            if ids not in counted:  # a row set two bands share (v2 takes v1's) counts once
                counted.add(ids)
                total += loss
        return out, total

    synced_publishers = {organisation(r["publisher"]) for r in usable if synced(r)}
    grid = SYNC_GRID_US if len(synced_publishers) >= MIN_SYNC_PUBLISHERS else np.array([0.0])
    best = min(((fits_at(float(u)), float(u)) for u in grid), key=lambda x: x[0][1])
    (figures, _), per_layer_us = best
    per_layer_us = float(f"{per_layer_us:.3g}")
    out = {}
    for key, entry in plan.items():
        if entry is None:
            out[key] = {"step_us": 0.0, "step_us_per_extra_gpu": 0.0, "step_us_per_synced_layer": 0.0,
                        "request_ms": 0.0, "level": "not modelled", "rows": []}
            continue
        step_us, per_gpu_us, request_ms = figures[key]
        out[key] = {"step_us": step_us, "step_us_per_extra_gpu": per_gpu_us, "step_us_per_synced_layer": per_layer_us,
                    "request_ms": request_ms, "level": entry[0], "rows": [r["id"] for r in entry[1]]}
    return out


SCALE_GRID = np.geomspace(0.25, 8.0, 241)  # the fused-MoE factor's candidates


def moe_scale_rows(rows: list[dict]) -> list[dict]:
    """The rows an era's MoE factor may be fitted on: in an era, a model with routed experts, a measured profile
    (a transferred one would have the factor absorb its own kernel error)."""
    return [r for r in rows if r.get("era") and r["provenance"] == "measured" and r.get("moe_decode_ms", 0) > 0]


def fit_moe_scales(rows: list[dict], overheads: dict) -> dict[str, dict]:
    """Per kernel era ('vllm 0.1-0.11'), the factor on the fused-MoE kernel time (SCALE_GRID) minimising the summed
    |log(predicted / measured)| over the era's moe_scale_rows, each publisher weighing the same, the band overheads
    `overheads` in place; 1 where fewer than MIN_ERA_PUBLISHERS publishers give rows. The kernel time is linear in
    the factor (formulas/roofline.py step_time multiplies the moe.* curves' time), so the grid needs no re-evaluation."""
    usable = moe_scale_rows(rows)
    out = {}
    for era in ERAS:
        key = f"{era.engine} {era.name}"
        chosen = [r for r in usable if r["era"] == key]
        publishers = {organisation(r["publisher"]) for r in chosen}  # organisations (overhead 5: with dstack held
        # out, LMSYS's blog and SGLang's repository had passed for two publishers)
        scale = 1.0
        if len(publishers) >= MIN_ERA_PUBLISHERS:
            w = _publisher_weights(chosen)
            loss = sum(w[r["id"]] * np.abs(np.log(metric_value(
                r, r["prefill_ms"] + (SCALE_GRID - 1) * r["moe_prefill_ms"],
                r["decode_ms"] + (SCALE_GRID - 1) * r["moe_decode_ms"], *_band_overhead(r, overheads)) / r["measured"]))
                for r in chosen)
            scale = float(f"{SCALE_GRID[int(np.argmin(loss))]:.3g}")
        out[key] = {"moe_scale": scale, "rows": [r["id"] for r in chosen], "publishers": len(publishers)}
    return out


# SGLang's own repository and LMSYS's blog: one organisation; TensorRT-LLM's documentation is NVIDIA's, as its blogs
ORGANISATION_ALIASES = {"sglang": "lmsys", "tensorrt": "nvidia"}


def organisation(publisher: str) -> str:
    """The organisation behind a publisher's name, to hold a source out across ledgers: the name's first word
    ('dstack-benchmarks' here and 'dstack' in validation/serve are one), SGLang's project counted with LMSYS; a
    measurement posted in a project's issue or pull request ('trtllm-issue-220-fty1777') is its author's, not the
    project's (the review of the thirty-fourth audit, 6: two unrelated TensorRT-LLM issue reporters had counted as one
    source, and an SGLang PR author's rows as LMSYS's)."""
    words = publisher.strip().lower().split("-")
    if len(words) >= 4 and words[1] in ("issue", "pr") and words[2].isdigit():
        return "-".join(words[3:])
    return ORGANISATION_ALIASES.get(words[0], words[0])


def constants_without(rows: list[dict], held_out: str | None) -> dict[str, dict]:
    """Every constant this ledger fits, refitted on the prepared rows of every organisation but `held_out` (None:
    all): what another ledger's row of that organisation is scored with. {"overheads": {'vllm v1': EngineOverhead},
    "moe_scales": {'vllm 0.1-0.11': factor}, "fits": fit_overheads' own dicts (refit_e2e's `fits`)}; each era's MoE
    factor is fitted beside the refitted overheads."""
    keep = [r for r in rows if held_out is None or organisation(r["publisher"]) != held_out]
    overheads = fit_overheads(keep, {r["band"] for r in rows if r["band"]} | {f"{b.engine} {b.name}" for b in BANDS})
    held = f"refitted on validation/published/ without {held_out}'s rows" if held_out else "fitted on validation/published/"
    return {"overheads": {key: EngineOverhead(
                step_us=o["step_us"], step_us_per_extra_gpu=o["step_us_per_extra_gpu"],
                step_us_per_synced_layer=o["step_us_per_synced_layer"], request_ms=o["request_ms"],
                sources=[f"{key} band, {o['level']}, {held} (kvcalc/ledgers/published.py constants_without)"])
                for key, o in overheads.items()},
            "moe_scales": {k: v["moe_scale"] for k, v in fit_moe_scales(keep, overheads).items()},
            "fits": overheads}


def prepare(points: list[dict], roofline: bool = False) -> list[dict]:
    """The scored rows with their band, provenance and kernel times (each evaluated once)."""
    out = []
    for point in scored(points):
        profile = None if roofline else _profile_or_none(point)
        prov = "datasheet" if profile is None else getattr(profile, "provenance", None) or "measured"
        try:
            times = kernel_times(point, profile)
        except KvcalcError as e:
            raise KvcalcError(f"--published: row {point['id']} ({point['publisher']}): {e}") from None
        out.append({**point, "band": None if roofline else band_key(point), "era": None if roofline else era_key(point),
                    "provenance": str(prov), **times,
                    "profile_fitted_on": list(getattr(profile, "fitted_on", None) or [])})
    return out


def score(points: list[dict], roofline: bool = False, loso: bool = True) -> list[dict]:
    """One result per row: predicted, speed of light, error % = (predicted - measured) / measured.

    Overheads (per step and per request, by release band) are fitted on the ledger's rows: with loso (leave one
    source out) each organisation's rows (organisation(): NVIDIA's documentation and blogs are one source, as the
    serving ledger holds them out; the twenty-fifth audit, C6) are predicted with the overheads refitted on every
    other organisation's rows only, so no row is scored by a constant its own source set; `in_sample_error_pct`
    uses the fit on all rows.
    roofline: every row on the datasheet-efficiency roofline, no overhead (the baseline)."""
    rows = prepare(points, roofline)
    wanted = {r["band"] for r in rows if r["band"]}
    everyone = fit_overheads(rows, wanted) if not roofline else {}
    held = {}
    if loso and not roofline:
        for org in sorted({organisation(r["publisher"]) for r in rows}):
            held[org] = fit_overheads([r for r in rows if organisation(r["publisher"]) != org], wanted)
    by_id = {r["id"]: r for r in rows}
    refits: dict = {}
    if loso and not roofline:  # a profile fitted to end-to-end rows (AMD) is refitted without the scored source
        owner = {p["id"]: organisation(p["publisher"]) for p in points}
        for r in rows:
            refit = (held_out_refit(points, owner, r, r["profile_fitted_on"], held[organisation(r["publisher"])],
                                    refits) if r["provenance"] == "fitted" else None)
            if refit is not None:
                k = kernel_times(r, refit)
                by_id[r["id"]] = {**r, "held_out_prefill_ms": k["prefill_ms"], "held_out_decode_ms": k["decode_ms"]}
    # an older release's fused-MoE factor (engines/kernel_eras.py): fitted on every row (in sample) and without each
    # publisher (held out); a row whose era's factor is not 1 is re-timed with it
    eras_all = fit_moe_scales(rows, everyone) if not roofline else {}
    eras_held = {o: fit_moe_scales([r for r in rows if organisation(r["publisher"]) != o], held[o]) for o in held}

    def with_moe_scale(r: dict, scales: dict, profile: EngineProfile | None) -> tuple[float, float]:
        s = scales.get(r["era"], {}).get("moe_scale", 1.0) if r.get("era") else 1.0
        if s == 1.0 or profile is None or r.get("moe_decode_ms", 0) + r.get("moe_prefill_ms", 0) == 0:
            return r.get("held_out_prefill_ms", r["prefill_ms"]), r.get("held_out_decode_ms", r["decode_ms"])
        k = kernel_times(r, profile.model_copy(update={"moe_time_scale": s}))
        return k["prefill_ms"], k["decode_ms"]

    out = []
    for point in points:
        if point["id"] not in by_id:
            out.append({**point, "predicted": None, "speed_of_light": None, "error_pct": None,
                        "in_sample_error_pct": None, "faster_than_speed_of_light": None, "band": None,
                        "step_us": None, "request_ms": None, "moe_scale": None, "provenance": None})
            continue
        r = by_id[point["id"]]
        org = organisation(r["publisher"])
        fits = held.get(org, everyone)
        step, request_ms = _band_overhead(r, fits)
        profile = None if roofline else _profile_or_none(r)
        held_profile = refits.get((org, r["gpu"], r["engine"]), profile) if "held_out_decode_ms" in r else profile
        moe_scale = (eras_held.get(org, eras_all).get(r["era"], {}).get("moe_scale", 1.0)
                     if r.get("era") else 1.0)
        predicted = float(metric_value(r, *with_moe_scale(r, eras_held.get(org, eras_all), held_profile),
                                       step, request_ms))
        in_sample = float(metric_value(r, *with_moe_scale({k: v for k, v in r.items() if not k.startswith("held_out")},
                                                          eras_all, profile), *_band_overhead(r, everyone)))
        sol = float(metric_value(r, r["prefill_sol_ms"], r["decode_sol_ms"]))
        m = r["measured"]
        out.append({**r, "predicted": predicted, "speed_of_light": sol, "error_pct": (predicted - m) / m * 100,
                    "in_sample_error_pct": (in_sample - m) / m * 100, "step_us": step * 1000, "request_ms": request_ms,
                    "moe_scale": moe_scale, "faster_than_speed_of_light": faster_than_light(r, sol)})
    return out


def held_out_refit(points: list[dict], owner: dict[str, str], row: dict, fitted_on, fits: dict,
                   cache: dict) -> EngineProfile | None:
    """The row's end-to-end-fitted profile refitted without the row's organisation (refit_e2e, with the overheads
    `fits` fitted without it) where the profile was fitted on rows (ids `fitted_on`) of that organisation; None where
    it was not. owner: each point's organisation by id; cache: refits by (organisation, GPU, engine), which score and
    the serving ledger (ledgers/serving_sim.py) both take."""
    org = organisation(row["publisher"])
    if org not in {owner.get(i) for i in fitted_on}:
        return None
    key = (org, row["gpu"], row["engine"])
    if key not in cache:
        cache[key] = refit_e2e(points, row, fits)
    return cache[key]


def refit_e2e(points: list[dict], row: dict, fits: dict) -> EngineProfile:
    """The row's end-to-end-fitted profile (ledgers/fit_e2e.py) refitted on the same documented fit subset less the
    row's publisher, predicting with the overheads `fits` (themselves fitted without it); where nothing is left to
    fit on, the transferred profile unscaled."""
    from kvcalc.engines.transfer import transfer
    from kvcalc.ledgers.fit_e2e import SCALE_SIBLINGS, carry_scale, fit_rows, fit_scale

    own = transfer(row["gpu"], row["engine"])
    sibling, why = SCALE_SIBLINGS.get(own.gpu, (own.gpu, ""))  # a part fitted on another's rows (the MI325X)
    base = own if sibling == own.gpu else transfer(sibling, row["engine"])
    train = [p for p in fit_rows(scored(points), base.gpu, row["engine"])
             if organisation(p["publisher"]) != organisation(row["publisher"])]
    if not train:
        return own

    def predict_with(point: dict, profile: EngineProfile) -> tuple[float, float]:
        k = kernel_times(point, profile)
        step, request_ms = _band_overhead({**point, "band": band_key(point)}, fits)
        return (float(metric_value(point, k["prefill_ms"], k["decode_ms"], step, request_ms)),
                float(metric_value(point, k["prefill_sol_ms"], k["decode_sol_ms"])))

    fitted = fit_scale(train, base, predict=predict_with)
    return fitted if base is own else carry_scale(own, fitted, why)


def _band_overhead(row: dict, fits: dict) -> tuple[float, float]:
    """(step [ms] on the row's GPUs, request [ms]) from the fit of the row's band; nothing for a row without one."""
    fit = fits.get(row["band"]) if row["band"] else None
    if fit is None:
        return 0.0, 0.0
    return (float(step_ms(row, fit["step_us"], fit["step_us_per_extra_gpu"], fit["step_us_per_synced_layer"])),
            fit["request_ms"])


def gpu_family(gpu: str) -> str:
    return gpu.split("-")[0]


def is_pcie(r: dict) -> bool:
    """A card whose spec's topology is pcie (no GPU-to-GPU link), or a run the source says crossed PCIe."""
    return r.get("link") == "pcie" or getattr(load_gpu(r["gpu"]), "topology", None) == "pcie"


def groups(r: dict) -> list[str]:
    """The summary groups a row belongs to: PCIe/consumer (is_pcie); AMD is the spec's vendor."""
    n, hw = gpus(r), load_gpu(r["gpu"])
    amd = hw.vendor.upper() == "AMD"
    pcie = is_pcie(r)
    return ["all", f"gpu {gpu_family(r['gpu'])}", f"engine {r['engine']}", "one GPU" if n == 1 else "several GPUs",
            *(["AMD"] if amd else []), *(["PCIe/consumer"] if pcie else []), f"profile {r['provenance']}"]


def summary(results: list[dict], baseline: list[dict] | None = None) -> list[dict]:
    """Median and worst |error| per group (all, GPU family, engine, one GPU vs several, AMD, PCIe/consumer, profile
    provenance), for rows held out of every fit (use score: leave-one-source-out errors) and for the rows that
    fitted a profile (use fit) apart; with the in-sample error and the datasheet roofline (baseline: score(...,
    roofline=True)) on the same rows."""
    base = {r["id"]: r for r in baseline or []}
    rows = []
    for use in ("score", "fit"):
        chosen = [r for r in results if r["use"] == use and r["error_pct"] is not None]
        names: dict[str, list[dict]] = {}
        for r in chosen:
            for g in groups(r):
                names.setdefault(g, []).append(r)
        order = sorted(names, key=lambda g: (g != "all", g.split(" ")[0] if " " in g else "~", g))
        for name in order:
            group = names[name]
            errors = [abs(r["error_pct"]) for r in group]
            roof = [abs(base[r["id"]]["error_pct"]) for r in group if base.get(r["id"], {}).get("error_pct") is not None]
            rows.append({
                "rows": use, "group": name, "n": len(group),
                "median_abs_error_pct": round(statistics.median(errors), 1),
                "in_sample_median_abs_error_pct": round(statistics.median(abs(r["in_sample_error_pct"]) for r in group), 1),
                "roofline_median_abs_error_pct": round(statistics.median(roof), 1) if roof else None,
                "worst_abs_error_pct": round(max(errors), 1),
                "faster_than_speed_of_light": sum(bool(r["faster_than_speed_of_light"]) for r in group)})
    return rows


def fit_gpt_fast(points: list[dict], base: EngineProfile, allreduce_from: EngineProfile) -> EngineProfile:
    """gpt-fast's profile from its published `fit` rows: the base engine's measured GEMM and attention curve shapes
    on the same GPU, with two parameters refitted (the GEMMs' fixed latency, and a factor on their memory
    efficiency: gpt-fast's compiled GEMV kernels and its power-limited A100), and the base's all-reduce curves."""
    from scipy.optimize import least_squares

    fit_rows = [p for p in points if p["engine"] == "gpt-fast" and p["use"] == "fit"]
    if not fit_rows:
        raise KvcalcError("--published: no gpt-fast rows marked fit")
    gemm = {k: base.gemm[k] for k in ("bf16", "int8_wo") if k in base.gemm}

    def build(x) -> EngineProfile:
        curves = {k: c.model_copy(update={"t0_us": float(x[0]), "fit": None,
                                          "memory_efficiency": min(1.0, c.memory_efficiency * float(x[1]))})
                  for k, c in gemm.items()}
        return base.model_copy(update={"gemm": curves, "allreduce": allreduce_from.allreduce, "overhead": NO_OVERHEAD})

    def residuals(x):
        import math

        profile = build(x)
        return [math.log(predict(p, profile)[0] / p["measured"]) * (1 if p["metric"] in RATES else -1) for p in fit_rows]

    for p in fit_rows + [p for p in points if p["engine"] == "gpt-fast" and p["use"] == "score"]:
        try:  # a row kvcalc cannot evaluate is named before the fit (the third audit: "dtype: unknown dtype ''")
            predict(p, build([3.0, 1.0]))
        except KvcalcError as e:
            raise KvcalcError(f"--published: row {p['id']} ({p['publisher']}): {e}") from None
    x = least_squares(residuals, [3.0, 1.0], bounds=([0.0, 0.3], [50.0, 1.5])).x
    x = [float(f"{v:.4g}") for v in x]
    fitted = build(x)
    held = [p for p in points if p["engine"] == "gpt-fast" and p["use"] == "score"]
    fit_err = [abs(predict(p, fitted)[0] / p["measured"] - 1) * 100 for p in fit_rows]
    held_err = sorted(abs(predict(p, fitted)[0] / p["measured"] - 1) * 100 for p in held)
    record = FitRecord(
        table="validation/published/measurements.csv: gpt-fast decode tokens/s (fit on the rows marked fit, held out: "
              "the rows marked score)", kernels="gpt-fast's compiled GEMV/GEMM, on the base engine's curve shape",
        rows_fit=len(fit_rows), rows_held_out=len(held), fit_median_abs_error_pct=round(statistics.median(fit_err), 2),
        held_out_median_abs_error_pct=round(statistics.median(held_err), 2) if held else None,
        held_out_p90_abs_error_pct=round(held_err[int(0.9 * (len(held_err) - 1))], 2) if held else None,
    )
    fitted = fitted.model_copy(update={"gemm": {k: c.model_copy(update={"fit": record}) for k, c in fitted.gemm.items()}})
    return EngineProfile(
        gpu=base.gpu, engine="gpt-fast", engine_version="README benchmarks (PyTorch nightly, late 2023)",
        sources=["github.com/pytorch-labs/gpt-fast README.md: batch-1 tokens/s on an A100-80GB power-limited to "
                 "330 W (validation/published/measurements.csv, rows marked fit: " + ", ".join(p["id"] for p in fit_rows) + ")",
                 *base.sources],
        notes=(f"Fitted by `kvcalc profiles fit-published` on gpt-fast's {len(fit_rows)} single-GPU rows only: the "
               f"{base.engine} {base.engine_version} GEMM curves of this GPU with t0 refitted to {x[0]:g} us and their "
               f"memory efficiency scaled by {x[1]:g}; attention curves as {base.engine}'s; all-reduce curves are "
               f"{allreduce_from.engine} {allreduce_from.engine_version}'s (gpt-fast's intra-node all-reduce is "
               "not in the tables). Its multi-GPU rows were never fitted to and are scored as held out."),
        gemm=fitted.gemm, attention_decode=base.attention_decode, attention_prefill=base.attention_prefill,
        allreduce=allreduce_from.allreduce,
    )


def ledger(path: Path, roofline: bool = False) -> dict:
    """Everything `kvcalc validate --published` prints: each row scored (leave-one-source-out), the summary per
    group beside the datasheet roofline on the same rows, and the overheads fitted on every row (what
    kvcalc/engines/overhead.py ships)."""
    points = read_points(path)
    results = score(points, roofline=roofline)
    baseline = results if roofline else score(points, roofline=True)
    every_band = {f"{b.engine} {b.name}" for b in BANDS}
    rows = prepare(points)
    overheads = {} if roofline else fit_overheads(rows, every_band)
    eras = {} if roofline else fit_moe_scales(rows, overheads)
    return {"rows": results, "summary": summary(results, baseline), "overheads": [
        {"band": k, **{f: v for f, v in o.items() if f != "rows"}, "rows_fitted": len(o["rows"])}
        for k, o in overheads.items()], "kernel_eras": [
        {"era": k, "moe_scale": e["moe_scale"], "rows_fitted": len(e["rows"]), "publishers": e["publishers"]}
        for k, e in eras.items()]}
