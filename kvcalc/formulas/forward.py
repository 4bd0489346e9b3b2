"""FLOPs and bytes of one forward pass, operator by operator.

One function serves prefill and decode (LLM-Viewer's copied blocks drifted apart): B sequences each run
q new tokens against S tokens already cached.
    decode:  q = 1, S = context; MLA in its absorbed form (attention over the latent, MQA-like)
    prefill: q = P, S = 0;       MLA expanded (K and V re-expanded per head from the fresh latents)
Each Op's cost is summed over the layers it occurs in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from kvcalc.dtypes import bytes_per_element
from kvcalc.formulas._array import clip, nonzero, where
from kvcalc.formulas.cost import Cost
from kvcalc.formulas.kv import (
    STATE_MIN_BYTES,
    cached_tokens,
    indexer_bytes_per_token_per_layer,
    kv_bytes_per_token_per_layer,
)
from kvcalc.formulas.params import (
    Linear,
    attention_in_linears,
    attention_out_linear,
    dense_mlp_linears,
    expert_params,
    linear_attention_linears,
    mlp_linears,
    norm_params,
)
from kvcalc.specs.model import ModelSpec

OpClass = Literal["attention", "linear_attention", "projection", "mlp", "lm_head", "other"]
# Which peak an operator computes at: matmuls at the weights' compute dtype, attention at the activations'.
Engine = Literal["matmul", "attention", "vector"]


@dataclass(frozen=True)
class Op:
    name: str  # e.g. "attention/core (global)", "mlp", "moe/routed"
    op_class: OpClass
    engine: Engine
    cost: Cost
    kernels: int = 1  # kernels the engines launch for it (fused QKV, fused gate/up): each pays a fixed latency
    # which measured curve applies: attention_decode(_mla), attention_prefill, moe, linear_attention_decode:KIND or
    # linear_attention_prefill:KIND (the profile section and its key); "" = by engine
    kernel_class: str = ""
    unquantised: bool = False  # a matmul the checkpoint keeps in 16 bit whatever the weight format
    layers: int = 1  # layers the cost is summed over (a fused MoE is one module per layer)
    items_per_kernel: object = 0  # work items of one kernel: attention (sequence, KV head) pairs; GEMM input elements
    # the part of `cost` every GPU of a tensor-parallel group computes whole (formulas/parallel.py shard_op):
    # DeepSeek-V3.2's lightning indexer, whose projections engines build as ReplicatedLinear and whose 64 heads score
    # every key on every GPU
    whole: Cost | None = None
    compute_dtype: str | None = None  # the dtype whose peak it runs at where not its engine's (the indexer's fp8)
    # a quantised matmul of a weight-only checkpoint (QuantizationSpec.weight_only): dequantised to 16 bit, timed at
    # the activation dtype's peak by the weight-only kernels' curves (formulas/roofline.py WEIGHT_ONLY_TWINS)
    weight_only: bool = False


@dataclass(frozen=True)
class Precision:
    """Bytes per element of weights, KV cache and activations."""

    b_w: float
    b_kv: float
    b_a: float


def input_elements_per_kernel(linears: list[Linear], tokens, kernels_per_layer: int):
    """Activation elements one GEMM kernel reads as input, on average: tokens * sum of in_features / kernels."""
    return tokens * sum(x.in_features for x in linears) / kernels_per_layer


def linear_cost(linears: list[Linear], tokens, p: Precision) -> Cost:
    """Matmuls applied to `tokens` token vectors: FLOPs 2 * in * out * T, weights read once, activations in and out."""
    return Cost(
        flops=sum(2 * x.matmul_params for x in linears) * tokens,
        weight_bytes=sum(x.params for x in linears) * p.b_w,
        act_bytes=sum(x.in_features + x.out_features for x in linears) * tokens * p.b_a,
    )


def attended_positions(q, context, window: int | None):
    """Sum over the q new tokens of the keys each attends to (causal, itself included).

    No window: q*S + q(q+1)/2. With window W, query i (1..q) attends min(S + i, W) keys:
    n1 = clip(W - S, 0, q) queries see all of theirs, the other q - n1 see W.
    """
    if window is None:
        return q * context + q * (q + 1) / 2
    n1 = clip(window - context, 0, q)
    return n1 * context + n1 * (n1 + 1) / 2 + (q - n1) * window


def chunked_positions(q, context, chunk: int, *, decode: bool):
    """Keys attended by q new tokens at positions S..S+q-1 under chunked local attention (each attends to the earlier
    tokens of its own chunk of C, itself included): F(S + q) - F(S), F(n) = floor(n/C) C(C+1)/2 + r(r+1)/2 with
    r = n mod C. A decode step past the first chunk takes the mean over a chunk, q (C + 1)/2: decoding sweeps every
    position of a chunk, and a context's exact phase in its chunk is not what a plan asks about. Within the first
    chunk the count is exact: every sequence at context S < C reads all S. So a decode at C - 1 reads twice the mean
    and one at C the mean (Llama 4 Scout at batch 64 on 4 H200s: 24.6 ms at 8,191 tokens, 22.4 at 8,192): the cache a
    chunked layer reads falls as a new chunk starts, the one place where more context can decode faster (the fresh
    audit's finding, kept; a monotone rule would under-read the first chunk or over-read the rest)."""
    def swept(n):
        full = n // chunk
        r = n - full * chunk
        return full * chunk * (chunk + 1) / 2 + r * (r + 1) / 2

    exact = swept(context + q) - swept(context)
    return where(context >= chunk, q * (chunk + 1) / 2, exact) if decode else exact


def chunked_cached(context, chunk: int, *, decode: bool):
    """Cached tokens a chunked layer reads at context S: those of the current chunk, S mod C (decode past the first
    chunk: the mean, (C - 1)/2; chunked_positions)."""
    exact = context - (context // chunk) * chunk
    return where(context >= chunk, (chunk - 1) / 2, exact) if decode else exact


def attention_core_cost(model: ModelSpec, batch, q, context, window, absorbed: bool, p: Precision) -> Cost:
    """Scores, softmax and weighted sum for one layer, with the KV cache read and written.

    FLOPs 2 * h * (d_qk + d_v) * attended positions * B. MLA absorbed: d_qk = d_c + d_r, d_v = d_c against
    one shared latent; expanded: d_qk = d_n + d_r, d_v = d_v per head. KV read: B * cached tokens; KV write:
    B * q new tokens. Activations: the queries and outputs, and the fresh K and V.

    MLA expanded over a cached context (a prompt's later chunks): the cached latents are gathered and run through
    kv_b_proj into per-head keys and values before attention (vLLM's MLACommonImpl._compute_prefill_context), 2 d_c
    h (d_n + d_v) FLOPs a cached token, its h (d_n + d_v) expanded values written and read back. The thirty-third
    audit, attention 3: left out, a 2,048-token piece's attention FLOPs had been 20 % short (409.6 / q for
    DeepSeek-V3).
    """
    attn = model.attention
    h = attn.num_heads
    # DeepSeek sparse attention runs MLA in its MQA (absorbed) form in prefill too: the top k keys are latents, not
    # expanded heads (the DeepSeek-V3.2-Exp paper, 2.1; vLLM's flashmla_sparse.py flash_mla_sparse_fwd on the 576-wide
    # latent with 512-wide values). The thirtieth audit, F3 (the twentieth's N5): prefill had used d_n + d_r and d_v
    if attn.kind == "mla" and (absorbed or attn.sparse_top_k is not None):
        d_qk, d_v = attn.kv_lora_rank + attn.qk_rope_head_dim, attn.kv_lora_rank
        fresh_kv = attn.kv_lora_rank + attn.qk_rope_head_dim
    else:
        d_qk, d_v = attn.qk_head_dim, attn.value_head_dim
        kernel_kv_heads = h if attn.kind == "mla" else attn.num_kv_heads
        fresh_kv = kernel_kv_heads * (d_qk + d_v)
    per_token_layer = kv_bytes_per_token_per_layer(attn, p.b_kv)
    if attn.sparse_top_k is None:
        if window is not None and attn.window_kind == "chunked":
            positions = chunked_positions(q, context, window, decode=absorbed)
            cached = chunked_cached(context, window, decode=absorbed)
        else:
            positions, cached = attended_positions(q, context, window), cached_tokens(context, window)
        expanded = h * (attn.qk_nope_head_dim + d_v) if attn.kind == "mla" and not absorbed else 0
        return Cost(
            flops=(2 * h * (d_qk + d_v) * positions + 2 * attn.kv_lora_rank * expanded * cached
                   if expanded else 2 * h * (d_qk + d_v) * positions) * batch,
            kv_read_bytes=batch * cached * per_token_layer,
            kv_write_bytes=batch * q * per_token_layer,
            act_bytes=batch * (q * (h * (d_qk + d_v) + fresh_kv) + 2 * expanded * cached) * p.b_a,
        )
    # DeepSeek sparse attention: the indexer scores every cached key (H_I heads of d_I, fp8), then attention reads
    # only the top k of them, as many positions as a window of k would hold.
    idx = indexer_bytes_per_token_per_layer(attn)
    latent = per_token_layer - idx
    k = attn.sparse_top_k if window is None else min(window, attn.sparse_top_k)
    scores = 2 * attn.indexer_heads * attn.indexer_head_dim * attended_positions(q, context, window)
    return Cost(
        flops=(2 * h * (d_qk + d_v) * attended_positions(q, context, k) + scores) * batch,
        kv_read_bytes=batch * (cached_tokens(context, k) * latent + cached_tokens(context, window) * idx),
        kv_write_bytes=batch * q * per_token_layer,
        act_bytes=batch * q * (h * (d_qk + d_v) + fresh_kv + attn.indexer_heads * attn.indexer_head_dim) * p.b_a,
    )


def routed_experts_cost(model: ModelSpec, tokens, p: Precision) -> Cost:
    """Routed experts of one MoE layer for T tokens.

    Weights read: the expected distinct experts touched, E * (1 - (1 - k/E)^T), each fully.
    FLOPs: 2 * expert params * k * T.
    """
    moe, d = model.moe, model.hidden_size
    linears = mlp_linears(model.mlp.kind, d, moe.expert_intermediate_size)
    e, k = moe.num_experts, moe.top_k
    touched = e * (1 - (1 - k / e) ** tokens)
    per_token = linear_cost(linears, tokens * k, p)
    return Cost(
        flops=per_token.flops,
        weight_bytes=touched * expert_params(model) * p.b_w,
        act_bytes=per_token.act_bytes,
    )


def attention_kernel_kv_heads(attn, absorbed: bool) -> int:
    """KV heads the attention kernel reads: g; MLA absorbed 1 (the shared latent), expanded h."""
    if attn.kind == "mla":
        return 1 if absorbed else attn.num_heads
    return attn.num_kv_heads


def qkv_kernels_per_layer(model: ModelSpec) -> int:
    """Engines fuse q, k and v into one GEMM; MLA's projections chain (q_a -> q_b, kv_a -> kv_b) and stay apart."""
    return len(attention_in_linears(model.attention, model.hidden_size)) if model.attention.kind == "mla" else 1


def forward_ops(model: ModelSpec, *, batch, q, context, absorbed: bool, p: Precision) -> list[Op]:
    """Operators of one forward pass of B sequences, q new tokens each, S cached. Costs summed over layers.

    absorbed marks a decode step (MLA absorbed; the decode-attention kernel); otherwise prefill attention.
    Kernel counts are the engines' launches: fused QKV, fused gate/up (so an MLP is two GEMMs), one attention
    call per layer, one grouped GEMM per expert projection."""
    d, L = model.hidden_size, model.num_layers
    attn = model.attention
    tokens = batch * q
    full = unquantised(p)  # what the checkpoint keeps in bf16
    La = model.attention_layers
    quantized = model.quantized_classes
    p_attn, p_mlp = (p if "attention" in quantized else full), (p if "mlp" in quantized else full)
    p_exp, p_shared = (p if "experts" in quantized else full), (p if "shared_experts" in quantized else full)
    ops = [
        Op("embedding", "other", "vector", Cost(weight_bytes=tokens * d * full.b_w, act_bytes=tokens * d * p.b_a)),
    ]
    if La:
        qkv = attention_in_linears(attn, d)
        indexer = [x for x in qkv if x.name.startswith("indexer_")]
        ops.append(Op("attention/qkv", "projection", "matmul", La * linear_cost(qkv, tokens, p_attn),
                      kernels=La * qkv_kernels_per_layer(model), unquantised=p_attn is not p,
                      items_per_kernel=input_elements_per_kernel(qkv, tokens, qkv_kernels_per_layer(model)),
                      whole=La * linear_cost(indexer, tokens, p_attn) if indexer else None))
    ops += attention_core_ops(model, batch=batch, q=q, context=context, absorbed=absorbed, p=p)
    if La:
        ops.append(Op("attention/o", "projection", "matmul",
                      La * linear_cost([attention_out_linear(attn, d)], tokens, p_attn), kernels=La,
                      items_per_kernel=input_elements_per_kernel([attention_out_linear(attn, d)], tokens, 1),
                      unquantised=p_attn is not p))
    if model.linear_layers:
        ops += linear_attention_ops(model, batch, q, p, p_attn, decode=absorbed)
    if model.dense_layers:
        mlp = linear_cost(dense_mlp_linears(model.mlp, d), tokens, p_mlp)
        ops.append(Op("mlp", "mlp", "matmul", model.dense_layers * mlp, kernels=2 * model.dense_layers,
                      items_per_kernel=input_elements_per_kernel(dense_mlp_linears(model.mlp, d), tokens, 2),
                      unquantised=p_mlp is not p))
    if model.moe is not None:
        moe, n = model.moe, model.moe_layers
        gates = moe.num_experts + (1 if moe.shared_expert_gate else 0)
        router = linear_cost([Linear("router", d, gates)], tokens, full)
        ops.append(Op("moe/router", "mlp", "matmul", n * router, kernels=n, unquantised=full is not p))
        ops.append(Op("moe/routed", "mlp", "matmul", n * routed_experts_cost(model, tokens, p_exp), kernels=2 * n,
                      kernel_class="moe", layers=n, unquantised=p_exp is not p))
        if moe.num_shared_experts:
            width = moe.num_shared_experts * moe.shared_width
            shared = linear_cost(mlp_linears(model.mlp.kind, d, width), tokens, p_shared)
            ops.append(Op("moe/shared", "mlp", "matmul", n * shared, kernels=2 * n,
                          items_per_kernel=input_elements_per_kernel(mlp_linears(model.mlp.kind, d, width), tokens, 2),
                          unquantised=p_shared is not p))
    norm_weights = norm_params(model) * full.b_w
    norm_act = (L * model.norms_per_layer + 1) * tokens * 2 * d * p.b_a
    ops.append(Op("norms", "other", "vector", Cost(weight_bytes=norm_weights, act_bytes=norm_act),
                  kernels=L * model.norms_per_layer + 1))
    # Only each sequence's last position needs logits (engines skip the rest of the prompt).
    ops.append(lm_head_op(model, batch, p))
    return weight_only(model, ops, p)


def weight_only(model: ModelSpec, ops: list[Op], p: Precision) -> list[Op]:
    """The ops, their quantised matmuls marked weight_only where the checkpoint quantises weights only and the run
    stores them in its format (the same bytes a weight; another --weight-dtype is a format of its own)."""
    q = model.quantization
    if q is None or not q.weight_only or p.b_w != bytes_per_element(q.weight_format):
        return ops
    return [replace(o, weight_only=True) if o.engine == "matmul" and not o.unquantised else o for o in ops]


def attention_core_ops(model: ModelSpec, *, batch, q, context, absorbed: bool, p: Precision) -> list[Op]:
    """forward_ops' attention cores: one operator for the global layers and one for the sliding-window layers (each
    present only where the model has such layers), the decode kernel where absorbed, else the prefill kernel."""
    attn = model.attention
    mla = attn.kind == "mla"
    attention_class = ("attention_decode_mla" if mla else "attention_decode") if absorbed else (
        "attention_prefill_mla" if mla else "attention_prefill")
    ops = []
    for label, n_layers, window in (
        ("global", model.global_layers, None),
        ("window", model.window_layers, attn.sliding_window),
    ):
        if n_layers:
            core = n_layers * attention_core_cost(model, batch, q, context, window, absorbed, p)
            if attn.sparse_top_k is not None:  # DeepSeek sparse attention: the lightning indexer's scores, an fp8
                # MQA over every cached key (fp8_mqa_logits), its 64 heads on every GPU of a tensor-parallel group
                # (the engines build the indexer replicated: the twentieth audit, N2), apart from the attention over
                # the top k keys, which attention_core_cost counts with them
                scores = Cost(flops=n_layers * batch * 2 * attn.indexer_heads * attn.indexer_head_dim
                              * attended_positions(q, context, window))
                core = Cost(core.flops - scores.flops, core.weight_bytes, core.kv_read_bytes, core.kv_write_bytes,
                            core.act_bytes)
                ops.append(Op(f"attention/indexer ({label})", "attention", "attention", scores, kernels=n_layers,
                              whole=scores, compute_dtype="fp8"))
            ops.append(Op(f"attention/core ({label})", "attention", "attention", core, kernels=n_layers,
                          kernel_class=attention_class, items_per_kernel=batch * attention_kernel_kv_heads(attn, absorbed)))
    return ops


PER_SEQUENCE = ("attention", "linear_attention")  # op classes whose work is per sequence: attention, linear state


def sequence_ops(model: ModelSpec, *, batch, q, context, absorbed: bool, p: Precision) -> list[Op]:
    """The operators of forward_ops whose work is per sequence (op_class attention or linear_attention), in its order
    and with its costs, without building the rest: what mixed_ops takes from its decode and prefill passes."""
    ops = attention_core_ops(model, batch=batch, q=q, context=context, absorbed=absorbed, p=p)
    if model.linear_layers:
        p_attn = p if "attention" in model.quantized_classes else unquantised(p)
        ops += [o for o in linear_attention_ops(model, batch, q, p, p_attn, decode=absorbed)
                if o.op_class in PER_SEQUENCE]
    return ops


LINEAR_CHUNK = 64  # tokens per chunk of the chunked (parallel) form linear attention prefills with


def linear_attention_ops(model: ModelSpec, batch, q, p: Precision, p_proj: Precision, *, decode: bool = True) -> list[Op]:
    """The linear-attention layers of a hybrid model, for B sequences of q new tokens.

    Projections as matmuls. The recurrence: each token updates and reads every value head's d_k x d_v state,
    about 4 n_v d_k d_v FLOPs; a prompt runs in chunks of 64, adding 2 n_v C (d_k + d_v) FLOPs a token for the
    intra-chunk attention (Mamba-2's SSD alike; Mamba's selective scan has no chunked form). The state (and the conv's past inputs) is read and written once a step per sequence."""
    la, n = model.linear_attention, model.linear_layers
    tokens = batch * q
    linears = linear_attention_linears(model)
    state = la.state_bytes(max(p.b_kv, STATE_MIN_BYTES))  # in the model's dtype (formulas/kv.py)
    per_token = 4 * la.num_value_heads * la.key_head_dim * la.value_head_dim
    chunk = 2 * la.num_value_heads * LINEAR_CHUNK * (la.key_head_dim + la.value_head_dim)
    if la.kind == "mamba":  # a selective scan: no chunked matmul form, every token one recurrence step
        chunk = 0
    # a lone token per sequence (a decode, or a 1-token prompt) runs the recurrence alone; numbers and numpy arrays
    # alike (sweep's arrays had the chunk term at q = 1 where estimate's int did not: the long fuzz)
    flops = tokens * (per_token + chunk * (q > 1))
    recurrence = Cost(flops=n * flops, kv_read_bytes=n * batch * state, kv_write_bytes=n * batch * state,
                      act_bytes=n * tokens * (la.conv_channels + la.num_value_heads * la.value_head_dim) * p.b_a)
    return [
        Op("linear_attention/proj", "projection", "matmul", n * linear_cost(linears, tokens, p_proj),
           kernels=n * len(linears), items_per_kernel=input_elements_per_kernel(linears, tokens, len(linears)),
           unquantised=p_proj is not p),
        Op("linear_attention/state", "linear_attention", "attention", recurrence, kernels=n,
           kernel_class=f"linear_attention_{'decode' if decode else 'prefill'}:{la.kind}",
           items_per_kernel=batch * la.num_value_heads),
    ]


def decode_ops(model: ModelSpec, batch, context, p: Precision) -> list[Op]:
    """One decode step: B sequences each add one token to S cached ones."""
    return forward_ops(model, batch=batch, q=1, context=context, absorbed=True, p=p)


def prefill_ops(model: ModelSpec, batch, prompt, p: Precision) -> list[Op]:
    """Prefill of B prompts of P tokens into an empty cache."""
    return forward_ops(model, batch=batch, q=prompt, context=0, absorbed=False, p=p)


def mixed_ops(model: ModelSpec, *, decode_batch, context, chunk, chunk_context, p: Precision,
              decode_q: int = 1, chunk_prompts=1) -> list[Op]:
    """One continuous-batching step with chunked prefill: decode_batch sequences add decode_q tokens each (1, or
    k + 1 when a speculative verify step checks k drafts) to `context` cached ones while a prefill chunk of `chunk`
    tokens runs against `chunk_context` cached ones.

    The projections and MLP see all decode_batch x decode_q + chunk tokens in one GEMM, so the weights are read
    once; attention runs once for the decodes (the decode kernel, MLA absorbed) and once for the chunk (the prefill
    kernel); logits are computed for every decode token and for each prompt's last position in the chunk.
    chunk_prompts: the prompts whose pieces share the chunk, chunk / chunk_prompts tokens each (a fraction where
    the pieces differ: chunk^2 / sum of the squared pieces keeps the causal attention's sum of q^2 / 2 exact). A
    chunk of 315 prompts of 26 tokens attends 315 x 26 x 27 / 2 positions a head, not 8,190 x 8,191 / 2. The logits
    rows count chunk_prompts too (with uneven pieces slightly fewer than the prompts: negligible beside the chunk)."""
    both = forward_ops(model, batch=decode_batch * decode_q + chunk, q=1, context=0, absorbed=True, p=p)
    shared = [o for o in both if o.op_class not in (*PER_SEQUENCE, "lm_head")]
    attention = []
    if nonzero(decode_batch):  # arrays: all zero or none (formulas/_array.py)
        attention += sequence_ops(model, batch=decode_batch, q=decode_q, context=context, absorbed=True, p=p)
    if nonzero(chunk):
        attention += sequence_ops(model, batch=chunk_prompts, q=chunk / chunk_prompts, context=chunk_context,
                                  absorbed=False, p=p)
    rows = decode_batch * decode_q + (chunk_prompts if nonzero(chunk) else 0)
    return [*shared, *attention, lm_head_op(model, rows, p)]


def unquantised(p: Precision) -> Precision:
    """The precision of what checkpoints keep in 16 bit (embeddings, lm_head, norms, routers)."""
    return p if p.b_w >= 2 else Precision(b_w=2.0, b_kv=p.b_kv, b_a=p.b_a)


def lm_head_op(model: ModelSpec, rows, p: Precision) -> Op:
    """The lm_head over `rows` token vectors, in 16 bit when the rest is quantised."""
    full = p if model.quantization is not None and model.quantization.lm_head else unquantised(p)
    cost = linear_cost([Linear("lm_head", model.hidden_size, model.vocab_size)], rows, full)
    return Op("lm_head", "lm_head", "matmul", cost, items_per_kernel=rows * model.hidden_size,
              unquantised=full is not p)
