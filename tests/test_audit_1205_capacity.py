"""Regression tests for hostile audit 2026-12-05 finding D: under an engine's memory rule, capacity's "longest
context at batch B" is the longest request that engine's own layout admits (whole blocks, per-group window blocks),
so it agrees with the maximum concurrency the same table prints; without --engine it stays kvcalc's byte count.

Every block size below is worked by hand from the model's cache: K and V of every KV head, head_dim 128, bf16
(2 bytes), so 2 x kv_heads x 128 x 2 bytes a token a layer (kv_heads 16 for Gemma-3-27B, 8 for Llama-3.1-8B and
Llama-4-Scout, whose 8 are split over TP 4). The pool (available_kv_bytes) is the input the rule starts from: the
tests count its blocks by hand rather than pin it, so a refit of the memory rule moves the numbers quoted in the
docstrings (those of vLLM 0.30's rule on 2026-12-05) without breaking what is checked."""

import math
import warnings

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import CapacityWarning
from kvcalc.planning.capacity import capacity

runner = CliRunner()


def _capacity(model, gpu, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)
        return capacity(model, gpu, **kw)


def _gemma(context, **kw):
    return _capacity("gemma-3-27b", "h100", context=context, engine="vllm", memory_utilization=0.75, **kw)


def _gemma_blocks(row):
    """Gemma-3-27B's 52 sliding and 10 full layers page in groups of 10 (52 < 1.5 x 10 fails, so the fewest):
    one full group and ceil(52 / 10) = 6 sliding ones. A block is 10 layers x 16 tokens x 2 x 16 x 128 x 2 B
    = 10 x 131,072 = 1,310,720 B."""
    return math.floor(row["engine_memory"]["available_kv_bytes"] / 1_310_720)


def test_d_gemma_3_27b_vllm_longest_context_is_the_block_layouts_not_the_window_flat_byte_count():
    """`kvcalc capacity -m gemma-3-27b -g h100 -c 8192 -e vllm --memory-utilization 0.75` printed "longest context at
    batch 1: 83,888" beside "GPU KV cache size 12,736 tokens". By hand: the pool holds 5,575 blocks (7,308,361,545 B
    / 1,310,720; 12,736 = floor(5,575 / 7) x 16 confirms it). vLLM 0.30 extends a window by the tokens in flight,
    two steps under async scheduling (the twenty-ninth audit, M1): a request past W - 1 + 2 T = 1,023 + 16,384 =
    17,407 tokens would take ceil(17,407 / 16) + 1 = 1,089 blocks in each of the 6 sliding groups, 6,534 in all, more
    than the pool. Below that a request of L tokens takes c = ceil(L / 16) full blocks and c + 1 in each sliding
    group: 7 c + 6 <= 5,575 gives c = 795, 12,720 tokens. (One step's 9,215 tokens, 577 blocks a group, had given
    33,808.)"""
    row = _gemma(8192)
    blocks = _gemma_blocks(row)  # 5,575
    assert row["engine_memory"]["kv_tokens"] == blocks // 7 * 16  # 12,736
    assert 6 * (math.ceil(17407 / 16) + 1) == 6534 > blocks
    assert row["max_context_at_batch"] == (blocks - 6) // 7 * 16  # 12,720
    assert row["max_context_at_batch"] < 40_000  # the byte count said 83,888


def test_d_gemma_3_27b_longest_context_is_the_last_length_with_concurrency_at_least_one():
    """`kvcalc capacity -m gemma-3-27b -g h100 -c 33856 --gpus 1 -e vllm --memory-utilization 0.75` gave 0 sequences
    (max_concurrency 0.9995) where the same table called 83,888 tokens the longest context. Under vLLM 0.30's window
    reservation (the test above) 12,720 tokens take 795 full and 6 x 796 sliding blocks, 5,571 of the 5,575; 12,721
    takes 796 + 6 x 797 = 5,578."""
    blocks = _gemma_blocks(_gemma(8192))  # 5,575
    longest = (blocks - 6) // 7 * 16  # 12,720
    fits, over = _gemma(longest, gpus=1), _gemma(longest + 1, gpus=1)
    assert fits["engine_memory"]["max_concurrency"] == blocks / (7 * 795 + 6)
    assert fits["max_sequences_at_context"] == 1 and fits["max_context_at_batch"] == longest
    assert over["engine_memory"]["max_concurrency"] == blocks / (7 * 796 + 6)
    assert over["max_sequences_at_context"] == 0 and over["max_context_at_batch"] == longest


