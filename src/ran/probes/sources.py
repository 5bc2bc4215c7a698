"""What drives the reservoir in the probes: synthetic input, or real activations of a model.

Real activations are captured at the injection layer (a forward hook on the decoder layer, the same
summary the wrapped model's reservoir reads: the hidden state at the last real token by default) over
a small built-in text sample of three kinds: ordinary ``filler`` sentences, ``trigger`` sentences that
open an "unresolved thread" (a request to come back to later), and one-shot ``stop`` interruptions.
A probe's pass sequence then picks one captured vector per pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ran.architectures import decoder_layers, geometry_of
from ran.errors import ConfigError
from ran.tasks.sequence import SequenceTask

SOURCES = ("synthetic", "model")
SUMMARIES = ("last", "mean")

_SUBJECTS = [
    "The old train",
    "My neighbour",
    "A small bird",
    "The committee",
    "Our teacher",
    "The river",
    "Every engineer",
    "The museum",
    "A tired runner",
    "The new library",
    "The baker",
    "Her cousin",
]
_PREDICATES = [
    "arrived late on Tuesday.",
    "painted the fence green.",
    "smells of fresh bread.",
    "was closed for repairs.",
    "counted the boxes twice.",
    "sang quietly in the hall.",
    "wrote a long letter home.",
    "looked at the cloudy sky.",
]
FILLER_TEXTS: tuple[str, ...] = tuple(f"{s} {p}" for s, p in itertools.product(_SUBJECTS, _PREDICATES))
TRIGGER_TEXTS: tuple[str, ...] = (
    "Remind me about the invoice later.",
    "Please get back to me on the budget question.",
    "Can you follow up on the meeting notes soon?",
    "Don't forget to answer my question about the trip.",
    "I still need your reply about the contract.",
    "Come back to the open bug report when you can.",
    "Let me know later whether the parcel arrived.",
    "Remember to check the test results for me.",
    "We still have to decide on the venue, remind me.",
    "Get back to me about the missing key.",
    "Please return to the unanswered email thread.",
    "Ping me later about the schedule change.",
)
STOP_TEXTS: tuple[str, ...] = (
    "STOP.",
    "Stop!",
    "Stop right now.",
    "Please stop.",
    "STOP, stop everything.",
    "Halt. Stop now.",
)


def capture_activations(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str] | tuple[str, ...],
    layer: int | None = None,
    summary: str | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """The reservoir's input x for each text: layer ``layer``'s output summarised per text -> (N, d) float32.

    ``model`` is a bare causal LM or a wrapped :class:`ran.model.ReservoirModel`; for a wrapped one the
    layer and summary default to its own and the base model is run (the injection does not take part).
    A bare model defaults to the middle layer and the last real token.
    """
    from ran.model import ReservoirModel
    from ran.reading import last_real_index, summarise

    if isinstance(model, ReservoirModel):
        base: PreTrainedModel = model.base
        layer = model.config.layer if layer is None else layer
        summary = model.config.summary if summary is None else summary
    else:
        base = model
        summary = "last" if summary is None else summary
    n_layers = geometry_of(base).n_layers
    layer = n_layers // 2 if layer is None else layer
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer {layer} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    if summary not in SUMMARIES:
        raise ConfigError(f"unknown summary '{summary}': choose one of {', '.join(SUMMARIES)}")
    if len(texts) == 0:
        raise ConfigError("capture_activations needs at least one text")
    captured: list[torch.Tensor] = []

    def hook(module, args, output) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    device = next(base.parameters()).device
    pieces = []
    handle = decoder_layers(base)[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start : start + batch_size]), return_tensors="pt", padding=True)
                mask = batch["attention_mask"].to(device)
                captured.clear()
                base(input_ids=batch["input_ids"].to(device), attention_mask=mask)
                hidden = captured[0].to(torch.float32)  # (B, T, d)
                pieces.append(summarise(hidden, summary, last_real_index(mask), mask.bool()))
    finally:
        handle.remove()
    return torch.cat(pieces).cpu()


@dataclass(frozen=True)
class ActivationBank:
    """Captured activations of the built-in sample, one row per text."""

    model: str
    layer: int
    filler: np.ndarray  # (N_filler, d)
    trigger: np.ndarray  # (N_trigger, d)
    stop: np.ndarray  # (N_stop, d)
    # The sequence task's item passes ("Item: tiger."), one row per word: at the pass's last token (what the read
    # "last" takes in) and at the word's own last token ("Item: tiger", what a read labelled {word} takes in).
    # The order probe's input; not part of all().
    item_passes: np.ndarray | None = None  # (N_words, d)
    item_words: np.ndarray | None = None  # (N_words, d)

    @property
    def dim(self) -> int:
        return self.filler.shape[1]

    def all(self) -> np.ndarray:
        return np.concatenate([self.filler, self.trigger, self.stop])

    def describe(self) -> dict:
        rows = self.all()
        return {
            "model": self.model,
            "layer": self.layer,
            "dim": self.dim,
            "n_filler": len(self.filler),
            "n_trigger": len(self.trigger),
            "n_stop": len(self.stop),
            "n_items": 0 if self.item_passes is None else len(self.item_passes),
            "mean_norm": float(np.linalg.norm(rows, axis=1).mean()),
            "mean_abs": float(np.abs(rows).mean()),
            "max_abs": float(np.abs(rows).max()),
        }


def capture_bank(model_name: str, layer: int | None = None) -> ActivationBank:
    """Load ``model_name`` and capture the built-in sample at ``layer`` (default: the middle layer)."""
    from ran.loading import load_model

    model, tokenizer = load_model(model_name)
    n_layers = geometry_of(model).n_layers
    layer = n_layers // 2 if layer is None else layer
    groups = [
        capture_activations(model, tokenizer, texts, layer).numpy()
        for texts in (FILLER_TEXTS, TRIGGER_TEXTS, STOP_TEXTS, *item_texts())
    ]
    return ActivationBank(model_name, layer, *groups)


def item_texts(task: SequenceTask | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The sequence task's item passes (default: the task's defaults), whole ("Item: tiger.") and up to the word
    ("Item: tiger"): causal attention makes the word's last token the same in both."""
    task = task or SequenceTask()
    before = task.item_template.split("{word}")[0].format()
    return (tuple(task.item_template.format(word=word) for word in task.words),
            tuple(before + word for word in task.words))


