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
        raise KvcalcError(f"{flag}: expected a whole number from {lo:,} to {hi:,}, got {shown_value(value)}"
                          + (f" {hint}" if hint else ""))
    return value


# The smallest request rate and requests in flight taken: 1e-6 requests/s is one every 11.6 days (the simulator's
# clock runs to 1e10 s, serving/simulate.py); below it, 5e-324 (the smallest double) had divided by zero in serve's
# steady state (the fresh audit).
MIN_REQUEST_RATE = 1e-6
MIN_CONCURRENCY = 1e-6


def check_number(flag: str, value, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """A finite number in [lo, hi] ((lo, hi] with lo_open)."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and finite(value)
          and (value > lo if lo_open else value >= lo) and value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise KvcalcError(f"{flag}: expected a finite number in {interval}, got {shown_value(value)}")
    return value


def check_price(value) -> None:
    """--price-per-gpu-hour, where given: a positive finite price."""
    if value is not None:
        check_number("--price-per-gpu-hour", value, 0, MAX_PRICE, lo_open=True)


def finite(value) -> bool:
    """math.isfinite, False for an int past the largest double (whose conversion raises OverflowError; the
    thirty-seventh audit, fuzz 1: 10**400 had crashed every float check)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown_value(value) -> str:
    """A value as an error message echoes it: repr, cut past 40 characters (a hostile flag's 5,000 digits)."""
    if isinstance(value, int) and value.bit_length() > 14_000:  # 4,214 digits: repr refuses ints past 4,300
        return f"an integer of {value.bit_length():,} bits"  # (sys.get_int_max_str_digits())
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
                          f"{shown_value(value)}")
    return value


def _not_callable(arg: str, value):
    raise KvcalcError(f"{arg}: expected a function to call (or None), got {type(value).__name__} {shown_value(value)}")


def check_optional_str(arg: str, value):
    """attn= / speculate= and the like: a string, or None for 'none'."""
    if value is not None and not isinstance(value, str):
        raise KvcalcError(f"{arg}: expected a string or None, got {type(value).__name__} {shown_value(value)}")
    return value


def check_str(arg: str, value):
    if not isinstance(value, str):
        raise KvcalcError(f"{arg}: expected a string, got {type(value).__name__} {shown_value(value)}")
    return value


def check_sequence(arg: str, value, element=None) -> list:
    """A list-like argument (sweep's models, compare's attn, ...): a str is refused rather than read letter by
    letter; each element passes `element(arg, x)` where given."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise KvcalcError(f"{arg}: expected a list (e.g. [{shown_value(value)}]), got {type(value).__name__} "
                          f"{shown_value(value)}")
    items = [plain_scalar(x) for x in value]
    if not items:
        raise KvcalcError(f"{arg}: empty list; expected at least one value")
    return [element(arg, x) for x in items] if element else items


def check_vllm_version_arg(arg: str, value) -> str:
    """vllm_version=: a string such as "0.11" or "latest"; a float or int (0.11, the natural spelling) is read as
    the text it prints as (repr: 0.11 -> "0.11")."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise KvcalcError(f"{arg}: expected a release such as \"0.11\", got {type(value).__name__} {shown_value(value)}")
    # a float that is not finite, an int no release is (repr also refuses one past 4,300 digits)
    if isinstance(value, float) and not finite(value) or isinstance(value, int) and value.bit_length() > 64:
        raise KvcalcError(f"{arg}: expected a release such as \"0.11\", got {shown_value(value)}")
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
    raise KvcalcError(f"{arg}: expected (prefill GPUs, decode GPUs) such as (2, 6) or \"2:6\", got {shown_value(value)}")


def check_bool_arg(arg: str, value):
    """A switch such as plan's speculate=: True or False."""
    if not isinstance(value, bool):
        raise KvcalcError(f"{arg}: expected True or False, got {type(value).__name__} {shown_value(value)}")
    return value


def check_optional_path(arg: str, value):
    """simulate's trace=: a path (a str or a pathlib.Path), or None."""
    import os

    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise KvcalcError(f"{arg}: expected a file path or None, got {type(value).__name__} {shown_value(value)}")
    return value


def check_release_arg(arg: str, value):
    """engine_version=: None (today's release), or a release or band as vllm_version= takes one (the twenty-eighth
    audit, F4: 0.11 had ended in an AttributeError)."""
    return None if value is None else check_vllm_version_arg(arg, value)


def check_profile_arg(arg: str, value):
    """serve's profile=: an EngineProfile object (calibrate's), or None (the twenty-eighth audit, F5)."""
    from kvcalc.specs.profile import EngineProfile

    if value is not None and not isinstance(value, EngineProfile):
        raise KvcalcError(f"{arg}: expected an EngineProfile or None (profile_file= takes a file), got "
                          f"{type(value).__name__} {shown_value(value)}")
    return value


_SCALAR_ARGS = {
    "model": check_ref, "gpu": check_ref, "attn": check_optional_str, "search_speculation": lambda _, v: check_bool_arg("speculate", v),  # plan's switch
    "speculate": check_optional_str, "engine": check_str, "weight_dtype": check_str, "kv_dtype": check_str,
    "vllm_runner": check_str, "arrivals": check_str, "vllm_version": check_vllm_version_arg,
    "disaggregate": check_disaggregate_arg, "keep_timeline": check_bool_arg, "trace": check_optional_path,
    "engine_version": check_release_arg, "profile_file": check_optional_path, "profile": check_profile_arg,
    # the thirty-sixth audit, web 1 and 4: a list for simulate's scheduler was an unhashable-type TypeError, an int
    # for sweep's callback a TypeError after the first cell
    "scheduler": check_optional_str, "length_client": check_str, "dataset": check_str,
    "on_combination": lambda arg, v: v if v is None or callable(v) else _not_callable(arg, v),
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


def api_label(message: str, parameters, keywords: dict[str, str] | None = None) -> str:
    """A checker's message with the CLI flags it opens with (`--batch:`, `--concurrency / --request-rate:`) named as
    the API's keywords where the function has them (batch=, ...): the API caller wrote those (the thirteenth audit,
    E3)."""
    head, sep, rest = message.partition(": ")
    if not sep or not head.startswith("--"):
        return message
    names = []
    for flag in head.split(" / "):
        word = flag.split(" ", 1)[0]
        keyword = {**API_KEYWORDS, **(keywords or {})}.get(word, word[2:].replace("-", "_"))
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
