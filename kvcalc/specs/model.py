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


def _validated(size: int | None) -> int:
    """A size AttentionSpec's validator requires for its kind (num_kv_heads and head_dim unless 'mla', the latent
    fields under 'mla'): never None on a validated spec, so this only narrows the type for mypy."""
    assert size is not None, "AttentionSpec's validator requires this field for its attention.kind"
    return size


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
    qk_norm_scope: Literal["head", "layer"] = Field(
        "head", description="with qk_norm: head, one norm of head_dim shared by the heads (2 * head_dim weights); "
        "layer, one over all query heads and one over all KV heads ((h + g) * head_dim: MiniMax-M2's qk_norm_type "
        "per_layer)")
    sliding_window: Tokens | None = Field(None, description="tokens a sliding-window layer attends to")
    global_every: Count | None = Field(
        None, description="with sliding_window: every n-th layer attends globally (gemma-2: 2); None: all layers slide"
    )
    global_count: Count | None = Field(
        None, description="with sliding_window: how many layers attend globally where no period says which "
        "(a config's irregular layer_types)")
    window_kind: Literal["sliding", "chunked"] = Field(
        "sliding", description="how the windowed layers attend: to the last sliding_window tokens, or (chunked local "
        "attention, Llama 4) to the tokens of their own sliding_window-token chunk")
    sinks: bool = Field(False, description="a learned sink logit per head in every softmax (gpt-oss): h parameters "
                        "a layer, no cache")
    rotary_dim: int | None = Field(
        None, ge=0, le=10**5, description="dims of each query and key head that RoPE rotates (a config's "
        "partial_rotary_factor x head_dim; ChatGLM: half); None: all of them; 0: no rotary embedding (Jamba, "
        "Nemotron-H). MLA rotates its qk_rope_head_dim")

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
            if self.rotary_dim is not None:
                raise ValueError("attention.rotary_dim does not apply to 'mla' (it rotates qk_rope_head_dim)")
            return self
        for f in ("num_kv_heads", "head_dim"):
            if getattr(self, f) is None:
                raise ValueError(f"attention.{f} is required for attention.kind {self.kind!r}")
        extra = [f for f in (*MLA_FIELDS, "q_lora_rank") if getattr(self, f) is not None]
        if extra:
            raise ValueError(f"{', '.join('attention.' + f for f in extra)} only apply to attention.kind 'mla'")
        h, g = self.num_heads, self.num_kv_heads
        assert g is not None and self.head_dim is not None  # the loop above raised otherwise
        if h % g:
            raise ValueError(f"attention.num_heads ({h}) must be divisible by attention.num_kv_heads ({g})")
        expected = {"mha": g == h, "mqa": g == 1, "gqa": 1 < g < h}[self.kind]
        if not expected:
            raise ValueError(f"attention.kind {self.kind!r} does not match num_heads {h} and num_kv_heads {g}")
        if self.global_every is not None and self.sliding_window is None:
            raise ValueError("attention.global_every needs attention.sliding_window")
        if self.global_count is not None and (self.sliding_window is None or self.global_every is not None):
            raise ValueError("attention.global_count needs attention.sliding_window and replaces global_every")
        if self.rotary_dim is not None and self.rotary_dim > self.head_dim:
            raise ValueError(f"attention.rotary_dim ({self.rotary_dim}) exceeds attention.head_dim ({self.head_dim})")
        if self.window_kind != "sliding" and self.sliding_window is None:
            raise ValueError("attention.window_kind 'chunked' needs attention.sliding_window (the chunk size)")
        return self

    # Derived sizes, named as in DESIGN.md's notation.
    @property
    def kv_heads(self) -> int:
        """KV heads g the cache stores (1 for MLA: one shared latent per token)."""
        return 1 if self.kind == "mla" else _validated(self.num_kv_heads)

    @property
    def qk_head_dim(self) -> int:
        """d_qk of the expanded heads (MLA: d_n + d_r)."""
        if self.kind == "mla":
            return _validated(self.qk_nope_head_dim) + _validated(self.qk_rope_head_dim)
        return _validated(self.head_dim)

    @property
    def value_head_dim(self) -> int:
        return _validated(self.v_head_dim if self.kind == "mla" else self.head_dim)


