"""``kv`` (the default): reservoir key/value slots appended inside layer L's attention.

At layer L, ``n_slots`` keys ``W_k r`` and values ``W_v r`` per key/value head (no rotary position:
content-addressed, position-free memory) are appended to the token keys and values, and every query
attends jointly over tokens and slots. The wiring goes through transformers' registered attention
functions: the model's attention implementation is switched to ``ran_sdpa`` / ``ran_eager``, which
call the stock ``sdpa`` / ``eager`` function unchanged in every layer except the one carrying slots.
The slots are appended after the cache update, so they never enter the key/value cache and are
re-appended at every decode step.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

from ran.architectures import SUPPORTED_ATTENTION, ModelGeometry, attention_module
from ran.errors import ConfigError
from ran.injection.additive import _match_batch
from ran.injection.base import Injector, Readout
from ran.reading import LOGIT_VALUE_READS, WRITTEN_VALUE_READS

OUTPUT_PROJECTIONS = ("o_proj", "c_proj", "out_proj", "dense")  # what the attention's output projection is called
RESIDUAL_WRITE_SCALE = 4.0  # the residual write's initial scale, times the residual's norm (the copy probe's best)
# The logits write's initial scale: a bias of 20 x cosine lifts the decoded token (cosine near 1) by ~12 logits over
# tokens at cosine 0.4, about the gap between an Instruct model's top reply token and the rest.
LOGIT_WRITE_SCALE = 20.0
# value_read "nearest": the decoder's nearest token's initial bonus on top of that, in logits; with the cosine term it
# puts a correctly decoded token ~20 logits over the next, so the model's own preference rarely overrules it.
NEAREST_BONUS = 10.0
SLOTS_ATTRIBUTE = "ran_slots"  # set on the one attention module that carries slots
IMPLEMENTATION_PREFIX = "ran_"


class SlotSource:
    """This pass's slot keys and values, (B, n_kv_heads, n_slots, head_dim) each, or None when off;
    ``visible`` (B,) bool, which rows' queries may see the slots (a switched recall), None: every row; and, for
    slots ordered by the reply (``ran.reading.SLOT_ORDERS``), ``reply_start`` (B,), each row's index of the
    prompt's last token, ``places``, the number of places the slots are split among, and ``prompt_sees_all``,
    whether the prompt's other tokens see every slot (``content-reply``) or none (``reply``); ``writes`` (B, places,
    n_heads * head_dim), or None: what value_read "residual" adds to the attention's output (before its output
    projection) at the query that says each place, in the rows ``visible`` marks; with ``to_logits`` (value_read
    "logits") the writes are (B, places, d) and the attention only picks them per query into ``pending`` (B, q_len,
    d), which the LM head's hook turns into this forward's logit bias."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.visible: torch.Tensor | None = None
        self.reply_start: torch.Tensor | None = None
        self.places: int = 0
        self.prompt_sees_all: bool = False
        self.writes: torch.Tensor | None = None
        self.to_logits: bool = False
        self.pending: torch.Tensor | None = None


def _stock_attention(base: str, module: nn.Module) -> Callable:
    if base == "sdpa":
        return sdpa_attention_forward
    # Each modeling file defines its own eager function (GPT-2's differs from Llama's).
    return sys.modules[type(module).__module__].eager_attention_forward


def _reply_offsets(reply_start: torch.Tensor, q_len: int, kv_len: int) -> torch.Tensor:
    """(B, q_len): each query's offset from the prompt's last token (``reply_start``, (B,)); a query's index in the
    sequence is kv_len - q_len + i (the cache holds every earlier token, padding too)."""
    index = torch.arange(kv_len - q_len, kv_len, device=reply_start.device)
    return index[None, :] - reply_start[:, None]


