"""--explain: each headline number's formula, with this model's values substituted.

Results are read from the Estimate (computed once, in kvcalc/formulas); this module only shows the work.
"""

from __future__ import annotations

from typing import NamedTuple

from kvcalc.dtypes import bytes_per_element
from kvcalc.estimator import Estimate, Phase
from kvcalc.formulas.kernel_time import efficiency, kernel_seconds
from kvcalc.formulas.kv import linear_state_bytes
from kvcalc.specs import HardwareSpec, ModelSpec
from kvcalc.specs.catalog import resolve_engine
from kvcalc.specs.profile import EngineProfile
from kvcalc.units import fmt_bytes, fmt_count, fmt_flops, fmt_ms


class Step(NamedTuple):
    quantity: str
    formula: str
    substituted: str
    result: str


def _kv_lines(e: Estimate, m: ModelSpec) -> list[Step]:
    from kvcalc.dtypes import bytes_per_element
    from kvcalc.formulas.kv import SPARSE_FP8_TILE, STATE_MIN_BYTES, indexer_bytes_per_token_per_layer

    a, L = m.attention, m.attention_layers
    # the KV format's bytes an element (the tenth audit, E12: a ratio of the layer's bytes to its elements had shown
    # 2.22917 B for DeepSeek-V3.2's latent beside its indexer key, and 0 B for an all-linear model's state)
    b_kv = bytes_per_element(e.inputs.kv_dtype)
    index = indexer_bytes_per_token_per_layer(a) if L else 0.0
    plus_index = (" + d_I + 4 (the indexer's fp8 key and fp32 scale)", f" + {index:g} B") if index else ("", "")
    if not L:  # every layer linear: no per-token cache, only the fixed state below
        per_layer = Step("KV per token per layer", "no layer keeps a per-token cache (all linear attention)", "0", "0 B")
    elif a.kind == "mla" and a.sparse_top_k is not None and b_kv == 1:  # FlashMLA's sparse fp8 record (formulas/kv.py)
        per_layer = Step("KV per token per layer", "d_c + 4 * ceil(d_c / 128) + 2 * d_r (FlashMLA's fp8 record)"
                         + plus_index[0], f"{a.kv_lora_rank} + 4 * {-(-a.kv_lora_rank // SPARSE_FP8_TILE)} + 2 * "
                         f"{a.qk_rope_head_dim} B" + plus_index[1], fmt_bytes(e.kv_cache.bytes_per_token_per_layer))
    elif a.kind == "mla":
        per_layer = Step("KV per token per layer", "(d_c + d_r) * b_kv" + plus_index[0],
                         f"({a.kv_lora_rank} + {a.qk_rope_head_dim}) * {b_kv:g} B" + plus_index[1],
                         fmt_bytes(e.kv_cache.bytes_per_token_per_layer))
    else:
        per_layer = Step("KV per token per layer", "2 * g * d_h * b_kv",
                         f"2 * {a.num_kv_heads} * {a.head_dim} * {b_kv:g} B", fmt_bytes(e.kv_cache.bytes_per_token_per_layer))
    per_token = Step("KV per token", "L_attn * per layer (the layers with softmax attention)",
                     f"{L} * {e.kv_cache.bytes_per_token_per_layer:,.0f} B", fmt_bytes(e.kv_cache.bytes_per_token))
    B, S = e.inputs.batch, e.inputs.context
    lines = [per_layer, per_token]
    state, plus, plus_value = 0.0, "", ""
    la = m.linear_attention
    if la is not None:
        state = linear_state_bytes(m, b_kv)
        b_state = max(b_kv, STATE_MIN_BYTES)
        if la.recurrent_state_bytes is None and la.conv_kernel <= 1:  # no convolution (MiniMax's lightning
            # attention): no conv term (the thirty-third audit, attention 5: "0 * 24,576" channels had been shown)
            formula = ("L_lin * n_v * d_k * d_v * max(b_kv, 2) (constant in context; the state stays in 16 bits "
                       "under an 8-bit cache)")
            value = (f"{m.linear_layers} * {la.num_value_heads} * {la.key_head_dim} * {la.value_head_dim} * "
                     f"{b_state:g} B")
        elif la.recurrent_state_bytes is None:
            formula = ("L_lin * (n_v * d_k * d_v + (K - 1) * conv channels) * max(b_kv, 2) (constant in context; the "
                       "state stays in 16 bits under an 8-bit cache)")
            value = (f"{m.linear_layers} * ({la.num_value_heads} * {la.key_head_dim} * {la.value_head_dim} + "
                     f"{max(la.conv_kernel - 1, 0)} * {la.conv_channels:,}) * {b_state:g} B")
        else:  # the recurrent matrices in their own dtype (Nemotron-H's float32 SSM state)
            formula = ("L_lin * (n_v * d_k * d_v * b_ssm + (K - 1) * conv channels * max(b_kv, 2)) (constant in "
                       "context; the SSM state in the engines' float32, the conv's inputs in 16 bits)")
            value = (f"{m.linear_layers} * ({la.num_value_heads} * {la.key_head_dim} * {la.value_head_dim} * "
                     f"{la.recurrent_state_bytes:g} B + {max(la.conv_kernel - 1, 0)} * {la.conv_channels:,} * "
                     f"{b_state:g} B)")
        lines.append(Step("state per sequence", formula, value, fmt_bytes(state)))
        plus, plus_value = " + B * state", f" + {B} * {state:,.0f} B"
    if a.sliding_window is None:
        cache = Step("KV cache", "B * S * per token" + plus, f"{B} * {S:,} * {e.kv_cache.bytes_per_token:,.0f} B"
                     + plus_value, fmt_bytes(e.kv_cache.bytes))
    else:
        W = a.sliding_window
        cache = Step("KV cache", "B * (L_global * S + L_window * min(S, W)) * per layer" + plus,
                     f"{B} * ({m.global_layers} * {S:,} + {m.window_layers} * min({S:,}, {W:,})) * "
                     f"{e.kv_cache.bytes_per_token_per_layer:,.0f} B" + plus_value, fmt_bytes(e.kv_cache.bytes))
    return [*lines, *_kv_copies(e, m, cache, state)]


