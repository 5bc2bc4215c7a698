"""The model and prompts the model-level benchmarks share: two independent copies of SmolLM2-135M.

One copy stays bare for the whole run (the baseline); the other is wrapped and unwrapped per case,
so bare and wrapped calls can alternate without re-wrapping in between.
"""

from __future__ import annotations

import torch

MODEL = "smollm2-135m"
SHORT_PROMPT = "The secret word is apple. Remember it, because later you will be asked: the secret word was"
LONG_TEXT = (
    "A reservoir is a fixed random recurrent network. On every forward pass it reads one layer of the "
    "transformer, updates its state, and the state is written back where the upper layers can attend to it. "
    "Because the state is not part of the context window, it survives when the context is wiped. "
)
LONG_TOKENS = 512


def load_pair():
    """(bare model, model to wrap, tokenizer): two separate copies with the same weights."""
    from benchmarks import common
    from ran.loading import load_model

    bare, tokenizer = load_model(MODEL, device=common.DEVICE)
    other, _ = load_model(MODEL, device=common.DEVICE)
    for model in (bare, other):
        model.eval()
    return bare, other, tokenizer


def prompt_ids(tokenizer, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), batch 1: the short prompt, or ``LONG_TOKENS`` tokens of text."""
    if which == "short":
        ids = tokenizer(SHORT_PROMPT, return_tensors="pt").input_ids
    else:
        text = LONG_TEXT * (LONG_TOKENS // 40 + 1)
        ids = tokenizer(text, return_tensors="pt").input_ids[:, :LONG_TOKENS]
    from benchmarks import common

    ids = ids.to(common.DEVICE)
    return ids, torch.ones_like(ids)
