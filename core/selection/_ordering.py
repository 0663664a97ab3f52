"""Turning per-sample scores or per-class picks into one selection order.

Selection order (the ``order`` column and :attr:`SelectionResult.selected`): classes are
concatenated in class order (sorted labels, as the official RAM-APL code loops
``for c in range(num_classes)``); within a class, rows come in the order the method
picked them (ascending score for score-based methods). Ties are broken by row index.
"""

from __future__ import annotations

import numpy as np

from ._linalg import sort_by_class_then_value
from .registry import SelectionData


def keep_band_per_class(
    values, data: SelectionData, budgets: np.ndarray, low: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per class, the rows at positions ``low_c .. low_c + b_c - 1`` by ascending value.

    Rows are ordered within their class by (value, row index); ``low`` defaults to 0
    (keep the ``b_c`` lowest values). ``values`` is a numpy array or CPU tensor ``[N]``.
    Returns ``(order, rank)``: the kept rows in selection order (int64) and every row's
    0-based position within its class (int64 ``[N]``).
    """
    perm = sort_by_class_then_value(values, data.codes)
    cls_sorted = data.codes[perm]
    pos = np.arange(data.n, dtype=np.int64) - data.offsets[cls_sorted]
    lo = 0 if low is None else np.asarray(low, dtype=np.int64)[cls_sorted]
    keep = (pos >= lo) & (pos < lo + np.asarray(budgets, dtype=np.int64)[cls_sorted])
    rank = np.empty(data.n, dtype=np.int64)
    rank[perm] = pos
    return perm[keep], rank


def concat_class_picks(picks: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-class ordered picks (already row indices) in class order."""
    if not picks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in picks])
