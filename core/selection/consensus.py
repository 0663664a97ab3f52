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

Neighbours come from the pool's neighbour graphs (:mod:`core.neighbors`, through its
:class:`~.neighborhood.Neighborhood`): built once per model (exact up to 10,000 rows, an
inverted-file search above), kept with the features, and narrowed to the rows that may vote
(the pool; inside ``auto``'s folds, the pool without the held-out rows). A row whose graph
holds fewer than ``k`` voters is searched again exactly among them.

Memory: ``O(N k M)`` for the votes, in chunks of rows; nothing ``N x N`` or ``N x C`` is
formed (the support of a row is kept only for the classes that received a vote). Time:
the graphs (once), then ``O(N k M)`` plus one pass over the features for the class means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..mapped import release
from ._linalg import distances_to_class_means, from_numpy, l2_normalize_rows, rows_per_chunk
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
    similarity of the L2-normalised rows ``xn``, exact (:func:`core.neighbors.exact_graph`;
    equal similarities by row index)."""
    from ..neighbors import exact_graph

    n = xn.shape[0]
    kk = max(0, min(int(k), n - 1))
    graph = exact_graph(xn.cpu().numpy(), max(kk, 1))
    return torch.from_numpy(graph.indices[:, :kk].astype(np.int64))


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


def nearest_unit_mean(x: np.ndarray, unit_means: torch.Tensor, device: torch.device) -> np.ndarray:
    """int64 ``[N]``: for each row of ``x`` (raw features), the class whose unit mean
    ``unit_means[c]`` (float64 ``[C, D]``; a zero row: a class without voters, never chosen)
    has the highest cosine similarity with the row (first class on ties), i.e. the nearest
    unit mean to the unit row (``|u - m|^2 = 2 - 2 u.m``): :func:`._linalg.distances_to_class_means`
    with ``normalize="l2"`` (an exact float64 check of near ties)."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = torch.nonzero(torch.linalg.vector_norm(unit_means, dim=1) > 0).squeeze(1)
    if keep.numel() == 0:  # nobody votes: no class mean to be near (-1 is no vote)
        return np.full(len(x), -1, dtype=np.int64)
    xt = from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    codes = torch.zeros(len(x), dtype=torch.int64)
    out = distances_to_class_means(xt, codes, unit_means[keep], normalize="l2", device=device)
    return keep[out["nearest"]].numpy().astype(np.int64)


#: Rows whose votes are tallied at once (bounds the ``[rows, votes]`` temporaries).
TALLY_ROWS = 1 << 16


def tally(
    own: np.ndarray, vote_classes: np.ndarray, vote_weights: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: ``(agreement, suggested, confidence)`` from weighted class votes.

    ``vote_classes`` int64 ``[n, V]`` (``-1``: no vote), ``vote_weights`` float64 ``[n, V]``;
    the support of class ``c`` is the sum of the weights of the votes for ``c``. As the module
    docstring: ``suggested`` is the best-supported class, the row's own class ``own`` when it
    ties the best (1e-12), else the lowest class index among the best."""
    n, v = vote_classes.shape
    agreement = np.zeros(n, dtype=np.float64)
    suggested = np.asarray(own, dtype=np.int64).copy()
    confidence = np.zeros(n, dtype=np.float64)
    for a in range(0, n, TALLY_ROWS):
        b = min(n, a + TALLY_ROWS)
        cls = vote_classes[a:b]
        w = np.where(cls >= 0, vote_weights[a:b], 0.0)
        key = np.arange(a, b, dtype=np.int64)[:, None] * (n_classes + 1) + (cls.astype(np.int64) + 1)
        uniq, inv = np.unique(key.reshape(-1), return_inverse=True)
        support = np.bincount(inv.reshape(-1), weights=w.reshape(-1), minlength=len(uniq))
        np.clip(support, 0.0, 1.0, out=support)
        row = uniq // (n_classes + 1)
        c = uniq % (n_classes + 1) - 1
        real = c >= 0
        row, c, support = row[real], c[real], support[real]
        own_b = np.asarray(own[a:b], dtype=np.int64)
        mine = c == own_b[row - a]
        agreement[row[mine]] = support[mine]
        # best class per row: highest support, lowest class on ties (uniq is sorted by row, then class)
        order = np.lexsort((c, -support, row))
        first = np.ones(len(order), dtype=bool)
        first[1:] = row[order][1:] != row[order][:-1]
        best_row, best_c, best_s = row[order][first], c[order][first], support[order][first]
        take_own = agreement[best_row] >= best_s - 1e-12
        suggested[best_row] = np.where(take_own, own[best_row], best_c)
        confidence[best_row] = np.where(take_own, agreement[best_row], best_s)
    return agreement, suggested, confidence


def label_consensus(
    data: SelectionData,
    *,
    k: int = DEFAULT_K,
    knn_weight: float = DEFAULT_KNN_WEIGHT,
    max_agreement: float = DEFAULT_MAX_AGREEMENT,
) -> LabelConsensus:
    """The :class:`LabelConsensus` of the pool ``data`` over all its models, from its
    :attr:`~.registry.SelectionData.neighborhood` (made over the pool when it has none)."""
    from .neighborhood import Neighborhood

    hood = data.neighborhood
    if hood is None:
        hood = data.neighborhood = Neighborhood.of(data.features, data.codes, data.n_classes, device=data.device)
    key = (int(k), float(knn_weight), float(max_agreement), tuple(data.features))
    if key not in hood._consensus:
        hood._consensus[key] = _consensus(data, hood, int(k), float(knn_weight), float(max_agreement))
    return hood._consensus[key]


def _consensus(data: SelectionData, hood, k: int, knn_weight: float, max_agreement: float) -> LabelConsensus:
    n, n_classes = data.n, data.n_classes
    m = len(data.features)
    codes = data.codes
    knn_agree = np.zeros(n, dtype=np.float64)
    ncm_agree = np.zeros(n, dtype=np.float64)
    votes = []  # per model: (nearest class mean [n], neighbours' classes [n, k'] int32, -1 padding)
    for model in data.features:
        ncm = nearest_unit_mean(data.features[model], hood.class_unit_means(model), data.device)
        ncm_agree += ncm == codes
        nb, _ = hood.knn(model, k)
        nb_codes = np.where(nb >= 0, hood.codes[np.maximum(nb, 0)], -1).astype(np.int32)
        del nb
        n_nb = (nb_codes >= 0).sum(axis=1)
        agree = (nb_codes == codes[:, None]).sum(axis=1) / np.maximum(n_nb, 1)
        knn_agree += np.where(n_nb == 0, 1.0, agree)  # no other voter: its own label is all the evidence
        votes.append((ncm, nb_codes, n_nb))
        release(data.features[model])  # after this model's passes, its mapped pages go back to the OS
    agreement = np.empty(n, dtype=np.float64)
    suggested = np.empty(n, dtype=np.int64)
    confidence = np.empty(n, dtype=np.float64)
    for a in range(0, n, TALLY_ROWS):
        b = min(n, a + TALLY_ROWS)
        classes, weights = [], []
        for ncm, nb_codes, n_nb in votes:
            classes.append(ncm[a:b, None])
            weights.append(np.full((b - a, 1), (1.0 - knn_weight) / m))
            lonely = n_nb[a:b] == 0
            if nb_codes.shape[1]:
                classes.append(np.where(lonely[:, None], codes[a:b, None], nb_codes[a:b]))
                w = np.repeat((knn_weight / np.maximum(n_nb[a:b], 1) / m)[:, None], nb_codes.shape[1], axis=1)
                w[lonely, 0] = knn_weight / m
                w[lonely, 1:] = 0.0
            else:
                classes.append(codes[a:b, None])
                w = np.full((b - a, 1), knn_weight / m)
            weights.append(w)
        agreement[a:b], suggested[a:b], confidence[a:b] = tally(
            codes[a:b], np.concatenate(classes, axis=1), np.concatenate(weights, axis=1), n_classes
        )
    suspect = (suggested != codes) & (agreement <= max_agreement + 1e-12)
    return LabelConsensus(agreement, suggested, confidence, suspect, knn_agree / m, ncm_agree / m)


__all__ = [
    "DEFAULT_K",
    "DEFAULT_KNN_WEIGHT",
    "DEFAULT_MAX_AGREEMENT",
    "LabelConsensus",
    "knn_indices",
    "label_consensus",
    "nearest_class_mean_cosine",
    "nearest_unit_mean",
    "tally",
]
