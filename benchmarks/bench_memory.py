"""Peak memory (RSS) and wall time of ``ran crosspass`` with its defaults, beside the floor every user of
the model pays: a process that only loads the same model (the baseline).

Each command runs under ``/usr/bin/time -v`` when present, else in a fresh Python parent process that
reads ``getrusage(RUSAGE_CHILDREN)``, so earlier benchmarks' children never count.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, load_average, row

NAME = "memory"
LOAD_ONLY = "from ran.loading import load_model; load_model('smollm2-135m')"
RUSAGE_PARENT = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                 "code = subprocess.run(sys.argv[1:]).returncode; "
                 "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
                 "'WALL', time.perf_counter() - t, 'RC', code, file=sys.stderr)")


def measure(command: list[str]) -> dict[str, Any]:
    """Peak RSS (MiB), wall seconds and exit code of one command."""
    if Path("/usr/bin/time").exists():
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        if peak is None:
            raise RuntimeError(f"/usr/bin/time printed no peak RSS:\n{done.stderr[-2000:]}")
        peak_kb, method = int(peak.group(1)), "/usr/bin/time -v"
    else:
        done = subprocess.run([sys.executable, "-c", RUSAGE_PARENT, *command], cwd=ROOT, capture_output=True,
                              text=True)
        found = re.search(r"PEAK_KB (\d+) WALL ([\d.]+)", done.stderr)
        peak_kb, wall, method = int(found.group(1)), float(found.group(2)), "getrusage(RUSAGE_CHILDREN)"
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"peak_rss_mib": round(peak_kb / 1024, 1), "wall_seconds": round(wall, 1), "method": method,
            "command": command}


def run(quick: bool) -> dict[str, Any]:
    started, load_before = time.perf_counter(), load_average()
    ran = str(Path(sys.executable).with_name("ran"))
    with tempfile.TemporaryDirectory(prefix="ran-bench-") as out:
        crosspass = [ran, "crosspass", "--out", out, "--no-progress"]
        if quick:  # not the defaults: one seed, a few steps (the full run uses the defaults)
            crosspass += ["--seeds", "0", "--steps", "3"]
        baseline = measure([sys.executable, "-c", LOAD_ONLY])
        measured = measure(crosspass)
        measured["command"] = ["ran", *crosspass[1:2], *crosspass[4:]]  # without the temporary folder
    ratio_value = measured["peak_rss_mib"] / baseline["peak_rss_mib"]
    config = {"crosspass_arguments": "defaults" if quick is False else "--seeds 0 --steps 3 (quick)",
              "baseline": "python -c \"" + LOAD_ONLY + "\"", "time_tool": shutil.which("time") or "none"}
    arguments = "--seeds 0 --steps 3" if quick else "(defaults)"
    case = f"ran crosspass {arguments}, {measured['wall_seconds']:.0f} s wall"
    summary = [row("memory", case, f"{measured['peak_rss_mib']:.0f} MiB peak RSS",
                   f"model load only {baseline['peak_rss_mib']:.0f} MiB",
                   {"median": ratio_value, "min": ratio_value, "max": ratio_value}, "peak RSS / load only")]
    return {"name": NAME, "config": config, "results": {"crosspass": measured, "load_only": baseline},
            "summary": summary, "started": started, "load_before": load_before,
            "notes": ["one run each (a peak is a maximum, not a timing): min = max = the single ratio"]}
