"""Regression tests for the hostile audit's `serve --simulate` input findings (A8, A9, A10, A14 of 2026-12-05: trace
files and flags), one test per finding, each named after it and quoting its reproducer."""

import json

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.serving.simulate import read_trace, simulate

HEADER = "arrival_s,input_len,output_len\n"


def _cli(*args):
    return CliRunner().invoke(app, ["serve", "-m", "llama-3-8b", "--simulate", "-e", "roofline", *args])


def _one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # not an escaped exception
    message = result.output.strip()
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


def test_a8a_trace_with_huge_input_len_is_one_line_error(tmp_path):
    """`serve --simulate --arrivals trace --trace F` with an input_len of 1e30 raised OverflowError (a traceback, as
    a JSON integer 10**30 does not fit int64); now one line naming the file, line and field, and the bound
    (MAX_TOKENS, 1,000,000,000 tokens)."""
    jsonl = tmp_path / "huge.jsonl"
    jsonl.write_text('{"arrival_s": 0, "input_len": 10, "output_len": 3}\n'
                     '{"arrival_s": 1, "input_len": ' + str(10**30) + ', "output_len": 3}\n')
    _one_line_error(_cli("--arrivals", "trace", "--trace", str(jsonl)),
                    "huge.jsonl line 2, field input_len", "1,000,000,000")
    csv = tmp_path / "huge.csv"
    csv.write_text(HEADER + "0,1e30,10\n")
    with pytest.raises(KvcalcError, match=r"huge\.csv line 2, field input_len: expected a whole number"):
        read_trace(csv)
    csv.write_text(HEADER + "0,1000000001,10\n")  # one past the bound
    with pytest.raises(KvcalcError, match="1,000,000,000"):
        read_trace(csv)


def test_a8b_utf16_or_binary_trace_is_not_utf8_text(tmp_path):
    """A UTF-16 or binary trace file raised UnicodeDecodeError; now one line naming the file: "not UTF-8 text"."""
    utf16 = tmp_path / "u16.csv"
    utf16.write_text(HEADER + "0,100,10\n", encoding="utf-16")  # starts with the byte-order mark FF FE
    _one_line_error(_cli("--arrivals", "trace", "--trace", str(utf16)), "u16.csv", "not UTF-8 text", "0xff")
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes([0x80, 0x00, 0xC3, 0x28]) * 16)
    with pytest.raises(KvcalcError, match=r"blob\.jsonl: not UTF-8 text"):
        read_trace(binary)


def test_a9_request_rate_too_slow_for_the_clock_is_refused():
    """`--arrivals poisson --request-rate 1e-20` gave TPOT p50 0.0 (arrivals near 1e20 s absorb a step: t + dt == t)
    plus a numpy divide-by-zero warning; rates below 1e-6/s are refused, and so is any rate whose arrivals spread past
    1e10 s (1,000,000 requests at 1e-5/s: about 1e11 s)."""
    _one_line_error(_cli("-i", "100", "--output-len", "10", "--arrivals", "poisson", "--request-rate", "1e-20"),
                    "--request-rate", "1e-06")
    with pytest.raises(KvcalcError, match=r"--request-rate: .* 1e\+10 s"):
        simulate("llama-3-8b", input_len=100, output_len=10, arrivals="poisson", request_rate=1e-5,
                 num_prompts=1_000_000, engine="roofline")


def test_a9_trace_arrival_time_beyond_the_clock_is_refused(tmp_path):
    """A trace row with arrival time 1e308 gave TPOT p50 3.67 ms (below the decode step); now one line naming the file,
    line and field, and the bound 1e10 s."""
    f = tmp_path / "far.csv"
    f.write_text(HEADER + "0,100,10\n1e308,100,10\n")
    _one_line_error(_cli("--arrivals", "trace", "--trace", str(f)), "far.csv line 3, field arrival_s", "1e+10")


def test_a9_arrival_near_the_bound_times_steps_as_at_zero(tmp_path):
    """At the bound's edge the clock still times every step: a lone request arriving at 9.9e9 s sees the TTFT, TPOT
    and end-to-end latency of one arriving at 0 (about 5 ms steps), to within a double's spacing there, 2**-19 s =
    1.9 us (9.9e9 lies in [2**33, 2**34); each of the two times a latency subtracts rounds by at most half of it),
    where at 1e308 a whole step vanished. A Unix time in seconds (1.76e9) is accepted too."""
    near, far = tmp_path / "near.csv", tmp_path / "far.csv"
    near.write_text(HEADER + "0,100,10\n")
    far.write_text(HEADER + "0,100,10\n9.9e9,100,10\n")
    a = simulate("llama-3-8b", arrivals="trace", trace=near, engine="roofline")
    b = simulate("llama-3-8b", arrivals="trace", trace=far, engine="roofline")
    assert b["completed"] == 2
    for metric in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert b[metric]["p50"] == pytest.approx(a[metric]["p50"], abs=2 ** -19 * 1e3) and a[metric]["p50"] > 1
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("timestamp,input_len,output_len\n1764930000.25,100,10\n1764930000.75,100,10\n")
    assert list(read_trace(epoch).arrival_s) == [0.0, 0.5]  # both exact in binary: 2**-2 and 3 x 2**-2 past


def test_a10_csv_with_utf8_bom_reads_its_header(tmp_path):
    """A CSV starting with a UTF-8 BOM (Excel's "CSV UTF-8") gave "field arrival_s: expected a number, got None":
    the BOM stuck to the first column name. Read as utf-8-sig, its rows are the file's."""
    f = tmp_path / "excel.csv"
    f.write_bytes(b"\xef\xbb\xbf" + (HEADER + "1.5,100,10\n2,300,20\n").encode())
    w = read_trace(f)
    assert list(w.arrival_s) == [0.0, 0.5] and list(w.input_len) == [100, 300] and list(w.output_len) == [10, 20]


