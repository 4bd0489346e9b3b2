"""The thirty-third hostile audit's web findings (docs/validation.md, "Thirty-third hostile audit"): each test calls
the app as tests/web/test_api.py does (Starlette's TestClient, no server)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="kvcalc web needs the web extra: pip install -e '.[web]'")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    return TestClient(create_app())


def _detail(response) -> str:
    return json.dumps(response.json())


def test_33_web2_whether_a_file_exists_where_the_server_runs_changes_no_answer(client, tmp_path, monkeypatch):
    """'model=fuzz.py' had answered "is a file path" where such a file lay in the server's folder and "unknown model"
    where not, and 'd/m' "a file path" beside 'd/zz' "not in the local Hugging Face cache": a probe of the host's
    files. Names resolve as names only: bundled specs and cached repo ids."""
    (tmp_path / "fuzz.py").write_text("")
    (tmp_path / "d" / "m").mkdir(parents=True)
    (tmp_path / "d" / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for here, absent in (("fuzz.py", "nofile.py"), ("d/m", "d/zz")):
        a, b = (client.get("/api/estimate", params={"model": m}) for m in (here, absent))
        assert a.status_code == b.status_code == 422
        assert _detail(a).replace(here, "X") == _detail(b).replace(absent, "X")


def test_33_web3_a_folder_named_as_a_bundled_model_does_not_hide_it(client, tmp_path, monkeypatch):
    (tmp_path / "llama-3-8b").mkdir()
    monkeypatch.chdir(tmp_path)
    r = client.get("/api/estimate", params={"model": "llama-3-8b"})
    assert r.status_code == 200, r.text
    assert r.json()["inputs"]["model"] == "llama-3-8b"


def test_33_web1_a_frontier_of_thousands_of_points_is_refused_not_run(client):
    """5,000 concurrencies x 6 TP degrees had run 30,000 serve() points (84 s, 70 MB of HTML) under the app's one lock,
    every other request waiting; the command line took 90 s. Refused at once, naming --concurrency."""
    many = ",".join(str(c) for c in range(1, 5001))
    r = client.get("/api/serve", params={"model": "llama-3-8b", "input_len": 1000, "output_len": 200,
                                         "tp": "1,2,4,8,16,32", "concurrency": many})
    assert r.status_code == 422 and "30,000 points" in r.text and "--concurrency" in r.text


def test_33_web7_port_0_is_refused_rather_than_printed_as_the_address():
    """--port 0 had printed 'http://127.0.0.1:0/', the port the system then picked never shown."""
    from typer.testing import CliRunner

    from kvcalc.cli import app

    out = CliRunner().invoke(app, ["web", "--port", "0"])
    assert out.exit_code == 2 and "--port: expected 1 to 65535, got 0" in out.output


@pytest.mark.parametrize("path, fmt", [("/estimate", "JSON"), ("/roofline", "json")])
def test_33_web6_the_page_redirects_only_a_format_the_api_takes(client, path, fmt):
    """format=JSON (the API's values are lower case) and roofline's format=json (roofline has no --format) had been
    redirected to an API refusal; the page answers them itself."""
    r = client.get(path, params={"model": "llama-3-8b", "format": fmt}, follow_redirects=False)
    assert r.status_code != 307
    assert client.get("/estimate", params={"model": "llama-3-8b", "format": "json"},
                      follow_redirects=False).status_code == 307


@pytest.mark.parametrize("path, params, field", [
    ("/api/capacity", {"model": "llama-3-8b", "context": 1000000000}, "--context"),
    ("/api/serve", {"model": "llama-3-8b", "input_len": 1, "output_len": 1000000, "concurrency": 1}, "--tp"),
])
def test_33_web4_a_refusal_names_the_field_the_form_shows_it_beside(client, path, params, field):
    """A context past every GPU, and a request past the pool, had come back with "field": null, shown above the form
    rather than beside a field, where /docs promises the flag."""
    r = client.get(path, params=params)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
