"""Speculative decoding: closed forms, the verify pass, draft sizes, and the papers' published speed-ups."""

import pytest
from typer.testing import CliRunner

from kvcalc import estimate
from kvcalc.cli import app
from kvcalc.estimator import precision
from kvcalc.formulas.forward import decode_ops
from kvcalc.formulas.speculative import draft_params, expected_tokens, verify_ops
from kvcalc.specs.catalog import load_model
from kvcalc.speculation import parse


def test_expected_tokens_closed_form():
    assert expected_tokens(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)  # 3.3616 (Leviathan et al., eq. 1)
    assert expected_tokens(1.0, 4) == 5 and expected_tokens(0.0, 4) == 1
    assert parse("mtp=1").tokens_per_step() == pytest.approx(1.875)  # DeepSeek-V3: 85-90 % second-token acceptance
    assert parse("medusa=4,accepted=3.2").tokens_per_step() == 3.2


def test_verify_reads_the_weights_once_for_k_plus_one_tokens():
    m, p = load_model("llama-3-8b"), precision("bf16", "bf16")
    plain, verify = decode_ops(m, 1, 1024, p), verify_ops(m, 1, 1024, 4 + 1, p)  # k = 4 drafts and the last token
    weights = lambda ops: sum(o.cost.weight_bytes for o in ops if o.engine == "matmul")  # noqa: E731
    flops = lambda ops, c: sum(o.cost.flops for o in ops if o.op_class == c)  # noqa: E731
    assert weights(verify) == weights(plain)
    for op_class in ("projection", "mlp", "lm_head"):  # every position gets its own logits
        assert flops(verify, op_class) == 5 * flops(plain, op_class)


def test_draft_sizes_from_the_configs():
    m = load_model("llama-2-7b")  # config.json: hidden 4096, vocab 32000, MHA 32 x 128, intermediate 11008
    d, v, f = 4096, 32000, 11008
    assert draft_params(m, "medusa", 4) == 4 * (d * d + d + d * v)
    layer = 4 * d * d + 3 * d * f + 2 * d + d  # q, k, v, o; gate, up, down; two norms and the final norm
    assert draft_params(m, "eagle", 4) == layer + 2 * d * d  # plus the 2d -> d fc; embedding and head shared


@pytest.mark.parametrize("model, gpu, tp, batch, spec, low, high, source", [
    # DeepSeek-V3 report, 5.4.3: one MTP module, 85-90 % acceptance, "1.8 times TPS" in serving (large batch)
    ("deepseek-v3", "h200", 8, 256, "mtp=1", 1.8 * 0.9, 1.8 * 1.1, "DeepSeek-V3"),
    # Medusa (Cai et al. 2024) abstract: Medusa-1 "over 2.2x" on Vicuna-7B (Llama-2-7B shape), batch 1, A100
    ("llama-2-7b", "a100-sxm-80gb", 1, 1, "medusa=4", 2.2 * 0.9, 2.2 * 1.1, "Medusa-1"),
    # EAGLE (Li et al. 2024) abstract: 2.7x-3.5x for LLaMA2-Chat 70B, batch 1, at the paper's draft accuracy of about
    # 0.8 (kvcalc's default since the fortieth audit is vLLM's measured EAGLE-3 chain, 0.707: this checks the cost)
    ("llama-2-70b", "a100-sxm-80gb", 4, 1, "eagle,k=4,alpha=0.8", 2.7, 3.5, "EAGLE"),
])
def test_published_speedups(model, gpu, tp, batch, spec, low, high, source):
    e = estimate(model, gpu, batch=batch, context=1024, prompt=1, tp=tp, speculate=spec,
                 weight_dtype="fp8" if model == "deepseek-v3" else "bf16")
    assert low <= e.speculative.speedup <= high, (source, e.speculative.speedup)