class MlpSpec(StrictModel):
    """Dense feed-forward block. 'gated' (SwiGLU/GeGLU) has three matrices d x f; 'plain' (GELU) has two."""

    kind: Literal["gated", "plain"]
    intermediate_size: Width
    bias: bool = False
    activation: str = "silu"
    sub_norm: bool = Field(False, description="an RMSNorm over the intermediate before down_proj, intermediate_size "
                           "weights a dense MLP (BitNet's ffn_sub_norm)")


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
    router_bias: bool = Field(False, description="the router has a bias per expert (gpt-oss; DeepSeek-V3's "
                              "e_score_correction_bias under topk_method noaux_tc)")
    shared_expert_gate: bool = Field(False, description="a d x 1 sigmoid gate on the shared experts (Qwen2-MoE)")
    every: Count = Field(1, description="every n-th layer past first_dense_layers is MoE, the others dense (Jamba's "
                         "expert_layer_period: 2)")

    @model_validator(mode="after")
    def _check(self) -> MoeSpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.top_k ({self.top_k}) exceeds moe.num_experts ({self.num_experts})")
        return self

    @property
    def shared_width(self) -> int:
        return self.shared_expert_intermediate_size or self.expert_intermediate_size


LinearKind = Literal["gated_deltanet", "linear", "mamba2", "mamba"]


class LinearAttentionSpec(StrictModel):
    """The fixed-state layers of a hybrid model: Gated DeltaNet (Qwen3-Next), plain linear attention ("linear";
    MiniMax's lightning attention), Mamba-2 (Nemotron-H, Falcon-H1) and Mamba (Jamba). Each keeps a fixed-size state
    per sequence instead of a KV cache that grows with the context: one key_head_dim x value_head_dim matrix per
    value head, plus the last conv_kernel - 1 inputs of its short causal convolution.

    Mamba-2 is linear attention with C as the query, B as the key and x as the value (Dao & Gu 2024, "state space
    duality"): num_key_heads = n_groups, key_head_dim = d_state, num_value_heads = the SSM heads, value_head_dim =
    their head dim. Mamba (v1) has one d_state state per inner channel: num_value_heads = d_inner, value_head_dim
    = 1, key_head_dim = d_state, num_key_heads = 1, and its convolution runs over x only."""

    kind: LinearKind = "gated_deltanet"
    full_every: Count | None = Field(
        None, description="every n-th layer keeps softmax attention (Qwen3-Next: 4); None: every layer is linear")
    layers: Count | None = Field(None, description="how many layers are linear when no period says it (Jamba: "
                                 "attention at layer 4 of every 8 from the config's offset)")
    parallel: bool = Field(False, description="the linear mixer runs beside softmax attention in every layer, their "
                           "outputs summed (Falcon-H1)")
    num_key_heads: Count
    num_value_heads: Count
    key_head_dim: Count
    value_head_dim: Count
    conv_kernel: int = Field(0, ge=0, le=64, description="width of the short causal convolution (0: none)")
    output_gate: bool = Field(False, description="a sigmoid gate d -> n_v d_v on the output (MiniMax lightning attention)")
    norm: Literal["head", "full", "none"] = Field(
        "head", description="the norm on the mixer's output: one value_head_dim weight shared by the heads (Gated "
        "DeltaNet), one over all n_v d_v channels (Mamba-2's gated RMSNorm, MiniMax), or none (Mamba)")
    dt_rank: Count | None = Field(None, description="Mamba (v1): rank of the time-step projection")
    inner_norms: bool = Field(False, description="Mamba (v1): norms on dt, B and C (Jamba's mamba_inner_layernorms)")
    recurrent_state_bytes: float | None = Field(
        None, ge=1, le=8, description="bytes an element of the recurrent matrices is kept in where engines keep them "
        "apart from the model's dtype: Nemotron-H's mamba_ssm_cache_dtype, float32 (4) unless its config.json says "
        "otherwise (vLLM's NemotronHForCausalLMConfig.update_mamba_ssm_cache_dtype, SGLang's mamba_ssm_dtype); "
        "unset: the model's dtype, as the conv's past inputs always are")

    @model_validator(mode="after")
    def _check(self) -> LinearAttentionSpec:
        if (self.kind == "mamba") != (self.dt_rank is not None):
            raise ValueError("linear_attention.dt_rank is required for kind 'mamba' and only applies to it")
        if sum(x is not None and x is not False for x in (self.full_every, self.layers, self.parallel or None)) > 1:
            raise ValueError("linear_attention: give at most one of full_every, layers and parallel")
        return self

    @property
    def conv_channels(self) -> int:
        """Channels of the short convolution: q, k and v (B, C and x for Mamba-2); Mamba (v1) convolves x alone."""
        v = self.num_value_heads * self.value_head_dim
        return v if self.kind == "mamba" else 2 * self.num_key_heads * self.key_head_dim + v

    @property
    def recurrent_elements(self) -> int:
        """Elements of one layer's recurrent matrices for one sequence (n_v x d_k x d_v)."""
        return self.num_value_heads * self.key_head_dim * self.value_head_dim

    @property
    def state_elements(self) -> int:
        """Elements of one layer's state for one sequence: the recurrent matrices and the conv's past inputs."""
        return self.recurrent_elements + max(self.conv_kernel - 1, 0) * self.conv_channels

    def state_bytes(self, element_bytes: float, tp: int = 1) -> float:
        """Bytes of one layer's state for one sequence on one of tp GPUs, its conv's past inputs at element_bytes (the
        model's dtype) and its recurrent matrices at recurrent_state_bytes where set. The engines split the state by
        its value heads, max(n_v / tp, 1) of them a GPU, and each head's conv channels with it; Mamba-2's B and C
        channels (2 n_groups d_state) go by groups, and where n_groups does not divide by tp the groups are first
        widened by tp - n_groups (n_groups 1: tp groups, so every GPU keeps the one group whole): vLLM's
        MambaStateShapeCalculator.mamba2_state_shape with extra_groups_for_head_shards (vllm-project/vllm vllm/model_executor/layers/mamba/mamba_utils.py at 2afe1e85), SGLang's
        Mamba2StateShape.create (python/sglang/srt/configs/mamba_utils.py). The fortieth audit, hybrid 4:
        Falcon-H1-7B's state (n_groups 1) had been divided whole by tp, 35,076,096 B a GPU at TP 2 where vLLM
        keeps 35,143,680."""
        heads = max(self.num_value_heads / tp, 1) / self.num_value_heads  # the share of the value heads a GPU keeps
        conv: float = self.state_elements - self.recurrent_elements
        if self.kind == "mamba2" and tp > 1 and conv:
            groups = self.num_key_heads
            groups += 0 if groups % tp == 0 else tp - groups  # extra_groups_for_head_shards
            bc = 2 * self.num_key_heads * self.key_head_dim * (self.conv_kernel - 1)
            conv = (conv - bc) * heads + bc / self.num_key_heads * groups / tp
        else:
            conv *= heads
        return conv * element_bytes + self.recurrent_elements * heads * (self.recurrent_state_bytes or element_bytes)


