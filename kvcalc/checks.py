"""Bounds on every number a user passes: each flag has a physical range, and a value outside it is a one-line
error naming the flag, before any formula runs (so nothing downstream overflows into inf or wraps an int64)."""

from __future__ import annotations

import math

from kvcalc.errors import KvcalcError

MAX_BATCH = 10**7  # sequences
MAX_TOKENS = 10**9  # context or prompt length
MAX_GPUS = 1024
MAX_PRICE = 1e6  # per GPU-hour, any currency


def check_int(flag: str, value, lo: int, hi: int, hint: str = "") -> int:
    """A whole number in [lo, hi] (booleans are not numbers here); hint: said after the value refused."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise KvcalcError(f"{flag}: expected a whole number from {lo:,} to {hi:,}, got {_show(value)}"
                          + (f" {hint}" if hint else ""))
    return value


# The smallest request rate and requests in flight taken: 1e-6 requests/s is one every 11.6 days (the simulator's
# clock runs to 1e10 s, serving/simulate.py); below it, 5e-324 (the smallest double) had divided by zero in serve's
# steady state (the fresh audit).
MIN_REQUEST_RATE = 1e-6
MIN_CONCURRENCY = 1e-6


def check_number(flag: str, value, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A finite number in [lo, hi] ((lo, hi] with lo_open)."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > lo if lo_open else value >= lo) and value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise KvcalcError(f"{flag}: expected a finite number in {interval}, got {_show(value)}")
    return value


def check_price(value) -> None:
    """--price-per-gpu-hour, where given: a positive finite price."""
    if value is not None:
        check_number("--price-per-gpu-hour", value, 0, MAX_PRICE, lo_open=True)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


# --- the Python API's argument types (audit U5): a wrong type is one KvcalcError naming the argument --------------

def _is_spec_ref(value) -> bool:
    """A model or GPU reference: a name or path (str, os.PathLike) or an already-loaded spec (a pydantic model)."""
    import os

    from pydantic import BaseModel

    return isinstance(value, (str, os.PathLike, BaseModel))


def check_ref(arg: str, value):
    """model= / gpu=: a name, a spec file path or a loaded spec."""
    if not _is_spec_ref(value):
        raise KvcalcError(f"{arg}: expected a name, a spec file path or a loaded spec, got {type(value).__name__} "
                          f"{_show(value)}")
    return value


def check_optional_str(arg: str, value):
    """attn= / speculate= and the like: a string, or None for 'none'."""
    if value is not None and not isinstance(value, str):
        raise KvcalcError(f"{arg}: expected a string or None, got {type(value).__name__} {_show(value)}")
    return value


def check_str(arg: str, value):
    if not isinstance(value, str):
        raise KvcalcError(f"{arg}: expected a string, got {type(value).__name__} {_show(value)}")
    return value


def check_sequence(arg: str, value, element=None) -> list:
    """A list-like argument (sweep's models, compare's attn, ...): a str is refused rather than read letter by
    letter; each element passes `element(arg, x)` where given."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise KvcalcError(f"{arg}: expected a list (e.g. [{_show(value)}]), got {type(value).__name__} "
                          f"{_show(value)}")
    items = [plain_scalar(x) for x in value]
    if not items:
        raise KvcalcError(f"{arg}: empty list; expected at least one value")
    return [element(arg, x) for x in items] if element else items


def check_vllm_version_arg(arg: str, value) -> str:
    """vllm_version=: a string such as "0.11" or "latest"; a float or int (0.11, the natural spelling) is read as
    the text it prints as (repr: 0.11 -> "0.11")."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise KvcalcError(f"{arg}: expected a release such as \"0.11\", got {type(value).__name__} {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise KvcalcError(f"{arg}: expected a release such as \"0.11\", got {_show(value)}")
    return value if isinstance(value, str) else repr(value)


def check_disaggregate_arg(arg: str, value):
    """disaggregate=: None, (prefill GPUs, decode GPUs) or the CLI's "P:D" text."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 2 and all(p.strip().isascii() and p.strip().isdigit() for p in parts):
            value = (int(parts[0]), int(parts[1]))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        return tuple(check_int(arg, x, 1, MAX_GPUS) for x in value)
    raise KvcalcError(f"{arg}: expected (prefill GPUs, decode GPUs) such as (2, 6) or \"2:6\", got {_show(value)}")


def check_bool_arg(arg: str, value):
    """A switch such as plan's speculate=: True or False."""
    if not isinstance(value, bool):
        raise KvcalcError(f"{arg}: expected True or False, got {type(value).__name__} {_show(value)}")
    return value


