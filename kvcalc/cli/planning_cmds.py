"""kvcalc compare, sweep, capacity and roofline: thin layers over kvcalc.planning.capacity, kvcalc.grid and kvcalc.report.plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.checks import MAX_BATCH, MAX_TOKENS, check_int
from kvcalc.cli import app
from kvcalc.cli.options import (  # noqa: F401  (WEIGHT_HELP, PREFILL_CHUNK_HELP: imported from here by others)
    DEFAULT_ENGINE,
    DEFAULT_GPU,
    DEFAULT_KV_DTYPE,
    DEFAULT_WEIGHT_DTYPE,
    KV_HELP,
    PREFILL_CHUNK_HELP,
    TP_HELP,
    WEIGHT_HELP,
    Batch,
    Context,
    Engine,
    Ep,
    FormatOpt,
    Gpu,
    KvDtype,
    MemoryUtilization,
    Model,
    Pp,
    PrefillChunk,
    Tp,
    WeightDtype,
)
from kvcalc.cli.output import (
    ENGINE_HELP,
    CudaGraphMemory,
    EngineVersion,
    FlashinferSampler,
    Format,
    VllmRunner,
    VllmVersion,
    fmt_number,
    print_rows,
    print_table,
    save_figure,
    write_csv,
    write_json,
)
from kvcalc.errors import KvcalcError
from kvcalc.option_values import attn_variants as _attn
from kvcalc.option_values import speculate_forms, split
from kvcalc.specs.files import check_writable

WeightDtypes = Annotated[str, typer.Option("--weight-dtype", help="weight formats, comma-separated: auto (the "
                                           "checkpoint's own, else bf16), bf16, fp16, fp8, fp8-block, int8, int8-wo, "
                                           "int8-g32/g64/g128, int4, int4-g32/g64/g128, nvfp4, mxfp4, fp32")]
KvDtypes = Annotated[str, typer.Option("--kv-dtype", help="KV cache formats, comma-separated: " + KV_HELP.split(": ")[1])]
Batches = Annotated[str, typer.Option("--batch", "-b", help="batch sizes, comma-separated")]


@app.command("compare")
def compare_cli(
    model: Model, attn: Annotated[str, typer.Option(help="variants, comma-separated")] = "mha,mqa,gqa8,mla",
    gpu: Gpu = DEFAULT_GPU, batch: Batch = 1, context: Context = 4096,
    weight_dtype: WeightDtype = DEFAULT_WEIGHT_DTYPE, kv_dtype: KvDtype = DEFAULT_KV_DTYPE,
    memory_utilization: MemoryUtilization = 0.9, format: FormatOpt = Format.table, engine: Engine = DEFAULT_ENGINE,
    prefill_chunk: PrefillChunk = 8192,
    speculate: Annotated[Optional[str], typer.Option(help="speculative decoding, as estimate's --speculate: each "
                                                     "variant's speed-up (accepted= is vLLM's 'Mean acceptance "
                                                     "length'; rate= its 'Avg Draft acceptance rate', accepted = "
                                                     "1 + k rate)")] = None,
    tp: Tp = 1, pp: Pp = 1, ep: Ep = 1,
) -> None:
    """Attention variants of one model side by side, each relative to the model's own attention."""
    from kvcalc.planning.capacity import compare

    rows = compare(model, _attn(attn), gpu, batch=batch, context=context, weight_dtype=weight_dtype,
                   kv_dtype=kv_dtype, memory_utilization=memory_utilization, engine=engine, prefill_chunk=prefill_chunk,
                   speculate=speculate, tp=tp, pp=pp, ep=ep)
    if format is not Format.table:
        return print_rows(rows, "", format)
    from kvcalc.units import fmt_bytes

    short = [{
        "variant": r["variant"], "KV/tok": fmt_bytes(r["kv_bytes_per_token"]).replace(".00", ""),
        "max ctx": fmt_number(r["max_context_at_batch"]), "max b": f"{r['max_batch_at_context']:,}",
        "ms/step": f"{r['decode_ms']:.2f}", "tok/s": f"{r['tokens_per_s']:,.0f}",
        "FLOP/B": f"{r['arithmetic_intensity']:.1f}", "bound": r["bound"][:3] + ("" if r["fits"] else "*"),
        "KV x": fmt_number(r["kv_bytes_per_token_vs_own"], ".3g"), "tok/s x": fmt_number(r["tokens_per_s_vs_own"], ".2f"),
        **({"spec x": f"{r['speculative_speedup']:.2f}"} if speculate else {}),
    } for r in rows]
    print_rows(short, f"{model} on {gpu}, batch {batch}, context {context:,}: max ctx at batch {batch}, max b at "
                      f"context {context:,}; x = relative to its own attention; * does not fit", format)


