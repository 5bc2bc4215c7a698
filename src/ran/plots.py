"""Plots drawn from results JSON only (never from in-memory state), so any result file can be re-plotted."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ran.fileio import atomic_write  # noqa: E402

COLOURS = {"carried": "#1f77b4", "wiped": "#d62728", "untrained": "#7f7f7f"}


def save_figure(figure, path: str | Path, dpi: int) -> Path:
    """Write ``figure`` (in the format its suffix names, PNG by default) through :func:`ran.fileio.atomic_write`,
    so a killed run leaves the previous image or the new one, never a torn one; then close it."""
    kind = Path(path).suffix.lstrip(".") or "png"
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, format=kind, dpi=dpi))
    finally:
        plt.close(figure)


def plot_crosspass(results: dict[str, Any], path: str | Path, metric: str = "recall") -> Path:
    """Recall with the carried state vs the wiped control (and untrained), mean +- std over seeds with each seed."""
    rows = results["summary"]
    varied = results["varied"][0] if len(results["varied"]) == 1 else None
    labels = [_label(row, results["varied"]) for row in rows]
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
        axis.set_xticks(range(len(rows)), labels, rotation=30 if len(results["varied"]) > 1 else 0,
                        fontsize=7 if len(results["varied"]) > 1 else None, ha="right" if len(results["varied"]) > 1
                        else "center")
        axis.set_xlabel(varied or ", ".join(results["varied"]))
    seeds = sorted({s for row in rows for s in row["seeds"]})
    axis.set_ylim(-0.05, 1.05)
    axis.set_ylabel("recall" if metric == "recall" else "recall among keys")
    axis.set_title(f"cross-pass recall on {results['model']} ({results['kind']}, seeds {seeds})", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=110)
    return path


def _label(row: dict[str, Any], varied: list[str]) -> str:
    if not varied:
        return ""
    if len(varied) == 1:
        return str(row[varied[0]])
    return " ".join(f"{name}={row[name]}" for name in varied)


def plot_retention(results: dict[str, Any], path: str | Path, metric: str = "recall") -> Path:
    """Recall against the number of intervening passes: mean over seeds (each seed a dot), the wiped control
    dashed, the training range shaded; one panel per filler (distractor sentences, idle ticks)."""
    rows = [{**row, "retention": [p for p in row.get("retention", []) if p.get("split", "trained") == "trained"],
             "heldout_retention": [p for p in row.get("retention", []) if p.get("split") == "heldout"]}
            for row in results["summary"]]
    fillers = list(dict.fromkeys(p["filler"] for row in rows for p in row.get("retention", [])))
    figure, axes = plt.subplots(1, len(fillers), figsize=(6.4 * len(fillers), 4.4), squeeze=False)
    low, high = results["config"]["task"].get("train_delays", [0, 0])
    single = len(rows) == 1
    palette = plt.get_cmap("tab10")
    for axis, filler in zip(axes[0], fillers, strict=True):
        for index, row in enumerate(rows):
            points = sorted((p for p in row["retention"] if p["filler"] == filler or p["delay"] == 0),
                            key=lambda p: p["delay"])
            delays = [p["delay"] for p in points]
            name = _label(row, results["varied"]) if not single else ""
            for condition, style in (("carried", "-"), ("wiped", "--"), ("untrained", ":")):
                if condition == "untrained" and not single:
                    continue
                colour = COLOURS[condition] if single else palette(index % 10)
                means = [p[metric][condition]["mean"] for p in points]
                label = condition if single else (f"{name}" if condition == "carried" else None)
                axis.plot(delays, means, style, marker="o" if condition == "carried" else None, markersize=3,
                          color=colour, label=label, linewidth=1.4 if condition == "carried" else 0.8)
                if condition == "carried" or single:
                    for delay, point in zip(delays, points, strict=True):
                        values = point[metric][condition]["values"]
                        axis.scatter([delay] * len(values), values, s=8, alpha=0.35, color=colour)
            heldout = sorted((p for p in row["heldout_retention"] if p["filler"] == filler or p["delay"] == 0),
                             key=lambda p: p["delay"])
            if heldout:  # keys never trained on: their carried recall, dash-dotted
                colour = COLOURS["carried"] if single else palette(index % 10)
                axis.plot([p["delay"] for p in heldout], [p[metric]["carried"]["mean"] for p in heldout], "-.",
                          marker="s", markersize=3, color=colour, linewidth=1.0,
                          label=f"{name + ', ' if name else ''}held-out keys, carried")
        axis.axvspan(low - 0.3, high + 0.3, color="#2ca02c", alpha=0.08, label=f"training delays {low}-{high}")
        axis.set_xscale("symlog", linthresh=1)
        ticks = sorted({p["delay"] for row in rows for p in row["retention"]})
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.set_xlabel(f"intervening passes ({filler}){'' if single else '; dashed: wiped control'}")
        axis.set_ylim(-0.05, 1.05)
        axis.set_ylabel("recall" if metric == "recall" else "recall among keys")
        axis.legend(fontsize=6 if not single else 8, loc="lower left")
    seeds = sorted({s for row in rows for s in row["seeds"]})
    figure.suptitle(f"retention on {results['model']} ({results['kind']}, seeds {seeds})", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=110)
    return path


def plot_battery(results: dict[str, Any], path: str | Path) -> Path:
    """Per task: carried vs wiped vs stateless (mean bars, seeds as dots), one panel per arm (recipe and grid
    point; files written before the grid have none); the tasks trained alone (``ran battery --alone``) share
    one panel per recipe and point."""
    def arm(row: dict[str, Any]) -> str:
        point = row.get("point", {})
        label = " ".join([row["recipe"], *(f"{name}={value}" for name, value in point.items() if name != "alone")])
        return f"{label}, each task trained alone" if "alone" in point else label

    arms = list(dict.fromkeys(arm(row) for row in results["summary"]))
    figure, axes = plt.subplots(len(arms), 1, figsize=(8.0, 3.6 * len(arms)), squeeze=False)
    colours = {**COLOURS, "stateless": "#ff7f0e"}
    width = 0.26
    for axis, name in zip(axes[:, 0], arms, strict=True):
        rows = [row for row in results["summary"] if arm(row) == name]
        for offset, condition in enumerate(("carried", "wiped", "stateless")):
            xs = [i + (offset - 1) * width for i in range(len(rows))]
            means = [row[condition]["mean"] if condition in row else 0.0 for row in rows]
            axis.bar(xs, means, width, label=condition, color=colours[condition])
            for x, row in zip(xs, rows, strict=True):
                if condition in row:
                    axis.scatter([x] * len(row[condition]["values"]), row[condition]["values"], s=9, color="black",
                                 zorder=3)
        axis.set_xticks(range(len(rows)), [f"{row['task']}\n" + textwrap.fill(f"({row['metric']})", 18)
                                                for row in rows], fontsize=7)
        axis.set_ylim(-0.05, 1.05)
        axis.set_ylabel("score")
        axis.set_title(f"recipe: {name}", fontsize=9)
        axis.legend(fontsize=7, ncol=3)
    seeds = sorted({s for row in results["summary"] for s in row["seeds"]})
    figure.suptitle(f"stateful battery on {results['model']} (seeds {seeds})", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=110)
    return path


def plot_heldout(results: dict[str, Any], path: str | Path) -> Path:
    """Trained vs held-out keys per group: recall over the vocabulary (carried, wiped) and among the
    held-out keys (carried, with chance marked); mean bars, seeds as dots. Drawn from the JSON only."""
    rows = [row for row in results["summary"] if "heldout" in row]
    labels = [_label(row, results["varied"]) or row.get("mode", "") for row in rows]
    bars = [("trained, carried", lambda r: r["recall"]["carried"], COLOURS["carried"]),
            ("held-out, carried", lambda r: r["heldout"]["recall"]["carried"], "#17becf"),
            ("held-out, wiped", lambda r: r["heldout"]["recall"]["wiped"], COLOURS["wiped"]),
            ("held-out among held-out keys, carried", lambda r: r["heldout"]["among_keys"]["carried"], "#bcbd22")]
    figure, axis = plt.subplots(figsize=(max(6.4, 1.2 * len(rows) + 2), 4.2))
    width = 0.8 / len(bars)
    for offset, (name, get, colour) in enumerate(bars):
        xs = [i + (offset - (len(bars) - 1) / 2) * width for i in range(len(rows))]
        axis.bar(xs, [get(r)["mean"] for r in rows], width, label=name, color=colour)
        for x, row in zip(xs, rows, strict=True):
            axis.scatter([x] * len(get(row)["values"]), get(row)["values"], s=8, color="black", zorder=3)
    runs = {run["seed"]: run for run in results["runs"]}
    chance = next(iter(runs.values())).get("heldout", {}).get("chance_among_keys")
    if chance:
        axis.axhline(chance, color="k", linestyle=":", linewidth=0.8, label=f"chance among held-out ({chance:.3f})")
    axis.set_xticks(range(len(rows)), labels, fontsize=7, rotation=20 if len(results["varied"]) > 1 else 0)
    axis.set_ylim(-0.05, 1.05)
    axis.set_ylabel("recall (one hop)")
    seeds = sorted({s for row in rows for s in row["seeds"]})
    axis.set_title(f"keys never trained on, {results['model']} (seeds {seeds})", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=110)
    return path


def plot_memory(results: dict[str, Any], path: str | Path) -> Path:
    """Exact recall of held-out values against intervening passes, one panel per kind: every arm carried
    (solid, seeds as dots) and wiped (dashed); held-out phrasings as open markers; training range shaded."""
    rows = results["summary"]
    kinds = list(dict.fromkeys(g["kind"] for row in rows for g in row["groups"]))
    figure, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.6), squeeze=False, sharey=True)
    low, high = results["config"]["task"]["train_delays"]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, kind in zip(axes[0], kinds, strict=True):
        axis.axvspan(low, high, color="#eeeeee", zorder=0)
        for index, row in enumerate(rows):
            colour = palette[index % len(palette)]
            label = ", ".join(f"{k}={v}" for k, v in row["arm"].items()) or "recipe"
            for phrasing, marker in (("trained", "o"), ("heldout", "s")):
                groups = sorted((g for g in row["groups"] if g["kind"] == kind and g["values"] == "heldout"
                                 and g["phrasing"] == phrasing), key=lambda g: g["delay"])
                if not groups:
                    continue
                delays = [g["delay"] for g in groups]
                carried = [g["recall"]["carried"]["mean"] for g in groups]
                if phrasing == "trained":
                    axis.plot(delays, carried, marker=marker, color=colour, label=label)
                    axis.plot(delays, [g["recall"]["wiped"]["mean"] for g in groups], linestyle="--", color=colour,
                              alpha=0.6)
                    for delay, g in zip(delays, groups, strict=True):
                        values = g["recall"]["carried"]["values"]
                        axis.scatter([delay] * len(values), values, s=8, color=colour, alpha=0.4)
                else:
                    axis.scatter(delays, carried, marker=marker, facecolors="none", edgecolors=colour,
                                 label=f"{label}, held-out phrasing" if kind == kinds[0] else None)
        axis.set_xscale("symlog", linthresh=2)
        ticks = sorted({g["delay"] for row in rows for g in row["groups"] if g["kind"] == kind})
        axis.set_xticks(ticks, [str(t) for t in ticks])  # the delays measured (symlog labels only powers of ten)
        axis.set_title(kind, fontsize=9)
        axis.set_xlabel("intervening passes")
        axis.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("exact reply, held-out values")
    axes[0][0].legend(fontsize=6)
    seeds = sorted({s for row in rows for s in row["seeds"]})
    figure.suptitle(f"one memory on {results['model']} (seeds {seeds}; dashed: wiped state; grey: training delays)",
                    fontsize=9)
    figure.tight_layout()
    path = Path(path)
    save_figure(figure, path, dpi=110)
    return path
