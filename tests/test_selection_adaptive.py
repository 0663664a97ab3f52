"""The adaptive selectors (cleaned, ccs, bws, auto), the label consensus and the budget
slider, each against a slow, obvious reference written from the docstrings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.features import FeatureSet
from core.selection import get_selector, label_consensus, list_selectors, run_selection
from core.selection.registry import SelectionData

from .test_selection_greedy import ref_herding

STRATEGIES = ("paper", "proportional", "uniform", "difficulty", "manual")


# ----------------------------------------------------------------------------- data
def clusters(seed=0, sizes=(30, 24, 36, 18), dims=(6, 5), flip=0.0, spread=0.6):
    """Gaussian clusters per class in two models; ``flip`` of the labels moved to another class."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(true)
    feats = {}
    for m, d in enumerate(dims):
        centres = rng.standard_normal((len(sizes), d)) * 3.0
        feats[f"m{m}"] = (centres[true] + spread * rng.standard_normal((len(true), d))).astype(np.float32)
    labels = true.copy()
    flipped = rng.random(len(true)) < flip
    labels[flipped] = (true[flipped] + rng.integers(1, len(sizes), flipped.sum())) % len(sizes)
    return feats, labels, true, flipped


def budget_kwargs(budget, labels):
    if budget == "manual":
        classes = np.unique(labels)
        return {"budget_counts": {str(classes[0]): 3, str(classes[2]): 7, str(classes[1]): 1}}
    return {}


# ----------------------------------------------------------------------------- consensus reference
def ref_consensus(feats, labels, k=10, knn_weight=0.5, max_agreement=0.05):
    classes = np.unique(labels)
    codes = np.searchsorted(classes, labels)
    n, c = len(labels), len(classes)
    support = np.zeros((n, c))
    for x in feats.values():
        xn = np.asarray(x, np.float64)
        xn = xn / np.linalg.norm(xn, axis=1, keepdims=True)
        means = np.stack([xn[codes == j].mean(axis=0) for j in range(c)])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        for i in range(n):
            ncm = int(np.argmax([float(xn[i] @ means[j]) for j in range(c)]))
            support[i, ncm] += 1 - knn_weight
            sims = sorted(((float(xn[i] @ xn[j]), j) for j in range(n) if j != i), reverse=True)[:k]
            for _, j in sims:
                support[i, codes[j]] += knn_weight / len(sims)
    support /= len(feats)
    agreement = support[np.arange(n), codes]
    suggested = np.array(
        [codes[i] if agreement[i] >= support[i].max() - 1e-12 else int(np.argmax(support[i])) for i in range(n)]
    )
    suspect = (suggested != codes) & (agreement <= max_agreement + 1e-12)
    ref_consensus.support = support
    return agreement, suggested, suspect


@pytest.mark.parametrize("seed", range(3))
def test_consensus_matches_reference(seed):
    feats, labels, _, _ = clusters(seed, sizes=(14, 9, 12), flip=0.2, spread=1.5)
    data = SelectionData.build(feats, labels, 0.5, 0)
    got = label_consensus(data, k=5, max_agreement=0.3)
    agreement, suggested, suspect = ref_consensus(feats, labels, k=5, max_agreement=0.3)
    np.testing.assert_allclose(got.agreement, agreement, atol=1e-9)
    assert got.suggested.tolist() == suggested.tolist()
    assert got.suspect.tolist() == suspect.tolist()
    np.testing.assert_allclose(got.confidence, ref_consensus.support[np.arange(len(labels)), suggested], atol=1e-9)
    assert got.suspect.any() and not got.suspect.all()


def test_consensus_finds_known_flips_and_their_true_class():
    feats, labels, true, flipped = clusters(1, sizes=(40, 40, 40, 40), flip=0.15, spread=0.3)
    assert flipped.sum() > 10
    data = SelectionData.build(feats, labels, 0.5, 0)
    got = label_consensus(data)
    assert not got.suspect[~flipped].any()  # tight clusters: no clean row is flagged
    assert got.suspect[flipped].mean() >= 0.8  # a flip whose neighbours share its wrong label can be missed
    assert (got.suggested[flipped] == true[flipped]).all()  # flagged or not, the true class is suggested
    assert (got.confidence[got.suspect] > 0.8).all()
    assert (got.agreement[~flipped] > 0.5).all()


