"""One served session: one model, one pass at a time, and the events every open page sees.

``ran serve`` keeps one :class:`~ran.runtime.Session` open, the same object ``ran chat`` drives and stored
by the same crash-safe :class:`~ran.runtime.SessionStore` (saved after every pass), and runs everything
that touches it (passes, resets, saves, opening another session) on one worker thread. What happens is
broadcast to every subscriber (each open browser tab) as events:

- ``snapshot``: all a page needs to draw the session (sent on connect and after a session change),
- ``pass_start``, ``token`` (the reply so far, streamed), ``pass_end`` (the pass's record and plot point),
  ``pass_failed``,
- ``reset``, ``saved``, ``busy`` (what is running, or null).

A request that needs the worker while it runs is refused with :class:`Busy` (HTTP 409), never queued:
the page says so and keeps what was typed. Only a stop request gets through: it ends a run of idle ticks
after the current pass, and a streaming reply after the current token (as Ctrl-C does in ``ran chat``).

The plot points and the page's log live in this process only; on disk there is only the session.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from ran.cli.sessions import Opened, Streamer, state_line
from ran.errors import ArtifactError, ConfigError, RanError
from ran.runtime import PassRecord, Session, SessionStore, load_gate
from ran.runtime.gate import DEFAULT_MAX_ENTROPY
from ran.runtime.session import RESETS


class Busy(RanError):
    """The worker is running a pass (or a session change); the request was refused, nothing was done."""


class TooLarge(ConfigError):
    """An input over the server's size limit; nothing was run."""


@dataclass(frozen=True)
class ServeLimits:
    max_input_chars: int = 4000  # one message
    max_ticks: int = 1000  # idle ticks in one request (a stop request ends them early)
    log_entries: int = 500  # entries of the page's log replayed to a page that connects
    pending_events: int = 10_000  # events queued for one slow page before it is sent a fresh snapshot instead

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class View:
    """What the pages show of one session, gathered by this process: plot points and the log."""

    points: list[dict[str, Any]]
    log: collections.deque


