"""``ran run``: drive a session from a script, non-interactively, and write a JSON transcript.

The script has one entry per line: a command (``/tick N``, ``/state``, ``/reset [...]``, ``/save``) or
a user input; ``#`` starts a comment. Every pass lands in ``<out>/run-<session>-<date>.json`` (the
session's config, versions, each pass's gate value, reply, state norm and context length) and a PNG
drawn from that JSON. The session is saved after every pass, so a later ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ran.cli.common import DEFAULT_OUT
from ran.cli.sessions import add_session_arguments, open_session, parse_command, state_line, user_turn
from ran.errors import ConfigError
from ran.provenance import environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_session_arguments(parser)
    parser.add_argument("--script", required=True, help="file of inputs and commands, one per line")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory of the transcript JSON and PNG (default: {DEFAULT_OUT}, not tracked by git)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the passes")


def run(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        raise ConfigError(f"script not found: {args.script}")
    entries = []
    for number, line in enumerate(script.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((number, *parse_command(line)))
        except ConfigError as error:
            raise ConfigError(f"{args.script}:{number}: {error}") from None
    started = time.perf_counter()
    opened = open_session(args)
    session, tokenizer = opened.session, opened.tokenizer
    transcript: dict[str, Any] = {
        "command": "run",
        "session": session.name,
        "resumed": opened.resumed,
        "script": str(script),
        "model": session.settings["model"],
        "artifact": session.settings.get("artifact"),
        "ran_config": session.model.config.to_dict(),
        "reservoir_fingerprint": session.model.reservoir.fingerprint,
        "session_config": session.config.to_dict(),
        "gate": session.gate.kind,
        "environment": environment(),
        "start": session.state_stats(),
        "events": [],
    }
    say = (lambda text: None) if args.quiet else print
    try:
        for number, command, arguments in entries:
            if command in ("quit", "exit"):
                break
            if command == "input":
                record = session.prompt(user_turn(opened, arguments[0]))
                _log(transcript, number, record, tokenizer, arguments[0])
                reply = tokenizer.decode(record.tokens, skip_special_tokens=True)
                say(f"[tick {record.tick}] you: {arguments[0]}\n  ran: {reply!r}")
            elif command == "tick":
                for _ in range(int(arguments[0]) if arguments else 1):
                    record = session.idle()
                    _log(transcript, number, record, tokenizer, None)
                    reply = tokenizer.decode(record.tokens, skip_special_tokens=True)
                    say(f"[tick {record.tick}] idle: " + (f"spoke {reply!r}" if record.emitted else "silent"))
            elif command == "state":
                transcript["events"].append({"line": number, "kind": "state", **session.state_stats()})
                say(state_line(session))
            elif command == "reset":
                session.reset(arguments[0] if arguments else "all")
                what = arguments[0] if arguments else "all"
                transcript["events"].append({"line": number, "kind": "reset", "what": what})
            elif command == "save":
                session.save()
    finally:
        session.close()
    transcript["end"] = session.state_stats()
    transcript["seconds"] = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"run-{session.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = out / f"{stem}.json"
    path.write_text(json.dumps(transcript, indent=1) + "\n")
    plot_transcript(json.loads(path.read_text()), out / f"{stem}.png")
    passes = sum(event["kind"] in ("prompt", "idle") for event in transcript["events"])
    print(f"{passes} passes; {state_line(session)}\ntranscript: {path}")
    return 0


def _log(transcript: dict[str, Any], number: int, record, tokenizer, text: str | None) -> None:
    event = {"line": number, **record.to_dict()}
    event["input_text"] = text
    event["reply"] = tokenizer.decode(record.tokens, skip_special_tokens=True)
    transcript["events"].append(event)


def plot_transcript(transcript: dict[str, Any], path: Path) -> Path:
    """State norm, gate value and context length per pass, drawn from the transcript JSON only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = [e for e in transcript["events"] if e.get("kind") in ("prompt", "idle")]
    figure, axes = plt.subplots(3, 1, figsize=(6.4, 6.0), sharex=True)
    ticks = [e["tick"] for e in passes]
    for axis, key, label in ((axes[0], "state_norm", "state norm"),
                             (axes[2], "context_length", "context tokens")):
        axis.plot(ticks, [e[key] for e in passes], marker=".")
        axis.set_ylabel(label)
    gate_kind = transcript["gate"]
    axes[1].plot(ticks, [e["gate"]["value"] for e in passes], marker=".", label=f"{gate_kind} gate value")
    if passes:
        axes[1].axhline(passes[0]["gate"]["threshold"], color="k", linestyle=":", label="threshold")
    for e in passes:
        if e["kind"] == "prompt":
            for axis in axes:
                axis.axvline(e["tick"], color="#d62728", alpha=0.2)
    axes[1].set_ylabel("entropy (nats)" if gate_kind == "entropy" else "p(speak)")
    axes[1].legend(fontsize=8)
    axes[2].set_xlabel("tick (red: prompted passes)")
    axes[0].set_title(f"session {transcript['session']} on {transcript['model']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
