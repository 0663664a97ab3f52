"""2-D projections of feature arrays for plots: PCA (instant) and UMAP (when umap-learn is installed).

Used by the app's Explore page; pure numpy / scikit-learn / umap-learn, no Streamlit.
Both return float32 ``[N, 2]`` coordinates, deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

PROJECTIONS = ("umap", "pca")


def umap_available() -> bool:
    """True when umap-learn can be imported."""
    try:
        import umap  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    return x


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (zero-padded when there are fewer); float32 ``[N, 2]``.

    ``coords = U_k S_k`` of the SVD of the centred ``x`` (scikit-learn's exact ``PCA``, full
    LAPACK SVD), ``k = min(2, N, D)``. Sign convention (deterministic, independent of the
    SVD routine): each component is flipped so that its largest-magnitude coordinate is
    positive.
    """
    x = _as_matrix(x)
    n = x.shape[0]
    out = np.zeros((n, 2), dtype=np.float32)
    if n < 2:
        return out
    from sklearn.decomposition import PCA

    k = min(2, n, x.shape[1])
    coords = PCA(n_components=k, svd_solver="full").fit_transform(x)
    for j in range(k):
        col = coords[:, j]
        if col[np.argmax(np.abs(col))] < 0:
            coords[:, j] = -col
    out[:, :k] = coords
    return out


#: Above this many points UMAP is fitted on a seeded sample of this many (the landmarks) and
#: the other points are placed from their nearest landmarks (:func:`umap_2d`).
UMAP_LANDMARKS = 10_000
PLACE_NEIGHBOURS = 10


def _nearest(queries: np.ndarray, refs: np.ndarray, k: int, block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest rows of ``refs`` to each row of ``queries`` (Euclidean), in blocks of
    ``block`` queries: ``(indices [Q, k], squared distances [Q, k])``, nearest first."""
    ref_sq = np.einsum("ij,ij->i", refs, refs)
    idx = np.empty((len(queries), k), dtype=np.int64)
    dist = np.empty((len(queries), k), dtype=np.float64)
    for s in range(0, len(queries), block):
        q = queries[s : s + block]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ refs.T) + ref_sq[None, :]
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd2, axis=1, kind="stable")
        idx[s : s + block] = np.take_along_axis(part, order, axis=1)
        dist[s : s + block] = np.maximum(np.take_along_axis(pd2, order, axis=1), 0.0)
    return idx, dist


def umap_2d(
    x: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, landmarks: int = UMAP_LANDMARKS
) -> np.ndarray:
    """UMAP embedding to 2-D (PCA-reduced to 50 dims first when wider); float32 ``[N, 2]``.

    Up to ``landmarks`` points (default 10,000) every point is in the UMAP fit. Above, UMAP is
    fitted on a seeded random sample of ``landmarks`` points and each other point ``q`` is placed
    at the weighted mean of its k = 10 nearest landmarks ``l`` in the (PCA-50) feature space,
    weights ``w_l = 1 / (d(q, l) + eps)`` with ``eps`` = 1e-6 x the median neighbour distance, so a
    point lands among the landmarks it resembles. 10,000 landmarks: the sample keeps umap-learn's
    500 epochs of small fits (above 10,000 it uses 200); 100,000 points of 32 dims took 27 s on 2
    cores (20,000 landmarks: 57 s; numba's first compilation adds ~10 s once per process). Deterministic for a given seed. Falls back to
    :func:`pca_2d` below 5 points. Raises ImportError without umap-learn.
    """
    x = _as_matrix(x)
    n = x.shape[0]
    if n < 5:
        return pca_2d(x)
    import umap

    if x.shape[1] > 50 and n > 50:
        from sklearn.decomposition import PCA

        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    fit_rows = np.arange(n)
    if landmarks and n > landmarks:
        fit_rows = np.sort(np.random.default_rng(seed).choice(n, size=int(landmarks), replace=False))
    m = len(fit_rows)
    reducer = umap.UMAP(
        n_components=2, n_neighbors=max(2, min(n_neighbors, m - 1)), min_dist=min_dist, random_state=seed, n_jobs=1
    )
    fitted = np.asarray(reducer.fit_transform(x[fit_rows]), dtype=np.float64)
    if m == n:
        return fitted.astype(np.float32)
    out = np.empty((n, 2), dtype=np.float64)
    out[fit_rows] = fitted
    rest = np.setdiff1d(np.arange(n), fit_rows, assume_unique=True)
    k = min(PLACE_NEIGHBOURS, m)
    idx, d2 = _nearest(x[rest], x[fit_rows], k)
    d = np.sqrt(d2)
    eps = 1e-6 * max(float(np.median(d)), 1e-12)
    w = 1.0 / (d + eps)
    out[rest] = np.einsum("qk,qkc->qc", w, fitted[idx]) / w.sum(axis=1, keepdims=True)
    return out.astype(np.float32)


def project_2d(x: np.ndarray, method: str = "umap", seed: int = 0) -> tuple[np.ndarray, str]:
    """``(coords, method used)``: UMAP when asked and available, else PCA."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    if method == "umap" and umap_available():
        return umap_2d(x, seed=seed), "umap"
    return pca_2d(x), "pca"


__all__ = ["PROJECTIONS", "UMAP_LANDMARKS", "pca_2d", "project_2d", "umap_2d", "umap_available"]
