"""What the reservoir reads: a summary x(t) of layer L's output for one pass, one row per example.

The summary (``RanConfig.summary``) is the hidden state at the last real token by default; the mean over
real tokens, a trained attention read, or a trained per-token gated read are the options. The wrapped
model (``ran.model``) reads through these functions during a pass; the probes (``ran.probes.sources``)
read real activations the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SUMMARIES = ("last", "mean", "attention", "gated")
# When the reservoir steps: every pass; as far as the gated read's strongest gate opens; (switched) fully
# where that gate is open (> 1/2) and not at all elsewhere; or (pass-switched) fully where a trained switch on
# layer L's input at the prompt's end opens, one decision per pass. Both switches learn from the read labels
# (and are teacher-forced in training).
WRITES = ("always", "gated", "switched", "pass-switched")
TOKEN_GATED_WRITES = ("gated", "switched")  # the writes that open with the gated read's per-token gates
SWITCHED_WRITES = ("switched", "pass-switched")  # the writes that step fully or not at all
# What an idle tick (a pass with no new input) writes: as its write decides, as any pass (gate); or nothing
# (keep): the held units stay as they were, so a tick that rereads an earlier turn in the context cannot
# overwrite what that turn stored (the running units still step). Training teaches the write to stay shut
# on idle ticks either way; keep makes every surface do what training did.
IDLE_WRITES = ("gate", "keep")
# What the gate head reads: the whole state, or (running) only the running units, the clock beside a held memory.
GATE_READS = ("state", "running")
RUNNING_CLOCKS = ("coupled", "isolated")  # whether the running units' step sees the held units (RanConfig)
# Whether a pass's queries see the memory (kv slots): always; or (switched) where a trained switch on layer L's
# input at the prompt's end opens, so a pass that does not need the memory runs exactly as the base model does.
RECALLS = ("always", "switched")
# How a pass drives the reservoir: one step on the pass's summary x (pass); or (token, with the gated read) one
# step per token of the prompt, each taken as far as its token's gate opens, so a value of several tokens
# enters the state in order (a name's first token, then its second) instead of as their unordered average.
DRIVES = ("pass", "token")
# The gated read with read_places P > 1 keeps the pass's first P open tokens apart, in order (an ordered read):
# x = [x_1, ..., x_P], x_j the tokens whose running count of open gates is near j, so "284588" reaches the
# reservoir as six digits in six places (each through its own columns of W_in) rather than as their average.
# How the ordered read places a token: by the running sum of the gates up to it (soft), so fifty tokens left at 0.02
# each move a value a place along and a one-token value lands partly in place 2; or (hard) in the place one past the
# number of open gates (above 1/2) before it, whole: the value's first token in place 1 however many tokens before it
# are slightly open, its second in place 2 once the first is open. Either way a token weighs its own gate (so a
# closed one adds little wherever it lands), and the read labels teach the gates: the count needs no gradient.
PLACE_COUNTS = ("soft", "hard")
# What the gated read takes in (its gates always come from layer L's output, which knows the pass's context):
# layer L's output (layer), or (embeddings) the tokens' input embeddings, which are the tokens themselves; in a
# model with tied embeddings they are also the directions in which the model says each token.
READ_SOURCES = ("layer", "embeddings")
# How a query finds the kv slots: by content (every query sees every slot; a value of several tokens must then be
# addressed token by token, each slot's key matching what was said before it), or (reply) by place in the reply:
# the slots are split evenly among the read's places (or RanConfig.reply_places), and place j's slots are seen only
# by the query that says the reply's j-th token (the prompt's last token says the first; queries past the last place
# see the last place's slots, the prompt's other tokens none), so each place of a value is read back like a single
# word; or (content-reply) both: the prompt's other tokens see every slot, as by content, and the reply's queries
# their place.
SLOT_ORDERS = ("content", "reply", "content-reply")
REPLY_ORDERS = ("reply", "content-reply")  # the orders that split the slots among the reply's places
# How the kv slots' values come from the state: a trained linear map of the whole state (direct), or (decoded, with
# slots ordered by the reply and the read from the embeddings) a trained map of each place's token embedding as a
# fixed ridge regression decodes it from the state. The decoder is the echo-state network's own readout, fit in
# closed form before training on the store states of the task's training values; what trains then maps an
# embedding to a slot value, one map shared by every place, so a place learns from every token of every kind. Or
# (residual) the same decoded embeddings written, not as slot values, but into layer L's attention output at the
# query that says place j, across the whole residual (the copy probe, docs/tasks/probe_copy.py: one slot value per
# kv head spans 192 of SmolLM2's 576 dimensions, too few to make the model say a token; a full-span write at a few
# times the residual's norm makes it say one): a trained map of the embedding, shared by every place, and a trained
# scale per place, relative to the residual's norm; the decoder is fit with the reply's stop at the place after the
# value, so the state also says where the reply ends. No kv slots are appended. Or (logits) the same decoded
# embeddings written at the output instead: the reply's j-th token's logits gain a trained scale times each
# vocabulary token's cosine with place j's mapped embedding, so the decoder's nearest token (its own criterion) is
# what the write favours; the fixed decoder holds the value's tokens, the trained switch decides when it speaks. Or
# (nearest) the logits write plus a trained bonus on the token of the largest cosine itself (the decoder's nearest
# token, through the trained map), so that where the decoder names the token the reply says it, whatever the model's
# own logits prefer (r60's replies lost multi-piece values the live store still decoded whole:
# docs/tasks/store-read-r60.json).
VALUE_READS = ("direct", "decoded", "residual", "logits", "nearest")
DECODED_VALUE_READS = ("decoded", "residual", "logits", "nearest")  # a fixed decoder fit before training
WRITTEN_VALUE_READS = ("residual", "logits", "nearest")  # decoded embeddings written (no slots), a stop after a value
LOGIT_VALUE_READS = ("logits", "nearest")  # the writes at the LM head's output
GATED_READ_BIAS = -3.5  # the gated read starts nearly shut: sigmoid(-3.5) = 0.03 per token
# What a token's read gate sees: its own layer-L output (token), which in a causal model knows only the tokens before
# it, so the value of "cloudy is the word to remember" cannot know, when its gate decides, that it is the value; or
# (pass) that and the pass's last token, which has read the whole pass: a low-rank bilinear term between the two joins
# the gate's logit (:class:`PassGateContext`). Measured on the recipe (README, r53): no gain; its value-first misses
# were the tokenizer's (a value at a line's start has no leading space and splits into pieces), not the gates'. Or
# (next) that and the token after it (:class:`NextGateContext`), so a split word's first piece can shut when a second
# follows: with the read on a value's last piece (README, r55) it lowers the loss, and still recalls less than the
# recipe's read of every piece. Or (pass-next) both terms, so a message's first token can shut on what follows
# it ("Don" before "'t") and on what the pass says; measured (README, r72) it also opens the chat header's "user"
# "\n" before a value that opens its message ("user\nwilliam"). Or (pass-veto) the pass term and a next-token term
# that can shut a gate but barely open one (:class:`VetoNextGateContext`).
GATE_CONTEXTS = ("token", "pass", "next", "pass-next", "pass-veto")
PASS_GATE_RANK = 16


def last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) position of each example's last real token, whichever side the padding is on."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.bool()).amax(dim=1)


def summarise(hidden: torch.Tensor, summary: str, last_index: torch.Tensor,
              token_mask: torch.Tensor | None, query: torch.Tensor | None = None,
              gate: nn.Linear | None = None) -> torch.Tensor:
    """The reservoir's input x from a layer's output (B, T, d).

    - ``last``: the hidden state at the last real token;
    - ``mean``: the mean over real tokens;
    - ``attention``: their average weighted by softmax(query . h_t / |h_t|), a trained read;
    - ``gated``: sum_t g_t n(h_t) / max(1, sum_t g_t), with n(h) = h / rms(h) and a trained per-token
      gate g_t = sigmoid(w . n(h_t) + b): a learned pooling that can take a few tokens anywhere in the
      pass (a value mid-sentence) or, with every gate shut, write almost nothing.
    """
    if summary == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_index.to(hidden.device)]
    if token_mask is None:
        token_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    mask = token_mask.to(hidden.device)
    if summary == "attention":
        # Directions only: a few positions (attention sinks) carry activations 20x larger than the rest.
        scores = F.normalize(hidden.float(), dim=-1) @ query.float()  # (B, T)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)[..., None]  # (B, T, 1)
        return (hidden.float() * weights).sum(dim=1)
    if summary == "gated":
        return gated_read(hidden, mask, gate)[0]
    weights = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def gated_read(hidden: torch.Tensor, mask: torch.Tensor, gate: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated summary (see :func:`summarise`) of (B, T, d) hidden states: (x (B, d), gate logits (B, T))."""
    normed, gates, logits = token_gates(hidden, mask, gate)
    return gated_summary(normed, gates), logits


