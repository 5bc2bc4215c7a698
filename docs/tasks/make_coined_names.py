"""Write docs/tasks/names-coined-20k.json: a `ran remember --task` file of names made of thousands of pieces.

The built-in training names combine about 60 first names and 60 surnames, and the readout learned them as
a lookup (README, "One memory": r19). These training names are two coined words each ("Shiiffssem Altrup":
a capitalised first piece, then 1-3 lower-case pieces; ``ran.tasks.vocab.coined_words``), drawn over
thousands of the tokenizer's pieces, so that a run of 600 steps sees each name about once (word phrases
generalised that way: r48). The held-out names are the built-in held-out ones ("Evander Jorgensen"), and
no piece of them, nor of the demo's "Orsolya Vance", is a training piece: a held-out name shares no token
with any training name.

    python docs/tasks/make_coined_names.py   # rewrites the file; the same seed gives the same file
"""

import argparse
import json
from pathlib import Path

from ran.loading import load_tokenizer
from ran.tasks.memory import builtin_values
from ran.tasks.vocab import coined_words

OUT = Path(__file__).resolve().parent / "names-coined-20k.json"
DEMO_NAME = "Orsolya Vance"  # docs/demo/memory.txt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="training names (default: 20000)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default: {OUT.name} here)")
    args = parser.parse_args()
    tokenizer = load_tokenizer()
    heldout = list(builtin_values("name", 200, heldout=True))
    assert DEMO_NAME not in heldout
    pieces = {token for value in [*heldout, DEMO_NAME]
              for token in tokenizer.encode(f" {value}", add_special_tokens=False)}
    coined, _ = coined_words(tokenizer, 3 * args.count, 1, exclude_tokens=pieces)
    names = [value for value in coined if value.count(" ") == 1][:args.count]  # two words, as a name has
    assert len(names) == args.count, f"only {len(names)} two-word values: coin more"
    for name in names:
        assert not pieces & set(tokenizer.encode(f" {name}", add_special_tokens=False)), name
    args.out.write_text(json.dumps({"kinds": ["name"], "values": {"name": names},
                                    "heldout_values": {"name": heldout}}, indent=0) + "\n")
    longest = max(len(tokenizer.encode(f" {v}", add_special_tokens=False)) for v in names + heldout)
    print(f"wrote {args.out}: {len(names)} training names (e.g. {', '.join(names[:3])}), {len(heldout)} held out "
          f"(e.g. {', '.join(heldout[:3])}); the longest has {longest} tokens")


if __name__ == "__main__":
    main()
