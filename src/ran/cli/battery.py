"""``ran battery``: train on a weighted mix of the eight stateful tasks and score each one carried / wiped /
stateless (see ran.battery); ``--grid`` runs every recipe at every combination of settings (the grid of
``ran crosspass --grid``), each an arm of the report; ``--alone`` also trains each task by itself under the same
budget, an arm per task (its ``alone`` point), so every task's ceiling stands beside its score in the mix.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

from ran.battery import RECIPES, RECORDS_SUFFIX, arm_label, artifact_name, experiment, members_of, specs_for
from ran.cli.common import (
    DEFAULT_OUT,
    RETENTION_RESERVOIR,
    add_backend_arguments,
    add_format_arguments,
    add_model_arguments,
    add_overwrite_argument,
    add_reservoir_arguments,
    add_track_arguments,
    backend_from,
    check_engine_outputs,
    check_outputs,
    pass_format_from,
    ran_config_from,
    results_name,
    track_config_from,
)
from ran.devices import resolve
from ran.errors import ConfigError
from ran.fileio import atomic_write
from ran.grid import GRID_FIELDS, apply_point, parse_grid
from ran.loading import load_tokenizer
from ran.plots import plot_battery
from ran.reading import GATE_READS
from ran.schema import RANGE, from_dict, parse_range
from ran.tasks import BATTERY, task_class
from ran.tasks.episode_file import task_from_file, task_name
from ran.tasks.mix import TaskMix
from ran.tasks.texts import template_words
from ran.tasks.vocab import KeyPool, resolve_keys
from ran.training import TrainConfig

EPILOG = ("Time: the default run (3 seeds, the readout recipe) took 18 min on 2 cores of an AMD EPYC (per seed "
          "2.7 min training, 2.8 min training the stateless ablation, the rest scoring) before timed, initiative, "
          "sequence and accumulate grew longer episodes (not measured since: expect more); --seeds 0 takes a "
          "third of that, and --recipe readout lora twice as long.")

STEPS = 150
# The grid of ran crosspass --grid, less the LoRA rank: each recipe sets its own (readout 0, lora 8).
GRID = {name: field for name, field in GRID_FIELDS.items() if name != "lora_rank"}


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    add_reservoir_arguments(parser, RETENTION_RESERVOIR)
    add_format_arguments(parser)
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help=f"built-in tasks to train and score (default: all eight, {' '.join(BATTERY)}, unless "
                             "--episode-file is given: then none)")
    parser.add_argument("--episode-file", nargs="+", default=[], metavar="FILE.jsonl",
                        help="a task you write as data: a JSONL file of episodes, one a line (passes with text, "
                             "target, idle, wipe, speak; held-out episodes marked \"heldout\": true), trained and "
                             "scored with the others under the file's name; see docs/tasks/appointments.jsonl")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="TASK.FIELD=VALUE",
                        dest="settings",
                        help="change a task's setting (given more than once, the items add up and a field's last "
                             "value wins), e.g. deferred.eval_delays=[2,4,8,16] timed.turns=2-6 "
                             "(a JSON value, or LOW-HIGH for a range); a task with words (timed, initiative) also "
                             "takes word_pool, ran crosspass's key pool, e.g. "
                             "timed.word_pool='{\"source\": \"vocab\", \"train\": 2000, \"heldout\": 200}': "
                             "its words and held-out words drawn from the tokenizer's vocabulary")
    parser.add_argument("--weights", nargs="+", type=float, metavar="W",
                        help="one weight per task: its share of each step's episodes (default: equal)")
    parser.add_argument("--episodes-per-step", type=int, default=16, help="training episodes per step (default: 16)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps (default: {STEPS})")
    parser.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate (default: 0.01)")
    parser.add_argument("--gate-hidden", type=int, default=0, metavar="H",
                        help="the gate head's hidden ReLU units: 0 = one linear unit on the state (default: 0)")
    parser.add_argument("--gate-reads", default="state", choices=list(GATE_READS),
                        help="what the gate head reads: the whole state, or (running, with --running-units) only the "
                             "running units, so when to speak follows their clock and not what the held units keep "
                             "(default: %(default)s)")
    parser.add_argument("--recipe", nargs="+", default=["readout"], choices=list(RECIPES),
                        help="readout: readout + gate head, decayed rate (the retention recipe); lora: LoRA rank 8, "
                             "constant rate (the plain recipe); give both to compare (default: readout)")
    parser.add_argument("--alone", action="store_true",
                        help="also train each task by itself, with the same steps, episodes per step and learning "
                             "rate (every episode of a step its own), each an arm of the report beside the mix: the "
                             "task's ceiling under that budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2",
                        help="every combination of these settings, each recipe at each point an arm of the report "
                             "(the syntax of ran crosspass --grid), e.g. --grid leak_rate=0.1,0.3 units=512; "
                             "fields: " + ", ".join(GRID))
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"results directory (default: {DEFAULT_OUT})")
    parser.add_argument("--name", default="battery", help="results file name (default: battery)")
    parser.add_argument("--save", help="save each trained artifact (with its gate head) under this directory")
    add_overwrite_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_backend_arguments(parser)
    add_track_arguments(parser)


def parse_settings(items: list[str], tasks: list[str]) -> dict[str, dict]:
    """``["timed.turns=2-6", "deferred.eval_delays=[2,4]"]`` -> {"timed": {"turns": [2, 6]}, ...}."""
    settings: dict[str, dict] = {}
    for item in items:
        target, _, text = item.partition("=")
        name, _, field = target.partition(".")
        if not field or not text:
            raise ConfigError(f"--set {item!r} is not TASK.FIELD=VALUE")
        if name not in tasks:
            task_class(name)  # "unknown task" with a suggestion, else:
            raise ConfigError(f"--set {item!r}: task '{name}' is not among --tasks")
        if "-" in text and RANGE.fullmatch(text):  # LOW-HIGH
            value = list(parse_range(text, f"--set {target}"))
        else:
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                value = text  # a plain string
        settings.setdefault(name, {})[field] = value
    return settings


WORD_FIELDS = ("words", "heldout_words")  # the fields a word pool fills


def resolve_word_pools(settings: dict[str, dict], model: str) -> None:
    """Replace each task's ``word_pool`` setting (the fields of :class:`ran.tasks.vocab.KeyPool`) by the
    ``words`` and ``heldout_words`` it draws, keeping out the words of the task's own texts."""
    tokenizer = None
    for name, fields in settings.items():
        if "word_pool" not in fields:
            continue
        what = f"--set {name}.word_pool"
        if not set(WORD_FIELDS) <= {field.name for field in dataclasses.fields(task_class(name))}:
            raise ConfigError(f"{what}: task '{name}' has no words to draw (word_pool is for timed and initiative)")
        given = sorted(set(WORD_FIELDS) & set(fields))
        if given:
            raise ConfigError(f"{what}: give the words by word_pool or by {given[0]}, not both")
        pool = from_dict(KeyPool, fields.pop("word_pool"), what)
        texts = task_class(name).from_dict(fields, f"--set {name}")  # its texts, with the built-in words for now
        templates = [text for value in dataclasses.asdict(texts).values()  # its strings, phrasing pools included
                     for text in (value if isinstance(value, tuple) else (value,)) if isinstance(text, str)]
        if pool.source == "vocab" and tokenizer is None:
            tokenizer = load_tokenizer(model)
        fields["words"], fields["heldout_words"] = resolve_keys(pool, tokenizer, template_words(templates, "{word}"))