PATTERN_BLOCKS = ("M", "*", "-", "E")
QuantClass = Literal["attention", "mlp", "experts", "shared_experts"]
ALL_QUANT_CLASSES: tuple[QuantClass, ...] = ("attention", "mlp", "experts", "shared_experts")


class QuantizationSpec(StrictModel):
    """How a checkpoint stores its weights (HF quantization_config): the format of its quantised linear layers and
    which layer classes it quantises. Embeddings, lm_head, norms and routers stay bf16 whatever the format."""

    weight_format: str = Field(description="a kvcalc weight format (fp8, fp8-block, int4-g128, mxfp4, nvfp4, ...)")
    quantized: list[QuantClass] = Field(
        default_factory=lambda: list(ALL_QUANT_CLASSES),
        description="layer classes in weight_format; the others stay bf16 (gpt-oss: experts only)")
    lm_head: bool = Field(False, description="the lm_head is quantised too (gpt-fast's int8/int4 quantise every "
                          "nn.Linear); checkpoints keep it bf16")
    kept_layers: dict[QuantClass, int] = Field(
        default_factory=dict, description="of a class in `quantized`, how many layers the checkpoint still leaves "
        "in bf16 by name (Llama-3.1-405B-FP8: the MLPs of its first and last layers)")
    kept_linears: list[Literal["in_ba"]] = Field(
        default_factory=list, description="projections of every linear-attention layer the checkpoint leaves in bf16 "
        "while it quantises the rest of the mixer, by their formulas/params.py names (Qwen3-Next-80B-A3B-FP8: the "
        "Gated DeltaNet's in_ba, whose 2 x 32 output rows fill no 128 x 128 fp8 block)")
    weight_only: bool = Field(False, description="the checkpoint quantises weights only (compressed-tensors float "
                              "weights with no input_activations: NVFP4A16, MXFP4A16, FP8 W8A16): its GEMMs dequantise "
                              "them and run at the 16-bit peak, as vLLM's weight-only (Marlin) schemes do")
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
    lm_head_bias: bool = Field(False, description="the lm_head has a bias per vocabulary entry (GPT-J, Phi-1/1.5/2)")
    trust_remote_code: bool = Field(False, description="the checkpoint ships its own configuration, modelling or "
                                    "tokenizer code (config.json's auto_map), which engines load only with "
                                    "--trust-remote-code: plan's launch commands pass it")
    mtp_layers: int | None = Field(None, ge=0, le=64, description="multi-token-prediction layers the checkpoint ships "
                                   "(config.json's num_nextn_predict_layers); 0: none, whatever its family; unset: "
                                   "its family's (speculation.MTP_FAMILIES)")
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
    vision_encoder_params: int = Field(
        0, ge=0, le=10**13, description="parameters of the vision tower and its projector that the checkpoint holds "
        "beside the language model (engines load them, in 16 bit, on the first pipeline stage); no part of a text "
        "token's forward pass")
    single_reduce: bool = Field(False, description="attention and MLP run side by side on one input and their sums "
                                "meet in one all-reduce a layer under tensor parallelism (Falcon's parallel_attn or "
                                "new_decoder_architecture: vLLM's falcon.py, reduce_row_parallel_results)")
    layer_pattern: str | None = Field(
        None, max_length=10**5, description="blocks that each hold one part, in Nemotron-H's hybrid_override_pattern "
        "alphabet: M a linear_attention mixer, * softmax attention, - the dense MLP, E the MoE; one norm each. None: "
        "every layer holds attention (or its linear mixer) and an MLP")

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
        if self.moe is not None and self.layer_pattern is None and self.moe_layers == 0:
            # refused rather than read as dense: a [moe] table that places no MoE layer is a mistake in the spec
            # (a mistyped every or first_dense_layers), and would divide the experts' work by zero layers
            raise ValueError(
                f"moe: no layer is a MoE layer (moe.first_dense_layers {self.moe.first_dense_layers} and moe.every "
                f"{self.moe.every} leave none of num_layers {self.num_layers}; in a config.json first_k_dense_replace "
                "and moe_layer_freq); lower them, or drop the moe table for a dense model")
        if self.learned_position_embeddings and self.max_position_embeddings is None:
            raise ValueError("learned_position_embeddings needs max_position_embeddings")
        g = self.attention.global_count  # the ninth round, H11: clamped to num_layers in silence
        if g is not None and g > self.num_layers:
            raise ValueError(f"attention.global_count ({g}) exceeds num_layers ({self.num_layers})")
        q = self.quantization
        if q is not None:  # a quantised class the model has, or its weight format names nothing it stores (H11)
            has = {"attention": bool(self.attention_layers), "mlp": bool(self.dense_layers),
                   "experts": self.moe is not None, "shared_experts": bool(self.moe and self.moe.num_shared_experts)}
            if not any(has.get(c) for c in q.quantized):
                raise ValueError(f"quantization.quantized {q.quantized}: {self.name} has none of these layer classes, "
                                 f"so no weight is stored as {q.weight_format}")
            # the eleventh audit, H8: negative counts had shrunk the weights below the fully quantised model's, and
            # counts past the layers were clamped in silence
            layers = {"attention": self.attention_layers, "mlp": self.dense_layers}
            for cls, n in q.kept_layers.items():
                most = layers.get(cls, self.moe_layers)
                if cls not in q.quantized:
                    raise ValueError(f"quantization.kept_layers.{cls}: the class is not in quantization.quantized, "
                                     "so none of its layers is quantised to keep in bf16")
                if not 0 <= n <= most:
                    raise ValueError(f"quantization.kept_layers.{cls} {n}: expected 0 to {most}, the layers that hold "
                                     f"the class")
        la = self.linear_attention
        if la is not None and la.layers is not None and la.layers > self.num_layers:
            raise ValueError(f"linear_attention.layers ({la.layers}) exceeds num_layers ({self.num_layers})")
        if self.layer_pattern is not None:
            self._check_pattern(self.layer_pattern)
        return self

    def _check_pattern(self, pattern: str) -> None:
        if len(pattern) != self.num_layers:
            raise ValueError(f"layer_pattern has {len(pattern)} blocks but num_layers is {self.num_layers}")
        bad = sorted(set(pattern) - set(PATTERN_BLOCKS))
        if bad:
            raise ValueError(f"layer_pattern: unknown block {bad[0]!r}; expected one of {', '.join(PATTERN_BLOCKS)}")
        if "M" not in pattern and "*" not in pattern:
            raise ValueError("layer_pattern: no attention (*) or mixer (M) block")
        if ("M" in pattern) != (self.linear_attention is not None):
            raise ValueError("layer_pattern: M blocks and a [linear_attention] table go together")
        if ("E" in pattern) != (self.moe is not None):
            raise ValueError("layer_pattern: E blocks and a [moe] table go together")
        if self.moe is not None and self.moe.first_dense_layers:
            raise ValueError("layer_pattern: give the dense blocks as '-' rather than moe.first_dense_layers")
        if self.linear_attention is not None and (self.linear_attention.full_every or self.linear_attention.layers
                                                  or self.linear_attention.parallel):
            raise ValueError("layer_pattern: the pattern places the M blocks; drop linear_attention.full_every, "
                             "layers and parallel")

    @property
    def quantized_classes(self) -> tuple[str, ...]:
        """Layer classes a sub-16-bit weight format applies to (all of them unless the checkpoint says otherwise)."""
        if self.quantization is None:
            return ("attention", "mlp", "experts", "shared_experts")
        return tuple(self.quantization.quantized)

    @property
    def moe_layers(self) -> int:
        if self.layer_pattern is not None:
            return self.layer_pattern.count("E")
        if self.moe is None:
            return 0
        return (self.num_layers - self.moe.first_dense_layers) // self.moe.every

    @property
    def dense_layers(self) -> int:
        """Layers (blocks, with a layer_pattern) with the dense MLP."""
        if self.layer_pattern is not None:
            return self.layer_pattern.count("-")
        return self.num_layers - self.moe_layers

    @property
    def linear_layers(self) -> int:
        """Layers with a fixed-size linear-attention state instead of a KV cache."""
        la = self.linear_attention
        if la is None:
            return 0
        if self.layer_pattern is not None:
            return self.layer_pattern.count("M")
        if la.layers is not None:
            return la.layers
        if la.parallel or la.full_every is None:
            return self.num_layers
        return self.num_layers - self.num_layers // la.full_every

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention and a KV cache (all of them unless the model is hybrid)."""
        if self.layer_pattern is not None:
            return self.layer_pattern.count("*")
        if self.linear_attention is not None and self.linear_attention.parallel:
            return self.num_layers
        return self.num_layers - self.linear_layers

    @property
    def rotary_width(self) -> int:
        """Dims of each head RoPE rotates: qk_rope_head_dim under MLA, else attention.rotary_dim (all of head_dim by
        default); 0 with learned position embeddings or without rotary embedding."""
        attn = self.attention
        if self.learned_position_embeddings:
            return 0
        if attn.kind == "mla":
            return _validated(attn.qk_rope_head_dim)
        return _validated(attn.head_dim) if attn.rotary_dim is None else attn.rotary_dim

    @property
    def residual_blocks(self) -> int:
        """Sub-blocks whose outputs are summed into the residual stream: one per pattern block, else two a layer
        (attention and MLP), or one where the two are summed first (single_reduce). Each ends in an all-reduce under
        tensor parallelism (the twenty-third audit, S2: Falcon-40B at TP 8 had been charged 120 a step where vLLM
        runs 60)."""
        return self.num_layers if self.layer_pattern is not None or self.single_reduce else 2 * self.num_layers

    @property
    def global_layers(self) -> int:
        """Attention layers that attend to the whole context (the rest attend to attention.sliding_window tokens)."""
        a, n = self.attention, self.attention_layers
        if a.sliding_window is None:
            return n
        if a.global_count is not None:
            return min(a.global_count, n)
        return 0 if a.global_every is None else n // a.global_every

    @property
    def window_layers(self) -> int:
        return self.attention_layers - self.global_layers