@app.command("capacity")
def capacity_cli(
    model: Model, context: Annotated[int, typer.Option("--context", "-c", help="tokens per sequence")],
    gpu: Gpu = DEFAULT_GPU,
    batch: Annotated[Optional[int], typer.Option("--batch", "-b", help="sequences to run together [default: as many as fit]")] = None,
    tp: Annotated[Optional[int], typer.Option("--tp", "--gpus", help=TP_HELP + " [default: the fewest that fit]")] = None,
    target_tokens_per_s: Annotated[Optional[float], typer.Option(help="output tokens/s to serve")] = None,
    price_per_gpu_hour: Annotated[Optional[float], typer.Option(
        help="price of one GPU-hour, in any currency (e.g. USD): the cost per million tokens comes out in the same one")] = None,
    memory_utilization: MemoryUtilization = 0.9,
    prefill_chunk: PrefillChunk = 8192,
    weight_dtype: WeightDtype = DEFAULT_WEIGHT_DTYPE, kv_dtype: KvDtype = DEFAULT_KV_DTYPE,
    format: FormatOpt = Format.table, engine: Engine = DEFAULT_ENGINE,
    max_num_batched_tokens: Annotated[Optional[int], typer.Option(
        help="with --engine vllm: vLLM's max_num_batched_tokens [default: vllm serve's for the GPU]; with --engine "
        "trtllm: its max_num_tokens [default: 8192]")] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option(
        help="with --engine vllm: vLLM's max_num_seqs [default: vllm serve's for the GPU]")] = None,
    vllm_runner: VllmRunner = "auto",
    vllm_version: VllmVersion = "latest",
    cuda_graph_memory: CudaGraphMemory = None,
    flashinfer_sampler: FlashinferSampler = False,
    pp: Pp = 1,
    ep: Ep = 1,
    engine_version: EngineVersion = None,
) -> None:
    """GPUs, concurrency, context, throughput and cost of a tensor-parallel deployment.

    With --engine vllm, memory is budgeted as vLLM does it and the KV tokens and maximum concurrency are the ones
    vLLM prints at start-up for max_model_len = --context; --engine sglang and --engine trtllm budget it as those
    engines do (--memory-utilization as mem_fraction_static, or as free_gpu_memory_fraction)."""
    from kvcalc.planning.capacity import capacity, gpu_count

    plan = capacity(model, gpu, context=context, batch=batch, gpus=tp, target_tokens_per_s=target_tokens_per_s,
                    price_per_gpu_hour=price_per_gpu_hour, memory_utilization=memory_utilization,
                    prefill_chunk=prefill_chunk, weight_dtype=weight_dtype, kv_dtype=kv_dtype, engine=engine,
                    max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, pp=pp, ep=ep,
                    vllm_runner=vllm_runner, vllm_version=vllm_version, cuda_graph_GiB=cuda_graph_memory,
                    flashinfer_sampler=flashinfer_sampler, engine_version=engine_version)
    if format is not Format.table:
        from kvcalc.report.formats import capacity_csv_row  # the same columns whatever the rule (audit I2)

        return write_json(plan) if format is Format.json else write_csv([capacity_csv_row(plan)])
    from rich.table import Table

    from kvcalc.units import fmt_bytes

    t = Table(title=f"{plan['model']} on {plan['gpu']} at context {context:,}", show_header=False)
    t.add_column("quantity", style="bold")
    t.add_column("value")
    show = {
        "fewest GPUs: weights + 1 sequence": plan["min_gpus_for_weights"],  # at the context (its JSON key's name)
        "tensor parallel over": gpu_count(plan["tensor_parallel"]) + (
            f" in each of {plan['pipeline_parallel']} pipeline stages" if plan["pipeline_parallel"] > 1 else "") + (
            f"; experts over {plan['expert_parallel']} GPUs" if plan["expert_parallel"] > 1 else ""),
        "weights per GPU": fmt_bytes(plan["weights_bytes_per_gpu"]) + _engine_weights(plan),
        "KV budget per GPU": fmt_bytes(plan["kv_budget_bytes_per_gpu"]),
        "max concurrent sequences at context": plan["max_sequences_at_context"],
        f"longest context at batch {batch or 1}": fmt_number(plan["max_context_at_batch"]),
        # tokens/s of one replica, its GPUs named (the thirty-fourth audit, capacity 5: read as one GPU's)
        f"decode at batch {plan['batch']}": (f"{plan['decode_ms']:.2f} ms/step, {plan['tokens_per_s']:,.0f} tokens/s "
                                             f"per replica of {gpu_count(plan['gpus_per_replica'])}"
                                             + (f" ({plan['tokens_per_s_per_gpu']:,.0f} a GPU)"
                                                if plan["gpus_per_replica"] > 1 else "")),
        "GPUs for the target": plan["gpus_for_target"],
        # three significant figures, as the JSON's value holds them (capacity 6: 0.001055 had printed 0.001)
        f"cost per million output tokens at batch {plan['batch']}": (
            f"{plan['cost_per_million_tokens']:.3g} (decode at that full load, prefill not counted)"
            if plan["cost_per_million_tokens"] is not None else None),
        "binding constraint": plan["binding"],
    }
    for k, v in show.items():
        if v is not None:
            t.add_row(k, str(v))
    em = plan["engine_memory"]
    if em and em["engine"] == "vllm":
        t.add_row(f"vLLM {em['vllm_version']}: memory it may use", f"{fmt_bytes(em['visible_memory_bytes'])} visible x "
                  f"{memory_utilization:.2f} = {fmt_bytes(em['requested_bytes'])}")
        t.add_row("vLLM: weights; profiling peak; non-torch",
                  f"{fmt_bytes(em['weights_bytes_per_gpu'])}; {fmt_bytes(em['profile_peak_bytes'])} "
                  f"({em['max_num_batched_tokens']:,} tokens, {em['max_num_seqs']:,} seqs, model runner "
                  f"{em['model_runner']}, sampler {em['sampler']}); "
                  f"{fmt_bytes(em['non_torch_bytes'])}")
        if em["cuda_graphs_counted"]:
            t.add_row("vLLM: Estimated CUDA graph memory", fmt_bytes(em["cuda_graph_bytes"]) + (
                "" if em["cuda_graph_bytes"] else " (not given: --cuda-graph-memory)"))
        t.add_row("vLLM: Available KV cache memory", fmt_bytes(em["available_kv_bytes"]))
        t.add_row("vLLM: GPU KV cache size", f"{em['kv_tokens']:,} tokens")
        t.add_row("vLLM: Maximum concurrency", f"{em['max_concurrency']:.2f}x for {context:,} tokens per request")
    elif em and em["engine"] == "trtllm":
        t.add_row("TensorRT-LLM: free after loading", f"{fmt_bytes(em['visible_memory_bytes'])} visible - weights "
                  f"{fmt_bytes(em['weights_bytes_per_gpu'])} - activations {fmt_bytes(em['profile_peak_bytes'])} "
                  f"({em['max_num_batched_tokens']:,} tokens) - non-torch {fmt_bytes(em['non_torch_bytes'])}")
        t.add_row("TensorRT-LLM: Allocated for max tokens in paged KV cache",
                  f"{fmt_bytes(em['available_kv_bytes'])} ({memory_utilization:.2f} of it: free_gpu_memory_fraction), "
                  f"{em['kv_tokens']:,} tokens")
    elif em:
        t.add_row("SGLang: static memory", f"{fmt_bytes(em['visible_memory_bytes'])} visible x "
                  f"{memory_utilization:.2f} (mem_fraction_static) = {fmt_bytes(em['requested_bytes'])}")
        t.add_row("SGLang: weights; non-torch", f"{fmt_bytes(em['weights_bytes_per_gpu'])}; "
                  f"{fmt_bytes(em['non_torch_bytes'])}")
        t.add_row("SGLang: KV Cache is allocated", f"{em['kv_tokens']:,} tokens ({fmt_bytes(em['available_kv_bytes'])})")
    for k, v in plan["assumptions"].items():
        t.add_row(f"assumption: {k}", fmt_bytes(v) if "bytes" in k else str(v))
    print_table(t)


