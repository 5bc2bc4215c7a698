"""Where a decoded-read artifact loses a value: in the store, or in the reply. For held-out values of each kind,
stored in training phrasings and in held-out ones through a live Session (one store pass from the zero state, the
artifact's trained read and write switch deciding), the state is decoded by the artifact's own fixed decoder and
counted whole (every token and the stop after it); beside it, the ideal store state the decoder was fit on (gates
open on exactly the value's tokens, ``ran.decoding.store_states``), and the states' cosine to it. What a reply can
return is bounded by the first; the artifact's recall (``ran remember``'s results) shows how much of it comes back.

Usage: python docs/tasks/probe_store_read.py ARTIFACT OUT.json [--per-kind 20] [--words 6000]
(ARTIFACT: a ``ran remember --value-read decoded|residual|logits|nearest`` artifact trained on the built-in task.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ran.decoding import store_states, values_whole
from ran.loading import load_model
from ran.model import ReservoirModel
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.remember import builtin_task
from ran.runtime import Session, SessionConfig
from ran.tasks.memory import KINDS, SLOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--words", type=int, default=6000, help="as the artifact's ran remember --words")
    args = parser.parse_args()
    started = time.perf_counter()
    base, tokenizer = load_model("smollm2-135m")
    model = ReservoirModel.from_pretrained(base, args.artifact)
    renderer = Renderer(PassFormat("chat"), tokenizer)
    task = builtin_task(tokenizer, words=args.words, kinds=KINDS)
    embeddings = base.get_input_embeddings().weight.detach().float()
    unit = embeddings / embeddings.norm(dim=-1, keepdim=True)
    places, end = model.config.read_places, renderer.silence
    rows = {}
    for kind in task.kinds:
        values = list(task.heldout_values[kind][:args.per_kind])
        ids = [tokenizer.encode(f" {value}", add_special_tokens=False) for value in values]
        targets = [tokens + [end] for tokens in ids]
        with torch.no_grad():
            ideal = store_states(model.reservoir.step, lambda n: model.reservoir.initial_state(n, "cpu"), embeddings,
                                 ids, places)
            row = {"ideal_whole": values_whole(model.injector.decode(ideal).flatten(1), targets, unit, places)}
            for phrasing, templates in (("trained", task.store_templates[kind]),
                                        ("heldout", task.heldout_store_templates[kind])):
                states = []
                for i, value in enumerate(values):
                    session = Session(model, SessionConfig.for_renderer(renderer, max_new_tokens=1))
                    session.prompt(renderer.turn(templates[i % len(templates)].replace(SLOT, value)))
                    states.append(session.state)
                stored = torch.cat(states)
                row[f"{phrasing}_whole"] = values_whole(model.injector.decode(stored).flatten(1), targets, unit, places)
                row[f"{phrasing}_cosine_to_ideal"] = round(float(
                    torch.nn.functional.cosine_similarity(stored, ideal, dim=-1).mean()), 4)
        rows[kind] = row
        print(kind, json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"what": __doc__.split("\n\n")[0], "artifact": str(args.artifact),
                                    "values_per_kind": args.per_kind, "kinds": rows,
                                    "seconds": round(time.perf_counter() - started), "provenance": environment()},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
