"""The fortieth hostile audit (docs/validation.md, "Fortieth hostile audit"), its finding on quantised checkpoints:
compressed-tensors weight-only float schemes. Each test is named after the finding it holds fixed."""

import json
from pathlib import Path

import pytest

LLAMA3_8B = Path(__file__).parent / "fixtures" / "hf" / "Meta-Llama-3-8B" / "config.json"


def _config(tmp_path, name, weights, input_activations):
    """Meta-Llama-3-8B's config.json with a compressed-tensors quantization_config as llm-compressor writes it: one
    group over every Linear, lm_head ignored; input_activations None for its weight-only presets (NVFP4A16,
    MXFP4A16, W8A16 FP8)."""
    config = json.loads(LLAMA3_8B.read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                      "input_activations": input_activations, "output_activations": None}}}
    path = tmp_path / name / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    return str(path)


NVFP4 = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True,
         "dynamic": False}
MXFP4 = {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32, "symmetric": True, "dynamic": False}
FP8 = {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True, "dynamic": False}
NVFP4_ACTS = {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "dynamic": "local"}
FP8_ACTS = {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True}


def _ops(ev):
    return {o.op.name: o for o in ev.ops}


@pytest.mark.parametrize("gpu, weights, acts, fmt", [
    ("b200", NVFP4, NVFP4_ACTS, "nvfp4"),
    ("b200", MXFP4, NVFP4_ACTS, "mxfp4"),
    ("h100-sxm", FP8, FP8_ACTS, "fp8"),
])
def test_40_quant1_a_weight_only_float_checkpoint_computes_at_the_16_bit_peak(tmp_path, gpu, weights, acts, fmt):
    """quant 1: llm-compressor's NVFP4A16, MXFP4A16 and FP8 W8A16 checkpoints quantise weights and leave
    input_activations null, and vLLM runs them as weight-only kernels with bf16 activations (compressed_tensors.py
    _get_scheme_from_parts at be696453 tests _is_fp4a16_nvfp4 and _is_fp8_w8a16 first: CompressedTensorsW4A16Fp4,
    Marlin; CompressedTensorsW8A16Fp8). kvcalc had timed them as W4A4 / W8A8 at the fp4 / fp8 peak: Llama-3-8B's
    8,192-token prefill on a B200 in 27.1 ms where bf16 compute takes 74.7 (2.76x), FP8 W8A16 on an H100 in 97.7
    where it takes 170.0. Now: the same bytes as the W4A4 / W8A8 checkpoint (the format's, scales included), and the
    projections' compute that of the bf16 checkpoint, operator by operator (same FLOPs, at the bf16 peak)."""
    from kvcalc.estimator import evaluate
    from kvcalc.specs.catalog import load_gpu
    from kvcalc.specs.hf import load_hf_spec

    hw = load_gpu(gpu)
    only = load_hf_spec(_config(tmp_path, "only", weights, None))[0]
    both = load_hf_spec(_config(tmp_path, "both", weights, acts))[0]
    assert only.quantization.weight_format == both.quantization.weight_format == fmt
    assert only.quantization.weight_only and not both.quantization.weight_only
    kw = dict(batch=1, context=8192, prompt=8192, kv_dtype="bf16")
    wo = evaluate(only, hw, weight_dtype=fmt, **kw)
    wa = evaluate(both, hw, weight_dtype=fmt, **kw)
    bf = evaluate(only, hw, weight_dtype="bf16", **kw)
    for name in ("attention/qkv", "attention/o", "mlp"):
        p_wo, p_wa, p_bf = _ops(wo.prefill)[name], _ops(wa.prefill)[name], _ops(bf.prefill)[name]
        assert p_wo.op.cost.bytes == p_wa.op.cost.bytes < p_bf.op.cost.bytes  # the format's bytes
        assert p_wo.dtype == "bf16" and p_wa.dtype != "bf16"
        assert p_wo.compute_bound and p_bf.compute_bound
        assert p_wo.seconds == pytest.approx(p_bf.seconds, rel=1e-12)  # bf16's compute, operator by operator
        # a decode step at batch 1 is memory-bound: the 4-bit (8-bit) weights read, as the W4A4 (W8A8) checkpoint's
        d_wo, d_wa = _ops(wo.decode)[name], _ops(wa.decode)[name]
        assert not d_wo.compute_bound and d_wo.seconds == pytest.approx(d_wa.seconds, rel=1e-12)
    # the whole compute-bound prefill is the bf16 checkpoint's (74.7 ms on the B200, 170.0 on the H100), the W4A4 /
    # W8A8 checkpoint's well under it (27.1, 97.7)
    assert wo.prefill.seconds == pytest.approx(bf.prefill.seconds, rel=1e-9)
    assert wo.prefill.seconds > 1.7 * wa.prefill.seconds


def test_40_quant1_a_weight_only_group_beside_a_w4a4_group_is_two_formats(tmp_path):
    """A checkpoint whose groups quantise the same format with and without activations runs two kinds of kernel,
    which one kvcalc format cannot time: a one-line error naming both."""
    from kvcalc.errors import KvcalcError
    from kvcalc.specs.hf import load_hf_spec

    path = _config(tmp_path, "mixed", NVFP4, None)
    config = json.loads(Path(path).read_text())
    groups = config["quantization_config"]["config_groups"]
    groups["group_0"]["targets"] = ["re:.*self_attn.*"]
    groups["group_1"] = {"targets": ["re:.*mlp.*"], "weights": NVFP4, "input_activations": NVFP4_ACTS}
    Path(path).write_text(json.dumps(config))
    with pytest.raises(KvcalcError, match="nvfp4 weight-only for attention, nvfp4 for mlp"):
        load_hf_spec(path)
