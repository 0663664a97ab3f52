"""``coreset-studio run``: embed (cached), select, evaluate and export a whole plan.

For every label-noise level x method x fraction: select from the training pool, train the
evaluation model on the subset, on random subsets with the same per-class budgets (one
per seed) and on the full pool, and score them on the test set (the dataset's test split,
else a stratified hold-out). Finished cells are cached in ``OUT/cells`` so re-running a
finished plan only reads them. Writes ``OUT/report.json``, ``OUT/report.html``,
``OUT/results.csv`` and ``OUT/selections/<cell>/{scores,subset}.csv`` and prints the
results table.

DATA is a dataset (folder, manifest, .zip, ``demo``) or a features ``.npz`` file.
With a dataset, ``--models`` (default ``effnet-lite0``) select and ``--eval-model``
(default: the first of effnet-lite2, effnet-lite1, effnet-lite0 not among ``--models``)
evaluates; all are embedded (cached). With a features file, ``--models`` defaults to
every model but the evaluation model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import CoresetError
from ..params import parse_assignments
from ._common import add_dataset_arguments, load_dataset_verbose, print_problems, tqdm_model_progress


def add_evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``evaluate`` and ``run``."""
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated models the selectors use (dataset: default effnet-lite0; "
        "features file: default every model but the evaluation model)",
    )
    from ..evaluation.config import EVAL_MODEL_PREFERENCE
    from ..evaluation.probes import TRAINERS, list_trainers

    p.add_argument(
        "--eval",
        default="linear",
        choices=list_trainers(),
        help="evaluation model: " + "; ".join(f"{k}: {c.summary}" for k, c in TRAINERS.items()) + " (default: linear)",
    )
    p.add_argument(
        "--eval-model",
        default=None,
        help="features the linear/mlp evaluator uses (default: the first of "
        f"{', '.join(EVAL_MODEL_PREFERENCE)} not used for selection)",
    )
    p.add_argument(
        "--eval-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="evaluator parameter, repeatable ("
        + "; ".join(f"{k}: {', '.join(c.names())}" for k, c in TRAINERS.items())
        + ")",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="number of seeds (0..N-1) for random baselines and stochastic trainers (default 5, >= 3 advised)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="test fraction of the stratified hold-out used when the data has no test split (default 0.2)",
    )
    p.add_argument("--holdout-seed", type=int, default=0, help="seed of the hold-out (default 0)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the label noise (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    p.add_argument(
        "--weights", action="append", metavar="MODEL=PATH", help="local weights file for a model (repeatable)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    p.add_argument(
        "--copy-subset",
        metavar="DIR",
        default=None,
        help="copy the (primary) selection's kept images into DIR/<class>/ (originals untouched)",
    )
    p.add_argument("--link", action="store_true", help="with --copy-subset: symlink instead of copying")
    add_dataset_arguments(p)


def eval_config_from_args(args: argparse.Namespace, label_noise: float = 0.0):
    from ..evaluation import EvalConfig

    if args.seeds < 1:
        raise CoresetError("--seeds must be at least 1 (3 or more for error bars).")
    return EvalConfig(
        trainer=args.eval,
        trainer_params=parse_assignments(args.eval_param, "--eval-param"),
        eval_model=args.eval_model,
        seeds=tuple(range(args.seeds)),
        holdout=args.holdout,
        holdout_seed=args.holdout_seed,
        label_noise=label_noise,
        noise_seed=args.noise_seed,
    )


def load_or_embed(args: argparse.Namespace):
    """``(feature set, selection models or None, features path or None, embedding seconds)``."""
    from ..embedders import DEFAULT_EMBEDDER
    from ..embedding import embed_dataset, parse_models
    from ..evaluation import default_eval_model
    from ..evaluation.config import EVAL_MODEL_PREFERENCE
    from ..evaluation.probes import trainer_uses_images
    from ..features import load_features
    from .embed import parse_weights

    data = str(args.data)
    if data.lower().endswith(".npz"):
        fs = load_features(data)
        models = parse_models(args.models) if args.models else None
        return fs, models, str(Path(data).resolve()), 0.0
    models = parse_models(args.models or DEFAULT_EMBEDDER)
    wanted = list(models)
    if not trainer_uses_images(args.eval):
        eval_model = args.eval_model or default_eval_model(list(EVAL_MODEL_PREFERENCE), models)
        args.eval_model = eval_model
        if eval_model not in wanted:
            wanted.append(eval_model)
    dataset = load_dataset_verbose(args)
    t0 = time.perf_counter()
    with tqdm_model_progress() as progress:
        run_ = embed_dataset(
            dataset,
            wanted,
            weights=parse_weights(args.weights),
            device=args.device,
            batch_size=args.batch_size,
            workspace=args.workspace,
            progress=progress,
        )
    print_problems(run_.problems, "image(s) could not be embedded")
    for model, s in run_.stats.items():
        print(f"{model}: {s['computed']} computed, {s['cached']} from cache, {s['seconds']:.1f} s", file=sys.stderr)
    return run_.features, models, None, time.perf_counter() - t0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="embed, select, evaluate against random and full, and export a whole plan",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="dataset folder, manifest, .zip, 'demo', or a features .npz")
    p.add_argument(
        "--methods",
        default="auto,random",
        help="comma-separated selectors; METHOD@BUDGET picks a budget strategy for one method, e.g. "
        "ram_apl@difficulty; random (the baseline) is always included (default: auto,random; "
        "auto's row records the method it chose in each cell)",
    )
    p.add_argument(
        "--budget",
        default="paper",
        choices=["paper", "proportional", "uniform", "difficulty"],
        help="budget strategy of methods without @BUDGET (default: paper)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD:NAME=VALUE",
        help="selector parameter, repeatable, e.g. --param ram_apl:a=0.2",
    )
    p.add_argument("--fractions", default="0.1", help="comma-separated fractions in (0, 1] (default: 0.1)")
    p.add_argument(
        "--label-noise",
        default="0",
        help="comma-separated symmetric label-noise rates on the training pool, e.g. 0,0.2 (default 0)",
    )
    add_evaluation_arguments(p)
    p.set_defaults(func=run)
    return p


