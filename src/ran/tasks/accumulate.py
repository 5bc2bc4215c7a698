"""Accumulate: ``+k`` on separate passes (context wiped between them), then the total.

    "Add 3." / "Add 1." / "Add 4." / "The total is" -> " 8"

Only the carried state connects the addends: each pass sees one number.
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
from ran.tasks.common import check_range, check_targets, draw, exact, mean


@register
@dataclass(frozen=True)
class AccumulateTask(SampledTask):
    name: ClassVar[str] = "accumulate"
    metric: ClassVar[str] = "exact total"

    addends: tuple[int, int] = (2, 3)  # how many "+k" passes (inclusive)
    values: tuple[int, int] = (1, 4)  # each k (inclusive)
    add_template: str = "Add {value}."
    ask_template: str = "The total is"
    answer_template: str = " {total}"
    per_step: int = 8  # training episodes per step
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("addends", self.addends, 1, 16)
        check_range("values", self.values, 0, 99)
        check_template(self.add_template, "accumulate add_template", ("value",), required=("value",))
        check_template(self.answer_template, "accumulate answer_template", ("total",), required=("total",))
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def check(self, renderer: Renderer) -> None:
        totals = range(self.addends[0] * self.values[0], self.addends[1] * self.values[1] + 1)
        check_targets(renderer, self.name, [self.answer_template.format(total=t) for t in totals])

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        values = [draw(generator, *self.values) for _ in range(draw(generator, *self.addends))]
        passes = [Pass(self.add_template.format(value=v)) for v in values]
        passes.append(Pass(self.ask_template, self.answer_template.format(total=sum(values))))
        return Episode(tuple(passes), label=str(sum(values)), group=f"addends={len(values)}",
                       info={"values": values, "total": sum(values)})



    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        correct = [exact(p[-1], renderer, self.answer_template.format(total=e.info["total"]))
                   for e, p in zip(episodes, predictions, strict=True)]
        groups: dict[int, list[float]] = {}
        for episode, value in zip(episodes, correct, strict=True):
            groups.setdefault(len(episode.info["values"]), []).append(value)
        return {"value": mean(correct),
                "groups": [{"addends": n, "exact": mean(v)} for n, v in sorted(groups.items())],
                "predictions": [{"values": e.info["values"], "predicted": renderer.tokenizer.decode(p[-1].tokens)}
                                for e, p in zip(episodes, predictions, strict=True)]}