def _kv_copies(e: Estimate, m: ModelSpec, cache: Step, state: float) -> list[Step]:
    """The batch's cache as one copy, then on all the GPUs together where tensor parallelism keeps some of it whole
    on several GPUs (kv_cache.bytes, formulas/parallel.py kv_bytes_all_gpus; the fortieth audit, outputs 1)."""
    from kvcalc.formulas.parallel import kv_shard_fraction

    tp, B = e.inputs.tensor_parallel, e.inputs.batch
    one = B * e.kv_cache.bytes_per_sequence
    if e.kv_cache.bytes <= one * (1 + 1e-9):  # every part split over the GPUs: one copy
        return [cache]
    r_kv = tp * kv_shard_fraction(m, tp) if m.attention_layers else 1.0
    # the state's copies as the estimate counts them (formulas/parallel.py: its value heads split, some of Mamba-2's
    # conv channels whole), from its own figure rather than a second copy of that rule
    r_state = (e.kv_cache.bytes - r_kv * (one - B * state)) / (B * state) if state else 1.0
    whole = "MLA's latent whole on each GPU" if m.attention.kind == "mla" else "a whole KV head on each GPU past g"
    if m.linear_attention is None:
        formula = f"one copy * {'tp' if m.attention.kind == 'mla' else 'tp / g'} ({whole})"
        value = f"{fmt_bytes(one)} * {r_kv:g}"
    else:
        formula = f"KV * copies + B * state * copies ({whole}; the state split by its value heads)"
        value = f"{fmt_bytes(one - B * state)} * {r_kv:g} + {B} * {state:,.0f} B * {r_state:.4g}"
    return [cache._replace(quantity="KV cache, one copy", result=fmt_bytes(one)),
            Step("KV cache, all GPUs", formula, value, fmt_bytes(e.kv_cache.bytes))]


