"""The population figure, drawn from the report JSON only: the metric per reservoir seed with the
training-seed spread (one panel per recurrence and grid point), and the fixed reservoir beside the
trained recurrence (one panel per grid point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ran.plots import save_figure  # noqa: E402
from ran.population.report import LABELS, point_label  # noqa: E402

COLOURS = {"reservoir": "#1f77b4", "gru": "#ff7f0e"}
PLOTTED = ("carried", "carried_over_delays", "final_train_loss")
FRACTIONS = ("carried", "carried_over_delays")  # drawn on a fixed 0..1 axis


def plot_population(report: dict[str, Any], path: str | Path) -> Path:
    """One row per metric: the carried metric, its mean over delays (when there are several), and the final
    training loss (which still separates runs whose recall is at the ceiling)."""
    groups, comparisons = report["groups"], report["comparisons"]
    metrics = [m for m in PLOTTED if groups and m in groups[0]["per_reservoir"]]
    columns = len(groups) + len(comparisons)
    figure, axes = plt.subplots(len(metrics), columns, figsize=(4.2 * columns, 3.4 * len(metrics)),
                                squeeze=False)
    for row, metric in enumerate(metrics):
        for column, group in enumerate(groups):
            _seed_panel(axes[row][column], group, metric)
        for offset, comparison in enumerate(comparisons):
            _comparison_panel(axes[row][len(groups) + offset], comparison, report, metric)
    figure.suptitle(f"population on {report['config']['model']}: {report['runs_found']} runs "
                    "(dots: training seeds; bars: mean and 95% interval)", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=120)
    return path


def _seed_panel(axis, group: dict[str, Any], metric: str) -> None:
    """Each training seed's value as a dot, the mean and its 95% interval as a bar, per reservoir seed."""
    rows = group["per_reservoir"].get(metric, [])
    colour = COLOURS.get(group["recurrence"], "#2ca02c")
    for x, row in enumerate(rows):
        axis.scatter([x] * len(row["values"]), row["values"], s=12, alpha=0.5, color=colour)
        low, high = row["ci95"] if row["ci95"] else (row["mean"], row["mean"])
        axis.errorbar([x], [row["mean"]], yerr=[[row["mean"] - low], [high - row["mean"]]], fmt="_",
                      markersize=14, capsize=4, color="black")
    axis.set_xticks(range(len(rows)), [str(r["reservoir_seed"]) for r in rows])
    axis.set_xlabel("reservoir seed")
    _metric_axis(axis, metric)
    effect = next((f for f in group["anova"].get(metric, {}).get("factors", []) if f["factor"] == "reservoir_seed"),
                  None)
    note = ""
    if effect is not None and effect["p"] is not None:
        note = f"\nreservoir seed: F={effect['F']:.2f}, p={effect['p']:.3g}"
    axis.set_title(point_label(group["recurrence"], group["point"]) + note, fontsize=9)


def _comparison_panel(axis, comparison: dict[str, Any], report: dict[str, Any], metric: str) -> None:
    """Every run of each recurrence at this grid point, with the mean and its 95% interval."""
    for x, kind in enumerate(("reservoir", "gru")):
        entry = comparison["metrics"].get(metric, {}).get(kind)
        if entry is None:
            continue
        axis.scatter([x] * entry["n"], entry["values"], s=12, alpha=0.4, color=COLOURS[kind])
        low, high = entry["ci95"] if entry["ci95"] else (entry["mean"], entry["mean"])
        axis.errorbar([x], [entry["mean"]], yerr=[[entry["mean"] - low], [high - entry["mean"]]], fmt="_",
                      markersize=14, capsize=4, color="black")
    axis.set_xticks([0, 1], ["fixed reservoir", "trained GRU"])
    axis.set_xlim(-0.6, 1.6)
    _metric_axis(axis, metric)
    point = " ".join(f"{k}={v}" for k, v in comparison["point"].items())
    axis.set_title(f"fixed vs trained recurrence {point}".rstrip(), fontsize=9)


def _metric_axis(axis, metric: str) -> None:
    axis.set_ylabel(LABELS.get(metric, metric), fontsize=9)
    if metric in FRACTIONS:
        axis.set_ylim(-0.05, 1.05)
