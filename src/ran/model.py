"""The wrapped model: a frozen causal LM, a fixed reservoir beside layer L, and a trained readout.

Every call of the wrapped model is one *pass* (one tick): the write-back is computed from the state
carried into the pass, the reservoir reads layer L's output (:mod:`ran.reading`), and the pass returns
the next state. ``generate()`` is one pass too: the prefill is the tick and decode steps reuse the slots
written from the state before the pass.

State is explicit: ``forward(..., state=s)`` uses ``s`` and returns the next state in its output; without
``state=`` the model uses (and then replaces) the state it carries, one row per example (the only way to
reach the state after a ``generate()``). Files are not the model's: ``save_pretrained`` and
``from_pretrained`` hand its tensors to :mod:`ran.artifact`, and a state file is the runtime's
(:func:`ran.runtime.save_state`).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from ran import schema
from ran.architectures import architecture_of, decoder_layers, geometry_of
from ran.artifact import (
    GateHead,
    base_model_identity,
    check_base_model,
    load_gate_head,
    read_artifact_description,
    read_artifact_part,
    save_artifact,
)
from ran.decoding import fit_place_decoder, store_states, values_whole, whitening
from ran.errors import ArtifactError, ConfigError
from ran.injection import injector_class
from ran.passes import PassFormat
from ran.reading import (
    DECODED_VALUE_READS,
    DRIVES,
    GATE_CONTEXT_MODULES,
    GATE_CONTEXTS,
    GATE_READS,
    GATED_READ_BIAS,
    IDLE_WRITES,
    PLACE_COUNTS,
    READ_SOURCES,
    RECALLS,
    REPLY_ORDERS,
    RUNNING_CLOCKS,
    SLOT_ORDERS,
    SUMMARIES,
    TOKEN_GATED_WRITES,
    VALUE_READS,
    WRITES,
    WRITTEN_VALUE_READS,
    drive_tokens,
    gated_summary,
    last_real_index,
    ordered_summary,
    rms_normalised,
    summarise,
    token_gates,
)
from ran.recurrence import RECURRENCES, make_recurrence
from ran.reservoir import Reservoir, ReservoirConfig, step_running

READ_QUERY = "read_query"  # the trained read's query, stored with the readout
READ_GATE = "read_gate."  # the gated read's per-token gate (weight, bias), stored with the readout
READ_GATE_CONTEXT = "read_gate_context."  # its view of the whole pass (gate_context "pass"), stored with the readout
RUNNING_READ_GATE = "running_read_gate."  # the running units' own gated read (running_read), stored with the readout
RUNNING_READ_GATE_CONTEXT = "running_read_gate_context."  # its view beyond its token (running_gate_context)
RECALL_GATE = "recall_gate."  # the switched recall's gate (weight, bias), stored with the readout
WRITE_GATE = "write_gate."  # the pass-switched write's gate (weight, bias), stored with the readout
WRAPPED_MARK = "_ran_wrapped"  # set on a base model while a ReservoirModel's hooks are installed on it
NORM_TOKENS, NORM_SKIP = 64, 4  # the residual write's reference norm: over 64 tokens of values, past the first 4
LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "c_proj")


@dataclass(frozen=True)
class RanConfig:
    """How the reservoir is attached to the model. Saved with every artifact and result."""

    mode: str = "kv"  # kv | prefix | additive
    layer: int | None = None  # the layer read and written at; None = the middle layer
    n_slots: int = 8  # slot keys/values (kv) or pseudo-tokens (prefix); unused by additive
    summary: str = "last"  # what the reservoir reads: last | mean | attention | gated (see summarise)
    reservoir: ReservoirConfig = field(default_factory=ReservoirConfig)
    lora_rank: int = 0  # 0 = readout only; > 0 adds LoRA on attention at and above the layer (with recall
    # "switched", only on the passes whose recall switch opens: the others run as the base model)
    lora_alpha: float = 16.0
    readout_seed: int = 0  # initialisation of the readout and LoRA (the reservoir has its own seed)
    recurrence: str = "reservoir"  # reservoir (fixed, random) | gru (a trained GRU cell: a baseline) | none
    gate: bool = False  # a trained speak/silent head on the state after each pass (saved as gate.safetensors)
    gate_hidden: int = 0  # the gate head's hidden ReLU units: 0 = one linear unit, p = sigmoid(w . r + b)
    write: str = "always"  # always: the reservoir steps every pass | gated | switched | pass-switched (reading.WRITES)
    running_units: int = 0  # the reservoir's last R units step every pass whatever the write decides (a clock
    # beside a held memory); 0: the write moves every unit
    running_read: bool = False  # the running units step on a gated read of their own (trained on Pass.running_read
    # labels) instead of the held units' read: e.g. the held units take in the word and the running units the count
    recall: str = "always"  # always: every pass sees the kv slots | switched: where a trained switch opens
    drive: str = "pass"  # pass: one reservoir step per pass | token: one per token, as far as its gate opens
    read_places: int = 1  # the gated read's places: 1 averages its open tokens; P > 1 keeps the first P in order
    read_from: str = "layer"  # what the gated read takes in: layer L's output | the tokens' input embeddings
    slot_order: str = "content"  # how queries find the kv slots: content | reply (by place) | content-reply (both)
    whiten: bool = False  # the kv readouts read the state whitened, (r - mean) W, W = (C + 0.1 tr(C) / K I)^(-1/2), C
    # the covariance of the states the task's training episodes carry into their answers, fit before training
    # (runner.fit_whitening): a fixed linear map, so the trained read is the same class of map, only well conditioned
    # (on the sequence task it did worse than the raw state: README, "Sequence, whitened")
    reply_places: int = 0  # the reply's places the slot order splits the slots among: 0 = read_places (a value read
    # in one pass, place by place); P > 0: P places whatever the read (a list said over several passes)
    value_read: str = "direct"  # the slots' values: direct (of the state) | decoded (of each place's decoded token)
    # | residual (that decoded token written across layer L's attention output, no slots) | logits (written into
    # the reply's logits as a scaled cosine with every vocabulary token, no slots)
    place_count: str = "soft"  # how the ordered read places a token: by the gates' running sum | hard: open gates
    gate_context: str = "token"  # what a read gate sees: its token | pass: also the pass's last token | next: and
    # the token after it | pass-next: both | pass-veto: the pass, and the token after only to shut a gate
    idle_write: str = "gate"  # an idle tick's write: gate (its write decides, as any pass's) | keep (the held units
    # stay as they were: a tick has no new input); older artifacts, saved without it, keep "gate"
    running_gate_context: str = "token"  # what the running units' read gates see (running_read), as gate_context:
    # "pass" lets a token's gate see the pass's last token, so the read can open a whole turn of one kind and a
    # part of another (tried for silence's release beside timed's "N turns": it opened the release's read, but over
    # two seeds did not mend silence; README, "A running read that sees its turn")
    gate_reads: str = "state"  # what the gate head reads: the whole state | running: only the running units, so
    # when to speak follows the clock, not what the held units keep (a word training never said)
    running_clock: str = "coupled"  # the running units' step: coupled (sees the whole state through W_r) | isolated
    # (sees only the running units: W_r's held-to-running block is cut, so the held value cannot drive the clock)
    write_hidden: int = 0  # the pass-switched write's hidden ReLU units: 0 = one linear unit on layer L's input
    write_margin: float = 0.0  # the pass-switched write opens where its logit exceeds this (0: p > 0.5); training
    # teaches the labelled passes whatever it is, so it can be raised on a trained artifact to keep the write shut on
    # statements it is unsure of (README, "What the write opens on")

    def __post_init__(self) -> None:
        injector_class(self.mode)  # raises on an unknown mode
        if self.layer is not None and (not isinstance(self.layer, int) or self.layer < 0):
            raise ConfigError(f"layer must be an integer >= 0 or None (the middle), got {self.layer!r}")
        if not isinstance(self.n_slots, int) or self.n_slots < 1:
            raise ConfigError(f"n_slots must be an integer >= 1, got {self.n_slots!r}")
        if self.summary not in SUMMARIES:
            raise ConfigError(f"unknown summary '{self.summary}': choose one of {', '.join(SUMMARIES)}")
        if self.write not in WRITES:
            raise ConfigError(f"unknown write '{self.write}': choose one of {', '.join(WRITES)}")
        if self.write in TOKEN_GATED_WRITES and self.summary != "gated":
            raise ConfigError(f"write '{self.write}' opens with the gated read's gates: it needs summary 'gated', "
                              f"not '{self.summary}'")
        if (not isinstance(self.running_units, int) or isinstance(self.running_units, bool)
                or not 0 <= self.running_units < self.reservoir.units):
            raise ConfigError(f"running_units must be an integer from 0 to {self.reservoir.units - 1} (the reservoir "
                              f"has {self.reservoir.units} units; 0: the write moves every unit), got "
                              f"{self.running_units!r}")
        if self.running_units and self.write == "always":
            raise ConfigError(f"running_units {self.running_units} step every pass beside units the write holds: it "
                              "needs a write that can hold (gated, switched or pass-switched), not 'always'")
        if not isinstance(self.running_read, bool):
            raise ConfigError(f"running_read must be true or false, got {self.running_read!r}")
        if self.running_read and not (self.running_units and self.summary == "gated" and self.read_places == 1
                                      and self.drive == "pass"):
            raise ConfigError("running_read gives the running units a gated read of their own: it needs "
                              "running_units > 0, summary 'gated', read_places 1 and drive 'pass', not "
                              f"running_units {self.running_units}, summary '{self.summary}', read_places "
                              f"{self.read_places} and drive '{self.drive}'")
        if self.drive not in DRIVES:
            raise ConfigError(f"unknown drive '{self.drive}': choose one of {', '.join(DRIVES)}")
        if self.drive == "token" and self.summary != "gated":
            raise ConfigError(f"drive 'token' steps the reservoir on each token as far as the gated read's gate opens: "
                              f"it needs summary 'gated', not '{self.summary}'")
        if not isinstance(self.read_places, int) or isinstance(self.read_places, bool) or self.read_places < 1:
            raise ConfigError(f"read_places must be an integer >= 1, got {self.read_places!r}")
        if self.read_places > 1 and (self.summary != "gated" or self.drive != "pass"):
            raise ConfigError(f"read_places {self.read_places} orders the gated read's open tokens: it needs summary "
                              f"'gated' and drive 'pass', not '{self.summary}' and '{self.drive}'")
        if self.read_from not in READ_SOURCES:
            raise ConfigError(f"unknown read_from '{self.read_from}': choose one of {', '.join(READ_SOURCES)}")
        if self.read_from != "layer" and self.summary != "gated":
            raise ConfigError(f"read_from '{self.read_from}' is what the gated read's gates weigh: it needs summary "
                              f"'gated', not '{self.summary}'")
        if self.gate_context not in GATE_CONTEXTS:
            raise ConfigError(f"unknown gate_context '{self.gate_context}': choose one of {', '.join(GATE_CONTEXTS)}")
        if self.gate_context != "token" and self.summary != "gated":
            raise ConfigError(f"gate_context '{self.gate_context}' is what the gated read's gates see: it needs "
                              f"summary 'gated', not '{self.summary}'")
        if self.running_gate_context not in GATE_CONTEXTS:
            raise ConfigError(f"unknown running_gate_context '{self.running_gate_context}': choose one of "
                              f"{', '.join(GATE_CONTEXTS)}")
        if self.running_gate_context != "token" and not self.running_read:
            raise ConfigError(f"running_gate_context '{self.running_gate_context}' is what the running units' own "
                              "read's gates see: it needs running_read")
        if self.slot_order not in SLOT_ORDERS:
            raise ConfigError(f"unknown slot_order '{self.slot_order}': choose one of {', '.join(SLOT_ORDERS)}")
        if self.slot_order in REPLY_ORDERS and self.mode != "kv":
            raise ConfigError(f"slot_order '{self.slot_order}' shows each place's kv slots to one query: it needs mode "
                              f"'kv', not '{self.mode}'")
        if not isinstance(self.reply_places, int) or isinstance(self.reply_places, bool) or self.reply_places < 0:
            raise ConfigError(f"reply_places must be an integer >= 0 (0: the read's places), got {self.reply_places!r}")
        if self.reply_places and self.slot_order not in REPLY_ORDERS:
            raise ConfigError(f"reply_places {self.reply_places} splits the kv slots among the reply's places: it "
                              f"needs slot_order 'reply' or 'content-reply', not '{self.slot_order}'")
        if self.reply_places and self.value_read != "direct":
            raise ConfigError(f"reply_places {self.reply_places} sets the places apart from the read's: it needs "
                              f"value_read 'direct' (the decoded reads decode the read's places), not "
                              f"'{self.value_read}'")
        if self.slot_order in REPLY_ORDERS and self.n_slots % self.slot_places:
            raise ConfigError(f"slot_order '{self.slot_order}' splits the {self.n_slots} slots evenly among the "
                              f"reply's {self.slot_places} places: give n_slots a multiple of {self.slot_places}")
        if self.value_read not in VALUE_READS:
            raise ConfigError(f"unknown value_read '{self.value_read}': choose one of {', '.join(VALUE_READS)}")
        if self.place_count not in PLACE_COUNTS:
            raise ConfigError(f"unknown place_count '{self.place_count}': choose one of {', '.join(PLACE_COUNTS)}")
        if self.place_count != "soft" and self.read_places == 1:
            raise ConfigError(f"place_count '{self.place_count}' places the ordered read's tokens: it needs "
                              "read_places > 1")
        if self.value_read in DECODED_VALUE_READS and self.recurrence != "reservoir":
            raise ConfigError(f"value_read '{self.value_read}' is fit once on the fixed reservoir's states: it needs "
                              f"recurrence 'reservoir', not '{self.recurrence}'")
        if self.value_read in DECODED_VALUE_READS and (self.slot_order not in REPLY_ORDERS
                                                        or self.read_from != "embeddings"):
            raise ConfigError(f"value_read '{self.value_read}' decodes each place's token embedding for the query that "
                              "says it: it needs slot_order 'reply' or 'content-reply' and read_from 'embeddings', not "
                              f"'{self.slot_order}' and '{self.read_from}'")
        if not isinstance(self.whiten, bool):
            raise ConfigError(f"whiten must be true or false, got {self.whiten!r}")
        if self.whiten and (self.mode != "kv" or self.value_read != "direct" or self.recurrence == "gru"):
            raise ConfigError(f"whiten whitens the state the kv slots' direct read takes in, fit once on a fixed "
                              f"reservoir's states: it needs mode 'kv', value_read 'direct' and recurrence 'reservoir' "
                              f"(or 'none'), not '{self.mode}', '{self.value_read}' and '{self.recurrence}'")
        if self.idle_write not in IDLE_WRITES:
            raise ConfigError(f"unknown idle_write '{self.idle_write}': choose one of {', '.join(IDLE_WRITES)}")
        if self.idle_write == "keep" and self.write == "always":
            raise ConfigError("idle_write 'keep' holds the state through idle ticks: it needs a write that can hold "
                              "(gated, switched or pass-switched), not 'always'")
        if self.gate_reads not in GATE_READS:
            raise ConfigError(f"unknown gate_reads '{self.gate_reads}': choose one of {', '.join(GATE_READS)}")
        if self.gate_reads == "running" and not self.running_units:
            raise ConfigError("gate_reads 'running' gives the gate head the running units alone: it needs "
                              "running_units > 0")
        if not isinstance(self.write_hidden, int) or self.write_hidden < 0:
            raise ConfigError(f"write_hidden must be an integer >= 0, got {self.write_hidden!r}")
        if self.write_hidden and self.write != "pass-switched":
            raise ConfigError(f"write_hidden {self.write_hidden} gives the pass-switched write's switch hidden units: "
                              f"it needs write 'pass-switched', not '{self.write}' (set write_hidden 0, "
                              "--write-hidden 0)")
        if not isinstance(self.write_margin, int | float) or not math.isfinite(self.write_margin):
            raise ConfigError(f"write_margin must be a finite number (a logit), got {self.write_margin!r}")
        if self.write_margin and self.write != "pass-switched":
            raise ConfigError(f"write_margin moves the pass-switched write's threshold: it needs write "
                              f"'pass-switched', not '{self.write}'")
        if self.running_clock not in RUNNING_CLOCKS:
            raise ConfigError(f"unknown running_clock '{self.running_clock}': choose one of "
                              f"{', '.join(RUNNING_CLOCKS)}")
        if self.running_clock == "isolated" and not (self.running_units and self.drive == "pass"):
            raise ConfigError("running_clock 'isolated' cuts the held units out of the running units' step: it needs "
                              f"running_units > 0 and drive 'pass', not running_units {self.running_units}, drive "
                              f"'{self.drive}'")
        if self.recall not in RECALLS:
            raise ConfigError(f"unknown recall '{self.recall}': choose one of {', '.join(RECALLS)}")
        if self.recall == "switched" and self.mode != "kv":
            raise ConfigError(f"recall 'switched' hides the kv slots from a pass: it needs mode 'kv', not "
                              f"'{self.mode}'")
        if not isinstance(self.gate_hidden, int) or isinstance(self.gate_hidden, bool) or self.gate_hidden < 0:
            raise ConfigError(f"gate_hidden must be an integer >= 0 (0: a linear gate head), got {self.gate_hidden!r}")
        if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be an integer >= 0, got {self.lora_rank!r}")
        if not self.lora_alpha > 0 or not math.isfinite(self.lora_alpha):
            raise ConfigError(f"lora_alpha must be > 0, got {self.lora_alpha!r}")
        if self.recurrence not in RECURRENCES:
            raise ConfigError(f"unknown recurrence '{self.recurrence}': choose one of {', '.join(RECURRENCES)}")

    @property
    def slot_places(self) -> int:
        """The reply's places a reply slot order splits the kv slots among."""
        return self.reply_places or self.read_places

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "RAN config") -> RanConfig:
        """The config from its JSON form, every field checked against its type (the reservoir's too)."""
        return schema.from_dict(cls, data, what)


