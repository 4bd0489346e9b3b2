"""Read a Hugging Face config.json as a ModelSpec: from a file, a folder that holds one, or a repo id in the
local Hugging Face cache. Nothing is downloaded and no remote code is run; the JSON is only parsed.

Each family is read with the field names it really uses; nothing is guessed where a config says otherwise
(head_dim in particular: Qwen3, Gemma and MLA models break head_dim = hidden / heads).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import ValidationError

from kvcalc.errors import AssumptionWarning, KvcalcError
from kvcalc.specs.files import is_existing_path, read_regular_file
from kvcalc.specs.model import ModelSpec

LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi3", "gemma", "gemma2", "gemma3",
              "gemma3_text", "gpt_oss", "llama4_text"}
MAX_SIZE = 10**8  # no real width, vocabulary or context (Llama 4 Scout: 10,485,760) comes near this


class Config:
    """A config dict that names the file and the field in every error, and records assumptions."""

    def __init__(self, data: dict, source: str):
        self.data, self.source = data, source
        self.assumptions: list[str] = []  # values kvcalc chose because the config left them out
        self.notes: list[str] = []  # what the spec leaves out on purpose

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def int(self, key: str, default=None, *, assume: str | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            if assume is not None:
                self.assumptions.append(f"{key} absent: assumed {assume}")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
            raise KvcalcError(f"{self.source}: {key}: expected a positive integer up to {MAX_SIZE:,}, got {value!r}")
        return value

    def need(self, *keys: str) -> list[int]:
        """The first present key of each alternative group ('a|b'); missing ones are one error naming them all."""
        missing = [k for k in keys if not any(self.has(alt) for alt in k.split("|"))]
        if missing:
            raise KvcalcError(f"{self.source}: missing essential field(s): {', '.join(missing)}")
        return [self.int(next(alt for alt in k.split("|") if self.has(alt))) for k in keys]

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):  # "false" is a string, and truthy: never guess
            raise KvcalcError(f"{self.source}: {key}: expected true or false, got {value!r}")
        return value


def _kind(heads: int, kv_heads: int) -> str:
    return "mha" if kv_heads == heads else ("mqa" if kv_heads == 1 else "gqa")


def _check_heads(c: Config, heads: int, kv_heads: int, heads_key: str, kv_key: str) -> None:
    if heads % kv_heads:
        raise KvcalcError(f"{c.source}: {heads_key} ({heads}) is not divisible by {kv_key} ({kv_heads})")


def _windows(c: Config, model_type: str, layers: int) -> dict:
    """sliding_window and global_every from the family's fields."""
    if model_type == "llama4_text" and c.int("attention_chunk_size"):
        # chunked local attention on three layers of four (the fourth global, without RoPE)
        return {"sliding_window": c.int("attention_chunk_size"), "global_every": 4, "window_kind": "chunked"}
    window = c.int("sliding_window")
    if window is None:
        return {}
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe") and not c.bool("use_sliding_window", False):
        return {}  # Qwen configs carry a sliding_window that is off unless use_sliding_window is set
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        c.assumptions.append("use_sliding_window: every layer modelled as sliding (max_window_layers not modelled)")
    if model_type == "gemma2":
        return {"sliding_window": window, "global_every": 2}
    if model_type in ("gemma3", "gemma3_text", "gpt_oss"):
        types = c.data.get("layer_types")
        if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            raise KvcalcError(f"{c.source}: layer_types: expected a list of strings, got {types!r:.60}")
        if types:
            full = [i for i, t in enumerate(types) if t == "full_attention"]
            if not full:
                return {"sliding_window": window}  # every layer slides
            every = full[0] + 1
            if full == list(range(every - 1, layers, every)):
                return {"sliding_window": window, "global_every": every}
            return {"sliding_window": window, "global_count": len(full)}  # irregular: counted
        return {"sliding_window": window, "global_every": c.int("sliding_window_pattern", 6, assume="6")}
    return {"sliding_window": window}


