"""kvcalc calibrate: measure the roofs of this device and write them as a hardware spec.

Bandwidth: a device-to-device copy, counting bytes read and written. Compute: a square matmul per dtype.
Launch overhead: the median time of a one-element add. With a base spec (default h100-sxm on CUDA) the datasheet
roofs stay and the measured fractions become the efficiencies; without one (default on the CPU, which has no
datasheet here) the measured values are the roofs, at efficiency 1.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
import warnings
from pathlib import Path

import numpy as np

from kvcalc.errors import KvcalcError
from kvcalc.specs.catalog import load_gpu
from kvcalc.specs.files import plain_number_text, write_text
from kvcalc.specs.hardware import HardwareSpec
from kvcalc.validate.run import import_torch, resolve_device
from kvcalc.validate.timing import measure

SIZES = {"cuda": {"copy_bytes": 2**30, "matmul_n": 8192}, "cpu": {"copy_bytes": 2**29, "matmul_n": 1024}}


def measure_bandwidth_GBps(torch, device) -> float:
    n = SIZES[device.type]["copy_bytes"] // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), device, repeats=10, graphs=False)
    return 2 * src.nbytes / t.ms / 1e6  # read + write


def matmul_dtypes(torch, device) -> dict:
    if device.type == "cpu":
        return {"fp32": torch.float32, "bf16": torch.bfloat16}
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def measure_matmul_tflops(torch, device, dtype) -> float:
    n = SIZES[device.type]["matmul_n"]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = measure(lambda: a @ b, device, repeats=10, graphs=False)
    return 2 * n**3 / t.ms / 1e9


def measure_launch_us(torch, device) -> float:
    x = torch.zeros(1, device=device)
    # One kernel per call: what a launch (and on the CPU, one dispatch) costs beyond its work.
    return measure(lambda: x.add_(1), device, warmup=20, repeats=200, graphs=False).ms * 1e3


def host_memory_GiB() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def calibrate(device: str | None = None, *, base: str | None = None, name: str | None = None) -> tuple[HardwareSpec, dict]:
    """(the spec, the raw measurements)."""
    torch = import_torch()
    dev = resolve_device(torch, device)
    with torch.inference_mode():
        measured = {
            "bandwidth_GBps": measure_bandwidth_GBps(torch, dev),
            "tflops": {k: measure_matmul_tflops(torch, dev, v) for k, v in matmul_dtypes(torch, dev).items()},
            "launch_overhead_us": measure_launch_us(torch, dev),
        }
    if base is None and dev.type == "cuda":
        base = "h100-sxm"
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    stamp = (f"measured by kvcalc calibrate on {where} ({dev.type}), torch {torch.__version__}, "
             f"{datetime.date.today().isoformat()}: copy {measured['bandwidth_GBps']:.1f} GB/s, matmul "
             + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in measured["tflops"].items())
             + f", launch {measured['launch_overhead_us']:.1f} us")
    if base:
        b = load_gpu(base)
        main = "bf16" if "bf16" in measured["tflops"] and b.peak_tflops.bf16 else "fp32"
        data = b.model_dump()
        data.update(
            name=name or f"{b.name}-calibrated", aliases=[], sources=[*b.sources, stamp],
            launch_overhead_us=measured["launch_overhead_us"],
            efficiency={
                "memory": min(measured["bandwidth_GBps"] / b.memory_bandwidth_GBps, 1.0),
                "compute": min(measured["tflops"][main] / b.peak_flops(main) * 1e12, 1.0),
                "source": f"measured against {b.name}'s datasheet roofs ({main} matmul); {stamp}",
            },
        )
    else:
        data = {
            "name": name or f"{dev.type}-calibrated", "display_name": f"{where} ({dev.type}, calibrated)",
            "vendor": ("other" if dev.type == "cpu" else "AMD" if getattr(torch.version, "hip", None) else "NVIDIA"),
            "sources": [stamp],
            "notes": "No datasheet: the measured copy bandwidth and matmul throughput are the roofs.",
            "memory_GiB": host_memory_GiB() if dev.type == "cpu" else torch.cuda.get_device_properties(dev).total_memory / 2**30,
            "memory_bandwidth_GBps": measured["bandwidth_GBps"],
            "peak_tflops": dict(measured["tflops"]),
            "launch_overhead_us": measured["launch_overhead_us"],
            "efficiency": {"memory": 1.0, "compute": 1.0, "source": f"the roofs are measured: {stamp}"},
        }
    try:
        return HardwareSpec.model_validate(data), measured
    except ValueError as e:
        raise KvcalcError(f"calibrate: the measured spec is invalid: {e}") from None


def write_spec(spec: HardwareSpec, out: Path) -> None:
    from kvcalc.specs.toml_out import spec_to_toml

    write_text(out, f"# Written by `kvcalc calibrate`\n{spec_to_toml(spec)}", "--out")


# --- kvcalc calibrate --from-benchmark: a deployment profile fitted to the user's own serving benchmark ----------

BENCH_CSV_COLUMNS = ("batch", "input_len", "output_len", "tpot_ms")  # ttft_ms optional
# A measured time below a microsecond is not a measurement: a decode step reads every weight once, and the smallest
# catalog model (qwen3-0.6b, 0.3 GB even in 4 bits) at the fastest bandwidth in hardware_specs (8,000 GB/s) takes
# about 40 us; one kernel launch alone costs microseconds (what `kvcalc calibrate` measures as launch_overhead_us).
MIN_TIME_MS = 1e-3
MAX_TPOT_MS = 3_600_000.0  # an hour per output token: no serving benchmark waits that long for one token
# A whole request (TTFT, end-to-end latency): vllm bench serve's client abandons a request after 6 hours
# (AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=6 * 60 * 60), vLLM benchmarks/backend_request_func.py).
MAX_REQUEST_MS = 6 * 3_600_000.0
# The fit's median miss past which the profile is refused: a factor of 2 either way (over by more than 100 %, or
# under by more than 50 %: an under-prediction can never pass 100 %, and a fit 8,000x short had been written at
# "99.99 %", the nineteenth audit's E4), so kernel times x 0.5 to 3 plus any step and request cost cannot reproduce
# the file: a wrong --model, --gpu, --tp or --replicas, or times not in ms. A judgement, not a fit.
MAX_FIT_FACTOR = 2.0


def read_benchmark(path: Path) -> list[dict]:
    """The runs of a benchmark result file, one dict each: line, concurrency (requests in flight), input_len,
    output_len (means per request), tpot_ms, ttft_ms (means; None where not reported) and source.

    Formats: `vllm bench serve --save-result` JSON (one object; or JSON lines, as --append-result and SGLang's
    bench_serving --output-file write them: the same keys); trtllm-bench's --report_json (_trtllm_bench_run);
    genai-perf's and AIPerf's JSON export (TPOT is their
    inter_token_latency, which excludes the first token as vLLM's TPOT does); a CSV with the columns batch, input_len, output_len,
    tpot_ms and optionally ttft_ms, each row a static batch (batch requests that start and decode together: its TPOT
    is the decode step; a serving benchmark's also carries the other requests' prompts, _kernel_times). A closed-loop run names max_concurrency; an open-loop one (a request rate)
    has its mean requests in flight from Little's law: request_throughput x mean end-to-end latency (mean_e2el_ms,
    else TTFT + TPOT x (output - 1)). Bad input is one line naming the file, line and field: a time must be a
    measurement (MIN_TIME_MS to MAX_TPOT_MS, MAX_REQUEST_MS for a whole request), a count of requests, tokens or
    requests in flight a whole number of at least 1, a nested object an object; the first bad run stops the read."""
    import json

    from kvcalc.specs.files import MAX_TABLE_BYTES, read_regular_file

    text = read_regular_file(path, "a benchmark result file", MAX_TABLE_BYTES).decode("utf-8-sig", errors="replace")
    if path.suffix.lower() == ".csv":
        runs = _read_bench_csv(path, text)
        _not_too_many(path, len(runs))
        return _within_limits(path, runs)
    from kvcalc.specs.files import RepeatedKey, once_each, parse_error

    try:  # a key given twice is refused, as the CSV and trace readers refuse a column named twice (the twenty-fifth
        # audit, C4: the last of two mean_tpot_ms had been fitted)
        whole = json.loads(text, object_pairs_hook=once_each)
        objects = ([(f"{line} (run {k})", o) for k, (line, o) in enumerate(zip(_element_lines(text), whole), 1)]
                   if isinstance(whole, list) else [(1, whole)])
    except json.JSONDecodeError as whole_error:
        objects = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    objects.append((n, json.loads(line, object_pairs_hook=once_each)))
                except RepeatedKey as e:
                    raise KvcalcError(f"{path}: line {n}: field {e}: given twice") from None
                except json.JSONDecodeError as e:
                    if not objects:  # not JSON lines either: one JSON document (genai-perf and AIPerf indent
                        # theirs), where the whole file's parser says (the thirty-sixth audit, calibrate 5: a
                        # half-copied export had been reported at its line 1's lone brace)
                        raise KvcalcError(f"{path}: line {whole_error.lineno}: not JSON ({whole_error.msg})") from None
                    raise KvcalcError(f"{path}: line {n}: not JSON ({e.msg})") from None
                except (ValueError, RecursionError) as e:
                    raise KvcalcError(f"{path}: line {n}: not JSON ({parse_error(e)})") from None
    except RepeatedKey as e:
        raise KvcalcError(f"{path}: line 1: field {e}: given twice") from None
    except RecursionError:  # the fifth audit: 50,000 nested brackets, and 5,000-digit integers, were tracebacks
        raise KvcalcError(f"{path}: line 1: not JSON (nested too deeply)") from None
    except ValueError as e:
        raise KvcalcError(f"{path}: line 1: not JSON ({parse_error(e)})") from None
    if not objects:
        raise KvcalcError(f"{path}: line 1: no benchmark runs")
    _not_too_many(path, len(objects))
    return _within_limits(path, [_bench_run(path, n, o) for n, o in objects])


# the most runs one calibration fits: each is timed by the closed form (about 13 ms on one core) and named in the
# profile written, which a spec file's 1 MiB must hold (the thirty-first audit, calibrate 2 and 3: 1,500 runs wrote
# a profile --profile refused, and a file of 300,000 would have taken an hour with no word)
MAX_BENCH_RUNS = 2_000


def _not_too_many(path: Path, n: int) -> None:
    if n > MAX_BENCH_RUNS:
        raise KvcalcError(f"{path}: {n:,} runs; calibrate fits at most {MAX_BENCH_RUNS:,}: pass a file of the "
                          "deployment's distinct settings")


def _element_lines(text: str) -> list[int]:
    """The line each element of a top-level JSON array starts on (text is valid JSON), so that a run of an array is
    named by its own line (the tenth audit, E3: every run had been "line 1")."""
    import json

    decoder, lines = json.JSONDecoder(), []
    i = text.index("[") + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return lines
        lines.append(text.count("\n", 0, i) + 1)
        i = decoder.raw_decode(text, i)[1]


def _within_limits(path: Path, runs: list[dict]) -> list[dict]:
    """A run past kvcalc's own limits (max_concurrency 1e308: the fit would time a batch it cannot hold as a float)
    is one line naming the file and line."""
    from kvcalc.checks import MAX_BATCH, MAX_TOKENS

    for r in runs:
        for key, what, limit in (("concurrency", "requests in flight", MAX_BATCH),
                                 ("input_len", "mean input tokens", MAX_TOKENS),
                                 ("output_len", "mean output tokens", MAX_TOKENS)):
            if r[key] > limit:
                raise KvcalcError(f"{path}: line {r['line']}: {what} {r[key]:g} past kvcalc's limit of {limit:,}")
            if key != "concurrency" and r[key] < 1:  # as the CSV reader refuses it (the sixth audit: 0.5 was fitted)
                raise KvcalcError(f"{path}: line {r['line']}: {what} {r[key]:g}: under one token is no request")
    return runs


def _number(path: Path, line: int, obj: dict, field: str, required: bool = True, positive: bool = False):
    value = obj.get(field)
    if value is None and not required:
        return None
    if value is None:  # the twenty-fifth audit, C5: had read "expected a non-negative number, got None"
        raise KvcalcError(f"{path}: line {line}: field {field}: missing")
    try:  # an integer past a float's range (10**400) overflows math.isfinite (the twenty-first audit, C1)
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite or value < 0:
        raise KvcalcError(f"{path}: line {line}: field {field}: expected a {'positive' if positive else 'non-negative'} "
                          f"number, got {value!r:.40}")
    if positive and value == 0:  # a TPOT of 0 ms: the fit divides by it (and no decode step takes no time)
        raise KvcalcError(f"{path}: line {line}: field {field}: expected a positive number, got {value!r}")
    return float(value)


def _time_ms(path: Path, line: int, field: str, value, limit_ms: float = MAX_TPOT_MS):
    """A measured time [ms] (None passes through): from a microsecond to limit_ms, else one line naming the field."""
    if value is None:
        return None
    label = "TPOT" if "tpot" in field or "inter_token" in field else "TTFT" if "ttft" in field or "first_token" in field \
        else "latency"
    if not (math.isfinite(value) and value > 0):
        raise KvcalcError(f"{path}: line {line}: field {field}: expected a positive number, got {value!r}")
    if value < MIN_TIME_MS:
        raise KvcalcError(f"{path}: line {line}: field {field}: {label} {value!r} ms is too small to fit against (under "
                          f"{MIN_TIME_MS:g} ms, a microsecond, is not a measurement)")
    if value > limit_ms:
        raise KvcalcError(f"{path}: line {line}: field {field}: {label} {value!r} ms is too large to be a measurement "
                          f"(expected at most {limit_ms:,.0f} ms)")
    return float(value)


def _count(path: Path, line: int, field: str, value, what: str) -> float:
    """A count (requests, tokens, concurrency): a whole number, at least 1 (the upper limits: _within_limits)."""
    if not (math.isfinite(value) and value >= 1 and float(value).is_integer()):
        raise KvcalcError(f"{path}: line {line}: field {field}: expected a whole number of {what}, at least 1, "
                          f"got {value!r}")
    return float(value)


def _stat(path: Path, line: int, obj: dict, field: str, required: bool = True, positive: bool = False):
    """genai-perf / AIPerf export: a metric is an object of statistics; its mean is `avg`."""
    value = obj.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, dict) or "avg" not in value:
        raise KvcalcError(f"{path}: line {line}: field {field}: expected an object with avg, got {value!r}")
    return _number(path, line, {f"{field}.avg": value["avg"]}, f"{field}.avg", positive=positive)


# a genai-perf / AIPerf time metric's unit, which AIPerf's export schema makes the authority, in ms
TIME_UNITS_MS = {"ms": 1.0, "s": 1e3, "sec": 1e3, "us": 1e-3, "ns": 1e-6}


def _stat_ms(path: Path, line: int, obj: dict, field: str, required: bool = True, positive: bool = False):
    """_stat of a time metric, in ms by its unit (absent: ms, as genai-perf writes them; the twenty-eighth audit,
    calibrate 7: a request_latency in seconds had been read as ms)."""
    value = _stat(path, line, obj, field, required, positive)
    unit = obj[field].get("unit", "ms") if isinstance(obj.get(field), dict) else "ms"
    if unit not in TIME_UNITS_MS:
        raise KvcalcError(f"{path}: line {line}: field {field}.unit: expected one of {', '.join(TIME_UNITS_MS)}, got "
                          f"{unit!r:.40}")
    return None if value is None else value * TIME_UNITS_MS[unit]


def _genai_perf_run(path: Path, line: int, obj: dict) -> dict:
    """genai-perf's profile_export_genai_perf.json or AIPerf's profile_export_aiperf.json: per-metric objects
    (time_to_first_token, inter_token_latency, input/output_sequence_length, request_throughput and
    request_latency, each with its avg); the concurrency from input_config (genai-perf: concurrency; AIPerf:
    loadgen.concurrency), else Little's law."""
    config = _object(path, line, obj, "input_config")
    loadgen = _object(path, line, config, "loadgen", "input_config.")
    # newer genai-perf nests it as input_config.perf_analyzer.stimulus.concurrency (its own tests' export)
    stimulus = _object(path, line, _object(path, line, config, "perf_analyzer", "input_config."), "stimulus",
                       "input_config.perf_analyzer.")
    field, concurrency = next(((f, v) for f, v in (("input_config.concurrency", config.get("concurrency")),
                                                   ("input_config.loadgen.concurrency", loadgen.get("concurrency")),
                                                   ("input_config.perf_analyzer.stimulus.concurrency",
                                                    stimulus.get("concurrency"))) if v is not None),
                              ("input_config.concurrency", None))
    run = {"line": line, "input_len": _stat(path, line, obj, "input_sequence_length", positive=True),
           "output_len": _stat(path, line, obj, "output_sequence_length", positive=True),
           "tpot_ms": _time_ms(path, line, "inter_token_latency.avg",
                               _stat_ms(path, line, obj, "inter_token_latency", positive=True)),
           "ttft_ms": _time_ms(path, line, "time_to_first_token.avg",
                               _stat_ms(path, line, obj, "time_to_first_token", False) or None, MAX_REQUEST_MS),
           "source": f"{path.name} line {line}"}
    def littles_law() -> float:  # requests in flight: throughput x mean request latency
        latency_ms = _time_ms(path, line, "request_latency.avg",
                              _stat_ms(path, line, obj, "request_latency", positive=True), MAX_REQUEST_MS)
        return _stat(path, line, obj, "request_throughput", positive=True) * latency_ms / 1000

    if concurrency is not None:
        run["concurrency"] = _count(path, line, field, _number(path, line, {field: concurrency}, field),
                                    "requests in flight")
        if loadgen.get("request_rate") is not None:  # a rate under a concurrency cap: the cap is a ceiling (AIPerf's
            # "Request Rate with Max Concurrency"), the rate keeps fewer in flight (the thirty-first audit, calibrate
            # 1: such runs at 1, 4 and 16 in flight had all been timed at the cap of 16)
            run["concurrency"] = min(run["concurrency"], littles_law())
    else:
        run["concurrency"] = littles_law()
    # never more in flight than the requests sent: AIPerf takes a --concurrency above --request-count (aiperf/common/
    # config/loadgen_config.py leaves it unchecked), as vllm bench serve's reader caps max_concurrency (the thirty-
    # sixth audit, calibrate 1: 8 requests under a cap of 64 had been timed at 64); request_count.avg, else the
    # loadgen's request_count
    sent = _stat(path, line, obj, "request_count", required=False, positive=True)
    if sent is None and loadgen.get("request_count") is not None:
        sent = _number(path, line, {"input_config.loadgen.request_count": loadgen["request_count"]},
                       "input_config.loadgen.request_count", positive=True)
    if sent is not None:
        run["concurrency"] = min(run["concurrency"], sent)
    # the model it served, checked against --model (the thirty-first audit, calibrate 5): AIPerf's
    # input_config.endpoint.model_names, genai-perf's input_config.model
    names = _object(path, line, config, "endpoint", "input_config.").get("model_names") or config.get("model")
    name = names[0] if isinstance(names, list) and names else names
    if isinstance(name, str):
        run["model_id"] = name
    return run


