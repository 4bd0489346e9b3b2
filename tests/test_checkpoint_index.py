"""The checkpoint's own size: metadata.total_size of the safetensors index beside a config.json, against kvcalc's
weight bytes in the checkpoint's format. Fixtures: tests/fixtures/hf/<repo>/ (README.md cites each index; their
total_size values are as published)."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.errors import KvcalcError
from kvcalc.estimator import estimate
from kvcalc.specs.hf import (
    checkpoint_total_size,
    load_hf_spec,
    read_config,
    stored_weight_bytes,
)

HF = Path(__file__).parent / "fixtures" / "hf"
runner = CliRunner()


def stored(folder: str) -> tuple[float, str]:
    config = read_config(HF / folder / "config.json")
    text = config.get("text_config")
    spec, _ = load_hf_spec(HF / folder)
    # the REAP-pruned Qwen3.5 keeps its config's mtp_num_hidden_layers 1 but stores no mtp.* weights
    mtp = 0 if folder == "Qwen3.5-18B-REAP-A3B-Coding" else None
    ours, fmt, _ = stored_weight_bytes(spec, {**config, **text} if isinstance(text, dict) else config, mtp)
    return ours, fmt


# (folder, total_size as published, kvcalc's bytes minus it as worked out by hand, the checkpoint's format)
INDEXES = [
    ("Meta-Llama-3-8B", 16_060_522_496, 0, "bf16"),  # dense: 8,030,261,248 parameters x 2 B
    # Phi-2 in fp16, its lm_head's bias (51,200 values) included
    ("phi-2", 5_559_367_680, 0, "fp16"),  # the lm_head bias counted since the seventh audit (B10)
    # ChatGLM2 (.bin shards): the index also counts RoPE's inv_freq buffer, 32 fp16 values
    ("chatglm2-6b", 12_487_168_064, -32 * 2, "fp16"),
    ("Qwen3-30B-A3B", 61_064_245_248, 0, "bf16"),  # MoE, 128 experts
    ("WizardLM-2-8x22B", 281_241_268_224, 0, "bf16"),  # Mixtral 8x22B
    ("granite-3.1-1b-a400m-instruct", 5_338_513_408, 0, "fp32"),  # granitemoe, read from its fields; float32
    ("Qwen3.5-18B-REAP-A3B-Coding", 37_087_995_136, 0, "fp16"),  # hybrid Gated DeltaNet + MoE, float16
    ("DeepSeek-V3-AWQ", 364_589_799_936, 0, "int4-g64"),  # MLA + MoE, AWQ 4-bit; routers, embeddings bf16
    # MXFP4 experts (17/32 B a weight: 4 bits and an e8m0 scale per 32) with their biases in bf16, the rest bf16
    # (the sixth audit: the experts' 6,635,520 biases had been counted at 17/32 B, 9,745,920 B short)
    ("gpt-oss-20b", 13_761_264_768, 0, "mxfp4"),
    # MiMo (Qwen2 fields, one MTP layer stored beside the 36): its attention_bias biases q, k and v, as Qwen2's, not
    # o_proj (until the eighth round kvcalc counted an o_proj bias too: 4096 values in each of 37 layers, 2 B each)
    ("MiMo-7B", 15_666_819_072, 0, "bf16"),
]


@pytest.mark.parametrize("folder, total, diff, fmt", INDEXES)
def test_weight_bytes_match_the_checkpoints_published_total_size(folder, total, diff, fmt):
    assert checkpoint_total_size(HF / folder)[1] == total
    ours, stored_fmt = stored(folder)
    assert stored_fmt == fmt
    assert ours - total == diff
    _, notes = load_hf_spec(HF / folder)
    assert not [n for n in notes if "total_size" in n]  # within 2 %: no warning


def test_a_multimodal_checkpoint_holds_its_vision_tower_beside_the_text_model():
    """medgemma-27b-it's index counts the SigLIP vision tower and projector beside the language model. By hand from
    its vision_config (hidden 1152, intermediate 4304, 27 layers, patch 14, 896 px, 3 channels): patch conv
    3 x 14 x 14 x 1152 + 1152 = 678,528; 4,096 position rows x 1152 = 4,718,592; a layer 2 x 2 x 1152 (two
    LayerNorms) + 4 x (1152^2 + 1152) + 2 x 1152 x 4304 + 4304 + 1152 = 15,239,504, 27 of them 411,466,608; the
    post-LayerNorm 2,304: 416,866,032. The projector 1152 x 5376 + 1152 = 6,194,304. In bf16 that is
    846,120,672 B, which the index's total_size holds to the byte beside the language model."""
    from kvcalc.formulas.params import siglip_vision_params

    assert siglip_vision_params(1152, 4304, 27, 14, 896) == 678_528 + 4_718_592 + 411_466_608 + 2_304 == 416_866_032
    spec, notes = load_hf_spec(HF / "medgemma-27b-it")
    assert spec.vision_encoder_params == 416_866_032 + 6_194_304
    ours, _ = stored("medgemma-27b-it")
    assert ours == 54_864_813_280
    assert not notes
    # the bundled Gemma 3 27B counts the same tower; the active parameters (a text token's) leave it out
    from kvcalc.formulas.params import active_params, total_params
    from kvcalc.specs.catalog import load_model

    gemma = load_model("gemma-3-27b")
    assert gemma.vision_encoder_params == 423_060_336
    assert total_params(gemma) - active_params(gemma) == 423_060_336


