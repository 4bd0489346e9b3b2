"""Regression tests for the sixth hostile audit (2026-12-06, from 00:34 UTC; docs/validation.md "Sixth hostile
audit"): each reproduces a finding, with the expected figures worked by hand or taken from another command."""

import json
import warnings

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def one_line_error(args: list[str]) -> str:
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kvcalc: error: "), out.output
    return lines[0]


SIM = ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "--simulate", "--request-rate", "2",
       "--num-prompts", "50"]


@pytest.mark.parametrize("flag", ["--max-ttft-ms", "--max-tpot-ms"])
@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
def test_simulate_checks_the_latency_limits_as_the_closed_form_does(flag, value):
    """A1: under --simulate a limit of nan, 0, -1 or inf ran and gave a goodput of 0 for a workload whose p99 TTFT is
    24.6 ms; serve's closed form refuses them. Both now give the same one line."""
    assert one_line_error([*SIM, flag, value]) == one_line_error(
        ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "--request-rate", "2", flag, value])


def test_simulate_prices_its_own_throughput():
    """A2: --price-per-gpu-hour was dropped under --simulate (and -1 accepted). The cost of a million output tokens is
    the price of the GPU-hours they take: price x GPUs / (output tokens/s x 3,600 s) x 1e6."""
    doc = json.loads(runner.invoke(app, [*SIM, "--price-per-gpu-hour", "2", "-f", "json"]).stdout)
    expected = 2 * doc["gpus"] / (doc["output_tokens_per_s"] * 3600) * 1e6
    assert doc["gpus"] == 1 and doc["cost_per_million_output_tokens"] == pytest.approx(expected, rel=1e-12)
    doc = json.loads(runner.invoke(app, [*SIM, "-f", "json"]).stdout)
    assert doc["cost_per_million_output_tokens"] is None and "price" in doc["cost_per_million_output_tokens_note"]
    assert one_line_error([*SIM, "--price-per-gpu-hour", "-1"]).startswith("kvcalc: error: --price-per-gpu-hour: ")


def test_simulate_table_shows_what_the_limits_and_the_price_are_for():
    """A3: the table, the default format, looked the same with and without --max-ttft-ms and --percentile; it now
    carries the goodput, whether the limits held at the percentile, and the cost."""
    doc = json.loads(runner.invoke(app, [*SIM, "--max-ttft-ms", "20", "-f", "json"]).stdout)
    assert doc["ttft_ms"]["p99"] > 20 and doc["slo_met_at_percentile"] is False  # p99 TTFT 24.6 ms on this run
    out = runner.invoke(app, [*SIM, "--max-ttft-ms", "20", "--price-per-gpu-hour", "2"], terminal_width=400).output
    assert (f"goodput {doc['goodput_requests_per_s']:,.2f} requests/s within TTFT <= 20 ms; at p99 the limits are "
            "missed") in out
    assert "cost per million output tokens: " in out
    assert "goodput" not in runner.invoke(app, SIM, terminal_width=400).output


def test_quantised_checkpoints_keep_their_biases_in_bf16():
    """B1: MXFP4 packs only the experts' matrices; gpt-oss's checkpoints store the experts' gate_up_proj_bias and
    down_proj_bias in bf16. gpt-oss-120b by hand: 36 layers x 128 experts x (2880 x 5760 + 2880 x 2880) =
    114,661,785,600 matrix weights at 17/32 B (4 bits and one e8m0 scale a 32-block), every other parameter at 2 B;
    its checkpoint holds 65,248,815,744 B of tensors (gpt-oss-20b's index: tests/test_checkpoint_index.py)."""
    import kvcalc
    from kvcalc.formulas.params import total_params
    from kvcalc.specs.catalog import load_model

    params = total_params(load_model("gpt-oss-120b"))
    matrices = 36 * 128 * (2880 * 5760 + 2880 * 2880)
    assert params == 116_829_156_672  # openai/gpt-oss-120b's 116.8B
    assert matrices * 17 / 32 + (params - matrices) * 2 == 65_248_815_744
    assert kvcalc.estimate("gpt-oss-120b", "h200").weights.bytes == 65_248_815_744


TRACE = ["serve", "-m", "llama-3-8b", "--simulate", "--arrivals", "trace", "--trace"]


@pytest.mark.parametrize("flag", [["--num-prompts", "1"], ["--seed", "5"]])
def test_a_trace_run_refuses_the_flags_it_does_not_read(tmp_path, flag):
    """A4: --num-prompts 1 ran both requests of a two-line trace, and --seed was echoed though nothing is drawn; the
    same run refuses -n, --request-rate and the length flags."""
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s":0,"input_len":100,"output_len":10}\n{"arrival_s":1,"input_len":100,"output_len":10}\n')
    assert one_line_error([*TRACE, str(trace), *flag]).startswith(f"kvcalc: error: {flag[0]}: not read with --arrivals "
                                                                  "trace")
    assert json.loads(runner.invoke(app, [*TRACE, str(trace), "-f", "json"]).stdout)["completed"] == 2


