"""Contract of every selector x every budget strategy, input checks, result round trip, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import CoresetError, SelectionInputError
from core.features import FeatureSet, save_features
from core.selection import (
    BUDGET_STRATEGIES,
    SelectionResult,
    escape_csv_cell,
    get_selector,
    list_selectors,
    run_selection,
)
from core.selection.budgets import paper_budgets

METHODS = list_selectors()
#: The same, with auto (k-fold estimates: seconds a case) marked slow for `make test-fast`.
METHODS_AUTO_SLOW = [pytest.param(m, marks=pytest.mark.slow) if m == "auto" else m for m in METHODS]


def make_data(seed=0, sizes=(17, 1, 9, 30, 4, 2)):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array([f"class_{i}" for i in range(len(sizes))]), sizes)
    rng.shuffle(labels)
    codes = np.unique(labels, return_inverse=True)[1]
    feats = {
        "effnet": (rng.standard_normal((len(labels), 6)) + codes[:, None]).astype(np.float32),
        "clip": (rng.standard_normal((len(labels), 4)) * 2 - codes[:, None]).astype(np.float32),
    }
    return feats, labels


def budget_kwargs(budget, labels):
    if budget == "manual":
        classes = np.unique(labels)
        return {"budget_counts": {classes[0]: 2, classes[3]: 5, classes[1]: 1}}
    return {}


def check_contract(r: SelectionResult, labels, n):
    sel = r.selected
    assert sel.dtype == np.int64
    assert len(np.unique(sel)) == len(sel)
    assert np.all((sel >= 0) & (sel < n))
    bt = r.budget_table
    assert (bt["budget"] <= bt["size"]).all() and (bt["budget"] >= 0).all()
    assert bt["kept"].tolist() == bt["budget"].tolist()
    counts = pd.Series(labels[sel]).value_counts()
    for cls, budget in zip(bt["class"], bt["budget"]):
        assert counts.get(cls, 0) == budget
    t = r.table
    assert len(t) == n and t["index"].tolist() == list(range(n))
    assert t["selected"].sum() == len(sel)
    assert t.set_index("index").loc[sel, "order"].tolist() == list(range(len(sel)))
    assert (t.loc[~t["selected"], "order"] == -1).all()
    # selection order: classes concatenated in class order
    cls_pos = {c: i for i, c in enumerate(bt["class"])}
    pos = [cls_pos[c] for c in labels[sel]]
    assert pos == sorted(pos)


@pytest.mark.parametrize("budget", BUDGET_STRATEGIES)
@pytest.mark.parametrize("method", METHODS_AUTO_SLOW)
def test_counts_uniqueness_determinism(method, budget):
    feats, labels = make_data()
    kw = budget_kwargs(budget, labels)
    r1 = run_selection(method, feats, labels, 0.3, budget=budget, seed=3, **kw)
    r2 = run_selection(method, feats, labels, 0.3, budget=budget, seed=3, **kw)
    check_contract(r1, labels, len(labels))
    assert r1.same_selection(r2)
    if budget == "paper":
        assert r1.budget_table["budget"].tolist() == paper_budgets(r1.budget_table["size"], 0.3).tolist()
    if budget != "paper" and budget != "manual":
        assert r1.n_selected == round(0.3 * len(labels))


@pytest.mark.parametrize("budget", ["paper", "proportional", "uniform", "difficulty"])
@pytest.mark.parametrize("method", METHODS)
def test_fraction_one_keeps_everything(method, budget):
    feats, labels = make_data(1)
    r = run_selection(method, feats, labels, 1.0, budget=budget)
    check_contract(r, labels, len(labels))
    assert sorted(r.selected.tolist()) == list(range(len(labels)))


@pytest.mark.parametrize("method", METHODS)
def test_budget_zero(method):
    feats, labels = make_data(2, sizes=(3, 1, 4))
    r = run_selection(method, feats, labels, 0.05)  # round(0.05 * N_c) = 0 for every class
    check_contract(r, labels, len(labels))
    assert r.n_selected == 0 and r.table["order"].eq(-1).all()
    r = run_selection(method, feats, labels, 0.5, budget="manual", budget_counts={})
    assert r.n_selected == 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fraction", [0.5, 0.6, 1.0])
def test_singleton_classes(method, fraction):
    feats, labels = make_data(3, sizes=(1, 1, 1, 1))
    r = run_selection(method, feats, labels, fraction, budget="paper")
    check_contract(r, labels, 4)
    assert r.n_selected == (0 if fraction == 0.5 else 4)  # round(0.5) = 0 (half to even), round(0.6) = 1


@pytest.mark.parametrize("method", METHODS)
def test_single_class_and_single_sample(method):
    rng = np.random.default_rng(0)
    r = run_selection(method, {"m": rng.standard_normal((7, 3))}, np.zeros(7, dtype=int), 0.5)
    check_contract(r, np.zeros(7, dtype=int), 7)
    r = run_selection(method, {"m": np.ones((1, 2))}, ["only"], 1.0)
    assert r.selected.tolist() == [0]


@pytest.mark.parametrize("method", METHODS_AUTO_SLOW)
def test_different_seed_only_changes_random_methods(method):
    feats, labels = make_data(4)
    a = run_selection(method, feats, labels, 0.4, seed=0)
    b = run_selection(method, feats, labels, 0.4, seed=1)
    if method in ("random", "kcenter", "ccs"):
        assert get_selector(method).stochastic
        assert a.selected.tolist() != b.selected.tolist()
    elif not get_selector(method).stochastic:  # the registry's capability is honest
        assert a.selected.tolist() == b.selected.tolist()


@pytest.mark.parametrize("method", METHODS_AUTO_SLOW)
def test_json_round_trip(method):
    feats, labels = make_data(5)
    r = run_selection(method, feats, labels, 0.3, budget="difficulty", seed=2)
    back = SelectionResult.from_json(r.to_json())
    assert back == r
    assert back.table.dtypes.tolist() == r.table.dtypes.tolist()
    json.loads(r.to_json())  # strict JSON (no NaN)


def test_int_labels_round_trip_and_pool():
    feats, _ = make_data(6)
    labels = np.arange(len(feats["clip"])) % 3
    pool = np.zeros(len(labels), dtype=bool)
    pool[::2] = True
    r = run_selection("ram_apl", feats, labels, 0.5, pool=pool)
    assert set(r.selected.tolist()) <= set(np.flatnonzero(pool).tolist())
    assert r.table["index"].tolist() == np.flatnonzero(pool).tolist()
    assert SelectionResult.from_json(r.to_json()) == r
    sub = run_selection("ram_apl", {k: v[pool] for k, v in feats.items()}, labels[pool], 0.5)
    assert np.flatnonzero(pool)[sub.selected].tolist() == r.selected.tolist()


def test_models_subset_and_order():
    feats, labels = make_data(7)
    r = run_selection("ram_apl", feats, labels, 0.3, models="clip")
    assert r.models == ["clip"] and "rank[effnet]" not in r.table
    r = run_selection("kcenter", feats, labels, 0.3, model="clip")
    assert r.params["model"] == "clip"


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("fraction", [0, 0.0, -0.1, 1.0001, 2, float("nan"), float("inf"), "abc", None, True])
def test_bad_fraction(fraction):
    feats, labels = make_data()
    with pytest.raises(SelectionInputError, match="fraction"):
        run_selection("ram_apl", feats, labels, fraction)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(bad):
    feats, labels = make_data()
    feats["clip"] = feats["clip"].copy()
    feats["clip"][5, 2] = bad
    with pytest.raises(SelectionInputError, match=r"'clip'.*row 5"):
        run_selection("min", feats, labels, 0.5)


def test_input_errors():
    feats, labels = make_data()
    with pytest.raises(SelectionInputError, match="rows but there are"):
        run_selection("ram_apl", feats, labels[:-1], 0.5)
    with pytest.raises(SelectionInputError, match="'vit' is not in the features; available: effnet, clip"):
        run_selection("ram_apl", feats, labels, 0.5, models=["vit"])
    with pytest.raises(SelectionInputError, match="no samples"):
        run_selection("ram_apl", {"m": np.zeros((0, 3))}, [], 0.5)
    with pytest.raises(SelectionInputError, match="non-empty dict"):
        run_selection("ram_apl", {}, labels, 0.5)
    with pytest.raises(SelectionInputError, match="Unknown selection method 'nope'; available: ram_apl"):
        run_selection("nope", feats, labels, 0.5)
    with pytest.raises(
        SelectionInputError, match="Unknown parameter 'b' for method 'ram_apl'; allowed: a, k, s, normalize"
    ):
        run_selection("ram_apl", feats, labels, 0.5, b=1)
    with pytest.raises(SelectionInputError, match="'a' of method 'ram_apl' must be <= 1"):
        run_selection("ram_apl", feats, labels, 0.5, a=1.5)
    with pytest.raises(SelectionInputError, match="'normalize'.*must be one of none, l2"):
        run_selection("ram_apl", feats, labels, 0.5, normalize="l3")
    with pytest.raises(SelectionInputError, match="'k'.*finite"):
        run_selection("ram_apl", feats, labels, 0.5, k="nan")
    with pytest.raises(SelectionInputError, match="'model' = 'vit' is not among"):
        run_selection("kcenter", feats, labels, 0.5, model="vit")
    with pytest.raises(SelectionInputError, match="Unknown budget strategy"):
        run_selection("ram_apl", feats, labels, 0.5, budget="equal")
    with pytest.raises(SelectionInputError, match="2-D"):
        run_selection("ram_apl", {"m": np.zeros(len(labels))}, labels, 0.5)
    with pytest.raises(SelectionInputError, match="seed"):
        run_selection("random", feats, labels, 0.5, seed=-1)
    assert issubclass(SelectionInputError, CoresetError)


def test_params_parse_strings_and_describe():
    spec = get_selector("ram_apl")
    p = spec.make_params({"a": "0.3", "k": "2", "normalize": "L2"})
    assert (p.a, p.k, p.normalize) == (0.3, 2.0, "l2")
    names = [i.name for i in spec.params_cls.describe()]
    assert names == ["a", "k", "s", "normalize"]
    info = {i.name: i for i in get_selector("facility_location").params_cls.describe()}
    assert info["max_dense"].type == "int" and info["max_dense"].default == 20000
    with pytest.raises(SelectionInputError, match="'max_dense'.*integer"):
        get_selector("facility_location").make_params({"max_dense": "1.5"})
    for name in METHODS:  # every selector documents every parameter
        assert all(i.help for i in get_selector(name).params_cls.describe())


# ----------------------------------------------------------------------------- CLI
def cli(argv):
    from core.cli import select

    parser = argparse.ArgumentParser()
    select.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_three_files(tmp_path):
    feats, labels = make_data(8)
    n = len(labels)
    labels = labels.astype(object)
    labels[labels == "class_0"] = "=HYPERLINK(1)"
    paths = np.array([f"img/{i}.jpg" for i in range(n)])
    paths[0] = "@evil.jpg"
    split = np.array(["train"] * (n - 10) + ["test"] * 10)
    src = tmp_path / "features.npz"
    save_features(src, FeatureSet(feats, labels.astype(str), paths=paths, split=split, meta={"fingerprint": "f00"}))
    out = tmp_path / "out"
    assert (
        cli(
            [
                "select",
                str(src),
                "--method",
                "ram_apl",
                "--fraction",
                "0.3",
                "--param",
                "a=0.25",
                "--models",
                "clip,effnet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert scores["index"].tolist() == list(range(n - 10))  # only the train rows form the pool
    assert list(scores.columns[:3]) == ["index", "path", "label"]
    assert {"ram", "apl", "score", "rank[clip]", "pseudo_label[effnet]", "selected", "order"} <= set(scores.columns)
    assert scores.loc[0, "path"] == "'@evil.jpg"
    assert not scores["label"].str.startswith("=").any()
    subset = pd.read_csv(out / "subset.csv", keep_default_na=False)
    assert list(subset.columns[:2]) == ["path", "label"]
    assert {"ram", "apl", "score"} <= set(subset.columns) and "selected" not in subset.columns
    prov = json.loads((out / "selection.json").read_text())
    assert prov["features"]["meta"] == {"fingerprint": "f00"} and prov["features"]["n_pool"] == n - 10
    assert prov["params"]["a"] == 0.25 and prov["models"] == ["clip", "effnet"] and prov["seed"] == 0
    kept = scores.set_index("index").loc[prov["selected"]]
    assert subset["path"].tolist() == kept["path"].tolist()
    assert kept["order"].tolist() == list(range(len(kept)))
    assert sum(
        r["kept"]
        for r in [
            dict(zip(prov["budget_table"]["columns"], row)) for row in zip(*prov["budget_table"]["data"].values())
        ]
    ) == len(subset)


def test_cli_bare_file_and_manual_budget(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "bare.npz"
    np.savez(src, **{"feat_m": rng.standard_normal((20, 3)).astype(np.float32), "labels": np.arange(20) % 2})
    counts = tmp_path / "counts.csv"
    counts.write_text("class,count\n0,3\n1,1\n")
    out = tmp_path / "o"
    assert (
        cli(
            [
                "select",
                str(src),
                "--method",
                "kcenter",
                "--fraction",
                "0.5",
                "--budget",
                "manual",
                "--budget-counts",
                str(counts),
                "--seed",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    subset = pd.read_csv(out / "subset.csv", keep_default_na=False)
    assert len(subset) == 4 and (subset["path"] == "").all()
    counts.write_text("class,count\n0,30\n")
    with pytest.raises(SelectionInputError, match="class '0' has 10 samples but 30"):
        cli(
            [
                "select",
                str(src),
                "--fraction",
                "0.5",
                "--budget",
                "manual",
                "--budget-counts",
                str(counts),
                "--out",
                str(out),
            ]
        )


def test_cli_bad_param(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "bare.npz"
    np.savez(src, **{"feat_m": rng.standard_normal((6, 3)), "labels": np.arange(6) % 2})
    with pytest.raises(SelectionInputError, match="NAME=VALUE; parameters of ram_apl: a, k, s, normalize"):
        cli(["select", str(src), "--method", "ram_apl", "--fraction", "0.5", "--param", "a", "--out", str(tmp_path)])
    with pytest.raises(SelectionInputError, match="NAME=VALUE; parameters of auto: candidates, folds"):
        cli(["select", str(src), "--fraction", "0.5", "--param", "a", "--out", str(tmp_path)])  # auto, the default
    with pytest.raises(SelectionInputError, match="Unknown parameter 'lam'"):
        cli(["select", str(src), "--fraction", "0.5", "--param", "lam=1", "--out", str(tmp_path)])


def test_escape_csv_cell():
    assert [escape_csv_cell(v) for v in ["=1+2", "+x", "-y", "@z", "ok", "", 3, -1.5]] == [
        "'=1+2",
        "'+x",
        "'-y",
        "'@z",
        "ok",
        "",
        3,
        -1.5,
    ]
