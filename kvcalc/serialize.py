"""The JSON and CSV a command prints, as text: `kvcalc CMD --format json|csv` writes it to stdout (kvcalc/cli/output.py)
and the web app's /api/CMD answers it (kvcalc/web/), byte for byte the same. No typer, no rich: both import it. At the
package root, below every room, so that estimator.Estimate.to_json_dict writes the same document without importing
from report/ (STYLE.md's layout: arrows point down)."""

from __future__ import annotations

import csv
import io
import json
import math


def flatten(d: dict, prefix: str = "", lists: bool = False) -> dict:
    """Dotted keys for scalar leaves; nested breakdowns and lists are left to the JSON output, except, with lists, a
    list of plain values, which becomes one value joined by '; ' (a CSV cell: warnings)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + ".", lists))
        elif not isinstance(v, list):
            out[key] = v
        elif lists and not any(isinstance(x, (dict, list)) for x in v):
            out[key] = "; ".join(map(str, v))
    return out


_NO_SPECULATION = "speculation stays faster than plain decoding at every power-of-two batch up to 4096"
_ONE_TOKEN = "undefined: with --output-len 1 no token follows the first"
# Why a field is null where its producer gave no KEY_note of its own (audit N2: every JSON null carries a reason).
NULL_NOTES = {
    "speculative": "not asked: no --speculate",
    "draft_model": "no separate draft model: the method drafts with the model's own heads or layers, or looks the "
                   "tokens up in the request's own (ngram)",
    "breakeven_batch": _NO_SPECULATION,
    "speculative_breakeven_batch": _NO_SPECULATION,
    "engine_memory": "kvcalc's memory rule (--engine vllm, sglang or trtllm budgets memory as that engine does)",
    "binding_pipeline_stage": "no pipeline stages (--pp 1)",
    "cost_per_million_tokens": "not asked: no --price-per-gpu-hour",
    "cost_per_million_output_tokens": "not asked: no --price-per-gpu-hour",
    "gpus_for_target": "not asked: no --target-tokens-per-s",
    "request_rate": "not asked: a fixed concurrency (--request-rate solves for the concurrency instead)",
    "disaggregate": "not asked: prefill and decode share the GPUs (no --disaggregate)",
    "kv_transfer_ms": "no transfer: prefill and decode share the GPUs (no --disaggregate)",
    "tpot_ms": _ONE_TOKEN,
    "tokens_per_s_per_user": _ONE_TOKEN,
    # plan's (the tenth audit, P6: the generic fallback beside sibling notes that said "not asked")
    "cost_per_hour": "not asked: no --price-per-gpu-hour",
    "max_ttft_ms": "not asked: no --max-ttft-ms",
    "max_tpot_ms": "not asked: no --max-tpot-ms",
    "gpu_budget": "not asked: no --gpu-budget",
    "concurrency": "not asked: the load is a --request-rate or a --gpu-budget",
    "speculate": "none: this deployment decodes without speculation",
    "simulated": "not simulated: the closed form judged this row (plan simulates its finalists where the limits are "
                 "at p90 or p99 or the lengths vary)",
    # the fortieth audit, outputs 4: the generic fallback beside keys whose null has one meaning
    "state_slots": "no linear-attention layers: SGLang keeps no pool of whole states",
    "era": "none: the row's release runs the profile's own kernels (no older kernel era, engines/kernel_eras.py), or "
           "the row is not scored",
}


# The version of the JSON every command prints (docs/json-schema.md): it goes up when a key is renamed or removed or
# a value changes its type or unit; adding a key leaves it as it is.
SCHEMA_VERSION = 1


def json_safe(obj):
    """The JSON document a command prints (the web app's /api answers the same): `schema_version` first in an
    object, and in every object row of a list (rows stay rows, so a consumer's `doc[0]["model"]` keeps working);
    byte counts as integers, rounded half up (kvcalc.units.integer_bytes); and no NaN or Infinity: such a value
    becomes null, with a sibling KEY_note saying why."""
    from kvcalc.units import integer_bytes

    doc = integer_bytes(_null_safe(obj))
    if isinstance(doc, dict):
        return {"schema_version": SCHEMA_VERSION, **doc}
    if isinstance(doc, list):
        return [{"schema_version": SCHEMA_VERSION, **row} if isinstance(row, dict) else row for row in doc]
    return doc


def _null_safe(obj):
    """JSON has no NaN or Infinity: such a value becomes null, with a sibling KEY_note saying why (the caller's own
    KEY_note where the dict carries one: it knows the cause); a KEY_note that is itself null is left out."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
                out[f"{k}_note"] = obj.get(f"{k}_note") or (
                    "undefined: 0 / 0 (nothing fits in the reference case)" if math.isnan(v) else "unbounded")
            elif v is None and not k.endswith("_note"):
                out[k] = None
                out[f"{k}_note"] = obj.get(f"{k}_note") or NULL_NOTES.get(k, "not applicable to this run")
            elif v is None:  # a note with nothing to say is left out: a null's own note is placed beside it (the
                continue  # fortieth audit, outputs 4: plan's "replicas_note": null on every row)
            elif k not in out:  # a KEY_note may already be in place
                out[k] = _null_safe(v)
        return out
    if isinstance(obj, list):
        return [_null_safe(v) for v in obj]
    return obj


def _noted_cells(row: dict) -> dict:
    """A flat CSV row with a `KEY_note` beside every empty cell, as _null_safe gives the JSON: the row's own note, else
    the reason for that key (NULL_NOTES, by the last part of a dotted column) or the generic one; none where a
    column's parent carries the reason (capacity's engine_memory.* columns, blank under `engine_memory_note`)."""
    out = {}
    for k, v in row.items():
        if k in out:  # a note already placed beside its cell
            continue
        out[k] = v
        nonfinite = isinstance(v, float) and not math.isfinite(v)
        if (v is not None and not nonfinite) or k.endswith("_note"):
            continue
        covered = any(row.get(f"{k[:i]}_note") for i, c in enumerate(k) if c == ".")
        note = row.get(f"{k}_note") or (None if covered else (
            ("undefined: 0 / 0 (nothing fits in the reference case)" if math.isnan(v) else "unbounded") if nonfinite
            else NULL_NOTES.get(k.rsplit(".", 1)[-1], "not applicable to this run")))
        if note or f"{k}_note" in row:
            out[f"{k}_note"] = note
    return out


def finite_or_blank(v):
    """A CSV cell: a non-finite value is an empty cell (CSV's null), never nan or inf."""
    return "" if isinstance(v, float) and not math.isfinite(v) else v


def json_text(obj) -> str:
    """The JSON document of obj as `--format json` prints it: json_safe's document, indented by 2, with a newline."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"


def csv_text(rows: list[dict], document: bool = True) -> str:
    """Rows as `--format csv` prints them (the CLI and the web's format=csv alike): a header of every row's keys (one
    may carry a note), then the rows: whole byte counts as the JSON gives them (units.integer_bytes), nested objects
    as dotted columns and a list of plain values as one cell joined by '; ' (the seventh audit, V8: a list of
    concurrencies had written 59890629271.552 bytes and Python's repr of the warnings; V13: estimate's CSV had
    dropped its warnings); a non-finite value is an empty cell, never nan. The columns are the rows' own (a
    command that wants the same columns whatever the answer, as capacity does, builds its rows so).

    A command's document (`document`, every --format csv) is versioned and noted as its JSON is: `schema_version` the
    first column, and every empty cell (a null, or a non-finite value) beside a `KEY_note` column with the reason the
    JSON gives (_noted_cells; the fortieth audit, outputs 2 and 5: the CSVs had dropped the notes the JSON
    synthesises, and two of serve's three shapes the version). Not a document: a table of data (sweep's DataFrame),
    written as it is."""
    from kvcalc.units import integer_bytes

    if document:
        rows = [{"schema_version": SCHEMA_VERSION, **row} for row in rows]
    rows = [flatten(row, lists=True) for row in integer_bytes(rows)]
    if document:
        rows = [_noted_cells(row) for row in rows]
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: finite_or_blank(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


