"""The fast CPU paths of the selection engine against slow, obvious references.

* nearest class mean: the bf16 / fp32 candidate search with its float64 re-check gives the
  exact argmin (float64 brute force) on adversarial near ties, and the same as the torch code;
* the packed-key class sort equals two stable sorts;
* the fused input check + class sums equals numpy, and its sums are what class means reuse.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core.selection._linalg as linalg
from core.selection import run_selection


def brute_nearest(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """argmin_c ||x_i - mu_c|| in float64 by the direct formula (first class on ties)."""
    d = ((x.astype(np.float64)[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


def near_tie_rows(rng, means: np.ndarray, n: int, gaps) -> np.ndarray:
    """Rows on the bisector of two class means, pushed towards one of them by ``gap`` (relative)."""
    n_classes, d = means.shape
    rows = []
    for i in range(n):
        a, b = rng.choice(n_classes, 2, replace=False)
        mid = (means[a] + means[b]) / 2
        e = means[b] - means[a]
        noise = rng.standard_normal(d)
        noise -= noise.dot(e) / e.dot(e) * e  # keep it on the bisector
        gap = gaps[i % len(gaps)]
        rows.append(mid + noise * 0.3 + gap * e)
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("search", ["bf16", "fp32"])
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_candidate_search_is_exact_on_near_ties(monkeypatch, search, offset):
    monkeypatch.setattr(linalg, "NEAREST_SEARCH", search)
    monkeypatch.setattr(linalg, "CPU_CHUNK_BYTES", 64 * 1024)  # several chunks
    rng = np.random.default_rng(3)
    d, n_classes = 96, 12
    centres = rng.standard_normal((n_classes, d)) + offset  # a common offset: cancellation in x.mu
    # gaps from far below the bf16 rounding (~1e-3 relative) to far above it, both signs
    gaps = [s * g for g in (0.0, 1e-7, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 1e-1) for s in (1, -1)]
    x = np.concatenate(
        [
            near_tie_rows(rng, centres, 1500, gaps),
            (centres[rng.integers(0, n_classes, 500)] + rng.standard_normal((500, d))).astype(np.float32),
        ]
    )
    codes = rng.integers(0, n_classes, len(x))
    means = torch.from_numpy(centres.astype(np.float64))
    out = linalg.distances_to_class_means(torch.from_numpy(x), torch.from_numpy(codes), means)
    ref = brute_nearest(x, centres)
    # exact except where float64 itself cannot tell the two means apart (no such row here:
    # the smallest non-zero gap, 1e-7 of ||e||^2, is far above float64 round-off)
    np.testing.assert_array_equal(out["nearest"].numpy(), ref)
    assert out["n_refined"] >= 300  # the near ties went through the float64 re-check
    own_ref = np.linalg.norm(x.astype(np.float64) - centres[codes], axis=1)
    np.testing.assert_allclose(out["own"].numpy(), own_ref, rtol=2e-7)
    # the same as the torch code (float32 matmul, float64 re-check)
    monkeypatch.setattr(linalg, "NEAREST_SEARCH", "torch")
    torch_out = linalg.distances_to_class_means(torch.from_numpy(x), torch.from_numpy(codes), means)
    np.testing.assert_array_equal(out["nearest"].numpy(), torch_out["nearest"].numpy())


@pytest.mark.parametrize("search", ["bf16", "fp32"])
def test_candidate_search_exact_ties_take_the_first_class(monkeypatch, search):
    monkeypatch.setattr(linalg, "NEAREST_SEARCH", search)
    # x equidistant (exactly) from means 1 and 3, farther from 0 and 2
    means = np.array([[10.0, 0.0], [1.0, 1.0], [-10.0, 5.0], [1.0, -1.0]])
    x = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 1.0]], dtype=np.float32)
    out = linalg.distances_to_class_means(
        torch.from_numpy(x), torch.zeros(3, dtype=torch.int64), torch.from_numpy(means)
    )
    assert out["nearest"].tolist() == brute_nearest(x, means).tolist() == [1, 1, 1]
    assert out["n_refined"] >= 2


def test_candidate_slack_covers_the_observed_bf16_error():
    """The bound E of the bf16 search against the error measured on random data (it must hold
    for every row and class; the slack is 2 x 2E)."""
    rng = np.random.default_rng(5)
    d, n_classes = 512, 40
    means = rng.standard_normal((n_classes, d)) * 3 + 1
    x = (means[rng.integers(0, n_classes, 4000)] + rng.standard_normal((4000, d)) * 2).astype(np.float32)
    centre = means.mean(0).astype(np.float32)
    shifted = means - centre.astype(np.float64)
    z = torch.from_numpy(x - centre).to(torch.bfloat16)
    y = (z @ torch.from_numpy(-2 * shifted).to(torch.bfloat16).T).float().numpy().astype(np.float64)
    exact = -2 * (x.astype(np.float64) - centre.astype(np.float64)) @ shifted.T
    err = np.abs(y - exact).max(axis=1)
    x_norm = np.linalg.norm(x.astype(np.float64) - centre, axis=1)
    e = linalg.candidate_slack(d, "bf16", x_norm, float(np.linalg.norm(shifted, axis=1).max())) / 4
    assert np.all(err <= e)
    assert np.all(err > 1e-3 * e)  # and it is not vacuous: the bound is within 1000x of the error


@pytest.mark.parametrize("seed", range(4))
def test_ram_apl_same_with_every_nearest_search(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    n, n_classes = 600, 7
    labels = rng.integers(0, n_classes, n)
    feats = {f"m{d}": (rng.standard_normal((n, d)) * 2 + labels[:, None] * 0.4).astype(np.float32) for d in (5, 33)}
    results = {}
    for search in ("torch", "fp32", "bf16"):
        monkeypatch.setattr(linalg, "NEAREST_SEARCH", search)
        results[search] = run_selection("ram_apl", feats, labels, 0.3)
    for search in ("fp32", "bf16"):
        for col in ("pseudo_label[m5]", "pseudo_label[m33]", "apl"):
            assert results[search].table[col].equals(results["torch"].table[col])
        assert sorted(results[search].selected.tolist()) == sorted(results["torch"].selected.tolist())


def two_stable_sorts(values, codes):
    by_value = np.argsort(values, kind="stable")
    return by_value[np.argsort(codes[by_value], kind="stable")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_packed_sort_equals_two_stable_sorts(dtype):
    rng = np.random.default_rng(11)
    n = 5000
    codes = rng.integers(0, 37, n)
    values = rng.integers(-20, 20, n).astype(dtype)  # many ties
    if dtype != np.int64:
        values = values / 3
        values[:7] = -0.0
        values[7:14] = 0.0
    values = values.astype(dtype)
    expected = two_stable_sorts(values, codes)
    assert linalg._packed_sort(values, codes) is not None
    np.testing.assert_array_equal(linalg.sort_by_class_then_value(values, codes), expected)


def test_packed_sort_falls_back_when_keys_do_not_fit():
    rng = np.random.default_rng(12)
    values = rng.standard_normal(300).astype(np.float32)
    codes = rng.integers(0, 3, 300) * (2**40)  # 41 code bits + 32 + 9 > 64
    assert linalg._packed_sort(values, codes) is None
    np.testing.assert_array_equal(linalg.sort_by_class_then_value(values, codes), two_stable_sorts(values, codes))


def test_check_and_sum_gives_class_sums_and_largest_magnitude():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3000, 17)).astype(np.float32)
    x[1234, 5] = -40.0
    codes = rng.integers(0, 9, 3000)
    top, sums = linalg.check_and_sum(x, "m", codes, 9, magnitude_limit=10.0)
    assert top == 40.0
    ref = np.stack([x[codes == c].astype(np.float64).sum(0) for c in range(9)])
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-12)
    assert linalg.check_and_sum(x, "m", codes, 9, magnitude_limit=100.0)[0] is None
    x[2999, 0] = np.nan
    with pytest.raises(Exception, match="row 2999"):
        linalg.check_and_sum(x, "m", codes, 9, magnitude_limit=100.0)


def test_class_means_reuse_the_checked_sums():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((500, 6)).astype(np.float32)
    codes = rng.integers(0, 4, 500)
    xt, ct = torch.from_numpy(x), torch.from_numpy(codes)
    fresh = linalg.class_means(xt, ct, 4)
    marker = np.full((4, 6), 7.0)  # a recognisable stand-in: proves the known sums are used
    with linalg.known_class_sums([(x, codes, 4, marker)]):
        reused = linalg.class_means(xt, ct, 4)
        other = linalg.class_means(torch.from_numpy(x.copy()), ct, 4)  # another array: not reused
    counts = np.bincount(codes, minlength=4)
    np.testing.assert_allclose(reused.numpy(), np.broadcast_to(7.0 / counts[:, None], (4, 6)))
    np.testing.assert_allclose(other.numpy(), fresh.numpy())
    np.testing.assert_allclose(
        fresh.numpy(), np.stack([x[codes == c].astype(np.float64).mean(0) for c in range(4)]), rtol=1e-12, atol=1e-15
    )
    assert linalg.class_means(xt, ct, 4).numpy().tolist() == fresh.numpy().tolist()  # context left