def _measured_time_step(name: str, ph: Phase, op, hw: HardwareSpec, profile: EngineProfile) -> Step:
    """The slowest operator's measured curve with its per-kernel sizes substituted."""
    section, key = op.time_model.split(" ", 1)[1].split(".")
    c = getattr(profile, section)[key]
    k = op.kernels
    f, b = op.flops / k, op.bytes / k
    e_c = efficiency(f, c.compute_efficiency, c.compute_half_GFLOP * 1e9, c.size_exponent)
    e_m = efficiency(b, c.memory_efficiency, c.memory_half_MB * 1e6, c.size_exponent)
    items = f" + {op.work_items_per_kernel:,.0f} * {c.per_item_ns:g} ns" if c.per_item_ns else ""
    # an older release's MoE factor multiplies the routed experts' time (the sixth audit: the line left it out, so its
    # substitution gave 10.7 ms and printed 22.8): the operator's time over the curve's, which the profile rebuilt
    # here (the release's default, without the era) times
    curve_ms = k * kernel_seconds(c, f, b, hw.peak_flops(op.dtype), hw.memory_bandwidth_GBps * 1e9,
                                  op.work_items_per_kernel) * 1e3
    scale = op.ms / curve_ms if op.name == "moe/routed" and curve_ms > 0 else 1.0
    factor = f" x {scale:.3g} (MoE kernel era)" if abs(scale - 1) > 5e-3 else ""
    return Step(
        f"{name} time", "sum over operators of kernels * (t0 + n * per_item + smoothmax(F / (peak * e_c(F)), "
        "B / (BW * e_m(B)))), e(x) = e_max x^a / (x^a + x_half^a), per kernel; "
        + ("measured" if profile.provenance == "measured" else f"{profile.provenance} (from {profile.transferred_from})")
        + f" curves of the {profile.engine} {profile.engine_version} profile {profile.gpu}.{profile.engine}",
        f"{len(ph.operators)} operators; largest, {op.name} ({op.time_model}): {k} x ({c.t0_us:.3g} us{items} + "
        f"smoothmax_p={c.overlap_exponent:g}({fmt_flops(f)} / ({hw.peak_flops(op.dtype) / 1e12:g} TFLOPS * {e_c:.3f}), "
        f"{fmt_bytes(b)} / ({hw.memory_bandwidth_GBps:g} GB/s * {e_m:.3f}))){factor} = {fmt_ms(op.ms)}",
        fmt_ms(ph.ms))


def _phase_lines(name: str, ph: Phase, hw: HardwareSpec, tokens: tuple[str, str],
                 profile: EngineProfile | None) -> list[Step]:
    slowest = max(ph.operators, key=lambda o: o.ms)
    peak = hw.peak_flops(slowest.dtype) / 1e12
    eff_c, eff_m = hw.efficiency.compute, hw.efficiency.memory
    if profile is not None and slowest.time_model != "roofline":
        time_step = _measured_time_step(name, ph, slowest, hw, profile)
    else:
        time_step = Step(
            f"{name} time", "sum over operators of max(FLOPs / (peak * eff_c), bytes / (BW * eff_m))",
            f"{len(ph.operators)} operators; largest, {slowest.name}: max({fmt_flops(slowest.flops)} / "
            f"({peak:g} TFLOPS * {eff_c:g}), {fmt_bytes(slowest.bytes)} / ({hw.memory_bandwidth_GBps:g} GB/s * {eff_m:g}))"
            f" = {fmt_ms(slowest.ms)}", fmt_ms(ph.ms))
    return [
        Step(f"{name} bytes", "weights + KV read + KV write + activations",
             f"{fmt_bytes(ph.weight_bytes)} + {fmt_bytes(ph.kv_read_bytes)} + {fmt_bytes(ph.kv_write_bytes)} + "
             f"{fmt_bytes(ph.activation_bytes)}", fmt_bytes(ph.bytes)),
        time_step,
        Step(f"{name} speed of light", "the same sum with eff = 1", "", fmt_ms(ph.speed_of_light_ms)),
        Step(f"{name} tokens/s", f"{tokens[0]} / time", f"{tokens[1]} / {fmt_ms(ph.ms)}", f"{ph.tokens_per_s:,.1f}"),
        Step(f"{name} intensity", "FLOPs / bytes, against ridge = peak / BW",
             f"{fmt_flops(ph.flops)} / {fmt_bytes(ph.bytes)}; ridge {ph.ridge_point:,.0f} FLOP/B",
             f"{ph.arithmetic_intensity:,.1f} FLOP/B ({ph.bound}-bound)"),
    ]