def _trtllm_bench_run(path: Path, line: int, obj: dict) -> dict:
    """trtllm-bench's --report_json (tensorrt_llm/bench/dataclasses/reporting.py get_statistics_dict): request_info's
    avg_num_concurrent_requests, avg_input_length and avg_output_length; streaming_metrics' avg_ttft_ms and
    avg_tpot_ms, written under --streaming only; decoding_stats for a speculative run, refused as the other tools'
    acceptance lengths are (the twenty-eighth audit, calibrate 6: such a report had been refused as a missing
    mean_tpot_ms)."""
    if obj.get("decoding_stats") is not None:
        raise _speculative(path, line, "decoding_stats")
    info = _object(path, line, obj, "request_info")
    streaming = _object(path, line, obj, "streaming_metrics")
    if not streaming:
        raise KvcalcError(f"{path}: line {line}: field streaming_metrics: missing (trtllm-bench writes TTFT and TPOT "
                          "with --streaming only); rerun it with --streaming")
    fields = {f"request_info.{k}": info.get(k) for k in ("avg_num_concurrent_requests", "avg_input_length",
                                                         "avg_output_length")}
    fields.update({f"streaming_metrics.{k}": streaming.get(k) for k in ("avg_tpot_ms", "avg_ttft_ms")})
    value = {k: _number(path, line, fields, k, positive=True) for k in fields}
    engine = _object(path, line, obj, "engine")
    return {"line": line, "input_len": value["request_info.avg_input_length"],
            "output_len": value["request_info.avg_output_length"],
            "tpot_ms": _time_ms(path, line, "streaming_metrics.avg_tpot_ms", value["streaming_metrics.avg_tpot_ms"]),
            "ttft_ms": _time_ms(path, line, "streaming_metrics.avg_ttft_ms", value["streaming_metrics.avg_ttft_ms"],
                                MAX_REQUEST_MS),
            "concurrency": value["request_info.avg_num_concurrent_requests"],  # measured, as Little's law's
            "source": f"{path.name} line {line}", "backend": "tensorrt-llm",
            **({"model_id": engine["model"]} if isinstance(engine.get("model"), str) else {}),
            # the GPU and TP it ran on (reporting.py _query_gpu_info's machine.name, world_info.tp_size), checked
            # against --gpu and --tp (the thirty-first audit, calibrate 4: an A100's report had been fitted as an H100)
            **({"gpu_name": machine["name"]} if isinstance((machine := _object(path, line, obj, "machine"))
                                                            .get("name"), str) else {}),
            **{key: world[key] for key in ("tp_size", "pp_size", "ep_size")
               if isinstance((world := _object(path, line, obj, "world_info")).get(key), int)},
            # the formats it served (the engine's quant_algo and kv_cache_quant_algo, None for the checkpoint's),
            # checked against --weight-dtype and --kv-dtype (the thirty-ninth audit, calibrate 2)
            **{f"engine_{key}": engine[key] for key in ("quantization", "kv_cache_dtype") if key in engine}}


