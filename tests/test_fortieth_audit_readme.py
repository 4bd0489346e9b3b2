"""The fortieth hostile audit, README read and run as a newcomer (docs/validation.md, "Fortieth hostile audit"): each
test is named after the finding it holds fixed, and asserts a figure worked by hand or the README's own words against
what the code does."""

import importlib.util
import math
import os
import re
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.errors import ArgumentError

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _sweep_benchmark(monkeypatch):
    """benchmarks/sweep_throughput.py as a module (its OMP_NUM_THREADS default kept out of this process)."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    spec = importlib.util.spec_from_file_location("sweep_throughput", ROOT / "benchmarks" / "sweep_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_40_readme1_the_sweep_benchmark_grid_is_within_the_cap_and_the_readme_counts_it(monkeypatch):
    """readme 1: the Benchmarks table's sweep ran 4 x 2 x 2 x 2 x 64 x 256 = 524,288 scenarios, past the 500,000 rows
    kvcalc.sweep computes since 8815717 (kvcalc/grid.py MAX_SWEEP_ROWS), so the README's own command ended in a
    traceback. Now 240 contexts: 4 x 2 x 2 x 2 x 64 x 240 = 491,520, the count the README's row gives; the cap is
    stated in the README's sweep bullet and in kvcalc.sweep's docstring."""
    from kvcalc.grid import MAX_SWEEP_ROWS, sweep

    axes = _sweep_benchmark(monkeypatch).AXES
    lengths = {k: len(v) for k, v in axes.items()}
    assert lengths == {"models": 4, "gpus": 2, "attn": 2, "batch": 64, "context": 240, "weight_dtype": 2}
    rows = math.prod(lengths.values())
    assert rows == 4 * 2 * 2 * 2 * 64 * 240 == 491_520 <= MAX_SWEEP_ROWS == 500_000
    row = next(line for line in README.splitlines() if "benchmarks/sweep_throughput.py" in line and line.startswith("|"))
    said = re.search(r"4 models x 2 GPUs x 2 attention x 2 dtypes x (\d+) batches x (\d+) contexts = ([\d,]+) "
                     r"scenarios", row)
    assert said and (int(said[1]), int(said[2]), int(said[3].replace(",", ""))) == (64, 240, rows)
    assert "at most 500,000 rows a call" in README
    assert "MAX_SWEEP_ROWS (500,000) rows a call" in sweep.__doc__


def test_40_readme2_one_estimate_counts_the_parameters_once(monkeypatch):
    """readme 2: one kvcalc.estimate of llama-3-8b on the H100 counted its parameters four times (params_breakdown:
    the total and the active count, and twice more inside weight_bytes, once for the memory and once for the weights'
    bytes) and its quantised share twice (bias_params). By hand, an estimate needs two counts (all experts, and
    top_k of them) and one split of the weights into quantised and kept: counted once a call now. Counted by the calls
    each count makes of norm_params and bias_params (kvcalc/formulas/params.py; the forward pass's own norm_params
    calls, for the norms' bytes, are not counts of the parameters and are left out)."""
    import sys

    from kvcalc.formulas import params

    calls = {"norm_params": 0, "bias_params": 0}
    for name in calls:
        original = getattr(params, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code
            if caller.co_filename == params.__file__ and "params" in caller.co_name:  # the counts, not routed_...
                calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(params, name, counted)
    e = kvcalc.estimate("llama-3-8b", "h100-sxm", batch=8, context=4096)
    assert calls == {"norm_params": 2, "bias_params": 1}
    # the figures are the counts': Llama-3-8B's 8,030,261,248 parameters (Meta's model card: 8.03 B), 2 B each in bf16
    assert e.weights.params == e.weights.active_params == 8_030_261_248
    assert e.weights.bytes == 2 * 8_030_261_248
    assert kvcalc.estimate("llama-3-8b", "h100-sxm", batch=8, context=4096).weights.params == 8_030_261_248
    assert calls == {"norm_params": 4, "bias_params": 2}  # a second call counts afresh: nothing kept between calls


@pytest.fixture(scope="module")
def qwen3_at_64_in_flight():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kvcalc.plan("qwen3-32b", ["h100-sxm"], input_len=1000, output_len=200, concurrency=64, max_tpot_ms=60)


def test_40_readme3_the_frontier_under_a_concurrency_holds_only_reachable_budgets(qwen3_at_64_in_flight):
    """readme 3: README's `plan -m qwen3-32b ... --concurrency 64 --max-tpot-ms 60 --plot` drew frontier points at
    budgets of 256 and 277 in flight, which 64 requests never fill: 3 x H100 2P:1D/TP1 at 256, TPOT 37.5 ms (within
    the limit), 2,266 output tokens/s per GPU beside the choice's 1,750, where that deployment serves the 64 at 566.
    Now the frontier, as the choice, keeps budgets up to ceil(64) = 64, and no point within the TPOT limit stands above
    the choice."""
    r = qwen3_at_64_in_flight
    choice = r["choice"]
    assert choice["in_flight_per_replica"] <= 64
    assert max(p["in_flight_per_replica"] for p in r["frontier"]) <= 64
    within = [p for p in r["frontier"] if p["tpot_ms"] <= 60]
    assert within and all(p["replica_output_tokens_per_s_per_gpu"]
                          <= choice["replica_output_tokens_per_s_per_gpu"] * (1 + 1e-12) for p in within)


def test_40_readme3_the_plot_says_what_the_frontier_holds(qwen3_at_64_in_flight):
    """readme 3: the plot's legend had said 'all deployments searched' of a line drawn at every budget; now it says
    the budgets are at most the concurrency's 64."""
    import matplotlib.pyplot as plt

    from kvcalc.report.plot import plan_frontier

    fig = plan_frontier(qwen3_at_64_in_flight)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert "Pareto frontier (all deployments searched, at most 64 in flight a replica)" in labels


def test_40_readme4_plans_missing_keywords_are_argument_errors_naming_keywords():
    """readme 4: README: 'A misspelt or missing keyword is kvcalc.errors.ArgumentError'. kvcalc.plan without
    input_len, or without a load, raised a plain KvcalcError, and named --dataset where the keyword is dataset=; serve
    without a load likewise. The CLI keeps its flags."""
    with pytest.raises(ArgumentError) as e:
        kvcalc.plan("qwen3-32b", ["h100-sxm"], output_len=200, concurrency=4)
    assert str(e.value) == 'input_len / output_len: required by kvcalc.plan (or dataset="sharegpt")'
    with pytest.raises(ArgumentError) as e:
        kvcalc.plan("qwen3-32b", ["h100-sxm"], input_len=1000, output_len=200)
    assert str(e.value) == "request_rate / concurrency / gpu_budget: give exactly one"
    with pytest.raises(ArgumentError) as e:
        kvcalc.serve("llama-3.1-8b", input_len=1000, output_len=200)
    assert str(e.value) == "concurrency / request_rate: give exactly one"
    assert isinstance(e.value, TypeError)  # as Python's own binding error is
    out = CliRunner().invoke(app, ["plan", "-m", "qwen3-32b", "-o", "200", "--concurrency", "4"])
    assert out.exit_code == 2 and "--input-len / --output-len: give both (or --dataset sharegpt)" in out.output


def test_40_readme_note_emit_says_the_figures_of_what_it_launches():
    """readme note: `plan ... --emit vllm` printed vLLM's best (7 replicas, 28 GPUs) under a table whose choice was
    SGLang on 20 GPUs, with no figure of the deployment it launches; the launch header now carries its GPUs, TTFT and
    TPOT, the same figures best_by_engine holds in --format json."""
    import json

    args = ["plan", "-m", "qwen3-32b", "-g", "h100-sxm", "-i", "1000", "-o", "200", "--concurrency", "64",
            "--max-tpot-ms", "60"]
    doc = json.loads(CliRunner().invoke(app, [*args, "-f", "json"]).stdout)
    best = doc["best_by_engine"]["vllm"]
    # the launched configuration is not the table's choice, so the header's figures can only be vLLM's best
    assert doc["choice"]["engine"] != "vllm" and doc["choice"]["ttft_ms"] != pytest.approx(best["ttft_ms"], rel=5e-3)
    out = CliRunner().invoke(app, [*args, "--emit", "vllm"])
    assert out.exit_code == 0, out.output
    header = next(line for line in out.stdout.splitlines() if line.startswith("launch ("))
    gpus = best["gpus"]
    assert f"; planned: {gpus:,} GPU{'s' if gpus != 1 else ''}, TTFT " in header
    assert re.search(r"TTFT ([\d.,]+) ms, TPOT ([\d.,]+) ms\):$", header)
    ttft, tpot = (float(x.replace(",", "")) for x in re.search(r"TTFT ([\d.,]+) ms, TPOT ([\d.,]+) ms", header).groups())
    assert ttft == pytest.approx(best["ttft_ms"], rel=5e-3) and tpot == pytest.approx(best["tpot_ms"], rel=5e-3)
