"""``coreset-studio check``: load a dataset and print (or write) its problem report."""

from __future__ import annotations

import argparse
import sys

from ..datasets import SKIPPED
from ..export.tables import write_csv
from ._common import add_dataset_arguments, load_dataset_verbose


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="load a dataset and report every problem",
        description="Load DATA and print its summary, images per class and split, and the problem report "
        "(file or manifest line, kind, reason). Nothing is written unless --report is given. "
        "Exit status: 0 when the dataset loads (problems or not), 1 with --strict when anything "
        "was skipped, 2 when it cannot be loaded.",
    )
    p.add_argument("data", metavar="DATA", help="dataset folder, manifest (.csv/.parquet), .zip, or 'demo'")
    p.add_argument("--report", metavar="CSV", help="also write the problem report to this CSV file")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any file or row was skipped (a problem of severity 'skipped'); "
        "warnings alone still exit 0. For scripts and CI",
    )
    add_dataset_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_verbose(args)
    print(dataset.class_counts().to_string())
    print(f"fingerprint: {dataset.fingerprint}")
    if args.report:
        write_csv(args.report, dataset.problems_frame())
        print(f"wrote {args.report} ({len(dataset.problems)} problem rows)")
    skipped = sum(p.severity == SKIPPED for p in dataset.problems)
    if args.strict and skipped:
        print(
            f"--strict: {skipped} file(s) or row(s) of {args.data} were skipped (see the problem report "
            "above); fix or remove them, or run without --strict to accept them. Exit status 1.",
            file=sys.stderr,
        )
        return 1
    return 0
