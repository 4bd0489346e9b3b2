"""kvcalc serve: a workload under continuous batching, or the throughput frontier over concurrency x TP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli import app
from kvcalc.cli.options import (
    DEFAULT_ENGINE,
    DEFAULT_GPU,
    DEFAULT_KV_DTYPE,
    DEFAULT_WEIGHT_DTYPE,
    Engine,
    Ep,
    FormatOpt,
    Gpu,
    KvDtype,
    MemoryUtilization,
    Model,
    Pp,
    WeightDtype,
    refuse_given,
)
from kvcalc.cli.output import (
    CudaGraphMemory,
    EngineVersion,
    FlashinferSampler,
    Format,
    VllmRunner,
    VllmVersion,
    check_frontier_plot,
    print_rows,
    save_figure,
    write_csv,
    write_json,
)
from kvcalc.errors import KvcalcError
from kvcalc.option_values import ascii_digits, percentile_number
from kvcalc.option_values import disaggregate_pair as _disaggregate
from kvcalc.option_values import int_list as _split_ints
from kvcalc.serving import SIMULATE_ONLY


@app.command("serve")
def serve_cli(
    ctx: typer.Context,
    model: Model,
    input_len: Annotated[Optional[int], typer.Option("--input-len", "-i", help="prompt tokens per request")] = None,
    output_len: Annotated[Optional[int], typer.Option(
        "--output-len", help="output tokens per request (a distribution's mean)")] = None,
    gpu: Gpu = DEFAULT_GPU,
    concurrency: Annotated[Optional[str], typer.Option(
        "--concurrency", "-n", help="requests in flight: a number, a comma-separated list (the frontier), or max "
        "(as many as the KV pool holds); with --simulate --arrivals burst, the burst size; with --simulate and "
        "--request-rate, the most in flight (vllm bench serve's --max-concurrency)")] = None,
    context_flag: Annotated[Optional[str], typer.Option("-c", hidden=True, help="not serve's: -c is --context on "
                                                          "every command; concurrency is -n")] = None,
    request_rate: Annotated[Optional[float], typer.Option(
        help="requests/s arriving; replicas follow. The closed form spaces them evenly (no queueing); --simulate "
             "runs them as Poisson arrivals")] = None,
    tp: Annotated[str, typer.Option(help="tensor-parallel GPUs per replica; a comma-separated list for the frontier")] = "1",
    pp: Pp = 1,
    speculate: Annotated[Optional[str], typer.Option(
        help="speculative decoding, as estimate's --speculate: every decode step verifies k drafts (accepted= is "
             "vLLM's 'Mean acceptance length'; rate= its 'Avg Draft acceptance rate', accepted = 1 + k rate)")] = None,
    ep: Ep = 1,
    engine: Engine = DEFAULT_ENGINE,
    engine_version: EngineVersion = None,
    vllm_runner: VllmRunner = "auto",
    vllm_version: VllmVersion = "latest",
    cuda_graph_memory: CudaGraphMemory = None,
    flashinfer_sampler: FlashinferSampler = False,
    arrivals: Annotated[str, typer.Option(
        help="staggered: requests enter as others finish, evenly spaced (a service's steady state; under --ep, whose "
        "step waits for its slowest attention group, random arrivals serve more than this: --simulate runs them); "
        "waves: they start and finish "
        "together, as a fixed-length benchmark runs them (vllm bench serve --max-concurrency C --ignore-eos); "
        "TTFT and TPOT are then medians over requests")] = "staggered",
    weight_dtype: WeightDtype = DEFAULT_WEIGHT_DTYPE,
    kv_dtype: KvDtype = DEFAULT_KV_DTYPE,
    memory_utilization: MemoryUtilization = 0.9,
    step_tokens: Annotated[Optional[int], typer.Option(
        help="tokens one step may schedule (max_num_batched_tokens) [default: the engine's own for the GPU and "
        "release: vLLM's max_num_batched_tokens under --engine vllm or auto, SGLang's chunked_prefill_size; 8192 "
        "under trtllm]")] = None,
    disaggregate: Annotated[Optional[str], typer.Option(help="PREFILL_GPUS:DECODE_GPUS, separate pools")] = None,
    price_per_gpu_hour: Annotated[Optional[float], typer.Option(
        help="price of one GPU-hour, in any currency: the cost per million output tokens comes out in the same one")] = None,
    max_ttft_ms: Annotated[Optional[float], typer.Option(
        help="TTFT limit: one run spreads the load over as many replicas as it takes; the frontier marks the best "
        "point within it")] = None,
    max_tpot_ms: Annotated[Optional[float], typer.Option(
        help="TPOT limit: one run spreads the load over as many replicas as it takes; the frontier marks the best "
        "point within it")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="frontier chart (.png, .svg or .pdf)")] = None,
    format: FormatOpt = Format.table,
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="run the request-level simulation of the engine's scheduler (percentiles) instead of "
        "the closed-form steady state; --arrivals then takes closed, poisson, burst or trace (waves: one wave of "
        "-n requests)")] = False,
    trace: Annotated[Optional[Path], typer.Option(
        help="--simulate --arrivals trace: UTF-8 CSV (header arrival_s,input_len,output_len) or JSON lines (.jsonl, or "
        ".json with one object a line) of requests, arrival times from 0 to 1e10 s")] = None,
    num_prompts: Annotated[int, typer.Option(
        help="--simulate: requests to run, at most 1,000,000 (100,000 take about 17 s and 250 MB; under --pp each "
        "micro-batch is formed one by one, at most 300,000 of them)")] = 1000,
    range_ratio: Annotated[float, typer.Option(
        help="--simulate: lengths uniform on [L (1 - r), L (1 + r)], as vllm bench's --random-range-ratio")] = 0.0,
    dataset: Annotated[str, typer.Option(
        help="--simulate: length distribution: random (fixed or uniform) or sharegpt (the published ShareGPT V3 "
        "sample's length pairs)")] = "random",
    seed: Annotated[int, typer.Option(help="--simulate: random seed (arrivals and lengths)")] = 0,
    percentile: Annotated[str, typer.Option(
        help="--simulate: the percentile --max-ttft-ms/--max-tpot-ms must hold at (goodput): 90, p90 or P90 (plan "
        "takes these spellings of 50, 90 and 99)")] = "99",
    prefix_hit_rate: Annotated[float, typer.Option(
        help="--simulate: fraction of each prompt found in the prefix cache: not prefilled again, but held by each "
        "request as its own blocks (its own earlier turns), so a prefix shared by many requests frees no pool here")] = 0.0,
    max_num_seqs: Annotated[Optional[int], typer.Option(
        help="requests the engine runs at once: vLLM's max_num_seqs, SGLang's max_running_requests, TensorRT-LLM's "
        "max_batch_size (the engine's default otherwise); the rest wait in its queue")] = None,
    profile: Annotated[Optional[str], typer.Option(help="an engine profile file for this GPU (e.g. kvcalc calibrate "
                                                   "--from-benchmark's), instead of the bundled one; its engine "
                                                   "schedules the steps and sizes the pool")] = None,
    burstiness: Annotated[float, typer.Option(
        help="--simulate with Poisson arrivals: vllm bench serve's --burstiness, gaps gamma-distributed of this shape "
        "at the same mean (1: Poisson; below 1 burstier, above steadier)")] = 1.0,
    async_scheduling: Annotated[Optional[bool], typer.Option(
        "--async-scheduling/--no-async-scheduling",
        help="--simulate: the scheduler fills the next step while this one runs (vLLM's --async-scheduling, "
        "SGLang's overlap scheduler, off under --disable-overlap-schedule; TensorRT-LLM's overlap scheduler), so "
        "a request arriving during a step enters the one after the next [default: the engine release's own]")] = None,
) -> None:
    """TTFT, TPOT, latency, tokens/s per GPU and per user, KV pool and cost of a workload under continuous
    batching; with several concurrencies or TP degrees, the throughput-per-GPU vs tokens/s-per-user frontier;
    with --simulate, the request-level simulation's p50/p90/p99 TTFT, TPOT, ITL and end-to-end latency."""
    from kvcalc.serving.closed_form import frontier, frontier_wanted, parse_concurrency, serve

    if context_flag is not None:  # serve's concurrency was -c until issue 21 gave -c one meaning (--context)
        raise KvcalcError(f"-c: serve has no --context (the context is --input-len + --output-len); for "
                          f"{context_flag} requests in flight use -n/--concurrency {context_flag}")
    if plot is not None:
        check_frontier_plot(plot, None if simulate else output_len)  # (the simulation draws its timeline)
    if trace is not None and not (simulate and arrivals == "trace"):
        raise KvcalcError("--trace: read only with --simulate --arrivals trace; add them, or leave out --trace")
    if simulate and arrivals == "trace":  # the trace gives the requests: nothing is counted or drawn (sixth audit)
        refuse_given(ctx, ("num_prompts", "seed"), "not read with --arrivals trace (the trace gives every request "
                                                    "and draws nothing); leave it out")
    if not simulate:
        _refuse_simulate_only(ctx)
    if simulate:
        if max_ttft_ms is None and max_tpot_ms is None:  # nothing reads it (the seventh audit, V12)
            refuse_given(ctx, ("percentile",), "only with --max-ttft-ms or --max-tpot-ms (the percentile they must "
                                               "hold at); add one, or leave out {flag}")
        _check_simulate_lengths(arrivals, input_len, output_len, range_ratio, dataset)
        source = ctx.get_parameter_source("num_prompts")
        if arrivals == "waves" and concurrency is not None and (source is None or source.name.startswith("DEFAULT")):
            # one wave of -n requests, the fixed-length benchmark --arrivals waves describes (the tenth audit, S6:
            # 1,000 prompts in a closed loop had broken the waves up, median TTFT 4x below the waves asked for)
            try:
                num_prompts = max(1, min(int(float(ascii_digits("--concurrency", concurrency))), 1_000_000))
            except (ValueError, OverflowError):
                pass  # not one number: refused below with the flag named
        return _simulate_cli(model, gpu, input_len, output_len, concurrency, request_rate, tp, pp, ep, engine,
                             weight_dtype, kv_dtype, memory_utilization, step_tokens, speculate, arrivals, trace,
                             num_prompts, range_ratio, dataset, seed, _percentile(percentile), prefix_hit_rate,
                             max_num_seqs, max_ttft_ms, max_tpot_ms, vllm_runner, vllm_version, plot, format,
                             _disaggregate(disaggregate), engine_version, cuda_graph_memory, flashinfer_sampler,
                             price_per_gpu_hour, async_scheduling, profile, burstiness)
    if input_len is None or output_len is None:
        raise KvcalcError("--input-len / --output-len: both needed")
    tps = _split_ints("--tp", tp)
    split = _disaggregate(disaggregate)
    common = dict(engine=engine, weight_dtype=weight_dtype, kv_dtype=kv_dtype, memory_utilization=memory_utilization,
                  step_tokens=step_tokens, price_per_gpu_hour=price_per_gpu_hour, disaggregate=split, pp=pp, ep=ep, speculate=speculate,
                  vllm_runner=vllm_runner, vllm_version=vllm_version, arrivals=arrivals,
                  cuda_graph_GiB=cuda_graph_memory, flashinfer_sampler=flashinfer_sampler, engine_version=engine_version,
                  max_num_seqs=max_num_seqs, profile_file=profile)
    if frontier_wanted(concurrency, tps, request_rate, plot is not None):
        rows = frontier(model, gpu, input_len=input_len, output_len=output_len,
                        concurrencies=_split_ints("--concurrency", concurrency), tps=tps,
                        max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms, **common)
        if not rows:
            raise KvcalcError("--concurrency: no point of the frontier fits the KV pool; raise --tp")
        if plot is not None:
            from kvcalc.report.plot import serve_frontier

            save_figure(serve_frontier(rows), plot, "--plot")
        flat = [{k: v for k, v in r.items() if k != "assumptions"} for r in rows]
        if format is not Format.table:
            return print_rows(flat, "", format)
        table = [{"tp": r["tensor_parallel"], "in flight": f"{r['concurrency']:g}", "TTFT ms": r["ttft_ms"],
                  "TPOT ms": r["tpot_ms"], "tok/s/GPU": r["output_tokens_per_s_per_gpu"],
                  "tok/s/user": r["tokens_per_s_per_user"], "ok": "yes" if r["within_limits"] else "no",
                  "best": "*" if r["best"] else ""} for r in rows]
        return print_rows(table, f"{model} on {gpu}, {input_len:,} in / {output_len:,} out, one replica a point "
                                 "(a single run spreads a point over replicas to meet the limits)", format)
    concurrency = parse_concurrency(concurrency)
    plan = serve(model, gpu, input_len=input_len, output_len=output_len, concurrency=concurrency,
                 request_rate=request_rate, tp=tps[0], max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms, **common)
    if format is Format.json:
        return write_json(plan)
    if format is Format.csv:
        from kvcalc.report.formats import serve_csv_row

        return write_csv([serve_csv_row(plan)])
    from rich.console import Console
    from rich.table import Table

    from kvcalc.units import fmt_bytes

    t = Table(title=f"{plan['model']} on {plan['gpu']}: {input_len:,} in / {output_len:,} out", show_header=False)
    t.add_column("quantity", style="bold")
    t.add_column("value")

    def ms(v):
        from kvcalc.units import fmt_ms  # seconds from 10 s on

        return fmt_ms(v) if v is not None else "-"

    show = {
        "requests in flight": f"{plan['concurrency']:,.1f}",
        "replicas x GPUs each": (f"{plan['replicas']} x {plan['gpus'] // plan['replicas']} ({plan['gpus']} "
                                 f"GPU{'s' if plan['gpus'] != 1 else ''})"),
        "TTFT": ms(plan["ttft_ms"]), "TPOT (inter-token latency)": ms(plan["tpot_ms"]),
        "end-to-end latency": ms(plan["latency_ms"]),
        "requests/s": f"{plan['requests_per_s']:,.2f}",
        "output tokens/s (per GPU)": f"{plan['output_tokens_per_s']:,.0f} ({plan['output_tokens_per_s_per_gpu']:,.0f})",
        "total tokens/s per GPU": f"{plan['total_tokens_per_s_per_gpu']:,.0f}",
        "output tokens/s per user": (f"{plan['tokens_per_s_per_user']:,.1f}" if plan["tokens_per_s_per_user"] else "-"),
        "KV pool / needed per GPU": f"{fmt_bytes(plan['kv_pool_bytes_per_gpu'])} / {fmt_bytes(plan['kv_bytes_needed_per_gpu'])}",
        "preemption risk": plan["preemption_risk"],
        "cost per million output tokens": (f"{plan['cost_per_million_output_tokens']:.3g}"
                                           if plan["cost_per_million_output_tokens"] is not None else None),
    }
    for k, v in show.items():
        if v is not None:
            t.add_row(k, v)
    for k, v in plan["assumptions"].items():
        if v is not None:
            # a time as the TPOT row beside it prints one (the fortieth audit, outputs: step_ms 7.7 beside 7.711 ms)
            t.add_row(f"assumption: {k}", ms(v) if isinstance(v, float) and k.endswith("_ms") else
                      f"{v:,.1f}" if isinstance(v, float) else str(v))
    Console().print(t)


