"""The thirty-fourth hostile audit (docs/validation.md, "Thirty-fourth hostile audit") and the thirty-third's leftovers
it took: each test is named after its finding."""

import json

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-e", "vllm"],
    ["capacity", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-c", "4096", "-e", "vllm"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8"],
    ["serve", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "16", "-i", "1000", "--output-len", "100", "-n", "8",
     "--simulate"],
])
def test_33_links1_rest_a_pcie_group_past_one_server_is_said_to_cross_the_network(args):
    """A server holds node_gpus (8) L40S; sixteen in one tensor-parallel group all-reduce across two servers over a
    network the spec does not give, which estimate, capacity and serve had timed over PCIe without a word."""
    out = CliRunner().invoke(app, [*args, "-f", "json"])
    assert out.exit_code == 0, out.output
    assert "a group of 16 l40s GPUs spans 2 servers of 8 (node_gpus)" in out.stderr + out.stdout


def test_33_links1_rest_eight_pcie_cards_fit_one_server():
    out = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-70b", "-g", "l40s", "--tp", "8", "-f", "json"])
    assert out.exit_code == 0 and "servers of" not in out.stderr + out.stdout


@pytest.mark.parametrize("gpu, says", [("mi355x", "transferred (from h200.vllm) curves of the vllm 0.24.0 profile"),
                                       ("h100-sxm", "measured curves of the vllm 0.24.0 profile")])
def test_34_amd3_explain_names_where_the_curves_come_from(gpu, says):
    """`--explain`'s decode and prefill lines had called every profile's curves measured, beside a header that said
    the MI355X's were transferred from the H200's."""
    from kvcalc import estimate
    from kvcalc.report.explain import explain
    from kvcalc.specs.catalog import load_gpu, load_model

    steps = explain(estimate("llama-3.1-8b", gpu, engine="vllm"), load_model("llama-3.1-8b"), load_gpu(gpu))
    lines = [s.formula for s in steps if s.quantity in ("Decode time", "Prefill time")]
    assert len(lines) == 2 and all(says in line for line in lines)


def test_34_simulate1_a_preempted_vllm_request_recomputes_only_what_the_prefix_cache_lost():
    """vLLM V1 frees a preempted request's blocks tail-first into the free queue, keeping their hashes until
    get_new_blocks evicts them, and get_computed_blocks finds what is left when it is scheduled again
    (vllm/v1/core/sched/scheduler.py, block_pool.py). By hand: pool 10 tokens (block 1), budget 8, a step 1 s plus
    1 s a prompt token; A and B (4 in, 4 out) at 0.
    step 1 (0-9): both prompts, 8 tokens: first tokens at 9, 4 + 4 blocks.
    step 2 (9-10): both decode: 5 + 5 blocks, the pool full.
    step 3 (10-11): each needs a 6th block: B, last in the running list, is preempted with 5 full blocks cached;
      A takes one, evicting B's last. step 4 (11-12): A takes a 7th, evicting B's 4th, and finishes at 12.
    step 5 (12-16): B finds 3 of its 6 tokens (4 prompt + 2 generated) cached and recomputes 3: 1 + 3 s.
    step 6 (16-17): its 4th token, done at 17 (20 had it recomputed all 6: a 7 s step)."""
    import numpy as np

    from kvcalc.engines.scheduler import vllm_v1
    from kvcalc.serving.simulate import StepGrid, Workload, simulate_schedule

    class Toy:
        decode_gain, decode_q, pp, tp, ep = 1.0, 1, 1, 1, 1

        def seconds(self, decode_batch, context, chunk, chunk_context, prompt_len=None):
            return 1.0 + chunk

    w = Workload(np.array([0.0, 0.0]), np.array([4, 4]), np.array([4, 4]))
    r = simulate_schedule(vllm_v1(budget=8, max_seqs=8, block_size=1), StepGrid(Toy(), 64, 4096, 8), w,
                          pool_tokens=10, log_steps=True)
    assert r.preemptions == 1 and list(r.first_token_s) == [9.0, 9.0] and list(r.finish_s) == [12.0, 17.0]
    assert r.log[-1]["chunk"] == 3 and r.log[-1]["ids"] == [1]
