"""``ran remember``: train the one-memory recipe and measure it (see ran.remember).

One artifact per seed learns to keep a value a user states (a word, a name, a number, a place, in any
of many phrasings), through distractor sentences, idle ticks and ordinary chat turns, and to answer it
after a context wipe, ending the reply. Reported on values and phrasings training never read, carried
beside the wiped control, with the no-harm check (agreement with the base model's replies and the
perplexity of held-out text). ``--grid`` runs the design study's arms.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

from ran.cli.common import (
    DEFAULT_OUT,
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
from ran.engine import member_of
from ran.errors import ConfigError
from ran.fileio import atomic_write, read_json_object
from ran.grid import GRID_FIELDS, apply_point, parse_grid
from ran.loading import load_tokenizer
from ran.reading import PLACE_COUNTS, VALUE_READS
from ran.remember import RECIPE, RECORDS_SUFFIX, artifact_name, builtin_task, memory_runs, run_memory
from ran.tasks.memory import FILLERS, KINDS, READ_SPANS, MemoryTask
from ran.tasks.recall import parse_delays
from ran.training import TrainConfig

EPILOG = ("Time on 2 cores of an AMD EPYC: the defaults (all five kinds, r63's arm) took about 8 min to prepare, 14 "
          "to train a seed and 9 to score it at D = 0, 8, 16 and 32 (make remember, 1,923 s); since the decoder's fit "
          "is batched, a 2-step run of the defaults takes 177 s in all where it took 600 s. r63, 3 seeds: held-out "
          "values stored and asked in phrasings training never read come back at one hop: numbers 0.92 [0.76], words "
          "0.93 [0.84], places 0.93 [0.84], coined 0.63 [0.60], names 0.36 [0.32]; after 8 intervening passes in "
          "training phrasings 0.60-0.87. --train-delays 0-8 (r64, 3 seeds) holds 0.51-0.79 at D = 16 at 1.6 times the "
          "training time. Names and coined words sit near the decoder's ceiling (0.43 and 0.77 of held-out values "
          "named whole). README, 'One memory'.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.set_defaults(summary=RECIPE.ran.summary, write=RECIPE.ran.write, idle_write=RECIPE.ran.idle_write,
                        recall=RECIPE.ran.recall, drive=RECIPE.ran.drive, read_places=RECIPE.ran.read_places,
                        read_from=RECIPE.ran.read_from, slot_order=RECIPE.ran.slot_order,
                        gate_context=RECIPE.ran.gate_context)
    add_reservoir_arguments(parser, RECIPE.ran.reservoir, with_seed=False)
    parser.add_argument("--value-read", default=RECIPE.ran.value_read, choices=list(VALUE_READS),
                        help="where the kv slots' values come from: the state (direct), or (decoded, with "
                             "--slot-order reply --read-from embeddings) each place's token embedding as a ridge "
                             "regression fit on the training values' store states decodes it, then one trained map "
                             "shared by every place; or (residual) that decoded embedding written across layer L's "
                             "attention output at the query that says its place, with a trained map and a trained "
                             "scale per place, and no slots (default: %(default)s)")
    parser.add_argument("--place-count", default=RECIPE.ran.place_count, choices=list(PLACE_COUNTS),
                        help="how the ordered read (--read-places P > 1) places a token: by the running sum of "
                             "the gates (soft), or by the number of gates open above 1/2 (hard), so that tokens "
                             "left slightly open do not move the value along the places (default: %(default)s)")
    parser.add_argument("--write-hidden", type=int, metavar="H",
                        help="hidden ReLU units in the pass-switched write's switch (0: one linear unit on layer L's "
                             f"input at the pass's end) (default: {RECIPE.ran.write_hidden} with --write "
                             "pass-switched, else 0)")
    parser.add_argument("--write-margin", type=float, default=RECIPE.ran.write_margin, metavar="LOGIT",
                        help="the write opens on a pass where its logit exceeds this; training teaches the same "
                             "switch whatever it is, and the artifact keeps it (default: %(default)s)")
    add_format_arguments(parser, RECIPE.format)
    task = parser.add_argument_group("task")
    task.add_argument("--kinds", nargs="+", default=list(RECIPE.kinds), choices=KINDS,
                      help=f"kinds of values (default: {' '.join(RECIPE.kinds)}; values of several tokens need "
                           "--read-places > 1; held-out names are the weakest, README 'One memory')")
    task.add_argument("--words", type=int, default=RECIPE.words,
                      help=f"training words from the vocabulary, and as many coined words (default: {RECIPE.words})")
    task.add_argument("--heldout-words", type=int, default=RECIPE.heldout_words,
                      help=f"held-out words (default: {RECIPE.heldout_words})")
    task.add_argument("--values-per-kind", type=int, default=1000,
                      help="training names, numbers and places each (default: 1000)")
    task.add_argument("--heldout-values-per-kind", type=int, default=200,
                      help="held-out names, numbers, places and coined words each (default: 200)")
    task.add_argument("--task", metavar="FILE",
                      help="JSON object of memory-task settings that override the built-in ones, e.g. your own "
                           '"values", "heldout_values", "store_templates", "recall_templates" (kind -> list)')
    task.add_argument("--train-delays", default="{}-{}".format(*MemoryTask.train_delays), metavar="LOW-HIGH",
                      help="intervening passes in training, drawn per episode (default: %(default)s)")
    task.add_argument("--eval-delays", type=int, nargs="+", default=list(MemoryTask.eval_delays), metavar="D",
                      help=f"intervening passes evaluated (default: {' '.join(map(str, MemoryTask.eval_delays))})")
    task.add_argument("--eval-values", type=int, default=25,
                      help="held-out (and training) values per kind evaluated at each delay (default: 25)")
    task.add_argument("--fillers", nargs="+", default=list(FILLERS), choices=FILLERS,
                      help="kinds of intervening passes, mixed equally (default: all)")
    task.add_argument("--harm-fraction", type=float, default=MemoryTask.harm_fraction,
                      help="training episodes that end in an ordinary turn with the base reply (default: %(default)s)")
    task.add_argument("--per-step", type=int, default=MemoryTask.per_step,
                      help="training episodes per step (default: %(default)s)")
    task.add_argument("--read-span", default=MemoryTask.read_span, choices=READ_SPANS,
                      help="what a store labels for the trained read: the value's every token, or its last (a word "
                           "that opens a sentence splits into pieces; default: %(default)s)")
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, default=RECIPE.train.steps,
                          help=f"optimizer steps (default: {RECIPE.train.steps})")
    training.add_argument("--lr", type=float, default=RECIPE.train.learning_rate,
                          help=f"AdamW learning rate (default: {RECIPE.train.learning_rate})")
    training.add_argument("--lora-rank", type=int, default=0, help="LoRA rank at and above the layer (default: 0)")
    training.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                          help="seeds; each is the reservoir's, the readout's and the data's (default: 0 1 2)")
    training.add_argument("--grid", nargs="+", metavar="FIELD=V1,V2",
                          help="the design study: every combination of these settings (each an arm), e.g. "
                               "summary=last,gated leak_rate_min=0.01; fields: " + ", ".join(GRID_FIELDS))
    parser.add_argument("--name", help="results file name (default: memory)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory for the results JSON and plots (default: {DEFAULT_OUT}, not tracked by git)")
    parser.add_argument("--save", help="also save each trained artifact under this directory (for ran chat, ran run)")
    add_overwrite_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_backend_arguments(parser)
    add_track_arguments(parser)


def task_from(args: argparse.Namespace) -> MemoryTask:
    """The memory task of the flags and ``--task``: a user's own values need no model; the built-in pools read
    the vocabulary of ``--model``'s tokenizer, loaded only once every flag and the file have been checked."""
    given = read_json_object(args.task, "task file") if args.task else {}
    settings = {"kinds": tuple(args.kinds), "train_delays": parse_delays(args.train_delays),
                "eval_delays": tuple(sorted(set(args.eval_delays))), "eval_values": args.eval_values,
                "filler_weights": {f: 1.0 for f in args.fillers}, "harm_fraction": args.harm_fraction,
                "per_step": args.per_step, "read_span": args.read_span}
    if "values" in given:  # the user's own values: the built-in pools are not needed
        return MemoryTask.from_dict({**settings, **given})
    # The kinds go to the pools too: coined words are drawn only for a task that trains them.
    task = builtin_task(load_tokenizer(args.model), args.words, args.heldout_words, per_kind=args.values_per_kind,
                        heldout_per_kind=args.heldout_values_per_kind, kinds=tuple(given.get("kinds", args.kinds)))
    return MemoryTask.from_dict({**task.to_dict(), **settings, **given})


