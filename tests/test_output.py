"""Outputs people can trust at a glance (issue 22, items 5 and 6): a schema_version in every JSON document and a
schema the output is checked against, integer byte counts, 'per GPU' and 'total' labels under parallelism, seconds
past 10 s, tables that fit 80 and 120 columns without losing a character, a roofline chart whose labels do not
collide, and a public Python API with explicit signatures that mypy checks."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.cli.output import SCHEMA_VERSION, json_safe
from kvcalc.units import fmt_ms, integer_bytes, is_byte_count, round_half_up

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schema"
runner = CliRunner()


def run(*args, columns: int | None = None):
    r = runner.invoke(app, list(args), env={"COLUMNS": str(columns)} if columns else None)
    assert r.exit_code == 0, (args, r.stdout, r.stderr)
    return r


# (schema file, command line): every command that prints JSON, in the shapes the schemas describe
JSON_COMMANDS = [
    ("estimate", ["estimate", "-m", "llama-3.1-8b"]),
    ("estimate", ["estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--speculate", "mtp=1", "-b", "16"]),
    ("estimate", ["estimate", "-m", "mixtral-8x7b", "--tp", "2", "--pp", "2", "-c", "100000"]),
    ("estimate", ["estimate", "-m", "qwen3-30b-a3b", "--tp", "2", "--ep", "4", "--kv-dtype", "nvfp4"]),
    ("compare", ["compare", "-m", "llama-3.1-8b"]),
    ("compare", ["compare", "-m", "qwen3-32b", "--speculate", "eagle,k=4"]),
    ("capacity", ["capacity", "-m", "llama-3.1-8b", "-c", "8192", "--price-per-gpu-hour", "2",
                  "--target-tokens-per-s", "1000"]),
    ("capacity", ["capacity", "-m", "llama-3.1-70b", "-c", "32768", "--engine", "vllm"]),
    ("serve", ["serve", "-m", "llama-3.1-8b", "--input-len", "2000", "--output-len", "200", "--concurrency", "8"]),
    ("serve", ["serve", "-m", "llama-3.1-8b", "--input-len", "2000", "--output-len", "200", "--request-rate", "3"]),
    ("serve-frontier", ["serve", "-m", "llama-3.1-70b", "--input-len", "1000", "--output-len", "500",
                        "--concurrency", "8,32", "--tp", "2,4"]),
    ("serve-simulate", ["serve", "-m", "llama-3.1-8b", "--input-len", "500", "--output-len", "100", "--concurrency",
                        "4", "--simulate", "--num-prompts", "50"]),
    # the keys a run prints only in some shapes, each in its schema (the fortieth audit, outputs 4)
    ("serve", ["serve", "-m", "llama-3.1-8b", "--input-len", "500", "--output-len", "1", "-n", "max"]),
    ("serve-simulate", ["serve", "-m", "llama-3.1-70b", "--input-len", "500", "--output-len", "100", "--request-rate",
                        "2", "--simulate", "--num-prompts", "40", "--tp", "4", "--disaggregate", "4:4",
                        "--max-ttft-ms", "500", "--price-per-gpu-hour", "2"]),
    ("serve-simulate", ["serve", "-m", "deepseek-v3", "-g", "h200", "--input-len", "500", "--output-len", "100",
                        "--concurrency", "16", "--simulate", "--num-prompts", "40", "--tp", "1", "--ep", "8"]),
    ("capacity", ["capacity", "-m", "qwen3-next-80b-a3b", "-g", "h200", "-c", "32768", "--engine", "sglang", "--tp",
                  "4"]),
    ("plan", ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "100", "--request-rate", "2"]),
    ("plan", ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "100", "--concurrency", "16", "--emit", "vllm"]),
    ("show-gpu", ["show", "gpu", "h100"]),
    ("show-gpu", ["show", "gpu", "mi300x"]),
    ("show-model", ["show", "model", "deepseek-v3"]),
    ("gpus", ["gpus"]),
    ("models", ["models"]),
    ("validate-published", ["validate", "--published", "validation/published/measurements.csv"]),
    ("validate-engine-memory", ["validate", "--engine-memory", "validation/engine-memory/vllm.csv"]),
    ("validate-serve", ["validate", "--serve", "validation/serve/trtllm-perf-overview.csv"]),
]


def json_of(args):
    return json.loads(run(*args, "-f", "json").stdout)


def nulls_without_a_note(doc, path=""):
    """Paths of null values with no sibling KEY_note (the rule every JSON document keeps)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if v is None and not k.endswith("_note") and not doc.get(f"{k}_note"):
                yield f"{path}.{k}"
            else:
                yield from nulls_without_a_note(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for n, v in enumerate(doc):
            yield from nulls_without_a_note(v, f"{path}[{n}]")


def undocumented_keys(schema: dict, doc, path: str = "$"):
    """Paths of keys the document carries and its schema does not describe, at any depth (the fortieth audit, outputs
    4: serve's max_running, plan's max_num_seqs_per_instance and a dozen more had been printed on every run with no
    word in any schema, which leave additionalProperties open for consumers). A map keyed by data (additionalProperties
    a schema) describes every key; an object with neither properties nor such a map is not checked."""
    if isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for n, row in enumerate(doc):
            yield from undocumented_keys(schema["items"], row, f"{path}[{n}]")
    elif isinstance(doc, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        for k, v in doc.items():
            if props is not None and k in props:
                yield from undocumented_keys(props[k], v, f"{path}.{k}")
            elif isinstance(extra, dict):
                yield from undocumented_keys(extra, v, f"{path}.{k}")
            elif props is not None:
                yield f"{path}.{k}"


def byte_counts(doc, path=""):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if is_byte_count(k) and not isinstance(v, (dict, list)):
                yield f"{path}.{k}", v
            yield from byte_counts(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for n, v in enumerate(doc):
            yield from byte_counts(v, f"{path}[{n}]")


@pytest.mark.parametrize("schema,args", JSON_COMMANDS, ids=[" ".join(a[:3]) for _, a in JSON_COMMANDS])
def test_every_json_document_is_versioned_and_matches_its_documented_schema(schema, args, monkeypatch):
    jsonschema = pytest.importorskip("jsonschema")  # in the dev extra: CI has it
    monkeypatch.chdir(ROOT)
    doc = json_of(args)
    rows = doc if isinstance(doc, list) else [doc]
    assert rows and all(list(row)[0] == "schema_version" and row["schema_version"] == 1 for row in rows)
    described = json.loads((SCHEMAS / f"{schema}.json").read_text())
    jsonschema.Draft202012Validator(described).validate(doc)
    assert not list(undocumented_keys(described, doc))  # every key it prints is in its schema
    assert not list(nulls_without_a_note(doc))
    counts = list(byte_counts(doc))
    assert all(isinstance(v, int) and not isinstance(v, bool) for _, v in counts if v is not None), counts


def test_the_schema_files_are_valid_json_schemas_and_pin_the_version():
    jsonschema = pytest.importorskip("jsonschema")
    files = sorted(SCHEMAS.glob("*.json"))
    assert {f.stem for f in files} == {s for s, _ in JSON_COMMANDS}
    for f in files:
        schema = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        row = schema["items"] if schema["type"] == "array" else schema
        assert row["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
        assert "schema_version" in row["required"]


def test_a_schema_rejects_a_fractional_byte_count_and_a_renamed_key():
    """The schema is a real check: the newcomer review's float capacity and the README's old key names fail it."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads((SCHEMAS / "estimate.json").read_text()))
    doc = json_of(["estimate", "-m", "llama-3.1-8b"])
    assert validator.is_valid(doc)
    bad = json.loads(json.dumps(doc))
    bad["memory"]["capacity_bytes"] = 85061827297.28
    assert not validator.is_valid(bad)
    renamed = json.loads(json.dumps(doc))
    op = renamed["decode"]["operators"][0]
    op["class"], op["intensity"] = op.pop("op_class"), op.pop("arithmetic_intensity")
    assert not validator.is_valid(renamed)
    unversioned = {k: v for k, v in doc.items() if k != "schema_version"}
    assert not validator.is_valid(unversioned)


def test_list_outputs_stay_lists_with_the_version_in_each_row():
    rows = json_of(["compare", "-m", "llama-3.1-8b", "--attn", "mha,mqa"])
    assert isinstance(rows, list) and [r["variant"] for r in rows][:1] == ["gqa (own)"]
    assert all(r["schema_version"] == SCHEMA_VERSION for r in rows)
    assert json_safe([1, "a"]) == [1, "a"]  # rows that are not objects are left alone


def test_byte_counts_are_integers_rounded_half_up():
    # h100-sxm: visible_memory_GiB = 79.22 (hardware_specs/h100-sxm.toml); 79.22 * 2**30 = 85,061,827,297.28 B, and
    # 0.9 of it 76,555,644,567.552 B (the newcomer review's fractional floats), printed as whole bytes.
    doc = json_of(["estimate", "-m", "llama-3.1-8b"])
    assert doc["memory"]["capacity_bytes"] == 85_061_827_297
    assert doc["memory"]["usable_bytes"] == 76_555_644_568  # .552 rounds up
    # Llama 3.1 8B: 2 (K, V) * 8 KV heads * 128 head dim * 2 B (bf16) * 32 layers = 131,072 B per token, an int
    assert doc["kv_cache"]["bytes_per_token"] == 131_072 and type(doc["kv_cache"]["bytes_per_token"]) is int
    assert doc["inputs"]["memory_utilization"] == 0.9  # not a byte count: untouched
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, -2.5)] == [1, 2, 3, 2, -3]  # round() gives 0, 2, 2
    ratio = {"kv_bytes_per_token_vs_own": 1 / 32, "bytes_per_element": 0.5, "kv_cache_bytes": 0.5}
    assert integer_bytes(ratio) == {"kv_bytes_per_token_vs_own": 1 / 32, "bytes_per_element": 0.5, "kv_cache_bytes": 1}
    # the Python API's JSON (and so --format csv, which flattens it) has the same integers
    e = kvcalc.estimate("llama-3.1-8b")
    assert e.to_json_dict()["memory"]["capacity_bytes"] == 85_061_827_297
    assert e.memory.capacity_bytes == pytest.approx(79.22 * 2**30)  # the model keeps the exact value


@given(st.floats(min_value=-1e18, max_value=1e18, allow_nan=False), st.integers(min_value=0, max_value=10**15))
def test_rounding_half_up_is_within_half_a_byte_and_takes_halves_up(x, k):
    n = round_half_up(x)
    assert isinstance(n, int) and abs(n - x) <= 0.5 + abs(x) * 1e-15
    assert round_half_up(k + 0.5) == k + 1 and round_half_up(float(k)) == k


def test_durations_switch_to_seconds_at_ten_seconds():
    # the newcomer review's 'Prefill 56,918.5 ms' and '2,736.1 ms'
    assert fmt_ms(56_918.5) == "56.9 s"
    assert fmt_ms(2_736.1) == "2,736.1 ms"
    assert fmt_ms(8.41234) == "8.412 ms"
    assert fmt_ms(9_999.96) == "10.0 s"  # never '10,000.0 ms'
    assert fmt_ms(123_456.0) == "123.5 s"


def test_estimate_table_prints_a_long_prefill_in_seconds():
    # llama-3.1-70b on one H100 prefilling 8 x 32,768 tokens: ~2 * 70e9 * 262,144 FLOP = 3.7e16 FLOP at under 989.5
    # TFLOP/s is over 37 s, so the row reads in seconds
    out = run("estimate", "-m", "llama-3.1-70b", "-b", "8", "-c", "32768", "--engine", "roofline", columns=120).stdout
    prefill = next(line for line in out.splitlines() if line.strip("│ ").startswith("Prefill "))
    seconds = float(re.search(r"([\d,.]+) s\b", prefill).group(1).replace(",", ""))
    assert seconds > 37 and " ms" not in prefill.split("│")[2]


def rows_of(out: str) -> dict[str, str]:
    return {cells[0]: "│".join(cells[1:]) for line in out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) > 1}


def test_estimate_under_tensor_parallel_says_which_rows_are_per_gpu_and_which_total():
    # Llama 3.1 8B: 8,030,261,248 parameters (its safetensors index) * 2 B = 16,060,522,496 B = 14.96 GiB over the
    # two GPUs, 7.48 GiB each; KV 8 sequences * 32,768 tokens * 131,072 B = 32 GiB, 16 GiB per GPU
    rows = rows_of(run("estimate", "-m", "llama-3.1-8b", "--tp", "2", "-b", "8", "-c", "32768", columns=200).stdout)
    # the checkpoint's one copy, not a sum over the GPUs (the fortieth audit, outputs 1: labelled "total")
    assert rows["Weights, one copy"].startswith("14.96 GiB") and "7.48 GiB per GPU" in rows["Weights, one copy"]
    assert rows["KV cache (batch), total"].startswith("32.00 GiB")
    assert "16.00 GiB per GPU" in rows["KV cache (batch), total"]
    assert "Memory required per GPU" in rows
    single = rows_of(run("estimate", "-m", "llama-3.1-8b", "-b", "8", "-c", "32768", columns=200).stdout)
    assert {"Weights", "KV cache (batch)", "Memory required"} <= set(single)
    assert not any("total" in k or "per GPU" in k or "copy" in k for k in single)


# (command line) for the 80- and 120-column checks: every command that prints a table
TABLE_COMMANDS = [
    ["estimate", "-m", "llama-3.1-8b", "--tp", "2", "-b", "8", "-c", "32768"],
    ["estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--speculate", "mtp=1", "--explain"],
    ["compare", "-m", "llama-3.1-8b", "-b", "32", "-c", "32768"],
    ["capacity", "-m", "llama-3.1-70b", "-c", "32768", "--engine", "vllm", "--price-per-gpu-hour", "2"],
    ["serve", "-m", "llama-3.1-8b", "--input-len", "2000", "--output-len", "200", "--concurrency", "8"],
    ["serve", "-m", "llama-3.1-70b", "--input-len", "1000", "--output-len", "500", "--concurrency", "8,32",
     "--tp", "2,4"],
    ["serve", "-m", "llama-3.1-8b", "--input-len", "500", "--output-len", "100", "--concurrency", "4", "--simulate",
     "--num-prompts", "50"],
    ["plan", "-m", "llama-3.1-8b", "-i", "1000", "-o", "100", "--request-rate", "2"],
    ["show", "gpu", "h100"],
    ["show", "model", "deepseek-v3"],
    ["gpus"],
    ["models"],
    ["validate", "--published", "validation/published/measurements.csv"],
    ["validate", "--engine-memory", "validation/engine-memory/vllm.csv"],
    ["validate", "--serve", "validation/serve/trtllm-perf-overview.csv"],
]
BOX = re.compile(r"[\s\u2500-\u257f]")  # spaces and box drawing: what a narrower layout may add or drop


def header_lines(out: str) -> list[str]:
    """The line above each rule under a table's header ('───' of a compact table, '┡━━╇━━┩' of a boxed one)."""
    lines = out.splitlines()
    return [lines[n - 1] for n, line in enumerate(lines)
            if n and len(line.strip()) >= 3 and set(line.strip()) <= set("─━┡╇┩")]


@pytest.mark.parametrize("args", TABLE_COMMANDS, ids=[" ".join(a[:3]) for a in TABLE_COMMANDS])
def test_tables_fit_80_and_120_columns_with_nothing_cut(args, monkeypatch):
    """At 80 and 120 columns no line is wider than the terminal, no character of the wide layout's text is lost
    (rich crops a table it cannot fit: a title cut mid-word, a last header gone), nothing is elided with '…', and
    no table has two columns of the same name (the review's two 'tok/s' headers)."""
    monkeypatch.chdir(ROOT)
    wide = Counter(BOX.sub("", run(*args, columns=400).stdout))
    for columns in (80, 120):
        out = run(*args, columns=columns).stdout
        assert max(len(line) for line in out.splitlines()) <= columns, (columns, out)
        lost = wide - Counter(BOX.sub("", out))
        assert not lost, (columns, lost, out)
        assert "…" not in out
        for header in header_lines(out):
            names = [n for n in re.split(r"\s{2,}|[│┃]", header.strip(" │┃")) if n.strip()]
            assert len(names) == len(set(names)), (columns, header)


def test_compare_at_80_columns_keeps_its_whole_title_and_both_ratio_headers():
    out = run("compare", "-m", "llama-3.1-8b", "-b", "32", "-c", "32768", columns=80).stdout
    text = " ".join(out.split())
    assert "max b at context 32,768; x = relative to its own attention; * does not fit" in text
    # narrower than the table: 'column: value' lines (audit O4), else a header with both names
    assert "tok/s x: 1.00" in out or any("tok/s x" in h for h in header_lines(out)), out


def test_roofline_chart_has_a_marker_per_variant_a_colour_per_gpu_and_labels_that_do_not_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from kvcalc.report.plot import roofline

    fig = roofline(["h100-sxm", "a100-sxm-80gb"], "llama-3.1-8b", attn=[None, "mha", "mqa", "mla"],
                   batch=[1, 8, 64, 256])
    ax = fig.axes[0]
    points = {line.get_gid(): line for line in ax.get_lines() if (line.get_gid() or "").startswith("point:")}
    marker = {}
    colour = {}
    for gid, line in points.items():
        _, gpu, variant, _, _ = gid.split(":")
        marker.setdefault(variant, set()).add(line.get_marker())
        colour.setdefault(gpu, set()).add(line.get_color())
    assert set(marker) == {"gqa", "mha", "mqa", "mla"}
    assert all(len(m) == 1 for m in marker.values()) and len(set.union(*marker.values())) == 4
    assert all(len(c) == 1 for c in colour.values()) and len(set.union(*colour.values())) == 2
    renderer = FigureCanvasAgg(fig).get_renderer() if not isinstance(fig.canvas, FigureCanvasAgg) else \
        fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) >= 4
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[:i] if a.overlaps(b)]
    assert not overlaps
    inside = ax.get_window_extent(renderer)
    assert all(inside.x0 - 1 <= b.x0 and b.x1 <= inside.x1 + 1 and inside.y0 - 1 <= b.y0 and b.y1 <= inside.y1 + 1
               for b in boxes)


def test_estimate_has_an_explicit_keyword_signature():
    from kvcalc.estimator import estimate_with_specs

    ours, theirs = inspect.signature(kvcalc.estimate), inspect.signature(estimate_with_specs)
    assert not any(p.kind is p.VAR_KEYWORD for p in ours.parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == \
        [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
    assert ours.parameters["batch"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match="btach"):
        kvcalc.estimate("llama-3.1-8b", btach=8)
    assert kvcalc.estimate("llama-3.1-8b", batch=8).inputs.batch == 8


@pytest.mark.slow
def test_mypy_passes_on_the_public_api_and_sees_its_signatures(tmp_path):
    """mypy as pyproject.toml's [tool.mypy] configures it (kvcalc/__init__.py and the modules checked so far), and a
    user's script: the API's types reach it (an Estimate, not Any), and a misspelt keyword is an error."""
    pytest.importorskip("mypy")  # in the dev extra: CI has it
    cache = f"--cache-dir={tmp_path / 'cache'}"
    r = subprocess.run([sys.executable, "-m", "mypy", cache], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    script = tmp_path / "use_kvcalc.py"
    script.write_text('import kvcalc\n\ne = kvcalc.estimate("llama-3-8b", batch=8)\nreveal_type(e)\n'
                      'reveal_type(e.decode.ms)\nkvcalc.estimate("llama-3-8b", btach=8)\n')
    r = subprocess.run([sys.executable, "-m", "mypy", cache, "--follow-imports=silent",
                        "--config-file=", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert 'Revealed type is "kvcalc.estimator.Estimate"' in r.stdout, r.stdout
    assert re.search(r'Revealed type is "(builtins\.)?float"', r.stdout)
    assert 'Unexpected keyword argument "btach"' in r.stdout
    assert r.stdout.count("error:") == 1, r.stdout


def test_mypy_checks_every_module_the_public_api_exports_from():
    """Issue 22: a mypy-clean public API. Every module a name in kvcalc.__all__ comes from (kvcalc/__init__.py's
    lazy table), and the spec models load_model / load_gpu return, is in [tool.mypy] files, which the test above
    runs: a new public function in an unchecked module fails here."""
    import importlib.util
    import tomllib

    checked = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    modules = {module for module, _ in kvcalc._API.values()} | {"kvcalc", "kvcalc.specs.model", "kvcalc.specs.hardware"}
    exported = {Path(importlib.util.find_spec(m).origin).relative_to(ROOT).as_posix() for m in modules}
    assert "kvcalc/serving/simulate.py" in exported and "kvcalc/specs/catalog.py" in exported
    assert exported - checked == set()
