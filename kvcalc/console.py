"""The `kvcalc` console script's entry point: sets the collector's policy for the command, then runs the CLI.

It lives outside kvcalc.cli so that the policy holds while typer, pydantic and the specs load (issue 22's start-up
target): start-up allocates ~10^5 container objects and almost no cyclic garbage, and the collector's passes over
them were ~5 % of `kvcalc estimate`'s run. A one-shot command of a few estimates runs with the collector off (what
refcounting cannot free is reclaimed at exit); every other command (plan, serve --simulate, sweep, web, validate:
long runs, many objects) keeps it, collecting every 10,000 allocations (kvcalc.cli.main)."""

from __future__ import annotations

import gc
import sys

ONE_SHOT = frozenset({"estimate", "models", "gpus", "show", "import", "compare"})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ONE_SHOT:
        gc.disable()
    from kvcalc.cli import main as run

    run()
