"""Regression tests for the fourth hostile audit (2026-12-05, 19:10-20:40 UTC; docs/validation.md "Fourth hostile
audit") and the defects found beside it: each reproduces a finding with the numbers worked by hand or against another
command."""

import importlib.util

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app

runner = CliRunner()


def test_profiles_fit_without_pyarrow_is_one_line(tmp_path, monkeypatch):
    """`kvcalc profiles fit --data DIR` where pyarrow is not installed (the profiles extra brings it) ended in pandas'
    ImportError traceback, exit 1; it is a one-line error naming what to install, exit 2."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    (tmp_path / "a100_sxm").mkdir()
    out = runner.invoke(app, ["profiles", "fit", "-g", "a100-sxm-80gb", "--engine", "vllm", "--data", str(tmp_path),
                              "--out-dir", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert out.output.strip().splitlines() == [
        "kvcalc: error: profiles: reading the measured tables (Parquet) needs pyarrow: pip install 'kvcalc[profiles]'"]
