"""The cross-pass recall experiment, a report over the engine's runs: recall and retention, carried vs wiped
vs untrained.

One run trains the readout on the recall task (one hop, or mixed delays) and evaluates the same
trained parameters with the state carried and with it wiped, at every evaluation delay. Recall is the
fraction of keys whose answer is the greedy continuation over the whole vocabulary; ``among_keys``
restricts the choice to the keys (chance = 1 / number of keys). The run's ``recall`` is the one-hop
figure (delay 0) when it was evaluated, else the mean over delays; ``retention`` has every delay.

Results in the shared schema (``ran.engine.report``, experiment ``crosspass``); files of ``ran.crosspass/1`` (one
hop only) and ``ran.crosspass/2`` stay readable.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ran.engine import Backend, member_key, member_of, run_members, runner_record
from ran.engine.report import results_document
from ran.model import RanConfig
from ran.passes import PassFormat
from ran.runner import CONDITIONS, RunSpec
from ran.stats import seed_summary
from ran.tasks import RecallTask
from ran.tasks.base import group_key
from ran.tracking import TrackConfig
from ran.training import TrainConfig

METRICS = ("recall", "among_keys")
RECORDS_SUFFIX = ".records"  # <out>/<name>.records/<key>.json: one record per finished run (ran.engine)


def crosspass_record(run: dict[str, Any], task: RecallTask) -> dict[str, Any]:
    """A runner record in the crosspass layout: per-condition recall at one hop and per delay."""
    scores = run.pop("scores")
    ran, reservoir, train = run["ran_config"], run["ran_config"]["reservoir"], run["train_config"]
    record = {
        **{k: run[k] for k in ("mode", "seed", "reservoir_seed", "readout_seed", "input_scaling", "git")},
        **{k: reservoir[k] for k in ("units", "leak_rate", "spectral_radius", "connectivity")},
        **{k: ran[k] for k in ("n_slots", "summary", "lora_rank", "layer")},
        **{k: train[k] for k in ("steps", "learning_rate")},
        "n_keys": len(task.keys),
        "chance_among_keys": 1.0 / len(task.keys),
        "train_delays": list(task.train_delays),
        "recall": {c: scores[c]["value"] for c in CONDITIONS},
        "among_keys": {c: scores[c]["among_keys"] for c in CONDITIONS},
        "retention": [
            {"split": row["split"], "filler": row["filler"], "delay": row["delay"],
             "recall": {c: _row(scores[c], row)["recall"] for c in CONDITIONS},
             "among_keys": {c: _row(scores[c], row)["among_keys"] for c in CONDITIONS}}
            for row in scores["carried"]["groups"]
        ],
        "predictions": [
            {"key": carried["key"], "split": carried["split"], "filler": carried["filler"], "delay": carried["delay"],
             "carried": carried["predicted"], "wiped": wiped["predicted"]}
            for carried, wiped in zip(scores["carried"]["predictions"], scores["wiped"]["predictions"], strict=True)
        ],
    }
    heldout = [row for row in record["retention"] if row["split"] == "heldout"]
    if heldout:  # the held-out keys at the shortest delay evaluated (one hop when 0 is)
        first = min(heldout, key=lambda row: row["delay"])
        record["n_heldout_keys"] = len(task.heldout_keys)
        record["heldout"] = {"delay": first["delay"], "recall": first["recall"], "among_keys": first["among_keys"],
                             "chance_among_keys": 1.0 / len(task.heldout_keys)}
    record.update({k: v for k, v in run.items() if k not in record and k != "task"})
    return record


def _row(score: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in score["groups"] if group_key(r) == group_key(like))


def summarise(runs: list[dict[str, Any]], group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Over seeds, for every condition, per group (and per delay): :func:`ran.stats.seed_summary` (mean, sample
    std, min, max, n, 95% t-interval)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in group_by), []).append(run)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(group_by, key, strict=True))
        row["seeds"] = [m["seed"] for m in members]
        for metric in METRICS:
            row[metric] = {c: seed_summary([m[metric][c] for m in members]) for c in CONDITIONS}
        if "retention" in members[0]:
            row["retention"] = []
            for point in members[0]["retention"]:
                same = [next(p for p in m["retention"] if group_key(p) == group_key(point)) for m in members]
                row["retention"].append({"split": point.get("split", "trained"), "filler": point["filler"],
                                         "delay": point["delay"],
                                         **{metric: {c: seed_summary([p[metric][c] for p in same]) for c in CONDITIONS}
                                            for metric in METRICS}})
        if "heldout" in members[0]:
            row["heldout"] = {metric: {c: seed_summary([m["heldout"][metric][c] for m in members]) for c in CONDITIONS}
                              for metric in METRICS}
            row["heldout"]["delay"] = members[0]["heldout"]["delay"]
        rows.append(row)
    return rows


def artifact_name(spec: RunSpec) -> str:
    scaling = spec.ran.reservoir.input_scaling
    return f"{spec.ran.mode}-keys{len(spec.task.keys)}-scaling{scaling:g}-seed{spec.train.seed}"


def point_of(spec: RunSpec, varied: tuple[str, ...]) -> dict[str, Any]:
    """What a run stands for in its experiment: the values of the varied settings, read from the spec's configs."""
    sources = (spec.ran, spec.ran.reservoir, spec.train, spec.task)
    values = {name: len(spec.task.keys) if name == "n_keys" else
              next((getattr(s, name) for s in sources if hasattr(s, name)), None) for name in varied}
    return {name: value for name, value in values.items() if value is not None}