def _speculative(path: Path, line: int, field: str, how: str = "") -> KvcalcError:
    """The one-line refusal of a speculative run (the twenty-eighth audit, calibrate 4 and 6)."""
    return KvcalcError(f"{path}: line {line}: field {field}: the run decoded speculatively{how}, which calibrate does "
                       "not fit; pass a run without speculative decoding")


def _object(path: Path, line: int, obj: dict, field: str, prefix: str = "") -> dict:
    """An optional nested JSON object ({} where absent): a list or a number there is one line naming the field."""
    value = obj.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise KvcalcError(f"{path}: line {line}: field {prefix}{field}: expected a JSON object, got {value!r:.60}")
    return value


def _bench_run(path: Path, line: int, obj) -> dict:
    if not isinstance(obj, dict):
        raise KvcalcError(f"{path}: line {line}: expected a JSON object of one benchmark run")
    if isinstance(obj.get("inter_token_latency"), dict):
        return _genai_perf_run(path, line, obj)
    if isinstance(obj.get("request_info"), dict) and "mean_tpot_ms" not in obj:
        return _trtllm_bench_run(path, line, obj)
    if "mean_tpot_ms" not in obj:
        raise KvcalcError(f"{path}: line {line}: field mean_tpot_ms: missing (expected a vllm bench serve "
                          "--save-result, sglang bench_serving, genai-perf, AIPerf or trtllm-bench --report_json "
                          "JSON result)")
    for field in SPECULATION_FIELDS:  # the twenty-eighth audit, calibrate 4: fitted as faster kernels
        value = obj.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1:
            raise _speculative(path, line, f"{field}: {value!r}", " (more than one token a step)")
    completed = _number(path, line, obj, "completed")
    if completed <= 0:
        raise KvcalcError(f"{path}: line {line}: field completed: no request completed")
    completed = _count(path, line, "completed", completed, "requests")
    tokens = {f: _count(path, line, f, _number(path, line, obj, f), "tokens")
              for f in ("total_input_tokens", "total_output_tokens")}
    run = {"line": line, "input_len": tokens["total_input_tokens"] / completed,
           "output_len": tokens["total_output_tokens"] / completed,
           "tpot_ms": _time_ms(path, line, "mean_tpot_ms", _number(path, line, obj, "mean_tpot_ms", positive=True)),
           # a TTFT of 0 is a tool's "not measured" (as absent); any other value must be a measured time
           "ttft_ms": _time_ms(path, line, "mean_ttft_ms", _number(path, line, obj, "mean_ttft_ms", False) or None,
                               MAX_REQUEST_MS),
           "source": f"{path.name} line {line}",
           # what the benchmark says it served, checked against --model and --engine (the thirteenth audit, E2)
           **{k: obj[k] for k in ("model_id", "backend") if isinstance(obj.get(k), str)}}

    def littles_law() -> float:  # requests in flight of an open loop: throughput x mean end-to-end latency
        e2e_ms = _time_ms(path, line, "mean_e2el_ms", _number(path, line, obj, "mean_e2el_ms", False, positive=True),
                          MAX_REQUEST_MS)
        if e2e_ms is None:
            e2e_ms = (run["ttft_ms"] or 0.0) + run["tpot_ms"] * max(run["output_len"] - 1, 0)
        return _number(path, line, obj, "request_throughput", positive=True) * e2e_ms / 1000

    rate = obj.get("request_rate")  # checked whatever the loop (the twenty-fifth audit, C3: "fast" and -3 had been
    # fitted where max_concurrency was null)
    if rate not in (None, "inf") and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                      or not rate > 0):  # the thirteenth audit, E1: "abc", -5, 0 had been taken
        raise KvcalcError(f"{path}: line {line}: field request_rate: expected a positive number or \"inf\", got "
                          f"{rate!r:.40}")
    if obj.get("max_concurrency") is not None:
        # vllm bench serve gates its requests through asyncio.Semaphore(max_concurrency) (vllm/benchmarks/serve.py):
        # at most that many, never more than the requests it sent, and with a finite --request-rate as many as the
        # rate keeps in flight (the twelfth audit, E1: max_concurrency 1,024 over 16 requests had been timed at 1,024)
        cap = _count(path, line, "max_concurrency", _number(path, line, obj, "max_concurrency"), "requests in flight")
        paced = rate not in (None, "inf") and not (isinstance(rate, float) and math.isinf(rate))
        run["concurrency"] = min(cap, completed, littles_law() if paced else math.inf)
    else:  # open loop: Little's law
        run["concurrency"] = littles_law()
        if rate in (None, "inf") or (isinstance(rate, float) and math.isinf(rate)):
            # every request sent at once (vllm bench serve's default --request-rate inf, sglang.bench_serving's too):
            # its mean TTFT is mostly queueing behind the others' prompts, which serve's steady closed form does not
            # time; its TPOT is still fitted (the twenty-eighth audit, calibrate 1: three such runs had fitted
            # 1,176 ms a request)
            run["unsteady"] = ("every request sent at once (request_rate "
                               + ("inf" if rate is not None else "not given") + ", no max_concurrency)")
    if obj.get("ramp_up_strategy"):  # a rate that ramps (--ramp-up-strategy), capped or not: not one steady load
        run["unsteady"] = "a ramped request rate"
    return run


