"""``ran probe NAME``: run a registered probe of the reservoir itself (``ran.probes.PROBES``) beside its
stateless control. ``ran sweep``, ``ran memory``, ``ran gate`` and ``ran monitor`` are the same commands
under the names they had before.

Every probe run writes ``<out>/<probe>-<source>.json`` (config, seeds, versions, machine, timings, peak
memory, metrics with the stateless control) and draws ``<out>/<probe>-<source>.png`` from that JSON.
A probe whose config has a ``source`` runs once per source (``--source both``: synthetic, then model);
the sweep, whose config takes ``sources``, runs them together into one file (``sweep-both`` for both).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ran.cli.common import (
    DEFAULT_OUT,
    add_overwrite_argument,
    add_reservoir_arguments,
    check_outputs,
    reservoir_config_from,
)
from ran.errors import ConfigError
from ran.loading import DEFAULT_MODEL
from ran.probes import PROBES, Probe
from ran.probes.results import Timer, environment, peak_rss_mb, read_json, write_json
from ran.probes.sources import SOURCES, ActivationBank, capture_bank

DEFAULT_SEEDS = [0, 1, 2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = parser.add_subparsers(dest="probe", metavar="NAME", required=True)
    for probe in PROBES.values():
        add_probe_arguments(names.add_parser(probe.name, help=probe.summary, description=probe.summary), probe.name)


def command(name: str) -> SimpleNamespace:
    """``ran NAME``, the same as ``ran probe NAME`` (the name the probe had before ``ran probe``)."""
    return SimpleNamespace(add_arguments=partial(add_probe_arguments, name=name), run=run)


def add_probe_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    probe = PROBES[name]
    parser.set_defaults(probe=name)
    parser.add_argument("--source", default="both", choices=[*SOURCES, "both"],
                        help="drive the reservoir with synthetic input, real activations of --model, or both "
                             "(default: both)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model for the model source (default: {DEFAULT_MODEL})")
    parser.add_argument("--layer", type=int, default=None, help="layer the activations are read at (default: middle)")
    parser.add_argument("--seeds", type=int, nargs="*", default=DEFAULT_SEEDS,
                        help="seeds of the reservoir and the data, one run each (default: 0 1 2)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory for the JSON and PNG (default: {DEFAULT_OUT}, untracked)")
    add_overwrite_argument(parser)
    fields = {field.name: field for field in dataclasses.fields(probe.config)}
    if "reservoir" in fields:  # one reservoir configuration; its seed comes from --seeds
        add_reservoir_arguments(parser, with_seed=False)
    groups: dict[str | None, Any] = {None: parser}
    hints = typing.get_type_hints(probe.config)
    for option in probe.options:
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        kind, many = _flag_type(hints[option.field])
        default = fields[option.field].default
        shown = " ".join(map(str, default)) if many else default
        groups[option.group].add_argument("--" + option.field.replace("_", "-"), type=kind,
                                          nargs="*" if many else None, default=list(default) if many else default,
                                          help=option.help.format(default=shown))


def _flag_type(hint: Any) -> tuple[type, bool]:
    """(the flag's type, whether it takes several values) of a config field: ``tuple[float, ...]`` -> (float,
    True), ``int | None`` -> (int, False)."""
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return arguments[0], True
    if arguments:
        return arguments[0], False
    return hint, False


def run(args: argparse.Namespace) -> int:
    probe = PROBES[args.probe]
    seeds = _seeds(args)
    sources = list(SOURCES) if args.source == "both" else [args.source]
    # tag (what the files are named after) -> (config, the sources it reads); every config is validated here
    if "source" in {field.name for field in dataclasses.fields(probe.config)}:  # one run per source
        runs = {source: (_config(probe, args, source=source), [source]) for source in sources}
    else:  # every source in one run
        tag = sources[0] if len(sources) == 1 else "both"
        runs = {tag: (_config(probe, args, sources=tuple(sources)), sources)}
    out = Path(args.out)  # before any work: nothing is replaced without --overwrite
    check_outputs(args, [out / f"{probe.name}-{tag}{suffix}" for tag in runs for suffix in (".json", ".png")])
    shared = Timer()
    bank = _load_bank(args, sources, shared)
    for tag, (config, reads) in runs.items():
        uses_model = "model" in reads
        timer = Timer()
        timer.seconds.update(shared.seconds if uses_model else {})
        started = time.perf_counter()
        with timer("run_s"):
            results = probe.run(config, seeds, bank if uses_model else None, progress=_progress)
        path = _record(probe, tag, args, config.to_dict(), seeds, results, timer, bank if uses_model else None)
        print(f"\n{probe.name} ({tag}, seeds {seeds}, {time.perf_counter() - started:.1f}s):")
        print(probe.table(read_json(path)))
        print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def _config(probe: Probe, args: argparse.Namespace, **fixed: Any) -> Any:
    """The probe's config from the flags (its reservoir's seed is 0; each run sets its own)."""
    values = dict(fixed)
    if "reservoir" in {field.name for field in dataclasses.fields(probe.config)}:
        values["reservoir"] = reservoir_config_from(args)
    for option in probe.options:
        value = getattr(args, option.field)
        values[option.field] = option.convert(value) if option.convert else \
            tuple(value) if isinstance(value, list) else value
    return probe.config(**values)


def _seeds(args: argparse.Namespace) -> list[int]:
    if not args.seeds:
        raise ConfigError("--seeds is empty: give at least one seed, e.g. --seeds 0 1 2")
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"seeds must be >= 0, got {args.seeds}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"seeds must be distinct, got {args.seeds}")
    return list(args.seeds)


def _load_bank(args: argparse.Namespace, sources: list[str], timer: Timer) -> ActivationBank | None:
    if "model" not in sources:
        return None
    with timer("capture_s"):
        bank = capture_bank(args.model, args.layer)
    info = bank.describe()
    print(f"captured {info['n_filler'] + info['n_trigger'] + info['n_stop']} texts from {args.model} at layer "
          f"{bank.layer} (d={bank.dim}, mean |x| {info['mean_norm']:.1f}) in {timer.seconds['capture_s']:.1f}s")
    return bank


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _record(probe: Probe, tag: str, args: argparse.Namespace, config: dict, seeds: list[int], results: dict,
            timer: Timer, bank: ActivationBank | None) -> Path:
    """Write ``<out>/<probe>-<tag>.json``, draw ``<out>/<probe>-<tag>.png`` from it; return the JSON path."""
    out = Path(args.out)
    path = out / f"{probe.name}-{tag}.json"
    payload = {"probe": probe.name, "argv": sys.argv[1:], "config": config, "seeds": seeds,
               "activations": bank.describe() if bank is not None else None, "environment": environment(),
               "timings": timer.total(), "peak_rss_mb": round(peak_rss_mb(), 1), **results}
    write_json(payload, path)
    probe.plot(read_json(path), out / f"{probe.name}-{tag}.png")
    return path
