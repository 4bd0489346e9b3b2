"""Hugging Face config.json as a model spec (fixtures: tests/fixtures/hf, copies of the published configs)."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.estimator import estimate
from kvcalc.formulas.params import active_params, params_breakdown, total_params
from kvcalc.specs.catalog import load_model, load_spec_file
from kvcalc.specs.hf import AssumptionWarning, load_hf_spec

HF = Path(__file__).parent / "fixtures" / "hf"
runner = CliRunner()

SAME_AS_BUNDLED = [
    ("Meta-Llama-3-8B", "llama-3-8b"),
    ("Mistral-7B-v0.1", "mistral-7b"),
    ("Mixtral-8x7B-v0.1", "mixtral-8x7b"),
    ("Qwen2-7B", "qwen2-7b"),
    ("gemma-2-9b", "gemma-2-9b"),
    ("falcon-7b", "falcon-7b"),
    ("falcon-40b", "falcon-40b"),
    ("chatglm2-6b", "chatglm2-6b"),
    ("DeepSeek-V2-Lite", "deepseek-v2-lite"),
    ("DeepSeek-V3", "deepseek-v3"),
]


def numbers(model) -> dict:
    e = estimate(model, "h100", batch=4, context=8192, prompt=1024)
    return {
        "kv_per_token": e.kv_cache.bytes_per_token, "kv": e.kv_cache.bytes, "params": e.weights.params,
        "active": e.weights.active_params, "decode_ms": e.decode.ms, "prefill_ms": e.prefill.ms,
        "fits": e.memory.fits,
    }


@pytest.mark.parametrize("folder, bundled", SAME_AS_BUNDLED)
def test_config_json_gives_the_numbers_of_the_bundled_spec(folder, bundled, recwarn):
    assert numbers(str(HF / folder / "config.json")) == numbers(bundled)
    assert numbers(str(HF / folder)) == numbers(bundled)  # the folder that holds it
    assert not [w for w in recwarn if issubclass(w.category, AssumptionWarning)]  # known families assume nothing


@pytest.mark.parametrize(
    "folder, total, active, rel",
    [
        ("gpt2", 124_439_808, None, 0),  # HF GPT2LMHeadModel.num_parameters()
        ("opt-125m", 125_239_296, None, 0),  # HF OPTForCausalLM.num_parameters()
        ("gpt-neox-20b", 20_554_567_680, None, 1e-3),  # Black et al. 2022, GPT-NeoX-20B: 20,554,567,680
        ("gemma-7b", 8.54e9, None, 0.01),  # Gemma model card: 8.54B
        ("Phi-3-mini-4k-instruct", 3.8e9, None, 0.01),  # Phi-3 report: 3.8B
        ("gemma-3-1b-pt", 1.0e9, None, 0.01),  # Gemma 3 model card: 1B
        ("Qwen3-0.6B", 0.6e9, None, 0.02),  # Qwen3-0.6B model card: 0.6B (0.44B non-embedding)
        ("Qwen3-30B-A3B", 30.5e9, 3.3e9, 0.02),  # Qwen3-30B-A3B model card: 30.5B total, 3.3B activated
        ("Qwen1.5-MoE-A2.7B", 14.3e9, 2.7e9, 0.02),  # Qwen1.5-MoE blog: 14.3B total, 2.7B activated
    ],
)
def test_parameter_totals_match_the_published_ones(folder, total, active, rel):
    spec, _ = load_hf_spec(HF / folder)
    assert total_params(spec) == pytest.approx(total, rel=rel)
    if active:
        assert active_params(spec) == pytest.approx(active, rel=rel)


def test_qwen3_head_dim_is_read_not_derived():
    # Qwen3-0.6B: hidden 1024 / 16 heads = 64, but head_dim is 128; 0.44B non-embedding parameters.
    spec, _ = load_hf_spec(HF / "Qwen3-0.6B")
    assert spec.attention.head_dim == 128
    assert estimate(spec).kv_cache.bytes_per_token == 2 * 8 * 128 * 28 * 2
    assert total_params(spec) - params_breakdown(spec)["embedding"] == pytest.approx(0.44e9, rel=0.01)


def test_gemma_7b_head_dim_256_is_not_hidden_over_heads():
    spec, _ = load_hf_spec(HF / "gemma-7b")
    assert (spec.attention.head_dim, spec.hidden_size // spec.attention.num_heads) == (256, 192)
    assert estimate(spec).kv_cache.bytes_per_token == 2 * 16 * 256 * 28 * 2


def test_gemma3_sliding_pattern_keeps_every_sixth_layer_global():
    # gemma-3-1b: 26 layers, sliding_window 512, sliding_window_pattern 6 -> layers 5, 11, 17, 23 global;
    # per layer 2 * 1 KV head * 256 * 2 B = 1024 B.
    spec, _ = load_hf_spec(HF / "gemma-3-1b-pt")
    assert estimate(spec, context=8192).kv_cache.bytes == 1024 * (4 * 8192 + 22 * 512)


def test_gemma3_layer_types_list_is_read_like_the_pattern(tmp_path):
    cfg = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    cfg.pop("sliding_window_pattern")
    cfg["layer_types"] = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(26)]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_hf_spec(tmp_path)[0].global_layers == 4


def test_multimodal_wrapper_reads_the_text_config(tmp_path):
    text = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text, "vision_config": {}}))
    assert numbers(str(tmp_path)) == numbers(str(HF / "gemma-3-1b-pt"))


def make_cache(root: Path, repo_id: str, folder: str) -> None:
    """The huggingface_hub cache layout: models--ORG--NAME/{refs/main, snapshots/<hash>/config.json}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    shutil.copy(HF / folder / "config.json", repo / "snapshots" / "0123abcd" / "config.json")


