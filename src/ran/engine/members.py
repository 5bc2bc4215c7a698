"""Members: one run's whole configuration as a plain JSON dict, and its key.

A member names everything a run depends on (model, task, RAN and training configs, pass format, device,
dtype) and what it stands for in its experiment (the grid point, the recurrence, its two seeds). It is
what a backend ships to a worker and what names the run's record: its key is a hash of the dict, so a
rerun of the same experiment finds its finished runs whatever order or backend produced them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ran.model import RanConfig
from ran.passes import PassFormat
from ran.runner import RunSpec
from ran.tasks import Task, task_from_settings
from ran.tasks.mix import TaskMix
from ran.training import TrainConfig

MEMBER_SCHEMA = "ran.population-member/1"  # the name predates the engine; population records keep their keys
# Config fields newer than records already written: left out of a member while at their default, as they are
# absent from those records, so those runs keep their keys (reading a member back, a missing field is its default).
NEWER_RAN_NAMES = ("gate_hidden", "running_units", "running_read", "idle_write", "gate_reads", "running_clock",
                   "write_margin", "write_hidden", "reply_places", "whiten", "running_gate_context")
NEWER_RAN_FIELDS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(RanConfig)
                                    if field.name in NEWER_RAN_NAMES}
NEWER_TASK_FIELDS: dict[str, Any] = {"appointments": [1, 1], "running_read": None, "instructions": [],
                                     "heldout_instructions": [], "silent_ticks": 1,
                                     "quiet_rate": 0.0}  # timed and initiative
# The same for the tasks whose read labels are newer than timed's (whose "read" records already hold).
NEWER_READ_TASKS = ("recall", "deferred", "accumulate", "sequence", "interrupt", "silence")


def task_description(task: Task | TaskMix) -> dict[str, Any]:
    return {"name": task.name, "settings": task.to_dict()}


def task_from_description(description: dict[str, Any]) -> Task | TaskMix:
    if description["name"] == TaskMix.name:
        return TaskMix.from_dict(description["settings"])
    return task_from_settings(description["name"], description["settings"])


def member_of(spec: RunSpec, point: dict[str, Any] | None = None, stateless: bool = False,
              harm: bool = False) -> dict[str, Any]:
    """The member of one run: ``spec`` plus its grid ``point``. ``stateless`` also trains and scores the
    stateless ablation (``ran.runner.run_one``); ``harm`` adds the no-harm check (``ran.harm.task_harm``)."""
    member = {
        "schema": MEMBER_SCHEMA, "model": spec.model, "device": spec.device, "dtype": spec.dtype,
        "task": task_description(spec.task), "format": spec.format.to_dict(),
        "recurrence": spec.ran.recurrence, "point": dict(point or {}), "reservoir_seed": spec.ran.reservoir.seed,
        "train_seed": spec.train.seed, "ran": spec.ran.to_dict(), "train": spec.train.to_dict(),
    }
    settings = member["task"]["settings"]
    mixed = member["task"]["name"] == TaskMix.name
    tasks = [(task["name"], task) for task in settings["tasks"]] if mixed else [(member["task"]["name"], settings)]
    newer_read = {**NEWER_TASK_FIELDS, "read": None}
    for fields, newer in [(member["ran"], NEWER_RAN_FIELDS),
                          *[(fields, newer_read if name in NEWER_READ_TASKS else NEWER_TASK_FIELDS)
                            for name, fields in tasks]]:
        for name, default in newer.items():
            if name in fields and fields[name] == default:
                del fields[name]
    # Each only when it departs from the default, so that the keys of the runs without it stay what they were.
    if stateless:
        member["stateless"] = True
    if harm:
        member["harm"] = True
    if not spec.untrained:
        member["untrained"] = False
    return member


def spec_of(member: dict[str, Any]) -> RunSpec:
    """The run a member describes (its configs validated again, as a worker reads them)."""
    return RunSpec(model=member["model"], ran=RanConfig.from_dict(member["ran"]),
                   task=task_from_description(member["task"]), train=TrainConfig(**member["train"]),
                   format=PassFormat.from_dict(member["format"]), device=member["device"], dtype=member["dtype"],
                   untrained=member.get("untrained", True))


def member_key(member: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the member's canonical JSON: the name of its results record."""
    text = json.dumps(member, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