def run(args) -> int:
    resolve(args.device, args.dtype)
    stem = results_name(args, "battery")
    check_outputs(args)  # --out and --save writable, before anything is built
    if not args.seeds:
        raise ConfigError("give at least one seed")
    builtin = args.tasks if args.tasks is not None else ([] if args.episode_file else list(BATTERY))
    if len(set(builtin)) != len(builtin):
        raise ConfigError("a task is given twice in --tasks")
    for name in builtin:
        task_class(name)  # "unknown task" with a suggestion
    from_files: dict[str, str] = {}
    for path in args.episode_file:
        name = task_name(path)
        if name in from_files:
            raise ConfigError(f"--episode-file {path}: two task files would be named '{name}' (a task is named after "
                              "its file)")
        from_files[name] = path
    if "lora_rank" in {item.partition("=")[0] for item in args.grid}:
        raise ConfigError("--grid lora_rank: the battery's LoRA rank is the recipe's (--recipe readout: 0, lora: 8)")
    grid = parse_grid(args.grid, GRID)
    settings = parse_settings(args.settings, [*builtin, *from_files])
    resolve_word_pools(settings, args.model)
    tasks = (*(task_class(name).from_dict(settings.get(name, {}), f"--set {name}") for name in builtin),
             *(task_from_file(path, settings.get(name, {})) for name, path in from_files.items()))
    weights = tuple(args.weights) if args.weights is not None else (1.0,) * len(tasks)
    mix = TaskMix(tasks=tasks, weights=weights, episodes_per_step=args.episodes_per_step)
    if args.alone and len(tasks) < 2:
        raise ConfigError("--alone trains each task of the mix by itself beside the mix: give two tasks or more")
    # The mix's arm (no "alone" in its point), then, with --alone, one arm per task trained by itself.
    mixes = [({}, mix)] + [({"alone": task.name}, TaskMix(tasks=(task,), weights=(1.0,),
                                                           episodes_per_step=args.episodes_per_step))
                           for task in tasks if args.alone]
    ran = ran_config_from(args, gate_hidden=args.gate_hidden, gate_reads=args.gate_reads)
    train = TrainConfig(steps=args.steps, learning_rate=args.lr)
    pass_format = pass_format_from(args)
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    arms = []
    for name, point, (alone, task_mix) in itertools.product(dict.fromkeys(args.recipe), points, mixes):
        ran_point, train_point = apply_point(ran, train, point)
        arms.append(((name, {**point, **alone}), specs_for(args.model, ran_point, task_mix, train_point, args.seeds,
                                                           RECIPES[name], pass_format, args.device, args.dtype)))
    out = Path(args.out)
    save_dir = Path(args.save) if args.save else None
    backend = backend_from(args)
    track = track_config_from(args, stem)
    records = out / f"{stem}{RECORDS_SUFFIX}"
    check_engine_outputs(args, [out / f"{stem}.json", out / f"{stem}.png"], records, members_of(arms),
                         [save_dir / artifact_name(arm, spec) for arm, group in arms for spec in group]
                         if save_dir else None)
    results = experiment(arms, records, progress=not args.no_progress, save_dir=save_dir, track=track,
                         backend=backend, threads=args.threads,
                         varied=(*grid, "alone") if args.alone else tuple(grid))
    path = atomic_write(out / f"{stem}.json", json.dumps(results, indent=1) + "\n")
    figure = plot_battery(results, out / f"{stem}.png")
    print_table(results)
    print(f"wrote {path} and {figure} ({results['seconds']:.0f}s)")
    return 0


