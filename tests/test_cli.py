"""The CLI through typer's CliRunner: output, formats and bad input (one line, exit code 2, no traceback)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_estimate_prints_the_table_for_the_readme_example():
    r = run("estimate", "--model", "chatglm2-6b", "--attn", "gqa8")
    assert r.exit_code == 0, r.stderr
    # chatglm2-6b rewritten to 8 KV groups: 2 * 8 * 128 * 28 layers * 2 B = 114,688 B per token.
    assert "114,688 B" in r.stdout
    for label in ("KV cache per token", "Weights", "Memory required", "Decode step", "Decode bound", "Prefill"):
        assert label in r.stdout


JSON_KEYS = [
    "kv_cache.bytes_per_token", "kv_cache.bytes_per_token_per_layer", "kv_cache.bytes", "weights.params",
    "weights.active_params", "weights.bytes", "memory.required_bytes", "memory.capacity_bytes", "memory.fits",
    "decode.step_ms", "decode.speed_of_light_ms", "decode.tokens_per_s", "decode.bound",
    "decode.arithmetic_intensity", "prefill.ms", "prefill.speed_of_light_ms", "prefill.bound",
]


def test_json_has_the_documented_keys_with_real_values():
    r = run("estimate", "-m", "llama-2-7b", "--batch", "2", "--context", "1000", "-f", "json")
    out = json.loads(r.stdout)

    def get(dotted):
        node = out
        for part in dotted.split("."):
            node = node[part]
        return node

    for key in JSON_KEYS:
        get(key)
    # llama-2-7b: 2 * 32 * 128 * 32 * 2 B = 524,288 B per token; 2 sequences x 1000 tokens.
    assert get("kv_cache.bytes_per_token") == 524_288
    assert get("kv_cache.bytes") == 2 * 1000 * 524_288
    # the H100 SXM as torch reports it (vLLM PRs #10511, #12126), in whole bytes rounded half up (docs/json-schema.md)
    assert get("memory.capacity_bytes") == int(79.22 * 2**30 + 0.5)
    assert get("decode.bound") == "memory" and get("memory.fits") is True


def test_csv_is_one_header_and_one_row():
    r = run("estimate", "-m", "llama-2-7b", "-f", "csv")
    header, row = csv.reader(r.stdout.strip().splitlines())  # the profile text holds quoted commas
    assert dict(zip(header, row))["kv_cache.bytes_per_token"] == "524288"  # byte counts are integers


def test_explain_substitutes_the_models_values():
    r = run("estimate", "-m", "deepseek-v2", "--explain", "--context", "100")
    assert r.exit_code == 0
    assert "(d_c + d_r) * b_kv" in r.stdout and "(512 + 64) * 2 B" in r.stdout
    assert "60 * 1,152 B" in r.stdout


def test_a_workload_that_does_not_fit_is_reported_with_hypothetical_latency():
    r = run("estimate", "-m", "llama-3-70b", "--gpu", "h100")
    assert r.exit_code == 0
    assert "does not fit" in r.stdout and "hypothetical" in r.stdout
    assert json.loads(run("estimate", "-m", "llama-3-70b", "-f", "json").stdout)["decode"]["hypothetical"] is True


def test_a_context_beyond_max_positions_is_a_warning_not_a_failure():
    r = run("estimate", "-m", "llama-2-7b", "--context", "8192")
    assert r.exit_code == 0
    assert "context 8,192 exceeds llama-2-7b's max_position_embeddings 4,096" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "chatglm3-6b"], "--model: unknown model 'chatglm3-6b'; closest: chatglm2-6b"),
        (["--model", "llama-2-7b", "--gpu", "h10"], "--gpu: unknown gpu 'h10'; closest: h100"),
        (["--model", "llama-2-7b", "--batch", "0"], "--batch: expected a whole number from 1 to 10,000,000, got 0"),
        (["--model", "llama-2-7b", "--context", "-1"], "--context: expected a whole number from 1 to 1,000,000,000"),
        (["--model", "chatglm2-6b", "--attn", "gqa5"], "--attn: gqa5 needs N to divide the 32 query heads"),
        (["--model", "llama-2-7b", "--kv-dtype", "fp9"], "--kv-dtype: unknown dtype 'fp9'"),
        (["--model", "llama-2-7b", "--weight-dtype", "int3"], "--weight-dtype: unknown dtype 'int3'"),
        (["--model", "llama-2-7b", "--batch", "two"], "Invalid value for '--batch'"),
        (["--model", "llama-2-7b", "--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    r = run("estimate", *args)
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and message in r.stderr
    assert "Traceback" not in r.stderr


def test_a_malformed_spec_file_names_the_file_and_field(tmp_path):
    bad = tmp_path / "bad-gpu.toml"
    bad.write_text('name = "x"\ndisplay_name = "x"\nvendor = "NVIDIA"\nsources = ["s"]\nmemory_GiB = -1\n')
    r = run("estimate", "-m", "llama-2-7b", "--gpu", str(bad))
    assert r.exit_code == 2
    assert f"{bad}: memory_GiB: Input should be greater than or equal to 0.001" in r.stderr


def test_models_gpus_and_show_list_the_catalog_with_sources():
    assert "deepseek-v3" in run("models").stdout
    gpus = json.loads(run("gpus", "-f", "json").stdout)
    assert {"name": "h100-sxm", "bf16_tflops": 989.5}.items() <= next(g for g in gpus if g["name"] == "h100-sxm").items()
    shown = run("show", "model", "chatglm2-6b")
    assert shown.exit_code == 0 and "huggingface.co/THUDM/chatglm2-6b" in shown.stdout
    assert json.loads(run("show", "gpu", "h100", "-f", "json").stdout)["memory_bandwidth_GBps"] == 3350


def test_python_dash_m_runs_the_cli_without_heavy_imports():
    probe = (
        "import sys, runpy; sys.argv = ['kvcalc', 'estimate', '--model', 'chatglm2-6b', '-f', 'json']\n"
        "try:\n    runpy.run_module('kvcalc', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\n"
        "print('HEAVY', [m for m in ('pandas', 'matplotlib', 'torch', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("HEAVY []")


def _strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_compare_json_is_strict_json_with_null_and_a_reason():
    # Issue: gpt-3-175b printed NaN: its own attention fits no sequence at 4096, so ratios to it are 0 / 0.
    rows = _strict_json(runner.invoke(app, ["compare", "-m", "gpt-3-175b", "-f", "json"]).stdout)
    nulls = [(k, row) for row in rows for k, v in row.items() if v is None and not k.endswith("_note")]
    assert nulls and all(row[f"{k}_note"] for k, row in nulls)


def test_unbounded_context_is_capped_at_max_positions_with_a_warning():
    # Issue: mistral-7b printed Infinity: its only growing layers are 4096-token windows, so memory never binds;
    # the longest context is its max_position_embeddings, 32,768 (reference-figures.md), with a warning.
    r = runner.invoke(app, ["compare", "-m", "mistral-7b", "-f", "json"])
    rows = _strict_json(r.stdout)
    assert all(row["max_context_at_batch"] == 32768 for row in rows)
    assert "than mistral-7b's max_position_embeddings 32,768" in r.stderr and r.stderr.count("max_position_embeddings") == 1


def test_hf_assumptions_are_in_the_json_warnings_and_printed_once(tmp_path):
    # Issue: assumptions an unknown model_type needed reached stderr but not the JSON warnings[].
    config = json.loads((Path(__file__).parent / "fixtures" / "hf" / "Meta-Llama-3-8B" / "config.json").read_text())
    config["model_type"] = "mystery"
    (tmp_path / "config.json").write_text(json.dumps(config))
    r = runner.invoke(app, ["estimate", "-m", str(tmp_path / "config.json"), "-f", "json"])
    warnings = json.loads(r.stdout)["warnings"]
    assert any("'mystery' is not a known family" in w for w in warnings)
    printed = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert printed == [f"warning: {w}" for w in warnings]


def test_version():
    from kvcalc import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"kvcalc {__version__}"


def test_every_option_of_every_command_has_help_text():
    import typer.main

    def commands(group, prefix=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*prefix, name))
            else:
                yield (*prefix, name), cmd

    missing = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in commands(typer.main.get_command(app))
               for p in cmd.params if p.param_type_name == "option" and not (p.help or "").strip()]
    assert not missing

