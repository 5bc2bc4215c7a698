"""Timed action and self-initiation: stay silent on idle ticks until an item is due, then say it.

    timed:           "In 3 turns, say tiger."        / wipe / tick: silent / tick: silent / tick: " tiger" / silent
    self-initiation: "Remind me about tiger later."  / wipe / tick: silent / tick: silent / tick: " tiger" / silent

The instruction's context is wiped before the ticks (as ``/reset context`` then ``/tick N`` in a
session); the ticks continue each other's context. Whether to speak is the gate head's decision
(p(speak) from the state after the tick, speak at >= 0.5); what to say is the language model's. Timed
states N in the instruction; self-initiation always raises the item after ``delay`` ticks, unprompted.

Metrics: on time (the gate speaks at the due tick and the words are right), early (it speaks before),
and silent after (it does not repeat itself on the tick after).
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
from ran.tasks.common import check_range, check_targets, draw, exact, gate_counts, mean, pick
from ran.tasks.texts import DEFAULT_KEY_POOL


@register
@dataclass(frozen=True)
class TimedTask(SampledTask):
    name: ClassVar[str] = "timed"
    metric: ClassVar[str] = "on time"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[18:24]
    turns: tuple[int, int] = (2, 4)  # N: the tick on which the word is due (inclusive range)
    instruction: str = "In {turns} turns, say {word}."
    answer_template: str = " {word}"
    per_step: int = 8
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("turns", self.turns, 1, 32)
        check_template(self.instruction, f"{self.name} instruction", ("turns", "word"), required=("word",))
        check_template(self.answer_template, f"{self.name} answer_template", ("word",), required=("word",))
        if not self.words:
            raise ConfigError(f"{self.name}: give at least one word")
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")

    def check(self, renderer: Renderer) -> None:
        check_targets(renderer, self.name, [self.answer_template.format(word=w) for w in self.words])

    def due(self, generator: torch.Generator) -> int:
        return draw(generator, *self.turns)

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        word, due = pick(generator, self.words), self.due(generator)
        ticks = [Pass.tick(wipe=index == 1, speak=index == due,
                           target=self.answer_template.format(word=word) if index == due else None)
                 for index in range(1, due + 2)]  # the due tick, and one more that must stay silent
        passes = (Pass(self.instruction.format(turns=due, word=word)), *ticks)
        return Episode(passes, label=word, group=f"due={due}", info={"word": word, "due": due})



    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        on_time, early, silent_after, said, details = [], [], [], [], []
        for episode, ticks in zip(episodes, predictions, strict=True):
            due = episode.info["due"]  # ticks[due - 1] is the due tick; ticks[due] the one after
            speaks = [p.speak is not None and p.speak >= 0.5 for p in ticks]
            right = exact(ticks[due - 1], renderer, self.answer_template.format(word=episode.info["word"]))
            on_time.append(float(speaks[due - 1] and right == 1.0))
            early.append(float(any(speaks[:due - 1])))
            silent_after.append(float(not speaks[due]))
            said.append(right)
            details.append({"word": episode.info["word"], "due": due, "speaks": speaks,
                            "said": renderer.tokenizer.decode(ticks[due - 1].tokens)})
        return {"value": mean(on_time), "early": mean(early), "silent_after": mean(silent_after),
                "words_right": mean(said), "gate": gate_counts(episodes, predictions), "predictions": details}


@register
@dataclass(frozen=True)
class InitiativeTask(TimedTask):
    """Self-initiation: the due tick is not stated; the model raises the pending item after ``turns`` ticks."""

    name: ClassVar[str] = "initiative"
    metric: ClassVar[str] = "on time"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[24:30]
    turns: tuple[int, int] = (3, 3)
    instruction: str = "Remind me about the {word} later."
