"""``ran gate``: the "unresolved thread" silence policy, a readout on the state vs on the current input.

See :mod:`ran.probes.gate`.
"""

from __future__ import annotations

import argparse

from ran.cli.probe_common import (
    add_common_arguments,
    add_reservoir_arguments,
    reservoir_config,
    run_per_source,
)
from ran.probes.gate import GateConfig, plot, run_gate
from ran.probes.results import format_table, pm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    add_reservoir_arguments(parser)
    d = GateConfig()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"passes per run (default: {d.steps})")
    parser.add_argument(
        "--window",
        type=int,
        default=d.window,
        help=f"passes to speak after a trigger, counting it (default: {d.window})",
    )
    parser.add_argument(
        "--trigger-rate",
        type=float,
        default=d.trigger_rate,
        help=f"probability of a trigger per pass (default: {d.trigger_rate})",
    )


def table(source: str, results: dict) -> str:
    rows = []
    for name, label in (("state", "reservoir state"), ("stateless", "stateless (input)")):
        s = results["summary"][name]
        rows.append([label, pm(s["precision"]), pm(s["recall"]), pm(s["f1"])])
    return format_table(["gate reads", "precision", "recall", "F1"], rows)


def run(args: argparse.Namespace) -> int:
    def make_config(source: str) -> GateConfig:
        return GateConfig(
            reservoir=reservoir_config(args),
            source=source,
            steps=args.steps,
            window=args.window,
            trigger_rate=args.trigger_rate,
        )

    return run_per_source("gate", args, make_config, run_gate, plot, table)
