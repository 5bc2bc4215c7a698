"""``ran population``: a grid of reservoir seeds x training seeds (x hyper-parameter lists), each trained and
evaluated on one task, with a two-way ANOVA of which factor matters, the recommended reservoir, and
optionally the trained-GRU baseline beside the fixed reservoir. Resumable: finished runs are kept on
disk and skipped by a rerun. In-process by default; ``--workers N`` or ``--ray-address ADDR`` runs it
on Ray.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path

from ran.cli.common import (
    RETENTION_RESERVOIR,
    add_backend_arguments,
    add_format_arguments,
    add_model_arguments,
    add_reservoir_arguments,
    add_track_arguments,
    backend_from,
    pass_format_from,
    ran_config_from,
    track_config_from,
)
from ran.devices import resolve
from ran.errors import ConfigError
from ran.fileio import check_directory, read_json_object
from ran.population import LARGE_POPULATION, PopulationConfig, members, run_population
from ran.population.grid import HYPER_FIELDS, parse_hyper, parse_seeds
from ran.population.report import format_report
from ran.population.runs import FIGURE_FILE, REPORT_FILE, TABLE_FILE
from ran.tasks import RecallTask, Task, task_class
from ran.tasks.recall import parse_delays
from ran.training import TrainConfig

DEFAULT_OUT = "runs/population"
DEFAULTS = TrainConfig()
RECURRENCE_CHOICES = {"reservoir": ("reservoir",), "gru": ("gru",), "both": ("reservoir", "gru")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_reservoir_arguments(parser, RETENTION_RESERVOIR, with_seed=False)  # ran crosspass's defaults
    grid = parser.add_argument_group("population")
    grid.add_argument("--reservoir-seeds", nargs="+", default=["0-7"], metavar="SEEDS",
                      help="reservoir seeds: numbers or inclusive ranges, e.g. 0-7 or 0 3 5 (default: 0-7)")
    grid.add_argument("--train-seeds", nargs="+", default=["0-3"], metavar="SEEDS",
                      help="training seeds (readout initialisation and episode order) (default: 0-3)")
    grid.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2",
                      help="also vary these settings, every combination, e.g. leak_rate=0.1,1.0 units=256,512; "
                           "fields: " + ", ".join(HYPER_FIELDS))
    grid.add_argument("--recurrence", default="reservoir", choices=list(RECURRENCE_CHOICES),
                      help="the fixed reservoir, a trained GRU cell of the same size in its place, or both on the "
                           "same seeds and budget (default: reservoir)")
    grid.add_argument("--yes", action="store_true",
                      help=f"run a population of more than {LARGE_POPULATION} runs")
    grid.add_argument("--dry-run", action="store_true", help="print the population's size and exit")
    task = parser.add_argument_group("task")
    task.add_argument("--task", default="recall", help="registered task name (default: recall)")
    task.add_argument("--task-file", help="JSON file with the task's settings (for recall: keys, store_template, ...)")
    task.add_argument("--keys", type=int, help="recall: the first N keys of the built-in pool")
    task.add_argument("--train-delays", metavar="LOW-HIGH", help="recall: intervening passes in training, e.g. 0-4")
    task.add_argument("--eval-delays", type=int, nargs="+", metavar="D",
                      help="recall: intervening passes evaluated, e.g. 0 1 2 4 (adds the mean over delays)")
    add_format_arguments(task)
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, default=DEFAULTS.steps,
                          help=f"optimizer steps (default: {DEFAULTS.steps})")
    training.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                          help=f"AdamW learning rate (default: {DEFAULTS.learning_rate})")
    training.add_argument("--batch-size", type=int, default=0, help="episodes per step (default: 0 = all)")
    training.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on attention at and above the layer")
    add_backend_arguments(parser, default_threads=1)
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"population directory: records/, {REPORT_FILE}, {TABLE_FILE}, {FIGURE_FILE} "
                             f"(default: {DEFAULT_OUT}); rerunning into it skips finished runs")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the {REPORT_FILE} of another population in --out (its records are kept)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_track_arguments(parser)


def task_from(args: argparse.Namespace) -> Task:
    """The task by name, from its file's settings or its defaults, with the recall flags applied."""
    cls = task_class(args.task)
    if args.task_file:
        task = cls.from_dict(read_json_object(args.task_file, "task file"), f"task file {args.task_file}")
    else:
        task = cls()
    overrides = {}
    if args.keys is not None:
        overrides["keys"] = RecallTask.with_n_keys(args.keys).keys
    if args.train_delays is not None:
        overrides["train_delays"] = parse_delays(args.train_delays)
    if args.eval_delays is not None:
        overrides["eval_delays"] = tuple(sorted(set(args.eval_delays)))
    known = {f.name for f in fields(task)}  # type: ignore[arg-type]
    for name in overrides:
        if name not in known:
            raise ConfigError(f"--{name.replace('_', '-')} does not apply to the {task.name} task")
    return replace(task, **overrides) if overrides else task  # type: ignore[type-var]


def config_from(args: argparse.Namespace) -> PopulationConfig:
    model = args.model
    path = Path(model).expanduser()
    if path.is_dir() or path.is_file():  # workers may start elsewhere: give them an absolute path
        model = str(path.resolve())
    ran = ran_config_from(args, lora_rank=args.lora_rank)
    train = TrainConfig(steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size)
    return PopulationConfig(
        model=model, task=task_from(args), ran=ran, train=train, format=pass_format_from(args),
        reservoir_seeds=parse_seeds(args.reservoir_seeds, "reservoir"),
        train_seeds=parse_seeds(args.train_seeds, "training"), hyper=parse_hyper(args.grid),
        recurrences=RECURRENCE_CHOICES[args.recurrence], device=args.device, dtype=args.dtype,
    )


def check_report(path: Path, config: PopulationConfig, overwrite: bool) -> None:
    """Rerunning a population into its directory resumes it; the report of a different one is not replaced
    without --overwrite."""
    if overwrite or not path.is_file():
        return
    try:
        previous = json.loads(path.read_text()).get("config")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        previous = None
    if previous != json.loads(json.dumps(config.to_dict())):
        raise ConfigError(f"--out {path.parent} holds the report of another population ({path.name}); pass "
                          "--overwrite to replace the report (finished runs are kept), or choose another --out")


def run(args: argparse.Namespace) -> int:
    config = config_from(args)
    backend = backend_from(args)
    if args.dry_run:
        everyone = members(config)
        print(f"population: {config.size} runs = {len(config.recurrences)} recurrence(s) x "
              f"{len(config.points())} grid point(s) x {len(config.reservoir_seeds)} reservoir seeds x "
              f"{len(config.train_seeds)} training seeds ({backend.describe()})")
        print(f"first run: {json.dumps(everyone[0], sort_keys=True)}")
        return 0
    if not backend.uses_ray:
        resolve(args.device, args.dtype)  # a bad device fails now (a Ray worker resolves its own)
    out = check_directory(args.out, "--out")
    check_report(out / REPORT_FILE, config, args.overwrite)
    track = track_config_from(args, out.name or "population")
    report = run_population(config, out, backend, threads=args.threads, confirmed=args.yes,
                            progress=not args.no_progress, track=track)
    print()
    print(format_report(report), end="")
    written = [out / REPORT_FILE, out / TABLE_FILE] + ([out / FIGURE_FILE] if report["runs_found"] else [])
    print(f"wrote {', '.join(str(p) for p in written)} ({report['seconds']:.0f}s)")
    return 0
