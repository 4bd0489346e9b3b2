"""kvcalc web's start (issue 22: within 1 s on a 2-core machine, benchmarks/web_speed.py): the app builds a page's
option list when that page is first asked for, as `kvcalc NAME` builds only NAME's command, and the options it
builds are the whole CLI's; the web app takes its rendering from kvcalc/report/ and its option syntax from
kvcalc/option_values.py, not from the commands' modules."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "kvcalc" / "web"
PAGES = ("estimate", "compare", "capacity", "serve", "plan", "roofline")


def test_the_app_starts_without_building_a_command_and_a_page_builds_only_its_own():
    from kvcalc.cli import COMMAND_MODULES

    code = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from kvcalc.web.app import create_app\n"
        "c = TestClient(create_app())\n"
        "loaded = lambda: sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('kvcalc.cli.'))\n"
        "at_start = loaded()\n"
        "assert c.get('/estimate').status_code == 200\n"
        "print(json.dumps([at_start, loaded()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    at_start, after_estimate = json.loads(out.stdout)
    commands = set(COMMAND_MODULES.values())
    assert not commands & set(at_start)
    assert commands & set(after_estimate) == {"estimate_cmd"}


def _info(param) -> dict:
    """What a click option carries (name, flags, default, type, help...), addresses left out."""
    out = {}
    for k in dir(param):
        if k.startswith("_"):  # typer's internals (its adapters' caches) are not what an option says
            continue
        try:
            v = getattr(param, k)
        except (AttributeError, TypeError, RuntimeError) as e:  # a property click raises on for this option
            v = type(e)
        if not callable(v) or isinstance(v, type):
            out[k] = re.sub(r" at 0x[0-9a-f]+", "", repr(v))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_a_pages_options_are_the_whole_clis(page):
    from typer.main import get_command

    from kvcalc.cli import app
    from kvcalc.web.params import command

    whole = get_command(app).commands[page]
    mine = command(page)
    assert [_info(p) for p in mine.params] == [_info(p) for p in whole.params]
    assert mine.help == whole.help and len(mine.params) > 5


def test_the_web_app_imports_no_command_module():
    """Only params.py reads the CLI, by design: its click commands (kvcalc.cli's app) parse a query as the command
    line parses its options. Everything else comes from the library, kvcalc/report/ and kvcalc/option_values.py."""
    imported = {}
    for path in sorted(WEB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kvcalc.cli"):
                imported.setdefault(path.name, set()).add(node.module)
    assert imported == {"params.py": {"kvcalc.cli"}}


def test_cli_and_web_print_json_and_csv_with_the_same_functions():
    from kvcalc.cli import output
    from kvcalc import serialize
    from kvcalc.web import app

    assert output.json_safe is serialize.json_safe and output.flatten is serialize.flatten
    import contextlib
    import io

    rows = [{"kv_bytes": 1.5, "warnings": ["a", "b"], "nested": {"x": float("nan")}}]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        output.write_csv(rows)
    # the version first and the empty cell's reason beside it, as the JSON gives them (the fortieth audit, outputs 2, 5)
    assert out.getvalue() == serialize.csv_text(rows) == (
        "schema_version,kv_bytes,warnings,nested.x,nested.x_note\n"
        "1,2,a; b,,undefined: 0 / 0 (nothing fits in the reference case)\n")
    assert serialize.csv_text(rows, document=False) == "kv_bytes,warnings,nested.x\n2,a; b,\n"  # sweep's data
    assert app.json_text is serialize.json_text and app.csv_text is serialize.csv_text
