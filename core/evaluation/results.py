"""What an evaluation returns: one :class:`GroupResult` per group, one :class:`CellResult` per selection."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .statistics import Difference, mean_std


@dataclass
class GroupResult:
    """Accuracies of one group (``method``, ``random`` or ``full``) over the seeds.

    Attributes:
        accuracy: top-1 accuracy in [0, 1] per seed (same order as ``seeds``).
        per_class: mean over the seeds of each class's test accuracy in [0, 1] (NaN: no test sample).
        n_train: training-set size per seed.
        flipped_kept: label-flipped rows in the training set, per seed.
    """

    accuracy: list[float]
    per_class: list[float]
    n_train: list[int]
    flipped_kept: list[int]

    @property
    def mean(self) -> float:
        return mean_std(self.accuracy)[0]

    @property
    def std(self) -> float:
        return mean_std(self.accuracy)[1]

    def to_dict(self) -> dict:
        m, s = mean_std(self.accuracy)
        nan_none = lambda v: None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v  # noqa: E731
        return {
            "accuracy": [float(a) for a in self.accuracy],
            "mean": nan_none(m),
            "std": nan_none(s),
            "per_class": [nan_none(float(v)) for v in self.per_class],
            "n_train": [int(v) for v in self.n_train],
            "flipped_kept": [int(v) for v in self.flipped_kept],
        }

    @classmethod
    def from_dict(cls, d: dict) -> GroupResult:
        return cls(
            [float(a) for a in d["accuracy"]],
            [math.nan if v is None else float(v) for v in d["per_class"]],
            [int(v) for v in d["n_train"]],
            [int(v) for v in d["flipped_kept"]],
        )


@dataclass
class CellResult:
    """One evaluated selection (method, budget, params, fraction, noise) over the seeds.

    Attributes:
        method, budget, params, fraction, label_noise, seeds: what was evaluated.
        selection: the method's :class:`~core.selection.SelectionResult` for ``seeds[0]``
            as ``to_dict()`` (with its per-sample ``table`` when ``keep_table``).
        deterministic: True when the selector gave the same subset for two seeds.
        budget_counts: rows kept per class (the random baseline keeps exactly these).
        method_result, random, full: :class:`GroupResult` of each group.
        difference: method minus random (:class:`~.statistics.Difference`), in [0, 1] units.
        timing_s: ``select``, ``train``, ``total`` seconds (of the run that computed it).
        key: the cache key.
    """

    method: str
    budget: str
    params: dict
    fraction: float
    label_noise: float
    seeds: list[int]
    selection: dict
    deterministic: bool
    budget_counts: dict[str, int]
    method_result: GroupResult
    random: GroupResult
    full: GroupResult
    difference: Difference
    timing_s: dict[str, float] = field(default_factory=dict)
    key: str = ""

    @property
    def label(self) -> str:
        """Display name: ``method`` or ``method@budget`` when the budget is not ``paper``."""
        return method_label(self.method, self.budget)

    def selection_result(self):
        from ..selection import SelectionResult

        return SelectionResult.from_dict(self.selection)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "budget": self.budget,
            "params": self.params,
            "fraction": self.fraction,
            "label_noise": self.label_noise,
            "seeds": list(self.seeds),
            "deterministic": self.deterministic,
            "budget_counts": {str(k): int(v) for k, v in self.budget_counts.items()},
            "method_result": self.method_result.to_dict(),
            "random": self.random.to_dict(),
            "full": self.full.to_dict(),
            "difference": self.difference.to_dict(),
            "timing_s": {k: float(v) for k, v in self.timing_s.items()},
            "key": self.key,
            "selection": self.selection,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CellResult:
        return cls(
            method=d["method"],
            budget=d["budget"],
            params=dict(d["params"]),
            fraction=float(d["fraction"]),
            label_noise=float(d["label_noise"]),
            seeds=[int(s) for s in d["seeds"]],
            selection=d["selection"],
            deterministic=bool(d["deterministic"]),
            budget_counts={str(k): int(v) for k, v in d["budget_counts"].items()},
            method_result=GroupResult.from_dict(d["method_result"]),
            random=GroupResult.from_dict(d["random"]),
            full=GroupResult.from_dict(d["full"]),
            difference=Difference.from_dict(d["difference"]),
            timing_s=dict(d.get("timing_s", {})),
            key=d.get("key", ""),
        )


def method_label(method: str, budget: str) -> str:
    return method if budget == "paper" else f"{method}@{budget}"


__all__ = ["CellResult", "GroupResult", "method_label"]
