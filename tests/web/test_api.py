"""kvcalc web's JSON API without a browser (Starlette's TestClient): each /api/CMD answers byte for byte what
`kvcalc CMD --format json` prints (and format=csv what --format csv prints), bad input is HTTP 422 with the CLI's
one-line message and the flag it names, and the OpenAPI schema documents every option."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the dev extra)")


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from kvcalc.web.app import create_app

    return TestClient(create_app())


# (the API's query, the same inputs as CLI arguments)
CASES = {
    "estimate": ("model=llama-3-8b", ["-m", "llama-3-8b"]),
    "estimate-tp": ("model=llama-3-8b&gpu=h200&batch=16&context=8192&tp=2&kv_dtype=fp8",
                    ["-m", "llama-3-8b", "-g", "h200", "-b", "16", "-c", "8192", "--tp", "2", "--kv-dtype", "fp8"]),
    "compare": ("model=llama-3-8b&batch=8", ["-m", "llama-3-8b", "-b", "8"]),
    "capacity": ("model=llama-3-8b&context=8192&price_per_gpu_hour=2.5",
                 ["-m", "llama-3-8b", "-c", "8192", "--price-per-gpu-hour", "2.5"]),
    "serve": ("model=llama-3-8b&input_len=1000&output_len=200&concurrency=8",
              ["-m", "llama-3-8b", "-i", "1000", "--output-len", "200", "-n", "8"]),
    "serve-frontier": ("model=llama-3-8b&input_len=1000&output_len=200&concurrency=1,8,32&tp=1,2&max_tpot_ms=20",
                       ["-m", "llama-3-8b", "-i", "1000", "--output-len", "200", "-n", "1,8,32", "--tp", "1,2",
                        "--max-tpot-ms", "20"]),
    "plan": ("model=llama-3-8b&input_len=1000&output_len=200&request_rate=5&max_tpot_ms=50&engines=vllm"
             "&max_gpus_per_replica=4&disaggregate=false",
             ["-m", "llama-3-8b", "-i", "1000", "-o", "200", "--request-rate", "5", "--max-tpot-ms", "50",
              "--engines", "vllm", "--max-gpus-per-replica", "4", "--no-disaggregate"]),
    "plan-nospec": ("model=deepseek-v3&gpu=h200&input_len=1000&output_len=200&request_rate=2&engines=sglang"
                    "&max_gpus_per_replica=8&disaggregate=false&convert=false&speculate=false",
                    ["-m", "deepseek-v3", "-g", "h200", "-i", "1000", "-o", "200", "--request-rate", "2", "--engines",
                     "sglang", "--max-gpus-per-replica", "8", "--no-disaggregate", "--no-convert", "--no-speculate"]),
}


@pytest.mark.parametrize("case", CASES)
def test_api_json_is_the_cli_json_byte_for_byte(client, kvcalc_cli, case):
    query, args = CASES[case]
    command = case.split("-")[0]
    r = client.get(f"/api/{command}?{query}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.text == kvcalc_cli.out(command, *args, "--format", "json")
    assert "NaN" not in r.text and "Infinity" not in r.text


@pytest.mark.parametrize("case", CASES)
def test_api_csv_is_the_cli_csv(client, kvcalc_cli, case):
    query, args = CASES[case]
    command = case.split("-")[0]
    r = client.get(f"/api/{command}?{query}&format=csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text == kvcalc_cli.out(command, *args, "--format", "csv")


@pytest.mark.parametrize("query, args, field", [
    ("model=llama-3-8b&tp=3", ["-m", "llama-3-8b", "--tp", "3"], "--tp"),  # 3 does not divide 32 query heads
    ("model=llama-3-8b&batch=x", ["-m", "llama-3-8b", "-b", "x"], "--batch"),  # typer's conversion, as the CLI
    ("model=llama-3-8b&kv_dtype=fp7", ["-m", "llama-3-8b", "--kv-dtype", "fp7"], "--kv-dtype"),
    ("model=no-such-model", ["-m", "no-such-model"], "--model"),
    ("gpu=h100-sxm", ["-g", "h100-sxm"], "--model"),  # the required option missing
    ("model=llama-3-8b&context=-1", ["-m", "llama-3-8b", "--context=-1"], "--context"),
])
def test_bad_input_is_422_with_the_cli_message_and_its_flag(client, kvcalc_cli, query, args, field):
    r = client.get(f"/api/estimate?{query}")
    assert r.status_code == 422
    assert r.json() == {"error": kvcalc_cli.error("estimate", *args), "field": field}


def test_bad_input_on_a_page_sits_next_to_its_field(client, kvcalc_cli):
    r = client.get("/estimate?model=llama-3-8b&tp=3")
    assert r.status_code == 422
    message = kvcalc_cli.error("estimate", "-m", "llama-3-8b", "--tp", "3")
    field = re.search(r'<div class="field bad">(.*?)</div>', r.text).group(1)
    assert 'name="tp"' in field and f'id="error-tp" role="alert">{message}</span>' in field


def test_roofline_points_sit_on_the_h100_roofs(client):
    # H100 SXM datasheet: 989.5 dense bf16 TFLOP/s, 3.35 TB/s (hardware_specs/h100-sxm.toml), so the ridge is
    # 989.5e12 / 3.35e12 = 295.4 FLOP/B; with --engine roofline a point below it is memory-bound: time = bytes /
    # 3.35 TB/s, above it compute-bound: time = FLOPs / 989.5 TFLOP/s.
    r = client.get("/api/roofline?model=llama-3-8b&batch=1,256&engine=roofline")
    assert r.status_code == 200, r.text
    data = r.json()
    (bf16,) = [roof for roof in data["roofs"] if roof["dtype"] == "bf16"]
    assert bf16["ridge_flop_per_byte"] == pytest.approx(989.5e12 / 3350e9)
    assert bf16["peak_tflops"] == pytest.approx(989.5)
    for p in data["points"]:
        assert p["intensity_flop_per_byte"] == pytest.approx(p["flops"] / p["bytes"])
        seconds = max(p["bytes"] / 3350e9, p["flops"] / 989.5e12)
        assert p["time_ms"] == pytest.approx(seconds * 1e3), p
    # lm_head at batch 1: 2 x hidden 4096 x vocabulary 128,256 FLOPs (Meta-Llama-3-8B config.json)
    (lm_head,) = [p for p in data["points"] if p["operator"] == "lm_head" and p["batch"] == 1]
    assert lm_head["flops"] == 2 * 4096 * 128256
    assert {p["batch"] for p in data["points"]} == {1, 256}


def test_roofline_bad_batch_names_the_flag(client):
    r = client.get("/api/roofline?model=llama-3-8b&batch=0")
    assert r.status_code == 422 and r.json()["field"] == "--batch"


def test_openapi_documents_every_option_and_docs_work_offline(client):
    schema = client.get("/openapi.json").json()
    for command in ("estimate", "compare", "capacity", "serve", "plan", "roofline"):
        assert f"/api/{command}" in schema["paths"]
    names = {p["name"] for p in schema["paths"]["/api/estimate"]["get"]["parameters"]}
    assert {"model", "gpu", "batch", "context", "tp", "kv_dtype", "format"} <= names
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/estimate" in docs.text
    assert "cdn" not in docs.text.lower()


@pytest.mark.parametrize("path", ["/estimate?model=llama-3-8b", "/roofline?model=llama-3-8b", "/docs", "/plan"])
def test_pages_load_nothing_from_the_network(client, path):
    html = client.get(path).text
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(u.startswith("/") for u in urls), [u for u in urls if not u.startswith("/")]
    for asset in ("/static/kvcalc.css", "/static/kvcalc.js"):
        assert asset in urls and client.get(asset).status_code == 200


def test_page_numbers_are_the_cli_json(client, kvcalc_cli):
    html = client.get("/estimate?model=llama-3-8b&batch=8").text
    expected = json.loads(kvcalc_cli.out("estimate", "-m", "llama-3-8b", "-b", "8", "--format", "json"))
    shown = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', html))
    assert len(shown) > 30
    for key in ("decode.ms", "kv_cache.bytes", "memory.required_bytes", "prefill.ms", "decode.bound"):
        value = expected
        for part in key.split("."):
            value = value[part]
        assert json.loads(shown[key].replace("&quot;", '"')) == value


def test_web_command_without_the_extra_says_how_to_install(monkeypatch):
    import importlib.util

    from typer.testing import CliRunner

    from kvcalc.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = CliRunner().invoke(app, ["web"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("kvcalc: error: kvcalc web needs the web extra: pip install 'kvcalc[web]' "
                                     "(FastAPI and uvicorn); missing: uvicorn")


def test_an_error_about_an_option_off_the_form_goes_above_the_fields(client, kvcalc_cli):
    r = client.get("/estimate?model=llama-3-8b&prefill_chunk=0")  # --prefill-chunk: in the URL, not on the form
    assert r.status_code == 422
    message = kvcalc_cli.error("estimate", "-m", "llama-3-8b", "--prefill-chunk", "0")
    assert message.startswith("--prefill-chunk: ")
    assert f'<p class="error" id="error-form" role="alert">{message}</p>' in r.text


@pytest.mark.parametrize("path, flag", [("/api/serve?model=llama-3-8b&input_len=10&output_len=10&simulate=true",
                                         "--simulate"),
                                        ("/api/plan?model=llama-3-8b&input_len=10&output_len=10&emit=vllm", "--emit"),
                                        # a profile file on the server's disk, as estimate's (the twenty-seventh
                                        # audit, R5: serve's had no test)
                                        ("/api/serve?model=llama-3-8b&input_len=10&output_len=10&concurrency=1"
                                         "&profile=p.toml", "--profile"),
                                        ("/api/serve?model=llama-3-8b&input_len=10&output_len=10&concurrency=1"
                                         "&burstiness=0.5", "--burstiness")])
def test_what_the_web_app_does_not_offer_is_refused_by_name(client, path, flag):
    r = client.get(path)
    assert r.status_code == 422 and r.json()["field"] == flag
    assert r.json()["error"].startswith(f"{flag}: not in kvcalc web")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.one_of(st.integers(-2, 300), st.sampled_from(["x", "1.5", " ", "1e3"])),
       context=st.integers(-5, 200_000), tp=st.sampled_from([1, 2, 3, 4, 8, 16]),
       kv_dtype=st.sampled_from(["bf16", "fp8", "int4", "fp7"]),
       model=st.sampled_from(["llama-3-8b", "mixtral-8x7b", "deepseek-v2-lite", "gemma-2-9b"]))
def test_any_estimate_input_gives_the_cli_bytes_or_the_cli_message(client, kvcalc_cli, batch, context, tp, kv_dtype,
                                                                     model):
    # the invariant of the whole app: the web answers whatever the CLI answers, success or one-line error
    from typer.testing import CliRunner

    from kvcalc.cli import app

    query = {"model": model, "batch": str(batch), "context": str(context), "tp": str(tp), "kv_dtype": kv_dtype}
    r = client.get("/api/estimate", params=query)
    args = ["estimate", "-f", "json", *(a for k, v in query.items() if v.strip()
                                        for a in (f"--{k.replace('_', '-')}={v}",))]
    result = CliRunner().invoke(app, args)
    if result.exit_code == 0:
        assert r.status_code == 200 and r.text == result.stdout
    else:
        assert result.exit_code == 2 and r.status_code == 422
        assert r.json()["error"] == result.stderr.strip().splitlines()[-1].removeprefix("kvcalc: error: ")


def test_36_web6_an_error_echoes_a_hostile_query_only_in_part(client):
    """A 5,000-character value or a 60,000-character unknown key had been echoed whole in the 422's one-line message
    (the thirty-sixth audit, web 6): the key's name is cut at 60 characters, a message at 600."""
    r = client.get("/api/estimate?model=llama-3-8b&attn=" + "x" * 5000)
    # (since the thirty-seventh audit, fuzz 7, the value itself is cut at 40 characters before the message is)
    assert r.status_code == 422 and len(r.json()["error"]) < 700 and "x" * 41 not in r.json()["error"]
    assert "(5002 characters)" in r.json()["error"]
    r = client.get("/api/estimate?model=llama-3-8b&" + "y" * 60000 + "=1")
    assert r.status_code == 422 and r.json()["error"].startswith("y" * 60 + "...: not an option of kvcalc estimate")
    assert len(r.json()["error"]) < 2000