def test_label_issue_columns_in_the_table():
    feats, labels, true, flipped = clusters(2, sizes=(30, 30, 30), flip=0.1, spread=0.3)
    names = np.array(["cat", "dog", "=cmd"])  # string labels, one formula-like
    r = run_selection("random", feats, names[labels], 0.3, label_issues=True)
    t = r.table
    direct = label_consensus(SelectionData.build(feats, names[labels], 0.3, 0))
    assert t["suspected_mislabel"].tolist() == direct.suspect.tolist()
    assert not t.loc[~flipped, "suspected_mislabel"].any() and t.loc[flipped, "suspected_mislabel"].mean() > 0.8
    assert t.loc[flipped, "suggested_class"].tolist() == names[true[flipped]].tolist()
    assert t["label_confidence"].between(0, 1).all()
    assert "suspected_mislabel" not in run_selection("random", feats, labels, 0.3).table.columns


# ----------------------------------------------------------------------------- cleaned
@pytest.mark.parametrize("budget", STRATEGIES)
@pytest.mark.parametrize("seed", range(2))
def test_cleaned_matches_reference(budget, seed):
    feats, labels, _, _ = clusters(seed + 10, flip=0.25, spread=1.2)
    r = run_selection("cleaned", feats, labels, 0.4, budget=budget, seed=seed, **budget_kwargs(budget, labels))
    _, _, suspect = ref_consensus(feats, labels)
    agreement = ref_consensus(feats, labels)[0]
    xs = [np.asarray(x, np.float64) for x in feats.values()]
    space = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True) for x in xs], axis=1)
    expected = []
    for cls, b in zip(r.budget_table["class"], r.budget_table["budget"]):
        rows = np.flatnonzero(labels == cls)
        clean = rows[~suspect[rows]]
        picks = list(clean[ref_herding(space[clean], min(int(b), len(clean)))]) if len(clean) else []
        flagged = sorted(rows[suspect[rows]], key=lambda i: (-agreement[i], i))
        expected += picks + flagged[: int(b) - len(picks)]
    assert r.selected.tolist() == [int(i) for i in expected]
    assert r.details["set_aside"] == int(suspect.sum())


def test_cleaned_keeps_no_known_flip_when_it_can():
    feats, labels, _, flipped = clusters(3, sizes=(40, 40, 40), flip=0.2, spread=0.3)
    data = SelectionData.build(feats, labels, 0.5, 0)
    suspect = label_consensus(data).suspect
    for inner in ("herding", "random", "kcenter", "graph_cut"):
        r = run_selection("cleaned", feats, labels, 0.5, inner=inner)
        assert not suspect[r.selected].any(), inner  # every class has enough clean rows
        plain = run_selection(inner, feats, labels, 0.5)
        assert flipped[r.selected].mean() < flipped.mean(), inner
        assert flipped[r.selected].mean() <= flipped[plain.selected].mean(), inner


# ----------------------------------------------------------------------------- ccs
def ref_difficulty(feats, labels):
    classes = np.unique(labels)
    total = np.zeros(len(labels))
    for x in feats.values():
        x = np.asarray(x, np.float64)
        means = {c: x[labels == c].mean(axis=0) for c in classes}
        for i in range(len(labels)):
            own = np.linalg.norm(x[i] - means[labels[i]])
            other = min(np.linalg.norm(x[i] - means[c]) for c in classes if c != labels[i])
            total[i] += own / other
    return total / len(feats)


