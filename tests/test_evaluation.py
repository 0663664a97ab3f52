"""Evaluation: probes, protocol (split, hold-out, noise, random baseline), statistics, report, plan cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from core.errors import CoresetError
from core.evaluation import (
    EvalConfig,
    EvaluationReport,
    Evaluator,
    LinearProbe,
    MLPProbe,
    difference_interval,
    make_trainer,
    mean_ranks,
    mean_std,
    run_plan,
    stratified_holdout,
    symmetric_label_noise,
)
from core.evaluation import probes as probes_mod

from .test_evaluation_data import blobs


def _blob_arrays(n, C=4, dim=10, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(C, dim)) * sep
    y = rng.integers(0, C, n)
    return (means[y] + rng.normal(size=(n, dim))).astype(np.float32), y


# --------------------------------------------------------------------------- probes
def test_linear_probe_separable_reaches_full_accuracy_and_shuffled_is_chance():
    # linearly separable without clusters: y = argmax(W x), x ~ N(0, I)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, 4))
    x = rng.normal(size=(4000, 10)).astype(np.float32)
    y = (x @ w).argmax(axis=1)
    xtr, ytr, xte, yte = x[:2000], y[:2000], x[2000:], y[2000:]
    probe = LinearProbe(C=100.0)
    acc = (probe.fit_predict(xtr, ytr, xte, 4) == yte).mean()
    assert acc >= 0.97
    # shuffled training labels carry no information: accuracy at chance, the test share of the
    # most frequent predicted class at most (2000 test samples: sd ~ 0.01)
    pred = probe.fit_predict(xtr, rng.permutation(ytr), xte, 4)
    chance = float(np.sum(np.bincount(yte, minlength=4) / len(yte) * np.bincount(pred, minlength=4) / len(pred)))
    assert abs((pred == yte).mean() - chance) < 0.04
    assert (pred == yte).mean() < 0.33


def test_linear_probe_missing_single_and_empty_classes():
    x, y = _blob_arrays(600, C=3)
    probe = LinearProbe()
    keep = np.flatnonzero(y != 2)[:100]
    pred = probe.fit_predict(x[keep], y[keep], x, 3)
    assert set(np.unique(pred)) <= {0, 1}  # class 2 cannot be predicted
    assert (pred[y == 2] != 2).all()
    one = np.flatnonzero(y == 1)[:1]
    assert (probe.fit_predict(x[one], y[one], x[:5], 3) == 1).all()
    # a class with a single sample still trains
    rows = np.concatenate([np.flatnonzero(y == 0)[:20], np.flatnonzero(y == 1)[:1]])
    assert probe.fit_predict(x[rows], y[rows], x[:7], 3).shape == (7,)
    assert (probe.fit_predict(x[:0], y[:0], x[:4], 3) == -1).all()


@pytest.mark.slow
def test_mlp_probe_learns_and_is_seeded():
    x, y = _blob_arrays(900, C=3)
    mlp = MLPProbe(epochs=20, hidden=32, batch_size=100, lr=1e-2)
    p1 = mlp.fit_predict(x[:300], y[:300], x[300:], 3, seed=3)
    p2 = mlp.fit_predict(x[:300], y[:300], x[300:], 3, seed=3)
    assert (p1 == y[300:]).mean() > 0.97
    assert np.array_equal(p1, p2)


def test_trainer_parameters_validated_once():
    assert make_trainer("linear", {"C": "0.5"}).C == 0.5
    with pytest.raises(CoresetError, match="C"):
        make_trainer("linear", {"C": "-1"})
    with pytest.raises(CoresetError, match="no parameter"):
        make_trainer("mlp", {"depth": 3})
    with pytest.raises(CoresetError, match="Unknown evaluation model"):
        make_trainer("svm")


def test_finetune_tiny_model_runs_on_cpu_with_warning(tmp_path):
    from .conftest import write_image

    paths, labels = [], []
    for i in range(8):
        paths.append(str(write_image(tmp_path / f"{i}.png", seed=i, size=(20, 20))))
        labels.append(i % 2)
    trainer = make_trainer(
        "finetune", {"model": "test_resnet", "epochs": 1, "image_size": 32, "batch_size": 4, "device": "cpu"}
    )
    with pytest.warns(RuntimeWarning, match="CPU"):
        pred = trainer.fit_predict(np.array(paths[:6]), np.array(labels[:6]), np.array(paths[6:]), 2, seed=0)
    assert pred.shape == (2,) and set(pred.tolist()) <= {0, 1}


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("seed", range(5))
def test_welch_interval_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.7, 0.02, size=5)
    b = rng.normal(0.65, 0.05, size=4 + seed)
    d = difference_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.kind == "welch"
    assert d.diff == pytest.approx(a.mean() - b.mean())
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_constant_method_uses_one_sample_interval():
    b = np.array([0.61, 0.64, 0.60, 0.66, 0.63])
    a = [0.70] * 5
    d = difference_interval(a, b)
    ci_b = stats.ttest_1samp(b, 0.0).confidence_interval(0.95)
    assert d.kind == "one-sample" and d.df == pytest.approx(4)
    assert (d.low, d.high) == pytest.approx((0.70 - ci_b.high, 0.70 - ci_b.low), rel=1e-9)
    assert d.significant
    assert difference_interval([0.7], b).low == pytest.approx(d.low)
    exact = difference_interval([0.5, 0.5], [0.4, 0.4])
    assert exact.kind == "exact" and exact.low == exact.high == pytest.approx(0.1)
    assert difference_interval([0.5], [0.4]).kind == "undefined"


def test_mean_std_is_sample_std_and_ranks():
    m, s = mean_std([0.1, 0.2, 0.4])
    assert m == pytest.approx(np.mean([0.1, 0.2, 0.4])) and s == pytest.approx(np.std([0.1, 0.2, 0.4], ddof=1))
    assert math.isnan(mean_std([0.3])[1])
    r = mean_ranks({"a": [0.9, 0.8], "b": [0.5, 0.8], "c": [0.1, 0.1]})
    assert r == {"a": 1.25, "b": 1.75, "c": 3.0}


# --------------------------------------------------------------------------- protocol
def test_stratified_holdout_is_seeded_and_stratified():
    labels = np.array(["x"] * 50 + ["y"] * 30 + ["z"] * 1)
    rows = np.arange(len(labels))
    tr, te = stratified_holdout(labels, rows, 0.2, seed=3)
    tr2, te2 = stratified_holdout(labels, rows, 0.2, seed=3)
    assert np.array_equal(te, te2) and np.array_equal(tr, tr2)
    assert not np.array_equal(te, stratified_holdout(labels, rows, 0.2, seed=4)[1])
    assert np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == len(labels)
    assert {c: int((labels[te] == c).sum()) for c in "xyz"} == {"x": 10, "y": 6, "z": 0}


def test_holdout_rows_are_excluded_from_the_pool():
    fs = blobs((30, 20, 25))  # no split -> hold-out
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2), holdout=0.2, holdout_seed=7))
    assert ev.split.source == "hold-out"
    assert np.intersect1d(ev.split.pool, ev.split.test).size == 0
    cell = ev.evaluate("ram_apl", 0.5)
    assert np.isin(cell.selection["selected"], ev.split.pool).all()
    assert ev.describe()["split"]["test_rows"] == ev.split.test.tolist()
    fs2 = blobs((30, 20), test_per_class=5)
    ev2 = Evaluator(fs2, EvalConfig(seeds=(0,)))
    assert ev2.split.source == "test split" and len(ev2.split.test) == 10


def test_symmetric_label_noise():
    labels = np.array([f"c{i % 5}" for i in range(5000)])
    rows = np.arange(0, 4000)
    noisy, flipped = symmetric_label_noise(labels, rows, 0.2, seed=1)
    assert abs(flipped[rows].mean() - 0.2) < 0.02  # binomial sd 0.006
    assert not flipped[4000:].any() and np.array_equal(noisy[4000:], labels[4000:])
    assert (noisy[flipped] != labels[flipped]).all() and (noisy[~flipped] == labels[~flipped]).all()
    # the new class is uniform over the 4 others
    counts = np.unique(noisy[flipped & (labels == "c0")], return_counts=True)[1]
    assert len(counts) == 4 and counts.min() > 0.15 * counts.sum()
    again = symmetric_label_noise(labels, rows, 0.2, seed=1)
    assert np.array_equal(again[0], noisy)


def test_noise_is_independent_of_the_random_selector_stream():
    # Regression: noise and random selection seeded with the same integer must not coincide.
    fs = blobs((200, 200), models=("a", "effnet-lite2"))
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1), label_noise=0.2, noise_seed=0))
    for seed in (0, 1):
        res = ev.select("random", 0.1, seed=seed)
        assert ev.flipped[res.selected].mean() < 0.4


def test_random_baseline_keeps_exactly_the_method_budgets():
    fs = blobs((40, 25, 60), models=("a", "b", "effnet-lite2"))
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2)))
    calls = []
    original = ev.select

    def spy(method, *a, **k):
        res = original(method, *a, **k)
        calls.append((method, res))
        return res

    ev.select = spy
    for method, budget in (("ram_apl", "difficulty"), ("kcenter", "paper"), ("herding", "uniform")):
        calls.clear()
        cell = ev.evaluate(method, 0.13, budget)
        randoms = [r for m, r in calls if m == "random"]
        assert len(randoms) == 3
        for r in randoms:
            kept = dict(zip(*np.unique(ev.noisy_labels[r.selected], return_counts=True)))
            assert {k: int(v) for k, v in kept.items() if v} == {k: v for k, v in cell.budget_counts.items() if v}
        method_rows = np.asarray(cell.selection["selected"])
        kept_m = dict(zip(*np.unique(ev.noisy_labels[method_rows], return_counts=True)))
        assert {k: int(v) for k, v in kept_m.items()} == {k: v for k, v in cell.budget_counts.items() if v}
        assert len({tuple(np.sort(r.selected)) for r in randoms}) == 3  # the seeds differ


def test_deterministic_method_and_random_difference():
    fs = blobs((30, 30, 30), sep=1.0)
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2)))
    cell = ev.evaluate("ram_apl", 0.2)
    assert cell.deterministic and len(set(cell.method_result.accuracy)) == 1
    assert cell.difference.kind in ("one-sample", "exact")
    rnd = ev.evaluate("random", 0.2)
    assert not rnd.deterministic
    assert rnd.method_result.accuracy == rnd.random.accuracy and rnd.difference.diff == 0
    assert cell.full.n_train == [len(ev.split.pool)] * 3
    assert len(cell.method_result.per_class) == 3
    assert all(0 <= v <= 1 for v in cell.method_result.per_class)


def test_evaluate_reports_progress_per_training():
    fs = blobs((30, 30, 30), sep=1.0)
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2, 3)))
    calls = []
    cell = ev.evaluate("ram_apl", 0.2, progress=lambda d, t, m: calls.append((d, t, m)))
    assert [d for d, _, _ in calls] == list(range(13))  # 0 once chosen, then one per training
    assert {t for _, t, _ in calls} == {12}  # 3 groups x 4 seeds
    assert [m for _, _, m in calls[1:5]] == [f"trained on the subset, seed {s}" for s in range(4)]
    assert all("random subset" in m for _, _, m in calls[5:9])
    assert all("full pool" in m for _, _, m in calls[9:])
    # the same numbers with and without a callback
    again = Evaluator(fs, EvalConfig(seeds=(0, 1, 2, 3))).evaluate("ram_apl", 0.2)
    assert again.method_result.accuracy == cell.method_result.accuracy
    assert again.random.accuracy == cell.random.accuracy


def test_evaluate_selection_as_given_or_run_again_on_the_pool():
    from core.selection import run_selection

    fs = blobs((30, 30, 30), sep=1.0)  # no split: a 20 % hold-out
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2)))
    inside = ev.select("ram_apl", 0.2)  # made on the pool: evaluated as it is
    cell, note = ev.evaluate_selection(inside)
    assert note == "" and cell.selection["selected"] == inside.selected.tolist()
    # made on every row, as `select` does without a test split: some rows are evaluation rows
    counts = {"class0": 5, "class1": 3, "class2": 4}
    everywhere = run_selection(
        "ram_apl", fs.features, fs.labels, 0.2, budget="manual", budget_counts=counts, models=ev.selection_models
    )
    n_out = int((~np.isin(everywhere.selected, ev.split.pool)).sum())
    assert n_out > 0
    cell, note = ev.evaluate_selection(everywhere)
    assert f"{n_out} of the 12 selected rows are in the evaluation hold-out" in note
    assert np.isin(cell.selection["selected"], ev.split.pool).all()
    assert cell.budget_counts == counts  # the same per-class counts, so random keeps them too
    assert cell.method == "ram_apl" and cell.budget == "manual"


def test_tiny_fraction_with_empty_classes_does_not_crash():
    fs = blobs((40, 3, 3), models=("a", "effnet-lite2"))
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2)))
    cell = ev.evaluate("ram_apl", 0.02)  # budgets round to 1, 0, 0
    assert cell.budget_counts == {"class0": 1, "class1": 0, "class2": 0}
    assert all(0 <= a <= 1 for a in cell.method_result.accuracy)


def test_eval_config_validation():
    with pytest.raises(CoresetError):
        EvalConfig(seeds=())
    with pytest.raises(CoresetError):
        EvalConfig(label_noise=1.0)
    with pytest.raises(CoresetError):
        EvalConfig(holdout=0)
    assert EvalConfig.from_dict(EvalConfig(seeds=(0, 2)).to_dict()) == EvalConfig(seeds=(0, 2))
    assert EvalConfig(trainer_params={"C": "1"}) == EvalConfig()


# --------------------------------------------------------------------------- report and plan
PROVENANCE_KEYS = (
    "dataset",
    "features",
    "protocol",
    "config",
    "plan",
    "cells",
    "versions",
    "machine",
    "timing_s",
    "stats",
    "created",
)


def test_report_round_trips_and_carries_provenance(tmp_path):
    fs = blobs((20, 20))
    report = run_plan(
        fs, ["ram_apl", "kcenter@uniform"], [0.2, 0.5], EvalConfig(seeds=(0, 1, 2)), noise_levels=[0.0, 0.2]
    )
    path = report.save(tmp_path / "report.json")
    again = EvaluationReport.load(path)
    assert again.to_json() == report.to_json()
    d = json.loads(path.read_text())
    for key in PROVENANCE_KEYS:
        assert key in d
    assert d["dataset"]["fingerprint"] == "f" * 64
    assert d["features"]["selection_models"] == ["a", "b"] and d["features"]["eval_model"] == "effnet-lite2"
    assert d["features"]["models"] and len(d["features"]["digest"]) == 64
    assert d["config"]["seeds"] == [0, 1, 2] and d["config"]["trainer"] == "linear"
    assert d["config"]["trainer_params"]["C"] == 1.0
    for k in ("numpy", "torch", "scikit-learn", "coreset-studio"):
        assert k in d["versions"]
    assert d["timing_s"]["total"] > 0
    assert [n["rate"] for n in d["protocol"]["noise"]] == [0.0, 0.2]
    cell = d["cells"][-1]
    assert cell["method"] == "kcenter" and cell["budget"] == "uniform"
    assert "table" not in cell["selection"]
    for key in ("params", "budget_table", "seed", "models", "versions", "timing_s", "selected"):
        assert key in cell["selection"]
    for group in ("method_result", "random", "full"):
        assert len(cell[group]["accuracy"]) == 3 and len(cell[group]["per_class"]) == 2
    assert {"diff", "low", "high", "kind"} <= set(cell["difference"])
    assert len(report.cells) == 2 * 3 * 2  # random added as the baseline
    table = report.format_table()
    assert "kcenter@uniform" in table and "(baseline)" in table


def test_plan_rerun_reads_only_the_cache(tmp_path, monkeypatch):
    fs = blobs((20, 20, 20))
    calls = {"fit": 0, "select": 0}
    real_fit = probes_mod.LinearProbe.fit_predict

    def counting_fit(self, *a, **k):
        calls["fit"] += 1
        return real_fit(self, *a, **k)

    import core.selection as selection

    real_select = selection.run_selection

    def counting_select(*a, **k):
        calls["select"] += 1
        return real_select(*a, **k)

    monkeypatch.setattr(probes_mod.LinearProbe, "fit_predict", counting_fit)
    monkeypatch.setattr(selection, "run_selection", counting_select)
    cfg = EvalConfig(seeds=(0, 1, 2))
    first = run_plan(fs, ["ram_apl", "min"], [0.1, 0.3], cfg, cache_dir=tmp_path / "cells")
    assert first.stats["cells_computed"] == 6 and calls["fit"] > 0 and calls["select"] > 0
    calls.update(fit=0, select=0)
    second = run_plan(fs, ["ram_apl", "min"], [0.1, 0.3], cfg, cache_dir=tmp_path / "cells")
    assert second.stats == {"cells_computed": 0, "cells_cached": 6, "fits": 0}
    assert calls == {"fit": 0, "select": 0}
    assert [c.to_dict() for c in second.cells] == [c.to_dict() for c in first.cells]
    # a new fraction computes only its own cells; another seed set invalidates everything
    third = run_plan(fs, ["ram_apl", "min"], [0.1, 0.3, 0.5], cfg, cache_dir=tmp_path / "cells")
    assert third.stats["cells_computed"] == 3
    fourth = run_plan(fs, ["ram_apl"], [0.1], EvalConfig(seeds=(0, 1)), cache_dir=tmp_path / "cells")
    assert fourth.stats["cells_computed"] == 2


def test_the_report_counts_near_duplicates_and_those_across_the_pool_and_test_set(tmp_path):
    from core.evaluation.plan import single_cell_report
    from core.export.html import render_html

    fs = blobs(n_per_class=(30, 30), dim=64, seed=3, test_per_class=10)  # 64-d: no natural pair is that close
    train = np.flatnonzero(fs.split == "train")
    test = np.flatnonzero(fs.split == "test")
    for m in fs.models:  # a test image copied into the pool (a leak), and a copy inside the pool
        fs.features[m][train[0]] = fs.features[m][test[0]]
        fs.features[m][train[5]] = fs.features[m][train[6]]
    ev = Evaluator(fs, EvalConfig(eval_model="effnet-lite2", seeds=(0,)), ["a", "b"], device="cpu")
    d = ev.describe()["duplicates"]
    assert d["groups"] == 2 and d["duplicates"] == 2 and d["groups_across_pool_and_test"] == 1
    cell = ev.evaluate("random", 0.5)
    report = single_cell_report(ev, cell, fs, started=0.0)
    assert report.protocol["duplicates"]["groups_across_pool_and_test"] == 1
    assert "1 group(s) have images both in the training pool and in the test set" in render_html(report)
    back = type(report).from_json(report.to_json())
    assert back.protocol["duplicates"] == report.protocol["duplicates"]
