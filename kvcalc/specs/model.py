"""ModelSpec: what a transformer is made of, as far as inference cost is concerned.

Every size is explicit. head_dim in particular is never derived from hidden_size / num_heads: Gemma,
Qwen3 and every MLA model break that identity.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvcalc.specs._base import Count, StrictModel, Tokens, Width

AttentionKind = Literal["mha", "mqa", "gqa", "mla"]
MLA_FIELDS = ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


class AttentionSpec(StrictModel):
    """Attention of one layer. Standard attention (MHA/MQA/GQA) uses num_kv_heads and head_dim; MLA uses the
    DeepSeek-V2 latent fields (kv_lora_rank = d_c, qk_rope_head_dim = d_r, qk_nope_head_dim = d_n,
    v_head_dim = d_v, q_lora_rank = d_q or None when queries are projected directly)."""

    kind: AttentionKind
    num_heads: Count
    num_kv_heads: Count | None = None
    head_dim: Count | None = None
    kv_lora_rank: Count | None = None
    qk_rope_head_dim: Count | None = None
    qk_nope_head_dim: Count | None = None
    v_head_dim: Count | None = None
    q_lora_rank: Count | None = None
    qkv_bias: bool = False
    out_bias: bool = False
    sparse_top_k: Count | None = Field(
        None, description="DeepSeek sparse attention (V3.2): each query attends to the top-k keys its lightning "
        "indexer selects")
    indexer_heads: Count | None = Field(None, description="the indexer's query heads (V3.2: 64)")
    indexer_head_dim: Count | None = Field(None, description="the indexer's key width, cached per token in fp8 (128)")
    output_gate: bool = Field(False, description="a sigmoid gate on the attention output, computed by the query "
                              "projection at twice the width (Qwen3-Next's attn_output_gate)")
    qk_norm: bool = Field(False, description="RMSNorm over each query and key head (Qwen3, Gemma 3): 2 * head_dim weights")
    sliding_window: Tokens | None = Field(None, description="tokens a sliding-window layer attends to")
    global_every: Count | None = Field(
        None, description="with sliding_window: every n-th layer attends globally (gemma-2: 2); None: all layers slide"
    )

    @model_validator(mode="after")
    def _check_shape(self) -> AttentionSpec:
        sparse = (self.sparse_top_k, self.indexer_heads, self.indexer_head_dim)
        if any(v is not None for v in sparse) and any(v is None for v in sparse):
            raise ValueError("attention.sparse_top_k, indexer_heads and indexer_head_dim go together")
        if self.kind == "mla":
            missing = [f for f in MLA_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"attention.kind 'mla' needs {', '.join('attention.' + f for f in missing)}")
            if self.num_kv_heads is not None or self.head_dim is not None:
                raise ValueError("attention.num_kv_heads and attention.head_dim do not apply to 'mla' (use the latent fields)")
            return self
        for f in ("num_kv_heads", "head_dim"):
            if getattr(self, f) is None:
                raise ValueError(f"attention.{f} is required for attention.kind {self.kind!r}")
        extra = [f for f in (*MLA_FIELDS, "q_lora_rank") if getattr(self, f) is not None]
        if extra:
            raise ValueError(f"{', '.join('attention.' + f for f in extra)} only apply to attention.kind 'mla'")
        h, g = self.num_heads, self.num_kv_heads
        if h % g:
            raise ValueError(f"attention.num_heads ({h}) must be divisible by attention.num_kv_heads ({g})")
        expected = {"mha": g == h, "mqa": g == 1, "gqa": 1 < g < h}[self.kind]
        if not expected:
            raise ValueError(f"attention.kind {self.kind!r} does not match num_heads {h} and num_kv_heads {g}")
        if self.global_every is not None and self.sliding_window is None:
            raise ValueError("attention.global_every needs attention.sliding_window")
        return self

    # Derived sizes, named as in DESIGN.md's notation.
    @property
    def kv_heads(self) -> int:
        """KV heads g the cache stores (1 for MLA: one shared latent per token)."""
        return 1 if self.kind == "mla" else self.num_kv_heads

    @property
    def qk_head_dim(self) -> int:
        """d_qk of the expanded heads (MLA: d_n + d_r)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.kind == "mla" else self.head_dim

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim if self.kind == "mla" else self.head_dim


class MlpSpec(StrictModel):
    """Dense feed-forward block. 'gated' (SwiGLU/GeGLU) has three matrices d x f; 'plain' (GELU) has two."""

    kind: Literal["gated", "plain"]
    intermediate_size: Width
    bias: bool = False
    activation: str = "silu"


class MoeSpec(StrictModel):
    """Mixture-of-experts feed-forward. Layers before first_dense_layers use the dense MlpSpec instead."""

    num_experts: Count = Field(description="routed experts per MoE layer")
    top_k: Count
    expert_intermediate_size: Width
    num_shared_experts: int = Field(0, ge=0, le=10**4)
    shared_expert_intermediate_size: Width | None = Field(
        None, description="width of each shared expert; defaults to expert_intermediate_size"
    )
    first_dense_layers: int = Field(0, ge=0, le=10**7)
    shared_expert_gate: bool = Field(False, description="a d x 1 sigmoid gate on the shared experts (Qwen2-MoE)")

    @model_validator(mode="after")
    def _check(self) -> MoeSpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.top_k ({self.top_k}) exceeds moe.num_experts ({self.num_experts})")
        return self

    @property
    def shared_width(self) -> int:
        return self.shared_expert_intermediate_size or self.expert_intermediate_size


