"""Synthetic data for the evaluation/export/CLI tests (Gaussian blobs as a FeatureSet); holds no tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.features import FeatureSet


def blobs(
    n_per_class=(40, 40, 40),
    dim=8,
    sep=4.0,
    seed=0,
    models=("a", "b", "effnet-lite2"),
    test_per_class=None,
    labels=None,
    paths_root: Path | None = None,
):
    """Well-separated Gaussian blobs, the same class means for every model (noise differs).

    ``test_per_class``: that many extra rows per class with split ``test``.
    ``paths_root``: write a tiny PNG per row there and set ``paths``.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(n_per_class)
    names = list(labels) if labels is not None else [f"class{c}" for c in range(n_classes)]
    means = rng.normal(size=(n_classes, dim)) * sep
    codes, split = [], []
    for c, n in enumerate(n_per_class):
        codes += [c] * n
        split += ["train"] * n
    if test_per_class:
        for c in range(n_classes):
            codes += [c] * test_per_class
            split += ["test"] * test_per_class
    codes = np.array(codes)
    feats = {m: (means[codes] + rng.normal(size=(len(codes), dim))).astype(np.float32) for m in models}
    paths = None
    if paths_root is not None:
        from .conftest import write_image

        paths = []
        for i, c in enumerate(codes):
            p = write_image(Path(paths_root) / f"c{c}" / f"img{i:04d}.png", seed=i, size=(12, 10))
            paths.append(str(p))
    return FeatureSet(
        feats,
        labels=np.array(names)[codes],
        paths=paths,
        split=np.array(split) if test_per_class else None,
        meta={"dataset": {"name": "blobs", "fingerprint": "f" * 64}, "models": {m: {"dim": dim} for m in models}},
    )
