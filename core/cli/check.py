"""``coreset-studio check``: load a dataset and print (or write) its problem report."""

from __future__ import annotations

import argparse

from ..export.tables import write_csv
from ._common import add_dataset_arguments, load_dataset_verbose


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check", help="load a dataset and report every problem",
        description="Load DATA and print its summary, images per class and split, and the problem report "
                    "(file or manifest line, kind, reason). Nothing is written unless --report is given.")
    p.add_argument("data", metavar="DATA", help="dataset folder, manifest (.csv/.parquet), .zip, or 'demo'")
    p.add_argument("--report", metavar="CSV", help="also write the problem report to this CSV file")
    add_dataset_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_dataset_verbose(args)
    print(dataset.class_counts().to_string())
    print(f"fingerprint: {dataset.fingerprint}")
    if args.report:
        write_csv(args.report, dataset.problems_frame())
        print(f"wrote {args.report} ({len(dataset.problems)} problem rows)")
    return 0
