"""What the label consensus of a pool reads about its rows' neighbours: :class:`Neighborhood`.

A selection pool (:class:`~.registry.SelectionData`) may carry a ``Neighborhood``: every
model's neighbour graph (:mod:`core.neighbors`), built once over the rows of a features
file (or of the pool), plus which rows of the pool may *vote* (lend their label). Pools
derived from it keep it and narrow it:

* ``data.subset(rows)`` keeps the same voters and asks about fewer rows (``cleaned`` runs
  its inner method on a subset; ``auto`` selects inside a fold);
* :meth:`Neighborhood.without` takes rows out of the voters (``auto`` removes each fold's
  held-out rows, so that no held-out label shapes the fold's selection).

The *universe* is the pool the neighbourhood was made for (rows ``0..U-1``, the top-level
``SelectionData``); the graphs may cover more rows (a features file whose test rows are not
in the pool): ``graph_rows[u]`` is the graph row of universe row ``u``. Rows outside the
universe never vote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..mapped import gather_rows
from ..neighbors import GRAPH_K, NeighborGraph, knn_among, neighbor_graphs
from ._linalg import class_means, from_numpy


@dataclass
class Neighborhood:
    """Neighbour graphs of a pool's universe and its voters (module docstring).

    Attributes:
        features: model -> the universe's features ``[U, D]`` (raw; read for class means and
            for the rows :func:`core.neighbors.knn_among` recomputes).
        codes: int64 ``[U]`` class of every universe row.
        n_classes: number of classes.
        rows: int64 ``[n]`` universe row of each row of the pool holding this.
        voters: bool ``[U]``, rows whose label may vote (None: all).
        graph_rows: int64 ``[U]`` graph row of each universe row (None: the same rows).
        graphs: model -> graph; missing graphs are built on first use by ``make_graphs``.
        make_graphs: ``make_graphs(features) -> {model: graph}`` for the universe's features.
    """

    features: Mapping[str, np.ndarray]
    codes: np.ndarray
    n_classes: int
    rows: np.ndarray
    voters: np.ndarray | None = None
    graph_rows: np.ndarray | None = None
    graphs: dict[str, NeighborGraph] = field(default_factory=dict)
    make_graphs: Callable[[Mapping[str, np.ndarray]], dict[str, NeighborGraph]] | None = None
    #: shared by every neighbourhood derived from one: model -> (float64 [C, D] sums of unit rows, of all universe rows)
    _sums: dict = field(default_factory=dict, repr=False)
    #: universe rows taken out of the voters (their unit rows are subtracted from the sums)
    _removed: np.ndarray | None = field(default=None, repr=False)
    #: consensus results of exactly these rows and voters, by parameters (cleaned and the
    #: label-issue columns of one run compute the same consensus)
    _consensus: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls,
        features: Mapping[str, np.ndarray],
        codes: np.ndarray,
        n_classes: int,
        *,
        graphs: Mapping[str, NeighborGraph] | None = None,
        graph_rows: np.ndarray | None = None,
        device: torch.device | None = None,
    ) -> Neighborhood:
        """The neighbourhood of a whole pool (every row votes). ``graphs`` cover the rows
        ``graph_rows`` maps to (the pool's own rows when None); a missing graph is built
        over the pool's features on first use (:func:`core.neighbors.neighbor_graphs`,
        remembered in the process)."""
        n = len(codes)

        def make(feats: Mapping[str, np.ndarray]) -> dict[str, NeighborGraph]:
            return neighbor_graphs(feats, k=GRAPH_K, device=device or "cpu")

        return cls(
            features,
            np.asarray(codes, dtype=np.int64),
            int(n_classes),
            np.arange(n, dtype=np.int64),
            None,
            None if graph_rows is None else np.asarray(graph_rows, dtype=np.int64),
            dict(graphs or {}),
            make,
        )

    # ----------------------------------------------------------------- derived pools
    def subset(self, rows: np.ndarray) -> Neighborhood:
        """The same universe and voters, asked about ``rows`` (indices of this pool's rows)."""
        return replace(self, rows=self.rows[np.asarray(rows, dtype=np.int64)], _consensus={})

    def without(self, universe_rows: np.ndarray) -> Neighborhood:
        """The same rows asked about, with the universe rows ``universe_rows`` no longer voting
        (``auto`` takes a fold's held-out rows out: ``hood.rows[held_out]``)."""
        voters = np.ones(len(self.codes), dtype=bool) if self.voters is None else self.voters.copy()
        gone = np.unique(np.asarray(universe_rows, dtype=np.int64))
        gone = gone[voters[gone]]
        voters[gone] = False
        removed = gone if self._removed is None else np.union1d(self._removed, gone)
        return replace(self, voters=voters, _removed=removed, _consensus={})

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def everyone_votes(self) -> bool:
        return self.voters is None

    # ----------------------------------------------------------------- what the consensus reads
    def graph(self, model: str) -> NeighborGraph:
        if model not in self.graphs:
            if self.make_graphs is None or self.graph_rows is not None:
                raise KeyError(f"no neighbour graph of model {model!r}")
            self.graphs.update(self.make_graphs({m: x for m, x in self.features.items() if m not in self.graphs}))
        return self.graphs[model]

    def knn(self, model: str, k: int) -> tuple[np.ndarray, int]:
        """``(neighbours, recomputed)``: int64 ``[n, k']`` universe rows, the ``k`` nearest voters of
        each asked row in ``model`` (nearest first, ``-1`` padding; see :func:`core.neighbors.knn_among`)."""
        graph = self.graph(model)
        if self.graph_rows is None:
            allowed = self.voters
            return knn_among(graph, self.features[model], self.rows, allowed, k)
        # the graph covers more rows than the universe: translate rows both ways
        n_graph = graph.n
        universe_of = np.full(n_graph, -1, dtype=np.int64)
        universe_of[self.graph_rows] = np.arange(len(self.codes))
        allowed = np.zeros(n_graph, dtype=bool)
        allowed[self.graph_rows if self.voters is None else self.graph_rows[self.voters]] = True
        x = _GraphRowFeatures(self.features[model], self.graph_rows, n_graph)
        nb, recomputed = knn_among(graph, x, self.graph_rows[self.rows], allowed, k)
        return np.where(nb >= 0, universe_of[np.maximum(nb, 0)], -1), recomputed

    def class_unit_means(self, model: str) -> torch.Tensor:
        """float64 ``[C, D]``: per class, the L2-normalised mean of the voters' L2-normalised rows
        (zero for a class without voters)."""
        if model not in self._sums:
            means = class_means(
                _as_tensor(self.features[model]), torch.from_numpy(self.codes), self.n_classes, normalize="l2"
            )
            counts = np.bincount(self.codes, minlength=self.n_classes).astype(np.float64)
            self._sums[model] = means * torch.from_numpy(counts)[:, None]
        sums = self._sums[model].clone()
        if self._removed is not None and len(self._removed):
            gone = torch.from_numpy(gather_rows(self.features[model], self._removed).astype(np.float32))
            gone = gone / torch.linalg.vector_norm(gone, dim=1, keepdim=True).clamp_min(1e-12)
            sums.index_add_(0, torch.from_numpy(self.codes[self._removed]), -gone.to(torch.float64))
        return sums / torch.linalg.vector_norm(sums, dim=1, keepdim=True).clamp_min(1e-12)


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    return from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class _GraphRowFeatures:
    """A view of the universe's features indexed by graph rows (for :func:`knn_among`'s
    exact recomputation, which reads only allowed rows and query rows: all in the universe)."""

    def __init__(self, x: np.ndarray, graph_rows: np.ndarray, n_graph: int) -> None:
        self.x = x
        self.local = np.full(n_graph, -1, dtype=np.int64)
        self.local[graph_rows] = np.arange(len(graph_rows))
        self._shape = (n_graph, int(x.shape[1]))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    def __getitem__(self, rows):
        return self.x[self.local[rows]]


__all__ = ["Neighborhood"]
