"""Caps on sizes and counts, so that no input can make ran allocate the machine away or run until killed.

Each cap is checked before any work starts, and its message says what the request would have cost.
"""

from __future__ import annotations

import os

from ran.errors import ConfigError

MAX_UNITS = 65_536  # reservoir units: the benchmarks' largest reservoir (built in ~25 s at connectivity 0.01)
MAX_SLOTS = 1_024  # slot keys/values or prefix pseudo-tokens
MAX_TICKS = 1_000  # idle ticks in one /tick command
MAX_INPUT_CHARACTERS = 20_000  # one input line of a session (~5,000 tokens of English)
MAX_SEED = 2**32 - 1


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def reservoir_bytes(units: int, connectivity: float, input_dim: int) -> int:
    """Peak bytes of building a reservoir: W_r's nonzeros (SciPy float32 + int32, then torch's int64 indices),
    a dense W_r copy below 4097 units, and W_in (drawn in float64, kept in float32)."""
    nonzeros = units * max(1, round(connectivity * units))
    recurrent = nonzeros * (4 + 4) + (units * units * 4 if units <= 4096 else nonzeros * (8 + 4))
    return int(recurrent + units * input_dim * (8 + 4))


def check_reservoir_size(units: int, connectivity: float, input_dim: int | None = None) -> None:
    """Refuse a reservoir above :data:`MAX_UNITS`, or one whose matrices would not fit in this machine's RAM."""
    dim = input_dim or 576  # SmolLM2's width when the model is not known yet
    needed = reservoir_bytes(units, connectivity, dim)
    if units > MAX_UNITS:
        raise ConfigError(f"units must be at most {MAX_UNITS:,}, got {units:,}: its matrices would need about "
                          f"{format_bytes(needed)} (connectivity {connectivity:g}, input width {dim}); "
                          f"{MAX_UNITS:,} units need {format_bytes(reservoir_bytes(MAX_UNITS, connectivity, dim))}")
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise ConfigError(f"a reservoir of {units:,} units (connectivity {connectivity:g}, input width {dim}) needs "
                          f"about {format_bytes(needed)}, more than this machine's {format_bytes(memory)} of RAM: "
                          "use fewer units or a lower connectivity")
