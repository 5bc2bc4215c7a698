"""Training through the carried state: backpropagation across every pass of a batch of episodes.

Only the readout (and LoRA, if the wrapped model has it) is trained; the reservoir and the backbone
stay frozen. A step runs whole episodes: the state starts at zero, each pass's next state feeds the
episode's next pass, and the loss (cross-entropy over every target token, averaged per episode, then
over episodes) flows back through the state into earlier passes. The wiped-state control runs the
same parameters with the state reset to zero before every pass.

In kv and additive mode nothing below layer L depends on the state, so layer L's input for a pass is
a function of its tokens alone: :class:`LayerInputCache` computes it once per distinct pass and every
later pass starts at layer L (a pass without a target then runs a single layer).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ran.episodes import NO_TARGET, Episode, PassGroup, Prediction, RenderedPass, left_pad, render, schedule
from ran.errors import ConfigError
from ran.injection.base import readout_gradients_in_place
from ran.model import ReservoirModel
from ran.passes import Renderer
from ran.reading import SWITCHED_WRITES

CONDITIONS = ("carried", "wiped")
PREFIX_HEAD = 6  # sequences are indexed by their first tokens when looking for a computed prefix
SCHEDULES = ("cosine", "constant")
# An episode's loss: the mean of each part it has, added in this order.
LOSS_PARTS = ("token", "gate", "read", "recall", "write", "running_read")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 120
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    warmup_steps: int = 5
    grad_clip: float = 1.0
    batch_size: int = 0  # episodes per optimizer step; 0 = every episode of the step at once
    curriculum_steps: int = 0  # show the key in the recall pass, annealed out over these steps (0 = off)
    seed: int = 0  # trainable initialisation is RanConfig.readout_seed; this seeds data order and sampling
    schedule: str = "cosine"  # learning rate after warmup: cosine (decayed to 0) | constant

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0 = all episodes), got {self.batch_size}")
        if self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.warmup_steps < 0 or self.curriculum_steps < 0:
            raise ConfigError("warmup_steps and curriculum_steps must be >= 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule '{self.schedule}': choose one of {', '.join(SCHEDULES)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    episodes: int = 0
    passes: int = 0

    @property
    def episodes_per_second(self) -> float:
        return self.episodes / self.seconds if self.seconds else float("nan")


class LayerInputCache:
    """Layer L's input per distinct token sequence, computed once (kv and additive mode only).

    A sequence that extends one computed before (a pass that continues the context: the previous
    prompt, its reply, the new turn) reuses that prefix: the layers below L keep their keys and values,
    and only the new tokens run through them, so a long session-like episode costs its new tokens, not
    its whole context at every pass. Bounded by ``max_bytes`` (layer inputs) and ``max_prefix_bytes``
    (the lower layers' keys and values); the least recently used sequences are dropped first.
    """

    def __init__(self, model: ReservoirModel, max_bytes: int = 1 << 30, max_prefix_bytes: int = 1 << 30):
        self.model = model
        self.max_bytes = max_bytes
        self.max_prefix_bytes = max_prefix_bytes
        self.bytes = self.prefix_bytes = 0
        self.hits = self.misses = 0
        self.reused_tokens = self.computed_tokens = 0
        self._entries: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        # sequence -> per layer below L, (keys, values) each (kv_heads, T, head_dim)
        self._prefixes: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._by_head: dict[tuple[int, ...], list[tuple[int, ...]]] = {}  # first tokens -> sequences with them

    def batch(self, group: PassGroup) -> torch.Tensor:
        """(b, T, d) layer-L input of a group, left-padded with zeros like its tokens."""
        sequences = [p.tokens for p in group.passes]
        missing = list(dict.fromkeys(s for s in sequences if s not in self._entries))
        self.misses += len(missing)
        self.hits += len(sequences) - len(missing)
        if missing:
            self._compute(missing)
        width = group.input_ids.shape[1]
        entries = []
        for sequence in sequences:
            entries.append(self._entries[sequence])
            self._entries.move_to_end(sequence)
        # One copy for the whole group (not one per row, each a kernel on a GPU): the rows' tokens,
        # concatenated, land at their left-padded places of the flattened (b * T, d) batch.
        places = torch.tensor([place for row, entry in enumerate(entries)
                               for place in range((row + 1) * width - len(entry), (row + 1) * width)])
        hidden = entries[0].new_zeros(len(sequences) * width, entries[0].shape[-1])
        hidden[places.to(hidden.device)] = torch.cat(entries)
        return hidden.view(len(sequences), width, -1)

    def _longest_prefix(self, sequence: tuple[int, ...], known: set[tuple[int, ...]] | None = None
                        ) -> tuple[int, ...] | None:
        """The longest computed sequence (or one of ``known``, about to be) that ``sequence`` extends."""
        best = None
        candidates = [c for k in range(1, PREFIX_HEAD + 1) for c in self._by_head.get(sequence[:k], ())]
        for candidate in candidates:
            if len(best or ()) < len(candidate) < len(sequence) and sequence[:len(candidate)] == candidate and (
                    (candidate in self._prefixes and candidate in self._entries) or candidate in (known or ())):
                best = candidate
        return best

    def prefetch(self, episodes: list[list[RenderedPass]]) -> None:
        """Compute every pass's layer input a batch of episodes needs, in few large calls: first the
        sequences that extend nothing computed, then, round by round, those that extend them."""
        missing = list(dict.fromkeys(p.tokens for passes in episodes for p in passes if p.tokens not in self._entries))
        if missing:
            self._compute(missing)

    def _compute(self, sequences: list[tuple[int, ...]], chunk: int = 64) -> None:
        for sequence in sequences:
            self._by_head.setdefault(sequence[:PREFIX_HEAD], []).append(sequence)
        pending = set(sequences)
        plans = {sequence: self._longest_prefix(sequence, pending) for sequence in sequences}
        while pending:
            ready = [s for s in sequences if s in pending and (plans[s] is None or plans[s] not in pending)]
            fresh = [(s, plans[s]) for s in ready if plans[s] is None]
            extending = [(s, plans[s]) for s in ready if plans[s] is not None]
            for plan in (fresh, extending):
                for bucket in _length_buckets(plan):
                    for start in range(0, len(bucket), chunk):
                        self._run(bucket[start:start + chunk])
            pending -= set(ready)
        while self.bytes > self.max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.numel() * dropped.element_size()
        while self.prefix_bytes > self.max_prefix_bytes and self._prefixes:
            dropped_key, dropped_layers = self._prefixes.popitem(last=False)
            self.prefix_bytes -= sum(k.numel() * k.element_size() * 2 for k, _ in dropped_layers)
            heads = self._by_head.get(dropped_key[:PREFIX_HEAD], [])
            if dropped_key in heads:
                heads.remove(dropped_key)

    @torch.no_grad()
    def _run(self, plans: list[tuple[tuple[int, ...], tuple[int, ...] | None]]) -> None:
        """Layer-L inputs of sequences that all have a cached prefix, or none of which has one."""
        from transformers import DynamicCache

        device = self.model.reservoir.w_in.device
        prefixes = [prefix or () for _, prefix in plans]
        suffixes = [sequence[len(prefix):] for (sequence, _), prefix in zip(plans, prefixes, strict=True)]
        ids, mask, positions = left_pad(suffixes)
        past = max(len(p) for p in prefixes)
        cache = DynamicCache()
        if past:
            cached = [self._prefixes[p] for p in prefixes]
            for layer in range(len(cached[0])):
                keys = cached[0][layer][0].new_zeros(len(plans), *cached[0][layer][0].shape[:1], past,
                                                     cached[0][layer][0].shape[-1])
                values = torch.zeros_like(keys)
                for row, (prefix, layers) in enumerate(zip(prefixes, cached, strict=True)):
                    keys[row, :, past - len(prefix):] = layers[layer][0]
                    values[row, :, past - len(prefix):] = layers[layer][1]
                cache.update(keys, values, layer)
            prefix_mask = torch.zeros(len(plans), past, dtype=mask.dtype)
            for row, prefix in enumerate(prefixes):
                prefix_mask[row, past - len(prefix):] = 1
            positions = positions + torch.tensor([len(p) for p in prefixes])[:, None]
            mask = torch.cat([prefix_mask, mask], dim=1)
        hidden = self.model.layer_input(ids.to(device), mask.to(device), positions.to(device), cache=cache)
        width = ids.shape[1]
        for row, ((sequence, prefix), suffix) in enumerate(zip(plans, suffixes, strict=True)):
            new = hidden[row, width - len(suffix):]
            entry = torch.cat([self._entries[prefix], new]) if prefix else new.clone()
            self._entries[sequence] = entry
            self.bytes += entry.numel() * entry.element_size()
            self.reused_tokens += len(sequence) - len(suffix)
            self.computed_tokens += len(suffix)
            # Keep the lower layers' keys and values of this sequence's real tokens for later extensions.
            real = torch.cat([torch.arange(past - len(prefix or ()), past),
                              torch.arange(past + width - len(suffix), past + width)]).to(device)
            layers = [(layer.keys[row].index_select(1, real), layer.values[row].index_select(1, real))
                      for layer in cache.layers[:self.model.config.layer]]
            self._prefixes[sequence] = layers
            self.prefix_bytes += sum(k.numel() * k.element_size() * 2 for k, _ in layers)

def _length_buckets(plans: list[tuple[tuple[int, ...], tuple[int, ...] | None]], slack: float = 1.5
                    ) -> list[list[tuple[tuple[int, ...], tuple[int, ...] | None]]]:
    """Plans in buckets whose new-token counts differ by at most ``slack`` times (little padding)."""
    ordered = sorted(plans, key=lambda plan: len(plan[0]) - len(plan[1] or ()))
    buckets: list[list] = []
    for plan in ordered:
        new = len(plan[0]) - len(plan[1] or ())
        if buckets and new <= slack * (len(buckets[-1][0][0]) - len(buckets[-1][0][1] or ())):
            buckets[-1].append(plan)
        else:
            buckets.append([plan])
    return buckets


@dataclass
class ScoredPass:
    """What evaluation keeps of one pass with a target or a speak/silent label."""

    logits: torch.Tensor | None  # (m, vocab) at the target positions; None without a target
    state: torch.Tensor  # (K,) the state carried into the pass
    speak: float | None  # p(speak) after the pass (gate head, labelled passes only)


@dataclass
class EpisodeOutputs:
    """What a batch of episodes produced: the training loss and what evaluation needs of every scored pass."""

    loss: torch.Tensor  # mean over episodes of (mean target-token cross-entropy + mean gate cross-entropy
    # + mean read cross-entropy, where passes label what a trained read should take in)
    scored: list[list[ScoredPass]]  # [episode][scored pass], in the episode's order (with keep=True)
    passes: int  # passes run (episode-passes, not model calls)
    final_state: torch.Tensor  # (B, K) each episode's state after its last pass
    episode_losses: torch.Tensor  # (B,) each episode's loss (0 where nothing is scored)
    has_loss: list[bool]  # [episode] whether anything of it is scored (only these count in a mean)


def run_episodes(model: ReservoirModel, episodes: list[list[RenderedPass]], carry: bool = True,
                 cache: LayerInputCache | None = None, keep: bool = False,
                 before_pass: Callable[[torch.Tensor], None] | None = None,
                 teach_switches: bool = False) -> EpisodeOutputs:
    """Run a batch of rendered episodes pass by pass through the carried state (see ran.episodes).

    ``carry=False`` is the wiped-state control: every pass starts from the initial state (zero for the
    reservoir; the stateless ablation's recurrence never carries), so it skips the passes before the last that
    score nothing (their state is never read; ``passes`` counts the passes run). With a gate head, passes labelled
    speak/silent add a binary cross-entropy on p(speak) read from the state after the pass; with the
    gated read, passes labelled with what to read (``Pass.read``) add a binary cross-entropy on its
    per-token gates. ``before_pass(rows)`` is called with the episodes (b,) of every model call (on the CPU)
    before it is made (:mod:`ran.batched` routes each row to its member's parameters with it).
    ``teach_switches`` (training only): a switched write steps on the passes whose read labels mark
    something to read and keeps the state on the others (teacher forcing; unlabelled passes: the gates);
    and a switched recall shows the slots to the scored passes labelled as needing the memory and hides
    them from the scored ones that do not. A pass without a target runs as its switch decides, as it would
    in a session, so what the write reads there is what it will read at evaluation. Labelled passes add a
    binary cross-entropy on the switched recall's logit, and on the pass-switched write's (a pass whose read
    labels mark something to read should step).
    """
    device = model.reservoir.w_in.device
    carry = carry and getattr(model.reservoir, "carries_state", True)
    state = model.reservoir.initial_state(len(episodes), device)  # (B, K)
    zero = torch.zeros((), device=device)
    # Per episode, each loss's sum over its passes and how many passes added to it (the counts on the CPU).
    totals = {part: torch.zeros(len(episodes), device=device) for part in LOSS_PARTS}
    counts = {part: [0] * len(episodes) for part in LOSS_PARTS}
    scored: list[list[ScoredPass]] = [[] for _ in episodes]
    passes = 0
    use_cache = cache is not None and model.can_start_at_layer
    if use_cache:
        cache.prefetch(episodes)
    gated = model.gate_head is not None
    plan = schedule(episodes, pad_id=0)
    for pass_index, groups in enumerate(plan):
        next_state = state
        for group in groups:
            if not carry and pass_index < len(plan) - 1 and not _scores_anything(group):
                continue  # nothing carries out of it and nothing in it is scored: the wiped control skips it
            rows = group.rows.to(device)
            start = state.index_select(0, rows) if carry else model.reservoir.initial_state(len(rows), device)
            mask = group.attention_mask.to(device)
            kwargs = {}
            if use_cache:
                kwargs["layer_input"] = cache.batch(group)
            if group.has_targets:
                kwargs["logits_to_keep"] = group.labels.shape[1]
            # Per pass: 1 its read labels mark something to read, 0 they mark nothing, -1 no labels.
            wanted_write = None if group.read_labels is None else group.read_labels.amax(dim=1).clamp_max(1).to(device)
            if teach_switches and model.config.write in ("switched", "pass-switched") and wanted_write is not None:
                kwargs["taught_write"] = wanted_write
            if (teach_switches and model.config.recall == "switched" and group.recall_labels is not None
                    and group.has_targets):
                kwargs["taught_recall"] = group.recall_labels.to(device)
            if before_pass is not None:
                before_pass(group.rows)
            output = model(group.input_ids.to(device), attention_mask=mask, position_ids=group.position_ids.to(device),
                           state=start, read_index=group.read_index.to(device), read_only=not group.has_targets,
                           idle=group.idle, **kwargs)
            next_state = next_state.index_copy(0, rows, output.state)
            passes += len(rows)
            logits = losses = speak = None
            if group.has_targets:
                labels = group.labels.to(device)  # (b, M)
                logits = output.logits[:, -labels.shape[1]:].float()  # (b, M, vocab)
                losses = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=NO_TARGET, reduction="none")
            # A switched write steps fully (and running units always do), so what it writes is the gates' own
            # weighting: the value's tokens weigh as much as the rest (the plain mean pays little for a value token
            # left at 0.3).
            read_losses = _read_losses(output.read_logits, group.read_labels,
                                       balanced=model.config.write in SWITCHED_WRITES)
            running_read_losses = _read_losses(output.running_read_logits, group.running_read_labels, balanced=True)
            recall_losses = None
            if group.recall_labels is not None and output.recall_logits is not None:
                wanted_recall = group.recall_labels.to(device)  # (b,)
                recall_losses = F.binary_cross_entropy_with_logits(
                    output.recall_logits, wanted_recall.clamp_min(0).float(), reduction="none") * (wanted_recall >= 0)
            write_losses = None
            if wanted_write is not None and output.write_logits is not None:
                write_losses = F.binary_cross_entropy_with_logits(
                    output.write_logits, wanted_write.clamp_min(0).float(), reduction="none") * (wanted_write >= 0)
            labelled = [row for row, step in enumerate(group.passes) if step.speak is not None]
            if gated and labelled:
                speak_logits = model.speak_logit(output.state)  # (b,)
                wanted = torch.tensor([float(bool(step.speak)) for step in group.passes], device=device)
                speak_losses = F.binary_cross_entropy_with_logits(speak_logits, wanted, reduction="none")
                speak = torch.sigmoid(speak_logits).detach()
            episode_of = group.rows.tolist()
            # Each row's losses added to its episode's totals in one index_add per part (not one op per row).
            for part, row_losses, counted in (
                    ("token", None if losses is None else losses.sum(dim=1), lambda step: len(step.target)),
                    ("gate", speak_losses if speak is not None else None, lambda step: step.speak is not None),
                    ("read", read_losses, lambda step: bool(step.read)),
                    ("recall", recall_losses, lambda step: step.recall is not None),
                    ("write", write_losses, lambda step: any(label >= 0 for label in step.read)),
                    ("running_read", running_read_losses, lambda step: bool(step.running_read))):
                if row_losses is None:
                    continue
                rows_counted = [row for row, step in enumerate(group.passes) if counted(step)]
                for row in rows_counted:
                    counts[part][episode_of[row]] += int(counted(group.passes[row]))
                if rows_counted:
                    index = torch.tensor(rows_counted, device=device)
                    totals[part] = totals[part].index_add(
                        0, torch.tensor([episode_of[row] for row in rows_counted], device=device),
                        row_losses.index_select(0, index))
            for row, episode in enumerate(episode_of):
                step = group.passes[row]
                if keep and (step.target or step.speak is not None):
                    scored[episode].append(ScoredPass(
                        logits[row, -len(step.target):].detach() if step.target else None, start[row].detach(),
                        float(speak[row]) if speak is not None and step.speak is not None else None))
        state = next_state
    # An episode's loss: the mean of each part it has (its total over its count), added in LOSS_PARTS order.
    episode_losses = zero.expand(len(episodes))
    for part in LOSS_PARTS:
        count = torch.tensor(counts[part], dtype=torch.float32)
        if count.any():
            mean = totals[part] / count.clamp_min(1).to(device)
            episode_losses = episode_losses + torch.where(count.to(device) > 0, mean, zero)
    has_loss = [any(counts[part][index] for part in LOSS_PARTS) for index in range(len(episodes))]
    outputs = EpisodeOutputs(zero, scored, passes, state, episode_losses, has_loss)
    outputs.loss = mean_loss(outputs, range(len(episodes)))
    return outputs


def _read_losses(logits: torch.Tensor | None, labels: torch.Tensor | None, balanced: bool) -> torch.Tensor | None:
    """(b,) a gated read's binary cross-entropy on its per-token logits (b, T) against labels (b, T; -1 none): the
    mean over labelled tokens, or ``balanced``, the mean over the tokens to read plus the mean over the others."""
    if logits is None or labels is None:
        return None
    wanted = labels.to(logits.device)
    known = wanted >= 0
    per_token = F.binary_cross_entropy_with_logits(logits, wanted.clamp_min(0).float(), reduction="none") * known
    if balanced:
        return sum((per_token * part).sum(dim=1) / part.sum(dim=1).clamp_min(1) for part in (wanted == 1, wanted == 0))
    return per_token.sum(dim=1) / known.sum(dim=1).clamp_min(1)


def _scores_anything(group: PassGroup) -> bool:
    """Whether a pass group adds to a loss or to what evaluation keeps (targets, read/recall or speak labels)."""
    return (group.has_targets or group.read_labels is not None or group.recall_labels is not None
            or group.running_read_labels is not None
            or any(step.speak is not None for step in group.passes))


def mean_loss(outputs: EpisodeOutputs, episodes) -> torch.Tensor:
    """The mean loss of ``episodes`` (indices into the batch) over those with anything scored; zero if none."""
    chosen = [index for index in episodes if outputs.has_loss[index]]
    if not chosen:
        return outputs.episode_losses.new_zeros(())
    index = torch.tensor(chosen, device=outputs.episode_losses.device)
    return outputs.episode_losses.index_select(0, index).mean()


def cosine_schedule(step: int, total: int, warmup: int, decay: bool = True) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if not decay:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


EpisodeSource = Callable[[int, torch.Generator], list[Episode]]

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch.optim.AdamW(fused=True) has a kernel


def make_optimizer(parameters: list[torch.nn.Parameter], config: TrainConfig
                   ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``parameters`` and its schedule (warmup, then cosine decay or constant; stepped once a step).

    The fused kernel where PyTorch has one for the parameters' device: one pass over each tensor instead of a
    dozen (on 2 CPU cores a K=2048 readout's step takes 2 ms instead of 25; updates equal to float rounding).
    """
    fused = all(p.device.type in FUSED_ADAMW_DEVICES for p in parameters)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_schedule(step, config.steps, config.warmup_steps, config.schedule == "cosine"))
    return optimizer, scheduler


def train(model: ReservoirModel, renderer: Renderer, episodes_for_step: EpisodeSource, config: TrainConfig,
          progress: bool = True, description: str = "training", cache: LayerInputCache | None = None,
          start_at_layer: bool = True, carry: bool = True) -> TrainResult:
    """AdamW with warmup + cosine decay and gradient clipping; fully seeded.

    ``episodes_for_step(step, generator)`` returns the episodes of a step; ``config.batch_size`` splits
    them into optimizer steps of that many episodes. Passes start at layer L from ``cache`` (a new one
    if not given) where the mode allows; ``start_at_layer=False`` runs every layer of every pass.
    """
    parameters = model.trainable_parameters()
    if not parameters:
        raise ConfigError("the model has no trainable parameters")
    optimizer, scheduler = make_optimizer(parameters, config)
    generator = torch.Generator().manual_seed(config.seed)
    if not start_at_layer or not model.can_start_at_layer:
        cache = None
    elif cache is None:
        cache = LayerInputCache(model)
    result = TrainResult()
    model.train(False)  # no dropout: the frozen backbone stays in eval mode
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc=description, disable=not progress, leave=False, dynamic_ncols=True)
    with readout_gradients_in_place(model):  # the backward adds the readout's gradient in place
        for step in bar:
            episodes = episodes_for_step(step, generator)
            order = torch.randperm(len(episodes), generator=generator).tolist()
            size = config.batch_size or len(episodes)
            for start in range(0, len(order), size):
                chunk = [render(episodes[i], renderer) for i in order[start:start + size]]
                outputs = run_episodes(model, chunk, carry=carry, cache=cache, teach_switches=True)
                optimizer.zero_grad(set_to_none=True)
                outputs.loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                optimizer.step()
                result.losses.append(outputs.loss.item())
                result.episodes += len(chunk)
                result.passes += outputs.passes
            scheduler.step()
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def predict(model: ReservoirModel, renderer: Renderer, episodes: list[Episode], carry: bool,
            candidates: list[int] | None = None, batch_size: int = 64,
            cache: LayerInputCache | None = None, stop_tokens: tuple[int, ...] = (),
            extra_tokens: int = 0, progress: bool = False, description: str = "scoring") -> list[list[Prediction]]:
    """Greedy predictions at every scored pass (a target or a speak label): ``[episode][scored pass]``.

    A one-token target is the arg-max at the end of the prompt; a longer one is decoded greedily, each
    token fed back with the same state (the pass's read is at the prompt's end, so it does not move).
    The context after a pass is the scripted target, as in training. ``candidates`` (token ids) are
    also scored at the last target token, teacher-forced (e.g. recall restricted to the keys).
    With ``stop_tokens`` a reply is decoded as a session decodes it: up to ``extra_tokens`` beyond the
    target's length, ending at (and including) the first stop token, so a reply that does not stop
    where the target does is seen to run on. ``progress`` shows a bar over the batches of episodes.
    """
    if cache is None and model.can_start_at_layer:
        cache = LayerInputCache(model)
    chosen = None if candidates is None else torch.tensor(candidates, device=model.reservoir.w_in.device)
    predictions: list[list[Prediction]] = []
    batches = range(0, len(episodes), batch_size)
    for start in tqdm(batches, desc=description, disable=not progress or len(batches) < 2, leave=False,
                      dynamic_ncols=True, unit="batch"):
        chunk = [render(e, renderer) for e in episodes[start:start + batch_size]]
        outputs = run_episodes(model, chunk, carry=carry, cache=cache, keep=True)
        decoding: list[tuple[RenderedPass, list[int], torch.Tensor]] = []  # multi-token targets, decoded together
        for rendered, scored in zip(chunk, outputs.scored, strict=True):
            steps = [p for p in rendered if p.target or p.speak is not None]
            predicted = []
            for step, result in zip(steps, scored, strict=True):
                tokens, scores = [], None
                if result.logits is not None:
                    tokens = [int(result.logits[0].argmax())]
                    scores = None if chosen is None else result.logits[-1, chosen].cpu()
                    wants_more = len(step.target) > 1 or extra_tokens > 0
                    if wants_more and tokens[0] not in stop_tokens:
                        decoding.append((step, tokens, result.state))
                predicted.append(Prediction(tokens, scores, result.speak))
            predictions.append(predicted)
        _decode_greedily(model, decoding, stop_tokens, extra_tokens)
    return predictions


def _decode_greedily(model: ReservoirModel, items: list[tuple[RenderedPass, list[int], torch.Tensor]],
                     stop_tokens: tuple[int, ...] = (), extra_tokens: int = 0) -> None:
    """Extend each item's tokens (in place) greedily to its target's length (plus ``extra_tokens``, ending
    at a stop token), as one pass: a prefill of every row's prompt with its own state (the read at the
    prompt's end), then one cached step per new token. Rows that have finished are fed along (their
    tokens ignored), so the cache keeps one shape."""
    device = model.reservoir.w_in.device

    def unfinished(item) -> bool:
        step, tokens, _ = item
        return len(tokens) < len(step.target) + extra_tokens and tokens[-1] not in stop_tokens

    if not any(unfinished(item) for item in items):
        return
    ids, mask, positions = left_pad([list(step.prompt) for step, _, _ in items])
    states = torch.stack([state for _, _, state in items]).to(device)  # (b, K)
    with model.open_pass(ids.to(device), mask.to(device), state=states, position_ids=positions.to(device)) as p:
        output = model.base(**p.inputs, use_cache=True, logits_to_keep=1)
        mask, position = p.inputs["attention_mask"], p.inputs["position_ids"][:, -1:]
        while any(live := [unfinished(item) for item in items]):
            fed = torch.tensor([[tokens[-1]] for _, tokens, _ in items], device=device)  # (b, 1)
            mask, position = torch.cat([mask, mask.new_ones(len(items), 1)], dim=1), position + 1
            output = model.base(input_ids=fed, attention_mask=mask, position_ids=position, cache=output.cache,
                                use_cache=True)
            for (_, tokens, _), token, growing in zip(items, output.logits[:, -1].argmax(-1).tolist(), live,
                                                      strict=True):
                if growing:
                    tokens.append(int(token))
