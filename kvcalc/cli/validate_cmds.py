"""kvcalc validate and kvcalc calibrate (torch from the `validate` extra, imported only when they run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli import app
from kvcalc.cli.options import refuse_given
from kvcalc.cli.output import EngineVersion, save_figure
from kvcalc.errors import KvcalcError
from kvcalc.specs.files import check_writable


def published_cli(path: Path, format, engine: str) -> None:
    """Score the published end-to-end measurements (a CSV, or a folder of them): one row each, the summary per group
    (leave-one-source-out errors, beside the datasheet roofline), and the engine overheads and older releases' MoE
    factors fitted on every row."""
    from kvcalc.cli.output import Format, print_rows
    from kvcalc.ledgers.published import ledger

    if engine not in ("profile", "roofline"):
        raise KvcalcError(f"--engine: with --published, expected profile (each row's engine) or roofline, got {engine!r}")
    out = ledger(path, roofline=engine == "roofline")
    rows = [{"id": r["id"], "publisher": r["publisher"], "engine": r["engine"], "band": r.get("band"),
             "era": r.get("era"), "moe_scale": r.get("moe_scale"), "gpu": r["gpu"],
             "model": r["model"], "tp": r["tp"], "metric": r["metric"], "measured": r["measured"],
             "predicted": r["predicted"], "error_pct": r["error_pct"], "in_sample_error_pct": r.get("in_sample_error_pct"),
             "provenance": r.get("provenance"), "use": r["use"] if len(r["use"]) < 12 else "excluded"}
            for r in out["rows"]]
    if format is Format.table:
        short = {"decode_tokens_per_s": "tok/s", "tpot_ms": "TPOT ms", "ttft_ms": "TTFT ms", "itl_median_ms": "ITL p50 ms",
                 "throughput_out_tokens_per_s_per_gpu": "tok/s/GPU"}
        table = [{"id": r["id"], "source": r["publisher"][:24], "engine": r["engine"],
                  "gpu": r["gpu"].replace("-sxm-80gb", "").replace("-sxm", ""), "model": r["model"], "tp": r["tp"],
                  "metric": short[r["metric"]], "measured": r["measured"], "kvcalc": r["predicted"],
                  "err %": r["error_pct"], "use": r["use"]} for r in rows]
        print_rows(table, f"kvcalc against {len(rows)} published measurements ({path})", format)
        print_rows(out["summary"], "|error| % per group: score rows held out of every fit (leave one source out), "
                   "in-sample and the datasheet roofline on the same rows; fit rows apart", format)
        if out["overheads"]:
            print_rows(out["overheads"], "engine overheads fitted on every row (kvcalc/engines/overhead.py)", format)
        if out["kernel_eras"]:
            print_rows(out["kernel_eras"], "older releases' MoE factors fitted on every row "
                       "(kvcalc/engines/kernel_eras.py)", format)
    elif format is Format.csv:
        print_rows(rows, "", format)
    else:
        print_rows({"rows": rows, "summary": out["summary"], "overheads": out["overheads"],
                    "kernel_eras": out["kernel_eras"]}, "", format)


def print_ledger(rows: list[dict], table: list[dict], summary_rows: list[dict], format, title: str,
                 summary_title: str) -> None:
    """A scored ledger: a table and its summary, CSV rows, or JSON {rows, summary}."""
    from kvcalc.cli.output import Format, print_rows

    if format is Format.table:
        print_rows(table, title, format)
        print_rows(summary_rows, summary_title, format)
    elif format is Format.csv:
        print_rows(rows, "", format)
    else:
        print_rows({"rows": rows, "summary": summary_rows}, "", format)


def naming_flag(flag: str, run, *args):
    """run(*args), its errors naming `flag` where they name no flag of their own: a ledger's or a benchmark file's
    reader names the file, the line and the field (the sixth audit: `validate --serve ''` named no flag)."""
    try:
        return run(*args)
    except KvcalcError as e:
        if str(e).startswith("--"):
            raise
        raise KvcalcError(f"{flag}: {e}") from None


def _parallel(row: dict) -> str:
    """A ledger row's parallelism as the table shows it: tp, tp x pp, and the expert-parallel size if any."""
    tp = row["tp"] if row["pp"] == "1" else f"{row['tp']}x{row['pp']}"
    return tp if (row.get("ep") or "1") == "1" else f"{tp} ep{row['ep']}"