def test_the_gain_vanishes_as_the_verify_step_turns_compute_bound():
    e = estimate("llama-3.1-70b", "h100", batch=1, context=2048, tp=4, speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    b = e.speculative.breakeven_batch
    assert b is not None and 1 < b <= 4096
    at = estimate("llama-3.1-70b", "h100", batch=b, context=2048, tp=4, speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    before = estimate("llama-3.1-70b", "h100", batch=b // 2, context=2048, tp=4,
                      speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    assert at.speculative.speedup <= 1 < before.speculative.speedup
    assert e.speculative.verify_arithmetic_intensity > 4 * e.decode.arithmetic_intensity


@pytest.mark.parametrize("spec, says", [
    ("bogus", "unknown method"), ("draft=llama-3.2-1b", "needs alpha"), ("eagle,k=0", "between"),
    ("medusa=4,accepted=9", "exceeds"), ("draft=llama-2-7b,alpha=0.5", "tokenizer"), ("eagle,alpha=x", "a number"),
    ("medusa=4,tree=64", "with accepted="), ("mtp=1,accepted=1.8,tree=8", "medusa and eagle"),
    ("eagle,k=6,accepted=3,tree=5", "fewer nodes"),
])
def test_speculate_errors_are_one_line(spec, says):
    r = CliRunner().invoke(app, ["estimate", "-m", "llama-3-8b", "--speculate", spec])
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output


def test_compare_and_sweep_give_estimates_speculative_figures():
    from kvcalc import compare, sweep

    e = estimate("llama-3-8b", "h100", batch=64, context=2048, speculate="eagle,k=4", engine="roofline")
    row = compare("llama-3-8b", ["mqa"], "h100", batch=64, context=2048, speculate="eagle,k=4", engine="roofline")[0]
    assert row["speculative_speedup"] == pytest.approx(e.speculative.speedup)
    assert row["speculative_breakeven_batch"] == e.speculative.breakeven_batch
    df = sweep(["llama-3-8b"], batch=[64], context=[2048], engine=["roofline"], speculate=[None, "eagle,k=4"])
    plain, spec = df[df.speculate == "none"], df[df.speculate == "eagle,k=4"]
    assert spec.speculative_speedup.item() == pytest.approx(e.speculative.speedup)
    assert spec.speculative_ms_per_token.item() == pytest.approx(e.speculative.ms_per_token)
    assert plain.speculative_speedup.isna().all()


@pytest.mark.parametrize("model, gpu, layout, dtype, form", [
    ("llama-3.1-70b", "h100", {"tp": 2, "pp": 2}, "bf16", "eagle,k=4"),
    ("deepseek-v3", "h200", {"tp": 1, "ep": 8}, "fp8", "mtp=1"),
])
def test_sweep_times_speculation_under_stages_and_expert_parallelism_as_estimate_does(model, gpu, layout, dtype, form):
    from kvcalc import sweep

    df = sweep([model], [gpu], batch=[1, 64], context=[4096], weight_dtype=[dtype], speculate=[form],
               **{k: [v] for k, v in layout.items()})
    for b in (1, 64):
        e = estimate(model, gpu, batch=b, context=4096, weight_dtype=dtype, speculate=form, **layout)
        row = df[df.batch == b]
        assert row.speculative_ms_per_token.item() == pytest.approx(e.speculative.ms_per_token)
        assert row.speculative_speedup.item() == pytest.approx(e.speculative.speedup)


def test_roofline_places_the_verify_step_right_of_the_decode_step():
    """At batch 1 the verify step of k + 1 = 5 tokens reads the same weights for 5 times the matmul FLOPs: its
    intensity is about 5x the plain step's (a little less: attention reads the same cache once per query)."""
    from kvcalc.report.plot import operating_points

    points = {pt[2]: pt[5] for pt in operating_points("llama-3-8b", [None], [1], 1024, speculate="eagle,k=4")}
    assert set(points) == {"decode step", "verify step"}
    assert 4 < points["verify step"] / points["decode step"] <= 5


def test_a_tree_verifies_its_nodes_and_stops_paying_at_a_smaller_batch():
    """Medusa's 64-node tree (tree=64, depth 4) at the same accepted length as a chain of 4: the verify pass runs
    64 tokens a sequence, 64 logits each, so it turns compute-bound, and stops paying, at a smaller batch."""
    m, p = load_model("llama-2-7b"), precision("bf16", "bf16")
    sp = parse("medusa=4,accepted=2.5,tree=64")
    assert (sp.k, sp.verify_tokens) == (4, 64)
    plain = decode_ops(m, 2, 1024, p)
    lm = lambda ops: sum(o.cost.flops for o in ops if o.op_class == "lm_head")  # noqa: E731
    assert lm(verify_ops(m, 2, 1024, sp.verify_tokens, p)) == 64 * lm(plain)
    tree = estimate(m, "a100-sxm-80gb", batch=1, context=1024, speculate="medusa=4,accepted=2.5,tree=64")
    chain = estimate(m, "a100-sxm-80gb", batch=1, context=1024, speculate="medusa=4,accepted=2.5")
    assert tree.speculative.verify_tokens == 64 and chain.speculative.verify_tokens == 5
    assert tree.speculative.breakeven_batch <= 16  # the chain still gains at 4096 (None) or stops far later
    assert chain.speculative.breakeven_batch is None or chain.speculative.breakeven_batch > 16
    assert tree.speculative.verify_arithmetic_intensity > 10 * chain.speculative.verify_arithmetic_intensity / 5


def test_speculation_under_pipeline_and_expert_parallelism_matches_serve():
    """estimate --speculate with --pp or --ep times the verify step as serve does: at one request in flight serve's
    TPOT is estimate's time per token (within the prefill of the next request), and speculation gains at batch 1."""
    from kvcalc.serving.closed_form import serve

    e = estimate("llama-3.1-70b", "h100", batch=1, context=1000 + 250, tp=2, pp=2,
                 speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    r = serve("llama-3.1-70b", "h100", input_len=1000, output_len=500, concurrency=1, tp=2, pp=2,
              speculate="draft=llama-3.2-1b,k=4,alpha=0.7")
    assert r["tpot_ms"] == pytest.approx(e.speculative.ms_per_token, rel=0.1)
    assert e.speculative.speedup > 1
    moe = estimate("deepseek-v3", "h200", batch=8, context=4096, ep=8, weight_dtype="fp8", speculate="mtp=1")
    assert moe.speculative.speedup > 1 and moe.speculative.tokens_per_step == pytest.approx(1.875)


def test_an_eagle_tree_drafts_a_level_a_step():
    """EAGLE grows its tree a level per draft step: a 60-node tree of depth 5 drafts ceil(59 / 5) = 12 tokens a
    sequence each step. At batch 1 the draft layer's weight read dominates, so the wider steps cost about what a chain
    costs; at batch 64 they cost more than twice a chain's, but no more than a chain drafting for 64 x 12 sequences
    (the tree's tokens share their sequence's cache read). Medusa's heads run once whatever the tree."""
    from kvcalc.speculation import parse

    assert parse("eagle,k=5,accepted=3.8,tree=60").draft_width == 12
    assert parse("medusa=4,accepted=2.5,tree=64").draft_width == 1

    def draft_ms(batch, form):
        return estimate("llama-3.1-8b", "h100", batch=batch, context=1024, speculate=form).speculative.draft_ms

    chain, tree = "eagle,k=5,accepted=3.8", "eagle,k=5,accepted=3.8,tree=60"
    assert draft_ms(1, tree) == pytest.approx(draft_ms(1, chain), rel=0.02)
    assert 2 * draft_ms(64, chain) < draft_ms(64, tree) <= draft_ms(64 * 12, chain)
