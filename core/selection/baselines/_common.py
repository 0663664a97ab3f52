"""What the baselines share: their feature space (:func:`class_features`), the tie rule and the per-
class greedy driver.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import SelectionInputError
from .._linalg import gather_rows, l2_normalize_rows, parallel_map
from .._ordering import concat_class_picks
from ..registry import SelectionData


def class_features(data: SelectionData, rows: np.ndarray, model: str, normalize: str = "none") -> torch.Tensor:
    """Float32 tensor ``[len(rows), D]`` on ``data.device``: the feature space described above."""
    if model:
        if model not in data.features:
            raise SelectionInputError(
                f"Parameter 'model' = {model!r} is not among the selected models: {', '.join(data.models)}."
            )
        names = [model]
    else:
        names = data.models
    if len(names) == 1:
        x = torch.from_numpy(gather_rows(data.features[names[0]], rows)).to(data.device)
        return l2_normalize_rows(x) if normalize == "l2" else x
    return torch.cat(
        [l2_normalize_rows(torch.from_numpy(gather_rows(data.features[m], rows)).to(data.device)) for m in names], dim=1
    )


#: Relative tolerance under which greedy values count as tied (see the module docstring).
TIE_RTOL = 1e-6
#: Stale bounds re-evaluated together by the lazy greedy of facility location.
LAZY_BATCH = 16
#: Classes with at most this many feature values (rows x dims) run their greedy loop with one
#: torch thread, several classes at once: per-step vectors are small and thread
#: synchronisation inside each op would dominate.
SMALL_CLASS_VALUES = 2**23


def first_near_best(values: torch.Tensor, tol: float, *, maximize: bool) -> int:
    """Lowest index whose value is within ``tol`` of the best (max or min) value."""
    if maximize:
        near = values >= values.max() - tol
    else:
        near = values <= values.min() + tol
    return int(torch.argmax(near.to(torch.uint8)))


def _nan_column(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


def _per_class_greedy(data: SelectionData, budgets: np.ndarray, pick) -> tuple[np.ndarray, list]:
    """Run ``pick(c, rows, b) -> (local_order, values...)`` for every class with ``b > 0``.

    On the CPU, classes with at most ``SMALL_CLASS_VALUES`` feature values run one per
    worker thread (``torch.get_num_threads()`` of them), each with one torch thread; larger
    classes run one at a time with all threads. Results do not depend on the threading.
    """
    dims = sum(x.shape[1] for x in data.features.values())
    todo = [c for c in range(data.n_classes) if budgets[c] > 0]
    cpu = data.device.type == "cpu"
    small = [c for c in todo if cpu and len(data.class_rows(c)) * dims <= SMALL_CLASS_VALUES]

    def run(c: int):
        local, *vals = pick(c, data.class_rows(c), int(budgets[c]))
        return np.asarray(local, dtype=np.int64), vals

    results = dict(zip(small, parallel_map(run, small, torch.get_num_threads())))
    for c in todo:
        if c not in results:
            results[c] = run(c)
    picks, extras = [], []
    for c in todo:
        rows = data.class_rows(c)
        local, vals = results[c]
        picks.append(rows[local])
        extras.append((rows, local, vals))
    return concat_class_picks(picks), extras


__all__ = ["LAZY_BATCH", "SMALL_CLASS_VALUES", "TIE_RTOL", "class_features", "first_near_best"]
