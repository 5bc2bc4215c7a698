"""Training through the carried state: backpropagation across every pass of a batch of episodes.

Only the readout (and LoRA, if the wrapped model has it) is trained; the reservoir and the backbone
stay frozen. A step runs whole episodes: the state starts at zero, each pass's next state feeds the
next pass, and the loss (cross-entropy at the last position of every pass with a target) flows back
through the state into earlier passes. The wiped-state control runs the same parameters with the
state reset to zero before every pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ran.episodes import NO_TARGET, Episode, PassBatch, collate
from ran.errors import ConfigError
from ran.model import ReservoirModel


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 120
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    warmup_steps: int = 5
    grad_clip: float = 1.0
    batch_size: int = 0  # episodes per optimizer step; 0 = every episode of the task at once
    curriculum_steps: int = 0  # show the key in the recall pass, annealed out over these steps (0 = off)
    seed: int = 0  # trainable initialisation is RanConfig.readout_seed; this seeds data order and curriculum

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0 = all episodes), got {self.batch_size}")
        if self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.warmup_steps < 0 or self.curriculum_steps < 0:
            raise ConfigError("warmup_steps and curriculum_steps must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    episodes: int = 0

    @property
    def episodes_per_second(self) -> float:
        return self.episodes / self.seconds if self.seconds else float("nan")


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens, so a left-padded example sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def run_passes(model: ReservoirModel, batches: list[PassBatch],
               carry: bool = True) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Run one batch of episodes pass by pass. Returns (mean target loss, last-position logits of each
    pass with a target; None for the others).

    ``carry=False`` is the wiped-state control: every pass starts from the zero state.
    """
    batch = batches[0].input_ids.shape[0]
    device = model.reservoir.w_in.device
    state = model.reservoir.initial_state(batch, device)
    losses, last_logits = [], []
    for step in batches:
        if not carry:
            state = model.reservoir.initial_state(batch, device)
        mask = step.attention_mask.to(device)
        # A pass without a target only has to reach layer L, where the reservoir reads it.
        output = model(step.input_ids.to(device), attention_mask=mask, position_ids=position_ids_for(mask),
                       state=state, logits_to_keep=1, read_only=not step.has_targets)
        state = output.state
        if not step.has_targets:
            last_logits.append(None)
            continue
        logits = output.logits[:, -1]  # (B, vocab): left padding puts every last token at -1
        last_logits.append(logits)
        losses.append(F.cross_entropy(logits.float(), step.targets.to(device), ignore_index=NO_TARGET))
    loss = torch.stack(losses).mean() if losses else torch.zeros((), device=device)
    return loss, last_logits


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


EpisodeSource = Callable[[int, torch.Generator], list[Episode]]


def train(model: ReservoirModel, tokenizer: PreTrainedTokenizerBase, episodes_for_step: EpisodeSource,
          config: TrainConfig, progress: bool = True, description: str = "training") -> TrainResult:
    """AdamW with warmup + cosine decay and gradient clipping; fully seeded.

    ``episodes_for_step(step, generator)`` returns the episodes of a step (all of the task, or a
    curriculum variant); ``config.batch_size`` splits them into optimizer steps of that many episodes.
    """
    parameters = model.trainable_parameters()
    if not parameters:
        raise ConfigError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_schedule(step, config.steps, config.warmup_steps))
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult()
    model.train(False)  # no dropout: the frozen backbone stays in eval mode
    started = time.perf_counter()
    bar = tqdm(range(config.steps), desc=description, disable=not progress, leave=False, dynamic_ncols=True)
    for step in bar:
        episodes = episodes_for_step(step, generator)
        order = torch.randperm(len(episodes), generator=generator).tolist()
        size = config.batch_size or len(episodes)
        for start in range(0, len(order), size):
            chunk = [episodes[i] for i in order[start:start + size]]
            loss, _ = run_passes(model, collate(chunk, tokenizer))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            result.losses.append(loss.item())
            result.episodes += len(chunk)
        scheduler.step()
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
    result.seconds = time.perf_counter() - started
    return result


@torch.no_grad()
def predict(model: ReservoirModel, tokenizer: PreTrainedTokenizerBase, episodes: list[Episode],
            carry: bool, batch_size: int = 64) -> list[list[int]]:
    """Greedy next-token prediction at every pass with a target: one list of token ids per episode."""
    predictions: list[list[int]] = []
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start:start + batch_size]
        batches = collate(chunk, tokenizer)
        _, last_logits = run_passes(model, batches, carry=carry)
        per_pass = [logits.argmax(-1) for step, logits in zip(batches, last_logits, strict=True) if step.has_targets]
        for row in range(len(chunk)):
            predictions.append([int(p[row]) for p in per_pass])
    return predictions
