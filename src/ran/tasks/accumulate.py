"""Accumulate: ``+k`` on separate passes (context wiped between them), then the total.

    "Add 3." / "Add 1." / "Add 4." / "The total is" -> " 8"

Only the carried state connects the addends: each pass sees one number. The totals are balanced: an episode
draws its total uniformly among those its number of addends can reach, then addends that make it, so no total
is likelier than another and an answer that ignores the state is right at chance; the score reports that
chance (the share of the commonest total among the evaluation episodes) beside the exact total, per number of
addends too.
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
    # What of an add pass the gated read takes in, a template of {value} and {text}, every other pass reading nothing;
    # running_read the same for the running units' read. None: no labels (ran.tasks.common.labelled).
    read: str | None = None
    running_read: str | None = None
    per_step: int = 8  # training episodes per step
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("addends", self.addends, 1, 16)
        check_range("values", self.values, 0, 99)
        check_template(self.add_template, "accumulate add_template", ("value",), required=("value",))
        check_template(self.answer_template, "accumulate answer_template", ("total",), required=("total",))
        check_reads(self, ("value",), (self.add_template,), {"value": self.values[1]})
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def check(self, renderer: Renderer) -> None:
        totals = range(self.addends[0] * self.values[0], self.addends[1] * self.values[1] + 1)
        check_targets(renderer, self.name, [self.answer_template.format(total=t) for t in totals])

    def sums(self) -> list[tuple[int, int]]:
        """Every (number of addends, total) an episode can have."""
        low, high = self.values
        return [(count, total) for count in range(self.addends[0], self.addends[1] + 1)
                for total in range(count * low, count * high + 1)]

    def evaluation_episodes(self) -> list[Episode]:
        """``eval_count`` episodes cycling through every (number of addends, total), so none is commoner than
        another by more than one episode."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        sums = self.sums()
        return [self.episode(generator, True, *sums[index % len(sums)]) for index in range(self.eval_count)]

    def episode(self, generator: torch.Generator, evaluation: bool = False, count: int | None = None,
                total: int | None = None) -> Episode:
        """An episode of ``count`` addends making ``total`` (drawn where not given: the total uniformly among those
        the count can reach)."""
        low, high = self.values
        count = draw(generator, *self.addends) if count is None else count
        total = draw(generator, count * low, count * high) if total is None else total
        values: list[int] = []
        for left in range(count - 1, -1, -1):  # left: addends after this one, whose range must reach the rest
            rest = total - sum(values)
            values.append(draw(generator, max(low, rest - left * high), min(high, rest - left * low)))
        passes = [Pass(self.add_template.format(value=v)) for v in values]
        passes.append(Pass(self.ask_template, self.answer_template.format(total=sum(values))))
        passes = labelled(self, passes, [*({"value": v} for v in values), None])
        return Episode(tuple(passes), label=str(sum(values)), group=f"addends={len(values)}",
                       info={"values": values, "total": sum(values)})



    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        correct = [exact(p[-1], renderer, self.answer_template.format(total=e.info["total"]))
                   for e, p in zip(episodes, predictions, strict=True)]
        groups: dict[int, list[float]] = {}
        for episode, value in zip(episodes, correct, strict=True):
            groups.setdefault(len(episode.info["values"]), []).append(value)
        totals = [e.info["total"] for e in episodes]
        return {"value": mean(correct), "chance": max(map(totals.count, totals)) / len(totals),
                "groups": [{"addends": n, "n": len(v), "exact": mean(v)} for n, v in sorted(groups.items())],
                "predictions": [{"values": e.info["values"], "predicted": renderer.tokenizer.decode(p[-1].tokens)}
                                for e, p in zip(episodes, predictions, strict=True)]}
