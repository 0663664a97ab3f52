"""The one file hasher: :func:`file_digest` (hex digest of a file's bytes, read in blocks).

Used for the file identity of images (BLAKE2b-160, :func:`core.datasets.images.file_identity`),
the weights files (SHA-256, :func:`core.embedders._weights.file_sha256`) and uploaded or
extracted archives (SHA-256, :mod:`core.datasets.archive`).
"""

from __future__ import annotations

import hashlib
import os

#: Bytes read at a time.
BLOCK = 1 << 20


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", *, digest_size: int | None = None) -> str:
    """Hex digest of the bytes of ``path`` with ``hashlib``'s ``algorithm`` (``digest_size``
    for BLAKE2), read in :data:`BLOCK`-byte blocks; OSError if the file cannot be read."""
    h = getattr(hashlib, algorithm)(digest_size=digest_size) if digest_size else hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["BLOCK", "file_digest"]
