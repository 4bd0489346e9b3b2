"""The twenty-ninth hostile audit (docs/validation.md, "Twenty-ninth hostile audit"): each test is named after its
finding."""

import json
import math

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.formulas import engine_memory as em
from kvcalc.specs.catalog import load_gpu, load_model


def test_29_m4_trtllm_bench_counts_block_fp8_at_one_byte():
    """tensorrt_llm/bench/build/tuning.py BYTES_PER_ELEM[FP8_BLOCK_SCALES] = 1.0: DeepSeek-V3's block-FP8 engine on 8
    H200s leaves room for as many requests as per-tensor FP8 does (384 at 1,024 + 1,024 tokens); counted at bf16's 2
    bytes, the engine (1,250 GiB) outgrew the GPUs and the negative count had been clamped to 64. An engine the GPUs
    cannot hold is refused, as trtllm-bench refuses it."""
    h200, v3 = load_gpu("h200"), load_model("deepseek-v3")
    block = em.trtllm_bench_settings(v3, h200.visible_memory_GiB, "fp8-block", 1.0, 8, 1, 1024, 1024)
    assert block == em.trtllm_bench_settings(v3, h200.visible_memory_GiB, "fp8", 1.0, 8, 1, 1024, 1024)
    assert block[0] == 384
    with pytest.raises(KvcalcError, match="leaves no room for a KV cache on 8 GPUs"):
        em.trtllm_bench_settings(v3, h200.visible_memory_GiB, "bf16", 1.0, 8, 1, 1024, 1024)


@pytest.mark.parametrize("gpu, kv, said", [("b200", "bf16", True), ("b200", "fp8", False), ("h200", "bf16", False)])
def test_29_m3_sglang_stores_sparse_attention_kv_in_fp8_on_blackwell(gpu, kv, said):
    """SGLang's server_args.py _set_default_dsa_kv_cache_dtype (0.5.14): "fp8_e4m3" if the compute capability's major
    is 10 or more, else bfloat16. kvcalc sizes the cache asked for and says that SGLang's default differs."""
    result = CliRunner().invoke(app, ["capacity", "-m", "deepseek-v3.2", "-c", "8192", "-g", gpu, "--tp", "8",
                                      "--engine", "sglang", "--kv-dtype", kv, "-f", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    notes = [w for w in out.get("warnings", []) + out.get("notes", []) if "fp8_e4m3" in w]
    assert bool(notes) == said


def test_29_m1_vllm_extends_a_window_by_the_tokens_in_flight():
    """vLLM from 0.27 (PR #47728; VllmConfig.max_in_flight_tokens = max_concurrent_batches x max_num_batched_tokens)
    reserves W - 1 + 2 T tokens a sliding group under async scheduling. Gemma-3-27B on one H100 at 32,768 tokens, 8,192
    tokens a step: 6 sliding groups of ceil((1,023 + 16,384) / 16) + 1 = 1,089 blocks and 2,048 full ones, 8,582
    blocks a request (one step's window gave 5,510: 56 % more requests than vLLM admits). Before 0.27, one step."""
    import warnings

    from kvcalc.engines.memory import vllm_memory
    from kvcalc.estimator import precision

    spec, hw = load_model("gemma-3-27b"), load_gpu("h100-sxm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = vllm_memory(spec, hw, precision("bf16", "bf16"), 1, context=32768, memory_utilization=0.9,
                          cuda_graph_bytes=0.0)
        old = vllm_memory(spec, hw, precision("bf16", "bf16"), 1, context=32768, memory_utilization=0.9,
                          cuda_graph_bytes=0.0, version=(0, 26))
    assert (new["window_tokens"], old["window_tokens"]) == (16_384, 8_192)
    # a block: 10 layers (a group) x 16 tokens x 2 (K and V) x 16 KV heads x 128 x 2 B = 1,310,720 B
    pool_blocks = math.floor(new["available_kv_bytes"] / 1_310_720)
    assert 2048 + 6 * 1089 == 8582 and 2048 + 6 * (math.ceil((1023 + 8192) / 16) + 1) == 5510
    assert new["max_concurrency"] == pool_blocks / 8582
    assert old["max_concurrency"] == math.floor(old["available_kv_bytes"] / 1_310_720) / 5510
    assert em.vllm_window_tokens(8192, (0, 30), "v2", 2, ahead=False) == 16_384  # two stages in flight
    assert em.vllm_window_tokens(8192, (0, 30), "v1", 1, ahead=False) == 8_192  # no async scheduling


@pytest.mark.parametrize("speculation, reserved", [(None, 26_624), ("mtp", 28_672), ("eagle", 28_672),
                                                    ("draft", 32_768), ("ngram", 26_624)])
def test_29_r2_sglang_reserves_memory_for_a_draft(speculation, reserved):
    """SGLang's _handle_gpu_memory_settings (server_args.py of the 0.5 releases before 0.5.14), past its 10 GiB
    floor: STANDALONE (a draft model) 6 GiB more, the EAGLE family (EAGLE, EAGLE3, NEXTN: kvcalc's eagle and mtp)
    2 GiB, NGRAM none. A B200 (180 GiB, 184,320 MiB) at TP 4: 512 + 1.5 x 16,384 (its chunk) + 2 x 512 (CUDA-graph
    batch) + 4 / 8 x 1,024 = 26,624 MiB reserved. Plan's launch advice for SGLang with MTP had kept 2 GiB a GPU
    too few (0.856 for 0.844)."""
    from kvcalc.engines.memory import sglang_own_fraction

    assert 512 + 1.5 * 16_384 + 2 * 512 + 4 / 8 * 1024 == 26_624
    expected = round((184_320 - reserved) / 184_320, 3)
    assert em.sglang_derived_mem_fraction(184_320, 4, speculation=speculation, release=(0, 5, 9)) == expected
    # 0.5.14, the release kvcalc's SGLang profiles time, reserves nothing for a draft (its _handle_gpu_memory_settings
    # has no speculative term; the thirty-third audit): every method's fraction is the plain one
    plain = round((184_320 - 26_624) / 184_320, 3)
    assert em.sglang_derived_mem_fraction(184_320, 4, speculation=speculation) == plain
    # a B200 as SGLang reads it: nvidia-smi's 183,359 MiB (the thirty-sixth audit, hwspecs 1), the same 26,624 reserved
    smi = round((183_359 - 26_624) / 183_359, 3)
    assert sglang_own_fraction(load_gpu("b200"), 4, speculation=speculation) == smi