def test_a_vision_tower_kvcalc_cannot_count_is_named(tmp_path):
    """A multimodal wrapper whose tower kvcalc has no layout for (here a Llama-4-style vision_config) is read for its
    language model, with a note that the tower is not counted (not a silent miss)."""
    config = json.loads((HF / "medgemma-27b-it" / "config.json").read_text())
    config["vision_config"] = {"model_type": "llama4_vision_model", "hidden_size": 1408}
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec, notes = load_hf_spec(tmp_path)
    assert spec.vision_encoder_params == 0
    assert "the vision tower (vision_config model_type 'llama4_vision_model') is not counted" in spec.notes
    # a SigLIP tower whose fields kvcalc cannot count is refused naming the field (a null num_channels raised
    # TypeError: review; a note had dropped the 423 M-parameter tower without a warning: the thirteenth audit, H3)
    for change, why in (({"num_channels": None}, "vision_config num_channels: expected a positive integer"),
                        ({"image_size": 896.0}, "vision_config image_size: expected a positive integer"),
                        ({"vision_use_head": True}, "vision_config vision_use_head: a pooling head")):
        config = json.loads((HF / "medgemma-27b-it" / "config.json").read_text())
        config["vision_config"].update(change)
        (tmp_path / "config.json").write_text(json.dumps(config))
        with pytest.raises(KvcalcError, match=why):
            load_hf_spec(tmp_path)


def test_a_speculative_draft_layer_carries_no_vision_tower():
    """EAGLE's one-layer draft of Gemma 3 27B: one decoder layer (5376 wide, 32 heads of 128, 16 KV heads, MLP
    21,504 gated, q/k norms), not the 423,060,336-parameter SigLIP tower the target carries (review)."""
    from kvcalc.formulas.speculative import one_layer
    from kvcalc.specs.catalog import load_model

    draft = one_layer(load_model("gemma-3-27b"))
    assert draft.vision_encoder_params == 0 and draft.num_layers == 1


def copy_with(tmp_path: Path, folder: str, **changes) -> Path:
    config = json.loads((HF / folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    for index in (HF / folder).glob("*.index.json"):
        shutil.copy(index, tmp_path / index.name)
    return tmp_path


def test_a_config_that_misdescribes_its_checkpoint_is_a_warning_naming_both_figures(tmp_path):
    """Meta-Llama-3-8B's index (16,060,522,496 B) beside a config with intermediate_size 11008 instead of 14336:
    32 layers x 3 x 4096 x 3328 fewer weights, 2 B each = 2,617,245,696 B fewer, -16.3 %."""
    folder = copy_with(tmp_path, "Meta-Llama-3-8B", intermediate_size=11008)
    counted = 16_060_522_496 - 32 * 3 * 4096 * 3328 * 2
    r = runner.invoke(app, ["estimate", "--model", str(folder), "-f", "json"])
    assert r.exit_code == 0, r.stderr
    [warning] = [w for w in json.loads(r.stdout)["warnings"] if "total_size" in w]
    assert "16,060,522,496 bytes" in warning and f"{counted:,} bytes of bf16" in warning and "-16.3%" in warning
    r = runner.invoke(app, ["estimate", "--model", str(folder)])  # the table: printed once, on stderr
    assert r.exit_code == 0 and "16,060,522,496" in r.stderr.replace("\n", " ").replace("  ", " ")
    r = runner.invoke(app, ["import", str(folder), "--name", "x", "--out", str(tmp_path / "x.toml")])
    assert r.exit_code == 0 and "warning: " in r.stderr and "metadata.total_size" in r.stderr


def test_without_an_index_nothing_is_compared(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(HF / "Meta-Llama-3-8B" / "config.json", folder / "config.json")
    assert checkpoint_total_size(folder) is None
    e = estimate(str(folder), "h100")
    assert not [w for w in e.warnings if "total_size" in w]
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 11008}))
    assert not [w for w in estimate(str(folder), "h100").warnings if "total_size" in w]  # wrong, but unchecked


