"""Transferred and fitted engine profiles: curves carried onto a part's own roofs, fits on published rows, and
profiles tied to the spec they were fitted against (audit F9)."""

import math
import warnings

import pytest

from kvcalc import estimate
from kvcalc.engines.transfer import transfer
from kvcalc.errors import KvcalcError
from kvcalc.formulas.cost import Cost
from kvcalc.formulas.forward import Op
from kvcalc.formulas.roofline import step_time
from kvcalc.ledgers.fit_e2e import fit_rows, fit_scale, scale_curve
from kvcalc.specs.catalog import (
    ProfileWarning,
    bundled_specs,
    load_gpu,
    measured_profile,
    resolve_engine,
)
from kvcalc.specs.toml_out import spec_to_toml

# hardware_specs/profiles/h100-sxm.vllm.toml, [gemm.bf16] (fitted to aiconfigurator-core 0.12.0's H100 SXM tables)
T0_US, E_M, HALF_MB, E_C, HALF_GFLOP, A, P = 2.636, 0.8783, 1.171, 0.8159, 0.337, 0.7306, 2.775


def _gemm_seconds_by_hand(flops, bytes_, peak_flops, bandwidth_Bps):
    """kvcalc/formulas/kernel_time.py worked out: t0 + (t_c^p + t_m^p)^(1/p), t = x / (roof e_max) (1 + (half/x)^a)."""
    t_c = flops / (peak_flops * E_C) * (1 + (HALF_GFLOP * 1e9 / flops) ** A)
    t_m = bytes_ / (bandwidth_Bps * E_M) * (1 + (HALF_MB * 1e6 / bytes_) ** A)
    return T0_US * 1e-6 + (t_c**P + t_m**P) ** (1 / P)


def test_a_transferred_gemm_runs_the_siblings_curve_on_the_targets_own_roofs():
    # One 4096 x 4096 bf16 GEMM at batch 8: 2 * 8 * 4096^2 FLOPs, a 33.5 MB weight read.
    op = Op("o", "linear", "matmul", Cost(flops=2 * 8 * 4096**2, weight_bytes=2 * 4096**2, act_bytes=4 * 8 * 4096))
    pcie = load_gpu("h100-pcie")  # datasheet: 2000 GB/s, 756.5 dense bf16 TFLOPS (hardware_specs/h100-pcie.toml)
    profile = resolve_engine("vllm", pcie)
    assert profile.provenance == "transferred" and profile.transferred_from == "h100-sxm.vllm"
    got = step_time([op], pcie, "bf16", speed_of_light=False, profile=profile).seconds
    want = _gemm_seconds_by_hand(op.cost.flops, op.cost.bytes, 756.5e12, 2000e9)
    assert got == pytest.approx(want, rel=1e-9)
    sxm = step_time([op], load_gpu("h100-sxm"), "bf16", speed_of_light=False,
                    profile=resolve_engine("vllm", load_gpu("h100-sxm"))).seconds
    assert sxm == pytest.approx(_gemm_seconds_by_hand(op.cost.flops, op.cost.bytes, 989.4e12, 3350e9), rel=1e-9)
    assert got > sxm * 1.4  # memory-bound: 3350 / 2000 = 1.675x the bandwidth, less the fixed latency


def test_every_transferred_or_fitted_profile_names_a_measured_source_and_how():
    for p in bundled_specs("profile"):
        if p.provenance == "measured":
            continue
        gpu, engine = p.transferred_from.split(".")
        assert engine == p.engine and measured_profile(gpu, engine) is not None, p.label
        assert f"--from {gpu} --to {p.gpu}" in p.method and "links" in p.method, p.label
        assert all(c.fit is None for c in p.gemm.values())  # fit records stay with the measured source
        assert p.engine not in load_gpu(p.gpu).unsupported_engines


