"""kvcalc's engine memory rules against the engines' own start-up logs (validation/engine-memory/: vllm.csv and
vllm-more.csv for vLLM, sglang.csv, trtllm.csv; `kvcalc validate --engine-memory` takes one file or the folder).

Each row is one public log with the settings it ran under, scored by the code `capacity --engine X` runs
(kvcalc/engines/memory.py); only the device's visible memory comes from the log (the GPU spec's where the log prints
none), as it does for the engine. kvcalc predicts what the log prints: KV tokens, the available KV memory and the
maximum concurrency (vLLM), the weights where logged; errors are (predicted - logged) / logged [%]. A row's headline
error is its maximum concurrency's where logged, else its KV tokens', else its available memory's.

Roles: `fit` rows set a release band's constant of vLLM's rule (the sampler's bytes a logit, non-torch memory at TP
1 and what TP > 1 adds on NVLink: fit_constants) and are reported apart; `held-out` rows set nothing; `excluded`
rows have settings kvcalc cannot represent, and the `excluded` column says why. Every row is scored leave-one-source-
out: the band constants are refitted without the rows of the scored row's source (the repository, or the issue or
pull request, its URL names), falling back to the nearest band where its own has no other source. The fit uses
the fit rows of what is scored: pass the folder for the figures docs/validation.md quotes. vLLM's columns:
`model_runner` is the runner the log shows (v0: the V0 worker; v1: GPUModelRunner; v2: Model Runner V2); `sampler`
"flashinfer" where the log says "Using FlashInfer for top-p & top-k sampling"; `ep` the expert-parallel size (tp x dp
GPUs; empty: 1); `link` "pcie" where vLLM's custom all-reduce is off (no P2P, or across nodes) whatever the spec's
interconnect; `vllm` starts with the release, which picks the bands; `logged_weights_GiB`, `logged_peak_GiB` and
`logged_non_torch_GiB` the log's breakdown ('Model loading took', the activation/torch peak, non-torch memory).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from urllib.parse import urlparse

from kvcalc.engines.memory import (
    check_vllm_version,
    kvcalc_budget,
    sglang_memory,
    trtllm_memory,
    vllm_memory,
)
from kvcalc.errors import KvcalcError
from kvcalc.estimator import check_dtypes, precision
from kvcalc.formulas import engine_memory as em
from kvcalc.specs.catalog import load_gpu, load_model
from kvcalc.specs.files import MAX_TABLE_BYTES, is_folder, read_csv_ledger, read_regular_file

GiB = 1024**3
COLUMNS = ("source", "vllm", "model", "gpu", "visible_GiB", "tp", "pp", "gpu_memory_utilization", "max_model_len",
           "max_num_batched_tokens", "max_num_seqs", "weight_dtype", "kv_dtype", "logged_available_GiB",
           "logged_kv_tokens", "logged_max_concurrency", "role", "model_runner")
NUMBERS = ("tp", "pp", "gpu_memory_utilization")
LOGGED = ("visible_GiB", "max_model_len", "max_num_batched_tokens", "max_num_seqs", "logged_available_GiB",
          "logged_kv_tokens", "logged_max_concurrency", "ep", "logged_weights_GiB", "logged_peak_GiB",
          "logged_non_torch_GiB")  # empty where not logged (settings: the engine's default)
SGLANG_COLUMNS = ("source", "sglang", "model", "gpu", "visible_GiB", "tp", "pp", "mem_fraction_static",
                  "context_length", "weight_dtype", "kv_dtype", "logged_weights_GB", "logged_kv_tokens",
                  "logged_avail_after_load_GB", "role")
SGLANG_LOGGED = ("visible_GiB", "ep", "mem_fraction_static", "context_length", "logged_weights_GB",
                 "logged_kv_tokens", "logged_avail_after_load_GB")
TRTLLM_COLUMNS = ("source", "trtllm", "model", "gpu", "visible_GiB", "tp", "pp", "free_gpu_memory_fraction",
                  "max_seq_len", "max_num_tokens", "weight_dtype", "kv_dtype", "logged_available_GiB",
                  "logged_kv_GiB", "logged_kv_tokens", "role")
TRTLLM_LOGGED = ("visible_GiB", "ep", "free_gpu_memory_fraction", "max_seq_len", "max_num_tokens",
                 "logged_total_GiB", "logged_available_GiB", "logged_kv_GiB", "logged_kv_tokens")
ROLES = ("fit", "held-out", "excluded")
WEIGHTS_TARGET_PCT = 2.0  # the target: weights within 2 % on every row


def _read_one(path: Path) -> list[dict]:
    """One ledger file's rows, each tagged with its engine (by the header's second column: vllm, sglang, trtllm)."""
    # the header from the file as the ledger reader checks it (a regular file within MAX_TABLE_BYTES; the
    # thirty-seventh audit, fuzz 3: a 300 MB file had been read whole first, and an unreadable path had crashed)
    data = read_regular_file(path, "a memory ledger CSV", MAX_TABLE_BYTES)
    head = data.decode("utf-8-sig", errors="replace").split("\n", 1)[0].split(",")
    engine = head[1].strip() if len(head) > 1 else ""
    if engine == "sglang":
        rows = read_csv_ledger(path, "an SGLang memory ledger CSV", SGLANG_COLUMNS, numbers=("tp", "pp"),
                               optional_numbers=SGLANG_LOGGED, non_negative=SGLANG_LOGGED)
    elif engine == "trtllm":
        rows = read_csv_ledger(path, "a TensorRT-LLM memory ledger CSV", TRTLLM_COLUMNS, numbers=("tp", "pp"),
                               optional_numbers=TRTLLM_LOGGED, non_negative=TRTLLM_LOGGED)
    else:
        engine = "vllm"
        rows = read_csv_ledger(path, "a vLLM memory ledger CSV", COLUMNS, numbers=NUMBERS, optional_numbers=LOGGED,
                               non_negative=LOGGED)
    for row in rows:
        row["engine"] = engine
        if row["role"] not in ROLES:
            raise KvcalcError(f"{path}: row {row.get('source')}: role expected one of {', '.join(ROLES)}, "
                              f"got {row['role']!r}")
    return rows


def read_rows(path: Path) -> list[dict]:
    """The rows of one memory ledger CSV, or of every *.csv in a folder (sorted by name)."""
    path = Path(path)
    if is_folder(path):
        files = sorted(path.glob("*.csv"))
        if not files:
            raise KvcalcError(f"--engine-memory: {path}: no *.csv ledger in this folder")
        return [row for f in files for row in _read_one(f)]
    return _read_one(path)


def source_of(url: str) -> str:
    """The source a row's URL names, which leave-one-source-out drops together: 'owner/repo#N' for a GitHub issue
    or pull request, 'owner/repo' for a file in a repository, else the web site's host."""
    u = urlparse(url.strip())
    parts = [p for p in u.path.split("/") if p]
    if u.netloc.endswith("github.com") and len(parts) >= 2:
        repo = f"{parts[0]}/{parts[1]}".lower()
        if len(parts) >= 4 and parts[2] in ("issues", "pull"):
            return f"{repo}#{parts[3]}"
        return repo
    return u.netloc.lower() or url