def gated_summary(normed: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """(B, d) sum_t g_t n(h_t) / max(1, sum_t g_t) from :func:`token_gates`' n(h_t) (B, T, d) and g_t (B, T)."""
    return (normed * gates[..., None]).sum(dim=1) / gates.sum(dim=1, keepdim=True).clamp_min(1.0)


def ordered_summary(normed: torch.Tensor, gates: torch.Tensor, places: int, count_by: str = "soft") -> torch.Tensor:
    """(B, places * d): the ordered read of :func:`token_gates`' n(h_t) (B, T, d) and g_t (B, T).

    c_t counts the open tokens up to t (1 at the first, 2 at the second, ...): sum_{s <= t} g_s, or with
    ``count_by`` "hard" (:data:`PLACE_COUNTS`) 1 + the number of g_s > 1/2 for s < t. Place j takes
    sum_t g_t max(0, 1 - |min(c_t, P) - j|) n(h_t), so each open token lands in its own place and tokens beyond
    the P-th pile into the last. The whole is divided by sqrt(max(1, the count of open tokens)), which keeps one open
    token's input the size the pooled read gives it and lets a long value's input grow only as the root of its length.
    """
    if count_by == "hard":
        opened = (gates > 0.5).to(gates.dtype)
        count = (opened.cumsum(dim=1) - opened + 1).clamp_max(places)  # (B, T): 1 + the open tokens before t
    else:
        opened = gates
        count = gates.cumsum(dim=1).clamp_max(places)  # (B, T)
    centres = torch.arange(1, places + 1, device=gates.device, dtype=gates.dtype)
    weights = gates[..., None] * (1 - (count[..., None] - centres).abs()).clamp_min(0)  # (B, T, P)
    placed = torch.einsum("btp,btd->bpd", weights, normed)  # (B, P, d)
    scale = opened.sum(dim=1).clamp_min(1.0).rsqrt()[:, None]  # (B, 1)
    return placed.flatten(1) * scale


def rms_normalised(hidden: torch.Tensor) -> torch.Tensor:
    """n(h) = h / rms(h) over the last dimension, in float32: what the reads, gates and switches take in."""
    hidden = hidden.float()
    return hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-6)


