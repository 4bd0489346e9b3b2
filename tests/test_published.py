"""kvcalc against published end-to-end measurements (validation/published/measurements.csv)."""

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc import estimate
from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.ledgers.published import predict, profile_for, read_points, score, summary

LEDGER = Path(__file__).parents[1] / "validation" / "published" / "measurements.csv"


@pytest.fixture(scope="module")
def points():
    return read_points(LEDGER)


@pytest.fixture(scope="module")
def results(points):
    return score(points)


def test_the_ledger_holds_at_least_40_cited_measurements(points):
    used = [p for p in points if p["use"] in ("fit", "score")]
    assert len(used) >= 40
    assert all(p["source"] for p in points)
    assert {p["engine"] for p in used} == {"gpt-fast", "trtllm", "vllm"}


def test_no_measurement_beats_the_speed_of_light(results):
    # A published number faster than kvcalc's speed of light would mean a wrong spec or formula.
    assert not [r["id"] for r in results if r["faster_than_speed_of_light"]]


def test_held_out_error_is_what_the_readme_reports(results):
    # README "End-to-end ledger": the table's figures for the 39 rows never fitted to and the roofline baseline.
    rows = {(r["rows"], r["engine"]): r for r in summary(results)}
    overall = rows[("score", "all engines")]
    baseline = {(r["rows"], r["engine"]): r for r in summary(score(read_points(LEDGER), roofline=True))}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"| never fitted to | all | 39 | {overall['median_abs_error_pct']} % |" in readme
    assert f"| never fitted to, `--engine roofline` | all | 39 | {baseline[('score', 'all engines')]['median_abs_error_pct']} % |" in readme
    assert baseline[("score", "all engines")]["median_abs_error_pct"] > 3 * overall["median_abs_error_pct"]


def test_static_batch_throughput_is_prefill_plus_decode_steps(points):
    # trt-13: A100, Llama-2-7B fp16, batch 384, 128 in / 128 out: 384 * 128 tokens over one prefill of 384 x 128
    # and 127 decode steps at the mean cached context 128 + 64.
    row = next(p for p in points if p["id"] == "trt-13")
    e = estimate("llama-2-7b", "a100-sxm-80gb", batch=384, context=192, prompt=128, weight_dtype="fp16",
                 kv_dtype="fp16", engine="trtllm")
    by_hand = 384 * 128 / ((e.prefill.ms + 127 * e.decode.ms) / 1000)
    assert predict(row, profile_for(row))[0] == pytest.approx(by_hand)


def test_batch_one_decode_rate_is_one_over_the_step(points):
    # gf-06: gpt-fast, Llama-2-7B on 2 A100s, 5-token prompt, 200 new tokens: mean cached context 105.
    row = next(p for p in points if p["id"] == "gf-06")
    e = estimate("llama-2-7b", "a100-sxm-80gb", batch=1, context=105, prompt=5, engine="gpt-fast", tp=2)
    assert predict(row, profile_for(row))[0] == pytest.approx(1000 / e.decode.ms)


def test_the_gpt_fast_profile_reproduces_from_its_fit_rows(points):
    pytest.importorskip("scipy")
    from kvcalc.ledgers.published import fit_gpt_fast
    from kvcalc.specs.catalog import load_gpu, resolve_engine

    hw = load_gpu("a100-sxm-80gb")
    refit = fit_gpt_fast(points, resolve_engine("trtllm", hw), resolve_engine("vllm", hw))
    bundled = resolve_engine("gpt-fast", hw)
    for key, curve in bundled.gemm.items():
        assert refit.gemm[key].t0_us == pytest.approx(curve.t0_us, rel=1e-3)
        assert refit.gemm[key].memory_efficiency == pytest.approx(curve.memory_efficiency, rel=1e-3)
        assert curve.fit.rows_fit == 4 and curve.fit.rows_held_out == 13


def test_malformed_ledger_is_one_line_naming_row_and_field(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text(LEDGER.read_text().splitlines()[0] + "\nx1,vllm,1,h100,llama-3-8b,bf16,bf16,one,tpot_ms,1,1,1,5,score,s\n")
    with pytest.raises(KvcalcError, match="row x1: tp, batch"):
        read_points(bad)
    r = CliRunner().invoke(app, ["validate", "--published", str(bad)])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_validate_published_prints_the_summary():
    r = CliRunner().invoke(app, ["validate", "--published", str(LEDGER), "-f", "json"])
    assert r.exit_code == 0
    import json

    data = json.loads(r.stdout)
    assert len(data["rows"]) == 50 and any(s["engine"] == "all engines" for s in data["summary"])
    assert all(row["error_pct"] is None or math.isfinite(row["error_pct"]) for row in data["rows"])
