"""Episodes: scripted passes, with targets on some, batched however many passes each one has.

An episode is a list of :class:`Pass` es. Each pass reads its input from the context the previous pass
left (or from an empty context when ``wipe`` is set, the default for an input pass: the original
study's "context wiped between passes"); an idle tick continues the context, as in a live session.
A pass may carry a target: the text the model must say right after it (one token or several,
teacher-forced in training, decoded greedily in evaluation), or :data:`SILENT`.

Episodes in one batch may have different numbers of passes. They are aligned at their last pass; at
each step only the episodes that have a pass there run, split into the ones with a target (full
model, logits at the target positions) and the ones without (stopped once layer L has been read). So
a batch of mixed delays costs exactly the passes its episodes have, with no loop over delays.

What the model answered at a scored pass is a :class:`Prediction`: evaluation (``ran.training.predict``)
makes them and a task's ``score`` reads them, so tasks know episodes and predictions, not the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ran.errors import ConfigError
from ran.passes import SILENT, STOP, Renderer

NO_TARGET = -100

__all__ = ["NO_TARGET", "SILENT", "STOP", "Episode", "Pass", "PassGroup", "Prediction", "RenderedPass", "render",
           "schedule"]


READ_LABELS = ("read", "running_read")  # the read labels a pass may carry (fields of Pass)

@dataclass(frozen=True)
class Pass:
    text: str = ""  # the input (ignored by an idle tick)
    target: str | None = None  # what the model must say next (e.g. " apple"), SILENT, or None
    idle: bool = False  # an idle tick: reads the format's idle text
    wipe: bool = True  # the context is wiped before this pass (an idle tick keeps it unless told)
    speak: bool | None = None  # the gate head's label after this pass: speak, stay silent, or no label
    reply: str | None = None  # what was said after a pass without a target: joins the context, is not trained
    read: str | None = None  # what of ``text`` a trained read should take in ("" = nothing); None = no label
    recall: bool | None = None  # whether this pass needs the memory (a switched recall's label); None = no label
    read_last: bool = False  # label only the last token ``read`` overlaps (where a word split into pieces ends)
    running_read: str | None = None  # what of ``text`` the running units' own read takes in (RanConfig.running_read)

    @classmethod
    def tick(cls, target: str | None = None, wipe: bool = False, speak: bool | None = None,
             read: str | None = None, recall: bool | None = None, running_read: str | None = None) -> Pass:
        """An idle tick, which continues the context like an idle tick in a session."""
        return cls(text="", target=target, idle=True, wipe=wipe, speak=speak, read=read, recall=recall,
                   running_read=running_read)


@dataclass(frozen=True)
class Episode:
    passes: tuple[Pass, ...]
    label: str = ""  # e.g. the key this episode stores, for reports
    group: str = ""  # how results are grouped, e.g. "delay=4"
    info: dict = field(default_factory=dict, compare=False, hash=False)  # task-specific, e.g. {"delay": 4}

    def __post_init__(self) -> None:
        if not self.passes:
            raise ConfigError("an episode needs at least one pass")


@dataclass
class Prediction:
    """The model's answer at one scored pass (a pass with a target or a speak/silent label)."""

    tokens: list[int]  # greedy, as many tokens as the target has ([] for a pass without a target)
    candidate_scores: torch.Tensor | None = None  # (n,) logits of the candidates at the last target token
    speak: float | None = None  # p(speak) from the gate head after the pass, where the pass has a label


@dataclass(frozen=True)
class RenderedPass:
    prompt: tuple[int, ...]  # context + this pass's turn: the reservoir reads at the last of these
    target: tuple[int, ...]  # token ids the model must produce next; () = no target
    speak: bool | None = None  # the gate head's label after this pass
    read: tuple[int, ...] = ()  # per prompt token: 1 read it, 0 do not, -1 no label; () = no labels at all
    recall: bool | None = None  # whether the pass needs the memory (a switched recall's label); None = no label
    running_read: tuple[int, ...] = ()  # per prompt token, the running units' own read's labels (as ``read``)
    idle: bool = False  # an idle tick (with RanConfig.idle_write "keep" it writes nothing)

    @property
    def tokens(self) -> tuple[int, ...]:
        """What the model reads: the prompt, then the target but its last token (teacher forcing)."""
        return self.prompt + self.target[:-1]


def render(episode: Episode, renderer: Renderer) -> list[RenderedPass]:
    """Token ids of every pass: the context carried or wiped, turns and replies as the format says."""
    context: list[int] = []
    rendered = []
    for step in episode.passes:
        if step.wipe:
            context = []
        turn = renderer.idle_tokens if step.idle else renderer.turn(step.text)
        prompt = context + turn
        target = renderer.target(step.target) if step.target is not None else []
        labelled = {}
        for name in READ_LABELS:
            wanted = getattr(step, name)
            if wanted is not None:  # the context keeps no labels: only this pass's own turn is labelled
                labels = [0] * len(turn) if step.idle else renderer.turn_labels(step.text, wanted, step.read_last)
                labelled[name] = (-1,) * len(context) + tuple(labels)
        rendered.append(RenderedPass(tuple(prompt), tuple(target), step.speak, labelled.get("read", ()), step.recall,
                                     labelled.get("running_read", ()), step.idle))
        if step.target is None:
            reply = renderer.target(step.reply) if step.reply else []
        else:
            reply = [] if step.target == SILENT else target
        context = prompt + renderer.close_reply(reply)
    return rendered


