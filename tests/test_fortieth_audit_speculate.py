"""The fortieth hostile audit, area speculate (docs/validation.md, "Fortieth hostile audit"): each test is named after
the finding it holds fixed, and asserts a hand computation, a cited engine rule or a cited source's figure."""

import json
import re
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kvcalc
from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.speculation import parse

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_40_speculate1_mtp_past_the_checkpoints_layers_needs_an_acceptance():
    """speculate 1: `--speculate mtp=7` on DeepSeek-V3 gave 5.251 tokens a step (1.81x) with no word: 0.875, the
    DeepSeek-V3 report's acceptance of the second token (5.4.3), at every one of 7 drafts from the checkpoint's one
    MTP layer (num_nextn_predict_layers 1), where nebius/MTP-DeepSeek-V3-0324's model card measures that module at k = 7 at 3.20
    tokens a step (MT-bench, HumanEval, GSM8K, temperature 0) and vLLM warns of the lower acceptance at start-up
    (vllm/config/speculative.py). It is now a one-line error naming accepted= and alpha=; with accepted=3.2 the step
    yields the measured 3.2."""
    with pytest.raises(KvcalcError) as e:
        kvcalc.estimate("deepseek-v3", "h200", tp=8, batch=1, context=1024, weight_dtype="fp8", speculate="mtp=7")
    text = str(e.value)
    assert text.startswith("speculate mtp=7:") and "\n" not in text  # the API names its keyword, the CLI its flag
    assert "accepted=" in text and "alpha=" in text and "3.20" in text
    given = kvcalc.estimate("deepseek-v3", "h200", tp=8, batch=1, context=1024, weight_dtype="fp8",
                            speculate="mtp=7,accepted=3.2").speculative
    assert given.tokens_per_step == 3.2
    # within the checkpoint's one layer the default stands: 1 + 0.875 tokens a step (Leviathan et al. eq. 1 at k = 1)
    one = kvcalc.estimate("deepseek-v3", "h200", tp=8, batch=1, context=1024, weight_dtype="fp8", speculate="mtp=1")
    assert one.speculative.tokens_per_step == 1.875 and one.warnings == []


