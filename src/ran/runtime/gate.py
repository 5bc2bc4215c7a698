"""The output gate: after each pass, speak or stay silent.

Two gates, chosen by what the artifact provides:

- ``state`` (trained): a linear head on the reservoir state after the pass,
  ``p = sigmoid(w . r + b)``; speak when ``p >= threshold``. Stored in the artifact directory as
  ``gate.safetensors`` (its format: :mod:`ran.artifact`), checked against the reservoir on load.
- ``entropy`` (the fallback when there is no trained head): speak when the next-token distribution
  after the pass is confident, i.e. its entropy is at most ``max_entropy`` nats, and its most likely
  token is not a stop token (the model would rather end its turn). It reads no state directly, so it is
  a stateless gate: the reservoir only acts on it through the write-back.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ran.artifact import GateHead, has_gate_head, load_gate_head, save_gate_head
from ran.errors import ConfigError
from ran.reservoir import Reservoir

DEFAULT_MAX_ENTROPY = 2.0  # nats


@dataclass(frozen=True)
class GateDecision:
    kind: str  # "state" or "entropy"
    value: float  # state: probability of speaking; entropy: next-token entropy in nats
    threshold: float
    emit: bool
    stop_token: bool = False  # entropy gate: the most likely next token ends the turn (so: silent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StateGate:
    """A trained linear head on the reservoir state."""

    kind = "state"

    def __init__(self, weight: torch.Tensor, bias: float, threshold: float = 0.5,
                 reservoir_fingerprint: str = ""):
        if weight.ndim != 1:
            raise ConfigError(f"gate weight must be a vector (K,), got shape {tuple(weight.shape)}")
        if not 0 < threshold < 1:
            raise ConfigError(f"gate threshold must be in (0, 1), got {threshold!r}")
        self.weight = weight.detach().to(torch.float32).cpu()
        self.bias = float(bias)
        self.threshold = float(threshold)
        self.reservoir_fingerprint = reservoir_fingerprint

    def decide(self, state: torch.Tensor, logits: torch.Tensor,
               stop_tokens: tuple[int, ...] = ()) -> GateDecision:
        """``state`` (1, K) after the pass; ``logits`` (vocab,) are not used by this gate."""
        score = state[0].detach().float().cpu() @ self.weight + self.bias
        value = float(torch.sigmoid(score))
        return GateDecision(self.kind, value, self.threshold, value >= self.threshold)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the head as ``gate.safetensors`` in ``directory`` (:func:`ran.artifact.save_gate_head`)."""
        return save_gate_head(directory, GateHead(self.weight, self.bias, self.threshold), self.reservoir_fingerprint)

    @classmethod
    def load(cls, directory: str | os.PathLike, reservoir: Reservoir) -> StateGate:
        """The gate head saved in ``directory`` (an artifact, or a gate file on its own)."""
        weight, bias, threshold = load_gate_head(directory, reservoir.fingerprint, reservoir.units)
        return cls(weight, bias, threshold, reservoir.fingerprint)


class EntropyGate:
    """The fallback gate: speak when the next token is predictable and is not a stop token."""

    kind = "entropy"

    def __init__(self, max_entropy: float = DEFAULT_MAX_ENTROPY):
        if not max_entropy >= 0 or not math.isfinite(max_entropy):
            raise ConfigError(f"max_entropy must be >= 0 nats, got {max_entropy!r}")
        self.threshold = float(max_entropy)

    def decide(self, state: torch.Tensor, logits: torch.Tensor,
               stop_tokens: tuple[int, ...] = ()) -> GateDecision:
        log_probs = torch.log_softmax(logits.detach().float(), dim=-1)  # (vocab,)
        entropy = float(-(log_probs.exp() * log_probs).sum())
        stopping = int(log_probs.argmax()) in stop_tokens
        return GateDecision(self.kind, entropy, self.threshold, entropy <= self.threshold and not stopping,
                            stopping)


Gate = StateGate | EntropyGate


def load_gate(artifact: str | os.PathLike | None, reservoir: Reservoir,
              max_entropy: float = DEFAULT_MAX_ENTROPY) -> Gate:
    """The artifact's trained gate when it has a ``gate.safetensors``, else the entropy fallback."""
    if artifact is not None and has_gate_head(artifact):
        return StateGate.load(artifact, reservoir)
    return EntropyGate(max_entropy)
