"""Step 1 of the protocol: which rows train (the selection pool) and which test.

The pool rule itself (``train`` rows, else every row) is :mod:`core.pool`'s."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CoresetError
from ..features import FeatureSet
from ..pool import evaluation_candidates, train_mask

#: Stream tag mixed into the seed of the hold-out, so that it does not draw the same numbers
#: as a selector seeded with the same integer.
HOLDOUT_STREAM = 0x686F6C64  # "hold"


def stratified_holdout(
    labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into ``(train, test)`` row arrays (sorted), stratified by label.

    Per class: ``n_test = round-half-even(fraction * N_c)``, capped at ``N_c - 1`` so
    every class with at least 2 rows keeps one training row; the test rows are a uniform
    draw without replacement from ``default_rng([seed, HOLDOUT_STREAM])`` (classes in
    sorted order).
    """
    labels = np.asarray(labels)
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng([int(seed), HOLDOUT_STREAM])
    test = []
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        k = min(int(np.round(fraction * len(members))), max(len(members) - 1, 0))
        if k > 0:
            test.append(rng.choice(members, size=k, replace=False))
    test_rows = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_rows = np.setdiff1d(rows, test_rows)
    return train_rows.astype(np.int64), test_rows.astype(np.int64)


@dataclass
class EvalSplit:
    """Which rows train (the selection pool) and which test.

    Attributes:
        pool: rows of the feature set the selectors choose from (sorted).
        test: rows the trainers are scored on (sorted).
        source: ``test split`` or ``hold-out``.
        holdout, seed: the hold-out fraction and seed (when ``source == "hold-out"``).
    """

    pool: np.ndarray
    test: np.ndarray
    source: str
    holdout: float | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "n_pool": int(len(self.pool)),
            "n_test": int(len(self.test)),
            "holdout": self.holdout,
            "holdout_seed": self.seed,
            "test_rows": self.test.tolist() if self.source == "hold-out" else None,
        }


def make_split(fs: FeatureSet, holdout: float = 0.2, seed: int = 0) -> EvalSplit:
    """The dataset's test split, else a stratified hold-out of the training rows (step 1)."""
    n = len(fs)
    split = fs.split if fs.split is not None else np.full(n, "train")
    test = np.flatnonzero(split == "test")
    if test.size:
        pool = np.flatnonzero(np.asarray(train_mask(split)))
        if pool.size == 0:
            raise CoresetError("The data has a test split but no training rows to select from.")
        return EvalSplit(pool.astype(np.int64), test.astype(np.int64), "test split")
    candidates = evaluation_candidates(fs.split, n)
    pool, test = stratified_holdout(fs.labels, candidates, holdout, seed)
    if test.size == 0:
        raise CoresetError(
            f"The hold-out of {holdout:.0%} is empty (too few images per class); add a test split or more images."
        )
    return EvalSplit(pool, test, "hold-out", float(holdout), int(seed))


__all__ = ["EvalSplit", "HOLDOUT_STREAM", "make_split", "stratified_holdout"]
