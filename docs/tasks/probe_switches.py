"""Do the memory's switches generalise to phrasings training never reads? A probe of the switches alone.

A trained artifact's write and recall switches are each one linear unit on layer L's RMS-normalised input at
the prompt's end (``ran.model``, ``recall="switched"``, ``write="pass-switched"``). This probe fits such a
unit, with the trainer's initialisation (zeros) and optimiser (Adam, lr 1e-2, full batch), on the frozen
SmolLM2-135M's features of the built-in passes, and counts where it opens on passes training never reads:
the held-out store and recall phrasings (held-out values in the stores), the held-out ordinary turns and
the evaluation distractors. It compares the first 6 store / 3 recall phrasings per kind (the pools r14-r21
trained on; coined words came later) with the whole pools, for every kind together and for one kind
(numbers, as r18 trained), in minutes, without training a memory.

    python docs/tasks/probe_switches.py   # writes docs/tasks/switch-probe.json
"""

import json
from pathlib import Path

import torch

from ran.loading import load_model
from ran.passes import PassFormat, Renderer
from ran.provenance import environment
from ran.reading import rms_normalised
from ran.tasks.memory import SLOT, builtin_values
from ran.tasks.memory_texts import (
    HELDOUT_RECALL_TEMPLATES,
    HELDOUT_STORE_TEMPLATES,
    HELDOUT_TURNS,
    KINDS,
    RECALL_TEMPLATES,
    STORE_TEMPLATES,
    TURNS,
)
from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS
from ran.tasks.vocab import coined_words

OUT = Path(__file__).resolve().parent / "switch-probe.json"  # beside this script: not a results file of ran
POOLS = {"old pools (6 store, 3 recall per kind)": (6, 3), "whole pools": (None, None)}
WORDS = ("apple", "river", "candle", "window")  # stand-ins for vocabulary words; held-out: the others
HELDOUT_WORDS = ("kettle", "meadow", "pepper", "lantern")
VALUES = 4  # values per kind in each store phrasing
STEPS = 300


def stores(templates: dict[str, tuple[str, ...]], count: int | None, values: dict[str, tuple[str, ...]],
           kinds: tuple[str, ...]) -> list[str]:
    return [template.replace(SLOT, value) for kind in kinds for template in templates[kind][:count]
            for value in values[kind]]


def recalls(templates: dict[str, tuple[str, ...]], count: int | None, kinds: tuple[str, ...]) -> list[str]:
    return [template for kind in kinds for template in templates[kind][:count]]


@torch.no_grad()
def switch_inputs(model, renderer: Renderer, layer: int, texts: list[str]) -> torch.Tensor:
    """(n, d): what a pass-level switch reads of each text as a pass of its own, layer ``layer``'s input at the
    prompt's end, RMS-normalised (``ran.model``'s ``_switch``)."""
    return torch.stack([rms_normalised(model(torch.tensor([renderer.turn(text)]), output_hidden_states=True)
                                       .hidden_states[layer][0, -1]) for text in texts])


def main() -> None:
    model, tokenizer = load_model("smollm2-135m")
    renderer = Renderer(PassFormat("chat"), tokenizer)
    layer = model.config.num_hidden_layers // 2
    coined = coined_words(tokenizer, VALUES, VALUES)
    trained_values = {"word": WORDS, "coined": coined[0],
                      **{kind: builtin_values(kind, VALUES, False) for kind in ("name", "number", "place")}}
    heldout_values = {"word": HELDOUT_WORDS, "coined": coined[1],
                      **{kind: builtin_values(kind, VALUES, True) for kind in ("name", "number", "place")}}

    def features(texts: list[str]) -> torch.Tensor:
        return switch_inputs(model, renderer, layer, texts)

    def fit(positive: torch.Tensor, negative: torch.Tensor) -> torch.nn.Linear:
        inputs, labels = torch.cat([positive, negative]), torch.cat([torch.ones(len(positive)),
                                                                     torch.zeros(len(negative))])
        unit = torch.nn.Linear(inputs.shape[1], 1)
        torch.nn.init.zeros_(unit.weight)
        torch.nn.init.zeros_(unit.bias)
        optimiser = torch.optim.Adam(unit.parameters(), lr=1e-2)
        balance = torch.where(labels > 0, len(negative) / len(positive), 1.0)  # as many positives as negatives
        for _ in range(STEPS):
            optimiser.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(unit(inputs)[:, 0], labels, weight=balance)
            loss.backward()
            optimiser.step()
        return unit

    ordinary = features(list(TURNS) + list(TRAIN_DISTRACTORS))
    heldout_ordinary = features(list(HELDOUT_TURNS) + list(EVAL_DISTRACTORS))
    rows = []
    for kinds in (KINDS, ("number",)):
        heldout_store_texts = stores(HELDOUT_STORE_TEMPLATES, None, heldout_values, kinds)
        heldout_recall_texts = recalls(HELDOUT_RECALL_TEMPLATES, None, kinds)
        heldout_stores, heldout_recalls = features(heldout_store_texts), features(heldout_recall_texts)
        for pools, (store_count, recall_count) in POOLS.items():
            trained_stores = features(stores(STORE_TEMPLATES, store_count, trained_values, kinds))
            trained_recalls = features(recalls(RECALL_TEMPLATES, recall_count, kinds))
            for switch, positive, negative, heldout_positive, texts, heldout_other in (
                    ("write", trained_stores, torch.cat([trained_recalls, ordinary]), heldout_stores,
                     heldout_store_texts, heldout_recalls),
                    ("recall", trained_recalls, torch.cat([trained_stores, ordinary]), heldout_recalls,
                     heldout_recall_texts, heldout_stores)):
                unit = fit(positive, negative)
                with torch.no_grad():
                    opened = unit(heldout_positive)[:, 0] > 0
                    rates = {"heldout phrasings": float(opened.float().mean()),
                             "heldout other phrasings": float((unit(heldout_other)[:, 0] > 0).float().mean()),
                             "heldout ordinary": float((unit(heldout_ordinary)[:, 0] > 0).float().mean())}
                rows.append({"kinds": list(kinds), "pools": pools, "switch": switch,
                             "trained_positives": len(positive), "heldout_positives": len(heldout_positive),
                             "opens": rates, "shut": [t for t, o in zip(texts, opened.tolist(), strict=True) if not o]})
                print(f"{'+'.join(kinds):22s} {pools:40s} {switch:6s} opens on held-out phrasings "
                      f"{rates['heldout phrasings']:.2f}, on the other switch's {rates['heldout other phrasings']:.2f},"
                      f" on held-out ordinary passes {rates['heldout ordinary']:.3f}")
    OUT.write_text(json.dumps({"experiment": "switch-probe", **environment(), "layer": layer, "steps": STEPS,
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
