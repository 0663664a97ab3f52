"""Class budgets: how many rows of each class to keep (orthogonal to the selector).

All strategies take the class sizes ``N_c`` (and ``p`` the fraction) and return int64
budgets ``b_c`` with ``0 <= b_c <= N_c``. Rounding is always *round half to even* of the
float64 product (``numpy.round`` / Python ``round`` semantics, e.g. 2.5 -> 2, 3.5 -> 4;
note ``0.1 * 25`` is 2.5000000000000004 in float64 and rounds to 3, exactly as the
official code's ``round(len(class) * fraction)``).

=================  =====================================================================
``paper``          ``b_c = round(p N_c)`` per class (RAM-APL's default; a class may keep 0).
``proportional``   total ``T = round(p N)``; quotas ``T N_c / N`` floored, the remaining
                   units go to the largest remainders (ties: class order). Sum is exactly T.
``uniform``        total ``T``; the same count per class, capped at ``N_c``; what a capped
                   class cannot take is spread over the others; the last units go to the
                   first classes in class order.
``difficulty``     NUCS (arXiv 2504.13234): total ``T``; ``b_c`` proportional to
                   ``S_c N_c`` (largest remainder), capped at ``N_c`` with the overflow
                   redistributed over the uncapped classes. ``S_c`` is the 10 %/90 %
                   winsorized mean over the class of the per-sample difficulty
                   ``h_i = mean_m ||x_mi - mu_m,c(i)|| / min_{c' != c(i)} ||x_mi - mu_m,c'||``
                   (raw features; ``h = 0`` when there is a single class).
``manual``         counts given per class (dict or CSV with columns ``class,count``);
                   classes not listed keep 0; unknown class or count > N_c is an error.
=================  =====================================================================
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import SelectionInputError

BUDGET_STRATEGIES = ("paper", "proportional", "uniform", "difficulty", "manual")


def total_budget(n: int, fraction: float) -> int:
    """``T = round-half-even(p N)``."""
    return int(np.round(float(fraction) * int(n)))


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` proportionally to non-negative integer ``weights`` (Hamilton's method).

    ``b_c = floor(T w_c / W)`` in exact integer arithmetic, then one more unit to each of
    the ``T - sum b`` largest remainders (ties: lowest index). ``b_c <= w_c`` whenever
    ``T <= W``.
    """
    w = np.asarray(weights, dtype=np.int64)
    s = int(w.sum())
    if total <= 0 or s == 0:
        return np.zeros(len(w), dtype=np.int64)
    num = int(total) * w
    base = num // s
    rem = num - base * s
    base[np.argsort(-rem, kind="stable")[: int(total) - int(base.sum())]] += 1
    return base


