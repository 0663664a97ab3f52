"""The baseline selectors of the paper's comparison, each run per class.

Feature space of the single-model methods (``moderate_ds``, ``kcenter``, ``herding``,
``facility_location``, ``graph_cut``), set by their ``model`` parameter:

* ``model="<name>"``: that model's features (L2-normalised per row if ``normalize=l2``);
* ``model=""`` (default) with one model: that model, as above;
* ``model=""`` with several models: each model's rows L2-normalised, then concatenated
  (every model weighs the same whatever its dimension or scale; the cosine similarity of
  the concatenation is the mean of the per-model cosine similarities).

``min`` combines models like RAM-APL (mean within-class rank); ``random`` needs no features.

Random streams: ``kcenter``'s start and ``facility_location``'s block split in class ``c``
use ``numpy.random.default_rng([seed, c])``; ``random`` uses ``default_rng(seed)``.
Ties: a greedy step picks the lowest row among the candidates whose value is within
``TIE_RTOL * scale`` of the best (``TIE_RTOL = 1e-6``; the scale of each method is given in
its docstring). Exact ties are common (symmetric configurations, duplicates) and float32
round-off would otherwise break them arbitrarily, differently on CPU and GPU.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

from ..errors import SelectionInputError
from ._linalg import cosine_similarity_shifted, l2_normalize_rows, parallel_map
from ._ordering import concat_class_picks, keep_band_per_class
from .budgets import largest_remainder
from .params import (
    FacilityLocationParams, GraphCutParams, HerdingParams, KCenterParams, MinParams, ModerateDSParams,
    RandomParams,
)
from .ram_apl import class_mean_ranks, mean_rank_fraction
from .registry import SelectionData, SelectorOutput, register_selector


# --------------------------------------------------------------------------- feature space
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
        x = torch.from_numpy(data.features[names[0]][rows]).to(data.device)
        return l2_normalize_rows(x) if normalize == "l2" else x
    return torch.cat([l2_normalize_rows(torch.from_numpy(data.features[m][rows]).to(data.device))
                      for m in names], dim=1)


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


# --------------------------------------------------------------------------- min
@register_selector("min", MinParams,
                   "MIN: closest to the class mean (mean within-class rank over models, as in RAM).",
                   multi_model=True, prefix_consistent=True, score_column="score", representative="low")
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


# --------------------------------------------------------------------------- moderate_ds
def moderate_band_start(sizes: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """First kept rank of Moderate-DS: ``round-half-even((N_c - b_c) / 2)`` (official code)."""
    return np.round(0.5 * (np.asarray(sizes, dtype=np.float64) - np.asarray(budgets))).astype(np.int64)


@register_selector("moderate_ds", ModerateDSParams,
                   "Moderate-DS (Xia et al., ICLR 2023): the band of distances around the median "
                   "distance to the class's coordinate-wise median.",
                   score_column="distance", representative="low")
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


# --------------------------------------------------------------------------- kcenter
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


@register_selector("kcenter", KCenterParams,
                   "k-Center greedy (Sener & Savarese 2018): farthest-first traversal from a seeded random start.",
                   stochastic=True, prefix_consistent=True)
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


# --------------------------------------------------------------------------- herding
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


@register_selector("herding", HerdingParams,
                   "Herding (Welling 2009 / iCaRL): greedily match the mean of the kept rows to the class mean.",
                   prefix_consistent=True)
def herding(data: SelectionData, budgets: np.ndarray, params: HerdingParams) -> SelectorOutput:
    err = _nan_column(data.n)
    order, extras = _per_class_greedy(
        data, budgets, lambda c, rows, b: herding_greedy(class_features(data, rows, params.model, params.normalize), b))
    for rows, local, (e,) in extras:
        err[rows[local]] = e
    return SelectorOutput(order, {"herding_error": err})


# --------------------------------------------------------------------------- facility location
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
            batch = []
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


def facility_location_blocks(xn: torch.Tensor, budget: int, max_dense: int, rng: np.random.Generator
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


@register_selector("facility_location", FacilityLocationParams,
                   "Facility location on cosine similarity, lazy greedy (one-round GreeDi above max_dense rows).")
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


# --------------------------------------------------------------------------- graph cut
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


@register_selector("graph_cut", GraphCutParams,
                   "Graph cut on cosine similarity (representativeness minus lambda x redundancy), greedy.",
                   prefix_consistent=True)
def graph_cut(data: SelectionData, budgets: np.ndarray, params: GraphCutParams) -> SelectorOutput:
    gain = _nan_column(data.n)
    order, extras = _per_class_greedy(
        data, budgets,
        lambda c, rows, b: graph_cut_greedy(l2_normalize_rows(class_features(data, rows, params.model)), b, params.lam))
    for rows, local, (g,) in extras:
        gain[rows[local]] = g
    return SelectorOutput(order, {"gain": gain})


# --------------------------------------------------------------------------- random
@register_selector("random", RandomParams, "Uniform random sample without replacement within each class (seeded).",
                   stochastic=True, prefix_consistent=True)
def random_selector(data: SelectionData, budgets: np.ndarray, params: RandomParams) -> SelectorOutput:
    """``random_key = default_rng(seed).random(N)``; per class the ``b_c`` smallest keys are
    kept, in ascending key order (a uniform sample without replacement, in random order)."""
    keys = np.random.default_rng(data.seed).random(data.n)
    order, _ = keep_band_per_class(keys, data, budgets)
    return SelectorOutput(order, {"random_key": keys})


__all__ = [
    "TIE_RTOL", "class_features", "first_near_best", "facility_location_blocks", "facility_location_lazy_greedy", "graph_cut_greedy",
    "herding_greedy", "kcenter_greedy", "moderate_band_start",
]
