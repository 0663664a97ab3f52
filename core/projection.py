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


def umap_2d(x: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP embedding to 2-D (PCA-reduced to 50 dims first when wider); float32 ``[N, 2]``.

    Falls back to :func:`pca_2d` below 5 points. Raises ImportError without umap-learn.
    """
    x = _as_matrix(x)
    n = x.shape[0]
    if n < 5:
        return pca_2d(x)
    import umap

    if x.shape[1] > 50 and n > 50:
        from sklearn.decomposition import PCA

        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, n - 1)), min_dist=min_dist,
                        random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def project_2d(x: np.ndarray, method: str = "umap", seed: int = 0) -> tuple[np.ndarray, str]:
    """``(coords, method used)``: UMAP when asked and available, else PCA."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    if method == "umap" and umap_available():
        return umap_2d(x, seed=seed), "umap"
    return pca_2d(x), "pca"


__all__ = ["PROJECTIONS", "pca_2d", "project_2d", "umap_2d", "umap_available"]
