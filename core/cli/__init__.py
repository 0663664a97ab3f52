"""The ``coreset-studio`` command line.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers the command and sets ``func`` (called with
the parsed namespace, returns the exit status). User errors (:class:`CoresetError`) are
printed as one message without a traceback, exit status 2. Ctrl-C (SIGINT) exits with
status 130 and SIGTERM with 143, both after the command has kept what it finished (SIGTERM
is turned into :class:`~core.cli._common.Terminated`, a ``KeyboardInterrupt``). Warnings of
the library (:mod:`core` warning classes) are printed as ``warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .. import __version__
from ..errors import CoresetError
from ._common import Terminated, sigterm_raises

# Sub-command modules, in the order `--help` lists them.
COMMAND_MODULES = ("check", "models", "embed", "select", "evaluate", "run", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coreset-studio", description="Pick the small part of an image dataset worth training on."
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
        with sigterm_raises(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except CoresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one ``warning: ...`` line (above any progress bar); others as Python prints them."""
    if category.__module__.split(".")[0] == "core":
        from tqdm import tqdm

        tqdm.write(f"warning: {message}", file=sys.stderr if file is None else file)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
