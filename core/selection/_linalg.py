"""Chunked torch helpers: class means, distances to class means, ranks, cosine similarity.

Conventions used throughout :mod:`core.selection`:

* ``X`` is a float32 ``numpy`` array ``[N, D]`` (one model's raw features). It is wrapped
  with :func:`torch.from_numpy` (no copy) and processed in chunks of rows, so the only
  large allocations are ``O(chunk * (D + C))``; nothing ``N x C`` or ``N x N`` is formed.
* ``codes`` is an int64 tensor ``[N]``: the class of each row as an index ``0..C-1``
  into the sorted class labels.
* Distances are Euclidean (L2) distances in the units of the features; a name ending in
  ``_sq`` holds a squared distance.
* ``normalize="l2"`` divides every row by its L2 norm (clamped at ``1e-12``) on the fly,
  chunk by chunk, so no normalised copy of the features is kept.
* On the CPU the class sums, the own-mean distances and the nearest-mean scan run as fused
  numba loops (:mod:`._kernels`) with the nearest-mean matmul in bfloat16 where the CPU has
  native bf16 dot products (:data:`NEAREST_SEARCH`, :func:`_distances_cpu`); without numba,
  and on other devices, the torch code below runs.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import SelectionInputError
from ..mapped import gather_rows, random_access  # noqa: F401  (the mapped-array helpers, re-exported for the selectors)
from . import _kernels

#: Upper bound on the bytes of the temporaries one chunk may allocate. Small on purpose:
#: temporaries above ~32 MB are fresh pages from the OS at every chunk (page faults), and
#: the direct own-mean distance runs ~2.5x slower than with 16 MB chunks on the 2-core box.
CHUNK_BYTES = 16 * 2**20
#: Chunk budget of the fused CPU pass of :func:`_distances_cpu` (its low-precision copy of the
#: rows and the matmul output stay in the per-core L2 cache).
CPU_CHUNK_BYTES = 4 * 2**20
#: Smallest positive norm used when L2-normalising (a zero row stays zero).
NORM_EPS = 1e-12
#: float32 unit round-off (2**-24).
_U32 = 2.0**-24
#: bfloat16 unit round-off (8 significant bits, round to nearest: 2**-8).
_UBF16 = 2.0**-8
#: Smallest positive normal float32 (subnormals may be flushed to zero by bf16 hardware).
_TINY32 = 2.0**-126
#: Candidate search of the nearest class mean on the CPU: ``"auto"`` (bfloat16 where the CPU
#: has native bf16 dot products, AMX or AVX512-BF16; float32 elsewhere), ``"bf16"``,
#: ``"fp32"``, or ``"torch"`` (the chunked torch code, as on a GPU).
NEAREST_SEARCH = os.environ.get("CORESET_STUDIO_NEAREST_SEARCH", "auto")
#: Fewest rows per worker thread of a chunked pass.
MIN_ROWS_PER_WORKER = 4096

T = TypeVar("T")
_CPU = torch.device("cpu")


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads (unchanged if None); restores the count."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_POOL: ThreadPoolExecutor | None = None


def cpu_pool() -> ThreadPoolExecutor:
    """The shared worker threads of the chunked passes (created on first use)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="coreset-select")
    return _POOL


def parallel_map(fn: Callable[..., T], items: list, workers: int) -> list[T]:
    """``[fn(item) for item in items]`` on ``workers`` threads, each with one torch thread."""
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    with torch_threads(1):
        return list(cpu_pool().map(fn, items))


