"""Where a training step's time goes: torch.profiler over a few steps, one run alone and N runs in one batch.

    python benchmarks/profile_training.py                          # CPU: the retention recipe, 3 steps, 1 and 8 runs
    python benchmarks/profile_training.py --device cuda --members 32
    python benchmarks/profile_training.py --label before           # names the summary (e.g. at an older commit)

Each case trains the retention recipe of ``make demo`` (kv, K=2048, leak 0.05, delays 0-8 mixed) for a few
steps under :mod:`torch.profiler` and summarises it: wall seconds per step, operator calls per step,
scalar reads per step (``aten::_local_scalar_dense``: ``.item()``, ``int(t)``, ``bool(t)``, of CPU or device
tensors alike), on a GPU the host's waits for the device (``cudaStreamSynchronize`` and kin) and kernel
launches per step, the optimizer's share, and the ten operators with the most self time (the device's on
a GPU). It writes
``benchmarks/results/profile-<label>.json`` and ``.md``. A profile slows what it measures, so its seconds
are for comparing shares within one profile; the speed figures come from the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/profile_training.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, load_average, write_result  # noqa: E402

SCALAR_OPS = ("aten::_local_scalar_dense",)  # .item(), int(t), bool(t): a tensor's value read by Python
SYNC_OPS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")  # the host waits for the GPU
LAUNCH_OPS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
TOP = 10


def summarise(events, steps: int, seconds: float, on_gpu: bool) -> dict[str, Any]:
    """The profile's figures per step (``events``: ``profiler.key_averages()``)."""
    def self_time(event) -> float:
        return event.self_device_time_total if on_gpu else event.self_cpu_time_total

    total = sum(self_time(event) for event in events) or 1.0
    optimizer = sum(event.cpu_time_total for event in events if event.key.startswith("Optimizer.step"))
    top = sorted(events, key=self_time, reverse=True)[:TOP]
    return {
        "steps": steps,
        "seconds_per_step": seconds / steps,
        "operator_calls_per_step": sum(e.count for e in events if e.key.startswith("aten::")) / steps,
        "scalar_reads_per_step": sum(e.count for e in events if e.key in SCALAR_OPS) / steps,
        "host_syncs_per_step": sum(e.count for e in events if e.key in SYNC_OPS) / steps if on_gpu else None,
        "kernel_launches_per_step": sum(e.count for e in events if e.key in LAUNCH_OPS) / steps if on_gpu else None,
        "optimizer_share_of_wall": optimizer / 1e6 / seconds,
        "time": "device self time" if on_gpu else "CPU self time",
        "top": [{"op": e.key, "calls_per_step": e.count / steps, "share": self_time(e) / total} for e in top],
    }


def run(member_counts: list[int], steps: int, device: str, threads: int) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ran.loading import load_model
    from ran.model import RanConfig, wrap
    from ran.passes import PassFormat, Renderer
    from ran.reservoir import ReservoirConfig
    from ran.tasks import RecallTask
    from ran.training import TrainConfig, train

    torch.set_num_threads(threads)
    started, load_before = time.perf_counter(), load_average()
    base, tokenizer = load_model("smollm2-135m", device=device)
    on_gpu = base.device.type == "cuda"
    renderer = Renderer(PassFormat(), tokenizer)
    task = RecallTask(train_delays=(0, 8), filler="distractor")  # make demo's recipe (its defaults below)

    def ran_config(seed: int) -> RanConfig:
        return RanConfig(mode="kv", readout_seed=seed, reservoir=ReservoirConfig(
            units=2048, leak_rate=0.05, input_scaling=0.2, seed=seed))

    def episodes_for_step(step: int, generator: torch.Generator):
        return task.training_episodes(generator)

    def alone() -> None:
        model = wrap(base, ran_config(0))
        try:
            train(model, renderer, episodes_for_step, TrainConfig(steps=steps, seed=0), progress=False)
        finally:
            model.unwrap()

    def together(n: int) -> None:
        from ran.batched import Member, train_members  # (imported here: a profile of one run works at older commits)

        train_members(base, [Member(ran_config(i), TrainConfig(steps=steps, seed=i), episodes_for_step)
                             for i in range(n)], renderer)

    cases = {}
    for n in member_counts:
        work = alone if n == 1 else (lambda n=n: together(n))
        work()  # untimed: allocator, caches, lazy initialisation
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        with profile(activities=activities) as profiler:
            clock = time.perf_counter()
            work()
            if on_gpu:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - clock
        name = "one run alone" if n == 1 else f"{n} runs in one batch"
        cases[name] = summarise(profiler.key_averages(), steps, seconds, on_gpu)
    config = {"device": str(base.device), "dtype": str(base.dtype).removeprefix("torch."), "steps": steps,
              "threads": threads, "members": member_counts, "task": task.to_dict(),
              "recipe": "kv, K=2048, leak 0.05, input scaling 0.2, delays 0-8 (make demo's)"}
    return {"config": config, "cases": cases, "started": started, "load_before": load_before}


def markdown(label: str, outcome: dict[str, Any], commit: str) -> str:
    config = outcome["config"]
    lines = [f"# Profile `{label}`: {config['recipe']}, {config['steps']} steps on {config['device']} "
             f"({config['dtype']}, {config['threads']} thread(s)), commit {commit}", ""]
    for name, case in outcome["cases"].items():
        launches, syncs = case["kernel_launches_per_step"], case["host_syncs_per_step"]
        lines += [f"## {name}", "",
                  f"{case['seconds_per_step']:.2f} s per step under the profiler; "
                  f"{case['operator_calls_per_step']:.0f} operator calls, "
                  f"{case['scalar_reads_per_step']:.0f} scalar reads"
                  + (f", {syncs:.0f} waits for the GPU, {launches:.0f} kernel launches" if launches is not None else "")
                  + f" per step; the optimizer {case['optimizer_share_of_wall']:.1%} of the wall time.", "",
                  f"| operator | calls per step | share of {case['time']} |", "| --- | --- | --- |"]
        lines += [f"| `{row['op']}` | {row['calls_per_step']:.0f} | {row['share']:.1%} |" for row in case["top"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8], help="runs per case (default: 1 8)")
    parser.add_argument("--steps", type=int, default=3, help="profiled optimizer steps per case (default: 3)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--label", default=None, help="the summary's name (default: the device's type)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if min(args.members) < 1 or min(args.steps, args.threads) < 1:
        parser.error("--members, --steps and --threads must be >= 1")
    outcome = run(args.members, args.steps, args.device, args.threads)
    label = args.label or outcome["config"]["device"].split(":")[0]
    path = write_result(f"profile-{label}", outcome["config"], outcome["cases"], [], outcome["started"],
                        outcome["load_before"], args.out)
    commit = json.loads(path.read_text())["git"].get("commit", "unknown")[:7]
    text = markdown(label, outcome, commit)
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