def members_of(specs: list[RunSpec], group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    """The engine's members of these runs (``ran.engine.members``), each with its point in the experiment."""
    return [member_of(spec, point_of(spec, group_by)) for spec in specs]


def tracking_label(spec: RunSpec, varied: tuple[str, ...]) -> str:
    """A tracked run's name: the values of the varied settings."""
    return "-".join(f"{name}={value}" for name, value in point_of(spec, varied).items()) or spec.ran.mode


def group_label(row: dict[str, Any], varied: list[str]) -> str:
    """How a summary row is named in tables and plots: the values of the varied settings."""
    if len(varied) == 1:
        return str(row[varied[0]])
    return " ".join(f"{name}={row[name]}" for name in varied)


def experiment(kind: str, specs: list[RunSpec], group_by: tuple[str, ...], records: Path, progress: bool = True,
               save_dir: Path | None = None, track: TrackConfig | None = None, backend: Backend | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Run every spec on the engine (``ran.engine``: one record per run under ``records``, so a killed run
    resumes; in-process or on Ray) and collect the results document."""
    started = time.perf_counter()
    members = members_of(specs, group_by)
    labels = {member_key(m): tracking_label(spec, group_by) for m, spec in zip(members, specs, strict=True)}
    saves = [None if save_dir is None else save_dir / artifact_name(spec) for spec in specs]
    finished = run_members(members, records, backend, threads, progress, track=track,
                           label_of=lambda member: labels[member_key(member)], saves=saves)
    runs = [crosspass_record(runner_record(record), spec.task) for record, spec in zip(finished, specs, strict=True)]
    first = specs[0]
    config = {"ran": first.ran.to_dict(), "task": first.task.to_dict(), "train": first.train.to_dict(),
              "format": first.format.to_dict()}
    return results_document("crosspass", first.model, config, runs, summarise(runs, group_by),
                            time.perf_counter() - started, kind=kind, varied=list(group_by))


def specs_for(model: str, ran: RanConfig, task: RecallTask, train_config: TrainConfig, seeds: list[int],
              reservoir_seed: int | None = None, pass_format: PassFormat | None = None, device: str = "auto",
              dtype: str = "auto") -> list[RunSpec]:
    """One spec per seed: the reservoir seed follows the seed unless fixed; the readout seed always does."""
    specs = []
    for seed in seeds:
        reservoir = replace(ran.reservoir, seed=seed if reservoir_seed is None else reservoir_seed)
        specs.append(RunSpec(model, replace(ran, reservoir=reservoir, readout_seed=seed), task,
                             replace(train_config, seed=seed), pass_format or PassFormat(), device, dtype))
    return specs
