"""kvcalc calibrate --from-benchmark: a deployment profile (overhead and kernel-time scale on the engine's profile)
fitted to a user's own benchmark results, then used by estimate --profile."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc import estimate
from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.validate.calibrate import calibrate_from_benchmark, read_benchmark

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
NERDALERT = FIXTURES / "nerdalert-llm-d-l40s-vllm-results.json"  # see fixtures/benchmarks/README.md


def test_a_published_vllm_result_file_parses_to_the_numbers_it_prints():
    runs = read_benchmark(NERDALERT)
    assert len(runs) == 9
    first = runs[0]  # "no-features", 10 requests/s, 300 prompts
    assert first["line"] == 1 and first["tpot_ms"] == 13.710971568239172 and first["ttft_ms"] == 54.59561144333596
    assert first["input_len"] == 299700 / 300 == 999 and first["output_len"] == pytest.approx(80945 / 300)
    # an open-loop run: requests in flight by Little's law, request_throughput x (TTFT + TPOT x (output - 1))
    e2e_ms = 54.59561144333596 + 13.710971568239172 * (80945 / 300 - 1)
    assert first["concurrency"] == pytest.approx(8.369432347779671 * e2e_ms / 1000)
    assert runs[8]["tpot_ms"] == 45.0189959701786 and runs[8]["ttft_ms"] == 884.9588357166714  # kvcache, inf


@pytest.mark.parametrize("text, match", [
    ('{"completed": 3, "total_input_tokens": 30, "total_output_tokens": 30, "mean_ttft_ms": 1}\n',
     "line 1: field mean_tpot_ms: missing"),
    ('{"mean_tpot_ms": 5, "completed": 3, "total_input_tokens": "lots", "total_output_tokens": 30}\n',
     "line 1: field total_input_tokens: expected a non-negative number, got 'lots'"),
    (('{"mean_tpot_ms": 5, "completed": 3, "total_input_tokens": 30, "total_output_tokens": 30, "max_concurrency": 4}\n'
      '{"mean_tpot_ms": 5,\n'), "line 2: not JSON"),
])
def test_bad_json_is_one_line_naming_file_line_and_field(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(KvcalcError, match=match):
        read_benchmark(path)


def test_bad_csv_names_the_line_and_field(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("batch,input_len,output_len,tpot_ms\n1,128,128,9.6\n4,128,128,fast\n")
    with pytest.raises(KvcalcError, match=r"runs.csv: line 3: field tpot_ms: expected a number, got 'fast'"):
        read_benchmark(path)
    r = CliRunner().invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", "llama-3-8b", "-o",
                                 str(tmp_path / "d.toml")])
    assert r.exit_code == 2 and "line 3" in r.output and "Traceback" not in r.output


def _planted(tmp_path, scale, step_ms, request_ms):
    """A CSV whose runs are llama-3-8b on one H100 under vLLM's kernels, times `scale`, plus the planted costs."""
    bare = {"engine": "vllm", "engine_version": "v1"}
    lines = ["batch,input_len,output_len,tpot_ms,ttft_ms"]
    for b, p_len, o_len in ((1, 512, 256), (8, 1024, 256), (32, 2048, 512), (64, 512, 128)):
        e = estimate("llama-3-8b", "h100-sxm", batch=b, context=p_len + o_len // 2, prompt=p_len, **bare)
        k_dec = e.decode.ms - e.decode.overhead_ms
        # a static batch's TTFT: all b prompts prefilled together, as estimate times it (the twenty-eighth audit,
        # calibrate 3: one prompt's had been planted and fitted)
        p1 = estimate("llama-3-8b", "h100-sxm", batch=b, context=0, prompt=p_len, **bare)
        k_pre = p1.prefill.ms - p1.prefill.overhead_ms
        lines.append(f"{b},{p_len},{o_len},{scale * k_dec + step_ms},{scale * k_pre + step_ms + request_ms}")
    path = tmp_path / "planted.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_fit_recovers_a_planted_overhead_and_scale(tmp_path):
    path = _planted(tmp_path, 1.3, 2.5, 40.0)
    profile, report = calibrate_from_benchmark(path, model="llama-3-8b", gpu="h100-sxm", engine="vllm")
    assert report["time_scale"] == pytest.approx(1.3, rel=0.02)  # the grid steps by 3 %
    assert report["step_us"] == pytest.approx(2500, rel=0.05)
    assert report["request_ms"] == pytest.approx(40, rel=0.05)
    assert report["held_out_median_abs_error_pct"] < 3
    assert profile.overhead.step_us == report["step_us"] and profile.provenance == "fitted"


def test_the_written_profile_drives_estimate(tmp_path):
    path = _planted(tmp_path, 1.0, 4.0, 0.0)
    out = tmp_path / "deploy.toml"
    r = CliRunner().invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", "llama-3-8b", "-g", "h100-sxm",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "fitted on 4 runs" in r.output and "held out" in r.output
    e = estimate("llama-3-8b", "h100-sxm", batch=1, context=640, prompt=512, profile_file=str(out))
    assert e.decode.overhead_ms == pytest.approx(4.0, rel=0.05)
    wrong = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "-g", "a100-sxm-80gb", "--profile", str(out)])
    assert wrong.exit_code == 2 and "--profile" in wrong.output


