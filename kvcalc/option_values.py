"""Option values the command line and the web app read alike (the web app reads a query string as `kvcalc CMD` reads
its options): comma-separated lists, PREFILL:DECODE GPU pairs and GPU=PRICE pairs. A value that does not parse is a
KvcalcError naming the flag and what was expected. Moved here from kvcalc/cli/ so that kvcalc/web/ need not import
the commands' modules for them."""

from __future__ import annotations

import re

from kvcalc.checks import shown_value
from kvcalc.errors import KvcalcError


def ascii_digits(flag: str, text: str) -> str:
    """`text` where it is ASCII; a number written in other scripts' digits ('٣', full-width '２', which Python's int()
    and float() take) is an error naming the flag, as the typer-parsed options refuse it (the fifth audit)."""
    if not text.isascii():
        raise KvcalcError(f"{flag}: expected ASCII digits, got {shown_value(text)}")
    return text


def first_repeat(values):
    """The first value listed a second time, or None; one pass (a list's `in` had made 20,000 values take 8 s: the
    thirty-fourth audit, API 7)."""
    seen: set = set()
    return next((v for v in values if v in seen or seen.add(v)), None)


def split(flag: str, text: str, cast=str) -> list:
    """'a,b,c' -> [a, b, c]; an empty list or a value that does not parse is an error naming the flag."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise KvcalcError(f"{flag}: empty list; expected comma-separated values")
    if not all(items):  # the third audit: --tp 1,,2 had passed as 1,2
        raise KvcalcError(f"{flag}: an empty item in {shown_value(text)}; expected comma-separated values")
    if cast is not str:
        ascii_digits(flag, text)
    try:
        values = [cast(t) for t in items]
    except ValueError:
        raise KvcalcError(f"{flag}: expected comma-separated {cast.__name__} values, got {shown_value(text)}") from None
    # a value listed twice, as serve's lists refuse it (the twentieth audit, W6: roofline --batch 1,1,... had drawn
    # every point again, and --gpu h100-sxm,h100-sxm made duplicate rows)
    twice = first_repeat(values)
    if twice is not None:
        raise KvcalcError(f"{flag}: {twice} listed twice in {text[:80]!r}; give each value once")
    return values


def speculate_forms(text: str | None) -> list:
    """sweep's --speculate: forms separated by ';', none (or no flag) for plain decoding (None); an empty item or an
    empty list is an error naming the flag, and a form given twice is one column value (the tenth audit, E1: ';;'
    had added a plain row, a repeated form two identical rows, and ' ' had meant none)."""
    if text is None:
        return [None]
    items = [t.strip() for t in text.split(";")]
    if not any(items):
        raise KvcalcError(f"--speculate: empty list in {shown_value(text)}; expected forms separated by ';' (none for plain)")
    if not all(items):
        raise KvcalcError(f"--speculate: an empty item in {shown_value(text)}; expected forms separated by ';' (none for plain)")
    return list(dict.fromkeys(None if t == "none" else t for t in items))


def attn_variants(text: str) -> list:
    """--attn of compare and roofline: the variants, own or none standing for the model's own attention (None)."""
    return [None if a in ("own", "none") else a for a in split("--attn", text)]


def percentile_number(text) -> float | None:
    """--percentile as serve and plan spell it: 90, p90, P90 or 90.0 -> 90.0; None where the text is not one (other
    scripts' digits included). Its range is each command's to check."""
    raw = str(text).strip()
    number = raw[1:] if raw[:1] in ("p", "P") else raw
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]*)?", number):  # p 90, p+90, p1e1, p9_0 (the seventh audit, V11)
        return None
    return float(number)


def int_list(flag: str, text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (serve's --tp and --concurrency); a value listed twice is an error (the sixth audit:
    `-n 1,1` gave the same frontier row twice)."""
    return split(flag, text, int)  # (split refuses a value listed twice)


def disaggregate_pair(text: str | None) -> tuple[int, int] | None:
    """--disaggregate PREFILL_GPUS:DECODE_GPUS -> (prefill, decode); None where not given."""
    if text is None:
        return None
    parts = ascii_digits("--disaggregate", text).split(":")
    try:
        prefill, decode = (int(x) for x in parts)
    except ValueError:
        raise KvcalcError(f"--disaggregate: expected PREFILL_GPUS:DECODE_GPUS such as 2:6, got {shown_value(text)}") from None
    return prefill, decode


def names(flag: str, text: str) -> list[str]:
    """plan's --gpu and --engines: a comma-separated list of names."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):  # '' or 'a,,b' (the third audit: --engines '' had searched every engine)
        raise KvcalcError(f"{flag}: expected a comma-separated list of names, got {shown_value(text)}")
    return items


def parse_prices(text: str | None) -> float | dict[str, float] | None:
    """--price-per-gpu-hour: one price for every GPU type (3.5), or GPU=PRICE pairs (h200=3.5,b200=5)."""
    if text is None:
        return None
    try:
        if "=" not in ascii_digits("--price-per-gpu-hour", text):
            return float(text)
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        prices = {k.strip(): float(v) for k, v in pairs}
    except ValueError:
        raise KvcalcError(f"--price-per-gpu-hour: expected a number or GPU=PRICE pairs such as h200=3.5,b200=5, "
                          f"got {shown_value(text)}") from None
    if len(prices) < len(pairs):  # the third audit: h100-sxm=3,h100-sxm=4 had kept the last
        raise KvcalcError(f"--price-per-gpu-hour: a GPU priced twice in {shown_value(text)}; give each one price")
    return prices


# A number written with '_' separators ("1_6", "p9_0", "4,8_0"): Python's int() and float(), which click's types
# call, read it, where every file kvcalc reads refuses it (specs/files.plain_number_text; the seventh audit, V11)
_SEPARATED = re.compile(r"[+-]?[pP]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?")


# Options whose values are names or paths, never numbers: a model directory or file named 3_2 is a path (the eighth
# audit, V2: `--model 3_2` had been refused as a number); likewise `--speculate draft=PATH`
NAME_OR_PATH_OPTIONS = frozenset({
    "--model", "--gpu", "--profile", "--out", "--out-dir", "--plot", "--trace", "--published",
    "--serve", "--engine-memory", "--rescore", "--from-benchmark", "--base", "--name", "--host", "--device",
    "--data", "--measured", "--measurements", "--from", "--to"})


def refuse_separated_number(flag: str, value: str) -> None:
    """A flag's value, or any number inside it (lists, key=value pairs, P:D splits: --speculate k=1_0,
    --price-per-gpu-hour h200=2_5, --disaggregate 1_0:1), written with '_' separators is an error naming the flag.
    Names and paths (NAME_OR_PATH_OPTIONS, a draft= path) are not numbers, whatever they look like."""
    if flag in NAME_OR_PATH_OPTIONS:
        return
    for item in re.split(r"[,;]", value):
        if item.strip().lower().startswith("draft="):
            continue
        for part in re.split(r"[:=]", item):
            part = part.strip()
            if "_" in part and _SEPARATED.fullmatch(part):
                raise KvcalcError(f"{flag}: {part!r}: write the number without '_' separators")