def _read_bench_csv(path: Path, text: str) -> list[dict]:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:  # (line number, row): the reader's own count, which blank lines and quoted line breaks do not throw off
        # "batch, input_len" as spreadsheets space a header, read as the trace reader reads it (the seventh audit, V9)
        reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise KvcalcError(f"{path}: line {reader.line_num}: not CSV ({e})") from None
    header = reader.fieldnames or []
    if header[:1] == ["Metric"]:  # genai-perf's and AIPerf's CSV export (the thirty-first audit, calibrate 9)
        raise KvcalcError(f"{path}: line 1: a genai-perf or AIPerf CSV export, which calibrate does not read: pass its "
                          "JSON export (profile_export_genai_perf.json or profile_export_aiperf.json)")
    missing = [c for c in BENCH_CSV_COLUMNS if not rows or c not in header]
    if missing:
        raise KvcalcError(f"{path}: line 1: field {missing[0]}: missing (expected the columns "
                          f"{', '.join(BENCH_CSV_COLUMNS)} and optionally ttft_ms)")
    # a column named twice, or a row longer than the header, had been read silently (the sixth audit: the second
    # tpot_ms column won)
    read = (*BENCH_CSV_COLUMNS, "ttft_ms")  # columns it does not read may repeat
    twice = next((h for k, h in enumerate(header) if h in read and h in header[:k]), None)
    if twice is not None:
        raise KvcalcError(f"{path}: line 1: field {twice}: named twice in the header")
    out = []
    for n, row in rows:
        if None in row:  # csv.DictReader's restkey: the cells beyond the header's columns
            raise KvcalcError(f"{path}: line {n}: {len(header) + len(row[None])} cells under a header of "
                              f"{len(header)} columns")
        values = {}
        for field in (*BENCH_CSV_COLUMNS, "ttft_ms"):
            raw = (row.get(field) or "").strip()
            if field == "ttft_ms" and not raw:
                values[field] = None
                continue
            try:
                if not plain_number_text(raw):
                    raise ValueError(raw)
                values[field] = float(raw)
            except ValueError:
                raise KvcalcError(f"{path}: line {n}: field {field}: expected a number, got {raw!r}") from None
            if not values[field] > 0:
                raise KvcalcError(f"{path}: line {n}: field {field}: expected a positive number, got {raw!r}")
            if not math.isfinite(values[field]):
                raise KvcalcError(f"{path}: line {n}: field {field}: expected a finite positive number, got {raw!r}")
        _count(path, n, "batch", values["batch"], "requests in flight")
        for field in ("input_len", "output_len"):  # means may be fractional; under one token is no request
            if values[field] < 1:
                raise KvcalcError(f"{path}: line {n}: field {field}: expected at least 1 token, got "
                                  f"{row[field].strip()!r}")
        _time_ms(path, n, "tpot_ms", values["tpot_ms"])
        _time_ms(path, n, "ttft_ms", values["ttft_ms"], MAX_REQUEST_MS)
        out.append({"line": n, "concurrency": values.pop("batch"), **values, "source": f"{path.name} line {n}",
                    "static": True})
    return out


# what a benchmark writes of a speculative run: vllm bench serve's spec_decode_acceptance_length (SpecDecodeStats,
# vllm/benchmarks/serve.py), sglang.bench_serving's accept_length: accepted tokens a step, 1 without speculation
SPECULATION_FIELDS = ("spec_decode_acceptance_length", "accept_length")
# held-out error: leave one group of identical runs out, or with more groups than this, this many folds (each a fit)
HELD_OUT_FOLDS = 10

SCALE_GRID = np.geomspace(0.5, 3.0, 60)  # kernel-time factors tried (as fit_e2e's bounds: 1/3 to 3, slower side)
STEP_GRID_US = np.concatenate([[0.0], np.geomspace(10, 100_000, 300)])
REQUEST_GRID_MS = np.concatenate([[0.0], np.geomspace(0.1, 10_000, 200)])


