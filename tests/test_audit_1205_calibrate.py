"""Regressions from the 12-05 hostile audit of `kvcalc calibrate --from-benchmark` (findings A8c and A11).

Each test fails before its fix: a wrong JSON type was an AttributeError traceback, and nonsense measurements were
fitted into a profile written with exit 0.
"""

import json

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.validate.calibrate import read_benchmark

runner = CliRunner()

# An AIPerf export's metrics (docs.nvidia.com/aiperf, "JSON Export Schema"): each an object with its avg
GENAI_PERF = {"time_to_first_token": {"unit": "ms", "avg": 45.0}, "inter_token_latency": {"unit": "ms", "avg": 9.5},
              "input_sequence_length": {"avg": 512.0}, "output_sequence_length": {"avg": 128.0},
              "request_throughput": {"avg": 2.0}, "request_latency": {"avg": 1250.0}}
# A closed-loop `vllm bench serve --save-result` run: 10 requests of 100 prompt and 50 output tokens at 4 in flight
VLLM = {"completed": 10, "total_input_tokens": 1000, "total_output_tokens": 500, "mean_tpot_ms": 9.5,
        "mean_ttft_ms": 45.0, "max_concurrency": 4, "request_throughput": 2.0}


def _calibrate(path, model="llama-3-8b"):
    out = path.parent / "profile.toml"
    r = runner.invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", model, "-g", "h100-sxm", "-o", str(out)])
    return r, out


