"""The selection pool: which rows of a feature set a selector may choose from (the one home of this rule).

* ``coreset-studio select`` and the app (:func:`selection_pool`): the rows whose split is
  ``train`` when the feature set has a split array, else every row. A split array without a
  single ``train`` row is refused (selecting from test rows instead would be silent and wrong).
* The evaluation (:func:`evaluation_candidates`, used by
  :func:`core.evaluation.split.make_split`): the same ``train`` rows; a dataset with a
  ``test`` split is scored on it, one without gets a hold-out of these candidates. When no
  row is ``train`` and none is ``test`` (e.g. every row ``val``), every row is a candidate
  (the evaluation then holds out its own test rows, so nothing is scored on what it selected).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import SelectionInputError

#: The split value of the rows a selector chooses from.
TRAIN = "train"


def train_mask(split: Any) -> np.ndarray | None:
    """Boolean mask of the ``train`` rows of a split array; ``None`` when there is no split array."""
    return None if split is None else np.asarray(split) == TRAIN


def selection_pool(fs, source: str | Path | None = None) -> tuple[np.ndarray | None, str]:
    """``(mask, description)`` of the rows to select from: those with split ``train`` when the
    file has a split array (``mask``), else all rows (``None``). A split array without any
    ``train`` row raises :class:`~core.errors.SelectionInputError` (``source`` names the file
    in the message)."""
    train = train_mask(fs.split)
    if train is None:
        return None, "all rows"
    if np.any(train):
        return train, "rows with split == 'train'"
    values, counts = np.unique(fs.split, return_counts=True)
    found = ", ".join(f"{int(n)} {v!r}" for v, n in sorted(zip(values.tolist(), counts.tolist()), key=lambda t: -t[1]))
    where = f"Features file {source}" if source else "The features"
    raise SelectionInputError(
        f"{where} has a split array but no 'train' rows (found: {found or 'no rows'}); select picks only from the "
        "training rows: mark the rows to select from as 'train' in the dataset (an empty split cell of a manifest "
        "means train), or remove the split array to select from every row."
    )


def evaluation_candidates(split: Any, n: int) -> np.ndarray:
    """Rows (int64, sorted) the evaluation's pool is drawn from: the ``train`` rows, else all ``n`` rows."""
    train = train_mask(split)
    rows = np.flatnonzero(train) if train is not None else np.zeros(0, dtype=np.int64)
    return (rows if rows.size else np.arange(n)).astype(np.int64)


__all__ = ["TRAIN", "evaluation_candidates", "selection_pool", "train_mask"]
