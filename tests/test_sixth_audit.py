"""Regression tests for the sixth hostile audit (2026-12-06, from 00:34 UTC; docs/validation.md "Sixth hostile
audit"): each reproduces a finding, with the expected figures worked by hand or taken from another command."""

import json
import warnings

import pytest
from test_fifth_audit import one_line_error, runner  # tests/ is on sys.path (pytest's rootdir-relative imports)

from kvcalc.cli import app
from kvcalc.engines.kernel_eras import ERAS

VLLM_ERA = next(e for e in ERAS if e.engine == "vllm").moe_scale  # vLLM up to 0.11's fused-MoE factor


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


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


def test_a_bench_ledger_row_of_one_output_token_says_it_has_no_tpot(tmp_path):
    """A15: a vllm-bench ledger row with output_len 1 and a measured median TPOT was a TypeError traceback (serve
    gives no TPOT for one output token)."""
    ledger = tmp_path / "out1.csv"
    ledger.write_text("id,model,gpu,tp,pp,engine,vllm_version,weight_dtype,kv_dtype,memory_utilization,input_len,"
                      "output_len,concurrency,output_tokens_per_s,median_tpot_ms,median_ttft_ms,source\n"
                      "tp2-c1,qwen3-32b,rtx-pro-6000,2,1,vllm,0.27.1,bf16,bf16,0.426,1024,1,1,36.41,26.38,296.37,x\n")
    assert one_line_error(["validate", "--serve", str(ledger)]) == (
        "kvcalc: error: --serve: row 2 (tp2-c1): median_tpot_ms: measured 26.38, but a run of 1 output token has no "
        "TPOT to score against it")


def _ledger_with(tmp_path, source, column, value, row=1):
    import csv

    rows = list(csv.reader(open(source, encoding="utf-8-sig")))
    rows[row][rows[0].index(column)] = value
    out = tmp_path / "ledger.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([rows[0], rows[row]])
    return out


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("flag, source, column, value, message", [
    ("--published", "validation/published/measurements.csv", "engine", "GPT-Fast",
     "field engine: expected one of vllm, sglang, trtllm, gpt-fast, got 'GPT-Fast'"),
    ("--published", "validation/published/measurements.csv", "batch", "\u0663", "field batch: expected ASCII digits"),
    ("--engine-memory", "validation/engine-memory/vllm.csv", "logged_available_GiB", "-1",
     "column logged_available_GiB: expected a number of at least 0, got '-1'"),
    ("--engine-memory", "validation/engine-memory/vllm.csv", "tp", "\u0662", "column tp: expected a number"),
])
def test_a_ledger_row_kvcalc_cannot_read_as_written_is_refused(tmp_path, flag, source, column, value, message):
    """A16, A17: a published row whose engine is spelled 'GPT-Fast' was scored on the datasheet roofline (138.2 where
    its profile gives 95.5) without a word; Arabic-Indic digits were read as numbers; a logged -1 GiB was scored."""
    ledger = _ledger_with(tmp_path, ROOT / source, column, value)
    line = one_line_error(["validate", flag, str(ledger)])
    assert line.startswith(f"kvcalc: error: {flag}: ") and message in line


def test_speculation_takes_one_of_alpha_and_accepted():
    """A19: `eagle,k=4,alpha=0.7,accepted=2` reported alpha 0.7 beside 2.0 tokens a step, where alpha 0.7 at k = 4
    gives (1 - 0.7^5) / (1 - 0.7) = 2.7731."""
    assert one_line_error(["estimate", "-m", "llama-3-8b", "--speculate", "eagle,k=4,alpha=0.7,accepted=2"]) == (
        "kvcalc: error: --speculate: alpha= and accepted= both set the tokens a verify step yields; give one")
    doc = json.loads(runner.invoke(app, ["estimate", "-m", "llama-3-8b", "--speculate", "eagle,k=4,alpha=0.7", "-f",
                                         "json"]).stdout)
    assert doc["speculative"]["tokens_per_step"] == pytest.approx((1 - 0.7 ** 5) / (1 - 0.7), abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["estimate", "-m", "llama-3-8b", "--speculate", "draft=gpt2,k=4,alpha=0.5"], "--speculate draft=: unknown model"),
    (["estimate", "-m", "llama-3-8b", "-g", "/etc/hostname"],
     "--gpu: /etc/hostname: spec files end in .toml, .yaml or .yml; got no suffix"),
    (["estimate", "-m", "llama-3-8b", "--profile", ""], "--profile: empty; expected an engine profile file"),
    (["estimate", "-m", "llama-3-8b", "--profile", str(ROOT / "hardware_specs" / "h100-sxm.toml")],
     "expected an engine profile file (engine, gpu and curves), not a hardware or model spec"),
    (["estimate", "-m", "llama-3-8b", "--profile", "nothere.toml"], "--profile: nothere.toml: cannot read"),
    (["estimate", "-m", "llama-3-8b", "-b", "1", "-b", "2"], "--batch: given twice (-b and -b); give it once"),
    (["estimate", "-m", "llama-3-8b", "-b", "1", "--batch=2"], "--batch: given twice (-b and --batch=2)"),
    (["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "--request-rate", "1", "-g", "h100-sxm,h100"],
     "--gpu: 'h100' is h100-sxm, already listed; give each GPU once"),
    (["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "--request-rate", "1", "--engines", "vllm,vllm"],
     "--engines: vllm listed twice"),
    (["serve", "-m", "llama-3-8b", "-i", "10", "--output-len", "5", "-n", "1,1"], "--concurrency: 1 listed twice"),
])
def test_messages_name_the_flag_the_user_gave(args, message):
    """A8, A10, A12, A14, A20: a draft model's errors named --model (given right), a GPU spec file's error named no
    flag and spoke of models' config.json, --profile '' was ignored and its errors named no flag, a flag given twice
    took the last, and plan listed an alias of a GPU (or an engine) twice."""
    line = one_line_error(args)
    assert message in line, line


