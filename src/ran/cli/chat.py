"""``ran chat``: an interactive, always-alive session in the terminal.

Each line you type is a prompted pass whose reply streams token by token; ``/tick N`` runs N idle
ticks (the gate decides whether the model speaks on each); ``/state`` shows the tick count, the state's
norm and saturation, the last gate value and a hash of the state. The session is saved atomically
after every pass, so ``ran chat --session NAME --resume`` continues exactly where it stopped, even
after the process was killed.
"""

from __future__ import annotations

import argparse
import sys

from ran.cli.sessions import (
    HELP,
    Opened,
    Streamer,
    add_session_arguments,
    open_session,
    parse_command,
    state_line,
    user_turn,
)
from ran.errors import ConfigError
from ran.runtime import PassRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_session_arguments(parser)


def run(args: argparse.Namespace) -> int:
    opened = open_session(args)
    session = opened.session
    model = session.model
    how = f"resumed at tick {session.tick}" if opened.resumed else "new"
    print(f"session '{session.name}' ({how}) in {session.store.directory}: {session.settings['model']}, "
          f"mode={model.config.mode} layer={model.config.layer} units={model.reservoir.units}, "
          f"{session.gate.kind} gate, {session.config.policy.kind} context "
          f"(budget {session.config.policy.budget})")
    print(HELP)
    print(state_line(session))
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                print()
                break
            try:
                command, arguments = parse_command(line)
            except ConfigError as error:
                print(f"error: {error}")
                continue
            if command in ("quit", "exit"):
                break
            try:
                _do(opened, command, arguments)
            except ConfigError as error:  # e.g. an input longer than the context keeps: the session is unchanged
                print(f"\nerror: {error}")
    finally:
        session.close()
    return 0


def _do(opened: Opened, command: str, arguments: list[str]) -> bool:
    session = opened.session
    if command == "input":
        if not arguments[0].strip():
            return False
        print("ran> ", end="", flush=True)
        streamer = Streamer(opened.tokenizer, _write)
        record = session.prompt(user_turn(opened, arguments[0]), on_token=streamer)
        print()
        print(f"  [{_summary(record)}]")
    elif command == "tick":
        for _ in range(int(arguments[0]) if arguments else 1):
            streamer = Streamer(opened.tokenizer, _write)
            print(f"  idle tick {session.tick + 1}: ", end="", flush=True)
            record = session.idle(on_token=streamer)
            if record.emitted:
                verdict = " <- spoke"
            else:
                verdict = "silent (top token ends the turn)" if record.gate.get("stop_token") else "silent"
            print(f"{verdict} [{_summary(record)}]")
    elif command == "state":
        print(state_line(session))
    elif command == "reset":
        what = arguments[0] if arguments else "all"
        session.reset(what)
        print(f"reset {what}; {state_line(session)}")
    elif command == "save":
        session.save()
        print(f"saved to {session.store.path}")
    elif command == "help":
        print(HELP)
    return True


def _summary(record: PassRecord) -> str:
    gate = record.gate
    symbol = "p" if gate["kind"] == "state" else "entropy"
    return (f"tick {record.tick}, {symbol}={gate['value']:.3f}, norm {record.state_norm:.4f}, "
            f"context {record.context_length}, {record.model_calls} calls, {record.seconds:.2f}s")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
