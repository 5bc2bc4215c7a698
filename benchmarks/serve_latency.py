"""Time from a sent message to its first streamed token: the page of ``ran serve`` vs ``ran chat``.

    python -m benchmarks.serve_latency [--artifact DIR] [--tries 5] [--out runs/serve-latency.json]

Both run the same model in their own process, side by side; tries alternate between them (page, chat,
page, ...) so a change in the shared machine's load hits both. Every try first resets the session (state
and context; the page's through its API), then sends the same message, so every measured pass is the
same pass. The page's time runs from the send (the Enter key, in the page's JavaScript) to the first
token event drawn; the terminal's from writing the line to the chat's pseudo-terminal to the first byte
of the reply after its ``ran> `` prompt. One warm-up try each is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import load_average
from ran import provenance

MESSAGE = "The secret word is tiger."


class Chat:
    """``ran chat`` on a pseudo-terminal, as a person at a terminal would use it."""

    def __init__(self, arguments: list[str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen([sys.executable, "-m", "ran", "chat", *arguments], stdin=slave,
                                        stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.buffer = b""
        self.read_until(b"you> ", timeout=600)

    def read_until(self, marker: bytes, timeout: float, after: int = 0) -> float:
        """Read until ``marker`` (and ``after`` more bytes) arrived; returns the time it did."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.buffer.find(marker)
            if index >= 0 and len(self.buffer) >= index + len(marker) + after:
                arrived = time.perf_counter()
                self.buffer = self.buffer[index + len(marker) + after:]
                return arrived
            if time.monotonic() > deadline:
                raise TimeoutError(f"ran chat printed no {marker!r}: {self.buffer[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                self.buffer += os.read(self.master, 65536)

    def try_once(self, message: str) -> float:
        os.write(self.master, b"/reset all\n")
        self.read_until(b"reset all;", timeout=600)
        self.read_until(b"you> ", timeout=600)
        sent = time.perf_counter()
        os.write(self.master, message.encode() + b"\n")
        first = self.read_until(b"ran> ", timeout=600, after=1)
        self.read_until(b"you> ", timeout=600)  # the pass ends
        return first - sent

    def close(self) -> None:
        os.write(self.master, b"/quit\n")
        self.process.wait(timeout=120)
        os.close(self.master)


class Page:
    """The page of ``ran serve`` in headless chromium."""

    def __init__(self, arguments: list[str], playwright):
        from ran.web.browser import launch, start_serve

        self.process, self.url, _ = start_serve(arguments)
        self.server_first_token: list[float] = []
        self.browser = launch(playwright)
        self.page = self.browser.new_page()
        self.page.set_default_timeout(600_000)
        self.page.goto(self.url)
        self.page.wait_for_function("() => window.ranPage.snapshots > 0")

    def try_once(self, message: str) -> float:
        page = self.page
        response = httpx.post(self.url + "api/reset", json={"what": "all"}, timeout=600)  # returns when done
        response.raise_for_status()
        page.wait_for_function("() => document.getElementById('status').textContent.includes('context 0 tokens')")
        count = page.evaluate("window.ranPage.latencies.length")
        page.fill("#message", message)
        page.press("#message", "Enter")
        page.wait_for_function(f"() => window.ranPage.latencies.length > {count}")
        page.wait_for_function("() => document.getElementById('busy').hidden")  # the pass ends
        entry = httpx.get(self.url + "api/state", timeout=600).json()["log"][-1]
        self.server_first_token.append(entry["first_token_seconds"])  # from the pass's start, in the server
        return page.evaluate("window.ranPage.latencies.at(-1)")

    def close(self) -> None:
        self.browser.close()
        self.process.terminate()
        self.process.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None, help="trained artifact (default: the untrained wrap)")
    parser.add_argument("--model", default=None, help="base model for the untrained wrap (default: smollm2-135m)")
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--message", default=MESSAGE, help=f"what is sent (default: {MESSAGE!r})")
    parser.add_argument("--out", default="runs/serve-latency.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sessions = tempfile.mkdtemp(prefix="ran-latency-")
    model = (["--artifact", args.artifact] if args.artifact else []) + (["--model", args.model] if args.model else [])
    common = [*model, "--sessions-dir", sessions, "--max-new-tokens", "8"]
    times: dict[str, list[float]] = {"page": [], "chat": []}
    load = [load_average()]
    with sync_playwright() as playwright:
        page = Page(["--session", "latency-page", *common], playwright)
        chat = Chat(["--session", "latency-chat", *common])
        try:
            page.try_once(args.message), chat.try_once(args.message)  # warm-up, not counted
            for _ in range(args.tries):
                times["page"].append(page.try_once(args.message))
                times["chat"].append(chat.try_once(args.message))
        finally:
            page.close()
            chat.close()
    load.append(load_average())
    times["page, in the server (pass start to first token)"] = page.server_first_token[1:]
    summary = {name: {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
                      "tries_s": values} for name, values in times.items()}
    record = {"message": args.message, "artifact": args.artifact, "model": args.model, "tries": args.tries,
              "results": summary, "load_average_start_end": load, "environment": provenance.environment()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    for name, values in summary.items():
        print(f"{name}: first token after {values['median_s']:.3f} s median [{values['min_s']:.3f}, "
              f"{values['max_s']:.3f}] over {args.tries} tries")
    print(f"1-minute load average at start and end: {load[0]}, {load[1]}; {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
