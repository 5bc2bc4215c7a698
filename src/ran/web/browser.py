"""Driving the page from scripts and tests: ``ran serve`` as a child process, Debian's chromium under Playwright.

Playwright's own browser download cannot work on machines without internet, so the browser is Debian's
``chromium`` package (``apt-get install chromium``; ``make browser`` does it), found on the PATH or at
``$RAN_CHROMIUM``, started headless with a fresh profile and no background networking.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium_path() -> str | None:
    """$RAN_CHROMIUM, else Debian's chromium on the PATH (None when there is none)."""
    return os.environ.get("RAN_CHROMIUM") or shutil.which("chromium")


def launch(playwright):
    """A headless chromium (Playwright gives each launch a fresh, empty profile)."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no chromium found: apt-get install chromium (or set RAN_CHROMIUM)")
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS))


def start_serve(arguments: Sequence[str], timeout: float = 300) -> tuple[subprocess.Popen, str, list[str]]:
    """``ran serve ARGUMENTS --port 0`` as a child process: (process, its URL, the lines it printed)."""
    command = [sys.executable, "-m", "ran", "serve", *arguments, "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("serving "):
            return process, line.split()[1], lines
    process.kill()
    process.wait()
    raise RuntimeError(f"ran serve did not start (exit {process.returncode}): {lines}")