def test_gemm_formats_the_target_has_no_peak_for_are_dropped():
    p = transfer("a10", "vllm", source="h100-sxm")  # Ampere's A10 has no fp8 tensor cores (no fp8 peak)
    assert "fp8" not in p.gemm and "fp8_block" not in p.gemm and "bf16" in p.gemm
    assert "dropped" in p.method and "gemm.fp8" in p.method


def test_transfer_refuses_an_engine_that_does_not_run_on_the_target():
    with pytest.raises(KvcalcError, match="trtllm does not run on mi300x: TensorRT-LLM runs on NVIDIA GPUs only"):
        transfer("mi300x", "trtllm")


def _edited_h100(tmp_path, **changes):
    data = load_gpu("h100-sxm").model_dump(exclude_none=True)
    data.update(changes)
    path = tmp_path / "g.toml"
    path.write_text(spec_to_toml(type(load_gpu("h100-sxm")).model_validate(data)))
    return str(path)


def test_audit_f9_an_edited_link_never_decodes_below_its_own_speed_of_light(tmp_path):
    # The audit's reproducer: `kvcalc show gpu h100-sxm -f toml`, interconnect_bandwidth_GBps = 0.01, --tp 2
    # (before: decode 3.776 ms against a speed of light of 107.2 ms).
    # (the scale-out link with it: one faster than the scale-up link is refused since the thirty-fourth audit)
    g = _edited_h100(tmp_path, interconnect_bandwidth_GBps=0.01, scale_out_bandwidth_GBps=0.01)
    r = estimate("llama-3-8b", g, tp=2, engine="vllm")  # its warnings list holds it (the CLI prints it once)
    assert any("interconnect_bandwidth_GBps, scale_out_bandwidth_GBps differ from hardware_specs/h100-sxm.toml" in w
               for w in r.warnings)
    assert r.decode.ms >= r.decode.speed_of_light_ms > 100
    # The all-reduce alone: 64 of 1 x 4096 x 2 B each, at least 2 (1/2) 8192 B / (0.01e9 / 2 B/s) = 0.8192 ms each.
    assert r.decode.allreduce_ms >= 64 * 0.8192 * (1 - 1e-9)


def test_audit_f9_a_spec_borrowing_another_parts_name_gets_its_curves_on_its_own_roofs(tmp_path):
    g = _edited_h100(tmp_path, name="b200")
    r = estimate("llama-3-8b", g, engine="vllm")
    assert any("memory_bandwidth_GBps, peak_tflops" in w for w in r.warnings)
    assert "b200.vllm, transferred from b200.vllm" in r.inputs.profile
    own = estimate("llama-3-8b", "b200", engine="vllm")
    assert r.decode.ms > own.decode.ms * 1.5  # H100's 3350 GB/s against B200's 7700
    assert r.decode.ms > r.decode.speed_of_light_ms


def test_the_bundled_spec_itself_keeps_its_measured_profile_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProfileWarning)
        assert resolve_engine("vllm", load_gpu("h100-sxm")).provenance == "measured"


@pytest.mark.parametrize("field, value", [("memory_GiB", True), ("memory_bandwidth_GBps", True)])
def test_audit_f9_booleans_are_never_numbers_in_spec_files(tmp_path, field, value):
    data = spec_to_toml(load_gpu("h100-sxm")).replace("visible_memory_GiB", "# visible_memory_GiB")
    lines = [f"{field} = true" if line.startswith(f"{field} =") else line for line in data.splitlines()]
    (tmp_path / "g.toml").write_text("\n".join(lines))
    with pytest.raises(KvcalcError, match=f"{field}: expected a number or text, got the boolean true"):
        estimate("llama-3-8b", str(tmp_path / "g.toml"))


def _rows(measured_ms, metric="tpot_ms"):
    return [{"id": f"r{i}", "gpu": "mi300x", "engine": "vllm", "metric": metric, "use": "score", "publisher": "p",
             "measured": m} for i, m in enumerate(measured_ms)]


