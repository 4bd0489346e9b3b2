"""kvcalc web: the local web app (kvcalc/web/), which needs the optional extra: pip install 'kvcalc[web]'."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from kvcalc.cli import app
from kvcalc.errors import KvcalcError

INSTALL_HINT = "kvcalc web needs the web extra: pip install 'kvcalc[web]' (FastAPI and uvicorn)"


@app.command("web")
def web_cli(
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """A local web app: estimate, compare, roofline, capacity, serve and plan pages, and a JSON API under /api
    that returns what --format json prints."""
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise KvcalcError(f"{INSTALL_HINT}; missing: {', '.join(missing)}")
    if not 0 <= port <= 65535:
        raise KvcalcError(f"--port: expected 0 to 65535, got {port}")
    from kvcalc.web.app import serve

    typer.echo(f"kvcalc web on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    serve(host, port)
