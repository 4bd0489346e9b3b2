"""kvcalc models, kvcalc gpus, kvcalc show model|gpu: the bundled catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from kvcalc.cli import RefusingRepeats, app
from kvcalc.cli.options import FormatOpt
from kvcalc.cli.output import Format, flatten, print_rows, write_csv, write_json

show_app = typer.Typer(help="Print one spec with its sources.", no_args_is_help=True, cls=RefusingRepeats)
app.add_typer(show_app, name="show")

ShowFormat = Annotated[str, typer.Option("--format", "-f", help="table, json, csv, or toml (a spec file to copy and edit)")]


def _model_row(m) -> dict:
    a = m.attention
    kv = a.num_kv_heads if a.kind != "mla" else f"latent {a.kv_lora_rank}+{a.qk_rope_head_dim}"
    return {
        "name": m.name, "aliases": ", ".join(m.aliases), "attention": a.kind, "layers": m.num_layers,
        "hidden": m.hidden_size, "heads": a.num_heads, "kv_heads": kv, "head_dim": a.qk_head_dim,
        "moe": f"{m.moe.num_experts}x top-{m.moe.top_k}" if m.moe else "",
    }


def _bf16_tflops(g) -> tuple[float | None, str | None]:
    """The dense bf16 peak kvcalc times bf16 work at, and a note where it is the fp16 peak: a part without bf16 units
    (T4, V100) runs a bf16 checkpoint in fp16 (HardwareSpec.peak_flops; the thirty-ninth audit, hwspecs 1: the
    catalog had said "not applicable" where estimate then used 65 and 125 TFLOPS)."""
    from kvcalc.errors import KvcalcError

    if g.peak_tflops.bf16 is not None:
        return g.peak_tflops.bf16, None
    try:  # the spec's own fallback, not a second copy of it
        return g.peak_flops("bf16") / 1e12, "the fp16 peak: no bf16 units, a bf16 checkpoint runs in fp16"
    except KvcalcError:  # neither peak listed
        return None, None


def _gpu_row(g) -> dict:
    bf16, note = _bf16_tflops(g)
    return {
        "name": g.name, "aliases": ", ".join(g.aliases), "memory_GiB": g.memory_GiB,
        "bandwidth_GBps": g.memory_bandwidth_GBps, "bf16_tflops": bf16, **({"bf16_tflops_note": note} if note else {}),
        "fp8_tflops": g.peak_tflops.fp8,
        # every bundled part without an fp8 peak lacks the units (Ampere, Volta, Turing, CDNA 2: the fortieth audit,
        # outputs 2, where the generic "not applicable to this run" had been the reason)
        **({} if g.peak_tflops.fp8 is not None else {"fp8_tflops_note": "no fp8 tensor units"}),
    }


def _model_cell(m) -> dict:
    """The same facts in 80 columns: query/KV heads in one column; aliases are in --format json and `show`."""
    a = m.attention
    attn = f"mla {a.kv_lora_rank}+{a.qk_rope_head_dim}" if a.kind == "mla" else a.kind
    heads = f"{a.num_heads}/latent" if a.kind == "mla" else f"{a.num_heads}/{a.num_kv_heads}"
    return {"name": m.name, "attn": attn, "heads q/kv": heads, "layers": m.num_layers, "hidden": m.hidden_size,
            "head dim": a.qk_head_dim, "moe": f"{m.moe.num_experts}x top-{m.moe.top_k}" if m.moe else ""}


@app.command("models")
def models_cli(format: FormatOpt = Format.table) -> None:
    """List the bundled model specs (model_specs/ in the repository, inside the package when installed)."""
    from kvcalc.specs.catalog import bundled_specs

    row = _model_cell if format is Format.table else _model_row
    print_rows([row(m) for m in bundled_specs("model")], "Bundled models", format)


@app.command("gpus")
def gpus_cli(format: FormatOpt = Format.table) -> None:
    """List the bundled accelerator specs (dense peaks; hardware_specs/ in the repository)."""
    from kvcalc.specs.catalog import available_engines, bundled_specs

    def _gpu_cell(g) -> dict:
        bf16, note = _bf16_tflops(g)
        return {"name": g.name, "GiB": g.memory_GiB, "GB/s": g.memory_bandwidth_GBps,
                "bf16 TF": f"{bf16:g} (fp16)" if note else bf16,
                "fp8 TF": g.peak_tflops.fp8, "engine profiles": ", ".join(available_engines(g.name))}

    row = _gpu_cell if format is Format.table else _gpu_row
    print_rows([row(g) for g in bundled_specs("gpu")], "Bundled accelerators (dense peaks, TF = TFLOPS)", format)


def _show(spec, format: str) -> None:
    if format == "toml":  # a template: the same fields a spec file needs, ready to edit
        from kvcalc.specs.toml_out import spec_to_toml

        return typer.echo(f"# kvcalc spec file: edit the values and cite your sources; load it with --model/--gpu FILE\n"
                          f"{spec_to_toml(spec)}", nl=False)
    if format not in {f.value for f in Format}:
        from kvcalc.errors import KvcalcError

        raise KvcalcError(f"--format: expected table, json, csv or toml, got {format!r}")
    format = Format(format)
    data = spec.model_dump(exclude_none=True)
    if format is Format.json:
        return write_json(data)
    if format is Format.csv:
        return write_csv([flatten(data)])
    from rich.console import Console
    from rich.table import Table

    t = Table(title=getattr(spec, "display_name", None) or spec.name, show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in flatten({k: v for k, v in data.items() if k != "sources"}).items():
        t.add_row(key, str(value))
    for i, src in enumerate(spec.sources, 1):
        t.add_row(f"source {i}", src)
    Console().print(t)


@show_app.command("model")
def show_model_cli(name: Annotated[str, typer.Argument(help="name, alias or spec file")], format: ShowFormat = "table") -> None:
    """One model spec with its sources."""
    from kvcalc.specs.catalog import load_model

    _show(load_model(name), format)


@show_app.command("gpu")
def show_gpu_cli(name: Annotated[str, typer.Argument(help="name, alias or spec file")], format: ShowFormat = "table") -> None:
    """One accelerator spec with its sources."""
    from kvcalc.specs.catalog import load_gpu

    _show(load_gpu(name), format)