class _ReadComplete(Exception):
    """Raised by the read hook to end a ``read_only`` pass as soon as the reservoir has its input."""


class _LayerInputReached(Exception):
    """Raised at layer L's input by :meth:`ReservoirModel.layer_input`: the layers above are not needed."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


class _PassThrough(nn.Module):
    """Stands in for a decoder layer below L while a pass starts from a precomputed layer-L input."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


@dataclass
class RanOutput:
    logits: torch.Tensor | None  # (B, T, vocab): the input's positions only; None for a read_only pass
    state: torch.Tensor  # (B, K): the state after this pass
    cache: Any = None
    read_logits: torch.Tensor | None = None  # (B, T): the gated read's per-token logits (summary "gated")
    recall_logits: torch.Tensor | None = None  # (B,): the switched recall's logit of showing the memory
    write_logits: torch.Tensor | None = None  # (B,): the pass-switched write's logit of stepping
    running_read_logits: torch.Tensor | None = None  # (B, T): the running units' own read's logits (running_read)
    wrote: torch.Tensor | None = None  # (B,): how far the state moved to the reservoir's step; None: fully (always)
    shown: torch.Tensor | None = None  # (B,) bool: whether the pass saw the memory (a switched recall's decision)


@dataclass
class OpenPass:
    """A pass the caller drives step by step: see :meth:`ReservoirModel.open_pass`."""

    inputs: dict[str, Any]  # keyword arguments of the prefill call of ``model.base`` (prefix embeddings added)
    n_prefix: int  # positions prepended to the input (prefix mode): drop them from the prefill's logits
    state: torch.Tensor  # (B, K) the state carried into the pass
    _reservoir: Reservoir
    _read: _ReadPoint
    _next_state: torch.Tensor | None = None

    def next_state(self) -> torch.Tensor:
        """(B, K) the state after this pass; available as soon as the prefill has run layer L."""
        if self._next_state is None:
            self._next_state = self._read.next_state(self._reservoir, self.state)
        return self._next_state