def test_fit_scale_is_the_geometric_median_of_measured_over_predicted_time():
    base = transfer("mi300x", "vllm")

    def predict(point, profile):  # a stand-in ledger: 10 x the bf16 GEMM's t0, read in ms
        return profile.gemm["bf16"].t0_us * 10, 0.0

    fitted = fit_scale(_rows([30.0, 40.0, 50.0]), base, predict=predict)
    assert fitted.time_scale == pytest.approx(40.0 / (T0_US * 10), rel=1e-12)
    assert fitted.provenance == "fitted" and fitted.fitted_on == ["r0", "r1", "r2"]
    assert fitted.gemm["bf16"].memory_efficiency == pytest.approx(E_M / fitted.time_scale)
    # a rate is inverted: 25 tokens/s is 40 ms a token
    rate = fit_scale(_rows([1000 / 40], "decode_tokens_per_s"), base, predict=lambda p, prof: (1000 / (prof.gemm["bf16"].t0_us * 10), 0))
    assert rate.time_scale == pytest.approx(40.0 / (T0_US * 10), rel=1e-12)


def test_a_faster_fit_never_lifts_a_roof_fraction_above_one():
    curve = measured_profile("h100-sxm", "vllm").gemm["bf16"]
    fast = scale_curve(curve, 0.5)
    assert fast.memory_efficiency == 1.0 and fast.compute_efficiency == 1.0 and fast.t0_us == pytest.approx(T0_US / 2)


def test_fit_rows_are_the_marked_ones_else_an_even_crc32_of_the_id():
    rows = _rows([1, 2, 3, 4, 5, 6])
    import zlib

    even = [r["id"] for r in rows if zlib.crc32(r["id"].encode()) % 2 == 0]
    assert [r["id"] for r in fit_rows(rows, "mi300x", "vllm")] == even and 0 < len(even) < 6
    rows[5]["use"] = "fit"
    assert [r["id"] for r in fit_rows(rows, "mi300x", "vllm")] == ["r5"]


def test_the_bundled_mi300x_vllm_profile_is_fitted_on_published_rows():
    p = resolve_engine("auto", load_gpu("mi300x"))
    assert (p.engine, p.provenance, p.transferred_from) == ("vllm", "fitted", "h100-sxm.vllm")
    assert p.fitted_on and 1 / 3 <= p.time_scale <= 3 and math.isfinite(p.time_scale)


def test_profiles_transfer_writes_what_is_bundled(tmp_path):
    from typer.testing import CliRunner

    from kvcalc.cli import app
    from kvcalc.specs.catalog import bundled_profile, load_spec_file

    r = CliRunner().invoke(app, ["profiles", "transfer", "--to", "l4", "--engine", "vllm", "--out-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "l4.vllm.toml").read_text()
    assert text.startswith("# Written by `kvcalc profiles transfer --from l40s --to l4 --engine vllm`")
    assert load_spec_file("profile", tmp_path / "l4.vllm.toml") == bundled_profile("l4", "vllm")  # re-run if not


def test_audit_f9_no_edited_roof_or_link_decodes_below_its_own_speed_of_light():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    h100 = load_gpu("h100-sxm")

    @hypothesis.settings(max_examples=25, deadline=None)
    @hypothesis.given(link=st.floats(0.01, 1e4), bandwidth=st.floats(10, 1e5), tp=st.sampled_from([2, 4, 8]),
                      ep=st.sampled_from([1, 8]), batch=st.integers(1, 256))
    def check(link, bandwidth, tp, ep, batch):
        hw = h100.model_copy(update={"interconnect_bandwidth_GBps": link, "memory_bandwidth_GBps": bandwidth})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProfileWarning)
            r = estimate("mixtral-8x7b", hw, tp=tp, ep=max(ep, tp), batch=batch, context=512, engine="vllm")
        assert r.decode.ms >= r.decode.speed_of_light_ms * (1 - 1e-9)
        assert r.prefill.ms >= r.prefill.speed_of_light_ms * (1 - 1e-9)

    check()
