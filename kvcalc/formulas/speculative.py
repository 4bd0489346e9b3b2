"""Speculative decoding: a draft proposes k tokens, one forward pass of the target verifies them.

Tokens per verify step, for i.i.d. acceptance alpha of each drafted token and k drafts (Leviathan et al. 2023, eq. 1):
    E = (1 - alpha^(k+1)) / (1 - alpha)            (k + 1 at alpha = 1)
a tree of candidates (Medusa, EAGLE) is described instead by its measured mean accepted length tau, which replaces E,
and by its node count N, the tokens its verify pass runs per sequence in place of k + 1.

One speculative step of B sequences costs
    verify: the target runs B x (k + 1) tokens against the cache (q = k + 1 per sequence; logits at every
            position), so its weights are read once for k + 1 tokens: arithmetic intensity rises about k + 1-fold
    draft:  draft=MODEL   k sequential decode steps of the draft model at batch B (and its own KV cache)
            eagle         k sequential steps of one decoder layer of the target's shape, an fc of 2d -> d, and the
                          target's lm_head (EAGLE, Li et al. 2024)
            mtp=D         D sequential steps of DeepSeek-V3's one MTP module: one transformer block, a 2d -> d
                          projection and the shared lm_head (DeepSeek-V3 report, section 2.2); k = D
            medusa=N      N heads on the last hidden state, each a d x d residual block and a d x V head
                          (Medusa, Cai et al. 2024), run once; k = N
            ngram         k tokens looked up in the request's own prompt and output (vLLM's ngram proposer,
                          prompt_lookup_max/min): no weights, no cache, no GPU work; its acceptance is the data's
and yields E tokens per sequence: time per token = (verify + draft) / E. The speed-up over plain decoding falls as
the batch grows and the verify step turns compute-bound; the batch where it reaches 1 is where speculation stops
paying.
"""

from __future__ import annotations

import math

from kvcalc.formulas.capacity import longest_fitting, max_context, max_sequences
from kvcalc.formulas.forward import (
    Op,
    Precision,
    decode_ops,
    forward_ops,
    linear_cost,
    lm_head_op,
    unquantised,
)
from kvcalc.formulas.kv import kv_bytes_per_sequence
from kvcalc.formulas.parallel import kv_shard_fraction, sequence_bytes_per_gpu
from kvcalc.formulas.params import (
    Linear,
    routed_expert_bytes,
    stored_bytes,
    total_params,
    weight_bytes,
)
from kvcalc.specs.model import ModelSpec

