"""Regression tests for what the fresh audit of issue 23 (this version's) found, one per finding, named after it."""

from typer.testing import CliRunner

from kvcalc.cli import app


def test_capacity_weights_row_names_the_engines_layout_where_it_differs():
    """`capacity -m gpt-oss-20b -g a100 -e vllm` printed 'weights per GPU 12.81 GiB' above a KV budget computed from
    the 13.70 GiB vLLM loads (MXFP4 laid out for Marlin on Ampere; the memory ledger's gpt-oss rows check both
    figures); the row now gives both."""
    out = CliRunner().invoke(app, ["capacity", "-m", "gpt-oss-20b", "-g", "a100", "-e", "vllm", "-c", "8192"])
    assert out.exit_code == 0
    text = " ".join(out.output.replace("│", " ").split())
    assert "weights per GPU 12.81 GiB as stored; vllm loads 13.70 GiB" in text
    same = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-g", "h100", "-e", "sglang", "-c", "8192"])
    assert "as stored" not in same.output  # one layout: one figure
