"""Chunked local attention (Llama 4) and attention sinks (gpt-oss) as their own terms."""

import pytest

from kvcalc.estimator import precision
from kvcalc.formulas import engine_memory as em
from kvcalc.formulas.forward import (
    chunked_cached,
    chunked_positions,
    decode_ops,
    prefill_ops,
)
from kvcalc.formulas.kv import kv_bytes_per_sequence
from kvcalc.formulas.params import params_breakdown, total_params
from kvcalc.specs.catalog import load_model


@pytest.mark.parametrize("context, q", [(0, 1), (0, 37), (0, 64), (5, 40), (16, 16), (30, 100)])
def test_chunked_positions_count_each_query_s_own_chunk(context, q):
    """Brute force: the token at position p attends to p mod C + 1 keys (C = 16)."""
    assert chunked_positions(q, context, 16, decode=False) == sum(p % 16 + 1 for p in range(context, context + q))
    assert chunked_cached(context, 16, decode=False) == context % 16


def test_a_decode_step_past_the_first_chunk_reads_half_a_chunk():
    assert chunked_positions(1, 100, 16, decode=True) == 17 / 2
    assert chunked_cached(100, 16, decode=True) == 15 / 2
    assert chunked_positions(1, 10, 16, decode=True) == 11  # still in the first chunk: exact


def test_llama_4_scout_chunked_layers_at_long_context():
    """36 of 48 layers chunked (8192), 12 global. A sequence holds at most a chunk on the chunked layers; a decode step
    at 128K reads (8192 - 1)/2 cached tokens there on average, against 128K on the global layers."""
    m, p = load_model("llama-4-scout"), precision("bf16", "bf16")
    assert (m.window_layers, m.global_layers, m.attention.window_kind) == (36, 12, "chunked")
    per_layer_token = 2 * 8 * 128 * 2
    assert kv_bytes_per_sequence(m, 131072, 2.0) == per_layer_token * (12 * 131072 + 36 * 8192)
    read = sum(o.cost.kv_read_bytes for o in decode_ops(m, 1, 131072, p) if o.name.startswith("attention/core"))
    assert read == per_layer_token * (12 * 131072 + 36 * 8191 / 2)
    # a 20,000-token prompt: chunks of 8192, 8192 and 3616 each attend causally within themselves
    flops = next(o.cost.flops for o in prefill_ops(m, 1, 20000, p) if o.name == "attention/core (window)")
    assert flops == 36 * 2 * 40 * 256 * (2 * 8192 * 8193 / 2 + 3616 * 3617 / 2)


def test_vllm_holds_a_chunk_plus_the_step_budget_on_chunked_layers():
    """vLLM's ChunkedLocalAttentionSpec: min(C + max_num_batched_tokens, max_model_len) per request. Llama 4 Scout:
    36 chunked and 12 full layers, groups of 12: 3 chunked groups of (8192 + 8192) / 16 = 1024 blocks and one full
    group of 131,072 / 16 = 8192."""
    m = load_model("llama-4-scout")
    layout = em.vllm_layout(m, 2.0)
    assert (layout.group_layers, layout.groups) == (12, {"full": 1, "chunked": 3})
    assert em.vllm_request_blocks(m, layout, 131072, 8192) == 8192 + 3 * 1024


def test_gpt_oss_120b_counts_its_sinks_and_router_biases_to_the_published_total():
    """Per layer: q 2880 x 4096, k and v 2880 x 512, o 4096 x 2880, all biased; 64 sinks; 128 experts of gate/up
    2880 x 5760 and down 2880 x 2880 with biases; router 2880 x 128 + 128; two norms. Model card: 116.83B."""
    d = 2880
    layer = (d * 4096 + 4096 + 2 * (d * 512 + 512) + 4096 * d + d + 64 + 128 * (d * 5760 + 5760 + d * d + d)
             + d * 128 + 128 + 2 * d)
    m = load_model("gpt-oss-120b")
    assert total_params(m) == 2 * 201088 * d + 36 * layer + d == pytest.approx(116.83e9, abs=0.005e9)
    assert params_breakdown(m)["attention/sinks"] == 36 * 64
