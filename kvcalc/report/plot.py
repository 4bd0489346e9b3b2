"""Roofline charts (matplotlib, imported only here).

roofline() draws, log-log, each accelerator's memory roof (bandwidth x intensity) up to each compute roof
(the dense peak of each relevant dtype), marks the ridge points, and places the decode operating points of
each operator class (attention, projections and MLP, lm_head) for every attention variant and batch.
A point sits at its arithmetic intensity, at its FLOPs over its operators' speed-of-light time, each operator at
the roofs of the dtype it runs at (the one estimate reports: an fp8 checkpoint's attention runs at the bf16 peak), so
no point sits above its own roof; a class whose operators are bound differently sits below it. With a measured
engine (--engine vllm|sglang|trtllm, or auto where the GPU has a profile) at the throughput its kernels are expected
to reach, FLOPs / expected time, which shows how far below the roof real kernels run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kvcalc.dtypes import activation_dtype, matmul_compute_dtype
from kvcalc.estimator import precision
from kvcalc.formulas.forward import decode_ops
from kvcalc.formulas.roofline import ridge_point, step_time
from kvcalc.rewrite import rewrite_attention
from kvcalc.specs.catalog import load_gpu, load_model, resolve_engine

CLASSES = {"attention": ("attention",), "linear attention": ("linear_attention",),
           "projections+MLP": ("projection", "mlp"), "lm_head": ("lm_head",)}
MARKERS = {"attention": "o", "linear attention": "D", "projections+MLP": "s", "lm_head": "^",
           "decode step": "X", "verify step": "*"}  # the order labels list the classes in (and, once, their marker)
# roofline(): a marker per attention variant, a colour per GPU, and a fill per operator class (filled, hollow, half)
VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
FILLS = {"attention": "full", "linear attention": "left", "projections+MLP": "none", "lm_head": "bottom",
         "decode step": "full", "verify step": "none"}  # the last two with --speculate: whole steps, side by side


def operating_points(model, attn: Sequence, batch: Sequence[int], context: int, weight_dtype="bf16", kv_dtype="bf16",
                     speculate: str | None = None):
    """(variant, batch, class, flops, bytes, intensity, ops) of each operator class in one decode step; with
    speculate, instead the whole plain decode step and the whole verify step of k + 1 tokens a sequence."""
    base, p, out = load_model(model), precision(weight_dtype, kv_dtype), []
    k = None
    if speculate:
        from kvcalc.speculation import parse

        k = parse(speculate).verify_tokens
    for variant in attn:
        spec = rewrite_attention(base, variant)
        for b in batch:
            ops = decode_ops(spec, b, context, p)
            for label, classes in (CLASSES.items() if k is None else ()):  # with speculate: whole steps only
                chosen = [o for o in ops if o.op_class in classes]
                if not chosen:  # a model without linear-attention layers, or without softmax attention
                    continue
                flops = sum(o.cost.flops for o in chosen)
                bytes_ = sum(o.cost.bytes for o in chosen)
                out.append((variant or spec.attention.kind, b, label, flops, bytes_, flops / bytes_, chosen))
            if k is not None:
                from kvcalc.formulas.speculative import verify_ops

                for label, step in (("decode step", ops), ("verify step", verify_ops(spec, b, context, k, p))):
                    flops, bytes_ = sum(o.cost.flops for o in step), sum(o.cost.bytes for o in step)
                    out.append((variant or spec.attention.kind, b, label, flops, bytes_, flops / bytes_, step))
    return out


def roof(hw, dtype: str, x_lo: float, x_hi: float):
    """(x, y in TFLOP/s, ridge) of one roof: bandwidth x intensity up to the ridge, the dense peak beyond it."""
    peak = hw.peak_flops(dtype)
    ridge = ridge_point(peak, hw.bandwidth_Bps)
    return [x_lo, ridge, max(x_hi, ridge * 4)], [hw.bandwidth_Bps * x_lo / 1e12, peak / 1e12, peak / 1e12], ridge


def compute_dtypes(hw, weight_dtype: str) -> list[str]:
    return sorted({activation_dtype(weight_dtype), matmul_compute_dtype(weight_dtype, hw.peak_tflops.available(), hw.vendor)})


def point_tflops(ops, flops, hw, weight_dtype: str, kv_dtype: str, profile) -> float:
    """Attainable TFLOP/s of one operating point: flops / the time step_time gives its operators, at 100 % of the
    roofs of each operator's own compute dtype without a profile, else as the engine's kernels are expected to run.
    (the twelfth audit, E2: one peak, the weights' matmul dtype, had put an fp8 checkpoint's bf16 attention at
    1,448 TFLOP/s on an H100 whose bf16 peak is 989.5, faster than its speed of light)"""
    step = step_time(ops, hw, weight_dtype, speed_of_light=profile is None, profile=profile, kv_dtype=kv_dtype)
    return flops / step.seconds / 1e12


MAX_ROOFLINE_POINTS = 1000  # decode operating points one roofline chart draws


def roofline_inputs(gpus, model, attn, batch, context, weight_dtype, kv_dtype, speculate, *, flags: bool = False,
                    engine: str | None = None):
    """The roofline's arguments checked before any work (one KvcalcError naming the argument, as the Python API
    spells it, or as the CLI flag with flags=True: audit U5), the weight format resolved as estimate resolves it
    (auto, U1), and the decode operating points with the x range that holds them:
    (gpus, weight_dtype, points, x_lo, x_hi). roofline() draws them; report/roofline_data.py returns them as data."""
    from kvcalc.checks import (MAX_BATCH, MAX_TOKENS, check_int, check_optional_str, check_ref, check_sequence,
                               check_speculate, past_positions)
    from kvcalc.estimator import check_dtypes, resolve_weight_dtype

    def name(arg):
        return {"gpus": "--gpu"}.get(arg, f"--{arg}") if flags else arg

    gpus = check_sequence(name("gpus"), gpus, check_ref)
    attn = check_sequence(name("attn"), attn, check_optional_str)
    batch = check_sequence(name("batch"), batch, lambda arg, b: check_int(arg, b, 1, MAX_BATCH))
    check_int(name("context"), context, 1, MAX_TOKENS)
    from kvcalc.errors import KvcalcError

    drawn = len(gpus) * len(attn) * len(batch)
    if drawn > MAX_ROOFLINE_POINTS:  # a chart of more is unreadable, and its file grows past what it shows (the
        # twentieth audit, W6: 6,000 points, 6.6 MB of SVG in 15 s from one command line)
        raise KvcalcError(f"{name('batch')}: {len(gpus)} GPUs x {len(attn)} attention variants x {len(batch)} batches "
                          f"are {drawn:,} points; a roofline draws at most {MAX_ROOFLINE_POINTS:,} (kvcalc sweep "
                          "tabulates more)")
    from kvcalc.option_values import first_repeat

    # one GPU under two names had drawn every point twice (the thirty-fourth audit, API 6)
    twice = first_repeat(load_gpu(g).name for g in gpus)
    if twice is not None:
        raise KvcalcError(f"{name('gpus')}: {twice} listed twice; give each GPU once")
    check_optional_str(name("speculate"), speculate)
    check_speculate(speculate, name("speculate"))
    check_dtypes(weight_dtype, kv_dtype, engine)  # a KV format the engine stores (the eighth audit, V4)
    spec = load_model(check_ref(name("model"), model))
    weight_dtype = resolve_weight_dtype(weight_dtype, spec)
    import warnings

    from kvcalc.errors import CapacityWarning
    from kvcalc.speculation import no_mtp_module

    # as estimate, capacity and sweep warn: a context past the model's positions (the twelfth audit, E3), and a
    # hypothetical MTP module (the fifteenth, E1)
    for why in (past_positions(spec, context), no_mtp_module(spec, speculate)):
        if why:
            warnings.warn(why, CapacityWarning, stacklevel=3)
    points = operating_points(model, attn, batch, context, weight_dtype, kv_dtype, speculate)
    xs = [pt[5] for pt in points]
    return gpus, weight_dtype, points, min(xs + [1.0]) / 4, max(xs + [1e3]) * 4


def roofline(gpus: Sequence = ("h100-sxm",), model="llama-3-8b", *, attn: Sequence = (None,),
             batch: Sequence[int] = (1, 8, 64, 256), context: int = 4096, weight_dtype: str = "auto",
             kv_dtype: str = "bf16", measured=None, engine: str = "roofline", speculate: str | None = None,
             flags: bool = False):
    """A Figure with the roofs of each GPU and the decode operating points; `measured` is a DataFrame with
    arithmetic_intensity and achieved_tflops columns (kvcalc validate's CSV). speculate (estimate's --speculate
    forms) plots the whole plain decode step and the whole verify step instead, whose intensity is up to k + 1
    times higher. flags: errors name the CLI's flags (--batch), else the keywords (batch)."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global backend to switch, in a script or a notebook
    )

    # arguments checked before any work: one KvcalcError naming the argument (audit U5)
    gpus, weight_dtype, points, x_lo, x_hi = roofline_inputs(gpus, model, attn, batch, context, weight_dtype,
                                                             kv_dtype, speculate, engine=engine, flags=flags)
    wanted = ("arithmetic_intensity", "achieved_tflops")
    if measured is not None and not all(c in getattr(measured, "columns", ()) for c in wanted):
        # a list or a frame without the columns had been a TypeError or a pandas KeyError mid-drawing (the
        # thirty-fourth audit, API 4)
        from kvcalc.errors import KvcalcError

        raise KvcalcError("measured: expected a DataFrame with arithmetic_intensity and achieved_tflops columns "
                          "(kvcalc validate's CSV)")
    if measured is not None:  # each point as read_measured takes a CSV's (the thirty-eighth audit, sweep 3: strings
        # had been drawn as categories on the log axes, NaN and negative points dropped in silence)
        for c in wanted:
            bad = next(((i, cell) for i, cell in zip(measured.index, measured[c]) if _positive(cell) is None), None)
            if bad is not None:
                from kvcalc.checks import shown_value
                from kvcalc.errors import KvcalcError

                raise KvcalcError(f"measured: row {shown_value(bad[0])}, column {c}: expected a positive number, got "
                                  f"{shown_value(bad[1])}")
    fig = Figure(figsize=(10, 6.5))
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    columns: dict[tuple, tuple[set, set, list]] = {}  # points of one class at one intensity, on every GPU
    variant_marker = {v: VARIANT_MARKERS[n % len(VARIANT_MARKERS)]
                      for n, v in enumerate(dict.fromkeys(pt[0] for pt in points))}
    for gi, g in enumerate(gpus):
        hw = load_gpu(g)
        profile = resolve_engine(engine, hw)
        color = f"C{gi}"
        for di, dtype in enumerate(compute_dtypes(hw, weight_dtype)):
            x, y, ridge = roof(hw, dtype, x_lo, x_hi)
            # The ridge value goes in the legend, not beside the marker: ridges of several GPUs sit close together.
            ax.plot(x, y, color=color, linestyle=("-", "--", ":")[di % 3],
                    label=f"{hw.name} {dtype} roof (ridge {ridge:.0f} FLOP/B)", gid=f"roof:{hw.name}:{dtype}")
            ax.plot([ridge], [y[1]], marker="D", color=color, gid=f"ridge:{hw.name}:{dtype}")
        for variant, b, label, flops, bytes_, x, ops in points:
            y = point_tflops(ops, flops, hw, weight_dtype, kv_dtype, profile)  # with a profile: below the roof
            ax.plot([x], [y], marker=variant_marker[variant], fillstyle=FILLS[label], color=color, linestyle="none",
                    alpha=0.75, markersize=7, gid=f"point:{hw.name}:{variant}:{b}:{label}")
            # Columns within 12 % of intensity (0.05 in log10) share a label; it sits at the column's first x.
            key = (label, round(math.log10(x) * 20))
            variants, batches, ys = columns.setdefault(key, (set(), set(), [x]))
            variants.add(variant)
            batches.add(b)
            ys.append(y)
    # One label per column of points (one intensity), beside its highest point, a line per operator class: it
    # holds for every GPU's point below it (they share the intensity; colour tells the GPU). Neighbouring columns
    # on the flat compute roof alternate above and below it.
    by_x: dict[int, list] = {}  # intensity keys within 0.1 decade of a column's first key join that column
    for (label, xkey), (variants, batches, ys) in sorted(columns.items(), key=lambda kv: kv[0][1]):
        start = next((k for k in by_x if xkey - k <= 2), xkey)
        by_x.setdefault(start, []).append((label, variants, batches, ys))
    labels = []
    for xkey in sorted(by_x):
        group = sorted(by_x[xkey], key=lambda g: list(MARKERS).index(g[0]))
        x, top = group[0][3][0], max(max(g[3][1:]) for g in group)
        text = "\n".join(f"{label}: {','.join(sorted(v))} b{','.join(map(str, sorted(b)))}" for label, v, b, _ in group)
        labels.append(ax.annotate(text, (x, top), textcoords="offset points", xytext=(6, 6), fontsize=8,
                                  va="bottom", gid=f"label:{x:.3g}"))
    if measured is not None and len(measured):
        _measured_points(ax, measured, load_gpu(gpus[0]), x_lo, x_hi)
    for variant, marker in variant_marker.items():
        ax.plot([], [], marker=marker, color="gray", linestyle="none", label=f"variant: {variant}")
    present = {label for label, _ in columns}
    for label, fill in FILLS.items():
        if label in present:
            ax.plot([], [], marker="o", fillstyle=fill, color="gray", linestyle="none", label=f"class: {label}")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)", fontsize=11)
    ax.set_ylabel("attainable TFLOP/s", fontsize=11)
    ax.tick_params(labelsize=10)
    name = load_model(model).name
    where = "at the roofs" if engine == "roofline" else f"as {engine} runs them where profiled"
    ax.set_title(f"Roofline: {name} decode at context {context:,}\n({weight_dtype} weights, {kv_dtype} KV), {where}",
                 fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    for label in labels:
        label.set_in_layout(False)  # placed after the layout, which must not move under them
    fig.tight_layout()
    place_labels(fig, ax, labels)
    return fig


def place_labels(fig, ax, labels) -> None:
    """Move each annotation, in order, to the first spot beside its point (right or left, above or below, then
    further up or down) whose box meets no label placed before it and stays inside the axes; where none does, the
    spot that overlaps least. Measured in display units on the Agg renderer, as the saved figure draws them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    spots = [(dx, dy, ha, va) for step in range(8) for dy, va in ((6 + 14 * step, "bottom"), (-6 - 14 * step, "top"))
             for dx, ha in ((6, "left"), (-6, "right"))]
    placed: list = []

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    for label in labels:
        best: tuple[float, int, int, str, str] | None = None
        for dx, dy, ha, va in spots:
            label.xyann = (dx, dy)
            label.set_horizontalalignment(ha)
            label.set_verticalalignment(va)
            box = label.get_window_extent(renderer).padded(1)
            outside = (max(0.0, inside.x0 - box.x0) + max(0.0, box.x1 - inside.x1)
                       + max(0.0, inside.y0 - box.y0) + max(0.0, box.y1 - inside.y1))
            cost = sum(overlap(box, other) for other in placed) + outside * box.height
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, va)
            if cost == 0:
                break
        assert best is not None  # spots is never empty
        _, dx, dy, ha, va = best
        label.xyann = (dx, dy)
        label.set_horizontalalignment(ha)
        label.set_verticalalignment(va)
        placed.append(label.get_window_extent(renderer).padded(1))


def _positive(cell) -> float | None:
    """A measured point's coordinate: a positive finite number (the axes are logarithmic), a numeral in a CSV cell, or
    None; not a bool."""
    import math

    if isinstance(cell, bool):
        return None
    try:
        value = float(cell)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def read_measured(path, flag: str = "--measured"):
    """The points of a kvcalc validate CSV to overlay, as a DataFrame of arithmetic_intensity and achieved_tflops
    (and dtype and device where the file has them). Each point needs a positive finite number in both (the axes
    are logarithmic) and a non-empty dtype and device; anything else is one line naming the file, line and column."""
    import csv
    import io
    from pathlib import Path

    import pandas as pd

    from kvcalc.errors import KvcalcError
    from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file

    path = Path(path)
    raw = read_regular_file(path, "a kvcalc validate CSV", MAX_TABLE_BYTES)
    numbers, labels = ("arithmetic_intensity", "achieved_tflops"), ("dtype", "device")
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        missing = set(numbers) - set(reader.fieldnames or ())
        if missing:
            raise KvcalcError(f"{flag}: {path} lacks column(s) {', '.join(sorted(missing))}")
        present = [c for c in labels if c in (reader.fieldnames or ())]
        for row in reader:
            where = f"{flag}: {path}: line {reader.line_num}, column"
            point: dict[str, float | str] = {}
            for c in numbers:
                cell = row.get(c)
                value = _positive(cell)
                if value is None:
                    raise KvcalcError(f"{where} {c}: expected a positive number, got {cell!r}")
                point[c] = value
            for c in present:
                cell = row.get(c)
                if cell is None or not cell.strip():
                    raise KvcalcError(f"{where} {c}: empty; expected the {c} the point was measured with")
                point[c] = cell.strip()
            rows.append(point)
    except (UnicodeDecodeError, csv.Error) as e:
        raise KvcalcError(f"{flag}: cannot read {path}: {str(e).splitlines()[0]}") from None
    return pd.DataFrame(rows, columns=[*numbers, *present])


def _measured_points(ax, measured, hw, x_lo: float, x_hi: float) -> None:
    """kvcalc validate's points, each against the roof of its own dtype on the device it was measured on: the
    first --gpu. A dtype whose roof is not drawn yet (fp32 on a CPU, say) gets its own dashed-dotted roof."""
    dtypes = sorted(set(measured["dtype"])) if "dtype" in measured else ["bf16"]
    for dtype in dtypes:
        rows = measured[measured["dtype"] == dtype] if "dtype" in measured else measured
        device = ", ".join(sorted(set(rows["device"]))) if "device" in rows else "device"
        if dtype in hw.peak_tflops.available() or dtype in ("bf16", "fp16"):
            x, y, ridge = roof(hw, dtype, x_lo, x_hi)
            ax.plot(x, y, color="black", linestyle="-.", linewidth=1,
                    label=f"{hw.name} {dtype} roof (ridge {ridge:.0f}), for the measured", gid=f"measured-roof:{dtype}")
        ax.plot(rows["arithmetic_intensity"], rows["achieved_tflops"], "x", color="black", markersize=7,
                label=f"measured ({dtype}, {device})", gid=f"measured:{dtype}")


def validation(df, hw_ref):
    """Measured points (filled) over predicted ones (hollow) on the device's roofs; df is validate's CSV."""
    from matplotlib.figure import Figure

    hw = load_gpu(hw_ref)
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    x = df["arithmetic_intensity"]
    x_lo, x_hi = x.min() / 4, x.max() * 4
    for di, dtype in enumerate(sorted(set(df["dtype"]))):
        ax.plot(*roof(hw, dtype, x_lo, x_hi)[:2], color="gray", linestyle=("-", "--")[di % 2], label=f"{hw.name} {dtype} roof", gid=f"roof:{dtype}")
    for ci, (case, group) in enumerate(df.groupby("case")):
        predicted = group["flops"] / group["predicted_ms"] / 1e9
        ax.plot(group["arithmetic_intensity"], predicted, "o", mfc="none", color=f"C{ci}", label=f"{case} predicted",
                gid=f"predicted:{case}")
        ax.plot(group["arithmetic_intensity"], group["achieved_tflops"], "o", color=f"C{ci}", label=f"{case} measured",
                gid=f"measured:{case}")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"kvcalc validate on {hw.display_name}: measured (filled) vs predicted (hollow)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def serve_frontier(rows: list[dict]):
    """Output tokens/s per GPU against tokens/s per user (1 / TPOT), one line per tensor-parallel degree, the
    configuration `best` ringed: the chart serving teams compare engines and deployments with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for tp in sorted({r["tensor_parallel"] for r in rows}):
        line = sorted((r for r in rows if r["tensor_parallel"] == tp and r["tokens_per_s_per_user"]),
                      key=lambda r: r["tokens_per_s_per_user"])
        if not line:
            continue
        xs = [r["tokens_per_s_per_user"] for r in line]
        ys = [r["output_tokens_per_s_per_gpu"] for r in line]
        ax.plot(xs, ys, marker="o", label=f"TP {tp}")
        for r, x, y in zip(line, xs, ys):
            ax.annotate(f"{r['concurrency']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    best = [r for r in rows if r.get("best")]
    if best:
        b = best[0]
        ax.scatter([b["tokens_per_s_per_user"]], [b["output_tokens_per_s_per_gpu"]], s=240, facecolors="none",
                   edgecolors="black", linewidths=1.5, label=f"best within limits (TP {b['tensor_parallel']}, "
                   f"{b['concurrency']:g} in flight)", zorder=5)
    first = rows[0]
    ax.set_xlabel("output tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title(f"{first['model']} on {first['gpu']}, {first['input_len']:,} in / {first['output_len']:,} out "
                 "(labels: requests in flight)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def simulation_timeline(timeline: dict, title: str = ""):
    """kvcalc serve --simulate --plot: requests queued and running over time (left), and the CDFs of TTFT and
    end-to-end latency over requests (right)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, cdf) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.step(timeline["t_s"], timeline["running"], where="post", label="running")
    ax.step(timeline["t_s"], timeline["waiting"], where="post", label="waiting")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("requests")
    ax.legend()
    for name, key in (("TTFT", "ttft_s"), ("end-to-end", "e2e_s")):
        x = np.sort(np.asarray(timeline[key])[np.isfinite(timeline[key])]) * 1e3
        if len(x):
            cdf.plot(x, np.arange(1, len(x) + 1) / len(x), label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("fraction of requests")
    cdf.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plan_frontier(result: dict):
    """kvcalc plan's frontier: output tokens/s per GPU of one replica against tokens/s per user, the TPOT limit as
    a vertical line (points left of it miss it), the choice ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    front = sorted(result["frontier"], key=lambda r: r["tokens_per_s_per_user"])
    concurrency = result["workload"].get("concurrency")
    reach = f", at most {math.ceil(concurrency - 1e-9):,} in flight a replica" if concurrency is not None else ""
    ax.plot([r["tokens_per_s_per_user"] for r in front], [r["replica_output_tokens_per_s_per_gpu"] for r in front],
            marker="o", label=f"Pareto frontier (all deployments searched{reach})")
    last = None
    for r in front:  # label a point only where it stands clear of the last labelled one
        x, y = r["tokens_per_s_per_user"], r["replica_output_tokens_per_s_per_gpu"]
        if last is None or x > last[0] * 1.15 or y < last[1] * 0.8:
            ax.annotate(f"{r['gpu']} {r['engine']} {r['layout']}", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
            last = (x, y)
    tpot = result["limits"]["max_tpot_ms"]
    if tpot:
        ax.axvline(1e3 / tpot, color="red", linestyle="--", label=f"TPOT limit {tpot:g} ms")
    c = result["choice"]
    if c:
        ax.scatter([c["tokens_per_s_per_user"]], [c["replica_output_tokens_per_s_per_gpu"]], s=240,
                   facecolors="none", edgecolors="black", linewidths=1.5, zorder=5,
                   label=f"choice: {c['deployment']}")
    w = result["workload"]
    ax.set_xlabel("output tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU (one replica)")
    ax.set_title(f"{result['model']}, {w['input_len']:,} in / {w['output_len']:,} out", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

