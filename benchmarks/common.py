"""What every benchmark shares: interleaved timing, medians with min/max, machine and version records.

Timings on a shared machine are noisy, so a candidate is never compared with a baseline measured at
another time: :func:`interleave` runs them in alternating order within each round, and a ratio is the
ratio of the medians, with the min and max of the per-round ratios as its spread.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ran import provenance
from ran.provenance import load_average  # noqa: F401  (the benchmarks import it from here)

SCHEMA = "ran.benchmark/1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


DEVICE = "cpu"  # where the model-level benchmarks run; python -m benchmarks --device sets it


def set_device(name: str) -> str:
    """Check ``name`` (ran.devices) and make it the benchmarks' device; returns it as a string."""
    global DEVICE
    from ran.devices import resolve_device

    DEVICE = str(resolve_device(name))
    return DEVICE


def synchronize() -> None:
    """Wait for queued GPU work, so a timer stops when the work is done (a no-op on the CPU)."""
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def stats(values: list[float]) -> dict[str, Any]:
    """Median, min and max (and the raw values) of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": [round(v, 6) for v in values]}


def interleave(candidates: dict[str, Callable[[], Any]], repeats: int,
               warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate over ``repeats`` rounds; the order rotates every round.

    ``warmup`` untimed rounds run first (allocator, caches, lazy initialisation).
    """
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize()
            started = time.perf_counter()
            candidates[name]()
            synchronize()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Ratio of the medians, with min/max of the per-round ratios (the rounds are paired)."""
    per_round = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return {"median": statistics.median(numerator) / statistics.median(denominator),
            "min": min(per_round), "max": max(per_round)}


def machine() -> dict[str, Any]:
    return {**provenance.machine(), "nice": os.nice(0)}


def versions() -> dict[str, str]:
    found = provenance.versions()
    try:
        import reservoirpy

        found["reservoirpy"] = reservoirpy.__version__
    except ImportError:
        pass
    return found


def row(benchmark: str, case: str, ran_value: str, baseline: str, ratio_of: dict[str, float] | None,
        ratio_label: str, target: str = "", met: bool | None = None) -> dict[str, Any]:
    """One line of the summary table."""
    return {"benchmark": benchmark, "case": case, "ran": ran_value, "baseline": baseline, "ratio": ratio_of,
            "ratio_label": ratio_label, "target": target, "met": met}


def write_result(name: str, config: dict[str, Any], results: Any, summary: list[dict[str, Any]],
                 started: float, load_before: list[float], out: Path, notes: list[str] | None = None) -> Path:
    """Write ``<out>/<name>.json`` with the machine, versions, commit, config, results and summary rows."""
    document = {
        "schema": SCHEMA,
        "benchmark": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": load_average(),
                    "benchmark_device": config.get("device", "cpu"), "gpu": _gpu_name(config.get("device", "cpu"))},
        "versions": versions(),
        "git": provenance.source(),
        "config": config,
        "results": results,
        "summary": summary,
        "notes": notes or [],
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def fmt_ratio(value: dict[str, float] | None) -> str:
    if not value:
        return "n/a"
    return f"{value['median']:.3g}x [{value['min']:.3g}, {value['max']:.3g}]"


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))