def allocate_capped(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split ``total`` proportionally to float ``weights`` with ``b_c <= caps_c``.

    Iterates: quotas ``R w_c / sum w`` over the classes still below their cap; any class
    whose quota reaches its remaining room is set to its cap and the rest is re-split; when
    no quota overflows, quotas are floored and the remaining units go to the largest
    fractional parts (ties: lowest index). If all remaining weights are 0 (or not finite),
    the remaining room is used as weight. Requires ``total <= sum(caps)``.
    """
    caps = np.asarray(caps, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    total = int(total)
    if total > int(caps.sum()):
        raise ValueError(f"total {total} exceeds the sum of caps {int(caps.sum())}")
    out = np.zeros(len(caps), dtype=np.int64)
    remaining = total
    active = caps > 0
    while remaining > 0:
        idx = np.flatnonzero(active)
        room = caps[idx] - out[idx]
        w = weights[idx]
        if not np.all(np.isfinite(w)) or w.sum() <= 0:
            w = room.astype(np.float64)
        quota = remaining * (w / w.sum())
        over = quota >= room
        if over.any():
            out[idx[over]] = caps[idx[over]]
            remaining -= int(room[over].sum())
            active[idx[over]] = False
            continue
        base = np.floor(quota).astype(np.int64)
        frac = quota - base
        while int(base.sum()) > remaining:  # float round-off guard
            k = int(np.argmin(np.where(base > 0, frac, np.inf)))
            base[k] -= 1
            frac[k] += 1.0
        out[idx] += base
        extra = remaining - int(base.sum())
        out[idx[np.argsort(-frac, kind="stable")[:extra]]] += 1
        remaining = 0
    return out


def paper_budgets(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """``b_c = round-half-even(p N_c)``."""
    return np.round(np.asarray(sizes, dtype=np.int64) * float(fraction)).astype(np.int64)


def proportional_budgets(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """Largest remainder with total ``round(p N)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return largest_remainder(total_budget(sizes.sum(), fraction), sizes)


def uniform_budgets(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """Equal counts per class, capped at ``N_c``, with total ``round(p N)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return allocate_capped(total_budget(sizes.sum(), fraction), np.ones(len(sizes)), sizes)


def difficulty_budgets(sizes: np.ndarray, fraction: float, class_difficulty: np.ndarray) -> np.ndarray:
    """NUCS: ``b_c`` proportional to ``S_c N_c``, capped at ``N_c``, total ``round(p N)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    weights = np.asarray(class_difficulty, dtype=np.float64) * sizes
    return allocate_capped(total_budget(sizes.sum(), fraction), weights, sizes)


def winsorized_mean(values: np.ndarray, lower: float = 0.10, upper: float = 0.90) -> float:
    """Mean of ``values`` clipped to their ``lower``/``upper`` quantiles (linear interpolation)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return 0.0
    lo, hi = np.quantile(values, [lower, upper])
    return float(np.clip(values, lo, hi).mean())


def read_manual_counts(path: str | os.PathLike) -> dict[str, int]:
    """Read a ``class,count`` CSV (header required) into ``{class: count}`` (strings as keys)."""
    path = Path(path)
    if not path.is_file():
        raise SelectionInputError(f"Manual budget file {path} does not exist.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SelectionInputError(
            f"Manual budget file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"position {exc.start}); save it as a UTF-8 CSV with columns class,count."
        ) from None
    except OSError as exc:
        raise SelectionInputError(f"Manual budget file {path} cannot be read ({exc.strerror or exc}).") from exc
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or {"class", "count"} - {f.strip() for f in reader.fieldnames}:
            raise SelectionInputError(f"Manual budget file {path} needs a header with columns class,count.")
        counts: dict[str, int] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            name = row["class"]
            if name in counts:
                raise SelectionInputError(f"Manual budget file {path}: class {name!r} is listed twice (line {line}).")
            try:
                counts[name] = int(row["count"])
            except ValueError:
                raise SelectionInputError(
                    f"Manual budget file {path}, line {line}: count {row['count']!r} of class {name!r} is not an integer."
                ) from None
    return counts


def manual_budgets(classes: np.ndarray, sizes: np.ndarray, counts: Mapping | str | os.PathLike | None) -> np.ndarray:
    """Budgets from user counts; keys are matched to class labels by ``str(label)``."""
    if counts is None:
        raise SelectionInputError("The manual budget needs counts per class (a dict or a class,count CSV).")
    if isinstance(counts, (str, os.PathLike)):
        counts = read_manual_counts(counts)
    lookup = {str(c): i for i, c in enumerate(np.asarray(classes).tolist())}
    sizes = np.asarray(sizes, dtype=np.int64)
    out = np.zeros(len(sizes), dtype=np.int64)
    for key, value in counts.items():
        name = str(key)
        if name not in lookup:
            raise SelectionInputError(
                f"Manual budget: class {name!r} is not in the data (classes: {', '.join(list(lookup)[:20])}"
                f"{', ...' if len(lookup) > 20 else ''})."
            )
        try:
            integral = not isinstance(value, bool) and float(value).is_integer()
        except (TypeError, ValueError, OverflowError):  # "abc", None, a list, ...
            integral = False
        if not integral:
            raise SelectionInputError(
                f"Manual budget: count {value!r} of class {name!r} is not an integer; "
                "give a count of images from 0 to the class size."
            )
        count = int(value) if isinstance(value, (int, np.integer)) else int(float(value))
        c = lookup[name]
        if count < 0:
            raise SelectionInputError(f"Manual budget: count {count} of class {name!r} is negative.")
        if count > sizes[c]:
            raise SelectionInputError(
                f"Manual budget: class {name!r} has {int(sizes[c])} samples but {count} were asked for."
            )
        out[c] = count
    return out


@dataclass
class BudgetPlan:
    """The budgets of one strategy, with what it computed along the way.

    Attributes:
        strategy: strategy name.
        budgets: int64 ``[C]``, rows to keep per class.
        columns: per-sample columns (``difficulty`` for the ``difficulty`` strategy).
        class_columns: per-class columns for the budget table (``difficulty`` = ``S_c``).
    """

    strategy: str
    budgets: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    class_columns: dict[str, np.ndarray] = field(default_factory=dict)


def sample_difficulty(data) -> np.ndarray:
    """``h_i`` of the ``difficulty`` strategy (float64 ``[N]``), averaged over the models."""
    from ._linalg import as_tensor, class_means, distances_to_present_means

    total = np.zeros(data.n, dtype=np.float64)
    if data.n_classes < 2:
        return total
    codes = data.codes_tensor()
    for x in data.features.values():
        xt = as_tensor(x)
        means = class_means(xt, codes, data.n_classes, device=data.device)
        d = distances_to_present_means(xt, codes, means, device=data.device, want_nearest=False, want_other=True)
        own = d["own"].numpy().astype(np.float64)
        other = d["other"].numpy().astype(np.float64)
        total += own / np.maximum(other, 1e-12)
    return total / len(data.features)


def plan_budgets(strategy: str, data, *, counts: Mapping | str | os.PathLike | None = None) -> BudgetPlan:
    """Budgets of ``strategy`` for the pool ``data`` (a :class:`SelectionData`)."""
    sizes = data.sizes
    p = data.fraction
    if strategy == "paper":
        return BudgetPlan(strategy, paper_budgets(sizes, p))
    if strategy == "proportional":
        return BudgetPlan(strategy, proportional_budgets(sizes, p))
    if strategy == "uniform":
        return BudgetPlan(strategy, uniform_budgets(sizes, p))
    if strategy == "difficulty":
        h = sample_difficulty(data)
        s = np.array([winsorized_mean(h[data.class_rows(c)]) for c in range(data.n_classes)])
        return BudgetPlan(strategy, difficulty_budgets(sizes, p, s), {"difficulty": h}, {"difficulty": s})
    if strategy == "manual":
        return BudgetPlan(strategy, manual_budgets(data.classes, sizes, counts))
    raise SelectionInputError(f"Unknown budget strategy {strategy!r}; available: {', '.join(BUDGET_STRATEGIES)}.")


def budget_table(
    classes: np.ndarray,
    sizes: np.ndarray,
    budgets: np.ndarray,
    kept: np.ndarray,
    extra: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The per-class table every strategy reports: class, size, budget, kept (+ extras)."""
    table = pd.DataFrame(
        {
            "class": np.asarray(classes).tolist(),
            "size": np.asarray(sizes, dtype=np.int64),
            "budget": np.asarray(budgets, dtype=np.int64),
            "kept": np.asarray(kept, dtype=np.int64),
        }
    )
    for name, values in (extra or {}).items():
        table[name] = np.asarray(values)
    return table


__all__ = [
    "BUDGET_STRATEGIES",
    "BudgetPlan",
    "allocate_capped",
    "budget_table",
    "difficulty_budgets",
    "largest_remainder",
    "manual_budgets",
    "paper_budgets",
    "plan_budgets",
    "proportional_budgets",
    "read_manual_counts",
    "sample_difficulty",
    "total_budget",
    "uniform_budgets",
    "winsorized_mean",
]