def _num(row: dict, key: str) -> float | None:
    cell = (row.get(key) or "").strip()
    return float(cell) if cell else None


def _or(value: float | None, default: float) -> float:
    """A logged setting, or the engine's default where the cell is empty (a 0 stays 0, to be refused)."""
    return default if value is None else value


def _layout(row: dict, spec) -> tuple[int, int, int]:
    """(tp, pp, ep) of a ledger row, checked as capacity checks its flags: whole numbers of GPUs from 1 to MAX_GPUS,
    no more pipeline stages than the model has layers (the thirty-second audit, validate 2: pp 1e9 had hung, pp 100
    on a 94-layer model had been scored at +40,344 %, tp -1 and 2.5 scored too)."""
    from kvcalc.checks import MAX_GPUS
    from kvcalc.estimator import check_pp

    counts = []
    for key, given in (("tp", _num(row, "tp")), ("pp", _num(row, "pp")), ("ep", _num(row, "ep"))):
        x = 1.0 if given is None and key == "ep" else given
        if x is None or x != int(x) or not 1 <= x <= MAX_GPUS:
            raise KvcalcError(f"{key}: expected a whole number of GPUs from 1 to {MAX_GPUS}, got {row.get(key)!r:.20}")
        counts.append(int(x))
    check_pp(counts[1], spec)
    return counts[0], counts[1], counts[2]


def _fraction(row: dict, key: str, default: float) -> float:
    """A logged memory fraction in (0, 1], or the engine's default where the cell is empty (a 0 is refused, not taken
    for the default: the thirty-second audit, validate 2)."""
    x = _num(row, key)
    if x is None:
        return default
    if not 0 < x <= 1:
        raise KvcalcError(f"{key}: expected a fraction in (0, 1], got {x:g}")
    return x