@app.command("sweep")
def sweep_cli(
    model: Annotated[str, typer.Option("--model", "-m", help="models, comma-separated")],
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="GPUs, comma-separated")] = DEFAULT_GPU,
    attn: Annotated[str, typer.Option(help="attention variants ('own' for the model's)")] = "own",
    batch: Batches = "1,8,64",
    context: Annotated[str, typer.Option("--context", "-c", help="contexts (= prompts), comma-separated")] = "1024,4096,16384",
    weight_dtype: WeightDtypes = DEFAULT_WEIGHT_DTYPE, kv_dtype: KvDtypes = DEFAULT_KV_DTYPE,
    memory_utilization: MemoryUtilization = 0.9,
    out: Annotated[Path, typer.Option("--out", "-o", help=".csv, or .parquet with pyarrow installed")] = Path("sweep.csv"),
    engine: Annotated[str, typer.Option("--engine", "-e", help="time models, comma-separated: " + ENGINE_HELP)] = DEFAULT_ENGINE,
    prefill_chunk: PrefillChunk = 8192,
    tp: Annotated[str, typer.Option("--tp", help="tensor-parallel GPUs, comma-separated")] = "1",
    pp: Annotated[str, typer.Option("--pp", help="pipeline stages, comma-separated")] = "1",
    speculate: Annotated[Optional[str], typer.Option(
        help="speculative decoding forms separated by ';' (none for plain), e.g. 'none;mtp=1;eagle,k=4', as "
             "estimate's --speculate (accepted= is vLLM's 'Mean acceptance length'; rate= its 'Avg Draft acceptance "
             "rate', accepted = 1 + k rate)")] = None,
    ep: Annotated[str, typer.Option("--ep", help="expert-parallel GPUs, comma-separated (1: none)")] = "1",
) -> None:
    """Every combination of the axes into one table (CSV or Parquet)."""
    from kvcalc.grid import combinations, sweep

    from kvcalc.specs.files import is_existing_path

    # a path holding a comma is one model, not a list (the seventeenth audit, H3: split at its comma)
    models = [model] if "," in model and is_existing_path(model) else split("--model", model)
    axes = dict(models=models, gpus=split("--gpu", gpu), attn=_attn(attn),
                weight_dtype=split("--weight-dtype", weight_dtype), kv_dtype=split("--kv-dtype", kv_dtype),
                engine=split("--engine", engine), tp=split("--tp", tp, int), pp=split("--pp", pp, int),
                speculate=speculate_forms(speculate),
                ep=split("--ep", ep, int))
    grid = dict(batch=split("--batch", batch, int), context=split("--context", context, int))
    check_writable(out, "--out", (".csv", ".parquet"))
    parquet = out.suffix.lower() == ".parquet"
    if parquet:  # checked before the sweep, which may take minutes (audit O3)
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
            raise KvcalcError("--out: Parquet needs pyarrow (pip install pyarrow); use a .csv file")
    from rich.progress import Progress

    n = combinations(**axes)
    from rich.console import Console

    # the progress bar on stderr, as validate's: rich 13's stop() prints a newline to its console even disabled,
    # which with stdout closed failed a sweep that had written its file (the third audit, at the floor versions)
    with Progress(transient=True, disable=n < 16, console=Console(stderr=True)) as progress:
        task = progress.add_task("sweeping", total=n)
        df = sweep(**axes, **grid, memory_utilization=memory_utilization, prefill_chunk=prefill_chunk,
                   on_combination=lambda: progress.advance(task))
    try:
        if parquet:
            df.to_parquet(out)
        else:  # the one CSV writer, as every command's --format csv: whole bytes (the eighth audit, V3: 131072.0)
            from kvcalc.serialize import csv_text

            out.write_text(csv_text(df.to_dict("records"), document=False), encoding="utf-8")
    except ImportError:
        raise KvcalcError("--out: Parquet needs pyarrow (pip install pyarrow); use a .csv file") from None
    except OSError as e:
        raise KvcalcError(f"--out: cannot write {out} ({e.strerror})") from None
    typer.echo(f"wrote {len(df):,} rows to {out}", err=True)  # a status line: the file is the output


