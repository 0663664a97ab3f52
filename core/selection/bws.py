"""``bws``: Best window selection (Choi et al., ICML 2024, arXiv 2406.03057).

The paper: sort the examples by difficulty, hardest first; a window is a run of
consecutive examples of the budget's size starting at offset ``s``; among a grid of
starts, keep the window whose subset trains the best proxy (a kernel ridge regression on
the features of a pretrained model), judged by its accuracy on the *whole training set*.
Small budgets end up with easy windows, large budgets with harder ones; under label
noise the hardest (mislabelled) rows stay outside the window.

Here, per class ``c`` (difficulty ``h`` as in :mod:`.ccs`, hardest first, ties by row),
the window of start ratio ``s`` holds the class ranks
``[min(round(s N_c), N_c - b_c), ... + b_c)``; the starts are ``s = 0, step, 2 step, ...``
up to the first that pins every class to its last ``b_c`` rows. Each window trains the
ridge classifier of :mod:`._probe` (``lam = ridge``) on the features of the ``model``
parameter (default: every model's rows L2-normalised, concatenated) with the pool's
labels, and is scored by its accuracy on every pool row; the best window wins (ties: the
smaller start). Departures: the training-free difficulty (the paper uses EL2N /
forgetting scores of a trained network), per-class windows with one shared start ratio
(so class budgets hold), a linear-kernel ridge on foundation-model features.

Deterministic. Details: the chosen start and every start's pool accuracy.
"""

from __future__ import annotations

import numpy as np

from ._ordering import concat_class_picks
from ._probe import ridge_fit_predict
from .baselines import class_features
from .budgets import sample_difficulty
from .params import BWSParams
from .registry import SelectionData, SelectorOutput, register_selector


def window_starts(step: float, sizes: np.ndarray, budgets: np.ndarray) -> list[float]:
    """Start ratios ``0, step, 2 step, ...`` up to the first at which every class's window
    is its last ``b_c`` rows (later starts give the same windows)."""
    starts, k = [], 0
    sizes = np.asarray(sizes, dtype=np.int64)
    budgets = np.asarray(budgets, dtype=np.int64)
    while True:
        s = round(k * step, 12)
        starts.append(s)
        if s >= 1.0 or np.all(np.round(s * sizes) >= sizes - budgets):
            return starts
        k += 1


def class_window(order: np.ndarray, start: float, budget: int) -> np.ndarray:
    """Rows of the window at ``start`` in one class's hardest-first ``order``."""
    n = len(order)
    first = min(int(np.round(start * n)), n - budget)
    return order[first : first + budget]


@register_selector(
    "bws",
    BWSParams,
    "BWS (Choi et al., ICML 2024): the window of the difficulty ranking whose subset trains the "
    "best ridge probe on the whole pool.",
    multi_model=True,
    score_column="difficulty_score",
    representative="low",
    uses_fraction=True,
)
def bws(data: SelectionData, budgets: np.ndarray, params: BWSParams) -> SelectorOutput:
    h = sample_difficulty(data)
    orders = []
    for c in range(data.n_classes):
        rows = data.class_rows(c)
        orders.append(rows[np.lexsort((rows, -h[rows]))])
    x = class_features(data, np.arange(data.n), params.model, "l2")  # unit rows, like the concatenation
    scores: dict[str, float] = {}
    best, best_rows = -1.0, None
    for s in window_starts(params.step, data.sizes, budgets):
        rows = concat_class_picks([class_window(o, s, int(b)) for o, b in zip(orders, budgets)])
        pred = ridge_fit_predict(x[rows], data.codes[rows], x, data.n_classes, params.ridge)
        acc = float(np.mean(pred == data.codes))
        scores[f"{s:g}"] = acc
        if acc > best + 1e-12:
            best, best_rows, best_s = acc, rows, s
    rank = np.full(data.n, -1, dtype=np.int64)
    for o in orders:
        rank[o] = np.arange(len(o))
    assert best_rows is not None  # window_starts is never empty and every accuracy beats -1
    return SelectorOutput(
        best_rows, {"difficulty_score": h, "hardness_rank": rank}, {"window_start": best_s, "pool_accuracy": scores}
    )
