"""--speculate: which speculative-decoding scheme, and how often its drafts are accepted.

    draft=MODEL,k=4,alpha=0.7   a separate draft model (alpha required: it depends on the pair)
    eagle,k=4[,alpha=0.707]     EAGLE's one-layer draft; alpha 0.707 by default, the i.i.d. acceptance whose k = 3
                                chain yields 2.56 tokens a step (1 + a + a^2 + a^3 = 2.560), the median of the
                                EAGLE-3 references vLLM pins in tests/v1/spec_decode/test_acceptance_length.py
                                (vllm-project/vllm 029ba375; k = 3, MT-Bench, temperature 0: Llama-3.1-8B-Instruct
                                2.60, gpt-oss-20b 2.56, Qwen3-8B 2.26, each with RedHatAI's released speculator head;
                                left out, its fourth, nm-testing's test head for Qwen3-VL-30B-A3B-FP8 at 1.35). Until
                                the fortieth audit it was 0.8, the EAGLE paper's draft accuracy with the target's own
                                features, which later chain positions do not see: k = 3 gave 2.95 where vLLM
                                measures 2.26-2.60
    medusa=4[,alpha=0.6]        Medusa heads; alpha 0.6 by default: the EAGLE paper puts Medusa's draft accuracy at
                                about 0.6
    mtp=1[,alpha=0.875]         DeepSeek-V3's multi-token prediction modules (depth D = k); alpha 0.875 by default,
                                the middle of the 85-90 % acceptance of the second token in the DeepSeek-V3 report
                                (section 5.4.3): the first draft's only, so a depth beyond the checkpoint's MTP layers
                                (one for every family kvcalc knows) needs alpha=, accepted= or rate= (mtp_depth_refusal)
    ngram=4,alpha=0.5           k tokens looked up in the request's own tokens (vLLM's ngram method, prompt lookup):
                                no draft weights, cache or GPU work; alpha required, as it is the data's
    accepted=TAU                the measured mean accepted length, tokens a verify step yields with the bonus token,
                                replacing the i.i.d. formula, for a chain or a tree: vLLM's "Mean acceptance length"
                                (vllm/v1/spec_decode/metrics.py, 1 + accepted / drafts) and SGLang's "accept len"
                                (its scheduler adds each sequence's bonus token) are this
    rate=R                      vLLM's "Avg Draft acceptance rate" (accepted / drafted tokens) as a fraction: a
                                chain's accepted = 1 + k R. It is not alpha: at i.i.d. 0.8 and k = 4 vLLM logs 59.0 %,
                                and alpha=0.59 would give 2.26 tokens a step where the run made 3.36. Only vLLM's first
                                "Per-position acceptance rate" is an i.i.d. alpha
    tree=N                      a tree of candidates (Medusa, EAGLE): the verify pass runs N tokens a sequence (the
                                tree's nodes with its root) instead of k + 1; k stays its depth. Give accepted= with
                                it: a tree's acceptance is measured, not i.i.d. EAGLE grows the tree a level a step:
                                each of its k draft steps runs ceil((N - 1) / k) tokens a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvcalc.checks import shown_value
from kvcalc.errors import KvcalcError
from kvcalc.formulas.speculative import (
    METHODS,
    cut_verify_tokens,
    eagle_draft_width,
    expected_tokens,
    implied_alpha,
)

# eagle: the i.i.d. alpha of vLLM's median pinned EAGLE-3 reference at k = 3 (2.56 tokens a step; module docstring)
DEFAULT_ALPHA = {"eagle": 0.707, "medusa": 0.6, "mtp": 0.875}
DEFAULT_K = {"draft": 4, "eagle": 4, "medusa": 4, "mtp": 1, "ngram": 4}
MAX_K = 64
MAX_TREE = 1024  # candidate tokens a tree verifies per sequence (Medusa's and EAGLE's trees hold 26 to 64)


@dataclass(frozen=True)
class Speculation:
    method: str
    k: int
    alpha: float | None
    accepted: float | None
    draft: str | None = None
    tree: int | None = None
    default_alpha: bool = False  # alpha is the method's DEFAULT_ALPHA, neither alpha=, accepted= nor rate= given

    @property
    def verify_tokens(self) -> int:
        """Tokens the verify pass runs per sequence: the tree's nodes, or the k drafts and the last accepted token."""
        return self.tree if self.tree is not None else self.k + 1

    @property
    def draft_width(self) -> int:
        """Tokens each EAGLE draft step adds per sequence: a tree's N - 1 candidates over its k levels (1 for a
        chain; Medusa's heads run once on the last hidden state whatever the tree)."""
        return eagle_draft_width(self.tree, self.k) if self.tree is not None and self.method == "eagle" else 1

    def tokens_per_step(self) -> float:
        return self.accepted if self.accepted is not None else expected_tokens(self.alpha, self.k)

    def yields(self) -> tuple[float, ...]:
        """Tokens a verify step yields by how many of its verify_tokens a step budget let through (index 0 to
        verify_tokens; the last is tokens_per_step): a cut chain keeps its first drafts (formulas/speculative.py
        cut_verify_tokens) at alpha, or at the alpha implied by accepted=; a cut tree as a chain of its depth's
        drafts at that alpha, capped at its full yield (which nodes survive a cut is not modelled)."""
        full = self.tokens_per_step()
        alpha = self.alpha if self.alpha is not None else implied_alpha(full, self.k)
        return tuple(full if s == self.verify_tokens else min(cut_verify_tokens(alpha, min(s, self.k + 1)), full)
                     for s in range(self.verify_tokens + 1))


