"""kvcalc web's routes (FastAPI): each calls one function of views.py (the CLI command's library call) and returns
its JSON, its CSV or its page. No logic here beyond choosing the representation."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from kvcalc import __version__
from kvcalc.serialize import csv_text, json_text
from kvcalc.web import pages
from kvcalc.web.params import InputError, options, refuse_repeated_keys
from kvcalc.web.views import REFUSED, VIEWS

STATIC = Path(__file__).parent / "static"
WARNINGS_HEADER = "X-Kvcalc-Warnings"  # an /api answer's warnings (what the CLI prints on stderr), a JSON list
COMMANDS = tuple(VIEWS)


def _query(request: Request) -> dict:
    return dict(request.query_params)


def _once_each(request: Request, command: str) -> None:
    """A query key given twice is an InputError naming its flag (the sixth audit: batch=1&batch=2 took the last);
    params.parse sees the keys after the query string has kept one of each."""
    refuse_repeated_keys(command, [key for key, _ in request.query_params.multi_items()])


def _openapi_parameters(command: str) -> list[dict]:
    """The CLI command's options as OpenAPI query parameters (names, defaults and help come from the CLI), less those
    the web app refuses (views.REFUSED: files, --simulate); any other key is a 422 naming it."""
    params = []
    for p in options(command):
        if p.name in REFUSED.get(command, ()) or p.name == "explain":  # the API answers --explain with a 422: the
            # derivations are the page's (api() below; the twentieth audit, W7's rest: advertised as a boolean)
            continue
        d = getattr(p.default, "value", p.default)
        if p.name == "format":  # the API answers json (or csv); the table is the page's (the twentieth audit, W7: a
            # client that sent the advertised default "table" was refused)
            d = "json"
        kind = ("boolean" if p.is_flag else "integer" if isinstance(d, int) and not isinstance(d, bool)
                else "number" if isinstance(d, float) else "string")
        if d is None:  # an option without a default (--max-ttft-ms) by the type it parses: typer's bare_type ('int',
            # 'float'), or, in releases without it, click's ParamType name ('integer', 'float'); it had been advertised
            # as a string (the twentieth audit, W7's rest)
            bare = getattr(p, "bare_type", None)
            parsed = bare() if callable(bare) else getattr(getattr(p, "type", None), "name", "")
            kind = {"int": "integer", "integer": "integer", "float": "number"}.get(parsed, kind)
        schema = {"type": kind} if d is None or callable(d) else {"type": kind, "default": d}
        if p.name == "format":
            schema["enum"] = ["json", "csv"]
        params.append({"name": p.name, "in": "query", "required": bool(p.required), "schema": schema,
                       "description": f"{p.opts[0]}: {p.help or ''}"})
    return params


def create_app() -> FastAPI:
    app = FastAPI(title="kvcalc", version=__version__, docs_url=None, redoc_url=None,
                  description="The kvcalc commands over HTTP: each /api/CMD returns what `kvcalc CMD --format "
                              "json` prints.")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def openapi() -> dict:
        """FastAPI's schema with each /api/CMD's query parameters, the CLI command's options, added when the schema is
        first asked for (/openapi.json, /docs) rather than at start-up: reading an option list builds that command's
        click parameters, which a page does for its own command only (issue 22: start within 1 s)."""
        if app.openapi_schema is None:
            for route in app.routes:  # as openapi_extra={"parameters": ...} at registration would
                name = getattr(route, "name", "")
                if name.startswith("api_"):
                    route.openapi_extra = {"parameters": _openapi_parameters(name.removeprefix("api_"))}
        return FastAPI.openapi(app)

    app.openapi = openapi

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/estimate")

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs():
        return pages.docs(app.openapi())

    def api_route(command: str):
        view_of = VIEWS[command]

        def api(request: Request):
            try:
                _once_each(request, command)
                view = view_of(_query(request))
                if view.params.get("explain"):  # as the CLI refuses --explain with --format json or csv (the tenth
                    # audit, P3: taken and dropped with a 200)
                    raise InputError("--explain: with --format table (the derivations are printed, not a JSON or "
                                     "CSV field)", "--explain")
                fmt = view.params.get("format")  # typer >= 0.29 gives the Format member, older typer its value
                if request.query_params.get("format", "").strip() and getattr(fmt, "value", fmt) not in ("json",
                                                                                                "csv"):
                    # the fourteenth audit, P2: a table asked for had been answered with JSON and a 200; an empty
                    # format= is the API's default, json, as no format is (the twenty-eighth audit, F8)
                    raise InputError(f"--format: the API answers json or csv, got {getattr(fmt, 'value', fmt)!r} (the "
                                     "table is the page's)", "--format")
            except InputError as e:
                return JSONResponse({"error": e.message, "field": e.field}, status_code=422)
            # what the command line prints on stderr, which the body (stdout's) does not hold for every command (a
            # frontier's rows, csv), as a JSON list in a header (the twentieth audit, W10: the API had dropped them)
            said = {WARNINGS_HEADER: json.dumps(view.warnings)} if view.warnings else {}
            if getattr(fmt, "value", fmt) == "csv":
                return Response(csv_text(view.csv_rows), media_type="text/csv",
                                headers={"Content-Disposition": f'attachment; filename="kvcalc-{command}.csv"',
                                         **said})
            return Response(json_text(view.json), media_type="application/json", headers=said)

        app.get(f"/api/{command}", name=f"api_{command}", summary=f"kvcalc {command} --format json",
                description=f"What `kvcalc {command} --format json` prints (format=csv: --format csv); the warnings "
                            f"it prints on stderr, as a JSON list of strings, in the {WARNINGS_HEADER} header.")(api)

    def page_route(command: str):
        view_of = VIEWS[command]

        def page(request: Request):
            query = _query(request)
            if request.query_params.get("format", "").strip() in ("json", "csv") and any(
                    p.name == "format" for p in options(command)):  # the API's answer, which the page had ignored
                # for its table (the twentieth audit, W9); only a value the API takes, of a command with --format,
                # else the page's own error (the thirty-third audit, web 6: format=JSON, and roofline's format=json,
                # had been redirected to a refusal)
                return RedirectResponse(f"/api/{command}?{request.url.query}", status_code=307)
            if not query:
                return HTMLResponse(pages.page(command, query, None, None))
            try:
                _once_each(request, command)
                return HTMLResponse(pages.page(command, query, view_of(query), None))
            except InputError as e:
                return HTMLResponse(pages.page(command, query, None, e), status_code=422)

        app.get(f"/{command}", name=f"page_{command}", include_in_schema=False, response_class=HTMLResponse)(page)

    for command in COMMANDS:
        api_route(command)
        page_route(command)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn until interrupted."""
    import importlib

    import uvicorn

    # The library the pages call, loaded with the server rather than by the first request of a page (issue 22: each
    # page's first answer within 300 ms, the start within 1 s): the specs' schemas and the step timer every page
    # uses, and numpy, which plan's search runs on (~0.15 s of the start together). Nothing is computed here.
    for module in ("numpy", "kvcalc.estimator", "kvcalc.planning.plan"):
        importlib.import_module(module)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
