"""Generation: tokens per second of ``ReservoirModel.generate()`` (reservoir live, KV cache on) vs the bare
model's ``generate()``, and vs re-running the whole sequence for every new token (no cache), which is
how the original study's runtime generated.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import fmt_ratio, interleave, load_average, ratio, row, stats
from benchmarks.models import load_pair, prompt_ids

NAME = "generation"
TARGET = 0.9  # ran generate tokens/s over bare generate tokens/s
UNITS = 2048


def run(quick: bool) -> dict[str, Any]:
    from ran.injection import INJECTION_MODES
    from ran.reservoir import ReservoirConfig

    started, load_before = time.perf_counter(), load_average()
    new_tokens = 8 if quick else 32
    repeats = 2 if quick else 5
    modes = ["kv"] if quick else list(INJECTION_MODES)
    bare, other, tokenizer = load_pair()
    ids, mask = prompt_ids(tokenizer, "short")
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
               "pad_token_id": tokenizer.pad_token_id}
    config = {"model": "smollm2-135m", "modes": modes, "units": UNITS, "n_slots": 8,
              "prompt_tokens": int(ids.shape[1]), "new_tokens": new_tokens, "repeats": repeats, "batch": 1,
              "greedy": True,
              "reservoir": ReservoirConfig(units=UNITS).to_dict()}
    results: dict[str, Any] = {"cases": []}
    summary = []
    for mode in modes:
        results["cases"].append(_case(bare, other, mode, ids, mask, options, repeats))
        case = results["cases"][-1]
        print(f"  generation {mode:>8}: vs bare {fmt_ratio(case['ratio_vs_bare'])}, "
              f"vs rerun {fmt_ratio(case['ratio_vs_rerun'])}", flush=True)
        tps = case["tokens_per_second"]
        summary.append(row("generation", f"{mode} K={UNITS}, {new_tokens} new tokens, cache on",
                           f"{tps['ran']['median']:.1f} tok/s",
                           f"bare generate {tps['bare']['median']:.1f} tok/s",
                           case["ratio_vs_bare"], "tok/s / bare", f">= {TARGET}x",
                           case["ratio_vs_bare"]["median"] >= TARGET))
        summary.append(row("generation", f"{mode} K={UNITS}, vs re-running the sequence per token",
                           f"{tps['ran']['median']:.1f} tok/s", f"re-run {tps['rerun']['median']:.1f} tok/s",
                           case["ratio_vs_rerun"], "tok/s / re-run"))
    return {"name": NAME, "config": config, "results": results, "summary": summary, "started": started,
            "load_before": load_before, "notes": [
                "tokens/s = new tokens / wall seconds of the whole call (prefill included)",
                "same_tokens_as_rerun: cached generate() and the re-run loop produced identical tokens"]}


def _case(bare, other, mode: str, ids: torch.Tensor, mask: torch.Tensor, options: dict, repeats: int) -> dict:
    """Bare generate, ran generate and the re-run loop for one injection mode, interleaved."""
    from ran.model import RanConfig, wrap
    from ran.reservoir import ReservoirConfig

    new_tokens = options["max_new_tokens"]
    model = wrap(other, RanConfig(mode=mode, n_slots=8, reservoir=ReservoirConfig(units=UNITS)))
    state = torch.randn(1, UNITS, generator=torch.Generator().manual_seed(0)).tanh().to(common.DEVICE)
    outputs: dict[str, torch.Tensor] = {}

    def bare_generate():
        outputs["bare"] = bare.generate(input_ids=ids, attention_mask=mask, **options)

    def ran_generate():
        outputs["ran"] = model.generate(ids, attention_mask=mask, state=state, **options)

    @torch.inference_mode()
    def rerun():  # the whole sequence again for every new token, the reservoir live on every pass
        sequence = ids
        for _ in range(new_tokens):
            logits = model(sequence, attention_mask=torch.ones_like(sequence), state=state,
                           use_cache=False, logits_to_keep=1).logits
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        outputs["rerun"] = sequence

    try:
        seconds = interleave({"bare": bare_generate, "ran": ran_generate, "rerun": rerun}, repeats)
    finally:
        model.unwrap()
    rates = {name: [new_tokens / s for s in values] for name, values in seconds.items()}
    return {
        "mode": mode, "units": UNITS,
        "tokens_per_second": {name: stats(values) for name, values in rates.items()},
        "seconds": {name: stats(values) for name, values in seconds.items()},
        "ratio_vs_bare": ratio(rates["ran"], rates["bare"]),
        "ratio_vs_rerun": ratio(rates["ran"], rates["rerun"]),
        "same_tokens_as_rerun": bool(torch.equal(outputs["ran"], outputs["rerun"])),
    }
