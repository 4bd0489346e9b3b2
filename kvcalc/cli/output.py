"""Shared output helpers for the commands: the --format option and writers for json and csv."""

from __future__ import annotations

import csv
import json
import math
import sys
from enum import Enum
from typing import Annotated, Optional

import typer

# The JSON and CSV documents themselves (what --format json|csv prints) live in kvcalc/serialize.py, shared with
# the web app's API; the names stay importable from here.
from kvcalc.serialize import (  # noqa: F401
    NULL_NOTES,
    SCHEMA_VERSION,
    _null_safe,
    flatten,
    json_safe,
)

VLLM_RUNNER_HELP = ("with --engine vllm: vLLM's model runner, which sets its profiling peak: v0 (the V0 worker) and "
                    "v1 (GPUModelRunner) profile the sampler with top-k/top-p (a sort; from vLLM 0.17 v1's Triton "
                    "kernel, in place), v2 (Model Runner V2) without it; or auto, the one --vllm-version picks for the "
                    "model. Your start-up log says which: "
                    "'[model_runner.py] Model loading took' is v2, '[gpu_model_runner.py]' v1")
VLLM_VERSION_HELP = ("with --engine vllm: the vLLM release the run used, e.g. 0.11 or 0.30.1: its memory rule (the "
                     "model runner, whether NCCL's start-up buffers count (before 0.11), whether the CUDA-graph "
                     "estimate does (0.21 on) and whether sampling is sharded over TP (0.29 on)) and, as "
                     "--engine-version, its step times [default: latest, 0.30's rule]")
CUDA_GRAPH_HELP = ("with --engine vllm: the CUDA-graph estimate vLLM takes out of the KV pool from 0.21 (Model "
                   "Runner V2: from 0.29), in GiB per GPU, as its log prints it ('Estimated CUDA graph memory: X GiB'); "
                   "0 under --enforce-eager [default: not subtracted, and the pool is an upper bound]")
VllmRunner = Annotated[str, typer.Option(help=VLLM_RUNNER_HELP)]
CudaGraphMemory = Annotated[Optional[float], typer.Option(help=CUDA_GRAPH_HELP)]
FLASHINFER_SAMPLER_HELP = ("with --engine vllm: your log says 'Using FlashInfer for top-p & top-k sampling': "
                           "GPUModelRunner (v1) then profiles its sampler at 10 bytes a logit, without the sort's 38.92")
FlashinferSampler = Annotated[bool, typer.Option("--flashinfer-sampler", help=FLASHINFER_SAMPLER_HELP)]
# typer's own "[default: latest]" beside the help's fuller one (the thirty-eighth audit, newcomer 5)
VllmVersion = Annotated[str, typer.Option(help=VLLM_VERSION_HELP, show_default=False)]
ENGINE_VERSION_HELP = ("the engine release whose time outside the kernels (per step: scheduler, sampler, Python; per "
                       "request: API server, tokeniser) to add: a band (vLLM v0, v1, v2; TensorRT-LLM engine, pytorch) "
                       "or a release such as 0.6.3 or 1.2.0 [default: the newest band, today's release: vLLM's v2, "
                       "as --vllm-version latest sizes its pool]")
EngineVersion = Annotated[Optional[str], typer.Option("--engine-version", help=ENGINE_VERSION_HELP)]
ENGINE_HELP = ("time model: vllm, sglang, trtllm or gpt-fast (measured kernel curves), roofline (datasheet efficiencies), "
               "or auto (the first of vllm, sglang, trtllm with a profile for the GPU, a measured one before a "
               "transferred one; roofline where none has)")


# What the tables and --explain print outside ASCII, as ASCII, for a stdout that cannot encode them
ASCII_PUNCTUATION = str.maketrans({"·": "-", "—": "-", "–": "-", "×": "x", "≤": "<=", "≥": ">=", "…": "...",
                                   "→": "->", "←": "<-", "≈": "~", "µ": "u", "’": "'", "‘": "'", "“": '"',
                                   "”": '"', "²": "^2", "³": "^3", "√": "sqrt", "Σ": "sum", "∞": "inf",
                                   "±": "+/-", "÷": "/", "−": "-", "⌈": "ceil(", "⌉": ")", "\u00a0": " "})


class StdoutError(Exception):
    """Standard output cannot take what a command prints (a full device, a closed descriptor)."""


