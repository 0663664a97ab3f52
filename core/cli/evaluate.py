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
from pathlib import Path

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
    from ..evaluation import Evaluator
    from ..evaluation.plan import dataset_info
    from ..evaluation.report import EvaluationReport
    from ..export import export_report
    from ..provenance import machine_description, package_versions

    import datetime as dt
    import time

    given = None
    if args.selection:
        if args.label_noise:
            raise CoresetError("--label-noise cannot be used with --selection (that selection saw clean labels).")
        given = _load_selection(args.selection)
    elif args.fraction is None:
        raise CoresetError("Give --fraction (with --method) or --selection selection.json.")
    config = eval_config_from_args(args, args.label_noise)
    t0 = time.perf_counter()
    fs, models, features_path, embed_s = load_or_embed(args)
    config = eval_config_from_args(args, args.label_noise)
    if given is not None and models is None:
        models = given.models
    ev = Evaluator(fs, config, models, device=args.device)
    if given is not None:
        # selection.json holds no per-sample table: no scores.csv/subset.csv/thumbnails then
        cell = ev.evaluate(given.method, given.fraction, given.budget, given.params, given=given, keep_table=False)
    else:
        params = parse_assignments(args.param, "--param")
        counts = args.budget_counts
        cell = ev.evaluate(args.method, args.fraction, args.budget, params, budget_counts=counts)
    desc = ev.describe()
    protocol = {k: v for k, v in desc.items() if k not in ("noise", "selection_models", "eval_model", "eval_also_selects")}
    protocol["noise"] = [desc["noise"]]
    from ..evaluation.protocol import features_digest

    used = list(dict.fromkeys(ev.selection_models + ([ev.eval_model] if ev.eval_model else [])))
    report = EvaluationReport(
        kind="evaluate", created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        dataset=dataset_info(fs),
        features={"path": features_path, "digest": features_digest(fs, used), "available": fs.models,
                  "models": fs.meta.get("models", {}) if isinstance(fs.meta, dict) else {},
                  "selection_models": ev.selection_models, "eval_model": ev.eval_model,
                  "eval_also_selects": ev.eval_also_selects},
        protocol=protocol, config=config.to_dict(),
        plan={"methods": [cell.label], "method_params": {cell.label: cell.params}, "fractions": [cell.fraction],
              "noise_levels": [config.label_noise], "selection_file": args.selection},
        cells=[cell], versions=package_versions(), machine=machine_description(),
        timing_s={"total": time.perf_counter() - t0, "embedding": embed_s, "select": cell.timing_s.get("select", 0.0),
                  "train": cell.timing_s.get("train", 0.0)},
        stats={"cells_computed": 1, "cells_cached": 0, "fits": ev.fits},
    )
    out = Path(args.out)
    export_report(out, report, fs, html=not args.no_html, copy_subset=args.copy_subset, link=args.link)
    print(report.format_table())
    if ev.eval_also_selects:
        print(f"note: the evaluation features {ev.eval_model} were also used for selection.")
    print(f"wrote {out / 'report.json'}" + ("" if args.no_html else f", {out / 'report.html'}"))
    return 0