def _reply_places(reply_start: torch.Tensor, q_len: int, kv_len: int, n_slots: int, places: int,
                  prompt_sees_all: bool = False) -> torch.Tensor:
    """(B, 1, q_len, n_slots) bool: which slots each query sees when the slots are ordered by the reply.

    A query's index in the sequence is kv_len - q_len + i (the cache holds every earlier token, padding too);
    its offset from the prompt's last token (``reply_start``, (B,)) is the reply token it says, minus one.
    Slot s belongs to place s // (n_slots / places); a query at offset o >= 0 sees place min(o, places - 1);
    one at o < 0 (the prompt before its last token) sees every slot if ``prompt_sees_all``, else none.
    """
    offset = _reply_offsets(reply_start, q_len, kv_len)
    place = offset.clamp(0, places - 1)
    slot_place = torch.arange(n_slots, device=reply_start.device) // (n_slots // places)  # (n_slots,)
    in_reply = (offset >= 0)[..., None]
    seen = (place[..., None] == slot_place) & in_reply
    if prompt_sees_all:
        seen = seen | ~in_reply
    return seen[:, None]


def _slot_mask(attention_mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor,
               n_slots: int, visible: torch.Tensor | None = None,
               reply_places: torch.Tensor | None = None) -> torch.Tensor:
    """The token mask with n_slots columns appended on the right: visible to every query, or only in the
    rows where ``visible`` (B,) is true (a hidden slot takes no attention at all: the stock layer), and, with
    ``reply_places`` (B, 1, q_len, n_slots) bool, only to the queries it marks.

    When transformers hands no mask (SDPA's causal shortcut), build the causal mask here: with slots
    appended, ``is_causal`` would align the triangle to the wrong columns.
    """
    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is None:
        rows = torch.arange(q_len, device=query.device)[:, None] + (kv_len - q_len)
        attention_mask = (torch.arange(kv_len, device=query.device)[None, :] <= rows)[None, None]  # (1,1,q,kv)
    batch = max(attention_mask.shape[0], 1 if visible is None else visible.shape[0],
                1 if reply_places is None else reply_places.shape[0])
    attention_mask = attention_mask.expand(batch, *attention_mask.shape[1:])
    seen = (torch.ones(batch, dtype=torch.bool, device=query.device) if visible is None
            else visible.to(query.device))[:, None, None, None]  # (B, 1, 1, 1)
    if reply_places is not None:
        seen = seen & reply_places.to(query.device)  # (B, 1, q_len, n_slots)
    if attention_mask.dtype == torch.bool:
        slots = seen.expand(batch, 1, q_len, n_slots)
    else:
        hidden = torch.finfo(attention_mask.dtype).min
        slots = torch.where(seen, 0.0, hidden).to(attention_mask.dtype).expand(batch, 1, q_len, n_slots)
    heads = attention_mask.shape[1]
    return torch.cat([attention_mask, slots.expand(batch, heads, q_len, n_slots)], dim=-1)


def _reply_writes(writes: torch.Tensor, reply_start: torch.Tensor, visible: torch.Tensor | None, q_len: int,
                  kv_len: int) -> torch.Tensor:
    """(B, q_len, width): place j's write at the query whose offset from ``reply_start`` is j (the query that says
    the reply's j-th token, as :func:`_reply_places` counts), zero at every other query and in hidden rows."""
    places = writes.shape[1]
    offset = _reply_offsets(reply_start, q_len, kv_len)
    written = (offset >= 0) & (offset < places)
    if visible is not None:
        written = written & visible.to(written.device)[:, None]
    picked = writes.gather(1, offset.clamp(0, places - 1)[..., None].expand(-1, -1, writes.shape[2]))
    return picked * written[..., None].to(picked.dtype)


