"""One memory: tell the model a value in your own words, talk about other things, wipe the context, ask.

    pass 1: "My friend's name is Orsolya Vance."         (a store phrasing; no target)
    passes 2..d+1: intervening passes                    (distractor sentences, idle ticks, ordinary chat turns)
    -- context wiped; only the reservoir state carries over --
    pass d+2: "What is my friend's name?"                -> " Orsolya Vance" + the format's stop token

Values are of five kinds (``ran.tasks.memory_texts``): single-token words, made-up names, 3-6 digit
numbers, two-word places and coined words of vocabulary pieces, each with a held-out split that training
never reads; store and recall phrasings have held-out splits too. Every answer ends with the format's stop
token, so a decoded reply is scored exactly as a session would show it: the value, then the end of the reply.

Intervening passes are the kinds a session has: a *distractor* sentence read from a wiped context, an
*idle* tick continuing the context, and an ordinary chat *turn* (a question or an instruction) whose reply
is the base model's own greedy reply (``replies``, filled in by :func:`ran.harm.with_base_replies`); a turn
continues the context or starts a new one. A fraction ``harm_fraction`` of the training episodes end
in an ordinary turn instead of the recall, with the base model's reply as the target: the state then
holds a value, and the readout learns to leave ordinary replies as the base model gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.passes import STOP, Renderer
from ran.tasks.base import Prediction, Task, register
from ran.tasks.common import EVAL_SEED, draw, pick
from ran.tasks.memory_texts import (
    EVERYDAY_DISTRACTORS,
    FIRST_NAMES,
    HELDOUT_EVERY,
    HELDOUT_RECALL_TEMPLATES,
    HELDOUT_STORE_TEMPLATES,
    HELDOUT_TEXTS,
    HELDOUT_TURNS,
    KINDS,
    OPENERS,
    PLACE_NAMES,
    PLACE_PREFIXES,
    PLACE_SUFFIXES,
    RECALL_TEMPLATES,
    STORE_TEMPLATES,
    SURNAMES,
    TURNS,
)
from ran.tasks.recall import check_delay_range
from ran.tasks.texts import EVAL_DISTRACTORS, TRAIN_DISTRACTORS

FILLERS = ("distractor", "idle", "turn")
IDLE_LABEL = "(idle tick)"  # an idle tick among the passes a prediction lists
READ_SPANS = ("value", "last")
SLOT = "{value}"

# The evaluation distractors: the shared ones (ran.tasks.texts) but one. "The conference will be held in Lisbon."
# names a place, and by this task's own phrasings ("The wedding will be in {value}.") a sentence that names a place
# stores it, so a reply " Lisbon" there is the task working, not a wrong write. Like the training statements
# (EVERYDAY_DISTRACTORS), the memory task's distractors name no person, place or number (tests check); the sentence
# keeps its place in the pool, so every other drawn pass stays the same.
NAMES_A_PLACE = "The conference will be held in Lisbon."
MEMORY_EVAL_DISTRACTORS: tuple[str, ...] = tuple(
    "The conference will be held in the main hall." if sentence == NAMES_A_PLACE else sentence
    for sentence in EVAL_DISTRACTORS)


def _split(items: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, held-out) parts of a component list: every HELDOUT_EVERY-th item is held out."""
    heldout = tuple(item for i, item in enumerate(items) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1)
    return tuple(item for item in items if item not in heldout), heldout


