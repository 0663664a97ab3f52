"""core.evaluation.statistics: the scipy-based Welch interval against the textbook formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from core.evaluation.statistics import difference_interval


def textbook_interval(a, b, confidence=0.95, rel_tol=1e-12):
    """The Welch / one-sample interval written out (the formula of the module docstring)."""
    a, b = np.asarray(a, float), np.asarray(b, float)

    def var_of_mean(x):
        if x.size < 2:
            return 0.0
        v = x.var(ddof=1)
        return 0.0 if v <= rel_tol * max(1.0, np.abs(x).max()) ** 2 else v / x.size

    va, vb = var_of_mean(a), var_of_mean(b)
    d = a.mean() - b.mean()
    terms = [v * v / (x.size - 1) for v, x in ((va, a), (vb, b)) if v > 0]
    df = (va + vb) ** 2 / sum(terms)
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    return d, d - half, d + half, df


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("case", ["welch", "a-constant", "b-constant", "a-single"])
def test_interval_equals_the_textbook_formula(seed, case):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.7, 0.03, size=int(rng.integers(2, 9)))
    b = rng.normal(0.65, 0.05, size=int(rng.integers(2, 9)))
    if case == "a-constant":
        a = np.full(a.size, 0.71)
    elif case == "b-constant":
        b = np.full(b.size, 0.62)
    elif case == "a-single":
        a = a[:1]
    confidence = float(rng.choice([0.9, 0.95, 0.99]))
    got = difference_interval(a, b, confidence)
    d, low, high, df = textbook_interval(a, b, confidence)
    assert got.kind == ("welch" if case == "welch" else "one-sample")
    assert got.diff == pytest.approx(d, rel=1e-12, abs=1e-15)
    assert (got.low, got.high, got.df) == pytest.approx((low, high, df), rel=1e-10)
    assert got.low < got.diff < got.high
