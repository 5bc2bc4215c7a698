"""``ran crosspass``: the headline result. Train the stateful model on cross-pass recall and report recall
with the carried state beside the wiped-state control (same trained parameters) and the untrained
baseline, per seed. ``--compare-modes``, ``--capacity`` and ``--scalings`` run the other experiments.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ran.cli.common import add_model_arguments, add_reservoir_arguments, reservoir_config_from
from ran.crosspass import experiment, specs_for
from ran.errors import ConfigError
from ran.injection import INJECTION_MODES
from ran.model import RanConfig
from ran.plots import plot_crosspass
from ran.recall import RecallTask
from ran.reservoir import ReservoirConfig
from ran.training import TrainConfig

DEFAULT_SEEDS = [0, 1, 2]
DEFAULTS = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_reservoir_arguments(parser, ReservoirConfig(units=512, input_scaling=0.5))
    task = parser.add_argument_group("task")
    task.add_argument("--keys", type=int, default=6, help="number of keys from the built-in pool (default: 6)")
    task.add_argument("--key-list", help="comma-separated keys (each must be one token), instead of --keys")
    task.add_argument("--task", help="JSON file with keys, store_template, recall_template (overrides the above)")
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, default=DEFAULTS.steps,
                          help=f"optimizer steps (default: {DEFAULTS.steps})")
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
    which.add_argument("--capacity", type=int, nargs="+", metavar="N", help="sweep the number of keys, e.g. 6 12 24 48")
    which.add_argument("--scalings", type=float, nargs="+", metavar="S", help="sweep the input scaling")
    parser.add_argument("--out", default="results", help="directory for the results JSON and plot (default: results)")
    parser.add_argument("--save", help="also save each trained artifact under this directory (for ran eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _task(args: argparse.Namespace) -> RecallTask:
    if args.task:
        return RecallTask.from_file(args.task)
    if args.key_list is not None:
        return RecallTask(keys=tuple(k.strip() for k in args.key_list.split(",") if k.strip()))
    return RecallTask.with_n_keys(args.keys)


def run(args: argparse.Namespace) -> int:
    if not args.seeds:
        raise ConfigError("give at least one seed")
    ran = RanConfig(mode=args.mode, layer=args.layer, n_slots=args.slots, reservoir=reservoir_config_from(args),
                    lora_rank=args.lora_rank)
    train = TrainConfig(steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size,
                        curriculum_steps=args.curriculum_steps)
    task = _task(args)
    reservoir_seed = args.reservoir_seed if args.fixed_reservoir_seed else None

    def specs(ran_config: RanConfig, task_config: RecallTask):
        return specs_for(args.model, ran_config, task_config, train, args.seeds, reservoir_seed)

    if args.compare_modes:
        kind, group_by, name = "compare-modes", ("mode",), "crosspass-modes"
        all_specs = [s for mode in INJECTION_MODES for s in specs(replace(ran, mode=mode), task)]
    elif args.capacity:
        kind, group_by, name = "capacity", ("n_keys",), f"capacity-{ran.mode}"
        all_specs = [s for n in args.capacity for s in specs(ran, RecallTask.with_n_keys(
            n, store_template=task.store_template, recall_template=task.recall_template))]
    elif args.scalings:
        kind, group_by, name = "input-scaling", ("input_scaling",), f"scaling-{ran.mode}"
        all_specs = [s for scale in args.scalings
                     for s in specs(replace(ran, reservoir=replace(ran.reservoir, input_scaling=scale)), task)]
    else:
        kind, group_by, name = "recall", ("mode",), "crosspass"
        all_specs = specs(ran, task)

    save_dir = Path(args.save) if args.save else None
    results = experiment(kind, all_specs, group_by, progress=not args.no_progress, save_dir=save_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    plot_path = plot_crosspass(results, out / f"{name}.png", metric="among_keys" if kind == "capacity" else "recall")
    print_table(results)
    print(f"wrote {json_path} and {plot_path} ({results['seconds']:.0f}s)")
    return 0


def print_table(results: dict) -> None:
    varied = results["varied"][0]
    print(f"\ncross-pass recall on {results['model']}: greedy token over the whole vocabulary "
          "(among-keys recall in brackets, chance 1/keys)")
    header = f"{varied:>13}  {'seed':>4}  {'carried':>13}  {'wiped':>13}  {'untrained':>13}  {'train s':>7}"
    print(header)
    print("-" * len(header))
    for run in results["runs"]:
        cells = [f"{run['recall'][c]:.2f} [{run['among_keys'][c]:.2f}]" for c in ("carried", "wiped", "untrained")]
        print(f"{run[varied]!s:>13}  {run['seed']:>4}  {cells[0]:>13}  {cells[1]:>13}  {cells[2]:>13}  "
              f"{run['train_seconds']:>7.1f}")
    for row in results["summary"]:
        cells = [f"{row['recall'][c]['mean']:.2f}±{row['recall'][c]['std']:.2f}"
                 for c in ("carried", "wiped", "untrained")]
        print(f"{row[varied]!s:>13}  {'mean':>4}  {cells[0]:>13}  {cells[1]:>13}  {cells[2]:>13}")
