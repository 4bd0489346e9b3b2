"""kvcalc plan: the cheapest deployment under a service level, and the command that launches it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli import app
from kvcalc.cli.options import CONCURRENCY_HELP, FormatOpt, MemoryUtilization, Model
from kvcalc.cli.output import Format, check_frontier_plot, print_rows, save_figure, write_csv, write_json
from kvcalc.checks import shown_value
from kvcalc.errors import KvcalcError
from kvcalc.option_values import names as _names
from kvcalc.option_values import parse_prices
from kvcalc.report.formats import PLAN_ROOFLINE_MARK, plan_csv_rows
from kvcalc.report.formats import plan_row as _row


@app.command("plan")
def plan_cli(
    model: Model,
    input_len: Annotated[Optional[int], typer.Option(
        "--input-len", "-i", help="prompt tokens per request (the mean with --range-ratio)")] = None,
    output_len: Annotated[Optional[int], typer.Option(
        "--output-len", "-o", help="output tokens per request (the mean with --range-ratio)")] = None,
    range_ratio: Annotated[float, typer.Option(
        help="lengths uniform on [L (1 - r), L (1 + r)], as vllm bench's --random-range-ratio")] = 0.0,
    dataset: Annotated[str, typer.Option(
        help="length distribution: random (fixed or uniform) or sharegpt (the published ShareGPT V3 sample's "
        "length pairs; no --input-len/--output-len)")] = "random",
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="GPU types to consider, comma-separated")] = "h100-sxm",
    request_rate: Annotated[Optional[float], typer.Option(help="requests/s to serve")] = None,
    concurrency: Annotated[Optional[float], typer.Option("--concurrency", "-n", help=CONCURRENCY_HELP)] = None,
    gpu_budget: Annotated[Optional[int], typer.Option(help="GPUs available: the most throughput within them")] = None,
    max_ttft_ms: Annotated[Optional[float], typer.Option(help="time to first token limit [ms]")] = None,
    max_tpot_ms: Annotated[Optional[float], typer.Option(help="time per output token limit [ms]")] = None,
    percentile: Annotated[str, typer.Option(help="the percentile the limits hold at: p50, p90 or p99 (or 50, 90, 99)")] = "p50",
    price_per_gpu_hour: Annotated[Optional[str], typer.Option(
        help="price of a GPU-hour: one number, or GPU=PRICE pairs (h200=3.5,b200=5)")] = None,
    engines: Annotated[Optional[str], typer.Option(
        help="engines to consider, comma-separated [default: those with a profile for each GPU]")] = None,
    convert: Annotated[bool, typer.Option(
        help="also consider weight formats the checkpoint does not ship (fp8, nvfp4), marked converted")] = True,
    disaggregate: Annotated[bool, typer.Option(help="also consider separate prefill and decode pools")] = True,
    speculate: Annotated[bool, typer.Option(
        help="also consider speculative decoding with the checkpoint's own draft head (DeepSeek-V3's MTP)")] = True,
    max_gpus_per_replica: Annotated[int, typer.Option(help="largest replica to consider")] = 64,
    memory_utilization: MemoryUtilization = 0.9,
    step_tokens: Annotated[int, typer.Option(
        help="tokens one step may schedule (the prefill chunk the search sizes memory and times steps with)")] = 8192,
    emit: Annotated[Optional[str], typer.Option(
        help="print the launch command of the choice: vllm, sglang, trtllm, or k8s (a manifest)")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="the frontier with the limits (.png, .svg or .pdf)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="the time model behind each number")] = False,
    format: FormatOpt = Format.table,
) -> None:
    """The cheapest deployment of a model on the given GPU types that serves a request rate (or a concurrency, or
    the most within a GPU budget) within TTFT/TPOT limits: TP, PP, EP, formats, engine, batch budget, aggregated or
    disaggregated; with the runners-up, the throughput frontier and why the rest lost."""
    from kvcalc.planning.plan import plan

    if plot is not None:
        check_frontier_plot(plot, output_len)
    if explain and format is not Format.table:  # the ninth round, P7: dropped in silence
        raise KvcalcError("--explain: with --format table (the derivations are printed, not a JSON or CSV field)")
    if emit is not None and format is Format.csv:  # the third audit: CSV had dropped the launch command unsaid
        raise KvcalcError("--emit: with --format table or json (a launch command is not a CSV cell)")
    if emit is not None:  # before the search: a target that cannot be emitted is known from the flags alone
        _check_emit(emit, _names("--gpu", gpu), _names("--engines", engines) if engines is not None else None)
    result = plan(model, _names("--gpu", gpu), input_len=input_len, output_len=output_len, range_ratio=range_ratio,
                  dataset=dataset,
                  request_rate=request_rate, concurrency=concurrency, gpu_budget=gpu_budget,
                  max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms, percentile=percentile,
                  price_per_gpu_hour=parse_prices(price_per_gpu_hour),
                  engines=_names("--engines", engines) if engines is not None else None, convert=convert,
                  disaggregated=disaggregate, max_gpus_per_replica=max_gpus_per_replica, speculate=speculate,
                  memory_utilization=memory_utilization, step_tokens=step_tokens)
    if emit is not None:
        from kvcalc.engines.launch import emit as emit_text
        from kvcalc.specs.catalog import load_gpu, load_model

        if result["choice"] is None:  # why, as the rejections count it (the nineteenth audit, P6: "meets the
            # limits" where none were given and no configuration fitted)
            counts = {k: n for k, n in result["rejected"]["counts"].items() if n}
            if set(counts) == {"does not fit"} and result["rejected"]["does_not_fit_examples"]:
                why = "none fits in memory (" + result["rejected"]["does_not_fit_examples"][0]["reason"] + ")"
            else:  # the reasons as counted (the twenty-first audit, L4: "none meets the limits" where no limit was
                # given and --gpu-budget had left none that fits)
                why = "none is left (" + "; ".join(f"{k}: {n:,}" for k, n in counts.items()) + ")"
            raise KvcalcError(f"--emit: of the configurations searched {why}, so there is nothing to launch")
        best = result["choice"] if emit == "k8s" else result["best_by_engine"].get(emit)
        from kvcalc.engines.launch import engine_model_refusal

        if best is None and (why := engine_model_refusal(emit, load_model(model))):
            raise KvcalcError(f"--emit {emit}: {why}")
        if best is None:
            raise KvcalcError(f"--emit: no {emit} configuration meets the limits; the choice runs on "
                              f"{result['choice']['engine']}")
        planned = next(hw for hw in map(load_gpu, _names("--gpu", gpu)) if hw.name == best["gpu"])
        result["launch"] = emit_text(emit, load_model(model), best, result["workload"]["max_model_len"],
                                     amd=planned.vendor == "AMD", hw=planned)
        result["launch_configuration"] = best["deployment"]
    if plot is not None:
        from kvcalc.report.plot import plan_frontier

        save_figure(plan_frontier(result), plot, "--plot")
    if format is Format.json:
        return write_json(result)
    rows = [{"rank": "choice" if i == 0 else str(i), **_row(r)}
            for i, r in enumerate(([result["choice"]] if result["choice"] else []) + result["runners_up"])]
    if format is Format.csv:
        return write_csv(plan_csv_rows(result))
    _print_table(result, rows, explain, best if emit is not None else None)


def _check_emit(emit: str, gpus: list[str], engines: list[str] | None) -> None:
    """--emit's target, checked before the search: one of EMIT_TARGETS, in --engines where that is given, and an
    engine that runs on (and, without --engines, has a profile for) at least one --gpu."""
    from kvcalc.engines.launch import EMIT_TARGETS, package_refusal
    from kvcalc.specs.catalog import available_engines, load_gpu

    if emit not in EMIT_TARGETS:
        raise KvcalcError(f"--emit: expected one of {', '.join(EMIT_TARGETS)}, got {shown_value(emit)}")
    refusals = [package_refusal(load_gpu(g).name) for g in gpus]
    if refusals and all(refusals):  # launch.emit's refusal, before the search's warnings
        raise KvcalcError(refusals[0])
    if emit == "k8s":  # the choice's own engine, whichever it is
        return
    if engines is not None and emit not in engines:
        raise KvcalcError(f"--emit {emit}: --engines {','.join(engines)} leaves {emit} out of the search")
    hws = [load_gpu(g) for g in gpus]
    refused = [hw for hw in hws if emit in hw.unsupported_engines]
    if len(refused) == len(hws):
        raise KvcalcError(f"--emit {emit}: {emit} does not run on {', '.join(hw.name for hw in refused)}: "
                          f"{refused[0].unsupported_engines[emit]}")
    if engines is None and not any(emit in available_engines(hw.name) for hw in hws):
        raise KvcalcError(f"--emit {emit}: no {emit} profile for {', '.join(hw.name for hw in hws)}, so the search "
                          f"has no {emit} configuration to launch")


def _print_table(result: dict, rows: list[dict], explain: bool, launched: dict | None = None) -> None:
    w = result["workload"]
    goal = (f"{w['request_rate']:g} req/s" if w["request_rate"] is not None else
            f"{w['concurrency']:g} in flight" if w["concurrency"] is not None else f"at most {w['gpu_budget']} GPUs")
    lengths = (f"ShareGPT lengths (means {w['input_len']:,} in / {w['output_len']:,} out)" if w["dataset"] == "sharegpt"
               else f"{w['input_len']:,} in / {w['output_len']:,} out"
               + (f" +- {w['range_ratio']:.0%}" if w["range_ratio"] else ""))
    title = f"{result['model']}: {lengths}, {goal}"
    if result["choice"] is None:
        typer.echo(f"{title}\n{result['choice_note']}")
        rows = [{"rank": "closest", **_row(r), "misses": ", ".join(r["misses"])} for r in result["closest"]]
    from kvcalc.cli.output import print_note  # prose wrapped at the terminal's width

    if rows:
        shown = [k for k in rows[0] if not k.startswith("sim ") or any(r.get(k) is not None for r in rows)]
        print_rows([{k: r.get(k) for k in shown} for r in rows], title, Format.table)
    else:  # nothing runs at all, so there is no closest miss to show: why, from the rejected deployments
        for example in result["rejected"]["does_not_fit_examples"]:
            print_note(f"  {example['deployment']}: {example['reason']}")

    # the figures' load and seqs, said (the thirty-eighth audit, newcomer 2: "at the replica's budget" had read as
    # seqs, where TTFT and TPOT are at the requests in flight, 82.7 of a budget of 197, whose TPOT is twice as long)
    steady = ("TTFT and TPOT ms: the steady state at the requests each replica runs at once under the load asked for "
              "(in_flight_per_replica in --format json); seqs: the max_num_seqs a replica is launched with, its "
              "ceiling")
    if any(r.get("sim TTFT ms") is not None for r in rows):
        median_ttft = result["limits"]["percentile"] == "p50"  # plan's Poisson check of a TTFT limit at the median
        print_note(f"{steady}; sim: the simulator's {result['limits']['percentile']} under the load asked for, which "
                   + ("the TTFT limit is judged at (the TPOT limit: the steady state's, as serve's)" if median_ttft
                      else "the limits are judged at"))
    elif rows:
        print_note(steady)
    print_note("w/KV: weight/KV formats, * a format the checkpoint does not ship; layout: TP, xPP pipeline stages, "
               "+mtp speculative decoding with the checkpoint's own draft head, "
               "EP expert-parallel GPUs over TP attention groups, P:D prefill:decode GPUs")
    if any(r["engine"] == PLAN_ROOFLINE_MARK for r in rows):
        why = (f"no engine profile for {', '.join(result['unprofiled_gpus'])}" if result["unprofiled_gpus"]
               else "--engines roofline")
        print_note(f"{PLAN_ROOFLINE_MARK}: {why}: timed on the datasheet roofline, with no engine overhead and faster than "
                   "engines run, so ranked after every engine-profile row")
    if result["choice"] and result["choice"].get("replicas_note"):
        print_note(f"replicas: {result['choice']['replicas_note']}")
    if result["choice"] and result["choice"]["cost_per_hour"] is None and result["workload"]["gpu_budget"] is None:
        # the thirtieth audit, plan 4: "cheapest" had gone unexplained where no price was given
        print_note(f"cheapest: {result['ranked_by']}")
    for i, r in enumerate(result["runners_up"], 1):
        print_note(f"  {i}: {r['trade']}")
    counts = {k: v for k, v in result["rejected"]["counts"].items() if v}
    s = result["searched"]
    print_note(f"searched {s['configurations']:,} configurations of {s['deployments']:,} deployments; lost: "
               + "; ".join(f"{k} {v}" for k, v in counts.items()))
    if explain:
        typer.echo(f"time model: {result['time_model']}")
        if result["choice"]:
            typer.echo(f"choice's profile: {result['choice']['time_model']}")
    if "launch" in result:
        typer.echo(f"\nlaunch ({result['launch_configuration']}{_planned(launched)}):\n" + result["launch"].rstrip())


def _planned(point: dict | None) -> str:
    """'; planned: N GPUs, TTFT, TPOT[, $/h]' of the configuration --emit launches, which may be another engine's
    best than the table's choice (the fortieth audit, readme note: `--emit vllm` launched 28 GPUs of vLLM beside a
    choice of 20 SGLang GPUs, its own figures nowhere in the text output)."""
    if point is None:
        return ""
    from kvcalc.cli.output import _cell

    gpus = point["gpus"]
    figures = [f"{gpus:,} GPU{'s' if gpus != 1 else ''}"] + [
        f"{label} {_cell(point[key], f'{label} ms')} ms" for label, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"))
        if point[key] is not None]
    if point["cost_per_hour"] is not None:
        figures.append(f"${_cell(point['cost_per_hour'], '$/h')}/h")
    return "; planned: " + ", ".join(figures)
