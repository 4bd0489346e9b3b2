"""The twenty-eighth hostile audit (docs/validation.md, "Twenty-eighth hostile audit"): each test is named after its
finding."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kvcalc.cli import app
from kvcalc.engines.formats import engine_format_refusal
from kvcalc.specs.catalog import load_gpu

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hf"


def _config(tmp_path, config: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def _estimate(path: Path, *extra: str):
    return CliRunner().invoke(app, ["estimate", "-m", str(path), "-f", "json", *extra])


def _params(tmp_path, config: dict, name: str) -> int:
    result = _estimate(_config(tmp_path, config, name))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["weights"]["params"]


# --- config.json ------------------------------------------------------------------------------------------------

# Step3's text model, with Step3TextConfig's fields and stepfun-ai/step3's values (vLLM's
# vllm/transformers_utils/configs/step3_vl.py): one KV head as num_attention_groups, a low-rank query (share_q_dim),
# MoE on the layers moe_layers_enum lists
STEP3_TEXT = {"model_type": "step3_text", "architectures": ["Step3TextForCausalLM"], "hidden_size": 7168,
              "intermediate_size": 18432, "num_attention_heads": 64, "num_attention_groups": 1,
              "num_hidden_layers": 61, "vocab_size": 128815, "moe_intermediate_size": 5120, "moe_num_experts": 48,
              "moe_top_k": 3, "share_expert_dim": 5120, "share_q_dim": 2048, "head_dim": 256,
              "moe_layers_enum": ",".join(str(i) for i in range(4, 60)), "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("wrapped", [False, True])
def test_28_h1_step3_is_refused_by_its_attention_groups(tmp_path, wrapped):
    """Read as MHA (64 KV heads where vLLM's Step3TextAttention takes exactly one), its KV had been 3,997,696 B a
    token, 64x the 61 x 1 x 256 x 2 x 2 = 62,464 B it keeps; refused, naming the field, as step3p5 is by name."""
    config = {"model_type": "step3_vl", "text_config": STEP3_TEXT} if wrapped else STEP3_TEXT
    result = _estimate(_config(tmp_path, config))
    assert result.exit_code == 2
    assert "num_attention_groups" in result.output and "Traceback" not in result.output


def test_28_h1_each_step_field_is_refused_alone(tmp_path):
    """share_q_dim and moe_layers_enum place the query and the experts in a way the common fields do not say."""
    base = {k: v for k, v in STEP3_TEXT.items() if k not in ("num_attention_groups", "share_q_dim", "moe_layers_enum")}
    base["num_key_value_heads"] = 1
    for field in ("share_q_dim", "moe_layers_enum"):
        result = _estimate(_config(tmp_path, {**base, field: STEP3_TEXT[field]}, f"{field}.json"))
        assert result.exit_code == 2 and field in result.output


# GLM-4.5V's text model (46 layers, 96 heads, 8 KV heads, 128 routed experts and one shared, first layer dense):
# GLM-4.5-Air's shape, which GLM-4.5V is built on
GLM45_AIR_TEXT = {"attention_bias": True, "first_k_dense_replace": 1, "hidden_act": "silu", "head_dim": 128,
                  "hidden_size": 4096, "intermediate_size": 10944, "max_position_embeddings": 65536,
                  "moe_intermediate_size": 1408, "n_group": 1, "n_routed_experts": 128, "n_shared_experts": 1,
                  "norm_topk_prob": True, "num_attention_heads": 96, "num_experts_per_tok": 8,
                  "num_hidden_layers": 46, "num_key_value_heads": 8, "partial_rotary_factor": 0.5,
                  "rms_norm_eps": 1e-05, "routed_scaling_factor": 1.0, "topk_group": 1, "use_qk_norm": False,
                  "vocab_size": 151552, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def test_28_h2_glm45v_text_model_is_glm45s(tmp_path):
    """transformers' modular_glm4v_moe.py: Glm4vMoeTextAttention(Glm4Attention), o_proj unbiased, and
    Glm4vMoeTextTopkRouter with e_score_correction_bias: GLM-4.5's layers. Read as an unknown family it had counted
    46 x 4,096 o_proj biases and no router bias (45 x 128): 182,656 over."""
    plain = _params(tmp_path, {**GLM45_AIR_TEXT, "model_type": "glm4_moe"}, "air.json")
    wrapped = _params(tmp_path, {"model_type": "glm4v_moe", "architectures": ["Glm4vMoeForConditionalGeneration"],
                                 "text_config": {**GLM45_AIR_TEXT, "model_type": "glm4v_moe_text"}}, "v.json")
    assert wrapped == plain
    # the unknown-family reading differs by exactly the two terms the finding names
    unknown = _params(tmp_path, {**GLM45_AIR_TEXT, "model_type": "some_glm"}, "unknown.json")
    assert unknown - plain == 46 * 4096 - 45 * 128 == 182_656


# Ling-mini-2.0's shape (BailingMoeV2: 20 layers, 256 experts of 512, one shared expert, first layer dense)
LING_MINI = {"model_type": "bailing_moe_v2", "hidden_size": 2048, "intermediate_size": 5120, "num_hidden_layers": 20,
             "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 157184,
             "num_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 512, "num_shared_experts": 1,
             "moe_shared_expert_intermediate_size": 512, "first_k_dense_replace": 1, "tie_word_embeddings": False}


def test_28_h3_bailing_v2_shared_expert_width_is_read(tmp_path):
    """vLLM's and SGLang's bailing_moe build the shared expert of moe_shared_expert_intermediate_size x
    num_shared_experts; the field had been dropped, the shared expert sized at the routed width. Doubling the field
    adds one gated MLP of 512 more a shared expert on each of the 19 MoE layers: 19 x 3 x 2048 x 512."""
    base = _params(tmp_path, LING_MINI, "ling.json")
    wide = _params(tmp_path, {**LING_MINI, "moe_shared_expert_intermediate_size": 1024}, "wide.json")
    two = _params(tmp_path, {**LING_MINI, "num_shared_experts": 2}, "two.json")
    assert wide - base == 19 * 3 * 2048 * 512
    assert two - base == 19 * 3 * 2048 * 512


def test_28_h3_nemotron_h_counts_its_shared_experts(tmp_path):
    """vLLM's nemotron_h.py NemotronHMoE: shared experts of moe_shared_expert_intermediate_size x n_shared_experts (a
    squared-ReLU MLP, up and down). n_shared_experts had been read as 1 whatever it said."""
    config = json.loads((FIXTURES / "Nemotron-H-8B-Base-8K" / "config.json").read_text())
    pattern = config["hybrid_override_pattern"].replace("-", "E")
    moe = {**config, "hybrid_override_pattern": pattern, "n_routed_experts": 8, "num_experts_per_tok": 2,
           "moe_intermediate_size": 1024, "moe_shared_expert_intermediate_size": 2048}
    one = _params(tmp_path, {**moe, "n_shared_experts": 1}, "one.json")
    two = _params(tmp_path, {**moe, "n_shared_experts": 2}, "two.json")
    assert two - one == pattern.count("E") * 2 * 4096 * 2048


# --- formats and GPUs ---------------------------------------------------------------------------------------------

def test_28_hw_h2_vllm_fp8_needs_compute_capability_8():
    """vLLM's Fp8Config.get_min_capability() is 80 (vllm/model_executor/layers/quantization/fp8.py at 0071b24): no
    FP8 weights on a T4 (7.5) or a V100 (7.0); the A100 (8.0) runs them weight-only (Marlin)."""
    for gpu in ("t4", "v100-sxm2-32gb"):
        for dtype in ("fp8", "fp8-block"):
            assert "compute capability 8.0" in engine_format_refusal("vllm", load_gpu(gpu), dtype)
    assert engine_format_refusal("vllm", load_gpu("a100-sxm-80gb"), "fp8") is None


@pytest.mark.parametrize(("args", "offered"), [
    (["-m", "qwen3-32b", "-g", "mi210"], "int4-g128"),  # CDNA 2: vLLM's ROCm FP8 needs MI300
    (["-m", "llama-3.1-70b", "-g", "mi250x-gcd", "--tp", "2"], "int4-g128"),
    (["-m", "llama-3.1-8b", "-g", "t4"], "int4-g128"),  # Turing: vLLM's FP8 from 8.0
    (["-m", "qwen3-32b", "-g", "a100-sxm-40gb", "-e", "trtllm"], "int4-g128"),  # TensorRT-LLM: FP8 needs fp8 cores
    (["-m", "gemma-3-27b", "-g", "l40s"], "fp8"),  # Ada runs FP8: still offered
])
def test_28_hw_h1_overflow_hint_offers_only_formats_that_start(args, offered):
    """'--weight-dtype fp8 holds them' had been offered where kvcalc's own rule then says fp8 does not start."""
    result = CliRunner().invoke(app, ["estimate", *args, "-f", "json"])
    assert result.exit_code == 0, result.output
    hints = [w for w in json.loads(result.stdout)["warnings"] if "exceed the" in w]
    assert len(hints) == 1 and f"--weight-dtype {offered} holds them" in hints[0], hints
