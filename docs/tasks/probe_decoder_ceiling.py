"""How whole can the nearest write's fixed decoder name values it never saw? Its ceiling by reservoir size.

The recipe's read (``ran remember``: the ordered read of a value's input embeddings, eight places of 576, into a
fixed random reservoir; a ridge decoder fit in closed form on the training values' store states names each place's
token) can return a held-out value only where the decoder alone names every one of its tokens and the stop after it:
the record's ``decoder.heldout_whole``. At K = 2048 that is 0.43 for made-up names (4-8 tokens) and 0.77 for coined
words, where the trained model recalls names 0.45-0.68 (README, One memory). This probe fits the decoder as training
does (``ReservoirModel.fit_value_decoder`` on the built-in task's 15,000 training values, the chat format's stop
after each) for reservoirs of each size in ``UNITS`` and, as a second fit set, the same values plus ``EXTRA`` strings
of 1-7 vocabulary tokens drawn uniformly from the tokens that no held-out value contains (more distinct pieces at
every place, none of the held-out ones). Untrained: the decoder is fixed before training, so this is the ceiling of
any artifact with that reservoir.

    python docs/tasks/probe_decoder_ceiling.py   # writes docs/tasks/decoder-ceiling.json, ~10 min on 2 cores
"""

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ran.loading import load_model
from ran.model import wrap
from ran.passes import Renderer
from ran.provenance import environment
from ran.remember import RECIPE, builtin_task

OUT = Path(__file__).resolve().parent / "decoder-ceiling.json"  # beside this script: not a results file of ran
UNITS = (2048, 4096)
EXTRA = 20000  # random vocabulary strings added to the fit in the second arm of each size
SEED = 0  # the reservoir's seed (the recipe's seed 0)


def random_strings(allowed: torch.Tensor, count: int, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (count,), generator=generator)
    return [allowed[torch.randint(len(allowed), (int(n),), generator=generator)].tolist() for n in lengths]


def main() -> None:
    base, tokenizer = load_model("smollm2-135m")
    task = builtin_task(tokenizer, kinds=RECIPE.kinds)
    stop = Renderer(RECIPE.format, tokenizer).silence

    def encoded(items) -> list[list[int]]:
        return [tokenizer.encode(f" {value}", add_special_tokens=False) for value in items]

    values = encoded(task.training_values())
    heldout = {kind: encoded(task.heldout_values[kind]) for kind in task.kinds}
    heldout_pieces = {token for group in heldout.values() for value in group for token in value}
    allowed = torch.tensor([t for t in range(len(tokenizer)) if t not in heldout_pieces and t != stop])
    extra = random_strings(allowed, EXTRA)
    arms = []
    for units in UNITS:
        for fit_set, fit_values in (("training values", values), (f"+ {EXTRA} random strings", values + extra)):
            started = time.time()
            config = replace(RECIPE.ran, reservoir=replace(RECIPE.ran.reservoir, units=units, seed=SEED))
            model = wrap(base, config)
            report = model.fit_value_decoder(fit_values, end=stop, heldout=heldout)
            model.unwrap()
            arms.append({"units": units, "fit": fit_set, **report, "seconds": round(time.time() - started, 1)})
            print(json.dumps(arms[-1]), flush=True)
    OUT.write_text(json.dumps({
        "probe": "decoder-ceiling", "environment": environment(), "recipe_reservoir": asdict(RECIPE.ran.reservoir),
        "training_values": len(values), "heldout_values": {k: len(v) for k, v in heldout.items()},
        "heldout_pieces_excluded": len(heldout_pieces), "arms": arms}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
