"""Entry point of the ``brlgraph`` command.

Each sub-command lives in its own module exposing ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed namespace, returning
an exit code). User errors (:class:`brlgraph.errors.BRLGraphError`) are printed
as one line on stderr, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from brlgraph import __version__
from brlgraph.errors import BRLGraphError

# Sub-command modules, in the order they appear in ``--help``.
COMMANDS = ("brlgraph.cli.train", "brlgraph.cli.reproduce", "brlgraph.cli.data", "brlgraph.cli.bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brlgraph",
        description="BRL-Attention graph transformers: train, reproduce, benchmark, and manage data.",
    )
    parser.add_argument("--version", action="version", version=f"brlgraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BRLGraphError as err:
        # one line whatever the message quotes (a --set value or a file name may hold a
        # line break): shown as \n, as the user would type it
        message = str(err).replace("\r", "\\r").replace("\n", "\\n")
        print(f"brlgraph: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brlgraph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