def test_d_gemma_3_27b_batch_2_longest_context_counts_sliding_blocks_below_the_window_cap():
    """`kvcalc capacity -m gemma-3-27b -g h100 -c 4096 -b 2 -e vllm --memory-utilization 0.75`: each of 2 requests
    gets floor(5,575 / 2) = 2,787 blocks, too few for the 3,462 sliding blocks past 9,215 tokens, so below it a
    request of L tokens takes c = ceil(L / 16) full blocks and c + 1 in each sliding group: 7 c + 6 <= 2,787 gives
    c = 397, L = 6,352 (c = 398 takes 2,792 blocks, concurrency 5,575 / 2,792 = 1.997 < 2)."""
    row = _gemma(4096, batch=2)
    each = _gemma_blocks(row) // 2  # 2,787
    assert each < 3462 + 1  # not even one full block beside the capped sliding groups
    full_blocks = (each - 6) // 7  # 397
    assert full_blocks * 16 < 9215 and row["max_context_at_batch"] == full_blocks * 16  # 6,352


def test_d_dense_llama_3_1_8b_on_l4_vllm_longest_context_is_whole_16_token_blocks():
    """`kvcalc capacity -m llama-3.1-8b -g l4 -c 8192 -e vllm` printed 35,932 (bytes / the per-token cache) where
    vLLM's pool is whole blocks of 32 layers x 16 tokens x 2 x 8 x 128 x 2 B = 2,097,152 B: 2,245 of them, 35,920
    tokens, the same as its "GPU KV cache size"."""
    row = _capacity("llama-3.1-8b", "l4", context=8192, engine="vllm")
    blocks = math.floor(row["engine_memory"]["available_kv_bytes"] / 2_097_152)  # 2,245
    assert row["max_context_at_batch"] == blocks * 16 == row["engine_memory"]["kv_tokens"]  # 35,920


def test_d_dense_llama_3_1_8b_on_l4_trtllm_longest_context_is_whole_32_token_blocks():
    """`kvcalc capacity -m llama-3.1-8b -g l4 -c 8192 -e trtllm` printed 44,817 where TensorRT-LLM's cache is whole
    blocks of 32 tokens x 32 layers x 4,096 B = 4,194,304 B: 1,400 of them, 44,800 tokens."""
    row = _capacity("llama-3.1-8b", "l4", context=8192, engine="trtllm")
    blocks = math.floor(row["engine_memory"]["available_kv_bytes"] / 4_194_304)  # 1,400
    assert row["max_context_at_batch"] == blocks * 32 == row["engine_memory"]["kv_tokens"]  # 44,800


def test_d_chunked_llama_4_scout_at_tp4_vllm_longest_context_counts_chunked_groups():
    """`kvcalc capacity -m llama-4-scout -g h100 -c 8192 --gpus 4 -e vllm` printed 1,382,378. Its 12 full and 36
    chunked-attention layers (C = 8,192) page in groups of 12 (36 >= 1.5 x 12): one full, three chunked. At TP 4 a
    GPU holds 2 of the 8 KV heads: 2 x 2 x 128 x 2 = 1,024 B a token a layer, a block 12 x 16 x 1,024 = 196,608 B,
    87,934 blocks in the pool. Past C + 2 T = 8,192 + 16,384 = 24,576 tokens (vLLM 0.30 adds the two steps in flight
    under async scheduling: the twenty-ninth audit, M1) a chunked group holds 24,576 / 16 = 1,536 blocks, 4,608 in
    all, so the full group gets 83,326 blocks: 1,333,216 tokens (one step's 1,024 blocks a group had given
    1,357,792)."""
    row = _capacity("llama-4-scout", "h100", context=8192, gpus=4, engine="vllm")
    blocks = math.floor(row["engine_memory"]["available_kv_bytes"] / 196_608)  # 87,934
    assert row["engine_memory"]["kv_tokens"] == blocks // 4 * 16  # 351,728: four groups share the pool
    assert row["max_context_at_batch"] == (blocks - 3 * 1536) * 16  # 1,333,216


