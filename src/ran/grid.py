"""Settings an experiment may vary over a grid, shared by ``ran crosspass --grid`` and ``ran population``,
and reading a JSON settings file with one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ran.errors import ConfigError
from ran.model import RanConfig
from ran.training import TrainConfig

MAX_JSON_BYTES = 64 * 2**20  # a settings file (a task with thousands of keys is well under a megabyte)
# field -> (the config it lives in, its type)
GRID_FIELDS: dict[str, tuple[str, type]] = {
    "units": ("reservoir", int), "leak_rate": ("reservoir", float), "input_scaling": ("reservoir", float),
    "spectral_radius": ("reservoir", float), "connectivity": ("reservoir", float),
    "leak_rate_min": ("reservoir", float),
    "n_slots": ("ran", int), "summary": ("ran", str), "write": ("ran", str), "lora_rank": ("ran", int),
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


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing file, a directory, a binary or unreadable file, bad JSON or another
    JSON type is one clear error."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory: give a JSON file")
    if path.is_file() and path.stat().st_size > MAX_JSON_BYTES:
        raise ConfigError(f"{what} {path} is {path.stat().st_size:,} bytes, more than the {MAX_JSON_BYTES:,} a "
                          "settings file may have")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8): give a JSON file") from None
    except OSError as error:
        raise ConfigError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise ConfigError(f"{what} {path} is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object {{...}}, not {type(data).__name__}")
    return data