def _visible(row: dict, hw):
    """The GPU with the row's logged visible memory, where given (positive, under 10^6 GiB)."""
    visible = _num(row, "visible_GiB")
    if visible is None:
        return hw
    if not 0 < visible < 1e6:
        raise KvcalcError(f"visible_GiB: expected a positive number of GiB, got {visible:g}")
    return hw.model_copy(update={"visible_memory_GiB": visible})


def _version(row: dict) -> tuple[int, int]:
    return check_vllm_version((row["vllm"].split() or [""])[0], "vllm")


def _vllm_settings(row: dict) -> dict:
    """A vLLM row's settings, the engine's defaults where the log does not print one."""
    spec, hw = load_model(row["model"]), _visible(row, load_gpu(row["gpu"]))
    if (row.get("link") or "").strip() == "pcie":
        hw = hw.model_copy(update={"interconnect": "PCIe (vLLM's custom all-reduce off)"})
    elif (row.get("link") or "").strip() not in ("", "nvlink"):
        raise ValueError("link must be empty, nvlink or pcie")
    version = _version(row)
    tp, pp, ep = _layout(row, spec)
    length = int(_or(_num(row, "max_model_len"), spec.max_position_embeddings or 0))
    default_t, default_r = em.vllm_default_batching(hw.visible_memory_bytes / GiB, hw.name, version, length)
    t = int(_or(_num(row, "max_num_batched_tokens"), default_t))
    r = int(_or(_num(row, "max_num_seqs"), default_r))
    utilization = float(row["gpu_memory_utilization"])
    runner, sampler = row["model_runner"], (row.get("sampler") or "").strip()
    if (min(tp, pp, ep, t, r, length) < 1 or not (0 < hw.visible_memory_bytes / GiB < 1e6 and 0 < utilization <= 1)
            or runner not in em.MODEL_RUNNERS or sampler not in ("", "flashinfer")):
        raise ValueError("counts must be >= 1, visible_GiB positive, gpu_memory_utilization in (0, 1], "
                         "model_runner v0, v1 or v2 and sampler empty or flashinfer")
    check_dtypes(row["weight_dtype"], row["kv_dtype"])
    return {"spec": spec, "hw": hw, "p": precision(row["weight_dtype"], row["kv_dtype"]), "tp": tp, "pp": pp,
            "ep": ep, "t": t, "r": r, "length": length, "utilization": utilization, "runner": runner,
            "flashinfer": sampler == "flashinfer", "version": version}


# bands each constant falls back on, nearest first, where its own has no other source's fit row
# (GPUModelRunner's sampler from 0.17, band 'v1-0.17', is a closed form read from vLLM's source, not a fit:
# formulas/engine_memory.py vllm_triton_sampler_peak_bytes)
SAMPLER_FALLBACK = {"v0": ("v1",), "v1": ("v0",)}
NON_TORCH_FALLBACK = {"0.11": ("0.17",), "0.17": ("0.11",)}


