"""One command a GPU user runs to check everything on the GPU (``make gpu-check``):

1. the device tests (tests/test_devices.py: non-destruction, cached == uncached generation, a training
   step, artifacts and a session pass, on CUDA) and the model tests;
2. the headline on the GPU: ``ran crosspass --device DEVICE`` with its defaults, 3 seeds, timed;
3. the retention recipe of ``make demo`` on the GPU (``--train-delays 0-8``), 3 seeds: training seconds per
   seed (aim: <= 5 s on an H100-class card) and recall to 64 passes, carried and wiped;
4. a population in one batch (``benchmarks/members.py --device DEVICE --members 1 32 --steps 5``), in
   float32 (the batched members' losses equal the loop's at every step) and in bfloat16 (the first step's
   losses agree within bf16 rounding; see the benchmark's LOSS_TOLERANCE), and 32 members' cost against
   one member's (aim: <= 2x);
5. a profile of the retention recipe's training steps (``benchmarks/profile_training.py``: one run and 32
   in one batch; kernel launches, waits for the GPU and the top operators per step);
6. the forward, generation and training benchmarks with ``--device DEVICE --quick``.

The steps run in that order, the issue's figures first, so that a check cut short by a time limit has them.

It writes ``OUT/gpu-check.json`` (the card, versions, test counts, the headline's recall and time, the
benchmark ratios) and prints a summary. It takes about 7 minutes on one H200 (417 s on 2026-12-04).

    python -m benchmarks.gpu_check                   # --device cuda --out runs/gpu-check
    python -m benchmarks.gpu_check --dry-run         # print the steps, run nothing
    python -m benchmarks.gpu_check --only members profile   # some steps only
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def steps(device: str, out: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of each step, run from the repository root."""
    python = sys.executable
    return [
        ("tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_devices.py",
                   "tests/test_model.py"]),
        ("headline", [python, "-m", "ran", "crosspass", "--device", device, "--seeds", "0", "1", "2",
                      "--out", str(out / "headline"), "--no-progress"]),
        ("retention", [python, "-m", "ran", "crosspass", "--device", device, "--train-delays", "0-8",
                       "--seeds", "0", "1", "2", "--out", str(out / "retention"), "--no-progress"]),
        ("members", [python, "benchmarks/members.py", "--device", device, "--members", "1", "32", "--steps", "5",
                     "--out", str(out / "benchmarks")]),
        ("members-bfloat16", [python, "benchmarks/members.py", "--device", device, "--dtype", "bfloat16",
                              "--members", "1", "32", "--steps", "5", "--out", str(out / "benchmarks")]),
        ("profile", [python, "benchmarks/profile_training.py", "--device", device, "--members", "1", "32",
                     "--label", "gpu", "--out", str(out / "benchmarks")]),
        ("benchmarks", [python, "-m", "benchmarks", "--device", device, "--quick", "--only", "forward",
                        "generation", "training", "--out", str(out / "benchmarks")]),
    ]