def _kernel_times(runs: list[dict], spec, hw, profile, weight_dtype: str, kv_dtype: str, tp: int,
                  engine_version: str | None = None) -> None:
    """Each run's kernel-only decode step at its concurrency and mean context and its prefill of one prompt [ms] (of
    the whole batch's prompts for a static-batch CSV row, as estimate times it), and
    its TPOT and TTFT as serve's closed form times the run's closed loop, kernels alone (tpot_kernel_ms,
    ttft_kernel_ms) and the steps each takes (tpot_steps, ttft_steps: what a step overhead adds, in steps): a
    benchmark's TPOT also carries the other requests' prompts, prefilled during this one's decode steps (the
    twenty-fifth audit, C1: fitted as the plain decode step, kernels came out 1.37-1.85x slow from a file kvcalc's own
    serve wrote). Where serve cannot time the run, the first-order form (formulas/workload.py serving_tpot)."""
    from kvcalc.estimator import evaluate, phase_metrics
    from kvcalc.formulas.workload import serving_tpot
    from kvcalc.serving.closed_form import MIN_CONCURRENCY, serve
    from kvcalc.specs.profile import EngineOverhead

    bare = profile.model_copy(update={"overhead": EngineOverhead(sources=["kernels alone"])}) if profile else None
    for r in runs:
        b = max(1, round(r["concurrency"]))
        p_len, context = max(1, round(r["input_len"])), round(r["input_len"] + r["output_len"] / 2)
        o_len = max(1, round(r["output_len"]))
        ev = evaluate(spec, hw, batch=b, context=context, prompt=p_len, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                      tp=tp, profile=bare)
        r["fits"] = bool(ev.memory["total"] <= ev.usable_bytes)  # its requests' KV cache beside the weights
        decode = phase_metrics(ev.decode, ev.decode_sol, b, hw, weight_dtype, ev.comm_s)
        r["decode_kernel_ms"], r["decode_sol_ms"] = decode["ms"], decode["speed_of_light_ms"]
        ev1 = evaluate(spec, hw, batch=1, context=0, prompt=p_len, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                       tp=tp, profile=bare)
        prefill = phase_metrics(ev1.prefill, ev1.prefill_sol, p_len, hw, weight_dtype, ev1.prefill_comm_s)
        r["prefill_kernel_ms"], r["prefill_sol_ms"] = prefill["ms"], prefill["speed_of_light_ms"]
        r["tpot_kernel_ms"] = serving_tpot(r["decode_kernel_ms"], r["prefill_kernel_ms"], b, o_len)
        r["ttft_kernel_ms"], r["tpot_steps"], r["ttft_steps"] = r["prefill_kernel_ms"], 1.0, 1.0
        if r.get("static"):  # a static batch, as estimate times it: TPOT is the decode step, TTFT the prefill of all
            # b prompts together (the twenty-eighth audit, calibrate 3: one prompt's, 138 ms a request fitted where
            # estimate's own times held none)
            r["tpot_kernel_ms"] = r["decode_kernel_ms"]
            batch_prefill = phase_metrics(ev.prefill, ev.prefill_sol, b * p_len, hw, weight_dtype, ev.prefill_comm_s)
            r["ttft_kernel_ms"], r["prefill_sol_ms"] = batch_prefill["ms"], batch_prefill["speed_of_light_ms"]
            continue
        if profile is None or not r["fits"]:
            continue
        timed = []
        for step_us in (0.0, 1000.0):  # serve is linear in the step overhead: two runs give its count of steps
            try:
                with warnings.catch_warnings():  # serve's notes on its own pool: calibrate says what it fits
                    warnings.simplefilter("ignore")
                    # at the run's own requests in flight, fractional as serve --request-rate then times them
                    # (the thirty-ninth audit, calibrate 4: timed at whole requests, the printed fit error had been
                    # 7.4 % where the profile misses the same runs by 8.6 % through serve)
                    timed.append(serve(spec, hw, input_len=p_len, output_len=o_len,
                                       concurrency=max(r["concurrency"], MIN_CONCURRENCY), tp=tp,
                                       engine=profile.engine, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                                       engine_version=engine_version, profile=profile,
                                       overhead=EngineOverhead(step_us=step_us, sources=["calibrate"])))
            except KvcalcError:
                break
        if len(timed) == 2 and timed[0]["tpot_ms"] and timed[0]["ttft_ms"]:
            r["tpot_kernel_ms"], r["ttft_kernel_ms"] = timed[0]["tpot_ms"], timed[0]["ttft_ms"]
            r["tpot_steps"] = timed[1]["tpot_ms"] - timed[0]["tpot_ms"]
            r["ttft_steps"] = timed[1]["ttft_ms"] - timed[0]["ttft_ms"]


def fit_benchmark(runs: list[dict], request_ms_unmeasured: float = 0.0) -> dict:
    """(kernel-time scale s, step overhead [us], request overhead [ms]) minimising the summed |log error| of
    TPOT = s x tpot_kernel_ms + step x tpot_steps and TTFT = s x ttft_kernel_ms + step x ttft_steps + request
    over the runs (_kernel_times: serve's closed form of the run's loop, kernels alone). s is fitted only
    where the runs span two concurrencies or more (one concurrency cannot tell a slower kernel from a longer step:
    s stays 1). Where no run reports a TTFT the request overhead is not fitted: request_ms_unmeasured, with
    request_fitted False."""
    scales = SCALE_GRID if len({round(r["concurrency"]) for r in runs}) > 1 else np.array([1.0])
    steps = STEP_GRID_US
    for _ in range(3):  # a coarse grid, then two finer ones around its best point
        s, step = np.meshgrid(scales, steps, indexing="ij")
        loss = sum(np.abs(np.log((s * r["tpot_kernel_ms"] + r["tpot_steps"] * step / 1000) / r["tpot_ms"]))
                   for r in runs)
        i = np.unravel_index(int(np.argmin(loss)), loss.shape)
        scale, step_us = float(s[i]), float(step[i])
        if len(scales) > 1:
            scales = np.linspace(scale * 0.95, scale * 1.05, 41)
        steps = np.linspace(step_us * 0.9, step_us * 1.1, 41) if step_us else steps
    timed = [r for r in runs if r["ttft_ms"]]
    request_ms = request_ms_unmeasured
    if timed:
        grid = REQUEST_GRID_MS
        for _ in range(2):  # the coarse grid (6 % apart), then finer around its best point, as the step cost is (the
            # thirty-first audit, calibrate 8: 30 ms had come back as 30.72)
            loss = sum(np.abs(np.log((scale * r["ttft_kernel_ms"] + r["ttft_steps"] * step_us / 1000 + grid)
                                     / r["ttft_ms"])) for r in timed)
            request_ms = float(grid[int(np.argmin(loss))])
            grid = np.linspace(request_ms * 0.94, request_ms * 1.06, 61) if request_ms else grid
    return {"time_scale": float(f"{scale:.4g}"), "step_us": float(f"{step_us:.4g}"),
            "request_ms": float(f"{request_ms:.4g}"), "request_fitted": bool(timed),
            "scale_fitted": len(scales) > 1}


# why a constant calibrate reports was not fitted (the thirty-sixth audit, calibrate 4: printed as if fitted)
NOT_FITTED = {"scale": "not fitted: the runs span one concurrency, which cannot tell slower kernels from a longer step",
              "request": "the engine band's own: no paced run in the file reports a TTFT"}


def _ratios(runs: list[dict], fit: dict) -> list[float]:
    """predicted / measured of each run's TPOT (and TTFT, where reported) under a fit."""
    out = []
    for r in runs:
        tpot = fit["time_scale"] * r["tpot_kernel_ms"] + r["tpot_steps"] * fit["step_us"] / 1000
        out.append(tpot / r["tpot_ms"])
        if r["ttft_ms"]:
            ttft = fit["time_scale"] * r["ttft_kernel_ms"] + r["ttft_steps"] * fit["step_us"] / 1000 + fit["request_ms"]
            out.append(ttft / r["ttft_ms"])
    return out


def _errors(runs: list[dict], fit: dict) -> list[float]:
    """|error| % of each run's TPOT (and TTFT, where reported) under a fit."""
    return [abs(x - 1) * 100 for x in _ratios(runs, fit)]