def test_a_genai_perf_export_reads_its_means_and_concurrency(tmp_path):
    # genai-perf / AIPerf write each metric as an object of statistics (docs.nvidia.com/aiperf, "JSON Export
    # Schema"); the run's concurrency is in input_config (AIPerf: loadgen.concurrency), else Little's law
    path = tmp_path / "profile_export_aiperf.json"
    path.write_text('{"time_to_first_token": {"unit": "ms", "avg": 45.2, "p99": 84.1},'
                    ' "inter_token_latency": {"unit": "ms", "avg": 9.5},'
                    ' "input_sequence_length": {"unit": "tokens", "avg": 512.0},'
                    ' "output_sequence_length": {"unit": "tokens", "avg": 128.0},'
                    ' "request_throughput": {"unit": "requests/sec", "avg": 2.0},'
                    ' "request_latency": {"unit": "ms", "avg": 1250.0}}')
    run = read_benchmark(path)[0]
    assert (run["tpot_ms"], run["ttft_ms"], run["input_len"], run["output_len"]) == (9.5, 45.2, 512.0, 128.0)
    assert run["concurrency"] == pytest.approx(2.0 * 1.25)  # requests/s x seconds in flight
    path.write_text(path.read_text()[:-1] + ', "input_config": {"loadgen": {"concurrency": 4}}}')
    assert read_benchmark(path)[0]["concurrency"] == 4


def _vllm_line(concurrency: int, tpot_ms: float, ttft_ms: float) -> str:
    """One `vllm bench serve --save-result` record (vllm/benchmarks/serve.py's result fields): 200 requests of 1,000
    prompt and 200 output tokens on Llama-3.1-8B under a cap of `concurrency`; throughput from the times given."""
    e2e_ms = ttft_ms + tpot_ms * 199
    rate = concurrency / (e2e_ms / 1000)
    return json.dumps({"backend": "vllm", "model_id": "meta-llama/Llama-3.1-8B-Instruct", "num_prompts": 200,
                       "request_rate": "inf", "max_concurrency": concurrency, "duration": 200 / rate,
                       "completed": 200, "total_input_tokens": 200_000, "total_output_tokens": 40_000,
                       "request_throughput": rate, "mean_ttft_ms": ttft_ms, "mean_tpot_ms": tpot_ms,
                       "mean_e2el_ms": e2e_ms})


def test_36_calibrate1_aiperf_runs_no_more_in_flight_than_requests_sent(tmp_path):
    """AIPerf takes a --concurrency above its --request-count (ai-dynamo/aiperf aiperf/common/config/
    loadgen_config.py leaves it unchecked): 8 requests under a cap of 64 ran 8 at a time, and had been timed at 64
    (a 0 us step fitted, the written profile's TPOT 35 % short). Its export carries the count as request_count.avg and
    input_config.loadgen.request_count."""
    base = {"time_to_first_token": {"unit": "ms", "avg": 61.3}, "inter_token_latency": {"unit": "ms", "avg": 10.7},
            "input_sequence_length": {"avg": 1000.0}, "output_sequence_length": {"avg": 200.0},
            "request_throughput": {"avg": 3.65}, "request_latency": {"unit": "ms", "avg": 2193.2},
            "input_config": {"loadgen": {"concurrency": 64, "request_count": 8}}}
    path = tmp_path / "profile_export_aiperf.json"
    path.write_text(json.dumps(base))
    assert read_benchmark(path)[0]["concurrency"] == 8
    path.write_text(json.dumps({**base, "request_count": {"unit": "requests", "avg": 8.0},
                                "input_config": {"loadgen": {"concurrency": 64}}}))
    assert read_benchmark(path)[0]["concurrency"] == 8
    path.write_text(json.dumps({**base, "input_config": {"loadgen": {"concurrency": 4, "request_count": 100}}}))
    assert read_benchmark(path)[0]["concurrency"] == 4


