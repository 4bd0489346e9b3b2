"""Regression tests for finding A of the hostile audit of 2026-12-05: a draft model's memory was left out of estimate's
required bytes and fits, and its KV cache out of serve's pool.

Hand numbers used throughout (bf16, 2 B an element):
- Llama 3.1 8B: 32 layers x 8 KV heads x 128 head dim x 2 (K, V) x 2 B = 131,072 B of KV a token.
- Llama 3.2 1B (the draft): 16 layers x 8 KV heads x 64 head dim x 2 x 2 B = 32,768 B a token; its 1,235,814,400
  parameters (Hugging Face's count, tied embeddings) x 2 B = 2,471,628,800 B of weights.
- h100-sxm: 79.22 GiB visible (hardware_specs/h100-sxm.toml), 0.9 of it usable = 76,555,644,567.552 B.
"""

import json

import pytest
from typer.testing import CliRunner

from kvcalc import estimate
from kvcalc.cli import app
from kvcalc.planning.capacity import compare
from kvcalc.serving.closed_form import serve
from kvcalc.specs.catalog import load_model
from kvcalc.formulas.speculative import draft_kv_bytes_per_sequence, draft_weight_bytes_per_gpu
from kvcalc.speculation import parse

DRAFT = "draft=llama-3.2-1b,k=4,alpha=0.7"


def _mk(text: str) -> tuple[str, int]:
    """(method, k) of a --speculate setting, as the formulas take them."""
    sp = parse(text)
    return sp.method, sp.k
USABLE = 0.9 * 79.22 * 2**30  # h100-sxm
TARGET_KV, DRAFT_KV = 32 * 8 * 128 * 2 * 2, 16 * 8 * 64 * 2 * 2
assert (TARGET_KV, DRAFT_KV) == (131_072, 32_768)
DRAFT_WEIGHTS = 1_235_814_400 * 2


def test_a_estimate_counts_the_draft_weights_and_kv_in_required_bytes_and_fits():
    """`kvcalc estimate -m llama-3.1-8b -b 57 -c 8000 --speculate draft=llama-3.2-1b,k=4,alpha=0.7 -f json` printed
    fits: true, needing 76.43 GB of 76.56 GB usable, with draft_weights_bytes 2.47 GB and draft_kv_bytes 15.0 GB
    left out of required_bytes; the real need is about 93.9 GB."""
    e = estimate("llama-3.1-8b", batch=57, context=8000, speculate=DRAFT)
    m = e.memory
    draft_kv = 57 * 8000 * DRAFT_KV  # 14,942,208,000 B
    assert m.kv_cache_bytes == 57 * 8000 * TARGET_KV  # 59,768,832,000 B
    assert m.weights_bytes == 8_030_261_248 * 2  # Llama 3.1 8B's 8,030,261,248 parameters (Hugging Face's count)
    assert m.draft_bytes == DRAFT_WEIGHTS + draft_kv == 17_413_836_800
    assert m.required_bytes == pytest.approx(m.weights_bytes + m.kv_cache_bytes + m.activations_bytes
                                             + DRAFT_WEIGHTS + draft_kv)
    assert m.required_bytes > 93.8e9 and not m.fits  # 76.43 GB + 2.47 GB + 14.94 GB = 93.85 GB > 76.56 GB
    assert m.headroom_bytes == pytest.approx(USABLE - m.required_bytes)
    assert e.speculative.draft_weights_bytes == DRAFT_WEIGHTS and e.speculative.draft_kv_bytes == draft_kv
    assert any(w.startswith("does not fit") for w in e.warnings)
    plain = estimate("llama-3.1-8b", batch=57, context=8000)
    assert plain.memory.draft_bytes == 0 and plain.memory.fits  # without the draft it did fit (76.43 GB)


def test_a_estimate_json_prints_fits_false_with_the_draft():
    """The reproducer through the CLI: memory.fits false, memory.draft_bytes 17,413,836,800."""
    result = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-b", "57", "-c", "8000", "--speculate",
                                      DRAFT, "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["memory"]["fits"] is False and doc["memory"]["draft_bytes"] == 17_413_836_800


