"""Shared output helpers for the commands: the --format option and writers for json and csv."""

from __future__ import annotations

import csv
import json
import math
import sys
from enum import Enum


ENGINE_HELP = ("time model: vllm, sglang, trtllm or gpt-fast (measured kernel curves), roofline (datasheet efficiencies), "
               "or auto (vllm where the GPU has a profile, else roofline)")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def flatten(d: dict, prefix: str = "") -> dict:
    """Dotted keys for scalar leaves; lists and nested breakdowns are left to the JSON output."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def save_figure(fig, path, flag: str) -> None:
    """Save a matplotlib figure; a write failure is a one-line error naming the flag."""
    from kvcalc.errors import KvcalcError

    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise KvcalcError(f"{flag}: cannot write {path} ({e.strerror})") from None


def json_safe(obj):
    """JSON has no NaN or Infinity: such a value becomes null, with a sibling KEY_note saying why."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
                out[f"{k}_note"] = "undefined: 0 / 0 (nothing fits in the reference case)" if math.isnan(v) else (
                    "unbounded: only sliding-window layers grow, and they stop at the window" if v > 0 else "unbounded")
            else:
                out[k] = json_safe(v)
        return out
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


def write_json(obj) -> None:
    json.dump(json_safe(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def _finite_or_blank(v):
    return "" if isinstance(v, float) and not math.isfinite(v) else v


def write_csv(rows: list[dict]) -> None:
    """CSV rows; a non-finite value is an empty cell (CSV's null), never nan or inf."""
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _finite_or_blank(v) for k, v in row.items()} for row in rows)


def _cell(v) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "—"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def print_rows(rows: list[dict], title: str, format: Format) -> None:
    """Rows of one shape as JSON, CSV or a rich table (first column never wrapped)."""
    if format is Format.json:
        return write_json(rows)
    if format is Format.csv:
        return write_csv(rows)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for i, col in enumerate(rows[0]):
        t.add_column(col, no_wrap=i == 0, justify="right" if isinstance(rows[0][col], (int, float)) else "left")
    for r in rows:
        t.add_row(*(_cell(v) for v in r.values()))
    Console().print(t)
