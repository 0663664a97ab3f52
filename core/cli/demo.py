"""``coreset-studio demo``: the whole headless pipeline on the built-in demo dataset.

Loads the Fashion-MNIST demo (10 classes x 100 train + 20 test images), embeds it with an
offline model (cached after the first run), selects a fraction of the training split and
writes ``features.npz``, ``scores.csv``, ``subset.csv`` and ``selection.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import print_problems, tqdm_model_progress


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run load -> embed -> select on the built-in demo dataset",
        description="Run the headless pipeline on the built-in Fashion-MNIST demo and write its outputs.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    from ..embedders.registry import DEFAULT_EMBEDDER

    p.add_argument("--models", default=DEFAULT_EMBEDDER, help=f"embedders (default: {DEFAULT_EMBEDDER}, offline)")
    p.add_argument("--method", default="auto", help="selector (default: auto)")
    p.add_argument("--fraction", type=float, default=0.1, help="fraction of each class to keep (default: 0.1)")
    p.add_argument("--budget", default="paper", help="class budget strategy (default: paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workspace", default=None, help="cache folder (default: $CORESET_STUDIO_HOME or user cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..datasets import load_demo
    from ..embedding import embed_dataset
    from ..features import save_features
    from ..pool import selection_pool
    from ..selection import run_selection
    from .select import write_selection_outputs

    out = Path(args.out)
    dataset = load_demo()
    print(dataset.summary(), file=sys.stderr)
    with tqdm_model_progress() as progress:
        embedded = embed_dataset(dataset, args.models, device=args.device, workspace=args.workspace, progress=progress)
    print_problems(embedded.problems, "image(s) could not be embedded")
    fs = embedded.features
    features_path = save_features(out / "features.npz", fs)
    pool, pool_desc = selection_pool(fs)
    result = run_selection(
        args.method,
        fs.features,
        fs.labels,
        args.fraction,
        budget=args.budget,
        seed=args.seed,
        pool=pool,
        device=args.device,
        label_issues=True,
    )
    if args.method == "auto":
        from ..selection.auto import describe_choice

        print(describe_choice(result.details, result.fraction))
    written = write_selection_outputs(out, result, fs, features_path=features_path, pool_desc=pool_desc)
    print(result.budget_table[["class", "size", "budget", "kept"]].to_string(index=False))
    print(
        f"{args.method} kept {result.n_selected} of {len(result.table)} training images "
        f"({args.fraction:.0%} per class, budget {args.budget})."
    )
    for path in [features_path, *written]:
        print(f"wrote {path}")
    return 0
