"""A population in one batch vs a loop over its members, on the embedded SmolLM2-135M.

    python benchmarks/members.py                              # N = 8 and 32, 2 steps each (a few minutes)
    python benchmarks/members.py --members 4 --steps 1        # smaller
    python benchmarks/members.py --units 2048 --delays 0-8    # the retention recipe's reservoir and delays

N members (reservoir seeds 0..N-1, data seeds 0..N-1, the one-hop recall task of ``ran crosspass``) are
trained for a few steps twice: by :func:`ran.members.train_members` (members x episodes in one batch,
layer L's inputs shared), and one after another by :func:`ran.training.train` (each with its own
layer-input cache, as a population runs them today). Both wall times include wrapping the members
(building their reservoirs). It checks that every member's losses agree between the two, and writes
``benchmarks/results/members.json`` (the CPU model, torch version and git commit with the figures).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/members.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, load_average, row, write_result  # noqa: E402

NAME = "members"
# The two runs compute the same float32 sums in other batch shapes; over a few steps their losses agree to
# ~1e-6 relative (tests/test_members.py bounds it on tiny models). A bug (a row given another member's
# readout, one clipping norm for all) moves them by far more than this.
LOSS_TOLERANCE = 1e-4


def run(member_counts: list[int], steps: int, units: int, delays: tuple[int, int], threads: int) -> dict[str, Any]:
    import torch

    from ran.loading import load_model
    from ran.members import Member, train_members
    from ran.model import RanConfig, wrap
    from ran.passes import PassFormat, Renderer
    from ran.reservoir import ReservoirConfig
    from ran.tasks import RecallTask
    from ran.training import TrainConfig, train

    torch.set_num_threads(threads)
    started, load_before = time.perf_counter(), load_average()
    base, tokenizer = load_model("smollm2-135m")
    renderer = Renderer(PassFormat(), tokenizer)
    task = RecallTask(train_delays=delays, filler="distractor")

    def episodes_for_step(step: int, generator: torch.Generator):
        return task.training_episodes(generator)

    def population(n: int) -> list[Member]:
        return [Member(RanConfig(mode="kv", readout_seed=i, reservoir=ReservoirConfig(units=units, seed=i)),
                       TrainConfig(steps=steps, seed=i), episodes_for_step) for i in range(n)]

    config = {"model": "smollm2-135m", "task": task.to_dict(), "units": units, "steps": steps, "threads": threads,
              "members": member_counts, "ran": RanConfig(reservoir=ReservoirConfig(units=units)).to_dict()}
    results: dict[str, Any] = {"cases": []}
    summary = []
    for n in member_counts:
        members = population(n)
        print(f"  {n} members, {steps} steps: loop ...", flush=True)
        clock = time.perf_counter()
        alone = []
        for member in members:
            model = wrap(base, member.ran)
            try:
                alone.append(train(model, renderer, member.episodes_for_step, member.train, progress=False))
            finally:
                model.unwrap()
        loop_seconds = time.perf_counter() - clock
        print(f"  {n} members, {steps} steps: one batch ...", flush=True)
        clock = time.perf_counter()
        batched = train_members(base, members, renderer)
        batch_seconds = time.perf_counter() - clock
        episodes = sum(result.episodes for result in alone)
        difference = max(abs(a - b) / abs(b) for trained, solo in zip(batched, alone, strict=True)
                         for a, b in zip(trained.result.losses, solo.losses, strict=True))
        same = difference <= LOSS_TOLERANCE and all(len(t.result.losses) == len(s.losses)
                                                    for t, s in zip(batched, alone, strict=True))
        case = {"members": n, "episodes": episodes, "passes": sum(result.passes for result in alone),
                "seconds": {"loop": round(loop_seconds, 3), "batched": round(batch_seconds, 3)},
                "train_seconds": {"loop": round(sum(r.seconds for r in alone), 3),
                                  "batched": round(batched[0].result.seconds, 3)},
                "episodes_per_second": {"loop": episodes / loop_seconds, "batched": episodes / batch_seconds},
                "time_ratio": batch_seconds / loop_seconds, "speed_up": loop_seconds / batch_seconds,
                "max_relative_loss_difference": difference, "same_losses": same}
        results["cases"].append(case)
        print(f"  {n} members: loop {loop_seconds:.1f} s ({case['episodes_per_second']['loop']:.2f} ep/s), one batch "
              f"{batch_seconds:.1f} s ({case['episodes_per_second']['batched']:.2f} ep/s): time ratio "
              f"{case['time_ratio']:.3f} (speed-up {case['speed_up']:.2f}x); losses differ by <= {difference:.2g} "
              f"relative ({'same' if same else 'NOT THE SAME'})", flush=True)
        value = {"median": case["speed_up"], "min": case["speed_up"], "max": case["speed_up"]}
        summary.append(row("members", f"kv K={units}, {n} members x {len(alone[0].losses)} steps, one batch vs loop",
                           f"{case['episodes_per_second']['batched']:.2f} ep/s",
                           f"loop {case['episodes_per_second']['loop']:.2f} ep/s", value,
                           "speed-up (loop s / batch s)", "same losses", same))
    notes = [f"one round per case (no repeats), torch threads {threads}; wall times include wrapping the members"]
    return {"name": NAME, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32], help="population sizes (default: 8 32)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per member (default: 2)")
    parser.add_argument("--units", type=int, default=512, help="reservoir size K (default: 512, crosspass's)")
    parser.add_argument("--delays", default="0-0", help="training delays LOW-HIGH (default: 0-0, one hop)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    from ran.tasks.recall import parse_delays

    if min(args.members) < 1 or args.steps < 1 or args.threads < 1:
        parser.error("--members, --steps and --threads must be >= 1")
    outcome = run(args.members, args.steps, args.units, parse_delays(args.delays), args.threads)
    path = write_result(outcome["name"], outcome["config"], outcome["results"], outcome["summary"],
                        outcome["started"], outcome["load_before"], args.out, outcome["notes"])
    print(f"wrote {path}")
    return 0 if all(case["same_losses"] for case in outcome["results"]["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
