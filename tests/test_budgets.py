"""Class budget strategies: hand examples and properties (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import SelectionInputError
from core.selection import run_selection
from core.selection.budgets import (
    allocate_capped,
    difficulty_budgets,
    largest_remainder,
    manual_budgets,
    paper_budgets,
    proportional_budgets,
    read_manual_counts,
    total_budget,
    uniform_budgets,
    winsorized_mean,
)

sizes_st = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=25).map(np.array)
fraction_st = st.floats(min_value=1e-4, max_value=1.0, allow_nan=False).filter(lambda p: p > 0)
SETTINGS = settings(max_examples=150, deadline=None)


# ----------------------------------------------------------------------------- hand examples
def test_paper_rounds_half_to_even_like_python_round():
    assert paper_budgets([5, 7, 9, 1, 3], 0.5).tolist() == [2, 4, 4, 0, 2]  # 2.5->2, 3.5->4, 4.5->4, 0.5->0, 1.5->2
    # the float64 product is rounded, as the official round(len(class) * fraction): 0.7 * 45 = 31.499999999999996
    assert 0.7 * 45 < 31.5 and paper_budgets([45], 0.7).tolist() == [31]
    assert total_budget(45, 0.1) == 4 and total_budget(55, 0.1) == 6  # 4.5 -> 4, 5.5 -> 6


def test_proportional_hand_example():
    # N = 10, p = 0.5 -> T = 5; quotas 3.5, 1.0, 0.5 -> floors 3, 1, 0; one unit left: remainders .5 and .5 -> first
    assert proportional_budgets([7, 2, 1], 0.5).tolist() == [4, 1, 0]


def test_uniform_hand_example():
    # N = 20, p = 0.5 -> T = 10 over 3 classes: class of 1 capped at 1, the rest 9 split 5/4 (first class first)
    assert uniform_budgets([1, 10, 9], 0.5).tolist() == [1, 5, 4]


def test_difficulty_hand_example():
    # T = round(0.5 * 40) = 20; weights S*N = 1*10, 3*10, 0*20 -> quotas 5, 15, 0
    # quota of class 1 is 15 > its 10 rows: capped at 10; the 10 left go by weight to the uncapped
    # classes: class 0 (weight 10) takes all 10 (its room), class 2 (weight 0) nothing
    assert difficulty_budgets([10, 10, 20], 0.5, [1.0, 3.0, 0.0]).tolist() == [10, 10, 0]
    # T = round(0.25 * 40) = 10; weights 10, 30, 20 -> quotas 1.67, 5, 3.33 -> 1, 5, 3 + one unit to the largest
    # remainder (class 0, .67)
    assert difficulty_budgets([10, 10, 20], 0.25, [1.0, 3.0, 1.0]).tolist() == [2, 5, 3]


def test_winsorized_mean_hand_example():
    # 1..10: 10 % quantile 1.9, 90 % quantile 9.1 -> mean of 1.9, 2..9, 9.1 = 5.5; the outlier 100 is clipped
    assert winsorized_mean(np.arange(1, 11)) == pytest.approx(5.5)
    # 1..9, 100: the 90 % quantile is 9 + 0.1 * (100 - 9) = 18.1, so 100 counts as 18.1
    assert winsorized_mean(np.r_[np.arange(1, 10), 100.0]) == pytest.approx((1.9 + sum(range(2, 10)) + 18.1) / 10)


def test_difficulty_strategy_end_to_end():
    """A tight class far from the others gets less than its share; a spread class near another gets more."""
    rng = np.random.default_rng(0)
    tight = rng.standard_normal((50, 2)) * 0.1 + [20, 0]
    a = rng.standard_normal((50, 2)) + [0, 0]
    b = rng.standard_normal((50, 2)) + [1.5, 0]
    x = np.vstack([tight, a, b]).astype(np.float32)
    labels = np.repeat([0, 1, 2], 50)
    r = run_selection("random", {"m": x}, labels, 0.2, budget="difficulty")
    bud = r.budget_table["budget"].tolist()
    assert sum(bud) == 30 and bud[0] < 10 < min(bud[1:])
    # per-sample difficulty = own-mean distance / nearest other mean distance (float64 brute force)
    mus = [x[labels == c].astype(np.float64).mean(0) for c in range(3)]
    expected = [
        np.linalg.norm(x[i] - mus[labels[i]]) / min(np.linalg.norm(x[i] - mus[c]) for c in range(3) if c != labels[i])
        for i in range(len(x))
    ]
    np.testing.assert_allclose(r.table["difficulty"], expected, rtol=1e-4)
    s = [winsorized_mean(np.array(expected)[labels == c]) for c in range(3)]
    np.testing.assert_allclose(r.budget_table["difficulty"], s, rtol=1e-4)


def test_manual_counts_dict_and_csv(tmp_path):
    classes, sizes = np.array(["cat", "dog", "=x"]), np.array([5, 3, 2])
    assert manual_budgets(classes, sizes, {"dog": 3, "cat": 0}).tolist() == [0, 3, 0]
    path = tmp_path / "c.csv"
    path.write_text("class,count\ncat,4\n=x,2\n")
    assert read_manual_counts(path) == {"cat": 4, "=x": 2}
    assert manual_budgets(classes, sizes, path).tolist() == [4, 0, 2]
    with pytest.raises(SelectionInputError, match="class 'dog' has 3 samples but 4"):
        manual_budgets(classes, sizes, {"dog": 4})
    with pytest.raises(SelectionInputError, match="class 'cow' is not in the data"):
        manual_budgets(classes, sizes, {"cow": 1})
    with pytest.raises(SelectionInputError, match="negative"):
        manual_budgets(classes, sizes, {"cat": -1})
    with pytest.raises(SelectionInputError, match="not an integer"):
        manual_budgets(classes, sizes, {"cat": 1.5})
    path.write_text("name,n\ncat,1\n")
    with pytest.raises(SelectionInputError, match="class,count"):
        read_manual_counts(path)
    path.write_text("class,count\ncat,x\n")
    with pytest.raises(SelectionInputError, match="line 2.*'x'"):
        read_manual_counts(path)
    path.write_text("class,count\ncat,1\ncat,2\n")
    with pytest.raises(SelectionInputError, match="listed twice"):
        read_manual_counts(path)
    with pytest.raises(SelectionInputError, match="does not exist"):
        read_manual_counts(tmp_path / "missing.csv")
    # integer labels are matched by their text
    assert manual_budgets(np.array([3, 7]), np.array([4, 4]), {"7": 2, 3: 1}).tolist() == [1, 2]


# ----------------------------------------------------------------------------- properties
@SETTINGS
@given(sizes_st, fraction_st)
def test_paper_property(sizes, p):
    b = paper_budgets(sizes, p)
    assert b.tolist() == [round(int(n) * p) for n in sizes]
    assert np.all((0 <= b) & (b <= sizes))


@SETTINGS
@given(sizes_st, fraction_st)
def test_proportional_property(sizes, p):
    b = proportional_budgets(sizes, p)
    total = round(p * int(sizes.sum()))
    assert int(b.sum()) == total
    assert np.all((0 <= b) & (b <= sizes))
    quota = total * sizes / sizes.sum()
    assert np.all(np.abs(b - quota) < 1 + 1e-9)  # Hamilton: every class within one of its exact quota


@SETTINGS
@given(sizes_st, fraction_st)
def test_uniform_property(sizes, p):
    b = uniform_budgets(sizes, p)
    assert int(b.sum()) == round(p * int(sizes.sum()))
    assert np.all((0 <= b) & (b <= sizes))
    uncapped = b < sizes
    if uncapped.any():  # max-min fair: nobody gets more than one above an uncapped class
        assert b.max() <= b[uncapped].min() + 1


@SETTINGS
@given(sizes_st, fraction_st, st.data())
def test_difficulty_property(sizes, p, data):
    s = np.array(data.draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=len(sizes), max_size=len(sizes))))
    b = difficulty_budgets(sizes, p, s)
    assert int(b.sum()) == round(p * int(sizes.sum()))
    assert np.all((0 <= b) & (b <= sizes))
    w = s * sizes
    free = np.flatnonzero(b < sizes)
    for i in free:  # among uncapped classes, more weight never means fewer rows (beyond rounding)
        for j in free:
            if w[i] > w[j]:
                assert b[i] >= b[j] - 1


@SETTINGS
@given(sizes_st, st.data())
def test_allocate_capped_property(caps, data):
    total = data.draw(st.integers(0, int(caps.sum())))
    w = np.array(
        data.draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e6)), min_size=len(caps), max_size=len(caps)))
    )
    b = allocate_capped(total, w, caps)
    assert int(b.sum()) == total and np.all((0 <= b) & (b <= caps))


@SETTINGS
@given(sizes_st, st.data())
def test_largest_remainder_property(weights, data):
    total = data.draw(st.integers(0, int(weights.sum())))
    b = largest_remainder(total, weights)
    assert int(b.sum()) == total and np.all(b <= weights)
    assert np.all(np.abs(b - total * weights / weights.sum()) < 1)


@settings(max_examples=40, deadline=None)
@given(sizes_st.filter(lambda s: len(s) <= 8 and sum(s) <= 400), fraction_st, st.data())
def test_manual_property(sizes, p, data):
    classes = np.array([f"c{i}" for i in range(len(sizes))])
    counts = {f"c{i}": data.draw(st.integers(0, int(n))) for i, n in enumerate(sizes) if data.draw(st.booleans())}
    b = manual_budgets(classes, sizes, counts)
    assert b.tolist() == [counts.get(f"c{i}", 0) for i in range(len(sizes))]
    over = data.draw(st.integers(0, len(sizes) - 1))
    with pytest.raises(SelectionInputError, match=f"class 'c{over}'"):
        manual_budgets(classes, sizes, {f"c{over}": int(sizes[over]) + 1})


@settings(max_examples=25, deadline=None)
@given(
    sizes_st.filter(lambda s: len(s) <= 6 and sum(s) <= 200),
    st.sampled_from([0.01, 0.1, 0.33, 0.5, 0.77, 1.0]),
    st.sampled_from(["paper", "proportional", "uniform", "difficulty"]),
)
def test_strategies_through_run_selection(sizes, p, budget):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = np.random.default_rng(len(labels)).standard_normal((len(labels), 3)).astype(np.float32) + labels[:, None]
    r = run_selection("min", {"m": x}, labels, p, budget=budget)
    bt = r.budget_table
    assert bt["size"].tolist() == sizes.tolist()
    assert (bt["kept"] == bt["budget"]).all() and (bt["budget"] <= bt["size"]).all()
    if budget != "paper":
        assert r.n_selected == round(p * len(labels))
    assert math.isclose(r.fraction, p)


def test_class_counts_and_the_counts_to_run_a_selection_again():
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(30, 4)).astype(np.float32)}
    y = np.repeat(["p", "q", "r"], 10)
    manual = run_selection("ram_apl", x, y, 0.5, budget="manual", budget_counts={"p": 4, "q": 7, "r": 0})
    assert manual.class_counts("budget") == {"p": 4, "q": 7, "r": 0}
    kept = dict(zip(*np.unique(y[manual.selected], return_counts=True)))
    assert manual.class_counts() == {"p": 4, "q": 7, "r": 0} == {**{"r": 0}, **{k: int(v) for k, v in kept.items()}}
    assert manual.manual_budget_counts() == {"p": 4, "q": 7, "r": 0}
    again = run_selection("ram_apl", x, y, 0.5, budget="manual", budget_counts=manual.manual_budget_counts())
    assert np.array_equal(again.selected, manual.selected)
    paper = run_selection("ram_apl", x, y, 0.2)
    assert paper.manual_budget_counts() is None and paper.class_counts() == {"p": 2, "q": 2, "r": 2}
