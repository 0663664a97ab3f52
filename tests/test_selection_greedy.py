"""Every per-class method against a slow, obviously correct float64 brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.selection import run_selection

SEEDS = range(5)


# ----------------------------------------------------------------------------- data
def make_case(seed, n_models=1):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(1, 4))
    sizes = rng.integers(1, 30, n_classes)
    labels = np.repeat(np.arange(n_classes), sizes)
    rng.shuffle(labels)
    feats = {
        f"m{i}": (rng.standard_normal((len(labels), int(rng.integers(2, 7)))) + 2.0 * labels[:, None] + 1.0).astype(
            np.float32
        )
        for i in range(n_models)
    }
    fraction = float(rng.choice([0.2, 0.35, 0.5, 0.9]))
    return feats, labels, fraction


def space(feats):
    """The documented feature space: one model as is, several models L2-normalised and concatenated."""
    xs = [np.asarray(x, dtype=np.float64) for x in feats.values()]
    if len(xs) == 1:
        return xs[0]
    return np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True) for x in xs], axis=1)


def per_class(labels, fraction, pick):
    """Reference driver: classes in sorted order, budget round-half-even(p N_c), pick(rows, b, c)."""
    out = []
    for c, cls in enumerate(np.unique(labels)):
        rows = np.flatnonzero(labels == cls)
        b = round(len(rows) * fraction)
        if b:
            out += [int(rows[i]) for i in pick(rows, b, c)]
    return out


TIE_RTOL = 1e-6  # documented: values within TIE_RTOL * scale of the best are ties -> lowest row


def argbest(values, maximize, tol):
    """Lowest index whose value is within ``tol`` of the best (None entries are skipped)."""
    valid = [v for v in values if v is not None]
    best = max(valid) if maximize else min(valid)
    return next(i for i, v in enumerate(values) if v is not None and (v >= best - tol if maximize else v <= best + tol))


def dist(a, b):
    return math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(a, b)))


def shifted_cos(a, b):
    return (1.0 + float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))) / 2.0


# ----------------------------------------------------------------------------- references
def ref_kcenter(x, b, start):
    """Farthest-first on squared distances; scale = max ||x_i - mean||^2."""
    tol = TIE_RTOL * max(dist(v, x.mean(axis=0)) ** 2 for v in x)
    picks = [start]
    while len(picks) < b:
        d = [None if i in picks else min(dist(x[i], x[j]) ** 2 for j in picks) for i in range(len(x))]
        picks.append(argbest(d, True, tol))
    return picks


def ref_herding(x, b):
    """argmin_i ||mu - (sum_S x + x_i) / (t + 1)||, compared as ||sum_S x + x_i - (t + 1) mu||^2;
    scale = (||sum_S x - t mu|| + max ||x_i - mu||)^2."""
    mu = x.mean(axis=0)
    z_max = max(dist(v, mu) for v in x)
    picks = []
    for t in range(b):
        s = x[picks].sum(axis=0) if picks else np.zeros(x.shape[1])
        e = [None if i in picks else dist(s + x[i], (t + 1) * mu) ** 2 for i in range(len(x))]
        tol = TIE_RTOL * (dist(s, t * mu) + z_max) ** 2
        picks.append(argbest(e, False, tol))
    return picks


def ref_greedy(x, b, f):
    """Plain greedy on marginal gains f(S + i) - f(S); scale = n."""
    picks = []
    for _ in range(b):
        base = f(picks)
        g = [None if i in picks else f(picks + [i]) - base for i in range(len(x))]
        picks.append(argbest(g, True, TIE_RTOL * len(x)))
    return picks


def facility(x):
    s = [[shifted_cos(x[i], x[j]) for j in range(len(x))] for i in range(len(x))]
    return lambda sel: sum(max((s[i][j] for j in sel), default=0.0) for i in range(len(x)))


def graph_cut(x, lam):
    s = [[shifted_cos(x[i], x[j]) for j in range(len(x))] for i in range(len(x))]
    return lambda sel: sum(s[i][j] for i in range(len(x)) for j in sel) - lam * sum(s[i][j] for i in sel for j in sel)


def ref_ranks(values):
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    ranks = [0] * len(values)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_models", [1, 2])
def test_kcenter(seed, n_models):
    feats, labels, p = make_case(seed, n_models)
    x = space(feats)

    def pick(rows, b, c):
        start = int(np.random.default_rng([seed, c]).integers(len(rows)))  # documented start
        return ref_kcenter(x[rows], b, start)

    r = run_selection("kcenter", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(labels, p, pick)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_models", [1, 2])
def test_herding(seed, n_models):
    feats, labels, p = make_case(seed, n_models)
    x = space(feats)
    r = run_selection("herding", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(labels, p, lambda rows, b, c: ref_herding(x[rows], b))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_models", [1, 2])
def test_facility_location(seed, n_models):
    feats, labels, p = make_case(seed, n_models)
    x = space(feats)
    r = run_selection("facility_location", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(labels, p, lambda rows, b, c: ref_greedy(x[rows], b, facility(x[rows])))
    f_gain = r.table.set_index("index").loc[r.selected, "gain"].to_numpy()
    assert np.all(np.diff(f_gain[: max(1, round(np.sum(labels == labels.min()) * p))]) <= 1e-6)  # diminishing


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_graph_cut(seed, lam):
    feats, labels, p = make_case(seed, 1 + seed % 2)
    x = space(feats)
    r = run_selection("graph_cut", feats, labels, p, seed=seed, lam=lam)
    assert r.selected.tolist() == per_class(
        labels, p, lambda rows, b, c: ref_greedy(x[rows], b, graph_cut(x[rows], lam))
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_min_mean_rank(seed):
    feats, labels, p = make_case(seed, 2)
    xs = [np.asarray(x, dtype=np.float64) for x in feats.values()]

    def pick(rows, b, c):
        ranks = np.zeros(len(rows))
        for x in xs:
            mu = x[rows].mean(axis=0)
            ranks += ref_ranks([dist(x[i], mu) for i in rows])
        score = ranks / len(xs) / len(rows)
        return sorted(range(len(rows)), key=lambda i: (score[i], i))[:b]

    r = run_selection("min", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(labels, p, pick)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_models", [1, 2])
def test_moderate_ds(seed, n_models):
    feats, labels, p = make_case(seed, n_models)
    x = space(feats)

    def pick(rows, b, c):
        med = np.median(x[rows], axis=0)
        d = [dist(x[i], med) for i in rows]
        order = sorted(range(len(rows)), key=lambda i: (d[i], i))
        low = round(0.5 * (len(rows) - b))  # official: round(0.5 * (N - budget))
        return order[low : low + b]

    r = run_selection("moderate_ds", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(labels, p, pick)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_is_uniform_without_replacement_by_documented_keys(seed):
    feats, labels, p = make_case(seed)
    keys = np.random.default_rng(seed).random(len(labels))
    r = run_selection("random", feats, labels, p, seed=seed)
    assert r.selected.tolist() == per_class(
        labels, p, lambda rows, b, c: sorted(range(len(rows)), key=lambda i: keys[rows[i]])[:b]
    )


def test_single_model_choice_and_l2_option():
    feats, labels, p = make_case(3, 2)
    x = np.asarray(feats["m1"], dtype=np.float64)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for params, ref_x in (({"model": "m1"}, x), ({"model": "m1", "normalize": "l2"}, xn)):
        r = run_selection("herding", feats, labels, p, **params)
        assert r.selected.tolist() == per_class(labels, p, lambda rows, b, c, ref_x=ref_x: ref_herding(ref_x[rows], b))


def test_facility_location_blocks_follow_documented_procedure():
    """Above max_dense: seeded random blocks, largest-remainder budget split, exact greedy per block,
    picks interleaved round-robin."""
    rng = np.random.default_rng(11)
    n, seed, max_dense = 47, 5, 12
    x = rng.standard_normal((n, 3)).astype(np.float32)
    labels = np.zeros(n, dtype=int)
    p = 0.4
    b = round(n * p)
    r = run_selection("facility_location", {"m": x}, labels, p, seed=seed, max_dense=max_dense)
    perm = np.random.default_rng([seed, 0]).permutation(n)
    blocks = np.array_split(perm, math.ceil(n / max_dense))
    sizes = [len(bl) for bl in blocks]
    quotas = [b * s / n for s in sizes]
    shares = [math.floor(q) for q in quotas]
    for i in sorted(range(len(blocks)), key=lambda i: (-(quotas[i] - shares[i]), i))[: b - sum(shares)]:
        shares[i] += 1
    xd = x.astype(np.float64)
    per_block = [[int(bl[i]) for i in ref_greedy(xd[bl], s, facility(xd[bl]))] for bl, s in zip(blocks, shares)]
    expected = [pb[k] for k in range(max(shares)) for pb in per_block if k < len(pb)]
    assert r.selected.tolist() == expected
    assert len(set(expected)) == b


def test_facility_location_blocks_equal_exact_when_class_fits():
    feats, labels, p = make_case(2)
    a = run_selection("facility_location", feats, labels, p, max_dense=10_000)
    b = run_selection("facility_location", feats, labels, p, max_dense=max(np.bincount(labels)))
    assert a.selected.tolist() == b.selected.tolist()


@pytest.mark.parametrize("method", ["kcenter", "herding", "facility_location", "graph_cut", "min", "moderate_ds"])
def test_exact_ties_go_to_the_lowest_row(method):
    """Identical rows tie everywhere: every method must keep the lowest rows (kcenter after its start)."""
    x = np.tile(np.array([[1.0, 2.0, 3.0]], dtype=np.float32), (10, 1))
    r = run_selection(method, {"m": x}, np.zeros(10, dtype=int), 0.4, seed=0)
    if method == "kcenter":
        start = int(np.random.default_rng([0, 0]).integers(10))
        assert r.selected.tolist() == [start] + [i for i in range(10) if i != start][:3]
    elif method == "moderate_ds":
        assert r.selected.tolist() == [3, 4, 5, 6]  # band of ranks round(0.5 * 6) = 3 .. 6
    else:
        assert r.selected.tolist() == [0, 1, 2, 3]
