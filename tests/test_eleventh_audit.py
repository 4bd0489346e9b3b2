"""Regression tests for the eleventh hostile audit (docs/validation.md, "Eleventh hostile audit"), each named after
its finding."""

from __future__ import annotations

from tests.test_fifth_audit import one_line_error


def test_e1_a_v1_or_v2_model_runner_before_vllm_0_7_is_refused():
    """vLLM's V1 engine (GPUModelRunner and the runners after it) came with 0.7.0's V1 alpha; --vllm-runner v2 with
    --vllm-version 0.5 had sized vLLM 0.5's pool by the v2 rule (+8 %)."""
    for runner in ("v1", "v2"):
        line = one_line_error(["capacity", "-m", "llama-3.1-8b", "-c", "4096", "-e", "vllm", "--vllm-version", "0.5",
                               "--vllm-runner", runner])
        assert f"--vllm-runner {runner}: vLLM's V1 engine, and its model runners, came with 0.7.0" in line


def test_e3_capacity_says_its_target_is_met_at_the_fewest_gpus_a_replica():
    import json

    from kvcalc.cli import app
    from tests.test_fifth_audit import runner

    d = json.loads(runner.invoke(app, ["capacity", "-m", "llama-3.1-70b", "-g", "h100-sxm", "-c", "8192",
                                       "--target-tokens-per-s", "20000", "-f", "json"]).stdout)
    assert d["gpus_for_target"] > d["gpus_per_replica"]
    assert any("the target is met with replicas of the fewest GPUs" in n for n in d["warnings"])
