"""The page of ``ran serve`` in a real headless browser: Playwright driving Debian's chromium.

Skipped with a reason where Playwright or chromium is missing, unless ``RAN_REQUIRE_BROWSER=1`` (CI sets
it), which turns the skip into a failure. ``RAN_UPDATE_SCREENSHOT=1`` also writes the screenshot to
docs/serve.png (otherwise it goes to the test's temporary directory, and the tracked file is untouched).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SETTINGS = ("--units", "64", "--max-new-tokens", "8", "--window", "40")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "serve.png"
TIMEOUT_MS = 30_000


def _unavailable(reason: str):
    if os.environ.get("RAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (RAN_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        import starlette  # noqa: F401
        from playwright.sync_api import expect, sync_playwright
    except ImportError as error:
        _unavailable(f"{error.name} is not installed (make setup installs the dev and serve extras)")
    from ran.web.browser import chromium_path, launch

    if chromium_path() is None:
        _unavailable("no chromium found: apt-get install chromium or make browser (Playwright's own browser "
                     "download cannot work without internet), or set RAN_CHROMIUM")
    expect.set_options(timeout=TIMEOUT_MS)  # a loaded 2-core machine can be slow
    with sync_playwright() as playwright:
        browser = launch(playwright)  # headless, a fresh profile
        yield browser
        browser.close()


@pytest.fixture
def served(tmp_path):
    from serve_helpers import Served
    from tiny_models import tiny_session_model_dir

    model = tiny_session_model_dir(tmp_path / "model", 0)
    server = Served("--model", str(model), *SETTINGS, "--session", "s", "--sessions-dir", str(tmp_path / "sessions"))
    yield server
    server.stop()


def _page(browser, url: str, errors: list[str]):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page


def _points(page) -> list[int]:
    return [int(page.get_attribute(f"#plot-{key}", "data-points")) for key in ("norm", "change", "gate", "context")]


def test_page_streams_ticks_resets_and_survives_a_reload(browser, served, tmp_path):
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _page(browser, served.url, errors)
    expect(page.locator("#session-name")).to_have_text("s")
    expect(page.locator("#status")).to_contain_text("tick 0 | state norm 0.0000")

    page.fill("#message", "w5 w6 w7")
    page.press("#message", "Enter")
    expect(page.locator("#plot-norm")).to_have_attribute("data-points", "1")
    expect(page.locator(".entry.you")).to_have_text("youw5 w6 w7")
    reply = page.locator(".entry.ran .reply").first.text_content()
    stored = served.client.get("/api/state").json()
    streamed = page.evaluate("window.ranPage.tokens")
    assert reply and streamed == stored["points"][0]["reply_tokens"] >= 2  # token by token, as the model made them
    assert reply == stored["log"][-1]["reply"]
    assert page.input_value("#message") == ""
    assert len(page.evaluate("window.ranPage.latencies")) == 1

    page.click("#tick")
    expect(page.locator("#plot-norm")).to_have_attribute("data-points", "2")
    expect(page.locator("#busy")).to_be_hidden()
    expect(page.locator(".entry.idle").first).to_contain_text("idle tick 2:")
    idle = served.client.get("/api/state").json()["points"][-1]
    if not idle["emitted"]:
        expect(page.locator(".entry.idle").first).to_contain_text("silent (entropy=")
    page.fill("#tick-count", "5")
    page.click("#ticks")
    for key in ("norm", "change", "gate", "context"):
        expect(page.locator(f"#plot-{key}")).to_have_attribute("data-points", "7")
    expect(page.locator("#busy")).to_be_hidden()

    page.click("#reset-context")
    expect(page.locator("#status")).to_contain_text("context 0 tokens")
    expect(page.locator(".entry.reset")).to_have_text("/reset context (tick 7)")
    norm_before = served.client.get("/api/state").json()["points"][-1]["state_norm"]
    expect(page.locator("#status")).to_contain_text(f"state norm {norm_before:.4f}")  # the state stayed
    page.fill("#message", "w9 w10")
    page.press("#message", "Enter")
    expect(page.locator("#plot-gate")).to_have_attribute("data-points", "8")
    expect(page.locator("#busy")).to_be_hidden()
    page.click("#reset-state")
    expect(page.locator("#status")).to_contain_text("state norm 0.0000")
    expect(page.locator(".entry.reset")).to_have_count(2)
    assert _points(page) == [8, 8, 8, 8]  # a reset is not a pass: no point
    log_before = page.locator("#log .entry").all_text_contents()
    status_before = page.text_content("#status")

    page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
    if os.environ.get("RAN_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / "serve.png", SCREENSHOT)

    page.reload()
    expect(page.locator("#session-name")).to_have_text("s")
    expect(page.locator("#plot-norm")).to_have_attribute("data-points", "8")
    assert _points(page) == [8, 8, 8, 8]
    assert page.locator("#log .entry").all_text_contents() == log_before
    assert page.text_content("#status") == status_before
    assert errors == []


def test_page_refuses_bad_input_and_a_racing_tab_with_nothing_lost(browser, served):
    from playwright.sync_api import expect

    errors: list[str] = []
    first = _page(browser, served.url, errors)
    second = _page(browser, served.url, errors)
    for page in (first, second):
        expect(page.locator("#session-name")).to_have_text("s")

    # a path-like session name, to both session buttons
    for button in ("#session-resume", "#session-new"):
        second.fill("#session-input", "../evil")
        second.click(button)
        expect(second.locator("#error")).to_be_visible()
        expect(second.locator("#error-text")).to_contain_text("invalid session name '../evil'")
        second.click("#error-close")
    assert not (Path(served.host.root).parent / "evil").exists()

    # an oversized message: refused, and the text stays in the box
    text = "w5 " * 1400
    second.fill("#message", text)
    expect(second.locator("#chars")).to_have_text(f"{len(text)} / 4000 characters")
    second.press("#message", "Enter")
    expect(second.locator("#error-text")).to_contain_text(f"the message has {len(text)} characters, over the "
                                                          "limit of 4000; nothing was run")
    assert second.input_value("#message") == text

    # a second tab racing the first: refused while 1000 idle ticks run, kept, then sent after a stop
    first.fill("#tick-count", "1000")
    first.click("#ticks")
    expect(second.locator("#busy")).to_have_text("running: 1000 idle ticks…")
    second.fill("#message", "w5 w6")
    second.press("#message", "Enter")
    expect(second.locator("#error-text")).to_contain_text("refused: 1000 idle ticks is running on session 's'")
    assert second.input_value("#message") == "w5 w6"
    second.click("#stop")
    expect(first.locator("#busy")).to_be_hidden()
    ticked = served.client.get("/api/state").json()["tick"]
    assert 1 <= ticked < 1000
    second.press("#message", "Enter")
    for page in (first, second):  # both tabs show the message's pass, after every tick
        expect(page.locator(".entry.you")).to_have_text("youw5 w6")
        expect(page.locator("#plot-norm")).to_have_attribute("data-points", str(ticked + 1))
    expect(second.locator("#error")).to_be_hidden()
    state = served.client.get("/api/state").json()
    assert state["tick"] == ticked + 1 and [p["kind"] for p in state["points"]] == ["idle"] * ticked + ["prompt"]

    # a file outside the static folder
    response = second.goto(served.url + "static/%2e%2e/app.py")
    assert response.status == 404 and "create_app" not in second.content()
    errors = [e for e in errors if "404" not in e and "409" not in e and "413" not in e and "400" not in e]
    assert errors == []  # the refusals' HTTP statuses are logged by the browser; nothing else went wrong
