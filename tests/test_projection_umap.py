"""UMAP of large pools: fitted on seeded landmarks, the other points placed from their nearest
landmarks; checked against a slow, obvious reference."""

from __future__ import annotations

import numpy as np
import pytest

from core import projection


def _blobs(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, d))
    return (centres[np.arange(n) % 4] + rng.normal(size=(n, d))).astype(np.float32)


def test_nearest_equals_brute_force_in_blocks():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(37, 5)), rng.normal(size=(50, 5))
    idx, d2 = projection._nearest(q, r, k=4, block=8)
    for i in range(len(q)):
        dist = ((r - q[i]) ** 2).sum(axis=1)
        ref = sorted(range(len(r)), key=lambda j: (dist[j], j))[:4]
        assert idx[i].tolist() == ref and np.allclose(d2[i], dist[ref])


@pytest.mark.slow
def test_landmark_umap_fits_the_sample_and_places_the_rest_by_their_neighbours():
    x = _blobs(600)
    got = projection.umap_2d(x, seed=3, landmarks=200)
    fit_rows = np.sort(np.random.default_rng(3).choice(600, size=200, replace=False))
    alone = projection.umap_2d(x[fit_rows], seed=3, landmarks=0)
    assert np.allclose(got[fit_rows], alone, atol=1e-5)  # the landmarks are a plain UMAP fit of the sample
    rest = np.setdiff1d(np.arange(600), fit_rows)
    dists_all = []
    for q in rest:  # slow reference: every landmark's distance, the 10 nearest, 1/(d + eps) weights
        d = np.sqrt(((x[fit_rows].astype(np.float64) - x[q]) ** 2).sum(axis=1))
        near = np.argsort(d, kind="stable")[:10]
        dists_all.append(d[near])
    eps = 1e-6 * float(np.median(np.concatenate(dists_all)))
    for q, dn in zip(rest, dists_all):
        d = np.sqrt(((x[fit_rows].astype(np.float64) - x[q]) ** 2).sum(axis=1))
        near = np.argsort(d, kind="stable")[:10]
        w = 1.0 / (dn + eps)
        ref = (w[:, None] * alone[near]).sum(axis=0) / w.sum()
        assert np.allclose(got[q], ref, atol=1e-4), q
    assert np.array_equal(got, projection.umap_2d(x, seed=3, landmarks=200))  # deterministic
    assert got.dtype == np.float32 and got.shape == (600, 2)