@pytest.mark.parametrize("spelling", ["90", "P90", "p90", "90.0"])
def test_plan_takes_the_percentile_as_serve_spells_it(spelling):
    """A13: serve's help said plan spelled --percentile as 90, p90 or P90; plan refused 90 and P90."""
    doc = json.loads(runner.invoke(app, ["plan", "-m", "llama-3-8b", "-i", "100", "-o", "10", "--request-rate", "1",
                                         "--max-ttft-ms", "50", "--percentile", spelling, "-f", "json"]).stdout)
    assert doc["limits"]["percentile"] == "p90"


def test_the_web_app_reads_no_file_of_its_host_and_takes_each_key_once():
    """A11, A12: profile=, and a path in model= or gpu=, read files on the server's disk (and said whether /etc/passwd
    exists); batch=1&batch=2 took the last."""
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    c = TestClient(create_app())
    for query, field in (("model=llama-3-8b&profile=/etc/passwd", "--profile"), ("model=llama-3-8b&gpu=/etc/hostname",
                         "--gpu"), (f"model={ROOT / 'model_specs' / 'llama-3-8b.toml'}", "--model"),
                         ("model=llama-3-8b&batch=1&batch=2", "--batch"),
                         ("model=llama-3-8b&speculate=draft=/etc/passwd,k=4,alpha=0.5", "--speculate")):
        r = c.get(f"/api/estimate?{query}")
        assert r.status_code == 422 and r.json()["field"] == field, r.json()
    assert c.get("/api/estimate?model=llama-3-8b&gpu=h100").status_code == 200


@pytest.mark.parametrize("model, gpu, kw", [
    ("llama-3.1-8b", "h100-sxm", {"input_len": 200, "output_len": 2, "concurrency": 1, "tp": 1}),
    ("qwen3-30b-a3b", "b200", {"input_len": 50, "output_len": 1, "concurrency": 2, "tp": 4}),
    ("llama-3.1-8b", "h100-sxm", {"input_len": 1000, "output_len": 10, "concurrency": 4, "tp": 1}),
])
def test_a_closed_loop_keeps_its_requests_in_flight_through_the_servers_overhead(model, gpu, kw):
    """B2: the per-request overhead (API server, tokenisation; 9.86 ms in vLLM's V1 band) was added to each TTFT and
    E2E but did not delay the client's next request: at -n 1, 62.6 requests/s at a mean E2E of 25.74 ms, 1.61 in
    flight by Little's law. A closed loop of C holds C: rate x mean E2E = C."""
    import kvcalc

    r = kvcalc.simulate(model, gpu, engine="vllm", arrivals="closed", num_prompts=200, **kw)
    assert r["request_overhead_ms"] > 5
    in_flight = r["requests_per_s"] * r["e2e_ms"]["mean"] / 1e3
    assert in_flight == pytest.approx(kw["concurrency"], rel=0.02)
    if kw["concurrency"] == 1:  # one at a time: the closed form's 1 / latency
        closed = kvcalc.serve(model, gpu, engine="vllm", **kw)
        assert r["requests_per_s"] == pytest.approx(closed["requests_per_s"], rel=1e-3)


@pytest.mark.parametrize("model, kw", [("llama-3.1-8b", {"tp": 2}), ("mixtral-8x7b", {"tp": 4, "pp": 2}),
                                       ("deepseek-v2-lite", {"ep": 4})])
