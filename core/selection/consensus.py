"""Label consensus across models: suspected mislabels, a suggested class and a confidence.

Training-free: nothing is fitted but class means. For every model ``m`` (rows
L2-normalised, so distances are cosine distances) and every pool row ``i``:

* ``knn[m]_i(c)`` = share of the ``k`` nearest other pool rows (cosine similarity, self
  excluded) whose label is ``c``;
* ``ncm[m]_i`` = the class whose mean of normalised rows has the highest cosine
  similarity with ``x_{m,i}`` (nearest class mean, as APL; first class on ties).

The class support is the average over the ``M`` models of both votes::

    P_i(c) = (1 / M) sum_m [ knn_weight * knn[m]_i(c) + (1 - knn_weight) * 1{ncm[m]_i = c} ]

``P_i`` sums to 1. ``agreement_i = P_i(y_i)`` (support of the given label),
``suggested_i = argmax_c P_i(c)`` (the given label when it ties the best, else the lowest
class index) and ``confidence_i = P_i(suggested_i)``. A row is a **suspected mislabel** when
``suggested_i != y_i`` and ``agreement_i <= max_agreement`` (default 0.05: no model's class
mean agrees with the given label and, with two models and k = 10, at most one of the 20
neighbours does). The defaults were chosen on the demo set (``assets/demo``, 1,000
Fashion-MNIST training images, effnet-lite0 + effnet-lite1) with 20 % synthetic flips (seed
0): ``max_agreement`` in {0, 0.05, 0.1, ..., 0.35} with the best F1 (0.86; clean labels: 4.1 %
flagged, cleanlab 9.3 % on the same features); ``k = 10`` and ``knn_weight = 0.5`` were set
before any measurement. Never on a benchmark's data (``bench/README.md``, "Label issues").

Cost: ``O(N^2 D)`` per model for the exact neighbour search (chunked matmul + top-k; no
``N x N`` matrix is kept); memory ``O(N k)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._linalg import as_tensor, l2_normalize_rows, rows_per_chunk
from .registry import SelectionData

#: Defaults (see the module docstring and bench/README.md for how they were chosen).
DEFAULT_K = 10
DEFAULT_KNN_WEIGHT = 0.5
DEFAULT_MAX_AGREEMENT = 0.05


@dataclass
class LabelConsensus:
    """Per pool row (arrays ``[N]``): see the module docstring for the formulas.

    Attributes:
        agreement: float64, support ``P_i(y_i)`` of the given label in [0, 1].
        suggested: int64 class index (into ``SelectionData.classes``) of the best-supported class.
        confidence: float64, ``P_i(suggested_i)`` in [0, 1].
        suspect: bool, suspected mislabel.
        knn_agreement: float64, mean over models of ``knn[m]_i(y_i)``.
        ncm_agreement: float64, share of models whose nearest class mean is ``y_i`` (APL).
    """

    agreement: np.ndarray
    suggested: np.ndarray
    confidence: np.ndarray
    suspect: np.ndarray
    knn_agreement: np.ndarray
    ncm_agreement: np.ndarray

    def take(self, rows: np.ndarray) -> LabelConsensus:
        return LabelConsensus(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def columns(self, classes: np.ndarray) -> dict[str, np.ndarray]:
        """The per-sample columns written to ``scores.csv`` (label issues)."""
        return {
            "suspected_mislabel": self.suspect.copy(),
            "suggested_class": np.asarray(classes)[self.suggested],
            "label_confidence": self.confidence.copy(),
            "label_agreement": self.agreement.copy(),
        }


def knn_indices(xn: torch.Tensor, k: int) -> torch.Tensor:
    """int64 ``[N, k']`` (``k' = min(k, N - 1)``): each row's nearest other rows by cosine
    similarity of the L2-normalised rows ``xn`` (self excluded; exact ties in similarity are
    broken by ``torch.topk``, i.e. unspecified)."""
    n = xn.shape[0]
    kk = min(int(k), n - 1)
    if kk <= 0:
        return torch.zeros((n, 0), dtype=torch.int64)
    out = torch.empty((n, kk), dtype=torch.int64)
    step = rows_per_chunk(4 * n, n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        sim = xn[start:stop] @ xn.T
        sim[torch.arange(stop - start), torch.arange(start, stop)] = -float("inf")
        out[start:stop] = torch.topk(sim, kk, dim=1).indices
    return out


def nearest_class_mean_cosine(xn: torch.Tensor, codes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """int64 ``[N]``: the class whose normalised mean of normalised rows is most similar."""
    sums = torch.zeros((n_classes, xn.shape[1]), dtype=torch.float64)
    sums.index_add_(0, codes, xn.to(torch.float64))
    means = l2_normalize_rows(sums).to(torch.float32)
    out = torch.empty(xn.shape[0], dtype=torch.int64)
    step = rows_per_chunk(4 * n_classes, xn.shape[0])
    for start in range(0, xn.shape[0], step):
        stop = min(xn.shape[0], start + step)
        out[start:stop] = torch.argmax(xn[start:stop] @ means.T, dim=1)
    return out


def label_consensus(
    data: SelectionData,
    *,
    k: int = DEFAULT_K,
    knn_weight: float = DEFAULT_KNN_WEIGHT,
    max_agreement: float = DEFAULT_MAX_AGREEMENT,
) -> LabelConsensus:
    """The :class:`LabelConsensus` of the pool ``data`` over all its models."""
    n, n_classes = data.n, data.n_classes
    codes_t = data.codes_tensor()
    support = np.zeros((n, n_classes), dtype=np.float64)
    knn_agree = np.zeros(n, dtype=np.float64)
    ncm_agree = np.zeros(n, dtype=np.float64)
    m = len(data.features)
    rows = np.arange(n)
    for x in data.features.values():
        xn = l2_normalize_rows(as_tensor(x))
        ncm = nearest_class_mean_cosine(xn, codes_t, n_classes).numpy()
        support[rows, ncm] += 1.0 - knn_weight
        ncm_agree += ncm == data.codes
        nb = knn_indices(xn, k).numpy()
        if nb.shape[1]:
            nb_codes = data.codes[nb]
            share = 1.0 / nb.shape[1]
            np.add.at(support, (np.repeat(rows, nb.shape[1]), nb_codes.reshape(-1)), knn_weight * share)
            knn_agree += (nb_codes == data.codes[:, None]).mean(axis=1)
        else:  # a pool of one row: its own label is all the evidence there is
            support[rows, data.codes] += knn_weight
            knn_agree += 1.0
    support /= m
    np.clip(support, 0.0, 1.0, out=support)
    agreement = support[rows, data.codes]
    best = support.max(axis=1)
    suggested = np.argmax(support, axis=1).astype(np.int64)
    suggested = np.where(agreement >= best - 1e-12, data.codes, suggested)
    confidence = support[rows, suggested]
    suspect = (suggested != data.codes) & (agreement <= max_agreement + 1e-12)
    return LabelConsensus(agreement, suggested, confidence, suspect, knn_agree / m, ncm_agree / m)


__all__ = [
    "DEFAULT_K",
    "DEFAULT_KNN_WEIGHT",
    "DEFAULT_MAX_AGREEMENT",
    "LabelConsensus",
    "knn_indices",
    "label_consensus",
    "nearest_class_mean_cosine",
]
