"""Hand edits of a selection: rows added to or dropped from its subset (the app's Explore page and review queue)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, MutableSet

import numpy as np

from .result import SelectionResult


def apply_edits(result: SelectionResult, added: Iterable[int] = (), dropped: Iterable[int] = ()) -> SelectionResult:
    """A copy of ``result`` (:func:`dataclasses.replace`, so every other field is kept) with rows
    added to / dropped from the subset (pool rows only).

    Kept rows keep their order; added rows follow in ascending row order. ``table.selected`` /
    ``order`` and the budget table's ``kept`` are updated. Without edits, ``result`` itself is returned.
    """
    added_set, dropped_set = {int(i) for i in added}, {int(i) for i in dropped}
    if not added_set and not dropped_set:
        return result
    pool = set(result.table["index"].astype(int).tolist())
    sel = [int(i) for i in result.selected if int(i) not in dropped_set]
    have = set(sel)
    sel += sorted(i for i in added_set if i in pool and i not in have and i not in dropped_set)
    selected = np.asarray(sel, dtype=np.int64)
    table = result.table.copy()
    order = {row: k for k, row in enumerate(sel)}
    table["selected"] = table["index"].map(lambda i: int(i) in order).astype(bool)
    table["order"] = table["index"].map(lambda i: order.get(int(i), -1)).astype(np.int64)
    budget = result.budget_table.copy()
    kept_per_class = table[table["selected"]].groupby("label").size()
    budget["kept"] = [int(kept_per_class.get(c, 0)) for c in budget["class"]]
    return dataclasses.replace(result, budget_table=budget, selected=selected, table=table)


def edit_subset(
    added: MutableSet[int], dropped: MutableSet[int], base_kept: Iterable[int], chosen: Iterable[int], keep: bool
) -> None:
    """Record in place that the ``chosen`` rows are to be kept (``keep``) or left out.

    ``added``/``dropped`` only ever hold real changes against the run's own subset
    (``base_kept``): adding a row the run kept (or dropping one it left out) just undoes an
    earlier edit of that row.
    """
    base = {int(i) for i in base_kept}
    for i in (int(r) for r in chosen):
        added.discard(i)
        dropped.discard(i)
        if keep and i not in base:
            added.add(i)
        elif not keep and i in base:
            dropped.add(i)


__all__ = ["apply_edits", "edit_subset"]