# Model families whose checkpoints ship multi-token-prediction layers (config.json num_nextn_predict_layers or
# mtp_num_hidden_layers): DeepSeek-V3 / R1 / V3.2 (1 layer), GLM-4.5 (glm4_moe, 1), Qwen3-Next (1), MiMo-7B (mimo,
# num_nextn_predict_layers 1). Kimi K2, though of DeepSeek-V3's structure, sets 0.
MTP_FAMILIES = ("deepseek_v3", "deepseek_v32", "glm4_moe", "qwen3_next", "mimo")


def no_mtp_module(spec, speculate: str | None) -> str | None:
    """Why --speculate mtp times a module the model does not ship, or None (the seventh audit, B8/C7: Qwen3-32B's TPOT
    had halved with a DeepSeek-V3 module and acceptance that no engine could run on it)."""
    method = (speculate or "").split(",")[0].split("=")[0].strip().lower()
    if method == "mtp" and getattr(spec, "mtp_layers", None) == 0:
        return (f"--speculate mtp: {spec.name}'s checkpoint ships no multi-token-prediction layers "
                "(num_nextn_predict_layers 0), which no engine can run; this times a hypothetical module of one "
                "decoder layer at DeepSeek-V3's acceptance (0.875)")
    if method != "mtp" or spec.family in MTP_FAMILIES:
        return None
    return (f"--speculate mtp: {spec.name} ({spec.family or 'no family'}) ships no multi-token-prediction layers that "
            "kvcalc knows of (DeepSeek-V3/V3.2, GLM-4.5, Qwen3-Next and MiMo do); this times a hypothetical module "
            "of one decoder layer at DeepSeek-V3's acceptance (0.875), which no engine can load for it")


def mtp_depth_refusal(spec, sp: Speculation) -> str | None:
    """Why mtp=k at the default acceptance cannot be timed, or None: a depth k beyond the MTP layers the checkpoint
    ships (spec.mtp_layers; one for DeepSeek-V3/V3.2, GLM-4.5, Qwen3-Next and MiMo, and for the hypothetical module
    no_mtp_module warns of) runs its one layer k times, each draft fed the previous one's output (vLLM's
    deepseek_mtp, SGLang's NextN), and 0.875 is the acceptance of the first draft only (DeepSeek-V3 report, 5.4.3).
    Later drafts are accepted less: vLLM warns so at start-up (vllm/config/speculative.py, "Enabling
    num_speculative_tokens > 1 will run multiple times of forward on same MTP layer, which may result in lower
    acceptance rate"), and nebius/MTP-DeepSeek-V3-0324's model card (LK losses, arXiv:2602.23881) measured DeepSeek-V3's
    own MTP module at k = 7 on MT-bench, HumanEval and GSM8K at 3.20 tokens a step, where 0.875 at every draft gives
    5.25 (the fortieth audit, speculate 1: 1.81x where about 1.10x is measured). No later-draft acceptance is
    published for it, so the user gives one."""
    if sp.method != "mtp" or not sp.default_alpha:
        return None
    layers = spec.mtp_layers or 1
    if sp.k <= layers:
        return None
    return (f"--speculate mtp={sp.k}: {spec.name}'s checkpoint ships {layers} multi-token-prediction layer"
            f"{'s' if layers > 1 else ''}, run {sp.k} times for {sp.k} drafts, and the default acceptance 0.875 "
            "(DeepSeek-V3 report, 5.4.3) is the first draft's; later drafts are accepted less (vLLM's "
            "vllm/config/speculative.py warns so; nebius/MTP-DeepSeek-V3-0324 measured 3.20 tokens a step at k = 7, "
            "where 0.875 at every draft gives 5.25): give accepted= (the engine's mean acceptance length), rate= or "
            "alpha=")


