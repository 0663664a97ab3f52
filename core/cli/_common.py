"""Pieces several CLI commands share: dataset arguments, progress bars, problem printing."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from tqdm import tqdm

from ..datasets import DEFAULT_MAX_BYTES, Dataset, Problem, load_dataset

MAX_PROBLEMS_SHOWN = 20


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread so the run unwinds (and keeps its work) as on Ctrl-C.

    A subclass of ``KeyboardInterrupt``, so everything that cleans up on Ctrl-C (the
    extraction engine writes its finished rows to the cache) does so here too; the command
    line exits with status 143 (128 + SIGTERM).
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (once; repeats are ignored while unwinding).

    Only in the main thread (signal handlers cannot be set elsewhere); the previous handler
    comes back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        raise Terminated(f"terminated by signal {signum} (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        default=None,
        help="cache and scratch folder (default: $CORESET_STUDIO_HOME or the user cache dir)",
    )
    p.add_argument(
        "--max-archive-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="refuse zip archives that unpack to more than this many bytes (default 4 GiB)",
    )


def add_selection_arguments(p: argparse.ArgumentParser, *, fraction_required: bool) -> None:
    """--method, --fraction, --budget, --budget-counts and --param, as select and evaluate take them."""
    from ..selection import BUDGET_STRATEGIES, list_selectors

    p.add_argument(
        "--method",
        default="auto",
        choices=list_selectors(),
        help="selector (default: auto, which picks the method for this pool and fraction by k-fold "
        "inside the pool against random subsets)",
    )
    p.add_argument(
        "--fraction",
        type=float,
        required=fraction_required,
        default=None,
        help="fraction p in (0, 1] of each class's pool to keep",
    )
    p.add_argument(
        "--budget", default="paper", choices=BUDGET_STRATEGIES, help="class budget strategy (default: paper)"
    )
    p.add_argument("--budget-counts", metavar="CSV", help="class,count CSV for --budget manual")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="selector parameter, repeatable, e.g. --param a=0.2 --param normalize=l2",
    )


@contextlib.contextmanager
def progress_bar(desc: str, unit: str) -> Iterator:
    """A tqdm bar on stderr (rate and ETA) as a ``progress(done, total, what)`` callback."""
    with tqdm(desc=desc, unit=unit, file=sys.stderr, leave=False) as bar:

        def progress(done: int, total: int, what: str = "") -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            if what:
                bar.set_postfix_str(what, refresh=False)
            bar.update(done - bar.n)

        yield progress


def print_problems(problems: list[Problem], what: str) -> None:
    """Print up to MAX_PROBLEMS_SHOWN problem rows to stderr, then a count of the rest."""
    if not problems:
        return
    print(f"{len(problems)} {what}:", file=sys.stderr)
    for p in problems[:MAX_PROBLEMS_SHOWN]:
        print(f"  [{p.severity}] {p.location}: {p.reason}", file=sys.stderr)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more", file=sys.stderr)


def load_dataset_verbose(args: argparse.Namespace) -> Dataset:
    """Load ``args.data`` with a progress bar; print its summary and problem report."""
    with tqdm(desc="checking images", unit="img", file=sys.stderr, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        dataset = load_dataset(
            args.data, workspace=args.workspace, max_archive_bytes=args.max_archive_bytes, progress=progress
        )
    print(dataset.summary(), file=sys.stderr)
    print_problems(dataset.problems, "dataset problem(s)")
    return dataset


@contextlib.contextmanager
def tqdm_model_progress() -> Iterator:
    """A ``progress(model, done, total)`` callback drawing one tqdm bar per model."""
    bars: dict[str, tqdm] = {}

    def progress(model: str, done: int, total: int) -> None:
        bar = bars.get(model)
        if bar is None:
            bar = bars[model] = tqdm(total=total, desc=f"embedding {model}", unit="img", file=sys.stderr)
        bar.update(done - bar.n)  # update() honours tqdm's refresh interval

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()
