"""``ran crosspass``: the headline result. Train the stateful model on cross-pass recall (one hop, or mixed
delays) and report recall with the carried state beside the wiped-state control (same trained
parameters) and the untrained baseline, per seed and per evaluation delay. ``--compare-modes``,
``--capacity`` and ``--scalings`` run the other experiments. Every run is a record under
``<out>/<name>.records/`` (``ran.engine``): a killed run, rerun without ``--overwrite``, does only what is
missing, and ``--workers`` / ``--ray-address`` run the records on Ray.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

from ran import schema
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
from ran.crosspass import RECORDS_SUFFIX, artifact_name, experiment, group_label, members_of, specs_for
from ran.devices import resolve
from ran.errors import ConfigError
from ran.fileio import atomic_write, read_json_object
from ran.grid import GRID_FIELDS, apply_point, parse_grid
from ran.injection import INJECTION_MODES
from ran.loading import load_tokenizer
from ran.plots import plot_crosspass, plot_heldout, plot_retention
from ran.schema import check_template
from ran.stats import format_interval
from ran.tasks import RecallTask
from ran.tasks.recall import FILLERS, parse_delays
from ran.tasks.texts import template_words
from ran.tasks.vocab import SOURCES, KeyPool, resolve_keys
from ran.training import TrainConfig

DEFAULT_SEEDS = [0, 1, 2]
CROSSPASS_GRID_FIELDS = {**GRID_FIELDS, "keys": ("task", int)}  # keys: the number of training keys (the task's)
DEFAULTS = TrainConfig()
EPILOG = ("Time on 2 cores of an AMD EPYC: --train-delays 0-8 trains a seed in about 2 min (300 steps), and the "
          "three seeds with their evaluation to 64 passes take about 6 min; --key-pool vocab --keys 2000 "
          "--keys-per-step 64 about 5 min per seed for 200 steps.")
MIXED_DELAY_STEPS = 300  # the default --steps when training delays are mixed (one hop: TrainConfig's 120)
DEFAULT_EVAL_DELAYS = [0, 1, 2, 4, 8, 12, 16, 32, 64]
CHAT_TEMPLATES = {"store_template": "The secret word is {key}.", "recall_template": "What was the secret word?",
                  "answer_template": "The secret word is {key}"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_reservoir_arguments(parser, RETENTION_RESERVOIR)
    add_format_arguments(parser)
    task = parser.add_argument_group("task")
    task.add_argument("--keys", type=int, default=6, help="number of training keys from the pool (default: 6)")
    task.add_argument("--key-pool", default="builtin", choices=SOURCES,
                      help="builtin: the 60 built-in words, in order; vocab: single-token words drawn from the "
                           "tokenizer (space + >= 3 letters a-z; ~21,000 for SmolLM2), split by --split-seed "
                           "(default: builtin)")
    task.add_argument("--heldout-keys", type=int, default=0,
                      help="keys from the same pool never trained on, scored separately (default: 0)")
    task.add_argument("--split-seed", type=int, default=0, help="seed of the vocabulary pool's split (default: 0)")
    task.add_argument("--keys-per-step", type=int, default=0,
                      help="training keys drawn per step (default: 0 = all); thousands of keys need minibatches: "
                           "e.g. --keys 2000 --keys-per-step 64 (about 1.5 s per step on 2 CPU cores: 200 steps "
                           "take 5 min per seed)")
    task.add_argument("--eval-keys", type=int, default=0,
                      help="trained keys evaluated, the first N (default: 0 = all)")
    task.add_argument("--key-list", help="comma-separated keys (each must be one token), instead of --keys")
    task.add_argument("--store-template", metavar="TEXT",
                      help='the storing pass, with {key} (default: "The secret word is {key}."); the reservoir reads '
                           'its last token, so "The secret word is {key}" (ending at the key) lets the state carry '
                           "words it never trained on (README, Open vocabulary)")
    task.add_argument("--recall-template", metavar="TEXT", help='the recall pass (default: "The secret word was")')
    task.add_argument("--task", help="JSON file with keys, store_template, recall_template, ... (overrides the above)")
    task.add_argument("--train-delays", default="0", metavar="LOW-HIGH",
                      help="intervening passes between store and recall in training, drawn per episode from this "
                           "inclusive range, e.g. 0-8 (default: 0, one hop)")
    task.add_argument("--eval-delays", type=int, nargs="+", default=DEFAULT_EVAL_DELAYS, metavar="D",
                      help="intervening passes evaluated (default: 0 1 2 4 8 12 16 32 64)")
    task.add_argument("--filler", default="distractor", choices=FILLERS,
                      help="intervening passes in training: distractor sentences (context wiped), idle ticks "
                           "(context kept, as in a session), blank ticks (idle text, context wiped) or a mix of "
                           "distractors and idle ticks (default: distractor)")
    task.add_argument("--eval-fillers", nargs="+", default=["distractor"], choices=FILLERS,
                      help="intervening passes in evaluation, one retention curve each (default: distractor); "
                           "evaluation distractors are sentences training never reads")
    task.add_argument("--repeats", type=int, default=1, help="episodes per key per training step (default: 1)")
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, default=None,
                          help=f"optimizer steps (default: {DEFAULTS.steps} for one hop, {MIXED_DELAY_STEPS} when "
                               "--train-delays mixes delays)")
    training.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                          help=f"AdamW learning rate (default: {DEFAULTS.learning_rate})")
    training.add_argument("--batch-size", type=int, default=0, help="episodes per step (default: 0 = all keys)")
    training.add_argument("--curriculum-steps", type=int, default=0,
                          help="show the key in the recall pass, annealed out over N steps (default: 0 = off)")
    training.add_argument("--lora-rank", type=int, default=0, help="LoRA rank on attention at and above the layer")
    training.add_argument("--seeds", type=int, nargs="+", default=DEFAULT_SEEDS,
                          help="training seeds; each is also the readout seed (default: 0 1 2)")
    training.add_argument("--fixed-reservoir-seed", action="store_true",
                          help="use --reservoir-seed for every run instead of the run's seed")
    which = parser.add_argument_group("experiment").add_mutually_exclusive_group()
    which.add_argument("--compare-modes", action="store_true", help="additive vs prefix vs kv, each with its control")
    which.add_argument("--capacity", type=int, nargs="+", metavar="N",
                       help="sweep the number of keys, e.g. 6 12 24 48 (the grid axis keys, scored among the keys)")
    which.add_argument("--scalings", type=float, nargs="+", metavar="S", help="sweep the input scaling")
    which.add_argument("--grid", nargs="+", metavar="FIELD=V1,V2",
                       help="every combination of these settings, 3 seeds each unless --seeds says otherwise, e.g. "
                            "--grid leak_rate=0.1,0.3 input_scaling=0.02,0.2 units=2048; fields: "
                            + ", ".join(CROSSPASS_GRID_FIELDS))
    parser.add_argument("--name", help="results file name (default: from the experiment)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory for the results JSON and plots (default: {DEFAULT_OUT}, not tracked by git)")
    parser.add_argument("--save", help="also save each trained artifact under this directory (for ran eval, ran chat)")
    add_overwrite_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_backend_arguments(parser)
    add_track_arguments(parser)


def task_from(args: argparse.Namespace) -> RecallTask:
    """The recall task the flags describe (a --task file's own fields win over the flags; a file may hold a
    ``key_pool`` object with the fields of ran.tasks.vocab.KeyPool instead of ``keys``)."""
    settings = {"train_delays": parse_delays(args.train_delays), "eval_delays": tuple(sorted(set(args.eval_delays))),
                "filler": args.filler, "eval_fillers": tuple(dict.fromkeys(args.eval_fillers)),
                "repeats": args.repeats, "keys_per_step": args.keys_per_step, "eval_keys": args.eval_keys}
    if args.format == "chat":
        settings.update(CHAT_TEMPLATES)
    for field, required in (("store_template", ("key",)), ("recall_template", ())):
        if getattr(args, field) is not None:
            check_template(getattr(args, field), "--" + field.replace("_", "-"), required, required)
            settings[field] = getattr(args, field)
    given: dict = {}
    what = f"task file {args.task}" if args.task else "task"
    if args.task:
        given = read_json_object(args.task, "task file")
    pool_settings = given.pop("key_pool", None)
    if args.key_list is not None:
        settings["keys"] = tuple(k.strip() for k in args.key_list.split(",") if k.strip())
    elif "keys" not in given:
        pool = schema.from_dict(KeyPool, pool_settings, f"{what}: key_pool") if pool_settings is not None else \
            KeyPool(args.key_pool, train=args.keys, heldout=args.heldout_keys, split_seed=args.split_seed)
        probe = RecallTask.from_dict({**settings, **given, "keys": ("_",)}, what)  # the texts keys must stay out of
        texts = [probe.store_template, probe.recall_template, probe.answer_template, *probe.train_distractors,
                 *probe.eval_distractors]
        tokenizer = load_tokenizer(args.model) if pool.source == "vocab" else None
        settings["keys"], settings["heldout_keys"] = resolve_keys(pool, tokenizer, template_words(texts, "{key}"))
    return RecallTask.from_dict({**settings, **given}, what)


def tasks_of_sizes(args: argparse.Namespace, task: RecallTask, sizes: tuple[int, ...]) -> list[RecallTask]:
    """The task with each number of training keys (the grid axis ``keys``, ``--capacity``): the first N of the
    keys given (a task file's or --key-list), else of the built-in pool, else nested sets from one vocabulary
    split with the same held-out keys at every size."""
    given = args.key_list is not None or (args.task is not None and "keys" in read_json_object(args.task, "task file"))
    for size in sizes:
        if size < 1 or (given and size > len(task.keys)):
            limit = f"1..{len(task.keys)} (the keys given)" if given else "at least 1"
            raise ConfigError(f"grid keys={size} is not a number of keys this task has: choose {limit}")
    if given:
        return [replace(task, keys=task.keys[:size]) for size in sizes]
    if args.key_pool == "builtin":
        return [replace(task, keys=RecallTask.with_n_keys(size).keys, heldout_keys=()) for size in sizes]
    pooled = task_from(argparse.Namespace(**{**vars(args), "keys": max(sizes)}))
    return [replace(task, keys=pooled.keys[:size], heldout_keys=pooled.heldout_keys) for size in sizes]


def run(args: argparse.Namespace) -> int:
    if not args.seeds:
        raise ConfigError("give at least one seed")
    resolve(args.device, args.dtype)  # a bad device or dtype fails now, before anything loads
    check_outputs(args)  # --out and --save writable (their files are checked once the runs are known)
    ran = ran_config_from(args, lora_rank=args.lora_rank)
    task = task_from(args)
    steps = args.steps if args.steps is not None else (MIXED_DELAY_STEPS if max(task.train_delays) else DEFAULTS.steps)
    train = TrainConfig(steps=steps, learning_rate=args.lr, batch_size=args.batch_size,
                        curriculum_steps=args.curriculum_steps)
    pass_format = pass_format_from(args)
    reservoir_seed = args.reservoir_seed if args.fixed_reservoir_seed else None

    # --compare-modes, --scalings and --capacity are grid axes with names of their own (mode, input_scaling,
    # keys); keys varies the task, every other field the configs.
    grid: dict[str, tuple] = {}
    if args.compare_modes:
        kind, name, grid = "compare-modes", "crosspass-modes", {"mode": tuple(INJECTION_MODES)}
    elif args.scalings:
        kind, name, grid = "input-scaling", f"scaling-{ran.mode}", {"input_scaling": tuple(args.scalings)}
    elif args.capacity:
        kind, name, grid = "capacity", f"capacity-{ran.mode}", {"keys": tuple(args.capacity)}
    elif args.grid:
        grid = parse_grid(args.grid, CROSSPASS_GRID_FIELDS)
        kind, name = "grid", "grid-" + "-".join(grid)
    if grid:
        group_by = tuple("n_keys" if field == "keys" else field for field in grid)
        configs = {field: values for field, values in grid.items() if field != "keys"}
        tasks = tasks_of_sizes(args, task, grid["keys"]) if "keys" in grid else [task]
        all_specs = []
        for task_point in tasks:
            for values in itertools.product(*configs.values()):
                ran_point, train_point = apply_point(ran, train, dict(zip(configs, values, strict=True)))
                all_specs += specs_for(args.model, ran_point, task_point, train_point, args.seeds, reservoir_seed,
                                       pass_format, args.device, args.dtype)
    else:
        kind, group_by, name = "recall", ("mode",), "crosspass"
        all_specs = specs_for(args.model, ran, task, train, args.seeds, reservoir_seed, pass_format, args.device,
                              args.dtype)

    out = Path(args.out)
    name = results_name(args, name)
    save_dir = Path(args.save) if args.save else None
    backend = backend_from(args)
    track = track_config_from(args, name)
    records = out / f"{name}{RECORDS_SUFFIX}"
    check_engine_outputs(args, [out / f"{name}.json", out / f"{name}.png"], records, members_of(all_specs, group_by),
                         [save_dir / artifact_name(spec) for spec in all_specs] if save_dir else None)
    results = experiment(kind, all_specs, group_by, records, progress=not args.no_progress, save_dir=save_dir,
                         track=track, backend=backend, threads=args.threads)
    json_path = atomic_write(out / f"{name}.json", json.dumps(results, indent=1) + "\n")
    plot_path = plot_crosspass(results, out / f"{name}.png", metric="among_keys" if kind == "capacity" else "recall")
    written = [json_path, plot_path]
    if len(task.eval_delays) > 1:
        written.append(plot_retention(results, out / f"{name}-retention.png"))
    if task.heldout_keys:
        written.append(plot_heldout(results, out / f"{name}-heldout.png"))
    print_table(results)
    print(f"wrote {', '.join(str(p) for p in written)} ({results['seconds']:.0f}s)")
    return 0


def print_table(results: dict) -> None:
    varied = results["varied"]
    name = varied[0] if len(varied) == 1 else "setting"
    width = max([13] + [len(group_label(r, varied)) for r in results["summary"]])
    print(f"\ncross-pass recall on {results['model']}: greedy answer over the whole vocabulary "
          "(among-keys recall in brackets, chance 1/keys)")
    header = f"{name:>{width}}  {'seed':>4}  {'carried':>13}  {'wiped':>13}  {'untrained':>13}  {'train s':>7}"
    print(header)
    print("-" * len(header))
    for run in results["runs"]:
        cells = [f"{run['recall'][c]:.2f} [{run['among_keys'][c]:.2f}]" for c in ("carried", "wiped", "untrained")]
        print(f"{group_label(run, varied):>{width}}  {run['seed']:>4}  {cells[0]:>13}  {cells[1]:>13}  "
              f"{cells[2]:>13}  {run['train_seconds']:>7.1f}")
    for row in results["summary"]:
        cells = [f"{row['recall'][c]['mean']:.2f}±{row['recall'][c]['std']:.2f}"
                 for c in ("carried", "wiped", "untrained")]
        print(f"{group_label(row, varied):>{width}}  {'mean':>4}  {cells[0]:>13}  {cells[1]:>13}  {cells[2]:>13}")
    for row in results["summary"]:
        if "heldout" in row:
            held = row["heldout"]
            print(f"held-out keys ({group_label(row, varied)}, delay {held['delay']}): over the vocabulary carried "
                  f"{held['recall']['carried']['mean']:.2f}±{held['recall']['carried']['std']:.2f}, wiped "
                  f"{held['recall']['wiped']['mean']:.2f}; among the held-out keys carried "
                  f"{held['among_keys']['carried']['mean']:.2f}, wiped {held['among_keys']['wiped']['mean']:.2f}")
    for row, split in itertools.product(results["summary"], ("trained", "heldout")):
        points = [p for p in row.get("retention", []) if p.get("split", "trained") == split]
        if len(points) < 2:
            continue
        keys = "" if split == "trained" else ", held-out keys"
        print(f"\nretention ({group_label(row, varied)}{keys}), recall after D intervening passes, mean [min] over "
              f"seeds {row['seeds']}; training delays {results['config']['task']['train_delays']}")
        print(f"{'filler':>10}  {'D':>3}  {'carried':>11}  {'carried 95% CI':>14}  {'wiped':>11}  {'untrained':>11}")
        for point in points:
            cells = [f"{point['recall'][c]['mean']:.2f} [{point['recall'][c]['min']:.2f}]"
                     for c in ("carried", "wiped", "untrained")]
            interval = format_interval(point["recall"]["carried"], bounds=(0.0, 1.0))  # a rate: clipped as in README
            print(f"{point['filler']:>10}  {point['delay']:>3}  {cells[0]:>11}  {interval:>14}  {cells[1]:>11}  "
                  f"{cells[2]:>11}")
