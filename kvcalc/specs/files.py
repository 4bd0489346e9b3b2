"""Reading and writing the user's files safely: regular files only, size-capped, checked before any work.

A FIFO or a device named as a spec would block or read forever; a 300-byte name raises ENAMETOOLONG from a plain
exists(); an --out in a missing folder would fail only after minutes of work. Every command goes through here.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import math
import os
import stat
from pathlib import Path

from kvcalc.errors import KvcalcError

MAX_SPEC_BYTES = 1 << 20  # a spec file or config.json is a few KiB; 1 MiB is generous
MAX_TABLE_BYTES = 64 << 20  # CSVs of measurements
NAME_MAX = 255  # bytes in one path component on every common file system


# Whether a model or GPU reference may name a file on this host (contextvars: per request where a server runs several).
# The web app turns it off around each library call (web/views._call): its references are bundled names and cached
# repo ids only, and whether a file of that name exists where the server runs must change neither what it reads nor
# what it answers (the thirty-third audit, web 2 and 3: 'model=fuzz.py' had answered "a file path" where the file
# existed and "unknown model" where not, and a folder named llama-3-8b in the server's folder had hidden the bundled
# spec).
_LOCAL_PATHS = contextvars.ContextVar("kvcalc_local_paths", default=True)


@contextlib.contextmanager
def no_local_paths():
    """References resolve as names only (bundled specs, the Hugging Face cache) inside this block."""
    token = _LOCAL_PATHS.set(False)
    try:
        yield
    finally:
        _LOCAL_PATHS.reset(token)


def local_paths_allowed() -> bool:
    return _LOCAL_PATHS.get()


def is_existing_path(ref: str) -> bool:
    """Whether `ref` names something on disk; False for names no file system accepts (too long, NUL bytes), and
    inside no_local_paths()."""
    if not _LOCAL_PATHS.get():
        return False
    try:
        return Path(ref).exists()
    except (OSError, ValueError):
        return False


def is_folder(path: Path) -> bool:
    """Whether path is a folder; False for a name no file system accepts (too long, a NUL), which
    read_regular_file then names (the thirty-seventh audit, fuzz 3: Path.is_dir raised on a 300-character name)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def read_regular_file(path: Path, what: str, limit: int = MAX_SPEC_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is a one-line error naming the file."""
    if not str(path).strip():  # the fifth audit: a blank path printed as "kvcalc: error:  : cannot read"
        raise KvcalcError(f"{str(path)!r}: an empty path; expected {what}")
    try:
        st = path.stat()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise KvcalcError(f"{path}: cannot read ({reason})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, device or socket)"
        raise KvcalcError(f"{_shown(path)}: {kind}; expected {what}")
    if st.st_size > limit:
        raise KvcalcError(f"{path}: {st.st_size:,} bytes; {what} is at most {limit:,}")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise KvcalcError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise KvcalcError(f"{path}: more than {limit:,} bytes; {what} is at most {limit:,}")
    return data


def _shown(path: Path) -> str:
    """A path as a message names it: the command line's empty string arrives as '.' (Path('') is the current folder),
    which the user never typed (the sixth audit)."""
    return f"{path} (the current folder: an empty path reads as '.')" if str(path) == "." else str(path)


def check_writable(path: Path, flag: str, suffixes: tuple[str, ...] | None = None) -> None:
    """Fail before any work when `path` cannot be written: a wrong suffix, a name too long, a missing folder,
    a folder where the file should go, a FIFO, device or socket already at the path, or a folder the user may not
    write to."""
    if suffixes and path.suffix.lower() not in suffixes:  # .TOML and .PNG are the same formats
        raise KvcalcError(f"{flag}: expected a {' or '.join(suffixes)} file, got {_shown(path)}")
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise KvcalcError(f"{flag}: the file name is longer than {NAME_MAX} bytes")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        if path.is_dir():
            raise KvcalcError(f"{flag}: {_shown(path)} is a folder; expected a file to write")
        # fresh audit D: writing to a FIFO waited forever for a reader (sweep -o, roofline -o, plan --plot), and a
        # device or socket is no file to leave a result in either
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise KvcalcError(f"{flag}: {path} is not a regular file (a FIFO, device or socket); expected a file to "
                              f"write")
        if not parent.is_dir():
            what = "is not a folder" if parent.exists() else "does not exist"
            raise KvcalcError(f"{flag}: cannot write {path}: {parent} {what}")
    except OSError as e:
        raise KvcalcError(f"{flag}: cannot write {path} ({e.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KvcalcError(f"{flag}: cannot write {path}: no permission to write in {parent}")


def write_text(path: Path, text: str, flag: str) -> None:
    """Write a file, turning a full device or a lost permission into a one-line error."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        hint = " (the device is full)" if e.errno == errno.ENOSPC else ""
        raise KvcalcError(f"{flag}: cannot write {path} ({e.strerror}){hint}") from None


def plain_number_text(text) -> bool:
    """Whether a file's cell spells a number as its writer means it: in ASCII, without '_' digit separators (float()
    and int() also read '1_00' and other scripts' digits, '٣' and '１００': the sixth audit). Anything but a string
    (a JSON number) passes."""
    return not isinstance(text, str) or (text.isascii() and "_" not in text)


def read_csv_ledger(path: Path, what: str, columns: tuple[str, ...], numbers: tuple[str, ...] = (),
                    optional_numbers: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                    non_negative: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a CSV ledger (a regular file of at most MAX_TABLE_BYTES) that has every one of `columns` once,
    every row as long as the header, a finite number in ASCII digits in each of `numbers` (above zero in each of
    `positive`: a measured rate, time or length; not below zero in each of `non_negative`: a logged size or count) and
    an empty cell or such a number in each of `optional_numbers` (where the header has them); anything else is a
    one-line error naming the file, the line and the column."""
    import csv
    import io

    raw = read_regular_file(path, what, MAX_TABLE_BYTES)
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))  # a BOM is no part of a column name
        reader.fieldnames = [h.strip() for h in reader.fieldnames or ()]  # nor a space after a comma (the seventh
        # audit, V9: the trace reader read "arrival_s, input_len" where the benchmark and ledger readers refused it)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise KvcalcError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
        header = reader.fieldnames or []
        read = {*columns, *numbers, *optional_numbers}  # columns no reader reads may repeat (blank names too)
        twice = next((h for k, h in enumerate(header) if h in read and h in header[:k]), None)
        if twice is not None:  # the sixth audit: the last of two columns of one name had won silently
            raise KvcalcError(f"{path}: line 1, column {twice}: named twice in the header")
        for row in reader:
            line = reader.line_num
            if None in row:
                raise KvcalcError(f"{path}: line {line}: {len(reader.fieldnames) + len(row[None])} cells, more than "
                                  f"the header's {len(reader.fieldnames)}")
            short = [k for k, v in row.items() if v is None]
            if short:
                raise KvcalcError(f"{path}: line {line}, column {short[0]}: missing (the row has "
                                  f"{len(row) - len(short)} of the header's {len(row)} cells)")
            for column in (*numbers, *optional_numbers):
                cell = row.get(column)
                if cell is None or (column in optional_numbers and not cell.strip()):
                    continue
                try:
                    ok = plain_number_text(cell) and math.isfinite(float(cell))
                except ValueError:
                    ok = False
                if not ok:
                    raise KvcalcError(f"{path}: line {line}, column {column}: expected a number, got {cell!r}")
                if column in positive and float(cell) <= 0:  # the fourth audit: 0 was an IndexError, -1 was scored
                    raise KvcalcError(f"{path}: line {line}, column {column}: expected a number above 0, got {cell!r}")
                if column in non_negative and float(cell) < 0:  # the sixth audit: -1 GiB logged was scored
                    raise KvcalcError(f"{path}: line {line}, column {column}: expected a number of at least 0, got "
                                      f"{cell!r}")
            rows.append(row)
    except (UnicodeDecodeError, csv.Error) as e:
        raise KvcalcError(f"{path}: not a CSV ledger ({e})") from None
    if not rows:  # a header alone scored nothing, and the table printers need a first row
        raise KvcalcError(f"{path}: holds no rows under its header (expected {what})")
    return rows


def parse_error(e: Exception) -> str:
    """A parser's error in one line: Python's own for integers past its 4,300-digit limit (a ValueError from
    json, tomllib and yaml alike, whose text names sys.set_int_max_str_digits) reads as what it is."""
    if isinstance(e, ValueError) and "digits" in str(e) and "int" in str(e):
        return "an integer of more than 4,300 digits"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class RepeatedKey(ValueError):
    """A JSON object that names a key twice (the key is the message)."""


def once_each(pairs: list) -> dict:
    """json.loads' object_pairs_hook: the object, refusing a key given twice (json keeps the last silently)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out
