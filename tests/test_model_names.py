"""Checkpoint-native names (issue 21 item 5): architecture twins, Hugging Face ids of bundled models and
-Instruct/-chat/-it names resolve to the bundled spec, without the network or the Hugging Face cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcalc.errors import KvcalcError
from kvcalc.specs import catalog as cat
from kvcalc.specs.catalog import bundled_path, load_model, read_spec_file, spec_dir


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """A bundled id must never reach the Hugging Face cache loader."""
    from kvcalc.specs import hf

    def refuse(*a, **k):
        raise AssertionError("went to the Hugging Face loader")

    monkeypatch.setattr(hf, "load_hf_model", refuse)


# name -> (bundled spec, layers, hidden, query heads): from each twin's or id's own config.json
TWINS = {
    # https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json: DeepseekV3ForCausalLM, 61 layers, 7168
    "deepseek-r1": ("deepseek-v3", 61, 7168, 128),
    "deepseek-ai/DeepSeek-R1-0528": ("deepseek-v3", 61, 7168, 128),
    # https://huggingface.co/meta-llama/Llama-3.3-70B-Instruct/blob/main/config.json: 80 layers, 8192, 64 heads
    "llama-3.3-70b": ("llama-3.1-70b", 80, 8192, 64),
    "meta-llama/Llama-3.3-70B-Instruct": ("llama-3.1-70b", 80, 8192, 64),
    # https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json: 32 layers, 4096, 32 heads
    "meta-llama/Llama-3.1-8B-Instruct": ("llama-3.1-8b", 32, 4096, 32),
    # https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json: 64 layers, 5120, 64 heads
    "Qwen/Qwen3-32B": ("qwen3-32b", 64, 5120, 64),
    "deepseek-ai/DeepSeek-V3": ("deepseek-v3", 61, 7168, 128),
    # https://huggingface.co/google/gemma-2-9b-it/blob/main/config.json: 42 layers, 3584, 16 heads
    "gemma-2-9b-it": ("gemma-2-9b", 42, 3584, 16),
    # https://huggingface.co/meta-llama/Llama-2-7b-chat-hf/blob/main/config.json: 32 layers, 4096, 32 heads
    "meta-llama/Llama-2-7b-chat-hf": ("llama-2-7b", 32, 4096, 32),
}


@pytest.mark.parametrize("ref", sorted(TWINS))
def test_twins_ids_and_tuned_names_resolve_to_the_bundled_shape(ref):
    name, layers, hidden, heads = TWINS[ref]
    m = load_model(ref)
    assert (m.name, m.num_layers, m.hidden_size, m.attention.num_heads) == (name, layers, hidden, heads)


def test_deepseek_r1_keeps_v3s_fp8_block_checkpoint():
    # R1's config.json quantization_config: fp8 e4m3, weight_block_size [128, 128], as V3's
    from kvcalc.estimator import resolve_weight_dtype

    assert resolve_weight_dtype("auto", load_model("deepseek-r1")) == "fp8-block"


def test_every_bundled_name_is_its_file_stem_and_no_alias_names_two_specs():
    for kind in ("model", "gpu"):
        owner: dict[str, str] = {}
        for path in sorted(spec_dir(kind).glob("*.toml")):
            data = read_spec_file(path)
            assert data["name"] == path.stem  # bundled_path opens NAME.toml without reading the catalog
            for key in [data["name"], *data.get("aliases", [])]:
                assert owner.setdefault(key.lower(), path.stem) == path.stem, (key, owner[key.lower()], path.stem)


def test_a_name_opens_one_file_not_the_catalog(monkeypatch):
    cat.catalog.cache_clear()
    monkeypatch.setattr(cat, "catalog", lambda kind: pytest.fail("read the whole catalog for a plain name"))
    assert bundled_path("model", "Llama-3-8B").name == "llama-3-8b.toml"
    assert bundled_path("gpu", "h100-sxm").name == "h100-sxm.toml"


def test_a_suffix_does_not_make_an_unknown_name_known():
    with pytest.raises(KvcalcError, match="unknown model 'llama-9-8b-instruct'"):
        load_model("llama-9-8b-instruct")
    assert bundled_path("gpu", "h100-sxm-instruct") is None  # GPUs have no tuned variants
    assert bundled_path("gpu", "x" * 300) is None  # longer than a file name may be: no spec, not an OSError
    assert bundled_path("model", "llama\x00") is None


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(p.stem for p in spec_dir("model").glob("*.toml"))),
       st.lists(st.sampled_from(["-Instruct", "-chat", "-it", "-hf"]), max_size=2),
       st.sampled_from([str.lower, str.upper, str.title]))
def test_a_bundled_name_with_tuned_suffixes_in_any_case_is_that_model(stem, suffixes, case):
    ref = case(stem) + "".join(suffixes)
    path = bundled_path("model", ref)
    assert path is not None and read_spec_file(path)["name"] in (stem, *_tuned_owner(stem + "".join(suffixes)))


def _tuned_owner(ref: str) -> tuple:
    """A name whose suffixed form is itself another spec's alias (kimi-k2-instruct is kimi-k2's)."""
    found = cat.catalog("model").get(ref.lower())
    return (found.stem,) if found else ()


# ---- when the weights alone overflow, the message says by how much and what would hold them ----

def test_weights_overflow_names_the_shortfall_the_fewest_gpus_and_a_smaller_format():
    """Llama 3.1 405B: 405.85e9 parameters (https://huggingface.co/meta-llama/Llama-3.1-405B, safetensors), so
    811.7e9 B at bf16 = 755.96 GiB. Against 70 GiB usable a GPU: TP must reach 811.7e9 / 75.16e9 = 10.8, so 16
    (a power of two dividing the 128 query heads); fp8 (405.9e9 B) and int4-g128 (~0.52 B a weight: ~210e9 B)
    still overflow one GPU. On 8 GPUs bf16 is 101.5e9 B each (31.4 GiB over 70 GiB) and fp8 50.7e9 B fits."""
    from kvcalc.estimator import weights_overflow

    spec = load_model("llama-3.1-405b")
    usable = 70 * 2**30
    one = weights_overflow(spec, "bf16", usable)
    assert one.startswith("the weights alone (755.96 GiB a GPU at bf16) exceed the 70.00 GiB usable by 685.96 GiB")
    assert "--tp 16 holds them at bf16" in one and "--weight-dtype" not in one
    eight = weights_overflow(spec, "bf16", usable, tp=8)
    assert "by 24.5" in eight and "--tp 16 holds them" in eight  # 94.50 GiB - 70 GiB
    assert "--weight-dtype fp8 holds them on 8 GPUs" in eight
    assert weights_overflow(spec, "fp8", usable, tp=8) is None


def test_estimate_and_capacity_say_what_would_hold_the_weights():
    from typer.testing import CliRunner

    from kvcalc.cli import app

    r = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-405b", "-f", "json"])
    assert any("--tp 16 holds them at bf16" in w for w in json.loads(r.stdout)["warnings"])
    c = json.loads(CliRunner().invoke(app, ["capacity", "-m", "llama-3.1-405b", "-c", "4096", "--tp", "1", "-f",
                                            "json"]).stdout)
    assert c["binding"].startswith("weights: the weights alone") and "--tp 16" in c["binding"]
    assert c["min_gpus_for_weights"] == 16
