"""The ``ran`` command line: one module per subcommand, registered by name.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. A user-facing error
(:class:`ran.errors.RanError`) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from functools import partial

from ran.cli.validate import check_arguments
from ran.errors import RanError, RanWarning

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "check": ("ran.cli.check", "wrap a model and check non-destruction, state, and cached generation"),
    "chat": ("ran.cli.chat", "an always-alive chat session: streams replies, idle ticks, resumes by name"),
    "run": ("ran.cli.run", "drive a session from a script of inputs and idle ticks; writes a JSON transcript"),
    "serve": ("ran.cli.serve", "the chat session as a local web page: streamed replies, live plots of the state"),
    "sweep": ("ran.cli.sweep", "reservoir regime over spectral radius x input scaling: echo-state boundary, band"),
    "memory": ("ran.cli.memory", "delay-memory capacity of the state vs the stateless readout"),
    "gate": ("ran.cli.gate", "'unresolved thread' silence gate on the state vs on the current input"),
    "monitor": ("ran.cli.monitor", "clock probe, its drift degradation, and STOP interruptibility"),
    "crosspass": ("ran.cli.crosspass", "train and measure cross-pass recall, carried state vs wiped control"),
    "remember": ("ran.cli.remember", "train the one-memory recipe: any value, in your own words, across many turns"),
    "eval": ("ran.cli.eval", "reload a saved crosspass artifact and measure its recall again"),
    "battery": ("ran.cli.battery", "train the eight stateful tasks together; each carried vs wiped vs stateless"),
    "population": ("ran.cli.population", "reservoir seeds x training seeds: ANOVA, best reservoir, GRU baseline, Ray"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the flag, the problem, where to look), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ran", description="Reservoir Attention Network")
    parser.add_argument("--version", action="version", version=f"ran {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    epilog=getattr(module, "EPILOG", None))  # e.g. how long the defaults take
        module.add_arguments(sub)
    return parser


# Commands a person interrupts by hand: after Ctrl-C the ``ran`` command exits at once (see console()).
EXIT_AT_ONCE_ON_INTERRUPT = ("run", "chat")


def console() -> None:
    """The ``ran`` command (and ``python -m ran``): :func:`main`, then exit with its status."""
    sys.exit(main(exit_at_once_on_interrupt=True))


def main(argv: list[str] | None = None, exit_at_once_on_interrupt: bool = False) -> int:
    """Run one subcommand; returns the exit status (2 for a user-facing error, 130 after Ctrl-C).

    With ``exit_at_once_on_interrupt`` a session command interrupted by Ctrl-C ends the process right after
    its files are written (they are fsynced, and the session lock goes with the process), skipping the
    interpreter's teardown of some 3,000 modules, which takes seconds."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, args.command, warnings.showwarning)
            check_arguments(subcommand_parser(parser, args.command), args)  # every numeric flag, before any work
            return int(module.run(args) or 0)
    except RanError as error:
        print(f"ran {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ran {args.command}: interrupted", file=sys.stderr)
        if exit_at_once_on_interrupt and args.command in EXIT_AT_ONCE_ON_INTERRUPT:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


def _show_warning(command: str, show, message, category, *args, **kwargs) -> None:
    """ran's own warnings as one line, like its errors; any other warning as Python prints it."""
    if issubclass(category, RanWarning):
        print(f"ran {command}: warning: {message}", file=sys.stderr)
    else:
        show(message, category, *args, **kwargs)


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]


def _version() -> str:
    from ran import __version__

    return __version__


if __name__ == "__main__":
    console()
