"""A population in one batch: N members of the same shape trained together on one frozen backbone.

A *member* is what :func:`ran.training.train` trains alone: a RAN config (its reservoir's seed and
settings, its readout's seed) and a training config (its data seed, learning rate, schedule), with
the episodes it trains on. Trained one after another, N members run the frozen backbone N times on
batches of the same kind. Here every pass's batch holds members x episodes, so the backbone runs once
for all of them, and layer L's input of a pass the members share (the same task's sentences) is
computed once (:class:`ran.training.LayerInputCache`, kv and additive mode).

Every member trains as it would alone: its readout initialised from its own ``readout_seed``, its
episodes drawn and ordered by its own generator (``TrainConfig.seed``), its loss the mean over its own
episodes, its gradient clipped to its own global norm, its own AdamW and learning-rate schedule. Only
float rounding differs from the solo run (other batch shapes, a batched matmul): tests/test_batched.py.

How rows reach their member's parameters. The backbone is shared and frozen and already treats the
rows of a batch independently; what differs between members is a handful of small maps at the edge of
its forward: the readout(s) that write the state back, the reservoir's step (W_r, W_in, b, leak), the
gated read's token gate and the gate head. Each becomes one batched matmul over a padded
(member, row, features) layout: a pass's rows are scattered to their member's block, multiplied by
that member's matrix in one ``bmm``, and gathered back. So a pass costs one kernel per map whatever N
is, and the wrapped model's pass (its hooks, the registered attention function, the early exit of a
read-only pass) runs unchanged with these maps swapped in. ``torch.func.stack_module_state`` + ``vmap``
(PyTorch's ensembling recipe) was the alternative, and fits N copies of a whole module; here it would
have to vmap the whole Hugging Face forward, which branches in Python on the data (the mask shortcuts,
where a pass reads) and whose hooks write each pass's slots into shared objects, neither of which
``vmap`` supports, to batch a backbone whose weights every member shares, which the row dimension of an
ordinary batch already does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ran.architectures import geometry_of
from ran.episodes import Episode, RenderedPass, render
from ran.errors import ConfigError
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import Renderer
from ran.reservoir import Reservoir
from ran.training import (
    EpisodeSource,
    LayerInputCache,
    TrainConfig,
    TrainResult,
    make_optimizer,
    mean_loss,
    run_episodes,
)

# What members must share to run as rows of one batch (the shape of every stacked map and of the pass).
SHARED_RAN_FIELDS = ("mode", "layer", "n_slots", "summary", "write", "idle_write", "gate")
SHARED_RESERVOIR_FIELDS = ("units", "activation")


@dataclass(frozen=True)
class Member:
    """One run of a population: what :func:`ran.training.train` would be given for it alone."""

    ran: RanConfig
    train: TrainConfig
    episodes_for_step: EpisodeSource  # (step, generator) -> the step's episodes, drawn with the member's generator

    def __post_init__(self) -> None:
        if not isinstance(self.ran, RanConfig) or not isinstance(self.train, TrainConfig):
            raise ConfigError(f"a member needs a RanConfig and a TrainConfig, got {type(self.ran).__name__} and "
                              f"{type(self.train).__name__}")
        if not callable(self.episodes_for_step):
            raise ConfigError(f"episodes_for_step must be callable (step, generator) -> episodes, "
                              f"got {self.episodes_for_step!r}")


@dataclass
class TrainedMember:
    """A member after training: its losses and its trained parameters, named as in its solo wrapped model."""

    member: Member
    result: TrainResult  # its losses, episodes and passes; seconds is the whole batch's wall time
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)

    def wrap(self, base: PreTrainedModel) -> ReservoirModel:
        """The member as a wrapped model on ``base`` (to evaluate or save it); ``unwrap()`` it when done."""
        model = wrap(base, self.member.ran)
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if set(trainable) != set(self.parameters):
            model.unwrap()
            raise ConfigError(f"trained parameters {sorted(self.parameters)} do not match the member's model "
                              f"({sorted(trainable)})")
        with torch.no_grad():
            for name, parameter in trainable.items():
                parameter.copy_(self.parameters[name])
        return model


def batch_shape(ran: RanConfig, train: TrainConfig) -> tuple | None:
    """What a run must share with others to train in one batch with them (before the layer default is
    resolved); None for a run that trains alone (another recurrence, LoRA, the attention read, a switched
    recall, a pass-switched write, a token drive, an ordered read, a read from the embeddings, slots ordered by
    the reply, a gate head with a hidden layer, a read gate that sees more than its token, running units, a whitened
    state)."""
    if (ran.recurrence != "reservoir" or ran.lora_rank or ran.summary == "attention" or ran.recall != "always"
            or ran.write == "pass-switched" or ran.drive != "pass" or ran.read_places != 1
            or ran.read_from != "layer" or ran.slot_order != "content" or ran.gate_hidden
            or ran.gate_context != "token" or ran.running_units or ran.whiten):
        return None
    return (tuple(getattr(ran, name) for name in SHARED_RAN_FIELDS),
            tuple(getattr(ran.reservoir, name) for name in SHARED_RESERVOIR_FIELDS), train.steps)


def check_members(members: Sequence[Member], n_layers: int) -> None:
    """Refuse, in one line, members that cannot be rows of one batch (``n_layers``: the backbone's depth)."""
    if not members:
        raise ConfigError("no members to train")
    for index, member in enumerate(members):
        if not isinstance(member, Member):
            raise ConfigError(f"member {index} is a {type(member).__name__}, not a ran.batched.Member")
        ran = member.ran
        if ran.recurrence != "reservoir":
            raise ConfigError(f"member {index} has recurrence '{ran.recurrence}': members train in one batch with "
                              "fixed reservoirs only; train it alone with ran.training.train")
        if ran.lora_rank:
            raise ConfigError(f"member {index} has lora_rank {ran.lora_rank}: LoRA changes the shared backbone per "
                              "member; train it alone with ran.training.train")
        if ran.summary == "attention":
            raise ConfigError(f"member {index} has summary 'attention', whose trained query is not stacked yet: "
                              "use last, mean or gated, or train it alone with ran.training.train")
        if ran.recall != "always" or ran.write == "pass-switched":
            raise ConfigError(f"member {index} has recall '{ran.recall}' and write '{ran.write}': a pass-level "
                              "switch is not stacked yet; train it alone with ran.training.train")
        if ran.running_units:
            raise ConfigError(f"member {index} has running_units {ran.running_units}, whose split write is not "
                              "stacked yet: train it alone with ran.training.train")
        if ran.gate_hidden:
            raise ConfigError(f"member {index} has gate_hidden {ran.gate_hidden}, whose hidden layer is not stacked "
                              "yet: train it alone with ran.training.train")
        if ran.gate_context != "token":
            raise ConfigError(f"member {index} has gate_context '{ran.gate_context}', whose gate view is not stacked "
                              "yet: train it alone with ran.training.train")
        if ran.drive != "pass":
            raise ConfigError(f"member {index} has drive '{ran.drive}', whose per-token steps are not stacked yet: "
                              "train it alone with ran.training.train")
        if ran.read_places != 1:
            raise ConfigError(f"member {index} has read_places {ran.read_places}, whose ordered read is not stacked "
                              "yet: train it alone with ran.training.train")
        if ran.read_from != "layer":
            raise ConfigError(f"member {index} reads from the {ran.read_from}, which is not stacked yet: train it "
                              "alone with ran.training.train")
        if ran.slot_order != "content":
            raise ConfigError(f"member {index} orders its slots by the {ran.slot_order}, which is not stacked yet: "
                              "train it alone with ran.training.train")
        if ran.whiten:
            raise ConfigError(f"member {index} whitens its state, whose fit is not stacked yet: train it alone with "
                              "ran.training.train")

    def shape(member: Member) -> dict[str, object]:
        ran = member.ran
        described = {name: getattr(ran, name) for name in SHARED_RAN_FIELDS}
        described["layer"] = n_layers // 2 if ran.layer is None else ran.layer
        described.update({f"reservoir.{name}": getattr(ran.reservoir, name) for name in SHARED_RESERVOIR_FIELDS})
        described["train.steps"] = member.train.steps
        return described

    first = shape(members[0])
    for index, member in enumerate(members[1:], 1):
        for name, value in shape(member).items():
            if value != first[name]:
                raise ConfigError(f"members train in one batch only where they share a shape: member {index} has "
                                  f"{name}={value!r}, member 0 has {first[name]!r}; train them in separate batches")


class _Router:
    """Where each row of the current model call sits in the padded (member, row) layout.

    ``route(rows)`` is called before every model call with the batch's episodes; the member maps then
    scatter the call's rows to their member's block (zero rows fill the shorter blocks) and gather them back.
    """

    def __init__(self, n_members: int, device: torch.device):
        self.n_members = n_members
        self.device = device
        self.episode_members = torch.zeros(0, dtype=torch.long)  # (E,) the member of each episode of the batch
        self.slots = torch.zeros(0, dtype=torch.long)  # (b,) each row's index in the flat (N * width) layout
        self.width = 0  # rows per member block: the most rows any member has in this call

    def route(self, rows: torch.Tensor) -> None:
        """Place the rows of the next model call: ``rows`` (b,) are their episodes in the batch (on the CPU,
        so a GPU is not waited for)."""
        members = self.episode_members[rows.cpu()]  # (b,)
        counts = torch.bincount(members, minlength=self.n_members)  # (N,)
        order = torch.argsort(members, stable=True)
        starts = torch.cumsum(counts, 0) - counts  # (N,) first sorted position of each member
        rank = torch.empty_like(members)
        rank[order] = torch.arange(len(members)) - starts[members[order]]
        self.width = int(counts.max())
        self.slots = (members * self.width + rank).to(self.device)

    def to_blocks(self, rows: torch.Tensor) -> torch.Tensor:
        """(b, ...) -> (N, width, ...): each row in its member's block, zeros elsewhere."""
        flat = rows.new_zeros(self.n_members * self.width, *rows.shape[1:]).index_copy(0, self.slots, rows)
        return flat.view(self.n_members, self.width, *rows.shape[1:])

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """(N, width, ...) -> (b, ...): the rows of this call, in its order."""
        return blocks.reshape(self.n_members * self.width, *blocks.shape[2:]).index_select(0, self.slots)


class _MemberMatmul(torch.autograd.Function):
    """Each member's block times its stacked weight (plus bias); the backward adds every member's weight and
    bias gradient into one stacked tensor in place (one ``baddbmm_``), whose member slices are the members'
    ``.grad``. Autograd would give each use a fresh (N, in, out) gradient and sum them, the allocations that
    ``ran.injection.base.Readout`` avoids for a run alone."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, stack: _MemberLinear, *parameters: nn.Parameter) -> torch.Tensor:
        # ``parameters`` (the members' weights and biases) are inputs so that autograd records the call even when
        # ``flat`` needs no gradient (a readout's input, the state); their gradients are written in place.
        ctx.save_for_backward(flat)
        ctx.stack = stack
        if stack._bias is None:
            return torch.bmm(flat, stack._weight)
        return torch.baddbmm(stack._bias, flat, stack._weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (flat,) = ctx.saved_tensors
        stack = ctx.stack
        weight_grad, bias_grad = stack.gradients()
        weight_grad.baddbmm_(grad_out.transpose(1, 2).to(weight_grad.dtype), flat.to(weight_grad.dtype))
        if bias_grad is not None:
            bias_grad.add_(grad_out.sum(dim=1).to(bias_grad.dtype))
        grad_flat = torch.bmm(grad_out, stack._weight.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        return grad_flat, None, *(None for _ in ctx.needs_input_grad[2:])


class _MemberLinear(nn.Module):
    """N members' copies of one ``nn.Linear``, applied to each row with its member's weights (one ``bmm``).

    Gradients reach the members' parameters in place (``_MemberMatmul``): each member's ``.grad`` is its slice
    of one stacked gradient tensor, zeroed when the member's ``.grad`` was set to None (``zero_grad``).
    """

    def __init__(self, linears: list[nn.Linear], router: _Router):
        super().__init__()
        self.router = router
        self.weights = nn.ParameterList([nn.Parameter(linear.weight.detach().clone()) for linear in linears])
        has_bias = linears[0].bias is not None
        self.biases = nn.ParameterList([nn.Parameter(linear.bias.detach().clone()) for linear in linears]
                                       if has_bias else [])
        self._weight: torch.Tensor | None = None  # (N, in, out), stacked once per optimizer step
        self._bias: torch.Tensor | None = None  # (N, 1, out)
        first = linears[0]
        self._weight_grad = first.weight.new_zeros(len(linears), *first.weight.shape)  # (N, out, in)
        self._bias_grad = first.bias.new_zeros(len(linears), *first.bias.shape) if has_bias else None  # (N, out)

    @property
    def weight(self) -> nn.Parameter:
        """Member 0's weight: what callers read a linear map's dtype and device from."""
        return self.weights[0]

    def member_parameters(self, member: int) -> dict[str, nn.Parameter]:
        named = {"weight": self.weights[member]}
        if len(self.biases):
            named["bias"] = self.biases[member]
        return named

    def restack(self) -> None:
        """Stack the members' current weights (after each optimizer step) for the forward."""
        with torch.no_grad():
            self._weight = torch.stack(list(self.weights)).transpose(1, 2)
            self._bias = torch.stack(list(self.biases))[:, None, :] if len(self.biases) else None

    def gradients(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The stacked (N, out, in) weight and (N, out) bias gradients, each member's slice its ``.grad``."""
        for parameters, stacked in ((self.weights, self._weight_grad), (self.biases, self._bias_grad)):
            if not len(parameters):
                continue
            if all(parameter.grad is None for parameter in parameters):  # after zero_grad: one zeroing for all
                stacked.zero_()
                for parameter, own in zip(parameters, stacked.unbind(0), strict=True):
                    parameter.grad = own
                continue
            member_bytes = stacked.stride(0) * stacked.element_size()
            for member, parameter in enumerate(parameters):
                if parameter.grad is None:
                    stacked[member].zero_()
                    parameter.grad = stacked[member]
                elif parameter.grad.data_ptr() != stacked.data_ptr() + member * member_bytes:
                    raise RuntimeError("a member's .grad was replaced: set it to None (zero_grad) between steps")
        return self._weight_grad, self._bias_grad

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        blocks = self.router.to_blocks(rows)  # (N, width, ..., in)
        flat = blocks.reshape(blocks.shape[0], -1, blocks.shape[-1])  # (N, width * ..., in)
        out = _MemberMatmul.apply(flat, self, *self.weights, *self.biases)
        return self.router.from_blocks(out.view(*blocks.shape[:-1], out.shape[-1]))  # (b, ..., out)


class _MemberReservoirs(nn.Module):
    """N fixed reservoirs of the same size stepping each row with its member's W_r, W_in, b and leak.

    The step is :meth:`ran.reservoir.Reservoir.step`'s, term for term, on the padded member layout.
    """

    carries_state = True

    def __init__(self, reservoirs: list[Reservoir], router: _Router):
        super().__init__()
        self.router = router
        self.configs = [r.config for r in reservoirs]
        self.activation = self.configs[0].activation
        self.sparse = reservoirs[0].w_r.layout == torch.sparse_csr
        # Not buffers of the stack: the dense W_r are stacked (N, K, K); sparse ones stay a list.
        self.recurrent = [r.w_r for r in reservoirs] if self.sparse else torch.stack([r.w_r for r in reservoirs])
        self.register_buffer("w_in", torch.stack([r.w_in for r in reservoirs]), persistent=False)  # (N, K, d)
        self.register_buffer("bias", torch.stack([r.bias for r in reservoirs])[:, None, :], persistent=False)
        self.uniform_leak = all(c.leak_rate_min is None for c in self.configs)
        leak = torch.stack([r.leak for r in reservoirs])[:, None, :]  # (N, 1, K)
        if self.uniform_leak:  # the solo step's scalar form: (1 - a) * r + a * tanh(...), a a Python float
            device = self.w_in.device  # the reservoirs' own, as the stacks above (the stack is never moved)
            leak = torch.tensor([c.leak_rate for c in self.configs], device=device)[:, None, None]
            keep = torch.tensor([1.0 - c.leak_rate for c in self.configs], device=device)[:, None, None]
            self.register_buffer("keep", keep, persistent=False)  # (N, 1, 1)
        self.register_buffer("leak", leak, persistent=False)

    @property
    def units(self) -> int:
        return self.configs[0].units

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, self.units, device=device or self.w_in.device)

    def step(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """state (b, K), inputs (b, d) -> the next state (b, K), each row by its member's reservoir."""
        router = self.router
        states = router.to_blocks(state)  # (N, width, K)
        inputs = router.to_blocks(inputs.to(torch.float32))  # (N, width, d)
        if self.sparse:
            recurrent_drive = torch.stack([(w_r @ s.T).T for w_r, s in zip(self.recurrent, states, strict=True)])
        else:
            recurrent_drive = torch.bmm(states, self.recurrent.transpose(1, 2))  # (N, width, K)
        pre_activation = recurrent_drive + torch.bmm(inputs, self.w_in.transpose(1, 2)) + self.bias
        activated = torch.tanh(pre_activation) if self.activation == "tanh" else pre_activation
        if not self.uniform_leak:
            stepped = states + self.leak * (activated - states)
        elif all(c.leak_rate == 1.0 for c in self.configs):
            stepped = activated
        else:
            stepped = self.keep * states + self.leak * activated
        return router.from_blocks(stepped)


class _MemberBatch:
    """A wrapped host model whose member-specific maps are swapped for their N-member stacks."""

    def __init__(self, host: ReservoirModel, linears: dict[str, list[nn.Linear]], reservoirs: list[Reservoir]):
        self.host = host
        self.router = _Router(len(reservoirs), host.reservoir.w_in.device)
        self.linears = {path: _MemberLinear(copies, self.router) for path, copies in linears.items()}
        self.reservoirs = _MemberReservoirs(reservoirs, self.router)
        self._originals: dict[str, nn.Module] = {}

    def parameters_of(self, member: int) -> dict[str, nn.Parameter]:
        """Member ``member``'s trainable parameters, named as in its solo wrapped model."""
        return {f"{path}.{name}": parameter for path, stack in self.linears.items()
                for name, parameter in stack.member_parameters(member).items()}

    def restack(self) -> None:
        for stack in self.linears.values():
            stack.restack()

    def route(self, rows: torch.Tensor) -> None:
        self.router.route(rows)

    @contextmanager
    def installed(self) -> Iterator[ReservoirModel]:
        """Within the block the host model runs every member's rows with that member's maps."""
        replacements: dict[str, nn.Module] = {**self.linears, "reservoir": self.reservoirs}
        for path, module in replacements.items():
            parent, _, name = path.rpartition(".")
            owner = self.host.get_submodule(parent)
            self._originals[path] = getattr(owner, name)
            setattr(owner, name, module)
        try:
            yield self.host
        finally:
            for path, original in self._originals.items():
                parent, _, name = path.rpartition(".")
                setattr(self.host.get_submodule(parent), name, original)
            self._originals.clear()


def _linear_paths(model: ReservoirModel) -> list[str]:
    """The modules holding the model's trainable parameters, each an ``nn.Linear`` (checked)."""
    paths = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        path = name.rpartition(".")[0]
        if not isinstance(model.get_submodule(path), nn.Linear):
            raise ConfigError(f"trainable parameter {name} is not in a linear map: it cannot be stacked over members")
        if path not in paths:
            paths.append(path)
    return paths


def _member_batch(base: PreTrainedModel, members: Sequence[Member]) -> _MemberBatch:
    """Wrap ``base`` as each member in turn (its initial readout exactly as alone), keeping member 0 as the host."""
    linears: dict[str, list[nn.Linear]] = {}
    reservoirs: list[Reservoir | None] = [None] * len(members)
    host = None
    for index in [*range(1, len(members)), 0]:  # member 0 last: its wrapped model stays installed as the host
        model = wrap(base, members[index].ran)
        for path in _linear_paths(model):
            linears.setdefault(path, [None] * len(members))[index] = model.get_submodule(path)
        reservoirs[index] = model.reservoir
        if index:
            model.unwrap()
        else:
            host = model
    try:
        return _MemberBatch(host, linears, reservoirs)
    except BaseException:  # e.g. out of memory while stacking: leave the base model as it was
        host.unwrap()
        raise


def train_members(base: PreTrainedModel, members: Sequence[Member], renderer: Renderer, progress: bool = False,
                  description: str = "members", carry: bool = True) -> list[TrainedMember]:
    """Train every member as :func:`ran.training.train` would train it alone, all in one batch per pass.

    Members must share a shape (:func:`check_members`: mode, layer, slots, read, gate, reservoir units and
    activation, number of steps); reservoir seeds and settings, readout seeds, data seeds, learning rates,
    schedules and batch sizes may differ. ``base`` is left unwrapped, as it was.
    """
    check_members(members, geometry_of(base).n_layers)
    batch = _member_batch(base, members)
    host = batch.host
    results = [TrainResult() for _ in members]
    try:
        parameters = [batch.parameters_of(index) for index in range(len(members))]
        optimizers = [make_optimizer(list(named.values()), member.train)
                      for named, member in zip(parameters, members, strict=True)]
        generators = [torch.Generator().manual_seed(member.train.seed) for member in members]
        cache = LayerInputCache(host) if host.can_start_at_layer else None
        host.train(False)  # no dropout: the frozen backbone stays in eval mode
        started = time.perf_counter()
        steps = members[0].train.steps
        with batch.installed():
            for step in tqdm(range(steps), desc=description, disable=not progress, leave=False, dynamic_ncols=True):
                chunks = [_chunks(member, step, generator)
                          for member, generator in zip(members, generators, strict=True)]
                for position in range(max(len(c) for c in chunks)):
                    present = [index for index, c in enumerate(chunks) if position < len(c)]
                    rendered = {index: [render(e, renderer) for e in chunks[index][position]] for index in present}
                    _train_chunk(batch, rendered, parameters, optimizers, members, results, carry, cache)
                for _, scheduler in optimizers:
                    scheduler.step()
        for result in results:  # the one host sync of the losses (and the end of the GPU's queued work)
            result.losses = torch.stack(result.losses).tolist() if result.losses else []
        seconds = time.perf_counter() - started
    finally:
        host.unwrap()
    trained = []
    for index, member in enumerate(members):
        results[index].seconds = seconds
        trained.append(TrainedMember(member, results[index],
                                     {name: p.detach().clone() for name, p in parameters[index].items()}))
    return trained


def _chunks(member: Member, step: int, generator: torch.Generator) -> list[list[Episode]]:
    """The member's optimizer steps of this step: its episodes in its own order, in chunks of its batch size."""
    episodes = member.episodes_for_step(step, generator)
    order = torch.randperm(len(episodes), generator=generator).tolist()
    size = member.train.batch_size or len(episodes)
    return [[episodes[i] for i in order[start:start + size]] for start in range(0, len(order), size)]


def _train_chunk(batch: _MemberBatch, rendered: dict[int, list[list[RenderedPass]]],
                 parameters: list[dict[str, nn.Parameter]], optimizers: list[tuple[torch.optim.Optimizer, Any]],
                 members: Sequence[Member], results: list[TrainResult], carry: bool,
                 cache: LayerInputCache | None) -> None:
    """One optimizer step of every member in ``rendered`` (member -> its rendered episodes), from one batched
    run of all their episodes."""
    episodes, owners = [], []
    for index, member_episodes in rendered.items():
        episodes += member_episodes
        owners += [index] * len(member_episodes)
    batch.router.episode_members = torch.tensor(owners)
    batch.restack()
    outputs = run_episodes(batch.host, episodes, carry=carry, cache=cache, before_pass=batch.route, teach_switches=True)
    losses = {index: mean_loss(outputs, [row for row, owner in enumerate(owners) if owner == index])
              for index in rendered}
    for index in rendered:
        optimizers[index][0].zero_grad(set_to_none=True)
    # Members share no parameter, so the gradient of the sum is each member's own loss's gradient.
    torch.stack(list(losses.values())).sum().backward()
    for index, loss in losses.items():
        torch.nn.utils.clip_grad_norm_(list(parameters[index].values()), members[index].train.grad_clip)
        optimizers[index][0].step()
        results[index].losses.append(loss.detach())  # a tensor until training ends: no host sync per member
        results[index].episodes += len(rendered[index])
        results[index].passes += sum(len(e) for e in rendered[index])
