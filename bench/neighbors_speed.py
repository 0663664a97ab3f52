"""The neighbour graph against FAISS: time to every row's 30 nearest rows, and recall.

For each model of a features file or store, builds the whole k-nearest-neighbour graph
(every row a query, ``k = 30``, cosine similarity: L2-normalised rows, inner product) with

* **ours** (:func:`core.neighbors.ivf_graph`, the defaults: lists of ~256 rows, 8 probes,
  the search as matrix products list by list);
* **faiss IVF-Flat** (``IndexIVFFlat``, inner product, ``nlist = N / 256`` as ours, trained on
  ``39 nlist`` rows, FAISS's recommended minimum; ``nprobe`` 8 and 16);
* **faiss HNSW** (``IndexHNSWFlat``, M = 32, efConstruction 40, efSearch 64);

and scores each against the exact neighbours of a seeded sample of rows (``--sample``,
brute force). All in one process, one after the other, FAISS with as many OpenMP threads as
torch has. Prints the CPU model and flags: FAISS's wheels pick their AVX2 or AVX-512 kernels
at import.

Usage::

    python bench/neighbors_speed.py ~/.cache/coreset-studio/bench-scale/synthetic-100000x100.store
    python bench/neighbors_speed.py features.npz --models effnet-lite0 --sample 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def exact_sample(xu: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    import torch

    q = torch.from_numpy(xu[rows])
    best_s = torch.full((len(rows), k), -float("inf"))
    best_i = torch.full((len(rows), k), -1, dtype=torch.int64)
    for a in range(0, len(xu), 32768):
        block = torch.from_numpy(xu[a : a + 32768])
        s = q @ block.T
        s[torch.from_numpy(rows)[:, None] == torch.arange(a, a + len(block))[None, :]] = -float("inf")
        v, j = torch.topk(s, min(k, s.shape[1]), dim=1)
        cs, ci = torch.cat([best_s, v], 1), torch.cat([best_i, j + a], 1)
        best_s, top = torch.topk(cs, k, dim=1)
        best_i = ci.gather(1, top)
    return best_i.numpy()


def recall(got: np.ndarray, ref: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(got, ref)]))


def faiss_graph(index, xu: np.ndarray, k: int) -> np.ndarray:
    """Every row's k nearest other rows from a FAISS index holding ``xu`` (self dropped)."""
    _, idx = index.search(xu, k + 1)
    out = np.empty((len(xu), k), dtype=np.int64)
    for i in range(len(xu)):
        row = idx[i][idx[i] != i]
        out[i] = row[:k]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("features", help="features .npz or store")
    ap.add_argument("--models", default=None, help="comma-separated (default: all)")
    ap.add_argument("--sample", type=int, default=2000, help="rows scored against the exact search")
    ap.add_argument("--methods", default="ours,faiss-ivf8,faiss-ivf16,faiss-hnsw")
    args = ap.parse_args(argv)

    import faiss
    import torch

    from bench.scale_smart import cpu_description
    from core.features import load_features
    from core.neighbors import LIST_SIZE, ivf_graph

    faiss.omp_set_num_threads(torch.get_num_threads())
    print(
        f"machine: {cpu_description()}; torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}"
    )
    fs = load_features(args.features)
    models = args.models.split(",") if args.models else fs.models
    k = 30
    for m in models:
        x = np.ascontiguousarray(fs.features[m], dtype=np.float32)
        n, d = x.shape
        xu = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        rows = np.sort(np.random.default_rng(0).choice(n, size=min(args.sample, n), replace=False))
        ref = exact_sample(xu, rows, 10)
        print(f"\n{m}: {n:,} rows x {d}; recall@10 on {len(rows):,} rows against the exact search")
        nlist = max(1, round(n / LIST_SIZE))
        for method in [s.strip() for s in args.methods.split(",") if s.strip()]:
            t0 = time.perf_counter()
            if method == "ours":
                g = ivf_graph(x, k).indices
            elif method.startswith("faiss-ivf"):
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
                train = xu[np.random.default_rng(1).choice(n, size=min(n, 39 * nlist), replace=False)]
                index.train(train)
                index.add(xu)
                index.nprobe = int(method[len("faiss-ivf") :])
                g = faiss_graph(index, xu, k)
            elif method == "faiss-hnsw":
                index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 40
                index.add(xu)
                index.hnsw.efSearch = 64
                g = faiss_graph(index, xu, k)
            else:
                raise SystemExit(f"unknown method {method!r}")
            secs = time.perf_counter() - t0
            print(f"  {method:12s} {secs:8.1f} s   recall@10 {recall(g[rows], ref):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
