"""Results files of the probes: one JSON per run (config, seeds, versions, machine, timings, metrics
with their stateless controls); the figures are drawn from that JSON only."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ran.fileio import atomic_write
from ran.provenance import environment  # noqa: F401  (re-exported for the probe commands)


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON, atomically (see :func:`ran.fileio.atomic_write`)."""
    return atomic_write(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def pm(stats: dict[str, float], digits: int = 3) -> str:
    """'mean ± std' of a :func:`ran.stats.seed_summary` dict."""
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


class Timer:
    """Wall-clock timings by name: ``with timer("capture"): ...``; ``timer.seconds`` holds them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def __call__(self, name: str):
        timer = self

        class _Block:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.start

        return _Block()

    def total(self) -> dict[str, float]:
        return {
            **{k: round(v, 3) for k, v in self.seconds.items()},
            "total_s": round(time.perf_counter() - self._start, 3),
        }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20
