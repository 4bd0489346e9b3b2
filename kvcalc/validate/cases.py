"""The measured cases, each with its prediction from the same formulas as `estimate`.

1. attention: one decode step of one layer's attention for each variant, over batch x context, with KV caches in
   each variant's real layout (K, V [B, g, S, d_h] through SDPA; MLA's latent [B, S, d_c + d_r], absorbed form, as
   DeepSeek's reference inference code runs it: two batched GEMMs over the latent, which read it twice where a fused
   kernel such as FlashMLA, the kernel the formulas count, reads it once).
2. linear: the model's matmuls at batch sizes from 1 across the ridge.
3. layer-decode / layer-prefill: one whole decoder layer (norms, attention, MLP) with random weights at the
   model's true widths (MoE layers are measured as the model's dense layer).
4. model-decode: one decode step of the whole model, every layer with its own weights and KV cache, the embedding
   rows and the lm_head: what an engine runs per output token (its CUDA-graph time is the one to compare).
   The layers are the model's dense, full-attention layers, as in 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kvcalc.formulas.forward import (
    Op,
    Precision,
    forward_ops,
    input_elements_per_kernel,
    linear_cost,
)
from kvcalc.formulas.kv import kv_elements_per_token_per_layer
from kvcalc.formulas.params import (
    Linear,
    attention_in_linears,
    attention_out_linear,
    dense_mlp_linears,
)
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.model import ModelSpec


@dataclass(frozen=True)
class Case:
    kind: str  # attention | linear | layer-decode | layer-prefill | model-decode
    variant: str
    batch: int
    context: int
    ops: list[Op]  # what the formulas say this work costs
    tensor_bytes: int  # device memory the case allocates (for skipping what does not fit)
    build: Callable  # (torch, device, dtype) -> a no-argument callable that runs the work once


def _variants(model: ModelSpec) -> list[str]:
    h = model.attention.num_heads
    groups = [g for g in (h // 4, h // 8) if 1 < g < h and h % g == 0]
    return ["mha", *dict.fromkeys(f"gqa{g}" for g in groups), "mqa", "mla"]


def attention_case(model: ModelSpec, variant: str, batch: int, context: int, p: Precision) -> Case:
    from kvcalc.validate.layer import absorbed_mla_attention

    spec = rewrite_attention(model, variant)
    a = spec.attention
    # the attention operator exactly as a model's step counts it (cost, kernel class and work items)
    ops = [o for o in forward_ops(one_layer(spec), batch=batch, q=1, context=context, absorbed=True, p=p)
           if o.op_class == "attention"]
    h = a.num_heads
    if a.kind == "mla":
        width = a.kv_lora_rank + a.qk_rope_head_dim
        elements = batch * (context + 1) * width + batch * h * (width + context + 1)

        def build(torch, device, dtype):
            latent = torch.randn(batch, context + 1, width, device=device, dtype=dtype)  # [B, S+1, d_c+d_r]
            q = torch.randn(batch, h, width, device=device, dtype=dtype)  # absorbed query [B, h, d_c+d_r]
            return lambda: absorbed_mla_attention(torch, q, latent, a.kv_lora_rank)
    else:
        g, dh = a.num_kv_heads, a.head_dim
        elements = 2 * batch * g * (context + 1) * dh + batch * h * dh

        def build(torch, device, dtype):
            k = torch.randn(batch, g, context + 1, dh, device=device, dtype=dtype)  # [B, g, S+1, d_h]
            v = torch.randn(batch, g, context + 1, dh, device=device, dtype=dtype)
            q = torch.randn(batch, h, 1, dh, device=device, dtype=dtype)  # [B, h, 1, d_h]
            return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=g != h)
    return Case("attention", variant, batch, context, ops, int(elements * p.b_kv), build)


def linear_case(linear: Linear, batch: int, p: Precision) -> Case:
    op = Op(linear.name, "projection", "matmul", linear_cost([linear], batch, p),
            items_per_kernel=input_elements_per_kernel([linear], batch, 1))

    def build(torch, device, dtype):
        w = torch.randn(linear.out_features, linear.in_features, device=device, dtype=dtype)  # [out, in]
        x = torch.randn(batch, linear.in_features, device=device, dtype=dtype)  # [B, in]
        return lambda: torch.nn.functional.linear(x, w)

    size = (linear.in_features * linear.out_features + batch * (linear.in_features + linear.out_features)) * p.b_w
    return Case("linear", linear.name, batch, 0, [op], int(size), build)


def one_layer(model: ModelSpec, layers: int = 1) -> ModelSpec:
    """The model cut to `layers` full-attention, dense-MLP layers (what the layer and model cases build)."""
    attn = model.attention.model_copy(update={"sliding_window": None, "global_every": None})
    return model.model_copy(update={"num_layers": layers, "moe": None, "attention": attn, "linear_attention": None,
                                    "layer_pattern": None})


def layer_ops(model: ModelSpec, batch: int, q: int, context: int, p: Precision) -> list[Op]:
    ops = forward_ops(one_layer(model), batch=batch, q=q, context=context, absorbed=q == 1, p=p)
    return [o for o in ops if o.name not in ("embedding", "lm_head")]


def layer_case(model: ModelSpec, batch: int, q: int, context: int, p: Precision) -> Case:
    from kvcalc.validate.layer import build_layer

    spec = one_layer(model)
    d = spec.hidden_size
    weights = sum(x.params for x in [*attention_in_linears(spec.attention, d), attention_out_linear(spec.attention, d),
                                     *dense_mlp_linears(spec.mlp, d)])
    kv = batch * (context + q) * kv_elements_per_token_per_layer(spec.attention)
    acts = batch * q * 4 * max(d, 2 * spec.mlp.intermediate_size, spec.attention.num_heads * spec.attention.qk_head_dim)
    kind = "layer-decode" if q == 1 else "layer-prefill"
    return Case(kind, spec.attention.kind, batch, context if q == 1 else q, layer_ops(model, batch, q, context, p),
                int((weights + kv + acts) * p.b_w), lambda torch, device, dtype: build_layer(torch, spec, batch, q, context, device, dtype))


def model_decode_case(model: ModelSpec, batch: int, context: int, p: Precision) -> Case:
    from kvcalc.validate.layer import build_model_decode

    spec = one_layer(model, model.num_layers)
    ops = forward_ops(spec, batch=batch, q=1, context=context, absorbed=True, p=p)
    layer = layer_case(model, batch, 1, context, p)  # one layer's weights, KV and activations
    head = 2 * model.vocab_size * model.hidden_size + batch * model.vocab_size  # embedding, lm_head, logits
    return Case("model-decode", spec.attention.kind, batch, context, ops,
                int(spec.num_layers * layer.tensor_bytes + head * p.b_w),
                lambda torch, device, dtype: build_model_decode(torch, spec, batch, context, device, dtype))


def model_linears(model: ModelSpec) -> list[Linear]:
    """The matmuls of one dense layer and the lm_head, as the linear cases measure them."""
    d = model.hidden_size
    return [*attention_in_linears(model.attention, d), attention_out_linear(model.attention, d),
            *dense_mlp_linears(model.mlp, d), Linear("lm_head", d, model.vocab_size)]


def case_named(model: ModelSpec, kind: str, variant: str, batch: int, context: int, p: Precision) -> Case | None:
    """The case a validate row names (its kind, variant, batch and context), at any batch and context; None where
    the model has no such case."""
    if kind == "attention" and variant in _variants(model):
        return attention_case(model, variant, batch, context, p)
    if kind == "linear":
        linear = next((x for x in model_linears(model) if x.name == variant), None)
        return None if linear is None else linear_case(linear, batch, p)
    if variant != model.attention.kind:
        return None
    if kind == "layer-decode":
        return layer_case(model, batch, 1, context, p)
    if kind == "layer-prefill":
        return layer_case(model, batch, context, 0, p)
    return model_decode_case(model, batch, context, p) if kind == "model-decode" else None


def cases(model: ModelSpec, p: Precision, *, quick: bool) -> list[Case]:
    """The grid; --quick keeps a few of each kind (sized for a CPU)."""
    d = model.hidden_size
    if quick:
        variants = [v for v in _variants(model) if v in ("mha", "mqa", "mla")] + _variants(model)[1:2]
        att = [(b, s) for b in (1, 4) for s in (512, 2048)]
        lin_batches, linears = (1, 16, 256), [attention_out_linear(model.attention, d), dense_mlp_linears(model.mlp, d)[1]]
        decode, prefill, whole = [(1, 512)], [(1, 128)], [(1, 128)]
    else:
        variants = _variants(model)
        att = [(b, s) for b in (1, 8, 32, 128) for s in (1024, 4096, 16384, 65536)]
        lin_batches = (1, 4, 16, 64, 256, 1024, 4096, 16384)
        linears = model_linears(model)
        decode, prefill = [(b, s) for b in (1, 16) for s in (1024, 8192, 32768)], [(1, 512), (1, 2048), (1, 8192)]
        whole = [(1, 1024), (1, 8192), (8, 4096), (32, 2048), (64, 1024), (128, 4096), (256, 1024)]
    out = [attention_case(model, v, b, s, p) for v in dict.fromkeys(variants) for b, s in att]
    out += [linear_case(x, b, p) for x in linears for b in lin_batches]
    out += [layer_case(model, b, 1, s, p) for b, s in decode]
    out += [layer_case(model, b, q, 0, p) for b, q in prefill]
    out += [model_decode_case(model, b, s, p) for b, s in whole]
    return out
