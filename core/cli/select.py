"""``coreset-studio select``: score and select a subset from a features file.

Writes into ``--out DIR``:

* ``scores.csv``: one row per pool sample: index (row of the features file), path (empty
  when unknown), label, every score the method computed, the label issues
  (``suspected_mislabel``, ``suggested_class``, ``label_confidence``, ``label_agreement``),
  the near-duplicate group (``duplicate_group``, -1 for none; ``duplicate_of``, the row of
  the group's representative, -1 for none or itself), selected, order (-1 if not kept);
* ``subset.csv``: ``path,label`` and the scores of the kept rows, in selection order;
* ``duplicates.csv``: every row of the features file in a near-duplicate group
  (:func:`core.duplicates.duplicates_frame`), the representative of each group first;
* ``selection.json``: provenance: the features file (path, meta, rows, pool), method,
  parameters, fraction, budget strategy and table, seed, selected rows, versions, timing,
  ``details`` (``auto``: the method it picked, every candidate's pool estimate, the sample
  it was estimated on), ``duplicates`` (threshold, counts, ``dedup``, groups that span the
  pool and the other rows) and ``neighbors`` (how each model's neighbour graph was built).

The neighbour graphs (:mod:`core.neighbors`) are built once per features file and kept
beside it (``<store>/neighbors/`` or ``<name>.neighbors/`` next to an ``.npz``; the workspace
when that folder cannot be written), so later runs on the same features reuse them.

Text cells starting with ``= + - @`` are prefixed with ``'`` (CSV formula injection).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..curation import curated_selection
from ..duplicates import DEFAULT_THRESHOLD, RADIUS_RANK, duplicates_frame
from ..errors import SelectionInputError
from ..export.tables import write_csv, write_selection_csvs
from ..features import load_features
from ..params import parse_assignments
from ..pool import selection_pool  # noqa: F401  (the pool rule, core.pool; also importable from here)
from ..selection import get_selector, list_selectors
from ..workspace import atomic_write_text, check_output_dir, make_output_dir
from ._common import add_selection_arguments, progress_bar


def _methods_epilog() -> str:
    lines = ["methods and their --param names (default):"]
    for name in list_selectors():
        spec = get_selector(name)
        params = ", ".join(f"{i.name}={i.default!r}" for i in spec.params_cls.describe()) or "(none)"
        lines.append(f"  {name:18s} {spec.summary}")
        lines.append(f"  {'':18s} params: {params}")
    lines += [
        "",
        "budgets: paper = round-half-even(p*N_c) per class; proportional / uniform / difficulty (NUCS)",
        "keep round(p*N) in total; manual reads --budget-counts CSV (class,count).",
        "",
        "pool: if FEATURES has a 'split' array, only its 'train' rows are selected from (a split array",
        "without 'train' rows is refused, exit status 2); otherwise all rows. Indices in the outputs are",
        "rows of FEATURES.",
    ]
    return "\n".join(lines)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "select",
        help="score the samples of a features file and keep a fraction of each class",
        description="Score the samples of a features file (from `coreset-studio embed`, or any npz with "
        "feat_<model> arrays and labels) and keep a fraction of each class.",
        epilog=_methods_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "features", metavar="FEATURES", help="features .npz (feat_<model> arrays, labels, optional paths/split/meta)"
    )
    add_selection_arguments(p, fraction_required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    p.add_argument("--models", help="comma-separated models to use (default: all feat_* arrays)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N, mps")
    p.add_argument(
        "--dedup",
        action="store_true",
        help="keep one image per near-duplicate group (its representative) in the pool before selecting",
    )
    p.add_argument(
        "--duplicate-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="T",
        help="relative similarity in every model at or above which two images are near-duplicates: their "
        f"cosine distance is at most 1 - T times the larger of their distances to their {RADIUS_RANK}th nearest "
        "image (and at least half the median such distance) (0..1, 1: identical only; default: "
        f"{DEFAULT_THRESHOLD}; README 'Near-duplicates')",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.set_defaults(func=run)
    return p


def parse_params(items: list[str], method: str) -> dict[str, Any]:
    """``["a=0.2", "k=1"]`` -> ``{"a": "0.2", "k": "1"}`` (values are parsed by the params class)."""
    allowed = ", ".join(get_selector(method).params_cls.names()) or "(none)"
    return parse_assignments(items, "--param", hint=f"; parameters of {method}: {allowed}", error=SelectionInputError)


def provenance_json(d: dict) -> str:
    """JSON with one top-level key per line and compact values (long index lists stay one line)."""
    items = [f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False, default=str)}" for k, v in d.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def write_selection_outputs(
    out: str | Path, result, fs, *, features_path: str | Path | None, pool_desc: str, extra: dict | None = None
) -> list[Path]:
    """Write ``scores.csv``, ``subset.csv`` and ``selection.json`` into ``out`` (atomically).

    ``fs`` is the feature set the selection ran on (for paths and provenance); ``extra``
    is merged into ``selection.json``. Returns the paths written.
    """
    out = make_output_dir(out)
    scores_path, subset_path = write_selection_csvs(out, result.table, result.selected, fs)
    provenance = {
        "features": {
            "path": str(Path(features_path).resolve()) if features_path else None,
            "meta": fs.meta,
            "n_rows": len(fs),
            "models_available": fs.models,
            "pool": pool_desc,
            "n_pool": int(len(result.table)),
        },
        **result.to_dict(include_table=False),
        "outputs": {"scores": "scores.csv", "subset": "subset.csv"},
        **(extra or {}),
    }
    atomic_write_text(out / "selection.json", provenance_json(provenance))
    return [scores_path, subset_path, out / "selection.json"]


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.param, args.method)
    get_selector(args.method).make_params(params)  # bad values are reported before any progress bar
    if not 0.0 <= args.duplicate_threshold <= 1.0:
        raise SelectionInputError(
            f"--duplicate-threshold is a relative similarity in [0, 1] (1: identical only), got {args.duplicate_threshold}."
        )
    check_output_dir(args.out)
    fs = load_features(args.features)
    with (
        progress_bar("neighbour graphs", "row") as graph_progress,
        progress_bar("auto: trying candidates" if args.method == "auto" else "selecting", "fit") as progress,
    ):
        try:
            made = curated_selection(
                fs,
                args.method,
                args.fraction,
                source=args.features,
                models=args.models,
                budget=args.budget,
                seed=args.seed,
                budget_counts=args.budget_counts,
                device=args.device,
                dedup=args.dedup,
                duplicate_threshold=args.duplicate_threshold,
                graph_progress=graph_progress,
                progress=progress,
                **params,
            )
        except SelectionInputError as exc:
            if str(exc).startswith("Features of model"):  # NaN, overflow: name the file they came from
                raise SelectionInputError(f"Features file {args.features}: {exc}") from exc
            raise
    result, groups = made.result, made.groups
    if args.method == "auto":
        from ..selection.auto import below_random, describe_choice

        print(describe_choice(result.details, result.fraction))
        if below_random(result.details, result.details.get("chosen", "")):
            print("warning: the pool estimate puts the chosen method below random subsets.", file=sys.stderr)
    written = write_selection_outputs(
        args.out,
        result,
        fs,
        features_path=args.features,
        pool_desc=made.pool_desc,
        extra={
            "budget_counts": str(args.budget_counts) if args.budget_counts else None,
            "duplicates": made.duplicates,
            "neighbors": made.neighbors,
        },
    )
    frame = duplicates_frame(groups, fs.labels, fs.paths, fs.split)
    written.append(write_csv(Path(args.out) / "duplicates.csv", frame))
    for note in made.notes:
        print(f"note: {note}", file=sys.stderr)
    if made.duplicates["groups_across_pool"]:
        print(
            f"warning: {made.duplicates['groups_across_pool']} near-duplicate group(s) have images both in the pool and outside "
            "it (e.g. a training image copied into the test split); see duplicates.csv.",
            file=sys.stderr,
        )
    n_flag = int(result.table["suspected_mislabel"].sum()) if "suspected_mislabel" in result.table else 0
    print(
        f"{args.method}: kept {result.n_selected} of {len(result.table)} samples ({made.pool_desc}) "
        f"in {result.timing_s['total']:.2f} s; {n_flag} suspected mislabel(s) flagged in scores.csv; "
        f"{groups.n_groups} near-duplicate group(s) ({groups.n_duplicates} image(s) beyond one per group) "
        f"in duplicates.csv; wrote {', '.join(str(w) for w in written)}"
    )
    return 0
