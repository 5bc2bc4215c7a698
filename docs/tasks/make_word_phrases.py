"""Write docs/tasks/word-phrases.json: a `ran remember --task` file whose values are 2-3 vocabulary words.

Coined words (``--kinds coined``) vary each place of a value over thousands of pieces, but pieces that mean
nothing, and the readout did not learn them (README, "One memory": r23, r25). These values vary each place
over thousands of words the model knows: 2,000 training values of 2-3 of the recipe's training vocabulary
words ("candle meadow", one token each), and 200 held-out values made of its held-out words only. They use
the coined kind's phrasings ("The password for the wifi is {value}.").

    python docs/tasks/make_word_phrases.py   # rewrites the file; the same seed gives the same file
    python docs/tasks/make_word_phrases.py --count 20000 --out docs/tasks/word-phrases-20k.json

With 2,000 training values a 600-step run sees each about ten times; ``--count 20000`` writes a file whose
training values a run of that length sees about once each (its 200 held-out values are another draw from the
same held-out words).
"""

import argparse
import json
from pathlib import Path

import numpy as np

from ran.loading import load_tokenizer
from ran.remember import builtin_task

OUT = Path(__file__).resolve().parent / "word-phrases.json"


def phrases(words: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    chosen: dict[str, None] = {}
    while len(chosen) < count:
        picked = rng.choice(len(words), int(rng.integers(2, 4)), replace=False)
        chosen[" ".join(words[int(i)] for i in picked)] = None
    return list(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="training values (default: 2000)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default: {OUT.name} here)")
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    task = builtin_task(tokenizer, kinds=("word",))
    rng = np.random.default_rng(0)
    values = phrases(task.values["word"], args.count, rng)
    heldout = phrases(task.heldout_values["word"], 200, rng)
    for value in values + heldout:  # one token per word, so place j holds word j
        assert len(tokenizer.encode(f" {value}", add_special_tokens=False)) == len(value.split()), value
    args.out.write_text(json.dumps({"kinds": ["coined"], "values": {"coined": values},
                                    "heldout_values": {"coined": heldout}}, indent=0) + "\n")
    print(f"wrote {args.out}: {len(values)} training and {len(heldout)} held-out values, e.g. {values[0]!r}, "
          f"{heldout[0]!r}")


if __name__ == "__main__":
    main()
