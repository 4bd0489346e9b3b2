"""Shared output helpers for the commands: the --format option and writers for json and csv."""

from __future__ import annotations

import csv
import json
import math
import sys
from enum import Enum
from typing import Annotated, Optional

import typer

VLLM_RUNNER_HELP = ("with --engine vllm: vLLM's model runner, which sets its profiling peak: v0 (the V0 worker), v1 "
                    "(GPUModelRunner; both profile the sampler with top-k/top-p's sort), v2 (Model Runner V2: "
                    "without it), or auto, the one --vllm-version picks for the model. Your start-up log says which: "
                    "'[model_runner.py] Model loading took' is v2, '[gpu_model_runner.py]' v1")
VLLM_VERSION_HELP = ("with --engine vllm: the vLLM release whose memory rule to follow, e.g. 0.11 or 0.30.1; it picks the "
                     "model runner, whether NCCL's start-up buffers count (before 0.11), whether the CUDA-graph "
                     "estimate does (0.21 on) and whether sampling is sharded over TP (0.29 on) [default: latest, "
                     "0.30's rule]")
CUDA_GRAPH_HELP = ("with --engine vllm: the CUDA-graph estimate vLLM takes out of the KV pool from 0.21 (Model "
                   "Runner V2: from 0.29), in GiB per GPU, as its log prints it ('Estimated CUDA graph memory: X GiB'); "
                   "0 under --enforce-eager [default: not subtracted, and the pool is an upper bound]")
VllmRunner = Annotated[str, typer.Option(help=VLLM_RUNNER_HELP)]
CudaGraphMemory = Annotated[Optional[float], typer.Option(help=CUDA_GRAPH_HELP)]
FLASHINFER_SAMPLER_HELP = ("with --engine vllm: your log says 'Using FlashInfer for top-p & top-k sampling': "
                           "GPUModelRunner (v1) then profiles its sampler at 10 bytes a logit, without the sort's 38.92")
FlashinferSampler = Annotated[bool, typer.Option("--flashinfer-sampler", help=FLASHINFER_SAMPLER_HELP)]
VllmVersion = Annotated[str, typer.Option(help=VLLM_VERSION_HELP)]
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


def compact_table(title: str | None = None, **kwargs):
    """A rich table that fits 80 columns: a rule under the header instead of a full grid, one space of padding."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, **kwargs)


def print_rows(rows: list[dict], title: str, format: Format) -> None:
    """Rows of one shape as JSON, CSV or a compact rich table (text folds rather than being cut off)."""
    if format is Format.json:
        return write_json(rows)
    if format is Format.csv:
        return write_csv(rows)
    from rich.console import Console

    console = Console()
    t = compact_table(title)
    cells = [[_cell(v) for v in r.values()] for r in rows]
    columns = list(rows[0])
    numeric = [isinstance(rows[0][c], (int, float)) and not isinstance(rows[0][c], bool) for c in columns]
    widths = fit_widths([max([len(row[i]) for row in cells] + [len(w) for w in col.split()]) for i, col in enumerate(columns)],
                        numeric, console.width - 2 * len(columns) - 4)
    for col, width, is_number in zip(columns, widths, numeric):
        t.add_column(col, min_width=width, overflow="fold", justify="right" if is_number else "left")
    for row in cells:
        t.add_row(*row)
    console.print(t)


def fit_widths(natural: list[int], numeric: list[bool], available: int) -> list[int]:
    """Column widths that add up to at most `available`: every column keeps its natural width where it can, and
    the widest text columns give way first (they fold); numbers are narrowed only when nothing else is left."""
    widths = list(natural)
    while sum(widths) > available:  # the first column (the row's name) is the last to give way
        text = ([i for i, w in enumerate(widths) if i and not numeric[i] and w > 6]
                or [i for i, w in enumerate(widths) if w > 4])
        if not text:
            break
        widest = max(text, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths
