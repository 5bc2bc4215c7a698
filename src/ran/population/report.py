"""The population report: a JSON document (config, every run's metrics, the statistics) and its text tables.

The document is in the shared results schema (``ran.engine.report``, experiment ``population``); reports of
``ran.population/1`` hold the same fields without ``experiment``, ``model`` and ``summary``, and stay readable.
"""

from __future__ import annotations

from typing import Any

from ran.engine.report import results_document
from ran.population.analysis import analyse

LABELS = {"carried": "carried", "carried_over_delays": "carried, mean over delays",
          "carried_among_keys": "carried, among keys", "final_train_loss": "final training loss (lower better)",
          "wiped": "wiped (control)", "untrained": "untrained (control)"}


def build_report(config: dict[str, Any], keys: list[str], records: list[dict[str, Any]],
                 provenance: dict[str, Any] | None = None, backend: str = "in-process", threads: int = 1,
                 seconds: float | None = None) -> dict[str, Any]:
    """The report of a population whose members have ``keys``, from the ``records`` found on disk; its summary is
    every group's metrics over seeds (the groups keep the ANOVA, the per-reservoir means and the pick).
    ``provenance``: :func:`ran.provenance.environment` (default: now); ``backend``: where the runs ran."""
    found = {r["key"] for r in records}
    analysis = analyse(records)
    summary = [{k: group[k] for k in ("recurrence", "point", "n_runs", "metrics")} for group in analysis["groups"]]
    return results_document("population", config["model"], config, analysis["runs"], summary, seconds, provenance,
                            backend=backend, threads=threads, runs_expected=len(keys), runs_found=len(records),
                            missing=[k for k in keys if k not in found], groups=analysis["groups"],
                            comparisons=analysis["comparisons"])


def point_label(recurrence: str, point: dict[str, Any]) -> str:
    name = {"reservoir": "fixed reservoir", "gru": "trained GRU"}.get(recurrence, recurrence)
    return " ".join([name, *(f"{k}={v}" for k, v in point.items())])


def format_report(report: dict[str, Any]) -> str:
    """The report's tables as text: per group the metrics, the ANOVA, the per-seed means and the pick."""
    task = report["config"]["task"]["name"]
    lines = [f"population on {report['config']['model']}, task {task}: {report['runs_found']} of "
             f"{report['runs_expected']} runs finished"]
    for group in report["groups"]:
        lines += ["", f"== {point_label(group['recurrence'], group['point'])}: {group['n_runs']} runs, "
                      f"{len(group['reservoir_seeds'])} reservoir seeds x {len(group['train_seeds'])} training seeds"]
        lines.append(f"  {'metric':<36} {'mean':>7} {'std':>7}  {'95% CI':>17}")
        for metric, stats in group["metrics"].items():
            lines.append(f"  {LABELS.get(metric, metric):<36} {stats['mean']:>7.3f} {stats['std']:>7.3f}  "
                         f"{_interval(stats['ci95']):>17}")
        lines += ["", "  two-way ANOVA: metric ~ C(reservoir_seed) + C(train_seed)",
                  f"  {'metric':<22} {'factor':<15} {'df':>3} {'sum sq':>10} {'F':>8} {'p':>8} {'eta^2':>6} "
                  f"{'partial':>7}"]
        for metric, anova in group["anova"].items():
            name = metric
            if anova["note"]:
                lines.append(f"  {name:<22} {anova['note']}")
                continue
            for factor in anova["factors"]:
                lines.append(f"  {name:<22} {factor['factor']:<15} {factor['df']:>3} {factor['sum_sq']:>10.4g} "
                             f"{_number(factor['F'], 8, '.3f')} {_number(factor['p'], 8, '.4f')} "
                             f"{factor['eta_squared']:>6.3f} {_number(factor['partial_eta_squared'], 7, '.3f')}")
                name = ""
            residual = anova["residual"]
            lines.append(f"  {'':<22} {'residual':<15} {residual['df']:>3} {residual['sum_sq']:>10.4g}")
        lines += ["", "  carried metric per reservoir seed, over training seeds:",
                  f"  {'seed':>6} {'mean':>7} {'95% CI':>17}  values"]
        for row in group["per_reservoir"].get("carried", []):
            values = " ".join(f"{v:.2f}" for v in row["values"])
            lines.append(f"  {row['reservoir_seed']:>6} {row['mean']:>7.3f} {_interval(row['ci95']):>17}  {values}")
        pick = group["recommended_reservoir"]
        if pick["reservoir_seed_p"] is None:
            verdict = "ANOVA: " + (group["anova"].get("carried", {}).get("note") or "no p-value")
        else:
            verdict = (f"reservoir-seed effect p={pick['reservoir_seed_p']:.3g}, " +
                       ("significant" if pick["significant"] else "not significant: the pick is within training noise"))
        ties = len(pick["tied_on_metric"])
        tie_note = f"; {ties} seeds tie on the mean, broken by {', '.join(pick['ranked_by'][1:])}" if ties > 1 else ""
        lines.append(f"  recommended reservoir: seed {pick['reservoir_seed']}, carried {pick['mean']:.3f} "
                     f"{_interval(pick['ci95'])} over {pick['n_train_seeds']} training seeds ({verdict}{tie_note})")
    for comparison in report["comparisons"]:
        point = " ".join(f"{k}={v}" for k, v in comparison["point"].items())
        lines += ["", f"== fixed reservoir vs trained GRU {point}".rstrip() + f" (same seeds and budget, "
                      f"{comparison['n_pairs']} pairs), mean ± std",
                  f"  {'metric':<36} {'reservoir':>13} {'GRU':>13} {'GRU - reservoir [95% CI]':>32} {'paired p':>8}"]
        for metric, entry in comparison["metrics"].items():
            difference = entry.get("gru_minus_reservoir")
            cells = [f"{entry[k]['mean']:.3f}±{entry[k]['std']:.3f}" for k in ("reservoir", "gru")]
            delta = f"{difference['mean']:+.3f} {_interval(difference['ci95'])}" if difference else "-"
            p_value = _number(difference["paired_t_p"], 8, ".4f") if difference else f"{'-':>8}"
            lines.append(f"  {LABELS.get(metric, metric):<36} {cells[0]:>13} {cells[1]:>13} {delta:>32} {p_value}")
    return "\n".join(lines) + "\n"


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what depends on when and where it ran (for comparing two runs of a population)."""
    return {key: report[key] for key in ("config", "runs_expected", "runs_found", "missing", "runs", "summary",
                                         "groups", "comparisons")}


def _interval(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _number(value: float | None, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"

