"""Write a spec as TOML (the standard library reads TOML but does not write it; specs are flat enough)."""

from __future__ import annotations

import json

from pydantic import BaseModel


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
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