def test_a_repo_id_is_found_in_the_local_hf_cache(tmp_path, monkeypatch):
    make_cache(tmp_path / "hub", "Qwen/Qwen3-0.6B", "Qwen3-0.6B")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert numbers("Qwen/Qwen3-0.6B") == numbers(str(HF / "Qwen3-0.6B"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    r = runner.invoke(app, ["estimate", "--model", "Qwen/Qwen3-0.6B", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kv_cache"]["bytes_per_token"] == 114_688


def test_an_uncached_repo_id_says_how_to_fetch_only_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    r = runner.invoke(app, ["estimate", "--model", "Qwen/Qwen3-8B"])
    assert r.exit_code == 2
    assert "not in the local Hugging Face cache" in r.stderr
    assert "huggingface-cli download Qwen/Qwen3-8B config.json" in r.stderr


@pytest.mark.parametrize("folder", sorted(p.name for p in HF.iterdir() if p.is_dir()))
def test_import_writes_a_spec_that_gives_the_same_numbers(folder, tmp_path):
    out = tmp_path / "imported.toml"
    r = runner.invoke(app, ["import", str(HF / folder / "config.json"), "--name", "imported", "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert numbers(load_spec_file("model", out)) == numbers(str(HF / folder))


def test_import_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.toml"
    out.write_text("keep me")
    r = runner.invoke(app, ["import", str(HF / "gpt2"), "--name", "x", "--out", str(out)])
    assert r.exit_code == 2 and out.read_text() == "keep me"


def write_config(tmp_path, **changes):
    cfg = json.loads((HF / "Meta-Llama-3-8B" / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return tmp_path / "config.json"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_key_value_heads": 5}, "num_attention_heads (32) is not divisible by num_key_value_heads (5)"),
        ({"hidden_size": -4096}, "hidden_size: expected a positive integer"),
        ({"num_hidden_layers": 10**9}, "num_hidden_layers: expected a positive integer up to 100,000,000"),
        ({"vocab_size": "many"}, "vocab_size: expected a positive integer"),
        ({"num_hidden_layers": None, "vocab_size": None}, "missing essential field(s): num_hidden_layers, vocab_size"),
        ({"partial_rotary_factor": 2}, "partial_rotary_factor: expected a fraction in (0, 1]"),
    ],
)
def test_bad_configs_are_one_line_errors_naming_the_field(tmp_path, changes, message):
    path = write_config(tmp_path, **changes)
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and f"{path}: " in r.stderr and message in r.stderr


def test_rotary_width_follows_the_config(tmp_path):
    """The dims RoPE turns (vLLM's cos/sin table is that wide): GPT-NeoX-20B's rotary_pct 0.25 of its 96-wide heads,
    ChatGLM2's half of 128 (as the bundled spec), a partial_rotary_factor, none with learned positions."""
    assert load_hf_spec(HF / "gpt-neox-20b")[0].rotary_width == 24
    assert load_hf_spec(HF / "chatglm2-6b")[0].rotary_width == 64 == load_model("chatglm2-6b").rotary_width
    assert load_hf_spec(HF / "Meta-Llama-3-8B")[0].rotary_width == 128
    assert load_hf_spec(write_config(tmp_path, partial_rotary_factor=0.25))[0].rotary_width == 32
    assert load_hf_spec(HF / "gpt2")[0].rotary_width == 0


def test_invalid_json_and_a_folder_without_config_are_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["estimate", "--model", str(bad)])
    assert r.exit_code == 2 and f"{bad}: not valid JSON" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["estimate", "--model", str(empty)])
    assert r.exit_code == 2 and f"{empty} holds no config.json" in r.stderr
    r = runner.invoke(app, ["estimate", "--model", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_an_unknown_model_type_is_read_with_every_assumption_named(tmp_path):
    path = write_config(tmp_path, model_type="newarch", num_key_value_heads=None, tie_word_embeddings=None)
    with pytest.warns(AssumptionWarning) as caught:
        spec = load_model(str(path))
    said = " ".join(str(w.message) for w in caught)
    for assumption in ("not a known family", "num_key_value_heads absent: assumed MHA",
                       "head_dim absent: assumed hidden_size / num_attention_heads = 128",
                       "tie_word_embeddings absent: assumed false", "MLP assumed gated"):
        assert assumption in said
    assert spec.attention.kind == "mha"
    r = runner.invoke(app, ["estimate", "--model", str(path)])
    assert r.exit_code == 0 and "warning: " in r.stderr and "assumed MHA" in r.stderr


def test_an_unknown_model_type_missing_essentials_names_them(tmp_path):
    path = write_config(tmp_path, model_type="newarch", intermediate_size=None)
    with pytest.raises(KvcalcError, match=r"missing essential field\(s\): intermediate_size"):
        load_model(str(path))


def test_an_irregular_layer_types_list_is_counted(tmp_path):
    """Gemma 3 with any layer_types: 5 global layers placed irregularly among 26 are counted as 5 global and 21
    windowed (gemma-3-1b's 512 tokens), so the KV per sequence at 8K is 5 x 8192 + 21 x 512 tokens a layer."""
    config = json.loads((HF / "gemma-3-1b-pt" / "config.json").read_text())
    types = ["sliding_attention"] * 26
    for i in (0, 3, 11, 12, 25):
        types[i] = "full_attention"
    (tmp_path / "config.json").write_text(json.dumps({**config, "layer_types": types}))
    spec, _ = load_hf_spec(tmp_path)
    assert (spec.global_layers, spec.window_layers) == (5, 21)
    from kvcalc.formulas.kv import kv_bytes_per_sequence, kv_bytes_per_token_per_layer

    per = kv_bytes_per_token_per_layer(spec.attention, 2.0)
    assert kv_bytes_per_sequence(spec, 8192, 2.0) == per * (5 * 8192 + 21 * 512)