def builtin_values(kind: str, count: int, heldout: bool, seed: int = 0) -> tuple[str, ...]:
    """``count`` distinct values of a multi-token kind, drawn (seeded) from its training or held-out part.

    Names and places combine components of one part only; numbers of 3-6 digits are held out when the
    sum of their digits is a multiple of 5 (a split any number falls on one side of).
    """
    rng = np.random.default_rng([seed, int(heldout), KINDS.index(kind)])
    chosen: dict[str, None] = {}
    if kind == "number":
        while len(chosen) < count:
            digits = int(rng.integers(3, 7))
            number = str(int(rng.integers(10 ** (digits - 1), 10**digits)))
            if (sum(map(int, number)) % 5 == 0) == heldout:
                chosen[number] = None
        return tuple(chosen)
    if kind == "name":
        firsts, lasts = (part[int(heldout)] for part in (_split(FIRST_NAMES), _split(SURNAMES)))
    elif kind == "place":  # "Port Elvar" or "Elvar Falls"
        names = _split(PLACE_NAMES)[int(heldout)]
        firsts = PLACE_PREFIXES + names
        lasts = names + PLACE_SUFFIXES
    else:
        raise ConfigError(f"kind '{kind}' has no built-in values: give them explicitly")
    size = len(firsts) * len(lasts) if kind == "name" else (len(PLACE_PREFIXES) + len(PLACE_SUFFIXES)) * len(names)
    if count > size:
        raise ConfigError(f"the built-in {'held-out ' if heldout else ''}{kind} pool has {size} values, "
                          f"fewer than {count}")
    while len(chosen) < count:
        first, last = firsts[int(rng.integers(len(firsts)))], lasts[int(rng.integers(len(lasts)))]
        if kind == "place" and (first in PLACE_PREFIXES) == (last in PLACE_SUFFIXES):
            continue  # a place is a prefix and a name, or a name and a suffix
        chosen[f"{first} {last}"] = None
    return tuple(chosen)


