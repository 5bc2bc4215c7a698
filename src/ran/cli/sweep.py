"""``ran sweep``: the reservoir's regime over spectral radius x input scaling (x units, x leak rate).

On synthetic input and on real activations of the model at the injection layer. Prints the echo-state
boundary on zero input and the input-scaling band (low saturation, high separation) per source; see
:mod:`ran.probes.sweep`.
"""

from __future__ import annotations

import argparse
import time

from ran.cli.probe_common import (
    add_common_arguments,
    check_results,
    load_bank,
    progress,
    record,
    seeds_of,
    sources_of,
)
from ran.probes.results import Timer, format_table
from ran.probes.sweep import SweepConfig, plot, run_sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    d = SweepConfig()
    grid = parser.add_argument_group("grid (every combination is run)")
    grid.add_argument(
        "--spectral-radii",
        type=float,
        nargs="*",
        default=list(d.spectral_radii),
        help="spectral radii (default: %(default)s)",
    )
    grid.add_argument(
        "--input-scalings",
        type=float,
        nargs="*",
        default=list(d.input_scalings),
        help="input scalings (default: %(default)s)",
    )
    grid.add_argument(
        "--units", type=int, nargs="*", default=list(d.units), help="reservoir sizes (default: %(default)s)"
    )
    grid.add_argument(
        "--leak-rates",
        type=float,
        nargs="*",
        default=list(d.leak_rates),
        help="leak rates (default: %(default)s)",
    )
    parser.add_argument("--steps", type=int, default=d.steps, help=f"updates per run (default: {d.steps})")
    parser.add_argument(
        "--washout",
        type=int,
        default=d.washout,
        help=f"first updates left out of the driven observables (default: {d.washout})",
    )
    parser.add_argument(
        "--band-radius",
        type=float,
        default=d.band_radius,
        help=f"spectral radius at which the input-scaling band is located (default: {d.band_radius})",
    )
    parser.add_argument(
        "--max-saturation",
        type=float,
        default=d.max_saturation,
        help=f"band: highest saturation allowed (default: {d.max_saturation})",
    )


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def table(results: dict) -> str:
    rows = []
    for row in results["summary"]["rows"]:
        boundary = row["echo_boundary"]
        band = row["band_input_scalings"]
        rows.append(
            [
                row["source"],
                str(row["units"]),
                f"{row['leak_rate']:g}",
                f"{_fmt(boundary['last_radius_forgetting'])} .. {_fmt(boundary['first_radius_remembering'])}",
                f"{min(band):g} .. {max(band):g}" if band else "none",
                _fmt(row["saturation_crosses_0.5_at_scaling"]),
            ]
        )
    return format_table(
        [
            "source",
            "units",
            "leak",
            "echo boundary (rho, zero input)",
            "band (input scaling)",
            "saturation 0.5 at",
        ],
        rows,
    )


def run(args: argparse.Namespace) -> int:
    seeds = seeds_of(args)
    sources = sources_of(args)
    config = SweepConfig(
        spectral_radii=tuple(args.spectral_radii),
        input_scalings=tuple(args.input_scalings),
        units=tuple(args.units),
        leak_rates=tuple(args.leak_rates),
        sources=tuple(sources),
        steps=args.steps,
        washout=args.washout,
        band_radius=args.band_radius,
        max_saturation=args.max_saturation,
    )
    tag = "-".join(sources) if len(sources) == 1 else "both"
    check_results("sweep", [tag], args)
    timer = Timer()
    bank = load_bank(args, sources, timer)
    started = time.perf_counter()
    with timer("run_s"):
        results = run_sweep(config, seeds, bank, progress=progress)
    path = record("sweep", tag, args, config.to_dict(), seeds, results, timer, bank, plot)
    n_points = len(results["points"])
    print(
        f"\nsweep: {n_points} runs (grid x sources x seeds {seeds}) in {time.perf_counter() - started:.1f}s; "
        f"band at rho={results['summary']['rows'][0]['band_radius']}, saturation <= {config.max_saturation}, "
        f"separation >= {config.min_separation_fraction} x its max"
    )
    print(table(results))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0
