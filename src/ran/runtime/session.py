"""The always-alive session: a wrapped model that carries its state, ticks, speaks or stays silent.

Between calls a :class:`Session` owns the context buffer (token ids), the reservoir state (1, K), the
tick counter and the context (key/value cache) policy. Every pass is one tick of the reservoir:

- a *prompted* pass appends the user's turn (rendered by ``ran.passes``) to the context,
- an *idle* tick appends ``idle_tokens`` (a blank observation) instead,

then the kept context is prefilled once with the write-back from the carried state, the gate decides
from the state after the pass (or the next-token entropy) whether to speak, and a reply is streamed
token by token through the key/value cache of that prefill (N tokens cost N model calls).

The cache is rebuilt at every pass rather than carried over: the write-back changes with the state,
and it reaches every cached key and value above layer L (and, in prefix mode, every position). What
carries over is the context buffer, which the :class:`~ran.runtime.context.ContextPolicy` bounds.
With a store, the session is written to disk atomically after every pass (and after a reset).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ran import schema
from ran.artifact import base_model_identity
from ran.dynamics import saturation_fraction
from ran.errors import ArtifactError, ConfigError
from ran.model import ReservoirModel
from ran.passes import Renderer
from ran.runtime.context import ContextPolicy, attention_received
from ran.runtime.gate import EntropyGate, Gate, GateDecision
from ran.runtime.persistence import SessionSnapshot, SessionStore, check_identity

RESETS = ("all", "state", "context")


@dataclass(frozen=True)
class SessionConfig:
    idle_tokens: tuple[int, ...]  # appended at every idle tick: the blank observation
    stop_tokens: tuple[int, ...] = ()  # end a reply (not streamed)
    reply_end: tuple[int, ...] = ()  # closes every reply in the context (chat: <|im_end|> and a newline)
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    sample_seed: int = 0  # sampling is seeded by (sample_seed, tick): a resumed session samples the same
    gate_prompted: bool = False  # False: a prompted pass always replies; True: the gate decides there too
    policy: ContextPolicy = field(default_factory=ContextPolicy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "idle_tokens", tuple(int(t) for t in self.idle_tokens))
        object.__setattr__(self, "stop_tokens", tuple(int(t) for t in self.stop_tokens))
        object.__setattr__(self, "reply_end", tuple(int(t) for t in self.reply_end))
        if not self.idle_tokens:
            raise ConfigError("idle_tokens must hold at least one token id: an idle tick reads them")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.sample_seed, int) or self.sample_seed < 0:
            raise ConfigError(f"sample_seed must be an integer >= 0, got {self.sample_seed!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["idle_tokens"], data["stop_tokens"] = list(self.idle_tokens), list(self.stop_tokens)
        data["reply_end"] = list(self.reply_end)
        return data

    @classmethod
    def for_renderer(cls, renderer: Renderer, **settings) -> SessionConfig:
        """The token-level settings of a pass format (``ran.passes``): the runtime then renders idle ticks
        and closes replies exactly as training does."""
        return cls(idle_tokens=tuple(renderer.idle_tokens), stop_tokens=renderer.stop_tokens,
                   reply_end=tuple(renderer.reply_end), **settings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionConfig:
        return schema.from_dict(cls, data, "session config")


@dataclass
class PassRecord:
    """What one pass did; also stored as the session's ``last`` record."""

    tick: int  # the tick count after this pass
    kind: str  # "prompt" or "idle"
    input_tokens: list[int]
    gate: dict[str, Any]
    emitted: bool
    tokens: list[int]  # streamed reply (stop token excluded)
    stopped: bool  # the reply ended on a stop token
    interrupted: bool
    context_length: int  # after the pass and eviction
    prefill_length: int  # tokens the prefill read (the context after the input and eviction)
    evicted: int  # tokens evicted during this pass
    model_calls: int  # base-model calls: 1 prefill + one per further generated token
    state_norm: float
    saturation: float
    state_digest: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_identity(model: ReservoirModel) -> dict[str, Any]:
    """What a session's state is only valid with: base model, reservoir, RAN config and readout."""
    digest = hashlib.sha256()
    trained = dict(model.injector.state_dict())
    trained.update({name: p for name, p in model.base.named_parameters() if "lora_" in name})
    # Trained parts newer than the readout enter only when present, so older sessions keep their digest.
    if model.read_query is not None:
        trained["read_query"] = model.read_query
    if model.read_gate is not None:
        trained.update({f"read_gate.{name}": t for name, t in model.read_gate.state_dict().items()})
    if model.running_read_gate is not None:
        trained.update({f"running_read_gate.{name}": t for name, t in model.running_read_gate.state_dict().items()})
    if model.read_gate_context is not None:
        trained.update({f"read_gate_context.{name}": t for name, t in model.read_gate_context.state_dict().items()})
    if model.running_read_gate_context is not None:
        trained.update({f"running_read_gate_context.{name}": t
                        for name, t in model.running_read_gate_context.state_dict().items()})
    if model.gate_head is not None:
        trained.update({f"gate_head.{name}": t for name, t in model.gate_head.state_dict().items()})
    for name in sorted(trained):
        digest.update(name.encode())
        digest.update(trained[name].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return {
        "ran_config": model.config.to_dict(),
        "reservoir_fingerprint": model.reservoir.fingerprint,
        "readout_sha256": digest.hexdigest(),
        "base_model": base_model_identity(model.base),
    }


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the duration of the block and raise it after: a pass's commit (its state,
    tick and save) is not torn in half. Outside the main thread (no signal handlers there) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if received and previous is signal.default_int_handler:
        raise KeyboardInterrupt
    if received and callable(previous):
        previous(signal.SIGINT, None)


