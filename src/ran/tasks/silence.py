"""Silence on request: hold every reply from "don't interrupt me until I say go" until "go".

    hold: "Don't interrupt me until I say go." (silent) / "The bus was crowded." (silent) / tick (silent) /
          "Go ahead." (speak) / "The soup needs salt." (speak)
    free: "The bus was crowded." (speak) / tick (silent) / "The soup needs salt." (speak)

Every input pass starts from a wiped context, so a statement reads the same in both kinds of episode: only
the carried state knows whether a hold is on, and whether it has been released. The labels are the gate
head's (speak or stay silent after the pass; no reply is trained): a statement gets a reply unless a hold is
on, an idle tick never does, the hold itself is not answered and the release is. In a live session this is
``SessionConfig(gate_prompted=True)``: the gate decides after the user's turns too.

Metric: the share of episodes in which every label is met (the headline). A model without the state treats a
statement alike in both kinds, and every hold episode has statements both under the hold and after its
release, so it meets every label of at most one kind: 0.5, with hold and free episodes alternating in
evaluation. Beside it: ``held`` (silent on statements under a hold), ``replied`` (speaking on statements with
no hold on), ``ticks_silent`` and ``released`` (speaking after the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.passes import Renderer
from ran.tasks.base import Prediction, SampledTask, register
from ran.tasks.common import EVAL_SEED, check_range, check_reads, draw, gate_counts, labelled, mean, pick
from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS

TRAIN_HOLDS = ("Don't interrupt me until I say go.", "Please stay quiet until I say go.",
               "Hold your replies until I say go.", "Let me think, and wait until I say go.")
EVAL_HOLDS = ("Don't say anything until I say go.", "Please wait quietly until I say go.")
TRAIN_RELEASES = ("Go.", "Go ahead.", "Okay, go.")
EVAL_RELEASES = ("Go, I'm done.", "Alright, go now.")


@register
@dataclass(frozen=True)
class SilenceTask(SampledTask):
    name: ClassVar[str] = "silence"
    metric: ClassVar[str] = "every reply held and released"

    held: tuple[int, int] = (1, 4)  # statements and ticks under the hold (inclusive; at least one statement)
    after: tuple[int, int] = (1, 2)  # statements after the release (free episodes: this many more statements)
    idle_fraction: float = 0.3  # the share of passes under the hold that are idle ticks
    hold_fraction: float = 0.5  # the share of training episodes with a hold (evaluation alternates)
    train_holds: tuple[str, ...] = TRAIN_HOLDS
    eval_holds: tuple[str, ...] = EVAL_HOLDS
    train_releases: tuple[str, ...] = TRAIN_RELEASES
    eval_releases: tuple[str, ...] = EVAL_RELEASES
    train_distractors: tuple[str, ...] = TRAIN_DISTRACTORS
    eval_distractors: tuple[str, ...] = EVAL_DISTRACTORS
    # What of an input pass (the hold, a statement, the release) the gated read takes in, a template of {text}, the
    # idle ticks reading nothing; running_read the same for the running units' read ("{text}" where the gate reads
    # them alone). None: no labels (ran.tasks.common.labelled).
    read: str | None = None
    running_read: str | None = None
    per_step: int = 6
    eval_count: int = 24

    def __post_init__(self) -> None:
        check_range("held", self.held, 1, 64)
        check_range("after", self.after, 1, 64)
        for name in ("idle_fraction", "hold_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"silence {name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("train_holds", "eval_holds", "train_releases", "eval_releases", "train_distractors",
                     "eval_distractors"):
            if not getattr(self, name):
                raise ConfigError(f"silence needs at least one text in {name}")
        check_reads(self, (), (*self.train_holds, *self.eval_holds, *self.train_releases, *self.eval_releases,
                               *self.train_distractors, *self.eval_distractors), {})
        if self.per_step < 1 or self.eval_count < 2:
            raise ConfigError("silence: per_step must be >= 1 and eval_count >= 2 (hold and free episodes alternate)")

    def check(self, renderer: Renderer) -> None:
        renderer.idle_tokens  # noqa: B018  (refuses an idle text without tokens)

    def make(self, generator: torch.Generator, hold: bool, evaluation: bool) -> Episode:
        statements = self.eval_distractors if evaluation else self.train_distractors
        passes = []
        if hold:
            passes.append(Pass(str(pick(generator, self.eval_holds if evaluation else self.train_holds)), speak=False))
            count = draw(generator, *self.held)
            ticks = [index > 0 and bool(torch.rand((), generator=generator) < self.idle_fraction)
                     for index in range(count)]  # the first pass under the hold is a statement
            passes += [Pass.tick(speak=False) if tick else Pass(str(pick(generator, statements)), speak=False)
                       for tick in ticks]
            release = self.eval_releases if evaluation else self.train_releases
            passes.append(Pass(str(pick(generator, release)), speak=True))
        else:
            passes.append(Pass(str(pick(generator, statements)), speak=True))
            passes.append(Pass.tick(speak=False))
        passes += [Pass(str(pick(generator, statements)), speak=True) for _ in range(draw(generator, *self.after))]
        passes = labelled(self, passes, [None if step.idle else {} for step in passes])
        return Episode(tuple(passes), label="hold" if hold else "free", group="hold" if hold else "free",
                       info={"hold": hold})

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        return self.make(generator, bool(torch.rand((), generator=generator) < self.hold_fraction), evaluation)

    def evaluation_episodes(self) -> list[Episode]:
        """``eval_count`` episodes, hold and free alternating (so a stateless policy is right in at most half)."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        return [self.make(generator, index % 2 == 0, evaluation=True) for index in range(self.eval_count)]

    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        rows: dict[str, list[float]] = {"held": [], "replied": [], "ticks_silent": [], "released": []}
        met, by_kind = [], {"hold": [], "free": []}
        for episode, predicted in zip(episodes, predictions, strict=True):
            spoke = [p.speak is not None and p.speak >= 0.5 for p in predicted]
            right = [s == bool(step.speak) for step, s in zip(episode.passes, spoke, strict=True)]
            met.append(float(all(right)))
            by_kind[episode.group].append(met[-1])
            for kind, said in zip(pass_kinds(episode), spoke, strict=True):
                if kind == "hold":
                    continue  # the hold itself: scored in the headline only
                row, wanted_silent = SCORED_AS.get(kind, ("replied", False))
                rows[row].append(float(said != wanted_silent))
        return {"value": mean(met), **{name: mean(values) for name, values in rows.items()},
                "groups": [{"kind": kind, "n": len(values), "every_label": mean(values)}
                           for kind, values in by_kind.items()],
                "gate": gate_counts(episodes, predictions),
                "predictions": [{"kind": e.group, "speaks": [p.speak for p in ps]}
                                for e, ps in zip(episodes, predictions, strict=True)]}


# The score row of a kind of pass and whether it is to be silent; any other kind but the hold: "replied", to speak.
SCORED_AS = {"tick": ("ticks_silent", True), "under the hold": ("held", True), "release": ("released", False)}
PASS_KINDS = ("tick", "hold", "under the hold", "release", "after the release", "first, free", "later, free")


def pass_kinds(episode: Episode) -> list[str]:
    """Each pass's kind (PASS_KINDS), as :meth:`SilenceTask.score` scores it: an idle tick; the hold, a statement
    under it, the release (the first pass under the hold labelled to speak), a statement after it; a free episode's
    first statement and a later one."""
    under, released, kinds = episode.info["hold"], False, []
    for index, step in enumerate(episode.passes):
        if step.idle:
            kinds.append("tick")
        elif under and index == 0:
            kinds.append("hold")
        elif under and step.speak:
            kinds.append("release")
            under, released = False, True
        elif under:
            kinds.append("under the hold")
        else:
            kinds.append("first, free" if index == 0 else "after the release" if released else "later, free")
    return kinds
