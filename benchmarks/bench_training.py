"""Training throughput, each candidate against its baseline on the same wrapped model and the same episodes:

- batched (every key in one optimizer step) vs the original study's one-example-per-step loop;
- mixed delays in one batch (episodes with different numbers of passes, aligned at their last pass)
  vs a loop over delays (one batch per delay, gradients accumulated into the same optimizer step);
- passes started at layer L from the cached layer input vs full passes;
- the battery: the eight tasks' episodes in one batch vs a loop over tasks (one batch per task).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import fmt_ratio, interleave, load_average, ratio, row, stats

NAME = "training"
TARGET = 4.0  # batched episodes/s over one-example-per-step episodes/s


def run(quick: bool) -> dict[str, Any]:
    from ran.loading import load_model
    from ran.model import RanConfig, wrap
    from ran.passes import PassFormat, Renderer
    from ran.reservoir import ReservoirConfig
    from ran.tasks import RecallTask
    from ran.training import LayerInputCache, TrainConfig

    started, load_before = time.perf_counter(), load_average()
    repeats = 2 if quick else 3
    base, tokenizer = load_model("smollm2-135m", device=common.DEVICE)
    renderer = Renderer(PassFormat(), tokenizer)
    # the defaults of ran crosspass (one hop), and the retention setting (mixed delays 0-8)
    one_hop = RanConfig(mode="kv", reservoir=ReservoirConfig(units=512, input_scaling=0.5))
    config: dict[str, Any] = {"model": "smollm2-135m", "ran": one_hop.to_dict(), "repeats": repeats, "cases": {}}
    results: dict[str, Any] = {"cases": []}
    summary = []

    def measure(label: str, candidates: dict[str, Any], baseline: str, candidate: str, unit: str,
                target: float | None, case: str, extra: dict) -> None:
        rates: dict[str, list[float]] = {name: [] for name in candidates}
        seconds = interleave({name: _collect(fn, rates[name]) for name, fn in candidates.items()}, repeats)
        del seconds
        entry = {"case": label, **extra, "episodes_per_second": {n: stats(v) for n, v in rates.items()},
                 "ratio": ratio(rates[candidate], rates[baseline])}
        results["cases"].append(entry)
        print(f"  training {label}: {fmt_ratio(entry['ratio'])}", flush=True)
        eps = entry["episodes_per_second"]
        summary.append(row("training", case, f"{eps[candidate]['median']:.2f} ep/s",
                           f"{baseline} {eps[baseline]['median']:.2f} ep/s", entry["ratio"], unit,
                           f">= {target}x" if target else "",
                           None if target is None else entry["ratio"]["median"] >= target))

    model = wrap(base, one_hop)
    try:
        for n_keys in [6] if quick else [6, 24]:
            task = RecallTask.with_n_keys(n_keys, eval_delays=(0,))
            steps = max(1, (12 if quick else 48) // (n_keys * 2))  # the same episodes for both loops

            def trainer(size: int, task=task, steps=steps):
                return lambda: _train(model, renderer, task, TrainConfig(steps=steps, batch_size=size,
                                                                         warmup_steps=0))

            measure(f"{n_keys} keys, batched vs one per step",
                    {"batched": trainer(0), "one per step": trainer(1)}, "one per step", "batched",
                    "ep/s / one-per-step", TARGET, f"kv K=512, {n_keys} keys, one hop", {"n_keys": n_keys})
    finally:
        model.unwrap()

    retention = RanConfig(mode="kv", reservoir=ReservoirConfig(units=2048, input_scaling=0.05, leak_rate=0.3))
    config["retention_ran"] = retention.to_dict()
    model = wrap(base, retention)
    try:
        task = RecallTask.with_n_keys(6, train_delays=(0, 8), eval_delays=(0,), repeats=2)
        steps = 2 if quick else 4
        shared_cache = LayerInputCache(model)
        measure("mixed delays 0-8 in one batch vs a loop over delays",
                {"mixed": lambda: _train(model, renderer, task, TrainConfig(steps=steps, warmup_steps=0),
                                         cache=shared_cache),
                 "loop over delays": lambda: _train_by_delay(model, renderer, task, steps, shared_cache)},
                "loop over delays", "mixed", "ep/s / loop", None,
                "kv K=2048, 6 keys x 2, delays 0-8 mixed vs one batch per delay", {"delays": [0, 8]})
        measure("layer-L input cache vs full passes, delays 0-8",
                {"cached": lambda: _train(model, renderer, task, TrainConfig(steps=steps, warmup_steps=0),
                                          cache=shared_cache),
                 "full passes": lambda: _train(model, renderer, task, TrainConfig(steps=steps, warmup_steps=0),
                                               start_at_layer=False)},
                "full passes", "cached", "ep/s / full", None,
                "kv K=2048, delays 0-8, passes from the cached layer-15 input vs full", {"delays": [0, 8]})
    finally:
        model.unwrap()

    from dataclasses import replace

    from ran.battery import default_tasks
    from ran.tasks.mix import TaskMix

    battery = replace(retention, gate=True)
    model = wrap(base, battery)
    try:
        tasks = default_tasks()
        mix = TaskMix(tasks, (1.0,) * len(tasks), episodes_per_step=16)
        steps = 1 if quick else 3
        shared_cache = LayerInputCache(model)
        measure("battery: eight tasks in one batch vs a loop over tasks",
                {"mixed": lambda: _train(model, renderer, mix, TrainConfig(steps=steps, warmup_steps=0),
                                         cache=shared_cache),
                 "loop over tasks": lambda: _train_grouped(model, renderer, lambda g: _by_task(mix, g), steps,
                                                           shared_cache)},
                "loop over tasks", "mixed", "ep/s / loop", None,
                "kv K=2048 + gate head, 8 tasks x 2 episodes per step, one batch vs one per task",
                {"tasks": [t.name for t in tasks]})
    finally:
        model.unwrap()
    return {"name": NAME, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": [
                "batched = ran.training.train with batch_size=0 (all keys per optimizer step); "
                "one per step = batch_size=1 (the original study's loop); each run trains the same episodes",
                "mixed = one batch of episodes with 0-8 intervening passes (ran.episodes.schedule); loop over "
                "delays = the same episodes grouped by delay, one forward/backward per delay, one optimizer step",
                "battery: ran battery's default mix (16 episodes per step over the eight tasks) in one batch vs "
                "the same episodes grouped by task, one forward/backward per task, one optimizer step",
                "cached = passes start at layer L from the layer-input cache, warm after the first run; "
                "full = every pass runs every layer",
                "episodes/s from the wall time of each run (forward + backward + optimizer)",
                "the first (warm-up) round of each candidate is not counted"]}


def _collect(function, into: list[float]):
    def timed() -> None:
        into.append(function())
    return timed


def _train(model, renderer, task, config, cache=None, start_at_layer: bool = True) -> float:
    from ran.training import train

    result = train(model, renderer, lambda step, generator: task.training_episodes(generator), config,
                   progress=False, cache=cache, start_at_layer=start_at_layer)
    return result.episodes_per_second


def _train_by_delay(model, renderer, task, steps: int, cache) -> float:
    """The baseline a trainer without mixed batches needs: one batch per delay, gradients accumulated."""
    def by_delay(generator):
        groups: dict[int, list] = {}
        for episode in task.training_episodes(generator):
            groups.setdefault(episode.info["delay"], []).append(episode)
        return list(groups.values())
    return _train_grouped(model, renderer, by_delay, steps, cache)


def _by_task(mix, generator) -> list[list]:
    """A mix's training episodes, one list per task (TaskMix draws them task by task, in order)."""
    episodes, groups = mix.training_episodes(generator), []
    for count in mix.counts():
        groups.append(episodes[:count])
        episodes = episodes[count:]
    return [group for group in groups if group]


def _train_grouped(model, renderer, draw_groups, steps: int, cache) -> float:
    """One forward/backward per group of episodes (``draw_groups(generator)``), gradients accumulated into
    one optimizer step."""
    from ran.episodes import render
    from ran.training import run_episodes

    parameters = model.trainable_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    episodes_done, started = 0, time.perf_counter()
    for _ in range(steps):
        groups = [[render(episode, renderer) for episode in group] for group in draw_groups(generator)]
        total = sum(len(group) for group in groups)
        optimizer.zero_grad(set_to_none=True)
        for group in groups:
            loss = run_episodes(model, group, cache=cache).loss * (len(group) / total)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        episodes_done += total
    return episodes_done / (time.perf_counter() - started)
