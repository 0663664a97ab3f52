"""``ccs``: Coverage-centric coreset selection (Zheng et al., ICLR 2023, arXiv 2210.15809).

The paper, as its official code does it: (1) a hard cutoff removes the ``beta`` share of
the hardest examples (likely mislabelled or uninformative); (2) the remaining difficulty
scores are split into ``k`` strata of equal width (``[min, max]`` in ``k`` steps, the top
edge nudged up so that the maximum falls in the last stratum); (3) the budget is allocated
over the strata fewest-first: strata sorted by size (ascending, stable), each takes
``min(size, floor(remaining / strata left))``; (4) within each stratum the allotted rows
are drawn uniformly at random.

Where this departs from the paper, and why:

* **Difficulty without training.** The paper scores with training dynamics (AUM,
  forgetting, EL2N) of a network trained on the full data; here the score is the
  training-free ``h_i = mean_m ||x_mi - mu_m,c(i)|| / min_{c' != c(i)} ||x_mi - mu_m,c'||``
  (raw features, averaged over the models; the ``difficulty`` budget strategy's score):
  large = far from its own class mean and near another's = hard.
* **Per class.** The paper prunes and stratifies the whole dataset at once; here steps
  (1)-(4) run within each class with the class's budget ``b_c`` (the budget strategy
  decides the class sizes, as for every selector), and the cutoff removes
  ``floor(beta N_c)`` rows, but never so many that fewer than ``b_c`` remain.
* **Top edge.** The code multiplies the maximum by 1.0001; here the top edge is
  ``max + 1e-4 (max - min)`` (plus the smallest float step), which also works when the
  maximum is 0 or all scores are equal.

Random stream of class ``c``: ``default_rng([seed, c])``: one permutation of each stratum
in stratum order. Selection order within a class: stratum by stratum (lowest difficulty
first), in the drawn order.
"""

from __future__ import annotations

import numpy as np

from ._ordering import concat_class_picks
from .budgets import sample_difficulty
from .params import CCSParams
from .registry import SelectionData, SelectorOutput, register_selector


def allocate_strata(budget: int, counts: np.ndarray) -> np.ndarray:
    """The code's ``bin_allocate``: strata by ascending size (stable); each takes
    ``min(size, remaining // strata_left)``. Sums to ``budget`` when ``budget <= sum(counts)``."""
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(counts, kind="stable")
    out = np.zeros(len(counts), dtype=np.int64)
    rest = int(budget)
    for i, s in enumerate(order):
        take = min(int(counts[s]), rest // (len(counts) - i))
        out[s] = take
        rest -= take
    return out


def strata_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Stratum index in ``0..k-1`` of every score (equal-width strata over ``[min, max]``)."""
    lo, hi = float(scores.min()), float(scores.max())
    if hi <= lo:
        return np.zeros(len(scores), dtype=np.int64)
    top = np.nextafter(hi + 1e-4 * (hi - lo), np.inf)
    step = (top - lo) / k
    return np.clip(np.floor((scores - lo) / step).astype(np.int64), 0, k - 1)


def ccs_class(
    scores: np.ndarray, budget: int, cutoff: float, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """CCS within one class: ``(local picks in order, stratum of every row; -1 = cut off)``."""
    n = len(scores)
    n_cut = min(int(np.floor(cutoff * n)), n - budget)
    by_hardness = np.lexsort((np.arange(n), -scores))  # hardest first, ties by row
    keep = np.sort(by_hardness[n_cut:])
    stratum = np.full(n, -1, dtype=np.int64)
    if budget <= 0 or keep.size == 0:
        return np.zeros(0, dtype=np.int64), stratum
    stratum[keep] = strata_of(scores[keep], k)
    counts = np.bincount(stratum[keep], minlength=k)
    share = allocate_strata(budget, counts)
    picks = []
    for s in range(k):
        members = keep[stratum[keep] == s]
        picks.append(members[rng.permutation(len(members))][: share[s]])
    return np.concatenate(picks).astype(np.int64), stratum


@register_selector(
    "ccs",
    CCSParams,
    "CCS (Zheng et al., ICLR 2023): cut off the hardest, then sample evenly across difficulty "
    "strata (per class, training-free difficulty).",
    multi_model=True,
    stochastic=True,
    score_column="difficulty_score",
    representative="low",
    uses_fraction=True,
)
def ccs(data: SelectionData, budgets: np.ndarray, params: CCSParams) -> SelectorOutput:
    h = sample_difficulty(data)
    stratum_col = np.full(data.n, -1, dtype=np.int64)
    picks = []
    for c in range(data.n_classes):
        rows = data.class_rows(c)
        local, stratum = ccs_class(h[rows], int(budgets[c]), params.cutoff, params.strata, data.class_rng(c))
        stratum_col[rows] = stratum
        picks.append(rows[local])
    return SelectorOutput(concat_class_picks(picks), {"difficulty_score": h, "stratum": stratum_col})