@app.command("roofline")
def roofline_cli(
    model: Model,
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="GPUs, comma-separated")] = DEFAULT_GPU,
    attn: Annotated[str, typer.Option(help="attention variants ('own' for the model's)")] = "own",
    batch: Batches = "1,8,64,256",
    context: Context = 4096,
    weight_dtype: WeightDtype = DEFAULT_WEIGHT_DTYPE, kv_dtype: KvDtype = DEFAULT_KV_DTYPE,
    measured: Annotated[Optional[Path], typer.Option(help="kvcalc validate CSV to overlay")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help=".png or .svg")] = Path("roofline.png"),
    engine: Annotated[str, typer.Option("--engine", "-e", help="roofline: points on the roofs; vllm, sglang, trtllm or "
                                        "auto: where the engine's measured kernels land")] = "roofline",
    speculate: Annotated[Optional[str], typer.Option(help="speculative decoding, as estimate's --speculate: plots "
                                                     "the whole decode and verify steps")] = None,
) -> None:
    """A log-log roofline chart with the decode operating points of each attention variant and batch."""
    check_writable(out, "--out", (".png", ".svg", ".pdf"))
    check_int("--context", context, 1, MAX_TOKENS)
    points = None
    if measured is not None:
        from kvcalc.report.plot import read_measured

        try:
            points = read_measured(measured)
        except KvcalcError as e:  # the fifth audit: the error named the file, not the flag
            raise KvcalcError(str(e) if str(e).startswith("--measured") else f"--measured: {e}") from None
    from kvcalc.report.plot import roofline

    batches = [check_int("--batch", b, 1, MAX_BATCH) for b in split("--batch", batch, int)]
    from kvcalc.checks import check_speculate

    check_speculate(speculate)  # named as the flag (the API names its keyword)
    fig = roofline(split("--gpu", gpu), model, attn=_attn(attn), batch=batches, context=context,
                   weight_dtype=weight_dtype, kv_dtype=kv_dtype, measured=points, engine=engine, speculate=speculate,
                   flags=True)
    save_figure(fig, out, "--out")
    typer.echo(f"wrote {out}", err=True)  # a status line: the file is the output


def _engine_weights(plan: dict) -> str:
    """Where the engine's memory rule loads the weights in another layout than the checkpoint stores them (vLLM's
    MXFP4 for Marlin on Hopper and older), both figures, so the row does not contradict the KV budget below it."""
    from kvcalc.units import fmt_bytes

    em = plan.get("engine_memory")
    loaded = em.get("weights_bytes_per_gpu") if em else None
    if not loaded or abs(loaded - plan["weights_bytes_per_gpu"]) <= 0.01 * plan["weights_bytes_per_gpu"]:
        return ""
    return f" as stored; {em['engine']} loads {fmt_bytes(loaded)}"
