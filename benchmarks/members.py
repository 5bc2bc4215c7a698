"""A population in one batch vs a loop over its members, on the embedded SmolLM2-135M.

    python benchmarks/members.py                              # N = 8 and 32, 2 steps each (a few minutes)
    python benchmarks/members.py --members 4 --steps 1        # smaller
    python benchmarks/members.py --units 2048 --delays 0-8    # the retention recipe's reservoir and delays
    python benchmarks/members.py --repeats 3                  # medians of 3 alternating rounds (3x the time)
    python benchmarks/members.py --device cuda --dtype bfloat16   # the GPU's training dtype (see LOSS_TOLERANCE)

N members (reservoir seeds 0..N-1, data seeds 0..N-1, the one-hop recall task of ``ran crosspass``) are
trained for a few steps twice: by :func:`ran.batched.train_members` (members x episodes in one batch,
layer L's inputs shared), and one after another by :func:`ran.training.train` (each with its own
layer-input cache, as a population runs them today). Both wall times include wrapping the members
(building their reservoirs). It checks that every member's losses agree between the two, and writes
``benchmarks/results/members.json`` (the CPU model, torch version and git commit with the figures).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/members.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, fmt_ratio, load_average, ratio, row, stats, write_result  # noqa: E402

NAME = "members"
# The two runs compute the same sums in other batch shapes. On the CPU in float32 their losses agree to
# ~1e-6 relative over a few steps (tests/test_batched.py bounds it on tiny models); a bug (a row given
# another member's readout, one clipping norm for all) moves them by far more. A GPU library rounds
# differently in another batch shape, and Adam amplifies that: its first steps move every coordinate by
# about the learning rate whatever the gradient's scale, so a coordinate whose gradient is near zero moves
# the other way when the gradient's last bits change (on an H200, float32, 32 members: the losses parted by
# up to 0.031 relative within 5 steps at lr 0.01; bfloat16: 0.48). So on the CPU in float32 every step is
# compared, and on a GPU or in a half dtype only the first step (the same parameters, so only the forward's
# rounding differs), within a few units of roundoff; every step's difference is reported beside it.
LOSS_TOLERANCE = {"float32": 1e-4, "bfloat16": 2.0**-5, "float16": 2.0**-8}


def run(member_counts: list[int], steps: int, units: int, delays: tuple[int, int], threads: int,
        repeats: int = 1, device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    import torch

    from ran.batched import Member, train_members
    from ran.loading import load_model
    from ran.model import RanConfig, wrap
    from ran.passes import PassFormat, Renderer
    from ran.reservoir import ReservoirConfig
    from ran.tasks import RecallTask
    from ran.training import TrainConfig, train

    torch.set_num_threads(threads)
    started, load_before = time.perf_counter(), load_average()
    base, tokenizer = load_model("smollm2-135m", device=device, dtype=dtype)
    dtype = str(base.dtype).removeprefix("torch.")
    renderer = Renderer(PassFormat(), tokenizer)
    task = RecallTask(train_delays=delays, filler="distractor")

    def episodes_for_step(step: int, generator: torch.Generator):
        return task.training_episodes(generator)

    def population(n: int) -> list[Member]:
        return [Member(RanConfig(mode="kv", readout_seed=i, reservoir=ReservoirConfig(units=units, seed=i)),
                       TrainConfig(steps=steps, seed=i), episodes_for_step) for i in range(n)]

    config = {"model": "smollm2-135m", "device": str(base.device), "dtype": dtype,
              "task": task.to_dict(), "units": units, "steps": steps, "threads": threads,
              "repeats": repeats, "members": member_counts,
              "ran": RanConfig(reservoir=ReservoirConfig(units=units)).to_dict()}
    results: dict[str, Any] = {"cases": []}
    summary = []
    for n in member_counts:
        members = population(n)

        def loop(members: list[Member] = members) -> list:
            alone = []
            for member in members:
                model = wrap(base, member.ran)
                try:
                    alone.append(train(model, renderer, member.episodes_for_step, member.train, progress=False))
                finally:
                    model.unwrap()
            return alone

        outcomes: dict[str, list] = {"loop": [], "batched": []}
        ways = {"loop": loop, "batched": lambda members=members: train_members(base, members, renderer)}
        seconds: dict[str, list[float]] = {"loop": [], "batched": []}
        for round_index in range(repeats):  # the order alternates, so neither always runs on a quieter machine
            for name in (["loop", "batched"] if round_index % 2 == 0 else ["batched", "loop"]):
                print(f"  {n} members, {steps} steps: {name} (round {round_index + 1} of {repeats}) ...", flush=True)
                clock = time.perf_counter()
                outcomes[name].append(ways[name]())
                seconds[name].append(time.perf_counter() - clock)
        alone, batched = outcomes["loop"][0], outcomes["batched"][0]
        episodes = sum(result.episodes for result in alone)
        compared = None if dtype == "float32" and base.device.type == "cpu" else 1  # None: all steps; see above
        by_step = [max(abs(member.result.losses[step] - solo.losses[step]) / abs(solo.losses[step])
                       for trained in outcomes["batched"] for member, solo in zip(trained, alone, strict=True))
                   for step in range(len(alone[0].losses))]  # the largest relative difference at each step
        difference, every_step = max(by_step[:compared]), max(by_step)
        same = difference <= LOSS_TOLERANCE[dtype] and all(len(t.result.losses) == len(s.losses)
                                                           for t, s in zip(batched, alone, strict=True))
        speed_up = ratio(seconds["loop"], seconds["batched"])
        case = {"members": n, "episodes": episodes, "passes": sum(result.passes for result in alone),
                "seconds": {name: stats(values) for name, values in seconds.items()},
                "episodes_per_second": {name: episodes / statistics.median(values) for name, values in seconds.items()},
                "time_ratio": 1 / speed_up["median"], "speed_up": speed_up,
                "dtype": dtype, "steps_compared": "all" if compared is None else compared,
                "loss_tolerance": LOSS_TOLERANCE[dtype], "max_relative_loss_difference": difference,
                "max_relative_loss_difference_every_step": every_step, "max_relative_loss_difference_by_step": by_step,
                "same_losses": same}
        results["cases"].append(case)
        rates = case["episodes_per_second"]
        print(f"  {n} members: loop {statistics.median(seconds['loop']):.1f} s ({rates['loop']:.2f} ep/s), one batch "
              f"{statistics.median(seconds['batched']):.1f} s ({rates['batched']:.2f} ep/s): time ratio "
              f"{case['time_ratio']:.3f} (speed-up {fmt_ratio(speed_up)}); {dtype} losses differ by <= "
              f"{difference:.2g} relative over {case['steps_compared']} step(s) compared, tolerance "
              f"{LOSS_TOLERANCE[dtype]:.2g} ({'same' if same else 'NOT THE SAME'}); every step: <= {every_step:.2g}",
              flush=True)
        summary.append(row("members", f"kv K={units}, {n} members x {len(alone[0].losses)} steps, one batch vs loop",
                           f"{rates['batched']:.2f} ep/s", f"loop {rates['loop']:.2f} ep/s", speed_up,
                           "speed-up (loop s / batch s)", "same losses", same))
    notes = [f"{repeats} round(s) per case, loop and batch alternating; torch threads {threads}; wall times include "
             "wrapping the members (building their reservoirs)"]
    name = NAME if dtype == "float32" else f"{NAME}-{dtype}"
    return {"name": name, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32], help="population sizes (default: 8 32)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per member (default: 2)")
    parser.add_argument("--units", type=int, default=512, help="reservoir size K (default: 512, crosspass's)")
    parser.add_argument("--delays", default="0-0", help="training delays LOW-HIGH (default: 0-0, one hop)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(LOSS_TOLERANCE),
                        help="the backbone's dtype (default: float32, where every step's losses are compared)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds of each way, alternating (default: 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    from ran.tasks.recall import parse_delays

    if min(args.members) < 1 or min(args.steps, args.threads, args.repeats) < 1:
        parser.error("--members, --steps, --threads and --repeats must be >= 1")
    outcome = run(args.members, args.steps, args.units, parse_delays(args.delays), args.threads, args.repeats,
                  args.device, args.dtype)
    path = write_result(outcome["name"], outcome["config"], outcome["results"], outcome["summary"],
                        outcome["started"], outcome["load_before"], args.out, outcome["notes"])
    print(f"wrote {path}")
    return 0 if all(case["same_losses"] for case in outcome["results"]["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