def draft_past_context(draft, context: int) -> str | None:
    """Why a draft model's acceptance does not hold at this context, or None: vLLM caps the draft's max_model_len at
    the draft's own (SpeculativeConfig._maybe_override_draft_max_model_len), so past its max_position_embeddings the
    draft is out of its range (the thirty-first audit, speculate 4: llama-3-8b drafting at 32K, with no word)."""
    longest = getattr(draft, "max_position_embeddings", None) if draft is not None else None
    if not longest or context <= longest:
        return None
    return (f"--speculate draft={draft.name}: the draft's context ends at {longest:,} tokens "
            f"(max_position_embeddings), before this run's {context:,}: engines cap the draft there, and the "
            "acceptance given does not hold past it")


def unsupported_with(engine: str, pp: int, profile=None, speculate: str | None = None) -> str | None:
    """Why `engine` does not run this speculative decoding (SGLang: Medusa) or any in pipeline-parallel stages, or None
    where it does: vLLM's
    draft and MTP modules fail at start-up or at run time under --pipeline-parallel-size > 1 through its 0.25-0.29
    releases (vllm-project/vllm issues #49355 and #52069; vllm-project/recipes issue #875); SGLang's server_args
    check refuses pp_size > 1 with a speculative algorithm unless disaggregation_mode is prefill; TensorRT-LLM's PyTorch
    executor refuses a separate draft model (its one-model MTP under pp is not established either way). speculate:
    the --speculate text, whose method decides TensorRT-LLM's case. profile: the engine
    profile `engine` resolved to, whose engine is the one that runs (--engine auto: vLLM's where it has one)."""
    if profile is not None:
        engine = profile.engine
    method = (speculate or "").split(",")[0].split("=")[0].strip().lower()
    if engine == "sglang" and method == "medusa":
        # the thirty-first audit, speculate 3: SGLang's SpeculativeAlgorithm (python/sglang/srt/speculative/
        # spec_info.py at ee567f18) is DFLASH, EAGLE, EAGLE3, FROZEN_KV_MTP, STANDALONE or NGRAM: no Medusa heads
        return ("--speculate medusa: SGLang has no Medusa decoding (its speculative algorithms: EAGLE, EAGLE3, "
                "STANDALONE draft models, NGRAM, FROZEN_KV_MTP, DFLASH): these times are for a method it does not run")
    if engine == "vllm" and pp > 1:
        return (f"--speculate with --pp {pp}: vLLM does not start speculative decoding under pipeline parallelism "
                "(vllm-project/vllm #49355, #52069): these times are for a layout it does not run")
    if engine == "trtllm" and pp > 1 and method == "draft":  # the sixth audit's verification (V15)
        return (f"--speculate with --pp {pp}: TensorRT-LLM's PyTorch executor refuses a draft model under pipeline "
                "parallelism (tensorrt_llm/_torch/pyexecutor/py_executor.py: \"Drafting is not supported for selected "
                "executor loop. Please disable disagg/pipeline parallelism scheduler.\"; NVIDIA/TensorRT-LLM #9009): "
                "these times are for a layout it does not run")
    if engine == "sglang" and pp > 1:  # the sixth audit: plan had chosen, and --emit launched, such a layout
        return (f"--speculate with --pp {pp}: SGLang refuses speculative decoding under pipeline parallelism outside "
                "its disaggregated prefill mode (python/sglang/srt/server_args.py check_server_args: \"PP + "
                "speculative decoding is only supported in disaggregated prefill mode\"; earlier releases: "
                "\"Pipeline parallelism is not compatible with overlap schedule, speculative decoding, mixed chunked "
                "prefill\"): these times are for a layout it does not run")
    return None


def _number(key: str, value: str, lo: float, hi: float, integer: bool = False):
    try:
        if not value.isascii():  # the fifth audit: k=٣ had been read as 3
            raise ValueError(value)
        x = int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise KvcalcError(f"--speculate: {key} expects {kind}, got {shown_value(value)}") from None
    if not lo <= x <= hi:
        raise KvcalcError(f"--speculate: {key} must be between {lo:g} and {hi:g}, got {shown_value(value)}")
    return x