def _one_error_line(r, *needles):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("kvcalc: error:")]
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("extra, message", [
    ({"input_config": [1]}, "field input_config: expected a JSON object, got [1]"),
    ({"input_config": {"loadgen": 5}}, "field input_config.loadgen: expected a JSON object, got 5"),
    ({"input_config": "c=4"}, "field input_config: expected a JSON object, got 'c=4'"),
])
def test_a8c_genai_perf_wrong_json_types_are_one_line_errors(tmp_path, extra, message):
    """A8c: `kvcalc calibrate --from-benchmark p.json -m llama-3-8b -o d.toml` with p.json a genai-perf export whose
    "input_config": [1] (or {"loadgen": 5}) raised AttributeError: 'list' object has no attribute 'get'."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**GENAI_PERF, **extra}))
    r, out = _calibrate(path)
    _one_error_line(r, "p.json: line 1: " + message)
    assert not out.exists()
    # the right types still read: AIPerf's loadgen.concurrency, and genai-perf's own concurrency beside a null one
    path.write_text(json.dumps({**GENAI_PERF, "input_config": {"concurrency": None, "loadgen": {"concurrency": 4}}}))
    assert read_benchmark(path)[0]["concurrency"] == 4


CSV_HEAD = "batch,input_len,output_len,tpot_ms,ttft_ms\n"


@pytest.mark.parametrize("name, text, message", [
    ("b.csv", CSV_HEAD + "4,128,128,10,50\n1,128,128,inf,50\n", "line 3: field tpot_ms: expected a finite positive"),
    ("b.csv", CSV_HEAD + "4,128,128,10,50\n1,inf,128,10,50\n", "line 3: field input_len: expected a finite positive"),
    ("b.csv", CSV_HEAD + "0.5,128,128,10,50\n", "line 2: field batch: expected a whole number of requests in flight"),
    ("b.csv", CSV_HEAD + "4,128,128,0.0000001,50\n", "line 2: field tpot_ms: TPOT 1e-07 ms is too small to fit"),
    ("b.csv", CSV_HEAD + "4,128,128,3600001,50\n", "line 2: field tpot_ms: TPOT 3600001.0 ms is too large"),
    ("b.csv", CSV_HEAD + "4,128,128,10,1e-300\n", "line 2: field ttft_ms: TTFT 1e-300 ms is too small to fit"),
    ("b.json", {"completed": 0.5}, "line 1: field completed: expected a whole number of requests, at least 1, got 0.5"),
    ("b.json", {"mean_tpot_ms": 1e-300}, "line 1: field mean_tpot_ms: TPOT 1e-300 ms is too small to fit against"),
    ("b.json", {"max_concurrency": 0}, "line 1: field max_concurrency: expected a whole number of requests in flight"),
    ("b.json", {"max_concurrency": 2.5}, "line 1: field max_concurrency: expected a whole number"),
    ("b.json", {"total_output_tokens": 0}, "line 1: field total_output_tokens: expected a whole number of tokens"),
    ("b.json", {"mean_ttft_ms": 1e-9}, "line 1: field mean_ttft_ms: TTFT 1e-09 ms is too small to fit against"),
    ("b.json", {"max_concurrency": None, "mean_e2el_ms": 1e9},  # over vllm bench serve's 6-hour request timeout
     "line 1: field mean_e2el_ms: latency 1000000000.0 ms is too large"),
    ("b.json", {"max_concurrency": None, "request_throughput": 0},
     "line 1: field request_throughput: expected a positive number, got 0"),
])
def test_a11_nonsense_benchmark_values_are_one_line_errors_naming_line_and_field(tmp_path, name, text, message):
    """A11: `kvcalc calibrate --from-benchmark b.csv -m llama-3-8b -o d.toml` accepted CSV tpot_ms inf, and JSON
    completed 0.5, mean_tpot_ms 1e-300 and max_concurrency 0, and wrote profiles fitted with errors of 100 % to
    1.8e302 %, exit 0."""
    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps({**VLLM, **text}))
    with pytest.raises(KvcalcError, match="^" + str(path).replace(".", r"\.") + ": "):
        read_benchmark(path)
    r, out = _calibrate(path)
    _one_error_line(r, f"{name}: {message}")
    assert not out.exists()


def test_a11_values_at_the_edges_of_the_sane_ranges_still_read(tmp_path):
    """A11's checks refuse only nonsense: a microsecond TPOT, a whole batch written 4.0, and a TTFT of 0 (a tool's
    "not measured", read as absent) all read."""
    path = tmp_path / "b.csv"
    path.write_text(CSV_HEAD + "4.0,128,128,0.001,\n")
    run = read_benchmark(path)[0]
    assert (run["concurrency"], run["tpot_ms"], run["ttft_ms"]) == (4.0, 0.001, None)
    path = tmp_path / "b.json"
    path.write_text(json.dumps({**VLLM, "mean_ttft_ms": 0}))
    run = read_benchmark(path)[0]
    # 1,000 prompt and 500 output tokens over 10 requests: 100 and 50 each
    assert (run["ttft_ms"], run["input_len"], run["output_len"], run["concurrency"]) == (None, 100, 50, 4)


def test_a11_a_fit_that_misses_by_an_absurd_error_writes_no_profile(tmp_path):
    """A11: `kvcalc calibrate --from-benchmark b.csv -m llama-3-8b -o d.toml` with a row "1000000,128,128,10" wrote a
    profile whose median |error| was 74,447 %, exit 0."""
    # Worked by hand: llama-3-8b holds 32 layers x 8 KV heads x 128 dims x 2 (K, V) x 2 bytes = 131,072 B of KV per
    # token; 1,000,000 sequences at a mean context of 128 + 128 / 2 = 192 tokens read 2.5e13 B a decode step, 7.5 s at
    # the H100 SXM's 3,350 GB/s. The fit's smallest kernel scale (0.5) still predicts 3.7 s against 10 ms measured:
    # that run's error is over 37,000 %, and the median of the two runs' errors over 18,000 %, far past 100 %.
    # Since the tenth audit's E9 that row is refused before any fit: its 10 ms is under the 7.5 s its step's bytes
    # take at the speed of light.
    path = tmp_path / "b.csv"
    path.write_text("batch,input_len,output_len,tpot_ms\n1000000,128,128,10\n4,128,128,10\n")
    r, out = _calibrate(path)
    _one_error_line(r, "b.csv: line 2: TPOT 10 ms is below the speed of light of its decode step")
    assert not out.exists()
    # Runs each above their speed of light that no one profile times: batch 1 at 100 s a token beside batch 4 at
    # 10 ms (a step can only grow with the batch): the fit's median miss passes a factor of 2
    path.write_text("batch,input_len,output_len,tpot_ms\n1,128,128,100000\n4,128,128,10\n")
    r, out = _calibrate(path)
    _one_error_line(r, "b.csv: the best fit still misses the measured times by a median factor of", "(over 2; worst ",
                    "no profile written")
    assert float(r.stderr.split("by a median factor of ")[1].split(" ")[0]) > 2
    assert not out.exists()
    # without the impossible row the same file fits (4 in flight at 10 ms a token) and the profile is written
    path.write_text("batch,input_len,output_len,tpot_ms\n4,128,128,10\n")
    r, out = _calibrate(path)
    assert r.exit_code == 0, r.output
    assert out.exists()