def _check_fit(path: Path, runs: list[dict], fit: dict) -> None:
    """A fit whose constants are not finite, or whose median in-sample miss passes MAX_FIT_FACTOR, is refused
    in one line saying why: its profile would time nothing the file measured."""
    import statistics

    bad = [k for k, v in fit.items() if not math.isfinite(v)]
    if bad:
        raise KvcalcError(f"{path}: the fit's {bad[0]} is {fit[bad[0]]!r}, not a number a profile can hold: refused")
    def factor(x: float) -> float:  # how many times off, either way
        return max(x, 1 / x) if x > 0 and math.isfinite(x) else math.inf

    factors = [factor(x) for x in _ratios(runs, fit)]
    median = statistics.median(factors) if factors else math.inf
    if median > MAX_FIT_FACTOR:
        # the worst run and metric over TPOT and TTFT (the thirty-sixth audit, calibrate 3: TTFTs 15x off had been
        # reported as the run's TPOT, which the fit met)
        worst, metric, ratio = max(((r, m, x) for r in runs for m, x in zip(("TPOT", "TTFT"), _ratios([r], fit))),
                                   key=lambda t: factor(t[2]))
        measured = worst[f"{metric.lower()}_ms"]
        raise KvcalcError(
            f"{path}: the best fit still misses the measured times by a median factor of {median:.3g} (over "
            f"{MAX_FIT_FACTOR:g}; worst {worst['source']}: {metric} {measured:g} ms measured, {measured * ratio:.3g} "
            f"ms predicted at {worst['concurrency']:g} in flight): no profile written; check "
            "--model, --gpu, --tp, --replicas, --weight-dtype and that the times are in ms")


# a fitted step cost past this many times the engine band's own is warned of. A judgement, not a fit: the bands
# fitted on the published runs (validation/published/README.md) run from 171 us (SGLang) to 2,070 us (TensorRT-LLM's
# engine), and a run 10x slower outside its kernels than its engine's band is more likely another deployment
SLOW_STEP_FACTOR = 10

# the model sizes a checkpoint's name carries: 8B, 70b, 0.5B, 1.5b (an active size such as A3B is left out)
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z0-9])")
# the engine a benchmark client's backend names (vllm bench serve's --backend, SGLang bench_serving's --backend)
_BACKEND_ENGINE = {"vllm": "vllm", "vllm-chat": "vllm", "sglang": "sglang", "sglang-native": "sglang",
                   "sglang-oai": "sglang", "sglang-oai-chat": "sglang", "tensorrt-llm": "trtllm", "trt": "trtllm"}


def _gpu_key(gpu: str) -> str:
    """The part of a GPU spec's name a driver's device name holds: its first word, up to its first number for the
    RTX parts ('h100-sxm': h100, 'rtx-pro-6000': rtxpro6000, 'mi300x': mi300x)."""
    words = gpu.lower().split("-")
    key = words[0]
    for w in words[1:]:
        if any(ch.isdigit() for ch in key):
            break
        key += w
    return key


def _names_gpu(device_name: str, gpu: str) -> bool:
    """Whether a driver's device name names this GPU spec: its key (_gpu_key) as whole words of the name, run
    together ('NVIDIA RTX PRO 6000 Blackwell' names rtx-pro-6000; 'NVIDIA L40S' does not name l4, nor 'NVIDIA GH200
    480GB' h200: the review of the thirty-first audit's change, 8, had found substrings passing)."""
    import re

    words = re.findall(r"[a-z0-9]+", device_name.lower())
    key = _gpu_key(gpu)
    return any("".join(words[i:j]) == key for i in range(len(words)) for j in range(i + 1, len(words) + 1))


def _sizes(name: str) -> set[str]:
    return {m.rstrip("0").rstrip(".") if "." in m else m for m in _SIZE.findall(name.lower())}


# trtllm-bench's engine.quantization (TensorRT-LLM's QuantAlgo names, quantization/mode.py) as kvcalc's
# --weight-dtype; None: the checkpoint's own format (its engine.kv_cache_dtype: specs/hf.py MODELOPT_KV_FORMATS)
TRTLLM_WEIGHT_FORMATS = {"FP8": "fp8", "FP8_BLOCK_SCALES": "fp8-block", "NVFP4": "nvfp4", "W4A16_AWQ": "int4",
                         "W4A16_GPTQ": "int4", "W4A16": "int4", "W4A16_MXFP4": "mxfp4", "W4A8_MXFP4_FP8": "mxfp4",
                         "W8A16": "int8", "W8A16_GPTQ": "int8"}


def served_elsewhere(path: Path, runs: list[dict], spec, engine: str, hw=None, tp: int | None = None,
                     weight_dtype: str | None = None, kv_dtype: str | None = None) -> None:
    """Refuse a file whose runs served several models or engines (no one --model and --engine fits them all), or ran
    another --tp than asked, pipeline or expert parallelism (which calibrate does not fit), or other weight or KV
    formats than asked (trtllm-bench's world_info and engine blocks; the thirty-ninth audit, calibrate 1-2: a TP 4 x
    PP 2 run had been fitted as one stage, an FP8 engine's as bf16, its step cost 1.76x the FP8 fit's); warn where it says it served another model (its
    model_id names a size or family that --model's does not, e.g. Llama-3.1-70B or Qwen3-8B against llama-3.1-8b),
    ran another engine (its client backend) or another GPU (trtllm-bench's machine.name): the fit would take the
    difference for engine overhead (the thirteenth audit, E2: a 70B run fitted as the 8B gave 23 ms a step; the
    thirty-first, calibrate 4-6: another GPU's, family's and three engines' runs had been fitted in silence)."""
    import re
    import warnings

    from kvcalc.engines.launch import hf_repo_id
    from kvcalc.estimator import resolve_weight_dtype
    from kvcalc.specs.hf import MODELOPT_KV_FORMATS  # TensorRT-LLM's kv_cache_quant_algo names, as checkpoints write

    for key, what in (("model_id", "models"), ("backend", "engines")):
        named = {}
        for run in runs:
            value = run.get(key)
            name = _BACKEND_ENGINE.get(str(value).lower(), value) if key == "backend" and value else value
            if name is not None:
                named.setdefault(name, run["line"])
        if len(named) > 1:
            shown = ", ".join(f"{v!r:.60} (line {line})" for v, line in list(named.items())[:3])
            raise KvcalcError(f"{path}: the runs served {len(named)} {what} ({shown}); one profile fits one "
                              "deployment: pass a file of one model's runs on one engine")
    repo = hf_repo_id(spec).rsplit("/", 1)[-1]
    ours = _sizes(spec.name) | _sizes(repo)
    # the family words of --model's names ('llama' of llama-3.1-8b and of meta-llama/Llama-3.1-8B)
    families = {m[0] for m in (re.match(r"[a-z]+", spec.name.lower()), re.match(r"[a-z]+", repo.lower())) if m}
    for run in runs:
        model_id = run.get("model_id")
        if not model_id:
            continue
        theirs = _sizes(model_id.rsplit("/", 1)[-1])
        if ours and theirs and not ours & theirs:
            warnings.warn(f"{path}: line {run['line']}: model_id {model_id!r:.80} is not --model {spec.name} (a "
                          "different size): the fit takes the difference for engine overhead; pass the model the "
                          "benchmark served", stacklevel=2)
        elif families and not any(f in model_id.lower() for f in families):
            warnings.warn(f"{path}: line {run['line']}: model_id {model_id!r:.80} is not --model {spec.name} (another "
                          "family): the fit takes the difference for engine overhead; pass the model the benchmark "
                          "served", stacklevel=2)
        break
    for run in runs:
        if tp is not None and run.get("tp_size") is not None and run["tp_size"] != tp:
            raise KvcalcError(f"{path}: line {run['line']}: world_info.tp_size {run['tp_size']} is not --tp {tp}: "
                              f"pass --tp {run['tp_size']}, the tensor parallelism the benchmark ran")
        for key, how in (("pp_size", "pipeline"), ("ep_size", "expert")):
            if run.get(key, 1) > 1:
                raise KvcalcError(f"{path}: line {run['line']}: world_info.{key} {run[key]}: calibrate fits one "
                                  f"tensor-parallel group without {how} parallelism; pass a run with {key} 1")
        for key, flag, ours, names in (("engine_quantization", "--weight-dtype", weight_dtype, TRTLLM_WEIGHT_FORMATS),
                                       ("engine_kv_cache_dtype", "--kv-dtype", kv_dtype, MODELOPT_KV_FORMATS)):
            if ours is None or key not in run:
                continue
            theirs = run[key]
            field = key.replace("_", ".", 1)
            if theirs is None:  # the checkpoint's own format: a quantised one asked for is not what it served
                own = resolve_weight_dtype("auto", spec) if flag == "--weight-dtype" else None
                if ours in set(names.values()) and ours != own:
                    raise KvcalcError(f"{path}: line {run['line']}: {field} null (the checkpoint's own format) is not "
                                      f"{flag} {ours}: pass the format the benchmark served")
                continue
            if str(theirs).upper() not in names:
                warnings.warn(f"{path}: line {run['line']}: {field} {theirs!r:.40} is a format kvcalc does not map to "
                              f"{flag}: check that {flag} {ours} is what the benchmark served", stacklevel=2)
            elif names[str(theirs).upper()] != ours:
                raise KvcalcError(f"{path}: line {run['line']}: {field} {theirs!r:.40} is not {flag} {ours}: pass "
                                  f"{flag} {names[str(theirs).upper()]}, the format the benchmark served")
        if hw is not None and run.get("gpu_name") and not _names_gpu(run["gpu_name"], hw.name):
            warnings.warn(f"{path}: line {run['line']}: machine.name {run['gpu_name']!r:.60} is not --gpu {hw.name}: "
                          "the fit takes the difference for engine overhead; pass the GPU the benchmark ran",
                          stacklevel=2)
            break
    for run in runs:
        backend = _BACKEND_ENGINE.get(str(run.get("backend", "")).lower())
        if backend is not None and backend != engine:
            warnings.warn(f"{path}: line {run['line']}: backend {run['backend']!r:.40} is not --engine {engine}: "
                          f"the fit starts from {engine}'s profile; pass --engine {backend}", stacklevel=2)
            break


