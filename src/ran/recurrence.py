"""The state's recurrence: the fixed echo-state reservoir, or a trained recurrent cell in its place.

The trained-recurrence baseline asks whether a *fixed random* pool is a good memory at all: the same
model, readout, task and training budget, with the reservoir replaced by a GRU cell whose state has
the same size K and which reads the same layer summary x(t):

    z = sigmoid(W_iz x' + b_iz + W_hz h + b_hz)
    r = sigmoid(W_ir x' + b_ir + W_hr h + b_hr)
    n = tanh(W_in x' + b_in + r * (W_hn h + b_hn))
    h(t) = (1 - z) * n + z * h(t-1),        x' = input_scaling * x(t)

Unlike the reservoir, its weights are trained, with the readout, through the carried state. They are
drawn from ``seed`` (U(-1/sqrt(K), 1/sqrt(K)), PyTorch's GRU initialisation, from a private generator
so the global RNG and thus the readout's initialisation are untouched). The module has the
reservoir's interface (``config``, ``units``, ``input_dim``, ``fingerprint``, ``w_in``,
``initial_state``, ``step``, ``run``), so the wrapped model, the trainer and the runtime use either.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ran.errors import ConfigError
from ran.reservoir import Reservoir, ReservoirConfig

RECURRENCES = ("reservoir", "gru", "none")


@dataclass(frozen=True)
class GRUConfig:
    """A trained GRU cell of ``units`` state units; its initial weights are a function of ``seed``."""

    units: int = 512
    seed: int = 0
    input_scaling: float = 1.0  # the layer summary is scaled as the reservoir's W_in scales it

    def __post_init__(self) -> None:
        if not isinstance(self.units, int) or self.units < 1:
            raise ConfigError(f"units must be an integer >= 1, got {self.units!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not self.input_scaling > 0 or not math.isfinite(self.input_scaling):
            raise ConfigError(f"input_scaling must be > 0, got {self.input_scaling!r}")

    @classmethod
    def like(cls, reservoir: ReservoirConfig) -> GRUConfig:
        """The GRU that stands in for this reservoir: the same size, seed and input scaling."""
        return cls(units=reservoir.units, seed=reservoir.seed, input_scaling=reservoir.input_scaling)

    def to_dict(self) -> dict:
        return asdict(self)


class GRURecurrence(nn.Module):
    """A trained GRU cell over ``input_dim``-sized inputs with the reservoir's interface.

    The step is a pure function of (state, input); the caller owns the state.
    """

    kind = "gru"

    def __init__(self, config: GRUConfig, input_dim: int):
        super().__init__()
        if input_dim < 1:
            raise ConfigError(f"input_dim must be >= 1, got {input_dim!r}")
        self.config = config
        self.input_dim = input_dim
        self.cell = nn.GRUCell(input_dim, config.units)
        bound = 1.0 / math.sqrt(config.units)
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for parameter in self.cell.parameters():  # weight_ih, weight_hh, bias_ih, bias_hh, in that order
                parameter.copy_(torch.empty_like(parameter).uniform_(-bound, bound, generator=generator))
        # The weights are trained and saved with the artifact; the fingerprint names the initialisation.
        description = {"kind": self.kind, "input_dim": input_dim, **config.to_dict()}
        self.fingerprint = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()

    @property
    def units(self) -> int:
        return self.config.units

    @property
    def w_in(self) -> torch.Tensor:
        """(3K, input_dim) the input weights of the reset, update and new gates (also tells the device)."""
        return self.cell.weight_ih

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The zero state, shape (batch, units)."""
        return torch.zeros(batch_size, self.units, device=device or self.w_in.device)

    def step(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """One GRU update. state: (B, K), inputs: (B, input_dim) -> new state (B, K), float32."""
        scaled = inputs.to(torch.float32) * self.config.input_scaling  # (B, d)
        return self.cell(scaled, state.to(torch.float32))

    run = Reservoir.run  # drive with a sequence: (T, B, input_dim) -> (T, B, K), the same loop

    def extra_repr(self) -> str:
        c = self.config
        return (f"units={c.units}, input_dim={self.input_dim}, input_scaling={c.input_scaling}, seed={c.seed}, "
                f"fingerprint={self.fingerprint[:12]}")


class StatelessRecurrence(Reservoir):
    """The stateless ablation: every pass starts from a trained constant state instead of a carried one.

    The write-back (slots, prefix or residual) then reads a learned constant, and the state after a pass
    is the fixed reservoir's response to that pass alone (what the gate head reads). So the ablation has
    the readout, gate and LoRA of the stateful model, plus K parameters, and no memory between passes:
    the trainer and evaluator never carry its state (``carries_state`` is False).
    """

    kind = "none"
    carries_state = False

    def __init__(self, config: ReservoirConfig, input_dim: int):
        super().__init__(config, input_dim)
        self.start = nn.Parameter(torch.zeros(config.units))

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The trained constant state, (batch, units)."""
        return self.start.to(device or self.w_in.device).expand(batch_size, -1)


def make_recurrence(config, input_dim: int, kind: str | None = None) -> nn.Module:
    """The recurrence a :class:`ran.model.RanConfig` asks for, reading ``input_dim``-sized layer summaries.

    ``kind`` defaults to ``config.recurrence`` ("reservoir" where the config has no such field).
    ``gru`` takes its size, seed and input scaling from ``config.reservoir``.
    """
    kind = kind or getattr(config, "recurrence", "reservoir")
    if kind == "reservoir":
        return Reservoir(config.reservoir, input_dim)
    if kind == "gru":
        return GRURecurrence(GRUConfig.like(config.reservoir), input_dim)
    if kind == "none":
        return StatelessRecurrence(config.reservoir, input_dim)
    raise ConfigError(f"unknown recurrence '{kind}': choose one of {', '.join(RECURRENCES)}")