@pytest.mark.parametrize("args", [
    ["estimate", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--speculate", "mtp=2"],
    ["serve", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "-i", "1000", "--output-len", "100", "-n", "8",
     "--speculate", "mtp=2"],
    ["serve", "-m", "qwen3-next-80b-a3b", "-g", "h200", "--tp", "4", "-i", "1000", "--output-len", "100", "-n", "8",
     "--num-prompts", "16", "--simulate", "--speculate", "mtp=4"],
    ["sweep", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--speculate", "none;mtp=2"],
    ["compare", "-m", "deepseek-v3", "-g", "h200", "--tp", "8", "--speculate", "mtp=3"],
])
def test_40_speculate1_every_command_refuses_an_mtp_depth_without_acceptance(args):
    """speculate 1: estimate, serve, serve --simulate, sweep and compare each time mtp=k > 1 (one MTP layer run k
    times) at the first draft's 0.875; each now exits 2 with the one-line --speculate error."""
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert re.search(r"--speculate mtp=\d: .* give accepted= .*alpha=", r.output)


def test_40_speculate1_plan_searches_the_depth_the_checkpoint_ships():
    """speculate 1: plan's MTP dimension (planning/plan.py SPECULATION) is `mtp`, k = 1 (speculation.DEFAULT_K), within
    DeepSeek-V3's and Qwen3-Next's one MTP layer, so the refusal leaves it at its default acceptance 0.875."""
    from kvcalc.planning.plan import SPECULATION
    from kvcalc.specs.catalog import load_model
    from kvcalc.speculation import mtp_depth_refusal

    sp = parse(SPECULATION)
    assert (sp.method, sp.k, sp.alpha) == ("mtp", 1, 0.875)
    for name in ("deepseek-v3", "qwen3-next-80b-a3b"):
        assert mtp_depth_refusal(load_model(name), sp) is None
    # a checkpoint that ships two MTP layers keeps the default at depth 2, not 3
    two = load_model("deepseek-v3").model_copy(update={"mtp_layers": 2})
    assert mtp_depth_refusal(two, parse("mtp=2")) is None and mtp_depth_refusal(two, parse("mtp=3")) is not None


def test_40_speculate1_web_refuses_it_as_the_cli_does():
    """speculate 1: the web's estimate page runs the same timer, so mtp=2 without an acceptance is its 422 error."""
    pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    r = TestClient(create_app()).get("/api/estimate", params={"model": "deepseek-v3", "gpu": "h200", "tp": "8",
                                                              "speculate": "mtp=2"})
    assert r.status_code == 422 and json.loads(r.text)["error"].startswith("--speculate mtp=2:")


def test_40_speculate1_serving_ledger_leaves_unpublished_mtp_depths_unscored():
    """speculate 1: the serving ledger mapped vLLM's num_speculative_tokens k to mtp=k, so sv-032 (k = 2) and sv-116
    (k = 4), Qwen3-Next on 4 B200s, ran at 0.875 at every draft from the checkpoint's one MTP layer (docs/validation.md:
    'kvcalc 2x faster'). Their source (vllm-project/recipes Qwen/Qwen3-Next.md at fb40f85f and f6ea54c8) prints the
    benchmark's output only, no acceptance, so both rows are skipped with that reason."""
    from kvcalc.ledgers.serving_sim import read_rows, row_kwargs

    rows = {r["id"]: r for r in read_rows(ROOT / "validation/serve/unseen-serving.csv")}
    speculative = {i for i, r in rows.items() if "num_speculative_tokens" in r["server_args"]}
    assert speculative == {"sv-032", "sv-116"}
    for i, k in (("sv-032", 2), ("sv-116", 4)):
        with pytest.raises(KvcalcError, match=rf"^num_speculative_tokens {k}: the source publishes no acceptance"):
            row_kwargs(rows[i])


def test_40_speculate2_eagle_default_is_vllms_pinned_eagle3_acceptance():
    """speculate 2: eagle's default acceptance, 0.8 at every draft, gave Llama-3.1-8B 2.952 tokens a step at k = 3
    (1 + 0.8 + 0.64 + 0.512), where vLLM's acceptance-length regression test (tests/v1/spec_decode/
    test_acceptance_length.py, vllm-project/vllm 029ba375; k = 3, MT-Bench, temperature 0) pins 2.60 for
    Llama-3.1-8B-Instruct, 2.56 for gpt-oss-20b and 2.26 for Qwen3-8B with RedHatAI's EAGLE-3 heads. The default is now
    the i.i.d. alpha whose k = 3 chain yields their median, 2.56: 1 + 0.707 + 0.707^2 + 0.707^3 = 1 + 0.707 + 0.499849
    + 0.353393 = 2.560242, within 1.6 % of Llama's 2.60."""
    s = kvcalc.estimate("llama-3.1-8b", "h200", batch=1, context=1024, speculate="eagle,k=3").speculative
    assert s.alpha == 0.707
    assert s.tokens_per_step == pytest.approx(2.560242, abs=1e-6)
    assert abs(s.tokens_per_step / 2.60 - 1) < 0.05 and abs(s.tokens_per_step / 2.56 - 1) < 0.001


def test_40_speculate2_readme_serve_figure_at_the_new_default():
    """speculate 2: the README's serve figure, Llama 3.1 8B on an H100 at 64 requests of 1000 in and 500 out with
    eagle,k=4, was 8,600 output tokens/s at 0.8 (3.36 tokens a step); at 0.707 a step yields 1 + 0.707 + 0.499849 +
    0.353393 + 0.249849 = 2.810 tokens, and the figure is 7,600 (the audit's own run at accepted=2.85: 7,709). The
    README quotes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eagle = kvcalc.serve("llama-3.1-8b", "h100-sxm", input_len=1000, output_len=500, concurrency=64,
                             speculate="eagle,k=4")
    assert parse("eagle,k=4").tokens_per_step() == pytest.approx(2.810091, abs=1e-6)
    assert round(eagle["output_tokens_per_s"], -2) == 7600
    assert "from about 4,800 to 7,600 output tokens/s\nwith `--speculate eagle,k=4`" in (ROOT / "README.md").read_text()


def test_40_speculate3_gpt_oss_eagle_head_is_held_as_it_is_read():
    """speculate 3: gpt-oss-120b's EAGLE layer was held at the checkpoint's mxfp4 (68,039,424 x 0.53125 = 36,145,944 B)
    though gpt-oss quantises only its experts (config.json modules_to_not_convert: self_attn, router, embed_tokens,
    lm_head; the spec's quantization.quantized = ["experts"]) and the time path read the layer in bf16. By hand, d =
    2880, 64 heads of 64, 8 KV heads, a gated MLP of 2880, biases on qkv, o and the MLP: qkv 2880 x 5120 + 5120 =
    14,750,720; o 4096 x 2880 + 2880 = 11,799,360; sinks 64; MLP 3 x 2880^2 + 3 x 2880 = 24,891,840; norms 3 x 2880 =
    8,640; fc 2 x 2880^2 = 16,588,800: 68,039,424 parameters, 136,078,848 B in bf16. The draft step's operators read
    the same bytes, less the 64 sinks' 128 B that the attention kernel's cost does not count as weights."""
    from kvcalc.estimator import precision
    from kvcalc.formulas.speculative import draft_ops, draft_params, draft_weight_bytes_per_gpu
    from kvcalc.specs.catalog import load_model

    m = load_model("gpt-oss-120b")
    hand = 14_750_720 + 11_799_360 + 64 + 24_891_840 + 8_640 + 16_588_800
    assert draft_params(m, "eagle", 3) == hand == 68_039_424
    e = kvcalc.estimate("gpt-oss-120b", "h200", batch=1, context=1024, speculate="eagle,k=3")
    assert e.inputs.weight_dtype == "mxfp4"
    assert e.speculative.draft_weights_bytes == 2 * hand == 136_078_848
    p = precision("mxfp4", "bf16")
    ops, _ = draft_ops(m, "eagle", 1, 1024, 3, p)
    read = {o.name: o.cost.weight_bytes for o in ops if o.name not in ("embedding", "lm_head")}
    assert read["draft/fc"] == 2 * 16_588_800  # the fc in bf16 as the dense layers are (was 8,812,800 at mxfp4)
    assert sum(read.values()) == draft_weight_bytes_per_gpu(m, "eagle", 3, None, p.b_w) - 64 * 2
    # where the checkpoint quantises its dense layers the head takes the format: Llama-3.1-8B at fp8, 1 B a weight
    # but its three norms (3 x 4096 at 2 B)
    llama = load_model("llama-3.1-8b")
    assert draft_weight_bytes_per_gpu(llama, "eagle", 3, None, 1.0) == draft_params(llama, "eagle", 3) + 3 * 4096


def test_40_speculate4_rate_is_vllms_average_draft_acceptance_rate():
    """speculate 4: vLLM logs "Avg Draft acceptance rate" = accepted / drafted tokens and "Mean acceptance length" =
    1 + accepted / drafts (vllm/v1/spec_decode/metrics.py, SpecDecodingLogging.log). For an i.i.d. 0.8 chain of k = 4
    the per-position rates are 0.8, 0.64, 0.512, 0.4096: rate (0.8 + 0.64 + 0.512 + 0.4096) / 4 = 0.5904 and length
    1 + 4 x 0.5904 = 3.3616. Taken as alpha, the rate gives (1 - 0.5904^5) / (1 - 0.5904) = 2.266 tokens, a third
    short; rate= gives the run's 3.3616."""
    assert parse("eagle,k=4,rate=0.5904").tokens_per_step() == pytest.approx(3.3616, abs=1e-12)
    assert parse("eagle,k=4,alpha=0.8").tokens_per_step() == pytest.approx(3.3616, abs=1e-12)
    assert parse("eagle,k=4,alpha=0.5904").tokens_per_step() == pytest.approx(2.266, abs=1e-3)
    for bad in ("eagle,k=4,rate=0.5,alpha=0.7", "eagle,k=4,rate=0.5,accepted=2", "eagle,k=4,rate=1.5",
                "eagle,k=4,rate=0.5,tree=20"):
        with pytest.raises(KvcalcError, match="^--speculate: "):
            parse(bad)
    # rate= is an acceptance given: mtp=2 with it is timed
    s = kvcalc.estimate("deepseek-v3", "h200", tp=8, batch=1, context=1024, weight_dtype="fp8",
                        speculate="mtp=2,rate=0.6").speculative
    assert s.tokens_per_step == pytest.approx(1 + 2 * 0.6)


def test_40_speculate4_docs_say_which_engine_metric_is_which():
    """speculate 4: the README and --speculate's help offered accepted= only as 'a tree's measured mean accepted
    length' and called alpha 'per-token acceptance', so vLLM's headline 'Avg Draft acceptance rate' read as alpha.
    They now map vLLM's "Mean acceptance length" to accepted= and its average rate to rate=."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert 'vLLM\'s "Mean acceptance length" (vllm/v1/spec_decode/metrics.py' in readme
    assert ('"Avg Draft acceptance rate" R (accepted / drafted tokens) is `rate=`, accepted = 1 + k R, not alpha'
            in readme)
    help_text = " ".join(runner.invoke(app, ["estimate", "--help"], terminal_width=200).output.split())
    assert "Mean acceptance length" in help_text and "Avg Draft acceptance rate" in help_text
