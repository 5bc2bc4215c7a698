"""Forward overhead: one pass of wrapped SmolLM2 (each mode, several reservoir sizes) vs the bare model.

The baseline is a second, never-wrapped copy of the model called on the same prompt, alternating with
the wrapped one. An A/A pair (both copies bare) measures how far two identical models differ here.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import fmt_ratio, interleave, load_average, ratio, row, stats
from benchmarks.models import load_pair, prompt_ids

NAME = "forward"
TARGET = 1.05  # kv mode at K=2048: wrapped / bare seconds per pass


def run(quick: bool) -> dict[str, Any]:
    from ran.injection import INJECTION_MODES
    from ran.model import RanConfig, wrap
    from ran.reservoir import ReservoirConfig

    started, load_before = time.perf_counter(), load_average()
    sizes = [2048] if quick else [512, 2048, 16384]
    repeats = {"short": 5, "long": 3} if quick else {"short": 21, "long": 9}
    config = {"model": "smollm2-135m", "modes": list(INJECTION_MODES), "units": sizes, "n_slots": 8,
              "prompts": {}, "repeats": repeats, "batch": 1, "logits_to_keep": 1,
              "reservoir": ReservoirConfig().to_dict(), "state": "fixed random state, passed explicitly"}
    bare, other, tokenizer = load_pair()
    prompts = {which: prompt_ids(tokenizer, which) for which in ("short", "long")}
    config["prompts"] = {which: int(ids.shape[1]) for which, (ids, _) in prompts.items()}

    results: dict[str, Any] = {"cases": []}
    with torch.inference_mode():
        for which, (ids, mask) in prompts.items():  # A/A: two bare copies
            inputs = {"input_ids": ids, "attention_mask": mask, "logits_to_keep": 1}
            seconds = interleave({"bare": partial(bare, **inputs), "copy": partial(other, **inputs)},
                                 repeats[which])
            results["cases"].append({"mode": "none (A/A)", "units": 0, "prompt": which,
                                     "seconds": {k: stats(v) for k, v in seconds.items()},
                                     "ratio": ratio(seconds["copy"], seconds["bare"])})
        for mode in INJECTION_MODES:
            for units in sizes:
                ran_config = RanConfig(mode=mode, n_slots=8, reservoir=ReservoirConfig(units=units))
                build = time.perf_counter()
                model = wrap(other, ran_config)
                build = time.perf_counter() - build
                state = torch.randn(1, units, generator=torch.Generator().manual_seed(0)).tanh().to(common.DEVICE)
                try:
                    for which, (ids, mask) in prompts.items():
                        seconds = interleave(
                            {"bare": partial(bare, input_ids=ids, attention_mask=mask, logits_to_keep=1),
                             "ran": partial(model, ids, attention_mask=mask, state=state, logits_to_keep=1)},
                            repeats[which])
                        results["cases"].append({
                            "mode": mode, "units": units, "prompt": which, "wrap_seconds": round(build, 3),
                            "seconds": {k: stats(v) for k, v in seconds.items()},
                            "ratio": ratio(seconds["ran"], seconds["bare"]),
                        })
                        print(f"  forward {mode:>8} K={units:<6} {which:>5}: "
                              f"{fmt_ratio(results['cases'][-1]['ratio'])}", flush=True)
                finally:
                    model.unwrap()

    summary = []
    for case in results["cases"]:
        if case["mode"] == "none (A/A)" or (case["mode"] == "kv" and case["units"] == 2048):
            targeted = case["mode"] == "kv"
            tokens = config["prompts"][case["prompt"]]
            summary.append(row(
                "forward", f"{case['mode']} K={case['units']} {case['prompt']} ({tokens} tok)"
                if case["units"] else f"bare vs bare copy, {case['prompt']} prompt ({tokens} tok)",
                f"{case['seconds'].get('ran', case['seconds'].get('copy'))['median'] * 1e3:.1f} ms",
                f"{case['seconds']['bare']['median'] * 1e3:.1f} ms", case["ratio"], "time / bare",
                f"<= {TARGET}x" if targeted else "", case["ratio"]["median"] <= TARGET if targeted else None))
    for case in results["cases"]:
        if case["mode"] != "none (A/A)" and not (case["mode"] == "kv" and case["units"] == 2048):
            summary.append(row("forward", f"{case['mode']} K={case['units']} {case['prompt']}",
                               f"{case['seconds']['ran']['median'] * 1e3:.1f} ms",
                               f"{case['seconds']['bare']['median'] * 1e3:.1f} ms", case["ratio"],
                               "time / bare"))
    return {"name": NAME, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": [
                "bare = a second copy of the model that is never wrapped; "
                "A/A rows compare the two bare copies",
                "ratio = median(wrapped seconds) / median(bare seconds); [min, max] over paired rounds"]}