def test_sweep_weights_are_the_deployments_as_estimates_are(model, kw):
    """C2: sweep's weights_bytes was one GPU's share (8,030,527,488 of Llama-3.1-8B's 16,060,522,496 at TP 2) beside
    kv_bytes of the whole batch, where estimate's weights.bytes is the deployment's."""
    import kvcalc

    df = kvcalc.sweep([model], ["h100-sxm"], batch=[1], context=[4096], tp=[kw.get("tp", 1)], pp=[kw.get("pp", 1)],
                      ep=[kw.get("ep", 1)])
    est = kvcalc.estimate(model, "h100-sxm", batch=1, context=4096, tp=kw.get("tp", 1), pp=kw.get("pp", 1),
                          ep=kw.get("ep", 1))
    assert float(df["weights_bytes"].iloc[0]) == est.weights.bytes
    assert float(df["kv_bytes"].iloc[0]) == est.kv_cache.bytes


def test_capacity_names_the_time_model_serve_names():
    """C3, C8: capacity's throughput row said "vllm 0.24.0 measured kernel curves" for the L4's profile transferred
    from the L40S and for a 0.7.3 band with its x2.12 MoE factor; its memory rule said "datasheet memory" where it
    budgets from the visible 79.22 GiB."""
    import kvcalc

    c = kvcalc.capacity("llama-3.1-8b", "l4", context=2048)
    s = kvcalc.serve("llama-3.1-8b", "l4", input_len=1024, output_len=1024, concurrency=1)
    assert s["assumptions"]["time_model"] in c["assumptions"]["throughput"]
    assert "transferred from l40s.vllm" in c["assumptions"]["throughput"]
    c = kvcalc.capacity("deepseek-v3", "h200", context=4096, gpus=8, weight_dtype="fp8-block", engine="vllm",
                        engine_version="0.7.3")
    assert f"MoE kernels x{VLLM_ERA:g}" in c["assumptions"]["throughput"] and "v0 band" in c["assumptions"]["throughput"]
    rule = kvcalc.capacity("llama-3.1-8b", "h100-sxm", context=2048)["assumptions"]["memory_rule"]
    assert rule.startswith("kvcalc's: visible memory (the spec's visible_memory_GiB")


def test_explain_shows_the_moe_factor_its_line_multiplies_by():
    """C4: with --engine-version 0.7.3 the routed experts' line substituted to 58 x (27 us + 158 us) = 10.7 ms and
    printed 22.8 ms: the era's x2.12 was left out of the line."""
    args = ["estimate", "--model", "deepseek-v3", "--gpu", "h200", "--tp", "8", "-b", "16", "-c", "4096", "--engine",
            "vllm", "--weight-dtype", "fp8-block", "--explain"]
    old = " ".join(runner.invoke(app, [*args, "--engine-version", "0.7.3"], terminal_width=400).output.split())
    new = " ".join(runner.invoke(app, args, terminal_width=400).output.split())
    import re

    m = re.search(rf"536\.06 MiB / \(4800 GB/s \* 0\.740\)\)\) x {VLLM_ERA:g} \(MoE kernel era\) = ([\d.]+) ms", old)
    assert m and float(m[1]) == pytest.approx(10.7 * VLLM_ERA, abs=0.1)  # the 10.7 ms line below, times the factor
    assert "536.06 MiB / (4800 GB/s * 0.740))) = 10.7 ms" in new and "MoE kernel era) =" not in new


def test_plan_launches_no_sglang_pipeline_with_speculation():
    """C13: README's question 4 chose SGLang TP2xPP2+mtp, and --emit sglang printed --pp-size 2 with
    --speculative-algorithm, which SGLang's server_args check refuses outside disaggregated prefill."""
    from kvcalc.speculation import unsupported_with

    assert "SGLang refuses speculative decoding under pipeline parallelism" in unsupported_with("sglang", 2)
    assert unsupported_with("sglang", 1) is None
    doc = json.loads(runner.invoke(app, ["plan", "-m", "deepseek-v3", "-g", "h200,b200", "-i", "2000", "-o", "500",
                                         "--request-rate", "100", "--max-ttft-ms", "2000", "--max-tpot-ms", "50",
                                         "--price-per-gpu-hour", "h200=3.5,b200=5", "--engines", "sglang", "-f",
                                         "json"]).stdout)
    for row in [doc["choice"], *doc["runners_up"]]:
        assert not (row["speculate"] and row["pipeline_parallel"] > 1), row


def test_the_simulation_names_what_timed_it_and_warns_of_a_v0_release():
    """C15: serve --simulate named no profile, band or MoE factor, and ran a vLLM 0.7.3 (V0) release as "vllm-v1"
    without a word."""
    import kvcalc

    kw = dict(tp=8, engine="vllm", weight_dtype="fp8-block", input_len=1000, output_len=100, arrivals="closed",
              concurrency=4, num_prompts=8)
    r = kvcalc.simulate("deepseek-v3", "h200", engine_version="0.7.3", **kw)
    closed = kvcalc.serve("deepseek-v3", "h200", engine_version="0.7.3", tp=8, engine="vllm", weight_dtype="fp8-block",
                          input_len=1000, output_len=100, concurrency=4)
    assert r["time_model"] == closed["assumptions"]["time_model"] and f"x{VLLM_ERA:g}" in r["time_model"]
    assert any("V0 engine" in w for w in r["warnings"])
    assert not any("V0 engine" in w for w in kvcalc.simulate("deepseek-v3", "h200", **kw)["warnings"])


