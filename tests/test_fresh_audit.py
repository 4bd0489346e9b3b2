"""Regression tests for what the fresh audit of issue 23 (this version's) found, one per finding, named after it."""

from typer.testing import CliRunner

from kvcalc.cli import app


def test_capacity_weights_row_names_the_engines_layout_where_it_differs():
    """`capacity -m gpt-oss-20b -g a100 -e vllm` printed 'weights per GPU 12.81 GiB' above a KV budget computed from
    the 13.70 GiB vLLM loads (MXFP4 laid out for Marlin on Ampere; the memory ledger's gpt-oss rows check both
    figures); the row now gives both."""
    out = CliRunner().invoke(app, ["capacity", "-m", "gpt-oss-20b", "-g", "a100", "-e", "vllm", "-c", "8192"])
    assert out.exit_code == 0
    text = " ".join(out.output.replace("│", " ").split())
    assert "weights per GPU 12.81 GiB as stored; vllm loads 13.70 GiB" in text
    same = CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-8b", "-g", "h100", "-e", "sglang", "-c", "8192"])
    assert "as stored" not in same.output  # one layout: one figure


def test_compare_decode_includes_the_all_reduces_as_estimate_does():
    """`compare -m chatglm2-6b -g h100-pcie --tp 8 -b 256 -c 128 --attn mqa` printed 3.82 ms where estimate's step is
    15.50, 11.68 of it the all-reduces over PCIe: compare had left communication out of decode_ms."""
    from kvcalc import compare, estimate

    rows = compare("chatglm2-6b", ["mqa"], "h100-pcie", tp=8, batch=256, context=128)
    est = estimate("chatglm2-6b", "h100-pcie", tp=8, batch=256, context=128, attn="mqa")
    mqa = next(r for r in rows if r["variant"] == "mqa")
    assert mqa["decode_ms"] == est.decode.ms and est.decode.allreduce_ms > 10


def test_capacity_refuses_an_engine_that_does_not_run_on_the_gpu():
    """`capacity -g mi300x -e trtllm` answered 40 sequences, where estimate and serve refuse TensorRT-LLM on AMD."""
    for gpu, engine in (("mi300x", "trtllm"), ("mi250x", "sglang")):
        out = CliRunner().invoke(app, ["capacity", "-m", "llama-2-7b", "-g", gpu, "-c", "4096", "-e", engine])
        assert out.exit_code == 2 and f"--engine: {engine} does not run on {gpu}" in out.output
        assert "Traceback" not in out.output


def test_simulated_vllm_takes_the_step_budget_capacity_and_the_closed_form_take():
    """vLLM 0.28+ gives a GPU showing >= 160 GiB 16,384 batched tokens (PR #51726; formulas/engine_memory.py
    vllm_default_batching); the simulator had kept 8,192 on MI300X, B200, B300 and MI325X."""
    from kvcalc.serving.closed_form import default_step_tokens
    from kvcalc.serving.simulate import simulate

    for gpu, tokens in (("mi300x", 16384), ("b200", 16384), ("h200", 8192), ("a100", 2048)):
        sim = simulate("llama-3.1-8b", gpu, input_len=256, output_len=4, num_prompts=2, concurrency=2, engine="vllm")
        assert sim["step_tokens"] == tokens == default_step_tokens("vllm", gpu)
