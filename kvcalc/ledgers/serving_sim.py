"""Score the request-level simulator (serving/simulate.py) and the closed form (serving/closed_form.py) against
published serving benchmarks (validation/serve/unseen-serving.csv): each row runs with its own engine, model, GPU,
parallelism, dtypes, lengths, prompts and arrivals; nothing is fitted on these rows.

Each row's server_args column holds the server flags its source quotes; those that set the scheduler or the KV
pool are followed (SERVER_FLAGS), the rest are kept for the record. ShareGPT rows draw their lengths from the
published ShareGPT V3 sample (serving/simulate.py sharegpt_lengths).

Rows the simulator cannot run as published are reported with the reason, not scored: models or GPUs kvcalc has no
spec for, layouts it refuses.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
import warnings
from pathlib import Path

from kvcalc.errors import KvcalcError

COLUMNS = ("id", "engine", "engine_version", "model", "gpu", "tp", "pp", "ep", "dp_attention", "weight_dtype",
           "kv_dtype", "dataset", "input_len", "output_len", "range_ratio", "num_prompts", "concurrency",
           "request_rate", "output_tokens_per_s", "request_throughput", "median_ttft_ms", "p99_ttft_ms",
           "median_tpot_ms", "p99_tpot_ms", "median_itl_ms", "publisher", "source", "note", "server_args")
# server flags that set what the simulator models: flag -> simulate() keyword (and the value's type). vLLM: vllm/
# engine/arg_utils.py (--gpu-memory-utilization, --max-num-seqs, --max-num-batched-tokens); SGLang: python/sglang/
# srt/server_args.py (--mem-fraction-static, which argparse also takes as its prefix --mem-frac;
# --max-running-requests; --chunked-prefill-size); TensorRT-LLM: trtllm-serve's --max_batch_size, --max_num_tokens,
# --kv_cache_free_gpu_memory_fraction (tensorrt_llm/commands/serve.py).
SERVER_FLAGS = {
    "--gpu-memory-utilization": ("memory_utilization", float), "--max-num-seqs": ("max_num_seqs", int),
    "--max-num-batched-tokens": ("step_tokens", int), "--mem-fraction-static": ("memory_utilization", float),
    "--mem-frac": ("memory_utilization", float), "--max-running-requests": ("max_num_seqs", int),
    "--chunked-prefill-size": ("step_tokens", int), "--max_batch_size": ("max_num_seqs", int),
    "--max_num_tokens": ("step_tokens", int), "--kv_cache_free_gpu_memory_fraction": ("memory_utilization", float),
    "--speculative-config.num_speculative_tokens": ("speculate", lambda k: f"mtp={int(k)}"),
    # vLLM 0.6-0.7 multi-step scheduling (vllm/engine/arg_utils.py --num-scheduler-steps; argparse takes the prefix)
    "--num-scheduler-steps": ("num_scheduler_steps", int), "--num-scheduler-step": ("num_scheduler_steps", int),
}
METRICS = {  # ledger column: (simulator's figure, closed form's figure)
    "output_tokens_per_s": (lambda s: s["output_tokens_per_s"], lambda c: c["output_tokens_per_s"]),
    "median_ttft_ms": (lambda s: s["ttft_ms"]["p50"], lambda c: c["ttft_ms"]),
    "p99_ttft_ms": (lambda s: s["ttft_ms"]["p99"], None),
    "median_tpot_ms": (lambda s: s["tpot_ms"]["p50"], lambda c: c["tpot_ms"]),
    "p99_tpot_ms": (lambda s: s["tpot_ms"]["p99"], None),
    "median_itl_ms": (lambda s: s["itl_ms"]["p50"], lambda c: c["tpot_ms"]),
}
AMD = ("mi",)  # GPU names of AMD Instinct parts start with "mi" (hardware_specs/mi*.toml)


def is_serving_sim_ledger(path: Path) -> bool:
    """Whether a CSV has this ledger's header (its first line names every column above). A FIFO or a device is not:
    it is read through read_regular_file as every ledger reader does (fresh audit B: open() and readline() first
    waited forever on a FIFO and filled the memory from /dev/zero), and the general reader then says what it is."""
    from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file

    try:
        head = read_regular_file(Path(path), "a serving benchmark ledger CSV", MAX_TABLE_BYTES).split(b"\n", 1)[0]
        return tuple(head.decode("utf-8-sig").strip().split(",")) == COLUMNS
    except (KvcalcError, UnicodeDecodeError, ValueError):  # not this ledger: the general reader says what it is
        return False


# switches without a value: simulate()'s keyword and the value each sets (the scheduler a step ahead of the GPU or not)
SWITCHES = {"--async-scheduling": ("schedules_ahead", True), "--no-async-scheduling": ("schedules_ahead", False),
            "--disable-overlap-schedule": ("schedules_ahead", False)}


def server_kwargs(args: str) -> dict:
    """simulate()'s keywords for the server flags in `args` that it models (SERVER_FLAGS); others are ignored.
    "--max-num-seqs 1024 --gpu-memory-utilization=0.5" -> {"max_num_seqs": 1024, "memory_utilization": 0.5}."""
    out: dict = {}
    for flag, value in re.findall(r"(--[\w.-]+)(?:[ =]([^\s-][^\s]*))?", args or ""):
        if flag in SWITCHES and not value:  # a switch the run was launched with (vLLM's --async-scheduling)
            key, on = SWITCHES[flag]
            out[key] = on
        if flag in SERVER_FLAGS and value:
            key, kind = SERVER_FLAGS[flag]
            try:
                out[key] = kind(value)
            except ValueError:
                raise KvcalcError(f"--serve: server_args {flag}: expected a number, got {value!r}") from None
    return out


def read_rows(path: Path) -> list[dict]:
    import io

    from kvcalc.checks import MAX_TOKENS
    from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file

    raw = read_regular_file(Path(path), "a serving benchmark ledger CSV", MAX_TABLE_BYTES)
    try:  # fuzz 2: a byte that is not UTF-8 was a UnicodeDecodeError traceback
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise KvcalcError(f"--serve: {path}: not a CSV ledger ({e})") from None
    for n, row in enumerate(rows, 2):
        if None in row.keys():  # fuzz 2: a row longer or shorter than the header was a TypeError further on
            raise KvcalcError(f"--serve: {path} line {n}: more cells than the header's {len(row) - 1}")
        short = [k for k, v in row.items() if v is None]
        if short:
            raise KvcalcError(f"--serve: {path} line {n}, column {short[0]}: missing (the row has "
                              f"{len(row) - len(short)} of the header's {len(row)} cells)")
        for key in ("tp", "pp", "num_prompts"):
            if not (row.get(key) or "").strip().isdigit():
                raise KvcalcError(f"--serve: {path} line {n}, column {key}: expected a whole number, got "
                                  f"{row.get(key)!r}")
        for key in ("input_len", "output_len", "concurrency"):  # the fifth audit: 1e400 was an OverflowError
            text = (row.get(key) or "").strip()
            if text and not (_positive(text) and float(text) <= MAX_TOKENS):
                raise KvcalcError(f"--serve: {path} line {n}, column {key}: expected a positive number up to "
                                  f"{MAX_TOKENS:,} or blank, got {text[:40]!r}")
        for key in METRICS:  # long fuzz: 'x' in a measured column was a ValueError traceback while scoring
            text = (row.get(key) or "").strip()
            if text and not _positive(text):
                raise KvcalcError(f"--serve: {path} line {n}, column {key}: expected a positive number or blank (not "
                                  f"published), got {text!r}")
        row["_line"] = n
    if not rows:  # a header alone (fuzz 2: the table printer's first row was an IndexError)
        raise KvcalcError(f"--serve: {path}: holds no rows under its header")
    return rows


def _positive(text: str) -> bool:
    try:
        return math.isfinite(value := float(text)) and value > 0
    except ValueError:
        return False


def _number(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _vllm_v0_schedule(row: dict) -> dict:
    """vLLM before 0.8 (V0): chunked prefill on when --enable-chunked-prefill says so, else only above a 32K
    max_model_len (EngineArgs.create_engine_config, use_long_context); off, prompts run whole in steps of their own
    (engines/scheduler.py vllm_v0) with max_num_batched_tokens max(max_model_len, 2048) (SchedulerConfig). On, the
    mixed schedule and the policy's budget (V0's chunked default varied by release: not modelled)."""
    from kvcalc.specs.catalog import load_model

    args = row.get("server_args", "")
    given = re.search(r"--max-model-len[ =](\d+)", args)
    max_model_len = int(given[1]) if given else load_model(row["model"]).max_position_embeddings
    flag = re.search(r"--(no-)?enable-chunked-prefill(?:=(\w+))?", args)
    chunked = (not flag[1] and (flag[2] or "true").lower() == "true") if flag else max_model_len > 32768
    if chunked:
        return {}
    out = {"scheduler": "vllm-v0"}
    if "step_tokens" not in server_kwargs(args):
        out["step_tokens"] = max(max_model_len, 2048)
    return out


def row_kwargs(row: dict) -> dict:
    """simulate()'s keywords for a ledger row (KvcalcError when the row cannot be run as published, or its note
    excludes it: 'excluded: why; ...', a run kept with its figures that does not measure the workload it states)."""
    if (why := row.get("note", "").strip()).lower().startswith("excluded:"):
        raise KvcalcError(why.split(";")[0])
    dataset = row["dataset"].strip().lower()
    if not dataset.startswith(("random", "sharegpt")):
        raise KvcalcError(f"dataset {row['dataset']!r}: only random and sharegpt lengths are modelled")
    dataset = "sharegpt" if dataset.startswith("sharegpt") else "random"
    tp, pp = int(row["tp"]), int(row["pp"])
    ep = int(row.get("ep") or 1)
    if row.get("dp_attention", "0").strip() == "1":  # attention data-parallel over the GPUs, experts over all
        tp, ep = 1, tp * max(ep, 1) if ep > tp else tp
    elif 1 < ep < tp:  # experts split over TP within EP (TensorRT-LLM's --tp_size 8 --ep_size 4: MoE TP 2 x EP 4)
        # (the thirty-second audit, validate 1: run as plain TP 8, 50-85 % fast, where the published ledger excludes
        # the same runs and `serve --tp 8 --ep 4` refuses the layout)
        raise KvcalcError(f"--tp {tp} --ep {ep}: experts split {tp // ep} ways within {ep}-way expert parallelism, "
                          "a layout kvcalc does not model (its --ep is a multiple of --tp)")
    elif ep < tp:  # ep 1: experts within the tensor-parallel group, run tensor-parallel
        ep = 1
    note = row.get("note", "")
    client = "sglang" if "bench_serving" in note and "vllm bench" not in note else "vllm"
    rr = _number(row["range_ratio"]) or 0.0
    lens = ({"input_len": int(float(row["input_len"])), "output_len": int(float(row["output_len"]))}
            if dataset == "random" else {"input_len": None, "output_len": None})
    kw = {**lens, "dataset": dataset,
              "num_prompts": int(row["num_prompts"]), "tp": tp, "pp": pp, "ep": ep, "weight_dtype": row["weight_dtype"],
              "kv_dtype": row["kv_dtype"] or "bf16", "range_ratio": rr, "length_client": client, "seed": 0,
              **server_kwargs(row.get("server_args", ""))}
    if "speculate" in kw:
        _check_acceptance(row, kw["speculate"])
    if row["engine"] == "sglang":  # SGLang's chunk and running requests are the server's, shared by its data-parallel
        # attention ranks; its default chunk follows the GPU's memory (engines/scheduler.py sglang_server_budget)
        from kvcalc.engines.scheduler import sglang_rank_chunk, sglang_server_budget
        from kvcalc.formulas.parallel import attention_groups
        from kvcalc.specs.catalog import load_gpu

        dp, release = attention_groups(ep, tp), row.get("engine_version", "")
        kw["step_tokens"] = (sglang_rank_chunk(kw["step_tokens"], dp, release) if "step_tokens" in kw
                             else sglang_server_budget(load_gpu(row["gpu"]).device_total_MiB, release, dp))
        if "max_num_seqs" in kw:  # --max-running-requests // dp_size a rank (engines/launch.py
            # _sglang_max_running_requests)
            kw["max_num_seqs"] = max(1, kw["max_num_seqs"] // dp)
    from kvcalc.engines.scheduler import ahead_before_default

    if "schedules_ahead" not in kw and ahead_before_default(row["engine"], row.get("engine_version", "")) is False:  # a release (or a date) before
        # the engine's scheduler ran a step ahead by default
        kw["schedules_ahead"] = False
    stated = re.match(r"v?(\d+)\.(\d+)", row.get("engine_version", "").strip())
    release = (int(stated[1]), int(stated[2])) if stated else None
    if row["engine"] == "vllm" and not release and (b := _band_of_row(row)) is not None and b.name == "v0":
        # a run dated by month before V1 became the default ('unknown (2024-09)'): V0's scheduler and the memory rule
        # of the band's last release, as the published ledger bands it (the thirty-fourth audit, overhead 1: run as
        # 0.30, V1's scheduler and Model Runner V2's overheads)
        release = b.last
    if row["engine"] == "vllm" and release:  # the memory rule of the run's release (engines/memory.py)
        kw["vllm_version"] = f"{release[0]}.{release[1]}"
        if release < (0, 8):
            kw.update(_vllm_v0_schedule(row))
    conc, rate = _number(row["concurrency"]), _number(row["request_rate"])
    if conc is not None:
        kw.update(arrivals="closed", concurrency=float(min(conc, kw["num_prompts"])))
    elif rate is not None:
        kw.update(arrivals="poisson", request_rate=rate)
    else:
        raise KvcalcError("neither concurrency nor request_rate given")
    return kw


def _check_acceptance(row: dict, speculate: str) -> None:
    """A KvcalcError where a row's speculative decoding cannot be timed as run: vLLM's num_speculative_tokens k > 1
    with a checkpoint of one MTP layer runs that layer k times, and kvcalc's default acceptance, 0.875, is the first
    draft's only (speculation.mtp_depth_refusal). No source of the ledger publishes the acceptance of its runs (vLLM
    recipes' Qwen3-Next.md shows the benchmark's output alone: sv-032 at k = 2, sv-116 at k = 4), so such rows are not
    scored (the fortieth audit, speculate 1: both had run at 0.875 at every draft, output tokens/s 249 % and 296 %
    high)."""
    from kvcalc.specs.catalog import load_model
    from kvcalc.speculation import mtp_depth_refusal, parse

    sp = parse(speculate)
    if mtp_depth_refusal(load_model(row["model"]), sp):
        raise KvcalcError(f"num_speculative_tokens {sp.k}: the source publishes no acceptance for the checkpoint's "
                          f"one MTP layer run {sp.k} times, and kvcalc's 0.875 is the first draft's only")


def _run(model: str, gpu: str, engine: str, kw: dict) -> tuple[dict, str]:
    """simulate() under the row's engine; where kvcalc has no profile of it on this GPU, its scheduler on the
    datasheet roofline (the time model then says so)."""
    from kvcalc.serving.simulate import simulate

    try:
        return simulate(model, gpu, engine=engine, **kw), engine
    except KvcalcError as e:
        if "profile" not in str(e):
            raise
    kw = {k: v for k, v in kw.items() if k != "vllm_version"}  # the roofline has kvcalc's memory rule
    kw.setdefault("scheduler", engine)
    return simulate(model, gpu, engine="roofline", **kw), "roofline"


def _band_of_row(row: dict):
    """The release band of the row's run as the published ledger bands it (engines/overhead.py band_of_ledger_row:
    its release, or the month of a run that names none); None where the row states neither."""
    from kvcalc.engines.overhead import band_of_ledger_row

    return band_of_ledger_row(row["engine"], row.get("engine_version", "").strip())


def _band_of_run(row: dict) -> str | None:
    """'engine band' whose overheads time the row's run (engines/overhead.py with_band): the band of the release or
    month the row states, as the published ledger takes it, else the band of the profile's own release; None where
    the engine has no profile on this GPU or no bands. A stated release outside every band is refused, as the
    published ledger and --engine-version refuse it (the thirty-fourth audit, overhead 2: SGLang 0.3.0 had been run
    with the 0.4+ band's overheads)."""
    from kvcalc.engines.overhead import band, bands, release_tuple
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    try:
        profile = resolve_engine(row["engine"], load_gpu(row["gpu"]), [])
    except KvcalcError:
        return None
    if profile is None or not bands(row["engine"]):
        return None
    stated = row.get("engine_version", "").strip()
    b = _band_of_row(row) if stated else None
    if b is None and stated and release_tuple(stated) is not None:  # a release no band holds; text that names no
        # release or month (main, nightly) runs in the profile's band, as before (the review of the change, 8)
        raise KvcalcError(f"engine_version {stated!r}: no {row['engine']} release band of kvcalc's holds it")
    b = b or band(row["engine"], None, profile.engine_version)
    return f"{b.engine} {b.name}"


def _closed_form(model: str, gpu: str, time_model: str, kw: dict, sim: dict) -> dict | None:
    """serve() for the row: its concurrency; at request rate inf every prompt in flight at once (as many as the pool
    holds); at a finite rate that rate, or the pool's limit where one server cannot keep up (a benchmark runs one
    server, where serve would add replicas). ShareGPT rows: the simulated requests' mean lengths."""
    from kvcalc.serving.closed_form import serve

    common = {"input_len": kw["input_len"] or max(1, round(sim["mean_input_len"])),
              "output_len": kw["output_len"] or max(1, round(sim["mean_output_len"])), "tp": kw["tp"], "pp": kw["pp"],
              "ep": kw["ep"], "engine": time_model, "weight_dtype": kw["weight_dtype"], "kv_dtype": kw["kv_dtype"]}
    common.update({k: kw[k] for k in ("memory_utilization", "step_tokens", "speculate", "moe_time_scale", "overhead",
                                      "profile") if k in kw})
    if time_model == "vllm" and "vllm_version" in kw:
        common["vllm_version"] = kw["vllm_version"]
    try:
        if kw.get("concurrency") is not None:
            return serve(model, gpu, concurrency=kw["concurrency"], **common)
        full = serve(model, gpu, concurrency="max", **common)
        if math.isinf(kw["request_rate"]):
            return serve(model, gpu, concurrency=min(kw["num_prompts"], full["concurrency"]), **common)
        r = serve(model, gpu, request_rate=kw["request_rate"], **common)
        return full if r["replicas"] > 1 else r
    except KvcalcError:
        return None


def _unscored(row: dict) -> set[str]:
    """The metrics a row's note leaves unscored, 'unscored: median_ttft_ms, p99_ttft_ms (why)': figures kept as
    published that do not measure what their column says (the thirty-sixth audit, rows 2: TTFT medians counting empty
    replies as 0)."""
    m = re.search(r"\bunscored: ([a-z0-9_, ]+?) \(", row.get("note", ""))
    return {name.strip() for name in m[1].split(",")} if m else set()


def _held_out_profile(row: dict, points: list[dict], fits: dict, refits: dict):
    """The row's GPU-engine profile refitted without its organisation where the bundled one was fitted to end-to-end
    rows of that organisation (published.held_out_refit, with the overheads `fits` fitted without it); None where the
    bundled profile is measured, transferred, or fitted on other organisations' rows only. Cached in refits."""
    from kvcalc.ledgers.published import held_out_refit, organisation
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    try:
        profile = resolve_engine(row["engine"], load_gpu(row["gpu"]), [])
    except KvcalcError:
        return None
    if profile is None or getattr(profile, "provenance", None) != "fitted":
        return None
    owner = {p["id"]: organisation(p["publisher"]) for p in points}
    return held_out_refit(points, owner, {k: row[k] for k in ("gpu", "engine", "publisher")}, profile.fitted_on,
                          fits, refits)


def published_beside(path: Path) -> Path | None:
    """The published end-to-end ledger next to a serving ledger (validation/published beside validation/serve), whose
    rows each row's MoE factor is refitted on without its organisation (score); None where there is none."""
    beside = Path(path).resolve().parent.parent / "published"
    return beside if (beside / "README.md").is_file() else None


def score(rows: list[dict], published: Path | None = None) -> list[dict]:
    """One result per row and published metric: measured, simulated, closed form, errors [%]; rows that cannot run
    give one result with `skipped` (the reason).

    Each row runs with the constants fitted on the published ledger in `published` (validation/published/) refitted
    without the row's organisation, so that no row is scored by a constant its own source set: its release band's
    overheads (engines/overhead.py), for an older release its kernel era's MoE factor (engines/kernel_eras.py), and
    where its GPU's profile was fitted to end-to-end rows of that organisation (ledgers/fit_e2e.py: AMD's MI300X rows
    set the MI300X's vLLM scale), that profile refitted without them (published.refit_e2e), as the published ledger
    scores its own rows. Without `published`, the constants kvcalc ships."""
    from kvcalc.engines.kernel_eras import ERAS, era_of_ledger_row
    from kvcalc.specs.catalog import load_gpu

    held: dict[str, dict[str, float]] = {}
    prepared = points = None
    refits: dict[tuple, object] = {}
    if published is not None:
        from kvcalc.ledgers import published as pub

        points = pub.read_points(published)
        prepared = pub.prepare(points)
    out = []
    for row in rows:
        base = {"id": row["id"], "engine": row["engine"], "model": row["model"], "gpu": row["gpu"]}
        try:
            vendor = "AMD" if load_gpu(row["gpu"]).name.startswith(AMD) else "NVIDIA"
            kw = row_kwargs(row)
            era = era_of_ledger_row(row["engine"], row.get("engine_version", ""))
            key = _band_of_run(row)
            if prepared is None:
                if era is not None:
                    kw["moe_time_scale"] = next(e.moe_scale for e in ERAS if e == era)
            else:
                from kvcalc.ledgers.published import constants_without, organisation

                org = organisation(row.get("publisher", ""))
                if org not in held:
                    held[org] = constants_without(prepared, org)
                if era is not None:
                    kw["moe_time_scale"] = held[org]["moe_scales"][f"{era.engine} {era.name}"]
                if key is not None:
                    kw["overhead"] = held[org]["overheads"][key]
                if (profile := _held_out_profile(row, points, held[org]["fits"], refits)) is not None:
                    kw["profile"] = profile
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sim, time_model = _run(row["model"], row["gpu"], row["engine"], kw)
                closed = _closed_form(row["model"], row["gpu"], time_model, kw, sim)
        except (KvcalcError, ValueError) as e:
            out.append({**base, "skipped": str(e).splitlines()[0]})
            continue
        unscored = _unscored(row)
        for metric, (from_sim, from_closed) in METRICS.items():
            measured = _number(row.get(metric, ""))
            if not measured or metric in unscored:
                continue
            s = from_sim(sim)
            c = from_closed(closed) if (closed is not None and from_closed is not None) else None
            c = float(c) if c is not None else None
            out.append({**base, "vendor": vendor, "time_model": time_model, "metric": metric, "measured": measured,
                        "simulated": s, "closed_form": c,
                        "sim_error_pct": round((s - measured) / measured * 100, 1) if s is not None else None,
                        "closed_error_pct": round((c - measured) / measured * 100, 1) if c is not None else None})
    return out


def summary(results: list[dict]) -> list[dict]:
    """Median |error| [%] per metric, overall and per engine and vendor, for the simulator and the closed form."""
    scored = [r for r in results if "metric" in r]
    groups: dict[tuple, list[dict]] = {}
    for r in scored:
        for key in (("all", r["metric"]), (f"engine={r['engine']}", r["metric"]), (f"vendor={r['vendor']}", r["metric"])):
            groups.setdefault(key, []).append(r)
    out = []
    for (group, metric), rs in sorted(groups.items()):
        sim = [abs(r["sim_error_pct"]) for r in rs if r["sim_error_pct"] is not None]
        closed = [abs(r["closed_error_pct"]) for r in rs if r["closed_error_pct"] is not None]
        out.append({"rows": group, "metric": metric, "n": len(rs),
                    "sim_median_abs_error_pct": round(statistics.median(sim), 1) if sim else None,
                    "closed_median_abs_error_pct": round(statistics.median(closed), 1) if closed else None})
    skipped = [r for r in results if "skipped" in r]
    if skipped:
        out.append({"rows": "skipped", "metric": "-", "n": len({r["id"] for r in skipped}),
                    "sim_median_abs_error_pct": None, "closed_median_abs_error_pct": None})
    return out
