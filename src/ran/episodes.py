"""Episodes: scripted passes with the context wiped between them, and targets on some passes.

An episode is a list of passes; each pass is a text the model reads from an empty context, with an
optional target: the token the model must predict right after the text, or ``SILENT`` (it must
predict the end-of-turn token, i.e. say nothing). Many episodes with the same number of passes run as
one batch, one reservoir state row per episode: :func:`collate` turns them into per-pass tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from ran.errors import ConfigError

SILENT = "<silent>"  # target meaning "stay silent": predict the tokenizer's end-of-sequence token
NO_TARGET = -100


@dataclass(frozen=True)
class Pass:
    text: str
    target: str | None = None  # a single-token string (e.g. " apple"), SILENT, or None


@dataclass(frozen=True)
class Episode:
    passes: tuple[Pass, ...]
    label: str = ""  # e.g. the key this episode stores, for reports


@dataclass
class PassBatch:
    """One pass of a batch of episodes: left-padded tokens and the target id per episode."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B,) token id, or NO_TARGET

    @property
    def has_targets(self) -> bool:
        return bool((self.targets != NO_TARGET).any())


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """The id of ``text`` if it is exactly one token, else a clear error."""
    if text == SILENT:
        if tokenizer.eos_token_id is None:
            raise ConfigError("the tokenizer has no end-of-sequence token to stand for silence")
        return int(tokenizer.eos_token_id)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ConfigError(f"target {text!r} is not a single token for this tokenizer ({len(ids)} tokens: {ids})")
    return int(ids[0])


def collate(episodes: list[Episode], tokenizer: PreTrainedTokenizerBase) -> list[PassBatch]:
    """Tokenise a batch of episodes pass by pass (left padding, so every pass ends at position -1)."""
    if not episodes:
        raise ConfigError("no episodes to run")
    n_passes = len(episodes[0].passes)
    if any(len(e.passes) != n_passes for e in episodes):
        raise ConfigError("all episodes in a batch must have the same number of passes")
    batches = []
    for index in range(n_passes):
        passes = [e.passes[index] for e in episodes]
        encoded = tokenizer([p.text for p in passes], return_tensors="pt", padding=True, padding_side="left",
                            add_special_tokens=False)
        targets = torch.tensor([NO_TARGET if p.target is None else single_token_id(tokenizer, p.target)
                                for p in passes])
        batches.append(PassBatch(encoded["input_ids"], encoded["attention_mask"], targets))
    return batches
