"""The cross-pass recall experiment: train, then measure recall with the carried state and with it wiped.

One *run* is (injection mode, task, reservoir seed, training seed): it wraps the model, measures the
untrained baseline, trains the readout through the carried state, and evaluates the same trained
parameters twice: with the state carried between passes, and with it reset before every pass (the
wiped-state control). Recall is the fraction of keys whose token is the greedy next token over the
whole vocabulary; ``among_keys`` restricts the choice to the keys (chance = 1 / number of keys).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ran.loading import load_model
from ran.model import RanConfig, ReservoirModel, wrap
from ran.provenance import environment
from ran.recall import RecallTask
from ran.training import TrainConfig, predict, train

SCHEMA = "ran.crosspass/1"
CONDITIONS = ("carried", "wiped", "untrained")


@dataclass(frozen=True)
class RunSpec:
    model: str
    ran: RanConfig
    task: RecallTask
    train: TrainConfig


def _recall(predicted: list[list[int]], key_ids: list[int]) -> float:
    return sum(p[0] == k for p, k in zip(predicted, key_ids, strict=True)) / len(key_ids)


@torch.no_grad()
def _among_keys(model: ReservoirModel, tokenizer, task: RecallTask, key_ids: list[int], carry: bool) -> float:
    """Recall when the answer must be one of the keys (the original study's 1/n chance level)."""
    from ran.episodes import collate
    from ran.training import run_passes

    _, last_logits = run_passes(model, collate(task.episodes(), tokenizer), carry=carry)
    choice = last_logits[-1][:, key_ids].argmax(-1)  # (B,) index into the keys
    return int((choice == torch.arange(len(key_ids))).sum()) / len(key_ids)


def evaluate(model: ReservoirModel, tokenizer, task: RecallTask) -> dict[str, Any]:
    """Carried and wiped recall of a (trained) model, with per-key predictions."""
    key_ids = task.key_token_ids(tokenizer)
    episodes = task.episodes()
    carried = predict(model, tokenizer, episodes, carry=True)
    wiped = predict(model, tokenizer, episodes, carry=False)
    return {
        "recall": {"carried": _recall(carried, key_ids), "wiped": _recall(wiped, key_ids)},
        "among_keys": {"carried": _among_keys(model, tokenizer, task, key_ids, True),
                       "wiped": _among_keys(model, tokenizer, task, key_ids, False)},
        "predictions": [{"key": key, "carried": tokenizer.decode(c[0]), "wiped": tokenizer.decode(w[0])}
                        for key, c, w in zip(task.keys, carried, wiped, strict=True)],
    }


def run_one(spec: RunSpec, base=None, tokenizer=None, progress: bool = True,
            save_to: Path | None = None) -> dict[str, Any]:
    """Train and evaluate one run; returns its JSON record. Loads the model unless ``base`` is given."""
    if base is None or spec.ran.lora_rank:  # LoRA changes the backbone: every run gets a fresh one
        base, tokenizer = load_model(spec.model)
    key_ids = spec.task.key_token_ids(tokenizer)
    model = wrap(base, spec.ran)
    try:
        untrained = _recall(predict(model, tokenizer, spec.task.episodes(), carry=True), key_ids)
        untrained_among = _among_keys(model, tokenizer, spec.task, key_ids, True)
        task = spec.task
        n_keys = len(task.keys)

        def episodes_for_step(step: int, generator: torch.Generator):
            curriculum = spec.train.curriculum_steps
            if not curriculum or step >= curriculum:
                return task.episodes()
            show_probability = 1.0 - step / curriculum
            shows = (torch.rand(n_keys, generator=generator) < show_probability).tolist()
            return task.episodes(show_key_in_recall=shows)

        label = f"{spec.ran.mode} seed {spec.train.seed} ({n_keys} keys)"
        trained = train(model, tokenizer, episodes_for_step, spec.train, progress=progress, description=label)
        record = evaluate(model, tokenizer, task)
        record["recall"]["untrained"] = untrained
        record["among_keys"]["untrained"] = untrained_among
        record.update({
            "mode": spec.ran.mode,
            "n_keys": n_keys,
            "seed": spec.train.seed,
            "reservoir_seed": spec.ran.reservoir.seed,
            "readout_seed": spec.ran.readout_seed,
            "input_scaling": spec.ran.reservoir.input_scaling,
            "chance_among_keys": 1.0 / n_keys,
            "loss_curve": [round(loss, 6) for loss in trained.losses],
            "train_seconds": round(trained.seconds, 3),
            "episodes_per_second": round(trained.episodes_per_second, 3),
            "ran_config": model.config.to_dict(),
            "reservoir_fingerprint": model.reservoir.fingerprint,
        })
        if save_to is not None:
            save_artifact(model, spec, record, save_to)
        return record
    finally:
        model.unwrap()


def save_artifact(model: ReservoirModel, spec: RunSpec, record: dict[str, Any], directory: Path) -> None:
    """The wrapped model plus what ``ran eval`` needs to reproduce the recall figures."""
    model.save_pretrained(directory)
    saved = {"schema": "ran.crosspass-artifact/1", "model": spec.model, "task": spec.task.to_dict(),
             "train": spec.train.to_dict(), "recall": record["recall"], "among_keys": record["among_keys"]}
    (directory / "crosspass.json").write_text(json.dumps(saved, indent=2) + "\n")


def summarise(runs: list[dict[str, Any]], group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Mean, standard deviation, min and max over seeds for every condition, per group."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in group_by), []).append(run)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(group_by, key, strict=True))
        row["seeds"] = [m["seed"] for m in members]
        for metric in ("recall", "among_keys"):
            row[metric] = {}
            for condition in CONDITIONS:
                values = [m[metric][condition] for m in members]
                row[metric][condition] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values), "values": values,
                }
        rows.append(row)
    return rows


def experiment(kind: str, specs: list[RunSpec], group_by: tuple[str, ...], progress: bool = True,
               save_dir: Path | None = None) -> dict[str, Any]:
    """Run every spec (sharing one loaded model where possible) and collect the results document."""
    started = time.perf_counter()
    base, tokenizer = load_model(specs[0].model)
    runs = []
    for spec in specs:
        target = None
        if save_dir is not None:
            scaling = spec.ran.reservoir.input_scaling
            target = save_dir / f"{spec.ran.mode}-keys{len(spec.task.keys)}-scaling{scaling:g}-seed{spec.train.seed}"
        runs.append(run_one(spec, base, tokenizer, progress=progress, save_to=target))
    first = specs[0]
    return {
        "schema": SCHEMA,
        "kind": kind,
        **environment(),
        "model": first.model,
        "config": {"ran": first.ran.to_dict(), "task": first.task.to_dict(), "train": first.train.to_dict()},
        "varied": list(group_by),
        "runs": runs,
        "summary": summarise(runs, group_by),
        "seconds": round(time.perf_counter() - started, 1),
    }


def specs_for(model: str, ran: RanConfig, task: RecallTask, train_config: TrainConfig, seeds: list[int],
              reservoir_seed: int | None = None) -> list[RunSpec]:
    """One spec per seed: the reservoir seed follows the seed unless fixed; the readout seed always does."""
    specs = []
    for seed in seeds:
        reservoir = replace(ran.reservoir, seed=seed if reservoir_seed is None else reservoir_seed)
        specs.append(RunSpec(model, replace(ran, reservoir=reservoir, readout_seed=seed), task,
                             replace(train_config, seed=seed)))
    return specs
