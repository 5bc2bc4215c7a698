"""The stateful battery: eight tasks trained together, each scored carried / wiped / stateless.

A run trains one model (readout, gate head, optional LoRA) on a weighted mix of the registered tasks,
through the carried state, and scores every task three ways:

- ``carried``: the trained model with its state carried between passes;
- ``wiped``: the same parameters with the state reset before every pass (the wiped-state control);
- ``stateless``: the *stateless ablation*, a second model trained on the same mix with the same
  readout, gate head and LoRA, in which every pass starts from a trained constant state instead of the
  carried one (``RanConfig(recurrence="none")``): the same trainable capacity, no memory between passes.

A task is *reservoir-driven* when its carried score beats the stateless one beyond the spread over
seeds (carried mean - std > stateless mean + std); one seed has no spread and gets no verdict. Two
recipes can be compared: ``readout`` (only the readout and gate head train, learning rate decayed to
zero: the original study's "retention recipe", which leaves the stateless shortcut little capacity)
and ``lora`` (LoRA rank 8 on the upper layers' attention, constant learning rate: the plain recipe).
Spreads over seeds are :func:`ran.stats.seed_summary`'s: the sample std (ddof=1) and a 95% t-interval.

An *arm* is a recipe at one point of a settings grid (``ran battery --grid``, the grid of ``ran crosspass
--grid``: :mod:`ran.grid`); without a grid each recipe is one arm. Runs and summary rows carry their recipe
and their ``point`` (the grid's values; files written before the grid have no ``point``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ran.engine import Backend, member_of, run_members, runner_record
from ran.engine.report import results_document
from ran.model import RanConfig
from ran.passes import PassFormat
from ran.runner import RunSpec
from ran.stats import seed_summary
from ran.tasks import BATTERY, Task, task_class
from ran.tasks.mix import TaskMix
from ran.tracking import TrackConfig
from ran.training import TrainConfig

RECORDS_SUFFIX = ".records"  # <out>/<name>.records/<key>.json: one record per finished run (ran.engine)
CONDITIONS = ("carried", "wiped", "stateless", "untrained")


@dataclass(frozen=True)
class Recipe:
    name: str
    lora_rank: int
    schedule: str
    description: str


RECIPES = {
    "readout": Recipe("readout", 0, "cosine", "readout + gate head only, learning rate decayed to 0"),
    "lora": Recipe("lora", 8, "constant", "LoRA rank 8 on attention at and above the layer, constant rate"),
}

# The original study's figures (single runs), where it reports one for the task.
STUDY = {
    "recall": "1.00 carried vs 0.000 stateless (retention recipe); at the floor under the plain multi-task recipe",
    "timed": "matched by the stateless ablation",
    "initiative": "matched by the stateless ablation",
    "silence": "silence as an end-of-text target suppressed content; a gate head fixed it (recall 0.44 vs ~0)",
}


def default_tasks(names: tuple[str, ...] = BATTERY) -> tuple[Task, ...]:
    return tuple(task_class(name)() for name in names)


def specs_for(model: str, ran: RanConfig, mix: TaskMix, train: TrainConfig, seeds: list[int], recipe: Recipe,
              pass_format: PassFormat, device: str = "auto", dtype: str = "auto") -> list[RunSpec]:
    """One spec per seed (reservoir, readout and data seeds follow it), with the recipe applied."""
    specs = []
    for seed in seeds:
        config = replace(ran, gate=True, lora_rank=recipe.lora_rank, readout_seed=seed,
                         reservoir=replace(ran.reservoir, seed=seed))
        specs.append(RunSpec(model, config, mix, replace(train, seed=seed, schedule=recipe.schedule), pass_format,
                             device, dtype))
    return specs


Arm = tuple[str, dict[str, Any]]  # (recipe name, grid point): one arm of the battery


def artifact_name(arm: Arm, spec: RunSpec) -> str:
    recipe, point = arm
    settings = "".join(f"-{name}{value}" for name, value in point.items())
    return f"battery-{recipe}{settings}-seed{spec.train.seed}"


def arm_label(recipe: str, point: dict[str, Any]) -> str:
    """How an arm is named in tables, plots and tracked runs: its recipe, then its grid values."""
    return " ".join([recipe, *(f"{name}={value}" for name, value in point.items())])


def battery_record(record: dict[str, Any], recipe: Recipe, names: list[str],
                   point: dict[str, Any] | None = None) -> dict[str, Any]:
    """A runner record with its per-task scores laid out as ``tasks[name][condition]``, in the mix's order
    ``names`` (a record on disk has its keys sorted), and its arm: the recipe and the grid ``point``."""
    scores = record.pop("scores")
    record["recipe"] = recipe.name
    record["point"] = dict(point or {})
    record["tasks"] = {name: {c: scores[c]["tasks"][name] for c in CONDITIONS if c in scores} for name in names}
    record["gate"] = {c: gate_summary(scores[c]["tasks"]) for c in CONDITIONS if c in scores}
    return record


def gate_summary(task_scores: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Precision and recall of speaking over every pass the tasks label speak/silent."""
    totals = {"true_speak": 0, "false_speak": 0, "missed": 0, "true_silent": 0}
    for score in task_scores.values():
        for key, value in score.get("gate", {}).items():
            totals[key] += value
    spoke = totals["true_speak"] + totals["false_speak"]
    due = totals["true_speak"] + totals["missed"]
    return {**totals, "precision": totals["true_speak"] / spoke if spoke else float("nan"),
            "recall": totals["true_speak"] / due if due else float("nan")}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm (recipe and grid point) and task, over seeds, each condition's headline value:
    :func:`ran.stats.seed_summary`."""
    arms: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        arms.setdefault((run["recipe"], json.dumps(run.get("point", {}), sort_keys=True)), []).append(run)
    rows = []
    for (recipe, _), members in arms.items():
        for name in members[0]["tasks"]:
            row: dict[str, Any] = {"recipe": recipe, "point": members[0].get("point", {}), "task": name,
                                   "metric": task_class(name).metric, "seeds": [m["seed"] for m in members]}
            for condition in CONDITIONS:
                values = [m["tasks"][name][condition]["value"] for m in members if condition in m["tasks"][name]]
                if values:
                    row[condition] = seed_summary(values)
            if "stateless" in row and len(members) > 1:  # the spread over seeds needs two seeds or more
                carried, stateless = row["carried"], row["stateless"]
                row["reservoir_driven"] = carried["mean"] - carried["std"] > stateless["mean"] + stateless["std"]
            row["study"] = STUDY.get(name, "")
            rows.append(row)
    return rows


def members_of(arms: list[tuple[Arm, list[RunSpec]]]) -> list[dict[str, Any]]:
    """The engine's members (``ran.engine.members``): every run with its arm (its point: the recipe, then the
    grid's values) and its stateless ablation."""
    return [member_of(spec, {"recipe": recipe, **point}, stateless=True) for (recipe, point), specs in arms
            for spec in specs]


