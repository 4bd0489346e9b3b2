"""Regressions from the long fuzz (kvcalc issue 23, item 4: benchmarks/fuzz_long.py, tests/test_fuzz_long.py).

Each test is one finding, minimised to its one-line reproducer (quoted in the test), and fails before its fix.
"""

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"
NERDALERT = FIXTURES / "benchmarks" / "nerdalert-llm-d-l40s-vllm-results.json"


def _one_error_line(r, *needles):
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("kvcalc: error:")]
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize("tpot_ms, message", [
    (0, "field mean_tpot_ms: expected a positive number, got 0"),  # was ZeroDivisionError in the fit's error
    (5e-324, "TPOT 5e-324 ms is too small to fit against"),  # was "median |error| inf %" and an overflow warning
])
def test_calibrate_refuses_a_benchmark_tpot_it_cannot_divide_by(tmp_path, tpot_ms, message):
    # kvcalc calibrate --from-benchmark b.json -m llama-3.2-3b -g l40s -e vllm -o p.toml, b.json's mean_tpot_ms = 0
    run = json.loads(NERDALERT.read_text().splitlines()[0])
    run["mean_tpot_ms"] = tpot_ms
    (tmp_path / "b.json").write_text(json.dumps(run))
    r = runner.invoke(app, ["calibrate", "--from-benchmark", str(tmp_path / "b.json"), "-m", "llama-3.2-3b", "-g", "l40s",
                            "-e", "vllm", "-o", str(tmp_path / "p.toml")])
    _one_error_line(r, "b.json: line 1", message)
    assert not (tmp_path / "p.toml").exists()


def test_calibrate_refuses_a_benchmark_past_kvcalcs_limits(tmp_path):
    # the same with max_concurrency = 1e308: OverflowError (int too large to convert to float) timing a batch of 1e308.
    # A run has no more in flight than it sent (the twelfth audit, E1), so as many requests are sent here too
    run = json.loads(NERDALERT.read_text().splitlines()[0])
    run["max_concurrency"], run["completed"], run["request_rate"] = 1e308, 1e300, "inf"
    run["total_input_tokens"], run["total_output_tokens"] = 999e300, 270e300
    (tmp_path / "b.json").write_text(json.dumps(run))
    r = runner.invoke(app, ["calibrate", "--from-benchmark", str(tmp_path / "b.json"), "-m", "llama-3.2-3b", "-g", "l40s",
                            "-e", "vllm", "-o", str(tmp_path / "p.toml")])
    _one_error_line(r, "b.json: line 1: requests in flight 1e+300 past kvcalc's limit of 10,000,000")


def test_serve_holds_as_many_requests_as_capacity_to_the_last_one():
    # kvcalc capacity -m llama-3-8b -g mi300x -e vllm --kv-dtype fp8 --tp 2 --pp 4 -c 3: 1,387,007 (vLLM's 16-token
    # blocks, one a request); kvcalc serve ... -i 1 --output-len 2 -n 1: max_concurrency 1,387,006, since
    # floor(pool / (pool / 1387007)) = floor(1387006.9999999998). (1,386,859 since the MI300X's pool starts from the
    # 191.98 GiB rocminfo reports, not the datasheet's 192.)
    from kvcalc.serving.closed_form import serve

    kw = {"tp": 2, "pp": 4, "engine": "vllm", "kv_dtype": "fp8"}
    plan = runner.invoke(app, ["capacity", "-m", "llama-3-8b", "-g", "mi300x", "-e", "vllm", "--kv-dtype", "fp8",
                               "--tp", "2", "--pp", "4", "-c", "3", "-f", "json"])
    out = json.loads(plan.stdout)
    held = out["max_sequences_at_context"]
    assert held == out["engine_memory"]["kv_tokens"] // 16 == 1386859  # a 3-token request: one 16-token vLLM block
    with pytest.warns(Warning):  # vLLM 0.30's CUDA-graph note
        served = serve("llama-3-8b", "mi300x", input_len=1, output_len=2, concurrency=1, **kw)
    assert served["max_concurrency"] == held


