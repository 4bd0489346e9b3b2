"""A query string read exactly as the command line reads its options: the CLI command's own option list (typer's
click command) converts each value, fills in the defaults and words a bad value the same way, so a page, the JSON
API and `kvcalc CMD` take the same inputs and give the same one-line errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from kvcalc.errors import KvcalcError


class InputError(Exception):
    """Bad input: the CLI's one-line message and the flag it names (e.g. "--tp"), or None when it names none."""

    def __init__(self, message: str, field: str | None):
        super().__init__(message)
        self.message, self.field = message, field


@cache
def command(name: str):
    """The click command behind `kvcalc NAME` (its options, defaults and value types), built as `kvcalc NAME` builds
    it: that one command's module and click parameters (kvcalc.cli's app.only), not all twenty commands' (issue 22:
    building the whole app once per page was most of the web app's start)."""
    from typer.main import get_command

    from kvcalc.cli import app

    return get_command(app.only(name)).commands[name]


def options(name: str) -> list:
    """The command's options, as click holds them (name, opts, help, default, is_flag, required)."""
    return [p for p in command(name).params if p.opts and p.opts[0].startswith("--")]


def flag_of(name: str, param: str) -> str:
    """'kv_dtype' -> '--kv-dtype' (the long flag the CLI names it by)."""
    for p in options(name):
        if p.name == param:
            return p.opts[0]
    return "--" + param.replace("_", "-")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "on", "yes", "y")


def parse(name: str, query: Mapping[str, str], skip: tuple[str, ...] = (), refuse: tuple[str, ...] = ()) -> dict:
    """{option name: value} for `kvcalc NAME` given query parameters named as the options' Python names
    (kv_dtype=fp8) or long flags without dashes (kv-dtype=fp8); empty values take the CLI's default. A value the
    CLI would reject raises InputError with the CLI's message. Options in skip (files the CLI writes) are ignored;
    one in refuse (what the web app does not offer) is an InputError naming it."""
    cmd = command(name)
    args: list[str] = []
    known = {p.name: p for p in options(name)}
    known.update({o[2:].replace("-", "_"): p for p in options(name) for o in p.opts[1:] if o.startswith("--")})
    for key, value in query.items():
        p = known.get(key.replace("-", "_"))
        if p is None or p.name in skip or value is None or str(value).strip() == "":
            continue
        if p.name in refuse and (not p.is_flag or _truthy(str(value))):
            raise InputError(f"{p.opts[0]}: not in kvcalc web; run kvcalc {name} {p.opts[0]} on the command line",
                             p.opts[0])
        if p.is_flag:
            if p.secondary_opts:  # --convert/--no-convert
                args.append(p.opts[0] if _truthy(str(value)) else p.secondary_opts[0])
            elif _truthy(str(value)):
                args.append(p.opts[0])
        else:
            args.append(f"{p.opts[0]}={value}")  # one token: a value such as -1 stays a value
    from kvcalc.cli import TyperException  # the same class on every typer the floor allows

    try:
        ctx = cmd.make_context(name, args)
    except TyperException as e:  # click's UsageError family: the same words the CLI prints
        param = getattr(e, "param", None)
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        raise InputError(message, param.opts[0] if param is not None and param.opts else None) from None
    return dict(ctx.params)


_FLAG = re.compile(r"^(--[a-z0-9][a-z0-9-]*)")


def from_kvcalc_error(e: KvcalcError) -> InputError:
    """A library error as an InputError: its message starts with the flag it is about ("--tp: ...")."""
    message = str(e)
    m = _FLAG.match(message)
    return InputError(message, m.group(1) if m else None)
