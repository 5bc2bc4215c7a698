"""Interrupt and resume: task A begins, task B interrupts and completes, A is resumed (context wiped).

    "Let us talk about the tiger." / "Quick question: what is 2 plus 3? It is" -> " 5" /
    "Back to our topic. We were talking about the" -> " tiger"

Metrics: resumed (A's topic right after the interruption), interrupt (B answered), and both.
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
from ran.tasks.common import check_reads, check_targets, draw, exact, labelled, mean, pick
from ran.tasks.texts import DEFAULT_KEY_POOL


@register
@dataclass(frozen=True)
class InterruptTask(SampledTask):
    name: ClassVar[str] = "interrupt"
    metric: ClassVar[str] = "resumed"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[30:36]
    begin_template: str = "Let us talk about the {word}."
    question_template: str = "Quick question: what is {a} plus {b}? It is"
    resume_template: str = "Back to our topic. We were talking about the"
    # What of the topic's pass the gated read takes in, a template of {word} and {text}, every other pass reading
    # nothing; running_read the same for the running units' read. None: no labels (ran.tasks.common.labelled).
    read: str | None = None
    running_read: str | None = None
    per_step: int = 8
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_template(self.begin_template, "interrupt begin_template", ("word",), required=("word",))
        check_template(self.question_template, "interrupt question_template", ("a", "b"))
        if not self.words:
            raise ConfigError("interrupt: give at least one word")
        check_reads(self, ("word",), (self.begin_template,), {"word": self.words[0]})
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def check(self, renderer: Renderer) -> None:
        check_targets(renderer, self.name, [f" {w}" for w in self.words] + [f" {n}" for n in range(2, 11)])

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        word, a, b = pick(generator, self.words), draw(generator, 1, 5), draw(generator, 1, 5)
        passes = (Pass(self.begin_template.format(word=word)),
                  Pass(self.question_template.format(a=a, b=b), f" {a + b}"),
                  Pass(self.resume_template, f" {word}"))
        passes = labelled(self, passes, ({"word": word}, None, None))
        return Episode(passes, label=word, info={"word": word, "sum": a + b})



    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        resumed = [exact(p[1], renderer, f" {e.info['word']}") for e, p in zip(episodes, predictions, strict=True)]
        answered = [exact(p[0], renderer, f" {e.info['sum']}") for e, p in zip(episodes, predictions, strict=True)]
        return {"value": mean(resumed), "interrupt": mean(answered),
                "both": mean([a * b for a, b in zip(resumed, answered, strict=True)]),
                "predictions": [{"word": e.info["word"], "answer": renderer.tokenizer.decode(p[0].tokens),
                                 "resumed": renderer.tokenizer.decode(p[1].tokens)}
                                for e, p in zip(episodes, predictions, strict=True)]}
