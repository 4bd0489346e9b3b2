"""Regression tests for the fifth hostile audit (2026-12-05, from 21:30 UTC; docs/validation.md "Fifth hostile audit")
and the inconsistency left open by the third and fourth: each reproduces a finding with the numbers worked by hand or
against another command."""

import warnings

import pytest

import kvcalc


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_estimate_checks_its_memory_rule_against_the_named_engines():
    """Left by the third and fourth audits: `estimate --engine vllm` fits a batch by kvcalc's own memory rule, which
    capacity and serve under the same --engine do not (Llama-3.1-70B on 2 H100s at 2,048 tokens: kvcalc's rule holds
    16 sequences, vLLM's 7, SGLang's 11). estimate now says so, with capacity's own count."""
    for engine in ("vllm", "sglang"):
        held = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2,
                               engine=engine)["max_sequences_at_context"]
        mine = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2)["max_sequences_at_context"]
        assert held < mine == 16
        r = kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=mine, context=2048, tp=2, engine=engine)
        assert r.memory.fits  # kvcalc's rule, as documented
        [w] = [w for w in r.warnings if "would queue" in w]
        assert f"one group of 2 GPUs holds {held} sequences of 2,048 tokens, fewer than the 16 asked for" in w
        assert f"not by {engine}'s" in w
        # at the engine's own count there is nothing to say
        assert not any("would queue" in w for w in kvcalc.estimate(
            "llama-3.1-70b", "h100-sxm", batch=held, context=2048, tp=2, engine=engine).warnings)
    # the timing-only default (--engine auto) keeps kvcalc's rule, as serve's and capacity's defaults do
    assert not any("memory rule" in w for w in kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=16, context=2048,
                                                                tp=2).warnings)


def test_estimate_names_the_engines_count_where_its_own_rule_refuses():
    """TensorRT-LLM's rule holds 30 sequences of Llama-3.1-70B at 2,048 on 2 H100s where kvcalc's holds 16: estimate's
    does-not-fit warning gives the engine's count beside its own verdict."""
    held = kvcalc.capacity("llama-3.1-70b", "h100-sxm", context=2048, gpus=2,
                           engine="trtllm")["max_sequences_at_context"]
    r = kvcalc.estimate("llama-3.1-70b", "h100-sxm", batch=held, context=2048, tp=2, engine="trtllm")
    assert not r.memory.fits and held > 16
    [w] = [w for w in r.warnings if w.startswith("does not fit")]
    assert f"by trtllm's own memory rule (`kvcalc capacity --engine trtllm`) one group of 2 GPUs holds {held} " in w


def test_estimate_counts_the_engines_pool_per_data_parallel_group():
    """Under --ep each data-parallel group of tp GPUs has its own pool (capacity: max_concurrency x ep / tp):
    DeepSeek-V3 fp8 on 8 H200s at 8,192 tokens, vLLM holds capacity's count and not one more."""
    c = kvcalc.capacity("deepseek-v3", "h200", context=8192, ep=8, engine="vllm", weight_dtype="fp8")
    n, groups = c["max_sequences_at_context"], 8 // c["tensor_parallel"]
    def queues(batch):
        return [w for w in kvcalc.estimate("deepseek-v3", "h200", batch=batch, context=8192, ep=8, tp=1,
                                           engine="vllm", weight_dtype="fp8").warnings if "would queue" in w]
    assert not queues(n)
    [w] = queues(n + 1)
    assert f"holds {n // groups} sequences of 8,192 tokens, fewer than the {n // groups + 1} asked for per data-parallel" in w


def test_pcie_servers_own_profiles_time_nccl_all_reduce_where_vllm_and_sglang_run_it():
    """F1: the L40S's and RTX PRO 6000's own vLLM and SGLang profiles timed TP 4 and 8 all-reduces with the custom
    kernel's table, which those engines switch off on more than two PCIe-only GPUs (engines/links.py), so an L40S
    at TP 4 was 32 % slower than the L4 beside it on the same PCIe 4.0 link, and 31 % faster at TP 8. They now take
    NCCL's all-reduce measured on the same server (the figures links.py's NCCL_PCIE_ALLREDUCE holds).
    Qwen3-32B prefill of 4,000 tokens: 64 layers x 2 all-reduces of 4,000 x 5,120 x 2 bytes, a ring moving
    2 (n - 1) / n of it at NCCL's bus bandwidth (5.02 GB/s at TP 4, 1.419 at TP 8) after its t0."""
    from kvcalc.engines.links import NCCL_PCIE_ALLREDUCE
    from kvcalc.specs.catalog import resolve_engine, load_gpu

    for gpu, key in (("l40s", "l40s"), ("rtx-pro-6000", "rtx-pro-6000")):
        for engine in ("vllm", "sglang"):
            curves = resolve_engine(engine, load_gpu(gpu)).allreduce
            for tp in ("tp4", "tp8"):
                assert (curves[tp].t0_us, curves[tp].bus_bandwidth_GBps) == NCCL_PCIE_ALLREDUCE[key][tp]
                assert curves[tp].fit.kernels == "NCCL"
            assert curves["tp2"].fit.kernels != "NCCL"  # two cards keep the engine's custom kernel
    message = 4000 * 5120 * 2
    for tp, (t0, bus) in ((4, (11.23, 5.02)), (8, (22.14, 1.419))):
        hand_ms = 128 * (t0 * 1e-6 + 2 * (tp - 1) / tp * message / (bus * 1e9)) * 1e3
        for gpu in ("l40s", "l4"):
            got = kvcalc.estimate("qwen3-32b", gpu, tp=tp, context=4000, engine="vllm").prefill.allreduce_ms
            assert got == pytest.approx(hand_ms, rel=2e-3)


@pytest.mark.parametrize("max_window_layers, full_layers", [(28, 28), (20, 20), (0, 0)])
def test_qwen2_slides_only_from_max_window_layers(tmp_path, max_window_layers, full_layers):
    """F2: a Qwen2 config with use_sliding_window true and no layer_types was read with every layer sliding, where
    transformers' Qwen2Config makes layer i slide only when i >= max_window_layers: with 28 of 28 no layer slides,
    and the KV cache at 32,768 tokens was 8x short. Qwen2-7B's shape (28 layers, 4 KV heads of 128), window 4,096:
    full layers x 2 x 4 x 128 x 2 B x 32,768 + sliding layers x the same at 4,096."""
    import json

    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
              "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
              "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_sliding_window": True,
              "sliding_window": 4096, "max_window_layers": max_window_layers}
    (tmp_path / "config.json").write_text(json.dumps(config))
    r = kvcalc.estimate(str(tmp_path / "config.json"), "h100-sxm", context=32768, engine="roofline")
    per_token_layer = 2 * 4 * 128 * 2
    hand = per_token_layer * (full_layers * 32768 + (28 - full_layers) * 4096)
    assert r.kv_cache.bytes_per_sequence == hand  # 1,879,048,192 / 1,409,286,144 / 234,881,024
