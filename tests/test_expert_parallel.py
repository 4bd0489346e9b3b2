"""Expert parallelism: experts over ep GPUs, attention in data-parallel replicas, dispatch and combine."""

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.estimator import evaluate
from kvcalc.formulas.kv import kv_bytes_per_sequence
from kvcalc.formulas.params import total_params, weight_bytes_per_gpu
from kvcalc.planning.capacity import capacity
from kvcalc.specs.catalog import load_gpu, load_model

# DeepSeek-V3 config.json: hidden 7168, 61 layers of which the first 3 dense, 256 routed experts of
# moe_intermediate_size 2048 (gate, up, down), 8 per token.
ROUTED = 58 * 256 * 3 * 7168 * 2048


def test_experts_spread_over_ep_gpus_the_rest_replicated():
    m = load_model("deepseek-v3")
    assert weight_bytes_per_gpu(m, 2.0, 1, 1, 8) == pytest.approx((total_params(m) - ROUTED) * 2 + ROUTED * 2 / 8)
    # tp 2 inside: the non-expert part halves, the experts stay 1 / ep, and both GPUs keep whole what tensor
    # parallelism does not split: the norms (123 of 7168, 61 x (512 + 1536) on the MLA latents), the routers
    # (58 x 7168 x 256) and MLA's q_a and kv_a projections (61 x 7168 x (1536 + 576))
    whole = 123 * 7168 + 61 * 2048 + 58 * 7168 * 256 + 61 * 7168 * 2112
    assert weight_bytes_per_gpu(m, 2.0, 2, 1, 8) == pytest.approx(
        (total_params(m) - ROUTED) * 2 / 2 + ROUTED * 2 / 8 + whole * 2 / 2)


def test_each_replica_holds_its_own_sequences_and_the_moe_layers_exchange_tokens():
    m, hw = load_model("deepseek-v3"), load_gpu("h200")
    kw = dict(batch=256, context=4096, prompt=4096, weight_dtype="fp8", kv_dtype="bf16")
    ev = evaluate(m, hw, ep=8, **kw)  # tp 1: 8 data-parallel replicas of 32 sequences
    assert ev.memory["kv_cache"] == pytest.approx(32 * kv_bytes_per_sequence(m, 4096, 2.0))
    # dispatch + combine over 58 MoE layers: 32 tokens x 8 experts x 7168 x 2 bytes x 7/8, at half NVLink's 900 GB/s
    assert ev.comm_s == pytest.approx(2 * 58 * 32 * 8 * 7168 * 2 * 7 / 8 / 450e9)
    # the routed experts' FLOPs on one GPU are 1/8 of the whole batch's
    tp8 = evaluate(m, hw, tp=8, **kw)
    flops = lambda e: next(t.op.cost.flops for t in e.decode.ops if t.op.name == "moe/routed")  # noqa: E731
    assert flops(ev) == pytest.approx(flops(tp8))


def test_capacity_counts_every_replicas_sequences():
    plan = capacity("deepseek-v3", "h200", context=4096, weight_dtype="fp8", ep=8)
    assert plan["expert_parallel"] == 8 and plan["tensor_parallel"] == 1 and plan["min_gpus_for_weights"] == 8
    per_replica = plan["kv_budget_bytes_per_gpu"] // kv_bytes_per_sequence(load_model("deepseek-v3"), 4096, 2.0)
    assert plan["max_sequences_at_context"] == 8 * per_replica


@pytest.mark.parametrize("args, says", [
    (["-m", "llama-3-8b", "--ep", "2"], "no experts"),
    (["-m", "deepseek-v3", "--ep", "3"], "divide"),
    (["-m", "deepseek-v3", "--tp", "2", "--ep", "4", "--pp", "2"], "--ep"),
    (["-m", "deepseek-v3", "--tp", "4", "--ep", "6"], "multiple of --tp"),
])
def test_ep_errors_are_one_line(args, says):
    r = CliRunner().invoke(app, ["estimate", *args])
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output


def test_sweep_and_serve_take_ep():
    import warnings

    from kvcalc import estimate, serve, sweep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = sweep(["deepseek-v3", "llama-3-8b"], ["h200"], batch=[256], context=[4096], weight_dtype=["fp8"],
                   engine=["roofline"], ep=[1, 8])
    assert set(df[df.model == "llama-3-8b"].expert_parallel) == {1}  # a dense model is skipped at ep 8
    row = df[(df.model == "deepseek-v3") & (df.expert_parallel == 8)]
    e = estimate("deepseek-v3", "h200", batch=256, context=4096, weight_dtype="fp8", ep=8, engine="roofline")
    assert row.decode_ms.item() == pytest.approx(e.decode.ms) and row.weights_bytes.item() == e.weights.bytes
    # serve's pool: each of the 8 data-parallel replicas holds its own sequences, as capacity counts them
    s = serve("deepseek-v3", "h200", input_len=2000, output_len=500, concurrency="max", weight_dtype="fp8", ep=8)
    plan = capacity("deepseek-v3", "h200", context=2500, weight_dtype="fp8", ep=8)
    assert s["max_concurrency"] == plan["max_sequences_at_context"] and s["gpus"] == 8
    tp8 = serve("deepseek-v3", "h200", input_len=2000, output_len=500, concurrency="max", weight_dtype="fp8", tp=8)
    assert s["output_tokens_per_s_per_gpu"] > 2 * tp8["output_tokens_per_s_per_gpu"]


def test_dispatch_and_combine_use_ncclis_measured_all_to_all_where_the_profile_has_it():
    """With H200's vLLM profile, each of the 2 x 58 all-to-alls costs the fitted NCCL curve's t0 plus 7/8 of the
    32 x 8 x 7168 x 2 bytes at its bus bandwidth, slower than the datasheet link's 450 GB/s one way."""
    from kvcalc.specs.catalog import resolve_engine

    m, hw = load_model("deepseek-v3"), load_gpu("h200")
    prof = resolve_engine("vllm", hw)
    a2a = prof.alltoall["ep8"]
    assert a2a.fit.rows_held_out >= 5 and a2a.bus_bandwidth_GBps < 450
    ev = evaluate(m, hw, ep=8, batch=256, context=4096, prompt=4096, weight_dtype="fp8", kv_dtype="bf16", profile=prof)
    message = 32 * 8 * 7168 * 2
    assert ev.comm_s == pytest.approx(2 * 58 * (a2a.t0_us * 1e-6 + 7 / 8 * message / (a2a.bus_bandwidth_GBps * 1e9)))
    assert ev.comm_s > 2 * 58 * message * 7 / 8 / 450e9