def gate_head(config: RanConfig) -> nn.Module:
    """The speak/silent head: one linear unit on the state, or (``gate_hidden`` H) H ReLU units and one on them.
    Its output unit starts at zero (p = 0.5); the hidden layer is drawn from ``readout_seed``. With ``gate_reads``
    "running" its weights on the held units start at zero and, as it only ever sees those units zeroed
    (:func:`gate_input`), stay there: the stored head reads the running units alone wherever it is applied."""
    units = config.reservoir.units
    if not config.gate_hidden:
        head = nn.Linear(units, 1)
        output = head
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.readout_seed)
            head = nn.Sequential(nn.Linear(units, config.gate_hidden), nn.ReLU(), nn.Linear(config.gate_hidden, 1))
        output = head[2]
        with torch.no_grad():
            head[0].weight[:, :held_units(config)] = 0.0
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    return head


def held_units(config: RanConfig) -> int:
    """How many of the state's first units the gate head does not read (``gate_reads`` "running": the held ones)."""
    return config.reservoir.units - config.running_units if config.gate_reads == "running" else 0


def gate_input(config: RanConfig, state: torch.Tensor) -> torch.Tensor:
    """(B, K) what the gate head reads of the state: all of it, or the running units with the held ones zeroed."""
    held = held_units(config)
    return F.pad(state[:, held:], (held, 0)) if held else state


def gate_head_tensors(head: nn.Module) -> GateHead:
    """The head as stored (:class:`ran.artifact.GateHead`), with the runtime's threshold 0.5."""
    if isinstance(head, nn.Linear):
        return GateHead(head.weight[0].detach(), float(head.bias.detach()), threshold=0.5)
    hidden, output = head[0], head[2]
    return GateHead(output.weight[0].detach(), float(output.bias.detach()), threshold=0.5,
                    hidden_weight=hidden.weight.detach(), hidden_bias=hidden.bias.detach())


@torch.no_grad()
def load_gate_tensors(head: nn.Module, gate: GateHead) -> None:
    output = head if isinstance(head, nn.Linear) else head[2]
    output.weight.copy_(gate.weight[None])
    output.bias.fill_(gate.bias)
    if not isinstance(head, nn.Linear):
        head[0].weight.copy_(gate.hidden_weight)
        head[0].bias.copy_(gate.hidden_bias)