def explain(e: Estimate, model: ModelSpec, hw: HardwareSpec) -> list[Step]:
    w, mem = e.weights, e.memory
    lines = _kv_lines(e, model)
    b_w = bytes_per_element(e.inputs.weight_dtype)
    if b_w >= 2 or abs(w.bytes - w.params * b_w) < 1:
        lines.append(Step("Weights", "params * b_w", f"{fmt_count(w.params)} * {b_w:g} B", fmt_bytes(w.bytes)))
    else:  # quantised: what the checkpoint keeps in bf16 follows from the bytes
        kept = (w.params * b_w - w.bytes) / (b_w - 2)
        lines.append(Step(
            "Weights", f"quantised params * b_w ({e.inputs.weight_dtype}, scales included) + kept * 2 B  (kept in "
            "bf16: embeddings, lm_head, norms, routers, layer classes the checkpoint leaves unquantised)",
            f"{fmt_count(w.params - kept)} * {b_w:.6g} B + {fmt_count(kept)} * 2 B", fmt_bytes(w.bytes)))
    draft = (" + the draft's weights and KV cache", f" + {fmt_bytes(mem.draft_bytes)}") if mem.draft_bytes else ("", "")
    lines.append(Step("Memory required", "weights + KV cache at max(S, P) + activations of one prefill chunk" + draft[0],
                      f"{fmt_bytes(mem.weights_bytes)} + {fmt_bytes(mem.kv_cache_bytes)} + {fmt_bytes(mem.activations_bytes)}"
                      + draft[1], fmt_bytes(mem.required_bytes)))
    lines.append(Step("Memory usable", "capacity * utilisation",
                      f"{fmt_bytes(mem.capacity_bytes)} * {e.inputs.memory_utilization:g}", fmt_bytes(mem.usable_bytes)))
    i = e.inputs
    profile = resolve_engine(i.engine, hw)
    if profile is not None:
        lines.append(_profile_step(profile))
    lines += _phase_lines("Decode", e.decode, hw, ("B", f"{i.batch}"), profile)
    lines += _phase_lines("Prefill", e.prefill, hw, ("B * P", f"{i.batch} * {i.prompt:,}"), profile)
    if e.decode.overhead_ms:  # the release band's time outside the kernels (engines/overhead.py, --engine-version)
        lines.append(Step("Engine overhead", "per step: scheduler, sampler, Python between kernels; in the decode and "
                          "prefill times above, never in the speed of light",
                          (i.profile or "").split("; overhead ")[-1].split("; MoE kernels x")[0],
                          fmt_ms(e.decode.overhead_ms)))
    era = (i.profile or "").partition("; MoE kernels x")[2]  # an older release's kernel era (--engine-version)
    if era:
        factor, _, source = era.partition(" (")
        lines.append(Step("MoE kernel era", "the fused-MoE kernel's time on the curves above times the factor of the "
                          "release's kernel era; never in the speed of light", source.removesuffix(")"), f"x{factor}"))
    if e.speculative is not None:
        lines += _speculative_lines(e)
    return lines


def _profile_step(profile: EngineProfile) -> Step:
    """Whose curves time the operators: this part's own measured tables, or a sibling's carried over (and fitted)."""
    if profile.provenance == "measured":
        return Step("Engine profile", "measured: curves fitted to this part's own kernel tables",
                    profile.sources[0], profile.label)
    what = {"transferred": "transferred: a measured sibling's kernel curves, evaluated on this part's own roofs; "
                           "collectives for this part's links",
            "fitted": "fitted: transferred, then every kernel's time scaled to published runs on this part"}
    return Step("Engine profile", what[profile.provenance], profile.method, profile.label)


def _speculative_lines(e: Estimate) -> list[Step]:
    s, i = e.speculative, e.inputs
    what = f"{s.method}" + (f" ({s.draft_model})" if s.draft_model else "")
    if s.alpha is not None:
        tokens = Step("Tokens per verify step", "(1 - alpha^(k+1)) / (1 - alpha)",
                      f"(1 - {s.alpha:g}^{s.k + 1}) / (1 - {s.alpha:g})", f"{s.tokens_per_step:.3f}")
    else:
        tokens = Step("Tokens per verify step", "the accepted length given (a tree's tau)", "", f"{s.tokens_per_step:.3f}")
    return [
        tokens,
        Step(f"Speculative step, {what}", "verify (B x (k+1) tokens, or a tree's nodes) + draft",
             f"{s.verify_ms:.3f} ms + {s.draft_ms:.3f} ms", f"{s.verify_ms + s.draft_ms:.3f} ms"),
        Step("Time per token", "(verify + draft) / tokens per step",
             f"{s.verify_ms + s.draft_ms:.3f} ms / {s.tokens_per_step:.3f}", fmt_ms(s.ms_per_token)),
        Step("Speed-up", "plain decode step / time per token", f"{e.decode.ms:.3f} ms / {s.ms_per_token:.3f} ms",
             f"{s.speedup:.2f}x" + (f"; 1x or less from batch {s.breakeven_batch}" if s.breakeven_batch else
                                    "; still above 1x at batch 4096")),
        Step("Verify intensity", "FLOPs / bytes of the verify pass", f"batch {i.batch}, {s.verify_tokens} tokens a sequence",
             f"{s.verify_arithmetic_intensity:,.1f} FLOP/B (plain decode {e.decode.arithmetic_intensity:,.1f})"),
    ]