def _refuse_simulate_only(ctx: typer.Context) -> None:
    """A --simulate flag given without --simulate would be silently ignored (the closed form has no prompts, seed,
    percentiles or scheduler cap): refuse the first one given on the command line, naming it."""
    refuse_given(ctx, SIMULATE_ONLY, "only with --simulate (the closed form does not read it); add --simulate or "
                                      "leave out {flag}")


def _percentile(text: str) -> float:
    """--percentile: 90, p90 or P90 (option_values.percentile_number; its range is checked downstream)."""
    value = percentile_number(text)
    if value is None:
        raise KvcalcError(f"--percentile: expected a plain decimal in (0, 100] such as 90, 99.9 or p90 (no exponent), "
                          f"got {text!r}")
    return value


def _check_simulate_lengths(arrivals, input_len, output_len, range_ratio, dataset) -> None:
    """Where the lengths come from a trace or the ShareGPT sample, length flags would be ignored: refuse them, as plan
    does (planning/plan.py workload_lengths)."""
    given = [flag for flag, value in (("--input-len", input_len), ("--output-len", output_len),
                                      ("--range-ratio", range_ratio or None)) if value is not None]
    if arrivals == "trace" and (given or dataset != "random"):
        flag = given[0] if given else "--dataset"
        raise KvcalcError(f"{flag}: not with --arrivals trace (the trace gives each request's lengths); leave it out")
    if dataset == "sharegpt" and given:
        raise KvcalcError(f"{given[0]}: not with --dataset sharegpt (the lengths come from the ShareGPT sample); "
                          f"leave out --input-len, --output-len and --range-ratio")


