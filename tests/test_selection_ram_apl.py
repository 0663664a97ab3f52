"""RAM-APL: a hand-computed example, a float64 brute-force reference, precision corner cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import core.selection._linalg as linalg
from core.selection import run_selection
from core.selection.ram_apl import ram_apl_weights


# ----------------------------------------------------------------------------- hand example
def hand_example():
    """Two classes (cat: rows 0-2, dog: rows 3-4), two models.

    Model m1 (1-D):  cat = 0, 1, 5 -> mean 2;  dog = 4, 12 -> mean 8.
      distance to own mean: 2, 1, 3 | 4, 4   -> ranks 1, 0, 2 | 0, 1 (dog tie: row order)
      pseudo-label: row 2 (x=5) is 3 from both means -> first class (cat, correct);
                    row 3 (x=4) is 2 from cat, 4 from dog -> cat (wrong); others correct.
    Model m2 (2-D):  cat = (0,0), (3,0), (0,3) -> mean (1,1);  dog = (6,1), (8,3) -> mean (7,2).
      distance: sqrt2, sqrt5, sqrt5 | sqrt2, sqrt2 -> ranks 0, 1, 2 | 0, 1 (ties: row order)
      pseudo-labels all correct (e.g. row 3: 25 vs 2 squared distance).
    RAM = mean rank / N_c:  (1+0)/2/3, (0+1)/2/3, (2+2)/2/3 | 0/2, (1+1)/2/2
        = 1/6, 1/6, 2/3 | 0, 1/2
    APL = 1, 1, 1 | 1/2, 1
    p = 0.5: W1 = 0.2 + 0.8 / (1 + e^0) = 0.6, W2 = 0.4
    score = 0.6 RAM + 0.4 (1 - APL) = 0.1, 0.1, 0.4 | 0.2, 0.3
    paper budgets: cat round(1.5) = 2, dog round(1.0) = 1
    keep cat rows 0, 1 (tie at 0.1 -> row order), dog row 3  ->  selection [0, 1, 3]
    """
    m1 = np.array([[0], [1], [5], [4], [12]], dtype=np.float32)
    m2 = np.array([[0, 0], [3, 0], [0, 3], [6, 1], [8, 3]], dtype=np.float32)
    labels = np.array(["cat", "cat", "cat", "dog", "dog"])
    return {"m1": m1, "m2": m2}, labels


def test_hand_computed_example():
    feats, labels = hand_example()
    r = run_selection("ram_apl", feats, labels, 0.5, seed=0)
    t = r.table
    assert t["rank[m1]"].tolist() == [1, 0, 2, 0, 1]
    assert t["rank[m2]"].tolist() == [0, 1, 2, 0, 1]
    assert t["pseudo_label[m1]"].tolist() == ["cat", "cat", "cat", "cat", "dog"]
    assert t["pseudo_label[m2]"].tolist() == ["cat", "cat", "cat", "dog", "dog"]
    np.testing.assert_array_equal(t["distance[m1]"], [2, 1, 3, 4, 4])
    np.testing.assert_allclose(t["distance[m2]"], np.sqrt([2, 5, 5, 2, 2]), rtol=1e-7)
    assert t["ram"].tolist() == [1 / 6, 1 / 6, 2 / 3, 0.0, 0.5]
    assert t["apl"].tolist() == [1.0, 1.0, 1.0, 0.5, 1.0]
    np.testing.assert_allclose(t["score"], [0.1, 0.1, 0.4, 0.2, 0.3], rtol=0, atol=1e-15)
    assert r.selected.tolist() == [0, 1, 3]
    assert t["selected"].tolist() == [True, True, False, True, False]
    assert t["order"].tolist() == [0, 1, -1, 2, -1]
    assert r.budget_table[["class", "size", "budget", "kept"]].values.tolist() == [["cat", 3, 2, 2], ["dog", 2, 1, 1]]


def test_weights_formula():
    assert ram_apl_weights(0.5) == pytest.approx((0.6, 0.4), abs=1e-15)
    w1, w2 = ram_apl_weights(0.1, a=0.3, k=2.0, s=0.4)
    assert w1 == pytest.approx(0.3 + 0.7 / (1 + math.exp(2.0 * (0.1 - 0.4))), abs=1e-15)
    assert w1 + w2 == pytest.approx(1.0, abs=1e-15)


# ----------------------------------------------------------------------------- brute force
def reference_ram_apl(feats, labels, p, a=0.2, k=1.0, s=0.5, normalize="none"):
    """Obvious float64 version of the official code: loops over models, classes, samples."""
    classes = sorted(set(labels.tolist()))
    y = np.array([classes.index(v) for v in labels.tolist()])
    n, m = len(y), len(feats)
    ranks = np.zeros((m, n), dtype=np.int64)
    pseudo = np.zeros((m, n), dtype=np.int64)
    for mi, x in enumerate(feats):
        x = np.asarray(x, dtype=np.float64)
        if normalize == "l2":
            x = x / np.maximum(np.sqrt((x * x).sum(1, keepdims=True)), 1e-12)
        means = [x[y == c].mean(axis=0) for c in range(len(classes))]
        for i in range(n):
            d = [math.sqrt(((x[i] - mu) ** 2).sum()) for mu in means]
            pseudo[mi, i] = min(range(len(d)), key=lambda c: (d[c], c))
        for c in range(len(classes)):
            rows = [i for i in range(n) if y[i] == c]
            dist = {i: math.sqrt(((x[i] - means[c]) ** 2).sum()) for i in rows}
            for r, i in enumerate(sorted(rows, key=lambda i: (dist[i], i))):
                ranks[mi, i] = r
    sizes = np.bincount(y)
    ram = ranks.mean(axis=0) / sizes[y]
    wrong = (pseudo != y).mean(axis=0)
    w1 = a + (1 - a) * (1 / (1 + np.exp(k * (p - s))))
    score = w1 * ram + (1 - w1) * wrong
    selected = []
    for c in range(len(classes)):
        rows = sorted((i for i in range(n) if y[i] == c), key=lambda i: (score[i], i))
        selected += rows[: round(len(rows) * p)]
    apl = (pseudo == y).mean(axis=0)
    return {"ranks": ranks, "pseudo": pseudo, "ram": ram, "apl": apl, "score": score, "selected": selected}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("normalize", ["none", "l2"])
def test_matches_brute_force(seed, normalize):
    rng = np.random.default_rng(seed)
    n, n_classes = int(rng.integers(20, 80)), int(rng.integers(2, 7))
    labels = rng.integers(0, n_classes, n)
    labels[:n_classes] = np.arange(n_classes)  # every class present
    offset = 20.0 if seed % 2 else 0.0  # uncentred features stress float32 cancellation
    feats = [
        (rng.standard_normal((n, d)) * 3 + offset + labels[:, None] * 0.7).astype(np.float32)
        for d in (int(rng.integers(1, 9)), int(rng.integers(1, 9)), 16)[: 1 + seed % 3]
    ]
    p = float(rng.choice([0.1, 0.25, 0.5, 0.8, 1.0]))
    ref = reference_ram_apl(feats, labels, p, normalize=normalize)
    r = run_selection("ram_apl", {f"m{i}": x for i, x in enumerate(feats)}, labels, p, normalize=normalize)
    t = r.table
    for i in range(len(feats)):
        np.testing.assert_array_equal(t[f"rank[m{i}]"], ref["ranks"][i])
        np.testing.assert_array_equal(t[f"pseudo_label[m{i}]"], ref["pseudo"][i])
    np.testing.assert_array_equal(t["ram"], ref["ram"])
    np.testing.assert_array_equal(t["apl"], ref["apl"])
    np.testing.assert_allclose(t["score"], ref["score"], rtol=0, atol=1e-15)
    assert r.selected.tolist() == ref["selected"]


@pytest.mark.parametrize("method", ["ram_apl", "min"])
def test_worker_threads_do_not_change_results(monkeypatch, method):
    """Same chunk grid, 1 or 3 worker threads: identical results (bit for bit)."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, 300)
    feats = {
        "a": rng.standard_normal((300, 12)).astype(np.float32),
        "b": rng.standard_normal((300, 3)).astype(np.float32),
    }
    monkeypatch.setattr(linalg, "CHUNK_BYTES", 256)  # a few rows per chunk
    monkeypatch.setattr(linalg, "MIN_ROWS_PER_WORKER", 10)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_selection(method, feats, labels, 0.3, budget="difficulty")
        torch.set_num_threads(3)
        three = run_selection(method, feats, labels, 0.3, budget="difficulty")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert one.same_selection(three)


