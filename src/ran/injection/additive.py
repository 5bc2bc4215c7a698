"""``additive``: h_L += W_out r on the residual stream after layer L, at every position.

The original study's negative result (the model learns to ignore it); kept as the control that shows
why the injection design matters.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ran.architectures import ModelGeometry, decoder_layers
from ran.injection.base import Injector, Readout


class AdditiveInjector(Injector):
    mode = "additive"

    def __init__(self, geometry: ModelGeometry, units: int, layer: int, n_slots: int):
        super().__init__(geometry, units, layer, n_slots)
        self.readout = Readout(units, geometry.hidden_size, bias=False)
        nn.init.zeros_(self.readout.weight)
        self._delta: torch.Tensor | None = None
        self._handle = None

    def install(self, model: PreTrainedModel) -> None:
        self._handle = decoder_layers(model)[self.layer].register_forward_hook(self._add)

    def uninstall(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def begin_pass(self, state: torch.Tensor) -> None:
        self._delta = self.readout(state)  # (B, d)

    def end_pass(self) -> None:
        self._delta = None

    def _add(self, module, args, output):
        if self._delta is None:
            return None
        hidden = output[0] if isinstance(output, tuple) else output  # (B', T, d)
        delta = _match_batch(self._delta, hidden.shape[0]).to(hidden.dtype)
        hidden = hidden + delta[:, None, :]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _match_batch(per_example: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat per-example rows when generate() has expanded the batch (beams, num_return_sequences)."""
    rows = per_example.shape[0]
    if rows == batch:
        return per_example
    if batch % rows:
        raise ValueError(f"batch of {batch} cannot be matched to {rows} reservoir state rows")
    return per_example.repeat_interleave(batch // rows, dim=0)
