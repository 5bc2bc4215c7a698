"""What every results file records about where it came from: versions, machine, load and date."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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


def environment() -> dict[str, Any]:
    """Versions, machine and creation time (UTC), stored with every result."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {"versions": versions(), "machine": machine(), "created": created}