def check_turn(length: int, policy: ContextPolicy, model: ReservoirModel, context_length: int = 0) -> None:
    """Refuse an input of ``length`` tokens that a pass could not read whole: longer than the context policy's
    recent window (its own first tokens would be evicted before the pass reads them), or one that would take
    the prefill past the model's positions."""
    if policy.budget is not None and length > policy.window:
        raise ConfigError(f"the input is {length:,} tokens, but the context keeps only the last {policy.window:,} "
                          f"(--window; policy {policy.kind}), so most of it would be evicted unread: shorten it or "
                          "raise --window")
    prefill = context_length + length
    if policy.budget is not None:
        prefill = min(prefill, policy.budget)
    positions = getattr(model.base.config, "max_position_embeddings", None)
    if positions and prefill + model._n_prefix() > positions:
        raise ConfigError(f"the pass would read {prefill + model._n_prefix():,} positions, more than the "
                          f"{positions:,} this model has: /reset context, shorten the input, or use a context "
                          "policy with a smaller window")


class Session:
    """A stateful runtime around one wrapped model (batch of one). See the module docstring."""

    def __init__(self, model: ReservoirModel, config: SessionConfig, gate: Gate | None = None,
                 store: SessionStore | None = None, settings: dict[str, Any] | None = None,
                 name: str = "session"):
        implementation = model.base.config._attn_implementation
        if config.policy.needs_attention and implementation not in ("eager", "ran_eager"):
            raise ConfigError(f"the h2o policy needs attention weights, which '{implementation}' attention "
                              "does not return: load the model with attn_implementation='eager'")
        self.model = model
        self.config = config
        self.gate = gate if gate is not None else EntropyGate()
        self.store = store
        self.name = store.name if store is not None else name
        self.settings = dict(settings or {})
        self.identity = model_identity(model)
        self.session_id: str | None = None  # the id the session's directory is bound to (see persistence)
        self.state = model.reservoir.initial_state(1)  # (1, K)
        self.context: list[int] = []
        self.scores: list[float] = []
        self.tick = 0
        self.last: dict[str, Any] | None = None

    # ----- opening and saving ------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, model: ReservoirModel, config: SessionConfig, gate: Gate | None = None,
               root: str | os.PathLike | None = None, settings: dict[str, Any] | None = None) -> Session:
        """A new session stored under ``root``; refuses to replace an existing one."""
        store = SessionStore(name, root)
        if store.exists():
            raise ArtifactError(f"session '{name}' already exists in {store.root}/: resume it or choose "
                                "another name")
        store.lock()
        try:
            session = cls(model, config, gate, store, settings)
            session.session_id = secrets.token_hex(16)
            store.write_manifest(session.session_id, session.identity)
            session.save()
        except BaseException:
            store.unlock()
            raise
        return session

    @classmethod
    def open(cls, name: str, model: ReservoirModel, gate: Gate | None = None,
             root: str | os.PathLike | None = None, config: SessionConfig | None = None) -> Session:
        """Resume a stored session exactly where its last completed pass left it."""
        store = SessionStore(name, root)
        if not store.exists():
            store.load()  # raises the one-line "no session" error
        store.lock()
        try:
            snapshot = store.load()
            identity = model_identity(model)
            check_identity(name, snapshot.identity, identity)
            if snapshot.state.shape[1] != model.reservoir.units:
                raise ArtifactError(f"session '{name}' holds a state of {snapshot.state.shape[1]} units, "
                                    f"the reservoir has {model.reservoir.units}")
            settings = snapshot.settings
            try:
                stored_config = SessionConfig.from_dict(settings.get("session", {}))
            except (ConfigError, TypeError) as error:
                raise ArtifactError(f"session '{name}' has an invalid session config: {error}") from None
            session = cls(model, config or stored_config, gate, store, settings)
            session.session_id = snapshot.session_id or secrets.token_hex(16)
            if store.read_manifest() is None:  # a session made before manifests: bind it now
                store.write_manifest(session.session_id, identity)
        except BaseException:
            store.unlock()
            raise
        session.state = snapshot.state.to(torch.float32)
        session.context, session.scores = snapshot.context, snapshot.scores
        session.tick, session.last = snapshot.tick, snapshot.last
        return session

    def snapshot(self) -> SessionSnapshot:
        settings = dict(self.settings, session=self.config.to_dict())
        return SessionSnapshot(self.name, self.tick, self.state, list(self.context), list(self.scores),
                               self.identity, settings, self.last, self.session_id)

    def save(self) -> None:
        if self.store is None:
            raise ConfigError("this session has no store: create it with Session.create or Session.open")
        self.store.save(self.snapshot())

    def close(self) -> None:
        if self.store is not None:
            self.store.unlock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- passes ------------------------------------------------------------------------------------
    def prompt(self, tokens: Sequence[int], on_token: Callable[[int], None] | None = None) -> PassRecord:
        """A prompted pass: the tokens join the context, the reservoir ticks, the reply streams."""
        if len(tokens) == 0:
            raise ConfigError("a prompted pass needs at least one token")
        check_turn(len(tokens), self.config.policy, self.model, len(self.context))
        return self._pass("prompt", list(tokens), on_token)

    def idle(self, on_token: Callable[[int], None] | None = None) -> PassRecord:
        """An unprompted tick: the idle tokens join the context, the reservoir ticks, the gate decides."""
        return self._pass("idle", list(self.config.idle_tokens), on_token)

    def _pass(self, kind: str, new_tokens: list[int], on_token: Callable[[int], None] | None) -> PassRecord:
        """One pass; if it fails or is interrupted before it completes (e.g. Ctrl-C during the prefill),
        the session is left exactly as before it (in memory and on disk)."""
        before = (self.state, self.tick, self.last, list(self.context), list(self.scores))
        self._committed = False
        try:
            return self._run_pass(kind, new_tokens, on_token)
        except BaseException:
            if not self._committed:  # a Ctrl-C held back during the commit arrives after it: keep the pass
                self.state, self.tick, self.last, self.context, self.scores = before
            raise

    @torch.no_grad()
    def _run_pass(self, kind: str, new_tokens: list[int], on_token: Callable[[int], None] | None) -> PassRecord:
        started = time.perf_counter()
        config, model = self.config, self.model
        self.context += new_tokens
        self.scores += [0.0] * len(new_tokens)
        evicted = self._evict()
        prefill_length = len(self.context)
        input_ids = torch.tensor([self.context], device=self.state.device)  # (1, T)
        extra = {"output_attentions": True} if config.policy.needs_attention else {}
        generated: list[int] = []
        stopped = interrupted = False
        with model.open_pass(input_ids, state=self.state, idle=kind == "idle") as open_pass:
            output = model.base(**open_pass.inputs, use_cache=True, logits_to_keep=1, **extra)  # (1, 1, vocab)
            calls = 1
            if config.policy.needs_attention:
                received = attention_received(output.attentions, open_pass.n_prefix, prefill_length)
                self.scores = [s + float(r) for s, r in zip(self.scores, received.tolist(), strict=True)]
            logits = output.logits[0, -1]  # (vocab,)
            next_state = open_pass.next_state()
            if not bool(torch.isfinite(next_state).all()):
                raise ArtifactError(f"session '{self.name}': the pass produced a NaN or infinite state (a broken "
                                    f"readout or input); nothing was kept, the session stays at tick {self.tick}")
            decision: GateDecision = self.gate.decide(next_state, logits, config.stop_tokens)
            emit = decision.emit or (kind == "prompt" and not config.gate_prompted)
            if emit and config.max_new_tokens:
                generator = torch.Generator().manual_seed(config.sample_seed * 1_000_003 + self.tick)
                cache = output.cache
                try:
                    while True:
                        token = self._choose(logits, generator)
                        if token in config.stop_tokens:
                            stopped = True
                            break
                        generated.append(token)
                        if on_token is not None:
                            on_token(token)
                        if len(generated) >= config.max_new_tokens:
                            break
                        step = torch.tensor([[token]], device=input_ids.device)  # (1, 1)
                        output = model.base(input_ids=step, cache=cache, use_cache=True)
                        calls += 1
                        cache, logits = output.cache, output.logits[0, -1]
                except KeyboardInterrupt:  # stop the reply; the pass itself still completes
                    interrupted = True
        with interrupts_deferred():  # the pass commits whole: memory and disk agree even under Ctrl-C
            self.state = next_state.detach().to(torch.float32)
            self.tick += 1
            tail = generated + list(config.reply_end)  # = Renderer.close_reply(generated)
            self.context += tail
            self.scores += [0.0] * len(tail)
            evicted += self._evict()
            stats = self.state_stats()
            record = PassRecord(
                tick=self.tick, kind=kind, input_tokens=new_tokens, gate=decision.to_dict(), emitted=emit,
                tokens=generated, stopped=stopped, interrupted=interrupted, context_length=len(self.context),
                prefill_length=prefill_length, evicted=evicted, model_calls=calls,
                state_norm=stats["norm"], saturation=stats["saturation"], state_digest=stats["digest"],
                seconds=time.perf_counter() - started,
            )
            self.last = record.to_dict()
            if self.store is not None:
                self.save()
            self._committed = True
        return record

    def _choose(self, logits: torch.Tensor, generator: torch.Generator) -> int:
        if self.config.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float().cpu() / self.config.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator))

    def _evict(self) -> int:
        keep = self.config.policy.keep(len(self.context), self.scores)
        removed = len(self.context) - len(keep)
        if removed:
            self.context = [self.context[i] for i in keep]
            self.scores = [self.scores[i] for i in keep]
        return removed

    # ----- state ---------------------------------------------------------------------------------------
    def reset(self, what: str = "all") -> None:
        """Wipe the reservoir state ("state"), the context ("context") or both ("all"); not a pass."""
        if what not in RESETS:
            raise ConfigError(f"unknown reset '{what}': choose one of {', '.join(RESETS)}")
        if what in ("all", "state"):
            self.state = self.model.reservoir.initial_state(1)
        if what in ("all", "context"):
            self.context, self.scores = [], []
        self.last = None
        if self.store is not None:
            self.save()

    def state_stats(self) -> dict[str, Any]:
        state = self.state.detach().float().cpu()
        return {
            "tick": self.tick,
            "norm": float(state.norm()),
            "saturation": saturation_fraction(state.numpy()),
            "digest": hashlib.sha256(state.contiguous().numpy().tobytes()).hexdigest()[:12],
            "context_length": len(self.context),
        }

    def with_config(self, **changes) -> None:
        """Change session settings (e.g. ``max_new_tokens``) between passes."""
        self.config = replace(self.config, **changes)
