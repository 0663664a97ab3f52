"""Extraction engine: images on disk -> raw embeddings, batched, cached, never fatal on bad images.

:func:`embed_images` decodes images with PIL (:func:`~core.datasets.images.open_rgb`: 8-bit RGB,
upright) in DataLoader worker processes, applies the
embedder's own transform, runs the model under ``torch.inference_mode`` in batches on the
chosen device (``auto`` = CUDA > MPS > CPU) and returns float32 features ``[N, dim]``
(raw, not normalised). On CUDA the batches come from pinned memory with non-blocking copies
and run under fp16 autocast by default (``precision``). Convolutional embedders run in
channels-last layout. Images that cannot be opened or decoded are skipped and reported in
``ExtractionResult.problems``; their rows are NaN and ``ok`` is False.

With an :class:`~core.cache.EmbeddingCache`, rows are looked up by (embedder identity, file
identity, width) first; only the missing images are embedded and then stored: every
:data:`CACHE_FLUSH_EVERY` images or :data:`CACHE_FLUSH_SECONDS` seconds, whichever comes
first, and when the call ends in any way (finished, cancelled, an exception, Ctrl-C /
``KeyboardInterrupt``, or a signal the caller turns into an exception), so an interrupted run
keeps every row it finished and the next run embeds only the rest. A second run on the same
data costs only the look-up; adding images embeds only the new ones. When the cache cannot
be written (read-only folder, full disk) the call warns once
(:class:`~core.cache.CacheWriteWarning`) and goes on without caching.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .datasets.images import file_identity  # noqa: F401  (re-exported: the one content hash)
from .datasets.images import open_rgb
from .devices import resolve_device
from .errors import CoresetError

if TYPE_CHECKING:  # pragma: no cover
    from .cache import EmbeddingCache
    from .embedders import Embedder

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: Computed rows are written to the cache at least every this many images ...
CACHE_FLUSH_EVERY = 1024
#: ... and at least every this many seconds of work (so an interrupt loses at most this much).
CACHE_FLUSH_SECONDS = 5.0
#: The clock of the time-based flush (monotonic seconds).
_clock = time.monotonic


class ExtractionCancelled(CoresetError):
    """``cancel()`` returned True. Rows embedded before that are in the cache (if one was given);
    ``partial`` holds the :class:`ExtractionResult` so far (unfinished rows NaN, ok False)."""

    def __init__(self, message: str, partial: "ExtractionResult") -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class ExtractionResult:
    """Output of :func:`embed_images`.

    Attributes:
        features: float32 ``[N, dim]`` raw embeddings in input order; NaN rows where ``ok`` is False.
        ok: bool ``[N]``, True where the row holds a real embedding.
        problems: ``(path, reason)`` for every image that could not be read or decoded.
        n_cached: rows taken from the cache.
        n_computed: rows embedded in this call (duplicates of one file count once).
        seconds: wall time of the call.
        images_per_s: ``n_computed / seconds`` (decode included) when something was computed,
            else ``N / seconds`` (look-up rate).
        device: the torch device used, e.g. ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast dtype used).
        cache_key: cache folder name used (embedder identity, plus precision when not fp32).
    """

    features: np.ndarray
    ok: np.ndarray
    problems: list[tuple[str, str]] = field(default_factory=list)
    n_cached: int = 0
    n_computed: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    cache_key: str = ""


# ----------------------------------------------------------------------------- data loading
class _ImageFiles(Dataset):
    """Decodes ``paths[i]`` with :func:`~core.datasets.images.open_rgb` (8-bit RGB, upright) and
    applies ``transform``; failures become reasons."""

    def __init__(self, paths: Sequence[str], transform: Callable) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            x = self.transform(open_rgb(path))
            if not isinstance(x, torch.Tensor) or x.ndim != 3:
                raise TypeError(f"transform returned {type(x).__name__} {getattr(x, 'shape', '')}, expected [3, H, W]")
            return i, x, None
        except Exception as exc:  # a bad image is reported, never fatal
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(items):
    good = [(i, x) for i, x, r in items if x is not None]
    bad = [(i, r) for i, x, r in items if x is None]
    if good:
        idx = torch.tensor([i for i, _ in good], dtype=torch.long)
        xs = torch.stack([x for _, x in good])
    else:
        idx, xs = torch.zeros(0, dtype=torch.long), None
    return idx, xs, bad


def default_batch_size(device: torch.device) -> int:
    """64 on CUDA/MPS; 8 on CPU (small batches keep activations in cache: measured fastest)."""
    return 8 if device.type == "cpu" else 64


def default_num_workers(n_images: int, batch_size: int, device: torch.device | None = None) -> int:
    """Decoding worker processes for a job.

    0 for tiny jobs (worker start-up dominates). On accelerators min(4, CPU count): the CPU
    is free for decoding. On the CPU the model already uses ``torch.get_num_threads()``
    cores, and decoding workers only pay off on cores it leaves idle: 0 on machines with at
    most 2 logical CPUs (measured: decoding in the main process between batches is ~25%
    faster there than 1-2 workers competing with the compute threads), else
    ``min(4, max(1, cpu_count - torch threads))``.
    """
    if n_images < max(64, 2 * batch_size):
        return 0
    cpus = os.cpu_count() or 1
    if device is not None and device.type == "cpu":
        if cpus <= 2:
            return 0
        return min(4, max(1, cpus - torch.get_num_threads()))
    return max(0, min(4, cpus))


def _resolve_precision(precision: str, device: torch.device) -> str:
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise CoresetError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- engine
def embed_images(
    embedder: "Embedder",
    paths: Sequence[str | os.PathLike],
    *,
    file_ids: Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    precision: str = "auto",
    cache: "EmbeddingCache | None" = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ExtractionResult:
    """Embed the images at ``paths`` with ``embedder``; see the module docstring.

    Args:
        embedder: from :func:`core.embedders.create_embedder`.
        paths: image files; unreadable ones are reported in ``problems``, never fatal.
        file_ids: content identities of the files (as from :func:`file_identity`), used as
            cache keys; computed here (by hashing) only when a cache is given and this is None.
        device: ``"auto"`` (CUDA > MPS > CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        batch_size: images per forward pass; None picks :func:`default_batch_size` (64 on
            accelerators, 8 on CPU, where small batches keep activations in cache and were
            measured fastest).
        num_workers: decoding processes (None: :func:`default_num_workers`).
        precision: ``"auto"`` (fp16 autocast on CUDA, fp32 elsewhere), ``"fp32"``,
            ``"fp16"``, ``"bf16"``. Non-fp32 results are cached under a separate key.
        cache: embedding cache, or None for no caching.
        progress: called as ``progress(done, total)`` once with the cached count, then after
            every batch.
        cancel: polled before every batch; when it returns True the call stops and raises
            :class:`ExtractionCancelled` (computed rows are cached first).

    Returns:
        :class:`ExtractionResult` with float32 ``features [N, embedder.dim]``.
    """
    t0 = time.perf_counter()
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    if file_ids is not None and len(file_ids) != n:
        raise CoresetError(f"file_ids has {len(file_ids)} entries for {n} paths; give one id per path.")
    dev = resolve_device(device)
    batch_size = default_batch_size(dev) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise CoresetError(f"batch_size must be at least 1, got {batch_size}.")
    prec = _resolve_precision(precision, dev)
    dim = int(embedder.dim)
    key = embedder.identity if prec == "fp32" else f"{embedder.identity}-{prec}"

    features = np.full((n, dim), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    failed = np.zeros(n, dtype=bool)
    problems: dict[int, str] = {}
    n_cached = 0

    ids: list[str] | None = [str(f) for f in file_ids] if file_ids is not None else None
    if cache is not None:
        if ids is None:
            ids = []
            for i, p in enumerate(paths):
                try:
                    ids.append(file_identity(p))
                except OSError as exc:
                    ids.append("")
                    failed[i] = True
                    problems[i] = f"{type(exc).__name__}: {exc}"
        usable = [i for i in range(n) if not failed[i]]
        found, cached = cache.lookup(key, [ids[i] for i in usable], dim=dim)
        if cached.shape[1] == dim and found.any():
            rows = np.asarray(usable)[found]
            features[rows] = cached[found]
            ok[rows] = True
            n_cached = int(found.sum())

    # Images still to embed; with ids, identical files are embedded once.
    todo = [i for i in range(n) if not ok[i] and not failed[i]]
    groups: dict[str, list[int]] = {}
    first: list[int] = []
    if ids is not None:
        for i in todo:
            g = groups.setdefault(ids[i], [])
            if not g:
                first.append(i)
            g.append(i)
    else:
        first = todo
    members = {i: (groups[ids[i]] if ids is not None else [i]) for i in first}

    done = n - len(todo)
    if progress is not None:
        progress(done, n)

    n_computed = 0
    pending_ids: list[str] = []
    pending_feats: list[np.ndarray] = []

    last_flush = [_clock()]

    def flush() -> None:
        """Store the pending rows (a failed write warns once and is not retried: try_store)."""
        last_flush[0] = _clock()
        if cache is not None and pending_ids:
            rows_ids, rows = list(pending_ids), np.concatenate(pending_feats)
            pending_ids.clear()
            pending_feats.clear()
            cache.try_store(key, rows_ids, rows, meta=embedder.describe())
        pending_ids.clear()  # without a cache nothing is kept: the pending lists stay empty
        pending_feats.clear()

    def result() -> ExtractionResult:
        secs = time.perf_counter() - t0
        rate = (n_computed / secs) if n_computed else (n / secs if secs > 0 else 0.0)
        return ExtractionResult(
            features=features,
            ok=ok,
            problems=[(paths[i], problems[i]) for i in sorted(problems)],
            n_cached=n_cached,
            n_computed=n_computed,
            seconds=secs,
            images_per_s=rate,
            device=str(dev),
            precision=prec,
            cache_key=key,
        )

    if first:
        embedder.to(dev)
        channels_last = bool(getattr(embedder, "channels_last", False))
        if channels_last:
            embedder.model.to(memory_format=torch.channels_last)
        workers = default_num_workers(len(first), batch_size, dev) if num_workers is None else max(0, int(num_workers))
        loader = DataLoader(
            _ImageFiles([paths[i] for i in first], embedder.transform),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=dev.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
        )
        it = iter(loader)
        try:
            while True:
                if cancel is not None and cancel():
                    flush()
                    raise ExtractionCancelled(
                        f"Extraction cancelled after {done} of {n} images; "
                        + ("the rows embedded so far are cached and will not be recomputed."
                           if cache is not None and cache.write_error is None
                           else "nothing was cached (no cache given, or it could not be written)."),
                        result(),
                    )
                try:
                    idx, xs, bad = next(it)
                except StopIteration:
                    break
                for j, reason in bad:
                    for i in members[first[j]]:
                        failed[i] = True
                        problems[i] = reason
                    done += len(members[first[j]])
                if xs is not None:
                    xs = xs.to(dev, non_blocking=dev.type == "cuda")
                    if channels_last:
                        xs = xs.contiguous(memory_format=torch.channels_last)
                    with torch.inference_mode(), _autocast(dev, prec):
                        out = embedder.embed_batch(xs)
                    out_np = out.detach().to("cpu", dtype=torch.float32).numpy()
                    finite = np.isfinite(out_np).all(axis=1)
                    good_rows = []
                    for r, j in enumerate(idx.tolist()):
                        rows = members[first[j]]
                        done += len(rows)
                        if not finite[r]:
                            for i in rows:
                                failed[i] = True
                                problems[i] = "the model produced non-finite features (try --precision fp32)"
                            continue
                        features[rows] = out_np[r]
                        ok[rows] = True
                        n_computed += 1
                        good_rows.append(r)
                        if ids is not None:
                            pending_ids.append(ids[first[j]])
                    if ids is not None and good_rows:
                        pending_feats.append(out_np[good_rows])
                    if len(pending_ids) >= CACHE_FLUSH_EVERY or (
                            pending_ids and _clock() - last_flush[0] >= CACHE_FLUSH_SECONDS):
                        flush()
                if progress is not None:
                    progress(done, n)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal turned into an exception, an error in a
            # callback): keep the finished rows, then let the exception go on.
            try:
                flush()
            except Exception:  # never hide the original exception behind a failed flush
                pass
            raise
        finally:
            del it
        flush()
    return result()
