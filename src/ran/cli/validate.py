"""One check of every numeric flag of every subcommand, run before the subcommand does any work.

``LIMITS`` holds the valid range of each numeric flag by its destination name (the same name means the
same kind of number in every subcommand); :func:`check_arguments` refuses a value outside it, or a NaN or
infinite one, in one line naming the flag, the value and the range. A test checks that every numeric
flag has an entry here, so a new flag cannot skip the check. The config dataclasses validate the same
values again for the Python API.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ran.errors import ConfigError
from ran.limits import MAX_SEED, MAX_SLOTS, check_reservoir_size
from ran.tasks.recall import MAX_DELAY


@dataclass(frozen=True)
class Limit:
    low: float | None = None
    high: float | None = None
    integer: bool = True
    low_open: bool = False  # the low bound itself is not allowed (e.g. > 0)
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if not self.integer and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low, high = (None if bound is None else _number(bound) for bound in (self.low, self.high))
        if self.low is not None and self.high is not None:
            if self.integer and not self.low_open and not self.high_open:
                return f"{kind} in {low}..{high}"
            return f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        return f"{kind} <= {high}" if self.high is not None else kind


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else f"{value:g}"


def _integer(low: int | None = 0, high: int | None = None) -> Limit:
    return Limit(low, high)


def _real(low: float | None = None, high: float | None = None, low_open: bool = False,
          high_open: bool = False) -> Limit:
    return Limit(low, high, integer=False, low_open=low_open, high_open=high_open)


COUNT = _integer(0, 1_000_000)  # counts that may be 0 (0 often means "all" or "off")
POSITIVE = _integer(1, 1_000_000)
SEED = _integer(0, MAX_SEED)
FRACTION = _real(0.0, 1.0, low_open=True, high_open=True)

LIMITS: dict[str, Limit] = {
    # the reservoir and how it is attached
    "units": _integer(1, None), "slots": _integer(1, MAX_SLOTS), "layer": _integer(0, 10_000),
    "read_places": _integer(1, 64), "reply_places": _integer(0, 64), "gate_hidden": _integer(0, 65_536),
    "running_units": _integer(0, None),
    "lora_rank": _integer(0, 1_024), "spectral_radius": _real(0.0, 100.0, low_open=True),
    "leak_rate": _real(0.0, 1.0, low_open=True), "leak_rate_min": _real(0.0, 1.0, low_open=True),
    "input_scaling": _real(0.0, 1e6),
    "connectivity": _real(0.0, 1.0, low_open=True), "reservoir_seed": SEED,
    # training and tasks
    "steps": _integer(1, 10_000_000), "lr": _real(0.0, 10.0, low_open=True), "batch_size": COUNT,
    "curriculum_steps": COUNT, "seeds": SEED, "split_seed": SEED, "keys": POSITIVE, "heldout_keys": COUNT,
    "keys_per_step": COUNT, "eval_keys": COUNT, "repeats": _integer(1, 1_000), "capacity": POSITIVE,
    "eval_delays": _integer(0, MAX_DELAY), "scalings": _real(0.0, 1e6), "episodes_per_step": _integer(1, 100_000),
    "weights": _real(0.0, 1e6),
    # the memory recipe (ran remember)
    "words": POSITIVE, "heldout_words": POSITIVE, "values_per_kind": POSITIVE, "heldout_values_per_kind": POSITIVE,
    "eval_values": POSITIVE, "per_step": _integer(1, 100_000), "harm_fraction": _real(0.0, 1.0, high_open=True),
    "write_margin": _real(-100.0, 100.0), "write_hidden": _integer(0, 65_536),
    # sessions and generation
    "new_tokens": _integer(0, 4_096), "max_new_tokens": _integer(0, 4_096), "temperature": _real(0.0, 100.0),
    "sample_seed": SEED, "sinks": COUNT, "window": COUNT, "heavy": COUNT, "max_entropy": _real(0.0, 1_000.0),
    # populations
    "threads": _integer(1, 1_024), "workers": _integer(0, 1_024), "batch_runs": _integer(1, 4_096),
    # ran serve
    "port": _integer(0, 65_535),
    # the probes
    "spectral_radii": _real(0.0, 100.0, low_open=True), "input_scalings": _real(0.0, 1e6),
    "leak_rates": _real(0.0, 1.0, low_open=True), "washout": COUNT, "band_radius": _real(0.0, 100.0, low_open=True),
    "max_saturation": _real(0.0, 1.0), "max_delay": _integer(1, 100_000), "length": _integer(2, 10_000_000),
    "test_fraction": FRACTION, "ridge": _real(0.0, 1e6), "trigger_rate": FRACTION, "stop_rate": FRACTION,
    "penalties": _real(0.0, 1e6), "list_length": _integer(1, 64), "train_episodes": _integer(10, 10_000_000),
    "test_episodes": _integer(1, 10_000_000),
    "drifts": _real(0.0, 1e6), "detect_f1": _real(0.0, 1.0, low_open=True),
}


def _units_fit(value: int, args: argparse.Namespace) -> None:
    connectivity = getattr(args, "connectivity", None)
    check_reservoir_size(value, connectivity if connectivity is not None else 0.1)


# Checks beyond a range, which see the other flags too: a reservoir's cap says what it would cost.
FURTHER: dict[str, Callable[[Any, argparse.Namespace], None]] = {"units": _units_fit}


def numeric_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.type in (int, float)]


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse, in one line, the first numeric flag of ``parser`` whose value in ``args`` is out of range."""
    for action in numeric_actions(parser):
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        limit = LIMITS[action.dest]  # a KeyError here is a flag added without a limit (a test catches it)
        flag = max(action.option_strings, key=len) if action.option_strings else action.dest
        for item in value if isinstance(value, list) else [value]:
            if not limit.allows(item):
                raise ConfigError(f"{flag} must be {limit.describe()}, got {item!r}")
            if action.dest in FURTHER:
                try:
                    FURTHER[action.dest](item, args)
                except ConfigError as error:
                    raise ConfigError(f"{flag} {item}: {error}") from None
