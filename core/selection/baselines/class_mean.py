"""Baselines that rank each class by distance to its centre: ``min`` (class mean, mean rank over
models) and ``moderate_ds`` (band around the median distance to the coordinate-wise median).
"""

from __future__ import annotations

import numpy as np
import torch

from .._ordering import keep_band_per_class
from ..params import MinParams, ModerateDSParams
from ..ram_apl import class_mean_ranks, mean_rank_fraction
from ..registry import SelectionData, SelectorOutput, register_selector
from ._common import class_features


@register_selector(
    "min",
    MinParams,
    "MIN: closest to the class mean (mean within-class rank over models, as in RAM).",
    multi_model=True,
    prefix_consistent=True,
    score_column="score",
    representative="low",
)
def select_min(data: SelectionData, budgets: np.ndarray, params: MinParams) -> SelectorOutput:
    """score_i = (sum_m rank[m]_i / M) / N_c, rank[m] = within-class rank of ||x_m - mu_m,c|| (0 = closest).

    Keeps the ``b_c`` lowest scores per class (ties by row index), ascending.
    """
    per_model = class_mean_ranks(data, params.normalize, want_pseudo=False)
    score = mean_rank_fraction(per_model, data)
    order, _ = keep_band_per_class(score, data, budgets)
    columns: dict[str, np.ndarray] = {"score": score}
    for name, entry in per_model.items():
        columns[f"rank[{name}]"] = entry["rank"]
        columns[f"distance[{name}]"] = entry["distance"].astype(np.float64)
    return SelectorOutput(order, columns)


def moderate_band_start(sizes: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """First kept rank of Moderate-DS: ``round-half-even((N_c - b_c) / 2)`` (official code)."""
    return np.round(0.5 * (np.asarray(sizes, dtype=np.float64) - np.asarray(budgets))).astype(np.int64)


@register_selector(
    "moderate_ds",
    ModerateDSParams,
    "Moderate-DS (Xia et al., ICLR 2023): the band of distances around the median "
    "distance to the class's coordinate-wise median.",
    score_column="distance",
    representative="low",
)
def moderate_ds(data: SelectionData, budgets: np.ndarray, params: ModerateDSParams) -> SelectorOutput:
    """distance_i = ||x_i - median_c||_2 with median_c the coordinate-wise median of the class
    (``numpy.median``: mean of the two middle values for even N_c); rows are ranked by
    (distance, row) within the class and ranks ``low_c .. low_c + b_c - 1`` are kept with
    ``low_c = round-half-even((N_c - b_c) / 2)``, in ascending distance."""
    dist = np.empty(data.n, dtype=np.float64)
    for c in range(data.n_classes):
        rows = data.class_rows(c)
        x = class_features(data, rows, params.model, params.normalize)
        med = torch.from_numpy(np.median(x.cpu().numpy(), axis=0)).to(x.device)
        dist[rows] = torch.linalg.vector_norm(x - med, dim=1).cpu().numpy()
    low = moderate_band_start(data.sizes, budgets)
    order, rank = keep_band_per_class(dist, data, budgets, low=low)
    return SelectorOutput(order, {"distance": dist, "rank": rank})


__all__ = ["moderate_band_start", "moderate_ds", "select_min"]
