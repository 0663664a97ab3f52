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
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

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


def _run(
    fs: FeatureSet,
    method: str,
    fraction: float,
    budget: str,
    seed: int,
    params: dict,
    budget_counts: dict | None,
    progress=None,
    **extra,
) -> SelectionResult:
    from core.selection import run_selection

    from .services import selection_pool

    return run_selection(
        method,
        fs.features,
        fs.labels,
        fraction,
        budget=budget,
        seed=seed,
        budget_counts=budget_counts or None,
        pool=selection_pool(fs),
        device="cpu",
        label_issues=_pool_size(fs) <= LABEL_ISSUES_MAX,
        progress=progress,
        **extra,
        **params,
    )


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
    key = spec.key
    if key in store:
        store.move_to_end(key)
        return store[key]
    saved = _saved_result(spec)
    if saved is not None:
        store.put(key, saved)
        return saved
    sel = get_selector(spec.method)
    params = dict(spec.params)
    if sel.prefix_consistent and spec.budget != "manual" and _pool_size(fs) <= RANK_ALL_MAX:
        rkey = (
            f"{spec.embedding_key}|ranking|{spec.method}|{spec.budget}|{spec.seed}|{json.dumps(params, sort_keys=True)}"
        )
        base = store.get(rkey)
        if base is None:
            base = _run(fs, spec.method, 1.0, spec.budget, spec.seed, params, None, progress, rank_all=True)
            store.put(rkey, base)
        result = base.reslice(spec.fraction)
        result.details = {**result.details, "resliced": True}
    else:
        result = _run(
            fs, spec.method, spec.fraction, spec.budget, spec.seed, params, dict(spec.budget_counts), progress
        )
    store.put(key, result)
    return result


@st.cache_resource(show_spinner=False)
def _csv_store() -> _Store:
    return _Store()


def selection_csvs(spec: RunSpec, edits, result: SelectionResult, fs: FeatureSet) -> tuple[bytes, bytes]:
    """``(scores.csv, subset.csv)`` bytes of a run with its hand edits, made once per run and edit
    set (at 100,000 images writing them takes about half a second)."""
    from .services import subset_csv_bytes

    key = f"{spec.key}|{sorted(edits.added)}|{sorted(edits.dropped)}"
    store = _csv_store()
    if key not in store:
        store.put(key, subset_csv_bytes(result, fs))
    return store[key]


# --------------------------------------------------------------------------- saved runs
def run_store():
    """The workspace's saved runs (:class:`core.runs.RunStore`), so that a restart keeps them."""
    from core.runs import RunStore

    return RunStore()


def _saved_result(spec: RunSpec) -> SelectionResult | None:
    if not spec.dataset_key:
        return None
    try:
        return run_store().load_result(spec.dataset_key, spec.key)
    except (OSError, ValueError):
        return None


def save_run(spec: RunSpec, models: Sequence[str], result: SelectionResult) -> str | None:
    """Save a run made by the person in the workspace; returns a problem to show, or None."""
    from core.errors import CoresetError

    if not spec.dataset_key:
        return None
    try:
        run_store().save_run(
            spec.dataset_key, spec.run_id, spec.key, {**spec.to_config(), "models": list(models)}, result
        )
    except (OSError, ValueError, CoresetError) as exc:
        return f"The run could not be saved in the workspace ({exc}); it stays in this session only."
    return None


def restore_runs(state) -> list[str]:
    """Put the saved runs of the session's dataset and embedding into ``state`` (once per
    embedding and session): their specs, hand edits and latest evaluations. Returns the
    problems met (unreadable run folders), to show."""
    from .state import Edits

    ekey, fingerprint = state.embedding_key, state.dataset_key
    if not ekey or not fingerprint or ekey in state.restored:
        return []
    state.restored.add(ekey)
    store = run_store()
    try:
        records = store.list_runs(fingerprint)
    except (OSError, ValueError) as exc:
        return [f"Saved runs could not be read: {exc}"]
    for rec in records:
        if rec.config.get("embedding_key") != ekey or rec.run_id in state.runs:
            continue
        try:
            spec = RunSpec.from_config(rec.config, dataset_key=fingerprint)
        except (KeyError, TypeError, ValueError):
            continue
        state.runs[spec.run_id] = spec
        added, dropped = set(rec.added), set(rec.dropped)
        state.edits[spec.run_id] = Edits(added, dropped)
        state.saved_edits[spec.run_id] = (tuple(sorted(added)), tuple(sorted(dropped)))
        if rec.evaluations:
            state.evaluations.setdefault(spec.run_id, rec.evaluations[-1])
        if state.active_run is None:
            state.active_run = spec.run_id
    return store.problems()


