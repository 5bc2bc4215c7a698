"""Settings an experiment may vary over a grid, shared by ``ran crosspass --grid`` and ``ran population``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ran.errors import ConfigError
from ran.model import RanConfig
from ran.training import TrainConfig

# field -> (the config it lives in, its type)
GRID_FIELDS: dict[str, tuple[str, type]] = {
    "units": ("reservoir", int), "leak_rate": ("reservoir", float), "input_scaling": ("reservoir", float),
    "spectral_radius": ("reservoir", float), "connectivity": ("reservoir", float),
    "leak_rate_min": ("reservoir", float),
    "n_slots": ("ran", int), "summary": ("ran", str), "write": ("ran", str), "idle_write": ("ran", str),
    "recall": ("ran", str),
    "drive": ("ran", str), "read_places": ("ran", int), "read_from": ("ran", str), "slot_order": ("ran", str),
    "value_read": ("ran", str), "place_count": ("ran", str), "gate_context": ("ran", str), "gate_hidden": ("ran", int),
    "gate_reads": ("ran", str),
    "running_units": ("ran", int), "running_clock": ("ran", str), "write_margin": ("ran", float),
    "write_hidden": ("ran", int),
    "lora_rank": ("ran", int),
    "mode": ("ran", str),
    "steps": ("train", int), "learning_rate": ("train", float),
}


def parse_grid(items: list[str], fields: dict[str, tuple[str, type]] = GRID_FIELDS) -> dict[str, tuple]:
    """``["leak_rate=0.1,0.3", "units=2048"]`` -> {"leak_rate": (0.1, 0.3), "units": (2048,)}, checked."""
    grid: dict[str, tuple] = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in fields:
            raise ConfigError(f"unknown grid field '{name}': choose from {', '.join(fields)}")
        if name in grid:
            raise ConfigError(f"grid field '{name}' is given twice")
        kind = fields[name][1]
        try:
            values = tuple(dict.fromkeys(kind(v) for v in text.split(",") if v.strip()))
        except ValueError:
            raise ConfigError(f"grid values {text!r} of '{name}' are not all {kind.__name__}") from None
        if not values:
            raise ConfigError(f"grid field '{name}' is empty: give {name}=V1,V2,...")
        grid[name] = values
    return grid


def apply_point(ran: RanConfig, train: TrainConfig, point: dict[str, Any]) -> tuple[RanConfig, TrainConfig]:
    """The configs with one grid point's values set (each field where it lives)."""
    parts = {where: {name: GRID_FIELDS[name][1](value) for name, value in point.items()
                     if GRID_FIELDS[name][0] == where} for where in ("reservoir", "ran", "train")}
    ran = replace(ran, reservoir=replace(ran.reservoir, **parts["reservoir"]), **parts["ran"])
    return ran, replace(train, **parts["train"])
