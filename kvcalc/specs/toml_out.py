"""Write a spec as TOML (the standard library reads TOML but does not write it; specs are flat enough)."""

from __future__ import annotations

from pydantic import BaseModel

_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(c: str) -> str:
    """One character as TOML writes it in an ASCII file: itself if printable ASCII, else an escape. TOML (1.0,
    "Basic strings") has \\uXXXX for the basic plane and \\UXXXXXXXX beyond it; json.dumps's surrogate pairs for
    the latter are not Unicode scalar values and TOML refuses them. A lone surrogate (an undecodable byte in a
    file name) has no TOML spelling and becomes U+FFFD."""
    o = ord(c)
    if 0xD800 <= o <= 0xDFFF:
        return "\\uFFFD"
    if o > 0xFFFF:
        return f"\\U{o:08X}"
    if o < 0x20 or o >= 0x7F:
        return f"\\u{o:04X}"
    return c


def toml_string(text: str) -> str:
    """A TOML basic string holding `text`, in ASCII."""
    return '"' + "".join(_SHORT.get(c) or _escape(c) for c in text) + '"'


def toml_comment(text: str) -> str:
    """`text` as one TOML comment line: control characters (a newline in a path would end the comment and make
    the rest a statement) are written as escapes, so the comment stays one line."""
    return "# " + "".join(c if c == "\t" or not (ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF)
                          else _escape(c) for c in text)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _tables(path: str, data: dict, out: list[str]) -> None:
    """Scalars of `data` under [path], then each nested dict as its own [path.key] table (an empty table is left
    out: it reads back as its default)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if path and scalars:
        out += ["", f"[{path}]"]
    out += [f"{k} = {_value(v)}" for k, v in scalars.items()]
    for key, value in data.items():
        if isinstance(value, dict):
            _tables(f"{path}.{key}" if path else key, value, out)


def spec_to_toml(spec: BaseModel) -> str:
    """Top-level scalars and lists first, then one [table] per nested model (nested deeper as [a.b]);
    None fields are left out."""
    out: list[str] = []
    _tables("", spec.model_dump(exclude_none=True, exclude_defaults=False), out)
    return "\n".join(out) + "\n"
