"""Regression tests for the eighth round (2026-12-06, from 06:03 UTC; docs/validation.md "Eighth hostile audit"):
the seventh audit's "Left" items taken up, and the eighth audit's findings, each reproduced, with the expected
figures worked by hand or taken from a cited source or another command."""

import json
import warnings

import pytest
from test_fifth_audit import one_line_error, runner  # tests/ is on sys.path (pytest's rootdir-relative imports)

from kvcalc.cli import app
from kvcalc.estimator import fp8_block_refusal
from kvcalc.specs.catalog import load_model


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --- W6 (left by the seventh audit): fp8-block slices that are not whole 128-wide blocks --------------------------

QWEN = ["-m", "qwen3-235b-a22b", "-g", "h200", "--weight-dtype", "fp8-block"]


def test_w6_fp8_block_experts_split_into_part_blocks_are_refused():
    """Qwen3-235B-A22B's experts are 1,536 wide (config.json moe_intermediate_size): over 8 GPUs each holds 192, not
    a multiple of 128, and vLLM and SGLang refuse the checkpoint ("The output_size of gate's and up's weight = 192 is
    not divisible by weight quantization block_n = 128", users' logs of Qwen3-235B-A22B-FP8 and MiniMax-M2 at TP 8).
    At --tp 4 each holds 384 = 3 x 128; under --ep the experts stay whole."""
    line = one_line_error(["estimate", *QWEN, "--tp", "8"])
    assert "--tp" in line and "1,536 / 8 = 192" in line and "--ep" in line
    for ok in (["--tp", "4"], ["--tp", "8", "--ep", "8"], ["--tp", "1", "--ep", "8"]):
        out = runner.invoke(app, ["estimate", *QWEN, *ok, "-f", "json"])
        assert out.exit_code == 0, (ok, out.output)
    assert "192" in one_line_error(["serve", *QWEN, "--tp", "8", "-i", "1000", "--output-len", "100", "-n", "8"])
    assert "192" in one_line_error(["capacity", *QWEN, "--gpus", "8", "-c", "4096"])


def test_w6_the_rule_covers_every_block_quantised_slice():
    """By hand: a slice is whole blocks when width / tp is a multiple of 128. Llama-3-8B's MLP (14,336) over 8 GPUs:
    1,792 = 14 x 128, held; Qwen2.5-14B's (13,824) over 8: 1,728, refused; its o_proj (40 heads x 128) over 8: 640,
    held. DeepSeek-V3's over 16 GPUs: experts 2,048 / 16 = 128, held; over 32 its dense MLP (18,432) is 576 a GPU,
    the error SGLang's DeepSeek guide quotes ("Weight output_partition_size = 576 is not divisible by weight
    quantization block_n = 128", benchmark/deepseek_v3/README.md). bf16 is never refused."""
    llama, deepseek = load_model("llama-3-8b"), load_model("deepseek-v3")
    assert fp8_block_refusal(llama, "fp8-block", 8) is None
    assert fp8_block_refusal(llama, "bf16", 8) is None
    assert fp8_block_refusal(deepseek, "fp8-block", 16) is None
    assert "18,432 / 32 = 576" in fp8_block_refusal(deepseek, "fp8-block", 32)
    no_dense = deepseek.model_copy(update={"moe": deepseek.moe.model_copy(update={"first_dense_layers": 0})})
    assert "2,048 / 32 = 64" in fp8_block_refusal(no_dense, "fp8-block", 32)
    # expert parallelism keeps the routed experts whole; the shared expert is still split over the attention's tp
    assert "shared experts' width 2,048 / 32 = 64" in fp8_block_refusal(no_dense, "fp8-block", 32, ep=32)
    assert fp8_block_refusal(no_dense, "fp8-block", 16, ep=32) is None
    qwen14 = llama.model_copy(update={"mlp": llama.mlp.model_copy(update={"intermediate_size": 13_824})})
    assert "13,824 / 8 = 1,728" in fp8_block_refusal(qwen14, "fp8-block", 8)
    assert fp8_block_refusal(qwen14, "fp8-block", 4) is None  # 3,456 = 27 x 128


def test_w6_plan_and_sweep_leave_the_layout_out():
    """plan never deploys MiniMax-M2's fp8-block experts (config.json: moe_intermediate_size 1,536, weight_block_size
    [128, 128]) at TP 8 without expert parallelism; sweep skips that cell."""
    from kvcalc.planning.plan import deployments
    from kvcalc.specs.catalog import load_gpu

    def layouts(model):
        return {(d.weight_dtype, d.tp, d.ep) for d in deployments(load_model(model), [load_gpu("h200")], ["vllm"],
                                                                  convert=False, max_gpus=8, disaggregated=False)}

    minimax = layouts("tests/fixtures/hf/MiniMax-M2")
    assert ("fp8-block", 4, 1) in minimax and ("fp8-block", 1, 8) in minimax and ("fp8-block", 8, 1) not in minimax
    assert ("bf16", 8, 1) in layouts("qwen3-235b-a22b")  # the same experts in bf16 split at any width
    from kvcalc.grid import sweep

    with pytest.warns(UserWarning, match=r"skipped qwen3-235b-a22b at tp 8 .*1,536 / 8 = 192"):
        warnings.simplefilter("always")
        df = sweep(["qwen3-235b-a22b"], ["h200"], weight_dtype=["fp8-block"], tp=[4, 8], batch=[1], context=[1024])
    assert list(df["tensor_parallel"]) == [4]
