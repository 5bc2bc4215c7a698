"""Probes of what the reservoir state holds, registered by name.

Each probe has a validated config dataclass, a ``run_*(config, seeds, bank=None)`` that returns its
metrics with the stateless control beside them, and a ``plot(results, path)`` drawn from the results
JSON only. The ``ran`` subcommands of the same names wrap them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from ran.errors import ConfigError
from ran.probes import gate, memory, monitor, sweep


@dataclass(frozen=True)
class Probe:
    name: str
    config: type
    run: Callable
    plot: Callable
    headline: str  # the metric the probe is judged by
    higher_is_better: bool = True


PROBES: dict[str, Probe] = {
    probe.name: probe
    for probe in (
        Probe(
            "sweep",
            sweep.SweepConfig,
            sweep.run_sweep,
            sweep.plot,
            "input-scaling band and echo-state boundary",
        ),
        Probe("memory", memory.MemoryConfig, memory.run_memory, memory.plot, "memory capacity (sum of MC_k)"),
        Probe("gate", gate.GateConfig, gate.run_gate, gate.plot, "held-out F1 of the thread gate"),
        Probe(
            "monitor",
            monitor.MonitorConfig,
            monitor.run_monitor,
            monitor.plot,
            "held-out R^2 of the clock probe",
        ),
    )
}


def get_probe(name: str) -> Probe:
    if name not in PROBES:
        close = difflib.get_close_matches(name, PROBES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown probe '{name}'{hint}: choose one of {', '.join(PROBES)}")
    return PROBES[name]


__all__ = ["PROBES", "Probe", "get_probe"]
