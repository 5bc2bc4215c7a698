"""Learned silence: passes with nothing to say, where the gate head must keep the model silent.

Each episode is a few distractor sentences (context wiped) and idle ticks (continuing it), every one
labelled "silent". Metric: the fraction of passes on which the gate stays silent; its complement is
the false-speak rate. (Passes where speaking is due come from the timed and initiative tasks; the
battery reports the gate's precision and recall over all of them.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.passes import Renderer
from ran.tasks.base import Prediction, SampledTask, register
from ran.tasks.common import check_range, draw, gate_counts, mean, pick
from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS


@register
@dataclass(frozen=True)
class SilenceTask(SampledTask):
    name: ClassVar[str] = "silence"
    metric: ClassVar[str] = "silent"

    passes: tuple[int, int] = (2, 5)  # passes per episode (inclusive)
    idle_fraction: float = 0.5  # the share of passes that are idle ticks
    train_distractors: tuple[str, ...] = TRAIN_DISTRACTORS
    eval_distractors: tuple[str, ...] = EVAL_DISTRACTORS
    per_step: int = 6
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("passes", self.passes, 1, 64)
        if not 0 <= self.idle_fraction <= 1:
            raise ConfigError(f"idle_fraction must be in [0, 1], got {self.idle_fraction}")
        if not self.train_distractors or not self.eval_distractors:
            raise ConfigError("silence needs training and evaluation distractors")
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def check(self, renderer: Renderer) -> None:
        renderer.idle_tokens  # noqa: B018  (refuses an idle text without tokens)

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        pool = self.eval_distractors if evaluation else self.train_distractors
        passes = []
        for _ in range(draw(generator, *self.passes)):
            if passes and bool(torch.rand((), generator=generator) < self.idle_fraction):
                passes.append(Pass.tick(speak=False))
            else:
                passes.append(Pass(str(pick(generator, pool)), speak=False))
        return Episode(tuple(passes), info={"n": len(passes)})



    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        silent = [float(p.speak is not None and p.speak < 0.5) for ps in predictions for p in ps]
        return {"value": mean(silent), "false_speak": 1.0 - mean(silent) if silent else float("nan"),
                "gate": gate_counts(episodes, predictions)}