def test_a_repo_in_the_hf_cache_is_checked_against_its_cached_index(tmp_path, monkeypatch):
    # a repository kvcalc does not bundle (a bundled model's own id resolves to its spec file)
    snapshot = tmp_path / "hub" / "models--my-org--llama-3-8b-40-layers" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    config = json.loads((HF / "Meta-Llama-3-8B" / "config.json").read_text())
    (snapshot / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 40}))
    shutil.copy(HF / "Meta-Llama-3-8B" / "model.safetensors.index.json", snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    [warning] = [w for w in estimate("my-org/llama-3-8b-40-layers", "h100").warnings if "total_size" in w]
    # 8 more layers of 41,943,040 attention + 176,160,768 MLP + 8,192 norm parameters, 2 B each
    assert "16,060,522,496" in warning and f"{8 * 218_112_000 * 2 / 16_060_522_496:+.1%}" == "+21.7%" in warning


def test_the_index_head_is_enough_but_a_late_metadata_block_is_still_found(tmp_path):
    """transformers writes metadata before weight_map; an index written the other way round is read whole."""
    entries = {f"model.layers.{i}.mlp.up_proj.weight": "model-00001-of-00002.safetensors" for i in range(3000)}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": entries, "metadata": {"total_size": 123456789}}))
    assert (tmp_path / "model.safetensors.index.json").stat().st_size > 1 << 16
    assert checkpoint_total_size(tmp_path)[1] == 123456789


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"metadata": {"total_size": "lots"}, "weight_map": {}}', "metadata.total_size: expected a positive number"),
    ('{"weight_map": {}}', "metadata.total_size: absent"),
])
def test_an_unreadable_index_is_a_one_line_error_naming_it(tmp_path, text, message):
    folder = copy_with(tmp_path, "Meta-Llama-3-8B")
    (folder / "model.safetensors.index.json").write_text(text)
    with pytest.raises(KvcalcError, match=message) as caught:
        load_hf_spec(folder)
    assert str(folder / "model.safetensors.index.json") in str(caught.value)
    r = runner.invoke(app, ["estimate", "--model", str(folder)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1


def test_deepseek_mtp_layer_is_added_with_its_own_embedding_and_head_copies(tmp_path):
    """DeepSeek's checkpoints store the MTP module as model.layers.61: one more MoE layer, eh_proj (2d x d), three
    norms and copies of the embedding and lm_head (the weight_map of github.com/kvcache-ai/sglang_awq names them).
    With num_nextn_predict_layers 1 the expected bytes grow by exactly that, over the AWQ checkpoint without it."""
    from kvcalc.dtypes import bytes_per_element
    from kvcalc.formulas.params import layer_weight_bytes

    spec, _ = load_hf_spec(HF / "DeepSeek-V3-AWQ")
    config = read_config(HF / "DeepSeek-V3-AWQ" / "config.json")
    without, _, _ = stored_weight_bytes(spec, config)
    with_mtp, _, layers = stored_weight_bytes(spec.model_copy(update={"mtp_layers": 1}), config)
    d, V, b = 7168, 129280, bytes_per_element("int4-g64")
    assert layers == 1
    assert with_mtp - without == pytest.approx(layer_weight_bytes(spec, b)[-1] + 2 * d * d * b + (2 * V * d + 3 * d) * 2)


@pytest.mark.parametrize("text", ['{"metadata": {"total_size": 16060522496.0}, "weight_map": {}}',
                                  '{"metadata": {"total_parameters": 8030261248, "total_size": 16060522496}}'])
def test_total_size_is_read_however_the_writer_spelled_it(tmp_path, text):
    (tmp_path / "model.safetensors.index.json").write_text(text)
    assert checkpoint_total_size(tmp_path)[1] == 16_060_522_496