class PassGateContext(nn.Module):
    """The gate context "pass": adds (Q n(h_last)) . (K n(h_t)) / sqrt(r) to token t's gate logit, where h_last is
    the pass's last token, so a token's gate can open on what the pass says after it. Q starts at zero (the gate
    starts as the token gate alone) and K random, so both learn."""

    def __init__(self, hidden_size: int, rank: int = PASS_GATE_RANK):
        super().__init__()
        self.query = nn.Linear(hidden_size, rank, bias=False)
        self.key = nn.Linear(hidden_size, rank, bias=False)
        nn.init.zeros_(self.query.weight)
        nn.init.normal_(self.key.weight, std=hidden_size ** -0.5)

    def forward(self, normed: torch.Tensor, mask: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """(B, T) logit terms from n(h_t) (B, T, d) and each row's last real position (B,)."""
        last = normed[torch.arange(normed.shape[0], device=normed.device), last_index.to(normed.device)]  # (B, d)
        return torch.einsum("br,btr->bt", self.query(last), self.key(normed)) * self.key.out_features ** -0.5


class NextGateContext(nn.Module):
    """The gate context "next": adds w . n(h_{t+1}) to token t's gate logit (nothing where t+1 is not a real token),
    so a word's first piece can see that a second piece follows. The read takes in the whole pass before the
    reservoir steps, so looking one token ahead breaks no causality. w starts at zero (the token gate alone)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.next = nn.Linear(hidden_size, 1, bias=False)
        nn.init.zeros_(self.next.weight)

    def forward(self, normed: torch.Tensor, mask: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        """(B, T) logit terms from n(h_t) (B, T, d) and the real-token mask (B, T)."""
        ahead = self.next(normed[:, 1:])[..., 0] * mask[:, 1:]  # (B, T-1): token t's view of token t+1
        return nn.functional.pad(ahead, (0, 1))


class VetoNextGateContext(NextGateContext):
    """The next-token term of gate context "pass-veto": log sigmoid(w . n(h_{t+1})) + log 2, zero at the start,
    at most log 2 (a gate's logit rises by no more than 0.69 for what follows it) and unbounded below, so "'t" can
    shut "Don" while a value's first piece cannot open the chat header's "\n" before it."""

    def forward(self, normed: torch.Tensor, mask: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        ahead = (nn.functional.logsigmoid(self.next(normed[:, 1:])[..., 0]) + math.log(2.0)) * mask[:, 1:]
        return nn.functional.pad(ahead, (0, 1))


class PassNextGateContext(nn.Module):
    """The gate contexts "pass-next" and "pass-veto": the sum of the "pass" term and a next-token term (the pass
    term drawn first, so its initial weights are those of "pass")."""

    def __init__(self, hidden_size: int, ahead: type[NextGateContext] = NextGateContext):
        super().__init__()
        self.whole = PassGateContext(hidden_size)
        self.ahead = ahead(hidden_size)

    def forward(self, normed: torch.Tensor, mask: torch.Tensor, last_index: torch.Tensor) -> torch.Tensor:
        return self.whole(normed, mask, last_index) + self.ahead(normed, mask, last_index)


GATE_CONTEXT_MODULES = {"pass": PassGateContext, "next": NextGateContext, "pass-next": PassNextGateContext,
                        "pass-veto": functools.partial(PassNextGateContext, ahead=VetoNextGateContext)}


def token_gates(hidden: torch.Tensor, mask: torch.Tensor, gate: nn.Linear,
                context: nn.Module | None = None,
                last_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gated read's parts for (B, T, d) hidden states: n(h_t) (B, T, d), the gates g_t (B, T), zero off
    ``mask``, and their logits (B, T); with a ``context`` the logits also see the last real token of each row
    (``last_index``; gate context "pass") or the token after (gate context "next")."""
    normed = rms_normalised(hidden)
    logits = gate(normed)[..., 0]
    if context is not None:
        logits = logits + context(normed, mask.to(normed.dtype), last_index)
    return normed, torch.sigmoid(logits) * mask, logits


def drive_tokens(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], state: torch.Tensor,
                 inputs: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """The state after driving the recurrence token by token: for t = 1..T, s <- s + g_t (step(s, x_t) - s).

    ``state`` (B, K), ``inputs`` (B, T, d), ``gates`` (B, T) in [0, 1]. A token whose gate is shut leaves the
    state as it was, so the state holds the open tokens in their order; positions shut in every row (padding)
    are skipped, which changes nothing.
    """
    state = state.float()
    for t in (gates > 0).any(dim=0).nonzero()[:, 0].tolist():
        gate = gates[:, t, None].to(state.dtype)
        state = state + gate * (step(state, inputs[:, t]) - state)
    return state
