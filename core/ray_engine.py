"""The Ray Data engine: the same embeddings as :func:`core.extract.embed_images`, on a Ray cluster.

Pipeline (``coreset-studio embed ... --engine ray``):

1. On the driver, :func:`~core.extract.plan_rows` looks every row up in the content-keyed
   embedding cache and lists the files still to embed (identical files once).
2. Those rows ``(i, path)`` become a Ray Dataset (``ray.data.from_items``); ``map_batches``
   with the callable class :class:`_EmbedActor` and an actor pool
   (``compute=ray.data.ActorPoolStrategy(size=workers)``, ``num_gpus`` per actor when asked)
   keeps one embedder loaded per actor. Each actor decodes its batch's files
   (:func:`~core.extract.decode_image`: the local engine's decoding and the embedder's own
   preprocessing) and runs :func:`~core.extract.forward_batch`, so a row's features are the
   local engine's (same model, same preprocessing, same code).
3. The driver streams the finished batches back (``iter_batches``), in whatever order Ray
   finishes them, and puts each row at its index: the output keeps the dataset's row order.
   Finished rows go to the cache through :class:`~core.extract.CacheWriter` (every
   :data:`~core.extract.CACHE_FLUSH_EVERY` rows or :data:`~core.extract.CACHE_FLUSH_SECONDS`
   seconds, and when the call ends in any way), so an interrupted run resumes where it stopped
   and the local engine, the app and ``select`` find the rows.
4. A file that cannot be read or decoded in a worker comes back with its reason and is
   reported in ``problems`` like in the local engine, never fatal.

The cache is written by the driver only, so with a multi-node cluster the workers need to
read the images (shared storage at the same path) but never the cache. Without an address
the engine starts a local Ray cluster sized to this machine's CPUs and shuts it down at the
end; with one (``auto``, ``ray://host:10001``) it joins that cluster and leaves it running.
An already initialised Ray (``ray.is_initialized()``) is used as it is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CoresetError

if TYPE_CHECKING:  # pragma: no cover
    from .cache import EmbeddingCache
    from .extract import ExtractionResult

#: What ``--engine ray`` says when Ray Data is not installed.
RAY_MISSING = (
    "--engine ray needs Ray Data, which is not installed: pip install 'coreset-studio[ray]' "
    "(or pip install 'ray[data]'), or use the local engine (--engine local, the default)."
)

#: Object store of a local cluster started here (bytes): batches of features are small.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def require_ray():
    """Import and return the ``ray`` module (with ``ray.data``), or raise :class:`CoresetError` saying how
    to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise CoresetError(f"{RAY_MISSING} ({exc})") from None
    return ray


class _EmbedActor:
    """One embedder per Ray actor: decodes a batch of paths and embeds the good ones.

    Input batch: ``{"i": int64 [B], "path": str [B]}``. Output: the same ``i``, ``features``
    float32 ``[B, dim]`` (NaN where the file failed) and ``reason`` (``""`` or why the file failed).
    """

    def __init__(self, factory: Callable[[], Any], device: str, precision: str, threads: int) -> None:
        import torch

        from .devices import resolve_device
        from .extract import prepare_model

        if threads > 0:
            torch.set_num_threads(threads)
        self.embedder = factory()
        self.device = resolve_device(device)
        self.precision = precision
        self.channels_last = prepare_model(self.embedder, self.device)

    def __call__(self, batch: dict) -> dict:
        import torch

        from .extract import decode_image, forward_batch

        paths = [str(p) for p in batch["path"]]
        dim = int(self.embedder.dim)
        feats = np.full((len(paths), dim), np.nan, dtype=np.float32)
        reasons = [""] * len(paths)
        good, xs = [], []
        for k, path in enumerate(paths):
            x, reason = decode_image(path, self.embedder.transform, getattr(self.embedder, "decode_draft", None))
            if x is None:
                reasons[k] = reason or "unreadable"
            else:
                good.append(k)
                xs.append(x)
        if xs:
            stacked = torch.stack(xs)
            if self.device.type == "cuda":
                stacked = stacked.pin_memory()
            feats[good] = forward_batch(self.embedder, stacked, self.device, self.precision, self.channels_last)
        return {
            "i": np.asarray(batch["i"], dtype=np.int64),
            "features": feats,
            "reason": np.asarray(reasons, dtype=str),
        }


def _connect(ray, address: str | None, num_cpus: int | None) -> bool:
    """Start or join a Ray cluster; True when this call started it (and must shut it down)."""
    import logging

    for name in ("ray", "ray.data"):  # the progress is ours (rows done / total, img/s); keep Ray's logs quiet
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    if ray.is_initialized():
        return False
    common = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False, "ignore_reinit_error": True}
    if address:
        ray.init(address=address, **common)
        return False
    cpus = int(num_cpus or os.cpu_count() or 1)
    env = {"PYTHONPATH": os.pathsep.join(p for p in [os.environ.get("PYTHONPATH", ""), os.getcwd()] if p)}
    ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, runtime_env={"env_vars": env}, **common)
    return True


