"""Write docs/tasks/appointments-read.jsonl: the timed task's appointments as a task file, with read labels.

The example task file (appointments.jsonl: four names, twelve training episodes) does not learn (README, "Tasks
written as data"). This one carries what made the timed task learn: a thousand words, every N from 1 to 8, seven
phrasings, and read labels (``read``: the word, for the held units; ``running_read``: "N turns", for the running
units' clock). Each appointment is the instruction, a wiped context on the first tick, silence until the due tick,
the word and the end of the reply on it, then three silent ticks; a sixth of the training episodes are idle ticks
from a zero state, all silent. Held out: 96 words training never says, 64 in training's phrasings (8 per N)
and 32 in four phrasings training never reads (4 per N).

    python docs/tasks/make_appointments_read.py   # rewrites the file; the same seed and tokenizer give the same file

The words are single tokens of the default model's tokenizer (``ran.tasks.vocab``), as ``timed.word_pool`` draws.
"""

import json
from pathlib import Path

import numpy as np

from ran.loading import load_tokenizer
from ran.tasks.texts import template_words
from ran.tasks.vocab import KeyPool, resolve_keys

OUT = Path(__file__).with_name("appointments-read.jsonl")
SEED = 0
TURNS = range(1, 9)
SILENT_AFTER = 3  # silent ticks after the due one
TRAINING, HELDOUT, QUIET = 1000, 96, 200  # training words, held-out words, quiet training episodes
PHRASINGS = ["In {turns} turn{s}, remind me to call {word}.", "In {turns} turn{s}, remind me about {word}.",
             "Say {word} in {turns} turn{s}.", "After {turns} turn{s}, say the word {word}.",
             "Remind me of {word} in {turns} turn{s}.", "In {turns} turn{s}, tell me {word}.",
             "Wait {turns} turn{s}, then say {word}."]
HELDOUT_PHRASINGS = ["In {turns} turn{s}, please say {word}.", "Please remind me about {word} in {turns} turn{s}.",
                     "{turns} turn{s} from now, say {word}.", "In {turns} turn{s}, I need to hear {word}."]


def appointment(word: str, turns: int, phrasing: str, group: str, heldout: bool = False) -> dict:
    """The instruction (its word and "N turns" labelled for the two reads), then its ticks."""
    fields = {"turns": turns, "s": "" if turns == 1 else "s", "word": word}
    # " word": a label marks the first place its text occurs, and "min" occurs in "Remind" before the word itself
    instruction = {"text": phrasing.format(**fields), "read": f" {word}",
                   "running_read": "{turns} turn{s}".format(**fields)}
    ticks = [{"idle": True, "speak": index == turns} for index in range(1, turns + 1 + SILENT_AFTER)]
    ticks[0]["wipe"] = True  # from the first tick on, only the carried state knows the appointment
    ticks[turns - 1]["target"] = f" {word}<stop>"
    return {**({"heldout": True} if heldout else {}), "group": group, "passes": [instruction, *ticks]}


def quiet(ticks: int) -> dict:
    """No appointment: idle ticks from a zero state, every one silent (the first labels the reads: nothing)."""
    passes = [{"idle": True, "speak": False} for _ in range(ticks)]
    passes[0].update(read="", running_read="")
    return {"group": "quiet", "passes": passes}


def main() -> None:
    rng = np.random.default_rng(SEED)
    texts = [*PHRASINGS, *HELDOUT_PHRASINGS]
    words, heldout = resolve_keys(KeyPool(source="vocab", train=TRAINING, heldout=HELDOUT, split_seed=SEED),
                                  load_tokenizer(), template_words(texts, "{word}"))
    lines = [appointment(word, int(rng.integers(1, 9)), str(rng.choice(PHRASINGS)), "training") for word in words]
    lines += [quiet(int(rng.integers(1, 9 + SILENT_AFTER))) for _ in range(QUIET)]
    lines = [lines[i] for i in rng.permutation(len(lines))]
    for index, word in enumerate(heldout):
        turns = TURNS[index % len(TURNS)]
        if index < 64:  # 8 per N, in training's phrasings
            lines.append(appointment(word, turns, PHRASINGS[index % len(PHRASINGS)], f"N={turns}", heldout=True))
        else:  # 4 per N, each held-out phrasing once per N
            phrasing = HELDOUT_PHRASINGS[(index // len(TURNS)) % len(HELDOUT_PHRASINGS)]
            lines.append(appointment(word, turns, phrasing, "held-out phrasing", heldout=True))
    OUT.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    print(f"wrote {OUT}: {len(lines)} episodes")


if __name__ == "__main__":
    main()
