"""`--attn` what-if rewrites: the same model with other attention (mha, mqa, gqaN, mla, linear).

linear: every layer becomes plain linear attention with the model's own heads (h heads of d_h for keys and values,
no convolution), whose state per sequence is h x d_h x d_h a layer, whatever the context.

A rewrite replaces the attention spec, so the K/V projections, the cache, parameters, traffic and time all
follow. MLA defaults to the DeepSeek-V2 proportions: d_c = 4 * d_h (512 = 4 * 128), d_r = d_h / 2 (64),
d_n = d_v = d_h, queries projected directly (no q_lora).

Every other feature of the model's attention that the new layout can carry stays (the twelfth audit, E6: a rewrite
to the model's own layout had changed its numbers): the windows (sliding_window, global_every, global_count,
window_kind), the sinks and the output bias always; under standard attention also the QK-norm (over the new
head_dim), the output gate, rotary_dim and the QKV bias; under MLA DeepSeek-V3.2's sparse indexer. Dropped, because
kvcalc's formulas model them only under one of the two: the sparse indexer going to standard attention (its queries
come from MLA's query latent), and the QK-norm, output gate, rotary_dim and QKV bias going to MLA (MLA normalises its
latents instead, gates nothing, rotates its own qk_rope_head_dim, and has no projection biases).
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from kvcalc.checks import check_int, shown_value
from kvcalc.errors import KvcalcError
from kvcalc.specs.catalog import validation_message
from kvcalc.specs.model import AttentionSpec, LinearAttentionSpec, ModelSpec

ATTN_CHOICES = "mha, mqa, gqaN (N KV heads), mla or linear"


class NotDivisible(KvcalcError):
    """gqaN where N does not divide the model's query heads (compare skips such variants)."""


def cache_layout(attn: AttentionSpec, linear=None) -> tuple:
    """What a KV cache stores per layer: two rewrites with the same layout are the same variant."""
    return (attn.kind, attn.num_kv_heads, attn.head_dim, attn.kv_lora_rank, attn.qk_rope_head_dim,
            None if linear is None else (linear.kind, linear.full_every, linear.state_elements,
                                                 linear.recurrent_state_bytes))


# features a rewrite keeps from the model's attention (the module docstring says why the others go)
CARRIED = ("sliding_window", "global_every", "global_count", "window_kind", "sinks", "out_bias")
CARRIED_STANDARD = (*CARRIED, "qk_norm", "output_gate", "rotary_dim", "qkv_bias")
CARRIED_MLA = (*CARRIED, "sparse_top_k", "indexer_heads", "indexer_head_dim")


def _carried(attn: AttentionSpec, fields: tuple[str, ...]) -> dict:
    return {f: getattr(attn, f) for f in fields}


def _standard(attn: AttentionSpec, kv_heads: int) -> AttentionSpec:
    h = attn.num_heads
    if kv_heads < 1 or h % kv_heads:
        raise NotDivisible(f"--attn: gqa{kv_heads} needs N to divide the {h} query heads")
    kind = "mha" if kv_heads == h else ("mqa" if kv_heads == 1 else "gqa")
    head_dim = attn.value_head_dim  # MLA -> standard: the per-head width it decodes to
    return AttentionSpec(kind=kind, num_heads=h, num_kv_heads=kv_heads, head_dim=head_dim,
                         **_carried(attn, CARRIED_STANDARD))


def _mla(attn: AttentionSpec, kv_lora_rank: int | None, rope_dim: int | None) -> AttentionSpec:
    if attn.kind == "mla" and kv_lora_rank is None and rope_dim is None:
        return attn
    d_h = attn.value_head_dim
    base = attn if attn.kind == "mla" else None
    return AttentionSpec(
        kind="mla",
        num_heads=attn.num_heads,
        kv_lora_rank=kv_lora_rank or (base.kv_lora_rank if base else 4 * d_h),
        qk_rope_head_dim=rope_dim or (base.qk_rope_head_dim if base else max(d_h // 2, 1)),
        qk_nope_head_dim=base.qk_nope_head_dim if base else d_h,
        v_head_dim=d_h,
        q_lora_rank=base.q_lora_rank if base else None,
        **_carried(attn, CARRIED_MLA),
    )


def rewrite_attention(
    model: ModelSpec, attn: str | None, *, kv_lora_rank: int | None = None, rope_dim: int | None = None
) -> ModelSpec:
    """The model with its attention replaced by `attn` (None, 'own' or 'none': unchanged, as the CLI's --attn lists
    spell it; the sixth audit found the Python API refusing 'own'). The model's other attention features go along
    where the new layout can carry them; the module docstring lists those dropped and why (the twelfth audit, E6).
    model: a loaded ModelSpec, or a name or spec file as every API function takes one."""
    if not isinstance(model, ModelSpec):
        from kvcalc.specs.catalog import load_model

        model = load_model(model)  # a name or a path; anything else is refused as model= (kvcalc.checks.check_ref)
    if attn is not None and attn.strip().lower() in ("own", "none"):
        attn = None
    if attn is None:
        if kv_lora_rank is not None or rope_dim is not None:
            raise KvcalcError("--kv-lora-rank and --rope-dim need --attn mla")
        return model
    spec = attn.strip().lower()
    if spec != "mla" and (kv_lora_rank is not None or rope_dim is not None):
        raise KvcalcError("--kv-lora-rank and --rope-dim only apply to --attn mla")
    for flag, value in (("--kv-lora-rank", kv_lora_rank), ("--rope-dim", rope_dim)):
        if value is not None:
            check_int(flag, value, 1, 10**6)
    a = model.attention
    try:
        if spec == "mha":
            new = _standard(a, a.num_heads)
        elif spec == "mqa":
            new = _standard(a, 1)
        elif m := re.fullmatch(r"gqa-?([0-9]+)", spec):  # ASCII digits (the fifth audit: gqa２ had been gqa2)
            # more KV heads than any model has query heads; and int() refuses 4,300 digits
            if len(m.group(1).lstrip("0")) > 7:
                raise KvcalcError(f"--attn: {shown_value(spec)}: gqaN needs N to divide the {a.num_heads} query "
                                  "heads")  # (the thirty-seventh audit, fuzz: a traceback)
            new = _standard(a, int(m.group(1)))
        elif spec == "mla":
            new = _mla(a, kv_lora_rank, rope_dim)
        elif spec == "linear":
            d_h = a.value_head_dim
            linear = LinearAttentionSpec(kind="linear", full_every=None, num_key_heads=a.num_heads,
                                         num_value_heads=a.num_heads, key_head_dim=d_h, value_head_dim=d_h)
            pattern = model.layer_pattern and model.layer_pattern.replace("*", "M")  # every mixer block linear
            return model.model_copy(update={"linear_attention": linear, "layer_pattern": pattern,
                                            "name": f"{model.name}+linear"})
        else:
            raise KvcalcError(f"--attn: unknown attention {shown_value(attn)}; expected {ATTN_CHOICES}")
    except ValidationError as e:
        raise KvcalcError(validation_message("--attn", e)) from None
    return model.model_copy(update={"attention": new, "name": f"{model.name}+{spec}"})
