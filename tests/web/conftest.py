"""kvcalc web's test fixtures: the app served by uvicorn in a thread on a free port of 127.0.0.1, and the CLI's
own output (typer's CliRunner) to compare the web's numbers with."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="kvcalc web needs the web extra: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="kvcalc web needs the web extra: pip install -e '.[web]'")


def cli(*args: str) -> str:
    """What `kvcalc ARGS` prints on stdout (exit code 0 asserted)."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def cli_error(*args: str) -> str:
    """The one-line message `kvcalc ARGS` ends with (exit code 2 asserted), without 'kvcalc: error: '."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, (args, result.output)
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("kvcalc: error: "), line
    return line.removeprefix("kvcalc: error: ")


def cli_json(*args: str):
    return json.loads(cli(*args, "--format", "json"))


class Cli:
    """The CLI as the tests call it: out (stdout), error (the one-line message), json (--format json parsed)."""

    out = staticmethod(cli)
    error = staticmethod(cli_error)
    json = staticmethod(cli_json)


@pytest.fixture(scope="session")
def kvcalc_cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def server_url():
    import uvicorn

    from kvcalc.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
