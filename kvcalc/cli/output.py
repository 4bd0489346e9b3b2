"""Shared output helpers for the commands: the --format option and writers for json and csv."""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def flatten(d: dict, prefix: str = "") -> dict:
    """Dotted keys for scalar leaves; lists and nested breakdowns are left to the JSON output."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def write_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def write_csv(rows: list[dict]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
