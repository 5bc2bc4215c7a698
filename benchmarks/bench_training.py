"""Training: cross-pass episodes per second of the batched trainer (every key in one optimizer step)
vs the original study's one-example-per-step loop, on the same wrapped model and the same episodes.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from benchmarks.common import fmt_ratio, interleave, load_average, ratio, row, stats

NAME = "training"
TARGET = 4.0  # batched episodes/s over one-example-per-step episodes/s


def run(quick: bool) -> dict[str, Any]:
    from ran.loading import load_model
    from ran.model import RanConfig, wrap
    from ran.recall import RecallTask
    from ran.reservoir import ReservoirConfig
    from ran.training import TrainConfig

    started, load_before = time.perf_counter(), load_average()
    key_counts = [6] if quick else [6, 24]
    repeats = 2 if quick else 3
    # the defaults of ran crosspass
    ran_config = RanConfig(mode="kv", reservoir=ReservoirConfig(units=512, input_scaling=0.5))
    base, tokenizer = load_model("smollm2-135m")
    model = wrap(base, ran_config)
    config = {"model": "smollm2-135m", "ran": ran_config.to_dict(), "key_counts": key_counts,
              "repeats": repeats, "steps": {}, "learning_rate": TrainConfig().learning_rate}
    results: dict[str, Any] = {"cases": []}
    summary = []
    try:
        for n_keys in key_counts:
            task = RecallTask.with_n_keys(n_keys)
            steps = max(1, (12 if quick else 48) // (n_keys * 2))  # the same episodes for both loops
            config["steps"][str(n_keys)] = steps
            runs: dict[str, list] = {"batched": [], "single": []}
            episodes_for_step = partial(_all_episodes, task)
            interleave({label: partial(_train_once, model, tokenizer, episodes_for_step,
                                       TrainConfig(steps=steps, batch_size=size, warmup_steps=0), runs[label])
                        for label, size in (("batched", 0), ("single", 1))}, repeats)
            rates = {label: [r.episodes_per_second for r in results_[1:]] for label, results_ in runs.items()}
            episodes = {label: results_[-1].episodes for label, results_ in runs.items()}
            case = {"n_keys": n_keys, "steps": steps, "episodes_per_run": episodes,
                    "episodes_per_second": {label: stats(v) for label, v in rates.items()},
                    "ratio": ratio(rates["batched"], rates["single"])}
            results["cases"].append(case)
            print(f"  training {n_keys} keys: {fmt_ratio(case['ratio'])}", flush=True)
            eps = case["episodes_per_second"]
            summary.append(row("training", f"kv K=512, {n_keys} keys, {episodes['batched']} episodes per run",
                               f"{eps['batched']['median']:.2f} ep/s",
                               f"one per step {eps['single']['median']:.2f} ep/s",
                               case["ratio"], "ep/s / one-per-step", f">= {TARGET}x",
                               case["ratio"]["median"] >= TARGET))
    finally:
        model.unwrap()
    return {"name": NAME, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": [
                "batched = ran.training.train with batch_size=0 (all keys per optimizer step); "
                "single = batch_size=1 (the original study's loop); each run trains the same episodes",
                "episodes/s from TrainResult (wall time of train(), forward + backward + optimizer)",
                "the first (warm-up) run of each loop is not counted"]}


def _all_episodes(task, step: int, generator):
    return task.episodes()


def _train_once(model, tokenizer, episodes_for_step, config, into: list) -> None:
    from ran.training import train

    into.append(train(model, tokenizer, episodes_for_step, config, progress=False))
