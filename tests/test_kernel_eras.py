"""Older releases' mixture-of-experts factor (kvcalc/engines/kernel_eras.py): which releases it covers, that it
multiplies the routed experts' time and nothing else, never the speed of light, that --engine-version reaches it on
every command, and that the shipped factors are the published ledger's fit, scored leave-one-source-out."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.engines.kernel_eras import ERAS, era_of_ledger_row, era_of_version, release3, with_era
from kvcalc.ledgers import published
from kvcalc.specs.catalog import load_gpu, resolve_engine

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "validation/published"
runner = CliRunner()


def _estimate(**kw) -> dict:
    base = dict(model="deepseek-v3", gpu="h200", tp=8, batch=16, context=4096, engine="vllm", weight_dtype="fp8-block")
    return kvcalc.estimate(**{**base, **kw}).model_dump()


def _ops(result: dict, phase: str = "decode") -> dict[str, float]:
    return {o["name"]: o["ms"] for o in result[phase]["operators"]}


@pytest.mark.parametrize("engine, version, era", [
    ("vllm", "0.7.3", "0.1-0.11"), ("vllm", "v0.11.2", "0.1-0.11"), ("vllm", "0.6.3.post1", "0.1-0.11"),
    ("vllm", "0.12.0", None), ("vllm", "0.24", None), ("vllm", "v1", None), ("vllm", None, None),
    ("vllm", "latest", None), ("sglang", "0.4.3.post2", "0.1-0.5.5"), ("sglang", "0.5.5.post3", "0.1-0.5.5"),
    ("sglang", "0.5.6", None), ("sglang", "0.5.14", None), ("trtllm", "0.17", "0.1-0.21"), ("trtllm", "1.0", None)])
def test_an_era_is_the_releases_before_the_tables(engine, version, era):
    # vLLM 0.12.0 was current by 2025-12-11 (vllm-ascend PR #4918), SGLang 0.5.5.post3 is AMD's image of 2025-11-21
    found = era_of_version(engine, version)
    assert (found.name if found else None) == era


@pytest.mark.parametrize("text, era", [
    ("unknown (2025-04)", "0.1-0.11"), ("unknown (2025-11)", "0.1-0.11"), ("unknown (2025-12)", None),
    ("unknown (2026-02)", None), ("commit acbed3ef (2023-10)", "0.1-0.11"), ("0.7.4.dev181+gf35f8e22", "0.1-0.11"),
    ("unknown", None)])
def test_ledger_rows_without_a_release_are_placed_by_the_month_of_the_run(text, era):
    found = era_of_ledger_row("vllm", text)
    assert (found.name if found else None) == era


def test_release_numbers_keep_their_patch_level():
    assert release3("0.5.5.post3") == (0, 5, 5) and release3("v0.11") == (0, 11, 0) and release3("latest") is None


def test_the_factor_multiplies_the_routed_experts_and_nothing_else():
    # DeepSeek-V3 on 8 H200s at batch 16: the routed experts' time on vLLM 0.7 is the default's x its era's factor exactly; every
    # other operator, the all-reduces and the speed of light are the same
    old, new = _estimate(engine_version="0.7.3"), _estimate(engine_version="0.12")
    vllm = next(e for e in ERAS if e.engine == "vllm")
    for phase in ("decode", "prefill"):
        o, n = _ops(old, phase), _ops(new, phase)
        assert o["moe/routed"] == pytest.approx(n["moe/routed"] * vllm.moe_scale, rel=1e-12)
        assert {k: v for k, v in o.items() if k != "moe/routed"} == {k: v for k, v in n.items() if k != "moe/routed"}
        assert old[phase]["speed_of_light_ms"] == new[phase]["speed_of_light_ms"]
    assert old["decode"]["allreduce_ms"] == new["decode"]["allreduce_ms"]


def test_a_dense_model_is_not_scaled():
    old = _estimate(model="llama-3.1-70b", weight_dtype="bf16", tp=4, engine_version="0.8.0")
    new = _estimate(model="llama-3.1-70b", weight_dtype="bf16", tp=4, engine_version="0.12.0")
    assert old["decode"]["ms"] == new["decode"]["ms"]  # same V1 band, no routed experts to scale


def test_the_default_release_is_never_scaled():
    hw = load_gpu("h200")
    for engine in ("vllm", "sglang", "trtllm"):
        profile = resolve_engine(engine, hw)
        assert with_era(profile, None) is profile and profile.moe_time_scale == 1.0
    assert _estimate()["decode"]["ms"] == _estimate(engine_version="0.24")["decode"]["ms"]


@settings(max_examples=30, deadline=None)
@given(st.floats(0.25, 8.0), st.sampled_from([1, 4, 64]))
def test_the_factor_never_reaches_the_speed_of_light(scale, batch):
    from kvcalc.estimator import evaluate
    from kvcalc.specs.catalog import load_model

    spec, hw = load_model("qwen3-30b-a3b"), load_gpu("h100-sxm")
    base = resolve_engine("vllm", hw)
    ev = evaluate(spec, hw, batch=batch, context=2048, prompt=2048, weight_dtype="bf16", kv_dtype="bf16", tp=1,
                  profile=base.model_copy(update={"moe_time_scale": scale}))
    ref = evaluate(spec, hw, batch=batch, context=2048, prompt=2048, weight_dtype="bf16", kv_dtype="bf16", tp=1,
                   profile=base)
    assert ev.decode_sol.seconds == ref.decode_sol.seconds and ev.prefill_sol.seconds == ref.prefill_sol.seconds
    assert (ev.decode.seconds > ref.decode.seconds) == (scale > 1)


def test_engine_version_reaches_estimate_explain_serve_and_the_simulator():
    common = ["--model", "deepseek-v3", "--gpu", "h200", "--tp", "8", "--engine", "vllm", "--weight-dtype", "fp8-block"]
    out = runner.invoke(app, ["estimate", *common, "-b", "16", "-c", "4096", "--engine-version", "0.7.3", "--explain"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert f"MoE kernels x{next(e for e in ERAS if e.engine == 'vllm').moe_scale:g} (vllm 0.1-0.11 kernel era" in text and "MoE kernel era =" in text
    serve = {}
    for version in ("0.7.3", "0.12.0"):
        args = ["serve", *common, "--input-len", "1000", "--output-len", "200", "-n", "16", "--engine-version", version,
                "-f", "json"]
        closed = json.loads(runner.invoke(app, args).stdout)
        sim = runner.invoke(app, [*args, "--simulate", "--num-prompts", "32"])
        assert sim.exit_code == 0, sim.output
        serve[version] = (closed, json.loads(sim.stdout))
    closed_old, sim_old = serve["0.7.3"]
    closed_new, sim_new = serve["0.12.0"]
    assert closed_old["tpot_ms"] > 1.3 * closed_new["tpot_ms"]
    assert sim_old["tpot_ms"]["p50"] > 1.3 * sim_new["tpot_ms"]["p50"]


def test_the_shipped_factors_are_the_ledgers_fit():
    # kvcalc/engines/kernel_eras.py's table is what fitting every row of validation/published/ gives (rerun
    # `kvcalc validate --published validation/published/` and copy its MoE factors after adding rows)
    fits = {e["era"]: e for e in published.ledger(FOLDER)["kernel_eras"]}
    for era in ERAS:
        fit = fits[f"{era.engine} {era.name}"]
        assert era.moe_scale == fit["moe_scale"]
        if era.moe_scale != 1.0:
            assert f"fitted on {fit['rows_fitted']} MoE rows from {fit['publishers']} organisations" in era.provenance
        else:
            assert fit["publishers"] < 2 and "not fitted" in era.provenance


def test_an_era_with_one_publisher_keeps_one():
    rows = [{"id": f"r{i}", "era": "trtllm 0.1-0.21", "provenance": "measured", "moe_decode_ms": 5.0,
             "moe_prefill_ms": 50.0, "prefill_ms": 100.0, "decode_ms": 10.0, "publisher": "only", "metric": "tpot_ms",
             "batch": 1, "output_len": 100, "measured": 30.0, "band": None} for i in range(5)]
    assert published.fit_moe_scales(rows, {})["trtllm 0.1-0.21"]["moe_scale"] == 1.0
    two = rows + [{**rows[0], "id": "s0", "publisher": "other"}]
    # both publishers' steps measure 30 ms where kvcalc's is 10 with 5 in the experts: a factor of 5 makes it 30
    assert published.fit_moe_scales(two, {})["trtllm 0.1-0.21"]["moe_scale"] == pytest.approx(5.0, rel=0.02)


@pytest.mark.parametrize("a, b", [("dstack-benchmarks", "dstack"), ("lmsys-sglang", "lmsys-blog"),
                                  ("amd-sglang-ci", "amd-vllm-recipes"), ("dennislee22-vllm-benchmarking", "dennislee22")])
def test_a_source_is_held_out_across_ledgers_by_its_organisation(a, b):
    assert published.organisation(a) == published.organisation(b)


@pytest.mark.parametrize("a, b", [("trtllm-issue-220-fty1777", "trtllm-issue-329-hikaritju"),
                                  ("sglang-pr-8552-azhurkevich", "lmsys-blog")])
def test_a_measurement_in_a_projects_issue_or_pr_is_its_authors(a, b):
    """The review of the thirty-fourth audit, 6: two unrelated reporters in TensorRT-LLM's issues had been one
    source by the name's first word, and an SGLang PR author's rows LMSYS's."""
    assert published.organisation(a) != published.organisation(b)
    assert published.organisation("trtllm-issue-220-fty1777") == "fty1777"


