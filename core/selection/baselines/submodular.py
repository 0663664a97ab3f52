"""Submodular baselines on the shifted cosine similarity ``s = (1 + cos) / 2``: ``facility_location``
and ``graph_cut``.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

from .._linalg import cosine_similarity_shifted, l2_normalize_rows
from ..budgets import largest_remainder
from ..params import FacilityLocationParams, GraphCutParams
from ..registry import SelectionData, SelectorOutput, register_selector
from ._common import LAZY_BATCH, TIE_RTOL, _nan_column, _per_class_greedy, class_features, first_near_best


def facility_location_lazy_greedy(xn: torch.Tensor, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy maximisation of ``f(S) = sum_i max_{j in S} s_ij`` (lazy evaluation).

    ``s_ij = (1 + cos(x_i, x_j)) / 2`` in [0, 1] (the shift keeps f monotone submodular),
    ``xn`` L2-normalised rows. Lazy greedy (Minoux 1978) keeps stale upper bounds in a heap
    ordered by (-gain, row); a row popped with a bound computed at the current step has the
    best gain g. Every row whose bound is within ``tol = 1e-6 n`` of g is then re-evaluated
    and the lowest row with gain ``>= g - tol`` is picked (ties), so the result equals plain
    greedy with the same tie rule. Builds the dense ``n x n`` similarity (float32).

    Returns ``(picks, gains)``: local rows in pick order and their marginal gains.
    """
    sim = cosine_similarity_shifted(xn)
    n = sim.shape[0]
    cur = torch.zeros(n, dtype=torch.float32, device=sim.device)
    heap = [(-g, j) for j, g in enumerate(sim.sum(dim=1, dtype=torch.float64).tolist())]
    heapq.heapify(heap)
    fresh = [0] * n  # step at which each bound was computed
    tol = TIE_RTOL * n

    def refresh(rows: list[int], t: int) -> None:
        """Recompute the gains of ``rows`` in one batch and push them back."""
        idx = torch.tensor(rows, dtype=torch.int64, device=sim.device)
        g = (sim.index_select(0, idx) - cur).clamp_min_(0.0).sum(dim=1, dtype=torch.float64).tolist()
        for i, g_i in zip(rows, g):
            fresh[i] = t
            heapq.heappush(heap, (-g_i, i))

    picks, gains = [], []
    for t in range(budget):
        while fresh[heap[0][1]] != t:  # lazy greedy: refresh the top stale bounds, a batch at a time
            batch: list[int] = []
            while heap and len(batch) < LAZY_BATCH and fresh[heap[0][1]] != t:
                batch.append(heapq.heappop(heap)[1])
            refresh(batch, t)
        neg, j = heapq.heappop(heap)
        best = -neg
        tied = [(j, best)]
        while heap and -heap[0][0] >= best - tol:  # rows that may tie with the best: make them fresh
            if fresh[heap[0][1]] != t:
                refresh([heapq.heappop(heap)[1]], t)
                continue
            neg_i, i = heapq.heappop(heap)
            tied.append((i, -neg_i))
        j, g = min(tied)
        for i, g_i in tied:
            if i != j:
                heapq.heappush(heap, (-g_i, i))
        picks.append(j)
        gains.append(g)
        torch.maximum(cur, sim[j], out=cur)
    return np.asarray(picks, dtype=np.int64), np.asarray(gains)


