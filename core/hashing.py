"""The one file hasher: :func:`file_digest` (hex digest of a file's bytes, read in blocks),
and its twin for arrays, :func:`array_digest`.

Used for the file identity of images (BLAKE2b-160, :func:`core.datasets.images.file_identity`),
the weights files (SHA-256, :func:`core.embedders._weights.file_sha256`), uploaded or
extracted archives (SHA-256, :mod:`core.datasets.archive`) and the features a neighbour
graph was built on (:mod:`core.neighbors`).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

#: Bytes read at a time.
BLOCK = 1 << 20
#: Bytes of an array hashed at a time by :func:`array_digest` (a view, never a copy).
ARRAY_BLOCK = 64 << 20


def array_digest(x: np.ndarray) -> str:
    """SHA-256 hex digest of an array's shape, dtype and C-order bytes, read in blocks of rows
    (a memory-mapped array is read once and never copied whole)."""
    x = np.asarray(x)
    h = hashlib.sha256(f"{x.shape}:{x.dtype.str}\n".encode())
    if x.size == 0:
        return h.hexdigest()
    flat = x.reshape(len(x), -1) if x.ndim > 1 else x.reshape(-1, 1)
    rows = max(1, ARRAY_BLOCK // max(1, flat.shape[1] * flat.itemsize))
    for start in range(0, len(flat), rows):
        h.update(np.ascontiguousarray(flat[start : start + rows]).data)
    return h.hexdigest()


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, digest_size: int | None = None) -> str:
    """Hex digest of the bytes of ``path`` with ``hashlib``'s ``algorithm`` (``digest_size``
    for BLAKE2), read in :data:`BLOCK`-byte blocks; OSError if the file cannot be read."""
    h = getattr(hashlib, algorithm)(digest_size=digest_size) if digest_size else hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["ARRAY_BLOCK", "BLOCK", "array_digest", "file_digest"]