def _fitted_overhead(fit: dict, band, tp: int, synced: int, what: str):
    """The fitted step cost as a profile states it: the band's terms per extra GPU and per synchronised layer kept,
    the fixed part fitted, so the profile times another --tp or model as the band scales (the fifteenth audit, E6:
    the TP 2 run's 34.5 us x 32 synchronised layers had been frozen into one flat cost, 14 % over at TP 1). Where the
    fit is below those terms at its own TP, they are scaled down to it."""
    from kvcalc.specs.profile import EngineOverhead

    per_gpu = band.step_us_per_extra_gpu if band is not None else 0.0
    per_layer = band.step_us_per_synced_layer if band is not None else 0.0
    scaling = per_gpu * (tp - 1) + per_layer * synced
    if scaling > fit["step_us"]:
        shrink = fit["step_us"] / scaling
        per_gpu, per_layer, scaling = per_gpu * shrink, per_layer * shrink, fit["step_us"]
    return EngineOverhead(step_us=fit["step_us"] - scaling, step_us_per_extra_gpu=per_gpu,
                          step_us_per_synced_layer=per_layer, request_ms=fit["request_ms"],
                          sources=[what + f"; fitted at --tp {tp}: {fit['step_us']:g} us a step there, of which "
                                   f"{scaling:g} us are the band's terms per extra GPU and per synchronised layer"])


def _held_out_errors(runs: list[dict], own_request_ms: float) -> list[float]:
    """Each run's |error| under a fit on the other runs: runs of one setting (requests in flight and lengths, to the
    whole request and token) form a group, left out together (a repeated run is not held out from itself); past
    HELD_OUT_FOLDS groups, group k goes to fold k % HELD_OUT_FOLDS, so a file of thousands of runs takes that many
    fits, not one a run (the twenty-eighth audit, calibrate 5: 400 runs took 84 s, and 3 copies of one run scored
    0.11 % held out). Empty under 3 groups."""
    def setting(r: dict) -> tuple:  # whole requests in flight and tokens: a repeat of a setting is a copy too
        return round(r["concurrency"]), round(r["input_len"]), round(r["output_len"])

    keys = list(dict.fromkeys(setting(r) for r in runs))
    if len(keys) < 3:
        return []
    folds = min(len(keys), HELD_OUT_FOLDS)
    fold_of = {key: k % folds for k, key in enumerate(keys)}
    errors = []
    for fold in range(folds):
        out = [r for r in runs if fold_of[setting(r)] == fold]
        kept = [r for r in runs if fold_of[setting(r)] != fold]
        errors += _errors(out, fit_benchmark(kept, own_request_ms))
    return errors


