"""core.projection: PCA and UMAP 2-D coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from core.projection import pca_2d, project_2d, umap_2d, umap_available


def _blobs(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, d)) * 10
    labels = np.arange(n) % 3
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_pca_shape_dtype_and_separation():
    x, labels = _blobs()
    c = pca_2d(x)
    assert c.shape == (60, 2) and c.dtype == np.float32
    means = np.stack([c[labels == k].mean(0) for k in range(3)])
    spread = max(c[labels == k].std(0).max() for k in range(3))
    assert np.min([np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3)]) > 3 * spread


def test_pca_is_deterministic_and_handles_tiny_inputs():
    x, _ = _blobs()
    assert np.array_equal(pca_2d(x), pca_2d(x.copy()))
    assert pca_2d(np.ones((1, 4))).shape == (1, 2)
    assert pca_2d(np.array([[0.0], [1.0], [2.0]])).shape == (3, 2)  # one feature: second column zero


def test_bad_input_raises():
    with pytest.raises(ValueError):
        pca_2d(np.zeros(3))
    with pytest.raises(ValueError):
        pca_2d(np.array([[np.nan, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError):
        project_2d(np.zeros((3, 2)), method="tsne")


def test_project_falls_back_to_pca_for_pca_request():
    x, _ = _blobs()
    coords, used = project_2d(x, "pca")
    assert used == "pca" and coords.shape == (60, 2)


@pytest.mark.slow
@pytest.mark.skipif(not umap_available(), reason="umap-learn not installed")
def test_umap_seeded():
    x, _ = _blobs(n=40)
    a = umap_2d(x, seed=1)
    assert a.shape == (40, 2) and a.dtype == np.float32 and np.isfinite(a).all()
    assert umap_2d(x[:3]).shape == (3, 2)  # below 5 points: PCA


def _svd_reference(x):
    """The first two principal components from numpy's SVD, sign-fixed the same way."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    k = min(2, s.size)
    coords = u[:, :k] * s[:k]
    for j in range(k):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] *= -1
    out = np.zeros((len(x), 2))
    out[:, :k] = coords
    return out


@pytest.mark.parametrize("shape", [(60, 8), (200, 3), (5, 40), (3, 1), (2, 6)])
def test_pca_equals_numpy_svd_with_a_fixed_sign(shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * np.linspace(3, 0.5, shape[1]) + 7.0).astype(np.float32)
    got = pca_2d(x)
    ref = _svd_reference(x)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)
    # the sign rule: the largest-magnitude coordinate of every component is positive (checked
    # where that coordinate is unique: with two points the first component is +-v)
    for j in range(2):
        mags = np.sort(np.abs(ref[:, j]))
        if mags[-1] > 1e-6 * scale and mags[-1] - mags[-2] > 1e-6 * mags[-1]:
            assert got[np.argmax(np.abs(got[:, j])), j] > 0
