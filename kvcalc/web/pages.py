"""HTML for kvcalc web's pages: a GET form whose fields are the CLI command's options (so the URL holds the inputs
and can be shared), the CLI's one-line message beside the field it names, and the View's numbers. Every shown
number carries data-key (its dotted path in the CLI's JSON) and data-value (that JSON value), so a test can compare
the page with `kvcalc CMD --format json` exactly."""

from __future__ import annotations

import json
import math
from html import escape
from urllib.parse import urlencode

from kvcalc.report.svg import chart
from kvcalc.units import fmt_bytes
from kvcalc.web.params import _FALSE, _TRUE, InputError, options
from kvcalc.web.params import keys as option_keys
from kvcalc.web.views import View

PAGES = {  # page -> (title, the options its form shows; any other option still works in the URL)
    "estimate": ("Estimate", ["model", "gpu", "batch", "context", "prompt", "weight_dtype", "kv_dtype", "engine",
                              "tp", "pp", "ep", "attn", "speculate", "memory_utilization"]),
    "compare": ("Compare attention", ["model", "attn", "gpu", "batch", "context", "weight_dtype", "kv_dtype",
                                      "engine", "memory_utilization"]),
    "roofline": ("Roofline", ["model", "gpu", "attn", "batch", "context", "weight_dtype", "kv_dtype", "engine",
                              "speculate"]),
    "capacity": ("Capacity", ["model", "context", "gpu", "batch", "tp", "target_tokens_per_s",
                              "price_per_gpu_hour", "weight_dtype", "kv_dtype", "engine", "pp", "ep",
                              "memory_utilization"]),
    "serve": ("Serve", ["model", "input_len", "output_len", "gpu", "concurrency", "request_rate", "tp", "engine",
                        "weight_dtype", "kv_dtype", "price_per_gpu_hour", "max_ttft_ms", "max_tpot_ms",
                        "disaggregate", "arrivals"]),
    "plan": ("Plan", ["model", "input_len", "output_len", "gpu", "request_rate", "concurrency", "gpu_budget",
                      "max_ttft_ms", "max_tpot_ms", "percentile", "price_per_gpu_hour", "engines", "convert",
                      "disaggregate", "max_gpus_per_replica"]),
}
EXAMPLES = {  # what an empty form offers (the page runs nothing until it is submitted)
    "estimate": {"model": "llama-3-8b"},
    "compare": {"model": "llama-3-8b"},
    "roofline": {"model": "llama-3-8b"},
    "capacity": {"model": "llama-3-8b", "context": "8192"},
    "serve": {"model": "llama-3-8b", "input_len": "1000", "output_len": "200", "concurrency": "1,8,32,128"},
    "plan": {"model": "llama-3-8b", "input_len": "1000", "output_len": "200", "request_rate": "5",
             "max_tpot_ms": "50"},
}


def _default_text(p) -> str:
    d = p.default
    if d is None or callable(d):
        return ""
    return str(getattr(d, "value", d)).lower() if isinstance(d, bool) else str(getattr(d, "value", d))