class LinearAttentionSpec(StrictModel):
    """The linear-attention layers of a hybrid model (Qwen3-Next's Gated DeltaNet; kind "linear" for plain linear
    attention). Each keeps a fixed-size state per sequence instead of a KV cache that grows with the context: one
    key_head_dim x value_head_dim matrix per value head, plus the last conv_kernel - 1 inputs of its short causal
    convolution over q, k and v."""

    kind: Literal["gated_deltanet", "linear"] = "gated_deltanet"
    full_every: Count | None = Field(
        None, description="every n-th layer keeps softmax attention (Qwen3-Next: 4); None: every layer is linear")
    num_key_heads: Count
    num_value_heads: Count
    key_head_dim: Count
    value_head_dim: Count
    conv_kernel: int = Field(0, ge=0, le=64, description="width of the short causal convolution (0: none)")

    @property
    def conv_channels(self) -> int:
        return 2 * self.num_key_heads * self.key_head_dim + self.num_value_heads * self.value_head_dim

    @property
    def state_elements(self) -> int:
        """Elements of one layer's state for one sequence: the recurrent matrices and the conv's past inputs."""
        return (self.num_value_heads * self.key_head_dim * self.value_head_dim
                + max(self.conv_kernel - 1, 0) * self.conv_channels)


QuantClass = Literal["attention", "mlp", "experts", "shared_experts"]


class QuantizationSpec(StrictModel):
    """How a checkpoint stores its weights (HF quantization_config): the format of its quantised linear layers and
    which layer classes it quantises. Embeddings, lm_head, norms and routers stay bf16 whatever the format."""

    weight_format: str = Field(description="a kvcalc weight format (fp8, fp8-block, int4-g128, mxfp4, nvfp4, ...)")
    quantized: list[QuantClass] = Field(
        default_factory=lambda: ["attention", "mlp", "experts", "shared_experts"],
        description="layer classes in weight_format; the others stay bf16 (gpt-oss: experts only)")
    lm_head: bool = Field(False, description="the lm_head is quantised too (gpt-fast's int8/int4 quantise every "
                          "nn.Linear); checkpoints keep it bf16")
    source: str = ""


class ModelSpec(StrictModel):
    name: str
    aliases: list[str] = []
    display_name: str | None = None
    family: str
    sources: list[str] = Field(min_length=1, description="where every number in this file comes from")
    notes: str = ""
    num_layers: Count
    hidden_size: Width
    vocab_size: Width
    max_position_embeddings: Tokens | None = None
    tie_word_embeddings: bool = False
    learned_position_embeddings: bool = Field(False, description="GPT-2/3 style table of max_position_embeddings rows")
    learned_position_offset: int = Field(0, ge=0, le=10**6, description="extra rows in that table (OPT: 2)")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_bias: bool = False
    norms_per_layer: int = Field(2, ge=0, le=100)
    attention: AttentionSpec
    mlp: MlpSpec
    moe: MoeSpec | None = None
    linear_attention: LinearAttentionSpec | None = None
    quantization: QuantizationSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.quantization is not None:
            from kvcalc.dtypes import WEIGHT_DTYPES

            if self.quantization.weight_format not in WEIGHT_DTYPES:
                raise ValueError(f"quantization.weight_format {self.quantization.weight_format!r} is not one of "
                                 f"{', '.join(WEIGHT_DTYPES)}")
        if self.moe is not None and self.moe.first_dense_layers > self.num_layers:
            raise ValueError(
                f"moe.first_dense_layers ({self.moe.first_dense_layers}) exceeds num_layers ({self.num_layers})"
            )
        if self.learned_position_embeddings and self.max_position_embeddings is None:
            raise ValueError("learned_position_embeddings needs max_position_embeddings")
        return self

    @property
    def quantized_classes(self) -> tuple[str, ...]:
        """Layer classes a sub-16-bit weight format applies to (all of them unless the checkpoint says otherwise)."""
        if self.quantization is None:
            return ("attention", "mlp", "experts", "shared_experts")
        return tuple(self.quantization.quantized)

    @property
    def moe_layers(self) -> int:
        return 0 if self.moe is None else self.num_layers - self.moe.first_dense_layers

    @property
    def dense_layers(self) -> int:
        return self.num_layers - self.moe_layers

    @property
    def linear_layers(self) -> int:
        """Layers with a fixed-size linear-attention state instead of a KV cache."""
        la = self.linear_attention
        if la is None:
            return 0
        return self.num_layers if la.full_every is None else self.num_layers - self.num_layers // la.full_every

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention and a KV cache (all of them unless the model is hybrid)."""
        return self.num_layers - self.linear_layers

    @property
    def global_layers(self) -> int:
        """Attention layers that attend to the whole context (the rest attend to attention.sliding_window tokens)."""
        a, n = self.attention, self.attention_layers
        if a.sliding_window is None:
            return n
        return 0 if a.global_every is None else n // a.global_every

    @property
    def window_layers(self) -> int:
        return self.attention_layers - self.global_layers
