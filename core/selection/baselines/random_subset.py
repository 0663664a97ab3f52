"""``random``: a uniform sample without replacement within each class (seeded)."""

from __future__ import annotations

import numpy as np

from .._ordering import keep_band_per_class
from ..params import RandomParams
from ..registry import SelectionData, SelectorOutput, register_selector


@register_selector(
    "random",
    RandomParams,
    "Uniform random sample without replacement within each class (seeded).",
    stochastic=True,
    prefix_consistent=True,
)
def random_selector(data: SelectionData, budgets: np.ndarray, params: RandomParams) -> SelectorOutput:
    """``random_key = default_rng(seed).random(N)``; per class the ``b_c`` smallest keys are
    kept, in ascending key order (a uniform sample without replacement, in random order)."""
    keys = np.random.default_rng(data.seed).random(data.n)
    order, _ = keep_band_per_class(keys, data, budgets)
    return SelectorOutput(order, {"random_key": keys})


__all__ = ["random_selector"]
