"""RAM-APL (Wan et al., ICML 2025, arXiv 2506.14473), faithful to the official code.

For every model m (features optionally L2-normalised per row) and class c with N_c rows:

* ``mu_{m,c}`` = mean of the class's features;
* ``distance[m]_i = ||x_{m,i} - mu_{m,c(i)}||_2``;
* ``rank[m]_i`` = position of i among its class by ascending distance (0 = closest,
  ties by row index, i.e. a stable sort; the official code's ``np.argsort`` leaves ties
  unspecified);
* ``RAM_i = (sum_m rank[m]_i / M) / N_c`` (dimensionless, in [0, 1));
* ``pseudo_label[m]_i = argmin_c ||x_{m,i} - mu_{m,c}||_2`` over ALL classes (first class
  on ties);
* ``APL_i = #{m : pseudo_label[m]_i == label_i} / M``;
* ``score_i = W1(p) RAM_i + W2(p) (#{m : pseudo_label[m]_i != label_i} / M)`` where
  ``W1(p) = a + (1 - a) / (1 + exp(k (p - s)))``, ``W2 = 1 - W1``, ``p`` the fraction
  (defaults a = 0.2, k = 1, s = 0.5; p is the fraction given to ``run_selection`` whatever
  the budget strategy). The second term equals ``1 - APL_i`` and is computed
  as the official code does (mean of the mismatches), so scores match it bit for bit.

Per class, the ``b_c`` rows with the lowest score are kept (``b_c = round-half-even(p N_c)``
with the default ``paper`` budget), ties by row index, in ascending score order.

Cost: two passes over each model's features. On the CPU the first is the engine's input
check, which also sums every class in float64; the second computes, per chunk of rows, the
float64 distance to the own class mean and one low-precision ``[chunk, D] x [D, C]`` matmul
(bfloat16 on CPUs with AMX / AVX512-BF16) whose candidates for the nearest mean are re-checked
in float64 when they are within the proven rounding bound, so the pseudo-labels are exact
(:func:`core.selection._linalg._distances_cpu`). On a GPU: torch, float32 matmul with the
float64 re-check of near ties. No ``N x C`` matrix is formed.
"""

from __future__ import annotations

import numpy as np

from ..mapped import release
from ._linalg import as_tensor, class_means, distances_to_present_means, ranks_within_class
from ._ordering import keep_band_per_class
from .params import RamAplParams
from .registry import SelectionData, SelectorOutput, register_selector


def ram_apl_weights(p: float, a: float = 0.2, k: float = 1.0, s: float = 0.5) -> tuple[float, float]:
    """``(W1, W2)`` with ``W1 = a + (1 - a) / (1 + exp(k (p - s)))`` and ``W2 = 1 - W1``."""
    w1 = a + (1 - a) * (1 / (1 + np.exp(k * (p - s))))
    return float(w1), float(1 - w1)


def class_mean_ranks(data: SelectionData, normalize: str, *, want_pseudo: bool) -> dict[str, dict[str, np.ndarray]]:
    """Per model: ``distance`` to the own class mean, within-class ``rank`` and (optionally)
    ``pseudo`` (index of the nearest class mean, among the classes the pool has rows of).
    Shared by ``ram_apl`` and ``min``."""
    codes = data.codes_tensor()
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, x in data.features.items():
        xt = as_tensor(x)
        means = class_means(xt, codes, data.n_classes, normalize=normalize, device=data.device)
        dist = distances_to_present_means(
            xt, codes, means, normalize=normalize, device=data.device, want_nearest=want_pseudo
        )
        own = dist["own"]
        entry = {"distance": own.numpy(), "rank": ranks_within_class(own, data.codes, data.offsets)}
        if want_pseudo:
            entry["pseudo"] = dist["nearest"].numpy()
        out[name] = entry
        release(x)  # the model's mapped pages go back to the OS before the next model's passes
    return out


def mean_rank_fraction(per_model: dict[str, dict[str, np.ndarray]], data: SelectionData) -> np.ndarray:
    """``(sum_m rank[m]_i / M) / N_{c(i)}`` as float64 (the official code's RAM)."""
    m = len(per_model)
    total = np.zeros(data.n, dtype=np.float64)
    for entry in per_model.values():
        total += entry["rank"]
    return (total / m) / data.sizes[data.codes]


@register_selector(
    "ram_apl",
    RamAplParams,
    "RAM-APL (Wan et al., ICML 2025): typical images whose label every model's nearest class mean "
    "agrees with; strong under label noise, below random on clean labels in our benchmark.",
    multi_model=True,
    score_column="score",
    representative="low",
    uses_fraction=True,
)
def ram_apl(data: SelectionData, budgets: np.ndarray, params: RamAplParams) -> SelectorOutput:
    per_model = class_mean_ranks(data, params.normalize, want_pseudo=True)
    m = len(per_model)
    ram = mean_rank_fraction(per_model, data)
    n_correct = np.zeros(data.n, dtype=np.int64)
    for entry in per_model.values():
        n_correct += entry["pseudo"] == data.codes
    apl = n_correct / m
    wrong = (m - n_correct) / m
    w1, w2 = ram_apl_weights(data.fraction, params.a, params.k, params.s)
    score = w1 * ram + w2 * wrong
    order, _ = keep_band_per_class(score, data, budgets)
    columns: dict[str, np.ndarray] = {"ram": ram, "apl": apl, "score": score}
    for name, entry in per_model.items():
        columns[f"rank[{name}]"] = entry["rank"]
        columns[f"distance[{name}]"] = entry["distance"].astype(np.float64)
        columns[f"pseudo_label[{name}]"] = data.classes[entry["pseudo"]]
    return SelectorOutput(order=order, columns=columns)
