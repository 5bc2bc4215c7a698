"""What every injection mode provides: a readout from the reservoir state and a way back into the model."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from ran.architectures import ModelGeometry


class Injector(nn.Module):
    """Writes the reservoir state (B, K) back into a model at one layer.

    Lifecycle: ``install(model)`` once, then per pass ``begin_pass(state)`` -> model call(s) ->
    ``end_pass()``; ``uninstall()`` restores the model. Only the readout parameters here are trained.
    """

    mode: ClassVar[str]

    def __init__(self, geometry: ModelGeometry, units: int, layer: int, n_slots: int):
        super().__init__()
        self.geometry = geometry
        self.units = units
        self.layer = layer
        self.n_slots = n_slots

    def install(self, model: PreTrainedModel) -> None:
        raise NotImplementedError

    def uninstall(self) -> None:
        raise NotImplementedError

    def begin_pass(self, state: torch.Tensor) -> None:
        """Compute this pass's write-back from the state carried into it."""
        raise NotImplementedError

    def end_pass(self) -> None:
        raise NotImplementedError

    @property
    def n_prefix_positions(self) -> int:
        """Positions this mode prepends to the input (only the prefix mode prepends any)."""
        return 0

    def prefix_embeddings(self) -> torch.Tensor | None:
        """(B, n_slots, d) pseudo-token embeddings for this pass, or None."""
        return None
