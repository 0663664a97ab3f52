"""A selection with everything that comes with it: :func:`curated_selection`.

What ``coreset-studio select`` (and ``evaluate --selection``, to recompute the same table)
does with a feature set, in one place:

1. each model's neighbour graph over every row of the features (:mod:`core.neighbors`:
   built once and kept beside the features file ``source``, else in the workspace);
2. the near-duplicate groups over every row (:mod:`core.duplicates`), and with ``dedup``
   one image per group left in the pool;
3. the selection on the pool (:func:`core.selection.run_selection`) with its label-issue
   columns, read from the same graphs;
4. the duplicate columns ``duplicate_group`` and ``duplicate_of`` added to the table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .duplicates import DEFAULT_THRESHOLD, DuplicateGroups, near_duplicates
from .errors import SelectionInputError
from .features import FeatureSet
from .neighbors import NeighborGraph, graphs_for
from .pool import selection_pool
from .selection import SelectionResult, run_selection
from .selection.engine import resolve_models

Progress = Callable[[int, int, str], None]


@dataclass
class CuratedSelection:
    """What :func:`curated_selection` returns.

    Attributes:
        result: the selection; its table has the label-issue and duplicate columns.
        groups: near-duplicate groups over every row of the features.
        graphs: model -> neighbour graph over every row of the features.
        pool: bool mask of the rows selected from, or None for every row.
        pool_desc: the pool in words.
        duplicates: what ``selection.json`` records of the duplicates (counts, threshold,
            ``dedup``, ``dropped_by_dedup``, ``groups_across_pool``).
        notes: what the caller should tell the person (a graph that could not be saved).
    """

    result: SelectionResult
    groups: DuplicateGroups
    graphs: dict[str, NeighborGraph]
    pool: np.ndarray | None
    pool_desc: str
    duplicates: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def neighbors(self) -> dict[str, dict]:
        """How each graph was built (for ``selection.json``)."""
        return {m: {"method": g.method, **g.params} for m, g in self.graphs.items()}


def curation(
    fs: FeatureSet,
    models: list[str],
    source: str | os.PathLike | None = None,
    *,
    device: Any = "cpu",
    threshold: float = DEFAULT_THRESHOLD,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> tuple[dict[str, NeighborGraph], DuplicateGroups]:
    """Steps 1-2 of the module docstring: ``(graphs, groups)`` of the feature set ``fs``."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise SelectionInputError(
            f"The near-duplicate threshold is a relative similarity in [0, 1] (1: identical only), got {threshold!r}."
        )
    graphs = graphs_for(fs, models, source, device=device, progress=progress, notes=notes)
    file_ids = None
    if source is not None and Path(source).is_dir():  # a features store knows each row's content hash
        from .feature_store import store_file_ids

        file_ids = store_file_ids(source)
    groups = near_duplicates({m: fs.features[m] for m in models}, graphs, threshold=threshold, file_ids=file_ids)
    return graphs, groups


def curated_selection(
    fs: FeatureSet,
    method: str,
    fraction: float,
    *,
    source: str | os.PathLike | None = None,
    models: str | list[str] | None = None,
    budget: str = "paper",
    seed: int = 0,
    budget_counts: Any = None,
    device: Any = "auto",
    dedup: bool = False,
    duplicate_threshold: float = DEFAULT_THRESHOLD,
    graph_progress: Progress | None = None,
    progress: Progress | None = None,
    **params: Any,
) -> CuratedSelection:
    """The module docstring's four steps on the feature set ``fs`` (read from ``source`` when
    it came from a file: its graphs are kept beside it). The pool is
    :func:`core.pool.selection_pool`'s (``train`` rows when there is a split)."""
    from .devices import resolve_device

    pool, pool_desc = selection_pool(fs, None if source is None else str(source))
    names = resolve_models(fs.features, models)
    notes: list[str] = []
    dev = resolve_device(device)
    graphs, groups = curation(
        fs, names, source, device=dev, threshold=duplicate_threshold, progress=graph_progress, notes=notes
    )
    in_pool = np.ones(len(fs), dtype=bool) if pool is None else pool
    duplicates: dict[str, Any] = {**groups.summary(), "dedup": bool(dedup), "groups_across_pool": groups.leaks(in_pool)}
    if dedup:
        kept = groups.keep_one(in_pool)
        duplicates["dropped_by_dedup"] = int(in_pool.sum() - kept.sum())
        pool, pool_desc = kept, pool_desc + ", one image per near-duplicate group"
    result = run_selection(
        method,
        fs.features,
        fs.labels,
        fraction,
        budget=budget,
        seed=seed,
        models=names,
        budget_counts=budget_counts,
        pool=pool,
        device=dev,
        label_issues=True,
        progress=progress,
        neighbors=graphs,
        **params,
    )
    rows = result.table["index"].to_numpy()
    for name, column in groups.columns().items():
        result.table.insert(len(result.table.columns) - 2, name, column[rows])  # before selected, order
    return CuratedSelection(result, groups, graphs, pool, pool_desc, duplicates, notes)


__all__ = ["CuratedSelection", "curated_selection", "curation"]
