"""Pipeline parallelism: per-stage weights and KV, micro-batches and the bubble, stage sends, prefill fill."""

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.estimator import evaluate
from kvcalc.formulas.parallel import stage_layer_fraction
from kvcalc.formulas.params import total_params, weight_bytes_per_gpu
from kvcalc.planning.capacity import capacity
from kvcalc.specs.catalog import load_gpu, load_model

V, D = 128256, 4096  # Llama-3-8B config.json: vocab_size, hidden_size; 32 layers; untied lm_head


def test_stage_holds_its_layers_and_the_larger_edge():
    """Llama-3-8B bf16 in 2 stages: each stage 16 of the 32 layers; the last also the lm_head and final norm,
    the first the embedding (the same size), so the heaviest stage is the last. Under tensor parallelism each GPU
    keeps the norms (65 of 4096) whole: a stage its layers' half of the 64 layer norms, the last the final norm too
    (the sixteenth audit, E1: its copy had been spread over both stages)."""
    m = load_model("llama-3-8b")
    layers = total_params(m) - 2 * V * D - D
    norms = 65 * D * 2
    assert weight_bytes_per_gpu(m, 2.0, 1, 2) == (layers / 2 + V * D + D) * 2
    final = D * 2
    assert weight_bytes_per_gpu(m, 2.0, 2, 2) == ((layers / 2 + V * D + D) * 2 / 2 + (norms - final) * (1 - 1 / 2) / 2
                                                  + final * (1 - 1 / 2))
    assert weight_bytes_per_gpu(m, 2.0, 4, 1) == total_params(m) * 2 / 4 + norms * (1 - 1 / 4)
    assert stage_layer_fraction(load_model("llama-3.1-70b"), 3) == 27 / 80  # ceil(80 / 3) layers on the heaviest


def test_decode_runs_micro_batches_through_the_whole_depth_plus_sends():
    """Batch 64 on 2 stages: two micro-batches of 32 in flight; each token passes both stages, so the step is the
    full depth at batch 32 plus one send of the hidden states and the residual, 2 x 32 x 4096 x 2 bytes, at half
    NVLink's 900 GB/s (vLLM's IntermediateTensors; the thirty-seventh audit, links 4)."""
    m, hw = load_model("llama-3-8b"), load_gpu("h100")
    kw = dict(context=2048, prompt=2048, weight_dtype="bf16", kv_dtype="bf16")
    two = evaluate(m, hw, batch=64, pp=2, **kw)
    one = evaluate(m, hw, batch=32, **kw)
    send = 2 * 32 * 4096 * 2 / 450e9
    assert two.decode.seconds == pytest.approx(one.decode.seconds) and two.pipeline_s == pytest.approx(send)
    # a batch smaller than the stages: one micro-batch, the other stage idle (the bubble)
    bubble = evaluate(m, hw, batch=1, pp=2, **kw)
    assert bubble.decode.seconds == pytest.approx(evaluate(m, hw, batch=1, **kw).decode.seconds)


def test_prefill_fills_the_pipeline():
    """4 prompts on 2 stages: 2 micro-batches of 2, (m + pp - 1) / pp = 3/2 of one micro-batch's full depth."""
    m, hw = load_model("llama-3-8b"), load_gpu("h100")
    kw = dict(context=0, prompt=1024, weight_dtype="bf16", kv_dtype="bf16")
    two = evaluate(m, hw, batch=4, pp=2, **kw)
    micro = evaluate(m, hw, batch=2, **kw).prefill.seconds
    send = 2 * 2 * 1024 * 4096 * 2 / 450e9  # two prompts of 1,024 tokens; hidden states and residual
    assert two.prefill.seconds + two.prefill_pipeline_s == pytest.approx(micro * 1.5 + send)


def test_capacity_splits_weights_and_kv_over_stages():
    tp4 = capacity("llama-3.1-70b", "h100", context=8192, gpus=4)
    pp2 = capacity("llama-3.1-70b", "h100", context=8192, gpus=2, pp=2)
    assert pp2["gpus_per_replica"] == 4 and pp2["pipeline_parallel"] == 2
    # Per GPU: tp 4 holds (layers + embedding + lm_head + final norm) / 4; 2 stages of tp 2 hold (layers / 2 +
    # lm_head + final norm) / 2 on the last stage. The embedding equals the lm_head, so they differ by a quarter of
    # the final norm (8192 x 2 bytes), and by the norms (161 x 8192 x 2 bytes) tensor parallelism keeps whole: 3/4
    # of them on each of 4 GPUs; on each of 2, 1/2 of the last stage's half of the 160 layer norms and 1/2 of the final
    # norm, whole on that stage. A stage holds 40 layers' KV for 4 of the 8 KV heads, as tp 4 holds 80 x 2.
    norms, final = 161 * 8192 * 2, 8192 * 2
    assert pp2["weights_bytes_per_gpu"] == pytest.approx(
        tp4["weights_bytes_per_gpu"] + final / 4 + (norms - final) / 2 / 2 + final / 2 - norms * 3 / 4, rel=1e-12)
    assert pp2["max_sequences_at_context"] == pytest.approx(tp4["max_sequences_at_context"], abs=1)


def test_pp_flag_errors_are_one_line():
    r = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "--pp", "33"])
    assert r.exit_code == 2 and "--pp" in r.output and "32 layers" in r.output
    r = CliRunner().invoke(app, ["serve", "-m", "llama-3-8b", "-i", "8", "--output-len", "8", "-n", "1", "--pp", "2",
                                 "--disaggregate", "1:1"])
    assert r.exit_code == 2 and "--pp" in r.output


def test_sweep_has_tp_and_pp_axes_and_skips_what_does_not_divide():
    import warnings

    from kvcalc import estimate, sweep

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = sweep(["llama-3-8b", "falcon-7b"], batch=[1, 64], context=[1024], tp=[1, 2], pp=[1, 2], engine=["roofline"])
    assert any("falcon-7b at tp 2" in str(w.message) for w in caught)  # 71 heads do not split over 2 GPUs
    assert len(df) == (4 + 2) * 2
    row = df[(df.model == "llama-3-8b") & (df.tensor_parallel == 2) & (df.pipeline_parallel == 2) & (df.batch == 64)]
    e = estimate("llama-3-8b", batch=64, context=1024, tp=2, pp=2, engine="roofline")
    assert row.decode_ms.item() == pytest.approx(e.decode.ms) and row.prefill_ms.item() == pytest.approx(e.prefill.ms)
    assert row.weights_bytes.item() == pytest.approx(e.weights.bytes)  # the deployment's, as estimate's (sixth audit C2)
