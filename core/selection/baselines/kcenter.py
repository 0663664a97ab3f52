"""``kcenter``: farthest-first traversal (k-center greedy) per class."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..params import KCenterParams
from ..registry import SelectionData, SelectorOutput, register_selector
from ._common import TIE_RTOL, _nan_column, _per_class_greedy, class_features, first_near_best


def kcenter_greedy(x: torch.Tensor, budget: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Farthest-first traversal (k-center greedy) from row ``start``.

    Step t picks ``argmax_i min_{j in S} ||x_i - x_j||`` over unpicked rows; squared
    distances within ``1e-6 max_i ||x_i - mean||^2`` of the best count as ties (lowest row).
    Rows are centred first (distances unchanged) and squared distances come from
    ``||x_i||^2 + ||x_j||^2 - 2 x_i.x_j`` in float32, one matrix-vector product per step:
    O(budget * n * D) time, O(n) extra memory (no n x n matrix).

    Returns ``(picks, pick_distance, distance_to_selected)``: local rows in pick order, the
    distance of each pick to the earlier picks (NaN for the start) and every row's final
    distance to its nearest pick.
    """
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    n = x.shape[0]
    tol = TIE_RTOL * float(sq.max())
    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=x.device)
    picked = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks, pick_dist = [start], [math.nan]
    j = start
    for t in range(budget):
        if t > 0:
            cand = mind.masked_fill(picked, -1.0)
            j = first_near_best(cand, tol, maximize=True)
            picks.append(j)
            pick_dist.append(math.sqrt(max(float(cand[j]), 0.0)))
        picked[j] = True
        d_sq = (sq + sq[j] - 2.0 * (x @ x[j])).clamp_min_(0.0)
        torch.minimum(mind, d_sq, out=mind)
    final = mind.masked_fill(picked, 0.0).sqrt()
    return np.asarray(picks, dtype=np.int64), np.asarray(pick_dist), final.cpu().numpy().astype(np.float64)


@register_selector(
    "kcenter",
    KCenterParams,
    "k-Center greedy (Sener & Savarese 2018): farthest-first traversal from a seeded random start.",
    stochastic=True,
    prefix_consistent=True,
)
def kcenter(data: SelectionData, budgets: np.ndarray, params: KCenterParams) -> SelectorOutput:
    """Per class: start at row ``default_rng([seed, c]).integers(N_c)`` of the class, then
    farthest-first (Euclidean) until ``b_c`` rows are picked; selection order = pick order."""
    pick_dist, to_sel = _nan_column(data.n), _nan_column(data.n)

    def pick(c, rows, b):
        start = int(data.class_rng(c).integers(len(rows)))
        return kcenter_greedy(class_features(data, rows, params.model, params.normalize), b, start)

    order, extras = _per_class_greedy(data, budgets, pick)
    for rows, local, (pd_, final) in extras:
        pick_dist[rows[local]] = pd_
        to_sel[rows] = final
    return SelectorOutput(order, {"pick_distance": pick_dist, "distance_to_selected": to_sel})


__all__ = ["kcenter", "kcenter_greedy"]
