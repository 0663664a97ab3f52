"""Helpers for arrays that may be memory-mapped files (a features store's ``.npy`` maps).

* :func:`file_map`: the ``mmap.mmap`` behind an array, or None for an array in memory;
* :func:`random_access` / :func:`gather_rows`: gathers of scattered rows that read only the
  rows' pages;
* :func:`release_pages`: hand the pages of rows already read back to the OS, so that one
  pass over a store larger than the memory left does not keep it resident.

Every helper is a no-op (or a plain numpy operation) for arrays in memory.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from contextlib import contextmanager
from typing import Any

import numpy as np


def file_map(x: np.ndarray) -> mmap.mmap | None:
    """The ``mmap.mmap`` that holds ``x``'s memory (a memory-mapped features store), else None."""
    base: Any = x
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


_ADVICE_LOCK = threading.Lock()
_RANDOM_USERS: dict[int, int] = {}


@contextmanager
def random_access(x: np.ndarray):
    """Inside the block, the OS reads only the pages touched in ``x``'s file mapping (``MADV_RANDOM``).

    For gathers of scattered rows (one class of a store larger than the page cache): with the
    default read-around, every row read pulls in ~128 KiB around it. Measured on a 10M x 768
    store (28.6 GiB, 23.5 GiB RAM): a 10,000-row class took 8-10 s, 0.4-0.5 s with this advice.
    Nested and concurrent blocks on the same mapping are counted; the last to leave restores
    ``MADV_NORMAL`` (for the streaming passes). A no-op for arrays in memory.
    """
    mm = file_map(x)
    advice = getattr(mmap, "MADV_RANDOM", None)
    if mm is None or advice is None or not hasattr(mm, "madvise"):
        yield
        return
    key = id(mm)
    with _ADVICE_LOCK:
        _RANDOM_USERS[key] = _RANDOM_USERS.get(key, 0) + 1
        if _RANDOM_USERS[key] == 1:
            with contextlib.suppress(OSError, ValueError):
                mm.madvise(advice)
    try:
        yield
    finally:
        with _ADVICE_LOCK:
            _RANDOM_USERS[key] -= 1
            if _RANDOM_USERS[key] == 0:
                del _RANDOM_USERS[key]
                with contextlib.suppress(OSError, ValueError):
                    mm.madvise(mmap.MADV_NORMAL)


#: A gather of fewer than ``1 / SPARSE_GATHER`` of the rows counts as scattered (see :func:`gather_rows`).
SPARSE_GATHER = 8


def gather_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` (a copy). From a file mapping, a gather of a small part of the rows (under
    ``1 / SPARSE_GATHER``) runs under :func:`random_access`, so it reads only the rows' pages,
    and the pages are handed back to the OS afterwards (:func:`release_rows`): a selector that
    reads a store class by class never holds the whole store resident."""
    if not isinstance(x, np.ndarray) or file_map(x) is None:  # in memory, or a view that gathers itself
        return x[rows]
    if len(rows) * SPARSE_GATHER < x.shape[0]:
        with random_access(x):
            out = x[rows]
    else:
        out = x[rows]
    release_rows(x, rows)
    return out


def release_pages(x: np.ndarray, start: int, stop: int) -> None:
    """Hand the pages of rows ``start:stop`` of a memory-mapped ``x`` back to the OS
    (``MADV_DONTNEED`` on the read-only file mapping: the pages stay in the page cache and
    leave this process's resident memory; a later read maps them again). A no-op for arrays
    in memory, and where the OS has no such advice."""
    mm = file_map(x) if isinstance(x, np.ndarray) else None
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mm is None or advice is None or not hasattr(mm, "madvise") or stop <= start or len(mm) == 0:
        return
    try:
        origin = np.frombuffer(mm, dtype=np.uint8, count=1).__array_interface__["data"][0]
    except (TypeError, ValueError, BufferError):
        return
    first = x.__array_interface__["data"][0] - origin + int(start) * x.strides[0]
    last = first + (int(stop) - int(start)) * x.strides[0]
    page = mmap.PAGESIZE
    # every page holding a byte of these rows (a page shared with a neighbouring row is safe to
    # hand back too: the mapping is read-only and shared, a later read maps it again)
    first = max(0, first // page * page)
    last = min(-(-last // page) * page, -(-len(mm) // page) * page)
    if last > first:
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(advice, first, last - first)


def release_rows(x: np.ndarray, rows) -> None:
    """:func:`release_pages` of the span of rows ``min(rows)..max(rows)`` of a memory-mapped ``x``.
    The whole span, not only the rows' own pages: the kernel maps pages around each page a read
    faults in (fault-around, large folios), which would otherwise stay resident and add up to
    the whole store over a class-by-class pass. A span of pages that are not mapped costs a
    page-table walk; another thread reading there maps its pages again."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    if r.size and file_map(x) is not None:
        release_pages(x, int(r.min()), int(r.max()) + 1)


def release(x) -> None:
    """:func:`release_pages` of every row of ``x`` after a whole pass over it (a memory-mapped
    array); a no-op for anything that is not a numpy array backed by a file mapping."""
    if isinstance(x, np.ndarray) and x.ndim >= 1:
        release_pages(x, 0, len(x))


__all__ = ["SPARSE_GATHER", "file_map", "gather_rows", "random_access", "release", "release_pages", "release_rows"]
