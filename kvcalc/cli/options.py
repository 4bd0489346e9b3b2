"""Options that mean the same thing on every command (issue 21 item 4): one definition each, so the names, short
flags, types, defaults and help text agree wherever they appear; tests/test_flags.py walks every command to check.

Commands whose axis takes a comma-separated list (sweep, serve's frontier, roofline's batches) define their own
plural form with the same flag; those exceptions are listed, with the reason, in tests/test_flags.py.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kvcalc.cli.output import ENGINE_HELP, Format

MODEL_HELP = "bundled name, alias or Hugging Face id; a spec file, a config.json, or a cached ORG/NAME"
GPU_HELP = "bundled name or alias, or a spec file"
WEIGHT_HELP = ("weight format: auto (the checkpoint's own, else bf16), bf16, fp16, fp8, fp8-block, int8, int8-wo, "
               "int8-g32/g64/g128, int4, int4-g32/g64/g128, nvfp4, mxfp4, fp32")
KV_HELP = "KV cache format: bf16, fp16, fp8, int8, int4, nvfp4, fp32"
TP_HELP = "tensor-parallel GPUs (they must divide the query heads)"
PP_HELP = "pipeline stages, each of --tp GPUs"
EP_HELP = "expert-parallel GPUs of a MoE model (attention in data-parallel groups of --tp)"
MEMORY_UTILIZATION_HELP = "fraction of device memory usable (vLLM's gpu_memory_utilization)"
PREFILL_CHUNK_HELP = "tokens per prefill chunk, whose activations are reserved"
CONTEXT_HELP = "tokens already cached per sequence"
BATCH_HELP = "sequences decoded together"
CONCURRENCY_HELP = "requests in flight"
FORMAT_HELP = "table, json or csv"

DEFAULT_GPU = "h100-sxm"
DEFAULT_WEIGHT_DTYPE = "auto"
DEFAULT_KV_DTYPE = "bf16"
DEFAULT_ENGINE = "auto"

Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Gpu = Annotated[str, typer.Option("--gpu", "-g", help=GPU_HELP)]
Tp = Annotated[int, typer.Option("--tp", help=TP_HELP)]
Pp = Annotated[int, typer.Option("--pp", help=PP_HELP)]
Ep = Annotated[int, typer.Option("--ep", help=EP_HELP)]
WeightDtype = Annotated[str, typer.Option("--weight-dtype", help=WEIGHT_HELP)]
KvDtype = Annotated[str, typer.Option("--kv-dtype", help=KV_HELP)]
Engine = Annotated[str, typer.Option("--engine", "-e", help=ENGINE_HELP)]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)]
MemoryUtilization = Annotated[float, typer.Option("--memory-utilization", help=MEMORY_UTILIZATION_HELP)]
PrefillChunk = Annotated[int, typer.Option("--prefill-chunk", help=PREFILL_CHUNK_HELP)]
Context = Annotated[int, typer.Option("--context", "-c", help=CONTEXT_HELP)]
Batch = Annotated[int, typer.Option("--batch", "-b", help=BATCH_HELP)]
Concurrency = Annotated[Optional[float], typer.Option("--concurrency", "-n", help=CONCURRENCY_HELP)]


def refuse_given(ctx: typer.Context, names, why: str) -> None:
    """Refuse the first of the parameters `names` given on the command line (not left at its default), naming its
    flag (`why` may name it again as {flag}): a flag the chosen mode does not read is an error, never dropped."""
    from kvcalc.errors import KvcalcError

    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name in names else None
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            raise KvcalcError(f"{param.opts[0]}: " + why.format(flag=param.opts[0]))
