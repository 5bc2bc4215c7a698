"""Timed action and self-initiation: stay silent on idle ticks until an item is due, then say it.

    timed:           "In 3 turns, say tiger."        / wipe / tick: silent / tick: silent / tick: " tiger" / silent
    self-initiation: "Remind me about tiger later."  / tick: silent / wipe / tick: silent / tick: " tiger" / silent

The ticks continue each other's context (as ``/tick N`` in a session); the instruction's context is wiped
before one of them (as ``/reset context``), so from then on only the carried state knows the item. Whether to
speak is the gate head's decision (p(speak) from the state after the tick, speak at >= 0.5); what to say is
the language model's.

- Timed states N and the word in the instruction: N is drawn from ``turns`` (1-8), and evaluation asks for
  ``heldout_words``, which training never says, so a model must read both from the input. The context is wiped
  before the first tick.
- With ``instructions``, training draws each appointment's phrasing from the instruction and them; evaluation says
  the held-out words again in each of ``heldout_instructions``, phrasings training never reads (split "heldout
  phrasing", scored beside the headline as ``heldout_phrasing_*``), so the read of N and W must follow the words'
  roles, not their places in one sentence.
- Self-initiation never states when: the item is due ``turns`` ticks after the instruction, but the context is
  wiped before a tick drawn from ``wipe_ticks`` (at most the due tick), so the number of ticks since the wipe
  does not tell when the item is due; only a clock started by the instruction does.

``silent_ticks`` sets how many ticks after the due one must stay silent (trained and scored), and ``quiet_rate``
the share of training episodes that keep no appointment: idle ticks from a zero state, all silent.

With ``appointments`` above one, an episode keeps several appointments one after another in one session: the
state carried from one to the next (a session's state is not zero when a new instruction comes), each later
instruction continuing the context of the ticks before it. Training draws how many; evaluation keeps the most in
every episode and scores each appointment, with ``orders`` giving the scores by its place in the session.

With ``read`` (a part of the instruction, e.g. ``"{turns} turn{s}, say {word}"``) the passes carry read labels for
the gated read (``RanConfig(summary="gated")``): the instruction's N and word are what to take in, a tick nothing, so
with a write on every pass the ticks step the reservoir on an input near zero and its own dynamics are the clock.
``ran battery --set timed.word_pool=...`` draws the words from the tokenizer's vocabulary.

Metrics, over the evaluation words (the held-out ones where there are any): **on time** (the headline: silent
on every tick before the due one, speaking on it, and the word right), ``on_time_gate`` (the timing alone),
``words_right`` (the word at the due tick, whatever the gate decided), ``early`` (it spoke before the due tick)
and ``silent_after`` (silent on every one of the ``silent_ticks`` ticks after). ``groups`` has them per words
split, due tick and wipe tick.
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
from ran.tasks.common import check_range, check_reads, check_targets, draw, exact, gate_counts, labelled, mean, pick
from ran.tasks.texts import DEFAULT_KEY_POOL

MAX_TURNS = 32
MAX_APPOINTMENTS = 8
HELDOUT_PHRASING = "heldout phrasing"  # the evaluation split of held-out instructions


def _by_phrasing(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["phrasing"], []).append(row)
    return grouped


@register
@dataclass(frozen=True)
class TimedTask(SampledTask):
    name: ClassVar[str] = "timed"
    metric: ClassVar[str] = "on time"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[18:24]  # trained on
    heldout_words: tuple[str, ...] = DEFAULT_KEY_POOL[36:42]  # evaluation only (empty: evaluate the trained words)
    turns: tuple[int, int] = (1, 8)  # N: the tick on which the word is due, counted from the instruction
    wipe_ticks: tuple[int, int] = (1, 1)  # the context is wiped before a tick drawn from this range (<= N)
    appointments: tuple[int, int] = (1, 1)  # appointments an episode keeps one after another (training draws how
    # many; evaluation keeps the most in every episode)
    instruction: str = "In {turns} turn{s}, say {word}."  # {s}: "s" unless N is 1
    instructions: tuple[str, ...] = ()  # more training phrasings, drawn with ``instruction`` per appointment
    heldout_instructions: tuple[str, ...] = ()  # phrasings only evaluation says (split "heldout phrasing")
    # What of the instruction the gated read takes in (the instruction's fields; "" = nothing), taught by read
    # labels, and the ticks read nothing; None: no read labels (the read learns from the targets alone).
    read: str | None = None
    # What of the instruction the running units' own read takes in (RanConfig.running_read; "" = nothing), the
    # ticks nothing; e.g. read "{word}" and running_read "{turns} turn{s}": the held units keep the word, the running
    # units count from N. None: no labels for that read.
    running_read: str | None = None
    answer_template: str = " {word}"
    # Idle ticks after each due tick, every one labelled silent and scored (``silent_after``): a gate that fires
    # again two ticks late is missed by one tick alone (README, "Seed 1 of the same arm").
    silent_ticks: int = 1
    # The share of training episodes with no appointment: idle ticks from a zero state (as after ``/reset state``
    # and ``/reset context`` in a session), every one labelled silent, so a wiped clock is not a due one.
    quiet_rate: float = 0.0
    per_step: int = 8
    eval_count: int = 24  # evaluation episodes per words split, spread evenly over (due tick, wipe tick)

    def __post_init__(self) -> None:
        check_range("turns", self.turns, 1, MAX_TURNS)
        check_range("wipe_ticks", self.wipe_ticks, 1, MAX_TURNS)
        check_range("appointments", self.appointments, 1, MAX_APPOINTMENTS)
        if self.wipe_ticks[0] > self.turns[0]:
            raise ConfigError(f"{self.name}: wipe_ticks starts at {self.wipe_ticks[0]}, after the earliest due tick "
                              f"{self.turns[0]}: the context must be wiped by the time the item is due")
        phrasings = (self.instruction, *self.instructions, *self.heldout_instructions)
        for phrasing in phrasings:
            check_template(phrasing, f"{self.name} instruction", ("turns", "s", "word"), required=("word",))
        trained = {self.instruction, *self.instructions}
        for phrasing in self.heldout_instructions:
            if phrasing in trained:
                raise ConfigError(f"{self.name}: held-out instruction {phrasing!r} is also a training phrasing")
        check_template(self.answer_template, f"{self.name} answer_template", ("word",), required=("word",))
        check_reads(self, ("turns", "s", "word"), phrasings, {"turns": 2, "s": "s", "word": "tiger"},
                    "the instruction ")
        if not self.words:
            raise ConfigError(f"{self.name}: give at least one word")
        overlap = sorted(set(self.words) & set(self.heldout_words))
        if overlap:
            raise ConfigError(f"{self.name}: held-out word {overlap[0]!r} is also a training word")
        if self.per_step < 1 or self.eval_count < 1:
            raise ConfigError("per_step and eval_count must be >= 1")
        if not 1 <= self.silent_ticks <= MAX_TURNS:
            raise ConfigError(f"{self.name}: silent_ticks {self.silent_ticks} is outside 1-{MAX_TURNS}")
        if not 0.0 <= self.quiet_rate < 1.0:
            raise ConfigError(f"{self.name}: quiet_rate {self.quiet_rate} is outside [0, 1): a share of the "
                              "training episodes")
        if self.eval_count < len(self.moments()):
            raise ConfigError(f"{self.name}: eval_count {self.eval_count} is fewer than the {len(self.moments())} "
                              "(due tick, wipe tick) pairs to evaluate")

    def moments(self) -> list[tuple[int, int]]:
        """Every (due tick, wipe tick) an episode can have."""
        return [(due, wipe) for due in range(self.turns[0], self.turns[1] + 1)
                for wipe in range(self.wipe_ticks[0], min(self.wipe_ticks[1], due) + 1)]

    def check(self, renderer: Renderer) -> None:
        check_targets(renderer, self.name,
                      [self.answer_template.format(word=w) for w in (*self.words, *self.heldout_words)])

    def appointment(self, word: str, due: int, wipe: int, first: bool, phrasing: str | None = None) -> list[Pass]:
        """The instruction (``phrasing``, default ``instruction``) and its ticks; a later appointment's instruction
        continues the session's context."""
        ticks = [Pass.tick(wipe=index == wipe, speak=index == due,
                           target=self.answer_template.format(word=word) if index == due else None)
                 for index in range(1, due + 1 + self.silent_ticks)]  # the due tick, then silent_ticks silent
        fields = {"turns": due, "s": "" if due == 1 else "s", "word": word}
        instruction = Pass((phrasing or self.instruction).format(**fields), wipe=first)
        return list(labelled(self, [instruction, *ticks], [fields, *[None] * len(ticks)]))  # the ticks read nothing

    def make(self, word: str, due: int, wipe: int, split: str, before: tuple[tuple, ...] = (),
             phrasing: str | None = None) -> Episode:
        """An episode that keeps the appointments ``before`` ((word, due tick, wipe tick) or (..., phrasing)), then
        this one (said in ``phrasing``, default ``instruction``)."""
        passes: list[Pass] = []
        appointments = []
        for order, (item, item_due, item_wipe, *phrased) in enumerate((*before, (word, due, wipe, phrasing)), 1):
            said = (phrased[0] if phrased else None) or self.instruction
            offset = sum(a["due"] + self.silent_ticks for a in appointments)  # its first tick among the scored
            appointments.append({"word": item, "due": item_due, "wipe": item_wipe, "order": order, "offset": offset,
                                 "phrasing": said})
            passes.extend(self.appointment(item, item_due, item_wipe, first=order == 1, phrasing=said))
        return Episode(tuple(passes), label=word, group=f"due={due}",
                       info={"word": word, "due": due, "wipe": wipe, "split": split, "appointments": appointments})

    def quiet(self, ticks: int) -> Episode:
        """No appointment: ``ticks`` idle ticks from a zero state and an empty context, each labelled silent."""
        passes = labelled(self, [Pass.tick(wipe=index == 0, speak=False) for index in range(ticks)], [None] * ticks)
        return Episode(passes, label="", group="quiet", info={"split": "quiet", "appointments": []})

    def episode(self, generator: torch.Generator, evaluation: bool = False) -> Episode:
        if self.quiet_rate and float(torch.rand((), generator=generator)) < self.quiet_rate:  # drawn only when set,
            return self.quiet(draw(generator, 1, self.turns[1] + self.silent_ticks))  # so the draws stay as before
        low, high = self.appointments  # drawn only when it can vary, so a one-appointment task's draws are as before
        items = []
        for _ in range(low if low == high else draw(generator, low, high)):
            word, due = str(pick(generator, self.words)), draw(generator, *self.turns)
            wipe = draw(generator, self.wipe_ticks[0], min(self.wipe_ticks[1], due))
            # drawn only from a pool, so a one-phrasing task's draws are as before
            phrasing = str(pick(generator, (self.instruction, *self.instructions))) if self.instructions else None
            items.append((word, due, wipe, phrasing))
        *before, (word, due, wipe, phrasing) = items
        return self.make(word, due, wipe, "trained", before=tuple(before), phrasing=phrasing)

    def evaluation_episodes(self) -> list[Episode]:
        """``eval_count`` episodes per words split, each keeping the most appointments, cycling through every (due
        tick, wipe tick) and the words; with ``heldout_instructions``, as many again of the last split's words, each
        appointment said in a held-out phrasing (cycling through them)."""
        moments, count = self.moments(), self.appointments[1]
        splits = [("trained", self.words, ())] + ([("heldout", self.heldout_words, ())] if self.heldout_words else [])
        if self.heldout_instructions:
            splits.append((HELDOUT_PHRASING, splits[-1][1], self.heldout_instructions))
        episodes = []
        for split, words, phrasings in splits:
            for index in range(self.eval_count):
                items = [(words[(index + order) % len(words)], *moments[(index + order) % len(moments)],
                          phrasings[(index + order) % len(phrasings)] if phrasings else None)
                         for order in range(count)]  # so every place in the session sees every moment
                *before, (word, due, wipe, phrasing) = items
                episodes.append(self.make(word, due, wipe, split, before=tuple(before), phrasing=phrasing))
        return episodes

    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for episode, predicted in zip(episodes, predictions, strict=True):
            for appointment in episode.info["appointments"]:
                due, start = appointment["due"], appointment["offset"]
                ticks = predicted[start:start + due + self.silent_ticks]  # ticks[due - 1] is the due tick
                speaks = [p.speak is not None and p.speak >= 0.5 for p in ticks]
                right = exact(ticks[due - 1], renderer, self.answer_template.format(word=appointment["word"]))
                timing = float(speaks[due - 1] and not any(speaks[:due - 1]))
                rows.append({"split": episode.info["split"], "due": due, "wipe": appointment["wipe"],
                             "phrasing": appointment["phrasing"],
                             "order": appointment["order"], "on_time": timing * right, "on_time_gate": timing,
                             "words_right": right, "early": float(any(speaks[:due - 1])),
                             "silent_after": float(not any(speaks[due:])), "word": appointment["word"],
                             "speaks": speaks,
                             "said": renderer.tokenizer.decode(ticks[due - 1].tokens)})
        split = "heldout" if any(r["split"] == "heldout" for r in rows) else "trained"
        measures = ("on_time", "on_time_gate", "words_right", "early", "silent_after")
        headline = [r for r in rows if r["split"] == split]
        phrased = [r for r in rows if r["split"] == HELDOUT_PHRASING]
        groups, by_order = {}, {}
        for row in rows:
            groups.setdefault((row["split"], row["due"], row["wipe"]), []).append(row)
        for row in headline:
            by_order.setdefault(row["order"], []).append(row)
        orders = [{"order": order, "n": len(members), **{m: mean([r[m] for r in members]) for m in measures}}
                  for order, members in sorted(by_order.items())]  # by the appointment's place in its session
        return {"value": mean([r["on_time"] for r in headline]), "split": split,
                **{m: mean([r[m] for r in headline]) for m in measures[1:]},
                "groups": [{"split": s, "due": d, "wipe": w, "n": len(members),
                            **{m: mean([r[m] for r in members]) for m in measures}}
                           for (s, d, w), members in sorted(groups.items())],
                **({"orders": orders} if self.appointments[1] > 1 else {}),
                **{f"heldout_phrasing_{m}": mean([r[m] for r in phrased]) for m in measures[:3] if phrased},
                **({"phrasings": [{"phrasing": p, "n": len(members), **{m: mean([r[m] for r in members])
                                                                         for m in measures[:3]}}
                                  for p, members in _by_phrasing(phrased).items()]} if phrased else {}),
                "gate": gate_counts(episodes, predictions),
                "predictions": [{k: r[k] for k in ("split", "word", "due", "wipe", "order", "speaks", "said")}
                                | ({"phrasing": r["phrasing"]} if r["split"] == HELDOUT_PHRASING else {})
                                for r in rows]}


@register
@dataclass(frozen=True)
class InitiativeTask(TimedTask):
    """Self-initiation: the due tick is not stated, and the wipe comes at a varying tick before it."""

    name: ClassVar[str] = "initiative"
    metric: ClassVar[str] = "on time"

    words: tuple[str, ...] = DEFAULT_KEY_POOL[24:30]
    heldout_words: tuple[str, ...] = DEFAULT_KEY_POOL[42:48]
    turns: tuple[int, int] = (3, 3)
    wipe_ticks: tuple[int, int] = (1, 3)
    instruction: str = "Remind me about the {word} later."