def test_a_estimate_fits_43_but_not_44_with_the_draft():
    """The batch where estimate stops fitting is the one serve holds: per sequence at 8,000 tokens
    8000 x (131,072 + 32,768) = 1,310,720,000 B; the rest of the usable memory is the target's weights,
    the activations and the draft's 2,471,628,800 B of weights, and 43 sequences fit where 44 do not."""
    fixed = [estimate("llama-3.1-8b", batch=b, context=8000, speculate=DRAFT).memory for b in (43, 44)]
    per_sequence = 8000 * (TARGET_KV + DRAFT_KV)
    assert per_sequence == 1_310_720_000
    for b, m in zip((43, 44), fixed):
        need = m.weights_bytes + m.activations_bytes + DRAFT_WEIGHTS + b * per_sequence
        assert m.required_bytes == pytest.approx(need)
    assert fixed[0].fits and not fixed[1].fits


def test_a_eagle_mtp_medusa_draft_kv_follows_their_layers():
    """speculation.py's kinds: EAGLE keeps one decoder layer's cache of the target's shape, MTP its one module's, Medusa's
    heads none; a separate draft model its own layers."""
    llama, ds3 = load_model("llama-3.1-8b"), load_model("deepseek-v3")
    # Llama 3.1 8B, one layer: 8 KV heads x 128 x 2 x 2 B = 4,096 B a token
    assert draft_kv_bytes_per_sequence(llama, *_mk("eagle,k=4"), None, 1000, 2) == 1000 * 4096
    # tp 8 splits its 8 KV heads: 512 B a token a GPU
    assert draft_kv_bytes_per_sequence(llama, *_mk("eagle,k=4"), None, 1000, 2, tp=8) == 1000 * 512
    assert draft_kv_bytes_per_sequence(llama, *_mk("medusa=4"), None, 1000, 2) == 0
    draft = load_model("llama-3.2-1b")
    assert draft_kv_bytes_per_sequence(llama, *_mk(DRAFT), draft, 1000, 2) == 1000 * DRAFT_KV
    # DeepSeek-V3's MLA latent: (kv_lora_rank 512 + rope 64) x 2 B = 1,152 B a token a layer, replicated under tp
    assert draft_kv_bytes_per_sequence(ds3, *_mk("mtp=1"), None, 1000, 2, tp=8) == 1000 * 1152
    # mtp=2 runs the checkpoint's one MTP module twice: one layer's cache (the seventh audit's verification, W7)
    assert draft_kv_bytes_per_sequence(ds3, *_mk("mtp=2"), None, 1000, 2, tp=8) == 1000 * 1152
    # EAGLE's weights on Llama 3.1 8B: one layer (q, o 4096^2 each; k, v 4096 x 1024 each; MLP 3 x 4096 x 14,336;
    # two norms and the final norm, 3 x 4096) and its fc 2 x 4096^2, the embedding and lm_head shared:
    # 41,943,040 + 176,160,768 + 12,288 + 33,554,432 = 251,670,528 params x 2 B
    assert draft_weight_bytes_per_gpu(llama, *_mk("eagle,k=4"), None, 2) == 251_670_528 * 2
    e = estimate("llama-3.1-8b", batch=8, context=4096, speculate="eagle,k=4")
    assert e.memory.draft_bytes == 251_670_528 * 2 + 8 * 4096 * 4096
    # Medusa's 4 heads: 4 x (4096^2 + 4096 + 4096 x 128,256) params x 2 B, no cache
    medusa = estimate("llama-3.1-8b", batch=8, context=4096, speculate="medusa=4").memory
    assert medusa.draft_bytes == 4 * (4096**2 + 4096 + 4096 * 128_256) * 2 == 4_336_943_104


def test_a_compare_counts_the_draft_in_max_batch_and_fits():
    """compare --speculate shares the rule: the pool net of both weights and one step's activations, over
    1,310,720,000 B a sequence, holds 43 at 8,000 tokens (was 57, the target's cache alone), and batch 57 no
    longer fits."""
    own = compare("llama-3.1-8b", ["mqa"], batch=57, context=8000, speculate=DRAFT)[0]
    e = estimate("llama-3.1-8b", batch=1, context=8000)
    pool = USABLE - e.memory.weights_bytes - e.memory.activations_bytes - DRAFT_WEIGHTS  # 57,419,000,471.552 B
    assert pool // 1_310_720_000 == 43 == own["max_batch_at_context"]
    assert own["fits"] is False
    # the longest context at 57 sequences: pool / (57 x 163,840 B a token) = 6,148.4 tokens
    assert own["max_context_at_batch"] == int(pool / (57 * (TARGET_KV + DRAFT_KV))) == 6148
    # Medusa keeps no cache: only its 4,336,943,104 B of heads leave the pool, 1,048,576,000 B a sequence
    medusa = compare("llama-3.1-8b", ["mqa"], batch=57, context=8000, speculate="medusa=4")[0]
    assert medusa["max_batch_at_context"] == (pool + DRAFT_WEIGHTS - 4_336_943_104) // (8000 * TARGET_KV) == 52


