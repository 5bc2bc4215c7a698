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
