"""Regression tests for the twelfth hostile audit's E2 (the roofline's points at their own operators' roofs) and E6
(an --attn rewrite keeps the attention features its new layout can carry), each named after its finding."""

from __future__ import annotations

import json

import pytest

# H100 SXM datasheet, dense (hardware_specs/h100-sxm.toml): 989.5 bf16 and 1979 fp8 TFLOP/s
H100_BF16, H100_FP8 = 989.5e12, 1979e12


# --- E2: the roofline chart and /api/roofline ---

def _points(model, batch, **kw):
    from kvcalc.report.roofline_data import roofline_data

    data = roofline_data(["h100-sxm"], model, batch=batch, context=4096, kv_dtype="fp8", engine="roofline", **kw)
    return {(p["operator"], p["batch"]): p for p in data["points"]}


def test_e2_an_fp8_checkpoints_attention_sits_at_or_below_the_bf16_roof():
    """DeepSeek-V3 (fp8-block weights, fp8 KV) decodes its attention core in bf16, as estimate reports it: at batch
    64 and context 4,096 it does 4.455 TFLOP, so it runs at no more than the bf16 peak and takes at least
    4.455e12 / 989.5e12 = 4.50 ms. The chart had put it at 1,448 TFLOP/s and 3.08 ms, on the fp8 roof."""
    import kvcalc

    e = kvcalc.estimate("deepseek-v3", "h100-sxm", batch=64, context=4096, kv_dtype="fp8", engine="roofline")
    (core,) = [o for o in e.to_json_dict()["decode"]["operators"] if "core" in o["name"]]
    assert core["dtype"] == "bf16" and core["flops"] == pytest.approx(4.455e12, rel=1e-3)
    attention = _points("deepseek-v3", [64])["attention", 64]
    assert attention["flops"] == pytest.approx(core["flops"])
    assert attention["tflops"] <= 989.5 * (1 + 1e-9)
    assert attention["time_ms"] >= 4.455e12 / H100_BF16 * 1e3 * (1 - 1e-3)  # 4.50 ms
    # its intensity (432 FLOP/B) is past the bf16 ridge (295.4): compute-bound, on the bf16 roof itself
    assert attention["tflops"] == pytest.approx(989.5)


def test_e2_an_fp8_models_projections_still_use_the_fp8_roof():
    """Where the projections are compute-bound they run above the bf16 peak, at (up to) the fp8 one: DeepSeek-V3 at
    batch 65,536 (its 256 routed experts each see 65,536 x 8 / 256 = 2,048 tokens), and Llama-3-8B in fp8 at batch
    1,024, whose projections and MLP are all fp8 GEMMs past the fp8 ridge (1979 / 3.35 = 591 FLOP/B)."""
    projections = _points("deepseek-v3", [65536])["projections+MLP", 65536]
    assert H100_BF16 / 1e12 < projections["tflops"] <= H100_FP8 / 1e12
    llama = _points("llama-3-8b", [1024], weight_dtype="fp8")
    assert llama["projections+MLP", 1024]["intensity_flop_per_byte"] > H100_FP8 / 3350e9
    assert llama["projections+MLP", 1024]["tflops"] == pytest.approx(H100_FP8 / 1e12)
    # lm_head is kept 16-bit by the checkpoint: it stays under the bf16 roof even where the fp8 one is higher
    assert llama["lm_head", 1024]["tflops"] == pytest.approx(H100_BF16 / 1e12)


def test_e2_the_chart_draws_the_same_points_as_the_data():
    from kvcalc.report.plot import roofline

    fig = roofline(["h100-sxm"], "deepseek-v3", batch=[64], context=4096, kv_dtype="fp8")
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    _, y = lines["point:h100-sxm:mla:64:attention"].get_data()
    assert y[0] == pytest.approx(_points("deepseek-v3", [64])["attention", 64]["tflops"])
    assert y[0] <= 989.5 * (1 + 1e-9)


# --- E6: --attn rewrites keep the model's attention features ---

IDENTITY_REWRITES = [
    ("llama-4-scout", "gqa8", {"tp": 4}, {}),  # chunked windows, every 4th layer global
    ("deepseek-v3.2", "mla", {"tp": 8}, {"kv_lora_rank": 512, "rope_dim": 64}),  # the sparse indexer
    ("qwen3-next-80b-a3b", "gqa2", {"tp": 4}, {}),  # the output gate, QK-norm, rotary_dim 64
    ("qwen3-32b", "gqa8", {}, {}),  # QK-norm
    ("gpt-oss-20b", "gqa8", {}, {}),  # sinks, biases, sliding windows
]


@pytest.mark.parametrize("model, attn, kw, latent", IDENTITY_REWRITES)
def test_e6_a_rewrite_to_the_models_own_layout_is_the_identity(model, attn, kw, latent):
    """Each rewrite names the model's own cache layout, so it must change nothing: the audit found chunked windows
    turned sliding (llama-4-scout), the indexer dropped (deepseek-v3.2: 851,509,248 parameters short), the output
    gate (qwen3-next), the QK-norm (qwen3-32b: 16,384 short) and the sinks (gpt-oss) gone."""
    import kvcalc

    def numbers(**extra):
        j = kvcalc.estimate(model, "h200", batch=8, context=20000, **kw, **extra).to_json_dict()
        return j["weights"]["params"], j["kv_cache"]["bytes"], j["decode"]["ms"], j["prefill"]["ms"]

    assert numbers(attn=attn, **latent) == numbers()


def test_e6_a_rewrite_to_another_layout_keeps_what_it_can_carry():
    from kvcalc.rewrite import rewrite_attention
    from kvcalc.specs.catalog import load_model

    mqa = rewrite_attention(load_model("qwen3-32b"), "mqa").attention
    assert mqa.kind == "mqa" and mqa.num_kv_heads == 1 and mqa.qk_norm
    scout = rewrite_attention(load_model("llama-4-scout"), "mqa").attention
    assert (scout.window_kind, scout.sliding_window, scout.global_every) == ("chunked", 8192, 4)
    gated = rewrite_attention(load_model("qwen3-next-80b-a3b"), "mha").attention
    assert gated.output_gate and gated.qk_norm and gated.rotary_dim == 64
    assert rewrite_attention(load_model("gpt-oss-20b"), "mla").attention.sinks
    # carried where the new layout's formulas have them: the indexer under MLA only, the QK-norm under standard only
    v32 = load_model("deepseek-v3.2")
    assert rewrite_attention(v32, "mla", kv_lora_rank=256).attention.sparse_top_k == 2048
    assert rewrite_attention(v32, "mqa").attention.sparse_top_k is None
    assert not rewrite_attention(load_model("qwen3-32b"), "mla").attention.qk_norm


def test_e6_compare_rewrites_deepseek_v32_to_mqa():
    """The indexer goes with MLA: the MQA variant caches one K and one V head of 128 bf16 values in each of the 61
    layers (DeepSeek-V3.2-Exp config.json), 61 x 2 x 128 x 2 B = 31,232 B a token, and no indexer key."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    r = CliRunner().invoke(app, ["compare", "-m", "deepseek-v3.2", "--attn", "mqa", "-f", "json"])
    assert r.exit_code == 0, r.output
    rows = {row["variant"]: row for row in json.loads(r.stdout)}
    assert rows["mqa"]["kv_bytes_per_token"] == 61 * 2 * 128 * 2
