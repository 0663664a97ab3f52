"""Nearest-neighbour graphs: each row's K nearest other rows by cosine similarity, one graph per model.

A graph is built once per model's features, kept beside them on disk (:class:`GraphCache`,
keyed by the features' digest) and in the process, and read by everything that needs
neighbours: the label consensus (:mod:`core.selection.consensus`) and with it ``cleaned``
and ``auto``, the near-duplicate groups (:mod:`core.duplicates`) and the app.

A :class:`NeighborGraph` of ``N`` rows holds

* ``indices``: int32 ``[N, K]``, the rows nearest to each row, nearest first (``-1`` where a
  row has fewer than ``K`` other rows); a row is never its own neighbour, rows with the same
  features are each other's;
* ``similarities``: float32 ``[N, K]``, the cosine similarity ``x_i . x_j / (|x_i| |x_j|)``
  (unitless, in [-1, 1]) of each pair, non-increasing along a row (``-inf`` in the padding);
  equal similarities are ordered by row index.

Two builders (:func:`build_graph`, ``method``; ``auto`` = ``exact`` up to :data:`EXACT_MAX`
rows, ``ivf`` above):

* ``exact``: every pair, as chunked matrix products of the L2-normalised rows and a top-K per
  chunk of rows (no ``N x N`` matrix is formed). Time ``O(N^2 D)``; the reference of the tests.
* ``ivf``: an inverted file, searched list by list as matrix products. (1) A partition: PCA of
  the unit rows to ``r = min(64, D)`` dimensions, fitted on a seeded sample of at most
  20,000 rows (a randomized range finder), then ``L = max(1, round(N / list_size))``
  centroids by k-means in that space (6 Lloyd iterations on a seeded sample of ``16 L`` rows).
  (2) Every row's ``probes`` nearest centroids (its own list is the nearest; the others are the
  nearest among the ``10 probes`` centroids nearest to it). (3) The unit rows are copied once, in list
  order (float32 ``[N, D]``: ``4 N D`` bytes, the only allocation of the features' size;
  the pages of a memory-mapped input are handed back to the OS as they are read). (4) For
  each list, every row that probes it is compared with the list's rows in the full
  dimension (one matrix product) and each row's running top-K is merged with what it found.
  A row's neighbours are therefore exact among the rows of its ``probes`` nearest lists;
  a true neighbour in a list it does not probe is missed. Time ``O(N probes (N / L) D +
  N L r)``; the recall against ``exact`` is measured in ``tests/test_neighbors.py`` and
  ``bench/scale_smart.py``.

Both run in torch on the features' device of choice (a CUDA GPU when given).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .errors import CoresetError, SelectionInputError
from .hashing import array_digest
from .mapped import gather_rows, release_pages

#: Neighbours kept per row. Three times the label consensus's k = 10, so that a pool that
#: keeps a third of the rows (auto's folds inside a train split) still finds 10 of them on
#: average; see :func:`knn_among` for the rows that do not.
GRAPH_K = 30
#: Up to this many rows, ``auto`` builds the exact graph (at 10,000 x 1,280 about 2 s on 2 cores).
EXACT_MAX = 10_000
#: Rows per inverted list of ``ivf`` (the list count is ``N / LIST_SIZE``).
LIST_SIZE = 256
#: Lists each row is compared with (its nearest centroids). Chosen on Fashion-MNIST features
#: for recall against ``exact`` (bench/README.md, "Neighbour graphs").
PROBES = 8
#: Dimensions of the PCA space the partition is made in, Lloyd iterations of its k-means and
#: training rows per list: chosen on Fashion-MNIST features (20,000 x 1,280, recall@10 against
#: the exact graph 0.988 with 64 dimensions, 6 iterations, 16 rows a list; 0.989 with 128, 10,
#: 32, for 2.5x the partition's time at a million rows).
PARTITION_DIMS = 64
KMEANS_ITERATIONS = 6
KMEANS_ROWS_PER_LIST = 16
#: Rows of the sample the PCA is fitted on.
PCA_SAMPLE = 20_000
#: Bytes of the temporaries one matrix product of a builder may allocate.
CHUNK_BYTES = 64 << 20
#: Bytes of a score block that should stay in the CPU's cache (nearest-centroid searches: a
#: [rows, lists] block written to memory and read back costs twice the matrix product).
CACHE_BYTES = 1 << 20
#: Queries :func:`knn_among` reads from the graph at a time.
QUERY_BLOCK = 65536

Progress = Callable[[int, int, str], None]


@dataclass
class NeighborGraph:
    """The ``K`` nearest other rows of every row of one model's features (module docstring).

    Attributes:
        indices: int32 ``[N, K]``, nearest first, ``-1`` padding.
        similarities: float32 ``[N, K]`` cosine similarities, ``-inf`` padding.
        method: ``exact`` or ``ivf``.
        params: how it was built (``lists``, ``probes``, ``dims``, ``seed``, seconds).
        digest: :func:`core.hashing.array_digest` (or a store's digest) of the features.
    """

    indices: np.ndarray
    similarities: np.ndarray
    method: str
    params: dict = field(default_factory=dict)
    digest: str = ""

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.indices.nbytes + self.similarities.nbytes)

    def truncated(self, k: int) -> NeighborGraph:
        """The same graph with the ``k`` nearest neighbours of each row (``k <= self.k``)."""
        if k >= self.k:
            return self
        return NeighborGraph(
            np.ascontiguousarray(self.indices[:, :k]),
            np.ascontiguousarray(self.similarities[:, :k]),
            self.method,
            dict(self.params),
            self.digest,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph to ``path`` (an uncompressed ``.npz``, atomically)."""
        from .workspace import atomic_save_npz

        meta = json.dumps({"method": self.method, "params": self.params, "digest": self.digest})
        return atomic_save_npz(
            path, compressed=False, indices=self.indices, similarities=self.similarities, meta=np.array(meta)
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> NeighborGraph:
        """Read a graph written by :meth:`save` (``CoresetError`` naming the file if it is damaged)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                indices, sims, meta = z["indices"], z["similarities"], json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise CoresetError(f"Neighbour graph {path} cannot be read ({exc}); delete it to build it again.") from exc
        if indices.ndim != 2 or indices.shape != sims.shape or indices.dtype != np.int32:
            raise CoresetError(f"Neighbour graph {path} is malformed; delete it to build it again.")
        return cls(
            indices,
            sims.astype(np.float32, copy=False),
            str(meta.get("method", "")),
            dict(meta.get("params", {})),
            str(meta.get("digest", "")),
        )


# --------------------------------------------------------------------------- helpers
def _unit(t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.float32)
    return t / torch.linalg.vector_norm(t, dim=1, keepdim=True).clamp_min(1e-12)


def _rows_per_chunk(bytes_per_row: int, n: int) -> int:
    return int(max(1, min(max(n, 1), CHUNK_BYTES // max(1, bytes_per_row))))


def _check_finite(chunk: torch.Tensor, start: int, name: str) -> None:
    """:class:`~core.errors.SelectionInputError` (the selection's own wording) at the first row of
    ``chunk`` (rows ``start...``) holding NaN or an infinity."""
    finite = torch.isfinite(chunk).all(dim=1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0]) + start
        raise SelectionInputError(
            f"Features{f' of model {name!r}' if name else ''} contain NaN or infinite values (first at row {row}); "
            "re-embed the images or drop those rows."
        )


def _canonical(sims: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row sorted by similarity (descending), equal similarities by row index, padding last."""
    key = torch.where(idx < 0, torch.iinfo(torch.int64).max, idx)
    o1 = torch.sort(key, dim=1, stable=True).indices
    s1, i1 = sims.gather(1, o1), idx.gather(1, o1)
    o2 = torch.sort(s1, dim=1, descending=True, stable=True).indices
    return s1.gather(1, o2), i1.gather(1, o2)


def _finish(best_s: torch.Tensor, best_i: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    out_s = np.empty(tuple(best_s.shape), dtype=np.float32)
    out_i = np.empty(tuple(best_i.shape), dtype=np.int32)
    step = max(1, (1 << 20) // max(1, best_s.shape[1]))
    for a in range(0, best_s.shape[0], step):
        s, i = _canonical(best_s[a : a + step].cpu(), best_i[a : a + step].cpu())
        out_s[a : a + step] = s.numpy()
        out_i[a : a + step] = i.to(torch.int32).numpy()
    return out_i, out_s


# --------------------------------------------------------------------------- builders
def exact_graph(
    x: np.ndarray,
    k: int = GRAPH_K,
    *,
    device: str | torch.device = "cpu",
    name: str = "",
    progress: Progress | None = None,
) -> NeighborGraph:
    """The exact graph (every pair compared); see the module docstring."""
    t0 = time.perf_counter()
    dev = torch.device(device)
    n, d = int(x.shape[0]), int(x.shape[1])
    kk = max(0, min(int(k), n - 1))
    xu = torch.empty((n, d), dtype=torch.float32, device=dev)
    step = _rows_per_chunk(4 * d, n)
    for a in range(0, n, step):
        chunk = _as_tensor(x[a : a + step])
        _check_finite(chunk, a, name)
        xu[a : a + step] = _unit(chunk).to(dev)
    best_s = torch.full((n, int(k)), -float("inf"), dtype=torch.float32)
    best_i = torch.full((n, int(k)), -1, dtype=torch.int64)
    if kk > 0:
        step = _rows_per_chunk(4 * n, n)
        for a in range(0, n, step):
            b = min(n, a + step)
            sim = xu[a:b] @ xu.T
            sim[torch.arange(b - a, device=dev), torch.arange(a, b, device=dev)] = -float("inf")
            v, j = torch.topk(sim, kk, dim=1)
            best_s[a:b, :kk] = v.cpu()
            best_i[a:b, :kk] = j.cpu()
            if progress is not None:
                progress(b, n, f"neighbours{f' of {name}' if name else ''} (exact)")
    indices, sims = _finish(best_s, best_i)
    return NeighborGraph(indices, sims, "exact", {"seconds": round(time.perf_counter() - t0, 3)})


def _as_tensor(chunk: np.ndarray) -> torch.Tensor:
    arr = np.ascontiguousarray(chunk, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


def ivf_params(n: int, probes: int | None = None, list_size: int | None = None) -> dict[str, int]:
    """``lists`` and ``probes`` of an ``ivf`` graph of ``n`` rows (module docstring)."""
    lists = max(1, round(n / int(list_size or LIST_SIZE)))
    return {"lists": int(lists), "probes": int(min(lists, probes or PROBES))}


def ivf_graph(
    x: np.ndarray,
    k: int = GRAPH_K,
    *,
    probes: int | None = None,
    list_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    name: str = "",
    progress: Progress | None = None,
) -> NeighborGraph:
    """The inverted-file graph; see the module docstring."""
    t0 = time.perf_counter()
    dev = torch.device(device)
    n, d = int(x.shape[0]), int(x.shape[1])
    p = ivf_params(n, probes, list_size)
    n_lists, n_probes = p["lists"], p["probes"]
    r = int(min(PARTITION_DIMS, d))
    what = f"neighbours{f' of {name}' if name else ''}"
    gen = torch.Generator().manual_seed(int(seed))
    step = _rows_per_chunk(4 * d, n)

    # (1) PCA basis from a sample of unit rows
    sample = np.sort(torch.randperm(n, generator=gen)[: min(n, PCA_SAMPLE)].numpy())
    xs = _unit(_as_tensor(gather_rows(x, sample)))
    _check_finite(xs, 0, name)
    basis = principal_axes(xs - xs.mean(dim=0), r, gen).to(dev)
    del xs
    # projections of every row (the pass also checks finiteness)
    z = torch.empty((n, r), dtype=torch.float32, device=dev)
    for a in range(0, n, step):
        chunk = _as_tensor(x[a : a + step])
        _check_finite(chunk, a, name)
        z[a : a + step] = _unit(chunk).to(dev) @ basis
        release_pages(x, a, min(n, a + step))
    # k-means on a sample of the projections
    train = torch.randperm(n, generator=gen)[: min(n, KMEANS_ROWS_PER_LIST * n_lists)].to(dev)
    zt = z[train]
    cent = zt[torch.randperm(len(zt), generator=gen)[:n_lists].to(dev)].clone()
    for _ in range(KMEANS_ITERATIONS):
        assign = _nearest_centroid(zt, cent)
        sums = torch.zeros_like(cent).index_add_(0, assign, zt)
        counts = torch.bincount(assign, minlength=n_lists).to(torch.float32)
        cent = torch.where((counts > 0)[:, None], sums / counts.clamp_min(1.0)[:, None], cent)
    del zt
    # (2) every row's probes; its list is the nearest
    probe = _probes(z, cent, n_probes)
    del z
    own = probe[:, 0]
    order = torch.argsort(own, stable=True)
    offsets = torch.zeros(n_lists + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(torch.bincount(own, minlength=n_lists), 0)
    position = torch.empty(n, dtype=torch.int64, device=dev)
    position[order] = torch.arange(n, device=dev)
    # (3) the unit rows in list order
    xu = torch.empty((n, d), dtype=torch.float32, device=dev)
    for a in range(0, n, step):
        b = min(n, a + step)
        xu[position[a:b]] = _unit(_as_tensor(x[a:b])).to(dev)
        release_pages(x, a, b)
    # the queries of every list: rows that probe it, in list order
    flat_list = probe.reshape(-1)
    flat_row = torch.arange(n, device=dev).repeat_interleave(n_probes)
    by_list = torch.argsort(flat_list, stable=True)
    q_rows = flat_row[by_list]
    del flat_list, flat_row, by_list
    q_offsets = torch.zeros(n_lists + 1, dtype=torch.int64, device=dev)
    q_offsets[1:] = torch.cumsum(torch.bincount(probe.reshape(-1), minlength=n_lists), 0)
    del probe
    offsets_l, q_offsets_l = offsets.tolist(), q_offsets.tolist()
    # (4) list by list
    t_search = time.perf_counter()
    pairs = 0
    kk = int(k)
    best_s = torch.full((n, kk), -float("inf"), dtype=torch.float32, device=dev)
    best_i = torch.full((n, kk), -1, dtype=torch.int64, device=dev)
    done_q, total_q = 0, int(q_offsets_l[-1])
    last = time.perf_counter()
    for c in range(n_lists):
        a, b = offsets_l[c], offsets_l[c + 1]
        qa, qb = q_offsets_l[c], q_offsets_l[c + 1]
        if a == b or qa == qb:
            continue
        members = xu[a:b]
        member_rows = order[a:b]
        q_step = _rows_per_chunk(4 * (b - a + kk + d), qb - qa)
        for s in range(qa, qb, q_step):
            rows = q_rows[s : min(qb, s + q_step)]  # distinct: a row probes a list once
            pos = position.index_select(0, rows)
            sim = xu.index_select(0, pos) @ members.T
            pairs += sim.numel()
            mine = torch.nonzero((pos >= a) & (pos < b)).squeeze(1)
            if mine.numel():
                sim[mine, pos[mine] - a] = -float("inf")
            # merge with the running top-k in one top-k over [best so far | this list]
            top_s, top_j = torch.topk(torch.cat([best_s.index_select(0, rows), sim], dim=1), kk, dim=1)
            prev = best_i.index_select(0, rows).gather(1, top_j.clamp(max=kk - 1))
            top_i = torch.where(top_j < kk, prev, member_rows[(top_j - kk).clamp(min=0)])
            best_s.index_copy_(0, rows, top_s)
            best_i.index_copy_(0, rows, top_i)
        done_q += qb - qa
        if progress is not None and (time.perf_counter() - last > 0.5 or c == n_lists - 1):
            last = time.perf_counter()
            progress(done_q, total_q, f"{what} (ivf)")
    del xu
    indices, sims = _finish(best_s, best_i)
    params = {
        "lists": n_lists,
        "probes": n_probes,
        "dims": r,
        "seed": int(seed),
        "largest_list": int(torch.diff(offsets).max()),
        "pairs_per_row": round(pairs / max(n, 1), 1),
        "partition_s": round(t_search - t0, 3),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return NeighborGraph(indices, sims, "ivf", params)


def principal_axes(xc: torch.Tensor, r: int, gen: torch.Generator, power: int = 3) -> torch.Tensor:
    """float32 ``[D, r]``: the top ``r`` principal axes of the centred rows ``xc`` ``[m, D]`` by a
    seeded randomized range finder (Halko et al. 2011, ``power`` subspace iterations with QR),
    then the SVD of the projected rows: ``O(m D r)`` instead of an ``O(D^3)`` eigendecomposition."""
    d = xc.shape[1]
    if r >= d:
        return torch.linalg.svd(xc, full_matrices=False).Vh.T.contiguous()
    q = min(d, r + 16)
    y = xc @ torch.randn((d, q), generator=gen)
    for _ in range(power):
        y = torch.linalg.qr(y).Q
        y = xc @ (xc.T @ y)
    basis = torch.linalg.qr(y).Q
    vh = torch.linalg.svd(basis.T @ xc, full_matrices=False).Vh
    return vh[:r].T.contiguous()


#: A row's probes are chosen among this many times ``probes`` centroids nearest to its own (on
#: Fashion-MNIST features, 10 gives the recall of a search over every centroid, 3 loses 0.005).
PROBE_CANDIDATES = 10


def _probes(z: torch.Tensor, cent: torch.Tensor, m: int) -> torch.Tensor:
    """int64 ``[n, m]``: each row's ``m`` nearest centroids (Euclidean, in the partition's space),
    nearest first. The nearest is exact (:func:`_nearest_centroid`); the others are the nearest
    among the ``PROBE_CANDIDATES * m`` centroids nearest to that one (a top-k over every
    centroid for every row cost a third of the build at a million rows)."""
    n, n_lists = z.shape[0], cent.shape[0]
    c = min(n_lists, PROBE_CANDIDATES * m)
    half_sq = 0.5 * (cent * cent).sum(dim=1)
    near = _nearest_centroids(cent, cent, c)  # [L, c], itself first
    own = _nearest_centroid(z, cent)
    out = torch.empty((n, m), dtype=torch.int64, device=z.device)
    by_own = torch.argsort(own, stable=True)
    bounds = torch.zeros(n_lists + 1, dtype=torch.int64)
    bounds[1:] = torch.cumsum(torch.bincount(own, minlength=n_lists), 0).cpu()
    for g, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        if a == b:
            continue
        rows = by_own[a:b]  # the rows whose nearest centroid is g share their candidates
        cand = near[g]
        score = z.index_select(0, rows) @ cent.index_select(0, cand).T
        score.sub_(half_sq.index_select(0, cand))
        out[rows] = cand[torch.topk(score, m, dim=1).indices]
    return out


def _nearest_centroid(z: torch.Tensor, cent: torch.Tensor) -> torch.Tensor:
    """int64 ``[n]``: each row's nearest centroid (Euclidean), in cache-sized chunks of rows."""
    half_sq = 0.5 * (cent * cent).sum(dim=1)
    out = torch.empty(z.shape[0], dtype=torch.int64, device=z.device)
    step = max(1, min(z.shape[0], CACHE_BYTES // (4 * cent.shape[0])))
    for a in range(0, z.shape[0], step):
        score = z[a : a + step] @ cent.T
        out[a : a + step] = score.sub_(half_sq).argmax(dim=1)
    return out


def _nearest_centroids(z: torch.Tensor, cent: torch.Tensor, m: int) -> torch.Tensor:
    """int64 ``[n, m]``: the ``m`` centroids nearest to each row of ``z`` (Euclidean), nearest first."""
    score = z @ cent.T
    score.sub_(0.5 * (cent * cent).sum(dim=1))
    return torch.topk(score, m, dim=1).indices


def build_graph(
    x: np.ndarray,
    k: int = GRAPH_K,
    *,
    method: str = "auto",
    seed: int = 0,
    device: str | torch.device = "cpu",
    name: str = "",
    progress: Progress | None = None,
) -> NeighborGraph:
    """The neighbour graph of the rows of ``x`` (float ``[N, D]``, raw features; may be a
    memory map): ``exact`` up to :data:`EXACT_MAX` rows, ``ivf`` above (``method="auto"``)."""
    if method not in ("auto", "exact", "ivf"):
        raise CoresetError(f"Unknown neighbour search {method!r}; use auto, exact or ivf.")
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if x.ndim != 2:
        raise CoresetError(f"Features{f' of model {name!r}' if name else ''} must be 2-D [N, D], got shape {x.shape}.")
    if method == "auto":
        method = "exact" if x.shape[0] <= EXACT_MAX else "ivf"
    if method == "exact":
        return exact_graph(x, k, device=device, name=name, progress=progress)
    return ivf_graph(x, k, seed=seed, device=device, name=name, progress=progress)


# --------------------------------------------------------------------------- restriction
class RowSource(Protocol):
    """Anything that gives rows of features by index (``x[rows]``) and has a ``shape``."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, rows: Any) -> Any: ...


def _read(x: np.ndarray | RowSource, rows: np.ndarray) -> np.ndarray:
    return gather_rows(x, rows) if isinstance(x, np.ndarray) else np.asarray(x[rows])


def knn_among(
    graph: NeighborGraph,
    x: np.ndarray | RowSource,
    queries: np.ndarray,
    allowed: np.ndarray | None,
    k: int,
    *,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, int]:
    """The ``k`` nearest rows among the ``allowed`` rows for each row of ``queries``.

    Args:
        graph: the graph of the rows of ``x``.
        x: the features ``[N, D]`` the graph was built on (read only for rows recomputed).
        queries: int64 rows of ``x``.
        allowed: bool ``[N]`` (None: every row); a query is never its own neighbour.
        k: neighbours wanted.

    Returns ``(neighbours, recomputed)``: int64 ``[len(queries), k']`` rows of ``x`` nearest
    first, ``k' = min(k, allowed rows - 1)`` (``-1`` where a query has fewer allowed other
    rows), and how many queries were recomputed. A query's neighbours are the first ``k``
    allowed ones of its graph row; a query whose graph row holds fewer than ``k'`` of them is
    searched again exactly among the allowed rows (chunked products), so the result is what
    the graph would give with enough neighbours kept.
    """
    queries = np.asarray(queries, dtype=np.int64)
    n = graph.n
    n_allowed = n if allowed is None else int(np.count_nonzero(allowed))
    kk = int(max(0, min(int(k), n_allowed - 1)))
    out = np.full((len(queries), kk), -1, dtype=np.int64)
    if kk == 0 or len(queries) == 0:
        return out, 0
    allowed_mask = None if allowed is None else np.asarray(allowed, dtype=bool)
    short_parts = []
    for a in range(0, len(queries), QUERY_BLOCK):  # bounded temporaries: [block, K]
        cand = graph.indices[queries[a : a + QUERY_BLOCK]].astype(np.int64)
        ok = cand >= 0
        if allowed_mask is not None:
            ok &= allowed_mask[np.maximum(cand, 0)]
        rank = np.cumsum(ok, axis=1, dtype=np.int32)
        r_idx, c_idx = np.nonzero(ok & (rank <= kk))
        out[a + r_idx, rank[r_idx, c_idx] - 1] = cand[r_idx, c_idx]
        short_parts.append(a + (np.flatnonzero(rank[:, -1] < kk) if cand.shape[1] else np.arange(len(cand))))
    short = np.concatenate(short_parts)
    if short.size:
        out[short] = _exact_among(x, queries[short], allowed, kk, torch.device(device))
    return out, int(short.size)


def _exact_among(
    x: np.ndarray | RowSource, queries: np.ndarray, allowed: np.ndarray | None, k: int, dev: torch.device
) -> np.ndarray:
    """Exact ``k`` nearest allowed rows (cosine, self excluded) of each query row (``-1`` padding)."""
    cols = np.arange(x.shape[0]) if allowed is None else np.flatnonzero(allowed)
    q = _unit(_as_tensor(_read(x, np.sort(queries)))).to(dev)
    inv = np.argsort(np.argsort(queries, kind="stable"), kind="stable")
    q = q[torch.from_numpy(inv).to(dev)]
    best_s = torch.full((len(queries), k), -float("inf"), device=dev)
    best_i = torch.full((len(queries), k), -1, dtype=torch.int64, device=dev)
    q_rows = torch.from_numpy(queries).to(dev)
    step = _rows_per_chunk(4 * x.shape[1], len(cols))
    for a in range(0, len(cols), step):
        block_rows = cols[a : a + step]
        block = _unit(_as_tensor(_read(x, block_rows))).to(dev)
        sim = q @ block.T
        br = torch.from_numpy(block_rows).to(dev)
        sim[q_rows[:, None] == br[None, :]] = -float("inf")
        v, j = torch.topk(sim, min(k, sim.shape[1]), dim=1)
        cs = torch.cat([best_s, v], 1)
        ci = torch.cat([best_i, br[j]], 1)
        best_s, top = torch.topk(cs, k, dim=1)
        best_i = ci.gather(1, top)
    s, i = _canonical(best_s.cpu(), best_i.cpu())
    i[torch.isinf(s)] = -1
    return i.numpy()


# --------------------------------------------------------------------------- storage
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class GraphCache:
    """Graphs on disk: ``<folder>/<model>-<digest[:24]>-k<K>.npz``.

    A graph of ``K' >= K`` neighbours answers a request for ``K`` (truncated). With
    ``exclusive`` (a folder beside one features file), saving a graph of a model removes that
    model's graphs of other digests (features that changed); a shared folder (the workspace)
    keeps the newest :data:`SHARED_MAX` files instead.
    """

    SHARED_MAX = 64

    def __init__(self, folder: str | os.PathLike, *, exclusive: bool = False) -> None:
        self.folder = Path(folder)
        self.exclusive = exclusive

    def _stem(self, model: str, digest: str) -> str:
        return f"{_SAFE.sub('_', model)}-{digest[:24]}"

    def load(self, model: str, digest: str, k: int) -> NeighborGraph | None:
        """The stored graph of ``model`` for features with ``digest`` and at least ``k`` neighbours, or None."""
        best: tuple[int, Path] | None = None
        stem = self._stem(model, digest)
        try:
            entries = list(self.folder.glob(f"{stem}-k*.npz"))
        except OSError:
            return None
        for path in entries:
            m = re.fullmatch(re.escape(stem) + r"-k(\d+)\.npz", path.name)
            if m and int(m.group(1)) >= k and (best is None or int(m.group(1)) < best[0]):
                best = (int(m.group(1)), path)
        if best is None:
            return None
        try:
            graph = NeighborGraph.load(best[1])
        except CoresetError:
            return None
        if graph.digest and graph.digest != digest:
            return None
        return graph.truncated(k)

    def save(self, model: str, graph: NeighborGraph) -> Path:
        """Store ``graph`` (raises :class:`~core.errors.OutputError` when the folder cannot be written)."""
        path = self.folder / f"{self._stem(model, graph.digest)}-k{graph.k}.npz"
        graph.save(path)
        with contextlib.suppress(OSError):
            if self.exclusive:
                prefix = f"{_SAFE.sub('_', model)}-"
                for other in self.folder.glob(f"{prefix}*.npz"):
                    rest = other.name[len(prefix) :]
                    if other != path and re.fullmatch(r"[0-9a-f]{24}-k\d+\.npz", rest):
                        other.unlink()
            else:
                files = sorted(self.folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
                for old in files[self.SHARED_MAX :]:
                    old.unlink()
        return path


def cache_beside(features_path: str | os.PathLike) -> GraphCache:
    """The graph folder of a features file: ``<store>/neighbors`` for a features store,
    ``<name>.neighbors`` beside an ``.npz``."""
    p = Path(features_path)
    if p.is_dir():
        return GraphCache(p / "neighbors", exclusive=True)
    return GraphCache(
        p.with_name(p.name[: -len(p.suffix)] + ".neighbors" if p.suffix else p.name + ".neighbors"), exclusive=True
    )


def workspace_cache(workspace: str | os.PathLike | None = None) -> GraphCache:
    """The shared graph folder of the workspace (``<workspace>/neighbors``), for features that
    are not a file (the app's embeddings)."""
    from .workspace import resolve_workspace

    return GraphCache(resolve_workspace(workspace) / "neighbors")


_MEMO: OrderedDict[tuple[str, int], NeighborGraph] = OrderedDict()
_MEMO_LOCK = threading.Lock()
#: Graphs kept in the process (by digest), and their bytes at most.
MEMO_MAX_ITEMS = 8
MEMO_MAX_BYTES = 1 << 30


def _memo_get(digest: str, k: int) -> NeighborGraph | None:
    with _MEMO_LOCK:
        for (dg, kk), g in _MEMO.items():
            if dg == digest and kk >= k:
                _MEMO.move_to_end((dg, kk))
                return g.truncated(k)
    return None


def _memo_put(graph: NeighborGraph) -> None:
    with _MEMO_LOCK:
        _MEMO[(graph.digest, graph.k)] = graph
        _MEMO.move_to_end((graph.digest, graph.k))
        while len(_MEMO) > MEMO_MAX_ITEMS or (
            len(_MEMO) > 1 and sum(g.nbytes for g in _MEMO.values()) > MEMO_MAX_BYTES
        ):
            _MEMO.popitem(last=False)


def neighbor_graphs(
    features: Mapping[str, np.ndarray],
    *,
    k: int = GRAPH_K,
    caches: tuple[GraphCache, ...] = (),
    digests: Mapping[str, str] | None = None,
    method: str = "auto",
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> dict[str, NeighborGraph]:
    """The graph of every model of ``features``: from the process's memo, else from the first
    of ``caches`` that holds it, else built (:func:`build_graph`) and saved into the first cache
    that can be written (a cache that cannot is named in ``notes``).

    ``digests[model]`` (a features store's digest) saves hashing the features; otherwise
    :func:`core.hashing.array_digest` is computed."""
    out: dict[str, NeighborGraph] = {}
    total = sum(int(np.shape(x)[0]) for x in features.values())
    offset = 0
    for model, x in features.items():
        n = int(np.shape(x)[0])
        digest = (digests or {}).get(model) or array_digest(x)
        graph = _memo_get(digest, k)
        for cache in caches:
            if graph is not None:
                break
            graph = cache.load(model, digest, k)
        if graph is None:

            def report(done: int, of: int, what: str, offset: int = offset, n: int = n) -> None:
                if progress is not None:  # rows of every model together
                    progress(offset + int(n * done / max(of, 1)), total, what)

            graph = build_graph(x, k, method=method, device=device, name=model, progress=report)
            graph.digest = digest
            for cache in caches:
                try:
                    cache.save(model, graph)
                    break
                except OSError as exc:
                    if notes is not None:
                        notes.append(f"the neighbour graph of {model} could not be saved in {cache.folder} ({exc})")
        _memo_put(graph)
        out[model] = graph
        offset += n
        if progress is not None:
            progress(offset, total, f"neighbours of {model}")
    return out


def graphs_for(
    fs,
    models: list[str] | None = None,
    source: str | os.PathLike | None = None,
    *,
    workspace: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> dict[str, NeighborGraph]:
    """The graphs of ``models`` (default: all) of the feature set ``fs``
    (:class:`~core.features.FeatureSet`) over all its rows: kept beside the features file
    ``source`` (:func:`cache_beside`) when given, else (or when that folder cannot be written)
    in the workspace (:func:`workspace_cache`)."""
    caches = ((cache_beside(source),) if source else ()) + (workspace_cache(workspace),)
    feats = {m: fs.features[m] for m in (models or fs.models)}
    return neighbor_graphs(feats, caches=caches, digests=fs.digests, device=device, progress=progress, notes=notes)


__all__ = [
    "EXACT_MAX",
    "GRAPH_K",
    "GraphCache",
    "NeighborGraph",
    "build_graph",
    "cache_beside",
    "exact_graph",
    "graphs_for",
    "ivf_graph",
    "ivf_params",
    "knn_among",
    "neighbor_graphs",
    "principal_axes",
    "workspace_cache",
]
