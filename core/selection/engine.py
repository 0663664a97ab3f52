"""The one entry point: :func:`run_selection` (input checks, budgets, selector, result)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..devices import resolve_device
from ..errors import SelectionInputError
from ..features import FLOAT32_MAX, beyond_float32, float32_range_message
from ..mapped import release
from ..neighbors import NeighborGraph
from ..provenance import SELECTION_PACKAGES, package_versions
from ..text import display_array
from ._linalg import check_and_sum, known_class_sums
from .budgets import BUDGET_STRATEGIES, budget_table, plan_budgets
from .neighborhood import Neighborhood
from .registry import SelectionData, get_selector
from .result import SelectionResult


def versions() -> dict[str, str]:
    """Versions recorded in every selection result (:func:`core.provenance.package_versions`,
    the one version recorder, for the packages a selection depends on)."""
    return package_versions(SELECTION_PACKAGES)


def check_fraction(fraction: Any) -> float:
    """``fraction`` as a float in (0, 1], else :class:`SelectionInputError`."""
    if isinstance(fraction, bool):
        raise SelectionInputError(f"fraction must be a number in (0, 1], got {fraction!r}.")
    try:
        p = float(fraction)
    except (TypeError, ValueError):
        raise SelectionInputError(f"fraction must be a number in (0, 1], got {fraction!r}.") from None
    if not (0.0 < p <= 1.0):  # also rejects NaN
        raise SelectionInputError(f"fraction must be in (0, 1] (e.g. 0.1 keeps 10 %), got {fraction!r}.")
    return p


def normalize_labels(labels: Any) -> np.ndarray:
    """Labels as a 1-D int64 array (integer labels) or str array (anything else)."""
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise SelectionInputError(f"labels must be 1-D, got shape {lab.shape}.")
    kind = lab.dtype.kind
    if kind in "biu":
        return lab.astype(np.int64)
    if kind == "f":
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise SelectionInputError("labels must be integers or strings; got non-integer floats (or NaN).")
        return lab.astype(np.int64)
    if kind == "O":
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in lab.tolist()):
            return lab.astype(np.int64)
        if any(v is None for v in lab.tolist()):
            raise SelectionInputError("labels contain None; every sample needs a class label.")
    if kind == "S":
        try:
            return np.array([v.decode("utf-8") for v in lab.tolist()], dtype=str)
        except UnicodeDecodeError:
            bad = next(i for i, v in enumerate(lab.tolist()) if not _utf8(v))
            raise SelectionInputError(
                f"labels row {bad} is not UTF-8 text ({lab[bad]!r}); give labels as str."
            ) from None
    # a name that is not valid UTF-8 (surrogate-escaped bytes) is shown as \xNN (core.text)
    return display_array(lab.astype(str))


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_magnitude(x: np.ndarray, name: str) -> None:
    """Raise :class:`SelectionInputError` when squared distances between rows of the float32
    ``x`` could overflow float32.

    Every selector works on (squared) Euclidean distances or dot products in float32; with
    ``D`` columns and ``|x| <= m`` they stay below ``4 D m^2``, so ``m`` must not exceed
    ``sqrt(FLOAT32_MAX / (4 D))`` (about 2.6e17 for 1280-d features). Above that some score
    becomes infinite and the ranking degenerates to row order.
    """
    if x.size == 0:
        return
    limit = magnitude_limit(x.shape[1])
    _magnitude_error(x, name, max(float(x.max()), -float(x.min())), limit)


def magnitude_limit(d: int) -> float:
    """``sqrt(FLOAT32_MAX / (4 D))``: the largest ``|x|`` :func:`check_magnitude` accepts."""
    return float(np.sqrt(FLOAT32_MAX / (4.0 * d)))


def _magnitude_error(x: np.ndarray, name: str, top: float, limit: float) -> None:
    if top > limit:
        row = int(np.argmax(np.abs(x).max(axis=1)))
        raise SelectionInputError(
            f"Features of model {name!r} have values up to {top:.3g} in absolute value (row {row}); squared "
            f"distances between rows would overflow float32 (above about {limit:.2g} for {x.shape[1]}-d features) "
            "and every score would be infinite: rescale the features (divide by their largest absolute value) or "
            "L2-normalise them before saving."
        )


def resolve_models(features: Mapping[str, Any], models: str | Sequence[str] | None) -> list[str]:
    """The model names ``models`` asks for (``"a,b"``, a list, or None/empty for every model
    of ``features``), checked against ``features``."""
    return _resolve_models(features, models)


def _resolve_models(features: Mapping[str, Any], models: str | Sequence[str] | None) -> list[str]:
    if not isinstance(features, Mapping) or not features:
        raise SelectionInputError("features must be a non-empty dict {model name: array [N, D]}.")
    available = list(features)
    if models is None or models == "" or (not isinstance(models, str) and len(models) == 0):
        return available
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m) for m in models]
    for name in names:
        if name not in features:
            raise SelectionInputError(f"Model {name!r} is not in the features; available: {', '.join(available)}.")
    if len(set(names)) != len(names):
        raise SelectionInputError(f"Model list {names} names a model twice.")
    return names


def _resolve_pool(pool: Any, n: int) -> np.ndarray | None:
    """Sorted unique row indices of the pool, or None for all rows."""
    if pool is None:
        return None
    arr = np.asarray(pool)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise SelectionInputError(f"pool mask has shape {arr.shape} but there are {n} rows.")
        idx = np.flatnonzero(arr)
    else:
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise SelectionInputError("pool must be a boolean mask or a 1-D array of row indices.")
        idx = np.unique(arr.astype(np.int64))
        if len(idx) != len(arr):
            raise SelectionInputError("pool lists a row twice.")
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise SelectionInputError(f"pool indices must be in [0, {n}).")
    if idx.size == 0:
        raise SelectionInputError("The selection pool is empty (no rows to select from).")
    return None if idx.size == n else idx.astype(np.int64)


def run_selection(
    method: str,
    features: Mapping[str, np.ndarray],
    labels: Any,
    fraction: float,
    *,
    budget: str = "paper",
    seed: int = 0,
    models: str | Sequence[str] | None = None,
    budget_counts: Mapping | str | os.PathLike | None = None,
    pool: np.ndarray | None = None,
    device: str | torch.device = "auto",
    label_issues: bool = False,
    rank_all: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    neighbors: Mapping[str, NeighborGraph] | None = None,
    **params: Any,
) -> SelectionResult:
    """Select ``fraction`` of the samples with ``method`` and the ``budget`` strategy.

    Args:
        method: a registered selector (:func:`list_selectors`): ``ram_apl``, ``min``,
            ``moderate_ds``, ``kcenter``, ``herding``, ``facility_location``,
            ``graph_cut``, ``random``.
        features: model name -> array ``[N, D_m]`` (raw embeddings; cast to float32).
        labels: ``[N]`` class labels (integers or strings).
        fraction: p in (0, 1].
        budget: class budget strategy (:data:`BUDGET_STRATEGIES`), default ``paper``.
        seed: seed of every random choice (non-negative integer).
        models: the models to use (names or ``"a,b"``), default all, in the dict's order.
        budget_counts: per-class counts for the ``manual`` budget (dict or CSV path).
        pool: rows to select from (bool mask or indices); default all. Indices in the
            result always refer to rows of ``features``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ...
        label_issues: also compute the label consensus (:mod:`.consensus`) and add its
            columns ``suspected_mislabel``, ``suggested_class``, ``label_confidence`` and
            ``label_agreement`` to the table.
        rank_all: for a prefix-consistent selector, rank every row of every class (column
            ``pick_rank``: position within the class, 0 first) so that
            :meth:`SelectionResult.reslice` can give any other fraction without running it
            again; ignored by the other selectors.
        progress: ``progress(done, total, what)`` from selectors that report it (``auto``).
        neighbors: each used model's neighbour graph over the rows of ``features``
            (:func:`core.neighbors.neighbor_graphs`), read by the label consensus (label
            issues, ``cleaned``, ``auto``); without it a graph is built over the pool when
            first needed (and remembered in the process).
        **params: the selector's parameters (values or strings), see its params class.

    Returns:
        a :class:`SelectionResult`.

    Raises:
        SelectionInputError: fraction outside (0, 1]; NaN/inf features, finite values
            beyond the float32 range, or values so large that squared distances overflow
            float32 (:func:`check_magnitude`); arrays of different lengths; unknown model, method, parameter or budget; no samples.
    """
    t0 = time.perf_counter()
    spec = get_selector(method)
    sel_params = spec.make_params(params)
    p = check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SelectionInputError(f"seed must be a non-negative integer, got {seed!r}.")
    if budget not in BUDGET_STRATEGIES:
        raise SelectionInputError(f"Unknown budget strategy {budget!r}; available: {', '.join(BUDGET_STRATEGIES)}.")
    names = _resolve_models(features, models)
    lab = normalize_labels(labels)
    n = len(lab)
    if n < 1:
        raise SelectionInputError("There are no samples to select from (0 labels).")
    feats: dict[str, np.ndarray] = {}
    for name in names:
        x = np.asarray(features[name])
        if x.ndim != 2:
            raise SelectionInputError(f"Features of model {name!r} must be 2-D [N, D], got shape {x.shape}.")
        if x.shape[0] != n:
            raise SelectionInputError(
                f"Features of model {name!r} have {x.shape[0]} rows but there are {n} labels; arrays must have equal length."
            )
        if x.shape[1] < 1:
            raise SelectionInputError(f"Features of model {name!r} have no columns.")
        if x.dtype.kind not in "fiub":
            raise SelectionInputError(f"Features of model {name!r} must be numbers, got dtype {x.dtype}.")
        where = beyond_float32(x)
        if where is not None:
            raise SelectionInputError(float32_range_message(name, where))
        feats[name] = np.ascontiguousarray(x, dtype=np.float32)
    pool_idx = _resolve_pool(pool, n)
    if pool_idx is not None:
        feats = {k: v[pool_idx] for k, v in feats.items()}
        lab = lab[pool_idx]
    data = SelectionData.build(feats, lab, p, int(seed), None, budget, progress)
    sums = []  # the checks' pass also sums each class (reused by class means on the CPU)
    for name, x in feats.items():
        if x.size == 0:
            continue
        limit = magnitude_limit(x.shape[1])
        top, class_sums = check_and_sum(x, name, data.codes, data.n_classes, limit)
        release(x)  # a memory-mapped store's pages go back to the OS between passes
        if top is not None:
            _magnitude_error(x, name, top, limit)
        if class_sums is not None:
            sums.append((x, data.codes, data.n_classes, class_sums))
    dev = resolve_device(device)
    data.device = dev
    if neighbors is not None:
        data.neighborhood = _neighborhood(data, neighbors, names, n, pool_idx)

    t1 = time.perf_counter()
    plan = plan_budgets(budget, data, counts=budget_counts)
    budgets = plan.budgets
    if np.any(budgets < 0) or np.any(budgets > data.sizes):  # pragma: no cover - strategy bug
        raise RuntimeError(f"budget strategy {budget!r} returned budgets outside [0, class size]")
    t2 = time.perf_counter()
    ranked = bool(rank_all and spec.prefix_consistent)
    with known_class_sums(sums):
        out = spec.fn(data, data.sizes.copy() if ranked else budgets, sel_params)
    for x in feats.values():
        release(x)
    pick_rank = None
    if ranked:
        pick_rank = _within_class_position(np.asarray(out.order, dtype=np.int64), data)
        out.order = _cut_to_budgets(np.asarray(out.order, dtype=np.int64), data, budgets)
    t3 = time.perf_counter()

    order = np.asarray(out.order, dtype=np.int64)
    kept = (
        np.bincount(data.codes[order], minlength=data.n_classes) if order.size else np.zeros(data.n_classes, np.int64)
    )
    if len(np.unique(order)) != len(order) or not np.array_equal(kept, budgets):  # pragma: no cover
        raise RuntimeError(f"selector {method!r} did not return exactly the budgeted unique rows")
    position = np.full(data.n, -1, dtype=np.int64)
    position[order] = np.arange(len(order), dtype=np.int64)
    row_index = np.arange(n, dtype=np.int64) if pool_idx is None else pool_idx
    columns: dict[str, Any] = {"index": row_index, "label": lab}
    columns.update(out.columns)
    columns.update(plan.columns)
    if label_issues:
        from .consensus import label_consensus

        columns.update(label_consensus(data).columns(data.classes))
    if pick_rank is not None:
        columns["pick_rank"] = pick_rank
    columns["selected"] = position >= 0
    columns["order"] = position
    table = pd.DataFrame(columns)
    t4 = time.perf_counter()
    return SelectionResult(
        method=method,
        params=sel_params.to_dict(),
        fraction=p,
        budget=budget,
        budget_table=budget_table(data.classes, data.sizes, budgets, kept, plan.class_columns),
        seed=int(seed),
        models=names,
        selected=row_index[order],
        table=table,
        versions=versions(),
        timing_s={"budget": t2 - t1, "select": t3 - t2, "total": t4 - t0},
        device=str(dev),
        details=dict(out.details),
    )


def _neighborhood(
    data: SelectionData, graphs: Mapping[str, NeighborGraph], names: list[str], n: int, pool_idx: np.ndarray | None
) -> Neighborhood:
    """The pool's :class:`.neighborhood.Neighborhood` over the given graphs (rows of the features)."""
    for name in names:
        if name not in graphs:
            raise SelectionInputError(f"neighbors: no neighbour graph of model {name!r} (given: {', '.join(graphs)}).")
        if graphs[name].n != n:
            raise SelectionInputError(
                f"neighbors: the graph of model {name!r} has {graphs[name].n} rows but the features have {n}; "
                "build it on these features (core.neighbors.neighbor_graphs)."
            )
    return Neighborhood.of(
        data.features,
        data.codes,
        data.n_classes,
        graphs={m: graphs[m] for m in names},
        graph_rows=pool_idx,
        device=data.device,
    )


def _within_class_position(order: np.ndarray, data: SelectionData) -> np.ndarray:
    """int64 ``[N]``: each row's position among its class's rows in ``order`` (-1 if absent)."""
    pos = np.full(data.n, -1, dtype=np.int64)
    cls = data.codes[order]
    start = np.searchsorted(cls, np.arange(data.n_classes))  # order is class-sorted
    pos[order] = np.arange(len(order), dtype=np.int64) - start[cls]
    return pos


def _cut_to_budgets(order: np.ndarray, data: SelectionData, budgets: np.ndarray) -> np.ndarray:
    """The first ``budgets[c]`` rows of each class in the class-sorted ``order``."""
    pos = _within_class_position(order, data)
    return order[pos[order] < np.asarray(budgets, dtype=np.int64)[data.codes[order]]]
