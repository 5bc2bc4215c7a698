"""Write docs/tasks/names-diverse.json: a `ran remember --task` file whose training names are made of syllables.

The built-in training names combine about 60 first names and 60 surnames, so a readout can learn them as a
lookup of about 120 pieces. These 1000 training names are drawn syllable by syllable (seeded), so their pieces
are thousands of different strings and tokenisations; the held-out names stay the built-in held-out ones
(held-out first names and surnames, e.g. "Evander Jorgensen"), which no training name contains.

    python docs/tasks/make_diverse_names.py   # rewrites the file; the same seed gives the same file
"""

import json
from pathlib import Path

import numpy as np

from ran.tasks.memory import builtin_values
from ran.tasks.memory_texts import FIRST_NAMES, SURNAMES

ONSETS = "b br c d f g h j k l m n p r s t v w z".split() + [""]
VOWELS = "a e i o u a e i o".split()
CODAS = ["", "", "", "n", "r", "l", "s", "m"]


def syllable(rng: np.random.Generator) -> str:
    return "".join(str(rng.choice(part)) for part in (ONSETS, VOWELS, CODAS))


def word(rng: np.random.Generator) -> str:
    return "".join(syllable(rng) for _ in range(int(rng.integers(2, 4)))).capitalize()  # 2-3 syllables


def main(count: int = 1000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    heldout = builtin_values("name", 200, heldout=True)
    held_pieces = {piece for name in heldout for piece in name.split()} | set(FIRST_NAMES) | set(SURNAMES)
    names: dict[str, None] = {}
    while len(names) < count:
        first, last = word(rng), word(rng)
        if first not in held_pieces and last not in held_pieces:
            names[f"{first} {last}"] = None
    path = Path(__file__).with_name("names-diverse.json")
    path.write_text(json.dumps({"kinds": ["name"], "values": {"name": list(names)},
                                "heldout_values": {"name": list(heldout)}}, indent=1) + "\n")
    print(f"wrote {path}: {count} training names (e.g. {', '.join(list(names)[:3])}), {len(heldout)} held out")


if __name__ == "__main__":
    main()
