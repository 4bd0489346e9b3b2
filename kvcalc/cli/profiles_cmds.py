"""kvcalc profiles fit | ledger: engine profiles from NVIDIA's measured kernel tables (the `profiles` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kvcalc.cli import RefusingRepeats, app
from kvcalc.cli.output import Format, print_rows

profiles_app = typer.Typer(help="Engine profiles: fit them to measured kernel tables, score them on held-out rows.",
                           no_args_is_help=True, cls=RefusingRepeats)
app.add_typer(profiles_app, name="profiles")

Data = Annotated[Optional[Path], typer.Option(help="systems/data folder of aiconfigurator-core [default: the installed package's]")]


def _names(flag: str, text: str | None, allowed) -> list[str]:
    from kvcalc.cli.planning_cmds import split
    from kvcalc.errors import KvcalcError

    names = list(allowed) if text is None else split(flag, text)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise KvcalcError(f"{flag}: no measured tables for {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return names


@profiles_app.command("fit")
def fit_cli(
    gpu: Annotated[Optional[str], typer.Option("--gpu", "-g", help="accelerators, comma-separated [default: all with tables]")] = None,
    engine: Annotated[Optional[str], typer.Option(help="vllm, sglang, trtllm, comma-separated [default: all]")] = None,
    data: Data = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="folder to write GPU.ENGINE.toml into [default: the bundled profiles]")] = None,
) -> None:
    """Fit each GPU x engine's kernel curves on half the measured shapes; record the error on the other half."""
    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.kernel_tables import (
        TABLE_ENGINES,
        TABLE_GPUS,
        fit_profile,
        tables_root,
        unreadable_table,
    )
    from kvcalc.specs.catalog import spec_dir
    from kvcalc.specs.toml_out import spec_to_toml

    root = tables_root(data)
    target = out_dir or spec_dir("profile")
    if not target.is_dir():
        raise KvcalcError(f"--out-dir: {target} is not a folder")
    for g in _names("--gpu", gpu, TABLE_GPUS):
        for e in _names("--engine", engine, TABLE_ENGINES):
            with unreadable_table(root / TABLE_GPUS[g]):  # a table not as aiconfigurator-core writes it: one line
                profile = fit_profile(root, g, e)
            if profile is None:
                typer.echo(f"{g} x {e}: no GEMM table, skipped", err=True)
                continue
            path = target / f"{g}.{e}.toml"
            header = (f"# Written by `kvcalc profiles fit --gpu {g} --engine {e}`; re-run it rather than edit by hand.\n"
                      "# Curves: t = t0 + smoothmax(F / (peak e_c(F)), B / (bandwidth e_m(B))), "
                      "e(x) = e_max x^a / (x^a + x_half^a) (kvcalc/formulas/kernel_time.py).\n")
            path.write_text(header + spec_to_toml(profile))
            typer.echo(f"wrote {path}")


@profiles_app.command("ledger")
def ledger_cli(
    data: Data = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")] = Format.table,
) -> None:
    """Score every bundled profile against its tables: median and 90th-percentile |error| on held-out shapes."""
    from kvcalc.ledgers.kernel_tables import ledger, tables_root
    from kvcalc.specs.catalog import bundled_specs

    rows = ledger(tables_root(data), bundled_specs("profile"))
    print_rows(rows, "Engine profiles against measured kernels (|error| %, held-out shapes)", format)


def _read_ledger(read_points, path: Path, flag: str) -> list[dict]:
    """A published-measurements CSV for a fit, its errors naming this command's flag; the default paths are a
    checkout's (validation/published/), which an installed package run elsewhere does not have."""
    from kvcalc.errors import KvcalcError

    try:
        return read_points(path)
    except KvcalcError as e:  # the reader names validate's --published (U4)
        hint = ("; run from a kvcalc checkout's root or pass the file" if not path.is_absolute() and not path.exists()
                else "")
        raise KvcalcError(f"{flag}: {str(e).removeprefix('--published: ')}{hint}") from None


@profiles_app.command("fit-published")
def fit_published_cli(
    measurements: Annotated[Path, typer.Option(help="published measurements CSV")] = Path("validation/published/measurements.csv"),
    out_dir: Annotated[Optional[Path], typer.Option(help="folder to write GPU.gpt-fast.toml into [default: the bundled profiles]")] = None,
) -> None:
    """Fit gpt-fast's A100 profile on its published single-GPU rows (marked fit); its other rows stay held out."""
    import importlib.util

    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.published import fit_gpt_fast, read_points
    from kvcalc.specs.catalog import load_gpu, resolve_engine, spec_dir
    from kvcalc.specs.files import check_writable
    from kvcalc.specs.toml_out import spec_to_toml

    if importlib.util.find_spec("scipy") is None:  # the fit's least squares (audit O1)
        raise KvcalcError("profiles fit-published: the fit needs scipy: pip install 'kvcalc[profiles]'")
    target = out_dir or spec_dir("profile")
    if not target.is_dir():  # checked before the fit
        raise KvcalcError(f"--out-dir: {target} is not a folder")
    path = target / "a100-sxm-80gb.gpt-fast.toml"
    check_writable(path, "--out-dir")
    hw = load_gpu("a100-sxm-80gb")
    points = _read_ledger(read_points, measurements, "--measurements")
    try:
        profile = fit_gpt_fast(points, resolve_engine("trtllm", hw), resolve_engine("vllm", hw))
    except KvcalcError as e:
        raise KvcalcError(f"--measurements: {str(e).removeprefix('--published: ')}") from None
    path = target / f"{profile.gpu}.gpt-fast.toml"
    path.write_text(f"# Written by `kvcalc profiles fit-published`; re-run it rather than edit by hand.\n{spec_to_toml(profile)}")
    typer.echo(f"wrote {path}: {profile.notes}")


