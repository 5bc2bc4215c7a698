"""Where a memory artifact's misses come from: a breakdown of `ran eval --json` files, and the read gate on the
first token of every store phrasing.

Every carried miss of a held-out value (the reply is not the value and the stop token) falls in the first of:

    overwritten     a pass between store and recall opened the write (``recall_by_overwrite``'s split: the pass's
                    text is in a switch row's ``overwrites``), so the state holds that pass, not the value
    value opens     the store begins with the value: without its leading space the value is other tokens
                    ("cattle" is "c" + "attle", " cattle" one token), which the nearest write's decoder never fit
                    (answering such a value as stored, with the decoder fit on both forms, is the memory task's
                    answer_as_stored setting: r69, r70 and r71 in the README, not the recipe)
    first token     the reply is the value said more than once, or begins with a piece of the message's first word:
                    a half-open read gate on the message's first token ("Don't ...", "Guess ...") counts as a place,
                    so that token, or a second copy of the value, takes the first place
    other           the rest

With ``--artifact`` it also loads the artifact and measures its read gate on the first token of each store phrasing
whose first token is not the value (held-out value of each kind), training and held-out phrasings apart. Inference
only; seconds per file and about two minutes for the gates on 2 CPU cores.

    ran eval DIR/memory-seed0 --json F0   # likewise F1, F2 for seeds 1 and 2
    python docs/tasks/probe_misses.py F0 F1 F2 --artifact DIR/memory-seed0   # writes docs/tasks/misses.json
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from ran.provenance import environment
from ran.switches import overwriting_texts

OUT = Path(__file__).resolve().parent / "misses.json"  # beside this script: not a results file of ran
CLASSES = ("overwritten", "value opens", "first token", "other")


def miss_class(prediction: dict, overwrites: set[str]) -> str:
    if any(text in overwrites for text in prediction["between"]):
        return "overwritten"
    if prediction["store"].startswith(prediction["value"]):
        return "value opens"
    said, value = prediction["reply"].split(), prediction["value"].split()
    first_word = prediction["store"].split()[0]
    if said and ((len(said) > len(value) and said == value * (len(said) // len(value)))
                 or (said[0] != value[0] and first_word.startswith(said[0]))):
        return "first token"
    return "other"


def breakdown(report: dict) -> dict:
    overwrites = overwriting_texts(report["switches"])
    cells: dict[str, Counter] = {}
    examples: dict[str, list] = {name: [] for name in CLASSES}
    for prediction in report["scores"]["carried"]["predictions"]:
        if prediction["values"] != "heldout":
            continue
        where = f"{prediction['kind']}/{prediction['phrasing']} phrasing/D={prediction['delay']}"
        cell = cells.setdefault(where, Counter())
        cell["n"] += 1
        if prediction["exact"]:
            continue
        name = miss_class(prediction, overwrites)
        cell[name] += 1
        if len(examples[name]) < 6:
            examples[name].append({k: prediction[k] for k in ("kind", "delay", "value", "store", "reply")})
    total = Counter()
    for cell in cells.values():
        total.update(cell)
    return {"artifact": report["artifact"], "overwrites": sorted(overwrites),
            "misses": {name: total[name] for name in CLASSES}, "episodes": total["n"],
            "cells": {where: dict(cell) for where, cell in sorted(cells.items())}, "examples": examples}


@torch.no_grad()
def first_token_gates(artifact: str) -> dict:
    from ran.artifact import artifact_pass_format
    from ran.episodes import Episode, Pass, render
    from ran.loading import load_model
    from ran.model import ReservoirModel
    from ran.passes import Renderer
    from ran.tasks.memory import SLOT, builtin_values
    from ran.tasks.memory_texts import HELDOUT_STORE_TEMPLATES, STORE_TEMPLATES

    saved = json.loads((Path(artifact) / "run.json").read_text())
    base, tokenizer = load_model(saved["model"])
    model = ReservoirModel.from_pretrained(base, artifact)
    renderer = Renderer(artifact_pass_format(artifact), tokenizer)
    rows = {}
    for split, pools in (("trained", STORE_TEMPLATES), ("heldout", HELDOUT_STORE_TEMPLATES)):
        gates = []
        for kind, templates in pools.items():
            value = builtin_values(kind, 1, True)[0] if kind in ("name", "number", "place") else "kettle"
            for template in templates:
                if template.startswith(SLOT):
                    continue
                text = template.replace(SLOT, value)
                prompt = render(Episode((Pass(text),)), renderer)[0].prompt
                output = model(torch.tensor([prompt]), state=model.reservoir.initial_state(1), read_only=True)
                opened = torch.sigmoid(output.read_logits[0])
                first = message_start(prompt, tokenizer)
                gates.append({"kind": kind, "template": template, "first_token": tokenizer.decode([prompt[first]]),
                              "gate": round(float(opened[first]), 3)})
        opened = [g for g in gates if g["gate"] > 0.25]
        rows[split] = {"phrasings": len(gates), "mean": round(sum(g["gate"] for g in gates) / len(gates), 3),
                       "over_a_quarter": opened}
    return rows


def message_start(prompt: list[int], tokenizer) -> int:
    """Where the user's message begins in a chat-rendered prompt: after the last user turn's "<|im_start|>user\\n"."""
    header = tokenizer.encode("<|im_start|>user\n", add_special_tokens=False)
    for start in range(len(prompt) - len(header), -1, -1):
        if list(prompt[start:start + len(header)]) == header:
            return start + len(header)
    raise ValueError("no user turn in the rendered prompt: the probe reads chat-format artifacts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="ran eval --json files of a memory artifact (one per seed)")
    parser.add_argument("--artifact", help="also measure this artifact's read gate on each store's first token")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    files = [breakdown(json.loads(Path(path).read_text())) for path in args.reports]
    pooled = Counter()
    for item in files:
        pooled.update(item["misses"])
    result = {"reports": files, "misses": dict(pooled),
              "episodes": sum(item["episodes"] for item in files),
              "gates": first_token_gates(args.artifact) if args.artifact else None, "environment": environment()}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"held-out values: {result['episodes']} episodes, misses by class: {dict(pooled)}")
    if result["gates"]:
        for split, row in result["gates"].items():
            print(f"read gate on the first token, {split} store phrasings: mean {row['mean']} over "
                  f"{row['phrasings']}; over 0.25 on {len(row['over_a_quarter'])}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