@dataclass
class PassGroup:
    """The passes that run together at one step: rows of the batch, left-padded, with their targets."""

    rows: torch.Tensor  # (b,) indices of the episodes in the batch
    passes: list[RenderedPass]
    input_ids: torch.Tensor  # (b, T)
    attention_mask: torch.Tensor  # (b, T)
    position_ids: torch.Tensor  # (b, T) counted over real tokens
    read_index: torch.Tensor  # (b,) the end of each prompt
    labels: torch.Tensor | None  # (b, M): target ids at the last M positions, NO_TARGET elsewhere; None = no targets
    read_labels: torch.Tensor | None = None  # (b, T): 1 read, 0 do not, -1 no label; None = no pass is labelled
    recall_labels: torch.Tensor | None = None  # (b,): 1 needs the memory, 0 does not, -1 no label; None = none
    running_read_labels: torch.Tensor | None = None  # (b, T): the running units' read's labels, as read_labels
    idle: torch.Tensor | None = None  # (b,) bool: which passes are idle ticks; None = none is

    @property
    def has_targets(self) -> bool:
        return self.labels is not None


def left_pad(sequences: list, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token sequences right-aligned in one batch: (input_ids, attention_mask, position_ids), each (B, T)."""
    width = max(len(s) for s in sequences)
    attention_mask = _right_aligned([(1,) * len(s) for s in sequences], width, 0)
    return _right_aligned(sequences, width, pad_id), attention_mask, (attention_mask.cumsum(-1) - 1).clamp_min(0)


def _right_aligned(rows: list, width: int, fill: int) -> torch.Tensor:
    """(B, width) long tensor of ``rows`` right-aligned, ``fill`` before each. Padded as Python lists, then one
    tensor: a few operations per batch, not a few per row (on a GPU the host builds every pass's batch, so per-row
    operations add up over members x episodes)."""
    return torch.tensor([[fill] * (width - len(row)) + list(row) for row in rows], dtype=torch.long)


def _group(rows: list[int], passes: list[RenderedPass], pad_id: int) -> PassGroup:
    input_ids, attention_mask, position_ids = left_pad([p.tokens for p in passes], pad_id)
    width = input_ids.shape[1]
    read_index = torch.tensor([width - len(p.tokens) + len(p.prompt) - 1 for p in passes], dtype=torch.long)
    labels = None
    longest = max(len(p.target) for p in passes)
    if longest:
        labels = _right_aligned([p.target for p in passes], longest, NO_TARGET)
    read_labels, running_read_labels = (_token_labels([getattr(p, name) for p in passes], passes, width)
                                        for name in READ_LABELS)
    recall_labels = None
    if any(p.recall is not None for p in passes):
        recall_labels = torch.tensor([-1 if p.recall is None else int(p.recall) for p in passes], dtype=torch.long)
    idle = torch.tensor([p.idle for p in passes]) if any(p.idle for p in passes) else None
    return PassGroup(torch.tensor(rows), passes, input_ids, attention_mask, position_ids, read_index, labels,
                     read_labels, recall_labels, running_read_labels, idle)


def _token_labels(per_pass: list[tuple[int, ...]], passes: list[RenderedPass], width: int) -> torch.Tensor | None:
    """(b, T) per-token labels placed at each row's prompt, -1 elsewhere; None where no pass has any."""
    if not any(per_pass):
        return None
    return _right_aligned([tuple(wanted) + (-1,) * (len(step.tokens) - len(wanted))
                           for step, wanted in zip(passes, per_pass, strict=True)], width, -1)


def schedule(episodes: list[list[RenderedPass]], pad_id: int) -> list[list[PassGroup]]:
    """Per step, the groups of passes that run: episodes aligned at their last pass, each step split
    into passes with targets and passes without (which only need to reach layer L), and each of those
    into buckets of similar length, so short passes are not padded to the longest one."""
    if not episodes:
        raise ConfigError("no episodes to run")
    steps = max(len(e) for e in episodes)
    plan = []
    for step in range(steps):
        with_target: tuple[list[int], list[RenderedPass]] = ([], [])
        without: tuple[list[int], list[RenderedPass]] = ([], [])
        for row, passes in enumerate(episodes):
            index = step - (steps - len(passes))
            if index < 0:
                continue
            bucket = with_target if passes[index].target else without
            bucket[0].append(row)
            bucket[1].append(passes[index])
        plan.append([_group([rows[i] for i in part], [passes[i] for i in part], pad_id)
                     for rows, passes in (without, with_target) if rows for part in _by_length(passes)])
    return plan


def _by_length(passes: list[RenderedPass], slack: float = 1.5) -> list[list[int]]:
    """Indices of ``passes`` in buckets of similar token length: a bucket's longest pass is at most
    ``slack`` times its shortest (so padding wastes at most a third of a bucket), in input order within."""
    order = sorted(range(len(passes)), key=lambda i: len(passes[i].tokens))
    buckets: list[list[int]] = []
    for index in order:
        if buckets and len(passes[index].tokens) <= slack * len(passes[buckets[-1][0]].tokens):
            buckets[-1].append(index)
        else:
            buckets.append([index])
    return [sorted(bucket) for bucket in buckets]
