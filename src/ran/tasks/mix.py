"""A weighted mix of tasks: trained together in every step, scored one by one.

A mix is not a task: it has no episodes of its own to evaluate and no metric. What the runner needs of
what it trains on (``name``, ``check``, ``training_episodes``, ``to_dict``) it has; the runner scores
each of its tasks and :meth:`TaskMix.combine` puts their scores together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ran.episodes import Episode
from ran.errors import ConfigError
from ran.passes import Renderer
from ran.tasks.base import Task


@dataclass(frozen=True)
class TaskMix:
    """``episodes_per_step`` training episodes per step, split across the tasks in proportion to ``weights``
    (at least one each); the episodes of all tasks run in one batch (ran.episodes aligns them)."""

    name: ClassVar[str] = "mix"

    tasks: tuple[Task, ...] = ()
    weights: tuple[float, ...] = ()
    episodes_per_step: int = 32

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("the task mix is empty: give at least one task")
        if len(self.weights) != len(self.tasks):
            raise ConfigError(f"{len(self.weights)} weights for {len(self.tasks)} tasks: give one weight per task")
        for task, weight in zip(self.tasks, self.weights, strict=True):
            if not weight >= 0:
                raise ConfigError(f"the weight of task '{task.name}' must be >= 0, got {weight}")
        if sum(self.weights) <= 0:
            raise ConfigError("at least one task weight must be > 0")
        if len({t.name for t in self.tasks}) != len(self.tasks):
            raise ConfigError("a task appears twice in the mix")
        if self.episodes_per_step < 1:
            raise ConfigError(f"episodes_per_step must be >= 1, got {self.episodes_per_step}")

    def counts(self) -> list[int]:
        total = sum(self.weights)
        return [0 if w == 0 else max(1, round(self.episodes_per_step * w / total)) for w in self.weights]

    def check(self, renderer: Renderer) -> None:
        for task in self.tasks:
            task.check(renderer)

    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        """Each task's share of the step, a random subset of what the task draws: a task may draw in a fixed
        order (recall: every key in turn), and its first ``count`` episodes would then be the same keys every
        step."""
        episodes = []
        for task, count in zip(self.tasks, self.counts(), strict=True):
            drawn: list[Episode] = []
            while len(drawn) < count:
                drawn += task.training_episodes(generator, scaffold=scaffold)
            if len(drawn) > count:
                drawn = [drawn[i] for i in sorted(torch.randperm(len(drawn), generator=generator)[:count].tolist())]
            episodes += drawn
        return episodes

    @staticmethod
    def combine(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The mix's score from its tasks' scores: ``{"value": mean of their values, "tasks": {name: score}}``."""
        return {"value": sum(s["value"] for s in scores.values()) / len(scores), "tasks": scores}

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": [{"name": t.name, **t.to_dict()} for t in self.tasks], "weights": list(self.weights),
                "episodes_per_step": self.episodes_per_step}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskMix:
        """The mix of :meth:`to_dict`'s layout, each task's settings checked by its own ``from_dict``."""
        from ran.tasks import task_from_settings

        tasks = tuple(task_from_settings(entry["name"], {k: v for k, v in entry.items() if k != "name"})
                      for entry in data["tasks"])
        return cls(tasks, tuple(data["weights"]), data["episodes_per_step"])
