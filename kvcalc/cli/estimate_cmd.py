"""kvcalc estimate: one model, one accelerator, one workload."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kvcalc.cli import app
from kvcalc.cli.output import ENGINE_HELP, EngineVersion, Format, flatten, write_csv, write_json
from kvcalc.cli.planning_cmds import WEIGHT_HELP


@app.command("estimate")
def estimate_cli(
    model: Annotated[str, typer.Option("--model", "-m", help="bundled name or alias, or a spec file")],
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="bundled name or alias, or a spec file")] = "h100-sxm",
    attn: Annotated[Optional[str], typer.Option(help="what-if attention: mha, mqa, gqaN, mla")] = None,
    kv_lora_rank: Annotated[Optional[int], typer.Option(help="MLA latent width d_c (with --attn mla)")] = None,
    rope_dim: Annotated[Optional[int], typer.Option(help="MLA shared RoPE key width d_r (with --attn mla)")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="sequences decoded together")] = 1,
    context: Annotated[int, typer.Option("--context", "-c", help="tokens already cached per sequence")] = 4096,
    prompt: Annotated[Optional[int], typer.Option(help="prefill length [default: the context]")] = None,
    weight_dtype: Annotated[str, typer.Option(help=WEIGHT_HELP)] = "auto",
    kv_dtype: Annotated[str, typer.Option(help="KV cache format: bf16, fp16, fp8, int8, int4, nvfp4, fp32")] = "bf16",
    memory_utilization: Annotated[float, typer.Option(help="fraction of device memory usable")] = 0.9,
    engine: Annotated[str, typer.Option("--engine", "-e", help=ENGINE_HELP)] = "auto",
    engine_version: EngineVersion = None,
    profile: Annotated[Optional[str], typer.Option(help="an engine profile file for this GPU (e.g. kvcalc calibrate "
                                                   "--from-benchmark's), instead of the bundled one")] = None,
    tp: Annotated[int, typer.Option("--tp", help="tensor-parallel GPUs (they must divide the query heads)")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="pipeline stages of --tp GPUs each")] = 1,
    speculate: Annotated[Optional[str], typer.Option(
        help="speculative decoding: draft=MODEL,k=4,alpha=0.7 | eagle,k=4 | medusa=4 | mtp=1 (alpha= and accepted= "
             "override the defaults)")] = None,
    ep: Annotated[int, typer.Option("--ep", help="expert-parallel GPUs for a MoE model (attention in data-parallel "
                                    "replicas of --tp)")] = 1,
    prefill_chunk: Annotated[int, typer.Option(help="tokens per prefill chunk, whose activations are reserved")] = 8192,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")] = Format.table,
    explain: Annotated[bool, typer.Option("--explain", help="show each number's formula with values")] = False,
) -> None:
    """KV cache, weights, memory fit, and decode and prefill time (measured engine kernels, or the roofline)."""
    from kvcalc.estimator import estimate_with_specs

    e, spec, hw = estimate_with_specs(
        model, gpu, attn=attn, kv_lora_rank=kv_lora_rank, rope_dim=rope_dim, batch=batch, context=context,
        prompt=prompt, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        memory_utilization=memory_utilization, engine=engine, tp=tp, prefill_chunk=prefill_chunk, pp=pp, ep=ep,
        speculate=speculate, engine_version=engine_version, profile_file=profile,
    )
    if format is not Format.table:  # the warnings go to stderr as well, exactly as the JSON lists them
        for warning in e.warnings:
            typer.echo(f"warning: {warning}", err=True)
        return write_json(e.to_json_dict()) if format is Format.json else write_csv([flatten(e.to_json_dict())])
    from kvcalc.cli.render import render_estimate, render_explain

    render_estimate(e, spec, hw)
    if explain:
        render_explain(e, spec, hw)
