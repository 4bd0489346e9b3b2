"""Decode and prefill cost against published figures and closed forms."""

import pytest

from kvcalc.estimator import estimate
from kvcalc.formulas.forward import (
    Precision,
    attended_positions,
    attention_core_cost,
    decode_ops,
    forward_ops,
)
from kvcalc.formulas.roofline import ridge_point, roofline
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_gpu, load_model

BF16 = Precision(b_w=2, b_kv=2, b_a=2)


def test_mistral_7b_speed_of_light_on_rtx_4090_fp16():
    # zeux, "LLM inference speed of light" (2024): ~7111M matmul params = 14.2 GB read per token,
    # 131 KB KV per token, 1008 GB/s -> 14.1 ms/token in fp16.
    e = estimate("mistral-7b", "rtx-4090", context=1, weight_dtype="fp16", kv_dtype="fp16")
    assert e.decode.weight_bytes / 1e9 == pytest.approx(14.2, abs=0.05)
    assert e.kv_cache.bytes_per_token == 131_072
    assert e.decode.speed_of_light_ms == pytest.approx(14.1, rel=0.01)


def test_mistral_7b_speed_of_light_on_rtx_4090_8_bit():
    # zeux: the same model with every weight in 8 bit: 7.0 ms/token. kvcalc keeps the lm_head (32000 x 4096) in
    # 16 bit, as int8 checkpoints do: one more byte for each of its 131 M weights, +0.13 ms at 1008 GB/s.
    e = estimate("mistral-7b", "rtx-4090", context=1, weight_dtype="int8", kv_dtype="fp16")
    assert e.decode.speed_of_light_ms == pytest.approx(7.0 + 32000 * 4096 / 1008e9 * 1e3, rel=0.02)


def test_machine_balance_of_h100_and_rtx_4090():
    # zeux: H100 SXM dense bf16 tensor ~295 FLOP/B (989.5 TF / 3.35 TB/s); RTX 4090 82 (82.6 TF fp32 / 1008 GB/s).
    h100, rtx = load_gpu("h100"), load_gpu("rtx-4090")
    assert ridge_point(h100.peak_flops("bf16"), h100.bandwidth_Bps) == pytest.approx(295, abs=1)
    assert ridge_point(rtx.peak_flops("fp32"), rtx.bandwidth_Bps) == pytest.approx(82, abs=0.5)


@pytest.mark.parametrize(
    "attn, expected",
    [
        # DESIGN.md / Shazeer 2019: decode attention intensity MHA ~ 2/b_kv, GQA ~ 2(h/g)/b_kv, MQA ~ 2h/b_kv.
        ("mha", 2 / 2),
        ("gqa8", 2 * (32 / 8) / 2),
        ("mqa", 2 * 32 / 2),
        # MLA absorbed: 2h(d_c + d_r + d_c) / ((d_c + d_r) b_kv) with d_c 512, d_r 64 -> ~h * 1.89.
        ("mla", 2 * 32 * (576 + 512) / (576 * 2)),
    ],
)
def test_decode_attention_intensity_at_long_context(attn, expected):
    m = rewrite_attention(load_model("llama-2-7b"), attn)
    c = attention_core_cost(m, batch=1, q=1, context=10**7, window=None, absorbed=True, p=BF16)
    assert c.flops / c.bytes == pytest.approx(expected, rel=1e-3)


def test_mla_decode_intensity_is_close_to_the_h100_ridge_for_deepseek_v2():
    # DESIGN.md: absorbed MLA decode attention intensity ~ 2h/b_kv, close to the H100 ridge (~295).
    m = load_model("deepseek-v2")
    c = attention_core_cost(m, batch=1, q=1, context=10**7, window=None, absorbed=True, p=BF16)
    assert 200 < c.flops / c.bytes < 295


def test_attended_positions_closed_form_matches_a_loop():
    for q, s, w in [(1, 100, None), (7, 0, None), (5, 3, 4), (10, 0, 4), (1, 9, 4), (6, 2, 100)]:
        loop = sum(min(s + i, w) if w else s + i for i in range(1, q + 1))
        assert attended_positions(q, s, w) == loop