def test_chunk_size_changes_only_float_round_off(monkeypatch):
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, 300)
    feats = {"a": rng.standard_normal((300, 12)).astype(np.float32)}
    whole = run_selection("ram_apl", feats, labels, 0.3)
    monkeypatch.setattr(linalg, "CHUNK_BYTES", 256)
    chunked = run_selection("ram_apl", feats, labels, 0.3)
    assert whole.selected.tolist() == chunked.selected.tolist()
    for col in ("rank[a]", "pseudo_label[a]", "ram", "apl", "score"):
        assert whole.table[col].equals(chunked.table[col])
    np.testing.assert_allclose(whole.table["distance[a]"], chunked.table["distance[a]"], rtol=1e-6)


# ----------------------------------------------------------------------------- precision
def _tie_case(d=512, delta=0.0):
    """Means v+e and v-e with |v| ~ 2300 and a point exactly (delta=0) equidistant from both."""
    v = np.full(d, 100.0)
    mu = np.stack([v, v]).astype(np.float64)
    mu[0, 0] += 1.0
    mu[1, 0] -= 1.0
    x = v.copy()
    x[1:] += np.where(np.arange(1, d) % 2 == 0, 1.0, -1.0)  # orthogonal to e
    x[0] -= delta  # delta > 0: closer to mu[1]
    return x.astype(np.float32)[None, :], mu