class GuardedStdout:
    """sys.stdout for one command: a write or flush that fails with an OSError other than a broken pipe (which
    stays as it is: exit 1, nothing said, as a reader that stopped reading expects) becomes a StdoutError, which
    the CLI prints as one line; with stdout closed (`>&-`, sys.stdout None) the first write does."""

    def __init__(self, stream):
        self._stream = stream
        self._failed: str | None = None  # sticky: a probe that swallows the first error (click's) cannot hide it

    def _fail(self, e: OSError | None):
        import os

        if self._failed:
            raise StdoutError(self._failed) from None

        if self._stream is not None:  # the unwritten buffer goes to /dev/null, not to a second failure at exit
            try:
                fd = self._stream.fileno()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
            except (OSError, ValueError, AttributeError):
                pass
        if e is None:
            self._failed = "stdout is closed: nothing to print the output to (redirect it to a file)"
        else:
            self._failed = f"cannot write to stdout ({ {28: 'the device is full'}.get(e.errno, e.strerror or str(e))})"
        raise StdoutError(self._failed) from None

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._failed or self._stream is None:
            self._fail(None)
        if not text:
            return 0
        try:
            try:
                return self._stream.write(text)
            except UnicodeEncodeError:  # PYTHONIOENCODING=ascii, a latin-1 terminal: ASCII punctuation (audit O2)
                encoding = getattr(self._stream, "encoding", None) or "ascii"
                plain = text.translate(ASCII_PUNCTUATION).encode(encoding, "replace").decode(encoding)
                return self._stream.write(plain)
        except BrokenPipeError:
            raise
        except OSError as e:
            self._fail(e)

    def flush(self):
        if self._failed:
            self._fail(None)
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            self._fail(e)

    def isatty(self):
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name):
        if self._stream is None or name == "buffer":  # no buffer: click's echo writes through this wrapper too
            raise AttributeError(name)
        return getattr(self._stream, name)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def save_figure(fig, path, flag: str) -> None:
    """Save a matplotlib figure; a write failure is a one-line error naming the flag."""
    from kvcalc.errors import KvcalcError

    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise KvcalcError(f"{flag}: cannot write {path} ({e.strerror or e})") from None


def fmt_number(v, spec: str = ",") -> str:
    """A number for a table: 'unbounded' for +inf, '-unbounded' for -inf, '—' for NaN (undefined), never inf or
    nan (audit N1); else format(v, spec)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "—" if math.isnan(v) else ("unbounded" if v > 0 else "-unbounded")
    return format(v, spec)


def write_json(obj) -> None:
    json.dump(json_safe(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def write_csv(rows: list[dict]) -> None:
    """CSV rows as serialize.csv_text writes them (the web's format=csv too)."""
    from kvcalc.serialize import csv_text

    sys.stdout.write(csv_text(rows))


def is_duration_ms(column: str) -> bool:
    """A column of milliseconds: 'ttft_ms', 'TTFT ms', 'ms/step'."""
    return column.endswith(("_ms", " ms")) or column in ("ms", "ms/step")


def _cell(v, column: str = "") -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return fmt_number(v)
    if is_duration_ms(column) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 9_999.95:
        from kvcalc.units import fmt_ms

        return fmt_ms(v)  # seconds from 10 s on, with the unit written: '56.9 s'
    if isinstance(v, float):  # three significant digits, or whole numbers from 1,000; halves round up
        return f"{_half_up(v, 3):,.3g}" if abs(v) < 1000 else f"{_half_up(v, 0, whole=True):,.0f}"
    return "" if v is None else str(v)


def _half_up(v: float, digits: int, whole: bool = False) -> float:
    """v rounded half away from zero, to `digits` significant digits (or to a whole number): Python's own rounding
    is half to even, which printed one GPU's 242.5 TFLOPS as 242 and another's 989.5 as 990 (audit 28, H5)."""
    from decimal import ROUND_HALF_UP, Decimal

    d = Decimal(repr(float(v)))  # repr: the shortest digits that read back as v (numpy floats included)
    exponent = 0 if whole else d.adjusted() - digits + 1
    return float(d.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP))


def compact_table(title: str | None = None, **kwargs):
    """A rich table that fits 80 columns: a rule under the header instead of a full grid, one space of padding."""
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, **kwargs)


def _vertical(console, title, headers: list[str], rows: list[list], keyed: bool) -> None:
    """A table as lines of 'column: value' (keyed: 'first cell: the others'), a blank line between rows: what a
    terminal too narrow for the table gets instead of cells cut to '…' or numbers folded mid-digit (audit O4).
    Long lines wrap at the terminal's width; nothing is cut."""
    from rich.text import Text

    def text(cell):
        return Text.from_markup(cell) if isinstance(cell, str) else cell

    if title:
        console.print(text(title))
    for row in rows:
        if keyed:
            parts = [text(row[0]), ": "]
            for n, cell in enumerate(c for c in row[1:] if str(c)):
                parts += [" ", text(cell)] if n else [text(cell)]
            console.print(Text.assemble(*parts))
        else:
            for header, cell in zip(headers, row):
                console.print(Text.assemble(text(header), ": ", text(cell)))
            console.print()


