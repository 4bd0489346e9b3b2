"""One function per page: parse the query as the CLI parses its options, make the CLI command's library call, and
give back what `kvcalc CMD --format json` prints (View.json), the rows of `--format csv` (View.csv_rows), the
warnings the CLI prints on stderr, and what the page draws besides. No HTML here (pages.py) and no routes (app.py).

Each function follows its CLI command line for line (kvcalc/cli/*.py): the same library function, the same
arguments, the same conversion to JSON/CSV rows; tests/web/test_api.py checks the bytes are the CLI's.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvcalc.errors import KvcalcError
from kvcalc.serving import SIMULATE_ONLY
from kvcalc.web.params import from_kvcalc_error, parse

# One library call at a time: warnings are caught with warnings.catch_warnings, which is process-wide.
_LOCK = threading.Lock()


@dataclass
class View:
    command: str
    params: dict  # the parsed options, defaults filled in
    json: Any  # the object `kvcalc CMD --format json` writes
    csv_rows: list[dict] | None  # the rows `--format csv` writes
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # what a page draws besides (explain steps, chart data)




# plan's search takes 0.1 s for an 8B model on one GPU type, seconds for a large MoE on several: a shared URL opened
# again is instant
_CACHE: OrderedDict[tuple, View] = OrderedDict()
_CACHE_SIZE = 32
_CACHE_LOCK = threading.Lock()


# What the web app does not offer, refused by name when given a value other than the default (params.parse), with
# what the command line needs beside the flag: the files the CLI writes or reads, and serve's request-level simulation
# with the options only it reads (kvcalc/cli/serve_cmd.py: each documented "--simulate: ..."), which the closed form
# would otherwise take and quietly leave unused. Every other option of the CLI command reaches the library call.
REFUSED = {
    "serve": {"plot": "", "simulate": "", "trace": "--simulate --arrivals trace ", "profile": "",
              **dict.fromkeys(SIMULATE_ONLY, "--simulate ")},
    "plan": {"emit": "", "plot": "", "explain": ""},  # plan's --explain lines are printed, not drawn (the tenth, P3)
    "roofline": {"measured": "", "out": ""},
    "estimate": {"profile": ""},  # a profile file on the server's disk (the sixth audit: it had been read; serve's too)
}


def _run(name: str, query: Mapping[str, str], body, cache: bool = False) -> View:
    p = parse(name, query, REFUSED.get(name))
    key = (name, tuple(sorted((k, str(v)) for k, v in p.items())))
    if cache:
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
    view = _call(name, p, body)
    if cache:
        with _CACHE_LOCK:
            _CACHE[key] = view
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return view


def _call(name: str, p: dict, body) -> View:
    from kvcalc.specs.files import no_local_paths

    with _LOCK, no_local_paths(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            view = body(p)
        except KvcalcError as e:
            raise from_kvcalc_error(e) from None
    view.command, view.params = name, p
    view.warnings = list(dict.fromkeys([*view.warnings, *(str(w.message) for w in caught)]))
    return view


def estimate(query: Mapping[str, str]) -> View:
    """kvcalc estimate (kvcalc/cli/estimate_cmd.py), with --explain's steps and the memory breakdown."""

    def body(p):
        from kvcalc.estimator import estimate_with_specs
        from kvcalc.report.explain import explain
        from kvcalc.serialize import json_safe

        e, spec, hw = estimate_with_specs(
            p["model"], p["gpu"], attn=p["attn"], kv_lora_rank=p["kv_lora_rank"], rope_dim=p["rope_dim"],
            batch=p["batch"], context=p["context"], prompt=p["prompt"], weight_dtype=p["weight_dtype"],
            kv_dtype=p["kv_dtype"], memory_utilization=p["memory_utilization"], engine=p["engine"], tp=p["tp"],
            prefill_chunk=p["prefill_chunk"], pp=p["pp"], ep=p["ep"], speculate=p["speculate"],
            engine_version=p["engine_version"], profile_file=p["profile"],
        )
        out = e.to_json_dict()
        from kvcalc.report.formats import estimate_csv_row

        return View("estimate", p, out, [json_safe(estimate_csv_row(out))], list(e.warnings),
                    {"explain": [s._asdict() for s in explain(e, spec, hw)], "display_gpu": hw.display_name})

    return _run("estimate", query, body)


def compare(query: Mapping[str, str]) -> View:
    """kvcalc compare (kvcalc/cli/planning_cmds.py)."""

    def body(p):
        from kvcalc.option_values import attn_variants
        from kvcalc.planning.capacity import compare as compare_variants

        rows = compare_variants(p["model"], attn_variants(p["attn"]), p["gpu"], batch=p["batch"], context=p["context"],
                                weight_dtype=p["weight_dtype"], kv_dtype=p["kv_dtype"],
                                memory_utilization=p["memory_utilization"], engine=p["engine"],
                                prefill_chunk=p["prefill_chunk"], speculate=p["speculate"], tp=p["tp"], pp=p["pp"],
                                ep=p["ep"])
        return View("compare", p, rows, rows)

    return _run("compare", query, body)


def capacity(query: Mapping[str, str]) -> View:
    """kvcalc capacity (kvcalc/cli/planning_cmds.py)."""

    def body(p):
        from kvcalc.planning.capacity import capacity as plan_capacity
        from kvcalc.report.formats import capacity_csv_row

        plan = plan_capacity(
            p["model"], p["gpu"], context=p["context"], batch=p["batch"], gpus=p["tp"],
            target_tokens_per_s=p["target_tokens_per_s"], price_per_gpu_hour=p["price_per_gpu_hour"],
            memory_utilization=p["memory_utilization"], prefill_chunk=p["prefill_chunk"],
            weight_dtype=p["weight_dtype"], kv_dtype=p["kv_dtype"], engine=p["engine"],
            max_num_batched_tokens=p["max_num_batched_tokens"], max_num_seqs=p["max_num_seqs"], pp=p["pp"],
            ep=p["ep"], vllm_runner=p["vllm_runner"], vllm_version=p["vllm_version"],
            cuda_graph_GiB=p["cuda_graph_memory"], flashinfer_sampler=p["flashinfer_sampler"],
            engine_version=p["engine_version"])
        return View("capacity", p, plan, [capacity_csv_row(plan)])

    return _run("capacity", query, body)


