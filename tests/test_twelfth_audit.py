"""Regression tests for the eleventh audit's left list and the twelfth hostile audit (docs/validation.md, "Twelfth
hostile audit"), each named after its finding."""

from __future__ import annotations

import json

import pytest

from tests.test_fifth_audit import one_line_error
from tests.test_tenth_audit import _llama3


# --- config.json ---

def test_a_key_given_twice_in_config_json_is_named_with_both_values(tmp_path):
    """Python's json keeps the last of two values for one key (transformers reads it so); the eleventh audit's left
    list: num_key_value_heads 8 then 32 had been read as MHA in silence, KV 4x. Meta-Llama-3-8B with 32 KV heads:
    2 x 32 layers x 32 heads x 128 x 2 B = 524,288 B a token, and the warning names both values."""
    from kvcalc.formulas.kv import kv_bytes_per_token
    from kvcalc.specs.hf import load_hf_spec

    text = json.dumps(_llama3()).rstrip("}") + ', "num_key_value_heads": 32}'
    (tmp_path / "config.json").write_text(text)
    spec, warned = load_hf_spec(tmp_path)
    assert kv_bytes_per_token(spec, 2) == 2 * 32 * 32 * 128 * 2
    assert "key 'num_key_value_heads' is given twice (8, then 32)" in " ".join(warned)
    (tmp_path / "config.json").write_text(json.dumps(_llama3()).rstrip("}") + ', "num_key_value_heads": 8}')
    assert not [w for w in load_hf_spec(tmp_path)[1] if "given twice" in w]  # the same value twice says nothing


def test_h7_a_field_missing_from_text_config_is_named_as_text_configs(tmp_path):
    llama = _llama3()
    del llama["num_hidden_layers"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": llama,
                                                      "vision_config": {"hidden_size": 1024}}))
    line = one_line_error(["estimate", "-m", str(tmp_path), "-g", "h100"])
    assert "config.json: text_config: missing essential field(s): num_hidden_layers" in line