@pytest.mark.parametrize("delta, expected", [(0.0, 0), (2.0**-10, 1)])
def test_nearest_mean_ties_and_near_ties_are_exact(delta, expected):
    x, mu = _tie_case(delta=delta)
    out = linalg.distances_to_class_means(torch.from_numpy(x), torch.zeros(1, dtype=torch.int64), torch.from_numpy(mu))
    assert int(out["nearest"][0]) == expected
    assert out["n_refined"] == 1
    # the float32 expansion alone cannot resolve these (gap << rounding of ||mu||^2 ~ 5e6)
    vals = (torch.from_numpy(mu).float() ** 2).sum(1) - 2 * (torch.from_numpy(x) @ torch.from_numpy(mu).float().T)
    assert abs(float(vals[0, 0] - vals[0, 1])) < 1.0


def test_nearest_mean_first_class_on_exact_tie_when_swapped():
    x, mu = _tie_case()
    out = linalg.distances_to_class_means(
        torch.from_numpy(x), torch.ones(1, dtype=torch.int64), torch.from_numpy(mu[::-1].copy())
    )
    assert int(out["nearest"][0]) == 0


def test_own_distance_is_direct_not_expanded():
    # rows differ by 1e-3 around a large common offset: the expansion would lose them
    x = (np.full((3, 4), 1000.0) + np.array([[0.004], [0.001], [0.002]])).astype(np.float32)
    r = run_selection("ram_apl", {"m": x}, np.zeros(3, dtype=int), 1.0)
    mu = x.astype(np.float64).mean(0)
    expected_rank = np.argsort(np.argsort(np.linalg.norm(x - mu, axis=1), kind="stable"), kind="stable")
    np.testing.assert_array_equal(r.table["rank[m]"], expected_rank)
    assert expected_rank.tolist() == [2, 1, 0]
