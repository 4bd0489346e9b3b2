"""The kvcalc command line: a typer app whose commands parse, call one library function and render.

Errors never end in a traceback: usage errors and KvcalcError become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

try:  # typer >= 0.27 names the base of click's usage errors (its vendored click) TyperException
    from typer import TyperException
except ImportError:
    try:  # typer 0.26 vendors click without that name
        from typer._click.exceptions import ClickException as TyperException
    except ImportError:  # typer < 0.26 depends on click itself
        from click import ClickException as TyperException

from kvcalc.errors import KvcalcError
from kvcalc.option_values import refuse_separated_number


def _warning_lines():
    """warnings.showwarning for one command: each distinct warning once, as `warning: ...` on stderr (the thirty-third
    audit, web 5: plan had printed one SGLang note 8 times, where the web app's header carries it once)."""
    said: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if str(message) not in said:
            said.add(str(message))
            typer.echo(f"warning: {message}", err=True)

    return show


def refuse_repeated_options(command, args: list[str]) -> None:
    """An option given twice on one command line is an error naming it (the sixth audit: `-b 1 -b 2` took the last
    without a word, where kvcalc refuses a GPU priced twice and `k=` given twice in --speculate). Options declared to
    repeat (multiple, count) are left alone; a value that looks like a flag is skipped with its option."""
    opts = {}
    for p in getattr(command, "params", []):
        if p.param_type_name == "option" and not getattr(p, "multiple", False) and not getattr(p, "count", False):
            opts.update(dict.fromkeys((*p.opts, *p.secondary_opts), p))
    seen: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            break
        key = token.split("=", 1)[0] if token.startswith("--") else token[:2] if token.startswith("-") else None
        p = opts.get(key)
        if p is not None:
            if p.name in seen:
                raise KvcalcError(f"{p.opts[0]}: given twice ({seen[p.name]} and {token}); give it once")
            seen[p.name] = token
            attached = "=" in token if token.startswith("--") else len(token) > 2
            if not p.is_flag:
                value = (token.split("=", 1)[1] if token.startswith("--") else token[2:]) if attached else (
                    args[i + 1] if i + 1 < len(args) else "")
                refuse_separated_number(p.opts[0], value)
            if not p.is_flag and not attached:
                i += 1  # its value
        i += 1


class RefusingRepeats(TyperGroup):
    """A group whose commands refuse an option given twice (refuse_repeated_options); `show` and `profiles` are
    such groups too (the sixth audit's verification: their subcommands had taken the last)."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not hasattr(command, "commands"):  # a command, not a group of them
            refuse_repeated_options(command, rest)
        return name, command, rest


class OneLineErrors(RefusingRepeats):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from kvcalc.cli.output import GuardedStdout, StdoutError

        stdout = sys.stdout
        sys.stdout = GuardedStdout(stdout)  # a full or closed stdout: one line, exit 2 (audit F7)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_lines()
                rv = super().main(args, prog_name or "kvcalc", complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()
        except StdoutError as e:
            typer.echo(f"kvcalc: error: {e}", err=True)
            sys.exit(2)
        except (TyperException, KvcalcError) as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `kvcalc`: the help text, not an error
                typer.echo(e.ctx.get_help())
                sys.exit(0)
            msg = e.format_message() if isinstance(e, TyperException) else str(e)
            typer.echo(f"kvcalc: error: {msg}", err=True)
            sys.exit(2 if isinstance(e, KvcalcError) else getattr(e, "exit_code", 2))
        except typer.Abort:
            typer.echo("kvcalc: aborted", err=True)
            sys.exit(130)
        finally:
            sys.stdout = stdout
        sys.exit(rv if isinstance(rv, int) else 0)


# Each command and the module that registers it. `kvcalc NAME ...` imports that one module and builds that one
# command's click parameters; typer would otherwise import every module and build all ~250 options of the 20
# commands before parsing (issue 22: a third of estimate's start-up). tests/test_flags.py checks this map is whole.
COMMAND_MODULES = {
    "models": "catalog_cmds", "gpus": "catalog_cmds", "show": "catalog_cmds",
    "estimate": "estimate_cmd", "import": "import_cmd", "plan": "plan_cmd",
    "compare": "planning_cmds", "capacity": "planning_cmds", "sweep": "planning_cmds", "roofline": "planning_cmds",
    "profiles": "profiles_cmds", "serve": "serve_cmd", "validate": "validate_cmds", "calibrate": "validate_cmds",
    "web": "web_cmd",
}


class CommandsOnDemand(typer.Typer):
    """A Typer app whose command modules are imported when its commands are first read (typer.main.get_command,
    as CliRunner and the web app's option lists do): `from kvcalc.cli import app` stays cheap, and the app read
    is always whole. Registering (@app.command, add_typer) appends without loading."""

    def __init__(self, **kwargs) -> None:
        self._loaded, self._registering = False, False
        self._settings = kwargs
        super().__init__(**kwargs)

    def _whole(self) -> None:
        if not (self._loaded or self._registering):
            self._loaded = True
            import importlib

            for module in dict.fromkeys(COMMAND_MODULES.values()):  # the registration order of the old imports
                importlib.import_module(f"kvcalc.cli.{module}")

    @property
    def registered_commands(self) -> list:
        self._whole()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, value: list) -> None:
        self._commands = value

    @property
    def registered_groups(self) -> list:
        self._whole()
        return self._groups

    @registered_groups.setter
    def registered_groups(self, value: list) -> None:
        self._groups = value

    def command(self, *args, **kwargs):
        decorator = super().command(*args, **kwargs)

        def register(f):
            self._registering = True
            try:
                return decorator(f)
            finally:
                self._registering = False

        return register

    def add_typer(self, *args, **kwargs) -> None:
        self._registering = True
        try:
            super().add_typer(*args, **kwargs)
        finally:
            self._registering = False

    def only(self, name: str) -> typer.Typer:
        """An app of this one command (or group), importing only the module that registers it."""
        import importlib

        importlib.import_module(f"kvcalc.cli.{COMMAND_MODULES[name]}")
        one = CommandsOnDemand(**self._settings)
        one._loaded = True
        one.registered_callback = self.registered_callback
        one._commands = [c for c in self._commands if c.name == name]
        one._groups = [g for g in self._groups if g.name == name]
        return one


app = CommandsOnDemand(
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


# The widest terminal kvcalc lays its tables out for. The tables are made for 80 columns and none is wider than a
# few hundred; rich's layout time grows with COLUMNS (10,000,000 took ~10 s for `estimate`, 99,999,999 ~95 s,
# fresh audit E), so a wider COLUMNS is taken as this.
MAX_COLUMNS = 1000


def main() -> None:
    """The console script: `kvcalc NAME ...` builds only NAME's command; anything else (help, a typo) the whole app."""
    import os

    if os.environ.get("COLUMNS", "").isdigit() and int(os.environ["COLUMNS"]) == 0:
        del os.environ["COLUMNS"]  # rich would lay every table out 0 wide and print nothing (fuzz 2); its default
    elif os.environ.get("COLUMNS", "").isdigit() and int(os.environ["COLUMNS"]) > MAX_COLUMNS:
        os.environ["COLUMNS"] = str(MAX_COLUMNS)  # fresh audit E: rich's layout time grows with the width
    import gc

    # Start-up allocates ~10^5 container objects (pydantic schemas, typer parameters, specs) and little cyclic garbage:
    # a young-generation collection every 700 of them, and the exiting interpreter's traversal of them all, were a
    # third of `kvcalc estimate`'s time above the import floor (issue 22). A collection every 10,000 still bounds a
    # long run's memory (kvcalc web, plan, serve --simulate); frozen objects are skipped at exit.
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        (app.only(name) if name in COMMAND_MODULES else app)()
    finally:
        gc.freeze()