def test_the_docs_table_of_the_measurements_file_is_what_its_command_prints():
    """C1: docs/validation.md quoted 10.2 % / 97 % / 7.0 % for `validate --published measurements.csv`, which printed
    11.2 % / 94.3 % / 25.0 % (the table predated the release bands' overheads)."""
    import re

    from kvcalc.ledgers.published import ledger

    text = (ROOT / "docs" / "validation.md").read_text()
    block = text[text.index("### End-to-end ledger"):text.index("The target, median <= 10 %")]
    got = {(s["rows"], s["group"]): s for s in ledger(ROOT / "validation" / "published" / "measurements.csv")["summary"]}
    groups = {"all": "all", "TensorRT-LLM": "engine trtllm", "gpt-fast (multi-GPU rows)": "engine gpt-fast",
              "vLLM": "engine vllm", "gpt-fast (single-GPU rows)": "engine gpt-fast"}
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| (\d+) \| ([\d.]+) % \| ([\d.]+) % \| 0 \|$", block, re.M)
    assert len(rows) == 6
    for kind, engine, n, median, worst in rows:
        kind, engine = kind.strip(), engine.strip()
        s = got[("fit" if kind.startswith("fitted") else "score", groups[engine])]
        assert s["n"] == int(n)
        if "roofline" in kind:
            assert s["roofline_median_abs_error_pct"] == float(median)
        else:
            assert (s["median_abs_error_pct"], round(s["worst_abs_error_pct"], 1)) == (float(median), float(worst))


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3.1-8b", "-g", "v100-sxm2-32gb"],
    ["serve", "-m", "llama-3.1-8b", "-g", "v100-sxm2-32gb", "-i", "100", "--output-len", "100", "-n", "2"],
    ["capacity", "-m", "llama-3.1-8b", "-g", "v100-sxm2-32gb", "-c", "2048"],
])
def test_the_no_profile_warning_is_in_the_json_and_on_stderr_once(args):
    """C7: the V100's "no engine profile" warning reached stderr but not the JSON's warnings list (estimate's Python
    API had it in neither)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "kvcalc", *args, "-f", "json"], capture_output=True, text=True,
                         timeout=120)
    doc = json.loads(out.stdout)
    message = "--engine auto: no engine profile for v100-sxm2-32gb"
    assert sum(message in w for w in doc["warnings"]) == 1
    assert out.stderr.count(message) == 1


@pytest.mark.parametrize("kind, line, value, message", [
    ("gpu", "memory_GiB = 80", 'memory_GiB = "8_0"', "memory_GiB: expected a number, got the string '8_0'"),
    ("gpu", "memory_GiB = 80", 'memory_GiB = " 80 "', "memory_GiB: expected a number, got the string ' 80 '"),
    ("model", "num_layers = 32", 'num_layers = "32"', "num_layers: expected a number, got the string '32'"),
    ("model", "num_layers = 32", "num_layers = 32.0", "num_layers: expected a whole number, got 32.0"),
    ("model", "tie_word_embeddings = false", 'tie_word_embeddings = "false"',
     "tie_word_embeddings: expected true or false, got 'false'"),
])
def test_spec_files_take_numbers_and_switches_as_written(tmp_path, kind, line, value, message):
    """A18: a hardware or model spec file's "8_0", " 80 " and "32" were read as numbers, 32.0 as 32 and "false" as
    false (pydantic's lax mode), where the config.json reader refuses each."""
    source = ROOT / ("hardware_specs/h100-sxm.toml" if kind == "gpu" else "model_specs/llama-3-8b.toml")
    text = source.read_text()
    assert f"\n{line}\n" in text
    spec = tmp_path / "spec.toml"
    spec.write_text(text.replace(f"\n{line}\n", f"\n{value}\n", 1))
    flag = "-g" if kind == "gpu" else "-m"
    args = ["estimate", "-m", "llama-3-8b", "-g", str(spec)] if kind == "gpu" else ["estimate", "-m", str(spec)]
    assert one_line_error(args) == f"kvcalc: error: --{kind}: {spec}: {message}", flag


def test_deepseek_sparse_attention_in_fp8_is_flashmlas_record():
    """B3: DeepSeek-V3.2 with an fp8 cache was 708 B a token and layer (576 fp8 + the indexer's 132); vLLM stores
    FlashMLA's sparse fp8 record, 512 fp8 + 4 fp32 scales + 64 bf16 RoPE = 656 B (flashmla_sparse.py), + 132."""
    import kvcalc

    e = kvcalc.estimate("deepseek-v3.2", "h200", tp=8, kv_dtype="fp8")
    assert e.kv_cache.bytes_per_token_per_layer == 512 + 4 * 4 + 64 * 2 + 128 + 4 == 788
    assert kvcalc.estimate("deepseek-v3.2", "h200", tp=8).kv_cache.bytes_per_token_per_layer == 576 * 2 + 132
    assert kvcalc.estimate("deepseek-v3", "h200", tp=8, kv_dtype="fp8").kv_cache.bytes_per_token_per_layer == 576


def test_gptq_8_bit_groups_count_their_scales_and_zero_points(tmp_path):
    """B4: a GPTQ 8-bit checkpoint with group_size 128 was read as per-channel int8 (int8-wo), its fp16 scale and
    8-bit zero point per group and column dropped: 1.8 % short. Now 1 + 3/128 B a quantised weight."""
    import kvcalc
    from kvcalc.dtypes import bytes_per_element

    config = json.loads((ROOT / "tests" / "fixtures" / "hf" / "Meta-Llama-3-8B" / "config.json").read_text())
    sizes = {}
    for group in (128, -1):
        folder = tmp_path / f"g{group}"
        folder.mkdir()
        qc = {"quant_method": "gptq", "bits": 8, "group_size": group, "desc_act": False, "sym": True}
        (folder / "config.json").write_text(json.dumps({**config, "quantization_config": qc}))
        e = kvcalc.estimate(str(folder / "config.json"), "h100-sxm")
        sizes[group] = (e.inputs.weight_dtype, e.weights.bytes)
    assert sizes[128][0] == "int8-g128" and sizes[-1][0] == "int8-wo"
    assert bytes_per_element("int8-g128") == 1 + 3 / 128
    # per-channel int8 takes 1 B a quantised weight where bf16 takes 2 (the rest 2 B in both): the difference is
    # the quantised weights' count, Llama-3-8B's 6,979,321,856 linear weights
    quantised = kvcalc.estimate("llama-3-8b", "h100-sxm").weights.bytes - sizes[-1][1]
    assert quantised == 6_979_321_856
    assert sizes[128][1] - sizes[-1][1] == quantised * 3 / 128


def test_the_simulators_vllm_pool_is_capacitys():
    """B5: the simulator sized vLLM's pool from its printed max concurrency in raw tokens and padded each request to
    blocks again: 35,125.6 tokens where capacity counts 35,248 (Qwen3-32B on an H100, 2,009-token requests)."""
    import kvcalc

    cap = kvcalc.capacity("qwen3-32b", "h100-sxm", context=2009, engine="vllm")
    sim = kvcalc.simulate("qwen3-32b", "h100-sxm", input_len=1000, output_len=1009, engine="vllm", arrivals="closed",
                          concurrency=2, num_prompts=2)
    assert sim["kv_pool_tokens"] == cap["engine_memory"]["kv_tokens"] == 35_248


@pytest.mark.parametrize("args, message", [
    (["-m", "llama-3.1-8b", "--ep", "2"], "--ep: no combination applies to the models given: llama-3.1-8b at tp 1 x "
                                          "pp 1 x ep 2 (--ep: llama-3.1-8b has no experts)"),
    (["-m", "mixtral-8x7b", "--ep", "2", "--pp", "2"], "(--ep: not with --pp)"),
    (["-m", "llama-3.1-8b", "--tp", "3"], "--tp: no combination applies"),
])
def test_sweep_names_the_flag_that_leaves_nothing_to_sweep(tmp_path, args, message):
    """C14: a dense model's --ep 2 was blamed on --tp/--pp, in two lines listing every possible cause."""
    line = one_line_error(["sweep", *args, "-o", str(tmp_path / "x.csv")])
    assert message in line, line


def test_compare_names_the_engines_own_count_as_estimate_does():
    """C12: compare -e trtllm gave kvcalc's 63 sequences of Qwen3-32B at 4,096 tokens on an H200 with no word that
    TensorRT-LLM's own rule holds 69 (capacity's count), where estimate now warns with it."""
    import kvcalc

    held = kvcalc.capacity("qwen3-32b", "h200", context=4096, engine="trtllm")["max_sequences_at_context"]
    with pytest.warns(UserWarning) as caught:
        rows = kvcalc.compare("qwen3-32b", ["mqa"], "h200", context=4096, engine="trtllm")
    own = rows[0]["max_batch_at_context"]
    assert (own, held) == (63, 69)
    assert any(f"own {held} (kvcalc's {own})" in str(w.message) for w in caught)


def test_estimate_csv_carries_the_notes_its_json_carries():
    """Minor note of part C: estimate's CSV dropped the *_note keys its JSON has (README: the same scalar fields as
    one row)."""
    import csv
    import io

    args = ["estimate", "-m", "llama-3-8b"]
    row = next(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "-f", "csv"]).stdout)))
    doc = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert row["speculative_note"] == doc["speculative_note"] and row["speculative"] == ""
    assert int(row["kv_cache.bytes"]) == doc["kv_cache"]["bytes"]  # whole bytes, as the JSON prints them


