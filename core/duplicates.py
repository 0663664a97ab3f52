"""Near-duplicate groups: images much closer to each other, in every model, than to the rest.

A plain cosine threshold does not carry from one image set to another: how close distinct
images lie depends on the set (in the demo set, 28 px greyscale product photos, distinct
images reach cosine 0.94 while more than half the JPEG re-encoded copies fall below 0.90).
So a pair is measured against the rows' **neighbourhood radius**: in model ``m``, ``rad_m(i)`` is the
cosine distance from row ``i`` to its :data:`RADIUS_RANK`-th nearest other row (read from
the model's neighbour graph, :mod:`core.neighbors`), and the **relative similarity** of
rows ``i`` and ``j`` is::

    rel_m(i, j) = 1 - (1 - cos_m(i, j)) / max(rad_m(i), rad_m(j), RADIUS_FLOOR * median_k rad_m(k))

(unitless, at most 1: 1 for identical features, 0 for a pair as far apart as the radius).
Two rows are **near-duplicates** when ``rel_m(i, j) >= threshold`` in every model ``m``: the
pair's cosine distance is at most ``1 - threshold`` times the larger radius of the two. The
floor (half the median radius) keeps a burst of more than ``RADIUS_RANK`` near-identical
images together (their own radius is a distance between copies). Rows with the same file
content (``file_ids``, the images' content hashes) are duplicates whatever their features.

Candidate pairs are the first model's graph neighbours (``K`` per row) whose relative
similarity, from the graph's similarities, reaches the threshold; every candidate is then
checked in every model on the features themselves. A group larger than ``K + 1`` is still
found whole as long as its members' neighbour lists connect it. Groups are the connected
components of the duplicate pairs (union-find), so a chain ``a ~ b ~ c`` is one group even
when ``a`` and ``c`` are further apart.

Each member gets a **score**: its cosine similarity with the group's centre (the
normalised mean of the members' normalised rows), averaged over the models; the
**representative** of a group is its highest-scoring member (lowest row on ties: for a pair,
the first in dataset order). :meth:`DuplicateGroups.keep_one` keeps, per group, the best
member among the rows of a pool (the representative when it is in the pool), so ``select
--dedup`` selects from one image per group.

The radius rank, the floor and the default threshold were chosen on the demo set
(``assets/demo``, Fashion-MNIST) with injected copies (re-encoded, resized, slightly cropped
and colour-jittered): the highest recall with a pair precision of at least 0.97 there
(``bench/README.md``, "Near-duplicates", says how).
``bench/near_duplicates.py`` measures precision and recall on Oxford Flowers-17 with such
copies (``bench/README.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CoresetError
from .mapped import gather_rows
from .neighbors import NeighborGraph

#: Default relative similarity (module docstring) at or above which two images are
#: near-duplicates in a model; calibrated on the demo set (bench/near_duplicates.py --calibrate).
DEFAULT_THRESHOLD = 0.42
#: A row's neighbourhood radius is the cosine distance to its RADIUS_RANK-th nearest other row.
RADIUS_RANK = 5
#: The radius a pair is measured against is at least RADIUS_FLOOR times the median radius.
RADIUS_FLOOR = 0.5


@dataclass
class DuplicateGroups:
    """Near-duplicate groups of ``N`` rows (module docstring).

    Attributes:
        group: int64 ``[N]``, group id (0, 1, ... in order of each group's first row), ``-1``
            for a row in no group.
        representative: bool ``[N]``, the kept member of each group.
        score: float32 ``[N]``, cosine similarity to the group's centre averaged over models
            (NaN outside groups).
        similarity: float32 ``[N]``, lowest cosine similarity over the models between the row
            and its group's representative (1 for the representative, NaN outside groups).
        exact: bool ``[N]``, the row has the same file content as another row.
        threshold: the threshold used (relative similarity, module docstring).
        models: the models checked.
    """

    group: np.ndarray
    representative: np.ndarray
    score: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray
    threshold: float
    models: list[str]

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size and self.group.max() >= 0 else 0

    @property
    def n_duplicates(self) -> int:
        """Rows in a group that are not its representative (what "keep one" drops)."""
        return int(np.count_nonzero((self.group >= 0) & ~self.representative))

    def members(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.group == g)

    def keep_one(self, pool: np.ndarray | None = None) -> np.ndarray:
        """bool ``[N]``: the rows of ``pool`` (a bool mask; None = all rows) left when each group
        keeps one member of the pool: its representative when the representative is in the
        pool, else the pool member with the highest score (lowest row on ties, as for the
        representative)."""
        n = len(self.group)
        pool_mask = np.ones(n, dtype=bool) if pool is None else np.asarray(pool, dtype=bool)
        keep = pool_mask.copy()
        grouped = np.flatnonzero((self.group >= 0) & pool_mask)
        if grouped.size == 0:
            return keep
        keep[grouped] = False
        tied = _near_best(self.group[grouped], self.score[grouped])
        rank = np.lexsort((grouped, ~tied, ~self.representative[grouped], self.group[grouped]))
        ordered = grouped[rank]
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = self.group[ordered][1:] != self.group[ordered][:-1]
        keep[ordered[first]] = True
        return keep

    def leaks(self, pool: np.ndarray) -> int:
        """Groups with members both inside and outside ``pool`` (e.g. a training image that
        is a copy of a test image)."""
        pool = np.asarray(pool, dtype=bool)
        g_in = np.unique(self.group[(self.group >= 0) & pool])
        g_out = np.unique(self.group[(self.group >= 0) & ~pool])
        return int(np.intersect1d(g_in, g_out).size)

    def columns(self) -> dict[str, np.ndarray]:
        """Per-sample columns for ``scores.csv``: ``duplicate_group`` (-1: none) and
        ``duplicate_of`` (the row index of the group's representative, -1: none or itself)."""
        rep_of = np.full(len(self.group), -1, dtype=np.int64)
        reps = np.flatnonzero(self.representative)
        rep_by_group = np.full(self.n_groups, -1, dtype=np.int64)
        rep_by_group[self.group[reps]] = reps
        members = np.flatnonzero((self.group >= 0) & ~self.representative)
        rep_of[members] = rep_by_group[self.group[members]]
        return {"duplicate_group": self.group.copy(), "duplicate_of": rep_of}

    def summary(self) -> dict:
        return {
            "threshold": self.threshold,
            "criterion": f"relative similarity, radius: neighbour {RADIUS_RANK}, floor {RADIUS_FLOOR} x median",
            "models": list(self.models),
            "groups": self.n_groups,
            "rows_in_groups": int(np.count_nonzero(self.group >= 0)),
            "duplicates": self.n_duplicates,
            "exact_copies": int(np.count_nonzero(self.exact)),
        }


#: Scores within this of their group's best are equal (the members of a pair are equally close
#: to its centre, up to float rounding): the lowest row among them wins.
SCORE_TIE = 1e-5


def _near_best(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """bool: the score is within :data:`SCORE_TIE` of the best score of its group (``group``:
    non-negative ids, one per row)."""
    best = np.full(int(group.max()) + 1 if group.size else 0, -np.inf)
    np.maximum.at(best, group, score.astype(np.float64))
    return score.astype(np.float64) >= best[group] - SCORE_TIE


def _find(parent: np.ndarray) -> np.ndarray:
    """Roots of a union-find forest, with full path compression (vectorised)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def union_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """int64 ``[N]`` component label (the smallest row of its component) of the graph with
    edges ``pairs`` (int64 ``[E, 2]``): union-find by smallest root."""
    parent = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return parent
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    while True:
        ra, rb = _find(parent)[a], _find(parent)[b]
        differ = ra != rb
        if not differ.any():
            return _find(parent)
        lo, hi = np.minimum(ra[differ], rb[differ]), np.maximum(ra[differ], rb[differ])
        # hook each larger root under the smallest root it meets (np.minimum.at: several edges per root)
        np.minimum.at(parent, hi, lo)
        parent = _find(parent)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _pair_cosines(x: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        rows, inv = np.unique(p.reshape(-1), return_inverse=True)
        u = _unit(gather_rows(x, rows))
        inv = inv.reshape(-1, 2)
        out[s : s + chunk] = np.einsum("ij,ij->i", u[inv[:, 0]], u[inv[:, 1]])
    return out


#: Rows of a graph scored at a time.
_ROWS = 1 << 16
#: The smallest radius: a pair of identical rows (distance 0, or float32 rounding) stays a duplicate.
_TINY = 1e-6


def neighbourhood_radius(graph: NeighborGraph, rank: int | None = None) -> tuple[np.ndarray, float]:
    """``(radius, floor)`` of a model's rows: float32 ``[N]`` cosine distance from each row to
    its ``rank``-th nearest other row (default :data:`RADIUS_RANK`; the farthest one the graph
    holds when it holds fewer; NaN for a row without neighbours), and the smallest radius a
    pair is measured against: :data:`RADIUS_FLOOR` times the median radius."""
    rank = RADIUS_RANK if rank is None else int(rank)
    n = graph.n
    radius = np.full(n, np.nan, dtype=np.float32)
    count = np.count_nonzero(graph.indices >= 0, axis=1)
    has = np.flatnonzero(count > 0)
    if has.size:
        col = np.minimum(rank, count[has]) - 1
        radius[has] = 1.0 - graph.similarities[has, col]
    floor = float(RADIUS_FLOOR * np.median(radius[has])) if has.size else 0.0
    return radius, max(floor, _TINY)


def _relative(cos: np.ndarray, radius_a: np.ndarray, radius_b: np.ndarray, floor: float) -> np.ndarray:
    """Relative similarity ``1 - (1 - cos) / max(radius_a, radius_b, floor)`` (module docstring;
    a NaN radius, a row without neighbours, is left out of the max; NaN cosines give ``-inf``)."""
    cos = np.asarray(cos, dtype=np.float32)
    scale = np.fmax(np.fmax(radius_a, radius_b), np.float32(floor))  # fmax: NaN only when both are
    with np.errstate(invalid="ignore"):
        out = 1.0 - (1.0 - cos) / scale
    return np.where(np.isnan(out), -np.inf, out).astype(np.float32)


def near_duplicates(
    features: Mapping[str, np.ndarray],
    graphs: Mapping[str, NeighborGraph],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    file_ids: Sequence[str] | np.ndarray | None = None,
) -> DuplicateGroups:
    """The near-duplicate groups of the rows of ``features`` (module docstring).

    ``graphs``: every model's neighbour graph over the same rows (each gives its rows' radii;
    the first model's also the candidate pairs). ``threshold``: the relative similarity in
    ``[0, 1]`` a pair must reach in every model. ``file_ids``: each row's content hash (``""``
    where unknown); rows with the same one are always duplicates."""
    models = list(features)
    if not models:
        raise CoresetError("Near-duplicates need at least one model's features.")
    if not 0.0 <= float(threshold) <= 1.0:
        raise CoresetError(
            f"The near-duplicate threshold is a relative similarity in [0, 1] (1: identical only), got {threshold!r}."
        )
    t = float(threshold)
    n = int(np.asarray(features[models[0]]).shape[0])
    for m in models:
        if m not in graphs:
            raise CoresetError(f"Near-duplicates need the neighbour graph of every model; {m!r} has none.")
        if graphs[m].n != n:
            raise CoresetError(f"The neighbour graph of {m!r} has {graphs[m].n} rows, the features {n}.")
    radius = {m: neighbourhood_radius(graphs[m]) for m in models}
    # candidate pairs (i < j): the first model's graph, each neighbour scored from its similarity
    graph, r0, floor0 = graphs[models[0]], *radius[models[0]]
    found = []
    for a in range(0, n, _ROWS):
        idx = graph.indices[a : a + _ROWS].astype(np.int64)
        valid = idx >= 0
        rel = _relative(graph.similarities[a : a + _ROWS], r0[a : a + _ROWS, None], r0[np.maximum(idx, 0)], floor0)
        rr, cc = np.nonzero(valid & (rel >= t))
        found.append(np.stack([rr + a, idx[rr, cc]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.sort(pairs, axis=1), axis=0) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    # every model (the first one again, on the features: the graph may be approximate)
    ok = np.ones(len(pairs), dtype=bool)
    for m in models:
        if ok.any():
            r, floor = radius[m]
            p = pairs[ok]
            ok[ok] = _relative(_pair_cosines(features[m], p), r[p[:, 0]], r[p[:, 1]], floor) >= t
    pairs = pairs[ok]
    exact = np.zeros(n, dtype=bool)
    if file_ids is not None:
        ids = np.asarray(file_ids).astype(str)
        if len(ids) != n:
            raise CoresetError(f"file_ids has {len(ids)} entries but there are {n} rows.")
        known = np.flatnonzero(ids != "")
        uniq, inv, counts = np.unique(ids[known], return_inverse=True, return_counts=True)
        first = np.full(len(uniq), n, dtype=np.int64)
        np.minimum.at(first, inv, known)  # the first row of each content
        dup = counts[inv] > 1
        exact[known[dup]] = True
        same = np.stack([first[inv[dup]], known[dup]], axis=1)
        same = same[same[:, 0] != same[:, 1]]
        pairs = np.concatenate([pairs, same]) if len(same) else pairs
    root = union_groups(n, pairs)
    size = np.bincount(root, minlength=n)
    in_group = size[root] > 1
    group = np.full(n, -1, dtype=np.int64)
    roots = np.unique(root[in_group])  # the smallest row of each group, ascending
    group[in_group] = np.searchsorted(roots, root[in_group])
    score = np.full(n, np.nan, dtype=np.float32)
    similarity = np.full(n, np.nan, dtype=np.float32)
    representative = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(in_group)
    if rows.size:
        g = group[rows]
        total = np.zeros(len(rows), dtype=np.float64)
        units = {}
        for m in models:
            u = _unit(gather_rows(features[m], rows))
            centre = np.zeros((len(roots), u.shape[1]), dtype=np.float64)
            np.add.at(centre, g, u)
            centre /= np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
            total += np.einsum("ij,ij->i", u, centre[g])
            units[m] = u
        score[rows] = (total / len(models)).astype(np.float32)
        best = np.lexsort((rows, ~_near_best(g, score[rows]), g))
        first = np.ones(len(best), dtype=bool)
        first[1:] = g[best][1:] != g[best][:-1]
        rep_local = np.empty(len(roots), dtype=np.int64)
        rep_local[g[best][first]] = best[first]
        representative[rows[rep_local]] = True
        low = np.full(len(rows), np.inf)
        for m in models:
            u = units[m]
            low = np.minimum(low, np.einsum("ij,ij->i", u, u[rep_local[g]]))
        similarity[rows] = low.astype(np.float32)
        similarity[rows[rep_local]] = 1.0
    return DuplicateGroups(group, representative, score, similarity, exact, float(threshold), models)


def duplicates_frame(groups: DuplicateGroups, labels=None, paths=None, split=None):
    """``duplicates.csv`` as a DataFrame: one row per image in a group, groups in order, the
    representative first: ``group, index, path, label, split, representative, similarity,
    exact_copy`` (``similarity``: lowest cosine over the models to the representative)."""
    import pandas as pd

    from .text import display_array

    rows = np.flatnonzero(groups.group >= 0)
    order = np.lexsort((rows, ~groups.representative[rows], groups.group[rows]))
    rows = rows[order]
    data = {"group": groups.group[rows], "index": rows}
    data["path"] = display_array(np.asarray(paths)[rows]) if paths is not None else np.full(len(rows), "")
    if labels is not None:
        data["label"] = np.asarray(labels)[rows]
    if split is not None:
        data["split"] = np.asarray(split)[rows]
    data["representative"] = groups.representative[rows]
    data["similarity"] = np.round(groups.similarity[rows].astype(np.float64), 6)
    data["exact_copy"] = groups.exact[rows]
    return pd.DataFrame(data)


__all__ = [
    "DEFAULT_THRESHOLD",
    "RADIUS_FLOOR",
    "RADIUS_RANK",
    "DuplicateGroups",
    "duplicates_frame",
    "near_duplicates",
    "neighbourhood_radius",
    "union_groups",
]