def test_a_serving_row_is_scored_with_factors_fitted_without_its_organisation(monkeypatch):
    # the serving ledger's dstack rows must never see a factor fitted on dstack's published rows
    from kvcalc.ledgers import serving_sim

    seen = []
    real = published.fit_moe_scales

    def spy(rows, overheads):
        seen.append({r["publisher"] for r in rows})
        return real(rows, overheads)

    monkeypatch.setattr(published, "fit_moe_scales", spy)
    rows = [r for r in serving_sim.read_rows(ROOT / "validation/serve/unseen-serving.csv") if r["id"] == "sv-045"]
    (result, *_) = serving_sim.score(rows, published=FOLDER)
    assert seen and all("dstack-benchmarks" not in publishers and "tenstorrent-tt-inference-server" in publishers
                        for publishers in seen)
    assert result["sim_error_pct"] is not None


@pytest.mark.parametrize("engine, version, era", [
    ("vllm", "v0", "0.1-0.11"), ("vllm", "V0.6.3", "0.1-0.11"), ("vllm", " 0.7.3 ", "0.1-0.11"), ("vllm", "v1", None),
    ("vllm", "v2", None), ("sglang", "0.4+", None), ("trtllm", "engine", "0.1-0.21"), ("trtllm", "pytorch", None)])
def test_a_band_name_is_in_an_era_only_when_all_its_releases_are(engine, version, era):
    # the verification pass: SGLang's 0.4+ (0.4-0.5, the profile's own band) had been read as release 0.4.0 and
    # slowed MoE 3.13x; vLLM's v0 (0.1-0.7) and V0.6.3 had escaped the era 0.6.3 is in
    found = era_of_version(engine, version)
    assert (found.name if found else None) == era


def test_another_release_asked_for_replaces_a_calibrated_profiles_factor():
    from kvcalc.engines.overhead import with_band

    calibrated = resolve_engine("vllm", load_gpu("h200")).model_copy(update={"moe_time_scale": 1.7})
    era = next(e for e in ERAS if e.engine == "vllm").moe_scale
    assert era != 1.7
    assert with_band(calibrated, "0.12").moe_time_scale == 1.0
    assert with_band(calibrated, "0.7.3").moe_time_scale == era  # the release asked for: its era's factor
    assert with_band(calibrated, None).moe_time_scale == 1.7  # its own, where no release is asked for