def pytest_counts(output: str) -> dict[str, int]:
    """The pass/fail/skip counts from pytest's last summary line."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def summarise(out: Path, seconds: dict[str, float], tests: dict[str, int], device: str) -> dict[str, Any]:
    """The check's summary, read from the JSON files the steps wrote (nothing is re-measured)."""
    from ran.engine.report import read_results
    from ran.provenance import environment

    summary: dict[str, Any] = {"device": device, "tests": tests, "step_seconds": seconds, **environment()}
    headline = out / "headline" / "crosspass.json"
    if headline.is_file():
        results = read_results(headline, "crosspass")
        row = results["summary"][0]
        summary["headline"] = {
            "recall": {c: row["recall"][c]["mean"] for c in ("carried", "wiped", "untrained")},
            "seeds": row["seeds"], "seconds": results["seconds"],
            "train_seconds": [run["train_seconds"] for run in results["runs"]],
            "device": results["runs"][0].get("device"), "dtype": results["runs"][0].get("dtype"),
            "machine": results["machine"], "versions": results["versions"]}
    retention = out / "retention" / "crosspass.json"
    if retention.is_file():
        results = read_results(retention, "crosspass")
        runs = results["runs"]
        summary["retention"] = {
            "train_seconds": [run["train_seconds"] for run in runs], "aim_train_seconds": "<= 5",
            "met": max(run["train_seconds"] for run in runs) <= 5, "seeds": results["summary"][0]["seeds"],
            "recall_by_delay": {f"{row['filler']} {row['delay']}": {c: row["recall"][c]["mean"]
                                                                     for c in ("carried", "wiped")}
                                for row in results["summary"][0].get("retention", [])
                                if row["split"] == "trained"},
            "seconds": results["seconds"], "device": runs[0].get("device"), "dtype": runs[0].get("dtype")}
    rows = []
    for name in ("forward", "generation", "training"):
        path = out / "benchmarks" / f"{name}.json"
        if path.is_file():
            document = json.loads(path.read_text())
            summary.setdefault("gpu", document["machine"].get("gpu"))
            rows += [{"benchmark": name, "case": entry["case"], "ran": entry["ran"], "baseline": entry["baseline"],
                      "ratio": entry["ratio"], "target": entry["target"], "met": entry["met"]}
                     for entry in document["summary"]]
    summary["benchmarks"] = rows
    for key, file in (("members", "members.json"), ("members_bfloat16", "members-bfloat16.json")):
        path = out / "benchmarks" / file
        if path.is_file():
            cases = {case["members"]: case for case in json.loads(path.read_text())["results"]["cases"]}
            if 1 in cases and 32 in cases:
                one, many = (cases[n]["seconds"]["batched"]["median"] for n in (1, 32))
                summary[key] = {"dtype": cases[32].get("dtype", "float32"), "one_member_seconds": one,
                                "32_members_seconds": many, "cost_ratio": many / one, "aim": "<= 2",
                                "met": many / one <= 2, "loop_over_batch": 1 / cases[32]["time_ratio"]
                                if "time_ratio" in cases[32] else None,
                                "same_losses": all(case["same_losses"] for case in cases.values())}
    profile = out / "benchmarks" / "profile-gpu.json"
    if profile.is_file():
        summary["profile"] = {name: {key: case[key] for key in ("seconds_per_step", "kernel_launches_per_step",
                                                                "host_syncs_per_step", "operator_calls_per_step")}
                              for name, case in json.loads(profile.read_text())["results"].items()}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the GPU to check (default: cuda)")
    parser.add_argument("--out", default="runs/gpu-check", help="output folder (default: runs/gpu-check)")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (default: all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    plan = steps(args.device, out)
    names = [name for name, _ in plan]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        print(f"gpu-check: error: unknown step {unknown[0]!r}; the steps are {', '.join(names)}", file=sys.stderr)
        return 2
    plan = [(name, command) for name, command in plan if not args.only or name in args.only]
    if args.dry_run:
        for name, command in plan:
            print(f"{name}: {' '.join(command)}")
        return 0
    from ran.devices import resolve_device
    from ran.errors import ConfigError

    try:
        device = str(resolve_device(args.device))
    except ConfigError as error:
        print(f"gpu-check: error: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    seconds, tests, failed = {}, {}, []
    for name, command in plan:
        print(f"[gpu-check] {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds[name] = round(time.perf_counter() - started, 1)
        (out / f"{name}.log").write_text(done.stdout + done.stderr)
        if name == "tests":
            tests = pytest_counts(done.stdout)
        if done.returncode != 0:
            failed.append(name)
            print(f"[gpu-check] {name} failed (exit {done.returncode}); see {out / f'{name}.log'}", flush=True)
    summary = summarise(out, seconds, tests, device)
    summary["failed_steps"] = failed
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary.get(k) for k in ("gpu", "tests", "step_seconds", "failed_steps")}, indent=1))
    if "headline" in summary:
        head = summary["headline"]
        print(f"headline on {head['device']} ({head['dtype']}): recall {head['recall']}, {head['seconds']} s, "
              f"training {head['train_seconds']} s per seed")
    if "retention" in summary:
        kept = summary["retention"]
        print(f"retention recipe on {kept['device']} ({kept['dtype']}): training {kept['train_seconds']} s per seed "
              f"(aim <= 5 s), recall by delay {kept['recall_by_delay']}")
    for entry in summary["benchmarks"]:
        ratio = entry["ratio"]["median"] if entry["ratio"] else float("nan")
        print(f"  {entry['benchmark']:>10}  {entry['case']:<60}  {ratio:.3g}x  {entry['target']}")
    for key in ("members", "members_bfloat16"):
        if key in summary:
            members = summary[key]
            print(f"a population in one batch ({members['dtype']}): 32 members {members['32_members_seconds']:.1f} s, "
                  f"one member {members['one_member_seconds']:.1f} s: {members['cost_ratio']:.2f}x (aim <= 2x); "
                  f"losses as in the loop: {members['same_losses']}")
    print(f"wrote {out / 'gpu-check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
