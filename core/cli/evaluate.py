"""``coreset-studio evaluate``: what one selection is worth against random subsets and the full set.

Either runs the selector itself (``--method``, ``--fraction``, ...) on the training pool,
or evaluates an existing ``selection.json`` from ``coreset-studio select`` (``--selection``).
selection.json holds the kept rows, not the per-sample scores: they are recomputed from the
features with the recorded method, parameters and seed, and used for ``scores.csv`` /
``subset.csv`` only if that gives back exactly the same subset (else those two files are not
written and a note says why). A selection made without a test split may contain rows of the
evaluation hold-out; the method is then run again on the training rows only, with a note.
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
from ..params import parse_assignments
from ..workspace import check_output_dir
from ._common import add_selection_arguments
from .run import add_evaluation_arguments, eval_config_from_args, load_or_embed


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate one selection against random subsets of the same size and the full training set",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", metavar="DATA", help="features .npz, or a dataset folder/manifest/.zip/'demo'")
    add_selection_arguments(p, fraction_required=False)
    p.add_argument(
        "--selection",
        metavar="JSON",
        default=None,
        help="evaluate this selection.json (from `coreset-studio select`) instead of selecting",
    )
    p.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="symmetric label-noise rate on the training pool (default 0; not with --selection)",
    )
    add_evaluation_arguments(p)
    p.set_defaults(func=run)
    return p


def _recompute_table(given, fs, device: str, source=None, curation: dict | None = None):
    """``given`` with its per-sample table, recomputed as ``select`` made it (same pool, near-duplicate
    handling ``curation`` from its selection.json, method, parameters, seed, budget); None when that
    does not give back exactly the same subset."""
    import numpy as np

    from ..curation import curated_selection
    from ..duplicates import DEFAULT_THRESHOLD

    curation = curation or {}
    try:
        again = curated_selection(
            fs,
            given.method,
            given.fraction,
            source=source,
            models=list(given.models),
            budget=given.budget,
            seed=given.seed,
            budget_counts=given.manual_budget_counts(),
            device=device,
            dedup=bool(curation.get("dedup", False)),
            duplicate_threshold=float(curation.get("threshold", DEFAULT_THRESHOLD)),
            **dict(given.params),
        ).result
    except CoresetError:
        return None
    return again if np.array_equal(again.selected, given.selected) else None


#: Entries of selection.json that evaluate --selection needs.
SELECTION_KEYS = ("method", "params", "fraction", "budget", "budget_table", "seed", "models", "selected")
_REWRITE = "write it again with `coreset-studio select FEATURES ... --out DIR`"


def _load_selection(path: str):
    """``(result, duplicates)``: the :class:`SelectionResult` of a ``selection.json`` and its
    ``duplicates`` entry (``{}`` when absent); a :class:`CoresetError` naming the file and what is
    wrong (unreadable, not JSON, a missing or malformed entry) otherwise."""
    from ..selection import SelectionResult

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CoresetError(
            f"Cannot read the selection file {path} ({why}); give the selection.json that "
            "`coreset-studio select` wrote."
        ) from exc
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CoresetError(f"The selection file {path} is not valid JSON ({exc}); {_REWRITE}.") from exc
    if not isinstance(d, dict):
        raise CoresetError(
            f"The selection file {path} holds a JSON {type(d).__name__}, not an object with "
            f"{', '.join(SELECTION_KEYS)}; {_REWRITE}."
        )
    missing = [k for k in SELECTION_KEYS if k not in d]
    if missing:
        names = ", ".join(repr(k) for k in missing)
        raise CoresetError(
            f"The selection file {path} has no {names} entr{'y' if len(missing) == 1 else 'ies'}: it "
            f"is not a complete selection.json from `coreset-studio select` (or it was edited); "
            f"{_REWRITE}."
        )
    curation = d.get("duplicates") if isinstance(d.get("duplicates"), dict) else {}
    d = {k: v for k, v in d.items() if k != "table"}
    try:
        return SelectionResult.from_dict(d), curation
    except KeyError as exc:
        raise CoresetError(
            f"The selection file {path} lacks the {exc.args[0]!r} part of an entry (e.g. "
            f"budget_table needs columns, dtypes and data); {_REWRITE}."
        ) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise CoresetError(
            f"The selection file {path} has a malformed entry ({type(exc).__name__}: {exc}); {_REWRITE}."
        ) from exc


def run(args: argparse.Namespace) -> int:
    import time

    from ..evaluation import Evaluator
    from ..evaluation.plan import single_cell_report
    from ..export import export_report

    given, curation = None, {}
    if args.selection:
        if args.label_noise:
            raise CoresetError("--label-noise cannot be used with --selection (that selection saw clean labels).")
        given, curation = _load_selection(args.selection)
    elif args.fraction is None:
        raise CoresetError("Give --fraction (with --method) or --selection selection.json.")
    check_output_dir(args.out)
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

        notes = []
        if given is not None:
            with_table = _recompute_table(given, fs, args.device, features_path, curation)
            if with_table is None:
                notes.append(
                    "scores.csv and subset.csv were not written: running the recorded method again on "
                    "these features does not give the same subset (other features, or an edited "
                    "selection.json); report.json has the kept rows."
                )
            else:
                given = with_table
            cell, note = ev.evaluate_selection(given, keep_table=with_table is not None, progress=progress)
            notes += [note] if note else []
        else:
            params = parse_assignments(args.param, "--param")
            counts = args.budget_counts
            cell = ev.evaluate(args.method, args.fraction, args.budget, params, budget_counts=counts, progress=progress)
    report = single_cell_report(
        ev, cell, fs, started=t0, features_path=features_path, selection_file=args.selection, embedding_s=embed_s
    )
    out = Path(args.out)
    export_report(out, report, fs, html=not args.no_html, copy_subset=args.copy_subset, link=args.link)
    print(report.format_table())
    for note in notes:
        print(f"note: {note}")
    if ev.eval_also_selects:
        print(f"note: the evaluation features {ev.eval_model} were also used for selection.")
    print(f"wrote {out / 'report.json'}" + ("" if args.no_html else f", {out / 'report.html'}"))
    return 0