def switch_gate(width: int, device, hidden: int = 0, seed: int = 0) -> nn.Module:
    """A pass-level switch's logit from layer L's normalised input: one linear unit, or (``hidden`` H) H ReLU units
    drawn from ``seed`` under their own generator and one linear unit on them. Its output starts at zero (logit 0)."""
    if not hidden:
        gate = output = nn.Linear(width, 1)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gate = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        output = gate[2]
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    return gate.to(device)


@dataclass
class _ReadPoint:
    """Where the reservoir reads this pass, and what it read (filled by the layer hook once per pass)."""

    batch: int
    last_index: torch.Tensor  # (B,) position of the last real token in the (possibly prefixed) sequence
    token_mask: torch.Tensor | None  # (B, T) real-token mask for the mean summary
    content: torch.Tensor | None = None  # (B, T, d) what the gated read weighs, where not layer L's output
    summary: torch.Tensor | None = None  # (B, d) the reservoir's input x(t)
    read_logits: torch.Tensor | None = None  # (B, T) the gated read's per-token logits (summary "gated")
    write: torch.Tensor | None = None  # (B,) how far the state moves to the reservoir's step (gated, switched)
    taught_write: torch.Tensor | None = None  # (B,) a switched write's 0/1 given in training; -1: the gates decide
    recall_logits: torch.Tensor | None = None  # (B,) the switched recall's logits (set once per pass, at layer L)
    taught_recall: torch.Tensor | None = None  # (B,) a switched recall's 0/1 given in training; -1: the switch
    write_logits: torch.Tensor | None = None  # (B,) the pass-switched write's logits (set once per pass, at layer L)
    shown: torch.Tensor | None = None  # (B,) bool: the switched recall's decision (set once per pass, at layer L)
    tokens: torch.Tensor | None = None  # (B, T, d) the normalised tokens a token drive steps on (drive "token")
    token_gates: torch.Tensor | None = None  # (B, T) how far each token's step is taken (drive "token")
    switched: bool = False  # the pass-level switches of this pass are decided
    stop_after_read: bool = False  # end the pass once layer L has been read (no logits wanted)
    running_units: int = 0  # the last R units take the step whatever the write (RanConfig.running_units)
    running_summary: torch.Tensor | None = None  # (B, d) the running units' own input (RanConfig.running_read)
    isolated_clock: bool = False  # the running units' step sees only them (RanConfig.running_clock "isolated")
    running_read_logits: torch.Tensor | None = None  # (B, T) that read's per-token logits
    idle: torch.Tensor | None = None  # (B,) bool: the rows whose pass is an idle tick that writes nothing (idle_write)

    def next_state(self, reservoir: Reservoir, state: torch.Tensor) -> torch.Tensor:
        """(B, K) the state after this pass: the reservoir's step (one on the summary, or with a token drive one
        per token, :func:`ran.reading.drive_tokens`), or with a gated write ``state + w * (step - state)``, so a
        pass whose read gates stay shut leaves the state as it was; the last ``running_units`` units take the
        step whatever w is, on a read of their own where there is one (``running_summary``)."""
        if self.summary is None:
            raise RuntimeError("the reservoir's layer has not run in this pass yet; nothing to read")
        if self.tokens is None:
            stepped = reservoir.step(state, self.summary)
        else:
            stepped = drive_tokens(reservoir.step, state, self.tokens, self.token_gates)
        if self.write is None:
            return stepped
        if self.idle is not None:  # idle_write "keep": an idle tick leaves the held units as they were
            self.write = torch.where(self.idle, torch.zeros_like(self.write), self.write)
        write = self.write[:, None].expand_as(state)
        if self.running_units:
            running = self.running_units
            if self.running_summary is not None or self.isolated_clock:
                drive = self.summary if self.running_summary is None else self.running_summary
                stepped = torch.cat([stepped[:, :-running],
                                     step_running(reservoir.step, state, drive, running, self.isolated_clock)], dim=1)
            write = torch.cat([write[:, :-running], write.new_ones(write.shape[0], running)], dim=1)
        return state + write * (stepped - state)


