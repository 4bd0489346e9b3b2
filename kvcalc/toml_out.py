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


def spec_to_toml(spec: BaseModel) -> str:
    """Top-level scalars and lists first, then one [table] per nested model; None fields are left out."""
    data = spec.model_dump(exclude_none=True, exclude_defaults=False)
    lines, tables = [], []
    for key, value in data.items():
        (tables if isinstance(value, dict) else lines).append((key, value))
    out = [f"{k} = {_value(v)}" for k, v in lines]
    for name, table in tables:
        out += ["", f"[{name}]"] + [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"