def serve(query: Mapping[str, str]) -> View:
    """kvcalc serve's closed forms (kvcalc/cli/serve_cmd.py): one workload, or the frontier when --concurrency or
    --tp lists several. The request-level simulation (--simulate) stays on the command line."""

    def body(p):
        from kvcalc.option_values import disaggregate_pair, int_list
        from kvcalc.serving.closed_form import frontier, frontier_wanted, parse_concurrency
        from kvcalc.serving.closed_form import serve as serve_workload

        if p["input_len"] is None or p["output_len"] is None:
            raise KvcalcError("--input-len / --output-len: both needed")
        tps = int_list("--tp", p["tp"])
        common = dict(engine=p["engine"], weight_dtype=p["weight_dtype"], kv_dtype=p["kv_dtype"],
                      memory_utilization=p["memory_utilization"], step_tokens=p["step_tokens"],
                      price_per_gpu_hour=p["price_per_gpu_hour"], disaggregate=disaggregate_pair(p["disaggregate"]),
                      pp=p["pp"], ep=p["ep"], speculate=p["speculate"], vllm_runner=p["vllm_runner"],
                      vllm_version=p["vllm_version"], arrivals=p["arrivals"], cuda_graph_GiB=p["cuda_graph_memory"],
                      flashinfer_sampler=p["flashinfer_sampler"], engine_version=p["engine_version"],
                      max_num_seqs=p["max_num_seqs"])
        concurrency = p["concurrency"]
        if frontier_wanted(concurrency, tps, p["request_rate"]):
            rows = frontier(p["model"], p["gpu"], input_len=p["input_len"], output_len=p["output_len"],
                            concurrencies=int_list("--concurrency", concurrency), tps=tps,
                            max_ttft_ms=p["max_ttft_ms"], max_tpot_ms=p["max_tpot_ms"], **common)
            if not rows:
                raise KvcalcError("--concurrency: no point of the frontier fits the KV pool; raise --tp")
            flat = [{k: v for k, v in r.items() if k != "assumptions"} for r in rows]
            return View("serve", p, flat, flat, extra={"frontier": rows})
        concurrency = parse_concurrency(concurrency)
        plan = serve_workload(p["model"], p["gpu"], input_len=p["input_len"], output_len=p["output_len"],
                              concurrency=concurrency, request_rate=p["request_rate"], tp=tps[0],
                              max_ttft_ms=p["max_ttft_ms"], max_tpot_ms=p["max_tpot_ms"], **common)
        from kvcalc.report.formats import serve_csv_row

        return View("serve", p, plan, [serve_csv_row(plan)])

    return _run("serve", query, body)


def plan(query: Mapping[str, str]) -> View:
    """kvcalc plan (kvcalc/cli/plan_cmd.py) without --emit and --plot: the choice, runners-up and the frontier."""

    def body(p):
        from kvcalc.option_values import names, parse_prices
        from kvcalc.planning.plan import plan as plan_search
        from kvcalc.report.formats import plan_row

        result = plan_search(p["model"], names("--gpu", p["gpu"]), input_len=p["input_len"],
                             output_len=p["output_len"], range_ratio=p["range_ratio"], dataset=p["dataset"],
                             request_rate=p["request_rate"],
                             concurrency=p["concurrency"], gpu_budget=p["gpu_budget"], max_ttft_ms=p["max_ttft_ms"],
                             max_tpot_ms=p["max_tpot_ms"], percentile=p["percentile"],
                             price_per_gpu_hour=parse_prices(p["price_per_gpu_hour"]),
                             engines=names("--engines", p["engines"]) if p["engines"] else None,
                             convert=p["convert"], disaggregated=p["disaggregate"],
                             max_gpus_per_replica=p["max_gpus_per_replica"], speculate=p["speculate"],
                             memory_utilization=p["memory_utilization"], step_tokens=p["step_tokens"])
        rows = [{"rank": "choice" if i == 0 else str(i), **plan_row(r)}
                for i, r in enumerate(([result["choice"]] if result["choice"] else []) + result["runners_up"])]
        from kvcalc.report.formats import plan_csv_rows

        csv_rows = plan_csv_rows(result)  # the CLI's CSV rows (audit A12)
        return View("plan", p, result, csv_rows, extra={"rows": rows})

    return _run("plan", query, body, cache=True)


def roofline(query: Mapping[str, str]) -> View:
    """kvcalc roofline's chart as data (kvcalc/report/roofline_data.py): the roofs and each operating point."""

    def body(p):
        from kvcalc.option_values import attn_variants, split
        from kvcalc.report.roofline_data import roofline_data

        data = roofline_data(split("--gpu", p["gpu"]), p["model"], attn=attn_variants(p["attn"]),
                             batch=split("--batch", p["batch"], int), context=p["context"],
                             weight_dtype=p["weight_dtype"], kv_dtype=p["kv_dtype"], engine=p["engine"],
                             speculate=p["speculate"])
        return View("roofline", p, data, data["points"])

    return _run("roofline", query, body)


VIEWS = {"estimate": estimate, "compare": compare, "capacity": capacity, "serve": serve, "plan": plan,
         "roofline": roofline}