def print_table(results: dict) -> None:
    print(f"\nstateful battery on {results['model']}: mean ± std over seeds; reservoir-driven = carried beats "
          "stateless beyond the spread")
    width = max([8] + [len(arm_label(row["recipe"], row.get("point", {}))) for row in results["summary"]])
    header = (f"{'recipe':>{width}}  {'task':>10}  {'metric':>14}  {'carried':>11}  {'wiped':>11}  {'stateless':>11}  "
              "driven")
    print(header)
    print("-" * len(header))
    for row in results["summary"]:
        cells = [_cell(row, c) for c in ("carried", "wiped", "stateless")]
        driven = {True: "yes", False: "no"}.get(row.get("reservoir_driven"), "-")
        print(f"{arm_label(row['recipe'], row.get('point', {})):>{width}}  {row['task']:>10}  {row['metric']:>14}  "
              f"{cells[0]:>11}  {cells[1]:>11}  {cells[2]:>11}  {driven}")
    alone = {(row["recipe"], _point_without_alone(row), row["task"]): row for row in results["summary"]
             if "alone" in row.get("point", {})}
    if alone:
        print("\neach task alone vs in the mix, carried (mean ± std over seeds; stateless in brackets)")
        for row in results["summary"]:
            solo = alone.get((row["recipe"], _point_without_alone(row), row["task"]))
            if solo is None or "alone" in row.get("point", {}):
                continue
            label = arm_label(row["recipe"], row.get("point", {}))
            print(f"{label:>{width}}  {row['task']:>10}  alone {_cell(solo, 'carried')} "
                  f"({_cell(solo, 'stateless')})  mix {_cell(row, 'carried')} ({_cell(row, 'stateless')})")
    for run in results["runs"]:
        gate = run["gate"]["carried"]
        if not gate["true_speak"] + gate["missed"] + gate["false_speak"] + gate["true_silent"]:
            continue  # no task in the mix labels speak / silent
        print(f"gate ({arm_label(run['recipe'], run.get('point', {}))}, seed {run['seed']}, carried): precision "
              f"{gate['precision']:.2f}, recall {gate['recall']:.2f} over {gate['true_speak'] + gate['missed']} due "
              f"and {gate['false_speak'] + gate['true_silent']} silent passes")


def _point_without_alone(row: dict) -> str:
    return json.dumps({k: v for k, v in row.get("point", {}).items() if k != "alone"}, sort_keys=True)


def _cell(row: dict, condition: str) -> str:
    return f"{row[condition]['mean']:.2f}±{row[condition]['std']:.2f}" if condition in row else "-"
