"""Cross-pass recall, one hop or many: store a key, pass through ``delay`` intervening passes, recall it.

    pass 1: "The secret word is apple."                 (no target)
    passes 2..d+1: intervening passes                    (no target)
    -- context wiped; only the reservoir state carries over --
    pass d+2: "The secret word was"                     -> " apple"

An intervening pass is a *distractor* (a sentence from a pool, read from a wiped context), an *idle*
tick (the format's idle text, continuing the context, exactly as a session's idle tick) or a *blank*
tick (the idle text read from a wiped context). Training
draws a delay per episode from ``train_delays`` (inclusive), so every step mixes delays; evaluation
runs every key at every delay in ``eval_delays`` for each filler in ``eval_fillers``, with distractors
from a pool training never reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from ran.episodes import Episode, Pass
from ran.errors import ConfigError
from ran.fileio import read_json_object
from ran.passes import Renderer
from ran.schema import check_template, parse_range
from ran.tasks.base import Prediction, Task, register
from ran.tasks.common import EVAL_SEED, check_reads, labelled
from ran.tasks.texts import DEFAULT_KEY_POOL, EVAL_DISTRACTORS, TRAIN_DISTRACTORS, words_of

FILLERS = ("distractor", "idle", "blank", "mixed")
MAX_DELAY = 256  # intervening passes; longer episodes are refused (they cost one pass each)


def parse_delays(text: str) -> tuple[int, int]:
    """``"0-8"`` -> (0, 8); ``"4"`` -> (4, 4) (:func:`ran.schema.parse_range`), at most :data:`MAX_DELAY`."""
    bounds = parse_range(text, "delay")
    check_delay_range(bounds)
    return bounds


def check_delay_range(bounds: tuple[int, ...]) -> None:
    if len(bounds) != 2:
        raise ConfigError(f"a delay range has two bounds (low, high), got {bounds}")
    low, high = bounds
    if low < 0:
        raise ConfigError(f"delays count intervening passes and must be >= 0, got {low}")
    if low > high:
        raise ConfigError(f"delay range {low}-{high} is reversed: give LOW-HIGH with LOW <= HIGH")
    if high > MAX_DELAY:
        raise ConfigError(f"delay {high} is above the cap of {MAX_DELAY} intervening passes")


@register
@dataclass(frozen=True)
class RecallTask(Task):
    name: ClassVar[str] = "recall"
    metric: ClassVar[str] = "recall"

    keys: tuple[str, ...] = DEFAULT_KEY_POOL[:6]
    store_template: str = "The secret word is {key}."
    recall_template: str = "The secret word was"
    answer_template: str = " {key}"  # the target; must end with {key}, and the key must be its last token
    train_delays: tuple[int, int] = (0, 0)  # intervening passes in training, drawn per episode (inclusive)
    eval_delays: tuple[int, ...] = (0,)
    filler: str = "distractor"  # what the intervening passes are in training: distractor | idle | mixed
    eval_fillers: tuple[str, ...] = ("distractor",)
    train_distractors: tuple[str, ...] = TRAIN_DISTRACTORS
    eval_distractors: tuple[str, ...] = EVAL_DISTRACTORS
    repeats: int = 1  # episodes per key in a training step
    heldout_keys: tuple[str, ...] = ()  # never trained on; evaluated beside the trained keys
    keys_per_step: int = 0  # training keys drawn per step, without replacement (0 = every key)
    eval_keys: int = 0  # trained keys evaluated, the first N of them (0 = every key)
    # What of the store pass the gated read takes in, a template of {key} and {text}, every other pass reading nothing;
    # running_read the same for the running units' read. None: no labels (ran.tasks.common.labelled).
    read: str | None = None
    running_read: str | None = None

    def __post_init__(self) -> None:
        for name in ("keys", "heldout_keys"):
            if isinstance(getattr(self, name), str):  # a string is a sequence of letters, not of keys
                raise ConfigError(f"{self.name} {name} = {getattr(self, name)!r} is not valid: expected a list of "
                                  f"strings, e.g. [{getattr(self, name)!r}]")
        if not self.keys:
            raise ConfigError("the key list is empty: give at least one key")
        for name, keys in (("key list", self.keys), ("held-out key list", self.heldout_keys)):
            if len(set(keys)) != len(keys):
                repeated = sorted(k for k in set(keys) if keys.count(k) > 1)
                raise ConfigError(f"the {name} has duplicates: {repeated[:5]}")
        overlap = sorted(set(self.keys) & set(self.heldout_keys))
        if overlap:
            raise ConfigError(f"{len(overlap)} held-out keys are also training keys (e.g. {overlap[0]!r}): "
                              "held-out keys must be ones the readout never trains on")
        for name, value in (("keys_per_step", self.keys_per_step), ("eval_keys", self.eval_keys)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0 (0 = every key), got {value!r}")
        check_template(self.store_template, f"{self.name} store_template", ("key",), required=("key",))
        check_template(self.recall_template, f"{self.name} recall_template (it must not contain the key)")
        check_template(self.answer_template, f"{self.name} answer_template", ("key",), required=("key",))
        check_reads(self, ("key",), (self.store_template,), {"key": self.keys[0]})
        if not self.answer_template.endswith("{key}") or self.answer_template.count("{key}") != 1:
            raise ConfigError(f"answer template {self.answer_template!r} must end with {{key}} (once)")
        check_delay_range(tuple(self.train_delays))
        if not self.eval_delays:
            raise ConfigError("give at least one evaluation delay")
        for delay in self.eval_delays:
            check_delay_range((delay, delay))
        for filler in (self.filler, *self.eval_fillers):
            if filler not in FILLERS:
                raise ConfigError(f"unknown filler '{filler}': choose one of {', '.join(FILLERS)}")
        if not self.eval_fillers:
            raise ConfigError("give at least one evaluation filler")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        needs_distractors = self.filler in ("distractor", "mixed") and max(self.train_delays) > 0
        if needs_distractors and not self.train_distractors:
            raise ConfigError("the training distractor pool is empty")
        reads_distractors = any(f in ("distractor", "mixed") for f in self.eval_fillers)
        if reads_distractors and max(self.eval_delays) > 0 and not self.eval_distractors:
            raise ConfigError("the evaluation distractor pool is empty")
        keys = {k.lower() for k in (*self.keys, *self.heldout_keys)}
        for pool, texts in (("training", self.train_distractors), ("evaluation", self.eval_distractors)):
            for text in texts:
                clash = sorted(words_of(text) & keys)
                if clash:
                    raise ConfigError(f"{pool} distractor {text!r} contains the key {clash[0]!r}: a distractor "
                                      "must not contain any key")

    # ----- construction ----------------------------------------------------------------------------------
    @classmethod
    def with_n_keys(cls, n: int, **overrides) -> RecallTask:
        if not 1 <= n <= len(DEFAULT_KEY_POOL):
            raise ConfigError(f"number of keys must be in 1..{len(DEFAULT_KEY_POOL)} for the built-in pool, got {n}")
        return cls(keys=tuple(DEFAULT_KEY_POOL[:n]), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str | None = None) -> RecallTask:
        data = dict(data) if isinstance(data, dict) else data
        if isinstance(data, dict) and isinstance(data.get("key_prefix"), str):  # files from before answer_template
            data["answer_template"] = data.pop("key_prefix") + "{key}"
        return super().from_dict(data, what)  # type: ignore[return-value]

    @classmethod
    def from_file(cls, path: str | Path) -> RecallTask:
        return cls.from_dict(read_json_object(path, "task file"), f"task file {path}")

    # ----- tokens ----------------------------------------------------------------------------------------
    def answer(self, key: str) -> str:
        return self.answer_template.format(key=key)

    def key_token_ids(self, renderer: Renderer, keys: tuple[str, ...] | None = None) -> list[int]:
        """Each key's token (the last token of its answer); refuses keys that are not one token there."""
        # The answer's tokens before the key: its text up to {key}, without the space that joins the key.
        prefix = renderer.encode(self.answer_template.split("{key}")[0].rstrip(" "))
        ids = []
        for key in self.keys if keys is None else keys:
            tokens = renderer.encode(self.answer(key))
            if len(tokens) != len(prefix) + 1 or tokens[:len(prefix)] != prefix:
                piece = self.answer_template.split("{key}")[0][-1:] + key
                raise ConfigError(f"key {key!r} is not a single token for this tokenizer ({piece!r} -> "
                                  f"{len(tokens) - len(prefix)} tokens); choose keys that are one token")
            ids.append(tokens[-1])
        if len(set(ids)) != len(ids):
            raise ConfigError("two keys map to the same token")
        return ids

    def check(self, renderer: Renderer) -> None:
        self.key_token_ids(renderer, (*self.keys, *self.heldout_keys))

    def candidates(self, renderer: Renderer) -> list[int]:
        """The trained keys' tokens, then the held-out keys' (among-keys recall ranks within each split)."""
        return self.key_token_ids(renderer, (*self.keys, *self.heldout_keys))

    # ----- episodes --------------------------------------------------------------------------------------
    def episode(self, key: str, fillers: list[Pass], scaffold: bool = False, filler: str = "",
                split: str = "trained") -> Episode:
        store = self.store_template.format(key=key)
        recall = f"{store} {self.recall_template}" if scaffold else self.recall_template
        passes = labelled(self, (Pass(store), *fillers, Pass(recall, self.answer(key))),
                          ({"key": key}, *[None] * len(fillers), None))
        delay = len(fillers)
        return Episode(passes, label=key, group=f"{split}/{filler or self.filler}/{delay}",
                       info={"key": key, "delay": delay, "filler": filler or self.filler, "split": split})

    def _fillers(self, kind: str, delay: int, pool: tuple[str, ...], generator: torch.Generator) -> list[Pass]:
        passes = []
        for _ in range(delay):
            if kind == "blank":  # an idle tick in a wiped context: it reads the idle text alone
                passes.append(Pass.tick(wipe=True))
                continue
            idle = kind == "idle" or (kind == "mixed" and bool(torch.rand((), generator=generator) < 0.5))
            if idle:
                passes.append(Pass.tick())
            else:
                passes.append(Pass(pool[int(torch.randint(len(pool), (), generator=generator))]))
        return passes

    def training_episodes(self, generator: torch.Generator, scaffold: float = 0.0) -> list[Episode]:
        """Every key ``repeats`` times, each with its own delay and fillers; ``scaffold`` is the probability
        of showing the store sentence in the recall pass too (a curriculum)."""
        low, high = self.train_delays
        episodes = []
        for _ in range(self.repeats):
            keys = self.keys
            if self.keys_per_step and self.keys_per_step < len(keys):
                keys = [keys[i] for i in torch.randperm(len(keys), generator=generator)[:self.keys_per_step].tolist()]
            for key in keys:
                delay = int(torch.randint(low, high + 1, (), generator=generator))
                fillers = self._fillers(self.filler, delay, self.train_distractors, generator)
                shown = scaffold > 0 and bool(torch.rand((), generator=generator) < scaffold)
                episodes.append(self.episode(key, fillers, scaffold=shown))
        return episodes

    def evaluation_episodes(self) -> list[Episode]:
        generator = torch.Generator().manual_seed(EVAL_SEED)
        episodes = []
        for filler in self.eval_fillers:
            for delay in self.eval_delays:
                if delay == 0 and filler != self.eval_fillers[0]:
                    continue  # delay 0 has no intervening pass: the same episodes for every filler
                trained = self.keys[:self.eval_keys] if self.eval_keys else self.keys
                for split, keys in (("trained", trained), ("heldout", self.heldout_keys)):
                    for key in keys:
                        fillers = self._fillers(filler, delay, self.eval_distractors, generator)
                        episodes.append(self.episode(key, fillers, filler=filler, split=split))
        return episodes

    # ----- metric ----------------------------------------------------------------------------------------
    def score(self, episodes: list[Episode], predictions: list[list[Prediction]],
              renderer: Renderer) -> dict[str, Any]:
        """Recall over the whole vocabulary, and among the keys of the episode's split (trained or held-out),
        per (split, filler, delay). ``value`` is the trained keys' one-hop recall (else their mean)."""
        splits = {"trained": self.keys, "heldout": self.heldout_keys}
        offset = {"trained": 0, "heldout": len(self.keys)}  # where each split sits among the candidates
        index_of = {split: {key: i for i, key in enumerate(keys)} for split, keys in splits.items()}
        groups: dict[tuple[str, str, int], dict[str, list[float]]] = {}
        details = []
        for episode, (prediction,) in zip(episodes, predictions, strict=True):
            key, split = episode.info["key"], episode.info.get("split", "trained")
            correct = prediction.tokens == renderer.target(self.answer(key))
            among = False
            if prediction.candidate_scores is not None:
                start = offset[split]
                within = prediction.candidate_scores[start:start + len(splits[split])]
                among = int(within.argmax()) == index_of[split][key]
            group = groups.setdefault((split, episode.info["filler"], episode.info["delay"]),
                                      {"recall": [], "among": []})
            group["recall"].append(float(correct))
            group["among"].append(float(among))
            details.append({"key": key, "split": split, "filler": episode.info["filler"],
                            "delay": episode.info["delay"], "predicted": renderer.tokenizer.decode(prediction.tokens)})
        rows = [{"split": split, "filler": filler, "delay": delay, "recall": _mean(values["recall"]),
                 "among_keys": _mean(values["among"]), "n": len(values["recall"])}
                for (split, filler, delay), values in groups.items()]
        trained = [r for r in rows if r["split"] == "trained"]
        one_hop = [r for r in trained if r["delay"] == 0]
        headline = one_hop[0] if one_hop else None
        return {
            "value": headline["recall"] if headline else _mean([r["recall"] for r in trained]),
            "among_keys": headline["among_keys"] if headline else _mean([r["among_keys"] for r in trained]),
            "groups": rows,
            "predictions": details,
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
