"""kvcalc import: turn a Hugging Face config.json into a model spec file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli import app

MAX_NAME = 128  # characters of an imported spec's name


@app.command("import")
def import_cli(
    config: Annotated[str, typer.Argument(help="config.json, a folder holding one, or an ORG/NAME repo id in the HF cache")],
    name: Annotated[str, typer.Option("--name", "-n", help="name of the new spec")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="file to write [default: NAME.toml]")] = None,
) -> None:
    """Write a model spec from a config.json; the spec gives the same numbers as the config."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.files import check_writable, write_text
    from kvcalc.specs.hf import load_hf_spec
    from kvcalc.specs.toml_out import spec_to_toml, toml_comment

    if not name.strip():
        raise KvcalcError("--name: empty; expected the new spec's name, e.g. my-model")
    if "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise KvcalcError(f"--name: {name!r} holds a path separator; give a plain name (and --out PATH for where "
                          "to write it)")
    # a name is a label in every table and JSON: printable, at most MAX_NAME characters (the twenty-first audit, C5:
    # a newline had broken the table's title, and a 5,000-character name had passed)
    if len(name) > MAX_NAME or not name.isprintable():
        raise KvcalcError(f"--name: {name!r:.40}: expected at most {MAX_NAME} printable characters, e.g. my-model")
    from kvcalc.specs.catalog import bundled_path

    if bundled_path("model", name) is not None:  # its results would read as the bundled model's (C5)
        typer.echo(f"warning: --name {name} is also a bundled model's name: results from this file will be labelled "
                   "as the bundled model's; a name of its own tells them apart", err=True)
    target = out or Path(f"{name}.toml")
    check_writable(target, "--out" if out else "--name", (".toml",))
    if target.exists():
        raise KvcalcError(f"--out: {target} exists; choose another file")
    try:
        spec, assumptions = load_hf_spec(config, name=name)
    except KvcalcError as e:  # named by import's own argument, CONFIG: import has no --model (the tenth audit, E10)
        message = str(e).replace("is neither a bundled name, a spec file nor an ORG/NAME repo id",
                                 "is neither a config.json, a folder holding one nor an ORG/NAME repo id (import reads "
                                 "a config; `kvcalc show model NAME --format toml` writes a bundled spec)")
        raise KvcalcError("CONFIG: " + message.removeprefix("--model: ")) from None
    header = toml_comment(f"Written by `kvcalc import` from {spec.sources[0]}") + "\n"
    write_text(target, header + spec_to_toml(spec), "--out")
    for a in assumptions:
        typer.echo(f"warning: {a}", err=True)
    typer.echo(f"wrote {target}", err=True)  # a status line: the file is the output
