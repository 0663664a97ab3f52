"""``coreset-studio evaluate``: what one selection is worth against random subsets and the full set.

Either runs the selector itself (``--method``, ``--fraction``, ...) on the training pool,
or evaluates an existing ``selection.json`` from ``coreset-studio select`` (``--selection``;
it must have been made on the training rows, i.e. a features file with a test split).
Trains the evaluation model on the subset, on random subsets with the same per-class
budgets (one per seed) and on the full pool; scores them on the test split (else a
stratified hold-out, excluded from selection). Writes ``OUT/report.json``,
``OUT/report.html``, ``OUT/results.csv``, ``OUT/scores.csv`` and ``OUT/subset.csv``.

DATA is a features ``.npz`` or a dataset (embedded with ``--models`` and the evaluation
model, cached).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import CoresetError
from ._common import add_selection_arguments
from .run import add_evaluation_arguments, eval_config_from_args, load_or_embed, parse_assignments


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate one selection against random subsets of the same size and the full training set",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="features .npz, or a dataset folder/manifest/.zip/'demo'")
    add_selection_arguments(p, fraction_required=False)
    p.add_argument("--selection", metavar="JSON", default=None,
                   help="evaluate this selection.json (from `coreset-studio select`) instead of selecting")
    p.add_argument("--label-noise", type=float, default=0.0,
                   help="symmetric label-noise rate on the training pool (default 0; not with --selection)")
    add_evaluation_arguments(p)
    p.set_defaults(func=run)
    return p


def _load_selection(path: str):
    from ..selection import SelectionResult

    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        d = {k: v for k, v in d.items() if k != "table"}
        return SelectionResult.from_dict(d)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CoresetError(f"Cannot read the selection file {path}: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    import time

    from ..evaluation import Evaluator
    from ..evaluation.plan import single_cell_report
    from ..export import export_report

    given = None
    if args.selection:
        if args.label_noise:
            raise CoresetError("--label-noise cannot be used with --selection (that selection saw clean labels).")
        given = _load_selection(args.selection)
    elif args.fraction is None:
        raise CoresetError("Give --fraction (with --method) or --selection selection.json.")
    t0 = time.perf_counter()
    fs, models, features_path, embed_s = load_or_embed(args)
    config = eval_config_from_args(args, args.label_noise)
    if given is not None and models is None:
        models = given.models
    ev = Evaluator(fs, config, models, device=args.device)
    with tqdm(desc="evaluating", unit="fit", file=sys.stderr, leave=False) as bar:
        def progress(done: int, total: int, what: str) -> None:
            bar.total = total
            bar.set_postfix_str(what, refresh=False)
            bar.update(done - bar.n)

        if given is not None:
            # selection.json holds no per-sample table: no scores.csv/subset.csv/thumbnails then
            cell = ev.evaluate(given.method, given.fraction, given.budget, given.params, given=given,
                               keep_table=False, progress=progress)
        else:
            params = parse_assignments(args.param, "--param")
            counts = args.budget_counts
            cell = ev.evaluate(args.method, args.fraction, args.budget, params, budget_counts=counts,
                               progress=progress)
    report = single_cell_report(ev, cell, fs, started=t0, features_path=features_path,
                                selection_file=args.selection, embedding_s=embed_s)
    out = Path(args.out)
    export_report(out, report, fs, html=not args.no_html, copy_subset=args.copy_subset, link=args.link)
    print(report.format_table())
    if ev.eval_also_selects:
        print(f"note: the evaluation features {ev.eval_model} were also used for selection.")
    print(f"wrote {out / 'report.json'}" + ("" if args.no_html else f", {out / 'report.html'}"))
    return 0
