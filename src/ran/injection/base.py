"""What every injection mode provides: a readout from the reservoir state and a way back into the model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ran.architectures import ModelGeometry


class _ReadoutMatmul(torch.autograd.Function):
    """``x W^T + b`` whose backward adds W's gradient into ``W.grad`` in place, with one ``addmm_`` per use.

    A readout is used by every pass of an episode, and autograd would give each use a fresh (out, K)
    gradient and then add them up: at K=2048 and 8 kv slots, a dozen new 12 MB tensors a step. New memory is
    slow to touch (on 2 CPU cores of a VM these allocations took half of the one-hop recipe's backward,
    140 ms a step against 65 ms with one reused gradient tensor), so the gradient lives in one tensor that
    the readout keeps and hands out, zeroed, whenever ``W.grad`` was set to None (``zero_grad``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, readout: Readout
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.readout = readout
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        if weight.grad is None:
            weight.grad = ctx.readout.zeroed_gradient()
        weight.grad.addmm_(grad_rows.t().to(weight.grad.dtype), x.reshape(-1, x.shape[-1]).to(weight.grad.dtype))
        grad_x = grad_out @ weight.to(grad_out.dtype) if ctx.needs_input_grad[0] else None
        grad_bias = grad_rows.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, None, grad_bias, None


class Readout(nn.Linear):
    """The trained map from the reservoir state: an ``nn.Linear`` whose weight gradient can accumulate in place.

    Within :func:`readout_gradients_in_place` (the trainers' loops, which call ``loss.backward()``) the weight's
    gradient goes straight into ``weight.grad``, one reused tensor (see ``_ReadoutMatmul``: a ``weight.grad``
    kept past the next backward is overwritten). Elsewhere it is an ``nn.Linear``, so ``torch.autograd.grad``
    and gradient hooks see the weight as usual.
    """

    in_place = False
    _gradient: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_place and torch.is_grad_enabled() and self.weight.requires_grad:
            return _ReadoutMatmul.apply(x, self.weight, self.bias, self)
        return F.linear(x, self.weight, self.bias)

    def zeroed_gradient(self) -> torch.Tensor:
        """The reused gradient tensor, zeroed (allocated on first use and when the weight moves or changes dtype)."""
        weight = self.weight
        if self._gradient is None or self._gradient.shape != weight.shape or self._gradient.dtype != weight.dtype \
                or self._gradient.device != weight.device:
            self._gradient = torch.zeros_like(weight)
            return self._gradient
        return self._gradient.zero_()


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


@contextmanager
def readout_gradients_in_place(module: nn.Module) -> Iterator[None]:
    """Within it, every :class:`Readout` under ``module`` adds its weight gradient into ``weight.grad`` in place."""
    readouts = [m for m in module.modules() if isinstance(m, Readout)]
    for readout in readouts:
        readout.in_place = True
    try:
        yield
    finally:
        for readout in readouts:
            readout.in_place = False
