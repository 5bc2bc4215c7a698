"""Plots drawn from results JSON only (never from in-memory state), so any result file can be re-plotted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"carried": "#1f77b4", "wiped": "#d62728", "untrained": "#7f7f7f"}


def plot_crosspass(results: dict[str, Any], path: str | Path, metric: str = "recall") -> Path:
    """Recall with the carried state vs the wiped control (and untrained), mean +- std over seeds with each seed."""
    rows = results["summary"]
    varied = results["varied"][0] if results["varied"] else None
    labels = [str(row[varied]) if varied else results["config"]["ran"]["mode"] for row in rows]
    numeric = varied in ("n_keys", "input_scaling")
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    width = 0.26
    for offset, condition in enumerate(("carried", "wiped", "untrained")):
        means = [row[metric][condition]["mean"] for row in rows]
        stds = [row[metric][condition]["std"] for row in rows]
        if numeric:
            xs = [float(row[varied]) for row in rows]
            axis.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=condition, color=COLOURS[condition])
            for x, row in zip(xs, rows, strict=True):
                axis.scatter([x] * len(row[metric][condition]["values"]), row[metric][condition]["values"],
                             s=10, alpha=0.4, color=COLOURS[condition])
        else:
            xs = [i + (offset - 1) * width for i in range(len(rows))]
            axis.bar(xs, means, width, yerr=stds, capsize=3, label=condition, color=COLOURS[condition])
            for x, mean in zip(xs, means, strict=True):
                axis.annotate(f"{mean:.2f}", (x, mean), textcoords="offset points", xytext=(0, 4), ha="center",
                              fontsize=7)
            for x, row in zip(xs, rows, strict=True):
                axis.scatter([x] * len(row[metric][condition]["values"]), row[metric][condition]["values"],
                             s=10, color="black", zorder=3)
    if numeric:
        axis.set_xscale("log", base=2)
        axis.set_xticks([float(row[varied]) for row in rows], labels)
        axis.set_xlabel({"n_keys": "number of keys", "input_scaling": "input scaling"}[varied])
        if metric == "among_keys" and varied == "n_keys":
            axis.plot([float(r[varied]) for r in rows], [1 / float(r[varied]) for r in rows], "k:", label="chance")
    else:
        axis.set_xticks(range(len(rows)), labels)
        axis.set_xlabel(varied or "")
    seeds = sorted({s for row in rows for s in row["seeds"]})
    axis.set_ylim(-0.05, 1.05)
    axis.set_ylabel("recall" if metric == "recall" else "recall among keys")
    axis.set_title(f"cross-pass recall on {results['model']} ({results['kind']}, seeds {seeds})", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