def parse(text: str) -> Speculation:
    """'eagle,k=4,alpha=0.8' and the like into a Speculation (see the module docstring)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise KvcalcError(f"--speculate: expected a method ({', '.join(METHODS)}), got {shown_value(text)}")
    head, _, value = items[0].partition("=")
    if head not in METHODS:
        raise KvcalcError(f"--speculate: unknown method {shown_value(head)}; expected one of {', '.join(METHODS)}")
    k, draft = DEFAULT_K[head], None
    if head == "draft":
        if not value:
            raise KvcalcError("--speculate: draft=MODEL names the draft model, e.g. draft=llama-3.2-1b,k=4,alpha=0.7")
        draft = value
    elif head in ("medusa", "mtp", "ngram") and value:
        k = _number(head, value, 1, MAX_K, integer=True)
    elif value:
        raise KvcalcError(f"--speculate: {head} takes no value; use {head},k=N")
    alpha = accepted = tree = rate = None
    seen: set[str] = set()
    for item in items[1:]:
        key, _, value = item.partition("=")
        if key in seen:  # the third audit: eagle,k=4,k=5 had kept the last
            raise KvcalcError(f"--speculate: {key} given twice; give each setting once")
        seen.add(key)
        if key == "k":
            k = _number("k", value, 1, MAX_K, integer=True)
        elif key == "alpha":
            alpha = _number("alpha", value, 0, 1)
        elif key == "accepted":
            accepted = _number("accepted", value, 1, MAX_K + 1)
        elif key == "tree":
            tree = _number("tree", value, 2, MAX_TREE, integer=True)
        elif key == "rate":
            rate = _number("rate", value, 0, 1)
        else:
            raise KvcalcError(f"--speculate: unknown setting {shown_value(key)}; expected k, alpha, accepted, rate or "
                              "tree")
    if rate is not None and tree is not None:  # vLLM's rate counts k drafted tokens a step: a chain's
        raise KvcalcError("--speculate: rate= is a chain's average draft acceptance rate (accepted = 1 + k x rate); a "
                          "tree takes its measured mean accepted length as accepted=")
    if tree is not None and (head not in ("medusa", "eagle") or accepted is None):
        raise KvcalcError("--speculate: tree=N is for medusa and eagle, with accepted= (a tree's measured mean "
                          "accepted length)")
    if tree is not None and tree < k + 1:
        raise KvcalcError(f"--speculate: tree={tree} has fewer nodes than a chain of depth k = {k} (k + 1 = {k + 1})")
    if alpha is not None and accepted is not None:  # the sixth audit: alpha was reported, accepted was used
        raise KvcalcError("--speculate: alpha= and accepted= both set the tokens a verify step yields; give one")
    if rate is not None and (alpha is not None or accepted is not None):
        raise KvcalcError("--speculate: rate= sets accepted = 1 + k x rate, as alpha= and accepted= set the tokens a "
                          "verify step yields; give one")
    if rate is not None:  # vLLM's "Avg Draft acceptance rate", accepted / drafted tokens, each draft k tokens
        # (vllm/v1/spec_decode/metrics.py SpecDecodingLogging.log): mean acceptance length 1 + k x rate
        accepted = 1 + k * rate
    defaulted = alpha is None and accepted is None
    if defaulted:
        if head == "draft":
            raise KvcalcError("--speculate: a draft model needs alpha= (its per-token acceptance rate with this "
                              "target), accepted= or rate=")
        if head == "ngram":  # how often the request repeats itself: the data's, not the method's
            raise KvcalcError("--speculate: ngram needs alpha= (how often a looked-up token is accepted on your "
                              "data: high for code edits and RAG, low for open chat), accepted= or rate=")
        alpha = DEFAULT_ALPHA[head]
    if accepted is not None and accepted > k + 1:
        raise KvcalcError(f"--speculate: accepted={accepted:g} exceeds k + 1 = {k + 1}")
    return Speculation(head, k, alpha, accepted, draft, tree, default_alpha=defaulted)


def load_draft(ref: str):
    """The draft model draft=MODEL names, its errors naming --speculate draft= (the sixth audit: they named --model,
    which the user had given right, or no flag at all)."""
    from kvcalc.specs.catalog import load_model

    try:
        return load_model(ref)
    except KvcalcError as e:
        text = str(e)
        raise KvcalcError("--speculate draft=: " + (text[len("--model: "):] if text.startswith("--model: ") else text)
                          ) from None
