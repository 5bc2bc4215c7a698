"""Which context tokens a session keeps: StreamingLLM sinks + a recent window, or H2O-style importance.

A session re-reads its whole kept context at every pass, so the context buffer *is* the key/value
cache of the next pass; bounding the buffer bounds the cache. Policies (``kind``):

- ``none``: keep everything (the context grows with every pass; the contrast).
- ``streaming`` (StreamingLLM): the first ``sinks`` tokens (attention sinks) plus the last ``window``.
- ``h2o`` (H2O-style heavy hitters): the sinks, the last ``window``, and the ``heavy`` tokens in between
  with the largest accumulated attention received (summed over layers, heads and queries at each
  prefill). Needs attention weights, so the model must run eager attention.

The reservoir's own entries are never in this buffer: prefix-mode pseudo-tokens are prepended and
kv-mode slots appended afresh at every pass from the carried state, so no eviction can touch them.
Positions are re-assigned from 0 at each pass (StreamingLLM's positions-within-the-cache rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ran import schema
from ran.errors import ConfigError

POLICIES = ("none", "streaming", "h2o")


@dataclass(frozen=True)
class ContextPolicy:
    kind: str = "streaming"  # none | streaming | h2o
    sinks: int = 4  # first tokens always kept (attention sinks)
    window: int = 252  # most recent tokens always kept
    heavy: int = 0  # h2o only: tokens between sinks and window kept by accumulated attention

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ConfigError(f"unknown context policy '{self.kind}': choose one of {', '.join(POLICIES)}")
        for name in ("sinks", "window", "heavy"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"context policy {name} must be an integer >= 0, got {value!r}")
        if self.kind != "none" and self.window < 1:
            raise ConfigError(f"context policy window must be >= 1 for '{self.kind}', got {self.window}")
        if self.kind != "h2o" and self.heavy:
            raise ConfigError(f"heavy={self.heavy} only applies to the h2o policy, not '{self.kind}'")

    @property
    def budget(self) -> int | None:
        """Most tokens kept between passes (None: unbounded)."""
        return None if self.kind == "none" else self.sinks + self.heavy + self.window

    @property
    def needs_attention(self) -> bool:
        return self.kind == "h2o"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextPolicy:
        return schema.from_dict(cls, data, "context policy")

    def keep(self, length: int, scores: Sequence[float] | None = None) -> list[int]:
        """Sorted indices of the tokens to keep out of ``length`` (all of them while within budget)."""
        budget = self.budget
        if budget is None or length <= budget:
            return list(range(length))
        sinks = list(range(self.sinks))
        recent = list(range(length - self.window, length))
        heavy: list[int] = []
        if self.heavy:
            middle = range(self.sinks, length - self.window)
            ranked = sorted(middle, key=lambda i: (-float(scores[i]) if scores is not None else 0.0, -i))
            heavy = sorted(ranked[: self.heavy])
        return sinks + heavy + recent


def attention_received(attentions: Sequence[torch.Tensor], n_prefix: int, length: int) -> torch.Tensor:
    """(T,) attention each of the ``length`` tokens received at a prefill, summed over layers, heads, queries.

    ``attentions``: per layer (1, heads, q, kv) with the token columns at [n_prefix, n_prefix + T); any
    kv-mode slot columns (appended on the right) and prefix columns are left out.
    """
    total = torch.zeros(length)
    for weights in attentions:
        if weights is None:
            raise ConfigError("the h2o policy needs attention weights: load the model with "
                              "attn_implementation='eager'")
        total += weights[0, :, :, n_prefix:n_prefix + length].float().sum(dim=(0, 1)).cpu()  # (T,)
    return total
