"""What the roofline figure holds: log axes, roofs kinked at the ridge, points at the computed intensities."""

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.estimator import estimate
from kvcalc.specs.catalog import load_gpu

pytest.importorskip("matplotlib")


def lines_by_gid(fig):
    return {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}


def test_roofline_figure_contents():
    from kvcalc.report.plot import roofline

    fig = roofline(["h100", "a100"], "llama-3-8b", attn=[None, "mqa"], batch=[1, 64], context=4096)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = lines_by_gid(fig)
    # The H100's bf16 roof bends at its ridge, 989.5e12 / 3.35e12 = 295.4 FLOP/B, at 989.5 TFLOP/s.
    x, y = lines["roof:h100-sxm:bf16"].get_data()
    assert x[1] == pytest.approx(989.5 / 3.35) and y[1] == pytest.approx(989.5)
    assert y[0] / x[0] == pytest.approx(3.35)  # the memory roof: bandwidth x intensity, in TB/s
    assert lines["roof:a100-sxm-80gb:bf16"].get_data()[0][1] == pytest.approx(312 / 2.039)
    # The attention point of MQA at batch 64 sits at the intensity estimate computes for that operator class.
    e = estimate("llama-3-8b", "h100", attn="mqa", batch=64, context=4096)
    att = [o for o in e.decode.operators if o.op_class == "attention"]
    expected = sum(o.flops for o in att) / sum(o.bytes for o in att)
    px, py = lines_by_gid(fig)["point:h100-sxm:mqa:64:attention"].get_data()
    assert px[0] == pytest.approx(expected)
    assert py[0] == pytest.approx(expected * load_gpu("h100").bandwidth_Bps / 1e12)  # below the ridge: on the memory roof


def test_cli_writes_the_chart_and_overlays_measured_points(tmp_path):
    measured = tmp_path / "m.csv"
    measured.write_text("arithmetic_intensity,achieved_tflops\n1.0,3.0\n100,250\n")
    out = tmp_path / "r.svg"
    r = CliRunner().invoke(app, ["roofline", "-m", "chatglm2-6b", "--attn", "own,gqa8,mla", "--measured",
                                 str(measured), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert out.read_text().count('id="measured:bf16"') == 1  # no dtype column: taken as bf16, on its roof
    # Points measured in fp32 on a CPU are drawn against an fp32 roof, not the bf16 one the chart is about.
    measured.write_text("arithmetic_intensity,achieved_tflops,dtype,device\n1.0,0.01,fp32,cpu\n")
    r = CliRunner().invoke(app, ["roofline", "-m", "chatglm2-6b", "--measured", str(measured), "-o", str(out)])
    svg = out.read_text()
    assert r.exit_code == 0 and 'id="measured:fp32"' in svg and 'id="measured-roof:fp32"' in svg
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    r = CliRunner().invoke(app, ["roofline", "-m", "chatglm2-6b", "--measured", str(bad), "-o", str(out)])
    assert r.exit_code == 2 and "lacks column(s) achieved_tflops, arithmetic_intensity" in r.stderr