def test_decode_reads_each_weight_once_plus_the_kv_cache():
    # DESIGN.md: weights read once per step (embedding: B rows); KV read B * S * kv/token; KV write B * kv/token.
    m, B, S = load_model("llama-2-7b"), 4, 1000
    ops = decode_ops(m, B, S, BF16)
    weights = sum(o.cost.weight_bytes for o in ops)
    embedding = 32000 * 4096
    assert weights == (6_738_415_616 - embedding) * 2 + B * 4096 * 2
    assert sum(o.cost.kv_read_bytes for o in ops) == B * S * 524_288
    assert sum(o.cost.kv_write_bytes for o in ops) == B * 524_288


def test_moe_decode_reads_the_expected_distinct_experts():
    # Mixtral: E = 8, k = 2. B = 1 touches 2 experts; B tokens touch 8 * (1 - (1 - 2/8)^B) in expectation.
    m = load_model("mixtral-8x7b")
    expert_bytes = 3 * 4096 * 14336 * 2
    for B in (1, 4, 64):
        routed = next(o for o in decode_ops(m, B, 10, BF16) if o.name == "moe/routed")
        assert routed.cost.weight_bytes == pytest.approx(32 * 8 * (1 - 0.75**B) * expert_bytes)


def test_prefill_flops_are_2_params_per_token_plus_causal_attention():
    # DESIGN.md: prefill FLOPs 2 * active params * B * P + 2 * h * (d_qk + d_v) * B * P(P+1)/2 per layer
    # (every matmul; the embedding is a lookup and lm_head runs on each sequence's last token only).
    m, B, P = load_model("llama-2-7b"), 2, 512
    ops = forward_ops(m, batch=B, q=P, context=0, absorbed=False, p=BF16)
    matmul = 6_738_415_616 - 2 * 32000 * 4096 - (32 * 2 + 1) * 4096
    expected = 2 * matmul * B * P + 2 * 32000 * 4096 * B + 32 * 2 * 32 * 256 * B * P * (P + 1) / 2
    assert sum(o.cost.flops for o in ops) == pytest.approx(expected)


def test_roofline_picks_the_binding_roof():
    assert roofline(1e12, 1e9, peak_flops=1e15, bandwidth_Bps=1e12) == (pytest.approx(1e-3), False)
    assert roofline(1e15, 1e9, peak_flops=1e15, bandwidth_Bps=1e12) == (pytest.approx(1.0), True)


def test_decode_is_memory_bound_at_batch_1_and_compute_bound_prefill():
    e = estimate("llama-3-8b", "h100", batch=1, context=4096)
    assert e.decode.bound == "memory" and e.prefill.bound == "compute"
    assert e.decode.arithmetic_intensity < e.decode.ridge_point


def test_expected_time_is_speed_of_light_divided_by_efficiency_when_memory_bound():
    # Every decode operator of llama-2-7b at batch 1 is memory-bound, so the roofline engine's expected time is
    # SOL / eff_memory.
    e = estimate("llama-2-7b", "h100", batch=1, context=2048, engine="roofline")
    assert all(o.bound == "memory" for o in e.decode.operators)
    assert e.decode.ms == pytest.approx(e.decode.speed_of_light_ms / 0.90)


def test_formulas_evaluate_numpy_batches_elementwise():
    np = pytest.importorskip("numpy")
    m = load_model("mixtral-8x7b")
    batches = np.array([1, 8, 64])
    vector = decode_ops(m, batches, 4096, BF16)
    for i, b in enumerate(batches):
        scalar = decode_ops(m, int(b), 4096, BF16)
        for v, s in zip(vector, scalar):  # costs that do not depend on B stay scalars
            assert np.broadcast_to(v.cost.bytes, batches.shape)[i] == pytest.approx(s.cost.bytes)
            assert np.broadcast_to(v.cost.flops, batches.shape)[i] == pytest.approx(s.cost.flops)
