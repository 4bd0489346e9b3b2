"""Charts as inline SVG text, for a browser page without a plotting library (kvcalc web's roofline and frontiers).

A point carries its hover text in a data-tip attribute; kvcalc/web/static/kvcalc.js shows it beside the pointer.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        ticks = [10.0 ** k for k in decades if lo <= 10.0 ** k <= hi]
        if len(ticks) < 3:  # under two decades: 2 and 5 times each power of ten as well
            ticks = [m * 10.0 ** k for k in decades for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]
        return ticks
    raw = (hi - lo) / 5 or 1.0
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:g}"


def chart(series: list[dict], *, x_label: str, y_label: str, log_x: bool = True, log_y: bool = True,
          vlines: tuple = (), title: str = "", width: int = 800, height: int = 460, chart_id: str = "chart",
          legend_at: str = "top-left") -> str:
    """An SVG chart. series: {"name", "kind": "line" or "points", "points": [(x, y, tip or "")], "color"?,
    "dash"?, "ring"?}; vlines: {"x", "label", "color"?} (a limit drawn across the chart); legend_at: top-left,
    top-right, bottom-left or bottom-right."""
    left, right, top, bottom = 70, 20, 34 if title else 14, 46
    xs = [x for s in series for x, _, _ in s["points"]] + [v["x"] for v in vlines]
    ys = [y for s in series for _, y, _ in s["points"]]
    if not xs or not ys:
        return f'<svg id="{chart_id}" class="chart" width="{width}" height="60"><text x="10" y="30">nothing to draw</text></svg>'

    def span(vals, log):
        vals = [v for v in vals if v > 0] if log else vals
        lo, hi = min(vals), max(vals)
        if log:
            lo, hi = lo / 1.6, hi * 1.6
        else:
            pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
            lo, hi = min(0.0, lo - pad), hi + pad
        return lo, hi

    (x0, x1), (y0, y1) = span(xs, log_x), span(ys, log_y)
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        f = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if log_x else (x - x0) / (x1 - x0)
        return left + f * pw

    def sy(y):
        f = (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) if log_y else (y - y0) / (y1 - y0)
        return top + ph - f * ph

    out = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if title:
        out.append(f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" class="title">{escape(title)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in _ticks(x0, x1, log_x):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" class="tick">{_tick_text(t)}</text>')
    for t in _ticks(y0, y1, log_y):
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_tick_text(t)}</text>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 8}" text-anchor="middle" class="label">{escape(x_label)}</text>'
               f'<text transform="translate(16 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" '
               f'class="label">{escape(y_label)}</text>')
    out.append(f'<clipPath id="{chart_id}-clip"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath>')
    legend = []
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        pts = [(x, y, tip) for x, y, tip in s["points"] if (x > 0 or not log_x) and (y > 0 or not log_y)]
        if s["kind"] == "line":
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in pts)
            dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash} '
                       f'clip-path="url(#{chart_id}-clip)"/>')
        for x, y, tip in pts:
            if s["kind"] == "points" or tip:
                r = 9 if s.get("ring") else 5 if s["kind"] == "points" else 3
                fill = "none" if s.get("ring") else color
                out.append(f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}" fill="{fill}" '
                           f'stroke="{color if not s.get("ring") else "#000"}" fill-opacity="0.75" '
                           f'data-series="{escape(s["name"])}" data-tip="{escape(tip)}"/>')
        legend.append((s["name"], color))
    for v in vlines:
        x, color = sx(v["x"]), v.get("color", "#d62728")
        out.append(f'<line class="limit" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="{color}" '
                   f'stroke-dasharray="6 4" stroke-width="2" data-tip="{escape(v["label"])}"/>')
        legend.append((v["label"], color))
    longest = max((len(name) for name, _ in legend), default=0) * 6.2 + 30  # 11px text: ~6.2 px a character
    for i, (name, color) in enumerate(legend):
        y = top + 14 + 16 * i if legend_at.startswith("top") else top + ph - 8 - 16 * (len(legend) - 1 - i)
        x = left + 10 if legend_at.endswith("left") else left + pw - longest
        out.append(f'<rect x="{x:.0f}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 16:.0f}" y="{y}" class="legend">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