def engine_memory_cli(path: Path, format) -> None:
    """Score kvcalc's engine memory rules against the engines' start-up logs (a ledger CSV or the folder of them):
    one row each, scored leave-one-source-out, then the summary per engine."""
    from kvcalc.ledgers.memory import read_rows, score, source_of, summary

    results = score(read_rows(path))

    def rounded(x, digits=1):
        return None if x is None else round(x, digits)

    rows = [{"engine": r["engine"], "source": source_of(r["source"]),
             "release": (r.get(r["engine"]) or "").split(" ")[0] or None, "model": r["model"], "tp": _parallel(r),
             "logged_kv_tokens": r.get("logged_kv_tokens") or None, "kv_tokens": r.get("kv_tokens"),
             "logged_available_GiB": r.get("logged_available_GiB") or None,
             "available_GiB": rounded(r.get("available_GiB"), 2),
             "logged_max_concurrency": r.get("logged_max_concurrency") or None,
             "max_concurrency": rounded(r.get("max_concurrency"), 2),
             "error_pct": rounded(r["error_pct"]), "in_sample_error_pct": rounded(r.get("in_sample_error_pct")),
             "weights_error_pct": rounded(r.get("weights_error_pct")),
             "generic_error_pct": rounded(r["generic_error_pct"]), "role": r["role"],
             "fallback": r.get("fallback") or None, "excluded": r.get("excluded") or None} for r in results]
    table = [{"engine": r["engine"], "source": r["source"][:28], "release": r["release"], "model": r["model"],
              "tp": r["tp"], "err %": r["error_pct"], "in-band %": r["in_sample_error_pct"],
              "weights %": r["weights_error_pct"], "generic %": r["generic_error_pct"], "role": r["role"]}
             for r in rows]
    print_ledger(rows, table, summary(results), format,
                 f"kvcalc's engine memory rules against {len(rows)} start-up logs ({path})",
                 "|error| % of the maximum concurrency, else the KV tokens, else the available KV memory, scored "
                 "leave-one-source-out (fit rows apart; in-band %: the rule's constants fitted on every fit row)")


def serve_ledger_cli(path: Path, format, engine: str) -> None:
    """Score kvcalc serve against published continuous-batching throughput: one row each, then the summary."""
    from kvcalc.ledgers.serve import is_bench, read_rows, score, summary

    if engine not in ("profile", "roofline"):
        raise KvcalcError(f"--engine: with --serve, expected profile (TensorRT-LLM's) or roofline, got {engine!r}")
    from kvcalc.ledgers.serving_sim import is_serving_sim_ledger

    if is_serving_sim_ledger(path):  # published serving benchmarks: the simulator and the closed form per row
        return serving_sim_ledger_cli(path, format)
    if is_bench(path):
        return bench_ledger_cli(path, format, engine)
    results = score(read_rows(path), engine="trtllm" if engine == "profile" else "roofline")
    table = [{"id": r["id"], "model": r["model"].replace("llama-", ""), "gpu": r["gpu"].replace("-sxm", ""),
              "tp": r["tp"], "in/out": f"{r['input_len']}/{r['output_len']}", "in flight": r["concurrency"],
              "measured": r["measured"], "kvcalc": r["predicted"], "err %": r["error_pct"]} for r in results]
    print_ledger(results, table, summary(results), format,
                 f"kvcalc serve against {len(results)} published throughputs per GPU ({path})",
                 "|error| % (every row held out)")