@dataclass(frozen=True)
class EventStream:
    """A pass sequence: which passes carry a trigger or a STOP, and the reservoir input of every pass."""

    inputs: np.ndarray  # (T, d) float32
    trigger: np.ndarray  # (T,) bool
    stop: np.ndarray  # (T,) bool


def synthetic_inputs(trigger: np.ndarray, stop: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic passes: channel 0 flags a trigger, channel 1 a STOP, the others are U(-1, 1) noise."""
    if dim < 3:
        raise ConfigError(f"synthetic input needs dim >= 3 (trigger, stop and noise channels), got {dim}")
    inputs = rng.uniform(-1.0, 1.0, size=(len(trigger), dim)).astype(np.float32)
    inputs[:, 0] = trigger
    inputs[:, 1] = stop
    return inputs


def bank_inputs(
    trigger: np.ndarray, stop: np.ndarray, bank: ActivationBank, rng: np.random.Generator
) -> np.ndarray:
    """Real passes: a random trigger text, STOP text or (otherwise) filler text's activation per pass."""
    steps = len(trigger)
    inputs = bank.filler[rng.integers(0, len(bank.filler), size=steps)].astype(np.float32)
    inputs[trigger] = bank.trigger[rng.integers(0, len(bank.trigger), size=int(trigger.sum()))]
    inputs[stop] = bank.stop[rng.integers(0, len(bank.stop), size=int(stop.sum()))]
    return inputs


def event_stream(
    trigger: np.ndarray,
    stop: np.ndarray,
    source: str,
    rng: np.random.Generator,
    bank: ActivationBank | None = None,
    dim: int = 8,
) -> EventStream:
    trigger, stop = np.asarray(trigger, bool), np.asarray(stop, bool) & ~np.asarray(trigger, bool)
    if source == "synthetic":
        inputs = synthetic_inputs(trigger, stop, dim, rng)
    elif source == "model":
        if bank is None:
            raise ConfigError("the model source needs captured activations (an ActivationBank)")
        inputs = bank_inputs(trigger, stop, bank, rng)
    else:
        raise ConfigError(f"unknown source '{source}': choose one of {', '.join(SOURCES)}")
    return EventStream(inputs, trigger, stop)


def passes_since(events: np.ndarray) -> np.ndarray:
    """For each pass, how many passes ago the last event was (0 on an event pass; -1 before the first)."""
    events = np.asarray(events, bool)
    index = np.arange(len(events))
    last = np.maximum.accumulate(np.where(events, index, -1))
    return np.where(last >= 0, index - last, -1)
