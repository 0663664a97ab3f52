"""Extraction engine: images on disk -> raw embeddings, batched, cached, never fatal on bad images.

:func:`embed_images` decodes images with PIL (:func:`~core.datasets.images.open_rgb`: 8-bit RGB,
upright) in DataLoader worker processes, or in a thread of its own process
(:class:`ThreadedBatches`, the CPU default), applies the embedder's own transform, runs the model under ``torch.inference_mode`` in batches on the
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

The engine is built of pieces with one job each, shared with the Ray engine
(:mod:`core.ray_engine`): :func:`plan_rows` (cache look-up, duplicates, what is left),
:func:`decode_image` / :func:`make_loader` (decode + the embedder's preprocessing),
:func:`prepare_model` and :func:`forward_batch` (the forward pass), :class:`CacheWriter`
(buffered, timed cache writes) and :func:`assemble_result`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .datasets.images import file_identity, open_rgb
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

    def __init__(self, message: str, partial: ExtractionResult) -> None:
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

    def __init__(self, paths: Sequence[str], transform: Callable, draft: tuple[int, int] | None = None) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x, reason = decode_image(self.paths[i], self.transform, self.draft)
        return i, x, reason


def decode_image(
    path: str, transform: Callable, draft: tuple[int, int] | None = None
) -> tuple[torch.Tensor | None, str | None]:
    """``(transform(open_rgb(path, draft=draft)) [3, H, W], None)``, or ``(None, reason)`` when the file
    cannot be read or decoded (a bad image is reported, never fatal). Shared by the local and the Ray
    engine. ``draft``: JPEG draft-mode size (:mod:`core.embedders.jpeg_draft`), None for a full decode."""
    try:
        x = transform(open_rgb(path) if draft is None else open_rgb(path, draft=draft))
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise TypeError(f"transform returned {type(x).__name__} {getattr(x, 'shape', '')}, expected [3, H, W]")
        return x, None
    except Exception as exc:  # noqa: BLE001 - a bad image (any decoder error) is reported, never fatal
        return None, f"{type(exc).__name__}: {exc}"


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


def default_decode_threads(num_workers: int) -> int:
    """Decoding threads in the engine's process: 1 when no decoding processes are used, else 0.

    One thread decodes the next batches while the model runs (both release the GIL). Measured
    on 2 CPUs, effnet-lite0, 400 finegrained images (bench/README): the onnx backend 112 -> 134
    img/s against 1 worker process; with another process busy on one core torch 15-20 -> 57
    img/s against decoding between batches. A second thread gained nothing there.
    """
    return 1 if num_workers <= 0 else 0


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


# ----------------------------------------------------------------------------- pieces
@dataclass
class RowPlan:
    """What is left to embed after the cache look-up, and the rows filled so far.

    ``first`` holds the row of the first occurrence of every file still to embed (with ids,
    identical files are embedded once); ``members[i]`` the rows that share row ``i``'s file.
    ``done`` counts rows settled so far (cached, embedded or failed).
    """

    paths: list[str]
    ids: list[str] | None
    key: str
    features: np.ndarray
    ok: np.ndarray
    failed: np.ndarray
    problems: dict[int, str]
    n_cached: int
    first: list[int]
    members: dict[int, list[int]]
    done: int
    n_computed: int = 0

    @property
    def n(self) -> int:
        return len(self.paths)

    def fail(self, i: int, reason: str) -> None:
        """First-occurrence row ``i`` could not be embedded: it and its duplicates fail with ``reason``."""
        rows = self.members[i]
        for r in rows:
            self.failed[r] = True
            self.problems[r] = reason
        self.done += len(rows)

    def fill(self, first_rows: Sequence[int], out: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Put ``out[k]`` (float32 ``[B, dim]``) into the rows of ``first_rows[k]`` and their duplicates.

        Non-finite rows fail instead. Returns the ``(ids, features)`` to cache (empty without ids).
        """
        finite = np.isfinite(out).all(axis=1)
        good: list[int] = []
        for k, i in enumerate(first_rows):
            if not finite[k]:
                self.fail(i, "the model produced non-finite features (try --precision fp32)")
                continue
            rows = self.members[i]
            self.features[rows] = out[k]
            self.ok[rows] = True
            self.done += len(rows)
            self.n_computed += 1
            good.append(k)
        if self.ids is None or not good:
            return [], out[:0]
        return [self.ids[first_rows[k]] for k in good], out[good]


def plan_rows(
    paths: Sequence[str], file_ids: Sequence[str] | None, key: str, dim: int, cache: EmbeddingCache | None
) -> RowPlan:
    """Look the rows up in ``cache`` (hashing files when ``file_ids`` is None) and list what is left.

    A file that cannot be hashed fails here with its ``OSError``.
    """
    paths = list(paths)
    n = len(paths)
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
    return RowPlan(
        paths=paths,
        ids=ids,
        key=key,
        features=features,
        ok=ok,
        failed=failed,
        problems=problems,
        n_cached=n_cached,
        first=first,
        members=members,
        done=n - len(todo),
    )


