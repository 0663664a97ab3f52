"""Caches: heavy objects live here, keyed by content fingerprints, shared by all sessions.

* embedders (the loaded models): (name, weights file, its size and mtime) -> embedder
  (st.cache_resource), so a second dataset or model set does not load them again
* datasets: ``Dataset.fingerprint`` -> Dataset (st.cache_resource store)
* embeddings: sha(fingerprint, models, weights) -> FeatureSet (store; the vectors
  themselves are also cached on disk by core, so recomputing is a look-up)
* selections: (embedding key, run spec) -> SelectionResult (store; prefix-consistent methods
  keep one full ranking per spec and re-slice it for every fraction), and the pool check of
  a picked method against random
* thumbnails: path -> data URI, made once (st.cache_resource dict)
* projections: PCA at once (st.cache_data); UMAP in a background thread
* evaluations: key -> EvaluationOutcome (store)

The stores are plain dicts returned by ``st.cache_resource`` functions: treat the objects
in them as read-only. Feature arrays sit in such a store rather than in ``st.cache_data``
on purpose: ``st.cache_data`` pickles and copies its value on every read, which for
100,000 x 1,024 float32 features (400 MB) would cost seconds on every rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import streamlit as st

from core.datasets import Dataset
from core.features import FeatureSet
from core.selection import SelectionResult

from .state import RunSpec

MAX_ITEMS = 8


class _Store(OrderedDict):
    """A small LRU dict (the oldest entries go first)."""

    max_items = MAX_ITEMS

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.max_items:
            self.popitem(last=False)


@st.cache_resource(show_spinner=False)
def dataset_store() -> _Store:
    return _Store()


@st.cache_resource(show_spinner=False)
def feature_store() -> _Store:
    return _Store()


@st.cache_resource(show_spinner=False)
def evaluation_store() -> _Store:
    return _Store()


@st.cache_resource(show_spinner=False)
def _thumb_store() -> dict[str, str | None]:
    return {}


@st.cache_resource(show_spinner=False)
def _projection_jobs() -> tuple[ThreadPoolExecutor, dict[tuple, Future], threading.Lock]:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="umap"), {}, threading.Lock()


# --------------------------------------------------------------------------- datasets
def put_dataset(ds: Dataset) -> str:
    dataset_store().put(ds.fingerprint, ds)
    return ds.fingerprint


def get_dataset(key: str | None) -> Dataset | None:
    return dataset_store().get(key) if key else None


@st.cache_resource(show_spinner="Loading the demo dataset…")
def demo_dataset() -> Dataset:
    from .services import load_demo_dataset

    return load_demo_dataset()


# --------------------------------------------------------------------------- embedders
@st.cache_resource(show_spinner=False, max_entries=4)
def _embedder(name: str, weights: str | None, stamp: tuple[int, int] | None):
    from core.embedders import create_embedder

    return create_embedder(name, weights=weights)


def embedder(name: str, weights: str | None = None):
    """The loaded embedder ``name`` (with a local ``weights`` file), loaded once per process;
    a weights file that changed on disk (size or mtime) is loaded again."""
    stamp = None
    if weights:
        try:
            st_ = os.stat(weights)
            stamp = (st_.st_size, st_.st_mtime_ns)
        except OSError:
            stamp = None  # create_embedder reports the missing file
    return _embedder(name, weights, stamp)


# --------------------------------------------------------------------------- embeddings
def embedding_key(fingerprint: str, models: Sequence[str], weights: dict[str, str]) -> str:
    text = json.dumps([fingerprint, list(models), sorted(weights.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def put_features(key: str, fs: FeatureSet) -> None:
    feature_store().put(key, fs)


def get_features(key: str | None) -> FeatureSet | None:
    return feature_store().get(key) if key else None


# --------------------------------------------------------------------------- selections
#: Pools up to this many rows get the label consensus (suspected mislabels, suggested class):
#: its exact neighbour search costs O(N^2 D), about 10 s at 20,000 rows x 2 models on 2 cores.
LABEL_ISSUES_MAX = 20_000
#: Prefix-consistent methods on pools up to this size rank every row once, so that other
#: fractions are re-sliced from that ranking instead of run again (greedy: O(N_c^2 D) per class).
RANK_ALL_MAX = 20_000


@st.cache_resource(show_spinner=False)
def _selection_store() -> _Store:
    store = _Store()
    store.max_items = 64
    return store


def _pool_size(fs: FeatureSet) -> int:
    from .services import selection_pool

    pool = selection_pool(fs)
    return len(fs) if pool is None else int(np.count_nonzero(pool))


def _run(fs: FeatureSet, method: str, fraction: float, budget: str, seed: int, params: dict,
         budget_counts: dict | None, progress=None, **extra) -> SelectionResult:
    from core.selection import run_selection

    from .services import selection_pool

    return run_selection(method, fs.features, fs.labels, fraction, budget=budget, seed=seed,
                         budget_counts=budget_counts or None, pool=selection_pool(fs), device="cpu",
                         label_issues=_pool_size(fs) <= LABEL_ISSUES_MAX, progress=progress, **extra, **params)


def selection(spec: RunSpec, progress=None) -> SelectionResult | None:
    """The run's result, computed once per spec and embedding (None if the features are gone).

    A prefix-consistent method (registry) with a budget derived from the fraction is ranked
    once for every fraction (``rank_all``) and each fraction is re-sliced from that ranking:
    moving the fraction slider does not run it again. ``progress(done, total, what)`` is
    called by long selectors (``auto``) while they run.
    """
    from core.selection import get_selector

    fs = get_features(spec.embedding_key)
    if fs is None:
        return None
    store = _selection_store()
    key = f"{spec.embedding_key}|{spec.to_json()}"
    if key in store:
        store.move_to_end(key)
        return store[key]
    sel = get_selector(spec.method)
    params = dict(spec.params)
    if sel.prefix_consistent and spec.budget != "manual" and _pool_size(fs) <= RANK_ALL_MAX:
        rkey = f"{spec.embedding_key}|ranking|{spec.method}|{spec.budget}|{spec.seed}|{json.dumps(params, sort_keys=True)}"
        base = store.get(rkey)
        if base is None:
            base = _run(fs, spec.method, 1.0, spec.budget, spec.seed, params, None, progress, rank_all=True)
            store.put(rkey, base)
        result = base.reslice(spec.fraction)
        result.details = {**result.details, "resliced": True}
    else:
        result = _run(fs, spec.method, spec.fraction, spec.budget, spec.seed, params,
                      dict(spec.budget_counts), progress)
    store.put(key, result)
    return result


def pool_check(spec: RunSpec) -> dict | None:
    """``auto``'s pool estimate of ``spec``'s method against random (k-fold inside the pool), for
    a method the person picked; None for ``auto`` itself, a manual budget, or an unusual parameter."""
    from core.errors import SelectionInputError
    from core.selection import get_selector
    from core.selection.auto import candidate_spec, estimate_for

    if spec.method in ("auto", "random") or spec.budget == "manual":
        return None
    fs = get_features(spec.embedding_key)
    if fs is None:
        return None
    store = _selection_store()
    key = f"{spec.embedding_key}|check|{spec.to_json()}"
    if key not in store:
        defaults = {i.name: i.default for i in get_selector(spec.method).parameters}
        try:
            cand = candidate_spec(spec.method, dict(spec.params), defaults)
        except SelectionInputError:
            return None
        r = _run(fs, "auto", spec.fraction, spec.budget, spec.seed, {"candidates": f"random,{cand}", "margin": 1e9},
                 None)
        store.put(key, estimate_for(r.details, cand) or {})
    return store[key] or None


# --------------------------------------------------------------------------- thumbnails
def thumbnails(paths: Sequence[str], size: int = 64, fmt: str = "auto", square: bool = False) -> dict[str, str | None]:
    """path -> ``fmt`` data URI (None when unreadable), each made once per process. ``auto`` by
    default: JPEG for images scaled down (the app sends many thumbnails to the browser, and a
    photo's is ~4x smaller than as PNG), PNG for images already small.
    ``square``: centre-cropped squares, for grids."""
    from core.export.html import thumbnail_data_uri

    store = _thumb_store()
    out = {}
    for p in paths:
        key = f"{size}|{fmt}|{int(square)}|{p}"
        if key not in store:
            store[key] = thumbnail_data_uri(p, size, fmt, square)
        out[p] = store[key]
    return out


# --------------------------------------------------------------------------- projections
@st.cache_data(show_spinner=False, max_entries=16)
def pca(embedding_key: str, model: str) -> np.ndarray:
    from core.projection import pca_2d

    return pca_2d(get_features(embedding_key).features[model])


def umap(embedding_key: str, model: str) -> np.ndarray | None:
    """UMAP coordinates when ready; otherwise starts them in the background and returns None.
    Raises the job's error (e.g. ImportError without umap-learn) when it failed."""
    from core.projection import umap_2d

    executor, jobs, lock = _projection_jobs()
    key = (embedding_key, model)
    with lock:
        job = jobs.get(key)
        if job is None:
            x = get_features(embedding_key).features[model]
            job = jobs[key] = executor.submit(umap_2d, x, 0)
    if not job.done():
        return None
    return job.result()
