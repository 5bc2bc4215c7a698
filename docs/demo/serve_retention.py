"""The retention demo through the page of ``ran serve``, driven in headless chromium; then the refusals.

    python docs/demo/serve_retention.py --artifact runs/artifacts/kv-keys6-scaling0.2-seed0 \
        [--screenshot docs/serve-retention.png]

Starts ``ran serve --artifact ...`` (a child process, fresh sessions directory), and through the page:
stores "The secret word is tiger.", runs 6 idle ticks, presses "reset context", asks "The secret word
was"; then the control in a new session (the same, with "reset state" pressed too). Then the refusals,
each through the page and through the API: a path-like session name, an oversized message, a second tab
racing the first, a file outside the static folder; after each, the session's tick and file are checked
unchanged. Prints what the page showed; exits 1 if the recall or a refusal is not as expected.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from ran.web.browser import launch, start_serve

TIMEOUT_MS = 600_000  # a pass of SmolLM2 on a loaded 2-core machine can take seconds


def wait_idle(page, points: int) -> None:
    expect(page.locator("#plot-norm")).to_have_attribute("data-points", str(points))
    expect(page.locator("#busy")).to_be_hidden()


def send(page, text: str, points: int) -> str:
    page.fill("#message", text)
    page.press("#message", "Enter")
    wait_idle(page, points)
    return page.locator(".entry.ran .reply").last.text_content()


def story(page, control: bool) -> str:
    """The demo's script in the page; returns the reply to the question."""
    stored = send(page, "The secret word is tiger.", 1)
    print(f"  you: The secret word is tiger.\n  ran: {stored!r}")
    page.fill("#tick-count", "6")
    page.click("#ticks")
    wait_idle(page, 7)
    for who, reply in zip(page.locator(".entry.idle .who").all_text_contents(),
                          page.locator(".entry.idle .reply").all_text_contents(), strict=True):
        print(f"  {who}{reply}")
    if control:
        page.click("#reset-state")
        expect(page.locator("#status")).to_contain_text("state norm 0.0000")
        print("  /reset state")
    page.click("#reset-context")
    expect(page.locator("#status")).to_contain_text("context 0 tokens")
    print("  /reset context")
    answer = send(page, "The secret word was", 8)
    print(f"  you: The secret word was\n  ran: {answer!r}")
    return answer


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--screenshot", default=None, help="PNG of the page after the recall")
    args = parser.parse_args()
    sessions = Path(tempfile.mkdtemp(prefix="ran-serve-demo-"))
    process, url, lines = start_serve(["--artifact", args.artifact, "--session", "remember",
                                       "--sessions-dir", str(sessions), "--max-new-tokens", "8"])
    print("\n".join(lines))
    failures = []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.goto(url)
            expect(page.locator("#session-name")).to_have_text("remember")
            print("session 'remember' (the state carries the word):")
            answer = story(page, control=False)
            if not answer.startswith(" tiger"):
                failures.append(f"recall: {answer!r} does not start with ' tiger'")
            if args.screenshot:
                page.screenshot(path=args.screenshot, full_page=True)
                print(f"screenshot: {args.screenshot}")
            latencies = page.evaluate("window.ranPage.latencies")
            print("page: first streamed token after sending, s: " + ", ".join(f"{x:.2f}" for x in latencies))

            page.fill("#session-input", "forget")
            page.click("#session-new")
            expect(page.locator("#session-name")).to_have_text("forget")
            print("session 'forget' (the control: the state is reset too):")
            control = story(page, control=True)
            if "tiger" in control:
                failures.append(f"control: {control!r} recalls tiger with the state wiped")

            failures += refusals(browser, page, url, sessions / "forget" / "session.safetensors")
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def refusals(browser, page, url: str, state_file: Path) -> list[str]:
    """Each refusal through the page (the error it shows) and the API (status, error); nothing may change."""
    failures = []
    api = httpx.Client(base_url=url, timeout=600)
    before = (api.get("/api/state").json()["tick"], digest(state_file))

    def check(what: str, shown: str, response: httpx.Response, status: int) -> None:
        after = (api.get("/api/state").json()["tick"], digest(state_file))
        print(f"- {what}\n  page: {shown}\n  API: HTTP {response.status_code} {response.json()['error']}\n"
              f"  tick and session file before/after: {before} / {after}")
        if response.status_code != status or after != before:
            failures.append(what)

    print("refusals (session 'forget'):")
    page.fill("#session-input", "../../etc")
    page.click("#session-resume")
    expect(page.locator("#error-text")).to_contain_text("invalid session name")
    shown = page.locator("#error-text").text_content()
    check("a path-like session name", shown, api.post("/api/session", json={"action": "resume", "name": "../../etc"}),
          400)

    text = "tiger " * 700
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("#error-text")).to_contain_text("over the limit")
    shown = page.locator("#error-text").text_content() + f" (the box still holds {len(page.input_value('#message'))} "
    shown += "characters)"
    check("an oversized message", shown, api.post("/api/message", json={"text": text}), 413)
    page.fill("#message", "")

    second = browser.new_context().new_page()
    second.set_default_timeout(TIMEOUT_MS)
    second.goto(url)
    page.fill("#tick-count", "1000")
    page.click("#ticks")
    expect(second.locator("#busy")).to_be_visible()
    second.fill("#message", "The secret word was")
    second.press("#message", "Enter")
    expect(second.locator("#error-text")).to_contain_text("refused")
    shown = second.locator("#error-text").text_content() + f" (the box still holds {second.input_value('#message')!r})"
    response = api.post("/api/message", json={"text": "The secret word was"})
    second.click("#stop")
    expect(page.locator("#busy")).to_be_hidden()
    state = api.get("/api/state").json()
    kinds = [p["kind"] for p in state["points"]]
    print(f"- a second tab racing the first\n  page: {shown}\n  API: HTTP {response.status_code} "
          f"{response.json()['error']}\n  after stop: tick {state['tick']}, the passes since the refusals' start: "
          f"{kinds[before[0]:].count('idle')} idle, {kinds[before[0]:].count('prompt')} prompted")
    if response.status_code != 409 or kinds[before[0]:].count("prompt") != 0:
        failures.append("a second tab racing the first")

    outside = second.goto(url + "static/%2e%2e/host.py")
    raw = api.get("/static/..%2fhost.py")
    print(f"- a file outside the static folder\n  page: HTTP {outside.status} {second.locator('body').text_content()!r}"
          f"\n  API: HTTP {raw.status_code} {raw.text!r}")
    if outside.status != 404 or raw.status_code != 404:
        failures.append("a file outside the static folder")
    return failures


if __name__ == "__main__":
    sys.exit(main())