def write_hidden_of(args: argparse.Namespace) -> int:
    """--write-hidden, else the recipe's hidden units where the write is pass-switched (no other write has a switch)."""
    if args.write_hidden is not None:
        return args.write_hidden
    return RECIPE.ran.write_hidden if args.write == "pass-switched" else 0


def arms_from(grid_items: list[str] | None) -> list[dict]:
    if not grid_items:
        return [{}]
    grid = parse_grid(grid_items)
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def run(args: argparse.Namespace) -> int:
    if not args.seeds:
        raise ConfigError("give at least one seed")
    resolve(args.device, args.dtype)
    ran = ran_config_from(args, value_read=args.value_read, place_count=args.place_count,
                          lora_rank=args.lora_rank, write_margin=args.write_margin,
                          write_hidden=write_hidden_of(args))
    train = replace(TrainConfig(steps=args.steps, learning_rate=args.lr))
    pass_format = pass_format_from(args)
    arms = arms_from(args.grid)
    for arm in arms:  # every arm's config checked before any model loads
        apply_point(ran, train, arm)
    name, out = results_name(args, "memory"), Path(args.out)
    save = Path(args.save) if args.save else None
    check_outputs(args, [out / f"{name}.json", out / f"{name}.png"])  # before any work: nothing replaced unasked
    backend = backend_from(args)
    track = track_config_from(args, name)
    task, named = memory_runs(task_from(args), args.seeds, args.model, ran, train, pass_format, arms, args.device,
                              args.dtype)
    records = out / f"{name}{RECORDS_SUFFIX}"
    check_engine_outputs(args, [], records, [member_of(spec, arm, harm=True) for arm, spec in named],
                         [save / artifact_name(arm, spec.train.seed) for arm, spec in named] if save else None)
    out.mkdir(parents=True, exist_ok=True)
    results = run_memory(task, args.seeds, args.model, ran, train, pass_format, arms,
                         save_dir=save, progress=not args.no_progress, device=args.device, dtype=args.dtype,
                         track=track, records=records, backend=backend, threads=args.threads)
    path = atomic_write(out / f"{name}.json", json.dumps(results, indent=1) + "\n")
    from ran.plots import plot_memory

    figure = plot_memory(results, out / f"{name}.png")
    print_table(results)
    print(f"wrote {path} and {figure} ({results['seconds']:.0f}s)")
    return 0