@pytest.mark.parametrize("command", ["serve", "simulate", "capacity", "compare"])
def test_every_command_says_which_operators_the_profile_does_not_time(command):
    """C7: estimate warned that Nemotron-H's linear-attention state has no measured curve in the vLLM profile (the
    datasheet efficiencies time it); serve, the simulator, capacity and compare timed it the same way in silence."""
    import kvcalc

    expected = kvcalc.estimate("nemotron-h-8b", "h100-sxm").warnings
    [note] = [w for w in expected if "has no measured curve" in w]
    kw = dict(input_len=100, output_len=100, concurrency=2)
    with pytest.warns(UserWarning) as caught:
        if command == "serve":
            out = kvcalc.serve("nemotron-h-8b", "h100-sxm", **kw)["warnings"]
        elif command == "simulate":
            out = kvcalc.simulate("nemotron-h-8b", "h100-sxm", arrivals="closed", num_prompts=4, **kw)["warnings"]
        elif command == "capacity":
            out = kvcalc.capacity("nemotron-h-8b", "h100-sxm", context=2048)["warnings"]
        else:
            kvcalc.compare("nemotron-h-8b", ["mqa"], "h100-sxm")
            out = [note]
    assert note in out and any(str(w.message) == note for w in caught)



def test_verification_of_the_fixes_found_seven_more(tmp_path):
    """The verification pass (V1-V10): `show` took an option twice; the web read a draft model's path and let
    convert=true&no_convert=true run as whichever came last; a trace with two columns it does not read was refused;
    plan named its time model unlike serve."""
    assert one_line_error(["show", "gpu", "h100-sxm", "-f", "toml", "-f", "json"]) == (
        "kvcalc: error: --format: given twice (-f and -f); give it once")
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_len,output_len,note,note,,\n0,100,20,a,b,,\n0.5,120,30,c,d,,\n")
    assert json.loads(runner.invoke(app, [*TRACE, str(trace), "-f", "json"]).stdout)["completed"] == 2
    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    r = TestClient(create_app()).get("/api/plan?model=llama-3-8b&gpu=h100&input_len=512&output_len=128&"
                                     "concurrency=8&convert=true&no_convert=true")
    assert r.status_code == 422 and r.json()["field"] == "--convert"
    plan = json.loads(runner.invoke(app, ["plan", "-m", "qwen3-30b-a3b", "-g", "h100", "-i", "512", "-o", "128", "-n",
                                          "16", "--engines", "vllm", "-f", "json"]).stdout)
    serve = json.loads(runner.invoke(app, ["serve", "-m", "qwen3-30b-a3b", "-g", "h100", "-e", "vllm", "-i", "512",
                                           "--output-len", "128", "-n", "16", "-f", "json"]).stdout)
    if plan["choice"]["layout"] == "TP1" and plan["choice"]["weight_dtype"] == "bf16":
        assert plan["choice"]["time_model"].startswith(serve["assumptions"]["time_model"])
    assert plan["choice"]["time_model"].startswith("vllm h100-sxm.vllm (vllm 0.24.0;")


