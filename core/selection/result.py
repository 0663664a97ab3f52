"""The result of a selection run and its JSON round trip (CSV escaping lives in :mod:`core.export.tables`)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def _frame_to_dict(frame: pd.DataFrame) -> dict:
    data = {}
    for col in frame.columns:
        s = frame[col]
        values = s.tolist()
        if pd.api.types.is_float_dtype(s):
            values = [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in values]
        data[str(col)] = values
    return {"columns": [str(c) for c in frame.columns], "dtypes": [str(t) for t in frame.dtypes], "data": data}


def _frame_from_dict(d: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {col: pd.Series(d["data"][col], dtype=dtype) for col, dtype in zip(d["columns"], d["dtypes"])},
        columns=d["columns"],
    )


def _py(value: Any) -> Any:
    """JSON-friendly Python value (numpy scalars to Python)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(eq=False)
class SelectionResult:
    """What :func:`core.selection.run_selection` returns.

    Attributes:
        method: selector name.
        params: the selector's validated parameters (``SelectorParams.to_dict()``).
        fraction: the fraction p asked for.
        budget: budget strategy name.
        budget_table: per class: ``class``, ``size``, ``budget``, ``kept`` (+ strategy extras).
        seed: the seed.
        models: the models used (feature names), in order.
        selected: int64 row indices kept, in selection order (classes concatenated in class
            order; within a class, the method's pick order / ascending score). Row indices
            refer to the rows of the features given (not to the pool when a pool is given).
        table: one row per pool sample: ``index`` (row), ``label``, every score the method
            (and the budget strategy) computed, ``selected`` (bool) and ``order`` (position
            in ``selected``, -1 if not kept).
        versions: python, numpy, torch, pandas and core versions.
        timing_s: seconds spent: ``budget``, ``select``, ``total``.
        device: the torch device the arithmetic ran on.
        details: what the method reports beyond the per-sample table (``auto``: the method
            it chose, every candidate's pool estimate with its interval, random's).
    """

    method: str
    params: dict
    fraction: float
    budget: str
    budget_table: pd.DataFrame
    seed: int
    models: list[str]
    selected: np.ndarray
    table: pd.DataFrame
    versions: dict[str, str] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    details: dict = field(default_factory=dict)

    @property
    def n_selected(self) -> int:
        return int(len(self.selected))

    def selected_labels(self) -> np.ndarray:
        """Labels of the kept rows, in selection order."""
        lab = self.table.set_index("index")["label"]
        return lab.loc[self.selected].to_numpy()

    def class_counts(self, column: str = "kept") -> dict[str, int]:
        """Class -> a column of the budget table: ``kept`` (selected) or ``budget`` (planned)."""
        return {str(c): int(k) for c, k in zip(self.budget_table["class"], self.budget_table[column])}

    def manual_budget_counts(self) -> dict[str, int] | None:
        """The per-class counts to run this selection again with (``manual`` budgets only; the
        other strategies derive them from the fraction)."""
        return self.class_counts("budget") if self.budget == "manual" else None

    # ------------------------------------------------------------------ budget slider
    def can_reslice(self) -> bool:
        """True when :meth:`reslice` can give other fractions (a prefix-consistent selector run
        with ``rank_all=True``, and a budget strategy derived from the fraction)."""
        return "pick_rank" in self.table.columns and self.budget != "manual"

    def reslice(self, fraction: float) -> SelectionResult:
        """The selection at another ``fraction`` without running the selector again.

        Valid for prefix-consistent selectors (their rows kept at budget ``b`` are the first
        ``b`` of their per-class ranking ``pick_rank``) run with ``rank_all=True``: the budgets
        of the same strategy at ``fraction`` are planned from the class sizes (``difficulty``:
        from the stored per-sample ``difficulty`` column), and the first ``b_c`` ranked rows
        of each class are kept, in rank order. Equal to a fresh run at ``fraction``.
        """
        from .budgets import difficulty_budgets, paper_budgets, proportional_budgets, uniform_budgets, winsorized_mean

        if not self.can_reslice():
            raise ValueError(f"{self.method} with the {self.budget} budget cannot be re-sliced; run it again.")
        p = float(fraction)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        bt = self.budget_table
        sizes = bt["size"].to_numpy(dtype=np.int64)
        classes = bt["class"].tolist()
        labels = self.table["label"].to_numpy()
        lookup = {str(c): i for i, c in enumerate(classes)}
        codes = np.array([lookup[str(v)] for v in labels.tolist()], dtype=np.int64)
        if self.budget == "paper":
            budgets = paper_budgets(sizes, p)
        elif self.budget == "proportional":
            budgets = proportional_budgets(sizes, p)
        elif self.budget == "uniform":
            budgets = uniform_budgets(sizes, p)
        else:  # difficulty
            h = self.table["difficulty"].to_numpy(dtype=np.float64)
            s = np.array([winsorized_mean(h[codes == c]) for c in range(len(classes))])
            budgets = difficulty_budgets(sizes, p, s)
        rank = self.table["pick_rank"].to_numpy(dtype=np.int64)
        ranked = np.bincount(codes[rank >= 0], minlength=len(classes))
        if np.any(budgets > ranked):
            raise ValueError("the stored ranking does not reach that fraction; run the selector again.")
        keep = (rank >= 0) & (rank < budgets[codes])
        index = self.table["index"].to_numpy(dtype=np.int64)
        local = np.flatnonzero(keep)
        local = local[np.lexsort((rank[local], codes[local]))]
        table = self.table.copy()
        position = np.full(len(table), -1, dtype=np.int64)
        position[local] = np.arange(len(local), dtype=np.int64)
        table["selected"] = position >= 0
        table["order"] = position
        budget_table = bt.copy()
        budget_table["budget"] = budgets
        budget_table["kept"] = budgets
        return dataclasses.replace(
            self,
            fraction=p,
            budget_table=budget_table,
            selected=index[local],
            table=table,
            timing_s={"total": 0.0, "resliced_from": float(self.fraction)},
        )

    # ------------------------------------------------------------------ round trip
    def to_dict(self, include_table: bool = True) -> dict:
        """JSON-ready dict (``table`` omitted when ``include_table`` is False)."""
        d = {
            "method": self.method,
            "params": {k: _py(v) for k, v in self.params.items()},
            "fraction": float(self.fraction),
            "budget": self.budget,
            "budget_table": _frame_to_dict(self.budget_table),
            "seed": int(self.seed),
            "models": list(self.models),
            "selected": np.asarray(self.selected, dtype=np.int64).tolist(),
            "versions": dict(self.versions),
            "timing_s": {k: float(v) for k, v in self.timing_s.items()},
            "device": self.device,
            "details": self.details,
        }
        if include_table:
            d["table"] = _frame_to_dict(self.table)
        return d

    def to_json(self, include_table: bool = True, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(include_table), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> SelectionResult:
        table = _frame_from_dict(d["table"]) if "table" in d else pd.DataFrame()
        return cls(
            method=d["method"],
            params=dict(d["params"]),
            fraction=float(d["fraction"]),
            budget=d["budget"],
            budget_table=_frame_from_dict(d["budget_table"]),
            seed=int(d["seed"]),
            models=list(d["models"]),
            selected=np.asarray(d["selected"], dtype=np.int64),
            table=table,
            versions=dict(d.get("versions", {})),
            timing_s=dict(d.get("timing_s", {})),
            device=d.get("device", "cpu"),
            details=dict(d.get("details", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> SelectionResult:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SelectionResult):
            return NotImplemented
        return (
            self.method == other.method
            and self.params == other.params
            and self.fraction == other.fraction
            and self.budget == other.budget
            and self.seed == other.seed
            and self.models == other.models
            and self.versions == other.versions
            and self.timing_s == other.timing_s
            and self.device == other.device
            and self.details == other.details
            and np.array_equal(self.selected, other.selected)
            and self.selected.dtype == other.selected.dtype
            and list(self.table.columns) == list(other.table.columns)
            and self.table.equals(other.table)
            and list(self.budget_table.columns) == list(other.budget_table.columns)
            and self.budget_table.equals(other.budget_table)
        )

    def same_selection(self, other: SelectionResult) -> bool:
        """Equal apart from timing (what "same seed, same result" means)."""
        return (
            self.method == other.method
            and self.params == other.params
            and np.array_equal(self.selected, other.selected)
            and self.table.equals(other.table)
            and self.budget_table.equals(other.budget_table)
        )