def test_d_generic_rule_keeps_its_byte_count():
    """Without --engine (`kvcalc capacity -m llama-3.1-8b -g l4 -c 8192`) the longest context is kvcalc's byte count,
    budget / (32 layers x 4,096 B a token), not rounded to any block."""
    row = _capacity("llama-3.1-8b", "l4", context=8192)
    assert row["engine_memory"] is None
    assert row["max_context_at_batch"] == math.floor(row["kv_budget_bytes_per_gpu"] / (32 * 4096))


def test_d_capacity_table_prints_the_engines_longest_context():
    """The reproducer's table itself: `kvcalc capacity -m gemma-3-27b -g h100 -c 8192 -e vllm --memory-utilization
    0.75` prints 12,720 (the 5,575 blocks' figure, vLLM 0.30's window reservation) where it printed 83,888."""
    result = runner.invoke(app, ["capacity", "-m", "gemma-3-27b", "-g", "h100", "-c", "8192", "-e", "vllm",
                                 "--memory-utilization", "0.75"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "longest context at batch 1" in x)
    blocks = _gemma_blocks(_gemma(8192))
    assert f"{(blocks - 6) // 7 * 16:,}" in line and "83,888" not in result.output


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_d_longest_context_fits_and_one_token_more_does_not_under_each_engine(engine):
    """For each engine's rule, the reported longest context of `kvcalc capacity -m llama-3.1-8b -g l4 -c 8192 -e
    ENGINE` holds one sequence at that context on its one GPU and none at the next length that needs more memory (one block more
    for vLLM and TensorRT-LLM, one token more for SGLang)."""
    longest = _capacity("llama-3.1-8b", "l4", context=8192, engine=engine)["max_context_at_batch"]
    step = {"vllm": 16, "trtllm": 32, "sglang": 1}[engine]
    assert longest % step == 0
    for context, sequences in ((longest, 1), (longest + 1, 0)):  # on the one GPU (more would be picked for +1)
        assert _capacity("llama-3.1-8b", "l4", context=context, gpus=1,
                         engine=engine)["max_sequences_at_context"] == sequences


def test_d_serve_refusal_figure_is_the_engines_request_size():
    """`kvcalc serve -m gemma-3-27b -g h100 --input-len 40000 --output-len 945 -e vllm --memory-utilization 0.75
    --concurrency 1` says "the KV pool (6.81 GiB per GPU) does not hold one request of 40,945 tokens (3.53 GiB)":
    3.53 GiB is kvcalc's window-flat count (10 x 40,945 + 52 x 1,024 layer-tokens x 8,192 B). vLLM 0.30's request
    takes ceil(40,945 / 16) = 2,560 full blocks and 6 x 1,089 sliding ones (a window of 1,023 + 2 x 8,192 tokens in
    flight: the twenty-ninth audit, M1), 9,094 blocks of 1,310,720 B (11.1 GiB); the helper serve can quote gives
    that."""
    from kvcalc.engines.memory import engine_request_bytes
    from kvcalc.estimator import load_deployment

    spec, hw, _, p = load_deployment("gemma-3-27b", "h100", "auto", "bf16")
    memory = _gemma(8192)["engine_memory"]
    assert engine_request_bytes(memory, spec, hw, p, 1, 1, 40_945) == (2560 + 6 * 1089) * 1_310_720


def test_c7_the_binding_constraint_names_the_kv_cache_when_the_weights_fit():
    """Third review, C7: `capacity -m gemma-3-27b -c 33809 -e vllm --memory-utilization 0.75` said 'weights: they
    need 2 GPUs' memory' where Gemma-3-27B's weights (about 51 GiB) fit in one H100's 59.4 usable GiB: what needs
    the second GPU is one request's KV cache at 33,809 tokens beside them (vLLM 0.30's pool on one GPU admits 12,720:
    test_d_gemma_3_27b_vllm_longest_context_is_the_block_layouts_not_the_window_flat_byte_count)."""
    import warnings

    from kvcalc.planning.capacity import capacity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = capacity("gemma-3-27b", "h100-sxm", context=33809, engine="vllm", memory_utilization=0.75)
    assert r["tensor_parallel"] == 2 and r["min_gpus_for_weights"] == 2
    assert r["binding"].startswith("KV cache: the weights fit on 1 GPU")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dense = capacity("llama-3.1-70b", "h100-sxm", context=8192)  # 131 GiB of weights: two GPUs for them alone
    assert dense["binding"] == "weights: they need 2 GPUs' memory"