def test_wave_batches_by_hand():
    """formulas/workload.py wave_batches. Four prompts of 3,000 tokens, 5 out, 8,192 a step: prompts end at steps
    1, 1, 2, 2 (n_p 2); requests 0 and 1 decode 1 step beside prompt 2-3's chunk (m 1, 1, 0, 0): 2 decodes over 2
    prefill steps = 1 beside a chunk (not (C - 1) / 2 = 1.5); then t = 4 - m = 3, 3, 4, 4 pure decode steps: 14
    request-steps over 4 steps = 3.5 a step (not C = 4). Four prompts of 8,192, 2 out (one decode each): prompts
    end at steps 1-4, requests 0-2 make their one decode beside a later chunk (m 1, 1, 1, 0): 3 / 4 beside a chunk,
    and only request 3 is left for the one pure decode step."""
    from kvcalc.formulas.workload import wave_batches

    assert wave_batches(4, 3000, 5, 8192) == pytest.approx((1.0, 3.5))
    assert wave_batches(4, 8192, 2, 8192) == pytest.approx((0.75, 1.0))
    assert wave_batches(1, 100, 1, 8192) == (0.0, 1.0)  # no decode at all: a lone prompt


def test_serve_in_waves_never_serves_fewer_requests_for_more_in_flight():
    # kvcalc serve -m chatglm2-6b -g rtx-pro-6000 -e sglang --tp 4 -i 8093 --output-len 768 -n 100,694
    #   --speculate eagle,k=4 --arrivals waves: 2.48 then 2.03 requests/s. The prompts of 694 requests take ~690 prefill
    # steps, a request decodes 767 / 3.36 = 228: every prefill step was timed with (C - 1) / 2 = 347 decodes beside it
    # and the last 228 decode steps with all 694, when most had finished (their decode counted twice).
    from kvcalc.serving.closed_form import serve

    # (SGLang runs 48 at once under EAGLE unless --max-running-requests says more: the fourteenth audit, S7)
    kw = {"tp": 4, "engine": "sglang", "input_len": 8093, "output_len": 768, "speculate": "eagle,k=4",
          "arrivals": "waves", "max_num_seqs": 1024}
    # (694 itself is now refused: a wave's requests reach full length together, and the pools hold 667-670)
    rates = [serve("chatglm2-6b", "rtx-pro-6000", concurrency=c, **kw)["requests_per_s"] for c in (100, 200, 400, 660)]
    assert rates == sorted(rates), rates
    # where decodes run beside the prompts (vLLM's schedule), a wave idles where the steady state refills: never
    # faster. Under SGLang's prefill-first schedule a fixed-length wave decodes all its requests together and none
    # idles, so it may edge the engine-agnostic steady state (2.71 against 2.69 requests/s here)
    mixed = {**kw, "engine": "vllm", "max_num_seqs": None}
    wave = serve("chatglm2-6b", "rtx-pro-6000", concurrency=660, **mixed)
    staggered = serve("chatglm2-6b", "rtx-pro-6000", concurrency=660, **{**mixed, "arrivals": "staggered"})
    assert wave["requests_per_s"] <= staggered["requests_per_s"]