def _evidence(rows: list[dict]) -> list[tuple[str, str, str, float]]:
    """(constant, band, source, value) that each vLLM `fit` row implies: the sampler's bytes a logit (logged peak
    over the sampler's rows x vocab, where the forward pass peaks lower), and from vLLM 0.11 non-torch memory at TP 1
    and what TP > 1 adds on NVLink (over the same source's TP 1 figure in that band, else the band's median)."""
    out, tp1_rows = [], []
    for row in rows:
        if row["engine"] != "vllm" or row["role"] != "fit":
            continue
        s = _vllm_settings(row)
        peak, non_torch = _num(row, "logged_peak_GiB"), _num(row, "logged_non_torch_GiB")
        sampler_band = em.vllm_sampler_band(s["runner"], s["version"])
        if peak and sampler_band in SAMPLER_FALLBACK and not s["flashinfer"] and s["pp"] == 1:
            forward = em.vllm_forward_peak_bytes(s["spec"], s["t"], s["p"].b_a, s["tp"], s["ep"]) / GiB
            if forward < peak:
                logits = min(s["r"], s["t"]) * s["spec"].vocab_size
                out.append(("sampler", sampler_band, source_of(row["source"]), peak * GiB / logits))
        band = em.vllm_non_torch_band(s["version"])
        if non_torch is not None and band != "pre-0.11" and s["pp"] == 1:
            nvlink = "nvlink" in (s["hw"].interconnect or "").lower()
            group = max(s["tp"], s["ep"])
            if group == 1:
                tp1_rows.append((band, source_of(row["source"]), non_torch))
                out.append(("non_torch_tp1", band, source_of(row["source"]), non_torch))
            elif nvlink:  # less FlashInfer's fusion workspace, a closed form where the release builds it
                fusion = em.vllm_fusion_workspace_bytes(s["hw"].compute_capability, s["hw"].topology, s["version"], group,
                                                        s["pp"], group // s["tp"]) / GiB
                out.append(("nvlink_total", band, source_of(row["source"]), non_torch - fusion))
    added = []
    for kind, band, source, value in out:
        if kind == "nvlink_total":
            same = [v for b, s, v in tp1_rows if b == band and s == source]
            base = same or [v for b, s, v in tp1_rows if b == band]
            if base:
                added.append(("non_torch_nvlink", band, source, value - statistics.median(base)))
    return [e for e in out if e[0] != "nvlink_total"] + added


def fit_constants(rows: list[dict], exclude_source: str | None = None) -> dict:
    """The band constants of vLLM's rule fitted on the ledger's `fit` rows, less those of `exclude_source`: the
    median of what each row implies (_evidence). {'sampler': {band: bytes a logit}, 'non_torch': {band: (TP 1 GiB,
    NVLink addition GiB)}, 'fallback': [constant@band taken from another band]}; a band without evidence takes its
    nearest band's figure (SAMPLER_FALLBACK, NON_TORCH_FALLBACK), or none where no band has any."""
    evidence = [e for e in _evidence(rows) if e[2] != exclude_source]

    def median(kind, band):
        values = [v for k, b, _, v in evidence if k == kind and b == band]
        return statistics.median(values) if values else None

    fitted, fallback = {"sampler": {}, "non_torch": {}}, []
    for band, nearest in SAMPLER_FALLBACK.items():
        value = median("sampler", band)
        for other in nearest if value is None else ():
            value = median("sampler", other)
            if value is not None:
                fallback.append(f"sampler@{band}<-{other}")
                break
        if value is not None:
            fitted["sampler"][band] = value
    for band, nearest in NON_TORCH_FALLBACK.items():
        figures = []
        for kind in ("non_torch_tp1", "non_torch_nvlink"):
            value = median(kind, band)
            for other in nearest if value is None else ():
                value = median(kind, other)
                if value is not None:
                    fallback.append(f"{kind}@{band}<-{other}")
                    break
            figures.append(value)
        if None not in figures:
            fitted["non_torch"][band] = tuple(figures)
    fitted["fallback"] = fallback
    return fitted


def predict(row: dict, refit: dict | None = None) -> dict:
    """kvcalc's figures for one logged vLLM start-up, by the rule `capacity --engine vllm` uses with the device
    total the log printed. refit: fit_constants' result, whose figures for the row's bands replace the module's."""
    s = _vllm_settings(row)
    band_constants = {}
    if refit is not None:
        sampler_band = em.vllm_sampler_band(s["runner"], s["version"])
        if sampler_band in refit["sampler"]:
            band_constants["sampler_bytes_per_logit"] = refit["sampler"][sampler_band]
        non_torch_band = em.vllm_non_torch_band(s["version"])
        if non_torch_band in refit["non_torch"]:
            band_constants["non_torch_GiB"] = refit["non_torch"][non_torch_band]
    e = vllm_memory(s["spec"], s["hw"], s["p"], s["tp"], context=s["length"], memory_utilization=s["utilization"],
                    max_num_batched_tokens=s["t"], max_num_seqs=s["r"], pp=s["pp"], ep=s["ep"], runner=s["runner"],
                    version=s["version"], flashinfer_sampler=s["flashinfer"], refit=band_constants)
    generic = kvcalc_budget(s["spec"], s["hw"], s["p"], s["utilization"], s["t"], s["tp"], s["pp"], s["ep"])[0]
    per_token = em.kv_page_bytes(s["spec"], s["p"].b_kv, s["tp"], s["pp"]) / em.BLOCK_TOKENS
    return {
        "weights_GiB": e["weights_bytes_per_gpu"] / GiB, "profile_peak_GiB": e["profile_peak_bytes"] / GiB,
        "non_torch_GiB": e["non_torch_bytes"] / GiB, "available_GiB": e["available_kv_bytes"] / GiB,
        "kv_tokens": e["kv_tokens"], "max_concurrency": e["max_concurrency"],
        "generic_available_GiB": generic / GiB, "generic_kv_tokens": int(generic // per_token) if per_token else None,
    }


def predict_sglang(row: dict) -> dict:
    """kvcalc's SGLang rule for one logged start-up: the pool and the memory free after loading."""
    spec, hw = load_model(row["model"]), load_gpu(row["gpu"])
    hw = _visible(row, hw)
    tp, pp, ep = _layout(row, spec)
    fraction = _fraction(row, "mem_fraction_static", em.sglang_default_mem_fraction(tp))
    check_dtypes(row["weight_dtype"], row["kv_dtype"])
    p = precision(row["weight_dtype"], row["kv_dtype"])
    length = int(_num(row, "context_length") or spec.max_position_embeddings)
    e = sglang_memory(spec, hw, p, tp, context=length, memory_utilization=fraction, pp=pp, ep=ep)
    generic = kvcalc_budget(spec, hw, p, fraction, 8192, tp, pp, ep)[0]
    per_token = em.kv_page_bytes(spec, p.b_kv, tp, pp) / em.BLOCK_TOKENS
    return {"weights_GiB": e["weights_bytes_per_gpu"] / GiB, "available_GiB": e["available_kv_bytes"] / GiB,
            "avail_after_load_GiB": (hw.visible_memory_bytes - e["weights_bytes_per_gpu"] - e["non_torch_bytes"]) / GiB,
            "kv_tokens": e["kv_tokens"], "max_concurrency": None, "mem_fraction_static": fraction,
            "generic_available_GiB": generic / GiB, "generic_kv_tokens": int(generic // per_token)}


def predict_trtllm(row: dict) -> dict:
    """kvcalc's TensorRT-LLM rule for one logged start-up: the memory free after loading and the KV cache."""
    spec, hw = load_model(row["model"]), load_gpu(row["gpu"])
    hw = _visible(row, hw)
    tp, pp, ep = _layout(row, spec)
    fraction = _fraction(row, "free_gpu_memory_fraction", 0.9)
    check_dtypes(row["weight_dtype"], row["kv_dtype"])
    p = precision(row["weight_dtype"], row["kv_dtype"])
    t = int(_num(row, "max_num_tokens") or em.TRTLLM_MAX_NUM_TOKENS)
    length = int(_num(row, "max_seq_len") or spec.max_position_embeddings)
    e = trtllm_memory(spec, hw, p, tp, context=length, memory_utilization=fraction, max_num_tokens=t, pp=pp, ep=ep)
    generic = kvcalc_budget(spec, hw, p, fraction, t, tp, pp, ep)[0]
    per_token = em.kv_page_bytes(spec, p.b_kv, tp, pp) / em.BLOCK_TOKENS
    return {"weights_GiB": e["weights_bytes_per_gpu"] / GiB, "available_GiB": e["requested_bytes"] / fraction / GiB,
            "kv_GiB": e["available_kv_bytes"] / GiB, "kv_tokens": e["kv_tokens"], "max_concurrency": None,
            "generic_available_GiB": generic / GiB, "generic_kv_tokens": int(generic // per_token)}


def _error(predicted: float | None, logged: str | None) -> float | None:
    if predicted is None or not (logged or "").strip() or float(logged) == 0:
        return None
    return (predicted - float(logged)) / float(logged) * 100


def _errors(row: dict, p: dict) -> dict:
    """Every logged figure's error [%], the headline and the generic rule's beside it."""
    engine = row["engine"]
    weights_logged = row.get("logged_weights_GB") if engine == "sglang" else row.get("logged_weights_GiB")
    errors = {
        "kv_tokens_error_pct": _error(p["kv_tokens"], row.get("logged_kv_tokens")),
        "available_error_pct": _error(p.get("avail_after_load_GiB", p["available_GiB"]),
                                      row.get("logged_avail_after_load_GB") if engine == "sglang"
                                      else row.get("logged_available_GiB")),
        "max_concurrency_error_pct": _error(p["max_concurrency"], row.get("logged_max_concurrency")),
        "weights_error_pct": _error(p["weights_GiB"], weights_logged),
    }
    if engine == "trtllm":
        errors["kv_GiB_error_pct"] = _error(p["kv_GiB"], row.get("logged_kv_GiB"))
    headline = next((errors[k] for k in ("max_concurrency_error_pct", "kv_tokens_error_pct", "available_error_pct")
                     if errors[k] is not None), None)
    # kvcalc's generic rule on the KV pool: vLLM's available memory where logged, else its token count
    generic = (_error(p["generic_available_GiB"], row.get("logged_available_GiB")) if engine == "vllm" else None)
    if generic is None:
        generic = _error(p["generic_kv_tokens"], row.get("logged_kv_tokens"))
    if generic is None and engine == "trtllm":
        generic = _error(p["generic_available_GiB"], row.get("logged_kv_GiB"))
    return {**errors, "error_pct": headline, "generic_error_pct": generic}


def _row_error(n: int, row: dict, e: Exception) -> KvcalcError:
    if isinstance(e, KvcalcError):
        return KvcalcError(f"--engine-memory: row {n} ({row.get('source')}): {e}")
    return KvcalcError(f"--engine-memory: row {n} ({row.get('source')}): expected numbers in visible_GiB, tp, pp, ep "
                       f"and the engine's settings; v0, v1 or v2 in model_runner; empty or flashinfer in sampler; "
                       f"empty, nvlink or pcie in link ({str(e).splitlines()[0]})")


def score(rows: list[dict]) -> list[dict]:
    """One result per row: kvcalc's figures scored leave-one-source-out (band constants refitted without the row's
    source; `fallback` names any constant taken from another band), the error on each logged figure [%], and the
    in-sample error (the module's constants, fitted on every fit row). Excluded rows pass through unscored."""
    out, refits = [], {}
    for n, row in enumerate(rows, start=2):
        if row["role"] == "excluded":
            out.append({**row, "error_pct": None, "generic_error_pct": None, "fallback": ""})
            continue
        try:
            if row["engine"] == "sglang":
                p, in_sample, fallback = predict_sglang(row), None, []
            elif row["engine"] == "trtllm":
                p, in_sample, fallback = predict_trtllm(row), None, []
            else:
                source = source_of(row["source"])
                if source not in refits:
                    refits[source] = fit_constants(rows, exclude_source=source)
                p, fallback = predict(row, refits[source]), refits[source]["fallback"]
                in_sample = _errors(row, predict(row))["error_pct"]
        except (KvcalcError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            raise _row_error(n, row, e) from None
        out.append({**row, **p, **_errors(row, p), "in_sample_error_pct": in_sample,
                    "fallback": " ".join(fallback)})
    return out


def _median_worst(values: list[float]) -> tuple[float | None, float | None]:
    return (round(statistics.median(values), 1), round(max(values), 1)) if values else (None, None)


def summary(results: list[dict]) -> list[dict]:
    """Per engine, held-out rows and fit rows apart: median and worst |error| of the headline figure (maximum
    concurrency, else KV tokens, else available memory) scored leave-one-source-out, the same with the band
    constants fitted on every fit row (in-band; vLLM), kvcalc's generic rule beside them, the rows whose logged
    weights kvcalc meets within 2 %; and a line counting the excluded rows. Every line has the same keys (None where
    a figure does not apply)."""
    out = []

    def absolute(rows, key):
        return [abs(r[key]) for r in rows if r.get(key) is not None]

    for engine in ("vllm", "sglang", "trtllm"):
        mine = [r for r in results if r["engine"] == engine]
        for role in ("held-out", "fit", "excluded"):
            rows = [r for r in mine if r["role"] == role]
            if not rows:
                continue
            errors, in_band = absolute(rows, "error_pct"), absolute(rows, "in_sample_error_pct")
            generic, weights = absolute(rows, "generic_error_pct"), absolute(rows, "weights_error_pct")
            median, worst = _median_worst(errors)
            in_median, in_worst = _median_worst(in_band)
            g_median, g_worst = _median_worst(generic)
            out.append({"engine": engine, "rows": role, "n": len(rows), "median_abs_error_pct": median,
                        "worst_abs_error_pct": worst, "in_band_median_abs_error_pct": in_median,
                        "in_band_worst_abs_error_pct": in_worst, "generic_median_abs_error_pct": g_median,
                        "generic_worst_abs_error_pct": g_worst,
                        "weights_within_2_pct": (f"{sum(w <= WEIGHTS_TARGET_PCT for w in weights)}/{len(weights)}"
                                                 if weights else None)})
    return out