def _cell(stats: dict) -> str:
    return f"{stats['mean']:.2f} [{stats['min']:.2f}]"


def print_table(results: dict) -> None:
    print(f"\none memory on {results['model']}: exact reply (value, then the stop token), mean [min] over seeds; "
          "held-out values")
    for row in results["summary"]:
        arm = ", ".join(f"{k}={v}" for k, v in row["arm"].items()) or "recipe"
        print(f"\n{arm} (seeds {row['seeds']})")
        delays = sorted({g["delay"] for g in row["groups"]})
        print(f"{'kind':>7} {'phrasing':>8} {'':>8}  " + "  ".join(f"D={d:<9}" for d in delays))
        for kind, phrasing in dict.fromkeys((g["kind"], g["phrasing"]) for g in row["groups"]):
            for condition in ("carried", "wiped"):
                cells = []
                for delay in delays:
                    group = next((g for g in row["groups"] if g["kind"] == kind and g["phrasing"] == phrasing
                                  and g["values"] == "heldout" and g["delay"] == delay), None)
                    cells.append(_cell(group["recall"][condition]) if group else "-")
                print(f"{kind:>7} {phrasing:>8} {condition:>8}  " + "  ".join(f"{c:<11}" for c in cells))
        harm = row["harm"]
        print(f"headline (held-out values, training phrasings, D<=8): carried {_cell(row['headline']['carried'])}, "
              f"wiped {_cell(row['headline']['wiped'])}; replies stop: {_cell(row['stopped']['carried'])}")
        print(f"no harm: agreement with the base model's replies carried {_cell(harm['agreement']['carried'])}, "
              f"wiped {_cell(harm['agreement']['wiped'])} (base itself {harm['agreement']['base']['mean']:.2f}); "
              f"perplexity rise carried {harm['perplexity_rise']['carried']['mean']:+.1%}, "
              f"wiped {harm['perplexity_rise']['wiped']['mean']:+.1%}")
        if "switches" in row:
            print("switches (share of passes that write / that see the memory): " + "; ".join(
                f"{s['pass']} ({s['phrasing']}, {s['n']}) {s['write']['mean']:.2f} / {s['recall']['mean']:.2f}"
                for s in row["switches"]))
        if row.get("recall_by_overwrite"):
            print("held-out values, training phrasings, carried, where every pass between keeps the write shut | "
                  "where one opens it: " + "; ".join(
                      f"D = {r['delay']} " + " | ".join(
                          f"{_cell(r[name]['recall'])} of {r[name]['n']}" if r[name]["recall"] else "none"
                          for name in ("kept", "overwritten"))
                      for r in row["recall_by_overwrite"]))
