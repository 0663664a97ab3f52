"""The ``coreset-studio`` command line.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers the command and sets ``func`` (called with
the parsed namespace, returns the exit status). User errors (:class:`CoresetError`) are
printed as one message without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import CoresetError

# Sub-command modules, in the order `--help` lists them.
COMMAND_MODULES = ("check", "models", "embed", "select", "evaluate", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coreset-studio",
        description="Pick the small part of an image dataset worth training on.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CoresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