def _num(v) -> str:
    """A number as a reader wants it: thousands separated, 4 significant digits."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if not isinstance(v, (int, float)):
        return "—" if v is None else str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "unbounded" if v > 0 else "—"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"


def _cell(key: str, v, text: str | None = None) -> str:
    from kvcalc.units import integer_bytes

    v = integer_bytes({key.rsplit(".", 1)[-1]: v}).popitem()[1]  # byte counts whole, as the CLI's JSON has them
    shown = None if isinstance(v, float) and not math.isfinite(v) else v  # JSON's null, as the CLI prints it
    if isinstance(v, str) and text is None:  # words: one line, the whole text on hover
        return (f'<td class="str" data-key="{escape(key)}" data-value="{escape(json.dumps(v))}" '
                f'title="{escape(v)}">{escape(v)}</td>')
    return (f'<td class="num" data-key="{escape(key)}" data-value="{escape(json.dumps(shown))}">'
            f'{escape(text if text is not None else _num(v))}</td>')


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            yield f"{prefix}{k}", v


def form(page: str, query: dict, error: InputError | None) -> str:
    shown = PAGES[page][1]
    by_name = {p.name: p for p in options(page)}
    values = dict(EXAMPLES[page]) if not query else {}
    # each key as the option it sets: a long flag's other name (capacity's gpus is --tp) and an on/off option's
    # negative (plan's no_convert=true is --convert false), so the form shows what the result used (the twentieth
    # audit, W5: --convert had shown true beside a result searched without it)
    known = option_keys(page)
    for key, value in query.items():
        hit = known.get(key.replace("-", "_"))
        if hit is None:
            values[key.replace("-", "_")] = value
            continue
        option, negated = hit
        said = str(value).strip().lower()
        if option.is_flag and said in (*_TRUE, *_FALSE):  # any spelling the API takes (no, 0, off, " false"), as the
            # select's own (the thirty-ninth audit, web 1: convert=no had shown true, and Calculate searched with it)
            value = "true" if (said in _TRUE) != negated else "false"
        values[option.name] = value
    rows = []
    error_placed = False
    for name in shown:
        p = by_name[name]
        flag = p.opts[0]
        value = values.get(name, _default_text(p))
        help_text = escape(p.help or "")
        if p.is_flag:
            options_html = "".join(f'<option value="{o}"{" selected" if str(value).lower() == o else ""}>{o}</option>'
                                   for o in ("true", "false"))
            field = f'<select id="f-{name}" name="{name}" title="{help_text}">{options_html}</select>'
        else:
            field = (f'<input id="f-{name}" name="{name}" value="{escape(str(value))}" title="{help_text}" '
                     f'placeholder="{escape(_default_text(p))}">')
        message = ""
        if error is not None and error.field == flag:
            message = f'<span class="error" id="error-{name}" role="alert">{escape(error.message)}</span>'
            error_placed = True
        rows.append(f'<div class="field{" bad" if message else ""}"><label for="f-{name}">{flag}</label>{field}'
                    f'{message}</div>')
    # options given in the URL that the form does not show, kept for the next Calculate (W5: dropped)
    rows += [f'<input type="hidden" name="{escape(name)}" value="{escape(str(v))}">' for name, v in values.items()
             if name in by_name and name not in shown and str(v) != ""]
    top = ""
    if error is not None and not error_placed:  # a flag not on the form, or none named: above the fields
        top = f'<p class="error" id="error-form" role="alert">{escape(error.message)}</p>'
    return (f'<form id="form" method="get" action="/{page}">{top}{"".join(rows)}'
            f'<div class="actions"><button id="submit" type="submit">Calculate</button></div></form>')


def layout(page: str, body: str) -> str:
    nav = "".join(f'<a href="/{p}"{" class=active" if p == page else ""}>{t}</a>' for p, (t, _) in PAGES.items())
    title = PAGES[page][0] if page in PAGES else page
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kvcalc · {escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/kvcalc.css"><script src="/static/kvcalc.js" defer></script>'
            f'</head><body><header><span class="brand">kvcalc</span><nav>{nav}<a href="/docs">API</a></nav></header>'
            f'<main id="page-{page}">{body}</main><div id="tip" hidden></div></body></html>')


def links(page: str, query: dict) -> str:
    """Share, JSON and (where the command has --format) CSV links, and the command line that prints the same: the
    sixth audit's verification followed the roofline page's CSV link to a 422 (roofline has no --format)."""
    # (explain: the page draws the derivations, the API's JSON and CSV refuse it: the thirty-ninth audit, web 3)
    q = urlencode({k: v for k, v in query.items() if v != "" and k not in ("format", "explain")})
    csv = any(p.name == "format" for p in options(page))
    return (f'<p class="links">Share: <a id="share" href="/{page}?{escape(q)}">this result</a> · '
            f'<a id="json" href="/api/{page}?{escape(q)}">JSON</a> · '
            + (f'<a id="csv" href="/api/{page}?{escape(q + "&" if q else q)}format=csv" download="kvcalc-{page}.csv">'
               f'CSV</a> · <code>kvcalc {page} …  --format json</code> prints the same</p>' if csv else
               f'<code>kvcalc {page} …</code> draws the same</p>'))


def _warnings(view: View) -> str:
    if not view.warnings:
        return ""
    return '<ul class="warnings">' + "".join(f"<li>warning: {escape(w)}</li>" for w in view.warnings) + "</ul>"


def kv_table(obj: dict, table_id: str, skip: tuple = ()) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th>{_cell(k, v)}</tr>" for k, v in _flat(obj)
                   if not k.endswith("_note") and k.split(".")[0] not in skip)
    return f'<table id="{table_id}" class="kv">{rows}</table>'


def rows_table(rows: list[dict], table_id: str, columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(k for r in rows for k, v in r.items()
                                            if not isinstance(v, (dict, list)) and not k.endswith("_note")))
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(f"{i}.{c}", r.get(c)) for c in columns) + "</tr>"
                   for i, r in enumerate(rows))
    return f'<div class="scroll"><table id="{table_id}" class="rows"><tr>{head}</tr>{body}</table></div>'


def memory_bar(m: dict) -> str:
    """The memory one GPU holds as a stacked bar: weights, KV cache, activations, then what is left of the
    usable memory (or how far past it the need goes)."""
    whole = max(m["usable_bytes"], m["required_bytes"])
    parts = [("weights", m["weights_bytes"]), ("kv", m["kv_cache_bytes"]), ("activations", m["activations_bytes"]),
             *([("draft", m["draft_bytes"])] if m.get("draft_bytes") else []),  # --speculate's draft
             ("free", max(m["headroom_bytes"], 0.0))]
    bar = "".join(f'<div class="seg {name}" style="width:{100 * v / whole:.3f}%" data-key="memory.{name}" '
                  f'title="{name}: {fmt_bytes(v)}"></div>' for name, v in parts if v > 0)
    legend = " · ".join(f'<span class="sw {name}"></span>{name} {fmt_bytes(v)}' for name, v in parts)
    usable = f'<div class="usable" style="left:{100 * m["usable_bytes"] / whole:.3f}%" title="usable"></div>'
    verdict = "fits" if m["fits"] else "does not fit"
    return (f'<figure id="memory-bar"><div class="bar">{bar}{usable}</div><figcaption>{legend}; '
            f'{fmt_bytes(m["required_bytes"])} needed of {fmt_bytes(m["usable_bytes"])} usable: '
            f'<b>{verdict}</b></figcaption></figure>')


def estimate_body(view: View) -> str:
    j = view.json
    i, kv, w, mem, dec, pre = j["inputs"], j["kv_cache"], j["weights"], j["memory"], j["decode"], j["prefill"]
    # the scope over several GPUs, as the CLI's table says it (the fortieth audit, outputs 1)
    several = max(i["tensor_parallel"] * i["pipeline_parallel"], i["expert_parallel"]) > 1
    head = [
        ("KV cache per token", "kv_cache.bytes_per_token", kv["bytes_per_token"], fmt_bytes(kv["bytes_per_token"])),
        ("KV cache (batch), total" if several else "KV cache (batch)", "kv_cache.bytes", kv["bytes"],
         fmt_bytes(kv["bytes"])),
        ("Weights, one copy" if several else "Weights", "weights.bytes", w["bytes"], fmt_bytes(w["bytes"])),
        ("Memory required", "memory.required_bytes", mem["required_bytes"], fmt_bytes(mem["required_bytes"])),
        ("Decode step", "decode.ms", dec["ms"], f"{dec['ms']:,.3f} ms"),
        ("Decode throughput", "decode.tokens_per_s", dec["tokens_per_s"], f"{dec['tokens_per_s']:,.1f} tok/s"),
        ("Decode bound", "decode.bound", dec["bound"], dec["bound"]),
        ("Prefill", "prefill.ms", pre["ms"], f"{pre['ms']:,.3f} ms"),
        ("Prefill bound", "prefill.bound", pre["bound"], pre["bound"]),
    ]
    rows = "".join(f"<tr><th>{q}</th>{_cell(k, v, t)}</tr>" for q, k, v, t in head)
    title = (f"{escape(i['model'])} ({escape(i['attention'])}) on {escape(view.extra['display_gpu'])}, "
             f"{escape(i['engine'])} time model — batch {i['batch']:,}, context {i['context']:,}, "
             f"weights {escape(i['weight_dtype'])}, KV {escape(i['kv_dtype'])}")
    steps = "".join(
        f'<li><span class="q">{escape(s["quantity"])}</span> = <code class="formula">{escape(s["formula"])}</code>'
        + (f'<br><span class="eq">= <code>{escape(s["substituted"])}</code></span>' if s["substituted"] else "")
        + f'<br><span class="eq">= <b>{escape(s["result"])}</b></span></li>' for s in view.extra["explain"])
    return (f'<h2 id="result-title">{title}</h2><table id="headline" class="kv">{rows}</table>'
            f'{memory_bar(mem)}<h3>How each number is computed (--explain)</h3><ol id="explain">{steps}</ol>'
            f'<details><summary>Every number (the JSON)</summary>{kv_table(j, "all", skip=("warnings",))}</details>')


def roofline_body(view: View) -> str:
    d = view.json
    lo, hi = d["intensity_range"]
    series = []
    gpus = list(dict.fromkeys(r["gpu"] for r in d["roofs"]))
    dashes = ("", "6 3", "2 3")
    for r in d["roofs"]:
        gi = gpus.index(r["gpu"])
        di = [x["dtype"] for x in d["roofs"] if x["gpu"] == r["gpu"]].index(r["dtype"])
        ridge, peak, bw = r["ridge_flop_per_byte"], r["peak_tflops"], r["bandwidth_GBps"]
        top = max(hi, ridge * 4)
        series.append({"name": f"{r['gpu']} {r['dtype']} roof (ridge {ridge:.0f} FLOP/B)", "kind": "line",
                       "color": _color(gi), "dash": dashes[di % 3],
                       "points": [(lo, bw * lo / 1e3, ""), (ridge, peak, f"{r['gpu']} {r['dtype']} ridge: "
                                                            f"{ridge:.1f} FLOP/B, {peak:,.0f} TFLOP/s"),
                                  (top, peak, "")]})
    for gi, g in enumerate(gpus):
        for op in dict.fromkeys(p["operator"] for p in d["points"]):
            pts = [p for p in d["points"] if p["gpu"] == g and p["operator"] == op]
            series.append({"name": f"{g}: {op}", "kind": "points", "color": _color(gi, op),
                           "points": [(p["intensity_flop_per_byte"], p["tflops"],
                                       f"{p['operator']} · {p['variant']} · batch {p['batch']} · intensity "
                                       f"{p['intensity_flop_per_byte']:,.2f} FLOP/B · {p['time_ms']:,.4f} ms · "
                                       f"{p['tflops']:,.1f} TFLOP/s on {p['gpu']}") for p in pts]})
    svg = chart(series, x_label="arithmetic intensity (FLOP/byte)", y_label="attainable TFLOP/s",
                title=f"{d['model']} decode at context {d['context']:,} ({d['weight_dtype']} weights, "
                      f"{d['kv_dtype']} KV), {d['engine']}", chart_id="roofline-chart", legend_at="bottom-right")
    return (f'<p class="hint">Hover a point: its operator, batch, intensity and time.</p>{svg}'
            f'<h3>Operating points</h3>{rows_table(d["points"], "points")}')


def _color(i: int, op: str | None = None) -> str:
    from kvcalc.report.svg import PALETTE

    shade = ("attention", "linear attention", "projections+MLP", "lm_head", "decode step", "verify step")
    return PALETTE[(i * 3 + (shade.index(op) if op in shade else 0)) % len(PALETTE)]


def frontier_chart(points: list[dict], y_key: str, group_key: str, tpot_ms, ttft_ms, choice=None,
                   chart_id: str = "frontier-chart", title: str = "") -> str:
    groups = list(dict.fromkeys(p[group_key] for p in points))
    series = []
    for gi, g in enumerate(groups):
        pts = sorted((p for p in points if p[group_key] == g and p.get("tokens_per_s_per_user")),
                     key=lambda p: p["tokens_per_s_per_user"])
        series.append({"name": f"{group_key} {g}", "kind": "line", "color": _color(gi),
                       "points": [(p["tokens_per_s_per_user"], p[y_key], _tip(p)) for p in pts]})
    if choice and choice.get("tokens_per_s_per_user"):  # none at one output token (the ninth round, P8: a 500)
        series.append({"name": f"choice: {choice['deployment']}", "kind": "points", "ring": True, "color": "#000",
                       "points": [(choice["tokens_per_s_per_user"], choice[y_key], _tip(choice))]})
    vlines = []
    if tpot_ms and math.isfinite(1e3 / tpot_ms):  # a limit of 1e-306 ms sits at no finite x: said, not drawn (the
        # twentieth audit, W2: the chart's ticks had met infinity, an HTTP 500)
        vlines.append({"x": 1e3 / tpot_ms, "label": f"TPOT limit {tpot_ms:g} ms (points left of it miss it)"})
    note = f'<p class="sla">TTFT limit {ttft_ms:g} ms: points past it are marked no in the table.</p>' if ttft_ms else ""
    return chart(series, x_label="output tokens/s per user (1 / TPOT)", y_label="output tokens/s per GPU",
                 log_x=True, log_y=True, vlines=vlines, chart_id=chart_id, title=title,
                 legend_at="bottom-left") + note


def _tip(p: dict) -> str:
    what = p.get("deployment") or f"TP {p.get('tensor_parallel')}, {p.get('concurrency'):g} in flight"
    return (f"{what} · TTFT {_num(p.get('ttft_ms'))} ms · TPOT {_num(p.get('tpot_ms'))} ms · "
            f"{_num(p.get('tokens_per_s_per_user'))} tok/s/user")


def serve_body(view: View) -> str:
    if "frontier" in view.extra:
        p = view.params
        svg = frontier_chart(view.json, "output_tokens_per_s_per_gpu", "tensor_parallel", p["max_tpot_ms"],
                             p["max_ttft_ms"], title=f"{view.json[0]['model']} on {view.json[0]['gpu']}")
        return f"<h3>Throughput frontier</h3>{svg}{rows_table(view.json, 'rows')}"
    return kv_table(view.json, "result")


def plan_body(view: View) -> str:
    r = view.json
    head = (f'<p id="choice">Choice: <b>{escape(r["choice"]["deployment"])}</b></p>' if r["choice"] else
            f'<p id="choice" class="error">{escape(r["choice_note"] or "no configuration meets the limits")}</p>')
    svg = frontier_chart(r["frontier"], "replica_output_tokens_per_s_per_gpu", "gpu", r["limits"]["max_tpot_ms"],
                         r["limits"]["max_ttft_ms"], choice=r["choice"],
                         title=f"{r['model']}: Pareto frontier of every deployment searched")
    s = r["searched"]
    return (f"{head}<h3>Pareto frontier and the limits</h3>{svg}<h3>The choice and runners-up</h3>"
            f"{rows_table(view.extra['rows'], 'rows')}<p>searched {s['configurations']:,} configurations of "
            f"{s['deployments']:,} deployments</p><details><summary>The frontier</summary>"
            f"{rows_table(r['frontier'], 'frontier')}</details>")


BODIES = {"estimate": estimate_body, "compare": lambda v: rows_table(v.json, "rows"), "roofline": roofline_body,
          "capacity": lambda v: kv_table(v.json, "result"), "serve": serve_body, "plan": plan_body}


def page(name: str, query: dict, view: View | None, error: InputError | None) -> str:
    title = PAGES[name][0]
    body = f"<h1>{escape(title)}</h1>{form(name, query, error)}"
    if view is not None:
        body += f'<section id="result">{_warnings(view)}{links(name, query)}{BODIES[name](view)}</section>'
    elif not query:
        body += '<p class="hint">Fill in the form: the result opens on a URL you can share.</p>'
    return layout(name, body)


def docs(schema: dict) -> str:
    """The API's documentation from its OpenAPI schema, as a page that needs nothing from the network."""
    items = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = "".join(f"<li><code>{escape(p['name'])}</code>{' (required)' if p.get('required') else ''}: "
                             f"{escape(p.get('description', ''))}</li>" for p in op.get("parameters", []))
            items.append(f'<section class="op"><h3><code>{method.upper()} {escape(path)}</code></h3>'
                         f'<p>{escape(op.get("description") or op.get("summary") or "")}</p><ul>{params}</ul></section>')
    body = ('<h1>API</h1><p>The OpenAPI schema: <a id="openapi" href="/openapi.json">/openapi.json</a>. Each '
            '/api/CMD answers what <code>kvcalc CMD --format json</code> prints (<code>format=csv</code>: what '
            '--format csv prints); bad input is HTTP 422 with {"error": message, "field": "--flag"}.</p>'
            + "".join(items))
    return layout("docs", body)
