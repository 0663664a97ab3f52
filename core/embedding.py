"""Embedding a whole dataset with one or more models: the step behind ``coreset-studio embed``.

For each model the extraction engine (:func:`core.extract.embed_images`) is run over the
dataset's images with the embedding cache, keyed by the images' content hashes. An image
that fails to decode in any model is left out of the feature set and reported, so that
every ``feat_<model>`` array has one row per kept image, in dataset order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datasets import Dataset, Problem
from .errors import CoresetError
from .features import FeatureSet
from .provenance import package_versions

# progress(model, done, total)
ModelProgress = Callable[[str, int, int], None]


@dataclass
class EmbeddingRun:
    """What :func:`embed_dataset` returns: the feature set and how it was made."""

    features: FeatureSet
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, dict] = field(default_factory=dict)  # model -> cached/computed/seconds/images_per_s
    file_ids: list[str] | None = None  # content hash of every row of ``features`` (the store's keys)


def parse_models(text: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (stripped, order kept, duplicates removed)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    models = list(dict.fromkeys(m.strip() for m in items if m and m.strip()))
    if not models:
        raise CoresetError("No model given; name at least one, e.g. --models effnet-lite0.")
    return models


BACKENDS = ("torch", "onnx")


def build_embedder(
    model: str,
    weights: str | os.PathLike | None = None,
    workspace: str | os.PathLike | None = None,
    backend: str = "torch",
    jpeg_draft: bool = False,
    base: Any = None,
) -> Any:
    """The embedder ``model`` (or ``base``, already built) on ``backend``, with JPEG draft decoding when asked.

    ``backend="onnx"``: :func:`core.embedders.onnx_runtime.onnx_embedder` (exported at load, cached,
    checked against torch to 1e-5; same identity). ``jpeg_draft``:
    :func:`core.embedders.jpeg_draft.with_jpeg_draft` (its own identity). Picklable by name, so the
    Ray engine's actors build theirs with it.
    """
    from .embedders import create_embedder

    if backend not in BACKENDS:
        raise CoresetError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    embedder = base if base is not None else create_embedder(model, weights=weights, workspace=workspace)
    if backend == "onnx":
        from .embedders.onnx_runtime import onnx_embedder

        embedder = onnx_embedder(embedder, workspace)
    if jpeg_draft:
        from .embedders.jpeg_draft import with_jpeg_draft

        embedder = with_jpeg_draft(embedder)
    return embedder


def embed_dataset(
    dataset: Dataset,
    models: str | Sequence[str],
    *,
    weights: Mapping[str, str | os.PathLike] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    decode_threads: int | None = None,
    precision: str = "auto",
    workspace: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: ModelProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    make_embedder: Callable[[str, str | None], Any] | None = None,
    cache: Any = None,
    engine: str = "local",
    ray_options: Mapping[str, Any] | None = None,
    backend: str = "torch",
    jpeg_draft: bool = False,
) -> EmbeddingRun:
    """Embed every image of ``dataset`` with every model in ``models``.

    Args:
        weights: model name -> local weights file, for hub-backed models used offline.
        device: ``auto`` (CUDA > MPS > CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_size: images per forward pass (default: 8 on the CPU, 64 on a GPU).
        num_workers, decode_threads: decoding processes, and decoding threads when there are
            none (defaults: :func:`core.extract.default_num_workers` and
            :func:`core.extract.default_decode_threads`).
        precision: ``auto`` (fp16 autocast on CUDA, fp32 elsewhere), ``fp32``, ``fp16``, ``bf16``.
        workspace: folder for the cache and converted weights (default: the user cache dir).
        use_cache: read and write the embedding cache.
        progress: called as ``progress(model, done, total)``.
        cancel: polled between batches; returning True stops the run.
        make_embedder: ``make_embedder(model, weights_path_or_None)`` returns the embedder
            (default: :func:`core.embedders.create_embedder` with ``workspace``); lets a caller
            keep loaded models between runs (the app holds them in ``st.cache_resource``).
        cache: an :class:`~core.cache.EmbeddingCache` to use instead of the workspace's
            (ignored when ``use_cache`` is False); lets a caller see ``cache.write_error``.
        engine: ``"local"`` (:func:`core.extract.embed_images` in this process) or ``"ray"``
            (:func:`core.ray_engine.embed_images_ray` on a Ray cluster: same features, same cache).
        backend: ``"torch"`` or ``"onnx"`` (ONNX Runtime on the CPU; see :func:`build_embedder`).
        jpeg_draft: decode JPEGs in draft mode at the transform's resize size (own cache key).
        ray_options: for ``engine="ray"``: ``address``, ``workers``, ``gpus_per_worker``, ``num_cpus``
            (keyword arguments of :func:`~core.ray_engine.embed_images_ray`).

    An interrupt (``KeyboardInterrupt``, or a signal the caller turns into an exception)
    propagates after the rows finished so far are written to the cache. When the cache
    cannot be written, a :class:`~core.cache.CacheWriteWarning` is issued once and the run
    goes on without it.

    Returns:
        An :class:`EmbeddingRun` whose feature set has raw float32 features, one array per
        model, for the images every model could read, with labels, splits and paths, and
        ``meta`` holding the dataset fingerprint, model identities, device and versions.
    """
    from .cache import EmbeddingCache
    from .embedders import create_embedder
    from .extract import embed_images

    if engine not in ("local", "ray"):
        raise CoresetError(f"Unknown engine {engine!r}; use 'local' or 'ray'.")
    if backend not in BACKENDS:
        raise CoresetError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend == "onnx" and engine == "local":
        from .devices import resolve_device

        if resolve_device(device).type != "cpu":
            raise CoresetError("--backend onnx runs on the CPU only; add --device cpu or use --backend torch.")
    if engine == "ray":
        from .ray_engine import require_ray

        require_ray()
    models = parse_models(models)
    weights = dict(weights or {})
    unknown_weights = sorted(set(weights) - set(models))
    if unknown_weights:
        raise CoresetError(f"--weights given for {unknown_weights}, which are not among the models {models}.")
    if not use_cache:
        cache = None
    elif cache is None:
        cache = EmbeddingCache.in_workspace(workspace)
    n = len(dataset)
    ok = np.ones(n, dtype=bool)
    arrays: dict[str, np.ndarray] = {}
    problems: dict[str, Problem] = {}
    stats: dict[str, dict] = {}
    identities: dict[str, dict] = {}
    for model in models:
        w = weights.get(model)
        if make_embedder is not None:
            embedder = make_embedder(model, None if w is None else str(w))
        else:
            embedder = create_embedder(model, weights=w, workspace=workspace)
        if backend != "torch" or jpeg_draft:
            embedder = build_embedder(model, w, workspace, backend, jpeg_draft, base=embedder)
        report = None if progress is None else (lambda done, total, m=model: progress(m, done, total))
        started = time.perf_counter()
        if engine == "ray":
            import functools

            from .ray_engine import embed_images_ray

            factory = functools.partial(build_embedder, model, w, workspace, backend, jpeg_draft)
            result = embed_images_ray(
                embedder,
                factory,
                dataset.paths,
                file_ids=dataset.file_ids,
                batch_size=batch_size,
                precision=precision,
                cache=cache,
                progress=report,
                cancel=cancel,
                **dict(ray_options or {}),
            )
        else:
            result = embed_images(
                embedder,
                dataset.paths,
                file_ids=dataset.file_ids,
                device=device,
                batch_size=batch_size,
                num_workers=num_workers,
                decode_threads=decode_threads,
                precision=precision,
                cache=cache,
                progress=report,
                cancel=cancel,
            )
        arrays[model] = result.features
        ok &= result.ok
        for path, reason in result.problems:
            problems.setdefault(path, Problem(path, "unreadable_during_embedding", reason))
        stats[model] = {
            "cached": int(result.n_cached),
            "computed": int(result.n_computed),
            "seconds": round(time.perf_counter() - started, 3),
            "images_per_s": round(result.images_per_s, 1),
            "device": result.device,
            "backend": str(getattr(embedder, "backend", "torch")),
            "dim": int(result.features.shape[1]),
        }
        identities[model] = {"identity": embedder.identity, "dim": int(embedder.dim)}
    if not ok.any():
        raise CoresetError("No image could be embedded; see the problem report.")
    keep = np.flatnonzero(ok)
    meta = {
        "dataset": {
            "name": dataset.name,
            "root": str(dataset.root),
            "source": dataset.source,
            "fingerprint": dataset.fingerprint,
            "images": n,
            "embedded": int(ok.sum()),
        },
        "models": identities,
        "versions": package_versions(),
        "stats": stats,
    }
    features = FeatureSet(
        features={m: a[keep] for m, a in arrays.items()},
        labels=np.asarray(dataset.labels)[keep],
        paths=np.asarray(dataset.paths)[keep],
        split=np.asarray(dataset.splits)[keep],
        meta=meta,
    )
    ids = dataset.file_ids
    return EmbeddingRun(
        features=features,
        problems=list(problems.values()),
        stats=stats,
        file_ids=None if ids is None else [str(ids[i]) for i in keep],
    )