def test_36_calibrate2_a_ttft_below_its_prefills_speed_of_light_is_refused(tmp_path):
    """A TPOT below its decode step's speed of light was refused, a TTFT below its prefill's was fitted: 2 ms for
    1,000-token prompts of Llama-3.1-8B on an H100 (its prefill alone moves 16 GB of weights: at least 4.8 ms at
    3.35 TB/s) had come out "0.03 % fitted"."""
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(_vllm_line(c, tpot, 2.0) for c, tpot in ((1, 9.52), (4, 10.03), (16, 12.09))) + "\n")
    out = CliRunner().invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", "llama-3.1-8b", "-g", "h100-sxm",
                                   "-o", str(tmp_path / "p.toml")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "line 1: TTFT 2 ms is below the speed of light of its prefill" in out.output
    assert not (tmp_path / "p.toml").exists()


def test_36_calibrate3_a_refused_fit_names_the_metric_that_misses():
    """A fit refused for missing by a median factor past MAX_FIT_FACTOR named the worst run's TPOT even where the
    TPOTs were met and the TTFTs 15x off; it names the worst run and metric, measured beside predicted."""
    from kvcalc.validate.calibrate import MAX_FIT_FACTOR, _check_fit

    runs = [{"source": f"b.jsonl line {i}", "concurrency": c, "tpot_ms": 10.0, "tpot_kernel_ms": 10.0,
             "tpot_steps": 1.0, "ttft_ms": 60.0, "ttft_kernel_ms": 60.0 * ratio, "ttft_steps": 1.0}
            for i, (c, ratio) in enumerate(((1, 14.2), (4, 15.2), (16, 14.8)), 1)]
    fit = {"time_scale": 1.0, "step_us": 0.0, "request_ms": 0.0}
    assert MAX_FIT_FACTOR < 14.2
    with pytest.raises(KvcalcError, match=r"worst b.jsonl line 2: TTFT 60 ms measured, 912 ms predicted at 4 in "):
        _check_fit(Path("b.jsonl"), runs * 2, fit)


def test_36_calibrate4_a_constant_not_fitted_is_said_to_be_so(tmp_path):
    """One concurrency cannot tell slower kernels from a longer step, so the kernel scale stays 1: the report had
    printed 'kernel times x 1' as if fitted; it says it was not, in the command's line and the profile's method."""
    path = tmp_path / "one.jsonl"
    path.write_text(_vllm_line(4, 10.03, 61.0) + "\n")
    out_file = tmp_path / "p.toml"
    out = CliRunner().invoke(app, ["calibrate", "--from-benchmark", str(path), "-m", "llama-3.1-8b", "-g", "h100-sxm",
                                   "-o", str(out_file)])
    assert out.exit_code == 0, out.output
    assert "kernel times x 1 (not fitted: the runs span one concurrency" in out.output
    assert "kernel times x 1 (not fitted: the runs span one concurrency" in out_file.read_text()


def test_36_calibrate5_an_indented_export_cut_short_names_where_it_breaks(tmp_path):
    """genai-perf and AIPerf indent their exports; one cut off mid-file had been reported at line 1 (the JSON-lines
    fallback's lone brace) where the whole file's parser names the line it breaks at."""
    text = json.dumps({"time_to_first_token": {"unit": "ms", "avg": 61.3},
                       "inter_token_latency": {"unit": "ms", "avg": 10.7},
                       "input_sequence_length": {"avg": 1000.0}, "output_sequence_length": {"avg": 200.0}}, indent=2)
    path = tmp_path / "profile_export_aiperf.json"
    path.write_text(text[: int(len(text) * 0.8)])
    with pytest.raises(KvcalcError, match=r"line (\d+): not JSON") as e:
        read_benchmark(path)
    assert int(re.search(r"line (\d+)", str(e.value))[1]) > 10
