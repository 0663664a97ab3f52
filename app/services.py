"""The app's glue over :mod:`core`, with no Streamlit, gathered under one name for the pages.

Each concept has one home, and this module re-exports it:

* :mod:`app.sources`: folder roots, server paths, uploads, the demo;
* :mod:`app.tables`: the display tables (counts, headline, ranking, budgets, overlaps,
  galleries, Explore points, auto's estimates, accuracies, run comparisons);
* :mod:`app.events`: plotly selection events -> row indices;
* :mod:`core.pool`: the selection pool; :mod:`core.selection.edit`: subset edits;
* :mod:`core.workflows`: evaluation and downloads, every file as bytes in memory.

Pages call these and only format the results; everything here is testable without a UI.
"""

from __future__ import annotations

import numpy as np

from core.features import FeatureSet
from core.pool import selection_pool as _selection_pool
from core.selection.edit import apply_edits, edit_subset
from core.workflows import EvaluationOutcome, evaluate_result, evaluation_key, independent_model_hint, subset_zip
from core.workflows import selection_files as subset_csv_bytes

from .events import chosen_rows
from .sources import (
    ROOTS_ENV,
    allowed_roots,
    check_server_path,
    load_demo_dataset,
    load_server_path,
    load_uploaded_manifest,
    load_uploaded_zip,
    save_upload,
)
from .tables import (
    AUTO_ESTIMATE_NOTE,
    Gallery,
    Headline,
    accuracy_frame,
    auto_estimates_frame,
    budget_frame,
    class_count_frame,
    class_paths,
    compare_summary_frame,
    comparison_frame,
    count_text,
    gallery_caption,
    gallery_rows,
    headline,
    headline_difference,
    mislabel_help,
    overlap_by_class,
    overlap_frame,
    point_frame,
    point_score_columns,
    ranking_frame,
    ranking_order,
    ranking_page,
    review_queue,
    saved_runs_frame,
    shared_counts_frame,
    short_name,
    suspected_mislabels,
)


def selection_pool(fs: FeatureSet) -> np.ndarray | None:
    """The rows the app selects from (:func:`core.pool.selection_pool`'s mask)."""
    return _selection_pool(fs)[0]


run_evaluation = evaluate_result  # the pages' name for :func:`core.workflows.evaluate_result`


__all__ = [
    "AUTO_ESTIMATE_NOTE",
    "EvaluationOutcome",
    "Gallery",
    "Headline",
    "ROOTS_ENV",
    "accuracy_frame",
    "allowed_roots",
    "apply_edits",
    "auto_estimates_frame",
    "budget_frame",
    "check_server_path",
    "chosen_rows",
    "class_count_frame",
    "class_paths",
    "comparison_frame",
    "edit_subset",
    "evaluation_key",
    "gallery_caption",
    "gallery_rows",
    "headline",
    "headline_difference",
    "independent_model_hint",
    "load_demo_dataset",
    "load_server_path",
    "load_uploaded_manifest",
    "load_uploaded_zip",
    "mislabel_help",
    "overlap_frame",
    "point_frame",
    "point_score_columns",
    "ranking_frame",
    "review_queue",
    "run_evaluation",
    "save_upload",
    "selection_pool",
    "subset_csv_bytes",
    "subset_zip",
    "suspected_mislabels",
    "compare_summary_frame",
    "count_text",
    "overlap_by_class",
    "ranking_order",
    "ranking_page",
    "saved_runs_frame",
    "shared_counts_frame",
    "short_name",
]
