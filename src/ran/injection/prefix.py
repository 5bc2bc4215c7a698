"""``prefix``: W_res r becomes n_slots pseudo-token embeddings prepended to the input, seen by every layer.

The variant the original study ran for its positive results.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ran.architectures import ModelGeometry
from ran.injection.base import Injector, Readout


class PrefixInjector(Injector):
    mode = "prefix"

    def __init__(self, geometry: ModelGeometry, units: int, layer: int, n_slots: int):
        super().__init__(geometry, units, layer, n_slots)
        self.readout = Readout(units, n_slots * geometry.hidden_size, bias=True)
        nn.init.normal_(self.readout.weight, std=units**-0.5 * 0.02)
        nn.init.zeros_(self.readout.bias)
        self._embeddings: torch.Tensor | None = None
        self._embedding_scale = 1.0

    def install(self, model: PreTrainedModel) -> None:
        # Start the bias at typical token-embedding scale: the mean embedding of the vocabulary.
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            self.readout.bias.copy_(weight.mean(dim=0).repeat(self.n_slots).to(self.readout.bias.dtype))

    def uninstall(self) -> None:
        pass

    @property
    def n_prefix_positions(self) -> int:
        return self.n_slots

    def begin_pass(self, state: torch.Tensor) -> None:
        batch = state.shape[0]
        self._embeddings = self.readout(state).view(batch, self.n_slots, self.geometry.hidden_size)

    def end_pass(self) -> None:
        self._embeddings = None

    def prefix_embeddings(self) -> torch.Tensor | None:
        return self._embeddings
