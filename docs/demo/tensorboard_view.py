"""A TensorBoard view of tracked runs, rendered in headless chromium and saved as a PNG.

    python docs/demo/tensorboard_view.py --logdir runs/tensorboard/retention-compare \
        --tag "carried/by_delay" --screenshot docs/tracking.png

Starts ``tensorboard --logdir LOGDIR`` on a free local port (a child process), opens its scalars page with
the charts filtered to ``--tag`` (a regular expression over tags), waits until every chart has drawn, and
saves the page. Exits 1 if TensorBoard does not come up or shows no chart for the tag.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from ran.web.browser import launch

TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_tensorboard(logdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                                "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tensorboard exited: {process.stderr.read().decode()[-500:]}")
        try:
            urllib.request.urlopen(f"{url}/data/runs", timeout=2)  # noqa: S310 (our own local server)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"tensorboard did not answer at {url} within {TIMEOUT_S}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", required=True, type=Path)
    parser.add_argument("--tag", default="", help="regular expression over the tags to show (default: all)")
    parser.add_argument("--screenshot", required=True, type=Path)
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    process, url = start_tensorboard(args.logdir)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"{url}/#timeseries", timeout=TIMEOUT_S * 1000)
            page.wait_for_selector("scalar-card", timeout=TIMEOUT_S * 1000)
            page.fill("metrics-dashboard-settings input[type=number]", "0")  # no smoothing: the values as logged
            page.keyboard.press("Enter")
            page.get_by_text("Ignore outliers in chart scaling").click()  # the whole range of every value
            page.get_by_role("button", name="Settings").click()  # close the settings pane
            page.fill("metrics-tag-filter input", args.tag)  # the charts of these tags only
            page.keyboard.press("Escape")
            page.wait_for_load_state("networkidle", timeout=TIMEOUT_S * 1000)
            time.sleep(5)  # the charts draw after their data arrives
            cards = page.locator("scalar-card").count()
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.screenshot), full_page=True)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"{cards} chart(s) for tag {args.tag!r} from {args.logdir}: wrote {args.screenshot}")
    return 0 if cards else 1


if __name__ == "__main__":
    raise SystemExit(main())
