"""A query string read exactly as the command line reads its options: the CLI command's own option list (typer's
click command) converts each value, fills in the defaults and words a bad value the same way, so a page, the JSON
API and `kvcalc CMD` take the same inputs and give the same one-line errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from kvcalc.checks import shown_value
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


_TRUE = ("1", "true", "on", "yes", "y")
_FALSE = ("0", "false", "off", "no", "n")


def _switch(flag: str, value: str) -> bool:
    """An on/off option's value (true/false, 1/0, yes/no, on/off), else an InputError naming its flag."""
    v = value.strip().lower()
    if v not in _TRUE + _FALSE:
        raise InputError(f"{flag}: expected true or false, got {shown_value(value)}", flag)
    return v in _TRUE


def keys(name: str) -> dict:
    """{query key: (click option, negated)} for `kvcalc NAME`: each option's Python name (kv_dtype), its other long
    flags without dashes (capacity's gpus), and an on/off option's negative flag (plan's no_convert, negated)."""
    out = {}
    for p in options(name):
        out[p.name] = (p, False)
        out.update({o[2:].replace("-", "_"): (p, False) for o in p.opts[1:] if o.startswith("--")})
        out.update({o[2:].replace("-", "_"): (p, True) for o in p.secondary_opts if o.startswith("--")})
    return out


SPEC_REFERENCES = ("model", "gpu", "gpus")  # options that take a bundled name or, on the command line, a file


def _names_a_file(value: str) -> bool:
    """Whether a model or GPU reference is a path (a spec file, a config.json or a folder) rather than a name or an
    ORG/NAME repo id: it is spelled as a file. By spelling only: whether such a file exists on this host must not
    change the answer (the thirty-third audit, web 2), and the library resolves names only inside the web app's calls
    (specs/files.no_local_paths)."""
    parts = [v.strip() for v in value.split(",")]
    return any(v.startswith(("/", ".", "~", "\\")) or
               v.lower().endswith((".toml", ".yaml", ".yml", ".json")) for v in parts if v)


def refuse_repeated_keys(name: str, keys_given) -> None:
    """One option given twice, under one key or two (batch twice; kv-dtype and kv_dtype; convert and no_convert) is
    an InputError naming its flag, as the command line refuses it (the sixth audit and its verification)."""
    known = keys(name)
    seen: dict[str, str] = {}
    for key in keys_given:
        hit = known.get(key.replace("-", "_"))
        option, flag = (hit[0].name, hit[0].opts[0]) if hit else (key, key)
        if option in seen:
            raise InputError(f"{flag}: given twice ({seen[option]} and {key}); give it once", flag)
        seen[option] = key


# what an error sent to a browser echoes of a query at most: a key's name, a whole message [characters]
MAX_ECHO, MAX_MESSAGE = 60, 600


def parse(name: str, query: Mapping[str, str], refuse: Mapping[str, str] | None = None) -> dict:
    """{option name: value} for `kvcalc NAME` given query parameters named as the options' Python names
    (kv_dtype=fp8) or long flags without dashes (kv-dtype=fp8, no_convert=true); empty values take the CLI's default.
    A key that names no option of the command is an InputError naming it and listing the keys accepted (a typo must
    not quietly take a default: audit 1's no_convert=true converted weights all the same); a value the CLI would
    reject raises InputError with the CLI's message. An option in refuse (what the web app does not offer: files the
    CLI reads or writes, --simulate) given a value other than its default is an InputError naming it; refuse maps
    the option's name to what the command line needs beside its flag ("" or e.g. "--simulate ")."""
    refuse = refuse or {}
    cmd = command(name)
    args: list[str] = []
    known = keys(name)
    refuse_repeated_keys(name, query)
    for key, value in query.items():
        hit = known.get(key.replace("-", "_"))
        if hit is None:
            accepted = ", ".join(k for k, (p, _) in known.items() if p.name not in refuse)
            shown = key if len(key) <= MAX_ECHO else key[:MAX_ECHO] + "..."
            raise InputError(f"{shown}: not an option of kvcalc {name} on the web; expected one of {accepted}", shown)
        p, negated = hit
        if value is None or str(value).strip() == "":
            continue
        named = str(value) if p.name in SPEC_REFERENCES else ",".join(
            part.split("=", 1)[1] for part in str(value).split(",") if part.strip().startswith("draft=")
        ) if p.name == "speculate" else ""
        if named and _names_a_file(named):
            # the web app reads bundled specs and the host's Hugging Face cache, never a path on the host's disk
            raise InputError(f"{p.opts[0]}: {str(value)[:60]!r} is a file path; the web app takes bundled names (and "
                             f"cached ORG/NAME repo ids for models): run kvcalc {name} {p.opts[0]} FILE on the "
                             "command line", p.opts[0])
        if p.is_flag:
            on = _switch(p.opts[0] if not negated else p.secondary_opts[0], str(value)) != negated
            if p.secondary_opts:  # --convert/--no-convert
                args.append(p.opts[0] if on else p.secondary_opts[0])
            elif on:
                args.append(p.opts[0])
        else:
            from kvcalc.option_values import refuse_separated_number
            from kvcalc.errors import KvcalcError

            try:  # 1_6 as the command line refuses it (the seventh audit, V11)
                refuse_separated_number(p.opts[0], str(value))
            except KvcalcError as e:
                raise InputError(str(e), p.opts[0]) from None
            args.append(f"{p.opts[0]}={value}")  # one token: a value such as -1 stays a value
    from kvcalc.cli import TyperException  # the same class on every typer the floor allows

    try:
        ctx = cmd.make_context(name, args)
    except TyperException as e:  # click's UsageError family: the same words the CLI prints
        param = getattr(e, "param", None)
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if len(message) > MAX_MESSAGE:  # click's own echo of a hostile value (the thirty-ninth audit, web 2)
            message = message[:MAX_MESSAGE] + "... (cut)"
        raise InputError(message, param.opts[0] if param is not None and param.opts else None) from None
    params = dict(ctx.params)
    for p in options(name):
        if p.name in refuse and params[p.name] != p.default:
            flag = p.opts[0]
            raise InputError(f"{flag}: not in kvcalc web; run kvcalc {name} {refuse[p.name]}{flag} on the command line",
                             flag)
    return params


_FLAG = re.compile(r"^(--[a-z0-9][a-z0-9-]*)")


def from_kvcalc_error(e: KvcalcError) -> InputError:
    """A library error as an InputError: its message starts with the flag it is about ("--tp: ..."). The server's
    own paths are not told to a browser: the Hugging Face cache and the home folder are named, not spelt out (the
    twentieth audit, W8: a repo id not in the cache had answered with the cache's absolute path)."""
    from pathlib import Path

    from kvcalc.specs.hf import hf_cache_dir

    message = str(e)
    for path, name in ((str(hf_cache_dir()), "its folder on the server"), (str(Path.home()), "~")):
        if len(path) > 1:
            message = message.replace(path, name)
    m = _FLAG.match(message)
    if len(message) > MAX_MESSAGE:  # a hostile value echoed whole (the thirty-sixth audit, web 6: 5,000 characters)
        message = message[:MAX_MESSAGE] + "... (cut)"
    return InputError(message, m.group(1) if m else None)