def test_yaml_spec_numbers_are_yaml_1_2s(tmp_path):
    """V3, V4: after A18 a YAML spec's 3.35e3 (a string to YAML 1.1) was refused, while 8_0, 0x50 and 2:12 (numbers
    to YAML 1.1) were read; specs now read YAML with the 1.2 core schema's numbers, as TOML and JSON do."""
    yaml = pytest.importorskip("yaml")
    import tomllib

    data = tomllib.loads((ROOT / "hardware_specs" / "h100-sxm.toml").read_text())
    for value, ok in (("3350", True), ("3.35e3", True), ("3_350", False), ("0xD16", False), ("55:50", False)):
        text = yaml.safe_dump({**data, "memory_bandwidth_GBps": "PLACEHOLDER"}, sort_keys=False)
        spec = tmp_path / "gpu.yaml"
        spec.write_text(text.replace("'PLACEHOLDER'", value).replace("PLACEHOLDER", value))
        out = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-g", str(spec), "-e", "roofline", "-f", "json"])
        assert (out.exit_code == 0) == ok, (value, out.output)
        if not ok:
            assert "memory_bandwidth_GBps: expected a number, got the string" in out.output


def test_sglang_budgets_deepseek_v32s_fp8_cache_by_its_cell_size():
    """V6: SGLang sizes its pool with (kv_lora_rank + qk_rope_head_dim) x 1 B + the indexer's 132 B a token and layer
    (model_runner.py profile_max_num_token), though it stores FlashMLA's 656-B record: 33 sequences of 32,768 tokens on
    8 H200s where the record's 788 B give 30; vLLM's rule counts the record."""
    import kvcalc

    kw = dict(context=32768, gpus=8, kv_dtype="fp8")
    s = kvcalc.capacity("deepseek-v3.2", "h200", engine="sglang", **kw)
    pool = s["engine_memory"]["available_kv_bytes"]
    # (the pools' token counts moved 1.6 % once each GPU held the indexer's projections whole: the twentieth audit, N2)
    assert s["engine_memory"]["kv_tokens"] == pool // ((512 + 64 + 128 + 4) * 61) == 1_088_556
    assert s["max_sequences_at_context"] == 33
    v = kvcalc.capacity("deepseek-v3.2", "h200", engine="vllm", **kw)["engine_memory"]
    # vLLM's pages hold the record: whole 16-token blocks of 788 B a token and layer
    assert v["kv_tokens"] == v["available_kv_bytes"] // (788 * 61 * 16) * 16 == 945_280


