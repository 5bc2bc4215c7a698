"""What a population's records say: per-run metrics, a two-way ANOVA, the recommended reservoir, and
the fixed reservoir against the trained recurrence. Reads records only (as written to disk).

Metrics of a run (higher is better unless marked):
- ``carried``: the task's headline metric with the state carried (recall at delay 0 for recall);
- ``carried_over_delays``: the mean of the carried metric over the evaluated delays (when several);
- ``carried_among_keys``: recall restricted to the keys (recall only; chance = 1 / keys);
- ``final_train_loss`` (lower is better): the last training step's loss, which still separates runs
  whose recall is at the ceiling;
- the controls ``wiped`` and ``untrained`` (the same headline metric), reported, never analysed.

The ANOVA is ``metric ~ C(reservoir_seed) + C(train_seed)`` per recurrence and grid point, fitted by
ordinary least squares (statsmodels, type-II sums of squares). Eta squared is a factor's share of the
total sum of squares; partial eta squared its share of (factor + residual).
"""

from __future__ import annotations

import json
import statistics
import warnings
from typing import Any

import numpy as np

from ran.stats import seed_summary

METRICS: dict[str, str] = {  # metric -> which way is better; also the order ties are broken in
    "carried": "higher", "carried_over_delays": "higher", "carried_among_keys": "higher",
    "final_train_loss": "lower",
}
CONTROLS = ("wiped", "untrained")
FACTORS = ("reservoir_seed", "train_seed")
PRIMARY = "carried"
SIGNIFICANCE = 0.05


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    """One run's seeds, grid point and metrics, from its record."""
    member, result = record["member"], record["result"]
    scores = result["scores"]
    metrics: dict[str, float] = {"carried": scores["carried"]["value"]}
    groups = scores["carried"].get("groups")
    if isinstance(groups, list) and len(groups) > 1:
        metrics["carried_over_delays"] = statistics.fmean(g.get("recall", g.get("value")) for g in groups)
    if scores["carried"].get("among_keys") is not None:
        metrics["carried_among_keys"] = scores["carried"]["among_keys"]
    if result.get("loss_curve"):
        metrics["final_train_loss"] = result["loss_curve"][-1]
    for condition in CONTROLS:
        metrics[condition] = scores[condition]["value"]
    return {"key": record["key"], "recurrence": member["recurrence"], "point": member["point"],
            "reservoir_seed": member["reservoir_seed"], "train_seed": member["train_seed"], "metrics": metrics}


