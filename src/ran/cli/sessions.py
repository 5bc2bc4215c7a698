"""What ``ran chat`` and ``ran run`` share: opening a session by name, turns as tokens, the commands.

Commands (typed in ``ran chat``, or one per line in a ``ran run`` script; other lines are user input):
``/tick [N]`` N idle ticks (default 1), ``/state`` show the state, ``/reset [all|state|context]``,
``/save``, ``/help``, ``/quit``. Script lines starting with ``#`` are comments.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from ran.artifact import artifact_pass_format
from ran.cli.common import add_model_arguments, add_reservoir_arguments
from ran.errors import ConfigError
from ran.fileio import check_directory
from ran.limits import MAX_INPUT_CHARACTERS, MAX_TICKS
from ran.loading import DEFAULT_MODEL, load_model
from ran.model import RanConfig, ReservoirModel, wrap
from ran.passes import FORMATS, TICKS, PassFormat, Renderer, default_format
from ran.reservoir import ReservoirConfig
from ran.runtime import POLICIES, ContextPolicy, Session, SessionConfig, SessionStore, load_gate
from ran.runtime.gate import DEFAULT_MAX_ENTROPY

RESERVOIR_FLAGS = {"units": "units", "spectral_radius": "spectral_radius", "leak_rate": "leak_rate",
                   "input_scaling": "input_scaling", "connectivity": "connectivity", "activation": "activation",
                   "reservoir_seed": "seed", "leak_rate_min": "leak_rate_min"}
SESSION_DEFAULTS = {"max_new_tokens": 64, "temperature": 0.0, "sample_seed": 0, "policy": "streaming",
                    "sinks": 4, "window": 252, "heavy": 0, "max_entropy": DEFAULT_MAX_ENTROPY,
                    "gate_prompted": False, "write_margin": None}
HELP = "commands: /tick [N]  /state  /reset [all|state|context]  /save  /help  /quit  (other lines: input)"


def add_session_arguments(parser: argparse.ArgumentParser, default_session: str | None = None) -> None:
    """The session flags; with ``default_session`` (``ran serve``) --session is optional and there is no
    --resume: a stored session of that name is resumed, a new name is created."""
    if default_session is None:
        parser.add_argument("--session", required=True, help="session name (a directory under the sessions root)")
        parser.add_argument("--resume", action="store_true",
                            help="continue the stored session (it must exist); without it, the name must be new")
    else:
        parser.add_argument("--session", default=default_session,
                            help=f"session name: resumed when it is stored, else created (default: {default_session})")
    parser.add_argument("--sessions-dir", default=None,
                        help="where sessions live (default: $RAN_SESSIONS, else ./sessions)")
    parser.add_argument("--artifact", default=None, help="trained artifact directory (ran_config.json, ...)")
    add_model_arguments(parser)
    add_reservoir_arguments(parser)
    group = parser.add_argument_group("session (stored with a new session; given on --resume they override)")
    group.add_argument("--max-new-tokens", type=int, help="longest reply (default: 64)")
    group.add_argument("--temperature", type=float, help="0 = greedy (default: 0)")
    group.add_argument("--sample-seed", type=int, help="seed of sampling, mixed with the tick (default: 0)")
    group.add_argument("--policy", choices=POLICIES, help="context eviction policy (default: streaming)")
    group.add_argument("--sinks", type=int, help="attention-sink tokens always kept (default: 4)")
    group.add_argument("--window", type=int, help="recent tokens kept (default: 252)")
    group.add_argument("--heavy", type=int, help="h2o: important tokens kept in between (default: 0)")
    group.add_argument("--max-entropy", type=float,
                       help=f"fallback gate: speak when next-token entropy <= this many nats "
                            f"(default: {DEFAULT_MAX_ENTROPY})")
    group.add_argument("--gate-prompted", action=argparse.BooleanOptionalAction,
                       help="the gate decides after your turns too, so the model may stay silent when you type "
                            "(the battery's silence task trains this); default: every turn gets a reply")
    group.add_argument("--write-margin", type=float, metavar="LOGIT",
                       help="open a pass-switched write only where its logit exceeds this (default: the "
                            "artifact's own margin, 0 unless it was trained with one)")
    group.add_argument("--format", choices=FORMATS,
                       help="pass format (default: the artifact's; without one, chat for ChatML tokenizers)")
    group.add_argument("--idle-text", help="text read at every idle tick (default: the format's, a newline)")
    group.add_argument("--tick", choices=TICKS,
                       help="what an idle tick reads: the idle text (text) or an empty user turn (turn, chat only) "
                            "(default: the artifact's; without one, text)")
    # None marks "not given": a resumed session keeps what it was made with unless told otherwise.
    parser.set_defaults(model=None, mode=None, slots=None, summary=None, write=None, idle_write=None, recall=None,
                        drive=None, read_places=None, read_from=None, slot_order=None, reply_places=None,
                        whiten=None, gate_context=None,
                        **{flag: None for flag in RESERVOIR_FLAGS})


@dataclass
class Opened:
    session: Session
    tokenizer: Any
    resumed: bool
    renderer: Renderer  # the pass format, bound to the tokenizer: how inputs become tokens


def open_session(args: argparse.Namespace, check: Callable[[Renderer, Any], None] | None = None) -> Opened:
    """Create (or with --resume, reopen) the named session on its model; every refusal is one line.

    ``check(renderer, model)`` runs once the model and pass format are known and before the session is
    created or opened, e.g. to refuse a script's over-long inputs before anything is written."""
    store = SessionStore(args.session, args.sessions_dir)
    if store.root.exists() or not args.resume:
        check_directory(store.root, "--sessions-dir")  # a file or an unwritable directory fails before any load
    stored: dict[str, Any] = {}
    stored_config: dict[str, Any] | None = None
    if args.resume:
        snapshot = store.load()  # the "no session" and corrupt-file errors come from here
        stored, stored_config = snapshot.settings, snapshot.identity.get("ran_config")
    elif store.exists():
        raise ConfigError(f"session '{args.session}' already exists in {store.root}/: pass --resume to "
                          "continue it, or choose another name")
    given = {key: getattr(args, key) for key in SESSION_DEFAULTS}
    settings = {key: (given[key] if given[key] is not None else stored.get("cli", {}).get(key, default))
                for key, default in SESSION_DEFAULTS.items()}
    model_name = args.model or stored.get("model") or DEFAULT_MODEL
    artifact = args.artifact or stored.get("artifact")
    policy = ContextPolicy(kind=settings["policy"], sinks=settings["sinks"], window=settings["window"],
                           heavy=settings["heavy"])
    attention = "eager" if policy.needs_attention else "sdpa"
    base, tokenizer = load_model(model_name, attn_implementation=attention, device=args.device, dtype=args.dtype)
    model = _build_model(args, base, artifact, stored_config, settings["write_margin"])
    renderer = Renderer(_pass_format(args, tokenizer, artifact, stored), tokenizer)
    config = SessionConfig.for_renderer(renderer, max_new_tokens=settings["max_new_tokens"],
                                        temperature=settings["temperature"], sample_seed=settings["sample_seed"],
                                        gate_prompted=settings["gate_prompted"], policy=policy)
    gate = load_gate(artifact, model.reservoir, settings["max_entropy"])
    if check is not None:
        check(renderer, config.policy, model)
    cli_settings = {"model": model_name, "artifact": artifact and os.path.abspath(artifact), "cli": settings,
                    "pass_format": renderer.format.to_dict()}
    if args.resume:
        session = Session.open(args.session, model, gate=gate, root=args.sessions_dir, config=config)
        session.settings.update(cli_settings)
    else:
        session = Session.create(args.session, model, config, gate=gate, root=args.sessions_dir,
                                 settings=cli_settings)
    return Opened(session, tokenizer, args.resume, renderer)


