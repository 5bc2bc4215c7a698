"""Where a trained memory artifact's switches open, per kind of pass a session has.

Two decisions shape a pass: whether it *writes* (the reservoir steps and the state changes) and whether it
*recalls* (layer L's queries see the memory's slots). A good artifact writes on stores only and recalls on
recall questions only; a write on a distractor or an ordinary turn overwrites the stored value, and a recall
on an ordinary turn is where the memory can harm the model's replies. :func:`switch_rates` measures both on
single passes of every kind, each in a new context and from the wiped state, with values and phrasings
training never read where the task has them:

    store      the store phrasings (training and held-out), each with a held-out value of each kind
    recall     the recall phrasings (training and held-out)
    distractor the evaluation distractors
    turn       the held-out ordinary turns

A write counts as open where the state moves more than half-way to the reservoir's step (``always``: every
pass; ``gated``: its strongest read gate; the switched writes: their decision); a recall where the pass sees
the memory (every pass unless the recall is switched).
"""

from __future__ import annotations

from typing import Any

import torch

from ran.episodes import Episode, Pass, render
from ran.model import ReservoirModel
from ran.passes import Renderer
from ran.tasks.memory import SLOT, MemoryTask

INTERVENING = ("distractor", "turn")  # the pass kinds that come between a store and its recall and must not write


def switch_passes(task: MemoryTask) -> dict[tuple[str, str], list[str]]:
    """(pass kind, phrasing split) -> the texts of its passes."""
    texts: dict[tuple[str, str], list[str]] = {}
    for split, stores, recalls in (("trained", task.store_templates, task.recall_templates),
                                   ("heldout", task.heldout_store_templates, task.heldout_recall_templates)):
        texts[("store", split)] = [template.replace(SLOT, task.heldout_values[kind][0])
                                   for kind in task.kinds for template in stores.get(kind, ())]
        texts[("recall", split)] = [template for kind in task.kinds for template in recalls.get(kind, ())]
    texts[("distractor", "heldout")] = list(task.eval_distractors)
    texts[("turn", "heldout")] = list(task.heldout_turns)
    return {where: items for where, items in texts.items() if items}


@torch.no_grad()
def switch_rates(model: ReservoirModel, renderer: Renderer, task: MemoryTask) -> dict[str, Any]:
    """``{"switches": [...]}``: per (pass kind, phrasing split), how many passes and the share whose write
    opens and whose recall opens, with the texts where either switch decided against its kind (a write
    anywhere but a store, a recall anywhere but a recall question, or either missing where it belongs)."""
    device = model.reservoir.w_in.device
    rows = []
    for (kind, split), texts in switch_passes(task).items():
        writes, recalls, wrong, overwrites = [], [], [], []
        for text in texts:
            prompt = render(Episode((Pass(text),)), renderer)[0].prompt
            output = model(torch.tensor([prompt], device=device), state=model.reservoir.initial_state(1, device),
                           read_only=True)
            wrote = 1.0 if output.wrote is None else float(output.wrote[0])
            shown = True if output.shown is None else bool(output.shown[0])
            writes.append(wrote > 0.5)
            recalls.append(shown)
            if writes[-1] != (kind == "store") or recalls[-1] != (kind == "recall"):
                wrong.append(text)
            if writes[-1] and kind in INTERVENING:
                overwrites.append(text)
        rows.append({"pass": kind, "phrasing": split, "n": len(texts), "write": sum(writes) / len(texts),
                     "recall": sum(recalls) / len(texts), "wrong": wrong, "overwrites": overwrites})
    return {"switches": rows}


def overwriting_texts(switches: list[dict[str, Any]]) -> set[str]:
    """The texts of the intervening passes whose write opens, over every switch row (:func:`switch_rates`)."""
    return {text for row in switches for text in row.get("overwrites", ())}


def recall_by_overwrite(predictions: list[dict[str, Any]], switches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per delay, held-out values stored in training phrasings: recall in the episodes none of whose intervening
    passes opens the write, and in those where one does (a pass whose text is in a switch row's ``overwrites``).
    Separates what the state loses while it holds from what a wrongly opened write overwrites.

    The write decides on layer L's input at the pass's end, which the state does not reach, so a distractor (always
    read in a new context) decides as it did alone, in every episode. An ordinary turn that keeps the context before
    it is judged by its decision alone, and idle ticks are not counted (with ``idle_write`` "keep" they never write)."""
    opened = overwriting_texts(switches)
    cells: dict[tuple[int, bool], list[float]] = {}
    for prediction in predictions:
        if prediction["values"] != "heldout" or prediction["phrasing"] != "trained" or not prediction["delay"]:
            continue
        overwritten = any(text in opened for text in prediction["between"])
        cells.setdefault((prediction["delay"], overwritten), []).append(float(prediction["exact"]))
    rows = []
    for delay in sorted({delay for delay, _ in cells}):
        row: dict[str, Any] = {"delay": delay}
        for overwritten, name in ((False, "kept"), (True, "overwritten")):
            hits = cells.get((delay, overwritten), [])
            row[name] = {"n": len(hits), "recall": sum(hits) / len(hits) if hits else None}
        rows.append(row)
    return rows