@pytest.mark.parametrize("input_len", [1, 4, 24])
def test_the_simulation_times_a_short_moe_prompt_as_serve_does(input_len):
    # kvcalc serve --simulate -m mixtral-8x7b -g h200 -e roofline -i 1 --output-len 1 -n 1: TTFT 1.98 ms, below the
    # 5.31 ms a 1-token prefill's speed of light allows (it reads 2 of the 8 experts of every layer). The simulator's
    # step grid held chunks of 0 and 16 tokens and drew a chord between them; a MoE step is concave in its tokens.
    # One request at a time runs one prefill step of the prompt alone: the closed form's TTFT, to float order.
    common = ["-m", "mixtral-8x7b", "-g", "h200", "-e", "roofline", "-i", str(input_len), "--output-len", "1",
              "-n", "1", "-f", "json"]
    simulated = runner.invoke(app, ["serve", "--simulate", *common, "--num-prompts", "10"])
    closed = runner.invoke(app, ["serve", *common])
    one = runner.invoke(app, ["estimate", "-m", "mixtral-8x7b", "-g", "h200", "-e", "roofline", "-b", "1", "-c",
                              str(input_len), "--prompt", str(input_len), "-f", "json"])
    ttft_ms = json.loads(simulated.stdout)["ttft_ms"]["p50"]
    assert ttft_ms == pytest.approx(json.loads(closed.stdout)["ttft_ms"], rel=1e-9)
    assert ttft_ms >= json.loads(one.stdout)["prefill"]["speed_of_light_ms"]


def test_a_waves_last_prefill_step_holds_only_what_is_left():
    """formulas/workload.py waves with a short last step. Three prompts of 3,000 tokens, 8,192 a step: 9,000 tokens,
    prompts 0 and 1 end in step 1 (1 s), prompt 2 in step 2, which holds its last 808 tokens (0.25 s). Five outputs,
    0.1 s decode steps: TTFT 1, 1, 1.25 s (median 1); requests 0 and 1 decode once beside step 2 then 3 more: 1.25 +
    0.3 = 1.55 s; request 2 decodes 4: 1.25 + 0.4 = 1.65 s, the wave. (Timed as a full step, the wave took 2.4 s.)"""
    from kvcalc.formulas.workload import waves

    w = waves(3, 3000, 5, 8192, 1.0, 0.1, last_prefill_step_s=0.25)
    assert w["ttft_s"] == 1.0 and w["wave_s"] == pytest.approx(1.65) and w["prefill_steps"] == 2
    assert w["tpot_s"] == pytest.approx(0.55 / 4)  # the median request's (1.55 - 1) / 4


def test_serve_in_waves_times_the_last_prefill_step_at_its_own_tokens():
    # kvcalc serve -m llama-3-8b -g h100-sxm -i 16 --output-len 1 -n 512,513 --arrivals waves: 2,684 then 1,344
    # requests/s: 513 prompts of 16 tokens take two 8,192-token steps, the second holding one prompt, and it was timed
    # as a full one. The wave of 513 lasts the wave of 512 plus a lone 16-token prompt's step (the roofline: no
    # per-request overhead in the TTFT).
    from kvcalc.serving.closed_form import serve

    kw = {"input_len": 16, "output_len": 1, "arrivals": "waves", "engine": "roofline"}
    full, more, lone = (serve("llama-3-8b", "h100-sxm", concurrency=c, **kw) for c in (512, 513, 1))
    assert 513 / more["requests_per_s"] == pytest.approx(512 / full["requests_per_s"] + lone["ttft_ms"] / 1e3,
                                                         rel=1e-9)


@pytest.mark.parametrize("cell", ["x", "nan", "inf", "-3", "0"])
def test_a_serving_ledgers_measured_figure_must_be_a_positive_number(tmp_path, cell):
    # validation/serve/unseen-serving.csv with output_tokens_per_s = x on its first row: kvcalc validate --serve
    # ledger.csv was a ValueError traceback (could not convert string to float: 'x') while scoring
    source = Path(__file__).parent.parent / "validation" / "serve" / "unseen-serving.csv"
    header, first = source.read_text(encoding="utf-8").splitlines()[:2]
    column = header.split(",").index("output_tokens_per_s")
    cells = next(csv.reader([first]))
    cells[column] = cell
    out = tmp_path / "ledger.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header.split(","), cells])
    r = runner.invoke(app, ["validate", "--serve", str(out)])
    _one_error_line(r, "line 2, column output_tokens_per_s: expected a positive number or blank")


