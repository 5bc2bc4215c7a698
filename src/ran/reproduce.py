"""Rerun the README's headline figures and check each against its committed interval (``make reproduce``).

The spec (``results/reproduce.json``, schema ``ran.reproduce/1``) lists runs; a run is a command, the
results JSON it writes (under ``runs/``, never the committed ``results/``; any schema
:func:`ran.engine.report.read_results` reads) and the figures read from it:

    {"schema": "ran.reproduce/1",
     "runs": [{"name": "one-hop", "budget": "3 seeds x 120 steps, ~2 min on 2 cores",
               "command": ["ran", "crosspass", "--out", "runs/reproduce/one-hop"],
               "results": "runs/reproduce/one-hop/crosspass.json",
               "figures": [{"figure": "one hop, carried recall, mean over seeds",
                            "value": ["summary", 0, "recall", "carried", "mean"],
                            "interval": [0.944, 1.0], "committed": "results/crosspass.json",
                            "basis": "where the interval comes from"}]}]}

A ``value`` path steps through the JSON: a string is a key, an integer a list index, and an object picks
the one list element whose fields equal it (``{"delay": 16, "split": "trained"}``). A command starting
with ``ran`` or ``python`` runs with this interpreter. Each run's stale results file is removed before
it runs, so a command that fails cannot pass on an old file. The table (figure, interval, got, pass)
and the wall times are printed and written with the provenance to ``OUT/reproduce.json``; each
command's output goes to ``OUT/<name>.log``. Exit status: 0 when every figure is inside its interval,
1 when one is not (or a command failed), 2 for a bad spec.

    python -m ran.reproduce                      # every run in results/reproduce.json
    python -m ran.reproduce --only one-hop       # some of them
    python -m ran.reproduce --dry-run            # print the plan
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ran.engine.report import read_results
from ran.errors import ConfigError, RanError
from ran.fileio import atomic_write

SCHEMA = "ran.reproduce/1"
REPORT_SCHEMA = "ran.reproduce-report/1"
DEFAULT_SPEC = "results/reproduce.json"
DEFAULT_OUT = "runs/reproduce"
RUNS_DIRECTORY = "runs"


@dataclass(frozen=True)
class Figure:
    figure: str
    value: tuple[Any, ...]  # the path to the number in the results JSON
    interval: tuple[float, float]
    committed: str | None = None  # the committed results file the interval was taken from
    basis: str = ""


@dataclass(frozen=True)
class Run:
    name: str
    command: tuple[str, ...]
    results: str  # relative to the root, under runs/
    figures: tuple[Figure, ...]
    budget: str = ""


def load_spec(path: str | Path, root: str | Path = ".") -> list[Run]:
    """The runs of a spec file, checked; a bad spec is a ConfigError naming what is wrong."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"spec {path} not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"spec {path} is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ConfigError(f"spec {path}: schema must be {SCHEMA!r}, got {_get(document, 'schema')!r}")
    entries = document.get("runs")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"spec {path}: 'runs' must be a non-empty list")
    runs = [_run(entry, index, Path(root)) for index, entry in enumerate(entries)]
    names = [run.name for run in runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"spec {path}: run names repeat: {', '.join(repeated)}")
    return runs


def _get(document: Any, key: str) -> Any:
    return document.get(key) if isinstance(document, dict) else None


def _run(entry: Any, index: int, root: Path) -> Run:
    where = f"run {index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string without '/', got {name!r}")
    where = f"run {name!r}"
    command = entry.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
        raise ConfigError(f"{where}: 'command' must be a non-empty list of strings, got {command!r}")
    results = entry.get("results")
    if not isinstance(results, str) or not _under_runs(results, root):
        raise ConfigError(f"{where}: 'results' must be a JSON path under {RUNS_DIRECTORY}/ (never the committed "
                          f"results/), got {results!r}")
    figures = entry.get("figures")
    if not isinstance(figures, list) or not figures:
        raise ConfigError(f"{where}: 'figures' must be a non-empty list")
    return Run(name, tuple(command), results, tuple(_figure(f, where) for f in figures), str(entry.get("budget", "")))


def _under_runs(results: str, root: Path) -> bool:
    relative = Path(results)
    if relative.is_absolute() or relative.suffix != ".json":
        return False
    resolved = (root / relative).resolve()
    return resolved.is_relative_to((root / RUNS_DIRECTORY).resolve())


def _figure(entry: Any, where: str) -> Figure:
    if not isinstance(entry, dict) or not isinstance(entry.get("figure"), str) or not entry["figure"]:
        raise ConfigError(f"{where}: every figure needs a 'figure' name, got {entry!r}")
    where = f"{where}, figure {entry['figure']!r}"
    value = entry.get("value")
    if not isinstance(value, list) or not value or not all(
            isinstance(step, str | dict) or (isinstance(step, int) and not isinstance(step, bool)) for step in value):
        raise ConfigError(f"{where}: 'value' must be a non-empty list of keys, indices and {{field: value}} "
                          f"selectors, got {value!r}")
    interval = entry.get("interval")
    if (not isinstance(interval, list) or len(interval) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in interval)
            or interval[0] > interval[1]):
        raise ConfigError(f"{where}: 'interval' must be [low, high] with low <= high, got {interval!r}")
    committed = entry.get("committed")
    if committed is not None and not isinstance(committed, str):
        raise ConfigError(f"{where}: 'committed' must be a path, got {committed!r}")
    return Figure(entry["figure"], tuple(value), (float(interval[0]), float(interval[1])), committed,
                  str(entry.get("basis", "")))


