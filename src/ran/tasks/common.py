"""What the battery's tasks share: seeded draws, word pools, read labels, and the exact-match metric."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from ran.episodes import READ_LABELS, Pass, Prediction
from ran.errors import ConfigError
from ran.passes import Renderer
from ran.schema import check_template

EVAL_SEED = 20_251_126  # evaluation episodes are drawn from this seed: the same in every run


def draw(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def pick(generator: torch.Generator, items: tuple) -> object:
    return items[int(torch.randint(len(items), (), generator=generator))]


def check_range(name: str, bounds: tuple[int, int], low: int, high: int) -> None:
    """Refuse a (low, high) setting that is reversed or outside [low, high], in one line."""
    if len(bounds) != 2 or bounds[0] > bounds[1]:
        raise ConfigError(f"{name} must be a range LOW-HIGH with LOW <= HIGH, got {bounds}")
    if bounds[0] < low or bounds[1] > high:
        raise ConfigError(f"{name} {bounds[0]}-{bounds[1]} is outside {low}-{high}")


def check_reads(task: Any, fields: tuple[str, ...], phrasings: Sequence[str], sample: dict[str, Any],
                what: str = "") -> None:
    """Refuse a read template of ``task`` (its READ_LABELS fields; None labels nothing) that holds a field other than
    ``fields`` or ``{text}`` (the whole pass), or that is not part of one of the ``phrasings`` it labels, each filled
    with ``sample`` (taken as they are where ``fields`` is empty; ``what`` names a phrasing in the error): a pass can
    only read what it says."""
    for name in READ_LABELS:
        template = getattr(task, name)
        if template is None:
            continue
        check_template(template, f"{task.name} {name}", (*fields, "text"))
        for phrasing in phrasings:
            text = phrasing.format(**sample) if fields else phrasing
            if template.format(**{**sample, "text": text}) not in text:
                raise ConfigError(f"{task.name}: {name} {template!r} is not part of {what}{phrasing!r}: a pass can "
                                  "only read what it says")


def labelled(task: Any, passes: Sequence[Pass], fields: Sequence[dict[str, Any] | None]) -> tuple[Pass, ...]:
    """``passes`` with the read labels of ``task``'s templates (its READ_LABELS fields, for the gated read,
    ``RanConfig.summary`` "gated", and the running units' own read, ``RanConfig.running_read``): a pass with ``fields``
    reads its template filled with them and ``{text}`` (its own text), every other pass, idle ticks too, reads
    nothing. A template of None labels nothing: that read learns from the targets alone."""
    templates = {name: getattr(task, name) for name in READ_LABELS}
    if all(template is None for template in templates.values()):
        return tuple(passes)
    out = []
    for step, given in zip(passes, fields, strict=True):
        reads = {name: None if template is None else "" if given is None or step.idle
                 else template.format(**given, text=step.text) for name, template in templates.items()}
        out.append(dataclasses.replace(step, **reads))
    return tuple(out)


def check_targets(renderer: Renderer, task: str, texts: list[str]) -> None:
    """Every target must encode to at least one token (one clear line naming the first that does not)."""
    for text in texts:
        if not renderer.encode(text):
            raise ConfigError(f"task '{task}': target {text!r} encodes to no tokens for this tokenizer")


def exact(prediction: Prediction, renderer: Renderer, target: str) -> float:
    return float(prediction.tokens == renderer.target(target))


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def gate_counts(episodes, predictions: list[list[Prediction]], threshold: float = 0.5) -> dict[str, int]:
    """Confusion counts of the gate head over every labelled pass: speak when due, silent otherwise."""
    counts = {"true_speak": 0, "false_speak": 0, "missed": 0, "true_silent": 0}
    for episode, predicted in zip(episodes, predictions, strict=True):
        scored = [p for p in episode.passes if p.target is not None or p.speak is not None]
        for step, prediction in zip(scored, predicted, strict=True):
            if step.speak is None or prediction.speak is None:
                continue
            spoke = prediction.speak >= threshold
            key = ("true_speak" if spoke else "missed") if step.speak else ("false_speak" if spoke else "true_silent")
            counts[key] += 1
    return counts
