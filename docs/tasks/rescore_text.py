"""Held-out recall of a `ran remember` results file, scored by the reply's text as the memory task scores it now.

Before 6755ad2 a reply was exact when its tokens were the target's; since, when its decoded text, the whitespace
around it aside, is the value and it stops there (``ran.tasks.memory.said_exactly``): "3133" said without the space
token " 3133" begins with, or "Abbotsley Green" without the leading space a store that opens with it never had, is
the value. This rescores the saved predictions of an older file both ways, per kind, phrasing split and delay (mean
[min] over seeds), without running the model:

    python docs/tasks/rescore_text.py results/memory/diagnostics/r68.json

A saved reply is decoded with its special tokens skipped and the run stops it at its first stop token, so the text
read here is the reply up to that stop.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

KINDS = ("word", "name", "number", "place", "coined")


def text_exact(prediction: dict) -> bool:
    return prediction["stopped"] and prediction["reply"].strip() == prediction["value"].strip()


def table(results: dict) -> list[dict]:
    """One row per (phrasing split, delay) of held-out values: each kind's recall, by text and as scored."""
    cells: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for run in results["runs"]:
        for prediction in run["predictions"]:
            if prediction["values"] == "heldout":
                key = (prediction["phrasing"], prediction["delay"])
                cells[key][(prediction["kind"], run["seed"])].append(
                    (text_exact(prediction), bool(prediction["exact"])))
    rows = []
    for (phrasing, delay), by_seed in sorted(cells.items()):
        row = {"phrasing": phrasing, "delay": delay}
        for kind in KINDS:
            seeds = [scores for (k, _), scores in sorted(by_seed.items()) if k == kind]
            if seeds:
                text = [sum(s[0] for s in scores) / len(scores) for scores in seeds]
                scored = [sum(s[1] for s in scores) / len(scores) for scores in seeds]
                row[kind] = {"text": (sum(text) / len(text), min(text)), "scored": sum(scored) / len(scored)}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a ran remember results file (with its predictions)")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    print(f"{args.results} (commit {results['git']['commit'][:7]}, seeds {[r['seed'] for r in results['runs']]}): "
          "held-out values, by text mean [min] (as scored)")
    for row in table(results):
        kinds = [f"{k} {row[k]['text'][0]:.2f} [{row[k]['text'][1]:.2f}] ({row[k]['scored']:.2f})"
                 for k in KINDS if k in row]
        print(f"{row['phrasing']:>8} phrasings, D = {row['delay']:>2}: " + " | ".join(kinds))


if __name__ == "__main__":
    main()