def test_a_dict_of_numbers_in_a_spec_takes_numbers_as_written(tmp_path):
    """V11: `kept_layers = { mlp = "3" }` (and 3.0) under [quantization] was still read as 3."""
    text = runner.invoke(app, ["show", "model", "deepseek-v3", "-f", "toml"]).stdout
    text = text.replace('name = "deepseek-v3"', 'name = "dsk"', 1)
    text = "\n".join("aliases = []" if line.startswith("aliases = ") else line for line in text.splitlines())
    for value, message in (('"3"', "expected a number, got the string '3'"), ("3.0", "expected a whole number, got 3.0")):
        spec = tmp_path / "dsk.toml"
        spec.write_text(text.replace("lm_head = false", f"lm_head = false\nkept_layers = {{ mlp = {value} }}", 1))
        assert one_line_error(["show", "model", str(spec)]).endswith(f"quantization: kept_layers.mlp: {message}")


@pytest.mark.parametrize("symmetric", [True, False])
def test_compressed_tensors_8_bit_groups_are_read_right_or_refused(tmp_path, symmetric):
    """V13: llm-compressor's W8A16 group scheme was read as int8-wo, its group scales dropped (1.2 % short)."""
    config = json.loads((ROOT / "tests" / "fixtures" / "hf" / "Meta-Llama-3-8B" / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None, "weights": {
            "num_bits": 8, "type": "int", "symmetric": symmetric, "strategy": "group", "group_size": 128}}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["estimate", "-m", str(tmp_path), "-f", "json"]
    if symmetric:
        assert "symmetric 8-bit groups of 128 store a 16-bit scale a group and no zero point" in one_line_error(args)
    else:
        assert json.loads(runner.invoke(app, args).stdout)["inputs"]["weight_dtype"] == "int8-g128"


def test_tensorrt_llm_with_a_draft_model_under_pipeline_stages_is_named():
    """V15: TensorRT-LLM's PyTorch executor raises "Drafting is not supported for selected executor loop" with a
    drafter under pp > 1; kvcalc timed it without the warning it gives for vLLM and SGLang."""
    import kvcalc

    warnings_ = kvcalc.estimate("llama-3-8b", engine="trtllm", pp=2,
                                speculate="draft=llama-3.2-1b,k=4,alpha=0.7").warnings
    assert any("TensorRT-LLM's PyTorch executor refuses a draft model under pipeline" in w for w in warnings_)
    assert not any("refuses a draft" in w for w in kvcalc.estimate(
        "llama-3-8b", engine="trtllm", pp=1, speculate="draft=llama-3.2-1b,k=4,alpha=0.7").warnings)


def test_every_link_a_page_offers_answers():
    """V12: the roofline page offered a CSV link (and "--format json prints the same") for a command without
    --format: the link answered 422."""
    import re

    pytest.importorskip("fastapi")
    from starlette.testclient import TestClient

    from kvcalc.web.app import create_app

    c = TestClient(create_app())
    queries = {"roofline": "model=llama-3-8b", "estimate": "model=llama-3-8b", "compare": "model=llama-3-8b",
               "capacity": "model=llama-3-8b&context=8192",
               "serve": "model=llama-3-8b&input_len=1000&output_len=200&concurrency=1,8",
               "plan": "model=llama-3-8b&input_len=1000&output_len=200&concurrency=8"}
    for page, query in queries.items():
        html = c.get(f"/{page}?{query}").text
        for link in re.findall(r'href="(/api/[^"]+)"', html):
            assert c.get(link.replace("&amp;", "&")).status_code == 200, (page, link)


def test_serve_csv_holds_whole_bytes_as_its_json():
    """The fifth audit's Left list: serve's CSV gave kv_pool_bytes_per_gpu as the rule's float where its JSON rounds
    byte counts to integers; CLI and web now write json_safe's row."""
    import csv
    import io

    args = ["serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "2"]
    row = next(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "-f", "csv"]).stdout)))
    doc = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert row["kv_pool_bytes_per_gpu"] == str(doc["kv_pool_bytes_per_gpu"]) and "." not in row["kv_pool_bytes_per_gpu"]


