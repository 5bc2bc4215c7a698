"""``ran eval DIR``: reload an artifact saved with ``--save`` and score it again, carried vs wiped.

Without options it re-runs the artifact's own evaluation and checks that it reproduces the saved
figures. ``--task FILE`` or ``--key-list`` score it on another task instead (e.g. keys it never trained
on), with the artifact's pass format: for a recall artifact the file is a recall task; for a memory
artifact (``ran remember``) it holds settings that replace the artifact's own, e.g. your own
``heldout_values`` and ``heldout_store_templates`` (values it trained on are refused); for a battery
artifact (``ran battery --save``) it maps a task's name to settings that replace that task's own, e.g.
``{"timed": {"appointments": [2, 2]}}`` (two appointments in one session). Every run also
prints the no-harm check (``ran.harm``): agreement with the base model's replies and the perplexity of
held-out text, base vs wiped vs carried. ``--json FILE`` also writes what it measured (every group, the
predictions, the no-harm check and the write and recall switches) with the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ran.artifact import artifact_pass_format, read_artifact_description
from ran.cli.common import add_overwrite_argument
from ran.errors import ArtifactError, ConfigError
from ran.fileio import atomic_write, check_directory, check_new, read_json_object
from ran.harm import harm_inputs, harm_report
from ran.loading import load_model
from ran.model import ReservoirModel
from ran.passes import Renderer
from ran.provenance import environment
from ran.runner import ARTIFACT_RUN_FILE, evaluate
from ran.switches import recall_by_overwrite, switch_rates
from ran.tasks import MemoryTask, RecallTask, Task, task_class, task_from_settings
from ran.tasks.base import group_key
from ran.tasks.mix import TaskMix

LEGACY_RUN_FILE = "crosspass.json"  # artifacts of ran.crosspass/1: one-hop recall only
EVAL_SCHEMA = "ran.eval/1"  # what --json writes: one artifact rescored (not a results file of an experiment)
GROUP_COLUMNS = {"split": 8, "kind": 7, "values": 8, "phrasing": 8, "filler": 10, "delay": 5}  # order and widths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact directory written by --save (ran crosspass, ran remember or ran "
                                         "battery)")
    parser.add_argument("--model", help="base model (default: the one the artifact was trained on)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: auto)")
    other = parser.add_mutually_exclusive_group()
    other.add_argument("--task", help="score on this task file instead of the artifact's own task: a recall "
                                      "task for a crosspass artifact; settings that replace the memory task's own "
                                      "(e.g. heldout_values) for a ran remember artifact; {task name: settings} for "
                                      "a ran battery artifact (e.g. {\"timed\": {\"appointments\": [2, 2]}})")
    other.add_argument("--key-list", help="also score these comma-separated keys, as held-out keys (the artifact's "
                                          "templates; keys it trained on are refused)")
    parser.add_argument("--eval-delays", type=int, nargs="+", metavar="D",
                        help="intervening passes to evaluate (default: the artifact's own)")
    parser.add_argument("--write-margin", type=float, metavar="LOGIT",
                        help="open a pass-switched write only where its logit exceeds this, instead of the "
                             "artifact's own margin (default: the artifact's; 0 unless it was trained with one)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the scores, carried and wiped (with the predictions), the no-harm check "
                             "and the switches to this JSON file, with the commit and the machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overwrite_argument(parser)


def saved_run(directory: Path) -> tuple[dict[str, Any], Task | TaskMix, dict[str, dict[str, Any]]]:
    """(saved run description, its task, its saved scores per condition) from either artifact layout."""
    path = directory / ARTIFACT_RUN_FILE
    legacy = directory / LEGACY_RUN_FILE
    if not path.is_file() and not legacy.is_file():
        raise ArtifactError(f"{directory} has no {ARTIFACT_RUN_FILE}: it was not saved by --save of ran crosspass "
                            "or ran remember")
    source = path if path.is_file() else legacy
    try:
        saved = json.loads(source.read_text())
        if source == path:
            settings = dict(saved["task"])
            name = settings.pop("name")
            task = TaskMix.from_dict(settings) if name == TaskMix.name else task_class(name).from_dict(settings)
            scores = saved["scores"]
        else:
            task = RecallTask.from_dict(saved["task"])
            scores = {c: {"value": saved["recall"][c], "groups": []} for c in ("carried", "wiped")}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ArtifactError(f"{source} is corrupt: {error}") from None
    except ConfigError as error:
        raise ArtifactError(f"{source} holds an invalid task: {error}") from None
    return saved, task, scores


def run(args: argparse.Namespace) -> int:
    directory = Path(args.artifact)
    read_artifact_description(directory)  # clear errors for a missing or corrupt artifact first
    if args.json:  # before any work: an unwritable or existing file costs nothing
        if Path(args.json).is_dir():
            raise ConfigError(f"--json {args.json} is a directory: give the name of a JSON file to write")
        check_directory(Path(args.json).parent, f"--json {args.json}: the directory")
        check_new(args.json, "--json", args.overwrite)
    saved, task, saved_scores = saved_run(directory)
    own_task = args.task is None and args.key_list is None and args.eval_delays is None
    if args.task and isinstance(task, MemoryTask):
        task = MemoryTask.from_dict({**task.to_dict(), **read_json_object(args.task, "task file")})
    elif args.task and isinstance(task, TaskMix):
        task = mix_with_settings(task, read_json_object(args.task, "task file"), args.task)
    elif args.task:
        task = RecallTask.from_file(args.task)
    elif args.key_list is not None:
        if not isinstance(task, RecallTask):
            raise ConfigError(f"--key-list needs a recall artifact; this one was trained on '{task.name}'")
        # Scored as held-out keys, beside the trained ones (a key the artifact trained on is refused).
        task = replace(task, heldout_keys=tuple(k.strip() for k in args.key_list.split(",") if k.strip()))
    if args.eval_delays is not None:
        if isinstance(task, TaskMix):
            raise ConfigError("--eval-delays needs a crosspass or remember artifact; this one is a battery's (give "
                              "its tasks' settings with --task FILE)")
        task = replace(task, eval_delays=tuple(sorted(set(args.eval_delays))))
    base, tokenizer = load_model(args.model or saved["model"], device=args.device, dtype=args.dtype)
    model = ReservoirModel.from_pretrained(base, directory, write_margin=args.write_margin)
    renderer = Renderer(artifact_pass_format(directory), tokenizer)
    task.check(renderer)
    measured = {c: evaluate(model, renderer, task, carry=c == "carried", progress=not args.no_progress)
                for c in ("carried", "wiped")}
    harm = harm_report(model, renderer, *harm_inputs(task))
    _print_harm(harm)
    switches = switch_rates(model, renderer, task)["switches"] if isinstance(task, MemoryTask) else None
    overwrites = None
    if switches is not None:
        overwrites = recall_by_overwrite(measured["carried"]["predictions"], switches)
        _print_switches(switches)
        _print_overwrites(overwrites)
    if args.json:
        report = {"schema": EVAL_SCHEMA, "command": "eval", "artifact": str(directory),
                  "ran_config": model.config.to_dict(), "task": {"name": task.name, "file": args.task},
                  "eval_delays": args.eval_delays, "scores": measured, "harm": harm, "switches": switches,
                  "recall_by_overwrite": overwrites,
                  "environment": environment()}
        atomic_write(args.json, json.dumps(report, indent=1) + "\n")
    if isinstance(task, TaskMix):
        return _report_mix(measured, saved_scores if own_task else None)
    if not own_task:
        _print_groups(measured)
        _print_totals(measured)
        return 0
    print(f"{'':>10}  {'saved':>6}  {'now':>6}")
    same = True
    for condition in ("carried", "wiped"):
        before, now = saved_scores[condition]["value"], measured[condition]["value"]
        same &= before == now
        same &= all(_group_value(saved_scores[condition], row) == row["recall"]
                    for row in measured[condition]["groups"] if saved_scores[condition]["groups"])
        print(f"{condition:>10}  {before:>6.2f}  {now:>6.2f}")
    _print_groups(measured)
    print("reproduced the saved recall" if same else "recall differs from the saved figures")
    return 0 if same else 1


def mix_with_settings(mix: TaskMix, settings: dict[str, Any], path: str) -> TaskMix:
    """The battery's mix with the settings of ``{task name: settings}`` replacing those tasks' own."""
    names = [task.name for task in mix.tasks]
    for name, fields in settings.items():
        if name not in names:
            raise ConfigError(f"task file {path}: '{name}' is not a task of this artifact; its tasks are "
                              f"{', '.join(names)}")
        if not isinstance(fields, dict):
            raise ConfigError(f"task file {path}: '{name}' must map to an object of that task's settings, got "
                              f"{type(fields).__name__}")
    tasks = tuple(task_from_settings(task.name, {**task.to_dict(), **settings[task.name]})
                  if task.name in settings else task for task in mix.tasks)
    return replace(mix, tasks=tasks)


def _report_mix(measured: dict[str, dict[str, Any]], saved: dict[str, dict[str, Any]] | None) -> int:
    """Each task's measures, carried and wiped (beside the saved figures for the artifact's own tasks); exit 1 when
    they differ from the saved ones."""
    same = True
    for name, carried in measured["carried"]["tasks"].items():
        wiped = measured["wiped"]["tasks"][name]
        measures = [key for key, value in carried.items() if isinstance(value, float)]
        print(f"{name} ({carried.get('split', 'trained')}):  " + "  ".join(
            f"{key} {carried[key]:.2f} carried / {wiped[key]:.2f} wiped" for key in measures))
        for row in carried.get("orders", []):
            print(f"  appointment {row['order']} of the session (n={row['n']}): on time {row['on_time']:.2f}, "
                  f"the gate on time {row['on_time_gate']:.2f}, early {row['early']:.2f}")
        if saved is not None:
            before = {c: saved[c]["tasks"][name] for c in ("carried", "wiped")}
            differs = [f"{key} {c}: saved {before[c][key]:.4f}, now {now[key]:.4f}"
                       for c, now in (("carried", carried), ("wiped", wiped)) for key in measures
                       if before[c].get(key) != now[key]]
            same &= not differs
            for line in differs:
                print(f"  differs: {line}")
    if saved is None:
        return 0
    print("reproduced the saved scores" if same else "scores differ from the saved figures")
    return 0 if same else 1


def _group_value(score: dict[str, Any], like: dict[str, Any]) -> float | None:
    for row in score["groups"]:
        if group_key(row) == group_key(like):
            return row["recall"]
    return None


def _print_groups(measured: dict[str, dict[str, Any]]) -> None:
    rows = measured["carried"]["groups"]
    if len(rows) < 2 and rows and rows[0]["delay"] == 0:
        return
    named = {name for name, _ in group_key(rows[0]) if name in rows[0]}
    columns = [name for name in GROUP_COLUMNS if name in named] + sorted(set(named) - set(GROUP_COLUMNS))
    print("  ".join(f"{name:>{GROUP_COLUMNS.get(name, 8)}}" for name in columns) + f"  {'carried':>7}  {'wiped':>7}")
    for row in rows:
        wiped = _group_value(measured["wiped"], row)
        print("  ".join(f"{str(row.get(name, 'trained')):>{GROUP_COLUMNS.get(name, 8)}}" for name in columns)
              + f"  {row['recall']:>7.2f}  {wiped:>7.2f}")


def _print_totals(measured: dict[str, dict[str, Any]]) -> None:
    """The task's headline value and, where it scores them, how often replies stop, carried and wiped."""
    for condition in ("carried", "wiped"):
        score = measured[condition]
        stopped = f", replies stop {score['stopped']:.2f}" if score.get("stopped") is not None else ""
        print(f"{condition}: {score['value']:.2f}{stopped}")


