"""kvcalc estimate: one model, one accelerator, one workload."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kvcalc.cli import app
from kvcalc.cli.options import (
    DEFAULT_ENGINE,
    DEFAULT_GPU,
    DEFAULT_KV_DTYPE,
    DEFAULT_WEIGHT_DTYPE,
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
from kvcalc.errors import KvcalcError
from kvcalc.cli.output import EngineVersion, Format, write_csv, write_json
from kvcalc.serialize import json_safe


@app.command("estimate")
def estimate_cli(
    model: Model,
    gpu: Gpu = DEFAULT_GPU,
    attn: Annotated[Optional[str], typer.Option(help="what-if attention: mha, mqa, gqaN, mla, linear")] = None,
    kv_lora_rank: Annotated[Optional[int], typer.Option(help="MLA latent width d_c (with --attn mla)")] = None,
    rope_dim: Annotated[Optional[int], typer.Option(help="MLA shared RoPE key width d_r (with --attn mla)")] = None,
    batch: Batch = 1,
    context: Context = 4096,
    prompt: Annotated[Optional[int], typer.Option(help="prefill length [default: the context]")] = None,
    weight_dtype: WeightDtype = DEFAULT_WEIGHT_DTYPE,
    kv_dtype: KvDtype = DEFAULT_KV_DTYPE,
    memory_utilization: MemoryUtilization = 0.9,
    engine: Engine = DEFAULT_ENGINE,
    engine_version: EngineVersion = None,
    profile: Annotated[Optional[str], typer.Option(help="an engine profile file for this GPU (e.g. kvcalc calibrate "
                                                   "--from-benchmark's), instead of the bundled one")] = None,
    tp: Tp = 1,
    pp: Pp = 1,
    speculate: Annotated[Optional[str], typer.Option(
        help="speculative decoding: draft=MODEL,k=4,alpha=0.7 | eagle,k=4 | medusa=4 | mtp=1 | ngram=4,alpha=0.5 "
             "(alpha=, accepted= or rate= override the defaults: accepted= is vLLM's 'Mean acceptance length' or "
             "SGLang's accept length, bonus token included; rate= vLLM's 'Avg Draft acceptance rate' R as a fraction, "
             "accepted = 1 + k R, which is not alpha; alpha= the i.i.d. per-draft acceptance, vLLM's first "
             "per-position rate)")] = None,
    ep: Ep = 1,
    prefill_chunk: PrefillChunk = 8192,
    format: FormatOpt = Format.table,
    explain: Annotated[bool, typer.Option("--explain", help="show each number's formula with values")] = False,
) -> None:
    """KV cache, weights, memory fit, and decode and prefill time (measured engine kernels, or the roofline)."""
    from kvcalc.estimator import estimate_with_specs

    if explain and format is not Format.table:  # the ninth round, P7: dropped in silence
        raise KvcalcError("--explain: with --format table (the derivations are printed, not a JSON or CSV field)")

    e, spec, hw = estimate_with_specs(
        model, gpu, attn=attn, kv_lora_rank=kv_lora_rank, rope_dim=rope_dim, batch=batch, context=context,
        prompt=prompt, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        memory_utilization=memory_utilization, engine=engine, tp=tp, prefill_chunk=prefill_chunk, pp=pp, ep=ep,
        speculate=speculate, engine_version=engine_version, profile_file=profile,
    )
    if format is not Format.table:  # the warnings go to stderr as well, exactly as the JSON lists them
        for warning in e.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if format is Format.json:
            return write_json(e.to_json_dict())
        from kvcalc.report.formats import estimate_csv_row

        return write_csv([json_safe(estimate_csv_row(e.to_json_dict()))])
    from kvcalc.cli.render import render_estimate, render_explain

    render_estimate(e, spec, hw)
    if explain:
        render_explain(e, spec, hw)
