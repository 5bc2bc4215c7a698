"""What every results file records about where it came from: versions, machine, load, date and commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PACKAGE_DIRECTORY = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def versions() -> dict[str, str]:
    import numpy
    import scipy
    import torch
    import transformers

    from ran import __version__

    return {"ran": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "python": platform.python_version()}


def machine() -> dict[str, Any]:
    import torch

    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "platform": platform.platform(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(), "load_average": load_average()}


def source(package_directory: Path = PACKAGE_DIRECTORY) -> dict[str, Any]:
    """The git commit of the running ``ran`` code and whether tracked files differ from it (``git describe
    --dirty``'s sense: untracked files do not count).

    Both are None where git is missing, or where this package is not a tracked file of a git checkout (an
    installed wheel, or a virtual environment inside someone else's repository).
    """
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=package_directory, capture_output=True, text=True, check=True,
                              timeout=30)
        return done.stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # fails unless the checkout tracks this very package
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """Versions, machine, creation time (UTC) and the source commit, stored with every result."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {"versions": versions(), "machine": machine(), "created": created, "git": source()}
