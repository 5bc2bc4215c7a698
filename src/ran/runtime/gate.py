"""The output gate: after each pass, speak or stay silent.

Two gates, chosen by what the artifact provides:

- ``state`` (trained): a head on the reservoir state after the pass, ``p = sigmoid(w . r + b)`` or, with
  a hidden layer, ``sigmoid(w . relu(W_h r + b_h) + b)``; speak when ``p >= threshold``. Stored in the
  artifact directory as ``gate.safetensors`` (its format: :mod:`ran.artifact`), checked against the reservoir
  on load.
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
    """A trained head on the reservoir state: linear, or with a hidden ReLU layer (``hidden_weight`` (H, K),
    ``hidden_bias`` (H,), then ``weight`` is (H,))."""

    kind = "state"

    def __init__(self, weight: torch.Tensor, bias: float, threshold: float = 0.5,
                 reservoir_fingerprint: str = "", hidden_weight: torch.Tensor | None = None,
                 hidden_bias: torch.Tensor | None = None):
        if weight.ndim != 1:
            raise ConfigError(f"gate weight must be a vector (K,), got shape {tuple(weight.shape)}")
        if (hidden_weight is None) != (hidden_bias is None):
            raise ConfigError("a gate's hidden layer needs both hidden_weight and hidden_bias")
        if hidden_weight is not None and (hidden_weight.ndim != 2 or tuple(hidden_bias.shape) != (len(weight),)
                                          or hidden_weight.shape[0] != len(weight)):
            raise ConfigError(f"gate hidden layer shapes {tuple(hidden_weight.shape)} and {tuple(hidden_bias.shape)} "
                              f"do not fit weight ({len(weight)},): expected (H, K) and (H,) with H = {len(weight)}")
        if not 0 < threshold < 1:
            raise ConfigError(f"gate threshold must be in (0, 1), got {threshold!r}")
        self.head = GateHead(weight.detach().to(torch.float32).cpu(), float(bias), float(threshold),
                             None if hidden_weight is None else hidden_weight.detach().to(torch.float32).cpu(),
                             None if hidden_bias is None else hidden_bias.detach().to(torch.float32).cpu())
        self.reservoir_fingerprint = reservoir_fingerprint

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    @property
    def bias(self) -> float:
        return self.head.bias

    @property
    def threshold(self) -> float:
        return self.head.threshold

    def decide(self, state: torch.Tensor, logits: torch.Tensor,
               stop_tokens: tuple[int, ...] = ()) -> GateDecision:
        """``state`` (1, K) after the pass; ``logits`` (vocab,) are not used by this gate."""
        value = float(torch.sigmoid(self.head.logit(state[:1])[0]))
        return GateDecision(self.kind, value, self.threshold, value >= self.threshold)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the head as ``gate.safetensors`` in ``directory`` (:func:`ran.artifact.save_gate_head`)."""
        return save_gate_head(directory, self.head, self.reservoir_fingerprint)

    @classmethod
    def load(cls, directory: str | os.PathLike, reservoir: Reservoir) -> StateGate:
        """The gate head saved in ``directory`` (an artifact, or a gate file on its own)."""
        head = load_gate_head(directory, reservoir.fingerprint, reservoir.units)
        return cls(head.weight, head.bias, head.threshold, reservoir.fingerprint, head.hidden_weight,
                   head.hidden_bias)


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
