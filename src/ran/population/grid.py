"""A population: reservoir seeds x training seeds (x hyper-parameter lists x recurrences), one run per member.

A *member* is one run's whole configuration as a plain JSON dict (model, task, RAN and training
configs, pass format, recurrence, seeds). It is what a backend ships to a worker and what names the
run's results: its key is a hash of the dict, so a rerun of the same population finds its finished
runs whatever order or backend produced them.

The two seeds are the population's two factors: the *reservoir seed* draws the fixed reservoir (or
the trained cell's initial weights), the *training seed* draws the readout's initialisation and the
order and content of the training episodes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from ran.engine.members import member_of, task_description
from ran.errors import ConfigError
from ran.grid import GRID_FIELDS, apply_point, parse_grid
from ran.model import RanConfig
from ran.passes import PassFormat
from ran.recurrence import RECURRENCES
from ran.runner import RunSpec
from ran.schema import parse_range
from ran.tasks import RecallTask, Task
from ran.training import TrainConfig

# A grid larger than this runs only when asked twice (``--yes``): it is hours of CPU time.
LARGE_POPULATION = 64
# Hyper-parameters a population may vary: those of ``ran crosspass --grid`` (ran.grid).
HYPER_FIELDS = GRID_FIELDS


@dataclass(frozen=True)
class PopulationConfig:
    """What a population runs. Every member shares everything but its seeds, grid point and recurrence."""

    model: str
    task: Task = field(default_factory=RecallTask)
    ran: RanConfig = field(default_factory=RanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    format: PassFormat = field(default_factory=PassFormat)
    reservoir_seeds: tuple[int, ...] = tuple(range(8))
    train_seeds: tuple[int, ...] = tuple(range(4))
    hyper: dict[str, tuple] = field(default_factory=dict)  # field -> values, e.g. {"leak_rate": (0.1, 1.0)}
    recurrences: tuple[str, ...] = ("reservoir",)  # reservoir | gru, measured side by side
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        for name, seeds in (("reservoir", self.reservoir_seeds), ("training", self.train_seeds)):
            if not seeds:
                raise ConfigError(f"the population is empty: give at least one {name} seed")
            if any(not isinstance(s, int) or s < 0 for s in seeds):
                raise ConfigError(f"{name} seeds must be integers >= 0, got {list(seeds)}")
            if len(set(seeds)) != len(seeds):
                raise ConfigError(f"{name} seeds repeat: {list(seeds)}")
        if not self.recurrences:
            raise ConfigError(f"the population is empty: give at least one recurrence ({', '.join(RECURRENCES)})")
        for kind in self.recurrences:
            if kind not in RECURRENCES:
                raise ConfigError(f"unknown recurrence '{kind}': choose one of {', '.join(RECURRENCES)}")
        for name, values in self.hyper.items():
            if name not in HYPER_FIELDS:
                raise ConfigError(f"unknown grid field '{name}': choose from {', '.join(HYPER_FIELDS)}")
            if not values:
                raise ConfigError(f"the population is empty: grid field '{name}' has no values")
            if len(set(values)) != len(values):
                raise ConfigError(f"grid field '{name}' repeats a value: {list(values)}")

    @property
    def size(self) -> int:
        points = 1
        for values in self.hyper.values():
            points *= len(values)
        return len(self.recurrences) * points * len(self.reservoir_seeds) * len(self.train_seeds)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the hyper-parameter lists ([{}] when none is varied)."""
        names = list(self.hyper)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.hyper.values())]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "task": task_description(self.task), "ran": self.ran.to_dict(),
                "train": self.train.to_dict(), "format": self.format.to_dict(),
                "reservoir_seeds": list(self.reservoir_seeds), "train_seeds": list(self.train_seeds),
                "hyper": {name: list(values) for name, values in self.hyper.items()},
                "recurrences": list(self.recurrences), "device": self.device, "dtype": self.dtype}


def members(config: PopulationConfig) -> list[dict[str, Any]]:
    """One member per run (``ran.engine.members``), in a fixed order: recurrence, grid point, reservoir seed,
    training seed. Every member's configs are built (and so validated) here, before anything runs."""
    result = []
    for recurrence, point in itertools.product(config.recurrences, config.points()):
        ran_point, train_point = apply_point(config.ran, config.train, point)
        for reservoir_seed, train_seed in itertools.product(config.reservoir_seeds, config.train_seeds):
            ran = replace(ran_point, reservoir=replace(ran_point.reservoir, seed=reservoir_seed),
                          readout_seed=train_seed, recurrence=recurrence)
            spec = RunSpec(config.model, ran, config.task, replace(train_point, seed=train_seed), config.format,
                           config.device, config.dtype)
            result.append(member_of(spec, point))
    return result


def check_size(config: PopulationConfig, confirmed: bool, limit: int = LARGE_POPULATION) -> None:
    """Refuse a population of more than ``limit`` runs unless the caller confirmed it."""
    if config.size > limit and not confirmed:
        raise ConfigError(f"the population has {config.size} runs (more than {limit}): add --yes to run them all")


def parse_seeds(items: list[str], what: str) -> tuple[int, ...]:
    """``["0-3", "7"]`` -> (0, 1, 2, 3, 7): single seeds or inclusive ranges."""
    seeds: list[int] = []
    for item in items:
        low, high = parse_range(item, f"{what} seed")
        seeds += range(low, high + 1)
    return tuple(seeds)


def parse_hyper(items: list[str]) -> dict[str, tuple]:
    """``["leak_rate=0.1,0.3", "units=256"]`` -> {"leak_rate": (0.1, 0.3), "units": (256,)}, checked."""
    return parse_grid(items, HYPER_FIELDS)