def check_optional_path(arg: str, value):
    """simulate's trace=: a path (a str or a pathlib.Path), or None."""
    import os

    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise KvcalcError(f"{arg}: expected a file path or None, got {type(value).__name__} {_show(value)}")
    return value


_SCALAR_ARGS = {
    "model": check_ref, "gpu": check_ref, "attn": check_optional_str, "search_speculation": lambda _, v: check_bool_arg("speculate", v),  # plan's switch
    "speculate": check_optional_str, "engine": check_str, "weight_dtype": check_str, "kv_dtype": check_str,
    "vllm_runner": check_str, "arrivals": check_str, "vllm_version": check_vllm_version_arg,
    "disaggregate": check_disaggregate_arg, "keep_timeline": check_bool_arg, "trace": check_optional_path,
}
_SEQUENCE_ELEMENTS = {  # a list argument's name -> the check of each element
    "models": check_ref, "gpus": check_ref, "attn": check_optional_str, "speculate": check_optional_str,
    "weight_dtype": check_str, "kv_dtype": check_str, "engine": check_str,
    "batch": None, "context": None, "tp": None, "pp": None, "ep": None, "concurrencies": None, "tps": None,
}


def plain_scalar(value):
    """A NumPy scalar as the Python number it holds (np.int64(4) -> 4, np.float32(0.9) -> its float), anything else
    as given: the API takes what pandas and NumPy hand back (the thirteenth audit, E3: a value read from sweep's own
    DataFrame had been "expected a whole number ..., got np.int64(4)"), and the results stay plain JSON."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def api_label(message: str, parameters) -> str:
    """A checker's message with the CLI flags it opens with (`--batch:`, `--concurrency / --request-rate:`) named as
    the API's keywords where the function has them (batch=, ...): the API caller wrote those (the thirteenth audit,
    E3)."""
    head, sep, rest = message.partition(": ")
    if not sep or not head.startswith("--"):
        return message
    names = []
    for flag in head.split(" / "):
        word = flag.split(" ", 1)[0]
        keyword = API_KEYWORDS.get(word, word[2:].replace("-", "_"))
        if not word.startswith("--") or keyword not in parameters:
            return message
        names.append(keyword + flag[len(word):])
    return " / ".join(names) + sep + rest


# CLI flags whose API keyword is not the flag's own name with '_' for '-'
API_KEYWORDS = {"--cuda-graph-memory": "cuda_graph_GiB", "--tp": "tp", "--pp": "pp", "--ep": "ep"}


def check_api_arguments(arguments: dict, sequences: frozenset = frozenset(), labels: dict | None = None) -> dict:
    """The bound arguments of a public API call, each of a known name checked for its type (`sequences`: the names
    that take a list in this function; `labels`: a parameter's name as the checks know it, e.g. load_gpu's ref as
    gpu); returns them with vllm_version and disaggregate normalised."""
    out = {name: plain_scalar(value) for name, value in arguments.items()}
    for name, value in list(out.items()):
        label = (labels or {}).get(name, name)
        if name in sequences:
            out[name] = check_sequence(label, value, _SEQUENCE_ELEMENTS.get(label))
        elif label in _SCALAR_ARGS:
            out[name] = _SCALAR_ARGS[label](label, value)
    return out


def past_positions(spec, tokens: int) -> str | None:
    """The warning for a context past the model's max_position_embeddings, or None: the engines refuse such a request
    (vLLM's max_model_len), so an answer for it is said to be one (capacity and sweep word it so)."""
    limit = spec.max_position_embeddings
    if limit and tokens > limit:
        return f"context {tokens:,} exceeds {spec.name}'s max_position_embeddings {limit:,}"
    return None


def foreign_format(hw, weight_dtype: str) -> str | None:
    """The warning for a weight format the part's vendor does not run, or None: NVFP4 is NVIDIA's (ModelOpt's) format;
    an AMD part's fp4 peak is MXFP4's, and plan gives AMD no NVFP4 (the thirteenth audit, P1). The fourteenth, E4:
    estimate had timed NVFP4 on an MI300X without a word."""
    if weight_dtype == "nvfp4" and hw.vendor != "NVIDIA":
        return (f"--weight-dtype nvfp4: NVIDIA's 4-bit format, which {hw.name} ({hw.vendor}) engines do not load "
                "(AMD's 4-bit format is mxfp4); these times are of a deployment that does not run")
    return None


def nvidia_capability(hw) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA part's compute capability (hardware_specs' compute_capability), None otherwise."""
    from kvcalc.specs.hardware import capability

    return capability(getattr(hw, "compute_capability", None)) if hw.vendor == "NVIDIA" else None


def engine_format_refusal(engine: str | None, hw, weight_dtype: str) -> str | None:
    """Why `engine` does not load `weight_dtype` weights on `hw`, or None (the twenty-second audit, Q1 and Q2, and the
    twenty-third, G1-G4: plan had chosen, and --emit launched, deployments that cannot start):
      nvfp4 under TensorRT-LLM or SGLang needs Blackwell's fp4 tensor cores: TensorRT-LLM's hardware support matrix
        (docs/source/features/quantization.md) lists NVFP4 on Blackwell only, and SGLang's
        ModelOptFp4Config.get_min_capability() is 100 (python/sglang/srt/layers/quantization/modelopt_quant.py);
        vLLM runs it on older parts weight-only (Marlin FP4);
      fp8 and fp8-block under TensorRT-LLM need an fp8 peak (the same matrix: FP8 not on Ampere); vLLM runs them
        weight-only there (FP8 Marlin), on NVIDIA parts only: on AMD, vLLM's FP8 kernels need MI300 or later
        (ROCmFP8ScaledMMLinearKernel.is_supported: 'requires MI3xx'; Marlin is CUDA-only), so a part without an fp8
        peak (CDNA 2: MI210, MI250X) has none;
      fp8-block under TensorRT-LLM: the matrix's FP8 (block scaling) column lists Hopper and Blackwell sm100/103 only,
        not Ada or sm120 (L4, L40S, RTX 4090, RTX 5090, RTX PRO 6000);
      mxfp4 under vLLM needs compute capability 8.0 (vllm/model_executor/layers/quantization/mxfp4.py
        Mxfp4Config.get_min_capability() 80: not a T4 or V100); under TensorRT-LLM Hopper or Blackwell (the matrix's
        MXFP4 column and examples/models/core/gpt_oss/README.md's MoE support matrix).
    The part's fp4 and fp8 peaks and its compute_capability stand for the architecture (hardware_specs/*.toml)."""
    peaks = hw.peak_tflops.available()
    cc = nvidia_capability(hw)
    names = {"trtllm": "TensorRT-LLM", "sglang": "SGLang", "vllm": "vLLM"}
    does_not_start = "these times are of a deployment that does not start"
    if weight_dtype == "nvfp4" and engine in ("trtllm", "sglang") and "fp4" not in peaks and hw.vendor == "NVIDIA":
        return (f"--weight-dtype nvfp4: {names[engine]} loads NVFP4 weights on Blackwell only (fp4 tensor cores), not "
                f"on {hw.name}; vLLM runs them there weight-only: {does_not_start}")
    if weight_dtype in ("fp8", "fp8-block") and engine == "trtllm" and "fp8" not in peaks:
        return (f"--weight-dtype {weight_dtype}: TensorRT-LLM loads FP8 weights on parts with fp8 tensor cores (Ada, "
                f"Hopper, Blackwell), not on {hw.name}; vLLM runs them there weight-only: {does_not_start}")
    if weight_dtype == "fp8-block" and engine == "trtllm" and cc is not None and cc[0] not in (9, 10):
        return (f"--weight-dtype fp8-block: TensorRT-LLM runs block-scaled FP8 on Hopper and datacenter Blackwell "
                f"(sm90, sm100/103) only, not on {hw.name} (sm{cc[0]}{cc[1]}): {does_not_start}")
    if weight_dtype in ("fp8", "fp8-block") and engine == "vllm" and hw.vendor == "AMD" and "fp8" not in peaks:
        return (f"--weight-dtype {weight_dtype}: vLLM's FP8 kernels on ROCm need MI300 or later (fp8 tensor cores), "
                f"and its weight-only FP8 (Marlin) runs on NVIDIA only; {hw.name} has neither: {does_not_start}")
    if weight_dtype == "mxfp4" and engine == "vllm" and cc is not None and cc < (8, 0):
        return (f"--weight-dtype mxfp4: vLLM loads MXFP4 weights from compute capability 8.0 (Mxfp4Config), not on "
                f"{hw.name} ({cc[0]}.{cc[1]}): {does_not_start}")
    if weight_dtype == "mxfp4" and engine == "trtllm" and cc is not None and cc < (9, 0):
        return (f"--weight-dtype mxfp4: TensorRT-LLM runs MXFP4 on Hopper and Blackwell only, not on {hw.name} "
                f"({cc[0]}.{cc[1]}); vLLM and SGLang run it there: {does_not_start}")
    return None


# KV formats an engine cannot store (or stores in a layout kvcalc does not count), by engine: the formats it takes.
# - SGLang's --kv-cache-dtype takes auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16 and fp4_e2m1 (sgl-project/sglang
#   python/sglang/srt/server_args.py, add_cli_args), so no integer cache.
# - vLLM's integer caches are int8_per_token_head and int4_per_token_head (KVQuantMode, vllm/v1/kv_cache_interface.py):
#   each token's K and V head carries its own fp32 scale, carved from the pool (AttentionSpec.page_size_bytes adds
#   2 x block_size x num_kv_heads x 4 B), which kvcalc's int8 (no scale) and int4 (a bf16 scale per 128 elements) do
#   not count (the thirteenth audit, E4).
# - TensorRT-LLM's KV cache quantisation is FP8, INT8 (one per-tensor scale, as kvcalc's int8) or NVFP4
#   (https://nvidia.github.io/TensorRT-LLM/features/quantization.html): no int4.
_SGLANG_KV = "sglang stores no {kv} KV cache (its --kv-cache-dtype takes fp8_e4m3, fp8_e5m2, bf16 or fp4_e2m1)"
_VLLM_KV = ("vllm's {kv}_per_token_head cache adds an fp32 scale per token and KV head, which kvcalc's {kv} does not "
            "count (vLLM's fp8, nvfp4 and bf16 caches it does)")
ENGINE_KV_REFUSED = {"sglang": {"int8": _SGLANG_KV, "int4": _SGLANG_KV},
                     "vllm": {"int8": _VLLM_KV, "int4": _VLLM_KV},
                     "trtllm": {"int4": "trtllm stores no int4 KV cache (its KV formats are fp8, int8 and nvfp4)"}}


def engine_kv_refusal(engine: str | None, kv_dtype: str) -> str | None:
    """Why `engine` cannot store a `kv_dtype` KV cache (ENGINE_KV_REFUSED), or None."""
    why = ENGINE_KV_REFUSED.get(engine or "", {}).get(kv_dtype)
    if why is None:
        return None
    return f"--kv-dtype {kv_dtype}: {why.format(kv=kv_dtype)}; pick another --kv-dtype or --engine"


def kv_format_refusal(engine: str | None, hw, kv_dtype: str) -> str | None:
    """Why `engine` does not keep a `kv_dtype` cache on `hw`, or None (the twenty-fourth audit, K1):
    nvfp4 is NVIDIA's format, and its cache runs on datacenter Blackwell only (compute capability 10.x): vLLM's
    through FlashInfer's trtllm-gen path (PR #40177; 'is_device_capability_family(100)', issue #49011), TensorRT-LLM's
    'only available for SM10X in trtllm-gen' (issue #10241); none on AMD. What an engine stores on no GPU is
    ENGINE_KV_REFUSED's (engine_kv_refusal)."""
    if kv_dtype == "nvfp4" and engine is not None:
        cc = nvidia_capability(hw)
        if hw.vendor == "AMD" or (cc is not None and cc[0] != 10):
            return (f"--kv-dtype nvfp4: an NVFP4 KV cache runs on datacenter Blackwell only (compute capability 10.x), "
                    f"not on {hw.name}: these times and pools are of a deployment that does not start")
    return None


def check_speculate(speculate, flag: str = "--speculate") -> None:
    """--speculate, where given: not empty (the fifteenth audit, E4: '' had been taken as no speculation by estimate,
    compare, roofline and serve, where sweep and ' ' refuse it)."""
    if isinstance(speculate, str) and not speculate:
        raise KvcalcError(f"{flag}: empty; expected a method (draft, eagle, mtp, medusa or ngram), or leave it out")


def unused_tpot_limit(output_len: int, max_tpot_ms) -> str | None:
    """The warning for a TPOT limit on one-token outputs, which have no TPOT (the twelfth audit, P11: counted as met
    without a word), or None."""
    if max_tpot_ms is not None and output_len == 1:
        return "--max-tpot-ms: no effect with --output-len 1: no token follows the first, so there is no TPOT to limit"
    return None


def case_hint(value: object, options) -> str:
    """' (did you mean x?)' where a value differs from one of the options by letter case only, else '': -m and -g
    fold case, engine and format names do not (the twelfth audit, E10: refused with no word of why)."""
    folded = str(value).lower()
    match = next((o for o in options if str(o).lower() == folded and o != value), None)
    return f" (did you mean {match}?)" if match else ""