@pytest.mark.parametrize("name, text, message", [
    ("dup.csv", "arrival_s,input_len,output_len,input_len\n0,100,10,5000\n",
     "line 1, column 'input_len': named twice in the header"),
    ("extra.csv", "arrival_s,input_len,output_len\n0,100,10,999\n", "line 2: 4 cells under a header of 3 columns"),
    ("dup.jsonl", '{"arrival_s":0,"input_len":100,"output_len":10,"input_len":7000}\n',
     "line 1, field input_len: given twice"),
    ("us.csv", "arrival_s,input_len,output_len\n0,1_00,10\n", "line 2, field input_len: expected a number of tokens"),
    ("fw.csv", "arrival_s,input_len,output_len\n0,\uff11\uff10\uff10,10\n",
     "line 2, field input_len: expected a number of tokens"),
    ("t.csv", "arrival_s,input_len,output_len\n\u0663,100,10\n", "line 2, field arrival_s: expected a number"),
])
def test_a_trace_that_says_two_things_is_refused_where_it_says_them(tmp_path, name, text, message):
    """A5: a second input_len column (or JSON key) silently won (mean input 5,000 where the row says 100), a fourth
    cell under three columns was dropped, and '1_00' and full-width digits were read as 100."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert one_line_error([*TRACE, str(path)]).startswith(f"kvcalc: error: --trace: {path} {message}")


@pytest.mark.parametrize("model, gpu, kw", [("llama-3-8b", "h100-sxm", {"tp": 1}), ("deepseek-v3", "h200", {"tp": 8}),
                                            ("qwen3-32b", "h100-sxm", {"tp": 2, "pp": 2})])
def test_the_serving_ladder_times_a_lone_prompt_in_its_own_call(monkeypatch, model, gpu, kw):
    """C5: since a request's prefill is timed beside the other C - 1 requests' decodes (none at one in flight), the
    ladder's one call mixed steps with and without decode operators, raised, and fell back to one call a point for
    every replica: plan 7x slower (DeepSeek-V3 on H200 and B200: 0.9 -> 6.6 CPU s). Each kind of step now has its own
    call, nothing falls back, and every rung equals its own closed form."""
    import numpy as np

    from kvcalc.serving import replica
    from kvcalc.specs.catalog import load_gpu, load_model

    r = replica.replica_runner(load_model(model), load_gpu(gpu), engine="vllm", weight_dtype="auto", kv_dtype="bf16",
                               input_len=2000, output_len=300, **kw)
    monkeypatch.setattr(replica, "_by_point", lambda cs, run: pytest.fail("fell back to one call a point"))
    cs = np.array([1.0, 1.5, 2.0, 3.0, 8.0, 64.0])
    many = r.run_many(cs)
    for n, c in enumerate(cs):
        one = r.run(c)
        for k in ("ttft_s", "tpot_s", "requests_per_s"):
            assert many[k][n] == pytest.approx(one[k], rel=1e-12, abs=0)
    [both] = replica.run_many_all([r], [cs], [None])
    assert all(np.array_equal(both[k], many[k]) for k in ("ttft_s", "tpot_s", "requests_per_s"))


BENCH = "batch,input_len,output_len,tpot_ms,ttft_ms\n1,100,10,10,50\n8,100,10,12,80\n"


@pytest.mark.parametrize("args, message", [
    (["--device", "cpu", "-m", "no-such-model"], "--model: only with --from-benchmark"),
    (["--tp", "3"], "--tp: only with --from-benchmark"),
    (["--replicas", "7"], "--replicas: only with --from-benchmark"),
    (["FROM", "--device", "cpu"], "--device: only when measuring this machine"),
    (["FROM", "--base", "h200"], "--base: only when measuring this machine"),
    (["FROM", "--name", "x y"], "--name: only when measuring this machine"),
])
def test_calibrate_refuses_the_other_modes_flags(tmp_path, args, message):
    """A6: `calibrate --device cpu -m no-such-model --tp 3` measured this machine and dropped the benchmark flags; under
    --from-benchmark, --device, --base and --name were dropped (two profiles identical but for a comment)."""
    bench = tmp_path / "b.csv"
    bench.write_text(BENCH)
    args = [a for x in args for a in (["--from-benchmark", str(bench), "-m", "llama-3.2-1b"] if x == "FROM" else [x])]
    line = one_line_error(["calibrate", "-o", str(tmp_path / "out.toml"), *args])
    assert line.startswith(f"kvcalc: error: {message}")
    assert not (tmp_path / "out.toml").exists()


@pytest.mark.parametrize("text, message", [
    ("batch,input_len,output_len,tpot_ms\n\n\n1,100,10,abc\n", "line 4: field tpot_ms: expected a number"),
    ("batch,input_len,output_len,tpot_ms,tpot_ms\n1,100,10,10,99999\n", "line 1: field tpot_ms: named twice"),
    ("batch,input_len,output_len,tpot_ms\n1,100,10,10,5\n", "line 2: 5 cells under a header of 4 columns"),
    ("batch,input_len,output_len,tpot_ms\n1,0.001,10,10\n", "line 2: field input_len: expected at least 1 token"),
    ("batch,input_len,output_len,tpot_ms\n1,100,0.5,10\n", "line 2: field output_len: expected at least 1 token"),
])
def test_a_benchmark_csv_is_read_line_by_line_as_written(tmp_path, text, message):
    """A7: after two blank lines the bad row (line 4) was reported on line 2; a second tpot_ms column won silently (a
    profile fitted to 99,999 ms); a mean of 0.001 input tokens was taken."""
    bench = tmp_path / "b.csv"
    bench.write_text(text)
    line = one_line_error(["calibrate", "--from-benchmark", str(bench), "-m", "llama-3.2-1b", "-g", "l40s", "-o",
                           str(tmp_path / "out.toml")])
    assert line.startswith(f"kvcalc: error: --from-benchmark: {bench}: {message}")