def facility_location_blocks(
    xn: torch.Tensor, budget: int, max_dense: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Facility location for a class larger than ``max_dense`` (one-round GreeDi).

    Approximation (Mirzasoleiman et al., NeurIPS 2013): the class's rows are permuted with
    ``rng`` and split into ``ceil(n / max_dense)`` near-equal blocks; the budget is split
    across blocks proportionally to their sizes (largest remainder); exact lazy greedy runs
    in each block with similarities within the block only (memory ``max_dense^2`` floats).
    Picks are interleaved round-robin across blocks (first pick of every block, then the
    second, ...). Gains are those within the block.
    """
    n = xn.shape[0]
    perm = rng.permutation(n)
    blocks = np.array_split(perm, math.ceil(n / max_dense))
    shares = largest_remainder(budget, np.array([len(b) for b in blocks]))
    results = []
    for block, share in zip(blocks, shares):
        if share > 0:
            p, g = facility_location_lazy_greedy(xn[torch.from_numpy(block).to(xn.device)], int(share))
            results.append((block[p], g))
    picks, gains = [], []
    for step in range(max((len(r[0]) for r in results), default=0)):
        for p, g in results:
            if step < len(p):
                picks.append(p[step])
                gains.append(g[step])
    return np.asarray(picks, dtype=np.int64), np.asarray(gains)


@register_selector(
    "facility_location",
    FacilityLocationParams,
    "Facility location on cosine similarity, lazy greedy (one-round GreeDi above max_dense rows).",
)
def facility_location(data: SelectionData, budgets: np.ndarray, params: FacilityLocationParams) -> SelectorOutput:
    gain = _nan_column(data.n)

    def pick(c, rows, b):
        xn = l2_normalize_rows(class_features(data, rows, params.model))
        if len(rows) <= params.max_dense:
            return facility_location_lazy_greedy(xn, b)
        return facility_location_blocks(xn, b, params.max_dense, data.class_rng(c))

    order, extras = _per_class_greedy(data, budgets, pick)
    for rows, local, (g,) in extras:
        gain[rows[local]] = g
    return SelectorOutput(order, {"gain": gain})


def graph_cut_greedy(xn: torch.Tensor, budget: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy maximisation of ``f(S) = sum_{i in V, j in S} s_ij - lam sum_{i in S, j in S} s_ij``.

    ``s_ij = (1 + cos(x_i, x_j)) / 2``. The gain of ``j`` is
    ``sum_i s_ij - lam (2 sum_{i in S} s_ij + s_jj)``: the first term is
    ``(n + x_j . sum_i x_i) / 2``, the second is updated with one matrix-vector product per
    pick, so every step evaluates all gains exactly in O(n D) with no n x n matrix (the
    result equals lazy greedy's). Gains within ``1e-6 n`` of the best count as ties (lowest row).

    Returns ``(picks, gains)``.
    """
    n = xn.shape[0]
    total = xn.to(torch.float64).sum(dim=0).to(torch.float32)
    column = 0.5 * (n + (xn @ total).to(torch.float64))
    self_sim = 0.5 * (1.0 + (xn * xn).sum(dim=1).to(torch.float64))
    penalty = torch.zeros(n, dtype=torch.float64, device=xn.device)
    picked = torch.zeros(n, dtype=torch.bool, device=xn.device)
    picks, gains = [], []
    for _ in range(budget):
        g = (column - lam * (2.0 * penalty + self_sim)).masked_fill_(picked, -float("inf"))
        j = first_near_best(g, TIE_RTOL * n, maximize=True)
        picks.append(j)
        gains.append(float(g[j]))
        picked[j] = True
        penalty += 0.5 * (1.0 + (xn @ xn[j]).to(torch.float64))
    return np.asarray(picks, dtype=np.int64), np.asarray(gains)


@register_selector(
    "graph_cut",
    GraphCutParams,
    "Graph cut on cosine similarity (representativeness minus lambda x redundancy), greedy.",
    prefix_consistent=True,
)
def graph_cut(data: SelectionData, budgets: np.ndarray, params: GraphCutParams) -> SelectorOutput:
    gain = _nan_column(data.n)
    order, extras = _per_class_greedy(
        data,
        budgets,
        lambda c, rows, b: graph_cut_greedy(l2_normalize_rows(class_features(data, rows, params.model)), b, params.lam),
    )
    for rows, local, (g,) in extras:
        gain[rows[local]] = g
    return SelectorOutput(order, {"gain": gain})


__all__ = [
    "facility_location",
    "facility_location_blocks",
    "facility_location_lazy_greedy",
    "graph_cut",
    "graph_cut_greedy",
]
