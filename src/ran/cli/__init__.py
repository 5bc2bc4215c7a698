"""The ``ran`` command line: one module per subcommand, registered by name.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; an entry
``"module:NAME"`` is the command that module's ``command(NAME)`` makes (``ran gate`` is ``ran probe gate``).
A user-facing error (:class:`ran.errors.RanError`) becomes one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import warnings
from functools import partial
from pathlib import Path

from ran.cli.validate import check_arguments
from ran.errors import ConfigError, RanError, RanWarning

# name -> (module, or "module:NAME", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "check": ("ran.cli.check", "wrap a model and check non-destruction, state, and cached generation"),
    "chat": ("ran.cli.chat", "an always-alive chat session: streams replies, idle ticks, resumes by name"),
    "run": ("ran.cli.run", "drive a session from a script of inputs and idle ticks; writes a JSON transcript"),
    "serve": ("ran.cli.serve", "the chat session as a local web page: streamed replies, live plots of the state"),
    "probe": ("ran.cli.probe", "probes of the reservoir itself beside their stateless control: ran probe NAME, "
                               "NAME one of sweep, memory, gate, monitor"),
    # The probes under the names they had before `ran probe NAME`.
    "sweep": ("ran.cli.probe:sweep", "= ran probe sweep: the reservoir's regime, echo-state boundary, scaling band"),
    "memory": ("ran.cli.probe:memory", "= ran probe memory: delay-memory capacity of the state vs stateless"),
    "gate": ("ran.cli.probe:gate", "= ran probe gate: 'unresolved thread' silence gate, state vs current input"),
    "monitor": ("ran.cli.probe:monitor", "= ran probe monitor: clock probe, drift, STOP interruptibility"),
    "crosspass": ("ran.cli.crosspass", "train and measure cross-pass recall, carried state vs wiped control"),
    "remember": ("ran.cli.remember", "train the one-memory recipe: any value, in your own words, across many turns"),
    "eval": ("ran.cli.eval", "score a saved crosspass or remember artifact again, carried vs wiped"),
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
        module = command_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    epilog=getattr(module, "EPILOG", None))  # e.g. how long the defaults take
        module.add_arguments(sub)
    return parser


def command_module(spec: str):
    """The module of a subcommand, or for ``"module:NAME"`` the command that module makes for NAME."""
    module_name, _, name = spec.partition(":")
    module = importlib.import_module(module_name)
    return module.command(name) if name else module


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
    argv = sys.argv[1:] if argv is None else argv
    try:
        argv = expand_argument_files(argv)
    except ConfigError as error:
        print(f"ran: error: {error}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    module = command_module(SUBCOMMANDS[args.command][0])
    command, chosen = chosen_parser(parser, args)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, command, warnings.showwarning)
            check_arguments(chosen, args)  # every numeric flag, before any work
            return int(module.run(args) or 0)
    except RanError as error:
        print(f"ran {command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ran {args.command}: interrupted", file=sys.stderr)
        if exit_at_once_on_interrupt and args.command in EXIT_AT_ONCE_ON_INTERRUPT:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


ARGUMENT_FILE_BYTES = 1 << 20  # an arguments file is a recipe of flags, not data


def expand_argument_files(argv: list[str]) -> list[str]:
    """Each ``@FILE`` in ``argv`` replaced by the arguments in FILE: split as a shell splits a line (quotes keep a
    value with spaces together), ``#`` to the end of a line a comment. Flags after it override the file's
    (``--set`` items add to them, the last value of a field wins), so ``ran battery @RECIPE --seeds 1`` reruns a
    recipe with another seed. Files are not nested: an ``@`` inside a file is an ordinary argument."""
    from ran.fileio import read_small_text

    expanded: list[str] = []
    for argument in argv:
        if not argument.startswith("@") or argument == "@":
            expanded.append(argument)
            continue
        path = Path(argument[1:])
        text = read_small_text(path, "arguments file", ARGUMENT_FILE_BYTES, "a text file of flags, e.g. "
                               "docs/recipes/battery-mix-keep.args", "arguments file")
        for number, line in enumerate(text.splitlines(), 1):
            try:
                expanded += shlex.split(line, comments=True)
            except ValueError as error:  # an unclosed quote
                raise ConfigError(f"arguments file {path} line {number}: {error} in {line.strip()!r}; close the "
                                  "quote on the same line") from None
    return expanded


def _show_warning(command: str, show, message, category, *args, **kwargs) -> None:
    """ran's own warnings as one line, like its errors; any other warning as Python prints it."""
    if issubclass(category, RanWarning):
        print(f"ran {command}: warning: {message}", file=sys.stderr)
    else:
        show(message, category, *args, **kwargs)


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, argparse.ArgumentParser]:
    """(the command's words, e.g. "probe memory", and its parser) of what ``args`` chose, nested ones too."""
    words: list[str] = []
    while True:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or getattr(args, subparsers[0].dest, None) not in subparsers[0].choices:
            return " ".join(words), parser
        words.append(getattr(args, subparsers[0].dest))
        parser = subparsers[0].choices[words[-1]]


def leaf_parsers(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its words ("crosspass", "probe memory", ...), nested commands included."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return {" ".join(words): parser}
    return {key: leaf for name, sub in subparsers[0].choices.items()
            for key, leaf in leaf_parsers(sub, (*words, name)).items()}


def _version() -> str:
    from ran import __version__

    return __version__


if __name__ == "__main__":
    console()