class CacheWriter:
    """Buffers computed rows and stores them in the cache every :data:`CACHE_FLUSH_EVERY` rows or
    :data:`CACHE_FLUSH_SECONDS` seconds (``_clock``), and on :meth:`flush`. Without a cache it keeps nothing.
    A failed write warns once and is not retried (:meth:`~core.cache.EmbeddingCache.try_store`)."""

    def __init__(self, cache: EmbeddingCache | None, key: str, meta: dict | None) -> None:
        self.cache, self.key, self.meta = cache, key, meta
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []
        self.last_flush = _clock()

    def add(self, ids: Sequence[str], rows: np.ndarray) -> None:
        """Queue rows, then flush when enough rows or seconds have gathered."""
        if self.cache is not None and len(ids):
            self.ids.extend(ids)
            self.rows.append(rows)
        if len(self.ids) >= CACHE_FLUSH_EVERY or (self.ids and _clock() - self.last_flush >= CACHE_FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        self.last_flush = _clock()
        if self.cache is not None and self.ids:
            ids, rows = list(self.ids), np.concatenate(self.rows)
            self.ids.clear()
            self.rows.clear()
            self.cache.try_store(self.key, ids, rows, meta=self.meta)
        self.ids.clear()
        self.rows.clear()

    def flush_after_error(self) -> None:
        """:meth:`flush` on the way out of an interrupted run: keeps the finished rows, and a
        failing flush never hides the exception that interrupted the run."""
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the original exception matters more
            pass


def start_job(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    file_ids: Sequence[str] | None,
    dev: torch.device,
    batch_size: int | None,
    precision: str,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[str], int, str, RowPlan]:
    """The start every engine shares: the paths as strings, the batch size (``None``:
    :func:`default_batch_size` of ``dev``), the precision, and the rows planned against the
    cache (``progress`` is told the cached count). Returns ``(files, batch_size, precision, plan)``."""
    files: list[str] = [str(os.fspath(p)) for p in paths]
    n = len(files)
    if file_ids is not None and len(file_ids) != n:
        raise CoresetError(f"file_ids has {len(file_ids)} entries for {n} paths; give one id per path.")
    batch_size = default_batch_size(dev) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise CoresetError(f"batch_size must be at least 1, got {batch_size}.")
    prec = _resolve_precision(precision, dev)
    plan = plan_rows(files, file_ids, cache_key(embedder, prec), int(embedder.dim), cache)
    if progress is not None:
        progress(plan.done, n)
    return files, batch_size, prec, plan


def make_loader(
    paths: Sequence[str],
    transform: Callable,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    draft: tuple[int, int] | None = None,
    decode_threads: int = 0,
) -> Iterable[tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]]:
    """Batches ``(index, images [B, 3, H, W] or None, [(index, reason), ...])`` in order.

    Decoded in ``num_workers`` DataLoader processes (pinned memory on CUDA) when it is above 0;
    else in ``decode_threads`` threads of this process (:class:`ThreadedBatches`) when that is
    above 0; else in the caller's thread, between batches.
    """
    if num_workers <= 0 and decode_threads > 0:
        return ThreadedBatches(paths, transform, batch_size, decode_threads, draft)
    return DataLoader(
        _ImageFiles(paths, transform, draft),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )


#: Batches a :class:`ThreadedBatches` decodes ahead of the one being consumed.
DECODE_AHEAD_BATCHES = 4


class ThreadedBatches:
    """The batches of :func:`make_loader`, decoded by ``threads`` threads of this process, in order.

    PIL's decoders and resampling and torch's tensor operations release the GIL, and so does a
    forward pass in ONNX Runtime or torch, so a decoding thread overlaps the model in the
    same process without a worker process's start-up or the copy of every batch between
    processes. At most ``threads + DECODE_AHEAD_BATCHES * batch_size`` images are decoded
    ahead of the batch being consumed (memory stays bounded on any number of images); the
    batches are the same, in the same order, as a sequential decode. Closing the iterator
    (or dropping it) cancels what was not started and waits for the running decodes.
    """

    def __init__(
        self,
        paths: Sequence[str],
        transform: Callable,
        batch_size: int,
        threads: int,
        draft: tuple[int, int] | None = None,
        ahead_batches: int = DECODE_AHEAD_BATCHES,
    ) -> None:
        if batch_size < 1 or threads < 1:
            raise ValueError(f"batch_size and threads must be >= 1, got {batch_size} and {threads}")
        self.files = _ImageFiles(paths, transform, draft)
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self.window = self.threads + max(0, int(ahead_batches)) * self.batch_size

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def __iter__(self):
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        n = len(self.files)
        pending: deque = deque()
        submitted = 0
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="coreset-decode")
        try:
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                while submitted < min(n, stop + self.window):
                    pending.append(pool.submit(self.files.__getitem__, submitted))
                    submitted += 1
                items = [pending.popleft().result() for _ in range(start, stop)]
                yield _collate(items)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def prepare_model(embedder: Embedder, device: torch.device) -> bool:
    """Move the model to ``device`` (channels-last when the embedder asks); returns channels_last."""
    embedder.to(device)
    channels_last = bool(getattr(embedder, "channels_last", False))
    if channels_last:
        embedder.model.to(memory_format=torch.channels_last)
    return channels_last