def _make_attention(base: str) -> Callable:
    def attention(module, query, key, value, attention_mask, **kwargs):
        stock = _stock_attention(base, module)
        slots: SlotSource | None = getattr(module, SLOTS_ATTRIBUTE, None)
        if slots is not None and slots.writes is not None:
            return _written_attention(stock, slots, module, query, key, value, attention_mask, **kwargs)
        if slots is not None:
            slots.pending = None  # no write in this forward: nothing for the LM head to add
        if slots is None or slots.keys is None:
            return stock(module, query, key, value, attention_mask, **kwargs)
        batch = query.shape[0]
        slot_keys = _match_batch(slots.keys, batch).to(key.dtype)  # (B, kv_heads, S, hd)
        slot_values = _match_batch(slots.values, batch).to(value.dtype)
        n_slots = slot_keys.shape[2]
        visible = None if slots.visible is None else _match_batch(slots.visible, batch)
        reply_places = None
        if slots.reply_start is not None:
            reply_places = _reply_places(_match_batch(slots.reply_start, batch).to(query.device), query.shape[2],
                                         key.shape[2], n_slots, slots.places, slots.prompt_sees_all)
        mask = _slot_mask(attention_mask, query, key, n_slots, visible, reply_places)
        key = torch.cat([key, slot_keys], dim=2)  # (B, kv_heads, T_kv + S, hd)
        value = torch.cat([value, slot_values], dim=2)
        return stock(module, query, key, value, mask, **kwargs)

    return attention


def _written_attention(stock: Callable, slots: SlotSource, module, query, key, value, attention_mask, **kwargs):
    """The stock attention, its output (B, q_len, n_heads, head_dim) plus each place's write at its reply query."""
    output, weights = stock(module, query, key, value, attention_mask, **kwargs)
    batch = query.shape[0]
    visible = None if slots.visible is None else _match_batch(slots.visible, batch)
    added = _reply_writes(_match_batch(slots.writes, batch), _match_batch(slots.reply_start, batch).to(query.device),
                          visible, query.shape[2], key.shape[2])
    if slots.to_logits:  # the LM head adds them (KVInjector._bias_logits); the attention is the stock one
        slots.pending = added
        return output, weights
    return output + added.view(output.shape).to(output.dtype), weights


def _output_inverse(attention: nn.Module, width: int) -> torch.Tensor:
    """(d, width): the pseudo-inverse of the attention's output projection (its linear part, read off by projecting
    the identity: a Linear and GPT-2's Conv1D alike), which turns a residual direction into a pre-projection write."""
    projection = next((getattr(attention, name) for name in OUTPUT_PROJECTIONS if hasattr(attention, name)), None)
    if projection is None:
        raise ConfigError(f"the residual write needs the attention's output projection: {type(attention).__name__} "
                          f"has none of {', '.join(OUTPUT_PROJECTIONS)}")
    weight = next(projection.parameters())
    with torch.no_grad():
        identity = torch.eye(width, device=weight.device, dtype=weight.dtype)
        linear = (projection(identity) - projection(torch.zeros_like(identity[:1]))).float()  # (width, d)
    return torch.linalg.pinv(linear)


def register_attention_functions() -> None:
    """Register ``ran_sdpa`` and ``ran_eager`` (idempotent) with transformers' attention and mask interfaces."""
    for base in SUPPORTED_ATTENTION:
        name = IMPLEMENTATION_PREFIX + base
        AttentionInterface.register(name, _make_attention(base))
        AttentionMaskInterface.register(name, sdpa_mask if base == "sdpa" else eager_mask)