def run_row_ranges(n_rows: int, device: torch.device, fn: Callable[[int, int], T], align: int = 1) -> list[T]:
    """Call ``fn(start, stop)`` on contiguous row ranges covering ``0..n_rows``.

    Range boundaries are multiples of ``align`` (pass the chunk size so that the chunk grid,
    hence every float32 partial sum, is the same whatever the number of workers).

    On the CPU the rows are split into ``torch.get_num_threads()`` ranges run by as many
    Python threads, each with one torch intra-op thread (torch releases the GIL inside its
    kernels). Compared with one thread driving multi-threaded ops, this has no per-op
    thread barrier, which matters on a busy machine (OpenMP workers spin while a core is
    taken by another process). ``fn`` must write only its own rows.
    """
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    n_blocks = -(-n_rows // align)
    workers = max(1, min(workers, n_rows // MIN_ROWS_PER_WORKER, n_blocks))
    if workers == 1:
        return [fn(0, n_rows)]
    bounds = np.minimum(np.linspace(0, n_blocks, workers + 1).astype(int) * align, n_rows)
    return parallel_map(lambda i: fn(int(bounds[i]), int(bounds[i + 1])), list(range(workers)), workers)


def rows_per_chunk(bytes_per_row: int, n_rows: int, chunk_bytes: int | None = None) -> int:
    """Rows per chunk so that ``rows * bytes_per_row <= chunk_bytes`` (default :data:`CHUNK_BYTES`;
    at least 1, at most N)."""
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return int(max(1, min(max(n_rows, 1), budget // max(1, bytes_per_row))))


def iter_chunks(n_rows: int, rows: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """Yield ``(s, e)`` row ranges covering ``start..n_rows`` in steps of ``rows``."""
    for s in range(start, n_rows, rows):
        yield s, min(n_rows, s + rows)


def from_numpy(x: np.ndarray) -> torch.Tensor:
    """:func:`torch.from_numpy`, also for a read-only array (a features store's read-only memory map).

    Torch warns that it has no read-only tensors; the selection code only reads its inputs (it
    never writes in place into a tensor it did not allocate), so the warning is not shown."""
    if x.flags.writeable:
        return torch.from_numpy(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(x)


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """Wrap a float32 C-contiguous array as a CPU tensor without copying (copy otherwise)."""
    return from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def l2_normalize_rows(t: torch.Tensor) -> torch.Tensor:
    """Return ``t / max(||t_i||_2, 1e-12)`` row-wise (new tensor)."""
    return t / torch.linalg.vector_norm(t, dim=1, keepdim=True).clamp_min(NORM_EPS)


def load_rows(xt: torch.Tensor, start: int, stop: int, device: torch.device, normalize: str) -> torch.Tensor:
    """Rows ``start:stop`` of ``xt`` on ``device``, L2-normalised if ``normalize == "l2"``."""
    chunk = xt[start:stop]
    if chunk.device != device:
        chunk = chunk.to(device, non_blocking=True)
    if normalize == "l2":
        chunk = l2_normalize_rows(chunk)
    return chunk


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise :class:`SelectionInputError` if ``x`` holds NaN or +-inf (names the first bad row).

    Fast path: a chunk whose sum is finite has only finite entries (a NaN or inf makes any
    sum NaN or inf); only a chunk whose sum is not finite (which includes a float32 overflow
    of finite values) is inspected element-wise.
    """
    xt = as_tensor(x) if x.dtype == np.float32 else from_numpy(np.ascontiguousarray(x))
    n = xt.shape[0]
    d = xt.shape[1] if xt.ndim == 2 else 1
    rows = rows_per_chunk(4 * d, n)

    def first_bad(start: int, stop: int) -> int | None:
        for s, e in iter_chunks(stop, rows, start):
            chunk = xt[s:e]
            if math.isfinite(float(chunk.sum())):
                continue
            bad = ~torch.isfinite(chunk)
            if bool(bad.any()):
                return int(torch.nonzero(bad.reshape(e - s, -1).any(dim=1))[0, 0]) + s
        return None

    bad_rows = [r for r in run_row_ranges(n, torch.device("cpu"), first_bad, align=rows) if r is not None]
    if bad_rows:
        row = min(bad_rows)
        raise SelectionInputError(
            f"Features of model {name!r} contain NaN or infinite values (first at row {row}); "
            "re-embed the images or drop those rows."
        )


def check_values(x: np.ndarray, name: str, magnitude_limit: float) -> float | None:
    """One pass over ``x`` for the two input checks of :func:`core.selection.run_selection`.

    Per chunk ``torch.aminmax``: NaN propagates into both, so a chunk whose min and max are
    finite holds only finite values. Raises :class:`SelectionInputError` as
    :func:`check_finite` does (same message, first bad row) when a value is NaN or +-inf;
    otherwise returns ``max |x|`` if it exceeds ``magnitude_limit`` (the caller words that
    error) and None when it does not.
    """
    xt = as_tensor(x) if x.dtype == np.float32 else from_numpy(np.ascontiguousarray(x))
    n = xt.shape[0]
    if xt.numel() == 0:
        return None
    d = xt.shape[1] if xt.ndim == 2 else 1
    rows = rows_per_chunk(4 * d, n)

    def extremes(start: int, stop: int) -> tuple[bool, float]:
        top = 0.0
        for s, e in iter_chunks(stop, rows, start):
            lo_t, hi_t = torch.aminmax(xt[s:e])
            lo, hi = float(lo_t), float(hi_t)
            if not (math.isfinite(lo) and math.isfinite(hi)):
                return False, math.inf
            top = max(top, hi, -lo)
        return True, top

    parts = run_row_ranges(n, torch.device("cpu"), extremes, align=rows)
    if not all(ok for ok, _ in parts):
        check_finite(x, name)  # finds the first bad row and raises
    top = max(t for _, t in parts)
    return top if top > magnitude_limit else None


def check_and_sum(
    x: np.ndarray, name: str, codes: np.ndarray, n_classes: int, magnitude_limit: float
) -> tuple[float | None, np.ndarray | None]:
    """:func:`check_values` that also returns the float64 class sums ``[C, D]`` of ``x`` (rows
    grouped by ``codes``) from the same pass, or None for them without the compiled loops.

    Finiteness comes from the sums: every value is added into exactly one float64 class sum,
    float32 values cannot overflow a float64 sum, and a NaN or infinity makes its sum NaN or
    infinite; so all sums are finite exactly when all values are.
    """
    if x.size == 0 or x.ndim != 2 or x.dtype != np.float32 or not _kernels.available():
        return check_values(x, name, magnitude_limit), None
    n, d = x.shape
    x = np.ascontiguousarray(x)
    codes = np.ascontiguousarray(codes, dtype=np.int64)

    def partial(start: int, stop: int) -> tuple[np.ndarray, float]:
        sums = np.zeros((n_classes, d), dtype=np.float64)
        block = x[start:stop]
        bits = _kernels.class_sums_and_max_abs(block, block.view(np.uint32), codes[start:stop], sums)
        return sums, float(np.array([bits], dtype=np.uint32).view(np.float32)[0])

    parts = run_row_ranges(n, torch.device("cpu"), partial, align=rows_per_chunk(4 * d, n))
    sums = parts[0][0]
    for extra, _ in parts[1:]:
        sums += extra
    if not np.isfinite(sums).all():
        check_finite(x, name)  # finds the first bad row and raises
    top = max(t for _, t in parts)
    return (top if top > magnitude_limit else None), sums


#: Class sums already computed for this call (see :func:`known_class_sums`).
_KNOWN_SUMS: ContextVar[dict | None] = ContextVar("coreset_known_class_sums", default=None)


def _sums_key(xt: torch.Tensor, codes: torch.Tensor, n_classes: int) -> tuple:
    return (xt.data_ptr(), tuple(xt.shape), tuple(xt.stride()), codes.data_ptr(), int(codes.shape[0]), n_classes)


@contextmanager
def known_class_sums(entries: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]]):
    """Within the block, :func:`class_means` (``normalize="none"``, CPU) reuses the float64
    class sums of the listed ``(features, codes, n_classes, sums)``, identified by memory
    address and shape (the arrays must not change inside the block)."""
    known = {_sums_key(from_numpy(x), from_numpy(c), k): sums for x, c, k, sums in entries}
    token = _KNOWN_SUMS.set(known)
    try:
        yield
    finally:
        _KNOWN_SUMS.reset(token)


def class_means(
    xt: torch.Tensor, codes: torch.Tensor, n_classes: int, *, normalize: str = "none", device: torch.device = _CPU
) -> torch.Tensor:
    """Mean feature vector of every class: float64 ``[C, D]`` on ``device``.

    ``mu_c = (1 / N_c) * sum_{i: code_i = c} x_i`` (``x_i`` L2-normalised first if asked).
    On the CPU the rows are added in float64 by one streaming loop (:mod:`._kernels`); on
    other devices each chunk is summed per class in float32 with ``index_add_`` and the
    chunk sums are accumulated in float64.
    """
    n, d = xt.shape
    # at least 16 rows per class per chunk, so that flushing the [C, D] partial sums stays cheap
    rows = min(max(n, 1), max(rows_per_chunk(4 * d * 2, n), 16 * n_classes))

    def partial_sums(start: int, stop: int) -> torch.Tensor:
        sums = torch.zeros(n_classes, d, dtype=torch.float64, device=device)
        part = torch.empty(n_classes, d, dtype=torch.float32, device=device)
        for s, e in iter_chunks(stop, rows, start):
            part.zero_()
            part.index_add_(0, codes[s:e].to(device), load_rows(xt, s, e, device, normalize))
            sums += part
        return sums

    known = _KNOWN_SUMS.get()
    if device.type == "cpu" and normalize != "l2" and known:
        cached = known.get(_sums_key(xt, codes, n_classes))
        if cached is not None:
            sizes = np.bincount(codes.numpy(), minlength=n_classes).astype(np.float64)
            return torch.from_numpy(cached / np.maximum(sizes, 1.0)[:, None])
    if device.type == "cpu" and _kernels.available():
        x_np, codes_np = xt.numpy(), codes.numpy()

        def partial_sums_np(start: int, stop: int) -> np.ndarray:
            sums = np.zeros((n_classes, d), dtype=np.float64)
            if normalize != "l2":  # one streaming pass, float64 accumulation
                _kernels.class_sums(x_np[start:stop], codes_np[start:stop], sums)
                return sums
            for s, e in iter_chunks(stop, rows, start):
                _kernels.class_sums(load_rows(xt, s, e, device, normalize).numpy(), codes_np[s:e], sums)
            return sums

        parts_np = run_row_ranges(n, device, partial_sums_np, align=rows)
        total = torch.from_numpy(parts_np[0])
        for extra in parts_np[1:]:
            total += torch.from_numpy(extra)
    else:
        parts = run_row_ranges(n, device, partial_sums, align=rows)
        total = parts[0]
        for part_sum in parts[1:]:
            total = total + part_sum
    counts = torch.from_numpy(np.bincount(codes.numpy(), minlength=n_classes)).to(device=device, dtype=torch.float64)
    return total / counts.clamp_min(1).unsqueeze(1)


def distances_to_present_means(
    xt: torch.Tensor, codes: torch.Tensor, means: torch.Tensor, **kwargs: Any
) -> dict[str, Any]:
    """:func:`distances_to_class_means` over the classes that have rows only: a class without a
    row in ``codes`` has no mean (its row of ``means`` is a placeholder), so it is never the
    ``nearest`` or the ``other`` class. Indices in ``nearest`` are class indices as in ``codes``.
    (A pool with an empty class: ``auto``'s estimate on a sample of the classes, a small fold.)"""
    n_classes = means.shape[0]
    present = np.bincount(codes.cpu().numpy(), minlength=n_classes) > 0
    if present.all():
        return distances_to_class_means(xt, codes, means, **kwargs)
    keep = np.flatnonzero(present)
    local = np.full(n_classes, -1, dtype=np.int64)
    local[keep] = np.arange(len(keep))
    out = distances_to_class_means(xt, torch.from_numpy(local)[codes.cpu()], means[torch.from_numpy(keep)], **kwargs)
    if out.get("nearest") is not None:
        out["nearest"] = torch.from_numpy(keep)[out["nearest"]]
    return out


def distances_to_class_means(
    xt: torch.Tensor,
    codes: torch.Tensor,
    means: torch.Tensor,
    *,
    normalize: str = "none",
    device: torch.device = _CPU,
    want_nearest: bool = True,
    want_other: bool = False,
) -> dict[str, Any]:
    """Distances of every row to its own class mean and the nearest class mean.

    Args:
        xt: features ``[N, D]`` (float32 CPU tensor, usually a view of the numpy array).
        codes: int64 ``[N]`` class index of each row.
        means: float64 ``[C, D]`` class means (from :func:`class_means`, same ``normalize``).
        want_nearest: compute ``nearest`` = argmin_c ||x_i - mu_c|| (first c on ties).
        want_other: compute ``other`` = min_{c != code_i} ||x_i - mu_c|| (inf if C == 1).

    Returns a dict of CPU tensors ``own`` (float32 ``[N]``, ``||x_i - mu_{code_i}||``),
    ``nearest`` (int64 ``[N]``), ``other`` (float32 ``[N]``) and the int ``n_refined``.

    Precision: ``own`` is computed directly from ``x_i - mu_c`` in float32 (no cancellation).
    The nearest mean uses the expansion ``||mu_c||^2 - 2 x.mu_c`` (``||x||^2`` is the same for
    every c) as one float32 matmul per chunk; a row whose best and second-best values are
    closer than ``4 sqrt(D) u (max||mu||^2 + 2 ||x|| max||mu||)`` (u = 2^-24, a bound on
    the float32 rounding) is recomputed in float64, so ties and near-ties resolve to the
    same class as an exact computation (first class index on exact ties).
    ``other`` uses ``||x - mu_c||^2 = own^2 + (v_c - v_own)`` with the float32 ``v`` values.

    On the CPU without ``want_other`` the work is done by :func:`_distances_cpu` (same
    outputs: ``own`` in float64 arithmetic, ``nearest`` exact through a low-precision
    candidate search and a float64 re-check).
    """
    if device.type == "cpu" and not want_other and _kernels.available() and NEAREST_SEARCH != "torch":
        return _distances_cpu(xt, codes, means, normalize=normalize, want_nearest=want_nearest, search=_search_dtype())
    n, d = xt.shape
    n_classes = means.shape[0]
    mu32 = means.to(torch.float32)
    mu_sq64 = (means * means).sum(dim=1)
    mu_sq = mu_sq64.to(torch.float32)
    mu_norm = mu_sq64.sqrt().to(torch.float32)
    mu_norm_max = float(mu_sq64.max().sqrt()) if n_classes else 0.0
    gamma = 4.0 * math.sqrt(d) * _U32
    need_matmul = (want_nearest or want_other) and n_classes > 1
    rows = rows_per_chunk(4 * (2 * d + 3 * n_classes), n)

    own = torch.empty(n, dtype=torch.float32)
    nearest = torch.zeros(n, dtype=torch.int64) if want_nearest else None
    other = torch.full((n,), float("inf"), dtype=torch.float32) if want_other else None

    def process(start: int, stop: int) -> int:
        """Rows ``start..stop``: writes their slices of the outputs, returns the rows refined."""
        n_refined = 0
        for s, e in iter_chunks(stop, rows, start):
            xc = load_rows(xt, s, e, device, normalize)
            cc = codes[s:e].to(device)
            diff = mu32.index_select(0, cc)
            own_c = torch.linalg.vector_norm(diff.sub_(xc), dim=1)  # in place: one [b, D] temporary
            del diff
            own[s:e] = own_c.cpu()
            if not need_matmul:
                continue
            vals = xc @ mu32.T  # [b, C]
            vals.mul_(-2.0).add_(mu_sq)  # v_c = ||mu_c||^2 - 2 x.mu_c = ||x - mu_c||^2 - ||x||^2
            v_own = vals.gather(1, cc.unsqueeze(1)).squeeze(1)
            if want_nearest:
                assert nearest is not None
                v1, i1 = vals.min(dim=1)
                vals.scatter_(1, i1.unsqueeze(1), float("inf"))
                v2 = vals.min(dim=1).values
                vals.scatter_(1, i1.unsqueeze(1), v1.unsqueeze(1))
                x_norm = own_c + mu_norm.index_select(0, cc)  # >= ||x|| (triangle inequality)
                tol = gamma * (mu_norm_max**2 + 2.0 * x_norm * mu_norm_max)
                close = torch.nonzero((v2 - v1) <= tol).squeeze(1)
                if close.numel():
                    exact = mu_sq64.unsqueeze(0) - 2.0 * (xc.index_select(0, close).to(torch.float64) @ means.T)
                    i1[close] = exact.argmin(dim=1)
                    n_refined += int(close.numel())
                nearest[s:e] = i1.cpu()
            if want_other:
                assert other is not None
                vals.scatter_(1, cc.unsqueeze(1), float("inf"))
                v_other = vals.min(dim=1).values
                other[s:e] = (own_c * own_c + (v_other - v_own)).clamp_min(0.0).sqrt().cpu()
        return n_refined

    n_refined = sum(run_row_ranges(n, device, process, align=rows))
    return {"own": own, "nearest": nearest, "other": other, "n_refined": n_refined}


def _cpu_has_bf16_dot() -> bool:
    """True when the CPU advertises native bfloat16 dot products (AMX-BF16 or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "amx_bf16" in flags or "avx512_bf16" in flags
    except OSError:
        pass
    return False


def _search_dtype() -> str:
    """``bf16`` or ``fp32``: the dtype of the nearest-mean candidate matmul (see :data:`NEAREST_SEARCH`)."""
    if NEAREST_SEARCH in ("bf16", "fp32"):
        return NEAREST_SEARCH
    global _BF16_NATIVE
    if _BF16_NATIVE is None:
        _BF16_NATIVE = _cpu_has_bf16_dot()
    return "bf16" if _BF16_NATIVE else "fp32"


_BF16_NATIVE: bool | None = None


def candidate_slack(d: int, search: str, x_norm: np.ndarray, m_max: float) -> np.ndarray:
    """Per-row slack ``2 E`` of the candidate rule of :func:`_distances_cpu`, times a safety
    factor of 2 (float64 ``[b]``).

    ``E = 2 kappa ||x'|| M + 2 u M^2 + eta`` with ``x_norm >= ||x'||``, ``u = 2^-24``,
    ``kappa = e_in + g_D (1 + e_in) + u_out (1 + g_D)(1 + e_in) + 2u`` where
    ``e_in = (1 + u)(1 + u_z)(1 + u_mu) - 1`` and ``g_D = D u / (1 - D u)``; for the bf16
    search ``u_z = u_out = 2^-8``, ``u_mu = 2^-8 + 2u``; for fp32 ``u_z = u_out = 0``,
    ``u_mu = u``. ``eta = 4 (D + 1) 2^-126 (1 + 2M + ||x'||)`` covers flushed subnormals.
    """
    u = _U32
    if search == "bf16":
        u_z, u_mu, u_out = _UBF16, _UBF16 + 2 * u, _UBF16
    else:
        u_z, u_mu, u_out = 0.0, u, 0.0
    e_in = (1 + u) * (1 + u_z) * (1 + u_mu) - 1
    g_d = d * u / (1 - d * u)
    kappa = e_in + g_d * (1 + e_in) + u_out * (1 + g_d) * (1 + e_in) + 2 * u
    eta = 4.0 * (d + 1) * _TINY32 * (1.0 + 2.0 * m_max + x_norm)
    e = 2.0 * kappa * x_norm * m_max + 2.0 * u * m_max * m_max + eta
    return 2.0 * (2.0 * e)


def _distances_cpu(
    xt: torch.Tensor, codes: torch.Tensor, means: torch.Tensor, *, normalize: str, want_nearest: bool, search: str
) -> dict[str, Any]:
    """CPU version of :func:`distances_to_class_means` (no ``other``): fused loops plus one
    low-precision matmul per chunk.

    ``own_i = ||x_i - mu_{code_i}||`` is summed in float64 from the float32 row and the
    float64 mean (then stored as float32).

    Nearest class mean (exact). Let ``g`` be the float32 mean of the class means,
    ``z_i = fl32(x_i - g)`` and ``mu'_c = mu_c - g``. Distances are translation invariant,
    so ``argmin_c ||x - mu_c|| = argmin_c w_c`` with ``w_c = ||mu'_c||^2 - 2 x'.mu'_c``
    (``x' = x - g`` exactly). Each chunk computes
    ``w~_c = fl32(fl32(||mu'_c||^2) + q(z) q(-2 mu'_c)^T)`` with ``q`` the rounding to the
    search dtype (bfloat16 on CPUs with AMX / AVX512-BF16: products exact in float32,
    float32 accumulation, bfloat16 output; else float32), and the bound
    ``|w~_c - w_c| <= E`` for every c (:func:`candidate_slack`; it follows from
    ``|z_j - x'_j| <= u |x'_j|``, the relative roundings of the two factors, of the output
    and of the final float32 addition, ``gamma_D`` for the float32 accumulation in any
    order, and
    ``sum_j |x'_j mu'_cj| <= ||x'|| ||mu'_c|| <= ||x'|| M``, ``M = max_c ||mu'_c||``, with
    ``||x'|| <= ||x - mu_own|| + ||mu'_own||`` (triangle inequality; the float32 ``own``
    times ``1 + 2^-22`` bounds the first term)).

    Candidate rule: ``K_i = {c : w~_c <= min_c w~_c + 2E}``. Safety: for the true
    minimiser c*, ``w~_{c*} <= w_{c*} + E <= w_{i1} + E <= w~_{i1} + 2E`` (``i1`` the
    argmin of ``w~``), so ``c* in K_i``. If ``K_i = {i1}``, every other c has
    ``w_c >= w~_c - E > w~_{i1} + E >= w_{i1}``: the exact minimiser is unique and is
    ``i1``. Rows with two or more candidates (ties and near ties) are re-checked exactly
    as :func:`distances_to_class_means` does: ``argmin_c ||mu_c||^2 - 2 x.mu_c`` in float64
    over all classes (first class on exact ties); ``n_refined`` counts them.
    """
    n, d = xt.shape
    n_classes = means.shape[0]
    means64 = np.ascontiguousarray(means.numpy(), dtype=np.float64)
    codes_np = np.ascontiguousarray(codes.numpy())
    x_np = xt.numpy()
    own = np.empty(n, dtype=np.float32)
    nearest = np.zeros(n, dtype=np.int64) if want_nearest else None
    search_matmul = want_nearest and n_classes > 1
    mode = 0 if not search_matmul else (1 if search == "bf16" else 2)
    if search_matmul:
        centre = means64.mean(axis=0).astype(np.float32)
        shifted = means64 - centre.astype(np.float64)
        offset = np.einsum("cd,cd->c", shifted, shifted)
        m_max = float(np.sqrt(offset.max()))
        offset32 = offset.astype(np.float32)
        factor = torch.from_numpy(-2.0 * shifted).to(torch.bfloat16 if mode == 1 else torch.float32)
        mu_sq64 = (means * means).sum(dim=1)  # as in distances_to_class_means's re-check
    else:
        centre = np.zeros(d, dtype=np.float32)
    out_bytes = 2 if mode == 1 else 4
    rows = rows_per_chunk(out_bytes * (d + n_classes), n, CPU_CHUNK_BYTES)
    dummy16 = np.zeros((1, 1), dtype=np.uint16)
    dummy32 = np.zeros((1, 1), dtype=np.float32)
    if mode:
        own_mu_norm = np.sqrt(offset)  # ||mu'_c||, for the triangle bound on ||x'||

    def process(start: int, stop: int) -> int:
        if mode == 0 and normalize != "l2":  # own distances only: one streaming call
            _kernels.own_and_shifted(
                x_np[start:stop], codes_np[start:stop], means64, centre, own[start:stop], dummy16, dummy32, 0
            )
            return 0
        n_refined = 0
        if mode:
            zbuf = np.empty((rows, d), dtype=np.uint16 if mode == 1 else np.float32)
            ybuf = torch.empty((rows, n_classes), dtype=factor.dtype)
            n_cand = np.empty(rows, dtype=np.int64)
        for s, e in iter_chunks(stop, rows, start):
            b = e - s
            xc = x_np[s:e] if normalize != "l2" else load_rows(xt, s, e, torch.device("cpu"), normalize).numpy()
            cc = codes_np[s:e]
            if mode == 0:
                _kernels.own_and_shifted(xc, cc, means64, centre, own[s:e], dummy16, dummy32, 0)
                continue
            assert nearest is not None
            zb = zbuf[:b]
            _kernels.own_and_shifted(
                xc, cc, means64, centre, own[s:e], zb if mode == 1 else dummy16, zb if mode == 2 else dummy32, mode
            )
            zt = torch.from_numpy(zb)
            y = ybuf[:b]
            torch.mm(zt.view(torch.bfloat16) if mode == 1 else zt, factor.T, out=y)
            y_np = y.view(torch.int16).numpy().view(np.uint16) if mode == 1 else y.numpy()
            x_norm = (own[s:e].astype(np.float64) * (1 + 2.0**-22) + own_mu_norm[cc]) * (1 + 2.0**-22)
            slack = candidate_slack(d, search, x_norm, m_max)
            _kernels.nearest_candidates(
                y_np if mode == 1 else dummy16,
                y_np if mode == 2 else dummy32,
                mode == 1,
                offset32,
                slack,
                nearest[s:e],
                n_cand[:b],
            )
            close = np.flatnonzero(n_cand[:b] > 1)
            if close.size:
                rows64 = torch.from_numpy(np.ascontiguousarray(xc[close], dtype=np.float64))
                exact = mu_sq64.unsqueeze(0) - 2.0 * (rows64 @ means.T)
                nearest[s + close] = exact.argmin(dim=1).numpy()
                n_refined += int(close.size)
        return n_refined

    n_refined = sum(run_row_ranges(n, torch.device("cpu"), process, align=rows))
    return {
        "own": torch.from_numpy(own),
        "nearest": None if nearest is None else torch.from_numpy(nearest),
        "other": None,
        "n_refined": n_refined,
    }


def sort_by_class_then_value(values, codes) -> np.ndarray:
    """Permutation (int64) ordering rows by (class code, value, row index), all ascending.

    Fast path: one packed ``uint64`` key per row, ``code | value key | row`` from the high
    bits down, sorted by numpy's (vectorised, unstable) ``np.sort``; the keys are unique, so
    the order is the same as a stable sort's. The value key is the float32's bit pattern
    mapped to an order-preserving unsigned integer (``-0.0`` counted as ``+0.0``) or, for
    other dtypes, the value's index among the sorted distinct values (``np.unique``).
    When the three parts need more than 64 bits (or a value is NaN), two stable numpy
    sorts are used instead: by value, then by class (equal values keep row order).
    """
    values = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    codes = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    packed = _packed_sort(values, codes)
    if packed is not None:
        return packed
    by_value = np.argsort(values, kind="stable")
    return by_value[np.argsort(codes[by_value], kind="stable")].astype(np.int64, copy=False)


def _packed_sort(values: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
    """The fast path of :func:`sort_by_class_then_value`, or None when it does not apply."""
    n = len(values)
    if n == 0 or values.ndim != 1 or values.dtype.kind not in "fiu" or codes.dtype.kind not in "iu":
        return None
    if values.dtype.kind == "f" and np.isnan(values).any():
        return None
    if codes.min() < 0:
        return None
    row_bits = max(1, int(n - 1).bit_length())
    code_bits = max(1, int(codes.max()).bit_length())
    if values.dtype == np.float32:
        bits = (values + np.float32(0.0)).view(np.uint32)  # + 0.0: -0.0 becomes +0.0
        negative = (bits >> np.uint32(31)).astype(bool)
        vkey = np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)
        value_bits = 32
    else:
        distinct, inverse = np.unique(values, return_inverse=True)
        vkey = inverse.reshape(-1).astype(np.uint64)
        value_bits = max(1, int(len(distinct) - 1).bit_length())
    if row_bits + code_bits + value_bits > 64:
        return None
    key = (codes.astype(np.uint64) << np.uint64(row_bits + value_bits)) | (vkey << np.uint64(row_bits))
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    return (key & np.uint64((1 << row_bits) - 1)).astype(np.int64)


def ranks_within_class(values, codes, offsets) -> np.ndarray:
    """Rank of each row among the rows of its class by ascending value (0 = smallest).

    Ties are broken by row index. ``offsets[c]`` is the number of rows of classes ``< c``.
    Returns int64 ``[N]``.
    """
    codes = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    offsets = offsets.numpy() if isinstance(offsets, torch.Tensor) else np.asarray(offsets)
    perm = sort_by_class_then_value(values, codes)
    ranks = np.empty(len(perm), dtype=np.int64)
    ranks[perm] = np.arange(len(perm), dtype=np.int64) - offsets[codes[perm]]
    return ranks


def cosine_similarity_shifted(xn: torch.Tensor, yn: torch.Tensor | None = None) -> torch.Tensor:
    """``s_ij = (1 + cos(x_i, y_j)) / 2`` in [0, 1] for L2-normalised rows (``y = x`` if None)."""
    yn = xn if yn is None else yn
    sim = xn @ yn.T
    return sim.add_(1.0).mul_(0.5)