def forward_batch(
    embedder: Embedder, xs: torch.Tensor, device: torch.device, precision: str, channels_last: bool
) -> np.ndarray:
    """One forward pass under inference mode and autocast: ``[B, 3, H, W]`` -> float32 numpy ``[B, dim]``."""
    xs = xs.to(device, non_blocking=device.type == "cuda")
    if channels_last:
        xs = xs.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(device, precision):
        out = embedder.embed_batch(xs)
    return out.detach().to("cpu", dtype=torch.float32).numpy()


def assemble_result(plan: RowPlan, t0: float, device: torch.device | str, precision: str) -> ExtractionResult:
    """The :class:`ExtractionResult` of ``plan`` so far (``t0``: ``time.perf_counter()`` at the start)."""
    secs = time.perf_counter() - t0
    rate = (plan.n_computed / secs) if plan.n_computed else (plan.n / secs if secs > 0 else 0.0)
    return ExtractionResult(
        features=plan.features,
        ok=plan.ok,
        problems=[(plan.paths[i], plan.problems[i]) for i in sorted(plan.problems)],
        n_cached=plan.n_cached,
        n_computed=plan.n_computed,
        seconds=secs,
        images_per_s=rate,
        device=str(device),
        precision=precision,
        cache_key=plan.key,
    )


def cancelled_message(plan: RowPlan, cache: EmbeddingCache | None) -> str:
    return f"Extraction cancelled after {plan.done} of {plan.n} images; " + (
        "the rows embedded so far are cached and will not be recomputed."
        if cache is not None and cache.write_error is None
        else "nothing was cached (no cache given, or it could not be written)."
    )


def cache_key(embedder: Embedder, precision: str) -> str:
    """The cache folder of an embedder at a precision: its identity, plus ``-<precision>`` when not fp32."""
    return embedder.identity if precision == "fp32" else f"{embedder.identity}-{precision}"


#: On the CPU, pick the torch thread count by timing (:class:`ThreadTuner`).
TUNE_CPU_THREADS = True
#: Re-time the thread counts every this many seconds of work.
THREAD_PROBE_EVERY_S = 20.0
#: Batches timed per thread count in a probe (the first one, which pays the pool resize, is not counted).
THREAD_PROBE_BATCHES = 3
#: The tuner's clock (separate from the cache-flush clock).
_tuner_clock = time.perf_counter


