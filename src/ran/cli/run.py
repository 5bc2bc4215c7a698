"""``ran run``: drive a session from a script, non-interactively, and write a JSON transcript.

The script has one entry per line: a command (``/tick N``, ``/state``, ``/reset [...]``, ``/save``) or
a user input; ``#`` starts a comment. Every line is checked before the model loads, and every input's
length once the tokenizer is known, before the session is created or opened. Every pass lands in
``<out>/run-<session>-<date>.json`` (the session's config, versions, each pass's gate value, reply,
state norm and context length) and a PNG drawn from that JSON. The transcript is written as the run
goes: ``run-<...>.jsonl`` gets one line per event, appended and fsynced after every pass, and the JSON
is written from it when the script ends, fails or is interrupted (Ctrl-C: exit status 130), after which
the journal is removed; a killed run leaves the journal, holding every completed pass. The session is
saved after every pass, so a later ``--resume`` continues it.
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
from ran.fileio import append_line, atomic_write, check_directory
from ran.provenance import environment
from ran.runtime.session import check_turn, interrupts_deferred

MAX_SCRIPT_BYTES = 16 * 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_session_arguments(parser)
    parser.add_argument("--script", required=True, help="file of inputs and commands, one per line")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"directory of the transcript JSON and PNG (default: {DEFAULT_OUT}, not tracked by git)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the passes")


def read_script(path: str) -> list[tuple[int, str, list[str]]]:
    """(line number, command, arguments) of every entry of a script; one line naming the first bad entry."""
    script = Path(path)
    if not script.is_file():
        raise ConfigError(f"script {path} {'is a directory' if script.is_dir() else 'not found'}: give a text file")
    if script.stat().st_size > MAX_SCRIPT_BYTES:
        raise ConfigError(f"script {path} is {script.stat().st_size:,} bytes, more than the {MAX_SCRIPT_BYTES:,} a "
                          "script may have")
    try:
        text = script.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"script {path} is not a text file (not UTF-8)") from None
    except OSError as error:
        raise ConfigError(f"script {path} cannot be read ({error.strerror or error})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((number, *parse_command(line)))
        except ConfigError as error:
            raise ConfigError(f"{path}:{number}: {error}") from None
    return entries


def run(args: argparse.Namespace) -> int:
    entries = read_script(args.script)
    out = check_directory(args.out, "--out")  # before the model loads: an unwritable --out costs nothing

    def check_inputs(renderer, policy, model) -> None:  # every input fits its pass, before the session opens
        for number, command, arguments in entries:
            if command == "input":
                try:
                    check_turn(len(renderer.turn(arguments[0])), policy, model)
                except ConfigError as error:
                    raise ConfigError(f"{args.script}:{number}: {error}") from None

    started = time.perf_counter()
    opened = open_session(args, check=check_inputs)
    session, tokenizer = opened.session, opened.tokenizer
    transcript: dict[str, Any] = {
        "command": "run",
        "session": session.name,
        "resumed": opened.resumed,
        "script": str(args.script),
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
    stem = _free_stem(out, f"run-{session.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    journal = out / f"{stem}.jsonl"
    append_line(journal, json.dumps({key: value for key, value in transcript.items() if key != "events"}))

    logged = {"tick": session.tick}  # the last pass in the journal
    current: dict[str, Any] = {}  # the script line of the pass under way

    def log(event: dict[str, Any]) -> None:
        with interrupts_deferred():  # a Ctrl-C in the middle would leave the pass half logged, then logged twice
            transcript["events"].append(event)
            append_line(journal, json.dumps(event))
            if event["kind"] in ("prompt", "idle"):
                logged["tick"] = event.get("tick", logged["tick"])

    say = (lambda text: None) if args.quiet else print
    status = "failed"
    try:
        for number, command, arguments in entries:
            current.update(line=number, text=arguments[0] if command == "input" else None)
            if command in ("quit", "exit"):
                break
            if command == "input":
                record = session.prompt(user_turn(opened, arguments[0]))
                log(_event(number, record, tokenizer, arguments[0]))
                reply = tokenizer.decode(record.tokens, skip_special_tokens=True)
                say(f"[tick {record.tick}] you: {arguments[0]}\n  ran: {reply!r}")
                _stop_if_interrupted(record)
            elif command == "tick":
                for _ in range(int(arguments[0]) if arguments else 1):
                    record = session.idle()
                    log(_event(number, record, tokenizer, None))
                    reply = tokenizer.decode(record.tokens, skip_special_tokens=True)
                    say(f"[tick {record.tick}] idle: " + (f"spoke {reply!r}" if record.emitted else "silent"))
                    _stop_if_interrupted(record)
            elif command == "state":
                log({"line": number, "kind": "state", **session.state_stats()})
                say(state_line(session))
            elif command == "reset":
                session.reset(arguments[0] if arguments else "all")
                log({"line": number, "kind": "reset", "what": arguments[0] if arguments else "all"})
            elif command == "save":
                session.save()
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if session.last and session.last["tick"] > logged["tick"]:  # a pass completed as Ctrl-C came: log it
            log(_event(current["line"], session.last, tokenizer, current["text"]))
        session.close()
        transcript["end"] = session.state_stats()
        transcript["seconds"] = time.perf_counter() - started
        transcript["status"] = status  # completed | interrupted (Ctrl-C) | failed (an error ended it)
        path = atomic_write(out / f"{stem}.json", json.dumps(transcript, indent=1) + "\n")
        journal.unlink()
    plot_transcript(json.loads(path.read_text()), out / f"{stem}.png")
    passes = sum(event["kind"] in ("prompt", "idle") for event in transcript["events"])
    print(f"{passes} passes; {state_line(session)}\ntranscript: {path}")
    return 0


def _stop_if_interrupted(record) -> None:
    """A Ctrl-C during a reply ends only the reply (the pass completes and is logged); in a script it also
    ends the run."""
    if record.interrupted:
        raise KeyboardInterrupt


def _free_stem(out: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... when a transcript of that name exists: never overwrite one."""
    candidate, number = stem, 1
    while any((out / f"{candidate}{suffix}").exists() for suffix in (".json", ".jsonl", ".png")):
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def _event(number: int, record, tokenizer, text: str | None) -> dict[str, Any]:
    """One pass in the transcript (``record``: a PassRecord or its dict)."""
    event = {"line": number, **(record if isinstance(record, dict) else record.to_dict())}
    event["input_text"] = text
    event["reply"] = tokenizer.decode(event["tokens"], skip_special_tokens=True)
    return event


def plot_transcript(transcript: dict[str, Any], path: Path) -> Path:
    """State norm, gate value and context length per pass, drawn from the transcript JSON only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ran.plots import save_figure

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
    save_figure(figure, path, dpi=110)
    return path
