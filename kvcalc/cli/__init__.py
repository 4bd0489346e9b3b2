"""The kvcalc command line: a typer app whose commands parse, call one library function and render.

Errors never end in a traceback: usage errors and KvcalcError become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

from kvcalc.errors import KvcalcError


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


class OneLineErrors(TyperGroup):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from kvcalc.cli.output import GuardedStdout, StdoutError

        stdout = sys.stdout
        sys.stdout = GuardedStdout(stdout)  # a full or closed stdout: one line, exit 2 (audit F7)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                rv = super().main(args, prog_name or "kvcalc", complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()
        except StdoutError as e:
            typer.echo(f"kvcalc: error: {e}", err=True)
            sys.exit(2)
        except (typer.TyperException, KvcalcError) as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `kvcalc`: the help text, not an error
                typer.echo(e.ctx.get_help())
                sys.exit(0)
            msg = e.format_message() if isinstance(e, typer.TyperException) else str(e)
            typer.echo(f"kvcalc: error: {msg}", err=True)
            sys.exit(2 if isinstance(e, KvcalcError) else getattr(e, "exit_code", 2))
        except typer.Abort:
            typer.echo("kvcalc: aborted", err=True)
            sys.exit(130)
        finally:
            sys.stdout = stdout
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="Roofline and KV-cache calculator for transformer inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _print_version(value: bool) -> None:
    if value:
        from kvcalc import __version__

        typer.echo(f"kvcalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print kvcalc's version and exit"),
) -> None:
    """Roofline and KV-cache calculator for transformer inference."""


from kvcalc.cli import (  # noqa: E402,F401  (registers the commands)
    catalog_cmds,
    estimate_cmd,
    import_cmd,
    plan_cmd,
    planning_cmds,
    profiles_cmds,
    serve_cmd,
    validate_cmds,
    web_cmd,
)


def main() -> None:
    app()
