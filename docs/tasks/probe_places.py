"""Does one store's state hold a multi-token value's tokens well enough to name those of values never fit on?

A probe of the store side alone, with the functions ``value_read`` "decoded" uses (``ran.decoding``): the state
one store writes (the ordered read of the value's input embeddings, 8 places, gates open on exactly its tokens,
one full step of the recipe's reservoir from the zero state), and a ridge decoder of each place's token
embedding fit in closed form on the training values of a ``ran remember`` task. It then names every place of
held-out values (names, coined words, numbers, places: none of them fit on) by the nearest vocabulary token.

The question is why held-out names come back 0.00 from every trained memory (README, One memory, ``r19``-``r29``)
while held-out single words come back 0.8: is the state the limit, or the readout's training? Fit on names alone
(a few hundred distinct pieces), and on names with coined words (thousands of distinct pieces).

    python docs/tasks/probe_places.py   # writes docs/tasks/places-probe.json (about 15 minutes on 2 cores)
"""

import json
import time
from pathlib import Path

import torch

from ran.decoding import fit_place_decoder, places_right, store_states
from ran.loading import load_model
from ran.provenance import environment
from ran.remember import RECIPE, builtin_task
from ran.reservoir import Reservoir

OUT = Path(__file__).resolve().parent / "places-probe.json"  # beside this script: not a results file of ran
PLACES = 8
FITS = {"names": (("name",), 2000), "names and 2,000 coined words": (("name", "coined"), 2000),
        "names and 6,000 coined words": (("name", "coined"), 6000)}
SCORED = ("name", "coined", "number", "place")


def values_right(decoded: torch.Tensor, values: list[list[int]], unit: torch.Tensor) -> float:
    decoded = decoded.view(len(values), PLACES, -1)
    return sum(all(int((decoded[i, j] @ unit.T).argmax()) == t for j, t in enumerate(v[:PLACES]))
               for i, v in enumerate(values)) / len(values)


def main() -> None:
    started = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m")
    embeddings = model.get_input_embeddings().weight.detach().float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    reservoir = Reservoir(RECIPE.ran.reservoir, embeddings.shape[1] * PLACES)

    def states_of(values: list[list[int]]) -> torch.Tensor:
        return store_states(reservoir.step, reservoir.initial_state, embeddings, values, PLACES)

    def encode(values) -> list[list[int]]:
        return [tokenizer.encode(f" {value}", add_special_tokens=False) for value in values]

    rows = []
    for label, (kinds, coined) in FITS.items():
        # every kind, for its held-out values; the decoder fits on the training values of ``kinds`` only
        task = builtin_task(tokenizer, words=coined, kinds=tuple(dict.fromkeys((*kinds, *SCORED))))
        fitted = encode(v for kind in kinds for v in task.values[kind])
        weight, state_mean, target_mean, report = fit_place_decoder(states_of(fitted), fitted, unit, PLACES)
        row = {"fit_on": label, **report, "heldout": {}}
        for kind in SCORED:
            heldout = encode(task.heldout_values[kind])
            decoded = (states_of(heldout) - state_mean) @ weight + target_mean
            row["heldout"][kind] = {"values": len(heldout),
                                    "places_right": round(places_right(decoded, heldout, unit, PLACES), 3),
                                    "values_right": round(values_right(decoded, heldout, unit), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.write_text(json.dumps({"what": __doc__.split("\n\n")[0], "places": PLACES,
                               "reservoir": RECIPE.ran.reservoir.to_dict(), "fits": rows,
                               "seconds": round(time.perf_counter() - started), "provenance": environment()},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
