"""Deferred: a fact, many blank idle passes, then the fact (the recall machinery with blank ticks).

    "Remember for later: the code word is tiger." / N idle ticks, each from a wiped context /
    "What was the code word? It was" -> " tiger"

Scored per delay, as the retention curve is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ran.tasks.base import register
from ran.tasks.recall import RecallTask
from ran.tasks.texts import DEFAULT_KEY_POOL


@register
@dataclass(frozen=True)
class DeferredTask(RecallTask):
    name: ClassVar[str] = "deferred"
    metric: ClassVar[str] = "recall"

    keys: tuple[str, ...] = DEFAULT_KEY_POOL[12:18]
    store_template: str = "Remember for later: the code word is {key}."
    recall_template: str = "What was the code word? It was"
    train_delays: tuple[int, int] = (2, 6)
    eval_delays: tuple[int, ...] = (2, 4, 6, 12)
    filler: str = "blank"
    eval_fillers: tuple[str, ...] = ("blank",)

    def score(self, episodes, predictions, renderer):
        result = super().score(episodes, predictions, renderer)
        rows = result["groups"]
        result["value"] = sum(r["recall"] for r in rows) / len(rows)  # the mean over delays, not one hop
        return result
