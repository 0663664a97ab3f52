"""Digests of the evaluation's inputs (the data part of its cache keys)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ..features import FeatureSet


def features_digest(fs: FeatureSet, models: Sequence[str]) -> str:
    """SHA-256 over the named feature arrays, labels, split and paths (the cache key's data part)."""
    h = hashlib.sha256()
    for m in models:
        arr = np.ascontiguousarray(fs.features[m])
        h.update(f"{m}:{arr.shape}:{arr.dtype}\n".encode())
        h.update(arr.tobytes())
    for column in (fs.labels, fs.split, fs.paths):
        h.update(b"--\n")
        if column is not None:
            h.update("\x1f".join(map(str, np.asarray(column).tolist())).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


__all__ = ["features_digest"]