def _pass_format(args: argparse.Namespace, tokenizer, artifact: str | None, stored: dict[str, Any]) -> PassFormat:
    """The artifact's pass format (what its readout was trained on), else the stored session's, else the
    tokenizer's default (chat for ChatML tokenizers); --format, --idle-text and --tick may not contradict an
    artifact."""
    if artifact:
        trained = artifact_pass_format(artifact)
        for flag, value, wanted in (("--format", args.format, trained.kind),
                                    ("--idle-text", args.idle_text, trained.idle_text),
                                    ("--tick", args.tick, trained.tick)):
            if value is not None and value != wanted:
                raise ConfigError(f"{flag} {value!r} contradicts the artifact, which was trained with {wanted!r}: "
                                  f"leave {flag} out")
        return trained
    chosen = PassFormat.from_dict(stored["pass_format"]) if "pass_format" in stored else default_format(tokenizer)
    changes = {key: value for key, value in (("kind", args.format), ("idle_text", args.idle_text), ("tick", args.tick))
               if value is not None}
    return replace(chosen, **changes)


def _build_model(args: argparse.Namespace, base, artifact: str | None, stored_config: dict[str, Any] | None,
                 write_margin: float | None = None) -> ReservoirModel:
    """The artifact's model (with ``write_margin`` in place of its own, where given), else a fresh wrap: the
    stored session's config with any flags given applied."""
    if artifact:
        return ReservoirModel.from_pretrained(base, artifact, write_margin=write_margin)
    config = RanConfig.from_dict(stored_config) if stored_config else RanConfig()
    reservoir = {field: getattr(args, flag) for flag, field in RESERVOIR_FLAGS.items()
                 if getattr(args, flag) is not None}
    changes: dict[str, Any] = {"reservoir": ReservoirConfig(**{**config.reservoir.to_dict(), **reservoir})}
    for flag, field in (("mode", "mode"), ("layer", "layer"), ("slots", "n_slots"), ("summary", "summary"),
                        ("write", "write"), ("idle_write", "idle_write"), ("recall", "recall"), ("drive", "drive"),
                        ("read_places", "read_places"), ("read_from", "read_from"), ("slot_order", "slot_order"),
                        ("reply_places", "reply_places"), ("whiten", "whiten"),
                        ("gate_context", "gate_context")):
        if getattr(args, flag) is not None:
            changes[field] = getattr(args, flag)
    if write_margin is not None:
        changes["write_margin"] = write_margin
    return wrap(base, RanConfig(**{**vars_of(config), **changes}))


