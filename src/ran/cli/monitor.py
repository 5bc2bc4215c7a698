"""``ran monitor``: clock probe, its degradation under input drift, and interruptibility.

See :mod:`ran.probes.monitor`.
"""

from __future__ import annotations

import argparse

from ran.cli.probe_common import (
    add_common_arguments,
    add_reservoir_arguments,
    reservoir_config,
    run_per_source,
)
from ran.probes.monitor import MonitorConfig, plot, run_monitor
from ran.probes.results import format_table, pm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    add_reservoir_arguments(parser)
    d = MonitorConfig()
    parser.add_argument("--steps", type=int, default=d.steps, help=f"passes per run (default: {d.steps})")
    parser.add_argument(
        "--drifts",
        type=float,
        nargs="*",
        default=list(d.drifts),
        help=f"input drift levels, x input RMS (default: {' '.join(map(str, d.drifts))})",
    )
    parser.add_argument(
        "--stop-rate",
        type=float,
        default=d.stop_rate,
        help=f"probability of a STOP per pass (default: {d.stop_rate})",
    )
    parser.add_argument(
        "--detect-f1",
        type=float,
        default=d.detect_f1,
        help=f"held-out F1 at which a STOP counts as detected (default: {d.detect_f1})",
    )


def table(source: str, results: dict) -> str:
    s = results["summary"]
    rows = [["clock R^2 (no drift)", pm(s["clock"]["state"]), pm(s["clock"]["stateless"])]]
    rows += [
        [f"clock R^2, drift {row['level']:g}", pm(row["state"]), pm(row["stateless"])]
        for row in s["drift"]
        if row["level"] > 0
    ]
    rows.append(
        ["STOP detectable (passes after)", pm(s["interrupt"]["state"], 1), pm(s["interrupt"]["stateless"], 1)]
    )
    return format_table(["probe", "reservoir state", "stateless (input)"], rows)


def run(args: argparse.Namespace) -> int:
    def make_config(source: str) -> MonitorConfig:
        drifts = tuple(sorted({0.0, *args.drifts}))  # level 0 is the clock probe itself
        return MonitorConfig(
            reservoir=reservoir_config(args),
            source=source,
            steps=args.steps,
            drifts=drifts,
            stop_rate=args.stop_rate,
            detect_f1=args.detect_f1,
        )

    return run_per_source("monitor", args, make_config, run_monitor, plot, table)