class ReservoirModel(nn.Module):
    """A causal LM with a reservoir attached at one layer. Create with :func:`wrap` or :meth:`from_pretrained`."""

    def __init__(self, base: PreTrainedModel, config: RanConfig):
        super().__init__()
        if getattr(base, WRAPPED_MARK, False):
            raise ConfigError("this base model is already wrapped by a ReservoirModel (its hooks are installed): "
                              "call unwrap() on that wrapper first (base = model.unwrap()), or load a fresh base")
        architecture_of(base)
        geometry = geometry_of(base)
        layer = geometry.n_layers // 2 if config.layer is None else config.layer
        if not 0 <= layer < geometry.n_layers:
            raise ConfigError(
                f"layer {layer} out of range: {geometry.model_type} has {geometry.n_layers} layers "
                f"(0..{geometry.n_layers - 1})"
            )
        checkpointing = getattr(base, "is_activation_checkpointing", None)
        if checkpointing is None:
            checkpointing = getattr(base, "is_gradient_checkpointing", False)
        if checkpointing:
            raise ConfigError("gradient checkpointing re-runs layers and would tick the reservoir twice; disable it")
        self.config = replace(config, layer=layer)
        self.geometry = geometry
        self.base = base
        base.requires_grad_(False)
        device = next(base.parameters()).device
        self.reservoir = make_recurrence(config, geometry.hidden_size * config.read_places).to(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.readout_seed)
            decoded = ({"decoded_places": config.read_places,
                        "write": config.value_read if config.value_read in WRITTEN_VALUE_READS else None}
                       if config.value_read in DECODED_VALUE_READS else {})
            if config.whiten:
                decoded["whiten"] = True
            self.injector = injector_class(config.mode)(geometry, config.reservoir.units, layer, config.n_slots,
                                                        **decoded)
            if config.lora_rank:
                self._add_lora()
            # The gated read's view beyond its token (gate_context "pass", "next" or both); drawn last, so other
            # configs' draws are as they were.
            context = GATE_CONTEXT_MODULES.get(config.gate_context)
            self.read_gate_context = context(geometry.hidden_size).to(device) if context else None
        self.injector.to(device)
        # The trained read (summary "attention"): which tokens the reservoir reads; zero = the plain mean.
        self.read_query = (nn.Parameter(torch.zeros(geometry.hidden_size, device=device))
                           if config.summary == "attention" else None)
        # The gated read (summary "gated"): which tokens of a pass the reservoir takes in, and how much.
        self.read_gate = nn.Linear(geometry.hidden_size, 1).to(device) if config.summary == "gated" else None
        if self.read_gate is not None:
            nn.init.zeros_(self.read_gate.weight)
            nn.init.constant_(self.read_gate.bias, GATED_READ_BIAS)
        self.running_read_gate = None  # the running units' own read, drawn apart so other configs' draws stay
        self.running_read_gate_context = None
        if config.running_read:
            with torch.random.fork_rng(devices=[]):
                self.running_read_gate = nn.Linear(geometry.hidden_size, 1).to(device)
                context = GATE_CONTEXT_MODULES.get(config.running_gate_context)
                self.running_read_gate_context = context(geometry.hidden_size).to(device) if context else None
            nn.init.zeros_(self.running_read_gate.weight)
            nn.init.constant_(self.running_read_gate.bias, GATED_READ_BIAS)
        # p(speak) = sigmoid(w . r + b) on the state after a pass, or (gate_hidden H) on H ReLU units of it;
        # starts undecided (p = 0.5).
        self.gate_head = gate_head(config).to(device) if config.gate else None
        self.decoder_fit: dict[str, Any] | None = None  # value_read decoded / residual: the report of its decoder's fit
        self.whitening_fit: dict[str, Any] | None = None  # whiten: the report of its fit (runner.fit_whitening)
        # Pass-level switches on layer L's input, starting undecided (logit 0, shut): whether a pass sees the
        # slots (recall "switched") and whether the reservoir steps (write "pass-switched").
        self.recall_gate = switch_gate(geometry.hidden_size, device) if config.recall == "switched" else None
        self.write_gate = (switch_gate(geometry.hidden_size, device, config.write_hidden, config.readout_seed)
                           if config.write == "pass-switched" else None)
        self.injector.install(base)
        self._read_hook = decoder_layers(base)[layer].register_forward_hook(self._capture)
        self._switch_hook = (None if self.recall_gate is None and self.write_gate is None else
                             decoder_layers(base)[layer].register_forward_pre_hook(self._switch, with_kwargs=True))
        # transformers slices the kept positions (logits_to_keep) before the LM head; F.linear on that
        # non-contiguous slice runs as a batched matmul against the vocabulary matrix expanded per example,
        # ~7x slower on a CPU than one matmul (SmolLM2, 48 rows, one thread: 2.1 s against 0.3 s).
        head = base.get_output_embeddings()
        self._head_hook = None if head is None else head.register_forward_pre_hook(_contiguous_input)
        setattr(base, WRAPPED_MARK, True)
        self._read: _ReadPoint | None = None
        self.state: torch.Tensor | None = None
        self.injection_enabled = True
        # With a switched recall, LoRA's updates count only on the rows whose switch shows the memory.
        self._lora_hooks = ([module.register_forward_hook(self._switched_lora) for module in self._lora_updates()]
                            if config.lora_rank and config.recall == "switched" else [])

    # ----- passes --------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                state: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, read_only: bool = False,
                read_index: torch.Tensor | None = None, layer_input: torch.Tensor | None = None,
                taught_write: torch.Tensor | None = None, taught_recall: torch.Tensor | None = None,
                idle: torch.Tensor | bool | None = None, **kwargs) -> RanOutput:
        """One pass. Extra keyword arguments go to the base model (e.g. ``use_cache``, ``logits_to_keep``).

        ``read_only=True`` stops the pass once the reservoir has read layer L: the next state is the
        same, no logits are computed (training uses it for passes without a target).
        ``read_index`` (B,) is where the reservoir reads (default: each example's last real token); a
        teacher-forced pass reads at the end of its prompt, before the target tokens.
        ``layer_input`` (B, T, d) is layer L's input for these tokens, from :meth:`layer_input`: the
        layers below L are skipped (they do not depend on the state in kv and additive mode).
        ``taught_write`` (B,) sets a switched write in training (1 step, 0 keep; -1: the gates decide), and
        ``taught_recall`` (B,) a switched recall (1 the slots are seen, 0 hidden; -1: the switch decides).
        ``idle`` (B,) bool, or one bool for every row: the passes that are idle ticks (with idle_write "keep"
        they write nothing).
        """
        tokens = input_ids if input_ids is not None else inputs_embeds
        batch, length = tokens.shape[0], tokens.shape[1]
        state = self._state_for(batch, state)
        with self._pass(state, attention_mask, batch, length, read_index, idle) as read:
            read.content = self._read_content(input_ids, inputs_embeds)
            read.stop_after_read = read_only
            read.taught_write, read.taught_recall = taught_write, taught_recall
            inputs = self._model_inputs(input_ids, inputs_embeds, attention_mask, position_ids)
            try:
                with self._starting_at_layer(layer_input):
                    output = self.base(**inputs, **kwargs)
            except _ReadComplete:
                output = None
        next_state = self._tick(state, read)
        switches = {"read_logits": None if read.read_logits is None else read.read_logits[:, -length:],
                    "recall_logits": read.recall_logits, "write_logits": read.write_logits, "wrote": read.write,
                    "running_read_logits": (None if read.running_read_logits is None
                                            else read.running_read_logits[:, -length:]),
                    "shown": read.shown}
        if output is None:
            return RanOutput(logits=None, state=next_state, **switches)
        logits = output.logits[:, -length:]  # drop prefix positions (a no-op with logits_to_keep)
        return RanOutput(logits=logits, state=next_state, cache=getattr(output, "cache", None), **switches)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 state: torch.Tensor | None = None, idle: torch.Tensor | bool | None = None, **kwargs):
        """``generate()`` of the base model as one pass; returns what it returns (prompt + new tokens).
        ``idle`` as in :meth:`forward`."""
        batch, length = input_ids.shape
        state = self._state_for(batch, state)
        n_prefix = self._n_prefix()
        with self._pass(state, attention_mask, batch, length, idle=idle) as read:
            read.content = self._read_content(input_ids, None)
            if n_prefix:
                inputs = self._model_inputs(input_ids, None, attention_mask, None)
                inputs.pop("position_ids")
                output = self.base.generate(**inputs, **kwargs)  # new tokens only (inputs_embeds given)
                sequences = output if isinstance(output, torch.Tensor) else output.sequences
                repeats = sequences.shape[0] // batch
                sequences = torch.cat([input_ids.repeat_interleave(repeats, dim=0), sequences], dim=1)
                if isinstance(output, torch.Tensor):
                    output = sequences
                else:
                    output.sequences = sequences
            else:
                output = self.base.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        self._tick(state, read)
        return output

    @contextmanager
    def open_pass(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  state: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                  idle: torch.Tensor | bool | None = None) -> Iterator[OpenPass]:
        """One pass whose base-model calls the caller makes (e.g. a token loop that streams with the cache).

        Inside the block call ``model.base(**p.inputs, use_cache=True)`` once (the prefill: layer L is
        read there), then any decode steps with the returned cache; the write-back from ``p.state``
        stays on throughout. On normal exit the reservoir ticks once and ``p.next_state()`` becomes the
        carried state; if the block raises, nothing ticks. ``position_ids`` (B, T) for left-padded rows:
        ``p.inputs`` then holds them (shifted past any prefix), and a decode step's are one past its last.
        ``idle`` as in :meth:`forward`.
        """
        batch, length = input_ids.shape
        state = self._state_for(batch, state)
        with self._pass(state, attention_mask, batch, length, idle=idle) as read:
            read.content = self._read_content(input_ids, None)
            handle = OpenPass(inputs=self._model_inputs(input_ids, None, attention_mask, position_ids),
                              n_prefix=self._n_prefix(), state=state, _reservoir=self.reservoir, _read=read)
            yield handle
            next_state = handle.next_state()
        self.state = next_state

    def _idle_rows(self, idle: torch.Tensor | bool | None, batch: int, device: torch.device) -> torch.Tensor | None:
        """(B,) bool: the idle ticks that write nothing this pass (idle_write "keep"); None where every row's write
        decides."""
        if idle is None or self.config.idle_write != "keep":
            return None
        rows = torch.as_tensor(idle, dtype=torch.bool)  # where the caller has it (the CPU): no device sync
        if not bool(rows.any()):
            return None
        return rows.to(device).expand(batch)  # one bool: every row

    def _read_content(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
                      ) -> torch.Tensor | None:
        """(B, S + T, d) the tokens' input embeddings for a read from them (zeros at the S prefix positions,
        which the read never takes in); None for a read from layer L."""
        if self.config.read_from != "embeddings":
            return None
        with torch.no_grad():  # the embeddings are frozen; the read's gates come from layer L
            embedded = inputs_embeds if input_ids is None else self.base.get_input_embeddings()(input_ids)
        n_prefix = self._n_prefix()
        if n_prefix:
            embedded = torch.cat([embedded.new_zeros(embedded.shape[0], n_prefix, embedded.shape[2]), embedded], 1)
        return embedded

    def _n_prefix(self) -> int:
        return self.injector.n_prefix_positions if self.injection_enabled else 0

    @property
    def can_start_at_layer(self) -> bool:
        """Whether layer L's input is independent of the state (kv and additive write at or after L)."""
        return self._n_prefix() == 0

    @torch.no_grad()
    def layer_input(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    position_ids: torch.Tensor | None = None, cache: Any = None) -> torch.Tensor:
        """(B, T, d) the input of layer L for these tokens; only the layers below L run.

        With ``cache`` (a transformers cache holding earlier tokens' keys and values of the layers below
        L; ``attention_mask`` then covers those tokens too) only the new tokens are computed, and the
        cache is extended with them.
        """
        if not self.can_start_at_layer:
            raise ConfigError(f"{self.config.mode} mode writes below layer {self.config.layer}: "
                              "its layer input depends on the state")

        def stop(module, args, kwargs):
            raise _LayerInputReached(args[0] if args else kwargs["hidden_states"])

        handle = decoder_layers(self.base)[self.config.layer].register_forward_pre_hook(stop, with_kwargs=True)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if position_ids is not None:
            inputs["position_ids"] = position_ids
        if cache is not None:
            inputs.update(cache=cache, use_cache=True)
        try:
            self.base(**inputs)
        except _LayerInputReached as reached:
            return reached.hidden
        finally:
            handle.remove()
        raise RuntimeError(f"layer {self.config.layer} did not run")

    @contextmanager
    def _starting_at_layer(self, hidden: torch.Tensor | None) -> Iterator[None]:
        """Within the block the base model skips the layers below L and feeds ``hidden`` to layer L."""
        if hidden is None:
            yield
            return
        if not self.can_start_at_layer:
            raise ConfigError(f"{self.config.mode} mode cannot start a pass at layer {self.config.layer}")
        layers = decoder_layers(self.base)
        below = [layers[index] for index in range(self.config.layer)]

        def substitute(module, args, kwargs):
            if args:
                return (hidden, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hidden}

        for index in range(self.config.layer):
            layers[index] = _PassThrough()
        handle = layers[self.config.layer].register_forward_pre_hook(substitute, with_kwargs=True, prepend=True)
        try:
            yield
        finally:
            handle.remove()
            for index, layer in enumerate(below):
                layers[index] = layer

    @contextmanager
    def _pass(self, state: torch.Tensor, attention_mask: torch.Tensor | None, batch: int, length: int,
              read_index: torch.Tensor | None = None, idle: torch.Tensor | bool | None = None) -> Iterator[_ReadPoint]:
        n_prefix = self._n_prefix()
        device = state.device
        if attention_mask is None:
            last_index = torch.full((batch,), length - 1, device=device)
            token_mask = None
        else:
            last_index = last_real_index(attention_mask)
            token_mask = attention_mask.bool()
        if read_index is not None:  # the mean summary covers the prompt only, not teacher-forced targets
            last_index = read_index.to(device)
            if token_mask is None:
                token_mask = torch.ones(batch, length, dtype=torch.bool, device=device)
            positions = torch.arange(length, device=token_mask.device)
            token_mask = token_mask & (positions[None, :] <= last_index[:, None].to(token_mask.device))
        if n_prefix and token_mask is not None:
            token_mask = torch.cat([token_mask.new_zeros(batch, n_prefix), token_mask], dim=1)
        elif n_prefix:
            token_mask = torch.cat([torch.zeros(batch, n_prefix, dtype=torch.bool, device=device),
                                    torch.ones(batch, length, dtype=torch.bool, device=device)], dim=1)
        read = _ReadPoint(batch=batch, last_index=last_index + n_prefix, token_mask=token_mask,
                          running_units=self.config.running_units,
                          isolated_clock=self.config.running_clock == "isolated",
                          idle=self._idle_rows(idle, batch, device))
        self._read = read
        if self.injection_enabled:
            self.injector.begin_pass(state)
            if self.config.slot_order in REPLY_ORDERS:
                self.injector.slots.reply_start = read.last_index
                self.injector.slots.places = self.config.slot_places
                self.injector.slots.prompt_sees_all = self.config.slot_order == "content-reply"
        try:
            yield read
        finally:
            self.injector.end_pass()
            self._read = None

    def _capture(self, module, args, output) -> None:
        read = self._read
        if read is None or read.summary is not None:  # outside a pass, or a decode step: tick once per pass
            return
        hidden = output[0] if isinstance(output, tuple) else output  # (B', T, d)
        hidden = hidden[:: hidden.shape[0] // read.batch]  # generate() may have expanded each example
        if self.config.summary == "gated":
            mask = read.token_mask if read.token_mask is not None else torch.ones(hidden.shape[:2], dtype=torch.bool)
            mask = mask.to(hidden.device)
            normed, gates, read.read_logits = token_gates(hidden, mask, self.read_gate, self.read_gate_context,
                                                          read.last_index)
            if read.content is not None:  # the gates weigh the tokens' embeddings instead (read_from)
                normed = rms_normalised(read.content.to(normed.device))
            if self.running_read_gate is not None:
                _, running_gates, read.running_read_logits = token_gates(
                    hidden, mask, self.running_read_gate, self.running_read_gate_context, read.last_index)
                read.running_summary = gated_summary(normed, running_gates)
            read.summary = (gated_summary(normed, gates) if self.config.read_places == 1
                            else ordered_summary(normed, gates, self.config.read_places,
                                                   self.config.place_count))
            if self.config.drive == "token":
                read.tokens, read.token_gates = normed, gates
            strongest = gates.amax(dim=1)  # nothing read, nothing written
            if self.config.write == "gated":
                read.write = strongest
            elif self.config.write == "switched":
                read.write = (strongest > 0.5).float().detach()
                if read.taught_write is not None:
                    read.write = torch.where(read.taught_write >= 0, read.taught_write.float(), read.write)
        else:
            read.summary = summarise(hidden, self.config.summary, read.last_index, read.token_mask, self.read_query)
        if read.stop_after_read:
            raise _ReadComplete

    def _switch(self, module, args, kwargs) -> None:
        """Before layer L, once per pass, from the RMS-normalised layer input at the prompt's end (a logit > 0
        opens a switch, or training says so: ``taught_recall``, ``taught_write``): show the slots to the rows
        whose recall switch opens, and step the reservoir for the rows whose write switch opens."""
        read = self._read
        if read is None or read.switched or not self.injection_enabled:
            return
        read.switched = True
        hidden = args[0] if args else kwargs["hidden_states"]  # (B', T, d)
        hidden = hidden[:: hidden.shape[0] // read.batch]
        at_end = hidden[torch.arange(read.batch, device=hidden.device), read.last_index.to(hidden.device)].float()
        normed = rms_normalised(at_end)  # (B, d)

        def decide(gate: nn.Module, taught: torch.Tensor | None, margin: float = 0.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            logits = gate(normed)[:, 0]
            opened = logits.detach() > margin
            if taught is not None:
                taught = taught.to(opened.device)
                opened = torch.where(taught >= 0, taught > 0, opened)
            return logits, opened

        if self.recall_gate is not None:
            read.recall_logits, read.shown = decide(self.recall_gate, read.taught_recall)
            self.injector.slots.visible = read.shown
        if self.write_gate is not None:
            read.write_logits, opened = decide(self.write_gate, read.taught_write, self.config.write_margin)
            read.write = opened.float()

    def _switched_lora(self, module, args, output: torch.Tensor) -> torch.Tensor:
        """A LoRA update (B', T, out) kept on the rows whose recall switch showed the memory this pass, and
        zeroed elsewhere: on the other rows, outside a pass and with the injection off, the layer is the base's."""
        read = self._read
        if read is None or read.shown is None or not self.injection_enabled:
            return output * 0
        shown = read.shown.to(output.dtype).repeat_interleave(output.shape[0] // read.batch)
        return output * shown.view(-1, *([1] * (output.dim() - 1)))

    def _tick(self, state: torch.Tensor, read: _ReadPoint) -> torch.Tensor:
        next_state = read.next_state(self.reservoir, state)  # raises if layer L did not run
        self.state = next_state
        return next_state

    def _model_inputs(self, input_ids, inputs_embeds, attention_mask, position_ids) -> dict[str, Any]:
        if not self._n_prefix():
            inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
            if position_ids is not None:
                inputs["position_ids"] = position_ids
            return inputs
        if inputs_embeds is None:
            inputs_embeds = self.base.get_input_embeddings()(input_ids)
        prefix = self.injector.prefix_embeddings().to(inputs_embeds.dtype)  # (B, S, d)
        batch, n_prefix = prefix.shape[:2]
        inputs_embeds = torch.cat([prefix, inputs_embeds], dim=1)  # (B, S + T, d)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(batch, n_prefix), attention_mask], dim=1)
        if position_ids is not None:  # the prefix takes positions 0..S-1 and shifts the tokens after it
            position_ids = torch.cat([torch.arange(n_prefix, device=position_ids.device).expand(batch, -1),
                                      position_ids + n_prefix], dim=1)
        elif attention_mask is not None:  # count positions over real tokens, as generate() does
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        return {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, "position_ids": position_ids}

    # ----- state -----------------------------------------------------------------------------------
    def _state_for(self, batch: int, state: torch.Tensor | None) -> torch.Tensor:
        units = self.reservoir.units
        if state is None:
            state = self.state
            if state is None:
                return self.reservoir.initial_state(batch)
            if state.shape[0] != batch:
                raise ConfigError(
                    f"the carried state has {state.shape[0]} rows but this batch has {batch} examples: "
                    "call reset_state() or pass state="
                )
        if state.shape != (batch, units):
            raise ConfigError(f"state must have shape ({batch}, {units}), got {tuple(state.shape)}")
        return state

    def get_state(self) -> torch.Tensor | None:
        """A copy of the carried state (B, K), or None before the first pass / after a reset."""
        return None if self.state is None else self.state.detach().clone()

    def set_state(self, state: torch.Tensor | None) -> None:
        if state is not None:
            if state.ndim != 2 or state.shape[1] != self.reservoir.units:
                raise ConfigError(f"state must have shape (batch, {self.reservoir.units}), got {tuple(state.shape)}")
            state = state.to(device=self.reservoir.w_in.device, dtype=torch.float32)
        self.state = state

    def reset_state(self, batch_size: int | None = None) -> None:
        """Wipe the state: to None (zeros of any batch at the next pass), or to zeros of ``batch_size`` rows."""
        self.state = None if batch_size is None else self.reservoir.initial_state(batch_size)

    def detach_state(self) -> None:
        """Cut the autograd graph behind the carried state (between training windows)."""
        if self.state is not None:
            self.state = self.state.detach()

    # ----- switches and parameters ---------------------------------------------------------------
    @contextmanager
    def injection_disabled(self) -> Iterator[None]:
        """Within the block the model computes exactly the base model's logits (the reservoir still ticks; LoRA's
        adapters are off)."""
        previous, self.injection_enabled = self.injection_enabled, False
        try:
            with adapters_disabled(self.base):
                yield
        finally:
            self.injection_enabled = previous

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def speak_logit(self, state: torch.Tensor) -> torch.Tensor:
        """(B,) the gate head's logit of speaking, from the state after a pass (needs ``RanConfig.gate``)."""
        if self.gate_head is None:
            raise ConfigError("this model has no gate head: wrap it with RanConfig(gate=True)")
        return self.gate_head(gate_input(self.config, state).to(next(self.gate_head.parameters()).dtype))[:, 0]

    def _lora_target_modules(self) -> list[str]:
        spec = architecture_of(self.base)
        names = []
        for index in range(self.config.layer, self.geometry.n_layers):
            attention = getattr(decoder_layers(self.base)[index], spec.attention)
            prefix = f"{spec.layers}.{index}.{spec.attention}"
            names += [f"{prefix}.{name}" for name in LORA_PROJECTIONS if hasattr(attention, name)]
        return names

    def _add_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_alpha, lora_dropout=0.0,
                          target_modules=self._lora_target_modules())
        inject_adapter_in_model(lora, self.base)
        for name, parameter in self.base.named_parameters():
            parameter.requires_grad_("lora_" in name)

    def _lora_updates(self) -> list[nn.Module]:
        """The modules whose output is a LoRA update (peft's ``lora_B``), one per adapted projection."""
        return [module for name, module in self.base.named_modules() if ".lora_B." in f"{name}."
                and isinstance(module, nn.Linear)]

    def _lora_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().contiguous() for name, p in self.base.named_parameters() if "lora_" in name}

    def fit_whitening(self, states: torch.Tensor) -> dict[str, Any]:
        """Fit ``RanConfig.whiten``'s map on ``states`` (N, K), the states carried into the passes a task scores:
        W = (C + ran.decoding.WHITEN_RIDGE * tr(C) / K * I)^(-1/2), C their covariance; returns the fit's report."""
        if not self.config.whiten:
            raise ConfigError("this model does not whiten its state: wrap it with RanConfig(whiten=True)")
        mean, matrix, report = whitening(states)
        with torch.no_grad():
            self.injector.whiten_mean.copy_(mean)
            self.injector.whiten_matrix.copy_(matrix)
        return report

    def fit_value_decoder(self, values: list[list[int]], end: int | None = None,
                          heldout: dict[str, list[list[int]]] | None = None) -> dict[str, Any]:
        """Fit the fixed decoder of ``value_read`` decoded / residual / logits (:mod:`ran.decoding`) on the token ids
        of the values training stores, with ``end`` (the reply's stop) decoded at the place after each value where
        given; returns the fit's report (values, distinct tokens, ridge, places right held back and, for each group
        of ``heldout`` values, the share the decoder alone names whole, stop included: the read's ceiling). The
        residual write also takes its reference norm here: the median norm of layer L's output over the values'
        tokens said in a row."""
        if self.config.value_read not in DECODED_VALUE_READS:
            raise ConfigError(f"value_read is '{self.config.value_read}': only {', '.join(DECODED_VALUE_READS)} "
                              "have a decoder to fit")
        embeddings = self.base.get_input_embeddings().weight.detach()
        device = embeddings.device

        def states_of(group: list[list[int]]) -> torch.Tensor:
            return store_states(self.reservoir.step, lambda n: self.reservoir.initial_state(n, device), embeddings,
                                group, self.config.read_places)

        def with_end(group: list[list[int]]) -> list[list[int]]:
            return group if end is None else [tokens + [end] for tokens in group]

        with torch.no_grad():
            unit = embeddings.float() / embeddings.float().norm(dim=-1, keepdim=True).clamp_min(1e-12)
            fit = fit_place_decoder(states_of(values), with_end(values), unit, self.config.read_places)
            self.injector.set_decoder(*fit[:3])
            report = fit[3]
            if heldout:
                report["heldout_whole"] = {
                    group: round(values_whole(self.injector.decode(states_of(items)).flatten(1), with_end(items),
                                              unit, self.config.read_places), 4)
                    for group, items in heldout.items()}
        if self.config.value_read == "residual":
            report["residual_norm"] = self._residual_norm([t for tokens in values for t in tokens][:NORM_TOKENS])
            with torch.no_grad():
                self.injector.write_norm.fill_(report["residual_norm"])
        return report

    def _residual_norm(self, tokens: list[int]) -> float:
        """The median norm of layer L's output over ``tokens`` read as one sequence (past its first few, whose
        norms the attention sink inflates), the base model's own (outside a pass nothing is written)."""
        if len(tokens) <= NORM_SKIP:
            raise ConfigError(f"the residual's norm needs more than {NORM_SKIP} tokens of training values, got "
                              f"{len(tokens)}")
        device = next(self.base.parameters()).device
        with torch.no_grad():
            hidden = self.base(torch.tensor([tokens], device=device), output_hidden_states=True).hidden_states
        return round(float(hidden[self.config.layer + 1][0, NORM_SKIP:].float().norm(dim=-1).median()), 4)

    # ----- artifacts (files: ran.artifact) ------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, pass_format: PassFormat | None = None) -> Path:
        """Write the artifact (:mod:`ran.artifact`): ran_config.json, readout.safetensors and, where the model has
        them, adapter_model.safetensors (LoRA), recurrence.safetensors (a trained recurrence) and gate.safetensors.

        ``pass_format`` is how the readout was trained to read passes; every surface that loads the
        artifact renders passes that way (artifacts without one were trained on the text format).
        ran_config.json records the SHA-256 of every weight file and a checksum of itself, checked on load;
        weights holding NaN or infinite values are refused before anything is written.
        """
        readout = dict(self.injector.state_dict())
        if self.read_query is not None:
            readout[READ_QUERY] = self.read_query
        for prefix, gate in self._readout_gates():
            if gate is not None:
                readout.update({prefix + name: t for name, t in gate.state_dict().items()})
        parts = {"readout": readout}
        if self.config.lora_rank:
            parts["adapter"] = self._lora_state()
        recurrence = self.reservoir.state_dict()
        if recurrence:  # trained recurrent weights; the fixed reservoir is regenerated from its seed instead
            parts["recurrence"] = recurrence
        gate = None if self.gate_head is None else gate_head_tensors(self.gate_head)
        return save_artifact(directory, self.config.to_dict(), self.reservoir.fingerprint,
                             base_model_identity(self.base), pass_format or PassFormat(), parts, gate)

    @classmethod
    def from_pretrained(cls, base: PreTrainedModel, directory: str | os.PathLike,
                        write_margin: float | None = None) -> ReservoirModel:
        """Rebuild a saved wrapped model on ``base``: regenerate the reservoir, check it, load the readout.
        ``write_margin`` replaces the saved one (it moves a threshold, not a trained parameter)."""
        description = read_artifact_description(directory)
        check_base_model(description, base, directory)
        try:
            config = RanConfig.from_dict(description["config"])
        except (ConfigError, TypeError) as error:
            raise ArtifactError(f"artifact {directory} has an invalid config: {error}") from None
        if write_margin is not None:
            config = replace(config, write_margin=write_margin)  # checked: a pass-switched write only
        model = cls(base, config)
        if model.reservoir.fingerprint != description.get("reservoir_fingerprint"):
            model.unwrap()
            raise ArtifactError(
                f"artifact {directory}: its reservoir config regenerates a different reservoir than the one it "
                "was trained with (fingerprint mismatch): the config was edited or the file is corrupt"
            )
        try:
            model._load_weights(directory, description)
        except ArtifactError:
            model.unwrap()
            raise
        except RuntimeError as error:
            model.unwrap()
            first_line = str(error).splitlines()[0]
            raise ArtifactError(f"readout in {directory} does not match its config: {first_line}") from None
        return model

    def _readout_gates(self) -> tuple[tuple[str, nn.Module | None], ...]:
        """The gates and switches stored with the readout, each under its prefix (None where the config has none);
        no prefix begins another, so each loads back from its own names."""
        return ((READ_GATE, self.read_gate), (RECALL_GATE, self.recall_gate), (WRITE_GATE, self.write_gate),
                (READ_GATE_CONTEXT, self.read_gate_context), (RUNNING_READ_GATE, self.running_read_gate),
                (RUNNING_READ_GATE_CONTEXT, self.running_read_gate_context))

    def _load_weights(self, directory: str | os.PathLike, description: dict[str, Any]) -> None:
        readout = read_artifact_part(directory, description, "readout")
        if self.read_query is not None:
            if READ_QUERY not in readout:
                raise RuntimeError(f"{READ_QUERY} is missing")
            with torch.no_grad():
                self.read_query.copy_(readout.pop(READ_QUERY))
        for prefix, gate in self._readout_gates():
            if gate is not None:
                names = [name for name in readout if name.startswith(prefix)]
                gate.load_state_dict({name[len(prefix):]: readout.pop(name) for name in names})
        self.injector.load_state_dict(readout)
        if self.reservoir.state_dict():
            self.reservoir.load_state_dict(read_artifact_part(directory, description, "recurrence"))
        if self.gate_head is not None:
            gate = load_gate_head(directory, self.reservoir.fingerprint, self.reservoir.units, description)
            if gate.hidden_units != self.config.gate_hidden:
                raise ArtifactError(f"gate file in {directory} has {gate.hidden_units} hidden units, its config says "
                                    f"gate_hidden {self.config.gate_hidden}")
            load_gate_tensors(self.gate_head, gate)
        if self.config.lora_rank:
            lora = read_artifact_part(directory, description, "adapter")
            if set(self._lora_state()) ^ set(lora):
                raise ArtifactError(f"LoRA adapter file in {directory} does not match the model")
            self.base.load_state_dict(lora, strict=False)

    def unwrap(self) -> PreTrainedModel:
        """Remove every hook and attention override; the base model is as before (LoRA layers stay)."""
        self.injector.uninstall()
        self._read_hook.remove()
        if self._switch_hook is not None:
            self._switch_hook.remove()
        if self._head_hook is not None:
            self._head_hook.remove()
        for hook in self._lora_hooks:
            hook.remove()
        setattr(self.base, WRAPPED_MARK, False)
        return self.base


@contextmanager
def adapters_disabled(base: nn.Module) -> Iterator[None]:
    """Within the block a base model that carries LoRA adapters (``RanConfig.lora_rank``) computes as it did
    before them; their trainable flags are as before afterwards."""
    tuners = sys.modules.get("peft.tuners.tuners_utils")  # adapters come from peft: none if it was never imported
    layers = [] if tuners is None else [module for module in base.modules()
                                        if isinstance(module, tuners.BaseTunerLayer) and not module.disable_adapters]
    trainable = {parameter: parameter.requires_grad for layer in layers for parameter in layer.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for parameter, flag in trainable.items():
            parameter.requires_grad_(flag)


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:]) if args else args


def wrap(base: PreTrainedModel, config: RanConfig | None = None, **overrides) -> ReservoirModel:
    """Attach a reservoir to a loaded causal LM: ``wrap(model, mode="kv", layer=15)``."""
    config = config or RanConfig()
    if overrides:
        config = replace(config, **overrides)
    return ReservoirModel(base, config)