def experiment(arms: list[tuple[Arm, list[RunSpec]]], records: Path, progress: bool = True,
               save_dir: Path | None = None, track: TrackConfig | None = None, backend: Backend | None = None,
               threads: int | None = None, varied: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train and score every arm's specs with their stateless ablations on the engine (``ran.engine``: one record
    per run under ``records``, so a killed battery resumes; in-process or on Ray); the results document.
    ``varied``: the grid's fields (the config is the first run's)."""
    started = time.perf_counter()
    first = arms[0][1][0]
    named = [(arm, spec) for arm, specs in arms for spec in specs]
    saves = [None if save_dir is None else save_dir / artifact_name(arm, spec) for arm, spec in named]
    finished = run_members(members_of(arms), records, backend, threads, progress, track=track,
                           label_of=lambda member: arm_label(member["point"]["recipe"], {
                               k: v for k, v in member["point"].items() if k != "recipe"}), saves=saves)
    runs = [battery_record(runner_record(record), RECIPES[recipe], [task.name for task in spec.task.tasks], point)
            for record, ((recipe, point), spec) in zip(finished, named, strict=True)]
    recipes = dict.fromkeys(recipe for (recipe, _), _ in arms)
    config = {"ran": first.ran.to_dict(), "mix": first.task.to_dict(), "train": first.train.to_dict(),
              "format": first.format.to_dict(), "recipes": {name: RECIPES[name].__dict__ for name in recipes}}
    return results_document("battery", first.model, config, runs, summarise(runs), time.perf_counter() - started,
                            varied=list(varied))