def persist_edits(state) -> None:
    """Save the hand edits of the session's runs that changed since last saved."""
    for rid, spec in state.runs.items():
        edits = state.edits.get(rid)
        if edits is None:
            continue
        sig = (tuple(sorted(edits.added)), tuple(sorted(edits.dropped)))
        if state.saved_edits.get(rid, ((), ())) == sig:
            continue
        if spec.dataset_key:
            try:
                run_store().save_edits(spec.dataset_key, spec.key, edits.added, edits.dropped)
            except (OSError, ValueError):
                continue  # tried again after the next action
        state.saved_edits[rid] = sig


def delete_run(state, run_id: str) -> None:
    """Forget a run in this session and delete it from the workspace (its edits and evaluations too)."""
    spec = state.runs.pop(run_id, None)
    state.edits.pop(run_id, None)
    state.saved_edits.pop(run_id, None)
    state.evaluations.pop(run_id, None)
    if state.active_run == run_id:
        remaining = state.runs_for_embedding()
        state.active_run = remaining[-1] if remaining else None
    if spec is not None:
        _selection_store().pop(spec.key, None)
        if spec.dataset_key:
            run_store().delete_run(spec.dataset_key, spec.key)


def saved_runs(state) -> list:
    """The saved runs of the session's dataset (:class:`core.runs.RunRecord`, oldest first)."""
    if not state.dataset_key:
        return []
    try:
        return run_store().list_runs(state.dataset_key)
    except (OSError, ValueError):
        return []


def delete_saved_run(state, record) -> None:
    """Delete a saved run (listed by :func:`saved_runs`) from the workspace and the session."""
    if record.run_id in state.runs and state.runs[record.run_id].key == record.key:
        delete_run(state, record.run_id)
    else:  # a run of other models, not open in this session
        run_store().delete_run(state.dataset_key, record.key)


def save_evaluation(spec: RunSpec, eval_key: str, outcome) -> None:
    """Keep an evaluation of a saved run in the workspace too (best effort)."""
    if spec.dataset_key:
        try:
            run_store().save_evaluation(spec.dataset_key, spec.key, eval_key, outcome.files, outcome.note)
        except (OSError, ValueError):
            pass


def evaluation(spec: RunSpec | None, eval_key: str):
    """The evaluation ``eval_key`` from memory, else from the saved run (None when neither has it)."""
    store = evaluation_store()
    if eval_key in store:
        return store[eval_key]
    if spec is None or not spec.dataset_key:
        return None
    saved = run_store().load_evaluation(spec.dataset_key, spec.key, eval_key)
    if saved is None:
        return None
    from core.errors import CoresetError
    from core.evaluation.report import EvaluationReport

    from .services import EvaluationOutcome

    try:
        report = EvaluationReport.from_json(saved.files["report.json"].decode("utf-8"))
    except (ValueError, KeyError, TypeError, CoresetError):
        return None
    outcome = EvaluationOutcome(report=report, files=saved.files, note=saved.note)
    store.put(eval_key, outcome)
    return outcome


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
    key = f"check|{spec.key}"
    if key not in store:
        defaults = {i.name: i.default for i in get_selector(spec.method).parameters}
        try:
            cand = candidate_spec(spec.method, dict(spec.params), defaults)
        except SelectionInputError:
            return None
        r = _run(
            fs, "auto", spec.fraction, spec.budget, spec.seed, {"candidates": f"random,{cand}", "margin": 1e9}, None
        )
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


@st.cache_resource(show_spinner=False, max_entries=4)
def _unit_features(embedding_key: str, model: str) -> np.ndarray:
    x = np.asarray(get_features(embedding_key).features[model], dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def unit_features(embedding_key: str, model: str) -> np.ndarray:
    """``model``'s features with rows scaled to unit length (for cosine neighbours), made once
    per embedding; read-only."""
    return _unit_features(embedding_key, model)


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