def serving_sim_ledger_cli(path: Path, format) -> None:
    """Score serve --simulate and the closed form against published serving benchmarks (ledgers/serving_sim.py)."""
    from kvcalc.ledgers.serving_sim import published_beside, read_rows, score, summary

    results = score(read_rows(path), published=published_beside(path))
    keys = ("id", "engine", "model", "gpu", "vendor", "time_model", "metric", "measured", "simulated", "closed_form",
            "sim_error_pct", "closed_error_pct", "skipped")
    rows = [{k: r.get(k) for k in keys} for r in results]
    table = [{"id": r["id"], "engine": r["engine"], "model": r["model"], "gpu": r["gpu"], "metric": r["metric"] or "-",
              "measured": r["measured"], "sim": r["simulated"], "sim err %": r["sim_error_pct"],
              "closed err %": r["closed_error_pct"], "skipped": (r["skipped"] or "")[:40]} for r in rows]
    print_ledger(rows, table, summary(results), format,
                 f"kvcalc serve --simulate against {len({r['id'] for r in rows})} published serving runs ({path})",
                 "median |error| % (every row held out: an older release's MoE factor refitted without the row's "
                 "organisation where the published ledger sits beside the file)")


def bench_ledger_cli(path: Path, format, engine: str) -> None:
    """Score kvcalc serve against closed-loop benchmark runs: one row a run and metric, then the summary."""
    from kvcalc.ledgers.serve import read_bench_rows, score_bench, summary_bench

    rows = read_bench_rows(path)
    results = score_bench(rows, engine=None if engine == "profile" else "roofline")
    table = [{"id": r["id"], "layout": f"tp{r['tp']}" + (f" pp{r['pp']}" if r["pp"] > 1 else ""),
              "C": r["concurrency"], "metric": r["metric"].replace("median_", ""), "measured": r["measured"],
              "kvcalc": r["predicted"], "err %": r["error_pct"]} for r in results]
    print_ledger(results, table, summary_bench(results), format,
                 f"kvcalc serve against {len(rows)} benchmark runs ({path})", "|error| % (every row held out)")


def rescore_cli(path: Path, gpu: str | None, model: str, engine: str, format) -> None:
    """Measured validate rows against --gpu's prediction under --engine: the summary, or every row."""
    from kvcalc.validate.rescore import read_measured, rescore
    from kvcalc.validate.run import summarise

    if gpu is None:
        raise KvcalcError("--gpu: required with --rescore (the spec whose predictions to score)")
    try:
        measured = read_measured(path)
    except KvcalcError as e:  # the fifth audit: the error named the file, not the flag
        raise KvcalcError(str(e) if str(e).startswith("--rescore") else f"--rescore: {e}") from None
    rows = rescore(measured, gpu, model, engine, source=str(path))
    summary = [{"kind of case": k, "n": s["n"], "median |error| %": s["median_abs_error_pct"],
                "worst |error| %": s["worst_abs_error_pct"]} for k, s in summarise(rows).items()]
    table = [{"case": r["case"], "variant": r["variant"], "batch": r["batch"], "context": r["context"],
              "measured ms": r["measured_ms"], "kvcalc ms": r["predicted_ms"], "err %": r["error_pct"]} for r in rows]
    print_ledger(rows, table, summary, format, f"{len(rows)} measured cases of {path} against {gpu} ({engine})",
                 "|error| % per kind of case")