def two_way_anova(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """F, p, eta squared and partial eta squared of each seed factor on ``metric``, or a note why not."""
    import pandas as pd
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    rows = [r for r in rows if metric in r["metrics"]]
    frame = pd.DataFrame({"value": [r["metrics"][metric] for r in rows],
                          **{factor: [r[factor] for r in rows] for factor in FACTORS}})
    factors = [factor for factor in FACTORS if frame[factor].nunique() > 1]
    formula = "value ~ " + " + ".join(f"C({factor})" for factor in factors) if factors else None
    result: dict[str, Any] = {"metric": metric, "n_runs": len(rows), "formula": formula, "factors": [], "note": None}
    if not factors:
        result["note"] = "one reservoir seed and one training seed: there is nothing to compare"
        return result
    if frame["value"].nunique() == 1:
        result["note"] = f"every run scored {frame['value'].iloc[0]:g}: there is no variance to explain"
        return result
    fit = ols(formula, data=frame).fit()
    if fit.df_resid < 1:
        result["note"] = "no residual degrees of freedom: the grid needs more seeds of each factor"
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a perfect fit divides by a zero residual
        table = anova_lm(fit, typ=2)
    total = float(((frame["value"] - frame["value"].mean()) ** 2).sum())
    residual = float(table.loc["Residual", "sum_sq"])
    for factor in factors:
        row = table.loc[f"C({factor})"]
        sum_sq = float(row["sum_sq"])
        result["factors"].append({
            "factor": factor, "levels": int(frame[factor].nunique()), "df": int(row["df"]), "sum_sq": sum_sq,
            "F": _finite(row["F"]), "p": _finite(row["PR(>F)"]), "eta_squared": sum_sq / total,
            "partial_eta_squared": sum_sq / (sum_sq + residual) if sum_sq + residual > 0 else None,
        })
    result["residual"] = {"df": int(table.loc["Residual", "df"]), "sum_sq": residual}
    return result


def per_reservoir(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The metric's mean and 95% interval over training seeds, per reservoir seed."""
    seeds = sorted({r["reservoir_seed"] for r in rows})
    table = []
    for seed in seeds:
        values = [r["metrics"][metric] for r in rows if r["reservoir_seed"] == seed and metric in r["metrics"]]
        if values:
            table.append({"reservoir_seed": seed, **seed_summary(values)})
    return table


def recommended_reservoir(rows: list[dict[str, Any]], anova: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The reservoir seed with the best mean carried metric (ties broken by the next metrics in order)."""
    metrics = [m for m in METRICS if all(m in r["metrics"] for r in rows)]
    tables = {m: {row["reservoir_seed"]: row for row in per_reservoir(rows, m)} for m in metrics}

    def rank(seed: int) -> tuple[float, ...]:
        return tuple(tables[m][seed]["mean"] * (1 if METRICS[m] == "higher" else -1) for m in metrics)

    seeds = list(tables[PRIMARY])
    best = max(seeds, key=rank)
    chosen = tables[PRIMARY][best]
    tied = [s for s in seeds if tables[PRIMARY][s]["mean"] == chosen["mean"]]
    effect = next((f for f in anova.get(PRIMARY, {}).get("factors", []) if f["factor"] == "reservoir_seed"), None)
    p = effect["p"] if effect else None
    return {"reservoir_seed": best, "metric": PRIMARY, "mean": chosen["mean"], "ci95": chosen["ci95"],
            "n_train_seeds": chosen["n"], "tied_on_metric": tied, "ranked_by": metrics,
            "reservoir_seed_p": p, "significant": None if p is None else p < SIGNIFICANCE}


def compare_recurrences(rows: list[dict[str, Any]], point: dict[str, Any]) -> dict[str, Any] | None:
    """The trained GRU against the fixed reservoir at one grid point: per-metric summaries and the paired
    difference (GRU - reservoir) over the same (reservoir seed, training seed) pairs."""
    from scipy import stats

    here = [r for r in rows if r["point"] == point]
    by_kind = {kind: {(r["reservoir_seed"], r["train_seed"]): r for r in here if r["recurrence"] == kind}
               for kind in ("reservoir", "gru")}
    if not by_kind["reservoir"] or not by_kind["gru"]:
        return None
    pairs = sorted(set(by_kind["reservoir"]) & set(by_kind["gru"]))
    comparison: dict[str, Any] = {"point": point, "n_pairs": len(pairs), "metrics": {}}
    for metric in [*METRICS, *CONTROLS]:
        if not all(metric in r["metrics"] for kind in by_kind.values() for r in kind.values()):
            continue
        entry: dict[str, Any] = {kind: seed_summary([r["metrics"][metric] for r in runs.values()])
                                 for kind, runs in by_kind.items()}
        differences = [by_kind["gru"][p]["metrics"][metric] - by_kind["reservoir"][p]["metrics"][metric]
                       for p in pairs]
        if differences:
            p_value = None
            if len(differences) > 1 and len(set(differences)) > 1:
                p_value = _finite(stats.ttest_rel([by_kind["gru"][p]["metrics"][metric] for p in pairs],
                                                  [by_kind["reservoir"][p]["metrics"][metric] for p in pairs]).pvalue)
            entry["gru_minus_reservoir"] = {**seed_summary(differences), "paired_t_p": p_value}
        comparison["metrics"][metric] = entry
    return comparison


def analyse(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-run rows, per-group statistics (recurrence x grid point) and the recurrence comparison."""
    rows = [run_row(record) for record in records]
    groups = []
    seen: list[tuple[str, str]] = []
    for row in rows:
        label = (row["recurrence"], json.dumps(row["point"], sort_keys=True))
        if label not in seen:
            seen.append(label)
    for recurrence, point_text in seen:
        members = [r for r in rows if r["recurrence"] == recurrence and json.dumps(r["point"], sort_keys=True)
                   == point_text]
        metrics = [m for m in [*METRICS, *CONTROLS] if all(m in r["metrics"] for r in members)]
        anova = {m: two_way_anova(members, m) for m in metrics if m in METRICS}
        groups.append({
            "recurrence": recurrence, "point": json.loads(point_text), "n_runs": len(members),
            "reservoir_seeds": sorted({r["reservoir_seed"] for r in members}),
            "train_seeds": sorted({r["train_seed"] for r in members}),
            "metrics": {m: seed_summary([r["metrics"][m] for r in members]) for m in metrics},
            "anova": anova,
            "per_reservoir": {m: per_reservoir(members, m) for m in metrics if m in METRICS},
            "recommended_reservoir": recommended_reservoir(members, anova),
        })
    points = []
    for row in rows:
        if row["point"] not in points:
            points.append(row["point"])
    comparisons = [c for c in (compare_recurrences(rows, point) for point in points) if c is not None]
    return {"runs": rows, "groups": groups, "comparisons": comparisons}


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
