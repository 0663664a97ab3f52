"""Summary statistics of repeated accuracies: mean ± std and the difference to random.

Accuracies are fractions in [0, 1] everywhere in :mod:`core.evaluation`; reports and
tables multiply by 100 to show percent.

* ``mean ± std``: arithmetic mean and the *sample* standard deviation (``ddof=1``); the
  std of a single value is undefined (NaN, written ``null`` in JSON).
* Difference to random: ``d = mean(a) - mean(b)`` (``a`` the method's accuracies over the
  seeds, ``b`` the random baseline's) with a Welch interval::

      v_a = s_a^2 / n_a,   v_b = s_b^2 / n_b,   se = sqrt(v_a + v_b)
      df  = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))   (Welch-Satterthwaite)
      CI  = d ± t_{1 - alpha/2, df} * se

  When the method's accuracy does not vary (a deterministic selector and trainer,
  ``s_a = 0``; or a single run, ``n_a = 1``, whose variance is then taken as 0) the same
  formula reduces to the one-sample t interval over the random seeds
  (``df = n_b - 1``, ``se = s_b / sqrt(n_b)``): the method's value is treated as a
  constant and only the baseline's sampling error counts. When neither varies the
  interval is the point ``[d, d]``; when the baseline has fewer than two runs and the
  method no spread either, the interval is undefined (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample std with ddof=1)``; NaN std for fewer than two values, NaN mean for none."""
    arr = _clean(values)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with its confidence interval (see the module docstring).

    Attributes:
        diff: the difference of the means (same unit as the inputs).
        low, high: interval bounds (NaN when undefined).
        df: Welch-Satterthwaite degrees of freedom (inf for a point interval, NaN if undefined).
        kind: ``welch``, ``one-sample`` (method constant), ``exact`` (neither varies)
            or ``undefined``.
        confidence: the level, e.g. 0.95.
    """

    diff: float
    low: float
    high: float
    df: float
    kind: str
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Difference:
        def f(v):
            return math.nan if v is None else float(v)

        return cls(f(d["diff"]), f(d["low"]), f(d["high"]), f(d["df"]), d["kind"], float(d.get("confidence", 0.95)))

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return math.isfinite(self.low) and (self.low > 0 or self.high < 0)


def difference_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, rel_tol: float = 1e-12
) -> Difference:
    """Difference of means ``mean(a) - mean(b)`` with a Welch ``confidence`` interval.

    A sample whose values are all equal (relative spread below ``rel_tol``) or that has a
    single value counts as having zero variance. See the module docstring for the formula;
    the interval itself comes from :func:`scipy.stats.ttest_ind` (``equal_var=False``) or,
    with one side constant, :func:`scipy.stats.ttest_1samp` on the other side.
    """
    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return Difference(math.nan, math.nan, math.nan, math.nan, "undefined", confidence)
    d = float(xa.mean() - xb.mean())

    va = _var_of_mean(xa, rel_tol)
    vb = _var_of_mean(xb, rel_tol)
    if va == 0.0 and vb == 0.0:
        if xb.size < 2 and xa.size < 2:
            return Difference(d, math.nan, math.nan, math.nan, "undefined", confidence)
        return Difference(d, d, d, math.inf, "exact", confidence)
    if va > 0 and vb > 0:
        res = _st.ttest_ind(xa, xb, equal_var=False)  # Welch: Welch-Satterthwaite df
        ci = res.confidence_interval(confidence_level=confidence)
        return Difference(d, float(ci.low), float(ci.high), float(res.df), "welch", confidence)
    # one side constant: the one-sample t interval of the varying side's mean, less (or from) the constant
    if va == 0.0:
        res = _st.ttest_1samp(xb, 0.0)
        ci = res.confidence_interval(confidence_level=confidence)
        low, high = float(xa.mean()) - float(ci.high), float(xa.mean()) - float(ci.low)
    else:
        res = _st.ttest_1samp(xa, 0.0)
        ci = res.confidence_interval(confidence_level=confidence)
        low, high = float(ci.low) - float(xb.mean()), float(ci.high) - float(xb.mean())
    return Difference(d, low, high, float(res.df), "one-sample", confidence)


def _var_of_mean(x: np.ndarray, rel_tol: float) -> float:
    """``s^2 / n`` of ``x`` (sample variance, ddof=1); 0 for one value or a relative spread below ``rel_tol``."""
    if x.size < 2:
        return 0.0
    v = float(x.var(ddof=1))
    scale = max(1.0, float(np.abs(x).max())) ** 2
    return 0.0 if v <= rel_tol * scale else v / x.size


def mean_ranks(scores: dict[str, Sequence[float]]) -> dict[str, float]:
    """Mean rank of each method over several settings (1 = best = highest score).

    ``scores[method][j]`` is the method's score in setting ``j`` (NaN = not run there; a
    setting is used only where every method has a value). Ties share the average rank.
    """
    names = list(scores)
    if not names:
        return {}
    mat = np.array([np.asarray(scores[m], dtype=np.float64) for m in names])
    ok = np.all(np.isfinite(mat), axis=0)
    if not ok.any():
        return {m: math.nan for m in names}
    ranks = np.apply_along_axis(lambda col: _st.rankdata(-col, method="average"), 0, mat[:, ok])
    return {m: float(r) for m, r in zip(names, ranks.mean(axis=1))}


__all__ = ["Difference", "difference_interval", "mean_ranks", "mean_std"]