@app.command("validate")
def validate_cli(
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="the spec to check: bundled name or spec file (e.g. calibrate's)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu [default: cuda when available]")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="whose widths to measure at")] = "llama-3-8b",
    quick: Annotated[bool, typer.Option("--quick", help="a few cases of each kind")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV; rows are appended as they are measured")] = Path("validation.csv"),
    plot: Annotated[Optional[Path], typer.Option(help="roofline with measured over predicted points")] = None,
    published: Annotated[Optional[Path], typer.Option(help="score published end-to-end measurements (a CSV like "
                                                      "validation/published/measurements.csv) instead; needs no torch")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="with --published: table, json or csv")] = "table",
    engine: Annotated[str, typer.Option("--engine", "-e", help="with --published: profile (each row's engine) or "
                                        "roofline (datasheet efficiencies, the baseline)")] = "profile",
    engine_memory: Annotated[Optional[Path], typer.Option(help="score kvcalc's engine memory rules against start-up "
                                                          "logs (a CSV like validation/engine-memory/vllm.csv); "
                                                          "needs no torch")] = None,
    serve: Annotated[Optional[Path], typer.Option(help="score kvcalc serve against published throughput (a CSV like "
                                                  "validation/serve/trtllm-perf-overview.csv, with an optional pp "
                                                  "column); needs no torch")] = None,
    rescore: Annotated[Optional[Path], typer.Option(help="score rows validate measured (its CSV, e.g. "
                                                    "validation/h200/validation-llama-3-8b.csv) against --gpu under "
                                                    "--engine (roofline, auto or an engine) instead of measuring; "
                                                    "needs no torch")] = None,
) -> None:
    """Measure attention, linear and whole-layer cases with PyTorch and report the error of the predictions;
    or, with --published, score kvcalc against published end-to-end measurements."""
    from kvcalc.cli.output import Format

    ledgers = [x for x in (published, engine_memory, serve, rescore) if x is not None]
    if ledgers:
        if format not in {f.value for f in Format}:
            raise KvcalcError(f"--format: expected table, json or csv, got {format!r}")
        if len(ledgers) > 1:
            raise KvcalcError("--published, --engine-memory, --serve, --rescore: pass one ledger at a time")
        if plot is not None:  # the fifth audit: --published --plot x.png wrote nothing and said nothing
            raise KvcalcError("--plot: only when measuring (a ledger is scored as a table); leave it out, or use "
                              "`kvcalc roofline --measured` to plot measured rows")
        if rescore is not None:
            return rescore_cli(rescore, gpu, model, "auto" if engine == "profile" else engine, Format(format))
        if engine_memory is not None:
            return naming_flag("--engine-memory", engine_memory_cli, engine_memory, Format(format))
        if serve is not None:
            return naming_flag("--serve", serve_ledger_cli, serve, Format(format), engine)
        return naming_flag("--published", published_cli, published, Format(format), engine)
    if gpu is None:
        raise KvcalcError("--gpu: required to measure (or pass --published FILE to score published measurements)")
    check_writable(out, "--out", (".csv",))
    if plot is not None:
        check_writable(plot, "--plot", (".png", ".svg", ".pdf"))
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from kvcalc.validate.run import import_torch, validate

    import_torch()  # a missing torch is one line, before any progress bar is drawn
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("measuring", total=None)
            result = validate(gpu, model=model, device=device, quick=quick, out=out,
                              on_row=lambda row: progress.advance(task))
    except KeyboardInterrupt:
        console.print(f"interrupted: the rows measured so far are in {out}")
        raise typer.Exit(130)
    t = Table(title=f"kvcalc validate: |error| of the predictions ({len(result['rows'])} cases, rows in {out})")
    for col in ("kind of case", "n", "median |error| %", "worst |error| %"):
        t.add_column(col)
    for kind, s in result["summary"].items():
        t.add_row(kind, str(s["n"]), f"{s['median_abs_error_pct']:.1f}", f"{s['worst_abs_error_pct']:.1f}")
    Console().print(t)
    for line in result["skipped"]:
        console.print(f"skipped: {line}")
    if plot is not None and result["rows"]:
        import pandas as pd

        from kvcalc.report.plot import validation

        save_figure(validation(pd.DataFrame(result["rows"]), gpu), plot, "--plot")
        typer.echo(f"wrote {plot}")


BENCHMARK_ONLY = ("model", "gpu", "engine", "tp", "replicas", "weight_dtype", "kv_dtype", "engine_version")
MEASURE_ONLY = ("device", "base", "name")


