"""Does a timed artifact keep appointments asked for in words training never read? A probe through `ran run`.

The battery's timed task trains on one phrasing, "In N turns, say W." This probe drives a trained timed artifact
(``ran battery --tasks timed ... --save DIR``) through `ran run`, the live surface, with that phrasing and five
others, each with N = 2, 5 and 8 and five values: three of the artifact's held-out words (from its ``run.json``)
and two names. Every appointment is the instruction, ``/reset context``, then N + 2 idle ticks, and the session is
reset (``/reset all``) before the next one. Each phrasing runs twice: carried, and the control, whose state is
wiped with the context (``/reset state``). Scored per phrasing and condition: ``on_time_gate`` (silent before tick
N, speaking on it), ``word_right`` (the reply on tick N is the value), ``on_time`` (both) and ``silent_after``
(silent on tick N + 1). Inference only, a few minutes on 2 cores:

    python docs/tasks/probe_appointment_phrasings.py DIR/battery-readout-seed0   # writes appointment-phrasings.json
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ran.provenance import environment

OUT = Path(__file__).resolve().parent / "appointment-phrasings.json"  # beside this script: not a results file of ran
PHRASINGS = (
    "In {n} turns, say {value}.",  # training's
    "In {n} turns, please say {value}.",
    "Say {value} in {n} turns.",
    "After {n} turns, say the word {value}.",
    "In {n} turns, remind me about {value}.",
    "In {n} turns, remind me to call {value}.",
)
DUES = (2, 5, 8)
NAMES = ("Ada", "Oscar")
EXTRA_TICKS = 2  # ticks after the due one


def script(phrasing: str, values: list[str], control: bool) -> tuple[str, list[tuple[int, str]]]:
    lines, appointments = [], []
    for n in DUES:
        for value in values:
            lines += [phrasing.format(n=n, value=value), *(["/reset state"] if control else []), "/reset context",
                      f"/tick {n + EXTRA_TICKS}", "/reset all"]
            appointments.append((n, value))
    return "\n".join(lines) + "\n", appointments


def appointments_of(events: list[dict]) -> list[list[dict]]:
    """The idle ticks after each prompted pass, in order."""
    runs = []
    for event in events:
        if event.get("kind") == "prompt":
            runs.append([])
        elif event.get("kind") == "idle":
            runs[-1].append(event)
    return runs


def score(ticks: list[dict], due: int, value: str) -> dict:
    spoke = [bool(tick["emitted"]) for tick in ticks]
    on_time_gate = spoke[due - 1] and not any(spoke[:due - 1])
    said = ticks[due - 1]["reply"].strip()
    return {"due": due, "value": value, "spoke": spoke, "said": said, "on_time_gate": on_time_gate,
            "word_right": said == value, "on_time": on_time_gate and said == value,
            "silent_after": not spoke[due]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="a timed artifact (ran battery --save DIR: DIR/battery-readout-seedN)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    run = json.loads((Path(args.artifact) / "run.json").read_text())
    timed = next(task for task in run["task"]["tasks"] if task["name"] == "timed")
    trained = set(timed["words"])
    values = [*timed["heldout_words"][:3], *NAMES]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for phrasing in PHRASINGS:
            row = {"phrasing": phrasing}
            for condition in ("carried", "control"):
                text, wanted = script(phrasing, values, control=condition == "control")
                path = Path(scratch) / f"{len(rows)}-{condition}.txt"
                path.write_text(text)
                out = Path(scratch) / f"{len(rows)}-{condition}"
                subprocess.run([sys.executable, "-m", "ran", "run", "--session", f"s{len(rows)}{condition}",
                                "--sessions-dir", scratch, "--artifact", args.artifact, "--script", str(path),
                                "--max-new-tokens", "3", "--out", str(out), "--quiet"], check=True,
                               stdout=subprocess.DEVNULL)
                events = json.loads(next(out.glob("*.json")).read_text())["events"]
                scored = [score(ticks, due, value)
                          for ticks, (due, value) in zip(appointments_of(events), wanted, strict=True)]
                row[condition] = {metric: sum(s[metric] for s in scored) / len(scored)
                                  for metric in ("on_time", "on_time_gate", "word_right", "silent_after")}
                row[condition]["appointments"] = scored
            rows.append(row)
            print(f"{phrasing:45s} carried on time {row['carried']['on_time']:.2f} (gate "
                  f"{row['carried']['on_time_gate']:.2f}, word {row['carried']['word_right']:.2f}); control "
                  f"{row['control']['on_time']:.2f} (gate {row['control']['on_time_gate']:.2f})")
    Path(args.out).write_text(json.dumps({
        "experiment": "appointment-phrasings", **environment(), "artifact": args.artifact,
        "artifact_git": run.get("git"), "dues": DUES, "values": values,
        "values_in_training": sorted(set(values) & trained), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