def test_sweep_and_estimate_agree_on_a_hybrid_models_one_token_prompt(tmp_path):
    # kvcalc sweep -m qwen3-next-80b-a3b -g h100-sxm -e vllm --batch 1 --context 1: prefill 6.448 ms; kvcalc estimate
    # -m qwen3-next-80b-a3b -g h100-sxm -e vllm -b 1 -c 1: 6.437 ms. The linear layers' intra-chunk term (2 n_v 64
    # (d_k + d_v) FLOPs a token, formulas/forward.py) was left out at q = 1 only where q was an int, not in sweep's
    # arrays. Formula by hand: a lone token runs the recurrence alone, 4 n_v d_k d_v FLOPs a layer.
    import numpy as np

    from kvcalc.estimator import precision
    from kvcalc.formulas.forward import linear_attention_ops
    from kvcalc.specs.catalog import load_model

    spec = load_model("qwen3-next-80b-a3b")
    la, p = spec.linear_attention, precision("bf16", "bf16")
    lone = 4 * la.num_value_heads * la.key_head_dim * la.value_head_dim * spec.linear_layers
    for q in (1, np.array([1.0, 1.0])):
        state = next(o for o in linear_attention_ops(spec, 1, q, p, p, decode=False) if o.op_class == "linear_attention")
        assert np.all(state.cost.flops == lone), (q, state.cost.flops, lone)
    out = tmp_path / "s.csv"
    r = runner.invoke(app, ["sweep", "-m", "qwen3-next-80b-a3b", "-g", "h100-sxm", "-e", "vllm", "--batch", "1",
                            "--context", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader(out.open(encoding="utf-8")))
    est = runner.invoke(app, ["estimate", "-m", "qwen3-next-80b-a3b", "-g", "h100-sxm", "-e", "vllm", "-b", "1", "-c",
                              "1", "-f", "json"])
    assert float(row["prefill_ms"]) == pytest.approx(json.loads(est.stdout)["prefill"]["ms"], rel=1e-12)


# Long fuzz, cause A: StepTimer (kvcalc/estimator.py step_ops, formulas/forward.py mixed_ops) timed a prefill chunk
# as one prompt where it held several whole prompts; now each prompt's piece attends to itself (chunk_prompts).
def test_serve_steady_state_rate_never_falls_with_more_short_prompts_in_flight():
    # kvcalc serve -m llama-3-8b -g h100-sxm -e roofline -i 26 --output-len 1 -n 32,400: 2,058 then 1,854 requests/s.
    # At 400 the 8,192-token step holds 315 prompts of 26 tokens, and its attention is costed as one 8,192-token
    # causal sequence (17.6 TFLOP where 315 x 26-token prompts need ~0.06 TFLOP).
    from kvcalc.serving.closed_form import serve

    kw = {"input_len": 26, "output_len": 1, "engine": "roofline"}
    rates = [serve("llama-3-8b", "h100-sxm", concurrency=c, **kw)["requests_per_s"] for c in (32, 114, 400)]
    assert rates == sorted(rates), rates


# Long fuzz, cause B: micro-batches were counted from the decodes only; now the chunk's prompts count too.
def test_serve_in_waves_under_pp_never_gets_a_shorter_ttft_for_more_requests():
    # kvcalc serve -m llama-3-8b -g h100-sxm --pp 2 -i 65 --output-len 2 -n 64,127 --arrivals waves: median TTFT
    # 96.67 then 96.48 ms. At 64 the 4,160-token step of 64 whole prompts runs as one micro-batch (micro-batches
    # count decodes only: min(decodes, pp) = 1); at 127 the 63 decodes beside it split it in two.
    from kvcalc.serving.closed_form import serve

    kw = {"pp": 2, "input_len": 65, "output_len": 2, "arrivals": "waves"}
    ttft = [serve("llama-3-8b", "h100-sxm", concurrency=c, **kw)["ttft_ms"] for c in (64, 127)]
    assert ttft == sorted(ttft), ttft


def test_plan_table_where_nothing_fits_says_why_instead_of_a_traceback():
    # kvcalc plan -m mixtral-8x7b --input-len 1 --output-len 1 -g l40s --max-gpus-per-replica 1 --request-rate 1 -f table:
    # IndexError in the table (no choice and no closest miss: Mixtral's ~93 GB of bf16 weights, ~47 GB in fp8, leave
    # no KV pool on one 48 GB L40S)
    r = runner.invoke(app, ["plan", "-m", "mixtral-8x7b", "--input-len", "1", "--output-len", "1", "-g", "l40s",
                            "--max-gpus-per-replica", "1", "--request-rate", "1", "-f", "table"])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "no deployment holds one full-length request" in r.output
    assert "1 x l40s, vllm, TP1, bf16/bf16: mixtral-8x7b on 1 l40s: the weights and the" in r.output


def test_serve_under_pp_never_splits_one_decode_below_its_speed_of_light():
    # kvcalc serve -m mixtral-8x7b -g h100-sxm -e roofline --pp 2 --input-len 1 --output-len 2 --concurrency 0.25:
    # TPOT 5.90 ms where one decode's speed of light is 7.61 ms (the step's work, one decode beside a 1-token prompt,
    # counted as two micro-batches of half a decode each)
    from kvcalc import estimate
    from kvcalc.serving.closed_form import serve

    out = serve("mixtral-8x7b", "h100-sxm", engine="roofline", pp=2, input_len=1, output_len=2, concurrency=0.25)
    one = estimate("mixtral-8x7b", "h100-sxm", engine="roofline", pp=2, batch=1, context=1)
    assert out["tpot_ms"] >= one.decode.speed_of_light_ms, (out["tpot_ms"], one.decode.speed_of_light_ms)


def test_serve_ttft_never_shortens_when_a_decode_more_takes_a_token_of_the_prompts_step():
    # kvcalc serve -m llama-3-8b -g h100-sxm --pp 2 --input-len 8192 --output-len 37 -n 1,2: median TTFT 373.4363 then
    # 373.4357 ms. An 8,192-token prompt takes two steps beside the decodes; each was timed as the budget's first step
    # (8,192 less the decodes), which a decode more shortened by a token; now each carries the prompt's mean piece.
    from kvcalc.serving.closed_form import serve

    ttft = [serve("llama-3-8b", "h100-sxm", pp=2, input_len=8192, output_len=37, concurrency=c)["ttft_ms"]
            for c in (1, 2)]
    assert ttft[1] >= ttft[0], ttft


def test_a_profile_with_a_denormal_efficiency_is_a_one_line_error(tmp_path):
    # kvcalc estimate -m llama-3-8b -g h100-sxm --profile p.toml -b 1 -c 1 -f json, p.toml the bundled SGLang H100
    # profile with attention_decode.bf16.memory_efficiency = 5e-324: the decode time came out null ('0 / 0'), the
    # division by the denormal overflowing to infinity
    src = (Path(__file__).parents[1] / "hardware_specs" / "profiles" / "h100-sxm.sglang.toml").read_text()
    head, tail = src.split("[attention_decode.bf16]", 1)
    line = next(x for x in tail.splitlines() if x.startswith("memory_efficiency"))
    (tmp_path / "p.toml").write_text(head + "[attention_decode.bf16]" + tail.replace(line, "memory_efficiency = 5e-324", 1))
    r = runner.invoke(app, ["estimate", "-m", "llama-3-8b", "-g", "h100-sxm", "--profile", str(tmp_path / "p.toml"),
                            "-b", "1", "-c", "1", "-f", "json"])
    _one_error_line(r, "p.toml: attention_decode.bf16.memory_efficiency", "greater than or equal to 0.000001")