class KVInjector(Injector):
    mode = "kv"

    def __init__(self, geometry: ModelGeometry, units: int, layer: int, n_slots: int, decoded_places: int = 0,
                 write: str | None = None, whiten: bool = False):
        super().__init__(geometry, units, layer, n_slots)
        self.whiten = whiten
        if whiten:  # RanConfig.whiten: the slots read (r - mean) W, fit before training (identity until then)
            if decoded_places:
                raise ConfigError("whiten whitens what the direct read takes in: it needs no decoded places")
            self.register_buffer("whiten_mean", torch.zeros(units))
            self.register_buffer("whiten_matrix", torch.eye(units))
        d = geometry.hidden_size
        self.decoded_places = decoded_places
        if write not in (None, *WRITTEN_VALUE_READS):
            raise ConfigError(f"unknown write '{write}': choose one of {', '.join(WRITTEN_VALUE_READS)}")
        self.write = write
        self.residual = write == "residual"
        if write and not decoded_places:
            raise ConfigError(f"the {write} write writes each place's decoded embedding: it needs decoded_places >= 1")
        if decoded_places:  # a decoded value read (ran.reading.DECODED_VALUE_READS): a fixed decoder first
            self.register_buffer("decoder_weight", torch.zeros(units, decoded_places * d))
            self.register_buffer("decoder_state_mean", torch.zeros(units))
            self.register_buffer("decoder_target_mean", torch.zeros(decoded_places * d))
        width = n_slots * geometry.n_kv_heads * geometry.head_dim
        if write:  # no slots: a map of the decoded embedding (within the residual, or at the logits), a scale a place
            self.key_readout = None
            self.value_readout = None
            # The map is u + W u / d, W from zero: Adam moves every entry of W by about the learning rate a step,
            # so W / d moves a d x d map by O(1) only along directions its gradients agree on, where W itself
            # would turn the identity into noise within a few dozen steps.
            self.write_readout = Readout(d, d, bias=False)
            nn.init.zeros_(self.write_readout.weight)
            initial = RESIDUAL_WRITE_SCALE if self.residual else LOGIT_WRITE_SCALE
            self.write_log_scale = nn.Parameter(torch.full((decoded_places,), math.log(initial)))
            self.register_buffer("write_norm", torch.ones(()))  # the residual's norm at layer L (set with the decoder)
            # pinv of the attention's output projection, so that the projection of a write is the residual direction
            # the map chose (set by install: it is the model's, not trained, and not saved)
            self.register_buffer("write_basis", torch.zeros(d, geometry.n_heads * geometry.head_dim), persistent=False)
            # logits: the vocabulary's unit input embeddings, what the decoder's nearest token is chosen among (set by
            # install, not saved)
            self.register_buffer("vocabulary_directions", torch.zeros(0, d), persistent=False)
            if write == "nearest":  # the bonus on the decoder's nearest token, one for every place
                self.nearest_log_bonus = nn.Parameter(torch.tensor(math.log(NEAREST_BONUS)))
        else:
            self.key_readout = Readout(units, width, bias=False)
            nn.init.normal_(self.key_readout.weight, std=units**-0.5)
            self.value_readout = Readout(d if decoded_places else units, width // max(decoded_places, 1), bias=False)
            nn.init.zeros_(self.value_readout.weight)  # untrained slots carry no content, only dilute
        self.slots = SlotSource()
        self.slots.to_logits = write in LOGIT_VALUE_READS
        self._logit_hook = None
        self._installed_on: tuple[PreTrainedModel, ...] = ()  # a tuple, so the model is no submodule
        self._original_implementation: str | None = None

    def install(self, model: PreTrainedModel) -> None:
        implementation = model.config._attn_implementation
        if implementation not in SUPPORTED_ATTENTION:
            raise ConfigError(
                f"kv mode needs a dense attention mask: attention implementation '{implementation}' is not "
                f"supported, load the model with attn_implementation one of {', '.join(SUPPORTED_ATTENTION)}"
            )
        register_attention_functions()
        self._installed_on = (model,)
        self._original_implementation = implementation
        model.set_attn_implementation(IMPLEMENTATION_PREFIX + implementation)
        if model.config._attn_implementation != IMPLEMENTATION_PREFIX + implementation:
            raise ConfigError(f"{type(model).__name__} does not accept a registered attention function")
        attention = attention_module(model, self.layer)
        setattr(attention, SLOTS_ATTRIBUTE, self.slots)
        if self.residual:
            with torch.no_grad():
                self.write_basis.copy_(_output_inverse(attention, self.write_basis.shape[1]).to(self.write_basis))
        if self.write in LOGIT_VALUE_READS:
            head = model.get_output_embeddings()
            if head is None:
                raise ConfigError(f"the logits write needs the model's LM head: {type(model).__name__} has none")
            with torch.no_grad():
                embeddings = model.get_input_embeddings().weight.detach().float()
                self.vocabulary_directions = embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            self._logit_hook = head.register_forward_hook(self._bias_logits)

    def uninstall(self) -> None:
        if not self._installed_on:
            return
        (model,) = self._installed_on
        delattr(attention_module(model, self.layer), SLOTS_ATTRIBUTE)
        if self._logit_hook is not None:
            self._logit_hook.remove()
            self._logit_hook = None
        model.set_attn_implementation(self._original_implementation)
        self._installed_on = ()

    def begin_pass(self, state: torch.Tensor) -> None:
        g = self.geometry
        if self.write:
            decoded = self.decode(state)
            mapped = decoded + self.write_readout(decoded) / self.geometry.hidden_size
            if self.residual:  # place j: scale_j * |h_L| * (its decoded unit embedding, mapped), before o_proj
                scale = self.write_log_scale.exp()[None, :, None] * self.write_norm
                self.slots.writes = (scale * mapped) @ self.write_basis
            else:  # place j: scale_j * (its mapped embedding's direction), scored against the vocabulary by the head
                direction = mapped / mapped.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                self.slots.writes = self.write_log_scale.exp()[None, :, None] * direction
            return
        shape = (state.shape[0], self.n_slots, g.n_kv_heads, g.head_dim)
        if self.whiten:
            state = (state - self.whiten_mean.to(state.dtype)) @ self.whiten_matrix.to(state.dtype)
        self.slots.keys = self.key_readout(state).view(shape).transpose(1, 2)  # (B, kv_heads, S, hd)
        if self.decoded_places:  # place j's slots (s // slots-per-place == j) from place j's decoded embedding
            self.slots.values = self.value_readout(self.decode(state)).reshape(shape).transpose(1, 2)
        else:
            self.slots.values = self.value_readout(state).view(shape).transpose(1, 2)

    def _bias_logits(self, head: nn.Module, args, logits: torch.Tensor) -> torch.Tensor | None:
        """The LM head's forward hook (value_read "logits", "nearest"): each written query's logits gain its write's
        cosine with every vocabulary token (and, "nearest", a bonus on the token of the largest). The head sees this
        forward's last positions (``logits_to_keep``); so do the writes, which the attention at layer L picked per
        query."""
        pending, self.slots.pending = self.slots.pending, None
        if pending is None:
            return None
        pending = pending[:, -logits.shape[1]:]  # (B, kept, d)
        bias = pending @ self.vocabulary_directions.T  # (B, kept, vocabulary)
        if self.write == "nearest":  # the token of the largest cosine (the decoder's nearest, through the map) gains
            # the bonus, at written queries only
            written = (pending != 0).any(dim=-1, keepdim=True)  # (B, kept, 1)
            bonus = self.nearest_log_bonus.exp() * written.to(bias.dtype)
            bias = bias.scatter_add(-1, bias.argmax(dim=-1, keepdim=True), bonus)
        if bias.shape[-1] == logits.shape[-1]:
            return logits + bias.to(logits.dtype)
        width = min(bias.shape[-1], logits.shape[-1])  # a head padded past the embeddings: those columns get none
        return torch.cat([logits[..., :width] + bias[..., :width].to(logits.dtype), logits[..., width:]], dim=-1)

    def decode(self, state: torch.Tensor) -> torch.Tensor:
        """(B, places, d): each place's token embedding as the fixed decoder (:meth:`set_decoder`) reads it."""
        decoded = (state.float() - self.decoder_state_mean) @ self.decoder_weight + self.decoder_target_mean
        return decoded.view(state.shape[0], self.decoded_places, -1)

    def set_decoder(self, weight: torch.Tensor, state_mean: torch.Tensor, target_mean: torch.Tensor) -> None:
        """Install the decoder fit by ``ran.decoding.fit_place_decoder``: (K, places * d), (K,), (places * d,)."""
        with torch.no_grad():
            for buffer, value in ((self.decoder_weight, weight), (self.decoder_state_mean, state_mean),
                                  (self.decoder_target_mean, target_mean)):
                if value.shape != buffer.shape:
                    raise ConfigError(f"a decoder of shape {tuple(value.shape)} does not fit {tuple(buffer.shape)}")
                buffer.copy_(value)

    def end_pass(self) -> None:
        self.slots.keys = None
        self.slots.values = None
        self.slots.writes = None
        self.slots.pending = None
        self.slots.visible = None
        self.slots.reply_start = None