def _print_harm(report: dict[str, Any]) -> None:
    agreement, perplexity = report["agreement"], report["perplexity"]
    holding = f"the state holding {report['store']!r}" if report["store"] else "nothing stored"
    print(f"no harm ({holding}): greedy replies equal the base model's on "
          f"{agreement['carried']['agreement']:.2f} of {agreement['carried']['n']} held-out prompts carried, "
          f"{agreement['wiped']['agreement']:.2f} wiped (base {agreement['base']['agreement']:.2f}); perplexity of "
          f"held-out text {perplexity['carried']:.2f} carried, {perplexity['wiped']:.2f} wiped, "
          f"{perplexity['base']:.2f} base ({perplexity['rise']['carried']:+.1%} carried)")


def _print_switches(rows: list[dict[str, Any]]) -> None:
    """Where the write and the recall open, per kind of pass (``ran.switches``)."""
    print(f"{'pass':>10}  {'phrasing':>8}  {'n':>3}  {'writes':>6}  {'recalls':>7}")
    for row in rows:
        print(f"{row['pass']:>10}  {row['phrasing']:>8}  {row['n']:>3}  {row['write']:>6.2f}  {row['recall']:>7.2f}")


def _print_overwrites(rows: list[dict[str, Any]]) -> None:
    """Carried recall after intervening passes that keep the write shut, and after one that opens it."""
    if not rows:
        return
    print("held-out values, training phrasings, carried: recall where every pass between keeps the write shut | "
          "where one opens it")
    for row in rows:
        kept, overwritten = row["kept"], row["overwritten"]
        cells = [f"{c['recall']:.2f} of {c['n']}" if c["n"] else "none" for c in (kept, overwritten)]
        print(f"  D = {row['delay']:>2}: {cells[0]:>12} | {cells[1]}")

