"""Key pools: the built-in 60 words, or thousands of single-token words drawn from the tokenizer.

The vocabulary filter is deterministic: a token qualifies when it decodes to a space followed by
``min_letters`` or more lower-case letters a-z (e.g. " valley"), that text encodes back to exactly this
one token, and the word does not occur in the task's templates or distractor sentences. Qualifying words
are ordered by token id, then split into training and held-out keys by a seeded permutation
(``split_seed``), so every run with the same seed trains and holds out the same words.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from ran.errors import ConfigError
from ran.tasks.texts import DEFAULT_KEY_POOL

SOURCES = ("builtin", "vocab")


@dataclass(frozen=True)
class KeyPool:
    source: str = "builtin"  # builtin (the 60 words, in order) | vocab (the tokenizer's words, shuffled)
    train: int = 6  # training keys
    heldout: int = 0  # held-out keys, never trained on
    split_seed: int = 0  # the vocabulary split's permutation
    min_letters: int = 3

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown key pool '{self.source}': choose one of {', '.join(SOURCES)}")
        if self.train < 1 or self.heldout < 0 or self.min_letters < 1:
            raise ConfigError(f"the key pool needs train >= 1, heldout >= 0, min_letters >= 1; got {asdict(self)}")

    def to_dict(self) -> dict:
        return asdict(self)


def vocabulary_words(tokenizer: PreTrainedTokenizerBase, min_letters: int = 3,
                     exclude: set[str] = frozenset()) -> list[str]:
    """Every word that passes the filter (module docstring), in token-id order."""
    pattern = re.compile(f"[a-z]{{{min_letters},}}")
    words = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if not text.startswith(" ") or not pattern.fullmatch(text[1:]) or text[1:] in exclude:
            continue
        if tokenizer.encode(text, add_special_tokens=False) == [token_id]:
            words.append(text[1:])
    return words


def resolve_keys(pool: KeyPool, tokenizer: PreTrainedTokenizerBase | None,
                 exclude: set[str] = frozenset()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training keys, held-out keys) of the pool; one clear error when the pool is too small."""
    wanted = pool.train + pool.heldout
    if pool.source == "builtin":
        words = [w for w in DEFAULT_KEY_POOL if w not in exclude]
        if wanted > len(words):
            raise ConfigError(f"the built-in pool has {len(words)} words, fewer than {pool.train} training + "
                              f"{pool.heldout} held-out keys: use --key-pool vocab for more")
        return tuple(words[:pool.train]), tuple(words[pool.train:wanted])
    if tokenizer is None:
        raise ConfigError("the vocabulary key pool needs the model's tokenizer")
    words = vocabulary_words(tokenizer, pool.min_letters, exclude)
    if wanted > len(words):
        raise ConfigError(f"the vocabulary filter (space + >= {pool.min_letters} letters a-z, one token) yields "
                          f"{len(words)} words, fewer than {pool.train} training + {pool.heldout} held-out keys")
    order = np.random.default_rng(pool.split_seed).permutation(len(words))
    chosen = [words[i] for i in order[:wanted]]
    return tuple(chosen[:pool.train]), tuple(chosen[pool.train:])


def coined_words(tokenizer: PreTrainedTokenizerBase, train: int, heldout: int, split_seed: int = 0,
                 exclude_tokens: set[int] = frozenset()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, held-out) made-up values of one or two coined words, e.g. "Dasharinoll Thytest".

    A coined word is a first piece that decodes to a space and 1-5 letters, capitalised (" Dash"), then 1-3
    pieces of 2-4 lower-case letters ("ar", "in", "oll"); a value is kept only when it encodes back to
    exactly its pieces. The pieces are split by a seeded permutation (one in five held out), and a held-out
    value is made of held-out pieces only, so it shares no token with any training value: for multi-token
    values what single vocabulary words are for one token. ``exclude_tokens`` (e.g. the pieces of other
    kinds' held-out values) are never training pieces.
    """
    firsts, rests = [], []
    capitalised, lower = re.compile("[A-Z][a-z]{0,4}"), re.compile("[a-z]{2,4}")  # short, syllable-like
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text.startswith(" ") and capitalised.fullmatch(text[1:]):
            firsts.append(token_id)
        elif lower.fullmatch(text):
            rests.append(token_id)
    rng = np.random.default_rng(split_seed)
    parts = []
    for pieces in (firsts, rests):
        order = rng.permutation(len(pieces))
        cut = len(pieces) // 5
        held, trained = [pieces[i] for i in order[:cut]], [pieces[i] for i in order[cut:]]
        parts.append(([p for p in trained if p not in exclude_tokens], held))
    result = []
    for split, count in ((0, train), (1, heldout)):
        starts, continuations = parts[0][split], parts[1][split]
        chosen: dict[str, None] = {}
        for _ in range(100 * count):
            if len(chosen) == count:
                break
            pieces = []
            for _word in range(int(rng.integers(1, 3))):
                pieces.append(starts[int(rng.integers(len(starts)))])
                pieces += [continuations[int(rng.integers(len(continuations)))] for _ in range(int(rng.integers(1, 4)))]
            text = tokenizer.decode(pieces)
            if tokenizer.encode(text, add_special_tokens=False) == pieces:
                chosen[text[1:]] = None
        if len(chosen) < count:
            raise ConfigError(f"could coin only {len(chosen)} of {count} {'held-out ' if split else ''}values from "
                              "this tokenizer's pieces: ask for fewer")
        result.append(tuple(chosen))
    return result[0], result[1]