def _mapping(data: dict[str, Any], what: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be an object of kind -> list of strings, got {type(data).__name__}")
    result = {}
    for kind, items in data.items():
        if kind not in KINDS:
            raise ConfigError(f"{what}: unknown kind '{kind}': choose from {', '.join(KINDS)}")
        if isinstance(items, str) or not all(isinstance(item, str) for item in items):
            raise ConfigError(f"{what}['{kind}'] must be a list of strings, got {items!r:.60}")
        result[kind] = tuple(items)
    return result


@register
@dataclass(frozen=True)
class MemoryTask(Task):
    name: ClassVar[str] = "memory"
    metric: ClassVar[str] = "recall"

    kinds: tuple[str, ...] = ()  # the kinds trained and scored; empty: every kind given values, in KINDS order
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> training values
    heldout_values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> values never trained on
    store_templates: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(STORE_TEMPLATES))
    recall_templates: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(RECALL_TEMPLATES))
    heldout_store_templates: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(HELDOUT_STORE_TEMPLATES))
    heldout_recall_templates: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(HELDOUT_RECALL_TEMPLATES))
    answer_template: str = " {value}" + STOP  # the recall's target: the value, then the end of the reply
    # Intervening passes in training, drawn per episode (inclusive). With a switched write, 0-1 keeps a value
    # to 32 passes (README, "One memory").
    train_delays: tuple[int, int] = (0, 1)
    eval_delays: tuple[int, ...] = (0, 2, 4, 8, 16, 32)
    filler_weights: dict[str, float] = field(default_factory=lambda: {"distractor": 1.0, "idle": 1.0, "turn": 1.0})
    keep_context: float = 0.5  # probability that an ordinary turn continues the context (else a new one)
    turns: tuple[str, ...] = TURNS  # ordinary turns read in training
    heldout_turns: tuple[str, ...] = HELDOUT_TURNS  # ordinary turns read in evaluation only
    heldout_texts: tuple[str, ...] = HELDOUT_TEXTS  # plain text for the no-harm perplexity check
    # The shared training distractors and everyday statements (first person, plans): 64 + 185 (README, "What the
    # write opens on": with 64 hidden units in the write's switch it opens on 0.12-0.17 of 60 held-out statements,
    # where one linear unit on 64 distractors opened on 0.32).
    train_distractors: tuple[str, ...] = TRAIN_DISTRACTORS + EVERYDAY_DISTRACTORS
    eval_distractors: tuple[str, ...] = MEMORY_EVAL_DISTRACTORS
    replies: dict[str, str] = field(default_factory=dict)  # turn -> the base model's greedy reply (stop included)
    per_step: int = 32  # training episodes per step
    # Of them, episodes ending in an ordinary turn (the base reply as target); none needed with a switched recall.
    harm_fraction: float = 0.0
    eval_values: int = 25  # held-out values per kind evaluated at every delay (and as many trained ones)
    heldout_template_delays: tuple[int, ...] = (0, 4, 8)  # delays at which held-out phrasings are evaluated
    # What a store pass labels for a trained read: every token of the value, or its last token only (a word
    # that opens a line has no leading space and splits into pieces, e.g. "start" "ling"; its last piece is
    # where the word is whole).
    read_span: str = "value"
    # A value that opens its store phrasing has no leading space there, so it is other tokens ("cattle, that's the
    # word" reads "c" "attle", not " cattle"). True (the recipe since r73): the reply says it as the store did, and
    # the nearest write's decoder is fit on both forms (``stored_forms``); False (r68): the reply is " cattle"
    # whatever the store, which the decoder cannot name from "c" "attle" (README, "One memory": 0.23 of such words).
    answer_as_stored: bool = True
    # Training only: the share of store passes whose phrasing (one that does not open with the value) gets an
    # opener ("Okay, ", "Between us, ") in front, so a message's first token is often not the value and rarely a
    # word a read gate has seen open a message (README, "One memory": r69's gate opened on "Don" in "Don't ...").
    opener_rate: float = 0.3
    openers: tuple[str, ...] = OPENERS

    def __post_init__(self) -> None:
        for name in ("values", "heldout_values", "store_templates", "recall_templates", "heldout_store_templates",
                     "heldout_recall_templates"):
            object.__setattr__(self, name, _mapping(getattr(self, name), name))
        object.__setattr__(self, "kinds", tuple(self.kinds) or tuple(k for k in KINDS if self.values.get(k)))
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ConfigError(f"kinds must be distinct and not empty (give values for at least one kind), got "
                              f"{list(self.kinds)}")
        for kind in self.kinds:
            if kind not in KINDS:
                raise ConfigError(f"unknown kind '{kind}': choose from {', '.join(KINDS)}")
            for name in ("values", "heldout_values", "store_templates", "recall_templates"):
                if not getattr(self, name).get(kind):
                    raise ConfigError(f"{name} has no entries for kind '{kind}': give at least one")
            train, heldout = self.values[kind], self.heldout_values[kind]
            for name, items in (("values", train), ("heldout_values", heldout)):
                if any(not item.strip() for item in items):
                    raise ConfigError(f"{name}['{kind}'] has an empty value")
                if len(set(items)) != len(items):
                    raise ConfigError(f"{name}['{kind}'] has duplicates, e.g. "
                                      f"{next(v for v in items if items.count(v) > 1)!r}")
            overlap = sorted(set(train) & set(heldout))
            if overlap:
                raise ConfigError(f"held-out {kind} value {overlap[0]!r} is also a training value: held-out values "
                                  "must be ones training never reads")
            for name in ("store_templates", "heldout_store_templates"):
                for template in getattr(self, name).get(kind, ()):
                    if template.count(SLOT) != 1:
                        raise ConfigError(f"{name}['{kind}'] template {template!r} must contain {SLOT} exactly once")
            for name in ("recall_templates", "heldout_recall_templates"):
                for template in getattr(self, name).get(kind, ()):
                    if SLOT in template:
                        raise ConfigError(f"{name}['{kind}'] template {template!r} must not contain the value")
            for split in ("store", "recall"):
                same = set(getattr(self, f"{split}_templates")[kind]) & set(
                    getattr(self, f"heldout_{split}_templates").get(kind, ()))
                if same:
                    raise ConfigError(f"held-out {split} template {sorted(same)[0]!r} is also a training template")
        if self.answer_template.count(SLOT) != 1:
            raise ConfigError(f"answer template {self.answer_template!r} must contain {SLOT} exactly once")
        check_delay_range(tuple(self.train_delays))
        if not self.eval_delays:
            raise ConfigError("give at least one evaluation delay")
        for delay in (*self.eval_delays, *self.heldout_template_delays):
            check_delay_range((delay, delay))
        if set(self.filler_weights) - set(FILLERS) or not any(w > 0 for w in self.filler_weights.values()):
            raise ConfigError(f"filler_weights must give a weight > 0 to some of {', '.join(FILLERS)}, "
                              f"got {self.filler_weights}")
        if not 0 <= self.keep_context <= 1 or not 0 <= self.harm_fraction < 1:
            raise ConfigError("keep_context must be in [0, 1] and harm_fraction in [0, 1)")
        shared = sorted(set(self.train_distractors) & set(self.eval_distractors))
        if shared:
            raise ConfigError(f"distractor {shared[0]!r} is both a training and an evaluation distractor: evaluation "
                              "distractors must be sentences training never reads")
        if set(self.turns) & set(self.heldout_turns):
            raise ConfigError(f"turn {sorted(set(self.turns) & set(self.heldout_turns))[0]!r} is both a training "
                              "and a held-out turn")
        if not isinstance(self.answer_as_stored, bool):
            raise ConfigError(f"answer_as_stored must be true or false, got {self.answer_as_stored!r}")
        if not all(isinstance(opener, str) and opener.strip() for opener in self.openers):
            raise ConfigError(f"openers must be non-empty strings, got {list(self.openers)!r:.80}")
        if not isinstance(self.opener_rate, int | float) or not 0 <= self.opener_rate <= 1 or (
                self.opener_rate > 0 and not self.openers):
            raise ConfigError(f"opener_rate must be in [0, 1] (with openers to draw), got {self.opener_rate!r}")
        if self.read_span not in READ_SPANS:
            raise ConfigError(f"read_span '{self.read_span}' is not one of {', '.join(READ_SPANS)}")
        for name in ("per_step", "eval_values"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")

    # ----- construction ---------------------------------------------------------------------------------
    @classmethod
    def builtin(cls, words: tuple[str, ...], heldout_words: tuple[str, ...], per_kind: int = 1000,
                heldout_per_kind: int = 200, coined: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
                **overrides) -> MemoryTask:
        """The built-in pools: the given vocabulary words (and coined words: (training, held-out), drawn from
        the tokenizer by ``ran.tasks.vocab.coined_words``) plus ``per_kind`` names, numbers and places."""
        values = {"word": tuple(words)}
        heldout = {"word": tuple(heldout_words)}
        if coined is not None:
            values["coined"], heldout["coined"] = (tuple(part) for part in coined)
        for kind in ("name", "number", "place"):
            values[kind] = builtin_values(kind, per_kind, heldout=False)
            heldout[kind] = builtin_values(kind, heldout_per_kind, heldout=True)
        return cls(values=values, heldout_values=heldout, **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryTask:
        data = dict(data)
        for name in ("train_delays", "eval_delays", "heldout_template_delays", "kinds", "turns", "heldout_turns",
                     "heldout_texts", "train_distractors", "eval_distractors", "openers"):
            if name in data:
                if not isinstance(data[name], list | tuple):
                    raise ConfigError(f"{name} must be a list, got {data[name]!r:.60}")
                data[name] = tuple(data[name])
        return super().from_dict(data)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for name, value in data.items():
            if isinstance(value, dict):
                data[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        return data

    # ----- rendering --------------------------------------------------------------------------------------
    def answer(self, value: str, template: str | None = None) -> str:
        """The recall's target; with ``answer_as_stored``, a value that opens its store phrasing (``template``) is
        said without the leading space an answer template " {value}" gives it."""
        answer = self.answer_template.replace(SLOT, value)
        if (self.answer_as_stored and template is not None and template.startswith(SLOT)
                and self.answer_template.startswith(" " + SLOT)):
            answer = answer[1:]
        return answer

    def stored_forms(self) -> tuple[str, ...]:
        """Every training value as the store phrasings tokenise it: after a space, and (with ``answer_as_stored``)
        also without one for a kind with a phrasing that opens with the value."""
        forms = []
        for kind in self.kinds:
            forms += [f" {value}" for value in self.values[kind]]
            if self.answer_as_stored and any(t.startswith(SLOT) for t in self.store_templates[kind]):
                forms += list(self.values[kind])
        return tuple(forms)

    def opening_kinds(self) -> tuple[str, ...]:
        """With ``answer_as_stored``: the kinds with a store phrasing, trained or held out, that opens with the
        value (the decoder's report scores their held-out values in that form too)."""
        if not self.answer_as_stored:
            return ()
        return tuple(kind for kind in self.kinds
                     if any(t.startswith(SLOT) for pool in (self.store_templates, self.heldout_store_templates)
                            for t in pool.get(kind, ())))

    def _opened(self, template: str, generator: torch.Generator) -> str:
        """``template`` with an opener in front, at ``opener_rate`` (never before a value that opens it)."""
        if self.opener_rate <= 0 or template.startswith(SLOT) or not (
                torch.rand((), generator=generator) < self.opener_rate):
            return template
        opener = str(pick(generator, self.openers))
        keep_capital = opener.endswith(("! ", ": ")) or template.split(" ")[0].split("'")[0] == "I"
        return opener + (template if keep_capital else template[0].lower() + template[1:])

    def check(self, renderer: Renderer) -> None:
        for kind in self.kinds:
            for value in (*self.values[kind][:3], *self.heldout_values[kind][:3]):
                renderer.target(self.answer(value))  # refuses an answer that encodes to nothing
        if self.filler_weights.get("turn", 0) > 0 or self.harm_fraction > 0:
            missing = [t for t in (*self.turns, *self.heldout_turns) if t not in self.replies]
            if missing:
                raise ConfigError(f"{len(missing)} ordinary turns have no base-model reply (e.g. {missing[0]!r}): "
                                  "fill them with ran.harm.with_base_replies before training")

    def decoding(self, renderer: Renderer) -> dict[str, Any]:
        return {"stop_tokens": renderer.stop_tokens, "extra_tokens": 4}

    # ----- episodes ---------------------------------------------------------------------------------------
    def _fillers(self, delay: int, evaluation: bool, generator: torch.Generator) -> list[Pass]:
        kinds = [k for k in FILLERS if self.filler_weights.get(k, 0) > 0]
        weights = torch.tensor([self.filler_weights[k] for k in kinds], dtype=torch.float64)
        turns = self.heldout_turns if evaluation else self.turns
        distractors = self.eval_distractors if evaluation else self.train_distractors
        passes = []
        for _ in range(delay):
            kind = kinds[int(torch.multinomial(weights, 1, generator=generator))]
            if kind == "idle":
                passes.append(Pass.tick(read="", recall=False))
            elif kind == "distractor":
                passes.append(Pass(str(pick(generator, distractors)), read="", recall=False))
            else:
                turn = str(pick(generator, turns))
                keep = bool(torch.rand((), generator=generator) < self.keep_context)
                passes.append(Pass(turn, wipe=not keep, reply=self.replies.get(turn), read="", recall=False))
        return passes

    def store(self, template: str, value: str) -> Pass:
        """The store pass (a new context); its labels tell a trained read to take in the value (or its last
        token, ``read_span``), and a switched recall that the pass needs no memory."""
        return Pass(template.replace(SLOT, value), read=value, recall=False, read_last=self.read_span == "last")

    def training_values(self) -> tuple[str, ...]:
        """Every value training stores, of the kinds it trains (what ``value_read`` "decoded"'s decoder is fit on)."""
        return tuple(value for kind in self.kinds for value in self.values[kind])

    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        low, high = self.train_delays
        harm = round(self.per_step * self.harm_fraction)
        episodes = []
        for index in range(self.per_step):
            kind = str(pick(generator, self.kinds))
            value = str(pick(generator, self.values[kind]))
            template = str(pick(generator, self.store_templates[kind]))
            store = self.store(self._opened(template, generator), value)
            fillers = self._fillers(draw(generator, low, high), False, generator)
            if index < harm:  # an ordinary turn with the value in the state: the base model's reply
                turn = str(pick(generator, self.turns))
                last = Pass(turn, target=self.replies[turn], read="", recall=False)
            else:
                last = Pass(str(pick(generator, self.recall_templates[kind])), target=self.answer(value, template),
                            read="", recall=True)
            episodes.append(Episode((store, *fillers, last), label=value))
        return episodes

    def evaluation_episodes(self) -> list[Episode]:
        """Per kind: ``eval_values`` held-out values at every delay with training phrasings, and with
        held-out phrasings at ``heldout_template_delays``; and as many training values at every delay.
        (Ordinary turns are scored apart, by ``ran.harm``.)"""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        episodes = []
        plans = [("heldout", "trained", self.eval_delays), ("trained", "trained", self.eval_delays),
                 ("heldout", "heldout", self.heldout_template_delays)]
        for kind in self.kinds:
            for values_split, phrasing, delays in plans:
                stores = (self.heldout_store_templates if phrasing == "heldout" else self.store_templates).get(kind)
                recalls = (self.heldout_recall_templates if phrasing == "heldout" else self.recall_templates).get(kind)
                if not stores or not recalls:
                    continue
                pool = self.heldout_values[kind] if values_split == "heldout" else self.values[kind]
                for delay in delays:
                    for value in pool[:self.eval_values]:
                        template = str(pick(generator, stores))
                        store = self.store(template, value)
                        fillers = self._fillers(delay, True, generator)
                        recall = Pass(str(pick(generator, recalls)), target=self.answer(value, template))
                        info = {"kind": kind, "values": values_split, "phrasing": phrasing, "value": value,
                                "delay": delay}
                        episodes.append(Episode((store, *fillers, recall), label=value,
                                                group=f"{kind}/{values_split}/{phrasing}/{delay}", info=info))
        return episodes

    # ----- metric -----------------------------------------------------------------------------------------
    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        """Exact recall (the decoded reply is the answer, the whitespace around it aside, and then the stop
        token) and how often the reply stops, per (kind, value split, phrasing split, delay). ``value``: held-out
        values, training phrasings, delays 0-8. Each prediction also says whether its tokens are the target's
        (``tokens_exact``): "3133" said without the space token " 3133" begins with is the value, not its tokens."""
        stop_tokens = set(renderer.stop_tokens)
        groups: dict[tuple, dict[str, list[float]]] = {}
        details = []
        for episode, (prediction,) in zip(episodes, predictions, strict=True):
            answer = episode.passes[-1].target
            target = renderer.target(answer)
            info = episode.info
            exact = float(said_exactly(prediction.tokens, answer, renderer))
            stopped = float(any(t in stop_tokens for t in prediction.tokens))
            group = groups.setdefault((info["kind"], info["values"], info["phrasing"], info["delay"]),
                                      {"recall": [], "stopped": []})
            group["recall"].append(exact)
            group["stopped"].append(stopped)
            details.append({"kind": info["kind"], "value": info["value"], "values": info["values"],
                            "phrasing": info["phrasing"], "delay": info["delay"],
                            "store": episode.passes[0].text, "question": episode.passes[-1].text,  # phrasings that miss
                            "between": [IDLE_LABEL if p.idle else p.text for p in episode.passes[1:-1]],
                            "reply": renderer.tokenizer.decode(prediction.tokens, skip_special_tokens=True),
                            "exact": bool(exact), "tokens_exact": prediction.tokens == target,
                            "stopped": bool(stopped)})
        rows = [{"kind": kind, "values": values, "phrasing": phrasing, "delay": delay,
                 "recall": _mean(g["recall"]), "stopped": _mean(g["stopped"]), "n": len(g["recall"])}
                for (kind, values, phrasing, delay), g in sorted(groups.items())]
        headline = [r for r in rows if r["values"] == "heldout" and r["phrasing"] == "trained" and r["delay"] <= 8]
        return {
            "value": _weighted(headline, "recall"),
            "stopped": _weighted(rows, "stopped"),
            "groups": rows,
            "predictions": details,
        }


def said_exactly(tokens: list[int], answer: str, renderer: Renderer) -> bool:
    """Whether a reply's ``tokens`` say ``answer``: decoded (special tokens kept, so one inside the reply is a miss),
    it is the answer, the whitespace around both aside; an answer that ends in :data:`STOP` must stop there (the
    reply is read up to its first stop token, which must come)."""
    if answer.endswith(STOP):
        stops = [i for i, token in enumerate(tokens) if token in renderer.stop_tokens]
        if not stops:
            return False
        tokens, answer = tokens[:stops[0]], answer.removesuffix(STOP)
    return renderer.tokenizer.decode(tokens).strip() == answer.strip()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _weighted(rows: list[dict[str, Any]], key: str) -> float:
    total = sum(r["n"] for r in rows)
    return sum(r[key] * r["n"] for r in rows) / total if total else float("nan")