@app.command("calibrate")
def calibrate_cli(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="the hardware spec to write (.toml)")],
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu [default: cuda when available]")] = None,
    base: Annotated[Optional[str], typer.Option(help="datasheet spec whose roofs to keep [default: h100-sxm on cuda]")] = None,
    name: Annotated[Optional[str], typer.Option(help="name of the new spec")] = None,
    from_benchmark: Annotated[Optional[Path], typer.Option(
        help="instead: fit a deployment profile (engine overhead and a kernel-time scale on the engine's profile) to "
             "your own serving benchmark: vllm bench serve --save-result JSON, sglang bench_serving JSONL, "
             "genai-perf or AIPerf JSON exports, trtllm-bench --streaming --report_json, or a CSV "
             "of batch,input_len,output_len,tpot_ms[,ttft_ms]; use it with estimate --profile or serve "
             "--profile")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="with --from-benchmark: the model served")] = None,
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="with --from-benchmark: the GPU")] = "h100-sxm",
    engine: Annotated[str, typer.Option("--engine", "-e", help="with --from-benchmark: vllm, sglang or trtllm")] = "vllm",
    tp: Annotated[int, typer.Option("--tp", help="with --from-benchmark: tensor-parallel GPUs per replica")] = 1,
    replicas: Annotated[int, typer.Option(help="with --from-benchmark: data-parallel replicas the load was spread over")] = 1,
    weight_dtype: Annotated[str, typer.Option(help="with --from-benchmark: weight format [default: the checkpoint's]")] = "auto",
    kv_dtype: Annotated[str, typer.Option(help="with --from-benchmark: KV cache format")] = "bf16",
    engine_version: EngineVersion = None,
) -> None:
    """Measure bandwidth, matmul TFLOPS per dtype and launch overhead; write a spec every command accepts. With
    --from-benchmark, fit a deployment profile to a benchmark result file instead (no torch needed)."""
    check_writable(out, "--out", (".toml",))
    if out.exists():
        raise KvcalcError(f"--out: {out} exists; choose another file")
    # each mode refuses the other's flags (the sixth audit: -m no-such-model ran the measurement, and --device,
    # --base and --name were dropped under --from-benchmark)
    if from_benchmark is not None:
        refuse_given(ctx, MEASURE_ONLY, "only when measuring this machine (without --from-benchmark); leave it out")
        return naming_flag("--from-benchmark", calibrate_benchmark_cli, from_benchmark, out, model, gpu, engine, tp,
                           replicas, weight_dtype, kv_dtype, engine_version)
    refuse_given(ctx, BENCHMARK_ONLY, "only with --from-benchmark (measuring this machine does not read it); add "
                                      "--from-benchmark FILE or leave it out")
    from kvcalc.validate.calibrate import calibrate, write_spec

    spec, measured = calibrate(device, base=base, name=name or out.stem)
    write_spec(spec, out)
    typer.echo(f"wrote {out}: {spec.sources[-1]}")


def calibrate_benchmark_cli(path: Path, out: Path, model, gpu, engine, tp, replicas, weight_dtype, kv_dtype,
                            engine_version) -> None:
    """Fit, write the deployment profile, and say what was fitted on which runs and how well it holds out."""
    from kvcalc.specs.files import write_text
    from kvcalc.specs.toml_out import spec_to_toml
    from kvcalc.validate.calibrate import NOT_FITTED, calibrate_from_benchmark

    if model is None:
        raise KvcalcError("--model: required with --from-benchmark (the model the benchmark served)")
    profile, report = calibrate_from_benchmark(path, model=model, gpu=gpu, engine=engine, tp=tp, replicas=replicas,
                                               weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                                               engine_version=engine_version)
    write_text(out, f"# Written by `kvcalc calibrate --from-benchmark {path}`\n{spec_to_toml(profile)}", "--out")
    held = report["held_out_median_abs_error_pct"]
    scale = "" if report["scale_fitted"] else f" ({NOT_FITTED['scale']})"
    request = "" if report["request_fitted"] else f" ({NOT_FITTED['request']})"
    typer.echo(f"wrote {out}: kernel times x {report['time_scale']:g}{scale}, {report['step_us']:g} us a step, "
               f"{report['request_ms']:g} ms a request{request}, fitted on {len(report['runs'])} runs of {path}; median "
               f"|error| {report['fit_median_abs_error_pct']} % fitted, "
               + (f"{held} % held out (each run fitted without it and its copies)" if held is not None
                  else "none held out (under 3 distinct runs)")
               + f"; use it with `kvcalc estimate --profile {out}` (or serve --profile)",
               err=True)  # a status line, as import's: the
    # file is the output, and a closed stdout had failed the command after writing it (the twenty-first audit, C4)
