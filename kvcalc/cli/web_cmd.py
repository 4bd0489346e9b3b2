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
    if not 1 <= port <= 65535:  # 0 would let the system pick a port this line could not print (the thirty-third
        # audit, web 7: 'http://127.0.0.1:0/')
        raise KvcalcError(f"--port: expected 1 to 65535, got {port}")
    _check_listen(host, port)
    from kvcalc.web.app import serve

    shown = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in a URL (RFC 3986, 3.2.2)
    typer.echo(f"kvcalc web on http://{shown}:{port}/ (Ctrl-C stops it)", err=True)
    serve(host, port)


def _check_listen(host: str, port: int) -> None:
    """A host that does not resolve or a port already taken is one line naming the flag (the fifth audit: uvicorn's
    own ERROR line and exit 3). The probe socket closes at once; uvicorn binds the address again with SO_REUSEADDR."""
    import socket

    if not host.strip():  # uvicorn binds '' to every interface: an unset shell variable (--host "$HOST") would open
        # the app to the network (the thirty-seventh audit, fuzz 6: it had, printing "http://:8000/")
        raise KvcalcError("--host: empty; give 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        raise KvcalcError(f"--host: cannot resolve {host!r} ({getattr(e, 'strerror', None) or e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            flag = "--port" if e.errno in (98, 48, 10048, 13) else "--host"  # EADDRINUSE (Linux, macOS, Windows), EACCES
            raise KvcalcError(f"{flag}: cannot listen on {host}:{port} ({e.strerror or e})") from None