def vars_of(config: RanConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in fields(config)}


def user_turn(opened: Opened, text: str) -> list[int]:
    """The tokens of one input pass, rendered exactly as training renders it."""
    return opened.renderer.turn(text)


class Streamer:
    """Prints tokens as they come; decodes the whole reply each time so characters come out whole."""

    def __init__(self, tokenizer, write: Callable[[str], Any]):
        self.tokenizer, self.write = tokenizer, write
        self.tokens: list[int] = []
        self.shown = ""

    def __call__(self, token: int) -> None:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self.write(text[len(self.shown):])
            self.shown = text


def state_line(session: Session) -> str:
    stats = session.state_stats()
    gate = session.last["gate"] if session.last else None
    gate_text = "gate n/a (no pass yet)"
    if gate:
        verdict = "speak" if gate["emit"] else "silent"
        if gate.get("stop_token"):
            verdict += ", top token ends the turn"
        symbol = "p" if gate["kind"] == "state" else "entropy"
        limit = ">=" if gate["kind"] == "state" else "<="
        gate_text = (f"gate {symbol}={gate['value']:.3f} "
                     f"({verdict}; speaks at {limit} {gate['threshold']:.2f})")
    return (f"tick {stats['tick']} | state norm {stats['norm']:.4f} | saturation {stats['saturation']:.3f} | "
            f"{gate_text} | context {stats['context_length']} tokens | state sha256 {stats['digest']}")


def parse_command(line: str) -> tuple[str, list[str]]:
    """('input', [text]) for user input, else (command, arguments); raises ConfigError on a bad command."""
    if len(line) > MAX_INPUT_CHARACTERS:
        raise ConfigError(f"the line is {len(line):,} characters, more than the {MAX_INPUT_CHARACTERS:,} an input may "
                          "have (about 5,000 tokens): split it or shorten it")
    stripped = line.strip()
    if not stripped.startswith("/"):
        return "input", [line.rstrip("\n")]
    if not stripped[1:].strip():
        raise ConfigError(f"'/' alone is not a command: {HELP}")
    name, *arguments = stripped[1:].split()
    if name == "tick":
        if len(arguments) > 1 or (arguments and not (arguments[0].isdigit() and 1 <= int(arguments[0]) <= MAX_TICKS)):
            raise ConfigError(f"/tick takes one count in 1..{MAX_TICKS} (for more, repeat the command), got "
                              f"{' '.join(arguments)!r}")
    elif name == "reset":
        if len(arguments) > 1 or (arguments and arguments[0] not in ("all", "state", "context")):
            raise ConfigError(f"/reset takes all, state or context, got {' '.join(arguments)!r}")
    elif name not in ("state", "save", "help", "quit", "exit"):
        raise ConfigError(f"unknown command /{name}: {HELP}")
    return name, arguments