def calibrate_from_benchmark(path: Path, *, model: str, gpu: str, engine: str = "vllm", tp: int = 1,
                             weight_dtype: str = "auto", kv_dtype: str = "bf16", replicas: int = 1,
                             engine_version: str | None = None):
    """(the deployment profile, the report) fitted to a benchmark result file: the engine's profile for the GPU
    with every kernel's time x s (ledgers/fit_e2e.scale_kernels) and its overhead replaced by the fitted step and
    request costs. The report names the runs fitted and the held-out error (each run predicted by a fit without it
    and its copies: _held_out_errors; None with fewer than 3 distinct runs). replicas: data-parallel copies the
    benchmark's load was spread over (each runs concurrency / replicas)."""
    import statistics

    from kvcalc.checks import check_int
    from kvcalc.engines.overhead import with_band
    from kvcalc.estimator import check_dtypes, check_tp, resolve_weight_dtype
    from kvcalc.ledgers.fit_e2e import scale_kernels
    from kvcalc.specs.catalog import load_model, resolve_engine

    check_int("--replicas", replicas, 1, 100_000)
    check_dtypes(weight_dtype, kv_dtype, engine)  # as estimate checks them (the tenth audit, E5: a weight format and
    # SGLang's absent integer caches had been fitted as KV formats)
    spec, hw = load_model(model), load_gpu(gpu)
    weight_dtype = resolve_weight_dtype(weight_dtype, spec)
    check_tp(tp, spec, weight_dtype)
    from kvcalc.estimator import weights_overflow

    # the fourteenth audit, E1: a deployment that cannot hold the model had been fitted, its "overhead" the difference
    if overflow := weights_overflow(spec, weight_dtype, hw.visible_memory_bytes, tp, hw=hw, engine=engine):
        raise KvcalcError(f"{path}: the runs cannot be {spec.name} at {weight_dtype} on {tp} x {hw.name}: {overflow}; "
                          "pass the --tp, --weight-dtype and --gpu the benchmark ran")
    profile = with_band(resolve_engine(engine, hw), engine_version)
    if profile is None:
        raise KvcalcError("--engine: calibrating from a benchmark needs an engine profile (vllm, sglang or trtllm)")
    runs = read_benchmark(path)
    served_elsewhere(path, runs, spec, profile.engine, hw, tp, weight_dtype, kv_dtype)
    unsteady = [r for r in runs if r.get("unsteady") and r["ttft_ms"] is not None]
    for r in unsteady:  # TPOT fitted, TTFT not (_bench_run)
        r["ttft_ms"] = None
    if unsteady:
        which = ", ".join(r["source"] for r in unsteady)
        warnings.warn(f"{path}: {len(unsteady)} run{'s' if len(unsteady) > 1 else ''} ({which}) had "
                      f"{unsteady[0]['unsteady']}: their TTFT is mostly queueing, which the fit cannot tell from a "
                      "request cost, so only their TPOT is fitted; pass --request-rate or --max-concurrency runs to "
                      "fit the request cost", stacklevel=2)
    for r in runs:
        r["concurrency"] = r["concurrency"] / replicas
    _kernel_times(runs, spec, hw, profile, weight_dtype, kv_dtype, tp, engine_version)
    for r in runs:  # a TPOT below its step's speed of light is not this deployment (the tenth audit, E9: fitted, and
        # the profile written then timed those runs 76 % slower than the file)
        if r["tpot_ms"] < r["decode_sol_ms"] * (1 - 1e-9):
            raise KvcalcError(f"{path}: line {r['line']}: TPOT {r['tpot_ms']:g} ms is below the speed of light of its "
                              f"decode step ({r['decode_sol_ms']:.3g} ms for {spec.name} on {tp} x {hw.name} at "
                              f"{r['concurrency']:g} in flight); check --model, --gpu, --tp, --replicas, "
                              "--weight-dtype, speculative decoding and that the times are in ms")
        if r["ttft_ms"] and r["ttft_ms"] < r["prefill_sol_ms"] * (1 - 1e-9):  # the thirty-sixth audit, calibrate 2:
            # a TTFT of 1 ms for 64 prompts of 1,000 tokens had been fitted at "0.0 %", the row silently missed
            raise KvcalcError(f"{path}: line {r['line']}: TTFT {r['ttft_ms']:g} ms is below the speed of light of "
                              f"its prefill ({r['prefill_sol_ms']:.3g} ms for {round(r['input_len']):,} prompt tokens "
                              f"of {spec.name} on {tp} x {hw.name}); check --model, --gpu, --tp, a prefix cache "
                              "and that the times are in ms")
    from kvcalc.checks import past_positions

    for r in runs:  # a run the deployment cannot hold at once, or past the model's positions, is not what the
        # engine ran: it queued part of its requests, or refused them (the fifteenth audit, E3: a kernel scale of
        # x1.557 had been fitted on 16 sequences of 100,100 tokens where one H100 holds 4)
        length = round(r["input_len"] + r["output_len"])
        if why := past_positions(spec, length):
            raise KvcalcError(f"{path}: line {r['line']}: {why}: an engine refuses such requests; check --model")
        if not r["fits"]:
            raise KvcalcError(f"{path}: line {r['line']}: {r['concurrency']:g} requests of {length:,} tokens in "
                              f"flight do not fit the KV cache of {spec.name} on {tp} x {hw.name}: the engine "
                              "queued part of them, which this fit cannot tell; check --tp and --replicas, or leave "
                              "the run out")
    for r in runs:  # a subnormal time (5e-324 ms) overflows the fit's ratios: refused, not fitted to inf
        for metric, kernel in (("tpot_ms", "tpot_kernel_ms"), ("ttft_ms", "ttft_kernel_ms")):
            if r[metric] and not math.isfinite(r[kernel] / r[metric] * 100):
                raise KvcalcError(f"{path}: line {r['line']}: {metric.split('_')[0].upper()} {r[metric]!r} ms is too "
                                  f"small to fit against (the kernels alone take {r[kernel]:.3g} ms)")
    from kvcalc.engines.overhead import overhead_seconds, stated_overhead

    # no TTFT in the file (a tool prints 0 for "not measured"): the request overhead stays the engine band's own
    own_request_ms = overhead_seconds(profile)[1] * 1e3
    fit = fit_benchmark(runs, own_request_ms)
    _check_fit(path, runs, fit)
    from kvcalc.engines.overhead import synced_layers

    synced = synced_layers(spec.num_layers, tp)
    own_step_us = overhead_seconds(profile, tp, synced)[0] * 1e6
    if own_step_us and fit["step_us"] > SLOW_STEP_FACTOR * own_step_us:  # the thirteenth audit, E5

        warnings.warn(f"{path}: the fitted {fit['step_us']:g} us a step outside the kernels is "
                      f"{fit['step_us'] / own_step_us:.0f}x {profile.engine}'s own {own_step_us:.0f} us: a run that "
                      "much slower than its kernels is rarely engine overhead; check --model, --gpu, --tp and "
                      "--replicas against the run", stacklevel=2)
    held = _held_out_errors(runs, own_request_ms)
    fitted = statistics.median(_errors(runs, fit))
    if fit["time_scale"] < 1:  # the profile written cannot run a kernel past the datasheet's roofs (scale_curve caps
        # its efficiencies at 1): its own error on these runs is what is said, and the gap warned of (the seventeenth
        # audit, E1: "2.76 % fitted" for a profile 10-12 % slow on the same runs)
        import copy

        written = copy.deepcopy(runs)
        _kernel_times(written, spec, hw, scale_kernels(profile, fit["time_scale"]), weight_dtype, kv_dtype, tp,
                      engine_version)
        rescored = statistics.median(_errors(written, {**fit, "time_scale": 1.0}))
        if rescored > fitted + 0.5:
            warnings.warn(f"{path}: the runs are faster than kernels x {fit['time_scale']:g} can be where the "
                          f"datasheet roofline binds: the profile written misses them by a median {rescored:.3g} % "
                          "(said as its fit error); check --gpu and --weight-dtype against the run", stacklevel=2)
        fitted = max(fitted, rescored)
    report = {"file": str(path), "replicas": replicas, "runs": [{k: r[k] for k in ("source", "concurrency", "input_len", "output_len",
                                                            "tpot_ms", "ttft_ms")} for r in runs],
              **fit, "fit_median_abs_error_pct": round(fitted, 2),
              "held_out_median_abs_error_pct": round(statistics.median(held), 2) if held else None}
    named = (", ".join(r["source"] for r in runs) if len(runs) <= 10 else
             f"{runs[0]['source']} to {runs[-1]['source']}; every run in fitted_on")
    what = (f"fitted by `kvcalc calibrate --from-benchmark {path.name}` on {len(runs)} runs "
            f"({named}): {spec.name} on {tp} x {hw.name}"
            # the deployment the load was spread over, and the runs whose TTFT was not fitted (the thirty-ninth
            # audit, calibrate 3: a profile of four replicas' runs had read as one's)
            + (f" a replica, the runs' load spread over {replicas} replicas (requests in flight / {replicas})"
               if replicas > 1 else "")
            + f", {weight_dtype} weights, {kv_dtype} KV; kernel times x {fit['time_scale']:g}"
            + ("" if fit["scale_fitted"] else f" ({NOT_FITTED['scale']})")
            + f", {fit['step_us']:g} us a step, {fit['request_ms']:g} ms a request"
            + ("" if fit["request_fitted"] else f" ({NOT_FITTED['request']})")
            + (f" (TTFT not fitted on {', '.join(r['source'] for r in unsteady)}: {unsteady[0]['unsteady']})"
               if unsteady else "")
            + f"; median |error| {report['fit_median_abs_error_pct']} % fitted, "
            + (f"{report['held_out_median_abs_error_pct']} % held out (each run fitted without it and its copies)"
               if held else "no held-out error (fewer than 3 distinct runs)"))
    from kvcalc.engines.overhead import release_tuple

    # the release the runs were timed as (--engine-version 0.11.0), which the profile's later use then schedules as
    # (async scheduling from vLLM 0.14, the memory rule by release): the thirty-first audit, calibrate 7, a profile
    # calibrated as 0.11 had been simulated as the tables' 0.24, its TTFT 18 % apart
    release = {"engine_version": engine_version.strip()} if engine_version and release_tuple(engine_version) else {}
    deployed = scale_kernels(profile, fit["time_scale"]).model_copy(update={**release,
        "provenance": "fitted", "transferred_from": f"{profile.gpu}.{profile.engine}",
        "method": (profile.method + " " if getattr(profile, "method", "") else "") + "Then " + what,
        "time_scale": fit["time_scale"], "fitted_on": [r["source"] for r in runs],
        "overhead": _fitted_overhead(fit, stated_overhead(profile), tp, synced, what),
        "sources": [*profile.sources, f"benchmark results: {path.name}"]})
    return deployed, report
