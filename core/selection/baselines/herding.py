"""``herding``: greedy herding towards the class mean, per class."""

from __future__ import annotations

import numpy as np
import torch

from ..params import HerdingParams
from ..registry import SelectionData, SelectorOutput, register_selector
from ._common import TIE_RTOL, _nan_column, _per_class_greedy, class_features, first_near_best


def herding_greedy(x: torch.Tensor, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy mean matching (herding; Welling 2009, as used by iCaRL).

    Step t picks the unpicked row ``i`` minimising ``||mu - (sum_{j in S} x_j + x_i) / (t + 1)||``
    mu the class mean. With centred rows ``z = x - mu`` and running sum ``w`` this is
    ``argmin_i ||z_i||^2 + 2 w.z_i``: one matrix-vector product per step. Values within
    ``1e-6 (||w|| + max_i ||z_i||)^2`` of the best count as ties (lowest row).

    Returns ``(picks, error)`` with ``error[t] = ||mean(S_t) - mu||_2`` after pick t.
    """
    mu = x.to(torch.float64).mean(dim=0)
    z = (x.to(torch.float64) - mu).to(torch.float32)
    sq = (z * z).sum(dim=1)
    w = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
    picked = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    z_max = float(sq.max().sqrt())
    picks, errors = [], []
    for t in range(budget):
        cost = (sq + 2.0 * (z @ w.to(torch.float32))).masked_fill_(picked, float("inf"))
        j = first_near_best(cost, TIE_RTOL * (float(torch.linalg.vector_norm(w)) + z_max) ** 2, maximize=False)
        picked[j] = True
        w += z[j].to(torch.float64)
        picks.append(j)
        errors.append(float(torch.linalg.vector_norm(w)) / (t + 1))
    return np.asarray(picks, dtype=np.int64), np.asarray(errors)


@register_selector(
    "herding",
    HerdingParams,
    "Herding (Welling 2009 / iCaRL): greedily match the mean of the kept rows to the class mean.",
    prefix_consistent=True,
)
def herding(data: SelectionData, budgets: np.ndarray, params: HerdingParams) -> SelectorOutput:
    err = _nan_column(data.n)
    order, extras = _per_class_greedy(
        data, budgets, lambda c, rows, b: herding_greedy(class_features(data, rows, params.model, params.normalize), b)
    )
    for rows, local, (e,) in extras:
        err[rows[local]] = e
    return SelectorOutput(order, {"herding_error": err})


__all__ = ["herding", "herding_greedy"]