@profiles_app.command("transfer")
def transfer_cli(
    to: Annotated[Optional[str], typer.Option("--to", help="target accelerators, comma-separated [default: every bundled part x engine without a measured profile]")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", help="the measured part to carry curves from [default: the target's listed sibling]")] = None,
    engine: Annotated[Optional[str], typer.Option(help="vllm, sglang, trtllm, comma-separated [default: all that run on the target]")] = None,
    out_dir: Annotated[Optional[Path], typer.Option(help="folder to write GPU.ENGINE.toml into [default: the bundled profiles]")] = None,
) -> None:
    """Carry a measured sibling's kernel curves onto a part without measured tables (its own roofs; collectives
    for its own links), and write GPU.ENGINE.toml saying where they came from and how."""
    from kvcalc.cli.planning_cmds import split
    from kvcalc.engines.transfer import TRANSFER_ENGINES, missing_pairs, transfer
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.catalog import load_gpu, spec_dir
    from kvcalc.specs.toml_out import spec_to_toml

    engines = _names("--engine", engine, TRANSFER_ENGINES)

    def gpu_of(flag: str, name: str):  # load_gpu's one-line error names --gpu; here the flag is --to or --from
        try:
            return load_gpu(name)
        except KvcalcError as e:
            raise KvcalcError(str(e).replace("--gpu", flag, 1)) from None

    if from_ is not None:
        gpu_of("--from", from_)
    if to is None:
        pairs = [(g, e) for g, e in missing_pairs() if e in engines]
    else:
        pairs = [(hw.name, e) for hw in (gpu_of("--to", g) for g in split("--to", to)) for e in engines
                 if e not in hw.unsupported_engines or engine is not None]
    target = out_dir or spec_dir("profile")
    if not target.is_dir():
        raise KvcalcError(f"--out-dir: {target} is not a folder")
    for g, e in pairs:
        profile = transfer(g, e, from_)
        path = target / f"{g}.{e}.toml"
        source = profile.transferred_from.split(".")[0]
        header = (f"# Written by `kvcalc profiles transfer --from {source} --to {g} --engine {e}`; re-run it rather "
                  "than edit by hand.\n# Why these curves carry over: kvcalc/engines/transfer.py; the collectives' "
                  "rules: kvcalc/engines/links.py.\n")
        path.write_text(header + spec_to_toml(profile))
        typer.echo(f"wrote {path} ({profile.label})")


@profiles_app.command("fit-e2e")
def fit_e2e_cli(
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="accelerators, comma-separated")],
    engine: Annotated[str, typer.Option(help="vllm or sglang, comma-separated")] = "vllm",
    published: Annotated[Path, typer.Option(help="published measurements CSV")] = Path("validation/published/unseen-amd-pcie.csv"),
    out_dir: Annotated[Optional[Path], typer.Option(help="folder to write GPU.ENGINE.toml into [default: the bundled profiles]")] = None,
) -> None:
    """Fit a transferred profile's kernel-time scale to published end-to-end runs on the part (rows marked fit,
    else those with an even crc32 of their id); the other rows stay held out."""
    from kvcalc.cli.planning_cmds import split
    from kvcalc.errors import KvcalcError
    from kvcalc.ledgers.fit_e2e import fit_bundled
    from kvcalc.ledgers.published import read_points
    from kvcalc.specs.catalog import spec_dir
    from kvcalc.specs.toml_out import spec_to_toml

    points = _read_ledger(read_points, published, "--published")
    target = out_dir or spec_dir("profile")
    for g in split("--gpu", gpu):
        for e in split("--engine", engine):
            try:
                profile = fit_bundled(points, g, e)
            except KvcalcError as err:  # transfer()'s flags are profiles transfer's (the third audit)
                if not str(err).startswith("--to: "):
                    raise
                raise KvcalcError(f"--gpu: {str(err).removeprefix('--to: ').split(';')[0]}; fit-e2e scales a "
                                  "transferred profile (kvcalc profiles transfer --to GPU --from SIBLING)") from None
            if not target.is_dir():  # as the other profiles commands refuse it (the twenty-sixth audit, R6: a
                # traceback), once the --gpu and --engine are known good
                raise KvcalcError(f"--out-dir: {target} is not a folder")
            path = target / f"{profile.gpu}.{e}.toml"
            path.write_text(f"# Written by `kvcalc profiles fit-e2e --gpu {profile.gpu} --engine {e} --published "
                            f"{published}`; re-run it rather than edit by hand.\n{spec_to_toml(profile)}")
            typer.echo(f"wrote {path}: kernel times x {profile.time_scale:.3f} on {len(profile.fitted_on)} rows")
