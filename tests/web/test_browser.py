"""kvcalc web in a real browser: headless Chromium (Debian's chromium package) driven by Playwright loads each
page, fills its form, checks every number shown equals the CLI's --format json, follows the shared URL, triggers
a bad input and sees the CLI's message beside the field, downloads the CSV, hovers a roofline point, and saves a
screenshot of each page under tests/web/screenshots/.

Skipped, with the reason, where Playwright or Chromium is missing; KVCALC_REQUIRE_BROWSER=1 (set by .ci/run) turns
that skip into a failure. Playwright's own browser download is never used: the system Chromium is launched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

SHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; the dev extra has it)"
    if not os.path.exists(CHROMIUM):
        return "no Chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)"
    return None


if _missing():
    if os.environ.get("KVCALC_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"KVCALC_REQUIRE_BROWSER=1 but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)

# one worker for the module under pytest-xdist (pyproject's --dist loadgroup): one browser for its pages
pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True,
                                  base_url=server_url)
    context.set_default_timeout(15_000)
    p = context.new_page()
    outside = []  # nothing may leave 127.0.0.1: no CDN, no fonts
    p.on("request", lambda r: None if r.url.startswith(server_url) else outside.append(r.url))
    yield p
    context.close()
    assert not outside, outside


# page -> (form fields to fill, the same inputs as CLI arguments, the table ids and the JSON path they show)
PAGES = {
    "estimate": ({"model": "llama-3-8b", "batch": "8", "context": "8192", "kv_dtype": "fp8"},
                 ["-m", "llama-3-8b", "-b", "8", "-c", "8192", "--kv-dtype", "fp8"], {"headline": "", "all": ""}),
    "compare": ({"model": "mistral-7b", "batch": "4"}, ["-m", "mistral-7b", "-b", "4"], {"rows": ""}),
    "capacity": ({"model": "llama-3-8b", "context": "16384", "price_per_gpu_hour": "3"},
                 ["-m", "llama-3-8b", "-c", "16384", "--price-per-gpu-hour", "3"], {"result": ""}),
    "serve": ({"model": "llama-3-8b", "input_len": "2000", "output_len": "300", "concurrency": "1,8,32,128",
               "max_tpot_ms": "25"},
              ["-m", "llama-3-8b", "-i", "2000", "--output-len", "300", "-n", "1,8,32,128", "--max-tpot-ms", "25"],
              {"rows": ""}),
    "plan": ({"model": "llama-3-8b", "input_len": "1000", "output_len": "200", "request_rate": "5",
              "max_tpot_ms": "50", "engines": "vllm", "max_gpus_per_replica": "4", "disaggregate": "false"},
             ["-m", "llama-3-8b", "-i", "1000", "-o", "200", "--request-rate", "5", "--max-tpot-ms", "50",
              "--engines", "vllm", "--max-gpus-per-replica", "4", "--no-disaggregate"], {"frontier": "frontier"}),
}


def _fill(page, fields: dict) -> None:
    for name, value in fields.items():
        locator = page.locator(f"#f-{name}")
        if locator.evaluate("e => e.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)
    with page.expect_navigation():
        page.click("#submit")


def _lookup(obj, path: str):
    for part in path.split(".") if path else []:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def _shown(page, table_id: str) -> dict:
    return dict(page.eval_on_selector_all(f"#{table_id} [data-key]",
                                          "els => els.map(e => [e.dataset.key, e.dataset.value])"))


def _assert_numbers_are_the_cli_json(page, tables: dict, expected) -> int:
    checked = 0
    for table_id, base in tables.items():
        shown = _shown(page, table_id)
        assert shown, f"#{table_id} shows no numbers"
        for key, value in shown.items():
            assert json.loads(value) == _lookup(expected, f"{base}.{key}" if base else key), (table_id, key)
            checked += 1
    return checked


@pytest.mark.parametrize("name", PAGES)
def test_page_form_numbers_share_url_and_csv(page, kvcalc_cli, name):
    fields, args, tables = PAGES[name]
    page.goto(f"/{name}")
    assert page.locator("#result").count() == 0  # an empty form runs nothing
    _fill(page, fields)
    page.wait_for_selector("#result")
    query = parse_qs(urlparse(page.url).query)
    assert all(query[k] == [v] for k, v in fields.items()), page.url  # the inputs are in the URL
    expected = kvcalc_cli.json(name, *args)
    assert _assert_numbers_are_the_cli_json(page, tables, expected) >= 5
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=name != "plan")

    # the shared URL, opened afresh, shows the same numbers
    share = page.get_attribute("#share", "href")
    fresh = page.context.new_page()
    fresh.goto(share)
    for table_id in tables:
        assert _shown(fresh, table_id) == _shown(page, table_id)
    fresh.close()

    # the CSV download is what --format csv prints
    with page.expect_download() as info:
        page.click("#csv")
    download = info.value
    assert download.suggested_filename == f"kvcalc-{name}.csv"
    assert Path(download.path()).read_text() == kvcalc_cli.out(name, *args, "--format", "csv")


def test_estimate_memory_bar_and_explain(page, kvcalc_cli):
    page.goto("/estimate?model=llama-3-8b&batch=8&context=8192")
    expected = kvcalc_cli.json("estimate", "-m", "llama-3-8b", "-b", "8", "-c", "8192")
    m = expected["memory"]
    bar_px = page.locator("#memory-bar .bar").bounding_box()["width"]
    widths = {s: page.locator(f"#memory-bar .seg.{s}").bounding_box()["width"] for s in ("weights", "kv")}
    whole = max(m["usable_bytes"], m["required_bytes"])
    assert widths["weights"] == pytest.approx(bar_px * m["weights_bytes"] / whole, abs=2)
    assert widths["kv"] == pytest.approx(bar_px * m["kv_cache_bytes"] / whole, abs=2)
    steps = page.locator("#explain li")
    assert steps.count() >= 5
    # KV per token per layer for GQA: 2 x 8 KV heads x 128 head_dim x 2 bytes (bf16) = 4096 B (Llama 3 8B config)
    assert "2 * 8 * 128 * 2 B" in steps.first.inner_text()


def test_bad_input_shows_the_cli_message_next_to_the_field(page, kvcalc_cli):
    page.goto("/estimate")
    _fill(page, {"model": "llama-3-8b", "tp": "3"})
    message = page.locator("#error-tp")
    assert message.is_visible()
    assert message.inner_text() == kvcalc_cli.error("estimate", "-m", "llama-3-8b", "--tp", "3")
    # beside its field: in the same form row as the --tp input, and the input keeps what was typed
    assert page.locator(".field.bad #f-tp").input_value() == "3"
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "estimate-error.png"))
    page.goto("/serve")
    _fill(page, {"model": "llama-3-8b", "input_len": "100", "output_len": "10", "concurrency": "lots"})
    assert page.locator("#error-concurrency").inner_text() == kvcalc_cli.error(
        "serve", "-m", "llama-3-8b", "-i", "100", "--output-len", "10", "-n", "lots")


def test_roofline_hover_shows_operator_batch_intensity_and_time(page, server_url):
    page.goto("/roofline")
    _fill(page, {"model": "llama-3-8b", "batch": "1,64", "engine": "roofline"})
    data = json.loads(page.context.request.get(f"{server_url}/api/roofline?model=llama-3-8b&batch=1,64"
                                                f"&engine=roofline").text())
    points = page.locator("#roofline-chart circle.pt")
    assert points.count() == len(data["points"]) + len(data["roofs"])  # every operating point, and each ridge
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "roofline.png"), full_page=True)
    lm_head = next(p for p in data["points"] if p["operator"] == "lm_head" and p["batch"] == 64)
    target = page.locator('#roofline-chart circle.pt[data-tip^="lm_head · gqa · batch 64 "]')
    target.hover()
    tip = page.locator("#tip")
    assert tip.is_visible()
    text = tip.inner_text()
    assert text.startswith("lm_head · gqa · batch 64 · intensity ")
    assert f"{lm_head['intensity_flop_per_byte']:,.2f} FLOP/B" in text and f"{lm_head['time_ms']:,.4f} ms" in text
    page.screenshot(path=str(SHOTS / "roofline-hover.png"))
    page.mouse.move(2, 2)
    assert tip.is_hidden()


def test_plan_frontier_draws_the_tpot_limit(page):
    page.goto("/plan?model=llama-3-8b&input_len=1000&output_len=200&request_rate=5&max_tpot_ms=50&engines=vllm"
              "&max_gpus_per_replica=4&disaggregate=false")
    limit = page.locator("#frontier-chart line.limit")
    assert limit.count() == 1 and "TPOT limit 50 ms" in limit.get_attribute("data-tip")
    assert page.locator("#frontier-chart circle.pt").count() > 3