def _pool_shape(ray, workers: int | None, gpus_per_worker: float) -> tuple[int, float]:
    """``(actors, CPUs per actor)``: by default one actor per node using the smallest node's CPUs,
    or with GPUs one actor per ``gpus_per_worker`` GPUs (1 CPU each)."""
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes] or [float(resources.get("CPU", 1))]
    if gpus_per_worker > 0:
        gpus = float(resources.get("GPU", 0))
        if gpus < gpus_per_worker:
            raise CoresetError(
                f"--gpus-per-worker {gpus_per_worker} asks for GPUs, but the Ray cluster has {gpus:g}; "
                "start the workers with GPUs (ray start --num-gpus N) or leave --gpus-per-worker at 0."
            )
        n = int(workers) if workers else max(1, int(gpus // gpus_per_worker))
        return n, 1.0
    if workers:
        n = int(workers)
        total = float(resources.get("CPU", 1))
        per = max(1.0, math.floor(min(total / n, max(node_cpus))))
        return n, per
    return max(1, len(nodes)), max(1.0, min(node_cpus))


def embed_images_ray(
    embedder: Any,
    factory: Callable[[], Any],
    paths: Sequence[str | os.PathLike],
    *,
    file_ids: Sequence[str] | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    batch_size: int | None = None,
    precision: str = "auto",
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    num_cpus: int | None = None,
    stats: dict | None = None,
) -> ExtractionResult:
    """Embed ``paths`` on a Ray cluster; the result matches :func:`core.extract.embed_images` row for row.

    Args:
        embedder: the embedder as built on the driver (its identity, width and description key
            the cache); the model itself runs in the actors.
        factory: picklable ``factory()`` -> the same embedder, called once in every actor
            (e.g. ``functools.partial(create_embedder, name, weights=..., workspace=...)``).
        address: ``None`` (start a local cluster with ``num_cpus`` CPUs, default all of them,
            and shut it down at the end), ``"auto"`` or ``"ray://host:port"`` (join it).
        workers: actors in the pool (default: one per node, or one per ``gpus_per_worker`` GPUs).
        gpus_per_worker: GPUs per actor (``num_gpus``); > 0 runs the model on CUDA.
        batch_size: images per actor call (default 8 on CPU, 64 on GPU, like the local engine).
        precision, cache, progress, cancel: as in :func:`core.extract.embed_images`.
        stats: when given, filled with ``startup_s`` (cluster start/join + actor pool start
            until the first batch arrives), ``workers`` and ``cpus_per_worker``.

    Raises:
        CoresetError: Ray missing, or a cluster that cannot host the actors.
        ExtractionCancelled: ``cancel()`` returned True (finished rows are cached first).
    """
    import torch

    from .extract import CacheWriter, ExtractionCancelled, assemble_result, cancelled_message, start_job

    ray = require_ray()
    t0 = time.perf_counter()
    gpus_per_worker = float(gpus_per_worker or 0)
    if gpus_per_worker < 0:
        raise CoresetError(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker:g}.")
    if workers is not None and int(workers) < 1:
        raise CoresetError(f"--workers must be at least 1, got {workers}.")
    dev = torch.device("cuda" if gpus_per_worker > 0 else "cpu")
    files, batch_size, prec, plan = start_job(embedder, paths, file_ids, dev, batch_size, precision, cache, progress)
    n = len(files)
    if not plan.first:
        return assemble_result(plan, t0, dev, prec)

    started = _connect(ray, address, num_cpus)
    writer = CacheWriter(cache, plan.key, embedder.describe())
    try:
        size, cpus = _pool_shape(ray, workers, gpus_per_worker)
        first = plan.first
        blocks = max(1, min(1000, math.ceil(len(first) / (2 * batch_size))))
        ds = ray.data.from_items([{"i": i, "path": files[i]} for i in first], override_num_blocks=blocks)
        remote: dict[str, Any] = {"num_cpus": cpus}
        if gpus_per_worker > 0:
            remote["num_gpus"] = gpus_per_worker
        ds = ds.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={
                "factory": factory,
                "device": str(dev),
                "precision": prec,
                "threads": int(cpus) if gpus_per_worker == 0 else 0,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            **remote,
        )
        first_batch_at = None
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if first_batch_at is None:
                first_batch_at = time.perf_counter()
            if cancel is not None and cancel():
                writer.flush()
                raise ExtractionCancelled(cancelled_message(plan, cache), assemble_result(plan, t0, dev, prec))
            rows = batch["i"].tolist()
            reasons = batch["reason"].tolist()
            good = [k for k, r in enumerate(reasons) if not r]
            for k, r in enumerate(reasons):
                if r:
                    plan.fail(rows[k], str(r))
            if good:
                writer.add(*plan.fill([rows[k] for k in good], np.asarray(batch["features"], dtype=np.float32)[good]))
            if progress is not None:
                progress(plan.done, n)
        if stats is not None:
            stats.update(
                startup_s=round((first_batch_at or time.perf_counter()) - t0, 3), workers=size, cpus_per_worker=cpus
            )
    except BaseException:
        writer.flush_after_error()
        raise
    finally:
        if started:
            ray.shutdown()
    writer.flush()
    return assemble_result(plan, t0, dev, prec)
