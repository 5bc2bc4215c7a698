"""Probes of what the reservoir state holds, registered by name.

Each probe has a validated config dataclass, a ``run_*(config, seeds, bank=None)`` that returns its
metrics with the stateless control beside them, and a ``plot(results, path)`` and a ``table(results)``
drawn from the results JSON only. ``ran probe NAME`` (``ran.cli.probe``) runs any of them from this
registry: its flags are the probe's :class:`Option` s, each setting the config field of its name, with
the config's type and default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from ran.errors import ConfigError
from ran.probes import gate, memory, monitor, order, sweep

GRID_GROUP = "grid (every combination is run)"


@dataclass(frozen=True)
class Option:
    """A flag of ``ran probe NAME``: ``--max-delay`` sets the config field ``max_delay``."""

    field: str
    help: str  # "{default}" stands for the config's default
    group: str | None = None  # an argument group of the help, e.g. the sweep's grid
    convert: Callable | None = None  # the flag's value -> the field's (default: a list becomes a tuple)


@dataclass(frozen=True)
class Probe:
    name: str
    config: type
    run: Callable
    plot: Callable
    table: Callable[[dict], str]
    summary: str  # what it measures, in one line (the command's help)
    headline: str  # the metric the probe is judged by
    options: tuple[Option, ...] = ()
    higher_is_better: bool = True


def _with_no_drift(levels: list[float]) -> tuple[float, ...]:
    return tuple(sorted({0.0, *levels}))  # level 0 is the clock probe itself


STEPS = Option("steps", "passes per run (default: {default})")
PROBES: dict[str, Probe] = {
    probe.name: probe
    for probe in (
        Probe("sweep", sweep.SweepConfig, sweep.run_sweep, sweep.plot, sweep.table,
              "reservoir regime over spectral radius x input scaling: echo-state boundary, band",
              "input-scaling band and echo-state boundary",
              (Option("spectral_radii", "spectral radii (default: {default})", GRID_GROUP),
               Option("input_scalings", "input scalings (default: {default})", GRID_GROUP),
               Option("units", "reservoir sizes (default: {default})", GRID_GROUP),
               Option("leak_rates", "leak rates (default: {default})", GRID_GROUP),
               Option("steps", "updates per run (default: {default})"),
               Option("washout", "first updates left out of the driven observables (default: {default})"),
               Option("band_radius", "spectral radius at which the input-scaling band is located (default: "
                                     "{default})"),
               Option("max_saturation", "band: highest saturation allowed (default: {default})"))),
        Probe("memory", memory.MemoryConfig, memory.run_memory, memory.plot, memory.table,
              "delay-memory capacity of the state vs the stateless readout", "memory capacity (sum of MC_k)",
              (Option("max_delay", "largest delay k_max (default: 2 x units)"),
               Option("length", "series length (default: 10 x k_max)"),
               Option("test_fraction", "held-out end of the series (default: {default})"),
               Option("ridge", "relative ridge penalty (default: {default})"))),
        Probe("gate", gate.GateConfig, gate.run_gate, gate.plot, gate.table,
              "'unresolved thread' silence gate on the state vs on the current input",
              "held-out F1 of the thread gate",
              (STEPS,
               Option("window", "passes to speak after a trigger, counting it (default: {default})"),
               Option("trigger_rate", "probability of a trigger per pass (default: {default})"))),
        Probe("monitor", monitor.MonitorConfig, monitor.run_monitor, monitor.plot, monitor.table,
              "clock probe, its drift degradation, and STOP interruptibility", "held-out R^2 of the clock probe",
              (STEPS,
               Option("drifts", "input drift levels, x input RMS (default: {default})", convert=_with_no_drift),
               Option("stop_rate", "probability of a STOP per pass (default: {default})"),
               Option("detect_f1", "held-out F1 at which a STOP counts as detected (default: {default})"))),
        Probe("order", order.OrderConfig, order.run_order, order.plot, order.table,
              "a list of items in the state: read from the start (the answer's order) vs from the end",
              "held-out exact match of the whole list, read in the answer's order",
              (Option("read", "the model source's item input: pass (its last token, the read 'last') or word "
                              "(the word's last token, a read labelled {{word}}) (default: {default})"),
               Option("words", "items drawn from (default: {default})"),
               Option("list_length", "shortest and longest list (default: {default})"),
               Option("train_episodes", "lists the readouts are fitted on (default: {default})"),
               Option("test_episodes", "held-out lists they are scored on (default: {default})"),
               Option("penalties", "relative ridge penalties, the best on held-back training lists kept "
                                   "(default: {default})"))),
    )
}


def get_probe(name: str) -> Probe:
    if name not in PROBES:
        close = difflib.get_close_matches(name, PROBES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown probe '{name}'{hint}: choose one of {', '.join(PROBES)}")
    return PROBES[name]


__all__ = ["PROBES", "Option", "Probe", "get_probe"]