class SessionHost:
    """The served session, its one worker thread, and the subscribers (open pages)."""

    def __init__(self, opened: Opened, root: str | os.PathLike | None = None,
                 limits: ServeLimits | None = None):
        session = opened.session
        self.session = session
        self.model, self.tokenizer, self.renderer = session.model, opened.tokenizer, opened.renderer
        self.config = session.config  # the settings a session created from the page starts with
        self.settings = {key: session.settings.get(key) for key in ("model", "artifact", "cli", "pass_format")}
        self.root = root
        self.limits = limits or ServeLimits()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ran-pass")
        self._busy: str | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._views: dict[str, View] = {}
        self._note(f"session '{session.name}' opened at tick {session.tick}")

    # ----- lifetime -------------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the server's event loop (events from the worker are handed to it)."""
        self._loop = loop

    def end_streams(self) -> None:
        """End every subscriber's event stream (at shutdown), so the server need not wait for open pages.
        Safe from any thread and from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)

    def close(self) -> None:
        """Stop any run, wait for the worker, and release the session's lock."""
        self._stop.set()
        self._worker.shutdown(wait=True)
        self.session.close()

    # ----- requests (called in the event loop) ----------------------------------------------------
    async def prompt(self, text: Any) -> dict[str, Any]:
        """One prompted pass with ``text``; its reply streams to every page."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("the message is empty: type something to send")
        if len(text) > self.limits.max_input_chars:
            raise TooLarge(f"the message has {len(text)} characters, over the limit of "
                           f"{self.limits.max_input_chars}; nothing was run")
        tokens = self.renderer.turn(text)  # the pass format of training: refused here if it encodes to nothing
        return await self._run("a prompted pass", self._passes, "prompt", tokens, text, 1)

    async def tick(self, count: Any = 1) -> dict[str, Any]:
        """``count`` idle ticks, one pass each, until done or stopped."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= self.limits.max_ticks:
            raise ConfigError(f"the tick count must be a whole number from 1 to {self.limits.max_ticks}, "
                              f"got {count!r}")
        what = "an idle tick" if count == 1 else f"{count} idle ticks"
        return await self._run(what, self._passes, "idle", list(self.config.idle_tokens), None, count)

    async def reset(self, what: Any) -> dict[str, Any]:
        if what not in RESETS:
            raise ConfigError(f"unknown reset {what!r}: choose one of {', '.join(RESETS)}")
        return await self._run(f"a reset of the {what}", self._reset, what)

    async def save(self) -> dict[str, Any]:
        return await self._run("a save", self._save)

    async def open(self, name: Any, create: bool) -> dict[str, Any]:
        """Switch to session ``name``: a new one (``create``) or a stored one, on this server's model."""
        SessionStore(name, self.root)  # the CLI's name check, before anything else
        what = f"{'creating' if create else 'resuming'} session '{name}'"
        result = await self._run(what, self._switch, name, create)
        self._broadcast(self.snapshot())
        return result

    def stop(self) -> dict[str, Any]:
        """End a running series of idle ticks after the current pass, or a streaming reply after this token."""
        if self._busy is None:
            return {"stopped": False, "message": "nothing is running"}
        self._stop.set()
        return {"stopped": True, "message": f"stopping {self._busy}"}

    # ----- events --------------------------------------------------------------------------------
    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """The events of this server, starting with a snapshot; ends at shutdown (or when the page goes)."""
        queue: asyncio.Queue = asyncio.Queue()
        queue.put_nowait(self.snapshot())
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)

    def snapshot(self) -> dict[str, Any]:
        session = self.session
        view = self._view(session.name)
        gate = session.gate
        return {
            "event": "snapshot",
            "session": session.name,
            "directory": str(session.store.directory) if session.store else None,
            "tick": session.tick,
            "status": state_line(session),
            "busy": self._busy,
            "gate": {"kind": gate.kind, "threshold": gate.threshold},
            "points": list(view.points),
            "log": list(view.log),
            "sessions": SessionStore(session.name, self.root).existing_names(),
            "model": self.settings["model"],
            "artifact": self.settings["artifact"],
            "pass_format": self.renderer.format.to_dict(),
            "ran": {"mode": self.model.config.mode, "layer": self.model.config.layer,
                    "units": self.model.reservoir.units},
            "limits": self.limits.to_dict(),
        }

    # ----- the worker ----------------------------------------------------------------------------
    async def _run(self, what: str, work: Callable[..., dict[str, Any]], *args) -> dict[str, Any]:
        """Run ``work`` on the worker, or refuse at once if it is busy. The check and the claim happen in the
        event loop's one thread, so two requests can never both pass it."""
        if self._loop is None:
            raise RuntimeError("SessionHost.attach(loop) was not called")
        if self._busy is not None:
            raise Busy(f"refused: {self._busy} is running on session '{self.session.name}'; nothing was done, "
                       "send it again when it ends (or press stop)")
        self._busy = what
        self._stop.clear()
        self._broadcast({"event": "busy", "busy": what})
        future = self._loop.run_in_executor(self._worker, work, *args)
        future.add_done_callback(self._released)  # released when the work ends, even if the request went away
        return await asyncio.shield(future)

    def _released(self, _future) -> None:
        self._busy = None
        self._broadcast({"event": "busy", "busy": None})

    def _passes(self, kind: str, tokens: list[int], text: str | None, count: int) -> dict[str, Any]:
        """(worker) ``count`` passes of one kind; returns the last pass's plot point."""
        point: dict[str, Any] = {}
        for _ in range(count):
            if self._stop.is_set():
                break
            point = self._one_pass(kind, tokens, text)
        return {"tick": self.session.tick, "last": point}

    def _one_pass(self, kind: str, tokens: list[int], text: str | None) -> dict[str, Any]:
        session = self.session
        name = session.name
        previous = session.state.clone()
        self._emit({"event": "pass_start", "session": name, "kind": kind, "text": text, "tick": session.tick + 1})
        started = time.perf_counter()
        first_token: list[float] = []

        def on_token(delta: str) -> None:
            if not first_token:
                first_token.append(time.perf_counter() - started)
            self._emit({"event": "token", "session": name, "text": delta})

        streamer = Streamer(self.tokenizer, on_token)

        def stream(token: int) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt  # the session's own way to end a reply; the pass still completes
            streamer(token)

        try:
            record = session.prompt(tokens, on_token=stream) if kind == "prompt" else session.idle(on_token=stream)
        except BaseException as error:
            self._emit({"event": "pass_failed", "session": name, "error": str(error) or type(error).__name__})
            raise
        point = self._point(record, float((session.state - previous).norm()))  # ||r(t) - r(t-1)||
        self._emit({"event": "pass_end", "session": name, "point": point,
                    "reply": self.tokenizer.decode(record.tokens, skip_special_tokens=True),
                    "first_token_seconds": first_token[0] if first_token else None,
                    "status": state_line(session)})
        return point

    @staticmethod
    def _point(record: PassRecord, change: float) -> dict[str, Any]:
        gate = record.gate
        return {"tick": record.tick, "kind": record.kind, "state_norm": record.state_norm, "state_change": change,
                "gate_value": gate["value"], "gate_threshold": gate["threshold"], "gate_kind": gate["kind"],
                "emitted": record.emitted, "stop_token": bool(gate.get("stop_token")),
                "interrupted": record.interrupted, "context_length": record.context_length,
                "evicted": record.evicted, "saturation": record.saturation, "reply_tokens": len(record.tokens),
                "seconds": record.seconds}

    def _reset(self, what: str) -> dict[str, Any]:
        session = self.session
        session.reset(what)
        event = {"event": "reset", "session": session.name, "what": what, "tick": session.tick,
                 "status": state_line(session)}
        self._emit(event)
        return event

    def _save(self) -> dict[str, Any]:
        session = self.session
        session.save()
        event = {"event": "saved", "session": session.name, "path": str(session.store.path), "tick": session.tick}
        self._emit(event)
        return event

    def _switch(self, name: str, create: bool) -> dict[str, Any]:
        if name == self.session.name:
            raise ConfigError(f"session '{name}' is already open here")
        if create:
            opened = Session.create(name, self.model, self.config, gate=self._gate(self.settings), root=self.root,
                                    settings=dict(self.settings))
        else:
            opened = self._resume(name)
        previous, self.session = self.session, opened
        previous.close()
        self._emit_note(f"session '{name}' {'created' if create else 'resumed'} at tick {opened.tick}")
        return {"session": name, "tick": opened.tick}

    def _resume(self, name: str) -> Session:
        """A stored session on this server's model; refused (one line, file untouched) if it does not fit."""
        stored = SessionStore(name, self.root).load().settings  # "no session", corrupt: refused here
        session = Session.open(name, self.model, gate=self._gate(stored), root=self.root)
        format_here = self.renderer.format.to_dict()
        if stored.get("pass_format", format_here) != format_here:
            session.close()
            raise ArtifactError(f"session '{name}' reads passes as {stored['pass_format']}, this server as "
                                f"{format_here}: resume it with ran chat --session {name} --resume")
        return session

    def _gate(self, settings: dict[str, Any]):
        max_entropy = (settings.get("cli") or {}).get("max_entropy", DEFAULT_MAX_ENTROPY)
        return load_gate(self.settings["artifact"], self.model.reservoir, max_entropy)

    # ----- broadcasting ---------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        """(worker) Hand an event to the event loop, in order."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._broadcast, event)

    def _emit_note(self, text: str) -> None:
        self._emit({"event": "note", "session": self.session.name, "text": text})

    def _note(self, text: str) -> None:
        self._record({"event": "note", "session": self.session.name, "text": text})

    def _broadcast(self, event: dict[str, Any]) -> None:
        """(event loop) Record the event in its session's view, then queue it for every page."""
        self._record(event)
        for queue in list(self._subscribers):
            if queue.qsize() >= self.limits.pending_events:  # a page that stopped reading: resynchronise it
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(self.snapshot())
            else:
                queue.put_nowait(event)

    def _view(self, name: str) -> View:
        if name not in self._views:
            self._views[name] = View([], collections.deque(maxlen=self.limits.log_entries))
        return self._views[name]

    def _record(self, event: dict[str, Any]) -> None:
        if "session" not in event or event["event"] == "snapshot":
            return
        view = self._view(event["session"])
        kind = event["event"]
        if kind == "pass_start":
            view.log.append({"kind": event["kind"], "tick": event["tick"], "text": event["text"], "reply": "",
                             "done": False})
        elif kind == "token" and view.log and not view.log[-1].get("done", True):
            view.log[-1]["reply"] += event["text"]
        elif kind in ("pass_end", "pass_failed") and view.log and not view.log[-1].get("done", True):
            entry = view.log[-1]
            entry["done"] = True
            if kind == "pass_end":
                view.points.append(event["point"])
                entry.update(reply=event["reply"], point=event["point"], first_token_seconds=
                             event["first_token_seconds"])
            else:
                entry["error"] = event["error"]
        elif kind in ("reset", "saved", "note"):
            view.log.append({key: value for key, value in event.items() if key != "event"} | {"kind": kind})