def _layout_at_width(console, table) -> list:
    """The table's lines laid out at exactly the console's width on an unbounded line, title included: what rich
    prints for a table wider than the console, and where what rich would crop (a title cut mid-word, a last column's
    header lost, so two columns read 'tok/s') shows as a line longer than the console."""
    width = table.width
    table.width = console.width
    try:
        return console.render_lines(table, console.options.update(width=10_000), pad=False)
    finally:
        table.width = width


def table_fits(console, table) -> bool:
    """Whether rich lays the table out within the console's width without cropping."""
    from rich.segment import Segment

    lines = _layout_at_width(console, table)
    return max((Segment.get_line_length(line) for line in lines), default=0) <= console.width


def print_table(table, console=None) -> None:
    """Print a rich table, or, where the terminal is narrower than its narrowest layout without cutting a word,
    the same cells as 'column: value' lines (audit O4)."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.segment import Segment, Segments

    console = console or Console()
    columns = list(table.columns)

    def longest_word(cell) -> int:
        return Measurement.get(console, console.options, cell).minimum if str(cell) else 0

    words = sum(max([longest_word(c) for c in col.cells] + [longest_word(col.header) if table.show_header else 0])
                for col in columns)
    edges = 3 * len(columns) + 1 if table.box else 2 * len(columns)  # borders and one space either side
    if words + edges <= console.width:
        lines = _layout_at_width(console, table)
        if max((Segment.get_line_length(line) for line in lines), default=0) <= console.width:
            if (table.width is not None or any(c.ratio for c in table.columns)
                    or Measurement.get(console, console.options, table).maximum < console.width):
                return console.print(table)  # a set width, ratio columns, or narrower: rich lays it out its own way
            # as wide as the console: the lines just laid out are what console.print(table) would lay out again
            return console.print(Segments([seg for line in lines for seg in (*line, Segment.line())]), end="")
    cells = [list(c.cells) for c in columns]
    rows = [[col[r] for col in cells] for r in range(table.row_count)]
    _vertical(console, table.title, [str(c.header) for c in columns], rows, keyed=not table.show_header)


def print_note(text: str) -> None:
    """A line of prose under a table, wrapped at the terminal's width between words (no markup read in it)."""
    from rich.console import Console

    Console(highlight=False).print(text, markup=False)


def print_rows(rows: list[dict], title: str, format: Format) -> None:
    """Rows of one shape as JSON, CSV or a compact rich table (text folds rather than being cut off)."""
    if format is Format.json:
        return write_json(rows)
    if format is Format.csv:
        return write_csv(rows)
    from rich.console import Console

    console = Console()
    if not rows:  # the fifth audit: a ledger whose every row is excluded was an IndexError here
        console.print(f"{title}: no rows", markup=False, highlight=False)
        return None
    t = compact_table(title)
    def durations(row: dict) -> bool:  # a row named after a time in ms (serve --simulate's 'e2e_ms' row)
        first = next(iter(row.values()), None)
        return isinstance(first, str) and is_duration_ms(first)

    cells = [[_cell(v, "ms" if durations(r) and i else k) for i, (k, v) in enumerate(r.items())] for r in rows]
    columns = list(rows[0])
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    # a column of numbers with gaps (a GPU with no fp8 peak) is still a number column: the first row may be a gap
    numeric = [any(number(r.get(c)) for r in rows) and all(number(r.get(c)) or r.get(c) is None for r in rows)
               for c in columns]
    natural = [max([len(row[i]) for row in cells] + [len(w) for w in col.split()]) for i, col in enumerate(columns)]
    available = console.width - 2 * len(columns) - 4
    widths = fit_widths(natural, numeric, available)
    if sum(widths) > available or any(w < n for w, n, num in zip(widths, natural, numeric) if num):
        return _vertical(console, title, columns, cells, keyed=False)  # too narrow: no number folded or dropped
    for col, width, is_number in zip(columns, widths, numeric):
        t.add_column(col, min_width=width, overflow="fold", justify="right" if is_number else "left")
    for row in cells:
        t.add_row(*row)
    if not table_fits(console, t):
        return _vertical(console, title, columns, cells, keyed=False)
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


def check_frontier_plot(plot, output_len: int | None) -> None:
    """--plot of a serving frontier (serve, plan): a writable .png, .svg or .pdf, and an x axis that exists: tokens/s
    per user, 1 / TPOT, which --output-len 1 leaves undefined (the tenth audit, S4, and the thirty-fourth, API 3: an
    empty chart, exit 0)."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.files import check_writable

    check_writable(plot, "--plot", (".png", ".svg", ".pdf"))
    if output_len == 1:
        raise KvcalcError("--plot: the frontier's x axis is tokens/s per user, 1 / TPOT, which --output-len 1 "
                          "leaves undefined (no token follows the first); leave out --plot")
