"""Statistics over seeds: how every results file summarises a figure measured once per seed.

``seed_summary(values)`` gives the mean, the sample standard deviation (ddof=1: the seeds are a sample
of the seeds one could have drawn), min, max, the number of seeds and a 95% Student-t interval for the
mean, ``mean -/+ t(0.975, n-1) * std / sqrt(n)``. One seed has no spread: std 0 and no interval (None).
Results written before this module (population std, no ``n`` or ``ci95``) stay readable: readers take
``mean``, ``std``, ``min``, ``max`` and ``values``, which every version has, and ``.get`` the rest.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

LEVEL = 0.95


def t_interval(values: list[float], level: float = LEVEL) -> list[float] | None:
    """Student-t interval of the mean of ``values``; None for fewer than two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, std = statistics.fmean(values), statistics.stdev(values)
    if std == 0.0 or not math.isfinite(std):  # scipy gives nan for a zero scale; the seeds agree exactly
        return [mean, mean]
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=std / math.sqrt(len(values)))
    return [float(low), float(high)]


def seed_summary(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1), min, max, n, 95% t-interval and the values themselves, over seeds."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_summary needs at least one value")
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values), "ci95": t_interval(values),
            "values": values}


def format_interval(summary: dict[str, Any], digits: int = 2,
                    bounds: tuple[float, float] = (-math.inf, math.inf)) -> str:
    """'[low, high]' of a summary's 95% interval, clipped to ``bounds`` (a rate's [0, 1]); '-' where it has
    none (one seed, or an older file)."""
    interval = summary.get("ci95")
    if not interval:
        return "-"
    low, high = (min(max(value, bounds[0]), bounds[1]) for value in interval)
    return f"[{low:.{digits}f}, {high:.{digits}f}]"
