"""The ``ran`` command line: one module per subcommand, registered by name.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. A user-facing error
(:class:`ran.errors.RanError`) becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ran.errors import RanError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ran", description="Reservoir Attention Network")
    parser.add_argument("--version", action="version", version=f"ran {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    epilog=getattr(module, "EPILOG", None))  # e.g. how long the defaults take
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except RanError as error:
        print(f"ran {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ran {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from ran import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
