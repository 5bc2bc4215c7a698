"""One table from `ran eval --json` files of a memory artifact's seeds: held-out recall per kind, mean [min] over seeds.

`ran eval DIR/memory-seedS --json F` scores one seed's artifact; this reads one such file a seed (or a `ran remember`
results file, every run in it) and prints, per phrasing split and delay, each kind's held-out recall by the reply's
text (``rescore_text.text_exact``, the memory task's own rule) as mean [min] over the seeds, beside the largest wiped
recall of any kind in that cell; then the stop rate, agreement with the base model and the perplexity rise (carried
and wiped), which evaluation distractors opened the write, and recall where no pass between opened the write against
where one did:

    python docs/tasks/eval_seeds.py results/memory/diagnostics/r68-seed{0,1,2}-pool.json
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rescore_text import KINDS, table  # noqa: E402


def as_eval(run: dict) -> dict:
    """One run of a `ran remember` results file in the shape of a `ran eval --json` file (the fields read here)."""
    wiped = [{**group, "recall": group["recall"]["wiped"]} for group in run["groups"]]
    return {"scores": {"carried": {"predictions": run["predictions"], "stopped": run["stopped"]["carried"]},
                       "wiped": {"groups": wiped}},
            "harm": run["harm"], "switches": run["switches"], "recall_by_overwrite": run["recall_by_overwrite"],
            "environment": {"git": run["git"]}}


def wiped_max(files: list[dict]) -> dict[tuple, float]:
    """The largest wiped recall of any kind and seed, per (phrasing split, delay) of held-out values."""
    worst: dict[tuple, float] = defaultdict(float)
    for results in files:
        for group in results["scores"]["wiped"]["groups"]:
            if group["values"] == "heldout":
                key = (group["phrasing"], group["delay"])
                worst[key] = max(worst[key], group["recall"])
    return worst


def spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f} [{min(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+",
                        help="ran eval --json files, one per seed, or a ran remember results file (every seed)")
    args = parser.parse_args()
    files = []
    for path in args.files:
        results = json.loads(path.read_text())
        files += [as_eval(run) for run in results["runs"]] if "runs" in results else [results]
    commits = sorted({results["environment"]["git"]["commit"][:7] for results in files})
    print(f"{len(files)} seeds, commit {', '.join(commits)}; held-out values by text, mean [min] over seeds")
    runs = {"runs": [{"seed": index, "predictions": results["scores"]["carried"]["predictions"]}
                     for index, results in enumerate(files)]}
    wiped = wiped_max(files)
    for row in table(runs):
        kinds = [f"{k} {row[k]['text'][0]:.2f} [{row[k]['text'][1]:.2f}]" for k in KINDS if k in row]
        print(f"{row['phrasing']:>8} phrasings, D = {row['delay']:>2}: " + " | ".join(kinds)
              + f" | wiped max {wiped[(row['phrasing'], row['delay'])]:.2f}")
    agreement = {c: [r["harm"]["agreement"][c]["agreement"] for r in files] for c in ("carried", "wiped")}
    rise = {c: [r["harm"]["perplexity"]["rise"][c] for r in files] for c in ("carried", "wiped")}
    print(f"replies stop {spread([r['scores']['carried']['stopped'] for r in files])}; agreement with the base model "
          f"carried {spread(agreement['carried'])}, wiped {spread(agreement['wiped'])}; perplexity rise carried "
          f"{spread(rise['carried'])}, wiped {spread(rise['wiped'])}")
    for index, results in enumerate(files):
        opened = [s for s in results["switches"] if s["pass"] == "distractor"]
        kept = {row["delay"]: row for row in results["recall_by_overwrite"]}
        print(f"seed file {index}: distractors that opened the write {[o for s in opened for o in s['overwrites']]}"
              "; recall where none opened / one opened it: "
              + ", ".join(f"D = {d} {row['kept']['recall']:.2f} ({row['kept']['n']}) / "
                          f"{row['overwritten']['recall']:.2f} ({row['overwritten']['n']})"
                          for d, row in sorted(kept.items())))


if __name__ == "__main__":
    main()