def test_a_sweep_rows_count_the_draft_as_estimate_does():
    """sweep --speculate wrote the target's memory alone, as estimate did: its row now carries the draft's
    2,471,628,800 B of weights and 57 x 8000 x 32,768 B of cache, and batch 57 does not fit."""
    from kvcalc.grid import sweep

    df = sweep(["llama-3.1-8b"], ["h100-sxm"], [None], [57], [8000], ["bf16"], ["bf16"], ["auto"],
               speculate=[None, DRAFT])
    plain, spec = (df[df["speculate"] == s].iloc[0] for s in ("none", DRAFT))
    assert spec["memory_required_bytes"] - plain["memory_required_bytes"] == 17_413_836_800
    assert plain["fits"] and not spec["fits"]
    e = estimate("llama-3.1-8b", batch=57, context=8000, speculate=DRAFT)
    assert spec["memory_required_bytes"] == pytest.approx(e.memory.required_bytes)


def test_a_serve_max_holds_43_requests_with_the_draft_kv():
    """`kvcalc serve -m llama-3.1-8b -i 4000 --output-len 4000 -n max --speculate draft=llama-3.2-1b,k=4,alpha=0.7`
    printed 54 requests and "none: every request in flight fits": the 57.42 GB pool over
    8000 x (131,072 + 32,768) B a request holds 43."""
    r = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency="max", speculate=DRAFT)
    e = estimate("llama-3.1-8b", batch=1, context=8000)  # serve's step budget (8,192) is estimate's prefill chunk
    pool = USABLE - e.memory.weights_bytes - e.memory.activations_bytes - DRAFT_WEIGHTS
    assert r["kv_pool_bytes_per_gpu"] == pytest.approx(pool)
    assert r["concurrency"] == r["max_concurrency"] == 43
    assert r["kv_bytes_needed_per_gpu"] == pytest.approx(43 * 8000 * (TARGET_KV + DRAFT_KV))  # 56,360,960,000 B
    assert r["preemption_risk"].startswith("none")


def test_a_serve_at_estimates_old_batch_queues_what_the_pool_cannot_hold():
    """54 requests in flight (what serve used to hold) need 54 x 1,310,720,000 = 70.78 GB at full length, past the
    57.42 GB pool: 43 run and 11 wait in the queue (the third audit: past the pool, serve had timed them all
    decoding at once)."""
    r = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency=54, speculate=DRAFT)
    held = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency=43, speculate=DRAFT)
    # the closed form queues the 11; vLLM's scheduler (auto's) would admit them and preempt (the tenth audit, S12)
    assert r["max_concurrency"] == 43 and r["preemption_risk"].startswith("likely")
    assert any(w.startswith("11 of the 54 requests in flight per replica wait in the queue") for w in r["warnings"])
    assert r["requests_per_s"] == pytest.approx(held["requests_per_s"], rel=1e-12)


def test_a_serve_vllm_rule_adds_the_draft_kv_to_each_request():
    """Under --engine vllm a request of 8,000 tokens takes 500 blocks of 16 tokens, 8000 x 131,072 B of the
    target's cache, and the draft's layers 8000 x 32,768 B beside them: the pool net of the draft's weights over
    1,310,720,000 B a request. EAGLE's one layer adds 8000 x 4,096 B."""
    plain = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency="max", engine="vllm")
    r = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency="max", engine="vllm", speculate=DRAFT)
    assert r["kv_pool_bytes_per_gpu"] == pytest.approx(plain["kv_pool_bytes_per_gpu"] - DRAFT_WEIGHTS)
    assert r["max_concurrency"] == int(r["kv_pool_bytes_per_gpu"] // 1_310_720_000) == 43
    eagle = serve("llama-3.1-8b", input_len=4000, output_len=4000, concurrency="max", engine="vllm",
                  speculate="eagle,k=4")
    per_request = 8000 * (TARGET_KV + 4096)
    assert eagle["max_concurrency"] == int(eagle["kv_pool_bytes_per_gpu"] // per_request)
