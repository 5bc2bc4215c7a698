"""Arguments and the run/record/plot cycle shared by the probe subcommands (sweep, memory, gate, monitor).

Every probe run writes ``<out>/<probe>-<source>.json`` (config, seeds, versions, machine, timings, peak
memory, metrics with the stateless control) and draws ``<out>/<probe>-<source>.png`` from that JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ran.cli.common import DEFAULT_OUT, add_overwrite_argument, check_outputs, reservoir_config_from
from ran.cli.common import add_reservoir_arguments as add_shared_reservoir_arguments
from ran.errors import ConfigError
from ran.loading import DEFAULT_MODEL
from ran.probes.results import Timer, environment, peak_rss_mb, read_json, write_json
from ran.probes.sources import SOURCES, ActivationBank, capture_bank
from ran.reservoir import ReservoirConfig

DEFAULT_SEEDS = [0, 1, 2]


def add_common_arguments(parser: argparse.ArgumentParser, default_out: str = DEFAULT_OUT) -> None:
    parser.add_argument(
        "--source",
        default="both",
        choices=[*SOURCES, "both"],
        help="drive the reservoir with synthetic input, real activations of --model, or both (default: both)",
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model for the model source (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--layer", type=int, default=None, help="layer the activations are read at (default: middle)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=DEFAULT_SEEDS,
        help="seeds of the reservoir and the data, one run each (default: 0 1 2)",
    )
    parser.add_argument(
        "--out", default=default_out, help=f"directory for the JSON and PNG (default: {default_out}, untracked)"
    )
    add_overwrite_argument(parser)


def check_results(probe: str, tags: list[str], args: argparse.Namespace) -> None:
    """Before any work: --out can be written and no ``<probe>-<tag>.json`` there is replaced without --overwrite."""
    out = Path(args.out)
    check_outputs(args, [out / f"{probe}-{tag}{suffix}" for tag in tags for suffix in (".json", ".png")])


def add_reservoir_arguments(parser: argparse.ArgumentParser) -> None:
    """One reservoir configuration; its seed comes from --seeds."""
    add_shared_reservoir_arguments(parser, with_seed=False)


def reservoir_config(args: argparse.Namespace) -> ReservoirConfig:
    """The reservoir of the flags (seed 0; each run replaces it with its own seed)."""
    return reservoir_config_from(args)


def sources_of(args: argparse.Namespace) -> list[str]:
    return list(SOURCES) if args.source == "both" else [args.source]


def seeds_of(args: argparse.Namespace) -> list[int]:
    if not args.seeds:
        raise ConfigError("--seeds is empty: give at least one seed, e.g. --seeds 0 1 2")
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"seeds must be >= 0, got {args.seeds}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"seeds must be distinct, got {args.seeds}")
    return list(args.seeds)


def load_bank(args: argparse.Namespace, sources: list[str], timer: Timer) -> ActivationBank | None:
    if "model" not in sources:
        return None
    with timer("capture_s"):
        bank = capture_bank(args.model, args.layer)
    info = bank.describe()
    print(
        f"captured {info['n_filler'] + info['n_trigger'] + info['n_stop']} texts from {args.model} at layer "
        f"{bank.layer} (d={bank.dim}, mean |x| {info['mean_norm']:.1f}) in {timer.seconds['capture_s']:.1f}s"
    )
    return bank


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def record(
    probe: str,
    tag: str,
    args: argparse.Namespace,
    config_dict: dict,
    seeds: list[int],
    results: dict,
    timer: Timer,
    bank: ActivationBank | None,
    plot: Callable[[dict, Path], None],
) -> Path:
    """Write ``<out>/<probe>-<tag>.json``, draw ``<out>/<probe>-<tag>.png`` from it; return the JSON path."""
    out = Path(args.out)
    path = out / f"{probe}-{tag}.json"
    payload = {
        "probe": probe,
        "argv": sys.argv[1:],
        "config": config_dict,
        "seeds": seeds,
        "activations": bank.describe() if bank is not None else None,
        "environment": environment(),
        "timings": timer.total(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **results,
    }
    write_json(payload, path)
    plot(read_json(path), out / f"{probe}-{tag}.png")
    return path


def run_per_source(
    probe: str,
    args: argparse.Namespace,
    make_config: Callable[[str], object],
    run: Callable,
    plot: Callable,
    table: Callable[[str, dict], str],
) -> int:
    """The cycle of memory, gate and monitor: per source, run on all seeds, record, print the table."""
    seeds = seeds_of(args)
    sources = sources_of(args)
    configs = {source: make_config(source) for source in sources}  # validate everything before any work
    check_results(probe, sources, args)
    shared = Timer()
    bank = load_bank(args, sources, shared)
    for source in sources:
        timer = Timer()
        timer.seconds.update(shared.seconds if source == "model" else {})
        started = time.perf_counter()
        with timer("run_s"):
            results = run(configs[source], seeds, bank if source == "model" else None, progress=progress)
        path = record(
            probe,
            source,
            args,
            configs[source].to_dict(),
            seeds,
            results,
            timer,
            bank if source == "model" else None,
            plot,
        )
        print(f"\n{probe} ({source}, seeds {seeds}, {time.perf_counter() - started:.1f}s):")
        print(table(source, results))
        print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0