class ThreadTuner:
    """Chooses the intra-op thread count of CPU forward passes by timing them.

    Torch's ``T`` threads wait for each other at the end of every operator: when another
    process takes one of their cores, every operator waits for the descheduled thread and the
    rate collapses (measured on 2 CPUs with one busy: 7-9 img/s with 2 threads, 30-57 with 1).
    The tuner times :data:`THREAD_PROBE_BATCHES` batches (forward only, seconds per image) at
    each candidate count ``T`` and ``max(1, T // 2)`` (the current choice first, at the start the
    fewer; a count already 3x slower than one timed before it stops after one batch), runs on
    the faster one, and probes again
    every :data:`THREAD_PROBE_EVERY_S` seconds, or, running on more than the fewest threads, at
    once when the median of the last :data:`THREAD_PROBE_BATCHES` batches is more than twice as
    slow per image as the probe measured (a busy process arrived); on an idle machine it keeps ``T`` (the probe costs a few
    batches at ``T // 2``). ``close()`` restores ``T``.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.base = int(threads or torch.get_num_threads())
        self.candidates = list(dict.fromkeys([self.base, max(1, self.base // 2)]))
        self.active = len(self.candidates) > 1
        self.choice = self.base
        self._probe: list[list[float]] | None = [[] for _ in self.candidates] if self.active else None
        self._order = sorted(self.candidates)  # probe order: the current choice first (at the start, the fewest)
        self._k = 0
        self._seen = 0
        self._chosen_at = 0.0
        self._best = 0.0  # seconds per image of the choice, as probed
        self._recent: list[float] = []
        self.history: list[tuple[int, dict[int, float]]] = []  # (choice, {threads: s/img}) per probe

    def threads(self) -> int:
        """The thread count for the next batch (set on torch by :meth:`before`)."""
        if self._probe is None and _tuner_clock() - self._chosen_at >= THREAD_PROBE_EVERY_S:
            self._start_probe()
        return self._order[self._k] if self._probe is not None else self.choice

    def _start_probe(self) -> None:
        self._order = [self.choice] + [c for c in self.candidates if c != self.choice]
        self._probe, self._k, self._seen, self._recent = [[] for _ in self.candidates], 0, 0, []

    def before(self) -> None:
        if self.active:
            t = self.threads()
            if torch.get_num_threads() != t:
                torch.set_num_threads(t)

    def after(self, n_images: int, seconds: float) -> None:
        """Record one batch of ``n_images`` that took ``seconds`` (forward only)."""
        if n_images <= 0 or not self.active:
            return
        if self._probe is None:
            if self.choice == min(self.candidates):  # a slowdown cannot argue for fewer threads
                return
            self._recent = (self._recent + [seconds / n_images])[-THREAD_PROBE_BATCHES:]
            if len(self._recent) == THREAD_PROBE_BATCHES and float(np.median(self._recent)) > 2.0 * self._best:
                self._start_probe()
            return
        self._seen += 1
        if self._seen > 1:  # the first batch after a change pays the thread pool's resize
            self._probe[self._k].append(seconds / n_images)
        done = [float(np.median(v)) for v in self._probe[: self._k]]
        # a count already 3x slower than one probed before it is not timed further (saves slow batches)
        hopeless = bool(self._probe[self._k]) and bool(done) and self._probe[self._k][-1] > 3.0 * min(done)
        if len(self._probe[self._k]) >= THREAD_PROBE_BATCHES or hopeless:
            self._k, self._seen = self._k + 1, 0
            if self._k == len(self.candidates):
                per = {c: float(np.median(v)) for c, v in zip(self._order, self._probe)}
                self.choice = min(self.candidates, key=lambda c: per[c])
                self._best = per[self.choice]
                self.history.append((self.choice, per))
                self._probe, self._k, self._chosen_at, self._recent = None, 0, _tuner_clock(), []

    def close(self) -> None:
        if self.active and torch.get_num_threads() != self.base:
            torch.set_num_threads(self.base)


# ----------------------------------------------------------------------------- engine
def embed_images(
    embedder: Embedder,
    paths: Sequence[str | os.PathLike],
    *,
    file_ids: Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    precision: str = "auto",
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    decode_threads: int | None = None,
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
        decode_threads: with no decoding processes, decoding threads in this process
            (None: :func:`default_decode_threads`; 0 decodes between batches).
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
    dev = resolve_device(device)
    files, batch_size, prec, plan = start_job(embedder, paths, file_ids, dev, batch_size, precision, cache, progress)
    n = len(files)
    if not plan.first:
        return assemble_result(plan, t0, dev, prec)

    first = plan.first
    writer = CacheWriter(cache, plan.key, embedder.describe())
    channels_last = prepare_model(embedder, dev)
    workers = default_num_workers(len(first), batch_size, dev) if num_workers is None else max(0, int(num_workers))
    draft = getattr(embedder, "decode_draft", None)
    threads = default_decode_threads(workers) if decode_threads is None else max(0, int(decode_threads))
    it = iter(make_loader([files[i] for i in first], embedder.transform, batch_size, workers, dev, draft, threads))
    tuner = (
        ThreadTuner()
        if TUNE_CPU_THREADS
        and dev.type == "cpu"
        and len(first) >= 16 * batch_size
        and getattr(embedder, "backend", "torch") == "torch"
        else None
    )
    try:
        while True:
            if cancel is not None and cancel():
                writer.flush()
                raise ExtractionCancelled(cancelled_message(plan, cache), assemble_result(plan, t0, dev, prec))
            try:
                idx, xs, bad = next(it)
            except StopIteration:
                break
            for j, reason in bad:
                plan.fail(first[j], reason)
            if xs is not None:
                if tuner is not None:
                    tuner.before()
                    started = _tuner_clock()
                out = forward_batch(embedder, xs, dev, prec, channels_last)
                if tuner is not None:
                    tuner.after(len(xs), _tuner_clock() - started)
                writer.add(*plan.fill([first[j] for j in idx.tolist()], out))
            if progress is not None:
                progress(plan.done, n)
    except BaseException:
        # Interrupted (KeyboardInterrupt, a signal turned into an exception, an error in a
        # callback): keep the finished rows, then let the exception go on.
        writer.flush_after_error()
        raise
    finally:
        close = getattr(it, "close", None)  # a ThreadedBatches generator: stop its decoding threads now
        if close is not None:
            close()
        del it
        if tuner is not None:
            tuner.close()
    writer.flush()
    return assemble_result(plan, t0, dev, prec)
