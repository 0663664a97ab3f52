"""Workflows above :mod:`core.evaluation` and :mod:`core.export`: what the app (and any
caller) does end to end, with every file returned as bytes in memory (nothing is written).

* :func:`selection_files`: ``scores.csv`` and ``subset.csv`` of a selection, as
  ``coreset-studio select`` writes them; :func:`subset_zip` the kept images as a zip.
* :func:`evaluate_result`: evaluate a selection (subset vs random subsets of the same
  per-class size vs the full pool) and make ``report.json``, ``report.html``,
  ``scores.csv``, ``subset.csv``, as ``coreset-studio evaluate`` writes them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .features import FeatureSet
from .selection.result import SelectionResult

#: The files :func:`evaluate_result` returns.
EVALUATION_FILES = ("report.json", "report.html", "subset.csv", "scores.csv")


def selection_files(result: SelectionResult, fs: FeatureSet) -> tuple[bytes, bytes]:
    """``(scores.csv, subset.csv)`` bytes, exactly as ``coreset-studio select`` writes them."""
    from .export.tables import csv_text, scores_frame, subset_frame

    scores = scores_frame(result.table, fs)
    return (csv_text(scores).encode("utf-8"), csv_text(subset_frame(scores, result.selected)).encode("utf-8"))


def subset_zip(result: SelectionResult, fs: FeatureSet, subset_csv: bytes) -> bytes:
    """The kept images in a folder per class with ``manifest.csv`` (loadable as a dataset) and
    ``subset_csv`` (the ``subset.csv`` of :func:`selection_files`), as one zip
    (:func:`core.export.subset_zip_bytes`)."""
    from .export import subset_zip_bytes

    if fs.paths is None:
        from .errors import CoresetError

        raise CoresetError("These features have no image paths, so there are no images to put in a zip.")
    sel = np.asarray(result.selected, dtype=np.int64)
    return subset_zip_bytes(
        fs.paths[sel].tolist(), np.asarray(fs.labels)[sel].astype(str).tolist(), extra={"subset.csv": subset_csv}
    )


@dataclass
class EvaluationOutcome:
    """What :func:`evaluate_result` returns.

    Attributes:
        report: the :class:`~core.evaluation.EvaluationReport` (one cell).
        files: ``report.json``, ``report.html``, ``subset.csv``, ``scores.csv`` as bytes.
        note: what the reader should know (re-run on the training rows, evaluation features also selected).
    """

    report: Any
    files: dict[str, bytes] = field(default_factory=dict)
    note: str = ""


def evaluation_key(embedding_key: str, result: SelectionResult, seeds: int, trainer: str, eval_model: str) -> str:
    """A 20-hex-digit key of one evaluation: SHA-256 of the embeddings' key, the selection
    (method, budget, fraction, parameters, kept rows) and the evaluation set-up."""
    h = hashlib.sha256()
    h.update(
        f"{embedding_key}|{result.method}|{result.budget}|{result.fraction}|{sorted(result.params.items())}|"
        f"{seeds}|{trainer}|{eval_model}|".encode()
    )
    h.update(np.asarray(result.selected, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def independent_model_hint(selection_models: Sequence[str]) -> str:
    """An offline embedder not used for selection, to suggest for an independent evaluation."""
    from .evaluation.config import EVAL_MODEL_PREFERENCE

    used = set(selection_models)
    return next((m for m in EVAL_MODEL_PREFERENCE if m not in used), "another model")


def evaluate_result(
    fs: FeatureSet,
    result: SelectionResult,
    *,
    seeds: int = 5,
    trainer: str = "linear",
    eval_model: str | None = None,
    device: str = "auto",
    edited: bool = False,
    step: Callable[[float, str], None] | None = None,
) -> EvaluationOutcome:
    """Evaluate ``result`` (seeds ``0 .. seeds-1``, the ``trainer`` on ``eval_model``'s features)
    and make its files in memory, as ``coreset-studio evaluate`` writes them.

    ``edited``: ``result`` carries hand edits (said in the note when the method has to be run
    again). ``step(fraction_done, message)`` reports progress, fraction in [0, 1].
    """
    from .evaluation import EvalConfig, Evaluator
    from .evaluation.plan import single_cell_report
    from .export import report_files

    step = step or (lambda f, m: None)
    t0 = time.perf_counter()
    step(0.05, "preparing the split and the evaluation features")
    config = EvalConfig(trainer=trainer, eval_model=eval_model, seeds=tuple(range(int(seeds))))
    ev = Evaluator(fs, config, list(result.models), device=device)
    step(0.1, "choosing the random subsets")

    def trained(done: int, total: int, what: str) -> None:
        step(0.15 + 0.7 * done / max(total, 1), f"{what} ({done}/{total} trainings)")

    cell, note = ev.evaluate_selection(result, progress=trained)
    if note and edited:
        note += " Your hand edits are not part of this evaluation."
    step(0.85, "making report.json, report.html and the CSV files")
    report = single_cell_report(ev, cell, fs, started=t0)
    files = {name: data for name, data in report_files(report, fs).items() if name in EVALUATION_FILES}
    step(1.0, "done")
    if ev.eval_also_selects and not note:
        note = (
            f"The evaluation features ({ev.eval_model}) were also used for selection; embed another model "
            f"(e.g. {independent_model_hint(result.models)}) on the Models page and evaluate on it for an "
            "independent evaluation."
        )
    return EvaluationOutcome(report=report, files=files, note=note)


__all__ = [
    "EVALUATION_FILES",
    "EvaluationOutcome",
    "evaluate_result",
    "evaluation_key",
    "independent_model_hint",
    "selection_files",
    "subset_zip",
]
