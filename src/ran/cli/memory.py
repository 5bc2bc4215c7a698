"""``ran memory``: delay-memory capacity of the reservoir state beside the stateless readout.

Same definition as reservoirpy's ``memory_capacity`` (sum over delays of the squared test correlation
between a ridge readout and u(t - k)); see :mod:`ran.probes.memory`.
"""

from __future__ import annotations

import argparse

from ran.cli.probe_common import (
    add_common_arguments,
    add_reservoir_arguments,
    reservoir_config,
    run_per_source,
)
from ran.probes.memory import MemoryConfig, plot, run_memory
from ran.probes.results import format_table, pm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    add_reservoir_arguments(parser)
    d = MemoryConfig()
    parser.add_argument(
        "--max-delay", type=int, default=None, help="largest delay k_max (default: 2 x units)"
    )
    parser.add_argument("--length", type=int, default=None, help="series length (default: 10 x k_max)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=d.test_fraction,
        help=f"held-out end of the series (default: {d.test_fraction})",
    )
    parser.add_argument(
        "--ridge", type=float, default=d.ridge, help=f"relative ridge penalty (default: {d.ridge})"
    )


def table(source: str, results: dict) -> str:
    header = ["readout", "MC (sum of MC_k)", "delays MC_k>=0.9", "delays MC_k>=0.5", "max MC_k"]
    rows = []
    for name, label in (("state", "reservoir state"), ("stateless", "stateless (input)")):
        s = results["summary"][name]
        rows.append(
            [
                label,
                pm(s["total"], 2),
                pm(s["leading_delays_above_0.9"], 1),
                pm(s["leading_delays_above_0.5"], 1),
                pm(s["max_over_delays"], 3),
            ]
        )
    return format_table(header, rows)


def run(args: argparse.Namespace) -> int:
    def make_config(source: str) -> MemoryConfig:
        return MemoryConfig(
            reservoir=reservoir_config(args),
            source=source,
            max_delay=args.max_delay,
            length=args.length,
            test_fraction=args.test_fraction,
            ridge=args.ridge,
        )

    return run_per_source("memory", args, make_config, run_memory, plot, table)
