"""What the running units read of silence's passes, in saved battery artifacts: is the release read?

Silence (``ran.tasks.silence``) trains the running units' own read (``--running-read``) with
``silence.running_read={text}``: every token of the hold, of each statement and of the release is to be read, and
the gate head, reading the running units alone (``--gate-reads running``), must tell from them whether a hold is on.
This probe runs silence's evaluation episodes through each artifact (the carried state, as ``ran eval`` scores it)
and reports, per kind of pass (the hold, a statement under it, the release, a statement after the release, the
first statement of a free episode, a later one), the running read's gates on the tokens its labels mark to read:
their mean and the share open (> 0.5); and the gate head's decisions right on those passes.

    python docs/tasks/probe_silence_reads.py [NAME=]DIR/battery-readout-seed0 [...] --json docs/tasks/silence-reads.json

(each artifact reported under NAME, or its path).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

import ran.model
from ran.artifact import artifact_pass_format
from ran.cli.eval import saved_run
from ran.episodes import render
from ran.loading import load_model
from ran.model import ReservoirModel
from ran.passes import Renderer
from ran.provenance import environment
from ran.tasks.silence import PASS_KINDS, pass_kinds
from ran.training import run_episodes

KINDS = tuple(kind for kind in PASS_KINDS if kind != "tick")  # the kinds of pass the running read is to read


def probe(directory: Path, bases: dict[str, tuple]) -> dict[str, dict[str, float]]:
    """One artifact's rows; ``bases`` keeps each base model loaded once (name -> (model, tokenizer))."""
    saved, mix, _ = saved_run(directory)
    task = next(t for t in getattr(mix, "tasks", (mix,)) if t.name == "silence")
    if saved["model"] not in bases:
        bases[saved["model"]] = load_model(saved["model"])
    base, tokenizer = bases[saved["model"]]
    model = ReservoirModel.from_pretrained(base, directory)
    renderer = Renderer(artifact_pass_format(directory), tokenizer)
    calls: list[torch.Tensor] = []  # the running read's gates (T,) of each model call, in order
    token_gates = ran.model.token_gates

    def recording(hidden, mask, gate, *args, **kwargs):
        result = token_gates(hidden, mask, gate, *args, **kwargs)
        if gate is model.running_read_gate:
            calls.append(result[1][0][mask[0].bool()].detach())
        return result

    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    ran.model.token_gates = recording
    try:
        for episode in task.evaluation_episodes():
            calls.clear()
            rendered = render(episode, renderer)
            with torch.no_grad():  # one episode a call, so no row is padded
                scored = run_episodes(model, [rendered], carry=True, keep=True).scored[0]
            if len(calls) != len(rendered):
                raise SystemExit(f"{directory}: {len(calls)} running reads for {len(rendered)} passes")
            speaks = iter(result.speak for result in scored)
            for kind, step, gates in zip(pass_kinds(episode), rendered, calls, strict=True):
                spoke = next(speaks) >= 0.5
                if kind == "tick":
                    continue
                labels = torch.tensor(step.running_read[-len(gates):])
                marked = gates[labels == 1]
                rows[kind]["gate_mean"].append(float(marked.mean()))
                rows[kind]["open_share"].append(float((marked > 0.5).float().mean()))
                rows[kind]["decided_right"].append(float(spoke == bool(step.speak)))
    finally:
        ran.model.token_gates = token_gates
        model.unwrap()  # the base goes back as it was loaded, for the next artifact
    return {kind: {**{name: sum(values) / len(values) for name, values in rows[kind].items()},
                   "n": len(rows[kind]["gate_mean"])} for kind in KINDS if kind in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", metavar="[NAME=]DIR")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    found, bases = {}, {}
    for given in args.artifacts:
        name, _, path = given.rpartition("=")
        found[name or path] = kinds = probe(Path(path), bases)
        print(name or path)
        for kind, row in kinds.items():
            print(f"  {kind:18s} read gate {row['gate_mean']:.2f}, open {row['open_share']:.2f}, "
                  f"gate head right {row['decided_right']:.2f} (n={row['n']})")
    if args.json:
        args.json.write_text(json.dumps({"environment": environment(), "artifacts": found}, indent=1) + "\n")


if __name__ == "__main__":
    main()