def ref_ccs_class(scores, budget, beta, k, rng):
    """The official code's steps, written out: prune, strata by [start, end), fewest-first, shuffle."""
    n = len(scores)
    cut = min(math.floor(beta * n), n - budget)
    hardest_first = sorted(range(n), key=lambda i: (-scores[i], i))
    keep = sorted(hardest_first[cut:])
    s = [scores[i] for i in keep]
    lo, hi = min(s), max(s)
    if hi <= lo:
        bins = [keep] + [[] for _ in range(k - 1)]
    else:
        top = np.nextafter(hi + 1e-4 * (hi - lo), np.inf)
        step = (top - lo) / k
        bins = [[i for i in keep if lo + j * step <= scores[i] < lo + (j + 1) * step] for j in range(k)]
    sizes = [len(b) for b in bins]
    order = sorted(range(k), key=lambda j: (sizes[j], j))
    share, rest = [0] * k, budget
    for t, j in enumerate(order):
        share[j] = min(sizes[j], rest // (k - t))
        rest -= share[j]
    picks = []
    for j in range(k):
        members = np.array(bins[j], dtype=np.int64)
        picks += members[rng.permutation(len(members))][: share[j]].tolist()
    return picks


@pytest.mark.parametrize("budget", STRATEGIES)
@pytest.mark.parametrize("cutoff,strata", [(0.1, 50), (0.3, 4), (0.0, 7)])
def test_ccs_matches_reference(budget, cutoff, strata):
    feats, labels, _, _ = clusters(4, flip=0.1, spread=1.0)
    r = run_selection(
        "ccs", feats, labels, 0.3, budget=budget, seed=5, cutoff=cutoff, strata=strata, **budget_kwargs(budget, labels)
    )
    h = ref_difficulty(feats, labels)
    np.testing.assert_allclose(r.table["difficulty_score"], h, rtol=1e-5)
    expected = []
    for c, (cls, b) in enumerate(zip(r.budget_table["class"], r.budget_table["budget"])):
        rows = np.flatnonzero(labels == cls)
        # float32-computed scores decide the strata; the reference reuses them for exact bin edges
        scores = r.table["difficulty_score"].to_numpy()[rows]
        local = ref_ccs_class(list(scores), int(b), cutoff, strata, np.random.default_rng([5, c]))
        expected += rows[local].tolist()
    assert r.selected.tolist() == expected


def test_ccs_cutoff_drops_the_hardest_and_strata_spread_the_budget():
    feats, labels, _, flipped = clusters(5, sizes=(60, 60), flip=0.1, spread=0.3)
    r = run_selection("ccs", feats, labels, 0.5, cutoff=0.2, strata=5)
    h = r.table["difficulty_score"].to_numpy()
    for cls in (0, 1):
        rows = np.flatnonzero(labels == cls)
        hardest = rows[np.argsort(-h[rows], kind="stable")][: math.floor(0.2 * len(rows))]
        assert not np.isin(hardest, r.selected).any()
    assert not flipped[r.selected].any()


# ----------------------------------------------------------------------------- bws
def ref_ridge_accuracy(x, y, rows, n_classes, lam):
    xt = np.hstack([x[rows], np.ones((len(rows), 1))])
    targets = np.eye(n_classes)[y[rows]]
    pen = lam * np.eye(xt.shape[1])
    pen[-1, -1] = 0.0
    w = np.linalg.solve(xt.T @ xt + pen, xt.T @ targets)
    scores = np.hstack([x, np.ones((len(x), 1))]) @ w
    scores[:, [c for c in range(n_classes) if c not in set(y[rows].tolist())]] = -np.inf
    return float(np.mean(np.argmax(scores, axis=1) == y))


@pytest.mark.parametrize("budget", STRATEGIES)
def test_bws_matches_reference(budget):
    feats, labels, _, _ = clusters(6, flip=0.2, spread=1.0)
    r = run_selection("bws", feats, labels, 0.3, budget=budget, step=0.1, **budget_kwargs(budget, labels))
    h = r.table["difficulty_score"].to_numpy()
    np.testing.assert_allclose(h, ref_difficulty(feats, labels), rtol=1e-5)
    xs = [np.asarray(x, np.float64) for x in feats.values()]
    x = np.concatenate([v / np.linalg.norm(v, axis=1, keepdims=True) for v in xs], axis=1)
    classes = list(r.budget_table["class"])
    codes = np.array([classes.index(v) for v in labels])
    orders = [sorted(np.flatnonzero(labels == cls), key=lambda i: (-h[i], i)) for cls in classes]
    budgets = r.budget_table["budget"].tolist()
    best, best_rows, accs = -1, None, {}
    s_k = 0
    while True:
        s = round(s_k * 0.1, 12)
        rows = []
        for o, b in zip(orders, budgets):
            first = min(int(np.round(s * len(o))), len(o) - b)
            rows += o[first : first + b]
        acc = ref_ridge_accuracy(x, codes, np.array(rows, dtype=np.int64), len(classes), 1.0) if rows else 0.0
        accs[f"{s:g}"] = acc
        if acc > best + 1e-12:
            best, best_rows = acc, rows
        if s >= 1 or all(np.round(s * len(o)) >= len(o) - b for o, b in zip(orders, budgets)):
            break
        s_k += 1
    assert list(r.details["pool_accuracy"]) == list(accs)
    np.testing.assert_allclose(list(r.details["pool_accuracy"].values()), list(accs.values()), atol=1.5 / len(labels))
    assert r.selected.tolist() == [int(i) for i in best_rows]


def test_bws_avoids_the_hardest_window_under_noise():
    feats, labels, _, flipped = clusters(7, sizes=(50, 50, 50), flip=0.3, spread=0.3)
    r = run_selection("bws", feats, labels, 0.3)
    assert r.details["window_start"] > 0
    h = r.table["difficulty_score"].to_numpy()
    hardest = np.concatenate(
        [
            rows[np.argsort(-h[rows], kind="stable")][:b]
            for rows, b in (
                (np.flatnonzero(labels == c), b) for c, b in zip(r.budget_table["class"], r.budget_table["budget"])
            )
        ]
    )
    assert flipped[r.selected].mean() < flipped[hardest].mean()


# ----------------------------------------------------------------------------- auto
def test_auto_estimates_follow_the_documented_procedure():
    """A slow re-computation of the k-fold estimate for a two-candidate list."""
    from core.selection.auto import AUTO_STREAM

    feats, labels, _, _ = clusters(8, sizes=(30, 30, 30), flip=0.2, spread=1.0)
    r = run_selection(
        "auto", feats, labels, 0.3, candidates="random,herding", folds=3, repeats=2, seed=4, probe="ridge"
    )
    xs = [np.asarray(x, np.float64) for x in feats.values()]
    x = np.concatenate([v / np.linalg.norm(v, axis=1, keepdims=True) for v in xs], axis=1)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for c in range(3):
        rows = np.flatnonzero(labels == c)
        perm = np.random.default_rng([0, AUTO_STREAM, c]).permutation(len(rows))
        fold[rows[perm]] = (start + np.arange(len(rows))) % 3
        start += len(rows)
    gains = {"random": [], "herding": []}
    for f in range(3):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        b = [int(np.round(0.3 * np.sum(labels[train] == c))) for c in range(3)]  # same fraction of the fold pool
        herd = []
        for c in range(3):
            rows = train[labels[train] == c]
            herd += rows[ref_herding(x[rows], b[c])].tolist()
        sub_keys = np.random.default_rng(0).random(len(train))  # random candidate: seed cv_seed on the fold pool
        rnd = []
        for c in range(3):
            local = np.flatnonzero(labels[train] == c)
            rnd += train[local[np.argsort(sub_keys[local], kind="stable")][: b[c]]].tolist()
        refs = []
        for rep in range(2):
            rng = np.random.default_rng([0, AUTO_STREAM, f, rep])
            rr = []
            for c in range(3):
                rr += rng.choice(train[labels[train] == c], size=b[c], replace=False).tolist()
            refs.append(rr)

        def acc(rows, test=test):
            xt = np.hstack([x[rows], np.ones((len(rows), 1))])
            pen = np.eye(xt.shape[1])
            pen[-1, -1] = 0
            w = np.linalg.solve(xt.T @ xt + pen, xt.T @ np.eye(3)[labels[rows]])
            return float(np.mean(np.argmax(np.hstack([x[test], np.ones((len(test), 1))]) @ w, 1) == labels[test]))

        base = np.mean([acc(np.array(rr)) for rr in refs])
        gains["herding"].append(100 * (acc(np.array(herd)) - base))
        gains["random"].append(100 * (acc(np.array(rnd)) - base))
    est = {e["candidate"]: e for e in r.details["estimates"]}
    for name in gains:
        np.testing.assert_allclose(est[name]["fold_gains"], gains[name], atol=1e-6)
    expect = "herding" if np.mean(gains["herding"]) > 0 else "random"
    assert r.details["chosen"] == expect
    ref = run_selection(expect, feats, labels, 0.3, seed=4)
    assert r.selected.tolist() == ref.selected.tolist()


def test_auto_default_probe_is_the_evaluation_probe():
    """probe=logistic trains core.evaluation.probes.LinearProbe on each fold's subset."""
    from core.evaluation.probes import LinearProbe
    from core.selection.auto import stratified_folds

    feats, labels, _, _ = clusters(17, sizes=(20, 20, 20), flip=0.2, spread=1.5)
    r = run_selection("auto", feats, labels, 0.5, candidates="random", folds=2, repeats=1)
    assert r.details["probe"].startswith("logistic")
    data = SelectionData.build(feats, labels, 0.5, 0)
    fold = stratified_folds(data, 2, 0)
    xs = [np.asarray(v, np.float32) for v in feats.values()]
    x = np.concatenate([v / np.linalg.norm(v, axis=1, keepdims=True) for v in xs], axis=1)
    accs = []
    for f in range(2):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        keys = np.random.default_rng(0).random(len(train))
        rows = []
        for c in range(3):
            local = np.flatnonzero(labels[train] == c)
            rows += train[local[np.argsort(keys[local], kind="stable")][: int(np.round(0.5 * len(local)))]].tolist()
        rows = np.sort(np.array(rows))
        pred = LinearProbe().fit_predict(x[rows], labels[rows], x[test], 3)
        accs.append(100 * float(np.mean(pred == labels[test])))
    est = r.details["estimates"][0]
    assert est["candidate"] == "random"
    np.testing.assert_allclose(est["accuracy"], np.mean(accs), atol=1e-6)


@pytest.mark.slow
def test_auto_cleans_under_heavy_noise_and_its_choice_ignores_the_run_seed():
    feats, labels, _, flipped = clusters(9, sizes=(60, 60, 60, 60), flip=0.35, spread=2.0)
    a = run_selection("auto", feats, labels, 0.3, seed=0)
    b = run_selection("auto", feats, labels, 0.3, seed=7)
    assert a.details["chosen"] == b.details["chosen"]
    assert b.details.get("from_cache") and a.details["estimates"] == b.details["estimates"]
    assert a.details["chosen"] != "random"
    assert flipped[a.selected].mean() < 0.7 * flipped.mean()
    est = {e["candidate"]: e for e in a.details["estimates"]}
    assert est[a.details["chosen"]]["gain"] == max(
        e["gain"] for e in a.details["estimates"] if e["candidate"] != "random"
    )
    assert (
        est[a.details["chosen"]]["gain_low"]
        <= est[a.details["chosen"]]["gain"]
        <= est[a.details["chosen"]]["gain_high"]
    )


def test_auto_fold_budgets_keep_tiny_classes_and_never_the_whole_fold():
    from core.selection.auto import fold_budgets, stratified_folds

    feats, labels, _, _ = clusters(16, sizes=(40, 40, 40))
    data = SelectionData.build(feats, labels, 0.02, 0)
    folds = stratified_folds(data, 3, 0)
    sub = data.subset(np.flatnonzero(folds != 0))
    final = np.round(0.02 * data.sizes).astype(int)  # 1 per class; 2 % of ~27 rounds to 1 too, 1 % to 0
    assert fold_budgets(data, sub, final).tolist() == [1, 1, 1]
    data.fraction = 0.01
    sub = data.subset(np.flatnonzero(folds != 0))
    assert fold_budgets(data, sub, np.array([0, 1, 0])).tolist() == [0, 1, 0]
    data.fraction = 0.9
    sub = data.subset(np.flatnonzero(folds != 0))
    inner = fold_budgets(data, sub, np.round(0.9 * data.sizes).astype(int))
    assert (inner == np.round(0.9 * sub.sizes)).all() and (inner < sub.sizes).all()


def test_auto_falls_back_to_random_when_no_candidate_beats_it():
    feats, labels, _, _ = clusters(10, sizes=(30, 30))
    r = run_selection("auto", feats, labels, 0.3, candidates="random,herding", margin=1000.0, seed=3)
    assert r.details["chosen"] == "random"
    assert r.selected.tolist() == run_selection("random", feats, labels, 0.3, seed=3).selected.tolist()
    r = run_selection("auto", feats, labels, 1.0)
    assert r.details["chosen"] == "random" and "nothing to estimate" in r.details["note"]


def test_auto_time_budget_progress_and_bad_candidates():
    from core.errors import SelectionInputError

    feats, labels, _, _ = clusters(11, sizes=(20, 20))
    seen = []
    r = run_selection("auto", feats, labels, 0.3, time_budget_s=1e-9, progress=lambda d, t, w: seen.append((d, t)))
    assert r.details["stopped_by_time_budget"]
    assert [e["candidate"] for e in r.details["estimates"]] == ["random", "herding"]
    assert seen and [d for d, _ in seen] == list(range(1, len(seen) + 1)) and seen[0][1] == 7 * 3
    with pytest.raises(SelectionInputError, match="unknown candidate 'nope'"):
        run_selection("auto", feats, labels, 0.3, candidates="random,nope")
    with pytest.raises(SelectionInputError, match="Unknown parameter 'zz'"):
        run_selection("auto", feats, labels, 0.3, candidates="ccs:zz=1")
    with pytest.raises(SelectionInputError, match="own candidates"):
        run_selection("auto", feats, labels, 0.3, candidates="auto")


def test_auto_reads_no_test_label():
    """Poisoning the test split's labels changes nothing auto sees or chooses."""
    from core.evaluation import EvalConfig
    from core.evaluation.protocol import Evaluator

    feats, labels, _, _ = clusters(12, sizes=(40, 40, 40), flip=0.2, spread=1.0)
    split = np.where(np.arange(len(labels)) % 4 == 0, "test", "train")
    feats["eval"] = feats["m0"].copy()
    poisoned = labels.copy()
    test = split == "test"
    poisoned[test] = np.random.default_rng(0).permutation(poisoned[test])
    poisoned[np.flatnonzero(test)[:5]] = 0
    choices = []
    for lab in (labels, poisoned):
        fs = FeatureSet(dict(feats), lab, split=split)
        ev = Evaluator(fs, EvalConfig(eval_model="eval", seeds=(0,)), selection_models=["m0", "m1"], device="cpu")
        r = ev.select("auto", 0.3)
        choices.append((r.details["chosen"], r.details["estimates"], r.selected.tolist()))
    assert choices[0] == choices[1]


# ----------------------------------------------------------------------------- registry and slider
PREFIX = [m for m in list_selectors() if get_selector(m).prefix_consistent]


def test_registry_declares_capabilities():
    assert {"min", "herding", "kcenter", "random", "graph_cut", "cleaned"} <= set(PREFIX)
    assert not get_selector("ram_apl").prefix_consistent and get_selector("ram_apl").uses_fraction
    assert get_selector("auto").uses_fraction
    feats, labels, _, _ = clusters(13)
    for name in list_selectors():
        spec = get_selector(name)
        assert spec.summary and spec.parameters is not None
        r = run_selection(name, feats, labels, 0.3)
        if spec.score_column:
            assert spec.score_column in r.table.columns, name


@pytest.mark.parametrize("budget", ["paper", "proportional", "uniform", "difficulty"])
@pytest.mark.parametrize("method", PREFIX)
def test_reslice_equals_a_fresh_run(method, budget):
    feats, labels, _, _ = clusters(14, flip=0.1, spread=1.0)
    base = run_selection(method, feats, labels, 0.3, budget=budget, seed=2, rank_all=True)
    assert base.can_reslice()
    assert base.selected.tolist() == run_selection(method, feats, labels, 0.3, budget=budget, seed=2).selected.tolist()
    for p in (0.05, 0.2, 0.55, 0.9, 1.0):
        fresh = run_selection(method, feats, labels, p, budget=budget, seed=2)
        cut = base.reslice(p)
        assert cut.selected.tolist() == fresh.selected.tolist(), p
        assert cut.budget_table["kept"].tolist() == fresh.budget_table["kept"].tolist()
        assert cut.table["order"].tolist() == fresh.table["order"].tolist()


def test_fraction_dependent_methods_cannot_be_resliced():
    feats, labels, _, _ = clusters(15)
    r = run_selection("ram_apl", feats, labels, 0.3, rank_all=True)
    assert not r.can_reslice()
    with pytest.raises(ValueError, match="run it again"):
        r.reslice(0.5)
    r = run_selection("herding", feats, labels, 0.3)  # ranked only through its budget
    assert not r.can_reslice()


# ----------------------------------------------------------------------------- auto at scale
def test_auto_estimates_a_large_pool_on_a_stratified_sample_of_rows_and_classes():
    from core.selection.auto import AUTO_STREAM, SAMPLE_TAG, sample_rows
    from core.selection.params import AutoParams

    feats, labels, _, _ = clusters(21, sizes=(90, 60, 30, 120, 45, 75), flip=0.1, spread=1.0)
    data = SelectionData.build(feats, labels, 0.3, 0)
    params = AutoParams(sample=120, sample_classes=4)
    rows = sample_rows(data, params)
    chosen = np.sort(np.random.default_rng([0, AUTO_STREAM, SAMPLE_TAG]).choice(6, size=4, replace=False))
    assert sorted(set(data.codes[rows].tolist())) == chosen.tolist()
    n_chosen = data.sizes[chosen].sum()
    for c in chosen:  # proportional to the class, at least `folds` rows
        want = max(3, int(round(data.sizes[c] * 120 / n_chosen)))
        assert (data.codes[rows] == c).sum() == want
    assert np.array_equal(rows, np.sort(rows)) and len(np.unique(rows)) == len(rows)
    assert sample_rows(data, AutoParams(sample=0, sample_classes=0)).tolist() == list(range(data.n))
    assert sample_rows(data, AutoParams(sample=10_000, sample_classes=6)).tolist() == list(range(data.n))
    r = run_selection("auto", feats, labels, 0.3, sample=120, sample_classes=4, seed=5)
    note = r.details["sample"]
    assert note["sampled"] and note["rows"] == len(rows) and note["classes"] == 4 and note["pool_classes"] == 6
    assert "sample_classes = 4" in note["why"] and "120" in note["why"]
    assert r.n_selected == int(np.round(0.3 * data.sizes).sum())  # the chosen method runs on the whole pool
    whole = run_selection("auto", feats, labels, 0.3, seed=5)
    assert not whole.details["sample"]["sampled"] and "the whole pool" in whole.details["sample"]["why"]


def test_auto_fits_each_distinct_training_subset_once(monkeypatch):
    """The random subsets of a fold are the same for every candidate: fitted once, same estimate."""
    from core.evaluation import probes

    feats, labels, _, _ = clusters(22, sizes=(30, 30, 30), flip=0.2, spread=1.0)
    calls = []
    real = probes.LinearProbe.fit_predict

    def counting(self, *args, **kwargs):
        calls.append(len(args[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(probes.LinearProbe, "fit_predict", counting)
    r = run_selection("auto", feats, labels, 0.3, candidates="random,herding,ram_apl", folds=3, repeats=2)
    assert len(calls) == 3 * (3 + 2)  # per fold: 3 candidates + 2 random subsets, not 3 x (1 + 2)
    est = {e["candidate"]: e for e in r.details["estimates"]}
    assert est["herding"]["random_accuracy"] == est["ram_apl"]["random_accuracy"]


def test_nearest_class_means_skip_classes_without_rows():
    import torch

    from core.selection._linalg import distances_to_present_means
    from core.selection.budgets import sample_difficulty

    x = torch.tensor([[0.1, 0.05], [0.95, 0.1], [0.05, 0.9]], dtype=torch.float32)
    codes = torch.tensor([0, 0, 2])
    means = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # class 1: no row
    got = distances_to_present_means(x, codes, means, want_nearest=True, want_other=True)
    assert got["nearest"].tolist() == [0, 0, 2]  # (0.1, 0.05) is nearer the empty placeholder (0, 0)
    np.testing.assert_allclose(got["other"][0].item(), np.hypot(0.1, 0.95), rtol=1e-6)
    feats, labels, _, _ = clusters(23, sizes=(20, 20, 20))
    data = SelectionData.build(feats, labels, 0.5, 0)
    sub = data.subset(np.flatnonzero(data.codes != 1))  # class 1 left with no row
    h = sample_difficulty(sub)
    ref = sample_difficulty(
        SelectionData.build({m: v[labels != 1] for m, v in feats.items()}, labels[labels != 1], 0.5, 0)
    )
    np.testing.assert_allclose(h, ref, rtol=1e-5)
    r = get_selector("ram_apl").fn(sub, np.array([3, 0, 3]), get_selector("ram_apl").make_params({}))
    assert np.isin(r.columns["apl"], [0.0, 0.5, 1.0]).all()


def test_auto_on_a_sampled_pool_reads_no_test_label():
    from core.evaluation import EvalConfig
    from core.evaluation.protocol import Evaluator

    feats, labels, _, _ = clusters(24, sizes=(60, 60, 60, 60), flip=0.2, spread=1.0)
    split = np.where(np.arange(len(labels)) % 4 == 0, "test", "train")
    feats["eval"] = feats["m0"].copy()
    poisoned = labels.copy()
    test = split == "test"
    poisoned[test] = np.random.default_rng(1).permutation(poisoned[test])
    outs = []
    for lab in (labels, poisoned):
        fs = FeatureSet(dict(feats), lab, split=split)
        ev = Evaluator(fs, EvalConfig(eval_model="eval", seeds=(0,)), selection_models=["m0", "m1"], device="cpu")
        r = ev.select("auto", 0.3, params={"sample": 60, "sample_classes": 3})
        assert r.details["sample"]["sampled"] and r.details["sample"]["classes"] == 3
        outs.append((r.details["chosen"], r.details["estimates"], r.details["sample"], r.selected.tolist()))
    assert outs[0] == outs[1]


def test_a_subset_reads_its_rows_when_asked_and_cleaned_never_copies_the_whole_subset(monkeypatch):
    from core.selection.registry import RowView

    feats, labels, _, _ = clusters(25, sizes=(40, 30, 50), flip=0.2, spread=1.0)
    data = SelectionData.build(feats, labels, 0.3, 0)
    rows = np.flatnonzero(np.arange(data.n) % 3 != 0)
    sub = data.subset(rows)
    assert all(isinstance(x, RowView) for x in sub.features.values())
    x = sub.features["m0"]
    np.testing.assert_array_equal(x[[0, 5, 7]], feats["m0"][rows[[0, 5, 7]]])
    np.testing.assert_array_equal(np.asarray(x), feats["m0"][rows])
    subsub = sub.subset(np.array([1, 2, 3]))
    np.testing.assert_array_equal(np.asarray(subsub.features["m1"]), feats["m1"][rows[[1, 2, 3]]])
    copied = SelectionData.build({m: v[rows] for m, v in feats.items()}, labels[rows], 0.3, 0)
    for method in ("herding", "kcenter", "ram_apl", "ccs"):
        spec = get_selector(method)
        b = np.array([5, 4, 6])
        assert spec.fn(data.subset(rows), b, spec.make_params({})).order.tolist() == (
            spec.fn(copied, b, spec.make_params({})).order.tolist()
        )

    def no_whole_copy(self, dtype=None, copy=None):
        raise AssertionError("a subset's features were copied whole")

    monkeypatch.setattr(RowView, "__array__", no_whole_copy)
    spec = get_selector("cleaned")
    for inner in ("herding", "random", "kcenter", "graph_cut"):
        out = spec.fn(data, np.array([8, 6, 10]), spec.make_params({"inner": inner}))
        assert len(out.order) == 24
