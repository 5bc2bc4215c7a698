"""Sequence: several items on separate passes, then all of them in order (a multi-token answer).

    "Item: tiger." / "Item: stone." / "Item: apple." / "The items were" -> " tiger, stone, apple"

Episodes hold 3-6 items; evaluation spreads its episodes evenly over the lengths. Metrics: exact match of the
whole answer (the headline), and the normalised edit distance between the predicted and the true item lists
(0 = identical, 1 = nothing in common), overall and per length (``groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.passes import Renderer
from ran.schema import check_template
from ran.tasks.base import Prediction, SampledTask, register
from ran.tasks.common import EVAL_SEED, check_range, check_reads, check_targets, draw, exact, labelled, mean
from ran.tasks.texts import DEFAULT_KEY_POOL


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two sequences of items."""
    previous = list(range(len(b) + 1))
    for i, item in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other)))
        previous = current
    return previous[-1]


@register
@dataclass(frozen=True)
class SequenceTask(SampledTask):
    name: ClassVar[str] = "sequence"
    metric: ClassVar[str] = "exact sequence"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[:12]
    length: tuple[int, int] = (3, 6)  # items per episode (inclusive)
    item_template: str = "Item: {word}."
    ask_template: str = "The items were"
    separator: str = ","
    # What of an item's pass the gated read takes in, a template of {word} and {text}, every other pass reading nothing;
    # running_read the same for the running units' read. None: no labels (ran.tasks.common.labelled).
    read: str | None = None
    running_read: str | None = None
    per_step: int = 8
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("length", self.length, 1, 16)
        if len(self.words) < self.length[1]:
            raise ConfigError(f"sequence needs at least {self.length[1]} words, got {len(self.words)}")
        check_template(self.item_template, "sequence item_template", ("word",), required=("word",))
        check_reads(self, ("word",), (self.item_template,), {"word": self.words[0]})
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def answer(self, items: list[str]) -> str:
        return f"{self.separator} ".join(f" {w}" if i == 0 else w for i, w in enumerate(items))

    def check(self, renderer: Renderer) -> None:
        check_targets(renderer, self.name, [self.answer(list(self.words[:self.length[1]]))])

    def episode(self, generator: torch.Generator, evaluation: bool = False, count: int | None = None) -> Episode:
        count = draw(generator, *self.length) if count is None else count
        order = torch.randperm(len(self.words), generator=generator)[:count].tolist()
        items = [self.words[i] for i in order]
        passes = [Pass(self.item_template.format(word=w)) for w in items]
        passes.append(Pass(self.ask_template, self.answer(items)))
        passes = labelled(self, passes, [*({"word": w} for w in items), None])
        return Episode(tuple(passes), label=" ".join(items), group=f"length={count}", info={"items": items})

    def evaluation_episodes(self) -> list[Episode]:
        """``eval_count`` episodes, their lengths cycling through the range (so each length is scored alike)."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        lengths = range(self.length[0], self.length[1] + 1)
        return [self.episode(generator, evaluation=True, count=lengths[index % len(lengths)])
                for index in range(self.eval_count)]

    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        exact_values, distances, details = [], [], []
        by_length: dict[int, list[tuple[float, float]]] = {}
        for episode, prediction in zip(episodes, predictions, strict=True):
            items = episode.info["items"]
            exact_values.append(exact(prediction[-1], renderer, self.answer(items)))
            text = renderer.tokenizer.decode(prediction[-1].tokens)
            predicted = [w.strip() for w in text.split(self.separator) if w.strip()]
            distances.append(edit_distance(predicted, items) / max(len(items), len(predicted), 1))
            by_length.setdefault(len(items), []).append((exact_values[-1], distances[-1]))
            details.append({"items": items, "predicted": text})
        return {"value": mean(exact_values), "edit_distance": mean(distances),
                "groups": [{"length": length, "n": len(rows), "exact": mean([e for e, _ in rows]),
                            "edit_distance": mean([d for _, d in rows])} for length, rows in sorted(by_length.items())],
                "predictions": details}