def parse_method_params(items: list[str]) -> dict[str, dict[str, str]]:
    """``["ram_apl:a=0.2"]`` -> ``{"ram_apl": {"a": "0.2"}}`` (:func:`core.params.parse_assignments`)."""
    return parse_assignments(items, "--param", form="METHOD:NAME=VALUE", hint=", e.g. ram_apl:a=0.2", scope=":")


def parse_noise_levels(text: str) -> list[float]:
    levels = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        try:
            v = float(item)
        except ValueError:
            raise CoresetError(f"--label-noise {item!r} is not a number.") from None
        if not (0.0 <= v < 1.0):
            raise CoresetError(f"--label-noise must be in [0, 1), got {v}.")
        if v not in levels:
            levels.append(v)
    return levels or [0.0]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation import parse_fractions, parse_methods, run_plan
    from ..export import export_report

    specs = parse_methods(args.methods, args.budget, parse_method_params(args.param))
    fractions = parse_fractions(args.fractions)
    levels = parse_noise_levels(args.label_noise)
    config = eval_config_from_args(args, levels[0])  # validates before any embedding
    from ..workspace import check_output_dir

    check_output_dir(args.out)
    fs, models, features_path, embed_s = load_or_embed(args)
    config = eval_config_from_args(args, levels[0])
    out = Path(args.out)
    total = len(levels) * len(fractions) * (len(specs) + (0 if any(s.label == "random" for s in specs) else 1))
    with tqdm(total=total, desc="plan", unit="cell", file=sys.stderr) as bar:

        def progress(done: int, total_: int, what: str) -> None:
            bar.total = total_
            bar.n = done
            bar.set_postfix_str(what, refresh=False)
            bar.refresh()

        report = run_plan(
            fs,
            specs,
            fractions,
            config,
            noise_levels=levels,
            selection_models=models,
            cache_dir=out / "cells",
            device=args.device,
            progress=progress,
            kind="run",
            features_path=features_path,
            extra_timing={"embedding": embed_s},
        )
    export_report(out, report, fs, html=not args.no_html, copy_subset=args.copy_subset, link=args.link)
    print(report.format_table())
    for cell in report.cells:
        if not any(cell.method_result.n_train):
            print(
                f"note: {cell.label} keeps 0 images at fraction {cell.fraction:g}: its row is the accuracy of no "
                "training at all; raise the fraction."
            )
    st = report.stats
    print(
        f"\n{st['cells_computed']} cell(s) computed, {st['cells_cached']} from cache, {st['fits']} fit(s); "
        f"selection: {', '.join(report.features['selection_models'])}; evaluation: {args.eval} on "
        f"{report.features['eval_model'] or 'images'}; wrote {out / 'report.json'}"
        + ("" if args.no_html else f", {out / 'report.html'}")
    )
    return 0