def _rotary(c: Config, head_dim: int, factor_key: str = "partial_rotary_factor") -> dict:
    """attention.rotary_dim where RoPE turns part of each head (partial_rotary_factor; GPT-NeoX's rotary_pct)."""
    factor = c.data.get(factor_key, 1.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise KvcalcError(f"{c.source}: {factor_key}: expected a fraction in (0, 1], got {factor!r:.40}")
    return {} if factor == 1 else {"rotary_dim": int(head_dim * factor)}


def _llama_like(c: Config, model_type: str) -> dict:
    layers, d, heads, vocab = c.need("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    kv = c.int("num_key_value_heads", heads)
    _check_heads(c, heads, kv, "num_attention_heads", "num_key_value_heads")
    head_dim = c.int("head_dim") or d // heads
    gemma = model_type.startswith("gemma")
    qwen2 = model_type in ("qwen2", "qwen2_moe")
    spec = {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab,
        "max_position_embeddings": c.int("max_position_embeddings"),
        "tie_word_embeddings": c.bool("tie_word_embeddings", gemma),
        "norms_per_layer": 4 if model_type in ("gemma2", "gemma3", "gemma3_text") else 2,
        "attention": {
            "kind": _kind(heads, kv), "num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim,
            "qkv_bias": qwen2 or c.bool("attention_bias", False), "out_bias": c.bool("attention_bias", False),
            "qk_norm": model_type in ("qwen3", "qwen3_moe", "gemma3", "gemma3_text"),
            **_rotary(c, head_dim), **_windows(c, model_type, layers),
        },
        "mlp": {
            "kind": "gated", "intermediate_size": c.need("intermediate_size")[0], "bias": c.bool("mlp_bias", False),
            "activation": c.data.get("hidden_activation") or c.data.get("hidden_act") or "silu",
        },
    }
    if model_type == "mixtral":
        (experts, top_k) = c.need("num_local_experts", "num_experts_per_tok")
        spec["moe"] = {"num_experts": experts, "top_k": top_k, "expert_intermediate_size": spec["mlp"]["intermediate_size"]}
    elif model_type == "gpt_oss":  # every layer MoE; the experts carry biases
        experts = c.need("num_local_experts")[0]
        top_k = c.int("num_experts_per_tok") or c.need("experts_per_token")[0]
        spec["mlp"]["bias"] = True
        spec["attention"]["sinks"] = True  # a learned sink logit per head
        spec["moe"] = {"num_experts": experts, "top_k": top_k, "router_bias": True,
                       "expert_intermediate_size": spec["mlp"]["intermediate_size"]}
    elif model_type == "llama4_text":  # routed experts and one shared expert, intermediate_size wide
        experts, top_k, width = c.need("num_local_experts", "num_experts_per_tok", "intermediate_size")
        spec["mlp"]["intermediate_size"] = c.int("intermediate_size_mlp") or width  # the dense layers' MLP
        spec["moe"] = {"num_experts": experts, "top_k": top_k, "expert_intermediate_size": width,
                       "num_shared_experts": 1, "shared_expert_intermediate_size": width,
                       "every": c.int("interleave_moe_layer_step", 1)}  # Maverick: every other layer MoE
    elif model_type in ("qwen2_moe", "qwen3_moe"):
        experts, top_k, width = c.need("num_experts", "num_experts_per_tok", "moe_intermediate_size")
        if c.int("decoder_sparse_step", 1) != 1 or c.data.get("mlp_only_layers"):
            raise KvcalcError(f"{c.source}: decoder_sparse_step / mlp_only_layers other than every layer MoE are not modelled")
        spec["moe"] = {"num_experts": experts, "top_k": top_k, "expert_intermediate_size": width}
        shared = c.int("shared_expert_intermediate_size")
        if shared:
            spec["moe"].update(num_shared_experts=1, shared_expert_intermediate_size=shared, shared_expert_gate=True)
    return spec


def _qwen3_next(c: Config, moe: bool = True) -> dict:
    """Qwen3-Next and the Qwen3.5 hybrids: a Qwen3 body (MoE, or dense for Qwen3.5's dense models) whose
    full-attention layers keep gated softmax attention and whose other layers are Gated DeltaNet (linear attention
    with a fixed state). Which layers are which: layer_types where given, else every full_attention_interval-th."""
    spec = _llama_like(c, "qwen3_moe" if moe else "qwen3")
    spec["attention"]["output_gate"] = c.bool("attn_output_gate", True)
    keys = ("linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim")
    nk, nv, dk, dv = c.need(*keys)
    spec["linear_attention"] = {
        "kind": "gated_deltanet", "num_key_heads": nk, "num_value_heads": nv, "key_head_dim": dk, "value_head_dim": dv,
        "conv_kernel": c.int("linear_conv_kernel_dim", 4), **_linear_layers(c, spec["num_layers"]),
    }
    return spec


def _linear_layers(c: Config, layers: int) -> dict:
    """full_every from layer_types where the full-attention layers are periodic, else their count; without
    layer_types, full_attention_interval (4 by default)."""
    types = c.data.get("layer_types")
    if types is None:
        return {"full_every": c.int("full_attention_interval", 4)}
    if not (isinstance(types, list) and len(types) == layers and all(isinstance(t, str) for t in types)):
        raise KvcalcError(f"{c.source}: layer_types: expected a list of num_hidden_layers ({layers}) strings")
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    if not full:
        return {"layers": layers}
    every = full[0] + 1
    if full == list(range(every - 1, layers, every)):
        return {"full_every": every}
    return {"layers": layers - len(full)}


def _mamba2(c: Config, heads: str, head_dim: str, state: str, groups: str, kernel: str) -> dict:
    """A Mamba-2 mixer from the family's field names: n_groups B/C heads of d_state (the linear layer's keys),
    the SSM heads and their head dim (its values), the conv kernel, and a gated RMSNorm over the inner width."""
    nv, dv, dk = c.need(heads, head_dim, state)
    return {"kind": "mamba2", "num_key_heads": c.int(groups, 1), "num_value_heads": nv, "key_head_dim": dk,
            "value_head_dim": dv, "conv_kernel": c.int(kernel, 4), "norm": "full"}


def _nemotron_h(c: Config) -> dict:
    """Nemotron-H: blocks that each hold one part, as hybrid_override_pattern lists them (M Mamba-2, * attention,
    - a squared-ReLU MLP, E a MoE), one RMSNorm a block."""
    layers, d, heads, vocab = c.need("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    pattern = c.data.get("hybrid_override_pattern")
    if not isinstance(pattern, str) or len(pattern) != layers:
        raise KvcalcError(f"{c.source}: hybrid_override_pattern: expected a string of num_hidden_layers ({layers}) "
                          f"blocks, got {pattern!r:.60}")
    kv = c.int("num_key_value_heads", heads)
    _check_heads(c, heads, kv, "num_attention_heads", "num_key_value_heads")
    spec = {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab, "layer_pattern": pattern,
        "max_position_embeddings": c.int("max_position_embeddings"),
        "tie_word_embeddings": c.bool("tie_word_embeddings", False), "norms_per_layer": 1,
        "attention": {"kind": _kind(heads, kv), "num_heads": heads, "num_kv_heads": kv,
                      "head_dim": c.int("head_dim") or c.int("attention_head_dim") or d // heads,
                      "qkv_bias": c.bool("attention_bias", False), "out_bias": c.bool("attention_bias", False),
                      "rotary_dim": 0},  # no rotary embedding (vLLM's NemotronHAttention)
        "mlp": {"kind": "plain", "intermediate_size": c.need("intermediate_size")[0], "bias": c.bool("mlp_bias", False),
                "activation": str(c.data.get("mlp_hidden_act") or "relu2")},
    }
    if "M" in pattern:
        spec["linear_attention"] = _mamba2(c, "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups",
                                           "conv_kernel")
    if "E" in pattern:  # Nemotron 3: squared-ReLU routed experts and one shared expert
        experts, top_k, width = c.need("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size")
        shared = c.int("moe_shared_expert_intermediate_size")
        spec["moe"] = {"num_experts": experts, "top_k": top_k, "expert_intermediate_size": width,
                       "num_shared_experts": 1 if shared else 0, "shared_expert_intermediate_size": shared}
    return spec


def _period_count(c: Config, layers: int, period_key: str, offset_key: str, period: int, offset: int) -> int:
    """Layers i with i % period == offset (Jamba's attention and expert layers)."""
    p, o = c.int(period_key, period), c.data.get(offset_key, offset)
    if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o < p:
        raise KvcalcError(f"{c.source}: {offset_key}: expected an integer from 0 to {period_key} - 1, got {o!r}")
    return len(range(o, layers, p))


def _jamba(c: Config) -> dict:
    """Jamba: Mamba (v1) layers with one attention layer every attn_layer_period, a MoE in place of the MLP every
    expert_layer_period."""
    spec = _llama_like(c, "llama")
    layers, d = spec["num_layers"], spec["hidden_size"]
    spec["max_position_embeddings"] = spec["max_position_embeddings"] or c.int("n_ctx")  # Jamba-v0.1's name for it
    spec["attention"]["rotary_dim"] = 0  # no positional encoding in its attention layers
    attention = _period_count(c, layers, "attn_layer_period", "attn_layer_offset", 8, 4)
    rank = c.data.get("mamba_dt_rank", "auto")
    rank = -(-d // 16) if rank == "auto" else c.int("mamba_dt_rank")
    inner, state = c.int("mamba_expand", 2) * d, c.int("mamba_d_state", 16)
    spec["linear_attention"] = {
        "kind": "mamba", "layers": layers - attention, "num_key_heads": 1, "num_value_heads": inner,
        "key_head_dim": state, "value_head_dim": 1, "conv_kernel": c.int("mamba_d_conv", 4), "dt_rank": rank,
        "norm": "none", "inner_norms": c.bool("mamba_inner_layernorms", True),
    } if attention < layers else None
    if attention == 0:
        raise KvcalcError(f"{c.source}: attn_layer_period/offset leave no attention layer, which kvcalc does not model")
    if c.bool("mamba_proj_bias", False) or not c.bool("mamba_conv_bias", True):
        c.notes.append("mamba_proj_bias / mamba_conv_bias other than false / true are not counted")
    experts = c.int("num_experts", 16)
    if experts > 1:
        period = c.int("expert_layer_period", 2)
        moe = _period_count(c, layers, "expert_layer_period", "expert_layer_offset", 2, 1)
        if moe != layers // period:
            raise KvcalcError(f"{c.source}: expert_layer_period/offset place {moe} MoE layers; kvcalc models "
                              f"num_hidden_layers // expert_layer_period = {layers // period}")
        spec["moe"] = {"num_experts": experts, "top_k": c.int("num_experts_per_tok", 2), "every": period,
                       "expert_intermediate_size": spec["mlp"]["intermediate_size"]}
    return spec


def _falcon_h1(c: Config) -> dict:
    """Falcon-H1: every layer runs attention and a Mamba-2 mixer side by side on the same input (their outputs
    summed), then a gated MLP."""
    spec = _llama_like(c, "llama")
    spec["linear_attention"] = {**_mamba2(c, "mamba_n_heads", "mamba_d_head", "mamba_d_state", "mamba_n_groups",
                                          "mamba_d_conv"), "parallel": True}
    la = spec["linear_attention"]
    d_ssm = c.int("mamba_d_ssm") or c.int("mamba_expand", 2) * spec["hidden_size"]
    if d_ssm != la["num_value_heads"] * la["value_head_dim"]:
        raise KvcalcError(f"{c.source}: mamba_d_ssm ({d_ssm}) differs from mamba_n_heads x mamba_d_head, which "
                          "kvcalc does not model")
    if not c.bool("mamba_rms_norm", False):
        la["norm"] = "none"
    if c.bool("projectors_bias", False) or c.bool("mamba_proj_bias", False):
        c.notes.append("projectors_bias / mamba_proj_bias are not counted")
    return spec


def _minimax(c: Config) -> dict:
    """MiniMax-Text-01 / M1: lightning attention (linear attention with an output gate and a norm over all heads)
    in most layers, softmax attention in the others (attn_type_list 1 or layer_types full_attention); every layer
    MoE."""
    spec = _llama_like(c, "mixtral")
    layers, heads = spec["num_layers"], spec["attention"]["num_heads"]
    kinds = c.data.get("attn_type_list") or c.data.get("layer_types")
    if not isinstance(kinds, list) or len(kinds) != layers:
        raise KvcalcError(f"{c.source}: attn_type_list / layer_types: expected a list of num_hidden_layers ({layers})")
    full = [i for i, k in enumerate(kinds) if k in (1, "full_attention")]
    every = full[0] + 1 if full else None
    periodic = every is not None and full == list(range(every - 1, layers, every))
    dh = spec["attention"]["head_dim"]
    if c.int("rotary_dim"):  # MiniMax names the rotated width itself
        spec["attention"]["rotary_dim"] = c.int("rotary_dim")
    spec["linear_attention"] = {
        "kind": "linear", "num_key_heads": heads, "num_value_heads": heads, "key_head_dim": dh, "value_head_dim": dh,
        "output_gate": True, "norm": "full", **({"full_every": every} if periodic else {"layers": layers - len(full)}),
    }
    return spec


def _deepseek(c: Config, model_type: str) -> dict:
    layers, d, heads, vocab = c.need("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    d_c, d_r, d_n, d_v = c.need("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
    spec = {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab,
        "max_position_embeddings": c.int("max_position_embeddings"),
        "tie_word_embeddings": c.bool("tie_word_embeddings", False),
        "attention": {
            "kind": "mla", "num_heads": heads, "kv_lora_rank": d_c, "qk_rope_head_dim": d_r,
            "qk_nope_head_dim": d_n, "v_head_dim": d_v, "q_lora_rank": c.int("q_lora_rank"),
        },
        "mlp": {"kind": "gated", "intermediate_size": c.need("intermediate_size")[0]},
    }
    if c.has("n_routed_experts"):
        if c.int("moe_layer_freq", 1) != 1:
            raise KvcalcError(f"{c.source}: moe_layer_freq other than 1 is not modelled")
        experts, top_k, width = c.need("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size")
        spec["moe"] = {
            "num_experts": experts, "top_k": top_k, "expert_intermediate_size": width,
            "num_shared_experts": c.data.get("n_shared_experts") or 0,
            "first_dense_layers": c.data.get("first_k_dense_replace") or 0,
        }
    if c.int("num_nextn_predict_layers"):
        c.notes.append("the multi-token-prediction module (num_nextn_predict_layers) is not counted")
    if model_type == "deepseek_v32" or c.has("index_topk"):  # DeepSeek sparse attention's lightning indexer
        top_k, heads_i, dim_i = c.need("index_topk", "index_n_heads", "index_head_dim")
        spec["attention"].update(sparse_top_k=top_k, indexer_heads=heads_i, indexer_head_dim=dim_i)
    return spec


def _falcon_context(c: Config) -> int:
    c.notes.append("Falcon configs carry no max_position_embeddings; its 2048-token training length is used")
    return 2048


def _falcon(c: Config) -> dict:
    layers, d, heads, vocab = c.need("num_hidden_layers|n_layer", "hidden_size", "num_attention_heads|n_head", "vocab_size")
    if c.bool("new_decoder_architecture", False):
        kv = c.int("num_kv_heads", heads)
        norms = 1 if c.data.get("num_ln_in_parallel_attn") == 1 else 2
    else:
        kv = 1 if c.bool("multi_query", True) else heads
        norms = 1 if c.bool("parallel_attn", True) else 2
    _check_heads(c, heads, kv, "num_attention_heads", "num_kv_heads")
    bias = c.bool("bias", False)
    return {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab,
        "max_position_embeddings": c.int("max_position_embeddings") or _falcon_context(c),
        "tie_word_embeddings": c.bool("tie_word_embeddings", True),
        "norm": "layernorm", "norm_bias": True, "norms_per_layer": norms,
        "attention": {"kind": _kind(heads, kv), "num_heads": heads, "num_kv_heads": kv, "head_dim": d // heads,
                      "qkv_bias": bias, "out_bias": bias,
                      **({"rotary_dim": 0} if c.bool("alibi", False) else {})},  # ALiBi Falcons have no RoPE
        "mlp": {"kind": "plain", "intermediate_size": c.int("ffn_hidden_size", 4 * d), "bias": bias, "activation": "gelu"},
    }


def _chatglm(c: Config) -> dict:
    layers, d, heads, vocab, f = c.need("num_layers", "hidden_size", "num_attention_heads", "padded_vocab_size", "ffn_hidden_size")
    kv = c.int("multi_query_group_num", heads) if c.bool("multi_query_attention", False) else heads
    _check_heads(c, heads, kv, "num_attention_heads", "multi_query_group_num")
    bias = c.bool("add_bias_linear", False)
    return {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab,
        "max_position_embeddings": c.int("seq_length"), "tie_word_embeddings": False,
        "norm": "rmsnorm" if c.bool("rmsnorm", True) else "layernorm",
        "attention": {"kind": _kind(heads, kv), "num_heads": heads, "num_kv_heads": kv,
                      "head_dim": c.int("kv_channels", d // heads), "qkv_bias": c.bool("add_qkv_bias", False),
                      "out_bias": bias, "rotary_dim": c.int("kv_channels", d // heads) // 2},  # RoPE turns half a head
        "mlp": {"kind": "gated", "intermediate_size": f, "bias": bias},
    }


def _gpt2(c: Config) -> dict:
    layers, d, heads, vocab, positions = c.need("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")
    return {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab, "max_position_embeddings": positions,
        "tie_word_embeddings": c.bool("tie_word_embeddings", True), "learned_position_embeddings": True,
        "norm": "layernorm", "norm_bias": True,
        "attention": {"kind": "mha", "num_heads": heads, "num_kv_heads": heads, "head_dim": d // heads,
                      "qkv_bias": True, "out_bias": True},
        "mlp": {"kind": "plain", "intermediate_size": c.int("n_inner") or 4 * d, "bias": True, "activation": "gelu"},
    }


def _gpt_neox(c: Config) -> dict:
    layers, d, heads, vocab, f = c.need("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "intermediate_size")
    bias = c.bool("attention_bias", True)
    return {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab,
        "max_position_embeddings": c.int("max_position_embeddings"),
        "tie_word_embeddings": c.bool("tie_word_embeddings", False), "norm": "layernorm", "norm_bias": True,
        "attention": {"kind": "mha", "num_heads": heads, "num_kv_heads": heads, "head_dim": d // heads,
                      "qkv_bias": bias, "out_bias": bias, **_rotary(c, d // heads, "rotary_pct")},
        "mlp": {"kind": "plain", "intermediate_size": f, "bias": True, "activation": "gelu"},
    }


def _opt(c: Config) -> dict:
    layers, d, heads, vocab, f, positions = c.need(
        "num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size", "ffn_dim", "max_position_embeddings"
    )
    if c.int("word_embed_proj_dim", d) != d:
        raise KvcalcError(f"{c.source}: word_embed_proj_dim != hidden_size (OPT-350m's projections) is not modelled")
    bias = c.bool("enable_bias", True)
    return {
        "num_layers": layers, "hidden_size": d, "vocab_size": vocab, "max_position_embeddings": positions,
        "tie_word_embeddings": c.bool("tie_word_embeddings", True), "learned_position_embeddings": True,
        "learned_position_offset": 2,  # OPTLearnedPositionalEmbedding keeps 2 rows before position 0
        "norm": "layernorm", "norm_bias": True,
        "attention": {"kind": "mha", "num_heads": heads, "num_kv_heads": heads, "head_dim": d // heads,
                      "qkv_bias": bias, "out_bias": bias},
        "mlp": {"kind": "plain", "intermediate_size": f, "bias": bias, "activation": "relu"},
    }


def _unknown(c: Config, model_type: str) -> dict:
    """Standard (Llama-style) fields, with every assumption named."""
    c.assumptions.append(f"model_type {model_type!r} is not a known family: read as Llama-style fields")
    _, d, heads, _ = c.need("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    if not c.has("num_key_value_heads"):
        c.assumptions.append("num_key_value_heads absent: assumed MHA (one KV head per query head)")
    if not c.has("head_dim"):
        c.assumptions.append(f"head_dim absent: assumed hidden_size / num_attention_heads = {d // heads}")
    if not c.has("tie_word_embeddings"):
        c.assumptions.append("tie_word_embeddings absent: assumed false")
    c.assumptions.append("MLP assumed gated (SwiGLU: gate, up and down projections); no biases")
    return _llama_like(c, "llama")


def _excluded_classes(entries) -> set[str]:
    """Layer classes a quantization_config's modules_to_not_convert / ignore list leaves in 16 bit."""
    out = set()
    for entry in entries if isinstance(entries, list) else []:
        text = str(entry).lower()
        if "attn" in text or "attention" in text:
            out.add("attention")
        if "shared_expert" in text:
            out.add("shared_experts")
        elif ".experts" in text:
            out.add("experts")
        elif ".mlp" in text and "router" not in text and "gate" not in text.rsplit(".", 1)[-1]:
            out.add("mlp")
    return out


def _int4_format(group: object, where: str) -> str:
    if group in (32, 64, 128):
        return f"int4-g{group}"
    raise KvcalcError(f"{where}: 4-bit group_size {group!r} is not one kvcalc stores (32, 64 or 128)")


def quantization_from_config(qc: object, where: str) -> dict | None:
    """kvcalc's quantization spec from config.json's quantization_config: the weight format (with its group or
    block scales) and the layer classes left in 16 bit (modules_to_not_convert, ignore). None when absent."""
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method", "")).lower()
    bits = qc.get("bits", qc.get("w_bit"))
    group = qc.get("group_size", qc.get("q_group_size"))
    if method == "awq" or (method == "gptq" and bits == 4):
        fmt = _int4_format(group, where)
    elif method == "gptq" and bits == 8:
        fmt = "int8-wo"
    elif method == "fp8":
        fmt = "fp8-block" if qc.get("weight_block_size") else "fp8"
    elif method == "mxfp4":
        fmt = "mxfp4"
    elif method == "modelopt":
        algo = str(qc.get("quant_algo", "")).upper()
        fmt = {"FP8": "fp8", "NVFP4": "nvfp4", "W4A16_AWQ": "int4-g128"}.get(algo)
        if fmt is None:
            raise KvcalcError(f"{where}: modelopt quant_algo {algo!r} is not a format kvcalc knows")
    elif method == "compressed-tensors":
        groups = qc.get("config_groups") or {}
        first = next(iter(groups.values()), {}) if isinstance(groups, dict) else {}
        w = first.get("weights") or {} if isinstance(first, dict) else {}
        kind, n, strategy = w.get("type"), w.get("num_bits"), w.get("strategy")
        if kind == "float" and n == 8:
            fmt = "fp8-block" if strategy == "block" else "fp8"
        elif kind == "float" and n == 4:
            fmt = "nvfp4"
        elif kind == "int" and n == 8:
            fmt = "int8" if first.get("input_activations") else "int8-wo"
        elif kind == "int" and n == 4:
            fmt = _int4_format(w.get("group_size"), where)
        else:
            raise KvcalcError(f"{where}: compressed-tensors weights {kind!r} x {n!r} bits are not a format kvcalc knows")
    else:
        raise KvcalcError(f"{where}: quantization_config quant_method {method or '(none)'!r} is not one kvcalc reads "
                          "(awq, gptq, fp8, mxfp4, modelopt, compressed-tensors); pass --weight-dtype")
    left = _excluded_classes(qc.get("modules_to_not_convert") or qc.get("ignore") or [])
    classes = [c for c in ("attention", "mlp", "experts", "shared_experts") if c not in left]
    return {"weight_format": fmt, "quantized": classes, "source": f"{where}: quantization_config ({method})"}


# model_type -> the reader of its fields (called with the config and the model_type); LLAMA_LIKE ones read as Llama
FAMILY_READERS = {
    **dict.fromkeys(("qwen3_next", "qwen3_5_moe_text", "qwen3_5_moe"), lambda c, t: _qwen3_next(c)),
    **dict.fromkeys(("qwen3_5_text", "qwen3_5"), lambda c, t: _qwen3_next(c, moe=False)),  # the dense Qwen3.5 hybrids
    "nemotron_h": lambda c, t: _nemotron_h(c), "jamba": lambda c, t: _jamba(c), "falcon_h1": lambda c, t: _falcon_h1(c),
    **dict.fromkeys(("minimax", "minimax_text_01", "minimax_m1"), lambda c, t: _minimax(c)),
    **dict.fromkeys(("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2"), _deepseek),  # Kimi K2: V3's layout
    "falcon": lambda c, t: _falcon(c), "chatglm": lambda c, t: _chatglm(c), "gpt2": lambda c, t: _gpt2(c),
    "gpt_neox": lambda c, t: _gpt_neox(c), "opt": lambda c, t: _opt(c),
}


def config_to_spec_dict(data: dict, *, name: str, source: str) -> tuple[dict, list[str]]:
    """ModelSpec fields from a parsed config.json, and the assumptions made (empty for known families)."""
    if isinstance(data.get("text_config"), dict):  # multimodal wrappers (gemma3, llava...): the language model
        data = {**data["text_config"], "model_type": data["text_config"].get("model_type", data.get("model_type"))}
    c = Config(data, source)
    model_type = str(data.get("model_type") or "")
    if model_type in ("RefinedWeb", "RefinedWebModel"):
        model_type = "falcon"
    reader = FAMILY_READERS.get(model_type, _llama_like if model_type in LLAMA_LIKE else None)
    spec = reader(c, model_type) if reader is not None else _unknown(c, model_type or "(none)")
    spec = {"name": name, "family": model_type or "unknown", "sources": [source], **spec}
    quantization = quantization_from_config(data.get("quantization_config"), source)
    if quantization is not None:
        spec["quantization"] = quantization
    notes = c.notes + [f"assumed: {a}" for a in c.assumptions]
    if notes:
        spec["notes"] = "; ".join(notes)
    return spec, c.assumptions


def read_config(path: Path) -> dict:
    """A config.json (a regular file of at most 1 MiB) as a dict; malformed JSON is a one-line error."""
    raw = read_regular_file(path, "a config.json")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise KvcalcError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise KvcalcError(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and integers past Python's 4300-digit limit
        raise KvcalcError(f"{path}: not valid JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise KvcalcError(f"{path}: expected a JSON object")
    return data


def hf_cache_dir() -> Path:
    """HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's own order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def cached_config(repo_id: str) -> Path:
    """config.json of a cached repo: the snapshot refs/main names, else the newest snapshot that has one."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise KvcalcError(f"--model: {repo_id!r} is neither a bundled name, a spec file nor an ORG/NAME repo id")
    cache = hf_cache_dir()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    candidates = []
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidates.append(repo / "snapshots" / ref.read_text().strip() / "config.json")
    candidates += sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        if path.is_file():
            return path
    raise KvcalcError(
        f"--model: {repo_id} is not in the local Hugging Face cache ({cache}); nothing is downloaded. "
        f"Fetch just its config with: huggingface-cli download {repo_id} config.json"
    )


def locate_config(ref: str | Path) -> tuple[Path, str]:
    """(config.json path, a default name) for a file, a folder or a cached repo id."""
    path = Path(ref)
    if not is_existing_path(str(ref)):
        return cached_config(str(ref)), str(ref).split("/")[-1]
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise KvcalcError(f"--model: {path} holds no config.json")
        return config, path.resolve().name
    return path, path.resolve().parent.name if path.name == "config.json" else path.stem


def load_hf_spec(ref: str | Path, name: str | None = None) -> tuple[ModelSpec, list[str]]:
    config, default_name = locate_config(ref)
    source = str(config)
    fields, assumptions = config_to_spec_dict(read_config(config), name=name or default_name, source=source)
    try:
        return ModelSpec.model_validate(fields), assumptions
    except ValidationError as e:
        from kvcalc.specs.catalog import validation_message

        raise KvcalcError(validation_message(source, e)) from None


def load_hf_model(ref: str | Path) -> ModelSpec:
    """A ModelSpec from a config.json; every assumption made is issued as an AssumptionWarning."""
    import warnings

    spec, assumptions = load_hf_spec(ref)
    for a in assumptions:
        warnings.warn(f"{spec.sources[0]}: {a}", AssumptionWarning, stacklevel=2)
    return spec