def test_a10_jsonl_with_utf8_bom_is_read(tmp_path):
    """A JSONL starting with a UTF-8 BOM gave "not a JSON object" on line 1."""
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"arrival_s": 0, "input_len": 100, "output_len": 10}\n')
    w = read_trace(f)
    assert list(w.input_len) == [100] and list(w.output_len) == [10]


def test_a10_whole_float_length_is_accepted_and_a_fraction_says_whole_number(tmp_path):
    """`input_len` 100.0 gave "expected a number, got 100.0"; a float that is a whole number is that number, and
    100.5 is refused as "expected a whole number"."""
    f = tmp_path / "t.jsonl"
    f.write_text('{"arrival_s": 0, "input_len": 100.0, "output_len": 10}\n')
    assert list(read_trace(f).input_len) == [100]
    c = tmp_path / "t.csv"
    c.write_text(HEADER + "0,100.0,1e1\n")
    w = read_trace(c)
    assert list(w.input_len) == [100] and list(w.output_len) == [10]
    f.write_text('{"arrival_s": 0, "input_len": 100.5, "output_len": 10}\n')
    with pytest.raises(KvcalcError, match=r"t\.jsonl line 1, field input_len: expected a whole number"):
        read_trace(f)


def test_a10_upper_case_jsonl_extension_is_json_lines(tmp_path):
    """A `.JSONL` (upper-case) file gave "has no requests": it was read as a CSV whose header was the first line."""
    f = tmp_path / "T.JSONL"
    f.write_text('{"arrival_s": 2, "input_len": 10, "output_len": 3}\n{"arrival_s": 3, "input_len": 20, '
                 '"output_len": 4}\n')
    w = read_trace(f)
    assert list(w.arrival_s) == [0.0, 1.0] and list(w.input_len) == [10, 20]


def test_a10_request_beyond_context_is_counted_not_a_pool_error(tmp_path):
    """One over-context request of 1e8 tokens gave "KV pool does not hold one request of 50,000,060 tokens (the trace's
    mean); raise --tp" where a 200k-token one was simply rejected and counted. Llama-3-8B's context is 8,192 tokens:
    the 1e8-token request is rejected and counted, the two others (100 + 10 tokens each) run, mean prompt 100."""
    f = tmp_path / "long.csv"
    f.write_text(HEADER + "0,100,10\n0.1,100000000,10\n0.2,100,10\n")
    r = simulate("llama-3-8b", arrivals="trace", trace=f, engine="roofline")
    assert r["rejected_over_context"] == 1 and r["completed"] == 2 and r["mean_input_len"] == 100.0
    assert "8,192" in r["rejected_over_context_note"]


def test_a14_sharegpt_dataset_refuses_input_len():
    """`serve --simulate --dataset sharegpt -i 1000` ignored -i (plan refuses the combination); refused here too,
    naming both flags."""
    _one_line_error(_cli("--dataset", "sharegpt", "-i", "1000", "-n", "4"), "--input-len", "--dataset sharegpt")
    _one_line_error(_cli("--dataset", "sharegpt", "--range-ratio", "0.5", "-n", "4"), "--range-ratio",
                    "--dataset sharegpt")


def test_a14_trace_without_arrivals_trace_is_refused(tmp_path):
    """`--trace F` was ignored (even a missing file) unless `--arrivals trace`; now refused, and the lengths a trace
    gives are not taken from -i beside it."""
    missing = str(tmp_path / "missing.csv")
    _one_line_error(_cli("-i", "100", "--output-len", "10", "-n", "4", "--trace", missing), "--trace",
                    "--arrivals trace")
    _one_line_error(CliRunner().invoke(app, ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n",
                                             "4", "--trace", missing]), "--trace", "--simulate")
    f = tmp_path / "t.csv"
    f.write_text(HEADER + "0,100,10\n")
    _one_line_error(_cli("--arrivals", "trace", "--trace", str(f), "-i", "100"), "--input-len", "--arrivals trace")


def test_a14_percentile_takes_plan_spelling():
    """`--percentile` took 90 on serve but p90 on plan; serve accepts 90, p90 and P90 alike (the goodput at the
    90th percentile is the same run's), and refuses q90 in one line."""
    base = ("-i", "100", "--output-len", "10", "-n", "4", "--num-prompts", "20", "--max-ttft-ms", "100",
            "-f", "json")
    runs = []
    for spelling in ("90", "p90", "P90"):
        r = _cli(*base, "--percentile", spelling)
        assert r.exit_code == 0, r.output
        runs.append(json.loads(r.stdout))
    assert all("p90" in run["ttft_ms"] and "slo_met_at_percentile" in run for run in runs)
    assert runs[0] == runs[1] == runs[2]
    _one_line_error(_cli(*base, "--percentile", "q90"), "--percentile", "p90")


def test_a14_num_prompts_is_capped_at_one_million():
    """`--num-prompts` up to 10,000,000 was allowed while 100k takes 17 s and 250 MB; capped at 1,000,000 (plan's
    own cap on simulated prompts), said in the message and in --help."""
    _one_line_error(_cli("-i", "100", "--output-len", "10", "-n", "4", "--num-prompts", "1000001"),
                    "--num-prompts", "1,000,000")
    helptext = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    assert "at most 1,000,000" in " ".join(helptext.split())
