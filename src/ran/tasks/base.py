"""What a task is: a seeded episode generator plus its metric, registered by name.

A task yields the episodes of each training step (drawn with the step's generator) and a fixed list of
evaluation episodes; it scores greedy predictions on those. The runner (``ran.runner``) trains on a
weighted mix of tasks and evaluates every task under each condition; nothing in it knows a task's
content.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import asdict
from typing import Any, ClassVar

import torch

from ran import schema
from ran.episodes import Episode, Prediction
from ran.errors import ConfigError
from ran.passes import Renderer


class Task(ABC):
    """A registered task. Subclasses are frozen dataclasses (their fields are the task's settings)."""

    name: ClassVar[str]
    metric: ClassVar[str]  # the headline metric's name; higher is better

    @abstractmethod
    def check(self, renderer: Renderer) -> None:
        """Refuse, with one clear line, settings this tokenizer and format cannot run."""

    @abstractmethod
    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        """The episodes of one training step (``scaffold``: a curriculum's hint level, where a task has one)."""

    @abstractmethod
    def evaluation_episodes(self) -> list[Episode]:
        """The fixed evaluation episodes (the same on every call)."""

    def candidates(self, renderer: Renderer) -> list[int] | None:
        """Token ids to rank at the last target token (e.g. the keys), or None."""
        return None

    def decoding(self, renderer: Renderer) -> dict[str, Any]:
        """How evaluation decodes multi-token answers (keyword arguments of ``ran.training.predict``)."""
        return {}

    @abstractmethod
    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        """``{"value": headline metric, "groups": {group: value}, ...}`` from the predictions."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str | None = None) -> Task:
        """The task from its settings (a task file, ``--set``), each checked against the field's type;
        ``what`` names the source in errors (default: "<name> task settings")."""
        return schema.from_dict(cls, data, what or f"{cls.name} task settings")


class SampledTask(Task):
    """A task whose episodes are independent draws: ``per_step`` of them per training step, and
    ``eval_count`` for evaluation, drawn from a fixed seed. Subclasses define those two fields and
    ``episode(generator, evaluation)``."""

    per_step: int
    eval_count: int

    @abstractmethod
    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        """One episode; ``evaluation`` picks the evaluation pools where a task keeps them apart."""

    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        return [self.episode(generator) for _ in range(self.per_step)]

    def evaluation_episodes(self) -> list[Episode]:
        from ran.tasks.common import EVAL_SEED

        generator = torch.Generator().manual_seed(EVAL_SEED)
        return [self.episode(generator, evaluation=True) for _ in range(self.eval_count)]


def group_key(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """What names a group of a task's scores (a row of its ``groups``, or a retention point built from one): its
    fields that are not measurements, i.e. the strings and integers but ``n`` (a count of episodes), in name
    order. A row without a ``split`` (results from before held-out keys) is of the trained keys."""
    named = {"split": "trained", **row}
    return tuple((name, value) for name, value in sorted(named.items())
                 if name != "n" and isinstance(value, str | int) and not isinstance(value, bool))


TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown task '{name}'{hint}: choose from {', '.join(sorted(TASKS))}")
    return TASKS[name]