METHODS = ("draft", "eagle", "mtp", "medusa", "ngram")


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens one verify step yields per sequence with i.i.d. acceptance alpha and k drafts."""
    if alpha >= 1:
        return k + 1.0
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def implied_alpha(tokens: float, k: int) -> float:
    """The i.i.d. acceptance alpha under which k drafts yield `tokens` a verify step (expected_tokens inverted, by
    bisection: E rises with alpha from 1 at 0 to k + 1 at 1)."""
    if tokens >= k + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens(mid, k) < tokens else (lo, mid)
    return (lo + hi) / 2


def cut_verify_tokens(alpha: float, verified: int) -> float:
    """Tokens a verify step yields when the step's token budget cuts it to `verified` of its tokens: the last
    accepted token and verified - 1 drafts (vLLM V1's Scheduler.schedule trims request.spec_token_ids to the
    tokens scheduled), so expected_tokens(alpha, verified - 1); 0 when nothing was scheduled."""
    return expected_tokens(alpha, verified - 1) if verified >= 1 else 0.0


def eagle_draft_width(tree_nodes: int, depth: int) -> int:
    """Tokens each of EAGLE's draft steps adds per sequence when it grows a tree of tree_nodes (its root among them)
    a level a step over `depth` levels: ceil((N - 1) / k)."""
    return math.ceil((tree_nodes - 1) / depth)


def time_per_token(verify_s, draft_s, tokens_per_step: float):
    """Time each sequence waits per token: one verify step and its drafts over the tokens it yields [s]."""
    return (verify_s + draft_s) / tokens_per_step


def verify_ops(model: ModelSpec, batch, context, tokens: int, p: Precision) -> list[Op]:
    """The target's forward pass over `tokens` per sequence (k + 1 for a chain of k drafts; a tree's nodes) against
    `context` cached ones (the decode kernel with that many queries), logits at every position."""
    ops = [o for o in forward_ops(model, batch=batch, q=tokens, context=context, absorbed=True, p=p)
           if o.op_class != "lm_head"]
    return [*ops, lm_head_op(model, batch * tokens, p)]


def one_layer(model: ModelSpec, *, dense: bool = False) -> ModelSpec:
    """A single decoder layer of the model's own shape (EAGLE's draft, an MTP module): softmax attention (as
    Qwen3-Next's and Nemotron's MTP layers are), MoE if the model's last layers are unless dense (its dense MLP of
    mlp.intermediate_size); no vision tower."""
    update: dict = {"num_layers": 1, "linear_attention": None, "layer_pattern": None, "vision_encoder_params": 0}
    if model.moe is not None:
        update["moe"] = None if dense else model.moe.model_copy(update={"first_dense_layers": 0, "every": 1})
    if model.attention.sliding_window is not None:
        update["attention"] = model.attention.model_copy(update={"sliding_window": None, "global_every": None})
    return model.model_copy(update=update)


def draft_layer(model: ModelSpec, method: str) -> ModelSpec:
    """The one layer an EAGLE head or an MTP module runs: an MTP module is the target's own layer, experts included
    (DeepSeek-V3's num_nextn_predict_layers); an EAGLE head is one dense decoder layer of the target's shape whatever
    the target (the thirty-first audit, speculate 2: Qwen3-30B-A3B's had been sized with all 128 experts, 1.26 GB).
    This is EAGLE-1's head (Li et al. 2024): the target's embedding and lm_head shared, an fc of 2d -> d. EAGLE-3
    heads, which the published MoE heads are (SGLang-EAGLE3-Qwen3-Coder-30B-A3B, '~350MB (single transformer
    layer)'; nebius/EAGLE3-gpt-oss-120b, 0.4 B parameters), are larger than this: they keep an lm_head of their own
    over a draft vocabulary (vLLM shares the target's only where the method is not eagle3) and an fc of 3d -> d, which
    kvcalc does not model (the fortieth audit, speculate 3)."""
    return one_layer(model, dense=method == "eagle")


def fc_precision(model: ModelSpec, p: Precision) -> Precision:
    """The format of EAGLE's and MTP's fc: the weight format where the checkpoint quantises its dense layers
    (attention and MLP), else 16 bit as it keeps them: gpt-oss quantises only its experts (model_specs/gpt-oss-120b.toml
    quantization.quantized; the fortieth audit, speculate 3: its fc had been read, and held, at mxfp4)."""
    return p if {"attention", "mlp"} <= set(model.quantized_classes) else unquantised(p)


def fc_linear(model: ModelSpec) -> Linear:
    """EAGLE's and MTP's projection of [hidden; embedding] (2d) back to d."""
    return Linear("fc", 2 * model.hidden_size, model.hidden_size)


def fc_cost(model: ModelSpec, batch, p: Precision):
    """fc_linear's cost, in fc_precision's format."""
    return linear_cost([fc_linear(model)], batch, fc_precision(model, p))


def draft_ops(model: ModelSpec, method: str, batch, context, k: int, p: Precision,
              draft_model: ModelSpec | None = None, width: int = 1) -> tuple[list[Op], int]:
    """(operators of one draft step, sequential draft steps per verify). width: the tokens an EAGLE step drafts per
    sequence when it grows a tree level by level (1 for a chain)."""
    if method == "draft":
        return decode_ops(draft_model, batch, context, p), k
    if method == "ngram":  # prompt lookup on the host: no GPU operator, no draft step (the twentieth audit, N7)
        return [], 0
    if method in ("eagle", "mtp"):
        layer = draft_layer(model, method)
        ops = decode_ops(layer, batch, context, p) if width == 1 else verify_ops(layer, batch, context, width, p)
        return [*ops, Op("draft/fc", "projection", "matmul", fc_cost(model, batch * width, p),
                         unquantised=fc_precision(model, p) is not p)], k
    d, v = model.hidden_size, model.vocab_size
    heads = linear_cost([Linear("medusa/res", d, d), Linear("medusa/head", d, v)], batch, p)
    return [Op("medusa/heads", "lm_head", "matmul", k * heads, kernels=2 * k)], 1


def draft_params(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None = None) -> int:
    """Parameters the draft adds to memory (EAGLE and MTP reuse the target's embedding and lm_head)."""
    d, v = model.hidden_size, model.vocab_size
    if method == "draft":
        return total_params(draft_model)
    if method == "medusa":
        return k * (d * d + d + d * v)
    if method == "ngram":  # no weights: the drafts are looked up in the request's own tokens
        return 0
    layer = draft_layer(model, method)
    shared = v * d * (1 if layer.tie_word_embeddings else 2)  # embedding and lm_head, reused from the target
    block = total_params(layer) - shared
    # one module: DeepSeek-V3's checkpoint ships one MTP layer (num_nextn_predict_layers 1), which the engines run k
    # times for k draft tokens (vLLM's deepseek_mtp, SGLang's NextN); the seventh audit's verification, W7, had k
    return block + fc_linear(model).params


def draft_kv_layers(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None = None) -> int:
    """Layers of KV cache the draft keeps per token (MTP keeps one per module; Medusa none)."""
    if method == "draft":
        return draft_model.num_layers
    if method in ("medusa", "ngram"):
        return 0
    return 1  # EAGLE's one layer; MTP's one module, run k times (draft_params)


# The draft's memory on one GPU, beside the target's (audit 2026-12-05 A: estimate and serve had left the draft's KV
# cache out). Every command that sizes memory under --speculate calls these (through speculation.py's timer), so estimate's fits, compare's and
# serve's pools agree. The draft runs tensor-parallel over the target's tp GPUs (its weights / tp, its KV heads
# sharded as the target's are); under pipeline stages it is counted whole on the binding stage, and under expert
# parallelism each data-parallel attention group keeps its own copy for its own sequences.

def draft_weight_bytes_per_gpu(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None, b_w: float,
                               tp: int = 1, ep: int = 1) -> float:
    """Bytes of the draft's own weights one GPU holds [B]: a draft model's as weight_bytes_per_gpu splits any model;
    EAGLE's and MTP's layer as the target stores its layers, without the embedding and lm_head they share with it
    (draft_layer_weight_bytes) / tp; Medusa's heads draft_params * b_w / tp. Under expert parallelism an MTP or EAGLE
    layer of a MoE target spreads its routed experts over the ep GPUs as the target's are (vLLM's DeepSeekMTP and
    SGLang's NextN build the layer with the model's FusedMoE under the server's expert-parallel setting; the tenth
    audit, E8: held whole, 9.2 GiB a GPU too many at --ep 8)."""
    if method == "draft":  # a model of its own, split as the target is: its norms (and any KV heads the group
        # outnumbers) whole on every GPU, its embeddings at 2 B under a quantised format (weight_bytes_per_gpu; the
        # twelfth audit, E7: its total / tp had been 118,272 B a GPU short of what kvcalc sizes the same model at)
        from kvcalc.formulas.params import weight_bytes_per_gpu

        assert draft_model is not None, "draft=MODEL: the draft's spec is needed"
        return weight_bytes_per_gpu(draft_model, b_w, tp)
    if method in ("eagle", "mtp"):
        own, routed = draft_layer_weight_bytes(model, method, b_w)
        routed = routed if ep > 1 and method == "mtp" else 0
        return (own - routed) / tp + routed / ep
    return draft_params(model, method, k, draft_model) * b_w / tp  # Medusa's heads


def draft_layer_weight_bytes(model: ModelSpec, method: str, b_w: float) -> tuple[float, float]:
    """(bytes of an EAGLE head's or MTP module's own weights, of which its routed experts) [B]: draft_params' layer
    stored by the target's per-class rule, as the draft step's operators read it (formulas/params.py weight_bytes:
    norms, routers and the classes the checkpoint leaves out at 16 bit under a quantised format), less the embedding
    and lm_head it shares with the target, plus the fc in fc_precision's format. The fortieth audit, speculate 3: it
    had been draft_params x b_w, so gpt-oss-120b's EAGLE layer, bf16 in its checkpoint's rule and in the time path
    (136 MB), was held at mxfp4 (36 MB)."""
    layer = draft_layer(model, method)
    d, v = model.hidden_size, model.vocab_size
    shared = v * d * stored_bytes(layer, b_w, "embedding")
    if not layer.tie_word_embeddings:
        shared += v * d * stored_bytes(layer, b_w, "lm_head")
    fc = fc_linear(model).params * fc_precision(model, Precision(b_w, b_w, b_w)).b_w
    return weight_bytes(layer, b_w) - shared + fc, routed_expert_bytes(layer, b_w)


def draft_kv_bytes_per_sequence(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None, tokens,
                                b_kv: float, tp: int = 1):
    """Bytes of KV cache the draft keeps for one sequence of `tokens` tokens on one GPU [B], in the same pool as the
    target's (vLLM allocates the drafter's attention layers a page each beside the target's; SGLang's EAGLE worker
    sizes its draft pool to the target's tokens):
        draft=MODEL  kv_bytes_per_sequence(draft, S) * kv_shard_fraction(draft, tp)   (its own layers and windows)
        eagle        1 x kv_bytes_per_sequence(one_layer(target), S) * kv_shard_fraction(target, tp)
        mtp=D        1 x the same: the checkpoint's one MTP module, run D times
        medusa       0 (its heads read the last hidden state and keep no cache)
    one_layer is formulas/speculative.py's: a decoder layer of the target's shape, full (softmax) attention.
    Works on a number or a numpy array of tokens."""
    layers = draft_kv_layers(model, method, k, draft_model)
    if method == "draft":
        assert draft_model is not None, "draft=MODEL: the draft's spec is needed"
        return sequence_bytes_per_gpu(draft_model, tokens, b_kv, tp)
    return layers * kv_bytes_per_sequence(one_layer(model), tokens, b_kv) * kv_shard_fraction(model, tp)


def _keeps_no_cache(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None) -> bool:
    return draft_kv_layers(model, method, k, draft_model) == 0


def _request_bytes(model, method, k, draft_model, tokens, b_kv, tp, pp):
    """One sequence's target cache on the binding GPU (formulas/capacity.py's shard) and its draft cache [B]."""
    target = sequence_bytes_per_gpu(model, tokens, b_kv, tp, pp)
    return target + draft_kv_bytes_per_sequence(model, method, k, draft_model, tokens, b_kv, tp)


def sequences_held(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None, tokens: int, pool_bytes: float,
                   b_kv: float, tp: int = 1, pp: int = 1) -> int:
    """Sequences of `tokens` tokens a KV pool of pool_bytes per GPU (what is left after the draft's weights) holds when
    each keeps the target's cache and the draft's: floor(pool / (target + draft per sequence)); formulas/capacity.py
    max_sequences when the draft keeps no cache (Medusa)."""
    if _keeps_no_cache(model, method, k, draft_model):
        return max_sequences(model, tokens, pool_bytes, b_kv, tp, pp)
    per_seq = _request_bytes(model, method, k, draft_model, tokens, b_kv, tp, pp)
    return math.floor(pool_bytes / per_seq) if pool_bytes > 0 and per_seq else 0


def longest_context(model: ModelSpec, method: str, k: int, draft_model: ModelSpec | None, batch, pool_bytes: float,
                    b_kv: float, tp: int = 1, pp: int = 1) -> float:
    """The largest S with batch x (target + draft cache of one sequence at S) <= pool (per GPU, after the draft's
    weights); formulas/capacity.py max_context when the draft keeps no cache (Medusa). Both caches grow piecewise
    linearly and never shrink with S, so the largest fitting S is found by doubling, then halving; inf when 2^53
    tokens still fit (only sliding-window layers and fixed state grow, and they stop): formulas/capacity.py
    longest_fitting."""
    if _keeps_no_cache(model, method, k, draft_model):
        return max_context(model, batch, pool_bytes, b_kv, tp, pp)

    def fits(tokens):
        return batch * _request_bytes(model, method, k, draft_model, tokens, b_kv, tp, pp) <= pool_bytes

    return longest_fitting(fits, 2**53) if pool_bytes > 0 else 0