def _simulate_cli(model, gpu, input_len, output_len, concurrency, request_rate, tp, pp, ep, engine, weight_dtype,
                  kv_dtype, memory_utilization, step_tokens, speculate, arrivals, trace, num_prompts, range_ratio,
                  dataset, seed, percentile, prefix_hit_rate, max_num_seqs, max_ttft_ms, max_tpot_ms, vllm_runner,
                  vllm_version, plot, format, split=None, engine_version=None, cuda_graph_GiB=None,
                  flashinfer_sampler=False, price_per_gpu_hour=None, async_scheduling=None, profile=None,
                  burstiness=1.0) -> None:
    from kvcalc.serving.simulate import simulate

    if arrivals == "staggered":  # the closed form's default: a closed loop with -n, Poisson with --request-rate, and
        # both: Poisson arrivals at most -n in flight, as vllm bench serve --request-rate R --max-concurrency C
        if concurrency is None and request_rate is None:  # (the verification pass: the message named poisson)
            raise KvcalcError("--simulate: give -n/--concurrency (a closed loop) or --request-rate (Poisson arrivals)")
        arrivals = "poisson" if request_rate is not None else "closed"
    elif arrivals == "waves":  # fixed-length requests from t = 0 in a closed loop run in waves by themselves
        if request_rate is not None or concurrency is None:  # the fifth audit: the message named --arrivals closed
            raise KvcalcError("--arrivals waves: give -n/--concurrency (requests from t = 0), not --request-rate")
        arrivals = "closed"
    if concurrency is not None:
        try:
            concurrency = float(ascii_digits("--concurrency", concurrency))
        except ValueError:
            raise KvcalcError(f"--concurrency: --simulate takes one number, got {concurrency!r}") from None
    tps = _split_ints("--tp", tp)
    if len(tps) > 1:
        raise KvcalcError("--tp: one degree with --simulate")
    r = simulate(model, gpu, input_len=input_len, output_len=output_len, arrivals=arrivals, concurrency=concurrency,
                 request_rate=request_rate, num_prompts=num_prompts, range_ratio=range_ratio, trace=trace, seed=seed,
                 tp=tps[0], pp=pp, ep=ep, engine=engine, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                 memory_utilization=memory_utilization, step_tokens=step_tokens, max_num_seqs=max_num_seqs,
                 speculate=speculate, prefix_hit_rate=prefix_hit_rate, percentile=percentile,
                 max_ttft_ms=max_ttft_ms, max_tpot_ms=max_tpot_ms, vllm_runner=vllm_runner,
                 vllm_version=vllm_version, keep_timeline=plot is not None, disaggregate=split, dataset=dataset,
                 engine_version=engine_version, cuda_graph_GiB=cuda_graph_GiB, flashinfer_sampler=flashinfer_sampler,
                 price_per_gpu_hour=price_per_gpu_hour, schedules_ahead=async_scheduling, profile_file=profile,
                 burstiness=burstiness)
    timeline = r.pop("timeline", None)
    if plot is not None:
        from kvcalc.report.plot import simulation_timeline

        save_figure(simulation_timeline(timeline, title=f"{r['model']} on {r['gpu']}, {r['arrivals']}"), plot, "--plot")
    if format is Format.json:
        return write_json(r)
    flat = {}
    for k, v in r.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, list):  # the warnings: one cell
            flat[k] = "; ".join(map(str, v))
        else:
            flat[k] = v
    if format is Format.csv:
        return write_csv([flat])
    # the columns: p50, p90, p99 and the percentile the limits are judged at (the twenty-fifth audit, S4: p95 had been
    # judged and reported in JSON only)
    shown = sorted({"p50", "p90", "p99", f"p{percentile:g}"}, key=lambda p: float(p[1:]))
    rows = [{"metric": m, **{p: r[m].get(p) for p in shown}} for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")]
    ahead = ", a step ahead" if r.get("schedules_ahead") else ""  # vLLM's async, SGLang's overlap scheduling
    print_rows(rows, f"{r['model']} on {r['gpu']} ({r['engine']} scheduler{ahead}): {r['arrivals']}, "
               f"{r['completed']:,} requests in {r['duration_s']:,.1f} s, {r['output_tokens_per_s']:,.0f} output tok/s "
               f"({r['output_tokens_per_s_per_gpu']:,.0f} per GPU), {r['preemptions']} preemptions", format)
    # what the limits and the price are for, under the table (the sixth audit: the table, the default format, had
    # shown neither)
    lines = []
    if "goodput_requests_per_s" in r:
        limits = " and ".join(f"{name} <= {v:g} ms" for name, v in (("TTFT", max_ttft_ms), ("TPOT", max_tpot_ms))
                              if v is not None)
        lines.append(f"goodput {r['goodput_requests_per_s']:,.2f} requests/s within {limits}; at p{percentile:g} the "
                     "limits are " + ("met" if r["slo_met_at_percentile"] else "missed"))
    if r.get("cost_per_million_output_tokens") is not None:
        lines.append(f"cost per million output tokens: {r['cost_per_million_output_tokens']:,.3g}")
    if lines:
        from rich.console import Console

        Console().print("\n".join(lines), markup=False, highlight=False)