def lookup(document: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in a JSON document; KeyError with the step that failed."""
    current = document
    for step in path:
        if isinstance(step, dict):
            if not isinstance(current, list):
                raise KeyError(f"{step} selects from a list, found {type(current).__name__}")
            matches = [item for item in current
                       if isinstance(item, dict) and all(item.get(k) == v for k, v in step.items())]
            if len(matches) != 1:
                raise KeyError(f"{json.dumps(step)} matches {len(matches)} elements, not one")
            current = matches[0]
        elif isinstance(step, int):
            if not isinstance(current, list) or not -len(current) <= step < len(current):
                raise KeyError(f"index {step} is not in a list here")
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                raise KeyError(f"no key {step!r}")
            current = current[step]
    return current


def check(figure: Figure, document: Any) -> dict[str, Any]:
    """One figure read from a results document: its value and whether it lies in the interval."""
    row = {"figure": figure.figure, "interval": list(figure.interval), "got": None, "passed": False, "note": ""}
    try:
        value = lookup(document, figure.value)
    except KeyError as error:
        row["note"] = f"not in the results: {error.args[0]}"
        return row
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        row["note"] = f"not a finite number: {value!r}"
        return row
    row["got"] = value
    row["passed"] = figure.interval[0] <= value <= figure.interval[1]
    return row


def argv_of(command: tuple[str, ...]) -> list[str]:
    """The command to execute: ``ran ...`` and ``python ...`` run with this interpreter."""
    if command[0] == "ran":
        return [sys.executable, "-m", "ran", *command[1:]]
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return list(command)


def execute(run: Run, root: Path, out: Path, log=print) -> dict[str, Any]:
    """Run one command (its stale results file removed first) and check its figures."""
    results = root / run.results
    results.unlink(missing_ok=True)
    log_path = out / f"{run.name}.log"
    log(f"[reproduce] {run.name}: {shlex.join(run.command)}  (log: {log_path})")
    started = time.perf_counter()
    with open(log_path, "w") as stream:
        done = subprocess.run(argv_of(run.command), cwd=root, stdout=stream, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    record = {"name": run.name, "command": list(run.command), "budget": run.budget, "results": run.results,
              "returncode": done.returncode, "seconds": round(seconds, 1)}
    if done.returncode != 0:
        note = f"command failed (exit {done.returncode}); see {log_path}"
        record["figures"] = [_failed(f, note) for f in run.figures]
    elif not results.is_file():
        record["figures"] = [_failed(f, f"the command wrote no {run.results}") for f in run.figures]
    else:
        try:
            document = read_results(results)
        except ConfigError as error:
            record["figures"] = [_failed(f, str(error)) for f in run.figures]
        else:
            record["figures"] = [check(f, document) for f in run.figures]
    return record


def _failed(figure: Figure, note: str) -> dict[str, Any]:
    return {"figure": figure.figure, "interval": list(figure.interval), "got": None, "passed": False, "note": note}


def table(records: list[dict[str, Any]], seconds: float) -> str:
    """The pass/fail table, each run's wall time and the total."""
    rows = [(f["figure"], f"[{f['interval'][0]:.3f}, {f['interval'][1]:.3f}]",
             "-" if f["got"] is None else f"{f['got']:.3f}", "pass" if f["passed"] else "FAIL", f["note"])
            for record in records for f in record["figures"]]
    header = ("figure", "expected interval", "got", "result", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True)).rstrip()
             + (f"  {line[4]}" if line[4] else "") for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines += [f"{r['name']}: {_minutes(r['seconds'])} wall ({r['budget'] or 'budget not stated'})" for r in records]
    passed = sum(f["passed"] for r in records for f in r["figures"])
    total = sum(len(r["figures"]) for r in records)
    lines.append(f"{passed} of {total} figures inside their intervals; {_minutes(seconds)} wall in all")
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def select(runs: list[Run], only: list[str] | None) -> list[Run]:
    if not only:
        return runs
    names = [run.name for run in runs]
    for name in only:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"no run {name!r} in the spec{hint}; runs: {', '.join(names)}")
    return [run for run in runs if run.name in only]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ran.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"the spec file (default: {DEFAULT_SPEC})")
    parser.add_argument("--root", default=".", help="where commands run and paths start (default: .)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"logs and the report (default: {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these runs of the spec")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    root = Path(args.root)
    try:
        runs = select(load_spec(root / args.spec, root), args.only)
    except RanError as error:
        print(f"reproduce: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            print(f"{run.name} ({run.budget or 'budget not stated'}): {shlex.join(run.command)} -> {run.results}")
            for figure in run.figures:
                print(f"  {figure.figure}: {figure.interval[0]:.3f} to {figure.interval[1]:.3f}")
        return 0
    from ran.provenance import environment

    out = root / args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    records = [execute(run, root, out) for run in runs]
    seconds = time.perf_counter() - started
    text = table(records, seconds)
    print("\n" + text)
    passed = all(f["passed"] for r in records for f in r["figures"])
    report = {"schema": REPORT_SCHEMA, **environment(), "spec": args.spec, "runs": records,
              "seconds": round(seconds, 1), "passed": passed}
    atomic_write(out / "reproduce.json", json.dumps(report, indent=1) + "\n")
    print(f"wrote {out / 'reproduce.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