def test_launch_commands_run_what_was_planned():
    """D1, D7, D8: a disaggregated replica's decode servers were each given the replica's whole budget (490 on each
    of 3 where plan timed 164); TensorRT-LLM's EP8/TP2 (attention DP over TP-2 groups, which it cannot run) was
    planned and launched as EP8/TP1; and TensorRT-LLM's chunked context stayed off, so prompts longer than
    max_num_tokens, which plan timed in chunks, were refused."""
    import math

    from kvcalc.engines.launch import emit
    from kvcalc.planning.plan import deployments, plan
    from kvcalc.specs.catalog import load_gpu, load_model

    r = plan("qwen3-235b-a22b", ["h200"], input_len=2000, output_len=500, request_rate=20, max_tpot_ms=50,
             engines=["trtllm"])
    c = r["choice"]
    assert c["disaggregate"] is not None
    # a replica of 2 prefill and 3 decode servers of TP 2 (plan's choice here until the fourteenth audit's changes
    # made it 4:4 at TP 4, one server a pool): each decode server takes its share of the replica's budget
    c = {**c, "disaggregate": "4:6", "tensor_parallel": 2, "gpus_per_replica": 10}
    text = emit("trtllm", load_model("qwen3-235b-a22b"), c, r["workload"]["max_model_len"])
    share = math.ceil(c["max_num_seqs"] / (6 // 2))
    assert text.count(f"--max_batch_size {share} ") == 2 and f"--max_batch_size {c['max_num_seqs']} " not in text
    assert "enable_chunked_prefill: true" in text
    found = deployments(load_model("deepseek-v3"), [load_gpu("h200")], ["trtllm", "sglang"], convert=False,
                        max_gpus=16, disaggregated=False)
    assert not any(d.engine == "trtllm" and d.ep > d.tp > 1 for d in found)
    assert any(d.engine == "trtllm" and d.ep > 1 and d.tp == 1 for d in found)
    assert any(d.engine == "sglang" and d.ep > d.tp > 1 for d in found)


def test_breakeven_is_the_batch_from_which_speculation_stops_paying():
    """E1: on a MoE the speed-up is not monotone (0.95x at batch 1, 1.66x at 64): breakeven_batch was 1 and --explain
    printed "1.66x; 1x or less from batch 1". It is now the batch from which speculation stops paying up to 4,096."""
    import kvcalc

    kw = dict(context=1024, speculate="eagle,k=4,alpha=0.5")
    at64 = kvcalc.estimate("qwen3-30b-a3b", "h100-sxm", batch=64, **kw).speculative
    at1 = kvcalc.estimate("qwen3-30b-a3b", "h100-sxm", batch=1, **kw).speculative
    assert at1.speedup < 1 < at64.speedup
    b = at64.breakeven_batch
    assert b is None or b > 64
    if b is not None:
        assert kvcalc.estimate("qwen3-30b-a3b", "h100-sxm", batch=b, **kw).speculative.speedup <= 1


def test_capacity_names_the_weights_as_binding_at_a_low_utilisation():
    """E7: at --memory-utilization 0.5 capacity said "the weights fit on 2 GPUs" for Llama-3.1-70B, whose 141 GB of
    bf16 weights need 70.6 GB a GPU at TP 2 against 42.5 usable (0.5 x 79.22 GiB): its evaluate used 0.9."""
    import kvcalc

    c = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=8192, memory_utilization=0.5)
    assert c["min_gpus_for_weights"] == c["tensor_parallel"] == 4
    assert c["binding"] == "weights: they need 4 GPUs' memory"


@pytest.mark.parametrize("name, text, message", [
    ("o.json", '{"max_concurrency": 8, "completed": 100, "total_input_tokens": 100000, "total_output_tokens": 50, '
               '"mean_ttft_ms": 40.0, "mean_tpot_ms": 9.0}\n', "mean output tokens 0.5: under one token is no request"),
    ("u.csv", "batch,input_len,output_len,tpot_ms\n1_6,1_000,2_00,9\n", "field batch: expected a number, got '1_6'"),
])
def test_benchmark_files_are_read_alike_and_as_written(tmp_path, name, text, message):
    """D5, D6: a JSON benchmark's mean of 0.5 output tokens was fitted where the CSV refused it; the CSV read 1_6 as
    16."""
    bench = tmp_path / name
    bench.write_text(text)
    line = one_line_error(["calibrate", "--from-benchmark", str(bench), "-o", str(tmp_path / "out.toml"), "-m",
                           "llama-3.1-8b", "-g", "h100-sxm"])
    assert message in line
