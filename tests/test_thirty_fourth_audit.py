"""The thirty-fourth hostile audit (docs/validation.md, "Thirty-fourth hostile audit") and the thirty-third's leftovers
it took: each test is named after its finding."""

import json

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-e", "vllm"],
    ["capacity", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-c", "4096", "-e", "vllm"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8",
     "--simulate"],
])
def test_33_links1_rest_a_pcie_group_past_one_server_is_said_to_cross_the_network(args):
    """A server holds node_gpus (8) L40S; sixteen in one tensor-parallel group all-reduce across two servers over a
    network the spec does not give, which estimate, capacity and serve had timed over PCIe without a word."""
    out = CliRunner().invoke(app, [*args, "-f", "json"])
    assert out.exit_code == 0, out.output
    assert "a group of 16 l40s GPUs spans 2 servers of 8 (node_gpus)" in out.stderr + out.stdout


def test_33_links1_rest_eight_pcie_cards_fit_one_server():
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "8", "-f", "json"])
    assert out.exit_code == 0 and "servers of" not in out.stderr + out.stdout


@pytest.mark.parametrize("gpu, says", [("mi355x", "transferred (from h200.vllm) curves of the vllm 0.24.0 profile"),
                                       ("h100-sxm", "measured curves of the vllm 0.24.0 profile")])
def test_34_amd3_explain_names_where_the_curves_come_from(gpu, says):
    """`--explain`'s decode and prefill lines had called every profile's curves measured, beside a header that said
    the MI355X's were transferred from the H200's."""
    from kvcalc import estimate
    from kvcalc.report.explain import explain
    from kvcalc.specs.catalog import load_gpu, load_model

    steps = explain(estimate("llama-3.1-8b", gpu, engine="vllm"), load_model("llama-3.1-8b"), load_gpu(gpu))
    lines = [s.formula for s in steps if s.quantity in ("Decode time", "Prefill time")]
    assert len(lines) == 2 and all(says in line for line in lines)
